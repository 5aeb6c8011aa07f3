//! `troupe local`: a whole cluster on 127.0.0.1 in one command, for trying Troupe out.
//!
//! Starts N `troupe node` child processes of this same binary, with ports and data directories
//! derived from a base, waits until every node is ready, prints their URLs, and on Ctrl-C or
//! SIGTERM stops them all with SIGTERM (each node then leaves the cluster cleanly).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use tokio::process::{Child, Command};

use crate::config::{ClusterConfig, ConfigError};

/// File in the cluster directory holding the secret `troupe local` generated for that cluster.
pub const SECRET_FILE: &str = "secret";

/// The secret file of the local cluster in `dir`, generated on first use and kept (owner-only)
/// for the cluster's later starts, so its nodes' data stays theirs across runs; `--fresh`
/// deletes it with the data.
fn cluster_secret_file(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(SECRET_FILE);
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{}", super::secret::generate()?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Flags of `troupe local`.
#[derive(Args, Clone, Debug)]
pub struct LocalArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub nodes: u16,
    /// Node i (from 1) listens for HTTP on base+i-1, gossip on base+100+i-1, RPC on base+200+i-1.
    #[arg(long, default_value_t = 8080)]
    pub base_port: u16,
    /// Directory holding each node's data directory and log file.
    #[arg(long, default_value = ".troupe/local")]
    pub dir: PathBuf,
    /// cluster.toml to use (default: the embedded one).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Regions given to the nodes in turn.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "eu-west-1,us-east-1,ap-southeast-1"
    )]
    pub regions: Vec<String>,
    /// Delete the nodes' data directories first.
    #[arg(long)]
    pub fresh: bool,
}

/// One planned node of a local cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalNode {
    /// `n1`, `n2`, ...
    pub id: String,
    /// Region from `--regions`, round-robin.
    pub region: String,
    /// HTTP port.
    pub http_port: u16,
    /// Gossip port.
    pub gossip_port: u16,
    /// RPC port.
    pub rpc_port: u16,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Log file.
    pub log: PathBuf,
}

impl LocalNode {
    /// `troupe node` flags for this node; `seeds` are the gossip ports of the others.
    pub fn node_flags(&self, config: Option<&PathBuf>, seeds: &[u16]) -> Vec<String> {
        let mut flags = vec![
            "node".to_owned(),
            format!("--node-id={}", self.id),
            format!("--region={}", self.region),
            format!("--http-listen=127.0.0.1:{}", self.http_port),
            format!("--gossip-listen=127.0.0.1:{}", self.gossip_port),
            format!("--rpc-listen=127.0.0.1:{}", self.rpc_port),
            format!("--data-dir={}", self.data_dir.display()),
        ];
        let seeds: Vec<String> = seeds
            .iter()
            .filter(|&&p| p != self.gossip_port)
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        if !seeds.is_empty() {
            flags.push(format!("--seeds={}", seeds.join(",")));
        }
        if let Some(path) = config {
            flags.push(format!("--config={}", path.display()));
        }
        flags
    }

    /// The node's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }
}

/// Derives every node's ports and paths; refuses a base port whose derived ports overflow.
pub fn plan(args: &LocalArgs) -> anyhow::Result<Vec<LocalNode>> {
    if args.regions.is_empty() {
        bail!("--regions needs at least one region");
    }
    let last = u32::from(args.base_port) + 200 + u32::from(args.nodes) - 1;
    if args.base_port == 0 || last > u32::from(u16::MAX) {
        bail!(
            "--base-port {} leaves no room for {} nodes (ports up to base+200+N-1 must be valid)",
            args.base_port,
            args.nodes
        );
    }
    Ok((0..args.nodes)
        .map(|i| {
            let id = format!("n{}", i + 1);
            LocalNode {
                region: args.regions[usize::from(i) % args.regions.len()].clone(),
                http_port: args.base_port + i,
                gossip_port: args.base_port + 100 + i,
                rpc_port: args.base_port + 200 + i,
                data_dir: args.dir.join(&id).join("data"),
                log: args.dir.join(format!("{id}.log")),
                id,
            }
        })
        .collect())
}

/// Name of the state file `troupe local` keeps in its directory for `troupe restart`.
pub const STATE_FILE: &str = "local.json";

/// What `troupe restart` needs to find a running local cluster.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct LocalState {
    /// Process id of `troupe local`.
    pub pid: u32,
    /// Node ids and base URLs, in order.
    pub nodes: Vec<(String, String)>,
}

/// The cluster's validated config, and the secret file its nodes are to read when neither the
/// environment nor the config gives a secret: a local cluster then gets one of its own
/// (`cluster_secret_file`) instead of a shared, published one.
fn load_config(args: &LocalArgs) -> anyhow::Result<(ClusterConfig, Option<PathBuf>)> {
    let env_secret = crate::config::secret_from_env()?;
    match ClusterConfig::load(args.config.as_deref(), env_secret) {
        Ok(cluster) => Ok((cluster, None)),
        Err(ConfigError::SecretMissing { .. }) => {
            let file = cluster_secret_file(&args.dir)?;
            let secret = crate::config::read_secret_file(&file)?;
            let cluster = ClusterConfig::load(args.config.as_deref(), Some(secret))?;
            Ok((cluster, Some(file)))
        }
        Err(error) => Err(error.into()),
    }
}

