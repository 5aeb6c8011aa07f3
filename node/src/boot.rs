//! Booting and stopping a node: the one function production and the simulation both call.
//!
//! [`run`] takes the validated config, the I/O seam ([`NodeIo`]: listeners, dialer, gossip
//! transport) and a shutdown token, and returns when the node has stopped cleanly.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};
use troupe_http::{HttpMetrics, Surface};

use crate::config::{ClusterConfig, NodeConfig};
use crate::ids::Generation;
use crate::layout::ShardLayout;
use crate::membership::{Membership, MembershipOptions, NodeStatus};
use crate::metrics::NodeMetrics;
use crate::net::{AxumListener, BoxListener, Dialer};
use crate::node::{Node, NodeInner};
use crate::rpc::auth::Credentials;
use crate::rpc::RpcClient;
use crate::shard::host::Shards;
use crate::shard::ShardStore;
use crate::storage::{Storage, StorageOptions, WriteMode};
use crate::topology;

/// The network and runtime seams of a node. Production passes tokio sockets and the UDP gossip
/// transport; the simulation passes turmoil's.
pub struct NodeIo {
    /// Bound HTTP listener.
    pub http: BoxListener,
    /// Bound listener of the operator's views (`/cluster...`, `/metrics`), when they are kept
    /// off the client listener (`--admin-listen`).
    pub admin: Option<BoxListener>,
    /// Bound RPC listener.
    pub rpc: BoxListener,
    /// Dialer for calls to peers.
    pub dialer: Arc<dyn Dialer>,
    /// chitchat transport (UDP in production).
    pub gossip: Box<dyn chitchat::transport::Transport>,
    /// Gossip address peers should use, resolved to an IP.
    pub gossip_advertise: SocketAddr,
    /// Peers the gossip transport heard say they cannot open this node's gossip.
    pub key_mismatches: crate::membership::mismatch::KeyMismatches,
    /// How LMDB writes run (a writer thread in production, inline in the simulation).
    pub writes: WriteMode,
    /// Lowest acceptable generation (wall-clock milliseconds in production), so a node that lost
    /// its data directory still comes back with a higher generation than before.
    pub generation_floor: u64,
}

/// Why a node could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The storage could not be opened.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// The shard databases could not be opened.
    #[error(transparent)]
    Shards(#[from] crate::shard::StoreError),
    /// Two services claim one state machine number or one tenant byte (a build error caught
    /// at start).
    #[error(transparent)]
    Machines(#[from] crate::services::RegistryError),
    /// Gossip could not start.
    #[error(transparent)]
    Membership(#[from] crate::membership::MembershipError),
    /// The storage writer thread panicked: no write can succeed, so the node stops.
    #[error("the storage writer failed (see the error logged before): the node stopped")]
    StorageWriter,
    /// A blocking start-up task panicked.
    #[error("start-up task failed: {0}")]
    Task(String),
    /// The only nodes that answered through the seeds belong to another cluster (another
    /// secret, shard count or region table): starting alone would make a second cluster.
    #[error(
        "no node of this cluster answered through the seeds, only nodes it refuses ({0}); \
         starting alone would make a second cluster: give this node the cluster's cluster.toml \
         and secret (TROUPE_SECRET)"
    )]
    OnlyOtherClusters(String),
}

/// How many gossip rounds a joining node waits for a peer before it starts alone.
const JOIN_GRACE_ROUNDS: u32 = 6;
/// Gossip rounds without a change in the live members before a joining node becomes ready.
const JOIN_SETTLE_ROUNDS: u32 = 3;
/// The same, while every node the joining node has heard of is live: one liveness update of
/// chitchat's (once a round) with nobody new.
const JOIN_COMPLETE_ROUNDS: u32 = 1;
/// How often a joining node checks whether it serves its shards yet.
const TAKEOVER_POLL: Duration = Duration::from_millis(50);
/// How many gossip rounds a leaving node keeps gossiping so peers see `leaving` before it stops.
const LEAVE_ROUNDS: u32 = 3;

/// Runs a node until `shutdown` is cancelled, then stops it cleanly: publishes `leaving`, hands
/// its shards to their next owners ([`crate::handoff`]), stops taking requests, finishes
/// in-flight ones, stops gossip and closes storage.
pub async fn run(
    cluster: ClusterConfig,
    config: NodeConfig,
    io: NodeIo,
    shutdown: CancellationToken,
) -> Result<(), BootError> {
    let span = tracing::info_span!("node", node_id = %config.node_id);
    run_node(cluster, config, io, shutdown)
        .instrument(span)
        .await
}

