//! The drive's record: the `/j:` journal of `prepimport`, one per drive, never on the drive.
//!
//! It holds everything about the drive and its sessions, so that a session can be resumed or aborted, later
//! sessions appended, and `create-job --journal` can create the import job from it alone: the drive's id,
//! target and recovery key, the storage credential given with `/sk:` or `/csas:` (as WAImportExport records
//! it), each session's sources, checkpoints (with every segment's MD5) and end, and the manifest's hash.
//! Because it holds secrets it is created with mode 0600 and `O_EXCL`, and an existing journal readable by
//! other users is refused. Records and their order: docs/journal.md ("prepimport journals").

use super::source::BlobType;
use crate::prep::copy::{Checkpoint, CheckpointSink};
use crate::prep::layout::SegmentRecord;
use crate::prep::session::{parse_segment, segment_lines};
use seedship_shared::journal::records::DiskprepRecord;
use seedship_shared::journal::{Journal, JournalError, JournalRecord};
use seedship_shared::manifest::{BlobPart, ImportDisposition};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The drive, recorded before it is formatted (or, for an already encrypted drive, once it unlocked).
pub const DRIVE: &str = "PrepImportDrive";
/// The drive's LUKS2 header is written (or the existing one opened with the key).
pub const FORMATTED: &str = "DriveFormatted";
/// The storage credential given with `/sk:` or `/csas:`.
pub const CREDENTIAL: &str = "StorageCredential";
/// A session's settings and sources.
pub const SESSION: &str = "PrepImportSession";
/// A durable point of a session's copy.
pub const CHECKPOINT: &str = "SessionCheckpoint";
/// A session rolled back with `/AbortSession`.
pub const ABORTED: &str = "SessionAborted";
/// A session whose data set did not fit continues on another drive, recorded in journal `Journal`
/// (`/AdditionalDriveSet:`).
pub const CONTINUED: &str = "SessionContinued";

/// How the drive was encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// Formatted with LUKS2 by this journal's first session (`/format /encrypt`).
    Encrypt,
    /// A LUKS2 drive seedship formatted earlier, unlocked with `/bk:` and written without reformatting.
    AlreadyEncrypted,
}

impl Encryption {
    fn as_str(self) -> &'static str {
        match self {
            Self::Encrypt => "Encrypt",
            Self::AlreadyEncrypted => "AlreadyEncrypted",
        }
    }
}

/// The drive as recorded.
#[derive(Clone)]
pub struct DriveRecord {
    pub drive_id: String,
    pub target: PathBuf,
    /// Payload bytes the drive holds.
    pub capacity: u64,
    /// The manifest slot's size (text bytes), fixed for all sessions.
    pub manifest_slot: u64,
    pub encryption: Encryption,
    pub recovery_key: Zeroizing<String>,
}

impl std::fmt::Debug for DriveRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriveRecord")
            .field("drive_id", &self.drive_id)
            .field("target", &self.target)
            .field("capacity", &self.capacity)
            .field("encryption", &self.encryption)
            .field("recovery_key", &"<redacted>")
            .finish()
    }
}

/// One source file of a session, as recorded: enough to rebuild the manifest without the file, and to tell
/// whether the file changed before a resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    /// The blob's name in its container.
    pub blob: String,
    pub path: PathBuf,
    pub len: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Segments the plan cut the blob into.
    pub segments: usize,
    pub disposition: ImportDisposition,
    /// Page or block blob (a block blob is never a part).
    pub blob_type: BlobType,
    /// The blob bytes this drive holds when it is not the whole blob from its start: a blob split across the
    /// drives of a session (`/AdditionalDriveSet:`), or one whose data starts after a hole. In the session's
    /// `Rest`: where the data still to copy starts, and the part number it will get.
    pub part: Option<BlobPart>,
}

