//! The changes to one LMDB database made since its last checkpoint, kept in memory and read
//! over the database (decision 039, step 3: "the tail").
//!
//! With a write-ahead log in front of LMDB, a commit is durable once its log record is synced,
//! and LMDB catches up only at the next checkpoint. Until then the change lives here, and every
//! reader sees the database as if it had been applied: a [`Layer`] over a read transaction
//! answers point lookups and ordered ranges exactly as LMDB would after a checkpoint.
//!
//! Why it is built this way:
//! - A layer records *results*, not history: the newest value or deletion of each key, and the
//!   key ranges deleted as a whole. So it is as large as the keys changed since the checkpoint,
//!   not as the number of changes, and merging layers is last-writer-wins.
//! - Applying a layer is idempotent: writing it into a database that already holds it changes
//!   nothing. The checkpoint relies on that: after its LMDB transaction commits and before the
//!   layer is cleared, readers see the layer over a database that already has it, and still
//!   read the same thing.
//! - Deleted ranges are kept disjoint and coalesced. A shard's log is trimmed from the front
//!   at every append, so the ranges of one shard's log keep overlapping; coalesced, they cost
//!   one range per shard, however many appends there were.

use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};

use heed::types::Bytes;
use heed::{Database, RoTxn, RwTxn};
use serde::{Deserialize, Serialize};

/// A stored key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A layer with no changes, for tables a tail has not touched.
pub static EMPTY: Layer = Layer {
    keys: BTreeMap::new(),
    deleted: BTreeMap::new(),
    bytes: 0,
};

/// A layer's changes to one table as the write-ahead log records them: the ranges deleted,
/// then the keys set or deleted. Applying them to a layer in that order rebuilds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableChanges {
    /// The table's name.
    pub table: String,
    /// Ranges deleted whole.
    pub deleted: Vec<RangeChange>,
    /// Keys set (`Some`) or deleted (`None`).
    pub keys: Vec<KeyChange>,
}

/// A range of keys deleted whole: from `start` (included) to `end` (excluded; `None`: no end).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeChange {
    #[serde(with = "crate::codec::bytes")]
    start: Vec<u8>,
    #[serde(with = "crate::codec::bytes::option")]
    end: Option<Vec<u8>>,
}

/// A key set to a value or deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChange {
    #[serde(with = "crate::codec::bytes")]
    key: Vec<u8>,
    #[serde(with = "crate::codec::bytes::option")]
    value: Option<Vec<u8>>,
}

/// What a layer knows of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// Set to this value since the checkpoint.
    Value(&'a [u8]),
    /// Deleted since the checkpoint (on its own or in a range).
    Deleted,
    /// Not changed since the checkpoint: the database below has the answer.
    Unchanged,
}

/// The changes to one database since its checkpoint: the newest value (`Some`) or deletion
/// (`None`) of each key changed, over the ranges deleted whole.
#[derive(Clone, Debug, Default)]
pub struct Layer {
    /// Keys set or deleted since the checkpoint, and since the last deleted range that
    /// covers them.
    keys: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Disjoint ranges whose keys were deleted whole, by start (included), to their end
    /// (excluded; `None`: no end). Hides the database below, not [`Self::keys`].
    deleted: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Bytes of keys and values added since the layer started (an upper bound on what it
    /// holds: replaced values are not subtracted), which bounds a checkpoint's size.
    bytes: usize,
}

impl Layer {
    /// Bytes of keys and values this layer took in (an upper bound on what it holds).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing changed since the checkpoint.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.deleted.is_empty()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.bytes += key.len() + value.len();
        self.keys.insert(key.to_vec(), Some(value.to_vec()));
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: &[u8]) {
        self.bytes += key.len();
        self.keys.insert(key.to_vec(), None);
    }

    /// Deletes every key from `start` (included) to `end` (excluded; `None`: no end).
    pub fn delete_range(&mut self, start: &[u8], end: Option<&[u8]>) {
        if end.is_some_and(|end| end <= start) {
            return;
        }
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let shadowed: Vec<Vec<u8>> = self
            .keys
            .range::<[u8], _>((Bound::Included(start), upper))
            .map(|(key, _)| key.clone())
            .collect();
        for key in shadowed {
            self.keys.remove(&key);
        }
        self.bytes += start.len() + end.map_or(0, <[u8]>::len);
        self.hide(start.to_vec(), end.map(<[u8]>::to_vec));
    }

