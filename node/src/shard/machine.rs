//! What the shard engine runs: state machines, registered at boot, that decide commands against
//! a shard's stored state (decision 030).
//!
//! The engine (the owner actor, its batches, replication, sealing) knows no service by name. A
//! [`Command`] is a [`MachineId`] and the machine's own encoding of its command; the engine
//! hands it to the registered [`StateMachine`] with that id, which decides it against a
//! [`Draft`] and answers with a [`Decision`]: its encoded answer for the caller, the changes to
//! replicate, and at most one [`Timer`], a command of its own that the engine runs later (a
//! job's finish). A machine may also name commands to run when its owner starts serving
//! ([`StateMachine::on_serving`]: jobs left `processing` by a previous owner are re-run) and
//! every so often ([`StateMachine::sweep`]: expired session entries are deleted). The services,
//! a layer above, implement the trait and build the [`Machines`] the node passes to
//! [`Shards::new`](super::host::Shards::new).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::draft::Draft;
use super::{Op, ShardStore, StoreError};
use crate::ids::ShardId;

/// Which state machine a command is for: a service's number, given once in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MachineId(pub u8);

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "machine {}", self.0)
    }
}

/// A change request for one shard, as the engine and the wire carry it: which machine decides
/// it, and that machine's encoding of it (opaque to the engine).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The machine that decides it.
    pub machine: MachineId,
    /// The command, encoded by the machine.
    #[serde(with = "crate::codec::bytes")]
    pub body: Vec<u8>,
}

/// A command the engine runs on its own once `after` has passed (one deadline queue per owner;
/// every timer due within [`TICK`](super::timers::TICK) of the first fires in one batch). A
/// timer is known by its `key`; only the newest `version` of a key counts: when the engine
/// takes the shard over again, a command [`StateMachine::on_serving`] names is not run if a
/// timer with its key and version is still pending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timer {
    /// What the timer is about (a job's id).
    pub key: Vec<u8>,
    /// Which round of it (the job's attempt).
    pub version: u64,
    /// How long after the acknowledgement.
    pub after: Duration,
    /// What to run then.
    pub command: Command,
}

/// What deciding a command led to: the caller's answer, and the changes that must be durable on
/// every copy before it is given (none for a rejection).
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The answer, encoded by the machine (the caller decodes it).
    pub answer: Vec<u8>,
    /// The changes.
    pub ops: Vec<Op>,
    /// What to run later, once the changes are acknowledged.
    pub timer: Option<Timer>,
}

/// A command the engine runs on its own when it starts serving a shard, unless a timer with
/// the same key and version is still pending (see [`Timer`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    /// The pending timer's key this replaces.
    pub key: Vec<u8>,
    /// And its version.
    pub version: u64,
    /// What to run.
    pub command: Command,
}

/// A service's rules for its part of every shard: the engine calls it and nothing else of it.
pub trait StateMachine: Send + Sync + 'static {
    /// Decides `body` (a command of this machine) against the shard's state in `state`: the
    /// store plus the changes decided earlier in the same batch. An error is a store failure;
    /// a command the machine refuses is an answer of its own.
    fn decide(&self, body: &[u8], state: &Draft, shard: ShardId) -> Result<Decision, StoreError>;

    /// Whether the command may make the stored data larger. A node whose storage is nearly
    /// full refuses these and still takes the others.
    fn adds_data(&self, body: &[u8]) -> bool;

    /// Commands to run once an owner starts serving `shard` (after every seal).
    fn on_serving(&self, _store: &ShardStore, _shard: ShardId) -> Result<Vec<Resume>, StoreError> {
        Ok(Vec::new())
    }

    /// How often the owner asks [`Self::sweep`]; `None`: never.
    fn sweep_interval(&self) -> Option<Duration> {
        None
    }

    /// At most `limit` commands that clean the shard up (deleting what expired). The next
    /// sweep starts only once these are acknowledged; one that returns `limit` commands is
    /// followed by another as soon as they are.
    fn sweep(
        &self,
        _store: &ShardStore,
        _shard: ShardId,
        _limit: usize,
    ) -> Result<Vec<Command>, StoreError> {
        Ok(Vec::new())
    }
}

/// The state machines of a node, by id: built once at boot, shared by every owner actor.
#[derive(Clone, Default)]
pub struct Machines {
    machines: Vec<(MachineId, Arc<dyn StateMachine>)>,
}

impl fmt::Debug for Machines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<u8> = self.machines.iter().map(|(id, _)| id.0).collect();
        f.debug_struct("Machines").field("ids", &ids).finish()
    }
}

/// Why a machine could not be registered.
#[derive(Debug, thiserror::Error)]
#[error("{0} is registered twice")]
pub struct DuplicateMachine(pub MachineId);

impl Machines {
    /// Adds `machine` under `id`.
    pub fn register(
        &mut self,
        id: MachineId,
        machine: Arc<dyn StateMachine>,
    ) -> Result<(), DuplicateMachine> {
        if self.get(id).is_some() {
            return Err(DuplicateMachine(id));
        }
        self.machines.push((id, machine));
        Ok(())
    }

    /// The machine registered under `id`.
    pub fn get(&self, id: MachineId) -> Option<&Arc<dyn StateMachine>> {
        self.machines
            .iter()
            .find_map(|(known, machine)| (*known == id).then_some(machine))
    }

    /// Every machine, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = (MachineId, &Arc<dyn StateMachine>)> {
        self.machines.iter().map(|(id, machine)| (*id, machine))
    }

    /// Whether `command` may make the stored data larger (see [`StateMachine::adds_data`]);
    /// a command of no known machine adds nothing (it is refused when decided).
    pub fn adds_data(&self, command: &Command) -> bool {
        self.get(command.machine)
            .is_some_and(|machine| machine.adds_data(&command.body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;

    impl StateMachine for Nothing {
        fn decide(&self, _: &[u8], _: &Draft, _: ShardId) -> Result<Decision, StoreError> {
            Ok(Decision {
                answer: Vec::new(),
                ops: Vec::new(),
                timer: None,
            })
        }
        fn adds_data(&self, body: &[u8]) -> bool {
            !body.is_empty()
        }
    }

    #[test]
    fn a_machine_id_is_registered_once_and_commands_reach_their_machine_only() {
        let mut machines = Machines::default();
        machines
            .register(MachineId(1), Arc::new(Nothing))
            .expect("first");
        assert!(machines.register(MachineId(1), Arc::new(Nothing)).is_err());
        let command = |machine, body: &[u8]| Command {
            machine: MachineId(machine),
            body: body.to_vec(),
        };
        assert!(machines.adds_data(&command(1, b"x")));
        assert!(!machines.adds_data(&command(1, b"")));
        assert!(!machines.adds_data(&command(2, b"x")), "no such machine");
    }
}
