//! Importing one drive: identify it, unlock it, check its manifest, then copy every verified page range
//! into its page blob (every verified block into its block blob, committed when all are there) and write
//! the copy log. Problems with the drive as a whole (wrong key, manifest
//! mismatch) end the drive with a drive status code and no data written; problems with a range or a blob
//! are logged against it and the copy goes on; each part file's ranges are checked by shared's
//! [`verify_blob_file`] (parallel MD5). Only failures to write the copy log itself are errors.

use super::{ContainerStores, JobInfo};
use seedship_shared::api::DriveState;
use seedship_shared::blob::{BlobError, BlobStore, PAGE_SIZE};
use seedship_shared::luks::{LuksError, LuksHeader, LuksVolume};
use seedship_shared::manifest::copylog::{
    log_blob_name, verify_blob_file, BlobStatus, DispositionStatus, DriveLog, DriveStatus, LogBlob,
    LogDisposition, LogKind, LogRange, LogRanges, RangeStatus,
};
use seedship_shared::manifest::{
    Block, DriveFilePath, DriveManifest, ManifestBlob, ManifestError, Md5Hash, RangeList,
};
use seedship_shared::recovery::RecoveryKey;
use seedship_shared::tar::TarReader;

pub use super::disposition::{resolve_block_target, resolve_target, Target};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

/// The largest manifest read (the reference advises about 3 GB per 7 TB; the emulator's drives are small).
pub const MAX_MANIFEST_LEN: u64 = 256 << 20;

/// Why the copy log could not be stored: the import of the drive cannot be reported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("drive {drive}: writing the copy log {log} into container {container}: {source}")]
    Log {
        drive: String,
        container: String,
        log: String,
        #[source]
        source: Box<BlobError>,
    },
    #[error("drive {drive}: the copy log cannot be written as XML: {source}")]
    Format {
        drive: String,
        #[source]
        source: Box<ManifestError>,
    },
}

/// What became of a drive.
#[derive(Debug, Clone)]
pub struct DriveOutcome {
    /// From the LUKS2 label (the drive file's name when there is no readable header).
    pub drive_id: String,
    pub status: DriveStatus,
    /// `Completed` when the status is, `CompletedMoreInfo` otherwise.
    pub state: DriveState,
    /// Bytes of verified ranges written.
    pub bytes_written: u64,
    pub blobs: usize,
    pub ranges_written: usize,
    pub ranges_corrupted: usize,
    /// Ranges not written for another reason (skipped blob, failed request, short file).
    pub ranges_not_written: usize,
    /// (container, blob name) of the error log and of the verbose log.
    pub error_log: (String, String),
    pub verbose_log: Option<(String, String)>,
    pub log: DriveLog,
}

/// The state kept across the drives of one job: which blob each manifest blob path was written to, so the
/// parts of a blob spanning drives land in the same blob and the disposition is applied only once.
#[derive(Debug, Default)]
pub struct ImportSession {
    targets: HashMap<String, Target>,
}

impl ImportSession {
    /// The target decided for a blob path, if any drive of the job named it already.
    pub fn target(&self, blob_path: &str) -> Option<&Target> {
        self.targets.get(blob_path)
    }
}

