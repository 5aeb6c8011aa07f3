//! Shards following membership under a mixed workload (users, sessions, jobs, parties), against
//! real `troupe node` processes on 127.0.0.1: a rolling restart by SIGTERM with graceful
//! hand-off, growing 3 → 4 → 5 nodes then shrinking back, and a node killed and restarted
//! within the re-replication delay (no copies to the other nodes). No request may fail (an error
//! retried successfully within 1 s counts as retried), no acknowledged write may be lost, and
//! session caps hold. Each test prints what it measured (`-- --nocapture`).

mod support;

use std::time::Duration;

use serde_json::Value;
use support::workload::{Mix, Nodes, Report, Workload, CAP};
use support::{cluster_lock, TestCluster};

/// Generous bound for joins, hand-offs and a loaded CI machine.
const SETTLE: Duration = Duration::from_secs(60);
/// Longest a node may take to hand off and exit after SIGTERM.
const EXIT_WITHIN: Duration = Duration::from_secs(40);
/// Client tasks of the workload.
const CLIENTS: usize = 6;

/// Short jobs, so they finish within the test; a short re-replication delay.
const OVERRIDES: &[(&str, &str)] = &[
    ("min_duration_ms", "200"),
    ("max_duration_ms", "800"),
    ("timeout_ms", "1000"),
    ("re_replication_delay_ms", "1000"),
];

fn nodes_of(cluster: &TestCluster) -> Nodes {
    Nodes::new(cluster.nodes.iter().map(|n| n.url("")).collect())
}

