//! DriveLog copy logs: the documented samples parse; written logs round-trip; bad status codes are named.

use std::fs;

use proptest::prelude::*;
use seedship_shared::manifest::copylog::{
    log_blob_name, BlobStatus, DispositionStatus, DriveLog, DriveStatus, FileStatus, LogBlob, LogDisposition,
    LogFileStatus, LogKind, LogRange, LogRanges, RangeStatus, LOG_VERSION,
};
use seedship_shared::manifest::{FileRef, ImportDisposition, ManifestError, Md5Hash};

use crate::manifest::fixture;

fn sample(name: &str) -> DriveLog {
    DriveLog::parse(&fs::read(fixture(&format!("copylog/{name}"))).unwrap()).unwrap()
}

#[test]
fn documented_samples_parse() {
    let verbose = sample("verbose.xml");
    assert_eq!(
        (verbose.drive_id.as_str(), verbose.status),
        ("WD-WMATV123456", DriveStatus::CompletedWithErrors)
    );
    assert_eq!(verbose.blobs.len(), 2);
    let desert = &verbose.blobs[0];
    assert_eq!(
        desert.disposition,
        Some(LogDisposition {
            requested: ImportDisposition::Overwrite,
            status: DispositionStatus::Created
        })
    );
    let Some(LogRanges::Blocks(blocks)) = &desert.ranges else {
        panic!("blocks expected")
    };
    assert_eq!(
        blocks[0].hash.unwrap().to_string(),
        "9C8AE14A55241F98533C4D80D85CDC68"
    );
    assert_eq!(
        desert
            .metadata
            .as_ref()
            .unwrap()
            .global_path
            .as_ref()
            .unwrap()
            .path,
        "\\Users\\bob\\Pictures\\wild\\metadata.xml"
    );
    let koala = &verbose.blobs[1];
    let failed: Vec<_> = koala.failed_ranges().map(|r| (r.offset, r.status)).collect();
    assert_eq!(failed, vec![(65536, RangeStatus::Corrupted)]);
    assert_eq!(koala.properties.as_ref().unwrap().status, FileStatus::Completed);

    let error = sample("error.xml");
    assert_eq!(error.blobs[0].status, BlobStatus::CompletedWithErrors);

    let not_found = sample("file-not-found.xml");
    assert_eq!(not_found.blobs[0].status, BlobStatus::FileNotFound);
    assert_eq!(not_found.blobs[0].failed_ranges().count(), 5);

    let export = sample("export-properties-failed.xml");
    let canyon = &export.blobs[0];
    assert_eq!(canyon.last_modified.as_deref(), Some("2012-09-18T23:47:08Z"));
    assert_eq!(canyon.ranges, Some(LogRanges::Blocks(vec![])));
    assert_eq!(
        canyon.properties,
        Some(LogFileStatus {
            status: FileStatus::Failed,
            global_path: None,
            path: None
        })
    );

    for log in [verbose, error, not_found, export] {
        assert_eq!(DriveLog::parse(&log.to_xml().unwrap()).unwrap(), log);
    }
}

#[test]
fn unknown_status_codes_are_named_errors() {
    let xml = fs::read_to_string(fixture("copylog/error.xml")).unwrap();
    for (from, to, needle) in [
        ("Status=\"Corrupted\"", "Status=\"Broken\"", "RangeStatus"),
        (
            "<Status>CompletedWithErrors</Status>",
            "<Status>Done</Status>",
            "DriveStatus",
        ),
        (
            "Blob Status=\"CompletedWithErrors\"",
            "Blob",
            "no Status attribute",
        ),
        ("<Length>163840</Length>", "", "missing <Length>"),
    ] {
        let err = DriveLog::parse(xml.replacen(from, to, 1).as_bytes()).unwrap_err();
        assert!(
            matches!(
                err,
                ManifestError::Value { .. } | ManifestError::Structure { .. } | ManifestError::Blob { .. }
            ),
            "{err}"
        );
        assert!(err.to_string().contains(needle), "{err} should mention {needle}");
    }
}

