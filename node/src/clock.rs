//! Wall-clock time for what is stored and compared across nodes (session leases, job
//! timestamps and de-duplication windows, integer windows).
//!
//! In production it is the system clock. The simulation installs its logical clock instead
//! ([`install`]), so a seed replays the same times: with the system clock, a job created at
//! the same simulated moment got a different timestamp in every run, and a failing seed
//! could not be replayed.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A clock that gives the time since the Unix epoch, or `None` where it has no time (then
/// the system clock is used).
pub type Source = fn() -> Option<Duration>;

static SOURCE: OnceLock<Source> = OnceLock::new();

/// Replaces the system clock for this process (the simulation's logical clock). The first
/// installed clock stays.
pub fn install(source: Source) {
    let _ = SOURCE.set(source);
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis() -> u64 {
    let since_epoch = SOURCE
        .get()
        .and_then(|source| source())
        .or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}
