//! Replay windows of gossip sender instances: which counters each sender instance already had
//! accepted, so a captured datagram cannot be played again.
//!
//! Each instance has a sliding window of [`WINDOW`] counters below the highest accepted one (as
//! in IPsec): a counter above the highest slides the window, one inside it is accepted once,
//! one below it is refused. The table is bounded: only authenticated datagrams reach it, an
//! instance idle for longer than `idle_ms` is forgotten (its datagrams are then refused by
//! their timestamp, see [`super::seal`]), and when the table is full of active instances a
//! new one is refused rather than an active one evicted (eviction would reopen its window).

use std::collections::HashMap;

use super::seal::Instance;

/// Counters tracked below the highest accepted one. chitchat sends a handful of datagrams per
/// round to a few peers, so reordering beyond 128 does not happen in practice; a counter that
/// old is refused and chitchat repeats the exchange next round.
pub const WINDOW: u64 = 128;

/// Most sender instances tracked at once. Each node start is one instance; thousands of
/// restarts within two clock tolerances do not happen in a healthy cluster.
pub const MAX_INSTANCES: usize = 4_096;

/// What the window says about one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Not seen before: accepted and recorded.
    Fresh,
    /// Already accepted.
    Seen,
    /// Below the window.
    TooOld,
    /// A new instance, and the table is full of active ones.
    Full,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    highest: u64,
    /// Bit `i` set: counter `highest - i` was accepted.
    seen: u128,
    last_ms: u64,
}

/// The windows of all sender instances heard recently.
#[derive(Debug)]
pub struct ReplayWindows {
    windows: HashMap<Instance, Window>,
    max: usize,
    idle_ms: u64,
}

impl ReplayWindows {
    /// At most `max` instances; an instance idle for more than `idle_ms` may be forgotten.
    pub fn new(max: usize, idle_ms: u64) -> Self {
        Self {
            windows: HashMap::new(),
            max,
            idle_ms,
        }
    }

    /// Instances tracked.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether no instance is tracked.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Checks `counter` of `instance` at `now_ms` and records it if fresh.
    pub fn accept(&mut self, instance: Instance, counter: u64, now_ms: u64) -> Replay {
        if let Some(w) = self.windows.get_mut(&instance) {
            let verdict = slide(w, counter);
            if verdict == Replay::Fresh {
                w.last_ms = w.last_ms.max(now_ms);
            }
            return verdict;
        }
        if self.windows.len() >= self.max {
            let idle_ms = self.idle_ms;
            self.windows
                .retain(|_, w| now_ms.saturating_sub(w.last_ms) <= idle_ms);
        }
        if self.windows.len() >= self.max {
            return Replay::Full;
        }
        self.windows.insert(
            instance,
            Window {
                highest: counter,
                seen: 1,
                last_ms: now_ms,
            },
        );
        Replay::Fresh
    }
}

fn slide(w: &mut Window, counter: u64) -> Replay {
    if counter > w.highest {
        let shift = counter - w.highest;
        w.seen = if shift >= WINDOW { 0 } else { w.seen << shift };
        w.seen |= 1;
        w.highest = counter;
        return Replay::Fresh;
    }
    let offset = w.highest - counter;
    if offset >= WINDOW {
        return Replay::TooOld;
    }
    let bit = 1u128 << offset;
    if w.seen & bit != 0 {
        return Replay::Seen;
    }
    w.seen |= bit;
    Replay::Fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_counter_is_accepted_once_within_a_sliding_window() {
        let mut windows = ReplayWindows::new(8, 1_000);
        let a = [1; 16];
        assert_eq!(windows.accept(a, 5, 0), Replay::Fresh);
        assert_eq!(windows.accept(a, 5, 0), Replay::Seen);
        assert_eq!(windows.accept(a, 3, 0), Replay::Fresh);
        assert_eq!(windows.accept(a, 3, 0), Replay::Seen);
        assert_eq!(windows.accept(a, 5 + WINDOW, 0), Replay::Fresh);
        assert_eq!(windows.accept(a, 5, 0), Replay::TooOld, "slid out");
        assert_eq!(windows.accept(a, 6, 0), Replay::Fresh, "the last slot");
        assert_eq!(
            windows.accept(a, u64::MAX, 0),
            Replay::Fresh,
            "a big jump clears"
        );
        assert_eq!(windows.accept(a, 6 + WINDOW, 0), Replay::TooOld);
    }

    #[test]
    fn a_full_table_refuses_new_instances_until_one_is_idle() {
        let mut windows = ReplayWindows::new(2, 1_000);
        assert_eq!(windows.accept([1; 16], 0, 0), Replay::Fresh);
        assert_eq!(windows.accept([2; 16], 0, 500), Replay::Fresh);
        assert_eq!(windows.accept([3; 16], 0, 900), Replay::Full);
        assert_eq!(
            windows.accept([1; 16], 1, 900),
            Replay::Fresh,
            "known ones go on"
        );
        assert_eq!(
            windows.accept([3; 16], 0, 1_501),
            Replay::Fresh,
            "[2] went idle"
        );
        assert_eq!(windows.len(), 2);
        for i in 0..10_000u32 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            windows.accept(id, 0, 1_000_000 + u64::from(i));
            assert!(windows.len() <= 2);
        }
    }
}
