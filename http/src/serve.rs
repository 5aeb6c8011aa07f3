//! Serving the edge's router on a listener, with the limits a hostile client cannot get around.
//!
//! axum's own `serve` builds hyper's connections without a timer, so hyper's header-read
//! timeout is off and a client that sends its headers a byte at a time holds a connection (and
//! a descriptor) for ever. [`serve`] builds each connection itself with hyper's HTTP/1 builder
//! and a tokio timer, and adds what hyper does not have:
//!
//! - a **header-read timeout**: the whole request head must arrive in time; it also bounds how
//!   long a keep-alive connection waits for its next request (hyper's own timer does the same,
//!   but arms and cancels a timer for every request; see [`Timers`]);
//! - a **body timeout** ([`DeadlineBody`]): the whole request body must arrive in time, or the
//!   handler sees a read error and answers 400;
//! - an **idle timeout**: a connection on which no byte moved for that long (a client that
//!   stopped reading its response, say; checked every quarter of it, so up to a quarter
//!   more) is asked to close, and dropped one period later;
//! - a **connection cap** ([`Slots`]): at the cap, a new connection takes the place of the
//!   oldest one that is not in the middle of a request (still sending its head, or idle between
//!   requests), which is closed at once; when every open connection is busy with a request, the
//!   new one is closed at once instead, and so is it while more than an eighth of the cap of
//!   evicted connections have not closed yet. So trickling connections cannot lock out real
//!   clients, and descriptors stay bounded (decision 021).
//!
//! Each request first meets the node's in-flight bound ([`Edge::handle`]), before any routing.
//! What runs for every request here is kept to a few atomic operations: a connection counts
//! the reads and writes that moved bytes (the idle check compares counts instead of reading
//! the clock on every read), and marks itself busy or evictable with one atomic store.
//!
//! It is generic over axum's [`Listener`] so the simulation serves the same way on turmoil.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::serve::Listener;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use crate::admission::Edge;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
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

/// When a stopping node drains and when it stops: see [`serve`].
#[derive(Clone, Debug, Default)]
pub struct Stopping {
    /// Cancelled when the node starts to stop: every response from then on says
    /// `Connection: close`, so keep-alive clients open their next connection elsewhere.
    pub draining: CancellationToken,
    /// Cancelled at the end of the drain: stop accepting, finish what was accepted.
    pub stop: CancellationToken,
}

