//! The writer's side of the store: a batch of writes staged, appended to the log, synced and
//! shown to readers; checkpoints of the tail into LMDB; and the replay at start-up.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use heed::types::Bytes;
use heed::Database;
use tokio::sync::mpsc;
use tracing::{error, info, trace, warn};

use super::tail::TableChanges;
use super::{
    layers_bytes, lock, read_lock, write_lock, Batch, Job, Log, Shared, Staged, StorageError, View,
    WriteMode, CHECKPOINT_KEY, WRITE_QUEUE,
};
use crate::codec;
use crate::wal::{Wal, WalOptions};

/// Opens the log in `dir` and replays the records past `checkpoint` into a tail.
pub(super) fn replay(
    dir: &Path,
    options: WalOptions,
    checkpoint: u64,
) -> Result<(Wal, Batch), StorageError> {
    let mut active = Batch::new();
    let mut damaged = None;
    let wal = Wal::open(dir, options, checkpoint, |lsn, payload| {
        if damaged.is_some() {
            return;
        }
        match codec::decode::<Vec<TableChanges>>(payload, codec::Limit::Stored) {
            Ok(tables) => {
                for changes in tables {
                    let name: Arc<str> = changes.table.as_str().into();
                    active.entry(name).or_default().apply(changes);
                }
            }
            Err(error) => damaged = Some(format!("record {lsn}: {error}")),
        }
    })?;
    if let Some(reason) = damaged {
        return Err(StorageError::Open {
            path: dir.to_owned(),
            message: format!("the write-ahead log holds a record this build cannot read ({reason}): restore the node's data from a replica or run the build that wrote it"),
        });
    }
    if !active.is_empty() {
        info!(
            records = wal.next_lsn() - checkpoint - 1,
            "replayed the write-ahead log past the last checkpoint"
        );
    }
    Ok((wal, active))
}

/// The writer thread's body: [`writer_loop`], and if that panics (a bug in a write job), an
/// error logged and the failure signalled, so the node stops instead of failing every write
/// without a word. The queue is dropped with the thread, so waiting writers get
/// [`StorageError::WriterStopped`] instead of hanging.
pub(super) fn run_writer(shared: Arc<Shared>, jobs: mpsc::Receiver<Job>) {
    yield_to_wakers();
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| writer_loop(&shared, jobs)));
    if let Err(panic) = outcome {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        error!(%reason, "storage writer thread panicked: no write can succeed, stopping the node");
        shared.writer_failed.cancel();
    }
}

/// Asks the kernel not to let the writer thread preempt the thread that woke it (Linux's
/// `SCHED_BATCH`; nothing elsewhere). Where the writer shares a CPU with the runtime's worker,
/// a woken writer took the CPU at once, committed the one write queued, and slept on the disk:
/// 0.55 to 0.77 involuntary switches per write. Left to run until it waits, the worker queues
/// more writes first, and each sync covers more of them (decision 043: involuntary switches
/// 0.08 to 0.09 per write, CPU per write 10 to 15 % lower). A writer on a core of its own runs
/// at once either way.
fn yield_to_wakers() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sets the calling thread's own scheduling policy; `param` outlives the call.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
            warn!(error = %std::io::Error::last_os_error(), "cannot make the storage writer yield to the threads that wake it (SCHED_BATCH)");
        }
    }
}

/// The writer thread: batches every queued job into one sync. Ends when every `Storage`
/// handle is gone.
fn writer_loop(shared: &Arc<Shared>, mut jobs: mpsc::Receiver<Job>) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < WRITE_QUEUE {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut log = lock(&shared.log);
        commit_batch(shared, &mut log, batch);
    }
}