/// A session as recorded.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub session_id: String,
    pub container: String,
    /// Modification time of the session's tar members.
    pub mtime: i64,
    /// Where its members start in the payload; `None` right after the manifest.
    pub data_from: Option<u64>,
    pub sources: Vec<SourceRecord>,
    pub checkpoint: Checkpoint,
    /// Where its members end (the end-of-archive marker), once complete.
    pub data_end: Option<u64>,
    pub aborted: bool,
    /// The data set's files (or their ends) that did not fit on this drive: they go to the next drive of an
    /// `/AdditionalDriveSet:` (v2). Empty when the session's data set ends on this drive.
    pub rest: Vec<SourceRecord>,
    /// The journal of the drive the session continues on, once `/AdditionalDriveSet:` started it.
    pub continued_in: Option<PathBuf>,
    /// The journal of the drive the session came from, on a drive of an `/AdditionalDriveSet:`.
    pub continues_from: Option<PathBuf>,
}

impl SessionRecord {
    /// Complete and not aborted.
    pub fn is_done(&self) -> bool {
        self.data_end.is_some() && !self.aborted
    }
}

/// Everything a journal says.
#[derive(Debug, Default)]
pub struct Replayed {
    pub drive: Option<DriveRecord>,
    pub formatted: bool,
    pub credential: Option<StoredCredential>,
    pub sessions: Vec<SessionRecord>,
    /// The drive manifest's MD5 as it stands (none while no session is complete).
    pub manifest_hash: Option<String>,
    pub log_dir: Option<PathBuf>,
}

impl Replayed {
    /// The latest session that was not aborted.
    pub fn latest(&self) -> Option<&SessionRecord> {
        self.sessions.iter().rev().find(|s| !s.aborted)
    }

    /// The complete sessions, in order: what the drive's manifest lists.
    pub fn done(&self) -> impl Iterator<Item = &SessionRecord> {
        self.sessions.iter().filter(|s| s.is_done())
    }
}

/// The storage credential as recorded.
#[derive(Clone)]
pub enum StoredCredential {
    AccountKey(Zeroizing<String>),
    ContainerSas(Zeroizing<String>),
}

impl std::fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::AccountKey(_) => "AccountKey(<redacted>)",
            Self::ContainerSas(_) => "ContainerSas(<redacted>)",
        })
    }
}

/// Errors of the drive journal.
#[derive(Debug, thiserror::Error)]
pub enum DriveJournalError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("journal {path} can be read by other users (mode {mode:o}) and holds the drive's recovery key: make it private with chmod 600 {path}")]
    NotPrivate { path: PathBuf, mode: u32 },
    #[error("journal {path}: record {kind}: {reason}; the journal was not written by seedship-diskprep prepimport or was modified")]
    Record {
        path: PathBuf,
        kind: String,
        reason: String,
    },
}

/// The open journal of one drive.
#[derive(Debug)]
pub struct DriveJournal {
    journal: Journal,
    /// The session whose checkpoints [`CheckpointSink`] records.
    pub session: String,
}

/// Creates a new journal (mode 0600, never over an existing file).
pub fn create(path: &Path) -> Result<(), DriveJournalError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|source| DriveJournalError::Io {
            path: path.to_owned(),
            source,
        })
}

