//! When a new epoch of a shard may start serving: the rule that keeps two epochs from answering
//! at once, as a pure function of what this node's view says and how long it has not heard
//! from each node.
//!
//! A seal reaches every member this node calls live; a copy it reached stops answering under
//! the older epoch at once. A member this node calls dead is not sealed, yet it may be alive
//! on the far side of a cut, or behind a lossy link that made the failure detector give up on
//! it, and go on answering reads from a copy synced under an older epoch (a replica answers
//! in its owner's place while it holds a majority's lease). Such a node keeps its lease only
//! while it reaches a majority, and then its gossip heartbeat reaches this node through them.
//! So a new epoch waits until every member it calls dead has been silent for the lease plus a
//! margin for gossip's delay: by then a node that is still up has lost its lease and answers
//! nothing. A node that really crashed has been silent that long before the failure detector
//! calls it dead, so the wait costs nothing there; it holds a takeover back only while the
//! detector and the heartbeats disagree.

use std::time::Duration;

/// A node whose copy this node's seal cannot reach: how long it has been silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Unsealed {
    pub(crate) silent_for: Duration,
}

/// How much longer a new epoch must wait before it serves, if at all: until every node in
/// `unsealed` has been silent for `lease` plus `margin`.
pub(crate) fn lease_wait(
    unsealed: impl IntoIterator<Item = Unsealed>,
    lease: Duration,
    margin: Duration,
) -> Option<Duration> {
    let expires = lease + margin;
    unsealed
        .into_iter()
        .filter(|node| node.silent_for < expires)
        .map(|node| expires - node.silent_for)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(2);
    const MARGIN: Duration = Duration::from_secs(1);

    fn silent(ms: u64) -> Unsealed {
        Unsealed {
            silent_for: Duration::from_millis(ms),
        }
    }

    #[test]
    fn with_every_node_sealable_a_new_epoch_serves_at_once() {
        assert_eq!(lease_wait([], LEASE, MARGIN), None);
    }

    #[test]
    fn a_node_called_dead_while_still_heard_holds_the_epoch_back_until_its_lease_ran_out() {
        // The failure detector gave up on it 400 ms after its last heartbeat arrived: it may
        // still hold a majority's lease and answer from its copy.
        assert_eq!(
            lease_wait([silent(400)], LEASE, MARGIN),
            Some(Duration::from_millis(2_600))
        );
    }

    #[test]
    fn a_crashed_node_silent_past_its_lease_and_the_margin_holds_nothing_back() {
        assert_eq!(lease_wait([silent(3_000)], LEASE, MARGIN), None);
        assert_eq!(lease_wait([silent(4_500)], LEASE, MARGIN), None);
    }

    #[test]
    fn the_most_recently_heard_node_sets_the_wait() {
        assert_eq!(
            lease_wait([silent(5_000), silent(2_900), silent(1_000)], LEASE, MARGIN),
            Some(Duration::from_millis(2_000))
        );
    }
}
