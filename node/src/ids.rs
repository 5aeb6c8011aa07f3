//! Identifier newtypes shared by every subsystem of a node.
//!
//! Bare strings and integers are easy to mix up (a shard number passed where a generation was
//! expected compiles fine); these wrappers make such mistakes type errors.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The stable name of a node, unique in its cluster (for example `n1`). A restarted node keeps its
/// id and gets a new [`Generation`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(String);

impl NodeId {
    /// Wraps a node name; validation of the allowed characters happens in the config layer.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One incarnation of a node: bumped every time the node process starts, so peers can tell a
/// restarted node from the one that died.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Generation(pub u64);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Most shards a cluster may have, hash shards and party manager shards together: the store
/// prefixes each shard's records with its id in two bytes (`shard::store`, decision 014).
pub const MAX_SHARDS: u32 = 65_536;

/// A shard number in `0..shard_count`. The shard count is fixed for the life of a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShardId(pub u32);

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The name of a region from the cluster's region table (for example `eu-west-1`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RegionName(String);

impl RegionName {
    /// Wraps a region name; whether it is in the table is checked by the config layer.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RegionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An ownership period of a shard: a term and the node that holds it. Ordered by term, then by
/// owner, so two nodes that pick the same term still differ and exactly one of them wins.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Epoch {
    /// Increases with every ownership change.
    pub term: u64,
    /// The owner that sealed this epoch.
    pub owner: NodeId,
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.term, self.owner)
    }
}
