//! The owner of one shard: a ractor actor, spawned by [`Shards`](super::host::Shards) on the
//! node placement makes the shard's owner, stopped when ownership moves away.
//!
//! It handles one message at a time, which is what makes a shard's commands atomic. Commands
//! are group-committed: those that arrive while an entry is being replicated wait in a queue,
//! and the next [`OwnerMsg::Flush`] decides them one after the other (each sees the changes of
//! the ones before, through a [`Draft`]), writes all their changes as one entry, replicates it
//! in one message per replica, and answers them all once it is durable everywhere. A lone
//! command waits for nothing: its flush is the next message. A command still queued when its
//! caller stops waiting (the deadline the caller sent) is dropped undecided. Before its first
//! command (and after every change of its replica set) it
//! seals the shard with a new epoch: every live member promises to follow that epoch (fencing
//! the previous owner), the most advanced copy is pulled if it is not this one, and every replica
//! is brought up to date. A write is acknowledged only once the owner and every replica have it
//! durably, and only while this node sees a majority of the cluster.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::audit;
use super::backlog::OwnerBacklog;
use super::draft::Draft;
use super::host::{peer_of, OwnerView, Shards, LEASE_MARGIN_ROUNDS};
use super::machine::{Command, Decision, MachineId, Timer};
use super::peer::{self, PeerError, PeerReply, PeerRequest};
use super::refusal::Refusal;
use super::sync::{self, SYNC_CALL_TIMEOUT};
use super::takeover::{self, Unsealed};
use super::{Entry, Epoch, Op, Peer, Position, StoreError};
use crate::ids::{NodeId, ShardId};
use crate::metrics::UntrimmedLabel;
use crate::topology::Topology;

/// Gossip rounds without a live member appearing before this node takes a shard over: right
/// after a join, a restart or a healed partition, its view may still miss live members that
/// hold newer copies (decision 007).
const VIEW_SETTLE_ROUNDS: u32 = 3;
/// Least time between two seal attempts of one shard (a failed seal is retried, not spun).
const SEAL_RETRY: Duration = Duration::from_millis(250);
/// Pause before a self-sent command that was not acknowledged is tried again.
const RUN_RETRY: Duration = Duration::from_secs(1);
/// Gossip rounds a fenced owner waits before it takes its shard back.
const FENCED_PAUSE_ROUNDS: u32 = 4;
/// Seal rounds before giving up when other owners keep fencing this one.
const SEAL_ROUNDS: usize = 4;
/// Most commands group-committed in one entry.
const BATCH_COMMANDS: usize = 64;
/// Most bytes of changes (keys and values) in one entry, unless one command alone has more;
/// also at most [`RpcConfig::max_entry_bytes`](crate::config::RpcConfig::max_entry_bytes), so
/// the entry always fits a replicate message. A command whose change alone is larger than that
/// is refused ([`Refusal::TooLarge`]).
const BATCH_BYTES: usize = 256 << 10;
/// Most commands one sweep of a machine queues ([`StateMachine::sweep`]); a full sweep is
/// followed by another once its commands are acknowledged.
///
/// [`StateMachine::sweep`]: super::machine::StateMachine::sweep
const SWEEP_LIMIT: usize = 256;

/// The actor (stateless; its state is [`OwnerState`]).
pub struct ShardOwner;

/// Start-up arguments.
pub struct OwnerArgs {
    /// The node's shard layer.
    pub shards: Shards,
    /// The shard owned.
    pub shard: ShardId,
    /// Replicas and other members at start.
    pub view: OwnerView,
    /// What waits at this owner, shared with the host for `/metrics`.
    pub(crate) backlog: Arc<OwnerBacklog>,
}

/// Messages.
pub enum OwnerMsg {
    /// Execute a command and answer with its outcome or why not (queued for the next
    /// [`OwnerMsg::Flush`]), unless it is still queued at the deadline (when its caller stops
    /// waiting).
    Command(Command, RpcReplyPort<Result<Vec<u8>, Refusal>>, Instant),
    /// Execute the queued commands as one batch (sent by the actor to itself after queueing
    /// the first command of a batch).
    Flush,
    /// The replica set changed: re-seal with a new epoch.
    Reconfigure(OwnerView),
    /// Try sealing again after a failure.
    Reseal,
    /// This node's lease lapsed: stop serving, and take the shard over again (new epoch, newest
    /// copy) once the lease is back (`shard::lease`).
    LeaseLapsed,
    /// Bring every replica up to this copy, so that changes whose replication failed are
    /// confirmed (and readable here) even if no other write follows; repeated until it works.
    Confirm,
    /// Another node sealed the shard with a newer epoch.
    Fenced,
    /// Another node is taking the shard over: answered once the batch in flight is done
    /// (messages are handled in order), after which this actor no longer serves, so the new
    /// owner's seal interrupts no write. Commands still queued are then answered `Moving`, and
    /// the router retries them at the new owner.
    Release(RpcReplyPort<()>),
    /// Run the commands of the timers now due ([`Timers`](super::timers::Timers)).
    TimersDue,
    /// A command the actor sends itself (a timer's, a sweep's, or one a machine asked for when
    /// this owner started serving), batched like the others; retried until it is acknowledged
    /// or the actor stops.
    Run(Command, Origin),
    /// Ask this machine for its clean-up commands ([`StateMachine::sweep`]), every
    /// [`StateMachine::sweep_interval`].
    ///
    /// [`StateMachine::sweep`]: super::machine::StateMachine::sweep
    /// [`StateMachine::sweep_interval`]: super::machine::StateMachine::sweep_interval
    Sweep(MachineId),
    /// Copy the shard to a joining node (its pre-copy on join, decision 010); answered once it
    /// holds this copy. Runs between commands, like a replica's catch-up, because the copy's
    /// source must not change while it is taken.
    PreCopy(Peer, RpcReplyPort<Result<(), Refusal>>),
}

