//! Node-level metrics: forwards and their failures, membership size by status, units owned,
//! the lease, the shards in transit and what waits at the shard owners. `docs/METRICS.md`
//! lists every metric a node exports.
//!
//! One registry per node holds these and the HTTP edge's families, so `/metrics` is one
//! consistent exposition.

use std::collections::BTreeMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
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

/// The states `/cluster`'s transit shows, each exported (at 0 when no shard is in it) so a
/// dashboard sees the series before the first move.
const TRANSIT_STATES: [&str; 5] = [
    "taking-over",
    "installing",
    "pre-copying",
    "pre-copied",
    "replicas-waiting",
];

/// Labels of the RPC latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// The peer called: a member's node id (calls go only to members from the sealed gossip,
    /// so the label takes at most one value per member the node has known).
    pub peer: String,
    /// `control` (lease checks, pings) or `data`.
    pub lane: &'static str,
    /// `ok` (answered) or `error` (refused, lost, timed out).
    pub outcome: &'static str,
}

/// Label of the transit gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitLabel {
    /// A state of `/cluster`'s `transit`: `taking-over`, `installing`, `pre-copying`,
    /// `pre-copied` or `replicas-waiting`.
    pub state: String,
}

/// What waits at this node's shard owners, summed over them (the shard layer counts it, see
/// `shard::backlog`). Node totals, not one series per shard: the labels stay bounded however
/// many shards a cluster has, and the deepest queue says whether one owner nears the limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Commands sent to the owners and not answered yet.
    pub commands: usize,
    /// The most of those at one owner (refusals start at the shard layer's
    /// `MAX_PENDING_PER_SHARD`).
    pub deepest_commands: usize,
    /// Timers pending (running jobs, each finished by its timer).
    pub timers: usize,
    /// Timers whose wake-up is past and that have not fired: the owner is late.
    pub timers_overdue: usize,
    /// Commands of the owners' sweeps queued or being retried (expired entries to delete).
    pub sweep_commands: usize,
}

/// The backlog's gauges.
#[derive(Clone, Default)]
struct BacklogGauges {
    commands: Gauge,
    deepest_commands: Gauge,
    timers: Gauge,
    timers_overdue: Gauge,
    sweep_commands: Gauge,
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
    /// (the shard layer's `MAX_PENDING_PER_SHARD`).
    pub shard_queue_rejections: Counter,
    /// The node's recent membership and ownership events, for the dashboard. Here so the
    /// shard layer, which holds these handles, records where a shard changes owner.
    pub events: crate::events::Events,
    members: Family<StatusLabel, Gauge>,
    units: Family<RoleLabel, Gauge>,
    lease_held: Gauge,
    transit: Family<TransitLabel, Gauge>,
    rpc_calls: RpcLatency,
    backlog: BacklogGauges,
}

/// The RPC latency family, with its buckets (a histogram family has no default).
#[derive(Clone)]
struct RpcLatency(Family<RpcLabels, Histogram>);

impl Default for RpcLatency {
    fn default() -> Self {
        // 100 µs to ~3.3 s, as the HTTP latency.
        Self(Family::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        }))
    }
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
        registry.register(
            "troupe_rpc_call_duration_seconds",
            "Inter-node RPC calls this node made, by peer, lane and outcome, from the call to its answer or failure",
            metrics.rpc_calls.0.clone(),
        );
        registry.register(
            "troupe_lease_held",
            "1 while this node holds the owner lease (a majority confirmed it reaches them), else 0",
            metrics.lease_held.clone(),
        );
        registry.register(
            "troupe_shards_in_transit",
            "Shards this node is moving, by state (as in /cluster's transit)",
            metrics.transit.clone(),
        );
        let backlog = &metrics.backlog;
        for (name, help, gauge) in [
            (
                "troupe_shard_queue_depth",
                "Commands sent to this node's shard owners and not answered yet",
                &backlog.commands,
            ),
            (
                "troupe_shard_queue_depth_max",
                "Commands waiting at this node's busiest shard owner (new ones get 503 at the limit)",
                &backlog.deepest_commands,
            ),
            (
                "troupe_shard_timers",
                "Timers pending at this node's shard owners (running jobs)",
                &backlog.timers,
            ),
            (
                "troupe_shard_timers_overdue",
                "Timers of this node's shard owners a tick past their deadline and not fired",
                &backlog.timers_overdue,
            ),
            (
                "troupe_shard_sweep_commands",
                "Commands of this node's shard owners' sweeps (expired entries to delete) not acknowledged yet",
                &backlog.sweep_commands,
            ),
        ] {
            registry.register(name, help, gauge.clone());
        }
        metrics
    }

    /// Refreshes the gauges of what waits at the shard owners, read when metrics are scraped.
    pub fn observe_backlog(&self, backlog: &Backlog) {
        let gauges = &self.backlog;
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        gauges.commands.set(count(backlog.commands));
        gauges.deepest_commands.set(count(backlog.deepest_commands));
        gauges.timers.set(count(backlog.timers));
        gauges.timers_overdue.set(count(backlog.timers_overdue));
        gauges.sweep_commands.set(count(backlog.sweep_commands));
    }

    /// Refreshes the gauges of this node's own shard state, read when metrics are scraped.
    pub fn observe_shards<'a>(&self, lease_held: bool, transit: impl Iterator<Item = &'a str>) {
        self.lease_held.set(i64::from(lease_held));
        let mut counts: BTreeMap<&str, i64> = TRANSIT_STATES.iter().map(|s| (*s, 0)).collect();
        for state in transit {
            *counts.entry(state).or_default() += 1;
        }
        for (state, count) in counts {
            self.transit
                .get_or_create(&TransitLabel {
                    state: state.to_owned(),
                })
                .set(count);
        }
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

impl crate::rpc::CallObserver for NodeMetrics {
    fn calls_to(&self, peer: &NodeId, lane: crate::rpc::Lane) -> crate::rpc::CallsTo {
        let family = self.rpc_calls.0.clone();
        let labels = |outcome| RpcLabels {
            peer: peer.to_string(),
            lane: lane.as_str(),
            outcome,
        };
        let series = [labels("ok"), labels("error")];
        // Each series is made on its first observation: a peer whose calls never failed shows
        // no `error` series.
        let handles: [std::sync::OnceLock<Histogram>; 2] = Default::default();
        std::sync::Arc::new(move |elapsed: std::time::Duration, ok: bool| {
            let which = usize::from(!ok);
            handles[which]
                .get_or_init(|| family.get_or_create(&series[which]).clone())
                .observe(elapsed.as_secs_f64());
        })
    }
}
