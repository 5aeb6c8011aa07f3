//! The scenario catalogue: each scenario builds a seeded cluster, injects its faults and checks
//! its invariants, returning the simulated times it measured or the invariant that failed.
//!
//! Tests run each scenario on pinned seeds; the explorer (`src/main.rs`) sweeps many seeds.

use std::time::Duration;

use crate::harness::{SimCluster, SIM_SHARDS};
use crate::observe::Views;

/// Nodes in every scenario.
pub const SIZE: usize = 5;
/// Bound on a fresh cluster agreeing on membership and placement.
pub const CONVERGE_WITHIN: Duration = Duration::from_secs(10);
/// Bound on the failure detector declaring a silent node dead everywhere.
pub const DETECT_WITHIN: Duration = Duration::from_secs(15);
/// Bound on a restarted or reconnected node being everybody's live, ready member again.
pub const REJOIN_WITHIN: Duration = Duration::from_secs(10);

/// What a passing run measured: named simulated durations, in the order they happened.
pub type Measurements = Vec<(&'static str, Duration)>;

/// One scenario: a name for the command line and the function that runs it for a seed.
pub struct Scenario {
    /// Name used by `--scenario`.
    pub name: &'static str,
    /// Runs the scenario; an error names the invariant that failed, with the seed and views.
    pub run: fn(u64) -> turmoil::Result<Measurements>,
}

/// Every scenario, in the order `--scenario all` runs them.
pub const ALL: &[Scenario] = &[
    Scenario {
        name: "converge",
        run: converge,
    },
    Scenario {
        name: "crash-restart",
        run: crash_restart,
    },
    Scenario {
        name: "partition-repair",
        run: partition_repair,
    },
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.name == name)
}

/// A started cluster whose nodes all agree on membership and placement.
fn converged_cluster(seed: u64, measured: &mut Measurements) -> turmoil::Result<SimCluster> {
    let mut cluster = SimCluster::start(seed, SIZE)?;
    let hosts = cluster.hosts().to_vec();
    let took = cluster.run_until(CONVERGE_WITHIN, "all nodes converge", |v| {
        v.converged(&hosts)
    })?;
    measured.push(("converged", took));
    Ok(cluster)
}

/// Five nodes agree on one membership and one shard table in which every node owns a shard.
pub fn converge(seed: u64) -> turmoil::Result<Measurements> {
    let mut measured = Vec::new();
    let cluster = converged_cluster(seed, &mut measured)?;
    let views = cluster.views();
    let table = &views.of("n1").ok_or("n1 answered")?.shards;
    if table.len() != SIM_SHARDS as usize {
        return Err(format!(
            "seed {seed}: shard table has {} entries, expected {SIM_SHARDS}",
            table.len()
        )
        .into());
    }
    for host in cluster.hosts() {
        if !table
            .iter()
            .any(|s| s.owner.as_deref() == Some(host.as_str()))
        {
            return Err(format!("seed {seed}: {host} owns no shard").into());
        }
    }
    Ok(measured)
}

/// A crashed node is seen dead by all others and loses its shards; restarted, it rejoins with a
/// higher generation.
pub fn crash_restart(seed: u64) -> turmoil::Result<Measurements> {
    let mut measured = Vec::new();
    let mut cluster = converged_cluster(seed, &mut measured)?;
    let generation_before = cluster
        .views()
        .generation("n1", "n5")
        .ok_or("n1 lists n5")?;
    cluster.crash("n5");
    let survivors = cluster.others("n5");
    let took = cluster.run_until(
        DETECT_WITHIN,
        "every survivor sees n5 dead and gives it no shard",
        |v| survivors.iter().all(|h| v.sees_dead(h, "n5")),
    )?;
    measured.push(("crash detected", took));
    cluster.bounce("n5");
    let hosts = cluster.hosts().to_vec();
    let took = cluster.run_until(REJOIN_WITHIN, "n5 rejoins with a higher generation", |v| {
        v.converged(&hosts)
            && hosts
                .iter()
                .all(|h| v.generation(h, "n5") > Some(generation_before))
    })?;
    measured.push(("restart rejoined", took));
    Ok(measured)
}

/// An isolated node sees all others dead and they see it dead; after repair all converge.
pub fn partition_repair(seed: u64) -> turmoil::Result<Measurements> {
    let mut measured = Vec::new();
    let mut cluster = converged_cluster(seed, &mut measured)?;
    cluster.isolate("n1");
    let others = cluster.others("n1");
    let n1_side = |v: &Views| others.iter().all(|o| v.sees_dead("n1", o));
    let others_side = |v: &Views| others.iter().all(|o| v.sees_dead(o, "n1"));
    let took = cluster.run_until_each(
        DETECT_WITHIN,
        &[
            ("n1 sees every other node dead", &n1_side),
            ("every other node sees n1 dead", &others_side),
        ],
    )?;
    measured.push(("partition seen by n1", took[0]));
    measured.push(("partition seen by others", took[1]));
    cluster.heal("n1");
    let hosts = cluster.hosts().to_vec();
    let took = cluster.run_until(REJOIN_WITHIN, "all nodes converge again", |v| {
        v.converged(&hosts)
    })?;
    measured.push(("reconverged after repair", took));
    Ok(measured)
}
