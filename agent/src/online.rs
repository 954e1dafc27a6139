//! Online mode: incremental backups into the vault once the import job's blobs were moved there.
//!
//! The pipeline is the staging one ([`crate::backup`]) over the vault container: Azure page blobs with
//! retries, a [`Meter`] counting (and with `--limit-upload` throttling) what crosses the network, and the
//! local metadata and tree cache in `<state-dir>/cache/<job>/`, so an incremental reads nothing from the vault
//! but listings and what it has never seen. Index objects are written often (see
//! [`crate::config::Tuning::online_writer`]) so a killed run's successor re-uploads little. Nothing here needs
//! the staging folder: the staging job descriptor is neither read nor written. Each finished backup is recorded in
//! `<state-dir>/last-backup.json` for `status`, which needs no passphrase and no network.

use crate::pipeline::{backup_exit, open_metered_repo, run_pipeline, snapshot_line, start_walk};
use crate::policy::Policy;
pub use crate::report::LastBackup;
use crate::{BackupCmd, Config, Exit};
use anyhow::Context;
use seedship_shared::blob::Meter;
use seedship_shared::units::human;
use std::sync::Arc;
use std::time::Instant;

/// `backup` in online mode: one incremental into the vault.
pub fn backup(
    cfg: &Config,
    c: &BackupCmd,
    pol: &Policy,
    sum: &mut crate::report::BackupSummary,
) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let meter = Arc::new(upload_meter(c.limit_upload, &pol.upload));
    let _lock = crate::lock::acquire(&cfg.storage_key, pol, "backup")?;
    let start = start_walk(cfg, pol)?;
    let repo = open_metered_repo(cfg, pol, true, meter.clone())?;
    let host = seedship_shared::host::hostname();
    let out = run_pipeline(
        cfg,
        pol,
        &repo,
        &host,
        cfg.tuning.online_writer(),
        Some(meter.clone()),
        start,
    )?;
    let secs = started.elapsed().as_secs_f64();
    let m = meter.stats();
    sum.set_stats(&out.stats);
    sum.bytes_sent = m.bytes_sent;
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
    sum.snapshot = Some(snap.clone());
    println!("{}", snapshot_line(&snap, s));
    println!("{traffic}");
    let t = repo.tree_cache_stats();
    println!(
        "received {} bytes from the vault; {} requests in all; trees: {} from the local cache, {} from the vault",
        m.bytes_received, m.requests, t.hits, t.misses
    );
    LastBackup {
        snapshot: snap,
        time: seedship_shared::time::now_unix() as u64,
        files: s.files,
        bytes_read: s.bytes_read,
        bytes_sent: m.bytes_sent,
        seconds: secs,
        errors: s.errors,
    }
    .save(&cfg.state_dir)?;
    crate::forget::after_backup(&repo, pol)?;
    Ok(backup_exit(s.errors))
}

/// The meter of a backup into the vault: `--limit-upload` if given, else the policy's limit, which with
/// work hours follows the local clock (asked again for every piece sent).
fn upload_meter(given: Option<u64>, stored: &crate::throttle::UploadLimit) -> Meter {
    if given.is_some() || !stored.scheduled() {
        return Meter::with_limit(given.or(stored.rate));
    }
    let (limit, tz) = (stored.clone(), crate::forget::host_time_zone());
    Meter::with_schedule(Box::new(move || {
        limit.rate_at(jiff::Timestamp::now().as_second(), &tz)
    }))
}

/// `status` in online mode: the vault and the last backup (no passphrase, no network).
pub fn status(cfg: &Config, pol: &Policy) -> anyhow::Result<Exit> {
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
    if let Some(c) = &v.import_container {
        println!(
            "import container: {c} still holds the imported objects (billed for their written pages): \
             `seedship-agent delete-import` deletes those the vault holds"
        );
    }
    match LastBackup::load(&cfg.state_dir)? {
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
    for line in crate::policy_cmd::summary(pol) {
        println!("{line}");
    }
    if let Some(c) = crate::policy_cmd::last_change(pol) {
        println!("{c}");
    }
    println!(
        "staging job: {} (no longer needed: the initial backup is in the vault)",
        pol.job_dir().display()
    );
    Ok(Exit::Success)
}

/// `2026-11-22 07:05:09 UTC` from seconds since the epoch.
pub fn utc(secs: u64) -> String {
    seedship_shared::time::UtcTime::from_unix(secs.min(i64::MAX as u64) as i64).readable()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_795_331_109), "2026-11-22 07:05:09 UTC");
    }
}
