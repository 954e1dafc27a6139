//! Reading a written drive back and checking it, right after writing (on by default).
//!
//! The drive's payload is read through the same decryption a data centre would use and parsed as tar; the
//! manifest member must have the bytes whose MD5 was recorded, every part member must have its planned name
//! and size, every segment the xxh3-128 digest recorded while writing, and every byte between segments must
//! be zero. Comparing the fast digest recorded at write time, rather than computing MD5 a second time, keeps
//! verification at the speed of the drive.
//!
//! Both the read-back and the standalone check (`verify --drive PATH --key KEY`) read the payload with
//! `O_DIRECT` where the file system allows it (`crate::direct`), so they check what the drive holds rather
//! than what the page cache remembers; elsewhere they read through the page cache.

use crate::copy::SegmentRecord;
use crate::layout::{DriveLayout, MANIFEST_NAME};
use crate::payload::{DriveTarget, PayloadReader};
use crate::plan::DrivePlan;
use md5::{Digest, Md5};
use seedship_shared::manifest::ranges::is_all_zero;
use seedship_shared::manifest::MAX_RANGE_LEN;
use seedship_shared::md5batch::{md5_many, LANES};
use seedship_shared::progress::Progress;
use seedship_shared::tar::{TarError, TarReader};
use std::io::Read;
use std::ops::Range;

/// What a verification read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VerifyStats {
    pub members: usize,
    pub segments: usize,
    pub bytes: u64,
}

/// What a verification found wrong.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("drive {drive}: reading the payload back: {source}")]
    Tar {
        drive: String,
        #[source]
        source: TarError,
    },
    #[error("drive {drive}: reading member {member}: {source}")]
    Read {
        drive: String,
        member: String,
        #[source]
        source: std::io::Error,
    },
    #[error("drive {drive}: expected member {expected}, found {found}")]
    UnexpectedMember {
        drive: String,
        expected: String,
        found: String,
    },
    #[error("drive {drive}: the manifest read back does not match what was written (MD5 {found}, expected {expected})")]
    ManifestMismatch {
        drive: String,
        expected: String,
        found: String,
    },
    #[error("drive {drive}: blob {blob} bytes {start}..{end} read back differ from what was written; the drive may be failing")]
    SegmentMismatch {
        drive: String,
        blob: String,
        start: u64,
        end: u64,
    },
    #[error("drive {drive}: the journal records {recorded} segments, the plan has {planned}")]
    RecordCount {
        drive: String,
        recorded: usize,
        planned: usize,
    },
    #[error("{path}: {source}")]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Luks(#[from] seedship_shared::luks::LuksError),
    #[error("drive {drive}: its manifest is not valid: {source}")]
    Manifest {
        drive: String,
        #[source]
        source: seedship_shared::manifest::ManifestError,
    },
    #[error("drive {drive}: the manifest names drive {named}; this drive was prepared for another manifest")]
    DriveIdMismatch { drive: String, named: String },
    #[error("drive {drive}: member {member} is not in the manifest")]
    Unlisted { drive: String, member: String },
    #[error("drive {drive}: {file} is in the manifest but not on the drive")]
    MissingFile { drive: String, file: String },
    #[error("drive {drive}: member {member} holds {found} bytes, the manifest implies {expected}")]
    WrongSize {
        drive: String,
        member: String,
        expected: u64,
        found: u64,
    },
    #[error("drive {drive}: blob {blob} bytes at offset {offset} do not match the manifest (MD5 of a range, or zeros between ranges)")]
    RangeMismatch {
        drive: String,
        blob: String,
        offset: u64,
    },
}

