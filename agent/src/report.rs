//! Machine-readable output: the `--json` documents of `snapshots`, `status`, `check` and `backup`, and the
//! node_exporter textfile-collector metrics written after every backup (`--metrics-file`).
//!
//! Each command with `--json` prints exactly one JSON document on standard output; the lines it prints for
//! people go to standard error instead (see [`json_stdout`]). The documents are these serde structs, so
//! their fields only change by adding new ones; docs/agent.md lists every field.

use crate::policy::{Mode, Policy};
use crate::Exit;
use anyhow::Context;
use seedship_shared::staging::{JobDescriptor, JobState};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

pub use seedship_shared::jsonout::{emit, json_stdout};

/// One snapshot in `snapshots --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// The full snapshot id (hex).
    pub id: String,
    /// When it was taken, seconds since the epoch.
    pub time: i64,
    pub host: String,
    /// The backed-up source paths.
    pub paths: Vec<String>,
    pub files: u64,
    /// Bytes of file content in the snapshot.
    pub bytes: u64,
    /// Some files were unreadable or changed while read.
    pub partial: bool,
    /// The snapshot whose trees let unchanged files be skipped, if any.
    pub parent: Option<String>,
}

/// `snapshots --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotsReport {
    /// Oldest first.
    pub snapshots: Vec<SnapshotEntry>,
}

/// Where the import job stands, as `status --json`, `backup --json` and the metrics say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportJobState {
    /// The initial backup into staging is not complete.
    Staging,
    /// The initial backup is staged; the import job is not finished (or not created yet).
    Waiting,
    /// The import job completed but verifying the imported blobs found problems; nothing was copied.
    Refused,
    /// The import was verified and copying it into the vault was interrupted.
    Completing,
    /// The import is in the vault; backups go there.
    Completed,
}

impl ImportJobState {
    pub const ALL: [ImportJobState; 5] = [
        Self::Staging,
        Self::Waiting,
        Self::Refused,
        Self::Completing,
        Self::Completed,
    ];

    /// The snake_case name used in JSON and as the metrics label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Staging => "staging",
            Self::Waiting => "waiting",
            Self::Refused => "refused",
            Self::Completing => "completing",
            Self::Completed => "completed",
        }
    }

    /// The state recorded in the state directory and the job descriptor (no network).
    pub fn recorded(state_dir: &Path, pol: &Policy, desc: Option<&JobDescriptor>) -> ImportJobState {
        if pol.mode == Mode::Online {
            return Self::Completed;
        }
        match desc.map(|d| d.state) {
            Some(JobState::BackupComplete) if crate::complete::record_path(state_dir, &pol.job).exists() => {
                Self::Completing
            }
            Some(JobState::BackupComplete) => Self::Waiting,
            _ => Self::Staging,
        }
    }
}

/// The import job in `status --json` and `backup --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportJob {
    pub name: String,
    pub state: ImportJobState,
}

/// The vault in `status --json` (online mode).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VaultReport {
    pub endpoint: String,
    pub account: String,
    pub container: String,
    /// When the import was moved into the vault, seconds since the epoch.
    pub since: u64,
    /// The import container while it still holds the imported objects (`delete-import` deletes them).
    #[serde(default)]
    pub import_container: Option<String>,
}

/// `status --json`: what the policy and the state directory say (no passphrase, no network).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// `offline` (staging) or `online` (the vault).
    pub mode: String,
    pub sources: Vec<String>,
    /// The staging job's folder.
    pub staging_job: String,
    pub import_job: ImportJob,
    /// Offline: the staged objects and their total bytes (from the job descriptor).
    pub staged_blobs: Option<u64>,
    pub staged_bytes: Option<u64>,
    /// Offline: where the import goes.
    pub storage_account: Option<String>,
    pub container: Option<String>,
    /// Online: the vault.
    pub vault: Option<VaultReport>,
    /// Online: the last backup into the vault, if any.
    pub last_backup: Option<LastBackup>,
}

impl StatusReport {
    /// Reads the status from the state directory and (offline) the staging job descriptor.
    pub fn load(state_dir: &Path, pol: &Policy) -> anyhow::Result<StatusReport> {
        let desc = match pol.mode {
            Mode::Offline => Some(JobDescriptor::load(&pol.job_dir())?),
            Mode::Online => None,
        };
        let vault = pol
            .vault
            .as_ref()
            .filter(|_| pol.mode == Mode::Online)
            .map(|v| VaultReport {
                endpoint: v.endpoint.clone(),
                account: v.account.clone(),
                container: v.container.clone(),
                since: v.since,
                import_container: v.import_container.clone(),
            });
        Ok(StatusReport {
            mode: match pol.mode {
                Mode::Offline => "offline",
                Mode::Online => "online",
            }
            .into(),
            sources: pol.sources.iter().map(|p| p.display().to_string()).collect(),
            staging_job: pol.job_dir().display().to_string(),
            import_job: ImportJob {
                name: pol.job.clone(),
                state: ImportJobState::recorded(state_dir, pol, desc.as_ref()),
            },
            staged_blobs: desc.as_ref().map(|d| d.blobs.len() as u64),
            staged_bytes: desc.as_ref().map(|d| d.blobs.iter().map(|b| b.len).sum()),
            storage_account: desc.as_ref().map(|d| d.storage_account.clone()),
            container: desc.as_ref().map(|d| d.container.clone()),
            last_backup: match pol.mode {
                Mode::Online => LastBackup::load(state_dir)?,
                Mode::Offline => None,
            },
            vault,
        })
    }
}

