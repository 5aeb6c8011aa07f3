//! The simulation explorer: runs scenarios over many seeds and reports every failure with its
//! seed, scenario, failed invariant, the nodes' last views and the digest of its trace.
//!
//! ```text
//! cargo run -p troupe-sim --release -- --seeds 1..1000 --scenario all
//! cargo run -p troupe-sim --release -- --seeds 1..200 --scenario all --check-replay
//! TROUPE_SIM_LOG=debug cargo run -p troupe-sim --release -- --seeds 42 --scenario crash-restart
//! ```
//! Each run of a sweep is a process of its own (`--jobs` at once), so each replays exactly:
//! one seed is one history, and its digest names it. A single seed runs in this process with
//! its logs (third line), and prints the same digest the sweep printed. `--check-replay` runs
//! every seed twice and, where the digests differ, prints the first event that differs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use troupe_sim::explorer::{self, Job, Report};
use troupe_sim::harness::set_quiet;
use troupe_sim::scenarios::{self, Scenario};
use troupe_sim::swarm::Swarm;
use troupe_sim::sweeps::{self, Sweep};

/// The allocator production's `troupe` binary uses, so the simulated nodes allocate as real
/// ones do; glibc's malloc took 44 % of a 100-node run's CPU (docs/SIMULATION.md, "Scale").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sweep simulation scenarios over seeds.
#[derive(Parser, Debug)]
#[command(name = "troupe-sim", about)]
struct Args {
    /// Seeds: `A..B` (B excluded), `A..=B`, or one seed.
    #[arg(long, default_value = "1..101", value_parser = parse_seeds)]
    seeds: std::ops::Range<u64>,
    /// A scenario name, or `all`.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Run every seed twice and check that both runs are the same run (equal trace digests);
    /// where not, print the first event that differs.
    #[arg(long)]
    check_replay: bool,
    /// Runs at once, each in its own process (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    jobs: Option<u64>,
    /// Print a progress line every N runs.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..))]
    progress_every: u64,
    /// Write the trace of a single-seed run to this file, one line per event.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Add this sweep's results to the table of sweeps in this file (docs/SIMULATION.md).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Each seed also draws the cluster's configuration and fault mix (swarm testing): node
    /// count, gossip interval, phi threshold, shards, replication factor, re-replication
    /// delay, overlapping faults and clock skew.
    #[arg(long)]
    swarm: bool,
    /// The failure detector's prior in milliseconds, instead of the configuration's 500: seeds
    /// found before decision 041 ran with 1000, and replay their history only with it. One seed
    /// of one scenario only.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    detector_prior_ms: Option<u64>,
    /// Run one seed of one scenario and print its report line (the sweep's child processes).
    #[arg(long, hide = true)]
    child: bool,
}

fn parse_seeds(s: &str) -> Result<std::ops::Range<u64>, String> {
    let number = |n: &str| {
        n.trim()
            .parse::<u64>()
            .map_err(|_| format!("{n:?} is not a seed number"))
    };
    let range = if let Some((a, b)) = s.split_once("..=") {
        number(a)?..number(b)?.saturating_add(1)
    } else if let Some((a, b)) = s.split_once("..") {
        number(a)?..number(b)?
    } else {
        let n = number(s)?;
        n..n.saturating_add(1)
    };
    if range.is_empty() {
        return Err(format!("seed range {s:?} is empty"));
    }
    Ok(range)
}