/// Serves `edge` on `listener` until `stopping.stop` is cancelled, then stops accepting, lets
/// requests in progress finish (closing idle connections at once) and returns when every
/// connection has closed.
///
/// Between `stopping.draining` and `stopping.stop` it serves as before, but closes each
/// connection after its response. When it stops, it first takes the connections the kernel
/// already accepted on its behalf and serves each of them one request: closing the listener
/// with them queued would reset connections whose clients had already sent a request, which a
/// client cannot tell from a request lost after it was sent.
pub async fn serve<L>(mut listener: L, edge: Edge, limits: ServeLimits, stopping: Stopping)
where
    L: Listener,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slots = Slots::new(limits.max_connections);
    let tracker = TaskTracker::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The header-read timeout is enforced by each connection's own check (see
    // `Connection::run`): hyper's arms and cancels a timer for every request.
    builder.header_read_timeout(None);
    let accepted = |stream: L::Io| {
        let (kill, killed) = oneshot::channel();
        let Some(slot) = slots.admit(kill) else {
            // Every open connection is in the middle of a request: refuse this one at once.
            tracing::debug!("http connection refused: all slots busy");
            return;
        };
        let conn = Connection {
            builder: builder.clone(),
            edge: edge.clone(),
            limits,
            slot,
            killed,
            shutdown: stopping.stop.clone(),
            draining: stopping.draining.clone(),
        };
        tracker.spawn(conn.run(stream).in_current_span());
    };
    loop {
        tokio::select! {
            // Stop accepting; connections finish below.
            _ = stopping.stop.cancelled() => break,
            (stream, _) = listener.accept() => accepted(stream),
        }
    }
    // The connections already queued are served too (see `LINGER`) instead of being reset
    // with the listener.
    while let Some((stream, _)) = accept_queued(&mut listener).await {
        accepted(stream);
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// A connection the kernel has already accepted, if any, without waiting for one.
async fn accept_queued<L: Listener>(listener: &mut L) -> Option<(L::Io, L::Addr)> {
    let mut accept = std::pin::pin!(listener.accept());
    std::future::poll_fn(|cx| match accept.as_mut().poll(cx) {
        Poll::Ready(conn) => Poll::Ready(Some(conn)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// How long an idle connection stays open once the node stops accepting, for the request its
/// client may be sending at that moment: a connection accepted just before, or a keep-alive one
/// idle through the whole drain. Its response closes it (the node is draining); one still idle
/// after this is closed. Closing at once cut off requests already sent.
const LINGER: Duration = Duration::from_secs(1);

/// One accepted connection and what ends it.
struct Connection {
    builder: hyper::server::conn::http1::Builder,
    edge: Edge,
    limits: ServeLimits,
    slot: Slot,
    /// Fired when a newer connection took this one's slot.
    killed: oneshot::Receiver<()>,
    shutdown: CancellationToken,
    /// Once cancelled, every response closes its connection.
    draining: CancellationToken,
}

impl Connection {
    async fn run<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(self, stream: I) {
        let Self {
            builder,
            edge,
            limits,
            slot,
            mut killed,
            shutdown,
            draining,
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
                let request: Request = request.map(|body| {
                    // A request without a body (most reads) has nothing to time.
                    if body.is_end_stream() {
                        Body::new(body)
                    } else {
                        Body::new(DeadlineBody::new(body, limits.body_timeout))
                    }
                });
                let edge = edge.clone();
                let busy = slot.busy();
                let draining = draining.clone();
                async move {
                    let mut response = edge.handle(request).await;
                    if draining.is_cancelled() {
                        // hyper closes the connection once this response is written.
                        response
                            .headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    drop(busy);
                    Ok::<_, std::convert::Infallible>(response)
                }
            })
        };
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        let mut closing = false;
        let mut lingering = false;
        let linger = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(linger);
        let mut timers = Timers::new(limits, activity.moved(), slot.state());
        let mut next_check = Instant::now() + timers.every;
        loop {
            tokio::select! {
                // Served to the end, closed by the client, or an error.
                _ = conn.as_mut() => return,
                // A newer connection took this slot (this one was not mid-request).
                _ = &mut killed => return,
                // The node stops accepting: a last request may still come (see `LINGER`).
                _ = shutdown.cancelled(), if !closing && !lingering => {
                    lingering = true;
                    linger.as_mut().reset(Instant::now() + LINGER.min(limits.header_read_timeout));
                }
                // Finish the request in progress, if any, then close.
                _ = &mut linger, if lingering && !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = tokio::time::sleep_until(next_check) => {
                    next_check += timers.every;
                    match timers.check(activity.moved(), slot.state()) {
                        Verdict::Fine => {}
                        // The head did not arrive in time: closed at once, as hyper would.
                        Verdict::HeadLate => return,
                        Verdict::Idle if closing => {
                            // Asked to close a whole idle period ago and still not done.
                            return;
                        }
                        Verdict::Idle => {
                            closing = true;
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
        }
    }
}

/// The header-read and idle timeouts of one connection, checked every quarter of the shorter
/// one, so each fires up to a quarter late. Nothing runs per request for them: the
/// header-read timeout watches the connection's slot state (busy, or the number drawn when its
/// last request ended) and its writes, the idle timeout its reads and writes.
///
/// The head of a request must arrive within `header_read_timeout` of the end of the previous
/// request (or of the connection's start), as with hyper's own timeout, which also bounds how
/// long a keep-alive connection waits: a connection that neither was busy, nor finished a
/// request, nor wrote a byte between checks spanning the timeout is closed. A request in
/// progress is never cut by it, nor a response still being written to a slow reader (its
/// writes move); a client that stops reading a response altogether is closed by it.
struct Timers {
    every: Duration,
    head_checks: u32,
    idle_checks: u32,
    /// Checks in a row that saw the connection waiting for a head with no request in between.
    waiting: u32,
    state: u64,
    /// Checks in a row with no read or write that moved a byte.
    quiet: u32,
    moved: Moved,
}

/// What a check found.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Fine,
    HeadLate,
    Idle,
}

impl Timers {
    fn new(limits: ServeLimits, moved: Moved, state: u64) -> Self {
        let shortest = limits.header_read_timeout.min(limits.idle_timeout);
        let every = (shortest / IDLE_CHECKS).max(Duration::from_millis(1));
        let checks = |timeout: Duration| {
            u32::try_from(timeout.as_nanos().div_ceil(every.as_nanos()))
                .unwrap_or(u32::MAX)
                .max(1)
        };
        Self {
            every,
            head_checks: checks(limits.header_read_timeout),
            idle_checks: checks(limits.idle_timeout),
            waiting: 0,
            state,
            quiet: 0,
            moved,
        }
    }

    fn check(&mut self, moved: Moved, state: u64) -> Verdict {
        if state == BUSY || state != self.state || moved.writes != self.moved.writes {
            self.waiting = 0;
            self.state = state;
        } else if state != EVICTED {
            self.waiting += 1;
        }
        if moved == self.moved {
            self.quiet += 1;
        } else {
            self.quiet = 0;
        }
        self.moved = moved;
        if self.waiting >= self.head_checks {
            return Verdict::HeadLate;
        }
        if self.quiet >= self.idle_checks {
            self.quiet = 0;
            return Verdict::Idle;
        }
        Verdict::Fine
    }
}

/// Checks per period of the shorter timeout (see [`Timers`]).
const IDLE_CHECKS: u32 = 4;

/// How many reads and how many writes of a connection moved bytes. Only the connection's
/// stream updates them, so a load and a store do (no locked instruction per read).
#[derive(Default)]
struct Activity {
    reads: AtomicU64,
    writes: AtomicU64,
}

/// The counts of an [`Activity`] at one check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Moved {
    reads: u64,
    writes: u64,
}

impl Activity {
    fn bump(counter: &AtomicU64) {
        let count = counter.load(Ordering::Relaxed);
        counter.store(count.wrapping_add(1), Ordering::Relaxed);
    }

    fn moved(&self) -> Moved {
        Moved {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
        }
    }
}

/// A stream that counts the reads and writes that moved bytes, for the idle timeout.
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
            Activity::bump(&self.activity.reads);
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
            Activity::bump(&self.activity.writes);
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
///
/// Each connection's state is one atomic word: [`BUSY`] while it serves a request, otherwise
/// the number it drew when it last became evictable (so the smallest is the oldest). A request
/// marks its connection with one store; only a new connection at the cap takes the lock and
/// looks for the oldest evictable connection among the open ones.
#[derive(Clone)]
struct Slots {
    inner: Arc<Mutex<SlotTable>>,
    /// Numbers drawn by connections becoming evictable, in order.
    order: Arc<AtomicU64>,
}

/// A connection in the middle of a request.
const BUSY: u64 = u64::MAX;
/// A connection a newer one replaced: it is closing and never evictable again.
const EVICTED: u64 = u64::MAX - 1;

struct SlotTable {
    cap: usize,
    /// Open connections (not evicted) by id: their state and what closes them.
    open: HashMap<u64, (Arc<AtomicU64>, oneshot::Sender<()>)>,
    /// Evicted connections whose task has not closed them yet: they still hold a descriptor.
    closing: usize,
    next_conn: u64,
}

/// Evicted connections still closing, as a share of the cap, past which a new connection is
/// refused instead of evicting one more: an evicted connection closes when its task next runs,
/// and on a starved CPU a flood of new connections outran those tasks, holding 40 % more
/// descriptors than the cap.
const CLOSING_SHARE: usize = 8;

impl SlotTable {
    fn closing_cap(&self) -> usize {
        (self.cap / CLOSING_SHARE).max(1)
    }
}

impl Slots {
    fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(SlotTable {
                cap: cap.max(1),
                open: HashMap::new(),
                closing: 0,
                next_conn: 0,
            })),
            order: Arc::new(AtomicU64::new(0)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotTable> {
        // A panic while holding this lock leaves a consistent map behind: keep using it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A number later than every one drawn before.
    fn draw(&self) -> u64 {
        self.order.fetch_add(1, Ordering::Relaxed)
    }

    /// A slot for a new connection, closing the oldest evictable one at the cap; `None` when
    /// every open connection is busy, or too many evicted ones are still closing.
    fn admit(&self, kill: oneshot::Sender<()>) -> Option<Slot> {
        let mut table = self.lock();
        while table.open.len() >= table.cap {
            if table.closing >= table.closing_cap() {
                return None;
            }
            let (victim, state, drawn) = table
                .open
                .iter()
                .map(|(id, (state, _))| (*id, state, state.load(Ordering::Relaxed)))
                .filter(|(_, _, drawn)| *drawn < EVICTED)
                .min_by_key(|(_, _, drawn)| *drawn)?;
            // Lost to a request that just started on it: look again.
            if state
                .compare_exchange(drawn, EVICTED, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            if let Some((_, kill)) = table.open.remove(&victim) {
                // Its own drop finds it gone from `open` and counts it closed.
                let _ = kill.send(());
                table.closing += 1;
            }
        }
        let conn = table.next_conn;
        table.next_conn += 1;
        let state = Arc::new(AtomicU64::new(self.draw()));
        table.open.insert(conn, (state.clone(), kill));
        Some(Slot {
            slots: self.clone(),
            conn,
            state,
        })
    }
}

/// A connection's place under the cap; freed on drop.
struct Slot {
    slots: Slots,
    conn: u64,
    /// [`BUSY`], [`EVICTED`] or the number drawn when it last became evictable.
    state: Arc<AtomicU64>,
}

impl Slot {
    /// [`BUSY`], [`EVICTED`] or the number drawn when the last request ended.
    fn state(&self) -> u64 {
        self.state.load(Ordering::Relaxed)
    }

    /// Marks the connection as in the middle of a request until the guard drops.
    fn busy(self: &Arc<Self>) -> Busy {
        let drawn = self.state.load(Ordering::Relaxed);
        if drawn != EVICTED {
            // Fails only if a newer connection evicted this one meanwhile: it is closing.
            let _ = self
                .state
                .compare_exchange(drawn, BUSY, Ordering::Relaxed, Ordering::Relaxed);
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
        let slot = &self.slot;
        let _ = slot.state.compare_exchange(
            BUSY,
            slot.slots.draw(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Absent when a newer connection evicted it (its place was taken then).
        let mut table = self.slots.lock();
        if table.open.remove(&self.conn).is_none() {
            table.closing = table.closing.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(slots: &Slots) -> (Option<Slot>, oneshot::Receiver<()>) {
        let (kill, killed) = oneshot::channel();
        (slots.admit(kill), killed)
    }

    fn limits(header_ms: u64, idle_ms: u64) -> ServeLimits {
        ServeLimits {
            header_read_timeout: Duration::from_millis(header_ms),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_millis(idle_ms),
            max_connections: 8,
        }
    }

    #[test]
    fn a_connection_waiting_for_a_head_over_the_timeout_is_late_whatever_bytes_trickle() {
        let mut timers = Timers::new(limits(1000, 60_000), Moved::default(), 5);
        assert_eq!(timers.every, Duration::from_millis(250));
        // A byte of head every check: not idle, but no request ever starts.
        let verdicts: Vec<Verdict> = (1..=4)
            .map(|reads| timers.check(Moved { reads, writes: 0 }, 5))
            .collect();
        assert_eq!(verdicts[..3], [Verdict::Fine, Verdict::Fine, Verdict::Fine]);
        assert_eq!(verdicts[3], Verdict::HeadLate);
    }

    #[test]
    fn requests_in_progress_or_ending_between_checks_keep_the_head_timer_from_firing() {
        let mut timers = Timers::new(limits(1000, 60_000), Moved::default(), 5);
        for i in 0..100u64 {
            // Busy at one check, a request ended (a new number) by the next.
            let state = if i % 2 == 0 { BUSY } else { 6 + i };
            let moved = Moved {
                reads: i,
                writes: i,
            };
            assert_eq!(timers.check(moved, state), Verdict::Fine, "check {i}");
        }
    }

    #[test]
    fn a_response_written_slowly_is_not_cut_but_one_never_read_is() {
        let mut timers = Timers::new(limits(1000, 60_000), Moved::default(), 5);
        // The handler answered (state 5, not busy); the response trickles out.
        for writes in 1..=20 {
            let moved = Moved { reads: 0, writes };
            assert_eq!(timers.check(moved, 5), Verdict::Fine, "write {writes}");
        }
        // The client stopped reading: nothing moves any more.
        let stuck = Moved {
            reads: 0,
            writes: 20,
        };
        let verdicts: Vec<Verdict> = (0..4).map(|_| timers.check(stuck, 5)).collect();
        assert_eq!(verdicts[3], Verdict::HeadLate);
    }

    #[test]
    fn a_connection_with_no_byte_moving_for_the_idle_timeout_is_idle() {
        // A request in progress for ever, silent: only the idle timeout applies.
        let mut timers = Timers::new(limits(10_000, 1000), Moved::default(), BUSY);
        assert_eq!(timers.every, Duration::from_millis(250));
        let verdicts: Vec<Verdict> = (0..4)
            .map(|_| timers.check(Moved::default(), BUSY))
            .collect();
        assert_eq!(verdicts[3], Verdict::Idle);
        assert!(verdicts[..3].iter().all(|v| *v == Verdict::Fine));
    }

    #[test]
    fn at_the_cap_a_new_connection_replaces_the_oldest_evictable_one() {
        let slots = Slots::new(2);
        let (first, mut first_killed) = slot(&slots);
        let (second, mut second_killed) = slot(&slots);
        let (first, second) = (
            Arc::new(first.expect("room")),
            Arc::new(second.expect("room")),
        );
        // The first connection served a request since: the second is now the oldest idle one.
        drop(first.busy());
        let (third, _) = slot(&slots);
        assert!(third.is_some());
        assert!(
            second_killed.try_recv().is_ok(),
            "the oldest idle one is closed"
        );
        assert!(first_killed.try_recv().is_err());
        drop(second);
        assert_eq!(
            slots.lock().open.len(),
            2,
            "an evicted slot is not freed twice"
        );
    }

    #[test]
    fn new_connections_are_refused_while_too_many_evicted_ones_still_hold_descriptors() {
        let slots = Slots::new(CLOSING_SHARE);
        let held: Vec<Slot> = (0..CLOSING_SHARE)
            .map(|_| slot(&slots).0.expect("room"))
            .collect();
        // One eviction is allowed while its connection closes (an eighth of the cap).
        let (newer, _) = slot(&slots);
        assert!(newer.is_some(), "replaces the oldest");
        assert!(
            slot(&slots).0.is_none(),
            "the evicted one still holds its descriptor"
        );
        // The evicted connection's task ran and closed it: room to evict again.
        drop(held);
        assert!(slot(&slots).0.is_some());
    }

    #[test]
    fn when_every_connection_is_busy_the_new_one_is_refused_and_freed_slots_are_reused() {
        let slots = Slots::new(2);
        let a = Arc::new(slot(&slots).0.expect("room"));
        let b = Arc::new(slot(&slots).0.expect("room"));
        let (busy_a, busy_b) = (a.busy(), b.busy());
        assert!(slot(&slots).0.is_none(), "all busy: refused");
        drop(busy_a);
        let (c, _) = slot(&slots);
        assert!(c.is_some(), "a connection idle again can be replaced");
        drop((busy_b, b, c));
        assert_eq!(slots.lock().open.len(), 0);
        assert!(slot(&slots).0.is_some());
    }
}
