//! The node's shard layer: its store, the owner actors of the shards it owns, and what it knows
//! locally about each shard (serving as owner at an epoch, or caught up as a replica).
//!
//! [`Shards::follow_topology`] runs for the life of the node: on every topology change it starts
//! an owner actor for each shard this node now owns, tells the running ones about a changed
//! replica set (they re-seal with a new epoch and bring the new replicas up to date), and stops
//! the actors of shards it no longer owns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use troupe_http::views::{ShardCopyView, TransitView};

use super::backlog::OwnerBacklog;
use super::lease::Confirmations;
use super::machine::{Command, MachineId, Machines};
use super::owner::{OwnerArgs, OwnerMsg, ShardOwner};
use super::peer::Peers;
use super::refusal::Refusal;
use super::{Epoch, Peer, ShardStore, StoreError, Tenant};
use crate::config::ClusterConfig;
use crate::ids::{Generation, NodeId, ShardId};
use crate::membership::MembershipSnapshot;
use crate::metrics::{Backlog, NodeMetrics};
use crate::topology::Topology;

/// Commands waiting at one shard's owner before new ones get 503 (bounds the actor's mailbox).
pub const MAX_PENDING_PER_SHARD: usize = 1024;
/// Longest pause after a topology change before owner actors follow it.
const MAX_SETTLE: Duration = Duration::from_millis(300);
/// How long a new owner's seal waits for this node's owner actor to finish its write in
/// flight (below the RPC call deadline, so the seal is answered in time).
const RELEASE_TIMEOUT: Duration = Duration::from_millis(1_000);
/// How long a command may wait for its owner actor.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a pre-copy may wait for the owner actor: commands queued before it, then the copy
/// (bounded by the sync call deadline).
pub(crate) const PRE_COPY_TIMEOUT: Duration = Duration::from_secs(25);

/// Who else holds or may hold a shard, as its owner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerView {
    /// The replicas (placement order, owner excluded) and their incarnations: a restarted
    /// replica is a changed view.
    pub replicas: Vec<(Peer, Generation)>,
    /// Replicas placement added that wait until it holds still (see [`target_view`]): sealed
    /// like every other live member, but they keep their copies, so a returning node's copy is
    /// caught up incrementally once it is brought in. The other members are not part of the
    /// view: a seal takes them from the membership of its moment (`others_live_now` in
    /// `owner.rs`), never from a view the actor may have been told about late.
    pub waiting: Vec<Peer>,
}

impl OwnerView {
    /// The view of `shard` from `topology`, if `me` owns it.
    pub fn of(topology: &Topology, me: &NodeId, shard: ShardId) -> Option<Self> {
        if !topology.owns(me, shard) {
            return None;
        }
        let set = topology.table.replicas(shard);
        let replicas = set
            .iter()
            .skip(1)
            .filter_map(|id| topology.membership.get(id))
            .map(|m| (peer_of(m), m.generation))
            .collect();
        Some(Self {
            replicas,
            waiting: Vec::new(),
        })
    }
}

pub(crate) fn peer_of(member: &crate::membership::Member) -> Peer {
    Peer {
        node_id: member.node_id.clone(),
        rpc_addr: member.rpc_addr.clone(),
    }
}

/// What this node knows about one shard beyond its store.
#[derive(Clone, Debug, Default)]
pub(crate) struct LocalShard {
    /// Set while this node's owner actor has sealed the shard at this epoch and serves it.
    pub(crate) serving: Option<Epoch>,
    /// The epoch whose owner last brought this copy up to date (since this process started).
    /// The copy may answer reads in the owner's place only while its store still follows that
    /// very epoch: any newer seal, drop or catch-up in progress makes it stale.
    pub(crate) synced: Option<Epoch>,
    /// Entities changed by entries this owner applied but no replica set has confirmed yet
    /// (a write in flight, or one whose replication failed and that a later write or seal has
    /// not yet carried to every replica). The owner does not answer reads of them: such a
    /// change may still be lost, if another node takes over from a copy without it.
    pub(crate) unconfirmed: Option<Arc<Vec<EntityKey>>>,
    /// A catch-up into this copy is running (one at a time: two would interleave their pages).
    pub(crate) catching_up: bool,
    /// This node is joining and placement will give it this shard: where its pre-copy stands
    /// (decision 010). While set, owners' requests to drop the copy are ignored.
    pub(crate) pre_copy: Option<PreCopy>,
}

