//! What the workload clients did and saw: one [`Event`] per request, with its simulated
//! invocation and completion times, and the invariant checkers that read the whole history.
//!
//! Outcomes are classified the way a client must read them: an answer that says what happened
//! ([`Outcome::Ok`], [`Outcome::Refused`]), or no such answer ([`Outcome::Unknown`]: a timeout, a
//! dropped connection, a 5xx), after which the operation may or may not have taken effect. The
//! checkers only count acknowledged operations as certain and give unknown ones both readings.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// One operation of the workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create (setup) or partial update of user `key` with a value written nowhere else.
    UserWrite { key: usize, value: String },
    /// `GET /api/user/{id}` of user `key`.
    UserRead { key: usize },
    /// `POST /add-session` for session user `user`.
    SessionAdd { user: usize },
    /// `POST /remove-session` for session user `user`.
    SessionRemove { user: usize },
    /// `GET /sessions/{user}`.
    SessionRead { user: usize },
    /// `POST /jobs` with a fresh object id.
    JobCreate { object: String },
    /// `GET /jobs/{job}`.
    JobRead { job: String },
    /// `POST /parties` by `device` at place `place` of the workload's places; the code is in
    /// the answer.
    PartyCreate { device: String, place: usize },
    /// `POST /parties/{code}/participants` of `device`.
    PartyJoin { code: String, device: String },
    /// `DELETE /parties/{code}/participants/{device}`.
    PartyLeave { code: String, device: String },
    /// `GET /parties/{code}/participants`.
    PartyRead { code: String },
    /// `GET /v1/integers`: the newest stored window averages.
    IntegersRead,
}

/// What an answer said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// A user's `name` (a read, or the merged user of a write).
    Name(String),
    /// A session count.
    Count(u32),
    /// A job and its status.
    Job { id: String, status: String },
    /// Success with nothing to compare (a create that found the user already there).
    Done,
    /// The code of a created party.
    Party(String),
    /// The participants a party read listed, in the order listed.
    Participants(Vec<Listed>),
    /// The window averages an integers read listed, in the order listed.
    Averages(Vec<Window>),
}

/// One stored window average of an integers read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Window start, Unix milliseconds of the simulation's clock.
    pub start_ms: u64,
    /// The average as the answer wrote it (compared as written: a stored average never changes).
    pub average: String,
    /// How many integers it averaged.
    pub count: u64,
    /// Whether the aggregator saw the whole window.
    pub complete: bool,
}

/// One participant of a party read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Its participant id (assigned in join order).
    pub id: u32,
    /// Its device.
    pub device: String,
    /// Whether the answer flagged it as host.
    pub host: bool,
}

/// How one request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer and what it said.
    Ok(Observed),
    /// An answer that says the operation changed nothing (404 of a read, 409 at the cap).
    Refused(u16),
    /// No answer that says whether it took effect.
    Unknown(String),
}

/// One request of one client.
#[derive(Clone, Debug)]
pub struct Event {
    /// The client that sent it (`final` for the reads after the faults).
    pub client: String,
    /// The node it was sent to.
    pub node: String,
    /// What it asked.
    pub op: Op,
    /// Simulated time it was sent.
    pub invoked: Duration,
    /// Simulated time its answer (or its failure) came.
    pub completed: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

impl Event {
    /// Whether this is an acknowledged change or an answered read.
    pub(crate) fn ok(&self) -> Option<&Observed> {
        match &self.outcome {
            Outcome::Ok(observed) => Some(observed),
            _ => None,
        }
    }

    fn is_unknown(&self) -> bool {
        matches!(self.outcome, Outcome::Unknown(_))
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{:>9.3}s..{:>9.3}s] {} via {}: {:?} -> {:?}",
            self.invoked.as_secs_f64(),
            self.completed.as_secs_f64(),
            self.client,
            self.node,
            self.op,
            self.outcome
        )
    }
}

/// The shared, append-only record of every client's events.
#[derive(Clone, Default)]
pub struct History(Arc<Mutex<Vec<Event>>>);

impl History {
    /// Appends one event.
    pub fn record(&self, event: Event) {
        crate::determinism::trace::record("request", &[], |line| {
            use std::fmt::Write as _;
            let _ = write!(line, "{event}");
        });
        self.lock().push(event);
    }

