//! The answering side: accepts connections, authenticates them, and runs each call on its own
//! task so one slow call does not hold up the others on the same connection.
//!
//! Until a connection has authenticated it costs the node a task, a descriptor and a timer, and
//! anyone who can reach the port can open one: connections in handshake are capped, in all and
//! per remote host (an excess one is closed at once), each has a short time to finish the
//! handshake, and refusals are logged at a bounded rate ([`super::refusals`]).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::auth::{self, Credentials};
use super::refusals::{self, RefusalLog};
use super::session::SealedWriter;
use super::wire::Envelope;
use super::{Answer, Call};
use crate::codec::{self, CodecError};
use crate::ids::NodeId;
use crate::net::{BoxListener, BoxStream};

/// Connections one remote host may have in handshake at once: a node dials each peer at most
/// twice at a time (a control and a data connection), so a host holding more is hostile or
/// badly broken, and must not take the slots of the others.
const MAX_PENDING_PER_HOST: usize = 32;
/// Calls one connection may have in flight; further frames wait to be read (back-pressure).
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 1024;
/// Answers queued for one connection's writer.
const WRITE_QUEUE: usize = 1024;

/// What the node does with an authenticated call. A static type, not a trait object: each
/// call's answer is a future of the handler's own type, neither boxed nor dispatched
/// dynamically. Each call runs on a task holding that future, as large as its largest branch
/// and copied whole on spawn: a handler boxes its rare, large branches so that the frequent,
/// small calls do not pay for them.
pub trait Handler: Send + Sync + 'static {
    /// The calls this handler answers.
    type Call: Call;

    /// Answers `call` from peer `from`, the node the connection authenticated (never a node
    /// the call itself claims to come from).
    fn handle(
        &self,
        from: NodeId,
        call: Self::Call,
    ) -> impl Future<Output = <Self::Call as Call>::Answer> + Send;
}

/// The server's bounds (`[rpc]` in `cluster.toml`).
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Largest frame accepted (`rpc.max_frame_bytes`).
    pub max_frame: u32,
    /// Time a new connection has to complete the handshake (`rpc.handshake_timeout_ms`).
    pub handshake_timeout: Duration,
    /// Connections in handshake at once (`rpc.max_pending_handshakes`).
    pub max_pending_handshakes: usize,
}

/// Accepts connections on `listener` until `shutdown`; each one is served on its own task.
pub async fn serve<H: Handler>(
    mut listener: BoxListener,
    creds: Credentials,
    limits: ServerLimits,
    handler: Arc<H>,
    shutdown: CancellationToken,
) {
    let refusals = Arc::new(RefusalLog::new(Instant::now()));
    let pending = Arc::new(Pending::new(limits.max_pending_handshakes));
    let mut summary = tokio::time::interval(refusals::WINDOW);
    summary.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            // The node is stopping: no new connections.
            _ = shutdown.cancelled() => return,
            // Once per window: how many refusals were not logged.
            _ = summary.tick() => {
                let suppressed = refusals.take_suppressed();
                if suppressed > 0 {
                    warn!(suppressed, window = ?refusals::WINDOW, "rpc connections refused without a log line");
                }
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer_addr)) => {
                let slot = match pending.admit(peer_addr.ip()) {
                    Ok(slot) => slot,
                    Err(reason) => {
                        if refusals.admit(Instant::now()) {
                            warn!(%peer_addr, reason, "rpc connection refused");
                        }
                        // Closed at once: it holds nothing.
                        drop(stream);
                        continue;
                    }
                };
                let conn = Connection {
                    creds: creds.clone(),
                    limits: limits.clone(),
                    handler: handler.clone(),
                    refusals: refusals.clone(),
                    shutdown: shutdown.child_token(),
                };
                tokio::spawn(
                    conn.run(stream, slot, peer_addr)
                        .instrument(tracing::debug_span!("rpc_conn", %peer_addr)),
                );
            }
            Err(error) => {
                warn!(%error, "rpc accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The connections in handshake: a count in all and per remote host, both bounded.
struct Pending {
    total: Arc<Semaphore>,
    /// Only hosts with a connection in handshake: at most `max_pending_handshakes` entries.
    per_host: Mutex<HashMap<IpAddr, usize>>,
    per_host_max: usize,
}

/// One connection's place among those in handshake; given back when dropped.
struct PendingSlot {
    pending: Arc<Pending>,
    host: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Pending {
    fn new(max: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(max)),
            per_host: Mutex::new(HashMap::new()),
            // A quarter at most, so that a few flooding hosts leave room for the others.
            per_host_max: MAX_PENDING_PER_HOST.min(max / 4).max(1),
        }
    }

    fn hosts(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Counters only, each update one statement: usable after a panic.
        self.per_host.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn admit(self: &Arc<Self>, host: IpAddr) -> Result<PendingSlot, &'static str> {
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| "too many connections in handshake (rpc.max_pending_handshakes)")?;
        let mut hosts = self.hosts();
        let count = hosts.entry(host).or_insert(0);
        if *count >= self.per_host_max {
            return Err("too many connections in handshake from this host");
        }
        *count += 1;
        Ok(PendingSlot {
            pending: self.clone(),
            host,
            _permit: permit,
        })
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut hosts = self.pending.hosts();
        if let Some(count) = hosts.get_mut(&self.host) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                hosts.remove(&self.host);
            }
        }
    }
}

