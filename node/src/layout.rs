//! The shard layout: which shards a cluster has and what each one holds.
//!
//! Shards `0..cluster.shards` are the hash shards: a key's shard is `xxh3(key) mod
//! cluster.shards` (users, sessions, jobs, integers). After them comes one shard per party
//! manager (decision 008): manager `k`, counted over the region table in order and then over
//! the region's managers, has shard `cluster.shards + k`. Placement puts a manager shard on
//! nodes of its manager's region (`placement::region_replica_sets`), so a region's parties are
//! stored, replicated and served there, and move with the shard when membership changes.
//!
//! The layout is a pure function of `cluster.toml`. Two nodes with different layouts would
//! compute different shard tables, so gossip keeps a peer with another [`fingerprint`] out of
//! membership, and a data directory stays bound to the [`identity`] it was written with (the
//! manager count and order decide which shard holds which party).
//!
//! [`fingerprint`]: ShardLayout::fingerprint
//! [`identity`]: ShardLayout::identity

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::config::ClusterConfig;
use crate::ids::{RegionName, ShardId};
use crate::region::Region;

pub use crate::ids::MAX_SHARDS;

/// Seed of the key hash; fixed forever (changing it would move every key).
const KEY_SEED: u64 = 0x7472_6f75_7065_0003;

/// The shard of a key: stable hash modulo the shard count (which never changes in a cluster).
/// Here, with the shards that exist, so that the configuration's layout and placement both
/// build on it (placement re-exports it).
pub fn shard_for_key(key: &str, shard_count: u32) -> ShardId {
    ShardId((xxh3_64_with_seed(key.as_bytes(), KEY_SEED) % u64::from(shard_count.max(1))) as u32)
}

/// One party manager and the shard that holds its parties and its index of open parties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manager {
    /// `<region>/m<k>`: shown by `/managers/find`, stored in each party, prefixes its index.
    pub id: String,
    /// The region whose parties it manages, and whose nodes hold its shard.
    pub region: RegionName,
    /// Its shard, `cluster.shards + ` its position in the layout.
    pub shard: ShardId,
}

/// The hash shards, then one shard per party manager.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardLayout {
    hash_shards: u32,
    regions: Vec<Region>,
    managers: Vec<Manager>,
}

impl ShardLayout {
    /// `hash_shards` hash shards, then `regions[i].managers` (default `managers_per_region`)
    /// manager shards for each region, in table order.
    pub fn new(hash_shards: u32, regions: &[Region], managers_per_region: u32) -> Self {
        let mut managers = Vec::new();
        for region in regions {
            for k in 0..region.managers.unwrap_or(managers_per_region) {
                let shard = ShardId(hash_shards + managers.len() as u32);
                managers.push(Manager {
                    id: format!("{}/m{k}", region.name),
                    region: region.name.clone(),
                    shard,
                });
            }
        }
        Self {
            hash_shards,
            regions: regions.to_vec(),
            managers,
        }
    }

    /// The layout `cluster.toml` describes.
    pub fn of(config: &ClusterConfig) -> Self {
        Self::new(
            config.cluster.shards,
            &config.regions,
            config.parties.managers_per_region,
        )
    }

    /// `cluster.shards`: the shards keys hash to.
    pub fn hash_shards(&self) -> u32 {
        self.hash_shards
    }

    /// Every shard: hash shards plus manager shards.
    pub fn total(&self) -> u32 {
        self.hash_shards + self.managers.len() as u32
    }

    /// The region table placement measures distances in.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Every manager, in shard order.
    pub fn managers(&self) -> &[Manager] {
        &self.managers
    }

    /// The managers of `region`, in order (empty for a region not in the table).
    pub fn managers_of(&self, region: &RegionName) -> &[Manager] {
        let Some(start) = self.managers.iter().position(|m| &m.region == region) else {
            return &[];
        };
        let len = self.managers[start..]
            .iter()
            .take_while(|m| &m.region == region)
            .count();
        &self.managers[start..start + len]
    }

    /// The manager whose shard `shard` is, if it is a manager shard.
    pub fn manager_of_shard(&self, shard: ShardId) -> Option<&Manager> {
        let index = shard.0.checked_sub(self.hash_shards)?;
        self.managers.get(index as usize)
    }

