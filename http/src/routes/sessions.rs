//! The sessions service's routes: `POST /add-session`, `POST /remove-session` and
//! `GET /sessions/{user_id}`. A refusal (cap reached, no sessions) is a 409 with the same body
//! shape as a success, so clients always learn the current count.

use std::collections::HashMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use troupe_actors::sessions::{SessionReply, SessionUser};

use crate::api::NodeApi;
use crate::error::ApiError;

/// `POST /add-session?user_id=U`.
#[tracing::instrument(name = "add_session", skip_all, fields(route = "/add-session"))]
pub async fn add<N: NodeApi>(
    State(node): State<N>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let user = query_user(query)?;
    node.add_session(user).await.map(reply)
}

/// `POST /remove-session?user_id=U`.
#[tracing::instrument(name = "remove_session", skip_all, fields(route = "/remove-session"))]
pub async fn remove<N: NodeApi>(
    State(node): State<N>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let user = query_user(query)?;
    node.remove_session(user).await.map(reply)
}

/// `GET /sessions/{user_id}`: the count, 0 for an unknown user.
#[tracing::instrument(
    name = "session_count",
    skip_all,
    fields(route = "/sessions/{user_id}")
)]
pub async fn count<N: NodeApi>(
    State(node): State<N>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::BadRequest(format!("invalid path: {e}")))?;
    let user = SessionUser::parse(Some(&raw)).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let count = node.session_count(user.clone()).await?;
    Ok(Json(
        json!({ "user_id": user.as_str(), "active_sessions": count }),
    ))
}

fn query_user(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<SessionUser, ApiError> {
    let Query(params) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    SessionUser::parse(params.get("user_id").map(String::as_str))
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn reply(reply: SessionReply) -> (StatusCode, Json<Value>) {
    let status = if reply.is_conflict() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    let body = json!({
        "message": reply.message(),
        "user_id": reply.user_id.as_str(),
        "active_sessions": reply.active_sessions,
    });
    (status, Json(body))
}
