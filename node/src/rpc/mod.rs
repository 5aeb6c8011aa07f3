//! Inter-node request/response: one path for production and simulation, generic over what it
//! carries.
//!
//! The transport knows calls and answers only as a [`Call`] and its [`Answer`] ([`call`]): the
//! messages themselves are defined above it (the node's `protocol` module), so this module
//! imports nothing of the layers that use it (decision 024). Length-prefixed, bounded frames
//! ([`frame`]) carry [`codec`](crate::codec)-encoded [`wire`] envelopes over any
//! [`Stream`](crate::net::Stream). A connection starts with a Noise handshake proving both ends
//! know the cluster secret and deriving fresh session keys ([`auth`]); every frame after it is
//! encrypted and authenticated ([`session`]). The client multiplexes calls with ids and
//! per-call deadlines ([`client`]) and the server answers each call on its own task
//! ([`server`]). See `docs/decisions/001-inter-node-transport.md` for why this and not
//! ractor_cluster.

pub mod auth;
pub mod call;
pub mod client;
pub mod frame;
pub mod refusals;
pub mod server;
pub mod session;
pub mod wire;

pub use call::{Answer, Call, CallObserver, CallsTo, Lane};
pub use client::RpcClient;
pub use server::{serve, Handler, ServerLimits};

use crate::codec::CodecError;
use crate::config::HostPort;
use crate::ids::NodeId;

/// Why an inter-node call failed. The router treats every variant as "try again elsewhere or
/// later"; none of them means the remote operation is known not to have happened.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Dialing or talking to the peer failed.
    #[error("connection to {addr} failed: {source}")]
    Io {
        /// Peer address.
        addr: HostPort,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The call did not complete before its deadline.
    #[error("call to {addr} timed out")]
    Timeout {
        /// Peer address.
        addr: HostPort,
        /// Whether the request had been handed to the connection (the peer may have acted on it).
        sent: bool,
    },
    /// The connection dropped while the call was in flight.
    #[error("connection to {addr} closed while the call was in flight")]
    ConnectionLost {
        /// Peer address.
        addr: HostPort,
        /// Whether the request had been handed to the connection (the peer may have acted on it).
        sent: bool,
    },
    /// The peer refused our credentials or proved none of its own.
    #[error("authentication with {addr} failed: {reason}")]
    Auth {
        /// Peer address.
        addr: HostPort,
        /// What went wrong.
        reason: String,
    },
    /// A different node answers at the address we expected `expected` at (it restarted elsewhere
    /// or the port was reused).
    #[error("expected node {expected} at {addr} but {found} answered")]
    WrongPeer {
        /// Address dialed.
        addr: HostPort,
        /// Node we meant to reach.
        expected: NodeId,
        /// Node that answered.
        found: NodeId,
    },
    /// The request is larger than a frame may be (`rpc.max_frame_bytes`). It was not sent:
    /// the connection, shared with other calls, stays up.
    #[error("request of {bytes} bytes to {addr} exceeds the frame limit of {max} bytes (rpc.max_frame_bytes)")]
    TooLarge {
        /// Peer address.
        addr: HostPort,
        /// Encoded size of the request.
        bytes: usize,
        /// The frame limit.
        max: u32,
    },
    /// A frame could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

impl RpcError {
    /// Whether the peer may have received the request, and acted on it, although no answer
    /// came: such a call must not be repeated blindly when it changes state.
    pub fn may_have_been_delivered(&self) -> bool {
        matches!(
            self,
            RpcError::Timeout { sent: true, .. } | RpcError::ConnectionLost { sent: true, .. }
        )
    }
}

#[cfg(test)]
mod tests;
