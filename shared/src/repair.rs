//! Repair after an import: the ranges a drive's copy log reports damaged or missing, sent again with Put Page
//! from the original data, each checked against the drive manifest's MD5 first. `seedship-diskprep
//! repairimport` (WAImportExport's `RepairImport`) and `seedship-agent backup --repair-from-staging` both use
//! it; docs/waimportexport.md describes the command.
//!
//! In order: [`Manifest::from_journal`] reads what a drive's manifest holds (every non-zero segment with its
//! MD5) from the drive's journal, where diskprep recorded it while writing the drive; [`damage`] turns a
//! parsed [`DriveLog`] into the ranges to send, refusing a blob the manifest does not list or a range whose
//! MD5 the copy log and the manifest disagree on; [`check`] reads every such range from the source and
//! compares its MD5 before anything is sent (data changed since the drives were prepared is named, and
//! nothing is sent); [`send`] writes each range with Put Page and records it in the [`RepairFile`], so a rerun
//! after a crash or Ctrl-C skips what was sent.

use crate::blob::{BlobError, BlobStore, Metadata};
use crate::journal::{Journal, JournalError, JournalRecord};
use crate::manifest::copylog::{BlobStatus, DispositionStatus, DriveLog, LogBlob, LogRanges, RangeStatus};
use crate::manifest::{Md5Hash, PageRange, MAX_RANGE_LEN};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The journal record type diskprep writes after every batch (docs/journal.md): its `Segments`.
const CHECKPOINT: &str = "Checkpoint";
/// The journal record type that voids what the drive's journal recorded before it.
const RESTART: &str = "Restart";
/// The record type of a range sent by a repair, in the repair file.
const REPAIRED: &str = "RepairRange";

/// Errors of a repair.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("the drive journal {path}: {reason}")]
    Journal { path: PathBuf, reason: String },
    #[error(transparent)]
    JournalFile(#[from] JournalError),
    #[error("the repair file {path} records {what} that is not a repaired range; give a new file with /r: (or --repair-file)")]
    RepairFile { path: PathBuf, what: String },
    #[error("{name}: {reason}; nothing more was sent (what was sent is recorded: run again to resume)")]
    Source { name: String, reason: String },
    #[error("{name} in container {container}: {source}; run again to resume (what was sent is recorded)")]
    Store {
        container: String,
        name: String,
        #[source]
        source: Box<BlobError>,
    },
    #[error(
        "{name} in container {container} is {found} bytes, but the copy log says the blob is {expected}: not \
         the imported blob; nothing was sent to it"
    )]
    Length {
        container: String,
        name: String,
        found: u64,
        expected: u64,
    },
    #[error(
        "interrupted after {sent} range(s); run again to resume (the repair file records what was sent)"
    )]
    Interrupted { sent: usize },
}

/// What a drive's manifest lists: per blob name (without the container), its non-zero page ranges with their
/// MD5s.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// Where it was read from, for messages.
    pub origin: String,
    blobs: HashMap<String, Vec<PageRange>>,
}

impl Manifest {
    /// The manifest of a drive as its journal recorded it: the segments of every `Checkpoint` after the last
    /// `Restart`, all-zero ones left out (as diskprep leaves them out of the manifest). The journal is only
    /// read.
    pub fn from_journal(path: &Path) -> Result<Manifest, RepairError> {
        let replay = crate::journal::replay(path)?;
        let mut m = Manifest {
            origin: format!("the drive journal {}", path.display()),
            blobs: HashMap::new(),
        };
        for r in &replay.records {
            match r.kind.as_str() {
                RESTART => m.blobs.clear(),
                CHECKPOINT => {
                    for line in r.get("Segments").unwrap_or("").lines().filter(|l| !l.is_empty()) {
                        m.add_segment(line).map_err(|reason| RepairError::Journal {
                            path: path.to_owned(),
                            reason,
                        })?;
                    }
                }
                _ => {}
            }
        }
        Ok(m)
    }

