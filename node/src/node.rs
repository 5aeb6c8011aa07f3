//! The running node: its shared state and the local logic behind both the HTTP edge and
//! inter-node calls ([`Node::handle_local`]), so a request behaves the same whether it arrived
//! over HTTP here or was forwarded by a peer. The edge's `NodeApi` and the transport's
//! `Handler` are implemented a layer up (the `api` module), over the services, the router
//! and the dashboard.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::watch;
use troupe_actors::integers::Sample;
use troupe_http::views::{Located, TransitView};

use crate::config::ClusterConfig;
use crate::ids::{NodeId, ShardId};
use crate::layout::ShardLayout;
use crate::membership::Membership;
use crate::metrics::NodeMetrics;
use crate::placement::shard_for_key;
use crate::protocol::{Request, Response};
use crate::rpc::RpcClient;
use crate::shard::host::Shards;
use crate::shard::Refusal;
use crate::topology::Topology;

/// Where the integers sent to this node are delivered: the integers service's aggregator
/// when it runs here (its `LocalAggregator`). A trait, so that the node, a layer below the
/// services, names none of them; the RPC handler and the generators on this node deliver
/// through it.
pub trait SampleSink: Send + Sync {
    /// Hands `sample` to the aggregator running here (`Taken`), or `NotOwner` if none does.
    fn deliver(&self, sample: Sample) -> Response;
}

/// Shared handle on the node; cheap to clone.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<NodeInner>,
}

pub(crate) struct NodeInner {
    pub(crate) cluster: ClusterConfig,
    /// Which shards exist: the hash shards and the party managers' shards.
    pub(crate) layout: Arc<ShardLayout>,
    pub(crate) me: NodeId,
    /// This node's region (the default region of parties created here).
    pub(crate) region: crate::ids::RegionName,
    pub(crate) membership: Membership,
    pub(crate) topology: watch::Receiver<Arc<Topology>>,
    pub(crate) rpc: RpcClient<Request>,
    pub(crate) shards: Shards,
    /// The node's LMDB environment, for its fill level (readiness, admission of new data).
    pub(crate) storage: crate::storage::Storage,
    /// Where integers sent to this node go (the integers aggregator, when it runs here).
    pub(crate) aggregator: Arc<dyn SampleSink>,
    pub(crate) metrics: NodeMetrics,
    pub(crate) registry: Registry,
    /// Recent samples of this node's request metrics, for the dashboard's rates.
    pub(crate) requests: troupe_http::dashboard::RequestSampler,
    /// Set once this node has joined and published `ready`.
    pub(crate) joined: AtomicBool,
    /// Set when shutdown starts: the node no longer claims readiness.
    pub(crate) leaving: AtomicBool,
}

impl Node {
    /// This node's id.
    pub fn id(&self) -> &NodeId {
        &self.inner.me
    }

    /// The current topology.
    pub fn topology(&self) -> Arc<Topology> {
        self.inner.topology.borrow().clone()
    }

    /// Answers a request as this node, with no forwarding: the logic behind both the HTTP edge
    /// (when this node owns the key) and inter-node calls.
    pub(crate) async fn handle_local(&self, request: Request) -> Response {
        match request {
            Request::Ping => Response::Pong {
                node_id: self.inner.me.clone(),
            },
            // Only a peer asks (see `Handler::handle`): never this node itself.
            Request::Shard(_) => Response::Failed {
                message: "a shard peer request must come from a peer".into(),
            },
            Request::Locate { kind, key } => self.locate_here(kind, key),
            // Only a peer sends these, and the RPC handler (in the `api` module, above) answers them.
            Request::Integer(_) | Request::Report => Response::Failed {
                message: "an integer or a report request must come from a peer".into(),
            },
            Request::Command {
                shard,
                command,
                wait_ms,
            } => {
                if let Some(refusal) = self.unknown_shard(shard) {
                    return refusal;
                }
                if self.inner.shards.adds_data(&command) {
                    if let Some(refusal) = self.storage_refusal() {
                        return refusal;
                    }
                }
                let wait = Duration::from_millis(u64::from(wait_ms));
                // Boxed: the command's future is twice a read's, and would otherwise set the
                // size of every call's future, reads included (see the RPC `Handler`).
                let decided = Box::pin(self.inner.shards.command(shard, command, wait)).await;
                answer(decided, Response::Outcome)
            }
            Request::Read {
                shard,
                query,
                allow_replica,
            } => {
                if let Some(refusal) = self.unknown_shard(shard) {
                    return refusal;
                }
                let read = self.inner.shards.read(shard, &query, allow_replica).await;
                answer(read, Response::Answer)
            }
        }
    }

