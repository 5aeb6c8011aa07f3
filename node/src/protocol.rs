//! What nodes say to each other: every call and answer that crosses between nodes, in one
//! place, above the transport that carries them ([`rpc`](crate::rpc) knows them only as a
//! [`Call`] and its [`Answer`]).
//!
//! The node answers them (it is the transport's handler); routing, the shard layer, pre-copy,
//! hand-off and the services send them. Encoded by [`codec`](crate::codec);
//! [`PROTOCOL_VERSION`] travels in the transport's handshake.

use serde::{Deserialize, Serialize};
use troupe_http::views::Located;

use crate::ids::{NodeId, ShardId};
use crate::rpc::{Answer, Call, Lane};
use crate::services::integers::Sample;
use crate::shard::command::{Command, Outcome, Query, QueryAnswer};
use crate::shard::store::Item;
use crate::shard::{Entry, Epoch, Peer, Position, ShardMeta};

/// Version of the message set below, and of the transport's bytes that carry it
/// ([`Call::PROTOCOL_VERSION`]); bumped on any incompatible change of either.
pub const PROTOCOL_VERSION: u16 = 8;

/// What one node asks another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Liveness probe of the connection.
    Ping,
    /// Does the receiver hear the caller's gossip? The round trip itself is the other half of
    /// the answer: together they renew the caller's owner lease (`shard::lease`). The caller is
    /// the node the connection authenticated, so no node can ask on another's behalf.
    LeaseCheck,
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
        /// The command.
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
    /// Owner to holder: follow `epoch` from now on; answered with [`Response::Sealed`].
    Seal {
        /// The shard.
        shard: ShardId,
        /// The owner's new epoch.
        epoch: Epoch,
    },
    /// Owner to replica: apply `entry`, which follows `prev`.
    Replicate {
        /// The shard.
        shard: ShardId,
        /// The owner's epoch.
        epoch: Epoch,
        /// Where the replica's history must end for `entry` to follow it.
        prev: Position,
        /// The change.
        entry: Entry,
    },
    /// Owner to replica: catch up from `source` (normally the owner itself) and follow `epoch`.
    CatchUp {
        /// The shard.
        shard: ShardId,
        /// The owner's epoch.
        epoch: Epoch,
        /// Whom to copy from.
        source: Peer,
        /// Whether the receiver is a replica of the shard, whose copy the owner keeps current
        /// and which may answer reads in its place. A pre-copy to a joining node is not: the
        /// owner does not send it its writes.
        replica: bool,
    },
    /// Joining node to a shard's current owner: copy the shard to `to` now (the owner pushes a
    /// [`Request::CatchUp`] with `replica: false`), so that the joining node holds it before
    /// placement makes it an owner or replica (`crate::precopy`).
    PreCopy {
        /// The shard.
        shard: ShardId,
        /// The joining node.
        to: Peer,
    },
    /// Holder to holder during a catch-up: the entries after `from`, or that a snapshot is
    /// needed ([`Response::Entries`] or [`Response::NeedSnapshot`]).
    EntriesAfter {
        /// The shard.
        shard: ShardId,
        /// Where the caller's history ends.
        from: Position,
    },
    /// Holder to holder during a snapshot transfer: entities after `after`.
    SnapshotPage {
        /// The shard.
        shard: ShardId,
        /// Exclusive start (an [`Item::key`]).
        after: Option<Vec<u8>>,
    },
    /// An integer for the aggregator, which runs on the owner of its shard.
    Integer(Sample),
    /// Owner to a former holder: delete your copy (you are not in the replica set).
    Drop {
        /// The shard.
        shard: ShardId,
        /// The owner's epoch.
        epoch: Epoch,
    },
    /// The receiver's own dashboard report (`crate::dashboard`), answered with
    /// [`Response::Report`]; from any member.
    Report,
}

impl Request {
    /// The shard a shard-layer request is about.
    pub fn shard(&self) -> Option<ShardId> {
        match self {
            Self::Ping
            | Self::LeaseCheck
            | Self::Locate { .. }
            | Self::Integer(_)
            | Self::Report => None,
            Self::Command { shard, .. }
            | Self::Read { shard, .. }
            | Self::Seal { shard, .. }
            | Self::Replicate { shard, .. }
            | Self::CatchUp { shard, .. }
            | Self::PreCopy { shard, .. }
            | Self::EntriesAfter { shard, .. }
            | Self::SnapshotPage { shard, .. }
            | Self::Drop { shard, .. } => Some(*shard),
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
    /// Answer to [`Request::LeaseCheck`].
    LeaseAnswer {
        /// Whether the receiver heard the asker's gossip heartbeat within the lease.
        hears_you: bool,
    },
    /// Answer to [`Request::Locate`], filled in by the owner.
    Located(Located),
    /// The receiver does not own the key (its view of placement differs); the caller should
    /// wait for membership to settle and try the current owner.
    NotOwner {
        /// Who the receiver thinks owns it.
        owner: Option<NodeId>,
    },
    /// Answer to [`Request::Command`].
    Outcome(Outcome),
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
    /// Answer to [`Request::Seal`]: the holder's bookkeeping after adopting the epoch.
    Sealed(ShardMeta),
    /// The holder follows a newer epoch: the caller is no longer the owner.
    Fenced(Epoch),
    /// The entry does not follow the holder's history, which ends here.
    Behind(Position),
    /// Done ([`Request::Replicate`], [`Request::CatchUp`], [`Request::PreCopy`], [`Request::Drop`]).
    Done,
    /// Answer to [`Request::EntriesAfter`].
    Entries {
        /// The missing entries (empty when already caught up), in order.
        entries: Vec<Entry>,
    },
    /// Answer to [`Request::EntriesAfter`] when the log does not reach back far enough.
    NeedSnapshot,
    /// Answer to [`Request::SnapshotPage`].
    Page {
        /// Entities in key order; fewer than asked (or none) at the end.
        items: Vec<Item>,
        /// Where the source's history ends (the snapshot's position).
        position: Position,
        /// Whether this is the last page.
        last: bool,
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
    /// Answer to [`Request::Report`]: the node's `troupe_http::views::NodeReport` as JSON, so
    /// the dashboard's report can change without changing this protocol.
    Report(String),
}

impl Response {
    /// A write whose outcome is unknown: it reached an owner that may have applied it (or may
    /// still), so the caller must not retry it blindly and is told so in words. Every path
    /// that gives up on a write after it left the edge answers through here.
    pub fn possibly_applied(why: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            message: format!("{why}; the change may or may not take effect"),
        }
    }
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
            Self::LeaseCheck | Self::Ping => Lane::Control,
            _ => Lane::Data,
        }
    }
}

impl Answer for Response {
    fn failed(message: String) -> Self {
        Self::Failed { message }
    }
}
