//! Hostile bytes against real `troupe node` processes: a handshake whose length prefix claims
//! 2^62 bytes sent to the RPC port, and a corrupt value in a node's LMDB. Either must leave the
//! node serving; a corrupt value is a 500 for its own key only.

mod support;

use std::time::{Duration, Instant};

use support::{cluster_lock, user, TestCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Start-up, sealing and readiness of a one-node cluster, generous for a loaded CI machine.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A one-node cluster: every shard is this node's, with no replica to wait for.
fn one_node() -> TestCluster {
    TestCluster::start_with(1, &[("replication_factor", "1")])
}

/// Creates user `i`, retrying while the node is still taking its shards (503).
async fn create_user(cluster: &TestCluster, i: usize) {
    cluster
        .wait_for(&format!("user {i} created"), READY_WITHIN, || async {
            let (status, body) = cluster
                .send(0, reqwest::Method::POST, "/api/user", Some(user(i)))
                .await;
            match status {
                201 => Some(()),
                503 | 0 => None,
                _ => panic!("create user {i}: {status} {body}"),
            }
        })
        .await
}

/// The node is alive and serves health, a write and a read.
async fn still_serving(cluster: &mut TestCluster, i: usize) {
    let exited = cluster.nodes[0]
        .child
        .as_mut()
        .and_then(|child| child.try_wait().ok().flatten());
    if let Some(status) = exited {
        cluster.dump_logs();
        panic!("the node exited: {status}");
    }
    let (status, _) = cluster.get(0, "/healthz").await.expect("healthz answers");
    assert_eq!(status, 200);
    create_user(cluster, i).await;
    let id = user(i)["id"].as_str().expect("id").to_owned();
    let (status, body) = cluster
        .get(0, &format!("/api/user/{id}"))
        .await
        .expect("read answers");
    assert_eq!((status, &body), (200, &user(i)));
}

/// The 16 bytes: a 4-byte big-endian frame length (12), then the codec's version
/// byte 1, `Handshake::Hello` (variant 1), protocol 6, and a cluster name whose varint length
/// (253: a little-endian `u64` follows) claims 2^62 bytes.
fn hostile_hello() -> Vec<u8> {
    let mut bytes = 12u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[1, 1, 6, 253]);
    bytes.extend_from_slice(&0x4000_0000_0000_0000u64.to_le_bytes());
    assert_eq!(bytes.len(), 16);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_whose_cluster_name_claims_2_pow_62_bytes_leaves_the_node_serving() {
    let _guard = cluster_lock().await;
    let mut cluster = one_node();
    cluster.wait_ready(&[0], READY_WITHIN).await;
    create_user(&cluster, 1).await;

    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", cluster.nodes[0].rpc_port))
        .await
        .expect("connect to the rpc port");
    stream
        .write_all(&hostile_hello())
        .await
        .expect("send the hello");
    // The node reads the hello, refuses it and closes the connection (or dies, on a build
    // without decode limits): read until the connection ends either way.
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .expect("the node closes the connection")
        .ok();

    still_serving(&mut cluster, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_stored_user_is_a_500_for_that_user_and_the_node_keeps_serving() {
    use troupe_actors::users::UserId;
    use troupe_node::ids::ShardId;
    use troupe_node::services::users;
    use troupe_node::shard::{Entry, Op, ShardStore};
    use troupe_node::storage::{Storage, StorageOptions, WriteMode};

    let _guard = cluster_lock().await;
    let mut cluster = one_node();
    cluster.wait_ready(&[0], READY_WITHIN).await;
    create_user(&cluster, 1).await;
    create_user(&cluster, 2).await;
    let corrupt_id = user(1)["id"].as_str().expect("id").to_owned();
    let shard = troupe_node::placement::shard_for_key(&corrupt_id, 64);
    assert!(
        cluster.nodes[0]
            .terminate(Duration::from_secs(30))
            .is_some_and(|status| status.success()),
        "the node stops cleanly"
    );

    // A stored user whose name claims 2^62 bytes, written through the store as an entry
    // of the shard's current epoch.
    let storage = Storage::open(
        &cluster.nodes[0].data_dir,
        StorageOptions {
            writes: WriteMode::Inline,
            ..StorageOptions::default()
        },
    )
    .expect("open the node's storage");
    let store = ShardStore::open(&storage).expect("open the shard store");
    let meta = store.meta(shard).expect("shard meta");
    let epoch = meta.epoch.clone().expect("the shard was sealed");
    let mut garbage = vec![1, 253];
    garbage.extend_from_slice(&(1u64 << 62).to_le_bytes());
    let key = users::key(&UserId::parse(&corrupt_id).expect("a user id"));
    store
        .append(
            shard,
            epoch.clone(),
            meta.position.clone(),
            Entry {
                seq: meta.position.applied + 1,
                epoch,
                ops: vec![Op {
                    tenant: users::TENANT,
                    key,
                    value: Some(garbage),
                }],
                trim_before: 0,
            },
        )
        .await
        .expect("write the corrupt user");
    drop(store);
    storage.close().await;

    cluster.start_node(0);
    cluster.wait_ready(&[0], READY_WITHIN).await;
    let (status, body) = cluster
        .get(0, &format!("/api/user/{corrupt_id}"))
        .await
        .expect("the corrupt user's read answers");
    assert_eq!(status, 500, "{body}");
    let message = body["message"].as_str().expect("a JSON message");
    let ShardId(shard) = shard;
    assert!(
        message.contains(&corrupt_id) && message.contains(&format!("shard {shard}")),
        "{message}"
    );
    let other = user(2)["id"].as_str().expect("id").to_owned();
    assert_eq!(
        cluster.get(0, &format!("/api/user/{other}")).await,
        Ok((200, user(2)))
    );
    still_serving(&mut cluster, 3).await;
    let deadline = Instant::now() + READY_WITHIN;
    while !cluster.nodes[0]
        .log_text()
        .lines()
        .any(|l| l.contains(" ERROR ") && l.contains(&corrupt_id) && l.contains("shard"))
    {
        assert!(Instant::now() < deadline, "the corrupt read is logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
