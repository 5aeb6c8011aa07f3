//! Scale, simulated: what 20, 50 and 100 real nodes cost and how fast they agree, on machines
//! that hold only a few real processes.
//!
//! One run ([`run`]) boots `nodes` simulated hosts, each running the real node code, and
//! measures in simulated time:
//! - **converge**: every node lists every node, live and ready, every shard has an owner in
//!   every view and all views hold the same shard table (the first time every node merely
//!   sees every other live is reported too);
//! - **gossip**: bytes each node sends per second, as production would put them in UDP
//!   payloads (chitchat's encoded envelope plus the seal, [`crate::gossip::GossipMeter`]),
//!   while converging and then over a quiet window;
//! - **shards per node**: owned, and held (owner or replica), min and max, from the
//!   converged table;
//! - **RPC**: inter-node bytes per node per second over the same quiet window
//!   ([`crate::net::rpc_traffic`]), and the real CPU time of one placement;
//! - after one node crashes: **detect** (every survivor lists it dead), **settle** (every
//!   survivor's table gives every shard a live owner, and all survivors hold the same table) and
//!   **served** (settled, and no survivor is still taking a shard over or installing a copy).
//!
//! Shard count: the smallest power of two at least `nodes` (and at least the simulation's 16),
//! so that every node owns at least one shard: placement balances owners within one unit, and
//! with fewer shards than nodes some own none and the crashed node might hold nothing to fail
//! over. 50 nodes get 64 shards (production's default), 100 get 128.
//!
//! These runs are slow (minutes of real time at 100 nodes), so they are not part of
//! `--scenario all`; [`SCENARIOS`] names them for the explorer. The row printed is the one
//! docs/SIMULATION.md ("Scale") holds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tracing::info;
use troupe_http::views::ClusterView;
use troupe_node::ids::NodeId;
use troupe_node::placement;

use crate::gossip::{GossipMeter, Traffic};
use crate::harness::{SimCluster, SIM_SHARDS};
use crate::net::{rpc_traffic, RpcTraffic};
use crate::observe::{lists_exactly, same_table, Views};
use crate::scenarios::{Measurements, Scenario};

/// Bound on a fresh cluster converging, in simulated time (the target is 5 s at 100 nodes,
/// `docs/STATUS.md`; the bound only keeps a broken run from going on forever, the row shows
/// the time).
pub const CONVERGE_WITHIN: Duration = Duration::from_secs(60);
/// Bound on detecting a crash and settling ownership after it, in simulated time.
pub const DETECT_WITHIN: Duration = Duration::from_secs(60);
/// Simulated time over which steady gossip is metered, once the cluster is quiet.
pub const QUIET_WINDOW: Duration = Duration::from_secs(10);

/// The scale scenarios, run only when named (`--scenario scale-100`), never by `all`.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "scale-20",
        run: scale_20,
    },
    Scenario {
        name: "scale-50",
        run: scale_50,
    },
    Scenario {
        name: "scale-100",
        run: scale_100,
    },
];

/// 20 nodes: the size the test runs.
pub fn scale_20(seed: u64) -> turmoil::Result<Measurements> {
    scenario(seed, 20)
}

/// 50 nodes.
pub fn scale_50(seed: u64) -> turmoil::Result<Measurements> {
    scenario(seed, 50)
}

/// 100 nodes.
pub fn scale_100(seed: u64) -> turmoil::Result<Measurements> {
    scenario(seed, 100)
}

/// Runs [`run`], prints the table's header and row, and returns the measured times.
fn scenario(seed: u64, nodes: usize) -> turmoil::Result<Measurements> {
    let report = run(seed, nodes)?;
    println!("{}", Report::HEADER);
    println!("{}", report.row());
    println!("{}", report.details());
    Ok(report.measurements())
}

/// Hash shards for a cluster of `nodes`: see the module's documentation.
pub fn shards_for(nodes: usize) -> u32 {
    let shards = nodes.max(SIM_SHARDS as usize).next_power_of_two();
    u32::try_from(shards).unwrap_or(u32::MAX)
}