    /// Adds one segment line of a checkpoint: blob, start, end, MD5, xxh3, zero flag (tab-separated).
    fn add_segment(&mut self, line: &str) -> Result<(), String> {
        let bad = || format!("segment line {line:?} is not blob, start, end, md5, xxh3, zero");
        let f: Vec<&str> = line.split('\t').collect();
        let [blob, start, end, md5, _xxh3, zero] = f[..] else {
            return Err(bad());
        };
        let start: u64 = start.parse().map_err(|_| bad())?;
        let end: u64 = end.parse().map_err(|_| bad())?;
        let hash: Md5Hash = md5.parse().map_err(|_| bad())?;
        if end <= start || end - start > MAX_RANGE_LEN {
            return Err(bad());
        }
        if zero != "1" {
            self.blobs.entry(blob.to_owned()).or_default().push(PageRange {
                offset: start,
                length: end - start,
                hash,
            });
        }
        Ok(())
    }

    /// A manifest from explicit ranges (tests, and callers that hold the manifest itself).
    pub fn from_ranges(origin: &str, blobs: HashMap<String, Vec<PageRange>>) -> Manifest {
        Manifest {
            origin: origin.to_owned(),
            blobs,
        }
    }

    /// This manifest and `other`'s blobs (several journals of one drive set).
    pub fn merged(mut self, other: Manifest) -> Manifest {
        self.origin = format!("{} and {}", self.origin, other.origin);
        for (name, ranges) in other.blobs {
            self.blobs.entry(name).or_default().extend(ranges);
        }
        self
    }

    /// The ranges of blob `name` (without the container), if the manifest lists it.
    pub fn ranges(&self, name: &str) -> Option<&[PageRange]> {
        self.blobs.get(name).map(Vec::as_slice)
    }
}

/// One range to send again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fix {
    pub offset: u64,
    pub length: u64,
    /// The manifest's MD5 of these bytes.
    pub md5: Md5Hash,
    /// What the copy log said about it.
    pub status: RangeStatus,
}

/// One blob entry of a copy log with the ranges to send again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub drive: String,
    /// The container and blob name written to (the renamed blob's when the disposition renamed it).
    pub container: String,
    pub name: String,
    /// The blob's name as the manifest lists it (without the container).
    pub manifest_name: String,
    /// The file path on the drive (`\session\container\name`), as the copy log gives it.
    pub file_path: String,
    /// The whole blob's length.
    pub length: u64,
    pub fixes: Vec<Fix>,
}

impl Damage {
    /// `container/name`.
    pub fn target(&self) -> String {
        format!("{}/{}", self.container, self.name)
    }

    pub fn bytes(&self) -> u64 {
        self.fixes.iter().map(|f| f.length).sum()
    }
}

/// The ranges of `log` to send again, each with the manifest's MD5; the second list names every blob or
/// range that cannot be repaired this way (a repair refuses to start while it is not empty).
pub fn damage(log: &DriveLog, manifest: &Manifest) -> (Vec<Damage>, Vec<String>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for b in log.blobs.iter().filter(|b| !b.is_clean()) {
        match blob_damage(&log.drive_id, b, manifest) {
            Ok(Some(d)) => out.push(d),
            Ok(None) => {}
            Err(p) => problems.push(p),
        }
    }
    (out, problems)
}

