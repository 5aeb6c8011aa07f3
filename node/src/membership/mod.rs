//! Cluster membership over chitchat gossip.
//!
//! Each node publishes its region, advertised addresses and status (see [`keys`]). The rest of
//! the node never touches chitchat: it reads a typed [`MembershipSnapshot`] and subscribes to
//! new ones through a `watch` channel (the current value and every later change, taken
//! atomically); [`MembershipSnapshot::diff`] turns two snapshots into typed changes. chitchat
//! runs behind its `Transport` trait, so the simulation can gossip over turmoil UDP.

mod heard;
pub mod keys;
pub mod member;
pub mod mismatch;
pub(crate) mod refused;
pub mod replay;
pub mod seal;
pub mod sealed_udp;
pub mod snapshot;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::Transport;
use chitchat::{
    spawn_chitchat, Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig,
};
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

pub use heard::Heard;
pub use member::{Member, NodeStatus};
use refused::Refused;
pub use snapshot::{MembershipChange, MembershipSnapshot};

use crate::config::{GossipConfig, HostPort};
use crate::ids::{Generation, NodeId, RegionName};

/// Everything membership needs to start gossiping.
#[derive(Clone, Debug)]
pub struct MembershipOptions {
    /// Cluster name (chitchat ignores gossip from other clusters).
    pub cluster: String,
    /// This node.
    pub node_id: NodeId,
    /// This incarnation.
    pub generation: Generation,
    /// This node's region.
    pub region: RegionName,
    /// Advertised HTTP address.
    pub http_addr: HostPort,
    /// Advertised RPC address.
    pub rpc_addr: HostPort,
    /// UDP listen address.
    pub gossip_listen: SocketAddr,
    /// UDP address peers use.
    pub gossip_advertise: SocketAddr,
    /// Seeds (`host:port`; IP literals in the simulation).
    pub seeds: Vec<String>,
    /// Gossip interval and failure detector settings.
    pub gossip: GossipConfig,
    /// Signs this node's entry and checks everybody else's.
    pub signer: keys::Signer,
    /// Peers that said this node's gossip does not open under their secret (written by the
    /// transport).
    pub key_mismatches: mismatch::KeyMismatches,
}

/// Why membership could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start gossip on {addr}: {message}")]
pub struct MembershipError {
    addr: SocketAddr,
    message: String,
}

/// Sizes of membership's maps ([`Membership::table_sizes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSizes {
    /// Node states in chitchat at the last refresh (members, refused nodes, dead ones not yet
    /// forgotten).
    pub gossip_nodes: usize,
    /// Refused nodes listed.
    pub refused: usize,
    /// Nodes in [`Heard`].
    pub heard: usize,
}

/// Handle on this node's membership; cheap to clone.
#[derive(Clone)]
pub struct Membership {
    inner: Arc<Inner>,
}

struct Inner {
    chitchat: Arc<Mutex<Chitchat>>,
    handle: Mutex<Option<ChitchatHandle>>,
    snapshots: watch::Sender<Arc<MembershipSnapshot>>,
    node_id: NodeId,
    signer: keys::Signer,
    /// Nodes refused in the latest snapshot, and why (each is logged once).
    refused: std::sync::Mutex<Refused>,
    heard: Heard,
    key_mismatches: mismatch::KeyMismatches,
    /// Node states in chitchat at the last refresh.
    gossip_nodes: AtomicUsize,
    /// Held through a refresh, so two refreshes (the loops', a status change's) never publish
    /// an older copy of chitchat's state after a newer one.
    refreshing: Mutex<()>,
}

/// How often the snapshot is rebuilt even without a change notification, as a safety net.
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// Live members this node gossips with at once when its status changes
/// ([`Membership::push_status`]), on top of gossip's own three a round: every member in a
/// cluster of up to 129 nodes, so a new status reaches every view in one exchange instead of
/// spreading over gossip rounds. At a 100-node cold start the last `ready` took 1 s to reach
/// every view with 8 members, and 0.6 to 1.1 s with 32 (converged in 4.80 to 5.24 s); with
/// every member, 0.2 to 0.3 s (4.36 to 4.63 s). The cost is one exchange with each member per
/// status change, which a node makes a few times in its life (docs/SIMULATION.md, "Scale").
const STATUS_PUSH_PEERS: usize = 128;
/// How often heartbeats are read into [`Heard`]: well under a gossip round, so a lease check
/// sees a member's recency to within this.
const HEARD_EVERY: Duration = Duration::from_millis(100);

