//! The shared `cluster.toml`: identical on every node of a cluster.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use troupe_actors::parties;

use super::services::{IntegersConfig, JobsConfig, PartiesConfig, SessionsConfig};
use super::storage::StorageConfig;
use super::ConfigError;
use crate::ids::RegionName;
use crate::region::Region;

/// The repository's `cluster.toml`, embedded so a bare binary starts with sensible defaults.
pub const EMBEDDED_CLUSTER_TOML: &str = include_str!("../../../cluster.toml");

/// Environment variable that overrides `cluster.secret`, so the file can be shared or committed.
pub const SECRET_ENV: &str = "TROUPE_SECRET";

/// Environment variable naming a file that holds the secret (Docker and Kubernetes mount secrets
/// as files, which keeps them out of `docker inspect` and process listings). Takes precedence
/// over the file's `secret`; setting it together with [`SECRET_ENV`] is refused as ambiguous.
pub const SECRET_FILE_ENV: &str = "TROUPE_SECRET_FILE";

/// Shortest secret accepted: 32 bytes, the key size of the MACs and ciphers derived from it.
pub const MIN_SECRET_BYTES: usize = 32;

/// The secret earlier versions shipped in `cluster.toml`. It is public, so a cluster using it
/// has no secret at all: refused by name, whatever its length.
const PUBLISHED_SAMPLE_SECRET: &str = "troupe-dev-secret-change-me";

/// Most bytes read from a secret file: a secret is a line, not a document.
const MAX_SECRET_FILE_BYTES: u64 = 4096;

/// How to make a secret, for the messages that refuse one.
const HOW_TO_MAKE_A_SECRET: &str = "generate one with `troupe secret` (or `python3 -c 'import \
     secrets; print(secrets.token_hex(32))'`) and pass it as a file in TROUPE_SECRET_FILE, in \
     TROUPE_SECRET, or as `secret` under [cluster]";

/// Environment variable that sets `cluster.previous_secret` during a secret rotation.
pub const PREVIOUS_SECRET_ENV: &str = "TROUPE_PREVIOUS_SECRET";

/// The whole validated cluster configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Identity and sizing of the cluster.
    pub cluster: ClusterSection,
    /// Gossip and failure detection.
    #[serde(default)]
    pub gossip: GossipConfig,
    /// Inter-node calls.
    #[serde(default)]
    pub rpc: RpcConfig,
    /// The HTTP edge.
    #[serde(default)]
    pub http: HttpConfig,
    /// Moving shards when membership changes.
    #[serde(default)]
    pub migration: MigrationConfig,
    /// The node's LMDB map.
    #[serde(default)]
    pub storage: StorageConfig,
    /// The sessions service.
    #[serde(default)]
    pub sessions: SessionsConfig,
    /// The jobs service.
    #[serde(default)]
    pub jobs: JobsConfig,
    /// The integers service.
    #[serde(default)]
    pub integers: IntegersConfig,
    /// The parties service.
    #[serde(default)]
    pub parties: PartiesConfig,
    /// The region table; a node's region must be one of these.
    pub regions: Vec<Region>,
}

/// `[cluster]`: name, shared secret and the sizing fixed for the life of the cluster.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Nodes only gossip with nodes of the same cluster name.
    pub name: String,
    /// Proven by every inter-node connection; see [`Secret`]. Not in the repository's file:
    /// it comes from the environment ([`SECRET_FILE_ENV`], [`SECRET_ENV`]) or the operator's own
    /// copy of the file.
    #[serde(default)]
    pub secret: Secret,
    /// A second secret whose gossip and membership proofs are also accepted (a node always
    /// sends with `secret`), so a secret rotates one node at a time without a split, like
    /// memberlist's keyring (decision 019). Also `TROUPE_PREVIOUS_SECRET`.
    #[serde(default)]
    pub previous_secret: Option<Secret>,
    /// Number of shards; fixed for the life of a cluster.
    #[serde(default = "default_shards")]
    pub shards: u32,
    /// Copies of each shard, owner included.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: usize,
}