async fn run_node(
    cluster: ClusterConfig,
    config: NodeConfig,
    io: NodeIo,
    shutdown: CancellationToken,
) -> Result<(), BootError> {
    let layout = Arc::new(ShardLayout::of(&cluster));
    let storage = open_storage(&config, &cluster, io.writes).await?;
    storage.check_identity(&cluster.cluster.name, &layout.identity())?;
    let generation = Generation(storage.next_generation(io.generation_floor)?);
    info!(%generation, data_dir = %config.data_dir.display(), "storage open");

    // Subsystems stop in order: HTTP first (after its drain), then RPC and the topology, then
    // gossip.
    let http_stop = troupe_http::Stopping::default();
    let core_stop = CancellationToken::new();

    let membership = Membership::start(
        membership_options(&cluster, &config, &layout, generation, &io),
        io.gossip.as_ref(),
        core_stop.child_token(),
    )
    .await?;
    let mut registry = Registry::default();
    let node_metrics = NodeMetrics::register(&mut registry);
    node_metrics.events.set_node(&config.node_id);
    storage.register_metrics(&mut registry);
    let http_metrics = HttpMetrics::register(&mut registry);
    let me = config.node_id.clone();
    let observer = {
        let (metrics, me) = (node_metrics.clone(), me.clone());
        move |t: &topology::Topology| {
            metrics.observe(&me, &t.membership, &t.table);
            metrics.events.observe_membership(&t.membership);
        }
    };
    let topology = topology::track(
        &membership,
        layout.clone(),
        cluster.cluster.replication_factor,
        core_stop.child_token(),
        observer,
    );
    let creds = Credentials {
        previous_secret: cluster.cluster.previous_secret.clone(),
        ..Credentials::new(
            cluster.cluster.name.clone(),
            me.clone(),
            cluster.cluster.secret.clone(),
        )
    };
    let rpc = RpcClient::new(
        io.dialer,
        creds.clone(),
        cluster.rpc.max_frame_bytes,
        cluster.rpc.call_timeout(),
        core_stop.child_token(),
    );
    rpc.observe_calls(Arc::new(node_metrics.clone()));
    let shards = Shards::new(
        me.clone(),
        ShardStore::open(&storage)?,
        Arc::new(rpc.clone()),
        topology.clone(),
        cluster.clone(),
        layout.total(),
        node_metrics.clone(),
        crate::services::machines(&cluster)?,
    );
    let shard_host = tokio::spawn(
        shards
            .clone()
            .follow_topology(core_stop.child_token())
            .in_current_span(),
    );
    let lease = tokio::spawn(
        crate::shard::lease::keep(shards.clone(), core_stop.child_token()).in_current_span(),
    );
    // The integers aggregator's local handle: the service runs it, the node delivers to it.
    let aggregator = crate::services::integers::LocalAggregator::default();
    let node = Node {
        inner: Arc::new(NodeInner {
            cluster: cluster.clone(),
            layout,
            me,
            region: config.region.clone(),
            membership: membership.clone(),
            topology,
            rpc,
            shards,
            storage: storage.clone(),
            aggregator: Arc::new(aggregator.clone()),
            metrics: node_metrics,
            registry,
            requests: Default::default(),
            joined: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
        }),
    };

    let rpc_server = tokio::spawn(
        crate::rpc::serve(
            io.rpc,
            creds,
            crate::rpc::ServerLimits {
                max_frame: cluster.rpc.max_frame_bytes,
                handshake_timeout: cluster.rpc.handshake_timeout(),
                max_pending_handshakes: cluster.rpc.max_pending_handshakes,
            },
            Arc::new(node.clone()),
            core_stop.child_token(),
        )
        .in_current_span(),
    );
    let integers = tokio::spawn(
        crate::services::integers::run(node.clone(), aggregator, core_stop.child_token())
            .in_current_span(),
    );
    let edge = |listener: BoxListener, surface: Surface| {
        let routes = troupe_http::router(
            node.clone(),
            http_metrics.clone(),
            cluster.http.edge_limits(),
            surface,
        );
        tokio::spawn(
            troupe_http::serve(
                AxumListener(listener),
                routes,
                cluster.http.serve_limits(),
                http_stop.clone(),
            )
            .in_current_span(),
        )
    };
    let (http_server, admin_server) = match io.admin {
        Some(admin) => (
            edge(io.http, Surface::Api),
            Some(edge(admin, Surface::Admin)),
        ),
        None => (edge(io.http, Surface::All), None),
    };
    info!(http = %config.http_advertise, rpc = %config.rpc_advertise, "node serving");

    let refused = tokio::select! {
        // Normal path: join, then serve until asked to stop.
        joined = join(&node, &cluster, !config.seeds.is_empty()) => match joined {
            Ok(()) => tokio::select! {
                _ = shutdown.cancelled() => None,
                _ = storage.writer_failed() => Some(BootError::StorageWriter),
            },
            Err(error) => Some(error),
        },
        // Asked to stop while still joining.
        _ = shutdown.cancelled() => None,
        // Nothing can be written any more: stop rather than limp.
        _ = storage.writer_failed() => Some(BootError::StorageWriter),
    };

    info!(drain_ms = cluster.http.drain_ms, "shutting down");
    // `/readyz` turns red and every response closes its connection from now on.
    node.inner.leaving.store(true, Ordering::Release);
    http_stop.draining.cancel();
    membership.set_status(NodeStatus::Leaving).await;
    let left_at = tokio::time::Instant::now();
    // Requests that arrive meanwhile are still served (forwarded to the new owners). A node
    // whose writer failed cannot take part in a hand-off (it ends with a write): its shards
    // fail over as if it had crashed.
    if !matches!(refused, Some(BootError::StorageWriter)) {
        crate::handoff::hand_off(&node, cluster.migration.handoff_timeout()).await;
    }
    // Keep serving for the drain, so load balancers see `/readyz` fail and send elsewhere, and
    // at least a few gossip rounds, so peers see `leaving` and route elsewhere, before we stop
    // answering, even when there was nothing to hand off.
    let gossip_rounds = cluster.gossip.interval() * LEAVE_ROUNDS;
    tokio::time::sleep_until(left_at + cluster.http.drain().max(gossip_rounds)).await;
    http_stop.stop.cancel();
    for server in std::iter::once(http_server).chain(admin_server) {
        if let Err(error) = server.await {
            warn!(%error, "http server task failed");
        }
    }
    core_stop.cancel();
    let _ = rpc_server.await;
    let _ = shard_host.await;
    let _ = lease.await;
    let _ = integers.await;
    membership.shutdown().await;
    drop(node);
    storage.close().await;
    match refused {
        Some(error) => Err(error),
        None => {
            info!("stopped cleanly");
            Ok(())
        }
    }
}

