//! What any holder of a shard answers: the owner's seal, replicate, catch-up and drop requests,
//! another holder's catch-up reads, and reads in the owner's place.

use super::audit;
use super::host::{PreCopy, Shards};
use super::peer::PeerReply;
use super::query::{Query, QueryAnswer};
use super::refusal::Refusal;
use super::store::Item;
use super::sync::{self, SNAPSHOT_PAGE};
use super::{Entry, Epoch, Peer, Position, StoreError};
use crate::ids::{NodeId, ShardId};

/// Why a copy may not answer a read now.
enum ReadRefusal {
    /// The owner is replicating a change to what was asked.
    Replicating,
    /// This copy neither serves the shard nor may answer in its owner's place; placement names
    /// this owner.
    NotOwner(Option<NodeId>),
    /// This node has not heard from a majority within its lease.
    NoMajority,
}

impl ReadRefusal {
    /// The answer to the reader of `shard`.
    fn answer(self, shard: ShardId) -> Refusal {
        match self {
            Self::Replicating => Refusal::Moving {
                message: format!("shard {shard}: a change to what was asked is being replicated"),
            },
            Self::NotOwner(owner) => Refusal::NotOwner { owner },
            Self::NoMajority => Refusal::Unavailable {
                message: "this node has not heard from a majority of the cluster recently".into(),
            },
        }
    }
}

impl Shards {
    /// Answers a read: as the serving owner, or as an up-to-date replica when the caller could
    /// not reach the owner (`allow_replica`). Either way only while it has heard from a majority
    /// within its lease, so a node cut off from the cluster stops answering before the other
    /// side can have replaced it and acknowledged newer values (decision 007).
    ///
    /// A read of one key runs in place; a count or scan runs off the async workers
    /// ([`super::scans`]), and is checked again once read, so an answer is only given if this
    /// copy could still answer when the read ended.
    pub async fn read(
        &self,
        shard: ShardId,
        query: &Query,
        allow_replica: bool,
    ) -> Result<QueryAnswer, Refusal> {
        let mut epoch = self
            .may_read(shard, query, allow_replica)
            .map_err(|refusal| refusal.answer(shard))?;
        let answer = if matches!(query, Query::Get { .. }) {
            query.answer(&self.inner.store, shard)
        } else {
            let (store, query) = (self.inner.store.clone(), query.clone());
            match self
                .inner
                .scans
                .run(move || query.answer(&store, shard))
                .await
            {
                Ok(answer) => answer,
                Err(error) => {
                    return Err(Refusal::Failed {
                        message: error.to_string(),
                    })
                }
            }
        };
        if !matches!(query, Query::Get { .. }) {
            epoch = self
                .may_read(shard, query, allow_replica)
                .map_err(|refusal| refusal.answer(shard))?;
        }
        match answer {
            Ok(answer) => {
                audit::report(audit::Observation::Read {
                    shard,
                    epoch: &epoch,
                });
                Ok(answer)
            }
            Err(error) => Err(failed(error)),
        }
    }

    /// The epoch this copy may answer `query` under now (the one its owner serves, or the one
    /// whose owner brought this replica up to date), or why it may not answer.
    fn may_read(
        &self,
        shard: ShardId,
        query: &Query,
        allow_replica: bool,
    ) -> Result<Epoch, ReadRefusal> {
        let topology = self.topology();
        let me = &self.inner.me;
        let local = self.local_shard(shard);
        let answers_under = if topology.owns(me, shard) {
            if local
                .unconfirmed
                .as_ref()
                .is_some_and(|changed| changed.iter().any(|(t, k)| query.touches(*t, k)))
            {
                return Err(ReadRefusal::Replicating);
            }
            let serves = local.serving.is_some();
            let follows = serves && self.still_follows(shard, local.serving.as_ref());
            if serves && !follows {
                // The store follows another epoch without the owner actor having been told
                // (a path that skipped `yield_to`): let it step down and take the shard back.
                self.owner_fenced(shard);
            }
            local.serving.filter(|_| follows)
        } else {
            let synced = allow_replica
                && local.synced.is_some()
                && self.still_follows(shard, local.synced.as_ref())
                && topology.table.replicas(shard).contains(me)
                && self.follows_owner(shard, &topology);
            local.synced.filter(|_| synced)
        };
        let Some(epoch) = answers_under else {
            return Err(ReadRefusal::NotOwner(topology.table.owner(shard).cloned()));
        };
        if !self.fresh_majority(&topology) {
            return Err(ReadRefusal::NoMajority);
        }
        Ok(epoch)
    }