/// `[gossip]`: chitchat's interval and phi-accrual failure detector.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GossipConfig {
    /// Milliseconds between gossip rounds.
    pub interval_ms: u64,
    /// Phi above which a node is declared dead.
    pub phi_threshold: f64,
    /// Prior heartbeat interval before samples exist, in milliseconds. chitchat weighs it as 5
    /// samples of the mean interval, and a node is declared dead once the time since its last
    /// heartbeat exceeds `phi_threshold` times that mean: a prior above the real interval
    /// delays detection long after samples exist (at 1 s against 500 ms rounds, a 100-node
    /// crash took up to 5.14 s to detect everywhere; docs/SIMULATION.md, "Scale").
    pub initial_interval_ms: u64,
    /// Largest heartbeat interval sampled, in milliseconds.
    pub max_interval_ms: u64,
    /// Seconds a dead node stays listed before it is forgotten.
    pub dead_node_grace_period_secs: u64,
}

/// `[rpc]`: inter-node call deadline and frame bound.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcConfig {
    /// Deadline of one call, connection set-up included, in milliseconds.
    pub call_timeout_ms: u64,
    /// Largest accepted frame in bytes; larger frames are refused and the connection closed.
    pub max_frame_bytes: u32,
    /// Time an inbound connection has to finish the handshake, in milliseconds; a connection
    /// that sends nothing or trickles is closed after it.
    pub handshake_timeout_ms: u64,
    /// Inbound connections in handshake at once; excess ones are closed at once.
    pub max_pending_handshakes: usize,
}

/// `[http]`: body bound, the forwarding retry budget, and the limits that keep the edge up
/// under abuse and overload (decision 021).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Request bodies above this size get 413.
    pub max_body_bytes: usize,
    /// Milliseconds a request may spend retrying while its key's owner changes, before 503.
    pub forward_budget_ms: u64,
    /// Milliseconds a client has to send a whole request head (also how long a keep-alive
    /// connection waits for its next request).
    pub header_read_timeout_ms: u64,
    /// Milliseconds a client has to send a whole request body, from the end of its head.
    pub body_timeout_ms: u64,
    /// Milliseconds without a byte in either direction after which a connection is closed.
    pub idle_timeout_ms: u64,
    /// Most HTTP connections open at once; at the cap a new one replaces the oldest one not in
    /// the middle of a request.
    pub max_connections: usize,
    /// Most requests in progress at once; more get 503 with `Retry-After` at once.
    pub max_in_flight: usize,
    /// Milliseconds a stopping node keeps serving after it turns `/readyz` red, closing each
    /// connection after its response, before it closes its listener: longer than a load
    /// balancer takes to see `/readyz` fail and stop sending (its probe interval times its
    /// failure threshold), so no client is sent to a closed port.
    pub drain_ms: u64,
}

/// `[migration]`: how shards follow membership changes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MigrationConfig {
    /// Longest a stopping node waits for the next owners of its shards to serve them, in
    /// milliseconds.
    pub handoff_timeout_ms: u64,
    /// How long placement must hold still before a shard whose replica died gets a new replica
    /// in its place, in milliseconds. A node that flaps then costs no copies; owners still fail
    /// over at once.
    pub re_replication_delay_ms: u64,
    /// Longest a joining node waits for the current owners to copy it the shards placement will
    /// give it, before it becomes ready anyway, in milliseconds; 0 turns pre-copy off.
    pub pre_copy_timeout_ms: u64,
}

/// The cluster secret. Its `Debug` and `Display` never show the value, so it cannot leak into logs.
/// Empty means "not set" until validation refuses it.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw bytes, for keyed hashing only.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Secret {
    /// The rules of a usable secret; `field` names the setting in the refusal.
    fn validate(&self, field: &'static str) -> Result<(), ConfigError> {
        if self.0.is_empty() && field == "cluster.secret" {
            return Err(ConfigError::SecretMissing {
                how: HOW_TO_MAKE_A_SECRET,
            });
        }
        if self.0 == PUBLISHED_SAMPLE_SECRET {
            return Err(ConfigError::invalid(
                field,
                format!(
                    "is the sample secret published with Troupe, which anyone can read: \
                     {HOW_TO_MAKE_A_SECRET}"
                ),
            ));
        }
        if self.0.len() < MIN_SECRET_BYTES {
            return Err(ConfigError::invalid(
                field,
                format!(
                    "must be at least {MIN_SECRET_BYTES} bytes long, got {}: {HOW_TO_MAKE_A_SECRET}",
                    self.0.len()
                ),
            ));
        }
        Ok(())
    }
}

