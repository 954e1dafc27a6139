//! A job's drives arrive at the data centre: the stored job goes Received, Transferring, Packaging and ends
//! Completed (every drive `Completed`) or Closed (a drive ended `CompletedMoreInfo` or never arrived), with
//! each drive's state, copy status, bytes and log URIs in the job store so Get Job shows them. A receive is
//! planned by [`Receipt::check`] (nothing changed when it fails), then [`Receipt::mark_received`] and
//! [`Receipt::import`]; `seedship-emulator receive` runs them in a row, the operator endpoint
//! (`crate::operator`) returns after marking and imports in the background.

use super::import::{import_drive, DriveOutcome, ImportError, ImportSession};
use super::{AzureContainers, ContainerStores, JobInfo};
use crate::config::{EmulatorConfig, EmulatorDir, EmulatorError};
use crate::store::{Store, StoreError, StoredJob};
use seedship_shared::api::{Drive, DriveState, JobState, JobType};
use seedship_shared::blob::Credential;
use seedship_shared::luks::LuksHeader;
use std::path::{Path, PathBuf};

/// Why drives could not be received for a job (nothing about the job was changed).
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error(transparent)]
    Config(#[from] Box<EmulatorError>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Import(#[from] Box<ImportError>),
    #[error("{dir} has no storage account to import into; run `seedship-emulator init` with --storage-account, --storage-endpoint and --storage-key")]
    NoStorageAccount { dir: PathBuf },
    #[error("no job named {job} in the emulator at {dir}")]
    NoSuchJob { job: String, dir: PathBuf },
    #[error("job {job} is {state}: drives are received for an import job in Shipping or Received (set Shipping with Update Job and a DeliveryPackage)")]
    WrongState { job: String, state: JobState },
    #[error("job {job} is not an import job")]
    NotImport { job: String },
    #[error("job {job} imports into storage account {job_account}, the emulator's account is {account}")]
    WrongAccount {
        job: String,
        job_account: String,
        account: String,
    },
    #[error("drive {path} cannot be opened ({source}); give the path of a drive image or device")]
    DriveNotFound {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("drive {path} (id {drive_id}) is given twice (first as {first})")]
    RepeatedDrive {
        path: PathBuf,
        first: PathBuf,
        drive_id: String,
    },
    #[error("drive {path}: cannot read its LUKS2 header ({source}); is it a seedship drive?")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: seedship_shared::luks::LuksError,
    },
    #[error("drive {path} (id {drive_id}) is not in the drive list of job {job} (it lists {listed})")]
    UnknownDrive {
        path: PathBuf,
        drive_id: String,
        job: String,
        listed: String,
    },
    #[error("no drive was given")]
    NoDrive,
    #[error("drives are being received for job {job} already; wait until its import ends")]
    Busy { job: String },
    #[error("cannot start the import thread for job {job}: {source}")]
    Spawn {
        job: String,
        #[source]
        source: std::io::Error,
    },
}

/// What became of a job.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub job: String,
    pub state: JobState,
    pub drives: Vec<DriveOutcome>,
    /// Drives of the job that were not received.
    pub never_received: Vec<String>,
}

fn drives_mut(job: &mut StoredJob) -> &mut Vec<Drive> {
    let j = &mut job.job;
    let top = j.drive_list.as_ref().is_some_and(|t| !t.is_empty());
    if top || j.properties.drive_list.is_none() {
        j.drive_list.get_or_insert_with(Vec::new)
    } else {
        j.properties.drive_list.get_or_insert_with(Vec::new)
    }
}

fn set_drive(job: &mut StoredJob, id: &str, f: impl FnOnce(&mut Drive)) {
    if let Some(d) = drives_mut(job)
        .iter_mut()
        .find(|d| d.drive_id.eq_ignore_ascii_case(id))
    {
        f(d);
    }
}

