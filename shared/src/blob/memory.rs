//! An in-memory [`BlobStore`] for tests: objects are sparse maps of 512-byte pages.

use super::{
    check_aligned, check_blob_len, check_metadata, check_name, merge_ranges, BlobError, BlobInfo, BlobStore,
    Metadata, PAGE_SIZE,
};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Mutex;

#[derive(Debug, Default)]
struct Object {
    len: u64,
    metadata: Metadata,
    /// Written pages by page index.
    pages: BTreeMap<u64, Box<[u8; PAGE_SIZE as usize]>>,
}

/// A container held in memory.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<Option<BTreeMap<String, Object>>>,
}

impl Default for MemoryStore {
    /// A store whose container already exists.
    fn default() -> Self {
        MemoryStore {
            state: Mutex::new(Some(BTreeMap::new())),
        }
    }
}

impl MemoryStore {
    /// A store whose container has not been created yet.
    pub fn without_container() -> Self {
        MemoryStore {
            state: Mutex::new(None),
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, Object>) -> Result<T, BlobError>,
    ) -> Result<T, BlobError> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some(objects) => f(objects),
            None => Err(BlobError::ContainerNotFound {
                store: self.describe(),
            }),
        }
    }

    fn with_object<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Object) -> Result<T, BlobError>,
    ) -> Result<T, BlobError> {
        check_name(name)?;
        let store = self.describe();
        self.with(|objects| match objects.get_mut(name) {
            Some(o) => f(o),
            None => Err(BlobError::NotFound {
                store,
                name: name.to_owned(),
            }),
        })
    }

    fn check_range(&self, name: &str, o: &Object, offset: u64, len: u64) -> Result<(), BlobError> {
        let end = offset.saturating_add(len);
        if end > o.len {
            return Err(BlobError::OutOfRange {
                store: self.describe(),
                name: name.to_owned(),
                offset,
                end,
                len: o.len,
            });
        }
        Ok(())
    }
}

impl BlobStore for MemoryStore {
    fn describe(&self) -> String {
        "memory store".to_owned()
    }

    fn create_container(&self) -> Result<(), BlobError> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        guard.get_or_insert_with(BTreeMap::new);
        Ok(())
    }

    fn delete_container(&self) -> Result<(), BlobError> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match guard.take() {
            Some(_) => Ok(()),
            None => Err(BlobError::ContainerNotFound {
                store: self.describe(),
            }),
        }
    }

    fn create(&self, name: &str, len: u64, metadata: &Metadata) -> Result<(), BlobError> {
        check_name(name)?;
        check_blob_len(len)?;
        check_metadata(metadata)?;
        self.with(|objects| {
            objects.insert(
                name.to_owned(),
                Object {
                    len,
                    metadata: metadata.clone(),
                    pages: BTreeMap::new(),
                },
            );
            Ok(())
        })
    }

    fn write_pages(&self, name: &str, offset: u64, data: &[u8]) -> Result<(), BlobError> {
        check_aligned("write offset", offset)?;
        check_aligned("write length", data.len() as u64)?;
        self.with_object(name, |o| {
            self.check_range(name, o, offset, data.len() as u64)?;
            for (i, page) in data.chunks_exact(PAGE_SIZE as usize).enumerate() {
                let mut buf = Box::new([0u8; PAGE_SIZE as usize]);
                buf.copy_from_slice(page);
                o.pages.insert(offset / PAGE_SIZE + i as u64, buf);
            }
            Ok(())
        })
    }

    fn clear_pages(&self, name: &str, offset: u64, len: u64) -> Result<(), BlobError> {
        check_aligned("clear offset", offset)?;
        check_aligned("clear length", len)?;
        self.with_object(name, |o| {
            self.check_range(name, o, offset, len)?;
            let first = offset / PAGE_SIZE;
            let keys: Vec<u64> = o
                .pages
                .range(first..first + len / PAGE_SIZE)
                .map(|(k, _)| *k)
                .collect();
            for k in keys {
                o.pages.remove(&k);
            }
            Ok(())
        })
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), BlobError> {
        self.with_object(name, |o| {
            self.check_range(name, o, offset, buf.len() as u64)?;
            buf.fill(0);
            let end = offset + buf.len() as u64;
            for (&index, page) in o.pages.range(offset / PAGE_SIZE..end.div_ceil(PAGE_SIZE)) {
                let page_start = index * PAGE_SIZE;
                let from = offset.max(page_start);
                let to = end.min(page_start + PAGE_SIZE);
                buf[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&page[(from - page_start) as usize..(to - page_start) as usize]);
            }
            Ok(())
        })
    }

    fn page_ranges(&self, name: &str) -> Result<Vec<Range<u64>>, BlobError> {
        self.with_object(name, |o| {
            Ok(merge_ranges(
                o.pages
                    .keys()
                    .map(|&i| i * PAGE_SIZE..(i + 1) * PAGE_SIZE)
                    .collect(),
            ))
        })
    }

    fn resize(&self, name: &str, len: u64) -> Result<(), BlobError> {
        check_blob_len(len)?;
        self.with_object(name, |o| {
            o.len = len;
            o.pages.retain(|&i, _| i * PAGE_SIZE < len);
            Ok(())
        })
    }

    fn properties(&self, name: &str) -> Result<BlobInfo, BlobError> {
        self.with_object(name, |o| {
            Ok(BlobInfo {
                name: name.to_owned(),
                len: o.len,
                metadata: o.metadata.clone(),
            })
        })
    }

    fn set_metadata(&self, name: &str, metadata: &Metadata) -> Result<(), BlobError> {
        check_metadata(metadata)?;
        self.with_object(name, |o| {
            o.metadata = metadata.clone();
            Ok(())
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError> {
        self.with(|objects| {
            Ok(objects
                .iter()
                .filter(|(n, _)| n.starts_with(prefix))
                .map(|(n, o)| BlobInfo {
                    name: n.clone(),
                    len: o.len,
                    metadata: o.metadata.clone(),
                })
                .collect())
        })
    }

    fn delete(&self, name: &str) -> Result<(), BlobError> {
        check_name(name)?;
        let store = self.describe();
        self.with(|objects| match objects.remove(name) {
            Some(_) => Ok(()),
            None => Err(BlobError::NotFound {
                store,
                name: name.to_owned(),
            }),
        })
    }
}
