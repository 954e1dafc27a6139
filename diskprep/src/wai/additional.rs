//! v2's `/AdditionalDriveSet:`: a session whose `/DataSet:` did not fit on its drive continues on more
//! drives (`PrepImport /j:<same journal> /id:<same session> /AdditionalDriveSet:<drives.csv>`).
//!
//! seedship keeps one journal per drive, so each additional drive gets its own, beside the first one:
//! `<journal stem>-<session>-<n>.jrn` (`n` from 2, the drive's place in the session). The drive before records
//! `SessionContinued` with the new journal's path, the new one's session `ContinuesFrom` the one before, and
//! its pieces are the `Rest` of the drive before: whole files, and the end of a blob the drive before cut (a
//! part: the blob's bytes from where the drive before stopped, with the next part number, as `s:` spans a blob
//! over drives). Every drive gets its own manifest with its own pieces; the data centre puts the parts of a
//! blob together. `create-job --journal <first>` follows the continuations.

use super::chain::{chain, rest_bytes, session_journals};
use super::drive::{check_new, set_up_drive};
use super::journal::{self, Replayed};
use super::request::{say, PrepImportArgs, PrepImportReport, Request};
use super::session::{new_plan, piece, report, write_session};
use super::source;
use crate::prep::copy::CopyError;
use anyhow::bail;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// `<stem>-<session>-<n>.jrn` beside the first journal of the chain, the first `n` from 2 not taken.
fn next_journal(first: &Path, id: &str, at_least: usize) -> PathBuf {
    let dir = first.parent().unwrap_or(Path::new("."));
    let stem = first
        .file_stem()
        .map_or_else(|| "journal".to_owned(), |s| s.to_string_lossy().into_owned());
    (at_least.max(2)..)
        .map(|n| dir.join(format!("{stem}-{id}-{n}.jrn")))
        .find(|p| !p.exists())
        .expect("an unused name")
}

