//! What a `prepimport` command asks, resolved from its options ([`Request`]), and what it answers
//! ([`PrepImportReport`], the `--json` document); shared by the command and the drive and session steps.

use super::journal::StoredCredential;
use super::source::SourceSpec;
use seedship_shared::luks::Pbkdf;
use serde::Serialize;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// `prepimport --json`.
#[derive(Debug, Serialize)]
pub struct PrepImportReport {
    pub journal: String,
    pub drive_id: String,
    pub target: String,
    pub session_id: String,
    /// `completed`, `filled` (the drive is full and part of the v2 data set waits for
    /// `/AdditionalDriveSet:`), `aborted` or `planned` (dry run).
    pub action: &'static str,
    pub blobs: usize,
    /// Payload bytes the session's members take.
    pub bytes: u64,
    /// The drive manifest's MD5 after the command (none when no session is complete).
    pub manifest_hash: Option<String>,
    /// The complete sessions on the drive.
    pub sessions: Vec<String>,
    /// The session's files (or their ends) on no drive yet: they continue with `/AdditionalDriveSet:`.
    pub remaining_files: usize,
    /// The blob bytes from where each of those continues.
    pub remaining_bytes: u64,
    /// The journals of the drives the session is on, in drive order: what `create-job --journal` takes (it
    /// follows the continuations from the first one too).
    pub journals: Vec<String>,
}

/// What the command was asked, resolved.
pub(super) struct Request {
    pub(super) session_id: String,
    pub(super) target: Option<PathBuf>,
    pub(super) format: bool,
    pub(super) encrypt: bool,
    pub(super) yes: bool,
    pub(super) key: Option<Zeroizing<String>>,
    pub(super) specs: Vec<SourceSpec>,
    /// A v2 data set (`/DataSet:`): what does not fit on the drive waits for `/AdditionalDriveSet:`; a v1
    /// session must fit.
    pub(super) spill: bool,
    pub(super) credential: Option<StoredCredential>,
    pub(super) pbkdf: Pbkdf,
}

/// A human line: on standard output, or on standard error when standard output carries the JSON document.
pub(super) fn say(json: bool, line: String) {
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}
