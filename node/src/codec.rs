//! The one place bytes are made from values and back: bincode 2.0.1 behind a format version byte.
//!
//! Every frame and every stored value goes through [`encode`] and [`decode`], so moving to another
//! bincode-compatible crate (bincode 3.0.0 on crates.io is a tombstone) touches this file only,
//! and a reader can refuse bytes written by an incompatible build instead of misreading them.
//!
//! Decoding never trusts a length (decision 018). bincode reads a string's or a byte vector's
//! length prefix and allocates that many bytes before it reads them, so without a limit a
//! prefix claiming 2^62 bytes aborts the process. Every [`decode`] therefore names its use
//! ([`Limit`]), which bounds the input's length, and runs bincode with a byte limit that grows
//! with the input (at most [`CLAIMS_PER_BYTE`] times its length, rounded up to a tier): a
//! length prefix that claims more than the input could hold is refused before any allocation.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Version of the byte format; the first byte of every encoded value.
pub const FORMAT_VERSION: u8 = 1;

/// Largest handshake message in bytes (its frame bound too): a handshake carries two nonces,
/// a proof and two names.
pub const MAX_HANDSHAKE_BYTES: usize = 4096;

/// Largest inter-node message in bytes: the ceiling of `rpc.max_frame_bytes`, which the
/// config validation holds to it, so every frame the frame reader accepts is within it.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// Largest stored value in bytes. Every stored value (an entity, a log entry, a shard's meta)
/// was carried by one message (a command, a replicated entry or a snapshot page) or is
/// smaller, so a stored value longer than a message is corrupt. The entry bound proper,
/// `rpc.max_entry_bytes`, is a quarter of a frame but counts only the changes' keys and
/// values, not the entry's own fields, so it is not a bound on the encoded entry.
pub const MAX_STORED_BYTES: usize = MAX_MESSAGE_BYTES;

/// Most bytes bincode counts against its limit per byte of input, for any value of this
/// crate's types: a decoded integer counts its in-memory size (8 for a `u64`, which a varint
/// may carry in 1 byte), a string or byte vector counts its length (carried byte for byte).
/// No type decoded here holds a `u128` (16 bytes from 1); the `troupe-fuzz` targets decode
/// valid encodings of every type and would report a valid value refused by the limit.
pub const CLAIMS_PER_BYTE: usize = 8;

/// What bytes being decoded are: sets the longest input accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// A connection handshake message: at most [`MAX_HANDSHAKE_BYTES`], from any host.
    Handshake,
    /// An inter-node call or answer: at most [`MAX_MESSAGE_BYTES`], from an authenticated peer
    /// (which can still be a buggy or an incompatible build).
    Message,
    /// A value read from LMDB: at most [`MAX_STORED_BYTES`] (a corrupt file is still input).
    Stored,
}

impl Limit {
    /// The longest input of this use, in bytes.
    pub const fn max_input(self) -> usize {
        match self {
            Self::Handshake => MAX_HANDSHAKE_BYTES,
            Self::Message => MAX_MESSAGE_BYTES,
            Self::Stored => MAX_STORED_BYTES,
        }
    }
}

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
    /// The input is longer than any value of its use may be.
    #[error("input of {len} bytes exceeds the limit of {max} bytes for a {limit:?} value")]
    TooLong {
        /// The input's length.
        len: usize,
        /// The use's limit.
        max: usize,
        /// The use.
        limit: Limit,
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

/// Decodes bytes made by [`encode`], as a value of use `limit`; trailing bytes are an error, so
/// a truncated or padded frame is never half-read as a valid value.
///
/// bincode's limit is a const generic, so the limit for an input of `n` bytes is the first of
/// a few tiers at or above `n` × [`CLAIMS_PER_BYTE`]: an input is never refused for its
/// valid content, and a hostile length prefix makes bincode allocate at most 16 times that
/// (the tiers grow by 16), never more than the input could justify. A handshake always runs
/// with [`MAX_HANDSHAKE_BYTES`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: Limit) -> Result<T, CodecError> {
    let max = limit.max_input();
    if bytes.len() > max {
        return Err(CodecError::TooLong {
            len: bytes.len(),
            max,
            limit,
        });
    }
    let (&version, body) = bytes
        .split_first()
        .ok_or_else(|| CodecError::Decode("empty input".into()))?;
    if version != FORMAT_VERSION {
        return Err(CodecError::Version { found: version });
    }
    let claims = body.len().saturating_mul(CLAIMS_PER_BYTE);
    let (value, read) = match limit {
        Limit::Handshake => decode_within::<T, MAX_HANDSHAKE_BYTES>(body),
        _ if claims <= TIER_1 => decode_within::<T, TIER_1>(body),
        _ if claims <= TIER_2 => decode_within::<T, TIER_2>(body),
        _ if claims <= TIER_3 => decode_within::<T, TIER_3>(body),
        _ if claims <= TIER_4 => decode_within::<T, TIER_4>(body),
        _ => decode_within::<T, TIER_5>(body),
    }
    .map_err(|e| CodecError::Decode(e.to_string()))?;
    if read != body.len() {
        return Err(CodecError::Decode(format!(
            "{} trailing bytes after the value",
            body.len() - read
        )));
    }
    Ok(value)
}

