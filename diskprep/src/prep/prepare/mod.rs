//! Preparing shipping drives: plan, then execute with a journal.
//!
//! [`plan`] does every check before anything is written: it picks the job (asking when the staging
//! location holds several), checks the `p:` rule, checks the staging data (lengths and BLAKE3), probes the
//! drives (refusing the system disk, mounted and in-use devices, drives too small), and spreads the blobs
//! over the drives, saying how much more space is needed when they are not enough. [`execute`] formats
//! each drive (asking the operator to type the drive id unless `--yes`), copies, writes the manifest,
//! reads the drive back and checks it. Drives given together are written in parallel. A rerun after a
//! crash, kill or Ctrl-C finds the session beside the job and resumes the interrupted drive at its last
//! checkpoint without reformatting it; finished drives are not touched.
//!
//! Everything the operator sees or answers goes through [`PrepUi`]; this module prints nothing. The plan and
//! its types are here, [`execute`] in the submodule `execute`.

use crate::prep::copy::CopyError;
use crate::prep::drive::{DriveError, DriveInfo, DriveKind, SystemView};
use crate::prep::keyfile::KeyFileError;
use crate::prep::layout::DriveLayout;
use crate::prep::plan::{BlobExtents, Cursor, DrivePlan, PlanError};
use crate::prep::session::{DriveState, SessionError, SessionState};
use crate::prep::staging::{check_job, find_jobs, StagedJob, StagingCheckError};
use crate::prep::verify::VerifyError;
use seedship_shared::luks::{LuksError, Pbkdf};
use seedship_shared::progress::Progress;
use seedship_shared::publish_settings::{PublishSettings, PublishSettingsError};
use seedship_shared::recovery::RecoveryKeyError;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod execute;
pub use execute::execute;

/// Where the LUKS2 data segment starts on every drive (cryptsetup's default for a 16 MiB header area).
pub const DATA_OFFSET: u64 = crate::prep::plan::DRIVE_HEADER;
/// The smallest drive accepted: the headers plus room for one 4 MiB segment and a manifest.
pub const MIN_DRIVE: u64 = DATA_OFFSET + (8 << 20);

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct PrepOptions {
    pub staging: PathBuf,
    pub publish_settings: Option<PathBuf>,
    /// The job to prepare, when the staging location holds several.
    pub job: Option<String>,
    /// Target drives (block devices or image files); empty means ask, one at a time.
    pub drives: Vec<PathBuf>,
    /// Create each missing `--drive` as a sparse image file of this size.
    pub create_image: Option<u64>,
    /// Format without asking (silent mode).
    pub yes: bool,
    /// Read each drive back after writing.
    pub verify: bool,
    /// Where the recovery keys go (default `<staging>/<job>/diskprep/keys.tsv`).
    pub key_file: Option<PathBuf>,
    /// Plan and stop.
    pub dry_run: bool,
    /// The keyslot KDF of new drives.
    pub pbkdf: Pbkdf,
    /// The name of this machine, to apply the `p:` rule.
    pub host: String,
}

/// Why preparation stopped.
#[derive(Debug, thiserror::Error)]
pub enum PrepError {
    #[error(transparent)]
    Staging(#[from] StagingCheckError),
    #[error(transparent)]
    Drive(#[from] DriveError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    PublishSettings(#[from] PublishSettingsError),
    #[error("drive {drive}: {source}")]
    Luks {
        drive: String,
        #[source]
        source: LuksError,
    },
    #[error("the recovery key of drive {drive} in the key file is not valid: {source}")]
    Key {
        drive: String,
        #[source]
        source: RecoveryKeyError,
    },
    #[error("no job named {name} in {staging} (it holds: {available})")]
    NoSuchJob {
        name: String,
        staging: PathBuf,
        available: String,
    },
    #[error(
        "this machine ({host}) is not the source machine of job {job} ({source_host}): \
         give the publish-settings file with p:<file> (or --publish-settings)"
    )]
    PublishSettingsRequired {
        host: String,
        job: String,
        source_host: String,
    },
    #[error("drive {drive} was prepared by an earlier run but its recovery key is not in {key_file}; restore the key file or start over by removing {state_dir}")]
    MissingKey {
        drive: String,
        key_file: PathBuf,
        state_dir: PathBuf,
    },
    #[error("formatting {target} was not confirmed; nothing was written")]
    NotConfirmed { target: PathBuf },
    #[error("no drive was given; nothing was written")]
    NoDrive,
    #[error("{0}")]
    Ui(String),
}

