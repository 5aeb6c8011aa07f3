//! Real `troupe node` processes on 127.0.0.1: convergence, forwarding to owners, failure
//! detection, rejoin as a new generation, authentication and clean shutdown.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{cluster_lock, TestCluster, GOSSIP_INTERVAL_MS};

/// How long a dead node may take to be detected: phi (8) heartbeat intervals plus a few gossip
/// rounds for the verdict to be computed and the new table published, doubled for a loaded CI
/// machine.
fn detection_bound() -> Duration {
    Duration::from_millis(2 * (8 * GOSSIP_INTERVAL_MS + 4 * GOSSIP_INTERVAL_MS))
}

/// The shard table of `/cluster` if it lists exactly `expected` as live, ready members and every
/// shard has an owner.
fn settled_table(view: &Value, expected: &[&str]) -> Option<Value> {
    let live_ready: Vec<&str> = view["members"]
        .as_array()?
        .iter()
        .filter(|m| m["live"] == true && m["status"] == "ready")
        .filter_map(|m| m["node_id"].as_str())
        .collect();
    let shards = view["shards"].as_array()?;
    let owned = shards
        .iter()
        .all(|s| s["owner"].as_str().is_some_and(|o| expected.contains(&o)));
    (live_ready == expected && owned && !shards.is_empty()).then(|| view["shards"].clone())
}

/// Polls until every node in `nodes` reports the same settled table over `expected` members.
async fn wait_agreement(
    cluster: &TestCluster,
    nodes: &[usize],
    expected: &[&str],
    within: Duration,
) -> Value {
    let what = format!("nodes {nodes:?} to agree on members {expected:?}");
    cluster
        .wait_for(&what, within, || async {
            let mut tables = Vec::new();
            for &i in nodes {
                let (status, view) = cluster.get(i, "/cluster").await.ok()?;
                tables.push(
                    (status == 200)
                        .then(|| settled_table(&view, expected))
                        .flatten()?,
                );
            }
            tables
                .windows(2)
                .all(|w| w[0] == w[1])
                .then(|| tables[0].clone())
        })
        .await
}

/// A key whose shard `node` owns.
async fn key_owned_by(cluster: &TestCluster, node: &str) -> String {
    for key in (0..1000).map(|k| format!("probe-{k}")) {
        let (_, body) = cluster
            .get(0, &format!("/cluster/locate/user/{key}"))
            .await
            .expect("locate");
        if body["owner"] == node {
            return key;
        }
    }
    panic!("no key owned by {node} among 1000 probes");
}

/// Node `node`'s entry in a dashboard view (`/ui/data`).
fn dashboard_entry<'a>(view: &'a Value, node: &str) -> &'a Value {
    view["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["node"] == node))
        .unwrap_or_else(|| panic!("{node} not on the dashboard: {view}"))
}

fn generation_of(view: &Value, node: &str) -> Option<u64> {
    view["members"]
        .as_array()?
        .iter()
        .find(|m| m["node_id"] == node)?["generation"]
        .as_u64()
}

/// Every family a node exports has a row in docs/METRICS.md. (The converse cannot be read off
/// one scrape: a labelled family shows up only once it has a series.)
fn every_metric_is_documented(metrics: &str) {
    let table = include_str!("../../docs/METRICS.md");
    let exported: Vec<&str> = metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# HELP "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    for name in &exported {
        assert!(
            table.contains(&format!("| `{name}`")),
            "{name} is exported but not in docs/METRICS.md"
        );
    }
}