/// bincode limits of [`decode`], 16 times apart: 64 KiB (every small message), 1 MiB,
/// 16 MiB, 256 MiB, and 2 GiB, [`MAX_MESSAGE_BYTES`] × [`CLAIMS_PER_BYTE`].
const TIER_1: usize = 64 << 10;
const TIER_2: usize = 1 << 20;
const TIER_3: usize = 16 << 20;
const TIER_4: usize = 256 << 20;
const TIER_5: usize = MAX_MESSAGE_BYTES * CLAIMS_PER_BYTE;

fn decode_within<T: DeserializeOwned, const LIMIT: usize>(
    body: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(body, config().with_limit::<LIMIT>())
}

/// Serde helpers for byte fields (`#[serde(with = "crate::codec::bytes")]`).
///
/// serde sees a `Vec<u8>` as a sequence, so bincode decodes it byte by byte, and under the
/// decoding limit (decision 018) counts every byte against the limit on its own: about a
/// hundred instructions per byte of a stored user on every forwarded read. As bytes, bincode
/// checks the length against the limit once and copies the bytes at once. The encoding is the
/// same (a varint length, then the bytes: bincode writes a `u8` as one byte), so values
/// written either way read either way, on the wire and on disk.
pub mod bytes {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::Serializer;

    /// Writes `value` as bytes.
    pub fn serialize<S: Serializer>(value: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(value)
    }

