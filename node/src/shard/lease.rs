//! The owner lease, confirmed by round trips (decisions 007 and 009).
//!
//! An owner, or a replica answering in its place, may answer only while a strict majority of
//! the cluster (itself included) has confirmed within the lease that it and this node reach each
//! other. Hearing the others' gossip is not enough: a node whose *outgoing* links are cut still
//! receives every peer's gossip heartbeats (chitchat reports heartbeats from the digests peers
//! send it), so it would keep answering from a copy the others have long replaced.
//!
//! [`keep`] asks every other live member once per gossip round, over RPC, whether it hears this
//! node's gossip; a member counts from the moment the question was *sent* that it answered yes
//! to (a round trip proves both directions at some point after that). When the lease lapses the
//! shard layer forgets that it serves or is synced on anything ([`Shards::lease_lapsed`]): a
//! node that regains the lease takes its shards over again with a new epoch, pulling the newest
//! copy, instead of answering from a copy it kept through the cut.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::host::{peer_of, Shards};
use super::peer::{PeerError, PeerReply, PeerRequest};
use crate::ids::NodeId;
use crate::topology::Topology;

/// When each member last confirmed, in a round trip, that it hears this node.
#[derive(Clone, Debug, Default)]
pub(crate) struct Confirmations {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Send time of the latest question each member answered yes to.
    confirmed: HashMap<NodeId, Instant>,
    /// Members with a question in flight (at most one each).
    asking: HashSet<NodeId>,
}

impl Confirmations {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Plain timestamps, no invariant spans a panic: keep using them.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that `node` confirmed a question sent at `sent`.
    fn confirm(&self, node: &NodeId, sent: Instant) {
        let mut inner = self.lock();
        let latest = inner.confirmed.entry(node.clone()).or_insert(sent);
        *latest = (*latest).max(sent);
    }

    /// Whether `node` confirmed a question sent within `lease` of `now`.
    fn fresh(&self, node: &NodeId, lease: Duration, now: Instant) -> bool {
        self.lock()
            .confirmed
            .get(node)
            .is_some_and(|sent| now.saturating_duration_since(*sent) <= lease)
    }

    /// Marks a question to `node` as in flight; false if one already is.
    fn start_asking(&self, node: &NodeId) -> bool {
        self.lock().asking.insert(node.clone())
    }

    fn done_asking(&self, node: &NodeId) {
        self.lock().asking.remove(node);
    }

    /// Whether `me` holds the lease in `topology`: a strict majority of the members it knows
    /// (itself included; only members the failure detector calls live can count) confirmed
    /// within `lease`.
    pub(crate) fn majority(&self, topology: &Topology, me: &NodeId, lease: Duration) -> bool {
        let now = Instant::now();
        let known = topology.membership.members().count();
        let fresh = topology
            .membership
            .members()
            .filter(|m| m.node_id == *me || (m.live && self.fresh(&m.node_id, lease, now)))
            .count();
        fresh * 2 > known
    }
}

