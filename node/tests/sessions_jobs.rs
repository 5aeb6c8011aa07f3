//! Sessions and jobs on the shard layer, against real `troupe node` processes on 127.0.0.1:
//! the session cap under concurrency, exact counts through a SIGKILL, and jobs that end in
//! exactly one terminal state even when their owner dies.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};
use support::{cluster_lock, TestCluster};

/// Generous bound for failure detection, takeover and a loaded CI machine.
const RECOVERY: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_adds_over_three_nodes_admit_exactly_the_cap_and_leave_no_garbage() {
    let _guard = cluster_lock().await;
    // No integer generators: their averages would be the only other entities in the shards.
    let cluster = TestCluster::start_with(3, &[("generators", "0")]);
    cluster.wait_ready(&[0, 1, 2], RECOVERY).await;

    let adds = (0..100).map(|i| cluster.post(i % 3, "/add-session?user_id=alice", None));
    let answers = join_all(adds).await;
    let admitted = answers.iter().filter(|(s, _)| *s == 200).count();
    let refused = answers.iter().filter(|(s, _)| *s == 409).count();
    assert_eq!((admitted, refused), (3, 97), "{answers:?}");
    let refusal = answers.iter().find(|(s, _)| *s == 409).expect("a refusal");
    assert_eq!(
        refusal.1,
        json!({"message": "max sessions (3) reached", "user_id": "alice", "active_sessions": 3})
    );
    let (_, count) = cluster.get(1, "/sessions/alice").await.expect("count");
    assert_eq!(count, json!({"user_id": "alice", "active_sessions": 3}));

    for expected in [2, 1, 0] {
        let (status, body) = cluster
            .post(expected % 3, "/remove-session?user_id=alice", None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["active_sessions"], expected);
    }
    let (status, body) = cluster.post(2, "/remove-session?user_id=alice", None).await;
    assert_eq!(
        (status, &body["message"]),
        (409, &json!("no active sessions"))
    );
    for path in [
        "/add-session",
        "/add-session?user_id=",
        "/remove-session?other=1",
    ] {
        let (status, body) = cluster.post(0, path, None).await;
        assert_eq!(status, 400, "{path}: {body}");
    }
    let long = "x".repeat(257);
    let (status, _) = cluster
        .post(0, &format!("/add-session?user_id={long}"), None)
        .await;
    assert_eq!(status, 400);

    // The entry went away at 0: no copy of any shard holds an entity.
    for node in 0..3 {
        assert_eq!(
            entities_on(&cluster, node).await,
            Some(0),
            "node {node} keeps garbage"
        );
    }
}

