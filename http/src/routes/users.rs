//! The users service's routes under `/api/user`: parsing, validation and status codes.
//!
//! Bodies and ids are validated here with the domain rules of [`troupe_actors::users`], so a
//! bad request never reaches a shard; what the node answers is mapped to a status by
//! [`ApiError`]. Bodies are parsed as JSON whatever their `Content-Type` (clients such as
//! `curl -d` send a form content type).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;
use troupe_actors::users::{self, User, UserId};
use utoipa::{IntoParams, ToSchema};

use super::openapi::{
    BadRequest, Conflict, Internal, NotFound, StorageFull, TooLarge, Unavailable,
};
use crate::api::NodeApi;
use crate::error::ApiError;
use crate::views::ListFrom;

/// Page size of `GET /api/user` when the client gives none.
const DEFAULT_LIMIT: u32 = 100;
/// Largest page size of `GET /api/user`.
const MAX_LIMIT: u32 = 1000;
/// Largest `offset` of `GET /api/user`: an offset is skipped user by user on every call
/// (760 ms for 999,900 of a million users), so deeper pages use the `after` cursor.
pub(super) const MAX_OFFSET: u64 = 10_000;

/// The body bound the router applies, carried as a request extension so a 413 can state it.
#[derive(Clone, Copy, Debug)]
pub(super) struct MaxBodyBytes(pub(super) usize);

/// `GET /api/user` response.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ListBody {
    /// The page, in id order.
    users: Vec<User>,
    /// As asked (0 when paging with `after`).
    offset: u64,
    /// As asked.
    limit: u32,
    /// Users in the whole cluster.
    total: u64,
    /// The `after` of the next page, present when more users follow this page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = "uuid", nullable = false)]
    next_after: Option<UserId>,
}

/// `GET /api/user/count` response.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CountBody {
    /// Users in the whole cluster.
    count: u64,
}

/// A `POST /api/user` body, as [`users::parse_create`] accepts it (documentation only: the
/// route validates the raw body itself, so its messages name the field).
#[derive(serde::Deserialize, ToSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateUserBody {
    /// Chosen by the server (a random v4 UUID) when absent. Any UUID spelling; answered in
    /// canonical lowercase hyphenated form.
    #[schema(format = "uuid", nullable = false)]
    id: Option<String>,
    /// Display name.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// Must contain `@`.
    #[schema(max_length = 320, pattern = "@")]
    email: String,
    /// Group number.
    group: u64,
}

/// A `PUT /api/user` body, as [`users::parse_update`] accepts it: the id, and the fields to
/// replace (documentation only, like [`CreateUserBody`]).
#[derive(serde::Deserialize, ToSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateUserBody {
    /// The user to update.
    #[schema(format = "uuid")]
    id: String,
    /// New display name.
    #[schema(min_length = 1, max_length = 200, nullable = false)]
    name: Option<String>,
    /// New email; must contain `@`.
    #[schema(max_length = 320, pattern = "@", nullable = false)]
    email: Option<String>,
    /// New group number.
    #[schema(nullable = false)]
    group: Option<u64>,
}

/// The query of `GET /api/user` (documentation only: the route reads the raw parameters so
/// that each error names the one at fault). Unknown parameters are ignored.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct ListQuery {
    /// Users to skip in id order (at most 10000; page deeper with `after`). Not with `after`.
    #[param(maximum = 10000)]
    offset: Option<u64>,
    /// Page size, default 100.
    #[param(maximum = 1000)]
    limit: Option<u32>,
    /// Start right after this user id (the `next_after` of the previous page).
    #[param(format = "uuid")]
    after: Option<String>,
}

