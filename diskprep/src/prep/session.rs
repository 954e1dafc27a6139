//! What diskprep keeps beside the job while it prepares drives (`<staging>/<job>/diskprep/`), so that a
//! run stopped by a crash, a kill or Ctrl-C can be resumed and finished drives are left alone:
//!
//! - `session.json`: the session id, the drives in order (id, target, capacity, state), written atomically;
//! - `<drive-id>.jrn`: each drive's journal (docs/journal.md): `SessionStart`, one `Checkpoint` per batch
//!   with the segments it hashed (MD5 for the manifest, xxh3 for verification), `DriveInfo` and
//!   `SessionDone` when the drive is complete, `Verified` after the read-back check, `Restart` when a
//!   damaged staged blob voided the copy (the next run starts the drive over);
//! - `keys.tsv`: the recovery keys (mode 0600), unless `--key-file` puts them elsewhere.
//!
//! Nothing here is ever written on a target drive.

use crate::prep::copy::{Checkpoint, CheckpointSink, SegmentRecord};
use crate::prep::layout::DriveLayout;
use crate::prep::plan::DrivePlan;
use seedship_shared::journal::records::DiskprepRecord;
use seedship_shared::journal::{Journal, JournalError, JournalRecord};
use seedship_shared::manifest::{
    BlobPart, DriveFilePath, DriveHeader, ManifestBlob, ManifestError, ManifestWriter, Md5Hash, PageRange,
    CLIENT_CREATOR, MANIFEST_VERSION,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The folder of diskprep's state inside a job folder.
pub const STATE_DIR: &str = "diskprep";
const SESSION_FILE: &str = "session.json";
const CHECKPOINT: &str = "Checkpoint";
const VERIFIED: &str = "Verified";
/// The copy starts over: what the records before it say is void (the staged input was damaged).
const RESTART: &str = "Restart";

/// Where a drive of the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriveState {
    /// Formatted; the copy may be under way.
    Formatted,
    /// Data, manifest and end marker written.
    Written,
    /// Read back and checked.
    Verified,
}

/// One drive of the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDrive {
    pub drive_id: String,
    /// Device or image path.
    pub target: PathBuf,
    /// Payload bytes it holds.
    pub capacity: u64,
    pub state: DriveState,
    /// The manifest's MD5 once written.
    #[serde(default)]
    pub manifest_hash: Option<String>,
}

/// The session file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    pub session_id: String,
    pub job_name: String,
    pub mtime: i64,
    pub drives: Vec<SessionDrive>,
}

/// Errors of the session files.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is damaged ({reason}); remove the folder {dir} to start the drives over", dir = .path.parent().map(|p| p.display().to_string()).unwrap_or_default())]
    Damaged { path: PathBuf, reason: String },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("journal of drive {drive}: record {kind} is malformed: {reason}")]
    Record {
        drive: String,
        kind: String,
        reason: String,
    },
    #[error("building the manifest of drive {drive}: {source}")]
    Manifest {
        drive: String,
        #[source]
        source: ManifestError,
    },
}

impl SessionState {
    /// The state folder of a job folder.
    pub fn dir_of(job_dir: &Path) -> PathBuf {
        job_dir.join(STATE_DIR)
    }

    /// Reads the session of a job, if there is one.
    pub fn load(job_dir: &Path) -> Result<Option<Self>, SessionError> {
        let path = Self::dir_of(job_dir).join(SESSION_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| SessionError::Damaged {
                    path,
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SessionError::Io { path, source }),
        }
    }