/// Applies `f` to the job as stored now (so a customer's Update Job during the import, e.g. CancelRequested,
/// is kept), with its state set to `state` when given, and stores it.
fn change(
    store: &Store,
    job: &mut StoredJob,
    state: Option<JobState>,
    f: impl FnOnce(&mut StoredJob),
) -> Result<(), StoreError> {
    if let Some(current) = store.get(&job.subscription, &job.name)? {
        *job = current;
    }
    f(job);
    if let Some(state) = state {
        job.state = state;
        job.job.properties.state = None;
        job.finished = state.is_finished().then_some(store.now()?);
    }
    store.save(job)
}

/// The emulator's storage account and the containers the import writes into.
pub fn account_stores(
    dir: &Path,
    config: &EmulatorConfig,
) -> Result<(String, AzureContainers), ReceiveError> {
    let account = config
        .storage_account
        .as_ref()
        .ok_or_else(|| ReceiveError::NoStorageAccount {
            dir: dir.to_path_buf(),
        })?;
    let stores = AzureContainers::new(
        &account.endpoint,
        &account.name,
        Credential::SharedKey(account.key.clone()),
    );
    Ok((account.name.clone(), stores))
}

/// Receives `drives` for job `job_name` of the emulator in `dir` and imports them into the storage account
/// of its configuration (blocking; from async code call it in `spawn_blocking`). `seedship-emulator receive`.
pub fn receive_and_import(
    dir: &Path,
    job_name: &str,
    drives: &[PathBuf],
) -> Result<JobOutcome, ReceiveError> {
    let edir = EmulatorDir::new(dir);
    let config = EmulatorConfig::load(&edir).map_err(Box::new)?;
    let (account, stores) = account_stores(dir, &config)?;
    let store = Store::open(&edir.database())?;
    let mut found = None;
    for sub in &config.subscriptions {
        if let Some(j) = store.get(&sub.id, job_name)? {
            found = Some(j);
            break;
        }
    }
    let job = found.ok_or_else(|| ReceiveError::NoSuchJob {
        job: job_name.to_owned(),
        dir: dir.to_path_buf(),
    })?;
    receive_into(&store, job, &account, &stores, drives)
}

/// [`receive_and_import`] with the store, the job and the account's containers given: [`Receipt::check`],
/// [`Receipt::mark_received`], [`Receipt::import`].
pub fn receive_into(
    store: &Store,
    job: StoredJob,
    account: &str,
    stores: &dyn ContainerStores,
    drives: &[PathBuf],
) -> Result<JobOutcome, ReceiveError> {
    let mut receipt = Receipt::check(job, account, drives)?;
    receipt.mark_received(store)?;
    receipt.import(store, stores)
}

/// Drives checked against their job, nothing changed yet: the plan of a receive. The CLI and the operator
/// endpoint both go through it, the endpoint running [`Receipt::import`] in the background.
#[derive(Debug)]
pub struct Receipt {
    job: StoredJob,
    info: JobInfo,
    /// (image path, drive id from its LUKS2 label), in the order given.
    drives: Vec<(PathBuf, String)>,
}