/// `check --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckJson {
    /// No problems found.
    pub ok: bool,
    pub snapshots: usize,
    pub trees: usize,
    /// Blobs read and authenticated (with `--read-data`).
    pub blobs_read: usize,
    pub read_data: bool,
    /// Every problem found, one message each.
    pub problems: Vec<String>,
}

/// `backup --json`: the summary of one backup run, printed at its end whatever the outcome (also when it
/// failed), and the source of the metrics file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BackupSummary {
    /// `success`, `partial`, `waiting`, `interrupted` or `failure`.
    pub result: String,
    /// The process's exit code (0, 3, 75, 130, 1).
    pub exit_code: u8,
    /// The error that ended the run, when `result` is `failure`.
    pub error: Option<String>,
    /// Where this run wrote: `staging`, `vault`, or none (waiting for the import, or failed early).
    pub target: Option<String>,
    /// The snapshot saved, if one was.
    pub snapshot: Option<String>,
    /// The import job, when the run got as far as reading the policy.
    pub import_job: Option<ImportJob>,
    /// When the run started and ended, seconds since the epoch, and its wall-clock duration.
    pub started: u64,
    pub finished: u64,
    pub duration_seconds: f64,
    pub files: u64,
    pub files_unchanged: u64,
    pub dirs: u64,
    /// Bytes read from files.
    pub bytes_read: u64,
    /// Bytes sent to the vault (0 into staging).
    pub bytes_sent: u64,
    pub blobs_new: u64,
    /// Stored (compressed, encrypted) bytes of the new blobs.
    pub bytes_stored: u64,
    /// Files that could not be backed up completely (each was logged as a warning).
    pub warnings: u64,
}

impl BackupSummary {
    /// Records the pipeline's statistics.
    pub fn set_stats(&mut self, s: &seedship_shared::repo::SnapshotStats) {
        self.files = s.files;
        self.files_unchanged = s.files_unchanged;
        self.dirs = s.dirs;
        self.bytes_read = s.bytes_read;
        self.blobs_new = s.blobs_new;
        self.bytes_stored = s.bytes_stored;
        self.warnings = s.errors;
    }

    /// Records how the run ended.
    pub fn finish(&mut self, outcome: &anyhow::Result<Exit>, started: std::time::Instant) {
        let exit = match outcome {
            Ok(e) => *e,
            Err(_) => Exit::Failure,
        };
        self.exit_code = exit as u8;
        self.result = match exit {
            Exit::Success => "success",
            // diskprep's code; a backup never returns it
            Exit::Failure | Exit::VerifyFailed => "failure",
            Exit::Partial => "partial",
            Exit::Waiting => "waiting",
            Exit::Interrupted => "interrupted",
        }
        .into();
        self.error = outcome
            .as_ref()
            .err()
            .map(|e| seedship_shared::exit::error_line(e.as_ref()));
        self.finished = unix_now();
        self.duration_seconds = started.elapsed().as_secs_f64();
    }

