//! The calling side: per peer, two multiplexed, authenticated and encrypted connections made on
//! first use: one for control calls (those whose [`Call::lane`] is [`Lane::Control`]: lease
//! checks and pings) and one for everything else.
//!
//! A call registers a one-shot reply slot under a fresh id, queues its frame for the
//! connection's writer task and waits for the reader task to deliver the answer, all under the
//! call's deadline. A connection that fails or closes is dropped and the next call dials again:
//! that is how a node recovers from a peer restart or a healed partition. A call that times out
//! fails alone: its connection is dropped only if it is dead, that is if no frame at all came
//! from the peer since the call was sent and none comes within a liveness interval after a
//! ping (a half-open TCP connection would otherwise swallow calls until the kernel gives up).
//! Control calls have their own connection so that data calls can neither delay them (in the
//! writer's queue, the socket buffers or the server's in-flight bound) nor take them down with
//! a dead data connection: a lease is renewed by round trips (`shard::lease`) and must not
//! lapse because a peer is busy (decision 020).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::auth::{self, Credentials, HandshakeError};
use super::session::{SealedReader, SealedWriter, SessionKeys};
use super::wire::Envelope;
use super::{Call, CallObserver, CallsTo, Lane, RpcError};
use crate::codec;
use crate::config::HostPort;
use crate::ids::NodeId;
use crate::net::{BoxStream, Dialer};

/// Frames queued for one connection's writer before callers wait: bounds memory per peer.
const WRITE_QUEUE: usize = 1024;

/// Client for calls `C` to peers; cheap to clone.
pub struct RpcClient<C: Call> {
    inner: Arc<Inner<C>>,
}

impl<C: Call> Clone for RpcClient<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<C: Call> {
    dialer: Arc<dyn Dialer>,
    creds: Credentials,
    max_frame: u32,
    call_timeout: Duration,
    peers: Mutex<HashMap<PeerKey, Arc<PeerSlot<C>>>>,
    shutdown: CancellationToken,
    observer: OnceLock<Arc<dyn CallObserver>>,
}

/// A peer, at one of its addresses, on one lane.
type PeerKey = (NodeId, HostPort, Lane);

/// One peer at one address, on one lane.
struct PeerSlot<C: Call> {
    /// The connection, if any; the async mutex makes concurrent callers share one dial.
    conn: tokio::sync::Mutex<Option<Arc<Conn<C>>>>,
    /// Where its calls are told of, asked of the observer once: a call then costs the
    /// observer no lookup of the peer's labels.
    calls: OnceLock<CallsTo>,
}

/// One live connection: the writer's queue and the calls awaiting answers.
struct Conn<C: Call> {
    addr: HostPort,
    frames: mpsc::Sender<Vec<u8>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<C::Answer>>>,
    next_id: AtomicU64,
    closed: CancellationToken,
    /// When the connection was made; `last_heard` counts from it.
    born: Instant,
    /// Microseconds after `born` at which the latest frame from the peer arrived.
    last_heard: AtomicU64,
    /// Whether a liveness probe is running.
    probing: AtomicBool,
}

impl<C: Call> Conn<C> {
    fn close(&self) {
        self.closed.cancel();
        // Dropping the reply senders wakes every waiting caller with `ConnectionLost`.
        lock(&self.pending).clear();
    }

    fn since_born(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.born).as_micros()).unwrap_or(u64::MAX)
    }

    fn heard(&self) {
        self.last_heard
            .store(self.since_born(Instant::now()), Ordering::Relaxed);
    }

    /// Whether a frame from the peer arrived at or after `at`.
    fn heard_since(&self, at: Instant) -> bool {
        self.last_heard.load(Ordering::Relaxed) >= self.since_born(at)
    }

    /// A call timed out and nothing came from the peer since it was sent: the connection may
    /// be dead, or the peer merely slow on that call. Pings the peer on this connection and
    /// drops the connection only if no frame at all arrives within `liveness`. One probe at a
    /// time per connection.
    fn probe(self: &Arc<Self>, liveness: Duration) {
        if self.probing.swap(true, Ordering::Relaxed) {
            return;
        }
        let conn = self.clone();
        tokio::spawn(async move {
            let asked = Instant::now();
            let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
            // The answer carries an id no caller waits for: the reader only notes it arrived.
            // A full queue means the writer is stuck, which the silence below then shows.
            if let Ok(frame) = codec::encode(&Envelope {
                id,
                body: C::ping(),
            }) {
                let _ = conn.frames.try_send(frame);
            }
            tokio::select! {
                // Closed meanwhile: nothing left to decide.
                _ = conn.closed.cancelled() => return,
                _ = tokio::time::sleep(liveness) => {}
            }
            if conn.heard_since(asked) {
                conn.probing.store(false, Ordering::Relaxed);
            } else {
                debug!(addr = %conn.addr, ?liveness, "no frame from the peer within the liveness interval, dropping the connection");
                conn.close();
            }
        });
    }
}

