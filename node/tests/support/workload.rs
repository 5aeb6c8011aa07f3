//! A mixed client workload (users, sessions, jobs, parties) that keeps running while a test
//! restarts, adds or removes nodes, and the checks of what it saw.
//!
//! Each client task owns its keys, so it knows exactly what was acknowledged for each. A
//! request goes to a random node that is up; a connection refused (the node is gone) or a 503
//! is retried on another node. An operation *failed* when an error was not followed by a
//! success within [`RETRY_WINDOW`] (the rule: a 503 that succeeds on retry within 1 s
//! counts as retried). The longest time any operation took, retries included, is the longest a
//! key was unavailable.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// An error followed by a success within this window is a retry, not a failure.
pub const RETRY_WINDOW: Duration = Duration::from_secs(1);
/// Longest an operation keeps retrying before it is given up as failed.
const GIVE_UP: Duration = Duration::from_secs(20);
/// Most sessions per user (the cluster.toml default).
pub const CAP: u64 = 3;

/// Which nodes clients may send to, shared with the test that starts and stops them.
#[derive(Clone)]
pub struct Nodes {
    urls: Arc<Vec<String>>,
    up: Arc<Mutex<Vec<bool>>>,
    /// Connections refused so far, all clients together.
    refused: Arc<AtomicU64>,
}

impl Nodes {
    /// `urls` of every node the test may run; none is up yet.
    pub fn new(urls: Vec<String>) -> Self {
        Self::with_every_node(urls, false)
    }

    /// `urls` of nodes that are all up for good: a client that is never told which node stops
    /// and fails over on a refused connection, as cluster drivers do.
    pub fn all_up(urls: Vec<String>) -> Self {
        Self::with_every_node(urls, true)
    }

    fn with_every_node(urls: Vec<String>, up: bool) -> Self {
        let up = vec![up; urls.len()];
        Self {
            urls: Arc::new(urls),
            up: Arc::new(Mutex::new(up)),
            refused: Arc::default(),
        }
    }

    /// Connections refused so far, all clients together.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Marks node `i` as taking requests (or not).
    pub fn set_up(&self, i: usize, up: bool) {
        self.up.lock().expect("nodes lock")[i] = up;
    }

    /// A random node that is up, other than `not` when another is up.
    fn pick(&self, rng: &mut impl Rng, not: Option<&str>) -> String {
        let up: Vec<usize> = {
            let flags = self.up.lock().expect("nodes lock");
            (0..flags.len()).filter(|&i| flags[i]).collect()
        };
        let others: Vec<usize> = up
            .iter()
            .copied()
            .filter(|&i| Some(self.urls[i].as_str()) != not)
            .collect();
        let from = if others.is_empty() { &up } else { &others };
        self.urls[from[rng.random_range(0..from.len())]].clone()
    }
}

/// What every client saw, merged.
#[derive(Debug, Default)]
pub struct Report {
    /// Operations acknowledged.
    pub ok: u64,
    /// Operations that succeeded after an error within the retry window.
    pub retried: u64,
    /// Operations whose error was not followed by a success within the window: each with why.
    pub failed: Vec<String>,
    /// Longest operation, retries included.
    pub longest: Duration,
    /// Attempts whose connection was refused (the node was down): moved on to another node.
    pub refused: u64,
    /// Attempts answered 503 (retried).
    pub unavailable: u64,
    /// Attempts that failed after the request was sent (cut off, timed out): for a write, an
    /// outcome the client cannot know. Each with why.
    pub lost_after_send: Vec<String>,
    /// Last acknowledged name of every user.
    pub users: BTreeMap<String, String>,
    /// Acknowledged session count of every session user.
    pub sessions: BTreeMap<String, u64>,
    /// Every acknowledged session count, to check the cap.
    pub session_counts_seen: Vec<u64>,
    /// Acknowledged job ids.
    pub jobs: Vec<String>,
    /// Acknowledged parties with the device ids of their participants.
    pub parties: BTreeMap<String, Vec<String>>,
}

impl Report {
    fn merge(&mut self, other: Report) {
        self.ok += other.ok;
        self.retried += other.retried;
        self.failed.extend(other.failed);
        self.longest = self.longest.max(other.longest);
        self.refused += other.refused;
        self.unavailable += other.unavailable;
        self.lost_after_send.extend(other.lost_after_send);
        self.users.extend(other.users);
        self.sessions.extend(other.sessions);
        self.session_counts_seen.extend(other.session_counts_seen);
        self.jobs.extend(other.jobs);
        self.parties.extend(other.parties);
    }

