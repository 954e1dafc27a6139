//! Page-blob-shaped object storage.
//!
//! Everything seedship stores (the staging location, the import container, the vault) is a set of named
//! objects shaped like Azure page blobs: each has a length that is a multiple of 512 bytes, is written in
//! whole 512-byte pages, reads zeros where nothing was written, and can report which page ranges hold data.
//! [`BlobStore`] is that contract; implementations are the local directory (staging), Azure page blobs over
//! HTTP, and memory (tests). Retrying is a wrapper around any store, not a flag inside one.
//!
//! Object names are relative paths with `/` separators (`data/0000`, `snapshots/ab12...`), at most 1024
//! characters, without empty, `.` or `..` segments.

use std::collections::BTreeMap;
use std::ops::Range;

pub mod azure;
mod digest;
pub mod leaves;
pub mod local;
pub mod memory;
pub mod meter;
pub mod retry;

pub use azure::{AzureOptions, AzureStore, Credential};
pub use digest::blake3_of;
pub use local::LocalStore;
pub use memory::MemoryStore;
pub use meter::{Meter, MeterStats, MeteredStore, RateSchedule};
pub use retry::{RetryPolicy, RetryStore};

/// Page size: every offset and length written to a page blob is a multiple of this.
pub const PAGE_SIZE: u64 = 512;
/// The largest body of one Put Page request.
pub const MAX_PUT_PAGE: u64 = 4 * 1024 * 1024;
/// The largest page blob Azure accepts.
pub const MAX_PAGE_BLOB: u64 = 8 * 1024 * 1024 * 1024 * 1024;
/// The longest blob name Azure accepts.
pub const MAX_NAME_LEN: usize = 1024;

/// User metadata of an object (`x-ms-meta-*` on Azure). Keys are C#-identifier-like, compared
/// case-insensitively by Azure; seedship only uses lowercase keys.
pub type Metadata = BTreeMap<String, String>;

/// What a store knows about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub name: String,
    /// Length in bytes, a multiple of [`PAGE_SIZE`].
    pub len: u64,
    pub metadata: Metadata,
}

/// [`BlobStore::update_pages`] as single calls: every clear, then every write, in order.
pub fn update_pages_one_by_one<S: BlobStore + ?Sized>(
    store: &S,
    name: &str,
    clears: &[Range<u64>],
    writes: &[(u64, Vec<u8>)],
) -> Result<(), BlobError> {
    for r in clears {
        store.clear_pages(name, r.start, r.end - r.start)?;
    }
    for (offset, data) in writes {
        store.write_pages(name, *offset, data)?;
    }
    Ok(())
}

/// [`BlobStore::visit`] by [`BlobStore::read_at`] into `buf`.
pub fn visit_by_reading<S: BlobStore + ?Sized>(
    store: &S,
    name: &str,
    offset: u64,
    len: usize,
    buf: &mut Vec<u8>,
    f: &mut dyn FnMut(&[u8]),
) -> Result<(), BlobError> {
    buf.resize(len, 0);
    store.read_at(name, offset, buf)?;
    f(buf);
    Ok(())
}

