//! Graceful leave: a stopping node hands every shard it serves to the shard's next owner and
//! keeps answering until that owner serves it.
//!
//! Once the node has published `leaving`, placement on every node moves its shards to their
//! next owners. Each next owner seals the shard on every live member, this node included (so
//! this node stops acknowledging writes for it), pulls this node's copy if it is the most
//! advanced, brings its replicas up to date and only then serves. A shard is handed off when
//! its next owner answers a read as the serving owner: from then on this node's copy is not
//! needed. The wait is bounded: a node that cannot hand off in time (its successor is
//! unreachable) still exits, and the replicas take over as after a crash.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::ids::{NodeId, ShardId};
use crate::node::Node;
use crate::protocol::{Request, Response};
use crate::services::users;
use crate::shard::query::Query;
use crate::topology::Topology;

/// Time between two checks of the shards still to hand off.
const POLL: Duration = Duration::from_millis(100);

/// What a hand-off achieved.
#[derive(Debug, Default)]
pub struct HandOff {
    /// Shards now served by another node, with that node.
    pub handed: Vec<(ShardId, NodeId)>,
    /// Shards nobody else served before the deadline (or that had no other ready node).
    pub left: Vec<ShardId>,
}

/// Hands off every shard this node serves, waiting at most `timeout`; logs the outcome.
pub async fn hand_off(node: &Node, timeout: Duration) -> HandOff {
    let started = Instant::now();
    let mut pending: Vec<ShardId> = serving(node);
    let mut outcome = HandOff::default();
    let deadline = started + timeout;
    while !pending.is_empty() && Instant::now() < deadline {
        let topology = node.inner.topology.borrow().clone();
        if topology.membership.placement_nodes().is_empty() {
            // No other ready node: nobody can take over; the shards wait for the next start.
            break;
        }
        let checks = pending.iter().map(|&shard| {
            let topology = topology.clone();
            async move { (shard, served_elsewhere(node, &topology, shard).await) }
        });
        let mut still = Vec::new();
        for (shard, served_by) in join_all(checks).await {
            match served_by {
                Some(owner) => {
                    node.inner.metrics.events.handed_off(shard, &owner);
                    outcome.handed.push((shard, owner));
                }
                None => still.push(shard),
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(POLL).await;
        }
    }
    outcome.left = pending;
    outcome.handed.sort();
    report(&outcome, started.elapsed());
    outcome
}

/// The shards this node serves as owner now.
fn serving(node: &Node) -> Vec<ShardId> {
    node.inner
        .shards
        .local()
        .iter()
        .enumerate()
        .filter(|(_, l)| l.serving.is_some())
        .map(|(i, _)| ShardId(i as u32))
        .collect()
}

/// The node serving `shard` as its owner, if that is another node: asked with a read only a
/// serving owner answers.
async fn served_elsewhere(node: &Node, topology: &Arc<Topology>, shard: ShardId) -> Option<NodeId> {
    let owner = topology.owner(shard)?;
    if owner.node_id == node.inner.me {
        return None;
    }
    let request = Request::Read {
        shard,
        query: Query::Get {
            tenant: users::TENANT,
            key: Vec::new(),
        },
        allow_replica: false,
    };
    match node
        .inner
        .rpc
        .call(&owner.node_id, &owner.rpc_addr, request)
        .await
    {
        Ok(Response::Answer(_)) => Some(owner.node_id.clone()),
        _ => None,
    }
}

fn report(outcome: &HandOff, took: Duration) {
    let handed: Vec<String> = outcome
        .handed
        .iter()
        .map(|(shard, owner)| format!("{shard}->{owner}"))
        .collect();
    if outcome.left.is_empty() {
        info!(
            shards = outcome.handed.len(),
            took_ms = took.as_millis() as u64,
            handed = %handed.join(" "),
            "hand-off complete"
        );
    } else {
        let left: Vec<String> = outcome.left.iter().map(ToString::to_string).collect();
        warn!(
            shards = outcome.handed.len(),
            took_ms = took.as_millis() as u64,
            handed = %handed.join(" "),
            left = %left.join(" "),
            "hand-off incomplete: these shards fail over to their replicas instead"
        );
    }
}
