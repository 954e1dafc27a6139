//! `seedship-diskprep prepimport` (spelled `PrepImport /j: /id: ...` too): WAImportExport's way of preparing
//! a drive, one copy session at a time, with the `/j:` journal as the drive's record.
//!
//! The first session of a drive formats it with LUKS2 (`/format /encrypt`), or opens a LUKS2 drive seedship
//! formatted earlier with its recovery key (`/bk:`, v2's `AlreadyEncrypted`) and writes it without
//! reformatting; a key that does not unlock it is refused before anything is written. Each session's files
//! sit in a folder named after its session id; later sessions append after the earlier ones, and every
//! session rewrites the drive's manifest (one `BlobList` per session) in a slot sized by the first. The latest
//! session can be resumed (`/ResumeSession`, the first one too, unlike WAImportExport) or rolled back
//! (`/AbortSession`). The drive-writing machinery is diskprep's own ([`crate::prep`]): the planner, the copy
//! with its checkpoints and read-back, the manifest slot and the end-of-archive marker.

use super::journal::{
    self, DriveJournal, DriveRecord, Encryption, Replayed, SessionRecord, SourceRecord, StoredCredential,
};
use super::source::{self, SourceFile, SourceSpec};
use crate::prep::console::ConsoleUi;
use crate::prep::copy::{copy_parts, finish_payload, Checkpoint, CopyError};
use crate::prep::drive::{DriveInfo, DriveKind, SystemView};
use crate::prep::layout::{DriveLayout, SegmentRecord};
use crate::prep::plan::{Cursor, DrivePlan};
use crate::prep::prepare::{PrepUi, DATA_OFFSET, MIN_DRIVE};
use crate::prep::readback::check_head_and_tail;
use crate::prep::source::StagingFiles;
use crate::KdfChoice;
use anyhow::{bail, Context};
use clap::Args;
use seedship_shared::exit::Exit;
use seedship_shared::luks::direct::DriveFile;
use seedship_shared::luks::payload::DriveTarget;
use seedship_shared::luks::{self, LuksError, LuksFormat, LuksHeader, LuksVolume, Pbkdf};
use seedship_shared::manifest::{
    BlobListHeader, DriveFilePath, DriveHeader, ManifestBlob, ManifestWriter, Md5Hash, PageRange,
    CLIENT_CREATOR, MANIFEST_VERSION,
};
use seedship_shared::recovery::RecoveryKey;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use zeroize::Zeroizing;

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
    /// The blob type (/BlobType:); only PageBlob is supported (WAImportExport's default is BlockBlob).
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
    /// v2 additional drive set (/AdditionalDriveSet:): refused, seedship keeps one journal per drive.
    #[arg(long, value_name = "CSV")]
    pub additional_drive_set: Option<PathBuf>,
    /// A file holding the storage account key (/sk:@FILE), recorded in the journal for create-job (or set
    /// SEEDSHIP_STORAGE_KEY_FILE, or the key in SEEDSHIP_STORAGE_KEY).
    #[arg(long, env = "SEEDSHIP_STORAGE_KEY_FILE", value_name = "FILE", conflicts_with_all = ["storage_account_key", "container_sas", "container_sas_file"])]
    pub storage_account_key_file: Option<PathBuf>,
    /// The key itself (/sk:KEY): for compatibility only.
    #[arg(long, env = "SEEDSHIP_STORAGE_KEY", hide_env_values = true, value_name = "KEY", hide_short_help = true, conflicts_with_all = ["container_sas", "container_sas_file"])]
    pub storage_account_key: Option<String>,
    /// A file holding a container SAS (/csas:@FILE), or set SEEDSHIP_CONTAINER_SAS_FILE.
    #[arg(
        long,
        env = "SEEDSHIP_CONTAINER_SAS_FILE",
        value_name = "FILE",
        conflicts_with = "container_sas"
    )]
    pub container_sas_file: Option<PathBuf>,
    /// The SAS itself (/csas:SAS): for compatibility only.
    #[arg(
        long,
        env = "SEEDSHIP_CONTAINER_SAS",
        hide_env_values = true,
        value_name = "SAS",
        hide_short_help = true
    )]
    pub container_sas: Option<String>,
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
struct Request {
    session_id: String,
    target: Option<PathBuf>,
    format: bool,
    encrypt: bool,
    yes: bool,
    key: Option<Zeroizing<String>>,
    specs: Vec<SourceSpec>,
    credential: Option<StoredCredential>,
    pbkdf: Pbkdf,
}

