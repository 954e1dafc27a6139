//! The errors of preparing a drive: [`CopyError`] (writing it) and [`VerifyError`] (checking what it holds),
//! here below the copy, the read-back and the checks that all return them.

use seedship_shared::tar::TarError;

/// Why a drive's copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("reading staging blob {blob} at offset {offset}: {source}")]
    Read {
        blob: String,
        offset: u64,
        #[source]
        source: Box<seedship_shared::blob::BlobError>,
    },
    #[error("reading staged file {path} (blob {blob}) at offset {offset}: {source}")]
    Staged {
        blob: String,
        path: String,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "staging blob {blob} ({location}) does not match its BLAKE3 digest in the job descriptor; the staging data \
         is damaged. The drive was not finished (no manifest written) and its copy will start over: restore \
         the staging data (rerun the backup) and run diskprep again"
    )]
    StagedDigest { blob: String, location: String },
    #[error("writing drive {drive} at payload offset {offset}: {source} (the drive may be failing or full; the copy resumes from the last checkpoint when run again)")]
    Write {
        drive: String,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("recording progress in the journal of drive {drive}: {source}")]
    Journal {
        drive: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the journal of drive {drive} does not match the plan ({reason}); the staging data or the drive set changed since it was written")]
    JournalMismatch { drive: String, reason: String },
    #[error("cannot make tar member {member}: {reason}")]
    Member { member: String, reason: String },
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("interrupted; run the same command again to resume drive {drive} at payload offset {offset}")]
    Interrupted { drive: String, offset: u64 },
}

/// What a verification found wrong.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("drive {drive}: reading the payload back: {source}")]
    Tar {
        drive: String,
        #[source]
        source: TarError,
    },
    #[error("drive {drive}: reading member {member}: {source}")]
    Read {
        drive: String,
        member: String,
        #[source]
        source: std::io::Error,
    },
    #[error("drive {drive}: expected member {expected}, found {found}")]
    UnexpectedMember {
        drive: String,
        expected: String,
        found: String,
    },
    #[error("drive {drive}: the manifest read back does not match what was written (MD5 {found}, expected {expected})")]
    ManifestMismatch {
        drive: String,
        expected: String,
        found: String,
    },
    #[error("drive {drive}: blob {blob} bytes {start}..{end} read back differ from what was written; the drive may be failing")]
    SegmentMismatch {
        drive: String,
        blob: String,
        start: u64,
        end: u64,
    },
    #[error("drive {drive}: the journal records {recorded} segments, the plan has {planned}")]
    RecordCount {
        drive: String,
        recorded: usize,
        planned: usize,
    },
    #[error("{path}: {source}")]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Luks(#[from] seedship_shared::luks::LuksError),
    #[error("drive {drive}: its manifest is not valid: {source}")]
    Manifest {
        drive: String,
        #[source]
        source: seedship_shared::manifest::ManifestError,
    },
    #[error("drive {drive}: its manifest is {size} bytes, more than the {limit} a drive manifest can take; it was not prepared by seedship or is damaged")]
    ManifestTooLarge { drive: String, size: u64, limit: u64 },
    #[error("drive {drive}: the manifest names drive {named}; this drive was prepared for another manifest")]
    DriveIdMismatch { drive: String, named: String },
    #[error("drive {drive}: member {member} is not in the manifest")]
    Unlisted { drive: String, member: String },
    #[error("drive {drive}: {file} is in the manifest but not on the drive")]
    MissingFile { drive: String, file: String },
    #[error("drive {drive}: member {member} holds {found} bytes, the manifest implies {expected}")]
    WrongSize {
        drive: String,
        member: String,
        expected: u64,
        found: u64,
    },
    #[error("drive {drive}: blob {blob} bytes at offset {offset} do not match the manifest (MD5 of a range, or zeros between ranges)")]
    RangeMismatch {
        drive: String,
        blob: String,
        offset: u64,
    },
}