/// The actor's state.
pub struct OwnerState {
    shards: Shards,
    shard: ShardId,
    view: OwnerView,
    /// The epoch this actor serves, once sealed.
    epoch: Option<Epoch>,
    last_seal: Option<Instant>,
    /// Another node sealed the shard: do not take it back before this (see
    /// [`OwnerMsg::Fenced`]).
    fenced_until: Option<Instant>,
    /// Seal attempts failed in a row.
    failed_seals: u32,
    /// The epoch the shard followed before this takeover's first seal attempt (a failed one
    /// leaves this node's own epoch stored): whose ownership the seal ends, for the event.
    sealing_from: Option<Option<Epoch>>,
    /// Replicas this actor brought up to date under an epoch it served. Each may answer reads
    /// under that epoch, in this owner's place, for as long as it holds a majority's lease and
    /// its own view still makes it a replica. So a seal of a newer epoch must reach every one
    /// that is live before the new epoch serves, whether or not the new view keeps it (one
    /// the node calls dead is waited for by [`takeover`]). Replaced by the view's replicas once
    /// a seal succeeds.
    synced_replicas: Vec<NodeId>,
    /// When this actor last brought each replica up to date (a replicated entry or a replica's
    /// catch-up it acknowledged). That is a sign of life as good as a gossip heartbeat, and
    /// the one that matters: from then on the node may answer reads under this epoch, even
    /// while this node's gossip still calls it dead (heartbeats take a round or two to arrive
    /// after a cut heals). [`Self::unsealed_lease`] counts silence from the later of the two.
    synced_at: HashMap<NodeId, Instant>,
    /// Timers (or the commands that replace them) this actor runs, by key: the newest version
    /// of each (see [`Timer`]).
    running: HashMap<Vec<u8>, u64>,
    /// What waits here: when those timers fire, and how many commands the sweeps have
    /// pending (shared with the host, which reads it for `/metrics`).
    backlog: Arc<OwnerBacklog>,
    /// Whether the machines' commands for a new owner ran since the last seal.
    resumed: bool,
    /// Commands waiting for the next batch (bounded by the host's pending-command limit and
    /// the retries of this actor's own commands).
    queue: VecDeque<Queued>,
    /// An [`OwnerMsg::Flush`] is in the mailbox.
    flush_queued: bool,
    /// Joining nodes this actor pre-copied the shard to, and when: each falls behind until
    /// placement makes it a replica, and the log must cover that gap (see
    /// [`Self::copy_maybe_behind`]).
    pre_copied: Vec<(NodeId, Instant)>,
    /// Each sweeping machine's sweep in progress.
    sweeps: HashMap<MachineId, Sweep>,
}

/// One machine's sweep in progress: a sweep starts only once the previous one is done, so an
/// unavailable shard does not pile its commands up.
#[derive(Debug, Default)]
struct Sweep {
    /// Commands of the sweep queued or being retried.
    in_flight: usize,
    /// The last sweep hit [`SWEEP_LIMIT`]: sweep again once its commands are acknowledged.
    again: bool,
}

/// Why the actor runs one of its own commands.
#[derive(Clone, Debug)]
pub enum Origin {
    /// A timer fired.
    Timer {
        /// Its key.
        key: Vec<u8>,
        /// Its version.
        version: u64,
    },
    /// A machine's sweep.
    Sweep(MachineId),
    /// A machine asked for it when this owner started serving.
    Serving,
}

/// A command waiting for its batch.
struct Queued {
    command: Command,
    asker: Asker,
}

impl Queued {
    /// Whether the service that asked has given up waiting (its call timed out, or will have
    /// by now, and it told its client the outcome is unknown). Such a command is dropped
    /// undecided: run late, it would change state long after anyone expects it to, even
    /// after the workload is over.
    fn abandoned(&self) -> bool {
        matches!(&self.asker, Asker::Client { reply, deadline }
            if reply.is_closed() || Instant::now() >= *deadline)
    }

    /// Drops an abandoned command, telling its caller if it still listens.
    fn drop_undecided(self) {
        if let Asker::Client { reply, .. } = self.asker {
            let _ = reply.send(Err(Refusal::Unavailable {
                message: "the command was still queued when its caller stopped waiting; it \
                          was dropped and did not take effect"
                    .into(),
            }));
        }
    }
}

/// Who waits for a command's answer.
enum Asker {
    /// A service, through [`Shards::command`](super::host::Shards::command), waiting until
    /// the deadline.
    Client {
        /// Where the answer goes.
        reply: RpcReplyPort<Result<Vec<u8>, Refusal>>,
        /// When the caller stops waiting.
        deadline: Instant,
    },
    /// The actor itself ([`OwnerMsg::Run`]): retried until acknowledged.
    Itself(Origin),
}

