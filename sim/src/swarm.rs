//! Swarm testing: each seed can also draw the cluster's configuration and its fault mix, so a
//! sweep covers configurations nobody thought to pin (Groce et al., "Swarm Testing", 2012).
//!
//! Without `--swarm` every run uses [`Swarm::standard`], the configuration the pinned seeds
//! were found with. With it, [`Swarm::draw`] picks from the seed (its own random stream, so
//! the scenario's draws are unchanged) the node count, gossip interval, phi threshold, shard
//! count, replication factor, re-replication delay, how many faults strike at once, and each
//! node's clock skew. A failure report names the configuration, and the seed alone replays it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One run's cluster configuration and fault mix.
#[derive(Clone, Debug, PartialEq)]
pub struct Swarm {
    /// Nodes started (spares come on top).
    pub nodes: usize,
    /// chitchat's gossip interval.
    pub gossip_interval_ms: u64,
    /// The failure detector's phi threshold.
    pub phi_threshold: f64,
    /// The failure detector's prior for a node's heartbeat interval (decision 041).
    pub detector_prior_ms: u64,
    /// Hash shards (party-manager shards come on top).
    pub shards: u32,
    /// Copies of every shard.
    pub replication_factor: usize,
    /// How long a shard waits on a dead replica before copying itself elsewhere.
    pub re_replication_delay_ms: u64,
    /// Nodes a fault strikes at once.
    pub overlap: usize,
    /// Each node's wall clock, ahead (positive) or behind, in milliseconds; node `i` is `n{i+1}`.
    pub skew_ms: Vec<i64>,
}

/// The gossip interval the pinned seeds run with, against which drawn ones are scaled.
const STANDARD_GOSSIP_MS: u64 = 500;
/// Most nodes a drawn configuration has.
pub const MAX_NODES: usize = 7;
/// The phi threshold they run with.
const STANDARD_PHI: f64 = 8.0;
/// The failure detector's prior they run with, as in `cluster.toml` (decision 041). Seeds
/// pinned before it ran with 1 s, and replay their history only with that.
const STANDARD_PRIOR_MS: u64 = 500;

impl Swarm {
    /// The configuration every run uses without `--swarm`.
    pub fn standard() -> Self {
        Self {
            nodes: 5,
            gossip_interval_ms: STANDARD_GOSSIP_MS,
            phi_threshold: STANDARD_PHI,
            detector_prior_ms: STANDARD_PRIOR_MS,
            shards: crate::harness::SIM_SHARDS,
            replication_factor: 2,
            re_replication_delay_ms: 5_000,
            overlap: 1,
            skew_ms: vec![0; 5],
        }
    }

    /// The configuration `seed` draws.
    pub fn draw(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5a7a_2b0c_19e4_d3f1);
        let nodes = rng.random_range(3..=MAX_NODES);
        let replication_factor = rng.random_range(2..=3.min(nodes - 1));
        let gossip_interval_ms = rng.random_range(200..=1_000);
        Self {
            nodes,
            gossip_interval_ms,
            phi_threshold: f64::from(rng.random_range(12..=24_u32)) / 2.0,
            // Not drawn (the draws after it keep their values): kept equal to the interval,
            // as `cluster.toml` asks of an operator who changes it.
            detector_prior_ms: gossip_interval_ms,
            shards: rng.random_range(8..=32),
            replication_factor,
            re_replication_delay_ms: rng.random_range(1_000..=8_000),
            // A fault never takes out every copy of a shard at once.
            overlap: rng.random_range(1..=replication_factor - 1),
            // Up to two seconds apart: NTP-synced hosts are far closer; a bound on what the
            // node code tolerates is the point.
            skew_ms: (0..nodes + 2)
                .map(|_| rng.random_range(-1_000..=1_000))
                .collect(),
        }
    }

    /// How much slower than the standard configuration failure detection and convergence
    /// may be (never faster): the scenarios' time bounds grow by this factor.
    ///
    /// Everything a scenario waits for is counted in gossip rounds, so every bound grows with
    /// the interval. A higher phi threshold also makes failure detection take more rounds; a
    /// lower one makes nothing take fewer: a cold start waits for a still view and pre-copies
    /// whatever phi is, 12 to 15 rounds in twenty runs of `workload-churn --swarm`. Scaling
    /// by a phi below the standard's once cut the 20 rounds `CONVERGE_WITHIN` allows to 15 at
    /// phi 6, which one of those runs (869 ms, phi 6.5: 15.2 rounds) came within 0.9 s of.
    pub fn slowness(&self) -> f64 {
        let interval = self.gossip_interval_ms as f64 / STANDARD_GOSSIP_MS as f64;
        let phi = (self.phi_threshold / STANDARD_PHI).max(1.0);
        (interval * phi).max(1.0)
    }

    /// `bound` scaled by [`Self::slowness`].
    pub fn within(&self, bound: Duration) -> Duration {
        bound.mul_f64(self.slowness())
    }

    /// Node `index`'s clock skew (0 for nodes past the drawn ones).
    pub fn skew_of(&self, index: usize) -> i64 {
        self.skew_ms.get(index).copied().unwrap_or(0)
    }
}

