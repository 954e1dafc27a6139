//! The part of the blob index beyond its memory budget: a local cache file of sorted slots, read with `pread`
//! through a bucket directory and a Bloom filter kept in memory (about 2.3-3.3 bytes per blob instead of the
//! slot's 53). `pread`, not `mmap`: mapped pages that were read count in the resident set.
//!
//! The file (`<cache>/index.cache`, mode 0600) is a cache of the repository's index objects, which stay the
//! truth:
//!
//! ```text
//! magic "SSIDXC01" | count u64 | flags u32 | names: n u32, each (len u16, bytes) | ends: n u32, each
//! (volume u32, end u64) | count slots of 53 bytes, sorted by id, no duplicates | MAC (32 bytes)
//! ```
//!
//! The names are the index objects whose entries the slots are (all of them: flag bit 0; a file written after
//! a prune replaced the index in memory has it clear and is never reused), the ends their volume ends. The MAC
//! is a BLAKE3 keyed with a key derived from the repository's master key, over the header and the digest of
//! the slots: a damaged, truncated or foreign file fails it (and the scan that checks it also checks the
//! order and builds the directory and the filter). A file is written under a temporary name and renamed, so
//! a crash at any point leaves the old file or the new one, never a mix; spill runs of a rebuild are unlinked
//! as soon as they are created.

use super::slot::{bits_for, bucket, DirBuilder, Slot};
use crate::repo::ChunkId;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The cache file's name in the cache folder.
pub(crate) const FILE_NAME: &str = "index.cache";
const MAGIC: &[u8; 8] = b"SSIDXC01";
/// Flag: the slots are exactly the entries of the named index objects.
const EXACT: u32 = 1;
pub(super) const SLOT_LEN: usize = 53;
/// A bucket of up to this many slots is read with one `pread`; longer ones (only a skewed, tampered set of ids
/// makes them) are narrowed by reading single slots first.
const ONE_READ: usize = 64;

impl Slot {
    pub(super) fn to_bytes(self) -> [u8; SLOT_LEN] {
        let mut b = [0u8; SLOT_LEN];
        let (id, offset, volume, len, raw_len, kind) = (
            self.id,
            self.offset,
            self.volume,
            self.len,
            self.raw_len,
            self.kind,
        );
        b[..32].copy_from_slice(&id);
        b[32..40].copy_from_slice(&offset.to_le_bytes());
        b[40..44].copy_from_slice(&volume.to_le_bytes());
        b[44..48].copy_from_slice(&len.to_le_bytes());
        b[48..52].copy_from_slice(&raw_len.to_le_bytes());
        b[52] = kind;
        b
    }

    pub(super) fn from_bytes(b: &[u8]) -> Slot {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Slot {
            id: b[..32].try_into().expect("32 bytes"),
            offset: u64::from_le_bytes(b[32..40].try_into().expect("8 bytes")),
            volume: u32_at(40),
            len: u32_at(44),
            raw_len: u32_at(48),
            kind: b[52],
        }
    }
}

/// A Bloom filter of ids: 10 bits per id and 4 probes (about 1% false positives), so that a lookup of an
/// id the file does not hold (every new blob of a backup) needs no `pread`.
pub(super) struct Bloom {
    words: Vec<u64>,
    nbits: u64,
}

impl Bloom {
    pub(super) fn with_capacity(n: usize) -> Bloom {
        let nbits = (n as u64 * 10).max(64).next_multiple_of(64);
        Bloom {
            words: vec![0; (nbits / 64) as usize],
            nbits,
        }
    }

    /// Four probes from id bytes 8..24 (ids are keyed hashes: every part is uniform; the directory uses
    /// the leading bytes).
    fn probes(&self, id: &ChunkId) -> [u64; 4] {
        std::array::from_fn(|k| {
            let h = u32::from_le_bytes(id[8 + 4 * k..12 + 4 * k].try_into().expect("4 bytes"));
            (u64::from(h) * self.nbits) >> 32
        })
    }

    pub(super) fn insert(&mut self, id: &ChunkId) {
        for p in self.probes(id) {
            self.words[(p / 64) as usize] |= 1 << (p % 64);
        }
    }

    pub(super) fn may_contain(&self, id: &ChunkId) -> bool {
        self.probes(id)
            .iter()
            .all(|&p| self.words[(p / 64) as usize] & (1 << (p % 64)) != 0)
    }

    fn bytes(&self) -> usize {
        self.words.len() * 8
    }
}

/// What a cache file says about itself.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Header {
    /// The index objects whose entries the file holds.
    pub(super) covered: BTreeSet<String>,
    /// Whether the file holds exactly their entries (false: not reusable by another process).
    pub(super) exact: bool,
    /// The volume ends those index objects record.
    pub(super) ends: BTreeMap<u32, u64>,
}

