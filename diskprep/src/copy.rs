//! Writing one drive: the parts of its [`DrivePlan`] as tar members of the encrypted payload, each
//! segment hashed on the way (MD5 for the manifest, xxh3-128 for the read-back check), with durable
//! checkpoints (about 16 per drive, between one batch and 1 GiB apart) so that an interrupted copy resumes
//! at the last one.
//!
//! Reading and hashing run in a thread of their own, a batch ahead of encrypting and writing, and the MD5s
//! of a batch's segments (up to eight of 4 MiB) are computed side by side in the lanes of
//! [`seedship_shared::md5batch`] (MD5 is sequential within a segment, so segments are the unit of
//! parallelism). Memory stays bounded: at most three batches exist at once.
//!
//! The tar stream is a pure function of the plan (member names, sizes, a fixed modification time), so the
//! offset of every byte is known in advance and a resumed copy writes exactly the bytes an uninterrupted one
//! would have.

use crate::layout::DriveLayout;
use crate::payload::{DriveTarget, PayloadWriter};
use crate::plan::{DrivePlan, PartPlan};
use seedship_shared::blob::BlobStore;
use seedship_shared::manifest::ranges::is_all_zero;
use seedship_shared::md5batch::md5_many_threads;
use seedship_shared::progress::Progress;
use seedship_shared::tar::{encode_header, entry_tar_size, BLOCK, END_OF_ARCHIVE_LEN};
use std::io::Write;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

/// Bytes read and hashed at a time (whole segments), on drives of 512 MiB or more.
pub const BATCH: u64 = 32 << 20;
/// The smallest batch: one whole segment (a manifest page range is at most 4 MiB).
pub const MIN_BATCH: u64 = 4 << 20;

/// The batch for a drive's payload: about a sixteenth of it, between [`MIN_BATCH`] and [`BATCH`], so that a
/// small drive still gets checkpoints in the middle of its data (a checkpoint comes at most once a batch).
pub fn batch_len(payload_len: u64) -> u64 {
    (payload_len / 16).clamp(MIN_BATCH, BATCH)
}
/// The most payload written between two checkpoints (drive synced, journal record).
pub const CHECKPOINT_MAX: u64 = 1 << 30;

/// What the copy learnt about one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRecord {
    pub blob: String,
    /// The segment's bytes in the blob.
    pub range: Range<u64>,
    /// Uppercase hex MD5, as the manifest wants it.
    pub md5: String,
    /// xxh3-128 of the same bytes, for the read-back check.
    pub xxh3: u128,
    /// Whether every byte is zero (such segments are left out of the manifest).
    pub zero: bool,
}

/// A durable point of the copy: everything before `payload_offset` is on the drive and every segment in
/// `segments` (in plan order) is hashed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checkpoint {
    pub payload_offset: u64,
    pub segments: Vec<SegmentRecord>,
}

/// Receives each checkpoint once it is durable on the drive (the journal).
pub trait CheckpointSink {
    /// Records that the copy reached `payload_offset` and hashed `new_segments` since the last call.
    fn checkpoint(&mut self, payload_offset: u64, new_segments: &[SegmentRecord]) -> std::io::Result<()>;
}

/// Why a drive's copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("reading staging blob {blob} at offset {offset}: {source}")]
    Read {
        blob: String,
        offset: u64,
        #[source]
        source: Box<seedship_shared::blob::BlobError>,
    },
    #[error("writing drive {drive} at payload offset {offset}: {source} (the drive may be failing or full; the copy resumes from the last checkpoint when run again)")]
    Write {
        drive: String,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("recording progress in the journal of drive {drive}: {source}")]
    Journal {
        drive: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the journal of drive {drive} does not match the plan ({reason}); the staging data or the drive set changed since it was written")]
    JournalMismatch { drive: String, reason: String },
    #[error("cannot make tar member {member}: {reason}")]
    Member { member: String, reason: String },
    #[error("interrupted; run the same command again to resume drive {drive} at payload offset {offset}")]
    Interrupted { drive: String, offset: u64 },
}

