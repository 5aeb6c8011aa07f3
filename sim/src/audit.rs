//! Checkers for what clients cannot see, fed by the node code itself
//! ([`troupe_node::shard::audit`]): every node of a run reports its copies' epochs and positions, the
//! epochs it serves, the answers it gives and the entries it acknowledges, and this module
//! asserts over all of them:
//! - an epoch never goes backwards on any copy (a wiped node starts a new copy);
//! - one owner per epoch of a shard, and it is the owner the epoch names;
//! - an acknowledged entry is on `replication_factor` copies when it is acknowledged (copies
//!   that follow its epoch or a newer one and have applied it): the owner and every replica
//!   it wrote to hold it, and they are `replication_factor` copies less the replicas that
//!   are down and held back (decision 006: while a replica is down, a write is acknowledged
//!   with one copy fewer, so one more lost node still loses nothing acknowledged);
//! - no two owners answer for a shard at overlapping times (the lease's job, decisions 007
//!   and 009): once an owner has started serving an epoch, no copy answers a read or decides a
//!   batch of commands under an older epoch, and an older owner acknowledges only entries that
//!   every copy it counts stored before that moment. Only the acknowledgement itself may come
//!   later: the replicas' answers may still be on their way while the new owner seals them,
//!   but what they took is then in the copy the new owner pulls.
//!
//! "Before" is exact: the simulation runs every node on one thread, so observations arrive in
//! the order they happen, and the checker orders them by arrival. Every node's lease runs on
//! its own monotonic clock, which in the simulation is turmoil's, at one rate for all nodes
//! (the swarm's clock skew moves only the real-time clock), so the design allows no overlap at
//! all, not even one bounded by skew.
//!
//! Reports come from inside the hosts' runtimes, which name the node ([`crate::hosts`]).
//! State is per thread, like the run.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use troupe_node::ids::ShardId;
use troupe_node::shard::audit::Observation;
use troupe_node::shard::{Epoch, Position, ShardMeta};

/// Violations kept per run (the rest are counted).
const KEPT: usize = 20;

/// When an observation arrived: its place among all of the run's, and the simulated time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Moment {
    order: u64,
    at: Duration,
}

impl std::fmt::Display for Moment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3} s", self.at.as_secs_f64())
    }
}

/// An owner's acknowledgement of an entry, and the copies it counted (its own first).
struct Ack<'a> {
    host: &'a str,
    shard: ShardId,
    epoch: &'a Epoch,
    seq: u64,
    copies: Vec<String>,
}

impl std::fmt::Display for Ack<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} acknowledged entry {} of shard {} under {}",
            self.host, self.seq, self.shard, self.epoch
        )
    }
}

/// An owner started serving an epoch of a shard.
#[derive(Clone, Debug)]
struct Start {
    epoch: Epoch,
    host: String,
    at: Moment,
}

#[derive(Default)]
struct Audit {
    /// Whether a run is being audited on this thread.
    on: bool,
    replication_factor: usize,
    /// Each host's copy of each shard, as last reported. A wiped copy stays until its host
    /// reports anew: an entry it held when the owner acknowledged it was on that copy, even
    /// if the disk was lost a moment before the acknowledgement arrived.
    copies: BTreeMap<(String, ShardId), ShardMeta>,
    /// Copies whose disk was wiped: their next report starts a new copy, whatever its epoch.
    fresh: BTreeSet<(String, ShardId)>,
    /// The epochs each shard started being served under, in the order they started.
    started: BTreeMap<ShardId, Vec<Start>>,
    /// When each copy first reached each position: per host and shard, every position above
    /// all it reported before (installs in progress skipped), in order. Kept through a wipe:
    /// what a copy held before it lost its disk, it held.
    reached: BTreeMap<(String, ShardId), Vec<(Position, Moment)>>,
    violations: Vec<String>,
    more: usize,
    checked: u64,
}

impl Audit {
    fn forget(&mut self, host: &str) {
        let wiped: Vec<(String, ShardId)> = self
            .copies
            .keys()
            .filter(|(h, _)| h == host)
            .cloned()
            .collect();
        self.fresh.extend(wiped);
    }

    fn violation(&mut self, what: String) {
        if self.violations.len() < KEPT {
            self.violations.push(what);
        } else {
            self.more += 1;
        }
    }