    /// The manager `key` hashes to (`xxh3(key) mod managers`): a party code is drawn until it
    /// hashes to its manager, so the code alone finds the manager's shard.
    pub fn manager_for_key(&self, key: &str) -> Option<&Manager> {
        let count = u32::try_from(self.managers.len()).ok()?;
        if count == 0 {
            return None;
        }
        self.managers.get(shard_for_key(key, count).0 as usize)
    }

    /// What a data directory is bound to: the shard count and the managers in shard order
    /// (which party lives in which shard), but not the coordinates (moving a region moves
    /// its shards, it does not re-home their data).
    pub fn identity(&self) -> String {
        let ids: Vec<&str> = self.managers.iter().map(|m| m.id.as_str()).collect();
        format!(
            "{} shards and {} party manager shards (managers {:016x})",
            self.hash_shards,
            self.managers.len(),
            xxh3_64(ids.join(",").as_bytes())
        )
    }

    /// Everything placement of the manager shards depends on, hashed: the region table
    /// (names, coordinates, manager counts, order) and the shard count. Peers must match.
    pub fn fingerprint(&self) -> String {
        let mut text = format!("{};", self.hash_shards);
        for region in &self.regions {
            let managers = self.managers_of(&region.name).len();
            text.push_str(&format!(
                "{}@{:x},{:x}x{managers};",
                region.name,
                region.lat.to_bits(),
                region.lng.to_bits()
            ));
        }
        format!("{:016x}", xxh3_64(text.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str, lat: f64, managers: Option<u32>) -> Region {
        Region {
            name: RegionName::new(name),
            lat,
            lng: 0.0,
            managers,
        }
    }

    fn table() -> Vec<Region> {
        vec![
            region("a", 1.0, None),
            region("b", 2.0, Some(3)),
            region("c", 3.0, None),
        ]
    }

    #[test]
    fn manager_shards_follow_the_hash_shards_in_region_table_order() {
        let layout = ShardLayout::new(64, &table(), 1);
        assert_eq!(layout.total(), 64 + 5);
        let ids: Vec<(&str, u32)> = layout
            .managers()
            .iter()
            .map(|m| (m.id.as_str(), m.shard.0))
            .collect();
        assert_eq!(
            ids,
            [
                ("a/m0", 64),
                ("b/m0", 65),
                ("b/m1", 66),
                ("b/m2", 67),
                ("c/m0", 68)
            ]
        );
        let b: Vec<&str> = layout
            .managers_of(&RegionName::new("b"))
            .iter()
            .map(|m| m.id.as_str())
            .collect();
        assert_eq!(b, ["b/m0", "b/m1", "b/m2"]);
        assert!(layout.managers_of(&RegionName::new("z")).is_empty());
        assert_eq!(layout.manager_of_shard(ShardId(63)), None);
        assert_eq!(
            layout.manager_of_shard(ShardId(68)).map(|m| m.id.as_str()),
            Some("c/m0")
        );
        assert_eq!(layout.manager_of_shard(ShardId(69)), None);
    }

    #[test]
    fn keys_hash_to_every_manager() {
        let layout = ShardLayout::new(64, &table(), 1);
        let hit: std::collections::BTreeSet<u32> = (0..200)
            .filter_map(|i| layout.manager_for_key(&i.to_string()))
            .map(|m| m.shard.0)
            .collect();
        assert_eq!(hit.len(), 5);
        assert!(ShardLayout::new(64, &[], 1).manager_for_key("x").is_none());
    }

    #[test]
    fn fingerprint_changes_with_anything_placement_reads_and_identity_with_the_managers() {
        let base = ShardLayout::new(64, &table(), 1);
        let mut moved = table();
        moved[0].lat = 1.5;
        let mut reordered = table();
        reordered.swap(0, 2);
        let others = [
            ShardLayout::new(32, &table(), 1),
            ShardLayout::new(64, &table(), 2),
            ShardLayout::new(64, &moved, 1),
            ShardLayout::new(64, &reordered, 1),
        ];
        for other in &others {
            assert_ne!(base.fingerprint(), other.fingerprint(), "{other:?}");
        }
        assert_eq!(
            base.fingerprint(),
            ShardLayout::new(64, &table(), 1).fingerprint()
        );
        // Coordinates move shards, they do not re-home their data.
        assert_eq!(base.identity(), others[2].identity());
        for other in [&others[0], &others[1], &others[3]] {
            assert_ne!(base.identity(), other.identity(), "{other:?}");
        }
    }
}
