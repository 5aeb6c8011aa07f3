//! `troupe health <url>`: exits 0 when the URL answers 2xx within the timeout, 1 otherwise.
//!
//! Container images are built `FROM scratch` (no shell, no curl), so health checks run the
//! binary itself.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

/// Flags of `troupe health`.
#[derive(Args, Clone, Debug)]
pub struct HealthArgs {
    /// URL to probe.
    #[arg(default_value = "http://127.0.0.1:8080/healthz")]
    pub url: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 2)]
    pub timeout_secs: u64,
}

/// Probes the URL once.
pub async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs))
        .build()?;
    let response = client
        .get(&args.url)
        .send()
        .await
        .with_context(|| format!("{} did not answer", args.url))?;
    if !response.status().is_success() {
        bail!("{} answered {}", args.url, response.status());
    }
    Ok(())
}