/// `/AdditionalDriveSet:`: continues session `req.session_id` of journal `a.journal` onto the drives of `csv`,
/// one after the other, until its data set is all on drives. `None`: interrupted (the message says how to
/// resume).
pub(super) fn continue_session(
    a: &PrepImportArgs,
    req: &Request,
    csv: &Path,
    cancel: &AtomicBool,
) -> anyhow::Result<Option<PrepImportReport>> {
    let id = &req.session_id;
    if !req.specs.is_empty() || req.target.is_some() {
        bail!(
            "/AdditionalDriveSet: continues session {id} with the data set it recorded: give only /j:, /id: \
             and the drive set file (a new data set is a new session: /id:NEW /DataSet:)"
        );
    }
    let rows = source::additional_drives(csv)?;
    let first = a.journal.clone();
    // The root of the chain: where the session started (the journal given may be a continuation).
    let root = match session_journals(&first, id)?.first() {
        Some(r) => PathBuf::from(r),
        None => first.clone(),
    };
    let drives = chain(&root, id)?;
    let Some((last_path, last)) = drives.last().cloned() else {
        bail!(
            "journal {} has no session {id}: start it with /InitialDriveSet: (or /t:) and /DataSet:",
            first.display()
        );
    };
    if !last.is_done() {
        bail!(
            "session {id} did not finish on the drive of journal {}: resume it with /j:{} /id:{id} \
             /ResumeSession (or roll it back with /AbortSession) first",
            last_path.display(),
            last_path.display()
        );
    }
    let mut journals: Vec<String> = drives.iter().map(|(p, _)| p.display().to_string()).collect();
    if last.rest.is_empty() {
        bail!(
            "session {id} has all its data set on drives already (journals {}); nothing to continue — for \
             more data start a new session (/id:NEW /DataSet:)",
            journals.join(", ")
        );
    }
    let root_state = journal::read(&root)?;
    let credential = req.credential.clone().or(root_state.credential.clone());
    let mut prev = last_path;
    let mut rest = last.rest.clone();
    let mut out: Option<PrepImportReport> = None;
    let mut unused = Vec::new();
    // The drives the session is on already, and their journals.
    let mut used: Vec<(PathBuf, PathBuf)> = drives
        .iter()
        .filter_map(|(p, _)| Some((journal::read(p).ok()?.drive?.target, p.clone())))
        .collect();
    for row in rows {
        if rest.is_empty() {
            unused.push(row.target.display().to_string());
            continue;
        }
        // The pieces are checked (unchanged since the session started) before anything is written.
        let files = rest
            .iter()
            .map(|r| piece(r, &last.container, id))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let path = next_journal(&root, id, journals.len() + 1);
        let dreq = Request {
            session_id: id.clone(),
            target: Some(row.target.clone()),
            format: row.format || row.encrypt,
            encrypt: row.encrypt,
            yes: req.yes || row.silent,
            key: row.key.clone().map(zeroize::Zeroizing::new),
            specs: Vec::new(),
            spill: true,
            credential: credential.clone(),
            pbkdf: req.pbkdf,
        };
        if let Some((t, j)) = used.iter().find(|(t, _)| same_target(&row.target, t)) {
            bail!(
                "{} already holds session {id} (journal {}): give another drive",
                t.display(),
                j.display()
            );
        }
        let (info, drive_id) = check_new(&dreq, &path)?;
        if a.dry_run {
            say(
                a.json,
                format!(
                    "Dry run: session {id} would continue on {} as drive {drive_id} (journal {}), {} files \
                     ({}) still to copy; nothing was written.",
                    info.path.display(),
                    path.display(),
                    rest.len(),
                    seedship_shared::units::human(rest_bytes(&rest))
                ),
            );
            journals.push(path.display().to_string());
            return Ok(Some(PrepImportReport {
                journal: path.display().to_string(),
                drive_id,
                target: info.path.display().to_string(),
                session_id: id.clone(),
                action: "planned",
                blobs: rest.len(),
                bytes: 0,
                manifest_hash: None,
                sessions: Vec::new(),
                remaining_files: rest.len(),
                remaining_bytes: rest_bytes(&rest),
                journals,
            }));
        }
        journal::create(&path)?;
        // The link first: a later run finds this journal (and a crash leaves it to resume or roll back).
        journal::open(&prev)?.0.record_continued(id, &path)?;
        let (mut j, _) = journal::open(&path)?;
        j.record_context(root_state.log_dir.as_deref())?;
        let drive = set_up_drive(&dreq, info, drive_id, &mut j)?;
        if let Some(c) = &credential {
            j.record_credential(c)?;
        }
        let state = Replayed {
            drive: Some(drive.clone()),
            formatted: true,
            ..Default::default()
        };
        let mut s = new_plan(&state, &drive, id, last.container.clone(), files, true)?;
        s.record.continues_from = Some(prev.clone());
        j.record_session(&s.record)?;
        j.session = id.clone();
        journals.push(path.display().to_string());
        let hash = match write_session(&drive, &state, &s, &mut j, cancel) {
            Ok(h) => h,
            Err(e) => {
                if let Some(CopyError::Interrupted { .. }) = e.downcast_ref::<CopyError>() {
                    eprintln!(
                        "{e}; resume with: seedship-diskprep PrepImport /j:{} /id:{id} /ResumeSession, then \
                         continue with /j:{} /id:{id} /AdditionalDriveSet:<the drives not used yet>",
                        path.display(),
                        root.display()
                    );
                    return Ok(None);
                }
                return Err(e);
            }
        };
        let state = journal::read(&path)?;
        rest = s.record.rest.clone();
        let action = if rest.is_empty() { "completed" } else { "filled" };
        let mut r = report(a, &drive, &state, &s, action, Some(hash));
        r.journal = path.display().to_string();
        r.journals = journals.clone();
        if let Some(prev_report) = &out {
            r.blobs += prev_report.blobs;
            r.bytes += prev_report.bytes;
        }
        if !a.json {
            println!(
                "Session {id} continued on drive {} ({}), journal {}: {} files, {}.",
                r.drive_id,
                r.target,
                r.journal,
                s.files.len(),
                seedship_shared::units::human(s.plan.payload_len)
            );
        }
        out = Some(r);
        used.push((drive.target.clone(), path.clone()));
        prev = path;
    }
    if !unused.is_empty() {
        say(
            a.json,
            format!(
                "Not needed for session {id}: {} (nothing was written to them).",
                unused.join(", ")
            ),
        );
    }
    Ok(Some(out.expect(
        "at least one drive was written: the rest was not empty",
    )))
}

fn same_target(a: &Path, b: &Path) -> bool {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    abs(a) == abs(b)
}
