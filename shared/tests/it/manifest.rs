//! Drive manifest: round trips, the reference samples, validation errors, MD5 agreement with md5sum.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use proptest::prelude::*;
use seedship_shared::manifest::ranges::page_ranges_of;
use seedship_shared::manifest::{
    manifest_hash, read_manifest, BlobList, BlobListHeader, BlobPart, Credential, DriveFilePath, DriveHeader,
    DriveManifest, FileRef, ImportDisposition, ManifestBlob, ManifestError, ManifestItem, Md5Hash, PageRange,
    RangeList, MAX_RANGE_LEN,
};

use crate::tar::pseudo_random;

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn md5sum(path: &std::path::Path) -> String {
    let out = Command::new("md5sum")
        .arg(path)
        .output()
        .expect("md5sum is installed");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_uppercase()
}

#[test]
fn reference_grammar_sample_parses_with_every_optional_element() {
    let m = DriveManifest::parse(&fs::read(fixture("manifest/reference-grammar.xml")).unwrap()).unwrap();
    assert_eq!(m.header.version, "2014-11-01");
    assert_eq!(m.header.drive_id, "9WM35C2V");
    assert!(matches!(
        m.header.credential,
        Some(Credential::StorageAccountKey(_))
    ));
    assert_eq!(
        format!("{:?}", m.header.credential),
        "Some(StorageAccountKey(<redacted>))"
    );
    assert_eq!(m.blob_lists.len(), 2);
    let first = &m.blob_lists[0];
    assert_eq!(first.header.id.as_deref(), Some("session#1-0"));
    assert_eq!(
        first.header.metadata.as_ref().unwrap().path,
        "\\session#1\\global.metadata"
    );
    let koala = &first.blobs[0];
    assert_eq!(koala.client_data.as_deref(), Some("free text & more"));
    assert_eq!(koala.disposition, Some(ImportDisposition::Overwrite));
    let RangeList::Pages(ranges) = &koala.ranges else {
        panic!("page blob expected")
    };
    assert_eq!(
        ranges[2],
        PageRange {
            offset: 131072,
            length: 4096,
            hash: "9BA552E1C3EEAFFC91B42B979900A996".parse().unwrap()
        }
    );
    let root = &m.blob_lists[1].blobs[0];
    assert_eq!(root.blob_path, "$root/disk.vhd");
    assert_eq!(root.disposition, None);
    // Re-written, the manifest parses to the same value.
    assert_eq!(DriveManifest::parse(&m.to_xml().unwrap()).unwrap(), m);
}

#[test]
fn export_block_list_sample_parses() {
    let m = DriveManifest::parse(&fs::read(fixture("manifest/export-blocklist.xml")).unwrap()).unwrap();
    assert_eq!(m.header.version, "2011-10-01");
    let RangeList::Blocks(blocks) = &m.blob_lists[0].blobs[0].ranges else {
        panic!("block list expected")
    };
    assert_eq!(blocks[1].id.as_deref(), Some("AQAAAA=="));
    assert_eq!(blocks[1].offset, 2721);
}

fn sample_manifest() -> DriveManifest {
    let paths = DriveFilePath::new("seed-1", "vault/data/00 & <odd> \"name\"'s \u{e9}.vol").unwrap();
    let mut blob = ManifestBlob::page_blob(
        "vault/data/00 & <odd> \"name\"'s \u{e9}.vol",
        paths.file_path,
        3 * MAX_RANGE_LEN,
        vec![
            PageRange {
                offset: 0,
                length: 512,
                hash: Md5Hash::of(b"a"),
            },
            PageRange {
                offset: MAX_RANGE_LEN,
                length: MAX_RANGE_LEN,
                hash: Md5Hash::of(b"b"),
            },
        ],
    );
    blob.part = Some(BlobPart {
        index: 1,
        start: 0,
        end: 2 * MAX_RANGE_LEN,
    });
    DriveManifest {
        header: DriveHeader {
            version: "2014-11-01".into(),
            drive_id: "IMG-0001".into(),
            credential: Some(Credential::StorageAccountKey("a2V5".into())),
            client_creator: Some("seedship".into()),
        },
        blob_lists: vec![BlobList {
            header: BlobListHeader::default(),
            blobs: vec![blob],
        }],
    }
}

