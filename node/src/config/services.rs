//! Per-service sections of `cluster.toml`: `[sessions]` and `[jobs]`.

use std::time::Duration;

use serde::Deserialize;

use super::cluster::in_range;
use super::ConfigError;

/// `[sessions]`: the per-user cap and the optional lease.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// Most active sessions one user may hold.
    pub max_per_user: u32,
    /// When non-zero, a user's sessions expire this many seconds after the user's last add or
    /// remove (each one renews them all), so crashed clients cannot hold slots forever. 0 turns
    /// leases off.
    pub ttl_seconds: u64,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            max_per_user: 3,
            ttl_seconds: 0,
        }
    }
}

impl SessionsConfig {
    /// The lease, if leases are on.
    pub fn ttl(&self) -> Option<Duration> {
        (self.ttl_seconds > 0).then(|| Duration::from_secs(self.ttl_seconds))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        in_range("sessions.max_per_user", self.max_per_user, 1, 1_000_000)?;
        in_range("sessions.ttl_seconds", self.ttl_seconds, 0, 31_536_000)
    }
}

/// `[jobs]`: how long a job runs, when it is cancelled, and the de-duplication window.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Shortest processing time, in milliseconds.
    pub min_duration_ms: u64,
    /// Longest processing time, in milliseconds.
    pub max_duration_ms: u64,
    /// A job still running after this many milliseconds ends `cancelled`.
    pub timeout_ms: u64,
    /// A job for the same object id within this many seconds of the previous one is refused.
    pub dedup_window_secs: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            min_duration_ms: 15_000,
            max_duration_ms: 45_000,
            timeout_ms: 46_000,
            dedup_window_secs: 300,
        }
    }
}

impl JobsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        in_range("jobs.min_duration_ms", self.min_duration_ms, 0, 86_400_000)?;
        in_range(
            "jobs.max_duration_ms",
            self.max_duration_ms,
            self.min_duration_ms,
            86_400_000,
        )?;
        in_range("jobs.timeout_ms", self.timeout_ms, 1, 86_400_000)?;
        in_range(
            "jobs.dedup_window_secs",
            self.dedup_window_secs,
            0,
            31_536_000,
        )
    }
}
