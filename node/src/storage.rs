//! The node's LMDB environment (heed): opened once per node in its data directory, with a stored
//! layout version, named databases per purpose, and writes off the async threads.
//!
//! Writes go through [`Storage::write`]. In production ([`WriteMode::Thread`]) a dedicated
//! writer thread takes every job waiting in its queue, runs each in its own nested transaction
//! (so one job's error aborts only that job) and commits them together: one fsync for many
//! writes (group commit), without delaying a lone write. Callers hear back only after the
//! commit, so success always means durable. The simulation uses [`WriteMode::Inline`], because
//! an extra OS thread would make runs nondeterministic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use heed::types::{Bytes, Str};
use heed::{Database, Env, EnvOpenOptions, RoTxn, RwTxn};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

/// Version of the on-disk layout; bumped on any incompatible change of what is stored.
/// 3: a job is one record whose id derives from its object id (no de-duplication index).
/// 4: shard records keyed by a 2-byte shard id (was 4 bytes).
pub const LAYOUT_VERSION: u32 = 4;

const META_DB: &str = "meta";
const LAYOUT_KEY: &str = "layout_version";
const GENERATION_KEY: &str = "generation";
const IDENTITY_KEY: &str = "cluster_identity";
/// Writes waiting for the writer thread before callers wait (back-pressure).
const WRITE_QUEUE: usize = 1024;

/// How writes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// On a dedicated writer thread with group commit (production).
    Thread,
    /// On the calling task, one transaction per write (deterministic simulation).
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
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            map_size_bytes: 1 << 30,
            max_dbs: 32,
            writes: WriteMode::Thread,
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
    /// The batch this write belonged to failed to commit: the write is not durable.
    #[error("storage commit failed: {0}")]
    Commit(String),
    /// The writer thread has stopped (the node is shutting down, or the writer failed).
    #[error("storage writer has stopped")]
    WriterStopped,
}

/// How much of the LMDB map holds data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of pages in use (free pages, reusable by later writes, not counted).
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
    /// Commits (one per batch).
    pub commits: u64,
}

/// Handle on the node's environment; cheap to clone.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

struct Inner {
    env: Env,
    meta: Database<Str, Bytes>,
    writer: Option<mpsc::Sender<Job>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    stats: Arc<Stats>,
    /// Cancelled when the writer thread panicked: no write can succeed any more.
    writer_failed: CancellationToken,
}

/// The writer's counters and the map's use, shared with `/metrics` (a prometheus metric is a
/// shared atomic).
#[derive(Default)]
struct Stats {
    jobs: Counter,
    commits: Counter,
    used_bytes: Gauge,
    map_bytes: Gauge,
    /// Writes queued for the writer thread, refreshed when `/metrics` is scraped.
    queued: Gauge,
}

/// Runs inside the batch's parent transaction and returns what to do once the batch commit is
/// known (`None` = committed, `Some(reason)` = not durable).
type Job = Box<dyn FnOnce(&Env, &mut RwTxn) -> Completion + Send>;
type Completion = Box<dyn FnOnce(Option<&str>) + Send>;

