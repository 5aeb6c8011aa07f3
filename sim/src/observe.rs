//! Watching the cluster from outside, as an operator would: `GET /cluster` on every node.
//!
//! An observer client polls each node's HTTP edge over turmoil TCP and keeps the latest answer
//! per node in [`Observations`]; tests evaluate predicates on a [`Views`] snapshot of it. A node
//! that does not answer (crashed, or the request timed out) has no view.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use troupe_http::views::{ClusterView, MemberView};

use crate::http;

/// Time between two polls of the same node.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Deadline of one `GET /cluster`, connection set-up included.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);

/// The latest `/cluster` answer of each node, written by the observer and read by the test.
///
/// Each answer is kept behind an `Arc`, so a snapshot copies references, not views: tests take
/// one every 10 ms of simulated time, and at 100 nodes copying the views themselves (100
/// members each) was most of the real time of a run.
#[derive(Clone, Default)]
pub struct Observations {
    views: Arc<Mutex<BTreeMap<String, Arc<ClusterView>>>>,
}

impl Observations {
    /// A copy of the latest views, to run predicates on.
    pub fn snapshot(&self) -> Views {
        Views(self.lock().clone())
    }

    /// Forgets every view, so that only answers given from now on count.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn record(&self, host: &str, view: Option<ClusterView>) {
        let mut views = self.lock();
        match view {
            Some(view) => views.insert(host.to_owned(), Arc::new(view)),
            None => views.remove(host),
        };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<ClusterView>>> {
        // Plain data, no invariant spans a panic: keep using it.
        self.views.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Each node's view of the cluster at one moment, by host name.
#[derive(Clone, Debug, Default)]
pub struct Views(BTreeMap<String, Arc<ClusterView>>);

impl Views {
    /// What `host` answered last, if it answered since the last [`Observations::clear`].
    pub fn of(&self, host: &str) -> Option<&ClusterView> {
        self.0.get(host).map(Arc::as_ref)
    }

    /// What `host` says about `node`.
    pub fn member(&self, host: &str, node: &str) -> Option<&MemberView> {
        self.of(host)?.members.iter().find(|m| m.node_id == node)
    }

    /// Whether `host` lists exactly `nodes`, each live and ready, and every shard has an owner.
    pub fn sees_all_ready(&self, host: &str, nodes: &[String]) -> bool {
        let Some(view) = self.of(host) else {
            return false;
        };
        let listed: Vec<&str> = view.members.iter().map(|m| m.node_id.as_str()).collect();
        listed == nodes.iter().map(String::as_str).collect::<Vec<_>>()
            && view.members.iter().all(|m| m.live && m.status == "ready")
            && view.shards.iter().all(|s| s.owner.is_some())
    }

    /// Whether every node in `hosts` sees all of them live and ready, with one shard table.
    pub fn converged(&self, hosts: &[String]) -> bool {
        let all_ready = hosts.iter().all(|h| self.sees_all_ready(h, hosts));
        let mut tables = hosts.iter().filter_map(|h| self.of(h)).map(|v| &v.shards);
        let first = tables.next();
        all_ready && first.is_some() && tables.all(|t| Some(t) == first)
    }

    /// Whether `host` lists `node` as not live and gives it no shard, as owner or replica.
    pub fn sees_dead(&self, host: &str, node: &str) -> bool {
        let Some(view) = self.of(host) else {
            return false;
        };
        let listed_dead = self.member(host, node).is_some_and(|m| !m.live);
        let holds_shard = view
            .shards
            .iter()
            .any(|s| s.owner.as_deref() == Some(node) || s.replicas.iter().any(|r| r == node));
        listed_dead && !holds_shard
    }

    /// The generation `host` sees for `node`.
    pub fn generation(&self, host: &str, node: &str) -> Option<u64> {
        self.member(host, node).map(|m| m.generation)
    }
}

impl std::fmt::Display for Views {
    /// One line per node: who it sees, with liveness, status and generation.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (host, view) in &self.0 {
            let members: Vec<String> = view
                .members
                .iter()
                .map(|m| {
                    format!(
                        "{}({}, {}, g{})",
                        m.node_id,
                        if m.live { "live" } else { "dead" },
                        m.status,
                        m.generation
                    )
                })
                .collect();
            writeln!(f, "  {host}: {}", members.join(" "))?;
        }
        Ok(())
    }
}

/// The observer client: polls every host's `/cluster` forever, recording into `observations`.
/// Register it with `sim.client(..)`; it never finishes, so drive the simulation with `step`.
pub async fn observe(hosts: Vec<String>, observations: Observations) -> turmoil::Result {
    let mut pollers = tokio::task::JoinSet::new();
    for host in hosts {
        pollers.spawn_local(poll(host, observations.clone()));
    }
    while pollers.join_next().await.is_some() {}
    Ok(())
}

async fn poll(host: String, observations: Observations) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let view = tokio::time::timeout(REQUEST_TIMEOUT, get_cluster(&host))
            .await
            .ok()
            .and_then(Result::ok);
        observations.record(&host, view);
    }
}

/// `GET /cluster` on `host`'s HTTP edge (port 8080).
pub async fn get_cluster(host: &str) -> io::Result<ClusterView> {
    let reply = http::request(host, 8080, "GET", "/cluster", None).await?;
    if reply.status != 200 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("GET /cluster answered {}", reply.status),
        ));
    }
    serde_json::from_slice(&reply.body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
