//! The jobs of a staging location, as diskprep sees them: found by their descriptors, checked before
//! anything is written (every blob present, with the length and BLAKE3 the descriptor records), and turned
//! into the extents the spanning planner needs.

use crate::plan::BlobExtents;
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
    #[error("cannot read staging location {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "staging location {staging} holds no import job (no <job>/{DESCRIPTOR_FILE}); run `seedship-agent offline start` \
         and `seedship-agent backup` on the source machine first, or check the path"
    )]
    NoJob { staging: PathBuf },
    #[error("job folder {dir} is damaged: {reason}")]
    BadDescriptor { dir: PathBuf, reason: String },
    #[error("job {job} is not ready: its initial backup has not completed (run `seedship-agent backup` until it finishes)")]
    NotReady { job: String },
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
    #[error("job {job}: staging blob {blob} does not match its BLAKE3 digest in the job descriptor; the staging data is damaged")]
    WrongDigest { job: String, blob: String },
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
    let rd = std::fs::read_dir(staging).map_err(|source| StagingCheckError::Io {
        path: staging.to_owned(),
        source,
    })?;
    let mut jobs = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| StagingCheckError::Io {
            path: staging.to_owned(),
            source,
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

/// Checks a job before anything is written: complete, every blob present with the recorded length and
/// BLAKE3. Returns the blobs' extents (where their data is) for the planner. Reads every byte once, each
/// large blob on every core; `progress` counts bytes.
pub fn check_job(job: &StagedJob, progress: &dyn Progress) -> Result<Vec<BlobExtents>, StagingCheckError> {
    let d = &job.descriptor;
    if d.state != JobState::BackupComplete || d.blobs.is_empty() {
        return Err(StagingCheckError::NotReady {
            job: d.job_name.clone(),
        });
    }
    let store = LocalStore::new(job.blobs_dir());
    progress.set_total(job.total_len());
    let paths: Vec<PathBuf> = d.blobs.iter().map(|b| job.blobs_dir().join(&b.name)).collect();
    for (blob, path) in d.blobs.iter().zip(&paths) {
        let found = std::fs::metadata(path)
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
    }
    let digests = blake3_files(&paths, progress);
    let mut extents = Vec::with_capacity(d.blobs.len());
    for ((blob, path), digest) in d.blobs.iter().zip(&paths).zip(digests) {
        let digest = digest.map_err(|source| StagingCheckError::Io {
            path: path.clone(),
            source,
        })?;
        if !digest.eq_ignore_ascii_case(&blob.blake3) {
            return Err(StagingCheckError::WrongDigest {
                job: d.job_name.clone(),
                blob: blob.name.clone(),
            });
        }
        let data = store
            .page_ranges(&blob.name)
            .map_err(|e| StagingCheckError::Store {
                job: d.job_name.clone(),
                source: Box::new(e),
            })?;
        extents.push(BlobExtents {
            name: blob.name.clone(),
            len: blob.len,
            data,
        });
    }
    Ok(extents)
}

/// Files at least this long are split between threads (BLAKE3 is a tree: its subtrees hash independently).
const SPLIT_MIN: u64 = 32 << 20;

/// The BLAKE3 (hex) of each file, in turn, each large one on every core.
fn blake3_files(paths: &[PathBuf], progress: &dyn Progress) -> Vec<std::io::Result<String>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    paths
        .iter()
        .map(|p| blake3_file(p, threads, SPLIT_MIN, progress))
        .collect()
}

/// BLAKE3 of a file, hex: split into the two subtrees of the BLAKE3 tree, recursively, until there is one
/// part per thread (or parts below `split_min` bytes), the parts hashed on scoped threads and their chaining
/// values merged.
fn blake3_file(
    path: &Path,
    threads: usize,
    split_min: u64,
    progress: &dyn Progress,
) -> std::io::Result<String> {
    use blake3::hazmat::{left_subtree_len, merge_subtrees_root, Mode};
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if threads < 2 || len < split_min.max(2 * blake3::CHUNK_LEN as u64) {
        let mut hasher = blake3::Hasher::new();
        hash_range(&file, 0, len, &mut hasher, progress)?;
        return Ok(hasher.finalize().to_hex().to_string());
    }
    let left = left_subtree_len(len);
    let (l, r) = std::thread::scope(|s| {
        let right = s.spawn(|| subtree(&file, left, len - left, threads / 2, split_min, progress));
        let l = subtree(&file, 0, left, threads - threads / 2, split_min, progress);
        (l, right.join().expect("BLAKE3 hashing does not panic"))
    });
    Ok(merge_subtrees_root(&l?, &r?, Mode::Hash).to_hex().to_string())
}

/// The chaining value of the (non-root) subtree of `len` bytes at `offset`.
fn subtree(
    file: &std::fs::File,
    offset: u64,
    len: u64,
    threads: usize,
    split_min: u64,
    progress: &dyn Progress,
) -> std::io::Result<blake3::hazmat::ChainingValue> {
    use blake3::hazmat::{left_subtree_len, merge_subtrees_non_root, HasherExt, Mode};
    if threads < 2 || len < split_min.max(2 * blake3::CHUNK_LEN as u64) {
        let mut hasher = blake3::Hasher::new();
        hasher.set_input_offset(offset);
        hash_range(file, offset, len, &mut hasher, progress)?;
        return Ok(hasher.finalize_non_root());
    }
    let left = left_subtree_len(len);
    let (l, r) = std::thread::scope(|s| {
        let right = s.spawn(|| subtree(file, offset + left, len - left, threads / 2, split_min, progress));
        let l = subtree(file, offset, left, threads - threads / 2, split_min, progress);
        (l, right.join().expect("BLAKE3 hashing does not panic"))
    });
    Ok(merge_subtrees_non_root(&l?, &r?, Mode::Hash))
}

/// Feeds bytes `offset..offset + len` of the file to `hasher`.
fn hash_range(
    file: &std::fs::File,
    offset: u64,
    len: u64,
    hasher: &mut blake3::Hasher,
    progress: &dyn Progress,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; (1 << 20).min(len as usize)];
    let mut at = offset;
    while at < offset + len {
        let n = buf.len().min((offset + len - at) as usize);
        file.read_exact_at(&mut buf[..n], at)?;
        hasher.update(&buf[..n]);
        progress.inc(n as u64);
        at += n as u64;
    }
    Ok(())
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
    fn split_blake3_equals_blake3() {
        let t = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..5_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        for len in [
            0,
            1,
            1024,
            1025,
            2048,
            2049,
            100_000,
            1 << 20,
            3_333_333,
            5_000_000,
        ] {
            let p = t.path().join(format!("f{len}"));
            std::fs::write(&p, &data[..len]).unwrap();
            let want = blake3::hash(&data[..len]).to_hex().to_string();
            for threads in [1, 2, 3, 4, 7] {
                let got = blake3_file(&p, threads, 1, &NoProgress).unwrap();
                assert_eq!(got, want, "len {len}, {threads} threads");
            }
        }
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
        let e = check_job(&job, &NoProgress).unwrap_err().to_string();
        assert!(e.contains("data/0000") && e.contains("BLAKE3"), "{e}");
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
