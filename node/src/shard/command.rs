//! What services ask of a shard's owner, and what comes back.
//!
//! A [`Command`] is executed by the owner actor against the shard's current state (so checks
//! such as "this id exists" and the change they lead to are atomic per shard); its
//! [`Decision`] carries the answer for the client and the [`Op`]s to replicate. Reads are
//! [`Query`]s, answered by the owner (or a replica when the owner is unreachable) without going
//! through the actor.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use troupe_actors::integers::Average;
use troupe_actors::jobs::Job;
use troupe_actors::parties::Party;
use troupe_actors::sessions::{SessionReply, SessionUser};
use troupe_actors::users::{User, UserId, UserPatch};

use super::draft::Draft;
use super::store::KeyValue;
use super::{Op, ShardStore, StoreError, Tenant};
use crate::config::ClusterConfig;
use crate::ids::ShardId;
use crate::services;

/// A change request for one shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Create a user; conflict if the id exists.
    CreateUser(User),
    /// Merge fields into an existing user.
    UpdateUser(UserPatch),
    /// Delete a user.
    DeleteUser(UserId),
    /// One more session for a user, unless at the cap.
    AddSession(SessionUser),
    /// One session fewer for a user, unless at 0.
    RemoveSession(SessionUser),
    /// Create a job, unless the object had one within the de-duplication window.
    CreateJob {
        /// The object to process (the owner derives the job's id from it).
        object_id: String,
    },
    /// End a job's attempt (sent by the owner actor to itself when the run is over).
    FinishJob {
        /// The job.
        job_id: String,
        /// The attempt that ends.
        attempt: u32,
    },
    /// Run a `processing` job again under this owner.
    RerunJob {
        /// The job.
        job_id: String,
    },
    /// Store a window's average (the integers aggregator).
    StoreAverage(Average),
    /// Open a party (its code is new and hashes to its manager's shard).
    CreateParty(Party),
    /// Add a device to a party (or find it there).
    JoinParty {
        /// The party.
        code: String,
        /// The device.
        device_id: String,
        /// Its name.
        name: String,
    },
    /// Remove a device from a party; the party closes with its last participant.
    LeaveParty {
        /// The party.
        code: String,
        /// The device.
        device_id: String,
    },
    /// Delete a user's session entry if none of its sessions is active any more (sent by the
    /// owner actor to itself when leases are on). Last, so the wire numbers of the others stay.
    ExpireSession(SessionUser),
}

impl Command {
    /// Whether the command may make the stored data larger. A node whose storage is nearly
    /// full refuses these and still takes the others: deletions free space, and the owner's
    /// own bookkeeping (finishing jobs, expiring sessions, storing averages) keeps the
    /// promises already made.
    pub fn adds_data(&self) -> bool {
        match self {
            Command::CreateUser(_)
            | Command::UpdateUser(_)
            | Command::AddSession(_)
            | Command::CreateJob { .. }
            | Command::CreateParty(_)
            | Command::JoinParty { .. } => true,
            Command::DeleteUser(_)
            | Command::RemoveSession(_)
            | Command::LeaveParty { .. }
            | Command::ExpireSession(_)
            | Command::FinishJob { .. }
            | Command::RerunJob { .. }
            | Command::StoreAverage(_) => false,
        }
    }
}

/// The client-facing result of a command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// The user as stored after the command.
    User(User),
    /// The entity was deleted.
    Deleted,
    /// The entity does not exist (the message is for the client).
    NotFound(String),
    /// The command conflicts with the current state (the message is for the client).
    Conflict(String),
    /// The command is refused as a bad request (the message is for the client).
    Invalid(String),
    /// A session command's result (the cap and "no sessions" are outcomes, not errors).
    Session(SessionReply),
    /// A job as stored after the command.
    Job(Job),
    /// Stored (or already there).
    Stored,
    /// A participant of a party: created, joined, or found already there (`existed`).
    Participant {
        /// The party.
        party_code: String,
        /// The participant.
        participant_id: u32,
        /// Whether the device was already in the party.
        existed: bool,
    },
    /// A participant left.
    Left {
        /// The party.
        party_code: String,
        /// Who left.
        participant_id: u32,
        /// The host now (`None`: the party closed).
        host: Option<u32>,
    },
}

/// Work the owner actor schedules once a command is acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowUp {
    /// Send [`Command::FinishJob`] to itself after `after`.
    FinishJob {
        /// The job.
        job_id: String,
        /// The attempt running.
        attempt: u32,
        /// When the run ends.
        after: Duration,
    },
}

/// What executing a command decided: the answer, and the changes that must be durable on every
/// copy before the answer is given (none for a rejection).
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The answer.
    pub outcome: Outcome,
    /// The changes.
    pub ops: Vec<Op>,
    /// What to schedule once the changes are acknowledged.
    pub follow_up: Option<FollowUp>,
}

impl Decision {
    /// An answer with no change (a rejection, or a command that changes nothing).
    pub fn answer_only(outcome: Outcome) -> Self {
        Self {
            outcome,
            ops: Vec::new(),
            follow_up: None,
        }
    }
}