/// Imports one drive of `job` (see the module documentation); `now` (Unix seconds) stamps the log names.
pub fn import_drive(
    drive: &Path,
    job: &JobInfo,
    stores: &dyn ContainerStores,
    session: &mut ImportSession,
    now: i64,
) -> Result<DriveOutcome, ImportError> {
    let fallback_id = drive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut log = DriveLog::new(&fallback_id, DriveStatus::InternalError);
    let mut counts = Counts::default();
    let status = copy_drive(drive, job, stores, session, &mut log, &mut counts);
    log.status = status;
    let (container, prefix) = job.states_location();
    let stamp: String = crate::odata::iso8601(now)
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let stamp = format!("{}-{}", &stamp[..8], &stamp[8..]);
    let name = |kind| {
        format!(
            "{prefix}{}",
            log_blob_name(&job.name, &log.drive_id, &stamp, kind)
        )
    };
    let error_name = name(LogKind::Error);
    write_log(stores, &container, &error_name, &log.error_log())?;
    let verbose_log = if job.verbose_log {
        let n = name(LogKind::Verbose);
        write_log(stores, &container, &n, &log)?;
        Some((container.clone(), n))
    } else {
        None
    };
    Ok(DriveOutcome {
        drive_id: log.drive_id.clone(),
        status,
        state: if status == DriveStatus::Completed {
            DriveState::Completed
        } else {
            DriveState::CompletedMoreInfo
        },
        bytes_written: counts.bytes,
        blobs: log.blobs.len(),
        ranges_written: counts.written,
        ranges_corrupted: counts.corrupted,
        ranges_not_written: counts.not_written,
        error_log: (container, error_name),
        verbose_log,
        log,
    })
}

impl DriveOutcome {
    /// The drive state's wire name.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            DriveState::Completed => "Completed",
            _ => "CompletedMoreInfo",
        }
    }
}

/// Stores a log as a page blob: the XML padded with spaces to a whole page (still well-formed XML).
fn write_log(
    stores: &dyn ContainerStores,
    container: &str,
    name: &str,
    log: &DriveLog,
) -> Result<(), ImportError> {
    let err = |source| ImportError::Log {
        drive: log.drive_id.clone(),
        container: container.to_owned(),
        log: name.to_owned(),
        source: Box::new(source),
    };
    let mut text = log.to_xml().map_err(|e| ImportError::Format {
        drive: log.drive_id.clone(),
        source: Box::new(e),
    })?;
    let len = text.len() as u64;
    text.resize(len.div_ceil(PAGE_SIZE) as usize * PAGE_SIZE as usize, b' ');
    let store = stores.container(container).map_err(err)?;
    let mut meta = seedship_shared::blob::Metadata::new();
    meta.insert("loglength".into(), len.to_string());
    store.create(name, text.len() as u64, &meta).map_err(err)?;
    store.write_pages(name, 0, &text).map_err(err)
}

#[derive(Debug, Default)]
struct Counts {
    bytes: u64,
    written: usize,
    corrupted: usize,
    not_written: usize,
}

