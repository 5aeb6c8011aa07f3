//! Troupe's HTTP edge: routes, JSON bodies, and the one place errors become status codes.
//!
//! The edge knows nothing about gossip, placement or sockets: it talks to the node through the
//! [`NodeApi`] trait, which the node crate implements (and which keeps this crate free of a
//! dependency cycle with the node that boots it).

pub mod admission;
pub mod api;
pub mod dashboard;
pub mod error;
pub mod metrics;
pub mod routes;
pub mod serve;
pub mod views;

pub use admission::Edge;

/// Records `value` as field `name` of the request's span. Request spans exist only at debug
/// level (decision 015): below it this looks nothing up. (`Span::current()` costs a span
/// registry lookup per request once the connection runs inside the node's span.)
pub(crate) fn record_on_span(name: &str, value: &str) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::Span::current().record(name, value);
    }
}
pub use api::{NodeApi, Readiness};
pub use error::ApiError;
pub use metrics::HttpMetrics;
pub use routes::openapi::document as openapi_document;
pub use routes::{router, EdgeLimits, Surface};
pub use serve::{serve, ServeLimits, Stopping};