fn blob_damage(drive: &str, b: &LogBlob, manifest: &Manifest) -> Result<Option<Damage>, String> {
    let path = &b.blob_path;
    if matches!(b.ranges, Some(LogRanges::Blocks(_))) {
        return Err(format!(
            "blob {path} (copy log of drive {drive}) is a block blob: RepairImport repairs page blobs only (a \
             block blob with a bad block was not committed, so there is nothing to patch); ship its file again \
             in a new prepimport session; not repaired"
        ));
    }
    if let Some(d) = &b.disposition {
        if matches!(
            d.status,
            DispositionStatus::Skipped | DispositionStatus::Cancelled
        ) {
            return Err(format!(
                "blob {path} (copy log of drive {drive}): the data centre did not write it (import disposition \
                 {} {}): a repair would write into a blob the import did not create; not repaired",
                d.requested.as_str(),
                d.status
            ));
        }
    }
    let split = |p: &str| -> Result<(String, String), String> {
        match p.split_once('/') {
            Some((c, n)) if !c.is_empty() && !n.is_empty() => Ok((c.to_owned(), n.to_owned())),
            _ => Err(format!(
                "blob {p} (copy log of drive {drive}) names no container/blob path; not repaired"
            )),
        }
    };
    let (_, manifest_name) = split(path)?;
    let (container, name) = split(b.imported_blob_path.as_deref().unwrap_or(path))?;
    let Some(listed) = manifest.ranges(&manifest_name) else {
        return Err(format!(
            "the copy log of drive {drive} names blob {path}, which is not in the manifest ({}): this copy log \
             is not of a drive prepared from this data; give the drive's own copy log and journal",
            manifest.origin
        ));
    };
    let logged = b.range_list();
    let failed: Vec<_> = if b.failed_ranges().next().is_some() {
        b.failed_ranges().collect()
    } else if b.status != BlobStatus::Completed && !logged.is_empty() {
        // the whole entry failed (e.g. BlobRequestFailed): every range it lists
        logged.iter().collect()
    } else if b.status != BlobStatus::Completed {
        return Err(format!(
            "blob {path} is {} in the copy log of drive {drive}, which lists none of its ranges: there is \
             nothing to tell which bytes to send; ship the blob again",
            b.status
        ));
    } else {
        return Ok(None);
    };
    let mut fixes = Vec::new();
    for r in failed {
        let range = format!("range {}..{}", r.offset, r.offset.saturating_add(r.length));
        let Some(m) = listed.iter().find(|m| m.offset == r.offset) else {
            return Err(format!(
                "blob {path}: {range} ({} in the copy log of drive {drive}) is not a range of the manifest ({})",
                r.status, manifest.origin
            ));
        };
        if m.length != r.length || r.hash.is_some_and(|h| h != m.hash) {
            return Err(format!(
                "blob {path}: {range} of the copy log of drive {drive} (MD5 {}) differs from the manifest's \
                 range {}..{} (MD5 {}, {}): the drive's manifest is not the one recorded; not repaired",
                r.hash.map_or_else(|| "none".to_owned(), |h| h.to_string()),
                m.offset,
                m.offset + m.length,
                m.hash,
                manifest.origin
            ));
        }
        fixes.push(Fix {
            offset: m.offset,
            length: m.length,
            md5: m.hash,
            status: r.status,
        });
    }
    Ok(Some(Damage {
        drive: drive.to_owned(),
        container,
        name,
        manifest_name,
        file_path: b.file_path.clone(),
        length: b.length,
        fixes,
    }))
}

/// Where the original bytes of a damaged blob are read from (a source folder, the staging folder).
pub trait RepairSource {
    /// The source of `d` for messages, e.g. its file.
    fn describe(&self, d: &Damage) -> String;
    /// Reads exactly `buf.len()` bytes of `d`'s blob at blob offset `offset`.
    fn read_at(&self, d: &Damage, offset: u64, buf: &mut [u8]) -> Result<(), String>;
}

/// Reads every range of `items` from `source` and compares its MD5 with the manifest's; returns one problem
/// per range that differs or cannot be read (naming the object, the range and the source).
pub fn check(items: &[Damage], source: &dyn RepairSource) -> Vec<String> {
    let mut problems = Vec::new();
    let mut buf = Vec::new();
    for d in items {
        for f in &d.fixes {
            if let Err(p) = read_checked(d, f, source, &mut buf) {
                problems.push(p);
            }
        }
    }
    problems
}

/// Reads one range into `buf` and checks its MD5.
fn read_checked(d: &Damage, f: &Fix, source: &dyn RepairSource, buf: &mut Vec<u8>) -> Result<(), String> {
    buf.resize(f.length as usize, 0);
    let range = format!("range {}..{}", f.offset, f.offset + f.length);
    source.read_at(d, f.offset, buf).map_err(|e| {
        format!(
            "object {}: {range} cannot be read from {}: {e}",
            d.name,
            source.describe(d)
        )
    })?;
    let got = Md5Hash::of(buf);
    if got != f.md5 {
        return Err(format!(
            "object {}: {range} of {} has MD5 {got}, but the drive's manifest says {}: the data changed since \
             the drives were prepared, so it cannot repair the import",
            d.name,
            source.describe(d),
            f.md5
        ));
    }
    Ok(())
}

/// The progress record of a repair (`/r:`): one journal record per range sent, in the journal framing of
/// docs/journal.md, so a rerun skips what was sent before.
#[derive(Debug)]
pub struct RepairFile {
    journal: Journal,
    done: HashSet<(String, u64, u64, Md5Hash)>,
}

