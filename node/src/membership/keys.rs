//! Gossip keys and their parsing: nothing else in the code base reads raw gossip strings.

use std::str::FromStr;

use chitchat::{ChitchatId, NodeState};

use super::member::{Member, NodeStatus};
use crate::config::{HostPort, Secret};
use crate::ids::{Generation, NodeId, RegionName};
use crate::rpc::auth;

/// The node's region (a region table name).
pub const REGION_KEY: &str = "region";
/// Advertised HTTP address (`host:port`).
pub const HTTP_ADDR_KEY: &str = "http_addr";
/// Advertised RPC address (`host:port`).
pub const RPC_ADDR_KEY: &str = "rpc_addr";
/// Lifecycle status: `joining`, `ready` or `leaving`.
pub const STATUS_KEY: &str = "status";
/// Proof that the node knows the cluster secret, bound to its id, generation and addresses.
/// chitchat gossip is not authenticated; without this, a node started with the wrong secret
/// would enter placement and be handed shards that nobody can then reach.
pub const PROOF_KEY: &str = "proof";
/// The node's configured shard count: a node with another count would compute another shard
/// table, so it is kept out of membership.
pub const SHARDS_KEY: &str = "shards";
/// Fingerprint of the node's shard layout (`layout::ShardLayout::fingerprint`: region table and
/// party managers): a node with another one would place the manager shards elsewhere, so it is
/// kept out of membership too.
pub const LAYOUT_KEY: &str = "layout";

/// Who signs and checks membership entries: proof of the secret, and a compatible shard count.
#[derive(Clone, Debug)]
pub struct Signer {
    /// Cluster name, bound into the proof.
    pub cluster: String,
    /// The shared secret.
    pub secret: Secret,
    /// This node's shard count; members must have the same.
    pub shards: u32,
    /// This node's shard layout fingerprint; members must have the same.
    pub layout: String,
}

impl Signer {
    fn proof(&self, node_id: &str, generation: u64, http: &str, rpc: &str) -> String {
        let generation = generation.to_be_bytes();
        let parts: [&[u8]; 6] = [
            b"member",
            self.cluster.as_bytes(),
            node_id.as_bytes(),
            &generation,
            http.as_bytes(),
            rpc.as_bytes(),
        ];
        auth::mac(&self.secret, &parts)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn verifies(&self, id: &ChitchatId, state: &NodeState) -> Option<bool> {
        let claimed = decode_hex(state.get(PROOF_KEY)?)?;
        let expected = decode_hex(&self.proof(
            &id.node_id,
            id.generation_id,
            state.get(HTTP_ADDR_KEY)?,
            state.get(RPC_ADDR_KEY)?,
        ))?;
        Some(auth::same_mac(&expected, &claimed))
    }
}

fn decode_hex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The key-values a node publishes when it starts.
pub fn initial_key_values(
    signer: &Signer,
    id: &ChitchatId,
    region: &RegionName,
    http: &HostPort,
    rpc: &HostPort,
) -> Vec<(String, String)> {
    let (http, rpc) = (http.to_string(), rpc.to_string());
    vec![
        (
            PROOF_KEY.to_owned(),
            signer.proof(&id.node_id, id.generation_id, &http, &rpc),
        ),
        (REGION_KEY.to_owned(), region.to_string()),
        (SHARDS_KEY.to_owned(), signer.shards.to_string()),
        (LAYOUT_KEY.to_owned(), signer.layout.clone()),
        (HTTP_ADDR_KEY.to_owned(), http),
        (RPC_ADDR_KEY.to_owned(), rpc),
        (
            STATUS_KEY.to_owned(),
            NodeStatus::Joining.as_str().to_owned(),
        ),
    ]
}

/// What gossip says about one node.
#[derive(Debug)]
pub enum Parsed {
    /// A valid member.
    Member(Member),
    /// Its keys have not all arrived yet.
    Incomplete,
    /// It must be kept out of membership, for the reason given.
    Rejected(&'static str),
}

/// Reads a member from its gossip state, checking its proof of the cluster secret and that it
/// places shards the same way.
pub fn parse_member(signer: &Signer, id: &ChitchatId, state: &NodeState, live: bool) -> Parsed {
    match signer.verifies(id, state) {
        None => Parsed::Incomplete,
        Some(false) => Parsed::Rejected("invalid proof of the cluster secret"),
        Some(true) if state.get(SHARDS_KEY) != Some(signer.shards.to_string().as_str()) => {
            Parsed::Rejected("different cluster.shards: it would compute another shard table")
        }
        Some(true) if state.get(LAYOUT_KEY).is_none() => Parsed::Rejected(
            "no shard layout published (a build from before decision 008): every node of a \
             cluster must run a build that places party shards the same way",
        ),
        Some(true) if state.get(LAYOUT_KEY) != Some(signer.layout.as_str()) => Parsed::Rejected(
            "different [[regions]] table or party managers (parties.managers_per_region, \
             regions.managers): it would place the party shards elsewhere; give every node \
             the same cluster.toml",
        ),
        Some(true) => read_member(id, state, live).map_or(Parsed::Incomplete, Parsed::Member),
    }
}

fn read_member(id: &ChitchatId, state: &NodeState, live: bool) -> Option<Member> {
    Some(Member {
        node_id: NodeId::new(id.node_id.as_ref()),
        generation: Generation(id.generation_id),
        gossip_addr: id.gossip_advertise_addr,
        region: RegionName::new(state.get(REGION_KEY)?),
        http_addr: HostPort::from_str(state.get(HTTP_ADDR_KEY)?).ok()?,
        rpc_addr: HostPort::from_str(state.get(RPC_ADDR_KEY)?).ok()?,
        status: NodeStatus::from_str(state.get(STATUS_KEY)?).ok()?,
        live,
    })
}
