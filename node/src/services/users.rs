//! Users on the shard layer.
//!
//! As a tenant: a user is stored under its canonical id, encoded by the codec; create, update
//! and delete are decided against the stored user by the shard's owner. As a service: each
//! operation goes to the one shard of its id; count and list ask every shard once and merge.

use std::collections::VecDeque;

use futures_util::future::try_join_all;
use serde::{Deserialize, Serialize};
use troupe_actors::users::{self, User, UserId, UserPatch};
use troupe_http::views::{ListFrom, UserPage};
use troupe_http::ApiError;

use crate::codec;
use crate::ids::ShardId;
use crate::node::Node;
use crate::placement::shard_for_key;
use crate::routing::read_shard;
use crate::services::machine::{self, Decision, Outcome, Service};
use crate::shard::draft::Draft;
use crate::shard::query::{Query, QueryAnswer};
use crate::shard::store::KeyValue;
use crate::shard::{MachineId, Op, StoreError, Tenant};

/// The key space of users: part of every stored user's key, so never to change.
pub const TENANT: Tenant = Tenant(1);

/// Users fetched per shard and round trip while merging a list.
const LIST_PAGE: u32 = 1000;

/// The stored key of a user: the 16 bytes of its UUID (byte order sorts like the canonical
/// text, so listing by key is listing by id).
pub fn key(id: &UserId) -> Vec<u8> {
    match uuid::Uuid::parse_str(id.as_str()) {
        Ok(uuid) => uuid.as_bytes().to_vec(),
        // A `UserId` is always a canonical UUID; the text is only a fallback.
        Err(_) => id.as_str().as_bytes().to_vec(),
    }
}

/// A user as stored: the id is the key, so the value holds only the other fields (the stored
/// copies of a user should take at most twice its JSON at replication factor 2). Public so that
/// `troupe-fuzz` decodes it as this service does.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredUser {
    /// The user's name.
    pub name: String,
    /// The user's e-mail address.
    pub email: String,
    /// The user's group.
    pub group: u64,
}

fn id_from_key(key: &[u8]) -> Result<UserId, codec::CodecError> {
    let uuid = uuid::Uuid::from_slice(key)
        .map_err(|e| codec::CodecError::Decode(format!("user key: {e}")))?;
    UserId::parse(&uuid.to_string()).map_err(codec::CodecError::Decode)
}

/// The query that reads one user.
pub fn get_query(id: &UserId) -> Query {
    Query::Get {
        tenant: TENANT,
        key: key(id),
    }
}

/// Decodes a stored user whose id is `id`.
pub fn decode(id: UserId, bytes: &[u8]) -> Result<User, codec::CodecError> {
    let stored: StoredUser = codec::decode(bytes, codec::Limit::Stored)?;
    Ok(User {
        id,
        name: stored.name,
        email: stored.email,
        group: stored.group,
    })
}

fn load(store: &Draft, shard: ShardId, id: &UserId) -> Result<Option<User>, StoreError> {
    match store.get(shard, TENANT, &key(id))? {
        Some(bytes) => Ok(Some(decode(id.clone(), &bytes)?)),
        None => Ok(None),
    }
}

fn put(user: &User) -> Result<Op, StoreError> {
    let stored = StoredUser {
        name: user.name.clone(),
        email: user.email.clone(),
        group: user.group,
    };
    Ok(Op {
        tenant: TENANT,
        key: key(&user.id),
        value: Some(codec::encode(&stored)?),
    })
}

/// Create: 409 if the id exists.
pub fn decide_create(store: &Draft, shard: ShardId, user: &User) -> Result<Decision, StoreError> {
    if load(store, shard, &user.id)?.is_some() {
        return Ok(Decision::answer_only(Outcome::Conflict(
            users::conflict_message(&user.id),
        )));
    }
    Ok(Decision {
        outcome: Outcome::User(user.clone()),
        ops: vec![put(user)?],
        timer: None,
    })
}

/// Partial update: 404 if the id does not exist.
pub fn decide_update(
    store: &Draft,
    shard: ShardId,
    patch: &UserPatch,
) -> Result<Decision, StoreError> {
    let Some(current) = load(store, shard, &patch.id)? else {
        return Ok(Decision::answer_only(Outcome::NotFound(
            users::not_found_message(patch.id.as_str()),
        )));
    };
    let merged = patch.apply(&current);
    if merged == current {
        // Nothing changes: no entry to replicate.
        return Ok(Decision::answer_only(Outcome::User(merged)));
    }
    Ok(Decision {
        outcome: Outcome::User(merged.clone()),
        ops: vec![put(&merged)?],
        timer: None,
    })
}

