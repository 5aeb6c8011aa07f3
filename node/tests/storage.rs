//! Storage limits against real `troupe node` processes: a node whose LMDB map fills up turns
//! unready first, then refuses new data with 507 while deletions still work, and loses nothing
//! it acknowledged.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{cluster_lock, TestCluster};

/// A 16 MiB map that refuses new data at a quarter full (4 MiB), so a test fills it in seconds.
const SMALL_MAP: &[(&str, &str)] = &[
    ("map_size_mb", "16"),
    ("readiness_percent", "15"),
    ("writes_percent", "25"),
];
/// Writers at once, and the most users they may create before a 507 must have come.
const WRITERS: usize = 8;
const MAX_USERS: usize = 60_000;

fn user(i: usize) -> serde_json::Value {
    json!({
        "id": format!("00000000-0000-4000-8000-{i:012}"),
        "name": format!("{i:0>200}"),
        "email": format!("{}@example.com", "u".repeat(300)),
        "group": i,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_map_turns_the_node_unready_then_refuses_new_data_with_507_and_keeps_every_acknowledged_write(
) {
    let _lock = cluster_lock().await;
    let cluster = TestCluster::start_with(3, SMALL_MAP);
    cluster
        .wait_ready(&[0, 1, 2], Duration::from_secs(60))
        .await;

    let cluster = Arc::new(cluster);
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(Mutex::new(Vec::new()));
    let refusals = Arc::new(Mutex::new(Vec::new()));
    let unready_seen = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (cluster, stop, unready_seen) = (cluster.clone(), stop.clone(), unready_seen.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for i in 0..3 {
                    if let Ok((503, body)) = cluster.get(i, "/readyz").await {
                        let message = body["message"].as_str().unwrap_or_default();
                        if message.contains("storage.readiness_percent") {
                            unready_seen.store(true, Ordering::Relaxed);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (cluster, next, stop) = (cluster.clone(), next.clone(), stop.clone());
            let (created, refusals, unready_seen) =
                (created.clone(), refusals.clone(), unready_seen.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    assert!(i < MAX_USERS, "no 507 after {MAX_USERS} users");
                    let (status, body) = cluster
                        .send(w % 3, reqwest::Method::POST, "/api/user", Some(user(i)))
                        .await;
                    match status {
                        201 => created.lock().expect("lock").push(i),
                        507 => {
                            let readiness_first = unready_seen.load(Ordering::Relaxed);
                            refusals
                                .lock()
                                .expect("lock")
                                .push((i, body, readiness_first));
                            stop.store(true, Ordering::Relaxed);
                        }
                        503 => {}
                        other => panic!("create {i}: {other} {body}"),
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    watcher.await.expect("watcher");

    let refusals = refusals.lock().expect("lock").clone();
    let (refused, body, readiness_first) = refusals.first().cloned().expect("a 507");
    let message = body["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.contains("storage.writes_percent") && message.contains("nothing was written"),
        "{message}"
    );
    assert!(
        readiness_first,
        "/readyz did not turn red before the first 507"
    );
    let (status, _) = cluster
        .get(
            0,
            &format!("/api/user/{}", user(refused)["id"].as_str().expect("id")),
        )
        .await
        .expect("read the refused user");
    assert_eq!(status, 404, "a refused create was stored");

    // Nothing acknowledged is lost, and the full owner still takes deletions.
    let created = created.lock().expect("lock").clone();
    println!(
        "measured: {} users stored before the first 507",
        created.len()
    );
    for &i in created.iter().step_by(25) {
        let id = user(i)["id"].as_str().expect("id").to_owned();
        let (status, read) = cluster
            .get(i % 3, &format!("/api/user/{id}"))
            .await
            .expect("read");
        assert_eq!((status, &read["name"]), (200, &user(i)["name"]), "user {i}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = *created.first().expect("some user was created");
    let id = user(first)["id"].as_str().expect("id").to_owned();
    loop {
        let (status, body) = cluster
            .send(1, reqwest::Method::DELETE, &format!("/api/user/{id}"), None)
            .await;
        if status == 204 {
            break;
        }
        assert!(
            status == 503 && Instant::now() < deadline,
            "delete: {status} {body}"
        );
    }
    for node in &cluster.nodes {
        assert!(!node.log_text().contains("panicked"), "{}", node.log_text());
    }
}
