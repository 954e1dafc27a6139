//! The typed records diskprep writes (the vocabulary is documented in docs/journal.md).

use super::{JournalError, JournalRecord};
use crate::manifest::xml::{escape, Ev, XmlPull};
use crate::manifest::PageRange;

/// WAImportExport's vocabulary version, written in `NewJournalFile` as the original tool does.
pub const VOCABULARY_VERSION: &str = "2013-02-01";
/// seedship's own record vocabulary, also written in `NewJournalFile`.
pub const SEEDSHIP_VOCABULARY: &str = "seedship-journal-1";
/// What stands in for the drive's recovery key in `DriveInfo` (the key itself is never journaled).
pub const MASKED_KEY: &str = "*******";

/// The records of one drive's copy, in the order they usually appear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskprepRecord {
    /// First record of every journal.
    NewJournalFile,
    /// A copy session begins on the drive (first session or a resumed one).
    SessionStart {
        session_id: String,
        job_name: String,
        drive_id: String,
        tar_offset: u64,
    },
    /// Blob `blob_path` (part `part`, 0 when not split) is copied and hashed up to blob offset `blob_offset`
    /// (exclusive, a range boundary); the payload's tar stream is at `tar_offset` after it. `ranges` are the
    /// non-zero page ranges finished since the previous `RangeProgress` of this blob (so a resume needs no
    /// re-hashing); written as the `Ranges` value, one `offset length hash` line per range.
    RangeProgress {
        blob_path: String,
        part: u32,
        blob_offset: u64,
        tar_offset: u64,
        ranges: Vec<PageRange>,
    },
    /// The drive file of `blob_path` is complete and padded; `ranges` page ranges are in its manifest entry.
    BlobDone {
        blob_path: String,
        part: u32,
        ranges: u64,
        tar_offset: u64,
    },
    /// The manifest is written: drive id and manifest file/hash, in WAImportExport's `DriveInfo` shape.
    DriveInfo {
        drive_id: String,
        manifest_file: String,
        manifest_hash: String,
    },
    /// The session finished; the tar stream ends at `tar_offset` (end-of-archive marker included).
    SessionDone { session_id: String, tar_offset: u64 },
}

impl DiskprepRecord {
    /// The generic record, stamped now.
    pub fn to_record(&self) -> JournalRecord {
        match self {
            Self::NewJournalFile => JournalRecord::new("NewJournalFile")
                .with("VocabularyVersion", VOCABULARY_VERSION)
                .with("SeedshipVocabulary", SEEDSHIP_VOCABULARY),
            Self::SessionStart {
                session_id,
                job_name,
                drive_id,
                tar_offset,
            } => JournalRecord::new("SessionStart")
                .with("SessionId", session_id)
                .with("JobName", job_name)
                .with("DriveId", drive_id)
                .with("TarOffset", tar_offset.to_string()),
            Self::RangeProgress {
                blob_path,
                part,
                blob_offset,
                tar_offset,
                ranges,
            } => JournalRecord::new("RangeProgress")
                .with("BlobPath", blob_path)
                .with("Part", part.to_string())
                .with("BlobOffset", blob_offset.to_string())
                .with("TarOffset", tar_offset.to_string())
                .with("Ranges", encode_ranges(ranges)),
            Self::BlobDone {
                blob_path,
                part,
                ranges,
                tar_offset,
            } => JournalRecord::new("BlobDone")
                .with("BlobPath", blob_path)
                .with("Part", part.to_string())
                .with("Ranges", ranges.to_string())
                .with("TarOffset", tar_offset.to_string()),
            Self::DriveInfo {
                drive_id,
                manifest_file,
                manifest_hash,
            } => JournalRecord::new("ActivityRecord")
                .with("ActivityId", "DriveInfo")
                .with(
                    "DriveState",
                    drive_state_xml(drive_id, manifest_file, manifest_hash),
                )
                .with("SaveCommandOutput", "Completed"),
            Self::SessionDone {
                session_id,
                tar_offset,
            } => JournalRecord::new("SessionDone")
                .with("SessionId", session_id)
                .with("TarOffset", tar_offset.to_string()),
        }
    }

