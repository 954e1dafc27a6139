//! Prune: gives back the space of blobs that no snapshot references.
//!
//! Space is given back the way page blobs are billed (written pages only): the bytes of unreferenced blobs
//! are cleared in place (Clear Pages in the vault, holes punched in staging), so a wholly dead pack costs
//! no upload at all; a page shared by a dead and a live blob is rewritten with the dead bytes zeroed (one
//! page). Packs whose live blobs leave most of their remaining pages unused are repacked (their live blobs
//! appended to the newest volume, then their old bytes cleared) only while the repository's unused share is
//! above [`PruneOptions::max_unused`], oldest first, within [`PruneOptions::max_repack`] bytes of uploads.
//! A volume left without live blobs (not the newest) is deleted.
//!
//! [`plan`] is pure reading; [`execute`] writes, in this order, so that a kill at any point leaves a
//! repository in which every snapshot restores and `check --read-data` passes, and a rerun finishes:
//!
//! 1. a `prune/<id>` object records every byte range to be cleared (dead blobs, the old places of blobs
//!    to be repacked) and every volume to be deleted (`check` tolerates old bytes there), and the `prune/`
//!    objects of an interrupted run are deleted (their ranges are carried into the new one);
//! 2. repacked blobs are appended by a [`PackWriter`], which writes index objects naming their new places
//!    (of two entries for one id, the one at the larger volume and offset wins);
//! 3. new index objects holding every live entry are written, then every older index object is deleted;
//! 4. the recorded ranges are cleared, except bytes that an index entry still names, and the volumes are
//!    deleted;
//! 5. the `prune/` object is deleted.

use super::format::{encode_index, IndexEntry};
use super::pack::PackWriter;
use super::repository::{parse_json, EncodedBlob, Repository};
use super::{volume_name, ChunkId, IdSet, RepoError, VOLUME_HEADER_LEN};
use crate::blob::PAGE_SIZE;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;

/// Volumes cleared at once after the first (each clear mostly waits for the disk or the service).
const CLEAR_THREADS: usize = 8;

/// Entries per index object written by prune (53 bytes each: about 10 MiB).
const INDEX_CHUNK: usize = 200_000;

/// What the user asked of a prune.
#[derive(Debug, Clone, PartialEq)]
pub struct PruneOptions {
    /// Repack only while unused bytes are more than this share (0..1) of the pages still holding data.
    pub max_unused: f64,
    /// At most this many bytes of blobs are repacked (uploaded) in one run.
    pub max_repack: Option<u64>,
    /// Snapshots planned as if they were already removed (`forget --prune --dry-run` shows the prune that
    /// would follow the forget).
    pub without: Vec<String>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: 0.10,
            max_repack: None,
            without: Vec::new(),
        }
    }
}

/// The ranges an earlier, interrupted prune recorded (body of a `prune/` object).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingPrune {
    pub version: u32,
    /// `[volume, start, end)` byte ranges to be zero once no index entry names them.
    pub clear: Vec<(u32, u64, u64)>,
    /// Volumes to be deleted.
    pub delete: Vec<u32>,
}

impl PendingPrune {
    /// The recorded ranges of `volume`, sorted and merged.
    pub fn ranges_of(&self, volume: u32) -> Vec<Range<u64>> {
        crate::blob::merge_ranges(
            self.clear
                .iter()
                .filter(|(v, _, _)| *v == volume)
                .map(|&(_, s, e)| s..e)
                .collect(),
        )
    }
}

/// What a prune will do, computed by [`plan`].
#[derive(Debug, Clone, Default)]
pub struct PrunePlan {
    pub snapshots: usize,
    /// Ids referenced by a snapshot (trees and chunks).
    pub used: IdSet,
    pub live_blobs: u64,
    pub live_bytes: u64,
    pub dead_blobs: u64,
    pub dead_bytes: u64,
    /// Packs (contiguous runs of blobs) in the repository, and those without a live blob.
    pub packs: u64,
    pub packs_dead: u64,
    /// Packs some live blobs are repacked from, those blobs (runs of live blobs in mostly unused pages) and
    /// their bytes (to upload again).
    pub packs_repack: u64,
    pub repack: Vec<IndexEntry>,
    pub repack_bytes: u64,
    /// Unused share of the pages holding data once dead blobs are cleared, before and after repacking.
    pub unused_share: f64,
    pub unused_share_after: f64,
    /// Ranges to clear: dead blobs, repacked blobs' old places, and what an interrupted prune left.
    pub clear: Vec<(u32, u64, u64)>,
    /// The `prune/` objects of an interrupted run.
    pub pending_objects: Vec<String>,
    /// Byte ranges an interrupted run recorded (already merged into `clear`).
    pub pending_bytes: u64,
}

