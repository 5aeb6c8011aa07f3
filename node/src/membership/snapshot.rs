//! An immutable view of the membership, and the typed changes between two views.

use std::collections::BTreeMap;

use super::member::Member;
use crate::ids::{NodeId, RegionName};

/// Every known member (newest incarnation of each node id), as of one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipSnapshot {
    members: BTreeMap<NodeId, Member>,
    /// Nodes gossip has named whose keys have not all arrived yet (not members yet).
    incomplete: usize,
}

/// How a member changed between two snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// A node id appeared.
    Added(Member),
    /// A node's status, liveness, addresses or generation changed (a restart shows up as an
    /// update with a higher generation).
    Updated {
        /// As before.
        before: Member,
        /// As now.
        after: Member,
    },
    /// A node id was forgotten (dead past its grace period).
    Removed(Member),
}

impl MembershipSnapshot {
    /// Builds a snapshot, keeping the highest generation seen for each node id: an older
    /// incarnation that is still gossiped about (dead) never hides its successor.
    pub fn from_members(members: impl IntoIterator<Item = Member>) -> Self {
        let mut by_id: BTreeMap<NodeId, Member> = BTreeMap::new();
        for m in members {
            match by_id.get(&m.node_id) {
                Some(existing) if existing.generation >= m.generation => {}
                _ => {
                    by_id.insert(m.node_id.clone(), m);
                }
            }
        }
        Self {
            members: by_id,
            incomplete: 0,
        }
    }

    /// This snapshot, noting `incomplete` nodes gossip has named whose keys have not all
    /// arrived (see [`Self::everyone_heard_of_is_live`]).
    pub fn with_incomplete(mut self, incomplete: usize) -> Self {
        self.incomplete = incomplete;
        self
    }

    /// Whether every node this view has heard of is a live member: none is still arriving
    /// (named in a digest, keys not all here, or not live yet) and none is dead. A joining
    /// node whose view is complete in this sense need not wait as long for it to hold still
    /// (`boot::wait_for_a_settled_view`).
    pub fn everyone_heard_of_is_live(&self) -> bool {
        self.incomplete == 0 && self.members.values().all(|m| m.live)
    }

    /// All members, sorted by node id.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// One member by id.
    pub fn get(&self, id: &NodeId) -> Option<&Member> {
        self.members.get(id)
    }

    /// Node ids that placement assigns units to (alive and ready), sorted.
    pub fn placement_nodes(&self) -> Vec<NodeId> {
        self.members
            .values()
            .filter(|m| m.takes_placement())
            .map(|m| m.node_id.clone())
            .collect()
    }

    /// [`Self::placement_nodes`] with their regions: region-placed shards need both.
    pub fn placement_members(&self) -> Vec<(NodeId, RegionName)> {
        self.members
            .values()
            .filter(|m| m.takes_placement())
            .map(|m| (m.node_id.clone(), m.region.clone()))
            .collect()
    }

    /// Whether the live members are a strict majority of every member known (live, or dead but
    /// not yet forgotten). An owner without a majority view must not acknowledge writes: an
    /// isolated node, or each half of an even split, would otherwise accept writes for the same
    /// shard (docs/decisions/004-shard-replication.md).
    pub fn has_majority(&self) -> bool {
        let live = self.members.values().filter(|m| m.live).count();
        live * 2 > self.members.len()
    }

    /// The changes that turn `self` into `next`, in node id order.
    pub fn diff(&self, next: &Self) -> Vec<MembershipChange> {
        let mut changes = Vec::new();
        for (id, after) in &next.members {
            match self.members.get(id) {
                None => changes.push(MembershipChange::Added(after.clone())),
                Some(before) if before != after => changes.push(MembershipChange::Updated {
                    before: before.clone(),
                    after: after.clone(),
                }),
                Some(_) => {}
            }
        }
        for (id, before) in &self.members {
            if !next.members.contains_key(id) {
                changes.push(MembershipChange::Removed(before.clone()));
            }
        }
        changes
    }
}

