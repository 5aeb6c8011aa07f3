use super::*;

fn options() -> WalOptions {
    WalOptions {
        segment_bytes: 1 << 20,
        max_record_bytes: 1 << 16,
        spare_segments: false,
    }
}

/// Segments so small that a few records fill one: the log rolls often.
fn small_segments() -> WalOptions {
    WalOptions {
        segment_bytes: 200,
        ..options()
    }
}

fn payload(lsn: u64) -> Vec<u8> {
    format!("record {lsn} {}", "x".repeat((lsn % 7) as usize)).into_bytes()
}

/// Records as replay hands them over: (LSN, payload).
type Records = Vec<(u64, Vec<u8>)>;

/// Opens the log past `checkpoint` and returns it with what it replayed.
fn reopen(dir: &Path, options: WalOptions, checkpoint: u64) -> Result<(Wal, Records), WalError> {
    let mut replayed = Vec::new();
    let wal = Wal::open(dir, options, checkpoint, |lsn, bytes| {
        replayed.push((lsn, bytes.to_vec()))
    })?;
    Ok((wal, replayed))
}

/// Appends records `from..=to`, each synced on its own.
fn write(wal: &mut Wal, from: u64, to: u64) {
    for lsn in from..=to {
        assert_eq!(wal.append(&payload(lsn)).unwrap(), lsn);
        wal.sync().unwrap();
    }
}

fn expected(from: u64, to: u64) -> Records {
    (from..=to).map(|lsn| (lsn, payload(lsn))).collect()
}

/// Where the records `1..=n` end in a segment that starts with record 1.
fn data_end(n: u64) -> usize {
    SEGMENT_HEADER
        + (1..=n)
            .map(|lsn| payload(lsn).len() + record::HEADER_BYTES)
            .sum::<usize>()
}

fn only_segment(dir: &Path) -> PathBuf {
    let segments = list_segments(dir).unwrap();
    assert_eq!(segments.len(), 1);
    segment_path(dir, segments[0])
}

#[test]
fn synced_records_replay_in_order_past_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, replayed) = reopen(dir.path(), options(), 0).unwrap();
    assert!(replayed.is_empty());
    write(&mut wal, 1, 10);
    drop(wal);
    assert_eq!(reopen(dir.path(), options(), 0).unwrap().1, expected(1, 10));
    let (wal, replayed) = reopen(dir.path(), options(), 6).unwrap();
    assert_eq!(replayed, expected(7, 10));
    assert_eq!(wal.next_lsn(), 11);
}

#[test]
fn records_appended_together_become_durable_with_one_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = reopen(dir.path(), options(), 0).unwrap();
    for lsn in 1..=3 {
        wal.append(&payload(lsn)).unwrap();
    }
    drop(wal);
    // Never synced, so never written: a crash here loses nothing acknowledged.
    assert!(reopen(dir.path(), options(), 0).unwrap().1.is_empty());
    let (mut wal, _) = reopen(dir.path(), options(), 0).unwrap();
    for lsn in 1..=3 {
        wal.append(&payload(lsn)).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    assert_eq!(reopen(dir.path(), options(), 0).unwrap().1, expected(1, 3));
}

#[test]
fn a_new_log_starts_after_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = reopen(dir.path(), options(), 41).unwrap();
    assert_eq!(wal.append(b"first").unwrap(), 42);
}

#[test]
fn a_tail_torn_at_any_byte_is_cut_at_the_last_whole_record_and_appends_follow_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = reopen(dir.path(), options(), 0).unwrap();
    write(&mut wal, 1, 4);
    drop(wal);
    let path = only_segment(dir.path());
    let whole = fs::read(&path).unwrap();
    assert_eq!(whole.len() as u64, options().segment_bytes);
    let (before_last, end) = (data_end(3), data_end(4));
    for torn in before_last..end {
        // The last record reached the disk up to `torn`; garbage follows it, as a write
        // whose later pages were flushed first can leave.
        let mut bytes = whole.clone();
        bytes[torn..end].fill(0xa5);
        fs::write(&path, &bytes).unwrap();
        let (mut wal, replayed) = reopen(dir.path(), options(), 0).unwrap();
        assert_eq!(replayed, expected(1, 3), "torn at byte {torn}");
        let cut = fs::read(&path).unwrap();
        assert_eq!(cut[..before_last], whole[..before_last]);
        assert!(
            cut[before_last..].iter().all(|&b| b == 0),
            "torn at byte {torn}"
        );
        // The record that was torn is written again, whole, where it was.
        write(&mut wal, 4, 4);
        drop(wal);
        assert_eq!(fs::read(&path).unwrap(), whole, "torn at byte {torn}");
    }
}

#[test]
fn a_damaged_last_record_is_cut_like_a_torn_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = reopen(dir.path(), options(), 0).unwrap();
    write(&mut wal, 1, 3);
    drop(wal);
    let path = only_segment(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    bytes[data_end(3) - 2] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    let (wal, replayed) = reopen(dir.path(), options(), 0).unwrap();
    assert_eq!(replayed, expected(1, 2));
    assert_eq!(wal.next_lsn(), 3);
}

