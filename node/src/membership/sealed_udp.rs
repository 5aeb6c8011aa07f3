//! The production gossip transport: chitchat over UDP with every datagram sealed
//! ([`super::seal`]), so a host without the cluster secret can neither read nor change any
//! node's view.
//!
//! chitchat 0.13 keeps its message encoding crate-private; the only public codec is its own
//! [`chitchat::transport::UdpSocket`]. So each socket owns three UDP sockets: the public one on
//! the gossip port, chitchat's socket on `127.0.0.1:0` used only as the codec, and a tap on
//! `127.0.0.1:0`. Sending, the codec encodes the envelope to the tap, the tap's bytes are sealed
//! and go out on the public socket. Receiving, a sealed datagram is opened and relayed from the
//! tap to the codec, which decodes it; the envelope then carries the real sender's address.
//! Both loopback sockets accept bytes only from each other. Nothing unauthenticated reaches
//! chitchat's decoder. Decision 019 records the alternatives and the measured cost.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket as CodecSocket};
use chitchat::ChitchatEnvelope;
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::mismatch::{KeyMismatches, NOTICE};
use super::seal::{GossipKeys, OpenError, Opener, Sealer};

/// Largest UDP payload (IPv4).
const MAX_DATAGRAM: usize = 65_507;
/// How long a relayed plaintext may take to come out of the codec. Loopback delivers in
/// microseconds; a datagram the codec cannot decode (another chitchat version) never comes
/// out, and the socket must not wait for it forever.
const RELAY_TIMEOUT: Duration = Duration::from_secs(1);
/// Least time between two warnings about dropped datagrams: a flood must not flood the log.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);
/// Least time between two [`NOTICE`]s sent: a flood of forged datagrams gets at most ten
/// small answers a second.
const NOTICE_EVERY: Duration = Duration::from_millis(100);

/// chitchat [`Transport`] sealing every datagram with the cluster's gossip keys.
pub struct SealedUdpTransport {
    keys: GossipKeys,
    mismatches: KeyMismatches,
}

impl SealedUdpTransport {
    /// A transport sealing with `keys`, recording peers that cannot open its datagrams in
    /// `mismatches`.
    pub fn new(keys: GossipKeys, mismatches: KeyMismatches) -> Self {
        Self { keys, mismatches }
    }
}

#[async_trait]
impl Transport for SealedUdpTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let public = UdpSocket::bind(listen_addr)
            .await
            .with_context(|| format!("failed to bind to {listen_addr}/UDP for gossip"))?;
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let codec = CodecSocket::open(loopback).await?;
        let tap = UdpSocket::bind(loopback)
            .await
            .context("failed to bind the gossip codec tap on 127.0.0.1")?;
        let codec_addr = codec.local_addr()?;
        let tap_addr = tap.local_addr()?;
        Ok(Box::new(SealedUdpSocket {
            public,
            codec,
            tap,
            codec_addr,
            tap_addr,
            sealer: Sealer::new(self.keys.clone(), rand::random()),
            opener: Opener::new(self.keys.clone()),
            buf: vec![0u8; MAX_DATAGRAM + 1].into_boxed_slice(),
            bytes: Vec::with_capacity(MAX_DATAGRAM),
            relayed: None,
            drops: DropLog::default(),
            mismatches: self.mismatches.clone(),
            last_notice: None,
        }))
    }
}

/// One gossip socket; see the module docs.
struct SealedUdpSocket {
    public: UdpSocket,
    codec: CodecSocket,
    tap: UdpSocket,
    codec_addr: SocketAddr,
    tap_addr: SocketAddr,
    sealer: Sealer,
    opener: Opener,
    buf: Box<[u8]>,
    bytes: Vec<u8>,
    /// The sender and relay time of the plaintext handed to the codec and not yet taken back
    /// out. chitchat cancels `recv` at every gossip tick, so this lives in the socket: the
    /// next `recv` picks up where the cancelled one stopped. One relay at a time keeps
    /// envelopes and senders paired.
    relayed: Option<(SocketAddr, usize, Instant)>,
    drops: DropLog,
    mismatches: KeyMismatches,
    last_notice: Option<Instant>,
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::OutOfMemory
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::Interrupted
    )
}

