//! Serving the edge's router on a listener, with the limits a hostile client cannot get around.
//!
//! axum's own `serve` builds hyper's connections without a timer, so hyper's header-read
//! timeout is off and a client that sends its headers a byte at a time holds a connection (and
//! a descriptor) for ever. [`serve`] builds each connection itself with hyper's HTTP/1 builder
//! and a tokio timer, and adds what hyper does not have:
//!
//! - a **header-read timeout** (hyper's, now on): the whole request head must arrive in time;
//!   it also bounds how long a keep-alive connection waits for its next request;
//! - a **body timeout** ([`DeadlineBody`]): the whole request body must arrive in time, or the
//!   handler sees a read error and answers 400;
//! - an **idle timeout**: a connection on which no byte moved for that long (a client that
//!   stopped reading its response, say) is asked to close, and dropped one period later;
//! - a **connection cap** ([`Slots`]): at the cap, a new connection takes the place of the
//!   oldest one that is not in the middle of a request (still sending its head, or idle between
//!   requests), which is closed at once; when every open connection is busy with a request, the
//!   new one is closed at once instead. So trickling connections cannot lock out real clients,
//!   and descriptors stay bounded (decision 021).
//!
//! It is generic over axum's [`Listener`] so the simulation serves the same way on turmoil.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::serve::Listener;
use axum::Router;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;
use tracing::Instrument;

/// The limits [`serve`] applies to every connection.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// The whole request head must arrive within this.
    pub header_read_timeout: Duration,
    /// The whole request body must arrive within this, counted from the end of the head.
    pub body_timeout: Duration,
    /// A connection on which no byte moved for this long is closed.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting, lets
/// requests in progress finish (closing idle connections at once) and returns when every
/// connection has closed.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
) where
    L: Listener,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slots = Slots::new(limits.max_connections);
    let tracker = TaskTracker::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        let stream = tokio::select! {
            // Stop accepting; connections finish below.
            _ = shutdown.cancelled() => break,
            (stream, _) = listener.accept() => stream,
        };
        let (kill, killed) = oneshot::channel();
        let Some(slot) = slots.admit(kill) else {
            // Every open connection is in the middle of a request: refuse this one at once.
            tracing::debug!("http connection refused: all slots busy");
            drop(stream);
            continue;
        };
        let conn = Connection {
            builder: builder.clone(),
            router: router.clone(),
            limits,
            slot,
            killed,
            shutdown: shutdown.clone(),
        };
        tracker.spawn(conn.run(stream).in_current_span());
    }
    tracker.close();
    tracker.wait().await;
}

/// One accepted connection and what ends it.
struct Connection {
    builder: hyper::server::conn::http1::Builder,
    router: Router,
    limits: ServeLimits,
    slot: Slot,
    /// Fired when a newer connection took this one's slot.
    killed: oneshot::Receiver<()>,
    shutdown: CancellationToken,
}

