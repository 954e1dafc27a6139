//! A blob's BLAKE3 kept as the chaining values of its 4 MiB leaves, so that when a few ranges of a large blob
//! change (prune punching holes into a staged volume, a backup appending to one) only the leaves those ranges
//! touch are read and hashed again. The digest is still plain BLAKE3 of the whole blob, what `b3sum` prints:
//! BLAKE3 is a tree whose subtrees split at powers of two, so every subtree longer than a leaf splits at a
//! multiple of 4 MiB and the root follows from the leaves' chaining values ([`blake3::hazmat`]).
//!
//! [`LeafCache`] keeps them between runs in a file (a cache: missing or damaged, the blobs are hashed whole).

use super::{BlobError, BlobStore};
use blake3::hazmat::{
    left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Length of a leaf: a power of two, a multiple of BLAKE3's 1 KiB chunk.
pub const LEAF_LEN: u64 = 4 << 20;

/// A blob's length, BLAKE3 and the chaining values of its leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaves {
    pub len: u64,
    /// One per leaf, `len.div_ceil(LEAF_LEN)` of them; the last covers the partial tail.
    pub cvs: Vec<ChainingValue>,
    /// BLAKE3 of the whole blob.
    pub root: blake3::Hash,
}

impl Leaves {
    /// The digest as the job descriptor records it (hex).
    pub fn hex(&self) -> String {
        self.root.to_hex().to_string()
    }

    /// The leaves of `data`, hashed in one piece.
    pub fn of(data: &[u8]) -> Leaves {
        let mut h = LeafHasher::new();
        h.update(data);
        h.finish()
    }
}

/// A hasher at leaf `k` of a blob.
fn leaf_hasher(k: u64) -> blake3::Hasher {
    let mut h = blake3::Hasher::new();
    if k > 0 {
        h.set_input_offset(k * LEAF_LEN);
    }
    h
}

/// Hashes a blob front to back, keeping the chaining value of every leaf.
#[derive(Debug, Clone)]
pub struct LeafHasher {
    cvs: Vec<ChainingValue>,
    cur: blake3::Hasher,
    pos: u64,
    /// The root of a blob that is exactly one leaf (a single leaf's chaining value does not give it).
    first_root: Option<blake3::Hash>,
}

impl Default for LeafHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl LeafHasher {
    pub fn new() -> LeafHasher {
        LeafHasher {
            cvs: Vec::new(),
            cur: blake3::Hasher::new(),
            pos: 0,
            first_root: None,
        }
    }

    /// Continues after the whole leaves of `known` that lie below `upto` (a blob that kept those bytes and
    /// grows): the bytes from [`LeafHasher::position`] on are to be given to [`LeafHasher::update`].
    pub fn resume(known: &Leaves, upto: u64) -> LeafHasher {
        let whole = (known.len.min(upto) / LEAF_LEN) as usize;
        let mut h = LeafHasher {
            cvs: known.cvs[..whole].to_vec(),
            cur: leaf_hasher(whole as u64),
            pos: whole as u64 * LEAF_LEN,
            first_root: None,
        };
        if whole == 1 && known.len == LEAF_LEN {
            h.first_root = Some(known.root);
        }
        h
    }

    /// Bytes hashed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = (LEAF_LEN - self.pos % LEAF_LEN) as usize;
            let n = room.min(data.len());
            self.cur.update(&data[..n]);
            self.pos += n as u64;
            data = &data[n..];
            if self.pos.is_multiple_of(LEAF_LEN) {
                self.cvs.push(self.cur.finalize_non_root());
                if self.pos == LEAF_LEN {
                    self.first_root = Some(self.cur.finalize());
                }
                self.cur = leaf_hasher(self.pos / LEAF_LEN);
            }
        }
    }

    pub fn finish(mut self) -> Leaves {
        if self.pos == 0 {
            return Leaves {
                len: 0,
                cvs: Vec::new(),
                root: blake3::hash(b""),
            };
        }
        let single = self.pos <= LEAF_LEN;
        let single_root = if !self.pos.is_multiple_of(LEAF_LEN) {
            self.cvs.push(self.cur.finalize_non_root());
            single.then(|| self.cur.finalize())
        } else {
            self.first_root.filter(|_| single)
        };
        let root = match single_root {
            Some(r) => r,
            None => root_of(&self.cvs, self.pos),
        };
        Leaves {
            len: self.pos,
            cvs: self.cvs,
            root,
        }
    }
}