/// Delete: 404 if the id does not exist.
pub fn decide_delete(store: &Draft, shard: ShardId, id: &UserId) -> Result<Decision, StoreError> {
    if load(store, shard, id)?.is_none() {
        return Ok(Decision::answer_only(Outcome::NotFound(
            users::not_found_message(id.as_str()),
        )));
    }
    Ok(Decision {
        outcome: Outcome::Deleted,
        ops: vec![Op {
            tenant: TENANT,
            key: key(id),
            value: None,
        }],
        timer: None,
    })
}

fn shard_of(node: &Node, id: &UserId) -> ShardId {
    shard_for_key(id.as_str(), node.inner.cluster.cluster.shards)
}

/// The users service's state machine.
pub struct Users;

/// What the users service asks a shard's owner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum UserCommand {
    /// Create a user; conflict if the id exists.
    Create(User),
    /// Merge fields into an existing user.
    Update(UserPatch),
    /// Delete a user.
    Delete(UserId),
}

impl Service for Users {
    const MACHINE: MachineId = MachineId(1);
    const TENANTS: &'static [Tenant] = &[TENANT];
    type Command = UserCommand;

    fn decide(
        &self,
        command: UserCommand,
        state: &Draft,
        shard: ShardId,
    ) -> Result<Decision, StoreError> {
        match command {
            UserCommand::Create(user) => decide_create(state, shard, &user),
            UserCommand::Update(patch) => decide_update(state, shard, &patch),
            UserCommand::Delete(id) => decide_delete(state, shard, &id),
        }
    }

    fn adds_data(command: &UserCommand) -> bool {
        !matches!(command, UserCommand::Delete(_))
    }
}

/// Runs a command at the owner of `id`'s shard.
async fn command(node: &Node, id: &UserId, command: UserCommand) -> Result<Outcome, ApiError> {
    let shard = shard_of(node, id);
    match machine::call::<Users>(node, shard, &command).await? {
        Outcome::NotFound(message) => Err(ApiError::NotFound(message)),
        Outcome::Conflict(message) => Err(ApiError::Conflict(message)),
        outcome => Ok(outcome),
    }
}

fn expect_user(outcome: Outcome) -> Result<User, ApiError> {
    match outcome {
        Outcome::User(user) => Ok(user),
        other => Err(ApiError::Internal(format!(
            "unexpected outcome {other:?} for a user command"
        ))),
    }
}

/// A stored user that cannot be read: a 500 for that user only, whose message (logged at the
/// edge) names the shard and the key.
fn corrupt(shard: ShardId, key: &[u8], error: codec::CodecError) -> ApiError {
    let key = match id_from_key(key) {
        Ok(id) => id.as_str().to_owned(),
        Err(_) => format!("{key:02x?}"),
    };
    ApiError::Internal(format!(
        "stored user {key} in shard {shard} cannot be read: {error}"
    ))
}

/// `POST /api/user`.
pub async fn create(node: &Node, user: User) -> Result<User, ApiError> {
    let id = user.id.clone();
    expect_user(command(node, &id, UserCommand::Create(user)).await?)
}

/// `PUT /api/user`.
pub async fn update(node: &Node, patch: UserPatch) -> Result<User, ApiError> {
    let id = patch.id.clone();
    expect_user(command(node, &id, UserCommand::Update(patch)).await?)
}

/// `DELETE /api/user/{id}`.
pub async fn delete(node: &Node, id: UserId) -> Result<(), ApiError> {
    command(node, &id, UserCommand::Delete(id.clone()))
        .await
        .map(|_| ())
}

/// `GET /api/user/{id}`.
pub async fn get(node: &Node, id: UserId) -> Result<User, ApiError> {
    let shard = shard_of(node, &id);
    match read_shard(node, shard, get_query(&id)).await? {
        QueryAnswer::Value(Some(bytes)) => {
            decode(id.clone(), &bytes).map_err(|e| corrupt(shard, &key(&id), e))
        }
        QueryAnswer::Value(None) => Err(ApiError::NotFound(users::not_found_message(id.as_str()))),
        other => Err(ApiError::Internal(format!("unexpected answer {other:?}"))),
    }
}

fn all_shards(node: &Node) -> impl Iterator<Item = ShardId> {
    (0..node.inner.cluster.cluster.shards).map(ShardId)
}

/// `GET /api/user/count`: one count per shard, from its owner.
pub async fn count(node: &Node) -> Result<u64, ApiError> {
    let counts = try_join_all(all_shards(node).map(|shard| async move {
        let query = Query::Count { tenant: TENANT };
        match read_shard(node, shard, query).await? {
            QueryAnswer::Count(count) => Ok(count),
            other => Err(ApiError::Internal(format!("unexpected answer {other:?}"))),
        }
    }))
    .await?;
    Ok(counts.into_iter().sum())
}