    /// Whether this copy follows an epoch of the owner placement names now (a copy that
    /// follows an older owner may miss what the new one acknowledged), and is whole (not in the
    /// middle of a snapshot install).
    fn follows_owner(&self, shard: ShardId, topology: &crate::topology::Topology) -> bool {
        matches!(self.inner.store.meta(shard), Ok(meta)
            if !meta.installing
                && meta.epoch.as_ref().is_some_and(|e| topology.table.owner(shard) == Some(&e.owner)))
    }

    /// Whether the store still follows the epoch this node serves (a newer owner may have
    /// sealed it since).
    fn still_follows(&self, shard: ShardId, serving: Option<&Epoch>) -> bool {
        matches!(self.inner.store.meta(shard), Ok(meta) if meta.epoch.as_ref() == serving)
    }

    /// A request from the owner of `epoch`, which the store is about to follow: if this node
    /// still serves the shard at an older epoch, that ownership is over, so its owner actor
    /// stops first (and takes the shard back later only if placement still says so). Every
    /// request that makes the store follow a newer epoch goes through here, not only seals:
    /// a replicate, catch-up or drop can be the first this node hears of the new owner.
    async fn yield_to(&self, shard: ShardId, epoch: &Epoch) {
        if let Some(serving) = self.local_shard(shard).serving {
            if serving < *epoch {
                tracing::info!(%shard, %serving, newer = %epoch, "a newer owner took the shard");
                self.release(shard).await;
            }
        }
    }

    /// A new owner's seal: follow its epoch from now on, and report this copy's position.
    pub async fn seal(&self, shard: ShardId, epoch: Epoch) -> Result<PeerReply, Refusal> {
        self.yield_to(shard, &epoch).await;
        match self.inner.store.seal(shard, epoch).await {
            Ok(meta) => {
                // Until the new owner has brought this copy up to date, it may be stale.
                self.update_local(shard, |l| l.synced = None);
                Ok(PeerReply::Sealed(meta))
            }
            Err(error) => store_answer(error),
        }
    }

    /// The owner's change: applied if it follows this copy's history.
    pub async fn replicate(
        &self,
        shard: ShardId,
        epoch: Epoch,
        prev: Position,
        entry: Entry,
    ) -> Result<PeerReply, Refusal> {
        self.yield_to(shard, &epoch).await;
        match self.inner.store.append(shard, epoch, prev, entry).await {
            Ok(()) => Ok(PeerReply::Done),
            Err(error) => store_answer(error),
        }
    }

    /// The owner's request to catch up from `source`. Meanwhile the copy is in flux (a
    /// snapshot install empties it first), so it answers no reads in the owner's place until
    /// the catch-up is complete, and only if it is a `replica` (a pre-copy is not kept current).
    pub async fn catch_up(
        &self,
        shard: ShardId,
        epoch: Epoch,
        source: Peer,
        replica: bool,
    ) -> Result<PeerReply, Refusal> {
        self.yield_to(shard, &epoch).await;
        let Some(_running) = CatchingUp::start(self, shard) else {
            return Err(Refusal::Unavailable {
                message: format!("shard {shard}: a catch-up is already running"),
            });
        };
        self.update_local(shard, |l| l.synced = None);
        let peers = self.inner.peers.as_ref();
        match sync::catch_up(&self.inner.store, peers, shard, &epoch, &source).await {
            Ok(()) => {
                tracing::debug!(%shard, %epoch, source = %source.node_id, replica, "caught up");
                self.update_local(shard, |l| {
                    if replica {
                        l.synced = Some(epoch.clone());
                    } else if l.pre_copy.is_some() {
                        l.pre_copy = Some(PreCopy::Copied);
                    }
                });
                Ok(PeerReply::Done)
            }
            Err(sync::SyncError::Store(error)) => store_answer(error),
            Err(error) => Err(Refusal::Unavailable {
                message: error.to_string(),
            }),
        }
    }

