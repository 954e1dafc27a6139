//! Creating the import job once the drives are ready, the way AzureOfflineBackupDiskPrep does: connect through
//! the API the agent chose (classic: the publish settings, `p:` or the path recorded in the job descriptor;
//! Resource Manager: the recorded Entra ID application, no account key), find the shipping location by
//! seed 000's rule, and Put Job with every drive's id, recovery key, manifest path and manifest MD5.
//!
//! A rerun never creates a second job: [`preflight`] asks Get Job first; a job of that name with the same drives
//! is reported as it is, one with other drives is refused. The created (or found) job is recorded in
//! `<staging>/<job>/diskprep/job.json` ([`JobRecord`]) so `u:` and `delete-job` find it. Secrets (the storage
//! account key or SAS, the recovery keys) go to the service only; they are never logged or recorded.
//! This module prints nothing; [`console`](crate::job::console) shows what it returns.

pub use crate::job::error::JobError;
pub use crate::job::record::{arm_job_link, job_link, JobRecord, RECORD_FILE};
use crate::prep::keyfile;
use crate::prep::prepare::PrepReport;
use seedship_shared::api::{
    ConnectError, Drive, Job, JobProperties, JobState, JobType, Location, LocationChoice, ReturnAddress,
    ReturnShipping,
};
use seedship_shared::staging::{JobDescriptor, ServiceApi};
use seedship_shared::time::now_unix;
use std::collections::BTreeSet;
use std::path::Path;

/// Where WAImportExport puts the manifest on every drive (the `ManifestFile` of Put Job).
pub const MANIFEST_FILE: &str = "\\DriveManifest.xml";

pub use seedship_shared::api::{ApiAccess, Connection};

/// Connects for the job's subscription through the API the agent chose ([`seedship_shared::api::connect`]);
/// a recorded publish-settings file that cannot be read asks for `p:`.
pub fn connect(d: &JobDescriptor, access: &ApiAccess) -> Result<Connection, JobError> {
    seedship_shared::api::connect(d, access).map_err(|e| match e {
        ConnectError::RecordedSettings { job, path, error } => {
            JobError::RecordedSettings { job, path, error }
        }
        ConnectError::PublishSettings(e) => e.into(),
        e => JobError::Connect(Box::new(e)),
    })
}

/// The storage credential options of the commands that make or record an import job (`s:`, `prepimport`,
/// `create-job`): a file holding the account key or a container SAS, or the value itself (kept for
/// compatibility only: a command line is readable by every user).
#[derive(Clone, clap::Args)]
pub struct CredentialArgs {
    /// A file holding the storage account's key for the import job (or set SEEDSHIP_STORAGE_KEY_FILE, or the
    /// key itself in SEEDSHIP_STORAGE_KEY).
    #[arg(
        long,
        env = "SEEDSHIP_STORAGE_KEY_FILE",
        value_name = "FILE",
        conflicts_with_all = ["storage_account_key", "container_sas", "container_sas_file"]
    )]
    pub storage_account_key_file: Option<std::path::PathBuf>,
    /// The key itself: kept for compatibility only, since a command line is readable by every user; use
    /// --storage-account-key-file or SEEDSHIP_STORAGE_KEY.
    #[arg(
        long,
        env = "SEEDSHIP_STORAGE_KEY",
        hide_env_values = true,
        value_name = "KEY",
        conflicts_with_all = ["container_sas", "container_sas_file"],
        hide_short_help = true
    )]
    pub storage_account_key: Option<String>,
    /// A file holding a SAS of the container, instead of the account key (or set SEEDSHIP_CONTAINER_SAS_FILE,
    /// or the SAS itself in SEEDSHIP_CONTAINER_SAS).
    #[arg(
        long,
        env = "SEEDSHIP_CONTAINER_SAS_FILE",
        value_name = "FILE",
        conflicts_with = "container_sas"
    )]
    pub container_sas_file: Option<std::path::PathBuf>,
    /// The SAS itself: kept for compatibility only; use --container-sas-file or SEEDSHIP_CONTAINER_SAS.
    #[arg(
        long,
        env = "SEEDSHIP_CONTAINER_SAS",
        hide_env_values = true,
        value_name = "SAS",
        hide_short_help = true
    )]
    pub container_sas: Option<String>,
}