    /// One line for the test output.
    pub fn summary(&self) -> String {
        format!(
            "{} ok, {} retried, {} failed, longest operation {} ms; attempts: {} refused \
             connections (failed over), {} answered 503, {} lost after sending",
            self.ok,
            self.retried,
            self.failed.len(),
            self.longest.as_millis(),
            self.refused,
            self.unavailable,
            self.lost_after_send.len()
        )
    }
}

/// A running workload of `clients` tasks; [`Workload::stop`] ends it and returns the report.
pub struct Workload {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Report>>,
}

impl Workload {
    /// Starts `clients` client tasks over `nodes`, running every kind of operation.
    pub fn start(nodes: &Nodes, clients: usize) -> Self {
        Self::start_mix(nodes, clients, Mix::All)
    }

    /// Starts `clients` client tasks over `nodes`, running the operations of `mix`.
    pub fn start_mix(nodes: &Nodes, clients: usize, mix: Mix) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|c| {
                let client = Client::new(c, nodes.clone(), stop.clone(), mix);
                tokio::spawn(client.run())
            })
            .collect();
        Self { stop, tasks }
    }

    /// Stops the clients after their current operation and merges what they saw.
    pub async fn stop(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = Report::default();
        for task in self.tasks {
            report.merge(task.await.expect("client task"));
        }
        report
    }
}

/// Which operations the clients run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// Users, sessions, jobs and parties.
    All,
    /// User writes only: retrying one whose answer was lost is harmless (same value), so the
    /// model stays exact even when a node is killed mid-request.
    UserWrites,
}

/// One client task, with its own keys.
struct Client {
    id: usize,
    mix: Mix,
    nodes: Nodes,
    stop: Arc<AtomicBool>,
    http: reqwest::Client,
    rng: rand::rngs::StdRng,
    report: Report,
    writes: u64,
}

/// How one attempt ended.
enum Attempt {
    Done(u16, Value),
    /// Connection refused: the node is down; try another.
    Refused(String),
    /// 503: retry.
    Unavailable(String),
    /// Failed after the request was sent.
    Lost(String),
}

