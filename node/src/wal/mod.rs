//! The write-ahead log's segment files (decision 039): records appended in order, each with a
//! log sequence number (LSN) one above the last, made durable together by one `fdatasync` of
//! a sequential write. This module knows nothing of shards or LMDB: it stores opaque payloads,
//! replays those past a checkpoint, and deletes the segments a checkpoint covers.
//!
//! Layout of a log directory:
//! - `<first lsn, 20 digits>.wal`: a segment, a 16-byte header (magic, then the LSN of its
//!   first record) and records ([`record`]), then zeros. Only the newest segment is written.
//! - A segment is created whole: header and zeros up to [`WalOptions::segment_bytes`], under a
//!   `.tmp` name, synced, then renamed. So a crash never leaves a half-written header (`.tmp`
//!   files a crash left are deleted at open), and appends overwrite blocks the file already
//!   has: an `fdatasync` then writes data only, not the file's size and block map through the
//!   filesystem's journal (`cargo bench -p troupe-node --bench wal`, one entry per commit on
//!   ext4: 9,720 commits a second against 6,396 before, 38 µs of kernel CPU per commit against
//!   62; docs/BENCHMARKS.md. etcd preallocates its segments too).
//!
//! What a crash can leave, and what [`Wal::open`] does with it:
//! - The newest segment ends in a torn or damaged record (its length, payload or checksum does
//!   not hold). It was never synced whole, so never acknowledged: its bytes are zeroed, so
//!   the next append follows the last whole record, and replay ends there.
//! - A damaged record in an older segment, or LSNs that skip, were synced and then lost: that is
//!   data loss, and opening fails ([`WalError::Corrupt`]) instead of silently dropping records.
//!
//! After a failed write or sync the state of the file is unknown (the kernel may have dropped
//! the dirty pages and will not report it again), so the log refuses every later call
//! ([`WalError::Poisoned`]); the node must stop and replay from disk.

pub mod record;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use record::Decoded;

/// First bytes of every segment file.
const MAGIC: &[u8; 8] = b"TROUPWAL";
/// Bytes of a segment's header: [`MAGIC`] and the LSN of its first record (little-endian).
pub const SEGMENT_HEADER: usize = 16;
/// The extension of a segment's file name.
pub const SEGMENT_SUFFIX: &str = "wal";
const TMP_SUFFIX: &str = "tmp";
/// The spare segment: zeros written ahead of the roll that will use them. A `.tmp` file, so a
/// crash leaves nothing [`Wal::open`] keeps.
const SPARE_NAME: &str = "spare.tmp";

/// Options of [`Wal::open`].
#[derive(Clone, Copy, Debug)]
pub struct WalOptions {
    /// The size a segment is created with (zeros after its header). One that has been filled
    /// is closed at the next sync and a new one started; checkpoints delete whole segments
    /// only, so this also bounds what a checkpoint leaves.
    pub segment_bytes: u64,
    /// The largest payload [`Wal::append`] accepts. Replay refuses a record that claims more,
    /// so a torn length cannot make it allocate or read past the file.
    pub max_record_bytes: u32,
    /// Whether the next segment's zeros are written ahead of time on a thread of its own
    /// (a spare), so that a roll only writes its header: writing a whole segment took the
    /// writer's path for the time of writing and syncing it. Off in the simulation, which
    /// allows no other thread.
    pub spare_segments: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            max_record_bytes: 32 << 20,
            spare_segments: false,
        }
    }
}

/// Why the log failed.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file operation failed.
    #[error("write-ahead log {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// Synced records are damaged or missing: replaying past them would lose acknowledged
    /// writes without saying so.
    #[error("write-ahead log segment {path} is damaged at byte {offset}: {reason}; it holds synced records, so the node will not start from it (restore the node's data from a replica)")]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Where its damage starts.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// A payload larger than [`WalOptions::max_record_bytes`].
    #[error(
        "a write-ahead log record of {bytes} bytes is larger than the largest allowed ({max})"
    )]
    TooLarge {
        /// The payload's size.
        bytes: usize,
        /// The bound.
        max: u32,
    },
    /// An earlier write or sync failed; nothing written since is known to be on disk.
    #[error("write-ahead log refuses writes after an earlier failure: {0}")]
    Poisoned(String),
}

