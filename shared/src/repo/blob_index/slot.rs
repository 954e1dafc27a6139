//! The packed entry of the index and the bucket directory over sorted entries, shared by the index in memory
//! and its cache file.

use crate::repo::format::IndexEntry;
use crate::repo::ChunkId;

/// One entry, packed: 53 bytes.
#[derive(Clone, Copy)]
#[repr(C, packed)]
pub(crate) struct Slot {
    pub(crate) id: ChunkId,
    pub(crate) offset: u64,
    pub(crate) volume: u32,
    pub(crate) len: u32,
    pub(crate) raw_len: u32,
    pub(crate) kind: u8,
}

impl Slot {
    pub(crate) fn of(e: &IndexEntry) -> Slot {
        Slot {
            id: e.id,
            offset: e.offset,
            volume: e.volume,
            len: e.len,
            raw_len: e.raw_len,
            kind: e.kind,
        }
    }

    pub(crate) fn entry(&self) -> IndexEntry {
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
    pub(crate) fn place(&self) -> (u32, u64) {
        (self.volume, self.offset)
    }
}

/// The bucket of an id: its leading `bits` bits (ids sort by them first).
pub(crate) fn bucket(id: &ChunkId, bits: u32) -> usize {
    if bits == 0 {
        return 0;
    }
    let head = u64::from_be_bytes(id[..8].try_into().expect("8 bytes"));
    (head >> (64 - bits)) as usize
}

/// Directory bits for `n` slots: about four slots per bucket.
pub(crate) fn bits_for(n: usize) -> u32 {
    if n < 8 {
        0
    } else {
        (usize::BITS - (n / 4).leading_zeros()).min(32)
    }
}

/// Builds a bucket directory from ids pushed in sorted order.
pub(crate) struct DirBuilder {
    dir: Vec<u32>,
    bits: u32,
    n: u32,
}

impl DirBuilder {
    pub(crate) fn new(bits: u32) -> DirBuilder {
        DirBuilder {
            dir: Vec::with_capacity((1usize << bits) + 1),
            bits,
            n: 0,
        }
    }

    pub(crate) fn push(&mut self, id: &ChunkId) {
        let b = bucket(id, self.bits);
        while self.dir.len() <= b {
            self.dir.push(self.n);
        }
        self.n += 1;
    }

    pub(crate) fn finish(mut self) -> Vec<u32> {
        let end = (1usize << self.bits) + 1;
        while self.dir.len() < end {
            self.dir.push(self.n);
        }
        self.dir.shrink_to_fit();
        self.dir
    }
}
