//! The sessions service's routes: `POST /add-session`, `POST /remove-session` and
//! `GET /sessions/{user_id}`. A refusal (cap reached, no sessions) is a 409 with the same body
//! shape as a success, so clients always learn the current count.
//!
//! The user id is taken from the query (percent-decoded) or the path and validated with
//! [`SessionUser::parse`], so a missing, empty or too long id is a JSON 400 that never reaches a
//! shard. An id whose bytes are not UTF-8 is a 400 too: decoded lossily, as axum's `Query`
//! does, two such ids would share one counter.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use troupe_actors::sessions::{SessionReply, SessionUser};
use utoipa::{IntoParams, ToSchema};

use super::openapi::{BadRequest, Internal, StorageFull, Unavailable};
use crate::api::NodeApi;
use crate::error::ApiError;

/// The answer to an add or a remove, 200 and 409 alike: what happened and the count now.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SessionChange {
    /// `session added`, `session removed`, `max sessions (N) reached` or `no active sessions`.
    message: String,
    /// Whose sessions.
    user_id: String,
    /// Active sessions after the request.
    active_sessions: u32,
}

/// `GET /sessions/{user_id}` response.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SessionCount {
    /// Whose sessions.
    user_id: String,
    /// Active sessions, 0 for an unknown user.
    active_sessions: u32,
}

/// The query of `POST /add-session` and `POST /remove-session` (documentation only: the route
/// decodes the raw query strictly, see the module's comment). Other parameters are ignored.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct UserQuery {
    /// Whose sessions: 1 to 256 bytes once decoded, UTF-8.
    #[param(min_length = 1, max_length = 256)]
    user_id: String,
}

/// `POST /add-session?user_id=U`: 200 when added, 409 at the cap.
#[utoipa::path(
    post,
    path = "/add-session",
    operation_id = "add_session",
    tag = "sessions",
    params(UserQuery),
    responses(
        (status = 200, description = "Added", body = SessionChange),
        (status = 400, response = BadRequest),
        (status = 409, description = "The user is at the session cap", body = SessionChange),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
        (status = 507, response = StorageFull),
    )
)]
#[tracing::instrument(
    level = "debug",
    name = "add_session",
    skip_all,
    fields(route = "/add-session", key)
)]
pub async fn add<N: NodeApi>(
    State(node): State<N>,
    RawQuery(query): RawQuery,
) -> Result<(StatusCode, Json<SessionChange>), ApiError> {
    let user = query_user(query.as_deref())?;
    node.add_session(user).await.map(reply)
}

/// `POST /remove-session?user_id=U`: 200 when removed, 409 when there was none.
#[utoipa::path(
    post,
    path = "/remove-session",
    operation_id = "remove_session",
    tag = "sessions",
    params(UserQuery),
    responses(
        (status = 200, description = "Removed", body = SessionChange),
        (status = 400, response = BadRequest),
        (status = 409, description = "The user has no session", body = SessionChange),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
#[tracing::instrument(
    level = "debug",
    name = "remove_session",
    skip_all,
    fields(route = "/remove-session", key)
)]
pub async fn remove<N: NodeApi>(
    State(node): State<N>,
    RawQuery(query): RawQuery,
) -> Result<(StatusCode, Json<SessionChange>), ApiError> {
    let user = query_user(query.as_deref())?;
    node.remove_session(user).await.map(reply)
}

/// `GET /sessions/{user_id}`: the count, 0 for an unknown user.
#[utoipa::path(
    get,
    path = "/sessions/{user_id}",
    operation_id = "session_count",
    tag = "sessions",
    params(("user_id" = String, Path, min_length = 1, max_length = 256,
            description = "Whose sessions (percent-decoded)")),
    responses(
        (status = 200, description = "The count", body = SessionCount),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
#[tracing::instrument(
    level = "debug",
    name = "session_count",
    skip_all,
    fields(route = "/sessions/{user_id}", key)
)]
pub async fn count<N: NodeApi>(
    State(node): State<N>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<SessionCount>, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::BadRequest(format!("invalid path: {e}")))?;
    let user = SessionUser::parse(Some(&raw)).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    crate::record_on_span("key", user.as_str());
    let count = node.session_count(user.clone()).await?;
    Ok(Json(SessionCount {
        user_id: user.as_str().to_owned(),
        active_sessions: count,
    }))
}