/// Runs the `troupe` binary as an operator would and returns what it printed.
fn troupe(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_troupe"))
        .args(args)
        .output()
        .expect("troupe runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "troupe {args:?} failed: {}{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

/// Whether `troupe status` shows a settled cluster of three: every member ready, live, holding
/// the lease, nothing in transit, one owner per shard and no view that differs.
fn settled_status(status: &str, shards: usize) -> bool {
    // The table runs from its header to the first blank line.
    let rows: Vec<Vec<&str>> = status
        .lines()
        .skip_while(|l| !l.starts_with("NODE"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    // NODE REGION STATUS LIVE GENERATION OWNS REPLICAS LEASE TRANSIT
    let owned: usize = rows
        .iter()
        .filter_map(|r| r.get(5)?.parse::<usize>().ok())
        .sum();
    rows.len() == 3
        && rows
            .iter()
            .all(|r| r.len() == 9 && (r[2], r[3], r[7], r[8]) == ("ready", "yes", "held", "0"))
        && owned == shards
        && status.contains("no shard in transit")
        && !status.contains("note:")
}

/// Whether `troupe explain` names `owner` and shows it serving under an epoch of its own.
fn settled_explain(explained: &str, owner: &str, shard: &str) -> bool {
    explained.contains(&format!("shard      {shard} of"))
        && explained.contains(&format!("owner      {owner}"))
        && explained.lines().any(|l| {
            l.starts_with("epoch")
                && l.contains(&format!("@{owner} (applied"))
                && l.ends_with("serving: true)")
        })
        && explained.contains(&format!("served by  {owner}"))
        && !explained.contains("note:")
}

/// `troupe status` and `troupe explain user` against the running cluster, as an operator runs
/// them: once the cluster settles, both describe it exactly.
async fn status_and_explain_describe_the_running_cluster(cluster: &TestCluster) {
    const USER: &str = "0190c0de-0000-7000-8000-000000000042";
    let url = cluster.nodes[1].url("");
    let (_, view) = cluster.get(1, "/cluster").await.expect("view");
    let shards = view["shards"].as_array().expect("shards").len();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, located) = cluster
            .get(1, &format!("/cluster/locate/user/{USER}"))
            .await
            .expect("locate");
        let owner = located["owner"].as_str().unwrap_or("none").to_owned();
        let status = troupe(&["status", "--url", &url]);
        let explained = troupe(&["explain", "user", USER, "--url", &url]);
        if settled_status(&status, shards)
            && settled_explain(&explained, &owner, &located["shard"].to_string())
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster did not settle in status or explain:\n{status}\n{explained}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_forward_to_owners_detect_a_killed_node_and_rejoin_it_as_a_new_generation(
) {
    let _serial = cluster_lock().await;
    let started = Instant::now();
    let mut cluster = TestCluster::start(3);
    let table = wait_agreement(
        &cluster,
        &[0, 1, 2],
        &["n1", "n2", "n3"],
        Duration::from_secs(60),
    )
    .await;
    println!(
        "measured: 3 nodes converged {} ms after start",
        started.elapsed().as_millis()
    );
    let owners: Vec<&str> = table
        .as_array()
        .expect("shards")
        .iter()
        .filter_map(|s| s["owner"].as_str())
        .collect();
    for node in ["n1", "n2", "n3"] {
        assert!(owners.contains(&node), "{node} owns no shard: {owners:?}");
    }

    // Every node locates every key at the same owner, and the owner itself served the call.
    let mut forwarded = 0;
    for key in (0..30).map(|k| format!("user-{k}")) {
        let mut seen = BTreeMap::new();
        for i in 0..3 {
            let (status, body) = cluster
                .get(i, &format!("/cluster/locate/user/{key}"))
                .await
                .expect("locate");
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["served_by"], body["owner"], "{body}");
            assert_eq!(body["kind"], "user");
            assert_eq!(body["key"], key.as_str());
            if body["owner"] != cluster.nodes[i].id.as_str() {
                forwarded += 1;
            }
            seen.insert(i, body["owner"].clone());
        }
        assert!(
            seen.values().all(|o| *o == seen[&0]),
            "owners disagree for {key}: {seen:?}"
        );
    }
    assert!(
        forwarded > 0,
        "no call needed forwarding: the test proves nothing"
    );

    // Bad input and unknown routes answer JSON errors.
    let (status, body) = cluster.get(0, "/nope").await.expect("404 is json");
    assert_eq!((status, body["message"].is_string()), (404, true));
    let response = cluster
        .http
        .post(cluster.nodes[0].url("/cluster"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 405);
    let body: Value = response.json().await.expect("405 is json");
    assert!(body["message"].is_string(), "{body}");
    let long_key = "k".repeat(300);
    let (status, body) = cluster
        .get(0, &format!("/cluster/locate/user/{long_key}"))
        .await
        .expect("400 is json");
    assert_eq!((status, body["message"].is_string()), (400, true), "{body}");
    let metrics = cluster
        .http
        .get(cluster.nodes[0].url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for family in [
        "troupe_forwards_total",
        "troupe_http_requests_total",
        "troupe_members{status=\"ready\"} 3",
        "troupe_units{role=\"owner\"}",
        "troupe_lease_held 1",
        // What waits at the owners (no job runs here, so no timer is late).
        "troupe_shard_queue_depth_max ",
        "troupe_shard_timers_overdue 0",
        "troupe_shard_sweep_commands ",
        "troupe_storage_write_queue ",
        // Lease checks every round: every node has called its peers on the control lane.
        "troupe_rpc_call_duration_seconds_count{peer=\"n2\",lane=\"control\",outcome=\"ok\"}",
    ] {
        assert!(
            metrics.lines().any(|line| line.starts_with(family)),
            "no metrics line starts with {family}:\n{metrics}"
        );
    }
    every_metric_is_documented(&metrics);
    status_and_explain_describe_the_running_cluster(&cluster).await;

    // The dashboard served by one node shows every node's own request statistics: each one
    // answered locate calls above.
    let (status, dashboard) = cluster.get(1, "/ui/data").await.expect("dashboard data");
    assert_eq!(status, 200, "{dashboard}");
    for node in ["n1", "n2", "n3"] {
        let routes = &dashboard_entry(&dashboard, node)["report"]["requests"]["routes"];
        let located = routes.as_array().is_some_and(|routes| {
            routes.iter().any(|r| {
                r["route"] == "/cluster/locate/{kind}/{key}" && r["requests"].as_u64() > Some(0)
            })
        });
        assert!(located, "{node} reports no locate calls: {routes}");
    }
    assert!(dashboard["shards"]
        .as_array()
        .is_some_and(|s| s.len() >= 64));

    // SIGKILL n3: the others mark it dead and take over its shards.
    let (_, before) = cluster.get(0, "/cluster").await.expect("view");
    let old_generation = generation_of(&before, "n3").expect("n3 listed");
    let n3_key = key_owned_by(&cluster, "n3").await;
    cluster.nodes[2].kill();
    let killed = Instant::now();
    // A request for one of n3's keys right away waits out failure detection and is served by
    // the next owner, within the forward budget (5 s), with no error.
    let (status, body) = cluster
        .get(0, &format!("/cluster/locate/user/{n3_key}"))
        .await
        .expect("locate");
    assert_eq!(status, 200, "{body}");
    assert!(
        body["owner"] != "n3" && body["served_by"] == body["owner"],
        "{body}"
    );
    println!(
        "measured: request for a key of the killed node answered by {} after {} ms",
        body["owner"],
        killed.elapsed().as_millis()
    );
    wait_agreement(
        &cluster,
        &[0, 1],
        &["n1", "n2"],
        detection_bound() + Duration::from_secs(10),
    )
    .await;
    let detection = killed.elapsed();
    println!(
        "measured: n3 detected dead and its shards reassigned after {} ms (bound {} ms)",
        detection.as_millis(),
        detection_bound().as_millis()
    );
    assert!(
        detection <= detection_bound(),
        "detection took {detection:?}, more than {:?}",
        detection_bound()
    );
    let (_, view) = cluster.get(0, "/cluster").await.expect("view");
    let n3 = view["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["node_id"] == "n3")
        .expect("dead n3 still listed");
    assert_eq!(n3["live"], false);
    // The dashboard shows n3 dead, without a report, and its shards sealed by their new owners.
    cluster
        .wait_for(
            "the dashboard to show n3 died and its shards taken over",
            Duration::from_secs(30),
            || async {
                let (_, view) = cluster.get(0, "/ui/data").await.ok()?;
                let events = view["events"].as_array()?;
                let died = events
                    .iter()
                    .any(|e| e["kind"] == "died" && e["member"] == "n3");
                let taken = events
                    .iter()
                    .any(|e| e["kind"] == "sealed" && e["old_owner"] == "n3");
                let entry = dashboard_entry(&view, "n3");
                (died && taken && entry["report"].is_null() && entry["error"].is_string())
                    .then_some(())
            },
        )
        .await;
    // n3's shards changed owner, each logged once at info by its new owner with the shard,
    // both owners and the epoch.
    let changes: Vec<String> = (0..2)
        .flat_map(|i| {
            cluster.nodes[i]
                .log_text()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|line| line.contains("ownership changed") && line.contains("old_owner=n3"))
        .collect();
    assert!(!changes.is_empty(), "no ownership change from n3 logged");
    let mut shards = std::collections::BTreeSet::new();
    for line in &changes {
        let fields = ["shard=", "new_owner=n", "epoch="];
        assert!(
            line.contains("INFO") && fields.iter().all(|f| line.contains(f)),
            "{line}"
        );
        let shard = line
            .split("shard=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next());
        assert!(
            shards.insert(shard.map(str::to_owned)),
            "logged twice: {line}"
        );
    }
    for key in (0..10).map(|k| format!("user-{k}")) {
        let (status, body) = cluster
            .get(1, &format!("/cluster/locate/user/{key}"))
            .await
            .expect("locate");
        assert_eq!(status, 200, "{body}");
        assert_ne!(body["owner"], "n3");
    }

    // Restart n3 on the same data directory: it rejoins as a new generation.
    cluster.start_node(2);
    wait_agreement(
        &cluster,
        &[0, 1, 2],
        &["n1", "n2", "n3"],
        Duration::from_secs(60),
    )
    .await;
    let (_, after) = cluster.get(0, "/cluster").await.expect("view");
    let new_generation = generation_of(&after, "n3").expect("n3 listed");
    assert!(
        new_generation > old_generation,
        "generation {new_generation} is not above {old_generation}"
    );

    // SIGTERM: each node leaves cleanly with exit status 0.
    for i in (0..3).rev() {
        let status = cluster.nodes[i]
            .terminate(Duration::from_secs(30))
            .expect("node stops within 30 s");
        assert!(
            status.success(),
            "node {} exited with {status}",
            cluster.nodes[i].id
        );
        assert!(cluster.nodes[i].log_text().contains("stopped cleanly"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_a_wrong_secret_shard_count_or_party_managers_are_refused_and_exit_instead_of_starting_alone(
) {
    let _serial = cluster_lock().await;
    let mut cluster = TestCluster::start(2);
    let seeds: Vec<u16> = cluster.nodes.iter().map(|n| n.gossip_port).collect();
    let mut rogue = TestCluster::plan(1, "not-the-cluster-secret-but-32-bytes-long");
    rogue.nodes[0].id = "rogue".into();
    rogue.nodes[0].seeds = seeds.clone();
    rogue.start_node(0);
    let mut misfit = TestCluster::plan_with(
        1,
        "integration-test-secret-at-least-32-bytes",
        &[("shards", "32")],
    );
    misfit.nodes[0].id = "misfit".into();
    misfit.nodes[0].seeds = seeds.clone();
    misfit.start_node(0);
    // Same shard count, other party managers: it would place the manager shards elsewhere.
    let mut stranger = TestCluster::plan_with(
        1,
        "integration-test-secret-at-least-32-bytes",
        &[("managers_per_region", "2")],
    );
    stranger.nodes[0].id = "stranger".into();
    stranger.nodes[0].seeds = seeds;
    stranger.start_node(0);
    wait_agreement(&cluster, &[0, 1], &["n1", "n2"], Duration::from_secs(60)).await;
    for reason in [
        // Gossip is sealed (decision 019): the rogue's datagrams never reach chitchat.
        "dropping gossip datagrams that do not open with the cluster secret",
        "different cluster.shards",
        "different [[regions]] table or party managers",
    ] {
        cluster
            .wait_for(
                &format!("a node refused and logged: {reason}"),
                Duration::from_secs(30),
                || async { cluster.nodes[0].log_text().contains(reason).then_some(()) },
            )
            .await;
    }
    let (_, view) = cluster.get(0, "/cluster").await.expect("view");
    assert!(
        ["rogue", "misfit", "stranger"]
            .iter()
            .all(|id| !view.to_string().contains(id)),
        "{view}"
    );
    // Each heard only nodes it refuses: it must not serve as a second, one-node cluster.
    for outsider in [&mut rogue, &mut misfit, &mut stranger] {
        let node = &mut outsider.nodes[0];
        let status = node
            .wait_exit(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{} kept running alone", node.id));
        assert!(!status.success(), "{} exited with {status}", node.id);
        let log = node.log_text();
        assert!(
            log.contains("no node of this cluster answered through the seeds")
                && !log.contains("no peer reachable through the seeds"),
            "{}: {log}",
            node.id
        );
    }
    cluster.nodes[1].kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_to_a_dead_owner_gives_503_with_retry_after_once_the_budget_is_spent() {
    let _serial = cluster_lock().await;
    // A budget much shorter than failure detection (about 2 s here).
    let mut cluster = TestCluster::start_with(2, &[("forward_budget_ms", "300")]);
    wait_agreement(&cluster, &[0, 1], &["n1", "n2"], Duration::from_secs(60)).await;
    let key = key_owned_by(&cluster, "n2").await;
    cluster.nodes[1].kill();
    let asked = Instant::now();
    let response = cluster
        .http
        .get(cluster.nodes[0].url(&format!("/cluster/locate/user/{key}")))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 503);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "the budget was not respected: {:?}",
        asked.elapsed()
    );
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_eq!(retry_after.as_deref(), Some("1"));
    let body: Value = response.json().await.expect("json body");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("unavailable")),
        "{body}"
    );
}