/// Checks a drive on its own, with nothing but its recovery key: unlocks it, reads the manifest at the head
/// of the payload, and checks every member against it (every page range's MD5, zeros between ranges, every
/// listed file present) in one streaming pass.
pub fn verify_drive(
    path: &std::path::Path,
    key: &seedship_shared::recovery::RecoveryKey,
    progress: &dyn Progress,
) -> Result<VerifyStats, VerifyError> {
    use seedship_shared::manifest::{DriveFilePath, DriveManifest, Md5Hash, RangeList};
    let file = std::fs::File::open(path).map_err(|source| VerifyError::Open {
        path: path.to_owned(),
        source,
    })?;
    let volume = seedship_shared::luks::LuksVolume::open(&file, key.passphrase())?;
    let drive = volume.label().to_owned();
    // The payload is read with O_DIRECT where the file system allows it: the drive, not the page cache.
    let device = crate::direct::DriveFile::for_reading(&file, path);
    let target = DriveTarget {
        device: &device,
        cipher: &volume,
        data_offset: volume.data_offset(),
        capacity: volume.payload_len(),
    };
    let mut tar = TarReader::new(PayloadReader::new(target));
    let mut text = Vec::new();
    expect_member(&drive, &mut tar, MANIFEST_NAME)?
        .read_to_end(&mut text)
        .map_err(|source| VerifyError::Read {
            drive: drive.clone(),
            member: MANIFEST_NAME.to_owned(),
            source,
        })?;
    let manifest = DriveManifest::parse(&text).map_err(|source| VerifyError::Manifest {
        drive: drive.clone(),
        source,
    })?;
    if manifest.header.drive_id != drive {
        return Err(VerifyError::DriveIdMismatch {
            drive,
            named: manifest.header.drive_id,
        });
    }
    let mut listed: std::collections::BTreeMap<String, &seedship_shared::manifest::ManifestBlob> = manifest
        .blob_lists
        .iter()
        .flat_map(|l| &l.blobs)
        .map(|b| (DriveFilePath::tar_path_of(&b.file_path), b))
        .collect();
    progress.set_total(
        listed
            .values()
            .map(|b| match &b.ranges {
                RangeList::Pages(p) => p.iter().map(|r| r.length).sum::<u64>(),
                RangeList::Blocks(b) => b.iter().map(|r| r.length).sum(),
            })
            .sum(),
    );
    let mut stats = VerifyStats {
        members: 1,
        ..VerifyStats::default()
    };
    let mut buf = vec![0u8; 4 << 20];
    let mut batch = vec![0u8; LANES * MAX_RANGE_LEN as usize];
    while let Some(mut entry) = tar.next_entry().map_err(|source| VerifyError::Tar {
        drive: drive.clone(),
        source,
    })? {
        let member = entry.info.path.clone();
        let blob = listed.remove(&member).ok_or_else(|| VerifyError::Unlisted {
            drive: drive.clone(),
            member: member.clone(),
        })?;
        let (start, end) = blob.part.map_or((0, blob.length), |p| (p.start, p.end));
        if entry.info.size != end - start {
            return Err(VerifyError::WrongSize {
                drive: drive.clone(),
                member,
                expected: end - start,
                found: entry.info.size,
            });
        }
        let mut ranges: Vec<(u64, u64, Md5Hash)> = match &blob.ranges {
            RangeList::Pages(p) => p.iter().map(|r| (r.offset, r.length, r.hash)).collect(),
            RangeList::Blocks(b) => b.iter().map(|r| (r.offset, r.length, r.hash)).collect(),
        };
        ranges.sort_by_key(|r| r.0);
        // A zero-length sentinel at the end checks the zeros after the last range.
        ranges.push((end, 0, Md5Hash([0; 16])));
        let mismatch = |offset| VerifyError::RangeMismatch {
            drive: drive.clone(),
            blob: blob.blob_path.clone(),
            offset,
        };
        let read_err = |source| VerifyError::Read {
            drive: drive.clone(),
            member: member.clone(),
            source,
        };
        // Ranges are read into `batch` side by side and hashed LANES at a time.
        let mut pending: Vec<(u64, Range<usize>, Md5Hash)> = Vec::with_capacity(LANES);
        let mut at = start;
        for (offset, len, hash) in ranges {
            if let Some(bad) = read_zeros(&mut entry, at, offset, &mut buf).map_err(read_err)? {
                return Err(mismatch(bad));
            }
            let n = len as usize;
            if n > batch.len() {
                return Err(mismatch(offset));
            }
            let used = pending.last().map_or(0, |p| p.1.end);
            if pending.len() == LANES || used + n > batch.len() {
                check_ranges(&batch, &mut pending, &mut stats, progress).map_err(mismatch)?;
            }
            let from = pending.last().map_or(0, |p| p.1.end);
            entry.read_exact(&mut batch[from..from + n]).map_err(read_err)?;
            if n > 0 {
                pending.push((offset, from..from + n, hash));
            }
            at = offset + len;
        }
        check_ranges(&batch, &mut pending, &mut stats, progress).map_err(mismatch)?;
        stats.members += 1;
    }
    if let Some(missing) = listed.into_values().next() {
        return Err(VerifyError::MissingFile {
            drive,
            file: missing.file_path.clone(),
        });
    }
    Ok(stats)
}

/// Hashes the ranges gathered in `batch` (MD5, side by side) and compares each with its manifest hash;
/// returns the offset of the first that differs. Counts them in `stats` and `progress` and empties `pending`.
fn check_ranges(
    batch: &[u8],
    pending: &mut Vec<(u64, Range<usize>, seedship_shared::manifest::Md5Hash)>,
    stats: &mut VerifyStats,
    progress: &dyn Progress,
) -> Result<(), u64> {
    let data: Vec<&[u8]> = pending.iter().map(|p| &batch[p.1.clone()]).collect();
    for ((offset, bytes, hash), digest) in pending.iter().zip(md5_many(&data)) {
        if digest != hash.0 {
            return Err(*offset);
        }
        stats.segments += 1;
        stats.bytes += bytes.len() as u64;
        progress.inc(bytes.len() as u64);
    }
    pending.clear();
    Ok(())
}

