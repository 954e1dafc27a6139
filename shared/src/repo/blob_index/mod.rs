//! The index of where every blob lies: the part of a backup's memory that grows with the number of blobs
//! (one per small file), so it is kept compact and, beyond a memory budget, on disk.
//!
//! In memory, entries are 53-byte packed slots (id, volume, offset, lengths, kind) in one array sorted by id,
//! with no free slots and no per-entry allocation; a directory of bucket starts, keyed by the id's leading bits
//! (about four slots per bucket, so about one byte per blob), narrows a lookup to a few slots. Ids are keyed
//! BLAKE3 outputs and spread evenly; a skewed set (a tampered index) only makes buckets longer, and each is
//! binary-searched. A hash map of the same entries costs 64-128 bytes per blob and doubles while it grows.
//!
//! With a cache folder ([`IndexCacheOptions`]), the in-memory run is bounded by a budget: when it grows past
//! it, it is merged with the run on disk into a new cache file (`index_file`), which is then read with
//! `pread` through its directory and a Bloom filter kept in memory (about 2.3-3.3 bytes per blob). So the memory
//! held is the budget plus 2.3-3.3 bytes per blob on disk. Loading the index reads the cache file when it covers
//! index objects the repository still has (only the index objects it does not cover are read), else the
//! index objects, spilling sorted runs of at most the budget to disk and merging them. An entry of an id both
//! runs hold is in memory only when it is at the larger place (the newer one), so a lookup tries memory
//! first.
//!
//! New entries arrive in batches (one index object at a time): a batch is sorted and merged into the
//! in-memory array in place from the back, so growing the array needs no second copy of it (large
//! allocations grow with `mremap`, and the unused capacity is never touched, so it costs no resident memory).

use super::format::IndexEntry;
mod index_file;
mod slot;

use super::ChunkId;
use index_file::{DiskRun, Header, Merge, SliceSource, SlotReader, SlotSource};
use slot::{bits_for, bucket, DirBuilder, Slot};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Entries gathered as slots (53 bytes each) before they are added at once.
#[derive(Default)]
pub(crate) struct Batch(Vec<Slot>);

impl Batch {
    pub(crate) fn extend(&mut self, entries: &[IndexEntry]) {
        self.0.extend(entries.iter().map(Slot::of));
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Sorted by id, of equal ids only the last (largest place).
    fn sorted(self) -> Vec<Slot> {
        let mut batch = self.0;
        batch.sort_unstable_by(|a, b| a.id.cmp(&b.id).then(a.place().cmp(&b.place())));
        // dedup_by keeps the earlier element, so move the later one there
        batch.dedup_by(|later, kept| {
            if later.id == kept.id {
                *kept = *later;
                true
            } else {
                false
            }
        });
        batch
    }
}

/// Where the index may keep its entries beyond the memory budget.
#[derive(Clone)]
pub struct IndexCacheOptions {
    /// The cache folder (the file is `index.cache` in it).
    pub dir: PathBuf,
    /// Bytes of in-memory slots (53 per blob) before they go to the file; at least one slot.
    pub memory_budget: usize,
}

impl std::fmt::Debug for IndexCacheOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexCacheOptions")
            .field("dir", &self.dir)
            .field("memory_budget", &self.memory_budget)
            .finish()
    }
}

/// The options and the MAC key of the cache file.
struct Cache {
    dir: PathBuf,
    budget_slots: usize,
    key: [u8; 32],
}

/// Entries being loaded: a batch of at most the budget, and sorted runs spilled to disk.
#[derive(Default)]
struct Loading {
    batch: Batch,
    runs: Vec<(std::fs::File, u64)>,
    names: Vec<String>,
}

/// At most this many spilled runs are open at once; more are merged into one first.
const MAX_RUNS: usize = 32;

/// The index: a sorted run in memory, and with a cache folder a sorted run on disk.
#[derive(Default)]
pub(crate) struct BlobIndex {
    mem: SortedRun,
    disk: Option<DiskRun>,
    /// Ids held by both runs (the memory's entry, at the larger place, is the one that counts).
    overlap: usize,
    cache: Option<Cache>,
    /// The index objects whose entries are held.
    covered: BTreeSet<String>,
    /// False once entries were added that no named index object holds (after a prune): a cache file written
    /// then is not reused.
    exact: bool,
    /// The logical end of each volume, as the index objects record them.
    ends: BTreeMap<u32, u64>,
    loading: Option<Loading>,
}

