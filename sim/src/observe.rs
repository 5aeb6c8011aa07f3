//! Watching the cluster from outside, as an operator would: `GET /cluster` on every node.
//!
//! An observer client polls each node's HTTP edge over turmoil TCP and keeps the latest answer
//! per node in [`Observations`]; tests evaluate predicates on a [`Views`] snapshot of it. A node
//! that does not answer (crashed, or the request timed out) has no view.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use troupe_http::views::{ClusterView, MemberView, ShardView};

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
///
/// The observer can be paused ([`Observations::pause`]) while nobody reads the views: each poll
/// is an HTTP request a node answers with its whole view, and a run spends about half its
/// simulated time in phases that only let time pass or wait for a client.
#[derive(Clone, Default)]
pub struct Observations {
    views: Arc<Mutex<BTreeMap<String, Arc<ClusterView>>>>,
    /// Set while paused: the pollers keep their schedule but send nothing.
    paused: Arc<AtomicBool>,
    /// Wakes the pollers when the pause ends, so each asks at once rather than up to a poll
    /// interval later: a time measured from the end of a pause is late by a round trip only.
    resumed: Arc<Notify>,
    /// Counts [`Observations::clear`]s: an answer to a request sent before the last clear is
    /// not recorded, so a predicate never sees a view asked for before a fault.
    cleared: Arc<AtomicU64>,
}

impl Observations {
    /// A copy of the latest views, to run predicates on.
    pub fn snapshot(&self) -> Views {
        Views(self.lock().clone())
    }

    /// Forgets every view, so that only answers to requests sent from now on count.
    pub fn clear(&self) {
        let mut views = self.lock();
        self.cleared.fetch_add(1, Ordering::Relaxed);
        views.clear();
    }

    /// Pauses the observer (`true`) or lets it poll again (`false`). A paused observer sends no
    /// request; the views it had stay until cleared.
    pub fn pause(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
        if !paused {
            self.resumed.notify_waiters();
        }
    }

    fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    fn clears(&self) -> u64 {
        self.cleared.load(Ordering::Relaxed)
    }

