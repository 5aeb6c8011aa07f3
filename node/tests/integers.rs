//! The integers service against real `troupe node` processes: averages every 5 seconds with
//! the right counts, and no stored average lost, and no window skipped, when the aggregator's
//! node is killed.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{cluster_lock, TestCluster};

/// Several windows plus failure detection, on a loaded CI machine.
const WITHIN: Duration = Duration::from_secs(60);

async fn averages(cluster: &TestCluster, node: usize) -> Option<Vec<Value>> {
    let (status, body) = cluster.get(node, "/v1/integers").await.ok()?;
    (status == 200).then(|| body.as_array().cloned()).flatten()
}

fn window(average: &Value) -> u64 {
    average["window_start_ms"].as_u64().unwrap_or(0)
}

/// How long until the wall clock is 4.5 s into a 5-second window (the nodes align windows to
/// the same clock).
fn until_late_in_a_window() -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Duration::from_millis((5_000 + 4_500 - now % 5_000) % 5_000)
}

/// Waits for two complete windows and checks them: newest first, 5 s apart, about
/// 2 generators × 10 per second × 5 s each.
async fn two_complete_windows(cluster: &TestCluster) -> Vec<Value> {
    let before = cluster
        .wait_for("two complete windows", WITHIN, || async {
            let list = averages(cluster, 0).await?;
            (list.iter().filter(|a| a["complete"] == true).count() >= 2).then_some(list)
        })
        .await;
    for pair in before.windows(2) {
        assert_eq!(window(&pair[0]) - window(&pair[1]), 5_000, "{pair:?}");
    }
    for average in before.iter().filter(|a| a["complete"] == true) {
        let count = average["count"].as_u64().unwrap_or(0);
        assert!((90..=100).contains(&count), "count {count} in {average}");
        let mean = average["average"].as_f64().unwrap_or(0.0);
        assert!((1.0..=10_000.0).contains(&mean), "{average}");
    }
    before
}

/// Kills the aggregator's node late in a window, so that window is over before the
/// aggregator runs again: only the integers the generators kept can then fill it. Returns
/// the node killed.
async fn kill_the_aggregator_late_in_a_window(cluster: &mut TestCluster) -> usize {
    let victim = cluster.owner_of("integers", "integers%2Faggregator").await;
    tokio::time::sleep(until_late_in_a_window()).await;
    cluster.nodes[victim].kill();
    victim
}

/// Waits, reading through `reader`, for a complete window newer than those `before` and the
/// one open at the failover, then checks no window is missing across the failover (the
/// generators send what they still hold to the new aggregator, so the windows it did not see
/// whole are stored incomplete, not skipped) and no average of `before` was lost.
async fn windows_survive_the_failover(cluster: &TestCluster, reader: usize, before: &[Value]) {
    let newest_before = window(&before[0]);
    let after = cluster
        .wait_for(
            "a complete window stored by the new aggregator",
            WITHIN,
            || async {
                let list = averages(cluster, reader).await?;
                list.iter()
                    .any(|a| window(a) > newest_before + 5_000 && a["complete"] == true)
                    .then_some(list)
            },
        )
        .await;
    for pair in after.windows(2).filter(|p| window(&p[1]) >= newest_before) {
        assert_eq!(
            window(&pair[0]) - window(&pair[1]),
            5_000,
            "window missing: {pair:?}"
        );
    }
    for stored in before {
        assert!(
            after.iter().any(|a| a == stored)
                || window(stored) < window(after.last().expect("some")),
            "stored average lost: {stored}"
        );
    }
    let (status, last) = cluster
        .get(reader, "/v1/integers/last")
        .await
        .expect("last");
    assert_eq!((status, window(&last)), (200, window(&after[0])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn averages_arrive_every_five_seconds_and_survive_killing_the_aggregator() {
    let _guard = cluster_lock().await;
    let mut cluster = TestCluster::start(3);
    let before = two_complete_windows(&cluster).await;
    let victim = kill_the_aggregator_late_in_a_window(&mut cluster).await;
    windows_survive_the_failover(&cluster, (victim + 1) % 3, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_window_is_skipped_when_the_aggregators_node_restarts_before_it_is_declared_dead() {
    let _guard = cluster_lock().await;
    // Failure detection far slower than a restart: the node comes back under its name, and
    // its new aggregator must be told apart from the one that died with the open window.
    let mut cluster = TestCluster::start_with(3, &[("phi_threshold", "30.0")]);
    let before = two_complete_windows(&cluster).await;
    let victim = kill_the_aggregator_late_in_a_window(&mut cluster).await;
    cluster.start_node(victim);
    windows_survive_the_failover(&cluster, (victim + 1) % 3, &before).await;
}
