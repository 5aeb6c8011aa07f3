//! `host:port` addresses as peers and clients should use them (advertised addresses).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A host name or IP literal plus a port: what a node advertises so others can reach it.
/// Unlike a `SocketAddr` it may hold a DNS name (`node1:8080` under Docker Compose).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPort {
    host: String,
    port: u16,
}

impl HostPort {
    /// Builds an address from parts; the host must be non-empty.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }

    /// The host part (name or IP literal, IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port part.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("expected host:port, got {s:?}"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!(
                "expected host:port with a non-empty host, got {s:?}"
            ));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("expected a port number 0-65535 after ':', got {s:?}"))?;
        Ok(Self::new(host, port))
    }
}

impl TryFrom<String> for HostPort {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<HostPort> for String {
    fn from(h: HostPort) -> Self {
        h.to_string()
    }
}

impl From<std::net::SocketAddr> for HostPort {
    fn from(addr: std::net::SocketAddr) -> Self {
        Self::new(addr.ip().to_string(), addr.port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_ipv4_and_bracketed_ipv6() {
        assert_eq!(
            "node1:8080".parse::<HostPort>(),
            Ok(HostPort::new("node1", 8080))
        );
        assert_eq!(
            "10.0.0.1:1".parse::<HostPort>(),
            Ok(HostPort::new("10.0.0.1", 1))
        );
        let v6: HostPort = "[::1]:7000".parse().expect("valid");
        assert_eq!(v6.host(), "::1");
        assert_eq!(v6.to_string(), "[::1]:7000");
    }

    #[test]
    fn rejects_missing_host_or_bad_port() {
        assert!(":80".parse::<HostPort>().is_err());
        assert!("host".parse::<HostPort>().is_err());
        assert!("host:99999".parse::<HostPort>().is_err());
    }
}
