//! The production network: tokio TCP.

use std::io;
use std::net::SocketAddr;

use async_trait::async_trait;
use tokio::net::{TcpListener, TcpStream};

use super::{BoxStream, Dialer, Listener};
use crate::config::HostPort;

/// A tokio TCP listener behind the [`Listener`] seam.
pub struct TcpAcceptor(TcpListener);

impl TcpAcceptor {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        Ok(Self(TcpListener::bind(addr).await?))
    }
}

#[async_trait]
impl Listener for TcpAcceptor {
    async fn accept(&mut self) -> io::Result<(BoxStream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        stream.set_nodelay(true)?;
        Ok((Box::new(stream), peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Dials peers with tokio TCP, resolving host names through the system resolver.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpDialer;

#[async_trait]
impl Dialer for TcpDialer {
    async fn dial(&self, addr: &HostPort) -> io::Result<BoxStream> {
        let stream = TcpStream::connect((addr.host(), addr.port())).await?;
        // Small request/response frames: Nagle would add latency to every forwarded call.
        stream.set_nodelay(true)?;
        Ok(Box::new(stream))
    }
}
