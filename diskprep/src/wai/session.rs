//! One `prepimport` session: planned onto what is left of the drive (after the sessions before it), copied
//! with diskprep's copy (checkpoints into the journal, read-back), then the drive's manifest rewritten with
//! one `BlobList` per session and the end-of-archive marker after the session's files; and `/AbortSession`,
//! which writes the earlier sessions' manifest and marker back.

use super::drive::{open_rw, unlock};
use super::journal::{self, DriveJournal, DriveRecord, Replayed, SessionRecord, SourceRecord};
use super::request::{say, PrepImportArgs, PrepImportReport, Request};
use super::source::{self, BlobType, SourceFile, SourceSpec};
use crate::prep::console::ConsoleUi;
use crate::prep::copy::{copy_parts, finish_payload, Checkpoint};
use crate::prep::layout::{DriveLayout, SegmentRecord};
use crate::prep::plan::{segments, Cursor, DrivePlan};
use crate::prep::prepare::PrepUi;
use crate::prep::readback::check_head_and_tail;
use crate::prep::source::StagingFiles;
use anyhow::{bail, Context};
use seedship_shared::luks::direct::DriveFile;
use seedship_shared::luks::payload::DriveTarget;
use seedship_shared::manifest::{
    BlobListHeader, BlobPart, Block, DriveFilePath, DriveHeader, ManifestBlob, ManifestWriter, Md5Hash,
    PageRange, RangeList, CLIENT_CREATOR, MANIFEST_VERSION,
};
use seedship_shared::recovery::RecoveryKey;
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// A session's plan: its files, layout and drive plan.
pub(super) struct SessionPlan {
    pub(super) record: SessionRecord,
    pub(super) files: Vec<SourceFile>,
    pub(super) layout: DriveLayout,
    pub(super) plan: DrivePlan,
}

/// Where a new session starts: after the last complete session, or after the manifest on an empty drive.
pub(super) fn next_data_from(state: &Replayed) -> Option<u64> {
    state.done().last().and_then(|s| s.data_end)
}

pub(super) fn layout_of(drive: &DriveRecord, record: &SessionRecord) -> DriveLayout {
    DriveLayout {
        session: record.session_id.clone(),
        container: record.container.clone(),
        mtime: record.mtime,
        manifest_slot: Some(drive.manifest_slot),
        data_from: record.data_from,
    }
}

/// Plans a session's files onto what is left of the drive. A v1 session (`spill` false) must fit whole; a v2
/// session (`/DataSet:`, `/AdditionalDriveSet:`) fills the drive and the rest waits for the next drive.
pub(super) fn plan_files(
    state: &Replayed,
    drive: &DriveRecord,
    record: &SessionRecord,
    files: &[SourceFile],
    spill: bool,
) -> anyhow::Result<(DriveLayout, DrivePlan)> {
    let layout = layout_of(drive, record);
    let extents: Vec<_> = files.iter().map(|f| f.extents.clone()).collect();
    let mut cursor = Cursor::new(&extents);
    let mut plan = cursor.fill_drive(drive.capacity, &layout);
    // A block blob is never cut across drives: one the drive would cut waits whole for the next drive, with
    // the files after it.
    let cut_block = plan.parts.iter().enumerate().find_map(|(i, p)| {
        let f = &files[i];
        (f.blob_type == BlobType::Block && p.end < f.extents.len).then_some(i)
    });
    let mut rest_from = None;
    if let Some(k) = cut_block {
        let mut before = Cursor::new(&extents[..k]);
        plan = before.fill_drive(drive.capacity, &layout);
        rest_from = Some(Cursor::new(&extents[k..]));
    }
    let used = record.data_from.unwrap_or(0);
    if plan.parts.is_empty() && !files.is_empty() {
        if files[0].blob_type == BlobType::Block {
            bail!(
                "drive {} has {} of payload free, not enough for block blob {} ({}) of session {}: a block \
                 blob is never cut across drives; give it a drive with more room (its own journal)",
                drive.drive_id,
                seedship_shared::units::human(drive.capacity.saturating_sub(used)),
                files[0].extents.name,
                seedship_shared::units::human(files[0].extents.len),
                record.session_id
            );
        }
        bail!(
            "drive {} is full: {} of its {} payload is free, not enough for any of session {}; give the data \
             set another drive with its own journal",
            drive.drive_id,
            seedship_shared::units::human(drive.capacity.saturating_sub(used)),
            seedship_shared::units::human(drive.capacity),
            record.session_id
        );
    }
    let remaining = match &rest_from {
        Some(rest) => rest.remaining_len(&layout),
        None => cursor.remaining_len(&layout),
    };
    if (rest_from.is_some() || !cursor.is_done()) && !spill {
        bail!(
            "session {} does not fit on drive {}: {} of its {} payload is free and the session needs {} more \
             (a /srcdir: or /srcfile: session goes to one drive, as in WAImportExport v1; split the source and \
             use another drive with its own journal, or give the sources as a /DataSet: file, whose rest \
             continues on the drives of /AdditionalDriveSet:)",
            record.session_id,
            drive.drive_id,
            seedship_shared::units::human(drive.capacity.saturating_sub(used)),
            seedship_shared::units::human(drive.capacity),
            seedship_shared::units::human(remaining)
        );
    }
    let earlier: Vec<&SessionRecord> = state.done().collect();
    let earlier_text = drive_manifest(&drive.drive_id, &earlier, None)?.len() as u64;
    if earlier_text + plan.manifest_reserve > drive.manifest_slot {
        bail!(
            "drive {}'s manifest slot ({}) cannot list session {} as well; use another drive",
            drive.drive_id,
            seedship_shared::units::human(drive.manifest_slot),
            record.session_id
        );
    }
    Ok((layout, plan))
}