impl Actor for ShardOwner {
    type Msg = OwnerMsg;
    type State = OwnerState;
    type Arguments = OwnerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<OwnerMsg>,
        args: OwnerArgs,
    ) -> Result<OwnerState, ActorProcessingErr> {
        // Seal as soon as the actor runs, not at the first command.
        let _ = myself.cast(OwnerMsg::Reseal);
        for (machine, every) in args.shards.sweep_intervals() {
            myself.send_after(every, move || OwnerMsg::Sweep(machine));
        }
        Ok(OwnerState {
            shards: args.shards,
            shard: args.shard,
            view: args.view,
            epoch: None,
            last_seal: None,
            fenced_until: None,
            failed_seals: 0,
            sealing_from: None,
            synced_replicas: Vec::new(),
            synced_at: HashMap::new(),
            running: HashMap::new(),
            backlog: args.backlog,
            resumed: false,
            queue: VecDeque::new(),
            flush_queued: false,
            pre_copied: Vec::new(),
            sweeps: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<OwnerMsg>,
        message: OwnerMsg,
        state: &mut OwnerState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            OwnerMsg::Command(command, reply, deadline) => state.enqueue(
                &myself,
                Queued {
                    command,
                    asker: Asker::Client { reply, deadline },
                },
            ),
            OwnerMsg::Run(command, origin) => state.enqueue(
                &myself,
                Queued {
                    command,
                    asker: Asker::Itself(origin),
                },
            ),
            OwnerMsg::TimersDue => {
                let (due, next) = state.backlog.timers().fire(Instant::now());
                for timer in due {
                    let origin = Origin::Timer {
                        key: timer.key,
                        version: timer.version,
                    };
                    state.enqueue(
                        &myself,
                        Queued {
                            command: timer.command,
                            asker: Asker::Itself(origin),
                        },
                    );
                }
                wake_for_timers(&myself, next);
            }
            OwnerMsg::Sweep(machine) => {
                state.sweep(&myself, machine);
                if let Some(every) = state.shards.sweep_interval(machine) {
                    myself.send_after(every, move || OwnerMsg::Sweep(machine));
                }
            }
            OwnerMsg::Flush => {
                state.flush_queued = false;
                let answers = state.execute_batch().await;
                for (queued, answer, timer) in answers {
                    state.answer(&myself, queued, answer, timer);
                }
                state.schedule_confirm(&myself);
                if state.epoch.is_none() {
                    state.schedule_reseal(&myself);
                }
                if !state.queue.is_empty() {
                    state.schedule_flush(&myself);
                }
            }
            OwnerMsg::Reconfigure(view) => {
                for (peer, _) in &state.view.replicas {
                    if !state.synced_replicas.contains(&peer.node_id) {
                        state.synced_replicas.push(peer.node_id.clone());
                    }
                }
                state.view = view;
                state.stop_serving();
                state.last_seal = None;
                // Unless fenced a moment ago: then the pending reseal takes the shard back
                // after the pause, if placement still says so.
                if state.seal_due() {
                    state.try_seal(&myself).await;
                }
            }
            OwnerMsg::PreCopy(peer, reply) => {
                let answer = state.pre_copy(&peer).await;
                let _ = reply.send(answer);
            }
            OwnerMsg::Confirm => state.confirm(&myself).await,
            OwnerMsg::LeaseLapsed => {
                if state.epoch.is_some() {
                    state.stop_serving();
                    state.schedule_reseal(&myself);
                }
            }
            OwnerMsg::Reseal => {
                if state.epoch.is_none() && state.seal_due() {
                    state.try_seal(&myself).await;
                }
            }
            OwnerMsg::Release(reply) => {
                state.pause_after_fence(&myself);
                let _ = reply.send(());
            }
            OwnerMsg::Fenced => {
                // The other node most likely saw a membership change this one has not seen
                // yet (a node that just became ready): give gossip a few rounds to bring it
                // here, and this actor is stopped. Taking the shard back at once would make
                // the two fence each other in turn, failing writes on both. If placement
                // still makes this node the owner after the pause, it takes the shard back.
                state.pause_after_fence(&myself);
            }
        }
        state.on_serving(&myself);
        Ok(())
    }

    async fn post_start(
        &self,
        myself: ActorRef<OwnerMsg>,
        state: &mut OwnerState,
    ) -> Result<(), ActorProcessingErr> {
        state.on_serving(&myself);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<OwnerMsg>,
        state: &mut OwnerState,
    ) -> Result<(), ActorProcessingErr> {
        state.stop_serving();
        Ok(())
    }
}

/// Schedules the wake-up [`Timers`](super::timers::Timers) asked for, if any.
fn wake_for_timers(myself: &ActorRef<OwnerMsg>, wake: Option<Duration>) {
    if let Some(after) = wake {
        myself.send_after(after, || OwnerMsg::TimersDue);
    }
}

impl OwnerState {
    /// Schedules the timer an acknowledged command asked for.
    fn schedule(&mut self, myself: &ActorRef<OwnerMsg>, timer: Option<Timer>) {
        let Some(timer) = timer else {
            return;
        };
        self.running.insert(timer.key.clone(), timer.version);
        let wake = self
            .backlog
            .timers()
            .add(Instant::now(), timer.after, timer);
        wake_for_timers(myself, wake);
    }

    /// Once per seal: runs the commands the machines ask a new owner to run (jobs left
    /// `processing` are run again), except those this actor still has a timer for.
    fn on_serving(&mut self, myself: &ActorRef<OwnerMsg>) {
        if self.resumed || self.epoch.is_none() {
            return;
        }
        let shards = self.shards.clone();
        let store = &shards.inner.store;
        for (machine, rules) in shards.inner.machines.iter() {
            match rules.on_serving(store, self.shard) {
                Ok(commands) => {
                    // A timer of an older version does not count: that round was run again
                    // elsewhere while this actor had lost the shard, and its command is a no-op.
                    let orphans: Vec<_> = commands
                        .into_iter()
                        .filter(|r| self.running.get(&r.key) != Some(&r.version))
                        .collect();
                    if !orphans.is_empty() {
                        info!(shard = %self.shard, %machine, commands = orphans.len(), "running what a new owner runs (jobs left processing)");
                    }
                    for resume in orphans {
                        self.running.insert(resume.key, resume.version);
                        let _ = myself.cast(OwnerMsg::Run(resume.command, Origin::Serving));
                    }
                }
                Err(error) => {
                    warn!(shard = %self.shard, %machine, %error, "cannot list what a new owner runs");
                    return;
                }
            }
        }
        self.resumed = true;
    }

    /// Queues `machine`'s clean-up commands, unless its previous sweep's are still pending or
    /// this actor does not serve the shard.
    fn sweep(&mut self, myself: &ActorRef<OwnerMsg>, machine: MachineId) {
        let busy = self.sweeps.get(&machine).is_some_and(|s| s.in_flight > 0);
        if busy || self.epoch.is_none() {
            return;
        }
        let Some(rules) = self.shards.inner.machines.get(machine).cloned() else {
            return;
        };
        match rules.sweep(&self.shards.inner.store, self.shard, SWEEP_LIMIT) {
            Ok(commands) => {
                let sweep = self.sweeps.entry(machine).or_default();
                sweep.again = commands.len() >= SWEEP_LIMIT;
                sweep.in_flight = commands.len();
                self.publish_sweeps();
                for command in commands {
                    self.enqueue(
                        myself,
                        Queued {
                            command,
                            asker: Asker::Itself(Origin::Sweep(machine)),
                        },
                    );
                }
            }
            Err(error) => warn!(shard = %self.shard, %machine, %error, "cannot sweep"),
        }
    }

    /// Shares how many sweep commands are pending here, for `/metrics`.
    fn publish_sweeps(&self) {
        let pending = self.sweeps.values().map(|s| s.in_flight).sum();
        self.backlog.set_sweep_commands(pending);
    }

    /// Queues a command for the next batch.
    fn enqueue(&mut self, myself: &ActorRef<OwnerMsg>, queued: Queued) {
        self.queue.push_back(queued);
        self.schedule_flush(myself);
    }

