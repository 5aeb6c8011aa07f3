//! A hostile host on the node network: it knows the cluster name and every node's gossip
//! address, but not the secret (decision 019 says it can change nothing).
//!
//! It runs chitchat 0.13 itself, impersonating `n1` (same node id, generation and gossip
//! address), publishing `leaving` for every member at versions they never reached, a higher
//! generation of `n1` whose heartbeat never moves, and [`FAKE_NODES`] fake node ids; its
//! transport seals with a key derived from a guessed secret. Alongside, it sends
//! [`FAKE_SENDERS`] datagrams from as many fake sender instances, plus garbage. The checks ([`attack`]) are that no node's view changes while
//! it runs and that every map a datagram could grow stays bounded.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatId, DeletionStatus, FailureDetectorConfig,
    ProtocolVersion, VersionedValue,
};
use tracing::info;
use troupe_node::config::Secret;
use troupe_node::membership::replay::MAX_INSTANCES;
use troupe_node::membership::seal::{GossipKeys, Sealer, INSTANCE_LEN};
use turmoil::net::UdpSocket;

use crate::harness::{SimCluster, GOSSIP_PORT};
use crate::scenarios::Measurements;
use crate::swarm::MAX_NODES;

/// Fake sender instances, one datagram each: spread over the nodes, every node gets more than
/// its replay table holds ([`MAX_INSTANCES`]), up to the largest swarm, so a table that let an
/// unauthenticated datagram in would show it full, whatever its bound. (It was 100,000: about
/// a quarter of a run's CPU went to sealing and opening them, and more show nothing more.)
pub const FAKE_SENDERS: usize = 30_000;
const _: () = assert!(FAKE_SENDERS > MAX_NODES * MAX_INSTANCES);
/// Fake node ids in the hostile chitchat's state, each one in every digest it sends: four
/// times what a node's list of refused nodes holds (64), so a node that let them in (given
/// the real secret) would show that list full and its node table grown. The simulated
/// transport parks an envelope whatever its size (`crate::gossip`), so more only add the
/// hostile host's own digests and failure detector: at 1,000 (what one production datagram
/// could carry) they took about an eighth of a run's CPU.
pub const FAKE_NODES: usize = 256;
/// How long the attack lasts: several failure-detection and lease periods.
pub const ATTACK_FOR: Duration = Duration::from_secs(20);
/// Name of the hostile client host.
const HOST: &str = "hostile";

/// What the hostile host knows of one member: `(node id, generation, gossip address)`.
type Known = (String, u64, SocketAddr);

/// Runs the attack on a converged cluster for [`ATTACK_FOR`], checking every node's view and
/// the sizes of its gossip tables as it goes, then the transport's bounds. `secret` is what the hostile host seals with (a guess; the real
/// secret makes the scenario show what the attack does to an unauthenticated cluster).
pub fn attack(cluster: &mut SimCluster, secret: &str) -> turmoil::Result<Measurements> {
    let hosts = cluster.hosts().to_vec();
    // The views before the attack: the workload's calm phase ran unobserved.
    cluster.run_until(
        Duration::from_secs(5),
        "every node answers the observer",
        |v| hosts.iter().all(|h| v.of(h).is_some()),
    )?;
    let views = cluster.views();
    let before = views
        .of(&hosts[0])
        .ok_or("the first node answered")?
        .clone();
    let known: Vec<Known> = before
        .members
        .iter()
        .map(|m| {
            let gossip: SocketAddr = m.gossip_addr.parse()?;
            Ok((m.node_id.clone(), m.generation, gossip))
        })
        .collect::<Result<_, std::net::AddrParseError>>()?;
    let keys = GossipKeys::derive(&cluster.config().cluster.name, &Secret::new(secret), None);
    let network = cluster.gossip().clone();
    let cluster_name = cluster.config().cluster.name.clone();
    let dropped_before = network.dropped();
    cluster.client(HOST, async move {
        let ip = turmoil::lookup(HOST);
        hostile(network, keys, ip, cluster_name, known).await
    });
    let start = cluster.elapsed();
    while cluster.elapsed() - start < ATTACK_FOR {
        cluster.step_for(Duration::from_millis(100))?;
        let views = cluster.views();
        for host in &hosts {
            let Some(view) = views.of(host) else { continue };
            let ready = view
                .members
                .iter()
                .filter(|m| m.live && m.status == "ready")
                .count();
            let tables = view.gossip_tables;
            if tables.nodes > hosts.len() || tables.refused > 0 || tables.heard > hosts.len() {
                return Err(format!(
                    "seed {}: {host}'s gossip tables grew under the attack: {tables:?}",
                    cluster.seed()
                )
                .into());
            }
            if ready != hosts.len() || view.shards != before.shards {
                return Err(format!(
                    "seed {}: {host} changed its view {:?} into the attack: {ready} live ready \
                     members, shard table {}changed; members {:?}",
                    cluster.seed(),
                    cluster.elapsed() - start,
                    if view.shards == before.shards {
                        "un"
                    } else {
                        ""
                    },
                    view.members
                )
                .into());
            }
        }
    }
    let network = cluster.gossip();
    let dropped = network.dropped() - dropped_before;
    let senders = network.most_senders();
    info!(dropped, senders, "hostile gossip dropped");
    // Each node start is one sender instance; nothing the hostile host sent may add any.
    if senders > hosts.len() {
        return Err(format!(
            "seed {}: a node tracked {senders} gossip sender instances for {} nodes",
            cluster.seed(),
            hosts.len()
        )
        .into());
    }
    if dropped < (FAKE_SENDERS / 2) as u64 {
        return Err(format!(
            "seed {}: only {dropped} hostile datagrams reached the nodes' openers",
            cluster.seed()
        )
        .into());
    }
    Ok(vec![("attacked for", ATTACK_FOR)])
}

