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

use super::{id_hex, ChunkId};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Hits and misses of a [`TreeCache`].
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
}

impl TreeCache {
    /// A cache in `<dir>/trees/` (created when the first tree is stored).
    pub(crate) fn new(dir: &Path) -> TreeCache {
        TreeCache {
            dir: dir.join("trees"),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
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
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let tmp = p.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, envelope)?;
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