impl std::fmt::Debug for BlobIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobIndex")
            .field("memory", &self.mem)
            .field("disk", &self.disk)
            .field("dir", &self.cache.as_ref().map(|c| &c.dir))
            .finish()
    }
}

/// An I/O error of the cache file, as a repository error naming it.
fn io_error(dir: &Path, e: std::io::Error) -> super::RepoError {
    crate::blob::BlobError::Io {
        path: dir.join(index_file::FILE_NAME),
        source: e,
    }
    .into()
}

impl BlobIndex {
    /// An empty index; with `cache`, entries beyond its budget go to a file in its folder, whose MAC is
    /// keyed with `key`.
    pub(crate) fn new(cache: Option<&IndexCacheOptions>, key: [u8; 32]) -> BlobIndex {
        BlobIndex {
            cache: cache.map(|c| Cache {
                dir: c.dir.clone(),
                budget_slots: (c.memory_budget / std::mem::size_of::<Slot>()).max(1),
                key,
            }),
            exact: true,
            ..BlobIndex::default()
        }
    }

    /// Number of blobs indexed.
    pub(crate) fn len(&self) -> usize {
        self.mem.slots.len() + self.disk.as_ref().map_or(0, DiskRun::len) - self.overlap
    }

    /// Bytes held in memory (slots, directories, filter), for the memory model's figures.
    pub(crate) fn bytes(&self) -> usize {
        self.mem.bytes() + self.disk.as_ref().map_or(0, DiskRun::bytes)
    }

    /// Blobs whose slots are on disk.
    pub(crate) fn on_disk(&self) -> usize {
        self.disk.as_ref().map_or(0, DiskRun::len)
    }

    /// The volume ends of the index objects held.
    pub(crate) fn ends(&self) -> &BTreeMap<u32, u64> {
        &self.ends
    }

    fn add_ends(&mut self, ends: &[(u32, u64)]) {
        for (v, end) in ends {
            let cur = self.ends.entry(*v).or_insert(0);
            *cur = (*cur).max(*end);
        }
    }

    /// Forgets every entry (a prune replaces the index); the cache file goes too.
    pub(crate) fn clear(&mut self) {
        if let Some(c) = &self.cache {
            let _ = std::fs::remove_file(c.dir.join(index_file::FILE_NAME));
        }
        self.mem = SortedRun::default();
        self.disk = None;
        self.overlap = 0;
        self.covered.clear();
        self.exact = false;
        self.ends.clear();
    }

    /// The slot of `id`. A failed read of the cache file is logged and answered "not held" (a backup then
    /// stores the blob again; a restore reports it missing, naming the error before it).
    fn find(&self, id: &ChunkId) -> Option<Slot> {
        if let Some(s) = self.mem.find(id) {
            return Some(*s);
        }
        let disk = self.disk.as_ref()?;
        match disk.find(id) {
            Ok(s) => s,
            Err(e) => {
                let dir = self.cache.as_ref().map(|c| c.dir.clone()).unwrap_or_default();
                tracing::error!(error = %io_error(&dir, e), "cannot read the index cache");
                None
            }
        }
    }

    pub(crate) fn contains(&self, id: &ChunkId) -> bool {
        self.find(id).is_some()
    }

    pub(crate) fn get(&self, id: &ChunkId) -> Option<IndexEntry> {
        self.find(id).map(|s| s.entry())
    }

    /// Every entry, in id order.
    pub(crate) fn entries(&self) -> Result<Vec<IndexEntry>, super::RepoError> {
        let mut out = Vec::with_capacity(self.len());
        let dir = self.cache.as_ref().map(|c| c.dir.clone()).unwrap_or_default();
        let mut sources: Vec<Box<dyn SlotSource>> = vec![Box::new(SliceSource(self.mem.slots.iter()))];
        if let Some(d) = &self.disk {
            sources.push(Box::new(d.reader().map_err(|e| io_error(&dir, e))?));
        }
        let mut m = Merge::new(sources).map_err(|e| io_error(&dir, e))?;
        while let Some(s) = m.next_slot().map_err(|e| io_error(&dir, e))? {
            out.push(s.entry());
        }
        Ok(out)
    }