impl Connection {
    async fn run<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(self, stream: I) {
        let Self {
            builder,
            router,
            limits,
            slot,
            mut killed,
            shutdown,
        } = self;
        let activity = Arc::new(Activity::default());
        let io = TokioIo::new(Tracked {
            inner: stream,
            activity: activity.clone(),
        });
        let slot = Arc::new(slot);
        let service = {
            let slot = slot.clone();
            hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let request: Request =
                    request.map(|body| Body::new(DeadlineBody::new(body, limits.body_timeout)));
                let mut router = router.clone();
                let busy = slot.busy();
                async move {
                    let response = router.call(request).await;
                    drop(busy);
                    response
                }
            })
        };
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        let mut closing = false;
        loop {
            let idle_at = activity.last() + limits.idle_timeout;
            tokio::select! {
                // Served to the end, closed by the client, or a timeout hyper enforces.
                _ = conn.as_mut() => return,
                // A newer connection took this slot (this one was not mid-request).
                _ = &mut killed => return,
                // The node is stopping: finish the request in progress, then close.
                _ = shutdown.cancelled(), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = tokio::time::sleep_until(idle_at) => {
                    if activity.last() + limits.idle_timeout > Instant::now() {
                        continue;
                    }
                    if closing {
                        // Asked to close a whole idle period ago and still not done.
                        return;
                    }
                    closing = true;
                    activity.touch();
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// When a connection last moved a byte, as milliseconds since its creation.
struct Activity {
    born: Instant,
    last_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            born: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let ms = self.born.elapsed().as_millis();
        self.last_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.born + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A stream that records when it last read or wrote a byte, for the idle timeout.
struct Tracked<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that must arrive whole before a deadline; past it, reading fails.
pub struct DeadlineBody<B> {
    inner: B,
    deadline: Pin<Box<Sleep>>,
    done: bool,
}

impl<B> DeadlineBody<B> {
    /// Wraps `inner`, which must end within `timeout` from now.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            done: false,
        }
    }
}

/// The error a body read past its deadline gives.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

impl<B> HttpBody for DeadlineBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if !this.done && this.deadline.as_mut().poll(cx).is_ready() {
            this.done = true;
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => Poll::Ready(Some(frame.map_err(Into::into))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connection cap: open connections, and which of them a new one may replace.
#[derive(Clone)]
struct Slots {
    inner: Arc<Mutex<SlotTable>>,
}

struct SlotTable {
    cap: usize,
    open: usize,
    next: u64,
    /// Open connections not in the middle of a request, oldest first, with what closes them.
    evictable: BTreeMap<u64, oneshot::Sender<()>>,
    /// The same connections' current key in `evictable`, by connection.
    key_of: BTreeMap<u64, u64>,
    next_conn: u64,
}

impl Slots {
    fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(SlotTable {
                cap: cap.max(1),
                open: 0,
                next: 0,
                evictable: BTreeMap::new(),
                key_of: BTreeMap::new(),
                next_conn: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotTable> {
        // A panic while holding this lock leaves plain counters behind: keep using them.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for a new connection, closing the oldest evictable one at the cap; `None` when
    /// every open connection is busy.
    fn admit(&self, kill: oneshot::Sender<()>) -> Option<Slot> {
        let mut table = self.lock();
        if table.open >= table.cap {
            let (_, victim) = table.evictable.pop_first()?;
            // Its slot is free from now on; its own drop finds it gone from `evictable` and does
            // not free it again.
            let _ = victim.send(());
            table.open -= 1;
        }
        table.open += 1;
        let conn = table.next_conn;
        table.next_conn += 1;
        let key = table.next;
        table.next += 1;
        table.evictable.insert(key, kill);
        table.key_of.insert(conn, key);
        Some(Slot {
            slots: self.clone(),
            conn,
            kill: Mutex::new(None),
        })
    }
}

/// A connection's place under the cap; freed on drop.
struct Slot {
    slots: Slots,
    conn: u64,
    /// The closing handle, parked here while a request is in progress.
    kill: Mutex<Option<oneshot::Sender<()>>>,
}

impl Slot {
    /// Marks the connection as in the middle of a request until the guard drops.
    fn busy(self: &Arc<Self>) -> Busy {
        let mut table = self.slots.lock();
        if let Some(key) = table.key_of.remove(&self.conn) {
            if let Some(kill) = table.evictable.remove(&key) {
                *self
                    .kill
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(kill);
            }
        }
        Busy { slot: self.clone() }
    }
}

/// A request in progress on a connection; dropping it makes the connection evictable again,
/// as the newest.
struct Busy {
    slot: Arc<Slot>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let kill = self
            .slot
            .kill
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(kill) = kill {
            let mut table = self.slot.slots.lock();
            let key = table.next;
            table.next += 1;
            table.evictable.insert(key, kill);
            table.key_of.insert(self.slot.conn, key);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.slots.lock();
        match table.key_of.remove(&self.conn) {
            // Evictable when it ended: free its slot.
            Some(key) => {
                if table.evictable.remove(&key).is_some() {
                    table.open -= 1;
                }
            }
            // Busy (a request was cut short) or already evicted.
            None => {
                if self
                    .kill
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .is_some()
                {
                    table.open -= 1;
                }
            }
        }
    }
}
