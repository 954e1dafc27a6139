//! Executing a [`PrepPlan`](super::PrepPlan): each drive formatted (its recovery key in the key file and the
//! session first), copied from its last checkpoint, its manifest written, read back and checked; drives
//! given together are written in parallel, each with its own journal.

use super::{
    session_of, DriveReport, PlannedDrive, PrepError, PrepEvent, PrepOptions, PrepPlan, PrepReport, PrepUi,
    DATA_OFFSET,
};
use crate::prep::copy::{copy_parts, finish_payload, CopyError};
use crate::prep::drive::DriveError;
use crate::prep::keyfile::{self, KeyEntry};
use crate::prep::layout::MANIFEST_PATH;
use crate::prep::readback::check_head_and_tail;
use crate::prep::session::{
    build_manifest, DriveJournal, DriveState, SessionDrive, SessionError, SessionState,
};
use crate::prep::source::StagingFiles;
use crate::prep::verify::verify_written;
use seedship_shared::journal::records::DiskprepRecord;
use seedship_shared::luks::direct::DriveFile;
use seedship_shared::luks::payload::DriveTarget;
use seedship_shared::luks::{self, LuksFormat, LuksVolume};
use seedship_shared::progress::Progress;
use seedship_shared::recovery::RecoveryKey;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Formats, copies, finishes and verifies every drive of the plan.
pub fn execute(
    plan: &PrepPlan,
    opts: &PrepOptions,
    ui: &mut dyn PrepUi,
    cancel: &AtomicBool,
) -> Result<PrepReport, PrepError> {
    let started = Instant::now();
    let mut session = session_of(&plan.job)?;
    // Confirm every new drive before formatting any.
    for d in plan.drives.iter().filter(|d| d.resumed.is_none()) {
        if !opts.yes && !ui.confirm_format(&d.info, &d.drive_id)? {
            return Err(PrepError::NotConfirmed {
                target: d.info.path.clone(),
            });
        }
    }
    for d in &plan.drives {
        if let Some(size) = d.create_image {
            crate::prep::drive::create_image(&d.info.path, size)?;
        }
    }
    let keys = keyfile::read(&plan.key_file).unwrap_or_default();
    let mut opened = Vec::new();
    let mut reports = Vec::new();
    for (i, d) in plan.drives.iter().enumerate() {
        if let (Some(DriveState::Verified), Some(earlier)) = (d.resumed, session.drive_at(&d.info.path)) {
            ui.event(PrepEvent::DriveSkipped { drive: &d.drive_id });
            reports.push(DriveReport {
                drive_id: d.drive_id.clone(),
                target: d.info.path.clone(),
                bytes: d.plan.payload_len,
                manifest_hash: earlier.manifest_hash.clone().unwrap_or_default(),
                manifest_file: MANIFEST_PATH.to_owned(),
                verified: true,
                written: false,
            });
            continue;
        }
        // Writing counts payload bytes; the read-back check counts the data bytes once more.
        let check: u64 = d
            .plan
            .parts
            .iter()
            .flat_map(|p| &p.segments)
            .map(|r| r.end - r.start)
            .sum();
        let total = d.plan.payload_len + if opts.verify { check } else { 0 };
        let progress = ui.progress(&format!("drive {} ({})", i + 1, d.drive_id), total);
        let key = match d.resumed {
            Some(_) => keys
                .iter()
                .find(|k| k.drive_id == d.drive_id)
                .map(|k| RecoveryKey::parse(&k.recovery_key))
                .transpose()
                .map_err(|source| PrepError::Key {
                    drive: d.drive_id.clone(),
                    source,
                })?
                .ok_or_else(|| PrepError::MissingKey {
                    drive: d.drive_id.clone(),
                    key_file: plan.key_file.clone(),
                    state_dir: SessionState::dir_of(&plan.job.dir),
                })?,
            None => new_drive(plan, opts, &mut session, d)?,
        };
        opened.push((i, d, key, progress));
    }
    let results: Vec<Result<DriveReport, PrepError>> = std::thread::scope(|s| {
        let handles: Vec<_> = opened
            .iter()
            .map(|(i, d, key, progress)| {
                let numbers = &plan.part_numbers[*i];
                s.spawn(move || write_drive(plan, opts, d, key, numbers, progress.as_ref(), cancel))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("drive threads do not panic"))
            .collect()
    });
    let mut first_error = None;
    for (r, (_, d, _, progress)) in results.into_iter().zip(&opened) {
        progress.finish();
        match r {
            Ok(rep) => {
                let state = if rep.verified {
                    DriveState::Verified
                } else {
                    DriveState::Written
                };
                session.set_state(&d.drive_id, state, Some(rep.manifest_hash.clone()));
                ui.event(PrepEvent::DriveWritten {
                    drive: &rep.drive_id,
                    bytes: rep.bytes,
                    manifest_hash: &rep.manifest_hash,
                    verified: rep.verified,
                });
                reports.push(rep);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    session.save(&plan.job.dir)?;
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(PrepReport {
        job: plan.job.descriptor.job_name.clone(),
        drives: reports,
        key_file: plan.key_file.clone(),
        elapsed: started.elapsed(),
    })
}

/// Formats a new drive: its key goes to the key file first, then the session records it, then the header
/// is written.
fn new_drive(
    plan: &PrepPlan,
    opts: &PrepOptions,
    session: &mut SessionState,
    d: &PlannedDrive,
) -> Result<RecoveryKey, PrepError> {
    let luks_err = |source| PrepError::Luks {
        drive: d.drive_id.clone(),
        source,
    };
    let key = RecoveryKey::generate().map_err(|source| PrepError::Key {
        drive: d.drive_id.clone(),
        source,
    })?;
    if let Some(parent) = plan.key_file.parent() {
        std::fs::create_dir_all(parent).map_err(|source| SessionError::Io {
            path: parent.to_owned(),
            source,
        })?;
    }
    keyfile::append(
        &plan.key_file,
        &KeyEntry {
            job: plan.job.descriptor.job_name.clone(),
            drive_id: d.drive_id.clone(),
            recovery_key: key.as_str().to_owned(),
            target: d.info.path.display().to_string(),
        },
    )?;
    session.drives.push(SessionDrive {
        drive_id: d.drive_id.clone(),
        target: d.info.path.clone(),
        capacity: d.capacity,
        state: DriveState::Formatted,
        manifest_hash: None,
    });
    let file = open_target(&d.info.path)?;
    let mut format = LuksFormat::new(d.drive_id.clone());
    format.pbkdf = opts.pbkdf;
    format.data_offset = DATA_OFFSET;
    luks::format(&file, d.info.size, key.passphrase(), &format).map_err(luks_err)?;
    session.save(&plan.job.dir)?;
    Ok(key)
}

fn open_target(path: &Path) -> Result<std::fs::File, PrepError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| {
            DriveError::Io {
                path: path.to_owned(),
                source,
            }
            .into()
        })
}

/// Copies one drive from its last checkpoint, writes its manifest and checks it.
fn write_drive(
    plan: &PrepPlan,
    opts: &PrepOptions,
    d: &PlannedDrive,
    key: &RecoveryKey,
    part_numbers: &[Option<u32>],
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<DriveReport, PrepError> {
    let file = open_target(&d.info.path)?;
    let volume = LuksVolume::open(&file, key.passphrase()).map_err(|source| PrepError::Luks {
        drive: d.drive_id.clone(),
        source,
    })?;
    // Whole chunks go past the page cache, so the read-back below reads the drive, not memory.
    let device = DriveFile::new(&file, &d.info.path);
    let target = DriveTarget {
        device: &device,
        cipher: &volume,
        data_offset: volume.data_offset(),
        capacity: d.capacity.min(volume.payload_len()),
    };
    let mut journal = DriveJournal::open(&plan.job.dir, &d.drive_id)?;
    let report = |manifest_hash: String, verified| DriveReport {
        drive_id: d.drive_id.clone(),
        target: d.info.path.clone(),
        bytes: d.plan.payload_len,
        manifest_hash,
        manifest_file: MANIFEST_PATH.to_owned(),
        verified,
        written: true,
    };
    let layout = &plan.layout;
    let session_id = layout.session.clone();
    if let (Some(DriveState::Written), Some(hash)) = (d.resumed, journal.manifest_hash.clone()) {
        // Complete in an earlier run: only the check is left.
        if !opts.verify {
            return Ok(report(hash, false));
        }
        let segments = journal.checkpoint.segments.clone();
        verify_written(&d.drive_id, &d.plan, layout, target, &segments, &hash, progress)?;
        journal.record_verified(segments.len())?;
        return Ok(report(hash, true));
    }
    if journal.checkpoint.payload_offset > 0 {
        tracing::info!(drive = %d.drive_id, offset = journal.checkpoint.payload_offset, "resuming the copy");
    }
    let resume = journal.checkpoint.clone();
    journal.record(&DiskprepRecord::SessionStart {
        session_id: session_id.clone(),
        job_name: plan.job.descriptor.job_name.clone(),
        drive_id: d.drive_id.clone(),
        tar_offset: resume.payload_offset,
    })?;
    let digests = plan.job.descriptor.blobs.iter();
    let source = StagingFiles::new(
        plan.job.blobs_dir(),
        digests.map(|b| (b.name.clone(), b.blake3.clone())),
    );
    let copied = copy_parts(
        &d.drive_id,
        &d.plan,
        layout,
        &source,
        &target,
        resume,
        &mut journal,
        progress,
        cancel,
        opts.verify,
    );
    let done = match copied {
        Err(e @ CopyError::StagedDigest { .. }) => {
            journal.restart(&e.to_string())?;
            return Err(e.into());
        }
        other => other?,
    };
    let text = build_manifest(&d.drive_id, &d.plan, layout, part_numbers, &done.segments)?;
    let manifest = finish_payload(&d.drive_id, &d.plan, layout, &target, &text)?;
    let manifest_hash = seedship_shared::manifest::manifest_hash(&manifest);
    journal.record(&DiskprepRecord::DriveInfo {
        drive_id: d.drive_id.clone(),
        manifest_file: MANIFEST_PATH.to_owned(),
        manifest_hash: manifest_hash.clone(),
    })?;
    journal.record(&DiskprepRecord::SessionDone {
        session_id,
        tar_offset: d.plan.payload_len,
    })?;
    if !opts.verify {
        return Ok(report(manifest_hash, false));
    }
    // The data members were read back and checked during the copy; the manifest and end marker now.
    check_head_and_tail(&d.drive_id, &d.plan, layout, &target, &manifest)?;
    journal.record_verified(done.segments.len())?;
    Ok(report(manifest_hash, true))
}
