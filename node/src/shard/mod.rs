//! Replicated shards: the engine every stateful service stores its entities in, a replicated
//! state machine that knows no service by name. Implements
//! `docs/decisions/004-shard-replication.md`; the services plug in as [`StateMachine`]s
//! (decision 030).
//!
//! - [`machine`]: the [`StateMachine`] trait the services implement (decide a command, react to
//!   becoming owner, sweep, timers) and the registry of them built at boot.
//! - [`store`]: a shard's state on one node in LMDB: entities, a short change log, and the
//!   shard's epoch and applied sequence number, all changed in one transaction.
//! - [`owner`]: the ractor actor that owns a shard on its owner node: it seals the shard with a
//!   new epoch, serializes commands, and acknowledges a change only once every replica has it.
//! - [`replica`]: what any holder of a shard answers to the owner (seal, replicate, catch up,
//!   drop) and to readers.
//! - [`sync`]: bringing a lagging holder up to date from another (missing log entries, or a
//!   snapshot when the log no longer reaches back).
//! - [`host`]: follows the topology and starts, reconfigures and stops owner actors.
//! - [`peer`]: what holders ask each other (seal, replicate, catch-up, pre-copy, drop, lease
//!   checks) and [`Peers`], the trait the node implements to carry it.
//! - [`refusal`]: why a command, read or peer request was not carried out.
//! - [`lease`]: the owner lease, renewed by lease checks every gossip round.
//! - [`caller`]: which node may send which peer request (the owner of the epoch it names).
//! - [`query`]: reads of a shard, alike for every service.
//! - [`draft`]: the state a command of a batch is decided against (group commit).
//! - [`timers`]: the commands an owner runs later (a job's finish), batched by deadline.
//! - [`backlog`]: what waits at an owner (commands, timers, sweep commands), read for
//!   `/metrics`.

pub mod audit;
pub mod backlog;
pub mod caller;
pub mod draft;
pub mod host;
pub mod lease;
pub mod machine;
pub mod owner;
pub mod peer;
pub mod query;
pub mod refusal;
pub mod replica;
pub mod scans;
pub mod store;
pub mod sync;
pub mod takeover;
pub mod timers;

use serde::{Deserialize, Serialize};

use crate::config::HostPort;
pub use crate::ids::Epoch;
use crate::ids::NodeId;

pub use machine::{Command, Decision, MachineId, Machines, StateMachine, Timer};
pub use peer::{PeerError, PeerReply, PeerRequest, Peers};
pub use refusal::Refusal;
pub use store::{ShardStore, StoreError};

/// Which key space an entity belongs to; part of every stored key (its first byte after the
/// shard), so services share shards without sharing key spaces. Each service defines the bytes
/// it owns next to its rules (`services::*::TENANT`) and the engine names none of them; the
/// service registry refuses a byte claimed twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Tenant(pub u8);

/// One entity change: `value = None` deletes the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// The service.
    pub tenant: Tenant,
    /// The entity key within the tenant.
    #[serde(with = "crate::codec::bytes")]
    pub key: Vec<u8>,
    /// The new value, or `None` to delete.
    #[serde(with = "crate::codec::bytes::option")]
    pub value: Option<Vec<u8>>,
}

impl Op {
    /// Bytes of key and value: what the change adds to an entry.
    pub fn bytes(&self) -> usize {
        self.key.len() + self.value.as_ref().map_or(0, Vec::len)
    }
}

/// One numbered change of a shard: what the owner of `epoch` decided at sequence `seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the shard's history, from 1.
    pub seq: u64,
    /// The epoch of the owner that wrote it.
    pub epoch: Epoch,
    /// The changes, applied together.
    pub ops: Vec<Op>,
    /// Holders may drop the log entries before this sequence number: every copy the owner
    /// knew of had confirmed them when it wrote this entry. 0 when some copy may be behind;
    /// the log then keeps its last [`store::LOG_KEEP`] entries.
    pub trim_before: u64,
}

/// Where a holder's history of a shard ends: the sequence number applied last and the epoch
/// that wrote it (`None` before the first entry). Two holders with the same position have the
/// same history, because one epoch has one owner and entries are only appended in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    /// The epoch of the last applied entry; compared first, as in Raft's "more up to date".
    pub last_epoch: Option<Epoch>,
    /// The last applied sequence number.
    pub applied: u64,
}

/// A shard's bookkeeping on one holder.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    /// The newest epoch this holder has promised to follow; changes from older epochs are
    /// refused (fencing).
    pub epoch: Option<Epoch>,
    /// Where its history ends.
    pub position: Position,
    /// A snapshot install started and has not finished: the entities are incomplete and the
    /// holder needs a fresh snapshot whatever its position says.
    pub installing: bool,
}

/// Another node as the shard layer addresses it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Peer {
    /// Its id (checked in the RPC handshake).
    pub node_id: NodeId,
    /// Where its RPC listener is.
    pub rpc_addr: HostPort,
}