impl Storage {
    /// Opens (creating if needed) the environment in `path` and checks its layout version.
    /// Blocking: call it from a blocking context (start-up or `spawn_blocking`).
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
        let meta = {
            let mut wtxn = env.write_txn()?;
            let meta: Database<Str, Bytes> = env.create_database(&mut wtxn, Some(META_DB))?;
            check_layout(path, &meta, &mut wtxn)?;
            wtxn.commit()?;
            meta
        };
        let stats = Arc::new(Stats::default());
        let writer_failed = CancellationToken::new();
        let (writer, thread) = match options.writes {
            WriteMode::Inline => (None, None),
            WriteMode::Thread => {
                let (tx, rx) = mpsc::channel(WRITE_QUEUE);
                let (env, stats) = (env.clone(), stats.clone());
                let failed = writer_failed.clone();
                let thread = std::thread::Builder::new()
                    .name("lmdb-writer".into())
                    .spawn(move || run_writer(env, rx, stats, failed))
                    .map_err(|e| open_error(format!("cannot start the writer thread: {e}")))?;
                (Some(tx), Some(thread))
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                env,
                meta,
                writer,
                thread: std::sync::Mutex::new(thread),
                stats,
                writer_failed,
            }),
        })
    }

    /// How full the map is; also refreshes the `troupe_storage_*_bytes` gauges. Cheap (a read
    /// transaction and one statistics call per named database).
    pub fn usage(&self) -> Result<Usage, StorageError> {
        let env = &self.inner.env;
        let usage = Usage {
            used_bytes: env.non_free_pages_size()?,
            map_bytes: env.info().map_size as u64,
        };
        let gauge = |bytes: u64| i64::try_from(bytes).unwrap_or(i64::MAX);
        self.inner.stats.used_bytes.set(gauge(usage.used_bytes));
        self.inner.stats.map_bytes.set(gauge(usage.map_bytes));
        Ok(usage)
    }

    /// Refreshes `troupe_storage_write_queue`: the writes waiting for the writer thread, which
    /// takes every one queued into its next commit (at most [`WRITE_QUEUE`]; a writer finding
    /// the queue full waits). Stays 0 without a writer thread ([`WriteMode::Inline`]).
    pub fn observe_write_queue(&self) {
        let queued = self
            .inner
            .writer
            .as_ref()
            .map_or(0, |writer| writer.max_capacity() - writer.capacity());
        self.inner
            .stats
            .queued
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
    }

    /// Resolves if the writer thread panicked. The node must then stop: every later write
    /// fails, so it could only limp on, refusing writes while it still owns shards.
    pub async fn writer_failed(&self) {
        self.inner.writer_failed.cancelled().await
    }

    /// Whether everything runs on the caller's task ([`WriteMode::Inline`], the simulation):
    /// then long reads run in place too.
    pub fn runs_inline(&self) -> bool {
        self.inner.writer.is_none()
    }

    /// The environment, for read transactions and opening databases.
    pub fn env(&self) -> &Env {
        &self.inner.env
    }

    /// Opens or creates the named database `name` with the given key and value codecs.
    /// Blocking (it takes LMDB's write lock briefly): call it at start-up or when opening a unit.
    pub fn database<KC: 'static, DC: 'static>(
        &self,
        name: &str,
    ) -> Result<Database<KC, DC>, StorageError> {
        let mut wtxn = self.inner.env.write_txn()?;
        let db = self.inner.env.create_database(&mut wtxn, Some(name))?;
        wtxn.commit()?;
        Ok(db)
    }

    /// Runs `f` in a read transaction. LMDB reads are lock-free memory-map lookups, cheap enough
    /// for async threads.
    pub fn read<R>(
        &self,
        f: impl FnOnce(&RoTxn) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        let rtxn = self.inner.env.read_txn()?;
        f(&rtxn)
    }

    /// Runs `f` in a write transaction and returns once its changes are durable. If `f` fails,
    /// none of its changes are kept and other writes are unaffected.
    pub async fn write<R, E, F>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&mut RwTxn) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StorageError> + Send + 'static,
    {
        let Some(writer) = &self.inner.writer else {
            return self.write_inline(f);
        };
        let (reply, answer) = oneshot::channel::<Result<R, E>>();
        let job: Job = Box::new(move |env, parent| {
            let result = run_nested(env, parent, f);
            Box::new(move |commit_failure: Option<&str>| {
                let outcome = match (result, commit_failure) {
                    (Ok(_), Some(reason)) => Err(E::from(StorageError::Commit(reason.to_owned()))),
                    (result, _) => result,
                };
                // The caller may have gone away; the write is durable either way.
                let _ = reply.send(outcome);
            })
        });
        writer
            .send(job)
            .await
            .map_err(|_| E::from(StorageError::WriterStopped))?;
        answer
            .await
            .map_err(|_| E::from(StorageError::WriterStopped))?
    }

    fn write_inline<R, E, F>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&mut RwTxn) -> Result<R, E>,
        E: From<StorageError>,
    {
        let mut wtxn = self.inner.env.write_txn().map_err(|e| E::from(e.into()))?;
        let result = f(&mut wtxn)?;
        wtxn.commit().map_err(|e| E::from(e.into()))?;
        self.inner.stats.jobs.inc();
        self.inner.stats.commits.inc();
        Ok(result)
    }

    /// Binds the data directory to a cluster name and shard layout on first use, and refuses a
    /// directory created for another cluster or another layout. `shards` describes the layout
    /// (`layout::ShardLayout::identity`: the shard count and the party managers, which decide
    /// which shard holds which key).
    pub fn check_identity(&self, cluster: &str, shards: &str) -> Result<(), StorageError> {
        let configured = format!("cluster {cluster:?} with {shards}");
        let mut wtxn = self.inner.env.write_txn()?;
        match self.inner.meta.get(&wtxn, IDENTITY_KEY)? {
            None => self
                .inner
                .meta
                .put(&mut wtxn, IDENTITY_KEY, configured.as_bytes())?,
            Some(stored) if stored == configured.as_bytes() => {}
            Some(stored) => {
                return Err(StorageError::WrongCluster {
                    path: self.inner.env.path().to_owned(),
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
        let mut wtxn = self.inner.env.write_txn()?;
        let stored = self
            .inner
            .meta
            .get(&wtxn, GENERATION_KEY)?
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_be_bytes);
        let next = stored.saturating_add(1).max(floor);
        self.inner
            .meta
            .put(&mut wtxn, GENERATION_KEY, &next.to_be_bytes())?;
        wtxn.commit()?;
        Ok(next)
    }

    /// Registers the writer's counters (`troupe_storage_*`) in the node's registry.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let stats = &self.inner.stats;
        registry.register(
            "troupe_storage_writes",
            "Writes committed by the storage writer",
            stats.jobs.clone(),
        );
        registry.register(
            "troupe_storage_commits",
            "LMDB commits of the storage writer (writes divided by commits: mean batch)",
            stats.commits.clone(),
        );
        registry.register(
            "troupe_storage_used_bytes",
            "Bytes of the LMDB map holding data (storage.writes_percent of the map size refuses new data)",
            stats.used_bytes.clone(),
        );
        registry.register(
            "troupe_storage_map_size_bytes",
            "Size of the LMDB map (storage.map_size_mb)",
            stats.map_bytes.clone(),
        );
        registry.register(
            "troupe_storage_write_queue",
            format!("Writes waiting for the storage writer thread (writers wait once {WRITE_QUEUE} are queued)"),
            stats.queued.clone(),
        );
    }

    /// Writer counters.
    pub fn stats(&self) -> WriteStats {
        WriteStats {
            jobs: self.inner.stats.jobs.get(),
            commits: self.inner.stats.commits.get(),
        }
    }

    /// Stops the writer after it has committed every queued write, then closes the environment
    /// cleanly. Other clones of this handle must be dropped first (otherwise the environment
    /// closes when the last one is dropped).
    pub async fn close(self) {
        let Ok(inner) = Arc::try_unwrap(self.inner) else {
            warn!("storage closed while other handles are alive; it closes when they are dropped");
            return;
        };
        let Inner {
            env,
            writer,
            thread,
            ..
        } = inner;
        let Some(writer) = writer else {
            // Inline mode (simulation): no thread to wait for, and no extra OS thread allowed.
            env.prepare_for_closing().wait();
            debug!("storage closed");
            return;
        };
        drop(writer);
        let thread = thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        let closed = tokio::task::spawn_blocking(move || {
            if let Some(thread) = thread {
                let _ = thread.join();
            }
            env.prepare_for_closing().wait();
        })
        .await;
        if let Err(error) = closed {
            warn!(%error, "closing storage failed");
        }
        debug!("storage closed");
    }
}

fn check_layout(
    path: &Path,
    meta: &Database<Str, Bytes>,
    wtxn: &mut RwTxn,
) -> Result<(), StorageError> {
    match meta.get(wtxn, LAYOUT_KEY)? {
        None => meta.put(wtxn, LAYOUT_KEY, &LAYOUT_VERSION.to_be_bytes())?,
        Some(bytes) => {
            let found = <[u8; 4]>::try_from(bytes)
                .map(u32::from_be_bytes)
                .unwrap_or(u32::MAX);
            if found != LAYOUT_VERSION {
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

/// Runs one job in a nested transaction of the batch: its changes join the batch only if it
/// succeeds.
fn run_nested<R, E, F>(env: &Env, parent: &mut RwTxn, f: F) -> Result<R, E>
where
    F: FnOnce(&mut RwTxn) -> Result<R, E>,
    E: From<StorageError>,
{
    let mut child = env
        .nested_write_txn(parent)
        .map_err(|e| E::from(e.into()))?;
    let result = f(&mut child)?;
    child.commit().map_err(|e| E::from(e.into()))?;
    Ok(result)
}

/// The writer thread's body: [`writer_loop`], and if that panics (a bug in a write job), an
/// error logged and `failed` cancelled, so the node stops instead of failing every write
/// without a word. The queue is dropped with the thread, so waiting writers get
/// [`StorageError::WriterStopped`] instead of hanging.
fn run_writer(env: Env, jobs: mpsc::Receiver<Job>, stats: Arc<Stats>, failed: CancellationToken) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        writer_loop(env, jobs, stats)
    }));
    if let Err(panic) = outcome {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        error!(%reason, "storage writer thread panicked: no write can succeed, stopping the node");
        failed.cancel();
    }
}

/// The writer thread: batches every queued job into one commit. Ends (dropping its `Env`) when
/// every `Storage` handle is gone.
fn writer_loop(env: Env, mut jobs: mpsc::Receiver<Job>, stats: Arc<Stats>) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < WRITE_QUEUE {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let count = batch.len() as u64;
        let (completions, failure) = match env.write_txn() {
            Ok(mut parent) => {
                let completions: Vec<Completion> = batch
                    .into_iter()
                    .map(|job| job(&env, &mut parent))
                    .collect();
                (completions, parent.commit().err().map(|e| e.to_string()))
            }
            Err(e) => {
                let reason = e.to_string();
                let completions = batch
                    .into_iter()
                    .map(|_| -> Completion { Box::new(|_| {}) })
                    .collect();
                warn!(%reason, "cannot start a write transaction");
                (completions, Some(reason))
            }
        };
        stats.jobs.inc_by(count);
        stats.commits.inc();
        for completion in completions {
            completion(failure.as_deref());
        }
    }
}