#[test]
fn a_torn_length_claiming_gigabytes_is_cut_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = reopen(dir.path(), options(), 0).unwrap();
    write(&mut wal, 1, 2);
    drop(wal);
    let path = only_segment(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let end = data_end(2);
    bytes[end..end + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    bytes[end + 4..end + 34].fill(7);
    fs::write(&path, &bytes).unwrap();
    assert_eq!(reopen(dir.path(), options(), 0).unwrap().1, expected(1, 2));
}

#[test]
fn segments_roll_and_a_checkpoint_deletes_only_the_segments_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let small = small_segments();
    let (mut wal, _) = reopen(dir.path(), small, 0).unwrap();
    write(&mut wal, 1, 40);
    let segments = list_segments(dir.path()).unwrap();
    assert!(segments.len() > 3, "{segments:?}");
    assert_eq!(wal.segment_count(), segments.len());
    drop(wal);
    assert_eq!(reopen(dir.path(), small, 0).unwrap().1, expected(1, 40));

    let (mut wal, _) = reopen(dir.path(), small, 0).unwrap();
    let removed = wal.remove_before(segments[2]).unwrap();
    assert_eq!(removed, 2);
    assert_eq!(list_segments(dir.path()).unwrap(), segments[2..]);
    // Nothing a checkpoint at segments[2] - 1 needs is gone.
    let (_, replayed) = reopen(dir.path(), small, segments[2] - 1).unwrap();
    assert_eq!(replayed, expected(segments[2], 40));
    // The newest segment stays even when everything is covered.
    let (mut wal, _) = reopen(dir.path(), small, 40).unwrap();
    wal.remove_before(u64::MAX).unwrap();
    assert_eq!(wal.segment_count(), 1);
    assert_eq!(wal.append(b"next").unwrap(), 41);
}

#[test]
fn damage_in_an_older_segment_refuses_to_open_rather_than_lose_synced_records() {
    let dir = tempfile::tempdir().unwrap();
    let small = small_segments();
    let (mut wal, _) = reopen(dir.path(), small, 0).unwrap();
    write(&mut wal, 1, 20);
    drop(wal);
    let segments = list_segments(dir.path()).unwrap();
    let oldest = segment_path(dir.path(), segments[0]);
    let mut bytes = fs::read(&oldest).unwrap();
    bytes[SEGMENT_HEADER + 5] ^= 1;
    fs::write(&oldest, &bytes).unwrap();
    let error = reopen(dir.path(), small, 0).unwrap_err();
    assert!(
        matches!(&error, WalError::Corrupt { path, offset, .. } if *path == oldest && *offset == SEGMENT_HEADER as u64),
        "{error}"
    );
}

#[test]
fn a_missing_segment_is_a_gap_not_a_shorter_log() {
    let dir = tempfile::tempdir().unwrap();
    let small = small_segments();
    let (mut wal, _) = reopen(dir.path(), small, 0).unwrap();
    write(&mut wal, 1, 30);
    drop(wal);
    let segments = list_segments(dir.path()).unwrap();
    fs::remove_file(segment_path(dir.path(), segments[1])).unwrap();
    assert!(matches!(
        reopen(dir.path(), small, 0).unwrap_err(),
        WalError::Corrupt { .. }
    ));
    // Nor may a checkpoint ahead of the whole log be taken for an empty log.
    let other = tempfile::tempdir().unwrap();
    let (mut wal, _) = reopen(other.path(), small, 0).unwrap();
    write(&mut wal, 1, 3);
    drop(wal);
    assert!(matches!(
        reopen(other.path(), small, 10).unwrap_err(),
        WalError::Corrupt { .. }
    ));
}

#[test]
fn a_segment_half_created_by_a_crash_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = reopen(dir.path(), options(), 0).unwrap();
    write(&mut wal, 1, 2);
    drop(wal);
    fs::write(
        segment_path(dir.path(), 3).with_extension(TMP_SUFFIX),
        b"TROU",
    )
    .unwrap();
    let (wal, replayed) = reopen(dir.path(), options(), 0).unwrap();
    assert_eq!(replayed, expected(1, 2));
    assert_eq!(wal.next_lsn(), 3);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_record_above_the_bound_is_refused_and_the_log_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = reopen(dir.path(), options(), 0).unwrap();
    let too_big = vec![0; options().max_record_bytes as usize + 1];
    assert!(matches!(
        wal.append(&too_big),
        Err(WalError::TooLarge { .. })
    ));
    assert_eq!(wal.append(b"fits").unwrap(), 1);
}

#[test]
fn segments_rolled_onto_spares_written_ahead_replay_like_any_other() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spares = WalOptions {
        spare_segments: true,
        ..small_segments()
    };
    let (mut wal, replayed) = reopen(dir.path(), spares, 0).expect("open");
    assert!(replayed.is_empty());
    write(&mut wal, 1, 60);
    assert!(wal.segment_count() > 5, "{} segments", wal.segment_count());
    drop(wal);
    // The spare waiting for the next roll is a `.tmp` file: a restart deletes it.
    let (wal, replayed) = reopen(dir.path(), spares, 0).expect("reopen");
    assert_eq!(replayed, expected(1, 60));
    assert!(wal.segment_count() > 5);
}
