//! The pack writer: appends packs of encrypted blobs to the newest volume and writes index objects.
//!
//! Order of durability (what makes a crash harmless): a pack is written with `write_pages` (durable when it
//! returns); every `index_every` packs, and at the end, an index object naming the blobs of the written packs
//! is saved; only then may a snapshot refer to them. After a crash the next writer starts at the logical end
//! of the newest volume as recorded by the index and truncates anything after it (unindexed pack tails),
//! deleting volumes after it that no index object mentions. An index object is also written when a volume
//! is full, so every volume's final end is recorded.
//! One pack is written in a background thread while the next one fills; indexing waits for it. Volumes grow
//! in 64 MiB steps and are trimmed to their logical end when the writer finishes.
//!
//! When an index object is written is an [`IndexPolicy`]: after a number of packs, and optionally after a
//! number of bytes or seconds since the last one, whichever comes first. Over a network the byte and time
//! limits bound what a killed process has to upload again. Trees added are also handed to the repository's
//! tree cache. Volume digests (for a staging job descriptor) can be turned off: a writer appending to a
//! volume in the vault would otherwise read the volume's earlier content back to hash it.

use super::format::{encode_index, IndexEntry, BLOB_TREE, VOLUME_HEADER_LEN, VOLUME_MAGIC};
use super::repository::{EncodedBlob, Repository};
use super::IdSet;
use super::{volume_name, RepoError};
use crate::blob::leaves::{LeafHasher, Leaves};
use crate::blob::{Metadata, PAGE_SIZE};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Volumes grow by this much at a time (then are trimmed to their logical end).
const GROW_STEP: u64 = 64 << 20;

/// Buffer capacity for packs of `pack_size`: room for the largest blob (8 MiB chunk plus overhead) and padding.
fn pack_capacity(pack_size: usize) -> usize {
    pack_size.max((8 << 20) + 4096) + 512
}

/// Blobs packed before an index object is due whatever the [`IndexPolicy`]: the entries waiting for it, and
/// the set of their ids, are the pack writer's only memory that grows with the number of blobs (16 MiB packs of
/// 100-byte blobs would otherwise hold millions).
pub const MAX_UNINDEXED: usize = 1 << 16;

/// A pack being written: gives its buffer back with the result.
type InFlight = std::thread::JoinHandle<(Vec<u8>, Result<(), crate::blob::BlobError>)>;

/// A volume as written, for the job descriptor: its length and BLAKE3 with the chaining values of its 4 MiB
/// leaves, so that a later change re-hashes only what it touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDigest {
    pub name: String,
    pub leaves: Leaves,
}

/// When the pack writer writes an index object: after `packs` packs, or once `bytes` bytes or `interval`
/// have passed since the last index object (checked after each pack), whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexPolicy {
    pub packs: usize,
    pub bytes: Option<u64>,
    pub interval: Option<Duration>,
}

impl IndexPolicy {
    /// Every `packs` packs, without byte or time limits.
    pub fn every_packs(packs: usize) -> IndexPolicy {
        IndexPolicy {
            packs: packs.max(1),
            bytes: None,
            interval: None,
        }
    }
}

/// Single-threaded owner of the append position.
#[derive(Debug)]
pub struct PackWriter {
    repo: Arc<Repository>,
    pack_size: usize,
    index: IndexPolicy,
    /// Bytes packed and when, since the last index object.
    bytes_since_index: u64,
    last_index: Instant,
    /// Whether volume digests are computed.
    digests_on: bool,
    volume: u32,
    /// Next free offset in the volume (aligned).
    offset: u64,
    /// Current length of the volume object.
    volume_len: u64,
    buf: Vec<u8>,
    in_buf: Vec<IndexEntry>,
    unindexed: Vec<IndexEntry>,
    packs_since_index: usize,
    /// Ids packed since the last index object (the index holds the earlier ones).
    pending: IdSet,
    /// Ids [`PackWriter::add_moved`] packed in this run.
    moved: IdSet,
    hasher: LeafHasher,
    /// Leaves of volumes as earlier runs left them: a resumed volume's prefix is read only past them.
    known_leaves: BTreeMap<String, Leaves>,
    inflight: Option<InFlight>,
    /// A resumed volume whose earlier content is not yet in `hasher`.
    prefix_unhashed: bool,
    spare: Vec<u8>,
    digests: Vec<VolumeDigest>,
    /// Bytes of envelopes written (stats).
    pub bytes_stored: u64,
    pub blobs_stored: u64,
}

