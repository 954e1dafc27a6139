//! The `--json` documents of `verify` and of the job status (`ship --json`): one document on standard output
//! per command (human-readable lines go to standard error), serde structs whose fields are only ever added.
//! docs/diskprep.md lists the fields.

use crate::job::record::JobRecord;
use seedship_shared::api::Job;
use serde::{Deserialize, Serialize};

/// `verify --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyReport {
    /// The drive checked (device or image file).
    pub drive: String,
    /// Every range matched its manifest.
    pub ok: bool,
    /// Data files on the drive (the manifest not counted), ranges checked (page ranges of page blobs and
    /// blocks of block blobs), of them blocks, bytes of data read.
    pub files: u64,
    pub ranges: u64,
    #[serde(default)]
    pub blocks: u64,
    pub bytes: u64,
    /// What failed, when `ok` is false.
    pub error: Option<String>,
}

/// A shipping package in [`JobStatusReport`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackageReport {
    pub carrier: String,
    pub tracking_number: String,
    pub ship_date: Option<String>,
}

/// One drive in [`JobStatusReport`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriveReport {
    pub drive_id: String,
    /// The service's drive state (`Specified`, `Received`, `Transferring`, `Completed`, ...).
    pub state: Option<String>,
    pub percent_complete: Option<u8>,
}

/// `ship --json`: the import job's state as the service reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobStatusReport {
    pub job: String,
    pub storage_account: String,
    /// The service's job state (`Creating`, `Shipping`, `Received`, `Transferring`, `Packaging`,
    /// `Completed`, ...); null when the job was deleted with delete-job.
    pub state: Option<String>,
    pub percent_complete: Option<u8>,
    /// The job was deleted with delete-job (then nothing else is read from the service).
    pub deleted: bool,
    pub delivery_package: Option<PackageReport>,
    pub return_package: Option<PackageReport>,
    pub drives: Vec<DriveReport>,
    /// The job's link, as printed when it was created.
    pub link: String,
}

impl JobStatusReport {
    /// The report of a job the service knows (`job`) or of one deleted with delete-job (`None`).
    pub fn new(record: &JobRecord, job: Option<&Job>) -> JobStatusReport {
        let package = |p: &seedship_shared::api::Package| PackageReport {
            carrier: p.carrier_name.clone(),
            tracking_number: p.tracking_number.clone(),
            ship_date: p.ship_date.clone(),
        };
        JobStatusReport {
            job: record.job_name.clone(),
            storage_account: record.storage_account.clone(),
            state: job.and_then(|j| j.properties.state).map(|s| s.to_string()),
            percent_complete: job.and_then(|j| j.properties.percent_complete),
            deleted: job.is_none(),
            delivery_package: job
                .and_then(|j| j.properties.delivery_package.as_ref())
                .map(package),
            return_package: job
                .and_then(|j| j.properties.return_package.as_ref())
                .map(package),
            drives: job
                .map(|j| {
                    j.drives()
                        .iter()
                        .map(|d| DriveReport {
                            drive_id: d.drive_id.clone(),
                            state: d.state.map(|s| format!("{s:?}")),
                            percent_complete: d.percent_complete,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            link: record.link.clone(),
        }
    }
}
