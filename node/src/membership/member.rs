//! One member of the cluster as the rest of the node sees it.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use crate::config::HostPort;
use crate::ids::{Generation, NodeId, RegionName};

/// Lifecycle status a node publishes about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeStatus {
    /// Started, gossiping, not yet taking part in placement.
    Joining,
    /// Takes part in placement and serves its units.
    Ready,
    /// Shutting down: handing its units over; placement ignores it.
    Leaving,
}

impl NodeStatus {
    /// The gossip value and JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Joining => "joining",
            Self::Ready => "ready",
            Self::Leaving => "leaving",
        }
    }
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NodeStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "joining" => Ok(Self::Joining),
            "ready" => Ok(Self::Ready),
            "leaving" => Ok(Self::Leaving),
            other => Err(format!("unknown node status {other:?}")),
        }
    }
}

/// A member: identity, incarnation, addresses, published status and liveness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Stable node id.
    pub node_id: NodeId,
    /// Incarnation of the node.
    pub generation: Generation,
    /// Region from the region table.
    pub region: RegionName,
    /// Advertised HTTP address.
    pub http_addr: HostPort,
    /// Advertised RPC address.
    pub rpc_addr: HostPort,
    /// Gossip address.
    pub gossip_addr: SocketAddr,
    /// Status the node published.
    pub status: NodeStatus,
    /// Whether the failure detector considers it alive (always true for the local node).
    pub live: bool,
}

impl Member {
    /// Whether placement should give this member units: alive and ready.
    pub fn takes_placement(&self) -> bool {
        self.live && self.status == NodeStatus::Ready
    }
}
