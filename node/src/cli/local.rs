//! `troupe local`: a whole cluster on 127.0.0.1 in one command, for trying Troupe out.
//!
//! Starts N `troupe node` child processes of this same binary, with ports and data directories
//! derived from a base, waits until every node is ready, prints their URLs, and on Ctrl-C or
//! SIGTERM stops them all with SIGTERM (each node then leaves the cluster cleanly).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use tokio::process::{Child, Command};

use crate::config::ClusterConfig;

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

/// Runs the local cluster until Ctrl-C or SIGTERM.
pub async fn run(args: LocalArgs) -> anyhow::Result<()> {
    // Validate once here so a config mistake is reported once, not by every child.
    let cluster = ClusterConfig::load(
        args.config.as_deref(),
        std::env::var(crate::config::SECRET_ENV).ok(),
    )?;
    for region in &args.regions {
        if cluster
            .region(&crate::ids::RegionName::new(region.clone()))
            .is_none()
        {
            bail!("--regions: {region:?} is not in the region table");
        }
    }
    let nodes = plan(&args)?;
    if args.fresh && args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)
            .with_context(|| format!("cannot delete {}", args.dir.display()))?;
    }
    let exe = std::env::current_exe().context("cannot find the troupe binary")?;
    let seeds: Vec<u16> = nodes.iter().map(|n| n.gossip_port).collect();
    let mut children = Vec::new();
    for node in &nodes {
        children.push(spawn(&exe, node, args.config.as_ref(), &seeds)?);
        println!(
            "{}  {}  region={}  log={}",
            node.id,
            node.url(),
            node.region,
            node.log.display()
        );
    }
    let outcome = tokio::select! {
        ready = wait_ready(&nodes, &mut children) => ready,
        _ = super::termination_signal() => Ok(()),
    };
    match outcome {
        Ok(()) => {
            println!(
                "cluster of {} nodes ready; try: curl {}/cluster   (Ctrl-C stops every node)",
                nodes.len(),
                nodes[0].url()
            );
            watch_children(&nodes, &mut children).await;
        }
        Err(error) => eprintln!("error: {error:#}"),
    }
    stop_all(&nodes, &mut children).await;
    Ok(())
}

fn spawn(
    exe: &PathBuf,
    node: &LocalNode,
    config: Option<&PathBuf>,
    seeds: &[u16],
) -> anyhow::Result<Child> {
    std::fs::create_dir_all(&node.data_dir)
        .with_context(|| format!("cannot create {}", node.data_dir.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log)
        .with_context(|| format!("cannot open {}", node.log.display()))?;
    let err_log = log.try_clone()?;
    Command::new(exe)
        .args(node.node_flags(config, seeds))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start node {}", node.id))
}

async fn wait_ready(nodes: &[LocalNode], children: &mut [Child]) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for (node, child) in nodes.iter().zip(children.iter_mut()) {
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "node {} exited during start-up ({status}); see {}",
                    node.id,
                    node.log.display()
                );
            }
            let ready = client
                .get(format!("{}/readyz", node.url()))
                .send()
                .await
                .map(|r| r.status().is_success());
            if matches!(ready, Ok(true)) {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "node {} is not ready after 60 s; see {}",
                    node.id,
                    node.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Waits for the stop signal, reporting any node that exits on its own meanwhile.
async fn watch_children(nodes: &[LocalNode], children: &mut [Child]) {
    let mut reported = vec![false; children.len()];
    let mut poll = tokio::time::interval(Duration::from_millis(500));
    let signal = super::termination_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => return,
            _ = poll.tick() => {}
        }
        for (i, child) in children.iter_mut().enumerate() {
            if let (false, Ok(Some(status))) = (reported[i], child.try_wait()) {
                eprintln!(
                    "node {} exited ({status}); see {}",
                    nodes[i].id,
                    nodes[i].log.display()
                );
                reported[i] = true;
            }
        }
    }
}

async fn stop_all(nodes: &[LocalNode], children: &mut [Child]) {
    for child in children.iter() {
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    for (node, child) in nodes.iter().zip(children.iter_mut()) {
        match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
            Ok(Ok(status)) => println!("{} stopped ({status})", node.id),
            _ => {
                eprintln!("{} did not stop within 30 s: killing it", node.id);
                let _ = child.kill().await;
            }
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