/// Runs `prepimport`.
pub fn run(a: PrepImportArgs, cancel: &AtomicBool) -> anyhow::Result<Exit> {
    if !a.unsupported.is_empty() {
        bail!(
            "WAImportExport option {} is not supported by seedship-diskprep prepimport (see \
             docs/waimportexport.md)",
            a.unsupported.join(", ")
        );
    }
    for name in &a.secret_on_command_line {
        eprintln!(
            "warning: the secret given with {name}: is on the command line, where every user of this \
             machine can read it; pass it as {name}:@FILE (a file of mode 0600) or through the environment \
             ({})",
            match name.to_ascii_lowercase().as_str() {
                "/bk" => "SEEDSHIP_RECOVERY_KEY",
                "/csas" => "SEEDSHIP_CONTAINER_SAS",
                _ => "SEEDSHIP_STORAGE_KEY",
            }
        );
    }
    if let Some(p) = &a.additional_drive_set {
        bail!(
            "/AdditionalDriveSet:{}: seedship keeps one journal per drive (WAImportExport v1's rule); prepare \
             the next drive with its own journal (/j:) and /InitialDriveSet: or /t:",
            p.display()
        );
    }
    let req = request(&a)?;
    let json = a.json.then(seedship_shared::jsonout::json_stdout).transpose()?;
    let report = if a.abort_session {
        abort(&a.journal, &req, a.dry_run, a.json)?
    } else {
        match prepare(&a, &req, cancel) {
            Ok(r) => r,
            Err(e) => match e.downcast_ref::<CopyError>() {
                Some(CopyError::Interrupted { .. }) => {
                    eprintln!(
                        "{e}; resume with: seedship-diskprep PrepImport /j:{} /id:{} /ResumeSession",
                        a.journal.display(),
                        req.session_id
                    );
                    return Ok(Exit::Interrupted);
                }
                _ => return Err(e),
            },
        }
    };
    if let Some(log) = &a.logdir {
        write_log(log, &report)?;
    }
    match json {
        Some(mut out) => seedship_shared::jsonout::emit(&mut out, &report)?,
        None => print_report(&report),
    }
    Ok(Exit::Success)
}

fn request(a: &PrepImportArgs) -> anyhow::Result<Request> {
    let session_id = a
        .session_id
        .clone()
        .context("give the session id with /id:<SessionId> (or --session-id)")?;
    let ok = (3..=30).contains(&session_id.len())
        && session_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_#-".contains(c));
    if !ok {
        bail!("session id {session_id:?}: 3 to 30 characters of A-Z a-z 0-9 _ # -");
    }
    if let Some(t) = &a.blob_type {
        source::check_blob_type(t)?;
    }
    let disposition = source::parse_disposition(&a.disposition)?;
    let mut specs = Vec::new();
    if let (Some(dir), Some(dst)) = (&a.srcdir, &a.dstdir) {
        specs.push(SourceSpec {
            path: dir.clone(),
            dst: dst.clone(),
            dir: true,
            disposition,
        });
    }
    if let (Some(file), Some(dst)) = (&a.srcfile, &a.dstblob) {
        specs.push(SourceSpec {
            path: file.clone(),
            dst: dst.clone(),
            dir: false,
            disposition,
        });
    }
    if let Some(d) = &a.dataset {
        specs = source::dataset(d)?;
    }
    let mut key = match (&a.recovery_key_file, &a.recovery_key) {
        (Some(f), _) => Some(seedship_shared::secret::from_file(f, "recovery key")?),
        (None, Some(k)) => Some(Zeroizing::new(k.clone())),
        _ => None,
    };
    let (mut target, mut format, mut encrypt, mut yes) = (a.target.clone(), a.format, a.encrypt, a.yes);
    if let Some(p) = &a.initial_drive_set {
        let row = source::drive_set(p)?;
        target = Some(row.target);
        format = row.format || row.encrypt;
        encrypt = row.encrypt;
        yes |= row.silent;
        if let Some(k) = row.key {
            key = Some(Zeroizing::new(k));
        }
    }
    let credential = if let Some(f) = &a.storage_account_key_file {
        Some(StoredCredential::AccountKey(seedship_shared::secret::from_file(
            f,
            "storage account key",
        )?))
    } else if let Some(k) = &a.storage_account_key {
        Some(StoredCredential::AccountKey(Zeroizing::new(k.clone())))
    } else if let Some(f) = &a.container_sas_file {
        Some(StoredCredential::ContainerSas(
            seedship_shared::secret::from_file(f, "container SAS")?,
        ))
    } else {
        a.container_sas
            .as_ref()
            .map(|s| StoredCredential::ContainerSas(Zeroizing::new(s.clone())))
    };
    Ok(Request {
        session_id,
        target,
        format,
        encrypt,
        yes,
        key,
        specs,
        credential,
        pbkdf: match a.pbkdf {
            KdfChoice::Argon2id => Pbkdf::DEFAULT,
            KdfChoice::Pbkdf2 => Pbkdf::Pbkdf2 { iterations: 100_000 },
        },
    })
}

