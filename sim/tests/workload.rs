//! Workload scenarios on a simulated five-node cluster, on pinned seeds: clients drive users,
//! sessions, jobs and parties through every node while faults strike, and the invariant checkers read
//! the whole history (see `troupe_sim::history`). Every seed a sweep found failing is pinned
//! here with the bug it found (decisions 007 and 009).
//!
//! `TROUPE_SIM_SEED=<seed> cargo test -p troupe-sim --test workload` replays a seed;
//! `cargo run -p troupe-sim --release -- --seeds 1..100 --scenario workload-crash` sweeps.

use std::process::{Command, Stdio};
use troupe_sim::harness::seed_or_env;
use troupe_sim::scenarios;

#[test]
fn workload_without_faults_keeps_every_invariant() -> turmoil::Result {
    scenarios::check("workload-calm", seed_or_env(1))?;
    Ok(())
}

#[test]
fn workload_keeps_every_invariant_while_a_node_crashes_and_restarts() -> turmoil::Result {
    scenarios::check("workload-crash", seed_or_env(2))?;
    Ok(())
}

#[test]
fn workload_keeps_every_invariant_while_a_node_crashes_in_the_middle_of_an_append(
) -> turmoil::Result {
    scenarios::check("workload-torn", seed_or_env(4))?;
    Ok(())
}

#[test]
fn workload_keeps_every_invariant_while_a_node_is_partitioned_away() -> turmoil::Result {
    scenarios::check("workload-partition", seed_or_env(3))?;
    Ok(())
}

#[test]
fn workload_keeps_every_invariant_while_a_nodes_links_are_cut_one_way() -> turmoil::Result {
    scenarios::check("workload-oneway", seed_or_env(5))?;
    Ok(())
}

#[test]
fn workload_keeps_every_invariant_while_a_node_loses_its_data_directory() -> turmoil::Result {
    scenarios::check("workload-wipe", seed_or_env(6))?;
    Ok(())
}

#[test]
fn workload_keeps_every_invariant_while_every_link_is_slow() -> turmoil::Result {
    scenarios::check("workload-slow", seed_or_env(7))?;
    Ok(())
}

#[test]
fn workload_keeps_every_invariant_while_gossip_loses_messages() -> turmoil::Result {
    scenarios::check("workload-lossy", seed_or_env(10))?;
    Ok(())
}

#[test]
fn workload_keeps_every_invariant_through_a_rolling_restart() -> turmoil::Result {
    scenarios::check("workload-rolling", seed_or_env(8))?;
    Ok(())
}

#[test]
fn workload_keeps_every_invariant_while_a_host_without_the_secret_forges_gossip() -> turmoil::Result
{
    scenarios::check("hostile-gossip", seed_or_env(11))?;
    Ok(())
}

#[test]
fn workload_keeps_every_invariant_while_a_node_joins_and_another_leaves_and_returns(
) -> turmoil::Result {
    scenarios::check("workload-churn", seed_or_env(9))?;
    Ok(())
}

/// Seeds on which a node whose links were cut one way answered a read from the copy it kept
/// through the cut (3), and on which a change whose replication failed, with no write after
/// it, left its key unreadable for good (4, 19, 20, 27); decision 009.
#[test]
fn oneway_seeds_that_once_read_a_stale_copy_or_left_a_key_unreadable_now_pass() -> turmoil::Result {
    for seed in [3, 4, 19, 20, 27] {
        replay("workload-oneway", seed, &[])?;
    }
    Ok(())
}

/// Seeds on which routing once repeated a command the owner may have received, applying a
/// session remove two or three times (decision 007).
#[test]
fn crash_seeds_that_once_applied_a_command_twice_keep_session_counts_exact() -> turmoil::Result {
    for seed in [7, 8, 10, 12, 13] {
        replay("workload-crash", seed, &[])?;
    }
    Ok(())
}

/// Seeds on which a replica answered in the owner's place from a copy that was being replaced
/// by a snapshot (47) or that it had synced under another epoch (20), and on which a quickly
/// restarted owner never learned that another node had taken its shard over, leaving the shard
/// unreadable for good (131, 317, and 54 by its symptom); decision 009.
#[test]
fn crash_seeds_that_once_lost_a_read_or_left_a_shard_unreadable_now_pass() -> turmoil::Result {
    for seed in [47, 20, 131, 317, 54] {
        replay("workload-crash", seed, &[])?;
    }
    Ok(())
}

/// Seeds on which a node cut off or back from a partition once answered reads from its stale
/// copy (22, 34, 45, 55), or a job re-run during the partition never finished (97); decision
/// 007. And seeds on which an owner answered a read of a change its replica did not have yet,
/// later lost (7), or a replica answered in the owner's place while a snapshot emptied its
/// copy (17); decision 009.
#[test]
fn partition_seeds_that_once_read_stale_values_or_left_a_job_unfinished_now_pass() -> turmoil::Result
{
    for seed in [22, 34, 45, 55, 97, 7, 17] {
        replay("workload-partition", seed, &[])?;
    }
    Ok(())
}

