//! `troupe node`: run one node on real sockets until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::boot::{self, NodeIo};
use crate::config::{ClusterConfig, HostPort, NodeArgs, NodeConfig};
use crate::membership::mismatch::KeyMismatches;
use crate::membership::seal::GossipKeys;
use crate::membership::sealed_udp::SealedUdpTransport;
use crate::net::tcp::{TcpAcceptor, TcpDialer};
use crate::storage::WriteMode;

/// Loads and validates the configuration, binds the sockets, and runs the node.
pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let secret = crate::config::secret_from_env()?;
    let mut cluster = ClusterConfig::load(args.config.as_deref(), secret)?;
    if let Ok(previous) = std::env::var(crate::config::PREVIOUS_SECRET_ENV) {
        cluster.set_previous_secret(previous)?;
    }
    let config = args.validate(&cluster)?;
    let io = production_io(&config, &cluster).await?;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        super::termination_signal().await;
        trigger.cancel();
    });
    boot::run(cluster, config, io, shutdown).await?;
    Ok(())
}

/// Binds the real listeners and resolves the advertised gossip address.
pub async fn production_io(config: &NodeConfig, cluster: &ClusterConfig) -> anyhow::Result<NodeIo> {
    let http = TcpAcceptor::bind(config.http_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen for http on {} (--http-listen)",
                config.http_listen
            )
        })?;
    let admin = match config.admin_listen {
        Some(addr) => {
            let listener = TcpAcceptor::bind(addr).await.with_context(|| {
                format!("cannot listen for the operator's views on {addr} (--admin-listen)")
            })?;
            Some(Box::new(listener) as crate::net::BoxListener)
        }
        None => None,
    };
    let rpc = TcpAcceptor::bind(config.rpc_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen for rpc on {} (--rpc-listen)",
                config.rpc_listen
            )
        })?;
    let key_mismatches = KeyMismatches::default();
    Ok(NodeIo {
        http: Box::new(http),
        admin,
        rpc: Box::new(rpc),
        dialer: Arc::new(TcpDialer),
        gossip: Box::new(SealedUdpTransport::new(
            GossipKeys::derive(
                &cluster.cluster.name,
                &cluster.cluster.secret,
                cluster.cluster.previous_secret.as_ref(),
            ),
            key_mismatches.clone(),
        )),
        key_mismatches,
        gossip_advertise: resolve(&config.gossip_advertise).await?,
        writes: WriteMode::Thread,
        generation_floor: crate::clock::unix_millis(),
    })
}

async fn resolve(addr: &HostPort) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host((addr.host(), addr.port()))
        .await
        .with_context(|| format!("cannot resolve the gossip advertise address {addr}"))?
        .next()
        .with_context(|| format!("the gossip advertise address {addr} resolves to nothing"))
}