/// A container of page-blob-shaped objects. All methods are blocking and may be called from several
/// threads at once; an implementation that talks to a server keeps several requests in flight inside one
/// call where the call is large enough.
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// A short description for messages: "local directory /srv/staging/job1/blobs".
    fn describe(&self) -> String;
    /// Creates the container (directory) if it does not exist yet.
    fn create_container(&self) -> Result<(), BlobError>;
    /// Deletes the container and everything in it.
    fn delete_container(&self) -> Result<(), BlobError>;
    /// Creates, or replaces, an all-zero object of `len` bytes (a multiple of 512) with `metadata`.
    fn create(&self, name: &str, len: u64, metadata: &Metadata) -> Result<(), BlobError>;
    /// Writes `data` at `offset`. Both are multiples of 512 and the range lies inside the object; `data` may
    /// be longer than one Put Page (the store splits it). The data is durable when this returns.
    fn write_pages(&self, name: &str, offset: u64, data: &[u8]) -> Result<(), BlobError>;
    /// Sets `len` bytes at `offset` back to zeros (and frees them where the store can). Aligned like writes.
    fn clear_pages(&self, name: &str, offset: u64, len: u64) -> Result<(), BlobError>;
    /// Clears every range of `clears` ([`BlobStore::clear_pages`]), then writes every `(offset, page data)` of
    /// `writes` ([`BlobStore::write_pages`]); all of it is durable when this returns. The default does one call
    /// each; a local store makes the whole batch durable with one sync instead of one per call (prune clears
    /// thousands of small ranges). Aligned like writes.
    fn update_pages(
        &self,
        name: &str,
        clears: &[Range<u64>],
        writes: &[(u64, Vec<u8>)],
    ) -> Result<(), BlobError> {
        update_pages_one_by_one(self, name, clears, writes)
    }
    /// Reads exactly `buf.len()` bytes at `offset` (no alignment needed). Unwritten pages read as zeros;
    /// a range past the object's end is an error.
    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), BlobError>;
    /// Hands bytes `offset..offset + len` of object `name` to `f`, as [`BlobStore::read_at`] reads them. A
    /// store that can map the object hands over its own pages (no copy: hashing a staged volume again costs
    /// as much in copying from the page cache as in BLAKE3); the default reads into `buf`. Only for a caller
    /// that holds the writer lock: a mapped file that another process truncates meanwhile faults (SIGBUS)
    /// where a read would fail with an error.
    fn visit(
        &self,
        name: &str,
        offset: u64,
        len: usize,
        buf: &mut Vec<u8>,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<(), BlobError> {
        visit_by_reading(self, name, offset, len, buf, f)
    }
    /// The ranges that hold written pages, sorted, merged and non-overlapping. A store may report zero
    /// pages that were written explicitly; it never omits a page that holds non-zero data.
    fn page_ranges(&self, name: &str) -> Result<Vec<Range<u64>>, BlobError>;
    /// Changes the object's length (a multiple of 512); growing adds zeros, shrinking drops the tail.
    fn resize(&self, name: &str, len: u64) -> Result<(), BlobError>;
    /// Length and metadata of one object.
    fn properties(&self, name: &str) -> Result<BlobInfo, BlobError>;
    /// Replaces the object's metadata.
    fn set_metadata(&self, name: &str, metadata: &Metadata) -> Result<(), BlobError>;
    /// Every object whose name starts with `prefix`, sorted by name (all result pages followed).
    fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError>;
    /// Deletes one object.
    fn delete(&self, name: &str) -> Result<(), BlobError>;
    /// Block blobs (the data centre's import of WAImportExport BlockBlob entries): uploads `data` as the
    /// uncommitted block `id` (Base64) of blob `name`, with its MD5 for the service to check (Put Block).
    /// Only Azure has block blobs; the default refuses, naming the store.
    fn put_block(&self, name: &str, id: &str, data: &[u8]) -> Result<(), BlobError> {
        let _ = (id, data);
        Err(no_block_blobs(self.describe(), "Put Block", name))
    }
    /// Commits the uploaded blocks `ids`, in order, as block blob `name`, creating or replacing it (Put Block
    /// List; no ids make an empty blob). The default refuses, naming the store.
    fn put_block_list(&self, name: &str, ids: &[String]) -> Result<(), BlobError> {
        let _ = ids;
        Err(no_block_blobs(self.describe(), "Put Block List", name))
    }
}

/// The refusal of a store without block blobs.
fn no_block_blobs(store: String, operation: &'static str, name: &str) -> BlobError {
    BlobError::Unsupported {
        store,
        operation,
        name: name.to_owned(),
        reason: "this store holds page-blob-shaped objects only; block blobs need Azure Blob storage",
    }
}

