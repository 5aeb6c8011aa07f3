//! Sealing and opening gossip datagrams: the wire format that authenticates and encrypts every
//! chitchat datagram with a key derived from the cluster secret.
//!
//! chitchat accepts any delta with a higher version from any UDP sender, so without this a host
//! that knows only the cluster name can rewrite every node's view. Each datagram is
//!
//! ```text
//! version (1) | sender instance (16) | counter (8, BE) | unix ms (8, BE) | ciphertext | tag (16)
//! ```
//!
//! sealed with XChaCha20-Poly1305: the 33-byte header is the associated data, the nonce is the
//! instance followed by the counter. The instance is drawn at random when a node opens its gossip
//! socket and the counter only grows, so a nonce is never reused under one key (two instances
//! collide with probability 2^-128 per pair). Opening checks the tag under the current key,
//! then the previous one (the keyring, so a secret rotates without downtime), then the
//! timestamp and the sender's replay window ([`super::replay`]). Everything here is pure:
//! the caller passes the clock.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;

use super::replay::{Replay, ReplayWindows};
use crate::config::Secret;

/// Format version, first byte of every sealed datagram.
const VERSION: u8 = 1;
/// Length of a sender instance id.
pub const INSTANCE_LEN: usize = 16;
/// version + instance + counter + timestamp.
const HEADER_LEN: usize = 1 + INSTANCE_LEN + 8 + 8;
const TAG_LEN: usize = 16;
/// Bytes a sealed datagram adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// HKDF label; a new format or derivation gets a new label.
const LABEL: &[u8] = b"troupe gossip v1";

/// A sender instance id: random per gossip socket.
pub type Instance = [u8; INSTANCE_LEN];

/// Why a datagram was not opened. Every variant means the datagram is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Too short to hold a header and a tag.
    #[error("too short for a sealed gossip datagram")]
    Short,
    /// Unknown format version.
    #[error("unknown gossip format version")]
    Version,
    /// The tag does not verify under any accepted key: forged, corrupted or another secret.
    #[error("not sealed with the cluster secret")]
    Forged,
    /// Sealed further in the past or future than the tolerance allows.
    #[error("timestamp outside the accepted clock skew")]
    Stale,
    /// A counter already accepted from this sender instance.
    #[error("replayed datagram")]
    Replayed,
    /// A counter older than the sender's replay window.
    #[error("counter older than the replay window")]
    TooOld,
    /// The table of sender instances is full of recently active ones.
    #[error("too many gossip sender instances")]
    TooManySenders,
}

/// Why a datagram could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The counter reached its end (2^64 datagrams): never in practice, but a nonce must not
    /// repeat.
    #[error("gossip counter exhausted; restart the node")]
    CounterExhausted,
    /// The AEAD refused the input (longer than it supports).
    #[error("gossip datagram too long to seal")]
    TooLong,
}

/// The keyring: the key datagrams are sealed with, and an optional previous one still accepted
/// while a secret is rotated.
#[derive(Clone)]
pub struct GossipKeys {
    current: XChaCha20Poly1305,
    previous: Option<XChaCha20Poly1305>,
}

impl std::fmt::Debug for GossipKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GossipKeys(<redacted>)")
    }
}

impl GossipKeys {
    /// Derives the gossip keys of cluster `cluster` from its secret and, during a rotation, the
    /// previous secret. The cluster name is bound in, so two clusters that share a secret still
    /// do not accept each other's gossip.
    pub fn derive(cluster: &str, secret: &Secret, previous: Option<&Secret>) -> Self {
        Self {
            current: cipher(cluster, secret),
            previous: previous.map(|p| cipher(cluster, p)),
        }
    }
}

fn cipher(cluster: &str, secret: &Secret) -> XChaCha20Poly1305 {
    let mut okm = [0u8; 32];
    let mut info = Vec::with_capacity(LABEL.len() + 1 + cluster.len());
    info.extend_from_slice(LABEL);
    info.push(0);
    info.extend_from_slice(cluster.as_bytes());
    // 32 bytes is far below HKDF-SHA256's 255 * 32 byte limit: expand cannot fail.
    Hkdf::<Sha256>::new(None, secret.expose())
        .expand(&info, &mut okm)
        .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 length"));
    XChaCha20Poly1305::new(Key::from_slice(&okm))
}

