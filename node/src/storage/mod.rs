//! The node's durable key-value store: LMDB (heed) behind a write-ahead log (decision 039).
//!
//! A write runs against a consistent view and its changes become durable as one record of the
//! write-ahead log ([`crate::wal`]): the writer appends every write waiting in its queue and
//! makes them durable with one `fdatasync` of a sequential write (group commit), then makes
//! them visible in the in-memory tail ([`tail`]) and answers. Callers hear back
//! only after the sync, so success always means durable, and no reader sees a change that is
//! not. LMDB catches up at checkpoints: every [`StorageOptions::checkpoint_bytes`] of changes
//! (or [`StorageOptions::checkpoint_interval`] with changes pending), the tail is frozen and
//! written into one ordinary, synced LMDB transaction that also stores the last log position
//! it covers; then the log before it is deleted. So LMDB is always consistent (never
//! committed without its sync, which a power cut could turn into a corrupt file), and start-up
//! replays the log past the checkpoint into the tail.
//!
//! Every read sees LMDB through the tail ([`View`]), so it reads exactly what a checkpoint
//! would leave. In production ([`WriteMode::Thread`]) the log is written by a dedicated writer
//! thread and checkpoints run on a thread of their own, beside new writes. The simulation uses
//! [`WriteMode::Inline`], because an extra OS thread would make runs nondeterministic: writes
//! and checkpoints then run on the caller's task, and a checkpoint is due by size only.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use heed::types::{Bytes, Str};
use heed::{Database, Env, EnvOpenOptions, RoTxn};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::codec;
use crate::wal::{Wal, WalError, WalOptions};
pub use tail::KeyValue;
use tail::Layer;
use writer::{commit_batch, finish_checkpoints, replay, run_writer};

pub mod tail;
mod writer;

/// Version of the on-disk layout; bumped on any incompatible change of what is stored.
/// 3: a job is one record whose id derives from its object id (no de-duplication index).
/// 4: shard records keyed by a 2-byte shard id (was 4 bytes).
/// 5: writes go through the write-ahead log in `wal/`; LMDB holds the last checkpoint.
pub const LAYOUT_VERSION: u32 = 5;
/// The layout before the write-ahead log, which a start upgrades in place to
/// [`LAYOUT_VERSION`].
const LAYOUT_BEFORE_LOG: u32 = 4;

const META_DB: &str = "meta";
const LAYOUT_KEY: &str = "layout_version";
const GENERATION_KEY: &str = "generation";
const IDENTITY_KEY: &str = "cluster_identity";
/// The last log position (LSN) the LMDB checkpoint covers.
const CHECKPOINT_KEY: &str = "wal_checkpoint";
/// The log's directory, inside the data directory.
pub const WAL_DIR: &str = "wal";
/// Writes waiting for the writer thread before callers wait (back-pressure).
const WRITE_QUEUE: usize = 1024;
/// How much of the map the tail's changes are counted as in [`Storage::usage`]: a change
/// takes about twice its bytes in LMDB's pages, which are two thirds full on average.
const TAIL_PAGE_FACTOR: u64 = 2;

/// How writes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// On a dedicated writer thread with group commit (production).
    Thread,
    /// On the calling task, one log sync per write (deterministic simulation).
    Inline,
}

/// Options of [`Storage::open`].
#[derive(Clone, Debug)]
pub struct StorageOptions {
    /// Largest size the environment may grow to (LMDB reserves address space, not disk).
    pub map_size_bytes: usize,
    /// Most named databases.
    pub max_dbs: u32,
    /// How writes run.
    pub writes: WriteMode,
    /// The write-ahead log's segment size and record bound.
    pub wal: WalOptions,
    /// A checkpoint is due once the tail took this many bytes of changes. Bounds the memory
    /// the tail holds (about four times this: the changes being checkpointed and those since, each
    /// up to twice this) and what a restart replays.
    pub checkpoint_bytes: usize,
    /// A checkpoint is also due this long after the last one, with changes pending
    /// ([`WriteMode::Thread`] only: the simulation's runs must not depend on the wall clock).
    pub checkpoint_interval: Duration,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self::for_map(1 << 30, WriteMode::Thread)
    }
}

