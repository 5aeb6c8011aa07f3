//! What a crash in the middle of an append leaves in a node's write-ahead log, made on purpose.
//!
//! In the simulation a node's writes run inline: the append and its sync happen within one
//! step of the host, and the write is answered only steps later, once its replica has answered
//! over the simulated network. So a crash right after the step in which the node appended
//! lands between the append and its acknowledgement ([`LogWatch`]). A real crash can also cut
//! the next append short: [`tear`] writes part of a record, or a whole one with a damaged
//! byte, after the last whole record, as an unsynced write leaves it. The node must cut it
//! at restart and lose nothing it acknowledged.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::Rng;
use troupe_node::storage::WAL_DIR;
use troupe_node::wal::record::{self, Decoded};
use troupe_node::wal::{SEGMENT_HEADER, SEGMENT_SUFFIX};
/// The largest torn payload [`tear`] writes.
const TORN_PAYLOAD: usize = 4096;

/// Where a node's log ends, so that its next append can be seen from outside.
pub struct LogWatch {
    dir: PathBuf,
    segment: PathBuf,
    end: u64,
}

impl LogWatch {
    /// The end of the log in `data_dir` now.
    pub fn new(data_dir: &Path) -> io::Result<Self> {
        let dir = data_dir.join(WAL_DIR);
        let segment = newest_segment(&dir)?;
        let (end, _) = records_end(&segment)?;
        Ok(Self { dir, segment, end })
    }

    /// Whether a record has been appended since [`Self::new`]: bytes past the old end, or a
    /// newer segment. Reads a record's header, not the log.
    pub fn appended(&self) -> io::Result<bool> {
        if newest_segment(&self.dir)? != self.segment {
            return Ok(true);
        }
        let mut header = [0u8; record::HEADER_BYTES];
        let read = File::open(&self.segment)?.read_at(&mut header, self.end)?;
        Ok(header[..read].iter().any(|&b| b != 0))
    }
}

/// What [`tear`] left in a log.
#[derive(Debug)]
pub struct Tear {
    /// The segment written.
    pub segment: PathBuf,
    /// Where its last whole record ends: the bytes written start here.
    pub at: u64,
    /// How many bytes were written.
    pub bytes: usize,
    /// Whether they are a whole record with one byte changed, rather than part of one.
    pub damaged: bool,
}

/// Writes a torn record after the last whole record of the log in `data_dir`, with the next
/// LSN and a random payload: either a prefix of it or all of it with one byte flipped.
pub fn tear(data_dir: &Path, rng: &mut StdRng) -> io::Result<Tear> {
    let segment = newest_segment(&data_dir.join(WAL_DIR))?;
    let (at, next_lsn) = records_end(&segment)?;
    let payload: Vec<u8> = (0..rng.random_range(1..=TORN_PAYLOAD))
        .map(|_| rng.random())
        .collect();
    let mut bytes = Vec::new();
    record::encode(&mut bytes, next_lsn, &payload);
    let damaged = rng.random_bool(0.5);
    if damaged {
        let i = rng.random_range(0..bytes.len());
        bytes[i] ^= 1 << rng.random_range(0..8);
    } else {
        bytes.truncate(rng.random_range(1..bytes.len()));
    }
    OpenOptions::new()
        .write(true)
        .open(&segment)?
        .write_all_at(&bytes, at)?;
    Ok(Tear {
        segment,
        at,
        bytes: bytes.len(),
        damaged,
    })
}

/// The segment being appended to: the one with the highest first LSN (names are zero-padded,
/// so the greatest name).
fn newest_segment(dir: &Path) -> io::Result<PathBuf> {
    let mut newest = None;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == SEGMENT_SUFFIX) && newest.as_ref() < Some(&path) {
            newest = Some(path);
        }
    }
    newest.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no log segment"))
}

/// Where the whole records of `segment` end, and the LSN of the next one.
fn records_end(segment: &Path) -> io::Result<(u64, u64)> {
    let bytes = fs::read(segment)?;
    let first = bytes
        .get(8..SEGMENT_HEADER)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a segment header cut short"))?;
    let mut at = SEGMENT_HEADER;
    let mut next_lsn = first;
    // No bound on a length: `decode` reads only the bytes it was given, and this one trusts
    // whatever a whole record's checksum vouches for.
    while let Decoded::Record { lsn, len, .. } = record::decode(&bytes[at..], u32::MAX) {
        if lsn != next_lsn {
            break;
        }
        next_lsn += 1;
        at += len;
    }
    Ok((at as u64, next_lsn))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use troupe_node::wal::{Wal, WalOptions};

    use super::*;

    fn replayed(data_dir: &Path) -> (Vec<(u64, Vec<u8>)>, Wal) {
        let mut records = Vec::new();
        let wal = Wal::open(
            &data_dir.join(WAL_DIR),
            WalOptions {
                segment_bytes: 64 << 10,
                ..WalOptions::default()
            },
            0,
            |lsn, payload| records.push((lsn, payload.to_vec())),
        )
        .expect("open the log");
        (records, wal)
    }

    #[test]
    fn an_append_is_seen_and_a_tear_is_cut_at_the_last_whole_record() {
        for seed in 0..20 {
            let dir = tempfile::tempdir().expect("temporary directory");
            let (_, mut wal) = replayed(dir.path());
            for payload in [&b"one"[..], b"two"] {
                wal.append(payload).expect("append");
                wal.sync().expect("sync");
            }
            let watch = LogWatch::new(dir.path()).expect("watch");
            assert!(!watch.appended().expect("read"), "nothing appended yet");
            wal.append(b"three").expect("append");
            wal.sync().expect("sync");
            assert!(watch.appended().expect("read"), "seed {seed}: the append");
            drop(wal);

            let tear = tear(dir.path(), &mut StdRng::seed_from_u64(seed)).expect("tear");
            assert!(tear.bytes > 0);
            let (records, mut wal) = replayed(dir.path());
            let lsns: Vec<u64> = records.iter().map(|(lsn, _)| *lsn).collect();
            assert_eq!(lsns, [1, 2, 3], "seed {seed}: {tear:?}");
            assert_eq!(
                wal.next_lsn(),
                4,
                "seed {seed}: the torn record is not counted"
            );
            wal.append(b"four").expect("append");
            wal.sync().expect("sync");
            drop(wal);
            let (records, _) = replayed(dir.path());
            assert_eq!(records.last(), Some(&(4, b"four".to_vec())), "seed {seed}");
        }
    }
}