/// Refuses a journal other users can read.
fn check_private(path: &Path) -> Result<(), DriveJournalError> {
    let meta = std::fs::metadata(path).map_err(|source| DriveJournalError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(DriveJournalError::NotPrivate {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Opens an existing journal for appending and replays it.
pub fn open(path: &Path) -> Result<(DriveJournal, Replayed), DriveJournalError> {
    check_private(path)?;
    let (journal, replay) = Journal::open(path)?;
    let state = interpret(path, &replay.records)?;
    Ok((
        DriveJournal {
            journal,
            session: String::new(),
        },
        state,
    ))
}

/// Reads a journal without writing it (`create-job`).
pub fn read(path: &Path) -> Result<Replayed, DriveJournalError> {
    check_private(path)?;
    let replay = seedship_shared::journal::replay(path)?;
    interpret(path, &replay.records)
}

fn interpret(path: &Path, records: &[JournalRecord]) -> Result<Replayed, DriveJournalError> {
    let mut s = Replayed::default();
    for r in records {
        let bad = |reason: String| DriveJournalError::Record {
            path: path.to_owned(),
            kind: r.kind.clone(),
            reason,
        };
        let get = |key: &str| r.get(key).ok_or_else(|| bad(format!("{key} is missing")));
        let num = |key: &str| -> Result<u64, DriveJournalError> {
            get(key)?
                .parse()
                .map_err(|_| bad(format!("{key} is not a number")))
        };
        match r.kind.as_str() {
            DRIVE => {
                s.drive = Some(DriveRecord {
                    drive_id: get("DriveId")?.to_owned(),
                    target: PathBuf::from(get("Target")?),
                    capacity: num("Capacity")?,
                    manifest_slot: num("ManifestSlot")?,
                    encryption: match get("Encryption")? {
                        "Encrypt" => Encryption::Encrypt,
                        "AlreadyEncrypted" => Encryption::AlreadyEncrypted,
                        other => return Err(bad(format!("Encryption {other:?}"))),
                    },
                    recovery_key: Zeroizing::new(get("RecoveryKey")?.to_owned()),
                });
                s.formatted = false;
            }
            FORMATTED => s.formatted = true,
            CREDENTIAL => {
                let v = Zeroizing::new(get("Value")?.to_owned());
                s.credential = Some(match get("Kind")? {
                    "ContainerSas" => StoredCredential::ContainerSas(v),
                    _ => StoredCredential::AccountKey(v),
                });
            }
            SESSION => {
                let lines = |key: &str| -> Result<Vec<SourceRecord>, DriveJournalError> {
                    r.get(key)
                        .unwrap_or("")
                        .lines()
                        .filter(|l| !l.is_empty())
                        .map(|line| parse_source(line).ok_or_else(|| bad(format!("source line {line:?}"))))
                        .collect()
                };
                get("Sources")?;
                let sources = lines("Sources")?;
                let rest = lines("Rest")?;
                let id = get("SessionId")?.to_owned();
                s.sessions.push(SessionRecord {
                    session_id: id,
                    container: get("Container")?.to_owned(),
                    mtime: num("MTime")? as i64,
                    data_from: match get("DataFrom")? {
                        "manifest" => None,
                        _ => Some(num("DataFrom")?),
                    },
                    sources,
                    checkpoint: Checkpoint::default(),
                    data_end: None,
                    aborted: false,
                    rest,
                    continued_in: None,
                    continues_from: r.get("ContinuesFrom").map(PathBuf::from),
                });
            }
            CONTINUED => {
                let journal = PathBuf::from(get("Journal")?);
                let sess =
                    session_mut(&mut s, get("SessionId")?).ok_or_else(|| bad("no such session".into()))?;
                sess.continued_in = Some(journal);
            }
            CHECKPOINT => {
                let at = num("TarOffset")?;
                let mut segs = Vec::new();
                for line in get("Segments")?.lines().filter(|l| !l.is_empty()) {
                    segs.push(parse_segment("", line).map_err(|e| bad(e.to_string()))?);
                }
                let sess =
                    session_mut(&mut s, get("SessionId")?).ok_or_else(|| bad("no such session".into()))?;
                sess.checkpoint.payload_offset = at;
                sess.checkpoint.segments.extend(segs);
            }
            ABORTED => {
                let id = get("SessionId")?.to_owned();
                if let Some(sess) = session_mut(&mut s, &id) {
                    sess.aborted = true;
                }
                if s.done().next().is_none() {
                    s.manifest_hash = None;
                }
            }
            "ActivityRecord" if r.get("ActivityId") == Some("PrepImportDriveCommandContext") => {
                s.log_dir = r.get("LogDirectory").map(PathBuf::from);
            }
            _ => match DiskprepRecord::from_record(r) {
                Ok(Some(DiskprepRecord::DriveInfo { manifest_hash, .. })) => {
                    s.manifest_hash = Some(manifest_hash)
                }
                Ok(Some(DiskprepRecord::SessionDone {
                    session_id,
                    tar_offset,
                })) => {
                    let end = tar_offset
                        .checked_sub(seedship_shared::tar::END_OF_ARCHIVE_LEN)
                        .ok_or_else(|| bad("TarOffset before the end-of-archive marker".into()))?;
                    let sess =
                        session_mut(&mut s, &session_id).ok_or_else(|| bad("no such session".into()))?;
                    sess.data_end = Some(end);
                }
                Ok(_) => {}
                Err(e) => return Err(bad(e.to_string())),
            },
        }
    }
    Ok(s)
}

/// The latest record of session `id` that was not aborted.
fn session_mut<'a>(s: &'a mut Replayed, id: &str) -> Option<&'a mut SessionRecord> {
    s.sessions
        .iter_mut()
        .rev()
        .find(|x| x.session_id == id && !x.aborted)
}

/// `blob, path, len, mtime, segments, disposition` and, for a part, `index, start, end`, or for a block blob
/// (never a part) `BlockBlob`; tab-separated. Page-blob lines are as before block blobs existed.
fn source_line(s: &SourceRecord) -> String {
    let mut line = format!(
        "{}\t{}\t{}\t{}\t{}\t{}",
        s.blob,
        s.path.display(),
        s.len,
        s.mtime_ns,
        s.segments,
        s.disposition.as_str()
    );
    if let Some(p) = &s.part {
        line.push_str(&format!("\t{}\t{}\t{}", p.index, p.start, p.end));
    }
    if s.blob_type == BlobType::Block {
        line.push('\t');
        line.push_str(BlobType::Block.as_str());
    }
    line
}

fn parse_source(line: &str) -> Option<SourceRecord> {
    let f: Vec<&str> = line.split('\t').collect();
    let (whole, part, blob_type) = match f.len() {
        6 => (&f[..], None, BlobType::Page),
        7 if f[6] == BlobType::Block.as_str() => (&f[..6], None, BlobType::Block),
        9 => (&f[..6], Some(&f[6..]), BlobType::Page),
        _ => return None,
    };
    let [blob, path, len, mtime, segments, disposition] = whole[..] else {
        return None;
    };
    let part = match part {
        Some([index, start, end]) => Some(BlobPart {
            index: index.parse().ok()?,
            start: start.parse().ok()?,
            end: end.parse().ok()?,
        }),
        _ => None,
    };
    Some(SourceRecord {
        blob: blob.to_owned(),
        path: PathBuf::from(path),
        len: len.parse().ok()?,
        mtime_ns: mtime.parse().ok()?,
        segments: segments.parse().ok()?,
        disposition: disposition.parse().ok()?,
        blob_type,
        part,
    })
}

impl DriveJournal {
    fn append(&mut self, r: JournalRecord) -> Result<(), DriveJournalError> {
        Ok(self.journal.append(&r)?)
    }

    /// Records the command's context (the `/logdir:`), as WAImportExport's first activity record.
    pub fn record_context(&mut self, log_dir: Option<&Path>) -> Result<(), DriveJournalError> {
        let mut r = JournalRecord::new("ActivityRecord").with("ActivityId", "PrepImportDriveCommandContext");
        if let Some(d) = log_dir {
            r = r.with("LogDirectory", d.display().to_string());
        }
        self.append(r)
    }

    /// Records the drive (its recovery key included) before anything is written to it.
    pub fn record_drive(&mut self, d: &DriveRecord) -> Result<(), DriveJournalError> {
        self.append(
            JournalRecord::new(DRIVE)
                .with("DriveId", d.drive_id.clone())
                .with("Target", d.target.display().to_string())
                .with("Capacity", d.capacity.to_string())
                .with("ManifestSlot", d.manifest_slot.to_string())
                .with("Encryption", d.encryption.as_str())
                .with("RecoveryKey", d.recovery_key.as_str()),
        )
    }

    pub fn record_formatted(&mut self, drive_id: &str) -> Result<(), DriveJournalError> {
        self.append(JournalRecord::new(FORMATTED).with("DriveId", drive_id))
    }

    pub fn record_credential(&mut self, c: &StoredCredential) -> Result<(), DriveJournalError> {
        let (kind, v) = match c {
            StoredCredential::AccountKey(k) => ("AccountKey", k),
            StoredCredential::ContainerSas(s) => ("ContainerSas", s),
        };
        self.append(
            JournalRecord::new(CREDENTIAL)
                .with("Kind", kind)
                .with("Value", v.as_str()),
        )
    }

    /// Records a new session's settings and sources (and what of its data set does not fit on this drive).
    pub fn record_session(&mut self, s: &SessionRecord) -> Result<(), DriveJournalError> {
        let lines = |v: &[SourceRecord]| v.iter().map(source_line).collect::<Vec<_>>().join("\n");
        let mut r = JournalRecord::new(SESSION)
            .with("SessionId", s.session_id.clone())
            .with("Container", s.container.clone())
            .with("MTime", s.mtime.to_string())
            .with(
                "DataFrom",
                s.data_from
                    .map_or_else(|| "manifest".to_owned(), |d| d.to_string()),
            )
            .with("Sources", lines(&s.sources));
        if !s.rest.is_empty() {
            r = r.with("Rest", lines(&s.rest));
        }
        if let Some(from) = &s.continues_from {
            r = r.with("ContinuesFrom", from.display().to_string());
        }
        self.append(r)?;
        self.session = s.session_id.clone();
        Ok(())
    }

    /// Records that session `session_id` continues on the drive of journal `journal`.
    pub fn record_continued(&mut self, session_id: &str, journal: &Path) -> Result<(), DriveJournalError> {
        self.append(
            JournalRecord::new(CONTINUED)
                .with("SessionId", session_id)
                .with("Journal", journal.display().to_string()),
        )
    }

    /// Records the end of a session: the manifest's hash (WAImportExport's `DriveInfo`) and where the
    /// payload ends.
    pub fn record_done(
        &mut self,
        drive_id: &str,
        session_id: &str,
        manifest_hash: &str,
        data_end: u64,
    ) -> Result<(), DriveJournalError> {
        self.record_drive_info(drive_id, manifest_hash)?;
        self.append(
            DiskprepRecord::SessionDone {
                session_id: session_id.to_owned(),
                tar_offset: data_end + seedship_shared::tar::END_OF_ARCHIVE_LEN,
            }
            .to_record(),
        )
    }

    /// Records the drive manifest's hash.
    pub fn record_drive_info(
        &mut self,
        drive_id: &str,
        manifest_hash: &str,
    ) -> Result<(), DriveJournalError> {
        self.append(
            DiskprepRecord::DriveInfo {
                drive_id: drive_id.to_owned(),
                manifest_file: crate::prep::layout::MANIFEST_PATH.to_owned(),
                manifest_hash: manifest_hash.to_owned(),
            }
            .to_record(),
        )
    }

    pub fn record_aborted(&mut self, session_id: &str) -> Result<(), DriveJournalError> {
        self.append(JournalRecord::new(ABORTED).with("SessionId", session_id))
    }
}

impl CheckpointSink for DriveJournal {
    fn checkpoint(&mut self, payload_offset: u64, new_segments: &[SegmentRecord]) -> std::io::Result<()> {
        let r = JournalRecord::new(CHECKPOINT)
            .with("SessionId", self.session.clone())
            .with("TarOffset", payload_offset.to_string())
            .with("Segments", segment_lines(new_segments));
        self.journal.append(&r).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive() -> DriveRecord {
        DriveRecord {
            drive_id: "SEED0123456789AB".into(),
            target: "/srv/d1.img".into(),
            capacity: 48 << 20,
            manifest_slot: 1 << 20,
            encryption: Encryption::Encrypt,
            recovery_key: Zeroizing::new("000011-000022-000033-000044-000055-000066-000077-000088".into()),
        }
    }

    fn session(id: &str, data_from: Option<u64>) -> SessionRecord {
        SessionRecord {
            session_id: id.into(),
            container: "seed".into(),
            mtime: 1_700_000_000,
            data_from,
            sources: vec![SourceRecord {
                blob: "data/0000".into(),
                path: "/srv/st/data/0000".into(),
                len: 8 << 20,
                mtime_ns: 1_700_000_000_123_456_789,
                segments: 2,
                disposition: ImportDisposition::Overwrite,
                blob_type: BlobType::Page,
                part: None,
            }],
            checkpoint: Checkpoint::default(),
            data_end: None,
            aborted: false,
            rest: Vec::new(),
            continued_in: None,
            continues_from: None,
        }
    }

    fn seg(start: u64) -> SegmentRecord {
        SegmentRecord {
            blob: "data/0000".into(),
            range: start..start + (4 << 20),
            md5: "0123456789ABCDEF0123456789ABCDEF".into(),
            xxh3: 7,
            zero: false,
        }
    }

    #[test]
    fn sessions_checkpoints_ends_and_aborts_replay() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("d1.jrn");
        create(&path).unwrap();
        assert!(create(&path).is_err(), "never over an existing journal");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (mut j, s) = open(&path).unwrap();
        assert!(s.drive.is_none() && s.sessions.is_empty());
        j.record_drive(&drive()).unwrap();
        j.record_formatted("SEED0123456789AB").unwrap();
        j.record_credential(&StoredCredential::AccountKey(Zeroizing::new("a2V5".into())))
            .unwrap();
        j.record_session(&session("s1", None)).unwrap();
        j.checkpoint(5 << 20, &[seg(0)]).unwrap();
        j.checkpoint(9 << 20, &[seg(4 << 20)]).unwrap();
        j.record_done("SEED0123456789AB", "s1", "AAAA", 9 << 20).unwrap();
        j.record_session(&session("s2", Some(9 << 20))).unwrap();
        j.checkpoint(12 << 20, &[seg(0)]).unwrap();
        drop(j);

        let s = read(&path).unwrap();
        let d = s.drive.as_ref().unwrap();
        assert_eq!(d.drive_id, "SEED0123456789AB");
        assert_eq!(d.recovery_key.as_str(), drive().recovery_key.as_str());
        assert!(s.formatted);
        assert!(matches!(&s.credential, Some(StoredCredential::AccountKey(k)) if k.as_str() == "a2V5"));
        assert_eq!(s.sessions.len(), 2);
        let s1 = &s.sessions[0];
        assert_eq!(s1.checkpoint.segments, vec![seg(0), seg(4 << 20)]);
        assert_eq!(s1.data_end, Some(9 << 20));
        assert_eq!(s1.sources, session("s1", None).sources);
        let latest = s.latest().unwrap();
        assert_eq!((latest.session_id.as_str(), latest.is_done()), ("s2", false));
        assert_eq!(latest.checkpoint.payload_offset, 12 << 20);
        assert_eq!(latest.data_from, Some(9 << 20));
        assert_eq!(s.manifest_hash.as_deref(), Some("AAAA"));

        let (mut j, _) = open(&path).unwrap();
        j.record_aborted("s2").unwrap();
        j.record_aborted("s1").unwrap();
        drop(j);
        let s = read(&path).unwrap();
        assert!(s.latest().is_none() && s.done().next().is_none());
        assert_eq!(s.manifest_hash, None, "no complete session: no manifest hash");
    }

    #[test]
    fn parts_rests_and_continuations_replay() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("d1.jrn");
        create(&path).unwrap();
        let (mut j, _) = open(&path).unwrap();
        j.record_drive(&drive()).unwrap();
        let mut s = session("s1", None);
        s.sources[0].part = Some(BlobPart {
            index: 1,
            start: 0,
            end: 8 << 20,
        });
        let mut rest = s.sources[0].clone();
        rest.segments = 0;
        rest.part = Some(BlobPart {
            index: 2,
            start: 8 << 20,
            end: 20 << 20,
        });
        let mut whole = s.sources[0].clone();
        (whole.blob, whole.segments, whole.part) = ("index/0000".into(), 0, None);
        s.rest = vec![rest, whole];
        s.continues_from = Some(t.path().join("d0.jrn"));
        j.record_session(&s).unwrap();
        j.record_continued("s1", &t.path().join("d1-s1-2.jrn")).unwrap();
        drop(j);
        let got = read(&path).unwrap();
        let r = &got.sessions[0];
        assert_eq!(r.sources, s.sources);
        assert_eq!(r.rest, s.rest);
        assert_eq!(r.continues_from, s.continues_from);
        assert_eq!(r.continued_in, Some(t.path().join("d1-s1-2.jrn")));
    }

    #[test]
    fn a_journal_others_can_read_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("d1.jrn");
        std::fs::write(&path, "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn block_blob_sources_round_trip_and_page_blob_lines_keep_their_form() {
        let mut s = session("blk", None).sources.remove(0);
        let page = source_line(&s);
        assert_eq!(page.split('\t').count(), 6, "{page}");
        assert_eq!(parse_source(&page), Some(s.clone()));
        s.blob_type = BlobType::Block;
        s.len = (4 << 20) + 1;
        let block = source_line(&s);
        assert!(block.ends_with("\tBlockBlob"), "{block}");
        assert_eq!(parse_source(&block), Some(s));
        assert_eq!(parse_source(&block.replace("BlockBlob", "Other")), None);
    }
}
