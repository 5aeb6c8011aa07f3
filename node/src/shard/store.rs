//! A node's copy of its shards in LMDB.
//!
//! Three databases, keyed big-endian so LMDB's byte order is numeric order:
//! - `shard_entities`: `shard ‖ tenant ‖ key` → value;
//! - `shard_log`: `shard ‖ seq` → [`Entry`], the last [`LOG_KEEP`] entries of each shard, so a
//!   holder that missed a few changes catches up without a full copy;
//! - `shard_meta`: `shard` → [`ShardMeta`].
//!
//! Every change (an entry, a seal, a snapshot step) updates entities, log and meta in one
//! write, one record of the write-ahead log ([`crate::storage`]), so a crash never leaves a
//! shard half-applied: the position always describes the entities exactly, except during a
//! snapshot install, which is flagged and redone after a crash. Every read sees one
//! consistent [`View`] of the three tables.

use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

use super::audit;
use super::{Entry, Epoch, Position, ShardMeta, Tenant};
use crate::codec::{self, CodecError};
use crate::ids::ShardId;
use crate::storage::{Staged, Storage, StorageError, Table, View};

/// Log entries kept per shard while some copy may be behind; a holder further behind gets a
/// snapshot instead. While every copy is current, the owner's [`Entry::trim_before`] lets
/// holders keep only the last entry or two, because the log duplicates recent values and
/// space must stay near one copy per holder (20,000 users took 2.28× their JSON at
/// replication factor 2 with 32 entries a shard, under 2× with one; `scripts/space.sh`). Not
/// smaller: with 8, a node pre-copied before it joins (decision 010) fell more than 8 entries
/// behind under load and needed snapshots after joining (`migration.rs` failed).
pub const LOG_KEEP: u64 = 32;

/// Why a shard operation on the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// This holder follows a newer epoch: the caller's ownership is over.
    #[error("fenced: this holder follows epoch {current}")]
    Fenced {
        /// The epoch this holder follows.
        current: Epoch,
    },
    /// The entry does not continue this holder's history; it must catch up first.
    #[error("entry does not follow position {position:?}")]
    OutOfOrder {
        /// Where this holder's history ends.
        position: Position,
    },
    /// LMDB failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Stored bytes could not be read (a bug or a foreign file).
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// A shard's entity, as moved by snapshots: the tenant-and-key part of the stored key, and
/// the value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Tenant byte followed by the entity key.
    #[serde(with = "crate::codec::bytes")]
    pub key: Vec<u8>,
    /// The value.
    #[serde(with = "crate::codec::bytes")]
    pub value: Vec<u8>,
}

pub use crate::storage::KeyValue;

/// Count and hash of a shard's entities: equal digests on two holders mean equal contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// Number of entities, all tenants.
    pub count: u64,
    /// xxh3 over every key and value in order.
    pub hash: u64,
}

/// The shards held by this node; cheap to clone.
#[derive(Clone)]
pub struct ShardStore {
    storage: Storage,
    entities: Table,
    log: Table,
    meta: Table,
}

impl ShardStore {
    /// Whether storage runs inline (the simulation); see [`Storage::runs_inline`].
    pub fn runs_inline(&self) -> bool {
        self.storage.runs_inline()
    }

    /// Opens (creating) the shard databases. Blocking: call at start-up.
    pub fn open(storage: &Storage) -> Result<Self, StoreError> {
        Ok(Self {
            storage: storage.clone(),
            entities: storage.table("shard_entities")?,
            log: storage.table("shard_log")?,
            meta: storage.table("shard_meta")?,
        })
    }

    /// The shard's bookkeeping (default for a shard never held).
    pub fn meta(&self, shard: ShardId) -> Result<ShardMeta, StoreError> {
        self.read(|view| self.meta_in(view, shard))
    }

    /// One entity.
    pub fn get(
        &self,
        shard: ShardId,
        tenant: Tenant,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let full = entity_key(shard, tenant, key);
        self.read(|view| Ok(view.get(&self.entities, &full)?))
    }

