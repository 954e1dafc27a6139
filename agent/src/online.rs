//! Online mode: incremental backups into the vault once the import job's blobs were moved there.
//!
//! The pipeline is the staging one ([`crate::backup`]) over the vault container: Azure page blobs with
//! retries, a [`Meter`] counting (and with `--limit-upload` throttling) what crosses the network, and the
//! local metadata and tree cache in `<state-dir>/cache/<job>/`, so an incremental reads nothing from the vault
//! but listings and what it has never seen. Index objects are written often (see
//! [`WriterOptions::online`]) so a killed run's successor re-uploads little. Nothing here needs the staging
//! folder: the staging job descriptor is neither read nor written. Each finished backup is recorded in
//! `<state-dir>/last-backup.json` for `status`, which needs no passphrase and no network.

use crate::backup::WriterOptions;
use crate::commands::{open_metered_repo, run_pipeline, snapshot_line};
use crate::policy::{Mode, Policy};
use crate::store::STORAGE_KEY_ENV;
use crate::{BackupCmd, Cli, Exit};
use anyhow::Context;
use seedship_shared::blob::Meter;
use seedship_shared::repo::RepoError;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Parses an upload rate: bytes per second, with an optional `K`, `M` or `G` suffix for KiB/s, MiB/s,
/// GiB/s (`10M`, `512K`, `1.5M`, `2000000`); an optional trailing `/s` or `B` is accepted.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let t = t.strip_suffix(['B', 'b']).unwrap_or(t);
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => {
                    return Err(format!(
                        "invalid rate {s:?}: the suffix must be K, M or G (e.g. 10M)"
                    ))
                }
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid rate {s:?}: give bytes per second, e.g. 10M (10 MiB/s) or 512K"))?;
    let rate = v * mult as f64;
    if !rate.is_finite() || rate < 1024.0 || rate > (1u64 << 50) as f64 {
        return Err(format!(
            "invalid rate {s:?}: the upload limit must be between 1K and 1048576G per second"
        ));
    }
    Ok(rate as u64)
}

/// `1.2 MiB`: a byte count for people.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// Turns an error opening the repository into one that says what to do, in online mode.
pub fn explain(e: RepoError, pol: &Policy) -> anyhow::Error {
    let Some(v) = pol.vault.as_ref().filter(|_| pol.mode == Mode::Online) else {
        return e.into();
    };
    let msg = match &e {
        RepoError::Blob(b) if matches!(b.http_status(), Some(401 | 403)) => format!(
            "the vault (container {} of storage account {} at {}) refused the storage account key: check {} \
             (the key of account {}, as the portal shows it)",
            v.container, v.account, v.endpoint, STORAGE_KEY_ENV, v.account
        ),
        RepoError::NoRepository { .. } => format!(
            "the vault container {} of storage account {} holds no repository: check the vault in {} (the \
             import is moved there after the import job completes)",
            v.container,
            v.account,
            Policy::FILE
        ),
        _ => return e.into(),
    };
    anyhow::Error::new(e).context(msg)
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

/// `backup` in online mode: one incremental into the vault.
pub fn backup(cli: &Cli, c: &BackupCmd, pol: &Policy) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let meter = Arc::new(Meter::with_limit(c.limit_upload));
    let repo = open_metered_repo(cli, pol, true, meter.clone())?;
    let host = seedship_shared::host::hostname();
    let out = run_pipeline(
        cli,
        pol,
        &repo,
        &host,
        WriterOptions::online(),
        Some(meter.clone()),
    )?;
    let secs = started.elapsed().as_secs_f64();
    let m = meter.stats();
    let traffic = format!(
        "sent {} bytes to the vault ({}) in {secs:.1} s; {} of changed files read",
        m.bytes_sent,
        human(m.bytes_sent),
        human(out.stats.bytes_read)
    );
    let Some(snap) = out.snapshot else {
        println!(
            "interrupted: {} new blobs are stored and indexed in the vault; run `seedship-agent backup` again to continue",
            out.stats.blobs_new
        );
        println!("{traffic}");
        return Ok(Exit::Interrupted);
    };
    let s = &out.stats;
    println!("{}", snapshot_line(&snap, s));
    println!("{traffic}");
    let t = repo.tree_cache_stats();
    println!(
        "received {} bytes from the vault; {} requests in all; trees: {} from the local cache, {} from the vault",
        m.bytes_received, m.requests, t.hits, t.misses
    );
    LastBackup {
        snapshot: snap,
        time: now(),
        files: s.files,
        bytes_read: s.bytes_read,
        bytes_sent: m.bytes_sent,
        seconds: secs,
        errors: s.errors,
    }
    .save(&cli.state_dir)?;
    Ok(crate::commands::backup_exit(s.errors))
}