impl PackWriter {
    /// Opens the writer at the end of the newest volume, truncating unindexed tails.
    pub fn open(repo: Arc<Repository>, pack_size: usize, index_every: usize) -> Result<Self, RepoError> {
        let ends = repo.volume_ends();
        let mut w = PackWriter {
            repo,
            pack_size,
            index: IndexPolicy::every_packs(index_every),
            bytes_since_index: 0,
            last_index: Instant::now(),
            digests_on: true,
            volume: 0,
            offset: 0,
            volume_len: 0,
            buf: Vec::with_capacity(pack_capacity(pack_size)),
            in_buf: vec![],
            unindexed: vec![],
            packs_since_index: 0,
            pending: IdSet::default(),
            moved: IdSet::default(),
            hasher: LeafHasher::new(),
            known_leaves: BTreeMap::new(),
            inflight: None,
            prefix_unhashed: false,
            spare: Vec::new(),
            digests: vec![],
            bytes_stored: 0,
            blobs_stored: 0,
        };
        w.remove_unindexed_volumes(ends.keys().next_back().copied())?;
        match ends.iter().next_back() {
            Some((&v, &end)) if end < w.repo.config().volume_size => w.resume_volume(v, end)?,
            Some((&v, _)) => w.new_volume(v + 1)?,
            None => w.new_volume(0)?,
        }
        Ok(w)
    }

    /// Replaces the index policy (the default is every `index_every` packs given to [`PackWriter::open`]).
    pub fn set_index_policy(&mut self, policy: IndexPolicy) {
        self.index = IndexPolicy {
            packs: policy.packs.max(1),
            ..policy
        };
    }

    /// Stops computing volume digests: [`PackWriter::finish`] then returns none, and appending to a volume
    /// earlier runs wrote never reads it back.
    pub fn without_digests(mut self) -> Self {
        self.digests_on = false;
        self.prefix_unhashed = false;
        self
    }

    /// Leaves of volumes as earlier runs left them (entries the caller checked against its record of each
    /// volume): appending to one of them reads back only its last, partial leaf instead of the whole volume.
    pub fn with_known_leaves(mut self, known: BTreeMap<String, Leaves>) -> Self {
        self.known_leaves = known;
        self
    }

    /// Whether an index object is due after a pack.
    fn index_due(&self) -> bool {
        self.packs_since_index >= self.index.packs
            || self.unindexed.len() >= MAX_UNINDEXED
            || self.index.bytes.is_some_and(|b| self.bytes_since_index >= b)
            || self
                .index
                .interval
                .is_some_and(|t| self.packs_since_index > 0 && self.last_index.elapsed() >= t)
    }

    /// Deletes volumes after the newest indexed one: a crashed run opened them, and no index object (so no
    /// snapshot) refers to anything in them.
    fn remove_unindexed_volumes(&self, newest: Option<u32>) -> Result<(), RepoError> {
        let store = self.repo.store();
        for o in store.list("data/")? {
            let Some(n) = o.name.strip_prefix("data/").and_then(|d| d.parse::<u32>().ok()) else {
                continue;
            };
            if newest.is_some_and(|v| n > v) || (newest.is_none() && n > 0) {
                tracing::warn!(object = %o.name, "removing a volume an interrupted backup opened but never indexed");
                store.delete(&o.name)?;
            }
        }
        Ok(())
    }

    fn resume_volume(&mut self, v: u32, end: u64) -> Result<(), RepoError> {
        let name = volume_name(v);
        let end = end.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        if self.repo.store().properties(&name)?.len != end {
            // drop an unindexed tail left by a crash
            self.repo.store().resize(&name, end)?;
        }
        self.volume = v;
        self.offset = end;
        self.volume_len = end;
        // the kept prefix is hashed only if this run appends to the volume (see hash_prefix)
        self.hasher = LeafHasher::new();
        self.prefix_unhashed = self.digests_on;
        Ok(())
    }