/// A session's plan: its files, layout and drive plan.
struct SessionPlan {
    record: SessionRecord,
    files: Vec<SourceFile>,
    layout: DriveLayout,
    plan: DrivePlan,
}

fn prepare(a: &PrepImportArgs, req: &Request, cancel: &AtomicBool) -> anyhow::Result<PrepImportReport> {
    let exists = a.journal.exists();
    if !exists && a.resume_session {
        bail!(
            "journal {} does not exist: there is no session to resume; start one without /ResumeSession",
            a.journal.display()
        );
    }
    // The sources are checked before the journal exists, so a mistake leaves nothing behind.
    let new_files = if a.resume_session {
        None
    } else {
        if req.specs.is_empty() {
            bail!("nothing to copy: give /srcdir: and /dstdir:, /srcfile: and /dstblob:, or /DataSet:");
        }
        Some(source::resolve(&req.specs)?)
    };
    let state = if exists {
        journal::read(&a.journal)?
    } else {
        Replayed::default()
    };
    if let (Some(l), false) = (state.latest().filter(|l| !l.is_done()), a.resume_session) {
        bail!(
            "session {} of drive {} did not finish: resume it with /j:{} /id:{0} /ResumeSession, or roll it \
             back with /AbortSession (same /j: and /id:)",
            l.session_id,
            state.drive.as_ref().map_or("", |d| d.drive_id.as_str()),
            a.journal.display()
        );
    }
    let fresh_drive = state.drive.is_none();
    if fresh_drive && a.dry_run {
        let (info, drive_id) = probe_new(req, &a.journal)?;
        say(
            a.json,
            format!(
                "Dry run: would prepare {} as drive {drive_id} ({}), session {}; nothing was written.",
                info.path.display(),
                if req.key.is_some() {
                    "already encrypted, not reformatted"
                } else {
                    "formatted and encrypted"
                },
                req.session_id
            ),
        );
        return Ok(PrepImportReport {
            journal: a.journal.display().to_string(),
            drive_id,
            target: info.path.display().to_string(),
            session_id: req.session_id.clone(),
            action: "planned",
            blobs: new_files.map_or(0, |f| f.1.len()),
            bytes: 0,
            manifest_hash: None,
            sessions: Vec::new(),
        });
    }
    // A new drive is probed, and an encrypted one unlocked, before anything is written (the journal too).
    let probed = if fresh_drive {
        Some(check_new(req, &a.journal)?)
    } else {
        None
    };
    if !exists {
        journal::create(&a.journal)?;
    }
    let (mut j, mut state) = journal::open(&a.journal)?;
    if let Some((info, drive_id)) = probed {
        j.record_context(a.logdir.as_deref())?;
        let drive = set_up_drive(req, info, drive_id, &mut j)?;
        state.drive = Some(drive);
        state.formatted = true;
    } else if !state.formatted {
        finish_setup(req, &state, &mut j)?;
        state.formatted = true;
    } else if req.format && state.done().next().is_some() {
        bail!(
            "journal {} already has drive {}: /format would erase its sessions; for another drive use another \
             journal",
            a.journal.display(),
            state.drive.as_ref().map_or("", |d| d.drive_id.as_str())
        );
    }
    let drive = state.drive.clone().expect("set up above");
    if let Some(t) = &req.target {
        if !same_path(t, &drive.target) {
            bail!(
                "journal {} belongs to drive {} at {}, not {}",
                a.journal.display(),
                drive.drive_id,
                drive.target.display(),
                t.display()
            );
        }
    }
    if let Some(c) = &req.credential {
        j.record_credential(c)?;
    }
    let session = match new_files {
        None => resume_plan(&state, &drive, &req.session_id)?,
        Some((container, files)) => {
            let s = new_plan(&state, &drive, &req.session_id, container, files)?;
            if a.dry_run {
                say(
                    a.json,
                    format!(
                        "Dry run: session {} would copy {} files ({}) to drive {}; nothing was written.",
                        req.session_id,
                        s.files.len(),
                        seedship_shared::units::human(s.plan.payload_len),
                        drive.drive_id
                    ),
                );
                return Ok(report(
                    a,
                    &drive,
                    &state,
                    &s,
                    "planned",
                    state.manifest_hash.clone(),
                ));
            }
            j.record_session(&s.record)?;
            s
        }
    };
    j.session = session.record.session_id.clone();
    let hash = write_session(&drive, &state, &session, &mut j, cancel)?;
    let mut state = journal::read(&a.journal)?;
    state.manifest_hash = Some(hash.clone());
    Ok(report(a, &drive, &state, &session, "completed", Some(hash)))
}