/// `status` in online mode: the vault and the last backup (no passphrase, no network).
pub fn status(cli: &Cli, pol: &Policy) -> anyhow::Result<Exit> {
    let v = pol.vault.as_ref().context(
        "the policy is online but names no vault; restore policy.json from a backup of the state directory",
    )?;
    println!("mode: online (incremental backups into the vault)");
    println!("sources: {}", pol.sources_line());
    println!(
        "vault: container {} of storage account {} at {} (since {})",
        v.container,
        v.account,
        v.endpoint,
        utc(v.since)
    );
    match LastBackup::load(&cli.state_dir)? {
        Some(b) => println!(
            "last backup: {}, snapshot {}, {} files, {} of changed files read, sent {} bytes ({}) in {:.1} s{}",
            utc(b.time),
            &b.snapshot[..b.snapshot.len().min(16)],
            b.files,
            human(b.bytes_read),
            b.bytes_sent,
            human(b.bytes_sent),
            b.seconds,
            if b.errors > 0 {
                format!(", {} file(s) incomplete", b.errors)
            } else {
                String::new()
            }
        ),
        None => println!("last backup: none into the vault yet (run `seedship-agent backup`)"),
    }
    println!(
        "staging job: {} (no longer needed: the initial backup is in the vault)",
        pol.job_dir().display()
    );
    Ok(Exit::Success)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `2026-11-22 07:05:09 UTC` from seconds since the epoch.
pub fn utc(secs: u64) -> String {
    seedship_shared::time::UtcTime::from_unix(secs.min(i64::MAX as u64) as i64).readable()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10M"), Ok(10 << 20));
        assert_eq!(parse_rate("512K"), Ok(512 << 10));
        assert_eq!(parse_rate("512k/s"), Ok(512 << 10));
        assert_eq!(parse_rate("1.5MB"), Ok(3 << 19));
        assert_eq!(parse_rate("2G"), Ok(2 << 30));
        assert_eq!(parse_rate("2000000"), Ok(2_000_000));
        for bad in ["", "M", "10X", "-1M", "0", "100", "nanM", "1e30G"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refused_keys_and_missing_repositories_are_explained() {
        let pol = Policy {
            mode: Mode::Online,
            sources: vec![],
            staging: "/nonexistent".into(),
            job: "job1".into(),
            source_bytes: 0,
            vault: Some(crate::policy::VaultTarget {
                endpoint: "http://127.0.0.1:1/devstoreaccount1".into(),
                account: "devstoreaccount1".into(),
                container: "vault".into(),
                since: 0,
            }),
        };
        let refused = RepoError::Blob(seedship_shared::blob::BlobError::Http {
            store: "vault".into(),
            operation: "List Blobs",
            name: "config".into(),
            status: 403,
            code: Some("AuthenticationFailed".into()),
            message: "no".into(),
        });
        let msg = format!("{:#}", explain(refused, &pol));
        assert!(
            msg.contains("refused the storage account key") && msg.contains("HTTP 403"),
            "{msg}"
        );
        let none = RepoError::NoRepository {
            store: "vault".into(),
        };
        let msg = format!("{:#}", explain(none, &pol));
        assert!(msg.contains("holds no repository"), "{msg}");
        let offline = Policy {
            mode: Mode::Offline,
            ..pol
        };
        let msg = format!("{:#}", explain(RepoError::WrongPassphrase { keys: 1 }, &offline));
        assert!(msg.starts_with("wrong passphrase"), "{msg}");
    }

    #[test]
    fn the_last_backup_record_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LastBackup::load(dir.path()).unwrap(), None);
        let b = LastBackup {
            snapshot: "ab".repeat(32),
            time: 1_795_331_109,
            files: 3,
            bytes_read: 10,
            bytes_sent: 20,
            seconds: 1.5,
            errors: 0,
        };
        b.save(dir.path()).unwrap();
        assert_eq!(LastBackup::load(dir.path()).unwrap(), Some(b));
        std::fs::write(dir.path().join(LastBackup::FILE), b"{").unwrap();
        assert!(LastBackup::load(dir.path()).is_err());
    }

    #[test]
    fn dates_and_sizes() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_795_331_109), "2026-11-22 07:05:09 UTC");
        assert_eq!(human(1000), "1000 B");
        assert_eq!(human(1_258_291), "1.2 MiB");
        assert_eq!(human(5 << 30), "5.0 GiB");
    }
}
