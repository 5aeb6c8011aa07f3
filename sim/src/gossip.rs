//! chitchat gossip over turmoil UDP.
//!
//! chitchat's envelope encoding is crate-private, so a custom transport cannot turn a message
//! into bytes. Instead each sent [`ChitchatEnvelope`] is parked in a table shared by all hosts of
//! one simulation ([`GossipNetwork`]) and only its 8-byte key travels as the turmoil datagram;
//! the receiver takes the envelope back out with that key. turmoil therefore stays in charge of
//! delivery, loss, latency and partitions; only the datagram size is unrealistic.
//!
//! The key datagram is sealed and opened with the node's own seal module
//! ([`troupe_node::membership::seal`]), exactly as production seals chitchat's bytes: a host
//! without the cluster secret cannot get an envelope taken out, and the simulation exercises
//! the authentication, replay and clock checks on every datagram.
//!
//! Since the datagrams carry keys, their size says nothing about gossip's cost. When metering
//! is on ([`GossipNetwork::set_metering`]), each envelope goes through chitchat's own codec
//! first, in a [`ChannelTransport`] private to the socket: chitchat's public in-process
//! transport, which serializes and deserializes every envelope with the same encoder its UDP
//! transport uses and reports the exact encoded length. The meter records that length plus the
//! seal's [`OVERHEAD`], the UDP payload production would send ([`GossipMeter`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::determinism::trace;
use anyhow::Context;
use async_trait::async_trait;
use chitchat::transport::{ChannelTransport, RecvOutcome, SendOutcome, Socket, Transport};
use chitchat::{ChitchatEnvelope, ChitchatMessage, Serializable};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tracing::debug;
use troupe_node::membership::seal::{GossipKeys, Opener, Sealer, OVERHEAD};
use turmoil::net::UdpSocket;

/// Most envelopes kept parked at once. Envelopes whose datagram turmoil drops (partition,
/// loss, crashed receiver) are never taken out; beyond this bound the oldest are discarded, so
/// the leak stays bounded. A receiver that finds its envelope gone treats the datagram as lost.
const MAX_PARKED: usize = 100_000;

/// Size of a key: one big-endian `u64`.
const KEY_LEN: usize = 8;
/// Size of a datagram: a sealed key.
const DATAGRAM_LEN: usize = KEY_LEN + OVERHEAD;

/// The envelopes in flight in one simulation, shared by the transports of all its hosts.
///
/// One per simulation: keys are only meaningful within the table that issued them.
#[derive(Clone)]
pub struct GossipNetwork {
    parked: Arc<Mutex<Parked>>,
}

struct Parked {
    next_key: u64,
    /// Keys grow monotonically, so the first entry is always the oldest.
    envelopes: BTreeMap<u64, ChitchatEnvelope>,
    /// Probability that a sent datagram is lost ([`GossipNetwork::set_loss`]).
    loss: f64,
    /// Draws the losses, seeded from the simulation's seed.
    rng: StdRng,
    /// Datagrams that did not open (another secret, replayed, garbage).
    dropped: u64,
    /// Most sender instances any node's opener tracked at once.
    most_senders: usize,
    /// Whether sent envelopes are encoded and measured ([`GossipNetwork::set_metering`]).
    metering: bool,
    /// What the metered envelopes cost so far.
    meter: GossipMeter,
}

/// The gossip sent while metering was on: sizes as production's UDP transport would send them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GossipMeter {
    /// Per sending host (its address), everything it sent.
    pub by_sender: BTreeMap<IpAddr, Traffic>,
    /// Per chitchat message kind (`syn`, `syn-ack`, `ack`, `bad-cluster`), everything sent.
    pub by_kind: BTreeMap<&'static str, Traffic>,
}