/// What a plan puts on the drive, as journal records: the pieces placed (a blob cut by the end of the drive,
/// continued from an earlier drive or starting after a hole is a part), and the rest of the data set.
fn placed(files: &[SourceFile], plan: &DrivePlan) -> (Vec<SourceRecord>, Vec<SourceRecord>) {
    let record = |f: &SourceFile, segments, part| SourceRecord {
        blob: f.extents.name.clone(),
        path: f.path.clone(),
        len: f.extents.len,
        mtime_ns: f.mtime_ns,
        segments,
        disposition: f.disposition,
        blob_type: f.blob_type,
        part,
    };
    let mut sources = Vec::with_capacity(plan.parts.len());
    let mut rest = Vec::new();
    for (f, p) in files.iter().zip(&plan.parts) {
        let data_end = segments(&f.extents.data).last().map_or(p.end, |s| s.end);
        let cut = p.end < data_end;
        let index = f.offered.map_or(1, |o| o.index);
        let part = (f.offered.is_some() || cut || p.start > 0).then_some(BlobPart {
            index,
            start: p.start,
            end: p.end,
        });
        sources.push(record(f, p.segments.len(), part));
        if cut {
            rest.push(record(
                f,
                0,
                Some(BlobPart {
                    index: index + 1,
                    start: p.end,
                    end: f.extents.len,
                }),
            ));
        }
    }
    for f in &files[plan.parts.len().min(files.len())..] {
        rest.push(record(f, 0, f.offered));
    }
    (sources, rest)
}

/// A new session on the drive: planned, its record (sources placed and the rest) ready to be journalled.
pub(super) fn new_plan(
    state: &Replayed,
    drive: &DriveRecord,
    id: &str,
    container: String,
    mut files: Vec<SourceFile>,
    spill: bool,
) -> anyhow::Result<SessionPlan> {
    if let Some(l) = state.latest().filter(|l| !l.is_done()) {
        bail!(
            "session {} of drive {} did not finish: resume it with /id:{0} /ResumeSession, or roll it back \
             with /id:{0} /AbortSession",
            l.session_id,
            drive.drive_id
        );
    }
    if state.done().any(|s| s.session_id == id) {
        bail!(
            "drive {} already has a session {id}: give the new session another id",
            drive.drive_id
        );
    }
    let mut record = SessionRecord {
        session_id: id.to_owned(),
        container,
        mtime: seedship_shared::time::now_unix(),
        data_from: next_data_from(state),
        sources: Vec::new(),
        checkpoint: Checkpoint::default(),
        data_end: None,
        aborted: false,
        rest: Vec::new(),
        continued_in: None,
        continues_from: None,
    };
    let (layout, plan) = plan_files(state, drive, &record, &files, spill)?;
    (record.sources, record.rest) = placed(&files, &plan);
    files.truncate(plan.parts.len());
    Ok(SessionPlan {
        record,
        files,
        layout,
        plan,
    })
}

