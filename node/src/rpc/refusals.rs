//! Rate-limited logging of refused RPC connections.
//!
//! Every refused connection (a failed or timed-out handshake, a connection over the pending
//! handshake caps) is worth a line while they are rare, and a flood of them from a port scan or
//! an attacker must not fill the disk or drown the other logs: at most [`LINES_PER_WINDOW`]
//! lines per [`WINDOW`], and one line per window with the count of those not logged.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Length of one logging window.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Refusals logged in full per window.
pub const LINES_PER_WINDOW: u32 = 10;

/// Decides which refusals are logged; shared by the connections of one server.
#[derive(Debug)]
pub struct RefusalLog {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    window_start: Instant,
    logged: u32,
    suppressed: u64,
}

impl RefusalLog {
    /// A log whose first window starts at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            state: Mutex::new(State {
                window_start: now,
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Counters only: a panic cannot leave them inconsistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the refusal happening at `now` is logged in full; if not, it is counted.
    pub fn admit(&self, now: Instant) -> bool {
        let mut state = self.lock();
        if now.saturating_duration_since(state.window_start) >= WINDOW {
            // The count of the window that ended is reported by `take_suppressed`.
            state.window_start = now;
            state.logged = 0;
        }
        if state.logged < LINES_PER_WINDOW {
            state.logged += 1;
            true
        } else {
            state.suppressed += 1;
            false
        }
    }

    /// The refusals not logged since the last call, for one summary line.
    pub fn take_suppressed(&self) -> u64 {
        std::mem::take(&mut self.lock().suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_refusals_logs_a_bounded_number_of_lines_per_window_and_counts_the_rest() {
        let start = Instant::now();
        let log = RefusalLog::new(start);
        let logged = (0..1_000).filter(|_| log.admit(start)).count();
        assert_eq!(logged, LINES_PER_WINDOW as usize);
        assert_eq!(log.take_suppressed(), 1_000 - u64::from(LINES_PER_WINDOW));
        assert_eq!(log.take_suppressed(), 0, "each count is reported once");
        let later = start + WINDOW;
        assert!(log.admit(later), "a new window logs again");
        let logged = (0..100).filter(|_| log.admit(later)).count();
        assert_eq!(logged, LINES_PER_WINDOW as usize - 1);
    }
}
