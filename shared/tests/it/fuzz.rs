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

/// Counts the cases a property ran and prints the total once it reaches [`cases`], so a run with
/// `--show-output` reports how many inputs each parser survived (tests/run does).
macro_rules! tried {
    ($name:literal) => {{
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if n == cases() {
            println!("fuzz {}: {n} cases passed", $name);
        }
    }};
}

/// The first 64 KiB (both header copies) of a freshly formatted LUKS2 image.
fn luks_sample() -> Vec<u8> {
    use seedship_shared::luks::{self, LuksFormat, Pbkdf};
    static SAMPLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SAMPLE
        .get_or_init(|| {
            let f = tempfile::tempfile().unwrap();
            let len = 32u64 << 20;
            f.set_len(len).unwrap();
            let opts = LuksFormat {
                pbkdf: Pbkdf::Pbkdf2 { iterations: 1000 },
                digest_iterations: 1000,
                ..LuksFormat::new("FUZZ-1")
            };
            luks::format(&f, len, b"passphrase", &opts).unwrap();
            let mut head = vec![0u8; 64 << 10];
            std::os::unix::fs::FileExt::read_exact_at(&f, &mut head, 0).unwrap();
            head
        })
        .clone()
}

fn check_luks(bytes: &[u8]) {
    let (result, largest) =
        largest_allocation(|| seedship_shared::luks::LuksHeader::from_bytes(bytes).map(|h| h.label().len()));
    assert!(
        largest <= CAP + 4 * bytes.len(),
        "LUKS2 header reader allocated {largest} bytes"
    );
    if let Err(e) = result {
        assert!(!e.to_string().is_empty());
    }
}

fn job_sample() -> Vec<u8> {
    let v = serde_json::json!({
        "Name": "seed-job", "Location": "West US",
        "Properties": {"StorageAccountName": "acct", "JobType": "Import", "State": "Shipping",
            "BackupDriveManifest": true, "PercentComplete": 10, "CancelRequested": false,
            "ReturnAddress": {"RecipientName": "R", "StreetAddress1": "1 St", "City": "C", "PostalCode": "1",
                "CountryOrRegion": "US", "Phone": "1", "Email": "a@b.c"},
            "DeliveryPackage": {"CarrierName": "FedEx", "TrackingNumber": "1", "DriveCount": 1, "ShipDate": "2026-01-01"}},
        "DriveList": [{"DriveId": "D1", "BitLockerKey": "000000-000000", "ManifestFile": "\\DriveManifest.xml",
            "ManifestHash": "00112233445566778899AABBCCDDEEFF", "State": "Specified", "BytesSucceeded": 5}]
    });
    serde_json::to_vec(&v).unwrap()
}

fn check_api_json(bytes: &[u8]) {
    use seedship_shared::api::{Job, JobSummary};
    let (_, largest) = largest_allocation(|| {
        let job = serde_json::from_slice::<Job>(bytes).map(|j| j.name.len());
        let list = serde_json::from_slice::<Vec<JobSummary>>(bytes).map(|l| l.len());
        (job.is_ok(), list.is_ok())
    });
    assert!(
        largest <= CAP + 4 * bytes.len(),
        "API JSON decoding allocated {largest} bytes"
    );
}

fn publish_settings_sample() -> Vec<u8> {
    br#"<?xml version="1.0" encoding="utf-8"?>
<PublishData><PublishProfile SchemaVersion="2.0" PublishMethod="AzureServiceManagementAPI">
<Subscription ServiceManagementUrl="https://management.core.windows.net" Id="11111111-2222-3333-4444-555555555555" Name="S" ManagementCertificate="MIIKAgEDMIIJvg==" />
</PublishProfile></PublishData>"#
        .to_vec()
}

fn check_publish_settings(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let (result, largest) =
        largest_allocation(|| seedship_shared::publish_settings::PublishSettings::parse(&text).map(|_| ()));
    assert!(
        largest <= CAP + 8 * bytes.len(),
        "publish settings parser allocated {largest} bytes"
    );
    if let Err(e) = result {
        assert!(!e.to_string().is_empty());
    }
}

fn check_repo_object(bytes: &[u8]) {
    use seedship_shared::repo::{decode_index, unframe, Config, KeyFile, Snapshot};
    let (_, largest) = largest_allocation(|| {
        let body = unframe("fuzz", bytes)
            .map(<[u8]>::to_vec)
            .unwrap_or_else(|_| bytes.to_vec());
        let index = decode_index("index/fuzz", &body).map(|(e, i)| e.len() + i.len());
        let config = serde_json::from_slice::<Config>(&body).map(|c| c.id.len());
        let key = serde_json::from_slice::<KeyFile>(&body).map(|k| k.salt.len());
        let snap = serde_json::from_slice::<Snapshot>(&body).map(|s| s.paths.len());
        (index.is_ok(), config.is_ok(), key.is_ok(), snap.is_ok())
    });
    assert!(
        largest <= CAP + 4 * bytes.len(),
        "repository object decoding allocated {largest} bytes"
    );
}

