//! The integers checker: what the window averages that `GET /v1/integers` lists must satisfy
//! over a whole history.
//!
//! An average is stored once per window, durably and replicated, so every answer is a view of
//! one growing, never rewritten list: answers agree on every window they share, a window once
//! listed stays listed, and an answer is well formed on its own (newest first, aligned to the
//! window, no integer counted twice). And the aggregator resumes: once the faults are over, a
//! complete window is stored again.

use std::collections::BTreeMap;

use crate::history::{Event, Limits, Observed, Op, Subject, Violation, Window, FINAL_CLIENT};

/// How many averages `GET /v1/integers` lists (the newest ones).
pub const LISTED: usize = 10;
/// The integers generators emit lie in `1..=10000`, so every average does.
const VALUES: std::ops::RangeInclusive<f64> = 1.0..=10_000.0;

/// Every integers invariant over `events`.
pub fn check(events: &[Event], limits: &Limits) -> Vec<Violation> {
    let reads: Vec<(&Event, &[Window])> = events
        .iter()
        .filter_map(|e| match (&e.op, e.ok()) {
            (Op::IntegersRead, Some(Observed::Averages(windows))) => Some((e, windows.as_slice())),
            _ => None,
        })
        .collect();
    let mut violations = Vec::new();
    for (read, windows) in &reads {
        if let Some(why) = malformed(windows, limits) {
            violations.push(violation("integers answer malformed", read, why));
        }
    }
    violations.extend(rewritten(&reads));
    violations.extend(lost(&reads));
    violations.extend(not_resumed(&reads));
    violations.extend(skipped(&reads, limits));
    violations
}

/// Why one answer is malformed, if it is.
fn malformed(windows: &[Window], limits: &Limits) -> Option<String> {
    if windows.len() > LISTED {
        return Some(format!(
            "{} averages listed, at most {LISTED}",
            windows.len()
        ));
    }
    if let Some(pair) = windows.windows(2).find(|p| p[0].start_ms <= p[1].start_ms) {
        return Some(format!(
            "not newest first: {:?} before {:?}",
            pair[0], pair[1]
        ));
    }
    windows.iter().find_map(|w| {
        let average: Option<f64> = w.average.parse().ok();
        if w.start_ms % limits.window_ms.max(1) != 0 {
            Some(format!("{w:?} does not start on a window boundary"))
        } else if w.count == 0 || !average.is_some_and(|a| VALUES.contains(&a)) {
            Some(format!("{w:?} is no average of integers in 1..=10000"))
        } else if w.count > limits.full_window {
            Some(format!(
                "{w:?} counts more integers than a full window holds ({}): some counted twice",
                limits.full_window
            ))
        } else {
            None
        }
    })
}

/// A window listed with two different averages: a stored average was rewritten, or two
/// aggregators stored one window each.
fn rewritten(reads: &[(&Event, &[Window])]) -> Vec<Violation> {
    let mut first: BTreeMap<u64, (&Event, &Window)> = BTreeMap::new();
    let mut violations = Vec::new();
    for (read, windows) in reads {
        for window in *windows {
            match first.get(&window.start_ms) {
                None => {
                    first.insert(window.start_ms, (read, window));
                }
                Some((earlier, seen)) if *seen != window => violations.push(violation(
                    "integers window stored twice",
                    read,
                    format!("{window:?}\n    but earlier {seen:?} in {earlier}"),
                )),
                Some(_) => {}
            }
        }
    }
    violations
}

