//! The simulated network behind the node's [`Listener`] / [`Dialer`] seam: turmoil TCP.
//!
//! Node code only sees the traits, so the HTTP edge and inter-node RPC run unchanged on
//! turmoil's network, where the simulation controls latency, loss, partitions and crashes.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use async_trait::async_trait;
use troupe_node::config::HostPort;
use troupe_node::net::{BoxStream, Dialer, Listener};
use turmoil::net::{TcpListener, TcpStream};

/// A turmoil TCP listener behind the node's [`Listener`] seam.
pub struct SimListener(TcpListener);

impl SimListener {
    /// Binds `0.0.0.0:port` on the current simulated host (turmoil binds only the wildcard or
    /// loopback addresses, so the host's own address cannot be named here).
    pub async fn bind(port: u16) -> io::Result<Self> {
        Ok(Self(
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).await?,
        ))
    }
}

#[async_trait]
impl Listener for SimListener {
    async fn accept(&mut self) -> io::Result<(BoxStream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        Ok((Box::new(stream), peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Dials peers over turmoil TCP. Hosts are IP literals or turmoil host names, both resolved by
/// turmoil's own DNS table, never the system resolver.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimDialer;

#[async_trait]
impl Dialer for SimDialer {
    async fn dial(&self, addr: &HostPort) -> io::Result<BoxStream> {
        let stream = TcpStream::connect((addr.host(), addr.port())).await?;
        Ok(Box::new(stream))
    }
}
