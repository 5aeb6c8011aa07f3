//! The running record of sweeps: which seeds of which scenario passed, against which commit.
//!
//! Sweeps accumulate across sessions: `troupe-sim --record docs/SIMULATION.md` adds one row
//! per scenario to the table between the file's `sweeps` markers, so the seeds covered so far
//! can be summed per scenario and a new sweep can start where the last one stopped.

use std::io;
use std::ops::Range;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Marks the start of the table of sweeps in the record file.
const START: &str = "<!-- sweeps:start -->";
/// Marks its end.
const END: &str = "<!-- sweeps:end -->";
/// The table's header, written when the markers are new.
const HEADER: &str = "| date | commit | scenario | seeds | failed seeds | replay identical | seeds per minute |\n|---|---|---|---|---|---|---|";

/// One scenario's part of a sweep.
#[derive(Debug)]
pub struct Sweep {
    /// The scenario.
    pub scenario: &'static str,
    /// The seeds asked for.
    pub seeds: Range<u64>,
    /// Whether each seed also drew its configuration (`--swarm`).
    pub swarm: bool,
    /// Seeds finished (both runs of a seed, with `--check-replay`).
    pub runs: u64,
    /// Seeds whose run failed an invariant.
    pub failed: Vec<u64>,
    /// Seeds whose two runs were the same run (with `--check-replay`).
    pub replay_same: u64,
    /// Real time spent in this scenario's runs, summed over the workers.
    pub busy: Duration,
    /// Simulated time from the last fault's repair until every node converged, per passing
    /// run that measured it, in milliseconds.
    pub reconverged_ms: Vec<u64>,
}

impl Sweep {
    /// An empty tally of `scenario` over `seeds`.
    pub fn new(scenario: &'static str, seeds: Range<u64>, swarm: bool) -> Self {
        Self {
            scenario,
            seeds,
            swarm,
            runs: 0,
            failed: Vec::new(),
            replay_same: 0,
            busy: Duration::ZERO,
            reconverged_ms: Vec::new(),
        }
    }

    /// Notes what a passing run measured.
    pub fn measured(&mut self, measured: &[(String, u64)]) {
        let reconverged = measured.iter().filter(|(what, _)| what == "reconverged");
        self.reconverged_ms.extend(reconverged.map(|(_, ms)| *ms));
    }

    /// "converged again within ... " over the passing runs, if they measured it.
    fn convergence(&self) -> Option<String> {
        let most = self.reconverged_ms.iter().max()?;
        let mean = self.reconverged_ms.iter().sum::<u64>() / self.reconverged_ms.len() as u64;
        Some(format!(
            "converged after the last fault within {most} ms (mean {mean} ms)"
        ))
    }

    /// Seeds finished per minute of real time with `workers` running at once.
    pub fn seeds_per_minute(&self, workers: usize) -> f64 {
        let minutes = self.busy.as_secs_f64() / 60.0 / workers.max(1) as f64;
        self.runs as f64 / minutes.max(1e-9)
    }

    /// The summary line the explorer prints.
    pub fn summary(&self, workers: usize, check_replay: bool) -> String {
        let mut line = format!(
            "scenario {}: {} seeds, {} failed{}, {:.0} seeds per minute ({workers} at once)",
            self.scenario,
            self.runs,
            self.failed.len(),
            failed_list(&self.failed),
            self.seeds_per_minute(workers)
        );
        if let Some(convergence) = self.convergence() {
            line.push_str(&format!("; {convergence}"));
        }
        if check_replay {
            line.push_str(&format!(
                "; replay identical for {} of {} seeds ({:.1} %)",
                self.replay_same,
                self.runs,
                100.0 * self.replay_same as f64 / self.runs.max(1) as f64
            ));
        }
        line
    }

    fn row(&self, date: &str, commit: &str, workers: usize, check_replay: bool) -> String {
        let replay = if check_replay {
            format!("{} of {}", self.replay_same, self.runs)
        } else {
            "not checked".to_owned()
        };
        let failed = if self.failed.is_empty() {
            "0".to_owned()
        } else {
            format!("{}{}", self.failed.len(), failed_list(&self.failed))
        };
        format!(
            "| {date} | {commit} | {} | {}..{}{} | {failed} | {replay} | {:.0} |",
            self.scenario,
            self.seeds.start,
            self.seeds.end,
            if self.swarm { " (--swarm)" } else { "" },
            self.seeds_per_minute(workers)
        )
    }
}

fn failed_list(failed: &[u64]) -> String {
    if failed.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = failed.iter().take(10).map(u64::to_string).collect();
    let more = if failed.len() > 10 { ", ..." } else { "" };
    format!(" ({}{more})", shown.join(", "))
}

/// Adds one row per sweep, run on `commit` ([`commit`], taken when the sweep started), to the
/// table in `file` (created, with the markers, if missing).
pub fn record(
    file: &Path,
    commit: &str,
    sweeps: &[&Sweep],
    workers: usize,
    check_replay: bool,
) -> io::Result<()> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(error),
    };
    let date = today();
    let rows: Vec<String> = sweeps
        .iter()
        .map(|s| s.row(&date, commit, workers, check_replay))
        .collect();
    std::fs::write(file, with_rows(&text, &rows))
}

/// `text` with `rows` added at the end of its table (a new table at the end if it has none).
fn with_rows(text: &str, rows: &[String]) -> String {
    let rows = rows.join("\n");
    match (text.find(START), text.find(END)) {
        (Some(start), Some(end)) if start < end => {
            let before = text[..end].trim_end_matches('\n');
            format!("{before}\n{rows}\n{}", &text[end..])
        }
        _ => format!("{text}\n{START}\n{HEADER}\n{rows}\n{END}\n"),
    }
}

fn today() -> String {
    let output = Command::new("date").arg("-u").arg("+%Y-%m-%d").output();
    output
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The commit checked out here, `+changes` if the tracked files differ from it.
pub fn commit() -> String {
    let output = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output();
    let commit = output
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    if dirty {
        format!("{commit}+changes")
    } else {
        commit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_go_at_the_end_of_the_existing_table_or_into_a_new_one() {
        let rows = vec!["| r1 |".to_owned()];
        let fresh = with_rows("# Title\n", &rows);
        assert!(fresh.contains(&format!("{START}\n{HEADER}\n| r1 |\n{END}")));
        let again = with_rows(&fresh, &["| r2 |".to_owned()]);
        assert!(again.contains("| r1 |\n| r2 |\n<!-- sweeps:end -->"));
        assert!(again.starts_with("# Title\n"));
    }

    #[test]
    fn a_sweep_row_names_its_failed_seeds_and_its_replay_count() {
        let mut sweep = Sweep::new("workload-crash", 1..11, false);
        sweep.runs = 10;
        sweep.replay_same = 10;
        sweep.failed = vec![4];
        sweep.busy = Duration::from_secs(60);
        let row = sweep.row("2026-12-06", "abc1234", 2, true);
        assert_eq!(
            row,
            "| 2026-12-06 | abc1234 | workload-crash | 1..11 | 1 (4) | 10 of 10 | 20 |"
        );
    }
}
