//! Pre-copy on join: before a joining node publishes `ready`, it has the current owner of every
//! shard it will hold copy that shard to it, so that ownership switches to a copy that is
//! already there (decision 010).
//!
//! Placement counts only ready nodes, so while a node is `joining` nothing is placed on it. It
//! computes the placement it will be part of (the ready members plus itself) and, for each shard
//! that placement gives it as owner or replica, asks the shard's current owner for a copy
//! ([`PeerRequest::PreCopy`], through the shard layer's [`Peers`](crate::shard::Peers)). The owner pushes it between two commands, as it catches up a
//! replica: the missing log entries, or a snapshot. A second pass then brings every copy that
//! received something up to the changes made meanwhile, and the node becomes ready. When placement then moves a shard
//! here, the new owner's seal only pulls the few entries written since the last pass.
//!
//! A pre-copy is not a replica: the owner does not send it its writes, so it never answers
//! reads in the owner's place, and its copy counts for nothing until the seal has caught it up.
//! The wait is bounded (`migration.pre_copy_timeout_ms`): past it the node becomes ready anyway
//! and the shards it did not get are copied while their seal runs, as without pre-copy.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::ids::{NodeId, ShardId};
use crate::node::Node;
use crate::placement::ShardTable;
use crate::shard::host::{peer_of, PreCopy, PRE_COPY_TIMEOUT};
use crate::shard::{Peer, PeerError, PeerReply, PeerRequest, Refusal};
use crate::topology::Topology;

/// Shards copied at the same time. Each one holds up its owner's writes to that shard while it
/// is copied, and holds a snapshot page here. The shards are asked in an order that takes
/// turns between their owners, so every owner is asked at once (decision 031): a node that
/// becomes ready before the others owns many shards at a cold start, most of them empty, and
/// one round trip per shard, four at a time, cost the next joining nodes 4 to 6.6 s.
const PARALLEL: usize = 16;
/// Pause before asking again after an owner could not copy a shard.
const RETRY: Duration = Duration::from_millis(250);
/// Owners named by the previous one asked in a row without a pause (views differ by a few
/// ready nodes at most, so more would only chase a view that is still changing).
const REDIRECTS: u32 = 2;

/// What a pre-copy achieved.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PreCopied {
    /// Shards copied here by their owner.
    pub copied: Vec<ShardId>,
    /// Shards not copied before the deadline, with the last reason.
    pub missing: Vec<(ShardId, String)>,
}

/// The shards placement gives `me` once it is ready (`prospective`), that another node owns
/// now (`current`): the ones a joining node must receive.
pub fn shards_to_receive(
    current: &ShardTable,
    prospective: &ShardTable,
    me: &NodeId,
) -> Vec<ShardId> {
    (0..prospective.len() as u32)
        .map(ShardId)
        .filter(|&shard| prospective.replicas(shard).contains(me))
        .filter(|&shard| current.owner(shard).is_some_and(|owner| owner != me))
        .collect()
}

/// `shards` reordered so that owners take turns: the first shard of every owner, then the
/// second of every owner, and so on, so the first [`PARALLEL`] requests go to as many owners
/// as there are.
fn by_turns_of_owner(current: &ShardTable, shards: Vec<ShardId>) -> Vec<ShardId> {
    let mut per_owner: BTreeMap<Option<&NodeId>, Vec<ShardId>> = BTreeMap::new();
    for shard in shards {
        per_owner
            .entry(current.owner(shard))
            .or_default()
            .push(shard);
    }
    let turns = per_owner.values().map(Vec::len).max().unwrap_or(0);
    (0..turns)
        .flat_map(|turn| per_owner.values().filter_map(move |s| s.get(turn).copied()))
        .collect()
}

