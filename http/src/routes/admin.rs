//! Health, readiness, cluster view, key location and metrics.

use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use crate::api::{NodeApi, Readiness};
use crate::error::ApiError;
use crate::views::{ClusterView, Located, ShardCopyView};

/// Longest kind or key accepted in a path, in bytes.
const MAX_PATH_PART: usize = 256;

/// `GET /healthz`: the process is alive and serving HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 while the node takes traffic (joined, in placement, storage not near
/// full); 503 while joining and from the moment it is asked to stop.
pub async fn readyz<N: NodeApi>(State(node): State<N>) -> Result<Json<Value>, ApiError> {
    match node.readiness() {
        Readiness::Ready => Ok(Json(json!({ "status": "ready" }))),
        Readiness::NotReady(reason) => Err(ApiError::Unavailable {
            message: format!("not ready: {reason}"),
            retry_after: Duration::from_secs(1),
        }),
    }
}

/// `GET /cluster`: members, their status and generation, and the shard table.
pub async fn cluster<N: NodeApi>(State(node): State<N>) -> Json<ClusterView> {
    Json(node.cluster_view())
}

/// `GET /cluster/shards`: this node's copies of shards, with their epochs and digests.
pub async fn shard_copies<N: NodeApi>(
    State(node): State<N>,
) -> Result<Json<Vec<ShardCopyView>>, ApiError> {
    node.shard_copies().await.map(Json)
}

/// `GET /cluster/locate/{kind}/{key}`: served by the key's owner (forwarded when needed).
#[tracing::instrument(
    level = "debug",
    name = "locate",
    skip_all,
    fields(route = "/cluster/locate", kind, key)
)]
pub async fn locate<N: NodeApi>(
    State(node): State<N>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Located>, ApiError> {
    let Path((kind, key)) = path.map_err(|e| ApiError::BadRequest(format!("invalid path: {e}")))?;
    crate::record_on_span("kind", &kind);
    crate::record_on_span("key", &key);
    check_part("kind", &kind)?;
    check_part("key", &key)?;
    node.locate(kind, key).await.map(Json)
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics<N: NodeApi>(State(node): State<N>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.render_metrics(),
    )
}

fn check_part(name: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > MAX_PATH_PART {
        return Err(ApiError::BadRequest(format!(
            "{name} must be 1 to {MAX_PATH_PART} bytes long"
        )));
    }
    Ok(())
}