#[cfg(test)]
mod tests {
    use heed::byteorder::BigEndian;
    use heed::types::U64;

    use super::*;

    type Numbers = Database<U64<BigEndian>, U64<BigEndian>>;

    fn options(writes: WriteMode) -> StorageOptions {
        StorageOptions {
            map_size_bytes: 64 << 20,
            writes,
            ..StorageOptions::default()
        }
    }

    #[tokio::test]
    async fn reopening_keeps_data_and_bumps_the_generation() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = Storage::open(dir.path(), options(WriteMode::Thread)).expect("open");
        assert_eq!(storage.next_generation(0).expect("gen"), 1);
        assert_eq!(storage.next_generation(0).expect("gen"), 2);
        let db: Numbers = storage.database("numbers").expect("db");
        storage
            .write(move |txn| db.put(txn, &1, &10).map_err(StorageError::from))
            .await
            .expect("write");
        storage.close().await;
        let storage = Storage::open(dir.path(), options(WriteMode::Thread)).expect("reopen");
        assert_eq!(storage.next_generation(0).expect("gen"), 3);
        assert_eq!(
            storage.next_generation(1_000).expect("gen"),
            1_000,
            "the floor wins when higher"
        );
        let db: Numbers = storage.database("numbers").expect("db");
        assert_eq!(
            storage.read(|txn| Ok(db.get(txn, &1)?)).expect("read"),
            Some(10)
        );
        storage.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_write_stops_the_writer_loudly_and_no_later_write_hangs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = Storage::open(dir.path(), options(WriteMode::Thread)).expect("open");
        let panicked = storage
            .write(|_txn| -> Result<(), StorageError> { panic!("a bug in a write job") })
            .await;
        assert!(matches!(panicked, Err(StorageError::WriterStopped)));
        tokio::time::timeout(std::time::Duration::from_secs(10), storage.writer_failed())
            .await
            .expect("the failure is signalled");
        let db: Numbers = storage.database("numbers").expect("db");
        let later = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            storage.write(move |txn| db.put(txn, &1, &1).map_err(StorageError::from)),
        )
        .await
        .expect("a later write fails at once instead of hanging");
        assert!(matches!(later, Err(StorageError::WriterStopped)));
    }

    #[tokio::test]
    async fn usage_grows_with_the_data_and_a_full_map_fails_the_write_without_damage() {
        let dir = tempfile::tempdir().expect("temp dir");
        let small = StorageOptions {
            map_size_bytes: 1 << 20,
            ..options(WriteMode::Thread)
        };
        let storage = Storage::open(dir.path(), small.clone()).expect("open");
        let db: Database<U64<BigEndian>, Bytes> = storage.database("blobs").expect("db");
        let before = storage.usage().expect("usage");
        assert_eq!(before.map_bytes, 1 << 20);
        let mut stored = 0u64;
        let full = loop {
            let key = stored;
            let written = storage
                .write(move |txn| db.put(txn, &key, &[7u8; 8192]).map_err(StorageError::from))
                .await;
            match written {
                Ok(()) => stored += 1,
                Err(error) => break error,
            }
            assert!(stored < 1000, "a 1 MiB map took 8 MB");
        };
        assert!(full.to_string().contains("MDB_MAP_FULL"), "{full}");
        let after = storage.usage().expect("usage");
        assert!(
            after.used_bytes > before.used_bytes && after.percent() >= 80,
            "{after:?}"
        );
        storage.close().await;
        // Every acknowledged write is there after a reopen.
        let storage = Storage::open(dir.path(), small).expect("reopen");
        let db: Database<U64<BigEndian>, Bytes> = storage.database("blobs").expect("db");
        let count = storage.read(|txn| Ok(db.len(txn)?)).expect("count");
        assert_eq!(count, stored);
        storage.close().await;
    }

    #[test]
    fn a_data_directory_is_bound_to_its_cluster_name_and_shard_layout() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = Storage::open(dir.path(), options(WriteMode::Inline)).expect("open");
        storage
            .check_identity("prod", "64 shards")
            .expect("first use binds");
        storage
            .check_identity("prod", "64 shards")
            .expect("same identity");
        let err = storage
            .check_identity("prod", "128 shards")
            .expect_err("other shard count");
        assert!(
            err.to_string().contains("\"prod\" with 64 shards")
                && err.to_string().contains("128 shards"),
            "{err}"
        );
        assert!(storage.check_identity("staging", "64 shards").is_err());
    }

    #[tokio::test]
    async fn an_incompatible_layout_is_refused_with_both_versions_and_the_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = Storage::open(dir.path(), options(WriteMode::Inline)).expect("open");
        let meta = storage.inner.meta;
        storage
            .write(move |txn| {
                meta.put(txn, LAYOUT_KEY, &99u32.to_be_bytes())
                    .map_err(StorageError::from)
            })
            .await
            .expect("write");
        storage.close().await;
        let err = Storage::open(dir.path(), options(WriteMode::Inline))
            .err()
            .expect("refused");
        let text = err.to_string();
        assert!(matches!(
            err,
            StorageError::IncompatibleLayout {
                found: 99,
                expected: LAYOUT_VERSION,
                ..
            }
        ));
        assert!(
            text.contains("layout 99")
                && text.contains(&format!("layout {LAYOUT_VERSION}"))
                && text.contains(&dir.path().display().to_string()),
            "{text}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_all_durable_and_share_commits() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = Storage::open(dir.path(), options(WriteMode::Thread)).expect("open");
        let db: Numbers = storage.database("numbers").expect("db");
        // Keep the writer busy so the following writes queue up behind it, as under load.
        let slow = {
            let storage = storage.clone();
            tokio::spawn(async move {
                storage
                    .write(move |txn| {
                        std::thread::sleep(std::time::Duration::from_millis(300));
                        db.put(txn, &1_000, &0).map_err(StorageError::from)
                    })
                    .await
            })
        };
        let writes: Vec<_> = (0..199u64)
            .map(|i| {
                let storage = storage.clone();
                tokio::spawn(async move {
                    storage
                        .write(move |txn| db.put(txn, &i, &(i * 2)).map_err(StorageError::from))
                        .await
                })
            })
            .collect();
        slow.await.expect("task").expect("slow write");
        for write in writes {
            write.await.expect("task").expect("write");
        }
        let stats = storage.stats();
        assert_eq!(stats.jobs, 200);
        assert!(
            stats.commits < stats.jobs,
            "no batching happened: {stats:?}"
        );
        storage.close().await;
        let storage = Storage::open(dir.path(), options(WriteMode::Inline)).expect("reopen");
        // Database handles belong to one environment: open it again after reopening.
        let db: Numbers = storage.database("numbers").expect("db");
        let count = storage.read(|txn| Ok(db.len(txn)?)).expect("len");
        assert_eq!(count, 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_write_queue_gauge_counts_writes_waiting_behind_a_busy_writer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = Storage::open(dir.path(), options(WriteMode::Thread)).expect("open");
        let db: Numbers = storage.database("numbers").expect("db");
        let queued = |storage: &Storage| {
            storage.observe_write_queue();
            storage.inner.stats.queued.get()
        };
        assert_eq!(queued(&storage), 0);
        // A write that holds the writer thread until released.
        let (started, running) = oneshot::channel();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let busy = {
            let storage = storage.clone();
            tokio::spawn(async move {
                storage
                    .write(move |txn| {
                        let _ = started.send(());
                        let _ = gate.recv();
                        db.put(txn, &0, &0).map_err(StorageError::from)
                    })
                    .await
            })
        };
        running.await.expect("the writer runs the first write");
        let waiting: Vec<_> = (1..=5u64)
            .map(|i| {
                let storage = storage.clone();
                tokio::spawn(async move {
                    storage
                        .write(move |txn| db.put(txn, &i, &i).map_err(StorageError::from))
                        .await
                })
            })
            .collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while queued(&storage) < 5 {
            assert!(
                std::time::Instant::now() < deadline,
                "the writes never queued"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(queued(&storage), 5);
        release.send(()).expect("the writer waits");
        busy.await.expect("task").expect("busy write");
        for write in waiting {
            write.await.expect("task").expect("write");
        }
        assert_eq!(queued(&storage), 0, "the writer took them all");
        storage.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_leaves_no_trace_and_does_not_affect_its_batch() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = Storage::open(dir.path(), options(WriteMode::Thread)).expect("open");
        let db: Numbers = storage.database("numbers").expect("db");
        let writes = (0..50u64).map(|i| {
            let storage = storage.clone();
            tokio::spawn(async move {
                storage
                    .write(move |txn| {
                        db.put(txn, &i, &i)?;
                        if i % 2 == 1 {
                            return Err(StorageError::Commit("refused by the job".into()));
                        }
                        Ok(())
                    })
                    .await
            })
        });
        let results: Vec<bool> = futures_join(writes).await;
        assert_eq!(results.iter().filter(|ok| **ok).count(), 25);
        let keys: Vec<u64> = storage
            .read(|txn| {
                Ok(db
                    .iter(txn)?
                    .map(|kv| kv.map(|(k, _)| k))
                    .collect::<Result<_, _>>()?)
            })
            .expect("read");
        assert!(
            keys.iter().all(|k| k % 2 == 0) && keys.len() == 25,
            "{keys:?}"
        );
        storage.close().await;
    }

    async fn futures_join(
        tasks: impl Iterator<Item = tokio::task::JoinHandle<Result<(), StorageError>>>,
    ) -> Vec<bool> {
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.expect("task").is_ok());
        }
        out
    }

    #[tokio::test]
    async fn a_dropped_handle_releases_the_environment_for_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        for _ in 0..3 {
            let storage =
                Storage::open(dir.path(), options(WriteMode::Inline)).expect("open after drop");
            storage.next_generation(0).expect("gen");
            drop(storage);
        }
        let storage = Storage::open(dir.path(), options(WriteMode::Inline)).expect("open");
        assert_eq!(storage.next_generation(0).expect("gen"), 4);
    }
}
