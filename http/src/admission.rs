//! Admission control at the edge: a bound on requests in progress per node.
//!
//! Past the bound a request is answered at once with 503, `Retry-After` and a JSON message.
//! The refusal is the outermost thing a request meets ([`Edge::handle`], called by
//! [`crate::serve`] as soon as hyper has parsed the head): no routing, no metrics middleware,
//! no span, no body, and a response built once per node, so an overloaded node sheds load for
//! the cost of one atomic probe and keeps its CPU for the requests it accepted and for the
//! next refusals (handled as ordinary requests, refusals queued behind everything else on a
//! saturated core).
//! Health and metrics probes are not counted: a saturated node is alive, and its saturation is
//! what `/metrics` shows.
//!
//! Refusals are counted in `troupe_http_rejected_total{reason="in_flight"}`; they never reach
//! the route table, so the per-route request series do not include them.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tower_service::Service;

use crate::metrics::{HttpMetrics, RejectionLabels};

/// What a refused client is told to wait before retrying.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Paths admission control never refuses.
pub(crate) const PROBES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The in-flight bound of one node's edge; cheap to clone.
#[derive(Clone)]
pub struct Admission(Arc<Bound>);

struct Bound {
    max: i64,
    /// Requests in progress: the `troupe_http_in_flight` gauge is the counter itself.
    in_flight: Gauge,
    rejected: Counter,
    /// The body of every refusal, built once.
    refusal: Bytes,
}

impl Admission {
    /// At most `max_in_flight` requests in progress at once.
    pub fn new(max_in_flight: usize, metrics: &HttpMetrics) -> Self {
        let max = i64::try_from(max_in_flight.max(1)).unwrap_or(i64::MAX);
        let message = format!(
            "this node is serving its limit of {max} requests at once (http.max_in_flight): \
             retry later"
        );
        let refusal = serde_json::to_vec(&serde_json::json!({ "message": message }))
            .map(Bytes::from)
            .unwrap_or_else(|_| Bytes::from_static(b"{\"message\":\"overloaded\"}"));
        Self(Arc::new(Bound {
            max,
            in_flight: metrics.in_flight.clone(),
            rejected: metrics
                .rejected
                .get_or_create(&RejectionLabels {
                    reason: "in_flight",
                })
                .clone(),
            refusal,
        }))
    }

    /// A place for a request to `path`: not counted for a probe, held until the ticket drops
    /// for any other request, refused (and counted) when the node is at its bound.
    pub fn enter(&self, path: &str) -> Entry<'_> {
        if PROBES.contains(&path) {
            return Entry::Probe;
        }
        let bound = &*self.0;
        let count = bound.in_flight.inner();
        let entered = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < bound.max).then_some(n + 1)
        });
        match entered {
            Ok(_) => Entry::Counted(Ticket(bound)),
            Err(_) => {
                bound.rejected.inc();
                Entry::Refused
            }
        }
    }

    /// The 503 of a refused request.
    pub fn refusal(&self) -> Response {
        let mut response = Response::new(Body::from(self.0.refusal.clone()));
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(RETRY_AFTER.as_secs().max(1)),
        );
        response
    }
}

/// What [`Admission::enter`] decided.
pub enum Entry<'a> {
    /// A probe: never refused, not counted.
    Probe,
    /// A place under the bound, held until the ticket drops.
    Counted(Ticket<'a>),
    /// At the bound: answer [`Admission::refusal`].
    Refused,
}

/// A request's place under the bound, given back when dropped (also when the client goes away
/// and the request is dropped unfinished).
pub struct Ticket<'a>(&'a Bound);

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// The routes of one listener behind the node's in-flight bound: what [`crate::serve`] serves.
#[derive(Clone)]
pub struct Edge {
    router: Router,
    admission: Admission,
}

impl Edge {
    /// `router` behind `admission`.
    pub fn new(router: Router, admission: Admission) -> Self {
        Self { router, admission }
    }

    /// Answers `request`: refused at once past the bound, otherwise routed.
    pub async fn handle(&self, request: Request) -> Response {
        let ticket = match self.admission.enter(request.uri().path()) {
            Entry::Probe => None,
            Entry::Counted(ticket) => Some(ticket),
            Entry::Refused => return self.admission.refusal(),
        };
        let mut router = self.router.clone();
        let response = match router.call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        drop(ticket);
        response
    }
}

/// For tests and tools that drive the edge as a tower service (`oneshot`).
impl Service<Request> for Edge {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let edge = self.clone();
        Box::pin(async move { Ok(edge.handle(request).await) })
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;

    fn admission(max: usize) -> (Admission, HttpMetrics) {
        let metrics = HttpMetrics::register(&mut Registry::default());
        (Admission::new(max, &metrics), metrics)
    }

    #[test]
    fn places_are_given_up_to_the_bound_and_back_when_tickets_drop() {
        let (admission, metrics) = admission(2);
        let first = admission.enter("/api/user/1");
        let second = admission.enter("/api/user/2");
        assert!(matches!(
            (&first, &second),
            (Entry::Counted(_), Entry::Counted(_))
        ));
        assert_eq!(metrics.in_flight.get(), 2);
        assert!(matches!(admission.enter("/api/user/3"), Entry::Refused));
        assert_eq!(metrics.in_flight.get(), 2, "a refusal holds no place");
        drop(first);
        assert_eq!(metrics.in_flight.get(), 1);
        let third = admission.enter("/api/user/3");
        assert!(matches!(third, Entry::Counted(_)), "a place again");
        drop((second, third));
        assert_eq!(metrics.in_flight.get(), 0);
    }

    #[test]
    fn probes_are_never_refused_nor_counted() {
        let (admission, metrics) = admission(1);
        let _held = admission.enter("/jobs");
        for probe in PROBES {
            assert!(matches!(admission.enter(probe), Entry::Probe), "{probe}");
        }
        assert_eq!(metrics.in_flight.get(), 1);
    }

    #[tokio::test]
    async fn a_refusal_is_a_json_503_with_retry_after_naming_the_knob() {
        let (admission, metrics) = admission(1);
        let _held = admission.enter("/jobs");
        for _ in 0..2 {
            assert!(matches!(admission.enter("/jobs"), Entry::Refused));
            let refused = admission.refusal();
            assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
            assert_eq!(refused.headers()[header::CONTENT_TYPE], "application/json");
            let body = axum::body::to_bytes(refused.into_body(), 1 << 16)
                .await
                .expect("body");
            let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
            let message = body["message"].as_str().unwrap_or_default();
            assert!(message.contains("http.max_in_flight"), "{message}");
        }
        assert_eq!(
            metrics
                .rejected
                .get_or_create(&RejectionLabels {
                    reason: "in_flight"
                })
                .get(),
            2
        );
    }
}