impl StorageOptions {
    /// The options for a map of `map_size_bytes` written in `writes` mode:
    /// - a checkpoint every 64th of the map, at most 16 MiB, so the tail's changes, counted in
    ///   [`Storage::usage`], stay well inside the headroom `storage.writes_percent` leaves;
    /// - log segments as large (at least 1 MiB), their zeros written ahead of time by a thread
    ///   of their own ([`WalOptions::spare_segments`]); a checkpoint frees about one;
    /// - in the simulation ([`WriteMode::Inline`]), segments of 1 MiB and checkpoints every
    ///   256 KiB: a run holds little data, and many runs share a machine's memory and disk;
    /// - records up to the largest message plus its framing: one write's changes came in one
    ///   message (a command, an entry or a snapshot page).
    pub fn for_map(map_size_bytes: usize, writes: WriteMode) -> Self {
        let inline = writes == WriteMode::Inline;
        let max_record_bytes =
            u32::try_from(codec::MAX_STORED_BYTES + (1 << 20)).unwrap_or(u32::MAX);
        let checkpoint_bytes = if inline {
            256 << 10
        } else {
            (map_size_bytes / 64).clamp(64 << 10, 16 << 20)
        };
        Self {
            map_size_bytes,
            max_dbs: 32,
            writes,
            wal: WalOptions {
                segment_bytes: checkpoint_bytes.max(1 << 20) as u64,
                max_record_bytes,
                spare_segments: !inline,
            },
            checkpoint_bytes,
            checkpoint_interval: Duration::from_secs(1),
        }
    }
}

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The data directory could not be created or the environment opened.
    #[error("cannot open data directory {path}: {message}")]
    Open {
        /// The data directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The data directory was written by an incompatible build.
    #[error("data directory {path} was written with storage layout {found} but this build reads layout {expected}: start with an empty data directory or run a matching build")]
    IncompatibleLayout {
        /// The data directory.
        path: PathBuf,
        /// Layout found on disk.
        found: u32,
        /// Layout this build reads.
        expected: u32,
    },
    /// The data directory belongs to another cluster, or to this cluster with another shard
    /// count or party managers (which would silently re-home keys or parties).
    #[error("data directory {path} belongs to {stored}, but this node is configured for {configured}: use that cluster's cluster.toml or an empty data directory")]
    WrongCluster {
        /// The data directory.
        path: PathBuf,
        /// What the directory was created for.
        stored: String,
        /// What the configuration says.
        configured: String,
    },
    /// An LMDB operation failed.
    #[error("storage error: {0}")]
    Heed(#[from] heed::Error),
    /// The write-ahead log failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The batch this write belonged to failed to become durable.
    #[error("storage commit failed: {0}")]
    Commit(String),
    /// The writer thread has stopped (the node is shutting down, or the writer failed).
    #[error("storage writer has stopped")]
    WriterStopped,
}

/// How much of the LMDB map holds data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of pages in use (free pages, reusable by later writes, not counted), plus what
    /// the changes not yet checkpointed will take.
    pub used_bytes: u64,
    /// The map's size: no write can make the data larger.
    pub map_bytes: u64,
}

impl Usage {
    /// Whole percent of the map in use.
    pub fn percent(&self) -> u8 {
        let percent = self.used_bytes.saturating_mul(100) / self.map_bytes.max(1);
        u8::try_from(percent.min(100)).unwrap_or(100)
    }

    /// For messages: `"93 % full (952 of 1024 MiB)"`.
    pub fn describe(&self) -> String {
        format!(
            "{} % full ({} of {} MiB)",
            self.percent(),
            self.used_bytes >> 20,
            self.map_bytes >> 20
        )
    }
}

/// Counters of the writer, to observe batching.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Write jobs completed.
    pub jobs: u64,
    /// Log syncs (one per batch).
    pub commits: u64,
    /// Checkpoints into LMDB.
    pub checkpoints: u64,
}

/// A named database of byte keys and values, read and written through the tail.
#[derive(Clone, Debug)]
pub struct Table {
    name: Arc<str>,
    db: Database<Bytes, Bytes>,
}

/// Handle on the node's store; cheap to clone.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    writer: Option<mpsc::Sender<Job>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What the writer thread, the checkpoint thread and every handle share.
struct Shared {
    env: Env,
    meta: Database<Str, Bytes>,
    options: StorageOptions,
    /// The changes not yet in LMDB: read by every read, changed only by the writer.
    tails: RwLock<Tails>,
    /// The log and the writer's bookkeeping; held for a whole batch.
    log: Mutex<Log>,
    /// The checkpoint being written by its own thread, if any.
    checkpointing: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The newest LSN a finished checkpoint covers.
    checkpointed: AtomicU64,
    /// Why the last checkpoint failed (the map is full, say): writes are refused until one
    /// succeeds.
    checkpoint_failure: Mutex<Option<String>>,
    stats: Stats,
    /// Cancelled when the writer or a checkpoint failed: no write can succeed any more.
    writer_failed: CancellationToken,
}

