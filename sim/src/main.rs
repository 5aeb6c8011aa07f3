//! The simulation explorer: runs scenarios over many seeds and reports every failure with its
//! seed, scenario, failed invariant and the nodes' last views.
//!
//! ```text
//! cargo run -p troupe-sim --release -- --seeds 1..1000 --scenario all
//! TROUPE_SIM_LOG=debug cargo run -p troupe-sim --release -- --seeds 42 --scenario crash-restart
//! ```
//! A failing seed replays alone with full logs (second line). `--check-replay` runs every seed
//! twice and counts how often the two runs measured exactly the same times: chitchat picks
//! gossip peers with an unseeded random generator, so runs of one seed are not always identical.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use troupe_sim::harness::set_quiet;
use troupe_sim::scenarios::{self, Measurements, Scenario};

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
    /// Run every seed twice and report how often both runs measured the same times.
    #[arg(long)]
    check_replay: bool,
    /// Print a progress line every N seeds.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..))]
    progress_every: u64,
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

/// Outcome of one run: measurements, or the failure text (invariant, seed, views).
fn run_once(scenario: &Scenario, seed: u64) -> Result<Measurements, String> {
    match catch_unwind(AssertUnwindSafe(|| (scenario.run)(seed))) {
        Ok(Ok(measured)) => Ok(measured),
        Ok(Err(error)) => Err(error.to_string()),
        Err(panic) => Err(format!(
            "panicked: {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)")
        )),
    }
}

struct Tally {
    runs: u64,
    failures: u64,
    replay_same: u64,
}

fn sweep(scenario: &Scenario, args: &Args) -> Tally {
    let started = Instant::now();
    let mut tally = Tally {
        runs: 0,
        failures: 0,
        replay_same: 0,
    };
    for seed in args.seeds.clone() {
        let first = run_once(scenario, seed);
        tally.runs += 1;
        if let Err(failure) = &first {
            tally.failures += 1;
            // A sweep keeps each failure short; a replay of one seed shows all of it.
            let lines = if args.seeds.end - args.seeds.start > 1 {
                25
            } else {
                usize::MAX
            };
            let short: Vec<&str> = failure.lines().take(lines).collect();
            println!(
                "FAIL scenario={} seed={seed}\n  {}",
                scenario.name,
                short.join("\n  ")
            );
            println!("  replay: TROUPE_SIM_LOG=debug cargo run -p troupe-sim --release -- --seeds {seed} --scenario {}", scenario.name);
        }
        if args.check_replay && first == run_once(scenario, seed) {
            tally.replay_same += 1;
        }
        if tally.runs.is_multiple_of(args.progress_every) {
            eprintln!(
                "{}: {} seeds, {} failed, {:.0} s",
                scenario.name,
                tally.runs,
                tally.failures,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let per_minute =
        tally.runs as f64 * if args.check_replay { 2.0 } else { 1.0 } / minutes.max(1e-9);
    println!(
        "scenario {}: {} seeds, {} failed, {:.0} runs per minute",
        scenario.name, tally.runs, tally.failures, per_minute
    );
    if args.check_replay {
        println!(
            "scenario {}: replay measured identical times for {} of {} seeds",
            scenario.name, tally.replay_same, tally.runs
        );
    }
    tally
}

fn main() -> ExitCode {
    let args = Args::parse();
    let selected: Vec<&Scenario> = if args.scenario == "all" {
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
    // A single seed is a replay: let the harness print it; sweeps report seeds themselves.
    set_quiet(args.seeds.end - args.seeds.start > 1);
    println!(
        "sweeping seeds {}..{} over {} scenario(s)",
        args.seeds.start,
        args.seeds.end,
        selected.len()
    );
    let failures: u64 = selected.iter().map(|s| sweep(s, &args).failures).sum();
    println!(
        "{failures} failed, {} passed",
        selected.len() as u64 * (args.seeds.end - args.seeds.start) - failures
    );
    if failures > 0 {
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