/// The hostile host's software.
async fn hostile(
    network: crate::gossip::GossipNetwork,
    keys: GossipKeys,
    ip: IpAddr,
    cluster_name: String,
    known: Vec<Known>,
) -> turmoil::Result {
    let (n1, n1_generation, n1_gossip) = known
        .iter()
        .find(|m| m.0 == "n1")
        .cloned()
        .ok_or("n1 is a member")?;
    let config = ChitchatConfig {
        chitchat_id: ChitchatId::new(n1.clone(), n1_generation, n1_gossip),
        cluster_id: cluster_name,
        gossip_interval: Duration::from_millis(crate::swarm::current().gossip_interval_ms / 2),
        listen_addr: SocketAddr::from(([0, 0, 0, 0], GOSSIP_PORT)),
        seed_nodes: known.iter().map(|m| m.2.to_string()).collect(),
        failure_detector_config: FailureDetectorConfig::default(),
        marked_for_deletion_grace_period: Duration::from_secs(3_600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: ProtocolVersion::V1,
    };
    let transport = network.transport(ip, keys.clone());
    let attack_ends = tokio::time::Instant::now() + ATTACK_FOR;
    let handle = spawn_chitchat(config, Vec::new(), &transport).await?;
    handle
        .with_chitchat(|chitchat| {
            for i in 0..2_000 {
                chitchat.self_node_state().set("padding", i);
            }
            chitchat.self_node_state().set("status", "leaving");
            for (id, generation, gossip) in known.iter().filter(|m| m.0 != n1) {
                chitchat.reset_node_state_if_update(
                    &ChitchatId::new(id.clone(), *generation, *gossip),
                    std::iter::once(value("status", "leaving", 1_000_000)),
                    1_000_000,
                    0,
                );
            }
            let fake = [
                value("proof", &"00".repeat(32), 1),
                value("status", "ready", 2),
                value("shards", "16", 3),
            ];
            chitchat.reset_node_state_if_update(
                &ChitchatId::new(n1.clone(), n1_generation + 1, n1_gossip),
                fake.clone().into_iter(),
                3,
                0,
            );
            for i in 0..FAKE_NODES {
                let addr = SocketAddr::from(([10, 99, (i / 250) as u8, (i % 250) as u8], 7946));
                chitchat.reset_node_state_if_update(
                    &ChitchatId::new(format!("fake{i}"), i as u64, addr),
                    fake.clone().into_iter(),
                    3,
                    0,
                );
            }
        })
        .await;

    // Fake sender instances, one datagram each, sealed with the guessed key; and garbage of
    // many lengths.
    let socket = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], GOSSIP_PORT + 1))).await?;
    let targets: Vec<SocketAddr> = known.iter().map(|m| m.2).collect();
    let mut sealed = Vec::new();
    let pace = ATTACK_FOR.as_micros() as u64 / 2 / FAKE_SENDERS as u64;
    for i in 0..FAKE_SENDERS {
        // A key no sender issued: parking real envelopes would evict the nodes' own from the
        // shared table, a loss production does not have.
        let key = u64::MAX - i as u64;
        let mut instance = [0u8; INSTANCE_LEN];
        instance[..8].copy_from_slice(&(i as u64).to_be_bytes());
        Sealer::new(keys.clone(), instance).seal(
            &key.to_be_bytes(),
            troupe_node::clock::unix_millis(),
            &mut sealed,
        )?;
        let to = targets[i % targets.len()];
        // Lost sends (a full turmoil queue) are part of the game.
        let _ = socket.send_to(&sealed, to).await;
        if i % 97 == 0 {
            let garbage = vec![(i % 251) as u8; i % 200];
            let _ = socket.send_to(&garbage, to).await;
        }
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_micros(pace * 10)).await;
        }
    }
    // The attack ends when its checks do ([`attack`]); it used to go on for half as long
    // again, into phases that no longer check the views.
    tokio::time::sleep_until(attack_ends).await;
    handle.shutdown().await?;
    Ok(())
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