impl Membership {
    /// Starts gossiping on `transport` and keeps the snapshot current until `shutdown`.
    pub async fn start(
        opts: MembershipOptions,
        transport: &dyn Transport,
        shutdown: CancellationToken,
    ) -> Result<Self, MembershipError> {
        let config = chitchat_config(&opts);
        let initial = keys::initial_key_values(
            &opts.signer,
            &config.chitchat_id,
            &opts.region,
            &opts.http_addr,
            &opts.rpc_addr,
        );
        let handle = spawn_chitchat(config, initial, transport)
            .await
            .map_err(|e| MembershipError {
                addr: opts.gossip_listen,
                message: format!("{e:#}"),
            })?;
        let chitchat = handle.chitchat();
        let mut refused = Refused::default();
        let observed = observe(&*chitchat.lock().await);
        let first = Arc::new(build_snapshot(observed, &opts.signer, &mut refused));
        let (snapshots, _) = watch::channel(first);
        let membership = Self {
            inner: Arc::new(Inner {
                chitchat,
                handle: Mutex::new(Some(handle)),
                snapshots,
                node_id: opts.node_id.clone(),
                signer: opts.signer.clone(),
                refused: std::sync::Mutex::new(refused),
                heard: Heard::default(),
                key_mismatches: opts.key_mismatches.clone(),
                gossip_nodes: AtomicUsize::new(0),
                refreshing: Mutex::new(()),
            }),
        };
        tokio::spawn(membership.clone().heard_loop(shutdown.clone()));
        tokio::spawn(membership.clone().refresh_loop(shutdown));
        info!(node_id = %opts.node_id, generation = %opts.generation, gossip = %opts.gossip_advertise, "gossip started");
        Ok(membership)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<MembershipSnapshot> {
        self.inner.snapshots.borrow().clone()
    }

    /// A receiver holding the current snapshot and notified of every new one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MembershipSnapshot>> {
        self.inner.snapshots.subscribe()
    }

    /// Nodes heard gossiping but left out of the membership, each as `node id at gossip
    /// address: reason`, so a node that only ever hears other clusters can say so.
    pub fn rejected(&self) -> Vec<String> {
        let refused = self.inner.refused.lock().unwrap_or_else(|p| p.into_inner());
        refused
            .iter()
            .map(|(id, reason)| format!("{} at {}: {reason}", id.node_id, id.gossip_advertise_addr))
            .chain(self.inner.key_mismatches.peers().into_iter().map(|peer| {
                format!("gossip at {peer}: cannot open this node's gossip (another cluster secret)")
            }))
            .collect()
    }

    /// Sizes of the maps membership keeps, so tests and the simulation can check that no
    /// input makes them grow without bound.
    pub fn table_sizes(&self) -> TableSizes {
        let gossip_nodes = self.inner.gossip_nodes.load(Ordering::Relaxed);
        let refused = self
            .inner
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        TableSizes {
            gossip_nodes,
            refused,
            heard: self.inner.heard.len(),
        }
    }

    /// When this node last heard from each member.
    pub fn heard(&self) -> Heard {
        self.inner.heard.clone()
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.inner.node_id
    }

    /// Publishes this node's status and refreshes the local snapshot at once.
    pub async fn set_status(&self, status: NodeStatus) {
        {
            let mut chitchat = self.inner.chitchat.lock().await;
            chitchat
                .self_node_state()
                .set(keys::STATUS_KEY, status.as_str());
        }
        info!(%status, "published node status");
        self.refresh().await;
        self.push_status();
    }

    /// Starts a gossip exchange with up to [`STATUS_PUSH_PEERS`] live members at once, so a
    /// new status reaches them now rather than when gossip's random choice next picks this
    /// node. Each of them then spreads it on its own rounds. At a cold start the last node to
    /// turn `ready` otherwise took 1 to 2 s to be seen ready everywhere (docs/SIMULATION.md,
    /// "Scale").
    fn push_status(&self) {
        use rand::seq::IteratorRandom;
        let snapshot = self.snapshot();
        let peers: Vec<SocketAddr> = crate::random::with(|rng| {
            snapshot
                .members()
                .filter(|m| m.live && m.node_id != self.inner.node_id)
                .map(|m| m.gossip_addr)
                .choose_multiple(rng, STATUS_PUSH_PEERS)
        });
        let Ok(handle) = self.inner.handle.try_lock() else {
            // Shutting down: gossip is being stopped.
            return;
        };
        let Some(handle) = handle.as_ref() else {
            return;
        };
        for peer in peers {
            if let Err(error) = handle.gossip(peer) {
                debug!(%error, "status push");
            }
        }
    }

