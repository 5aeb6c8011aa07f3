//! What services ask of a shard's owner, and what comes back.
//!
//! A [`Command`] is executed by the owner actor against the shard's current state (so checks
//! such as "this id exists" and the change they lead to are atomic per shard); its
//! [`Decision`] carries the answer for the client and the [`Op`]s to replicate. Reads are
//! [`Query`]s, answered by the owner (or a replica when the owner is unreachable) without going
//! through the actor.

use serde::{Deserialize, Serialize};
use troupe_actors::users::{User, UserId, UserPatch};

use super::store::KeyValue;
use super::{Op, ShardStore, StoreError, Tenant};
use crate::ids::ShardId;
use crate::services;

/// A change request for one shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Create a user; conflict if the id exists.
    CreateUser(User),
    /// Merge fields into an existing user.
    UpdateUser(UserPatch),
    /// Delete a user.
    DeleteUser(UserId),
}

/// The client-facing result of a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The user as stored after the command.
    User(User),
    /// The entity was deleted.
    Deleted,
    /// The entity does not exist (the message is for the client).
    NotFound(String),
    /// The command conflicts with the current state (the message is for the client).
    Conflict(String),
}

/// What executing a command decided: the answer, and the changes that must be durable on every
/// copy before the answer is given (none for a rejection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The answer.
    pub outcome: Outcome,
    /// The changes.
    pub ops: Vec<Op>,
}

impl Decision {
    /// An answer with no change (a rejection, or a command that changes nothing).
    pub fn answer_only(outcome: Outcome) -> Self {
        Self {
            outcome,
            ops: Vec::new(),
        }
    }
}

impl Command {
    /// Decides the command against the shard's state in `store`.
    pub fn decide(&self, store: &ShardStore, shard: ShardId) -> Result<Decision, StoreError> {
        match self {
            Self::CreateUser(user) => services::users::decide_create(store, shard, user),
            Self::UpdateUser(patch) => services::users::decide_update(store, shard, patch),
            Self::DeleteUser(id) => services::users::decide_delete(store, shard, id),
        }
    }
}

/// A read of one shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// One entity's value.
    Get {
        /// The service.
        tenant: Tenant,
        /// The entity key.
        key: Vec<u8>,
    },
    /// How many entities the tenant has in the shard.
    Count {
        /// The service.
        tenant: Tenant,
    },
    /// Entities in key order after `after`.
    Scan {
        /// The service.
        tenant: Tenant,
        /// Exclusive start key.
        after: Option<Vec<u8>>,
        /// Most entities returned.
        limit: u32,
    },
}

/// The answer to a [`Query`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryAnswer {
    /// For [`Query::Get`].
    Value(Option<Vec<u8>>),
    /// For [`Query::Count`].
    Count(u64),
    /// For [`Query::Scan`]: keys and values.
    Items(Vec<KeyValue>),
}

impl Query {
    /// Answers the query from this node's copy of the shard.
    pub fn answer(&self, store: &ShardStore, shard: ShardId) -> Result<QueryAnswer, StoreError> {
        Ok(match self {
            Self::Get { tenant, key } => QueryAnswer::Value(store.get(shard, *tenant, key)?),
            Self::Count { tenant } => QueryAnswer::Count(store.count(shard, *tenant)?),
            Self::Scan {
                tenant,
                after,
                limit,
            } => {
                QueryAnswer::Items(store.scan(shard, *tenant, after.as_deref(), *limit as usize)?)
            }
        })
    }
}
