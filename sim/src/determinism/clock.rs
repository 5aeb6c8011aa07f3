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
/// Inside a task of a host (its software, while turmoil steps it) it is turmoil's time.
/// Anywhere else the time last read stands, which is the same on every replay: between steps
/// (the harness's own code) turmoil has no current host, and while turmoil crashes or bounces a
/// host, or a runtime parks, its answer can be wrong. turmoil counts a host's time as the steps
/// it was ticked plus how far the host's tokio clock moved since its last step began, an
/// `Instant` of the runtime that ran that step. A bounce builds a new runtime and drops the old
/// tasks; there, tokio's clock is another runtime's or, outside a runtime, std's (this one),
/// and the difference counted every step since the host last ran a second time. A host bounced
/// after 10 s down read its clock 10 s ahead, and since this clock never goes back, every
/// node's clock then stood still until simulated time caught up.
pub fn elapsed() -> Option<Duration> {
    let last = ELAPSED.try_with(Cell::get).ok().flatten()?;
    let in_host_task =
        tokio::task::try_id().is_some() && tokio::runtime::Handle::try_current().is_ok();
    if !in_host_task {
        return Some(last);
    }
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

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use super::EPOCH;

    const TICK: Duration = Duration::from_millis(2);

    /// What the host read at one moment: turmoil's simulated time, and std's two clocks.
    #[derive(Debug, Clone, Copy)]
    struct Reading {
        simulated: Duration,
        wall: Duration,
        monotonic: Instant,
    }

    /// A host that reads the clocks every 50 ms until `exit` is set, then exits (as a node
    /// that was stopped gracefully does).
    async fn reader(readings: Rc<RefCell<Vec<Reading>>>, exit: Rc<Cell<bool>>) -> turmoil::Result {
        while !exit.get() {
            readings.borrow_mut().push(Reading {
                simulated: turmoil::sim_elapsed().ok_or("in a host")?,
                wall: SystemTime::now().duration_since(UNIX_EPOCH)? - EPOCH,
                monotonic: Instant::now(),
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// What the harness read between steps: simulated time, and the wall clock since the epoch.
    type HarnessReadings = Vec<(Duration, Duration)>;

    fn step_for(sim: &mut turmoil::Sim<'_>, duration: Duration) -> turmoil::Result {
        let until = sim.elapsed() + duration;
        while sim.elapsed() < until {
            sim.step()?;
        }
        Ok(())
    }

    /// Runs a host that is crashed and bounced, then stops by itself and is bounced again, and
    /// returns what it read, and what the harness read between steps, with simulated time.
    fn bounced_host() -> Result<(Vec<Reading>, HarnessReadings), String> {
        let readings: Rc<RefCell<Vec<Reading>>> = Rc::default();
        let exit: Rc<Cell<bool>> = Rc::default();
        let mut sim = turmoil::Builder::new()
            .tick_duration(TICK)
            .epoch(UNIX_EPOCH + EPOCH)
            .simulation_duration(Duration::from_secs(60))
            .build();
        let (log, stop) = (readings.clone(), exit.clone());
        sim.host("node", move || reader(log.clone(), stop.clone()));
        let mut harness = Vec::new();
        let mut phase = |sim: &mut turmoil::Sim<'_>, duration| -> Result<(), String> {
            step_for(sim, duration).map_err(|e| e.to_string())?;
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_err(|e| e.to_string())?;
            harness.push((sim.elapsed(), wall - EPOCH));
            Ok(())
        };
        phase(&mut sim, Duration::from_secs(1))?;
        sim.crash("node");
        phase(&mut sim, Duration::from_secs(3))?;
        sim.bounce("node");
        phase(&mut sim, Duration::from_secs(1))?;
        exit.set(true);
        phase(&mut sim, Duration::from_secs(3))?;
        exit.set(false);
        sim.bounce("node");
        phase(&mut sim, Duration::from_secs(1))?;
        let readings = readings.borrow().clone();
        Ok((readings, harness))
    }

    #[test]
    fn a_bounced_hosts_std_clocks_track_simulated_time_and_never_go_back() -> std::io::Result<()> {
        let (result, _) = super::super::isolated(5, None, bounced_host)?;
        let (readings, harness) = result
            .map_err(|_| std::io::Error::other("the simulation panicked"))?
            .map_err(std::io::Error::other)?;
        // Read before the crash, between the two bounces, and after the second.
        let at = |from: u64, to: u64| {
            readings.iter().filter(move |r| {
                r.simulated >= Duration::from_secs(from) && r.simulated < Duration::from_secs(to)
            })
        };
        assert!(at(0, 1).count() > 10);
        assert!(at(4, 5).count() > 10, "{readings:?}");
        assert!(at(8, 9).count() > 10, "{readings:?}");
        for reading in &readings {
            // Within a tick: the clock never goes back, so it may keep a time read at the end
            // of a step until the next step catches up.
            assert!(
                reading.wall >= reading.simulated && reading.wall <= reading.simulated + TICK,
                "the host read {reading:?}"
            );
        }
        for pair in readings.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert!(
                b.monotonic >= a.monotonic,
                "monotonic went back: {a:?}, {b:?}"
            );
            let (steady, simulated) = (b.monotonic - a.monotonic, b.simulated - a.simulated);
            assert!(
                steady.abs_diff(simulated) <= TICK,
                "from {a:?} to {b:?} the monotonic clock moved {steady:?}"
            );
        }
        for (simulated, wall) in &harness {
            // Between steps the time last read stands: never ahead of simulated time.
            assert!(
                *wall <= *simulated + TICK,
                "the harness read {wall:?} at {simulated:?}"
            );
        }
        Ok(())
    }
}