impl Receipt {
    /// Checks that `job` takes drives now (an import job of `account` in Shipping or Received) and reads the
    /// LUKS2 label of every drive: each must be in the job's drive list.
    pub fn check(job: StoredJob, account: &str, drives: &[PathBuf]) -> Result<Receipt, ReceiveError> {
        let name = job.name.clone();
        if !matches!(job.state, JobState::Shipping | JobState::Received) {
            return Err(ReceiveError::WrongState {
                job: name,
                state: job.state,
            });
        }
        if job.job.properties.job_type == Some(JobType::Export) {
            return Err(ReceiveError::NotImport { job: name });
        }
        if job.account != account {
            return Err(ReceiveError::WrongAccount {
                job: name,
                job_account: job.account.clone(),
                account: account.to_owned(),
            });
        }
        if drives.is_empty() {
            return Err(ReceiveError::NoDrive);
        }
        let info = JobInfo::from_job(&job.job);
        let mut ids: Vec<(PathBuf, String)> = Vec::new();
        for path in drives {
            let id = drive_id(path)?;
            if info.drive(&id).is_none() {
                return Err(ReceiveError::UnknownDrive {
                    path: path.clone(),
                    drive_id: id,
                    job: name,
                    listed: info
                        .drives
                        .iter()
                        .map(|d| d.drive_id.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            if let Some((first, _)) = ids.iter().find(|(_, seen)| seen.eq_ignore_ascii_case(&id)) {
                return Err(ReceiveError::RepeatedDrive {
                    path: path.clone(),
                    first: first.clone(),
                    drive_id: id,
                });
            }
            ids.push((path.clone(), id));
        }
        Ok(Receipt {
            job,
            info,
            drives: ids,
        })
    }

    /// The job's name.
    pub fn job_name(&self) -> &str {
        &self.job.name
    }

    /// (image path, drive id) of the drives received.
    pub fn drives(&self) -> &[(PathBuf, String)] {
        &self.drives
    }

    /// Stores the job `Received`, with the given drives `Received`.
    pub fn mark_received(&mut self, store: &Store) -> Result<(), StoreError> {
        let drives = &self.drives;
        change(store, &mut self.job, Some(JobState::Received), |job| {
            for (_, id) in drives {
                set_drive(job, id, |d| d.state = Some(DriveState::Received));
            }
        })
    }

    /// Imports the drives (blocking), storing every step: job Transferring, each drive Transferring then
    /// Completed or CompletedMoreInfo, drives not given NeverReceived, job Packaging, then Completed or Closed.
    pub fn import(mut self, store: &Store, stores: &dyn ContainerStores) -> Result<JobOutcome, ReceiveError> {
        let job = &mut self.job;
        change(store, job, Some(JobState::Transferring), |_| {})?;
        let mut session = ImportSession::default();
        let mut outcomes = Vec::new();
        for (path, id) in &self.drives {
            change(store, job, None, |job| {
                set_drive(job, id, |d| d.state = Some(DriveState::Transferring))
            })?;
            let out = import_drive(path, &self.info, stores, &mut session, store.now()?).map_err(Box::new)?;
            change(store, job, None, |job| {
                set_drive(job, id, |d| {
                    d.state = Some(out.state);
                    d.copy_status = Some(out.status.as_str().to_owned());
                    d.percent_complete = Some(100);
                    d.bytes_succeeded = Some(out.bytes_written);
                    d.error_log_uri = Some(stores.blob_uri(&out.error_log.0, &out.error_log.1));
                    d.verbose_log_uri = out.verbose_log.as_ref().map(|(c, n)| stores.blob_uri(c, n));
                })
            })?;
            outcomes.push(out);
        }
        let received = &self.drives;
        let mut never = Vec::new();
        change(store, job, Some(JobState::Packaging), |job| {
            for d in drives_mut(job).iter_mut() {
                if !received
                    .iter()
                    .any(|(_, id)| id.eq_ignore_ascii_case(&d.drive_id))
                {
                    d.state = Some(DriveState::NeverReceived);
                    never.push(d.drive_id.clone());
                }
            }
        })?;
        let clean = never.is_empty() && outcomes.iter().all(|o| o.state == DriveState::Completed);
        let end = if clean {
            JobState::Completed
        } else {
            JobState::Closed
        };
        change(store, job, Some(end), |job| {
            job.job.properties.percent_complete = Some(100)
        })?;
        Ok(JobOutcome {
            job: job.name.clone(),
            state: end,
            drives: outcomes,
            never_received: never,
        })
    }
}

/// The drive id of a drive image: its LUKS2 label.
fn drive_id(path: &Path) -> Result<String, ReceiveError> {
    let file = std::fs::File::open(path).map_err(|source| ReceiveError::DriveNotFound {
        path: path.to_path_buf(),
        source,
    })?;
    let header = LuksHeader::read(&file).map_err(|source| ReceiveError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(header.label().to_owned())
}
