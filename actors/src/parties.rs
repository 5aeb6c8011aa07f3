//! The parties service's domain rules: the party record, joining and leaving with host
//! promotion, and the validation of what clients send.
//!
//! Participants are kept in join order and the host is always the first of them, so when the
//! host leaves, the participant who joined earliest among those remaining becomes host (the
//! seed's "slave promoted to master") without any extra bookkeeping.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::users::ValidationError;

/// Longest accepted `device_id`, in bytes.
pub const MAX_DEVICE_ID_BYTES: usize = 128;
/// Longest accepted `participant_name`, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Default `parties.max_participants`: a party holds at most this many devices.
pub const DEFAULT_MAX_PARTICIPANTS: u32 = 1_000;
/// Most bytes one participant can add to a stored party: its id, device id and name, the name
/// counted at UTF-8's widest (4 bytes a character), each with the widest length prefix of the
/// node's binary encoding (9 bytes).
pub const MAX_PARTICIPANT_BYTES: usize = 9 + (9 + MAX_DEVICE_ID_BYTES) + (9 + 4 * MAX_NAME_CHARS);
/// Bytes of a join's change besides its participants and region names: the party's code, its
/// location and counters, the manager's index entry and both keys, with room to spare.
const JOIN_FIXED_BYTES: usize = 512;
/// Default and largest `radius_km` of a nearby search.
pub const DEFAULT_RADIUS_KM: f64 = 50.0;
/// Largest `radius_km` of a nearby search.
pub const MAX_RADIUS_KM: f64 = 1000.0;
/// Default `limit` of a nearby search: the nearest parties returned.
pub const DEFAULT_NEARBY_LIMIT: usize = 1_000;
/// Largest `limit` of a nearby search: bounds the answer's size.
pub const MAX_NEARBY_LIMIT: usize = 10_000;

/// A validated `GET /parties/nearby` search.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NearbySearch {
    /// The searched point.
    pub lat: f64,
    /// The searched point.
    pub lng: f64,
    /// Parties farther than this (great-circle) are left out.
    pub radius_km: f64,
    /// Only the nearest this many are returned.
    pub limit: usize,
}

/// One participant of a party.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    /// Id within the party, from 0 (the creator) in join order.
    pub participant_id: u32,
    /// The participant's device.
    pub device_id: String,
    /// Display name.
    pub participant_name: String,
}

/// A party.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Party {
    /// Nine digits.
    pub code: String,
    /// Region it was dispatched to.
    pub region: String,
    /// The region's party manager that holds it.
    pub manager: String,
    /// Location, degrees.
    pub lat: f64,
    /// Location, degrees.
    pub lng: f64,
    /// In join order; the first is the host.
    pub participants: Vec<Participant>,
    /// Next participant id.
    pub next_id: u32,
}

impl Party {
    /// A new party with its creator as host (participant 0).
    pub fn new(
        code: String,
        region: String,
        manager: String,
        at: (f64, f64),
        host: Participant,
    ) -> Self {
        Self {
            code,
            region,
            manager,
            lat: at.0,
            lng: at.1,
            participants: vec![host],
            next_id: 1,
        }
    }

    /// The host's participant id.
    pub fn host(&self) -> Option<u32> {
        self.participants.first().map(|p| p.participant_id)
    }

    /// Adds a device, or returns its existing participant id (`true` when it was already in).
    /// A device that is not in a party of `max_participants` already cannot join.
    pub fn join(
        &mut self,
        device_id: &str,
        name: &str,
        max_participants: u32,
    ) -> Result<(u32, bool), PartyFull> {
        if let Some(p) = self.participants.iter().find(|p| p.device_id == device_id) {
            return Ok((p.participant_id, true));
        }
        if self.participants.len() >= max_participants as usize {
            return Err(PartyFull { max_participants });
        }
        let id = self.next_id;
        self.next_id += 1;
        self.participants.push(Participant {
            participant_id: id,
            device_id: device_id.to_owned(),
            participant_name: name.to_owned(),
        });
        Ok((id, false))
    }