#[async_trait]
impl Socket for SealedUdpSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.public
            .local_addr()
            .context("failed to get the gossip socket address")
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        // Anything left on the tap from a send that was cut short is stale.
        while self.tap.try_recv_from(&mut self.buf).is_ok() {}
        self.codec.send(self.tap_addr, envelope).await?;
        let len = loop {
            let (len, from) =
                tokio::time::timeout(RELAY_TIMEOUT, self.tap.recv_from(&mut self.buf))
                    .await
                    .context("the gossip codec did not answer on loopback")?
                    .context("gossip codec tap broken")?;
            if from == self.codec_addr {
                break len;
            }
            debug!(%from, "ignoring a datagram on the gossip codec tap");
        };
        if let Err(error) = self.sealer.seal(
            &self.buf[..len],
            crate::clock::unix_millis(),
            &mut self.bytes,
        ) {
            warn!(%error, "cannot seal a gossip datagram");
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        match self.public.send_to(&self.bytes, to).await {
            Ok(sent) => Ok(SendOutcome {
                num_bytes_sent: sent,
            }),
            // Like a lost datagram: chitchat repeats the exchange next round.
            Err(error)
                if is_transient(&error) || error.raw_os_error() == Some(nix::libc::EMSGSIZE) =>
            {
                debug!(%error, %to, len = self.bytes.len(), "gossip datagram not sent");
                Ok(SendOutcome { num_bytes_sent: 0 })
            }
            Err(error) => Err(error).context("failed to send a gossip datagram"),
        }
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            if let Some((from_addr, num_bytes_received, since)) = self.relayed {
                match tokio::time::timeout_at(since + RELAY_TIMEOUT, self.codec.recv()).await {
                    Ok(Ok(outcome)) if outcome.from_addr == self.tap_addr => {
                        self.relayed = None;
                        return Ok(RecvOutcome {
                            from_addr,
                            envelope: outcome.envelope,
                            num_bytes_received,
                        });
                    }
                    Ok(Ok(outcome)) => {
                        debug!(from = %outcome.from_addr, "ignoring a datagram on the gossip codec");
                    }
                    Ok(Err(error)) => return Err(error),
                    Err(_) => {
                        self.relayed = None;
                        warn!(from = %from_addr, "an authenticated gossip datagram did not decode (another chitchat version?)");
                    }
                }
                continue;
            }
            let (len, from) = match self.public.recv_from(&mut self.buf).await {
                Ok(received) => received,
                Err(error) if is_transient(&error) => continue,
                Err(error) => return Err(error).context("gossip socket broken"),
            };
            let now = crate::clock::unix_millis();
            if len > MAX_DATAGRAM {
                self.drops.record(from, OpenError::Short);
                continue;
            }
            if &self.buf[..len] == NOTICE {
                debug!(%from, "a peer cannot open this node's gossip");
                self.mismatches.record(from);
                continue;
            }
            if let Err(error) = self.opener.open(&self.buf[..len], now, &mut self.bytes) {
                self.drops.record(from, error);
                if error == OpenError::Forged {
                    self.notify(from).await;
                }
                continue;
            }
            self.tap
                .send_to(&self.bytes, self.codec_addr)
                .await
                .context("gossip codec relay broken")?;
            self.relayed = Some((from, len, Instant::now()));
        }
    }
}

impl SealedUdpSocket {
    /// Tells `to` that its datagram does not open here, at most once per [`NOTICE_EVERY`].
    async fn notify(&mut self, to: SocketAddr) {
        let now = Instant::now();
        if self
            .last_notice
            .is_some_and(|at| now.duration_since(at) < NOTICE_EVERY)
        {
            return;
        }
        self.last_notice = Some(now);
        if let Err(error) = self.public.send_to(NOTICE, to).await {
            debug!(%error, %to, "gossip notice not sent");
        }
    }
}

/// Counts dropped datagrams and warns at most once per [`DROP_LOG_EVERY`].
#[derive(Default)]
struct DropLog {
    since_log: u64,
    last_log: Option<Instant>,
}

