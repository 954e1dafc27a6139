//! The read-back check that runs beside the copy: each stretch of payload made durable by a checkpoint is
//! read back from the drive (with `O_DIRECT` where the device has it), decrypted and compared with what it
//! must hold while the copy writes the next stretch, so verification costs disk bandwidth rather than a
//! second pass after the write.
//!
//! What a drive's data region must hold is known exactly from the plan: each part's member header (bytes),
//! its segments (the xxh3-128 recorded while writing), zeros between segments and in the padding. After the
//! copy, [`check_head_and_tail`] reads the manifest member and the end-of-archive marker back, so the whole
//! payload has been compared once the drive is reported verified.

use crate::prep::error::{CopyError, VerifyError};
use crate::prep::layout::{member_header, DriveLayout, SegmentRecord};
use crate::prep::plan::DrivePlan;
use seedship_shared::aligned::AlignedBuf;
use seedship_shared::luks::payload::{DriveTarget, SECTOR};
use seedship_shared::manifest::ranges::is_all_zero;
use seedship_shared::progress::Progress;
use seedship_shared::tar::{encode_header, BLOCK, END_OF_ARCHIVE_LEN};
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use xxhash_rust::xxh3::Xxh3;

/// Bytes read back at a time.
const CHUNK: usize = 8 << 20;

/// What one stretch of the data region holds.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// The member header of part `n`.
    Header(usize),
    /// The `n`th segment of the drive (plan order).
    Segment(usize),
    Zero,
}

/// The expected content of a drive's data region, in payload order.
#[derive(Debug)]
pub struct DataModel {
    regions: Vec<(Range<u64>, Kind)>,
    headers: Vec<Vec<u8>>,
}

impl DataModel {
    /// The model of `plan`'s data members.
    pub fn new(drive: &str, plan: &DrivePlan, layout: &DriveLayout) -> Result<Self, CopyError> {
        let (offsets, _) = layout.member_offsets(plan);
        let mut regions = Vec::new();
        let mut headers = Vec::with_capacity(plan.parts.len());
        let mut n = 0;
        for (i, part) in plan.parts.iter().enumerate() {
            let header = member_header(layout, part).map_err(|e| match e {
                CopyError::Member { member, reason } => CopyError::Member {
                    member: format!("{member} (drive {drive})"),
                    reason,
                },
                other => other,
            })?;
            let content = offsets[i] + header.len() as u64;
            regions.push((offsets[i]..content, Kind::Header(i)));
            headers.push(header);
            let mut at = content;
            for s in &part.segments {
                let start = content + (s.start - part.start);
                if start > at {
                    regions.push((at..start, Kind::Zero));
                }
                let end = start + (s.end - s.start);
                regions.push((start..end, Kind::Segment(n)));
                n += 1;
                at = end;
            }
            let padded = content + part.size().div_ceil(BLOCK) * BLOCK;
            if padded > at {
                regions.push((at..padded, Kind::Zero));
            }
        }
        Ok(Self { regions, headers })
    }
}

/// Compares consecutive plaintext stretches of the data region with the model.
pub struct DataChecker<'a> {
    drive: &'a str,
    model: &'a DataModel,
    /// The segments' records, in plan order, as far as they are known.
    segments: Vec<SegmentRecord>,
    /// Where the next stretch must start, and the region it falls in.
    next: u64,
    region: usize,
    /// The digest of the segment being read, when one started.
    hash: Option<Xxh3>,
}

impl<'a> DataChecker<'a> {
    /// A checker starting at payload offset `from` (a region boundary: a checkpoint or the data start).
    pub fn new(drive: &'a str, model: &'a DataModel, from: u64, known: &[SegmentRecord]) -> Self {
        let region = model.regions.partition_point(|(r, _)| r.end <= from);
        Self {
            drive,
            model,
            segments: known.to_vec(),
            next: from,
            region,
            hash: None,
        }
    }

    /// Adds the records of segments hashed since (plan order).
    pub fn learn(&mut self, new: &[SegmentRecord]) {
        self.segments.extend_from_slice(new);
    }

    /// Checks `plain`, the payload bytes at the checker's position.
    pub fn check(&mut self, plain: &[u8], progress: &dyn Progress) -> Result<(), VerifyError> {
        let end = self.next + plain.len() as u64;
        while self.next < end {
            let Some((range, kind)) = self.model.regions.get(self.region).cloned() else {
                // Past the data members: the end-of-archive marker is checked with the head.
                return Ok(());
            };
            let to = range.end.min(end);
            let bytes =
                &plain[(self.next - (end - plain.len() as u64)) as usize..][..(to - self.next) as usize];
            let at_start = self.next == range.start;
            match kind {
                Kind::Header(i) => {
                    let want = &self.model.headers[i][(self.next - range.start) as usize..][..bytes.len()];
                    if bytes != want {
                        return Err(self.mismatch_at(self.next));
                    }
                }
                Kind::Zero => {
                    if !is_all_zero(bytes) {
                        return Err(self.mismatch_at(self.next));
                    }
                }
                Kind::Segment(n) => {
                    if at_start {
                        self.hash = Some(Xxh3::new());
                    }
                    match self.hash.as_mut() {
                        Some(h) => h.update(bytes),
                        // A stretch that starts inside a segment it did not see begin.
                        None => return Err(self.mismatch_at(self.next)),
                    }
                    progress.inc(bytes.len() as u64);
                    if to == range.end {
                        let digest = self.hash.take().expect("started above").digest128();
                        let rec = self.segments.get(n).ok_or_else(|| self.mismatch_at(self.next))?;
                        if digest != rec.xxh3 {
                            return Err(VerifyError::SegmentMismatch {
                                drive: self.drive.to_owned(),
                                blob: rec.blob.clone(),
                                start: rec.range.start,
                                end: rec.range.end,
                            });
                        }
                    }
                }
            }
            self.next = to;
            if to == range.end {
                self.region += 1;
            }
        }
        Ok(())
    }