/// The tail: the changes since the last checkpoint, by table. While a checkpoint is written,
/// the changes it covers are `frozen` and new ones go to `active`.
#[derive(Default)]
struct Tails {
    active: Batch,
    /// The changes a checkpoint is writing, and the last LSN they cover.
    frozen: Option<(Arc<Batch>, u64)>,
}

/// Changes by table.
type Batch = BTreeMap<Arc<str>, Layer>;

impl Tails {
    fn bytes(&self) -> usize {
        let frozen = self.frozen.as_ref().map_or(0, |(f, _)| layers_bytes(f));
        layers_bytes(&self.active) + frozen
    }
}

fn layers_bytes(layers: &Batch) -> usize {
    layers.values().map(Layer::bytes).sum()
}

/// The log and what only the writer changes.
struct Log {
    wal: Wal,
    /// When the last checkpoint was started; never read in the simulation
    /// ([`WriteMode::Inline`]), where even reading the clock can move a run's time.
    last_checkpoint: Option<Instant>,
    /// The newest LSN the log was cut to (a checkpoint covered it).
    cut_to: u64,
}

/// The writer's counters and the map's use, shared with `/metrics` (a prometheus metric is a
/// shared atomic).
#[derive(Default)]
struct Stats {
    jobs: Counter,
    commits: Counter,
    checkpoints: Counter,
    used_bytes: Gauge,
    map_bytes: Gauge,
    tail_bytes: Gauge,
    /// Writes queued for the writer thread, refreshed when `/metrics` is scraped.
    queued: Gauge,
}

/// Stages one write against the batch's view and returns what to do once the batch's sync is
/// known (`None` = durable, `Some(reason)` = not).
type Job = Box<dyn FnOnce(&mut Staged) -> Completion + Send>;
type Completion = Box<dyn FnOnce(Option<&str>) + Send>;

/// A consistent read of the store: LMDB's snapshot seen through the tail.
pub struct View<'a> {
    rtxn: RoTxn<'a, heed::WithTls>,
    tails: RwLockReadGuard<'a, Tails>,
}

impl View<'_> {
    /// The layers of `table`, newest first.
    fn layers(&self, table: &Table) -> [&Layer; 2] {
        let frozen = self.tails.frozen.as_ref().map(|(f, _)| f);
        [
            self.tails.active.get(&table.name).unwrap_or(&tail::EMPTY),
            frozen
                .and_then(|f| f.get(&table.name))
                .unwrap_or(&tail::EMPTY),
        ]
    }

    /// One key's value.
    pub fn get(&self, table: &Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(tail::get(&self.layers(table), table.db, &self.rtxn, key)?)
    }

    /// Calls `visit` with the keys starting with `prefix` in order, from `prefix` on or after
    /// `after`, until it breaks.
    pub fn scan(
        &self,
        table: &Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        visit: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        Ok(tail::scan(
            &self.layers(table),
            table.db,
            &self.rtxn,
            prefix,
            after,
            visit,
        )?)
    }

    /// Up to `limit` keys of [`Self::scan`], collected.
    pub fn range(
        &self,
        table: &Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError> {
        Ok(tail::range(
            &self.layers(table),
            table.db,
            &self.rtxn,
            prefix,
            after,
            limit,
        )?)
    }
}

/// One write being staged: it reads the store as the writes before it in the batch left it,
/// and its changes join the batch only if it succeeds.
pub struct Staged<'v, 'e, 'b> {
    view: &'v View<'e>,
    batch: &'b Batch,
    changes: Batch,
    /// Whether the write succeeded, so its changes join the batch.
    kept: bool,
}

impl Staged<'_, '_, '_> {
    /// One key's value, with this write's own changes.
    pub fn get(&self, table: &Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let [active, frozen] = self.view.layers(table);
        let layers = [
            self.changes.get(&table.name).unwrap_or(&tail::EMPTY),
            self.batch.get(&table.name).unwrap_or(&tail::EMPTY),
            active,
            frozen,
        ];
        Ok(tail::get(&layers, table.db, &self.view.rtxn, key)?)
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, table: &Table, key: &[u8], value: &[u8]) {
        self.layer(table).put(key, value);
    }

    /// Deletes `key`.
    pub fn delete(&mut self, table: &Table, key: &[u8]) {
        self.layer(table).delete(key);
    }

    /// Deletes every key from `start` (included) to `end` (excluded; `None`: no end).
    pub fn delete_range(&mut self, table: &Table, start: &[u8], end: Option<&[u8]>) {
        self.layer(table).delete_range(start, end);
    }

    fn layer(&mut self, table: &Table) -> &mut Layer {
        self.changes.entry(table.name.clone()).or_default()
    }

    fn keep(&mut self) {
        self.kept = true;
    }
}

