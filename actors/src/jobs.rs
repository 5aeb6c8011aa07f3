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

    #[test]
    fn the_dedup_message_follows_the_configured_window() {
        assert_eq!(
            dedup_message(300),
            "you need to wait 5 minutes before rerunning the same job"
        );
        assert_eq!(
            dedup_message(60),
            "you need to wait 1 minute before rerunning the same job"
        );
        assert_eq!(
            dedup_message(90),
            "you need to wait 90 seconds before rerunning the same job"
        );
    }

    #[test]
    fn a_create_body_needs_a_non_empty_string_object_id_and_nothing_else() {
        let missing = "you must provide an object_id";
        for (body, expected) in [
            (r#"{}"#, missing),
            (r#"{"object_id":""}"#, missing),
            (r#"{"object_id":null}"#, missing),
            (r#"{"object_id":3}"#, "object_id must be a string"),
            (r#"[1]"#, "body must be a JSON object"),
            (
                r#"{"object_id":"a","x":1}"#,
                "unknown field \"x\"; expected object_id",
            ),
        ] {
            let error = parse_create(body.as_bytes()).expect_err(body);
            assert_eq!(error.to_string(), expected, "{body}");
        }
        assert!(parse_create(b"{not json").is_err());
        assert_eq!(
            parse_create(br#"{"object_id":"o-1"}"#),
            Ok("o-1".to_owned())
        );
    }

    #[test]
    fn processing_is_the_only_non_terminal_status_and_serializes_lowercase() {
        assert!(!JobStatus::Processing.is_terminal());
        assert!(JobStatus::Finished.is_terminal() && JobStatus::Cancelled.is_terminal());
        assert_eq!(
            serde_json::to_string(&JobStatus::Cancelled).ok(),
            Some("\"cancelled\"".to_owned())
        );
    }
}
