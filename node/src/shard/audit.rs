//! What the shard layer does, for an observer that checks it: the simulation installs one
//! ([`install`]) and asserts, over every node at once, what no client can see (an epoch
//! never goes backwards on a copy; an acknowledged entry is on `replication_factor` copies;
//! one owner per epoch; no copy answers under an epoch once a newer one is served).
//! Production installs none, and a report then costs one atomic load.

use std::sync::OnceLock;

use super::{Epoch, ShardMeta};
use crate::ids::{NodeId, ShardId};

/// One thing the shard layer did on this node.
#[derive(Debug)]
pub enum Observation<'a> {
    /// This node started serving `shard` as owner of `epoch`.
    Serving {
        /// The shard.
        shard: ShardId,
        /// The epoch it sealed.
        epoch: &'a Epoch,
    },
    /// A write to this node's copy of `shard` committed, leaving its bookkeeping at `meta`.
    Copy {
        /// The shard.
        shard: ShardId,
        /// The copy's epoch and position after the write.
        meta: &'a ShardMeta,
    },
    /// This node answered a read of `shard` from its copy under `epoch`: as the owner serving
    /// `epoch`, or as a replica the owner of `epoch` brought up to date. Reported when the answer
    /// is fixed (the copy was read and could still answer), before it is sent.
    Read {
        /// The shard.
        shard: ShardId,
        /// The epoch the copy answered under.
        epoch: &'a Epoch,
    },
    /// This node's owner actor, serving `epoch`, decided a batch of `shard`'s commands from
    /// its copy: commands that change nothing are answered from this decision, and the others'
    /// changes become the entry acknowledged next ([`Observation::Acknowledged`]), if every
    /// replica takes it.
    Decided {
        /// The shard.
        shard: ShardId,
        /// The epoch the batch was decided under.
        epoch: &'a Epoch,
    },
    /// This node, owner of `epoch`, acknowledged the entry `seq` of `shard` to its client.
    Acknowledged {
        /// The shard.
        shard: ShardId,
        /// The epoch it was written under.
        epoch: &'a Epoch,
        /// Its sequence number.
        seq: u64,
        /// The replicas the owner wrote it to (all answered that they hold it).
        replicas: Vec<&'a NodeId>,
        /// Replicas placement keeps for the shard that are down and held back (decision 006):
        /// meanwhile a write is acknowledged with that many copies fewer.
        held_back: usize,
    },
}

/// Receives every observation of every node of the process.
pub type Auditor = fn(&Observation<'_>);

static AUDITOR: OnceLock<Auditor> = OnceLock::new();

/// Installs the process's auditor (the simulation's); the first one installed stays.
pub fn install(auditor: Auditor) {
    let _ = AUDITOR.set(auditor);
}

/// Reports `observation` to the auditor, if one is installed.
pub(crate) fn report(observation: Observation<'_>) {
    if let Some(auditor) = AUDITOR.get() {
        auditor(&observation);
    }
}