    /// Writes the session atomically and durably.
    pub fn save(&self, job_dir: &Path) -> Result<(), SessionError> {
        let dir = Self::dir_of(job_dir);
        let path = dir.join(SESSION_FILE);
        let tmp = dir.join(".session.json.tmp");
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| SessionError::Io { path: p, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut json = serde_json::to_vec_pretty(self).expect("serializable");
        json.push(b'\n');
        std::fs::write(&tmp, &json).map_err(io(&tmp))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))
    }

    /// The drive with this target path, if the session has one.
    pub fn drive_at(&self, target: &Path) -> Option<&SessionDrive> {
        self.drives.iter().find(|d| d.target == target)
    }

    /// Sets a drive's state (and manifest hash).
    pub fn set_state(&mut self, drive_id: &str, state: DriveState, manifest_hash: Option<String>) {
        if let Some(d) = self.drives.iter_mut().find(|d| d.drive_id == drive_id) {
            d.state = state;
            if manifest_hash.is_some() {
                d.manifest_hash = manifest_hash;
            }
        }
    }
}

/// The journal path of a drive.
pub fn journal_path(job_dir: &Path, drive_id: &str) -> PathBuf {
    SessionState::dir_of(job_dir).join(format!("{drive_id}.jrn"))
}

/// A drive's journal, opened for appending, with what it recorded so far.
#[derive(Debug)]
pub struct DriveJournal {
    drive: String,
    journal: Journal,
    /// The copy's last durable point.
    pub checkpoint: Checkpoint,
    /// Whether the drive was verified.
    pub verified: bool,
    /// The manifest's MD5 once the drive was complete (`DriveInfo`).
    pub manifest_hash: Option<String>,
}

impl DriveJournal {
    /// Opens (creating) the journal of `drive_id` and replays it.
    pub fn open(job_dir: &Path, drive_id: &str) -> Result<Self, SessionError> {
        let (journal, replay) = Journal::open(&journal_path(job_dir, drive_id))?;
        let mut checkpoint = Checkpoint::default();
        let mut verified = false;
        let mut manifest_hash = None;
        for r in &replay.records {
            match r.kind.as_str() {
                CHECKPOINT => {
                    checkpoint.payload_offset = field(drive_id, r, "TarOffset")?;
                    for line in r.get("Segments").unwrap_or("").lines().filter(|l| !l.is_empty()) {
                        checkpoint.segments.push(parse_segment(drive_id, line)?);
                    }
                }
                VERIFIED => verified = true,
                RESTART => {
                    checkpoint = Checkpoint::default();
                    verified = false;
                    manifest_hash = None;
                }
                _ => {
                    if let Ok(Some(DiskprepRecord::DriveInfo { manifest_hash: h, .. })) =
                        DiskprepRecord::from_record(r)
                    {
                        manifest_hash = Some(h);
                    }
                }
            }
        }
        Ok(DriveJournal {
            drive: drive_id.to_owned(),
            journal,
            checkpoint,
            verified,
            manifest_hash,
        })
    }

    /// Appends one of the shared vocabulary's records.
    pub fn record(&mut self, r: &DiskprepRecord) -> Result<(), SessionError> {
        Ok(self.journal.append(&r.to_record())?)
    }

    /// Voids what was recorded so far: the next run copies the drive from the start (after its staged input
    /// turned out damaged, the bytes already written cannot be trusted).
    pub fn restart(&mut self, reason: &str) -> Result<(), SessionError> {
        let r = JournalRecord::new(RESTART)
            .with("DriveId", self.drive.clone())
            .with("Reason", reason.to_owned());
        self.journal.append(&r)?;
        self.checkpoint = Checkpoint::default();
        self.verified = false;
        self.manifest_hash = None;
        Ok(())
    }

    /// Records that the drive was read back and checked.
    pub fn record_verified(&mut self, segments: usize) -> Result<(), SessionError> {
        let r = JournalRecord::new(VERIFIED)
            .with("DriveId", self.drive.clone())
            .with("Segments", segments.to_string());
        Ok(self.journal.append(&r)?)
    }
}

impl CheckpointSink for DriveJournal {
    fn checkpoint(&mut self, payload_offset: u64, new_segments: &[SegmentRecord]) -> std::io::Result<()> {
        let r = JournalRecord::new(CHECKPOINT)
            .with("TarOffset", payload_offset.to_string())
            .with("Segments", segment_lines(new_segments));
        self.journal.append(&r).map_err(std::io::Error::other)?;
        self.checkpoint.payload_offset = payload_offset;
        self.checkpoint.segments.extend_from_slice(new_segments);
        Ok(())
    }
}