    /// Reads bytes written by [`serialize`] or as a sequence of `u8`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            // A self-describing format may hand bytes over as a sequence; never trust its
            // size hint for the allocation.
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(byte) = seq.next_element()? {
                out.push(byte);
            }
            Ok(out)
        }
    }

    /// The same for `Option<Vec<u8>>` (`#[serde(with = "crate::codec::bytes::option")]`).
    pub mod option {
        use serde::de::{Deserializer, Visitor};
        use serde::Serializer;

        /// Writes `value` as an option of bytes.
        pub fn serialize<S: Serializer>(
            value: &Option<Vec<u8>>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(bytes) => serializer.serialize_some(&AsBytes(bytes)),
                None => serializer.serialize_none(),
            }
        }

        /// Reads what [`serialize`] wrote, or an option of a sequence of `u8`.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Vec<u8>>, D::Error> {
            deserializer.deserialize_option(OptionVisitor)
        }

        struct AsBytes<'a>(&'a [u8]);

        impl serde::Serialize for AsBytes<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_bytes(self.0)
            }
        }

        struct OptionVisitor;

        impl<'de> Visitor<'de> for OptionVisitor {
            type Value = Option<Vec<u8>>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("optional bytes")
            }

            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                super::deserialize(d).map(Some)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::rpc::wire::Handshake;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Sample {
        A { name: String, n: u64 },
        B(Vec<u8>),
        C(Vec<u64>),
    }

    /// The 16 bytes without their frame length: version 1, `Handshake::Hello`
    /// (variant 1), protocol 6, then a cluster name whose varint length (253: a `u64` follows)
    /// claims 2^62 bytes.
    const HOSTILE_HELLO: [u8; 12] = [1, 1, 6, 253, 0, 0, 0, 0, 0, 0, 0, 0x40];

    /// `Sample::A` whose name claims 2^62 bytes, followed by `extra` more bytes. (A string is
    /// what bincode allocates for before reading; serde fills a `Vec` element by element.)
    fn huge_string_claim(extra: usize) -> Vec<u8> {
        let mut bytes = vec![FORMAT_VERSION, 0, 253];
        bytes.extend_from_slice(&(1u64 << 62).to_le_bytes());
        bytes.resize(bytes.len() + extra, 7);
        bytes
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct AsSequence {
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        gone: Option<Vec<u8>>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct AsBytes {
        #[serde(with = "bytes")]
        key: Vec<u8>,
        #[serde(with = "bytes::option")]
        value: Option<Vec<u8>>,
        #[serde(with = "bytes::option")]
        gone: Option<Vec<u8>>,
    }

    #[test]
    fn byte_fields_encode_as_a_vec_of_u8_does_so_old_and_new_values_read_both_ways() {
        let long: Vec<u8> = (0..=255).cycle().take(1000).collect();
        let old = AsSequence {
            key: b"key".to_vec(),
            value: Some(long.clone()),
            gone: None,
        };
        let new = AsBytes {
            key: b"key".to_vec(),
            value: Some(long),
            gone: None,
        };
        let (old_bytes, new_bytes) = (encode(&old).expect("old"), encode(&new).expect("new"));
        assert_eq!(old_bytes, new_bytes);
        assert_eq!(
            decode::<AsBytes>(&old_bytes, Limit::Message).expect("new reads old"),
            new
        );
        assert_eq!(
            decode::<AsSequence>(&new_bytes, Limit::Message).expect("old reads new"),
            old
        );
    }

    #[test]
    fn a_byte_field_claiming_more_than_its_input_is_refused_before_allocating() {
        // key: varint 253 then a u64 claiming 2^62 bytes.
        let mut bytes = vec![FORMAT_VERSION, 253];
        bytes.extend_from_slice(&(1u64 << 62).to_le_bytes());
        bytes.resize(bytes.len() + 64, 0);
        assert!(matches!(
            decode::<AsBytes>(&bytes, Limit::Message),
            Err(CodecError::Decode(_))
        ));
    }

    #[test]
    fn round_trips_enums_and_prefixes_the_version() {
        let v = Sample::A {
            name: "x".into(),
            n: 7,
        };
        let bytes = encode(&v).expect("encodes");
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(
            decode::<Sample>(&bytes, Limit::Message).expect("decodes"),
            v
        );
    }

    #[test]
    fn refuses_other_versions_trailing_bytes_and_garbage() {
        let mut bytes = encode(&Sample::B(vec![1, 2])).expect("encodes");
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(matches!(
            decode::<Sample>(&padded, Limit::Message),
            Err(CodecError::Decode(_))
        ));
        bytes[0] = 99;
        assert!(matches!(
            decode::<Sample>(&bytes, Limit::Message),
            Err(CodecError::Version { found: 99 })
        ));
        assert!(decode::<Sample>(&[], Limit::Stored).is_err());
        assert!(decode::<Sample>(&[FORMAT_VERSION, 200, 1], Limit::Stored).is_err());
    }

    #[test]
    fn a_hello_whose_cluster_name_claims_2_pow_62_bytes_is_a_decode_error_not_an_abort() {
        for limit in [Limit::Handshake, Limit::Message, Limit::Stored] {
            assert!(
                matches!(
                    decode::<Handshake>(&HOSTILE_HELLO, limit),
                    Err(CodecError::Decode(_))
                ),
                "{limit:?}"
            );
        }
    }

    #[test]
    fn a_string_whose_length_claims_2_pow_62_bytes_is_a_decode_error_in_every_tier() {
        // Bodies that select each tier of the bincode limit, the largest one included.
        for extra in [0, TIER_1 / 8 + 1, TIER_2 / 8 + 1, TIER_3 / 8 + 1] {
            let bytes = huge_string_claim(extra);
            for limit in [Limit::Message, Limit::Stored] {
                assert!(
                    matches!(decode::<Sample>(&bytes, limit), Err(CodecError::Decode(_))),
                    "{} bytes as {limit:?}",
                    bytes.len()
                );
            }
        }
    }

    #[test]
    fn a_length_claim_just_past_the_input_is_refused_before_it_is_allocated() {
        // 1 MiB claimed by a 100-byte input: within no tier of a 100-byte input.
        let mut bytes = vec![FORMAT_VERSION, 0, 252];
        bytes.extend_from_slice(&(1u32 << 20).to_le_bytes());
        bytes.resize(100, b'a');
        let error = decode::<Sample>(&bytes, Limit::Stored).expect_err("refused");
        assert!(
            error.to_string().to_lowercase().contains("limit"),
            "{error}"
        );
    }

    #[test]
    fn inputs_longer_than_their_use_allows_are_refused_unread() {
        let bytes = encode(&Sample::B(vec![0; MAX_HANDSHAKE_BYTES])).expect("encodes");
        assert!(matches!(
            decode::<Sample>(&bytes, Limit::Handshake),
            Err(CodecError::TooLong {
                max: MAX_HANDSHAKE_BYTES,
                ..
            })
        ));
        assert!(decode::<Sample>(&bytes, Limit::Message).is_ok());
    }

    #[test]
    fn valid_values_that_claim_the_most_per_byte_decode_at_every_tier() {
        // Small u64s: one byte each on the wire, eight against bincode's limit.
        for len in [10, TIER_1 / 8 - 16, TIER_1 / 8 + 16, TIER_2 / 8 + 16] {
            let value = Sample::C(vec![3; len]);
            let bytes = encode(&value).expect("encodes");
            assert_eq!(
                decode::<Sample>(&bytes, Limit::Message).expect("decodes"),
                value,
                "{len} integers"
            );
        }
        let value = Sample::B(vec![9; TIER_2 + 5]);
        let bytes = encode(&value).expect("encodes");
        assert_eq!(
            decode::<Sample>(&bytes, Limit::Stored).expect("decodes"),
            value
        );
    }
}
