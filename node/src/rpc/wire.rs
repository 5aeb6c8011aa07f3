//! Every message that crosses between nodes, in one place.
//!
//! Encoded by [`codec`](crate::codec) (which prefixes a format version byte); the handshake also
//! carries [`PROTOCOL_VERSION`] so incompatible builds refuse each other up front with a clear
//! reason instead of misreading frames.

use serde::{Deserialize, Serialize};
use troupe_http::views::Located;

use crate::ids::NodeId;

/// Version of the message set below; bumped on any incompatible change.
pub const PROTOCOL_VERSION: u16 = 1;

/// Random challenge size in bytes.
pub const NONCE_LEN: usize = 32;

/// A 32-byte value (nonce or HMAC-SHA256 proof).
pub type Bytes32 = [u8; NONCE_LEN];

/// Connection set-up, before any call. The server speaks first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Handshake {
    /// Server to client: prove you know the secret, bound to this fresh nonce.
    Challenge {
        /// Server's protocol version.
        protocol: u16,
        /// Fresh random bytes.
        nonce: Bytes32,
    },
    /// Client to server: who I am, my proof, and a nonce for the server's proof.
    Hello {
        /// Client's protocol version.
        protocol: u16,
        /// Cluster name; a node of another cluster is refused.
        cluster: String,
        /// The calling node.
        node_id: NodeId,
        /// Fresh random bytes the server must prove against.
        nonce: Bytes32,
        /// HMAC of the server's nonce and this hello under the cluster secret.
        proof: Bytes32,
    },
    /// Server to client: accepted, and here is the server's own proof.
    Welcome {
        /// The answering node (the client checks it is the node it meant to reach).
        node_id: NodeId,
        /// HMAC of the client's nonce under the cluster secret.
        proof: Bytes32,
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

/// What one node asks another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Liveness probe of the connection.
    Ping,
    /// Where does this key live? Answered by the node that owns it.
    Locate {
        /// Entity kind (user, session, ...).
        kind: String,
        /// Entity key.
        key: String,
    },
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Ping`].
    Pong {
        /// The answering node.
        node_id: NodeId,
    },
    /// Answer to [`Request::Locate`], filled in by the owner.
    Located(Located),
    /// The receiver does not own the key (its view of placement differs); the caller should
    /// wait for membership to settle and try the current owner.
    NotOwner {
        /// Who the receiver thinks owns it.
        owner: Option<NodeId>,
    },
    /// The receiver could not handle the call.
    Failed {
        /// Why.
        message: String,
    },
}