    /// Hashes the part of a resumed volume written by earlier runs, so the digest covers the whole volume.
    fn hash_prefix(&mut self) -> Result<(), RepoError> {
        if !self.prefix_unhashed {
            return Ok(());
        }
        let name = volume_name(self.volume);
        if let Some(known) = self.known_leaves.get(&name) {
            self.hasher = LeafHasher::resume(known, self.offset);
        }
        let mut buf = vec![0u8; 4 << 20];
        let mut pos = self.hasher.position();
        while pos < self.offset {
            let n = (self.offset - pos).min(buf.len() as u64) as usize;
            self.repo.store().read_at(&name, pos, &mut buf[..n])?;
            self.hasher.update(&buf[..n]);
            pos += n as u64;
        }
        self.prefix_unhashed = false;
        Ok(())
    }

    fn new_volume(&mut self, v: u32) -> Result<(), RepoError> {
        let name = volume_name(v);
        let mut header = vec![0u8; VOLUME_HEADER_LEN as usize];
        header[..8].copy_from_slice(VOLUME_MAGIC);
        header[8..12].copy_from_slice(&v.to_le_bytes());
        let rid = hex::decode(&self.repo.config().id).unwrap_or_default();
        let n = rid.len().min(16);
        header[12..12 + n].copy_from_slice(&rid[..n]);
        let store = self.repo.store();
        store.create(&name, VOLUME_HEADER_LEN, &Metadata::new())?;
        store.write_pages(&name, 0, &header)?;
        self.volume = v;
        self.offset = VOLUME_HEADER_LEN;
        self.volume_len = VOLUME_HEADER_LEN;
        self.hasher = LeafHasher::new();
        self.hasher.update(&header);
        self.prefix_unhashed = false;
        Ok(())
    }

    /// Adds a blob unless it was already stored; returns whether it was new.
    pub fn add(&mut self, blob: &EncodedBlob) -> Result<bool, RepoError> {
        if self.repo.contains(&blob.id) || !self.pending.insert(blob.id) {
            return Ok(false);
        }
        self.push(blob)?;
        Ok(true)
    }

    /// Adds a blob that the index already holds elsewhere (prune moves it); once indexed, the new entry
    /// wins (it lies at a larger volume and offset). Returns whether it was new in this run.
    pub fn add_moved(&mut self, blob: &EncodedBlob) -> Result<bool, RepoError> {
        if !self.moved.insert(blob.id) {
            return Ok(false);
        }
        self.push(blob)?;
        Ok(true)
    }

    fn push(&mut self, blob: &EncodedBlob) -> Result<(), RepoError> {
        let len = blob.envelope.len() as u64;
        // a pack never grows past pack_size (unless one blob alone is larger): its buffer is never reallocated;
        // nor do more than MAX_UNINDEXED blobs wait for an index object
        let full = self.buf.len() + blob.envelope.len() > self.pack_size
            || self.in_buf.len() + self.unindexed.len() >= MAX_UNINDEXED;
        if !self.buf.is_empty() && full {
            self.flush_pack()?;
            if self.index_due() {
                self.flush_index()?;
            }
        }
        // the volume is full unless it holds nothing yet (a blob larger than a volume gets one alone); the
        // pack being filled counts, so a volume smaller than a pack is not overrun by its first pack
        let used = self.offset + self.buf.len() as u64;
        if used + len > self.repo.config().volume_size && used > VOLUME_HEADER_LEN {
            // index the full volume's last packs now: an index object records the end of the volume
            // current when it is written, so this is where the full volume's final end gets recorded
            self.flush_index()?;
            self.trim()?;
            self.close_volume();
            self.new_volume(self.volume + 1)?;
        }
        self.in_buf.push(IndexEntry {
            id: blob.id,
            kind: blob.kind,
            volume: self.volume,
            offset: self.offset + self.buf.len() as u64,
            len: blob.envelope.len() as u32,
            raw_len: blob.raw_len,
        });
        self.buf.extend_from_slice(&blob.envelope);
        if blob.kind == BLOB_TREE {
            self.repo.remember_tree(&blob.id, &blob.envelope);
        }
        self.bytes_stored += len;
        self.blobs_stored += 1;
        Ok(())
    }

