//! The key file: the recovery key and drive id of every prepared drive, for the operator and for job
//! creation. It is created readable and writable by its owner only (mode 0600) before any key is written
//! to it, and keys go nowhere else: never to the log, never to the terminal unless asked.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// One drive's line in the key file.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub job: String,
    pub drive_id: String,
    pub recovery_key: String,
    /// Where the drive was when it was prepared (device or image path).
    pub target: String,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("job", &self.job)
            .field("drive_id", &self.drive_id)
            .field("recovery_key", &"<redacted>")
            .field("target", &self.target)
            .finish()
    }
}

/// Errors of the key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "key file {path} is readable by others (mode {mode:o}); run `chmod 600 {path}` and check who may have read it"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("key file {path}, line {line}: not a key entry (expected job, drive id, key and target separated by tabs)")]
    Malformed { path: PathBuf, line: usize },
}

const HEADER: &str =
    "# seedship-diskprep key file: job, drive id, BitLocker-style recovery key, target. Keep it secret.\n";

/// Appends `entry` to the key file at `path`, creating it with mode 0600 when missing, and refuses a file
/// that others can read. Replaces nothing: a drive prepared twice has two lines, the last one counts.
pub fn append(path: &Path, entry: &KeyEntry) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = String::new();
    if meta.len() == 0 {
        text.push_str(HEADER);
    }
    text.push_str(&format!(
        "{}\t{}\t{}\t{}\n",
        entry.job, entry.drive_id, entry.recovery_key, entry.target
    ));
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(io)
}

/// Reads every entry; for a drive listed more than once, the last line wins.
pub fn read(path: &Path) -> Result<Vec<KeyEntry>, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut entries: Vec<KeyEntry> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let [job, drive_id, recovery_key, target] = f[..] else {
            return Err(KeyFileError::Malformed {
                path: path.to_owned(),
                line: i + 1,
            });
        };
        entries.retain(|e| !(e.job == job && e.drive_id == drive_id));
        entries.push(KeyEntry {
            job: job.into(),
            drive_id: drive_id.into(),
            recovery_key: recovery_key.into(),
            target: target.into(),
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(drive: &str, key: &str) -> KeyEntry {
        KeyEntry {
            job: "job1".into(),
            drive_id: drive.into(),
            recovery_key: key.into(),
            target: "/tmp/d.img".into(),
        }
    }

    #[test]
    fn created_private_and_last_line_wins() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("keys.tsv");
        append(&p, &entry("D1", "111111-000000")).unwrap();
        append(&p, &entry("D2", "222222-000000")).unwrap();
        append(&p, &entry("D1", "333333-000000")).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let got = read(&p).unwrap();
        assert_eq!(
            got,
            vec![entry("D2", "222222-000000"), entry("D1", "333333-000000")]
        );
        assert!(!format!("{:?}", got[0]).contains("222222"));
    }

    #[test]
    fn an_open_file_is_refused_before_writing() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("keys.tsv");
        std::fs::write(&p, "").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = append(&p, &entry("D1", "1")).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
    }

    #[test]
    fn malformed_lines_are_named() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("keys.tsv");
        std::fs::write(&p, "# header\njob1\tD1\n").unwrap();
        assert!(matches!(read(&p), Err(KeyFileError::Malformed { line: 2, .. })));
    }
}