impl std::fmt::Debug for CredentialArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialArgs")
            .field("storage_account_key_file", &self.storage_account_key_file)
            .field(
                "storage_account_key",
                &self.storage_account_key.as_ref().map(|_| "<redacted>"),
            )
            .field("container_sas_file", &self.container_sas_file)
            .field(
                "container_sas",
                &self.container_sas.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl CredentialArgs {
    /// The credential given, from whichever form; `None` when none was.
    pub fn credential(&self) -> anyhow::Result<Option<Credential>> {
        use seedship_shared::secret::from_file;
        Ok(if let Some(f) = &self.storage_account_key_file {
            Some(Credential::AccountKey(
                from_file(f, "storage account key")?.to_string(),
            ))
        } else if let Some(k) = &self.storage_account_key {
            Some(Credential::AccountKey(k.clone()))
        } else if let Some(f) = &self.container_sas_file {
            Some(Credential::ContainerSas(
                from_file(f, "container SAS")?.to_string(),
            ))
        } else {
            self.container_sas.clone().map(Credential::ContainerSas)
        })
    }
}

/// The storage credential sent with Put Job (exactly one is required).
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    AccountKey(String),
    ContainerSas(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::AccountKey(_) => "AccountKey(<redacted>)",
            Credential::ContainerSas(_) => "ContainerSas(<redacted>)",
        })
    }
}

/// What the operator gave for the new job.
#[derive(Debug, Clone, Default)]
pub struct JobRequest {
    /// The region of the storage account (seed 000's origin location).
    pub location: Option<String>,
    pub credential: Option<Credential>,
    pub return_address: Option<ReturnAddress>,
    pub return_shipping: Option<ReturnShipping>,
}

/// What Get Job said before the drives were written.
#[derive(Debug)]
pub enum Preflight {
    /// The job exists with the same drives: nothing to create.
    Exists(Box<Job>),
    /// No such job yet: it will be created at this location.
    Create {
        choice: LocationChoice,
        location: Box<Location>,
    },
}

/// The job as it stands after [`create_or_report`].
#[derive(Debug, Clone)]
pub struct JobOutcome {
    /// Whether this run created it (false: it existed already).
    pub created: bool,
    pub record: JobRecord,
    /// The closed location that was replaced by an alternate, if any.
    pub closed_origin: Option<String>,
    /// Where to ship the drives.
    pub ship_to: Location,
    pub state: Option<JobState>,
}