    /// Adds the entries of index object `object` (`None`: entries no index object holds as they are, such as
    /// a prune's). Two entries for one id exist only while a prune is replacing index objects: the copy it
    /// wrote later (repacked blobs are appended, so at a larger volume and offset) wins, within the batch and
    /// against the entries already held. Past the memory budget the in-memory run goes to the cache file.
    pub(crate) fn add(&mut self, object: Option<&str>, ends: &[(u32, u64)], entries: &[IndexEntry]) {
        let mut batch = Batch::default();
        batch.extend(entries);
        self.add_ends(ends);
        match object {
            Some(o) => {
                self.covered.insert(o.to_owned());
            }
            None => self.exact = false,
        }
        self.add_batch(batch);
        self.spill_if_over();
    }

    /// Adds a batch to the in-memory run, dropping entries the disk run holds at a larger or equal place.
    fn add_batch(&mut self, batch: Batch) {
        if batch.len() == 0 {
            return;
        }
        let mut batch = batch.sorted();
        if let Some(disk) = &self.disk {
            let mut overlap = 0;
            let mem = &self.mem;
            let dir = self.cache.as_ref().map(|c| c.dir.clone()).unwrap_or_default();
            batch.retain(|s| {
                let id = s.id;
                match disk.find(&id) {
                    Ok(Some(d)) if d.place() >= s.place() => false,
                    Ok(Some(_)) => {
                        if mem.find(&id).is_none() {
                            overlap += 1;
                        }
                        true
                    }
                    Ok(None) => true,
                    Err(e) => {
                        tracing::error!(error = %io_error(&dir, e), "cannot read the index cache");
                        true
                    }
                }
            });
            self.overlap += overlap;
        }
        if !batch.is_empty() {
            self.mem.merge(&batch);
            self.mem.rebuild_directory();
        }
    }

    /// Merges the in-memory run into the cache file when it holds more than the budget. A failure (a full
    /// disk) is logged, and the index stays in memory from then on.
    fn spill_if_over(&mut self) {
        let Some(c) = &self.cache else { return };
        if self.mem.slots.len() <= c.budget_slots {
            return;
        }
        let dir = c.dir.clone();
        if let Err(e) = self.write_file(Vec::new()) {
            tracing::warn!(
                error = %io_error(&dir, e),
                "cannot write the index cache; the index stays in memory (it may use more than \
                 SEEDSHIP_INDEX_MEMORY_MIB)"
            );
            self.cache = None;
        }
    }

    /// Writes the merge of the disk run, the in-memory run and `runs` (spilled, sorted) as the new cache file
    /// and makes it the disk run; the in-memory run is emptied.
    fn write_file(&mut self, runs: Vec<(std::fs::File, u64)>) -> std::io::Result<()> {
        let c = self.cache.as_ref().expect("a cache folder");
        let mut upper = self.mem.slots.len() + self.on_disk();
        let mut sources: Vec<Box<dyn SlotSource>> = vec![Box::new(SliceSource(self.mem.slots.iter()))];
        if let Some(d) = &self.disk {
            sources.push(Box::new(d.reader()?));
        }
        for (f, n) in runs {
            upper += n as usize;
            sources.push(Box::new(SlotReader::new(f, 0, n)));
        }
        let header = Header {
            covered: self.covered.clone(),
            exact: self.exact,
            ends: self.ends.clone(),
        };
        let run = DiskRun::write(&c.dir, &c.key, &header, upper, Merge::new(sources)?)?;
        self.disk = Some(run);
        self.mem = SortedRun::default();
        self.overlap = 0;
        Ok(())
    }

    /// Starts loading with the repository's index objects `listing`: takes the cache file when it covers
    /// only objects of the listing, and returns the objects still to read ([`BlobIndex::load_object`], then
    /// [`BlobIndex::finish_load`]) and, when a cache file was there but cannot be used, a note saying why
    /// (the file is removed and rebuilt).
    pub(crate) fn start_load(&mut self, listing: &[String]) -> (Vec<String>, Option<String>) {
        self.loading = Some(Loading::default());
        let Some(c) = &self.cache else {
            return (listing.to_vec(), None);
        };
        index_file::remove_stale_temporaries(&c.dir);
        let path = c.dir.join(index_file::FILE_NAME);
        let why = match DiskRun::open(&path, &c.key) {
            Ok(None) => return (listing.to_vec(), None),
            Ok(Some((run, header))) => {
                let all: BTreeSet<&str> = listing.iter().map(String::as_str).collect();
                let gone = header
                    .covered
                    .iter()
                    .filter(|n| !all.contains(n.as_str()))
                    .count();
                if !header.exact {
                    // written after a prune replaced the index in memory: expected, so rebuilt silently
                    drop(run);
                    let _ = std::fs::remove_file(&path);
                    return (listing.to_vec(), None);
                } else if gone > 0 {
                    format!("it covers {gone} index object(s) the repository no longer has (a prune)")
                } else {
                    let rest = listing
                        .iter()
                        .filter(|n| !header.covered.contains(n.as_str()))
                        .cloned()
                        .collect();
                    self.disk = Some(run);
                    self.covered = header.covered;
                    self.ends = header.ends;
                    return (rest, None);
                }
            }
            Err(why) => why,
        };
        let note = format!(
            "index cache {}: {why}; rebuilding it from the repository's {} index objects (it is only a \
             cache of them)",
            path.display(),
            listing.len()
        );
        let _ = std::fs::remove_file(&path);
        (listing.to_vec(), Some(note))
    }

