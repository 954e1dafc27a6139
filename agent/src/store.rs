//! The staging store: where `blobs/` of a job lives.
//!
//! [`open_staging_store`] is the one place that chooses the implementation. Until the shared
//! `seedship_shared::blob::LocalStore` is merged, it returns the small private [`DirStore`] below (same
//! semantics: a directory is the container, objects are files at their relative path, sparse, fsync'ed before
//! `write_pages` returns, metadata in a sidecar `.<name>.meta.json` that `list` skips). At merge time this
//! module becomes `Arc::new(LocalStore::new(dir))`.

use seedship_shared::blob::{
    check_aligned, check_blob_len, check_name, merge_ranges, BlobError, BlobInfo, BlobStore, Metadata,
    PAGE_SIZE,
};
use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The store of a staging job folder's `blobs/` directory.
pub fn open_staging_store(dir: &Path) -> Arc<dyn BlobStore> {
    Arc::new(DirStore {
        root: dir.to_path_buf(),
    })
}

/// A directory of page-blob-shaped files (private stand-in for the shared LocalStore).
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    fn path(&self, name: &str) -> Result<PathBuf, BlobError> {
        check_name(name)?;
        Ok(self.root.join(name))
    }
    fn meta_path(&self, name: &str) -> PathBuf {
        let p = self.root.join(name);
        let file = p
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        p.with_file_name(format!(".{file}.meta.json"))
    }
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
        move |source| BlobError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    fn open(&self, name: &str, write: bool) -> Result<(File, PathBuf), BlobError> {
        let p = self.path(name)?;
        match OpenOptions::new().read(true).write(write).open(&p) {
            Ok(f) => Ok((f, p)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BlobError::NotFound {
                store: self.describe(),
                name: name.to_string(),
            }),
            Err(e) => Err(BlobError::Io { path: p, source: e }),
        }
    }
    fn check_range(&self, name: &str, offset: u64, n: u64, len: u64) -> Result<(), BlobError> {
        if offset + n > len {
            return Err(BlobError::OutOfRange {
                store: self.describe(),
                name: name.to_string(),
                offset,
                end: offset + n,
                len,
            });
        }
        Ok(())
    }
    fn sync_dir(p: &Path) -> Result<(), BlobError> {
        let d = p.parent().unwrap_or(p);
        File::open(d).and_then(|f| f.sync_all()).map_err(Self::io(d))
    }
}

