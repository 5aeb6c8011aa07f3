//! `troupe restart`: a rolling restart of a cluster started with `troupe local`.
//!
//! Asks the `troupe local` process (found through its state file) to restart its nodes one at
//! a time (SIGTERM, wait until gone, start, wait until ready and seen by every node), and waits
//! until every node runs as a new generation and the cluster agrees again. The Compose
//! equivalent is `scripts/compose-test.sh`'s rolling restart step (see README).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use super::local::{LocalState, STATE_FILE};

/// Flags of `troupe restart`.
#[derive(Args, Clone, Debug)]
pub struct RestartArgs {
    /// The `--dir` the local cluster was started with.
    #[arg(long, default_value = ".troupe/local")]
    pub dir: PathBuf,
    /// Seconds allowed per node.
    #[arg(long, default_value_t = 60)]
    pub per_node_secs: u64,
}

/// Triggers the rolling restart and waits for it to complete.
pub async fn run(args: RestartArgs) -> anyhow::Result<()> {
    let path = args.dir.join(STATE_FILE);
    let text = std::fs::read(&path).with_context(|| format!("no running local cluster found ({} is missing): start one with `troupe local --dir {}`", path.display(), args.dir.display()))?;
    let state: LocalState = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a local cluster state file", path.display()))?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let before = generations(&http, &state)
        .await
        .context("the local cluster does not answer")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(state.pid as i32),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .with_context(|| format!("cannot signal troupe local (pid {})", state.pid))?;
    println!("rolling restart of {} nodes requested", state.nodes.len());
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_secs(args.per_node_secs) * state.nodes.len() as u32;
    loop {
        if let Some(after) = generations(&http, &state).await {
            if after
                .iter()
                .all(|(node, generation)| before.get(node).is_some_and(|old| generation > old))
            {
                println!(
                    "rolling restart done in {:.1} s: every node runs a new generation",
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "rolling restart did not complete within {} s per node",
                args.per_node_secs
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each node's generation as every node sees it, when all nodes answer and agree that every
/// node is live and ready; `None` otherwise.
async fn generations(http: &reqwest::Client, state: &LocalState) -> Option<BTreeMap<String, u64>> {
    let mut agreed: Option<BTreeMap<String, u64>> = None;
    for (_, url) in &state.nodes {
        let view: serde_json::Value = http
            .get(format!("{url}/cluster"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let seen: BTreeMap<String, u64> = view["members"]
            .as_array()?
            .iter()
            .filter(|m| m["live"] == true && m["status"] == "ready")
            .filter_map(|m| Some((m["node_id"].as_str()?.to_owned(), m["generation"].as_u64()?)))
            .collect();
        if seen.len() != state.nodes.len() || agreed.as_ref().is_some_and(|a| *a != seen) {
            return None;
        }
        agreed = Some(seen);
    }
    agreed
}