fn nonce(instance: &Instance, counter: u64) -> XNonce {
    let mut n = [0u8; 24];
    n[..INSTANCE_LEN].copy_from_slice(instance);
    n[INSTANCE_LEN..].copy_from_slice(&counter.to_be_bytes());
    XNonce::from(n)
}

/// Seals datagrams of one sender instance.
pub struct Sealer {
    keys: GossipKeys,
    instance: Instance,
    next: u64,
}

impl Sealer {
    /// A sealer for a new instance (`instance` must be fresh randomness).
    pub fn new(keys: GossipKeys, instance: Instance) -> Self {
        Self {
            keys,
            instance,
            next: 0,
        }
    }

    /// Seals `plaintext` at wall-clock `now_ms` into `out` (cleared first).
    pub fn seal(
        &mut self,
        plaintext: &[u8],
        now_ms: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), SealError> {
        let counter = self.next;
        self.next = counter.checked_add(1).ok_or(SealError::CounterExhausted)?;
        out.clear();
        out.reserve(OVERHEAD + plaintext.len());
        out.push(VERSION);
        out.extend_from_slice(&self.instance);
        out.extend_from_slice(&counter.to_be_bytes());
        out.extend_from_slice(&now_ms.to_be_bytes());
        out.extend_from_slice(plaintext);
        let (header, body) = out.split_at_mut(HEADER_LEN);
        let tag = self
            .keys
            .current
            .encrypt_in_place_detached(&nonce(&self.instance, counter), header, body)
            .map_err(|_| SealError::TooLong)?;
        out.extend_from_slice(&tag);
        Ok(())
    }
}

/// Opens datagrams from every sender, remembering what each sender instance already sent.
pub struct Opener {
    keys: GossipKeys,
    windows: ReplayWindows,
    tolerance_ms: u64,
}

/// How far a datagram's timestamp may be from the receiver's clock. Nodes' wall clocks are
/// assumed to agree within this (NTP keeps them within milliseconds); a node whose clock is off
/// by more cannot gossip, and says so in its drop counts.
pub const CLOCK_TOLERANCE_MS: u64 = 60_000;

impl Opener {
    /// An opener with the default clock tolerance and sender bound.
    pub fn new(keys: GossipKeys) -> Self {
        Self::with_limits(keys, CLOCK_TOLERANCE_MS, super::replay::MAX_INSTANCES)
    }

    /// An opener accepting timestamps within `tolerance_ms` and tracking at most
    /// `max_instances` sender instances.
    pub fn with_limits(keys: GossipKeys, tolerance_ms: u64, max_instances: usize) -> Self {
        Self {
            keys,
            // An instance idle for twice the tolerance can be forgotten: anything it sent
            // before is then outside the tolerance and refused by its timestamp anyway, as
            // long as clocks agree within the tolerance.
            windows: ReplayWindows::new(max_instances, tolerance_ms.saturating_mul(2)),
            tolerance_ms,
        }
    }

    /// Number of sender instances tracked (bounded).
    pub fn instances(&self) -> usize {
        self.windows.len()
    }

