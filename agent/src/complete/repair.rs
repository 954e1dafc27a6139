//! `backup --repair-from-staging`: before completion verifies the import, the ranges every drive's copy log
//! reports damaged or missing are sent again with Put Page from the staged copy, through the repair core that
//! `seedship-diskprep repairimport` uses ([`seedship_shared::repair`]).
//!
//! Checked before anything is sent: each copy log names only objects of this job in the import container;
//! every such object is in its drive's manifest (read from the drive's journal, which diskprep left in
//! `<staging>/<job>/diskprep/<drive-id>.jrn`); the staged object's whole BLAKE3 equals the job descriptor's;
//! and every range's MD5 in staging equals the manifest's. Progress goes into
//! `<state-dir>/repair-<job>.rep`, so a rerun resumes. Completion then compares every object's BLAKE3
//! (`--verify-all` is implied) before anything is copied into the vault.

use super::verify::fetch_log;
use super::{CompletionPlan, Stores};
use seedship_shared::api::Job;
use seedship_shared::blob::{
    AzureOptions, AzureStore, BlobStore, Meter, MeteredStore, RetryPolicy, RetryStore,
};
use seedship_shared::repair::{self, Damage, Manifest, RepairFile, RepairSource};
use seedship_shared::staging::JobDescriptor;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What the repair did; `problems` not empty means nothing was sent.
#[derive(Debug, Default)]
pub struct Repaired {
    pub problems: Vec<String>,
    pub ranges: usize,
    pub resumed: usize,
    pub damaged_bytes: u64,
    pub bytes_sent: u64,
}

/// The staged copy, read through the staging store.
struct Staged<'a>(&'a dyn BlobStore);

impl RepairSource for Staged<'_> {
    fn describe(&self, d: &Damage) -> String {
        format!("the staged copy of {} ({})", d.manifest_name, self.0.describe())
    }

    fn read_at(&self, d: &Damage, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        self.0
            .read_at(&d.manifest_name, offset, buf)
            .map_err(|e| e.to_string())
    }
}

/// Checks, then sends every damaged range of the import from staging.
pub fn from_staging(
    plan: &CompletionPlan,
    job: &Job,
    desc: &JobDescriptor,
    stores: &Stores,
    staging: &dyn BlobStore,
    job_dir: &Path,
    record: &Path,
) -> anyhow::Result<Repaired> {
    let mut out = Repaired::default();
    let items = damaged(plan, job, desc, stores, staging, job_dir, &mut out.problems);
    out.damaged_bytes = items.iter().map(Damage::bytes).sum();
    if !out.problems.is_empty() || items.is_empty() {
        return Ok(out);
    }
    let source = Staged(staging);
    out.problems = repair::check(&items, &source);
    if !out.problems.is_empty() {
        return Ok(out);
    }
    let meter = Arc::new(Meter::new());
    let open = |container: &str| -> Result<Arc<dyn BlobStore>, String> {
        let opts = AzureOptions::new(
            &stores.endpoint,
            &stores.account,
            container,
            stores.credential.clone(),
        );
        let store = AzureStore::new(opts).map_err(|e| e.to_string())?;
        Ok(Arc::new(RetryStore::new(
            MeteredStore::new(store, meter.clone()),
            RetryPolicy::default(),
        )))
    };
    let mut file = RepairFile::open(record)?;
    let total: usize = items.iter().map(|d| d.fixes.len()).sum();
    println!(
        "repairing the import from staging: {total} range(s) ({}) of {} object(s) the copy logs report damaged \
         or missing; progress in {}",
        seedship_shared::units::human(out.damaged_bytes),
        items.len(),
        record.display()
    );
    let cancel = AtomicBool::new(false);
    let sent = repair::send(&items, &source, &open, &mut file, &cancel, &mut |d, f, s| {
        println!(
            "  {} range {}..{} ({}) sent [{}/{total}]",
            d.name,
            f.offset,
            f.offset + f.length,
            f.status,
            s.ranges + s.resumed
        );
    })?;
    out.ranges = sent.ranges;
    out.resumed = sent.resumed;
    out.bytes_sent = meter.stats().bytes_sent;
    Ok(out)
}

/// The ranges to send, from every drive's copy log; problems for anything that cannot be repaired.
fn damaged(
    plan: &CompletionPlan,
    job: &Job,
    desc: &JobDescriptor,
    stores: &Stores,
    staging: &dyn BlobStore,
    job_dir: &Path,
    problems: &mut Vec<String>,
) -> Vec<Damage> {
    let staged: HashMap<&str, &seedship_shared::staging::StagedBlob> =
        desc.blobs.iter().map(|b| (b.name.as_str(), b)).collect();
    let mut items = Vec::new();
    for d in job.drives() {
        let Some(uri) = &d.error_log_uri else { continue };
        let log = match fetch_log(plan, stores, uri) {
            Ok(l) => l,
            Err(e) => {
                problems.push(format!(
                    "cannot read the copy log of drive {} ({uri}): {e}",
                    d.drive_id
                ));
                continue;
            }
        };
        if log.blobs.iter().all(|b| b.is_clean()) {
            continue;
        }
        let journal = job_dir.join("diskprep").join(format!("{}.jrn", log.drive_id));
        let manifest = match Manifest::from_journal(&journal) {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!(
                    "drive {}: its manifest's MD5s cannot be read from its journal ({e}); the journal diskprep \
                     wrote is needed to repair from staging",
                    log.drive_id
                ));
                continue;
            }
        };
        let (found, p) = repair::damage(&log, &manifest);
        problems.extend(p);
        for item in found {
            if item.container != plan.import_container {
                problems.push(format!(
                    "the copy log of drive {} names {}, outside import container {}: not repaired",
                    log.drive_id,
                    item.target(),
                    plan.import_container
                ));
            } else if !staged.contains_key(item.manifest_name.as_str()) {
                problems.push(format!(
                    "the copy log of drive {} names object {}, which is not part of job {} (job.json): not \
                     repaired",
                    log.drive_id, item.manifest_name, plan.job
                ));
            } else {
                items.push(item);
            }
        }
    }
    // the staged copy must still be the one the drives were made from
    let mut seen = HashSet::new();
    for item in &items {
        let Some(b) = staged.get(item.manifest_name.as_str()) else {
            continue;
        };
        if !seen.insert(b.name.clone()) {
            continue;
        }
        match seedship_shared::blob::blake3_of(staging, &b.name, 32 << 20, |_| {}) {
            Ok((len, h)) if len == b.len && h == b.blake3 => {}
            Ok((len, h)) => problems.push(format!(
                "object {}: the staged copy is {len} bytes with BLAKE3 {h}, but job.json records {} bytes with \
                 BLAKE3 {}: staging changed since the drives were prepared, so it cannot repair the import",
                b.name, b.len, b.blake3
            )),
            Err(e) => problems.push(format!("object {}: the staged copy cannot be read: {e}", b.name)),
        }
    }
    items
}