    /// Number of entities of `tenant` in the shard.
    pub fn count(&self, shard: ShardId, tenant: Tenant) -> Result<u64, StoreError> {
        let prefix = tenant_prefix(shard, tenant);
        self.read(|view| {
            let mut count = 0;
            view.scan(&self.entities, &prefix, None, |_, _| {
                count += 1;
                ControlFlow::Continue(())
            })?;
            Ok(count)
        })
    }

    /// Up to `limit` entities of `tenant` in key order, starting after `after`; keys are
    /// returned without the shard and tenant prefix.
    pub fn scan(
        &self,
        shard: ShardId,
        tenant: Tenant,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let prefix = tenant_prefix(shard, tenant);
        let start = after.map(|key| entity_key(shard, tenant, key));
        self.read(|view| {
            let items = view.range(&self.entities, &prefix, start.as_deref(), limit)?;
            Ok(items
                .into_iter()
                .map(|(k, v)| (k[prefix.len()..].to_vec(), v))
                .collect())
        })
    }

    /// Up to `limit` entities of `tenant` whose keys start with `prefix`, in key order; keys
    /// are returned whole (with the prefix).
    pub fn scan_prefix(
        &self,
        shard: ShardId,
        tenant: Tenant,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let base = tenant_prefix(shard, tenant);
        let full = entity_key(shard, tenant, prefix);
        self.read(|view| {
            let items = view.range(&self.entities, &full, None, limit)?;
            Ok(items
                .into_iter()
                .map(|(k, v)| (k[base.len()..].to_vec(), v))
                .collect())
        })
    }

    /// Up to `limit` entities of any tenant after `after` (a key as in [`Item::key`]), for
    /// snapshot transfer.
    pub fn snapshot_page(
        &self,
        shard: ShardId,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let prefix = shard_prefix(shard);
        let start = after.map(|key| [&prefix[..], key].concat());
        self.read(|view| {
            let items = view.range(&self.entities, &prefix, start.as_deref(), limit)?;
            Ok(items
                .into_iter()
                .map(|(k, value)| Item {
                    key: k[prefix.len()..].to_vec(),
                    value,
                })
                .collect())
        })
    }

    /// Count and hash of the shard's entities.
    pub fn digest(&self, shard: ShardId) -> Result<Digest, StoreError> {
        let prefix = shard_prefix(shard);
        self.read(|view| {
            let mut hasher = xxhash_rust::xxh3::Xxh3::new();
            let mut count = 0;
            view.scan(&self.entities, &prefix, None, |key, value| {
                hasher.update(&(key.len() as u64).to_be_bytes());
                hasher.update(key);
                hasher.update(&(value.len() as u64).to_be_bytes());
                hasher.update(value);
                count += 1;
                ControlFlow::Continue(())
            })?;
            Ok(Digest {
                count,
                hash: hasher.digest(),
            })
        })
    }

    /// The entries that bring a holder at `from` up to this holder's position, at most
    /// `max_bytes` of them (encoded) but always at least one. `None` when `from` is not a
    /// prefix of this holder's history that the log still covers: the holder needs a snapshot.
    pub fn entries_after(
        &self,
        shard: ShardId,
        from: &Position,
        max_bytes: usize,
    ) -> Result<Option<Vec<Entry>>, StoreError> {
        self.read(|view| {
            let mine = self.meta_in(view, shard)?;
            if mine.installing || from.applied > mine.position.applied {
                return Ok(None);
            }
            if *from == mine.position {
                return Ok(Some(Vec::new()));
            }
            if !self.log_has(view, shard, from)? {
                return Ok(None);
            }
            // After the entry at `from`, which the log holds (or before entry 1).
            let after = log_key(shard, from.applied);
            let mut entries = Vec::new();
            let mut bytes = 0;
            let mut undecodable = None;
            view.scan(&self.log, &shard_prefix(shard), Some(&after), |_, value| {
                bytes += value.len();
                if bytes > max_bytes && !entries.is_empty() {
                    return ControlFlow::Break(());
                }
                match codec::decode::<Entry>(value, codec::Limit::Stored) {
                    Ok(entry) => {
                        entries.push(entry);
                        ControlFlow::Continue(())
                    }
                    Err(error) => {
                        undecodable = Some(error);
                        ControlFlow::Break(())
                    }
                }
            })?;
            if let Some(error) = undecodable {
                return Err(error.into());
            }
            Ok(Some(entries))
        })
    }

