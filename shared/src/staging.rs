//! The staging location's job descriptor: `<staging>/<job>/job.json` beside `<staging>/<job>/blobs/`.
//!
//! It says which import job the folder belongs to (job name, subscription, storage account, container,
//! publish-settings path, source host, repository id), where the job stands, and, once the initial backup is
//! complete, every blob under `blobs/` with its length and BLAKE3 digest, so diskprep copies exactly those
//! bytes and anyone can verify them. Written atomically (temporary file, fsync, rename, fsync of the folder).

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of the descriptor inside the job folder.
pub const DESCRIPTOR_FILE: &str = "job.json";
/// Folder of the blobs inside the job folder.
pub const BLOBS_DIR: &str = "blobs";

/// Where a staged job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Created by `offline start`; the initial backup has not completed.
    Created,
    /// The initial backup is complete and the blob list is final: ready for diskprep.
    BackupComplete,
}

/// One blob of the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedBlob {
    /// Blob name (relative path under `blobs/`).
    pub name: String,
    /// Length in bytes (a multiple of 512).
    pub len: u64,
    /// BLAKE3 of the whole blob, hex.
    pub blake3: String,
}

/// The job descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDescriptor {
    pub format: u32,
    pub job_name: String,
    pub subscription: String,
    pub storage_account: String,
    pub container: String,
    pub publish_settings: PathBuf,
    pub source_host: String,
    pub repository_id: String,
    pub state: JobState,
    /// Seconds since the Unix epoch.
    pub created: i64,
    #[serde(default)]
    pub blobs: Vec<StagedBlob>,
}

/// An I/O failure on `path` said once, in words, with what to check: a missing path names the deepest
/// folder that does exist and asks whether the disk is mounted; a permission error names the user to run as.
pub fn explain_io(path: &Path, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            let existing = path.ancestors().skip(1).find(|a| a.exists());
            match existing {
                Some(a) if a != Path::new("/") => format!(
                    "{} does not exist ({} does): is the disk holding it mounted, or was it moved or renamed?",
                    path.display(),
                    a.display()
                ),
                _ => format!(
                    "{} does not exist: is the disk holding it mounted, or was it moved or renamed?",
                    path.display()
                ),
            }
        }
        std::io::ErrorKind::PermissionDenied => format!(
            "{}: permission denied: run as the user that owns it (or root), or give this user access",
            path.display()
        ),
        _ => format!("{}: {e}", path.display()),
    }
}

/// Errors reading or writing a descriptor.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// The message says the path, the cause once, and what to check ([`explain_io`]).
    #[error("{}", explain_io(path, error))]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: not a valid job descriptor: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl JobDescriptor {
    /// The descriptor path of a job folder.
    pub fn path_in(job_dir: &Path) -> PathBuf {
        job_dir.join(DESCRIPTOR_FILE)
    }

    /// Reads `job_dir/job.json`.
    pub fn load(job_dir: &Path) -> Result<Self, StagingError> {
        let path = Self::path_in(job_dir);
        let bytes = std::fs::read(&path).map_err(|error| StagingError::Io {
            path: path.clone(),
            error,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| StagingError::Parse { path, source })
    }

    /// Writes `job_dir/job.json` atomically and durably.
    pub fn save(&self, job_dir: &Path) -> Result<(), StagingError> {
        let path = Self::path_in(job_dir);
        let tmp = job_dir.join(".job.json.tmp");
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |error| StagingError::Io { path: p, error }
        };
        let mut json = serde_json::to_vec_pretty(self).expect("serializable");
        json.push(b'\n');
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&json).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(job_dir)
            .and_then(|d| d.sync_all())
            .map_err(io(job_dir))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let d = JobDescriptor {
            format: 1,
            job_name: "job1".into(),
            subscription: "sub".into(),
            storage_account: "acct".into(),
            container: "seed".into(),
            publish_settings: "/x.publishsettings".into(),
            source_host: "fs1".into(),
            repository_id: "00".into(),
            state: JobState::BackupComplete,
            created: 1,
            blobs: vec![StagedBlob {
                name: "config".into(),
                len: 512,
                blake3: "ab".into(),
            }],
        };
        d.save(dir.path()).unwrap();
        assert_eq!(JobDescriptor::load(dir.path()).unwrap(), d);
        let text = std::fs::read_to_string(dir.path().join("job.json")).unwrap();
        assert!(text.contains("\"backup-complete\""), "{text}");
        std::fs::write(dir.path().join("job.json"), "{").unwrap();
        let e = JobDescriptor::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("job.json"), "{e}");
    }
}
