//! Per-service sections of `cluster.toml`: `[sessions]`, `[jobs]`, `[integers]` and
//! `[parties]`.

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

    /// How often a shard's owner deletes the entries of users whose sessions have all expired,
    /// if leases are on: the lease itself, within 1 s to 60 s. An expired entry is garbage (a
    /// user's entry should go when its count returns to 0) for at most that long.
    pub fn sweep_interval(&self) -> Option<Duration> {
        self.ttl()
            .map(|ttl| ttl.clamp(Duration::from_secs(1), Duration::from_secs(60)))
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

/// `[integers]`: generators, their rate, and the averaging window.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntegersConfig {
    /// Generator actors, each on a different node when there are enough nodes.
    pub generators: u32,
    /// Milliseconds between two integers of one generator.
    pub tick_ms: u64,
    /// Length of an averaging window, in seconds (windows are aligned to the wall clock).
    pub window_secs: u64,
    /// Stored averages kept; older ones are deleted as new ones are stored.
    pub keep_windows: u64,
}

impl Default for IntegersConfig {
    fn default() -> Self {
        Self {
            generators: 2,
            tick_ms: 100,
            window_secs: 5,
            keep_windows: 100,
        }
    }
}

impl IntegersConfig {
    /// Time between two integers of one generator.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }

    /// Window length in milliseconds.
    pub fn window_ms(&self) -> u64 {
        self.window_secs * 1000
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        in_range("integers.generators", self.generators, 0, 64)?;
        in_range("integers.tick_ms", self.tick_ms, 10, 60_000)?;
        in_range("integers.window_secs", self.window_secs, 1, 3_600)?;
        in_range("integers.keep_windows", self.keep_windows, 10, 100_000)
    }
}

/// `[parties]`: party managers per region and the size of a party.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartiesConfig {
    /// Manager actors per region, unless the region's `managers` says otherwise. A hot region
    /// gets more managers, spread over more of its nodes, and its parties spread over them.
    pub managers_per_region: u32,
    /// Most devices one party holds; a join beyond it gets 409. A join rewrites and
    /// replicates the party's whole record, so the record must fit one replicated change
    /// (checked against `rpc.max_frame_bytes` at start-up, decision 017).
    pub max_participants: u32,
}

impl Default for PartiesConfig {
    fn default() -> Self {
        Self {
            managers_per_region: 1,
            max_participants: troupe_actors::parties::DEFAULT_MAX_PARTICIPANTS,
        }
    }
}

impl PartiesConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        in_range(
            "parties.managers_per_region",
            self.managers_per_region,
            1,
            1_000,
        )?;
        in_range(
            "parties.max_participants",
            self.max_participants,
            1,
            1_000_000,
        )
    }
}
