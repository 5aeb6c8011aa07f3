//! The integers service's routes: the stored window averages.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use troupe_actors::integers::Average;
use troupe_actors::time::rfc3339_millis;

use crate::api::NodeApi;
use crate::error::ApiError;

/// Averages returned by `GET /v1/integers`.
const LATEST: usize = 10;

/// `GET /v1/integers`: the last 10 averages, newest first.
#[tracing::instrument(
    level = "debug",
    name = "integer_averages",
    skip_all,
    fields(route = "/v1/integers")
)]
pub async fn latest<N: NodeApi>(State(node): State<N>) -> Result<Json<Value>, ApiError> {
    let averages = node.integer_averages(LATEST).await?;
    Ok(Json(Value::Array(averages.iter().map(view).collect())))
}

/// `GET /v1/integers/last`: the newest average, 404 before the first window is stored.
#[tracing::instrument(
    level = "debug",
    name = "integer_last",
    skip_all,
    fields(route = "/v1/integers/last")
)]
pub async fn last<N: NodeApi>(State(node): State<N>) -> Result<Json<Value>, ApiError> {
    let averages = node.integer_averages(1).await?;
    averages
        .first()
        .map(|a| Json(view(a)))
        .ok_or_else(|| ApiError::NotFound("no average stored yet".into()))
}

fn view(average: &Average) -> Value {
    json!({
        "window_start": rfc3339_millis(average.window_start_ms),
        "window_start_ms": average.window_start_ms,
        "average": average.average,
        "count": average.count,
        "complete": average.complete,
    })
}
