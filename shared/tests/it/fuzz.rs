//! Fuzzing the parsers (tar reader, manifest, copy log, journal replay) with proptest: arbitrary bytes and
//! mutations of valid inputs. Every input must give a value or a typed error, never a panic, and no single
//! allocation may exceed a fixed cap plus a small multiple of the input size: a global allocator for this
//! test binary that records, per thread, the largest single allocation since the
//! last reset, so fuzz tests can check that parsers never allocate from a size field they read.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // try_with: the thread-local may already be gone while a thread shuts down.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to the system allocator; only a size is recorded.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` and returns its result with the largest single allocation it made on this thread.
pub fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

use std::path::Path;

use proptest::prelude::*;
use seedship_shared::journal::{parse_journal, JournalRecord};
use seedship_shared::manifest::copylog::DriveLog;
use seedship_shared::manifest::DriveManifest;
use seedship_shared::tar::{EntryHeader, TarReader, TarWriter};

use crate::manifest::fixture;

/// Allocation cap for any input: 1 MiB metadata/tokens plus slack for buffers.
const CAP: usize = 3 << 20;

/// Inputs per fuzz property: 2000 by default (nine properties: 18,000 inputs per run); set
/// `SEEDSHIP_FUZZ_CASES` for a longer campaign.
fn cases() -> u32 {
    std::env::var("SEEDSHIP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// Applies byte edits to a valid input: (position, kind, byte).
fn mutate(base: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut v = base.to_vec();
    for &(pos, kind, byte) in edits {
        if v.is_empty() {
            v.push(byte);
            continue;
        }
        let i = pos % v.len();
        match kind % 5 {
            0 => v[i] = byte,
            1 => v[i] ^= 1 << (byte % 8),
            2 => v.insert(i, byte),
            3 => {
                v.remove(i);
            }
            _ => v.truncate(i),
        }
    }
    v
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8)
}

fn tar_sample() -> Vec<u8> {
    let mut tar = TarWriter::new(Vec::new());
    tar.append(
        &EntryHeader::file(format!("s/{}", "n".repeat(120)), 700, 1),
        &[7u8; 700][..],
    )
    .unwrap();
    tar.append(&EntryHeader::file("s/b", 3, -5), &b"abc"[..]).unwrap();
    tar.finish().unwrap()
}

fn read_tar(bytes: &[u8]) -> Result<u64, String> {
    let mut reader = TarReader::new(bytes);
    let mut total = 0;
    while let Some(mut entry) = reader.next_entry().map_err(|e| e.to_string())? {
        total += std::io::copy(&mut entry, &mut std::io::sink()).map_err(|e| e.to_string())?;
    }
    Ok(total)
}

fn check_tar(bytes: &[u8]) {
    let (result, largest) = largest_allocation(|| read_tar(bytes));
    if let Err(e) = result {
        assert!(!e.is_empty());
    }
    assert!(
        largest <= CAP,
        "tar reader allocated {largest} bytes for a {}-byte input",
        bytes.len()
    );
}

fn check_manifest(bytes: &[u8]) {
    let (result, largest) = largest_allocation(|| DriveManifest::parse(bytes));
    assert!(
        largest <= CAP + 4 * bytes.len(),
        "manifest parser allocated {largest} bytes"
    );
    match result {
        // What parses must write back and parse to the same value.
        Ok(m) => assert_eq!(DriveManifest::parse(&m.to_xml().unwrap()).unwrap(), m),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn check_copylog(bytes: &[u8]) {
    let (result, largest) = largest_allocation(|| DriveLog::parse(bytes));
    assert!(
        largest <= CAP + 4 * bytes.len(),
        "copy-log parser allocated {largest} bytes"
    );
    match result {
        Ok(log) => assert_eq!(DriveLog::parse(&log.to_xml().unwrap()).unwrap(), log),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn check_journal(bytes: &[u8]) {
    let (result, largest) = largest_allocation(|| parse_journal(bytes, Path::new("fuzz.jrn")));
    assert!(
        largest <= CAP + 4 * bytes.len(),
        "journal replay allocated {largest} bytes"
    );
    match result {
        Ok(r) => assert!(r.valid_len + r.torn_len == bytes.len() as u64 && r.valid_len <= bytes.len() as u64),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn journal_sample() -> Vec<u8> {
    let mut out = Vec::new();
    for r in [
        JournalRecord::new("NewJournalFile").with("VocabularyVersion", "2013-02-01"),
        JournalRecord::new("ActivityRecord")
            .with("DriveState", "<Drive>\n<DriveId>x</DriveId>\n</Drive>")
            .with("K", "v"),
    ] {
        out.extend(r.encode().unwrap());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn tar_reader_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        check_tar(&bytes);
    }

    #[test]
    fn tar_reader_survives_mutated_archives(edits in edits()) {
        check_tar(&mutate(&tar_sample(), &edits));
    }

    #[test]
    fn tar_reader_survives_mutated_gnu_archives(edits in edits(), which in any::<bool>()) {
        let name = if which { "tar/gnu-pax.tar" } else { "tar/gnu-gnu.tar" };
        check_tar(&mutate(&std::fs::read(fixture(name)).unwrap(), &edits));
    }

    #[test]
    fn manifest_parser_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        check_manifest(&bytes);
    }

    #[test]
    fn manifest_parser_survives_mutated_manifests(edits in edits(), which in any::<bool>()) {
        let name = if which { "manifest/reference-grammar.xml" } else { "manifest/export-blocklist.xml" };
        check_manifest(&mutate(&std::fs::read(fixture(name)).unwrap(), &edits));
    }

    #[test]
    fn copylog_parser_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        check_copylog(&bytes);
    }

    #[test]
    fn copylog_parser_survives_mutated_logs(edits in edits(), which in 0usize..4) {
        let name = ["verbose.xml", "error.xml", "file-not-found.xml", "export-properties-failed.xml"][which];
        check_copylog(&mutate(&std::fs::read(fixture(&format!("copylog/{name}"))).unwrap(), &edits));
    }

    #[test]
    fn journal_replay_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        check_journal(&bytes);
    }

    #[test]
    fn journal_replay_survives_mutated_journals(edits in edits()) {
        check_journal(&mutate(&journal_sample(), &edits));
    }
}

/// Hostile size fields: a pax header and a GNU long name claiming huge sizes are refused before allocation.
#[test]
fn tar_reader_refuses_huge_metadata_without_allocating_it() {
    for (typeflag, size) in [
        (b'x', 1u64 << 40),
        (b'x', 0o777_7777_7777),
        (b'L', 512 << 20),
        (b'g', (1 << 20) + 1),
    ] {
        let mut block = [0u8; 512];
        block[..4].copy_from_slice(b"evil");
        if size > 0o777_7777_7777 {
            // GNU base-256: high bit set, big-endian value
            block[124] = 0x80;
            block[128..136].copy_from_slice(&size.to_be_bytes());
        } else {
            block[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        }
        block[156] = typeflag;
        block[257..263].copy_from_slice(b"ustar\0");
        let sum: u32 = block
            .iter()
            .enumerate()
            .map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u32::from(b) })
            .sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let (result, largest) = largest_allocation(|| read_tar(&block));
        let err = result.unwrap_err();
        assert!(
            err.contains("exceeds the 1048576-byte limit") && err.contains("evil"),
            "{err}"
        );
        assert!(largest < 64 << 10, "allocated {largest}");
    }
}