/// What one scale run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// The run's seed.
    pub seed: u64,
    /// Nodes started.
    pub nodes: usize,
    /// Hash shards (`cluster.shards`).
    pub hash_shards: u32,
    /// Every shard in the table: hash shards and one party manager shard per region.
    pub shards: usize,
    /// Until every node first saw every node live.
    pub all_live: Duration,
    /// Until the first node, and until the last node, said in its own view that it is ready
    /// (a joining node first waits for its view of the members to hold still for 3 gossip
    /// rounds, then has the shards placement will give it copied to it).
    pub self_ready: (Duration, Duration),
    /// Until every node saw every node live and ready (a joining node waits for its view to
    /// hold still before it says it is ready, then has its shards copied to it).
    pub all_ready: Duration,
    /// Until every node saw every node live and ready, with one table giving every shard an
    /// owner.
    pub converged: Duration,
    /// Owned shards per node in the converged table (min, max).
    pub owned: (usize, usize),
    /// Shards held per node, owner or replica, in the converged table (min, max).
    pub held: (usize, usize),
    /// Gossip from the start until convergence.
    pub gossip_converging: Window,
    /// Gossip over [`QUIET_WINDOW`] once no node had a shard in transit.
    pub gossip_quiet: Window,
    /// Inter-node RPC over the same quiet window (lease checks, pings), for comparison.
    pub rpc_quiet: RpcTraffic,
    /// The node crashed.
    pub victim: String,
    /// From the crash until every survivor listed it dead.
    pub detected: Duration,
    /// From the crash until every survivor's table gave every shard a live owner, the same
    /// table everywhere.
    pub settled: Duration,
    /// From the crash until, in addition, no survivor was taking a shard over or installing
    /// a copy: the new owners serve.
    pub served: Duration,
    /// Real CPU time of one placement of the hash shards over all nodes
    /// ([`placement::replica_sets`] at the cluster's replication factor, what every node
    /// recomputes on every membership change),
    /// the least of three: simulated time does not advance while node code computes, so the
    /// times above do not include it.
    pub placement: Duration,
    /// Real (wall-clock) time the run took, for the cost of simulating it.
    pub wall: Duration,
}

/// Gossip metered over an interval of simulated time.
#[derive(Clone, Debug)]
pub struct Window {
    /// Simulated length of the interval.
    pub length: Duration,
    /// Nodes the bytes are shared among: every node of the run (the crashed one was still up).
    pub senders: usize,
    /// Everything sent in it.
    pub total: Traffic,
    /// Most bytes any one node sent in it.
    pub most_by_one: u64,
    /// Per chitchat message kind.
    pub by_kind: BTreeMap<&'static str, Traffic>,
}

impl Window {
    fn new(meter: &GossipMeter, length: Duration, nodes: usize) -> Self {
        Self {
            length,
            senders: nodes,
            total: meter.total(),
            most_by_one: meter.by_sender.values().map(|t| t.bytes).max().unwrap_or(0),
            by_kind: meter.by_kind.clone(),
        }
    }

    /// Mean bytes per node per second.
    pub fn bytes_per_node_second(&self) -> f64 {
        self.total.bytes as f64 / self.senders.max(1) as f64 / self.length.as_secs_f64().max(1e-9)
    }

    /// Most bytes per second sent by any one node.
    pub fn most_per_second(&self) -> f64 {
        self.most_by_one as f64 / self.length.as_secs_f64().max(1e-9)
    }

    /// Mean payload of a datagram, in bytes.
    pub fn mean_datagram(&self) -> f64 {
        self.total.bytes as f64 / self.total.datagrams.max(1) as f64
    }

