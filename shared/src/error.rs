//! Errors and the error policy.
//!
//! Policy, followed by every module of this crate:
//! - Library code returns typed errors (`thiserror` enums, one per subsystem) that carry what an operator needs
//!   to act: the path, the blob or object name, the drive id, the job name, the HTTP status and service code.
//! - Messages say what failed and, where there is one, what to do about it. They never contain secrets
//!   (passphrases, recovery keys, account keys, SAS signatures).
//! - A subsystem error that may succeed when tried again says so through `is_retryable()`; only wrappers
//!   (such as the blob store's retry wrapper) decide to retry. HTTP 4xx is permanent; timeouts, connection
//!   errors and 5xx are transient.
//! - Binaries add context with `anyhow` and map errors to their exit codes; nothing in this crate exits.
//! - A failure on one file of a backup is logged and counted by the caller, not fatal.

use crate::blob::BlobError;
use crate::journal::JournalError;
use crate::manifest::ManifestError;
use crate::tar::TarError;

/// The crate-wide error: the union of the subsystem errors, for callers that cross subsystems.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Tar(#[from] TarError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the same operation may succeed when tried again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Blob(e) => e.is_retryable(),
            Error::Io { .. } | Error::Journal(_) | Error::Manifest(_) | Error::Tar(_) => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