impl RepairFile {
    /// Opens (or creates) the repair file and reads what it recorded.
    pub fn open(path: &Path) -> Result<RepairFile, RepairError> {
        let (journal, replay) = Journal::open(path)?;
        let mut done = HashSet::new();
        for r in &replay.records {
            if r.kind != REPAIRED {
                continue;
            }
            let bad = || RepairError::RepairFile {
                path: path.to_owned(),
                what: format!("a {REPAIRED} record without BlobPath, Offset, Length and Hash"),
            };
            let get = |k: &str| r.get(k).ok_or_else(bad);
            done.insert((
                get("BlobPath")?.to_owned(),
                get("Offset")?.parse().map_err(|_| bad())?,
                get("Length")?.parse().map_err(|_| bad())?,
                get("Hash")?.parse().map_err(|_| bad())?,
            ));
        }
        Ok(RepairFile { journal, done })
    }

    /// Whether `f` of `d` was sent by an earlier run.
    pub fn is_done(&self, d: &Damage, f: &Fix) -> bool {
        self.done.contains(&(d.target(), f.offset, f.length, f.md5))
    }

    fn record(&mut self, d: &Damage, f: &Fix) -> Result<(), RepairError> {
        let r = JournalRecord::new(REPAIRED)
            .with("BlobPath", d.target())
            .with("Offset", f.offset.to_string())
            .with("Length", f.length.to_string())
            .with("Hash", f.md5.to_string())
            .with("Drive", d.drive.clone());
        self.journal.append(&r)?;
        self.done.insert((d.target(), f.offset, f.length, f.md5));
        Ok(())
    }

    /// How many ranges it records as sent.
    pub fn recorded(&self) -> usize {
        self.done.len()
    }
}

/// What [`send`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Ranges written now, and their bytes.
    pub ranges: usize,
    pub bytes: u64,
    /// Ranges an earlier run had sent (skipped), and their bytes.
    pub resumed: usize,
    pub resumed_bytes: u64,
}

/// The line both repair commands print: ranges and bytes sent (`bytes_on_wire`, what the connection carried),
/// and the ranges an earlier run had sent.
pub fn sent_line(ranges: usize, bytes_on_wire: u64, resumed: usize) -> String {
    format!(
        "{ranges} range(s) sent, {} of page data sent with Put Page ({bytes_on_wire} bytes){}",
        crate::units::human(bytes_on_wire),
        if resumed > 0 {
            format!("; {resumed} range(s) an earlier run sent were skipped")
        } else {
            String::new()
        }
    )
}

/// Opens the container a damaged blob is written to.
pub type OpenContainer<'a> = dyn Fn(&str) -> Result<Arc<dyn BlobStore>, String> + 'a;

/// Sends every range of `items` not recorded in `file` with Put Page, reading it from `source` and checking
/// its MD5 again just before; records each one in `file` once it is durable. `after` is called after each
/// range recorded (progress). Stops before the next range once `cancel` is set.
pub fn send(
    items: &[Damage],
    source: &dyn RepairSource,
    open: &OpenContainer,
    file: &mut RepairFile,
    cancel: &AtomicBool,
    after: &mut dyn FnMut(&Damage, &Fix, &Sent),
) -> Result<Sent, RepairError> {
    let mut sent = Sent::default();
    let mut stores: HashMap<String, Arc<dyn BlobStore>> = HashMap::new();
    let mut checked: HashSet<String> = HashSet::new();
    let mut buf = Vec::new();
    for d in items {
        for f in &d.fixes {
            if file.is_done(d, f) {
                sent.resumed += 1;
                sent.resumed_bytes += f.length;
                continue;
            }
            if cancel.load(Ordering::Relaxed) {
                return Err(RepairError::Interrupted { sent: sent.ranges });
            }
            let store = match stores.get(&d.container) {
                Some(s) => s.clone(),
                None => {
                    let s = open(&d.container).map_err(|reason| RepairError::Source {
                        name: format!("container {}", d.container),
                        reason,
                    })?;
                    stores.insert(d.container.clone(), s.clone());
                    s
                }
            };
            if checked.insert(d.target()) {
                target_ready(&*store, d)?;
            }
            read_checked(d, f, source, &mut buf).map_err(|reason| RepairError::Source {
                name: d.name.clone(),
                reason,
            })?;
            store
                .write_pages(&d.name, f.offset, &buf)
                .map_err(|source| RepairError::Store {
                    container: d.container.clone(),
                    name: d.name.clone(),
                    source: Box::new(source),
                })?;
            file.record(d, f)?;
            sent.ranges += 1;
            sent.bytes += f.length;
            tracing::debug!(object = %d.target(), offset = f.offset, len = f.length, "range sent again");
            after(d, f, &sent);
        }
    }
    Ok(sent)
}