    fn schedule_flush(&mut self, myself: &ActorRef<OwnerMsg>) {
        // A failed cast means the actor is stopping: the queued commands' reply ports are
        // dropped with it, which their callers see as "not the owner" and retry elsewhere.
        if !self.flush_queued && myself.cast(OwnerMsg::Flush).is_ok() {
            self.flush_queued = true;
        }
    }

    /// Answers one command of a batch: to its caller, or, for the actor's own commands, by
    /// retrying it later unless it was acknowledged.
    fn answer(
        &mut self,
        myself: &ActorRef<OwnerMsg>,
        queued: Queued,
        answer: Result<Vec<u8>, Refusal>,
        timer: Option<Timer>,
    ) {
        match queued.asker {
            Asker::Client { reply, .. } => {
                self.schedule(myself, timer);
                // The caller may have given up; nothing to do then.
                let _ = reply.send(answer);
            }
            Asker::Itself(origin) if answer.is_ok() => {
                match origin {
                    // Only this version's timer is done: a command run since may have set a
                    // newer one.
                    Origin::Timer { key, version } => {
                        if self.running.get(&key) == Some(&version) {
                            self.running.remove(&key);
                        }
                    }
                    Origin::Sweep(machine) => {
                        let sweep = self.sweeps.entry(machine).or_default();
                        sweep.in_flight = sweep.in_flight.saturating_sub(1);
                        if sweep.in_flight == 0 && sweep.again {
                            self.sweep(myself, machine);
                        }
                        self.publish_sweeps();
                    }
                    Origin::Serving => {}
                }
                self.schedule(myself, timer);
            }
            // Not acknowledged: try again while this actor owns the shard.
            Asker::Itself(origin) => {
                let command = queued.command;
                myself.send_after(RUN_RETRY, move || OwnerMsg::Run(command, origin));
            }
        }
    }

    /// Decides the queued commands in order, up to the batch limits, and makes all their
    /// changes durable on every copy as one entry. Returns each command's answer: its outcome
    /// once the entry is acknowledged, or why not. A command that changes nothing and was
    /// decided before any change of the batch is answered at once; after one, its answer may
    /// depend on that change, so it shares the entry's fate.
    async fn execute_batch(&mut self) -> Vec<(Queued, Result<Vec<u8>, Refusal>, Option<Timer>)> {
        let (epoch, prev) = match self.ready_to_write().await {
            Ok(ready) => ready,
            Err(refusal) => {
                return self
                    .queue
                    .drain(..)
                    .map(|queued| (queued, Err(refusal.clone()), None))
                    .collect();
            }
        };
        let store = self.shards.inner.store.clone();
        let shards = self.shards.clone();
        let entry_limit = shards.inner.config.rpc.max_entry_bytes();
        let byte_limit = BATCH_BYTES.min(entry_limit);
        let mut draft = Draft::new(&store);
        let mut answers = Vec::new();
        let mut pending: Vec<(Queued, Vec<u8>, Option<Timer>)> = Vec::new();
        let mut ops = Vec::new();
        let mut bytes = 0;
        // Whether any command was decided from this copy (for the audit).
        let mut decided = false;
        while pending.len() < BATCH_COMMANDS && (bytes < byte_limit || ops.is_empty()) {
            let Some(queued) = self.queue.pop_front() else {
                break;
            };
            if queued.abandoned() {
                queued.drop_undecided();
                continue;
            }
            let Some(machine) = shards.inner.machines.get(queued.command.machine) else {
                let refusal = Refusal::Failed {
                    message: format!("no {} on this node", queued.command.machine),
                };
                answers.push((queued, Err(refusal), None));
                continue;
            };
            let decision: Decision = match machine.decide(&queued.command.body, &draft, self.shard)
            {
                Ok(decision) => {
                    decided = true;
                    decision
                }
                Err(error) => {
                    let failure = self.store_failure(error);
                    answers.push((queued, Err(failure), None));
                    continue;
                }
            };
            if decision.ops.is_empty() && draft.is_empty() {
                answers.push((queued, Ok(decision.answer), None));
                continue;
            }
            let change = decision.ops.iter().map(Op::bytes).sum::<usize>();
            if change > entry_limit {
                // Written, it could never be replicated: the shard would stop taking writes.
                warn!(shard = %self.shard, change, entry_limit, "command refused: its change is too large to replicate");
                answers.push((queued, Err(too_large(change, entry_limit)), None));
                continue;
            }
            draft.record(self.shard, &decision.ops);
            bytes += change;
            ops.extend(decision.ops);
            pending.push((queued, decision.answer, decision.timer));
        }
        if decided {
            // The same instant as the lease check in `ready_to_write`: nothing awaited since.
            audit::report(audit::Observation::Decided {
                shard: self.shard,
                epoch: &epoch,
            });
        }
        if pending.is_empty() {
            return answers;
        }
        let result = self.write_entry(epoch, prev, ops).await;
        let metrics = &self.shards.inner.metrics;
        metrics.shard_entries.inc();
        metrics.shard_commands.inc_by(pending.len() as u64);
        answers.extend(
            pending
                .into_iter()
                .map(|(queued, answer, timer)| match &result {
                    Ok(()) => (queued, Ok(answer), timer),
                    Err(failure) => (queued, Err(failure.clone()), None),
                }),
        );
        answers
    }

    /// The epoch to write under and where this copy stands, sealing first if due; or why no
    /// command may be decided now. The copy must still follow the epoch: a newer owner's seal
    /// can reach the store while the actor is busy (a release that timed out, or a seal of
    /// this actor's own that a newer one overtook), and a command that changes nothing is
    /// answered from the copy at once, before any write could find out.
    async fn ready_to_write(&mut self) -> Result<(Epoch, Position), Refusal> {
        if self.epoch.is_none() && self.seal_due() {
            self.seal().await.map_err(moving)?;
        }
        let Some(epoch) = self.epoch.clone() else {
            return Err(moving(format!("shard {} is being taken over", self.shard)));
        };
        if let Some(refusal) = self.write_refusal() {
            return Err(refusal);
        }
        match self.shards.inner.store.meta(self.shard) {
            Ok(meta) if meta.epoch.as_ref() == Some(&epoch) => Ok((epoch, meta.position)),
            Ok(_) => Err(self.fenced()),
            Err(error) => Err(self.store_failure(error)),
        }
    }

