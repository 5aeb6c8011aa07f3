//! Nodes heard gossiping but kept out of the membership (another secret's proof, shard count
//! or layout), with why, for `Membership::rejected` and the start-up check.
//!
//! The set mirrors chitchat's state: it is rebuilt from every snapshot, so a refused node is
//! forgotten when chitchat forgets it, and it holds at most [`MAX_REFUSED`] entries. Each
//! newly refused node is logged once, at most [`MAX_WARNINGS`] per rebuild, so many refused
//! ids cannot flood the log.

use std::collections::BTreeMap;

use chitchat::ChitchatId;
use tracing::warn;

/// Most refused nodes listed.
pub const MAX_REFUSED: usize = 64;
/// Most refused nodes logged per rebuild; the rest are counted in one line.
const MAX_WARNINGS: usize = 4;

/// Refused nodes and why.
#[derive(Debug, Default)]
pub struct Refused {
    nodes: BTreeMap<ChitchatId, &'static str>,
}

impl Refused {
    /// Replaces the set with the nodes refused in the latest snapshot, logging new ones.
    pub fn replace(&mut self, now: Vec<(ChitchatId, &'static str)>) {
        let mut next = BTreeMap::new();
        let mut new = 0usize;
        let total = now.len();
        for (id, reason) in now {
            if !self.nodes.contains_key(&id) {
                new += 1;
                if new <= MAX_WARNINGS {
                    warn!(node_id = %id.node_id, gossip = %id.gossip_advertise_addr, reason, "ignoring gossip member");
                }
            }
            if next.len() < MAX_REFUSED {
                next.insert(id, reason);
            }
        }
        if new > MAX_WARNINGS {
            warn!(
                more = new - MAX_WARNINGS,
                total, "ignoring more gossip members (not logged one by one)"
            );
        }
        self.nodes = next;
    }

    /// The refused nodes (at most [`MAX_REFUSED`]).
    pub fn iter(&self) -> impl Iterator<Item = (&ChitchatId, &&'static str)> {
        self.nodes.iter()
    }

    /// How many are listed.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> ChitchatId {
        ChitchatId::new(format!("fake{n}"), 1, ([10, 0, 0, 1], 7000).into())
    }

    #[test]
    fn refused_nodes_are_bounded_and_forgotten_with_chitchat() {
        let mut refused = Refused::default();
        refused.replace((0..100_000).map(|n| (id(n), "invalid proof")).collect());
        assert_eq!(refused.len(), MAX_REFUSED);
        refused.replace(vec![(id(1), "invalid proof")]);
        assert_eq!(refused.len(), 1);
        refused.replace(Vec::new());
        assert_eq!(refused.len(), 0);
    }
}