/// Datagrams and bytes of some gossip.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Datagrams sent.
    pub datagrams: u64,
    /// UDP payload bytes: chitchat's encoded envelope plus the seal's overhead.
    pub bytes: u64,
    /// Of `bytes`, the encoded deltas (node states sent to a peer that lacked them); the rest
    /// is the envelope header, the digest (every known node's heartbeat and versions,
    /// zstd-compressed) and the seal.
    pub delta_bytes: u64,
    /// The largest payload sent, in bytes.
    pub largest: u64,
}

impl Traffic {
    fn add(&mut self, bytes: u64, delta_bytes: u64) {
        self.datagrams += 1;
        self.bytes += bytes;
        self.delta_bytes += delta_bytes;
        self.largest = self.largest.max(bytes);
    }

    /// What was sent after `earlier` (a reading of the same counters); the largest payload
    /// is the largest so far, not of the interval.
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            datagrams: self.datagrams.saturating_sub(earlier.datagrams),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            delta_bytes: self.delta_bytes.saturating_sub(earlier.delta_bytes),
            largest: self.largest,
        }
    }
}

impl GossipMeter {
    /// Everything every host sent.
    pub fn total(&self) -> Traffic {
        let mut total = Traffic::default();
        for t in self.by_sender.values() {
            total.datagrams += t.datagrams;
            total.bytes += t.bytes;
            total.delta_bytes += t.delta_bytes;
            total.largest = total.largest.max(t.largest);
        }
        total
    }

    /// What was sent after `earlier`, a reading of the same meter.
    pub fn since(&self, earlier: &GossipMeter) -> GossipMeter {
        let diff =
            |now: &Traffic, then: Option<&Traffic>| now.since(then.unwrap_or(&Traffic::default()));
        GossipMeter {
            by_sender: self
                .by_sender
                .iter()
                .map(|(ip, t)| (*ip, diff(t, earlier.by_sender.get(ip))))
                .collect(),
            by_kind: self
                .by_kind
                .iter()
                .map(|(kind, t)| (*kind, diff(t, earlier.by_kind.get(kind))))
                .collect(),
        }
    }
}

impl GossipNetwork {
    /// The table of one simulation; `seed` seeds the message losses.
    pub fn new(seed: u64) -> Self {
        Self {
            parked: Arc::new(Mutex::new(Parked {
                next_key: 0,
                envelopes: BTreeMap::new(),
                loss: 0.0,
                rng: StdRng::seed_from_u64(seed),
                dropped: 0,
                most_senders: 0,
                metering: false,
                meter: GossipMeter::default(),
            })),
        }
    }

    /// Loses each gossip datagram sent from now on with probability `loss` (0 to 1). Only
    /// gossip: turmoil's TCP does not retransmit, so lost RPC segments would break streams
    /// in a way real TCP hides as latency, which slow links already model.
    pub fn set_loss(&self, loss: f64) {
        self.lock().loss = loss.clamp(0.0, 1.0);
    }

    /// Whether the next datagram is lost.
    fn loses(&self) -> bool {
        let mut parked = self.lock();
        let loss = parked.loss;
        loss > 0.0 && parked.rng.random_bool(loss)
    }

    /// A transport for one host whose own address is `host_ip` (what peers see as the sender),
    /// sealing with `keys`.
    pub fn transport(&self, host_ip: IpAddr, keys: GossipKeys) -> SimTransport {
        SimTransport {
            network: self.clone(),
            host_ip,
            keys,
        }
    }

    /// Encodes every envelope sent from now on with chitchat's codec and records its size
    /// ([`Self::meter`]), or stops doing so. Off by default: it costs an encode and a decode
    /// per message, which only runs that measure gossip need.
    pub fn set_metering(&self, on: bool) {
        self.lock().metering = on;
    }

    /// What the metered envelopes cost so far.
    pub fn meter(&self) -> GossipMeter {
        self.lock().meter.clone()
    }

    fn metering(&self) -> bool {
        self.lock().metering
    }

