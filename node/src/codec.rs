//! The one place bytes are made from values and back: bincode 2.0.1 behind a format version byte.
//!
//! Every frame and every stored value goes through [`encode`] and [`decode`], so moving to another
//! bincode-compatible crate (bincode 3.0.0 on crates.io is a tombstone) touches this file only,
//! and a reader can refuse bytes written by an incompatible build instead of misreading them.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Version of the byte format; the first byte of every encoded value.
pub const FORMAT_VERSION: u8 = 1;

/// Why bytes could not be produced or understood.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value could not be encoded (a serde error, for example a map with non-string keys).
    #[error("cannot encode value: {0}")]
    Encode(String),
    /// The bytes are not a value of the expected type.
    #[error("cannot decode value: {0}")]
    Decode(String),
    /// The bytes were written with another format version.
    #[error("unsupported format version {found} (this build reads {FORMAT_VERSION})")]
    Version {
        /// The version byte found.
        found: u8,
    },
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `value` as the version byte followed by its bincode form.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![FORMAT_VERSION];
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes bytes made by [`encode`]; trailing bytes are an error, so a truncated or padded frame
/// is never half-read as a valid value.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes
        .split_first()
        .ok_or_else(|| CodecError::Decode("empty input".into()))?;
    if version != FORMAT_VERSION {
        return Err(CodecError::Version { found: version });
    }
    let (value, read) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if read != body.len() {
        return Err(CodecError::Decode(format!(
            "{} trailing bytes after the value",
            body.len() - read
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Sample {
        A { name: String, n: u64 },
        B(Vec<u8>),
    }

    #[test]
    fn round_trips_enums_and_prefixes_the_version() {
        let v = Sample::A {
            name: "x".into(),
            n: 7,
        };
        let bytes = encode(&v).expect("encodes");
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode::<Sample>(&bytes).expect("decodes"), v);
    }

    #[test]
    fn refuses_other_versions_trailing_bytes_and_garbage() {
        let mut bytes = encode(&Sample::B(vec![1, 2])).expect("encodes");
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(matches!(
            decode::<Sample>(&padded),
            Err(CodecError::Decode(_))
        ));
        bytes[0] = 99;
        assert!(matches!(
            decode::<Sample>(&bytes),
            Err(CodecError::Version { found: 99 })
        ));
        assert!(decode::<Sample>(&[]).is_err());
        assert!(decode::<Sample>(&[FORMAT_VERSION, 200, 1]).is_err());
    }
}