    /// Removes a device; its participant id, or `None` if it was not in the party.
    pub fn leave(&mut self, device_id: &str) -> Option<u32> {
        let index = self
            .participants
            .iter()
            .position(|p| p.device_id == device_id)?;
        Some(self.participants.remove(index).participant_id)
    }
}

/// A join refused because the party already holds `parties.max_participants` devices. The cap
/// keeps a party's record, which every join rewrites and replicates whole, within what one
/// replicated change may carry (see [`max_join_change_bytes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartyFull {
    /// The cap.
    pub max_participants: u32,
}

impl PartyFull {
    /// The client's message.
    pub fn message(&self, code: &str) -> String {
        format!(
            "party {code} is full: it has the maximum of {} participants",
            self.max_participants
        )
    }
}

/// Most bytes a join's change can take (the party record and the manager's index entry, keys
/// included) when a party holds up to `max_participants` devices and region names are at most
/// `longest_region_name` bytes: the bound `parties.max_participants` is checked against at
/// start-up.
pub fn max_join_change_bytes(max_participants: u32, longest_region_name: usize) -> usize {
    // The region's name is in the party, in its manager's name twice, and in the index entry.
    JOIN_FIXED_BYTES + 4 * longest_region_name + max_participants as usize * MAX_PARTICIPANT_BYTES
}

/// Most participants a party may be capped at so that a join's change stays within
/// `entry_bytes` ([`max_join_change_bytes`]).
pub fn most_participants_within(entry_bytes: usize, longest_region_name: usize) -> u32 {
    let fixed = JOIN_FIXED_BYTES + 4 * longest_region_name;
    let fit = entry_bytes.saturating_sub(fixed) / MAX_PARTICIPANT_BYTES;
    u32::try_from(fit).unwrap_or(u32::MAX)
}

/// A validated `POST /parties` body.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateParty {
    /// The creator's device.
    pub device_id: String,
    /// The creator's name (defaults to "host").
    pub participant_name: String,
    /// The party's location, when given.
    pub location: Option<(f64, f64)>,
}

/// A validated `POST /parties/{code}/participants` body.
#[derive(Clone, Debug, PartialEq)]
pub struct JoinParty {
    /// The joining device.
    pub device_id: String,
    /// Its display name.
    pub participant_name: String,
}

fn object(body: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, ValidationError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ValidationError::new(format!("malformed JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ValidationError::new("body must be a JSON object"));
    };
    if let Some(unknown) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        let shown: String = unknown.chars().take(64).collect();
        return Err(ValidationError::new(format!(
            "unknown field {shown:?}; expected {}",
            allowed.join(", ")
        )));
    }
    Ok(fields)
}