/// The secret given by the environment, if any: the contents of the file named by
/// [`SECRET_FILE_ENV`] (one trailing newline ignored, as `echo` and editors add one), or
/// [`SECRET_ENV`]. Both at once is an error: one of them would be silently ignored.
pub fn secret_from_env() -> Result<Option<String>, ConfigError> {
    let file = std::env::var_os(SECRET_FILE_ENV).filter(|f| !f.is_empty());
    let value = std::env::var(SECRET_ENV).ok().filter(|v| !v.is_empty());
    match (file, value) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            "TROUPE_SECRET_FILE",
            "and TROUPE_SECRET are both set: set only one",
        )),
        (Some(path), None) => read_secret_file(Path::new(&path)).map(Some),
        (None, value) => Ok(value),
    }
}

/// Reads a secret file, bounded (a secret is a line, not a document).
pub fn read_secret_file(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let read_error = |source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(read_error)?
        .take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    if text.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(ConfigError::invalid(
            "TROUPE_SECRET_FILE",
            format!(
                "{} holds more than {MAX_SECRET_FILE_BYTES} bytes; it should hold the secret alone",
                path.display()
            ),
        ));
    }
    let line = text.strip_suffix('\n').unwrap_or(&text);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

fn default_shards() -> u32 {
    64
}

fn default_replication_factor() -> usize {
    2
}

impl Default for GossipConfig {
    fn default() -> Self {
        Self {
            interval_ms: 500,
            phi_threshold: 8.0,
            initial_interval_ms: 500,
            max_interval_ms: 10_000,
            dead_node_grace_period_secs: 3_600,
        }
    }
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            call_timeout_ms: 2_000,
            max_frame_bytes: 8 * 1024 * 1024,
            handshake_timeout_ms: 2_000,
            max_pending_handshakes: 256,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            forward_budget_ms: 5_000,
            header_read_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            max_connections: 4_096,
            max_in_flight: 512,
            drain_ms: 5_000,
        }
    }
}

impl Default for MigrationConfig {
    fn default() -> Self {
        Self {
            handoff_timeout_ms: 15_000,
            re_replication_delay_ms: 5_000,
            pre_copy_timeout_ms: 30_000,
        }
    }
}

impl MigrationConfig {
    /// Longest wait for a graceful hand-off.
    pub fn handoff_timeout(&self) -> Duration {
        Duration::from_millis(self.handoff_timeout_ms)
    }

    /// Stable time before a dead replica is replaced.
    pub fn re_replication_delay(&self) -> Duration {
        Duration::from_millis(self.re_replication_delay_ms)
    }

    /// Longest wait for the pre-copy of a joining node.
    pub fn pre_copy_timeout(&self) -> Duration {
        Duration::from_millis(self.pre_copy_timeout_ms)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        in_range(
            "migration.handoff_timeout_ms",
            self.handoff_timeout_ms,
            0,
            600_000,
        )?;
        in_range(
            "migration.re_replication_delay_ms",
            self.re_replication_delay_ms,
            0,
            600_000,
        )?;
        in_range(
            "migration.pre_copy_timeout_ms",
            self.pre_copy_timeout_ms,
            0,
            600_000,
        )?;
        Ok(())
    }
}

impl GossipConfig {
    /// Time between gossip rounds.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
}

impl RpcConfig {
    /// Deadline of one inter-node call.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }

    /// Time an inbound connection has to authenticate.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
}

impl HttpConfig {
    /// Retry budget of a forwarded request.
    pub fn forward_budget(&self) -> Duration {
        Duration::from_millis(self.forward_budget_ms)
    }

