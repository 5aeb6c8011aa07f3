//! Errors as the client sees them: a status code and a JSON `{"message": ...}` body.
//!
//! Every route returns [`ApiError`]; this is the only place a failure becomes a status code.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// The body of every error answer: `{"message": "..."}`. One type for the answer and its
/// schema in `/openapi.json`, so the two cannot differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person to read: names the field or the limit at fault.
    pub message: String,
}

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// The thing asked for does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than allowed (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The cluster cannot serve this right now; retry after the hint (503 + `Retry-After`).
    #[error("{message}")]
    Unavailable {
        /// Why.
        message: String,
        /// When a retry is likely to succeed.
        retry_after: Duration,
    },
    /// The node that must store the change has too little space left; nothing was written
    /// (507). Not retryable until an operator acts, unlike 503.
    #[error("{0}")]
    InsufficientStorage(String),
    /// A bug or an unexpected failure (500). The detail is logged, not hidden.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The status code this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "request failed");
        }
        let body = ErrorBody {
            message: self.to_string(),
        };
        let mut response = (status, Json(body)).into_response();
        if let Self::Unavailable { retry_after, .. } = &self {
            let secs = retry_after.as_secs().max(1);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    async fn rendered(error: ApiError) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        (
            status,
            retry_after,
            serde_json::from_slice(&bytes).expect("json body"),
        )
    }

    #[tokio::test]
    async fn every_error_is_a_json_message_with_its_status() {
        let cases = [
            (ApiError::BadRequest("bad".into()), StatusCode::BAD_REQUEST),
            (ApiError::NotFound("gone".into()), StatusCode::NOT_FOUND),
            (ApiError::Conflict("taken".into()), StatusCode::CONFLICT),
            (
                ApiError::PayloadTooLarge("big".into()),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                ApiError::Internal("bug".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (error, expected) in cases {
            let message = error.to_string();
            let (status, retry_after, body) = rendered(error).await;
            assert_eq!(status, expected);
            assert_eq!(retry_after, None);
            assert_eq!(body, json!({ "message": message }));
        }
    }

    #[tokio::test]
    async fn unavailable_carries_retry_after_in_whole_seconds_never_zero() {
        let error = ApiError::Unavailable {
            message: "busy".into(),
            retry_after: Duration::from_millis(200),
        };
        let (status, retry_after, body) = rendered(error).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(body["message"], "busy");
    }
}
