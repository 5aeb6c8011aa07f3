//! A node's copy of its shards in LMDB.
//!
//! Three databases, keyed big-endian so LMDB's byte order is numeric order:
//! - `shard_entities`: `shard ‖ tenant ‖ key` → value;
//! - `shard_log`: `shard ‖ seq` → [`Entry`], the last [`LOG_KEEP`] entries of each shard, so a
//!   holder that missed a few changes catches up without a full copy;
//! - `shard_meta`: `shard` → [`ShardMeta`].
//!
//! Every change (an entry, a seal, a snapshot step) updates entities, log and meta in one
//! transaction, so a crash never leaves a shard half-applied: the position always describes the
//! entities exactly, except during a snapshot install, which is flagged and redone after a crash.

use std::ops::Bound;

use heed::types::Bytes;
use heed::{Database, RoTxn, RwTxn};
use serde::{Deserialize, Serialize};

use super::{Entry, Epoch, Position, ShardMeta, Tenant};
use crate::codec::{self, CodecError};
use crate::ids::ShardId;
use crate::storage::{Storage, StorageError};

/// Log entries kept per shard. A holder further behind gets a snapshot instead. Small on
/// purpose: the log duplicates recent values, and space must stay near one copy per holder.
pub const LOG_KEEP: u64 = 64;

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

impl From<heed::Error> for StoreError {
    fn from(error: heed::Error) -> Self {
        Self::Storage(StorageError::Heed(error))
    }
}

/// A shard's entity, as moved by snapshots: the tenant-and-key part of the stored key, and
/// the value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Tenant byte followed by the entity key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

/// A stored key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

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
    entities: Database<Bytes, Bytes>,
    log: Database<Bytes, Bytes>,
    meta: Database<Bytes, Bytes>,
}

impl ShardStore {
    /// Opens (creating) the shard databases. Blocking: call at start-up.
    pub fn open(storage: &Storage) -> Result<Self, StoreError> {
        Ok(Self {
            storage: storage.clone(),
            entities: storage.database("shard_entities")?,
            log: storage.database("shard_log")?,
            meta: storage.database("shard_meta")?,
        })
    }

    /// The shard's bookkeeping (default for a shard never held).
    pub fn meta(&self, shard: ShardId) -> Result<ShardMeta, StoreError> {
        self.read(|rtxn| self.meta_in(rtxn, shard))
    }

    /// One entity.
    pub fn get(
        &self,
        shard: ShardId,
        tenant: Tenant,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let full = entity_key(shard, tenant, key);
        self.read(|rtxn| Ok(self.entities.get(rtxn, &full)?.map(<[u8]>::to_vec)))
    }

