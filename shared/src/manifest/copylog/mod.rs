//! The `DriveLog` copy log the data centre writes per drive after an import (error log: only failures;
//! verbose log: every blob and range), with the status codes of the Import/Export log format. The emulator
//! writes it with [`DriveLogWriter`]; diskprep and the agent read it with [`DriveLog::parse`] to report
//! what failed (e.g. a `Corrupted` page range) and what to re-ship.

mod read;
mod verify;
mod write;

use std::str::FromStr;

pub use verify::verify_blob_file;
pub use write::DriveLogWriter;

use super::{FileRef, ImportDisposition, Md5Hash};

/// The log version written (the one of the documented format).
pub const LOG_VERSION: &str = "2014-11-01";

macro_rules! status_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),* }

        impl $name {
            /// Every code, in the documented order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            /// The code as written in the log.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),* }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $(stringify!($variant) => Ok($name::$variant),)*
                    _ => Err(format!("unknown {} code (expected one of: {})", stringify!($name),
                        [$(stringify!($variant)),*].join(", "))),
                }
            }
        }
    };
}

status_enum!(
    /// Status of processing a whole drive.
    DriveStatus {
        Completed, CompletedWithWarnings, CompletedWithErrors, DiskNotFound, VolumeNotNtfs, DiskOperationFailed,
        BitLockerVolumeNotFound, BitLockerNotActivated, BitLockerProtectorNotFound, BitLockerKeyInvalid,
        BitLockerUnlockVolumeFailed, BitLockerFailed, ManifestNameInvalid, ManifestNameTooLong, ManifestNotFound,
        ManifestAccessDenied, ManifestCorrupted, ManifestFormatInvalid, ManifestDriveIdMismatch, ReadManifestFailed,
        BlobListFormatInvalid, BlobRequestForbidden, InternalError,
    }
);

status_enum!(
    /// Status of processing one blob.
    BlobStatus {
        Completed, CompletedWithErrors, FileNameInvalid, FileNameTooLong, FileNotFound, FileAccessDenied,
        BlobRequestFailed, BlobRequestForbidden, RenameFailed, BlobUnexpectedChange, LeasePresent, IOFailed, Failed,
    }
);

status_enum!(
    /// How the import disposition was resolved.
    DispositionStatus { Created, Renamed, Skipped, Overwritten, Cancelled }
);

status_enum!(
    /// Status of one page range or block.
    RangeStatus {
        Completed, Committed, Uncommitted, Corrupted, FileUnexpectedEnd, BlobUnexpectedEnd, BlobRequestFailed,
        IOFailed, Failed, Cancelled,
    }
);

status_enum!(
    /// Status of a blob's metadata or properties file.
    FileStatus {
        Completed, FileNameInvalid, FileNameTooLong, FileNotFound, FileAccessDenied, Corrupted, XmlReadFailed,
        XmlWriteFailed, BlobRequestFailed, IOFailed, Failed, Cancelled,
    }
);

/// One page range or block of a logged blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRange {
    pub offset: u64,
    pub length: u64,
    /// Block id (blocks only).
    pub id: Option<String>,
    pub hash: Option<Md5Hash>,
    pub status: RangeStatus,
}

/// The ranges of a logged blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRanges {
    Pages(Vec<LogRange>),
    Blocks(Vec<LogRange>),
}

/// The import disposition requested and how it was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogDisposition {
    pub requested: ImportDisposition,
    pub status: DispositionStatus,
}

/// The status of a metadata or properties file, with the files involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFileStatus {
    pub status: FileStatus,
    pub global_path: Option<FileRef>,
    pub path: Option<FileRef>,
}

/// One blob of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBlob {
    pub status: BlobStatus,
    pub blob_path: String,
    pub file_path: String,
    pub snapshot: Option<String>,
    pub length: u64,
    pub last_modified: Option<String>,
    pub disposition: Option<LogDisposition>,
    pub ranges: Option<LogRanges>,
    pub metadata: Option<LogFileStatus>,
    pub properties: Option<LogFileStatus>,
}

impl LogBlob {
    /// The ranges whose status is not `Completed` (or `Committed`).
    pub fn failed_ranges(&self) -> impl Iterator<Item = &LogRange> {
        let all = match &self.ranges {
            Some(LogRanges::Pages(r) | LogRanges::Blocks(r)) => r.as_slice(),
            None => &[],
        };
        all.iter()
            .filter(|r| !matches!(r.status, RangeStatus::Completed | RangeStatus::Committed))
    }
}

/// A whole copy log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveLog {
    pub version: String,
    pub drive_id: String,
    pub blobs: Vec<LogBlob>,
    pub status: DriveStatus,
}