    /// Opens `datagram` received at wall-clock `now_ms`, writing the plaintext into `out`
    /// (cleared first). Only a datagram that verifies under an accepted key can touch the
    /// replay state.
    pub fn open(
        &mut self,
        datagram: &[u8],
        now_ms: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), OpenError> {
        if datagram.len() < OVERHEAD {
            return Err(OpenError::Short);
        }
        if datagram[0] != VERSION {
            return Err(OpenError::Version);
        }
        let (header, rest) = datagram.split_at(HEADER_LEN);
        let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut instance = [0u8; INSTANCE_LEN];
        instance.copy_from_slice(&header[1..=INSTANCE_LEN]);
        let counter = be_u64(&header[1 + INSTANCE_LEN..HEADER_LEN - 8]);
        let sent_ms = be_u64(&header[HEADER_LEN - 8..]);
        let nonce = nonce(&instance, counter);
        let tag = Tag::from_slice(tag);
        let opened = [Some(&self.keys.current), self.keys.previous.as_ref()]
            .into_iter()
            .flatten()
            .any(|key| {
                out.clear();
                out.extend_from_slice(body);
                key.decrypt_in_place_detached(&nonce, header, out, tag)
                    .is_ok()
            });
        if !opened {
            out.clear();
            return Err(OpenError::Forged);
        }
        if now_ms.abs_diff(sent_ms) > self.tolerance_ms {
            out.clear();
            return Err(OpenError::Stale);
        }
        let verdict = self.windows.accept(instance, counter, now_ms);
        if verdict != Replay::Fresh {
            out.clear();
        }
        match verdict {
            Replay::Fresh => Ok(()),
            Replay::Seen => Err(OpenError::Replayed),
            Replay::TooOld => Err(OpenError::TooOld),
            Replay::Full => Err(OpenError::TooManySenders),
        }
    }
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(bytes);
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn keys(secret: &str) -> GossipKeys {
        GossipKeys::derive("troupe", &Secret::new(secret), None)
    }

    fn sealed(sealer: &mut Sealer, text: &[u8], at: u64) -> Vec<u8> {
        let mut out = Vec::new();
        sealer.seal(text, at, &mut out).expect("seal");
        out
    }

    fn open(opener: &mut Opener, datagram: &[u8], at: u64) -> Result<Vec<u8>, OpenError> {
        let mut out = Vec::new();
        opener.open(datagram, at, &mut out).map(|()| out)
    }

    #[test]
    fn a_sealed_datagram_opens_once_and_hides_its_plaintext() {
        let mut sealer = Sealer::new(keys("secret-one"), [7; 16]);
        let mut opener = Opener::new(keys("secret-one"));
        let datagram = sealed(&mut sealer, b"status=leaving", NOW);
        assert_eq!(datagram.len(), b"status=leaving".len() + OVERHEAD);
        assert!(!datagram.windows(7).any(|w| w == b"leaving"), "encrypted");
        assert_eq!(
            open(&mut opener, &datagram, NOW).as_deref(),
            Ok(&b"status=leaving"[..])
        );
        assert_eq!(open(&mut opener, &datagram, NOW), Err(OpenError::Replayed));
    }

    #[test]
    fn every_tampered_byte_is_refused() {
        let mut sealer = Sealer::new(keys("secret-one"), [1; 16]);
        let datagram = sealed(&mut sealer, b"heartbeat 42", NOW);
        for i in 0..datagram.len() {
            let mut opener = Opener::new(keys("secret-one"));
            let mut forged = datagram.clone();
            forged[i] ^= 0x01;
            let error = open(&mut opener, &forged, NOW).expect_err("tampered");
            assert!(
                matches!(error, OpenError::Forged | OpenError::Version),
                "byte {i}: {error:?}"
            );
            assert_eq!(opener.instances(), 0, "a forged datagram creates no entry");
        }
    }

    #[test]
    fn another_secret_or_cluster_name_is_refused() {
        let mut sealer = Sealer::new(keys("secret-one"), [1; 16]);
        let datagram = sealed(&mut sealer, b"x", NOW);
        let mut other = Opener::new(keys("secret-two"));
        assert_eq!(open(&mut other, &datagram, NOW), Err(OpenError::Forged));
        let mut other_cluster = Opener::new(GossipKeys::derive(
            "other",
            &Secret::new("secret-one"),
            None,
        ));
        assert_eq!(
            open(&mut other_cluster, &datagram, NOW),
            Err(OpenError::Forged)
        );
        assert_eq!(open(&mut other, &[], NOW), Err(OpenError::Short));
        assert_eq!(open(&mut other, &[0u8; 200], NOW), Err(OpenError::Version));
    }