/// `POST /api/user`: validates the body, picks an id when absent, stores the user (201).
#[utoipa::path(
    post,
    path = "/api/user",
    operation_id = "create_user",
    tag = "users",
    request_body(content = CreateUserBody, description = "Read as JSON whatever the Content-Type"),
    responses(
        (status = 201, description = "Created", body = User),
        (status = 400, response = BadRequest),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
        (status = 507, response = StorageFull),
    )
)]
#[tracing::instrument(
    level = "debug",
    name = "create_user",
    skip_all,
    fields(route = "/api/user", key)
)]
pub async fn create<N: NodeApi>(
    State(node): State<N>,
    Extension(limit): Extension<MaxBodyBytes>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let body = body_bytes(body, limit)?;
    let user = users::parse_create(&body)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?
        .into_user();
    crate::record_on_span("key", user.id.as_str());
    let created = node.create_user(user).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `GET /api/user/{id}`: the user (200), or 404 (also for an id that is not a UUID).
#[utoipa::path(
    get,
    path = "/api/user/{id}",
    operation_id = "get_user",
    tag = "users",
    params(("id" = String, Path, min_length = 1,
            description = "A UUID in any spelling; anything else names no user (404)")),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
#[tracing::instrument(
    level = "debug",
    name = "get_user",
    skip_all,
    fields(route = "/api/user/{id}", key)
)]
pub async fn get<N: NodeApi>(
    State(node): State<N>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<User>, ApiError> {
    let id = path_id(path)?;
    node.get_user(id).await.map(Json)
}

/// `PUT /api/user`: validates the patch and returns the merged user (200).
#[utoipa::path(
    put,
    path = "/api/user",
    operation_id = "update_user",
    tag = "users",
    request_body(content = UpdateUserBody, description = "Read as JSON whatever the Content-Type"),
    responses(
        (status = 200, description = "The user after the update", body = User),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 413, response = TooLarge),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
        (status = 507, response = StorageFull),
    )
)]
#[tracing::instrument(
    level = "debug",
    name = "update_user",
    skip_all,
    fields(route = "/api/user", key)
)]
pub async fn update<N: NodeApi>(
    State(node): State<N>,
    Extension(limit): Extension<MaxBodyBytes>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<User>, ApiError> {
    let body = body_bytes(body, limit)?;
    let patch = users::parse_update(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    crate::record_on_span("key", patch.id.as_str());
    node.update_user(patch).await.map(Json)
}

/// `DELETE /api/user/{id}`: 204, or 404 (also for an id that is not a UUID).
#[utoipa::path(
    delete,
    path = "/api/user/{id}",
    operation_id = "delete_user",
    tag = "users",
    params(("id" = String, Path, min_length = 1,
            description = "A UUID in any spelling; anything else names no user (404)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
#[tracing::instrument(
    level = "debug",
    name = "delete_user",
    skip_all,
    fields(route = "/api/user/{id}", key)
)]
pub async fn delete<N: NodeApi>(
    State(node): State<N>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(path)?;
    node.delete_user(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/user/count`: the static `count` segment shadows `{id}` for every method, and
/// `count` is not a UUID, so this answers what `DELETE /api/user/{id}` would: 404.
#[utoipa::path(
    delete,
    path = "/api/user/count",
    operation_id = "delete_user_count",
    tag = "users",
    responses((status = 404, response = NotFound))
)]
pub async fn delete_count() -> ApiError {
    ApiError::NotFound(users::not_found_message("count"))
}

/// `GET /api/user/count`: `{"count": N}` over the whole cluster.
#[utoipa::path(
    get,
    path = "/api/user/count",
    operation_id = "count_users",
    tag = "users",
    responses(
        (status = 200, description = "Users in the whole cluster", body = CountBody),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
#[tracing::instrument(
    level = "debug",
    name = "count_users",
    skip_all,
    fields(route = "/api/user/count")
)]
pub async fn count<N: NodeApi>(State(node): State<N>) -> Result<Json<CountBody>, ApiError> {
    let count = node.count_users().await?;
    Ok(Json(CountBody { count }))
}

/// `GET /api/user?offset=O&limit=L` or `GET /api/user?after=ID&limit=L`: one page of users in
/// id order with the total, and `next_after` when more follow. `offset` is refused above
/// [`MAX_OFFSET`] (use `after`). Unknown parameters are ignored.
#[utoipa::path(
    get,
    path = "/api/user",
    operation_id = "list_users",
    tag = "users",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of users", body = ListBody),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
#[tracing::instrument(
    level = "debug",
    name = "list_users",
    skip_all,
    fields(route = "/api/user")
)]
pub async fn list<N: NodeApi>(
    State(node): State<N>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<ListBody>, ApiError> {
    let Query(params) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let offset = match params.get("offset") {
        None => 0,
        Some(raw) => raw.parse::<u64>().map_err(|_| {
            ApiError::BadRequest("offset must be a non-negative integer".to_owned())
        })?,
    };
    if offset > MAX_OFFSET {
        return Err(ApiError::BadRequest(format!(
            "offset above {MAX_OFFSET} is refused (it is skipped user by user): page with \
             after=<the next_after of the previous page> instead"
        )));
    }
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|limit| *limit <= MAX_LIMIT)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "limit must be an integer between 0 and {MAX_LIMIT}"
                ))
            })?,
    };
    let from = match params.get("after") {
        None => ListFrom::Offset(offset),
        Some(_) if offset > 0 => {
            return Err(ApiError::BadRequest(
                "give either offset or after, not both".to_owned(),
            ))
        }
        Some(raw) => ListFrom::After(UserId::parse(raw).map_err(|_| {
            ApiError::BadRequest(
                "after must be a user id (the next_after of the previous page)".to_owned(),
            )
        })?),
    };
    let page = node.list_users(from, limit).await?;
    Ok(Json(ListBody {
        users: page.users,
        offset,
        limit,
        total: page.total,
        next_after: page.next_after,
    }))
}

/// The id in the path, canonical; an id that is not a UUID cannot name a user, hence 404.
fn path_id(path: Result<Path<String>, PathRejection>) -> Result<UserId, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::BadRequest(format!("invalid path: {e}")))?;
    let id = UserId::parse(&raw).map_err(|_| ApiError::NotFound(users::not_found_message(&raw)))?;
    crate::record_on_span("key", id.as_str());
    Ok(id)
}

/// The body, or the error the client sees: 413 over the bound, 400 for any other failure.
pub(super) fn body_bytes(
    body: Result<Bytes, BytesRejection>,
    limit: MaxBodyBytes,
) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!("request body is larger than {} bytes", limit.0))
        } else {
            ApiError::BadRequest(format!(
                "could not read the request body: {}",
                rejection.body_text()
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, Method, Request};
    use tower::ServiceExt;

    use serde_json::{json, Value};

    use super::*;
    use crate::routes::test_node::{app, call, MemoryNode};

    const ID: &str = "5f0c6b1e-8a3d-4c7e-9b2a-1d4e6f8a0b3c";

    fn ada() -> Value {
        json!({ "id": ID, "name": "Ada", "email": "ada@example.com", "group": 3 })
    }

    async fn with_ada() -> MemoryNode {
        let node = MemoryNode::default();
        let (status, _) = call(&node, Method::POST, "/api/user", ada().to_string()).await;
        assert_eq!(status, StatusCode::CREATED);
        node
    }

    #[tokio::test]
    async fn create_answers_201_with_the_user() {
        let node = MemoryNode::default();
        let (status, body) = call(&node, Method::POST, "/api/user", ada().to_string()).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body, ada());
        let (status, body) = call(&node, Method::GET, &format!("/api/user/{ID}"), "").await;
        assert_eq!((status, body), (StatusCode::OK, ada()));
    }

    #[tokio::test]
    async fn create_without_id_or_content_type_generates_an_id() {
        let node = MemoryNode::default();
        let request = Request::builder()
            .method(Method::POST)
            .uri("/api/user/")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(r#"{"name":"Bo","email":"bo@x","group":0}"#))
            .expect("request");
        let response = app(&node).oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::CREATED);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let user: User = serde_json::from_slice(&bytes).expect("user");
        assert_eq!(user.name, "Bo");
        assert_eq!(node.store().len(), 1);
    }

    #[tokio::test]
    async fn duplicate_create_is_409() {
        let node = with_ada().await;
        let (status, body) = call(&node, Method::POST, "/api/user", ada().to_string()).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(
            body,
            json!({ "message": format!("user with id: {ID} already exists") })
        );
    }

    #[tokio::test]
    async fn invalid_create_is_400_naming_the_field() {
        let node = MemoryNode::default();
        let (status, body) = call(
            &node,
            Method::POST,
            "/api/user",
            r#"{"name":"Ada","email":"ada@example.com","group":-1}"#,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            json!({ "message": "group must be a non-negative integer" })
        );
    }

    #[tokio::test]
    async fn unknown_user_is_404_with_its_id() {
        let node = MemoryNode::default();
        for method in [Method::GET, Method::DELETE] {
            let (status, body) = call(&node, method, &format!("/api/user/{ID}"), "").await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(body, json!({ "message": format!("no user with id: {ID}") }));
        }
    }

    #[tokio::test]
    async fn non_uuid_id_is_404_echoing_the_raw_id() {
        let node = with_ada().await;
        for method in [Method::GET, Method::DELETE] {
            let (status, body) = call(&node, method, "/api/user/42", "").await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(body, json!({ "message": "no user with id: 42" }));
        }
        let (status, body) = call(&node, Method::DELETE, "/api/user/count", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, json!({ "message": "no user with id: count" }));
    }

    #[tokio::test]
    async fn uppercase_id_in_the_path_finds_the_user() {
        let node = with_ada().await;
        let uri = format!("/api/user/{}", ID.to_uppercase());
        let (status, body) = call(&node, Method::GET, &uri, "").await;
        assert_eq!((status, body), (StatusCode::OK, ada()));
    }

    #[tokio::test]
    async fn update_without_id_is_400_naming_the_field() {
        let node = with_ada().await;
        let (status, body) = call(&node, Method::PUT, "/api/user", r#"{"name":"Lovelace"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body, json!({ "message": "id is required" }));
    }

    #[tokio::test]
    async fn update_merges_and_answers_the_user() {
        let node = with_ada().await;
        let patch = json!({ "id": ID, "group": 7 }).to_string();
        let (status, body) = call(&node, Method::PUT, "/api/user/", patch).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({ "id": ID, "name": "Ada", "email": "ada@example.com", "group": 7 })
        );
        let missing = json!({ "id": "00000000-0000-4000-8000-000000000000" }).to_string();
        let (status, _) = call(&node, Method::PUT, "/api/user", missing).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn delete_is_204_then_404() {
        let node = with_ada().await;
        let uri = format!("/api/user/{ID}");
        let (status, body) = call(&node, Method::DELETE, &uri, "").await;
        assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
        let (status, _) = call(&node, Method::DELETE, &uri, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn body_over_the_limit_is_413_json() {
        let node = MemoryNode::default();
        let big = format!(
            r#"{{"name":"{}","email":"a@b","group":1}}"#,
            "x".repeat(70 * 1024)
        );
        for method in [Method::POST, Method::PUT] {
            let (status, body) = call(&node, method, "/api/user", big.clone()).await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
            assert_eq!(
                body,
                json!({ "message": "request body is larger than 65536 bytes" })
            );
        }
    }

    #[tokio::test]
    async fn list_defaults_to_offset_0_and_limit_100() {
        let node = with_ada().await;
        let (status, body) = call(&node, Method::GET, "/api/user", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({ "users": [ada()], "offset": 0, "limit": 100, "total": 1 })
        );
        let (status, body) = call(&node, Method::GET, "/api/user/?limit=0&x=y", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({ "users": [], "offset": 0, "limit": 0, "total": 1 })
        );
        let (_, body) = call(&node, Method::GET, "/api/user?offset=1&limit=1000", "").await;
        assert_eq!(
            body,
            json!({ "users": [], "offset": 1, "limit": 1000, "total": 1 })
        );
    }

    #[tokio::test]
    async fn list_rejects_bad_offset_and_limit() {
        let node = MemoryNode::default();
        let limit_message = json!({ "message": "limit must be an integer between 0 and 1000" });
        let offset_message = json!({ "message": "offset must be a non-negative integer" });
        let cases = [
            ("/api/user?limit=1001", &limit_message),
            ("/api/user?limit=-1", &limit_message),
            ("/api/user?limit=ten", &limit_message),
            ("/api/user?offset=-1", &offset_message),
            ("/api/user?offset=1.5", &offset_message),
        ];
        for (uri, expected) in cases {
            let (status, body) = call(&node, Method::GET, uri, "").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(&body, expected, "{uri}");
        }
    }

    #[tokio::test]
    async fn a_deep_offset_is_refused_pointing_to_after_and_after_pages_through_every_user() {
        let node = MemoryNode::default();
        let ids: Vec<String> = (0..5)
            .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            let user = json!({ "id": id, "name": "u", "email": "u@example.com", "group": i });
            let (status, _) = call(&node, Method::POST, "/api/user", user.to_string()).await;
            assert_eq!(status, StatusCode::CREATED);
        }
        for uri in [
            format!("/api/user?offset={}", MAX_OFFSET + 1),
            format!("/api/user?offset={}&limit=1000", u64::MAX),
        ] {
            let (status, body) = call(&node, Method::GET, &uri, "").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            let message = body["message"].as_str().unwrap_or_default();
            assert!(message.contains("after="), "{uri}: {message}");
        }
        let (status, _) = call(&node, Method::GET, "/api/user?after=nope", "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let both = format!("/api/user?offset=1&after={}", ids[0]);
        assert_eq!(
            call(&node, Method::GET, &both, "").await.0,
            StatusCode::BAD_REQUEST
        );

        let mut seen = Vec::new();
        let mut uri = "/api/user?limit=2".to_owned();
        loop {
            let (status, body) = call(&node, Method::GET, &uri, "").await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body["total"], 5);
            for user in body["users"].as_array().expect("users") {
                seen.push(user["id"].as_str().expect("id").to_owned());
            }
            match body.get("next_after").and_then(Value::as_str) {
                Some(next) => uri = format!("/api/user?after={next}&limit=2"),
                None => break,
            }
        }
        assert_eq!(seen, ids);
    }

    #[tokio::test]
    async fn count_is_not_shadowed_by_the_id_route() {
        let node = with_ada().await;
        let (status, body) = call(&node, Method::GET, "/api/user/count", "").await;
        assert_eq!((status, body), (StatusCode::OK, json!({ "count": 1 })));
    }

    #[tokio::test]
    async fn wrong_method_is_405_json() {
        let node = MemoryNode::default();
        let (status, body) = call(&node, Method::PATCH, "/api/user", "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            body,
            json!({ "message": "method PATCH is not allowed on /api/user" })
        );
        let (status, _) = call(&node, Method::PUT, &format!("/api/user/{ID}"), "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }
}