impl BlobStore for DirStore {
    fn describe(&self) -> String {
        format!("local directory {}", self.root.display())
    }
    fn create_container(&self) -> Result<(), BlobError> {
        std::fs::create_dir_all(&self.root).map_err(Self::io(&self.root))
    }
    fn delete_container(&self) -> Result<(), BlobError> {
        std::fs::remove_dir_all(&self.root).map_err(Self::io(&self.root))
    }
    fn create(&self, name: &str, len: u64, metadata: &Metadata) -> Result<(), BlobError> {
        check_blob_len(len)?;
        let p = self.path(name)?;
        if !self.root.is_dir() {
            return Err(BlobError::ContainerNotFound {
                store: self.describe(),
            });
        }
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(Self::io(parent))?;
        }
        let f = File::create(&p).map_err(Self::io(&p))?;
        f.set_len(len).map_err(Self::io(&p))?;
        f.sync_all().map_err(Self::io(&p))?;
        self.set_metadata(name, metadata)?;
        Self::sync_dir(&p)
    }
    fn write_pages(&self, name: &str, offset: u64, data: &[u8]) -> Result<(), BlobError> {
        check_aligned("offset", offset)?;
        check_aligned("length", data.len() as u64)?;
        let (f, p) = self.open(name, true)?;
        let len = f.metadata().map_err(Self::io(&p))?.len();
        self.check_range(name, offset, data.len() as u64, len)?;
        f.write_all_at(data, offset).map_err(Self::io(&p))?;
        f.sync_data().map_err(Self::io(&p))
    }
    fn clear_pages(&self, name: &str, offset: u64, len: u64) -> Result<(), BlobError> {
        check_aligned("offset", offset)?;
        check_aligned("length", len)?;
        let (f, p) = self.open(name, true)?;
        let flen = f.metadata().map_err(Self::io(&p))?.len();
        self.check_range(name, offset, len, flen)?;
        // SAFETY: fallocate on an open descriptor with in-range arguments.
        let rc = unsafe {
            libc::fallocate(
                f.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as i64,
                len as i64,
            )
        };
        if rc != 0 {
            // no hole punching here: write zeros instead
            let zeros = vec![0u8; len.min(4 << 20) as usize];
            let mut pos = offset;
            while pos < offset + len {
                let n = (offset + len - pos).min(zeros.len() as u64) as usize;
                f.write_all_at(&zeros[..n], pos).map_err(Self::io(&p))?;
                pos += n as u64;
            }
        }
        f.sync_data().map_err(Self::io(&p))
    }
    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), BlobError> {
        let (f, p) = self.open(name, false)?;
        let len = f.metadata().map_err(Self::io(&p))?.len();
        self.check_range(name, offset, buf.len() as u64, len)?;
        f.read_exact_at(buf, offset).map_err(Self::io(&p))
    }
    fn page_ranges(&self, name: &str) -> Result<Vec<Range<u64>>, BlobError> {
        let (f, p) = self.open(name, false)?;
        let len = f.metadata().map_err(Self::io(&p))?.len();
        let fd = f.as_raw_fd();
        let mut out = vec![];
        let mut pos: i64 = 0;
        while (pos as u64) < len {
            // SAFETY: lseek on an open descriptor.
            let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
            if data < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                    break;
                }
                let whole: Vec<Range<u64>> = if len > 0 {
                    std::iter::once(0..len).collect()
                } else {
                    Vec::new()
                };
                return Ok(whole);
            }
            // SAFETY: as above.
            let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
            let hole = if hole < 0 { len as i64 } else { hole };
            let start = (data as u64 / PAGE_SIZE) * PAGE_SIZE;
            let end = (hole as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE;
            out.push(start..end.min(len));
            pos = hole;
        }
        Ok(merge_ranges(out))
    }
    fn resize(&self, name: &str, len: u64) -> Result<(), BlobError> {
        check_blob_len(len)?;
        let (f, p) = self.open(name, true)?;
        f.set_len(len).map_err(Self::io(&p))?;
        f.sync_all().map_err(Self::io(&p))
    }
    fn properties(&self, name: &str) -> Result<BlobInfo, BlobError> {
        let (f, p) = self.open(name, false)?;
        let len = f.metadata().map_err(Self::io(&p))?.len();
        let mp = self.meta_path(name);
        let metadata = match std::fs::read(&mp) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
            Err(_) => Metadata::new(),
        };
        Ok(BlobInfo {
            name: name.to_string(),
            len,
            metadata,
        })
    }
    fn set_metadata(&self, name: &str, metadata: &Metadata) -> Result<(), BlobError> {
        let mp = self.meta_path(name);
        if metadata.is_empty() {
            return match std::fs::remove_file(&mp) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(BlobError::Io { path: mp, source: e })
                }
                _ => Ok(()),
            };
        }
        std::fs::write(&mp, serde_json::to_vec(metadata).expect("serializable")).map_err(Self::io(&mp))
    }
    fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError> {
        if !self.root.is_dir() {
            return Err(BlobError::ContainerNotFound {
                store: self.describe(),
            });
        }
        let mut names = vec![];
        let mut stack = vec![(self.root.clone(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            for e in std::fs::read_dir(&dir).map_err(Self::io(&dir))? {
                let e = e.map_err(Self::io(&dir))?;
                let fname = e.file_name().to_string_lossy().into_owned();
                if fname.starts_with('.') {
                    continue;
                }
                let name = if rel.is_empty() {
                    fname
                } else {
                    format!("{rel}/{fname}")
                };
                let ft = e.file_type().map_err(Self::io(&e.path()))?;
                if ft.is_dir() {
                    if prefix.starts_with(&format!("{name}/"))
                        || name.starts_with(prefix)
                        || prefix.is_empty()
                    {
                        stack.push((e.path(), name));
                    }
                } else if ft.is_file() && name.starts_with(prefix) {
                    names.push(name);
                }
            }
        }
        names.sort();
        names.iter().map(|n| self.properties(n)).collect()
    }
    fn delete(&self, name: &str) -> Result<(), BlobError> {
        let p = self.path(name)?;
        std::fs::remove_file(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => BlobError::NotFound {
                store: self.describe(),
                name: name.to_string(),
            },
            _ => BlobError::Io {
                path: p.clone(),
                source: e,
            },
        })?;
        let _ = std::fs::remove_file(self.meta_path(name));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_basics() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_staging_store(&dir.path().join("blobs"));
        s.create_container().unwrap();
        let mut md = Metadata::new();
        md.insert("k".into(), "v".into());
        s.create("data/0001", 8192, &md).unwrap();
        s.write_pages("data/0001", 4096, &[7u8; 512]).unwrap();
        let mut b = [1u8; 1024];
        s.read_at("data/0001", 3584, &mut b).unwrap();
        assert!(b[..512].iter().all(|&x| x == 0) && b[512..].iter().all(|&x| x == 7));
        let ranges = s.page_ranges("data/0001").unwrap();
        assert!(ranges.iter().any(|r| r.contains(&4096)), "{ranges:?}");
        s.create("config", 512, &Metadata::new()).unwrap();
        let l = s.list("").unwrap();
        assert_eq!(
            l.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["config", "data/0001"]
        );
        assert_eq!(l[1].metadata, md);
        assert_eq!(s.list("data/").unwrap().len(), 1);
        assert!(s.write_pages("data/0001", 8192, &[0u8; 512]).is_err());
        assert!(s.write_pages("data/0001", 100, &[0u8; 512]).is_err());
        s.resize("data/0001", 512).unwrap();
        assert_eq!(s.properties("data/0001").unwrap().len, 512);
        s.delete("config").unwrap();
        assert!(matches!(
            s.read_at("config", 0, &mut b),
            Err(BlobError::NotFound { .. })
        ));
    }
}
