//! The node's recent membership and ownership events, for the dashboard (`/ui`): a bounded
//! ring of the last [`CAPACITY`] events, each recorded where it happens.
//!
//! - Membership events (`joined`, `restarted`, `ready`, `leaving`, `died`, `alive`) are
//!   derived from consecutive membership snapshots, as the topology follows them
//!   ([`Events::observe_membership`]).
//! - `sealed` is recorded by the shard layer where a new owner starts serving a shard
//!   ([`Events::sealed`], which also writes the one info line of that ownership change), and
//!   `handed-off` by the hand-off of a leaving node ([`Events::handed_off`]).
//!
//! The ring is shared by clones (the shard layer reaches it through
//! the node's `NodeMetrics`, which holds it); its lock is held only to push or copy.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use troupe_http::views::EventView;

use crate::ids::{Epoch, NodeId, ShardId};
use crate::membership::{Member, MembershipChange, MembershipSnapshot};

/// Events kept per node; older ones are dropped.
pub const CAPACITY: usize = 200;

/// Handle on one node's event ring; cheap to clone.
#[derive(Clone, Default)]
pub struct Events {
    inner: Arc<Mutex<Ring>>,
}

#[derive(Default)]
struct Ring {
    /// The recording node (set once it is known: the ring is created with the metrics).
    me: String,
    events: VecDeque<EventView>,
    /// The membership the last event was derived from.
    membership: Option<Arc<MembershipSnapshot>>,
}

impl Ring {
    fn push(&mut self, event: EventView) {
        if self.events.len() == CAPACITY {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }
}

/// An event with no shard or member fields yet.
fn event(me: &str, kind: &str, text: String) -> EventView {
    EventView {
        at_ms: crate::clock::unix_millis(),
        node: me.to_owned(),
        kind: kind.to_owned(),
        text,
        member: None,
        shard: None,
        old_owner: None,
        new_owner: None,
        epoch: None,
    }
}

impl Events {
    fn ring(&self) -> MutexGuard<'_, Ring> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Names the node recording the events (every event says who recorded it).
    pub fn set_node(&self, me: &NodeId) {
        self.ring().me = me.to_string();
    }

    /// The events kept, oldest first.
    pub fn recent(&self) -> Vec<EventView> {
        self.ring().events.iter().cloned().collect()
    }

    /// Records what changed in the membership since the last snapshot observed (everything in
    /// it, for the first one).
    pub fn observe_membership(&self, snapshot: &Arc<MembershipSnapshot>) {
        let mut ring = self.ring();
        let changes = match &ring.membership {
            Some(before) => before.diff(snapshot),
            None => MembershipSnapshot::default().diff(snapshot),
        };
        ring.membership = Some(snapshot.clone());
        for change in changes {
            if let Some((kind, member, text)) = describe(&change) {
                let mut event = event(&ring.me, kind, text);
                event.member = Some(member.node_id.to_string());
                ring.push(event);
            }
        }
    }

    /// A shard's new owner (this node) starts serving it at `epoch`, taken over from the owner
    /// of the epoch its copy followed before (`previous`). Logs the ownership change once, at
    /// info (a seal by the same owner is logged as such), and records it.
    pub(crate) fn sealed(&self, shard: ShardId, previous: Option<&Epoch>, epoch: &Epoch) {
        let old_owner = previous.map(|e| e.owner.to_string());
        let new_owner = epoch.owner.to_string();
        if old_owner.as_ref() == Some(&new_owner) {
            // Same owner, new epoch (its replicas changed, or its lease came back).
            tracing::info!(%shard, %epoch, "serving the shard under a new epoch");
        } else {
            tracing::info!(
                %shard,
                old_owner = %old_owner.as_deref().unwrap_or("none"),
                %new_owner,
                %epoch,
                "ownership changed"
            );
        }
        let text = match &old_owner {
            Some(old) if *old == new_owner => {
                format!("shard {shard} sealed again by {new_owner} at {epoch}")
            }
            Some(old) => format!("shard {shard} sealed at {epoch}: {old} → {new_owner}"),
            None => format!("shard {shard} sealed at {epoch}: first owner {new_owner}"),
        };
        let mut ring = self.ring();
        let mut event = event(&ring.me, "sealed", text);
        event.shard = Some(shard.0);
        event.old_owner = old_owner;
        event.new_owner = Some(new_owner);
        event.epoch = Some(epoch.to_string());
        ring.push(event);
    }

