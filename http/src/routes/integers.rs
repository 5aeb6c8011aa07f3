//! The integers service's routes: the stored window averages.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use troupe_actors::integers::Average;
use troupe_actors::time::rfc3339_millis;
use utoipa::ToSchema;

use super::openapi::{Internal, NotFound, Unavailable};
use crate::api::NodeApi;
use crate::error::ApiError;

/// One stored window average as clients see it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AverageView {
    /// Window start, RFC 3339 UTC with milliseconds.
    window_start: String,
    /// Window start, Unix milliseconds.
    window_start_ms: u64,
    /// Mean of the window's integers.
    average: f64,
    /// Integers averaged.
    count: u64,
    /// False when the aggregator did not see the whole window.
    complete: bool,
}

/// Averages returned by `GET /v1/integers`.
const LATEST: usize = 10;

/// `GET /v1/integers`: the last 10 averages, newest first.
#[utoipa::path(
    get,
    path = "/v1/integers",
    operation_id = "integer_averages",
    tag = "integers",
    responses(
        (status = 200, description = "Up to 10 averages, newest first", body = Vec<AverageView>),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
#[tracing::instrument(
    level = "debug",
    name = "integer_averages",
    skip_all,
    fields(route = "/v1/integers")
)]
pub async fn latest<N: NodeApi>(State(node): State<N>) -> Result<Json<Vec<AverageView>>, ApiError> {
    let averages = node.integer_averages(LATEST).await?;
    Ok(Json(averages.iter().map(view).collect()))
}

/// `GET /v1/integers/last`: the newest average, 404 before the first window is stored.
#[utoipa::path(
    get,
    path = "/v1/integers/last",
    operation_id = "integer_last",
    tag = "integers",
    responses(
        (status = 200, description = "The newest average", body = AverageView),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
#[tracing::instrument(
    level = "debug",
    name = "integer_last",
    skip_all,
    fields(route = "/v1/integers/last")
)]
pub async fn last<N: NodeApi>(State(node): State<N>) -> Result<Json<AverageView>, ApiError> {
    let averages = node.integer_averages(1).await?;
    averages
        .first()
        .map(|a| Json(view(a)))
        .ok_or_else(|| ApiError::NotFound("no average stored yet".into()))
}

fn view(average: &Average) -> AverageView {
    AverageView {
        window_start: rfc3339_millis(average.window_start_ms),
        window_start_ms: average.window_start_ms,
        average: average.average,
        count: average.count,
        complete: average.complete,
    }
}
