//! The users service's domain rules: the user id, the user record, and the validation of create
//! and update bodies.
//!
//! Everything here is pure: no I/O, no actor. The HTTP edge parses bodies with [`parse_create`]
//! and [`parse_update`] so a bad request is rejected before it reaches any shard; the shard actor
//! (node crate, `shard` module) stores [`User`]s and merges [`UserPatch`]es with the same code, so
//! every replica applies the same rules. Messages are client-facing: they name the field and are
//! deterministic (fields are checked in a fixed order).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest accepted `name`, in characters (not bytes).
pub const MAX_NAME_CHARS: usize = 200;
/// Longest accepted `email`, in characters (not bytes).
pub const MAX_EMAIL_CHARS: usize = 320;

/// The fields a user body may carry, in the order they are checked.
const FIELDS: [&str; 4] = ["id", "name", "email", "group"];
/// Longest piece of client input echoed back in a message, in characters.
const MAX_ECHO_CHARS: usize = 64;

/// A user's id: always the canonical lowercase hyphenated UUID form, so that the same user has
/// one key whatever spelling the client used (and so one shard).
///
/// Serialized as a plain string; deserializing validates and canonicalizes like
/// [`UserId::parse`], so an invalid id cannot enter through a wire or storage format either.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    /// Accepts anything `uuid::Uuid::parse_str` accepts (hyphenated, simple, braced, URN, any
    /// case) and returns the canonical form; the error is the client-facing message.
    pub fn parse(s: &str) -> Result<UserId, String> {
        match uuid::Uuid::parse_str(s) {
            Ok(uuid) => Ok(UserId(uuid.hyphenated().to_string())),
            Err(_) => Err(format!(
                "id must be a UUID string, got {:?}",
                shorten(s, MAX_ECHO_CHARS)
            )),
        }
    }

    /// A new random (v4) id, for users created without one.
    pub fn generate() -> UserId {
        UserId(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// The canonical form, e.g. for hashing to a shard or as a storage key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for UserId {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        UserId::parse(&s)
    }
}

impl From<UserId> for String {
    fn from(id: UserId) -> Self {
        id.0
    }
}

/// A stored user, and the JSON `{"id","name","email","group"}` clients see.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    /// Key of the user.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "uuid"))]
    pub id: UserId,
    /// Display name: non-empty, at most [`MAX_NAME_CHARS`] characters.
    pub name: String,
    /// Contains `@`, at most [`MAX_EMAIL_CHARS`] characters.
    pub email: String,
    /// Group number.
    pub group: u64,
}

/// A validated create body; the id is optional because the server may choose it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUser {
    /// The id the client chose, if any.
    pub id: Option<UserId>,
    /// Validated name.
    pub name: String,
    /// Validated email.
    pub email: String,
    /// Group number.
    pub group: u64,
}

impl NewUser {
    /// The user to store, with a fresh v4 id when the client gave none. Done at the edge, before
    /// routing, because the id decides which shard owns the user.
    pub fn into_user(self) -> User {
        User {
            id: self.id.unwrap_or_else(UserId::generate),
            name: self.name,
            email: self.email,
            group: self.group,
        }
    }
}

/// A validated update body: the id of the user plus the fields to replace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPatch {
    /// The user to update.
    pub id: UserId,
    /// New name, if given.
    pub name: Option<String>,
    /// New email, if given.
    pub email: Option<String>,
    /// New group, if given.
    pub group: Option<u64>,
}

impl UserPatch {
    /// `user` with the fields present in the patch replaced; an empty patch returns it unchanged.
    pub fn apply(&self, user: &User) -> User {
        User {
            id: user.id.clone(),
            name: self.name.clone().unwrap_or_else(|| user.name.clone()),
            email: self.email.clone().unwrap_or_else(|| user.email.clone()),
            group: self.group.unwrap_or(user.group),
        }
    }
}

/// A rejected create or update body; the message names the field and is shown to the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    message: String,
}

impl ValidationError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Validates a `POST /api/user` body: `name`, `email` and `group` required, `id` optional.
pub fn parse_create(body: &[u8]) -> Result<NewUser, ValidationError> {
    let fields = parse_object(body)?;
    let id = optional_id(&fields)?;
    let name = required(&fields, "name", name_of)?;
    let email = required(&fields, "email", email_of)?;
    let group = required(&fields, "group", group_of)?;
    Ok(NewUser {
        id,
        name,
        email,
        group,
    })
}

/// Validates a `PUT /api/user` body: `id` required, any subset of `name`, `email`, `group`.
pub fn parse_update(body: &[u8]) -> Result<UserPatch, ValidationError> {
    let fields = parse_object(body)?;
    let id = optional_id(&fields)?.ok_or_else(|| ValidationError::new("id is required"))?;
    let name = optional(&fields, "name", name_of)?;
    let email = optional(&fields, "email", email_of)?;
    let group = optional(&fields, "group", group_of)?;
    Ok(UserPatch {
        id,
        name,
        email,
        group,
    })
}