/// One batch of a part's content: the bytes of `range` of the blob, and the segments it completes.
struct Batch {
    part: usize,
    range: Range<u64>,
    bytes: Vec<u8>,
    segments: Vec<SegmentRecord>,
}

/// Copies the drive's parts into `payload` from the checkpoint `resume` on and returns the final
/// checkpoint: the offset where the manifest member goes, and every segment's record.
#[allow(clippy::too_many_arguments)]
pub fn copy_parts(
    drive: &str,
    plan: &DrivePlan,
    layout: &DriveLayout,
    store: &dyn BlobStore,
    target: &DriveTarget<'_>,
    resume: Checkpoint,
    sink: &mut dyn CheckpointSink,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<Checkpoint, CopyError> {
    let (offsets, data_end) = layout.member_offsets(plan);
    let mut done = resume;
    done.payload_offset = done.payload_offset.max(layout.data_start(plan));
    let all: Vec<(usize, Range<u64>)> = plan
        .parts
        .iter()
        .enumerate()
        .flat_map(|(i, p)| p.segments.iter().map(move |s| (i, s.clone())))
        .collect();
    check_resume(drive, plan, &all, &done)?;
    let write_err = |offset, source| CopyError::Write {
        drive: drive.to_owned(),
        offset,
        source,
    };
    let mut writer = target
        .writer_at(done.payload_offset)
        .map_err(|e| write_err(done.payload_offset, e))?;
    let payload = &mut writer;
    // Where the copy stands: which part, and how far into its content.
    let (first_part, content_from) = position_of(plan, &offsets, layout, done.payload_offset);
    progress.inc(done.payload_offset);
    std::thread::scope(|s| -> Result<Checkpoint, CopyError> {
        let (tx, rx) = mpsc::sync_channel::<Result<Batch, CopyError>>(1);
        // Written batches' buffers go back to the reader (no fresh 32 MiB allocation, page faults and zeroing
        // per batch).
        let (spare_tx, spare_rx) = mpsc::channel::<Vec<u8>>();
        let batch_len = batch_len(plan.payload_len);
        let reader =
            s.spawn(move || read_batches(plan, store, first_part, content_from, batch_len, &tx, &spare_rx));
        // The first part whose header is not written yet.
        let mut next_header = first_part;
        // Segments hashed since the last checkpoint, and the payload offset progress has counted to.
        let mut pending: Vec<SegmentRecord> = Vec::new();
        let mut counted = done.payload_offset;
        // Syncing the drive stalls the pipeline: checkpoint about 16 times per drive, at least every batch
        // and at most every GiB, so a small drive resumes finely and a large one keeps the disk streaming.
        let interval = (plan.payload_len / 16).clamp(batch_len, CHECKPOINT_MAX);
        let checkpoint = |payload: &mut PayloadWriter<'_>,
                          sink: &mut dyn CheckpointSink,
                          done: &mut Checkpoint,
                          pending: &mut Vec<SegmentRecord>| {
            payload.sync().map_err(|e| write_err(payload.position(), e))?;
            sink.checkpoint(payload.position(), pending)
                .map_err(|source| CopyError::Journal {
                    drive: drive.to_owned(),
                    source,
                })?;
            done.payload_offset = payload.position();
            done.segments.append(pending);
            Ok::<(), CopyError>(())
        };
        let write = |payload: &mut PayloadWriter<'_>, bytes: &[u8]| {
            payload
                .write_all(bytes)
                .map_err(|e| write_err(payload.position(), e))
        };
        for batch in rx {
            let batch = batch?;
            let part = &plan.parts[batch.part];
            // Members without content (blobs without data) that come before this one.
            while next_header < batch.part {
                write(payload, &member_header(layout, &plan.parts[next_header])?)?;
                next_header += 1;
            }
            if next_header == batch.part {
                if batch.range.start == part.start {
                    write(payload, &member_header(layout, part)?)?;
                }
                next_header += 1;
            }
            write(payload, &batch.bytes)?;
            if batch.range.end == part.end {
                let pad = (part.size().div_ceil(BLOCK) * BLOCK - part.size()) as usize;
                write(payload, &[0u8; BLOCK as usize][..pad])?;
            }
            progress.inc(payload.position() - counted);
            counted = payload.position();
            pending.extend(batch.segments);
            let _ = spare_tx.send(batch.bytes);
            let stop = cancel.load(Ordering::Relaxed);
            if stop || payload.position() - done.payload_offset >= interval {
                checkpoint(payload, sink, &mut done, &mut pending)?;
            }
            if stop {
                return Err(CopyError::Interrupted {
                    drive: drive.to_owned(),
                    offset: done.payload_offset,
                });
            }
        }
        reader.join().expect("the reader thread does not panic");
        while next_header < plan.parts.len() {
            write(payload, &member_header(layout, &plan.parts[next_header])?)?;
            next_header += 1;
        }
        if payload.position() != data_end {
            return Err(CopyError::JournalMismatch {
                drive: drive.to_owned(),
                reason: format!(
                    "the data members end at {} instead of {data_end}",
                    payload.position()
                ),
            });
        }
        checkpoint(payload, sink, &mut done, &mut pending)?;
        Ok(done)
    })
}