    fn record_sent(&self, from: IpAddr, kind: &'static str, bytes: usize, delta_bytes: usize) {
        let (bytes, delta_bytes) = (bytes as u64, delta_bytes as u64);
        let mut parked = self.lock();
        parked
            .meter
            .by_sender
            .entry(from)
            .or_default()
            .add(bytes, delta_bytes);
        parked
            .meter
            .by_kind
            .entry(kind)
            .or_default()
            .add(bytes, delta_bytes);
    }

    /// Datagrams dropped because they did not open, so far.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Most sender instances any node tracked at once, so far (bounded whatever is sent).
    pub fn most_senders(&self) -> usize {
        self.lock().most_senders
    }

    fn record_open(&self, opened: bool, senders: usize) {
        let mut parked = self.lock();
        if !opened {
            parked.dropped += 1;
        }
        parked.most_senders = parked.most_senders.max(senders);
    }

    /// Number of envelopes currently parked (sent but not yet received or discarded).
    pub fn parked(&self) -> usize {
        self.lock().envelopes.len()
    }

    fn park(&self, envelope: ChitchatEnvelope) -> u64 {
        let mut parked = self.lock();
        let key = parked.next_key;
        parked.next_key += 1;
        parked.envelopes.insert(key, envelope);
        while parked.envelopes.len() > MAX_PARKED {
            parked.envelopes.pop_first();
        }
        key
    }