/// Locks a std mutex, recovering from poisoning: the maps guarded here stay consistent even if
/// a holder panicked, because every critical section is a single insert or remove.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<C: Call> RpcClient<C> {
    /// A client dialing through `dialer`, proving `creds`; connections end with `shutdown`.
    pub fn new(
        dialer: Arc<dyn Dialer>,
        creds: Credentials,
        max_frame: u32,
        call_timeout: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                dialer,
                creds,
                max_frame,
                call_timeout,
                peers: Mutex::new(HashMap::new()),
                shutdown,
                observer: OnceLock::new(),
            }),
        }
    }

    /// Tells `observer` of every call from now on, for this client and its clones; a second
    /// observer is ignored (there is one per node: its metrics).
    pub fn observe_calls(&self, observer: Arc<dyn CallObserver>) {
        let _ = self.inner.observer.set(observer);
    }

    /// Calls `node` at `addr` with the configured deadline.
    pub async fn call(
        &self,
        node: &NodeId,
        addr: &HostPort,
        request: C,
    ) -> Result<C::Answer, RpcError> {
        self.call_with_timeout(node, addr, request, self.inner.call_timeout)
            .await
    }

    /// Calls `node` at `addr`; the deadline covers dialing and the handshake too.
    pub async fn call_with_timeout(
        &self,
        node: &NodeId,
        addr: &HostPort,
        request: C,
        deadline: Duration,
    ) -> Result<C::Answer, RpcError> {
        let (lane, started) = (request.lane(), Instant::now());
        let slot = self.slot(node, addr, lane);
        let result = self.call_within(&slot, node, addr, request, deadline).await;
        if let Some(observer) = self.inner.observer.get() {
            let calls = slot.calls.get_or_init(|| observer.calls_to(node, lane));
            calls(started.elapsed(), result.is_ok());
        }
        result
    }

    async fn call_within(
        &self,
        slot: &PeerSlot<C>,
        node: &NodeId,
        addr: &HostPort,
        request: C,
        deadline: Duration,
    ) -> Result<C::Answer, RpcError> {
        let mut in_flight: Option<(Arc<Conn<C>>, u64, Instant)> = None;
        let attempt = self.attempt(slot, node, addr, request, &mut in_flight);
        match tokio::time::timeout(deadline, attempt).await {
            Ok(result) => result,
            Err(_) => {
                let sent = in_flight.is_some();
                if let Some((conn, id, queued)) = in_flight {
                    lock(&conn.pending).remove(&id);
                    // The other calls on the connection go on. If nothing came from the peer
                    // since this call was sent, the connection may be half-open: probe it.
                    if !conn.heard_since(queued) {
                        debug!(peer = %node, %addr, "rpc call timed out on a silent connection, probing it");
                        conn.probe(self.inner.call_timeout);
                    }
                }
                Err(RpcError::Timeout {
                    addr: addr.clone(),
                    sent,
                })
            }
        }
    }

    async fn attempt(
        &self,
        slot: &PeerSlot<C>,
        node: &NodeId,
        addr: &HostPort,
        request: C,
        in_flight: &mut Option<(Arc<Conn<C>>, u64, Instant)>,
    ) -> Result<C::Answer, RpcError> {
        let conn = self.connection(slot, node, addr).await?;
        let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = codec::encode(&Envelope { id, body: request })?;
        if frame.len() > self.inner.max_frame as usize {
            // Queued, it would fail the connection's writer and with it every other call in
            // flight on the connection.
            warn!(peer = %node, %addr, bytes = frame.len(), "rpc request exceeds the frame limit, not sent");
            return Err(RpcError::TooLarge {
                addr: addr.clone(),
                bytes: frame.len(),
                max: self.inner.max_frame,
            });
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        lock(&conn.pending).insert(id, reply_tx);
        *in_flight = Some((conn.clone(), id, Instant::now()));
        if conn.closed.is_cancelled() || conn.frames.send(frame).await.is_err() {
            lock(&conn.pending).remove(&id);
            return Err(RpcError::ConnectionLost {
                addr: addr.clone(),
                sent: false,
            });
        }
        reply_rx.await.map_err(|_| RpcError::ConnectionLost {
            addr: addr.clone(),
            sent: true,
        })
    }

    /// The slot of `node` at `addr` on `lane`, made on first use.
    fn slot(&self, node: &NodeId, addr: &HostPort, lane: Lane) -> Arc<PeerSlot<C>> {
        lock(&self.inner.peers)
            .entry((node.clone(), addr.clone(), lane))
            .or_insert_with(|| {
                Arc::new(PeerSlot {
                    conn: tokio::sync::Mutex::new(None),
                    calls: OnceLock::new(),
                })
            })
            .clone()
    }

    /// The live connection of `slot` (to `node` at `addr`), dialing one if needed. Concurrent
    /// callers share one dial through the slot's async mutex.
    async fn connection(
        &self,
        slot: &PeerSlot<C>,
        node: &NodeId,
        addr: &HostPort,
    ) -> Result<Arc<Conn<C>>, RpcError> {
        let mut conn = slot.conn.lock().await;
        if let Some(live) = conn.as_ref().filter(|c| !c.closed.is_cancelled()) {
            return Ok(live.clone());
        }
        let dialed = self.dial(node, addr).await?;
        *conn = Some(dialed.clone());
        Ok(dialed)
    }

    async fn dial(&self, node: &NodeId, addr: &HostPort) -> Result<Arc<Conn<C>>, RpcError> {
        let mut stream = self
            .inner
            .dialer
            .dial(addr)
            .await
            .map_err(|source| RpcError::Io {
                addr: addr.clone(),
                source,
            })?;
        let (answered, keys) = auth::connect(&mut stream, &self.inner.creds, C::PROTOCOL_VERSION)
            .await
            .map_err(|e| match e {
                HandshakeError::Io(source) => RpcError::Io {
                    addr: addr.clone(),
                    source,
                },
                other => {
                    warn!(peer = %node, %addr, error = %other, "rpc handshake failed");
                    RpcError::Auth {
                        addr: addr.clone(),
                        reason: other.to_string(),
                    }
                }
            })?;
        if &answered != node {
            return Err(RpcError::WrongPeer {
                addr: addr.clone(),
                expected: node.clone(),
                found: answered,
            });
        }
        debug!(peer = %node, %addr, "rpc connection established");
        Ok(self.start(addr.clone(), stream, keys))
    }

    fn start(&self, addr: HostPort, stream: BoxStream, keys: SessionKeys) -> Arc<Conn<C>> {
        let (frames_tx, frames_rx) = mpsc::channel(WRITE_QUEUE);
        let conn = Arc::new(Conn {
            addr,
            frames: frames_tx,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: self.inner.shutdown.child_token(),
            born: Instant::now(),
            last_heard: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        });
        let (reader, writer) = keys.split(stream);
        tokio::spawn(write_loop(
            conn.clone(),
            writer,
            frames_rx,
            self.inner.max_frame,
        ));
        tokio::spawn(read_loop(conn.clone(), reader, self.inner.max_frame));
        conn
    }
}

