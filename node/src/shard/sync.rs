//! Bringing this node's copy of a shard up to a source holder's: the missing log entries when
//! the source's log reaches back to where this copy ends, otherwise a snapshot of the source's
//! entities, page by page.
//!
//! The source must not change meanwhile. It does not: the source is either the owner, which
//! waits for this catch-up inside its actor (so no command runs), or a former holder the new
//! owner is pulling from while it seals the shard (sealed holders refuse the old owner). Should
//! the owner give up waiting and write again while a snapshot is still being taken, the
//! snapshot fails instead of mixing two states: every page must report the same position.

use std::time::Duration;

use super::peer::{self, PeerError, PeerReply, PeerRequest, Peers};
use super::store::Item;
use super::{Epoch, Peer, Position, ShardStore, StoreError};
use crate::ids::ShardId;

/// Entities per snapshot page.
pub const SNAPSHOT_PAGE: usize = 512;
/// Deadline of one catch-up or snapshot call.
pub const SYNC_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a catch-up failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The local store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The source could not be reached or answered something unexpected.
    #[error("catching up from {source_node}: {message}")]
    Source {
        /// The source.
        source_node: String,
        /// What went wrong.
        message: String,
    },
}

/// Pulls from `source` until this node's copy of `shard` matches it, following `epoch`.
pub async fn catch_up(
    store: &ShardStore,
    peers: &dyn Peers,
    shard: ShardId,
    epoch: &Epoch,
    source: &Peer,
) -> Result<(), SyncError> {
    loop {
        let meta = store.meta(shard)?;
        if meta.installing {
            return install_snapshot(store, peers, shard, epoch, source).await;
        }
        let request = PeerRequest::EntriesAfter {
            shard,
            from: meta.position.clone(),
        };
        match call(peers, source, request).await? {
            PeerReply::Entries { entries } if entries.is_empty() => return Ok(()),
            PeerReply::Entries { entries } => {
                let mut prev = meta.position;
                for entry in entries {
                    let next = Position {
                        last_epoch: Some(entry.epoch.clone()),
                        applied: entry.seq,
                    };
                    store.append(shard, epoch.clone(), prev, entry).await?;
                    prev = next;
                }
            }
            PeerReply::NeedSnapshot => {
                return install_snapshot(store, peers, shard, epoch, source).await
            }
            other => return Err(unexpected(source, &other)),
        }
    }
}

async fn install_snapshot(
    store: &ShardStore,
    peers: &dyn Peers,
    shard: ShardId,
    epoch: &Epoch,
    source: &Peer,
) -> Result<(), SyncError> {
    tracing::info!(%shard, source = %source.node_id, "installing a snapshot");
    store.begin_snapshot(shard, epoch.clone()).await?;
    let mut after: Option<Vec<u8>> = None;
    let mut started_at = SamePosition::default();
    loop {
        let request = PeerRequest::SnapshotPage {
            shard,
            after: after.clone(),
        };
        let (items, position, last) = match call(peers, source, request).await? {
            PeerReply::Page {
                items,
                position,
                last,
            } => (items, position, last),
            other => return Err(unexpected(source, &other)),
        };
        if !started_at.holds(&position) {
            // The copy stays marked as installing, so it is never taken for a whole one.
            return Err(SyncError::Source {
                source_node: source.node_id.to_string(),
                message: format!("shard {shard} changed during the snapshot"),
            });
        }
        after = items.last().map(|item: &Item| item.key.clone());
        store.put_snapshot_page(shard, epoch.clone(), items).await?;
        if last {
            store
                .finish_snapshot(shard, epoch.clone(), position)
                .await?;
            return Ok(());
        }
    }
}

/// Where the source's history ended at a snapshot's first page. Every page must say the same,
/// or the source changed while it was copied and the pages do not add up to one state.
#[derive(Debug, Default)]
struct SamePosition(Option<Position>);

impl SamePosition {
    /// Whether `position`, reported by the next page, is the first page's.
    fn holds(&mut self, position: &Position) -> bool {
        self.0.get_or_insert_with(|| position.clone()) == position
    }
}

async fn call(
    peers: &dyn Peers,
    source: &Peer,
    request: PeerRequest,
) -> Result<PeerReply, SyncError> {
    peers
        .call(source, request, Some(SYNC_CALL_TIMEOUT))
        .await
        .map_err(|e: PeerError| SyncError::Source {
            source_node: source.node_id.to_string(),
            message: e.to_string(),
        })
}

fn unexpected(source: &Peer, answer: &PeerReply) -> SyncError {
    SyncError::Source {
        source_node: source.node_id.to_string(),
        message: peer::unexpected(answer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    fn at(applied: u64) -> Position {
        Position {
            last_epoch: Some(Epoch {
                term: 1,
                owner: NodeId::new("a"),
            }),
            applied,
        }
    }

    #[test]
    fn a_snapshot_whose_source_moved_on_between_pages_is_refused() {
        let mut pages = SamePosition::default();
        assert!(pages.holds(&at(7)), "the first page sets the position");
        assert!(pages.holds(&at(7)), "later pages at the same position pass");
        assert!(!pages.holds(&at(8)), "a page after a write is refused");
    }
}
