//! A host on the node network that knows the cluster name but not the secret runs chitchat 0.13
//! itself against one node's gossip port and tries to change the cluster's view (sealed gossip
//! must make that impossible, decision 019): every member's status rewritten to `leaving` at
//! higher versions, an impersonator with a member's own chitchat id, and a fake higher
//! generation whose heartbeat never moves.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket};
use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatEnvelope, ChitchatId, DeletionStatus,
    FailureDetectorConfig, VersionedValue,
};
use serde_json::{json, Value};
use support::{cluster_lock, TestCluster};

/// chitchat's own UDP transport, sending only to `victim`: the attacker talks to one node.
struct OnlyTo {
    victim: SocketAddr,
}

struct OnlyToSocket {
    inner: UdpSocket,
    victim: SocketAddr,
}

#[async_trait]
impl Transport for OnlyTo {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        Ok(Box::new(OnlyToSocket {
            inner: UdpSocket::open(listen_addr).await?,
            victim: self.victim,
        }))
    }
}

#[async_trait]
impl Socket for OnlyToSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        if to != self.victim {
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        self.inner.send(to, envelope).await
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        self.inner.recv().await
    }
}

/// `(node id, generation, gossip address, http, rpc, region)` of every member.
fn members(view: &Value) -> Vec<(String, u64, SocketAddr, String, String, String)> {
    view["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["node_id"].as_str().expect("id").to_owned(),
                m["generation"].as_u64().expect("generation"),
                m["gossip_addr"]
                    .as_str()
                    .expect("gossip")
                    .parse()
                    .expect("addr"),
                m["http_addr"].as_str().expect("http").to_owned(),
                m["rpc_addr"].as_str().expect("rpc").to_owned(),
                m["region"].as_str().expect("region").to_owned(),
            )
        })
        .collect()
}

fn value(v: &str, version: u64) -> (String, VersionedValue) {
    (
        String::new(),
        VersionedValue {
            value: v.to_owned(),
            version,
            status: DeletionStatus::Set,
        },
    )
}

/// Why `view` is not the untouched cluster: three live, ready members and the shard table
/// seen before the attack.
fn changed(view: &Value, shards_before: &Value) -> Option<String> {
    let ready = view["members"]
        .as_array()?
        .iter()
        .filter(|m| m["live"] == true && m["status"] == "ready")
        .count();
    if ready != 3 {
        return Some(format!("{ready} live ready members: {}", view["members"]));
    }
    if &view["shards"] != shards_before {
        return Some("the shard table changed".to_owned());
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_gossip_from_a_host_without_the_secret_changes_no_node_view() {
    let _guard = cluster_lock().await;
    let cluster = TestCluster::start(3);
    cluster
        .wait_ready(&[0, 1, 2], Duration::from_secs(90))
        .await;
    let (_, before) = cluster.get(0, "/cluster").await.expect("cluster view");
    assert_eq!(
        before["cluster"], "troupe",
        "the attacker knows the cluster name"
    );
    let shards_before = before["shards"].clone();
    let known = members(&before);
    let victim = cluster.nodes[1].gossip_port;
    let victim_addr: SocketAddr = ([127, 0, 0, 1], victim).into();

    // The impersonator takes n1's own chitchat id (node id, generation, gossip address).
    let (n1, n1_generation, n1_gossip, n1_http, n1_rpc, n1_region) = known
        .iter()
        .find(|m| m.0 == "n1")
        .cloned()
        .expect("n1 is a member");
    let listen = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free udp port");
    let config = ChitchatConfig {
        chitchat_id: ChitchatId::new(n1.clone(), n1_generation, n1_gossip),
        cluster_id: "troupe".to_owned(),
        gossip_interval: Duration::from_millis(100),
        listen_addr: listen,
        seed_nodes: vec![victim_addr.to_string()],
        failure_detector_config: FailureDetectorConfig::default(),
        marked_for_deletion_grace_period: Duration::from_secs(3_600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: chitchat::ProtocolVersion::V1,
    };
    let handle = spawn_chitchat(
        config,
        vec![
            ("region".to_owned(), n1_region.clone()),
            ("http_addr".to_owned(), n1_http.clone()),
            ("rpc_addr".to_owned(), n1_rpc.clone()),
        ],
        &OnlyTo {
            victim: victim_addr,
        },
    )
    .await
    .expect("attacker chitchat");
    handle
        .with_chitchat(|chitchat| {
            // n1's own entry: versions far above the real n1's, ending with `leaving`.
            for i in 0..2_000 {
                chitchat.self_node_state().set("padding", i);
            }
            chitchat.self_node_state().set("status", "leaving");
            // Every other member: status `leaving` at a version it never reached.
            for (id, generation, gossip, ..) in known.iter().filter(|m| m.0 != n1) {
                let mut leaving = value("leaving", 1_000_000);
                leaving.0 = "status".to_owned();
                chitchat.reset_node_state_if_update(
                    &ChitchatId::new(id.clone(), *generation, *gossip),
                    std::iter::once(leaving),
                    1_000_000,
                    0,
                );
            }
            // A fake higher generation of n1 whose heartbeat never moves.
            let fake: Vec<(String, VersionedValue)> = [
                ("proof", "00".repeat(32)),
                ("region", n1_region.clone()),
                ("http_addr", n1_http.clone()),
                ("rpc_addr", n1_rpc.clone()),
                ("status", "ready".to_owned()),
                ("shards", "64".to_owned()),
            ]
            .into_iter()
            .enumerate()
            .map(|(i, (k, v))| {
                let mut kv = value(&v, i as u64 + 1);
                kv.0 = k.to_owned();
                kv
            })
            .collect();
            chitchat.reset_node_state_if_update(
                &ChitchatId::new(n1.clone(), n1_generation + 1, n1_gossip),
                fake.into_iter(),
                6,
                0,
            );
        })
        .await;

    // Long enough for status to spread and for a frozen heartbeat to lapse n1's lease (about
    // 5 s on the build this test was written against), with writes going on throughout.
    let attack = Duration::from_secs(15);
    let after_attack = Duration::from_secs(5);
    let started = Instant::now();
    let mut attacker = Some(handle);
    let mut writes = 0usize;
    while started.elapsed() < attack + after_attack {
        if started.elapsed() >= attack {
            if let Some(handle) = attacker.take() {
                handle.shutdown().await.expect("attacker stops");
            }
        }
        for node in 0..3 {
            let (_, view) = cluster.get(node, "/cluster").await.expect("cluster view");
            if let Some(why) = changed(&view, &shards_before) {
                panic!(
                    "n{} changed its view {:?} into the attack: {why}",
                    node + 1,
                    started.elapsed()
                );
            }
        }
        let id = format!("00000000-0000-4000-8000-{writes:012}");
        let (status, body) = cluster
            .post(
                writes % 3,
                "/api/user",
                json!({"id": id, "name": "u", "email": "u@example.com", "group": 1}),
            )
            .await;
        assert_eq!(
            status,
            201,
            "write {writes} through n{} {:?} into the attack: {body}",
            writes % 3 + 1,
            started.elapsed()
        );
        writes += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(writes > 20, "only {writes} writes");
    let log = cluster.nodes[1].log_text();
    assert!(
        log.contains("dropping gossip datagrams that do not open with the cluster secret"),
        "the attack reached the victim and was dropped there"
    );
}
