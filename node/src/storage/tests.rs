//! The store against real LMDB files and logs: durability across restarts and crashes,
//! checkpoints beside writes, group commit, and failures.

use std::sync::atomic::Ordering;

use super::*;

fn options(writes: WriteMode) -> StorageOptions {
    StorageOptions::for_map(64 << 20, writes)
}

fn key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

/// Writes `value` under `key(i)` in `table`.
async fn put(storage: &Storage, table: &Table, i: u64, value: Vec<u8>) -> Result<(), StorageError> {
    let table = table.clone();
    storage
        .write(move |txn| {
            txn.put(&table, &key(i), &value);
            Ok::<_, StorageError>(())
        })
        .await
}

fn get(storage: &Storage, table: &Table, i: u64) -> Option<Vec<u8>> {
    storage.read(|view| view.get(table, &key(i))).expect("read")
}

/// The store in `dir` opened again, inline, with its `numbers` table.
fn reopen(dir: &tempfile::TempDir) -> (Storage, Table) {
    let storage = Storage::open(dir.path(), options(WriteMode::Inline)).expect("reopen");
    let numbers = storage.table("numbers").expect("table");
    (storage, numbers)
}

fn count(storage: &Storage, table: &Table) -> usize {
    storage
        .read(|view| Ok::<_, StorageError>(view.range(table, &[], None, usize::MAX)?.len()))
        .expect("count")
}

#[tokio::test]
async fn reopening_keeps_data_and_bumps_the_generation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = Storage::open(dir.path(), options(WriteMode::Thread)).expect("open");
    assert_eq!(storage.next_generation(0).expect("gen"), 1);
    assert_eq!(storage.next_generation(0).expect("gen"), 2);
    let numbers = storage.table("numbers").expect("table");
    put(&storage, &numbers, 1, b"ten".to_vec())
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
    let numbers = storage.table("numbers").expect("table");
    assert_eq!(get(&storage, &numbers, 1), Some(b"ten".to_vec()));
    storage.close().await;
}

#[tokio::test]
async fn acknowledged_writes_survive_a_crash_before_any_checkpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = Storage::open(dir.path(), options(WriteMode::Inline)).expect("open");
    let numbers = storage.table("numbers").expect("table");
    for i in 0..100 {
        put(&storage, &numbers, i, vec![1; 100])
            .await
            .expect("write");
    }
    let last = storage.table("numbers").expect("table");
    storage
        .write(move |txn| {
            txn.delete_range(&last, &key(90), None);
            txn.delete(&last, &key(5));
            Ok::<_, StorageError>(())
        })
        .await
        .expect("delete");
    assert_eq!(
        storage.stats().checkpoints,
        0,
        "all of it is in the log and the tail"
    );
    // No close: what a killed process leaves.
    drop(storage);
    let (storage, numbers) = reopen(&dir);
    assert_eq!(count(&storage, &numbers), 89);
    assert_eq!(get(&storage, &numbers, 5), None);
    assert_eq!(get(&storage, &numbers, 89), Some(vec![1; 100]));
    assert_eq!(get(&storage, &numbers, 90), None);
}

