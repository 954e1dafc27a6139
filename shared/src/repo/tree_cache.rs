//! The local tree cache: the stored envelope of every tree written or read, so that an incremental backup
//! (which walks the parent snapshot's trees) and a restore need no cloud reads for trees.
//!
//! The cache is a folder `<cache>/trees/` of segments. Each process that adds trees appends them to a new
//! segment `<n>.seg` as records `id (32 bytes) | length (u32 LE) | envelope` (the envelope exactly as stored
//! in the volume: nonce, encrypted compressed tree, tag) and lists each record in `<n>.idx` as
//! `id (32) | offset of the envelope (u64 LE) | length (u32 LE)`. Opening reads the `.idx` files only (one
//! file per run instead of one per tree: creating tens of thousands of small files costs seconds of kernel
//! time on a used ext4). Records are never trusted: a read decrypts and authenticates the envelope with the
//! repository key, decompresses it to the length the index records and checks that the keyed hash of the
//! result is the id. Anything else (unreadable record, an entry past the segment's end after a crash,
//! failed authentication, wrong id) is a cache miss with a warning, and the tree is read from the
//! repository and cached again. The cache is consulted only for trees the index holds, so it never makes an
//! unindexed tree visible. Deleting it is always safe.

use super::{id_hex, ChunkId, IdMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};

/// Hits and misses of the tree cache ([`Repository::tree_cache_stats`](crate::repo::Repository::tree_cache_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeCacheStats {
    /// Trees served from the cache.
    pub hits: u64,
    /// Trees read from the repository's store (absent, unreadable or rejected cache records).
    pub misses: u64,
}

const ID_LEN: usize = 32;
/// `id | offset | length` of one `.idx` entry.
const ENTRY_LEN: usize = ID_LEN + 8 + 4;
/// Index entries are written in batches of this many (and when the cache is dropped).
const IDX_BATCH: usize = 256;

/// Where a cached envelope lies: segment number (into `Segments::files`), offset, length.
#[derive(Debug, Clone, Copy)]
struct Place {
    seg: usize,
    offset: u64,
    len: u32,
}

/// The segments read so far and the map of every cached tree.
#[derive(Debug, Default)]
struct Segments {
    files: Vec<(PathBuf, File)>,
    places: IdMap<Place>,
}

/// The segment this process appends to.
#[derive(Debug)]
struct Appender {
    seg: usize,
    data: File,
    end: u64,
    idx: File,
    pending: Vec<u8>,
}

/// The folder of cached tree envelopes.
#[derive(Debug)]
pub(crate) struct TreeCache {
    dir: PathBuf,
    hits: AtomicU64,
    misses: AtomicU64,
    segments: OnceLock<RwLock<Segments>>,
    appender: Mutex<Option<Appender>>,
}

impl TreeCache {
    /// A cache in `<dir>/trees/` (created when the first tree is stored).
    pub(crate) fn new(dir: &Path) -> TreeCache {
        TreeCache {
            dir: dir.join("trees"),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            segments: OnceLock::new(),
            appender: Mutex::new(None),
        }
    }

    /// The segments on disk, read once (their `.idx` files) on first use.
    fn segments(&self) -> &RwLock<Segments> {
        self.segments.get_or_init(|| RwLock::new(self.load()))
    }

