//! One seed, one history: a seed run twice, each time in a fresh process as the explorer runs
//! it, gives the same trace digest (every message delivered, every request and answer, every
//! fault and every node log line at debug level, in order).
//!
//! A difference fails here with both digests; `troupe-sim --seeds <seed> --scenario <name>
//! --check-replay` then prints the first event that differs.

use std::path::Path;

use troupe_sim::explorer::{run_child, Job};

fn replays_exactly(scenario: &'static str, seeds: &[u64]) {
    let program = Path::new(env!("CARGO_BIN_EXE_troupe-sim"));
    for &seed in seeds {
        let job = Job {
            scenario,
            seed,
            trace_file: None,
            swarm: false,
        };
        let first = run_child(program, &job);
        let second = run_child(program, &job);
        assert_eq!(first.failure, None, "{scenario} seed {seed} failed");
        assert_eq!(
            first.digest, second.digest,
            "{scenario} seed {seed} ran two different histories"
        );
        assert_ne!(first.digest, "none");
    }
}

#[test]
fn membership_runs_replay_exactly() {
    replays_exactly("converge", &[1, 2]);
    replays_exactly("partition-repair", &[3]);
}

#[test]
fn workload_runs_with_a_crash_replay_exactly() {
    replays_exactly("workload-crash", &[2]);
}

/// The crash is aimed by reading the nodes' log files from outside, and the tear is drawn from
/// the run's seed: neither may make the history depend on anything but the seed.
#[test]
fn workload_runs_with_a_crash_in_the_middle_of_an_append_replay_exactly() {
    replays_exactly("workload-torn", &[4]);
}

#[test]
fn workload_runs_with_a_one_way_cut_replay_exactly() {
    replays_exactly("workload-oneway", &[5]);
}
