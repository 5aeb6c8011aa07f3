//! What one durable commit costs on this machine's disk (decision 039): what a write pays, the
//! shard store's append through the storage writer thread (since step 3 of decision 039, a
//! record of the write-ahead log, one `fdatasync` for every append queued together, and
//! checkpoints into LMDB beside it; before it, one LMDB commit), against a bare write-ahead log
//! append with one `fdatasync`.
//! Batches of 1, 8 and 64 entries, each updating one of 1,000 keys of its own shard with a
//! 200-byte value, as users-write does. Prints commits and entries per second, the latency of
//! a commit (median and p99), and the process's CPU per entry, user and kernel. The kernel's
//! part is the page cache, the filesystem and the block layer: what a commit costs the node's
//! CPUs besides waiting for the disk.
//!
//! `cargo bench -p troupe-node --bench wal` (data in a temp dir under `$WAL_BENCH_DIR`, default
//! the system's temp dir; `WAL_BENCH_DIR=/dev/shm` shows the same work without a disk).

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use nix::sys::resource::{getrusage, UsageWho};
use troupe_node::ids::{Epoch, NodeId, ShardId};
use troupe_node::shard::{Entry, Op, Position, ShardStore, Tenant};
use troupe_node::storage::{Storage, StorageOptions};
use troupe_node::wal::{Wal, WalOptions};

const VALUE_BYTES: usize = 200;
const KEYS: u64 = 1000;
const RUN: Duration = Duration::from_secs(3);

fn main() {
    let parent = std::env::var_os("WAL_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    println!(
        "durable commits of entries updating one key with {VALUE_BYTES} bytes, {} s each, in {}",
        RUN.as_secs(),
        Path::new(&parent).display()
    );
    println!(
        "| store | entries per commit | commits/s | entries/s | commit p50 µs | commit p99 µs | CPU µs per entry (user + kernel) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for batch in [1, 8, 64] {
        report(
            "shard store",
            batch,
            runtime.block_on(store(&parent, batch)),
        );
        report("log append + fdatasync", batch, wal(&parent, batch));
    }
}

/// `batch` shards append one entry each at once; the storage writer commits them together.
async fn store(parent: &OsStr, batch: usize) -> Timed {
    let dir = tempfile::tempdir_in(parent).expect("a temp dir for the bench");
    let storage = Storage::open(dir.path(), StorageOptions::default()).expect("the environment");
    let store = ShardStore::open(&storage).expect("the shard store");
    let epoch = Epoch {
        term: 1,
        owner: NodeId::new("n1"),
    };
    let mut applied = vec![0u64; batch];
    let mut round = 0u64;
    let mut commit = || {
        round += 1;
        let appends = applied.iter_mut().enumerate().map(|(shard, applied)| {
            let prev = Position {
                last_epoch: (*applied > 0).then(|| epoch.clone()),
                applied: *applied,
            };
            *applied += 1;
            let entry = entry(&epoch, *applied, round);
            store.append(ShardId(shard as u32), epoch.clone(), prev, entry)
        });
        join_all(appends)
    };
    let mut took = Vec::new();
    let cpu0 = process_cpu();
    let start = Instant::now();
    while start.elapsed() < RUN {
        let began = Instant::now();
        for result in commit().await {
            result.expect("an append");
        }
        took.push(began.elapsed());
    }
    Timed::new(took, cpu0)
}

/// `batch` appends of encoded entries and one sync per commit.
fn wal(parent: &OsStr, batch: usize) -> Timed {
    let dir = tempfile::tempdir_in(parent).expect("a temp dir for the bench");
    let mut wal =
        Wal::open(dir.path(), WalOptions::default(), 0, |_, _| {}).expect("the bench's log");
    let epoch = Epoch {
        term: 1,
        owner: NodeId::new("n1"),
    };
    let mut seq = 0;
    let mut took = Vec::new();
    let cpu0 = process_cpu();
    let start = Instant::now();
    while start.elapsed() < RUN {
        let began = Instant::now();
        for _ in 0..batch {
            seq += 1;
            let bytes = troupe_node::codec::encode(&entry(&epoch, seq, seq)).expect("encode");
            wal.append(&bytes).expect("an append");
        }
        wal.sync().expect("a sync");
        took.push(began.elapsed());
    }
    Timed::new(took, cpu0)
}

/// Entry `seq` of a shard: one key of [`KEYS`] set to a fresh value; it lets holders trim the
/// log before it, as entries do while every copy is up to date.
fn entry(epoch: &Epoch, seq: u64, round: u64) -> Entry {
    Entry {
        seq,
        epoch: epoch.clone(),
        ops: vec![Op {
            tenant: Tenant(1),
            key: format!("user-{:04}", round.wrapping_mul(7919) % KEYS).into_bytes(),
            value: Some(vec![b'v'; VALUE_BYTES]),
        }],
        trim_before: seq.saturating_sub(1),
    }
}

/// Each commit's duration, and the process's CPU over all of them.
struct Timed {
    took: Vec<Duration>,
    user: Duration,
    kernel: Duration,
}

impl Timed {
    fn new(took: Vec<Duration>, (user0, kernel0): (Duration, Duration)) -> Self {
        let (user1, kernel1) = process_cpu();
        Self {
            took,
            user: user1 - user0,
            kernel: kernel1 - kernel0,
        }
    }
}

/// The CPU time of every thread of this process so far (the storage writer's included):
/// (user, kernel).
fn process_cpu() -> (Duration, Duration) {
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage of this process");
    let at = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    (at(usage.user_time()), at(usage.system_time()))
}

fn report(store: &str, batch: usize, timed: Timed) {
    let Timed {
        mut took,
        user,
        kernel,
    } = timed;
    took.sort_unstable();
    let total: Duration = took.iter().sum();
    let commits = took.len() as f64 / total.as_secs_f64();
    let entries = (took.len() * batch) as f64;
    let per_entry = |d: Duration| d.as_secs_f64() * 1e6 / entries;
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize].as_micros();
    println!(
        "| {store} | {batch} | {commits:.0} | {:.0} | {} | {} | {:.1} + {:.1} |",
        commits * batch as f64,
        at(0.5),
        at(0.99),
        per_entry(user),
        per_entry(kernel)
    );
}