/// Stages every job of a batch against one view, makes their changes durable with one log
/// sync, shows them to readers, answers the jobs, and starts a checkpoint if one is due.
pub(super) fn commit_batch(shared: &Arc<Shared>, log: &mut Log, jobs: Vec<Job>) {
    shared.stats.jobs.inc_by(jobs.len() as u64);
    let refusal = refusal(shared, log);
    let tails = read_lock(&shared.tails);
    let view = match shared.env.read_txn() {
        Ok(rtxn) => View { rtxn, tails },
        Err(error) => {
            // Dropping the jobs answers their callers with `WriterStopped`.
            warn!(%error, "cannot start a read transaction for a batch of writes");
            return;
        }
    };
    let mut batch = Batch::new();
    let mut waiting = Vec::with_capacity(jobs.len());
    let mut appended = false;
    for job in jobs {
        let mut staged = Staged {
            view: &view,
            batch: &batch,
            changes: Batch::new(),
            kept: false,
        };
        let completion = job(&mut staged);
        let (changes, kept) = (staged.changes, staged.kept);
        let changed = changes.values().any(|layer| !layer.is_empty());
        if !kept {
            // The write failed on its own and changed nothing.
            completion(None);
        } else if let Some(reason) = &refusal {
            completion(Some(reason));
        } else if !changed {
            // It read the batch's changes: it stands or falls with them.
            waiting.push(completion);
        } else {
            match append(log, &changes) {
                Ok(()) => {
                    appended = true;
                    for (table, layer) in changes {
                        batch.entry(table).or_default().absorb(layer);
                    }
                    waiting.push(completion);
                }
                Err(reason) => completion(Some(&reason)),
            }
        }
    }
    drop(view);
    let failure = if appended {
        shared.stats.commits.inc();
        log.wal.sync().err().map(|e| e.to_string())
    } else {
        None
    };
    match &failure {
        None => {
            let mut tails = write_lock(&shared.tails);
            for (table, layer) in batch {
                tails.active.entry(table).or_default().absorb(layer);
            }
        }
        Some(reason) => {
            error!(%reason, "the write-ahead log failed: no write can succeed, stopping the node");
            shared.writer_failed.cancel();
        }
    }
    for completion in waiting {
        completion(failure.as_deref());
    }
    maybe_checkpoint(shared, log);
}

/// Adds one write's changes to the log as a record (written at the next sync).
fn append(log: &mut Log, changes: &Batch) -> Result<(), String> {
    let tables: Vec<TableChanges> = changes
        .iter()
        .filter(|(_, layer)| !layer.is_empty())
        .map(|(table, layer)| layer.changes(table))
        .collect();
    let payload = codec::encode(&tables).map_err(|e| e.to_string())?;
    log.wal.append(&payload).map_err(|e| e.to_string())?;
    Ok(())
}

/// Why writes are refused before they run, if they are.
fn refusal(shared: &Shared, log: &Log) -> Option<String> {
    if log.wal.is_poisoned() {
        return Some("the write-ahead log failed earlier: the node must restart".to_owned());
    }
    lock(&shared.checkpoint_failure)
        .as_ref()
        .map(|reason| format!("storage checkpoint failed: {reason}"))
}

/// Cuts the log a finished checkpoint covers, and starts the next checkpoint once the tail
/// took [`StorageOptions::checkpoint_bytes`] (or, on the writer thread, once
/// [`StorageOptions::checkpoint_interval`] passed with changes pending; a failed checkpoint is
/// tried again as often). A checkpoint still running is waited for only once the tail took
/// twice that, so memory stays bounded without holding writes up.
fn maybe_checkpoint(shared: &Arc<Shared>, log: &mut Log) {
    cut_log(shared, log);
    let options = &shared.options;
    let (active_bytes, failed) = {
        let tails = read_lock(&shared.tails);
        let failed = tails.frozen.is_some() && lock(&shared.checkpoint_failure).is_some();
        (layers_bytes(&tails.active), failed)
    };
    let inline = options.writes == WriteMode::Inline;
    let timely = log
        .last_checkpoint
        .is_some_and(|at| at.elapsed() >= options.checkpoint_interval);
    let due = active_bytes >= options.checkpoint_bytes
        || (timely && active_bytes > 0)
        || (failed && (inline || timely));
    if !due {
        return;
    }
    {
        let mut running = lock(&shared.checkpointing);
        if running.as_ref().is_some_and(|r| !r.is_finished()) {
            if active_bytes < 2 * options.checkpoint_bytes {
                return;
            }
            trace!("the tail took twice the checkpoint size: waiting for the running checkpoint");
        }
        if let Some(running) = running.take() {
            let _ = running.join();
        }
    }
    start_checkpoint(shared, log, inline);
}

