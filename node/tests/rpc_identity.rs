//! Real `troupe node` processes and a caller that holds the cluster secret but is not who the
//! request says: shard requests that only a shard's owner may send are checked against the
//! node the RPC handshake authenticated.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::{cluster_lock, TestCluster};
use tokio_util::sync::CancellationToken;
use troupe_node::config::{ClusterConfig, HostPort};
use troupe_node::ids::{NodeId, ShardId};
use troupe_node::net::tcp::TcpDialer;
use troupe_node::protocol::{Request, Response};
use troupe_node::rpc::auth::Credentials;
use troupe_node::rpc::RpcClient;
use troupe_node::shard::{Entry, Epoch, PeerRequest};

#[tokio::test]
async fn an_authenticated_node_that_does_not_own_the_epoch_cannot_seal_replicate_or_drop() {
    let _guard = cluster_lock().await;
    let cluster = TestCluster::start(2);
    cluster.wait_ready(&[0, 1], Duration::from_secs(60)).await;
    let node = &cluster.nodes[0];
    let config = ClusterConfig::load(Some(&node.config), None).expect("cluster config");
    // The secret and the cluster name, so the handshake succeeds: as node n9, not n1.
    let rpc = RpcClient::new(
        Arc::new(TcpDialer),
        Credentials::new(
            config.cluster.name.clone(),
            NodeId::new("n9"),
            config.cluster.secret.clone(),
        ),
        config.rpc.max_frame_bytes,
        Duration::from_secs(10),
        CancellationToken::new(),
    );
    let target = NodeId::new(node.id.clone());
    let addr: HostPort = format!("127.0.0.1:{}", node.rpc_port)
        .parse()
        .expect("rpc address");
    // An epoch far ahead of any real one, naming the node itself as its owner.
    let epoch = Epoch {
        term: 1_000_000,
        owner: target.clone(),
    };
    let shard = ShardId(0);
    let forged = [
        PeerRequest::Seal {
            shard,
            epoch: epoch.clone(),
        },
        PeerRequest::Replicate {
            shard,
            epoch: epoch.clone(),
            prev: Default::default(),
            entry: Entry {
                seq: 1,
                epoch: epoch.clone(),
                ops: Vec::new(),
                trim_before: 0,
            },
        },
        PeerRequest::Drop { shard, epoch },
    ];
    for request in forged.map(Request::Shard) {
        let answer = rpc
            .call(&target, &addr, request.clone())
            .await
            .expect("answered");
        assert!(
            matches!(&answer, Response::Failed { message } if message.contains("sent by node n9")),
            "{request:?} got {answer:?}"
        );
    }
    cluster
        .wait_for(
            "the refusals in the log",
            Duration::from_secs(10),
            || async {
                node.log_text()
                    .contains("peer request refused")
                    .then_some(())
            },
        )
        .await;
    // The node still serves its shards under its own epoch.
    let (status, _) = cluster.get(0, "/readyz").await.expect("readyz");
    assert_eq!(status, 200);
}
