//! Time for a simulated run: `clock_gettime`, overridden for the whole simulation process,
//! answers turmoil's simulated time on the thread that runs the simulation.
//!
//! `std::time::Instant::now` and `SystemTime::now` both end in `clock_gettime`, so this covers
//! every library at once: chitchat's heartbeat and failure-detector times, ractor, tokio's
//! paused clock (whose base is read once per runtime), the node's own timers and tracing's
//! timestamps. Threads that are not running a simulation get the kernel's clocks.

use std::cell::Cell;
use std::time::Duration;

/// The simulated wall clock at the start of a run (2023-11-14), as the harness tells turmoil.
pub const EPOCH: Duration = Duration::from_secs(1_700_000_000);

/// Where the simulated monotonic clock starts: far enough from zero that code computing
/// "now minus an hour" does not underflow.
const MONOTONIC_BASE: Duration = Duration::from_secs(1_000_000_000);

thread_local! {
    /// Simulated time since the start of the run, as last read, if a simulation runs here.
    static ELAPSED: Cell<Option<Duration>> = const { Cell::new(None) };
    /// Set while asking turmoil: its own answer can read the clock again (a host's timer reads
    /// tokio's clock, which outside a runtime is std's), and that read takes the last time.
    static ASKING: Cell<bool> = const { Cell::new(false) };
}

/// Makes this thread's clocks simulated, until [`stop`].
pub(super) fn start() {
    ELAPSED.with(|elapsed| elapsed.set(Some(Duration::ZERO)));
}

/// Gives this thread the kernel's clocks again.
pub(super) fn stop() {
    ELAPSED.with(|elapsed| elapsed.set(None));
}

/// Simulated time since the start of the run, if a simulation runs on this thread.
///
/// Inside a host's step it is turmoil's time. Between steps (the harness's own code) turmoil
/// has no current host, and the time last read stands: it is the same on every replay.
pub fn elapsed() -> Option<Duration> {
    let last = ELAPSED.try_with(Cell::get).ok().flatten()?;
    if ASKING
        .try_with(|asking| asking.replace(true))
        .unwrap_or(true)
    {
        return Some(last);
    }
    let now = turmoil::sim_elapsed().map_or(last, |now| now.max(last));
    let _ = ASKING.try_with(|asking| asking.set(false));
    let _ = ELAPSED.try_with(|elapsed| elapsed.set(Some(now)));
    Some(now)
}

/// `clock_gettime(2)`: simulated real-time and monotonic clocks on a simulation's thread; the
/// kernel's clocks elsewhere, and for clocks that measure CPU time.
///
/// # Safety
/// `tp` must be valid for a write of one `timespec`, as libc's `clock_gettime` requires.
#[no_mangle]
pub unsafe extern "C" fn clock_gettime(
    clockid: libc::clockid_t,
    tp: *mut libc::timespec,
) -> libc::c_int {
    let base = match clockid {
        libc::CLOCK_REALTIME | libc::CLOCK_REALTIME_COARSE => Some(EPOCH),
        libc::CLOCK_MONOTONIC
        | libc::CLOCK_MONOTONIC_RAW
        | libc::CLOCK_MONOTONIC_COARSE
        | libc::CLOCK_BOOTTIME => Some(MONOTONIC_BASE),
        _ => None,
    };
    if let (Some(base), false) = (base, tp.is_null()) {
        if let Some(elapsed) = elapsed() {
            let now = base + elapsed;
            // SAFETY: the caller guarantees `tp` is valid for writes.
            unsafe {
                tp.write(libc::timespec {
                    tv_sec: now.as_secs() as libc::time_t,
                    tv_nsec: libc::c_long::from(now.subsec_nanos() as i32),
                });
            }
            return 0;
        }
    }
    // SAFETY: forwarded as received.
    unsafe { libc::syscall(libc::SYS_clock_gettime, clockid, tp) as libc::c_int }
}
