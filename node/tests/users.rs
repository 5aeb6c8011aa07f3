//! The users service on replicated shards, against real `troupe node` processes on 127.0.0.1:
//! the HTTP contract through every node, reads through a SIGKILL, catch-up of a restarted node
//! checked by per-shard digests, and no acknowledged write lost under concurrent writers.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{cluster_lock, user, TestCluster, GOSSIP_INTERVAL_MS};

/// Failure detection plus re-sealing, doubled for a loaded CI machine.
fn recovery_bound() -> Duration {
    Duration::from_millis(2 * (12 * GOSSIP_INTERVAL_MS) + 10_000)
}

/// Creates users `range` through the nodes in turn, retrying 503s (not acknowledged), and
/// panics on anything else but 201.
async fn create_users(cluster: &TestCluster, nodes: &[usize], range: std::ops::Range<usize>) {
    for i in range {
        let node = nodes[i % nodes.len()];
        let deadline = Instant::now() + recovery_bound();
        loop {
            let (status, body) = cluster
                .send(node, reqwest::Method::POST, "/api/user", Some(user(i)))
                .await;
            match status {
                201 => break,
                // Retried create whose first attempt was applied but not acknowledged.
                409 if body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("exists")) =>
                {
                    break
                }
                503 | 0 if Instant::now() < deadline => continue,
                _ => panic!("create {i} on node {node}: {status} {body}"),
            }
        }
    }
}

