//! The local records of the import job: `<staging>/<job>/diskprep/job.json` ([`JobRecord`], written when the job
//! is created or found, read by `u:` and `delete-job`) and the private JSON writer that `shipping.json` shares;
//! and the job's link.

use crate::job::error::JobError;
use crate::prep::session::SessionState;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The file, inside `<staging>/<job>/diskprep/`, that records the import job.
pub const RECORD_FILE: &str = "job.json";

/// The job as recorded in `<staging>/<job>/diskprep/job.json` (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_name: String,
    pub subscription: String,
    pub storage_account: String,
    pub service_url: String,
    pub location: String,
    pub drive_ids: Vec<String>,
    /// The job's link (see [`job_link`]).
    pub link: String,
    /// Seconds since the Unix epoch when this record was written.
    pub recorded: i64,
    /// Seconds since the Unix epoch when `delete-job` deleted the job; a deleted job is not created again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<i64>,
}

impl JobRecord {
    /// The record's path for a job folder.
    pub fn path(job_dir: &Path) -> PathBuf {
        SessionState::dir_of(job_dir).join(RECORD_FILE)
    }

    /// Reads the record of a job folder.
    pub fn load(job_dir: &Path) -> Result<JobRecord, JobError> {
        let path = Self::path(job_dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(JobError::NoRecord { path }),
            Err(source) => return Err(JobError::Io { path, source }),
        };
        serde_json::from_slice(&bytes).map_err(|source| JobError::BadRecord { path, source })
    }

    /// Writes the record (mode 0600, atomically).
    pub fn save(&self, job_dir: &Path) -> Result<PathBuf, JobError> {
        let path = Self::path(job_dir);
        write_private_json(&path, self)?;
        Ok(path)
    }
}

/// Writes `value` as pretty JSON to `path` readable by its owner only, through a temporary file and a rename.
pub fn write_private_json<T: Serialize>(path: &Path, value: &T) -> Result<(), JobError> {
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| JobError::Io { path: p, source }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("record")
    ));
    let mut json = serde_json::to_vec_pretty(value).map_err(|source| JobError::BadRecord {
        path: path.to_owned(),
        source,
    })?;
    json.push(b'\n');
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(&json).and_then(|_| f.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The job's link. For the public service, the classic portal's Import/Export tab of the storage account with
/// the subscription and job named; for any other service (the emulator), the job's own address on it.
pub fn job_link(service_url: &str, subscription: &str, account: &str, job: &str) -> String {
    let base = service_url.trim_end_matches('/');
    let public = url_host(base).is_some_and(|h| h.eq_ignore_ascii_case("management.core.windows.net"));
    if public {
        format!(
            "https://manage.windowsazure.com/#Workspaces/StorageExtension/StorageAccount/{account}/ImportExport\
             ?subscription={subscription}&job={job}"
        )
    } else {
        format!("{base}/{subscription}/services/importexport/storageaccounts/{account}/jobs/{job}")
    }
}

/// The link of a job made through Resource Manager: the Azure portal's page of the job for the public cloud;
/// for any other endpoint (a sovereign cloud, the emulator), the job's resource address on it.
pub fn arm_job_link(
    management_endpoint: &str,
    subscription: &str,
    resource_group: &str,
    job: &str,
) -> String {
    let base = management_endpoint.trim_end_matches('/');
    let id = format!(
        "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.ImportExport/jobs/{job}"
    );
    if url_host(base).is_some_and(|h| h.eq_ignore_ascii_case("management.azure.com")) {
        format!("https://portal.azure.com/#resource{id}/overview")
    } else {
        format!("{base}{id}")
    }
}

fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let host = rest.split(['/', '?', '#']).next()?;
    Some(host.rsplit_once(':').map_or(host, |(h, _)| h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_manager_links_name_the_job_resource() {
        assert_eq!(
            arm_job_link("https://management.azure.com/", "s", "rg", "j"),
            "https://portal.azure.com/#resource/subscriptions/s/resourceGroups/rg/providers/Microsoft.ImportExport/jobs/j/overview"
        );
        assert_eq!(
            arm_job_link("https://127.0.0.1:8443", "s", "rg", "j"),
            "https://127.0.0.1:8443/subscriptions/s/resourceGroups/rg/providers/Microsoft.ImportExport/jobs/j"
        );
    }

    #[test]
    fn links_name_subscription_account_and_job() {
        let l = job_link("https://management.core.windows.net", "sub1", "acct", "job1");
        assert!(l.starts_with("https://manage.windowsazure.com/"), "{l}");
        assert!(
            l.contains("StorageAccount/acct/") && l.contains("subscription=sub1") && l.contains("job=job1")
        );
        assert_eq!(
            job_link("https://127.0.0.1:8443/", "s", "a", "j"),
            "https://127.0.0.1:8443/s/services/importexport/storageaccounts/a/jobs/j"
        );
    }

    #[test]
    fn records_round_trip_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let rec = JobRecord {
            job_name: "job1".into(),
            subscription: "s".into(),
            storage_account: "acct".into(),
            service_url: "https://x".into(),
            location: "West US".into(),
            drive_ids: vec!["D1".into()],
            link: "https://x/s".into(),
            recorded: 5,
            deleted: None,
        };
        let p = rec.save(t.path()).unwrap();
        assert_eq!(JobRecord::load(t.path()).unwrap(), rec);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let other = tempfile::tempdir().unwrap();
        assert!(matches!(
            JobRecord::load(other.path()),
            Err(JobError::NoRecord { .. })
        ));
    }
}