/// Everything up to the drive status; fills `log`.
fn copy_drive(
    drive: &Path,
    job: &JobInfo,
    stores: &dyn ContainerStores,
    session: &mut ImportSession,
    log: &mut DriveLog,
    counts: &mut Counts,
) -> DriveStatus {
    let Ok(file) = std::fs::File::open(drive) else {
        return DriveStatus::DiskNotFound;
    };
    // The drive id comes from the LUKS2 label, before unlocking (as the service reads the serial number).
    let header = match LuksHeader::read(&file) {
        Ok(h) => h,
        Err(LuksError::Io { .. } | LuksError::Truncated { .. }) => return DriveStatus::DiskNotFound,
        Err(_) => return DriveStatus::BitLockerVolumeNotFound,
    };
    log.drive_id = header.label().to_owned();
    let Some(spec) = job.drive(header.label()) else {
        return DriveStatus::ManifestDriveIdMismatch;
    };
    let Ok(key) = RecoveryKey::parse(&spec.bitlocker_key) else {
        return DriveStatus::BitLockerKeyInvalid;
    };
    let volume = match LuksVolume::open(&file, key.passphrase()) {
        Ok(v) => v,
        Err(LuksError::WrongKey { .. }) => return DriveStatus::BitLockerUnlockVolumeFailed,
        Err(_) => return DriveStatus::BitLockerFailed,
    };
    let mut tar = TarReader::new(volume.reader(&file));
    let manifest_member = DriveFilePath::tar_path_of(&spec.manifest_file);
    let text = {
        let mut entry = match tar.next_entry() {
            Ok(Some(e)) if e.info.path == manifest_member => e,
            Ok(_) => return DriveStatus::ManifestNotFound,
            Err(_) => return DriveStatus::ReadManifestFailed,
        };
        if entry.info.size > MAX_MANIFEST_LEN {
            return DriveStatus::ManifestFormatInvalid;
        }
        let mut text = Vec::with_capacity(entry.info.size as usize);
        if entry.read_to_end(&mut text).is_err() {
            return DriveStatus::ReadManifestFailed;
        }
        text
    };
    if !manifest_digest_matches(&spec.manifest_hash, &text) {
        return DriveStatus::ManifestCorrupted;
    }
    let Ok(manifest) = DriveManifest::parse(&text) else {
        return DriveStatus::ManifestFormatInvalid;
    };
    if manifest.header.drive_id != header.label() {
        return DriveStatus::ManifestDriveIdMismatch;
    }
    let blobs: Vec<&ManifestBlob> = manifest.blob_lists.iter().flat_map(|l| &l.blobs).collect();
    let mut by_member: HashMap<String, usize> = HashMap::new();
    for (i, b) in blobs.iter().enumerate() {
        by_member.insert(DriveFilePath::tar_path_of(&b.file_path), i);
    }
    log.blobs = blobs
        .iter()
        .map(|b| LogBlob {
            status: BlobStatus::FileNotFound,
            blob_path: b.blob_path.clone(),
            imported_blob_path: None,
            file_path: b.file_path.clone(),
            snapshot: None,
            length: b.length,
            last_modified: None,
            disposition: None,
            ranges: None,
            metadata: None,
            properties: None,
        })
        .collect();
    loop {
        let mut entry = match tar.next_entry() {
            Ok(Some(e)) => e,
            Ok(None) => break,
            // The rest of the archive cannot be read: what was not reached stays FileNotFound.
            Err(_) => break,
        };
        let Some(&i) = by_member.get(&entry.info.path) else {
            continue;
        };
        let blob = blobs[i];
        let target = session
            .targets
            .entry(blob.blob_path.clone())
            .or_insert_with(|| first_target(stores, blob))
            .clone();
        copy_blob(&mut entry, blob, &target, stores, &mut log.blobs[i], counts);
    }
    if log.blobs.iter().all(|b| b.status == BlobStatus::Completed) {
        DriveStatus::Completed
    } else {
        DriveStatus::CompletedWithErrors
    }
}

/// The target of a blob path the job meets for the first time.
fn first_target(stores: &dyn ContainerStores, blob: &ManifestBlob) -> Target {
    let skip = |status| Target::Skip {
        status,
        disposition: DispositionStatus::Cancelled,
    };
    let Some((container, name)) = blob.blob_path.split_once('/') else {
        return skip(BlobStatus::BlobRequestFailed);
    };
    let block = matches!(blob.ranges, RangeList::Blocks(_));
    if (!block && !blob.length.is_multiple_of(PAGE_SIZE)) || (block && blob.part.is_some()) {
        return skip(BlobStatus::Failed);
    }
    match stores.container(container) {
        Ok(store) if block => resolve_block_target(
            store.as_ref(),
            container,
            name,
            blob.disposition.unwrap_or_default(),
        ),
        Ok(store) => resolve_target(
            store.as_ref(),
            container,
            name,
            blob.length,
            blob.disposition.unwrap_or_default(),
        ),
        Err(BlobError::Http { status: 403, .. }) => skip(BlobStatus::BlobRequestForbidden),
        Err(_) => skip(BlobStatus::BlobRequestFailed),
    }
}

