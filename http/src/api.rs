//! What the edge needs from a node.

use std::future::Future;

use crate::error::ApiError;
use crate::views::{ClusterView, Located};

/// Whether the node should receive traffic, with the reason when not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Joined, placement known, owned units open.
    Ready,
    /// Not yet (or no longer); the reason is shown to the caller of `/readyz`.
    NotReady(String),
}

/// The node as seen from the HTTP edge. Implemented by the node crate; the routes are generic
/// over it so the edge has no dependency on gossip, placement or the network.
pub trait NodeApi: Clone + Send + Sync + 'static {
    /// For `/readyz`.
    fn readiness(&self) -> Readiness;
    /// For `/cluster`.
    fn cluster_view(&self) -> ClusterView;
    /// For `/cluster/locate`: served by the key's owner, forwarded there if needed.
    fn locate(
        &self,
        kind: String,
        key: String,
    ) -> impl Future<Output = Result<Located, ApiError>> + Send;
    /// For `/metrics`: every metric of the node (the edge's own included, registered through
    /// [`HttpMetrics::register`](crate::HttpMetrics::register)) in Prometheus text format.
    fn render_metrics(&self) -> String;
}