/// Where a joining node's pre-copy of one shard stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PreCopy {
    /// Not copied yet.
    Pending,
    /// The owner pushed its copy here.
    Copied,
}

/// An entity of a shard: its tenant and key.
pub(crate) type EntityKey = (Tenant, Vec<u8>);

struct OwnerHandle {
    actor: ActorRef<OwnerMsg>,
    /// The view the actor runs with: placement's, or an interim one (see [`target_view`]).
    view: OwnerView,
    /// Placement's view while replicas are held back, and since when it has held still.
    deferred: Option<Deferred>,
    /// What waits at the actor (shared with it).
    backlog: Arc<OwnerBacklog>,
}

/// Placement's view of a shard whose new replicas wait for placement to hold still.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Deferred {
    desired: OwnerView,
    since: Instant,
}

/// Handle on the node's shard layer; cheap to clone.
#[derive(Clone)]
pub struct Shards {
    pub(crate) inner: Arc<ShardsInner>,
}

pub(crate) struct ShardsInner {
    pub(crate) me: NodeId,
    pub(crate) store: ShardStore,
    /// How this node reaches the others.
    pub(crate) peers: Arc<dyn Peers>,
    pub(crate) topology: watch::Receiver<Arc<Topology>>,
    pub(crate) config: ClusterConfig,
    pub(crate) local: Mutex<Vec<LocalShard>>,
    owners: Mutex<HashMap<ShardId, OwnerHandle>>,
    pub(crate) confirmations: Confirmations,
    pub(crate) metrics: NodeMetrics,
    /// Long reads (listings, counts, digests) off the async workers.
    pub(crate) scans: super::scans::Scans,
    /// The services' state machines, which decide the commands.
    pub(crate) machines: Machines,
}

/// Gossip rounds an owner, or a replica answering in its place, may go without a majority of the
/// cluster confirming that they reach each other before it stops answering: the owner's lease
/// (decisions 007 and 009).
pub(crate) const LEASE_ROUNDS: u32 = 4;
/// Rounds a new epoch waits past the lease, counted from when this node last heard from each
/// node it calls dead, before serving ([`super::takeover`]): covers gossip's own delay.
pub(crate) const LEASE_MARGIN_ROUNDS: u32 = 2;

impl Shards {
    /// How long an owner may answer without a majority confirming it.
    pub(crate) fn lease(&self) -> Duration {
        self.inner.config.gossip.interval() * LEASE_ROUNDS
    }

    /// Whether this node holds the lease (`shard::lease`): the condition for answering reads,
    /// acknowledging writes and taking shards over.
    pub(crate) fn fresh_majority(&self, topology: &Topology) -> bool {
        self.inner
            .confirmations
            .majority(topology, &self.inner.me, self.lease())
    }

    /// Whether this node heard `node`'s gossip heartbeat within the lease (what a lease check
    /// asks).
    pub(crate) fn hears(&self, node: &NodeId) -> bool {
        self.topology().heard.silent_for(node) <= self.lease()
    }

    /// The lease lapsed: nothing this node served or was synced on may be answered from again
    /// before an owner has sealed it anew, since others may have taken it over meanwhile. Every
    /// owner actor stops serving and takes its shard over again once the lease is back.
    /// Returns how many shards were served or synced here.
    pub(crate) fn lease_lapsed(&self) -> usize {
        let mut affected = 0;
        for local in self.local().iter_mut() {
            affected += usize::from(local.serving.is_some() || local.synced.is_some());
            local.serving = None;
            local.synced = None;
        }
        for (shard, handle) in self.owners().iter() {
            if let Err(error) = handle.actor.cast(OwnerMsg::LeaseLapsed) {
                warn!(%shard, %error, "cannot reach the shard actor");
            }
        }
        affected
    }