impl Command {
    /// Decides the command against the shard's state in `store`.
    pub fn decide(
        &self,
        store: &Draft,
        shard: ShardId,
        config: &ClusterConfig,
    ) -> Result<Decision, StoreError> {
        use services::{jobs, sessions, users};
        let (sessions_config, jobs_config) = (&config.sessions, &config.jobs);
        match self {
            Self::CreateUser(user) => users::decide_create(store, shard, user),
            Self::UpdateUser(patch) => users::decide_update(store, shard, patch),
            Self::DeleteUser(id) => users::decide_delete(store, shard, id),
            Self::AddSession(user) => sessions::decide(store, shard, user, true, sessions_config),
            Self::RemoveSession(user) => {
                sessions::decide(store, shard, user, false, sessions_config)
            }
            Self::CreateJob { object_id } => {
                jobs::decide_create(store, shard, object_id, jobs_config, config.cluster.shards)
            }
            Self::FinishJob { job_id, attempt } => {
                jobs::decide_finish(store, shard, job_id, *attempt, jobs_config)
            }
            Self::RerunJob { job_id } => jobs::decide_rerun(store, shard, job_id, jobs_config),
            Self::CreateParty(party) => services::parties::decide_create(store, shard, party),
            Self::JoinParty {
                code,
                device_id,
                name,
            } => {
                services::parties::decide_join(store, shard, code, device_id, name, &config.parties)
            }
            Self::LeaveParty { code, device_id } => {
                services::parties::decide_leave(store, shard, code, device_id)
            }
            Self::StoreAverage(average) => {
                services::integers::decide_store(store, shard, average, &config.integers)
            }
            Self::ExpireSession(user) => sessions::decide_expire(store, shard, user),
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
        #[serde(with = "crate::codec::bytes")]
        key: Vec<u8>,
    },
    /// How many entities the tenant has in the shard.
    Count {
        /// The service.
        tenant: Tenant,
    },
    /// Entities whose keys start with `prefix`, in key order.
    Prefix {
        /// The service.
        tenant: Tenant,
        /// Key prefix.
        #[serde(with = "crate::codec::bytes")]
        prefix: Vec<u8>,
        /// Most entities returned.
        limit: u32,
    },
    /// The tenant's entity count in the shard and its first `limit` entities in key order:
    /// what a listing needs from each shard, in one call.
    Page {
        /// The service.
        tenant: Tenant,
        /// Most entities returned.
        limit: u32,
    },
    /// Entities in key order after `after`.
    Scan {
        /// The service.
        tenant: Tenant,
        /// Exclusive start key.
        #[serde(with = "crate::codec::bytes::option")]
        after: Option<Vec<u8>>,
        /// Most entities returned.
        limit: u32,
    },
}

/// The answer to a [`Query`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryAnswer {
    /// For [`Query::Get`].
    Value(#[serde(with = "crate::codec::bytes::option")] Option<Vec<u8>>),
    /// For [`Query::Count`].
    Count(u64),
    /// For [`Query::Scan`]: keys and values.
    Items(Vec<KeyValue>),
    /// For [`Query::Page`].
    Page {
        /// Entities of the tenant in the shard.
        count: u64,
        /// The first of them, keys and values.
        items: Vec<KeyValue>,
    },
}

impl Query {
    /// Whether a change of entity `key` of `tenant` could change this query's answer.
    pub fn touches(&self, tenant: Tenant, key: &[u8]) -> bool {
        match self {
            Self::Get { tenant: t, key: k } => *t == tenant && k == key,
            Self::Prefix {
                tenant: t, prefix, ..
            } => *t == tenant && key.starts_with(prefix),
            Self::Count { tenant: t }
            | Self::Page { tenant: t, .. }
            | Self::Scan { tenant: t, .. } => *t == tenant,
        }
    }

    /// Answers the query from this node's copy of the shard.
    pub fn answer(&self, store: &ShardStore, shard: ShardId) -> Result<QueryAnswer, StoreError> {
        Ok(match self {
            Self::Get { tenant, key } => QueryAnswer::Value(store.get(shard, *tenant, key)?),
            Self::Count { tenant } => QueryAnswer::Count(store.count(shard, *tenant)?),
            Self::Page { tenant, limit } => QueryAnswer::Page {
                count: store.count(shard, *tenant)?,
                items: store.scan(shard, *tenant, None, *limit as usize)?,
            },
            Self::Prefix {
                tenant,
                prefix,
                limit,
            } => QueryAnswer::Items(store.scan_prefix(shard, *tenant, prefix, *limit as usize)?),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_touches_reads_of_its_key_and_every_listing_of_its_tenant_only() {
        let (users, jobs) = (Tenant::USERS, Tenant::JOBS);
        let get = |key: &[u8]| Query::Get {
            tenant: users,
            key: key.to_vec(),
        };
        assert!(get(b"a").touches(users, b"a"));
        assert!(!get(b"a").touches(users, b"b"));
        assert!(!get(b"a").touches(jobs, b"a"));
        let prefix = Query::Prefix {
            tenant: users,
            prefix: b"m1/".to_vec(),
            limit: 10,
        };
        assert!(prefix.touches(users, b"m1/123"));
        assert!(!prefix.touches(users, b"m2/123"));
        for listing in [
            Query::Count { tenant: users },
            Query::Page {
                tenant: users,
                limit: 1,
            },
            Query::Scan {
                tenant: users,
                after: Some(b"z".to_vec()),
                limit: 1,
            },
        ] {
            assert!(listing.touches(users, b"a"), "{listing:?}");
            assert!(!listing.touches(jobs, b"a"), "{listing:?}");
        }
    }
}
