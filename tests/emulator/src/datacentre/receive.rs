//! A job's drives arrive at the data centre: the stored job goes Received, Transferring, Packaging and ends
//! Completed (every drive `Completed`) or Closed (a drive ended `CompletedMoreInfo` or never arrived), with
//! each drive's state, copy status, bytes and log URIs in the job store so Get Job shows them. A receive is
//! planned by [`Receipt::check`] (nothing changed when it fails), then [`Receipt::mark_received`] and
//! [`Receipt::import`]; `seedship-emulator receive` runs them in a row, the operator endpoint
//! (`crate::operator`) returns after marking and imports in the background.

use super::import::{import_drive, DriveOutcome, ImportError, ImportSession};
use super::sas::{self, SasContainers};
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
    #[error(
        "job {job} is {state}: the data centre receives drives only once they are shipped; run \
         `seedship-diskprep u: s:<staging>` (the carrier and tracking number) on the machine that prepared \
         them, then receive again (through the API: Update Job with State Shipping and a DeliveryPackage)"
    )]
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
    #[error("job {job} gives a StorageAccountKey that is not the key of storage account {account}; the data centre cannot write with it (update the job's key, or create it again)")]
    WrongKey { job: String, account: String },
    #[error("job {job} gives a ContainerSas that storage account {account} does not accept: the SAS {reason}; the data centre cannot write with it (update the job's SAS, or create it again)")]
    BadSas {
        job: String,
        account: String,
        reason: super::sas::SasRefusal,
    },
    #[error("drive {name} is not a regular file in the emulator's inbox folder; put the drive image there and give its file name")]
    NotInInbox { name: PathBuf },
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