/// Entities in every shard copy node `i` holds (`None` while it does not answer).
async fn entities_on(cluster: &TestCluster, i: usize) -> Option<u64> {
    let (_, copies) = cluster.get(i, "/cluster/shards").await.ok()?;
    Some(
        copies
            .as_array()?
            .iter()
            .filter_map(|c| c["entities"].as_u64())
            .sum(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_counts_equal_acknowledged_adds_minus_removes_and_survive_killing_the_owner() {
    let _guard = cluster_lock().await;
    let mut cluster = TestCluster::start(3);
    cluster.wait_ready(&[0, 1, 2], RECOVERY).await;
    let users: Vec<String> = (0..8).map(|u| format!("user-{u}")).collect();
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for round in 0..12 {
        let calls = users.iter().enumerate().map(|(u, user)| {
            let adding = (round + u) % 3 != 2;
            let path = if adding {
                "add-session"
            } else {
                "remove-session"
            };
            let node = (round + u) % 3;
            let cluster = &cluster;
            async move {
                let (status, _) = cluster
                    .post(node, &format!("/{path}?user_id={user}"), None)
                    .await;
                (user.clone(), adding, status)
            }
        });
        for (user, adding, status) in join_all(calls).await {
            assert!(matches!(status, 200 | 409), "{user}: {status}");
            if status == 200 {
                *expected.entry(user).or_default() += if adding { 1 } else { -1 };
            }
        }
    }
    let victim = cluster.owner_of("session", &users[0]).await;
    cluster.nodes[victim].kill();
    let survivor = (victim + 1) % 3;
    for user in &users {
        let (status, body) = cluster
            .get(survivor, &format!("/sessions/{user}"))
            .await
            .expect("count");
        let want = expected.get(user).copied().unwrap_or(0);
        assert_eq!(
            (status, body["active_sessions"].as_i64()),
            (200, Some(want)),
            "{user}"
        );
        assert!(want <= 3);
    }
}

/// Polls a job until it leaves `processing`; panics if a terminal job ever changes.
async fn wait_terminal(cluster: &TestCluster, node: usize, job_id: &str) -> Value {
    let deadline = Instant::now() + RECOVERY * 2;
    loop {
        let (status, body) = cluster
            .get(node, &format!("/jobs/{job_id}"))
            .await
            .unwrap_or((0, Value::Null));
        let job = &body["message"];
        if status == 200 && job["status"] != "processing" {
            return job.clone();
        }
        assert!(
            Instant::now() < deadline,
            "job {job_id} never ended: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const SHORT_JOBS: &[(&str, &str)] = &[
    ("min_duration_ms", "200"),
    ("max_duration_ms", "1500"),
    ("timeout_ms", "1200"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_created_deduplicated_and_ends_finished_or_cancelled() {
    let _guard = cluster_lock().await;
    let cluster = TestCluster::start_with(3, SHORT_JOBS);
    cluster.wait_ready(&[0, 1, 2], RECOVERY).await;

    let (status, body) = cluster
        .post(0, "/jobs", Some(json!({"object_id": "obj-1"})))
        .await;
    assert_eq!(status, 201, "{body}");
    let job = &body["message"];
    assert_eq!(job["object_id"], "obj-1");
    assert_eq!(job["status"], "processing");
    assert_eq!(job["attempts"], 1);
    let job_id = job["job_id"].as_str().expect("job id").to_owned();
    let (status, dup) = cluster
        .post(1, "/jobs", Some(json!({"object_id": "obj-1"})))
        .await;
    assert_eq!(
        (status, dup),
        (
            400,
            json!({"message": "you need to wait 5 minutes before rerunning the same job"})
        )
    );
    let (status, missing) = cluster.post(2, "/jobs", Some(json!({}))).await;
    assert_eq!(
        (status, missing),
        (400, json!({"message": "you must provide an object_id"}))
    );
    let (status, unknown) = cluster.get(2, "/jobs/nope").await.expect("get");
    assert_eq!(
        (status, unknown),
        (404, json!({"message": "no job with id: nope"}))
    );

    let done = wait_terminal(&cluster, 2, &job_id).await;
    assert!(
        done["status"] == "finished" || done["status"] == "cancelled",
        "{done}"
    );
    assert_eq!(done["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_owner_is_killed_is_rerun_elsewhere_and_finishes_once() {
    let _guard = cluster_lock().await;
    let slow = [
        ("min_duration_ms", "4000"),
        ("max_duration_ms", "4000"),
        ("timeout_ms", "60000"),
    ];
    let mut cluster = TestCluster::start_with(3, &slow);
    cluster.wait_ready(&[0, 1, 2], RECOVERY).await;
    let (status, body) = cluster
        .post(0, "/jobs", Some(json!({"object_id": "obj-kill"})))
        .await;
    assert_eq!(status, 201, "{body}");
    let job_id = body["message"]["job_id"].as_str().expect("id").to_owned();
    let owner = cluster.owner_of("job", &job_id).await;
    // The running job is a timer pending at its owner, not overdue.
    let (timers, overdue) = timer_backlog(&cluster, &[owner]).await;
    eprintln!("measured: at the owner, {timers} timers pending, {overdue} overdue");
    assert_eq!((timers, overdue), (1.0, 0.0));
    cluster.nodes[owner].kill();
    let survivors = [(owner + 1) % 3, (owner + 2) % 3];
    // The new owner runs it again: its timer is pending there.
    let rerun = cluster
        .wait_for("the re-run's timer at the new owner", RECOVERY, || async {
            let backlog = timer_backlog(&cluster, &survivors).await;
            (backlog.0 >= 1.0).then_some(backlog)
        })
        .await;
    eprintln!("measured: at the new owner, {rerun:?} timers (pending, overdue)");
    let done = wait_terminal(&cluster, survivors[0], &job_id).await;
    assert_eq!(done["status"], "finished", "{done}");
    assert_eq!(done["attempts"], 2, "re-run once by the new owner: {done}");
    cluster
        .wait_for("no timer left once the job finished", RECOVERY, || async {
            (timer_backlog(&cluster, &survivors).await == (0.0, 0.0)).then_some(())
        })
        .await;
}

/// `troupe_shard_timers` and `troupe_shard_timers_overdue`, summed over `nodes` (a node that
/// does not answer counts as holding none).
async fn timer_backlog(cluster: &TestCluster, nodes: &[usize]) -> (f64, f64) {
    let mut total = (0.0, 0.0);
    for &i in nodes {
        total.0 += cluster
            .metric(i, "troupe_shard_timers")
            .await
            .unwrap_or(0.0);
        total.1 += cluster
            .metric(i, "troupe_shard_timers_overdue")
            .await
            .unwrap_or(0.0);
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_jobs_each_reach_exactly_one_terminal_state_across_a_node_restart() {
    let _guard = cluster_lock().await;
    let mut cluster = TestCluster::start_with(3, SHORT_JOBS);
    cluster.wait_ready(&[0, 1, 2], RECOVERY).await;
    let mut ids = Vec::new();
    for batch in 0..20 {
        if batch == 10 {
            cluster.nodes[2].kill();
        }
        if batch == 14 {
            cluster.start_node(2);
        }
        let creates = (0..50).map(|k| {
            let i = batch * 50 + k;
            let node = if (10..14).contains(&batch) {
                i % 2
            } else {
                i % 3
            };
            let cluster = &cluster;
            async move {
                let deadline = Instant::now() + RECOVERY;
                loop {
                    let body = json!({"object_id": format!("object-{i}")});
                    let (status, answer) = cluster.post(node, "/jobs", Some(body)).await;
                    match status {
                        201 => return answer["message"]["job_id"].as_str().map(str::to_owned),
                        // The first attempt took effect without an acknowledgement.
                        400 if answer["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("wait")) =>
                        {
                            return None
                        }
                        _ if Instant::now() < deadline => continue,
                        _ => panic!("create {i} via node {node}: {status} {answer}"),
                    }
                }
            }
        });
        ids.extend(join_all(creates).await.into_iter().flatten());
    }
    assert!(ids.len() > 900, "only {} jobs acknowledged", ids.len());
    cluster.wait_ready(&[0, 1, 2], RECOVERY).await;
    let mut ended: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for id in &ids {
        let job = wait_terminal(&cluster, 0, id).await;
        let status = job["status"].as_str().expect("status").to_owned();
        ended.insert(
            id.clone(),
            (status, job["attempts"].as_u64().expect("attempts")),
        );
    }
    // Terminal states never change, whichever node answers.
    for (id, (status, _)) in &ended {
        for node in 0..3 {
            let (_, body) = cluster
                .get(node, &format!("/jobs/{id}"))
                .await
                .expect("get");
            assert_eq!(
                body["message"]["status"],
                json!(status),
                "job {id} via node {node}"
            );
        }
    }
    let reruns = ended.values().filter(|(_, attempts)| *attempts > 1).count();
    eprintln!(
        "{} jobs ended, {reruns} of them re-run after a takeover",
        ended.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_lease_sessions_that_are_not_renewed_expire_and_their_entries_are_deleted() {
    let _guard = cluster_lock().await;
    // No integer generators: their averages would be the only other entities in the shards.
    let cluster = TestCluster::start_with(3, &[("ttl_seconds", "1"), ("generators", "0")]);
    cluster.wait_ready(&[0, 1, 2], RECOVERY).await;
    for _ in 0..3 {
        let (status, _) = cluster.post(0, "/add-session?user_id=crashy", None).await;
        assert_eq!(status, 200);
    }
    let (status, _) = cluster.post(1, "/add-session?user_id=crashy", None).await;
    assert_eq!(status, 409, "at the cap while the leases run");
    // Nobody renews: the slots come back.
    cluster
        .wait_for("the sessions expire", RECOVERY, || async {
            let (_, body) = cluster.get(2, "/sessions/crashy").await.ok()?;
            (body["active_sessions"] == 0).then_some(())
        })
        .await;
    let (status, body) = cluster.post(2, "/add-session?user_id=crashy", None).await;
    assert_eq!((status, &body["active_sessions"]), (200, &json!(1)));

    // Expired, the entry is garbage (an entry should go once no session is active): the owner's
    // sweep deletes it on every copy, though nobody removes the session.
    for node in 0..3 {
        cluster
            .wait_for("the expired entry is deleted", RECOVERY, || async {
                (entities_on(&cluster, node).await? == 0).then_some(())
            })
            .await;
    }
    let (_, body) = cluster.get(0, "/sessions/crashy").await.expect("count");
    assert_eq!(body["active_sessions"], 0);
}