/// Seeds on which the window open while the aggregator failed over was never stored: its
/// integers died with the aggregator, and the next one started after the window ended
/// (decision 016).
#[test]
fn crash_and_churn_seeds_that_once_skipped_an_integers_window_now_pass() -> turmoil::Result {
    for seed in [8003, 8007] {
        replay("workload-crash", seed, &[])?;
    }
    replay("workload-churn", 8011, &[])?;
    Ok(())
}

/// A seed on which a generator's resend straddled a failover: the aggregator shard went from
/// the crashed n1 to n5 and back to the restarted n1 while the resend was under way, so n5 took
/// the window 10..15 s and was stopped before it could store it, and n1 took only the resend's
/// last integers yet counted as having had it whole. Nobody stored that window (decision 016).
/// The fix changes this seed's history, so `a_resend_split_between_two_aggregators_...` in
/// `node/src/services/integers.rs` pins the mechanism itself.
///
/// The `workload-rolling` run below failed in the same sweep with the same signature (the 10 s
/// window missing, the 15 s one partial); it passes with the fix, but its trace was not read.
#[test]
fn crash_seed_whose_resend_straddled_a_failover_stores_every_integers_window() -> turmoil::Result {
    replay("workload-crash", 274, &[])?;
    replay("workload-rolling", 225, &[])?;
    Ok(())
}

/// A seed on which an integers window was stored after the one following it: the restarted
/// n1 took the aggregator back while the 15 s window was open, the generators sent that
/// window again, and its late integers kept it from being due while the 20 s window was. A
/// read in between saw the 20 s window and not the 15 s one. Windows are now stored in order.
#[test]
fn crash_seed_that_stored_an_integers_window_after_the_next_one_now_passes() -> turmoil::Result {
    replay("workload-crash", 1613, &[])?;
    Ok(())
}

/// Seeds on which the lease-overlap audit (decision 023) found an owner deciding commands
/// under an epoch after a newer epoch had started serving: an owner actor that placement had
/// just stopped finished its seal in flight and served for a moment, and its seal had reached
/// the real owner's copy, which went on answering commands that change nothing from a copy
/// that followed the newer epoch (churn 1, crash 2, as the explorer runs them).
#[test]
fn seeds_on_which_an_owner_answered_after_a_newer_epoch_began_now_pass() -> turmoil::Result {
    replay("workload-churn", 1, &[])?;
    replay("workload-crash", 2, &[])?;
    Ok(())
}

/// A seed on which a replica answered reads under an epoch its owner had already replaced.
/// n4's outgoing links were cut, so the owner n5 of shard 2 saw it die and was told to seal
/// with n2; but its actor was busy, its calls to n4 timing out one after another on a
/// connection the cut had broken. It handled that view only after n4 had come back: by then
/// it had brought n4 (a replica again in n4's own view) up to date under the old epoch, and
/// sealed the new one with the members the stale view called live, which left n4 out. A seal
/// now reaches every member the node calls live when it seals.
///
#[test]
fn oneway_seed_on_which_a_seal_from_a_stale_view_skipped_a_live_replica_now_passes(
) -> turmoil::Result {
    replay("workload-oneway", 2856, FOUND_WITH_A_1_S_PRIOR)?;
    Ok(())
}

/// A seed on which the replica was still dead in the owner's view when the seal came: n5's
/// outgoing links were cut, n3's actor synced n5 under `1@n3` through the busy path as the cut
/// healed, then sealed `2@n3` without it, because gossip had not yet brought n5's new
/// heartbeats and n5 counted as silent past its lease. An answer to the owner's own call now
/// counts as a sign of life like a heartbeat.
#[test]
fn oneway_seed_on_which_a_seal_skipped_a_replica_it_had_just_synced_now_passes() -> turmoil::Result
{
    replay("workload-oneway", 3292, FOUND_WITH_A_1_S_PRIOR)?;
    Ok(())
}

/// Runs one pinned seed as the explorer ran it when it failed: in a process of its own (the
/// `troupe-sim` binary). ractor numbers its actors per process, so a seed run after another
/// one in this test process takes another history than the one the sweep reported (seed
/// 3292 passed without its fix that way). `options` adds explorer options.
fn replay(scenario: &str, seed: u64, options: &[&str]) -> turmoil::Result {
    let log = std::env::var("TROUPE_SIM_LOG").unwrap_or_else(|_| "error".to_owned());
    let output = Command::new(env!("CARGO_BIN_EXE_troupe-sim"))
        .args([
            "--scenario",
            scenario,
            "--seeds",
            &seed.to_string(),
            "--jobs",
            "1",
        ])
        .args(options)
        .env("TROUPE_SIM_LOG", log)
        .stdin(Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    let passed = format!("PASS scenario={scenario} seed={seed} ");
    if output.status.success() && stdout.contains(&passed) {
        Ok(())
    } else {
        Err(format!(
            "{scenario} seed {seed} failed ({}): troupe-sim --scenario {scenario} --seeds {seed} {}",
            output.status,
            options.join(" ")
        )
        .into())
    }
}

/// The failure detector's prior of the standard configuration before decision 041: a seed
/// found then takes another history with today's prior (the first crash is detected sooner),
/// and replays the one it failed on only with this.
const FOUND_WITH_A_1_S_PRIOR: &[&str] = &["--detector-prior-ms", "1000"];
