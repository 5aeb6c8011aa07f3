//! Gossip peers that told this node its datagrams do not open under their secret.
//!
//! Sealed gossip means a node with the wrong secret hears nothing at all from its seeds, and
//! would start alone as a second cluster. So a node answers a datagram that looks sealed but
//! does not open with a short notice ([`NOTICE`], rate-limited, smaller than what triggers
//! it), and the receiving side records the sender here; at start-up a node that met no
//! member but got notices from its seeds refuses to start alone (`boot::join`). A notice is
//! not authenticated: a host on the node network can forge one, which can only make a node
//! that met no member exit instead of starting alone.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// The notice: the format version byte 0 (sealed datagrams have 1) and a text for whoever
/// captures it. Shorter than any datagram that triggers it (a sealed one is at least
/// `seal::OVERHEAD` bytes), so a spoofed sender cannot use a node as an amplifier.
pub const NOTICE: &[u8] = b"\x00troupe: not our gossip secret";

/// Most peers recorded.
const MAX_PEERS: usize = 64;

/// Peers that sent [`NOTICE`]; shared by the transport (writer) and membership (reader).
#[derive(Clone, Debug, Default)]
pub struct KeyMismatches {
    peers: Arc<Mutex<BTreeSet<SocketAddr>>>,
}

impl KeyMismatches {
    /// Records that `peer` could not open this node's gossip.
    pub fn record(&self, peer: SocketAddr) {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if peers.len() < MAX_PEERS {
            peers.insert(peer);
        }
    }

    /// The peers recorded so far.
    pub fn peers(&self) -> Vec<SocketAddr> {
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        peers.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notice_is_shorter_than_what_triggers_it() {
        assert!(NOTICE.len() < crate::membership::seal::OVERHEAD);
    }

    #[test]
    fn recorded_peers_are_bounded() {
        let mismatches = KeyMismatches::default();
        for port in 0..1_000 {
            mismatches.record(([10, 0, 0, 1], port).into());
        }
        assert_eq!(mismatches.peers().len(), MAX_PEERS);
    }
}