#[tokio::test]
async fn checkpoints_move_the_tail_into_lmdb_and_cut_the_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = Storage::open(dir.path(), options(WriteMode::Inline)).expect("open");
    let numbers = storage.table("numbers").expect("table");
    // 4 MiB through 256 KiB checkpoints and 1 MiB segments.
    for i in 0..1024 {
        put(&storage, &numbers, i % 300, vec![i as u8; 4096])
            .await
            .expect("write");
    }
    let stats = storage.stats();
    assert!(stats.checkpoints >= 8, "{stats:?}");
    let segments = lock(&storage.inner.shared.log).wal.segment_count();
    assert!(segments <= 2, "the log was not cut: {segments} segments");
    let tail = read_lock(&storage.inner.shared.tails).bytes();
    assert!(tail < 256 << 10, "the tail holds {tail} bytes");
    drop(storage);
    let (storage, numbers) = reopen(&dir);
    assert_eq!(count(&storage, &numbers), 300);
    // The last write of key 1023 % 300 = 123 wins.
    assert_eq!(
        get(&storage, &numbers, 123),
        Some(vec![(1023 % 256) as u8; 4096])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_miss_a_write_while_checkpoints_run_beside_new_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let small = StorageOptions {
        checkpoint_bytes: 32 << 10,
        ..options(WriteMode::Thread)
    };
    let storage = Storage::open(dir.path(), small).expect("open");
    let numbers = storage.table("numbers").expect("table");
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (storage, numbers, done) = (storage.clone(), numbers.clone(), done.clone());
        tokio::task::spawn_blocking(move || {
            let mut seen = 0u64;
            let mut reads = 0u64;
            while !done.load(Ordering::Acquire) {
                // Key 0 holds the number of the last write: it never goes back.
                if let Some(value) = get(&storage, &numbers, 0) {
                    let n = u64::from_be_bytes(value[..8].try_into().expect("8 bytes"));
                    assert!(n >= seen, "read {n} after {seen}");
                    seen = n;
                }
                reads += 1;
            }
            reads
        })
    };
    for n in 1..=2000u64 {
        let mut value = n.to_be_bytes().to_vec();
        value.resize(512, 0);
        put(&storage, &numbers, 0, value.clone())
            .await
            .expect("write");
        put(&storage, &numbers, n, value).await.expect("write");
        // The changes being checkpointed and those since, each at most twice the checkpoint
        // size and a write.
        let held = read_lock(&storage.inner.shared.tails).bytes();
        assert!(held <= 4 * (32 << 10) + 4096, "the tail holds {held} bytes");
        assert!(
            get(&storage, &numbers, n).is_some(),
            "write {n} acknowledged, not seen"
        );
    }
    done.store(true, Ordering::Release);
    let reads = reader.await.expect("reader");
    assert!(reads > 0);
    let stats = storage.stats();
    assert!(stats.checkpoints >= 10, "{stats:?}");
    assert_eq!(count(&storage, &numbers), 2001);
    storage.close().await;
    let (storage, numbers) = reopen(&dir);
    assert_eq!(count(&storage, &numbers), 2001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_write_stops_the_writer_loudly_and_no_later_write_hangs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = Storage::open(dir.path(), options(WriteMode::Thread)).expect("open");
    let panicked = storage
        .write(|_txn| -> Result<(), StorageError> { panic!("a bug in a write job") })
        .await;
    assert!(matches!(panicked, Err(StorageError::WriterStopped)));
    tokio::time::timeout(Duration::from_secs(10), storage.writer_failed())
        .await
        .expect("the failure is signalled");
    let numbers = storage.table("numbers").expect("table");
    let later = tokio::time::timeout(Duration::from_secs(10), put(&storage, &numbers, 1, vec![1]))
        .await
        .expect("a later write fails at once instead of hanging");
    assert!(matches!(later, Err(StorageError::WriterStopped)));
}

#[tokio::test]
async fn a_full_map_refuses_writes_after_a_failed_checkpoint_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let small = StorageOptions {
        checkpoint_bytes: 64 << 10,
        ..StorageOptions::for_map(1 << 20, WriteMode::Inline)
    };
    let storage = Storage::open(dir.path(), small.clone()).expect("open");
    let blobs = storage.table("blobs").expect("table");
    let before = storage.usage().expect("usage");
    assert_eq!(before.map_bytes, 1 << 20);
    let mut stored = 0u64;
    let full = loop {
        match put(&storage, &blobs, stored, vec![7u8; 8192]).await {
            Ok(()) => stored += 1,
            Err(error) => break error,
        }
        assert!(stored < 1000, "a 1 MiB map took 8 MB");
    };
    assert!(full.to_string().contains("MDB_MAP_FULL"), "{full}");
    assert!(storage.usage().expect("usage").percent() >= 80);
    // Every acknowledged write is readable, now and after a restart with the same map.
    assert_eq!(count(&storage, &blobs), stored as usize);
    storage.close().await;
    let storage = Storage::open(dir.path(), small.clone()).expect("reopen");
    let blobs = storage.table("blobs").expect("table");
    assert_eq!(count(&storage, &blobs), stored as usize);
    storage.close().await;
    // A larger map takes the checkpoint, and writes go on.
    let larger = StorageOptions {
        map_size_bytes: 8 << 20,
        ..small
    };
    let storage = Storage::open(dir.path(), larger.clone()).expect("reopen larger");
    let blobs = storage.table("blobs").expect("table");
    put(&storage, &blobs, stored, vec![7u8; 8192])
        .await
        .expect("write after growing");
    storage.close().await;
    let storage = Storage::open(dir.path(), larger).expect("reopen");
    let blobs = storage.table("blobs").expect("table");
    assert_eq!(count(&storage, &blobs), stored as usize + 1);
    assert_eq!(
        read_lock(&storage.inner.shared.tails).bytes(),
        0,
        "close checkpointed it all"
    );
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
    {
        let shared = &storage.inner.shared;
        let mut wtxn = shared.env.write_txn().expect("write txn");
        shared
            .meta
            .put(&mut wtxn, LAYOUT_KEY, &99u32.to_be_bytes())
            .expect("put");
        wtxn.commit().expect("commit");
    }
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

