//! The trace of a simulated run: everything that happened, in order, folded into one digest.
//!
//! Recorded: every message delivered (TCP bytes read by a host, gossip envelopes taken out),
//! every client request and its answer, every fault the harness injects, and every log
//! event of the node code at debug level. Two runs of one seed are the same run exactly
//! when their digests are equal; when they are not, [`Trace::to_file`] writes one line per
//! event so the first difference can be found (`troupe-sim --check-replay` does that).
//!
//! The trace is kept per thread, like the run itself, so tests running scenarios side by
//! side do not mix their events.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use super::clock;

thread_local! {
    static TRACE: RefCell<Option<Trace>> = const { RefCell::new(None) };
}

/// The digest of a run's whole trace, and how many events it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest {
    /// xxh3-128 over every event.
    pub hash: u128,
    /// Events recorded.
    pub events: u64,
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}/{}", self.hash, self.events)
    }
}

/// A run's trace being recorded on this thread.
pub struct Trace {
    hasher: Xxh3,
    events: u64,
    /// One line per event, when asked for.
    file: Option<BufWriter<File>>,
    /// The current event's text, reused.
    line: String,
    /// Text that differs between runs for reasons outside the run, and what it reads as.
    aliases: Vec<(String, &'static str)>,
}

impl Trace {
    /// Starts recording this thread's trace; with `path`, also one line per event there.
    pub(super) fn start(path: Option<&Path>) -> std::io::Result<()> {
        let file = path.map(File::create).transpose()?.map(BufWriter::new);
        TRACE.with(|trace| {
            *trace.borrow_mut() = Some(Trace {
                hasher: Xxh3::new(),
                events: 0,
                file,
                line: String::with_capacity(256),
                aliases: Vec::new(),
            })
        });
        Ok(())
    }

    /// Stops recording and gives the digest (`None` if nothing was being recorded).
    pub(super) fn finish() -> Option<Digest> {
        let trace = TRACE.with(|trace| trace.borrow_mut().take())?;
        let Trace {
            hasher,
            events,
            file,
            ..
        } = trace;
        if let Some(mut file) = file {
            let _ = file.flush();
        }
        Some(Digest {
            hash: hasher.digest128(),
            events,
        })
    }

    /// The digest so far, without stopping.
    pub fn current() -> Option<Digest> {
        TRACE.with(|trace| {
            trace.borrow().as_ref().map(|trace| Digest {
                hash: trace.hasher.digest128(),
                events: trace.events,
            })
        })
    }
}

/// Whether this thread is recording a trace (callers skip the work of describing an event
/// when it is not).
pub fn recording() -> bool {
    TRACE
        .try_with(|trace| trace.try_borrow().is_ok_and(|trace| trace.is_some()))
        .unwrap_or(false)
}

/// Makes `text` read as `alias` in every later event of this thread's trace: for what must
/// differ between two runs of one seed, such as the temporary directory holding the nodes'
/// data, whose name is unique per process (two runs side by side cannot share it).
pub fn alias(text: &str, alias: &'static str) {
    let _ = TRACE.try_with(|trace| {
        if let Ok(mut trace) = trace.try_borrow_mut() {
            if let Some(trace) = trace.as_mut() {
                trace.aliases.push((text.to_owned(), alias));
            }
        }
    });
}

/// Records one event: its `kind`, a description written by `describe`, and a payload whose
/// bytes count in the digest (the file shows only their hash and length).
pub fn record(kind: &str, payload: &[u8], describe: impl FnOnce(&mut String)) {
    let _ = TRACE.try_with(|trace| {
        let Ok(mut trace) = trace.try_borrow_mut() else {
            // An event raised while recording another (a log line from a Debug impl).
            return;
        };
        let Some(trace) = trace.as_mut() else {
            return;
        };
        let at = clock::elapsed().unwrap_or_default();
        let mut line = std::mem::take(&mut trace.line);
        line.clear();
        let _ = write!(line, "{} {:.6} {kind} ", trace.events, at.as_secs_f64());
        describe(&mut line);
        for (text, alias) in &trace.aliases {
            if line.contains(text.as_str()) {
                line = line.replace(text.as_str(), alias);
            }
        }
        if !payload.is_empty() {
            let _ = write!(line, " [{} bytes {:016x}]", payload.len(), xxh3_64(payload));
        }
        trace.hasher.update(line.as_bytes());
        trace.hasher.update(payload);
        trace.events += 1;
        if let Some(file) = trace.file.as_mut() {
            let _ = writeln!(file, "{line}");
        }
        trace.line = line;
    });
}

/// A `tracing` layer that records every event it is given into the thread's trace (the
/// harness gives it the node code's events at debug level), with the node that logged it.
pub struct TraceLayer;

impl<S: Subscriber> Layer<S> for TraceLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if !recording() {
            return;
        }
        let node = crate::hosts::current();
        record("log", &[], |line| {
            let meta = event.metadata();
            let node = node.as_deref().unwrap_or("-");
            let _ = write!(line, "{} {node} {}:", meta.level(), meta.target());
            event.record(&mut Fields(line));
        });
    }
}

/// Writes an event's fields as ` name=value`.
struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={value}", field.name());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}
