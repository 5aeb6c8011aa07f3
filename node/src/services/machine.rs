//! How a service plugs into the shard engine (decision 030): the [`Service`] trait each one
//! implements with its own command type, the [`Outcome`]s they answer with, and the adapter
//! that makes a [`Service`] the engine's [`StateMachine`] (decoding its commands, encoding its
//! answers). [`call`] runs a service's command at its shard's owner and decodes the answer.

use std::fmt::Debug;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use troupe_actors::jobs::Job;
use troupe_actors::sessions::SessionReply;
use troupe_actors::users::User;
use troupe_http::ApiError;

use crate::codec::{self, Limit};
use crate::ids::ShardId;
use crate::node::Node;
use crate::protocol::Response;
use crate::routing::call_owner;
use crate::shard::draft::Draft;
use crate::shard::machine::{self, Command, MachineId, Resume, StateMachine, Timer};
use crate::shard::{Op, ShardStore, StoreError, Tenant};

/// A service's rules for its part of a shard, with its own command type: what the engine's
/// [`StateMachine`] is, before encoding.
pub trait Service: Send + Sync + 'static {
    /// The service's number in the registry (and on the wire).
    const MACHINE: MachineId;
    /// The key spaces the service stores its entities under, and any it stored under in an
    /// earlier layout: a byte is never reused, so the registry refuses one claimed twice.
    const TENANTS: &'static [Tenant];
    /// What callers ask the service's shard owner.
    type Command: Serialize + DeserializeOwned + Debug;

    /// Decides `command` against the shard's state (see [`StateMachine::decide`]).
    fn decide(
        &self,
        command: Self::Command,
        state: &Draft,
        shard: ShardId,
    ) -> Result<Decision, StoreError>;

    /// Whether the command may make the stored data larger (see [`StateMachine::adds_data`]).
    fn adds_data(command: &Self::Command) -> bool;

    /// See [`StateMachine::on_serving`].
    fn on_serving(&self, _store: &ShardStore, _shard: ShardId) -> Result<Vec<Resume>, StoreError> {
        Ok(Vec::new())
    }

    /// See [`StateMachine::sweep_interval`].
    fn sweep_interval(&self) -> Option<Duration> {
        None
    }

    /// See [`StateMachine::sweep`].
    fn sweep(
        &self,
        _store: &ShardStore,
        _shard: ShardId,
        _limit: usize,
    ) -> Result<Vec<Self::Command>, StoreError> {
        Ok(Vec::new())
    }
}

/// The engine's form of a command of service `S`.
pub fn command<S: Service>(command: &S::Command) -> Result<Command, codec::CodecError> {
    Ok(Command {
        machine: S::MACHINE,
        body: codec::encode(command)?,
    })
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

/// What deciding a service's command led to: the answer, the changes that must be durable on
/// every copy before it is given (none for a rejection), and what to run later.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The answer.
    pub outcome: Outcome,
    /// The changes.
    pub ops: Vec<Op>,
    /// A command of the service's own to run once the changes are acknowledged.
    pub timer: Option<Timer>,
}

impl Decision {
    /// An answer with no change (a rejection, or a command that changes nothing).
    pub fn answer_only(outcome: Outcome) -> Self {
        Self {
            outcome,
            ops: Vec::new(),
            timer: None,
        }
    }
}

/// A [`Service`] as the engine runs it.
pub struct Machine<S>(pub S);

impl<S: Service> StateMachine for Machine<S> {
    fn decide(
        &self,
        body: &[u8],
        state: &Draft,
        shard: ShardId,
    ) -> Result<machine::Decision, StoreError> {
        let decision = match codec::decode::<S::Command>(body, Limit::Message) {
            Ok(command) => self.0.decide(command, state, shard)?,
            // From a peer of another build: refused, nothing changes.
            Err(error) => Decision::answer_only(Outcome::Invalid(format!(
                "{} cannot read the command: {error}",
                S::MACHINE
            ))),
        };
        Ok(machine::Decision {
            answer: codec::encode(&decision.outcome)?,
            ops: decision.ops,
            timer: decision.timer,
        })
    }

