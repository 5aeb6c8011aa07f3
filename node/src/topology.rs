//! The node's working view of the cluster: a membership snapshot and the shard table computed
//! from it, published together so no reader ever pairs a table with the wrong membership.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::ids::{NodeId, ShardId};
use crate::membership::{Member, Membership, MembershipSnapshot};
use crate::placement::ShardTable;

/// Membership plus the placement derived from it.
#[derive(Debug)]
pub struct Topology {
    /// The membership this was computed from.
    pub membership: Arc<MembershipSnapshot>,
    /// Owner and replicas of every shard.
    pub table: ShardTable,
}

impl Topology {
    /// Computes placement from a membership snapshot (a pure function: every node that sees the
    /// same snapshot computes the same table).
    pub fn compute(
        membership: Arc<MembershipSnapshot>,
        shard_count: u32,
        replication_factor: usize,
    ) -> Self {
        let table = ShardTable::compute(
            shard_count,
            &membership.placement_nodes(),
            replication_factor,
        );
        Self { membership, table }
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
}

/// Keeps a [`Topology`] current: recomputed on every membership change until `shutdown`.
/// `on_change` runs after each recomputation (metrics).
pub fn track(
    membership: &Membership,
    shard_count: u32,
    replication_factor: usize,
    shutdown: CancellationToken,
    on_change: impl Fn(&Topology) + Send + 'static,
) -> watch::Receiver<Arc<Topology>> {
    let mut snapshots = membership.subscribe();
    let first = Arc::new(Topology::compute(
        snapshots.borrow_and_update().clone(),
        shard_count,
        replication_factor,
    ));
    on_change(&first);
    let (tx, rx) = watch::channel(first);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                // The node is stopping.
                _ = shutdown.cancelled() => return,
                changed = snapshots.changed() => if changed.is_err() { return },
            }
            let snapshot = snapshots.borrow_and_update().clone();
            let topology = Topology::compute(snapshot, shard_count, replication_factor);
            on_change(&topology);
            if tx.send(Arc::new(topology)).is_err() {
                return;
            }
        }
    });
    rx
}
