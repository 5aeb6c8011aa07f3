//! Checkers for what clients cannot see, fed by the node code itself
//! ([`troupe_node::audit`]): every node of a run reports its copies' epochs and positions, the
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
use std::collections::{BTreeMap, HashMap};

use troupe_node::audit::Observation;
use troupe_node::ids::ShardId;
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
    /// Each host's copy of each shard, as last reported.
    copies: BTreeMap<(String, ShardId), ShardMeta>,
    /// Who served each epoch of each shard.
    serving: BTreeMap<(ShardId, Epoch), String>,
    violations: Vec<String>,
    more: usize,
    checked: u64,
}

impl Audit {
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
                if let Some(before) = self.copies.get(&key) {
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
    troupe_node::audit::install(observe);
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
    AUDIT.with(|audit| audit.borrow_mut().copies.retain(|(h, _), _| h != host));
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
