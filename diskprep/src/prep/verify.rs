//! Checking a written drive in one pass after the fact: the standalone check (`verify --drive PATH --key KEY`,
//! [`verify_drive`]: every member against the manifest read from the drive, through the data centre's own
//! per-range MD5 check, `seedship_shared::manifest::copylog::verify_member`, with zeros required between
//! ranges), and a drive an earlier run left written but unverified ([`verify_written`]: against the journal's
//! xxh3 records). A drive being written is checked beside the copy instead (`crate::prep::readback`).
//!
//! Both read the payload with the shared reader (`seedship_shared::luks::payload`), with `O_DIRECT` where
//! the file system allows it, so they check what the drive holds rather than what the page cache remembers.

pub use crate::prep::error::VerifyError;
use crate::prep::layout::{DriveLayout, SegmentRecord, MANIFEST_NAME};
use crate::prep::plan::DrivePlan;
use md5::{Digest, Md5};
use seedship_shared::luks::payload::{DriveTarget, PayloadReader};
use seedship_shared::manifest::copylog::{verify_member, RangeStatus};
use seedship_shared::manifest::ranges::is_all_zero;
use seedship_shared::progress::Progress;
use seedship_shared::tar::TarReader;
use std::io::Read;

/// What a verification read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VerifyStats {
    pub members: usize,
    /// Page ranges of page blobs and blocks of block blobs checked.
    pub segments: usize,
    /// Of `segments`, the blocks of block blobs.
    pub blocks: usize,
    pub bytes: u64,
}

/// Checks a drive on its own, with nothing but its recovery key: unlocks it, reads the manifest at the head
/// of the payload, and checks every member against it (every page range's MD5, zeros between ranges, every
/// listed file present) in one streaming pass.
pub fn verify_drive(
    path: &std::path::Path,
    key: &seedship_shared::recovery::RecoveryKey,
    progress: &dyn Progress,
) -> Result<VerifyStats, VerifyError> {
    use seedship_shared::manifest::{DriveFilePath, DriveManifest, RangeList};
    let file = std::fs::File::open(path).map_err(|source| VerifyError::Open {
        path: path.to_owned(),
        source,
    })?;
    let volume = seedship_shared::luks::LuksVolume::open(&file, key.passphrase())?;
    let drive = volume.label().to_owned();
    // The payload is read with O_DIRECT where the file system allows it: the drive, not the page cache.
    let device = seedship_shared::luks::direct::DriveFile::for_reading(&file, path);
    let target = DriveTarget {
        device: &device,
        cipher: &volume,
        data_offset: volume.data_offset(),
        capacity: volume.payload_len(),
    };
    let mut tar = TarReader::new(PayloadReader::new(target));
    let text = read_manifest_member(&drive, &mut tar, MAX_MANIFEST_LEN)?;
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
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
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
        let mismatch = |offset| VerifyError::RangeMismatch {
            drive: drive.clone(),
            blob: blob.blob_path.clone(),
            offset,
        };
        // The shared check of the data centre's import, with the zeros between ranges required as well.
        let is_block_blob = matches!(blob.ranges, RangeList::Blocks(_));
        let check = verify_member(&mut entry, blob, threads, true, |r, _| {
            stats.segments += 1;
            stats.blocks += usize::from(is_block_blob);
            stats.bytes += r.length;
            progress.inc(r.length);
            Ok(())
        })
        .map_err(|source| VerifyError::Read {
            drive: drive.clone(),
            member: member.clone(),
            source,
        })?;
        if let Some(bad) = check.ranges.iter().find(|r| r.status != RangeStatus::Completed) {
            return Err(mismatch(bad.offset));
        }
        if let Some(at) = check.nonzero_gap {
            return Err(mismatch(at));
        }
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

/// The largest drive manifest `verify` reads into memory: 1 GiB. A seedship manifest takes about 40 bytes per
/// MiB of data (one range per 4 MiB), some 320 MiB for an 8 TiB drive; a drive from elsewhere claiming more is
/// refused rather than read.
pub const MAX_MANIFEST_LEN: u64 = 1 << 30;

/// Reads the manifest member at the head of the payload, refusing one longer than `limit` bytes.
fn read_manifest_member<R: Read>(
    drive: &str,
    tar: &mut TarReader<R>,
    limit: u64,
) -> Result<Vec<u8>, VerifyError> {
    let entry = expect_member(drive, tar, MANIFEST_NAME)?;
    if entry.info.size > limit {
        return Err(VerifyError::ManifestTooLarge {
            drive: drive.to_owned(),
            size: entry.info.size,
            limit,
        });
    }
    let mut text = Vec::with_capacity(entry.info.size as usize);
    entry
        .take(limit)
        .read_to_end(&mut text)
        .map_err(|source| VerifyError::Read {
            drive: drive.to_owned(),
            member: MANIFEST_NAME.to_owned(),
            source,
        })?;
    Ok(text)
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

#[cfg(test)]
mod tests {
    use super::*;
    use seedship_shared::tar::{EntryHeader, TarWriter};

    fn payload(manifest_len: usize) -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new());
        let m = vec![b' '; manifest_len];
        w.append(&EntryHeader::file(MANIFEST_NAME, m.len() as u64, 0), &m[..])
            .unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn a_manifest_longer_than_the_cap_is_refused_unread() {
        let data = payload(3000);
        let mut tar = TarReader::new(&data[..]);
        let err = read_manifest_member("D1", &mut tar, 2048).unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::ManifestTooLarge {
                    size: 3000,
                    limit: 2048,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("D1"), "{err}");
        let mut tar = TarReader::new(&data[..]);
        assert_eq!(read_manifest_member("D1", &mut tar, 3000).unwrap().len(), 3000);
    }
}
