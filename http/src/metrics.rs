//! Request counts and latency histograms per route and status, recorded by a middleware, and
//! the admission control's saturation metrics.
//!
//! Every label takes a bounded set of values, whatever clients send: the route is the matched
//! route's pattern or `unmatched`, the method one of the standard ones or `other`, the status a
//! three-digit code.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of one request series: the route pattern (not the raw path, which would explode the
/// number of series), the method and the status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route pattern such as `/cluster/locate/{kind}/{key}`, or `unmatched`.
    pub route: String,
    /// HTTP method, one of [`KNOWN_METHODS`] or `other`.
    pub method: &'static str,
    /// Status code.
    pub status: u16,
}

/// Methods that get a label of their own; any other (a client may send any token) is `other`.
pub const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// The label value of `method`: the method itself when standard, `other` otherwise.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|m| **m == method.as_str())
        .copied()
        .unwrap_or("other")
}

/// Labels of a refused request: why it was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    /// `in_flight` (the node's bound on requests in progress).
    pub reason: &'static str,
}

/// The edge's metric families; cheap to clone (they are shared handles).
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    /// Requests refused with 503 by admission control, by reason.
    pub rejected: Family<RejectionLabels, Counter>,
    /// Requests in progress that admission control counts.
    pub in_flight: Gauge,
}

impl HttpMetrics {
    /// Creates the families and registers them in the node's registry.
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            // 100 µs to ~3.3 s.
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        registry.register(
            "troupe_http_requests",
            "HTTP requests served, by route, method and status",
            requests.clone(),
        );
        registry.register(
            "troupe_http_request_duration_seconds",
            "HTTP request latency, by route, method and status",
            latency.clone(),
        );
        let rejected = Family::<RejectionLabels, Counter>::default();
        let in_flight = Gauge::default();
        registry.register(
            "troupe_http_rejected",
            "HTTP requests refused with 503 because the node was saturated, by reason",
            rejected.clone(),
        );
        registry.register(
            "troupe_http_in_flight",
            "HTTP requests in progress under the node's in-flight bound (http.max_in_flight)",
            in_flight.clone(),
        );
        Self {
            requests,
            latency,
            rejected,
            in_flight,
        }
    }

    pub(crate) fn record(&self, labels: RequestLabels, seconds: f64) {
        self.latency.get_or_create(&labels).observe(seconds);
        self.requests.get_or_create(&labels).inc();
    }
}

/// Middleware: times the request and records it under its matched route.
///
/// The state is an `Arc`: middleware state is cloned for every request, and one reference
/// count is cheaper than one per metric family.
pub async fn track(
    State(metrics): State<std::sync::Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let response = next.run(request).await;
    let labels = RequestLabels {
        route,
        method,
        status: response.status().as_u16(),
    };
    metrics.record(labels, started.elapsed().as_secs_f64());
    response
}