impl Header {
    fn encode(&self, count: u64) -> Vec<u8> {
        let mut b = Vec::with_capacity(64 + self.covered.iter().map(|n| n.len() + 2).sum::<usize>());
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&count.to_le_bytes());
        b.extend_from_slice(&(if self.exact { EXACT } else { 0 }).to_le_bytes());
        b.extend_from_slice(&(self.covered.len() as u32).to_le_bytes());
        for n in &self.covered {
            let n = &n.as_bytes()[..n.len().min(u16::MAX as usize)];
            b.extend_from_slice(&(n.len() as u16).to_le_bytes());
            b.extend_from_slice(n);
        }
        b.extend_from_slice(&(self.ends.len() as u32).to_le_bytes());
        for (v, e) in &self.ends {
            b.extend_from_slice(&v.to_le_bytes());
            b.extend_from_slice(&e.to_le_bytes());
        }
        b
    }

    /// Parses a header from the file's start; returns it, the slot count and the header's length.
    fn read(file: &File, file_len: u64) -> Result<(Header, u64, u64), String> {
        let mut r = HeaderReader {
            file: io::BufReader::with_capacity(64 << 10, file),
            pos: 0,
            file_len,
        };
        if &r.take::<8>()? != MAGIC {
            return Err("not an index cache file (wrong magic)".into());
        }
        let count = u64::from_le_bytes(r.take()?);
        let flags = u32::from_le_bytes(r.take()?);
        let names = u32::from_le_bytes(r.take()?);
        if u64::from(names) * 2 > file_len {
            return Err(format!(
                "its header names {names} index objects, more than the file can hold"
            ));
        }
        let mut covered = BTreeSet::new();
        for _ in 0..names {
            let len = u16::from_le_bytes(r.take()?) as usize;
            let mut s = vec![0u8; len];
            r.fill(&mut s)?;
            covered.insert(String::from_utf8(s).map_err(|_| "an object name is not UTF-8".to_string())?);
        }
        let n_ends = u32::from_le_bytes(r.take()?);
        if u64::from(n_ends) * 12 > file_len {
            return Err(format!(
                "its header has {n_ends} volume ends, more than the file can hold"
            ));
        }
        let mut ends = BTreeMap::new();
        for _ in 0..n_ends {
            let v = u32::from_le_bytes(r.take()?);
            ends.insert(v, u64::from_le_bytes(r.take()?));
        }
        let header = Header {
            covered,
            exact: flags & EXACT != 0,
            ends,
        };
        Ok((header, count, r.pos))
    }
}

struct HeaderReader<'a> {
    file: io::BufReader<&'a File>,
    pos: u64,
    file_len: u64,
}

impl HeaderReader<'_> {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), String> {
        if self.pos + buf.len() as u64 > self.file_len {
            return Err("truncated header".into());
        }
        io::Read::read_exact(&mut self.file, buf).map_err(|e| format!("cannot read its header: {e}"))?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.fill(&mut b)?;
        Ok(b)
    }
}

/// The MAC of a file: keyed BLAKE3 of the header (with its count) and the digest of the slots.
fn mac(key: &[u8; 32], header: &[u8], slots_digest: &blake3::Hash) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(header);
    h.update(slots_digest.as_bytes());
    *h.finalize().as_bytes()
}

/// A source of slots in id order (a file's slots, a spill run, the in-memory run).
pub(super) trait SlotSource {
    fn next_slot(&mut self) -> io::Result<Option<Slot>>;
}

/// Reads `count` slots from `start` of a file, sequentially, 1 MiB at a time.
pub(super) struct SlotReader {
    file: File,
    pos: u64,
    left: u64,
    buf: Vec<u8>,
    at: usize,
}

impl SlotReader {
    pub(super) fn new(file: File, start: u64, count: u64) -> SlotReader {
        SlotReader {
            file,
            pos: start,
            left: count,
            buf: Vec::new(),
            at: 0,
        }
    }
}

impl SlotSource for SlotReader {
    fn next_slot(&mut self) -> io::Result<Option<Slot>> {
        if self.at == self.buf.len() {
            if self.left == 0 {
                return Ok(None);
            }
            let n = self.left.min(((1 << 20) / SLOT_LEN) as u64) as usize;
            self.buf.resize(n * SLOT_LEN, 0);
            self.file.read_exact_at(&mut self.buf, self.pos)?;
            self.pos += self.buf.len() as u64;
            self.left -= n as u64;
            self.at = 0;
        }
        let s = Slot::from_bytes(&self.buf[self.at..self.at + SLOT_LEN]);
        self.at += SLOT_LEN;
        Ok(Some(s))
    }
}