    /// Another holder catching up from this one: the entries it misses, or that it needs a
    /// snapshot. Entries are capped at a quarter of a frame so the answer always fits.
    pub fn entries_after(&self, shard: ShardId, from: &Position) -> Result<PeerReply, Refusal> {
        let max_bytes = self.inner.config.rpc.max_entry_bytes();
        match self.inner.store.entries_after(shard, from, max_bytes) {
            Ok(Some(entries)) => Ok(PeerReply::Entries { entries }),
            Ok(None) => Ok(PeerReply::NeedSnapshot),
            Err(error) => Err(failed(error)),
        }
    }

    /// One page of this holder's copy, for a snapshot transfer.
    pub fn snapshot_page(
        &self,
        shard: ShardId,
        after: Option<&[u8]>,
    ) -> Result<PeerReply, Refusal> {
        let store = &self.inner.store;
        let page = store
            .meta(shard)
            .and_then(|meta| Ok((meta, store.snapshot_page(shard, after, SNAPSHOT_PAGE)?)));
        match page {
            Ok((meta, items)) => {
                let found = items.len();
                let items = fit(items, self.inner.config.rpc.max_frame_bytes as usize / 2);
                Ok(PeerReply::Page {
                    // The end of the shard, unless the page was full or trimmed to fit.
                    last: found < SNAPSHOT_PAGE && items.len() == found,
                    items,
                    position: meta.position,
                })
            }
            Err(error) => Err(failed(error)),
        }
    }

    /// The owner says this node is not in the shard's replica set any more.
    pub async fn drop_copy(&self, shard: ShardId, epoch: Epoch) -> Result<PeerReply, Refusal> {
        let placed_here = self
            .topology()
            .table
            .replicas(shard)
            .contains(&self.inner.me);
        if placed_here || self.local_shard(shard).pre_copy.is_some() {
            // This node's view still places a copy here, or will once it is ready: keep it
            // until the views agree.
            return Ok(PeerReply::Done);
        }
        self.yield_to(shard, &epoch).await;
        self.update_local(shard, |l| l.synced = None);
        match self.inner.store.drop_shard(shard, epoch).await {
            Ok(()) => Ok(PeerReply::Done),
            Err(error) => store_answer(error),
        }
    }
}

/// Marks a copy as being caught up for as long as it lives.
struct CatchingUp<'a> {
    shards: &'a Shards,
    shard: ShardId,
}

impl<'a> CatchingUp<'a> {
    /// `None` if a catch-up of `shard` is already running here.
    fn start(shards: &'a Shards, shard: ShardId) -> Option<Self> {
        let mut started = false;
        shards.update_local(shard, |l| {
            started = !l.catching_up;
            l.catching_up = true;
        });
        started.then_some(Self { shards, shard })
    }
}

impl Drop for CatchingUp<'_> {
    fn drop(&mut self) {
        self.shards
            .update_local(self.shard, |l| l.catching_up = false);
    }
}

/// Trims a snapshot page to `max_bytes` (at least one item); the caller continues after the
/// last item it got.
fn fit(mut items: Vec<Item>, max_bytes: usize) -> Vec<Item> {
    let mut bytes = 0;
    let keep = items
        .iter()
        .position(|item| {
            bytes += item.key.len() + item.value.len();
            bytes > max_bytes
        })
        .map_or(items.len(), |i| i.max(1));
    items.truncate(keep);
    items
}

/// What a holder answers when its store refused a change: a fenced or behind copy is an answer
/// the owner acts on, anything else a failure.
fn store_answer(error: StoreError) -> Result<PeerReply, Refusal> {
    match error {
        StoreError::Fenced { current } => Ok(PeerReply::Fenced(current)),
        StoreError::OutOfOrder { position } => Ok(PeerReply::Behind(position)),
        other => Err(failed(other)),
    }
}

fn failed(error: StoreError) -> Refusal {
    tracing::warn!(%error, "shard storage failed");
    Refusal::Failed {
        message: error.to_string(),
    }
}
