//! The jobs service's routes: `POST /jobs` and `GET /jobs/{job_id}`, both answering
//! `{"message": job}` as the original service did.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Value};
use troupe_actors::jobs::{self, MAX_OBJECT_ID_BYTES};

use super::users::{body_bytes, MaxBodyBytes};
use crate::api::NodeApi;
use crate::error::ApiError;

/// `POST /jobs`: 201 with the new job, 400 within the de-duplication window.
#[tracing::instrument(name = "create_job", skip_all, fields(route = "/jobs"))]
pub async fn create<N: NodeApi>(
    State(node): State<N>,
    Extension(limit): Extension<MaxBodyBytes>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body_bytes(body, limit)?;
    let object_id = jobs::parse_create(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let job = node.create_job(object_id).await?;
    Ok((StatusCode::CREATED, Json(json!({ "message": job }))))
}

/// `GET /jobs/{job_id}`: the job, or 404.
#[tracing::instrument(name = "get_job", skip_all, fields(route = "/jobs/{job_id}"))]
pub async fn get<N: NodeApi>(
    State(node): State<N>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(job_id) = path.map_err(|e| ApiError::BadRequest(format!("invalid path: {e}")))?;
    if job_id.len() > MAX_OBJECT_ID_BYTES {
        // Longer than any id the cluster hands out.
        return Err(ApiError::NotFound(jobs::not_found_message(&job_id)));
    }
    let job = node.get_job(job_id).await?;
    Ok(Json(json!({ "message": job })))
}