/// An open log: replayed, with its newest segment open for appending.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    options: WalOptions,
    /// First LSNs of the segments on disk, oldest first; the last is being appended to.
    segments: Vec<u64>,
    file: File,
    /// Where the newest segment's records end (header included): the next write goes here.
    file_bytes: u64,
    /// Records appended since the last sync, framed.
    pending: Vec<u8>,
    next_lsn: u64,
    poisoned: Option<String>,
    /// The next segment's zeros being written (or written) under [`SPARE_NAME`].
    spare: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl Wal {
    /// Opens the log in `dir`, creating it if needed, and calls `replay` with every record whose
    /// LSN is above `checkpoint`, in order. A new log starts at `checkpoint + 1`.
    pub fn open(
        dir: &Path,
        options: WalOptions,
        checkpoint: u64,
        mut replay: impl FnMut(u64, &[u8]),
    ) -> Result<Self, WalError> {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let mut segments = list_segments(dir)?;
        if segments.is_empty() {
            create_segment(dir, checkpoint + 1, options.segment_bytes)?;
            segments.push(checkpoint + 1);
        }
        if segments[0] > checkpoint + 1 {
            return Err(corrupt(
                &segment_path(dir, segments[0]),
                0,
                format!("the log starts at {} but the checkpoint covers only up to {checkpoint}: records in between are missing", segments[0]),
            ));
        }
        let mut next_lsn = segments[0];
        let mut tail_bytes = 0;
        for (i, &first) in segments.iter().enumerate() {
            let path = segment_path(dir, first);
            let newest = i + 1 == segments.len();
            let bytes = fs::read(&path).map_err(io_at(&path))?;
            check_header(&path, &bytes, first)?;
            if first != next_lsn {
                return Err(corrupt(
                    &path,
                    0,
                    format!(
                        "it starts at record {first}, but the segment before ends at record {}",
                        next_lsn - 1
                    ),
                ));
            }
            let mut offset = SEGMENT_HEADER;
            loop {
                let rest = &bytes[offset..];
                match record::decode(rest, options.max_record_bytes) {
                    Decoded::Record { lsn, payload, len } if lsn == next_lsn => {
                        if lsn > checkpoint {
                            replay(lsn, payload);
                        }
                        next_lsn += 1;
                        offset += len;
                    }
                    // The zeros a segment was created with: its records end here.
                    _ if rest.iter().all(|&b| b == 0) => break,
                    Decoded::Record { lsn, .. } if !newest => {
                        return Err(corrupt(
                            &path,
                            offset as u64,
                            format!("record {lsn} where {next_lsn} belongs"),
                        ))
                    }
                    Decoded::Invalid(reason) if !newest => {
                        return Err(corrupt(&path, offset as u64, reason.to_owned()))
                    }
                    // The newest segment's unsynced tail: zeroed, up to its last byte that
                    // is not zero already.
                    torn => {
                        let reason = match torn {
                            Decoded::Invalid(reason) => reason,
                            _ => "a record out of sequence",
                        };
                        let len = rest
                            .iter()
                            .rposition(|&b| b != 0)
                            .map_or(0, |last| last + 1);
                        let segment = path.file_name().unwrap_or_default().to_string_lossy();
                        tracing::info!(%segment, offset, bytes = len, reason, "the log ends in a record never synced whole: cut at the last whole record");
                        zero_from(&path, offset as u64, len)?;
                        break;
                    }
                }
            }
            tail_bytes = offset as u64;
        }
        if next_lsn <= checkpoint {
            return Err(corrupt(
                &segment_path(dir, segments[segments.len() - 1]),
                tail_bytes,
                format!(
                    "the log ends at record {} but the checkpoint covers up to {checkpoint}",
                    next_lsn - 1
                ),
            ));
        }
        let newest = segment_path(dir, segments[segments.len() - 1]);
        let file = OpenOptions::new()
            .write(true)
            .open(&newest)
            .map_err(io_at(&newest))?;
        let mut wal = Self {
            dir: dir.to_owned(),
            options,
            segments,
            file,
            file_bytes: tail_bytes,
            pending: Vec::new(),
            next_lsn,
            poisoned: None,
            spare: None,
        };
        wal.prepare_spare();
        Ok(wal)
    }

    /// The LSN the next append gets.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// Adds a record to the next sync and returns its LSN. Nothing is durable, or even written,
    /// before [`Wal::sync`] returns.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, WalError> {
        self.check_usable()?;
        let max = self.options.max_record_bytes;
        if payload.len() > max as usize {
            return Err(WalError::TooLarge {
                bytes: payload.len(),
                max,
            });
        }
        let lsn = self.next_lsn;
        record::encode(&mut self.pending, lsn, payload);
        self.next_lsn += 1;
        Ok(lsn)
    }

    /// Writes every record appended since the last sync as one sequential write and syncs it
    /// (`fdatasync`): when this returns, they survive a crash. Then starts a new segment if the
    /// newest one is full ([`WalOptions::segment_bytes`]; a write that does not fit grows it).
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.check_usable()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let path = self.newest_path();
        let written = self
            .file
            .write_all_at(&self.pending, self.file_bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(source) = written {
            self.poisoned = Some(source.to_string());
            return Err(WalError::Io { path, source });
        }
        self.file_bytes += self.pending.len() as u64;
        self.pending.clear();
        if self.file_bytes >= self.options.segment_bytes {
            self.roll()?;
        }
        Ok(())
    }

    /// Deletes every segment whose records all have LSNs below `lsn` (a checkpoint covers them),
    /// oldest first, and returns how many went. The newest segment always stays.
    pub fn remove_before(&mut self, lsn: u64) -> Result<usize, WalError> {
        let covered = self
            .segments
            .windows(2)
            .take_while(|pair| pair[1] <= lsn)
            .count();
        for first in self.segments.drain(..covered) {
            let path = segment_path(&self.dir, first);
            fs::remove_file(&path).map_err(io_at(&path))?;
        }
        Ok(covered)
    }

    /// Whether a failed write or sync left the log unusable ([`WalError::Poisoned`]).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// How many segment files the log has.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn roll(&mut self) -> Result<(), WalError> {
        let rolled = match self.take_spare() {
            Some(spare) => adopt_spare(&self.dir, &spare, self.next_lsn),
            None => create_segment(&self.dir, self.next_lsn, self.options.segment_bytes),
        }
        .and_then(|path| {
            OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_at(&path))
        });
        self.prepare_spare();
        match rolled {
            Ok(file) => {
                self.file = file;
                self.file_bytes = SEGMENT_HEADER as u64;
                self.segments.push(self.next_lsn);
                Ok(())
            }
            Err(error) => {
                self.poisoned = Some(error.to_string());
                Err(error)
            }
        }
    }

    /// Starts writing the next segment's zeros under [`SPARE_NAME`], if spares are on and
    /// none is being written.
    fn prepare_spare(&mut self) {
        if !self.options.spare_segments || self.spare.is_some() {
            return;
        }
        let path = self.dir.join(SPARE_NAME);
        let bytes = self.options.segment_bytes;
        let spawned = std::thread::Builder::new()
            .name("wal-spare".into())
            .spawn(move || {
                let file = File::create(&path)?;
                write_zeros(&file, 0, bytes)?;
                file.sync_all()
            });
        // Without a thread, the roll writes the segment itself, as without spares.
        self.spare = spawned.ok();
    }

    /// The spare's path once its zeros are written and synced (waiting for them if needed);
    /// `None` when there is none or writing it failed.
    fn take_spare(&mut self) -> Option<PathBuf> {
        let written = self.spare.take()?.join().ok()?;
        written.ok().map(|()| self.dir.join(SPARE_NAME))
    }

    fn check_usable(&self) -> Result<(), WalError> {
        match &self.poisoned {
            Some(reason) => Err(WalError::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    fn newest_path(&self) -> PathBuf {
        segment_path(&self.dir, self.segments[self.segments.len() - 1])
    }
}

/// The first LSNs of the segments in `dir`, in order; deletes `.tmp` files a crash left.
fn list_segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let path = entry.map_err(io_at(dir))?.path();
        let extension = path.extension().and_then(|e| e.to_str());
        if extension == Some(TMP_SUFFIX) {
            fs::remove_file(&path).map_err(io_at(&path))?;
            continue;
        }
        if extension != Some(SEGMENT_SUFFIX) {
            continue;
        }
        let first = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .and_then(|stem| stem.parse::<u64>().ok())
            .ok_or_else(|| corrupt(&path, 0, "not a segment name (its LSN)".into()))?;
        segments.push(first);
    }
    segments.sort_unstable();
    Ok(segments)
}

