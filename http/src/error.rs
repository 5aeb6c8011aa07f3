//! Errors as the client sees them: a status code and a JSON `{"message": ...}` body.
//!
//! Every route returns [`ApiError`]; this is the only place a failure becomes a status code.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

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
        let mut response = (status, Json(json!({ "message": self.to_string() }))).into_response();
        if let Self::Unavailable { retry_after, .. } = &self {
            let secs = retry_after.as_secs().max(1);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