/// A window listed by one answer and missing from a later one that lists its time: a stored
/// average was lost. (An answer lists the newest [`LISTED`]; a shorter one lists them all.)
fn lost(reads: &[(&Event, &[Window])]) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (later, listed) in reads {
        let oldest = listed.last().map_or(u64::MAX, |w| w.start_ms);
        let covers = |w: &Window| listed.len() < LISTED || w.start_ms >= oldest;
        let listed_there = |w: &Window| listed.iter().any(|l| l.start_ms == w.start_ms);
        let missing = reads
            .iter()
            .filter(|(earlier, _)| earlier.completed < later.invoked)
            .find_map(|(earlier, seen)| {
                let missing = seen.iter().find(|w| covers(w) && !listed_there(w))?;
                Some((earlier, missing))
            });
        if let Some((earlier, missing)) = missing {
            violations.push(violation(
                "integers average lost",
                later,
                format!("{missing:?} missing\n    after {earlier}"),
            ));
        }
    }
    violations
}

/// A final read (once the faults are over) that lists two windows with one missing between
/// them: a window open during a failover must be stored, if incomplete, not skipped.
fn skipped(reads: &[(&Event, &[Window])], limits: &Limits) -> Vec<Violation> {
    let finals = reads.iter().filter(|(r, _)| r.client == FINAL_CLIENT);
    finals
        .filter_map(|(read, windows)| {
            let pair = windows
                .windows(2)
                .find(|p| p[0].start_ms.saturating_sub(p[1].start_ms) > limits.window_ms)?;
            Some(violation(
                "integers window skipped",
                read,
                format!("nothing stored between {:?} and {:?}", pair[1], pair[0]),
            ))
        })
        .collect()
}

/// The final reads saw no complete window newer than what their first read listed: the
/// aggregator (or a generator) did not resume after the faults.
fn not_resumed(reads: &[(&Event, &[Window])]) -> Vec<Violation> {
    let finals: Vec<&(&Event, &[Window])> = reads
        .iter()
        .filter(|(r, _)| r.client == FINAL_CLIENT)
        .collect();
    let Some((baseline, before)) = finals.first() else {
        return Vec::new();
    };
    let newest = before.first().map_or(0, |w| w.start_ms);
    let resumed = finals
        .iter()
        .any(|(_, windows)| windows.iter().any(|w| w.complete && w.start_ms > newest));
    if resumed {
        return Vec::new();
    }
    let last = finals.last().map_or(*baseline, |(r, _)| *r);
    vec![violation(
        "integers did not resume",
        last,
        format!("no complete window after {newest} ms\n    first final read {baseline}"),
    )]
}