/// Checks the job's storage credential against the account, as the service does before it writes with it,
/// and gives the containers to import into, written with that credential: a `StorageAccountKey` must equal
/// the account's key (compared without an early exit); a `ContainerSas` must verify with the account's key,
/// be a container SAS that grants write and be valid at `now` ([`sas::check`]), and confines the import to
/// its container. A job with neither (a Resource Manager job, which names the account by resource id and is
/// written with the service's own access; or a job a test stored directly) is written with the account's key.
pub fn job_stores(
    dir: &Path,
    config: &EmulatorConfig,
    job: &StoredJob,
    now: i64,
) -> Result<(String, Box<dyn ContainerStores>), ReceiveError> {
    let account = config
        .storage_account
        .as_ref()
        .ok_or_else(|| ReceiveError::NoStorageAccount {
            dir: dir.to_path_buf(),
        })?;
    let p = &job.job.properties;
    // Azurite may serve HTTPS with the emulator's own server certificate: trust the emulator's CA there.
    let ca = account
        .endpoint
        .starts_with("https://")
        .then(|| std::fs::read(EmulatorDir::new(dir).ca_cert()).ok())
        .flatten();
    let stores: Box<dyn ContainerStores> = match (&p.storage_account_key, &p.container_sas) {
        (Some(given), _) => {
            let (a, b) = (given.as_bytes(), account.key.as_bytes());
            let same = a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
            if !same {
                return Err(ReceiveError::WrongKey {
                    job: job.name.clone(),
                    account: account.name.clone(),
                });
            }
            Box::new(
                AzureContainers::new(
                    &account.endpoint,
                    &account.name,
                    Credential::SharedKey(given.clone()),
                )
                .trusting(ca),
            )
        }
        (None, Some(given)) => {
            let checked = sas::check(given, &account.name, &account.key, now).map_err(|reason| {
                ReceiveError::BadSas {
                    job: job.name.clone(),
                    account: account.name.clone(),
                    reason,
                }
            })?;
            Box::new(SasContainers::new(&account.endpoint, &account.name, checked, ca))
        }
        (None, None) => Box::new(
            AzureContainers::new(
                &account.endpoint,
                &account.name,
                Credential::SharedKey(account.key.clone()),
            )
            .trusting(ca),
        ),
    };
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
    let (account, stores) = job_stores(dir, &config, &job, store.now()?)?;
    receive_into(&store, job, &account, stores.as_ref(), drives)
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
        let labels = drives
            .iter()
            .map(|p| Ok((p.clone(), drive_id(p)?)))
            .collect::<Result<Vec<_>, ReceiveError>>();
        Self::check_labels(job, account, labels)
    }

    /// [`Receipt::check`] with the drives' labels already read (image path, LUKS2 label), so that a server
    /// reads the drives before it takes the job store's lock; a failure to read them is reported after the
    /// job's own checks, as [`Receipt::check`] does.
    pub fn check_labels(
        job: StoredJob,
        account: &str,
        labels: Result<Vec<(PathBuf, String)>, ReceiveError>,
    ) -> Result<Receipt, ReceiveError> {
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
        let labels = labels?;
        if labels.is_empty() {
            return Err(ReceiveError::NoDrive);
        }
        let info = JobInfo::from_job(&job.job);
        let mut ids: Vec<(PathBuf, String)> = Vec::new();
        for (path, id) in labels {
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
            ids.push((path, id));
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

/// The drive ids (LUKS2 labels) of drives named in the emulator's inbox folder: each name is a single path
/// component naming a regular file there, opened without following a symlink and without blocking (a FIFO or
/// device is refused, never waited on). Errors name the drive as given and say nothing more about the server's
/// files.
pub fn inbox_labels(inbox: &Path, names: &[PathBuf]) -> Result<Vec<(PathBuf, String)>, ReceiveError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = Vec::new();
    for name in names {
        let not_found = || ReceiveError::NotInInbox { name: name.clone() };
        let mut parts = name.components();
        let single = matches!(
            (parts.next(), parts.next()),
            (Some(std::path::Component::Normal(_)), None)
        );
        if !single {
            return Err(not_found());
        }
        let path = inbox.join(name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|_| not_found())?;
        if !file.metadata().map(|m| m.is_file()).unwrap_or(false) {
            return Err(not_found());
        }
        let header = LuksHeader::read(&file).map_err(|source| ReceiveError::Unreadable {
            path: name.clone(),
            source,
        })?;
        out.push((path, header.label().to_owned()));
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiving_before_shipping_names_the_diskprep_command() {
        let m = ReceiveError::WrongState {
            job: "j1".into(),
            state: JobState::Creating,
        }
        .to_string();
        assert!(
            m.contains("job j1 is Creating") && m.contains("run `seedship-diskprep u: s:"),
            "{m}"
        );
    }

    fn refused(inbox: &Path, name: &str) -> String {
        match inbox_labels(inbox, &[PathBuf::from(name)]) {
            Err(e @ ReceiveError::NotInInbox { .. }) => e.to_string(),
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn a_job_key_or_sas_that_the_account_does_not_accept_is_refused() {
        let config = EmulatorConfig {
            subscriptions: vec![],
            storage_account: Some(crate::config::StorageAccountConfig {
                name: "acct".into(),
                endpoint: "http://127.0.0.1:1/acct".into(),
                key: "a2V5LW9mLXRoZS1hY2NvdW50".into(),
            }),
            public_url: None,
            listen_port: None,
            entra: None,
        };
        let mut job = StoredJob {
            subscription: "s".into(),
            name: "j".into(),
            account: "acct".into(),
            state: JobState::Shipping,
            job: Default::default(),
            created: 0,
            updated: 0,
            finished: None,
        };
        let dir = Path::new("/nonexistent");
        let now = 1_796_281_200; // 2026-12-03T07:00:00Z
        let stores = |job: &StoredJob| job_stores(dir, &config, job, now).map(|(a, s)| (a, format!("{s:?}")));
        job.job.properties.storage_account_key = Some("c29tZS1vdGhlci1rZXk=".into());
        let err = stores(&job).unwrap_err().to_string();
        assert!(
            err.contains("job j") && err.contains("acct") && !err.contains("c29tZS"),
            "{err}"
        );
        job.job.properties.storage_account_key = Some("a2V5LW9mLXRoZS1hY2NvdW50".into());
        stores(&job).unwrap();
        job.job.properties.storage_account_key = None;
        stores(&job).unwrap();

        let key = "a2V5LW9mLXRoZS1hY2NvdW50";
        let sas = |k: &str, sp: &str, se: &str| sas::make_sas("acct", "vault", k, sp, se);
        for (given, why) in [
            (
                sas("b3RoZXIta2V5", "rwd", "2026-12-04T00:00:00Z"),
                "is not signed with the key of storage account acct",
            ),
            (
                sas(key, "rwd", "2026-12-02T00:00:00Z"),
                "expired at 2026-12-02T00:00:00Z",
            ),
            (sas(key, "rl", "2026-12-04T00:00:00Z"), "does not grant write"),
        ] {
            job.job.properties.container_sas = Some(given.clone());
            let err = stores(&job).unwrap_err();
            assert!(matches!(err, ReceiveError::BadSas { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(msg.contains("job j") && msg.contains(why), "{msg}");
            let sig = given.split("sig=").nth(1).unwrap();
            assert!(!msg.contains(sig), "the message shows no signature: {msg}");
        }
        job.job.properties.container_sas = Some(sas(key, "rwd", "2026-12-04T00:00:00Z"));
        let (_, shown) = stores(&job).unwrap();
        assert!(
            shown.contains("SasContainers") && shown.contains("vault"),
            "{shown}"
        );
    }

    #[test]
    fn received_drives_are_regular_files_named_in_the_inbox_only() {
        let d = tempfile::tempdir().unwrap();
        let inbox = d.path().join("inbox");
        std::fs::create_dir(&inbox).unwrap();
        let outside = d.path().join("outside.img");
        std::fs::write(&outside, vec![0u8; 4096]).unwrap();
        std::os::unix::fs::symlink(&outside, inbox.join("link.img")).unwrap();
        std::fs::create_dir(inbox.join("dir.img")).unwrap();
        let fifo = std::ffi::CString::new(inbox.join("fifo.img").to_str().unwrap()).unwrap();
        // SAFETY: valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        // a FIFO is refused at once (opening it used to wait for a writer, holding the job store's lock)
        for name in ["fifo.img", "link.img", "dir.img", "missing.img", "../outside.img"] {
            let msg = refused(&inbox, name);
            assert!(
                !msg.contains(d.path().to_str().unwrap()),
                "the message shows no server path: {msg}"
            );
        }
        let abs = outside.to_str().unwrap();
        refused(&inbox, abs);
        // the same text whether or not a file exists
        assert_eq!(
            refused(&inbox, "missing.img").replace("missing", "x"),
            refused(&inbox, "dir.img").replace("dir", "x")
        );
        std::fs::write(inbox.join("plain.img"), vec![0u8; 64 << 10]).unwrap();
        assert!(matches!(
            inbox_labels(&inbox, &[PathBuf::from("plain.img")]),
            Err(ReceiveError::Unreadable { .. })
        ));
    }
}
