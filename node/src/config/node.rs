//! Per-node settings: flags or `TROUPE_*` environment variables, validated against the cluster
//! config (a node whose region is not in the region table refuses to start).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::cluster::is_name_char;
use super::{ClusterConfig, ConfigError, HostPort};
use crate::ids::{NodeId, RegionName};

/// Command-line flags of `troupe node`; each one also reads a `TROUPE_*` environment variable.
#[derive(Args, Clone, Debug)]
pub struct NodeArgs {
    /// Path of the shared cluster.toml (default: the copy embedded in the binary).
    #[arg(long, env = "TROUPE_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's id, unique in the cluster (letters, digits, '-', '_', '.').
    #[arg(long, env = "TROUPE_NODE_ID")]
    pub node_id: String,
    /// This node's region; must be in the region table.
    #[arg(long, env = "TROUPE_REGION", default_value = "eu-west-1")]
    pub region: String,
    /// Address the HTTP edge listens on.
    #[arg(long, env = "TROUPE_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    pub http_listen: SocketAddr,
    /// HTTP address clients and peers should use (default: the listen address).
    #[arg(long, env = "TROUPE_HTTP_ADVERTISE")]
    pub http_advertise: Option<HostPort>,
    /// Address of a second HTTP listener for the operator's views (`/cluster...`, `/metrics`);
    /// when set, the client listener no longer serves them (default: both on --http-listen).
    #[arg(long, env = "TROUPE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// UDP address gossip listens on.
    #[arg(long, env = "TROUPE_GOSSIP_LISTEN", default_value = "127.0.0.1:7946")]
    pub gossip_listen: SocketAddr,
    /// Gossip address peers should use (default: the listen address).
    #[arg(long, env = "TROUPE_GOSSIP_ADVERTISE")]
    pub gossip_advertise: Option<HostPort>,
    /// TCP address of the inter-node RPC listener.
    #[arg(long, env = "TROUPE_RPC_LISTEN", default_value = "127.0.0.1:7947")]
    pub rpc_listen: SocketAddr,
    /// RPC address peers should use (default: the listen address).
    #[arg(long, env = "TROUPE_RPC_ADVERTISE")]
    pub rpc_advertise: Option<HostPort>,
    /// Gossip addresses of nodes to join through, comma separated (host:port).
    #[arg(long, env = "TROUPE_SEEDS", value_delimiter = ',')]
    pub seeds: Vec<HostPort>,
    /// Directory of this node's LMDB environment.
    #[arg(long, env = "TROUPE_DATA_DIR", default_value = ".troupe/data")]
    pub data_dir: PathBuf,
}

/// Validated per-node settings.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Stable id of this node.
    pub node_id: NodeId,
    /// Region from the region table.
    pub region: RegionName,
    /// HTTP listen address.
    pub http_listen: SocketAddr,
    /// HTTP address advertised to clients and peers.
    pub http_advertise: HostPort,
    /// Listen address of the operator's views, if they have a listener of their own.
    pub admin_listen: Option<SocketAddr>,
    /// Gossip (UDP) listen address.
    pub gossip_listen: SocketAddr,
    /// Gossip address advertised to peers; resolved to an IP at boot.
    pub gossip_advertise: HostPort,
    /// RPC (TCP) listen address.
    pub rpc_listen: SocketAddr,
    /// RPC address advertised to peers.
    pub rpc_advertise: HostPort,
    /// Gossip seeds.
    pub seeds: Vec<HostPort>,
    /// LMDB directory.
    pub data_dir: PathBuf,
}

