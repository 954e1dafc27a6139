//! The jobs of a staging location, as diskprep sees them: found by their descriptors, checked before
//! anything is written (every blob present, with the length the descriptor records; the BLAKE3 it records
//! is checked while the blob is copied), and turned into the extents the spanning planner needs.

use crate::prep::plan::BlobExtents;
use seedship_shared::blob::{BlobStore, LocalStore};
use seedship_shared::progress::Progress;
use seedship_shared::staging::{JobDescriptor, JobState, BLOBS_DIR, DESCRIPTOR_FILE};
use std::path::{Path, PathBuf};

/// One job folder of the staging location.
#[derive(Debug, Clone)]
pub struct StagedJob {
    /// `<staging>/<job>`.
    pub dir: PathBuf,
    pub descriptor: JobDescriptor,
}

impl StagedJob {
    /// `<staging>/<job>/blobs`.
    pub fn blobs_dir(&self) -> PathBuf {
        self.dir.join(BLOBS_DIR)
    }

    /// The total bytes of the job's blobs.
    pub fn total_len(&self) -> u64 {
        self.descriptor.blobs.iter().map(|b| b.len).sum()
    }
}

/// Why a staging location cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StagingCheckError {
    #[error(
        "cannot read staging location: {}",
        seedship_shared::staging::explain_io(path, error)
    )]
    Io { path: PathBuf, error: std::io::Error },
    #[error(
        "staging location {staging} holds no import job (no <job>/{DESCRIPTOR_FILE}); run `seedship-agent offline start` \
         and `seedship-agent backup` on the source machine first, or check the path"
    )]
    NoJob { staging: PathBuf },
    #[error("job folder {dir} is damaged: {reason}")]
    BadDescriptor { dir: PathBuf, reason: String },
    #[error("job {job} is not ready: its initial backup has not completed (run `seedship-agent backup` until it finishes)")]
    NotReady { job: String },
    #[error("job {job} in {dir} was created from prepimport journals (create-job --journal): it has no staged backup to copy; its drives are prepared with PrepImport (docs/waimportexport.md)")]
    FromJournals { job: String, dir: PathBuf },
    #[error("job {job}: staging blob {blob} is missing ({path}); the staging data is incomplete, rerun the backup")]
    MissingBlob {
        job: String,
        blob: String,
        path: PathBuf,
    },
    #[error("job {job}: staging blob {blob} is {found} bytes long, the job descriptor says {expected}; the staging data is damaged or incomplete")]
    WrongLength {
        job: String,
        blob: String,
        expected: u64,
        found: u64,
    },
    #[error("job {job}: {source}")]
    Store {
        job: String,
        #[source]
        source: Box<seedship_shared::blob::BlobError>,
    },
}

/// Every job folder under `staging`, sorted by job name. A folder whose descriptor cannot be read is an
/// error (a damaged job is reported, not skipped).
pub fn find_jobs(staging: &Path) -> Result<Vec<StagedJob>, StagingCheckError> {
    let rd = std::fs::read_dir(staging).map_err(|error| StagingCheckError::Io {
        path: staging.to_owned(),
        error,
    })?;
    let mut jobs = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|error| StagingCheckError::Io {
            path: staging.to_owned(),
            error,
        })?;
        let dir = entry.path();
        if !dir.join(DESCRIPTOR_FILE).exists() {
            continue;
        }
        let descriptor = JobDescriptor::load(&dir).map_err(|e| StagingCheckError::BadDescriptor {
            dir: dir.clone(),
            reason: e.to_string(),
        })?;
        jobs.push(StagedJob { dir, descriptor });
    }
    if jobs.is_empty() {
        return Err(StagingCheckError::NoJob {
            staging: staging.to_owned(),
        });
    }
    jobs.sort_by(|a, b| a.descriptor.job_name.cmp(&b.descriptor.job_name));
    Ok(jobs)
}