    /// Promises to follow `epoch` from now on (durably), unless a newer epoch is already
    /// followed. Returns the shard's position.
    pub async fn seal(&self, shard: ShardId, epoch: Epoch) -> Result<ShardMeta, StoreError> {
        self.as_follower(shard, epoch, |_, _, meta| Ok(meta.clone()))
            .await
    }

    /// Applies `entry` if it comes from an epoch not older than the one followed and continues
    /// this holder's history at `prev`.
    pub async fn append(
        &self,
        shard: ShardId,
        epoch: Epoch,
        prev: Position,
        entry: Entry,
    ) -> Result<(), StoreError> {
        self.as_follower(shard, epoch, move |this, wtxn, meta| {
            if meta.installing || meta.position != prev || entry.seq != prev.applied + 1 {
                return Err(StoreError::OutOfOrder {
                    position: meta.position.clone(),
                });
            }
            this.apply(wtxn, shard, meta, entry)
        })
        .await
    }

    /// Starts replacing the shard's contents with a snapshot: clears entities and log and
    /// flags the shard as installing until [`finish_snapshot`](Self::finish_snapshot).
    pub async fn begin_snapshot(&self, shard: ShardId, epoch: Epoch) -> Result<(), StoreError> {
        self.as_follower(shard, epoch, move |this, wtxn, meta| {
            this.clear(wtxn, shard)?;
            meta.position = Position::default();
            meta.installing = true;
            this.put_meta(wtxn, shard, meta)
        })
        .await
    }

    /// Stores one page of a snapshot being installed.
    pub async fn put_snapshot_page(
        &self,
        shard: ShardId,
        epoch: Epoch,
        items: Vec<Item>,
    ) -> Result<(), StoreError> {
        self.as_follower(shard, epoch, move |this, wtxn, _| {
            let prefix = shard_prefix(shard);
            for item in items {
                let key = [&prefix[..], &item.key].concat();
                wtxn.put(&this.entities, &key, &item.value);
            }
            Ok(())
        })
        .await
    }

    /// Completes a snapshot install: the shard now stands at `position`.
    pub async fn finish_snapshot(
        &self,
        shard: ShardId,
        epoch: Epoch,
        position: Position,
    ) -> Result<(), StoreError> {
        self.as_follower(shard, epoch, move |this, wtxn, meta| {
            meta.position = position;
            meta.installing = false;
            this.put_meta(wtxn, shard, meta)
        })
        .await
    }

    /// Deletes this holder's copy of the shard (it is no longer in the shard's replica set).
    /// The followed epoch is kept, so an older owner stays fenced.
    pub async fn drop_shard(&self, shard: ShardId, epoch: Epoch) -> Result<(), StoreError> {
        self.as_follower(shard, epoch, move |this, wtxn, meta| {
            this.clear(wtxn, shard)?;
            meta.position = Position::default();
            meta.installing = false;
            this.put_meta(wtxn, shard, meta)
        })
        .await
    }

