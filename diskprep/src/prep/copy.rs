//! Writing one drive: the parts of its [`DrivePlan`] as tar members of the encrypted payload, each
//! segment hashed on the way (MD5 for the manifest, xxh3-128 for the read-back check), with durable
//! checkpoints (about 16 per drive, between one batch and 1 GiB apart) so that an interrupted copy resumes
//! at the last one.
//!
//! Three stages run side by side: a reader thread reads the next batch from staging while a hashing thread
//! hashes the batch before it and the copy loop encrypts and writes that same batch (both only read it, so
//! they share its buffer). The MD5s of a batch's segments (up to sixteen of 4 MiB) are computed side by side
//! in the lanes of [`seedship_shared::md5batch`] (MD5 is sequential within a segment, so segments are the
//! unit of parallelism: sixteen lanes on one core cost about what eight do). Memory stays bounded: at most
//! two batches exist at once (the one being read, and the one being hashed and written, whose buffer goes
//! back to the reader when both are done with it).
//!
//! The tar stream is a pure function of the plan (member names, sizes, a fixed modification time), so the
//! offset of every byte is known in advance and a resumed copy writes exactly the bytes an uninterrupted one
//! would have.

pub use crate::prep::error::CopyError;
pub use crate::prep::layout::SegmentRecord;
use crate::prep::layout::{member_header, DriveLayout};
use crate::prep::plan::DrivePlan;
use crate::prep::readback::{follow_copy, DataChecker, DataModel};
use crate::prep::source::{BlobDigest, StagedSource};
use seedship_shared::aligned::{AlignedBuf, ALIGN};
use seedship_shared::luks::payload::{DriveTarget, PayloadWriter, SECTOR};
use seedship_shared::manifest::ranges::is_all_zero;
use seedship_shared::md5batch::md5_many_threads;
use seedship_shared::progress::Progress;
use seedship_shared::tar::{encode_header, entry_tar_size, BLOCK, END_OF_ARCHIVE_LEN};
use std::io::Write;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

/// Bytes read and hashed at a time (whole segments), on drives of 1 GiB or more: sixteen segments of 4 MiB,
/// what one thread's MD5 lanes take at once with AVX2 or AVX-512
/// ([`seedship_shared::md5batch::lanes_per_thread`]).
pub const BATCH: u64 = 64 << 20;
/// The smallest batch: one whole segment (a manifest page range is at most 4 MiB).
pub const MIN_BATCH: u64 = 4 << 20;

/// The batch for a drive's payload: about a sixteenth of it, between [`MIN_BATCH`] and [`BATCH`], so that a
/// small drive still gets checkpoints in the middle of its data (a checkpoint comes at most once a batch).
pub fn batch_len(payload_len: u64) -> u64 {
    (payload_len / 16).clamp(MIN_BATCH, BATCH)
}
/// Bytes read at a time of a blob's bytes outside the part being copied (hashed for the blob's BLAKE3 only):
/// a buffer of its own beside the two batches, so smaller than a batch.
const HASH_STEP: usize = 8 << 20;
/// The most payload written between two checkpoints (drive synced, journal record).
pub const CHECKPOINT_MAX: u64 = 1 << 30;

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

/// A batch's bytes, shared by its hashing and its writing: the buffer goes back to the reader's spare
/// buffers when both have dropped it.
struct Filled {
    buf: Option<AlignedBuf>,
    /// The batch's bytes are `buf[head..head + len]`.
    head: usize,
    len: usize,
    back: mpsc::Sender<AlignedBuf>,
}

impl Filled {
    fn bytes(&self) -> &[u8] {
        &self.buf.as_ref().expect("held until dropped").as_slice()[self.head..self.head + self.len]
    }
}

impl Drop for Filled {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            // The reader is gone when the copy stopped; the buffer is then freed here.
            let _ = self.back.send(b);
        }
    }
}

/// One batch of a part's content: the bytes of `range` of the blob, and (once hashed, beside the writing)
/// the records of the segments it completes.
struct Batch {
    part: usize,
    range: Range<u64>,
    data: Arc<Filled>,
    segments: mpsc::Receiver<Vec<SegmentRecord>>,
}