/// Completes a drive whose data members are written: the end-of-archive marker after them, then the
/// manifest text (padded with spaces) in its slot at the start. Durable when it returns. Returns the
/// manifest file's exact bytes.
pub fn finish_payload(
    drive: &str,
    plan: &DrivePlan,
    layout: &DriveLayout,
    target: &DriveTarget<'_>,
    manifest_text: &str,
) -> Result<Vec<u8>, CopyError> {
    let (_, data_end) = layout.member_offsets(plan);
    let write_err = |offset, source| CopyError::Write {
        drive: drive.to_owned(),
        offset,
        source,
    };
    let slot = layout.manifest_header(plan.manifest_reserve);
    if manifest_text.len() as u64 > slot.size {
        return Err(CopyError::Member {
            member: slot.path.clone(),
            reason: format!(
                "the manifest takes {} bytes, more than the {} planned for it",
                manifest_text.len(),
                slot.size
            ),
        });
    }
    let mut tail = target.writer_at(data_end).map_err(|e| write_err(data_end, e))?;
    tail.write_all(&[0u8; END_OF_ARCHIVE_LEN as usize])
        .map_err(|e| write_err(data_end, e))?;
    tail.sync().map_err(|e| write_err(data_end, e))?;
    let mut file = manifest_text.as_bytes().to_vec();
    file.resize(slot.size as usize, b' ');
    let mut head = target.writer_at(0).map_err(|e| write_err(0, e))?;
    let header = encode_header(&slot).map_err(|e| CopyError::Member {
        member: slot.path.clone(),
        reason: e.to_string(),
    })?;
    head.write_all(&header)
        .and_then(|_| head.write_all(&file))
        .map_err(|e| write_err(0, e))?;
    head.sync().map_err(|e| write_err(0, e))?;
    Ok(file)
}

/// The header blocks (pax and ustar) of a part's member.
fn member_header(layout: &DriveLayout, part: &PartPlan) -> Result<Vec<u8>, CopyError> {
    encode_header(&layout.part_header(part)).map_err(|e| CopyError::Member {
        member: layout.member_name(&part.blob),
        reason: e.to_string(),
    })
}

/// The part and content offset at payload offset `at` (which the checkpoints only put inside content or
/// at member boundaries).
fn position_of(plan: &DrivePlan, offsets: &[u64], layout: &DriveLayout, at: u64) -> (usize, u64) {
    for (i, part) in plan.parts.iter().enumerate() {
        let h = layout.part_header(part);
        let content_start = offsets[i] + entry_tar_size(&h) - part.size().div_ceil(BLOCK) * BLOCK;
        let end = offsets[i] + entry_tar_size(&h);
        if at < end {
            let into = at.saturating_sub(content_start).min(part.size());
            return (i, part.start + into);
        }
    }
    (plan.parts.len(), 0)
}