/// Checks a job before anything is written: complete, every blob present with the recorded length.
/// Returns the blobs' extents (where their data is) for the planner. The blobs' BLAKE3 digests are checked
/// while they are copied ([`crate::prep::source::BlobDigest`]), so this reads no data; `progress` counts blobs'
/// bytes as they are looked at.
pub fn check_job(job: &StagedJob, progress: &dyn Progress) -> Result<Vec<BlobExtents>, StagingCheckError> {
    let d = &job.descriptor;
    if d.is_from_journals() {
        return Err(StagingCheckError::FromJournals {
            job: d.job_name.clone(),
            dir: job.dir.clone(),
        });
    }
    if d.state != JobState::BackupComplete || d.blobs.is_empty() {
        return Err(StagingCheckError::NotReady {
            job: d.job_name.clone(),
        });
    }
    let store = LocalStore::new(job.blobs_dir());
    progress.set_total(job.total_len());
    let mut extents = Vec::with_capacity(d.blobs.len());
    for blob in &d.blobs {
        let path = job.blobs_dir().join(&blob.name);
        let found = std::fs::metadata(&path)
            .map_err(|_| StagingCheckError::MissingBlob {
                job: d.job_name.clone(),
                blob: blob.name.clone(),
                path: path.clone(),
            })?
            .len();
        if found != blob.len {
            return Err(StagingCheckError::WrongLength {
                job: d.job_name.clone(),
                blob: blob.name.clone(),
                expected: blob.len,
                found,
            });
        }
        let data = store
            .page_ranges(&blob.name)
            .map_err(|e| StagingCheckError::Store {
                job: d.job_name.clone(),
                source: Box::new(e),
            })?;
        progress.inc(blob.len);
        extents.push(BlobExtents {
            name: blob.name.clone(),
            len: blob.len,
            data,
        });
    }
    Ok(extents)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use seedship_shared::progress::NoProgress;
    use seedship_shared::staging::StagedBlob;

    /// Writes a ready job with the given blobs (name, bytes) under `staging/<job>`.
    pub(crate) fn make_job(staging: &Path, job: &str, blobs: &[(&str, Vec<u8>)]) -> StagedJob {
        let dir = staging.join(job);
        let mut staged = Vec::new();
        for (name, bytes) in blobs {
            let p = dir.join(BLOBS_DIR).join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, bytes).unwrap();
            staged.push(StagedBlob {
                name: name.to_string(),
                len: bytes.len() as u64,
                blake3: blake3::hash(bytes).to_hex().to_string(),
            });
        }
        let descriptor = JobDescriptor {
            format: 1,
            job_name: job.into(),
            subscription: "sub".into(),
            storage_account: "acct".into(),
            container: "seed".into(),
            publish_settings: "/nowhere.publishsettings".into(),
            api: Default::default(),
            source_host: "fs1".into(),
            repository_id: "r".into(),
            state: JobState::BackupComplete,
            created: 0,
            blobs: staged,
        };
        descriptor.save(&dir).unwrap();
        StagedJob { dir, descriptor }
    }

    #[test]
    fn jobs_are_found_checked_and_measured() {
        let t = tempfile::tempdir().unwrap();
        let mut sparse = vec![0u8; 1 << 20];
        sparse[4096..8192].fill(7);
        make_job(t.path(), "jobb", &[("config", vec![1; 512])]);
        let job = make_job(
            t.path(),
            "joba",
            &[("config", vec![1; 512]), ("data/0000", sparse)],
        );
        let jobs = find_jobs(t.path()).unwrap();
        assert_eq!(
            jobs.iter()
                .map(|j| j.descriptor.job_name.as_str())
                .collect::<Vec<_>>(),
            ["joba", "jobb"]
        );
        let ext = check_job(&job, &NoProgress).unwrap();
        assert_eq!(ext[0].data, vec![0..512]);
        assert!(ext[1].data.iter().any(|r| r.contains(&4096)), "{:?}", ext[1].data);
    }

    #[test]
    fn refusals_name_the_job_and_blob() {
        let t = tempfile::tempdir().unwrap();
        assert!(matches!(
            find_jobs(t.path()),
            Err(StagingCheckError::NoJob { .. })
        ));
        let job = make_job(
            t.path(),
            "job1",
            &[("config", vec![1; 512]), ("data/0000", vec![2; 4096])],
        );
        let data = job.blobs_dir().join("data/0000");
        let mut bytes = std::fs::read(&data).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&data, &bytes).unwrap();
        // A changed byte is found while copying (the BLAKE3 is checked then), not here.
        check_job(&job, &NoProgress).unwrap();
        std::fs::write(&data, &bytes[..512]).unwrap();
        let e = check_job(&job, &NoProgress).unwrap_err().to_string();
        assert!(e.contains("512 bytes long") && e.contains("4096"), "{e}");
        std::fs::remove_file(&data).unwrap();
        let e = check_job(&job, &NoProgress).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
        std::fs::write(job.dir.join(DESCRIPTOR_FILE), "{").unwrap();
        assert!(matches!(
            find_jobs(t.path()),
            Err(StagingCheckError::BadDescriptor { .. })
        ));
    }
}
