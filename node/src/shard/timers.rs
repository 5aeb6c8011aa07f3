//! The timers of one shard owner ([`Timer`](super::machine::Timer): a job's finish): a heap
//! of deadlines and at most a few wake-ups scheduled, instead of a timer task per timer.
//!
//! A wake-up is scheduled [`TICK`] after the earliest deadline, and fires every timer due by
//! then, so timers that fall due close together are decided in one batch and share one log
//! entry (group commit). A job therefore finishes at most one tick after its run ends. Before,
//! each running job held its own tokio timer: hundreds of thousands of tasks after a long burst
//! of creates, and one replicated entry per finish.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap};
use std::time::Duration;

use tokio::time::Instant;

/// How long after its deadline a timer may fire, so that it shares a batch with the timers
/// due soon after it.
pub const TICK: Duration = Duration::from_millis(50);

/// Pending timers of one owner, each carrying a `T` (what to do when it fires).
#[derive(Debug)]
pub struct Timers<T> {
    pending: BinaryHeap<Reverse<Pending<T>>>,
    /// Timers added so far: orders timers with the same deadline by when they were added.
    added: u64,
    /// Wake-ups scheduled and not yet fired.
    scheduled: BTreeSet<Instant>,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Self {
            pending: BinaryHeap::new(),
            added: 0,
            scheduled: BTreeSet::new(),
        }
    }
}

/// One timer in the heap, ordered by deadline, then by when it was added.
#[derive(Debug)]
struct Pending<T> {
    at: Instant,
    order: u64,
    item: T,
}

impl<T> PartialEq for Pending<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}

impl<T> Eq for Pending<T> {}

impl<T> PartialOrd for Pending<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Pending<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

impl<T> Timers<T> {
    /// Adds a timer `after` from `now`. Returns the delay of a wake-up the caller must
    /// schedule, unless one already scheduled comes early enough.
    pub fn add(&mut self, now: Instant, after: Duration, item: T) -> Option<Duration> {
        self.added += 1;
        self.pending.push(Reverse(Pending {
            at: now + after,
            order: self.added,
            item,
        }));
        self.arm(now)
    }

    /// At a wake-up: the timers due by `now`, earliest first, and the delay of the next
    /// wake-up to schedule, if one is needed.
    pub fn fire(&mut self, now: Instant) -> (Vec<T>, Option<Duration>) {
        self.scheduled.retain(|at| *at > now);
        let mut due = Vec::new();
        while self.pending.peek().is_some_and(|Reverse(p)| p.at <= now) {
            if let Some(Reverse(p)) = self.pending.pop() {
                due.push(p.item);
            }
        }
        let next = self.arm(now);
        (due, next)
    }

    /// Timers not yet fired.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn arm(&mut self, now: Instant) -> Option<Duration> {
        let Reverse(first) = self.pending.peek()?;
        let wake = first.at + TICK;
        if self.scheduled.first().is_some_and(|at| *at <= wake) {
            return None;
        }
        self.scheduled.insert(wake);
        Some(wake.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn timers_due_within_a_tick_of_the_earliest_fire_together_and_no_earlier() {
        let start = Instant::now();
        let mut timers = Timers::<(String, u32)>::default();
        assert_eq!(
            timers.add(start, ms(1_000), ("a".into(), 1)),
            Some(ms(1_050))
        );
        assert_eq!(
            timers.add(start, ms(1_030), ("b".into(), 1)),
            None,
            "the scheduled wake-up covers it"
        );
        assert_eq!(timers.add(start, ms(1_200), ("c".into(), 2)), None);
        let (due, next) = timers.fire(start + ms(999));
        assert!(due.is_empty(), "nothing is due before its deadline");
        assert_eq!(next, None, "the wake-up at 1,050 ms is still scheduled");
        let (due, next) = timers.fire(start + ms(1_050));
        assert_eq!(due, vec![("a".into(), 1), ("b".into(), 1)]);
        assert_eq!(next, Some(ms(200)), "c's wake-up: 1,250 ms from the start");
        assert_eq!(timers.len(), 1);
    }

    #[test]
    fn an_earlier_timer_schedules_an_earlier_wake_up() {
        let start = Instant::now();
        let mut timers = Timers::<(String, u32)>::default();
        assert_eq!(
            timers.add(start, ms(5_000), ("late".into(), 1)),
            Some(ms(5_050))
        );
        assert_eq!(
            timers.add(start, ms(100), ("soon".into(), 1)),
            Some(ms(150))
        );
        let (due, next) = timers.fire(start + ms(150));
        assert_eq!(due, vec![("soon".into(), 1)]);
        assert_eq!(next, None, "the wake-up at 5,050 ms was scheduled first");
        let (due, next) = timers.fire(start + ms(5_050));
        assert_eq!(due, vec![("late".into(), 1)]);
        assert_eq!(next, None);
        assert_eq!(timers.len(), 0);
    }

    #[test]
    fn a_late_wake_up_fires_every_overdue_timer() {
        let start = Instant::now();
        let mut timers = Timers::<(String, u32)>::default();
        for (i, after) in [300, 100, 200].into_iter().enumerate() {
            timers.add(start, ms(after), (format!("job-{i}"), 1));
        }
        let (due, next) = timers.fire(start + ms(10_000));
        let ids: Vec<&str> = due.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["job-1", "job-2", "job-0"], "earliest deadline first");
        assert_eq!(next, None);
    }
}