    /// What this layer says of `key`.
    pub fn lookup(&self, key: &[u8]) -> Lookup<'_> {
        match self.keys.get(key) {
            Some(Some(value)) => Lookup::Value(value),
            Some(None) => Lookup::Deleted,
            None if self.hides(key) => Lookup::Deleted,
            None => Lookup::Unchanged,
        }
    }

    /// This layer's changes as the log records them, for `table`.
    pub fn changes(&self, table: &str) -> TableChanges {
        TableChanges {
            table: table.to_owned(),
            deleted: self
                .deleted
                .iter()
                .map(|(start, end)| RangeChange {
                    start: start.clone(),
                    end: end.clone(),
                })
                .collect(),
            keys: self
                .keys
                .iter()
                .map(|(key, value)| KeyChange {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
        }
    }

    /// Applies changes the log recorded (replay).
    pub fn apply(&mut self, changes: TableChanges) {
        for range in changes.deleted {
            self.delete_range(&range.start, range.end.as_deref());
        }
        for change in changes.keys {
            match change.value {
                Some(value) => self.put(&change.key, &value),
                None => self.delete(&change.key),
            }
        }
    }

    /// Applies `newer`, a layer of later changes, on top of this one.
    pub fn absorb(&mut self, newer: Layer) {
        for (start, end) in newer.deleted {
            self.delete_range(&start, end.as_deref());
        }
        self.bytes += newer.bytes;
        self.keys.extend(newer.keys);
    }

    /// Writes this layer into `db` (the checkpoint); idempotent.
    pub fn write_to(&self, db: Database<Bytes, Bytes>, wtxn: &mut RwTxn) -> heed::Result<()> {
        for (start, end) in &self.deleted {
            let upper = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
            db.delete_range(wtxn, &(Bound::Included(start.as_slice()), upper))?;
        }
        for (key, value) in &self.keys {
            match value {
                Some(value) => db.put(wtxn, key, value)?,
                None => {
                    db.delete(wtxn, key)?;
                }
            }
        }
        Ok(())
    }

    /// Whether a deleted range covers `key`.
    fn hides(&self, key: &[u8]) -> bool {
        self.deleted
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .is_some_and(|(_, end)| end.as_deref().is_none_or(|end| key < end))
    }

    /// Adds `[start, end)` to the deleted ranges, merged with every range it overlaps or
    /// touches, so they stay disjoint.
    fn hide(&mut self, mut start: Vec<u8>, mut end: Option<Vec<u8>>) {
        let upper = end.as_deref().map_or(Bound::Unbounded, Bound::Included);
        let touching: Vec<(Vec<u8>, Option<Vec<u8>>)> = self
            .deleted
            .range::<[u8], _>((Bound::Unbounded, upper))
            .rev()
            .take_while(|(_, other_end)| other_end.as_deref().is_none_or(|e| e >= start.as_slice()))
            .map(|(s, e)| (s.clone(), e.clone()))
            .collect();
        for (other_start, other_end) in touching {
            self.deleted.remove(&other_start);
            start = start.min(other_start);
            end = match (end, other_end) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        self.deleted.insert(start, end);
    }
}

/// `key`'s value in `db` as seen through `layers`, newest first.
pub fn get(
    layers: &[&Layer],
    db: Database<Bytes, Bytes>,
    rtxn: &RoTxn,
    key: &[u8],
) -> heed::Result<Option<Vec<u8>>> {
    for layer in layers {
        match layer.lookup(key) {
            Lookup::Value(value) => return Ok(Some(value.to_vec())),
            Lookup::Deleted => return Ok(None),
            Lookup::Unchanged => {}
        }
    }
    Ok(db.get(rtxn, key)?.map(<[u8]>::to_vec))
}

/// Calls `visit` with the keys of `db` that start with `prefix`, in order, as seen through
/// `layers` (newest first): from `prefix` on, or after `after` when given (which must sort at
/// or after `prefix`), until `visit` breaks.
pub fn scan(
    layers: &[&Layer],
    db: Database<Bytes, Bytes>,
    rtxn: &RoTxn,
    prefix: &[u8],
    after: Option<&[u8]>,
    mut visit: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
) -> heed::Result<()> {
    let lower = after.map_or(Bound::Included(prefix), Bound::Excluded);
    // LMDB refuses an empty key, even as a bound: the empty prefix starts at the start.
    let db_lower = match lower {
        Bound::Included([]) => Bound::Unbounded,
        other => other,
    };
    let mut below = db
        .range(rtxn, &(db_lower, Bound::Unbounded))?
        .map_while(|item| match item {
            Ok((key, _)) if !key.starts_with(prefix) => None,
            other => Some(other),
        })
        .peekable();
    let mut changed: Vec<_> = layers
        .iter()
        .map(|layer| {
            layer
                .keys
                .range::<[u8], _>((lower, Bound::Unbounded))
                .take_while(|(key, _)| key.starts_with(prefix))
                .peekable()
        })
        .collect();
    loop {
        // The smallest key any source holds next.
        let mut next: Option<Vec<u8>> = match below.peek() {
            Some(Ok((key, _))) => Some(key.to_vec()),
            Some(Err(_)) => match below.next() {
                Some(Err(error)) => return Err(error),
                _ => None,
            },
            None => None,
        };
        for source in &mut changed {
            if let Some((key, _)) = source.peek() {
                if next
                    .as_ref()
                    .is_none_or(|next| key.as_slice() < next.as_slice())
                {
                    next = Some((*key).clone());
                }
            }
        }
        let Some(key) = next else {
            return Ok(());
        };
        for source in &mut changed {
            if source.peek().is_some_and(|(k, _)| **k == key) {
                source.next();
            }
        }
        let from_db = match below.peek() {
            Some(Ok((k, _))) if *k == key.as_slice() => below.next().and_then(Result::ok),
            _ => None,
        };
        let value = layers
            .iter()
            .map(|layer| layer.lookup(&key))
            .find(|lookup| *lookup != Lookup::Unchanged);
        let value = match value {
            Some(Lookup::Value(value)) => Some(value),
            Some(_) => None,
            None => from_db.map(|(_, value)| value),
        };
        if let Some(value) = value {
            if visit(&key, value).is_break() {
                return Ok(());
            }
        }
    }
}

/// Up to `limit` entries of [`scan`], collected.
pub fn range(
    layers: &[&Layer],
    db: Database<Bytes, Bytes>,
    rtxn: &RoTxn,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> heed::Result<Vec<KeyValue>> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    scan(layers, db, rtxn, prefix, after, |key, value| {
        out.push((key.to_vec(), value.to_vec()));
        if out.len() >= limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use heed::{Env, EnvOpenOptions};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    type Db = Database<Bytes, Bytes>;

    fn open() -> (tempfile::TempDir, Env, Db) {
        let dir = tempfile::tempdir().expect("temp dir");
        // SAFETY: a fresh directory that only this test opens.
        let env =
            unsafe { EnvOpenOptions::new().map_size(16 << 20).open(dir.path()) }.expect("open");
        let mut wtxn = env.write_txn().expect("write txn");
        let db = env.create_database(&mut wtxn, None).expect("db");
        wtxn.commit().expect("commit");
        (dir, env, db)
    }

    fn checkpoint(env: &Env, db: Db, layer: &Layer) {
        let mut wtxn = env.write_txn().expect("write txn");
        layer.write_to(db, &mut wtxn).expect("write layer");
        wtxn.commit().expect("commit");
    }

    fn range_of(
        env: &Env,
        db: Db,
        layer: &Layer,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Vec<KeyValue> {
        let rtxn = env.read_txn().expect("read txn");
        range(&[layer], db, &rtxn, prefix, after, limit).expect("range")
    }

    /// What `range` must return, read off the model.
    fn model_range(
        model: &BTreeMap<Vec<u8>, Vec<u8>>,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Vec<KeyValue> {
        model
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .filter(|(key, _)| after.is_none_or(|after| key.as_slice() > after))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Keys of two bytes from a small alphabet, so puts, deletes and ranges collide often.
    fn key(rng: &mut StdRng) -> Vec<u8> {
        (0..rng.random_range(1..=2))
            .map(|_| b'a' + rng.random_range(0..4))
            .collect()
    }

    #[test]
    fn reads_through_a_layer_match_the_database_the_changes_would_leave_at_every_step() {
        for seed in 0..40 {
            let (_dir, env, db) = open();
            let mut rng = StdRng::seed_from_u64(seed);
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut layer = Layer::default();
            for step in 0..300 {
                match rng.random_range(0..10) {
                    0..=4 => {
                        let (k, v) = (key(&mut rng), vec![step as u8]);
                        layer.put(&k, &v);
                        model.insert(k, v);
                    }
                    5 | 6 => {
                        let k = key(&mut rng);
                        layer.delete(&k);
                        model.remove(&k);
                    }
                    7 => {
                        let (a, b) = (key(&mut rng), key(&mut rng));
                        let (start, end) = (a.clone().min(b.clone()), a.max(b));
                        let end = (rng.random_range(0..4) != 0).then_some(end);
                        layer.delete_range(&start, end.as_deref());
                        model.retain(|k, _| {
                            k.as_slice() < start.as_slice()
                                || end.as_deref().is_some_and(|end| k.as_slice() >= end)
                        });
                    }
                    8 => {
                        // A checkpoint: the layer goes into the database and starts again.
                        checkpoint(&env, db, &layer);
                        layer = Layer::default();
                    }
                    _ => {
                        // Written into the database but not yet cleared: reads must not change.
                        checkpoint(&env, db, &layer);
                    }
                }
                let rtxn = env.read_txn().expect("read txn");
                for probe in [b"a".to_vec(), b"ab".to_vec(), b"dd".to_vec(), key(&mut rng)] {
                    let got = get(&[&layer], db, &rtxn, &probe).expect("get");
                    assert_eq!(
                        got.as_ref(),
                        model.get(&probe),
                        "seed {seed} step {step} key {probe:?}"
                    );
                }
                drop(rtxn);
                let prefix = if rng.random_bool(0.5) {
                    Vec::new()
                } else {
                    key(&mut rng)[..1].to_vec()
                };
                let after = rng
                    .random_bool(0.5)
                    .then(|| [prefix.clone(), key(&mut rng)].concat());
                let limit = rng.random_range(1..20);
                assert_eq!(
                    range_of(&env, db, &layer, &prefix, after.as_deref(), limit),
                    model_range(&model, &prefix, after.as_deref(), limit),
                    "seed {seed} step {step} prefix {prefix:?} after {after:?} limit {limit}"
                );
            }
        }
    }

    #[test]
    fn a_newer_layer_stacked_absorbed_or_replayed_reads_as_both_applied_in_order() {
        for seed in 0..40 {
            let (_dir, env, db) = open();
            let mut rng = StdRng::seed_from_u64(seed);
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let (mut older, mut newer) = (Layer::default(), Layer::default());
            for step in 0..200 {
                let target = if step < 100 { &mut older } else { &mut newer };
                if rng.random_range(0..4) == 0 {
                    let (a, b) = (key(&mut rng), key(&mut rng));
                    let (start, end) = (a.clone().min(b.clone()), a.max(b));
                    target.delete_range(&start, Some(&end));
                    model.retain(|k, _| {
                        k.as_slice() < start.as_slice() || k.as_slice() >= end.as_slice()
                    });
                } else {
                    let (k, v) = (key(&mut rng), vec![step as u8]);
                    target.put(&k, &v);
                    model.insert(k, v);
                }
            }
            let rtxn = env.read_txn().expect("read txn");
            let stacked = range(&[&newer, &older], db, &rtxn, b"", None, usize::MAX);
            drop(rtxn);
            assert_eq!(
                stacked.expect("range"),
                model_range(&model, b"", None, usize::MAX),
                "stacked, seed {seed}"
            );
            older.absorb(newer);
            // What the log records of the layer rebuilds it.
            let record = crate::codec::encode(&older.changes("t")).expect("encode");
            let mut rebuilt = Layer::default();
            rebuilt
                .apply(crate::codec::decode(&record, crate::codec::Limit::Stored).expect("decode"));
            assert_eq!(
                range_of(&env, db, &rebuilt, b"", None, usize::MAX),
                model_range(&model, b"", None, usize::MAX),
                "rebuilt from its record, seed {seed}"
            );
            assert_eq!(
                range_of(&env, db, &older, b"", None, usize::MAX),
                model_range(&model, b"", None, usize::MAX),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn trimming_a_log_from_the_front_keeps_one_deleted_range() {
        let mut layer = Layer::default();
        for seq in 1u64..1000 {
            layer.put(&seq.to_be_bytes(), b"entry");
            layer.delete_range(
                &0u64.to_be_bytes(),
                Some(&seq.saturating_sub(31).to_be_bytes()),
            );
        }
        assert_eq!(layer.deleted.len(), 1);
        assert_eq!(layer.keys.len(), 32);
    }

    #[test]
    fn an_empty_or_inverted_range_deletes_nothing() {
        let (_dir, env, db) = open();
        checkpoint(&env, db, &{
            let mut base = Layer::default();
            base.put(b"b", b"1");
            base
        });
        let mut layer = Layer::default();
        layer.delete_range(b"c", Some(b"a"));
        layer.delete_range(b"b", Some(b"b"));
        assert!(layer.is_empty());
        assert_eq!(
            range_of(&env, db, &layer, b"", None, 10),
            vec![(b"b".to_vec(), b"1".to_vec())]
        );
    }
}