    /// This node, leaving, handed `shard` to `to`, which now serves it (logged with the whole
    /// hand-off, see the node's `handoff` module).
    pub(crate) fn handed_off(&self, shard: ShardId, to: &NodeId) {
        let mut ring = self.ring();
        let text = format!("shard {shard} handed off: {} → {to}", ring.me);
        let mut event = event(&ring.me, "handed-off", text);
        event.shard = Some(shard.0);
        event.old_owner = Some(ring.me.clone());
        event.new_owner = Some(to.to_string());
        ring.push(event);
    }
}

/// The event a membership change is, if any: its kind, the member and a sentence. A change of
/// address alone is none.
fn describe(change: &MembershipChange) -> Option<(&'static str, &Member, String)> {
    match change {
        MembershipChange::Added(m) if m.live => Some((
            "joined",
            m,
            format!(
                "{} joined in {} (generation {}, {})",
                m.node_id, m.region, m.generation, m.status
            ),
        )),
        MembershipChange::Added(_) | MembershipChange::Removed(_) => None,
        MembershipChange::Updated { before, after } => {
            let id = &after.node_id;
            if after.generation > before.generation {
                Some((
                    "restarted",
                    after,
                    format!("{id} restarted as generation {}", after.generation),
                ))
            } else if before.live && !after.live {
                Some(("died", after, format!("{id} died (failure detector)")))
            } else if !before.live && after.live {
                Some(("alive", after, format!("{id} is alive again")))
            } else if before.status != after.status {
                let kind = match after.status.as_str() {
                    "ready" => "ready",
                    "leaving" => "leaving",
                    _ => return None,
                };
                Some((kind, after, format!("{id} is {}", after.status)))
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::snapshot::test_member;
    use crate::membership::NodeStatus;

    fn snapshot(members: &[(&str, u64, NodeStatus, bool)]) -> Arc<MembershipSnapshot> {
        Arc::new(MembershipSnapshot::from_members(members.iter().map(
            |(id, generation, status, live)| test_member(id, *generation, *status, *live),
        )))
    }

    fn kinds(events: &Events) -> Vec<(String, Option<String>)> {
        events
            .recent()
            .into_iter()
            .map(|e| (e.kind, e.member))
            .collect()
    }

    fn pair(kind: &str, member: &str) -> (String, Option<String>) {
        (kind.to_owned(), Some(member.to_owned()))
    }

    #[test]
    fn membership_changes_become_joined_ready_died_alive_restarted_and_leaving() {
        use NodeStatus::{Joining, Leaving, Ready};
        let events = Events::default();
        events.set_node(&NodeId::new("a"));
        events.observe_membership(&snapshot(&[("a", 1, Ready, true)]));
        events.observe_membership(&snapshot(&[("a", 1, Ready, true), ("b", 1, Joining, true)]));
        events.observe_membership(&snapshot(&[("a", 1, Ready, true), ("b", 1, Ready, true)]));
        events.observe_membership(&snapshot(&[("a", 1, Ready, true), ("b", 1, Ready, false)]));
        events.observe_membership(&snapshot(&[("a", 1, Ready, true), ("b", 1, Ready, true)]));
        events.observe_membership(&snapshot(&[("a", 1, Ready, true), ("b", 2, Joining, true)]));
        events.observe_membership(&snapshot(&[
            ("a", 1, Leaving, true),
            ("b", 2, Joining, true),
        ]));
        assert_eq!(
            kinds(&events),
            vec![
                pair("joined", "a"),
                pair("joined", "b"),
                pair("ready", "b"),
                pair("died", "b"),
                pair("alive", "b"),
                pair("restarted", "b"),
                pair("leaving", "a"),
            ]
        );
        assert!(events.recent().iter().all(|e| e.node == "a"));
    }

    #[test]
    fn an_unchanged_membership_records_nothing() {
        let events = Events::default();
        let view = snapshot(&[("a", 1, NodeStatus::Ready, true)]);
        events.observe_membership(&view);
        events.observe_membership(&view);
        events.observe_membership(&snapshot(&[("a", 1, NodeStatus::Ready, true)]));
        assert_eq!(events.recent().len(), 1);
    }

    #[test]
    fn a_seal_records_the_shard_the_old_and_new_owner_and_the_epoch() {
        let events = Events::default();
        events.set_node(&NodeId::new("n2"));
        let before = Epoch {
            term: 3,
            owner: NodeId::new("n1"),
        };
        let after = Epoch {
            term: 4,
            owner: NodeId::new("n2"),
        };
        events.sealed(ShardId(7), Some(&before), &after);
        events.sealed(ShardId(8), None, &after);
        events.handed_off(ShardId(9), &NodeId::new("n3"));
        let recent = events.recent();
        let fields: Vec<_> = recent
            .iter()
            .map(|e| {
                (
                    e.kind.as_str(),
                    e.shard,
                    e.old_owner.as_deref(),
                    e.new_owner.as_deref(),
                    e.epoch.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            fields,
            vec![
                ("sealed", Some(7), Some("n1"), Some("n2"), Some("4@n2")),
                ("sealed", Some(8), None, Some("n2"), Some("4@n2")),
                ("handed-off", Some(9), Some("n2"), Some("n3"), None),
            ]
        );
        assert!(recent[0].text.contains("n1 → n2"), "{}", recent[0].text);
    }

    #[test]
    fn the_ring_keeps_only_the_newest_events() {
        let events = Events::default();
        let epoch = Epoch {
            term: 1,
            owner: NodeId::new("n1"),
        };
        for shard in 0..(CAPACITY as u32 + 25) {
            events.sealed(ShardId(shard), None, &epoch);
        }
        let recent = events.recent();
        assert_eq!(recent.len(), CAPACITY);
        assert_eq!(recent[0].shard, Some(25));
        assert_eq!(recent[CAPACITY - 1].shard, Some(CAPACITY as u32 + 24));
    }
}