/// The message for an id that names no user (also used for ids that are not UUIDs, which
/// cannot name one).
pub fn not_found_message(id: &str) -> String {
    format!("no user with id: {id}")
}

/// The message for a create whose id is taken.
pub fn conflict_message(id: &UserId) -> String {
    format!("user with id: {id} already exists")
}

/// The body as a JSON object with no unknown field.
fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ValidationError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ValidationError::new(format!("malformed JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ValidationError::new("body must be a JSON object"));
    };
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ValidationError::new(format!(
            "unknown field {:?}; expected {}",
            shorten(unknown, MAX_ECHO_CHARS),
            FIELDS.join(", ")
        )));
    }
    Ok(fields)
}

fn optional_id(fields: &Map<String, Value>) -> Result<Option<UserId>, ValidationError> {
    match fields.get("id") {
        None => Ok(None),
        Some(Value::String(s)) => UserId::parse(s).map(Some).map_err(ValidationError::new),
        Some(_) => Err(ValidationError::new("id must be a UUID string")),
    }
}

fn required<T>(
    fields: &Map<String, Value>,
    field: &str,
    check: fn(&Value) -> Result<T, ValidationError>,
) -> Result<T, ValidationError> {
    optional(fields, field, check)?
        .ok_or_else(|| ValidationError::new(format!("{field} is required")))
}

fn optional<T>(
    fields: &Map<String, Value>,
    field: &str,
    check: fn(&Value) -> Result<T, ValidationError>,
) -> Result<Option<T>, ValidationError> {
    fields.get(field).map(check).transpose()
}

fn name_of(value: &Value) -> Result<String, ValidationError> {
    let Value::String(name) = value else {
        return Err(ValidationError::new("name must be a string"));
    };
    if name.is_empty() {
        return Err(ValidationError::new("name must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ValidationError::new(format!(
            "name must be at most {MAX_NAME_CHARS} characters"
        )));
    }
    Ok(name.clone())
}

fn email_of(value: &Value) -> Result<String, ValidationError> {
    let Value::String(email) = value else {
        return Err(ValidationError::new("email must be a string"));
    };
    if email.chars().count() > MAX_EMAIL_CHARS {
        return Err(ValidationError::new(format!(
            "email must be at most {MAX_EMAIL_CHARS} characters"
        )));
    }
    if !email.contains('@') {
        return Err(ValidationError::new("email must contain @"));
    }
    Ok(email.clone())
}

fn group_of(value: &Value) -> Result<u64, ValidationError> {
    // `as_u64` is `None` for negatives, for anything written with a fraction or exponent
    // (parsed as f64) and for integers beyond u64.
    value
        .as_u64()
        .ok_or_else(|| ValidationError::new("group must be a non-negative integer"))
}