    fn load(&self) -> Segments {
        let mut segs = Segments::default();
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return segs;
        };
        let mut names: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "idx"))
            .collect();
        names.sort();
        for idx_path in names {
            let data_path = idx_path.with_extension("seg");
            let (mut idx, data) = match (File::open(&idx_path), File::open(&data_path)) {
                (Ok(i), Ok(d)) => (i, d),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(path = %idx_path.display(), error = %e, "cannot open a tree cache segment; its trees are read from the repository");
                    continue;
                }
            };
            let mut raw = vec![];
            if let Err(e) = idx.read_to_end(&mut raw) {
                tracing::warn!(path = %idx_path.display(), error = %e, "cannot read a tree cache index; its trees are read from the repository");
                continue;
            }
            let seg = segs.files.len();
            for e in raw.chunks_exact(ENTRY_LEN) {
                let id: ChunkId = e[..ID_LEN].try_into().expect("32 bytes");
                let offset = u64::from_le_bytes(e[ID_LEN..ID_LEN + 8].try_into().expect("8 bytes"));
                let len = u32::from_le_bytes(e[ID_LEN + 8..].try_into().expect("4 bytes"));
                segs.places.insert(id, Place { seg, offset, len });
            }
            segs.files.push((data_path, data));
        }
        segs
    }

    /// The cached envelope of `id`, if there is a record for it (not yet verified).
    pub(crate) fn get(&self, id: &ChunkId) -> Option<Vec<u8>> {
        let segs = self.segments().read().expect("lock");
        let place = *segs.places.get(id)?;
        let (path, file) = &segs.files[place.seg];
        let mut env = vec![0u8; place.len as usize];
        match file.read_exact_at(&mut env, place.offset) {
            Ok(()) => Some(env),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read a cached tree; reading it from the repository");
                None
            }
        }
    }

    /// Whether there is a record for `id` (not verified).
    pub(crate) fn contains(&self, id: &ChunkId) -> bool {
        self.segments().read().expect("lock").places.contains_key(id)
    }

    /// Records a verified hit or a miss.
    pub(crate) fn count(&self, hit: bool) {
        let c = if hit { &self.hits } else { &self.misses };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Warns that the cached record of `id` was rejected and forgets it (the next `put` adds it again).
    pub(crate) fn reject(&self, id: &ChunkId, why: &str) {
        tracing::warn!(
            folder = %self.dir.display(),
            tree = %id_hex(id),
            "cached tree rejected ({why}); reading it from the repository"
        );
        self.segments().write().expect("lock").places.remove(id);
    }

    /// Stores the envelope of `id`. A failure only costs a later cloud read: it is logged, not returned.
    pub(crate) fn put(&self, id: &ChunkId, envelope: &[u8]) {
        if let Err(e) = self.append(id, envelope) {
            tracing::warn!(folder = %self.dir.display(), error = %e, "cannot cache a tree");
        }
    }

    fn append(&self, id: &ChunkId, envelope: &[u8]) -> std::io::Result<()> {
        let len =
            u32::try_from(envelope.len()).map_err(|_| std::io::Error::other("tree too large to cache"))?;
        let mut slot = self.appender.lock().expect("lock");
        if slot.is_none() {
            *slot = Some(self.new_segment()?);
        }
        let a = slot.as_mut().expect("set above");
        let mut rec = Vec::with_capacity(ID_LEN + 4 + envelope.len());
        rec.extend_from_slice(id);
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(envelope);
        a.data.write_all_at(&rec, a.end)?;
        let offset = a.end + (ID_LEN + 4) as u64;
        a.end += rec.len() as u64;
        a.pending.extend_from_slice(id);
        a.pending.extend_from_slice(&offset.to_le_bytes());
        a.pending.extend_from_slice(&len.to_le_bytes());
        if a.pending.len() >= IDX_BATCH * ENTRY_LEN {
            a.idx.write_all(&a.pending)?;
            a.pending.clear();
        }
        let seg = a.seg;
        self.segments()
            .write()
            .expect("lock")
            .places
            .insert(*id, Place { seg, offset, len });
        Ok(())
    }

    /// Creates this process's segment: the next free number.
    fn new_segment(&self) -> std::io::Result<Appender> {
        std::fs::create_dir_all(&self.dir)?;
        // the folders of the earlier layout (one file per tree under `<2 hex digits>/`) are not read any more
        for e in std::fs::read_dir(&self.dir)?.flatten() {
            if e.file_name().len() == 2 && e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let mut segs = self.segments().write().expect("lock");
        let mut n = segs.files.len();
        loop {
            let data_path = self.dir.join(format!("{n:08}.seg"));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&data_path)
            {
                Ok(data) => {
                    let idx = OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(data_path.with_extension("idx"))?;
                    let seg = segs.files.len();
                    segs.files.push((data_path, data.try_clone()?));
                    return Ok(Appender {
                        seg,
                        data,
                        end: 0,
                        idx,
                        pending: vec![],
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes the index entries not yet written (the pack writer calls this whenever it writes an index).
    pub(crate) fn flush(&self) {
        let mut slot = self.appender.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = slot.as_mut() {
            if let Err(e) = a.idx.write_all(&a.pending) {
                tracing::warn!(folder = %self.dir.display(), error = %e, "cannot write the tree cache index");
            }
            a.pending.clear();
        }
    }

    pub(crate) fn stats(&self) -> TreeCacheStats {
        TreeCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

impl Drop for TreeCache {
    /// Writes the last index entries (a run killed before this only loses them: later cache misses).
    fn drop(&mut self) {
        self.flush();
    }
}