struct Connection<H> {
    creds: Credentials,
    limits: ServerLimits,
    handler: Arc<H>,
    refusals: Arc<RefusalLog>,
    shutdown: CancellationToken,
}

impl<H: Handler> Connection<H> {
    async fn run(self, mut stream: BoxStream, slot: PendingSlot, peer_addr: SocketAddr) {
        let handshake = tokio::time::timeout(
            self.limits.handshake_timeout,
            auth::accept(&mut stream, &self.creds, H::Call::PROTOCOL_VERSION),
        )
        .await;
        drop(slot);
        let refusal = match handshake {
            Ok(Ok(authenticated)) => Ok(authenticated),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!(
                "handshake not finished within {:?} (rpc.handshake_timeout_ms)",
                self.limits.handshake_timeout
            )),
        };
        let (peer, keys) = match refusal {
            Ok(authenticated) => authenticated,
            Err(error) => {
                if self.refusals.admit(Instant::now()) {
                    warn!(%peer_addr, %error, "rpc peer refused");
                }
                return;
            }
        };
        info!(%peer, "rpc peer authenticated");
        let max_frame = self.limits.max_frame;
        let (mut reader, writer) = keys.split(stream);
        let (answers_tx, answers_rx) = mpsc::channel(WRITE_QUEUE);
        tokio::spawn(write_answers(
            writer,
            answers_rx,
            max_frame,
            self.shutdown.clone(),
        ));
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_CONNECTION));
        loop {
            let frame = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                frame = reader.read_frame(max_frame) => frame,
            };
            let bytes = match frame {
                Ok(Some(bytes)) => bytes,
                Ok(None) => break,
                Err(error) => {
                    warn!(%peer, %error, "rpc read failed, closing the connection");
                    break;
                }
            };
            let request = codec::decode::<Envelope<H::Call>>(&bytes, codec::Limit::Message);
            let Envelope { id, body } = match request {
                Ok(envelope) => envelope,
                Err(error) => {
                    warn!(%peer, %error, "undecodable rpc request, closing the connection");
                    break;
                }
            };
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break;
            };
            let (handler, answers, from) = (self.handler.clone(), answers_tx.clone(), peer.clone());
            tokio::spawn(async move {
                let response = handler.handle(from, body).await;
                match encode_answer(id, response, max_frame) {
                    Ok(bytes) => {
                        // The writer may be gone (connection closed); the caller then times out.
                        let _ = answers.send(bytes).await;
                    }
                    Err(error) => warn!(%error, "cannot encode rpc response"),
                }
                drop(permit);
            });
        }
        debug!(%peer, "rpc connection closed");
    }
}

/// The frame of answer `id`. An answer larger than a frame may be is replaced by
/// [`Answer::failed`] saying so: written as is, it would fail the connection's writer and with
/// it every other call in flight on the connection.
fn encode_answer<A: Answer>(id: u64, response: A, max_frame: u32) -> Result<Vec<u8>, CodecError> {
    let bytes = codec::encode(&Envelope { id, body: response })?;
    if bytes.len() <= max_frame as usize {
        return Ok(bytes);
    }
    warn!(
        bytes = bytes.len(),
        max_frame, "rpc answer exceeds the frame limit, answering a failure instead"
    );
    let message = format!(
        "the answer of {} bytes exceeds the frame limit of {max_frame} bytes (rpc.max_frame_bytes)",
        bytes.len()
    );
    codec::encode(&Envelope {
        id,
        body: A::failed(message),
    })
}

async fn write_answers(
    mut writer: SealedWriter<tokio::io::WriteHalf<BoxStream>>,
    mut answers: mpsc::Receiver<Vec<u8>>,
    max_frame: u32,
    shutdown: CancellationToken,
) {
    loop {
        let bytes = tokio::select! {
            _ = shutdown.cancelled() => return,
            bytes = answers.recv() => match bytes { Some(b) => b, None => return },
        };
        if let Err(error) = writer.write_queued(bytes, &mut answers, max_frame).await {
            debug!(%error, "rpc answer write failed");
            return;
        }
    }
}