/// The validated `user_id` query parameter (the last one, if repeated); other parameters are
/// ignored.
fn query_user(query: Option<&str>) -> Result<SessionUser, ApiError> {
    let raw = query
        .unwrap_or_default()
        .rsplit('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(name, _)| form_decode(name).is_ok_and(|name| name == "user_id"))
        .map(|(_, value)| form_decode(value))
        .transpose()
        .map_err(|_| ApiError::BadRequest("user_id must be UTF-8 once percent-decoded".into()))?;
    let user =
        SessionUser::parse(raw.as_deref()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    crate::record_on_span("key", user.as_str());
    Ok(user)
}

/// Decodes one part of a query string as a form does (`+` is a space), refusing bytes that
/// are not UTF-8.
fn form_decode(part: &str) -> Result<String, std::str::Utf8Error> {
    let spaced = part.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
}

/// 200 or 409, with `{"message", "user_id", "active_sessions"}` either way.
fn reply(reply: SessionReply) -> (StatusCode, Json<SessionChange>) {
    let status = if reply.is_conflict() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    let body = SessionChange {
        message: reply.message(),
        user_id: reply.user_id.as_str().to_owned(),
        active_sessions: reply.active_sessions,
    };
    (status, Json(body))
}

#[cfg(test)]
mod tests {
    use axum::http::Method;
    use serde_json::{json, Value};

    use super::*;
    use crate::routes::test_node::{call, MemoryNode, MAX_SESSIONS};

    fn body(message: &str, user_id: &str, active_sessions: u32) -> Value {
        json!({ "message": message, "user_id": user_id, "active_sessions": active_sessions })
    }

    async fn count(node: &MemoryNode, user_id: &str) -> (StatusCode, Value) {
        call(node, Method::GET, &format!("/sessions/{user_id}"), "").await
    }

    #[tokio::test]
    async fn adds_answer_200_up_to_the_cap_then_409_with_the_count() {
        let node = MemoryNode::default();
        for n in 1..=MAX_SESSIONS {
            let reply = call(&node, Method::POST, "/add-session?user_id=alice", "").await;
            assert_eq!(reply, (StatusCode::OK, body("session added", "alice", n)));
        }
        let reply = call(&node, Method::POST, "/add-session?user_id=alice", "").await;
        assert_eq!(
            reply,
            (
                StatusCode::CONFLICT,
                body("max sessions (3) reached", "alice", 3)
            )
        );
        // Another user has their own counter.
        let reply = call(&node, Method::POST, "/add-session?user_id=bob", "").await;
        assert_eq!(reply, (StatusCode::OK, body("session added", "bob", 1)));
    }

    #[tokio::test]
    async fn removes_answer_200_down_to_zero_then_409_with_the_count() {
        let node = MemoryNode::default();
        for _ in 0..2 {
            call(&node, Method::POST, "/add-session?user_id=alice", "").await;
        }
        for n in [1, 0] {
            let reply = call(&node, Method::POST, "/remove-session?user_id=alice", "").await;
            assert_eq!(reply, (StatusCode::OK, body("session removed", "alice", n)));
        }
        let reply = call(&node, Method::POST, "/remove-session?user_id=alice", "").await;
        assert_eq!(
            reply,
            (StatusCode::CONFLICT, body("no active sessions", "alice", 0))
        );
        let reply = call(&node, Method::POST, "/remove-session?user_id=nobody", "").await;
        assert_eq!(
            reply,
            (
                StatusCode::CONFLICT,
                body("no active sessions", "nobody", 0)
            )
        );
    }

    #[tokio::test]
    async fn a_missing_empty_or_too_long_user_id_is_400() {
        let node = MemoryNode::default();
        let required = json!({ "message": "user_id is required" });
        let too_long = json!({ "message": "user_id must be at most 256 bytes" });
        let long_query = format!("?user_id={}", "x".repeat(257));
        let cases = [
            ("", &required),
            ("?user_id=", &required),
            ("?userid=alice", &required),
            (long_query.as_str(), &too_long),
        ];
        for path in ["/add-session", "/remove-session"] {
            for (query, expected) in cases {
                let uri = format!("{path}{query}");
                let (status, body) = call(&node, Method::POST, &uri, "").await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
                assert_eq!(&body, expected, "{uri}");
            }
        }
        let (status, body) = count(&node, &"x".repeat(257)).await;
        assert_eq!((status, &body), (StatusCode::BAD_REQUEST, &too_long));
        // Nothing reached the node.
        assert_eq!(count(&node, "x").await.1["active_sessions"], 0);
    }

    #[tokio::test]
    async fn a_user_id_that_is_not_utf8_once_decoded_is_400_and_counts_nothing() {
        let node = MemoryNode::default();
        for query in ["?user_id=%FF", "?user_id=%FE", "?a=1&user_id=x%C3"] {
            let uri = format!("/add-session{query}");
            let (status, body) = call(&node, Method::POST, &uri, "").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(
                body,
                json!({ "message": "user_id must be UTF-8 once percent-decoded" })
            );
        }
        assert_eq!(count(&node, "\u{fffd}").await.1["active_sessions"], 0);
    }

    #[tokio::test]
    async fn a_user_id_is_decoded_as_a_form_value_and_the_last_one_counts() {
        let node = MemoryNode::default();
        let uri = "/add-session?user_id=first&other=%FF&user_id=caf%C3%A9+au+lait";
        let reply = call(&node, Method::POST, uri, "").await;
        assert_eq!(
            reply,
            (StatusCode::OK, body("session added", "café au lait", 1))
        );
    }

    #[tokio::test]
    async fn the_longest_user_id_is_accepted() {
        let node = MemoryNode::default();
        let user_id = "x".repeat(256);
        let uri = format!("/add-session?user_id={user_id}");
        let reply = call(&node, Method::POST, &uri, "").await;
        assert_eq!(reply, (StatusCode::OK, body("session added", &user_id, 1)));
        let (status, body) = count(&node, &user_id).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["active_sessions"], 1);
    }

    #[tokio::test]
    async fn the_count_of_an_unknown_user_is_0() {
        let node = MemoryNode::default();
        let reply = count(&node, "ghost").await;
        assert_eq!(
            reply,
            (
                StatusCode::OK,
                json!({ "user_id": "ghost", "active_sessions": 0 })
            )
        );
    }

    #[tokio::test]
    async fn query_and_path_user_ids_are_percent_decoded_to_the_same_user() {
        let node = MemoryNode::default();
        let reply = call(&node, Method::POST, "/add-session?user_id=a%20b", "").await;
        assert_eq!(reply, (StatusCode::OK, body("session added", "a b", 1)));
        let reply = call(&node, Method::POST, "/add-session?user_id=a+b&x=1", "").await;
        assert_eq!(reply, (StatusCode::OK, body("session added", "a b", 2)));
        let reply = call(&node, Method::POST, "/add-session?user_id=%C3%A9%26", "").await;
        assert_eq!(reply, (StatusCode::OK, body("session added", "é&", 1)));
        let reply = count(&node, "a%20b").await;
        assert_eq!(
            reply,
            (
                StatusCode::OK,
                json!({ "user_id": "a b", "active_sessions": 2 })
            )
        );
    }

    #[tokio::test]
    async fn wrong_method_is_405() {
        let node = MemoryNode::default();
        let (status, _) = call(&node, Method::GET, "/add-session?user_id=a", "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let (status, _) = call(&node, Method::POST, "/sessions/a", "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }
}