/// At most `max` characters of `s`, cut on a character boundary.
fn shorten(s: &str, max: usize) -> &str {
    s.char_indices().nth(max).map_or(s, |(end, _)| &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "5f0c6b1e-8a3d-4c7e-9b2a-1d4e6f8a0b3c";

    fn body(value: Value) -> Vec<u8> {
        serde_json::to_vec(&value).expect("serializable")
    }

    fn create_error(value: Value) -> String {
        parse_create(&body(value))
            .expect_err("should be rejected")
            .to_string()
    }

    fn update_error(value: Value) -> String {
        parse_update(&body(value))
            .expect_err("should be rejected")
            .to_string()
    }

    fn valid_create() -> Value {
        json!({ "name": "Ada", "email": "ada@example.com", "group": 3 })
    }

    fn with(mut value: Value, field: &str, field_value: Value) -> Value {
        value[field] = field_value;
        value
    }

    fn ada() -> User {
        User {
            id: UserId::parse(ID).expect("uuid"),
            name: "Ada".into(),
            email: "ada@example.com".into(),
            group: 3,
        }
    }

    #[test]
    fn create_without_id_is_valid_and_generates_one() {
        let new = parse_create(&body(valid_create())).expect("valid");
        assert_eq!(new.id, None);
        let user = new.into_user();
        let parsed = uuid::Uuid::parse_str(user.id.as_str()).expect("uuid");
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(user.id.as_str(), parsed.hyphenated().to_string());
        assert_eq!(
            (user.name.as_str(), user.email.as_str(), user.group),
            ("Ada", "ada@example.com", 3)
        );
    }

    #[test]
    fn create_with_id_keeps_it() {
        let user = parse_create(&body(with(valid_create(), "id", json!(ID))))
            .expect("valid")
            .into_user();
        assert_eq!(user, ada());
    }

    #[test]
    fn generated_ids_differ() {
        assert_ne!(UserId::generate(), UserId::generate());
    }

    #[test]
    fn uppercase_uuid_is_canonicalized() {
        let id = UserId::parse(&ID.to_uppercase()).expect("uuid");
        assert_eq!(id.as_str(), ID);
        let simple = UserId::parse(&ID.replace('-', "")).expect("uuid");
        assert_eq!(simple.as_str(), ID);
        let braced = UserId::parse(&format!("{{{ID}}}")).expect("uuid");
        assert_eq!(braced.to_string(), ID);
    }

    #[test]
    fn non_uuid_id_is_echoed_truncated_in_the_error() {
        assert_eq!(
            UserId::parse("42"),
            Err(r#"id must be a UUID string, got "42""#.to_owned())
        );
        let long = "x".repeat(100);
        let message = UserId::parse(&long).expect_err("not a uuid");
        assert_eq!(
            message,
            format!("id must be a UUID string, got {:?}", "x".repeat(64))
        );
        assert_eq!(
            create_error(with(valid_create(), "id", json!("nope"))),
            r#"id must be a UUID string, got "nope""#
        );
    }

    #[test]
    fn non_string_id_is_rejected() {
        for id in [json!(42), json!(null), json!(true), json!([ID])] {
            assert_eq!(
                create_error(with(valid_create(), "id", id)),
                "id must be a UUID string"
            );
        }
    }

    #[test]
    fn user_id_serializes_as_a_plain_string_and_deserializes_canonically() {
        let id = UserId::parse(ID).expect("uuid");
        assert_eq!(serde_json::to_value(&id).expect("json"), json!(ID));
        let back: UserId = serde_json::from_value(json!(ID.to_uppercase())).expect("uuid");
        assert_eq!(back, id);
        assert!(serde_json::from_value::<UserId>(json!("nope")).is_err());
    }

    #[test]
    fn user_json_has_exactly_id_name_email_group() {
        let value = serde_json::to_value(ada()).expect("json");
        assert_eq!(
            value,
            json!({ "id": ID, "name": "Ada", "email": "ada@example.com", "group": 3 })
        );
        let back: User = serde_json::from_value(value).expect("user");
        assert_eq!(back, ada());
    }

    #[test]
    fn body_must_be_json() {
        let message = parse_create(b"{not json")
            .expect_err("malformed")
            .to_string();
        assert!(message.starts_with("malformed JSON: "), "{message}");
        let message = parse_update(b"").expect_err("empty").to_string();
        assert!(message.starts_with("malformed JSON: "), "{message}");
    }

    #[test]
    fn body_must_be_an_object() {
        for value in [json!([1]), json!("x"), json!(null), json!(3)] {
            assert_eq!(create_error(value.clone()), "body must be a JSON object");
            assert_eq!(update_error(value), "body must be a JSON object");
        }
    }

    #[test]
    fn unknown_field_is_named_in_the_error() {
        let expected = r#"unknown field "age"; expected id, name, email, group"#;
        assert_eq!(
            create_error(with(valid_create(), "age", json!(3))),
            expected
        );
        // Unknown fields are reported before any other problem.
        assert_eq!(update_error(json!({ "age": 3 })), expected);
    }

    #[test]
    fn create_requires_name_email_and_group_in_that_order() {
        assert_eq!(create_error(json!({})), "name is required");
        assert_eq!(create_error(json!({ "name": "Ada" })), "email is required");
        assert_eq!(
            create_error(json!({ "name": "Ada", "email": "a@b" })),
            "group is required"
        );
    }

    #[test]
    fn fields_are_checked_in_a_fixed_order() {
        let all_bad = json!({ "id": 1, "name": 1, "email": 1, "group": -1 });
        assert_eq!(create_error(all_bad.clone()), "id must be a UUID string");
        let mut no_id = all_bad;
        no_id.as_object_mut().expect("object").remove("id");
        assert_eq!(create_error(no_id.clone()), "name must be a string");
        assert_eq!(update_error(no_id), "id is required");
    }

    #[test]
    fn null_counts_as_a_wrong_type() {
        assert_eq!(
            create_error(with(valid_create(), "name", Value::Null)),
            "name must be a string"
        );
        assert_eq!(
            create_error(with(valid_create(), "email", Value::Null)),
            "email must be a string"
        );
        assert_eq!(
            create_error(with(valid_create(), "group", Value::Null)),
            "group must be a non-negative integer"
        );
        assert_eq!(
            update_error(json!({ "id": ID, "name": null })),
            "name must be a string"
        );
    }

    #[test]
    fn name_must_be_a_non_empty_string() {
        assert_eq!(
            create_error(with(valid_create(), "name", json!(7))),
            "name must be a string"
        );
        assert_eq!(
            create_error(with(valid_create(), "name", json!(""))),
            "name must not be empty"
        );
    }

    #[test]
    fn name_length_counts_characters_not_bytes() {
        // 200 two-byte characters: 400 bytes, but within the limit.
        let at_limit = "é".repeat(MAX_NAME_CHARS);
        let new = parse_create(&body(with(valid_create(), "name", json!(at_limit))))
            .expect("200 characters is allowed");
        assert_eq!(new.name.chars().count(), MAX_NAME_CHARS);
        assert_eq!(
            create_error(with(
                valid_create(),
                "name",
                json!("é".repeat(MAX_NAME_CHARS + 1))
            )),
            "name must be at most 200 characters"
        );
    }

    #[test]
    fn email_must_be_a_string_with_an_at_sign_within_the_limit() {
        assert_eq!(
            create_error(with(valid_create(), "email", json!(["a@b"]))),
            "email must be a string"
        );
        assert_eq!(
            create_error(with(valid_create(), "email", json!("ada.example.com"))),
            "email must contain @"
        );
        assert_eq!(
            create_error(with(valid_create(), "email", json!(""))),
            "email must contain @"
        );
        let at_limit = format!("{}@b", "ü".repeat(MAX_EMAIL_CHARS - 2));
        assert!(parse_create(&body(with(valid_create(), "email", json!(at_limit)))).is_ok());
        let over = format!("{}@b", "a".repeat(MAX_EMAIL_CHARS - 1));
        assert_eq!(
            create_error(with(valid_create(), "email", json!(over))),
            "email must be at most 320 characters"
        );
    }

    #[test]
    fn group_rejects_fractions_negatives_and_strings() {
        let bad: [&[u8]; 7] = [
            b"1.5",
            b"-1",
            b"\"3\"",
            b"true",
            b"1.0",
            b"1e3",
            b"18446744073709551616",
        ];
        for group in bad {
            let mut raw = br#"{"name":"Ada","email":"a@b","group":"#.to_vec();
            raw.extend_from_slice(group);
            raw.push(b'}');
            let message = parse_create(&raw).expect_err("bad group").to_string();
            assert_eq!(
                message,
                "group must be a non-negative integer",
                "group {}",
                String::from_utf8_lossy(group)
            );
        }
    }

    #[test]
    fn group_accepts_zero_and_u64_max() {
        for group in [0, u64::MAX] {
            let new = parse_create(&body(with(valid_create(), "group", json!(group))))
                .expect("valid group");
            assert_eq!(new.group, group);
        }
    }

    #[test]
    fn update_requires_an_id() {
        assert_eq!(update_error(json!({ "name": "Ada" })), "id is required");
        assert_eq!(
            update_error(json!({ "id": "nope" })),
            r#"id must be a UUID string, got "nope""#
        );
    }

    #[test]
    fn update_with_only_an_id_is_valid_and_changes_nothing() {
        let patch = parse_update(&body(json!({ "id": ID.to_uppercase() }))).expect("valid");
        assert_eq!(patch.id.as_str(), ID);
        assert_eq!(patch.apply(&ada()), ada());
    }

    #[test]
    fn update_validates_present_fields_like_create() {
        assert_eq!(
            update_error(json!({ "id": ID, "name": "" })),
            "name must not be empty"
        );
        assert_eq!(
            update_error(json!({ "id": ID, "email": "nobody" })),
            "email must contain @"
        );
        assert_eq!(
            update_error(json!({ "id": ID, "group": 1.5 })),
            "group must be a non-negative integer"
        );
    }

    #[test]
    fn patch_merges_only_present_fields() {
        let patch =
            parse_update(&body(json!({ "id": ID, "email": "ada@lovelace.org" }))).expect("valid");
        let merged = patch.apply(&ada());
        assert_eq!(
            merged,
            User {
                email: "ada@lovelace.org".into(),
                ..ada()
            }
        );
        let patch = parse_update(&body(json!({ "id": ID, "name": "Lovelace", "group": 0 })))
            .expect("valid");
        let merged = patch.apply(&merged);
        assert_eq!(
            merged,
            User {
                id: ada().id,
                name: "Lovelace".into(),
                email: "ada@lovelace.org".into(),
                group: 0,
            }
        );
    }

    #[test]
    fn messages_name_the_user() {
        let id = UserId::parse(ID).expect("uuid");
        assert_eq!(not_found_message("42"), "no user with id: 42");
        assert_eq!(
            conflict_message(&id),
            format!("user with id: {ID} already exists")
        );
    }
}
