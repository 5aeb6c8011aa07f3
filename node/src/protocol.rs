//! What nodes say to each other: every call and answer that crosses between nodes, in one
//! place, above the transport that carries them ([`rpc`](crate::rpc) knows them only as a
//! [`Call`] and its [`Answer`]).
//!
//! The node answers them (it is the transport's handler); routing, hand-off and the services
//! send them, and the shard layer's own peer protocol ([`PeerRequest`], [`PeerReply`]) travels
//! nested in them: [`RpcClient<Request>`] is the shard layer's [`Peers`]. Encoded by
//! [`codec`](crate::codec); [`PROTOCOL_VERSION`] travels in the transport's handshake.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use troupe_actors::integers::Sample;
use troupe_http::views::Located;

use crate::ids::{NodeId, ShardId};
use crate::rpc::{Answer, Call, Lane, RpcClient};
use crate::shard::query::{Query, QueryAnswer};
use crate::shard::{Command, Peer, PeerError, PeerReply, PeerRequest, Peers, Refusal};

/// Version of the message set below, and of the transport's bytes that carry it
/// ([`Call::PROTOCOL_VERSION`]); bumped on any incompatible change of either. 8: the shard
/// layer's peer requests and answers travel nested in [`Request::Shard`] and
/// [`Response::Shard`] (decision 028); and
/// [`Request::Report`] asks a member for its dashboard report (decision 026). 9: a command is
/// its state machine's number and its encoding, and its outcome is encoded by the machine
/// (decision 030).
pub const PROTOCOL_VERSION: u16 = 9;

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
    /// Execute a command at the shard's owner (answered with [`Response::Outcome`]).
    Command {
        /// The shard.
        shard: ShardId,
        /// The command: which service's state machine decides it, and its encoding.
        command: Command,
        /// How long the caller waits for the answer, in milliseconds. A command still queued
        /// at the owner after that is dropped undecided: run later, it would change state
        /// after its caller was told the outcome is unknown.
        wait_ms: u32,
    },
    /// Read from the shard's owner, or from a replica when `allow_replica` (answered with
    /// [`Response::Answer`]).
    Read {
        /// The shard.
        shard: ShardId,
        /// The read.
        query: Query,
        /// Whether a replica may answer (the caller could not reach the owner).
        allow_replica: bool,
    },
    /// An integer for the aggregator, which runs on the owner of its shard.
    Integer(Sample),
    /// The shard layer's peer protocol: one holder of a shard to another, or a lease check
    /// (answered with [`Response::Shard`] or a refusal).
    Shard(PeerRequest),
    /// The receiver's own dashboard report (the node's `dashboard` module), answered with
    /// [`Response::Report`]; from any member.
    Report,
}

impl Request {
    /// The shard a shard-layer request is about.
    pub fn shard(&self) -> Option<ShardId> {
        match self {
            Self::Ping | Self::Locate { .. } | Self::Integer(_) | Self::Report => None,
            Self::Command { shard, .. } | Self::Read { shard, .. } => Some(*shard),
            Self::Shard(request) => request.shard(),
        }
    }
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
    /// Answer to [`Request::Command`]: the outcome, encoded by the command's state machine
    /// (the service that sent the command decodes it).
    Outcome(#[serde(with = "crate::codec::bytes")] Vec<u8>),
    /// Answer to [`Request::Read`].
    Answer(QueryAnswer),
    /// The request was not executed (the shard is being taken over, too few copies are live,
    /// or this node does not see a majority); the caller may retry it, here or elsewhere.
    Moving {
        /// Why.
        message: String,
    },
    /// The owner tried and could not acknowledge (a replica did not confirm): the change may
    /// or may not take effect later, so the caller must not retry blindly.
    Unavailable {
        /// Why.
        message: String,
    },
    /// The receiver could not handle the call.
    Failed {
        /// Why.
        message: String,
    },
    /// Answer to [`Request::Command`]: the command's change is larger than one shard entry may
    /// be ([`RpcConfig::max_entry_bytes`](crate::config::RpcConfig::max_entry_bytes)), so it
    /// was refused before anything was written. Retrying cannot help.
    TooLarge {
        /// Why, for the client.
        message: String,
    },
    /// Answer to [`Request::Command`]: the owner's storage is too full to take new data
    /// (`storage.writes_percent`), so the command was refused before anything was written.
    /// Deletions are still taken.
    StorageFull {
        /// Why, for the client.
        message: String,
    },
    /// Answer to [`Request::Integer`]: the aggregator that took the integer, by incarnation
    /// (a new one each time an aggregator starts, also on a node that restarted under the same
    /// name), so generators know when to send it what they still hold.
    Taken {
        /// The aggregator's incarnation.
        aggregator: u64,
    },
    /// Answer to [`Request::Shard`] when the receiver carried it out (a refusal travels as
    /// the variant of its kind above).
    Shard(PeerReply),
    /// Answer to [`Request::Report`]: the node's `troupe_http::views::NodeReport` as JSON, so
    /// the dashboard's report can change without changing this protocol.
    Report(String),
}

impl Response {
    /// A write whose outcome is unknown: it reached an owner that may have applied it (or may
    /// still), so the caller must not retry it blindly and is told so in words. Every path
    /// that gives up on a write after it left the edge answers through here.
    pub fn possibly_applied(why: impl std::fmt::Display) -> Self {
        Refusal::possibly_applied(why).into()
    }
}

/// Each refusal travels as the answer of its kind, which routing reads the same whether the
/// shard layer or the node refused.
impl From<Refusal> for Response {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotOwner { owner } => Self::NotOwner { owner },
            Refusal::Moving { message } => Self::Moving { message },
            Refusal::Unavailable { message } => Self::Unavailable { message },
            Refusal::Failed { message } => Self::Failed { message },
            Refusal::TooLarge { message } => Self::TooLarge { message },
        }
    }
}