    #[test]
    fn the_previous_secret_is_accepted_during_a_rotation() {
        let old = Secret::new("secret-old");
        let new = Secret::new("secret-new");
        let mut old_sender = Sealer::new(GossipKeys::derive("troupe", &old, None), [1; 16]);
        let mut new_sender = Sealer::new(GossipKeys::derive("troupe", &new, Some(&old)), [2; 16]);
        let mut rotated = Opener::new(GossipKeys::derive("troupe", &new, Some(&old)));
        let mut not_rotated = Opener::new(GossipKeys::derive("troupe", &old, None));
        let from_old = sealed(&mut old_sender, b"a", NOW);
        let from_new = sealed(&mut new_sender, b"b", NOW);
        assert!(open(&mut rotated, &from_old, NOW).is_ok());
        assert!(open(&mut rotated, &from_new, NOW).is_ok());
        assert!(open(&mut not_rotated, &from_old, NOW).is_ok());
        assert_eq!(
            open(&mut not_rotated, &from_new, NOW),
            Err(OpenError::Forged),
            "a node sends with its current secret only"
        );
    }

    #[test]
    fn a_timestamp_outside_the_tolerance_is_refused() {
        let mut sealer = Sealer::new(keys("s-secret"), [3; 16]);
        let mut opener = Opener::new(keys("s-secret"));
        let old = sealed(&mut sealer, b"x", NOW - CLOCK_TOLERANCE_MS - 1);
        let future = sealed(&mut sealer, b"x", NOW + CLOCK_TOLERANCE_MS + 1);
        let edge = sealed(&mut sealer, b"x", NOW - CLOCK_TOLERANCE_MS);
        assert_eq!(open(&mut opener, &old, NOW), Err(OpenError::Stale));
        assert_eq!(open(&mut opener, &future, NOW), Err(OpenError::Stale));
        assert!(open(&mut opener, &edge, NOW).is_ok());
    }

    #[test]
    fn out_of_order_datagrams_within_the_window_open_and_older_ones_do_not() {
        let mut sealer = Sealer::new(keys("s-secret"), [4; 16]);
        let mut opener = Opener::new(keys("s-secret"));
        let all: Vec<Vec<u8>> = (0..300).map(|_| sealed(&mut sealer, b"x", NOW)).collect();
        assert!(open(&mut opener, &all[200], NOW).is_ok());
        assert!(
            open(&mut opener, &all[199], NOW).is_ok(),
            "reordered by one"
        );
        assert!(
            open(&mut opener, &all[100], NOW).is_ok(),
            "within the window"
        );
        assert_eq!(open(&mut opener, &all[100], NOW), Err(OpenError::Replayed));
        assert_eq!(open(&mut opener, &all[10], NOW), Err(OpenError::TooOld));
        assert!(
            open(&mut opener, &all[299], NOW).is_ok(),
            "the window slides"
        );
        assert_eq!(open(&mut opener, &all[150], NOW), Err(OpenError::TooOld));
        assert_eq!(open(&mut opener, &all[200], NOW), Err(OpenError::Replayed));
    }

    #[test]
    fn sender_instances_are_bounded_and_idle_ones_expire() {
        let k = keys("s-secret");
        let mut opener = Opener::with_limits(k.clone(), CLOCK_TOLERANCE_MS, 4);
        let mut first = Vec::new();
        for i in 0..4u8 {
            let mut sealer = Sealer::new(k.clone(), [i; 16]);
            let datagram = sealed(&mut sealer, b"x", NOW);
            assert!(open(&mut opener, &datagram, NOW).is_ok());
            first.push(datagram);
        }
        let mut fifth = Sealer::new(k.clone(), [9; 16]);
        let datagram = sealed(&mut fifth, b"x", NOW);
        assert_eq!(
            open(&mut opener, &datagram, NOW),
            Err(OpenError::TooManySenders),
            "active instances are never evicted (their windows guard against replays)"
        );
        assert_eq!(opener.instances(), 4);
        let later = NOW + 2 * CLOCK_TOLERANCE_MS + 1;
        let datagram = sealed(&mut fifth, b"x", later);
        assert!(
            open(&mut opener, &datagram, later).is_ok(),
            "idle ones expired"
        );
        assert_eq!(opener.instances(), 1);
        assert_eq!(
            open(&mut opener, &first[0], later),
            Err(OpenError::Stale),
            "a replay from an expired instance is refused by its timestamp"
        );
    }
}
