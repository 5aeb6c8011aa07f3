//! The I/O seam between node code and the network: listeners and a dialer.
//!
//! Production passes the tokio implementation ([`tcp`]); the simulation passes turmoil's. Node
//! code only sees these traits, so the same code runs on real sockets and on a simulated network.

pub mod tcp;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::HostPort;

/// A bidirectional byte stream (a TCP connection or its simulated twin).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A boxed [`Stream`], so node code is not generic over the network.
pub type BoxStream = Box<dyn Stream>;

/// Accepts inbound connections.
#[async_trait]
pub trait Listener: Send + 'static {
    /// The next inbound connection and its peer address.
    async fn accept(&mut self) -> io::Result<(BoxStream, SocketAddr)>;
    /// The bound address (useful when bound to port 0).
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A boxed [`Listener`].
pub type BoxListener = Box<dyn Listener>;

/// Opens outbound connections to peers by advertised address.
#[async_trait]
pub trait Dialer: Send + Sync + 'static {
    /// Connects to `addr` (a host name is resolved by the implementation).
    async fn dial(&self, addr: &HostPort) -> io::Result<BoxStream>;
}

/// Adapts a [`BoxListener`] to axum's listener trait so the HTTP edge runs on either network.
pub struct AxumListener(pub BoxListener);

impl axum::serve::Listener for AxumListener {
    type Io = BoxStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(conn) => return conn,
                // Accept errors (EMFILE, a reset before accept) are transient: back off briefly
                // instead of spinning or ending the server.
                Err(error) => {
                    tracing::warn!(%error, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}
