//! The node's shard layer: its store, the owner actors of the shards it owns, and what it knows
//! locally about each shard (serving as owner at an epoch, or caught up as a replica).
//!
//! [`Shards::follow_topology`] runs for the life of the node: on every topology change it starts
//! an owner actor for each shard this node now owns, tells the running ones about a changed
//! replica set (they re-seal with a new epoch and bring the new replicas up to date), and stops
//! the actors of shards it no longer owns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use troupe_http::views::ShardCopyView;

use super::command::Command;
use super::owner::{OwnerArgs, OwnerMsg, ShardOwner};
use super::{Epoch, Peer, ShardStore, StoreError};
use crate::config::ClusterConfig;
use crate::ids::{Generation, NodeId, ShardId};
use crate::rpc::wire::Response;
use crate::rpc::RpcClient;
use crate::topology::Topology;

/// Commands waiting at one shard's owner before new ones get 503 (bounds the actor's mailbox).
pub const MAX_PENDING_PER_SHARD: usize = 1024;
/// Longest pause after a topology change before owner actors follow it.
const MAX_SETTLE: Duration = Duration::from_millis(300);
/// How long a command may wait for its owner actor.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Who else holds or may hold a shard, as its owner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerView {
    /// The replicas (placement order, owner excluded) and their incarnations: a restarted
    /// replica is a changed view.
    pub replicas: Vec<(Peer, Generation)>,
    /// Every other live member: sealed too (to fence an old owner and find the most advanced
    /// copy), and told to drop copies they no longer need.
    pub others: Vec<Peer>,
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
        let others = topology
            .membership
            .members()
            .filter(|m| m.live && !set.contains(&m.node_id))
            .map(peer_of)
            .collect();
        Some(Self { replicas, others })
    }
}

fn peer_of(member: &crate::membership::Member) -> Peer {
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
    /// Set once this node's copy was brought up to date by the current owner since this
    /// process started; only then may it answer reads in the owner's place.
    pub(crate) synced: bool,
}

struct OwnerHandle {
    actor: ActorRef<OwnerMsg>,
    view: OwnerView,
    pending: Arc<AtomicUsize>,
}

/// Handle on the node's shard layer; cheap to clone.
#[derive(Clone)]
pub struct Shards {
    pub(crate) inner: Arc<ShardsInner>,
}

pub(crate) struct ShardsInner {
    pub(crate) me: NodeId,
    pub(crate) store: ShardStore,
    pub(crate) rpc: RpcClient,
    pub(crate) topology: watch::Receiver<Arc<Topology>>,
    pub(crate) config: ClusterConfig,
    pub(crate) local: Mutex<Vec<LocalShard>>,
    owners: Mutex<HashMap<ShardId, OwnerHandle>>,
}

impl Shards {
    /// The shard layer of node `me`.
    pub fn new(
        me: NodeId,
        store: ShardStore,
        rpc: RpcClient,
        topology: watch::Receiver<Arc<Topology>>,
        config: ClusterConfig,
    ) -> Self {
        let shard_count = config.cluster.shards as usize;
        Self {
            inner: Arc::new(ShardsInner {
                me,
                store,
                rpc,
                topology,
                config,
                local: Mutex::new(vec![LocalShard::default(); shard_count]),
                owners: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &ShardStore {
        &self.inner.store
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
                synced: known.synced,
                applied: meta.position.applied,
                installing: meta.installing,
                entities: digest.count,
                digest: format!("{:016x}", digest.hash),
            });
        }
        Ok(out)
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

    /// Runs `command` at this node's owner actor of `shard`; `NotOwner` if there is none.
    pub async fn command(&self, shard: ShardId, command: Command) -> Response {
        let Some((actor, pending)) = self
            .owners()
            .get(&shard)
            .map(|h| (h.actor.clone(), h.pending.clone()))
        else {
            return Response::NotOwner {
                owner: self.topology().table.owner(shard).cloned(),
            };
        };
        if pending.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING_PER_SHARD {
            pending.fetch_sub(1, Ordering::AcqRel);
            return Response::Unavailable {
                message: format!("shard {shard} has too many commands waiting"),
            };
        }
        let result = actor
            .call(
                |reply| OwnerMsg::Command(command, reply),
                Some(COMMAND_TIMEOUT),
            )
            .await;
        pending.fetch_sub(1, Ordering::AcqRel);
        match result {
            Ok(CallResult::Success(response)) => response,
            Ok(CallResult::Timeout) => Response::Unavailable {
                message: format!("shard {shard} did not answer within {COMMAND_TIMEOUT:?}"),
            },
            // The actor stopped (ownership moved): the caller retries at the new owner.
            Ok(CallResult::SenderError) | Err(_) => Response::NotOwner { owner: None },
        }
    }

    /// Follows the topology until `shutdown`, then stops every owner actor.
    pub async fn follow_topology(self, shutdown: CancellationToken) {
        let mut topology = self.inner.topology.clone();
        let settle = self.inner.config.gossip.interval().min(MAX_SETTLE);
        loop {
            let current = topology.borrow_and_update().clone();
            self.reconcile(&current).await;
            tokio::select! {
                // The node is stopping.
                _ = shutdown.cancelled() => break,
                changed = topology.changed() => if changed.is_err() { break },
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

    /// Brings the set of owner actors in line with `topology`.
    async fn reconcile(&self, topology: &Topology) {
        let shard_count = self.local().len() as u32;
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
                    (Some(handle), Some(view)) if handle.view != view => {
                        handle.view = view.clone();
                        if let Err(error) = handle.actor.cast(OwnerMsg::Reconfigure(view)) {
                            warn!(%shard, %error, "cannot reach the shard actor");
                        }
                        None
                    }
                    (Some(_), Some(_)) => None,
                    (None, Some(view)) => Some(view),
                }
            };
            if let Some(view) = action {
                self.start_owner(shard, view).await;
            }
        }
    }

    async fn start_owner(&self, shard: ShardId, view: OwnerView) {
        let args = OwnerArgs {
            shards: self.clone(),
            shard,
            view: view.clone(),
        };
        // Unnamed: ractor's registry is process-global (docs/decisions/001).
        match Actor::spawn(None, ShardOwner, args).await {
            Ok((actor, _)) => {
                self.owners().insert(
                    shard,
                    OwnerHandle {
                        actor,
                        view,
                        pending: Arc::new(AtomicUsize::new(0)),
                    },
                );
            }
            Err(error) => warn!(%shard, %error, "cannot start the shard actor"),
        }
    }
}
