//! Importing one drive: identify it, unlock it, check its manifest, then copy every verified page range
//! into its page blob and write the copy log. Problems with the drive as a whole (wrong key, manifest
//! mismatch) end the drive with a drive status code and no data written; problems with a range or a blob
//! are logged against it and the copy goes on. Only failures to write the copy log itself are errors.

use super::drivelog::{DriveLog, LogBlob, LogRange, DRIVE_LOG_VERSION};
use super::{ContainerStores, DriveStatus, JobInfo};
use seedship_shared::api::DriveState;
use seedship_shared::blob::{BlobError, BlobStore, PAGE_SIZE};
use seedship_shared::luks::{LuksError, LuksHeader, LuksVolume};
use seedship_shared::manifest::{DriveFilePath, DriveManifest, ManifestBlob, Md5Hash, RangeList};
use seedship_shared::recovery::RecoveryKey;
use seedship_shared::tar::TarReader;

pub use super::disposition::{resolve_target, Target};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

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
    let mut log = DriveLog {
        version: DRIVE_LOG_VERSION.into(),
        drive_id: fallback_id,
        ..DriveLog::default()
    };
    let mut counts = Counts::default();
    let status = copy_drive(drive, job, stores, session, &mut log, &mut counts);
    log.status = status.as_str().into();
    let (container, prefix) = job.states_location();
    let stamp: String = crate::odata::iso8601(now)
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let stamp = format!("{}-{}", &stamp[..8], &stamp[8..]);
    let name = |kind: &str| format!("{prefix}{}_{}_{stamp}_{kind}.xml", job.name, log.drive_id);
    let mut error_log = log.clone();
    error_log
        .blobs
        .retain(|b| b.status != "Completed" || b.ranges.iter().any(|r| r.status != "Completed"));
    let error_name = name("error");
    write_log(stores, &container, &error_name, &error_log, &log.drive_id)?;
    let verbose_log = if job.verbose_log {
        let n = name("verbose");
        write_log(stores, &container, &n, &log, &log.drive_id)?;
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
    drive: &str,
) -> Result<(), ImportError> {
    let err = |source| ImportError::Log {
        drive: drive.to_owned(),
        container: container.to_owned(),
        log: name.to_owned(),
        source: Box::new(source),
    };
    let mut text = log.to_xml().into_bytes();
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
    let expected: Result<Md5Hash, _> = spec.manifest_hash.parse();
    if expected != Ok(Md5Hash::of(&text)) {
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
            status: "FileNotFound".into(),
            blob_path: b.blob_path.clone(),
            file_path: b.file_path.clone(),
            length: b.length,
            disposition: None,
            imported_as: None,
            ranges: Vec::new(),
        })
        .collect();
    let mut buf = vec![0u8; seedship_shared::manifest::MAX_RANGE_LEN as usize];
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
        copy_blob(
            &mut entry,
            blob,
            &target,
            stores,
            &mut log.blobs[i],
            counts,
            &mut buf,
        );
    }
    if log.blobs.iter().all(|b| b.status == "Completed") {
        DriveStatus::Completed
    } else {
        DriveStatus::CompletedWithErrors
    }
}

/// The target of a blob path the job meets for the first time.
fn first_target(stores: &dyn ContainerStores, blob: &ManifestBlob) -> Target {
    let Some((container, name)) = blob.blob_path.split_once('/') else {
        return Target::Skip {
            status: "BlobRequestFailed",
            disposition: "Cancelled",
        };
    };
    if !matches!(blob.ranges, RangeList::Pages(_)) || blob.length % PAGE_SIZE != 0 {
        return Target::Skip {
            status: "Failed",
            disposition: "Cancelled",
        };
    }
    match stores.container(container) {
        Ok(store) => resolve_target(
            store.as_ref(),
            container,
            name,
            blob.length,
            blob.disposition.unwrap_or_default(),
        ),
        Err(BlobError::Http { status: 403, .. }) => Target::Skip {
            status: "BlobRequestForbidden",
            disposition: "Cancelled",
        },
        Err(_) => Target::Skip {
            status: "BlobRequestFailed",
            disposition: "Cancelled",
        },
    }
}

/// Reads one part file and writes its verified ranges.
fn copy_blob(
    entry: &mut impl Read,
    blob: &ManifestBlob,
    target: &Target,
    stores: &dyn ContainerStores,
    out: &mut LogBlob,
    counts: &mut Counts,
    buf: &mut [u8],
) {
    let disposition_value = blob.disposition.unwrap_or_default().as_str().to_owned();
    let store: Option<(Arc<dyn BlobStore>, &str)> = match target {
        Target::Write {
            container,
            name,
            disposition,
        } => {
            out.disposition = Some(((*disposition).into(), disposition_value));
            if *disposition == "Renamed" {
                out.imported_as = Some(format!("{container}/{name}"));
            }
            stores.container(container).ok().map(|s| (s, name.as_str()))
        }
        Target::Skip { disposition, .. } => {
            out.disposition = Some(((*disposition).into(), disposition_value));
            None
        }
    };
    let (start, end) = blob.part.map_or((0, blob.length), |p| (p.start, p.end));
    let mut ranges: Vec<_> = match &blob.ranges {
        RangeList::Pages(p) => p.iter().map(|r| (r.offset, r.length, r.hash)).collect(),
        RangeList::Blocks(b) => b.iter().map(|r| (r.offset, r.length, r.hash)).collect(),
    };
    ranges.sort_by_key(|r| r.0);
    let mut at = start;
    let mut short = false;
    let mut failed = false;
    for (offset, len, hash) in ranges {
        let mut range = LogRange {
            offset,
            length: len,
            hash: hash.to_string(),
            status: String::new(),
        };
        let in_part =
            offset >= at && offset.checked_add(len).is_some_and(|e| e <= end) && len as usize <= buf.len();
        let read = !short
            && in_part
            && skip(entry, offset - at, buf)
                .and_then(|()| entry.read_exact(&mut buf[..len as usize]))
                .is_ok();
        if !read {
            range.status = "FileUnexpectedEnd".into();
            short = true;
        } else {
            at = offset + len;
            let data = &buf[..len as usize];
            range.status = if Md5Hash::of(data) != hash {
                counts.corrupted += 1;
                "Corrupted".into()
            } else if let Some((s, name)) = &store {
                match s.write_pages(name, offset, data) {
                    Ok(()) => {
                        counts.written += 1;
                        counts.bytes += len;
                        "Completed".into()
                    }
                    Err(_) => {
                        failed = true;
                        "BlobRequestFailed".into()
                    }
                }
            } else {
                "Cancelled".into()
            };
        }
        if range.status != "Completed" && range.status != "Corrupted" {
            counts.not_written += 1;
        }
        out.ranges.push(range);
    }
    out.status = match target {
        Target::Skip { status, .. } => (*status).into(),
        Target::Write { .. } if store.is_none() || failed => "BlobRequestFailed".into(),
        Target::Write { .. } if short || out.ranges.iter().any(|r| r.status != "Completed") => {
            "CompletedWithErrors".into()
        }
        Target::Write { .. } => "Completed".into(),
    };
}

/// Reads and drops `n` bytes.
fn skip(entry: &mut impl Read, mut n: u64, buf: &mut [u8]) -> std::io::Result<()> {
    while n > 0 {
        let k = n.min(buf.len() as u64) as usize;
        entry.read_exact(&mut buf[..k])?;
        n -= k as u64;
    }
    Ok(())
}
