//! The `troupe` command line: one subcommand per file. `main.rs` only parses and dispatches.

pub mod explain;
pub mod health;
pub mod local;
pub mod node;
pub mod restart;
pub mod secret;
pub mod status;

use clap::{Parser, Subcommand, ValueEnum};

/// Troupe: a cluster of identical nodes hosting sharded, replicated actors.
#[derive(Parser, Debug)]
#[command(name = "troupe", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
    /// Log line format: `text` for people, `json` (one object per line) for log collectors.
    #[arg(long, global = true, env = LOG_FORMAT_ENV, default_value = "text")]
    pub log_format: LogFormat,
}

/// The environment variable of `--log-format`; `troupe local` passes it on to its nodes.
pub const LOG_FORMAT_ENV: &str = "TROUPE_LOG_FORMAT";

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `2026-12-07T05:00:00.123Z  INFO span{field=..}: message key=value`.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, the message and fields at the
    /// top level, and the spans it was logged in.
    Json,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one node.
    Node(Box<crate::config::NodeArgs>),
    /// Start a local cluster of N nodes on 127.0.0.1 as child processes; Ctrl-C stops them all.
    Local(local::LocalArgs),
    /// Rolling restart of a cluster started with `troupe local`, one node at a time.
    Restart(restart::RestartArgs),
    /// Probe a URL once (container health checks); exit status 0 on 2xx.
    Health(health::HealthArgs),
    /// Print a new random cluster secret (for TROUPE_SECRET_FILE or TROUPE_SECRET).
    Secret,
    /// Print the cluster as a table: members, shards per node, lease and shards in transit.
    Status(status::StatusArgs),
    /// Explain where an entity lives: its shard, owner, replicas, epoch and why placement
    /// chose them.
    Explain(explain::ExplainArgs),
}

/// Installs the log subscriber: `RUST_LOG` style filter from `TROUPE_LOG` (default `info`),
/// lines in `format`.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TROUPE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => {
            // Colour only for a person at a terminal; log files (troupe local, Compose) stay
            // plain.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
            builder.with_target(false).with_ansi(ansi).init();
        }
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .init(),
    }
}

/// Resolves when the process receives SIGTERM or Ctrl-C (SIGINT).
pub async fn termination_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
