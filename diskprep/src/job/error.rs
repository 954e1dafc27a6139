//! Why an import-job command failed: [`JobError`], shared by job creation, its local records, `u:` and
//! `delete-job`.

use crate::prep::keyfile::KeyFileError;
use seedship_shared::api::ImportError;
use seedship_shared::publish_settings::PublishSettingsError;
use std::path::PathBuf;

/// Why the import job could not be created, found or changed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    PublishSettings(#[from] PublishSettingsError),
    #[error(
        "cannot read the publish-settings file the agent recorded for job {job}: {}; give its current path \
         with p:<file> (or --publish-settings FILE)",
        seedship_shared::staging::explain_io(path, error)
    )]
    RecordedSettings {
        job: String,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Api(#[from] ImportError),
    /// No client for the service (sign-in settings, credential files, CA).
    #[error(transparent)]
    Connect(Box<seedship_shared::api::ConnectError>),
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error("the recovery key of drive {drive} is not in {key_file}; restore the key file, then run again")]
    MissingKey { drive: String, key_file: PathBuf },
    #[error(
        "import job {job} already exists in storage account {account} with drives {existing}, not with the \
         drives prepared now ({ours}); give this job another name (a new job in the agent), or delete the \
         old job with `seedship-diskprep delete-job` if it is no longer wanted"
    )]
    DifferentDrives {
        job: String,
        account: String,
        existing: String,
        ours: String,
    },
    #[error(
        "no shipping location given for import job {job}: give the region of storage account {account} \
         with --location NAME (one of: {available})"
    )]
    NoLocation {
        job: String,
        account: String,
        available: String,
    },
    #[error(
        "no storage credential for import job {job}: give the key of storage account {account} with \
         --storage-account-key or SEEDSHIP_STORAGE_KEY (or a container SAS with --container-sas)"
    )]
    NoCredential { job: String, account: String },
    #[error(
        "no import job is recorded in {path}; prepare the drives first (`seedship-diskprep s:<staging>`)"
    )]
    NoRecord { path: PathBuf },
    #[error(
        "import job {job} was created in storage account {account} but Get Job does not find it; \
         run again to check, or look at the job in the portal"
    )]
    Vanished { job: String, account: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid record: {source}")]
    BadRecord {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}
