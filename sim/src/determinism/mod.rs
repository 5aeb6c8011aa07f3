//! One seed, one history: a simulated run draws every random number from its seed and every
//! time from turmoil's clock, and records what happened into a digest that a replay must match.
//!
//! - [`entropy`]: `getrandom`/`getentropy` answer from the seed on the run's thread;
//! - [`clock`]: `clock_gettime` answers turmoil's simulated time on the run's thread;
//! - [`trace`]: the run's events (messages, requests, faults, node logs) and their digest.
//!
//! turmoil seeds each host's tokio runtime (`select!` and the scheduler) from the same seed,
//! which needs `--cfg tokio_unstable` (set in `.cargo/config.toml`; decision 022).
//!
//! Some state is per thread and is drawn the first time a thread needs it (std's `HashMap`
//! keys, `rand`'s thread generator), so a run must be the first thing its thread does:
//! [`isolated`] starts a fresh thread for each run. Some state is per process (ractor's actor
//! ids count up for the whole process): only the first run of a process replays bit for
//! bit, which is why the explorer runs each seed in a process of its own.

pub mod clock;
pub mod entropy;
pub mod trace;

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

pub use trace::Digest;

#[cfg(not(tokio_unstable))]
compile_error!(
    "troupe-sim needs `--cfg tokio_unstable` so turmoil can seed tokio's own random choices; \
     .cargo/config.toml sets it, unless RUSTFLAGS replaces it: add `--cfg tokio_unstable` to RUSTFLAGS"
);

/// Stack of a run's thread: the node code's futures are deep, and a debug build keeps them on it.
const STACK_BYTES: usize = 64 << 20;

/// What a run returned (or how it panicked), and the digest of its trace.
pub type Outcome<R> = (Result<R, Box<dyn Any + Send>>, Digest);

/// Runs `run` as a simulation of `seed` on a fresh thread: entropy from the seed, clocks from
/// turmoil, and a trace (also written to `trace_file`, one line per event, if given).
pub fn isolated<R, F>(seed: u64, trace_file: Option<&Path>, run: F) -> std::io::Result<Outcome<R>>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    let trace_file = trace_file.map(Path::to_path_buf);
    let thread = std::thread::Builder::new()
        .name(format!("sim-seed-{seed}"))
        .stack_size(STACK_BYTES)
        .spawn(move || -> std::io::Result<Outcome<R>> {
            entropy::seed(seed);
            // fastrand (tempfile's names) seeds itself from the thread's id, which counts up
            // over the process: seed it from the run's seed instead.
            fastrand::seed(seed);
            clock::start();
            trace::Trace::start(trace_file.as_deref())?;
            let result = catch_unwind(AssertUnwindSafe(run));
            let digest = trace::Trace::finish().unwrap_or(Digest { hash: 0, events: 0 });
            clock::stop();
            entropy::unseed();
            Ok((result, digest))
        })?;
    thread
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("a simulation thread panicked")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// What a run sees of the OS: entropy through three libraries, and std's hash order.
    fn draws() -> (u64, u128, Vec<u32>, [u8; 16]) {
        let map: HashMap<u32, ()> = (0..32).map(|i| (i, ())).collect();
        let mut bytes = [0u8; 16];
        let _ = unsafe { entropy::getrandom(bytes.as_mut_ptr(), bytes.len(), 0) };
        (
            rand::random(),
            uuid_bits(),
            map.into_keys().collect(),
            bytes,
        )
    }

    fn uuid_bits() -> u128 {
        tempfile::Builder::new()
            .rand_bytes(12)
            .tempfile()
            .map(|f| xxhash_rust::xxh3::xxh3_128(f.path().as_os_str().as_encoded_bytes()))
            .unwrap_or_default()
    }

    #[test]
    fn a_seeded_run_draws_the_same_entropy_and_hash_order_every_time() -> std::io::Result<()> {
        let (first, _) = isolated(7, None, draws)?;
        let (again, _) = isolated(7, None, draws)?;
        let (other, _) = isolated(8, None, draws)?;
        let (first, again, other) = (first.ok(), again.ok(), other.ok());
        assert!(first.is_some());
        assert_eq!(first, again);
        assert_ne!(first, other);
        Ok(())
    }

    #[test]
    fn outside_a_run_the_clocks_and_entropy_are_the_kernels() {
        let kernel = || {
            let mut bytes = [0u8; 16];
            let got = unsafe { entropy::getrandom(bytes.as_mut_ptr(), bytes.len(), 0) };
            assert_eq!(got, 16);
            bytes
        };
        assert_ne!(kernel(), kernel());
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        // Years after the simulated epoch: the real clock.
        assert!(wall > clock::EPOCH + std::time::Duration::from_secs(86_400 * 365));
    }

    #[test]
    fn a_run_without_a_simulation_sees_the_simulated_epoch() -> std::io::Result<()> {
        let (seen, _) = isolated(1, None, || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
        })?;
        assert_eq!(seen.ok(), Some(clock::EPOCH));
        Ok(())
    }
}