    /// Stops gossiping (peers then detect this node as dead, unless it said `leaving` first).
    pub async fn shutdown(&self) {
        if let Some(handle) = self.inner.handle.lock().await.take() {
            if let Err(error) = handle.shutdown().await {
                debug!(%error, "gossip shutdown");
            }
        }
    }

    async fn refresh(&self) {
        let _one_at_a_time = self.inner.refreshing.lock().await;
        // Copy under chitchat's lock, check proofs after releasing it: chitchat's gossip loop
        // takes the same lock for every datagram.
        let observed = observe(&*self.inner.chitchat.lock().await);
        self.inner
            .gossip_nodes
            .store(observed.len(), Ordering::Relaxed);
        let next = {
            let mut refused = self.inner.refused.lock().unwrap_or_else(|p| p.into_inner());
            build_snapshot(observed, &self.inner.signer, &mut refused)
        };
        self.inner.snapshots.send_if_modified(|current| {
            if **current == next {
                return false;
            }
            for change in current.diff(&next) {
                debug!(?change, "membership change");
            }
            *current = Arc::new(next);
            true
        });
    }

    /// Reads every member's heartbeat into [`Heard`] until `shutdown`, and rebuilds the
    /// snapshot when a key changed since the last look.
    ///
    /// chitchat tells of changed keys (a peer's new status) only at the end of this node's own
    /// next gossip round, up to a round after the delta arrived; looking every
    /// [`HEARD_EVERY`] shows a peer turning `ready` or `leaving` to placement and routing
    /// within 100 ms instead.
    async fn heard_loop(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(HEARD_EVERY);
        let mut versions = 0;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            // Only members whose proof was checked, at the incarnation the snapshot holds: a
            // forged entry (another generation, a frozen heartbeat) is never heard.
            let members = self.snapshot();
            let (beats, now_versions) = {
                let chitchat = self.inner.chitchat.lock().await;
                let beats: Vec<(NodeId, Generation, chitchat::Heartbeat)> = members
                    .members()
                    .filter_map(|m| {
                        let id = ChitchatId::new(
                            m.node_id.as_str().to_owned(),
                            m.generation.0,
                            m.gossip_addr,
                        );
                        let state = chitchat.node_state(&id)?;
                        Some((m.node_id.clone(), m.generation, state.heartbeat()))
                    })
                    .collect();
                (beats, versions_of(&chitchat))
            };
            for (node, generation, heartbeat) in beats {
                self.inner.heard.observe(&node, generation, heartbeat);
            }
            self.inner.heard.retain(|node| members.get(node).is_some());
            if now_versions != versions {
                versions = now_versions;
                self.refresh().await;
            }
        }
    }

    /// Rebuilds the snapshot whenever chitchat reports a change in live nodes or their state.
    async fn refresh_loop(self, shutdown: CancellationToken) {
        let mut live = self.inner.chitchat.lock().await.live_nodes_watcher();
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        loop {
            tokio::select! {
                // The node is stopping.
                _ = shutdown.cancelled() => return,
                // chitchat saw a node join, leave, or change a key.
                changed = live.changed() => if changed.is_err() { return },
                // Safety net for changes chitchat does not notify (a peer turning dead).
                _ = tick.tick() => {}
            }
            self.refresh().await;
        }
    }
}

fn chitchat_config(opts: &MembershipOptions) -> ChitchatConfig {
    let g = &opts.gossip;
    ChitchatConfig {
        chitchat_id: ChitchatId::new(
            opts.node_id.as_str(),
            opts.generation.0,
            opts.gossip_advertise,
        ),
        cluster_id: opts.cluster.clone(),
        gossip_interval: g.interval(),
        listen_addr: opts.gossip_listen,
        seed_nodes: opts.seeds.clone(),
        failure_detector_config: FailureDetectorConfig {
            phi_threshold: g.phi_threshold,
            sampling_window_size: 1_000,
            max_interval: Duration::from_millis(g.max_interval_ms),
            initial_interval: Duration::from_millis(g.initial_interval_ms),
            dead_node_grace_period: Duration::from_secs(g.dead_node_grace_period_secs),
        },
        marked_for_deletion_grace_period: Duration::from_secs(
            g.dead_node_grace_period_secs.max(60),
        ),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: chitchat::ProtocolVersion::V1,
    }
}