    /// A copy of every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        // Plain data, no invariant spans a panic: keep using it.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One broken invariant, with the events that show it.
#[derive(Debug)]
pub struct Violation {
    /// The invariant's name.
    pub invariant: &'static str,
    /// What it is about.
    pub subject: Subject,
    /// What was seen.
    pub detail: String,
}

/// The key an invariant is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A user key.
    User(usize),
    /// A session user.
    Sessions(usize),
    /// A job id.
    Job(String),
    /// A party code.
    Party(String),
    /// The integer averages.
    Integers,
}

impl Subject {
    /// Whether `op` touches this subject.
    pub fn touched_by(&self, event: &Event) -> bool {
        match (self, &event.op) {
            (Subject::User(k), Op::UserWrite { key, .. } | Op::UserRead { key }) => k == key,
            (
                Subject::Sessions(u),
                Op::SessionAdd { user } | Op::SessionRemove { user } | Op::SessionRead { user },
            ) => u == user,
            (Subject::Job(id), Op::JobRead { job }) => id == job,
            (Subject::Job(id), Op::JobCreate { .. }) => {
                matches!(event.ok(), Some(Observed::Job { id: created, .. }) if created == id)
            }
            (
                Subject::Party(c),
                Op::PartyJoin { code, .. } | Op::PartyLeave { code, .. } | Op::PartyRead { code },
            ) => c == code,
            (Subject::Party(c), Op::PartyCreate { .. }) => {
                matches!(event.ok(), Some(Observed::Party(created)) if created == c)
            }
            (Subject::Integers, Op::IntegersRead) => true,
            _ => false,
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

/// The configured bounds the checkers hold answers to.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most sessions one user may hold.
    pub session_cap: u32,
    /// Length of an integers window, milliseconds.
    pub window_ms: u64,
    /// Integers a full window holds (one per generator per tick).
    pub full_window: u64,
}

impl Limits {
    /// The bounds of `cluster`'s configuration.
    pub fn of(cluster: &troupe_node::config::ClusterConfig) -> Self {
        let integers = &cluster.integers;
        Self {
            session_cap: cluster.sessions.max_per_user,
            window_ms: integers.window_ms(),
            full_window: u64::from(integers.generators) * integers.window_ms()
                / integers.tick_ms.max(1),
        }
    }
}

/// Every invariant over the whole history; empty when all hold.
pub fn check(events: &[Event], limits: &Limits) -> Vec<Violation> {
    let mut violations = users(events);
    violations.extend(sessions(events, limits.session_cap));
    violations.extend(jobs(events));
    violations.extend(parties(events));
    violations.extend(crate::averages::check(events, limits));
    violations
}

/// Users: every read returns a written value, never one older than a value whose write was
/// acknowledged before the read began (and whose own write ended before that newer one began),
/// and never "not found" once the user's creation was acknowledged. Values are unique per write,
/// so a read names the write it saw.
fn users(events: &[Event]) -> Vec<Violation> {
    let mut writes: BTreeMap<usize, Vec<&Event>> = BTreeMap::new();
    let mut reads: Vec<(usize, &Event)> = Vec::new();
    for event in events {
        match &event.op {
            Op::UserWrite { key, .. } => {
                writes.entry(*key).or_default().push(event);
                // A write refused as "no such user" is a read that found nothing.
                if event.outcome == Outcome::Refused(404) {
                    reads.push((*key, event));
                }
            }
            Op::UserRead { key } => reads.push((*key, event)),
            _ => {}
        }
    }
    let mut violations = Vec::new();
    for (key, read) in reads {
        let writes = writes.get(&key).map(Vec::as_slice).unwrap_or_default();
        let acked_before_read = |w: &&&Event| w.ok().is_some() && w.completed < read.invoked;
        match &read.outcome {
            Outcome::Refused(404) => {
                if let Some(created) = writes.iter().find(acked_before_read) {
                    violations.push(Violation {
                        invariant: "acknowledged user lost",
                        subject: Subject::User(key),
                        detail: format!("{read}\n    after {created}"),
                    });
                }
            }
            Outcome::Ok(Observed::Name(value)) => {
                if let Some(why) = stale_or_unwritten(value, read, writes) {
                    violations.push(Violation {
                        invariant: "user read not linearizable",
                        subject: Subject::User(key),
                        detail: format!("{read}\n    {why}"),
                    });
                }
            }
            _ => {}
        }
    }
    violations
}

/// Why `read`, which returned `value`, could not have been linearized, if it could not.
fn stale_or_unwritten(value: &str, read: &Event, writes: &[&Event]) -> Option<String> {
    let sources: Vec<&&Event> = writes
        .iter()
        .filter(|w| matches!(&w.op, Op::UserWrite { value: v, .. } if v == value))
        .collect();
    if sources.is_empty() {
        return Some(format!("no write ever wrote {value:?}"));
    }
    let mut why = None;
    for source in sources {
        if source.invoked > read.completed {
            why = Some(format!("read before its write was sent: {source}"));
            continue;
        }
        // Only an acknowledged source has a known end; an unknown one may have landed late.
        let superseded_by = source.ok().and_then(|_| {
            writes.iter().find(|newer| {
                newer.ok().is_some()
                    && source.completed < newer.invoked
                    && newer.completed < read.invoked
            })
        });
        match superseded_by {
            Some(newer) => why = Some(format!("stale: {source}\n    superseded by {newer}")),
            None => return None,
        }
    }
    why
}

/// Sessions: no answer ever shows more than the cap, and once the workload is over every node
/// reports a count between what the acknowledged adds and removes allow, counting each
/// operation whose outcome is unknown as both applied and not.
fn sessions(events: &[Event], cap: u32) -> Vec<Violation> {
    let mut violations = Vec::new();
    #[derive(Default)]
    struct Tally {
        adds: u32,
        maybe_adds: u32,
        removes: u32,
        maybe_removes: u32,
        last: Vec<(u32, String)>,
    }
    let mut tallies: BTreeMap<usize, Tally> = BTreeMap::new();
    for event in events {
        let (user, add) = match event.op {
            Op::SessionAdd { user } => (user, Some(true)),
            Op::SessionRemove { user } => (user, Some(false)),
            Op::SessionRead { user } => (user, None),
            _ => continue,
        };
        if let Some(Observed::Count(n)) = event.ok() {
            if *n > cap {
                violations.push(Violation {
                    invariant: "session cap exceeded",
                    subject: Subject::Sessions(user),
                    detail: event.to_string(),
                });
            }
        }
        let tally = tallies.entry(user).or_default();
        match (add, event.ok(), event.is_unknown()) {
            (Some(true), Some(_), _) => tally.adds += 1,
            (Some(true), None, true) => tally.maybe_adds += 1,
            (Some(false), Some(_), _) => tally.removes += 1,
            (Some(false), None, true) => tally.maybe_removes += 1,
            (None, Some(Observed::Count(n)), _) if event.client == FINAL_CLIENT => {
                tally.last.push((*n, event.to_string()))
            }
            _ => {}
        }
    }
    for (user, tally) in tallies {
        let low = tally
            .adds
            .saturating_sub(tally.removes + tally.maybe_removes);
        let high = (tally.adds + tally.maybe_adds).saturating_sub(tally.removes);
        for (count, event) in &tally.last {
            if *count < low || *count > high {
                violations.push(Violation {
                    invariant: "session count differs from acknowledged adds minus removes",
                    subject: Subject::Sessions(user),
                    detail: format!(
                        "user {user}: final count {count}, allowed {low}..={high} \
                         ({} adds acked, {} unknown; {} removes acked, {} unknown)\n    {event}",
                        tally.adds, tally.maybe_adds, tally.removes, tally.maybe_removes
                    ),
                });
            }
        }
    }
    violations
}

/// Job statuses that end a job.
const TERMINAL: [&str; 2] = ["finished", "cancelled"];

/// Jobs: an acknowledged job is never "not found" afterwards, reaches a terminal state by the
/// final reads, and once a read saw it terminal every later read sees that same state.
fn jobs(events: &[Event]) -> Vec<Violation> {
    let mut created: BTreeMap<&str, &Event> = BTreeMap::new();
    let mut reads: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for event in events {
        match (&event.op, event.ok()) {
            (Op::JobCreate { .. }, Some(Observed::Job { id, .. })) => {
                created.insert(id, event);
            }
            (Op::JobRead { job }, _) => reads.entry(job).or_default().push(event),
            _ => {}
        }
    }
    let mut violations = Vec::new();
    for (id, create) in &created {
        let reads = reads.get(id).map(Vec::as_slice).unwrap_or_default();
        for read in reads {
            if read.outcome == Outcome::Refused(404) && create.completed < read.invoked {
                violations.push(Violation {
                    invariant: "acknowledged job lost",
                    subject: Subject::Job(id.to_string()),
                    detail: format!("{read}\n    after {create}"),
                });
            }
        }
        let status = |e: &Event| match e.ok() {
            Some(Observed::Job { status, .. }) => Some(status.clone()),
            _ => None,
        };
        for first in reads {
            let Some(seen) = status(first).filter(|s| TERMINAL.contains(&s.as_str())) else {
                continue;
            };
            for later in reads.iter().filter(|r| first.completed < r.invoked) {
                if let Some(other) = status(later).filter(|s| *s != seen) {
                    violations.push(Violation {
                        invariant: "job left its terminal state",
                        subject: Subject::Job(id.to_string()),
                        detail: format!("{seen} then {other}:\n    {first}\n    {later}"),
                    });
                }
            }
        }
        let ended = reads
            .iter()
            .filter(|r| r.client == FINAL_CLIENT)
            .any(|r| status(r).is_some_and(|s| TERMINAL.contains(&s.as_str())));
        if !ended {
            violations.push(Violation {
                invariant: "job never reached a terminal state",
                subject: Subject::Job(id.to_string()),
                detail: create.to_string(),
            });
        }
    }
    violations
}

/// Parties: every answered read is self-consistent (one host, the earliest joiner listed, no
/// device twice); a read lists every device whose join was acknowledged before it began and
/// no device whose leave was, unless a change of that device of the other kind may have taken
/// effect in between; a party with a certain member never answers "not found"; and once the
/// workload is over every node answers the same.
///
/// A change "may have taken effect" between its invocation and its answer if acknowledged, and
/// at any time after its invocation if its outcome is unknown (a request that timed out may
/// still be applied later). A refused change (404: no such party, or device not in it) did
/// nothing.
fn parties(events: &[Event]) -> Vec<Violation> {
    #[derive(Default)]
    struct Party<'a> {
        /// (device, whether it joins, the event) of every create, join and leave.
        changes: Vec<(&'a str, bool, &'a Event)>,
        /// Every read, and every join refused as "no such party".
        reads: Vec<&'a Event>,
    }
    let mut by_code: BTreeMap<&str, Party> = BTreeMap::new();
    for event in events {
        match (&event.op, event.ok()) {
            (Op::PartyCreate { device, .. }, Some(Observed::Party(code))) => {
                let party = by_code.entry(code).or_default();
                party.changes.push((device, true, event));
            }
            (Op::PartyJoin { code, device }, _) => {
                let party = by_code.entry(code).or_default();
                party.changes.push((device, true, event));
                if event.outcome == Outcome::Refused(404) {
                    party.reads.push(event);
                }
            }
            (Op::PartyLeave { code, device }, _) => {
                let party = by_code.entry(code).or_default();
                party.changes.push((device, false, event));
            }
            (Op::PartyRead { code }, _) => by_code.entry(code).or_default().reads.push(event),
            _ => {}
        }
    }
    let mut violations = Vec::new();
    for (code, party) in &by_code {
        let subject = || Subject::Party(code.to_string());
        let devices: std::collections::BTreeSet<&str> =
            party.changes.iter().map(|(device, ..)| *device).collect();
        for read in &party.reads {
            let settled =
                |device: &str, joined: bool| certain(device, joined, read, &party.changes);
            match &read.outcome {
                Outcome::Refused(404) => {
                    if let Some(member) = devices.iter().find_map(|d| settled(d, true)) {
                        violations.push(Violation {
                            invariant: "acknowledged party lost",
                            subject: subject(),
                            detail: format!("{read}\n    a member since {member}"),
                        });
                    }
                }
                Outcome::Ok(Observed::Participants(listed)) => {
                    if let Some(why) = inconsistent(listed) {
                        violations.push(Violation {
                            invariant: "party read inconsistent",
                            subject: subject(),
                            detail: format!("{read}\n    {why}"),
                        });
                    }
                    for device in &devices {
                        let shown = listed.iter().any(|l| l.device == *device);
                        let (invariant, since) = if shown {
                            ("acknowledged leave not seen", settled(device, false))
                        } else {
                            ("acknowledged join not seen", settled(device, true))
                        };
                        if let Some(since) = since {
                            violations.push(Violation {
                                invariant,
                                subject: subject(),
                                detail: format!("{device} in {read}\n    after {since}"),
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        let finals: Vec<&&Event> = party
            .reads
            .iter()
            .filter(|r| r.client == FINAL_CLIENT && !r.is_unknown())
            .collect();
        if let Some(first) = finals.first() {
            if let Some(other) = finals.iter().find(|r| r.outcome != first.outcome) {
                violations.push(Violation {
                    invariant: "final party reads disagree",
                    subject: subject(),
                    detail: format!("{first}\n    {other}"),
                });
            }
        }
    }
    violations
}

/// The acknowledged change that makes `device` certainly in the party (`joined`) or certainly
/// out of it at `read`: one answered before the read began, after which no change of the other
/// kind may have taken effect before the read ended.
fn certain<'a>(
    device: &str,
    joined: bool,
    read: &Event,
    changes: &[(&str, bool, &'a Event)],
) -> Option<&'a Event> {
    let of_device = || changes.iter().filter(move |(d, ..)| *d == device);
    of_device()
        .filter(|(_, joins, change)| {
            *joins == joined && change.ok().is_some() && change.completed < read.invoked
        })
        .map(|(.., change)| *change)
        .find(|settled| {
            !of_device().any(|(_, joins, other)| {
                let may_end = match other.outcome {
                    Outcome::Ok(_) => Some(other.completed),
                    Outcome::Unknown(_) => None,
                    Outcome::Refused(_) => return false,
                };
                *joins != joined
                    && may_end.is_none_or(|end| end > settled.invoked)
                    && other.invoked < read.completed
            })
        })
}

/// Why a party read's list could not be a party's state, if it could not: an open party has
/// exactly one host, its earliest remaining joiner, and lists each device once.
fn inconsistent(listed: &[Listed]) -> Option<String> {
    let hosts: Vec<&Listed> = listed.iter().filter(|l| l.host).collect();
    let earliest = listed.iter().map(|l| l.id).min();
    match hosts.as_slice() {
        [] => return Some("no host".into()),
        [host] if Some(host.id) != earliest => {
            return Some(format!("host {} is not the earliest joiner", host.id))
        }
        [_] => {}
        more => return Some(format!("{} hosts", more.len())),
    }
    let mut devices: Vec<&str> = listed.iter().map(|l| l.device.as_str()).collect();
    devices.sort_unstable();
    devices
        .windows(2)
        .find(|pair| pair[0] == pair[1])
        .map(|pair| format!("{} listed twice", pair[0]))
}

/// Name of the client that reads everything once the faults are over.
pub const FINAL_CLIENT: &str = "final";

/// The bounds of the default `cluster.toml`, for the checkers' tests.
#[cfg(test)]
pub(crate) const LIMITS: Limits = Limits {
    session_cap: 3,
    window_ms: 5_000,
    full_window: 100,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn at(client: &str, op: Op, from_ms: u64, to_ms: u64, outcome: Outcome) -> Event {
        Event {
            client: client.into(),
            node: "n1".into(),
            op,
            invoked: Duration::from_millis(from_ms),
            completed: Duration::from_millis(to_ms),
            outcome,
        }
    }

    fn write(value: &str, from: u64, to: u64, outcome: Outcome) -> Event {
        let op = Op::UserWrite {
            key: 0,
            value: value.into(),
        };
        at("c1", op, from, to, outcome)
    }

    fn read(value: &str, from: u64, to: u64) -> Event {
        let outcome = Outcome::Ok(Observed::Name(value.into()));
        at("c2", Op::UserRead { key: 0 }, from, to, outcome)
    }

    fn acked() -> Outcome {
        Outcome::Ok(Observed::Done)
    }

    #[test]
    fn a_read_of_a_superseded_value_is_a_violation_but_a_concurrent_one_is_not() {
        let history = [
            write("a", 0, 10, acked()),
            write("b", 20, 30, acked()),
            read("a", 25, 35),
            read("b", 40, 50),
        ];
        assert!(
            check(&history, &LIMITS).is_empty(),
            "concurrent read of a is fine"
        );
        let stale = [history[0].clone(), history[1].clone(), read("a", 40, 50)];
        let violations = check(&stale, &LIMITS);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].invariant, "user read not linearizable");
    }

    #[test]
    fn a_write_of_unknown_outcome_may_be_read_at_any_later_time() {
        let history = [
            write("a", 0, 10, acked()),
            write("b", 20, 30, Outcome::Unknown("timeout".into())),
            read("b", 100, 110),
            read("a", 120, 130),
        ];
        assert!(check(&history, &LIMITS).is_empty());
        let invented = [read("z", 0, 10)];
        assert_eq!(check(&invented, &LIMITS).len(), 1);
    }

    #[test]
    fn a_lost_user_and_an_overfull_session_count_are_violations() {
        let lost = [
            write("a", 0, 10, acked()),
            at("c2", Op::UserRead { key: 0 }, 20, 30, Outcome::Refused(404)),
        ];
        assert_eq!(check(&lost, &LIMITS)[0].invariant, "acknowledged user lost");
        let add = |n, outcome| at("c1", Op::SessionAdd { user: 0 }, n, n + 1, outcome);
        let over = [add(0, Outcome::Ok(Observed::Count(4)))];
        assert_eq!(check(&over, &LIMITS)[0].invariant, "session cap exceeded");
    }

    #[test]
    fn the_final_session_count_must_lie_between_what_acknowledged_operations_allow() {
        let add = |n, outcome| at("c1", Op::SessionAdd { user: 0 }, n, n + 1, outcome);
        let last = |count| {
            let outcome = Outcome::Ok(Observed::Count(count));
            at(FINAL_CLIENT, Op::SessionRead { user: 0 }, 100, 101, outcome)
        };
        let ops = [
            add(0, Outcome::Ok(Observed::Count(1))),
            add(2, Outcome::Unknown("reset".into())),
        ];
        for (count, fine) in [(0, false), (1, true), (2, true), (3, false)] {
            let mut history = ops.to_vec();
            history.push(last(count));
            assert_eq!(
                check(&history, &LIMITS).is_empty(),
                fine,
                "final count {count}"
            );
        }
    }

    #[test]
    fn a_job_must_end_once_and_stay_ended() {
        let job = |status: &str| {
            Outcome::Ok(Observed::Job {
                id: "j".into(),
                status: status.into(),
            })
        };
        let create = at(
            "c1",
            Op::JobCreate { object: "o".into() },
            0,
            1,
            job("processing"),
        );
        let read = |client, n, status| {
            at(
                client,
                Op::JobRead { job: "j".into() },
                n,
                n + 1,
                job(status),
            )
        };
        let fine = [
            create.clone(),
            read("c1", 5, "processing"),
            read(FINAL_CLIENT, 10, "finished"),
        ];
        assert!(check(&fine, &LIMITS).is_empty());
        let flipped = [
            create.clone(),
            read("c1", 5, "finished"),
            read(FINAL_CLIENT, 10, "cancelled"),
        ];
        assert_eq!(
            check(&flipped, &LIMITS)[0].invariant,
            "job left its terminal state"
        );
        let never = [create, read(FINAL_CLIENT, 10, "processing")];
        assert_eq!(
            check(&never, &LIMITS)[0].invariant,
            "job never reached a terminal state"
        );
    }

    fn party(op: Op, from: u64, to: u64, outcome: Outcome) -> Event {
        at("c1", op, from, to, outcome)
    }

    fn join(device: &str, from: u64, to: u64, outcome: Outcome) -> Event {
        let op = Op::PartyJoin {
            code: "p".into(),
            device: device.into(),
        };
        party(op, from, to, outcome)
    }

    fn leave(device: &str, from: u64, to: u64, outcome: Outcome) -> Event {
        let op = Op::PartyLeave {
            code: "p".into(),
            device: device.into(),
        };
        party(op, from, to, outcome)
    }

    /// A read listing `(id, device)` in order, the first one flagged host.
    fn listing(client: &str, members: &[(u32, &str)], from: u64, to: u64) -> Event {
        let listed = members
            .iter()
            .enumerate()
            .map(|(i, (id, device))| Listed {
                id: *id,
                device: (*device).into(),
                host: i == 0,
            })
            .collect();
        let op = Op::PartyRead { code: "p".into() };
        at(
            client,
            op,
            from,
            to,
            Outcome::Ok(Observed::Participants(listed)),
        )
    }

    fn created(from: u64, to: u64) -> Event {
        let op = Op::PartyCreate {
            device: "d0".into(),
            place: 0,
        };
        party(op, from, to, Outcome::Ok(Observed::Party("p".into())))
    }

    fn invariants(history: &[Event]) -> Vec<&'static str> {
        check(history, &LIMITS)
            .iter()
            .map(|v| v.invariant)
            .collect()
    }

    #[test]
    fn a_party_read_has_one_host_and_it_is_the_earliest_joiner() {
        let fine = [listing("c2", &[(0, "d0"), (1, "d1")], 0, 1)];
        assert!(invariants(&fine).is_empty());
        let late_host = [listing("c2", &[(1, "d1"), (0, "d0")], 0, 1)];
        assert_eq!(invariants(&late_host), ["party read inconsistent"]);
        let mut two_hosts = listing("c2", &[(0, "d0"), (1, "d1")], 0, 1);
        if let Outcome::Ok(Observed::Participants(listed)) = &mut two_hosts.outcome {
            listed[1].host = true;
        }
        assert_eq!(invariants(&[two_hosts]), ["party read inconsistent"]);
        let twice = [listing("c2", &[(0, "d0"), (1, "d0")], 0, 1)];
        assert_eq!(invariants(&twice), ["party read inconsistent"]);
    }

    #[test]
    fn a_read_after_an_acknowledged_join_or_leave_must_reflect_it() {
        let joined = [
            created(0, 10),
            join("d1", 20, 30, acked()),
            listing("c2", &[(0, "d0")], 40, 50),
        ];
        assert_eq!(invariants(&joined), ["acknowledged join not seen"]);
        let left = [
            created(0, 10),
            join("d1", 20, 30, acked()),
            leave("d1", 40, 50, acked()),
            listing("c2", &[(0, "d0"), (1, "d1")], 60, 70),
        ];
        assert_eq!(invariants(&left), ["acknowledged leave not seen"]);
        let host_left = [
            created(0, 10),
            leave("d0", 20, 30, acked()),
            listing("c2", &[(0, "d0")], 40, 50),
        ];
        assert_eq!(invariants(&host_left), ["acknowledged leave not seen"]);
    }

    #[test]
    fn overlapping_and_unknown_changes_allow_either_answer() {
        // The read began before the join was answered: it may precede it.
        let concurrent = [
            created(0, 10),
            join("d1", 20, 30, acked()),
            listing("c2", &[(0, "d0")], 25, 35),
        ];
        assert!(invariants(&concurrent).is_empty());
        // A leave of unknown outcome may land at any later time, so d1 may be gone or not.
        let unknown_leave = [
            created(0, 10),
            join("d1", 20, 30, acked()),
            leave("d1", 40, 50, Outcome::Unknown("timed out".into())),
            listing("c2", &[(0, "d0")], 200, 210),
            listing("c2", &[(0, "d0"), (1, "d1")], 300, 310),
        ];
        assert!(invariants(&unknown_leave).is_empty());
        // A rejoin overlapping the read may or may not be seen.
        let rejoin = [
            created(0, 10),
            leave("d0", 20, 30, acked()),
            join("d0", 40, 60, acked()),
            listing("c2", &[(1, "d0")], 50, 55),
        ];
        assert!(invariants(&rejoin).is_empty());
        // A refused leave changed nothing.
        let refused_leave = [
            created(0, 10),
            leave("d0", 20, 30, Outcome::Refused(404)),
            listing("c2", &[(0, "d0")], 40, 50),
        ];
        assert!(invariants(&refused_leave).is_empty());
    }

    #[test]
    fn a_party_with_a_certain_member_is_never_not_found() {
        let read_404 = |from| {
            party(
                Op::PartyRead { code: "p".into() },
                from,
                from + 1,
                Outcome::Refused(404),
            )
        };
        let lost = [created(0, 10), read_404(20)];
        assert_eq!(invariants(&lost), ["acknowledged party lost"]);
        let join_404 = [created(0, 10), join("d1", 20, 30, Outcome::Refused(404))];
        assert_eq!(invariants(&join_404), ["acknowledged party lost"]);
        let emptied = [
            created(0, 10),
            join("d1", 20, 30, acked()),
            leave("d0", 40, 50, acked()),
            leave("d1", 60, 70, Outcome::Unknown("reset".into())),
            read_404(80),
        ];
        assert!(invariants(&emptied).is_empty());
    }

    #[test]
    fn final_party_reads_must_agree_across_nodes() {
        let history = [
            created(0, 10),
            join("d1", 20, 30, Outcome::Unknown("timed out".into())),
            listing(FINAL_CLIENT, &[(0, "d0"), (1, "d1")], 100, 101),
            listing(FINAL_CLIENT, &[(0, "d0")], 102, 103),
        ];
        assert_eq!(invariants(&history), ["final party reads disagree"]);
        assert!(invariants(&history[..3]).is_empty());
    }
}
