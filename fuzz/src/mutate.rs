//! The mutator: turns a corpus input into a nearby one, deterministically from a seeded
//! generator. It knows the two length encodings a node reads: bincode's varint (a byte below
//! 251 is the value; 251, 252 and 253 announce a little-endian u16, u32 and u64) and the
//! frame's 4-byte big-endian length, so it can make any length field claim too much or too
//! little, which random bit flips alone rarely do.

use rand::rngs::StdRng;
use rand::Rng;

/// Longest input the mutator makes; longer ones are cut (inputs stay cheap to try).
pub const MAX_INPUT: usize = 64 * 1024;

/// Bytes that often mean something: zero, one, sign bits, the varint markers, all ones.
const INTERESTING_BYTES: [u8; 11] = [0, 1, 2, 0x7f, 0x80, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff];

/// Lengths worth claiming: none, one, around the input, and far beyond it.
fn interesting_length(rng: &mut StdRng, input_len: usize) -> u64 {
    match rng.random_range(0..9) {
        0 => 0,
        1 => 1,
        2 => input_len as u64,
        3 => input_len as u64 + 1,
        4 => u64::from(u16::MAX),
        5 => u64::from(u32::MAX),
        6 => 1 << 62,
        7 => u64::MAX,
        _ => rng.random_range(0..1 << 20),
    }
}

/// A bincode varint of `value` (standard config).
fn varint(value: u64) -> Vec<u8> {
    if value < 251 {
        vec![value as u8]
    } else if let Ok(v) = u16::try_from(value) {
        let mut out = vec![251];
        out.extend_from_slice(&v.to_le_bytes());
        out
    } else if let Ok(v) = u32::try_from(value) {
        let mut out = vec![252];
        out.extend_from_slice(&v.to_le_bytes());
        out
    } else {
        let mut out = vec![253];
        out.extend_from_slice(&value.to_le_bytes());
        out
    }
}

/// One to four stacked mutations of `input`; `other` is another corpus input, for splicing;
/// `dictionary` holds tokens of a text format (empty for binary ones), which replace a word
/// of the input or are inserted into it.
pub fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8], dictionary: &[&[u8]]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        if !dictionary.is_empty() && rng.random_bool(0.5) {
            use_token(rng, &mut out, dictionary);
        } else {
            mutate_once(rng, &mut out, other);
        }
    }
    out.truncate(MAX_INPUT);
    out
}

/// Replaces the word (a run of letters, digits, `.`, `_`, `-`, `+`) at a random position
/// with a token, or inserts the token there.
fn use_token(rng: &mut StdRng, out: &mut Vec<u8>, dictionary: &[&[u8]]) {
    let token = dictionary[rng.random_range(0..dictionary.len())];
    let at = if out.is_empty() {
        0
    } else {
        rng.random_range(0..out.len())
    };
    let in_word = |b: &u8| b.is_ascii_alphanumeric() || b"._-+".contains(b);
    if rng.random_bool(0.8) && out.get(at).is_some_and(in_word) {
        let start = out[..at]
            .iter()
            .rposition(|b| !in_word(b))
            .map_or(0, |i| i + 1);
        let end = out[at..]
            .iter()
            .position(|b| !in_word(b))
            .map_or(out.len(), |i| at + i);
        out.splice(start..end, token.iter().copied());
    } else {
        out.splice(at..at, token.iter().copied());
    }
}

fn mutate_once(rng: &mut StdRng, out: &mut Vec<u8>, other: &[u8]) {
    let len = out.len();
    let at = if len == 0 {
        0
    } else {
        rng.random_range(0..len)
    };
    match rng.random_range(0..10) {
        // A flipped bit.
        0 if len > 0 => out[at] ^= 1 << rng.random_range(0..8),
        // A byte set to an interesting value.
        1 if len > 0 => out[at] = INTERESTING_BYTES[rng.random_range(0..INTERESTING_BYTES.len())],
        // A random byte.
        2 if len > 0 => out[at] = rng.random(),
        // A one-byte varint (a length or a count) replaced by a varint claiming another length.
        3 | 4 if len > 0 => {
            let claim = varint(interesting_length(rng, len));
            out.splice(at..at + 1, claim);
        }
        // A 4-byte big-endian length (a frame's) overwritten.
        5 if len >= 4 => {
            let at = rng.random_range(0..=len - 4);
            let claim = interesting_length(rng, len).min(u64::from(u32::MAX)) as u32;
            out[at..at + 4].copy_from_slice(&claim.to_be_bytes());
        }
        // Truncation.
        6 => out.truncate(at),
        // Splicing: this input's head, the other's tail.
        7 => {
            let from = if other.is_empty() {
                0
            } else {
                rng.random_range(0..other.len())
            };
            out.truncate(at);
            out.extend_from_slice(&other[from..]);
        }
        // A few random bytes inserted.
        8 => {
            let bytes: Vec<u8> = (0..rng.random_range(1..=8)).map(|_| rng.random()).collect();
            out.splice(at..at, bytes);
        }
        // A range deleted or repeated.
        _ if len > 0 => {
            let end = rng.random_range(at..=len.min(at + 16));
            if rng.random_bool(0.5) {
                out.drain(at..end);
            } else {
                let copy = out[at..end].to_vec();
                out.splice(end..end, copy);
            }
        }
        _ => out.push(rng.random()),
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn varints_match_the_codecs_encoding_of_lengths() {
        for value in [0u64, 250, 251, 65_535, 65_536, 1 << 40] {
            let expected = troupe_node::codec::encode(&(value as usize)).expect("a usize encodes");
            assert_eq!(varint(value), expected[1..], "{value}");
        }
    }

    #[test]
    fn the_same_seed_makes_the_same_mutations() {
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..100)
                .map(|_| mutate(&mut rng, b"a valid input", b"another", &[b"nan"]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