    /// The typed record, `None` for record types diskprep does not interpret (other `ActivityRecord`s,
    /// records of later vocabularies), or an error naming the malformed field.
    pub fn from_record(r: &JournalRecord) -> Result<Option<Self>, JournalError> {
        let s = |key: &str| field(r, key).map(str::to_string);
        let n = |key: &str| -> Result<u64, JournalError> {
            let v = field(r, key)?;
            v.parse()
                .map_err(|_| invalid(r, format!("{key} {v:?} is not a number")))
        };
        let part = || -> Result<u32, JournalError> {
            let v = n("Part")?;
            u32::try_from(v).map_err(|_| invalid(r, format!("Part {v} is too large")))
        };
        Ok(Some(match r.kind.as_str() {
            "NewJournalFile" => Self::NewJournalFile,
            "SessionStart" => Self::SessionStart {
                session_id: s("SessionId")?,
                job_name: s("JobName")?,
                drive_id: s("DriveId")?,
                tar_offset: n("TarOffset")?,
            },
            "RangeProgress" => Self::RangeProgress {
                blob_path: s("BlobPath")?,
                part: part()?,
                blob_offset: n("BlobOffset")?,
                tar_offset: n("TarOffset")?,
                ranges: decode_ranges(r, field(r, "Ranges")?)?,
            },
            "BlobDone" => Self::BlobDone {
                blob_path: s("BlobPath")?,
                part: part()?,
                ranges: n("Ranges")?,
                tar_offset: n("TarOffset")?,
            },
            "SessionDone" => Self::SessionDone {
                session_id: s("SessionId")?,
                tar_offset: n("TarOffset")?,
            },
            "ActivityRecord" if r.get("ActivityId") == Some("DriveInfo") => {
                parse_drive_state(r, field(r, "DriveState")?)?
            }
            _ => return Ok(None),
        }))
    }
}

/// One `offset length hash` line per range; a single line `none` when there is none (a value cannot be empty
/// and multi-line at once).
fn encode_ranges(ranges: &[PageRange]) -> String {
    if ranges.is_empty() {
        return "none".into();
    }
    let lines: Vec<String> = ranges
        .iter()
        .map(|r| format!("{} {} {}", r.offset, r.length, r.hash))
        .collect();
    // Two or more lines make a multi-line value; a single range stays on the key's line.
    lines.join("\n")
}

fn decode_ranges(r: &JournalRecord, v: &str) -> Result<Vec<PageRange>, JournalError> {
    if v == "none" {
        return Ok(Vec::new());
    }
    v.split('\n')
        .map(|line| {
            let mut it = line.split(' ');
            let range = (|| {
                let offset = it.next()?.parse().ok()?;
                let length = it.next()?.parse().ok()?;
                let hash = it.next()?.parse().ok()?;
                it.next().is_none().then_some(PageRange { offset, length, hash })
            })();
            range.ok_or_else(|| invalid(r, format!("Ranges line {line:?} is not `offset length hash`")))
        })
        .collect()
}

fn field<'a>(r: &'a JournalRecord, key: &str) -> Result<&'a str, JournalError> {
    r.get(key)
        .ok_or_else(|| invalid(r, format!("missing field {key}")))
}

fn invalid(r: &JournalRecord, reason: String) -> JournalError {
    JournalError::InvalidRecord {
        kind: format!("{} at {}", r.kind, r.time),
        reason,
    }
}

fn drive_state_xml(drive_id: &str, manifest_file: &str, manifest_hash: &str) -> String {
    let e = |s: &str| {
        escape(s)
            .map(|c| c.into_owned())
            .unwrap_or_else(|_| s.chars().filter(|c| !c.is_control()).collect())
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Drive><DriveId>{}</DriveId><BitLockerKey>{MASKED_KEY}</BitLockerKey>\n<ManifestFile>{}</ManifestFile><ManifestHash>{}</ManifestHash></Drive>",
        e(drive_id),
        e(manifest_file),
        e(manifest_hash)
    )
}