impl fmt::Display for Swarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nodes={} gossip_interval_ms={} phi_threshold={} detector_prior_ms={} shards={} \
             replication_factor={} re_replication_delay_ms={} overlapping_faults={} \
             clock_skew_ms={:?}",
            self.nodes,
            self.gossip_interval_ms,
            self.phi_threshold,
            self.detector_prior_ms,
            self.shards,
            self.replication_factor,
            self.re_replication_delay_ms,
            self.overlap,
            self.skew_ms
        )
    }
}

thread_local! {
    /// The configuration of the run on this thread.
    static CURRENT: RefCell<Swarm> = RefCell::new(Swarm::standard());
    /// Each running node's clock skew, by its host's tokio runtime (one per node start).
    static SKEWS: RefCell<HashMap<tokio::runtime::Id, i64>> = RefCell::new(HashMap::new());
}

/// Makes `swarm` the configuration of the runs on this thread.
pub fn set(swarm: Swarm) {
    CURRENT.with(|current| *current.borrow_mut() = swarm);
}

/// The configuration of the run on this thread.
pub fn current() -> Swarm {
    CURRENT.with(|current| current.borrow().clone())
}

/// Called by a node as it starts, on its host's runtime: its clock runs `skew_ms` off.
pub fn skew_this_host(skew_ms: i64) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        SKEWS.with(|skews| skews.borrow_mut().insert(handle.id(), skew_ms));
    }
}

/// The node clock of the simulation (what `troupe_node::clock` reads): turmoil's time, moved
/// by the skew of the node whose runtime is running.
pub fn node_clock() -> Option<Duration> {
    let now = turmoil::since_epoch()?;
    let skew = tokio::runtime::Handle::try_current()
        .ok()
        .and_then(|handle| {
            SKEWS
                .try_with(|skews| skews.borrow().get(&handle.id()).copied())
                .ok()
                .flatten()
        })
        .unwrap_or(0);
    let magnitude = Duration::from_millis(skew.unsigned_abs());
    Some(if skew >= 0 {
        now + magnitude
    } else {
        now.saturating_sub(magnitude)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_draws_one_configuration_within_the_bounds_that_keep_data_safe() {
        for seed in 0..500 {
            let swarm = Swarm::draw(seed);
            assert_eq!(swarm, Swarm::draw(seed));
            assert!((3..=MAX_NODES).contains(&swarm.nodes));
            assert!(swarm.replication_factor >= 2 && swarm.replication_factor < swarm.nodes);
            assert!(swarm.overlap >= 1 && swarm.overlap < swarm.replication_factor);
            assert!(swarm.slowness() >= 1.0);
            assert!(swarm.skew_ms.iter().all(|s| s.abs() <= 1_000));
        }
    }

    #[test]
    fn a_phi_threshold_below_the_standard_does_not_shorten_the_bounds_of_a_slower_gossip() {
        let mut swarm = Swarm::standard();
        swarm.gossip_interval_ms = 1_000;
        swarm.phi_threshold = 6.0;
        assert_eq!(
            swarm.within(Duration::from_secs(10)),
            Duration::from_secs(20)
        );
        swarm.phi_threshold = 12.0;
        assert_eq!(
            swarm.within(Duration::from_secs(10)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn the_standard_configuration_is_not_slowed_down() {
        let standard = Swarm::standard();
        assert_eq!(
            standard.within(Duration::from_secs(10)),
            Duration::from_secs(10)
        );
    }
}