    fn take(&self, key: u64) -> Option<ChitchatEnvelope> {
        self.lock().envelopes.remove(&key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Parked> {
        // The table holds plain data and no invariant spans a panic: keep using it.
        self.parked.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// chitchat [`Transport`] that opens [`SimSocket`]s on the current turmoil host.
pub struct SimTransport {
    network: GossipNetwork,
    host_ip: IpAddr,
    keys: GossipKeys,
}

#[async_trait]
impl Transport for SimTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = UdpSocket::bind(listen_addr)
            .await
            .with_context(|| format!("cannot bind {listen_addr}/udp for gossip"))?;
        let local_addr = SocketAddr::new(self.host_ip, socket.local_addr()?.port());
        // The codec's transport is private to this socket: it only ever sends to itself.
        let codec = ChannelTransport::default().open(local_addr).await?;
        Ok(Box::new(SimSocket {
            codec,
            network: self.network.clone(),
            socket,
            local_addr,
            // A fresh instance per socket, as production draws one per process start.
            sealer: Sealer::new(self.keys.clone(), rand::random()),
            opener: Opener::new(self.keys.clone()),
            sealed: Vec::with_capacity(DATAGRAM_LEN),
            opened: Vec::with_capacity(KEY_LEN),
        }))
    }
}

/// A gossip socket: turmoil UDP carrying keys into the [`GossipNetwork`] table.
pub struct SimSocket {
    /// chitchat's in-process socket, sending only to itself: the codec metering measures with.
    codec: Box<dyn Socket>,
    network: GossipNetwork,
    socket: UdpSocket,
    /// The host's address with the bound port: chitchat uses it as this node's address.
    local_addr: SocketAddr,
    sealer: Sealer,
    opener: Opener,
    sealed: Vec<u8>,
    opened: Vec<u8>,
}

impl SimSocket {
    /// Runs `envelope` through chitchat's codec (encode, decode, as its channel transport
    /// does for every message), records the encoded size plus the seal's overhead as this
    /// host's, and gives back the decoded envelope; `None` if the codec did not return it.
    async fn metered(&mut self, envelope: ChitchatEnvelope) -> Option<ChitchatEnvelope> {
        let (kind, delta_bytes) = match &envelope.message {
            ChitchatMessage::Syn { .. } => ("syn", 0),
            ChitchatMessage::SynAck { delta, .. } => ("syn-ack", delta.serialized_len()),
            ChitchatMessage::Ack { delta } => ("ack", delta.serialized_len()),
            ChitchatMessage::BadCluster => ("bad-cluster", 0),
        };
        let to_self = self.codec.local_addr().ok()?;
        let sent = match self.codec.send(to_self, envelope).await {
            Ok(sent) => sent,
            Err(error) => {
                debug!(%error, "gossip envelope not encoded");
                return None;
            }
        };
        // The codec delivered synchronously into its own channel: the envelope is already
        // there, and a zero timeout still polls once before giving up.
        let back = match tokio::time::timeout(Duration::ZERO, self.codec.recv()).await {
            Ok(Ok(back)) => back,
            _ => {
                debug!("gossip envelope not decoded");
                return None;
            }
        };
        self.network.record_sent(
            self.local_addr.ip(),
            kind,
            sent.num_bytes_sent + OVERHEAD,
            delta_bytes,
        );
        Some(back.envelope)
    }
}

#[async_trait]
impl Socket for SimSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.local_addr)
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let envelope = if self.network.metering() {
            match self.metered(envelope).await {
                Some(envelope) => envelope,
                // Cannot happen with chitchat's channel transport; lost like any datagram.
                None => return Ok(SendOutcome { num_bytes_sent: 0 }),
            }
        } else {
            envelope
        };
        if self.network.loses() {
            debug!(%to, "gossip datagram lost");
            return Ok(SendOutcome {
                num_bytes_sent: DATAGRAM_LEN,
            });
        }
        let key = self.network.park(envelope);
        let now = troupe_node::clock::unix_millis();
        if let Err(error) = self.sealer.seal(&key.to_be_bytes(), now, &mut self.sealed) {
            debug!(%error, "gossip datagram not sealed");
            self.network.take(key);
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        // Like real UDP, a datagram that cannot be sent is simply lost: chitchat must cope.
        if let Err(error) = self.socket.send_to(&self.sealed, to).await {
            debug!(%error, %to, "gossip datagram not sent");
            self.network.take(key);
        }
        Ok(SendOutcome {
            num_bytes_sent: DATAGRAM_LEN,
        })
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        // One byte more than a datagram, so a longer one shows as longer, not truncated.
        let mut buf = [0u8; DATAGRAM_LEN + 1];
        loop {
            let (len, from_addr) = self
                .socket
                .recv_from(&mut buf)
                .await
                .context("gossip socket broken")?;
            let now = troupe_node::clock::unix_millis();
            let opened = len <= DATAGRAM_LEN
                && self.opener.open(&buf[..len], now, &mut self.opened).is_ok()
                && self.opened.len() == KEY_LEN;
            self.network.record_open(opened, self.opener.instances());
            if !opened {
                debug!(len, %from_addr, "dropping a gossip datagram that does not open");
                continue;
            }
            let mut key = [0u8; KEY_LEN];
            key.copy_from_slice(&self.opened);
            match self.network.take(u64::from_be_bytes(key)) {
                Some(envelope) => {
                    trace::record("gossip", &buf[..len], |line| {
                        use std::fmt::Write as _;
                        let _ = write!(line, "{}<-{from_addr} {envelope:?}", self.local_addr);
                    });
                    return Ok(RecvOutcome {
                        from_addr,
                        envelope,
                        num_bytes_received: len,
                    });
                }
                None => debug!(%from_addr, "gossip envelope already discarded: datagram lost"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_reading_minus_an_earlier_one_is_what_was_sent_in_between() {
        let network = GossipNetwork::new(1);
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        network.record_sent(a, "syn", 300, 0);
        let earlier = network.meter();
        network.record_sent(a, "ack", 100, 40);
        network.record_sent(b, "syn", 200, 0);
        let between = network.meter().since(&earlier);
        assert_eq!(between.by_sender[&a].bytes, 100);
        assert_eq!(between.by_sender[&a].delta_bytes, 40);
        assert_eq!(between.by_sender[&b].datagrams, 1);
        assert_eq!(between.by_kind["syn"].bytes, 200);
        let total = between.total();
        assert_eq!(
            (total.datagrams, total.bytes, total.delta_bytes),
            (2, 300, 40)
        );
        assert_eq!(
            total.largest, 300,
            "the largest payload so far, not of the interval"
        );
    }
}