/// The chaining values of the two children of the node over `len` bytes (more than a leaf) whose leaves are
/// `cvs`: BLAKE3 gives the left child the largest power of two shorter than the whole, a multiple of a leaf.
fn children(cvs: &[ChainingValue], len: u64) -> (ChainingValue, ChainingValue) {
    let left = left_subtree_len(len);
    let n = (left / LEAF_LEN) as usize;
    (subtree(&cvs[..n], left), subtree(&cvs[n..], len - left))
}

/// The chaining value of the subtree of `len` bytes whose leaves are `cvs` (at a multiple of its own size).
fn subtree(cvs: &[ChainingValue], len: u64) -> ChainingValue {
    if cvs.len() == 1 {
        return cvs[0];
    }
    let (l, r) = children(cvs, len);
    merge_subtrees_non_root(&l, &r, Mode::Hash)
}

/// The root of a blob of `len` bytes, more than one leaf, from its leaves.
fn root_of(cvs: &[ChainingValue], len: u64) -> blake3::Hash {
    debug_assert!(len > LEAF_LEN && cvs.len() as u64 == len.div_ceil(LEAF_LEN));
    let (l, r) = children(cvs, len);
    merge_subtrees_root(&l, &r, Mode::Hash)
}

/// Leaves of blob `name` whose bytes in `changed` (and anywhere past `known.len`, or in leaves the blob's
/// new length cuts) are no longer those `known` was computed from: which leaves must be hashed again.
pub fn stale_leaves(known: &Leaves, len: u64, changed: &[Range<u64>]) -> Vec<u64> {
    let count = len.div_ceil(LEAF_LEN);
    // leaves entirely inside both the old and the new length keep their value unless changed
    // (a blob of one leaf is always read: its root does not follow from its chaining value)
    let kept_whole = if len <= LEAF_LEN {
        0
    } else {
        known.len.min(len) / LEAF_LEN
    };
    let mut stale: Vec<bool> = (0..count).map(|k| k >= kept_whole).collect();
    for r in changed.iter().filter(|r| r.start < r.end) {
        let first = r.start / LEAF_LEN;
        let last = ((r.end - 1) / LEAF_LEN).min(count.saturating_sub(1));
        for k in first..=last {
            if let Some(s) = stale.get_mut(k as usize) {
                *s = true;
            }
        }
    }
    (0..count).filter(|&k| stale[k as usize]).collect()
}

/// The chaining value of leaf `k` of blob `name` (`len` bytes), read from the store; for a blob of a single
/// leaf also its root.
fn read_leaf(
    store: &dyn BlobStore,
    name: &str,
    len: u64,
    k: u64,
    buf: &mut Vec<u8>,
) -> Result<(ChainingValue, Option<blake3::Hash>), BlobError> {
    let start = k * LEAF_LEN;
    let n = (len - start).min(LEAF_LEN) as usize;
    let mut h = leaf_hasher(k);
    store.visit(name, start, n, buf, &mut |bytes| {
        h.update(bytes);
    })?;
    let root = (len <= LEAF_LEN).then(|| h.finalize());
    Ok((h.finalize_non_root(), root))
}