/// A member for tests across the crate: one region, loopback addresses.
#[cfg(test)]
pub(crate) fn test_member(
    id: &str,
    generation: u64,
    status: crate::membership::NodeStatus,
    live: bool,
) -> Member {
    Member {
        node_id: NodeId::new(id),
        generation: crate::ids::Generation(generation),
        region: crate::ids::RegionName::new("eu-west-1"),
        http_addr: "127.0.0.1:1".parse().expect("valid"),
        rpc_addr: "127.0.0.1:2".parse().expect("valid"),
        gossip_addr: "127.0.0.1:3".parse().expect("valid"),
        status,
        live,
    }
}

/// A membership of `(id, generation, live)` ready members, for tests across the crate.
#[cfg(test)]
pub(crate) fn test_snapshot(list: &[(&str, u64, bool)]) -> MembershipSnapshot {
    MembershipSnapshot::from_members(list.iter().map(|&(id, generation, live)| {
        test_member(id, generation, crate::membership::NodeStatus::Ready, live)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Generation;
    use crate::membership::member::NodeStatus;

    fn member(id: &str, generation: u64, status: NodeStatus, live: bool) -> Member {
        test_member(id, generation, status, live)
    }

    #[test]
    fn newest_generation_wins_whatever_the_order() {
        let old = member("n1", 1, NodeStatus::Ready, false);
        let new = member("n1", 2, NodeStatus::Joining, true);
        for members in [
            vec![old.clone(), new.clone()],
            vec![new.clone(), old.clone()],
        ] {
            let snap = MembershipSnapshot::from_members(members);
            assert_eq!(snap.get(&NodeId::new("n1")), Some(&new));
        }
    }

    #[test]
    fn a_view_is_whole_only_when_everyone_heard_of_is_live() {
        let live = || {
            MembershipSnapshot::from_members([
                member("a", 1, NodeStatus::Ready, true),
                member("b", 1, NodeStatus::Joining, true),
            ])
        };
        assert!(live().everyone_heard_of_is_live());
        // A node named in a digest whose keys have not arrived.
        assert!(!live().with_incomplete(1).everyone_heard_of_is_live());
        // A member not live yet, or dead.
        let with_dead = MembershipSnapshot::from_members([
            member("a", 1, NodeStatus::Ready, true),
            member("c", 1, NodeStatus::Ready, false),
        ]);
        assert!(!with_dead.everyone_heard_of_is_live());
    }

    #[test]
    fn only_live_ready_members_take_placement() {
        let snap = MembershipSnapshot::from_members([
            member("a", 1, NodeStatus::Ready, true),
            member("b", 1, NodeStatus::Ready, false),
            member("c", 1, NodeStatus::Joining, true),
            member("d", 1, NodeStatus::Leaving, true),
        ]);
        assert_eq!(snap.placement_nodes(), vec![NodeId::new("a")]);
    }

    #[test]
    fn majority_needs_more_than_half_of_the_known_members_live() {
        let three = |live: [bool; 3]| {
            MembershipSnapshot::from_members(
                ["a", "b", "c"]
                    .iter()
                    .zip(live)
                    .map(|(id, l)| member(id, 1, NodeStatus::Ready, l)),
            )
        };
        assert!(three([true, true, true]).has_majority());
        assert!(three([true, true, false]).has_majority());
        assert!(!three([true, false, false]).has_majority());
        let four = MembershipSnapshot::from_members(
            ["a", "b", "c", "d"]
                .iter()
                .zip([true, true, false, false])
                .map(|(id, l)| member(id, 1, NodeStatus::Ready, l)),
        );
        assert!(!four.has_majority(), "an even split has no majority");
    }

    #[test]
    fn diff_reports_added_updated_and_removed() {
        let before = MembershipSnapshot::from_members([
            member("a", 1, NodeStatus::Ready, true),
            member("b", 1, NodeStatus::Ready, true),
        ]);
        let after = MembershipSnapshot::from_members([
            member("a", 2, NodeStatus::Joining, true),
            member("c", 1, NodeStatus::Joining, true),
        ]);
        let changes = before.diff(&after);
        assert!(
            matches!(&changes[0], MembershipChange::Updated { after, .. } if after.generation == Generation(2))
        );
        assert!(matches!(&changes[1], MembershipChange::Added(m) if m.node_id.as_str() == "c"));
        assert!(matches!(&changes[2], MembershipChange::Removed(m) if m.node_id.as_str() == "b"));
        assert!(after.diff(&after).is_empty());
    }
}