/// A fingerprint of every node's key versions in chitchat's state (heartbeats left out): it
/// changes when any key is set or a node appears or is forgotten.
fn versions_of(chitchat: &Chitchat) -> u64 {
    use std::hash::{Hash, Hasher};
    // Fixed keys: the same state gives the same fingerprint in every process.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (id, state) in chitchat.node_states() {
        id.hash(&mut hasher);
        state.max_version().hash(&mut hasher);
    }
    hasher.finish()
}

/// Every node's published keys and liveness, copied out of chitchat's state.
fn observe(chitchat: &Chitchat) -> Vec<(ChitchatId, keys::Published, bool)> {
    let live: BTreeSet<&ChitchatId> = chitchat.live_nodes().collect();
    chitchat
        .node_states()
        .iter()
        .map(|(id, state)| (id.clone(), keys::Published::read(state), live.contains(id)))
        .collect()
}

/// Reads every valid member out of the copied state; nodes that fail the secret check are left
/// out (and logged the first time they are seen).
fn build_snapshot(
    observed: Vec<(ChitchatId, keys::Published, bool)>,
    signer: &keys::Signer,
    refused: &mut Refused,
) -> MembershipSnapshot {
    let mut members = Vec::new();
    let mut rejected = Vec::new();
    let mut incomplete = 0;
    for (id, published, live) in observed {
        match keys::parse_member(signer, &id, &published, live) {
            keys::Parsed::Member(m) => members.push(m),
            keys::Parsed::Incomplete => incomplete += 1,
            keys::Parsed::Rejected(reason) => rejected.push((id, reason)),
        }
    }
    refused.replace(rejected);
    MembershipSnapshot::from_members(members).with_incomplete(incomplete)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use chitchat::transport::ChannelTransport;
    use chitchat::{DeletionStatus, VersionedValue};

    fn addr(port: u16) -> SocketAddr {
        ([127, 0, 0, 1], port).into()
    }

    fn options(gossip: SocketAddr, seeds: Vec<String>) -> MembershipOptions {
        MembershipOptions {
            cluster: "troupe".to_owned(),
            node_id: NodeId::new("n0"),
            generation: Generation(1),
            region: RegionName::new("eu-west-1"),
            http_addr: "127.0.0.1:1".parse().expect("valid"),
            rpc_addr: "127.0.0.1:2".parse().expect("valid"),
            gossip_listen: gossip,
            gossip_advertise: gossip,
            seeds,
            gossip: GossipConfig {
                interval_ms: 50,
                ..GossipConfig::default()
            },
            signer: keys::Signer {
                cluster: "troupe".to_owned(),
                secret: Secret::new("the-cluster-secret"),
                previous: None,
                shards: 64,
                layout: "layout".to_owned(),
            },
            key_mismatches: mismatch::KeyMismatches::default(),
        }
    }

    fn value(key: &str, value: &str, version: u64) -> (String, VersionedValue) {
        (
            key.to_owned(),
            VersionedValue {
                value: value.to_owned(),
                version,
                status: DeletionStatus::Set,
            },
        )
    }

    /// Starts membership for node `id` gossiping on `port` every `round`, seeded with `seeds`.
    async fn member(
        transport: &ChannelTransport,
        id: &str,
        port: u16,
        seeds: &[u16],
        round: Duration,
        shutdown: &CancellationToken,
    ) -> Membership {
        let opts = MembershipOptions {
            node_id: NodeId::new(id),
            gossip: GossipConfig {
                interval_ms: round.as_millis() as u64,
                ..GossipConfig::default()
            },
            ..options(
                addr(port),
                seeds.iter().map(|&p| addr(p).to_string()).collect(),
            )
        };
        Membership::start(opts, transport, shutdown.clone())
            .await
            .expect("membership")
    }

    /// Gossip rounds tick at whole multiples of the interval from the start (the clock is
    /// paused), so a status set half-way between two rounds can only reach the peers by the
    /// push, and their views can only show it before the next round by looking at chitchat's
    /// state between rounds.
    #[tokio::test(start_paused = true)]
    async fn a_new_status_shows_in_peers_views_before_the_next_gossip_round() {
        let transport = ChannelTransport::with_mtu(65_507);
        let shutdown = CancellationToken::new();
        let round = Duration::from_millis(500);
        let start = tokio::time::Instant::now();
        let ports = [20, 21, 22];
        let mut nodes = Vec::new();
        for (i, &port) in ports.iter().enumerate() {
            nodes.push(member(&transport, &format!("n{i}"), port, &ports, round, &shutdown).await);
        }
        for node in &nodes {
            let mut views = node.subscribe();
            let all_live = views.wait_for(|s| s.members().filter(|m| m.live).count() == 3);
            tokio::time::timeout(round * 20, all_live)
                .await
                .expect("every node sees every node live")
                .expect("gossip runs");
        }
        let rounds_so_far = start.elapsed().as_millis() / round.as_millis() + 1;
        let half_way = start + round * rounds_so_far as u32 + round / 2;
        tokio::time::sleep_until(half_way).await;

        nodes[0].set_status(NodeStatus::Ready).await;
        let me = NodeId::new("n0");
        for peer in &nodes[1..] {
            let mut views = peer.subscribe();
            let ready =
                views.wait_for(|s| s.get(&me).is_some_and(|m| m.status == NodeStatus::Ready));
            tokio::time::timeout(round / 2 - Duration::from_millis(50), ready)
                .await
                .expect("the peer sees the new status before its next gossip round")
                .expect("gossip runs");
        }
        shutdown.cancel();
        for node in &nodes {
            node.shutdown().await;
        }
    }

    /// chitchat's in-memory transport has no sealing: this is what membership does with
    /// whatever reaches chitchat's state.
    #[tokio::test]
    async fn only_checked_members_are_heard_and_refused_nodes_stay_bounded() {
        let transport = ChannelTransport::with_mtu(65_507);
        let shutdown = CancellationToken::new();
        let membership = Membership::start(
            options(addr(10), vec![addr(11).to_string()]),
            &transport,
            shutdown.clone(),
        )
        .await
        .expect("membership");
        // A forger: a higher generation of a node with an invalid proof, and many fake ids.
        let forger = spawn_chitchat(
            ChitchatConfig {
                chitchat_id: ChitchatId::new("forger", 1, addr(11)),
                cluster_id: "troupe".to_owned(),
                gossip_interval: Duration::from_millis(50),
                listen_addr: addr(11),
                seed_nodes: vec![addr(10).to_string()],
                failure_detector_config: FailureDetectorConfig::default(),
                marked_for_deletion_grace_period: Duration::from_secs(3_600),
                catchup_callback: None,
                extra_liveness_predicate: None,
                protocol_version: chitchat::ProtocolVersion::V1,
            },
            Vec::new(),
            &transport,
        )
        .await
        .expect("forger");
        let fakes = 300;
        forger
            .with_chitchat(|chitchat| {
                for i in 0..fakes {
                    chitchat.reset_node_state_if_update(
                        &ChitchatId::new(format!("n{i}"), 2, addr(1_000 + i)),
                        [
                            value(keys::PROOF_KEY, &"00".repeat(32), 1),
                            value(keys::HTTP_ADDR_KEY, "127.0.0.1:1", 2),
                            value(keys::RPC_ADDR_KEY, "127.0.0.1:2", 3),
                        ]
                        .into_iter(),
                        3,
                        0,
                    );
                }
            })
            .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let sizes = membership.table_sizes();
            if sizes.gossip_nodes > usize::from(fakes) {
                // Proving an absence: give the heartbeat loop a few rounds to take them.
                tokio::time::sleep(HEARD_EVERY * 3).await;
                let sizes = membership.table_sizes();
                assert!(sizes.refused <= refused::MAX_REFUSED, "{sizes:?}");
                assert_eq!(
                    sizes.heard, 1,
                    "only n0 itself is a checked member: {sizes:?}"
                );
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the forged entries never reached chitchat: {sizes:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            membership.snapshot().members().count(),
            1,
            "no forged member"
        );
        shutdown.cancel();
        membership.shutdown().await;
        let _ = forger.shutdown().await;
    }
}