    /// Starts writing the buffered pack (padded to 512) to the volume. One pack is written in the background
    /// while the next one fills; [`PackWriter::flush_index`] waits for it before indexing.
    pub fn flush_pack(&mut self) -> Result<(), RepoError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let padded = self.buf.len().div_ceil(PAGE_SIZE as usize) * PAGE_SIZE as usize;
        self.buf.resize(padded, 0);
        let name = volume_name(self.volume);
        let end = self.offset + padded as u64;
        if end > self.volume_len {
            // grow in steps (fewer resizes); finish() trims to the logical end
            let step = (self.volume_len + GROW_STEP).min(self.repo.config().volume_size);
            let new_len = end.max(step).div_ceil(PAGE_SIZE) * PAGE_SIZE;
            self.repo.store().resize(&name, new_len)?;
            self.volume_len = new_len;
        }
        if self.digests_on {
            self.hash_prefix()?;
            self.hasher.update(&self.buf);
        }
        self.wait_inflight()?;
        let mut next = std::mem::take(&mut self.spare);
        next.reserve_exact(pack_capacity(self.pack_size));
        let data = std::mem::replace(&mut self.buf, next);
        let store = self.repo.store().clone();
        let offset = self.offset;
        self.inflight = Some(std::thread::spawn(move || {
            let r = store.write_pages(&name, offset, &data);
            (data, r)
        }));
        self.offset = end;
        self.unindexed.append(&mut self.in_buf);
        self.packs_since_index += 1;
        self.bytes_since_index += padded as u64;
        Ok(())
    }

    fn wait_inflight(&mut self) -> Result<(), RepoError> {
        if let Some(h) = self.inflight.take() {
            let (mut data, r) = h
                .join()
                .map_err(|_| RepoError::damaged("pack writer", "write thread panicked"))?;
            data.clear();
            self.spare = data;
            r?;
        }
        Ok(())
    }

    /// Waits for the pack in flight and sets the volume's length to its logical end.
    fn trim(&mut self) -> Result<(), RepoError> {
        self.wait_inflight()?;
        if self.volume_len > self.offset {
            self.repo.store().resize(&volume_name(self.volume), self.offset)?;
            self.volume_len = self.offset;
        }
        Ok(())
    }

    /// Flushes the pack and writes an index object for everything written since the last one.
    pub fn flush_index(&mut self) -> Result<(), RepoError> {
        self.flush_pack()?;
        self.wait_inflight()?;
        self.packs_since_index = 0;
        self.bytes_since_index = 0;
        self.last_index = Instant::now();
        if self.unindexed.is_empty() {
            return Ok(());
        }
        let ends = [(self.volume, self.offset)];
        let name = self
            .repo
            .save_object("index", &encode_index(&ends, &self.unindexed))?;
        self.repo.add_index(Some(&name), &ends, &self.unindexed);
        self.unindexed.clear();
        self.pending.clear();
        self.repo.flush_tree_cache();
        Ok(())
    }

    fn close_volume(&mut self) {
        let h = std::mem::take(&mut self.hasher);
        if self.prefix_unhashed || !self.digests_on {
            // resumed but not appended to: unchanged, no digest from this run
            self.prefix_unhashed = false;
            return;
        }
        self.digests.push(VolumeDigest {
            name: volume_name(self.volume),
            leaves: h.finish(),
        });
    }

    /// Flushes everything and returns the digests of the volumes written in this run.
    pub fn finish(mut self) -> Result<Vec<VolumeDigest>, RepoError> {
        self.flush_index()?;
        self.trim()?;
        self.close_volume();
        Ok(std::mem::take(&mut self.digests))
    }
}

impl Drop for PackWriter {
    /// A writer dropped without `finish` (an error elsewhere) still waits for its pack in flight.
    fn drop(&mut self) {
        if let Some(h) = self.inflight.take() {
            let _ = h.join();
        }
    }
}