/// Owns the write half of one connection; ends when the connection closes.
async fn write_loop<C: Call>(
    conn: Arc<Conn<C>>,
    mut writer: SealedWriter<tokio::io::WriteHalf<BoxStream>>,
    mut frames: mpsc::Receiver<Vec<u8>>,
    max_frame: u32,
) {
    loop {
        tokio::select! {
            // The connection was closed by the reader, a timeout or shutdown.
            _ = conn.closed.cancelled() => break,
            frame = frames.recv() => {
                let Some(frame) = frame else { break };
                if let Err(error) = writer.write_queued(frame, &mut frames, max_frame).await {
                    debug!(addr = %conn.addr, %error, "rpc write failed");
                    break;
                }
            }
        }
    }
    conn.close();
}

/// Owns the read half of one connection and routes each answer to its waiting caller.
async fn read_loop<C: Call>(
    conn: Arc<Conn<C>>,
    mut reader: SealedReader<tokio::io::ReadHalf<BoxStream>>,
    max_frame: u32,
) {
    loop {
        let frame = tokio::select! {
            _ = conn.closed.cancelled() => break,
            frame = reader.read_frame(max_frame) => frame,
        };
        let bytes = match frame {
            Ok(Some(bytes)) => bytes,
            Ok(None) => break,
            // A record that does not open: someone on the path altered the stream.
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                warn!(addr = %conn.addr, %error, "rpc read refused, closing the connection");
                break;
            }
            Err(error) => {
                debug!(addr = %conn.addr, %error, "rpc read failed");
                break;
            }
        };
        conn.heard();
        match codec::decode::<Envelope<C::Answer>>(&bytes, codec::Limit::Message) {
            Ok(Envelope { id, body }) => {
                if let Some(reply) = lock(&conn.pending).remove(&id) {
                    // The caller may have given up (deadline); nothing to do then.
                    let _ = reply.send(body);
                }
            }
            Err(error) => {
                warn!(addr = %conn.addr, %error, "undecodable rpc response, closing the connection");
                break;
            }
        }
    }
    conn.close();
}
