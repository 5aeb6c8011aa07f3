//! Checkers for what clients cannot see, fed by the node code itself
//! ([`troupe_node::shard::audit`]): every node of a run reports its copies' epochs and positions, the
//! epochs it serves and the entries it acknowledges, and this module asserts over all of them:
//! - an epoch never goes backwards on any copy (a wiped node starts a new copy);
//! - one owner per epoch of a shard, and it is the owner the epoch names;
//! - an acknowledged entry is on `replication_factor` copies when it is acknowledged (copies
//!   that follow its epoch or a newer one and have applied it): the owner and every replica
//!   it wrote to hold it, and they are `replication_factor` copies less the replicas that
//!   are down and held back (decision 006: while a replica is down, a write is acknowledged
//!   with one copy fewer, so one more lost node still loses nothing acknowledged).
//!
//! Reports come from inside the hosts' runtimes; the host is told apart by its runtime
//! ([`register_host`]). State is per thread, like the run.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use troupe_node::ids::ShardId;
use troupe_node::shard::audit::Observation;
use troupe_node::shard::{Epoch, ShardMeta};

/// Violations kept per run (the rest are counted).
const KEPT: usize = 20;

#[derive(Default)]
struct Audit {
    /// Whether a run is being audited on this thread.
    on: bool,
    replication_factor: usize,
    /// The host of each node runtime started so far.
    hosts: HashMap<tokio::runtime::Id, String>,
    /// Each host's copy of each shard, as last reported. A wiped copy stays until its host
    /// reports anew: an entry it held when the owner acknowledged it was on that copy, even
    /// if the disk was lost a moment before the acknowledgement arrived.
    copies: BTreeMap<(String, ShardId), ShardMeta>,
    /// Copies whose disk was wiped: their next report starts a new copy, whatever its epoch.
    fresh: BTreeSet<(String, ShardId)>,
    /// Who served each epoch of each shard.
    serving: BTreeMap<(ShardId, Epoch), String>,
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

    fn observe(&mut self, host: String, observation: &Observation<'_>) {
        self.checked += 1;
        match observation {
            Observation::Copy { shard, meta } => {
                let key = (host, *shard);
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
                self.copies.insert(key, (*meta).clone());
            }
            Observation::Serving { shard, epoch } => {
                if epoch.owner.as_str() != host {
                    let what =
                        format!("{host} serves shard {shard} under {epoch}, another node's epoch");
                    self.violation(what);
                }
                let key = (*shard, (*epoch).clone());
                if let Some(other) = self.serving.get(&key).filter(|other| **other != host) {
                    let what =
                        format!("{other} and {host} both served shard {shard} under {epoch}");
                    self.violation(what);
                }
                self.serving.insert(key, host);
            }
            Observation::Acknowledged {
                shard,
                epoch,
                seq,
                replicas,
                held_back,
            } => {
                let holds = |holder: &str| {
                    self.copies
                        .get(&(holder.to_owned(), *shard))
                        .is_some_and(|meta| {
                            !meta.installing
                                && meta.position.applied >= *seq
                                && meta.epoch.as_ref() >= Some(*epoch)
                        })
                };
                let mut copies = vec![host.clone()];
                copies.extend(replicas.iter().map(|r| r.as_str().to_owned()));
                let missing: Vec<&String> = copies.iter().filter(|c| !holds(c)).collect();
                let wanted = self.replication_factor.saturating_sub(*held_back);
                if !missing.is_empty() || copies.len() < wanted {
                    let what = format!(
                        "{host} acknowledged entry {seq} of shard {shard} under {epoch} on \
                         {copies:?} ({held_back} held back, {wanted} copies wanted); \
                         not holding it: {missing:?}"
                    );
                    self.violation(what);
                }
            }
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

/// Called by a node as it starts, on its host's runtime: reports from this runtime are `host`'s.
pub fn register_host(host: &str) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        AUDIT.with(|audit| {
            audit
                .borrow_mut()
                .hosts
                .insert(handle.id(), host.to_owned());
        });
    }
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
    let runtime = tokio::runtime::Handle::try_current().ok().map(|h| h.id());
    let _ = AUDIT.try_with(|audit| {
        let Ok(mut audit) = audit.try_borrow_mut() else {
            return;
        };
        if !audit.on {
            return;
        }
        let host = runtime
            .and_then(|id| audit.hosts.get(&id).cloned())
            .unwrap_or_else(|| "an unknown host".to_owned());
        audit.observe(host, observation);
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

    fn ack(audit: &mut Audit, owner: &str, epoch: &Epoch, seq: u64, replica: &NodeId) {
        let observation = Observation::Acknowledged {
            shard: ShardId(1),
            epoch,
            seq,
            replicas: vec![replica],
            held_back: 0,
        };
        audit.observe(owner.to_owned(), &observation);
    }

    fn report(audit: &mut Audit, host: &str, meta: &ShardMeta) {
        let observation = Observation::Copy {
            shard: ShardId(1),
            meta,
        };
        audit.observe(host.to_owned(), &observation);
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
        // workload-wipe seeds 1, 16, 29, 38, 41, 44 and 46 of the first check-replay sweep:
        // the replica answered, then crashed and lost its disk before the answer arrived.
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
        let serving = |host: &str, audit: &mut Audit| {
            let observation = Observation::Serving {
                shard: ShardId(1),
                epoch: &e,
            };
            audit.observe(host.to_owned(), &observation);
        };
        serving("n1", &mut audit);
        assert_eq!(audit.violations.len(), 1);
        serving("n2", &mut audit);
        assert_eq!(audit.violations.len(), 3, "{:?}", audit.violations);
    }
}
