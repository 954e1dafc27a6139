//! The copy journal: an append-only, record-framed text log in WAImportExport's style, one per drive, kept
//! beside the job in staging (never on the target drive).
//!
//! ```text
//! [BeginUpdateRecord][2026/11/22 04:30:00.123][Type:RangeProgress]
//! BlobPath: vault/data/000001
//! DriveState: [BeginValue]
//! <multi-line value>
//! [EndValue]
//! [EndUpdateRecord]
//! ```
//! A record is a type plus ordered `Key: Value` fields ([`JournalRecord`]); [`records`] holds the typed
//! records diskprep writes (vocabulary in docs/journal.md). [`Journal::append`] writes each record with one
//! `write` and fsyncs it (and the directory when the file is created). [`replay`] returns the complete records
//! and ignores a torn last record (no complete `[EndUpdateRecord]` line); [`Journal::open`] truncates that torn
//! tail before appending. Damage anywhere before the last record is an error, never silently skipped.

mod format;
pub mod records;

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

pub use format::{parse_journal, JournalRecord, Replay, MAX_LINE_LEN};

/// Errors of the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("journal {path} is damaged at byte {offset} (line {line}): {reason}; it was not written by seedship or was modified, restore it or start the drive over")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        line: u64,
        reason: String,
    },
    #[error("journal {path} is in use by another process (locked); wait for it to finish")]
    Locked { path: PathBuf },
    #[error("journal record {kind}: {reason}")]
    InvalidRecord { kind: String, reason: String },
}

/// An open journal, positioned for appending after the last complete record.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
    len: u64,
}

impl Journal {
    /// Opens (or creates) the journal at `path`, takes an exclusive lock, replays it, truncates a torn tail,
    /// and returns the complete records. A new journal gets a `NewJournalFile` record at once.
    pub fn open(path: &Path) -> Result<(Journal, Replay), JournalError> {
        let io = |action| {
            move |source| JournalError::Io {
                path: path.to_path_buf(),
                action,
                source,
            }
        };
        let created = !path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io("open"))?;
        lock(&file, path)?;
        let replay = parse_journal(BufReader::new(&file), path)?;
        if replay.torn_len > 0 {
            file.set_len(replay.valid_len)
                .map_err(io("truncate the torn last record"))?;
            file.sync_all().map_err(io("fsync"))?;
        }
        let mut journal = Journal {
            file,
            path: path.to_path_buf(),
            len: replay.valid_len,
        };
        if created {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io("fsync the directory"))?;
            }
        }
        if replay.records.is_empty() {
            journal.append(&records::DiskprepRecord::NewJournalFile.to_record())?;
        }
        Ok((journal, replay))
    }

    /// Appends `record` with a single write at the end of the complete records and fsyncs it.
    pub fn append(&mut self, record: &JournalRecord) -> Result<(), JournalError> {
        let bytes = record.encode()?;
        let path = &self.path;
        let io = |action| {
            move |source| JournalError::Io {
                path: path.clone(),
                action,
                source,
            }
        };
        use std::io::Seek;
        (&self.file)
            .seek(std::io::SeekFrom::Start(self.len))
            .map_err(io("seek"))?;
        (&self.file).write_all(&bytes).map_err(io("append"))?;
        self.file.sync_data().map_err(io("fsync"))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Length of the journal in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the journal holds no bytes (never true after [`Journal::open`]).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads the journal at `path` without modifying it.
pub fn replay(path: &Path) -> Result<Replay, JournalError> {
    let file = File::open(path).map_err(|source| JournalError::Io {
        path: path.to_path_buf(),
        action: "open",
        source,
    })?;
    parse_journal(BufReader::new(file), path)
}

/// Takes an exclusive `flock`. A lock can outlive its holder's close by a moment (a child forked while the
/// descriptor was open keeps it until it execs), so a busy lock is retried for up to a second before
/// reporting [`JournalError::Locked`].
fn lock(file: &File, path: &Path) -> Result<(), JournalError> {
    use std::os::fd::AsRawFd;
    for attempt in 0..20 {
        // SAFETY: flock on a file descriptor we own for the duration of the call; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(JournalError::Io {
                path: path.to_path_buf(),
                action: "lock",
                source: err,
            });
        }
        if attempt < 19 {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    Err(JournalError::Locked {
        path: path.to_path_buf(),
    })
}
