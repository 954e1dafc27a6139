//! What a `prepimport` command asks, resolved from its options ([`Request`]), and what it answers
//! ([`PrepImportReport`], the `--json` document); shared by the command and the drive and session steps.

use super::journal::StoredCredential;
use super::source::SourceSpec;
use crate::job::create::CredentialArgs;
use crate::KdfChoice;
use clap::Args;
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

/// The options of `prepimport` (the WAImportExport spellings in brackets).
#[derive(Debug, Args)]
pub struct PrepImportArgs {
    /// The drive's journal (/j:): created by the first session (mode 0600: it holds the recovery key), never
    /// on the drive; one per drive.
    #[arg(long, value_name = "FILE")]
    pub journal: PathBuf,
    /// The copy session (/id:): 3 to 30 of A-Z a-z 0-9 _ # -; its files go to a folder of this name.
    #[arg(long, value_name = "ID")]
    pub session_id: Option<String>,
    /// The drive (/t:): a whole block device or an image file; first session only.
    #[arg(long, value_name = "PATH")]
    pub target: Option<PathBuf>,
    /// Format the drive (/format); needs --encrypt.
    #[arg(long)]
    pub format: bool,
    /// Encrypt the drive with LUKS2 and a new 48-digit recovery key (/encrypt).
    #[arg(long)]
    pub encrypt: bool,
    /// Format without asking (/silentmode).
    #[arg(short, long)]
    pub yes: bool,
    /// A file holding the recovery key of a drive already encrypted by seedship (/bk:@FILE), or set
    /// SEEDSHIP_RECOVERY_KEY_FILE / SEEDSHIP_RECOVERY_KEY; the drive is written without reformatting.
    #[arg(
        long,
        env = "SEEDSHIP_RECOVERY_KEY_FILE",
        value_name = "FILE",
        conflicts_with = "recovery_key"
    )]
    pub recovery_key_file: Option<PathBuf>,
    /// The recovery key itself (/bk:KEY): for compatibility only, a command line is readable by every user.
    #[arg(
        long,
        env = "SEEDSHIP_RECOVERY_KEY",
        hide_env_values = true,
        value_name = "KEY",
        hide_short_help = true
    )]
    pub recovery_key: Option<String>,
    /// A folder to copy, recursively (/srcdir:); give it with a full path.
    #[arg(long, value_name = "DIR", requires = "dstdir")]
    pub srcdir: Option<PathBuf>,
    /// Where the folder goes (/dstdir:): container/ or container/virtual-dir/.
    #[arg(long, value_name = "CONTAINER/DIR/")]
    pub dstdir: Option<String>,
    /// One file to copy (/srcfile:).
    #[arg(long, value_name = "FILE", requires = "dstblob", conflicts_with = "srcdir")]
    pub srcfile: Option<PathBuf>,
    /// The file's blob (/dstblob:): container/name.
    #[arg(long, value_name = "CONTAINER/BLOB")]
    pub dstblob: Option<String>,
    /// The blob type (/BlobType:): PageBlob (seedship's default; the length a multiple of 512) or BlockBlob
    /// (any length, never cut across drives; WAImportExport's default).
    #[arg(long, value_name = "TYPE")]
    pub blob_type: Option<String>,
    /// What the data centre does when the blob exists (/Disposition:): rename (default), no-overwrite,
    /// overwrite.
    #[arg(long, value_name = "RULE", default_value = "rename")]
    pub disposition: String,
    /// A folder for the session's log (/logdir:).
    #[arg(long, value_name = "DIR")]
    pub logdir: Option<PathBuf>,
    /// Resume the latest session of the drive (/ResumeSession), the first one too.
    #[arg(long, conflicts_with = "abort_session")]
    pub resume_session: bool,
    /// Roll back the latest session of the drive (/AbortSession) so that a new one can start.
    #[arg(long)]
    pub abort_session: bool,
    /// v2 data set file (/DataSet:): BasePath,DstBlobPathOrPrefix,BlobType,Disposition,MetadataFile,PropertiesFile.
    #[arg(long, value_name = "CSV", conflicts_with_all = ["srcdir", "srcfile"])]
    pub dataset: Option<PathBuf>,
    /// v2 drive set file (/InitialDriveSet:), one row: DriveLetter (a device or image path),FormatOption,
    /// SilentOrPromptOnFormat,Encryption,ExistingBitLockerKey.
    #[arg(long, value_name = "CSV", conflicts_with_all = ["target", "format", "encrypt"])]
    pub initial_drive_set: Option<PathBuf>,
    /// v2 additional drive set (/AdditionalDriveSet:): the drives the session's data set continues on when
    /// the drive before was full; with only /j: and /id: of that session. Each drive gets its own journal
    /// beside /j:, named STEM-SESSION-N.jrn (d1.jrn: d1-s1-2.jrn, d1-s1-3.jrn, ...).
    #[arg(
        long,
        value_name = "CSV",
        conflicts_with_all = ["resume_session", "abort_session", "dataset", "srcdir", "srcfile", "target", "initial_drive_set"]
    )]
    pub additional_drive_set: Option<PathBuf>,
    /// The storage credential (/sk:@FILE or /csas:@FILE; /sk:KEY and /csas:SAS for compatibility), recorded
    /// in the journal for create-job.
    #[command(flatten)]
    pub cred: CredentialArgs,
    /// Key derivation of a new drive's keyslot.
    #[arg(long, value_enum, default_value_t = KdfChoice::Argon2id)]
    pub pbkdf: KdfChoice,
    /// Check everything and print the plan; write nothing (not even the journal).
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as one JSON document on standard output (fields in docs/waimportexport.md).
    #[arg(long)]
    pub json: bool,
    #[arg(long, hide = true)]
    pub secret_on_command_line: Vec<String>,
    #[arg(long, hide = true)]
    pub unsupported: Vec<String>,
}
