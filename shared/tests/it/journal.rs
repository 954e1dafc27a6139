//! Journal: append/replay, torn last records at every byte offset, damage detection, locking.

use std::fs;

use seedship_shared::journal::records::DiskprepRecord;
use seedship_shared::journal::{replay, Journal, JournalError, JournalRecord};
use seedship_shared::manifest::PageRange;

fn progress(i: u64) -> JournalRecord {
    let hash = seedship_shared::manifest::Md5Hash::of(&i.to_le_bytes());
    let ranges = vec![
        PageRange {
            offset: (i - 1) << 22,
            length: 1 << 21,
            hash,
        },
        PageRange {
            offset: ((i - 1) << 22) + (1 << 21),
            length: 1 << 21,
            hash,
        },
    ];
    DiskprepRecord::RangeProgress {
        blob_path: format!("vault/data/{i:06}"),
        part: 0,
        blob_offset: i << 22,
        tar_offset: (i << 22) + 1536,
        ranges,
    }
    .to_record()
}

#[test]
fn records_survive_reopening_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drive.jrn");
    let multi = JournalRecord::new("Note")
        .with("Text", "line one\n\n[BeginValue]\nlast line\n")
        .with("Looks", "[BeginValue]")
        .with("Empty", "")
        .with("Spaces", "  padded  ");
    {
        let (mut j, replay) = Journal::open(&path).unwrap();
        assert_eq!(replay.records.len(), 0);
        j.append(&progress(1)).unwrap();
        j.append(&multi).unwrap();
    }
    let (mut j, replay) = Journal::open(&path).unwrap();
    assert_eq!(replay.records.len(), 3);
    assert_eq!(
        DiskprepRecord::from_record(&replay.records[0]).unwrap(),
        Some(DiskprepRecord::NewJournalFile)
    );
    assert_eq!(replay.records[1].fields, progress(1).fields);
    assert_eq!(replay.records[2], multi);
    j.append(&progress(2)).unwrap();
    drop(j);
    assert_eq!(replay_path(&path).len(), 4);
}

fn replay_path(path: &std::path::Path) -> Vec<JournalRecord> {
    let r = replay(path).unwrap();
    assert_eq!(r.torn_len, 0);
    r.records
}

#[test]
fn a_torn_last_record_is_ignored_and_truncated_at_every_byte_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drive.jrn");
    {
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(&progress(1)).unwrap();
        j.append(&JournalRecord::new("Note").with("Xml", "<a>\n  <b/>\n</a>"))
            .unwrap();
    }
    let full = fs::read(&path).unwrap();
    let before_last = {
        let (mut j, _) = Journal::open(&path).unwrap();
        let len = j.len();
        j.append(&progress(3)).unwrap();
        len as usize
    };
    let with_last = fs::read(&path).unwrap();
    assert_eq!(&with_last[..full.len()], &full[..]);
    let mut cuts = 0;
    for cut in before_last..with_last.len() {
        for zero_fill in [0usize, 700] {
            let mut bytes = with_last[..cut].to_vec();
            bytes.resize(cut + zero_fill, 0);
            fs::write(&path, &bytes).unwrap();
            let r = replay(&path).unwrap();
            assert_eq!(r.records.len(), 3, "cut at {cut}");
            assert_eq!(r.valid_len as usize, before_last);
            assert_eq!(r.torn_len as usize, bytes.len() - before_last, "cut at {cut}");
            if zero_fill > 0 && cut % 8 != 0 {
                continue; // reopening (two fsyncs) with a zero-filled tail: every 8th offset is enough
            }
            let (mut j, r2) = Journal::open(&path).unwrap();
            assert_eq!(r2, r);
            assert_eq!(
                fs::metadata(&path).unwrap().len() as usize,
                before_last,
                "torn tail truncated"
            );
            j.append(&progress(4)).unwrap();
            drop(j);
            let records = replay_path(&path);
            assert_eq!(records.len(), 4);
            assert_eq!(records[3].fields, progress(4).fields);
            cuts += 1;
        }
    }
    assert!(
        cuts > 2 * 150,
        "the last record is {} bytes",
        with_last.len() - before_last
    );
}

#[test]
fn damage_before_the_last_record_is_an_error_naming_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drive.jrn");
    {
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(&progress(1)).unwrap();
        j.append(&progress(2)).unwrap();
    }
    let mut bytes = fs::read(&path).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let at = text.find("BlobOffset").unwrap();
    bytes[at..at + 10].copy_from_slice(b"[Garbage!]");
    fs::write(&path, &bytes).unwrap();
    match replay(&path).unwrap_err() {
        JournalError::Corrupt { offset, line, .. } => {
            assert!(offset as usize > at && line >= 2, "offset {offset} line {line}");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(matches!(Journal::open(&path), Err(JournalError::Corrupt { .. })));
}

#[test]
fn a_second_writer_is_refused_while_the_journal_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drive.jrn");
    let (_j, _) = Journal::open(&path).unwrap();
    assert!(matches!(Journal::open(&path), Err(JournalError::Locked { .. })));
}

#[test]
fn unframeable_values_are_refused() {
    let cases = [
        JournalRecord::new("T").with("K", "a\n[EndValue]\nb"),
        JournalRecord::new("T").with("K", "carriage\rreturn"),
        JournalRecord::new("T").with("Bad:Key", "v"),
        JournalRecord::new("T").with("[Key", "v"),
        JournalRecord::new("Bad]Type"),
    ];
    for r in cases {
        assert!(
            matches!(r.encode(), Err(JournalError::InvalidRecord { .. })),
            "{r:?}"
        );
    }
}