/// A device id: a non-empty string of at most [`MAX_DEVICE_ID_BYTES`].
pub fn device_id(value: Option<&Value>) -> Result<String, ValidationError> {
    match value {
        None | Some(Value::Null) => Err(ValidationError::new("device_id is required")),
        Some(Value::String(s)) if s.is_empty() => {
            Err(ValidationError::new("device_id must not be empty"))
        }
        Some(Value::String(s)) if s.len() > MAX_DEVICE_ID_BYTES => Err(ValidationError::new(
            format!("device_id must be at most {MAX_DEVICE_ID_BYTES} bytes"),
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ValidationError::new("device_id must be a string")),
    }
}

fn name(value: Option<&Value>, default: Option<&str>) -> Result<String, ValidationError> {
    match (value, default) {
        (None | Some(Value::Null), Some(default)) => Ok(default.to_owned()),
        (None | Some(Value::Null), None) => {
            Err(ValidationError::new("participant_name is required"))
        }
        (Some(Value::String(s)), _) if s.trim().is_empty() => {
            Err(ValidationError::new("participant_name must not be empty"))
        }
        (Some(Value::String(s)), _) if s.chars().count() > MAX_NAME_CHARS => {
            Err(ValidationError::new(format!(
                "participant_name must be at most {MAX_NAME_CHARS} characters"
            )))
        }
        (Some(Value::String(s)), _) => Ok(s.clone()),
        (Some(_), _) => Err(ValidationError::new("participant_name must be a string")),
    }
}

fn coordinate(field: &str, value: f64, limit: f64) -> Result<f64, ValidationError> {
    if value.is_finite() && (-limit..=limit).contains(&value) {
        Ok(value)
    } else {
        Err(ValidationError::new(format!(
            "{field} must be between -{limit} and {limit}"
        )))
    }
}

fn json_coordinate(field: &str, value: &Value, limit: f64) -> Result<f64, ValidationError> {
    let number = value
        .as_f64()
        .ok_or_else(|| ValidationError::new(format!("{field} must be a number")))?;
    coordinate(field, number, limit)
}

/// Validates a `POST /parties` body: `device_id`, optional `participant_name`, and optional
/// `lat` and `lng` (both or neither).
pub fn parse_create(body: &[u8]) -> Result<CreateParty, ValidationError> {
    let fields = object(body, &["device_id", "participant_name", "lat", "lng"])?;
    let device_id = device_id(fields.get("device_id"))?;
    let participant_name = name(fields.get("participant_name"), Some("host"))?;
    let location = match (fields.get("lat"), fields.get("lng")) {
        (None, None) => None,
        (Some(lat), Some(lng)) => Some((
            json_coordinate("lat", lat, 90.0)?,
            json_coordinate("lng", lng, 180.0)?,
        )),
        _ => return Err(ValidationError::new("lat and lng must be given together")),
    };
    Ok(CreateParty {
        device_id,
        participant_name,
        location,
    })
}

/// Validates a `POST /parties/{code}/participants` body.
pub fn parse_join(body: &[u8]) -> Result<JoinParty, ValidationError> {
    let fields = object(body, &["device_id", "participant_name"])?;
    Ok(JoinParty {
        device_id: device_id(fields.get("device_id"))?,
        participant_name: name(fields.get("participant_name"), None)?,
    })
}

/// Validates query coordinates (`lat`, `lng` as strings).
pub fn parse_coordinates(
    lat: Option<&str>,
    lng: Option<&str>,
) -> Result<(f64, f64), ValidationError> {
    let parse = |field: &str, raw: Option<&str>, limit: f64| {
        let raw = raw.ok_or_else(|| ValidationError::new(format!("{field} is required")))?;
        let value = raw
            .trim()
            .parse::<f64>()
            .map_err(|_| ValidationError::new(format!("{field} must be a number")))?;
        coordinate(field, value, limit)
    };
    Ok((parse("lat", lat, 90.0)?, parse("lng", lng, 180.0)?))
}

/// Validates `radius_km` (default 50, at most 1000).
pub fn parse_radius(raw: Option<&str>) -> Result<f64, ValidationError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_RADIUS_KM);
    };
    match raw.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= MAX_RADIUS_KM => Ok(r),
        _ => Err(ValidationError::new(format!(
            "radius_km must be a number above 0 and at most {MAX_RADIUS_KM}"
        ))),
    }
}

/// Validates a nearby search's `limit` (default [`DEFAULT_NEARBY_LIMIT`]).
pub fn parse_nearby_limit(raw: Option<&str>) -> Result<usize, ValidationError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_NEARBY_LIMIT);
    };
    match raw.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_NEARBY_LIMIT).contains(&n) => Ok(n),
        _ => Err(ValidationError::new(format!(
            "limit must be a whole number from 1 to {MAX_NEARBY_LIMIT}"
        ))),
    }
}

/// Whether a party code is well formed (nine digits, no leading zero).
pub fn is_code(code: &str) -> bool {
    code.len() == 9 && code.bytes().all(|b| b.is_ascii_digit()) && !code.starts_with('0')
}