    /// Adds the entries of one index object while loading; past the budget they are sorted and spilled.
    pub(crate) fn load_object(
        &mut self,
        name: &str,
        ends: &[(u32, u64)],
        entries: &[IndexEntry],
    ) -> Result<(), super::RepoError> {
        self.add_ends(ends);
        let budget = self.cache.as_ref().map(|c| (c.dir.clone(), c.budget_slots));
        let l = self.loading.get_or_insert_with(Loading::default);
        l.batch.extend(entries);
        l.names.push(name.to_owned());
        let Some((dir, budget)) = budget else {
            return Ok(());
        };
        if l.batch.len() > budget {
            let slots = std::mem::take(&mut l.batch).sorted();
            std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
            let f = index_file::spill(&dir, &slots).map_err(|e| io_error(&dir, e))?;
            l.runs.push((f, slots.len() as u64));
            drop(slots);
            if l.runs.len() >= MAX_RUNS {
                let runs = std::mem::take(&mut l.runs);
                l.runs
                    .push(merge_runs(&dir, runs).map_err(|e| io_error(&dir, e))?);
            }
        }
        Ok(())
    }

    /// Ends loading: the batch joins the in-memory run, or with spilled runs everything is merged into a new
    /// cache file.
    pub(crate) fn finish_load(&mut self) -> Result<(), super::RepoError> {
        let l = self.loading.take().unwrap_or_default();
        self.covered.extend(l.names);
        if l.runs.is_empty() {
            self.add_batch(l.batch);
            self.spill_if_over();
            return Ok(());
        }
        let dir = self.cache.as_ref().expect("runs need a cache folder").dir.clone();
        let mut runs = l.runs;
        if l.batch.len() > 0 {
            let slots = l.batch.sorted();
            let f = index_file::spill(&dir, &slots).map_err(|e| io_error(&dir, e))?;
            runs.push((f, slots.len() as u64));
        }
        self.write_file(runs).map_err(|e| io_error(&dir, e))
    }
}

/// Merges spilled runs into one spilled run.
fn merge_runs(dir: &Path, runs: Vec<(std::fs::File, u64)>) -> std::io::Result<(std::fs::File, u64)> {
    let sources: Vec<Box<dyn SlotSource>> = runs
        .into_iter()
        .map(|(f, n)| Box::new(SlotReader::new(f, 0, n)) as Box<dyn SlotSource>)
        .collect();
    let mut m = Merge::new(sources)?;
    let path = dir.join(format!("index.merge.{}.tmp", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    let _ = std::fs::remove_file(&path);
    let mut w = std::io::BufWriter::with_capacity(1 << 20, &file);
    let mut n = 0u64;
    while let Some(s) = m.next_slot()? {
        std::io::Write::write_all(&mut w, &s.to_bytes())?;
        n += 1;
    }
    std::io::Write::flush(&mut w)?;
    drop(w);
    Ok((file, n))
}

/// Sorted slots in memory and their bucket directory.
#[derive(Default)]
struct SortedRun {
    slots: Vec<Slot>,
    /// `dir[b]` is the first slot whose bucket is `b` or later; `2^bits + 1` entries.
    dir: Vec<u32>,
    bits: u32,
}

impl std::fmt::Debug for SortedRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SortedRun")
            .field("blobs", &self.slots.len())
            .field("bucket_bits", &self.bits)
            .finish()
    }
}