impl DropLog {
    fn record(&mut self, from: SocketAddr, reason: OpenError) {
        self.since_log += 1;
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|at| now.duration_since(at) >= DROP_LOG_EVERY)
        {
            warn!(
                %from,
                %reason,
                dropped = self.since_log,
                "dropping gossip datagrams that do not open with the cluster secret (count since the last warning)"
            );
            self.since_log = 0;
            self.last_log = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use chitchat::{ChitchatMessage, ProtocolVersion};

    fn keys(secret: &str) -> GossipKeys {
        GossipKeys::derive("troupe", &Secret::new(secret), None)
    }

    fn envelope() -> ChitchatEnvelope {
        ChitchatEnvelope {
            version: ProtocolVersion::V1,
            message: ChitchatMessage::BadCluster,
        }
    }

    async fn socket(secret: &str) -> Box<dyn Socket> {
        SealedUdpTransport::new(keys(secret), KeyMismatches::default())
            .open("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("open")
    }

    #[tokio::test]
    async fn an_envelope_crosses_sealed_and_keeps_its_real_sender() {
        let mut a = socket("secret-one").await;
        let mut b = socket("secret-one").await;
        let b_addr = b.local_addr().expect("addr");
        a.send(b_addr, envelope()).await.expect("send");
        let got = tokio::time::timeout(Duration::from_secs(10), b.recv())
            .await
            .expect("in time")
            .expect("recv");
        assert_eq!(got.envelope, envelope());
        assert_eq!(got.from_addr, a.local_addr().expect("addr"));
    }

    #[tokio::test]
    async fn a_datagram_without_the_secret_never_reaches_chitchat() {
        let mut stranger = socket("another-secret").await;
        let mut b = socket("secret-one").await;
        let b_addr = b.local_addr().expect("addr");
        let raw = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        stranger.send(b_addr, envelope()).await.expect("send");
        raw.send_to(b"\x01plain chitchat bytes, unsealed", b_addr)
            .await
            .expect("send raw");
        let got = tokio::time::timeout(Duration::from_millis(500), b.recv()).await;
        assert!(got.is_err(), "nothing opened: {got:?}");
    }

    #[tokio::test]
    async fn a_node_with_another_secret_learns_that_its_gossip_does_not_open() {
        let mismatches = KeyMismatches::default();
        let mut stranger = SealedUdpTransport::new(keys("another-secret"), mismatches.clone())
            .open("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("open");
        let mut member = socket("secret-one").await;
        let member_addr = member.local_addr().expect("addr");
        stranger.send(member_addr, envelope()).await.expect("send");
        let (mut member_got, mut stranger_got) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(20);
        while mismatches.peers().is_empty() {
            assert!(Instant::now() < deadline, "no notice came back");
            // Both sides keep receiving: the member answers, the stranger records.
            tokio::select! {
                got = member.recv() => member_got = Some(got),
                got = stranger.recv() => stranger_got = Some(got),
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
        assert_eq!(mismatches.peers(), vec![member_addr]);
        assert!(
            member_got.is_none() && stranger_got.is_none(),
            "nothing opened"
        );
    }

    #[tokio::test]
    async fn a_cancelled_recv_loses_nothing_and_pairs_envelopes_with_senders() {
        let mut b = socket("secret-one").await;
        let b_addr = b.local_addr().expect("addr");
        let mut senders = Vec::new();
        for _ in 0..3 {
            senders.push(socket("secret-one").await);
        }
        for s in &mut senders {
            s.send(b_addr, envelope()).await.expect("send");
        }
        let mut from = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while from.len() < 3 {
            assert!(Instant::now() < deadline, "only {from:?} came out");
            // Cancel often, as chitchat's select! does every tick.
            if let Ok(got) = tokio::time::timeout(Duration::from_micros(50), b.recv()).await {
                from.push(got.expect("recv").from_addr);
            }
        }
        let mut expected: Vec<SocketAddr> = senders
            .iter()
            .map(|s| s.local_addr().expect("addr"))
            .collect();
        expected.sort();
        from.sort();
        assert_eq!(from, expected);
    }

    /// Not a check: prints the cost per datagram (`cargo test -p troupe-node --lib
    /// cost_per_gossip_datagram -- --ignored --nocapture`).
    #[tokio::test]
    #[ignore]
    async fn cost_per_gossip_datagram() {
        use super::super::seal::{Opener, Sealer};
        for size in [1_024usize, 16_384, 60_000] {
            let plaintext = vec![7u8; size];
            let mut sealer = Sealer::new(keys("secret-one"), [1; 16]);
            let mut opener = Opener::new(keys("secret-one"));
            let (mut sealed, mut opened) = (Vec::new(), Vec::new());
            let rounds = 2_000u32;
            let start = std::time::Instant::now();
            for _ in 0..rounds {
                sealer.seal(&plaintext, 1, &mut sealed).expect("seal");
                opener.open(&sealed, 1, &mut opened).expect("open");
            }
            println!("seal + open {size} bytes: {:?}", start.elapsed() / rounds);
        }
        let mut a = socket("secret-one").await;
        let mut b = socket("secret-one").await;
        let b_addr = b.local_addr().expect("addr");
        let rounds = 2_000u32;
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            a.send(b_addr, envelope()).await.expect("send");
            b.recv().await.expect("recv");
        }
        let sealed = start.elapsed() / rounds;
        let mut plain_a = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let plain_b = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let plain_addr = plain_b.local_addr().expect("addr");
        let mut buf = [0u8; 64];
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            plain_a.send_to(&[0u8; 8], plain_addr).await.expect("send");
            plain_b.recv_from(&mut buf).await.expect("recv");
        }
        let _ = &mut plain_a;
        println!(
            "sealed envelope send + recv over loopback: {sealed:?}; a bare UDP datagram: {:?}",
            start.elapsed() / rounds
        );
    }
}
