//! The agent's state directory and backup policy, name validation and passphrase input.
//!
//! `<state-dir>/policy.json` records what `offline start` set up: the sources, the staging location, the job
//! and the mode; after the import job completes, the agent records the vault it moved into and switches the
//! mode to online. The passphrase and the storage account key are never stored.

use crate::exclude::Exclusions;
use crate::retention::KeepRules;
use crate::throttle::UploadLimit;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Where backups go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Into the staging location, for offline seeding.
    Offline,
    /// Into the vault container over the network, after the import job completed.
    Online,
}

/// The vault: the container the imported blobs were copied into, where incremental backups go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultTarget {
    /// The blob endpoint: `https://<account>.blob.core.windows.net`, or path style with the account for
    /// Azurite (`http://127.0.0.1:10000/devstoreaccount1`).
    pub endpoint: String,
    /// The storage account (the import job's).
    pub account: String,
    /// The vault container.
    pub container: String,
    /// When the import was moved into the vault (seconds since the epoch).
    pub since: u64,
    /// The import container, while it still holds the imported objects (billed for their written pages):
    /// recorded by the completion, cleared by `seedship-agent delete-import`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_container: Option<String>,
}

/// The policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub mode: Mode,
    pub sources: Vec<PathBuf>,
    pub staging: PathBuf,
    pub job: String,
    /// Bytes the sources occupied at `offline start` (progress estimate of the first backup).
    #[serde(default)]
    pub source_bytes: u64,
    /// The vault, once the import job completed and its blobs were copied there (mode `online`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<VaultTarget>,
    /// Retention rules applied after every successful backup (none: every snapshot is kept).
    #[serde(default, skip_serializing_if = "KeepRules::is_empty")]
    pub keep: KeepRules,
    /// What the backup walk leaves out.
    #[serde(default, skip_serializing_if = "Exclusions::is_empty")]
    pub exclude: Exclusions,
    /// The upload limit into the vault, and when it applies (`policy set --limit-upload...`); a
    /// `backup --limit-upload` given on the command line wins.
    #[serde(default, skip_serializing_if = "UploadLimit::is_none")]
    pub upload: UploadLimit,
    /// Changes made with `policy set` after `offline start`, oldest first (shown by `status`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<PolicyChange>,
}

/// One `policy set`: when, and what it changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyChange {
    /// Seconds since the epoch.
    pub time: i64,
    /// What changed, one line per item (`source added: /srv/new`).
    pub what: Vec<String>,
}

impl Policy {
    /// A new offline policy (what `offline start` records).
    pub fn offline(sources: Vec<PathBuf>, staging: PathBuf, job: String, source_bytes: u64) -> Policy {
        Policy {
            mode: Mode::Offline,
            sources,
            staging,
            job,
            source_bytes,
            vault: None,
            keep: KeepRules::default(),
            exclude: Exclusions::default(),
            upload: UploadLimit::default(),
            changes: vec![],
        }
    }

    /// The sources, separated by spaces (for `status`).
    pub fn sources_line(&self) -> String {
        self.sources
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub const FILE: &'static str = "policy.json";

    /// The job folder `<staging>/<job>`.
    pub fn job_dir(&self) -> PathBuf {
        self.staging.join(&self.job)
    }

    /// The repository folder `<staging>/<job>/blobs`.
    pub fn blobs_dir(&self) -> PathBuf {
        self.job_dir().join(seedship_shared::staging::BLOBS_DIR)
    }

    pub fn load(state_dir: &Path) -> anyhow::Result<Policy> {
        let p = state_dir.join(Self::FILE);
        let b = std::fs::read(&p).with_context(|| {
            format!(
                "no backup policy at {} (run `seedship-agent offline start` first, or give --state-dir)",
                p.display()
            )
        })?;
        serde_json::from_slice(&b).with_context(|| format!("{}: not a valid policy file", p.display()))
    }

    pub fn save(&self, state_dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("cannot create state directory {}", state_dir.display()))?;
        let p = state_dir.join(Self::FILE);
        let tmp = state_dir.join(".policy.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &p).with_context(|| format!("cannot write {}", p.display()))?;
        Ok(())
    }
}

/// Job names: lowercase letters, digits, hyphens and underscores, starting with a letter, at most 64.
pub fn check_job_name(s: &str) -> anyhow::Result<()> {
    let ok = s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "invalid job name {s:?}: use 1-64 lowercase letters, digits, '-' and '_', starting with a letter"
        );
    }
    Ok(())
}

/// Azure container names: 3-63 characters, lowercase letters, digits and single hyphens, starting and ending
/// with a letter or digit.
pub fn check_container_name(s: &str) -> anyhow::Result<()> {
    let ok = (3..=63).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--");
    if !ok {
        bail!("invalid container name {s:?}: Azure requires 3-63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit");
    }
    Ok(())
}

/// Storage account names: 3-24 lowercase letters and digits.
pub fn check_account_name(s: &str) -> anyhow::Result<()> {
    if !(3..=24).contains(&s.len()) || !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        bail!("invalid storage account name {s:?}: Azure requires 3-24 lowercase letters and digits");
    }
    Ok(())
}

/// A new passphrase asked twice on the terminal (`key add`, `key passwd` without a file).
pub fn new_passphrase() -> anyhow::Result<Zeroizing<String>> {
    if !std::io::stdin().is_terminal() {
        bail!("no new passphrase: give --new-passphrase-file FILE (no terminal to ask on)");
    }
    let p = Zeroizing::new(rpassword::prompt_password("New passphrase: ")?);
    let again = Zeroizing::new(rpassword::prompt_password("Repeat the new passphrase: ")?);
    if again != p {
        bail!("the two passphrases differ; nothing was written");
    }
    Ok(p)
}

/// Free bytes for an unprivileged writer at `path` (statvfs).
pub fn free_space(path: &Path) -> anyhow::Result<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: zeroed statvfs is a valid out parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("statvfs {}", path.display()));
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["job1", "a-b_c"] {
            check_job_name(ok).unwrap();
        }
        for bad in ["", "1job", "Job", "a b", "a/b"] {
            assert!(check_job_name(bad).is_err(), "{bad}");
        }
        for ok in ["abc", "a-b-c", "1ab"] {
            check_container_name(ok).unwrap();
        }
        for bad in ["ab", "-abc", "abc-", "a--b", "ABC", &"a".repeat(64)] {
            assert!(check_container_name(bad).is_err(), "{bad}");
        }
        check_account_name("acct01").unwrap();
        for bad in ["ab", "Acct", "a-b", &"a".repeat(25)] {
            assert!(check_account_name(bad).is_err(), "{bad}");
        }
    }
}
