//! When this node last heard from each member: the moment it saw the member's gossip heartbeat
//! advance. The failure detector turns the same signal into live/dead only after several
//! seconds; the shard layer needs the raw recency: a node taking over from a dead owner waits
//! until that owner's lease must have run out (decision 007), and a node confirms another's
//! lease only while it hears it (`shard::lease`, decision 009).
//!
//! Only members whose proof was checked are recorded (the membership loop feeds it from the
//! snapshot), entries of nodes that left the membership are dropped ([`Heard::retain`]), and
//! the map never holds more than [`MAX_HEARD`] nodes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chitchat::Heartbeat;
use tokio::time::Instant;

use crate::ids::{Generation, NodeId};

/// Most nodes tracked; far above any cluster size, a bound against any input.
pub const MAX_HEARD: usize = 4_096;

/// Shared, cheap to clone; written by the membership's heartbeat loop, read by the shard layer.
#[derive(Clone, Debug)]
pub struct Heard {
    inner: Arc<Mutex<HashMap<NodeId, Seen>>>,
    /// When tracking started: a member never heard is treated as last heard then.
    started: Instant,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    generation: Generation,
    heartbeat: Heartbeat,
    at: Instant,
}

impl Default for Heard {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            started: Instant::now(),
        }
    }
}

impl Heard {
    /// Records `node`'s heartbeat as gossip shows it now; only a newer incarnation or a higher
    /// heartbeat counts as hearing from it.
    pub fn observe(&self, node: &NodeId, generation: Generation, heartbeat: Heartbeat) {
        self.observe_at(node, generation, heartbeat, Instant::now());
    }

    /// How long since `node` was last heard from (since tracking started if never).
    pub fn silent_for(&self, node: &NodeId) -> Duration {
        self.silent_at(node, Instant::now())
    }

    fn observe_at(&self, node: &NodeId, generation: Generation, heartbeat: Heartbeat, at: Instant) {
        let mut seen = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let newer = seen.get(node).is_none_or(|s| {
            generation > s.generation || (generation == s.generation && heartbeat > s.heartbeat)
        });
        if newer && (seen.len() < MAX_HEARD || seen.contains_key(node)) {
            seen.insert(
                node.clone(),
                Seen {
                    generation,
                    heartbeat,
                    at,
                },
            );
        }
    }

    /// Forgets every node for which `keep` is false (nodes no longer members): a forgotten node
    /// counts as silent since tracking started.
    pub fn retain(&self, keep: impl Fn(&NodeId) -> bool) {
        let mut seen = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        seen.retain(|node, _| keep(node));
    }

    /// Nodes tracked.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no node is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn silent_at(&self, node: &NodeId, now: Instant) -> Duration {
        let seen = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        now.saturating_duration_since(seen.get(node).map_or(self.started, |s| s.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(n: u64) -> Heartbeat {
        // Heartbeat has no public constructor; it deserializes from its number.
        serde_json::from_str(&n.to_string()).expect("heartbeat")
    }

    #[test]
    fn only_a_higher_heartbeat_or_a_newer_generation_counts_as_hearing() {
        let heard = Heard::default();
        let n1 = NodeId::new("n1");
        let t = |secs| heard.started + Duration::from_secs(secs);
        assert_eq!(
            heard.silent_at(&n1, t(3)),
            Duration::from_secs(3),
            "never heard"
        );
        heard.observe_at(&n1, Generation(1), beat(5), t(3));
        heard.observe_at(&n1, Generation(1), beat(5), t(5));
        assert_eq!(
            heard.silent_at(&n1, t(5)),
            Duration::from_secs(2),
            "same beat"
        );
        heard.observe_at(&n1, Generation(1), beat(6), t(5));
        assert_eq!(heard.silent_at(&n1, t(5)), Duration::ZERO);
        heard.observe_at(&n1, Generation(2), beat(1), t(6));
        assert_eq!(heard.silent_at(&n1, t(6)), Duration::ZERO, "restarted node");
        heard.observe_at(&n1, Generation(1), beat(99), t(7));
        assert_eq!(
            heard.silent_at(&n1, t(7)),
            Duration::from_secs(1),
            "older incarnation"
        );
    }

    #[test]
    fn heard_nodes_are_bounded_and_forgotten_when_they_leave_the_membership() {
        let heard = Heard::default();
        let t = heard.started + Duration::from_secs(10);
        for n in 0..MAX_HEARD + 100 {
            heard.observe_at(&NodeId::new(format!("n{n}")), Generation(1), beat(1), t);
        }
        assert_eq!(heard.len(), MAX_HEARD);
        heard.retain(|node| node.as_str() == "n1");
        assert_eq!(heard.len(), 1);
        assert_eq!(heard.silent_at(&NodeId::new("n1"), t), Duration::ZERO);
        assert_eq!(
            heard.silent_at(&NodeId::new("n2"), t),
            Duration::from_secs(10),
            "forgotten: silent since tracking started"
        );
    }
}
