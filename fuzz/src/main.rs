//! `troupe-fuzz [--minutes M] [--seed S] [--target NAME]`: runs every target (or one) for M
//! minutes each (fractions allowed) and prints, per target, the inputs tried and the findings.
//! Exits with 1 if anything was found. `scripts/fuzz.sh` builds and runs it.

use std::process::ExitCode;
use std::time::Duration;

use troupe_fuzz::run::{run, Budget};
use troupe_fuzz::targets;

#[global_allocator]
static ALLOCATOR: troupe_fuzz::alloc::Counting = troupe_fuzz::alloc::Counting;

struct Args {
    minutes: f64,
    seed: u64,
    target: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        minutes: 1.0,
        seed: 28,
        target: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} takes a value"));
        match flag.as_str() {
            "--minutes" => {
                args.minutes = value()?
                    .parse()
                    .ok()
                    .filter(|m: &f64| m.is_finite() && *m > 0.0)
                    .ok_or("--minutes takes a positive number")?
            }
            "--seed" => args.seed = value()?.parse().map_err(|_| "--seed takes a u64")?,
            "--target" => args.target = Some(value()?),
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: troupe-fuzz [--minutes M] [--seed S] [--target NAME]"
                ))
            }
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    // Panics are findings, reported below; the default hook would print each one as well.
    std::panic::set_hook(Box::new(|_| {}));
    let all = targets::all();
    let chosen: Vec<_> = all
        .iter()
        .filter(|t| args.target.as_deref().is_none_or(|name| name == t.name))
        .collect();
    if chosen.is_empty() {
        let names: Vec<_> = all.iter().map(|t| t.name).collect();
        eprintln!("no target named so; targets: {}", names.join(", "));
        return ExitCode::from(2);
    }
    let per_target = Duration::from_secs_f64(args.minutes * 60.0);
    println!(
        "{:<20} {:>12} {:>10} {:>10} {:>7} {:>9}",
        "target", "inputs", "inputs/s", "accepted", "corpus", "findings"
    );
    let mut found = 0;
    for target in chosen {
        let report = run(target, args.seed, Budget::Time(per_target));
        println!(
            "{:<20} {:>12} {:>10.0} {:>10} {:>7} {:>9}",
            report.target,
            report.inputs,
            report.rate(),
            report.accepted,
            report.corpus,
            report.findings.len()
        );
        for finding in &report.findings {
            found += 1;
            let shown = &finding.input[..finding.input.len().min(96)];
            println!(
                "  finding: {}\n    input ({} bytes): {shown:02x?}",
                finding.what,
                finding.input.len()
            );
        }
    }
    if found > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
