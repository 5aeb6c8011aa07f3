//! One record of the write-ahead log, framed so that a torn or damaged write is detected on
//! replay: `[payload length: u32][lsn: u64][checksum: u64][payload]`, little-endian. The
//! checksum (xxh3-64) covers the length, the log sequence number and the payload, so a record
//! whose header survived but whose payload did not, or a record left over from an older use of
//! the same bytes, fails it.

use xxhash_rust::xxh3::Xxh3;

/// Bytes of a record's header before its payload.
pub const HEADER_BYTES: usize = 4 + 8 + 8;

/// Appends the framed record `(lsn, payload)` to `out`.
pub fn encode(out: &mut Vec<u8>, lsn: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("record payloads are bounded below 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&checksum(len, lsn, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What [`decode`] found at the start of the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole record whose checksum holds, and the bytes it spans.
    Record {
        lsn: u64,
        payload: &'a [u8],
        len: usize,
    },
    /// Nothing: the bytes end exactly here.
    End,
    /// Not a whole, intact record: a write cut short, damaged bytes, or a length no writer
    /// would have produced. Replay stops here.
    Invalid(&'static str),
}

/// Reads the record at the start of `bytes`, trusting no length before the checksum holds:
/// a torn header can claim any length, so one above `max_payload` is refused unread.
pub fn decode(bytes: &[u8], max_payload: u32) -> Decoded<'_> {
    if bytes.is_empty() {
        return Decoded::End;
    }
    let Some(header) = bytes.get(..HEADER_BYTES) else {
        return Decoded::Invalid("a header cut short");
    };
    let len = u32::from_le_bytes(array(&header[0..4]));
    let lsn = u64::from_le_bytes(array(&header[4..12]));
    let sum = u64::from_le_bytes(array(&header[12..20]));
    if len > max_payload {
        return Decoded::Invalid("a length above the largest record");
    }
    let end = HEADER_BYTES + len as usize;
    let Some(payload) = bytes.get(HEADER_BYTES..end) else {
        return Decoded::Invalid("a payload cut short");
    };
    if checksum(len, lsn, payload) != sum {
        return Decoded::Invalid("a checksum that does not hold");
    }
    Decoded::Record {
        lsn,
        payload,
        len: end,
    }
}

fn checksum(len: u32, lsn: u64, payload: &[u8]) -> u64 {
    let mut hasher = Xxh3::new();
    hasher.update(&len.to_le_bytes());
    hasher.update(&lsn.to_le_bytes());
    hasher.update(payload);
    hasher.digest()
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(lsn: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, lsn, payload);
        out
    }

    #[test]
    fn a_record_decodes_to_what_was_encoded_and_says_how_long_it_is() {
        let bytes = framed(7, b"hello");
        assert_eq!(
            decode(&bytes, 1024),
            Decoded::Record {
                lsn: 7,
                payload: b"hello",
                len: HEADER_BYTES + 5
            }
        );
        assert_eq!(decode(&[], 1024), Decoded::End);
    }

    #[test]
    fn every_cut_of_a_record_is_invalid_and_never_a_shorter_record() {
        let bytes = framed(3, b"a payload of some length");
        for cut in 1..bytes.len() {
            assert!(
                matches!(decode(&bytes[..cut], 1024), Decoded::Invalid(_)),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_fails_the_checksum_or_the_length_bound() {
        let bytes = framed(3, b"payload");
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[at] ^= 1 << bit;
                assert!(
                    matches!(decode(&damaged, 1024), Decoded::Invalid(_)),
                    "bit {bit} of byte {at}"
                );
            }
        }
    }

    #[test]
    fn a_length_above_the_bound_is_refused_without_reading_the_payload() {
        let mut bytes = framed(1, b"x");
        bytes[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode(&bytes, 1024),
            Decoded::Invalid("a length above the largest record")
        );
    }

    #[test]
    fn zeroed_bytes_are_not_a_record() {
        assert!(matches!(
            decode(&[0; 64], 1024),
            Decoded::Invalid("a checksum that does not hold")
        ));
    }
}
