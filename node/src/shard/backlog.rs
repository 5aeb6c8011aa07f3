//! What waits at one owner actor: commands sent to it and not answered yet, its timers and the
//! commands of its sweeps. Shared between the actor, which changes it, and the node's
//! `/metrics`, which reads every owner's when scraped ([`Shards::backlog`]), so an operator
//! sees an owner falling behind before its callers time out.
//!
//! The actor pays an atomic, or an uncontended lock around its timers, where the state changes;
//! the scrape reads each owner's once, and of its timers only the overdue ones.
//!
//! [`Shards::backlog`]: super::host::Shards::backlog

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::time::Instant;

use super::machine::Timer;
use super::timers::Timers;
use crate::metrics::Backlog;

/// One owner's backlog.
#[derive(Debug, Default)]
pub struct OwnerBacklog {
    /// Commands (and pre-copies) sent to the actor and not answered yet: in its mailbox, its
    /// queue or its batch in flight. Bounded by the host's pending-command limit.
    commands: AtomicUsize,
    /// The actor's timers (only the actor changes them).
    timers: Mutex<Timers<Timer>>,
    /// Commands of the actor's sweeps queued or being retried: what the sweeps found (expired
    /// session entries) and did not delete yet.
    sweep_commands: AtomicUsize,
}

impl OwnerBacklog {
    /// Counts one more command waiting until the returned guard is dropped, unless `limit`
    /// wait already: `None` then, and the command must be refused. A guard, not a call to make
    /// once answered: a caller whose future is dropped mid-wait (its client went away) must
    /// not be counted for ever, or its owner would end up refusing every command.
    pub(crate) fn admit(&self, limit: usize) -> Option<Waiting<'_>> {
        if self.commands.fetch_add(1, Ordering::AcqRel) >= limit {
            self.commands.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Waiting(self))
    }

    /// The actor's timers. Held only for one change or one count, never across an await.
    pub(crate) fn timers(&self) -> MutexGuard<'_, Timers<Timer>> {
        self.timers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The actor's sweeps have `count` commands queued or being retried.
    pub(crate) fn set_sweep_commands(&self, count: usize) {
        self.sweep_commands.store(count, Ordering::Relaxed);
    }

    /// Adds this owner's backlog at `now` to the node's `total`.
    pub(crate) fn add_to(&self, total: &mut Backlog, now: Instant) {
        let commands = self.commands.load(Ordering::Acquire);
        total.commands += commands;
        total.deepest_commands = total.deepest_commands.max(commands);
        let timers = self.timers();
        total.timers += timers.len();
        total.timers_overdue += timers.overdue(now);
        drop(timers);
        total.sweep_commands += self.sweep_commands.load(Ordering::Relaxed);
    }
}

/// One command counted as waiting at an owner, until dropped.
#[must_use = "the command counts as waiting only while this is held"]
pub(crate) struct Waiting<'a>(&'a OwnerBacklog);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.commands.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::shard::machine::{Command, MachineId};

    /// A timer to add `after` from the start.
    fn timer(key: &str, after: Duration) -> Timer {
        Timer {
            key: key.as_bytes().to_vec(),
            version: 1,
            after,
            command: Command {
                machine: MachineId(3),
                body: Vec::new(),
            },
        }
    }

    #[test]
    fn commands_past_the_limit_are_not_admitted_and_a_dropped_wait_stops_counting() {
        let backlog = OwnerBacklog::default();
        let first = backlog.admit(2);
        let second = backlog.admit(2);
        assert!(first.is_some() && second.is_some());
        assert!(backlog.admit(2).is_none(), "two wait already");
        let mut total = Backlog::default();
        backlog.add_to(&mut total, Instant::now());
        assert_eq!((total.commands, total.deepest_commands), (2, 2));
        // Answered, or its caller went away: either way it no longer waits.
        drop(first);
        let third = backlog.admit(2);
        assert!(third.is_some(), "room again once one is gone");
        drop((second, third));
        let mut total = Backlog::default();
        backlog.add_to(&mut total, Instant::now());
        assert_eq!(total.commands, 0);
    }

    #[test]
    fn the_node_total_sums_owners_and_keeps_the_deepest_queue() {
        let (one, two) = (OwnerBacklog::default(), OwnerBacklog::default());
        let waiting: Vec<_> = [&one, &one, &one, &two]
            .into_iter()
            .map(|owner| owner.admit(1024))
            .collect();
        let start = Instant::now();
        for (owner, key, after) in [
            (&one, "a", Duration::from_millis(100)),
            (&one, "b", Duration::from_secs(60)),
            (&two, "c", Duration::from_secs(60)),
        ] {
            owner.timers().add(start, after, timer(key, after));
        }
        two.set_sweep_commands(5);
        let mut total = Backlog::default();
        let late = start + Duration::from_secs(1);
        one.add_to(&mut total, late);
        two.add_to(&mut total, late);
        assert_eq!(
            total,
            Backlog {
                commands: 4,
                deepest_commands: 3,
                timers: 3,
                timers_overdue: 1,
                sweep_commands: 5,
            }
        );
        drop(waiting);
    }
}