/// Keeps the lease confirmed until `shutdown`: once per gossip round, asks every other live
/// member whether it hears this node, and tells the shard layer when the lease has lapsed.
pub async fn keep(shards: Shards, shutdown: CancellationToken) {
    let round = shards.inner.config.gossip.interval();
    let mut tick = tokio::time::interval(round);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut held = false;
    loop {
        tokio::select! {
            // The node is stopping.
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Checked before this round's answers can renew it, so a lapse is never missed between
        // two checks.
        let holds = shards.fresh_majority(&shards.topology());
        if held && !holds {
            // A starting node holds the lease alone until it learns of its peers: only a lapse
            // that touches shards is worth telling.
            let shards_affected = shards.lease_lapsed();
            if shards_affected > 0 {
                info!(shards_affected, "lease lapsed: no majority confirmed this node within the lease; its shards are taken over again once it is back");
            }
        }
        held = holds;
        ask_all(&shards);
    }
}

/// Sends one question to each other live member that has none in flight.
fn ask_all(shards: &Shards) {
    let topology = shards.topology();
    let me = &shards.inner.me;
    for member in topology.membership.members() {
        if member.node_id == *me || !member.live {
            continue;
        }
        let confirmations = shards.inner.confirmations.clone();
        if !confirmations.start_asking(&member.node_id) {
            continue;
        }
        let (peers, peer) = (shards.inner.peers.clone(), peer_of(member));
        tokio::spawn(async move {
            let sent = Instant::now();
            let node = &peer.node_id;
            match peers.call(&peer, PeerRequest::LeaseCheck, None).await {
                Ok(PeerReply::LeaseAnswer { hears_you: true }) => confirmations.confirm(node, sent),
                Ok(PeerReply::LeaseAnswer { hears_you: false }) => {}
                Ok(other) => {
                    warn!(peer = %node, answer = ?other, "unexpected answer to a lease check")
                }
                Err(error @ (PeerError::Refused(_) | PeerError::Unexpected(_))) => {
                    warn!(peer = %node, %error, "unexpected answer to a lease check")
                }
                // Unreachable or slow: it simply does not confirm.
                Err(PeerError::Unreachable(_)) => {}
            }
            confirmations.done_asking(node);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::snapshot::test_snapshot;

    #[test]
    fn a_confirmation_counts_from_when_the_question_was_sent_until_the_lease_ends() {
        let confirmations = Confirmations::default();
        let n2 = NodeId::new("n2");
        let lease = Duration::from_secs(2);
        let sent = Instant::now();
        assert!(!confirmations.fresh(&n2, lease, sent), "never confirmed");
        confirmations.confirm(&n2, sent);
        assert!(confirmations.fresh(&n2, lease, sent + Duration::from_secs(2)));
        assert!(!confirmations.fresh(&n2, lease, sent + Duration::from_millis(2_001)));
        // A question answered late does not move the confirmation back.
        confirmations.confirm(&n2, sent - Duration::from_millis(500));
        assert!(confirmations.fresh(&n2, lease, sent + Duration::from_secs(2)));
    }

    #[test]
    fn the_lease_needs_a_strict_majority_of_fresh_confirmations_from_live_members() {
        let me = NodeId::new("n1");
        let lease = Duration::from_secs(2);
        let topology = |list: &[(&str, u64, bool)]| Topology {
            membership: std::sync::Arc::new(test_snapshot(list)),
            table: Default::default(),
            live_grew_at: Instant::now(),
            heard: Default::default(),
        };
        let five = topology(&[
            ("n1", 1, true),
            ("n2", 1, true),
            ("n3", 1, true),
            ("n4", 1, true),
            ("n5", 1, false),
        ]);
        let confirmations = Confirmations::default();
        assert!(
            !confirmations.majority(&five, &me, lease),
            "alone among five"
        );
        confirmations.confirm(&NodeId::new("n2"), Instant::now());
        confirmations.confirm(&NodeId::new("n5"), Instant::now());
        assert!(
            !confirmations.majority(&five, &me, lease),
            "a dead member's confirmation does not count"
        );
        confirmations.confirm(&NodeId::new("n3"), Instant::now());
        assert!(confirmations.majority(&five, &me, lease), "three of five");
        assert!(
            confirmations.majority(&topology(&[("n1", 1, true)]), &me, lease),
            "a cluster of one"
        );
        let stale = Confirmations::default();
        for node in ["n2", "n3"] {
            stale.confirm(&NodeId::new(node), Instant::now() - Duration::from_secs(3));
        }
        assert!(
            !stale.majority(&five, &me, lease),
            "confirmations older than the lease"
        );
    }

    #[test]
    fn only_one_question_per_member_is_in_flight() {
        let confirmations = Confirmations::default();
        let n2 = NodeId::new("n2");
        assert!(confirmations.start_asking(&n2));
        assert!(!confirmations.start_asking(&n2));
        confirmations.done_asking(&n2);
        assert!(confirmations.start_asking(&n2));
    }
}