#[test]
fn part_files_and_odd_names_round_trip_and_stream() {
    let m = sample_manifest();
    let xml = m.to_xml().unwrap();
    let text = String::from_utf8(xml.clone()).unwrap();
    assert!(
        text.contains("<ClientData>seedship-part:index=1;start=0;end=8388608</ClientData>"),
        "{text}"
    );
    assert!(
        text.contains("&amp; &lt;odd&gt; &quot;name&quot;&apos;s \u{e9}"),
        "{text}"
    );
    assert_eq!(DriveManifest::parse(&xml).unwrap(), m);
    let mut items = Vec::new();
    read_manifest(&xml[..], |i| {
        items.push(i);
        Ok(())
    })
    .unwrap();
    assert!(matches!(
        items.as_slice(),
        [
            ManifestItem::Drive(_),
            ManifestItem::BlobList(_),
            ManifestItem::Blob(_),
            ManifestItem::EndBlobList
        ]
    ));
    assert_eq!(
        DriveFilePath::tar_path_of(&m.blob_lists[0].blobs[0].file_path),
        "seed-1/vault/data/00 & <odd> \"name\"'s \u{e9}.vol"
    );
}

fn expect_blob_error(xml: &str, needle: &str) {
    match DriveManifest::parse(xml.as_bytes()) {
        Err(
            e @ (ManifestError::Blob { .. } | ManifestError::Value { .. } | ManifestError::Structure { .. }),
        ) => {
            assert!(
                e.to_string().contains(needle),
                "error {e} should mention {needle:?}"
            );
        }
        other => panic!("expected a named error mentioning {needle:?}, got {other:?}"),
    }
}

fn with_range(range: &str) -> String {
    let xml = String::from_utf8(sample_manifest().to_xml().unwrap()).unwrap();
    let start = xml.find("<PageRange ").unwrap();
    let end = xml[start..].find("/>").unwrap() + start + 2;
    format!("{}{range}{}", &xml[..start], &xml[end..])
}

