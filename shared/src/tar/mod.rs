//! The drive payload's POSIX pax tar format (POSIX.1-2001: ustar headers plus pax extended headers).
//!
//! [`TarWriter`] streams entries into any `Write` (a LUKS volume, a file, a counting sink): each entry is a
//! ustar header, preceded by a pax `x` header when the path is longer than 100 bytes or not ASCII, the size does
//! not fit the 11 octal digits of ustar (8 GiB and more) or the mtime is out of ustar range; the content is
//! streamed from a `Read` or written by the caller through a `Write` handle bounded to the declared size, and
//! padded to 512 bytes. [`entry_tar_size`] is the pure function that says how many bytes an entry will take, so
//! capacity planning and the writer can never disagree (they share the header encoder).
//!
//! [`TarReader`] iterates the entries of a stream written by us or by GNU tar (`--format=pax`, `gnu`, `ustar`):
//! ustar and pax `x`/`g` headers, GNU `L`/`K` long names, checksum verification, octal and base-256 numbers.
//! It never trusts a header for allocation: pax and long-name payloads are capped at [`MAX_META_LEN`].
//! Errors name the entry and the byte offset of its header.

mod header;
mod reader;
mod writer;

pub use header::{
    encode_header, entry_tar_size, EntryHeader, BLOCK, END_OF_ARCHIVE_LEN, MAX_META_LEN, USTAR_MAX_SIZE,
};
pub use reader::{EntryKind, TarEntry, TarEntryInfo, TarReader};
pub use writer::{EntryWriter, TarWriter};

/// Errors of the tar writer and reader. Each names the entry (when known) and the archive offset.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("tar I/O error at archive offset {offset} ({entry}): {source}")]
    Io {
        entry: String,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("tar entry path {path:?} is not usable: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("tar entry {path:?}: {written} bytes of content supplied, header declared {declared}")]
    SizeMismatch {
        path: String,
        declared: u64,
        written: u64,
    },
    #[error("tar header at offset {offset} ({entry}) has a bad checksum (stored {stored}, computed {computed}); the archive is corrupt or not a tar stream")]
    BadChecksum {
        entry: String,
        offset: u64,
        stored: u64,
        computed: u64,
    },
    #[error("tar header at offset {offset} ({entry}): field {field} is malformed")]
    BadField {
        entry: String,
        offset: u64,
        field: &'static str,
    },
    #[error("tar header at offset {offset} ({entry}): bad pax record: {reason}")]
    BadPax {
        entry: String,
        offset: u64,
        reason: String,
    },
    #[error("tar header at offset {offset} ({entry}): extended header of {size} bytes exceeds the {limit}-byte limit")]
    MetaTooLarge {
        entry: String,
        offset: u64,
        size: u64,
        limit: u64,
    },
    #[error("tar stream ends early at offset {offset} inside {entry}; the archive is truncated")]
    UnexpectedEof { entry: String, offset: u64 },
}