impl Storage {
    /// Opens (creating if needed) the environment in `path`, checks its layout version and
    /// replays the write-ahead log past the checkpoint. Blocking: call it from a blocking
    /// context (start-up or `spawn_blocking`).
    pub fn open(path: &Path, options: StorageOptions) -> Result<Self, StorageError> {
        let open_error = |message: String| StorageError::Open {
            path: path.to_owned(),
            message,
        };
        std::fs::create_dir_all(path).map_err(|e| open_error(e.to_string()))?;
        // SAFETY: LMDB requires that the same environment is not opened twice in one process
        // (heed refuses that with an error) and that the files are not modified by anything but
        // LMDB; the data directory belongs to this node alone.
        let env = unsafe {
            EnvOpenOptions::new()
                .map_size(options.map_size_bytes)
                .max_dbs(options.max_dbs)
                .open(path)
        }
        .map_err(|e| open_error(e.to_string()))?;
        let (meta, checkpoint) = {
            let mut wtxn = env.write_txn()?;
            let meta: Database<Str, Bytes> = env.create_database(&mut wtxn, Some(META_DB))?;
            check_layout(path, &meta, &mut wtxn)?;
            let checkpoint = read_u64(meta.get(&wtxn, CHECKPOINT_KEY)?);
            wtxn.commit()?;
            (meta, checkpoint)
        };
        let (wal, active) = replay(&path.join(WAL_DIR), options.wal, checkpoint)?;
        let stats = Stats::default();
        let shared = Arc::new(Shared {
            env,
            meta,
            tails: RwLock::new(Tails {
                active,
                frozen: None,
            }),
            log: Mutex::new(Log {
                wal,
                last_checkpoint: (options.writes == WriteMode::Thread).then(Instant::now),
                cut_to: checkpoint,
            }),
            checkpointing: Mutex::new(None),
            checkpointed: AtomicU64::new(checkpoint),
            checkpoint_failure: Mutex::new(None),
            stats,
            writer_failed: CancellationToken::new(),
            options,
        });
        let (writer, thread) = match shared.options.writes {
            WriteMode::Inline => (None, None),
            WriteMode::Thread => {
                let (tx, rx) = mpsc::channel(WRITE_QUEUE);
                let for_thread = shared.clone();
                let thread = std::thread::Builder::new()
                    .name("wal-writer".into())
                    .spawn(move || run_writer(for_thread, rx))
                    .map_err(|e| open_error(format!("cannot start the writer thread: {e}")))?;
                (Some(tx), Some(thread))
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                writer,
                thread: Mutex::new(thread),
            }),
        })
    }

    /// How full the map is, counting the changes not yet checkpointed; also refreshes the
    /// `troupe_storage_*_bytes` gauges. Cheap (a read transaction and one statistics call per
    /// named database).
    pub fn usage(&self) -> Result<Usage, StorageError> {
        let shared = &self.inner.shared;
        let tail_bytes = read_lock(&shared.tails).bytes() as u64;
        let usage = Usage {
            used_bytes: shared.env.non_free_pages_size()? + tail_bytes * TAIL_PAGE_FACTOR,
            map_bytes: shared.env.info().map_size as u64,
        };
        let gauge = |bytes: u64| i64::try_from(bytes).unwrap_or(i64::MAX);
        shared.stats.used_bytes.set(gauge(usage.used_bytes));
        shared.stats.map_bytes.set(gauge(usage.map_bytes));
        shared.stats.tail_bytes.set(gauge(tail_bytes));
        Ok(usage)
    }

    /// Refreshes `troupe_storage_write_queue`: the writes waiting for the writer thread, which
    /// takes every one queued into its next sync (at most [`WRITE_QUEUE`]; a writer finding
    /// the queue full waits). Stays 0 without a writer thread ([`WriteMode::Inline`]).
    pub fn observe_write_queue(&self) {
        let queued = self
            .inner
            .writer
            .as_ref()
            .map_or(0, |writer| writer.max_capacity() - writer.capacity());
        self.inner
            .shared
            .stats
            .queued
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
    }

    /// Resolves if the writer thread panicked or the log failed. The node must then stop:
    /// every later write fails, so it could only limp on, refusing writes while it still owns
    /// shards.
    pub async fn writer_failed(&self) {
        self.inner.shared.writer_failed.cancelled().await
    }

    /// Whether everything runs on the caller's task ([`WriteMode::Inline`], the simulation):
    /// then long reads run in place too.
    pub fn runs_inline(&self) -> bool {
        self.inner.writer.is_none()
    }

    /// Opens or creates the table `name`. Blocking (it takes LMDB's write lock briefly): call
    /// it at start-up.
    pub fn table(&self, name: &str) -> Result<Table, StorageError> {
        let env = &self.inner.shared.env;
        let mut wtxn = env.write_txn()?;
        let db = env.create_database(&mut wtxn, Some(name))?;
        wtxn.commit()?;
        Ok(Table {
            name: name.into(),
            db,
        })
    }

    /// Runs `f` on a consistent view of the store. Reads are lock-free memory-map lookups and
    /// lookups in the tail, cheap enough for async threads.
    pub fn read<R, E>(&self, f: impl FnOnce(&View) -> Result<R, E>) -> Result<R, E>
    where
        E: From<StorageError>,
    {
        let shared = &self.inner.shared;
        // The tail first, then LMDB: a checkpoint clears the tail only after its LMDB commit,
        // so a view that finds the tail cleared also finds LMDB with those changes, and one
        // that finds it full reads the same with or without them in LMDB.
        let tails = read_lock(&shared.tails);
        let rtxn = shared.env.read_txn().map_err(StorageError::from)?;
        f(&View { rtxn, tails })
    }

    /// Stages `f`'s changes and returns once they are durable. If `f` fails, none of its
    /// changes are kept and other writes are unaffected.
    pub async fn write<R, E, F>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&mut Staged) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StorageError> + Send + 'static,
    {
        let (reply, mut answer) = oneshot::channel::<Result<R, E>>();
        let job: Job = Box::new(move |staged| {
            let result = f(staged);
            if result.is_ok() {
                staged.keep();
            }
            Box::new(move |commit_failure: Option<&str>| {
                let outcome = match (result, commit_failure) {
                    (Ok(_), Some(reason)) => Err(E::from(StorageError::Commit(reason.to_owned()))),
                    (result, _) => result,
                };
                // The caller may have gone away; the write is durable either way.
                let _ = reply.send(outcome);
            })
        });
        let Some(writer) = &self.inner.writer else {
            let shared = &self.inner.shared;
            let mut log = lock(&shared.log);
            commit_batch(shared, &mut log, vec![job]);
            drop(log);
            return answer
                .try_recv()
                .map_err(|_| E::from(StorageError::WriterStopped))?;
        };
        writer
            .send(job)
            .await
            .map_err(|_| E::from(StorageError::WriterStopped))?;
        answer
            .await
            .map_err(|_| E::from(StorageError::WriterStopped))?
    }

    /// Binds the data directory to a cluster name and shard layout on first use, and refuses a
    /// directory created for another cluster or another layout. `shards` describes the layout
    /// (`layout::ShardLayout::identity`: the shard count and the party managers, which decide
    /// which shard holds which key).
    pub fn check_identity(&self, cluster: &str, shards: &str) -> Result<(), StorageError> {
        let shared = &self.inner.shared;
        let configured = format!("cluster {cluster:?} with {shards}");
        let mut wtxn = shared.env.write_txn()?;
        match shared.meta.get(&wtxn, IDENTITY_KEY)? {
            None => shared
                .meta
                .put(&mut wtxn, IDENTITY_KEY, configured.as_bytes())?,
            Some(stored) if stored == configured.as_bytes() => {}
            Some(stored) => {
                return Err(StorageError::WrongCluster {
                    path: shared.env.path().to_owned(),
                    stored: String::from_utf8_lossy(stored).into_owned(),
                    configured,
                })
            }
        }
        wtxn.commit()?;
        Ok(())
    }

    /// A new incarnation number for this node: above every one it used before, and at least
    /// `floor`. Durable before it returns.
    pub fn next_generation(&self, floor: u64) -> Result<u64, StorageError> {
        let shared = &self.inner.shared;
        let mut wtxn = shared.env.write_txn()?;
        let stored = read_u64(shared.meta.get(&wtxn, GENERATION_KEY)?);
        let next = stored.saturating_add(1).max(floor);
        shared
            .meta
            .put(&mut wtxn, GENERATION_KEY, &next.to_be_bytes())?;
        wtxn.commit()?;
        Ok(next)
    }

    /// Registers the writer's counters (`troupe_storage_*`) in the node's registry.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let stats = &self.inner.shared.stats;
        registry.register(
            "troupe_storage_writes",
            "Writes made durable by the storage writer",
            stats.jobs.clone(),
        );
        registry.register(
            "troupe_storage_commits",
            "Write-ahead log syncs of the storage writer (writes divided by commits: mean batch)",
            stats.commits.clone(),
        );
        registry.register(
            "troupe_storage_checkpoints",
            "Checkpoints of the write-ahead log's changes into LMDB",
            stats.checkpoints.clone(),
        );
        registry.register(
            "troupe_storage_used_bytes",
            "Bytes of the LMDB map holding data, with the changes not yet checkpointed (storage.writes_percent of the map size refuses new data)",
            stats.used_bytes.clone(),
        );
        registry.register(
            "troupe_storage_map_size_bytes",
            "Size of the LMDB map (storage.map_size_mb)",
            stats.map_bytes.clone(),
        );
        registry.register(
            "troupe_storage_tail_bytes",
            "Bytes of changes durable in the write-ahead log and not yet checkpointed into LMDB",
            stats.tail_bytes.clone(),
        );
        registry.register(
            "troupe_storage_write_queue",
            format!("Writes waiting for the storage writer thread (writers wait once {WRITE_QUEUE} are queued)"),
            stats.queued.clone(),
        );
    }

    /// Writer counters.
    pub fn stats(&self) -> WriteStats {
        let stats = &self.inner.shared.stats;
        WriteStats {
            jobs: stats.jobs.get(),
            commits: stats.commits.get(),
            checkpoints: stats.checkpoints.get(),
        }
    }

    /// Stops the writer after it has made every queued write durable, checkpoints the tail
    /// (so the next start replays little), then closes the environment cleanly. Other clones
    /// of this handle must be dropped first (otherwise the environment closes when the last
    /// one is dropped, and the next start replays the log).
    pub async fn close(self) {
        let Ok(inner) = Arc::try_unwrap(self.inner) else {
            warn!("storage closed while other handles are alive; it closes when they are dropped");
            return;
        };
        let Inner {
            shared,
            writer,
            thread,
        } = inner;
        let inline = writer.is_none();
        drop(writer);
        let thread = thread.into_inner().unwrap_or_else(|p| p.into_inner());
        let finish = move || {
            if let Some(thread) = thread {
                let _ = thread.join();
            }
            finish_checkpoints(&shared);
            let env = shared.env.clone();
            drop(shared);
            env.prepare_for_closing().wait();
        };
        if inline {
            // Inline mode (simulation): no extra OS thread allowed.
            finish();
        } else if let Err(error) = tokio::task::spawn_blocking(finish).await {
            warn!(%error, "closing storage failed");
        }
        debug!("storage closed");
    }
}