impl NodeArgs {
    /// Checks the flags against the cluster config.
    pub fn validate(self, cluster: &ClusterConfig) -> Result<NodeConfig, ConfigError> {
        let node_id = validate_node_id(&self.node_id)?;
        let region = RegionName::new(self.region.clone());
        if cluster.region(&region).is_none() {
            let known: Vec<&str> = cluster.regions.iter().map(|r| r.name.as_str()).collect();
            return Err(ConfigError::invalid(
                "region (--region / TROUPE_REGION)",
                format!(
                    "{:?} is not in the region table; known regions: {}",
                    self.region,
                    known.join(", ")
                ),
            ));
        }
        let http_advertise = advertise(
            self.http_advertise,
            self.http_listen,
            "http-advertise (--http-advertise / TROUPE_HTTP_ADVERTISE)",
        )?;
        let gossip_advertise = advertise(
            self.gossip_advertise,
            self.gossip_listen,
            "gossip-advertise (--gossip-advertise / TROUPE_GOSSIP_ADVERTISE)",
        )?;
        let rpc_advertise = advertise(
            self.rpc_advertise,
            self.rpc_listen,
            "rpc-advertise (--rpc-advertise / TROUPE_RPC_ADVERTISE)",
        )?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "data-dir (--data-dir / TROUPE_DATA_DIR)",
                "must be a directory path",
            ));
        }
        Ok(NodeConfig {
            node_id,
            region,
            http_listen: self.http_listen,
            http_advertise,
            admin_listen: self.admin_listen,
            gossip_listen: self.gossip_listen,
            gossip_advertise,
            rpc_listen: self.rpc_listen,
            rpc_advertise,
            seeds: self.seeds,
            data_dir: self.data_dir,
        })
    }
}

fn validate_node_id(id: &str) -> Result<NodeId, ConfigError> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(is_name_char) {
        return Err(ConfigError::invalid(
            "node-id (--node-id / TROUPE_NODE_ID)",
            format!("must be 1 to 64 letters, digits, '-', '_' or '.', got {id:?}"),
        ));
    }
    Ok(NodeId::new(id))
}

/// The advertised address: the explicit one, or the listen address when that is reachable as is.
fn advertise(
    explicit: Option<HostPort>,
    listen: SocketAddr,
    field: &'static str,
) -> Result<HostPort, ConfigError> {
    match explicit {
        Some(addr) if addr.port() == 0 => Err(ConfigError::invalid(field, "the advertised port must not be 0")),
        Some(addr) => Ok(addr),
        None if listen.ip().is_unspecified() => Err(ConfigError::invalid(
            field,
            format!("the listen address {listen} is a wildcard, so peers cannot use it: set the advertised host:port"),
        )),
        None => Ok(listen.into()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        node: NodeArgs,
    }

    fn validate(args: &[&str]) -> Result<NodeConfig, ConfigError> {
        let cluster = ClusterConfig::load(None, Some("node-config-test-secret-of-32-bytes".into()))
            .expect("embedded config is valid");
        let cli = Cli::try_parse_from(std::iter::once("troupe").chain(args.iter().copied()))
            .expect("flags parse");
        cli.node.validate(&cluster)
    }

    #[test]
    fn valid_flags_default_the_advertised_addresses_to_the_listen_ones() {
        let c = validate(&[
            "--node-id",
            "n1",
            "--region",
            "us-east-1",
            "--rpc-listen",
            "127.0.0.1:9000",
        ])
        .expect("valid");
        assert_eq!(c.node_id.as_str(), "n1");
        assert_eq!(c.rpc_advertise.to_string(), "127.0.0.1:9000");
    }

    #[test]
    fn unknown_region_is_refused_and_the_known_ones_listed() {
        let err = validate(&["--node-id", "n1", "--region", "mars-1"])
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("invalid region") && err.contains("\"mars-1\" is not in the region table"),
            "{err}"
        );
        assert!(err.contains("eu-west-1"), "{err}");
    }

    #[test]
    fn bad_node_id_is_refused() {
        let err = validate(&["--node-id", "no spaces"])
            .expect_err("refused")
            .to_string();
        assert!(err.contains("invalid node-id"), "{err}");
    }

    #[test]
    fn wildcard_listen_without_advertise_is_refused() {
        let err = validate(&["--node-id", "n1", "--http-listen", "0.0.0.0:8080"])
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("invalid http-advertise") && err.contains("wildcard"),
            "{err}"
        );
        let ok = validate(&[
            "--node-id",
            "n1",
            "--http-listen",
            "0.0.0.0:8080",
            "--http-advertise",
            "node1:8080",
        ]);
        assert_eq!(ok.expect("valid").http_advertise.to_string(), "node1:8080");
    }
}
