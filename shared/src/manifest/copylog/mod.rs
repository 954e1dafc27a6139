//! The `DriveLog` copy log the data centre writes per drive after an import (error log: only failures;
//! verbose log: every blob and range), with the status codes of the Import/Export log format. The emulator
//! builds the verbose [`DriveLog`], takes the error log from it with [`DriveLog::error_log`], names both with
//! [`log_blob_name`] and writes them with [`DriveLog::to_xml`] ([`DriveLogWriter`] streams); diskprep and the
//! agent read them with [`DriveLog::parse`] to report what failed (e.g. a `Corrupted` page range) and what to
//! re-ship.
//!
//! One addition to the documented grammar: a blob written under another name (disposition `rename`) carries
//! `<ImportedBlobPath>` (after `<BlobPath>`) with the blob path it was written to.

mod read;
mod verify;
mod write;

use std::str::FromStr;

pub use verify::{verify_blob_file, verify_member, MemberCheck};
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

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
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
    /// The blob path written to when the disposition renamed the blob (`<ImportedBlobPath>`, our addition).
    pub imported_blob_path: Option<String>,
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
    /// The page ranges or blocks (empty when the blob has no list).
    pub fn range_list(&self) -> &[LogRange] {
        match &self.ranges {
            Some(LogRanges::Pages(r) | LogRanges::Blocks(r)) => r.as_slice(),
            None => &[],
        }
    }

    /// The ranges whose status is not `Completed` (or `Committed`).
    pub fn failed_ranges(&self) -> impl Iterator<Item = &LogRange> {
        self.range_list()
            .iter()
            .filter(|r| !matches!(r.status, RangeStatus::Completed | RangeStatus::Committed))
    }

    /// Whether the blob and every one of its ranges completed (what an error log leaves out).
    pub fn is_clean(&self) -> bool {
        self.status == BlobStatus::Completed && self.failed_ranges().next().is_none()
    }
}

/// The two logs the data centre writes per drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogKind {
    /// Always written: the drive status and the blobs that did not entirely complete.
    Error,
    /// Written when the job asks for it (`EnableVerboseLog`): every blob and range.
    Verbose,
}

impl LogKind {
    /// The `<logtype>` of the log's blob name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogKind::Error => "error",
            LogKind::Verbose => "verbose",
        }
    }
}

/// The name of a log blob under the job's `ImportExportStatesPath` (after its optional directory):
/// `waies/<job>_<driveid>_<stamp>_<logtype>.xml`, `stamp` being the copy's UTC time as `yyyymmdd-hhmmss`.
pub fn log_blob_name(job: &str, drive_id: &str, stamp: &str, kind: LogKind) -> String {
    format!("waies/{job}_{drive_id}_{stamp}_{}.xml", kind.as_str())
}

/// A whole copy log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveLog {
    pub version: String,
    pub drive_id: String,
    pub blobs: Vec<LogBlob>,
    pub status: DriveStatus,
}

impl DriveLog {
    /// An empty log of drive `drive_id` in the written version, with `status` until blobs are added.
    pub fn new(drive_id: &str, status: DriveStatus) -> DriveLog {
        DriveLog {
            version: LOG_VERSION.into(),
            drive_id: drive_id.into(),
            blobs: Vec::new(),
            status,
        }
    }

    /// The error log of this (verbose) log: the same drive and status, only the blobs that are not clean.
    pub fn error_log(&self) -> DriveLog {
        DriveLog {
            blobs: self.blobs.iter().filter(|b| !b.is_clean()).cloned().collect(),
            ..self.clone()
        }
    }
}