    /// Records `host`'s answer to a request sent when [`Self::clears`] was `asked`, unless the
    /// views were cleared since.
    fn record(&self, host: &str, view: Option<ClusterView>, asked: u64) {
        let mut views = self.lock();
        if self.clears() != asked {
            return;
        }
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

    /// Whether `host` lists exactly `nodes` (in any order), each live and ready, and every
    /// shard has an owner.
    pub fn sees_all_ready(&self, host: &str, nodes: &[String]) -> bool {
        let Some(view) = self.of(host) else {
            return false;
        };
        lists_exactly(view, nodes)
            && view.members.iter().all(|m| m.live && m.status == "ready")
            && view.shards.iter().all(|s| s.owner.is_some())
    }

    /// Whether every node in `hosts` sees all of them live and ready, with one shard table
    /// ([`same_table`]).
    pub fn converged(&self, hosts: &[String]) -> bool {
        let mut first: Option<&ClusterView> = None;
        !hosts.is_empty()
            && hosts.iter().all(|h| {
                self.sees_all_ready(h, hosts)
                    && self
                        .of(h)
                        .is_some_and(|view| same_table(first.get_or_insert(view), view))
            })
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

/// Whether `view` lists exactly `nodes`, each once, in any order: `/cluster` sorts members by
/// id as strings (`n10` before `n2`), and a caller's list is in whatever order it was built.
pub fn lists_exactly(view: &ClusterView, nodes: &[String]) -> bool {
    let listed: BTreeSet<&str> = view.members.iter().map(|m| m.node_id.as_str()).collect();
    let wanted: BTreeSet<&str> = nodes.iter().map(String::as_str).collect();
    listed.len() == view.members.len() && listed == wanted
}

/// Whether two views hold the same shard table, in whatever order each lists its shards. A
/// shard's replicas are compared in order: that order is placement's (the first replica takes
/// over from the owner), so two tables that order them differently do differ.
pub fn same_table(a: &ClusterView, b: &ClusterView) -> bool {
    fn by_shard(view: &ClusterView) -> Vec<&ShardView> {
        let mut shards: Vec<&ShardView> = view.shards.iter().collect();
        shards.sort_by_key(|s| s.shard);
        shards
    }
    // Nodes list shards in shard order, so the plain comparison nearly always decides.
    a.shards == b.shards || by_shard(a) == by_shard(b)
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
        tokio::select! {
            biased;
            _ = observations.resumed.notified() => tick.reset(),
            _ = tick.tick() => {}
        }
        if observations.paused() {
            continue;
        }
        let asked = observations.clears();
        let view = tokio::time::timeout(REQUEST_TIMEOUT, get_cluster(&host))
            .await
            .ok()
            .and_then(Result::ok);
        observations.record(&host, view, asked);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str) -> MemberView {
        MemberView {
            node_id: id.to_owned(),
            generation: 1,
            region: "eu-west-1".into(),
            status: "ready".into(),
            live: true,
            http_addr: format!("{id}:8080"),
            rpc_addr: format!("{id}:8280"),
            gossip_addr: format!("{id}:8180"),
        }
    }

    fn shard(shard: u32, owner: &str, replicas: &[&str]) -> ShardView {
        ShardView {
            shard,
            owner: Some(owner.to_owned()),
            replicas: replicas.iter().map(|r| (*r).to_owned()).collect(),
            manager: None,
        }
    }

    /// A view from `node` listing `members` and `shards` in the order given.
    fn view(node: &str, members: &[&str], shards: Vec<ShardView>) -> Arc<ClusterView> {
        Arc::new(ClusterView {
            cluster: "sim".into(),
            node: node.to_owned(),
            members: members.iter().map(|m| member(m)).collect(),
            shard_count: shards.len() as u32,
            replication_factor: 2,
            shards,
            transit: Vec::new(),
            lease_held: true,
            gossip_tables: Default::default(),
        })
    }

    #[test]
    fn ten_nodes_converge_whatever_order_members_and_shards_are_listed_in() {
        let hosts: Vec<String> = (1..=10).map(|i| format!("n{i}")).collect();
        let numeric: Vec<&str> = hosts.iter().map(String::as_str).collect();
        // As `/cluster` sorts them: by id as a string, n10 before n2.
        let mut textual = numeric.clone();
        textual.sort_unstable();
        assert_ne!(numeric, textual);
        let table = || vec![shard(0, "n10", &["n2"]), shard(1, "n2", &["n10"])];
        let mut reversed = table();
        reversed.reverse();
        let mut views = BTreeMap::new();
        for (i, host) in hosts.iter().enumerate() {
            let (members, shards) = if i % 2 == 0 {
                (&textual, table())
            } else {
                (&numeric, reversed.clone())
            };
            views.insert(host.clone(), view(host, members, shards));
        }
        let views = Views(views);
        assert!(views.sees_all_ready("n3", &hosts));
        assert!(views.converged(&hosts));
        let mut shuffled = hosts.clone();
        shuffled.rotate_left(3);
        assert!(views.converged(&shuffled));
    }

    #[test]
    fn an_answer_to_a_request_sent_before_the_views_were_forgotten_is_not_recorded() {
        let observations = Observations::default();
        let answer = || Some(view("n1", &["n1"], Vec::new()).as_ref().clone());
        let asked = observations.clears();
        observations.clear();
        observations.record("n1", answer(), asked);
        assert!(observations.snapshot().of("n1").is_none());
        let asked = observations.clears();
        observations.record("n1", answer(), asked);
        assert!(observations.snapshot().of("n1").is_some());
    }

    #[test]
    fn a_missing_or_repeated_member_or_another_table_is_not_converged() {
        let hosts = vec!["n1".to_owned(), "n2".to_owned()];
        let table = || vec![shard(0, "n1", &["n2"])];
        let of = |n1: Arc<ClusterView>, n2: Arc<ClusterView>| {
            Views(BTreeMap::from([
                ("n1".to_owned(), n1),
                ("n2".to_owned(), n2),
            ]))
        };
        let good = || view("n1", &["n1", "n2"], table());
        assert!(of(good(), good()).converged(&hosts));
        let missing = view("n2", &["n1"], table());
        assert!(!of(good(), missing).converged(&hosts));
        let repeated = view("n2", &["n1", "n2", "n2"], table());
        assert!(!of(good(), repeated).converged(&hosts));
        let swapped = view("n2", &["n1", "n2"], vec![shard(0, "n2", &["n1"])]);
        assert!(!of(good(), swapped).converged(&hosts));
        assert!(!of(good(), good()).converged(&[]));
    }
}