fn parse_drive_state(r: &JournalRecord, xml: &str) -> Result<DiskprepRecord, JournalError> {
    let bad = |detail: String| invalid(r, format!("DriveState: {detail}"));
    let mut p = XmlPull::new(xml.as_bytes(), "journal DriveState");
    p.root("Drive").map_err(|e| bad(e.to_string()))?;
    let (mut drive_id, mut manifest_file, mut manifest_hash) = (None, None, None);
    loop {
        match p.next_structural().map_err(|e| bad(e.to_string()))? {
            Ev::Start { name, .. } => {
                let text = p.text_of(&name).map_err(|e| bad(e.to_string()))?;
                match name.as_str() {
                    "DriveId" => drive_id = Some(text),
                    "ManifestFile" => manifest_file = Some(text),
                    "ManifestHash" => manifest_hash = Some(text),
                    _ => {} // BitLockerKey (masked) and later additions
                }
            }
            Ev::End => break,
            _ => return Err(bad("unexpected text".into())),
        }
    }
    let need = |v: Option<String>, name: &str| v.ok_or_else(|| bad(format!("missing <{name}>")));
    Ok(DiskprepRecord::DriveInfo {
        drive_id: need(drive_id, "DriveId")?,
        manifest_file: need(manifest_file, "ManifestFile")?,
        manifest_hash: need(manifest_hash, "ManifestHash")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_records_round_trip_through_the_text_format() {
        let all = [
            DiskprepRecord::NewJournalFile,
            DiskprepRecord::SessionStart {
                session_id: "s-1".into(),
                job_name: "job".into(),
                drive_id: "D1".into(),
                tar_offset: 0,
            },
            DiskprepRecord::RangeProgress {
                blob_path: "c/data: 1".into(),
                part: 2,
                blob_offset: 8 << 20,
                tar_offset: 9 << 20,
                ranges: vec![],
            },
            DiskprepRecord::RangeProgress {
                blob_path: "c/d".into(),
                part: 0,
                blob_offset: 8 << 20,
                tar_offset: 9 << 20,
                ranges: vec![PageRange {
                    offset: 0,
                    length: 512,
                    hash: crate::manifest::Md5Hash::of(b"x"),
                }],
            },
            DiskprepRecord::RangeProgress {
                blob_path: "c/e".into(),
                part: 1,
                blob_offset: 8 << 20,
                tar_offset: 9 << 20,
                ranges: vec![
                    PageRange {
                        offset: 0,
                        length: 4 << 20,
                        hash: crate::manifest::Md5Hash::of(b"y"),
                    },
                    PageRange {
                        offset: 4 << 20,
                        length: 4 << 20,
                        hash: crate::manifest::Md5Hash::of(b"z"),
                    },
                ],
            },
            DiskprepRecord::BlobDone {
                blob_path: "c/x".into(),
                part: 0,
                ranges: 3,
                tar_offset: 1 << 30,
            },
            DiskprepRecord::DriveInfo {
                drive_id: "D<1>".into(),
                manifest_file: "\\DriveManifest.xml".into(),
                manifest_hash: "D863FE44F861AE0DA4DCEAEEFFCCCE68".into(),
            },
            DiskprepRecord::SessionDone {
                session_id: "s-1".into(),
                tar_offset: 42,
            },
        ];
        let mut bytes = Vec::new();
        for r in &all {
            bytes.extend(r.to_record().encode().unwrap());
        }
        let replay = super::super::parse_journal(&bytes[..], std::path::Path::new("t")).unwrap();
        let back: Vec<_> = replay
            .records
            .iter()
            .map(|r| DiskprepRecord::from_record(r).unwrap().unwrap())
            .collect();
        assert_eq!(back, all);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("<BitLockerKey>*******</BitLockerKey>"));
    }

    #[test]
    fn malformed_typed_fields_are_named() {
        let r = JournalRecord::new("RangeProgress")
            .with("BlobPath", "c/x")
            .with("Part", "1")
            .with("BlobOffset", "x");
        let err = DiskprepRecord::from_record(&r).unwrap_err().to_string();
        assert!(err.contains("BlobOffset"), "{err}");
        let r = JournalRecord::new("Unknown");
        assert_eq!(DiskprepRecord::from_record(&r).unwrap(), None);
    }
}
