//! The transport's own messages: the handshake that opens a connection and the envelope that
//! pairs a call with its answer. What a call and an answer *say* is defined above the
//! transport ([`Call`](super::Call)), by the node's `protocol` module.
//!
//! Encoded by [`codec`](crate::codec) (which prefixes a format version byte). The handshake
//! carries the protocol version of the calls the connection is to carry
//! ([`Call::PROTOCOL_VERSION`](super::Call::PROTOCOL_VERSION)), so incompatible builds refuse
//! each other up front with a clear reason instead of misreading frames. That one number also
//! covers the bytes of this file, the frames and the sessions: a change to any of them is an
//! incompatible change of the protocol too.

use serde::{Deserialize, Serialize};

use crate::ids::NodeId;

/// Random challenge size in bytes.
pub const NONCE_LEN: usize = 32;

/// A 32-byte value (nonce or HMAC-SHA256 proof).
pub type Bytes32 = [u8; NONCE_LEN];

/// Connection set-up, before any call. The server speaks first, so that a node of another
/// protocol version learns it from the first message, whichever side it is on. See
/// [`auth`](super::auth) for the Noise handshake the `noise` fields carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Handshake {
    /// Server to client: the server's protocol version and a fresh nonce the client's Noise
    /// message is bound to (so a recorded hello cannot be replayed on another connection).
    Challenge {
        /// Server's protocol version.
        protocol: u16,
        /// Fresh random bytes.
        nonce: Bytes32,
    },
    /// Client to server: who I am, in the clear for the server's checks and logs, and the first
    /// Noise message, bound to these fields and the server's nonce.
    Hello {
        /// Client's protocol version.
        protocol: u16,
        /// Cluster name; a node of another cluster is refused.
        cluster: String,
        /// The calling node.
        node_id: NodeId,
        /// Noise `-> psk, e`: opens only with the cluster's pre-shared key.
        noise: Vec<u8>,
    },
    /// Server to client: accepted; the second Noise message, whose payload names the server.
    Welcome {
        /// Noise `<- e, ee`, carrying the answering node's id.
        noise: Vec<u8>,
    },
    /// Server to client: refused, with the reason; the server closes the connection.
    Refused {
        /// Why.
        reason: String,
    },
}

/// A call or its answer, tagged with the id that pairs them on a multiplexed connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Call id, unique per connection.
    pub id: u64,
    /// The message.
    pub body: T,
}