/// A recorded piece of a session as a file to copy again: the file must not have changed; a part's data is
/// cut to the part's bytes.
pub(super) fn piece(s: &SourceRecord, container: &str, session: &str) -> anyhow::Result<SourceFile> {
    let now = source::mtime_ns(&s.path);
    if now != Some((s.len, s.mtime_ns)) {
        bail!(
            "{} changed (or is gone) since session {session} started: a session goes on only over the same \
             source; roll it back with /AbortSession and start a new one",
            s.path.display()
        );
    }
    let spec = SourceSpec {
        path: s.path.clone(),
        dst: format!("{container}/{}", s.blob),
        dir: false,
        disposition: s.disposition,
        blob_type: s.blob_type,
    };
    let (_, mut f) = source::resolve(std::slice::from_ref(&spec))?;
    let mut f = f.remove(0);
    if let Some(p) = s.part {
        f.extents.data = f
            .extents
            .data
            .iter()
            .filter_map(|r| {
                let (a, b) = (r.start.max(p.start), r.end.min(p.end));
                (a < b).then_some(a..b)
            })
            .collect();
        f.offered = Some(p);
    }
    Ok(f)
}

/// The latest session again, from the journal: the same files (unchanged), the same plan.
pub(super) fn resume_plan(state: &Replayed, drive: &DriveRecord, id: &str) -> anyhow::Result<SessionPlan> {
    let Some(latest) = state.latest() else {
        bail!("drive {} has no session to resume", drive.drive_id);
    };
    if latest.session_id != id {
        bail!(
            "only the latest session of drive {} can be resumed: {}, not {id}",
            drive.drive_id,
            latest.session_id
        );
    }
    if latest.is_done() {
        bail!(
            "session {id} of drive {} is complete; nothing to resume",
            drive.drive_id
        );
    }
    let files = latest
        .sources
        .iter()
        .map(|s| piece(s, &latest.container, id))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (layout, plan) = plan_files(state, drive, latest, &files, false)?;
    let (sources, _) = placed(&files, &plan);
    if sources != latest.sources {
        bail!(
            "session {id} of drive {} cannot be planned again as it was recorded (was the journal written \
             by another version of seedship-diskprep?); roll it back with /AbortSession",
            drive.drive_id
        );
    }
    Ok(SessionPlan {
        record: latest.clone(),
        files,
        layout,
        plan,
    })
}

/// The drive's manifest: one `BlobList` per session, each blob's non-zero segments as page ranges. `current`
/// adds a session not complete yet, with its segments.
pub(super) fn drive_manifest(
    drive_id: &str,
    sessions: &[&SessionRecord],
    current: Option<(&SessionRecord, &[SegmentRecord])>,
) -> anyhow::Result<Vec<u8>> {
    let header = DriveHeader {
        version: MANIFEST_VERSION.to_owned(),
        drive_id: drive_id.to_owned(),
        credential: None,
        client_creator: Some(CLIENT_CREATOR.to_owned()),
    };
    let mut w = ManifestWriter::new(Vec::new(), &header)?;
    let all = sessions
        .iter()
        .map(|s| (*s, s.checkpoint.segments.as_slice()))
        .chain(current);
    for (s, segments) in all {
        w.begin_blob_list(&BlobListHeader {
            id: Some(s.session_id.clone()),
            metadata: None,
            properties: None,
        })?;
        let mut segs = segments.iter();
        for src in &s.sources {
            let blob_path = format!("{}/{}", s.container, src.blob);
            let paths = DriveFilePath::new(&s.session_id, &blob_path)?;
            if src.blob_type == BlobType::Block {
                let blocks = block_list(segs.by_ref().take(src.segments))?;
                let mut blob = ManifestBlob::page_blob(blob_path, paths.file_path, src.len, Vec::new());
                blob.ranges = RangeList::Blocks(blocks);
                blob.disposition = Some(src.disposition);
                w.write_blob(&blob)?;
                continue;
            }
            let mut ranges = Vec::new();
            for seg in segs.by_ref().take(src.segments).filter(|x| !x.zero) {
                let mut hash = [0u8; 16];
                hex::decode_to_slice(&seg.md5, &mut hash).context("an MD5 in the journal is not hex")?;
                ranges.push(PageRange {
                    offset: seg.range.start,
                    length: seg.range.end - seg.range.start,
                    hash: Md5Hash(hash),
                });
            }
            let mut blob = ManifestBlob::page_blob(blob_path, paths.file_path, src.len, ranges);
            blob.disposition = Some(src.disposition);
            blob.part = src.part;
            w.write_blob(&blob)?;
        }
    }
    let text = w.finish()?;
    Ok(text)
}