impl Client {
    fn new(id: usize, nodes: Nodes, stop: Arc<AtomicBool>, mix: Mix) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        Self {
            id,
            mix,
            nodes,
            stop,
            http,
            rng: rand::rngs::StdRng::seed_from_u64(id as u64),
            report: Report::default(),
            writes: 0,
        }
    }

    async fn run(mut self) -> Report {
        while !self.stop.load(Ordering::Relaxed) {
            let pick = match self.mix {
                Mix::All => self.rng.random_range(0..10),
                Mix::UserWrites => 0,
            };
            match pick {
                0..=3 => self.write_user().await,
                4..=6 => self.session_step().await,
                7 => self.create_job().await,
                _ => self.party_step().await,
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.report
    }

    async fn write_user(&mut self) {
        let id = format!(
            "00000000-0000-4000-8000-{:012}",
            self.id * 1000 + self.rng.random_range(0..8)
        );
        self.writes += 1;
        let name = format!("c{}-w{}", self.id, self.writes);
        let (status, _) = if self.report.users.contains_key(&id) {
            let body = json!({"id": id, "name": name});
            self.call(reqwest::Method::PUT, "/api/user", Some(body), &[200])
                .await
        } else {
            let body = json!({"id": id, "name": name, "email": "w@example.com", "group": 1});
            // 409: an earlier attempt whose answer was lost created it.
            self.call(reqwest::Method::POST, "/api/user", Some(body), &[201, 409])
                .await
        };
        if status == 201 || status == 200 {
            self.report.users.insert(id, name);
        } else if status == 409 {
            // Created by a lost attempt: put this name, so the model knows the value.
            let body = json!({"id": id, "name": name});
            if self
                .call(reqwest::Method::PUT, "/api/user", Some(body), &[200])
                .await
                .0
                == 200
            {
                self.report.users.insert(id, name);
            }
        }
    }

    async fn session_step(&mut self) {
        let user = format!("s{}-{}", self.id, self.rng.random_range(0..4));
        let count = self.report.sessions.get(&user).copied().unwrap_or(0);
        let add = count == 0 || (count < CAP && self.rng.random_bool(0.6));
        let path = if add {
            format!("/add-session?user_id={user}")
        } else {
            format!("/remove-session?user_id={user}")
        };
        let (status, body) = self
            .call(reqwest::Method::POST, &path, None, &[200, 409])
            .await;
        if status == 200 {
            let seen = body["active_sessions"].as_u64().unwrap_or(u64::MAX);
            self.report.session_counts_seen.push(seen);
            self.report.sessions.insert(user, seen);
        }
    }

    async fn create_job(&mut self) {
        self.writes += 1;
        let object = format!("obj-{}-{}", self.id, self.writes);
        let body = json!({"object_id": object});
        let (status, body) = self
            .call(reqwest::Method::POST, "/jobs", Some(body), &[201])
            .await;
        if status == 201 {
            if let Some(id) = body["message"]["job_id"].as_str() {
                self.report.jobs.push(id.to_owned());
            }
        }
    }

    async fn party_step(&mut self) {
        let open: Vec<String> = self.report.parties.keys().cloned().collect();
        if open.is_empty() || self.rng.random_bool(0.3) {
            let device = format!("host-{}-{}", self.id, self.writes);
            self.writes += 1;
            let body = json!({"device_id": device});
            let (status, body) = self
                .call(reqwest::Method::POST, "/parties", Some(body), &[201])
                .await;
            if let (201, Some(code)) = (status, body["party_code"].as_str()) {
                self.report.parties.insert(code.to_owned(), vec![device]);
            }
            return;
        }
        let code = open[self.rng.random_range(0..open.len())].clone();
        self.writes += 1;
        let device = format!("guest-{}-{}", self.id, self.writes);
        let body = json!({"device_id": device, "participant_name": "guest"});
        let path = format!("/parties/{code}/participants");
        let (status, _) = self
            .call(reqwest::Method::POST, &path, Some(body), &[200, 201])
            .await;
        if status == 200 || status == 201 {
            if let Some(devices) = self.report.parties.get_mut(&code) {
                devices.push(device);
            }
        }
    }

    /// Runs one operation until a status in `expected` (returned), counting retries and
    /// failures; `(0, Null)` when it never got one.
    async fn call(
        &mut self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        expected: &[u16],
    ) -> (u16, Value) {
        let started = Instant::now();
        let mut last_error: Option<(Instant, String)> = None;
        let mut refused_by: Option<String> = None;
        loop {
            let node = self.nodes.pick(&mut self.rng, refused_by.as_deref());
            let url = format!("{node}{path}");
            let why = match self.attempt(method.clone(), &url, body.clone()).await {
                Attempt::Done(status, value) if expected.contains(&status) => {
                    self.report.longest = self.report.longest.max(started.elapsed());
                    match last_error {
                        None => self.report.ok += 1,
                        Some((at, why)) if at.elapsed() > RETRY_WINDOW => {
                            self.report.failed.push(format!("{method} {path}: {why}"));
                        }
                        Some(_) => self.report.retried += 1,
                    }
                    return (status, value);
                }
                Attempt::Done(status, value) => {
                    self.report
                        .failed
                        .push(format!("{method} {path}: unexpected {status} {value}"));
                    return (status, value);
                }
                Attempt::Refused(why) => {
                    self.report.refused += 1;
                    self.nodes.refused.fetch_add(1, Ordering::Relaxed);
                    refused_by = Some(node);
                    why
                }
                Attempt::Unavailable(why) => {
                    self.report.unavailable += 1;
                    why
                }
                Attempt::Lost(why) => {
                    self.report
                        .lost_after_send
                        .push(format!("{method} {path}: {why}"));
                    why
                }
            };
            if started.elapsed() > GIVE_UP
                || self.stop.load(Ordering::Relaxed) && last_error.is_some()
            {
                self.report
                    .failed
                    .push(format!("{method} {path}: gave up: {why}"));
                return (0, Value::Null);
            }
            // Keep the first error of a streak: the window runs from it.
            last_error.get_or_insert((Instant::now(), why));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn attempt(&self, method: reqwest::Method, url: &str, body: Option<Value>) -> Attempt {
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        match request.send().await {
            Ok(response) if response.status().as_u16() == 503 => {
                Attempt::Unavailable(format!("503 from {url}"))
            }
            Ok(response) => {
                let status = response.status().as_u16();
                match response.bytes().await {
                    Ok(body) => {
                        Attempt::Done(status, serde_json::from_slice(&body).unwrap_or(Value::Null))
                    }
                    Err(error) => {
                        Attempt::Lost(format!("{url}: body: {}", super::error_chain(&error)))
                    }
                }
            }
            Err(error) if error.is_connect() => {
                Attempt::Refused(format!("{url}: {}", super::error_chain(&error)))
            }
            Err(error) => Attempt::Lost(format!("{url}: {}", super::error_chain(&error))),
        }
    }
}
