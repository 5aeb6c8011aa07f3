//! Sessions (issue 4) on the shard layer: one entry per user with an active session, holding
//! the expiry of each session (`u64::MAX` when leases are off). The owner of the user's shard
//! decides every add and remove, so the cap holds exactly under any concurrency; an entry is
//! deleted when its last session goes.

use serde::{Deserialize, Serialize};
use troupe_actors::sessions::{self, SessionOutcome, SessionReply, SessionUser};
use troupe_http::ApiError;

use crate::clock::unix_millis;
use crate::codec;
use crate::config::SessionsConfig;
use crate::ids::ShardId;
use crate::node::Node;
use crate::placement::shard_for_key;
use crate::routing::{call_owner, read_shard};
use crate::rpc::wire::Response;
use crate::shard::command::{Command, Decision, Outcome, Query, QueryAnswer};
use crate::shard::draft::Draft;
use crate::shard::{Op, StoreError, Tenant};

/// A user's active sessions: the expiry of each, in Unix milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leases(Vec<u64>);

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
    match store.get(shard, Tenant::SESSIONS, &key(user))? {
        Some(bytes) => Ok(codec::decode(&bytes)?),
        None => Ok(Leases::default()),
    }
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
            tenant: Tenant::SESSIONS,
            key: key(user),
            value,
        }],
        follow_up: None,
    })
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
        Command::AddSession(user)
    } else {
        Command::RemoveSession(user)
    };
    match call_owner(node, shard, command).await? {
        Response::Outcome(Outcome::Session(reply)) => Ok(reply),
        other => Err(ApiError::Internal(format!(
            "unexpected answer to a session command: {other:?}"
        ))),
    }
}

/// `GET /sessions/{user_id}`: 0 for a user with no entry.
pub async fn count(node: &Node, user: SessionUser) -> Result<u32, ApiError> {
    let shard = shard_of(node, &user);
    let query = Query::Get {
        tenant: Tenant::SESSIONS,
        key: key(&user),
    };
    match read_shard(node, shard, query).await? {
        QueryAnswer::Value(None) => Ok(0),
        QueryAnswer::Value(Some(bytes)) => codec::decode::<Leases>(&bytes)
            .map(|leases| leases.active(unix_millis()))
            .map_err(|e| ApiError::Internal(format!("stored sessions cannot be read: {e}"))),
        other => Err(ApiError::Internal(format!("unexpected answer {other:?}"))),
    }
}