/// Checks that a checkpoint's segments are the plan's first segments.
fn check_resume(
    drive: &str,
    plan: &DrivePlan,
    all: &[(usize, Range<u64>)],
    done: &Checkpoint,
) -> Result<(), CopyError> {
    if done.segments.len() > all.len() {
        return Err(CopyError::JournalMismatch {
            drive: drive.to_owned(),
            reason: format!(
                "{} segments recorded, the plan has {}",
                done.segments.len(),
                all.len()
            ),
        });
    }
    for (rec, (part, range)) in done.segments.iter().zip(all) {
        if rec.blob != plan.parts[*part].blob || rec.range != *range {
            return Err(CopyError::JournalMismatch {
                drive: drive.to_owned(),
                reason: format!(
                    "segment {}:{:?} recorded where the plan has {}:{:?}",
                    rec.blob, rec.range, plan.parts[*part].blob, range
                ),
            });
        }
    }
    Ok(())
}

/// Reads the parts' content from `first_part` at blob offset `from` on, in batches that end on segment
/// boundaries, hashing the segments of each batch in parallel.
fn read_batches(
    plan: &DrivePlan,
    store: &dyn BlobStore,
    first_part: usize,
    from: u64,
    batch_len: u64,
    tx: &mpsc::SyncSender<Result<Batch, CopyError>>,
    spare: &mpsc::Receiver<Vec<u8>>,
) {
    for (i, part) in plan.parts.iter().enumerate().skip(first_part) {
        let mut at = if i == first_part {
            from.max(part.start)
        } else {
            part.start
        };
        while at < part.end {
            // Extend the batch over whole segments (gaps between segments are zeros) up to batch_len bytes.
            let mut end = at;
            let mut segs = Vec::new();
            for s in part.segments.iter().filter(|s| s.start >= at) {
                if s.end - at > batch_len && !segs.is_empty() {
                    break;
                }
                end = s.end;
                segs.push(s.clone());
            }
            if segs.is_empty() {
                end = part.end;
            }
            let buf = spare.try_recv().unwrap_or_default();
            let batch = read_and_hash(store, i, &part.blob, at..end, &segs, buf);
            let failed = batch.is_err();
            if tx.send(batch).is_err() || failed {
                return;
            }
            at = end;
        }
    }
}

/// Reads `range` of the blob into `bytes` (a reused buffer): the segments from the store, zeros between them.
fn read_and_hash(
    store: &dyn BlobStore,
    part: usize,
    blob: &str,
    range: Range<u64>,
    segs: &[Range<u64>],
    mut bytes: Vec<u8>,
) -> Result<Batch, CopyError> {
    let len = (range.end - range.start) as usize;
    bytes.truncate(len);
    bytes.resize(len, 0);
    let mut at = range.start;
    for s in segs.iter().chain(std::iter::once(&(range.end..range.end))) {
        bytes[(at - range.start) as usize..(s.start - range.start) as usize].fill(0);
        at = s.end;
    }
    for s in segs {
        let buf = &mut bytes[(s.start - range.start) as usize..(s.end - range.start) as usize];
        store.read_at(blob, s.start, buf).map_err(|e| CopyError::Read {
            blob: blob.to_owned(),
            offset: s.start,
            source: Box::new(e),
        })?;
    }
    let segments = hash_segments(blob, &bytes, range.start, segs);
    Ok(Batch {
        part,
        range,
        bytes,
        segments,
    })
}

