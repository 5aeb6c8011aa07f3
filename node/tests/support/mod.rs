//! Test harness: real `troupe node` processes on 127.0.0.1 with temporary data directories.
//!
//! Tests wait on predicates with generous deadlines (never fixed sleeps), and every test that
//! starts a cluster holds [`cluster_lock`] so clusters never compete for the 2 cores of CI.
#![allow(dead_code)]

pub mod workload;

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// Serializes whole-cluster tests within a test binary.
pub async fn cluster_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Gossip interval of test clusters; failure detection takes about phi (8) times this.
pub const GOSSIP_INTERVAL_MS: u64 = 250;

/// The repository's cluster.toml with faster gossip and the given `(key, value)` overrides,
/// written into the test's directory.
fn test_config(secret: &str, overrides: &[(&str, &str)]) -> String {
    let base = include_str!("../../../cluster.toml");
    base.lines()
        .map(|l| {
            let key = l.split_once(" =").map(|(k, _)| k);
            if let Some((k, v)) = overrides.iter().find(|(k, _)| Some(*k) == key) {
                return format!("{k} = {v}");
            }
            match key {
                Some("interval_ms") => format!("interval_ms = {GOSSIP_INTERVAL_MS}"),
                // Test clients are no load balancers: a stopping node drains only for the
                // gossip rounds peers need to see it leave, unless a test asks for more.
                Some("drain_ms") => "drain_ms = 0".to_owned(),
                Some("initial_interval_ms") => {
                    format!("initial_interval_ms = {}", GOSSIP_INTERVAL_MS * 2)
                }
                // The repository's file holds no secret: a test cluster gets its own.
                _ if l == "[cluster]" => format!("[cluster]\nsecret = \"{secret}\""),
                _ => l.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Ports handed to test nodes come from below Linux's ephemeral range (32768 and up), so an
/// outgoing connection of another node cannot take one between the probe here and the node's
/// own bind (a CI run failed with "address already in use" that way). Each test binary starts
/// at an offset of its own, derived from its process id, and walks up from there.
const PORT_RANGE: std::ops::Range<u32> = 20_000..32_000;

fn next_candidate() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = PORT_RANGE.end - PORT_RANGE.start;
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() * 97) % span,
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    let offset = NEXT.fetch_add(1, Ordering::AcqRel) % span;
    (PORT_RANGE.start + offset) as u16
}

/// A port of [`PORT_RANGE`] that `bind` can take right now.
fn free_port(bind: impl Fn(u16) -> bool) -> u16 {
    (0..PORT_RANGE.end - PORT_RANGE.start)
        .map(|_| next_candidate())
        .find(|port| bind(*port))
        .expect("a free port below the ephemeral range")
}

fn free_tcp_port() -> u16 {
    free_port(|port| TcpListener::bind(("127.0.0.1", port)).is_ok())
}

fn free_udp_port() -> u16 {
    free_port(|port| UdpSocket::bind(("127.0.0.1", port)).is_ok())
}

/// An error with its causes, so a failed request says why (refused, reset, timed out).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One node process (running or stopped) with its fixed ports and data directory.
pub struct TestNode {
    pub id: String,
    /// Region from the region table (`eu-west-1` unless the test says otherwise).
    pub region: String,
    pub http_port: u16,
    pub gossip_port: u16,
    pub rpc_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub config: PathBuf,
    pub seeds: Vec<u16>,
    pub child: Option<Child>,
}

impl TestNode {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let seeds: Vec<String> = self
            .seeds
            .iter()
            .filter(|&&p| p != self.gossip_port)
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let mut command = Command::new(env!("CARGO_BIN_EXE_troupe"));
        command.arg("node");
        // A node alone has no seeds (an empty `--seeds=` is refused).
        if !seeds.is_empty() {
            command.arg(format!("--seeds={}", seeds.join(",")));
        }
        let child = command
            .arg(format!("--config={}", self.config.display()))
            .arg(format!("--node-id={}", self.id))
            .arg(format!("--region={}", self.region))
            .arg(format!("--http-listen=127.0.0.1:{}", self.http_port))
            .arg(format!("--gossip-listen=127.0.0.1:{}", self.gossip_port))
            .arg(format!("--rpc-listen=127.0.0.1:{}", self.rpc_port))
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .env("TROUPE_LOG", "info")
            .env_remove("TROUPE_SECRET")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log clone"))
            .stderr(log)
            .spawn()
            .expect("start troupe node");
        self.child = Some(child);
    }

    /// SIGKILL: the node gets no chance to leave.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, without waiting: the node starts to stop.
    pub fn signal_terminate(&self) {
        if let Some(child) = &self.child {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Waits for the process to exit on its own; `None` if it still runs after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A set of node processes sharing one cluster.toml.
pub struct TestCluster {
    pub dir: TempDir,
    pub nodes: Vec<TestNode>,
    pub http: reqwest::Client,
}

impl TestCluster {
    /// Plans `n` nodes (ports, directories, seeds) and starts them all.
    pub fn start(n: usize) -> Self {
        Self::start_with(n, &[])
    }

    /// Starts `n` nodes whose cluster.toml has the given `(key, value)` overrides.
    pub fn start_with(n: usize, overrides: &[(&str, &str)]) -> Self {
        let mut cluster =
            Self::plan_with(n, "integration-test-secret-at-least-32-bytes", overrides);
        for i in 0..n {
            cluster.nodes[i].start();
        }
        cluster
    }

    /// Starts one node per entry of `regions`, node `i` in `regions[i]`.
    pub fn start_in_regions(regions: &[&str]) -> Self {
        let mut cluster = Self::plan(regions.len(), "integration-test-secret-at-least-32-bytes");
        for (node, region) in cluster.nodes.iter_mut().zip(regions) {
            node.region = (*region).to_owned();
            node.start();
        }
        cluster
    }

    /// Plans `n` nodes with the given secret without starting them.
    pub fn plan(n: usize, secret: &str) -> Self {
        Self::plan_with(n, secret, &[])
    }

    pub fn plan_with(n: usize, secret: &str, overrides: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, test_config(secret, overrides)).expect("write config");
        let gossip: Vec<u16> = (0..n).map(|_| free_udp_port()).collect();
        let nodes = (0..n)
            .map(|i| TestNode {
                id: format!("n{}", i + 1),
                region: "eu-west-1".to_owned(),
                http_port: free_tcp_port(),
                gossip_port: gossip[i],
                rpc_port: free_tcp_port(),
                data_dir: dir.path().join(format!("n{}", i + 1)),
                log: dir.path().join(format!("n{}.log", i + 1)),
                config: config.clone(),
                seeds: gossip.clone(),
                child: None,
            })
            .collect();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        Self { dir, nodes, http }
    }

    /// Starts (or restarts) node `i` with its existing data directory.
    pub fn start_node(&mut self, i: usize) {
        self.nodes[i].start();
    }

    /// GET a JSON document from node `i`.
    pub async fn get(&self, i: usize, path: &str) -> Result<(u16, Value), String> {
        let response = self
            .http
            .get(self.nodes[i].url(path))
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = response.status().as_u16();
        let body = response
            .json::<Value>()
            .await
            .map_err(|e| error_chain(&e))?;
        Ok((status, body))
    }

    /// Polls `probe` until it returns `Some`, failing the test with `what` and the node logs
    /// after `within`.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, within: Duration, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + within;
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            if Instant::now() > deadline {
                self.dump_logs();
                panic!("timed out after {within:?} waiting for: {what}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A request to node `i`: status and JSON body (`Null` when empty or not JSON); status 0
    /// for a transport error.
    pub async fn send(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, self.nodes[i].url(path));
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// Index of the node that owns the shard of `key` (of `kind`, as `/cluster/locate` takes
    /// them; `key` URL-encoded).
    pub async fn owner_of(&self, kind: &str, key: &str) -> usize {
        let (_, located) = self
            .get(0, &format!("/cluster/locate/{kind}/{key}"))
            .await
            .expect("locate");
        let owner = located["owner"].as_str().expect("an owner").to_owned();
        self.nodes
            .iter()
            .position(|n| n.id == owner)
            .expect("the owner is a test node")
    }

    /// The value of the unlabelled metric `name` in node `i`'s `/metrics` (`None` while the
    /// node does not answer or does not export it).
    pub async fn metric(&self, i: usize, name: &str) -> Option<f64> {
        let response = self.http.get(self.nodes[i].url("/metrics")).send().await;
        let text = response.ok()?.text().await.ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    }

    /// POST to node `i`, with a JSON body (a `Value`) or none (`None`).
    pub async fn post(&self, i: usize, path: &str, body: impl Into<Option<Value>>) -> (u16, Value) {
        self.send(i, reqwest::Method::POST, path, body.into()).await
    }

    /// Waits until every node in `nodes` is ready, sees exactly them as live, ready members,
    /// and takes no shard over: the tests start from a settled cluster. (`/readyz` stays green
    /// while a ready node takes shards over, so it alone does not say that.)
    pub async fn wait_ready(&self, nodes: &[usize], within: Duration) {
        self.wait_for("nodes ready, agreeing and settled", within, || async {
            for &i in nodes {
                let (status, _) = self.get(i, "/readyz").await.ok()?;
                let (_, view) = self.get(i, "/cluster").await.ok()?;
                let ready = view["members"]
                    .as_array()?
                    .iter()
                    .filter(|m| m["live"] == true && m["status"] == "ready")
                    .count();
                let moving = view["transit"]
                    .as_array()?
                    .iter()
                    .any(|t| t["state"] == "taking-over" || t["state"] == "installing");
                if status != 200 || ready != nodes.len() || moving {
                    return None;
                }
            }
            Some(())
        })
        .await
    }

    pub fn dump_logs(&self) {
        for node in &self.nodes {
            let text = node.log_text();
            let warnings: Vec<&str> = text
                .lines()
                .filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("panicked"))
                .collect();
            eprintln!("---- warnings of {} ({}) ----", node.id, warnings.len());
            for line in warnings.iter().take(80) {
                eprintln!("{line}");
            }
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("---- last lines of {} ----", node.id);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

/// User `i` of the users tests: a fixed id, name, email and group derived from `i`.
pub fn user(i: usize) -> Value {
    serde_json::json!({
        "id": format!("00000000-0000-4000-8000-{i:012}"),
        "name": format!("user {i}"),
        "email": format!("u{i}@example.com"),
        "group": i,
    })
}
