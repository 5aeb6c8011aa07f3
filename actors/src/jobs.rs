//! The jobs service's domain rules: the job record clients see, the create body, and the
//! client-facing messages (de-duplication window, unknown job).

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::time::rfc3339_millis;
use crate::users::ValidationError;

/// Longest accepted `object_id`, in bytes.
pub const MAX_OBJECT_ID_BYTES: usize = 256;

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Running (or waiting to be re-run by a new owner).
    Processing,
    /// Ran to completion within the timeout.
    Finished,
    /// Ran past the timeout.
    Cancelled,
}

impl JobStatus {
    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        self != Self::Processing
    }
}

/// A job as clients see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    /// Its id (a UUID).
    pub job_id: String,
    /// The object it processes.
    pub object_id: String,
    /// Where it is.
    pub status: JobStatus,
    /// Creation time, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    /// Runs started: 1, plus one per re-run after its owner died.
    pub attempts: u32,
}

/// Validates a `POST /jobs` body and returns its object id.
pub fn parse_create(body: &[u8]) -> Result<String, ValidationError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ValidationError::new(format!("malformed JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ValidationError::new("body must be a JSON object"));
    };
    if let Some(unknown) = fields.keys().find(|k| k.as_str() != "object_id") {
        let shown: String = unknown.chars().take(64).collect();
        return Err(ValidationError::new(format!(
            "unknown field {shown:?}; expected object_id"
        )));
    }
    match fields.get("object_id") {
        None | Some(Value::Null) => Err(ValidationError::new("you must provide an object_id")),
        Some(Value::String(id)) if id.is_empty() => {
            Err(ValidationError::new("you must provide an object_id"))
        }
        Some(Value::String(id)) if id.len() > MAX_OBJECT_ID_BYTES => Err(ValidationError::new(
            format!("object_id must be at most {MAX_OBJECT_ID_BYTES} bytes"),
        )),
        Some(Value::String(id)) => Ok(id.clone()),
        Some(_) => Err(ValidationError::new("object_id must be a string")),
    }
}

/// The refusal of a job for an object that had one within `window_secs`.
pub fn dedup_message(window_secs: u64) -> String {
    let (n, unit) = if window_secs >= 60 && window_secs.is_multiple_of(60) {
        (window_secs / 60, "minute")
    } else {
        (window_secs, "second")
    };
    let plural = if n == 1 { "" } else { "s" };
    format!("you need to wait {n} {unit}{plural} before rerunning the same job")
}

/// The answer for an unknown job id.
pub fn not_found_message(job_id: &str) -> String {
    format!("no job with id: {job_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn create_error(body: &str) -> String {
        parse_create(body.as_bytes()).expect_err(body).to_string()
    }

    #[test]
    fn the_dedup_message_follows_the_configured_window() {
        let cases = [
            (300, "5 minutes"),
            (60, "1 minute"),
            (3600, "60 minutes"),
            (90, "90 seconds"),
            (30, "30 seconds"),
            (1, "1 second"),
            (0, "0 seconds"),
        ];
        for (window, wait) in cases {
            assert_eq!(
                dedup_message(window),
                format!("you need to wait {wait} before rerunning the same job"),
                "{window}"
            );
        }
    }

    #[test]
    fn the_not_found_message_names_the_id() {
        assert_eq!(not_found_message("j-1"), "no job with id: j-1");
    }

    #[test]
    fn a_create_body_needs_a_non_empty_string_object_id() {
        let missing = "you must provide an object_id";
        for (body, expected) in [
            (r#"{}"#, missing),
            (r#"{"object_id":""}"#, missing),
            (r#"{"object_id":null}"#, missing),
            (r#"{"object_id":3}"#, "object_id must be a string"),
            (r#"{"object_id":["a"]}"#, "object_id must be a string"),
            (r#"{"object_id":false}"#, "object_id must be a string"),
        ] {
            assert_eq!(create_error(body), expected, "{body}");
        }
        assert_eq!(
            parse_create(br#"{"object_id":"o-1"}"#),
            Ok("o-1".to_owned())
        );
    }

    #[test]
    fn a_create_body_must_be_a_json_object() {
        for body in ["[1]", "\"o-1\"", "null", "3"] {
            assert_eq!(create_error(body), "body must be a JSON object", "{body}");
        }
        for body in ["{not json", ""] {
            let message = create_error(body);
            assert!(message.starts_with("malformed JSON: "), "{message}");
        }
    }

    #[test]
    fn unknown_fields_are_named_and_checked_first() {
        let expected = "unknown field \"x\"; expected object_id";
        assert_eq!(create_error(r#"{"object_id":"a","x":1}"#), expected);
        assert_eq!(create_error(r#"{"x":1}"#), expected);
        let long = format!(r#"{{"{}":1}}"#, "y".repeat(100));
        assert_eq!(
            create_error(&long),
            format!("unknown field {:?}; expected object_id", "y".repeat(64))
        );
    }

    #[test]
    fn object_id_is_bounded_in_bytes() {
        let longest = "é".repeat(128);
        let body = json!({ "object_id": longest }).to_string();
        assert_eq!(parse_create(body.as_bytes()), Ok(longest));
        let body = json!({ "object_id": "é".repeat(129) }).to_string();
        assert_eq!(create_error(&body), "object_id must be at most 256 bytes");
        let body = json!({ "object_id": "x".repeat(257) }).to_string();
        assert_eq!(create_error(&body), "object_id must be at most 256 bytes");
    }

    #[test]
    fn processing_is_the_only_non_terminal_status_and_serializes_lowercase() {
        assert!(!JobStatus::Processing.is_terminal());
        assert!(JobStatus::Finished.is_terminal() && JobStatus::Cancelled.is_terminal());
        for (status, text) in [
            (JobStatus::Processing, "processing"),
            (JobStatus::Finished, "finished"),
            (JobStatus::Cancelled, "cancelled"),
        ] {
            assert_eq!(serde_json::to_value(status).ok(), Some(json!(text)));
            let back: JobStatus = serde_json::from_value(json!(text)).expect("status");
            assert_eq!(back, status);
        }
    }

    #[test]
    fn job_json_has_exactly_its_five_fields() {
        let job = Job {
            job_id: "j-1".into(),
            object_id: "o-1".into(),
            status: JobStatus::Finished,
            timestamp: rfc3339_millis(1_795_392_495_123),
            attempts: 2,
        };
        let value = serde_json::to_value(&job).expect("json");
        assert_eq!(
            value,
            json!({
                "job_id": "j-1",
                "object_id": "o-1",
                "status": "finished",
                "timestamp": "2026-11-23T00:08:15.123Z",
                "attempts": 2,
            })
        );
        let back: Job = serde_json::from_value(value).expect("job");
        assert_eq!(back, job);
    }
}
