//! The staging store: where `blobs/` of a job lives.
//!
//! [`open_staging_store`] is the one place that chooses the implementation: the shared
//! [`LocalStore`] (a directory is the container, objects are sparse files at their relative path, made durable
//! before a write returns, metadata in sidecars under the reserved `.seedship/` folder that listing skips).

use seedship_shared::blob::{BlobStore, LocalStore};
use std::path::Path;
use std::sync::Arc;

/// The store of a staging job folder's `blobs/` directory.
pub fn open_staging_store(dir: &Path) -> Arc<dyn BlobStore> {
    Arc::new(LocalStore::new(dir))
}