/// Verifies a drive just written against the records of its copy.
pub fn verify_written(
    drive: &str,
    plan: &DrivePlan,
    layout: &DriveLayout,
    target: DriveTarget<'_>,
    records: &[SegmentRecord],
    manifest_md5: &str,
    progress: &dyn Progress,
) -> Result<VerifyStats, VerifyError> {
    let planned: usize = plan.parts.iter().map(|p| p.segments.len()).sum();
    if records.len() != planned {
        return Err(VerifyError::RecordCount {
            drive: drive.to_owned(),
            recorded: records.len(),
            planned,
        });
    }
    let tar_err = |source| VerifyError::Tar {
        drive: drive.to_owned(),
        source,
    };
    let mut tar = TarReader::new(PayloadReader::new(target));
    let mut stats = VerifyStats::default();
    let mut records = records.iter();

    let mut entry = expect_member(drive, &mut tar, MANIFEST_NAME)?;
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = entry.read(&mut buf).map_err(|source| VerifyError::Read {
            drive: drive.to_owned(),
            member: MANIFEST_NAME.to_owned(),
            source,
        })?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
    }
    let found = hex::encode_upper(md5.finalize());
    if !found.eq_ignore_ascii_case(manifest_md5) {
        return Err(VerifyError::ManifestMismatch {
            drive: drive.to_owned(),
            expected: manifest_md5.to_owned(),
            found,
        });
    }
    stats.members += 1;

    for part in &plan.parts {
        let name = layout.member_name(&part.blob);
        let mut entry = expect_member(drive, &mut tar, &name)?;
        let mut at = part.start;
        let read_err = |source| VerifyError::Read {
            drive: drive.to_owned(),
            member: name.clone(),
            source,
        };
        let mismatch = |start, end| VerifyError::SegmentMismatch {
            drive: drive.to_owned(),
            blob: part.blob.clone(),
            start,
            end,
        };
        for seg in &part.segments {
            // The gap before the segment holds zeros.
            if let Some(bad) = read_zeros(&mut entry, at, seg.start, &mut buf).map_err(read_err)? {
                let end = (bad + buf.len() as u64).min(seg.start);
                return Err(mismatch(bad, end));
            }
            let n = (seg.end - seg.start) as usize;
            entry.read_exact(&mut buf[..n]).map_err(read_err)?;
            let rec = records.next().expect("counted above");
            if rec.range != *seg || rec.xxh3 != xxhash_rust::xxh3::xxh3_128(&buf[..n]) {
                return Err(mismatch(seg.start, seg.end));
            }
            at = seg.end;
            stats.segments += 1;
            stats.bytes += n as u64;
            progress.inc(n as u64);
        }
        stats.members += 1;
    }
    if let Some(extra) = tar.next_entry().map_err(tar_err)? {
        return Err(VerifyError::UnexpectedMember {
            drive: drive.to_owned(),
            expected: "the end of the archive".into(),
            found: extra.info.path.clone(),
        });
    }
    Ok(stats)
}

fn expect_member<'t, R: Read>(
    drive: &str,
    tar: &'t mut TarReader<R>,
    name: &str,
) -> Result<seedship_shared::tar::TarEntry<'t, R>, VerifyError> {
    match tar.next_entry() {
        Ok(Some(e)) if e.info.path == name => Ok(e),
        Ok(Some(e)) => Err(VerifyError::UnexpectedMember {
            drive: drive.to_owned(),
            expected: name.to_owned(),
            found: e.info.path.clone(),
        }),
        Ok(None) => Err(VerifyError::UnexpectedMember {
            drive: drive.to_owned(),
            expected: name.to_owned(),
            found: "the end of the archive".into(),
        }),
        Err(source) => Err(VerifyError::Tar {
            drive: drive.to_owned(),
            source,
        }),
    }
}

/// Reads the bytes `from..to` of a member (the gap between two ranges), which must all be zero; returns the
/// offset of the first chunk that is not.
fn read_zeros(entry: &mut impl Read, from: u64, to: u64, buf: &mut [u8]) -> std::io::Result<Option<u64>> {
    let mut at = from;
    while at < to {
        let n = (to - at).min(buf.len() as u64) as usize;
        entry.read_exact(&mut buf[..n])?;
        if !is_all_zero(&buf[..n]) {
            return Ok(Some(at));
        }
        at += n as u64;
    }
    Ok(None)
}