fn repo_samples() -> Vec<Vec<u8>> {
    use seedship_shared::repo::frame;
    let config = br#"{"version":2,"id":"00112233445566778899aabbccddeeff","chunker":{"min_size":524288,"avg_size":1048576,"max_size":8388608},"volume_size":4294967296,"compression_level":1,"cipher":"aes-256-gcm","chunk_id":"blake3-keyed","mac":"00"}"#;
    let key = br#"{"version":1,"kdf":"argon2id","params":{"m_cost":65536,"t_cost":3,"p_cost":1},"salt":"00","wrapped":"00","created":1,"host":"h"}"#;
    vec![frame(config), frame(key)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn tar_reader_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        check_tar(&bytes);
        tried!("tar arbitrary");
    }

    #[test]
    fn tar_reader_survives_mutated_archives(edits in edits()) {
        check_tar(&mutate(&tar_sample(), &edits));
        tried!("tar mutated");
    }

    #[test]
    fn tar_reader_survives_mutated_gnu_archives(edits in edits(), which in any::<bool>()) {
        let name = if which { "tar/gnu-pax.tar" } else { "tar/gnu-gnu.tar" };
        check_tar(&mutate(&std::fs::read(fixture(name)).unwrap(), &edits));
        tried!("tar mutated GNU");
    }

    #[test]
    fn manifest_parser_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        check_manifest(&bytes);
        tried!("manifest arbitrary");
    }

    #[test]
    fn manifest_parser_survives_mutated_manifests(edits in edits(), which in any::<bool>()) {
        let name = if which { "manifest/reference-grammar.xml" } else { "manifest/export-blocklist.xml" };
        check_manifest(&mutate(&std::fs::read(fixture(name)).unwrap(), &edits));
        tried!("manifest mutated");
    }

    #[test]
    fn copylog_parser_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        check_copylog(&bytes);
        tried!("DriveLog arbitrary");
    }

    #[test]
    fn copylog_parser_survives_mutated_logs(edits in edits(), which in 0usize..4) {
        let name = ["verbose.xml", "error.xml", "file-not-found.xml", "export-properties-failed.xml"][which];
        check_copylog(&mutate(&std::fs::read(fixture(&format!("copylog/{name}"))).unwrap(), &edits));
        tried!("DriveLog mutated");
    }

    #[test]
    fn journal_replay_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        check_journal(&bytes);
        tried!("journal arbitrary");
    }

    #[test]
    fn journal_replay_survives_mutated_journals(edits in edits()) {
        check_journal(&mutate(&journal_sample(), &edits));
        tried!("journal mutated");
    }

    #[test]
    fn luks2_header_reader_survives_mutated_headers(edits in edits()) {
        check_luks(&mutate(&luks_sample(), &edits));
        tried!("LUKS2 header mutated");
    }

    #[test]
    fn luks2_header_reader_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..40000)) {
        check_luks(&bytes);
        tried!("LUKS2 header arbitrary");
    }

    #[test]
    fn api_json_survives_arbitrary_and_mutated_answers(bytes in proptest::collection::vec(any::<u8>(), 0..2000), edits in edits()) {
        check_api_json(&bytes);
        check_api_json(&mutate(&job_sample(), &edits));
        tried!("API JSON");
    }

    #[test]
    fn publish_settings_survive_arbitrary_and_mutated_files(bytes in proptest::collection::vec(any::<u8>(), 0..2000), edits in edits()) {
        check_publish_settings(&bytes);
        check_publish_settings(&mutate(&publish_settings_sample(), &edits));
        tried!("publish settings");
    }

    #[test]
    fn repository_objects_survive_arbitrary_and_mutated_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000), edits in edits(), which in any::<bool>()) {
        check_repo_object(&bytes);
        check_repo_object(&mutate(&repo_samples()[usize::from(which)], &edits));
        tried!("repository objects");
    }
}

/// The parsers are fuzzed in a build that panics on integer overflow (`[profile.test] overflow-checks`):
/// a wrapped size or offset fails a property instead of passing unnoticed.
#[test]
fn fuzzing_runs_with_overflow_checks() {
    let wrapped = std::panic::catch_unwind(|| std::hint::black_box(u64::MAX) + std::hint::black_box(1));
    assert!(
        wrapped.is_err(),
        "this test build wraps on overflow; run it with overflow checks on"
    );
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