    fn observe(&mut self, host: String, at: Duration, observation: &Observation<'_>) {
        self.checked += 1;
        let now = Moment {
            order: self.checked,
            at,
        };
        match observation {
            Observation::Copy { shard, meta } => self.copy(host, *shard, meta, now),
            Observation::Serving { shard, epoch } => self.serving(host, *shard, epoch, now),
            Observation::Read { shard, epoch } => self.answered(&host, *shard, epoch, "read", now),
            Observation::Decided { shard, epoch } => {
                self.answered(&host, *shard, epoch, "batch of commands", now)
            }
            Observation::Acknowledged {
                shard,
                epoch,
                seq,
                replicas,
                held_back,
            } => {
                let mut copies = vec![host.clone()];
                copies.extend(replicas.iter().map(|r| r.as_str().to_owned()));
                let ack = Ack {
                    host: &host,
                    shard: *shard,
                    epoch,
                    seq: *seq,
                    copies,
                };
                self.acknowledged(&ack, *held_back);
                self.acknowledged_in_time(&ack, now);
            }
        }
    }

    fn copy(&mut self, host: String, shard: ShardId, meta: &ShardMeta, now: Moment) {
        let key = (host, shard);
        let started_over = self.fresh.remove(&key);
        if let Some(before) = self.copies.get(&key).filter(|_| !started_over) {
            if before.epoch > meta.epoch {
                let what = format!(
                    "the epoch of {}'s copy of shard {} went backwards: {:?} then {:?}",
                    key.0, shard, before.epoch, meta.epoch
                );
                self.violation(what);
            }
        }
        if !meta.installing {
            let reached = self.reached.entry(key.clone()).or_default();
            if reached.last().is_none_or(|(last, _)| meta.position > *last) {
                reached.push((meta.position.clone(), now));
            }
        }
        self.copies.insert(key, meta.clone());
    }

    fn serving(&mut self, host: String, shard: ShardId, epoch: &Epoch, now: Moment) {
        if epoch.owner.as_str() != host {
            let what = format!("{host} serves shard {shard} under {epoch}, another node's epoch");
            self.violation(what);
        }
        let starts = self.started.entry(shard).or_default();
        let twice = starts
            .iter()
            .find(|s| s.epoch == *epoch && s.host != host)
            .map(|other| {
                format!(
                    "{} and {host} both served shard {shard} under {epoch}",
                    other.host
                )
            });
        starts.push(Start {
            epoch: epoch.clone(),
            host,
            at: now,
        });
        if let Some(what) = twice {
            self.violation(what);
        }
    }

    /// The first epoch of `shard` newer than `epoch` that started being served, if any has.
    fn newer_start(&self, shard: ShardId, epoch: &Epoch) -> Option<&Start> {
        self.started.get(&shard)?.iter().find(|s| s.epoch > *epoch)
    }

    /// `host` answered (`what`) from its copy of `shard` under `epoch`: no newer epoch may be
    /// served yet.
    fn answered(&mut self, host: &str, shard: ShardId, epoch: &Epoch, what: &str, now: Moment) {
        if let Some(start) = self.newer_start(shard, epoch) {
            let what = format!(
                "{host} answered a {what} of shard {shard} under {epoch} at {now}, after {} \
                 started serving it under {} at {}",
                start.host, start.epoch, start.at
            );
            self.violation(what);
        }
    }

    /// The owner's copy and the replicas `ack` was written to hold it, and they are enough.
    fn acknowledged(&mut self, ack: &Ack<'_>, held_back: usize) {
        let holds = |holder: &str| {
            self.copies
                .get(&(holder.to_owned(), ack.shard))
                .is_some_and(|meta| {
                    !meta.installing
                        && meta.position.applied >= ack.seq
                        && meta.epoch.as_ref() >= Some(ack.epoch)
                })
        };
        let missing: Vec<&String> = ack.copies.iter().filter(|c| !holds(c)).collect();
        let wanted = self.replication_factor.saturating_sub(held_back);
        if !missing.is_empty() || ack.copies.len() < wanted {
            let what = format!(
                "{ack} on {:?} ({held_back} held back, {wanted} copies wanted); not holding \
                 it: {missing:?}",
                ack.copies
            );
            self.violation(what);
        }
    }

