//! The running node as the HTTP edge and peers see it: implements [`NodeApi`] for the edge and
//! [`Handler`] for inter-node calls, both over the same local logic, so a request behaves the
//! same whether it arrived over HTTP here or was forwarded by a peer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::watch;
use troupe_actors::integers::Average;
use troupe_actors::jobs::Job;
use troupe_actors::parties::{CreateParty, JoinParty, NearbySearch, Party};
use troupe_actors::sessions::{SessionReply, SessionUser};
use troupe_actors::users::{User, UserId, UserPatch};
use troupe_http::views::{
    ClusterView, DashboardView, GossipTablesView, ListFrom, Located, ManagerView, MemberView,
    NearbyParty, PartyCreated, PartyLeft, PartyMember, ShardCopyView, ShardView, TransitView,
    UserPage,
};
use troupe_http::{ApiError, NodeApi, Readiness};

use crate::config::ClusterConfig;
use crate::ids::{NodeId, ShardId};
use crate::layout::ShardLayout;
use crate::membership::{Membership, NodeStatus};
use crate::metrics::NodeMetrics;
use crate::placement::shard_for_key;
use crate::protocol::{Request, Response};
use crate::routing;
use crate::rpc::{Handler, RpcClient};
use crate::services;
use crate::shard::host::Shards;
use crate::shard::Refusal;
use crate::topology::Topology;

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
    pub(crate) aggregator: services::integers::LocalAggregator,
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
            Request::Integer(sample) => self.inner.aggregator.deliver(sample),
            Request::Report => crate::dashboard::answer(self),
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
                answer(
                    self.inner.shards.command(shard, command, wait).await,
                    Response::Outcome,
                )
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
    fn unknown_shard(&self, shard: ShardId) -> Option<Response> {
        (shard.0 >= self.inner.layout.total()).then(|| Response::Failed {
            message: "no such shard".into(),
        })
    }

    /// The map's fill level, if it can be read (a failure is logged and treated as unknown:
    /// it must not stop a node that may well have room).
    fn storage_usage(&self) -> Option<crate::storage::Usage> {
        self.inner
            .storage
            .usage()
            .map_err(|error| tracing::warn!(%error, "cannot read the storage fill level"))
            .ok()
    }

    /// The refusal of new data when the map is filled to `storage.writes_percent`.
    fn storage_refusal(&self) -> Option<Response> {
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
    fn shard_of(&self, kind: &str, key: &str) -> ShardId {
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
    fn transit_now(&self, route: &str) -> Vec<TransitView> {
        self.inner.shards.in_transit().unwrap_or_else(|error| {
            tracing::warn!(%error, route, "cannot read shard metadata");
            Vec::new()
        })
    }

    fn locate_here(&self, kind: String, key: String) -> Response {
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

impl NodeApi for Node {
    fn readiness(&self) -> Readiness {
        if self.inner.leaving.load(Ordering::Acquire) {
            return Readiness::NotReady("node is leaving".into());
        }
        if !self.inner.joined.load(Ordering::Acquire) {
            return Readiness::NotReady("joining the cluster".into());
        }
        if let Some(usage) = self.storage_usage() {
            let limit = self.inner.cluster.storage.readiness_percent;
            if usage.percent() >= limit {
                return Readiness::NotReady(format!(
                    "storage is {}, at or above storage.readiness_percent ({limit} %): raise \
                     storage.map_size_mb",
                    usage.describe()
                ));
            }
        }
        let topology = self.topology();
        match topology.membership.get(&self.inner.me) {
            // Ready means "send me traffic": a node in placement routes every request, and one
            // for a shard still being taken over (here or elsewhere) waits for it within the
            // forward budget. Counting takeovers made every survivor of a crash unready at once
            // for most of a second (issue 31), so a load balancer had no node to send to.
            Some(m) if m.status == NodeStatus::Ready && topology.table.iter().next().is_some() => {
                Readiness::Ready
            }
            _ => Readiness::NotReady("waiting for placement to include this node".into()),
        }
    }

    fn cluster_view(&self) -> ClusterView {
        let topology = self.topology();
        let members = topology
            .membership
            .members()
            .map(|m| MemberView {
                node_id: m.node_id.to_string(),
                generation: m.generation.0,
                region: m.region.to_string(),
                status: m.status.to_string(),
                live: m.live,
                http_addr: m.http_addr.to_string(),
                rpc_addr: m.rpc_addr.to_string(),
                gossip_addr: m.gossip_addr.to_string(),
            })
            .collect();
        let shards = topology
            .table
            .iter()
            .enumerate()
            .map(|(shard, set)| ShardView {
                shard: shard as u32,
                owner: set.first().map(ToString::to_string),
                replicas: set.iter().skip(1).map(ToString::to_string).collect(),
                manager: self
                    .inner
                    .layout
                    .manager_of_shard(ShardId(shard as u32))
                    .map(|m| m.id.clone()),
            })
            .collect();
        ClusterView {
            cluster: self.inner.cluster.cluster.name.clone(),
            node: self.inner.me.to_string(),
            members,
            shard_count: self.inner.layout.total(),
            replication_factor: self.inner.cluster.cluster.replication_factor,
            shards,
            transit: self.transit_now("/cluster"),
            lease_held: self.inner.shards.fresh_majority(&topology),
            gossip_tables: {
                let sizes = self.inner.membership.table_sizes();
                GossipTablesView {
                    nodes: sizes.gossip_nodes,
                    refused: sizes.refused,
                    heard: sizes.heard,
                }
            },
        }
    }

    async fn shard_copies(&self) -> Result<Vec<ShardCopyView>, ApiError> {
        let shards = self.inner.shards.clone();
        self.inner
            .shards
            .inner
            .scans
            .run(move || shards.copies())
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    async fn dashboard(&self) -> Result<DashboardView, ApiError> {
        Ok(crate::dashboard::gather(self).await)
    }

    async fn locate(&self, kind: String, key: String) -> Result<Located, ApiError> {
        let shard = self.shard_of(&kind, &key);
        let locate = |_| Request::Locate {
            kind: kind.clone(),
            key: key.clone(),
        };
        match routing::serve_at_owner(self, shard, locate).await? {
            Response::Located(located) => Ok(located),
            other => Err(ApiError::Internal(format!(
                "unexpected answer to locate: {other:?}"
            ))),
        }
    }

    async fn create_user(&self, user: User) -> Result<User, ApiError> {
        services::users::create(self, user).await
    }

    async fn get_user(&self, id: UserId) -> Result<User, ApiError> {
        services::users::get(self, id).await
    }

    async fn update_user(&self, patch: UserPatch) -> Result<User, ApiError> {
        services::users::update(self, patch).await
    }

    async fn delete_user(&self, id: UserId) -> Result<(), ApiError> {
        services::users::delete(self, id).await
    }

    async fn count_users(&self) -> Result<u64, ApiError> {
        services::users::count(self).await
    }

    async fn list_users(&self, from: ListFrom, limit: u32) -> Result<UserPage, ApiError> {
        services::users::list(self, from, limit).await
    }

    async fn add_session(&self, user: SessionUser) -> Result<SessionReply, ApiError> {
        services::sessions::change(self, user, true).await
    }

    async fn remove_session(&self, user: SessionUser) -> Result<SessionReply, ApiError> {
        services::sessions::change(self, user, false).await
    }

    async fn session_count(&self, user: SessionUser) -> Result<u32, ApiError> {
        services::sessions::count(self, user).await
    }

    async fn create_job(&self, object_id: String) -> Result<Job, ApiError> {
        services::jobs::create(self, object_id).await
    }

    async fn get_job(&self, job_id: String) -> Result<Job, ApiError> {
        services::jobs::get(self, job_id).await
    }

    async fn integer_averages(&self, limit: usize) -> Result<Vec<Average>, ApiError> {
        services::integers::latest(self, limit).await
    }

    fn find_manager(&self, lat: f64, lng: f64) -> Result<ManagerView, ApiError> {
        services::parties::find(self, lat, lng)
    }

    async fn create_party(&self, request: CreateParty) -> Result<PartyCreated, ApiError> {
        services::parties::create(self, request).await
    }

    async fn join_party(
        &self,
        code: String,
        request: JoinParty,
    ) -> Result<(bool, PartyMember), ApiError> {
        services::parties::join(self, code, request).await
    }

    async fn party(&self, code: String) -> Result<Party, ApiError> {
        services::parties::get(self, code).await
    }

    async fn leave_party(&self, code: String, device_id: String) -> Result<PartyLeft, ApiError> {
        services::parties::leave(self, code, device_id).await
    }

    async fn nearby_parties(&self, search: NearbySearch) -> Result<Vec<NearbyParty>, ApiError> {
        services::parties::nearby(self, search).await
    }

    fn render_metrics(&self) -> String {
        // Refreshes the storage gauges, which are read on demand rather than on every write.
        let _ = self.storage_usage();
        let transit = self.transit_now("/metrics");
        self.inner.metrics.observe_shards(
            self.inner.shards.fresh_majority(&self.topology()),
            transit.iter().map(|t| t.state.as_str()),
        );
        let mut out = String::new();
        if let Err(error) =
            prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
        {
            tracing::error!(%error, "cannot encode metrics");
        }
        out
    }
}

impl Handler for Node {
    type Call = Request;

    async fn handle(&self, from: NodeId, request: Request) -> Response {
        match request {
            // The shard layer checks that the authenticated caller may send it.
            Request::Shard(request) => {
                let answered = self.inner.shards.answer_peer(&from, request).await;
                answer(answered, Response::Shard)
            }
            request => self.handle_local(request).await,
        }
    }
}

/// The answer to a request the shard layer carried out (`done`), or its refusal.
fn answer<T>(result: Result<T, Refusal>, done: impl FnOnce(T) -> Response) -> Response {
    result.map_or_else(Response::from, done)
}
