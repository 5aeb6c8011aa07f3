//! What the node answers: the HTTP edge's [`NodeApi`] and the inter-node [`Handler`], over the
//! node's local logic ([`Node::handle_local`]), the services, the router and the dashboard.
//! Above all of them, so the node itself imports none of them (`docs/ARCHITECTURE.md`,
//! "Layers").

use std::sync::atomic::Ordering;

use troupe_actors::integers::Average;
use troupe_actors::jobs::Job;
use troupe_actors::parties::{CreateParty, JoinParty, NearbySearch, Party};
use troupe_actors::sessions::{SessionReply, SessionUser};
use troupe_actors::users::{User, UserId, UserPatch};
use troupe_http::views::{
    ClusterView, DashboardView, GossipTablesView, ListFrom, Located, ManagerView, MemberView,
    NearbyParty, PartyCreated, PartyLeft, PartyMember, ShardCopyView, ShardView, UserPage,
};
use troupe_http::{ApiError, NodeApi, Readiness};

use crate::ids::{NodeId, ShardId};
use crate::membership::NodeStatus;
use crate::node::{answer, Node};
use crate::protocol::{Request, Response};
use crate::routing;
use crate::rpc::Handler;
use crate::services;

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
            // for most of a second, so a load balancer had no node to send to.
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
        // Refreshes the gauges of the node's own state, read on demand rather than where it
        // changes.
        let _ = self.storage_usage();
        self.inner.storage.observe_write_queue();
        let transit = self.transit_now("/metrics");
        self.inner.metrics.observe_shards(
            self.inner.shards.fresh_majority(&self.topology()),
            transit.iter().map(|t| t.state.as_str()),
        );
        self.inner
            .metrics
            .observe_backlog(&self.inner.shards.backlog());
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
            // Boxed, as is a command's (`Node::handle_local`): the RPC server runs each call
            // on a task as large as this future, the largest of its branches, and copies it
            // whole when spawning. Unboxed, the peer protocol's future made every read's
            // task three times the size of the read.
            Request::Shard(request) => {
                let answered = Box::pin(self.inner.shards.answer_peer(&from, request)).await;
                answer(answered, Response::Shard)
            }
            Request::Integer(sample) => self.inner.aggregator.deliver(sample),
            Request::Report => crate::dashboard::answer(self),
            request => self.handle_local(request).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::shard::peer::PeerRequest;
    use crate::shard::query::Query;

    /// The size of the future `make` returns; `make` is never called, so no node is needed.
    fn future_size<F, Fut>(_make: F) -> usize
    where
        F: FnOnce(&'static Node) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    fn never<T: 'static>() -> T {
        unreachable!("only the types of the futures are used")
    }

    /// The RPC server spawns every call's future, reads included, at the size of the largest
    /// branch of `handle`, and copies it whole: the rare, large branches must stay boxed.
    #[test]
    fn a_calls_future_is_not_sized_by_the_peer_protocol_or_by_commands() {
        let handle = future_size(|node| node.handle(never(), Request::Ping));
        let read = future_size(|node| node.inner.shards.read(ShardId(0), never::<&Query>(), false));
        let command = future_size(|node| {
            node.inner
                .shards
                .command(ShardId(0), never(), Duration::ZERO)
        });
        let peer = future_size(|node| async move {
            let from: NodeId = never();
            node.inner
                .shards
                .answer_peer(&from, PeerRequest::LeaseCheck)
                .await
        });
        assert!(handle < peer, "handle {handle} bytes, peer protocol {peer}");
        assert!(
            handle < command + read,
            "handle {handle} bytes, command {command}, read {read}"
        );
        assert!(handle < 3 * read, "handle {handle} bytes, read {read}");
    }
}