/// The blob must exist with the copy log's length; a blob the data centre never created is created empty at
/// that length (its ranges all come from the repair).
fn target_ready(store: &dyn BlobStore, d: &Damage) -> Result<(), RepairError> {
    let err = |source| RepairError::Store {
        container: d.container.clone(),
        name: d.name.clone(),
        source: Box::new(source),
    };
    match store.properties(&d.name) {
        Ok(p) if p.len == d.length => Ok(()),
        Ok(p) => Err(RepairError::Length {
            container: d.container.clone(),
            name: d.name.clone(),
            found: p.len,
            expected: d.length,
        }),
        Err(BlobError::NotFound { .. }) => store.create(&d.name, d.length, &Metadata::new()).map_err(err),
        Err(e) => Err(err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::MemoryStore;
    use crate::manifest::copylog::LogRange;

    const M: u64 = 1 << 20;

    fn data(len: u64) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 997) as u8).collect()
    }

    struct Bytes(Vec<u8>);
    impl RepairSource for Bytes {
        fn describe(&self, d: &Damage) -> String {
            format!("test bytes of {}", d.name)
        }
        fn read_at(&self, _: &Damage, offset: u64, buf: &mut [u8]) -> Result<(), String> {
            let o = offset as usize;
            buf.copy_from_slice(self.0.get(o..o + buf.len()).ok_or("past the end")?);
            Ok(())
        }
    }

    fn ranges(bytes: &[u8]) -> Vec<PageRange> {
        (0..bytes.len() as u64 / M)
            .map(|i| PageRange {
                offset: i * M,
                length: M,
                hash: Md5Hash::of(&bytes[(i * M) as usize..((i + 1) * M) as usize]),
            })
            .collect()
    }

    fn log(bytes: &[u8], bad: &[(u64, RangeStatus)]) -> DriveLog {
        let mut l = DriveLog::new("D1", crate::manifest::copylog::DriveStatus::CompletedWithErrors);
        let list = ranges(bytes)
            .into_iter()
            .map(|r| LogRange {
                offset: r.offset,
                length: r.length,
                id: None,
                hash: Some(r.hash),
                status: bad
                    .iter()
                    .find(|b| b.0 == r.offset)
                    .map_or(RangeStatus::Completed, |b| b.1),
            })
            .collect();
        l.blobs.push(LogBlob {
            status: BlobStatus::CompletedWithErrors,
            blob_path: "seed/data/00000000".into(),
            imported_blob_path: None,
            file_path: "\\s\\seed\\data\\00000000".into(),
            snapshot: None,
            length: bytes.len() as u64,
            last_modified: None,
            disposition: None,
            ranges: Some(LogRanges::Pages(list)),
            metadata: None,
            properties: None,
        });
        l
    }

    fn manifest(bytes: &[u8]) -> Manifest {
        Manifest::from_ranges(
            "test",
            HashMap::from([("data/00000000".to_owned(), ranges(bytes))]),
        )
    }

    #[test]
    fn sends_only_the_failed_ranges_and_resumes() {
        let bytes = data(4 * M);
        let l = log(
            &bytes,
            &[
                (M, RangeStatus::Corrupted),
                (3 * M, RangeStatus::FileUnexpectedEnd),
            ],
        );
        let (items, problems) = damage(&l, &manifest(&bytes));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(items.len(), 1);
        assert_eq!(
            items[0].fixes.iter().map(|f| f.offset).collect::<Vec<_>>(),
            vec![M, 3 * M]
        );
        assert!(check(&items, &Bytes(bytes.clone())).is_empty());

        let store = Arc::new(MemoryStore::default());
        store.create("data/00000000", 4 * M, &Metadata::new()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let rep = dir.path().join("r.rep");
        let open =
            |_: &str| -> Result<Arc<dyn BlobStore>, String> { Ok(store.clone() as Arc<dyn BlobStore>) };
        let cancel = AtomicBool::new(false);
        // the first run stops after one range (as if killed)
        let mut file = RepairFile::open(&rep).unwrap();
        let e = send(
            &items,
            &Bytes(bytes.clone()),
            &open,
            &mut file,
            &cancel,
            &mut |_, _, _| cancel.store(true, Ordering::Relaxed),
        )
        .unwrap_err();
        assert!(matches!(e, RepairError::Interrupted { sent: 1 }), "{e}");
        drop(file);
        cancel.store(false, Ordering::Relaxed);
        let mut file = RepairFile::open(&rep).unwrap();
        assert_eq!(file.recorded(), 1);
        let s = send(
            &items,
            &Bytes(bytes.clone()),
            &open,
            &mut file,
            &cancel,
            &mut |_, _, _| {},
        )
        .unwrap();
        assert_eq!((s.ranges, s.bytes, s.resumed), (1, M, 1));
        let mut got = vec![0u8; 4 * M as usize];
        store.read_at("data/00000000", 0, &mut got).unwrap();
        assert_eq!(got[M as usize..2 * M as usize], bytes[M as usize..2 * M as usize]);
        assert_eq!(got[3 * M as usize..], bytes[3 * M as usize..]);
        assert!(
            got[..M as usize].iter().all(|&b| b == 0),
            "a good range is not sent"
        );
    }

    #[test]
    fn changed_data_unknown_blobs_and_disagreeing_hashes_are_refused() {
        let bytes = data(2 * M);
        let l = log(&bytes, &[(M, RangeStatus::Corrupted)]);
        let (items, _) = damage(&l, &manifest(&bytes));
        let mut changed = bytes.clone();
        changed[M as usize + 7] ^= 1;
        let p = check(&items, &Bytes(changed));
        assert!(
            p.len() == 1 && p[0].contains("object data/00000000") && p[0].contains("changed"),
            "{p:?}"
        );
        let (_, p) = damage(&l, &Manifest::from_ranges("journal X", HashMap::new()));
        assert!(
            p.len() == 1 && p[0].contains("not in the manifest (journal X)"),
            "{p:?}"
        );
        let other = data(2 * M).into_iter().map(|b| b ^ 1).collect::<Vec<_>>();
        let (_, p) = damage(&l, &manifest(&other));
        assert!(
            p.len() == 1 && p[0].contains("differs from the manifest"),
            "{p:?}"
        );
        // A block blob's entry is refused, naming the blob.
        let mut blocks = l.clone();
        let b = &mut blocks.blobs[0];
        b.ranges = b.ranges.take().map(|r| match r {
            LogRanges::Pages(r) | LogRanges::Blocks(r) => LogRanges::Blocks(r),
        });
        let (items, p) = damage(&blocks, &manifest(&bytes));
        assert!(items.is_empty());
        assert!(
            p.len() == 1 && p[0].contains("blob seed/data/00000000") && p[0].contains("block blob"),
            "{p:?}"
        );
    }

    #[test]
    fn journal_segments_make_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("D1.jrn");
        let (mut j, _) = Journal::open(&path).unwrap();
        let h = Md5Hash::of(b"x");
        let seg = |blob: &str, s: u64, e: u64, zero: u8| format!("{blob}\t{s}\t{e}\t{h}\t{:032x}\t{zero}", 7);
        j.append(
            &JournalRecord::new(CHECKPOINT)
                .with("TarOffset", "1")
                .with("Segments", seg("old", 0, 512, 0)),
        )
        .unwrap();
        j.append(&JournalRecord::new(RESTART).with("DriveId", "D1"))
            .unwrap();
        let two = format!("{}\n{}", seg("data/1", 0, 4096, 0), seg("data/1", 4096, 8192, 1));
        j.append(
            &JournalRecord::new(CHECKPOINT)
                .with("TarOffset", "2")
                .with("Segments", two),
        )
        .unwrap();
        drop(j);
        let m = Manifest::from_journal(&path).unwrap();
        assert!(m.ranges("old").is_none(), "voided by the restart");
        assert_eq!(
            m.ranges("data/1").unwrap(),
            &[PageRange {
                offset: 0,
                length: 4096,
                hash: h
            }]
        );
    }
}