    /// A snapshot was saved (exit 0 or 3).
    pub fn succeeded(&self) -> bool {
        self.snapshot.is_some() && (self.exit_code == 0 || self.exit_code == 3)
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

const LAST_SUCCESS: &str = "seedship_backup_last_success_timestamp_seconds";

/// The metrics of one backup run in the Prometheus text format. `last_success` is this run's end when it
/// saved a snapshot, else the previous success carried over from the old file (absent if there never was one).
pub fn metrics_text(s: &BackupSummary, last_success: Option<u64>) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    };
    gauge(
        "seedship_backup_last_run_timestamp_seconds",
        "When the last backup run ended (seconds since the epoch).",
        s.finished.to_string(),
    );
    if let Some(t) = last_success {
        gauge(
            LAST_SUCCESS,
            "When the last backup that saved a snapshot ended.",
            t.to_string(),
        );
    }
    gauge(
        "seedship_backup_duration_seconds",
        "Wall-clock duration of the last backup run.",
        format!("{:.3}", s.duration_seconds),
    );
    gauge(
        "seedship_backup_exit_code",
        "Exit code of the last run: 0 success, 1 failure, 3 partial, 75 waiting for the import job, 130 interrupted.",
        s.exit_code.to_string(),
    );
    gauge(
        "seedship_backup_bytes_read",
        "Bytes read from files by the last run.",
        s.bytes_read.to_string(),
    );
    gauge(
        "seedship_backup_bytes_sent",
        "Bytes sent to the vault by the last run.",
        s.bytes_sent.to_string(),
    );
    gauge(
        "seedship_backup_files",
        "Files in the last run's snapshot.",
        s.files.to_string(),
    );
    gauge(
        "seedship_backup_warnings",
        "Files the last run could not back up completely.",
        s.warnings.to_string(),
    );
    if let Some(job) = &s.import_job {
        let name = "seedship_import_job_state";
        out.push_str(&format!(
            "# HELP {name} The import job's state: 1 for the current one.\n# TYPE {name} gauge\n"
        ));
        for st in ImportJobState::ALL {
            out.push_str(&format!(
                "{name}{{job=\"{}\",state=\"{}\"}} {}\n",
                label_escape(&job.name),
                st.name(),
                u8::from(st == job.state)
            ));
        }
    }
    out
}

fn label_escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The last success recorded in an earlier metrics file, if it has one.
fn previous_success(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(LAST_SUCCESS)?.trim().parse().ok())
}

/// Writes the metrics file for node_exporter's textfile collector atomically (a temporary file in the same
/// folder, mode 0644, synced, then renamed over the old one), so the collector never reads half a file.
pub fn write_metrics(path: &Path, s: &BackupSummary) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let last = if s.succeeded() {
        Some(s.finished)
    } else {
        previous_success(path)
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("--metrics-file {} names no file", path.display()))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(metrics_text(s, last).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!(
            "cannot write the metrics file {}: {e} (check that its folder exists and is writable)",
            path.display()
        )
    })
}

/// What `status` shows about the last backup into the vault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastBackup {
    /// Snapshot id (hex).
    pub snapshot: String,
    /// When it finished (seconds since the epoch).
    pub time: u64,
    pub files: u64,
    /// Bytes of changed files read.
    pub bytes_read: u64,
    /// Bytes sent to the vault.
    pub bytes_sent: u64,
    /// Wall-clock duration in seconds.
    pub seconds: f64,
    /// Files that could not be backed up completely.
    pub errors: u64,
}

impl LastBackup {
    pub const FILE: &'static str = "last-backup.json";

    /// Writes `<state-dir>/last-backup.json` (atomically).
    pub fn save(&self, state_dir: &Path) -> anyhow::Result<()> {
        let p = state_dir.join(Self::FILE);
        let tmp = state_dir.join(".last-backup.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &p).with_context(|| format!("cannot write {}", p.display()))
    }

    /// The record, if a backup into the vault finished on this machine.
    pub fn load(state_dir: &Path) -> anyhow::Result<Option<LastBackup>> {
        let p = state_dir.join(Self::FILE);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map(Some).with_context(|| {
                format!(
                    "{}: not a valid record (delete it; the next backup rewrites it)",
                    p.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(exit: u8, snapshot: bool) -> BackupSummary {
        BackupSummary {
            exit_code: exit,
            snapshot: snapshot.then(|| "ab".repeat(32)),
            finished: 1_700_000_000,
            import_job: Some(ImportJob {
                name: "job-1".into(),
                state: ImportJobState::Waiting,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn metrics_carry_the_last_success_over_a_failed_run() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seedship.prom");
        write_metrics(&p, &summary(0, true)).unwrap();
        let mut failed = summary(1, false);
        failed.finished = 1_700_000_100;
        write_metrics(&p, &failed).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("seedship_backup_last_success_timestamp_seconds 1700000000\n"),
            "{text}"
        );
        assert!(
            text.contains("seedship_backup_last_run_timestamp_seconds 1700000100\n"),
            "{text}"
        );
        assert!(text.contains("seedship_backup_exit_code 1\n"));
        assert!(text.contains("seedship_import_job_state{job=\"job-1\",state=\"waiting\"} 1\n"));
        assert!(text.contains("seedship_import_job_state{job=\"job-1\",state=\"completed\"} 0\n"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o644);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left");
    }

    #[test]
    fn never_succeeded_has_no_last_success() {
        let text = metrics_text(&summary(75, false), None);
        assert!(!text.contains(LAST_SUCCESS));
        assert!(text.contains("seedship_backup_exit_code 75\n"));
    }

    #[test]
    fn metrics_file_in_a_missing_folder_is_a_clear_error() {
        let e = write_metrics(Path::new("/nonexistent-seedship/x.prom"), &summary(0, true)).unwrap_err();
        assert!(e.to_string().contains("/nonexistent-seedship/x.prom"), "{e}");
    }
}