    /// Number of entities of `tenant` in the shard.
    pub fn count(&self, shard: ShardId, tenant: Tenant) -> Result<u64, StoreError> {
        let prefix = tenant_prefix(shard, tenant);
        self.read(|rtxn| {
            let mut count = 0;
            for item in self.entities.prefix_iter(rtxn, &prefix)? {
                item?;
                count += 1;
            }
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
        self.read(|rtxn| {
            let items = self.range_from(rtxn, &prefix, start.as_deref(), limit)?;
            Ok(items
                .into_iter()
                .map(|(k, v)| (k[prefix.len()..].to_vec(), v))
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
        let prefix = shard.0.to_be_bytes();
        let start = after.map(|key| [&prefix[..], key].concat());
        self.read(|rtxn| {
            let items = self.range_from(rtxn, &prefix, start.as_deref(), limit)?;
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
        let prefix = shard.0.to_be_bytes();
        self.read(|rtxn| {
            let mut hasher = xxhash_rust::xxh3::Xxh3::new();
            let mut count = 0;
            for item in self.entities.prefix_iter(rtxn, &prefix)? {
                let (key, value) = item?;
                hasher.update(&(key.len() as u64).to_be_bytes());
                hasher.update(key);
                hasher.update(&(value.len() as u64).to_be_bytes());
                hasher.update(value);
                count += 1;
            }
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
        self.read(|rtxn| {
            let mine = self.meta_in(rtxn, shard)?;
            if mine.installing || from.applied > mine.position.applied {
                return Ok(None);
            }
            if *from == mine.position {
                return Ok(Some(Vec::new()));
            }
            if !self.log_has(rtxn, shard, from)? {
                return Ok(None);
            }
            let start = log_key(shard, from.applied + 1);
            let mut entries = Vec::new();
            let mut bytes = 0;
            for item in self
                .log
                .range(rtxn, &(Bound::Included(&start[..]), Bound::Unbounded))?
            {
                let (key, value) = item?;
                if !key.starts_with(&shard.0.to_be_bytes()) {
                    break;
                }
                bytes += value.len();
                if bytes > max_bytes && !entries.is_empty() {
                    break;
                }
                entries.push(codec::decode::<Entry>(value)?);
            }
            Ok(Some(entries))
        })
    }

    /// Promises to follow `epoch` from now on (durably), unless a newer epoch is already
    /// followed. Returns the shard's position.
    pub async fn seal(&self, shard: ShardId, epoch: Epoch) -> Result<ShardMeta, StoreError> {
        let this = self.clone();
        self.storage
            .write(move |wtxn| {
                let mut meta = this.meta_in(wtxn, shard)?;
                this.follow(wtxn, shard, &mut meta, &epoch)?;
                Ok(meta)
            })
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
        let this = self.clone();
        self.storage
            .write(move |wtxn| {
                let mut meta = this.meta_in(wtxn, shard)?;
                this.follow(wtxn, shard, &mut meta, &epoch)?;
                if meta.installing || meta.position != prev || entry.seq != prev.applied + 1 {
                    return Err(StoreError::OutOfOrder {
                        position: meta.position,
                    });
                }
                this.apply(wtxn, shard, &mut meta, entry)
            })
            .await
    }

    /// Starts replacing the shard's contents with a snapshot: clears entities and log and
    /// flags the shard as installing until [`finish_snapshot`](Self::finish_snapshot).
    pub async fn begin_snapshot(&self, shard: ShardId, epoch: Epoch) -> Result<(), StoreError> {
        let this = self.clone();
        self.storage
            .write(move |wtxn| {
                let mut meta = this.meta_in(wtxn, shard)?;
                this.follow(wtxn, shard, &mut meta, &epoch)?;
                this.clear(wtxn, shard)?;
                meta.position = Position::default();
                meta.installing = true;
                this.put_meta(wtxn, shard, &meta)
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
        let this = self.clone();
        self.storage
            .write(move |wtxn| {
                let mut meta = this.meta_in(wtxn, shard)?;
                this.follow(wtxn, shard, &mut meta, &epoch)?;
                let prefix = shard.0.to_be_bytes();
                for item in items {
                    let key = [&prefix[..], &item.key].concat();
                    this.entities.put(wtxn, &key, &item.value)?;
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
        let this = self.clone();
        self.storage
            .write(move |wtxn| {
                let mut meta = this.meta_in(wtxn, shard)?;
                this.follow(wtxn, shard, &mut meta, &epoch)?;
                meta.position = position;
                meta.installing = false;
                this.put_meta(wtxn, shard, &meta)
            })
            .await
    }

    /// Deletes this holder's copy of the shard (it is no longer in the shard's replica set).
    /// The followed epoch is kept, so an older owner stays fenced.
    pub async fn drop_shard(&self, shard: ShardId, epoch: Epoch) -> Result<(), StoreError> {
        let this = self.clone();
        self.storage
            .write(move |wtxn| {
                let mut meta = this.meta_in(wtxn, shard)?;
                this.follow(wtxn, shard, &mut meta, &epoch)?;
                this.clear(wtxn, shard)?;
                meta.position = Position::default();
                meta.installing = false;
                this.put_meta(wtxn, shard, &meta)
            })
            .await
    }

    fn read<R>(&self, f: impl FnOnce(&RoTxn) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let rtxn = self.storage.env().read_txn()?;
        f(&rtxn)
    }

    fn meta_in(&self, txn: &RoTxn, shard: ShardId) -> Result<ShardMeta, StoreError> {
        match self.meta.get(txn, &shard.0.to_be_bytes())? {
            Some(bytes) => Ok(codec::decode(bytes)?),
            None => Ok(ShardMeta::default()),
        }
    }

    fn put_meta(
        &self,
        wtxn: &mut RwTxn,
        shard: ShardId,
        meta: &ShardMeta,
    ) -> Result<(), StoreError> {
        let bytes = codec::encode(meta)?;
        self.meta.put(wtxn, &shard.0.to_be_bytes(), &bytes)?;
        Ok(())
    }

    /// Adopts `epoch` unless a newer one is followed (then `Fenced`).
    fn follow(
        &self,
        wtxn: &mut RwTxn,
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
        wtxn: &mut RwTxn,
        shard: ShardId,
        meta: &mut ShardMeta,
        entry: Entry,
    ) -> Result<(), StoreError> {
        for op in &entry.ops {
            let key = entity_key(shard, op.tenant, &op.key);
            match &op.value {
                Some(value) => self.entities.put(wtxn, &key, value)?,
                None => {
                    self.entities.delete(wtxn, &key)?;
                }
            }
        }
        let seq = entry.seq;
        self.log
            .put(wtxn, &log_key(shard, seq), &codec::encode(&entry)?)?;
        if seq > LOG_KEEP {
            self.log.delete(wtxn, &log_key(shard, seq - LOG_KEEP))?;
        }
        meta.position = Position {
            last_epoch: Some(entry.epoch),
            applied: seq,
        };
        self.put_meta(wtxn, shard, meta)
    }

    /// Whether the log holds the entry at `at` with the same epoch (or `at` is the start).
    fn log_has(&self, rtxn: &RoTxn, shard: ShardId, at: &Position) -> Result<bool, StoreError> {
        if at.applied == 0 {
            // The history starts empty: the log must still reach back to entry 1.
            return Ok(self.log.get(rtxn, &log_key(shard, 1))?.is_some());
        }
        match self.log.get(rtxn, &log_key(shard, at.applied))? {
            Some(bytes) => Ok(Some(codec::decode::<Entry>(bytes)?.epoch) == at.last_epoch),
            None => Ok(false),
        }
    }

    fn clear(&self, wtxn: &mut RwTxn, shard: ShardId) -> Result<(), StoreError> {
        let (start, end) = shard_range(shard);
        let range = (bound_ref(&start), bound_ref(&end));
        self.entities.delete_range(wtxn, &range)?;
        self.log.delete_range(wtxn, &range)?;
        Ok(())
    }

    fn range_from(
        &self,
        rtxn: &RoTxn,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let lower = match after {
            Some(key) => Bound::Excluded(key),
            None => Bound::Included(prefix),
        };
        let mut out = Vec::new();
        for item in self.entities.range(rtxn, &(lower, Bound::Unbounded))? {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok(out)
    }
}

fn entity_key(shard: ShardId, tenant: Tenant, key: &[u8]) -> Vec<u8> {
    let mut out = tenant_prefix(shard, tenant);
    out.extend_from_slice(key);
    out
}

fn tenant_prefix(shard: ShardId, tenant: Tenant) -> Vec<u8> {
    let mut out = shard.0.to_be_bytes().to_vec();
    out.push(tenant.0);
    out
}

fn log_key(shard: ShardId, seq: u64) -> [u8; 12] {
    let mut out = [0; 12];
    out[..4].copy_from_slice(&shard.0.to_be_bytes());
    out[4..].copy_from_slice(&seq.to_be_bytes());
    out
}

/// The key range of everything stored for `shard`.
fn shard_range(shard: ShardId) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let start = Bound::Included(shard.0.to_be_bytes().to_vec());
    match shard.0.checked_add(1) {
        Some(next) => (start, Bound::Excluded(next.to_be_bytes().to_vec())),
        None => (start, Bound::Unbounded),
    }
}

fn bound_ref(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(key) => Bound::Included(key.as_slice()),
        Bound::Excluded(key) => Bound::Excluded(key.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}