    /// Runs `f` in a write transaction as a follower of `epoch` (adopted unless a newer epoch
    /// is followed, then `Fenced`), with the shard's bookkeeping at hand.
    async fn as_follower<R, F>(&self, shard: ShardId, epoch: Epoch, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Self, &mut Staged, &mut ShardMeta) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let this = self.clone();
        let (result, meta) = self
            .storage
            .write(move |wtxn| {
                let mut meta = this.staged_meta(wtxn, shard)?;
                this.follow(wtxn, shard, &mut meta, &epoch)?;
                let result = f(&this, wtxn, &mut meta)?;
                Ok::<_, StoreError>((result, meta))
            })
            .await?;
        audit::report(audit::Observation::Copy { shard, meta: &meta });
        Ok(result)
    }

    fn read<R>(&self, f: impl FnOnce(&View) -> Result<R, StoreError>) -> Result<R, StoreError> {
        self.storage.read(f)
    }

    fn meta_in(&self, view: &View, shard: ShardId) -> Result<ShardMeta, StoreError> {
        decode_meta(view.get(&self.meta, &shard_prefix(shard))?)
    }

    fn staged_meta(&self, wtxn: &Staged, shard: ShardId) -> Result<ShardMeta, StoreError> {
        decode_meta(wtxn.get(&self.meta, &shard_prefix(shard))?)
    }

    fn put_meta(
        &self,
        wtxn: &mut Staged,
        shard: ShardId,
        meta: &ShardMeta,
    ) -> Result<(), StoreError> {
        let bytes = codec::encode(meta)?;
        wtxn.put(&self.meta, &shard_prefix(shard), &bytes);
        Ok(())
    }

    /// Adopts `epoch` unless a newer one is followed (then `Fenced`).
    fn follow(
        &self,
        wtxn: &mut Staged,
        shard: ShardId,
        meta: &mut ShardMeta,
        epoch: &Epoch,
    ) -> Result<(), StoreError> {
        match &meta.epoch {
            Some(current) if current > epoch => Err(StoreError::Fenced {
                current: current.clone(),
            }),
            Some(current) if current == epoch => Ok(()),
            _ => {
                meta.epoch = Some(epoch.clone());
                self.put_meta(wtxn, shard, meta)
            }
        }
    }

    fn apply(
        &self,
        wtxn: &mut Staged,
        shard: ShardId,
        meta: &mut ShardMeta,
        entry: Entry,
    ) -> Result<(), StoreError> {
        for op in &entry.ops {
            let key = entity_key(shard, op.tenant, &op.key);
            match &op.value {
                Some(value) => wtxn.put(&self.entities, &key, value),
                None => wtxn.delete(&self.entities, &key),
            }
        }
        let seq = entry.seq;
        wtxn.put(&self.log, &log_key(shard, seq), &codec::encode(&entry)?);
        // The log is a suffix of the history: only ever drop its front.
        let keep_from = entry
            .trim_before
            .max((seq + 1).saturating_sub(LOG_KEEP))
            .min(seq);
        let (start, end) = (log_key(shard, 0), log_key(shard, keep_from));
        wtxn.delete_range(&self.log, &start, Some(&end));
        meta.position = Position {
            last_epoch: Some(entry.epoch),
            applied: seq,
        };
        self.put_meta(wtxn, shard, meta)
    }

    /// Whether the log holds the entry at `at` with the same epoch (or `at` is the start).
    fn log_has(&self, view: &View, shard: ShardId, at: &Position) -> Result<bool, StoreError> {
        if at.applied == 0 {
            // The history starts empty: the log must still reach back to entry 1.
            return Ok(view.get(&self.log, &log_key(shard, 1))?.is_some());
        }
        match view.get(&self.log, &log_key(shard, at.applied))? {
            Some(bytes) => Ok(
                Some(codec::decode::<Entry>(&bytes, codec::Limit::Stored)?.epoch) == at.last_epoch,
            ),
            None => Ok(false),
        }
    }

    fn clear(&self, wtxn: &mut Staged, shard: ShardId) -> Result<(), StoreError> {
        let (start, end) = shard_range(shard);
        for table in [&self.entities, &self.log] {
            wtxn.delete_range(table, &start, end.as_ref().map(|e| &e[..]));
        }
        Ok(())
    }
}