/// A block blob's block list: every segment (zeros included: a block list covers the whole blob), in order,
/// with the Id WAImportExport gives (Base64 of the block's 4-byte little-endian index).
fn block_list<'a>(segments: impl Iterator<Item = &'a SegmentRecord>) -> anyhow::Result<Vec<Block>> {
    use base64::Engine;
    segments
        .enumerate()
        .map(|(i, seg)| {
            let mut hash = [0u8; 16];
            hex::decode_to_slice(&seg.md5, &mut hash).context("an MD5 in the journal is not hex")?;
            let index = u32::try_from(i).context("more blocks than a block list holds")?;
            Ok(Block {
                offset: seg.range.start,
                length: seg.range.end - seg.range.start,
                id: Some(base64::engine::general_purpose::STANDARD.encode(index.to_le_bytes())),
                hash: Md5Hash(hash),
            })
        })
        .collect()
}

/// Copies a session (from its last checkpoint), rewrites the drive's manifest and end marker, checks them,
/// and records the end. Returns the manifest's MD5.
pub(super) fn write_session(
    drive: &DriveRecord,
    state: &Replayed,
    s: &SessionPlan,
    j: &mut DriveJournal,
    cancel: &AtomicBool,
) -> anyhow::Result<String> {
    let key = RecoveryKey::parse(&drive.recovery_key)?;
    let file = open_rw(&drive.target)?;
    let volume = unlock(&file, &drive.drive_id, &drive.target, &key)?;
    let device = DriveFile::new(&file, &drive.target);
    let target = DriveTarget {
        device: &device,
        cipher: &volume,
        data_offset: volume.data_offset(),
        capacity: drive.capacity.min(volume.payload_len()),
    };
    let source = StagingFiles::from_files(
        s.files
            .iter()
            .map(|f| (f.extents.name.clone(), f.path.clone(), None)),
    );
    let mut ui = ConsoleUi::default();
    let progress = ui.progress(
        &format!("session {} ({})", s.record.session_id, drive.drive_id),
        2 * s.plan.payload_len,
    );
    let copied = copy_parts(
        &drive.drive_id,
        &s.plan,
        &s.layout,
        &source,
        &target,
        s.record.checkpoint.clone(),
        j,
        progress.as_ref(),
        cancel,
        true,
    );
    progress.finish();
    let done = copied?;
    let earlier: Vec<&SessionRecord> = state
        .done()
        .filter(|x| x.session_id != s.record.session_id)
        .collect();
    let text = drive_manifest(&drive.drive_id, &earlier, Some((&s.record, &done.segments)))?;
    let text = String::from_utf8(text).context("the manifest is UTF-8")?;
    let manifest = finish_payload(&drive.drive_id, &s.plan, &s.layout, &target, &text)?;
    check_head_and_tail(&drive.drive_id, &s.plan, &s.layout, &target, &manifest)?;
    let hash = seedship_shared::manifest::manifest_hash(&manifest);
    let (_, data_end) = s.layout.member_offsets(&s.plan);
    j.record_done(&drive.drive_id, &s.record.session_id, &hash, data_end)?;
    Ok(hash)
}