/// Slots of a slice (sorted, no duplicates).
pub(super) struct SliceSource<'a>(pub(super) std::slice::Iter<'a, Slot>);

impl SlotSource for SliceSource<'_> {
    fn next_slot(&mut self) -> io::Result<Option<Slot>> {
        Ok(self.0.next().copied())
    }
}

/// Merges sorted sources into one sorted sequence without duplicates: of equal ids the one at the larger
/// place (volume, offset) wins, as in the in-memory index.
pub(super) struct Merge<'a> {
    sources: Vec<Box<dyn SlotSource + 'a>>,
    heads: Vec<Option<Slot>>,
}

impl<'a> Merge<'a> {
    pub(super) fn new(mut sources: Vec<Box<dyn SlotSource + 'a>>) -> io::Result<Merge<'a>> {
        let heads = sources
            .iter_mut()
            .map(|s| s.next_slot())
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Merge { sources, heads })
    }

    pub(super) fn next_slot(&mut self) -> io::Result<Option<Slot>> {
        let mut best: Option<Slot> = None;
        for h in self.heads.iter().flatten() {
            best = match best {
                None => Some(*h),
                Some(b) => match h.id.cmp(&b.id) {
                    std::cmp::Ordering::Less => Some(*h),
                    std::cmp::Ordering::Equal if h.place() > b.place() => Some(*h),
                    _ => Some(b),
                },
            };
        }
        let Some(best) = best else { return Ok(None) };
        for (h, s) in self.heads.iter_mut().zip(self.sources.iter_mut()) {
            while h.is_some_and(|x| x.id == best.id) {
                *h = s.next_slot()?;
            }
        }
        Ok(Some(best))
    }
}

/// Writes sorted slots to a new file in `dir` and unlinks it at once (a crash leaves nothing); returns the
/// open file for a [`SlotReader`].
pub(super) fn spill(dir: &Path, slots: &[Slot]) -> io::Result<File> {
    let path = temp_path(dir, "run");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    let _ = std::fs::remove_file(&path);
    let mut w = BufWriter::with_capacity(1 << 20, &file);
    for s in slots {
        w.write_all(&s.to_bytes())?;
    }
    w.flush()?;
    drop(w);
    Ok(file)
}

/// A fresh name in `dir` for a file being written: `index.<what>.<pid>.<n>.tmp`.
fn temp_path(dir: &Path, what: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!("index.{what}.{}.{n}.tmp", std::process::id()))
}

/// Removes the temporary files of processes that no longer run (a crash while writing the cache file).
pub(super) fn remove_stale_temporaries(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let mut parts = name.split('.');
        if parts.next() != Some("index") || !name.ends_with(".tmp") {
            continue;
        }
        let pid = parts.nth(1).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// The sorted slots on disk: the open file, the bucket directory and the Bloom filter.
pub(super) struct DiskRun {
    file: File,
    /// Offset of the first slot.
    start: u64,
    count: usize,
    /// `dir[b]` is the first slot whose bucket is `b` or later; `2^bits + 1` entries.
    dir: Vec<u32>,
    bits: u32,
    bloom: Bloom,
}

impl std::fmt::Debug for DiskRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskRun")
            .field("blobs", &self.count)
            .field("bucket_bits", &self.bits)
            .finish()
    }
}

impl DiskRun {
    pub(super) fn len(&self) -> usize {
        self.count
    }

    /// Bytes held in memory (directory and filter).
    pub(super) fn bytes(&self) -> usize {
        self.dir.len() * 4 + self.bloom.bytes()
    }