async fn open_storage(
    config: &NodeConfig,
    cluster: &ClusterConfig,
    writes: WriteMode,
) -> Result<Storage, BootError> {
    let path = config.data_dir.clone();
    let options = StorageOptions::for_map(cluster.storage.map_size_bytes(), writes);
    match writes {
        // The simulation runs everything on the host's own task.
        WriteMode::Inline => Ok(Storage::open(&path, options)?),
        WriteMode::Thread => tokio::task::spawn_blocking(move || Storage::open(&path, options))
            .await
            .map_err(|e| BootError::Task(e.to_string()))?
            .map_err(BootError::from),
    }
}

fn membership_options(
    cluster: &ClusterConfig,
    config: &NodeConfig,
    layout: &ShardLayout,
    generation: Generation,
    io: &NodeIo,
) -> MembershipOptions {
    MembershipOptions {
        cluster: cluster.cluster.name.clone(),
        node_id: config.node_id.clone(),
        generation,
        region: config.region.clone(),
        http_addr: config.http_advertise.clone(),
        rpc_addr: config.rpc_advertise.clone(),
        gossip_listen: config.gossip_listen,
        gossip_advertise: io.gossip_advertise,
        seeds: config.seeds.iter().map(ToString::to_string).collect(),
        gossip: cluster.gossip.clone(),
        signer: crate::membership::keys::Signer {
            cluster: cluster.cluster.name.clone(),
            secret: cluster.cluster.secret.clone(),
            previous: cluster.cluster.previous_secret.clone(),
            shards: cluster.cluster.shards,
            layout: layout.fingerprint(),
        },
        key_mismatches: io.key_mismatches.clone(),
    }
}

