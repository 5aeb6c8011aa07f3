//! Configuration: the shared `cluster.toml` and the per-node settings, both validated at start-up.
//!
//! Nothing downstream re-checks a value: once [`ClusterConfig`] and [`NodeConfig`] exist they are
//! valid, and every rejection names the field and the fix.

mod cluster;
mod host_port;
mod node;
mod services;
mod storage;

pub use cluster::{
    read_secret_file, secret_from_env, ClusterConfig, ClusterSection, GossipConfig, HttpConfig,
    RpcConfig, Secret, EMBEDDED_CLUSTER_TOML, MIN_SECRET_BYTES, PREVIOUS_SECRET_ENV, SECRET_ENV,
    SECRET_FILE_ENV,
};
pub use host_port::HostPort;
pub use node::{NodeArgs, NodeConfig};
pub use services::{IntegersConfig, JobsConfig, PartiesConfig, SessionsConfig};
pub use storage::StorageConfig;

/// Why a configuration was refused. Every variant names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file that was asked for.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a field of the wrong type or an unknown field.
    #[error("config file {path} is not valid: {message}")]
    Parse {
        /// The file (or `<embedded>` for the built-in default).
        path: String,
        /// The parser's explanation, with line and column.
        message: String,
    },
    /// No cluster secret was given (the repository's `cluster.toml` holds none on purpose).
    /// A variant of its own because `troupe local` answers it by generating one.
    #[error("invalid cluster.secret: it is not set: {how}")]
    SecretMissing {
        /// How to make and pass one.
        how: &'static str,
    },
    /// A field parsed but its value is not acceptable.
    #[error("invalid {field}: {problem}")]
    Invalid {
        /// Dotted path of the field (`cluster.shards`) or the flag / environment variable name.
        field: &'static str,
        /// What is wrong and what is expected.
        problem: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(field: &'static str, problem: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            problem: problem.into(),
        }
    }
}