/// Copies the drive's parts into `payload` from the checkpoint `resume` on and returns the final
/// checkpoint: the offset where the manifest member goes, and every segment's record. With `verify`, each
/// stretch made durable by a checkpoint is read back and checked while the next is written
/// ([`crate::prep::readback`]); the manifest member and end marker are left for
/// [`crate::prep::readback::check_head_and_tail`].
#[allow(clippy::too_many_arguments)]
pub fn copy_parts(
    drive: &str,
    plan: &DrivePlan,
    layout: &DriveLayout,
    source: &dyn StagedSource,
    target: &DriveTarget<'_>,
    resume: Checkpoint,
    sink: &mut dyn CheckpointSink,
    progress: &dyn Progress,
    cancel: &AtomicBool,
    verify: bool,
) -> Result<Checkpoint, CopyError> {
    let (offsets, data_end) = layout.member_offsets(plan);
    let model = if verify {
        Some(DataModel::new(drive, plan, layout)?)
    } else {
        None
    };
    let mut done = resume;
    done.payload_offset = done.payload_offset.max(layout.data_start(plan));
    let all: Vec<(usize, Range<u64>)> = plan
        .parts
        .iter()
        .enumerate()
        .flat_map(|(i, p)| p.segments.iter().map(move |s| (i, s.clone())))
        .collect();
    check_resume(drive, plan, &all, &done)?;
    // Where the copy stands: which part, and how far into its content.
    let (first_part, content_from) = position_of(plan, &offsets, layout, done.payload_offset);
    progress.inc(done.payload_offset);
    let stop_readback = AtomicBool::new(false);
    std::thread::scope(|s| -> Result<Checkpoint, CopyError> {
        // The read-back: first what earlier runs wrote, then each checkpoint's stretch.
        let (rb_tx, rb_rx) = mpsc::channel::<(Range<u64>, Vec<SegmentRecord>)>();
        let data_start = layout.data_start(plan);
        let readback = model.as_ref().map(|m| {
            let checker = DataChecker::new(drive, m, data_start, &[]);
            let stop = &stop_readback;
            s.spawn(move || follow_copy(drive, target, checker, rb_rx, stop, progress))
        });
        let rb_tx = readback.as_ref().map(|_| rb_tx);
        // Rendezvous: the reader reads the next batch while the hashing thread and the writer work on one,
        // and no third waits in between (two batches of 64 MiB, not three).
        let (tx, rx) = mpsc::sync_channel::<Result<Batch, CopyError>>(0);
        let batch_len = batch_len(plan.payload_len);
        let reader = s.spawn(move || read_batches(plan, source, first_part, content_from, batch_len, &tx));
        let stream = Stream {
            batches: rx,
            readback: rb_tx,
            first_part,
            batch_len,
            data_end,
        };
        let result = copy_batches(drive, plan, layout, target, done, stream, sink, progress, cancel);
        if result.is_err() {
            stop_readback.store(true, Ordering::Relaxed);
        }
        let checked = readback.map(|h| h.join().expect("the read-back thread does not panic"));
        reader.join().expect("the reader thread does not panic");
        let done = result?;
        if let Some(checked) = checked {
            checked?;
        }
        Ok(done)
    })
}

/// What the copy loop receives batches from and hands finished stretches to.
struct Stream {
    batches: mpsc::Receiver<Result<Batch, CopyError>>,
    readback: Option<mpsc::Sender<(Range<u64>, Vec<SegmentRecord>)>>,
    first_part: usize,
    batch_len: u64,
    data_end: u64,
}