impl PrunePlan {
    /// Whether executing the plan would change nothing.
    pub fn is_empty(&self) -> bool {
        self.dead_blobs == 0 && self.repack.is_empty() && self.pending_objects.is_empty()
    }
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneStats {
    pub blobs_freed: u64,
    pub packs_freed: u64,
    pub packs_repacked: u64,
    /// Bytes given back with Clear Pages / holes punched.
    pub bytes_cleared: u64,
    /// Bytes of blobs uploaded again by repacking.
    pub bytes_repacked: u64,
    /// Bytes of shared pages rewritten with their dead part zeroed (uploaded).
    pub bytes_rewritten: u64,
    pub volumes_deleted: u64,
    pub index_written: u64,
    pub index_deleted: u64,
}

/// Every blob id the snapshots reference (trees and chunks). The trees are walked level by level, each
/// level's trees read, decrypted and parsed on every core (the walk of ten snapshots of a file server is most
/// of a prune's time).
pub fn used_blobs(repo: &Repository, without: &[String]) -> Result<(usize, IdSet), RepoError> {
    use rayon::prelude::*;
    let mut snaps = repo.snapshots()?;
    snaps.retain(|(id, _)| !without.contains(id));
    let mut used = IdSet::default();
    let mut level: Vec<ChunkId> = Vec::new();
    for (id, s) in &snaps {
        let t = super::parse_id(&s.tree)
            .ok_or_else(|| RepoError::damaged(format!("snapshots/{id}"), "invalid root tree id"))?;
        if used.insert(t) {
            level.push(t);
        }
    }
    while !level.is_empty() {
        let trees: Vec<_> = level.par_iter().map(|t| repo.tree_refs(t)).collect();
        let mut next = Vec::new();
        for refs in trees {
            let refs = refs?;
            used.extend(refs.chunks);
            for sub in refs.subtrees {
                if used.insert(sub) {
                    next.push(sub);
                }
            }
        }
        level = next;
    }
    Ok((snaps.len(), used))
}

/// The `prune/` objects of interrupted runs, merged. Objects an interrupted run created but never wrote are
/// skipped.
pub fn pending(repo: &Repository) -> Result<(Vec<String>, PendingPrune), RepoError> {
    let mut names = vec![];
    let mut all = PendingPrune {
        version: 1,
        ..Default::default()
    };
    for o in repo.store().list("prune/")? {
        let body = match repo.read_object(&o.name) {
            Err(RepoError::Incomplete { .. }) => {
                names.push(o.name);
                continue;
            }
            r => r?,
        };
        let p: PendingPrune = parse_json(&o.name, &body)?;
        all.clear.extend(p.clear);
        all.delete.extend(p.delete);
        names.push(o.name);
    }
    all.delete.sort_unstable();
    all.delete.dedup();
    Ok((names, all))
}

fn page_down(x: u64) -> u64 {
    x / PAGE_SIZE * PAGE_SIZE
}
fn page_up(x: u64) -> u64 {
    x.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

/// A pack: a contiguous run of blob envelopes in one volume.
#[derive(Debug, Default)]
struct Pack {
    live: u64,
    /// Its live blobs in runs between dead ones: the units repacking moves.
    runs: Vec<Run>,
}

/// Consecutive live blobs of a pack.
#[derive(Debug, Default)]
struct Run {
    blobs: Vec<IndexEntry>,
    /// Bytes of the pages the run touches, and its live bytes.
    pages: u64,
    bytes: u64,
}
/// Plans a prune: reads the snapshots and trees, sorts the index into live and dead blobs.
pub fn plan(repo: &Repository, opts: &PruneOptions) -> Result<PrunePlan, RepoError> {
    let (snapshots, used) = used_blobs(repo, &opts.without)?;
    let (pending_objects, pend) = pending(repo)?;
    let mut entries = repo.index_entries()?;
    entries.sort_by_key(|e| (e.volume, e.offset));
    let mut p = PrunePlan {
        snapshots,
        pending_objects,
        pending_bytes: pend.clear.iter().map(|(_, s, e)| e - s).sum(),
        clear: pend.clear.clone(),
        ..Default::default()
    };
    // packs: maximal runs of envelopes written back to back (a pack padded to 512 ends a run)
    let mut packs: Vec<Pack> = vec![];
    let mut prev_end: Option<(u32, u64)> = None;
    let mut prev_live = false;
    for e in &entries {
        let end = e.offset + e.len as u64;
        if prev_end != Some((e.volume, e.offset)) {
            packs.push(Pack::default());
            prev_live = false;
        }
        prev_end = Some((e.volume, end));
        let pack = packs.last_mut().expect("pushed above");
        let live = used.contains(&e.id);
        if live {
            if !prev_live {
                pack.runs.push(Run::default());
            }
            let run = pack.runs.last_mut().expect("pushed above");
            run.blobs.push(*e);
            run.bytes += e.len as u64;
            pack.live += 1;
            p.live_blobs += 1;
            p.live_bytes += e.len as u64;
        } else {
            p.dead_blobs += 1;
            p.dead_bytes += e.len as u64;
            p.clear.push((e.volume, e.offset, end));
        }
        prev_live = live;
    }
    for run in packs.iter_mut().flat_map(|k| k.runs.iter_mut()) {
        let (first, last) = (run.blobs[0], run.blobs[run.blobs.len() - 1]);
        run.pages = page_up(last.offset + last.len as u64) - page_down(first.offset);
    }
    p.packs = packs.len() as u64;
    p.packs_dead = packs.iter().filter(|k| k.live == 0).count() as u64;
    let runs = || packs.iter().flat_map(|k| k.runs.iter());
    let pages: u64 = runs().map(|r| r.pages).sum();
    let mut unused: u64 = runs().map(|r| r.pages - r.bytes).sum();
    let share = |unused: u64, pages: u64| {
        if pages == 0 {
            0.0
        } else {
            unused as f64 / pages as f64
        }
    };
    p.unused_share = share(unused, pages);
    let mut pages_left = pages;
    let budget = opts.max_repack.unwrap_or(u64::MAX);
    // oldest first (packs are in volume and offset order); a run is worth moving when the pages it keeps
    // are mostly unused
    for pack in &packs {
        let mut moved = false;
        for run in &pack.runs {
            if share(unused, pages_left) <= opts.max_unused {
                break;
            }
            let waste = run.pages - run.bytes;
            // moving a run frees whole pages only: less than one page of waste stays wherever it goes
            if waste < PAGE_SIZE || (waste as f64) <= opts.max_unused * run.pages as f64 {
                continue;
            }
            if p.repack_bytes + run.bytes > budget {
                continue;
            }
            moved = true;
            p.repack_bytes += run.bytes;
            p.repack.extend(run.blobs.iter().copied());
            for e in &run.blobs {
                p.clear.push((e.volume, e.offset, e.offset + e.len as u64));
            }
            unused -= waste;
            pages_left -= run.pages;
        }
        p.packs_repack += moved as u64;
    }
    p.unused_share_after = share(unused, pages_left + p.repack_bytes);
    p.used = used;
    Ok(p)
}

/// Executes a plan (see the module documentation for the order of writes). `step` is called with the name
/// of each step as it is reached (a test hook: tests kill the process there).
pub fn execute(
    repo: &Arc<Repository>,
    plan: &PrunePlan,
    step: &mut dyn FnMut(&str),
) -> Result<PruneStats, RepoError> {
    let mut st = PruneStats {
        blobs_freed: plan.dead_blobs,
        packs_freed: plan.packs_dead,
        packs_repacked: plan.packs_repack,
        ..Default::default()
    };
    let store = repo.store().clone();
    // 1. record what will be cleared (dead blobs, the old places of repacked ones) and which volumes will
    // go, before any index entry stops naming them
    let ends = repo.volume_ends();
    let newest = ends.keys().next_back().copied();
    let (_, old_pending) = pending(repo)?;
    let moved: IdSet = plan.repack.iter().map(|e| e.id).collect();
    let staying: BTreeSet<u32> = repo
        .index_entries()?
        .iter()
        .filter(|e| plan.used.contains(&e.id) && !moved.contains(&e.id))
        .map(|e| e.volume)
        .collect();
    // repacked blobs go to the newest volume or ones after it, which are never deleted
    let mut delete: Vec<u32> = ends
        .keys()
        .chain(&old_pending.delete)
        .copied()
        .filter(|v| !staying.contains(v) && Some(*v) < newest)
        .collect();
    delete.sort_unstable();
    delete.dedup();
    let record = PendingPrune {
        version: 1,
        clear: merge_triples(&plan.clear),
        delete: delete.clone(),
    };
    let record_name = repo.save_object("prune", &serde_json::to_vec(&record).expect("serializable"))?;
    step("recorded");
    for name in &plan.pending_objects {
        if *name != record_name {
            store.delete(name)?;
        }
    }
    // 2. repack: live blobs of the chosen runs are appended to the newest volume and indexed there
    if !plan.repack.is_empty() {
        let mut w = PackWriter::open(repo.clone(), 16 << 20, 16)?.without_digests();
        for e in &plan.repack {
            let mut envelope = vec![0u8; e.len as usize];
            store.read_at(&volume_name(e.volume), e.offset, &mut envelope)?;
            // never move bytes that are not the blob they claim to be
            repo.open_entry(e, &envelope)?;
            w.add_moved(&EncodedBlob {
                id: e.id,
                kind: e.kind,
                raw_len: e.raw_len,
                envelope,
            })?;
            st.bytes_repacked += e.len as u64;
        }
        w.finish()?;
        step("repacked");
    }
    // the index as it will be: every live entry at its final place
    let mut live: Vec<IndexEntry> = repo
        .index_entries()?
        .into_iter()
        .filter(|e| plan.used.contains(&e.id))
        .collect();
    live.sort_by_key(|e| (e.volume, e.offset));
    let ends = repo.volume_ends();
    let kept_ends: Vec<(u32, u64)> = ends
        .iter()
        .filter(|(v, _)| !delete.contains(v))
        .map(|(&v, &e)| (v, e))
        .collect();
    // 3. the new index objects, then every older one goes
    let old_index: Vec<String> = store.list("index/")?.into_iter().map(|o| o.name).collect();
    let mut written = BTreeSet::new();
    for chunk in live.chunks(INDEX_CHUNK).chain(live.is_empty().then_some(&[][..])) {
        written.insert(repo.save_object("index", &encode_index(&kept_ends, chunk))?);
        st.index_written += 1;
    }
    step("indexed");
    for name in old_index.iter().filter(|n| !written.contains(*n)) {
        store.delete(name)?;
        st.index_deleted += 1;
        if st.index_deleted == 1 {
            step("index-deleted");
        }
    }
    step("old-index-deleted");
    // 4. clear what no index entry names any more, delete emptied volumes
    let mut by_volume: BTreeMap<u32, Vec<Range<u64>>> = BTreeMap::new();
    for &(v, s, e) in &record.clear {
        by_volume.entry(v).or_default().push(s..e);
    }
    let volumes: Vec<(u32, Vec<Range<u64>>)> = by_volume
        .into_iter()
        .filter(|(v, _)| !delete.contains(v) && ends.contains_key(v))
        .collect();
    let clear_one = |(v, ranges): &(u32, Vec<Range<u64>>)| {
        let from = live.partition_point(|e| e.volume < *v);
        let to = live.partition_point(|e| e.volume <= *v);
        let keep: Vec<Range<u64>> = std::iter::once(0..VOLUME_HEADER_LEN)
            .chain(live[from..to].iter().map(|e| e.offset..e.offset + e.len as u64))
            .collect();
        clear_volume(&*store, &volume_name(*v), ranges, &keep, ends[v])
    };
    // the first volume alone (a kill after it leaves some volumes cleared and others not, which the crash
    // tests reach through the "cleared" step), then the others CLEAR_THREADS at a time: the time goes to
    // waiting (for the disk, which discards every punched hole, or for the service), not to the CPU, and
    // volumes are independent
    if let Some((first, rest)) = volumes.split_first() {
        let (cleared, rewritten) = clear_one(first)?;
        st.bytes_cleared += cleared;
        st.bytes_rewritten += rewritten;
        step("cleared");
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<Result<(u64, u64), RepoError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..CLEAR_THREADS.min(rest.len()))
                .map(|_| {
                    scope.spawn(|| {
                        let mut out = vec![];
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(v) = rest.get(i) else { break out };
                            out.push(clear_one(v));
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("a clearing thread panicked"))
                .collect()
        });
        for r in results {
            let (cleared, rewritten) = r?;
            st.bytes_cleared += cleared;
            st.bytes_rewritten += rewritten;
        }
    }
    for &v in &delete {
        let name = volume_name(v);
        match store.properties(&name) {
            Ok(info) => {
                st.bytes_cleared += info.len;
                store.delete(&name)?;
                st.volumes_deleted += 1;
                step("volume-deleted");
            }
            Err(crate::blob::BlobError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // 5. done
    store.delete(&record_name)?;
    repo.replace_index(&kept_ends, &live);
    step("done");
    Ok(st)
}

fn merge_triples(t: &[(u32, u64, u64)]) -> Vec<(u32, u64, u64)> {
    let mut by_volume: BTreeMap<u32, Vec<Range<u64>>> = BTreeMap::new();
    for &(v, s, e) in t {
        by_volume.entry(v).or_default().push(s..e);
    }
    by_volume
        .into_iter()
        .flat_map(|(v, r)| {
            crate::blob::merge_ranges(r)
                .into_iter()
                .map(move |r| (v, r.start, r.end))
        })
        .collect()
}

/// `ranges` minus `keep` (both unsorted), sorted and disjoint.
fn subtract(ranges: &[Range<u64>], keep: &[Range<u64>]) -> Vec<Range<u64>> {
    let keep = crate::blob::merge_ranges(keep.to_vec());
    let mut out = vec![];
    for r in crate::blob::merge_ranges(ranges.to_vec()) {
        let mut start = r.start;
        let from = keep.partition_point(|k| k.end <= r.start);
        for k in &keep[from..] {
            if k.start >= r.end {
                break;
            }
            if k.start > start {
                out.push(start..k.start);
            }
            start = start.max(k.end);
        }
        if start < r.end {
            out.push(start..r.end);
        }
    }
    out
}

/// Zeroes `ranges` of volume `name` except the bytes in `keep`, within `end`: whole pages with
/// `clear_pages`, pages shared with kept bytes by rewriting them (only when they are not zero already).
/// Returns the bytes cleared and the bytes rewritten.
fn clear_volume(
    store: &dyn crate::blob::BlobStore,
    name: &str,
    ranges: &[Range<u64>],
    keep: &[Range<u64>],
    end: u64,
) -> Result<(u64, u64), RepoError> {
    let end = page_up(end);
    let zero: Vec<Range<u64>> = subtract(ranges, keep)
        .into_iter()
        .map(|r| r.start..r.end.min(end))
        .filter(|r| r.start < r.end)
        .collect();
    let mut whole: Vec<Range<u64>> = vec![];
    let mut partial: BTreeMap<u64, Vec<Range<u64>>> = BTreeMap::new();
    for r in &zero {
        let mut s = r.start;
        if s % PAGE_SIZE != 0 || r.end - s < PAGE_SIZE {
            let pg = page_down(s);
            let hi = r.end.min(pg + PAGE_SIZE);
            partial.entry(pg).or_default().push(s..hi);
            s = hi;
        }
        if s >= r.end {
            continue;
        }
        let b = page_down(r.end);
        if s < b {
            whole.push(s..b);
        }
        if b < r.end {
            partial.entry(b).or_default().push(b..r.end);
        }
    }
    let mut cleared = 0;
    let mut clears = vec![];
    for r in crate::blob::merge_ranges(whole) {
        // one request per range, at most 4 MiB each like writes (Azure takes larger clears, Azurite too;
        // the limit keeps a single request short)
        let mut pos = r.start;
        while pos < r.end {
            let n = (r.end - pos).min(crate::blob::MAX_PUT_PAGE * 256);
            clears.push(pos..pos + n);
            pos += n;
        }
        cleared += r.end - r.start;
    }
    let mut rewritten = 0;
    let mut writes = vec![];
    let pages = read_pages(store, name, partial.keys().copied())?;
    for ((pg, parts), mut page) in partial.into_iter().zip(pages) {
        let mut changed = false;
        for r in parts {
            let slot = &mut page[(r.start - pg) as usize..(r.end - pg) as usize];
            if slot.iter().any(|&b| b != 0) {
                slot.fill(0);
                changed = true;
            }
        }
        if changed {
            writes.push((pg, page));
            rewritten += PAGE_SIZE;
        }
    }
    // one batch per volume: a local store syncs once for all of it (the prune record makes a rerun clear
    // again whatever a crash left uncleared)
    store.update_pages(name, &clears, &writes)?;
    Ok((cleared, rewritten))
}

/// Pages further apart than this are read by separate requests; closer ones by one read that covers both.
const READ_GAP: u64 = 16 << 10;

/// The pages at `starts` (ascending page offsets), read with one request per cluster of nearby pages rather
/// than one per page: a prune's shared pages number in the tens of thousands, and each read is an HTTP
/// request in the vault (or an open and a read in staging).
fn read_pages(
    store: &dyn crate::blob::BlobStore,
    name: &str,
    starts: impl Iterator<Item = u64>,
) -> Result<Vec<Vec<u8>>, RepoError> {
    let starts: Vec<u64> = starts.collect();
    let mut out = Vec::with_capacity(starts.len());
    let mut i = 0;
    while i < starts.len() {
        let first = starts[i];
        let mut j = i + 1;
        while j < starts.len()
            && starts[j] - (starts[j - 1] + PAGE_SIZE) <= READ_GAP
            && starts[j] + PAGE_SIZE - first <= crate::blob::MAX_PUT_PAGE
        {
            j += 1;
        }
        let end = starts[j - 1] + PAGE_SIZE;
        let mut span = vec![0u8; (end - first) as usize];
        store.read_at(name, first, &mut span)?;
        for &pg in &starts[i..j] {
            let at = (pg - first) as usize;
            out.push(span[at..at + PAGE_SIZE as usize].to_vec());
        }
        i = j;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::single_range_in_vec_init)]
    fn subtracting_keeps_the_kept_bytes() {
        assert_eq!(
            subtract(&[0..100, 200..300], &[50..60, 250..400]),
            vec![0..50, 60..100, 200..250]
        );
        assert_eq!(subtract(&[0..10], &[]), vec![0..10]);
        assert!(subtract(&[5..10], &[0..20]).is_empty());
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)]
    fn clearing_rewrites_shared_pages_and_clears_whole_ones() {
        use crate::blob::{BlobStore, MemoryStore, Metadata};
        let s = MemoryStore::default();
        s.create("v", 4096, &Metadata::new()).unwrap();
        s.write_pages("v", 0, &[7u8; 4096]).unwrap();
        // kept: 0..512 (header) and 1000..1100; everything else dead
        let (c, w) = clear_volume(&s, "v", &[512..4096], &[0..512, 1000..1100], 4096).unwrap();
        let mut all = vec![0u8; 4096];
        s.read_at("v", 0, &mut all).unwrap();
        assert!(all[..512].iter().all(|&b| b == 7));
        assert!(all[512..1000].iter().all(|&b| b == 0));
        assert!(all[1000..1100].iter().all(|&b| b == 7));
        assert!(all[1100..].iter().all(|&b| b == 0));
        assert_eq!(c, 2560, "pages 1536..4096");
        assert_eq!(w, 1024);
        // a second run changes nothing
        assert_eq!(
            clear_volume(&s, "v", &[512..4096], &[0..512, 1000..1100], 4096)
                .unwrap()
                .1,
            0
        );
    }

    #[test]
    fn pages_read_in_clusters_are_the_pages_read_one_by_one() {
        use crate::blob::{BlobStore, MemoryStore, Metadata};
        let s = MemoryStore::default();
        let len = 16u64 << 20;
        s.create("v", len, &Metadata::new()).unwrap();
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        s.write_pages("v", 0, &data).unwrap();
        // neighbours, a gap just inside and just beyond READ_GAP, and a run longer than one request
        let mut starts = vec![0, 512, 1536, 1536 + 512 + READ_GAP, 2048 + 2 * READ_GAP + 1024];
        let far = 8u64 << 20;
        starts.extend((0..(crate::blob::MAX_PUT_PAGE / PAGE_SIZE + 3)).map(|k| far + k * PAGE_SIZE));
        let pages = read_pages(&s, "v", starts.iter().copied()).unwrap();
        assert_eq!(pages.len(), starts.len());
        for (pg, page) in starts.iter().zip(&pages) {
            assert_eq!(
                &page[..],
                &data[*pg as usize..(*pg + PAGE_SIZE) as usize],
                "page at {pg}"
            );
        }
    }
}
