//! The in-memory index of where every blob lies: the part of a backup's memory that grows with the number of
//! blobs (one per small file), so it is kept compact.
//!
//! Entries are 53-byte packed slots (id, volume, offset, lengths, kind) in one array sorted by id, with no free
//! slots and no per-entry allocation; a directory of bucket starts, keyed by the id's leading bits (about four
//! slots per bucket, so about one byte per blob), narrows a lookup to a few slots. Ids are keyed BLAKE3 outputs
//! and spread evenly; a skewed set (a tampered index) only makes buckets longer, and each is binary-searched.
//! A hash map of the same entries costs 64-128 bytes per blob (56-byte slots at a load of 1/2 to 7/8) and
//! doubles while it grows.
//!
//! New entries arrive in batches (one index object at a time): a batch is sorted and merged into the array in
//! place from the back, so growing the array needs no second copy of it (large allocations grow with
//! `mremap`, and the unused capacity is never touched, so it costs no resident memory).

use super::format::IndexEntry;
use super::ChunkId;

/// One entry, packed: 53 bytes.
#[derive(Clone, Copy)]
#[repr(C, packed)]
struct Slot {
    id: ChunkId,
    offset: u64,
    volume: u32,
    len: u32,
    raw_len: u32,
    kind: u8,
}

impl Slot {
    fn of(e: &IndexEntry) -> Slot {
        Slot {
            id: e.id,
            offset: e.offset,
            volume: e.volume,
            len: e.len,
            raw_len: e.raw_len,
            kind: e.kind,
        }
    }

    fn entry(&self) -> IndexEntry {
        IndexEntry {
            id: self.id,
            kind: self.kind,
            volume: self.volume,
            offset: self.offset,
            len: self.len,
            raw_len: self.raw_len,
        }
    }

    /// Where the blob lies; of two entries for one id the one at the larger place wins (see [`BlobIndex::add`]).
    fn place(&self) -> (u32, u64) {
        (self.volume, self.offset)
    }
}

/// Entries gathered as slots (53 bytes each) before they are added at once: what loading every index object of
/// a repository collects, without a second, larger copy of the entries.
#[derive(Default)]
pub(crate) struct Batch(Vec<Slot>);

impl Batch {
    pub(crate) fn extend(&mut self, entries: &[IndexEntry]) {
        self.0.extend(entries.iter().map(Slot::of));
    }
}

/// Sorted slots and their bucket directory.
#[derive(Default)]
pub(crate) struct BlobIndex {
    slots: Vec<Slot>,
    /// `dir[b]` is the first slot whose bucket is `b` or later; `2^bits + 1` entries.
    dir: Vec<u32>,
    bits: u32,
}

impl std::fmt::Debug for BlobIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobIndex")
            .field("blobs", &self.slots.len())
            .field("bucket_bits", &self.bits)
            .finish()
    }
}

/// The bucket of an id: its leading `bits` bits (ids sort by them first).
fn bucket(id: &ChunkId, bits: u32) -> usize {
    if bits == 0 {
        return 0;
    }
    let head = u64::from_be_bytes(id[..8].try_into().expect("8 bytes"));
    (head >> (64 - bits)) as usize
}

impl BlobIndex {
    /// Number of blobs indexed.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Bytes held (slots in use plus the directory), for the memory model's figures.
    pub(crate) fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>() + self.dir.len() * 4
    }

    pub(crate) fn clear(&mut self) {
        *self = BlobIndex::default();
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

    pub(crate) fn contains(&self, id: &ChunkId) -> bool {
        self.find(id).is_some()
    }

    pub(crate) fn get(&self, id: &ChunkId) -> Option<IndexEntry> {
        self.find(id).map(Slot::entry)
    }

    /// Every entry, in id order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = IndexEntry> + '_ {
        self.slots.iter().map(Slot::entry)
    }

    /// Adds a batch of entries. Two entries for one id exist only while a prune is replacing index objects:
    /// the copy it wrote later (repacked blobs are appended, so at a larger volume and offset) wins, within
    /// the batch and against the entries already held.
    pub(crate) fn add(&mut self, entries: &[IndexEntry]) {
        let mut batch = Batch::default();
        batch.extend(entries);
        self.add_batch(batch);
    }

    /// Adds a [`Batch`] (as [`BlobIndex::add`] does its entries).
    pub(crate) fn add_batch(&mut self, batch: Batch) {
        let mut batch = batch.0;
        if batch.is_empty() {
            return;
        }
        batch.sort_unstable_by(|a, b| a.id.cmp(&b.id).then(a.place().cmp(&b.place())));
        // of equal ids keep the last (largest place): dedup_by keeps the earlier element, so move it there
        batch.dedup_by(|later, kept| {
            if later.id == kept.id {
                *kept = *later;
                true
            } else {
                false
            }
        });
        self.merge(&batch);
        self.rebuild_directory();
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
        let n = self.slots.len();
        // about four slots per bucket
        let bits = if n < 8 {
            0
        } else {
            (usize::BITS - (n / 4).leading_zeros()).min(32)
        };
        let buckets = 1usize << bits;
        self.dir.clear();
        self.dir.reserve_exact(buckets + 1);
        let mut s = 0usize;
        for b in 0..buckets {
            while s < n && bucket(&self.slots[s].id, bits) < b {
                s += 1;
            }
            self.dir.push(s as u32);
        }
        self.dir.push(n as u32);
        self.bits = bits;
        self.dir.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::IdMap;

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
    }

    /// The index answers like a hash map fed the same batches with the "larger place wins" rule.
    #[test]
    fn agrees_with_a_hash_map_over_batches_with_duplicates() {
        let mut idx = BlobIndex::default();
        let mut model: IdMap<IndexEntry> = IdMap::default();
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
            idx.add(&batch);
            for e in &batch {
                let keep = match model.get(&e.id) {
                    Some(m) => (e.volume, e.offset) > (m.volume, m.offset),
                    None => true,
                };
                if keep {
                    model.insert(e.id, *e);
                }
            }
            assert_eq!(idx.len(), model.len(), "round {round}");
        }
        for (id, e) in &model {
            assert_eq!(idx.get(id), Some(*e));
        }
        for n in 3000..4000 {
            assert!(!idx.contains(&id_of(n)));
        }
        let ids: Vec<ChunkId> = idx.entries().map(|e| e.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
    }

    /// Skewed ids (all in one bucket, as a tampered index could make them) are still found.
    #[test]
    fn skewed_ids_are_found() {
        let batch: Vec<IndexEntry> = (0..5000u32)
            .map(|n| {
                let mut id = [0u8; 32];
                id[28..].copy_from_slice(&n.to_be_bytes());
                entry(id, 0, u64::from(n))
            })
            .collect();
        let mut idx = BlobIndex::default();
        idx.add(&batch[..2500]);
        idx.add(&batch[2500..]);
        for e in &batch {
            assert_eq!(idx.get(&e.id), Some(*e));
        }
        let mut other = [0u8; 32];
        other[0] = 1;
        assert!(!idx.contains(&other));
    }

    #[test]
    fn empty_and_cleared() {
        let mut idx = BlobIndex::default();
        assert!(!idx.contains(&id_of(1)));
        idx.add(&[]);
        idx.add(&[entry(id_of(1), 0, 5)]);
        assert!(idx.contains(&id_of(1)));
        idx.clear();
        assert!(!idx.contains(&id_of(1)));
        assert_eq!(idx.len(), 0);
    }
}
