//! The shard layer's peer protocol: what one holder of a shard asks another (seal, replicate,
//! catch-up, pre-copy, drop, the catch-up reads and the lease checks), what it answers, and
//! [`Peers`], the trait through which the shard layer reaches other nodes (decision 028).
//!
//! The shard layer defines these messages and the node carries them: its implementation of
//! [`Peers`] nests a [`PeerRequest`] in its own request type and sends it over RPC, and the
//! receiving node hands it to [`Shards::answer_peer`](super::host::Shards::answer_peer). So
//! nothing here knows the transport, and the transport knows nothing of shards.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::caller;
use super::host::Shards;
use super::refusal::Refusal;
use super::store::Item;
use super::{Entry, Epoch, Peer, Position, ShardMeta};
use crate::ids::{NodeId, ShardId};

/// What one node's shard layer asks another's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Does the receiver hear the caller's gossip? The round trip itself is the other half of
    /// the answer: together they renew the caller's owner lease ([`super::lease`]). The caller
    /// is the node the connection authenticated, so no node can ask on another's behalf.
    LeaseCheck,
    /// Owner to holder: follow `epoch` from now on; answered with [`PeerReply::Sealed`].
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
    /// [`PeerRequest::CatchUp`] with `replica: false`), so that the joining node holds it
    /// before placement makes it an owner or replica (the node's pre-copy on join, decision
    /// 010).
    PreCopy {
        /// The shard.
        shard: ShardId,
        /// The joining node.
        to: Peer,
    },
    /// Holder to holder during a catch-up: the entries after `from`, or that a snapshot is
    /// needed ([`PeerReply::Entries`] or [`PeerReply::NeedSnapshot`]).
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
    /// Owner to a former holder: delete your copy (you are not in the replica set).
    Drop {
        /// The shard.
        shard: ShardId,
        /// The owner's epoch.
        epoch: Epoch,
    },
}

impl PeerRequest {
    /// The shard the request is about (none for a lease check).
    pub fn shard(&self) -> Option<ShardId> {
        match self {
            Self::LeaseCheck => None,
            Self::Seal { shard, .. }
            | Self::Replicate { shard, .. }
            | Self::CatchUp { shard, .. }
            | Self::PreCopy { shard, .. }
            | Self::EntriesAfter { shard, .. }
            | Self::SnapshotPage { shard, .. }
            | Self::Drop { shard, .. } => Some(*shard),
        }
    }
}

/// The answer to a [`PeerRequest`] that was carried out. A request that was not is answered
/// with a [`Refusal`] instead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerReply {
    /// Answer to [`PeerRequest::LeaseCheck`].
    LeaseAnswer {
        /// Whether the receiver heard the asker's gossip heartbeat within the lease.
        hears_you: bool,
    },
    /// Answer to [`PeerRequest::Seal`]: the holder's bookkeeping after adopting the epoch.
    Sealed(ShardMeta),
    /// The holder follows a newer epoch: the caller is no longer the owner.
    Fenced(Epoch),
    /// The entry does not follow the holder's history, which ends here.
    Behind(Position),
    /// Done ([`PeerRequest::Replicate`], [`PeerRequest::CatchUp`], [`PeerRequest::PreCopy`],
    /// [`PeerRequest::Drop`]).
    Done,
    /// Answer to [`PeerRequest::EntriesAfter`].
    Entries {
        /// The missing entries (empty when already caught up), in order.
        entries: Vec<Entry>,
    },
    /// Answer to [`PeerRequest::EntriesAfter`] when the log does not reach back far enough.
    NeedSnapshot,
    /// Answer to [`PeerRequest::SnapshotPage`].
    Page {
        /// Entities in key order; fewer than asked (or none) at the end.
        items: Vec<Item>,
        /// Where the source's history ends (the snapshot's position).
        position: Position,
        /// Whether this is the last page.
        last: bool,
    },
}

/// Why a call to a peer brought no [`PeerReply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerError {
    /// The call did not complete: the peer could not be reached, the connection failed, or
    /// no answer came before the deadline. In the carrier's words.
    Unreachable(String),
    /// The peer answered that it did not carry the request out.
    Refused(Refusal),
    /// The peer answered with something that is no answer to a peer request.
    Unexpected(String),
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable(message)
            | Self::Refused(Refusal::Unavailable { message } | Refusal::Failed { message }) => {
                f.write_str(message)
            }
            Self::Refused(other) => write!(f, "unexpected answer {other:?}"),
            Self::Unexpected(answer) => write!(f, "unexpected answer {answer}"),
        }
    }
}

impl std::error::Error for PeerError {}

/// How the shard layer reaches other nodes. Implemented by the node over its inter-node RPC;
/// a trait object, so the shard layer is not generic over it (one allocation per peer call,
/// next to an encrypted network round trip; decision 028).
#[async_trait]
pub trait Peers: Send + Sync + 'static {
    /// Sends `request` to `peer` and waits for the answer, at most `deadline` (the carrier's
    /// own call deadline when `None`).
    async fn call(
        &self,
        peer: &Peer,
        request: PeerRequest,
        deadline: Option<Duration>,
    ) -> Result<PeerReply, PeerError>;
}

impl Shards {
    /// Answers `request` from node `from`, the sender the carrier authenticated: refused
    /// unless `from` may send it ([`caller`]) and it names a shard that exists.
    pub async fn answer_peer(
        &self,
        from: &NodeId,
        request: PeerRequest,
    ) -> Result<PeerReply, Refusal> {
        if let Err(message) = caller::check(from, &request) {
            tracing::warn!(peer = %from, shard = ?request.shard(), %message, "peer request refused");
            return Err(Refusal::Failed { message });
        }
        if let Some(shard) = request.shard() {
            if shard.0 as usize >= self.local().len() {
                return Err(Refusal::Failed {
                    message: "no such shard".into(),
                });
            }
        }
        match request {
            // About the authenticated caller, whoever the request might claim to be.
            PeerRequest::LeaseCheck => Ok(PeerReply::LeaseAnswer {
                hears_you: self.hears(from),
            }),
            PeerRequest::Seal { shard, epoch } => self.seal(shard, epoch).await,
            PeerRequest::Replicate {
                shard,
                epoch,
                prev,
                entry,
            } => self.replicate(shard, epoch, prev, entry).await,
            PeerRequest::CatchUp {
                shard,
                epoch,
                source,
                replica,
            } => self.catch_up(shard, epoch, source, replica).await,
            PeerRequest::PreCopy { shard, to } => {
                self.pre_copy(shard, to).await.map(|()| PeerReply::Done)
            }
            PeerRequest::EntriesAfter { shard, from } => self.entries_after(shard, &from),
            PeerRequest::SnapshotPage { shard, after } => {
                self.snapshot_page(shard, after.as_deref())
            }
            PeerRequest::Drop { shard, epoch } => self.drop_copy(shard, epoch).await,
        }
    }
}

/// Words for an answer the caller did not expect.
pub(crate) fn unexpected(reply: &PeerReply) -> String {
    format!("unexpected answer {reply:?}")
}