/// Runs the local cluster until Ctrl-C or SIGTERM; SIGUSR1 triggers a rolling restart. The
/// nodes log in `log_format`, as this process does.
pub async fn run(args: LocalArgs, log_format: super::LogFormat) -> anyhow::Result<()> {
    let nodes = plan(&args)?;
    if args.fresh && args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)
            .with_context(|| format!("cannot delete {}", args.dir.display()))?;
    }
    // Validate once here so a config mistake is reported once, not by every child.
    let (cluster, secret_file) = load_config(&args)?;
    for region in &args.regions {
        if cluster
            .region(&crate::ids::RegionName::new(region.clone()))
            .is_none()
        {
            bail!("--regions: {region:?} is not in the region table");
        }
    }
    let mut running = Running::new(nodes, args.config.clone(), secret_file, log_format)?;
    for i in 0..running.nodes.len() {
        running.start(i)?;
        let node = &running.nodes[i];
        println!(
            "{}  {}  region={}  log={}",
            node.id,
            node.url(),
            node.region,
            node.log.display()
        );
    }
    let outcome = tokio::select! {
        ready = running.wait_all_ready() => ready,
        _ = super::termination_signal() => Ok(()),
    };
    let state_file = args.dir.join(STATE_FILE);
    let outcome = match outcome {
        Ok(()) => {
            let state = LocalState {
                pid: std::process::id(),
                nodes: running
                    .nodes
                    .iter()
                    .map(|n| (n.id.clone(), n.url()))
                    .collect(),
            };
            std::fs::write(&state_file, serde_json::to_vec(&state)?)
                .with_context(|| format!("cannot write {}", state_file.display()))?;
            println!(
                "cluster of {} nodes ready; try: curl {}/cluster   (Ctrl-C stops every node; `troupe restart --dir {}` restarts them one at a time)",
                running.nodes.len(),
                running.nodes[0].url(),
                args.dir.display()
            );
            running.watch().await
        }
        Err(error) => Err(error),
    };
    let _ = std::fs::remove_file(&state_file);
    running.stop_all().await;
    // A cluster that never became ready (or could not be watched) is a failed start: the
    // exit status says so to scripts, after every node is stopped.
    outcome
}

/// The child processes of a local cluster, one slot per planned node.
struct Running {
    exe: PathBuf,
    config: Option<PathBuf>,
    /// The generated secret, handed to every node; `None` when the config or the environment
    /// gives one (the nodes then read it the same way).
    secret_file: Option<PathBuf>,
    log_format: super::LogFormat,
    seeds: Vec<u16>,
    nodes: Vec<LocalNode>,
    children: Vec<Option<Child>>,
    http: reqwest::Client,
}

/// How long one node may take to become ready (and be seen ready by all the others).
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(30);