    /// Opens and verifies the cache file at `path`: `Ok(None)` when there is none, `Err(why)` when it cannot
    /// be used (damaged, truncated, another repository's, out of order).
    pub(super) fn open(path: &Path, key: &[u8; 32]) -> Result<Option<(DiskRun, Header)>, String> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot open it: {e}")),
        };
        let file_len = file
            .metadata()
            .map_err(|e| format!("cannot read its length: {e}"))?
            .len();
        let (header, count, start) = Header::read(&file, file_len)?;
        let expect = count
            .checked_mul(SLOT_LEN as u64)
            .and_then(|b| b.checked_add(start + 32))
            .filter(|_| count < u64::from(u32::MAX));
        if expect != Some(file_len) {
            return Err(format!(
                "it is {file_len} bytes, not what its header's {count} entries need (a write cut short)"
            ));
        }
        let mut head = vec![0u8; start as usize];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| format!("cannot read it: {e}"))?;
        let bits = bits_for(count as usize);
        let mut dir = DirBuilder::new(bits);
        let mut bloom = Bloom::with_capacity(count as usize);
        let mut digest = blake3::Hasher::new();
        let mut reader = SlotReader::new(
            file.try_clone().map_err(|e| format!("cannot read it: {e}"))?,
            start,
            count,
        );
        let mut last: Option<ChunkId> = None;
        while let Some(s) = reader.next_slot().map_err(|e| format!("cannot read it: {e}"))? {
            let id = s.id;
            if last.is_some_and(|l| l >= id) {
                return Err("its entries are out of order".into());
            }
            last = Some(id);
            digest.update(&s.to_bytes());
            dir.push(&id);
            bloom.insert(&id);
        }
        let mut stored = [0u8; 32];
        file.read_exact_at(&mut stored, file_len - 32)
            .map_err(|e| format!("cannot read it: {e}"))?;
        let want = mac(key, &head, &digest.finalize());
        if !constant_time_eq(&stored, &want) {
            return Err("its MAC does not match (damaged, or written for another repository)".into());
        }
        let run = DiskRun {
            file,
            start,
            count: count as usize,
            dir: dir.finish(),
            bits,
            bloom,
        };
        Ok(Some((run, header)))
    }

    /// Writes the merge of `sources` (at most `upper` slots) as the cache file `dir/index.cache`: under a
    /// temporary name, renamed when complete.
    pub(super) fn write(
        dir: &Path,
        key: &[u8; 32],
        header: &Header,
        upper: usize,
        mut merge: Merge<'_>,
    ) -> io::Result<DiskRun> {
        std::fs::create_dir_all(dir)?;
        let tmp = temp_path(dir, "cache");
        let result = (|| {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            let head0 = header.encode(0);
            let start = head0.len() as u64;
            let bits = bits_for(upper);
            let mut dirb = DirBuilder::new(bits);
            let mut bloom = Bloom::with_capacity(upper);
            let mut digest = blake3::Hasher::new();
            let mut w = BufWriter::with_capacity(1 << 20, &file);
            w.write_all(&head0)?;
            let mut count = 0u64;
            while let Some(s) = merge.next_slot()? {
                let b = s.to_bytes();
                digest.update(&b);
                w.write_all(&b)?;
                let id = s.id;
                dirb.push(&id);
                bloom.insert(&id);
                count += 1;
            }
            let head = header.encode(count);
            w.write_all(&mac(key, &head, &digest.finalize()))?;
            w.flush()?;
            drop(w);
            file.write_all_at(&head, 0)?;
            std::fs::rename(&tmp, dir.join(FILE_NAME))?;
            Ok(DiskRun {
                file,
                start,
                count: count as usize,
                dir: dirb.finish(),
                bits,
                bloom,
            })
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// The slot of `id`, read with `pread`.
    pub(super) fn find(&self, id: &ChunkId) -> io::Result<Option<Slot>> {
        if self.count == 0 || !self.bloom.may_contain(id) {
            return Ok(None);
        }
        let b = bucket(id, self.bits);
        let (mut lo, mut hi) = (self.dir[b] as usize, self.dir[b + 1] as usize);
        let mut one = [0u8; SLOT_LEN];
        // a long bucket: halve it with single reads until one read covers it
        while hi - lo > ONE_READ {
            let mid = lo + (hi - lo) / 2;
            self.file.read_exact_at(&mut one, self.at(mid))?;
            match Slot::from_bytes(&one).id.cmp(id) {
                std::cmp::Ordering::Equal => return Ok(Some(Slot::from_bytes(&one))),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        if lo == hi {
            return Ok(None);
        }
        let mut buf = [0u8; ONE_READ * SLOT_LEN];
        let buf = &mut buf[..(hi - lo) * SLOT_LEN];
        self.file.read_exact_at(buf, self.at(lo))?;
        let (mut l, mut h) = (0, hi - lo);
        while l < h {
            let m = l + (h - l) / 2;
            let s = &buf[m * SLOT_LEN..(m + 1) * SLOT_LEN];
            match s[..32].cmp(&id[..]) {
                std::cmp::Ordering::Equal => return Ok(Some(Slot::from_bytes(s))),
                std::cmp::Ordering::Less => l = m + 1,
                std::cmp::Ordering::Greater => h = m,
            }
        }
        Ok(None)
    }

    fn at(&self, i: usize) -> u64 {
        self.start + (i * SLOT_LEN) as u64
    }

    /// A sequential reader of every slot.
    pub(super) fn reader(&self) -> io::Result<SlotReader> {
        Ok(SlotReader::new(
            self.file.try_clone()?,
            self.start,
            self.count as u64,
        ))
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