    fn adds_data(&self, body: &[u8]) -> bool {
        codec::decode::<S::Command>(body, Limit::Message).is_ok_and(|c| S::adds_data(&c))
    }

    fn on_serving(&self, store: &ShardStore, shard: ShardId) -> Result<Vec<Resume>, StoreError> {
        self.0.on_serving(store, shard)
    }

    fn sweep_interval(&self) -> Option<Duration> {
        self.0.sweep_interval()
    }

    fn sweep(
        &self,
        store: &ShardStore,
        shard: ShardId,
        limit: usize,
    ) -> Result<Vec<Command>, StoreError> {
        let commands = self.0.sweep(store, shard, limit)?;
        Ok(commands
            .iter()
            .map(command::<S>)
            .collect::<Result<_, _>>()?)
    }
}

/// Runs `command` of service `S` at the owner of `shard` ([`call_owner`]) and decodes its
/// outcome; any other answer is a 500.
pub async fn call<S: Service>(
    node: &Node,
    shard: ShardId,
    command: &S::Command,
) -> Result<Outcome, ApiError> {
    let encoded = self::command::<S>(command).map_err(|e| ApiError::Internal(e.to_string()))?;
    match call_owner(node, shard, encoded).await? {
        Response::Outcome(answer) => codec::decode(&answer, Limit::Message).map_err(|error| {
            ApiError::Internal(format!(
                "cannot read the answer of {} to {command:?}: {error}",
                S::MACHINE
            ))
        }),
        other => Err(ApiError::Internal(format!(
            "unexpected answer from shard {shard}'s owner to {command:?}: {other:?}"
        ))),
    }
}

/// The outcome of a command run at this node's own owner of `shard`, waiting at most `wait`
/// (the integers aggregator, which runs on its shard's owner).
pub async fn run_here<S: Service>(
    node: &Node,
    shard: ShardId,
    command: &S::Command,
    wait: Duration,
) -> Result<Outcome, String> {
    let encoded = self::command::<S>(command).map_err(|e| e.to_string())?;
    let answer = node
        .inner
        .shards
        .command(shard, encoded, wait)
        .await
        .map_err(|refusal| format!("{refusal:?}"))?;
    codec::decode(&answer, Limit::Message).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use troupe_actors::users::{User, UserId};

    use super::*;
    use crate::services::users::{UserCommand, Users};

    fn user() -> User {
        User {
            id: UserId::parse("00000000-0000-4000-8000-000000000007").expect("uuid"),
            name: "Ada".into(),
            email: "ada@x".into(),
            group: 1,
        }
    }

    #[tokio::test]
    async fn a_command_the_machine_cannot_read_is_answered_invalid_and_changes_nothing() {
        let (_dir, store) = crate::shard::store::tests::open_with(ShardId(0), Vec::new()).await;
        let draft = Draft::new(&store);
        let decision = Machine(Users)
            .decide(b"not a command", &draft, ShardId(0))
            .expect("decided");
        assert!(decision.ops.is_empty() && decision.timer.is_none());
        let outcome: Outcome = codec::decode(&decision.answer, Limit::Message).expect("outcome");
        assert!(matches!(outcome, Outcome::Invalid(_)), "{outcome:?}");
        assert!(!Machine(Users).adds_data(b"not a command"));
    }

    #[tokio::test]
    async fn a_command_round_trips_through_the_engine_and_its_outcome_comes_back_encoded() {
        let (_dir, store) = crate::shard::store::tests::open_with(ShardId(0), Vec::new()).await;
        let draft = Draft::new(&store);
        let create = command::<Users>(&UserCommand::Create(user())).expect("encode");
        assert_eq!(create.machine, Users::MACHINE);
        let machine = Machine(Users);
        assert!(machine.adds_data(&create.body));
        let decision = machine
            .decide(&create.body, &draft, ShardId(0))
            .expect("decided");
        assert_eq!(decision.ops.len(), 1, "the user is stored");
        let outcome: Outcome = codec::decode(&decision.answer, Limit::Message).expect("outcome");
        assert_eq!(outcome, Outcome::User(user()));
        let delete = command::<Users>(&UserCommand::Delete(user().id)).expect("encode");
        assert!(!machine.adds_data(&delete.body), "a delete frees space");
    }
}
