//! Admission control at the edge: a bound on requests in progress per node.
//!
//! Past the bound a request is answered at once with 503, `Retry-After` and a JSON message,
//! before it parses a body or reaches a shard, so an overloaded node sheds load for the cost of
//! a semaphore probe instead of queueing without end (every queued request holds memory and,
//! further in, a place in a shard owner's queue). Health and metrics probes are not counted:
//! a saturated node is alive, and its saturation is what `/metrics` shows.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::metrics::{HttpMetrics, RejectionLabels};

/// What a refused client is told to wait before retrying.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Routes admission control never refuses.
const PROBES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The in-flight bound of one node's edge; cheap to clone (the middleware's state is cloned
/// for every request, so it is one `Arc`, not the metric families one by one).
#[derive(Clone)]
pub struct Admission(Arc<Bound>);

struct Bound {
    permits: Arc<Semaphore>,
    max: usize,
    metrics: HttpMetrics,
}

impl Admission {
    /// At most `max_in_flight` requests in progress at once.
    pub fn new(max_in_flight: usize, metrics: HttpMetrics) -> Self {
        let max = max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        Self(Arc::new(Bound {
            permits: Arc::new(Semaphore::new(max)),
            max,
            metrics,
        }))
    }
}

/// Middleware: runs the request if a place is free, answers 503 at once otherwise.
pub async fn admit(
    State(Admission(admission)): State<Admission>,
    request: Request,
    next: Next,
) -> Response {
    let probe = request
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|p| PROBES.contains(&p.as_str()));
    if probe {
        return next.run(request).await;
    }
    let Ok(permit) = admission.permits.clone().try_acquire_owned() else {
        admission
            .metrics
            .rejected
            .get_or_create(&RejectionLabels {
                reason: "in_flight",
            })
            .inc();
        return ApiError::Unavailable {
            message: format!(
                "this node is serving its limit of {} requests at once (http.max_in_flight): \
                 retry later",
                admission.max
            ),
            retry_after: RETRY_AFTER,
        }
        .into_response();
    };
    let gauge = InFlight::enter(&admission.metrics);
    let response = next.run(request).await;
    drop(gauge);
    drop(permit);
    response
}

/// Counts a request in the in-flight gauge until dropped (also when the client goes away).
struct InFlight<'a>(&'a HttpMetrics);

impl<'a> InFlight<'a> {
    fn enter(metrics: &'a HttpMetrics) -> Self {
        metrics.in_flight.inc();
        Self(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}