#[tokio::test]
async fn a_directory_of_the_layout_before_the_log_opens_with_its_data_and_is_marked_with_the_new_one(
) {
    let dir = tempfile::tempdir().expect("temp dir");
    // What a build before the log left: layout 4, the data in LMDB, no `wal/`.
    {
        let storage = Storage::open(dir.path(), options(WriteMode::Inline)).expect("open");
        let numbers = storage.table("numbers").expect("table");
        put(&storage, &numbers, 1, b"kept".to_vec())
            .await
            .expect("write");
        let shared = &storage.inner.shared;
        let mut wtxn = shared.env.write_txn().expect("write txn");
        shared
            .meta
            .put(&mut wtxn, LAYOUT_KEY, &LAYOUT_BEFORE_LOG.to_be_bytes())
            .expect("put");
        wtxn.commit().expect("commit");
        storage.close().await;
    }
    std::fs::remove_dir_all(dir.path().join(WAL_DIR)).expect("no log");
    let storage = Storage::open(dir.path(), options(WriteMode::Inline)).expect("upgraded");
    let numbers = storage.table("numbers").expect("table");
    assert_eq!(get(&storage, &numbers, 1), Some(b"kept".to_vec()));
    let shared = &storage.inner.shared;
    let rtxn = shared.env.read_txn().expect("read txn");
    let stored = shared.meta.get(&rtxn, LAYOUT_KEY).expect("get");
    assert_eq!(stored, Some(&LAYOUT_VERSION.to_be_bytes()[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_all_durable_and_share_syncs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = Storage::open(dir.path(), options(WriteMode::Thread)).expect("open");
    let numbers = storage.table("numbers").expect("table");
    // Keep the writer busy so the following writes queue up behind it, as under load.
    let slow = {
        let (storage, numbers) = (storage.clone(), numbers.clone());
        tokio::spawn(async move {
            storage
                .write(move |txn| {
                    std::thread::sleep(Duration::from_millis(300));
                    txn.put(&numbers, &key(1_000), b"slow");
                    Ok::<_, StorageError>(())
                })
                .await
        })
    };
    let writes: Vec<_> = (0..199u64)
        .map(|i| {
            let (storage, numbers) = (storage.clone(), numbers.clone());
            tokio::spawn(async move { put(&storage, &numbers, i, vec![2]).await })
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
    drop(numbers);
    storage.close().await;
    let (storage, numbers) = reopen(&dir);
    assert_eq!(count(&storage, &numbers), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_queue_gauge_counts_writes_waiting_behind_a_busy_writer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = Storage::open(dir.path(), options(WriteMode::Thread)).expect("open");
    let numbers = storage.table("numbers").expect("table");
    let queued = |storage: &Storage| {
        storage.observe_write_queue();
        storage.inner.shared.stats.queued.get()
    };
    assert_eq!(queued(&storage), 0);
    // A write that holds the writer thread until released.
    let (started, running) = oneshot::channel();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let busy = {
        let (storage, numbers) = (storage.clone(), numbers.clone());
        tokio::spawn(async move {
            storage
                .write(move |txn| {
                    let _ = started.send(());
                    let _ = gate.recv();
                    txn.put(&numbers, &key(0), b"0");
                    Ok::<_, StorageError>(())
                })
                .await
        })
    };
    running.await.expect("the writer runs the first write");
    let waiting: Vec<_> = (1..=5u64)
        .map(|i| {
            let (storage, numbers) = (storage.clone(), numbers.clone());
            tokio::spawn(async move { put(&storage, &numbers, i, vec![1]).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while queued(&storage) < 5 {
        assert!(Instant::now() < deadline, "the writes never queued");
        tokio::time::sleep(Duration::from_millis(5)).await;
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
    let numbers = storage.table("numbers").expect("table");
    let writes: Vec<_> = (0..50u64)
        .map(|i| {
            let (storage, numbers) = (storage.clone(), numbers.clone());
            tokio::spawn(async move {
                storage
                    .write(move |txn| {
                        txn.put(&numbers, &key(i), b"v");
                        if i % 2 == 1 {
                            return Err(StorageError::Commit("refused by the job".into()));
                        }
                        Ok(())
                    })
                    .await
            })
        })
        .collect();
    let mut succeeded = 0;
    for write in writes {
        succeeded += usize::from(write.await.expect("task").is_ok());
    }
    assert_eq!(succeeded, 25);
    let keys: Vec<Vec<u8>> = storage
        .read(|view| view.range(&numbers, &[], None, usize::MAX))
        .expect("read")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(
        keys.len() == 25 && keys.iter().all(|k| k[7] % 2 == 0),
        "{keys:?}"
    );
    storage.close().await;
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