fn violation(invariant: &'static str, event: &Event, detail: impl std::fmt::Display) -> Violation {
    Violation {
        invariant,
        subject: Subject::Integers,
        detail: format!("{event}\n    {detail}"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::history::{Outcome, LIMITS};

    fn window(start_ms: u64, average: &str, count: u64) -> Window {
        Window {
            start_ms,
            average: average.into(),
            count,
            complete: true,
        }
    }

    fn read(client: &str, from_ms: u64, to_ms: u64, windows: Vec<Window>) -> Event {
        Event {
            client: client.into(),
            node: "n1".into(),
            op: Op::IntegersRead,
            invoked: Duration::from_millis(from_ms),
            completed: Duration::from_millis(to_ms),
            outcome: Outcome::Ok(Observed::Averages(windows)),
        }
    }

    fn invariants(events: &[Event]) -> Vec<&'static str> {
        check(events, &LIMITS).iter().map(|v| v.invariant).collect()
    }

    /// Two reads of a growing list, then final reads that see a newer complete window. Every
    /// answer is shorter than a full one, so each lists every window stored by then.
    fn healthy() -> Vec<Event> {
        let (w5, w10, w15) = (
            window(5_000, "5000.5", 100),
            window(10_000, "12.25", 99),
            window(15_000, "7", 98),
        );
        vec![
            read("c1", 0, 10, vec![w5.clone()]),
            read("c2", 20, 30, vec![w10.clone(), w5.clone()]),
            read(FINAL_CLIENT, 40, 50, vec![w10.clone(), w5.clone()]),
            read(FINAL_CLIENT, 60, 70, vec![w15, w10, w5]),
        ]
    }

    #[test]
    fn a_growing_list_that_resumes_after_the_faults_holds_every_invariant() {
        assert_eq!(invariants(&healthy()), Vec::<&str>::new());
    }

    #[test]
    fn a_window_listed_with_another_average_later_is_stored_twice() {
        let mut events = healthy();
        let mut rewritten = events[3].clone();
        rewritten.invoked = Duration::from_millis(80);
        rewritten.completed = Duration::from_millis(90);
        if let Outcome::Ok(Observed::Averages(windows)) = &mut rewritten.outcome {
            windows[1].average = "13".into();
        }
        events.push(rewritten);
        assert_eq!(invariants(&events), ["integers window stored twice"]);
    }

    #[test]
    fn a_window_missing_from_a_later_answer_that_covers_its_time_is_lost() {
        let mut events = healthy();
        // Shorter than a full answer, so it lists every stored window: 5000 must be there.
        let newer = vec![window(15_000, "7", 98), window(10_000, "12.25", 99)];
        events.push(read("c3", 80, 90, newer));
        assert_eq!(invariants(&events), ["integers average lost"]);
        // A full answer that starts after 5000 no longer lists it: nothing lost.
        let full: Vec<Window> = (0..LISTED as u64)
            .rev()
            .map(|i| window(10_000 + 5_000 * i, "9", 100))
            .collect();
        let mut events = healthy();
        events.retain(|e| e.client != FINAL_CLIENT);
        events.push(read("c3", 80, 90, full));
        assert!(!invariants(&events).contains(&"integers average lost"));
    }

    #[test]
    fn a_window_read_while_it_was_being_stored_may_be_missing_from_an_overlapping_read() {
        let events = [
            read("c1", 0, 30, vec![window(5_000, "1", 100)]),
            read("c2", 10, 20, vec![]),
        ];
        assert_eq!(invariants(&events), Vec::<&str>::new());
    }

    #[test]
    fn answers_out_of_order_off_the_boundary_out_of_range_or_overfull_are_malformed() {
        let bad = [
            vec![window(5_000, "1", 1), window(10_000, "1", 1)],
            vec![window(5_001, "1", 1)],
            vec![window(5_000, "0.5", 1)],
            vec![window(5_000, "1", 0)],
            vec![window(5_000, "1", 101)],
        ];
        for windows in bad {
            let events = [read("c1", 0, 10, windows.clone())];
            assert_eq!(
                invariants(&events),
                ["integers answer malformed"],
                "{windows:?}"
            );
        }
        // Integers are counted once per generator and tick, so not even a window two
        // aggregators shared (and marked incomplete) may count more.
        let mut incomplete = window(5_000, "1", 101);
        incomplete.complete = false;
        assert_eq!(
            invariants(&[read("c1", 0, 10, vec![incomplete])]),
            ["integers answer malformed"]
        );
    }

    #[test]
    fn a_final_read_with_a_window_missing_between_two_listed_ones_is_a_skipped_window() {
        let gap = vec![window(15_000, "7", 98), window(5_000, "5000.5", 100)];
        // Before the final reads a gap may be passing (a window whose store is retried).
        let passing = read("c1", 0, 10, gap.clone());
        assert!(skipped(&[(&passing, &gap)], &LIMITS).is_empty());
        let last = read(FINAL_CLIENT, 20, 30, gap.clone());
        let found = skipped(&[(&passing, &gap), (&last, &gap)], &LIMITS);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].invariant, "integers window skipped");
    }

    #[test]
    fn final_reads_without_a_newer_complete_window_mean_the_aggregator_did_not_resume() {
        let mut events = healthy();
        events.pop();
        let mut stalled = window(15_000, "7", 40);
        stalled.complete = false;
        let (w10, w5) = (window(10_000, "12.25", 99), window(5_000, "5000.5", 100));
        events.push(read(FINAL_CLIENT, 60, 70, vec![stalled, w10, w5]));
        assert_eq!(invariants(&events), ["integers did not resume"]);
    }
}
