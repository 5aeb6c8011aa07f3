//! Restarts no client notices, against real `troupe node` processes on 127.0.0.1: a stopping
//! node turns `/readyz` red at once and keeps serving through its drain, closing each
//! connection after its response; the survivors of a crashed node stay ready while they take
//! its shards over, so a load balancer always has a node to send to.

mod support;

use std::time::{Duration, Instant};

use support::{cluster_lock, TestCluster};

/// Generous bound for a loaded CI machine.
const SETTLE: Duration = Duration::from_secs(60);

/// `(status, Connection header)` of a GET on `url`.
async fn probe(http: &reqwest::Client, url: &str) -> Option<(u16, Option<String>)> {
    let response = http.get(url).send().await.ok()?;
    let connection = response
        .headers()
        .get(reqwest::header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Some((response.status().as_u16(), connection))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_turns_unready_and_serves_its_drain_closing_each_connection() {
    let _guard = cluster_lock().await;
    let mut cluster =
        TestCluster::start_with(1, &[("replication_factor", "1"), ("drain_ms", "5000")]);
    cluster.wait_ready(&[0], SETTLE).await;
    let http = reqwest::Client::new();
    let (ready, open) = probe(&http, &cluster.nodes[0].url("/readyz"))
        .await
        .expect("readyz");
    assert_eq!(
        (ready, open.as_deref()),
        (200, None),
        "a serving node keeps connections open"
    );

    cluster.nodes[0].signal_terminate();
    let deadline = Instant::now() + SETTLE;
    loop {
        match probe(&http, &cluster.nodes[0].url("/readyz")).await {
            Some((503, _)) => break,
            Some((200, _)) => {}
            other => panic!("the node stopped answering before its drain: {other:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed green after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Still draining: it answers, and closes the connection after the answer. (A node alone
    // has handed its shards to no one: the API is tried through a drain in `migration.rs`.)
    let answer = probe(&http, &cluster.nodes[0].url("/healthz")).await;
    assert_eq!(
        answer,
        Some((200, Some("close".to_owned()))),
        "served during the drain"
    );
    let status = tokio::task::block_in_place(|| cluster.nodes[0].wait_exit(SETTLE));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after the drain: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivors_of_a_killed_node_stay_ready_while_they_take_its_shards_over() {
    let _guard = cluster_lock().await;
    let mut cluster = TestCluster::start(3);
    cluster.wait_ready(&[0, 1, 2], SETTLE).await;
    let http = reqwest::Client::new();
    let dead = cluster.nodes[2].id.clone();
    cluster.nodes[2].kill();

    // Until both survivors own all its shards between them and serve every shard they own,
    // neither may answer `/readyz` with anything but 200.
    let deadline = Instant::now() + SETTLE;
    let mut probes = 0;
    loop {
        for i in [0, 1] {
            let answer = probe(&http, &cluster.nodes[i].url("/readyz")).await;
            assert_eq!(
                answer.map(|a| a.0),
                Some(200),
                "node {i} unready during the takeover"
            );
            probes += 1;
        }
        let mut settled = true;
        for i in [0, 1] {
            let (_, view) = cluster.get(i, "/cluster").await.expect("cluster view");
            let shards = view["shards"].as_array().cloned().unwrap_or_default();
            settled &= !shards.is_empty()
                && shards
                    .iter()
                    .all(|s| s["owner"].as_str().is_some_and(|o| o != dead));
            let (_, copies) = cluster.get(i, "/cluster/shards").await.expect("copies");
            let copies = copies.as_array().cloned().unwrap_or_default();
            settled &= copies
                .iter()
                .filter(|c| c["role"] == "owner")
                .all(|c| c["serving"] == true);
        }
        if settled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the survivors never took the shards over"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("measured: {probes} readiness probes during the takeover, all 200");
}