fn entity_key(shard: ShardId, tenant: Tenant, key: &[u8]) -> Vec<u8> {
    let mut out = tenant_prefix(shard, tenant);
    out.extend_from_slice(key);
    out
}

fn tenant_prefix(shard: ShardId, tenant: Tenant) -> Vec<u8> {
    let mut out = shard_prefix(shard).to_vec();
    out.push(tenant.0);
    out
}

/// The first bytes of every key stored for `shard`: its id in two big-endian bytes, so a
/// shard's records sort together and cost two bytes each, not four (space, decision 014).
/// Configuration bounds hash shards plus party managers at
/// [`MAX_SHARDS`](crate::ids::MAX_SHARDS), and requests name only shards of the layout, so
/// every shard id fits.
fn shard_prefix(shard: ShardId) -> [u8; 2] {
    u16::try_from(shard.0)
        .expect("shard ids fit in 16 bits: the configuration allows at most MAX_SHARDS shards")
        .to_be_bytes()
}

fn log_key(shard: ShardId, seq: u64) -> [u8; 10] {
    let mut out = [0; 10];
    out[..2].copy_from_slice(&shard_prefix(shard));
    out[2..].copy_from_slice(&seq.to_be_bytes());
    out
}

/// The key range of everything stored for `shard`: from its prefix to the next shard's (no
/// end for the last).
fn shard_range(shard: ShardId) -> ([u8; 2], Option<[u8; 2]>) {
    let start = shard_prefix(shard);
    let end = u16::from_be_bytes(start)
        .checked_add(1)
        .map(u16::to_be_bytes);
    (start, end)
}