/// Hashes each segment: MD5 eight segments at a time ([`md5_many_threads`], on every core when there are
/// more than eight), while another thread computes the xxh3-128 digests and finds the all-zero segments.
pub fn hash_segments(blob: &str, bytes: &[u8], base: u64, segs: &[Range<u64>]) -> Vec<SegmentRecord> {
    let data: Vec<&[u8]> = segs
        .iter()
        .map(|s| &bytes[(s.start - base) as usize..(s.end - base) as usize])
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (md5s, fast) = std::thread::scope(|s| {
        let fast = s.spawn(|| {
            data.iter()
                .map(|d| (xxhash_rust::xxh3::xxh3_128(d), is_all_zero(d)))
                .collect::<Vec<_>>()
        });
        let md5s = md5_many_threads(&data, threads);
        (md5s, fast.join().expect("xxh3 hashing does not panic"))
    });
    segs.iter()
        .zip(md5s.iter().zip(fast))
        .map(|(range, (md5, (xxh3, zero)))| SegmentRecord {
            blob: blob.to_owned(),
            range: range.clone(),
            md5: hex::encode_upper(md5),
            xxh3,
            zero,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::tests::{MemDevice, XorCipher};
    use crate::payload::SectorCipher;
    use crate::plan::{plan, BlobExtents};
    use md5::{Digest, Md5};
    use seedship_shared::blob::{MemoryStore, Metadata};
    use seedship_shared::progress::NoProgress;
    use seedship_shared::tar::TarReader;
    use std::io::Read;
    use std::sync::Mutex;

    const MIB: u64 = 1 << 20;

    fn layout() -> DriveLayout {
        DriveLayout {
            session: "s1x".into(),
            container: "seed".into(),
            mtime: 1_700_000_000,
        }
    }

    /// A store with: `config` (one page), `empty` (no data), `data/0000` (70 MiB with a hole), and the
    /// extents the planner sees.
    fn source() -> (MemoryStore, Vec<BlobExtents>) {
        let store = MemoryStore::default();
        let md = Metadata::new();
        store.create("config", 512, &md).unwrap();
        store.write_pages("config", 0, &[9u8; 512]).unwrap();
        store.create("empty", 8192, &md).unwrap();
        store.create("data/0000", 70 * MIB, &md).unwrap();
        let a: Vec<u8> = (0..30 * MIB).map(|i| (i % 253) as u8).collect();
        store.write_pages("data/0000", 0, &a).unwrap();
        store
            .write_pages("data/0000", 40 * MIB, &a[..30 * MIB as usize])
            .unwrap();
        store
            .write_pages("data/0000", 12 * MIB, &vec![0u8; 4 * MIB as usize])
            .unwrap();
        let extents = ["config", "empty", "data/0000"]
            .iter()
            .map(|n| BlobExtents {
                name: n.to_string(),
                len: store.properties(n).unwrap().len,
                data: store.page_ranges(n).unwrap(),
            })
            .collect();
        (store, extents)
    }

    #[derive(Default)]
    struct Recorder(Vec<(u64, usize)>);
    impl CheckpointSink for Recorder {
        fn checkpoint(&mut self, at: u64, segs: &[SegmentRecord]) -> std::io::Result<()> {
            self.0.push((at, segs.len()));
            Ok(())
        }
    }

    /// Cancels after `n` checkpoints.
    struct CancelAfter<'a>(usize, &'a AtomicBool, Recorder);
    impl CheckpointSink for CancelAfter<'_> {
        fn checkpoint(&mut self, at: u64, segs: &[SegmentRecord]) -> std::io::Result<()> {
            self.2.checkpoint(at, segs)?;
            if self.2 .0.len() >= self.0 {
                self.1.store(true, Ordering::Relaxed);
            }
            Ok(())
        }
    }

    fn run(
        dev: &MemDevice,
        drive: &DrivePlan,
        store: &MemoryStore,
        resume: Checkpoint,
        sink: &mut dyn CheckpointSink,
        cancel: &AtomicBool,
    ) -> Result<Checkpoint, CopyError> {
        copy_parts(
            "D1",
            drive,
            &layout(),
            store,
            &target(dev),
            resume,
            sink,
            &NoProgress,
            cancel,
        )
    }

    fn target(dev: &MemDevice) -> DriveTarget<'_> {
        DriveTarget {
            device: dev,
            cipher: &XorCipher,
            data_offset: 0,
            capacity: 1 << 30,
        }
    }

    fn payload(dev: &MemDevice) -> Vec<u8> {
        let mut b = dev.bytes.lock().unwrap().clone();
        b.resize(b.len().div_ceil(4096) * 4096, 0);
        XorCipher.decrypt(0, &mut b).unwrap();
        b
    }

    #[test]
    fn members_hold_the_parts_and_a_resumed_copy_writes_the_same_bytes() {
        let (store, extents) = source();
        let p = plan(&extents, &[1 << 30], &layout()).unwrap();
        let drive = &p.drives[0];
        let never = AtomicBool::new(false);

        let whole = MemDevice {
            bytes: Mutex::new(vec![]),
            fail_from: None,
        };
        let done = run(
            &whole,
            drive,
            &store,
            Checkpoint::default(),
            &mut Recorder::default(),
            &never,
        )
        .unwrap();
        let all_segments: usize = drive.parts.iter().map(|p| p.segments.len()).sum();
        assert_eq!(done.segments.len(), all_segments);
        assert!(
            done.segments.iter().any(|s| s.zero),
            "the explicit zero segment is found"
        );
        assert_eq!(
            done.segments.iter().find(|s| s.blob == "config").unwrap().md5,
            hex::encode_upper(Md5::digest([9u8; 512]))
        );

        // The tar stream: the manifest, then members in plan order with the parts' bytes.
        let manifest = finish_payload("D1", drive, &layout(), &target(&whole), "<DriveManifest/>").unwrap();
        assert!(manifest.starts_with(b"<DriveManifest/>  "));
        let bytes = payload(&whole);
        let mut tar = TarReader::new(&bytes[..]);
        let mut e = tar.next_entry().unwrap().expect("the manifest member");
        assert_eq!(e.info.path, "DriveManifest.xml");
        let mut text = Vec::new();
        e.read_to_end(&mut text).unwrap();
        assert_eq!(text, manifest);
        for part in &drive.parts {
            let mut e = tar.next_entry().unwrap().expect("a member per part");
            assert_eq!(e.info.path, layout().member_name(&part.blob));
            let mut content = Vec::new();
            e.read_to_end(&mut content).unwrap();
            let mut want = vec![0u8; part.size() as usize];
            if part.size() > 0 {
                store.read_at(&part.blob, part.start, &mut want).unwrap();
            }
            assert!(content == want, "content of {}", part.blob);
        }
        assert!(
            tar.next_entry().unwrap().is_none(),
            "the end-of-archive marker follows"
        );

        // Interrupted after the first checkpoint, then resumed from what was recorded: the same bytes.
        let cancel = AtomicBool::new(false);
        let resumed = MemDevice {
            bytes: Mutex::new(vec![]),
            fail_from: None,
        };
        let mut sink = CancelAfter(1, &cancel, Recorder::default());
        let e = run(&resumed, drive, &store, Checkpoint::default(), &mut sink, &cancel).unwrap_err();
        assert!(matches!(e, CopyError::Interrupted { .. }), "{e}");
        let (at, _) = *sink.2 .0.last().unwrap();
        let recorded = hash_all_until(drive, &store, &sink.2 .0);
        let done2 = run(
            &resumed,
            drive,
            &store,
            Checkpoint {
                payload_offset: at,
                segments: recorded,
            },
            &mut Recorder::default(),
            &never,
        )
        .unwrap();
        assert_eq!(done2, done);
        finish_payload("D1", drive, &layout(), &target(&resumed), "<DriveManifest/>").unwrap();
        assert!(payload(&resumed) == bytes);
    }

    /// The segment records of the first checkpoints, recomputed (what the journal would hold).
    fn hash_all_until(
        drive: &DrivePlan,
        store: &MemoryStore,
        checkpoints: &[(u64, usize)],
    ) -> Vec<SegmentRecord> {
        let n: usize = checkpoints.iter().map(|c| c.1).sum();
        drive
            .parts
            .iter()
            .flat_map(|p| p.segments.iter().map(move |s| (p.blob.clone(), s.clone())))
            .take(n)
            .map(|(blob, s)| {
                let mut b = vec![0u8; (s.end - s.start) as usize];
                store.read_at(&blob, s.start, &mut b).unwrap();
                hash_segments(&blob, &b, s.start, std::slice::from_ref(&s)).remove(0)
            })
            .collect()
    }

    #[test]
    fn a_journal_from_another_plan_is_refused() {
        let (store, extents) = source();
        let p = plan(&extents, &[1 << 30], &layout()).unwrap();
        let bogus = SegmentRecord {
            blob: "other".into(),
            range: 0..512,
            md5: String::new(),
            xxh3: 0,
            zero: false,
        };
        let dev = MemDevice {
            bytes: Mutex::new(vec![]),
            fail_from: None,
        };
        let e = run(
            &dev,
            &p.drives[0],
            &store,
            Checkpoint {
                payload_offset: 0,
                segments: vec![bogus],
            },
            &mut Recorder::default(),
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert!(matches!(e, CopyError::JournalMismatch { .. }), "{e}");
    }

    #[test]
    fn a_write_error_names_the_drive_and_offset() {
        let (store, extents) = source();
        let p = plan(&extents, &[1 << 30], &layout()).unwrap();
        let dev = MemDevice {
            bytes: Mutex::new(vec![]),
            fail_from: Some(20 * MIB),
        };
        let e = run(
            &dev,
            &p.drives[0],
            &store,
            Checkpoint::default(),
            &mut Recorder::default(),
            &AtomicBool::new(false),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, CopyError::Write { .. }) && msg.contains("drive D1") && msg.contains("injected"),
            "{msg}"
        );
    }

    #[test]
    fn verification_passes_and_names_a_flipped_byte() {
        use crate::verify::{verify_written, VerifyError};
        let (store, extents) = source();
        let p = plan(&extents, &[1 << 30], &layout()).unwrap();
        let drive = &p.drives[0];
        let dev = MemDevice {
            bytes: Mutex::new(vec![]),
            fail_from: None,
        };
        let never = AtomicBool::new(false);
        let done = run(
            &dev,
            drive,
            &store,
            Checkpoint::default(),
            &mut Recorder::default(),
            &never,
        )
        .unwrap();
        let manifest = finish_payload("D1", drive, &layout(), &target(&dev), "<DriveManifest/>").unwrap();
        let md5 = hex::encode_upper(Md5::digest(&manifest));
        let verify = |dev: &MemDevice| {
            verify_written(
                "D1",
                drive,
                &layout(),
                target(dev),
                &done.segments,
                &md5,
                &NoProgress,
            )
        };
        let stats = verify(&dev).unwrap();
        assert_eq!(stats.members, 1 + drive.parts.len());
        assert_eq!(stats.segments, done.segments.len());

        // A byte flipped in the last data sector (ciphertext): that segment is named.
        let (offsets, _) = layout().member_offsets(drive);
        let data_at = (offsets[2] + 4096 + 20 * MIB) as usize;
        dev.bytes.lock().unwrap()[data_at] ^= 0x40;
        let e = verify(&dev).unwrap_err();
        assert!(
            matches!(&e, VerifyError::SegmentMismatch { blob, .. } if blob == "data/0000"),
            "{e}"
        );
        dev.bytes.lock().unwrap()[data_at] ^= 0x40;
        verify(&dev).unwrap();

        dev.bytes.lock().unwrap()[600] ^= 1;
        let e = verify(&dev).unwrap_err();
        assert!(matches!(e, VerifyError::ManifestMismatch { .. }), "{e}");
    }
}