fn check_layout(
    path: &Path,
    meta: &Database<Str, Bytes>,
    wtxn: &mut heed::RwTxn,
) -> Result<(), StorageError> {
    match meta.get(wtxn, LAYOUT_KEY)? {
        None => meta.put(wtxn, LAYOUT_KEY, &LAYOUT_VERSION.to_be_bytes())?,
        Some(bytes) => {
            let found = <[u8; 4]>::try_from(bytes)
                .map(u32::from_be_bytes)
                .unwrap_or(u32::MAX);
            if found == LAYOUT_BEFORE_LOG {
                // The same tables, all in LMDB, and no log yet: it starts empty. Marked 5, so
                // an older build refuses the directory instead of missing what the log holds.
                meta.put(wtxn, LAYOUT_KEY, &LAYOUT_VERSION.to_be_bytes())?;
            } else if found != LAYOUT_VERSION {
                return Err(StorageError::IncompatibleLayout {
                    path: path.to_owned(),
                    found,
                    expected: LAYOUT_VERSION,
                });
            }
        }
    }
    Ok(())
}

/// A stored big-endian `u64`, 0 when absent (or not 8 bytes).
fn read_u64(bytes: Option<&[u8]>) -> u64 {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes)
}

// Locks: what they guard are plain values no panic leaves half-changed (the writer's panic
// stops the node anyway), so a poisoned lock is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read_lock<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_lock<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