/// Every shard's copies agree: same digest and entity count on the owner and every replica
/// of the shard, as the cluster's table says.
async fn digests_agree(cluster: &TestCluster, nodes: &[usize]) -> Option<()> {
    let (_, view) = cluster.get(nodes[0], "/cluster").await.ok()?;
    let mut copies: BTreeMap<(u64, String), (String, u64)> = BTreeMap::new();
    for &i in nodes {
        let (status, list) = cluster.get(i, "/cluster/shards").await.ok()?;
        if status != 200 {
            return None;
        }
        for copy in list.as_array()? {
            let key = (copy["shard"].as_u64()?, cluster.nodes[i].id.clone());
            let value = (
                copy["digest"].as_str()?.to_owned(),
                copy["entities"].as_u64()?,
            );
            copies.insert(key, value);
        }
    }
    for shard in view["shards"].as_array()? {
        let number = shard["shard"].as_u64()?;
        let holders: Vec<String> = std::iter::once(shard["owner"].as_str()?.to_owned())
            .chain(
                shard["replicas"]
                    .as_array()?
                    .iter()
                    .filter_map(|r| r.as_str().map(str::to_owned)),
            )
            .collect();
        let digests: BTreeSet<&(String, u64)> = holders
            .iter()
            .map(|h| copies.get(&(number, h.clone())))
            .collect::<Option<_>>()?;
        if digests.len() != 1 {
            return None;
        }
    }
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_crud_list_and_count_behave_the_same_through_every_node() {
    let _guard = cluster_lock().await;
    let cluster = TestCluster::start(3);
    cluster.wait_ready(&[0, 1, 2], recovery_bound() * 2).await;
    create_users(&cluster, &[0, 1, 2], 0..30).await;

    let id = user(7)["id"].as_str().expect("id").to_owned();
    for node in 0..3 {
        let (status, body) = cluster
            .get(node, &format!("/api/user/{id}"))
            .await
            .expect("get");
        assert_eq!((status, body), (200, user(7)), "read through node {node}");
    }
    let (status, body) = cluster
        .send(1, reqwest::Method::POST, "/api/user/", Some(user(7)))
        .await;
    assert_eq!(status, 409, "{body}");
    let patch = json!({"id": id, "group": 99});
    let (status, body) = cluster
        .send(2, reqwest::Method::PUT, "/api/user", Some(patch))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["group"], 99);
    assert_eq!(body["name"], "user 7");
    let (status, _) = cluster
        .send(0, reqwest::Method::DELETE, &format!("/api/user/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = cluster
        .get(1, &format!("/api/user/{id}"))
        .await
        .expect("get");
    assert_eq!(status, 404);
    assert_eq!(body["message"], format!("no user with id: {id}"));

    let (_, count) = cluster.get(2, "/api/user/count").await.expect("count");
    assert_eq!(count, json!({"count": 29}));
    // Pages are ordered by id, stable, and cover every user exactly once.
    let mut seen = Vec::new();
    for offset in (0..29).step_by(10) {
        let (status, page) = cluster
            .get(offset % 3, &format!("/api/user?offset={offset}&limit=10"))
            .await
            .expect("list");
        assert_eq!(status, 200);
        assert_eq!(page["total"], 29);
        assert_eq!(page["offset"], offset);
        assert_eq!(page["limit"], 10);
        for u in page["users"].as_array().expect("users") {
            seen.push(u["id"].as_str().expect("id").to_owned());
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted, "ids in order, no duplicates");
    assert_eq!(seen.len(), 29);
    let (_, beyond) = cluster.get(0, "/api/user?offset=500").await.expect("list");
    assert_eq!(beyond["users"], json!([]));
    assert_eq!(beyond["total"], 29);
}

#[tokio::test]
async fn cursor_pages_cover_every_user_once_in_id_order_and_a_deep_offset_is_refused() {
    let _guard = cluster_lock().await;
    let cluster = TestCluster::start(3);
    cluster.wait_ready(&[0, 1, 2], recovery_bound() * 2).await;
    create_users(&cluster, &[0, 1, 2], 0..45).await;

    // Through every node in turn, 7 at a time, each page right after the previous one's last id.
    let mut seen: Vec<String> = Vec::new();
    let mut path = "/api/user?limit=7".to_owned();
    for page_number in 0.. {
        assert!(page_number < 10, "paging did not end: {seen:?}");
        let (status, page) = cluster.get(page_number % 3, &path).await.expect("list");
        assert_eq!(status, 200, "{path}: {page}");
        assert_eq!(page["total"], 45);
        assert_eq!(page["limit"], 7);
        for u in page["users"].as_array().expect("users") {
            seen.push(u["id"].as_str().expect("id").to_owned());
        }
        match page.get("next_after").and_then(|v| v.as_str()) {
            Some(last) => {
                assert_eq!(Some(last), seen.last().map(String::as_str));
                path = format!("/api/user?after={last}&limit=7");
            }
            None => break,
        }
    }
    let expected: Vec<String> = (0..45)
        .map(|i| user(i)["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(seen, expected, "every user once, in id order");

    // An id that is not stored is a position too: the page starts after where it would be.
    let (_, page) = cluster
        .get(
            1,
            "/api/user?after=00000000-0000-4000-8000-00000000000a&limit=2",
        )
        .await
        .expect("list");
    assert_eq!(page["users"][0]["id"], json!(expected[10]), "{page}");
    assert_eq!(page["users"][1]["id"], json!(expected[11]), "{page}");
    let (status, _) = cluster
        .get(1, "/api/user?after=not-an-id")
        .await
        .expect("list");
    assert_eq!(status, 400, "an after that is not a user id is refused");
    let (_, page) = cluster
        .get(1, &format!("/api/user?after={}&limit=2", expected[44]))
        .await
        .expect("list");
    assert_eq!(page["users"], json!([]));
    assert!(page.get("next_after").is_none(), "{page}");

    for offset in ["10001".to_owned(), u64::MAX.to_string()] {
        let (status, body) = cluster
            .get(2, &format!("/api/user?offset={offset}&limit=1000"))
            .await
            .expect("answered");
        assert_eq!(status, 400, "offset {offset}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("after="), "offset {offset}: {message}");
    }
    // A small offset still works and says where the next page starts.
    let (_, page) = cluster
        .get(0, "/api/user?offset=40&limit=3")
        .await
        .expect("list");
    let ids: Vec<&str> = page["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        expected[40..43]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert_eq!(page["next_after"], json!(expected[42]));
}

/// Ids of users whose shard is `shard` (of the default 64 hash shards).
fn ids_in_shard(shard: u32, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
        .filter(|id| troupe_node::placement::shard_for_key(id, 64).0 == shard)
        .take(n)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_to_one_shard_share_log_entries_and_each_sees_the_ones_before() {
    let _guard = cluster_lock().await;
    // No integer generators: their averages would add entries to the shards.
    let cluster = TestCluster::start_with(3, &[("generators", "0")]);
    cluster.wait_ready(&[0, 1, 2], recovery_bound() * 2).await;
    let shard = 5;
    let ids = ids_in_shard(shard, 48);
    for id in ids.iter().take(3) {
        let (_, located) = cluster
            .get(0, &format!("/cluster/locate/user/{id}"))
            .await
            .expect("locate");
        assert_eq!(located["shard"], shard, "{located}");
    }

    // Every id is created twice at once, through different nodes: all 96 creates reach the
    // owner together, so they are decided in batches, and the second create of an id must see
    // the first even when both are in one batch.
    let creates = ids.iter().enumerate().flat_map(|(i, id)| {
        let body = json!({"id": id, "name": format!("user {i}"), "email": "u@x", "group": i});
        [(i % 3, body.clone()), ((i + 1) % 3, body)]
    });
    let answers = futures_util::future::join_all(creates.map(|(node, body)| {
        let cluster = &cluster;
        async move {
            let (status, answer) = cluster
                .send(node, reqwest::Method::POST, "/api/user", Some(body.clone()))
                .await;
            (body["id"].as_str().map(str::to_owned), status, answer)
        }
    }))
    .await;
    let mut statuses: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    for (id, status, answer) in answers {
        assert!(matches!(status, 201 | 409), "{status} {answer}");
        statuses.entry(id.expect("id")).or_default().push(status);
    }
    for (id, mut pair) in statuses {
        pair.sort_unstable();
        assert_eq!(pair, [201, 409], "creates of {id}");
    }

    // Fewer entries than creates: some were committed together. Both copies agree.
    let mut held = Vec::new();
    for node in 0..3 {
        let (_, copies) = cluster.get(node, "/cluster/shards").await.expect("copies");
        let copies = copies.as_array().expect("copies");
        held.extend(
            copies
                .iter()
                .find(|c| c["shard"] == shard && c["role"] != "none")
                .cloned(),
        );
    }
    assert_eq!(held.len(), 2, "owner and replica: {held:?}");
    for c in &held {
        assert_eq!(c["entities"], 48, "{c}");
        let applied = c["applied"].as_u64().expect("applied");
        assert!(
            applied < 48,
            "48 creates took {applied} entries: none shared one"
        );
    }
    assert_eq!(held[0]["digest"], held[1]["digest"], "{held:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_user_stays_readable_when_a_node_is_killed_and_writes_resume() {
    let _guard = cluster_lock().await;
    let mut cluster = TestCluster::start(3);
    cluster.wait_ready(&[0, 1, 2], recovery_bound() * 2).await;
    let users = 200;
    create_users(&cluster, &[0, 1, 2], 0..users).await;

    cluster.nodes[1].kill();
    // Reads right after the kill, before the failure detector has decided anything.
    let mut latencies = Vec::new();
    for i in 0..users {
        let node = [0, 2][i % 2];
        let id = user(i)["id"].as_str().expect("id").to_owned();
        let started = Instant::now();
        let (status, body) = cluster
            .get(node, &format!("/api/user/{id}"))
            .await
            .expect("get");
        latencies.push(started.elapsed());
        assert_eq!(
            (status, body),
            (200, user(i)),
            "user {i} through node {node}"
        );
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "reads after SIGKILL: p50 {:?} p99 {p99:?} max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    assert!(p99 < Duration::from_millis(250), "read p99 {p99:?}");

    // Writes to every shard succeed again once the dead node is out of placement.
    let killed_at = Instant::now();
    create_users(&cluster, &[0, 2], users..users + 64).await;
    eprintln!(
        "writes resumed within {:?} of the kill",
        killed_at.elapsed()
    );
    let (_, count) = cluster.get(0, "/api/user/count").await.expect("count");
    assert_eq!(count["count"], users + 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_catches_up_on_restart_and_every_copy_of_every_shard_matches() {
    let _guard = cluster_lock().await;
    let mut cluster = TestCluster::start(3);
    cluster.wait_ready(&[0, 1, 2], recovery_bound() * 2).await;
    create_users(&cluster, &[0, 1, 2], 0..100).await;

    let status = cluster.nodes[2].terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "clean exit: {status:?}"
    );
    cluster.wait_ready(&[0, 1], recovery_bound() * 2).await;
    create_users(&cluster, &[0, 1], 100..250).await;
    for i in (0..100).step_by(3) {
        let id = user(i)["id"].as_str().expect("id").to_owned();
        let (status, _) = cluster
            .send(
                i % 2,
                reqwest::Method::DELETE,
                &format!("/api/user/{id}"),
                None,
            )
            .await;
        assert_eq!(status, 204, "delete {i}");
    }

    cluster.start_node(2);
    cluster.wait_ready(&[0, 1, 2], recovery_bound() * 2).await;
    cluster
        .wait_for(
            "every copy of every shard matches",
            recovery_bound(),
            || digests_agree(&cluster, &[0, 1, 2]),
        )
        .await;
    let expected = 250 - (0..100).step_by(3).count();
    for node in 0..3 {
        let (_, count) = cluster.get(node, "/api/user/count").await.expect("count");
        assert_eq!(count["count"], expected, "count through node {node}");
    }
    // The restarted node serves reads of users written while it was down.
    let id = user(200)["id"].as_str().expect("id").to_owned();
    let (status, body) = cluster
        .get(2, &format!("/api/user/{id}"))
        .await
        .expect("get");
    assert_eq!((status, body), (200, user(200)));
}

/// What the writers know of a user from acknowledged answers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Known {
    /// An unacknowledged write (503, timeout) leaves it open.
    Unknown,
    Absent,
    Present(u64),
}

/// One writer's step on user `i`: the request and what each answer means.
async fn write_step(
    http: &reqwest::Client,
    base: &str,
    i: usize,
    round: usize,
    known: Known,
) -> Known {
    let id = user(i)["id"].as_str().expect("id").to_owned();
    let group = (round * 10 + i) as u64;
    let (request, on_success) = match known {
        Known::Absent => (
            http.post(format!("{base}/api/user"))
                .body(user(i).to_string()),
            Known::Present(i as u64),
        ),
        Known::Present(_) if round % 5 == 4 => {
            (http.delete(format!("{base}/api/user/{id}")), Known::Absent)
        }
        Known::Present(_) | Known::Unknown => (
            http.put(format!("{base}/api/user"))
                .body(json!({"id": id, "group": group}).to_string()),
            Known::Present(group),
        ),
    };
    match request.send().await.map(|r| r.status().as_u16()) {
        Ok(200 | 201 | 204) => on_success,
        // An authoritative "no such user" (only updates of an unknown user can get it).
        Ok(404) if known == Known::Unknown => Known::Absent,
        _ => Known::Unknown,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_lose_no_acknowledged_write_when_a_node_is_killed_and_restarted() {
    let _guard = cluster_lock().await;
    let mut cluster = TestCluster::start(3);
    cluster.wait_ready(&[0, 1, 2], recovery_bound() * 2).await;
    let writers_count = 4;
    let ids_per_writer = 40;
    let ledger: Arc<Mutex<BTreeMap<usize, Known>>> = Arc::default();
    let acks = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url("")).collect();
    let mut writers = Vec::new();
    for w in 0..writers_count {
        let (http, urls) = (cluster.http.clone(), urls.clone());
        let (ledger, acks, stop) = (ledger.clone(), acks.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                // Each writer owns its ids (w, w + writers, ...), so its ledger is exact.
                let i = w + writers_count * (round % ids_per_writer);
                let known = *ledger
                    .lock()
                    .expect("ledger")
                    .get(&i)
                    .unwrap_or(&Known::Absent);
                let base = &urls[(w + round) % urls.len()];
                let next = write_step(&http, base, i, round / ids_per_writer, known).await;
                if next != Known::Unknown {
                    acks.fetch_add(1, Ordering::Relaxed);
                }
                ledger.lock().expect("ledger").insert(i, next);
                round += 1;
            }
        }));
    }
    let progress = |at_least: usize| {
        let acks = acks.clone();
        move || {
            let acks = acks.clone();
            async move { (acks.load(Ordering::Relaxed) >= at_least).then_some(()) }
        }
    };
    cluster
        .wait_for("writers make progress", recovery_bound(), progress(100))
        .await;
    cluster.nodes[1].kill();
    cluster
        .wait_for(
            "the killed node is declared dead",
            recovery_bound(),
            || async {
                let (_, view) = cluster.get(0, "/cluster").await.ok()?;
                let members = view["members"].as_array()?;
                members
                    .iter()
                    .any(|m| m["node_id"] == "n2" && m["live"] == false)
                    .then_some(())
            },
        )
        .await;
    let before = acks.load(Ordering::Relaxed);
    cluster
        .wait_for(
            "writes continue without the killed node",
            recovery_bound(),
            progress(before + 100),
        )
        .await;
    cluster.start_node(1);
    cluster.wait_ready(&[0, 1, 2], recovery_bound() * 2).await;
    let before = acks.load(Ordering::Relaxed);
    cluster
        .wait_for(
            "writes continue after the restart",
            recovery_bound(),
            progress(before + 100),
        )
        .await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("writer");
    }

    let ledger = ledger.lock().expect("ledger").clone();
    let mut checked = 0;
    for (i, known) in &ledger {
        let id = user(*i)["id"].as_str().expect("id").to_owned();
        let (status, body) = cluster
            .get(0, &format!("/api/user/{id}"))
            .await
            .expect("get");
        match known {
            Known::Present(group) => {
                assert_eq!((status, &body["group"]), (200, &json!(group)), "user {i}")
            }
            Known::Absent => assert_eq!(status, 404, "deleted user {i}: {body}"),
            Known::Unknown => continue,
        }
        checked += 1;
    }
    eprintln!("checked {checked} users whose last write was acknowledged");
    // Count and list agree with what is readable, user by user.
    let mut present = 0;
    for i in ledger.keys() {
        let id = user(*i)["id"].as_str().expect("id").to_owned();
        let (status, _) = cluster
            .get(2, &format!("/api/user/{id}"))
            .await
            .expect("get");
        present += usize::from(status == 200);
    }
    let (_, count) = cluster.get(1, "/api/user/count").await.expect("count");
    let (_, page) = cluster.get(2, "/api/user?limit=1000").await.expect("list");
    assert_eq!(count["count"], present);
    assert_eq!(page["total"], present);
    assert_eq!(page["users"].as_array().map(Vec::len), Some(present));
    assert!(
        checked > writers_count * ids_per_writer / 2,
        "too few acknowledged to mean anything"
    );
    cluster
        .wait_for(
            "every copy of every shard matches",
            recovery_bound(),
            || digests_agree(&cluster, &[0, 1, 2]),
        )
        .await;
}

/// A command sent straight to its shard's owner over the inter-node RPC, as a forwarding
/// node would, saying how long the caller waits. Like a forwarding node, it tries the
/// then-current owner again while the one it found refuses (`NotOwner`, `Moving`): nodes can
/// all be ready while a shard is still being handed to the owner placement gives it, and a
/// refusal means the command was not taken.
async fn command_at_owner(
    cluster: &TestCluster,
    shard: u32,
    command: troupe_node::shard::Command,
    wait_ms: u32,
) -> troupe_node::protocol::Response {
    use troupe_node::config::{HostPort, Secret};
    use troupe_node::ids::{NodeId, ShardId};
    use troupe_node::protocol::{Request, Response};
    use troupe_node::rpc::{auth::Credentials, client::RpcClient};
    let client = RpcClient::new(
        Arc::new(troupe_node::net::tcp::TcpDialer),
        Credentials::new(
            "troupe",
            NodeId::new("test-caller"),
            Secret::new("integration-test-secret-at-least-32-bytes"),
        ),
        1 << 20,
        Duration::from_secs(10),
        tokio_util::sync::CancellationToken::new(),
    );
    let key = ids_in_shard(shard, 1).remove(0);
    cluster
        .wait_for(
            "the shard's owner to take the command",
            recovery_bound(),
            || async {
                let node = &cluster.nodes[cluster.owner_of("user", &key).await];
                let request = Request::Command {
                    shard: ShardId(shard),
                    command: command.clone(),
                    wait_ms,
                };
                let answer = client
                    .call(
                        &NodeId::new(node.id.clone()),
                        &HostPort::new("127.0.0.1", node.rpc_port),
                        request,
                    )
                    .await
                    .expect("the owner answers");
                match answer {
                    Response::NotOwner { .. } | Response::Moving { .. } => None,
                    taken => Some(taken),
                }
            },
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_still_queued_when_its_caller_stops_waiting_is_dropped_not_applied_late() {
    use troupe_actors::users::{User, UserId};
    use troupe_node::protocol::Response;
    use troupe_node::services::machine;
    use troupe_node::services::users::{UserCommand, Users};
    let _guard = cluster_lock().await;
    let cluster = TestCluster::start_with(3, &[("generators", "0")]);
    cluster.wait_ready(&[0, 1, 2], recovery_bound() * 2).await;
    let shard = 9;
    let ids = ids_in_shard(shard, 2);
    let create = |id: &str| {
        machine::command::<Users>(&UserCommand::Create(User {
            id: UserId::parse(id).expect("uuid"),
            name: "late".into(),
            email: "late@x".into(),
            group: 1,
        }))
        .expect("encode")
    };

    // A caller with no time left: the owner queues the command but must not decide it.
    let answer = command_at_owner(&cluster, shard, create(&ids[0]), 0).await;
    assert!(matches!(answer, Response::Unavailable { .. }), "{answer:?}");
    // Commands of a shard are decided in order: once a later one is acknowledged, the
    // earlier one was decided or dropped for good.
    let later = command_at_owner(&cluster, shard, create(&ids[1]), 10_000).await;
    assert!(matches!(later, Response::Outcome(_)), "{later:?}");
    for node in 0..3 {
        let (status, body) = cluster
            .get(node, &format!("/api/user/{}", ids[1]))
            .await
            .expect("get");
        assert_eq!(status, 200, "{body}");
        let (status, body) = cluster
            .get(node, &format!("/api/user/{}", ids[0]))
            .await
            .expect("get");
        assert_eq!(status, 404, "the abandoned create was applied: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_its_replica_does_not_confirm_gets_503_saying_it_may_take_effect_and_it_does() {
    let _guard = cluster_lock().await;
    // A replicate call gives up long before the stopped replica could be declared dead (a
    // dead replica would be replaced and the write acknowledged).
    let overrides = [
        ("generators", "0"),
        ("call_timeout_ms", "500"),
        ("phi_threshold", "30.0"),
    ];
    let mut cluster = TestCluster::start_with(3, &overrides);
    cluster.wait_ready(&[0, 1, 2], recovery_bound() * 2).await;
    // A user whose shard n1 owns with n3 as its only replica.
    let mut ids = None;
    for shard in 0..64 {
        let candidates = ids_in_shard(shard, 2);
        let (_, located) = cluster
            .get(0, &format!("/cluster/locate/user/{}", candidates[0]))
            .await
            .expect("locate");
        if located["owner"] == "n1" && located["replicas"] == json!(["n3"]) {
            ids = Some(candidates);
            break;
        }
    }
    let [probe, id] = ids
        .expect("some shard is owned by n1 and replicated on n3")
        .try_into()
        .expect("two ids");
    // Ready nodes may still be handing shards over: a write n3 confirms shows that n1 serves
    // the shard with n3 as its replica now (stopped mid-seal, n3 would hold the write in the
    // queue instead).
    let probe_body = json!({"id": probe, "name": "probe", "email": "p@x", "group": 1});
    cluster
        .wait_for(
            "n1 to serve the shard with n3",
            recovery_bound(),
            || async {
                let (status, _) = cluster.post(0, "/api/user", probe_body.clone()).await;
                let (_, located) = cluster
                    .get(0, &format!("/cluster/locate/user/{id}"))
                    .await
                    .ok()?;
                let settled = located["owner"] == "n1" && located["replicas"] == json!(["n3"]);
                (matches!(status, 201 | 409) && settled).then_some(())
            },
        )
        .await;
    let pid =
        nix::unistd::Pid::from_raw(cluster.nodes[2].child.as_ref().expect("n3 runs").id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("stop n3");
    let body = json!({"id": id, "name": "maybe", "email": "m@x", "group": 1});
    let (status, answer) = cluster.post(0, "/api/user", body).await;
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("resume n3");
    assert_eq!(status, 503, "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("may or may not take effect"),
        "the client must learn the outcome is unknown: {message}"
    );
    // The owner kept the change and pushes it to the replica: it took effect everywhere.
    for node in 0..3 {
        cluster
            .wait_for(
                "the unconfirmed create to take effect",
                recovery_bound(),
                || async {
                    let (status, user) =
                        cluster.get(node, &format!("/api/user/{id}")).await.ok()?;
                    (status == 200 && user["name"] == "maybe").then_some(())
                },
            )
            .await;
    }
    cluster.nodes[2].kill();
}
