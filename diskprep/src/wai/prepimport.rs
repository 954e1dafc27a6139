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

use super::additional;
use super::chain;
use super::drive::{check_new, finish_setup, probe_new, set_up_drive};
use super::journal::{self, DriveRecord, Replayed, StoredCredential};
pub use super::request::PrepImportArgs;
pub use super::request::PrepImportReport;
use super::request::{say, Request};
use super::session::{abort, new_plan, report, resume_plan, write_session};
use super::source::{self, SourceSpec};
use crate::job::create::Credential;
use crate::prep::copy::CopyError;
use crate::prep::prepare::DATA_OFFSET;
use crate::KdfChoice;
use anyhow::{bail, Context};
use seedship_shared::exit::Exit;
use seedship_shared::luks::Pbkdf;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use zeroize::Zeroizing;

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
    let req = request(&a)?;
    let json = a.json.then(seedship_shared::jsonout::json_stdout).transpose()?;
    let report = if let Some(csv) = &a.additional_drive_set {
        match additional::continue_session(&a, &req, csv, cancel)? {
            Some(r) => r,
            None => return Ok(Exit::Interrupted),
        }
    } else if a.abort_session {
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
    let blob_type = match &a.blob_type {
        Some(t) => source::parse_blob_type(t)?,
        None => source::BlobType::default(),
    };
    let disposition = source::parse_disposition(&a.disposition)?;
    let mut specs = Vec::new();
    if let (Some(dir), Some(dst)) = (&a.srcdir, &a.dstdir) {
        specs.push(SourceSpec {
            path: dir.clone(),
            dst: dst.clone(),
            dir: true,
            disposition,
            blob_type,
        });
    }
    if let (Some(file), Some(dst)) = (&a.srcfile, &a.dstblob) {
        specs.push(SourceSpec {
            path: file.clone(),
            dst: dst.clone(),
            dir: false,
            disposition,
            blob_type,
        });
    }
    if let Some(d) = &a.dataset {
        specs = source::dataset(d)?;
    }
    let spill = a.dataset.is_some();
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
    let credential = a.cred.credential()?.map(|c| match c {
        Credential::AccountKey(k) => StoredCredential::AccountKey(Zeroizing::new(k)),
        Credential::ContainerSas(s) => StoredCredential::ContainerSas(Zeroizing::new(s)),
    });
    Ok(Request {
        session_id,
        target,
        format,
        encrypt,
        yes,
        key,
        specs,
        spill,
        credential,
        pbkdf: match a.pbkdf {
            KdfChoice::Argon2id => Pbkdf::DEFAULT,
            KdfChoice::Pbkdf2 => Pbkdf::Pbkdf2 { iterations: 100_000 },
        },
    })
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
            remaining_files: 0,
            remaining_bytes: 0,
            journals: vec![a.journal.display().to_string()],
        });
    }
    // A new drive is probed, and an encrypted one unlocked, before anything is written (the journal too).
    let probed = if fresh_drive {
        Some(check_new(req, &a.journal)?)
    } else {
        None
    };
    // A new drive to format: the session is planned on its capacity first, so a session that cannot go on
    // it is refused before the drive is formatted.
    if let (Some((info, drive_id)), Some((container, files)), None) = (&probed, &new_files, &req.key) {
        let capacity = (info.size.saturating_sub(DATA_OFFSET)) / 4096 * 4096;
        let d = DriveRecord {
            drive_id: drive_id.clone(),
            target: info.path.clone(),
            capacity,
            manifest_slot: super::drive::manifest_slot(capacity),
            encryption: journal::Encryption::Encrypt,
            recovery_key: Zeroizing::new(String::new()),
        };
        new_plan(
            &Replayed::default(),
            &d,
            &req.session_id,
            container.clone(),
            files.clone(),
            req.spill,
        )?;
    }
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
            let s = new_plan(&state, &drive, &req.session_id, container, files, req.spill)?;
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
    let action = if session.record.rest.is_empty() {
        "completed"
    } else {
        "filled"
    };
    let mut r = report(a, &drive, &state, &session, action, Some(hash));
    if session.record.continues_from.is_some() {
        r.journals = chain::session_journals(&a.journal, &req.session_id)?;
    }
    Ok(r)
}

fn same_path(a: &Path, b: &Path) -> bool {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    abs(a) == abs(b)
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
        "completed" | "filled" => {
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
            if r.action == "filled" {
                println!(
                    "The drive is full: {} files of the data set ({} of blob data) are on no drive yet; continue \
                     the session on more drives with: seedship-diskprep PrepImport /j:{} /id:{} \
                     /AdditionalDriveSet:<drives.csv>",
                    r.remaining_files,
                    seedship_shared::units::human(r.remaining_bytes),
                    r.journals.first().unwrap_or(&r.journal),
                    r.session_id
                );
            } else if r.journals.len() > 1 {
                println!(
                    "The session's data set is complete on the drives of journals {}.",
                    r.journals.join(", ")
                );
            }
            println!(
                "Journal {} (mode 0600) records the drive's id, recovery key and manifest hash; create the import \
                 job from the journals with: seedship-diskprep create-job --journal {} ... --job-name NAME",
                r.journal,
                r.journals.first().unwrap_or(&r.journal)
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
