//! `[storage]`: how large the node's LMDB map may grow, and how full it may get before the
//! node stops taking traffic and then new data.

use serde::Deserialize;

use super::cluster::in_range;
use super::ConfigError;

/// `[storage]` of `cluster.toml`.
///
/// LMDB fails a write that does not fit its map (`MDB_MAP_FULL`) without damage, but a write
/// that fails on one copy and not another leaves the owner unable to acknowledge anything. So
/// the node acts before that: `/readyz` turns red at `readiness_percent`, and from
/// `writes_percent` on new data is refused with 507 while deletions and the cluster's own
/// bookkeeping still go through, leaving the rest of the map for replication and catch-up.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Largest size of the LMDB map, in MiB: LMDB reserves this much address space, and the
    /// data file grows up to it.
    pub map_size_mb: u64,
    /// `/readyz` answers 503 once this percentage of the map holds data.
    pub readiness_percent: u8,
    /// Commands that add data are refused with 507 once this percentage of the map holds data.
    pub writes_percent: u8,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            map_size_mb: 1024,
            readiness_percent: 85,
            writes_percent: 95,
        }
    }
}

impl StorageConfig {
    /// The map size in bytes.
    pub fn map_size_bytes(&self) -> usize {
        // Validated to at most 1 TiB, which fits a 64-bit usize.
        usize::try_from(self.map_size_mb << 20).unwrap_or(usize::MAX)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        in_range("storage.map_size_mb", self.map_size_mb, 16, 1 << 20)?;
        in_range("storage.writes_percent", self.writes_percent, 2, 99)?;
        if self.readiness_percent == 0 || self.readiness_percent >= self.writes_percent {
            return Err(ConfigError::invalid(
                "storage.readiness_percent",
                format!(
                    "must be at least 1 and below storage.writes_percent ({}), got {}: a node \
                     should stop taking traffic before it refuses writes",
                    self.writes_percent, self.readiness_percent
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert!(StorageConfig::default().validate().is_ok());
        let small = StorageConfig {
            map_size_mb: 8,
            ..StorageConfig::default()
        };
        assert!(small
            .validate()
            .is_err_and(|e| e.to_string().contains("storage.map_size_mb")));
        let inverted = StorageConfig {
            readiness_percent: 96,
            ..StorageConfig::default()
        };
        assert!(inverted
            .validate()
            .is_err_and(|e| e.to_string().contains("storage.readiness_percent")));
        assert_eq!(StorageConfig::default().map_size_bytes(), 1 << 30);
    }
}