#[test]
fn invalid_ranges_are_named_errors() {
    let h = "0CC175B9C0F1B6A831C399E269772661";
    expect_blob_error(
        &with_range(&format!(r#"<PageRange Offset="100" Length="512" Hash="{h}"/>"#)),
        "not 512-aligned",
    );
    expect_blob_error(
        &with_range(&format!(r#"<PageRange Offset="0" Length="8388608" Hash="{h}"/>"#)),
        "must be 512..=4194304",
    );
    expect_blob_error(
        &with_range(r#"<PageRange Offset="0" Length="512" Hash="XYZ"/>"#),
        "32 hexadecimal digits",
    );
    expect_blob_error(
        &with_range(&format!(
            r#"<PageRange Offset="4194304" Length="512" Hash="{h}"/>"#
        )),
        "overlaps or is out of order",
    );
    expect_blob_error(
        &with_range(&format!(r#"<PageRange Offset="-1" Length="512" Hash="{h}"/>"#)),
        "PageRange@Offset",
    );
    expect_blob_error(
        &with_range(&format!(r#"<PageRange Offset="0" Hash="{h}"/>"#)),
        "no Length attribute",
    );
    // beyond the part end (the part holds [0, 8 MiB) of a 12 MiB blob)
    let xml = String::from_utf8(sample_manifest().to_xml().unwrap())
        .unwrap()
        .replace(r#"Offset="4194304""#, r#"Offset="8388608""#);
    expect_blob_error(&xml, "beyond 8388608");
    let xml = String::from_utf8(sample_manifest().to_xml().unwrap())
        .unwrap()
        .replace("<Length>12582912</Length>", "<Length>12582913</Length>");
    expect_blob_error(&xml, "not a multiple of 512");
    let xml = String::from_utf8(sample_manifest().to_xml().unwrap())
        .unwrap()
        .replace("<ImportDisposition>rename", "<ImportDisposition>Rename");
    expect_blob_error(&xml, "case-sensitive");
    let xml = String::from_utf8(sample_manifest().to_xml().unwrap())
        .unwrap()
        .replace("<DriveId>IMG-0001</DriveId>", "");
    expect_blob_error(&xml, "DriveId");
}

#[test]
fn writer_refuses_what_xml_cannot_carry_and_never_echoes_the_key() {
    let mut m = sample_manifest();
    m.blob_lists[0].blobs[0].blob_path = "vault/bad\u{1}name".into();
    let err = m.to_xml().unwrap_err();
    assert!(err.to_string().contains("U+0001"), "{err}");
    let mut m = sample_manifest();
    m.header.credential = Some(Credential::StorageAccountKey("secret\u{1}".into()));
    let err = m.to_xml().unwrap_err().to_string();
    assert!(!err.contains("secret"), "{err}");
}

#[test]
fn range_hashes_and_manifest_hash_agree_with_md5sum() {
    let dir = tempfile::tempdir().unwrap();
    let m = MAX_RANGE_LEN as usize;
    let mut blob = vec![0u8; 2 * m + 8192];
    blob[..m].copy_from_slice(&pseudo_random(m, 11));
    blob[2 * m..2 * m + 4096].copy_from_slice(&pseudo_random(4096, 12));
    let ranges = page_ranges_of(&blob[..], 0, blob.len() as u64, 2).unwrap();
    // the all-zero middle window is skipped; the tail window (8 KiB, half zero) is kept whole
    assert_eq!(
        ranges.iter().map(|r| (r.offset, r.length)).collect::<Vec<_>>(),
        vec![(0, m as u64), (2 * m as u64, 8192)]
    );
    for r in &ranges {
        let f = dir.path().join(format!("range-{}", r.offset));
        fs::write(&f, &blob[r.offset as usize..(r.offset + r.length) as usize]).unwrap();
        assert_eq!(r.hash.to_string(), md5sum(&f));
    }
    let xml = sample_manifest().to_xml().unwrap();
    let f = dir.path().join("DriveManifest.xml");
    fs::write(&f, &xml).unwrap();
    assert_eq!(manifest_hash(&xml), md5sum(&f));
}

fn arb_text() -> impl Strategy<Value = String> {
    // printable, XML specials, non-ASCII, CR/LF/TAB, astral plane; not leading/trailing-blank-only issues
    proptest::string::string_regex("[a-zA-Z0-9 &<>\"'\\r\\n\\t\u{e9}\u{65e5}\u{1F600}._-]{1,40}").unwrap()
}

fn arb_blob() -> impl Strategy<Value = ManifestBlob> {
    (
        arb_text(),
        arb_text(),
        proptest::collection::vec((0u64..4, 1u64..=8192, any::<[u8; 16]>()), 0..6),
        0u64..3,
        any::<bool>(),
    )
        .prop_map(|(name, file, gaps, extra, part)| {
            let mut at = 0;
            let ranges: Vec<PageRange> = gaps
                .into_iter()
                .map(|(gap, len, h)| {
                    let offset = at + gap * 512;
                    let length = len * 512;
                    at = offset + length;
                    PageRange {
                        offset,
                        length,
                        hash: Md5Hash(h),
                    }
                })
                .collect();
            let length = at + extra * 512 + 512;
            let mut b = ManifestBlob::page_blob(format!("c/{name}"), format!("\\s\\{file}"), length, ranges);
            if part {
                b.part = Some(BlobPart {
                    index: 2,
                    start: 0,
                    end: length,
                });
            } else {
                b.client_data = Some(name);
            }
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn manifests_round_trip(
        blobs in proptest::collection::vec(arb_blob(), 0..4),
        drive_id in "[A-Z0-9-]{1,20}",
        list_id in proptest::option::of(arb_text()),
        meta in proptest::option::of((arb_text(), any::<[u8; 16]>())),
        sas in any::<bool>(),
    ) {
        let credential = if sas { Credential::ContainerSas("c?sv=x&sig=y".into()) } else { Credential::StorageAccountKey("k==".into()) };
        let m = DriveManifest {
            header: DriveHeader { version: "2014-11-01".into(), drive_id, credential: Some(credential), client_creator: None },
            blob_lists: vec![BlobList {
                header: BlobListHeader { id: list_id, metadata: meta.map(|(path, h)| FileRef { path, hash: Md5Hash(h) }), properties: None },
                blobs,
            }],
        };
        let xml = m.to_xml().unwrap();
        prop_assert_eq!(DriveManifest::parse(&xml).unwrap(), m);
    }
}

/// A whole drive payload as diskprep writes it (a whole blob and a part of a split blob, hashed while copied
/// into the tar stream, manifest last) read back as the data centre does: tar entries, manifest, range checks.
#[test]
fn drive_payload_round_trip_through_tar_manifest_and_verification() {
    use seedship_shared::manifest::copylog::{verify_blob_file, RangeStatus};
    use seedship_shared::manifest::ranges::copy_and_hash;
    use seedship_shared::tar::{EntryHeader, TarReader, TarWriter};
    use std::io::Read;

    let m = MAX_RANGE_LEN;
    let mut whole = pseudo_random(2 * m as usize + 1024, 21);
    whole[m as usize..2 * m as usize].fill(0); // a zero window, omitted from the manifest
    let split = pseudo_random(3 * m as usize, 22);
    let (part_start, part_end) = (m, 3 * m); // this drive holds the second and third windows

    let mut tar = TarWriter::new(Vec::new());
    let mut entries = Vec::new();
    for (blob_path, bytes, part) in [
        ("vault/data/000001", &whole, None),
        ("vault/data/000002", &split, Some((part_start, part_end))),
    ] {
        let paths = DriveFilePath::new("seed-1", blob_path).unwrap();
        let (start, end) = part.unwrap_or((0, bytes.len() as u64));
        let mut entry = tar
            .begin_entry(&EntryHeader::file(paths.tar_path, end - start, 1_700_000_000))
            .unwrap();
        let ranges = copy_and_hash(
            &bytes[start as usize..end as usize],
            &mut entry,
            start,
            end,
            2,
            |_, _| Ok(()),
        )
        .unwrap();
        entry.finish().unwrap();
        let mut blob = ManifestBlob::page_blob(blob_path, paths.file_path, bytes.len() as u64, ranges);
        blob.part = part.map(|(start, end)| BlobPart { index: 2, start, end });
        entries.push(blob);
    }
    let manifest = DriveManifest {
        header: DriveHeader {
            version: "2014-11-01".into(),
            drive_id: "IMG-42".into(),
            credential: None,
            client_creator: Some("test".into()),
        },
        blob_lists: vec![BlobList {
            header: BlobListHeader {
                id: Some("seed-1".into()),
                ..Default::default()
            },
            blobs: entries,
        }],
    };
    let xml = manifest.to_xml().unwrap();
    tar.append(
        &EntryHeader::file("DriveManifest.xml", xml.len() as u64, 1_700_000_000),
        &xml[..],
    )
    .unwrap();
    let payload = tar.finish().unwrap();

    // Data centre side: find the manifest, check its hash, then verify every blob file.
    let mut files = std::collections::HashMap::new();
    let mut reader = TarReader::new(&payload[..]);
    while let Some(mut e) = reader.next_entry().unwrap() {
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        files.insert(e.info.path.clone(), data);
    }
    let stored = &files["DriveManifest.xml"];
    assert_eq!(manifest_hash(stored), manifest_hash(&xml));
    let parsed = DriveManifest::parse(stored).unwrap();
    let blobs = &parsed.blob_lists[0].blobs;
    let RangeList::Pages(whole_ranges) = &blobs[0].ranges else {
        panic!()
    };
    assert_eq!(
        whole_ranges.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![0, 2 * m]
    );
    let mut rebuilt = vec![0u8; split.len()];
    for blob in blobs {
        let file = &files[&DriveFilePath::tar_path_of(&blob.file_path)];
        let log = verify_blob_file(&file[..], blob, 2, |r, bytes| {
            if blob.part.is_some() {
                rebuilt[r.offset as usize..(r.offset + r.length) as usize].copy_from_slice(bytes);
            }
            Ok(())
        })
        .unwrap();
        assert!(
            log.iter().all(|r| r.status == RangeStatus::Completed),
            "{}",
            blob.blob_path
        );
    }
    assert_eq!(&rebuilt[part_start as usize..], &split[part_start as usize..]);
}
