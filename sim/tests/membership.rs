//! Membership scenarios on a simulated five-node cluster: convergence, crash detection and
//! restart, and a partition on both sides and its repair.
//!
//! Each test logs its seed; `TROUPE_SIM_SEED=<seed> cargo test -p troupe-sim` replays it.
//! Measured simulated times are printed (`-- --nocapture` shows them).

use std::time::Duration;

use troupe_sim::harness::{seed_or_env, SimCluster};
use troupe_sim::observe::Views;

/// Nodes in every scenario.
const SIZE: usize = 5;
/// Bound on a fresh cluster agreeing on membership and placement.
const CONVERGE_WITHIN: Duration = Duration::from_secs(10);
/// Bound on the failure detector declaring a silent node dead everywhere.
const DETECT_WITHIN: Duration = Duration::from_secs(15);
/// Bound on a restarted or reconnected node being everybody's live, ready member again.
const REJOIN_WITHIN: Duration = Duration::from_secs(10);

/// A started cluster whose nodes all agree on membership and placement.
fn converged_cluster(seed: u64) -> turmoil::Result<SimCluster> {
    let mut cluster = SimCluster::start(seed, SIZE)?;
    let hosts = cluster.hosts().to_vec();
    let took = cluster.run_until(CONVERGE_WITHIN, "all nodes converge", |v| {
        v.converged(&hosts)
    })?;
    println!("converged: {SIZE} live ready members and one shard table everywhere after {took:?}");
    Ok(cluster)
}

#[test]
fn five_hosts_converge_on_one_membership_and_shard_table() -> turmoil::Result {
    let cluster = converged_cluster(seed_or_env(1))?;
    let views = cluster.views();
    let table = &views.of("n1").ok_or("n1 answered")?.shards;
    assert_eq!(table.len(), 64, "one entry per shard");
    for host in cluster.hosts() {
        assert!(
            table
                .iter()
                .any(|s| s.owner.as_deref() == Some(host.as_str())),
            "{host} owns a shard"
        );
    }
    Ok(())
}

#[test]
fn crashed_host_is_detected_by_all_others() -> turmoil::Result {
    let mut cluster = converged_cluster(seed_or_env(2))?;
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
    println!("crash of n5 detected by all survivors after {took:?}");

    cluster.bounce("n5");
    let hosts = cluster.hosts().to_vec();
    let took = cluster.run_until(REJOIN_WITHIN, "n5 rejoins with a higher generation", |v| {
        v.converged(&hosts)
            && hosts
                .iter()
                .all(|h| v.generation(h, "n5") > Some(generation_before))
    })?;
    println!("restarted n5 rejoined (generation above {generation_before}) after {took:?}");
    Ok(())
}

#[test]
fn partitioned_host_is_detected_on_both_sides_and_rejoins_after_repair() -> turmoil::Result {
    let mut cluster = converged_cluster(seed_or_env(3))?;

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
    println!(
        "partition detected: by n1 after {:?}, by the others after {:?}",
        took[0], took[1]
    );

    cluster.heal("n1");
    let hosts = cluster.hosts().to_vec();
    let took = cluster.run_until(REJOIN_WITHIN, "all nodes converge again", |v| {
        v.converged(&hosts)
    })?;
    println!("after repair, all {SIZE} nodes converged again after {took:?}");
    Ok(())
}
