//! The timers of one shard owner ([`Timer`](super::machine::Timer): a job's finish): an
//! ordered map of deadlines and at most a few wake-ups scheduled, instead of a timer task per
//! timer.
//!
//! A wake-up is scheduled [`TICK`] after the earliest deadline, and fires every timer due by
//! then, so timers that fall due close together are decided in one batch and share one log
//! entry (group commit). A job therefore finishes at most one tick after its run ends. Before,
//! each running job held its own tokio timer: hundreds of thousands of tasks after a long burst
//! of creates, and one replicated entry per finish.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

/// How long after its deadline a timer may fire, so that it shares a batch with the timers
/// due soon after it.
pub const TICK: Duration = Duration::from_millis(50);

/// Pending timers of one owner, each carrying a `T` (what to do when it fires).
#[derive(Debug)]
pub struct Timers<T> {
    /// By deadline, then by when they were added: ordered, so the overdue ones are a prefix
    /// ([`Self::overdue`] reads only those).
    pending: BTreeMap<(Instant, u64), T>,
    /// Timers added so far: orders timers with the same deadline by when they were added.
    added: u64,
    /// Wake-ups scheduled and not yet fired.
    scheduled: BTreeSet<Instant>,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Self {
            pending: BTreeMap::new(),
            added: 0,
            scheduled: BTreeSet::new(),
        }
    }
}

impl<T> Timers<T> {
    /// Adds a timer `after` from `now`. Returns the delay of a wake-up the caller must
    /// schedule, unless one already scheduled comes early enough.
    pub fn add(&mut self, now: Instant, after: Duration, item: T) -> Option<Duration> {
        self.added += 1;
        self.pending.insert((now + after, self.added), item);
        self.arm(now)
    }

    /// At a wake-up: the timers due by `now`, earliest first, and the delay of the next
    /// wake-up to schedule, if one is needed.
    pub fn fire(&mut self, now: Instant) -> (Vec<T>, Option<Duration>) {
        self.scheduled.retain(|at| *at > now);
        let mut due = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        let next = self.arm(now);
        (due, next)
    }

    /// Timers that should have fired by `now` and have not: their wake-up (a [`TICK`] after
    /// the deadline) is past. The owner is late with them (busy with a long batch or seal, or
    /// its mailbox is backed up). Timers merely past their deadline are not counted: waiting
    /// up to a tick is how they are batched. Reads only the overdue timers.
    pub fn overdue(&self, now: Instant) -> usize {
        let Some(cutoff) = now.checked_sub(TICK) else {
            return 0;
        };
        self.pending.range(..=(cutoff, u64::MAX)).count()
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
        let (&(at, _), _) = self.pending.first_key_value()?;
        let wake = at + TICK;
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

    #[test]
    fn only_timers_a_tick_past_their_deadline_count_as_overdue_until_they_fire() {
        let start = Instant::now();
        let mut timers = Timers::<u32>::default();
        for (item, after) in [(1, 100), (2, 100), (3, 300), (4, 10_000)] {
            timers.add(start, ms(after), item);
        }
        assert_eq!(timers.len(), 4);
        assert_eq!(timers.overdue(start), 0);
        assert_eq!(
            timers.overdue(start + ms(149)),
            0,
            "within a tick of their deadline, waiting is batching"
        );
        assert_eq!(timers.overdue(start + ms(150)), 2);
        assert_eq!(timers.overdue(start + ms(5_000)), 3, "a late wake-up");
        let (due, _) = timers.fire(start + ms(5_000));
        assert_eq!(due, vec![1, 2, 3]);
        assert_eq!((timers.len(), timers.overdue(start + ms(5_000))), (1, 0));
        assert_eq!(timers.overdue(start + ms(10_050)), 1);
    }
}
