//! The explorer's runs: each seed of each scenario in a process of its own, several at once.
//!
//! A process per run is what makes a run replay bit for bit: some state is per process and
//! counts up over its life (ractor's actor ids, tokio's runtime counter), so only a process's
//! first simulation sees it fresh. It also keeps a crash (an abort, a stack overflow) or a
//! hang of one run from taking the sweep with it. The parent asks the same binary for one run
//! (`--child`) and reads one line back: [`Report`].

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::scenarios::Run;
use crate::swarm::Swarm;

/// The line a child prints its report on, before the report's JSON.
pub const REPORT_PREFIX: &str = "TROUPE-SIM-REPORT ";

/// Longest a child may run, in real time, before it is killed and reported as hung.
const CHILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// What one run reported to the parent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// The digest of its trace (`hash/events`).
    pub digest: String,
    /// Its configuration ([`crate::swarm::Swarm`]).
    pub config: String,
    /// The invariant that failed, or the panic; `None` when it passed.
    pub failure: Option<String>,
    /// What it measured, in milliseconds of simulated time.
    pub measured: Vec<(String, u64)>,
}

impl Report {
    /// The report of a finished run.
    pub fn of(scenario: &str, seed: u64, config: &Swarm, run: &Run) -> Self {
        let (failure, measured) = match &run.result {
            Ok(measured) => (
                None,
                measured
                    .iter()
                    .map(|(what, took)| ((*what).to_owned(), took.as_millis() as u64))
                    .collect(),
            ),
            Err(failure) => (Some(failure.clone()), Vec::new()),
        };
        Self {
            scenario: scenario.to_owned(),
            seed,
            digest: run.digest.to_string(),
            config: config.to_string(),
            failure,
            measured,
        }
    }

    /// The line a child prints.
    pub fn line(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        format!("{REPORT_PREFIX}{json}")
    }
}

/// One run for a child to do.
#[derive(Clone, Debug)]
pub struct Job {
    /// The scenario's name.
    pub scenario: &'static str,
    /// The seed.
    pub seed: u64,
    /// Where the child writes its trace, one line per event, if anywhere.
    pub trace_file: Option<PathBuf>,
    /// Whether the seed also draws the configuration ([`Swarm::draw`]).
    pub swarm: bool,
}

/// Runs `job` in a child process of `program` (this binary) and returns its report; a child
/// that dies or hangs without one is reported as a failure with the end of its output.
pub fn run_child(program: &Path, job: &Job) -> Report {
    let mut command = Command::new(program);
    command
        .args(["--child", "--scenario", job.scenario, "--seeds"])
        .arg(job.seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(file) = &job.trace_file {
        command.arg("--trace").arg(file);
    }
    if job.swarm {
        command.arg("--swarm");
    }
    let failed = |why: String| Report {
        scenario: job.scenario.to_owned(),
        seed: job.seed,
        digest: "none".to_owned(),
        config: String::new(),
        failure: Some(why),
        measured: Vec::new(),
    };
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return failed(format!("cannot start {}: {error}", program.display())),
    };
    // Everything but the report is kept only to explain a child that dies: the last lines.
    let tail_of = |stream: Option<Box<dyn io::Read + Send>>| {
        stream.map(|stream| {
            std::thread::spawn(move || {
                let mut report = None;
                let mut tail = VecDeque::new();
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(json) = line.strip_prefix(REPORT_PREFIX) {
                        report = serde_json::from_str::<Report>(json).ok();
                        continue;
                    }
                    if tail.len() == 40 {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
                (report, tail.into_iter().collect::<Vec<_>>().join("\n"))
            })
        })
    };
    let stdout = tail_of(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn io::Read + Send>),
    );
    let stderr = tail_of(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn io::Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.to_string(),
            Ok(None) if started.elapsed() > CHILD_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break format!("killed after {CHILD_TIMEOUT:?} of real time");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(error) => break error.to_string(),
        }
    };
    let (report, out) = stdout
        .and_then(|thread| thread.join().ok())
        .unwrap_or_default();
    let (_, err) = stderr
        .and_then(|thread| thread.join().ok())
        .unwrap_or_default();
    report.unwrap_or_else(|| {
        failed(format!(
            "the run ended without a report ({status}); its last output:\n{out}\n{err}"
        ))
    })
}

/// Runs every job on `workers` children at once and hands each report, with the real time
/// its run took, to `done` as it comes (from the worker threads, one at a time).
pub fn run_all(
    program: &Path,
    jobs: Vec<Job>,
    workers: usize,
    done: impl FnMut(&Job, Report, Duration) + Send,
) {
    let queue = Arc::new(Mutex::new(VecDeque::from(jobs)));
    let done = Mutex::new(done);
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            let queue = Arc::clone(&queue);
            let done = &done;
            scope.spawn(move || loop {
                let next = queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop_front();
                let Some(job) = next else { break };
                let started = Instant::now();
                let report = run_child(program, &job);
                let took = started.elapsed();
                let mut done = done.lock().unwrap_or_else(PoisonError::into_inner);
                (*done)(&job, report, took);
            });
        }
    });
}

/// The first line where two trace files differ (1-based), with both lines; `None` if they
/// are the same.
pub fn first_difference(a: &Path, b: &Path) -> io::Result<Option<(usize, String, String)>> {
    let mut a = BufReader::new(std::fs::File::open(a)?).lines();
    let mut b = BufReader::new(std::fs::File::open(b)?).lines();
    let mut number = 0;
    loop {
        number += 1;
        match (a.next().transpose()?, b.next().transpose()?) {
            (None, None) => return Ok(None),
            (x, y) if x == y => continue,
            (x, y) => {
                let show = |l: Option<String>| l.unwrap_or_else(|| "(end of trace)".to_owned());
                return Ok(Some((number, show(x), show(y))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_are_compared_line_by_line_and_the_first_difference_is_named() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "1 x\n2 y\n3 z\n")?;
        std::fs::write(&b, "1 x\n2 Y\n3 z\n")?;
        assert_eq!(
            first_difference(&a, &b)?,
            Some((2, "2 y".to_owned(), "2 Y".to_owned()))
        );
        std::fs::write(&b, "1 x\n2 y\n")?;
        assert_eq!(
            first_difference(&a, &b)?,
            Some((3, "3 z".to_owned(), "(end of trace)".to_owned()))
        );
        assert_eq!(first_difference(&a, &a)?, None);
        Ok(())
    }

    #[test]
    fn a_report_survives_its_line() -> Result<(), serde_json::Error> {
        let report = Report {
            scenario: "converge".to_owned(),
            seed: 3,
            digest: "00ff/12".to_owned(),
            config: Swarm::standard().to_string(),
            failure: Some("line one\nline two".to_owned()),
            measured: vec![("converged".to_owned(), 1500)],
        };
        let line = report.line();
        let json = line.strip_prefix(REPORT_PREFIX).unwrap_or_default();
        assert_eq!(serde_json::from_str::<Report>(json)?, report);
        Ok(())
    }
}