    /// An acknowledgement that comes after a newer epoch started being served is in time only
    /// if every copy it counts stored the entry before that: a copy the new owner could not
    /// seal that stored it later holds a write the new owner's copy lacks.
    fn acknowledged_in_time(&mut self, ack: &Ack<'_>, now: Moment) {
        let Some(start) = self.newer_start(ack.shard, ack.epoch).cloned() else {
            return;
        };
        let entry = Position {
            last_epoch: Some(ack.epoch.clone()),
            applied: ack.seq,
        };
        let late: Vec<String> = ack
            .copies
            .iter()
            .filter_map(|copy| {
                let reached = self.reached.get(&(copy.clone(), ack.shard));
                let stored = reached.and_then(|r| r.get(r.partition_point(|(p, _)| *p < entry)));
                match stored {
                    Some((_, at)) if at.order < start.at.order => None,
                    Some((_, at)) => Some(format!("{copy} at {at}")),
                    None => Some(format!("{copy} never")),
                }
            })
            .collect();
        if !late.is_empty() {
            let what = format!(
                "{ack} at {now}, after {} started serving it under {} at {}, and stored it \
                 late: {}",
                start.host,
                start.epoch,
                start.at,
                late.join(", ")
            );
            self.violation(what);
        }
    }
}

thread_local! {
    static AUDIT: RefCell<Audit> = RefCell::new(Audit::default());
}

/// Starts auditing a run on this thread, at `replication_factor`, and installs the auditor
/// in the node code (once per process).
pub fn start(replication_factor: usize) {
    troupe_node::shard::audit::install(observe);
    AUDIT.with(|audit| {
        *audit.borrow_mut() = Audit {
            on: true,
            replication_factor,
            ..Audit::default()
        }
    });
}

/// `host` lost its data directory: its copies start over.
pub fn forget(host: &str) {
    AUDIT.with(|audit| audit.borrow_mut().forget(host));
}

/// Stops auditing and gives the violations found (with a count of those not kept) and the
/// number of observations checked.
pub fn finish() -> (Vec<String>, u64) {
    AUDIT.with(|audit| {
        let audit = std::mem::take(&mut *audit.borrow_mut());
        let mut violations = audit.violations;
        if audit.more > 0 {
            violations.push(format!("... and {} more", audit.more));
        }
        (violations, audit.checked)
    })
}