/// Freezes the tail (unless a failed checkpoint left it frozen) and writes it into LMDB, here
/// (`inline`) or on a thread of its own.
fn start_checkpoint(shared: &Arc<Shared>, log: &mut Log, inline: bool) {
    if !inline {
        log.last_checkpoint = Some(Instant::now());
    }
    let (frozen, covers) = {
        let mut tails = write_lock(&shared.tails);
        if tails.frozen.is_none() {
            let covers = log.wal.next_lsn() - 1;
            tails.frozen = Some((Arc::new(std::mem::take(&mut tails.active)), covers));
        }
        match &tails.frozen {
            Some((frozen, covers)) => (frozen.clone(), *covers),
            None => return,
        }
    };
    if inline {
        checkpoint(shared, &frozen, covers);
        cut_log(shared, log);
        return;
    }
    let for_thread = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("wal-checkpoint".into())
        .spawn(move || checkpoint(&for_thread, &frozen, covers));
    match spawned {
        Ok(handle) => *lock(&shared.checkpointing) = Some(handle),
        Err(error) => {
            warn!(%error, "cannot start a checkpoint thread");
            *lock(&shared.checkpoint_failure) = Some(format!("no checkpoint thread: {error}"));
        }
    }
}

/// Writes `frozen` into one synced LMDB transaction that records `covers`, the last LSN it
/// holds; then readers stop consulting it.
fn checkpoint(shared: &Shared, frozen: &Batch, covers: u64) {
    let written = (|| -> Result<(), StorageError> {
        let mut wtxn = shared.env.write_txn()?;
        for (name, layer) in frozen {
            let db: Database<Bytes, Bytes> = shared.env.create_database(&mut wtxn, Some(name))?;
            layer.write_to(db, &mut wtxn)?;
        }
        shared
            .meta
            .put(&mut wtxn, CHECKPOINT_KEY, &covers.to_be_bytes())?;
        wtxn.commit()?;
        Ok(())
    })();
    match written {
        Ok(()) => {
            write_lock(&shared.tails).frozen = None;
            shared.checkpointed.store(covers, Ordering::Release);
            *lock(&shared.checkpoint_failure) = None;
            shared.stats.checkpoints.inc();
            trace!(
                covers,
                bytes = layers_bytes(frozen),
                "checkpointed the tail into LMDB"
            );
        }
        Err(error) => {
            error!(%error, "a checkpoint into LMDB failed: writes are refused until one succeeds");
            *lock(&shared.checkpoint_failure) = Some(error.to_string());
        }
    }
}

/// Deletes the log segments a finished checkpoint covers.
fn cut_log(shared: &Shared, log: &mut Log) {
    let covered = shared.checkpointed.load(Ordering::Acquire);
    if covered <= log.cut_to {
        return;
    }
    match log.wal.remove_before(covered + 1) {
        Ok(_) => log.cut_to = covered,
        Err(error) => warn!(%error, "cannot delete log segments a checkpoint covers"),
    }
}

/// At close: waits for a running checkpoint, then checkpoints what is left, so the next
/// start replays nothing.
pub(super) fn finish_checkpoints(shared: &Arc<Shared>) {
    if let Some(running) = lock(&shared.checkpointing).take() {
        let _ = running.join();
    }
    let mut log = lock(&shared.log);
    // Twice: a failed checkpoint's frozen changes first, then the active ones.
    for _ in 0..2 {
        let pending = {
            let tails = read_lock(&shared.tails);
            tails.frozen.is_some() || tails.active.values().any(|l| !l.is_empty())
        };
        if pending && !log.wal.is_poisoned() {
            start_checkpoint(shared, &mut log, true);
        }
    }
}