/// `GET /api/user`: a merge, in id order, of every shard's users. Each shard is asked once
/// for its count and first page (from its owner); only a listing deeper than a page per shard
/// asks again. From an offset, the merge steps over `offset` users; after an id, each shard's
/// first page is a range read starting right after it, so the page costs O(limit) per shard
/// whatever its depth (the count still walks each shard's keys, as for the first page).
pub async fn list(node: &Node, from: ListFrom, limit: u32) -> Result<UserPage, ApiError> {
    let (offset, after) = match from {
        ListFrom::Offset(offset) => (offset, None),
        ListFrom::After(id) => (0, Some(key(&id))),
    };
    // One more than the page, so whether more users follow is known without another round.
    let wanted = offset.saturating_add(u64::from(limit)).saturating_add(1);
    let page = u32::try_from(wanted).unwrap_or(LIST_PAGE).min(LIST_PAGE);
    let mut cursors =
        try_join_all(all_shards(node).map(|shard| Cursor::open(node, shard, page, after.clone())))
            .await?;
    let total = cursors.iter().map(|c| c.count).sum();
    let mut users = Vec::new();
    let mut skipped = 0;
    while users.len() < limit as usize {
        let Some(index) = next_cursor(&cursors) else {
            break;
        };
        let cursor = &mut cursors[index];
        if let Some((key, value)) = cursor.items.pop_front() {
            if skipped < offset {
                skipped += 1;
            } else {
                let shard = cursor.shard;
                let id = id_from_key(&key).map_err(|e| corrupt(shard, &key, e))?;
                users.push(decode(id, &value).map_err(|e| corrupt(shard, &key, e))?);
            }
        }
        cursor.refill(node).await?;
    }
    // A cursor refills as soon as it runs dry, so one with nothing buffered has nothing left.
    let more = next_cursor(&cursors).is_some();
    let next_after = if more {
        users.last().map(|user| user.id.clone())
    } else {
        None
    };
    Ok(UserPage {
        users,
        total,
        next_after,
    })
}

/// The cursor whose next user comes first in id order.
fn next_cursor(cursors: &[Cursor]) -> Option<usize> {
    cursors
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.items.front().map(|(key, _)| (key, i)))
        .min()
        .map(|(_, i)| i)
}

/// One shard's users in id order, fetched a page at a time.
struct Cursor {
    shard: ShardId,
    page: u32,
    /// The shard's user count when the cursor opened.
    count: u64,
    items: VecDeque<KeyValue>,
    last_key: Option<Vec<u8>>,
    exhausted: bool,
}

impl Cursor {
    /// Opens at the shard's first user, or right after the key `after`.
    async fn open(
        node: &Node,
        shard: ShardId,
        page: u32,
        after: Option<Vec<u8>>,
    ) -> Result<Self, ApiError> {
        let unexpected = |other| ApiError::Internal(format!("unexpected answer {other:?}"));
        let (count, items) = match after {
            None => {
                let query = Query::Page {
                    tenant: TENANT,
                    limit: page,
                };
                match read_shard(node, shard, query).await? {
                    QueryAnswer::Page { count, items } => (count, items),
                    other => return Err(unexpected(other)),
                }
            }
            Some(after) => {
                let count = Query::Count { tenant: TENANT };
                let scan = Query::Scan {
                    tenant: TENANT,
                    after: Some(after),
                    limit: page,
                };
                let (count, items) = futures_util::future::try_join(
                    read_shard(node, shard, count),
                    read_shard(node, shard, scan),
                )
                .await?;
                match (count, items) {
                    (QueryAnswer::Count(count), QueryAnswer::Items(items)) => (count, items),
                    (QueryAnswer::Count(_), other) | (other, _) => return Err(unexpected(other)),
                }
            }
        };
        Ok(Self {
            shard,
            page,
            count,
            exhausted: items.len() < page as usize,
            last_key: items.last().map(|(key, _)| key.clone()),
            items: items.into(),
        })
    }

    /// Fetches the next page once the buffered one is used up.
    async fn refill(&mut self, node: &Node) -> Result<(), ApiError> {
        if !self.items.is_empty() || self.exhausted {
            return Ok(());
        }
        let query = Query::Scan {
            tenant: TENANT,
            after: self.last_key.clone(),
            limit: self.page,
        };
        let items = match read_shard(node, self.shard, query).await? {
            QueryAnswer::Items(items) => items,
            other => return Err(ApiError::Internal(format!("unexpected answer {other:?}"))),
        };
        self.exhausted = items.len() < self.page as usize;
        self.last_key = items.last().map(|(key, _)| key.clone());
        self.items = items.into();
        Ok(())
    }
}