    /// Appends `ops` as the shard's next entry after `prev`, here and on every replica.
    async fn write_entry(
        &mut self,
        epoch: Epoch,
        prev: Position,
        ops: Vec<Op>,
    ) -> Result<(), Refusal> {
        let trim_before = match self.copy_maybe_behind() {
            None => prev.applied,
            Some(reason) => {
                let label = UntrimmedLabel { reason };
                let metrics = &self.shards.inner.metrics;
                metrics.shard_entries_untrimmed.get_or_create(&label).inc();
                0
            }
        };
        let seq = prev.applied + 1;
        let entry = Entry {
            seq,
            epoch: epoch.clone(),
            ops,
            trim_before,
        };
        self.replicate(epoch.clone(), prev, entry).await?;
        audit::report(audit::Observation::Acknowledged {
            shard: self.shard,
            epoch: &epoch,
            seq,
            replicas: self.view.replicas.iter().map(|(p, _)| &p.node_id).collect(),
            held_back: self.view.waiting.len(),
        });
        Ok(())
    }

    /// Why some copy this owner knows of may lack an entry written so far, if one may. While
    /// none may, the next entry lets holders trim their logs up to the previous one
    /// ([`Entry::trim_before`]), so the logs hold little beyond the entry in flight (a log
    /// entry is one more copy of the values it holds). Otherwise a copy may still catch up
    /// from a log: a replica that missed an entry, one waiting to be brought in (decision
    /// 006), or a node pre-copied before it joins (decision 010); the logs then keep their last
    /// [`LOG_KEEP`](super::store::LOG_KEEP) entries. Trimming too much is never unsafe, only
    /// slower: a copy the log does not cover gets a snapshot.
    fn copy_maybe_behind(&self) -> Option<&'static str> {
        if self.shards.local_shard(self.shard).unconfirmed.is_some() {
            Some("replica_behind")
        } else if !self.view.waiting.is_empty() {
            Some("replica_waiting")
        } else if self.joining() {
            Some("pre_copied")
        } else {
            None
        }
    }

    /// Why a write must not be acknowledged now, if it must not.
    fn write_refusal(&self) -> Option<Refusal> {
        let shards = &self.shards;
        let topology = shards.topology();
        if !topology.owns(&shards.inner.me, self.shard) {
            return Some(Refusal::NotOwner {
                owner: topology.table.owner(self.shard).cloned(),
            });
        }
        if !shards.fresh_majority(&topology) {
            return Some(moving(
                "this node has not heard from a majority of the cluster recently".into(),
            ));
        }
        // Replicas held back after a replica died (decision 006) count: placement has the
        // nodes, the owner only waits for it to hold still. Meanwhile writes are durable on the
        // owner and every live replica, as the contract asks, with one copy fewer.
        let copies = self.view.replicas.len() + 1 + self.view.waiting.len();
        if copies < shards.inner.config.cluster.replication_factor {
            return Some(moving(format!(
                "shard {} has {copies} live copies, {} needed",
                self.shard, shards.inner.config.cluster.replication_factor
            )));
        }
        None
    }

    /// Appends `entry` here and on every replica; `Err` is the answer when any copy failed.
    async fn replicate(
        &mut self,
        epoch: Epoch,
        prev: Position,
        entry: Entry,
    ) -> Result<(), Refusal> {
        let shard = self.shard;
        let store = self.shards.inner.store.clone();
        self.mark_unconfirmed(&entry);
        let local = store.append(shard, epoch.clone(), prev.clone(), entry.clone());
        let remote = join_all(self.view.replicas.iter().map(|(peer, _)| {
            let request = PeerRequest::Replicate {
                shard,
                epoch: epoch.clone(),
                prev: prev.clone(),
                entry: entry.clone(),
            };
            self.call(peer, request)
        }));
        let (local, remote) = tokio::join!(local, remote);
        if let Err(error) = local {
            // Replicas may have taken the change: report it as possibly applied.
            if let StoreError::Fenced { .. } = error {
                self.stop_serving();
            }
            warn!(%shard, %error, "local append failed");
            return Err(possibly_applied(format!("shard {shard}: {error}")));
        }
        let mut behind = Vec::new();
        let replicas: Vec<Peer> = self.view.replicas.iter().map(|(p, _)| p.clone()).collect();
        for (peer, answer) in replicas.into_iter().zip(remote) {
            match answer {
                Ok(PeerReply::Done) => self.synced(peer.node_id),
                Ok(PeerReply::Behind(_)) => behind.push(peer),
                Ok(PeerReply::Fenced(newer)) => {
                    // Another replica may have taken the change before the new owner sealed
                    // it, so it may still take effect: not retryable.
                    warn!(%shard, %newer, "fenced by a newer owner");
                    self.stop_serving();
                    return Err(possibly_applied(format!(
                        "shard {shard} changed owner during the write"
                    )));
                }
                Ok(other) => return Err(possibly_applied(unexpected(&peer, &other))),
                Err(problem) => return Err(possibly_applied(problem)),
            }
        }
        // A replica that missed earlier changes copies them (and this one) from here.
        for peer in behind {
            self.push_catch_up(&epoch, &peer)
                .await
                .map_err(possibly_applied)?;
        }
        // Every replica has every entry up to this one.
        self.shards.update_local(shard, |l| l.unconfirmed = None);
        Ok(())
    }

    /// After a write whose replication failed, tries [`OwnerMsg::Confirm`] a moment later.
    fn schedule_confirm(&self, myself: &ActorRef<OwnerMsg>) {
        if self.epoch.is_some() && self.shards.local_shard(self.shard).unconfirmed.is_some() {
            myself.send_after(RUN_RETRY, || OwnerMsg::Confirm);
        }
    }

    /// Pushes this copy to every replica; clears the unconfirmed changes once all have it, or
    /// tries again later. Not needed once the shard is no longer served: the next seal brings
    /// every replica up to date anyway.
    async fn confirm(&mut self, myself: &ActorRef<OwnerMsg>) {
        let Some(epoch) = self.epoch.clone() else {
            return;
        };
        if self.shards.local_shard(self.shard).unconfirmed.is_none() {
            return;
        }
        let peers: Vec<Peer> = self.view.replicas.iter().map(|(p, _)| p.clone()).collect();
        for peer in &peers {
            if let Err(problem) = self.push_catch_up(&epoch, peer).await {
                tracing::debug!(shard = %self.shard, %problem, "replicas not confirmed yet");
                self.schedule_confirm(myself);
                return;
            }
        }
        self.shards
            .update_local(self.shard, |l| l.unconfirmed = None);
    }

    /// Records the entities `entry` changes as unconfirmed, with those of earlier entries not
    /// confirmed yet.
    fn mark_unconfirmed(&self, entry: &Entry) {
        self.shards.update_local(self.shard, |l| {
            let mut changed = l.unconfirmed.as_deref().cloned().unwrap_or_default();
            changed.extend(entry.ops.iter().map(|op| (op.tenant, op.key.clone())));
            l.unconfirmed = Some(std::sync::Arc::new(changed));
        });
    }

    /// Stops serving because another node sealed the shard, and pauses before taking it back.
    fn pause_after_fence(&mut self, myself: &ActorRef<OwnerMsg>) {
        self.stop_serving();
        let pause = self.shards.inner.config.gossip.interval() * FENCED_PAUSE_ROUNDS;
        self.fenced_until = Some(Instant::now() + pause);
        myself.send_after(pause, || OwnerMsg::Reseal);
    }

    fn seal_due(&self) -> bool {
        self.last_seal.is_none_or(|at| at.elapsed() >= SEAL_RETRY)
            && self
                .fenced_until
                .is_none_or(|until| Instant::now() >= until)
    }

    async fn try_seal(&mut self, myself: &ActorRef<OwnerMsg>) {
        if let Some(wait) = self.view_unsettled() {
            myself.send_after(wait, || OwnerMsg::Reseal);
            return;
        }
        match self.seal().await {
            Ok(()) => self.failed_seals = 0,
            Err(message) => {
                // Once per streak at warn: a dead replica makes every retry fail until the
                // failure detector removes it.
                if self.failed_seals == 0 {
                    warn!(shard = %self.shard, %message, "cannot take over the shard yet");
                } else {
                    tracing::debug!(shard = %self.shard, %message, "cannot take over the shard yet");
                }
                self.failed_seals += 1;
                self.schedule_reseal(myself);
            }
        }
    }

    /// How long to wait before sealing, if this node's view cannot be trusted yet: without a
    /// majority heard from recently (a cut-off node must not take shards over, or it would
    /// serve its stale copy the moment the partition heals), while gossip settles after a
    /// member appeared, or while a node it calls dead may still hold a lease and answer from
    /// an older copy.
    fn view_unsettled(&self) -> Option<Duration> {
        let topology = self.shards.topology();
        if !self.shards.fresh_majority(&topology) {
            return Some(SEAL_RETRY);
        }
        let round = self.shards.inner.config.gossip.interval();
        let settle = round * VIEW_SETTLE_ROUNDS;
        let waited = topology.live_grew_at.elapsed();
        if waited < settle {
            return Some(settle - waited);
        }
        self.unsealed_lease(&topology, round)
    }

    /// How long a node this one cannot seal may still be answering from an older copy
    /// ([`takeover::lease_wait`]): every member this node calls dead, and a previous owner it no
    /// longer knows as a member at all.
    fn unsealed_lease(&self, topology: &Topology, round: Duration) -> Option<Duration> {
        let me = &self.shards.inner.me;
        let previous = self
            .shards
            .inner
            .store
            .meta(self.shard)
            .ok()
            .and_then(|meta| meta.epoch)
            .map(|epoch| epoch.owner);
        let forgotten = previous.filter(|p| p != me && topology.membership.get(p).is_none());
        let dead = topology
            .membership
            .members()
            .filter(|m| !m.live && m.node_id != *me)
            .map(|m| &m.node_id);
        let unsealed = dead.chain(forgotten.iter()).map(|node| Unsealed {
            silent_for: topology.heard.silent_for(node).min(self.synced_ago(node)),
        });
        takeover::lease_wait(unsealed, self.shards.lease(), round * LEASE_MARGIN_ROUNDS)
    }

    fn schedule_reseal(&self, myself: &ActorRef<OwnerMsg>) {
        myself.send_after(SEAL_RETRY, || OwnerMsg::Reseal);
    }

    /// Takes the shard over with a new epoch (see the module doc).
    async fn seal(&mut self) -> Result<(), String> {
        let shard = self.shard;
        if let Some(wait) = self.view_unsettled() {
            return Err(format!(
                "shard {shard} cannot be taken over for another {} ms (lease or settling view)",
                wait.as_millis()
            ));
        }
        self.last_seal = Some(Instant::now());
        let store = self.shards.inner.store.clone();
        let me = self.shards.inner.me.clone();
        let stored = store.meta(shard).map_err(|e| e.to_string())?.epoch;
        let mut term = stored.as_ref().map_or(0, |e| e.term) + 1;
        let previous = self.sealing_from.get_or_insert(stored).clone();
        for _ in 0..SEAL_ROUNDS {
            let epoch = Epoch {
                term,
                owner: me.clone(),
            };
            match self.seal_round(&epoch).await? {
                None => {
                    // The seal took round trips, and placement may have moved the shard away
                    // meanwhile: the host then stops this actor once this message is handled,
                    // and it must not serve, even for that moment.
                    if !self.shards.topology().owns(&me, shard) {
                        return Err(format!(
                            "shard {shard} moved to another owner during the seal"
                        ));
                    }
                    self.sealing_from = None;
                    self.synced_replicas = self
                        .view
                        .replicas
                        .iter()
                        .map(|(p, _)| p.node_id.clone())
                        .collect();
                    self.shards
                        .inner
                        .metrics
                        .events
                        .sealed(shard, previous.as_ref(), &epoch);
                    audit::report(audit::Observation::Serving {
                        shard,
                        epoch: &epoch,
                    });
                    self.epoch = Some(epoch.clone());
                    // The seal brought every replica up to this copy's position.
                    self.shards.update_local(shard, |l| {
                        l.synced = Some(epoch.clone());
                        l.serving = Some(epoch);
                        l.unconfirmed = None;
                    });
                    return Ok(());
                }
                Some(newer) => term = term.max(newer + 1),
            }
        }
        Err(format!("shard {shard}: other owners keep sealing it"))
    }

    /// One attempt at sealing with `epoch`: `Ok(None)` when done, `Ok(Some(term))` when a holder
    /// follows a newer term.
    async fn seal_round(&mut self, epoch: &Epoch) -> Result<Option<u64>, String> {
        let shard = self.shard;
        let store = self.shards.inner.store.clone();
        let previous_owner = store
            .meta(shard)
            .map_err(|e| e.to_string())?
            .epoch
            .map(|e| e.owner);
        match store.seal(shard, epoch.clone()).await {
            Ok(_) => {}
            Err(StoreError::Fenced { current }) => return Ok(Some(current.term)),
            Err(error) => return Err(error.to_string()),
        }
        let others = self.others_live_now();
        let peers: Vec<Peer> = self
            .view
            .replicas
            .iter()
            .map(|(p, _)| p.clone())
            .chain(others.iter().cloned())
            .chain(self.view.waiting.iter().cloned())
            .collect();
        let answers = self.seal_peers(&peers, epoch, previous_owner.clone()).await;
        debug!(
            %shard,
            %epoch,
            peers = ?peers.iter().map(|p| &p.node_id).collect::<Vec<_>>(),
            answers = ?answers.iter().map(|a| a.as_ref().map(|_| ()).map_err(String::as_str)).collect::<Vec<_>>(),
            "seal round"
        );
        let mut best: Option<(Position, Peer)> = None;
        let mut holders = Vec::new();
        for (index, (peer, answer)) in peers.iter().zip(answers).enumerate() {
            let is_replica = index < self.view.replicas.len();
            let may_drop = index >= self.view.replicas.len()
                && index < self.view.replicas.len() + others.len();
            match answer {
                Ok(PeerReply::Sealed(meta)) => {
                    if !meta.installing && best.as_ref().is_none_or(|(p, _)| meta.position > *p) {
                        best = Some((meta.position.clone(), peer.clone()));
                    }
                    if may_drop && (meta.installing || meta.position.applied > 0) {
                        holders.push(peer.clone());
                    }
                }
                Ok(PeerReply::Fenced(newer)) => return Ok(Some(newer.term)),
                Ok(other) if is_replica => return Err(unexpected(peer, &other)),
                Err(problem) if is_replica => return Err(problem),
                // A previous owner this node calls live but could not seal may still serve
                // under its epoch: retry until it answers, or until the failure detector calls
                // it dead and it has been silent past its lease (`takeover`).
                Err(problem) if previous_owner.as_ref() == Some(&peer.node_id) => {
                    return Err(format!("the previous owner was not sealed: {problem}"))
                }
                // Likewise a copy this actor synced under an older epoch (`synced_replicas`).
                Err(problem) if self.synced_replicas.contains(&peer.node_id) => {
                    return Err(format!(
                        "{}, synced under an older epoch, was not sealed: {problem}",
                        peer.node_id
                    ))
                }
                // A member outside the replica set that cannot be reached holds nothing needed
                // (every acknowledged change is on the replicas of its time).
                _ => {}
            }
        }
        let mine = store.meta(shard).map_err(|e| e.to_string())?;
        if let Some((position, source)) = best {
            if mine.installing || position > mine.position {
                info!(%shard, source = %source.node_id, "pulling the most advanced copy");
                let peers = self.shards.inner.peers.as_ref();
                sync::catch_up(&store, peers, shard, epoch, &source)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        let replicas: Vec<Peer> = self.view.replicas.iter().map(|(p, _)| p.clone()).collect();
        for peer in &replicas {
            self.push_catch_up(epoch, peer).await?;
        }
        // A newer owner's seal may have reached this node's own store meanwhile (it asks
        // every member, this one included): serving under the older epoch would only be
        // refused later, so seal again above it, as for a peer that answered `Fenced`.
        match store.meta(shard).map_err(|e| e.to_string())?.epoch {
            Some(current) if current == *epoch => {}
            Some(current) if current > *epoch => return Ok(Some(current.term)),
            other => {
                return Err(format!(
                    "shard {shard}: this copy follows {other:?} after sealing {epoch}"
                ))
            }
        }
        for peer in holders {
            self.drop_copy(epoch, peer);
        }
        Ok(None)
    }

    /// Every member this node calls live now, other than itself and the view's replicas and
    /// waiting replicas: sealed too, to fence an old owner and find the most advanced copy,
    /// and told to drop copies they no longer need. Taken now, not with the view: the view is
    /// the one this actor was last told about, and a busy actor (a replica's calls timing out
    /// one after another) handles the host's views late, in order. A seal on such a stale view would skip a node that has
    /// come back since, while that node, in its own current view, may already be a replica
    /// the previous epoch brought up to date and answer reads under it.
    fn others_live_now(&self) -> Vec<Peer> {
        let me = &self.shards.inner.me;
        let in_view = |id: &NodeId| {
            self.view.replicas.iter().any(|(p, _)| &p.node_id == id)
                || self.view.waiting.iter().any(|p| &p.node_id == id)
        };
        self.shards
            .topology()
            .membership
            .members()
            .filter(|m| m.live && &m.node_id != me && !in_view(&m.node_id))
            .map(peer_of)
            .collect()
    }

    /// Seals `peers` with `epoch`: the previous owner first, so it finishes its write in
    /// flight and stops before its replicas are sealed (a planned move fails no write), then
    /// the others at once. Answers are in the order of `peers`.
    async fn seal_peers(
        &self,
        peers: &[Peer],
        epoch: &Epoch,
        previous_owner: Option<NodeId>,
    ) -> Vec<Result<PeerReply, String>> {
        let seal = |peer: Peer| async move {
            let request = PeerRequest::Seal {
                shard: self.shard,
                epoch: epoch.clone(),
            };
            self.call(&peer, request).await
        };
        let first = previous_owner.and_then(|owner| peers.iter().position(|p| p.node_id == owner));
        let mut first_answer = match first {
            Some(i) => Some(seal(peers[i].clone()).await),
            None => None,
        };
        let mut rest = join_all(
            peers
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != first)
                .map(|(_, peer)| seal(peer.clone())),
        )
        .await
        .into_iter();
        (0..peers.len())
            .map(|i| {
                let answer = if Some(i) == first {
                    first_answer.take()
                } else {
                    rest.next()
                };
                answer.unwrap_or_else(|| Err("no seal answer".into()))
            })
            .collect()
    }

    /// Whether a node pre-copied lately may still catch up from this shard's log
    /// ([`Topology::expects_copy`]) and is not a replica yet. [`Self::joining_window`] bounds
    /// the wait for one that never comes.
    fn joining(&self) -> bool {
        let window = self.joining_window();
        let topology = self.shards.topology();
        self.pre_copied.iter().any(|(node, at)| {
            at.elapsed() < window
                && topology.expects_copy(node, self.shard)
                && !self.view.replicas.iter().any(|(p, _)| p.node_id == *node)
        })
    }

    /// How long a pre-copied node counts as joining at most: twice the time a joining node
    /// waits for its copies, so it covers the copies of its other shards and the switch.
    fn joining_window(&self) -> Duration {
        2 * self.shards.inner.config.migration.pre_copy_timeout()
    }

    /// Copies the shard to a joining node that placement will make an owner or replica of it,
    /// if this actor serves it.
    async fn pre_copy(&mut self, peer: &Peer) -> Result<(), Refusal> {
        let Some(epoch) = self.epoch.clone() else {
            return Err(moving(format!("shard {} is being taken over", self.shard)));
        };
        if self
            .view
            .replicas
            .iter()
            .any(|(p, _)| p.node_id == peer.node_id)
        {
            // Already a replica, kept current by every write.
            return Ok(());
        }
        // Noted before the copy: the joining node may take entries written while it copies.
        let window = self.joining_window();
        self.pre_copied
            .retain(|(node, at)| *node != peer.node_id && at.elapsed() < window);
        self.pre_copied.push((peer.node_id.clone(), Instant::now()));
        match self.push_to(&epoch, peer, false).await {
            Ok(()) => {
                tracing::debug!(shard = %self.shard, to = %peer.node_id, "pre-copied the shard");
                Ok(())
            }
            Err(message) => Err(unavailable(message)),
        }
    }

    /// Has replica `peer` copy this shard from here, up to this node's position.
    async fn push_catch_up(&mut self, epoch: &Epoch, peer: &Peer) -> Result<(), String> {
        self.push_to(epoch, peer, true).await?;
        self.synced(peer.node_id.clone());
        Ok(())
    }

    /// Has `peer` copy this shard from here, as a replica or as a pre-copy.
    async fn push_to(&self, epoch: &Epoch, peer: &Peer, replica: bool) -> Result<(), String> {
        let request = PeerRequest::CatchUp {
            shard: self.shard,
            epoch: epoch.clone(),
            replica,
            source: Peer {
                node_id: self.shards.inner.me.clone(),
                rpc_addr: self
                    .my_rpc_addr()
                    .ok_or("this node is not in the membership")?,
            },
        };
        // A pre-copy holds up this shard's writes: bound it tighter than a replica's catch-up,
        // which the writes need anyway.
        let deadline = if replica {
            SYNC_CALL_TIMEOUT * 3
        } else {
            SYNC_CALL_TIMEOUT
        };
        match self.call_within(peer, request, Some(deadline)).await? {
            PeerReply::Done => Ok(()),
            other => Err(unexpected(peer, &other)),
        }
    }

    /// Tells a member outside the replica set to delete its copy (best effort, in the
    /// background: the copy is only garbage now).
    fn drop_copy(&self, epoch: &Epoch, peer: Peer) {
        let peers = self.shards.inner.peers.clone();
        let request = PeerRequest::Drop {
            shard: self.shard,
            epoch: epoch.clone(),
        };
        tokio::spawn(async move {
            if let Err(error) = peers.call(&peer, request, None).await {
                tracing::debug!(peer = %peer.node_id, %error, "could not drop a stale copy");
            }
        });
    }

    fn my_rpc_addr(&self) -> Option<crate::config::HostPort> {
        let topology = self.shards.topology();
        topology
            .membership
            .get(&self.shards.inner.me)
            .map(|m| m.rpc_addr.clone())
    }

    /// Calls `peer` with the carrier's deadline; the error in words, naming the peer.
    async fn call(&self, peer: &Peer, request: PeerRequest) -> Result<PeerReply, String> {
        self.call_within(peer, request, None).await
    }

    async fn call_within(
        &self,
        peer: &Peer,
        request: PeerRequest,
        deadline: Option<std::time::Duration>,
    ) -> Result<PeerReply, String> {
        self.shards
            .inner
            .peers
            .call(peer, request, deadline)
            .await
            .map_err(|error: PeerError| format!("replica {}: {error}", peer.node_id))
    }

    /// Records that `node` acknowledged a copy synced under this actor's epoch.
    fn synced(&mut self, node: NodeId) {
        self.synced_at.insert(node, Instant::now());
    }

    /// How long ago this actor last synced `node` ([`Self::synced_at`]); `Duration::MAX` if
    /// it never did.
    fn synced_ago(&self, node: &NodeId) -> Duration {
        self.synced_at
            .get(node)
            .map_or(Duration::MAX, |at| at.elapsed())
    }

    fn fenced(&mut self) -> Refusal {
        self.stop_serving();
        Refusal::NotOwner { owner: None }
    }

    fn store_failure(&mut self, error: StoreError) -> Refusal {
        match error {
            StoreError::Fenced { .. } => self.fenced(),
            other => {
                warn!(shard = %self.shard, error = %other, "shard storage failed");
                unavailable(format!("shard {}: {other}", self.shard))
            }
        }
    }

    fn stop_serving(&mut self) {
        self.epoch = None;
        self.resumed = false;
        self.shards.update_local(self.shard, |l| l.serving = None);
    }
}

fn too_large(change: usize, entry_limit: usize) -> Refusal {
    Refusal::TooLarge {
        message: format!(
            "the change is {change} bytes, above the {entry_limit} bytes one replicated change \
             may take (a quarter of rpc.max_frame_bytes); it was not applied"
        ),
    }
}

fn moving(message: String) -> Refusal {
    Refusal::Moving { message }
}

fn unavailable(message: String) -> Refusal {
    Refusal::Unavailable { message }
}

/// A write that failed after some copy may have taken it: the owner keeps pushing its copy to
/// the replicas, so it may still take effect.
fn possibly_applied(message: String) -> Refusal {
    Refusal::possibly_applied(format!("{message} (not every copy confirmed it)"))
}

/// Words for an answer of `peer` that the owner did not expect.
fn unexpected(peer: &Peer, answer: &PeerReply) -> String {
    format!("replica {}: {}", peer.node_id, peer::unexpected(answer))
}
