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
    /// `completed`, `aborted` or `planned` (dry run).
    pub action: &'static str,
    pub blobs: usize,
    /// Payload bytes the session's members take.
    pub bytes: u64,
    /// The drive manifest's MD5 after the command (none when no session is complete).
    pub manifest_hash: Option<String>,
    /// The complete sessions on the drive.
    pub sessions: Vec<String>,
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