/// The answer for an unknown party.
pub fn not_found_message(code: &str) -> String {
    let shown: String = code.chars().take(64).collect();
    format!("no party with code: {shown}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party() -> Party {
        let host = Participant {
            participant_id: 0,
            device_id: "h".into(),
            participant_name: "host".into(),
        };
        Party::new(
            "123456789".into(),
            "eu-west-1".into(),
            "eu-west-1/m0".into(),
            (53.3, -6.2),
            host,
        )
    }

    #[test]
    fn joining_twice_returns_the_same_participant() {
        let mut p = party();
        assert_eq!(p.join("a", "Ann", 10), Ok((1, false)));
        assert_eq!(p.join("a", "Ann again", 10), Ok((1, true)));
        assert_eq!(p.participants.len(), 2);
    }

    #[test]
    fn a_full_party_refuses_new_devices_but_still_finds_its_own_and_takes_one_after_a_leave() {
        let mut p = party();
        assert_eq!(p.join("a", "Ann", 2), Ok((1, false)));
        let full = p.join("b", "Bob", 2).expect_err("full");
        assert_eq!(
            full.message("123456789"),
            "party 123456789 is full: it has the maximum of 2 participants"
        );
        assert_eq!(p.participants.len(), 2, "the refused device was not added");
        assert_eq!(p.join("a", "Ann", 2), Ok((1, true)));
        assert_eq!(p.leave("a"), Some(1));
        assert_eq!(p.join("b", "Bob", 2), Ok((2, false)));
    }

    #[test]
    fn the_participants_that_fit_a_change_bound_fit_it_and_one_more_does_not() {
        for entry_bytes in [1_024, 65_536, 2 << 20] {
            let most = most_participants_within(entry_bytes, 14);
            assert!(max_join_change_bytes(most, 14) <= entry_bytes);
            assert!(max_join_change_bytes(most + 1, 14) > entry_bytes);
        }
        assert_eq!(most_participants_within(100, 14), 0);
    }

    #[test]
    fn when_the_host_leaves_the_earliest_remaining_joiner_becomes_host() {
        let mut p = party();
        p.join("a", "Ann", 10).expect("room");
        p.join("b", "Bob", 10).expect("room");
        assert_eq!(p.leave("h"), Some(0));
        assert_eq!(p.host(), Some(1));
        assert_eq!(p.leave("nobody"), None);
        p.leave("a");
        p.leave("b");
        assert_eq!(p.host(), None);
    }

    #[test]
    fn bodies_and_coordinates_are_validated_with_the_field_named() {
        assert!(parse_create(br#"{"device_id":"d"}"#).is_ok());
        let both = parse_create(br#"{"device_id":"d","lat":1}"#).expect_err("lat alone");
        assert_eq!(both.to_string(), "lat and lng must be given together");
        let far = parse_create(br#"{"device_id":"d","lat":91,"lng":0}"#).expect_err("range");
        assert_eq!(far.to_string(), "lat must be between -90 and 90");
        assert!(parse_join(br#"{"device_id":"d"}"#).is_err());
        assert_eq!(
            parse_coordinates(Some("x"), Some("1"))
                .expect_err("x")
                .to_string(),
            "lat must be a number"
        );
        assert!(parse_coordinates(Some("10"), None).is_err());
        assert_eq!(parse_radius(None).ok(), Some(DEFAULT_RADIUS_KM));
        assert!(parse_radius(Some("1001")).is_err());
        assert_eq!(parse_nearby_limit(None).ok(), Some(DEFAULT_NEARBY_LIMIT));
        assert_eq!(parse_nearby_limit(Some("1")).ok(), Some(1));
        for bad in ["0", "-1", "1.5", "x", "10001"] {
            assert_eq!(
                parse_nearby_limit(Some(bad)).expect_err(bad).to_string(),
                "limit must be a whole number from 1 to 10000"
            );
        }
        assert!(is_code("457495738") && !is_code("04574957") && !is_code("abc"));
    }
}