    /// The connection limits [`troupe_http::serve`] applies.
    pub fn serve_limits(&self) -> troupe_http::ServeLimits {
        troupe_http::ServeLimits {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            body_timeout: Duration::from_millis(self.body_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_connections: self.max_connections,
        }
    }

    /// How long a stopping node drains before it closes its listener.
    pub fn drain(&self) -> Duration {
        Duration::from_millis(self.drain_ms)
    }

    /// The request limits of the router.
    pub fn edge_limits(&self) -> troupe_http::EdgeLimits {
        troupe_http::EdgeLimits {
            max_body_bytes: self.max_body_bytes,
            max_in_flight: self.max_in_flight,
        }
    }
}

impl ClusterConfig {
    /// Loads `path`, or the embedded default when `path` is `None`, lets `secret_override` (from
    /// the environment, [`secret_from_env`]) replace the file's secret, and validates the result.
    pub fn load(path: Option<&Path>, secret_override: Option<String>) -> Result<Self, ConfigError> {
        let (text, origin) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                (text, p.display().to_string())
            }
            None => (EMBEDDED_CLUSTER_TOML.to_owned(), "<embedded>".to_owned()),
        };
        let mut config = Self::parse_unvalidated(&text, &origin)?;
        if let Some(secret) = secret_override {
            config.cluster.secret = Secret::new(secret);
        }
        config.validate()?;
        Ok(config)
    }

    /// Sets `cluster.previous_secret` (from `TROUPE_PREVIOUS_SECRET`) and validates it.
    pub fn set_previous_secret(&mut self, previous: String) -> Result<(), ConfigError> {
        self.cluster.previous_secret = Some(Secret::new(previous));
        self.validate()
    }

    /// Parses and validates TOML text; `origin` names the source in errors. The text must hold
    /// the secret itself.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config = Self::parse_unvalidated(text, origin)?;
        config.validate()?;
        Ok(config)
    }

    fn parse_unvalidated(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })
    }

    /// The region of the table with this name, if any.
    pub fn region(&self, name: &RegionName) -> Option<&Region> {
        self.regions.iter().find(|r| &r.name == name)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.cluster.validate()?;
        self.gossip.validate()?;
        self.rpc.validate()?;
        self.http.validate()?;
        self.migration.validate()?;
        self.storage.validate()?;
        self.sessions.validate()?;
        self.jobs.validate()?;
        self.integers.validate()?;
        self.parties.validate()?;
        validate_regions(&self.regions)?;
        self.validate_manager_count()?;
        self.validate_party_size()
    }

    /// A join rewrites its party's whole record in one replicated change, which must fit one
    /// shard entry ([`RpcConfig::max_entry_bytes`]); a full party of the largest participants
    /// must therefore fit too (decision 017).
    fn validate_party_size(&self) -> Result<(), ConfigError> {
        let longest_region = self
            .regions
            .iter()
            .map(|r| r.name.as_str().len())
            .max()
            .unwrap_or(0);
        let max = self.parties.max_participants;
        let largest = parties::max_join_change_bytes(max, longest_region);
        let limit = self.rpc.max_entry_bytes();
        if largest > limit {
            let fit = parties::most_participants_within(limit, longest_region);
            let lower = if fit > 0 {
                format!("lower parties.max_participants to at most {fit} or ")
            } else {
                String::new()
            };
            return Err(ConfigError::invalid(
                "parties.max_participants",
                format!(
                    "a full party of {max} participants can take {largest} bytes, above the \
                     {limit} bytes one replicated change may take (a quarter of \
                     rpc.max_frame_bytes, {}): {lower}raise rpc.max_frame_bytes to at least {}",
                    self.rpc.max_frame_bytes,
                    largest * 4
                ),
            ));
        }
        Ok(())
    }

    /// Every party manager has a shard of its own (decision 008), and the shards together are
    /// bounded by [`MAX_SHARDS`](crate::ids::MAX_SHARDS).
    fn validate_manager_count(&self) -> Result<(), ConfigError> {
        let per_region = self.parties.managers_per_region;
        let managers: u64 = self
            .regions
            .iter()
            .map(|r| u64::from(r.managers.unwrap_or(per_region)))
            .sum();
        let total = managers + u64::from(self.cluster.shards);
        if total > u64::from(crate::ids::MAX_SHARDS) {
            return Err(ConfigError::invalid(
                "parties.managers_per_region",
                format!(
                    "cluster.shards ({}) plus the region table's {managers} party managers (each \
                     one a shard) make {total} shards, at most {} are allowed: lower \
                     cluster.shards, parties.managers_per_region or regions.managers",
                    self.cluster.shards,
                    crate::ids::MAX_SHARDS
                ),
            ));
        }
        Ok(())
    }
}

impl ClusterSection {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() || !self.name.chars().all(is_name_char) {
            return Err(ConfigError::invalid(
                "cluster.name",
                format!(
                    "must be non-empty and use only letters, digits, '-', '_' or '.', got {:?}",
                    self.name
                ),
            ));
        }
        self.secret.validate("cluster.secret")?;
        if let Some(previous) = &self.previous_secret {
            previous.validate("cluster.previous_secret")?;
        }
        in_range("cluster.shards", self.shards, 1, 65_536)?;
        in_range("cluster.replication_factor", self.replication_factor, 1, 5)?;
        Ok(())
    }
}