/// Get Job, with "not found" as `None`.
pub fn find_job(conn: &Connection, account: &str, name: &str) -> Result<Option<Job>, JobError> {
    match conn.client.get_job(account, name) {
        Ok(j) => Ok(Some(j)),
        Err(e) if e.status() == Some(404) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Before any drive is written: refuses a job of this name that has other drives, and for a new job checks
/// that the location and the credential are known and resolves the location (seed 000), so a mistake shows up
/// before hours of copying, not after.
pub fn preflight(
    conn: &Connection,
    d: &JobDescriptor,
    drive_ids: &[String],
    req: &JobRequest,
) -> Result<Preflight, JobError> {
    if let Some(job) = find_job(conn, &d.storage_account, &d.job_name)? {
        same_drives(&job, d, drive_ids)?;
        return Ok(Preflight::Exists(Box::new(job)));
    }
    if req.credential.is_none() && conn.client.needs_storage_credential() {
        return Err(JobError::NoCredential {
            job: d.job_name.clone(),
            account: d.storage_account.clone(),
        });
    }
    conn.client.check_return_address(req.return_address.as_ref())?;
    let Some(origin) = &req.location else {
        return Err(JobError::NoLocation {
            job: d.job_name.clone(),
            account: d.storage_account.clone(),
            available: location_names(conn)?,
        });
    };
    let (choice, location) = conn.client.resolve_location(origin)?;
    Ok(Preflight::Create {
        choice,
        location: Box::new(location),
    })
}

/// The names of the service's locations, comma-separated, for messages.
pub fn location_names(conn: &Connection) -> Result<String, JobError> {
    Ok(conn
        .client
        .list_locations(None)?
        .iter()
        .map(|l| l.name.as_str())
        .collect::<Vec<_>>()
        .join(", "))
}

fn same_drives(job: &Job, d: &JobDescriptor, ours: &[String]) -> Result<(), JobError> {
    let existing: BTreeSet<&str> = job.drives().iter().map(|x| x.drive_id.as_str()).collect();
    let mine: BTreeSet<&str> = ours.iter().map(String::as_str).collect();
    if existing == mine {
        return Ok(());
    }
    let list = |s: &BTreeSet<&str>| s.iter().copied().collect::<Vec<_>>().join(", ");
    Err(JobError::DifferentDrives {
        job: d.job_name.clone(),
        account: d.storage_account.clone(),
        existing: list(&existing),
        ours: list(&mine),
    })
}

/// The Put Job body for the prepared drives: each drive's id, its recovery key from the key file, the manifest
/// path and the manifest's MD5 (uppercase hex). `needs_credential`: the API needs the account key or a SAS
/// (classic); Resource Manager does not.
pub fn build_job(
    d: &JobDescriptor,
    report: &PrepReport,
    location: &str,
    req: &JobRequest,
    needs_credential: bool,
) -> Result<Job, JobError> {
    job_body(d, report_drives(d, report)?, location, req, needs_credential)
}

/// The drives of a preparation: each drive's id, its recovery key from the key file, the manifest path and
/// the manifest's MD5 (uppercase hex).
pub fn report_drives(d: &JobDescriptor, report: &PrepReport) -> Result<Vec<Drive>, JobError> {
    let keys = keyfile::read(&report.key_file)?;
    let mut drives = Vec::with_capacity(report.drives.len());
    for r in &report.drives {
        let key = keys
            .iter()
            .rev()
            .find(|k| k.drive_id == r.drive_id && k.job == d.job_name)
            .ok_or_else(|| JobError::MissingKey {
                drive: r.drive_id.clone(),
                key_file: report.key_file.clone(),
            })?;
        drives.push(job_drive(&r.drive_id, &key.recovery_key, &r.manifest_hash));
    }
    Ok(drives)
}

/// One drive of Put Job: its id, recovery key, the manifest's path and MD5 (uppercase hex).
pub fn job_drive(drive_id: &str, recovery_key: &str, manifest_hash: &str) -> Drive {
    Drive {
        drive_id: drive_id.to_owned(),
        bit_locker_key: Some(recovery_key.to_owned()),
        manifest_file: Some(MANIFEST_FILE.to_string()),
        manifest_hash: Some(manifest_hash.to_ascii_uppercase()),
        ..Default::default()
    }
}

/// The Put Job body for `drives`. `needs_credential`: the API needs the account key or a SAS (classic);
/// Resource Manager does not.
pub fn job_body(
    d: &JobDescriptor,
    drives: Vec<Drive>,
    location: &str,
    req: &JobRequest,
    needs_credential: bool,
) -> Result<Job, JobError> {
    let (key, sas) = match &req.credential {
        Some(Credential::AccountKey(k)) => (Some(k.clone()), None),
        Some(Credential::ContainerSas(s)) => (None, Some(s.clone())),
        // Resource Manager: the account's resource id and the application's role, no key
        None if !needs_credential => (None, None),
        None => {
            return Err(JobError::NoCredential {
                job: d.job_name.clone(),
                account: d.storage_account.clone(),
            })
        }
    };
    Ok(Job {
        name: d.job_name.clone(),
        properties: JobProperties {
            storage_account_name: Some(d.storage_account.clone()),
            storage_account_key: key,
            container_sas: sas,
            location: Some(location.to_string()),
            job_type: Some(JobType::Import),
            return_address: req.return_address.clone(),
            return_shipping: req.return_shipping.clone(),
            ..Default::default()
        },
        drive_list: Some(drives),
        ..Default::default()
    })
}

/// After the drives are ready: creates the job (Put Job) unless [`preflight`] found it, reads it back
/// (Get Job), and records it in `diskprep/job.json`.
pub fn create_or_report(
    conn: &Connection,
    job_dir: &Path,
    d: &JobDescriptor,
    report: &PrepReport,
    req: &JobRequest,
    pre: Preflight,
) -> Result<JobOutcome, JobError> {
    let ours: Vec<String> = report.drives.iter().map(|r| r.drive_id.clone()).collect();
    let outcome = put_and_read(conn, d, &ours, || report_drives(d, report), req, pre)?;
    outcome.record.save(job_dir)?;
    Ok(outcome)
}

/// Creates the job with the drives `drives` gives (called only when [`preflight`] did not find it), reads it
/// back (Get Job) and checks that it has the drives `ours`.
pub fn put_and_read(
    conn: &Connection,
    d: &JobDescriptor,
    ours: &[String],
    drives: impl FnOnce() -> Result<Vec<Drive>, JobError>,
    req: &JobRequest,
    pre: Preflight,
) -> Result<JobOutcome, JobError> {
    let (created, closed_origin, found, planned) = match pre {
        Preflight::Exists(job) => (false, None, Some(*job), None),
        Preflight::Create { choice, location } => {
            let body = job_body(
                d,
                drives()?,
                &location.name,
                req,
                conn.client.needs_storage_credential(),
            )?;
            conn.client.put_job(&d.storage_account, &body)?;
            let closed = match &choice {
                LocationChoice::Alternate { closed, .. } => Some(closed.clone()),
                LocationChoice::Origin(_) => None,
            };
            (true, closed, None, Some(*location))
        }
    };
    let job = match found {
        Some(j) => j,
        None => find_job(conn, &d.storage_account, &d.job_name)?.ok_or_else(|| JobError::Vanished {
            job: d.job_name.clone(),
            account: d.storage_account.clone(),
        })?,
    };
    same_drives(&job, d, ours)?;
    let ship_to = match (job.properties.shipping_information.clone(), planned) {
        (Some(l), _) => l,
        (None, Some(l)) => l,
        (None, None) => {
            let name = job.properties.location.clone().unwrap_or_default();
            conn.client.resolve_location(&name)?.1
        }
    };
    let record = JobRecord {
        job_name: d.job_name.clone(),
        subscription: conn.subscription.clone(),
        storage_account: d.storage_account.clone(),
        service_url: conn.service_url.clone(),
        location: job
            .properties
            .location
            .clone()
            .unwrap_or_else(|| ship_to.name.clone()),
        drive_ids: job.drives().iter().map(|x| x.drive_id.clone()).collect(),
        link: match &d.api {
            ServiceApi::Classic => job_link(
                &conn.service_url,
                &conn.subscription,
                &d.storage_account,
                &d.job_name,
            ),
            ServiceApi::ResourceManager(s) => arm_job_link(
                &conn.service_url,
                &conn.subscription,
                &s.resource_group,
                &d.job_name,
            ),
        },
        recorded: now_unix(),
        deleted: None,
    };
    Ok(JobOutcome {
        created,
        record,
        closed_origin,
        ship_to,
        state: job.properties.state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_not_shown() {
        let c = Credential::AccountKey("c2VjcmV0".into());
        assert!(!format!("{c:?}").contains("c2VjcmV0"));
        let r = JobRequest {
            credential: Some(Credential::ContainerSas("sig=abc".into())),
            ..Default::default()
        };
        assert!(!format!("{r:?}").contains("sig=abc"));
    }

    #[test]
    fn drive_sets_compare_without_order_and_name_both_lists() {
        let d = JobDescriptor {
            format: 1,
            job_name: "job1".into(),
            subscription: "s".into(),
            storage_account: "acct".into(),
            container: "c".into(),
            publish_settings: "/p".into(),
            api: Default::default(),
            source_host: "h".into(),
            repository_id: "r".into(),
            state: seedship_shared::staging::JobState::BackupComplete,
            created: 0,
            blobs: Vec::new(),
        };
        let job = Job {
            drive_list: Some(vec![
                Drive {
                    drive_id: "B".into(),
                    ..Default::default()
                },
                Drive {
                    drive_id: "A".into(),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        same_drives(&job, &d, &["A".into(), "B".into()]).unwrap();
        let e = same_drives(&job, &d, &["A".into(), "C".into()]).unwrap_err();
        assert!(
            e.to_string()
                .contains("with drives A, B, not with the drives prepared now (A, C)"),
            "{e}"
        );
    }
}
