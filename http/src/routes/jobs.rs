//! The jobs service's routes: `POST /jobs` and `GET /jobs/{job_id}`, both answering
//! `{"message": job}` as the original service did.
//!
//! Create bodies are validated with [`jobs::parse_create`] whatever their `Content-Type`; the
//! de-duplication refusal (400) and the unknown job (404) come from the node.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;
use troupe_actors::jobs::{self, Job, MAX_OBJECT_ID_BYTES};
use utoipa::ToSchema;

use super::openapi::{BadRequest, Internal, NotFound, StorageFull, TooLarge, Unavailable};
use super::users::{body_bytes, MaxBodyBytes};
use crate::api::NodeApi;
use crate::error::ApiError;

/// A job as both routes answer it, under `message` as the original service did.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct JobBody {
    /// The job.
    message: Job,
}

/// A `POST /jobs` body, as [`jobs::parse_create`] accepts it (documentation only: the route
/// validates the raw body itself).
#[derive(serde::Deserialize, ToSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateJobBody {
    /// The object to process: 1 to 256 bytes.
    #[schema(min_length = 1, max_length = 256)]
    object_id: String,
}

/// `POST /jobs`: 201 with the new job, 400 within the de-duplication window.
#[utoipa::path(
    post,
    path = "/jobs",
    operation_id = "create_job",
    tag = "jobs",
    request_body(content = CreateJobBody, description = "Read as JSON whatever the Content-Type"),
    responses(
        (status = 201, description = "Created and started", body = JobBody),
        (status = 400, response = BadRequest),
        (status = 413, response = TooLarge),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
        (status = 507, response = StorageFull),
    )
)]
#[tracing::instrument(
    level = "debug",
    name = "create_job",
    skip_all,
    fields(route = "/jobs", key)
)]
pub async fn create<N: NodeApi>(
    State(node): State<N>,
    Extension(limit): Extension<MaxBodyBytes>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<JobBody>), ApiError> {
    let body = body_bytes(body, limit)?;
    let object_id = jobs::parse_create(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    crate::record_on_span("key", object_id.as_str());
    let job = node.create_job(object_id).await?;
    Ok((StatusCode::CREATED, Json(JobBody { message: job })))
}

/// `GET /jobs/{job_id}`: the job, or 404 (without asking the node for an id longer than any
/// it hands out).
#[utoipa::path(
    get,
    path = "/jobs/{job_id}",
    operation_id = "get_job",
    tag = "jobs",
    params(("job_id" = String, Path, min_length = 1, description = "As `POST /jobs` answered it")),
    responses(
        (status = 200, description = "The job as it is now", body = JobBody),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
#[tracing::instrument(
    level = "debug",
    name = "get_job",
    skip_all,
    fields(route = "/jobs/{job_id}", key)
)]
pub async fn get<N: NodeApi>(
    State(node): State<N>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<JobBody>, ApiError> {
    let Path(job_id) = path.map_err(|e| ApiError::BadRequest(format!("invalid path: {e}")))?;
    if job_id.len() > MAX_OBJECT_ID_BYTES {
        // Longer than any id the cluster hands out.
        return Err(ApiError::NotFound(jobs::not_found_message(&job_id)));
    }
    crate::record_on_span("key", job_id.as_str());
    let job = node.get_job(job_id).await?;
    Ok(Json(JobBody { message: job }))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, Method, Request};
    use serde_json::json;
    use tower::ServiceExt;

    use super::*;
    use crate::routes::test_node::{app, call, MemoryNode, DEDUP_WINDOW_SECS};

    fn object(object_id: &str) -> String {
        json!({ "object_id": object_id }).to_string()
    }

    /// `2026-11-22T22:08:15.123Z`: digits where digits go, the separators, UTC.
    fn is_rfc3339_millis(s: &str) -> bool {
        let pattern = "0000-00-00T00:00:00.000Z";
        s.len() == pattern.len()
            && s.bytes().zip(pattern.bytes()).all(|(c, p)| match p {
                b'0' => c.is_ascii_digit(),
                _ => c == p,
            })
    }

    #[tokio::test]
    async fn create_answers_201_with_the_job_under_message() {
        let node = MemoryNode::default();
        let (status, body) = call(&node, Method::POST, "/jobs", object("o-1")).await;
        assert_eq!(status, StatusCode::CREATED);
        let job = &body["message"];
        let mut keys: Vec<&str> = job
            .as_object()
            .expect("job object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["attempts", "job_id", "object_id", "status", "timestamp"]
        );
        assert_eq!(body.as_object().map(|b| b.len()), Some(1));
        assert_eq!(job["object_id"], "o-1");
        assert_eq!(job["status"], "processing");
        assert_eq!(job["attempts"], 1);
        let timestamp = job["timestamp"].as_str().expect("string timestamp");
        assert!(is_rfc3339_millis(timestamp), "{timestamp}");
        assert!(job["job_id"].as_str().is_some_and(|id| !id.is_empty()));
    }

    #[tokio::test]
    async fn trailing_slash_and_any_content_type_are_accepted() {
        let node = MemoryNode::default();
        let request = Request::builder()
            .method(Method::POST)
            .uri("/jobs/")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(object("o-2")))
            .expect("request");
        let response = app(&node).oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    #[tokio::test]
    async fn a_created_job_can_be_read_back() {
        let node = MemoryNode::default();
        let (_, created) = call(&node, Method::POST, "/jobs", object("o-1")).await;
        let job_id = created["message"]["job_id"].as_str().expect("job id");
        let reply = call(&node, Method::GET, &format!("/jobs/{job_id}"), "").await;
        assert_eq!(reply, (StatusCode::OK, created));
    }

    #[tokio::test]
    async fn a_duplicate_within_the_window_is_400() {
        assert_eq!(DEDUP_WINDOW_SECS, 300);
        let node = MemoryNode::default();
        let (status, _) = call(&node, Method::POST, "/jobs", object("o-1")).await;
        assert_eq!(status, StatusCode::CREATED);
        let reply = call(&node, Method::POST, "/jobs", object("o-1")).await;
        assert_eq!(
            reply,
            (
                StatusCode::BAD_REQUEST,
                json!({ "message": "you need to wait 5 minutes before rerunning the same job" })
            )
        );
        let (status, _) = call(&node, Method::POST, "/jobs", object("o-2")).await;
        assert_eq!(status, StatusCode::CREATED);
    }

    #[tokio::test]
    async fn a_bad_body_is_400_with_the_exact_message() {
        let node = MemoryNode::default();
        let missing = "you must provide an object_id";
        let cases = [
            ("{}", missing),
            (r#"{"object_id":""}"#, missing),
            (r#"{"object_id":null}"#, missing),
            (r#"{"object_id":7}"#, "object_id must be a string"),
            ("[]", "body must be a JSON object"),
            (
                r#"{"object_id":"o","x":1}"#,
                "unknown field \"x\"; expected object_id",
            ),
        ];
        for (body, expected) in cases {
            let reply = call(&node, Method::POST, "/jobs", body).await;
            assert_eq!(
                reply,
                (StatusCode::BAD_REQUEST, json!({ "message": expected })),
                "{body}"
            );
        }
        let too_long = object(&"o".repeat(257));
        let reply = call(&node, Method::POST, "/jobs", too_long).await;
        assert_eq!(
            reply,
            (
                StatusCode::BAD_REQUEST,
                json!({ "message": "object_id must be at most 256 bytes" })
            )
        );
        for body in ["{not json", ""] {
            let (status, body) = call(&node, Method::POST, "/jobs", body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            let message = body["message"].as_str().expect("message");
            assert!(message.starts_with("malformed JSON: "), "{message}");
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413_json() {
        let node = MemoryNode::default();
        let big = object(&"o".repeat(70 * 1024));
        let reply = call(&node, Method::POST, "/jobs", big).await;
        assert_eq!(
            reply,
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({ "message": "request body is larger than 65536 bytes" })
            )
        );
    }

    #[tokio::test]
    async fn an_unknown_or_impossibly_long_job_id_is_404() {
        let node = MemoryNode::default();
        let reply = call(&node, Method::GET, "/jobs/nope", "").await;
        assert_eq!(
            reply,
            (
                StatusCode::NOT_FOUND,
                json!({ "message": "no job with id: nope" })
            )
        );
        let long = "j".repeat(257);
        let reply = call(&node, Method::GET, &format!("/jobs/{long}"), "").await;
        assert_eq!(
            reply,
            (
                StatusCode::NOT_FOUND,
                json!({ "message": format!("no job with id: {long}") })
            )
        );
    }

    #[tokio::test]
    async fn wrong_method_is_405() {
        let node = MemoryNode::default();
        let (status, _) = call(&node, Method::GET, "/jobs", "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let (status, _) = call(&node, Method::DELETE, "/jobs/j-1", "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }
}