impl GossipConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        in_range("gossip.interval_ms", self.interval_ms, 10, 60_000)?;
        if !(self.phi_threshold.is_finite() && self.phi_threshold > 0.0) {
            return Err(ConfigError::invalid(
                "gossip.phi_threshold",
                format!("must be a positive number, got {}", self.phi_threshold),
            ));
        }
        if self.initial_interval_ms == 0 || self.initial_interval_ms > self.max_interval_ms {
            return Err(ConfigError::invalid(
                "gossip.initial_interval_ms",
                format!(
                    "must be positive and at most gossip.max_interval_ms ({}), got {}",
                    self.max_interval_ms, self.initial_interval_ms
                ),
            ));
        }
        Ok(())
    }
}

impl RpcConfig {
    /// Most bytes of changes (keys and values) one shard entry may carry: a quarter of a frame,
    /// so that an entry always fits a replicate message and a catch-up answer, and a snapshot
    /// page always fits at least one entity, with room for their framing.
    pub fn max_entry_bytes(&self) -> usize {
        self.max_frame_bytes as usize / 4
    }

    fn validate(&self) -> Result<(), ConfigError> {
        in_range("rpc.call_timeout_ms", self.call_timeout_ms, 10, 600_000)?;
        in_range(
            "rpc.max_frame_bytes",
            self.max_frame_bytes,
            4_096,
            // The codec refuses longer messages (decision 018).
            crate::codec::MAX_MESSAGE_BYTES as u32,
        )?;
        in_range(
            "rpc.handshake_timeout_ms",
            self.handshake_timeout_ms,
            100,
            60_000,
        )?;
        in_range(
            "rpc.max_pending_handshakes",
            self.max_pending_handshakes,
            1,
            65_536,
        )?;
        Ok(())
    }
}

impl HttpConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        in_range("http.max_body_bytes", self.max_body_bytes, 1_024, 64 << 20)?;
        if self.forward_budget_ms > 60_000 {
            return Err(ConfigError::invalid(
                "http.forward_budget_ms",
                format!("must be at most 60000, got {}", self.forward_budget_ms),
            ));
        }
        in_range(
            "http.header_read_timeout_ms",
            self.header_read_timeout_ms,
            100,
            300_000,
        )?;
        in_range("http.body_timeout_ms", self.body_timeout_ms, 100, 600_000)?;
        in_range(
            "http.idle_timeout_ms",
            self.idle_timeout_ms,
            1_000,
            3_600_000,
        )?;
        if self.idle_timeout_ms <= self.forward_budget_ms {
            return Err(ConfigError::invalid(
                "http.idle_timeout_ms",
                format!(
                    "must be above http.forward_budget_ms ({}), or a request still retrying \
                     would be cut, got {}",
                    self.forward_budget_ms, self.idle_timeout_ms
                ),
            ));
        }
        in_range("http.max_connections", self.max_connections, 1, 1_000_000)?;
        in_range("http.max_in_flight", self.max_in_flight, 1, 1_000_000)?;
        in_range("http.drain_ms", self.drain_ms, 0, 600_000)?;
        Ok(())
    }
}

fn validate_regions(regions: &[Region]) -> Result<(), ConfigError> {
    if regions.is_empty() {
        return Err(ConfigError::invalid(
            "regions",
            "the region table is empty: add at least one [[regions]] entry with name, lat and lng",
        ));
    }
    let mut seen = BTreeSet::new();
    for r in regions {
        if let Some(managers) = r.managers {
            in_range("regions.managers", managers, 1, 1_000)?;
        }
        if r.name.as_str().is_empty() || !r.name.as_str().chars().all(is_name_char) {
            return Err(ConfigError::invalid(
                "regions.name",
                format!(
                    "region names use letters, digits, '-', '_' or '.', got {:?}",
                    r.name.as_str()
                ),
            ));
        }
        if !seen.insert(r.name.as_str()) {
            return Err(ConfigError::invalid(
                "regions.name",
                format!("region {} is listed twice", r.name),
            ));
        }
        if !(-90.0..=90.0).contains(&r.lat) {
            return Err(ConfigError::invalid(
                "regions.lat",
                format!(
                    "latitude of {} must be between -90 and 90, got {}",
                    r.name, r.lat
                ),
            ));
        }
        if !(-180.0..=180.0).contains(&r.lng) {
            return Err(ConfigError::invalid(
                "regions.lng",
                format!(
                    "longitude of {} must be between -180 and 180, got {}",
                    r.name, r.lng
                ),
            ));
        }
    }
    Ok(())
}

