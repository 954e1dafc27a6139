//! A local cache of the repository's metadata objects, so that opening a repository in the vault needs no
//! cloud reads for what was read or written before.
//!
//! [`CachedStore`] wraps any [`BlobStore`]. Objects that never change once written (`config`, `keys/…`,
//! `index/…`, `snapshots/…`) are kept as files under the cache folder: reads are served from there, a miss
//! fetches the whole object once, and writes go to the store first and then into the cache. Everything
//! else (volumes, listings) goes straight to the store. The repository verifies every object it reads
//! (frame digest, authentication, name), so a damaged cache file is reported like damage in the store;
//! deleting the cache folder is always safe. `check` reads the store itself, not the cache.

use crate::blob::{BlobError, BlobInfo, BlobStore, Metadata};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A store with a local cache of its immutable metadata objects.
#[derive(Debug)]
pub struct CachedStore {
    inner: Arc<dyn BlobStore>,
    dir: PathBuf,
    /// Objects being written (create .. write_pages): cached when their first page arrives whole.
    pending: Mutex<std::collections::HashMap<String, u64>>,
}

fn cacheable(name: &str) -> bool {
    name == "config"
        || name.starts_with("keys/")
        || name.starts_with("index/")
        || name.starts_with("snapshots/")
}

impl CachedStore {
    /// Wraps `inner`, caching under `dir` (created when needed).
    pub fn new(inner: Arc<dyn BlobStore>, dir: &Path) -> Self {
        CachedStore {
            inner,
            dir: dir.to_path_buf(),
            pending: Mutex::new(Default::default()),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
        move |source| BlobError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<(), BlobError> {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(Self::io(parent))?;
        }
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, bytes).map_err(Self::io(&tmp))?;
        std::fs::rename(&tmp, &p).map_err(Self::io(&p))
    }

    /// The cached bytes of `name`, fetching the whole object on a miss.
    fn cached(&self, name: &str) -> Result<Vec<u8>, BlobError> {
        let p = self.path(name);
        if let Ok(b) = std::fs::read(&p) {
            return Ok(b);
        }
        let len = self.inner.properties(name)?.len;
        if len > 1 << 30 {
            return Err(BlobError::OverLimit {
                what: "metadata object",
                value: len,
                limit: 1 << 30,
                limit_name: "1 GiB for a cached metadata object",
            });
        }
        let mut buf = vec![0u8; len as usize];
        self.inner.read_at(name, 0, &mut buf)?;
        self.put(name, &buf)?;
        Ok(buf)
    }

    fn forget(&self, name: &str) {
        let _ = std::fs::remove_file(self.path(name));
    }
}

impl BlobStore for CachedStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn create_container(&self) -> Result<(), BlobError> {
        self.inner.create_container()
    }
    fn delete_container(&self) -> Result<(), BlobError> {
        let _ = std::fs::remove_dir_all(&self.dir);
        self.inner.delete_container()
    }
    fn create(&self, name: &str, len: u64, metadata: &Metadata) -> Result<(), BlobError> {
        self.forget(name);
        self.inner.create(name, len, metadata)?;
        if cacheable(name) {
            self.pending.lock().expect("lock").insert(name.to_string(), len);
        }
        Ok(())
    }
    fn write_pages(&self, name: &str, offset: u64, data: &[u8]) -> Result<(), BlobError> {
        self.inner.write_pages(name, offset, data)?;
        if cacheable(name) {
            let whole = self.pending.lock().expect("lock").remove(name) == Some(data.len() as u64);
            if offset == 0 && whole {
                self.put(name, data)?;
            } else {
                self.forget(name);
            }
        }
        Ok(())
    }
    fn clear_pages(&self, name: &str, offset: u64, len: u64) -> Result<(), BlobError> {
        self.forget(name);
        self.inner.clear_pages(name, offset, len)
    }
    fn update_pages(
        &self,
        name: &str,
        clears: &[Range<u64>],
        writes: &[(u64, Vec<u8>)],
    ) -> Result<(), BlobError> {
        self.forget(name);
        self.inner.update_pages(name, clears, writes)
    }
    fn visit(
        &self,
        name: &str,
        offset: u64,
        len: usize,
        buf: &mut Vec<u8>,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<(), BlobError> {
        if !cacheable(name) {
            return self.inner.visit(name, offset, len, buf, f);
        }
        crate::blob::visit_by_reading(self, name, offset, len, buf, f)
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), BlobError> {
        if !cacheable(name) {
            return self.inner.read_at(name, offset, buf);
        }
        let bytes = self.cached(name)?;
        let end = offset + buf.len() as u64;
        if end > bytes.len() as u64 {
            return Err(BlobError::OutOfRange {
                store: self.describe(),
                name: name.to_string(),
                offset,
                end,
                len: bytes.len() as u64,
            });
        }
        buf.copy_from_slice(&bytes[offset as usize..end as usize]);
        Ok(())
    }
    fn page_ranges(&self, name: &str) -> Result<Vec<Range<u64>>, BlobError> {
        self.inner.page_ranges(name)
    }
    fn resize(&self, name: &str, len: u64) -> Result<(), BlobError> {
        self.forget(name);
        self.inner.resize(name, len)
    }
    fn properties(&self, name: &str) -> Result<BlobInfo, BlobError> {
        if cacheable(name) {
            if let Ok(m) = std::fs::metadata(self.path(name)) {
                return Ok(BlobInfo {
                    name: name.to_string(),
                    len: m.len(),
                    metadata: Metadata::new(),
                });
            }
        }
        self.inner.properties(name)
    }
    fn set_metadata(&self, name: &str, metadata: &Metadata) -> Result<(), BlobError> {
        self.inner.set_metadata(name, metadata)
    }
    fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError> {
        self.inner.list(prefix)
    }
    fn delete(&self, name: &str) -> Result<(), BlobError> {
        self.forget(name);
        self.inner.delete(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::MemoryStore;

    #[test]
    fn metadata_is_served_from_the_cache_after_the_first_read() {
        let dir = tempfile::tempdir().unwrap();
        let mem: Arc<dyn BlobStore> = Arc::new(MemoryStore::default());
        mem.create_container().unwrap();
        let c = CachedStore::new(mem.clone(), dir.path());
        c.create("index/ab", 512, &Metadata::new()).unwrap();
        c.write_pages("index/ab", 0, &[5u8; 512]).unwrap();
        assert!(dir.path().join("index/ab").exists(), "written objects are cached");
        mem.write_pages("index/ab", 0, &[6u8; 512]).unwrap(); // behind the cache's back
        let mut b = [0u8; 4];
        c.read_at("index/ab", 100, &mut b).unwrap();
        assert_eq!(b, [5; 4], "served from the cache");
        std::fs::remove_file(dir.path().join("index/ab")).unwrap();
        c.read_at("index/ab", 100, &mut b).unwrap();
        assert_eq!(b, [6; 4], "a miss fetches from the store");
        c.create("data/00000000", 1024, &Metadata::new()).unwrap();
        c.write_pages("data/00000000", 0, &[1u8; 1024]).unwrap();
        assert!(
            !dir.path().join("data/00000000").exists(),
            "volumes are not cached"
        );
        assert!(c.read_at("index/ab", 600, &mut b).is_err());
    }
}
