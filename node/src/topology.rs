//! The node's working view of the cluster: a membership snapshot and the shard table computed
//! from it, published together so no reader ever pairs a table with the wrong membership.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ids::{NodeId, ShardId};
use crate::layout::ShardLayout;
use crate::membership::{Heard, Member, Membership, MembershipSnapshot, NodeStatus};
use crate::placement::ShardTable;

/// Membership plus the placement derived from it.
#[derive(Debug)]
pub struct Topology {
    /// The membership this was computed from.
    pub membership: Arc<MembershipSnapshot>,
    /// Owner and replicas of every shard.
    pub table: ShardTable,
    /// When a live member last appeared in this node's view (a join, a restart, a partition
    /// healing). Until gossip has settled after that, the view may still miss live members
    /// that hold newer copies, so owners wait before taking shards over (see `shard::owner`).
    pub live_grew_at: Instant,
    /// When this node last heard from each member (shared, always current).
    pub heard: Heard,
}

impl Topology {
    /// Computes placement from a membership snapshot (a pure function: every node that sees the
    /// same snapshot computes the same table).
    pub fn compute(
        membership: Arc<MembershipSnapshot>,
        heard: Heard,
        layout: &ShardLayout,
        replication_factor: usize,
    ) -> Self {
        let table =
            ShardTable::compute(layout, &membership.placement_members(), replication_factor);
        Self::with_table(membership, heard, table)
    }

    /// A topology whose table was computed from the same placement members as `membership`'s.
    fn with_table(membership: Arc<MembershipSnapshot>, heard: Heard, table: ShardTable) -> Self {
        Self {
            membership,
            table,
            live_grew_at: Instant::now(),
            heard,
        }
    }

    /// The owner of `shard` and its membership entry (for its RPC address).
    pub fn owner(&self, shard: ShardId) -> Option<&Member> {
        self.table
            .owner(shard)
            .and_then(|id| self.membership.get(id))
    }

    /// Whether `node` is the owner of `shard`.
    pub fn owns(&self, node: &NodeId, shard: ShardId) -> bool {
        self.table.owner(shard) == Some(node)
    }

    /// Whether `node`, given a pre-copy of `shard` while it joined, may still catch up on it
    /// from the shard's holders: it is still joining, or placement gives it the shard. A node
    /// that became ready while placement moved on (another node joined meanwhile) does not.
    pub fn expects_copy(&self, node: &NodeId, shard: ShardId) -> bool {
        let joining = self
            .membership
            .get(node)
            .is_some_and(|m| m.live && m.status == NodeStatus::Joining);
        joining || self.table.replicas(shard).contains(node)
    }
}

/// The live incarnations in `membership` (a restarted node is a new one).
fn live_members(membership: &MembershipSnapshot) -> BTreeSet<(NodeId, u64)> {
    membership
        .members()
        .filter(|m| m.live)
        .map(|m| (m.node_id.clone(), m.generation.0))
        .collect()
}

/// Keeps a [`Topology`] current: recomputed on every membership change until `shutdown`.
/// `on_change` runs after each recomputation (metrics).
pub fn track(
    membership: &Membership,
    layout: Arc<ShardLayout>,
    replication_factor: usize,
    shutdown: CancellationToken,
    on_change: impl Fn(&Topology) + Send + 'static,
) -> watch::Receiver<Arc<Topology>> {
    let mut snapshots = membership.subscribe();
    let heard = membership.heard();
    let first = Arc::new(Topology::compute(
        snapshots.borrow_and_update().clone(),
        heard.clone(),
        &layout,
        replication_factor,
    ));
    on_change(&first);
    let mut live = live_members(&first.membership);
    let mut grew_at = first.live_grew_at;
    let (tx, rx) = watch::channel(first);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                // The node is stopping.
                _ = shutdown.cancelled() => return,
                changed = snapshots.changed() => if changed.is_err() { return },
            }
            let snapshot = snapshots.borrow_and_update().clone();
            let now_live = live_members(&snapshot);
            if !now_live.is_subset(&live) {
                grew_at = Instant::now();
            }
            live = now_live;
            // Placement depends on the live ready members only: a change of anything else
            // (a joining node going live, a key) keeps the table, which at 100 nodes costs
            // about 0.1 s of CPU to compute.
            let placed = snapshot.placement_members();
            let previous = tx.borrow().clone();
            let table = if placed == previous.membership.placement_members() {
                previous.table.clone()
            } else {
                ShardTable::compute(&layout, &placed, replication_factor)
            };
            let mut topology = Topology::with_table(snapshot, heard.clone(), table);
            topology.live_grew_at = grew_at;
            on_change(&topology);
            if tx.send(Arc::new(topology)).is_err() {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::snapshot::test_member;

    /// A ready node `a` and a node `j` with the given status and liveness, 8 shards, RF 1.
    fn with_j(status: NodeStatus, live: bool) -> Topology {
        let members = [
            test_member("a", 1, NodeStatus::Ready, true),
            test_member("j", 1, status, live),
        ];
        let membership = Arc::new(MembershipSnapshot::from_members(members));
        Topology::compute(
            membership,
            Heard::default(),
            &ShardLayout::new(8, &[], 1),
            1,
        )
    }

    #[test]
    fn a_joining_node_expects_every_shard_it_was_pre_copied() {
        let t = with_j(NodeStatus::Joining, true);
        let j = NodeId::new("j");
        assert!((0..8).all(|s| t.expects_copy(&j, ShardId(s))));
    }

    #[test]
    fn a_ready_node_expects_only_the_shards_placement_gives_it() {
        let t = with_j(NodeStatus::Ready, true);
        let j = NodeId::new("j");
        for s in (0..8).map(ShardId) {
            assert_eq!(t.expects_copy(&j, s), t.owns(&j, s), "shard {s}");
        }
        assert!((0..8).any(|s| !t.expects_copy(&j, ShardId(s))));
    }

    #[test]
    fn a_dead_joining_node_expects_nothing() {
        let t = with_j(NodeStatus::Joining, false);
        assert!(!t.expects_copy(&NodeId::new("j"), ShardId(0)));
    }
}
