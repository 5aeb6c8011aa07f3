//! Membership scenarios on a simulated five-node cluster, on pinned seeds: convergence, crash
//! detection and restart, and a partition on both sides and its repair.
//!
//! Each run logs its seed; `TROUPE_SIM_SEED=<seed> cargo test -p troupe-sim` replays it, and
//! `cargo run -p troupe-sim --release -- --seeds 1..100` sweeps many. Measured simulated times
//! are printed (`-- --nocapture` shows them).

use troupe_sim::harness::seed_or_env;
use troupe_sim::scenarios;

#[test]
fn five_hosts_converge_on_one_membership_and_shard_table() -> turmoil::Result {
    scenarios::check("converge", seed_or_env(1))?;
    Ok(())
}

#[test]
fn crashed_host_is_detected_by_all_others_and_rejoins_as_a_new_generation() -> turmoil::Result {
    scenarios::check("crash-restart", seed_or_env(2))?;
    Ok(())
}

#[test]
fn partitioned_host_is_detected_on_both_sides_and_rejoins_after_repair() -> turmoil::Result {
    scenarios::check("partition-repair", seed_or_env(3))?;
    Ok(())
}