/// The leaves of blob `name` as it is now, given `known` (computed earlier) and the byte ranges changed since
/// ([`stale_leaves`]): only the stale leaves are read, on every core.
pub fn rehash(
    store: &dyn BlobStore,
    name: &str,
    known: &Leaves,
    changed: &[Range<u64>],
) -> Result<Leaves, BlobError> {
    use rayon::prelude::*;
    let len = store.properties(name)?.len;
    let stale = stale_leaves(known, len, changed);
    let fresh = stale
        .par_iter()
        .map_init(Vec::new, |buf, &k| {
            read_leaf(store, name, len, k, buf).map(|cv| (k, cv))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut cvs = known.cvs.clone();
    cvs.resize(len.div_ceil(LEAF_LEN) as usize, [0; 32]);
    let mut single_root = None;
    for (k, (cv, root)) in fresh {
        cvs[k as usize] = cv;
        single_root = single_root.or(root);
    }
    let root = match (len, single_root) {
        (0, _) => blake3::hash(b""),
        (_, Some(r)) => r,
        (l, None) => root_of(&cvs, l),
    };
    Ok(Leaves { len, cvs, root })
}

/// Blob `name` read and hashed whole, on every core (its leaves are independent).
pub fn hash_blob(store: &dyn BlobStore, name: &str) -> Result<Leaves, BlobError> {
    rehash(store, name, &Leaves::of(&[]), &[])
}

/// Magic of a leaf cache file, version 1.
const MAGIC: &[u8; 8] = b"SSLEAF01";

/// The leaves of a job's volumes between runs: a file (mode 0600) written whole under a temporary name and
/// renamed, ending with the BLAKE3 of what precedes it. An entry is trusted only where the caller's record
/// of the blob (the job descriptor's length and digest) matches it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LeafCache {
    pub blobs: BTreeMap<String, Leaves>,
}

impl LeafCache {
    /// The cache file `path`; empty when there is none. A damaged file is an error naming it (the caller
    /// notes it and goes on without).
    pub fn load(path: &Path) -> Result<LeafCache, String> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LeafCache::default()),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Self::decode(&bytes).map_err(|why| format!("{}: {why}", path.display()))
    }

    fn decode(bytes: &[u8]) -> Result<LeafCache, &'static str> {
        if bytes.len() < MAGIC.len() + 32 || &bytes[..8] != MAGIC {
            return Err("not a leaf cache file");
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if blake3::hash(body).as_bytes() != sum {
            return Err("damaged (its checksum does not match)");
        }
        let mut r = &body[8..];
        let mut take = |n: usize| -> Result<&[u8], &'static str> {
            if r.len() < n {
                return Err("truncated");
            }
            let (a, b) = r.split_at(n);
            r = b;
            Ok(a)
        };
        let mut blobs = BTreeMap::new();
        let count = u32::from_le_bytes(take(4)?.try_into().unwrap());
        for _ in 0..count {
            let name_len = u16::from_le_bytes(take(2)?.try_into().unwrap()) as usize;
            let name = std::str::from_utf8(take(name_len)?)
                .map_err(|_| "a name is not UTF-8")?
                .to_owned();
            let len = u64::from_le_bytes(take(8)?.try_into().unwrap());
            let root: [u8; 32] = take(32)?.try_into().unwrap();
            let n = u32::from_le_bytes(take(4)?.try_into().unwrap()) as u64;
            if n != len.div_ceil(LEAF_LEN) {
                return Err("a blob's leaf count does not match its length");
            }
            let cvs = take(n as usize * 32)?
                .chunks_exact(32)
                .map(|c| c.try_into().unwrap())
                .collect();
            blobs.insert(
                name,
                Leaves {
                    len,
                    cvs,
                    root: blake3::Hash::from_bytes(root),
                },
            );
        }
        Ok(LeafCache { blobs })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(self.blobs.len() as u32).to_le_bytes());
        for (name, l) in &self.blobs {
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&l.len.to_le_bytes());
            out.extend_from_slice(l.root.as_bytes());
            out.extend_from_slice(&(l.cvs.len() as u32).to_le_bytes());
            for cv in &l.cvs {
                out.extend_from_slice(cv);
            }
        }
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }

    /// Writes the cache as `path` (its folder is created): a temporary file, synced, then renamed.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp: PathBuf = dir.join(format!(
            ".{}.{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("leaves"),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&self.encode())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// The entry for `name` if it describes a blob of `len` bytes with digest `hex` (what the caller's own
    /// record says the blob is).
    pub fn matching(&self, name: &str, len: u64, hex: &str) -> Option<&Leaves> {
        self.blobs
            .get(name)
            .filter(|l| l.len == len && l.root.to_hex().eq_ignore_ascii_case(hex))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{MemoryStore, Metadata};

    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    const L: usize = LEAF_LEN as usize;

    #[test]
    fn the_root_is_plain_blake3_at_every_length_around_the_leaf_boundaries() {
        let big = data(9 * L + 3000, 1);
        for len in [
            0,
            1,
            1024,
            1025,
            L - 1,
            L,
            L + 1,
            L + 1024,
            2 * L,
            2 * L + 512,
            3 * L,
            3 * L + 1,
            4 * L,
            5 * L - 4096,
            8 * L,
            8 * L + 1,
            9 * L + 3000,
        ] {
            let want = blake3::hash(&big[..len]);
            let got = Leaves::of(&big[..len]);
            assert_eq!(got.root, want, "len {len}");
            assert_eq!(got.cvs.len(), len.div_ceil(L), "len {len}");
            // fed in odd pieces
            let mut h = LeafHasher::new();
            for piece in big[..len].chunks(777_777) {
                h.update(piece);
            }
            assert_eq!(h.finish(), got, "len {len} in pieces");
        }
    }

    #[test]
    fn resuming_after_known_leaves_gives_the_same_digest() {
        let big = data(6 * L + 4096, 2);
        for (known_len, total) in [
            (L, L),
            (L, 2 * L),
            (L + 512, 3 * L),
            (3 * L + 7, 6 * L + 4096),
            (2 * L, 2 * L),
        ] {
            let known = Leaves::of(&big[..known_len]);
            let mut h = LeafHasher::resume(&known, total as u64);
            let from = h.position() as usize;
            assert!(from <= known_len && from.is_multiple_of(L));
            h.update(&big[from..total]);
            assert_eq!(
                h.finish().root,
                blake3::hash(&big[..total]),
                "{known_len} -> {total}"
            );
        }
    }

    #[test]
    fn rehash_reads_only_changed_leaves_and_matches_a_full_hash() {
        let store = MemoryStore::default();
        store.create_container().unwrap();
        let mut bytes = data(7 * L + 8192, 3);
        store.create("v", bytes.len() as u64, &Metadata::new()).unwrap();
        store.write_pages("v", 0, &bytes).unwrap();
        let known = hash_blob(&store, "v").unwrap();
        assert_eq!(known.root, blake3::hash(&bytes));

        // a hole punched across a leaf boundary, and pages written into the last leaf
        let hole = (2 * L as u64 - 8192)..(2 * L as u64 + 4096);
        bytes[hole.start as usize..hole.end as usize].fill(0);
        store
            .write_pages("v", hole.start, &vec![0; (hole.end - hole.start) as usize])
            .unwrap();
        let tail = 7 * L as u64;
        bytes[tail as usize..tail as usize + 512].fill(9);
        store.write_pages("v", tail, &[9; 512]).unwrap();
        let changed = [hole.clone(), tail..tail + 512];
        assert_eq!(stale_leaves(&known, bytes.len() as u64, &changed), vec![1, 2, 7]);
        let now = rehash(&store, "v", &known, &changed).unwrap();
        assert_eq!(now.root, blake3::hash(&bytes));
        // a change the caller does not report goes unseen: that is what the cache trusts its caller for
        store.write_pages("v", 0, &[1; 512]).unwrap();
        assert_eq!(rehash(&store, "v", &now, &[]).unwrap().root, now.root);

        // grown by appending: the old tail leaf and the new ones are hashed again
        bytes[..512].fill(1);
        let grown = 9 * L + 4096;
        bytes.resize(grown, 5);
        store.resize("v", grown as u64).unwrap();
        store
            .write_pages("v", 7 * L as u64 + 8192, &bytes[7 * L + 8192..])
            .unwrap();
        let known = Leaves::of(&bytes[..7 * L + 8192]);
        assert_eq!(stale_leaves(&known, grown as u64, &[]), vec![7, 8, 9]);
        assert_eq!(
            rehash(&store, "v", &known, &[]).unwrap().root,
            blake3::hash(&bytes)
        );

        // a single-leaf blob: changed or not, its root
        let small = data(10_000 / 512 * 512, 4);
        store.create("s", small.len() as u64, &Metadata::new()).unwrap();
        store.write_pages("s", 0, &small).unwrap();
        let k = hash_blob(&store, "s").unwrap();
        assert_eq!(k.root, blake3::hash(&small));
        assert_eq!(rehash(&store, "s", &k, &[]).unwrap().root, k.root);
        let first_page = 0..512;
        assert_eq!(rehash(&store, "s", &k, &[first_page]).unwrap().root, k.root);
    }

    #[test]
    fn the_cache_file_round_trips_and_refuses_damage_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("leaves");
        assert_eq!(LeafCache::load(&path).unwrap(), LeafCache::default());
        let mut c = LeafCache::default();
        c.blobs
            .insert("data/00000000".into(), Leaves::of(&data(2 * L + 512, 5)));
        c.blobs.insert("data/00000001".into(), Leaves::of(&data(4096, 6)));
        c.blobs.insert("empty".into(), Leaves::of(&[]));
        c.save(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let back = LeafCache::load(&path).unwrap();
        assert_eq!(back, c);
        let l = &c.blobs["data/00000000"];
        assert!(back.matching("data/00000000", l.len, &l.hex()).is_some());
        assert!(back.matching("data/00000000", l.len + 512, &l.hex()).is_none());
        assert!(back
            .matching("data/00000000", l.len, &blake3::hash(b"x").to_hex())
            .is_none());

        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = LeafCache::load(&path).unwrap_err();
        assert!(
            e.contains("damaged") && e.contains(&path.display().to_string()),
            "{e}"
        );
        std::fs::write(&path, &bytes[..20]).unwrap();
        assert!(LeafCache::load(&path).is_err());
    }
}