/// The placement once this node is ready too.
fn prospective(node: &Node, topology: &Topology) -> ShardTable {
    let mut members = topology.membership.placement_members();
    if !members.iter().any(|(id, _)| *id == node.inner.me) {
        members.push((node.inner.me.clone(), node.inner.region.clone()));
    }
    ShardTable::compute(
        &node.inner.layout,
        &members,
        node.inner.cluster.cluster.replication_factor,
    )
}

/// Copies every shard this joining node will hold from its current owner, in two passes,
/// within `timeout`; logs the outcome. The shards stay marked as pre-copies (their copies are
/// kept when an owner says to drop them) until [`finish`].
pub async fn pre_copy(node: &Node, timeout: Duration) -> PreCopied {
    let started = Instant::now();
    let deadline = started + timeout;
    let topology = node.topology();
    let Some(me) = my_peer(node, &topology) else {
        return PreCopied::default();
    };
    let shards = by_turns_of_owner(
        &topology.table,
        shards_to_receive(
            &topology.table,
            &prospective(node, &topology),
            &node.inner.me,
        ),
    );
    if shards.is_empty() {
        return PreCopied::default();
    }
    for &shard in &shards {
        node.inner
            .shards
            .update_local(shard, |l| l.pre_copy = Some(PreCopy::Pending));
    }
    let first = copy_all(node, &me, &shards, deadline).await;
    // The changes made while the others were copied: a few log entries each. A shard whose
    // owner had nothing to copy is not asked again: at a cold start that is every shard, and
    // a second round trip each cost the last joining nodes a second; a write made meanwhile
    // is copied by the seal, as for any pre-copy that did not happen (decision 040).
    let copied: Vec<ShardId> = first
        .copied
        .iter()
        .copied()
        .filter(|&shard| !node.inner.shards.holds_nothing(shard))
        .collect();
    let second = copy_all(node, &me, &copied, deadline).await;
    let mut outcome = PreCopied {
        copied: first.copied,
        missing: first.missing,
    };
    // A shard whose second pass failed still holds its first copy; the seal catches it up.
    if !second.missing.is_empty() {
        let late: Vec<String> = second.missing.iter().map(|(s, _)| s.to_string()).collect();
        tracing::debug!(shards = %late.join(" "), "second pre-copy pass incomplete");
    }
    outcome.copied.sort();
    report(&outcome, started.elapsed());
    outcome
}

/// The node is ready and in placement: its pre-copies are now ordinary copies, dropped or kept
/// by their owners' seals like any other.
pub fn finish(node: &Node) {
    let count = node.inner.shards.local().len() as u32;
    for shard in (0..count).map(ShardId) {
        node.inner.shards.update_local(shard, |l| l.pre_copy = None);
    }
}

async fn copy_all(node: &Node, me: &Peer, shards: &[ShardId], deadline: Instant) -> PreCopied {
    let results: Vec<(ShardId, Result<(), String>)> = stream::iter(shards.iter().copied())
        .map(|shard| async move { (shard, copy_one(node, me, shard, deadline).await) })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut outcome = PreCopied::default();
    for (shard, result) in results {
        match result {
            Ok(()) => outcome.copied.push(shard),
            Err(reason) => outcome.missing.push((shard, reason)),
        }
    }
    outcome.missing.sort();
    outcome
}