    /// One line per message kind: datagrams, mean size, share that is delta.
    fn kinds(&self) -> String {
        self.by_kind
            .iter()
            .map(|(kind, t)| {
                format!(
                    "{kind}: {} datagrams, mean {:.0} B, largest {} B, {:.0} % delta",
                    t.datagrams,
                    t.bytes as f64 / t.datagrams.max(1) as f64,
                    t.largest,
                    100.0 * t.delta_bytes as f64 / t.bytes.max(1) as f64
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Report {
    /// The table's header, in markdown.
    pub const HEADER: &'static str = "| nodes | shards | seed | all live | self-ready first–last | all ready | converged | detect | settle | served | gossip B/node/s converging | gossip B/node/s quiet (max node) | mean datagram | RPC B/node/s quiet | owned/node | held/node | placement CPU | wall |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

    /// The run's row of the table, in markdown.
    pub fn row(&self) -> String {
        let s = |d: Duration| format!("{:.2} s", d.as_secs_f64());
        format!(
            "| {} | {}+{} | {} | {} | {:.2}–{} | {} | {} | {} | {} | {} | {:.0} | {:.0} ({:.0}) | {:.0} B | {:.0} | {}–{} | {}–{} | {:.1} ms | {:.0} s |",
            self.nodes,
            self.hash_shards,
            self.shards - self.hash_shards as usize,
            self.seed,
            s(self.all_live),
            self.self_ready.0.as_secs_f64(),
            s(self.self_ready.1),
            s(self.all_ready),
            s(self.converged),
            s(self.detected),
            s(self.settled),
            s(self.served),
            self.gossip_converging.bytes_per_node_second(),
            self.gossip_quiet.bytes_per_node_second(),
            self.gossip_quiet.most_per_second(),
            self.gossip_quiet.mean_datagram(),
            self.rpc_quiet.bytes as f64 / self.nodes as f64 / QUIET_WINDOW.as_secs_f64(),
            self.owned.0,
            self.owned.1,
            self.held.0,
            self.held.1,
            self.placement.as_secs_f64() * 1e3,
            self.wall.as_secs_f64(),
        )
    }

    /// Where the gossip bytes go, per message kind, in both windows.
    pub fn details(&self) -> String {
        format!(
            "gossip while converging ({:.1} s): {}\ngossip quiet ({:.1} s): {}\nRPC quiet: {} bytes, {} connections dialed\ncrashed {}",
            self.gossip_converging.length.as_secs_f64(),
            self.gossip_converging.kinds(),
            self.gossip_quiet.length.as_secs_f64(),
            self.gossip_quiet.kinds(),
            self.rpc_quiet.bytes,
            self.rpc_quiet.connections,
            self.victim,
        )
    }

    /// The measured simulated times, for the explorer and the tests.
    pub fn measurements(&self) -> Measurements {
        vec![
            ("all live", self.all_live),
            ("all ready", self.all_ready),
            ("converged", self.converged),
            ("crash detected", self.detected),
            ("ownership settled", self.settled),
            ("new owners serve", self.served),
        ]
    }
}

/// Boots `nodes` nodes with [`shards_for`] shards and gossip metering on, and measures
/// everything in [`Report`]; fails, with the views, when a step does not happen within its
/// bound or the converged table leaves a node without a shard.
pub fn run(seed: u64, nodes: usize) -> turmoil::Result<Report> {
    let wall = Instant::now();
    let hash_shards = shards_for(nodes);
    let mut cluster = SimCluster::start_configured(seed, nodes, 0, |config| {
        config.cluster.shards = hash_shards;
    })?;
    cluster.gossip().set_metering(true);
    let rf = cluster.config().cluster.replication_factor;
    let hosts = cluster.hosts().to_vec();

    let all_live = |v: &Views| hosts.iter().all(|h| sees_live(v, h, &hosts));
    let all_ready = |v: &Views| hosts.iter().all(|h| sees_ready(v, h, &hosts));
    let converged = |v: &Views| v.converged(&hosts);
    let says_ready = |v: &Views, h: &String| v.member(h, h).is_some_and(|m| m.status == "ready");
    let first_ready = |v: &Views| hosts.iter().any(|h| says_ready(v, h));
    let last_ready = |v: &Views| hosts.iter().all(|h| says_ready(v, h));
    let took = cluster.run_until_each(
        CONVERGE_WITHIN,
        &[
            ("a node says it is ready", &first_ready),
            ("every node says it is ready", &last_ready),
            ("every node sees every node live", &all_live),
            ("every node sees every node live and ready", &all_ready),
            (
                "every node sees every node ready, one table, every shard owned",
                &converged,
            ),
        ],
    )?;
    let self_ready = (took[0], took[1]);
    let (all_live, all_ready, converged_at) = (took[2], took[3], took[4]);
    let gossip_converging = Window::new(&cluster.gossip().meter(), cluster.elapsed(), nodes);
    info!(
        nodes,
        converged_ms = converged_at.as_millis() as u64,
        wall_s = wall.elapsed().as_secs(),
        "converged"
    );

    let views = cluster.views();
    let table = views.of(&hosts[0]).ok_or("the first node answered")?;
    let (owned, held) = shards_per_node(table, &hosts);
    if owned.0 == 0 {
        return Err(format!(
            "seed {seed}: a node owns no shard among {} at {nodes} nodes",
            table.shards.len()
        )
        .into());
    }
    let shards = table.shards.len();

    // Steady state: wait for every takeover of the first placement to finish, then meter.
    cluster.run_until(CONVERGE_WITHIN, "no node has a shard in transit", |v| {
        hosts.iter().all(|h| v.of(h).is_some_and(|c| !moving(c)))
    })?;
    let before = cluster.gossip().meter();
    let rpc_before = rpc_traffic();
    cluster.step_for(QUIET_WINDOW)?;
    let rpc_quiet = rpc_traffic().since(&rpc_before);
    let gossip_quiet = Window::new(
        &cluster.gossip().meter().since(&before),
        QUIET_WINDOW,
        nodes,
    );

    let victim = hosts[nodes - 1].clone();
    cluster.crash(&victim);
    let survivors = cluster.others(&victim);
    let detected = |v: &Views| {
        survivors
            .iter()
            .all(|h| v.member(h, &victim).is_some_and(|m| !m.live))
    };
    let settled = |v: &Views| owned_by_live(v, &survivors, &victim);
    let served = |v: &Views| {
        owned_by_live(v, &survivors, &victim)
            && survivors
                .iter()
                .all(|h| v.of(h).is_some_and(|c| !taking_over(c)))
    };
    let took = cluster.run_until_each(
        DETECT_WITHIN,
        &[
            ("every survivor sees the crashed node dead", &detected),
            (
                "every survivor's table gives every shard a live owner",
                &settled,
            ),
            ("the new owners serve", &served),
        ],
    )?;
    let report = Report {
        seed,
        nodes,
        hash_shards,
        shards,
        all_live,
        all_ready,
        self_ready,
        converged: converged_at,
        owned,
        held,
        gossip_converging,
        gossip_quiet,
        rpc_quiet,
        victim,
        detected: took[0],
        settled: took[1],
        served: took[2],
        placement: placement_cost(hash_shards, &hosts, rf),
        wall: wall.elapsed(),
    };
    info!(row = %report.row(), "scale run done");
    Ok(report)
}

/// The least real time of three placements of `hash_shards` over `hosts` with `rf` copies, as
/// [`placement::ShardTable::compute`] places hash shards.
fn placement_cost(hash_shards: u32, hosts: &[String], rf: usize) -> Duration {
    let units: Vec<String> = (0..hash_shards).map(|s| format!("shard/{s}")).collect();
    let nodes: Vec<NodeId> = hosts.iter().map(NodeId::new).collect();
    (0..3)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(placement::replica_sets(&units, &nodes, rf));
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Whether `host` lists exactly `nodes` (in any order), each live.
fn sees_live(views: &Views, host: &str, nodes: &[String]) -> bool {
    let Some(view) = views.of(host) else {
        return false;
    };
    lists_exactly(view, nodes) && view.members.iter().all(|m| m.live)
}

/// Whether `host` lists exactly `nodes` (in any order), each live and ready.
fn sees_ready(views: &Views, host: &str, nodes: &[String]) -> bool {
    let Some(view) = views.of(host) else {
        return false;
    };
    lists_exactly(view, nodes) && view.members.iter().all(|m| m.live && m.status == "ready")
}

/// Whether every survivor's table gives every shard an owner it lists live, never `dead`, and
/// all survivors hold the same table.
fn owned_by_live(views: &Views, survivors: &[String], dead: &str) -> bool {
    let mut first = None;
    survivors.iter().all(|h| {
        let Some(view) = views.of(h) else {
            return false;
        };
        let live: BTreeSet<&str> = view
            .members
            .iter()
            .filter(|m| m.live)
            .map(|m| m.node_id.as_str())
            .collect();
        let owned = view.shards.iter().all(|s| {
            s.owner
                .as_deref()
                .is_some_and(|o| o != dead && live.contains(o))
        });
        owned && same_table(first.get_or_insert(view), view)
    })
}

/// Whether the node that answered `view` has any shard in transit, waiting replicas included.
fn moving(view: &ClusterView) -> bool {
    !view.transit.is_empty()
}

/// Whether the node that answered `view` is still taking a shard over or filling a copy (new
/// replicas waiting out the re-replication delay do not count: the owner already serves).
fn taking_over(view: &ClusterView) -> bool {
    view.transit
        .iter()
        .any(|t| t.state == "taking-over" || t.state == "installing")
}

/// Owned and held (owner or replica) shards per node of `hosts` in `view`'s table: (min, max)
/// of each.
fn shards_per_node(view: &ClusterView, hosts: &[String]) -> ((usize, usize), (usize, usize)) {
    let mut owned: BTreeMap<&str, usize> = hosts.iter().map(|h| (h.as_str(), 0)).collect();
    let mut held = owned.clone();
    for shard in &view.shards {
        if let Some(count) = shard.owner.as_deref().and_then(|o| owned.get_mut(o)) {
            *count += 1;
        }
        for node in shard.owner.iter().chain(&shard.replicas) {
            if let Some(count) = held.get_mut(node.as_str()) {
                *count += 1;
            }
        }
    }
    let range = |counts: &BTreeMap<&str, usize>| {
        let min = counts.values().copied().min().unwrap_or(0);
        let max = counts.values().copied().max().unwrap_or(0);
        (min, max)
    };
    (range(&owned), range(&held))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_gets_at_least_one_shard_to_own() {
        assert_eq!(shards_for(5), 16);
        assert_eq!(shards_for(20), 32);
        assert_eq!(shards_for(50), 64);
        assert_eq!(shards_for(64), 64);
        assert_eq!(shards_for(100), 128);
    }
}
