//! Workload scenarios on a simulated five-node cluster, on pinned seeds: clients drive users,
//! sessions and jobs through every node while faults strike, and the invariant checkers read
//! the whole history (see `troupe_sim::history`).
//!
//! The crash scenario still fails rarely for reasons not yet diagnosed (decision 007: seeds 70,
//! 131 and 317, about once in 100 runs, a shard that stays unreadable after its owner crashed and
//! restarted); chitchat's unseeded peer
//! selection makes a seed's outcome vary between runs, so its tests are `#[ignore]`d in the
//! default suite rather than left to fail at random: `cargo test -p troupe-sim --test workload
//! -- --ignored` runs them.
//!
//! `TROUPE_SIM_SEED=<seed> cargo test -p troupe-sim --test workload` replays a seed;
//! `cargo run -p troupe-sim --release -- --seeds 1..100 --scenario workload-crash` sweeps.

use troupe_sim::harness::seed_or_env;
use troupe_sim::scenarios::{self, print};

#[test]
fn workload_without_faults_keeps_every_invariant() -> turmoil::Result {
    print(&scenarios::workload_calm(seed_or_env(1))?);
    Ok(())
}

#[test]
#[ignore = "known open (decision 007): rare undiagnosed failures after a crash (seeds 70, 131, 317); run with --ignored or the explorer"]
fn workload_keeps_every_invariant_while_a_node_crashes_and_restarts() -> turmoil::Result {
    print(&scenarios::workload_crash(seed_or_env(2))?);
    Ok(())
}

#[test]
fn workload_keeps_every_invariant_while_a_node_is_partitioned_away() -> turmoil::Result {
    print(&scenarios::workload_partition(seed_or_env(3))?);
    Ok(())
}

/// Seeds on which routing once repeated a command the owner may have received, applying a
/// session remove two or three times (decision 007).
#[test]
#[ignore = "runs the crash scenario, which has rare undiagnosed failures (decision 007); run with --ignored"]
fn crash_seeds_that_once_applied_a_command_twice_keep_session_counts_exact() -> turmoil::Result {
    for seed in [7, 8, 10, 12, 13] {
        scenarios::workload_crash(seed)?;
    }
    Ok(())
}

/// Seeds on which a node cut off or back from a partition once answered reads from its stale
/// copy (22, 34, 45, 55), or a job re-run during the partition never finished (97); decision 007.
#[test]
fn partition_seeds_that_once_read_stale_values_or_left_a_job_unfinished_now_pass() -> turmoil::Result
{
    for seed in [22, 34, 45, 55, 97] {
        scenarios::workload_partition(seed)?;
    }
    Ok(())
}