/// The owner of every shard as node `i` sees it.
async fn owners(cluster: &TestCluster, i: usize) -> Vec<String> {
    let (_, view) = cluster.get(i, "/cluster").await.expect("cluster view");
    view["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| s["owner"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn moved(before: &[String], after: &[String]) -> usize {
    before.iter().zip(after).filter(|(b, a)| b != a).count()
}

/// Stops sending to node `i` (as a load balancer drains it), SIGTERMs it and expects a clean
/// exit after a logged hand-off. Requests it already took, and forwarded ones, it still serves.
fn leave(cluster: &mut TestCluster, nodes: &Nodes, i: usize) {
    nodes.set_up(i, false);
    terminate(cluster, i);
}

/// SIGTERMs node `i` and expects a clean exit after a logged hand-off.
fn terminate(cluster: &mut TestCluster, i: usize) {
    let status = tokio::task::block_in_place(|| cluster.nodes[i].terminate(EXIT_WITHIN));
    let log = cluster.nodes[i].log_text();
    assert!(
        status.is_some_and(|s| s.success()),
        "node {i} did not exit 0 within {EXIT_WITHIN:?} after SIGTERM: {status:?}"
    );
    assert!(
        log.contains("hand-off complete"),
        "node {i} did not log a complete hand-off:\n{}",
        log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
}

/// Checks the workload's report against what the cluster now answers: no failed operation,
/// nothing lost.
async fn check(cluster: &TestCluster, live: usize, report: &Report) {
    println!("measured: {}", report.summary());
    assert!(
        report.failed.is_empty(),
        "failed operations: {:#?}",
        report.failed
    );
    check_nothing_lost(cluster, live, report).await;
}

/// Every acknowledged write reads back, and session counts never passed the cap.
async fn check_nothing_lost(cluster: &TestCluster, live: usize, report: &Report) {
    assert!(
        report.ok > 100,
        "the workload barely ran: {}",
        report.summary()
    );
    assert!(
        report.session_counts_seen.iter().all(|&c| c <= CAP),
        "a session count exceeded the cap: {:?}",
        report.session_counts_seen
    );
    for (n, (id, name)) in report.users.iter().enumerate() {
        let (status, user) = cluster
            .get(n % live, &format!("/api/user/{id}"))
            .await
            .expect("read user");
        assert_eq!(
            (status, &user["name"]),
            (200, &Value::from(name.as_str())),
            "user {id}"
        );
    }
    for (n, (user, count)) in report.sessions.iter().enumerate() {
        let (_, body) = cluster
            .get(n % live, &format!("/sessions/{user}"))
            .await
            .expect("sessions");
        assert_eq!(body["active_sessions"], *count, "sessions of {user}");
    }
    for (n, job) in report.jobs.iter().enumerate() {
        let (status, body) = cluster
            .get(n % live, &format!("/jobs/{job}"))
            .await
            .expect("job");
        assert_eq!(status, 200, "job {job}: {body}");
    }
    for (n, (code, devices)) in report.parties.iter().enumerate() {
        let path = format!("/parties/{code}/participants");
        let (status, body) = cluster.get(n % live, &path).await.expect("party");
        let text = body.to_string();
        assert_eq!(status, 200, "party {code}: {body}");
        for device in devices {
            assert!(
                text.contains(device.as_str()),
                "party {code} lost {device}: {body}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_a_mixed_workload_fails_no_request_and_loses_nothing() {
    let _guard = cluster_lock().await;
    let mut cluster = TestCluster::start_with(3, OVERRIDES);
    cluster.wait_ready(&[0, 1, 2], SETTLE).await;
    let nodes = nodes_of(&cluster);
    for i in 0..3 {
        nodes.set_up(i, true);
    }
    let workload = Workload::start(&nodes, CLIENTS);
    for i in 0..3 {
        leave(&mut cluster, &nodes, i);
        cluster.start_node(i);
        cluster.wait_ready(&[0, 1, 2], SETTLE).await;
        nodes.set_up(i, true);
    }
    let report = workload.stop().await;
    check(&cluster, 3, &report).await;
}

/// Clients that are never told which node stops, as behind a load balancer that has not probed
/// yet. Each sends to a random node and, on a refused connection, fails over to another. A
/// stopping node keeps serving through its drain, closing each connection after its response,
/// and takes the connections already queued before it closes its port: no request may be cut
/// off after it was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_through_failing_over_clients_cuts_off_no_sent_request() {
    let _guard = cluster_lock().await;
    let overrides: Vec<(&str, &str)> = OVERRIDES
        .iter()
        .copied()
        .chain([("drain_ms", "1000")])
        .collect();
    let mut cluster = TestCluster::start_with(3, &overrides);
    cluster.wait_ready(&[0, 1, 2], SETTLE).await;
    let nodes = Nodes::all_up(cluster.nodes.iter().map(|n| n.url("")).collect());
    let workload = Workload::start(&nodes, CLIENTS);
    for i in 0..3 {
        terminate(&mut cluster, i);
        // Restart only once a client has been refused by the stopped node and failed over.
        let refused = nodes.refused();
        let deadline = std::time::Instant::now() + SETTLE;
        while nodes.refused() == refused {
            assert!(
                std::time::Instant::now() < deadline,
                "no client met node {i} down"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cluster.start_node(i);
        cluster.wait_ready(&[0, 1, 2], SETTLE).await;
    }
    let report = workload.stop().await;
    assert!(
        report.lost_after_send.is_empty(),
        "requests cut off after they were sent: {:#?}",
        report.lost_after_send
    );
    check(&cluster, 3, &report).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_to_five_nodes_and_shrinking_back_moves_about_the_ideal_share_and_loses_nothing() {
    let _guard = cluster_lock().await;
    let mut cluster =
        TestCluster::plan_with(5, "integration-test-secret-at-least-32-bytes", OVERRIDES);
    for i in 0..3 {
        cluster.start_node(i);
    }
    cluster.wait_ready(&[0, 1, 2], SETTLE).await;
    let nodes = nodes_of(&cluster);
    for i in 0..3 {
        nodes.set_up(i, true);
    }
    let shards = owners(&cluster, 0).await.len();
    let workload = Workload::start(&nodes, CLIENTS);
    let mut moves = Vec::new();
    for joining in [3, 4] {
        let before = owners(&cluster, 0).await;
        cluster.start_node(joining);
        let members: Vec<usize> = (0..=joining).collect();
        cluster.wait_ready(&members, SETTLE).await;
        nodes.set_up(joining, true);
        let count = moved(&before, &owners(&cluster, 0).await);
        moves.push((
            format!("join of n{}", joining + 1),
            count,
            shards / members.len(),
        ));
    }
    for leaving in [4, 3] {
        let before = owners(&cluster, 0).await;
        let held = before
            .iter()
            .filter(|o| **o == cluster.nodes[leaving].id)
            .count();
        leave(&mut cluster, &nodes, leaving);
        let members: Vec<usize> = (0..leaving).collect();
        cluster.wait_ready(&members, SETTLE).await;
        let count = moved(&before, &owners(&cluster, 0).await);
        moves.push((format!("leave of n{}", leaving + 1), count, held));
    }
    let report = workload.stop().await;
    for (what, count, ideal) in &moves {
        println!("measured: {what} moved {count} of {shards} shard owners (ideal {ideal})");
    }
    check(&cluster, 3, &report).await;
    for (what, count, ideal) in &moves {
        assert!(
            *count <= ideal + ideal / 2 + 2,
            "{what} moved {count} owners, ideal {ideal}"
        );
    }
}

/// Creates `count` users through nodes 0..3, 8 at a time, retrying 503s.
async fn preload_users(cluster: &TestCluster, count: usize) {
    use futures_util::stream::{self, StreamExt};
    stream::iter(0..count)
        .for_each_concurrent(8, |i| async move {
            let body = serde_json::json!({
                "id": format!("00000000-0000-4000-9000-{i:012}"),
                "name": format!("preloaded {i}"),
                "email": format!("p{i}@example.com"),
                "group": i % 10,
            });
            let deadline = std::time::Instant::now() + SETTLE;
            loop {
                let (status, answer) = cluster
                    .send(
                        i % 3,
                        reqwest::Method::POST,
                        "/api/user",
                        Some(body.clone()),
                    )
                    .await;
                match status {
                    201 => return,
                    409 if answer.to_string().contains("exists") => return,
                    503 if std::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    _ => panic!("preloading user {i}: {status} {answer}"),
                }
            }
        })
        .await;
}

/// The shards a node's log says were pre-copied to it before it joined.
fn pre_copied(log: &str) -> Vec<u32> {
    log.lines()
        .find(|line| line.contains("pre-copy complete"))
        .and_then(|line| line.split_once("copied="))
        .map(|(_, rest)| {
            rest.split_whitespace()
                .map_while(|word| word.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_holds_its_shards_before_they_switch_to_it() {
    let _guard = cluster_lock().await;
    let mut cluster =
        TestCluster::plan_with(4, "integration-test-secret-at-least-32-bytes", OVERRIDES);
    for i in 0..3 {
        cluster.start_node(i);
    }
    cluster.wait_ready(&[0, 1, 2], SETTLE).await;
    // Enough users that every hash shard has more than its log holds: a snapshot to copy.
    preload_users(&cluster, 4_000).await;
    let nodes = nodes_of(&cluster);
    for i in 0..3 {
        nodes.set_up(i, true);
    }
    let workload = Workload::start(&nodes, CLIENTS);
    cluster.start_node(3);
    cluster.wait_ready(&[0, 1, 2, 3], SETTLE).await;
    nodes.set_up(3, true);
    let report = workload.stop().await;

    let log = cluster.nodes[3].log_text();
    let (joining, joined) = log
        .split_once("joined the cluster")
        .expect("n4 logged that it joined");
    let copied = pre_copied(joining);
    let (_, view) = cluster.get(3, "/cluster").await.expect("cluster view");
    let me = &cluster.nodes[3].id;
    let held: Vec<u32> = view["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .filter(|s| {
            s["owner"] == me.as_str()
                || s["replicas"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|n| n == me.as_str()))
        })
        .filter_map(|s| s["shard"].as_u64().map(|n| n as u32))
        .collect();
    let snapshots_after = joined.matches("installing a snapshot").count();
    println!(
        "measured: n4 was pre-copied {} shards and holds {} of them after joining; \
         {snapshots_after} snapshots installed after it joined; {}",
        copied.len(),
        held.len(),
        report.summary()
    );
    assert!(!held.is_empty(), "n4 holds no shard: {view}");
    let missing: Vec<&u32> = held.iter().filter(|s| !copied.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "n4 holds shards it was not pre-copied: {missing:?} (pre-copied {copied:?})"
    );
    assert!(
        joining.matches("installing a snapshot").count() > 0,
        "the pre-copy installed no snapshot: the test has no data to move"
    );
    assert_eq!(
        snapshots_after, 0,
        "n4 took a snapshot after it joined: a switch waited for a full copy"
    );
    check(&cluster, 4, &report).await;
}

fn snapshot_installs(cluster: &TestCluster, i: usize) -> usize {
    cluster.nodes[i]
        .log_text()
        .matches("installing a snapshot")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_and_back_within_the_delay_causes_no_copy_to_other_nodes() {
    let _guard = cluster_lock().await;
    let overrides = [("re_replication_delay_ms", "60000")];
    let mut cluster = TestCluster::start_with(3, &overrides);
    cluster.wait_ready(&[0, 1, 2], SETTLE).await;
    let nodes = nodes_of(&cluster);
    for i in 0..3 {
        nodes.set_up(i, true);
    }
    let workload = Workload::start_mix(&nodes, CLIENTS, Mix::UserWrites);
    let installs_before = [
        snapshot_installs(&cluster, 0),
        snapshot_installs(&cluster, 1),
    ];

    nodes.set_up(2, false);
    cluster.nodes[2].kill();
    cluster.wait_ready(&[0, 1], SETTLE).await;
    // The survivors serve n3's shards and hold back its replacement, as /cluster shows.
    let waiting = cluster
        .wait_for("replicas waiting on n1 or n2", SETTLE, || async {
            let mut waiting = 0;
            for i in 0..2 {
                let (_, view) = cluster.get(i, "/cluster").await.ok()?;
                waiting += view["transit"]
                    .as_array()?
                    .iter()
                    .filter(|t| t["state"] == "replicas-waiting")
                    .count();
            }
            (waiting > 0).then_some(waiting)
        })
        .await;
    cluster.start_node(2);
    cluster.wait_ready(&[0, 1, 2], SETTLE).await;
    nodes.set_up(2, true);
    let report = workload.stop().await;
    println!("measured: {waiting} shards held their replacement replica back while n3 was away");
    println!("measured: {}", report.summary());
    check_nothing_lost(&cluster, 3, &report).await;
    let installs_after = [
        snapshot_installs(&cluster, 0),
        snapshot_installs(&cluster, 1),
    ];
    assert_eq!(
        installs_after, installs_before,
        "n1 and n2 installed snapshots for a node that came back within the delay"
    );
}