/// What happened worth telling the operator.
#[derive(Debug)]
pub enum PrepEvent<'a> {
    JobSelected(&'a StagedJob),
    Checked {
        job: &'a str,
        blobs: usize,
        bytes: u64,
    },
    PlanReady(&'a PrepPlan),
    /// A drive of an earlier run that was already complete and checked: left alone.
    DriveSkipped {
        drive: &'a str,
    },
    DriveWritten {
        drive: &'a str,
        bytes: u64,
        manifest_hash: &'a str,
        verified: bool,
    },
}

/// The operator, as the library sees them.
pub trait PrepUi {
    /// Several jobs are staged: the index of the one to prepare.
    fn choose_job(&mut self, jobs: &[StagedJob]) -> Result<usize, PrepError>;
    /// The path of drive number `number` (from 1), with `needed` payload bytes still to place;
    /// `None` stops.
    fn ask_drive(&mut self, number: usize, needed: u64) -> Result<Option<PathBuf>, PrepError>;
    /// Shows the drive and asks the operator to confirm formatting by typing its id.
    fn confirm_format(&mut self, info: &DriveInfo, drive_id: &str) -> Result<bool, PrepError>;
    /// Something to tell.
    fn event(&mut self, event: PrepEvent<'_>);
    /// Progress of one long step (checking staging, writing or verifying one drive).
    fn progress(&mut self, label: &str, total: u64) -> Box<dyn Progress>;
}

/// A drive of the plan.
#[derive(Debug, Clone)]
pub struct PlannedDrive {
    pub info: DriveInfo,
    pub drive_id: String,
    /// Payload bytes it holds.
    pub capacity: u64,
    pub plan: DrivePlan,
    /// Its state in an earlier run, if it belongs to one.
    pub resumed: Option<DriveState>,
    /// The size of the image file `--create-image` makes for it once the run is confirmed (the file does
    /// not exist yet: a dry run or a refused run leaves nothing behind).
    pub create_image: Option<u64>,
}

/// Everything decided before anything is written.
#[derive(Debug, Clone)]
pub struct PrepPlan {
    pub job: StagedJob,
    pub layout: DriveLayout,
    pub drives: Vec<PlannedDrive>,
    /// For each drive, each part's part number when its blob spans drives.
    pub part_numbers: Vec<Vec<Option<u32>>>,
    pub key_file: PathBuf,
    pub total_bytes: u64,
}

/// What was done.
#[derive(Debug, Clone)]
pub struct PrepReport {
    pub job: String,
    pub drives: Vec<DriveReport>,
    pub key_file: PathBuf,
    pub elapsed: Duration,
}

/// One prepared drive.
#[derive(Debug, Clone)]
pub struct DriveReport {
    pub drive_id: String,
    pub target: PathBuf,
    pub bytes: u64,
    pub manifest_hash: String,
    pub manifest_file: String,
    pub verified: bool,
    /// Whether this run wrote it (false: prepared and verified by an earlier run, skipped).
    pub written: bool,
}

/// Chooses the job and checks it, the `p:` rule included.
pub fn select_job(
    opts: &PrepOptions,
    ui: &mut dyn PrepUi,
) -> Result<(StagedJob, Vec<BlobExtents>), PrepError> {
    let jobs = find_jobs(&opts.staging)?;
    let job = match &opts.job {
        Some(name) => jobs
            .iter()
            .find(|j| &j.descriptor.job_name == name)
            .cloned()
            .ok_or_else(|| PrepError::NoSuchJob {
                name: name.clone(),
                staging: opts.staging.clone(),
                available: jobs
                    .iter()
                    .map(|j| j.descriptor.job_name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?,
        None => {
            // Jobs `create-job --journal` recorded here have no staged backup: not offered (when there is
            // nothing else, the check below says why).
            let staged: Vec<StagedJob> = jobs
                .iter()
                .filter(|j| !j.descriptor.is_from_journals())
                .cloned()
                .collect();
            match staged.len() {
                0 => jobs[0].clone(),
                1 => staged[0].clone(),
                _ => {
                    let i = ui.choose_job(&staged)?;
                    staged
                        .get(i)
                        .cloned()
                        .ok_or_else(|| PrepError::Ui(format!("no job number {}", i + 1)))?
                }
            }
        }
    };
    ui.event(PrepEvent::JobSelected(&job));
    let d = &job.descriptor;
    // Resource Manager jobs sign in with the recorded Entra ID application (or options given now): no p: rule
    let classic = d.api.is_classic();
    match &opts.publish_settings {
        Some(p) if classic => {
            PublishSettings::load(p)?.subscription(&d.subscription)?;
        }
        Some(_) => {}
        None if classic && !d.source_host.eq_ignore_ascii_case(&opts.host) => {
            return Err(PrepError::PublishSettingsRequired {
                host: opts.host.clone(),
                job: d.job_name.clone(),
                source_host: d.source_host.clone(),
            })
        }
        None => {}
    }
    let progress = ui.progress("checking staging", job.total_len());
    let extents = check_job(&job, progress.as_ref())?;
    progress.finish();
    ui.event(PrepEvent::Checked {
        job: &d.job_name,
        blobs: extents.len(),
        bytes: job.total_len(),
    });
    Ok((job, extents))
}

/// The session of a job: the earlier one, or a new one.
fn session_of(job: &StagedJob) -> Result<SessionState, PrepError> {
    if let Some(s) = SessionState::load(&job.dir)? {
        return Ok(s);
    }
    let d = &job.descriptor;
    // WAImportExport session ids: 3 to 30 characters of [A-Za-z0-9_#-]; job names fit once cut to 30.
    let mut session_id: String = d.job_name.chars().take(30).collect();
    while session_id.len() < 3 {
        session_id.push('_');
    }
    Ok(SessionState {
        session_id,
        job_name: d.job_name.clone(),
        mtime: d.created,
        drives: Vec::new(),
    })
}

/// What [`probe_drive`] found: the drive, its id, its state in an earlier run, the image size to create.
type Probed = (DriveInfo, String, Option<DriveState>, Option<u64>);

/// Probes one target: describes it (an image `--create-image` would make, without making it yet), applies
/// the refusals, finds its id.
fn probe_drive(
    opts: &PrepOptions,
    view: &SystemView,
    session: &SessionState,
    target: &Path,
) -> Result<Probed, PrepError> {
    let (info, create) = match opts.create_image {
        Some(size) if std::fs::symlink_metadata(target).is_err() => {
            let parent = target
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if let Err(e) = std::fs::metadata(parent) {
                return Err(DriveError::Io {
                    path: parent.to_owned(),
                    source: e,
                }
                .into());
            }
            let info = DriveInfo {
                path: target.to_owned(),
                kind: DriveKind::ImageFile,
                size: size / 4096 * 4096,
                model: Some("image file (to be created)".to_owned()),
                serial: None,
                refusals: Vec::new(),
            };
            (info, Some(size))
        }
        _ => (view.probe(target)?, None),
    };
    info.check_usable(MIN_DRIVE)?;
    let earlier = session.drive_at(target);
    let drive_id = match (earlier, &info.serial, info.kind) {
        (Some(d), _, _) => d.drive_id.clone(),
        (None, Some(serial), DriveKind::BlockDevice) => serial.clone(),
        (None, _, _) => derived_drive_id(session, target),
    };
    Ok((info, drive_id, earlier.map(|d| d.state), create))
}

/// A drive id for a drive without a hardware serial (an image file): `SEED` and 12 hex digits of a BLAKE3
/// hash of the job (its session id and creation time) and the drive's absolute path. Derived rather than
/// random so that a dry run shows the id the real run will use, and every rerun agrees; two drives of one
/// job differ by path, and the same path in another job (another name or creation time) gets another id.
fn derived_drive_id(session: &SessionState, target: &Path) -> String {
    let path = std::path::absolute(target).unwrap_or_else(|_| target.to_owned());
    let mut h = blake3::Hasher::new();
    h.update(b"seedship drive id v1\0");
    h.update(session.job_name.as_bytes());
    h.update(b"\0");
    h.update(&session.mtime.to_le_bytes());
    h.update(path.as_os_str().as_encoded_bytes());
    let hex = h.finalize().to_hex();
    format!("SEED{}", hex[..12].to_ascii_uppercase())
}

/// Plans the whole preparation; writes nothing (image files `--create-image` asks for are made by
/// [`execute`], once the run is confirmed).
pub fn plan(opts: &PrepOptions, ui: &mut dyn PrepUi) -> Result<PrepPlan, PrepError> {
    let (job, extents) = select_job(opts, ui)?;
    let session = session_of(&job)?;
    let layout = DriveLayout {
        session: session.session_id.clone(),
        container: job.descriptor.container.clone(),
        mtime: session.mtime,
        manifest_slot: None,
        data_from: None,
    };
    let view = SystemView::live()?;
    let mut cursor = Cursor::new(&extents);
    let mut drives = Vec::new();
    // Drives of an earlier run come first, in their order, so the plan is the same as then.
    let targets: Vec<PathBuf> = if opts.drives.is_empty() {
        session.drives.iter().map(|d| d.target.clone()).collect()
    } else {
        let mut t: Vec<PathBuf> = session.drives.iter().map(|d| d.target.clone()).collect();
        t.extend(
            opts.drives
                .iter()
                .filter(|p| session.drive_at(p).is_none())
                .cloned(),
        );
        t
    };
    let interactive = opts.drives.is_empty();
    let mut next = targets.into_iter();
    while !cursor.is_done() {
        let target = match next.next() {
            Some(t) => t,
            None if interactive => match ui.ask_drive(drives.len() + 1, cursor.remaining_len(&layout))? {
                Some(t) => t,
                None => return Err(PrepError::NoDrive),
            },
            None => {
                return Err(PlanError::NotEnoughSpace {
                    missing: cursor.remaining_len(&layout),
                    filled: drives.len(),
                }
                .into())
            }
        };
        let (info, drive_id, resumed, create_image) = probe_drive(opts, &view, &session, &target)?;
        let capacity = session
            .drive_at(&target)
            .map_or((info.size - DATA_OFFSET) / 4096 * 4096, |d| d.capacity);
        let plan = cursor.fill_drive(capacity, &layout);
        if plan.parts.is_empty() {
            return Err(PlanError::DriveTooSmall {
                drive: drives.len() + 1,
                capacity,
                needed: MIN_DRIVE - DATA_OFFSET,
            }
            .into());
        }
        drives.push(PlannedDrive {
            info,
            drive_id,
            capacity,
            plan,
            resumed,
            create_image,
        });
    }
    let part_numbers = part_numbers(&drives);
    let key_file = opts
        .key_file
        .clone()
        .unwrap_or_else(|| SessionState::dir_of(&job.dir).join("keys.tsv"));
    let total_bytes = drives.iter().map(|d| d.plan.payload_len).sum();
    let plan = PrepPlan {
        job,
        layout,
        drives,
        part_numbers,
        key_file,
        total_bytes,
    };
    ui.event(PrepEvent::PlanReady(&plan));
    Ok(plan)
}

/// Part numbers (from 1) of blobs that span drives; `None` for a blob wholly on one drive.
fn part_numbers(drives: &[PlannedDrive]) -> Vec<Vec<Option<u32>>> {
    let mut count = std::collections::HashMap::<&str, u32>::new();
    for d in drives {
        for p in &d.plan.parts {
            *count.entry(&p.blob).or_default() += 1;
        }
    }
    let mut seen = std::collections::HashMap::<&str, u32>::new();
    drives
        .iter()
        .map(|d| {
            d.plan
                .parts
                .iter()
                .map(|p| {
                    let n = seen.entry(&p.blob).or_default();
                    *n += 1;
                    (count[p.blob.as_str()] > 1).then_some(*n)
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(job: &str, mtime: i64) -> SessionState {
        SessionState {
            session_id: job.into(),
            job_name: job.into(),
            mtime,
            drives: Vec::new(),
        }
    }

    #[test]
    fn a_derived_drive_id_is_stable_and_differs_by_drive_and_job() {
        let s = session("job1", 1_700_000_000);
        let a = derived_drive_id(&s, Path::new("/srv/d1.img"));
        assert_eq!(a, derived_drive_id(&s, Path::new("/srv/d1.img")));
        assert!(
            a.len() == 16
                && a.starts_with("SEED")
                && a[4..]
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)),
            "{a}"
        );
        assert_ne!(a, derived_drive_id(&s, Path::new("/srv/d2.img")));
        assert_ne!(
            a,
            derived_drive_id(&session("job2", 1_700_000_000), Path::new("/srv/d1.img"))
        );
        assert_ne!(
            a,
            derived_drive_id(&session("job1", 1_700_000_001), Path::new("/srv/d1.img"))
        );
    }
}
