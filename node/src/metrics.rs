//! Node-level metrics: forwards and their failures, membership size by status, units owned.
//!
//! One registry per node holds these and the HTTP edge's families, so `/metrics` is one
//! consistent exposition.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::ids::NodeId;
use crate::membership::MembershipSnapshot;
use crate::placement::ShardTable;

/// Label of the membership gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// `joining`, `ready`, `leaving` (live members) or `dead`.
    pub status: &'static str,
}

/// Label of the units gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    /// `owner` or `replica`.
    pub role: &'static str,
}

/// Label of the untrimmed-entries counter: why the owner kept the full log.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UntrimmedLabel {
    /// `replica_behind` (a replica has not confirmed every entry), `replica_waiting` (one
    /// waits to be brought in) or `pre_copied` (a node pre-copied lately may still need it).
    pub reason: &'static str,
}

/// The node's own metric handles (cheap clones of shared counters).
#[derive(Clone, Default)]
pub struct NodeMetrics {
    /// Requests sent to another node because it owns the key.
    pub forwards: Counter,
    /// Forward attempts that failed (the request may still succeed on a retry).
    pub forward_failures: Counter,
    /// Log entries written by this node's shard owners: one per batch of commands.
    pub shard_entries: Counter,
    /// Commands whose changes those entries carry; over `shard_entries`, the mean batch.
    pub shard_commands: Counter,
    /// Entries written while some copy may be behind, so every holder keeps the last 32 log
    /// entries instead of two (decision 013), by reason; over `shard_entries`, how often.
    pub shard_entries_untrimmed: Family<UntrimmedLabel, Counter>,
    /// Commands refused with 503 because their shard owner's queue was full
    /// ([`MAX_PENDING_PER_SHARD`](crate::shard::host::MAX_PENDING_PER_SHARD)).
    pub shard_queue_rejections: Counter,
    /// The node's recent membership and ownership events, for the dashboard. Here so the
    /// shard layer, which holds these handles, records where a shard changes owner.
    pub events: crate::events::Events,
    members: Family<StatusLabel, Gauge>,
    units: Family<RoleLabel, Gauge>,
}

impl NodeMetrics {
    /// Creates the handles and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "troupe_forwards",
            "Requests forwarded to the owning node",
            metrics.forwards.clone(),
        );
        registry.register(
            "troupe_forward_failures",
            "Forward attempts that failed (retried while the budget lasts)",
            metrics.forward_failures.clone(),
        );
        registry.register(
            "troupe_shard_entries",
            "Shard log entries written by this node's owners (one per batch of commands)",
            metrics.shard_entries.clone(),
        );
        registry.register(
            "troupe_shard_commands",
            "Commands whose changes this node's owners wrote (divided by entries: mean batch)",
            metrics.shard_commands.clone(),
        );
        registry.register(
            "troupe_shard_entries_untrimmed",
            "Shard log entries written while a copy may be behind (holders keep the full log), by reason",
            metrics.shard_entries_untrimmed.clone(),
        );
        registry.register(
            "troupe_shard_queue_rejections",
            "Commands refused with 503 because their shard owner had too many waiting",
            metrics.shard_queue_rejections.clone(),
        );
        registry.register(
            "troupe_members",
            "Known members by status (dead = not live)",
            metrics.members.clone(),
        );
        registry.register(
            "troupe_units",
            "Shards held by this node, by role",
            metrics.units.clone(),
        );
        metrics
    }

    /// Refreshes the gauges from the current membership and shard table.
    pub fn observe(&self, me: &NodeId, snapshot: &MembershipSnapshot, table: &ShardTable) {
        for status in ["joining", "ready", "leaving", "dead"] {
            let count = snapshot
                .members()
                .filter(|m| {
                    if status == "dead" {
                        !m.live
                    } else {
                        m.live && m.status.as_str() == status
                    }
                })
                .count();
            self.members
                .get_or_create(&StatusLabel { status })
                .set(count as i64);
        }
        let owned = table.units_owned_by(me);
        let held = table
            .iter()
            .filter(|replicas| replicas.contains(me))
            .count();
        self.units
            .get_or_create(&RoleLabel { role: "owner" })
            .set(owned as i64);
        self.units
            .get_or_create(&RoleLabel { role: "replica" })
            .set((held - owned) as i64);
    }
}