    /// The refusal of a command or read of a shard the layout does not have.
    pub(crate) fn unknown_shard(&self, shard: ShardId) -> Option<Response> {
        (shard.0 >= self.inner.layout.total()).then(|| Response::Failed {
            message: "no such shard".into(),
        })
    }

    /// The map's fill level, if it can be read (a failure is logged and treated as unknown:
    /// it must not stop a node that may well have room).
    pub(crate) fn storage_usage(&self) -> Option<crate::storage::Usage> {
        self.inner
            .storage
            .usage()
            .map_err(|error| tracing::warn!(%error, "cannot read the storage fill level"))
            .ok()
    }

    /// The refusal of new data when the map is filled to `storage.writes_percent`.
    pub(crate) fn storage_refusal(&self) -> Option<Response> {
        let usage = self.storage_usage()?;
        let limit = self.inner.cluster.storage.writes_percent;
        (usage.percent() >= limit).then(|| {
            tracing::warn!(usage = %usage.describe(), limit, "storage full: refusing new data");
            Response::StorageFull {
                message: format!(
                    "node {} cannot store new data: its storage is {}, at or above \
                     storage.writes_percent ({limit} %); deletions still work, and an operator \
                     must raise storage.map_size_mb; nothing was written",
                    self.inner.me,
                    usage.describe()
                ),
            }
        })
    }

    /// The shard `/cluster/locate` looks in: a party code's manager shard for kind `party`
    /// (codes are drawn to hash to their manager), the key's hash shard otherwise.
    pub(crate) fn shard_of(&self, kind: &str, key: &str) -> ShardId {
        let manager = (kind == "party")
            .then(|| self.inner.layout.manager_for_key(key))
            .flatten();
        match manager {
            Some(manager) => manager.shard,
            None => shard_for_key(key, self.inner.cluster.cluster.shards),
        }
    }

    /// The shards in transit here, for `route`; empty (and logged) if the metadata cannot be
    /// read.
    pub(crate) fn transit_now(&self, route: &str) -> Vec<TransitView> {
        self.inner.shards.in_transit().unwrap_or_else(|error| {
            tracing::warn!(%error, route, "cannot read shard metadata");
            Vec::new()
        })
    }

    pub(crate) fn locate_here(&self, kind: String, key: String) -> Response {
        let shard = self.shard_of(&kind, &key);
        let topology = self.topology();
        if !topology.owns(&self.inner.me, shard) {
            return Response::NotOwner {
                owner: topology.table.owner(shard).cloned(),
            };
        }
        let replicas = topology
            .table
            .replicas(shard)
            .iter()
            .skip(1)
            .map(ToString::to_string)
            .collect();
        Response::Located(Located {
            kind,
            key,
            shard: shard.0,
            owner: self.inner.me.to_string(),
            replicas,
            served_by: self.inner.me.to_string(),
        })
    }
}

/// The answer to a request the shard layer carried out (`done`), or its refusal.
pub(crate) fn answer<T>(result: Result<T, Refusal>, done: impl FnOnce(T) -> Response) -> Response {
    result.map_or_else(Response::from, done)
}