/// Reads one part file, checks its ranges against the manifest with [`verify_blob_file`] and writes the
/// verified ones into the target blob.
fn copy_blob(
    entry: &mut impl Read,
    blob: &ManifestBlob,
    target: &Target,
    stores: &dyn ContainerStores,
    out: &mut LogBlob,
    counts: &mut Counts,
) {
    let requested = blob.disposition.unwrap_or_default();
    let (store, status, disposition) = match target {
        Target::Write {
            container,
            name,
            disposition,
        } => {
            if *disposition == DispositionStatus::Renamed {
                out.imported_blob_path = Some(format!("{container}/{name}"));
            }
            match stores.container(container) {
                Ok(s) => (Some((s, name.as_str())), BlobStatus::Completed, *disposition),
                Err(_) => (None, BlobStatus::BlobRequestFailed, *disposition),
            }
        }
        Target::Skip { status, disposition } => (None, *status, *disposition),
    };
    out.disposition = Some(LogDisposition {
        requested,
        status: disposition,
    });
    let pages = match &blob.ranges {
        RangeList::Pages(pages) => pages,
        RangeList::Blocks(blocks) => {
            let store = store.as_ref().map(|(s, name)| (s.as_ref(), *name));
            copy_block_blob(entry, blob, blocks, store, status, out, counts);
            return;
        }
    };
    let mut failed_writes = HashSet::new();
    let mut written_here = 0;
    let verified = verify_blob_file(entry, blob, verify_threads(), |range, data| {
        if let Some((s, name)) = &store {
            match s.write_pages(name, range.offset, data) {
                Ok(()) => {
                    written_here += 1;
                    counts.bytes += range.length;
                }
                Err(_) => {
                    failed_writes.insert(range.offset);
                }
            }
        }
        Ok(())
    });
    counts.written += written_here;
    let mut ranges = match verified {
        Ok(ranges) => ranges,
        // The drive could not be read at some point: what was written is counted, the blob is IOFailed.
        Err(_) => {
            let ranges = blob_ranges(blob, RangeStatus::IOFailed);
            counts.not_written += pages.len().saturating_sub(written_here);
            (out.status, out.ranges) = (BlobStatus::IOFailed, Some(LogRanges::Pages(ranges)));
            return;
        }
    };
    for r in &mut ranges {
        if r.status == RangeStatus::Completed {
            if store.is_none() {
                r.status = RangeStatus::Cancelled;
            } else if failed_writes.contains(&r.offset) {
                r.status = RangeStatus::BlobRequestFailed;
            }
        }
        match r.status {
            RangeStatus::Completed => {}
            RangeStatus::Corrupted => counts.corrupted += 1,
            _ => counts.not_written += 1,
        }
    }
    out.status = if store.is_none() {
        status
    } else if !failed_writes.is_empty() {
        BlobStatus::BlobRequestFailed
    } else if ranges.iter().any(|r| r.status != RangeStatus::Completed) {
        BlobStatus::CompletedWithErrors
    } else {
        BlobStatus::Completed
    };
    out.ranges = Some(LogRanges::Pages(ranges));
}