/// `/AbortSession`: rolls the latest session back. The drive gets back the end marker and manifest of the
/// sessions before it (none: the drive holds no session).
pub(super) fn abort(
    journal_path: &Path,
    req: &Request,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<PrepImportReport> {
    let state = journal::read(journal_path)
        .with_context(|| format!("journal {}: nothing to abort", journal_path.display()))?;
    let drive = state.drive.clone().with_context(|| {
        format!(
            "journal {} records no drive: nothing to abort",
            journal_path.display()
        )
    })?;
    let Some(latest) = state.latest() else {
        bail!("drive {} has no session to abort", drive.drive_id);
    };
    if latest.session_id != req.session_id {
        bail!(
            "only the latest session of drive {} can be aborted: {}, not {}",
            drive.drive_id,
            latest.session_id,
            req.session_id
        );
    }
    if let Some(next) = &latest.continued_in {
        if super::chain::session_in(next, &latest.session_id)?.is_some() {
            bail!(
                "session {} of drive {} continues on the drive of journal {}: roll it back there first \
                 (/j:{} /id:{} /AbortSession)",
                latest.session_id,
                drive.drive_id,
                next.display(),
                next.display(),
                latest.session_id
            );
        }
    }
    let kept: Vec<&SessionRecord> = state
        .done()
        .filter(|s| s.session_id != latest.session_id)
        .collect();
    let mut out = PrepImportReport {
        journal: journal_path.display().to_string(),
        drive_id: drive.drive_id.clone(),
        target: drive.target.display().to_string(),
        session_id: latest.session_id.clone(),
        action: if dry_run { "planned" } else { "aborted" },
        blobs: latest.sources.len(),
        bytes: 0,
        manifest_hash: None,
        sessions: kept.iter().map(|s| s.session_id.clone()).collect(),
        remaining_files: 0,
        remaining_bytes: 0,
        journals: vec![journal_path.display().to_string()],
    };
    if dry_run {
        say(
            json,
            format!(
                "Dry run: session {} of drive {} would be rolled back; nothing was written.",
                latest.session_id, drive.drive_id
            ),
        );
        return Ok(out);
    }
    let (mut j, _) = journal::open(journal_path)?;
    let restored = match kept.last() {
        Some(last) if state.formatted => {
            let key = RecoveryKey::parse(&drive.recovery_key)?;
            let file = open_rw(&drive.target)?;
            let volume = unlock(&file, &drive.drive_id, &drive.target, &key)?;
            let device = DriveFile::new(&file, &drive.target);
            let target = DriveTarget {
                device: &device,
                cipher: &volume,
                data_offset: volume.data_offset(),
                capacity: drive.capacity.min(volume.payload_len()),
            };
            let mut layout = layout_of(&drive, last);
            layout.data_from = last.data_end;
            let empty = DrivePlan::default();
            let text = String::from_utf8(drive_manifest(&drive.drive_id, &kept, None)?)?;
            let manifest = finish_payload(&drive.drive_id, &empty, &layout, &target, &text)?;
            check_head_and_tail(&drive.drive_id, &empty, &layout, &target, &manifest)?;
            Some(seedship_shared::manifest::manifest_hash(&manifest))
        }
        _ => None,
    };
    j.record_aborted(&latest.session_id)?;
    if let Some(h) = &restored {
        j.record_drive_info(&drive.drive_id, h)?;
    }
    out.manifest_hash = restored;
    Ok(out)
}

pub(super) fn report(
    a: &PrepImportArgs,
    drive: &DriveRecord,
    state: &Replayed,
    s: &SessionPlan,
    action: &'static str,
    manifest_hash: Option<String>,
) -> PrepImportReport {
    PrepImportReport {
        journal: a.journal.display().to_string(),
        drive_id: drive.drive_id.clone(),
        target: drive.target.display().to_string(),
        session_id: s.record.session_id.clone(),
        action,
        blobs: s.files.len(),
        bytes: s.plan.payload_len,
        manifest_hash,
        sessions: state.done().map(|x| x.session_id.clone()).collect(),
        remaining_files: s.record.rest.len(),
        remaining_bytes: super::chain::rest_bytes(&s.record.rest),
        journals: vec![a.journal.display().to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::source::BlobType;
    use super::*;
    use crate::prep::plan::{BlobExtents, PartPlan};
    use seedship_shared::manifest::ImportDisposition;

    const MIB: u64 = 1 << 20;

    fn file(name: &str, len: u64, data: std::ops::Range<u64>, offered: Option<BlobPart>) -> SourceFile {
        SourceFile {
            extents: BlobExtents {
                name: name.into(),
                len,
                data: vec![data],
            },
            path: format!("/src/{name}").into(),
            mtime_ns: 7,
            disposition: ImportDisposition::Rename,
            blob_type: BlobType::Page,
            offered,
        }
    }

    fn part(blob: &str, len: u64, start: u64, end: u64) -> PartPlan {
        PartPlan {
            blob: blob.into(),
            blob_len: len,
            start,
            end,
            segments: segments(std::slice::from_ref(&(start..end))),
        }
    }

    fn plan(parts: Vec<PartPlan>) -> DrivePlan {
        DrivePlan {
            parts,
            ..Default::default()
        }
    }

    #[test]
    fn a_cut_blob_continues_as_the_next_part_and_unplaced_files_wait_whole() {
        let files = [
            file("a", 12 * MIB, 0..12 * MIB, None),
            file("b", 4 * MIB, 0..4 * MIB, None),
        ];
        let (sources, rest) = placed(&files, &plan(vec![part("a", 12 * MIB, 0, 8 * MIB)]));
        assert_eq!(sources.len(), 1);
        assert_eq!(
            sources[0].part,
            Some(BlobPart {
                index: 1,
                start: 0,
                end: 8 * MIB
            })
        );
        assert_eq!(sources[0].segments, 2);
        assert_eq!(rest.len(), 2);
        assert_eq!(
            rest[0].part,
            Some(BlobPart {
                index: 2,
                start: 8 * MIB,
                end: 12 * MIB
            })
        );
        assert_eq!((rest[1].blob.as_str(), rest[1].part), ("b", None));
    }

    #[test]
    fn whole_blobs_have_no_part_and_continuations_and_leading_holes_do() {
        let offered = BlobPart {
            index: 2,
            start: 8 * MIB,
            end: 12 * MIB,
        };
        let files = [
            file("a", 12 * MIB, 8 * MIB..12 * MIB, Some(offered)),
            file("b", 4 * MIB, 0..4 * MIB, None),
            file("c", 8 * MIB, 5 * MIB..6 * MIB, None),
        ];
        let (sources, rest) = placed(
            &files,
            &plan(vec![
                part("a", 12 * MIB, 8 * MIB, 12 * MIB),
                part("b", 4 * MIB, 0, 4 * MIB),
                part("c", 8 * MIB, 5 * MIB, 6 * MIB),
            ]),
        );
        assert!(rest.is_empty());
        assert_eq!(sources[0].part, Some(offered));
        assert_eq!(sources[1].part, None);
        assert_eq!(
            sources[2].part,
            Some(BlobPart {
                index: 1,
                start: 5 * MIB,
                end: 6 * MIB
            })
        );
    }

    #[test]
    fn a_block_blob_the_drive_would_cut_waits_whole_for_the_next_drive() {
        use crate::wai::journal::Encryption;
        let drive = DriveRecord {
            drive_id: "D1".into(),
            target: "/dev/null".into(),
            capacity: 16 * MIB,
            manifest_slot: MIB,
            encryption: Encryption::Encrypt,
            recovery_key: zeroize::Zeroizing::new(String::new()),
        };
        let record = SessionRecord {
            session_id: "blk".into(),
            container: "seed".into(),
            mtime: 0,
            data_from: None,
            sources: Vec::new(),
            checkpoint: Checkpoint::default(),
            data_end: None,
            aborted: false,
            rest: Vec::new(),
            continued_in: None,
            continues_from: None,
        };
        let len = 12 * MIB + 5;
        let mut files = vec![
            file("a", 8 * MIB, 0..8 * MIB, None),
            file("b", len, 0..len, None),
            file("c", 512, 0..512, None),
        ];
        let state = Replayed::default();
        // As a page blob, b is cut where the drive fills up...
        let (_, plan) = plan_files(&state, &drive, &record, &files, true).unwrap();
        assert_eq!(plan.parts.len(), 2);
        assert!(plan.parts[1].end < len);
        // ... as a block blob it waits whole for the next drive, with the files after it.
        files[1].blob_type = BlobType::Block;
        let (_, plan) = plan_files(&state, &drive, &record, &files, true).unwrap();
        assert_eq!(plan.parts.len(), 1);
        let (sources, rest) = placed(&files, &plan);
        assert_eq!(sources.len(), 1);
        let rest: Vec<_> = rest
            .iter()
            .map(|r| (r.blob.as_str(), r.part, r.blob_type))
            .collect();
        assert_eq!(rest, [("b", None, BlobType::Block), ("c", None, BlobType::Page)]);
        // A /srcdir: session (no spill) that does not fit is refused; a drive with no room for the block blob
        // at all names it.
        let e = plan_files(&state, &drive, &record, &files, false).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        let mut huge = file("huge", 20 * MIB, 0..20 * MIB, None);
        huge.blob_type = BlobType::Block;
        let e = plan_files(&state, &drive, &record, &[huge], true).unwrap_err();
        assert!(e.to_string().contains("block blob huge"), "{e}");
    }
}