/// Waits until this node's view of who is live has not changed for [`JOIN_SETTLE_ROUNDS`]
/// gossip rounds, or for [`JOIN_COMPLETE_ROUNDS`] while every node it has heard of is live
/// (at most [`JOIN_GRACE_ROUNDS`] × 2 in all).
///
/// The first peer met tells about the others, but the failure detector marks each of them live
/// only as their heartbeats arrive. A node that became ready on a partial view would compute a
/// placement that gives it shards whose real owner it has not heard of yet, and pre-copy the
/// wrong shards; and a node ready before the others are live takes shards that the next ones
/// then have to pre-copy from it (decision 038). Taking a shard over does not rely on this
/// wait: the seal itself waits until no live member has appeared for three rounds and a
/// majority answers (`shard::owner`, decision 007).
///
/// Only the live set counts (who is live, at which generation), not the members' status: when
/// many nodes start together each one turning `ready` would otherwise restart every other's
/// wait, and the last became ready seconds after all were live (docs/SIMULATION.md, "Scale").
/// A node that becomes ready before the others pays for it in pre-copy, which asks all owners
/// at once and skips empty copies ([`crate::precopy`], decision 031).
///
/// Every node gossip has named being live (none still arriving, none dead) is the sign that
/// the view is whole: digests name every node their sender knows, so a node that is not named
/// yet is rare once a round has passed without anyone new. The long wait remains for a view
/// with a member still arriving or dead (decision 040).
async fn wait_for_a_settled_view(node: &Node, cluster: &ClusterConfig) {
    let round = cluster.gossip.interval();
    let give_up = tokio::time::Instant::now() + round * JOIN_GRACE_ROUNDS * 2;
    let mut snapshots = node.inner.membership.subscribe();
    let mut live = Vec::new();
    let mut changed_at = tokio::time::Instant::now();
    loop {
        let (now_live, whole) = {
            let snapshot = snapshots.borrow_and_update();
            (live_set(&snapshot), snapshot.everyone_heard_of_is_live())
        };
        // A member appeared, died or restarted: start counting again.
        if now_live != live {
            live = now_live;
            changed_at = tokio::time::Instant::now();
        }
        let rounds = if whole {
            JOIN_COMPLETE_ROUNDS
        } else {
            JOIN_SETTLE_ROUNDS
        };
        let still_until = changed_at + round * rounds;
        if tokio::time::Instant::now() >= give_up {
            warn!("membership kept changing while joining: becoming ready anyway");
            return;
        }
        match tokio::time::timeout_at(still_until.min(give_up), snapshots.changed()).await {
            // Still for long enough.
            Err(_) if still_until <= give_up => return,
            Err(_) => {}
            // Gossip stopped (the node is stopping).
            Ok(Err(_)) => return,
            Ok(Ok(())) => {}
        }
    }
}

/// Who is live in `snapshot`, and at which generation.
fn live_set(
    snapshot: &crate::membership::MembershipSnapshot,
) -> Vec<(crate::ids::NodeId, Generation)> {
    let mut live: Vec<_> = snapshot
        .members()
        .filter(|m| m.live)
        .map(|m| (m.node_id.clone(), m.generation))
        .collect();
    live.sort();
    live
}

/// Joins through the seeds (or starts alone when none answers) and becomes ready; refuses
/// when the only nodes that answered belong to another cluster.
async fn join(node: &Node, cluster: &ClusterConfig, has_seeds: bool) -> Result<(), BootError> {
    let grace = cluster.gossip.interval() * JOIN_GRACE_ROUNDS;
    if has_seeds {
        let mut snapshots = node.inner.membership.subscribe();
        let met_peer =
            snapshots.wait_for(|s| s.members().any(|m| m.live && m.node_id != node.inner.me));
        if tokio::time::timeout(grace, met_peer).await.is_err() {
            let refused = node.inner.membership.rejected();
            if !refused.is_empty() {
                return Err(BootError::OnlyOtherClusters(refused.join("; ")));
            }
            warn!(
                grace_ms = grace.as_millis() as u64,
                "no peer reachable through the seeds: starting alone"
            );
        } else {
            wait_for_a_settled_view(node, cluster).await;
            let timeout = cluster.migration.pre_copy_timeout();
            if !timeout.is_zero() {
                crate::precopy::pre_copy(node, timeout).await;
            }
        }
    }
    node.inner.membership.set_status(NodeStatus::Ready).await;
    // Let the published status reach the topology before claiming readiness.
    let mut topology = node.inner.topology.clone();
    let me = node.inner.me.clone();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        topology.wait_for(|t| t.membership.placement_nodes().contains(&me)),
    )
    .await;
    crate::precopy::finish(node);
    wait_for_first_takeovers(node, cluster.migration.handoff_timeout()).await;
    node.inner.joined.store(true, Ordering::Release);
    info!("joined the cluster");
    Ok(())
}

/// Waits (at most `bound`, as long as a hand-off may take) until this node serves every shard
/// placement gave it when it joined, so `/readyz` turns green on a node that serves its share.
/// Later takeovers never make it unready again (see `Node::readiness`).
async fn wait_for_first_takeovers(node: &Node, bound: Duration) {
    let deadline = tokio::time::Instant::now() + bound;
    while node.inner.shards.owned_not_serving() > 0 {
        if tokio::time::Instant::now() >= deadline {
            warn!(
                shards = node.inner.shards.owned_not_serving(),
                "joined before taking over every owned shard"
            );
            return;
        }
        tokio::time::sleep(TAKEOVER_POLL).await;
    }
}
