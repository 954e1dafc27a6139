//! The local tree cache: the stored envelope of every tree written or read, so that an incremental backup
//! (which walks the parent snapshot's trees) and a restore need no cloud reads for trees.
//!
//! A tree `<id>` (64 hex digits) is kept as `<cache>/trees/<first two digits>/<id>`, holding exactly the
//! envelope stored in the volume (nonce, encrypted compressed tree, tag). The files are written atomically
//! (temporary file, then rename) and are never trusted: a read decrypts and authenticates the envelope
//! with the repository key, decompresses it to the length the index records and checks that the keyed hash
//! of the result is the id. Anything else (unreadable file, failed authentication, wrong id) is a cache miss
//! with a warning, and the tree is read from the repository and cached again. The cache is consulted only
//! for trees the index holds, so it never makes an unindexed tree visible. Deleting it is always safe.

use super::repository::{parse_json, Repository};
use super::tree::Tree;
use super::{id_hex, volume_name, ChunkId, RepoError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Hits and misses of the tree cache ([`Repository::tree_cache_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeCacheStats {
    /// Trees served from the cache.
    pub hits: u64,
    /// Trees read from the repository's store (absent, unreadable or rejected cache files).
    pub misses: u64,
}

/// The folder of cached tree envelopes.
#[derive(Debug)]
pub(crate) struct TreeCache {
    dir: PathBuf,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Which of the 256 fan-out folders this process has made sure exist (saves a stat and a mkdir per tree).
    made: Vec<AtomicBool>,
}

impl TreeCache {
    /// A cache in `<dir>/trees/` (created when the first tree is stored).
    pub(crate) fn new(dir: &Path) -> TreeCache {
        TreeCache {
            dir: dir.join("trees"),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            made: (0..256).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    fn path(&self, id: &ChunkId) -> PathBuf {
        let h = id_hex(id);
        self.dir.join(&h[..2]).join(h)
    }

    /// The cached envelope of `id`, if there is a file for it (not yet verified).
    pub(crate) fn get(&self, id: &ChunkId) -> Option<Vec<u8>> {
        match std::fs::read(self.path(id)) {
            Ok(b) => Some(b),
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path(id).display(), error = %e, "cannot read a cached tree; reading it from the repository");
                }
                None
            }
        }
    }

    /// Records a verified hit or a miss.
    pub(crate) fn count(&self, hit: bool) {
        let c = if hit { &self.hits } else { &self.misses };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Warns that the cached file of `id` was rejected (it is replaced by the next `put`).
    pub(crate) fn reject(&self, id: &ChunkId, why: &str) {
        tracing::warn!(
            path = %self.path(id).display(),
            "cached tree rejected ({why}); reading it from the repository"
        );
    }

    /// Stores the envelope of `id`. A failure only costs a later cloud read: it is logged, not returned.
    pub(crate) fn put(&self, id: &ChunkId, envelope: &[u8]) {
        let p = self.path(id);
        let write = || -> std::io::Result<()> {
            let made = &self.made[id[0] as usize];
            let tmp = p.with_extension(format!("tmp{}", std::process::id()));
            let mut r = match made.load(Ordering::Relaxed) {
                true => std::fs::write(&tmp, envelope),
                false => Err(std::io::ErrorKind::NotFound.into()),
            };
            // the folder is new, or was removed while running (deleting the cache is always safe)
            if matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                made.store(true, Ordering::Relaxed);
                r = std::fs::write(&tmp, envelope);
            }
            r?;
            std::fs::rename(&tmp, &p)
        };
        if let Err(e) = write() {
            tracing::warn!(path = %p.display(), error = %e, "cannot cache a tree");
        }
    }

    pub(crate) fn stats(&self) -> TreeCacheStats {
        TreeCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

/// The tree cache's side of the repository: reading trees through it.
impl Repository {
    /// Keeps trees in a local cache under `dir` (see the `tree_cache` module): [`Repository::load_tree`]
    /// serves them from there once verified, and trees written or read are added.
    pub fn with_tree_cache(mut self, dir: &std::path::Path) -> Self {
        self.trees = Some(TreeCache::new(dir));
        self
    }

    /// Hits and misses of the tree cache (zero without one).
    pub fn tree_cache_stats(&self) -> TreeCacheStats {
        self.trees.as_ref().map(|t| t.stats()).unwrap_or_default()
    }

    /// Adds a tree's envelope to the tree cache, if there is one (the pack writer calls this).
    pub fn remember_tree(&self, id: &ChunkId, envelope: &[u8]) {
        if let Some(t) = &self.trees {
            t.put(id, envelope);
        }
    }

    /// Reads a tree: from the tree cache when it holds a verified copy, else from the store.
    pub fn load_tree(&self, id: &ChunkId) -> Result<Tree, RepoError> {
        let what = format!("tree {}", id_hex(id));
        let raw = match &self.trees {
            None => self.read_blob(id)?,
            Some(cache) => {
                let e = self
                    .lookup(id)
                    .ok_or_else(|| RepoError::MissingChunk { id: id_hex(id) })?;
                let cached = cache
                    .get(id)
                    .and_then(|env| match self.open_envelope(&what, &env, &e) {
                        Ok(raw) => Some(raw),
                        Err(err) => {
                            cache.reject(id, &err.to_string());
                            None
                        }
                    });
                cache.count(cached.is_some());
                match cached {
                    Some(raw) => raw,
                    None => {
                        let vol = volume_name(e.volume);
                        let mut env = vec![0u8; e.len as usize];
                        self.store().read_at(&vol, e.offset, &mut env)?;
                        let at = format!("{vol} at offset {} (chunk {})", e.offset, id_hex(&e.id));
                        let raw = self.open_envelope(&at, &env, &e)?;
                        cache.put(id, &env);
                        raw
                    }
                }
            }
        };
        parse_json(&what, &raw)
    }
}
