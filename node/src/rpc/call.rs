//! What the transport needs to know of the messages it carries, and nothing more.
//!
//! The transport moves calls and answers between authenticated nodes; what they say is the
//! business of the layer above (the node's `protocol` module), which implements [`Call`] and
//! [`Answer`] for its own types. The client and the server are generic over them, so the
//! transport imports nothing of the shard layer or the services, and a call costs no boxing or
//! dynamic dispatch for being generic (decision 024).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Which of a peer's connections a call travels on. Control calls have their own connection,
/// so that data calls can neither delay them nor take them down with a dead data connection
/// (see [`client`](super::client)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Small, frequent calls that must not wait behind data (lease checks, pings).
    Control,
    /// Everything else.
    Data,
}

impl Lane {
    /// The lane's name, for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Control => "control",
            Lane::Data => "data",
        }
    }
}

/// Told of every call a client makes, when it ends: how the layer above measures calls (the
/// node's per-peer latency metric) without the transport knowing what it measures into.
pub trait CallObserver: Send + Sync + 'static {
    /// Where the calls to `peer` on `lane` are told of. The client asks once per peer, address
    /// and lane and keeps the answer, so that a call costs no lookup of the peer's labels.
    fn calls_to(&self, peer: &crate::ids::NodeId, lane: Lane) -> CallsTo;
}

/// Told of each call to one peer on one lane, when it ends: after how long, and whether it
/// was answered (`true`) or failed.
pub type CallsTo = std::sync::Arc<dyn Fn(std::time::Duration, bool) + Send + Sync>;

/// A request one node sends another. Encoded and decoded by [`codec`](crate::codec), within
/// its message limit ([`Limit::Message`](crate::codec::Limit::Message)) and the frame bound
/// (`rpc.max_frame_bytes`).
pub trait Call: Serialize + DeserializeOwned + Send + 'static {
    /// What the peer answers.
    type Answer: Answer;

    /// Version of the message set, exchanged in the handshake so that builds that would
    /// misread each other's calls refuse each other up front. It also covers the transport's
    /// own bytes (handshake, envelope, frames, sessions): change either, bump it.
    const PROTOCOL_VERSION: u16;

    /// The call that probes a connection suspected dead: any answer at all shows it alive, so
    /// it should be cheap for the peer to answer.
    fn ping() -> Self;

    /// The connection this call travels on.
    fn lane(&self) -> Lane;
}

/// An answer to a [`Call`].
pub trait Answer: Serialize + DeserializeOwned + Send + 'static {
    /// The answer the server sends in place of one it cannot send (larger than a frame may
    /// be), saying why: the caller gets a failure instead of waiting for its deadline, and the
    /// connection, shared with other calls, stays up.
    fn failed(message: String) -> Self;
}
