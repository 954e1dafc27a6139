//! The staging location's job descriptor: `<staging>/<job>/job.json` beside `<staging>/<job>/blobs/`.
//!
//! It says which import job the folder belongs to (job name, subscription, storage account, container,
//! which Import/Export API and how to sign in to it ([`ServiceApi`]: the publish-settings path for the classic
//! API, the Entra ID application's settings for Resource Manager; paths only, never a secret), source host,
//! repository id), where the job stands, and, once the initial backup is
//! complete, every blob under `blobs/` with its length and BLAKE3 digest, so diskprep copies exactly those
//! bytes and anyone can verify them. Written atomically (temporary file, fsync, rename, fsync of the folder).

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of the descriptor inside the job folder.
pub const DESCRIPTOR_FILE: &str = "job.json";
/// Folder of the blobs inside the job folder.
pub const BLOBS_DIR: &str = "blobs";

/// Where a staged job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Created by `offline start`; the initial backup has not completed.
    Created,
    /// The initial backup is complete and the blob list is final: ready for diskprep.
    BackupComplete,
}

/// One blob of the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedBlob {
    /// Blob name (relative path under `blobs/`).
    pub name: String,
    /// Length in bytes (a multiple of 512).
    pub len: u64,
    /// BLAKE3 of the whole blob, hex.
    pub blake3: String,
}

/// Which Import/Export API a job is created and followed through, with what it needs to sign in. Descriptors
/// written before Resource Manager support have no `api` and are classic.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ServiceApi {
    /// The classic API with the management certificate of the descriptor's `publish_settings`.
    #[default]
    Classic,
    /// `Microsoft.ImportExport` through Resource Manager, signed in as an Entra ID application.
    ResourceManager(Box<ArmSettings>),
}

/// The Resource Manager settings recorded at `offline start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmSettings {
    /// Directory (tenant) id of the application.
    pub tenant: Option<String>,
    /// Application (client) id.
    pub client_id: Option<String>,
    pub credential: RecordedCredential,
    /// The resource group the import job is created in.
    pub resource_group: String,
    /// The storage account's resource id (`/subscriptions/../storageAccounts/NAME`).
    pub storage_account_id: String,
    /// Sign-in host.
    pub authority: String,
    /// Resource Manager endpoint.
    pub management_endpoint: String,
    /// Token audience when it differs from the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_audience: Option<String>,
}

/// Where the credential comes from: a file path or a source, never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RecordedCredential {
    /// A PEM certificate with its key, or the key in `key`.
    Certificate {
        certificate: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<PathBuf>,
    },
    /// A file holding the client secret (mode 0600).
    SecretFile { path: PathBuf },
    /// The client secret from the environment (`SEEDSHIP_CLIENT_SECRET`) of every run.
    SecretFromEnvironment,
    /// The VM's managed identity at this instance-metadata endpoint.
    ManagedIdentity { endpoint: String },
    /// A handed-over access token file (short-lived: give a fresh one with each command).
    TokenFile { path: PathBuf },
}

/// The job descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDescriptor {
    pub format: u32,
    pub job_name: String,
    pub subscription: String,
    pub storage_account: String,
    pub container: String,
    /// The publish-settings file (classic API only; empty for Resource Manager).
    #[serde(default)]
    pub publish_settings: PathBuf,
    /// Which API and how to sign in; absent in old descriptors (classic).
    #[serde(default, skip_serializing_if = "ServiceApi::is_classic")]
    pub api: ServiceApi,
    pub source_host: String,
    pub repository_id: String,
    pub state: JobState,
    /// Seconds since the Unix epoch.
    pub created: i64,
    #[serde(default)]
    pub blobs: Vec<StagedBlob>,
}

impl ServiceApi {
    /// Whether this is the classic API.
    pub fn is_classic(&self) -> bool {
        matches!(self, ServiceApi::Classic)
    }
}

/// An I/O failure on `path` said once, in words, with what to check: a missing path names the deepest
/// folder that does exist and asks whether the disk is mounted; a permission error names the user to run as.
pub fn explain_io(path: &Path, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            let existing = path.ancestors().skip(1).find(|a| a.exists());
            match existing {
                Some(a) if a != Path::new("/") => format!(
                    "{} does not exist ({} does): is the disk holding it mounted, or was it moved or renamed?",
                    path.display(),
                    a.display()
                ),
                _ => format!(
                    "{} does not exist: is the disk holding it mounted, or was it moved or renamed?",
                    path.display()
                ),
            }
        }
        std::io::ErrorKind::PermissionDenied => format!(
            "{}: permission denied: run as the user that owns it (or root), or give this user access",
            path.display()
        ),
        _ => format!("{}: {e}", path.display()),
    }
}

