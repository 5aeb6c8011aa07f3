//! Health, readiness, cluster view, key location and metrics.

use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::openapi::{BadRequest, Internal, Unavailable};
use crate::api::{NodeApi, Readiness};
use crate::error::ApiError;
use crate::views::{ClusterView, Located, ShardCopyView};

/// Longest kind or key accepted in a path, in bytes.
const MAX_PATH_PART: usize = 256;

/// The body of a probe that passed.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ProbeStatus {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    #[schema(example = "ok")]
    status: &'static str,
}

/// `GET /healthz`: the process is alive and serving HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "probes",
    responses((status = 200, description = "The process is alive", body = ProbeStatus))
)]
pub async fn healthz() -> Json<ProbeStatus> {
    Json(ProbeStatus { status: "ok" })
}

/// `GET /readyz`: 200 while the node takes traffic (joined, in placement, storage not near
/// full); 503 while joining and from the moment it is asked to stop.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "probes",
    responses(
        (status = 200, description = "Send this node traffic", body = ProbeStatus),
        (status = 503, response = Unavailable),
    )
)]
pub async fn readyz<N: NodeApi>(State(node): State<N>) -> Result<Json<ProbeStatus>, ApiError> {
    match node.readiness() {
        Readiness::Ready => Ok(Json(ProbeStatus { status: "ready" })),
        Readiness::NotReady(reason) => Err(ApiError::Unavailable {
            message: format!("not ready: {reason}"),
            retry_after: Duration::from_secs(1),
        }),
    }
}

/// `GET /cluster`: members, their status and generation, and the shard table.
#[utoipa::path(
    get,
    path = "/cluster",
    operation_id = "cluster",
    tag = "operator",
    responses((status = 200, description = "This node's view of the cluster", body = ClusterView))
)]
pub async fn cluster<N: NodeApi>(State(node): State<N>) -> Json<ClusterView> {
    Json(node.cluster_view())
}

/// `GET /cluster/shards`: this node's copies of shards, with their epochs and digests.
#[utoipa::path(
    get,
    path = "/cluster/shards",
    operation_id = "shard_copies",
    tag = "operator",
    responses(
        (status = 200, description = "This node's copies of shards", body = Vec<ShardCopyView>),
        (status = 500, response = Internal),
    )
)]
pub async fn shard_copies<N: NodeApi>(
    State(node): State<N>,
) -> Result<Json<Vec<ShardCopyView>>, ApiError> {
    node.shard_copies().await.map(Json)
}

/// `GET /cluster/locate/{kind}/{key}`: served by the key's owner (forwarded when needed).
#[utoipa::path(
    get,
    path = "/cluster/locate/{kind}/{key}",
    operation_id = "locate",
    tag = "operator",
    params(
        ("kind" = String, Path, min_length = 1, max_length = 256,
         description = "Entity kind: `party` places the key by party code, anything else by hash"),
        ("key" = String, Path, min_length = 1, max_length = 256, description = "Entity key"),
    ),
    responses(
        (status = 200, description = "Where the key lives, from its owner", body = Located),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
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
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operator",
    responses(
        (status = 200, description = "Every metric of the node", body = String,
         content_type = "application/openmetrics-text"),
    )
)]
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