/// One run in this process: a child's, or a replay of one seed.
fn run_here(scenario: &Scenario, seed: u64, args: &Args) -> ExitCode {
    let child = args.child;
    set_quiet(child);
    let mut swarm = if args.swarm {
        Swarm::draw(seed)
    } else {
        Swarm::standard()
    };
    if let Some(prior) = args.detector_prior_ms {
        swarm.detector_prior_ms = prior;
    }
    if !child {
        println!("configuration: {swarm}");
    }
    let run = match scenario.run_isolated(seed, swarm.clone(), args.trace.as_deref()) {
        Ok(run) => run,
        Err(error) => {
            eprintln!("error: cannot run seed {seed}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let report = Report::of(scenario.name, seed, &swarm, &run);
    if child {
        println!("{}", report.line());
        return ExitCode::SUCCESS;
    }
    match &run.result {
        Ok(measured) => {
            scenarios::print(measured);
            println!(
                "PASS scenario={} seed={seed} digest={}",
                scenario.name, run.digest
            );
            ExitCode::SUCCESS
        }
        Err(failure) => {
            println!(
                "FAIL scenario={} seed={seed} digest={}\n  {}",
                scenario.name,
                run.digest,
                failure.replace('\n', "\n  ")
            );
            ExitCode::FAILURE
        }
    }
}

/// Prints a failure of a sweep, short, with how to replay it.
fn print_failure(report: &Report) {
    let failure = report.failure.as_deref().unwrap_or_default();
    let short: Vec<&str> = failure.lines().take(25).collect();
    println!(
        "FAIL scenario={} seed={} digest={}\n  configuration: {}\n  {}",
        report.scenario,
        report.seed,
        report.digest,
        report.config,
        short.join("\n  ")
    );
    println!(
        "  replay: TROUPE_SIM_LOG=debug cargo run -p troupe-sim --release -- --seeds {} --scenario {}{}",
        report.seed,
        report.scenario,
        if report.config.is_empty() || report.config == Swarm::standard().to_string() { "" } else { " --swarm" }
    );
}

/// Both runs of a seed differed: run both again with their traces and print the first event
/// that differs.
fn explain_replay_difference(program: &Path, job: &Job) {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => return println!("  (cannot keep traces: {error})"),
    };
    let traced = |name: &str| Job {
        trace_file: Some(dir.path().join(name)),
        ..job.clone()
    };
    let (a, b) = (traced("first"), traced("second"));
    let (ra, rb) = (
        explorer::run_child(program, &a),
        explorer::run_child(program, &b),
    );
    let (Some(fa), Some(fb)) = (&a.trace_file, &b.trace_file) else {
        return;
    };
    match explorer::first_difference(fa, fb) {
        Ok(Some((line, x, y))) => println!(
            "  first difference, event {line}:\n    first run:  {x}\n    second run: {y}\n  (digests of these two runs: {} and {})",
            ra.digest, rb.digest
        ),
        Ok(None) => println!("  traced again, both runs were the same ({})", ra.digest),
        Err(error) => println!("  (cannot compare traces: {error})"),
    }
}

fn sweep(selected: &[&'static Scenario], args: &Args) -> u64 {
    let program = match std::env::current_exe() {
        Ok(program) => program,
        Err(error) => {
            eprintln!("error: cannot find this program to run its seeds: {error}");
            return 1;
        }
    };
    let workers = args.jobs.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        |jobs| jobs as usize,
    );
    let copies = if args.check_replay { 2 } else { 1 };
    let mut jobs = Vec::new();
    for scenario in selected {
        for seed in args.seeds.clone() {
            for _ in 0..copies {
                jobs.push(Job {
                    scenario: scenario.name,
                    seed,
                    trace_file: None,
                    swarm: args.swarm,
                });
            }
        }
    }
    println!(
        "sweeping seeds {}..{} over {} scenario(s), {workers} at once{}",
        args.seeds.start,
        args.seeds.end,
        selected.len(),
        if args.check_replay {
            ", each twice"
        } else {
            ""
        }
    );
    let started = Instant::now();
    let commit = sweeps::commit();
    let mut tallies: BTreeMap<&'static str, Sweep> = BTreeMap::new();
    let mut first_runs: BTreeMap<(&'static str, u64), Report> = BTreeMap::new();
    let mut finished = 0u64;
    explorer::run_all(&program, jobs, workers, |job, report, took| {
        finished += 1;
        let tally = tallies
            .entry(job.scenario)
            .or_insert_with(|| Sweep::new(job.scenario, args.seeds.clone(), args.swarm));
        tally.busy += took;
        let pair = if args.check_replay {
            match first_runs.remove(&(job.scenario, job.seed)) {
                None => {
                    first_runs.insert((job.scenario, job.seed), report);
                    return;
                }
                Some(first) => Some(first),
            }
        } else {
            None
        };
        tally.runs += 1;
        tally.measured(&report.measured);
        if report.failure.is_some() {
            tally.failed.push(job.seed);
            print_failure(&report);
        }
        if let Some(first) = pair {
            if first.digest == report.digest && first.failure.is_some() == report.failure.is_some()
            {
                tally.replay_same += 1;
            } else {
                println!(
                    "REPLAY DIFFERS scenario={} seed={}: digests {} and {}",
                    job.scenario, job.seed, first.digest, report.digest
                );
                explain_replay_difference(&program, job);
            }
        }
        if finished.is_multiple_of(args.progress_every) {
            eprintln!(
                "{finished} runs, {} failed, {:.0} s",
                tallies.values().map(|t| t.failed.len()).sum::<usize>(),
                started.elapsed().as_secs_f64()
            );
        }
    });
    let mut failures = 0;
    for tally in tallies.values() {
        println!("{}", tally.summary(workers, args.check_replay));
        failures += tally.failed.len() as u64;
        if args.check_replay && tally.replay_same < tally.runs {
            failures += tally.runs - tally.replay_same;
        }
    }
    if let Some(file) = &args.record {
        let rows: Vec<&Sweep> = tallies.values().collect();
        match sweeps::record(file, &commit, &rows, workers, args.check_replay) {
            Ok(()) => println!("recorded in {}", file.display()),
            Err(error) => eprintln!(
                "error: cannot record the sweep in {}: {error}",
                file.display()
            ),
        }
    }
    println!(
        "{failures} failed, {} passed",
        tallies
            .values()
            .map(|t| t.runs)
            .sum::<u64>()
            .saturating_sub(failures)
    );
    failures
}

fn main() -> ExitCode {
    let args = Args::parse();
    let selected: Vec<&'static Scenario> = if args.scenario == "all" {
        scenarios::ALL.iter().collect()
    } else if let Some(s) = scenarios::find(&args.scenario) {
        vec![s]
    } else {
        let names: Vec<&str> = scenarios::ALL.iter().map(|s| s.name).collect();
        eprintln!(
            "error: unknown scenario {:?}; known: all, {}",
            args.scenario,
            names.join(", ")
        );
        return ExitCode::FAILURE;
    };
    let one_seed = args.seeds.end - args.seeds.start == 1;
    if args.child || (one_seed && selected.len() == 1 && !args.check_replay) {
        let [scenario] = selected[..] else {
            eprintln!("error: a child runs one scenario");
            return ExitCode::FAILURE;
        };
        return run_here(scenario, args.seeds.start, &args);
    }
    if args.detector_prior_ms.is_some() {
        eprintln!(
            "error: --detector-prior-ms replays one seed of one scenario, without --check-replay"
        );
        return ExitCode::FAILURE;
    }
    if sweep(&selected, &args) > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_parse_in_all_three_forms_and_empty_ones_are_refused() {
        assert_eq!(parse_seeds("1..4"), Ok(1..4));
        assert_eq!(parse_seeds("1..=4"), Ok(1..5));
        assert_eq!(parse_seeds("7"), Ok(7..8));
        assert!(parse_seeds("5..5").is_err());
        assert!(parse_seeds("x..3").is_err());
    }
}