/// Errors reading or writing a descriptor.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// The message says the path, the cause once, and what to check ([`explain_io`]).
    #[error("{}", explain_io(path, error))]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: not a valid job descriptor: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl JobDescriptor {
    /// Whether diskprep's `create-job --journal` wrote this descriptor: no repository and no staged blob (the
    /// backup agent's descriptors always have a repository).
    pub fn is_from_journals(&self) -> bool {
        self.repository_id.is_empty() && self.blobs.is_empty()
    }

    /// The descriptor path of a job folder.
    pub fn path_in(job_dir: &Path) -> PathBuf {
        job_dir.join(DESCRIPTOR_FILE)
    }

    /// Reads `job_dir/job.json`.
    pub fn load(job_dir: &Path) -> Result<Self, StagingError> {
        let path = Self::path_in(job_dir);
        let bytes = std::fs::read(&path).map_err(|error| StagingError::Io {
            path: path.clone(),
            error,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| StagingError::Parse { path, source })
    }

    /// Writes `job_dir/job.json` atomically and durably.
    pub fn save(&self, job_dir: &Path) -> Result<(), StagingError> {
        let path = Self::path_in(job_dir);
        let tmp = job_dir.join(".job.json.tmp");
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |error| StagingError::Io { path: p, error }
        };
        let mut json = serde_json::to_vec_pretty(self).expect("serializable");
        json.push(b'\n');
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&json).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(job_dir)
            .and_then(|d| d.sync_all())
            .map_err(io(job_dir))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let d = JobDescriptor {
            format: 1,
            job_name: "job1".into(),
            subscription: "sub".into(),
            storage_account: "acct".into(),
            container: "seed".into(),
            publish_settings: "/x.publishsettings".into(),
            api: ServiceApi::Classic,
            source_host: "fs1".into(),
            repository_id: "00".into(),
            state: JobState::BackupComplete,
            created: 1,
            blobs: vec![StagedBlob {
                name: "config".into(),
                len: 512,
                blake3: "ab".into(),
            }],
        };
        d.save(dir.path()).unwrap();
        assert_eq!(JobDescriptor::load(dir.path()).unwrap(), d);
        let text = std::fs::read_to_string(dir.path().join("job.json")).unwrap();
        assert!(text.contains("\"backup-complete\""), "{text}");
        std::fs::write(dir.path().join("job.json"), "{").unwrap();
        assert!(
            !text.contains("\"api\""),
            "classic descriptors stay as they were: {text}"
        );
        let arm = JobDescriptor {
            publish_settings: PathBuf::new(),
            api: ServiceApi::ResourceManager(Box::new(ArmSettings {
                tenant: Some("t".into()),
                client_id: Some("c".into()),
                credential: RecordedCredential::Certificate {
                    certificate: "/etc/seedship/app.pem".into(),
                    key: None,
                },
                resource_group: "rg".into(),
                storage_account_id:
                    "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct"
                        .into(),
                authority: "https://login.microsoftonline.com".into(),
                management_endpoint: "https://management.azure.com".into(),
                management_audience: None,
            })),
            ..d.clone()
        };
        arm.save(dir.path()).unwrap();
        assert_eq!(JobDescriptor::load(dir.path()).unwrap(), arm);
        let text = std::fs::read_to_string(dir.path().join("job.json")).unwrap();
        assert!(
            text.contains("\"resource-manager\"") && text.contains("app.pem"),
            "{text}"
        );
        // a descriptor written before the api field is classic
        let mut old: serde_json::Value = serde_json::to_value(&d).unwrap();
        old.as_object_mut().unwrap().remove("api");
        std::fs::write(dir.path().join("job.json"), old.to_string()).unwrap();
        assert_eq!(JobDescriptor::load(dir.path()).unwrap().api, ServiceApi::Classic);
        std::fs::write(dir.path().join("job.json"), "{").unwrap();
        let e = JobDescriptor::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("job.json"), "{e}");
    }
}