    /// The error for a difference at payload offset `at` (named by the blob whose member holds it).
    fn mismatch_at(&self, at: u64) -> VerifyError {
        let blob = self
            .model
            .regions
            .get(self.region)
            .and_then(|(_, k)| match k {
                Kind::Segment(n) => self.segments.get(*n).map(|s| s.blob.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "(a member header or the zeros between segments)".to_owned());
        VerifyError::RangeMismatch {
            drive: self.drive.to_owned(),
            blob,
            offset: at,
        }
    }
}

/// Reads payload bytes `range` back from the drive, decrypts them and hands them to `each` in order, in
/// chunks of up to 8 MiB. `direct` is an `O_DIRECT` descriptor of the device, when it has one; where a
/// direct read fails it falls back to the device's ordinary reads for the rest.
pub fn read_back(
    drive: &str,
    target: &DriveTarget<'_>,
    direct: &mut Option<File>,
    range: Range<u64>,
    buf: &mut AlignedBuf,
    mut each: impl FnMut(&[u8]) -> Result<(), VerifyError>,
) -> Result<(), VerifyError> {
    let drive_err = |source: std::io::Error| VerifyError::Read {
        drive: drive.to_owned(),
        member: format!("payload bytes {}..{}", range.start, range.end),
        source,
    };
    let mut at = range.start / SECTOR * SECTOR;
    let stop = range.end.div_ceil(SECTOR) * SECTOR;
    if buf.capacity() < CHUNK {
        *buf = AlignedBuf::new(CHUNK);
    }
    while at < stop {
        let n = (stop - at).min(CHUNK as u64) as usize;
        buf.set_len(n);
        let device_at = target.data_offset + at;
        let read = match direct.as_ref() {
            Some(f) if device_at.is_multiple_of(SECTOR) => f.read_exact_at(buf.as_mut_slice(), device_at),
            _ => target.device.read_at(buf.as_mut_slice(), device_at),
        };
        if read.is_err() && direct.is_some() {
            // Refused or failed direct read: this chunk and the rest through the ordinary descriptor, where a
            // real read error shows again.
            *direct = None;
            target
                .device
                .read_at(buf.as_mut_slice(), device_at)
                .map_err(drive_err)?;
        } else {
            read.map_err(drive_err)?;
        }
        target.cipher.decrypt(at, buf.as_mut_slice()).map_err(drive_err)?;
        let from = range.start.max(at) - at;
        let to = range.end.min(at + n as u64) - at;
        each(&buf.as_slice()[from as usize..to as usize])?;
        at += n as u64;
    }
    Ok(())
}

/// Reads back the head of the payload (the manifest member: its header and `manifest` padded to its slot)
/// and the end-of-archive marker after the data members, and compares them with what was written.
pub fn check_head_and_tail(
    drive: &str,
    plan: &DrivePlan,
    layout: &DriveLayout,
    target: &DriveTarget<'_>,
    manifest: &[u8],
) -> Result<(), VerifyError> {
    let slot = layout.manifest_header(plan.manifest_reserve);
    let mut want = encode_header(&slot).map_err(|e| VerifyError::Read {
        drive: drive.to_owned(),
        member: slot.path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    want.extend_from_slice(manifest);
    let (_, data_end) = layout.member_offsets(plan);
    let mut direct = target.device.direct_handle();
    let mut buf = AlignedBuf::new(0);
    let mut got = Vec::with_capacity(want.len());
    read_back(drive, target, &mut direct, 0..want.len() as u64, &mut buf, |b| {
        got.extend_from_slice(b);
        Ok(())
    })?;
    if got != want {
        use md5::{Digest, Md5};
        return Err(VerifyError::ManifestMismatch {
            drive: drive.to_owned(),
            expected: hex::encode_upper(Md5::digest(&want[want.len() - manifest.len()..])),
            found: hex::encode_upper(Md5::digest(&got[got.len().min(want.len() - manifest.len())..])),
        });
    }
    let tail = data_end..data_end + END_OF_ARCHIVE_LEN;
    read_back(drive, target, &mut direct, tail, &mut buf, |b| {
        if is_all_zero(b) {
            Ok(())
        } else {
            Err(VerifyError::RangeMismatch {
                drive: drive.to_owned(),
                blob: "(the end-of-archive marker)".to_owned(),
                offset: data_end,
            })
        }
    })
}

/// The read-back beside a copy: checks each range it receives (payload bytes made durable, with the
/// records of the segments hashed in them) until the sender is dropped or `stop` is set.
pub fn follow_copy(
    drive: &str,
    target: &DriveTarget<'_>,
    mut checker: DataChecker<'_>,
    ranges: std::sync::mpsc::Receiver<(Range<u64>, Vec<SegmentRecord>)>,
    stop: &std::sync::atomic::AtomicBool,
    progress: &dyn Progress,
) -> Result<(), VerifyError> {
    let mut direct = target.device.direct_handle();
    let mut buf = AlignedBuf::new(0);
    for (range, new) in ranges {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        checker.learn(&new);
        read_back(drive, target, &mut direct, range, &mut buf, |b| {
            checker.check(b, progress)
        })?;
    }
    Ok(())
}