/// What the emulator's data centre writes: a renamed blob, a corrupted range, the error log taken from the
/// verbose one, stored as a page blob padded with spaces.
#[test]
fn emulator_logs_round_trip_padded_and_the_error_log_keeps_only_failures() {
    let range = |offset, status| LogRange {
        offset,
        length: 4096,
        id: None,
        hash: Some(Md5Hash([0xAB; 16])),
        status,
    };
    let blob = |name: &str, status, ranges| LogBlob {
        status,
        blob_path: format!("seed/{name}"),
        imported_blob_path: None,
        file_path: format!("\\s\\seed\\{name}"),
        snapshot: None,
        length: 8192,
        last_modified: None,
        disposition: Some(LogDisposition {
            requested: ImportDisposition::Rename,
            status: DispositionStatus::Created,
        }),
        ranges: Some(LogRanges::Pages(ranges)),
        metadata: None,
        properties: None,
    };
    let mut renamed = blob(
        "a <&> b.img",
        BlobStatus::Completed,
        vec![
            range(0, RangeStatus::Completed),
            range(4096, RangeStatus::Completed),
        ],
    );
    renamed.imported_blob_path = Some("seed/a <&> b (2).img".into());
    renamed.disposition.as_mut().unwrap().status = DispositionStatus::Renamed;
    let damaged = blob(
        "d.img",
        BlobStatus::CompletedWithErrors,
        vec![
            range(0, RangeStatus::Completed),
            range(4096, RangeStatus::Corrupted),
        ],
    );
    let mut verbose = DriveLog::new("SEED-1", DriveStatus::CompletedWithErrors);
    verbose.blobs = vec![renamed, damaged.clone()];

    let mut text = verbose.to_xml().unwrap();
    assert!(String::from_utf8_lossy(&text)
        .contains("<ImportedBlobPath>seed/a &lt;&amp;&gt; b (2).img</ImportedBlobPath>"));
    text.resize(text.len().div_ceil(512) * 512, b' ');
    assert_eq!(DriveLog::parse(&text).unwrap(), verbose);

    let error = verbose.error_log();
    assert_eq!(
        (error.status, error.blobs.clone()),
        (DriveStatus::CompletedWithErrors, vec![damaged])
    );
    assert_eq!(
        log_blob_name("job1", "SEED-1", "20261122-063000", LogKind::Verbose),
        "waies/job1_SEED-1_20261122-063000_verbose.xml"
    );
    assert_eq!(LogKind::Error.as_str(), "error");
    assert_eq!(RangeStatus::Corrupted.to_string(), "Corrupted");
}

#[test]
fn malformed_and_cut_logs_are_refused_without_panicking() {
    let good = fs::read(fixture("copylog/verbose.xml")).unwrap();
    for bad in [
        "",
        "<DriveLog>",
        "<DriveLog Version=\"1\"><Status>Completed</Status><Other/></DriveLog>",
        "<DriveLog Version=\"1\"><DriveId>d</DriveId><Blob Status=\"Completed\"><Length>ten</Length></Blob><Status>Completed</Status></DriveLog>",
        "<DriveLog Version=\"1\"><DriveId>d</DriveId></DriveLog>",
    ] {
        assert!(DriveLog::parse(bad.as_bytes()).is_err(), "{bad}");
    }
    // offsets and lengths above i64::MAX are refused, so an offset plus a length never wraps
    let text = String::from_utf8(good.clone()).unwrap();
    let at = text.find("Offset=\"").expect("the sample has a range") + "Offset=\"".len();
    let end = at + text[at..].find('"').unwrap();
    let huge = format!("{}{}{}", &text[..at], u64::MAX - 511, &text[end..]);
    let err = DriveLog::parse(huge.as_bytes()).unwrap_err().to_string();
    assert!(err.contains("Offset") && err.contains("2^63-1"), "{err}");
    for cut in (0..good.len()).step_by(37) {
        assert!(DriveLog::parse(&good[..cut]).is_err(), "cut at {cut}");
    }
}

fn arb_status<T: Copy + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(all)
}

fn arb_log_blob() -> impl Strategy<Value = LogBlob> {
    (
        arb_status(BlobStatus::ALL),
        "[a-z&<>\"' \u{e9}]{1,20}",
        proptest::collection::vec(
            (
                0u64..1 << 40,
                0u64..1 << 22,
                proptest::option::of(any::<[u8; 16]>()),
                arb_status(RangeStatus::ALL),
            ),
            0..5,
        ),
        any::<bool>(),
        proptest::option::of((arb_status(FileStatus::ALL), any::<[u8; 16]>())),
        proptest::option::of(arb_status(DispositionStatus::ALL)),
    )
        .prop_map(|(status, name, ranges, pages, meta, disp)| {
            let ranges: Vec<LogRange> = ranges
                .into_iter()
                .map(|(offset, length, hash, status)| LogRange {
                    offset,
                    length,
                    id: (!pages).then(|| "AAAAAA==".to_string()),
                    hash: hash.map(Md5Hash),
                    status,
                })
                .collect();
            LogBlob {
                status,
                blob_path: format!("c/{name}"),
                imported_blob_path: disp
                    .filter(|d| *d == DispositionStatus::Renamed)
                    .map(|_| format!("c/{name} (2)")),
                file_path: format!("\\s\\{name}"),
                snapshot: None,
                length: 1 << 30,
                last_modified: None,
                disposition: disp.map(|status| LogDisposition {
                    requested: ImportDisposition::Rename,
                    status,
                }),
                ranges: Some(if pages {
                    LogRanges::Pages(ranges)
                } else {
                    LogRanges::Blocks(ranges)
                }),
                metadata: meta.map(|(status, h)| LogFileStatus {
                    status,
                    global_path: None,
                    path: Some(FileRef {
                        path: name.clone(),
                        hash: Md5Hash(h),
                    }),
                }),
                properties: None,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn copy_logs_round_trip(blobs in proptest::collection::vec(arb_log_blob(), 0..4), status in arb_status(DriveStatus::ALL)) {
        let log = DriveLog { version: LOG_VERSION.into(), drive_id: "IMG-7".into(), blobs, status };
        prop_assert_eq!(DriveLog::parse(&log.to_xml().unwrap()).unwrap(), log);
    }
}
