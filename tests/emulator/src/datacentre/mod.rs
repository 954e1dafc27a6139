//! The data centre: importing the drives of an import job into the storage account, the way the
//! Import/Export service does once the drives arrive (docs/datacentre.md).
//!
//! [`import::import_drive`] reads one drive: the LUKS2 label gives the drive id before anything is unlocked,
//! the job's BitLockerKey unlocks it, the manifest (the payload's first tar member) must have the job's
//! ManifestHash and name the same drive, and then every page range of every listed file is checked against
//! its MD5 and written into its page blob, honouring the ImportDisposition. A range whose MD5 does not match
//! is logged `Corrupted` and not written. The copy log (shared's [`DriveLog`]) goes to the job's
//! ImportExportStatesPath as `waies/<job>_<driveid>_<timestamp>_error.xml` (and `_verbose.xml` when the job
//! asked for verbose logs). [`receive::receive_and_import`] walks a stored job through the states: Received,
//! Transferring, Packaging, then Completed or Closed, with the drive states beside them.

pub mod background;
pub mod disposition;
pub mod import;
pub mod receive;
pub mod sas;

use seedship_shared::api::Job;
use seedship_shared::blob::{AzureOptions, AzureStore, BlobError, BlobStore, Credential, RetryStore};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use background::{ReceiveStatus, Receiving};
pub use import::{import_drive, DriveOutcome, ImportSession};
pub use receive::{receive_and_import, JobOutcome, Receipt, ReceiveError};
pub use seedship_shared::manifest::copylog::{DriveLog, DriveStatus, LogBlob, LogRange};

/// The container the copy logs go to when the job names none.
pub const DEFAULT_STATES_PATH: &str = "waimportexport";

/// One drive of a job, as Put Job gave it.
#[derive(Clone, PartialEq, Eq)]
pub struct DriveSpec {
    pub drive_id: String,
    pub bitlocker_key: String,
    pub manifest_file: String,
    pub manifest_hash: String,
}

impl std::fmt::Debug for DriveSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriveSpec")
            .field("drive_id", &self.drive_id)
            .field("bitlocker_key", &"<redacted>")
            .field("manifest_file", &self.manifest_file)
            .field("manifest_hash", &self.manifest_hash)
            .finish()
    }
}

/// What the import of a job's drives needs to know about the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    pub name: String,
    /// `ImportExportStatesPath`: a container, optionally followed by `/` and a virtual directory.
    pub states_path: String,
    pub verbose_log: bool,
    pub drives: Vec<DriveSpec>,
    /// The container of the job's `ContainerSas`, when it gives one: the import writes into it only, and
    /// the states path is a virtual directory in it.
    pub sas_container: Option<String>,
}

impl JobInfo {
    /// The import-relevant part of a job as Put Job stored it.
    pub fn from_job(job: &Job) -> JobInfo {
        let p = &job.properties;
        JobInfo {
            name: job.name.clone(),
            states_path: p
                .import_export_states_path
                .clone()
                .filter(|s| !s.trim_matches('/').is_empty())
                .unwrap_or_else(|| DEFAULT_STATES_PATH.to_owned()),
            verbose_log: p.enable_verbose_log.unwrap_or(false),
            drives: job
                .drives()
                .iter()
                .map(|d| DriveSpec {
                    drive_id: d.drive_id.clone(),
                    bitlocker_key: d.bit_locker_key.clone().unwrap_or_default(),
                    manifest_file: d.manifest_file.clone().unwrap_or_default(),
                    manifest_hash: d.manifest_hash.clone().unwrap_or_default(),
                })
                .collect(),
            sas_container: p
                .container_sas
                .as_deref()
                .and_then(sas::sas_container)
                .map(str::to_owned),
        }
    }

    /// The drive of the job with this id (ids compare case-insensitively, as serial numbers do).
    pub fn drive(&self, drive_id: &str) -> Option<&DriveSpec> {
        self.drives
            .iter()
            .find(|d| d.drive_id.eq_ignore_ascii_case(drive_id))
    }

    /// The states container and the virtual directory the log blobs go under in it (`<dir>/`, or empty;
    /// the log names add `waies/`). With a container SAS, the SAS's container and the states path as a
    /// virtual directory in it.
    pub fn states_location(&self) -> (String, String) {
        if let Some(container) = &self.sas_container {
            return sas::states_location(container, &self.states_path);
        }
        let path = self.states_path.trim_matches('/');
        match path.split_once('/') {
            Some((container, dir)) => (container.to_owned(), format!("{}/", dir.trim_matches('/'))),
            None => (path.to_owned(), String::new()),
        }
    }
}

/// The containers of the storage account a job imports into: one store per container name.
pub trait ContainerStores: Send + Sync + std::fmt::Debug {
    /// The store of container `name`, created on the service if it does not exist yet.
    fn container(&self, name: &str) -> Result<Arc<dyn BlobStore>, BlobError>;
    /// A URL or description of blob `name` in container `container`, for the job's log URIs.
    fn blob_uri(&self, container: &str, name: &str) -> String;
}

/// The containers of an Azure (or Azurite) storage account, with retries; each container is created the
/// first time it is asked for.
#[derive(Debug)]
pub struct AzureContainers {
    endpoint: String,
    account: String,
    credential: Credential,
    /// Extra CA certificates trusted for an HTTPS endpoint (the emulator's own CA, when Azurite serves HTTPS
    /// with the emulator's server certificate).
    ca_pem: Option<Vec<u8>>,
    open: Mutex<HashMap<String, Arc<dyn BlobStore>>>,
}

impl AzureContainers {
    pub fn new(endpoint: &str, account: &str, credential: Credential) -> AzureContainers {
        AzureContainers {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            account: account.to_owned(),
            credential,
            ca_pem: None,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Also trusts the CA certificates of `pem` for the endpoint.
    pub fn trusting(mut self, pem: Option<Vec<u8>>) -> AzureContainers {
        self.ca_pem = pem;
        self
    }
}

impl ContainerStores for AzureContainers {
    fn container(&self, name: &str) -> Result<Arc<dyn BlobStore>, BlobError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = open.get(name) {
            return Ok(s.clone());
        }
        let mut opts = AzureOptions::new(&self.endpoint, &self.account, name, self.credential.clone());
        opts.extra_ca_pem = self.ca_pem.clone();
        let store = RetryStore::new(AzureStore::new(opts)?, Default::default());
        store.create_container()?;
        let store: Arc<dyn BlobStore> = Arc::new(store);
        open.insert(name.to_owned(), store.clone());
        Ok(store)
    }

    fn blob_uri(&self, container: &str, name: &str) -> String {
        format!("{}/{container}/{name}", self.endpoint)
    }
}