impl SortedRun {
    fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>() + self.dir.len() * 4
    }

    fn find(&self, id: &ChunkId) -> Option<&Slot> {
        if self.slots.is_empty() {
            return None;
        }
        let b = bucket(id, self.bits);
        let (lo, hi) = (self.dir[b] as usize, self.dir[b + 1] as usize);
        let range = &self.slots[lo..hi];
        range.binary_search_by(|s| s.id.cmp(id)).ok().map(|i| &range[i])
    }

    /// Merges a sorted, duplicate-free batch into the sorted slots, in place from the back.
    fn merge(&mut self, batch: &[Slot]) {
        let old = self.slots.len();
        let filler = batch[0];
        self.slots.resize(old + batch.len(), filler);
        let (mut i, mut j, mut k) = (old, batch.len(), old + batch.len());
        while j > 0 {
            let b = batch[j - 1];
            let next = if i > 0 {
                let s = self.slots[i - 1];
                match s.id.cmp(&b.id) {
                    std::cmp::Ordering::Greater => {
                        i -= 1;
                        s
                    }
                    std::cmp::Ordering::Equal => {
                        i -= 1;
                        j -= 1;
                        if b.place() > s.place() {
                            b
                        } else {
                            s
                        }
                    }
                    std::cmp::Ordering::Less => {
                        j -= 1;
                        b
                    }
                }
            } else {
                j -= 1;
                b
            };
            k -= 1;
            self.slots[k] = next;
        }
        // the slots below i did not move; ids found in both left k - i unused slots between them
        if k > i {
            self.slots.drain(i..k);
        }
    }

    fn rebuild_directory(&mut self) {
        let bits = bits_for(self.slots.len());
        let mut d = DirBuilder::new(bits);
        for s in &self.slots {
            let id = s.id;
            d.push(&id);
        }
        self.dir = d.finish();
        self.bits = bits;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::IdMap;
    use proptest::prelude::*;

    fn entry(id: ChunkId, volume: u32, offset: u64) -> IndexEntry {
        IndexEntry {
            id,
            kind: (offset % 2) as u8,
            volume,
            offset,
            len: (offset % 1000) as u32 + 1,
            raw_len: (offset % 777) as u32,
        }
    }

    fn id_of(n: u64) -> ChunkId {
        *blake3::hash(&n.to_le_bytes()).as_bytes()
    }

    const KEY: [u8; 32] = [9; 32];

    /// An index object: name, volume ends, entries.
    type Object = (String, Vec<(u32, u64)>, Vec<IndexEntry>);
    /// A way to damage a file, and what the note then says.
    type Damage = (&'static str, Box<dyn Fn(&mut Vec<u8>)>);

    /// An index with a budget of `slots` slots in `dir` (none: memory only).
    fn index(dir: &Path, slots: Option<usize>) -> BlobIndex {
        let opts = slots.map(|n| IndexCacheOptions {
            dir: dir.to_path_buf(),
            memory_budget: n * 53,
        });
        BlobIndex::new(opts.as_ref(), KEY)
    }

    /// A process's view: loads `objects` (name, ends, entries) as `Repository::load_index` does; returns the
    /// note on an unusable cache file.
    fn load(idx: &mut BlobIndex, objects: &[Object]) -> Option<String> {
        let names: Vec<String> = objects.iter().map(|o| o.0.clone()).collect();
        let (todo, note) = idx.start_load(&names);
        for (name, ends, entries) in objects {
            if todo.contains(name) {
                idx.load_object(name, ends, entries).unwrap();
            }
        }
        idx.finish_load().unwrap();
        note
    }

    /// The model: a hash map fed the same entries with the "larger place wins" rule.
    fn model_add(model: &mut IdMap<IndexEntry>, entries: &[IndexEntry]) {
        for e in entries {
            let keep = match model.get(&e.id) {
                Some(m) => (e.volume, e.offset) > (m.volume, m.offset),
                None => true,
            };
            if keep {
                model.insert(e.id, *e);
            }
        }
    }

    fn assert_agrees(
        idx: &BlobIndex,
        model: &IdMap<IndexEntry>,
        absent: impl Iterator<Item = u64>,
        what: &str,
    ) {
        assert_eq!(idx.len(), model.len(), "{what}: len");
        for (id, e) in model {
            assert_eq!(idx.get(id), Some(*e), "{what}");
        }
        for n in absent {
            assert!(!idx.contains(&id_of(n)), "{what}: {n} is absent");
        }
        let all = idx.entries().unwrap();
        assert!(
            all.windows(2).all(|w| w[0].id < w[1].id),
            "{what}: sorted, no duplicates"
        );
        assert_eq!(all.len(), model.len(), "{what}: entries");
        for e in &all {
            assert_eq!(model.get(&e.id), Some(e), "{what}");
        }
    }

    #[test]
    fn slots_are_53_bytes_and_keep_every_field() {
        assert_eq!(std::mem::size_of::<Slot>(), 53);
        let e = IndexEntry {
            id: [7; 32],
            kind: crate::repo::BLOB_TREE,
            volume: 3,
            offset: (5 << 32) + 9,
            len: 4097,
            raw_len: 123_456,
        };
        assert_eq!(Slot::of(&e).entry(), e);
        assert_eq!(Slot::from_bytes(&Slot::of(&e).to_bytes()).entry(), e);
    }

    /// The index answers like a hash map fed the same batches with the "larger place wins" rule, in memory
    /// and with budgets that put most entries (tiny), some or none on disk; and so does a second process
    /// that loads the same objects, through the cache file.
    #[test]
    fn agrees_with_a_hash_map_over_batches_with_duplicates() {
        for budget in [None, Some(1), Some(10), Some(700), Some(1 << 20)] {
            let dir = tempfile::tempdir().unwrap();
            let mut idx = index(dir.path(), budget);
            let mut model: IdMap<IndexEntry> = IdMap::default();
            let mut objects = Vec::new();
            let mut rng = 0x9e37_79b9_7f4a_7c15u64;
            let mut next = || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            for round in 0..40u64 {
                let n = (next() % 700) as usize;
                let batch: Vec<IndexEntry> = (0..n)
                    .map(|_| {
                        // ids from a small range so that batches repeat ids, within and across batches
                        let id = id_of(next() % 3000);
                        entry(id, (next() % 4) as u32, next() % 100_000 + round)
                    })
                    .collect();
                let name = format!("index/{round:04}");
                let ends = vec![((round % 3) as u32, round * 10)];
                idx.add(Some(&name), &ends, &batch);
                model_add(&mut model, &batch);
                objects.push((name, ends, batch));
                assert_eq!(idx.len(), model.len(), "budget {budget:?} round {round}");
                if let Some(b) = budget {
                    assert!(
                        idx.mem.slots.len() <= b,
                        "budget {b}: {} in memory",
                        idx.mem.slots.len()
                    );
                }
            }
            assert_agrees(&idx, &model, 3000..4000, &format!("budget {budget:?}"));
            let want_ends: BTreeMap<u32, u64> = [(0, 390), (1, 370), (2, 380)].into();
            assert_eq!(idx.ends(), &want_ends);
            if budget.is_some_and(|b| b < 3000) {
                assert!(idx.on_disk() > 0, "budget {budget:?}: the disk path is used");
            }
            let mut again = index(dir.path(), budget);
            assert_eq!(load(&mut again, &objects), None);
            assert_agrees(
                &again,
                &model,
                3000..3100,
                &format!("reloaded, budget {budget:?}"),
            );
            assert_eq!(again.ends(), &want_ends);
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A new index object of these (id, volume, offset) entries.
        Add(Vec<(u16, u8, u16)>),
        /// Another process opens the repository.
        Reopen,
        /// A prune: the index object at this position goes, the index is replaced by what the others hold.
        Prune(usize),
        /// The cache file's byte at this position (modulo its length) is flipped.
        Damage(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => proptest::collection::vec((0u16..400, 0u8..3, any::<u16>()), 0..120).prop_map(Op::Add),
            2 => Just(Op::Reopen),
            1 => any::<usize>().prop_map(Op::Prune),
            1 => any::<usize>().prop_map(Op::Damage),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any sequence of index objects, reopenings, prunes and damage to the cache file, with any budget:
        /// the index answers like the model of the repository's index objects.
        #[test]
        fn agrees_with_the_model_across_budgets(budget in prop_oneof![Just(None), (1usize..300).prop_map(Some)], ops in proptest::collection::vec(op(), 1..24)) {
            let dir = tempfile::tempdir().unwrap();
            let mut idx = index(dir.path(), budget);
            load(&mut idx, &[]);
            let mut objects: Vec<Object> = Vec::new();
            let mut serial = 0;
            for op in ops {
                serial += 1;
                match op {
                    Op::Add(es) => {
                        let entries: Vec<IndexEntry> = es
                            .iter()
                            .map(|&(id, v, o)| entry(id_of(u64::from(id)), u32::from(v), u64::from(o)))
                            .collect();
                        let name = format!("index/{serial:04}");
                        idx.add(Some(&name), &[], &entries);
                        objects.push((name, vec![], entries));
                    }
                    Op::Reopen => {
                        idx = index(dir.path(), budget);
                        load(&mut idx, &objects);
                    }
                    Op::Prune(at) => {
                        if !objects.is_empty() {
                            objects.remove(at % objects.len());
                        }
                        let mut m = IdMap::default();
                        for o in &objects {
                            model_add(&mut m, &o.2);
                        }
                        let live: Vec<IndexEntry> = m.values().copied().collect();
                        let name = format!("index/{serial:04}");
                        objects = vec![(name.clone(), vec![], live.clone())];
                        idx.clear();
                        idx.add(None, &[], &live);
                    }
                    Op::Damage(at) => {
                        let p = dir.path().join(index_file::FILE_NAME);
                        // at rest between runs: a new file in its place (the open one is not changed)
                        if let Ok(mut b) = std::fs::read(&p) {
                            let i = at % b.len();
                            b[i] ^= 0x40;
                            let tmp = dir.path().join("damaged");
                            std::fs::write(&tmp, &b).unwrap();
                            std::fs::rename(&tmp, &p).unwrap();
                        }
                    }
                }
                let mut model = IdMap::default();
                for o in &objects {
                    model_add(&mut model, &o.2);
                }
                // this process answers from what it verified; a fresh one notices damage and rebuilds
                assert_agrees(&idx, &model, 400..410, "this process");
                let mut fresh = index(dir.path(), budget);
                load(&mut fresh, &objects);
                assert_agrees(&fresh, &model, 400..420, "a fresh process");
            }
        }
    }

    /// A damaged, truncated or stale cache file is rebuilt from the index objects, with a note saying why.
    #[test]
    fn an_unusable_cache_file_is_rebuilt_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(index_file::FILE_NAME);
        let objects: Vec<Object> = (0..4u64)
            .map(|o| {
                let es = (0..50).map(|i| entry(id_of(o * 50 + i), 0, o * 50 + i)).collect();
                (format!("index/{o}"), vec![(0, o)], es)
            })
            .collect();
        let mut model = IdMap::default();
        for o in &objects {
            model_add(&mut model, &o.2);
        }
        let mut idx = index(dir.path(), Some(20));
        assert_eq!(load(&mut idx, &objects), None, "no file yet: no note");
        assert!(idx.on_disk() > 150, "{:?}", idx);
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        let good = std::fs::read(&path).unwrap();

        let cases: [Damage; 4] = [
            (
                "MAC does not match",
                Box::new(|b: &mut Vec<u8>| {
                    let n = b.len();
                    b[n - 100] ^= 1;
                }),
            ),
            ("cut short", Box::new(|b: &mut Vec<u8>| b.truncate(b.len() - 53))),
            ("wrong magic", Box::new(|b: &mut Vec<u8>| b[0] = b'X')),
            ("truncated header", Box::new(|b: &mut Vec<u8>| b.truncate(10))),
        ];
        for (want, damage) in cases {
            let mut b = good.clone();
            damage(&mut b);
            std::fs::write(&path, &b).unwrap();
            let mut idx = index(dir.path(), Some(20));
            let note = load(&mut idx, &objects).expect("a note");
            assert!(
                note.contains(want) && note.contains("rebuilding") && note.contains("4 index objects"),
                "{note}"
            );
            assert_agrees(&idx, &model, 300..320, want);
            let mut next = index(dir.path(), Some(20));
            assert_eq!(load(&mut next, &objects), None, "{want}: rebuilt, then reused");
            assert_eq!(next.on_disk(), 200);
        }
        // another repository's key
        std::fs::write(&path, &good).unwrap();
        let opts = IndexCacheOptions {
            dir: dir.path().to_path_buf(),
            memory_budget: 20 * 53,
        };
        let mut other = BlobIndex::new(Some(&opts), [1; 32]);
        let note = load(&mut other, &objects).expect("a note");
        assert!(note.contains("another repository"), "{note}");
        // an object the file covers is gone (a prune)
        std::fs::write(&path, &good).unwrap();
        let mut idx = index(dir.path(), Some(20));
        let note = load(&mut idx, &objects[1..]).expect("a note");
        assert!(note.contains("no longer has"), "{note}");
        let mut m = IdMap::default();
        for o in &objects[1..] {
            model_add(&mut m, &o.2);
        }
        assert_agrees(&idx, &m, 0..50, "after a prune");
        // a new object the file does not cover is read, the rest comes from the file
        let mut more = objects[1..].to_vec();
        more.push(("index/new".into(), vec![(1, 7)], vec![entry(id_of(999), 1, 7)]));
        model_add(&mut m, &more[3].2);
        let mut idx = index(dir.path(), Some(20));
        let names: Vec<String> = more.iter().map(|o| o.0.clone()).collect();
        let (todo, note) = idx.start_load(&names);
        assert_eq!((todo, note), (vec!["index/new".to_string()], None));
        load(&mut index(dir.path(), Some(20)), &more);
        let mut idx = index(dir.path(), Some(20));
        load(&mut idx, &more);
        assert_agrees(&idx, &m, 0..50, "one object more");
        assert_eq!(idx.ends().get(&1), Some(&7));
    }

    /// A prune replaces the index in memory; a file written then is not reused, and rebuilt without a note.
    #[test]
    fn a_file_written_after_a_prune_is_rebuilt_without_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let all: Vec<IndexEntry> = (0..100).map(|i| entry(id_of(i), 0, i)).collect();
        let mut idx = index(dir.path(), Some(10));
        load(&mut idx, &[("index/a".into(), vec![], all.clone())]);
        idx.clear();
        idx.add(None, &[], &all[..50]);
        assert!(dir.path().join(index_file::FILE_NAME).exists() && idx.on_disk() > 40);
        let pruned: Vec<Object> = vec![("index/b".into(), vec![], all[..50].to_vec())];
        let mut next = index(dir.path(), Some(10));
        assert_eq!(load(&mut next, &pruned), None);
        let mut model = IdMap::default();
        model_add(&mut model, &all[..50]);
        assert_agrees(&next, &model, 50..100, "after the prune");
    }

    /// A crash while the file is written leaves a temporary file, not a damaged cache: the next process
    /// removes it and uses the last complete file.
    #[test]
    fn a_crash_while_writing_leaves_the_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let objects: Vec<Object> = vec![(
            "index/a".into(),
            vec![],
            (0..100).map(|i| entry(id_of(i), 0, i)).collect(),
        )];
        let mut idx = index(dir.path(), Some(10));
        load(&mut idx, &objects);
        // a writer killed half-way, by a process that no longer runs
        let tmp = dir.path().join("index.cache.999999999.0.tmp");
        std::fs::write(&tmp, b"SSIDXC01 half").unwrap();
        let mut again = index(dir.path(), Some(10));
        assert_eq!(load(&mut again, &objects), None);
        assert_eq!(again.on_disk(), 100);
        assert!(!tmp.exists(), "the dead writer's file is removed");
    }

    /// Skewed ids (all in one bucket, as a tampered index could make them) are still found, in memory and
    /// on disk.
    #[test]
    fn skewed_ids_are_found() {
        for budget in [None, Some(100)] {
            let dir = tempfile::tempdir().unwrap();
            let batch: Vec<IndexEntry> = (0..5000u32)
                .map(|n| {
                    let mut id = [0u8; 32];
                    id[28..].copy_from_slice(&n.to_be_bytes());
                    id[8..12].copy_from_slice(&n.to_le_bytes());
                    entry(id, 0, u64::from(n))
                })
                .collect();
            let mut idx = index(dir.path(), budget);
            idx.add(Some("index/a"), &[], &batch[..2500]);
            idx.add(Some("index/b"), &[], &batch[2500..]);
            for e in &batch {
                assert_eq!(idx.get(&e.id), Some(*e));
            }
            let mut other = [0u8; 32];
            other[0] = 1;
            assert!(!idx.contains(&other));
            let mut near = batch[77].id;
            near[31] ^= 0x80;
            assert!(!idx.contains(&near));
        }
    }

    #[test]
    fn empty_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        for budget in [None, Some(1)] {
            let mut idx = index(dir.path(), budget);
            assert!(!idx.contains(&id_of(1)));
            idx.add(Some("index/a"), &[], &[]);
            idx.add(
                Some("index/b"),
                &[],
                &[entry(id_of(1), 0, 5), entry(id_of(2), 0, 6)],
            );
            assert!(idx.contains(&id_of(1)));
            idx.clear();
            assert!(!idx.contains(&id_of(1)));
            assert_eq!(idx.len(), 0);
            assert!(!dir.path().join(index_file::FILE_NAME).exists());
        }
    }
}