/// Checks `min <= value <= max`, naming the field and both bounds otherwise.
pub(super) fn in_range<T: PartialOrd + std::fmt::Display>(
    field: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::invalid(
            field,
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
    Ok(())
}

/// Characters allowed in cluster, node and region names (they end up in gossip keys and URLs).
pub(crate) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_SECRET: &str = "unit-test-secret-of-at-least-32-bytes";

    /// The embedded file with a secret, as an operator's own copy would hold one.
    fn with_secret() -> String {
        EMBEDDED_CLUSTER_TOML.replacen(
            "[cluster]\n",
            &format!("[cluster]\nsecret = \"{TEST_SECRET}\"\n"),
            1,
        )
    }

    fn with(section_edit: &str) -> String {
        format!("{section_edit}\n{}", with_secret())
    }

    fn error_of(text: &str) -> String {
        match ClusterConfig::parse(text, "test.toml") {
            Ok(_) => panic!("config should have been refused:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    fn replace(key: &str, value: &str) -> String {
        with_secret()
            .lines()
            .map(|l| {
                if l.starts_with(&format!("{key} =")) {
                    format!("{key} = {value}")
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn embedded_default_is_valid_with_64_shards_rf_2_and_the_shared_regions() {
        let c = ClusterConfig::load(None, Some(TEST_SECRET.into())).expect("valid");
        assert_eq!(c.cluster.shards, 64);
        assert_eq!(c.cluster.replication_factor, 2);
        assert_eq!(c.regions.len(), 14);
        assert!(c.region(&RegionName::new("eu-west-1")).is_some());
    }

    #[test]
    fn each_bad_field_is_named_in_the_error() {
        let cases = [
            (
                replace("shards", "0"),
                "invalid cluster.shards: must be between 1 and 65536, got 0",
            ),
            (
                replace("shards", "65536"),
                "plus the region table's 14 party managers (each one a shard) make 65550 shards, \
                 at most 65536 are allowed",
            ),
            (
                replace("replication_factor", "9"),
                "invalid cluster.replication_factor",
            ),
            (replace("name", "\"has space\""), "invalid cluster.name"),
            (
                replace("secret", "\"short\""),
                "invalid cluster.secret: must be at least 32 bytes long, got 5: generate one \
                 with `troupe secret`",
            ),
            (
                replace("secret", "\"troupe-dev-secret-change-me\""),
                "invalid cluster.secret: is the sample secret published with Troupe",
            ),
            (replace("interval_ms", "0"), "invalid gossip.interval_ms"),
            (
                replace("phi_threshold", "-1.0"),
                "invalid gossip.phi_threshold",
            ),
            (
                replace("initial_interval_ms", "20000"),
                "invalid gossip.initial_interval_ms",
            ),
            (
                replace("call_timeout_ms", "1"),
                "invalid rpc.call_timeout_ms",
            ),
            (
                replace("max_frame_bytes", "10"),
                "invalid rpc.max_frame_bytes",
            ),
            (
                replace("handshake_timeout_ms", "0"),
                "invalid rpc.handshake_timeout_ms",
            ),
            (
                replace("max_pending_handshakes", "0"),
                "invalid rpc.max_pending_handshakes",
            ),
            (
                replace("max_body_bytes", "1"),
                "invalid http.max_body_bytes",
            ),
            (
                replace("forward_budget_ms", "999999"),
                "invalid http.forward_budget_ms",
            ),
            (
                replace("header_read_timeout_ms", "0"),
                "invalid http.header_read_timeout_ms: must be between 100 and 300000, got 0",
            ),
            (
                replace("body_timeout_ms", "10"),
                "invalid http.body_timeout_ms",
            ),
            (
                replace("idle_timeout_ms", "4000"),
                "invalid http.idle_timeout_ms: must be above http.forward_budget_ms (5000)",
            ),
            (
                replace("max_connections", "0"),
                "invalid http.max_connections",
            ),
            (
                replace("max_in_flight", "0"),
                "invalid http.max_in_flight: must be between 1 and 1000000, got 0",
            ),
            (replace("lat", "123.0"), "invalid regions.lat"),
            (replace("lng", "-200.0"), "invalid regions.lng"),
            (
                replace("max_participants", "0"),
                "invalid parties.max_participants: must be between 1 and 1000000, got 0",
            ),
            (
                replace("max_frame_bytes", "1048576"),
                "invalid parties.max_participants: a full party of 1000 participants can take \
                 555568 bytes, above the 262144 bytes one replicated change may take (a quarter \
                 of rpc.max_frame_bytes, 1048576): lower parties.max_participants to at most 471 \
                 or raise rpc.max_frame_bytes to at least 2222272",
            ),
            (
                replace("max_frame_bytes", "4096"),
                "above the 1024 bytes one replicated change may take (a quarter of \
                 rpc.max_frame_bytes, 4096): raise rpc.max_frame_bytes to at least 2222272",
            ),
        ];
        for (text, expected) in cases {
            let err = error_of(&text);
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused_with_their_name() {
        let err = error_of(&with("bogus = 1"));
        assert!(err.contains("bogus"), "{err}");
        let err = error_of(&replace("shards", "\"many\""));
        assert!(err.contains("test.toml") && err.contains("shards"), "{err}");
    }

    #[test]
    fn duplicate_and_empty_region_tables_are_refused() {
        let dup = format!(
            "{}\n[[regions]]\nname = \"eu-west-1\"\nlat = 1.0\nlng = 1.0\n",
            with_secret()
        );
        assert!(error_of(&dup).contains("region eu-west-1 is listed twice"));
        let text = with_secret();
        let head = text.split("[[regions]]").next().expect("has a head");
        // Top-level keys must come before the first table.
        let empty = format!("regions = []\n{head}");
        assert!(error_of(&empty).contains("invalid regions: the region table is empty"));
    }

    #[test]
    fn secret_override_replaces_the_file_value_and_never_shows_in_debug() {
        let from_env = "from-the-environment-and-32-bytes-long";
        let c = ClusterConfig::load(None, Some(from_env.into())).expect("valid");
        assert_eq!(c.cluster.secret.expose(), from_env.as_bytes());
        assert!(!format!("{c:?}").contains(from_env));
        let err = ClusterConfig::load(None, Some("x".into())).expect_err("too short");
        assert!(err.to_string().contains("cluster.secret"));
    }

    #[test]
    fn the_repository_file_holds_no_secret_and_a_node_without_one_is_told_how_to_make_one() {
        let err = ClusterConfig::load(None, None).expect_err("no secret");
        assert!(matches!(err, ConfigError::SecretMissing { .. }), "{err}");
        let message = err.to_string();
        for hint in ["troupe secret", "TROUPE_SECRET_FILE", "TROUPE_SECRET"] {
            assert!(message.contains(hint), "{message}");
        }
    }

    #[test]
    fn a_secret_file_is_read_without_its_trailing_newline_and_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, format!("{TEST_SECRET}\n")).expect("write");
        assert_eq!(read_secret_file(&path).expect("read"), TEST_SECRET);
        std::fs::write(&path, vec![b'a'; 5000]).expect("write");
        let err = read_secret_file(&path).expect_err("too long");
        assert!(err.to_string().contains("TROUPE_SECRET_FILE"), "{err}");
        let err = read_secret_file(&dir.path().join("missing")).expect_err("missing");
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn a_previous_secret_is_read_from_the_file_checked_and_never_shown() {
        let old_secret = "the-old-cluster-secret-of-32-bytes-or-more";
        let with = |previous: &str| {
            with_secret().replacen(
                "shards = 64",
                &format!("shards = 64\nprevious_secret = \"{previous}\""),
                1,
            )
        };
        let c = ClusterConfig::parse(&with(old_secret), "test").expect("valid");
        assert_eq!(
            c.cluster.previous_secret.as_ref().map(Secret::expose),
            Some(old_secret.as_bytes())
        );
        assert!(!format!("{c:?}").contains(old_secret));
        for refused in ["short", "", "troupe-dev-secret-change-me"] {
            let err = ClusterConfig::parse(&with(refused), "test").expect_err("refused");
            assert!(err.to_string().contains("cluster.previous_secret"), "{err}");
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = ClusterConfig::load(Some(Path::new("/nonexistent/cluster.toml")), None)
            .expect_err("missing");
        assert!(
            err.to_string().contains("/nonexistent/cluster.toml"),
            "{err}"
        );
    }
}