/// Creates the segment starting at `first`, `bytes` long: its header, then zeros, written
/// under a `.tmp` name, synced, renamed, and the directory synced, so the segment exists
/// whole or not at all.
fn create_segment(dir: &Path, first: u64, bytes: u64) -> Result<PathBuf, WalError> {
    let path = segment_path(dir, first);
    let tmp = path.with_extension(TMP_SUFFIX);
    let header = segment_header(first);
    let mut file = File::create(&tmp).map_err(io_at(&tmp))?;
    file.write_all(&header)
        .and_then(|()| write_zeros(&file, SEGMENT_HEADER as u64, bytes))
        .and_then(|()| file.sync_all())
        .map_err(io_at(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_at(&path))?;
    sync_dir(dir)?;
    Ok(path)
}

/// Makes the spare at `spare` the segment starting at `first`: its header written and synced,
/// then renamed, and the directory synced, so the segment exists whole or not at all.
fn adopt_spare(dir: &Path, spare: &Path, first: u64) -> Result<PathBuf, WalError> {
    let path = segment_path(dir, first);
    let file = OpenOptions::new()
        .write(true)
        .open(spare)
        .map_err(io_at(spare))?;
    file.write_all_at(&segment_header(first), 0)
        .and_then(|()| file.sync_data())
        .map_err(io_at(spare))?;
    fs::rename(spare, &path).map_err(io_at(&path))?;
    sync_dir(dir)?;
    Ok(path)
}

fn segment_header(first: u64) -> Vec<u8> {
    let mut header = Vec::with_capacity(SEGMENT_HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&first.to_le_bytes());
    header
}

/// Writes zeros over `[from, to)` of `file`.
fn write_zeros(file: &File, from: u64, to: u64) -> io::Result<()> {
    const CHUNK: u64 = 1 << 20;
    let zeros = vec![0; CHUNK.min(to.saturating_sub(from)) as usize];
    let mut at = from;
    while at < to {
        let len = CHUNK.min(to - at) as usize;
        file.write_all_at(&zeros[..len], at)?;
        at += len as u64;
    }
    Ok(())
}

fn check_header(path: &Path, bytes: &[u8], first: u64) -> Result<(), WalError> {
    let header = bytes
        .get(..SEGMENT_HEADER)
        .ok_or_else(|| corrupt(path, 0, "a header cut short".into()))?;
    if &header[..8] != MAGIC {
        return Err(corrupt(path, 0, "not a write-ahead log segment".into()));
    }
    if header[8..] != first.to_le_bytes() {
        return Err(corrupt(
            path,
            8,
            "its header names another first record".into(),
        ));
    }
    Ok(())
}

/// Zeroes the `len` bytes of the segment at `path` from `offset`, its torn tail, and syncs
/// them: the next append follows the last whole record, and no torn bytes can be read as
/// records after another crash.
fn zero_from(path: &Path, offset: u64, len: usize) -> Result<(), WalError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_at(path))?;
    write_zeros(&file, offset, offset + len as u64)
        .and_then(|()| file.sync_data())
        .map_err(io_at(path))
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.{SEGMENT_SUFFIX}"))
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_owned(),
        source,
    }
}

fn corrupt(path: &Path, offset: u64, reason: String) -> WalError {
    WalError::Corrupt {
        path: path.to_owned(),
        offset,
        reason,
    }
}

#[cfg(test)]
mod tests;