fn observe(observation: &Observation<'_>) {
    let host = crate::hosts::current().unwrap_or_else(|| "an unknown host".to_owned());
    let at = crate::determinism::clock::elapsed().unwrap_or_default();
    let _ = AUDIT.try_with(|audit| {
        let Ok(mut audit) = audit.try_borrow_mut() else {
            return;
        };
        if !audit.on {
            return;
        }
        audit.observe(host, at, observation);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_node::ids::NodeId;
    use troupe_node::shard::Position;

    fn epoch(term: u64, owner: &str) -> Epoch {
        Epoch {
            term,
            owner: NodeId::new(owner),
        }
    }

    fn copy(epoch: &Epoch, applied: u64) -> ShardMeta {
        ShardMeta {
            epoch: Some(epoch.clone()),
            position: Position {
                last_epoch: Some(epoch.clone()),
                applied,
            },
            installing: false,
        }
    }

    fn audit() -> Audit {
        Audit {
            on: true,
            replication_factor: 2,
            ..Audit::default()
        }
    }

    /// `host` reports `observation` (all of shard 1).
    fn observe(audit: &mut Audit, host: &str, observation: Observation<'_>) {
        audit.observe(host.to_owned(), Duration::ZERO, &observation);
    }

    fn ack(audit: &mut Audit, owner: &str, epoch: &Epoch, seq: u64, replica: &NodeId) {
        let replicas = vec![replica];
        let (shard, held_back) = (ShardId(1), 0);
        let acknowledged = Observation::Acknowledged {
            shard,
            epoch,
            seq,
            replicas,
            held_back,
        };
        observe(audit, owner, acknowledged);
    }

    fn report(audit: &mut Audit, host: &str, meta: &ShardMeta) {
        observe(
            audit,
            host,
            Observation::Copy {
                shard: ShardId(1),
                meta,
            },
        );
    }

    #[test]
    fn an_entry_acknowledged_on_a_replica_that_does_not_hold_it_is_a_violation() {
        let (mut audit, e) = (audit(), epoch(3, "n1"));
        report(&mut audit, "n1", &copy(&e, 5));
        report(&mut audit, "n2", &copy(&e, 4));
        ack(&mut audit, "n1", &e, 5, &NodeId::new("n2"));
        assert_eq!(audit.violations.len(), 1, "{:?}", audit.violations);
        report(&mut audit, "n2", &copy(&e, 5));
        ack(&mut audit, "n1", &e, 5, &NodeId::new("n2"));
        assert_eq!(audit.violations.len(), 1);
    }

    #[test]
    fn a_replica_wiped_after_it_took_the_entry_still_counts_for_that_acknowledgement() {
        // Seen in `workload-wipe` runs of the first check-replay sweep: the replica answered,
        // then crashed and lost its disk before the answer arrived.
        let (mut audit, e) = (audit(), epoch(5, "n3"));
        report(&mut audit, "n3", &copy(&e, 8));
        report(&mut audit, "n4", &copy(&e, 8));
        audit.forget("n4");
        ack(&mut audit, "n3", &e, 8, &NodeId::new("n4"));
        assert!(audit.violations.is_empty(), "{:?}", audit.violations);
        // Restarted empty, its copy starts over at an older epoch: not a step backwards.
        report(&mut audit, "n4", &ShardMeta::default());
        assert!(audit.violations.is_empty(), "{:?}", audit.violations);
    }

    #[test]
    fn an_epoch_going_backwards_on_a_copy_and_two_owners_of_one_epoch_are_violations() {
        let mut audit = audit();
        report(&mut audit, "n2", &copy(&epoch(4, "n1"), 1));
        report(&mut audit, "n2", &copy(&epoch(3, "n1"), 1));
        assert_eq!(audit.violations.len(), 1, "{:?}", audit.violations);
        let e = epoch(6, "n1");
        serve(&mut audit, "n1", &e);
        assert_eq!(audit.violations.len(), 1);
        serve(&mut audit, "n2", &e);
        assert_eq!(audit.violations.len(), 3, "{:?}", audit.violations);
    }

    fn serve(audit: &mut Audit, host: &str, epoch: &Epoch) {
        observe(
            audit,
            host,
            Observation::Serving {
                shard: ShardId(1),
                epoch,
            },
        );
    }

    fn read(audit: &mut Audit, host: &str, epoch: &Epoch) {
        observe(
            audit,
            host,
            Observation::Read {
                shard: ShardId(1),
                epoch,
            },
        );
    }

    fn decide(audit: &mut Audit, host: &str, epoch: &Epoch) {
        observe(
            audit,
            host,
            Observation::Decided {
                shard: ShardId(1),
                epoch,
            },
        );
    }

    #[test]
    fn an_answer_under_an_epoch_after_a_newer_one_started_serving_is_a_violation() {
        let (mut audit, old, new) = (audit(), epoch(3, "n1"), epoch(4, "n2"));
        serve(&mut audit, "n1", &old);
        read(&mut audit, "n1", &old);
        read(&mut audit, "n3", &old);
        decide(&mut audit, "n1", &old);
        assert!(audit.violations.is_empty(), "{:?}", audit.violations);
        serve(&mut audit, "n2", &new);
        read(&mut audit, "n2", &new);
        read(&mut audit, "n3", &new);
        assert!(audit.violations.is_empty(), "{:?}", audit.violations);
        // The old owner, and a replica it brought up to date, answer after the new owner began.
        read(&mut audit, "n1", &old);
        read(&mut audit, "n3", &old);
        decide(&mut audit, "n1", &old);
        assert_eq!(audit.violations.len(), 3, "{:?}", audit.violations);
        let first = &audit.violations[0];
        assert!(
            first.contains("after n2 started serving it under 4@n2"),
            "{first}"
        );
    }

    #[test]
    fn an_acknowledgement_after_a_newer_epoch_started_counts_only_copies_stored_before_it() {
        let (mut audit, old, new) = (audit(), epoch(3, "n1"), epoch(4, "n2"));
        let n3 = NodeId::new("n3");
        serve(&mut audit, "n1", &old);
        decide(&mut audit, "n1", &old);
        report(&mut audit, "n1", &copy(&old, 5));
        report(&mut audit, "n3", &copy(&old, 5));
        decide(&mut audit, "n1", &old);
        report(&mut audit, "n1", &copy(&old, 6));
        serve(&mut audit, "n2", &new);
        // Entry 5 was on both copies before n2 began: its answer may still arrive now.
        ack(&mut audit, "n1", &old, 5, &n3);
        assert!(audit.violations.is_empty(), "{:?}", audit.violations);
        // Entry 6 reached the replica only after n2 began: n2's copy may lack it.
        report(&mut audit, "n3", &copy(&old, 6));
        ack(&mut audit, "n1", &old, 6, &n3);
        assert_eq!(audit.violations.len(), 1, "{:?}", audit.violations);
        assert!(
            audit.violations[0].contains("stored it late: n3"),
            "{:?}",
            audit.violations
        );
    }
}