/// The copy's main loop: receives the reader's batches, writes them as members, checkpoints.
#[allow(clippy::too_many_arguments)]
fn copy_batches(
    drive: &str,
    plan: &DrivePlan,
    layout: &DriveLayout,
    target: &DriveTarget<'_>,
    mut done: Checkpoint,
    stream: Stream,
    sink: &mut dyn CheckpointSink,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<Checkpoint, CopyError> {
    let Stream {
        batches: rx,
        readback,
        first_part,
        batch_len,
        data_end,
    } = stream;
    let write_err = |offset, source| CopyError::Write {
        drive: drive.to_owned(),
        offset,
        source,
    };
    let mut writer = target
        .writer_at(done.payload_offset)
        .map_err(|e| write_err(done.payload_offset, e))?;
    let payload = &mut writer;
    // The read-back gets whole sectors only (the writer rewrites the partial sector at its position), from
    // the data start: what earlier runs wrote first, then each checkpoint's stretch.
    let mut sent_to = layout.data_start(plan);
    let mut send_back = |to: u64, segments: &[SegmentRecord]| {
        if let Some(rb) = &readback {
            // The read-back thread stops early only when the copy failed; the copy's error is reported.
            let _ = rb.send((sent_to..to.max(sent_to), segments.to_vec()));
            sent_to = to.max(sent_to);
        }
    };
    send_back(done.payload_offset / SECTOR * SECTOR, &done.segments);
    // The first part whose header is not written yet.
    let mut next_header = first_part;
    // Segments hashed since the last checkpoint, and the payload offset progress has counted to.
    let mut pending: Vec<SegmentRecord> = Vec::new();
    let mut counted = done.payload_offset;
    // Syncing the drive stalls the pipeline: checkpoint about 16 times per drive, at least every batch
    // and at most every GiB, so a small drive resumes finely and a large one keeps the disk streaming.
    let interval = (plan.payload_len / 16).clamp(batch_len, CHECKPOINT_MAX);
    let mut checkpoint = |payload: &mut PayloadWriter<'_>,
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
        // At the data end nothing is rewritten before the read-back has finished (the caller waits for it).
        let whole = match payload.position() {
            end if end == data_end => end,
            at => at / SECTOR * SECTOR,
        };
        send_back(whole, pending);
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
        write(payload, batch.data.bytes())?;
        drop(batch.data);
        if batch.range.end == part.end {
            let pad = (part.size().div_ceil(BLOCK) * BLOCK - part.size()) as usize;
            write(payload, &[0u8; BLOCK as usize][..pad])?;
        }
        progress.inc(payload.position() - counted);
        counted = payload.position();
        // Hashed meanwhile on the hashing thread (which sends every batch's records before anything else).
        pending.extend(
            batch
                .segments
                .recv()
                .expect("the hashing thread sends each batch's records"),
        );
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
    let file = pad_manifest(manifest_text, slot.size as usize);
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

/// Bytes of padding written as plain spaces; beyond them the padding is made of XML comments.
const PAD_SPACES: usize = 64 << 10;

/// The manifest file: the text padded to its slot. Up to [`PAD_SPACES`] of padding are spaces (XML allows
/// trailing whitespace); a larger slot (a drive that takes more sessions, or a large estimate) is filled with
/// comments of that size first, since XML readers bound each token (seedship's at 1 MiB) and one run of
/// whitespace a gigabyte long would be refused.
fn pad_manifest(text: &str, slot: usize) -> Vec<u8> {
    let mut file = Vec::with_capacity(slot);
    file.extend_from_slice(text.as_bytes());
    while slot.saturating_sub(file.len()) > PAD_SPACES + PAD_SPACES {
        file.extend_from_slice(b"\n<!--");
        file.resize(file.len() + PAD_SPACES - 8, b' ');
        file.extend_from_slice(b"-->");
    }
    file.resize(slot.max(file.len()), b' ');
    file
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

/// A batch to read: its blob range and the segments it completes.
type Planned = (Range<u64>, Vec<Range<u64>>);

/// The batches of part `i` from blob offset `start`: ranges that end on segment boundaries (gaps between
/// segments are zeros), up to `batch_len` bytes unless one segment is longer, with the segments each
/// completes.
fn part_batches(plan: &DrivePlan, i: usize, start: u64, batch_len: u64) -> Vec<Planned> {
    let part = &plan.parts[i];
    let mut out = Vec::new();
    let mut at = start;
    while at < part.end {
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
        out.push((at..end, segs));
        at = end;
    }
    out
}

/// Reads the parts' content from `first_part` at blob offset `from` on, in batches that end on segment
/// boundaries, and hashes the segments of each batch while the writer writes it. Each blob whose BLAKE3 the
/// source knows is checked when its part is complete (the blob's bytes outside the part read for the hash
/// only); a mismatch is sent as the last batch's error, so the drive fails before its manifest is written.
///
/// Two threads: this one hashes, and a reader reads the next batch meanwhile ([`read_ahead`]).
fn read_batches(
    plan: &DrivePlan,
    source: &dyn StagedSource,
    first_part: usize,
    from: u64,
    batch_len: u64,
    tx: &mpsc::SyncSender<Result<Batch, CopyError>>,
) {
    let start_of = |i: usize| {
        let part = &plan.parts[i];
        if i == first_part {
            from.max(part.start)
        } else {
            part.start
        }
    };
    let batches: Vec<Vec<Planned>> = (first_part..plan.parts.len())
        .map(|i| part_batches(plan, i, start_of(i), batch_len))
        .collect();
    // A rendezvous: the reader reads one batch ahead of the one being hashed.
    let (filled_tx, filled_rx) = mpsc::sync_channel::<Result<Arc<Filled>, CopyError>>(0);
    let batches = &batches;
    // `move`: the receiver is dropped when the hashing stops, before the scope waits for the reader, which
    // then stops at its next send.
    std::thread::scope(move |s| {
        s.spawn(move || read_ahead(plan, source, first_part, batches, batch_len, filled_tx));
        for (i, part) in plan.parts.iter().enumerate().skip(first_part) {
            let batches = &batches[i - first_part];
            let result = hash_part(source, &part.blob, i, start_of(i), batches, &filled_rx, tx);
            let result = match result {
                Err(Stop::WriterGone) => return,
                Err(Stop::Failed(e)) => Err(e),
                Ok(digest) => match (digest, source.digest(&part.blob)) {
                    (Some(d), Some(want)) => d.finish(source, &part.blob, part.blob_len, want, HASH_STEP),
                    _ => Ok(()),
                },
            };
            if let Err(e) = result {
                let _ = tx.send(Err(e));
                return;
            }
        }
    });
}

/// Why the hashing stopped sending a part's batches.
enum Stop {
    Failed(CopyError),
    /// The writer stopped receiving (it failed or was interrupted and reports why).
    WriterGone,
}

/// The reader's batch buffers: two at most (the one being read and the one being hashed and written), each
/// allocated once and then handed back when the hashing and the writer are done with it, so the memory of a
/// drive of any size is two batches and their pages (huge pages where the kernel has them, see
/// [`AlignedBuf::new`]) are faulted in once.
struct Buffers {
    spare: mpsc::Receiver<AlignedBuf>,
    allocated: usize,
    cap: usize,
}

impl Buffers {
    /// The buffer to read the next batch into; `None` when no buffer can come back.
    fn take(&mut self) -> Option<AlignedBuf> {
        if let Ok(b) = self.spare.try_recv() {
            return Some(b);
        }
        if self.allocated < 2 {
            self.allocated += 1;
            return Some(AlignedBuf::new(self.cap));
        }
        self.spare.recv().ok()
    }
}

/// Reads every batch of `batches` (per part from `first_part`) in order and sends each one filled; stops at
/// the first error (sent) or when the hashing thread is gone.
fn read_ahead(
    plan: &DrivePlan,
    source: &dyn StagedSource,
    first_part: usize,
    batches: &[Vec<Planned>],
    batch_len: u64,
    filled: mpsc::SyncSender<Result<Arc<Filled>, CopyError>>,
) {
    let (back, spare) = mpsc::channel::<AlignedBuf>();
    let mut buffers = Buffers {
        spare,
        allocated: 0,
        cap: batch_len as usize + 2 * ALIGN,
    };
    for (k, part_batches) in batches.iter().enumerate() {
        let blob = &plan.parts[first_part + k].blob;
        for (range, _) in part_batches {
            let Some(mut buf) = buffers.take() else { return };
            let result = source.read(blob, range.clone(), &mut buf).map(|head| {
                Arc::new(Filled {
                    buf: Some(buf),
                    head,
                    len: (range.end - range.start) as usize,
                    back: back.clone(),
                })
            });
            let failed = result.is_err();
            if filled.send(result).is_err() || failed {
                return;
            }
        }
    }
}

/// Hashes the batches of part `i` (from blob offset `start`) as the reader fills them, handing each to the
/// writer before hashing it, and feeding the blob's digest when the source knows one; returns that digest
/// (`Ok(None)` without one).
fn hash_part(
    source: &dyn StagedSource,
    blob: &str,
    i: usize,
    start: u64,
    batches: &[Planned],
    filled: &mpsc::Receiver<Result<Arc<Filled>, CopyError>>,
    tx: &mpsc::SyncSender<Result<Batch, CopyError>>,
) -> Result<Option<BlobDigest>, Stop> {
    let mut digest = match source.digest(blob) {
        Some(_) => Some(BlobDigest::start(source, blob, start, HASH_STEP).map_err(Stop::Failed)?),
        None => None,
    };
    for (range, segs) in batches {
        // The reader stops without sending only when its buffers cannot come back: the writer is gone.
        let data = filled
            .recv()
            .map_err(|_| Stop::WriterGone)?
            .map_err(Stop::Failed)?;
        let (records_tx, records_rx) = mpsc::channel();
        let batch = Batch {
            part: i,
            range: range.clone(),
            data: Arc::clone(&data),
            segments: records_rx,
        };
        if tx.send(Ok(batch)).is_err() {
            return Err(Stop::WriterGone);
        }
        let records = hash_batch(blob, range.clone(), segs, data.bytes(), digest.as_mut());
        drop(data);
        let _ = records_tx.send(records);
    }
    Ok(digest)
}

/// Hashes a batch's segments (MD5, xxh3) and, beside them, feeds its bytes to the blob's digest.
fn hash_batch(
    blob: &str,
    range: Range<u64>,
    segs: &[Range<u64>],
    bytes: &[u8],
    digest: Option<&mut BlobDigest>,
) -> Vec<SegmentRecord> {
    std::thread::scope(|s| {
        if let Some(d) = digest {
            s.spawn(move || d.update(bytes));
        }
        hash_segments(blob, bytes, range.start, segs)
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
    use crate::prep::error::VerifyError;
    use crate::prep::plan::{plan, BlobExtents};
    use crate::prep::source::StoreSource;
    use md5::{Digest, Md5};
    use seedship_shared::blob::BlobStore;
    use seedship_shared::blob::{MemoryStore, Metadata};
    use seedship_shared::luks::payload::testing::{MemDevice, XorCipher};
    use seedship_shared::luks::payload::{Device, SectorCipher};
    use seedship_shared::progress::NoProgress;
    use seedship_shared::tar::TarReader;
    use std::collections::HashMap;
    use std::io::Read;
    use std::sync::Mutex;

    const MIB: u64 = 1 << 20;

    fn layout() -> DriveLayout {
        DriveLayout {
            session: "s1x".into(),
            container: "seed".into(),
            mtime: 1_700_000_000,
            manifest_slot: None,
            data_from: None,
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
        let source = StoreSource {
            store,
            digests: digests(store),
        };
        copy_parts(
            "D1",
            drive,
            &layout(),
            &source,
            &target(dev),
            resume,
            sink,
            &NoProgress,
            cancel,
            true,
        )
    }

    /// The BLAKE3 of every blob in the store, as a job descriptor records them.
    fn digests(store: &MemoryStore) -> HashMap<String, String> {
        ["config", "empty", "data/0000"]
            .iter()
            .map(|n| {
                let mut b = vec![0u8; store.properties(n).unwrap().len as usize];
                store.read_at(n, 0, &mut b).unwrap();
                (n.to_string(), blake3::hash(&b).to_hex().to_string())
            })
            .collect()
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
    fn a_damaged_staged_blob_fails_the_copy_naming_it() {
        let (store, extents) = source();
        // Two drives: data/0000 spans them, so each checks the whole blob (the other part read for the hash).
        let p = plan(&extents, &[48 * MIB, 1 << 30], &layout()).unwrap();
        assert!(p.drives.len() == 2 && p.drives[1].parts[0].blob == "data/0000");
        let never = AtomicBool::new(false);
        for drive in &p.drives {
            let dev = MemDevice {
                bytes: Mutex::new(vec![]),
                fail_from: None,
            };
            run(
                &dev,
                drive,
                &store,
                Checkpoint::default(),
                &mut Recorder::default(),
                &never,
            )
            .unwrap();
        }
        let mut digests = digests(&store);
        digests.insert("data/0000".into(), blake3::hash(b"other").to_hex().to_string());
        let source = StoreSource {
            store: &store,
            digests,
        };
        for drive in &p.drives {
            let dev = MemDevice {
                bytes: Mutex::new(vec![]),
                fail_from: None,
            };
            let e = copy_parts(
                "D1",
                drive,
                &layout(),
                &source,
                &target(&dev),
                Checkpoint::default(),
                &mut Recorder::default(),
                &NoProgress,
                &never,
                false,
            )
            .unwrap_err();
            assert!(
                matches!(&e, CopyError::StagedDigest { blob, .. } if blob == "data/0000"),
                "{e}"
            );
            assert!(e.to_string().contains("no manifest written"), "{e}");
        }
    }

    /// A drive that changes one byte of what is written at device offset `at` (a failing medium).
    struct Flipping {
        inner: MemDevice,
        at: u64,
    }

    impl Device for Flipping {
        fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
            self.inner.write_at(buf, offset)?;
            if (offset..offset + buf.len() as u64).contains(&self.at) {
                self.inner.bytes.lock().unwrap()[self.at as usize] ^= 0x08;
            }
            Ok(())
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
            self.inner.read_at(buf, offset)
        }
        fn sync(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_read_back_beside_the_copy_names_a_segment_the_drive_changed() {
        let (store, extents) = source();
        let p = plan(&extents, &[1 << 30], &layout()).unwrap();
        let drive = &p.drives[0];
        let (offsets, _) = layout().member_offsets(drive);
        // In data/0000's member, 20 MiB into its content (past the header's sector).
        for (at, verify) in [
            (offsets[2] + 4096 + 20 * MIB, true),
            (offsets[2] + 4096 + 20 * MIB, false),
        ] {
            let dev = Flipping {
                inner: MemDevice {
                    bytes: Mutex::new(vec![]),
                    fail_from: None,
                },
                at,
            };
            let target = DriveTarget {
                device: &dev,
                cipher: &XorCipher,
                data_offset: 0,
                capacity: 1 << 30,
            };
            let source = StoreSource {
                store: &store,
                digests: digests(&store),
            };
            let got = copy_parts(
                "D1",
                drive,
                &layout(),
                &source,
                &target,
                Checkpoint::default(),
                &mut Recorder::default(),
                &NoProgress,
                &AtomicBool::new(false),
                verify,
            );
            match (verify, got) {
                (true, Err(CopyError::Verify(VerifyError::SegmentMismatch { blob, start, .. }))) => {
                    assert_eq!(blob, "data/0000");
                    assert!(start <= 20 * MIB && 20 * MIB < start + 4 * MIB, "{start}");
                }
                (false, Ok(_)) => {}
                (v, other) => panic!("verify {v}: {other:?}"),
            }
        }
    }

    #[test]
    fn long_padding_is_made_of_bounded_comments() {
        let short = pad_manifest("<a/>", 4096);
        assert_eq!(short.len(), 4096);
        assert!(short[4..].iter().all(|&b| b == b' '));
        let long = pad_manifest("<a/>", 5 << 20);
        assert_eq!(long.len(), 5 << 20);
        let text = std::str::from_utf8(&long).unwrap();
        assert!(text.matches("<!--").count() >= 70);
        let mut biggest = 0;
        for piece in text.split(['<', '>']) {
            biggest = biggest.max(piece.len());
        }
        assert!(biggest <= PAD_SPACES * 2, "{biggest}");
        // A real manifest padded this way still parses, with the same content.
        use seedship_shared::manifest::{DriveHeader, DriveManifest, ManifestWriter};
        let text = ManifestWriter::new(Vec::new(), &DriveHeader::new("D1", None))
            .unwrap()
            .finish()
            .unwrap();
        let text = String::from_utf8(text).unwrap();
        let padded = pad_manifest(&text, 3 << 20);
        assert_eq!(
            DriveManifest::parse(&padded).unwrap(),
            DriveManifest::parse(text.as_bytes()).unwrap()
        );
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
        use crate::prep::verify::{verify_written, VerifyError};
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
