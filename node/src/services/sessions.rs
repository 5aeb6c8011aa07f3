//! Sessions on the shard layer: one entry per user with an active session, holding the expiry
//! of each session (`u64::MAX` when leases are off). The owner of the user's shard decides
//! every add and remove, so the cap holds exactly under any concurrency; an entry is deleted
//! when its last session goes, by a remove or, with leases, by the owner's sweep of expired
//! entries ([`expired`], [`decide_expire`]).

use serde::{Deserialize, Serialize};
use troupe_actors::sessions::{self, SessionOutcome, SessionReply, SessionUser};
use troupe_http::ApiError;

use crate::clock::unix_millis;
use crate::codec;
use crate::config::SessionsConfig;
use crate::ids::ShardId;
use crate::node::Node;
use crate::placement::shard_for_key;
use crate::routing::read_shard;
use crate::services::machine::{self, Decision, Outcome, Service};
use crate::shard::draft::Draft;
use crate::shard::query::{Query, QueryAnswer};
use crate::shard::{MachineId, Op, ShardStore, StoreError, Tenant};

/// The key space of session entries: part of every stored entry's key, so never to change.
pub const TENANT: Tenant = Tenant(2);

/// Entries read per store scan while looking for expired ones.
const SCAN_PAGE: usize = 1000;

/// A user's active sessions: the expiry of each, in Unix milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leases(pub Vec<u64>);

impl Leases {
    /// Sessions still active at `now`.
    fn active(&self, now: u64) -> u32 {
        self.0.iter().filter(|&&expiry| expiry > now).count() as u32
    }
}

fn key(user: &SessionUser) -> Vec<u8> {
    user.as_str().as_bytes().to_vec()
}

fn load(store: &Draft, shard: ShardId, user: &SessionUser) -> Result<Leases, StoreError> {
    Ok(stored(store, shard, user)?.unwrap_or_default())
}

fn stored(store: &Draft, shard: ShardId, user: &SessionUser) -> Result<Option<Leases>, StoreError> {
    match store.get(shard, TENANT, &key(user))? {
        Some(bytes) => Ok(Some(codec::decode(&bytes, codec::Limit::Stored)?)),
        None => Ok(None),
    }
}

/// Up to `limit` users of the shard whose entries hold no session active at `now`: left
/// behind when leases ran out, since only a remove deletes an entry on its own.
pub fn expired(
    store: &ShardStore,
    shard: ShardId,
    now: u64,
    limit: usize,
) -> Result<Vec<SessionUser>, StoreError> {
    let mut found = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan(shard, TENANT, after.as_deref(), SCAN_PAGE)?;
        for (key, value) in &page {
            if found.len() == limit {
                return Ok(found);
            }
            let leases: Leases = match codec::decode(value, codec::Limit::Stored) {
                Ok(leases) => leases,
                Err(error) => {
                    // One corrupt entry must not stop the sweep of every other user.
                    let key = String::from_utf8_lossy(key);
                    tracing::warn!(%shard, %key, %error, "stored sessions cannot be read, skipped");
                    continue;
                }
            };
            // Keys are written from a `SessionUser`; anything else is not ours to delete.
            let user = std::str::from_utf8(key)
                .ok()
                .and_then(|id| SessionUser::parse(Some(id)).ok());
            if let (0, Some(user)) = (leases.active(now), user) {
                found.push(user);
            }
        }
        match page.last() {
            Some((key, _)) if page.len() == SCAN_PAGE => after = Some(key.clone()),
            _ => return Ok(found),
        }
    }
}

/// Deletes `user`'s entry if it still holds no active session (a user who added one since
/// the sweep found it keeps it).
pub fn decide_expire(
    store: &Draft,
    shard: ShardId,
    user: &SessionUser,
) -> Result<Decision, StoreError> {
    let ops = match stored(store, shard, user)? {
        Some(leases) if leases.active(unix_millis()) == 0 => vec![Op {
            tenant: TENANT,
            key: key(user),
            value: None,
        }],
        _ => Vec::new(),
    };
    Ok(Decision {
        outcome: Outcome::Deleted,
        ops,
        timer: None,
    })
}

/// Add (`adding`) or remove one session of `user`, renewing the others when leases are on.
pub fn decide(
    store: &Draft,
    shard: ShardId,
    user: &SessionUser,
    adding: bool,
    config: &SessionsConfig,
) -> Result<Decision, StoreError> {
    let now = unix_millis();
    let current = load(store, shard, user)?.active(now);
    let (outcome, count) = if adding {
        sessions::add(current, config.max_per_user)
    } else {
        sessions::remove(current)
    };
    let reply = SessionReply {
        outcome,
        user_id: user.clone(),
        active_sessions: count,
        max_sessions: config.max_per_user,
    };
    if matches!(
        outcome,
        SessionOutcome::CapReached | SessionOutcome::NoSessions
    ) {
        return Ok(Decision::answer_only(Outcome::Session(reply)));
    }
    let expiry = config
        .ttl()
        .map_or(u64::MAX, |ttl| now.saturating_add(ttl.as_millis() as u64));
    let value = match count {
        0 => None,
        n => Some(codec::encode(&Leases(vec![expiry; n as usize]))?),
    };
    Ok(Decision {
        outcome: Outcome::Session(reply),
        ops: vec![Op {
            tenant: TENANT,
            key: key(user),
            value,
        }],
        timer: None,
    })
}

/// The sessions service's state machine.
pub struct Sessions {
    /// The cap and the leases.
    pub config: SessionsConfig,
}

/// What the sessions service asks a shard's owner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SessionCommand {
    /// One more session for a user, unless at the cap.
    Add(SessionUser),
    /// One session fewer for a user, unless at 0.
    Remove(SessionUser),
    /// Delete a user's entry if none of its sessions is active any more (the owner's sweep,
    /// when leases are on).
    Expire(SessionUser),
}

