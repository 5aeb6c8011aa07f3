//! The sessions service's domain rules: who a session belongs to, and the counter's two
//! transitions with their hard cap. The owner of the user's shard applies them one command at
//! a time, which is what makes the cap exact cluster-wide.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::users::ValidationError;

/// Longest accepted `user_id`, in bytes.
pub const MAX_USER_ID_BYTES: usize = 256;

/// The user a session counter belongs to: non-empty, at most [`MAX_USER_ID_BYTES`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionUser(String);

impl SessionUser {
    /// Validates the `user_id` query parameter (`None` when absent).
    pub fn parse(raw: Option<&str>) -> Result<SessionUser, ValidationError> {
        match raw {
            None | Some("") => Err(ValidationError::new("user_id is required")),
            Some(id) if id.len() > MAX_USER_ID_BYTES => Err(ValidationError::new(format!(
                "user_id must be at most {MAX_USER_ID_BYTES} bytes"
            ))),
            Some(id) => Ok(SessionUser(id.to_owned())),
        }
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an add or remove did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionOutcome {
    /// One more session.
    Added,
    /// One session fewer.
    Removed,
    /// Refused: the user is at the cap.
    CapReached,
    /// Refused: the user has no session.
    NoSessions,
}

/// The answer to an add or remove, success or refusal alike (both carry the count).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionReply {
    /// What happened.
    pub outcome: SessionOutcome,
    /// Whose sessions.
    pub user_id: SessionUser,
    /// Active sessions after the command.
    pub active_sessions: u32,
    /// The configured cap.
    pub max_sessions: u32,
}

impl SessionReply {
    /// The client-facing message.
    pub fn message(&self) -> String {
        match self.outcome {
            SessionOutcome::Added => "session added".into(),
            SessionOutcome::Removed => "session removed".into(),
            SessionOutcome::CapReached => format!("max sessions ({}) reached", self.max_sessions),
            SessionOutcome::NoSessions => "no active sessions".into(),
        }
    }

    /// Whether the command was refused (409).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self.outcome,
            SessionOutcome::CapReached | SessionOutcome::NoSessions
        )
    }
}

/// One more session, unless `current` is at `max`.
pub fn add(current: u32, max: u32) -> (SessionOutcome, u32) {
    if current >= max {
        (SessionOutcome::CapReached, current)
    } else {
        (SessionOutcome::Added, current + 1)
    }
}

/// One session fewer, unless there is none.
pub fn remove(current: u32) -> (SessionOutcome, u32) {
    match current {
        0 => (SessionOutcome::NoSessions, 0),
        n => (SessionOutcome::Removed, n - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(outcome: SessionOutcome, active_sessions: u32) -> SessionReply {
        SessionReply {
            outcome,
            user_id: SessionUser("u".into()),
            active_sessions,
            max_sessions: 3,
        }
    }

    fn parse_error(raw: Option<&str>) -> String {
        SessionUser::parse(raw)
            .expect_err("should be rejected")
            .to_string()
    }

    #[test]
    fn adds_stop_at_the_cap_and_removes_stop_at_zero() {
        assert_eq!(add(0, 3), (SessionOutcome::Added, 1));
        assert_eq!(add(2, 3), (SessionOutcome::Added, 3));
        assert_eq!(add(3, 3), (SessionOutcome::CapReached, 3));
        assert_eq!(remove(3), (SessionOutcome::Removed, 2));
        assert_eq!(remove(1), (SessionOutcome::Removed, 0));
        assert_eq!(remove(0), (SessionOutcome::NoSessions, 0));
    }

    #[test]
    fn a_count_above_a_lowered_cap_is_kept_not_clamped() {
        // The cap is configuration: after it is lowered, a user over it keeps their sessions and
        // can only remove.
        assert_eq!(add(5, 3), (SessionOutcome::CapReached, 5));
        assert_eq!(remove(5), (SessionOutcome::Removed, 4));
        assert_eq!(add(0, 0), (SessionOutcome::CapReached, 0));
        assert_eq!(
            add(u32::MAX, u32::MAX),
            (SessionOutcome::CapReached, u32::MAX)
        );
    }

    #[test]
    fn user_id_is_required_and_non_empty() {
        assert_eq!(parse_error(None), "user_id is required");
        assert_eq!(parse_error(Some("")), "user_id is required");
    }

    #[test]
    fn user_id_is_bounded_in_bytes_not_characters() {
        let too_long = "user_id must be at most 256 bytes";
        assert_eq!(parse_error(Some(&"x".repeat(257))), too_long);
        // 129 two-byte characters: 258 bytes.
        assert_eq!(parse_error(Some(&"é".repeat(129))), too_long);
        let longest = "é".repeat(128);
        assert_eq!(
            SessionUser::parse(Some(&longest)).map(|u| u.as_str().len()),
            Ok(MAX_USER_ID_BYTES)
        );
    }

    #[test]
    fn user_id_is_kept_as_given() {
        let user = SessionUser::parse(Some(" Alice b")).expect("valid");
        assert_eq!(user.as_str(), " Alice b");
        assert_eq!(user.to_string(), " Alice b");
    }

    #[test]
    fn each_outcome_has_its_message_and_only_refusals_are_conflicts() {
        let cases = [
            (SessionOutcome::Added, "session added", false),
            (SessionOutcome::Removed, "session removed", false),
            (SessionOutcome::CapReached, "max sessions (3) reached", true),
            (SessionOutcome::NoSessions, "no active sessions", true),
        ];
        for (outcome, message, conflict) in cases {
            let reply = reply(outcome, 1);
            assert_eq!(reply.message(), message, "{outcome:?}");
            assert_eq!(reply.is_conflict(), conflict, "{outcome:?}");
        }
    }

    #[test]
    fn replies_survive_a_wire_round_trip() {
        let reply = reply(SessionOutcome::CapReached, 3);
        let json = serde_json::to_string(&reply).expect("json");
        let back: SessionReply = serde_json::from_str(&json).expect("reply");
        assert_eq!(back, reply);
    }
}