impl Running {
    fn new(
        nodes: Vec<LocalNode>,
        config: Option<PathBuf>,
        secret_file: Option<PathBuf>,
        log_format: super::LogFormat,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            exe: std::env::current_exe().context("cannot find the troupe binary")?,
            config,
            secret_file,
            log_format,
            seeds: nodes.iter().map(|n| n.gossip_port).collect(),
            children: nodes.iter().map(|_| None).collect(),
            nodes,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()?,
        })
    }

    fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        std::fs::create_dir_all(&node.data_dir)
            .with_context(|| format!("cannot create {}", node.data_dir.display()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("cannot open {}", node.log.display()))?;
        let err_log = log.try_clone()?;
        let mut command = Command::new(&self.exe);
        let format = clap::ValueEnum::to_possible_value(&self.log_format)
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default();
        command.env(super::LOG_FORMAT_ENV, format);
        if let Some(secret_file) = &self.secret_file {
            command
                .env(crate::config::SECRET_FILE_ENV, secret_file)
                .env_remove(crate::config::SECRET_ENV);
        }
        let child = command
            .args(node.node_flags(self.config.as_ref(), &self.seeds))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start node {}", node.id))?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// Waits until node `i` answers `/readyz` and every running node lists it live and ready.
    async fn wait_ready(&mut self, i: usize) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        let (id, log) = (self.nodes[i].id.clone(), self.nodes[i].log.clone());
        loop {
            // Any node, not only the one awaited: one that died meanwhile would leave a
            // cluster announced as ready with a node missing.
            self.check_running()?;
            if self.ready_everywhere(i).await {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "node {id} is not ready after {} s; see {}",
                    READY_WITHIN.as_secs(),
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An error naming the first started node that has exited.
    fn check_running(&mut self) -> anyhow::Result<()> {
        for (node, child) in self.nodes.iter().zip(&mut self.children) {
            if let Some(status) = child.as_mut().map(Child::try_wait).transpose()?.flatten() {
                bail!(
                    "node {} exited ({status}); see {}",
                    node.id,
                    node.log.display()
                );
            }
        }
        Ok(())
    }

    async fn ready_everywhere(&self, i: usize) -> bool {
        let ready = self
            .http
            .get(format!("{}/readyz", self.nodes[i].url()))
            .send()
            .await;
        if !matches!(ready.map(|r| r.status().is_success()), Ok(true)) {
            return false;
        }
        for (j, other) in self.nodes.iter().enumerate() {
            if self.children[j].is_none() {
                continue;
            }
            let view = self
                .http
                .get(format!("{}/cluster", other.url()))
                .send()
                .await;
            let Ok(view) = view else { return false };
            let Ok(view) = view.json::<serde_json::Value>().await else {
                return false;
            };
            let listed = view["members"].as_array().is_some_and(|members| {
                members.iter().any(|m| {
                    m["node_id"] == self.nodes[i].id.as_str()
                        && m["live"] == true
                        && m["status"] == "ready"
                })
            });
            if !listed {
                return false;
            }
        }
        true
    }

    async fn wait_all_ready(&mut self) -> anyhow::Result<()> {
        for i in 0..self.nodes.len() {
            self.wait_ready(i).await?;
        }
        self.check_running()
    }

    /// SIGTERM, then waits for the exit (killing the node after [`STOP_WITHIN`]).
    async fn stop(&mut self, i: usize) {
        let Some(mut child) = self.children[i].take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        match tokio::time::timeout(STOP_WITHIN, child.wait()).await {
            Ok(Ok(status)) => println!("{} stopped ({status})", self.nodes[i].id),
            _ => {
                eprintln!(
                    "{} did not stop within {} s: killing it",
                    self.nodes[i].id,
                    STOP_WITHIN.as_secs()
                );
                let _ = child.kill().await;
            }
        }
    }

    /// Restarts the nodes one at a time: stop, start, wait until ready and seen by all.
    async fn rolling_restart(&mut self) -> anyhow::Result<()> {
        let started = tokio::time::Instant::now();
        for i in 0..self.nodes.len() {
            self.stop(i).await;
            self.start(i)?;
            self.wait_ready(i).await?;
            println!("{} restarted and ready", self.nodes[i].id);
        }
        println!(
            "rolling restart of {} nodes done in {:.1} s",
            self.nodes.len(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Serves until Ctrl-C or SIGTERM: SIGUSR1 triggers a rolling restart; a node that exits on
    /// its own is reported.
    async fn watch(&mut self) -> anyhow::Result<()> {
        let mut reported = vec![false; self.nodes.len()];
        let mut poll = tokio::time::interval(Duration::from_millis(500));
        let mut restart =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
        let stop = super::termination_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                // Ctrl-C or SIGTERM: stop everything.
                _ = &mut stop => return Ok(()),
                // `troupe restart` asked for a rolling restart.
                _ = restart.recv() => {
                    if let Err(error) = self.rolling_restart().await {
                        eprintln!("rolling restart failed: {error:#}");
                    }
                    reported.fill(false);
                }
                // Time to look for nodes that exited on their own.
                _ = poll.tick() => {}
            }
            for (i, child) in self.children.iter_mut().enumerate() {
                if let (false, Some(Ok(Some(status)))) =
                    (reported[i], child.as_mut().map(Child::try_wait))
                {
                    eprintln!(
                        "node {} exited ({status}); see {}",
                        self.nodes[i].id,
                        self.nodes[i].log.display()
                    );
                    reported[i] = true;
                }
            }
        }
    }

    async fn stop_all(&mut self) {
        for child in self.children.iter().flatten() {
            if let Some(pid) = child.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        for i in 0..self.nodes.len() {
            self.stop(i).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        local: LocalArgs,
    }

    fn args(extra: &[&str]) -> LocalArgs {
        Cli::try_parse_from(std::iter::once("local").chain(extra.iter().copied()))
            .expect("flags parse")
            .local
    }

    #[test]
    fn plan_derives_ports_dirs_and_regions_from_the_base() {
        let nodes = plan(&args(&[
            "--nodes",
            "4",
            "--base-port",
            "9000",
            "--dir",
            "/tmp/x",
        ]))
        .expect("valid");
        assert_eq!(nodes.len(), 4);
        assert_eq!(
            (nodes[3].http_port, nodes[3].gossip_port, nodes[3].rpc_port),
            (9003, 9103, 9203)
        );
        assert_eq!(nodes[3].data_dir, PathBuf::from("/tmp/x/n4/data"));
        assert_eq!(nodes[3].region, "eu-west-1");
        assert_eq!(nodes[1].region, "us-east-1");
    }

    #[test]
    fn node_flags_seed_every_other_node_but_not_itself() {
        let nodes = plan(&args(&["--nodes", "3"])).expect("valid");
        let seeds: Vec<u16> = nodes.iter().map(|n| n.gossip_port).collect();
        let flags = nodes[0].node_flags(None, &seeds);
        assert!(
            flags.contains(&"--seeds=127.0.0.1:8181,127.0.0.1:8182".to_owned()),
            "{flags:?}"
        );
    }

    #[test]
    fn base_port_that_overflows_is_refused() {
        assert!(plan(&args(&["--base-port", "65400"])).is_err());
    }
}