impl Service for Sessions {
    const MACHINE: MachineId = MachineId(2);
    const TENANTS: &'static [Tenant] = &[TENANT];
    type Command = SessionCommand;

    fn decide(
        &self,
        command: SessionCommand,
        state: &Draft,
        shard: ShardId,
    ) -> Result<Decision, StoreError> {
        match command {
            SessionCommand::Add(user) => decide(state, shard, &user, true, &self.config),
            SessionCommand::Remove(user) => decide(state, shard, &user, false, &self.config),
            SessionCommand::Expire(user) => decide_expire(state, shard, &user),
        }
    }

    fn adds_data(command: &SessionCommand) -> bool {
        matches!(command, SessionCommand::Add(_))
    }

    fn sweep_interval(&self) -> Option<std::time::Duration> {
        self.config.sweep_interval()
    }

    /// The entries whose sessions all expired.
    fn sweep(
        &self,
        store: &ShardStore,
        shard: ShardId,
        limit: usize,
    ) -> Result<Vec<SessionCommand>, StoreError> {
        let users = expired(store, shard, unix_millis(), limit)?;
        Ok(users.into_iter().map(SessionCommand::Expire).collect())
    }
}

fn shard_of(node: &Node, user: &SessionUser) -> ShardId {
    shard_for_key(user.as_str(), node.inner.cluster.cluster.shards)
}

/// `POST /add-session` and `POST /remove-session`.
pub async fn change(
    node: &Node,
    user: SessionUser,
    adding: bool,
) -> Result<SessionReply, ApiError> {
    let shard = shard_of(node, &user);
    let command = if adding {
        SessionCommand::Add(user)
    } else {
        SessionCommand::Remove(user)
    };
    match machine::call::<Sessions>(node, shard, &command).await? {
        Outcome::Session(reply) => Ok(reply),
        other => Err(ApiError::Internal(format!(
            "unexpected answer to a session command: {other:?}"
        ))),
    }
}

/// `GET /sessions/{user_id}`: 0 for a user with no entry.
pub async fn count(node: &Node, user: SessionUser) -> Result<u32, ApiError> {
    let shard = shard_of(node, &user);
    let query = Query::Get {
        tenant: TENANT,
        key: key(&user),
    };
    match read_shard(node, shard, query).await? {
        QueryAnswer::Value(None) => Ok(0),
        QueryAnswer::Value(Some(bytes)) => codec::decode::<Leases>(&bytes, codec::Limit::Stored)
            .map(|leases| leases.active(unix_millis()))
            .map_err(|e| {
                ApiError::Internal(format!(
                    "stored sessions of {user} in shard {shard} cannot be read: {e}"
                ))
            }),
        other => Err(ApiError::Internal(format!("unexpected answer {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::store::tests::open_with;

    const SHARD: ShardId = ShardId(5);
    const NOW: u64 = 1_000_000;

    fn user(id: &str) -> SessionUser {
        SessionUser::parse(Some(id)).expect("valid user id")
    }

    /// A store holding one entry per `(user, expiries)`, committed as one shard entry.
    async fn store_with(entries: &[(&str, Vec<u64>)]) -> (tempfile::TempDir, ShardStore) {
        let ops = entries
            .iter()
            .map(|(id, expiries)| Op {
                tenant: TENANT,
                key: key(&user(id)),
                value: Some(codec::encode(&Leases(expiries.clone())).expect("encode")),
            })
            .collect();
        open_with(SHARD, ops).await
    }

    #[tokio::test]
    async fn the_sweep_finds_only_users_whose_every_session_expired_and_stops_at_its_limit() {
        let (_dir, store) = store_with(&[
            ("all-expired", vec![NOW - 10, NOW]),
            ("one-active", vec![NOW - 10, NOW + 1]),
            ("no-lease", vec![u64::MAX]),
            ("expired-too", vec![1]),
        ])
        .await;
        let found = expired(&store, SHARD, NOW, 10).expect("scan");
        assert_eq!(found, vec![user("all-expired"), user("expired-too")]);
        let first = expired(&store, SHARD, NOW, 1).expect("scan");
        assert_eq!(first, vec![user("all-expired")]);
    }

    #[tokio::test]
    async fn the_sweep_skips_a_corrupt_entry_and_still_finds_the_expired_ones() {
        let corrupt = Op {
            tenant: TENANT,
            key: key(&user("corrupt")),
            value: Some(vec![codec::FORMAT_VERSION, 200]),
        };
        let expired_op = Op {
            tenant: TENANT,
            key: key(&user("expired")),
            value: Some(codec::encode(&Leases(vec![1])).expect("encode")),
        };
        let (_dir, store) = open_with(SHARD, vec![corrupt, expired_op]).await;
        let found = expired(&store, SHARD, NOW, 10).expect("scan");
        assert_eq!(found, vec![user("expired")]);
    }

    #[tokio::test]
    async fn an_expiry_deletes_an_entry_only_while_none_of_its_sessions_is_active() {
        let now = unix_millis();
        let (_dir, store) = store_with(&[
            ("gone", vec![now - 1]),
            ("renewed", vec![now - 1, now + 60_000]),
        ])
        .await;
        let draft = Draft::new(&store);
        let gone = decide_expire(&draft, SHARD, &user("gone")).expect("decide");
        assert_eq!(
            gone.ops,
            vec![Op {
                tenant: TENANT,
                key: key(&user("gone")),
                value: None,
            }]
        );
        for kept in ["renewed", "never-had-one"] {
            let decision = decide_expire(&draft, SHARD, &user(kept)).expect("decide");
            assert!(decision.ops.is_empty(), "{kept} must be left alone");
        }
    }
}
