//! The WAImportExport drive manifest (`DriveManifest.xml`) and the data centre's copy log (`DriveLog`).
//!
//! A manifest lists, for one drive, the blobs whose data is on that drive: blob path, file path on the
//! drive, blob length, import disposition and the page ranges present on the drive, each 512-aligned, at most
//! 4 MiB and carrying the uppercase-hex MD5 of its bytes (a block blob: its block list, every block at most
//! 4 MiB with its Id and MD5) (docs/drive-manifest.md has the decisions: version
//! string, file paths, part files of blobs split across drives). [`ranges`] builds those range lists from a
//! byte stream, hashing ranges in parallel; [`ManifestWriter`] streams the XML out blob by blob; [`read_manifest`]
//! streams it back in, validating every value, and [`DriveManifest::parse`] collects it. [`copylog`] is the
//! `DriveLog` format the service writes after importing a drive. Parsers never panic, cap every text and tag at
//! [`MAX_TOKEN_LEN`], and report errors with the byte offset and the blob concerned.

pub mod copylog;
mod model;
pub mod ranges;
mod read;
mod write;
pub(crate) mod xml;

pub use model::{
    BlobList, BlobListHeader, BlobPart, Block, Credential, DriveFilePath, DriveHeader, DriveManifest,
    FileRef, ImportDisposition, ManifestBlob, Md5Hash, PageRange, RangeList, CLIENT_CREATOR, MANIFEST_FILE,
    MANIFEST_VERSION, MAX_RANGE_LEN, PAGE_SIZE,
};
pub use ranges::manifest_hash;
pub use read::{read_manifest, ManifestItem};
pub use write::ManifestWriter;
pub use xml::MAX_TOKEN_LEN;
/// Errors of the manifest and copy-log readers and writers.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("I/O error on the {doc}: {source}")]
    Io {
        doc: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{doc} is not well-formed XML at byte {at}: {detail}")]
    Xml {
        doc: &'static str,
        at: u64,
        detail: String,
    },
    #[error("{doc} structure is wrong at byte {at}: {detail}")]
    Structure {
        doc: &'static str,
        at: u64,
        detail: String,
    },
    #[error("{doc} value {field} = {value:?} at byte {at} is invalid: {reason}")]
    Value {
        doc: &'static str,
        at: u64,
        field: String,
        value: String,
        reason: String,
    },
    #[error("{doc} entry for blob {blob:?} is invalid: {reason}")]
    Blob {
        doc: &'static str,
        blob: String,
        reason: String,
    },
}

pub(crate) const DOC_MANIFEST: &str = "drive manifest";
pub(crate) const DOC_LOG: &str = "drive copy log";