/// Reads a block blob's drive file, checks each block against the manifest ([`verify_blob_file`]), uploads
/// the verified ones (Put Block, with each block's MD5 for the service to check again) and, when every block
/// is there, commits the list (Put Block List), which creates the block blob. A blob with a bad block is not
/// committed (its blocks would not make the file): its good blocks are logged `Uncommitted`, the bad ones
/// `Corrupted`.
fn copy_block_blob(
    entry: &mut impl Read,
    blob: &ManifestBlob,
    blocks: &[Block],
    store: Option<(&dyn BlobStore, &str)>,
    status: BlobStatus,
    out: &mut LogBlob,
    counts: &mut Counts,
) {
    use base64::Engine;
    // A manifest gives every block an Id or none; without them, WAImportExport's: the LE index in Base64.
    let ids: Vec<String> = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| {
            b.id.clone()
                .unwrap_or_else(|| base64::engine::general_purpose::STANDARD.encode((i as u32).to_le_bytes()))
        })
        .collect();
    let id_at: HashMap<u64, &str> = blocks
        .iter()
        .zip(&ids)
        .map(|(b, id)| (b.offset, id.as_str()))
        .collect();
    let mut failed_puts = HashSet::new();
    let mut uploaded = 0;
    let verified = verify_blob_file(entry, blob, verify_threads(), |range, data| {
        if let Some((s, name)) = store {
            match s.put_block(name, id_at[&range.offset], data) {
                Ok(()) => uploaded += range.length,
                Err(_) => {
                    failed_puts.insert(range.offset);
                }
            }
        }
        Ok(())
    });
    let Ok(mut ranges) = verified else {
        // The drive could not be read at some point: nothing is committed.
        counts.not_written += blocks.len();
        let ranges = blob_ranges(blob, RangeStatus::IOFailed);
        (out.status, out.ranges) = (BlobStatus::IOFailed, Some(LogRanges::Blocks(ranges)));
        return;
    };
    let all_verified = ranges.iter().all(|r| r.status == RangeStatus::Completed);
    let committed = match store {
        Some((s, name)) if all_verified && failed_puts.is_empty() => s.put_block_list(name, &ids).is_ok(),
        _ => false,
    };
    for r in &mut ranges {
        if r.status == RangeStatus::Completed {
            r.status = if store.is_none() {
                RangeStatus::Cancelled
            } else if failed_puts.contains(&r.offset) {
                RangeStatus::BlobRequestFailed
            } else if !committed {
                RangeStatus::Uncommitted
            } else {
                RangeStatus::Completed
            };
        }
        match r.status {
            RangeStatus::Completed => counts.written += 1,
            RangeStatus::Corrupted => counts.corrupted += 1,
            _ => counts.not_written += 1,
        }
    }
    if committed {
        counts.bytes += uploaded;
    }
    out.status = if store.is_none() {
        status
    } else if !failed_puts.is_empty() || (all_verified && !committed) {
        BlobStatus::BlobRequestFailed
    } else if !committed {
        BlobStatus::CompletedWithErrors
    } else {
        BlobStatus::Completed
    };
    out.ranges = Some(LogRanges::Blocks(ranges));
}

/// The manifest's ranges of `blob`, all with `status`.
fn blob_ranges(blob: &ManifestBlob, status: RangeStatus) -> Vec<LogRange> {
    let range = |offset, length, id: Option<String>, hash| LogRange {
        offset,
        length,
        id,
        hash: Some(hash),
        status,
    };
    match &blob.ranges {
        RangeList::Pages(p) => p
            .iter()
            .map(|r| range(r.offset, r.length, None, r.hash))
            .collect(),
        RangeList::Blocks(b) => b
            .iter()
            .map(|r| range(r.offset, r.length, r.id.clone(), r.hash))
            .collect(),
    }
}

/// Threads hashing the ranges of a blob (the ranges of two batches are held in memory, 4 MiB each).
fn verify_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// Whether `hash` (from the job) is the manifest's digest: 32 hex digits are its MD5 (the classic API, and the
/// Resource Manager specification's definition), 64 its SHA-256 (the form of one Resource Manager example).
fn manifest_digest_matches(hash: &str, manifest: &[u8]) -> bool {
    use sha2::Digest;
    if hash.len() == 64 {
        return hex::encode_upper(sha2::Sha256::digest(manifest)).eq_ignore_ascii_case(hash);
    }
    let expected: Result<Md5Hash, _> = hash.parse();
    expected == Ok(Md5Hash::of(manifest))
}

#[cfg(test)]
mod tests {
    use super::manifest_digest_matches;

    #[test]
    fn manifest_hash_is_md5_or_sha256_by_length() {
        let m = b"<DriveManifest/>";
        // `printf '<DriveManifest/>' | md5sum` and `| sha256sum`
        let md5 = "C71FAA7933B9CAD765F7267D385D6432";
        let sha = "2A60B3F71357949C7457E7B2B7D17904F4082FC617425E5F5EE49F5F01B10D7A";
        assert!(manifest_digest_matches(md5, m));
        assert!(manifest_digest_matches(sha, m));
        assert!(manifest_digest_matches(&sha.to_ascii_lowercase(), m));
        assert!(!manifest_digest_matches(md5, b"<DriveManifest />"));
        assert!(!manifest_digest_matches(sha, b"<DriveManifest />"));
        assert!(!manifest_digest_matches(&sha[..40], m));
    }
}
