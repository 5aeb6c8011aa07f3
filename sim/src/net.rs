//! The simulated network behind the node's [`Listener`] / [`Dialer`] seam: turmoil TCP.
//!
//! Node code only sees the traits, so the HTTP edge and inter-node RPC run unchanged on
//! turmoil's network, where the simulation controls latency, loss, partitions and crashes.

use std::cell::Cell;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use troupe_node::config::HostPort;
use troupe_node::net::{BoxStream, Dialer, Listener};
use turmoil::net::{TcpListener, TcpStream};

use crate::determinism::trace;

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
        Ok((Box::new(Traced::new(stream)?), peer))
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
        RPC_TRAFFIC.with(|t| {
            t.set(RpcTraffic {
                connections: t.get().connections + 1,
                ..t.get()
            })
        });
        let mut stream = Traced::new(stream)?;
        stream.counts_rpc = true;
        Ok(Box::new(stream))
    }
}

/// Inter-node RPC traffic of the simulations run on this thread so far, counted at the
/// dialing end of every connection (every RPC connection is dialed by exactly one node, so
/// each byte is counted once, whichever way it went). turmoil runs a whole simulation on the
/// thread that steps it, so concurrent tests do not mix their counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RpcTraffic {
    /// Connections dialed.
    pub connections: u64,
    /// Bytes written and read on them, handshakes and encryption included.
    pub bytes: u64,
}

impl RpcTraffic {
    /// What was added after `earlier`, a reading of the same counters.
    pub fn since(&self, earlier: &RpcTraffic) -> RpcTraffic {
        RpcTraffic {
            connections: self.connections.saturating_sub(earlier.connections),
            bytes: self.bytes.saturating_sub(earlier.bytes),
        }
    }
}

thread_local! {
    static RPC_TRAFFIC: Cell<RpcTraffic> = const { Cell::new(RpcTraffic { connections: 0, bytes: 0 }) };
}

/// The RPC traffic of this thread's simulations so far.
pub fn rpc_traffic() -> RpcTraffic {
    RPC_TRAFFIC.with(Cell::get)
}

fn count_rpc_bytes(bytes: usize) {
    RPC_TRAFFIC.with(|t| {
        t.set(RpcTraffic {
            bytes: t.get().bytes + bytes as u64,
            ..t.get()
        })
    });
}

/// A TCP stream whose every read is recorded in the run's trace as a message delivered from
/// its peer to its host ([`crate::determinism::trace`]); a dialed inter-node stream also adds
/// every byte through it to [`rpc_traffic`].
pub struct Traced {
    stream: TcpStream,
    /// `host<-peer`, as the trace shows it.
    link: String,
    counts_rpc: bool,
}

impl Traced {
    /// Wraps `stream`, naming its two ends.
    pub fn new(stream: TcpStream) -> io::Result<Self> {
        let link = format!("{}<-{}", stream.local_addr()?, stream.peer_addr()?);
        Ok(Self {
            stream,
            link,
            counts_rpc: false,
        })
    }
}

impl AsyncRead for Traced {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(result) = &polled {
            let read = &buf.filled()[before..];
            if this.counts_rpc {
                count_rpc_bytes(read.len());
            }
            trace::record("tcp", read, |line| {
                line.push_str(&this.link);
                if let Err(error) = result {
                    line.push_str(&format!(" error {error}"));
                } else if read.is_empty() {
                    line.push_str(" eof");
                }
            });
        }
        polled
    }
}

impl AsyncWrite for Traced {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        if let (Poll::Ready(Ok(written)), true) = (&polled, this.counts_rpc) {
            count_rpc_bytes(*written);
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