    /// The shard layer of node `me`, for `shard_count` shards (hash and manager shards),
    /// running the state machines in `machines`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: NodeId,
        store: ShardStore,
        peers: Arc<dyn Peers>,
        topology: watch::Receiver<Arc<Topology>>,
        config: ClusterConfig,
        shard_count: u32,
        metrics: NodeMetrics,
        machines: Machines,
    ) -> Self {
        let shard_count = shard_count as usize;
        let scans = super::scans::Scans::new(store.runs_inline());
        Self {
            inner: Arc::new(ShardsInner {
                scans,
                me,
                store,
                peers,
                topology,
                config,
                local: Mutex::new(vec![LocalShard::default(); shard_count]),
                owners: Mutex::new(HashMap::new()),
                confirmations: Confirmations::default(),
                metrics,
                machines,
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &ShardStore {
        &self.inner.store
    }

    /// Whether `command` may make the stored data larger (refused when storage is nearly
    /// full).
    pub fn adds_data(&self, command: &Command) -> bool {
        self.inner.machines.adds_data(command)
    }

    /// How often each machine that sweeps asks to.
    pub(crate) fn sweep_intervals(&self) -> Vec<(MachineId, Duration)> {
        self.inner
            .machines
            .iter()
            .filter_map(|(id, machine)| Some((id, machine.sweep_interval()?)))
            .collect()
    }

    /// How often `machine` sweeps, if it does.
    pub(crate) fn sweep_interval(&self, machine: MachineId) -> Option<Duration> {
        self.inner.machines.get(machine)?.sweep_interval()
    }

    /// The current topology.
    pub(crate) fn topology(&self) -> Arc<Topology> {
        self.inner.topology.borrow().clone()
    }

    pub(crate) fn local(&self) -> MutexGuard<'_, Vec<LocalShard>> {
        self.inner.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn owners(&self) -> MutexGuard<'_, HashMap<ShardId, OwnerHandle>> {
        self.inner.owners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What this node knows about `shard`.
    pub(crate) fn local_shard(&self, shard: ShardId) -> LocalShard {
        self.local()
            .get(shard.0 as usize)
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn update_local(&self, shard: ShardId, f: impl FnOnce(&mut LocalShard)) {
        if let Some(entry) = self.local().get_mut(shard.0 as usize) {
            f(entry);
        }
    }

    /// This node's copies: every shard it holds data or an epoch for.
    pub fn copies(&self) -> Result<Vec<ShardCopyView>, StoreError> {
        let topology = self.topology();
        let me = &self.inner.me;
        let local = self.local().clone();
        let mut out = Vec::new();
        for (index, known) in local.iter().enumerate() {
            let shard = ShardId(index as u32);
            let meta = self.inner.store.meta(shard)?;
            if meta.epoch.is_none() {
                continue;
            }
            let digest = self.inner.store.digest(shard)?;
            let role = if topology.owns(me, shard) {
                "owner"
            } else if topology.table.replicas(shard).contains(me) {
                "replica"
            } else {
                "none"
            };
            out.push(ShardCopyView {
                shard: shard.0,
                role: role.into(),
                epoch: meta.epoch.map(|e| e.to_string()),
                serving: known.serving.is_some(),
                synced: known.synced.is_some(),
                applied: meta.position.applied,
                installing: meta.installing,
                entities: digest.count,
                digest: format!("{:016x}", digest.hash),
            });
        }
        Ok(out)
    }

    /// The shards this node is moving: taking over, installing a snapshot, receiving or holding
    /// a pre-copy while it joins, or serving with replicas held back.
    pub fn in_transit(&self) -> Result<Vec<TransitView>, StoreError> {
        let topology = self.topology();
        let local = self.local().clone();
        let waiting: HashMap<ShardId, (Vec<String>, u64)> = {
            let delay = self.inner.config.migration.re_replication_delay();
            let now = Instant::now();
            self.owners()
                .iter()
                .filter(|(_, h)| h.deferred.is_some() && !h.view.waiting.is_empty())
                .map(|(shard, h)| {
                    let nodes = h.view.waiting.iter().map(|p| p.node_id.to_string());
                    let due = h.deferred.as_ref().map_or(Duration::ZERO, |d| {
                        (d.since + delay).saturating_duration_since(now)
                    });
                    (*shard, (nodes.collect(), due.as_millis() as u64))
                })
                .collect()
        };
        let mut out = Vec::new();
        for (index, known) in local.iter().enumerate() {
            let shard = ShardId(index as u32);
            let meta = self.inner.store.meta(shard)?;
            let (state, waiting, due_in_ms) = if meta.installing {
                ("installing", Vec::new(), None)
            } else if known.pre_copy == Some(PreCopy::Pending) {
                ("pre-copying", Vec::new(), None)
            } else if known.pre_copy == Some(PreCopy::Copied) {
                ("pre-copied", Vec::new(), None)
            } else if known.serving.is_none() && topology.owns(&self.inner.me, shard) {
                ("taking-over", Vec::new(), None)
            } else if let Some((nodes, due)) = waiting.get(&shard) {
                ("replicas-waiting", nodes.clone(), Some(*due))
            } else {
                continue;
            };
            out.push(TransitView {
                shard: shard.0,
                state: state.into(),
                epoch: meta.epoch.map(|e| e.to_string()),
                applied: meta.position.applied,
                waiting,
                due_in_ms,
            });
        }
        Ok(out)
    }

    /// What waits at this node's owner actors now, summed over them (for `/metrics`).
    pub fn backlog(&self) -> Backlog {
        let owners: Vec<Arc<OwnerBacklog>> =
            self.owners().values().map(|h| h.backlog.clone()).collect();
        let now = Instant::now();
        let mut total = Backlog::default();
        for owner in owners {
            owner.add_to(&mut total, now);
        }
        total
    }

    /// How many shards this node owns in its current placement but does not serve yet.
    pub fn owned_not_serving(&self) -> usize {
        let topology = self.topology();
        let local = self.local();
        local
            .iter()
            .enumerate()
            .filter(|(i, l)| {
                l.serving.is_none() && topology.owns(&self.inner.me, ShardId(*i as u32))
            })
            .count()
    }

    /// Another node sealed a shard this node serves: stop serving it, and let the owner actor
    /// (if this node still thinks it owns the shard) take it back once placement agrees.
    pub(crate) fn owner_fenced(&self, shard: ShardId) {
        self.update_local(shard, |l| l.serving = None);
        if let Some(handle) = self.owners().get(&shard) {
            let _ = handle.actor.cast(OwnerMsg::Fenced);
        }
    }

    /// Another node is taking over a shard this node serves: lets the owner actor finish the
    /// command in flight and stop serving (bounded by [`RELEASE_TIMEOUT`]; past it, or without
    /// an actor, serving stops at once and the write in flight may fail).
    pub(crate) async fn release(&self, shard: ShardId) {
        let actor = self.owners().get(&shard).map(|h| h.actor.clone());
        if let Some(actor) = actor {
            let released = actor.call(OwnerMsg::Release, Some(RELEASE_TIMEOUT)).await;
            if matches!(released, Ok(CallResult::Success(()))) {
                return;
            }
        }
        self.owner_fenced(shard);
    }

    /// Runs `command` at this node's owner actor of `shard`; `NotOwner` if there is none. Gives
    /// up after `wait` (the caller's own wait): the command is then dropped if still queued.
    /// The answer is the machine's encoding of it.
    pub async fn command(
        &self,
        shard: ShardId,
        command: Command,
        wait: Duration,
    ) -> Result<Vec<u8>, Refusal> {
        let wait = COMMAND_TIMEOUT.min(wait);
        let deadline = Instant::now() + wait;
        let asked = self.ask_owner(shard, wait, |reply| {
            OwnerMsg::Command(command, reply, deadline)
        });
        // The owner may be deciding it right now (dropped only if still queued).
        asked.await.unwrap_or_else(|waited| {
            Err(Refusal::possibly_applied(format!(
                "shard {shard} did not answer within {waited:?}"
            )))
        })
    }

    /// A joining node asks for a copy of `shard` (its pre-copy on join, decision 010): this
    /// node's owner actor pushes its copy there between two commands.
    pub(crate) async fn pre_copy(&self, shard: ShardId, to: Peer) -> Result<(), Refusal> {
        let live = self
            .topology()
            .membership
            .get(&to.node_id)
            .is_some_and(|m| m.live);
        if !live {
            return Err(Refusal::Failed {
                message: format!("{} is not a live member", to.node_id),
            });
        }
        let topology = self.topology();
        if self.holds_nothing(shard) {
            if topology.owns(&self.inner.me, shard) {
                // Nothing to copy: answered here, not queued behind the owner actor's
                // take-over (at a cold start every shard is empty and every owner is still
                // sealing), which spares the joining node its retries and three round trips
                // per shard. Skipping is safe, as any missed pre-copy is: a copy counts for
                // nothing until its seal has caught it up from the best holder (decision 031).
                return Ok(());
            }
            let serving = self
                .local()
                .get(shard.0 as usize)
                .is_none_or(|l| l.serving.is_some());
            if !serving {
                // Placement here has moved the shard on, and this node neither serves nor holds
                // it (an owner being replaced serves until its successor seals): the owner it
                // names is the one to ask, at once, rather than this node's owner actor, which
                // would answer "being taken over" until it stops (decision 040).
                return Err(Refusal::NotOwner {
                    owner: topology.table.owner(shard).cloned(),
                });
            }
        }
        let asked = self.ask_owner(shard, PRE_COPY_TIMEOUT, |reply| {
            OwnerMsg::PreCopy(to, reply)
        });
        asked.await.unwrap_or_else(|waited| {
            Err(Refusal::Unavailable {
                message: format!("shard {shard} did not pre-copy within {waited:?}"),
            })
        })
    }

    /// Whether this node's copy of `shard` has never taken a change and is not being
    /// installed: what a seal counts as holding nothing.
    pub(crate) fn holds_nothing(&self, shard: ShardId) -> bool {
        self.inner
            .store
            .meta(shard)
            .is_ok_and(|meta| !meta.installing && meta.position.applied == 0)
    }

    /// Sends this node's owner actor of `shard` a message with a reply port and waits for the
    /// answer; `NotOwner` if there is no actor, 503 when too many wait already. `Err(timeout)`
    /// when no answer came in time: the actor may still act on the message.
    async fn ask_owner<T: Send + 'static>(
        &self,
        shard: ShardId,
        timeout: Duration,
        message: impl FnOnce(ractor::RpcReplyPort<Result<T, Refusal>>) -> OwnerMsg,
    ) -> Result<Result<T, Refusal>, Duration> {
        let Some((actor, backlog)) = self
            .owners()
            .get(&shard)
            .map(|h| (h.actor.clone(), h.backlog.clone()))
        else {
            return Ok(Err(Refusal::NotOwner {
                owner: self.topology().table.owner(shard).cloned(),
            }));
        };
        let Some(waiting) = backlog.admit(MAX_PENDING_PER_SHARD) else {
            self.inner.metrics.shard_queue_rejections.inc();
            return Ok(Err(Refusal::Unavailable {
                message: format!("shard {shard} has too many commands waiting"),
            }));
        };
        let result = actor.call(message, Some(timeout)).await;
        drop(waiting);
        match result {
            Ok(CallResult::Success(response)) => Ok(response),
            Ok(CallResult::Timeout) => Err(timeout),
            // The actor stopped (ownership moved): the caller retries at the new owner.
            Ok(CallResult::SenderError) | Err(_) => Ok(Err(Refusal::NotOwner { owner: None })),
        }
    }

    /// Follows the topology until `shutdown`, then stops every owner actor.
    pub async fn follow_topology(self, shutdown: CancellationToken) {
        let mut topology = self.inner.topology.clone();
        let settle = self.inner.config.gossip.interval().min(MAX_SETTLE);
        let mut previous: Option<Arc<Topology>> = None;
        loop {
            let current = topology.borrow_and_update().clone();
            self.reconcile(&current, previous.as_deref()).await;
            previous = Some(current);
            let due = self.next_deferral_due();
            tokio::select! {
                // The node is stopping.
                _ = shutdown.cancelled() => break,
                changed = topology.changed() => if changed.is_err() { break },
                // Held-back replicas are due: reconcile again with the same topology.
                _ = sleep_until_due(due) => continue,
            }
            // Let the views of all nodes settle: nodes briefly disagree while a change
            // spreads, and acting on every intermediate view makes two nodes seal the same
            // shard in turn, fencing each other mid-write.
            while let Ok(Ok(())) = tokio::time::timeout(settle, topology.changed()).await {}
        }
        let actors: Vec<_> = self.owners().drain().map(|(_, h)| h.actor).collect();
        for actor in actors {
            // Wait, so no actor holds the store when storage closes.
            let stopped = actor.stop_and_wait(Some("node stopping".into()), Some(COMMAND_TIMEOUT));
            if let Err(error) = stopped.await {
                warn!(%error, "shard actor did not stop in time");
            }
        }
    }

    /// When the earliest held-back replica set is due.
    fn next_deferral_due(&self) -> Option<Instant> {
        let delay = self.inner.config.migration.re_replication_delay();
        self.owners()
            .values()
            .filter_map(|h| h.deferred.as_ref())
            .map(|d| d.since + delay)
            .min()
    }

    /// A replica's copy may answer reads only while the owner that brought it up to date is
    /// the owner it follows: forget that once this node's view names another owner, or lost
    /// the majority (the owner may have moved on without reaching this node). The next owner
    /// seals and catches it up again.
    fn forget_stale_sync(&self, topology: &Topology) {
        let majority = topology.membership.has_majority();
        let shard_count = self.local().len() as u32;
        for shard in (0..shard_count).map(ShardId) {
            let follows = self.inner.store.meta(shard).ok().and_then(|m| m.epoch);
            let current =
                majority && follows.is_some_and(|e| topology.table.owner(shard) == Some(&e.owner));
            if !current {
                self.update_local(shard, |l| l.synced = None);
            }
        }
    }

    /// Brings the set of owner actors in line with `topology`; `previous` is the topology
    /// reconciled before it.
    async fn reconcile(&self, topology: &Topology, previous: Option<&Topology>) {
        self.forget_stale_sync(topology);
        let shard_count = self.local().len() as u32;
        let delay = self.inner.config.migration.re_replication_delay();
        let now = Instant::now();
        for shard in (0..shard_count).map(ShardId) {
            let view = OwnerView::of(topology, &self.inner.me, shard);
            let action = {
                let mut owners = self.owners();
                match (owners.get_mut(&shard), view) {
                    (None, None) => None,
                    (Some(_), None) => {
                        if let Some(handle) = owners.remove(&shard) {
                            debug!(%shard, "no longer the owner: stopping the shard actor");
                            handle.actor.stop(Some("ownership moved".into()));
                        }
                        self.update_local(shard, |l| l.serving = None);
                        None
                    }
                    (Some(handle), Some(desired)) => {
                        let holders = replica_ids(&handle.view);
                        let target = target_view(
                            &holders,
                            desired,
                            &topology.membership,
                            &mut handle.deferred,
                            now,
                            delay,
                        );
                        if handle.view != target {
                            let message = OwnerMsg::Reconfigure(target.clone());
                            handle.view = target;
                            if let Err(error) = handle.actor.cast(message) {
                                warn!(%shard, %error, "cannot reach the shard actor");
                            }
                        }
                        None
                    }
                    (None, Some(desired)) => {
                        // The copies placement knew of before: the previous owner and replicas.
                        let holders = previous
                            .map(|p| p.table.replicas(shard).to_vec())
                            .unwrap_or_default();
                        let mut deferred = None;
                        let target = target_view(
                            &holders,
                            desired,
                            &topology.membership,
                            &mut deferred,
                            now,
                            delay,
                        );
                        Some((target, deferred))
                    }
                }
            };
            if let Some((view, deferred)) = action {
                self.start_owner(shard, view, deferred).await;
            }
        }
    }

    async fn start_owner(&self, shard: ShardId, view: OwnerView, deferred: Option<Deferred>) {
        let backlog = Arc::new(OwnerBacklog::default());
        let args = OwnerArgs {
            shards: self.clone(),
            shard,
            view: view.clone(),
            backlog: backlog.clone(),
        };
        // Unnamed: ractor's registry is process-global (docs/decisions/001).
        match Actor::spawn(None, ShardOwner, args).await {
            Ok((actor, _)) => {
                self.owners().insert(
                    shard,
                    OwnerHandle {
                        actor,
                        view,
                        deferred,
                        backlog,
                    },
                );
            }
            Err(error) => warn!(%shard, %error, "cannot start the shard actor"),
        }
    }
}

async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

fn replica_ids(view: &OwnerView) -> Vec<NodeId> {
    view.replicas
        .iter()
        .map(|(p, _)| p.node_id.clone())
        .collect()
}

/// The view an owner should run with, given placement's `desired` view and the nodes that
/// held copies of the shard so far (`holders`).
///
/// When a holder died, placement puts another node in its place; copying the shard to that
/// node at once would make a node that flaps (dead, back, dead) cause a copy each time. So new
/// replicas wait until placement's view has held still for `delay` (`deferred` tracks since
/// when): meanwhile the owner runs with the replicas it already had, and the newcomers are only
/// fenced, like any other member. A returning node is brought in the same way. When no holder
/// died (a join, or a graceful leave whose node is still live), the view applies at once.
fn target_view(
    holders: &[NodeId],
    desired: OwnerView,
    membership: &MembershipSnapshot,
    deferred: &mut Option<Deferred>,
    now: Instant,
    delay: Duration,
) -> OwnerView {
    let is_new = |(peer, _): &&(Peer, Generation)| !holders.contains(&peer.node_id);
    let added: Vec<Peer> = desired
        .replicas
        .iter()
        .filter(is_new)
        .map(|(peer, _)| peer.clone())
        .collect();
    let holder_died = holders
        .iter()
        .any(|id| !membership.get(id).is_some_and(|m| m.live));
    if added.is_empty() || delay.is_zero() || !(holder_died || deferred.is_some()) {
        *deferred = None;
        return desired;
    }
    let since = match deferred.as_ref() {
        Some(d) if d.desired == desired => d.since,
        _ => now,
    };
    if now >= since + delay {
        *deferred = None;
        return desired;
    }
    *deferred = Some(Deferred {
        desired: desired.clone(),
        since,
    });
    OwnerView {
        replicas: desired
            .replicas
            .iter()
            .filter(|r| !is_new(r))
            .cloned()
            .collect(),
        waiting: added,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: Duration = Duration::from_secs(5);

    use crate::membership::snapshot::test_snapshot as members;

    fn peer(id: &str) -> Peer {
        Peer {
            node_id: NodeId::new(id),
            rpc_addr: "127.0.0.1:2".parse().expect("valid"),
        }
    }

    /// Placement's view for an owner whose replicas are `replicas` (id, generation).
    fn view(replicas: &[(&str, u64)]) -> OwnerView {
        OwnerView {
            replicas: replicas
                .iter()
                .map(|(id, g)| (peer(id), Generation(*g)))
                .collect(),
            waiting: Vec::new(),
        }
    }

    /// [`target_view`] with the test delay, for an owner whose copies were on `holders`.
    fn target(
        holders: &[&str],
        desired: &OwnerView,
        membership: &MembershipSnapshot,
        deferred: &mut Option<Deferred>,
        now: Instant,
    ) -> OwnerView {
        let holders: Vec<NodeId> = holders.iter().map(|n| NodeId::new(*n)).collect();
        target_view(&holders, desired.clone(), membership, deferred, now, DELAY)
    }

    #[test]
    fn a_dead_replicas_replacement_waits_until_placement_holds_still() {
        let membership = members(&[("a", 1, true), ("b", 1, false), ("c", 1, true)]);
        let t0 = Instant::now();
        let mut deferred = None;
        let desired = view(&[("c", 1)]);
        let interim = target(&["b"], &desired, &membership, &mut deferred, t0);
        assert!(interim.replicas.is_empty(), "no copy to c yet: {interim:?}");
        assert_eq!(interim.waiting, vec![peer("c")]);
        let just_before = t0 + DELAY - Duration::from_millis(1);
        let still = target(&[], &desired, &membership, &mut deferred, just_before);
        assert_eq!(still, interim);
        let due = target(&[], &desired, &membership, &mut deferred, t0 + DELAY);
        assert_eq!(due, desired);
        assert_eq!(deferred, None);
    }

    #[test]
    fn a_join_or_a_graceful_leave_changes_replicas_at_once() {
        // b is still live (leaving gracefully, or moved by a join): nothing to wait for.
        let membership = members(&[("a", 1, true), ("b", 1, true), ("c", 1, true)]);
        let mut deferred = None;
        let desired = view(&[("c", 1)]);
        let now = Instant::now();
        assert_eq!(
            target(&["b"], &desired, &membership, &mut deferred, now),
            desired
        );
        assert_eq!(deferred, None);
    }

    #[test]
    fn a_flapping_node_restarts_the_wait_and_causes_no_copy_meanwhile() {
        let dead = members(&[("a", 1, true), ("b", 1, false), ("c", 1, true)]);
        let back = members(&[("a", 1, true), ("b", 2, true), ("c", 1, true)]);
        let t0 = Instant::now();
        let mut deferred = None;
        let interim = target(&["b"], &view(&[("c", 1)]), &dead, &mut deferred, t0);
        assert!(interim.replicas.is_empty());
        // b returns half-way: placement wants it back; it waits too, from now on.
        let half = t0 + DELAY / 2;
        let returning = view(&[("b", 2)]);
        let waits = target(&[], &returning, &back, &mut deferred, half);
        assert!(waits.replicas.is_empty(), "b waits: {waits:?}");
        assert_eq!(waits.waiting, vec![peer("b")]);
        let still = target(&[], &returning, &back, &mut deferred, t0 + DELAY);
        assert!(
            still.replicas.is_empty(),
            "the wait restarted when placement changed"
        );
        let due = target(&[], &returning, &back, &mut deferred, half + DELAY);
        assert_eq!(due, returning);
    }

    #[test]
    fn a_zero_delay_replaces_a_dead_replica_at_once() {
        let membership = members(&[("a", 1, true), ("c", 1, true)]);
        let mut deferred = None;
        let desired = view(&[("c", 1)]);
        let holders = [NodeId::new("b")];
        let now = Instant::now();
        let target = target_view(
            &holders,
            desired.clone(),
            &membership,
            &mut deferred,
            now,
            Duration::ZERO,
        );
        assert_eq!(target, desired);
    }
}
