//! Long reads of the shard store (counts, scans, digests) off the async workers, a few at once.
//!
//! LMDB reads are lock-free, but a count or a digest walks every entity of a shard: with a
//! million users that is tens of milliseconds of CPU, which on an async worker stalls every
//! other request it serves (gossip answers and lease checks included). [`Scans::run`] runs such
//! a read on tokio's blocking pool, at most [`MAX_SCANS`] at once per node, so a burst of
//! unauthenticated listings cannot occupy every blocking thread either. The simulation runs
//! storage inline on the host's own task ([`crate::storage::WriteMode::Inline`]), so there the
//! read runs in place.

use tokio::sync::Semaphore;

/// Long reads running at once per node; more wait their turn (their number is bounded by the
/// edge's in-flight bound and the RPC server's).
pub const MAX_SCANS: usize = 4;

/// The node's long-read runner.
pub struct Scans {
    permits: Semaphore,
    inline: bool,
}

/// Why a long read gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The blocking task panicked or was cancelled.
    #[error("a long read of the shard store failed: {0}")]
    Task(String),
}

impl Scans {
    /// A runner; `inline` runs reads in place (the simulation).
    pub fn new(inline: bool) -> Self {
        Self {
            permits: Semaphore::new(MAX_SCANS),
            inline,
        }
    }

    /// Runs `read` on the blocking pool once one of the [`MAX_SCANS`] places is free.
    pub async fn run<R, F>(&self, read: F) -> Result<R, ScanError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        if self.inline {
            return Ok(read());
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| ScanError::Task(e.to_string()))?;
        tokio::task::spawn_blocking(read)
            .await
            .map_err(|e| ScanError::Task(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_read_runs_off_the_async_worker_and_at_most_max_scans_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let scans = Arc::new(Scans::new(false));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let reads: Vec<_> = (0..MAX_SCANS * 3)
            .map(|_| {
                let (scans, running, most) = (scans.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    scans
                        .run(move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(20));
                            running.fetch_sub(1, Ordering::SeqCst);
                            std::thread::current().name().map(str::to_owned)
                        })
                        .await
                })
            })
            .collect();
        for read in reads {
            let thread = read.await.expect("task").expect("read");
            assert_ne!(thread.as_deref(), Some("tokio-runtime-worker"));
        }
        assert!(most.load(Ordering::SeqCst) <= MAX_SCANS);
    }
}