fn report(
    a: &PrepImportArgs,
    drive: &DriveRecord,
    state: &Replayed,
    s: &SessionPlan,
    action: &'static str,
    manifest_hash: Option<String>,
) -> PrepImportReport {
    PrepImportReport {
        journal: a.journal.display().to_string(),
        drive_id: drive.drive_id.clone(),
        target: drive.target.display().to_string(),
        session_id: s.record.session_id.clone(),
        action,
        blobs: s.files.len(),
        bytes: s.plan.payload_len,
        manifest_hash,
        sessions: state.done().map(|x| x.session_id.clone()).collect(),
    }
}

fn same_path(a: &Path, b: &Path) -> bool {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    abs(a) == abs(b)
}

/// Describes a new target and finds its drive id: the LUKS2 label of an already encrypted drive, the serial
/// of a block device, or one derived from the journal and the image's path.
fn probe_new(req: &Request, journal: &Path) -> anyhow::Result<(DriveInfo, String)> {
    let target = req
        .target
        .clone()
        .context("the first session of a drive needs the drive: /t:<device or image path> (or --target)")?;
    match (req.key.is_some(), req.format, req.encrypt) {
        (true, true, _) | (true, _, true) => bail!(
            "/bk: is for a drive that is already encrypted (written without formatting): leave out /format \
             and /encrypt, or leave out /bk: to format and encrypt the drive anew"
        ),
        (false, true, false) => bail!("/format needs /encrypt: seedship drives are always encrypted"),
        (false, false, _) => bail!(
            "the first session of a drive needs /format /encrypt (format and encrypt it) or /bk:@FILE (a drive \
             seedship encrypted earlier)"
        ),
        _ => {}
    }
    let info = SystemView::live()?.probe(&target)?;
    info.check_usable(MIN_DRIVE)?;
    let drive_id = if req.key.is_some() {
        let file = std::fs::File::open(&target).with_context(|| format!("opening {}", target.display()))?;
        match LuksHeader::read(&file) {
            Ok(h) => h.label().to_owned(),
            Err(e) => bail!(
                "{} is not a LUKS2 drive seedship formatted ({e}); to format and encrypt it, use /format \
                 /encrypt instead of /bk:",
                target.display()
            ),
        }
    } else {
        match (&info.serial, info.kind) {
            (Some(serial), DriveKind::BlockDevice) => serial.clone(),
            _ => derived_drive_id(journal, &target),
        }
    };
    Ok((info, drive_id))
}

/// [`probe_new`], and for an already encrypted drive the check that the key unlocks it.
fn check_new(req: &Request, journal: &Path) -> anyhow::Result<(DriveInfo, String)> {
    let (info, drive_id) = probe_new(req, journal)?;
    if let Some(text) = &req.key {
        let key = RecoveryKey::parse(text).context("the recovery key given with /bk:")?;
        let file =
            std::fs::File::open(&info.path).with_context(|| format!("opening {}", info.path.display()))?;
        unlock(&file, &drive_id, &info.path, &key)?;
    }
    Ok((info, drive_id))
}

/// `SEED` and 12 hex digits of a BLAKE3 hash of the journal's and the image's absolute paths.
fn derived_drive_id(journal: &Path, target: &Path) -> String {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let mut h = blake3::Hasher::new();
    h.update(b"seedship prepimport drive id v1\0");
    h.update(abs(journal).as_os_str().as_encoded_bytes());
    h.update(b"\0");
    h.update(abs(target).as_os_str().as_encoded_bytes());
    format!("SEED{}", h.finalize().to_hex()[..12].to_ascii_uppercase())
}

/// The manifest slot of a new drive: 1/2048 of its payload (WAImportExport reserves about 3 GB per 7 TB),
/// from 1 MiB to 128 MiB (the data centre reads manifests of up to 256 MiB; 128 MiB lists over a million
/// 4 MiB ranges), in whole sectors.
fn manifest_slot(capacity: u64) -> u64 {
    (capacity / 2048).clamp(1 << 20, 128 << 20).div_ceil(4096) * 4096
}