fn decode_meta(bytes: Option<Vec<u8>>) -> Result<ShardMeta, StoreError> {
    match bytes {
        Some(bytes) => Ok(codec::decode(&bytes, codec::Limit::Stored)?),
        None => Ok(ShardMeta::default()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ids::NodeId;
    use crate::shard::Op;
    use crate::storage::{StorageOptions, WriteMode};

    const S: ShardId = ShardId(3);

    /// A store in a fresh temporary directory, written inline.
    pub(crate) fn open() -> (tempfile::TempDir, ShardStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = StorageOptions::for_map(64 << 20, WriteMode::Inline);
        let storage = Storage::open(dir.path(), options).expect("open");
        let store = ShardStore::open(&storage).expect("shard store");
        (dir, store)
    }

    /// A fresh store whose `shard` holds `ops`, committed as the shard's first entry.
    pub(crate) async fn open_with(shard: ShardId, ops: Vec<Op>) -> (tempfile::TempDir, ShardStore) {
        let (dir, store) = open();
        let first = epoch(1, "n1");
        let entry = Entry {
            seq: 1,
            epoch: first.clone(),
            ops,
            trim_before: 0,
        };
        store
            .append(shard, first, Position::default(), entry)
            .await
            .expect("append");
        (dir, store)
    }

    fn epoch(term: u64, owner: &str) -> Epoch {
        Epoch {
            term,
            owner: NodeId::new(owner),
        }
    }

    fn put(seq: u64, e: &Epoch, key: &str, value: &str) -> Entry {
        Entry {
            seq,
            epoch: e.clone(),
            ops: vec![Op {
                tenant: Tenant(1),
                key: key.as_bytes().to_vec(),
                value: Some(value.as_bytes().to_vec()),
            }],
            trim_before: 0,
        }
    }

    fn at(e: &Epoch, applied: u64) -> Position {
        Position {
            last_epoch: Some(e.clone()),
            applied,
        }
    }

    /// Appends entries 1..=n putting key `k{seq}`.
    async fn fill(store: &ShardStore, e: &Epoch, n: u64) {
        let mut prev = Position::default();
        for seq in 1..=n {
            let entry = put(seq, e, &format!("k{seq:04}"), "v");
            store
                .append(S, e.clone(), prev, entry)
                .await
                .expect("append");
            prev = at(e, seq);
        }
    }

    #[tokio::test]
    async fn entries_apply_only_in_order_and_a_gap_reports_where_the_copy_ends() {
        let (_dir, store) = open();
        let e = epoch(1, "a");
        fill(&store, &e, 2).await;
        let gap = store
            .append(S, e.clone(), at(&e, 5), put(6, &e, "x", "v"))
            .await;
        match gap {
            Err(StoreError::OutOfOrder { position }) => assert_eq!(position, at(&e, 2)),
            other => panic!("expected out of order, got {other:?}"),
        }
        assert_eq!(store.meta(S).expect("meta").position, at(&e, 2));
        assert_eq!(store.count(S, Tenant(1)).expect("count"), 2);
    }

    #[tokio::test]
    async fn a_seal_fences_every_older_epoch_and_survives_dropping_the_copy() {
        let (_dir, store) = open();
        let (old, new) = (epoch(1, "a"), epoch(2, "b"));
        fill(&store, &old, 1).await;
        store.seal(S, new.clone()).await.expect("seal");
        let late = store
            .append(S, old.clone(), at(&old, 1), put(2, &old, "x", "v"))
            .await;
        assert!(matches!(late, Err(StoreError::Fenced { current }) if current == new));
        store.drop_shard(S, new.clone()).await.expect("drop");
        let meta = store.meta(S).expect("meta");
        assert_eq!(
            (meta.epoch, meta.position),
            (Some(new), Position::default())
        );
        assert_eq!(store.count(S, Tenant(1)).expect("count"), 0);
        assert!(matches!(
            store.seal(S, old).await,
            Err(StoreError::Fenced { .. })
        ));
    }

    #[tokio::test]
    async fn entries_after_serves_a_prefix_of_the_history_and_asks_for_a_snapshot_otherwise() {
        let (_dir, store) = open();
        let e = epoch(1, "a");
        let last = LOG_KEEP;
        fill(&store, &e, last).await;
        let missing = store
            .entries_after(S, &at(&e, last - 3), usize::MAX)
            .expect("read")
            .expect("covered by the log");
        assert_eq!(
            missing.iter().map(|x| x.seq).collect::<Vec<_>>(),
            [last - 2, last - 1, last]
        );
        let none = store
            .entries_after(S, &at(&e, last), usize::MAX)
            .expect("read");
        assert_eq!(none, Some(Vec::new()));
        // Same sequence number written by another epoch: a diverged history.
        let diverged = store.entries_after(S, &at(&epoch(1, "z"), last - 3), usize::MAX);
        assert_eq!(diverged.expect("read"), None);
        // Ahead of this copy.
        assert_eq!(
            store
                .entries_after(S, &at(&e, last + 1), usize::MAX)
                .expect("read"),
            None
        );
        // The byte cap still returns at least one entry.
        let capped = store.entries_after(S, &at(&e, 0), 1).expect("read");
        assert_eq!(capped.map(|v| v.len()), Some(1));
    }

    #[tokio::test]
    async fn the_log_keeps_only_recent_entries_so_far_behind_copies_need_a_snapshot() {
        let (_dir, store) = open();
        let e = epoch(1, "a");
        fill(&store, &e, LOG_KEEP + 5).await;
        assert_eq!(
            store
                .entries_after(S, &at(&e, 2), usize::MAX)
                .expect("read"),
            None
        );
        let recent = store
            .entries_after(S, &at(&e, LOG_KEEP + 2), usize::MAX)
            .expect("read");
        assert_eq!(recent.map(|v| v.len()), Some(3));
    }

    /// Sequence numbers in the shard's log, in order.
    fn log_seqs(store: &ShardStore, shard: ShardId) -> Vec<u64> {
        let prefix = shard_prefix(shard);
        let entries = store
            .read(|view| Ok(view.range(&store.log, &prefix, None, usize::MAX)?))
            .expect("read the log");
        entries
            .iter()
            .map(|(_, value)| {
                codec::decode::<Entry>(value, codec::Limit::Stored)
                    .expect("entry")
                    .seq
            })
            .collect()
    }

    #[tokio::test]
    async fn an_entry_that_says_every_copy_confirmed_its_predecessors_drops_them_from_the_log() {
        let (_dir, store) = open();
        let e = epoch(1, "a");
        fill(&store, &e, 10).await;
        let other = ShardId(S.0 + 1);
        store
            .append(other, e.clone(), Position::default(), put(1, &e, "o", "v"))
            .await
            .expect("append to another shard");
        assert_eq!(log_seqs(&store, S), (1..=10).collect::<Vec<_>>());
        let mut entry = put(11, &e, "k11", "v");
        entry.trim_before = 10;
        store
            .append(S, e.clone(), at(&e, 10), entry)
            .await
            .expect("append");
        assert_eq!(log_seqs(&store, S), [10, 11]);
        assert_eq!(log_seqs(&store, other), [1]);
        // A copy at the trim point (the previous entry) still catches up from the log; one
        // further behind needs a snapshot.
        let seqs = store
            .entries_after(S, &at(&e, 10), usize::MAX)
            .expect("read")
            .map(|v| v.iter().map(|x| x.seq).collect::<Vec<_>>());
        assert_eq!(seqs, Some(vec![11]));
        let behind = store.entries_after(S, &at(&e, 9), usize::MAX);
        assert_eq!(behind.expect("read"), None);
        // A hint past the entry itself still keeps the entry.
        let mut entry = put(12, &e, "k12", "v");
        entry.trim_before = 99;
        store
            .append(S, e.clone(), at(&e, 11), entry)
            .await
            .expect("append");
        assert_eq!(log_seqs(&store, S), [12]);
    }

    #[tokio::test]
    async fn without_a_hint_the_log_keeps_its_last_log_keep_entries() {
        let (_dir, store) = open();
        let e = epoch(1, "a");
        fill(&store, &e, LOG_KEEP + 5).await;
        assert_eq!(log_seqs(&store, S), (6..=LOG_KEEP + 5).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_snapshot_replaces_the_copy_and_is_flagged_until_finished() {
        let (_dir, source) = open();
        let (_dir2, target) = open();
        let e = epoch(2, "a");
        fill(&source, &e, 5).await;
        fill(&target, &epoch(1, "b"), 3).await;
        target.begin_snapshot(S, e.clone()).await.expect("begin");
        assert!(target.meta(S).expect("meta").installing);
        assert_eq!(target.count(S, Tenant(1)).expect("count"), 0);
        let page = source.snapshot_page(S, None, 100).expect("page");
        target
            .put_snapshot_page(S, e.clone(), page)
            .await
            .expect("page");
        target
            .finish_snapshot(S, e.clone(), at(&e, 5))
            .await
            .expect("finish");
        let meta = target.meta(S).expect("meta");
        assert!(!meta.installing);
        assert_eq!(meta.position, at(&e, 5));
        assert_eq!(target.digest(S).expect("d"), source.digest(S).expect("d"));
    }

    #[tokio::test]
    async fn scans_are_ordered_paged_and_confined_to_their_shard_and_tenant() {
        let (_dir, store) = open();
        let e = epoch(1, "a");
        fill(&store, &e, 5).await;
        let other = ShardId(S.0 + 1);
        let entry = put(1, &e, "k0000", "elsewhere");
        store
            .append(other, e.clone(), Position::default(), entry)
            .await
            .expect("append");
        let first = store.scan(S, Tenant(1), None, 2).expect("scan");
        let keys: Vec<_> = first.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, [b"k0001".to_vec(), b"k0002".to_vec()]);
        let rest = store.scan(S, Tenant(1), Some(b"k0002"), 10).expect("scan");
        assert_eq!(rest.len(), 3);
        assert_eq!(
            store.scan(S, Tenant(9), None, 10).expect("scan"),
            Vec::new()
        );
        assert_eq!(store.count(other, Tenant(1)).expect("count"), 1);
    }
}