fn field(drive: &str, r: &JournalRecord, key: &str) -> Result<u64, SessionError> {
    r.get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| SessionError::Record {
            drive: drive.to_owned(),
            kind: r.kind.clone(),
            reason: format!("{key} is missing or not a number"),
        })
}

/// The `Segments` value of a checkpoint record: one `blob start end md5 xxh3 zero` line (tab-separated) per
/// segment.
pub fn segment_lines(segments: &[SegmentRecord]) -> String {
    let lines: String = segments
        .iter()
        .map(|s| {
            format!(
                "{}\t{}\t{}\t{}\t{:032x}\t{}\n",
                s.blob, s.range.start, s.range.end, s.md5, s.xxh3, s.zero as u8
            )
        })
        .collect();
    lines.trim_end().to_owned()
}

/// Parses one line of [`segment_lines`].
pub fn parse_segment(drive: &str, line: &str) -> Result<SegmentRecord, SessionError> {
    let bad = || SessionError::Record {
        drive: drive.to_owned(),
        kind: CHECKPOINT.to_owned(),
        reason: format!("segment line {line:?} is not blob, start, end, md5, xxh3, zero"),
    };
    let f: Vec<&str> = line.split('\t').collect();
    let [blob, start, end, md5, xxh3, zero] = f[..] else {
        return Err(bad());
    };
    Ok(SegmentRecord {
        blob: blob.to_owned(),
        range: start.parse().map_err(|_| bad())?..end.parse().map_err(|_| bad())?,
        md5: md5.to_owned(),
        xxh3: u128::from_str_radix(xxh3, 16).map_err(|_| bad())?,
        zero: zero == "1",
    })
}

/// The manifest text of a drive: one page-blob entry per part, listing its non-zero segments with their
/// MD5s. A part of a blob that spans drives carries its part number and byte range.
pub fn build_manifest(
    drive_id: &str,
    plan: &DrivePlan,
    layout: &DriveLayout,
    part_numbers: &[Option<u32>],
    segments: &[SegmentRecord],
) -> Result<String, SessionError> {
    let err = |source| SessionError::Manifest {
        drive: drive_id.to_owned(),
        source,
    };
    let header = DriveHeader {
        version: MANIFEST_VERSION.to_owned(),
        drive_id: drive_id.to_owned(),
        credential: None,
        client_creator: Some(CLIENT_CREATOR.to_owned()),
    };
    let mut w = ManifestWriter::new(Vec::new(), &header).map_err(err)?;
    let mut segs = segments.iter();
    for (part, number) in plan.parts.iter().zip(part_numbers) {
        let paths = DriveFilePath::new(&layout.session, &layout.blob_path(&part.blob)).map_err(err)?;
        let ranges: Vec<PageRange> = segs
            .by_ref()
            .take(part.segments.len())
            .filter(|s| !s.zero)
            .map(|s| {
                let mut hash = [0u8; 16];
                hex::decode_to_slice(&s.md5, &mut hash).map(|_| PageRange {
                    offset: s.range.start,
                    length: s.range.end - s.range.start,
                    hash: Md5Hash(hash),
                })
            })
            .collect::<Result<_, _>>()
            .map_err(|e| SessionError::Record {
                drive: drive_id.to_owned(),
                kind: CHECKPOINT.to_owned(),
                reason: format!("an MD5 is not hex: {e}"),
            })?;
        let mut blob = ManifestBlob::page_blob(
            layout.blob_path(&part.blob),
            paths.file_path,
            part.blob_len,
            ranges,
        );
        blob.part = number.map(|index| BlobPart {
            index,
            start: part.start,
            end: part.end,
        });
        w.write_blob(&blob).map_err(err)?;
    }
    let bytes = w.finish().map_err(err)?;
    String::from_utf8(bytes).map_err(|e| SessionError::Record {
        drive: drive_id.to_owned(),
        kind: "manifest".into(),
        reason: e.to_string(),
    })
}