fn open_rw(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Unlocks the drive, naming a wrong key as such.
fn unlock(file: &std::fs::File, drive: &str, target: &Path, key: &RecoveryKey) -> anyhow::Result<LuksVolume> {
    LuksVolume::open(file, key.passphrase()).map_err(|e| match e {
        LuksError::WrongKey { .. } => anyhow::anyhow!(
            "the recovery key does not unlock drive {drive} ({}); nothing was written",
            target.display()
        ),
        e => anyhow::anyhow!("drive {drive} ({}): {e}", target.display()),
    })
}

/// The first session's drive: formatted and encrypted with a new key, or an encrypted one unlocked with its
/// key. The journal records the drive (and key) before the header is written.
fn set_up_drive(
    req: &Request,
    info: DriveInfo,
    drive_id: String,
    j: &mut DriveJournal,
) -> anyhow::Result<DriveRecord> {
    let target = info.path.clone();
    if let Some(text) = &req.key {
        let key = RecoveryKey::parse(text).context("the recovery key given with /bk:")?;
        let file = open_rw(&target)?;
        let volume = unlock(&file, &drive_id, &target, &key)?;
        let capacity = volume.payload_len() / 4096 * 4096;
        let d = DriveRecord {
            drive_id: drive_id.clone(),
            target,
            capacity,
            manifest_slot: manifest_slot(capacity),
            encryption: Encryption::AlreadyEncrypted,
            recovery_key: Zeroizing::new(key.as_str().to_owned()),
        };
        j.record_drive(&d)?;
        j.record_formatted(&drive_id)?;
        return Ok(d);
    }
    let mut ui = ConsoleUi::default();
    if !req.yes && !ui.confirm_format(&info, &drive_id)? {
        bail!(
            "formatting {} was not confirmed; nothing was written",
            target.display()
        );
    }
    let key = RecoveryKey::generate()?;
    let capacity = (info.size - DATA_OFFSET) / 4096 * 4096;
    let d = DriveRecord {
        drive_id: drive_id.clone(),
        target,
        capacity,
        manifest_slot: manifest_slot(capacity),
        encryption: Encryption::Encrypt,
        recovery_key: Zeroizing::new(key.as_str().to_owned()),
    };
    j.record_drive(&d)?;
    format_drive(&d, info.size, req.pbkdf)?;
    j.record_formatted(&drive_id)?;
    Ok(d)
}

fn format_drive(d: &DriveRecord, size: u64, pbkdf: Pbkdf) -> anyhow::Result<()> {
    let key = RecoveryKey::parse(&d.recovery_key)?;
    let file = open_rw(&d.target)?;
    let mut format = LuksFormat::new(d.drive_id.clone());
    format.pbkdf = pbkdf;
    format.data_offset = DATA_OFFSET;
    luks::format(&file, size, key.passphrase(), &format)
        .with_context(|| format!("formatting drive {} ({})", d.drive_id, d.target.display()))?;
    Ok(())
}

/// A first session stopped between recording the drive and its header: formats it again with the recorded
/// key, or checks that the recorded key unlocks an already encrypted drive.
fn finish_setup(req: &Request, state: &Replayed, j: &mut DriveJournal) -> anyhow::Result<()> {
    let d = state.drive.as_ref().expect("recorded");
    match d.encryption {
        Encryption::Encrypt => {
            let size = SystemView::live()?.probe(&d.target)?.size;
            format_drive(d, size, req.pbkdf)?;
        }
        Encryption::AlreadyEncrypted => {
            let key = RecoveryKey::parse(&d.recovery_key)?;
            unlock(&open_rw(&d.target)?, &d.drive_id, &d.target, &key)?;
        }
    }
    Ok(j.record_formatted(&d.drive_id)?)
}

/// Where a new session starts: after the last complete session, or after the manifest on an empty drive.
fn next_data_from(state: &Replayed) -> Option<u64> {
    state.done().last().and_then(|s| s.data_end)
}

fn layout_of(drive: &DriveRecord, record: &SessionRecord) -> DriveLayout {
    DriveLayout {
        session: record.session_id.clone(),
        container: record.container.clone(),
        mtime: record.mtime,
        manifest_slot: Some(drive.manifest_slot),
        data_from: record.data_from,
    }
}

/// Plans a session's files onto what is left of the drive; the whole session must fit.
fn plan_files(
    state: &Replayed,
    drive: &DriveRecord,
    record: &SessionRecord,
    files: &[SourceFile],
) -> anyhow::Result<(DriveLayout, DrivePlan)> {
    let layout = layout_of(drive, record);
    let extents: Vec<_> = files.iter().map(|f| f.extents.clone()).collect();
    let mut cursor = Cursor::new(&extents);
    let plan = cursor.fill_drive(drive.capacity, &layout);
    if !cursor.is_done() {
        let used = record.data_from.unwrap_or(0);
        bail!(
            "session {} does not fit on drive {}: {} of its {} payload is free and the session needs {} more \
             (one session goes to one drive; split the source and use another drive with its own journal)",
            record.session_id,
            drive.drive_id,
            seedship_shared::units::human(drive.capacity.saturating_sub(used)),
            seedship_shared::units::human(drive.capacity),
            seedship_shared::units::human(cursor.remaining_len(&layout))
        );
    }
    let earlier: Vec<&SessionRecord> = state.done().collect();
    let earlier_text = drive_manifest(&drive.drive_id, &earlier, None)?.len() as u64;
    if earlier_text + plan.manifest_reserve > drive.manifest_slot {
        bail!(
            "drive {}'s manifest slot ({}) cannot list session {} as well; use another drive",
            drive.drive_id,
            seedship_shared::units::human(drive.manifest_slot),
            record.session_id
        );
    }
    Ok((layout, plan))
}

fn new_plan(
    state: &Replayed,
    drive: &DriveRecord,
    id: &str,
    container: String,
    files: Vec<SourceFile>,
) -> anyhow::Result<SessionPlan> {
    if let Some(l) = state.latest().filter(|l| !l.is_done()) {
        bail!(
            "session {} of drive {} did not finish: resume it with /id:{0} /ResumeSession, or roll it back \
             with /id:{0} /AbortSession",
            l.session_id,
            drive.drive_id
        );
    }
    if state.done().any(|s| s.session_id == id) {
        bail!(
            "drive {} already has a session {id}: give the new session another id",
            drive.drive_id
        );
    }
    let mut record = SessionRecord {
        session_id: id.to_owned(),
        container,
        mtime: seedship_shared::time::now_unix(),
        data_from: next_data_from(state),
        sources: Vec::new(),
        checkpoint: Checkpoint::default(),
        data_end: None,
        aborted: false,
    };
    let (layout, plan) = plan_files(state, drive, &record, &files)?;
    record.sources = files
        .iter()
        .zip(&plan.parts)
        .map(|(f, p)| SourceRecord {
            blob: f.extents.name.clone(),
            path: f.path.clone(),
            len: f.extents.len,
            mtime_ns: f.mtime_ns,
            segments: p.segments.len(),
            disposition: f.disposition,
        })
        .collect();
    Ok(SessionPlan {
        record,
        files,
        layout,
        plan,
    })
}

/// The latest session again, from the journal: the same files (unchanged), the same plan.
fn resume_plan(state: &Replayed, drive: &DriveRecord, id: &str) -> anyhow::Result<SessionPlan> {
    let Some(latest) = state.latest() else {
        bail!("drive {} has no session to resume", drive.drive_id);
    };
    if latest.session_id != id {
        bail!(
            "only the latest session of drive {} can be resumed: {}, not {id}",
            drive.drive_id,
            latest.session_id
        );
    }
    if latest.is_done() {
        bail!(
            "session {id} of drive {} is complete; nothing to resume",
            drive.drive_id
        );
    }
    let mut files = Vec::new();
    for s in &latest.sources {
        let now = source::mtime_ns(&s.path);
        if now != Some((s.len, s.mtime_ns)) {
            bail!(
                "{} changed (or is gone) since session {id} started: a session resumes only over the same \
                 source; roll it back with /AbortSession and start a new one",
                s.path.display()
            );
        }
        let spec = SourceSpec {
            path: s.path.clone(),
            dst: format!("{}/{}", latest.container, s.blob),
            dir: false,
            disposition: s.disposition,
        };
        let (_, mut f) = source::resolve(std::slice::from_ref(&spec))?;
        files.append(&mut f);
    }
    let (layout, plan) = plan_files(state, drive, latest, &files)?;
    Ok(SessionPlan {
        record: latest.clone(),
        files,
        layout,
        plan,
    })
}

/// The drive's manifest: one `BlobList` per session, each blob's non-zero segments as page ranges. `current`
/// adds a session not complete yet, with its segments.
fn drive_manifest(
    drive_id: &str,
    sessions: &[&SessionRecord],
    current: Option<(&SessionRecord, &[SegmentRecord])>,
) -> anyhow::Result<Vec<u8>> {
    let header = DriveHeader {
        version: MANIFEST_VERSION.to_owned(),
        drive_id: drive_id.to_owned(),
        credential: None,
        client_creator: Some(CLIENT_CREATOR.to_owned()),
    };
    let mut w = ManifestWriter::new(Vec::new(), &header)?;
    let all = sessions
        .iter()
        .map(|s| (*s, s.checkpoint.segments.as_slice()))
        .chain(current);
    for (s, segments) in all {
        w.begin_blob_list(&BlobListHeader {
            id: Some(s.session_id.clone()),
            metadata: None,
            properties: None,
        })?;
        let mut segs = segments.iter();
        for src in &s.sources {
            let blob_path = format!("{}/{}", s.container, src.blob);
            let paths = DriveFilePath::new(&s.session_id, &blob_path)?;
            let mut ranges = Vec::new();
            for seg in segs.by_ref().take(src.segments).filter(|x| !x.zero) {
                let mut hash = [0u8; 16];
                hex::decode_to_slice(&seg.md5, &mut hash).context("an MD5 in the journal is not hex")?;
                ranges.push(PageRange {
                    offset: seg.range.start,
                    length: seg.range.end - seg.range.start,
                    hash: Md5Hash(hash),
                });
            }
            let mut blob = ManifestBlob::page_blob(blob_path, paths.file_path, src.len, ranges);
            blob.disposition = Some(src.disposition);
            w.write_blob(&blob)?;
        }
    }
    let text = w.finish()?;
    Ok(text)
}

/// Copies a session (from its last checkpoint), rewrites the drive's manifest and end marker, checks them,
/// and records the end. Returns the manifest's MD5.
fn write_session(
    drive: &DriveRecord,
    state: &Replayed,
    s: &SessionPlan,
    j: &mut DriveJournal,
    cancel: &AtomicBool,
) -> anyhow::Result<String> {
    let key = RecoveryKey::parse(&drive.recovery_key)?;
    let file = open_rw(&drive.target)?;
    let volume = unlock(&file, &drive.drive_id, &drive.target, &key)?;
    let device = DriveFile::new(&file, &drive.target);
    let target = DriveTarget {
        device: &device,
        cipher: &volume,
        data_offset: volume.data_offset(),
        capacity: drive.capacity.min(volume.payload_len()),
    };
    let source = StagingFiles::from_files(
        s.files
            .iter()
            .map(|f| (f.extents.name.clone(), f.path.clone(), None)),
    );
    let mut ui = ConsoleUi::default();
    let progress = ui.progress(
        &format!("session {} ({})", s.record.session_id, drive.drive_id),
        2 * s.plan.payload_len,
    );
    let copied = copy_parts(
        &drive.drive_id,
        &s.plan,
        &s.layout,
        &source,
        &target,
        s.record.checkpoint.clone(),
        j,
        progress.as_ref(),
        cancel,
        true,
    );
    progress.finish();
    let done = copied?;
    let earlier: Vec<&SessionRecord> = state
        .done()
        .filter(|x| x.session_id != s.record.session_id)
        .collect();
    let text = drive_manifest(&drive.drive_id, &earlier, Some((&s.record, &done.segments)))?;
    let text = String::from_utf8(text).context("the manifest is UTF-8")?;
    let manifest = finish_payload(&drive.drive_id, &s.plan, &s.layout, &target, &text)?;
    check_head_and_tail(&drive.drive_id, &s.plan, &s.layout, &target, &manifest)?;
    let hash = seedship_shared::manifest::manifest_hash(&manifest);
    let (_, data_end) = s.layout.member_offsets(&s.plan);
    j.record_done(&drive.drive_id, &s.record.session_id, &hash, data_end)?;
    Ok(hash)
}

/// `/AbortSession`: rolls the latest session back. The drive gets back the end marker and manifest of the
/// sessions before it (none: the drive holds no session).
fn abort(journal_path: &Path, req: &Request, dry_run: bool, json: bool) -> anyhow::Result<PrepImportReport> {
    let state = journal::read(journal_path)
        .with_context(|| format!("journal {}: nothing to abort", journal_path.display()))?;
    let drive = state.drive.clone().with_context(|| {
        format!(
            "journal {} records no drive: nothing to abort",
            journal_path.display()
        )
    })?;
    let Some(latest) = state.latest() else {
        bail!("drive {} has no session to abort", drive.drive_id);
    };
    if latest.session_id != req.session_id {
        bail!(
            "only the latest session of drive {} can be aborted: {}, not {}",
            drive.drive_id,
            latest.session_id,
            req.session_id
        );
    }
    let kept: Vec<&SessionRecord> = state
        .done()
        .filter(|s| s.session_id != latest.session_id)
        .collect();
    let mut out = PrepImportReport {
        journal: journal_path.display().to_string(),
        drive_id: drive.drive_id.clone(),
        target: drive.target.display().to_string(),
        session_id: latest.session_id.clone(),
        action: if dry_run { "planned" } else { "aborted" },
        blobs: latest.sources.len(),
        bytes: 0,
        manifest_hash: None,
        sessions: kept.iter().map(|s| s.session_id.clone()).collect(),
    };
    if dry_run {
        say(
            json,
            format!(
                "Dry run: session {} of drive {} would be rolled back; nothing was written.",
                latest.session_id, drive.drive_id
            ),
        );
        return Ok(out);
    }
    let (mut j, _) = journal::open(journal_path)?;
    let restored = match kept.last() {
        Some(last) if state.formatted => {
            let key = RecoveryKey::parse(&drive.recovery_key)?;
            let file = open_rw(&drive.target)?;
            let volume = unlock(&file, &drive.drive_id, &drive.target, &key)?;
            let device = DriveFile::new(&file, &drive.target);
            let target = DriveTarget {
                device: &device,
                cipher: &volume,
                data_offset: volume.data_offset(),
                capacity: drive.capacity.min(volume.payload_len()),
            };
            let mut layout = layout_of(&drive, last);
            layout.data_from = last.data_end;
            let empty = DrivePlan::default();
            let text = String::from_utf8(drive_manifest(&drive.drive_id, &kept, None)?)?;
            let manifest = finish_payload(&drive.drive_id, &empty, &layout, &target, &text)?;
            check_head_and_tail(&drive.drive_id, &empty, &layout, &target, &manifest)?;
            Some(seedship_shared::manifest::manifest_hash(&manifest))
        }
        _ => None,
    };
    j.record_aborted(&latest.session_id)?;
    if let Some(h) = &restored {
        j.record_drive_info(&drive.drive_id, h)?;
    }
    out.manifest_hash = restored;
    Ok(out)
}

/// A human line: on standard output, or on standard error when standard output carries the JSON document.
fn say(json: bool, line: String) {
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

fn print_report(r: &PrepImportReport) {
    match r.action {
        "aborted" => println!(
            "Session {} of drive {} was rolled back; the drive holds {}.",
            r.session_id,
            r.drive_id,
            if r.sessions.is_empty() {
                "no session".to_owned()
            } else {
                format!("sessions {}", r.sessions.join(", "))
            }
        ),
        "completed" => {
            println!(
                "Session {} is on drive {} ({}): {} files, {} of payload, read back and checked.",
                r.session_id,
                r.drive_id,
                r.target,
                r.blobs,
                seedship_shared::units::human(r.bytes)
            );
            println!(
                "The drive holds sessions {}; manifest \\DriveManifest.xml, MD5 {}.",
                r.sessions.join(", "),
                r.manifest_hash.as_deref().unwrap_or("-")
            );
            println!(
                "Journal {} (mode 0600) records the drive's id, recovery key and manifest hash; create the import \
                 job from the journals with: seedship-diskprep create-job --journal {} ... --job-name NAME",
                r.journal, r.journal
            );
        }
        _ => {}
    }
}

/// The session's log in `/logdir:`, `<session>.log`: what the command printed, for the operator's records.
fn write_log(dir: &Path, r: &PrepImportReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating the log folder {}", dir.display()))?;
    let path = dir.join(format!("{}.log", r.session_id));
    let line = format!(
        "{} session {} drive {} ({}) {}: {} files, {} bytes, manifest MD5 {}, sessions on the drive: {}\n",
        seedship_shared::time::now_unix(),
        r.session_id,
        r.drive_id,
        r.target,
        r.action,
        r.blobs,
        r.bytes,
        r.manifest_hash.as_deref().unwrap_or("-"),
        r.sessions.join(",")
    );
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_slot_is_a_small_share_in_whole_sectors() {
        assert_eq!(manifest_slot(64 << 20), 1 << 20);
        assert_eq!(manifest_slot(100 << 30), 50 << 20);
        assert_eq!(manifest_slot(4 << 40), 128 << 20);
    }

    #[test]
    fn derived_ids_differ_by_image() {
        let a = derived_drive_id(Path::new("/j/d1.jrn"), Path::new("/srv/d1.img"));
        assert!(a.starts_with("SEED") && a.len() == 16);
        assert_ne!(
            a,
            derived_drive_id(Path::new("/j/d1.jrn"), Path::new("/srv/d2.img"))
        );
    }
}
