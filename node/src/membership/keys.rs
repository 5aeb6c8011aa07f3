//! Gossip keys and their parsing: nothing else in the code base reads raw gossip strings.

use std::str::FromStr;

use chitchat::{ChitchatId, NodeState};

use super::member::{Member, NodeStatus};
use crate::config::{HostPort, Secret};
use crate::ids::{Generation, NodeId, RegionName};
use crate::mac::{mac, same_mac};

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
    /// The secret before a rotation: proofs made with it are still accepted
    /// (`cluster.previous_secret`).
    pub previous: Option<Secret>,
    /// This node's shard count; members must have the same.
    pub shards: u32,
    /// This node's shard layout fingerprint; members must have the same.
    pub layout: String,
}

impl Signer {
    fn proof(&self, secret: &Secret, id: &ChitchatId, http: &str, rpc: &str) -> [u8; 32] {
        let generation = id.generation_id.to_be_bytes();
        let gossip = id.gossip_advertise_addr.to_string();
        let parts: [&[u8]; 7] = [
            b"member",
            self.cluster.as_bytes(),
            id.node_id.as_bytes(),
            &generation,
            http.as_bytes(),
            rpc.as_bytes(),
            gossip.as_bytes(),
        ];
        mac(secret, &parts)
    }

    fn verifies(&self, id: &ChitchatId, published: &Published) -> Option<bool> {
        let claimed = decode_hex(published.proof.as_deref()?)?;
        let (http, rpc) = (published.http.as_deref()?, published.rpc.as_deref()?);
        Some(
            [Some(&self.secret), self.previous.as_ref()]
                .into_iter()
                .flatten()
                .any(|secret| same_mac(&self.proof(secret, id, http, rpc), &claimed)),
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
            hex(&signer.proof(&signer.secret, id, &http, &rpc)),
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
pub fn parse_member(signer: &Signer, id: &ChitchatId, state: &Published, live: bool) -> Parsed {
    match signer.verifies(id, state) {
        None => Parsed::Incomplete,
        Some(false) => Parsed::Rejected("invalid proof of the cluster secret"),
        Some(true) if state.shards.as_deref() != Some(signer.shards.to_string().as_str()) => {
            Parsed::Rejected("different cluster.shards: it would compute another shard table")
        }
        Some(true) if state.layout.is_none() => Parsed::Rejected(
            "no shard layout published (a build from before decision 008): every node of a \
             cluster must run a build that places party shards the same way",
        ),
        Some(true) if state.layout.as_deref() != Some(signer.layout.as_str()) => Parsed::Rejected(
            "different [[regions]] table or party managers (parties.managers_per_region, \
             regions.managers): it would place the party shards elsewhere; give every node \
             the same cluster.toml",
        ),
        Some(true) => read_member(id, state, live).map_or(Parsed::Incomplete, Parsed::Member),
    }
}

fn read_member(id: &ChitchatId, state: &Published, live: bool) -> Option<Member> {
    Some(Member {
        node_id: NodeId::new(id.node_id.as_ref()),
        generation: Generation(id.generation_id),
        gossip_addr: id.gossip_advertise_addr,
        region: RegionName::new(state.region.as_deref()?),
        http_addr: HostPort::from_str(state.http.as_deref()?).ok()?,
        rpc_addr: HostPort::from_str(state.rpc.as_deref()?).ok()?,
        status: NodeStatus::from_str(state.status.as_deref()?).ok()?,
        live,
    })
}

/// Longest key value membership copies; longer ones are left out (and the node is then
/// incomplete). Every value a node publishes is far shorter.
const MAX_VALUE_LEN: usize = 512;

/// The keys membership reads of one node, copied out of chitchat's state under its lock so
/// that proofs are checked after the lock is released (chitchat's gossip loop takes the same
/// lock for every datagram).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Published {
    proof: Option<String>,
    region: Option<String>,
    http: Option<String>,
    rpc: Option<String>,
    status: Option<String>,
    shards: Option<String>,
    layout: Option<String>,
}

impl Published {
    /// Copies the keys membership reads.
    pub fn read(state: &NodeState) -> Self {
        Self::from_lookup(|key| {
            state
                .get(key)
                .filter(|v| v.len() <= MAX_VALUE_LEN)
                .map(str::to_owned)
        })
    }

    /// The keys a node publishes at start, as [`initial_key_values`] gives them.
    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: &[(String, String)]) -> Self {
        Self::from_lookup(|key| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            proof: get(PROOF_KEY),
            region: get(REGION_KEY),
            http: get(HTTP_ADDR_KEY),
            rpc: get(RPC_ADDR_KEY),
            status: get(STATUS_KEY),
            shards: get(SHARDS_KEY),
            layout: get(LAYOUT_KEY),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(secret: &str, previous: Option<&str>) -> Signer {
        Signer {
            cluster: "troupe".to_owned(),
            secret: Secret::new(secret),
            previous: previous.map(Secret::new),
            shards: 64,
            layout: "layout".to_owned(),
        }
    }

    fn published(signer: &Signer, id: &ChitchatId) -> Published {
        let http: HostPort = "127.0.0.1:1".parse().expect("valid");
        let rpc: HostPort = "127.0.0.1:2".parse().expect("valid");
        Published::from_pairs(&initial_key_values(
            signer,
            id,
            &RegionName::new("eu-west-1"),
            &http,
            &rpc,
        ))
    }

    fn id(port: u16) -> ChitchatId {
        ChitchatId::new("n1".to_owned(), 7, ([127, 0, 0, 1], port).into())
    }

    #[test]
    fn a_proof_made_with_the_secret_or_the_previous_one_is_accepted() {
        let old = signer("old-secret", None);
        let rotated = signer("new-secret", Some("old-secret"));
        let stranger = signer("other-secret", None);
        assert!(matches!(
            parse_member(&rotated, &id(3), &published(&old, &id(3)), true),
            Parsed::Member(_)
        ));
        assert!(matches!(
            parse_member(&rotated, &id(3), &published(&rotated, &id(3)), true),
            Parsed::Member(_)
        ));
        assert!(matches!(
            parse_member(&rotated, &id(3), &published(&stranger, &id(3)), true),
            Parsed::Rejected(_)
        ));
    }

    #[test]
    fn a_proof_copied_to_another_gossip_address_is_refused() {
        let s = signer("the-secret", None);
        let copied = published(&s, &id(3));
        assert!(matches!(
            parse_member(&s, &id(4), &copied, true),
            Parsed::Rejected(_)
        ));
    }
}