/// Errors of the blob stores. Each names the store and the object.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{store}: object {name:?} does not exist")]
    NotFound { store: String, name: String },
    #[error("{store}: the container does not exist (create it first, or check the container name)")]
    ContainerNotFound { store: String },
    #[error("{store}: object {name:?} already exists")]
    AlreadyExists { store: String, name: String },
    #[error("{what} {value} is not a multiple of 512 bytes: page blobs are written in whole 512-byte pages")]
    Unaligned { what: &'static str, value: u64 },
    #[error("{what} {value} exceeds the limit of {limit} bytes ({limit_name})")]
    OverLimit {
        what: &'static str,
        value: u64,
        limit: u64,
        limit_name: &'static str,
    },
    #[error("{store}: range {offset}..{end} of object {name:?} lies past its end ({len} bytes)")]
    OutOfRange {
        store: String,
        name: String,
        offset: u64,
        end: u64,
        len: u64,
    },
    #[error("invalid object name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("{store}: {operation} {name:?} failed with HTTP {status}{}: {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Http {
        store: String,
        operation: &'static str,
        name: String,
        status: u16,
        code: Option<String>,
        message: String,
    },
    #[error("{store}: {operation} {name:?} failed: {message}")]
    Transport {
        store: String,
        operation: &'static str,
        name: String,
        message: String,
    },
    #[error("invalid metadata key {key:?}: {reason}")]
    InvalidMetadata { key: String, reason: &'static str },
    #[error("{store}: copy into {name:?} ended with status {status}: {description}")]
    CopyFailed {
        store: String,
        name: String,
        status: String,
        description: String,
    },
    #[error("{store}: {operation} {name:?}: the server's answer is malformed: {message}")]
    BadResponse {
        store: String,
        operation: &'static str,
        name: String,
        message: String,
    },
    /// No bearer token for the request: the Entra ID sign-in failed (the message says why and what to do).
    #[error("{store}: {operation} {name:?}: signing in for a storage token failed: {source}")]
    SignIn {
        store: String,
        operation: &'static str,
        name: String,
        #[source]
        source: Box<crate::entra::EntraError>,
    },
    #[error("{store}: {operation} {name:?}: {reason}")]
    Unsupported {
        store: String,
        operation: &'static str,
        name: String,
        reason: &'static str,
    },
    #[error("invalid store configuration: {what}: {message}")]
    InvalidConfig { what: &'static str, message: String },
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BlobError {
    /// Timeouts, connection errors and server errors (5xx, 408, 429) may succeed when tried again;
    /// everything else (4xx, alignment, limits, missing objects, local I/O) is permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            BlobError::Transport { .. } => true,
            BlobError::SignIn { source, .. } => source.is_retryable(),
            BlobError::Http { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            _ => false,
        }
    }

    /// The HTTP status of a service error, if this is one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            BlobError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Checks that `value` is a multiple of 512.
pub fn check_aligned(what: &'static str, value: u64) -> Result<(), BlobError> {
    if value.is_multiple_of(PAGE_SIZE) {
        Ok(())
    } else {
        Err(BlobError::Unaligned { what, value })
    }
}

/// Checks an object length: aligned and at most 8 TiB.
pub fn check_blob_len(len: u64) -> Result<(), BlobError> {
    check_aligned("object length", len)?;
    if len > MAX_PAGE_BLOB {
        return Err(BlobError::OverLimit {
            what: "object length",
            value: len,
            limit: MAX_PAGE_BLOB,
            limit_name: "8 TiB, the largest page blob",
        });
    }
    Ok(())
}

/// Checks an object name against the rules in the module documentation.
pub fn check_name(name: &str) -> Result<(), BlobError> {
    let bad = |reason| {
        Err(BlobError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("it is longer than 1024 characters");
    }
    if name.starts_with('/') || name.ends_with('/') {
        return bad("it starts or ends with '/'");
    }
    if name.contains('\\') || name.contains('\0') {
        return bad("it contains '\\' or a NUL character");
    }
    if name.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return bad("it has an empty, '.' or '..' path segment");
    }
    Ok(())
}

/// Checks metadata against Azure's rules, so every store accepts the same metadata: keys are identifiers
/// (ASCII letter or `_` first, then letters, digits, `_`), values are printable ASCII without leading or
/// trailing spaces (they travel as HTTP headers), at most 8 KiB in all.
pub fn check_metadata(metadata: &Metadata) -> Result<(), BlobError> {
    let bad = |key: &str, reason| {
        Err(BlobError::InvalidMetadata {
            key: key.to_owned(),
            reason,
        })
    };
    let mut total = 0;
    for (key, value) in metadata {
        let mut chars = key.chars();
        if !chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return bad(
                key,
                "keys start with a letter or '_' and hold only letters, digits and '_'",
            );
        }
        if value.bytes().any(|b| !(0x20..0x7f).contains(&b)) || value.trim() != value {
            return bad(
                key,
                "values are printable ASCII without leading or trailing spaces",
            );
        }
        total += key.len() + value.len();
    }
    if total > 8192 {
        return bad("", "metadata holds more than 8 KiB (keys and values together)");
    }
    Ok(())
}

/// Merges sorted or unsorted, possibly overlapping or adjacent ranges into sorted disjoint ones.
pub fn merge_ranges(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["config", "data/0000", "a/b/c.d"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "/a", "a/", "a//b", "a/../b", "./a", "a\\b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_name_the_limit() {
        let e = check_blob_len(MAX_PAGE_BLOB + 512).unwrap_err().to_string();
        assert!(e.contains("8 TiB"), "{e}");
        let e = check_aligned("offset", 100).unwrap_err().to_string();
        assert!(e.contains("offset 100") && e.contains("512"), "{e}");
    }

    #[test]
    fn metadata_rules() {
        let m = |k: &str, v: &str| Metadata::from([(k.to_owned(), v.to_owned())]);
        check_metadata(&m("logical_len", "123 x=y")).unwrap();
        check_metadata(&m("_a1", "")).unwrap();
        for (k, v) in [
            ("1a", "x"),
            ("a-b", "x"),
            ("", "x"),
            ("a", "é"),
            ("a", " x"),
            ("a", "x\n"),
        ] {
            assert!(check_metadata(&m(k, v)).is_err(), "{k:?}={v:?}");
        }
    }

    #[test]
    fn merging() {
        assert_eq!(
            merge_ranges(vec![1024..1536, 0..512, 512..1024, 4096..8192, 5000..6000]),
            vec![0..1536, 4096..8192]
        );
    }
}