/// Asks the current owner of `shard` for a copy until it answers done or `deadline` passes.
/// An owner that answers that another node owns the shard (its view is newer: at a cold start
/// placement changes as every node turns ready) is taken at its word at once, up to
/// [`REDIRECTS`] times in a row, rather than after [`RETRY`] when this node's view catches up.
async fn copy_one(node: &Node, me: &Peer, shard: ShardId, deadline: Instant) -> Result<(), String> {
    let mut told: Option<NodeId> = None;
    let mut redirects = 0;
    loop {
        let topology = node.topology();
        let named = told
            .take()
            .and_then(|id| topology.membership.get(&id).filter(|m| m.live));
        let reason = match named.or_else(|| topology.owner(shard)) {
            Some(owner) if owner.node_id != node.inner.me => {
                let request = PeerRequest::PreCopy {
                    shard,
                    to: me.clone(),
                };
                let wait = PRE_COPY_TIMEOUT
                    .min(deadline.saturating_duration_since(Instant::now()))
                    .max(Duration::from_millis(1));
                let peers = &node.inner.shards.inner.peers;
                match peers.call(&peer_of(owner), request, Some(wait)).await {
                    Ok(PeerReply::Done) => return Ok(()),
                    Err(PeerError::Refused(Refusal::NotOwner { owner: Some(next) }))
                        if redirects < REDIRECTS
                            && next != owner.node_id
                            && next != node.inner.me =>
                    {
                        redirects += 1;
                        told = Some(next);
                        continue;
                    }
                    Ok(other) => format!("{}: {other:?}", owner.node_id),
                    Err(error) => format!("{}: {error}", owner.node_id),
                }
            }
            _ => "no other owner".to_owned(),
        };
        redirects = 0;
        if Instant::now() + RETRY >= deadline {
            return Err(reason);
        }
        tracing::debug!(%shard, %reason, "pre-copy refused: asking again");
        tokio::time::sleep(RETRY).await;
    }
}

fn my_peer(node: &Node, topology: &Topology) -> Option<Peer> {
    topology.membership.get(&node.inner.me).map(peer_of)
}

fn report(outcome: &PreCopied, took: Duration) {
    let copied: Vec<String> = outcome.copied.iter().map(ToString::to_string).collect();
    if outcome.missing.is_empty() {
        info!(
            shards = outcome.copied.len(),
            took_ms = took.as_millis() as u64,
            copied = %copied.join(" "),
            "pre-copy complete"
        );
    } else {
        let missing: Vec<String> = outcome
            .missing
            .iter()
            .map(|(shard, reason)| format!("{shard} ({reason})"))
            .collect();
        warn!(
            shards = outcome.copied.len(),
            took_ms = took.as_millis() as u64,
            missing = %missing.join(", "),
            "pre-copy incomplete: these shards are copied when their seal runs"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::RegionName;
    use crate::layout::ShardLayout;

    fn table(nodes: &[&str]) -> ShardTable {
        let members: Vec<(NodeId, RegionName)> = nodes
            .iter()
            .map(|n| (NodeId::new(*n), RegionName::new("r")))
            .collect();
        ShardTable::compute(&ShardLayout::new(32, &[], 1), &members, 2)
    }

    #[test]
    fn a_joining_node_receives_every_shard_it_will_own_or_replicate_and_no_other() {
        let current = table(&["a", "b", "c"]);
        let prospective = table(&["a", "b", "c", "d"]);
        let d = NodeId::new("d");
        let receive = shards_to_receive(&current, &prospective, &d);
        let expected: Vec<ShardId> = (0..32)
            .map(ShardId)
            .filter(|&s| prospective.replicas(s).contains(&d))
            .collect();
        assert_eq!(receive, expected);
        // About 2/4 of the shards at RF 2.
        assert!((12..=20).contains(&receive.len()), "{}", receive.len());
    }

    #[test]
    fn pre_copy_asks_every_owner_before_asking_any_owner_twice() {
        let current = table(&["a", "b", "c"]);
        let all: Vec<ShardId> = (0..32).map(ShardId).collect();
        let ordered = by_turns_of_owner(&current, all.clone());
        let mut sorted = ordered.clone();
        sorted.sort();
        assert_eq!(sorted, all, "every shard once");
        let first: Vec<&NodeId> = ordered[..3]
            .iter()
            .filter_map(|&s| current.owner(s))
            .collect();
        assert_eq!(
            first,
            [&NodeId::new("a"), &NodeId::new("b"), &NodeId::new("c")]
        );
    }

    #[test]
    fn the_first_node_of_a_cluster_receives_nothing() {
        let prospective = table(&["a"]);
        assert!(shards_to_receive(&table(&[]), &prospective, &NodeId::new("a")).is_empty());
    }
}