/// The shard layer reaches its peers over the node's RPC client, with its peer requests
/// nested in [`Request::Shard`].
#[async_trait]
impl Peers for RpcClient<Request> {
    async fn call(
        &self,
        peer: &Peer,
        request: PeerRequest,
        deadline: Option<Duration>,
    ) -> Result<PeerReply, PeerError> {
        let request = Request::Shard(request);
        let answer = match deadline {
            Some(deadline) => {
                self.call_with_timeout(&peer.node_id, &peer.rpc_addr, request, deadline)
                    .await
            }
            None => RpcClient::call(self, &peer.node_id, &peer.rpc_addr, request).await,
        };
        peer_answer(answer.map_err(|error| PeerError::Unreachable(error.to_string()))?)
    }
}

/// A peer's answer to a [`Request::Shard`] as the shard layer sees it: its reply, or its
/// refusal (the inverse of `From<Refusal>`).
fn peer_answer(response: Response) -> Result<PeerReply, PeerError> {
    let refusal = match response {
        Response::Shard(reply) => return Ok(reply),
        Response::NotOwner { owner } => Refusal::NotOwner { owner },
        Response::Moving { message } => Refusal::Moving { message },
        Response::Unavailable { message } => Refusal::Unavailable { message },
        Response::Failed { message } => Refusal::Failed { message },
        Response::TooLarge { message } => Refusal::TooLarge { message },
        other => return Err(PeerError::Unexpected(format!("{other:?}"))),
    };
    Err(PeerError::Refused(refusal))
}

impl Call for Request {
    type Answer = Response;
    const PROTOCOL_VERSION: u16 = PROTOCOL_VERSION;

    fn ping() -> Self {
        Self::Ping
    }

    /// Lease checks keep a node's lease, which is renewed by round trips (`shard::lease`): they
    /// must not wait behind a busy peer's data calls. Pings probe the connection they travel on.
    fn lane(&self) -> Lane {
        match self {
            Self::Shard(PeerRequest::LeaseCheck) | Self::Ping => Lane::Control,
            _ => Lane::Data,
        }
    }
}

impl Answer for Response {
    fn failed(message: String) -> Self {
        Self::Failed { message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_reaches_the_calling_shard_layer_as_the_same_refusal() {
        let message = || "why".to_owned();
        for refusal in [
            Refusal::NotOwner {
                owner: Some(NodeId::new("n2")),
            },
            Refusal::Moving { message: message() },
            Refusal::Unavailable { message: message() },
            Refusal::Failed { message: message() },
            Refusal::TooLarge { message: message() },
        ] {
            let answer = peer_answer(Response::from(refusal.clone()));
            assert_eq!(answer, Err(PeerError::Refused(refusal)));
        }
        assert_eq!(
            peer_answer(Response::Shard(PeerReply::Done)),
            Ok(PeerReply::Done)
        );
        assert!(matches!(
            peer_answer(Response::Taken { aggregator: 1 }),
            Err(PeerError::Unexpected(_))
        ));
    }

    #[test]
    fn lease_checks_and_pings_travel_on_the_control_lane_and_other_calls_on_the_data_lane() {
        assert_eq!(Request::Ping.lane(), Lane::Control);
        assert_eq!(
            Request::Shard(PeerRequest::LeaseCheck).lane(),
            Lane::Control
        );
        let drop = PeerRequest::Drop {
            shard: ShardId(1),
            epoch: crate::shard::Epoch {
                term: 1,
                owner: NodeId::new("n1"),
            },
        };
        assert_eq!(Request::Shard(drop).lane(), Lane::Data);
    }
}
