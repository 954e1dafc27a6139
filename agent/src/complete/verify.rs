//! Verification of an import before anything is copied into the vault.
//!
//! In order: every drive's copy log (fetched from its `ErrorLogUri`, parsed as a `DriveLog`): a blob the log
//! does not report as entirely `Completed` (a `Corrupted` or missing range, a blob error, a renamed or skipped
//! disposition) is read whole and accepted only if its BLAKE3 equals the job descriptor's (someone repaired
//! it), else each failed range is named with its drive. Then every object of the job descriptor must be in
//! the import container with its length; the repository is opened there with the passphrase (config and
//! keys), every metadata object (config, keys, index, snapshots) must match its staged BLAKE3 and every index
//! and snapshot authenticates, every tree of every snapshot is read; a sample of data blobs is read back and
//! authenticated, or with `--verify-all` every object's BLAKE3 is compared. Problems are collected, each
//! naming its object, range or drive.

use super::{drive_finished, CompletionPlan, Stores};
use crate::progress::StepMeter;
use seedship_shared::api::Job;
use seedship_shared::blob::{BlobError, BlobStore};
use seedship_shared::manifest::copylog::{BlobStatus, DriveLog, DriveStatus, LogBlob};
use seedship_shared::repo::{volume_name, IndexEntry, Repository, BLOB_DATA};
use seedship_shared::staging::{JobDescriptor, StagedBlob};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Copy logs larger than this are refused (a real one lists at most a drive's blobs and ranges).
const MAX_LOG_LEN: u64 = 64 << 20;

/// What verification found.
#[derive(Debug, Default)]
pub struct Verification {
    /// Each problem, naming its object, range or drive; completion refuses when there is any.
    pub problems: Vec<String>,
    /// Things worth knowing that do not stop completion.
    pub notes: Vec<String>,
    /// Objects of the job found with their length.
    pub objects: usize,
    /// Objects whose whole BLAKE3 was compared with the job descriptor's.
    pub digested: usize,
    /// Data blobs read back and authenticated, of `data_blobs` in the index.
    pub sampled: usize,
    pub data_blobs: usize,
    pub snapshots: usize,
    pub trees: usize,
}

impl Verification {
    /// One line saying what was verified.
    pub fn summary(&self) -> String {
        if self.sampled == 0 && self.digested == self.objects {
            return format!(
                "verified: {} objects present with their lengths and every byte compared with the staged \
                 BLAKE3 (--verify-all), {} snapshot(s) and {} tree(s) read",
                self.objects, self.snapshots, self.trees
            );
        }
        format!(
            "verified: {} objects present with their lengths, {} compared with their staged BLAKE3, {} \
             snapshot(s) and {} tree(s) read, {} of {} data blobs read back and authenticated",
            self.objects, self.digested, self.snapshots, self.trees, self.sampled, self.data_blobs
        )
    }
}

/// Verifies the import of `job` into the plan's import container.
pub fn verify(
    plan: &CompletionPlan,
    job: &Job,
    desc: &JobDescriptor,
    stores: &Stores,
    staging: &dyn BlobStore,
    passphrase: &str,
    quiet: bool,
) -> Verification {
    let mut v = Verification::default();
    let staged: HashMap<&str, &StagedBlob> = desc.blobs.iter().map(|b| (b.name.as_str(), b)).collect();
    let mut digested = HashSet::new();
    let damaged = copy_logs(plan, job, &staged, stores, &mut digested, &mut v);
    let listed = match stores.import.list("") {
        Ok(l) => l.into_iter().map(|b| (b.name, b.len)).collect::<HashMap<_, _>>(),
        Err(e) => {
            v.problems.push(format!(
                "cannot list import container {}: {e}",
                plan.import_container
            ));
            return v;
        }
    };
    let mut complete = true;
    for b in &desc.blobs {
        match listed.get(&b.name) {
            Some(&len) if len == b.len => {
                v.objects += 1;
                if !damaged.contains(&b.name) && !unwritten_ranges(plan, stores, staging, b, &mut v) {
                    complete = false;
                }
            }
            Some(&len) => {
                complete = false;
                v.problems.push(format!(
                    "object {} is {len} bytes in import container {}, but the staged object is {} bytes",
                    b.name, plan.import_container, b.len
                ));
            }
            None => {
                complete = false;
                v.problems.push(format!(
                    "object {} ({} bytes) is missing from import container {} of storage account {}",
                    b.name, b.len, plan.import_container, plan.account
                ));
            }
        }
    }
    let extra = listed.keys().filter(|n| !staged.contains_key(n.as_str())).count();
    if extra > 0 {
        v.notes.push(format!(
            "import container {} holds {extra} object(s) that are not part of job {}; they are not copied",
            plan.import_container, plan.job
        ));
    }
    if !complete {
        v.notes
            .push("the repository was not opened: objects are missing or have the wrong length".into());
        return v;
    }
    repository(plan, desc, stores, passphrase, &damaged, &mut digested, &mut v);
    if plan.verify_all && v.problems.is_empty() {
        let left: Vec<&StagedBlob> = desc
            .blobs
            .iter()
            .filter(|b| !digested.contains(&b.name))
            .collect();
        let meter = StepMeter::start("verified", left.iter().map(|b| b.len).sum(), quiet);
        for b in left {
            compare_digest(&*stores.import, b, &mut v, Some(&meter));
            digested.insert(b.name.clone());
        }
    }
    v.digested = digested.len();
    v
}

/// Checks that every range the staged object holds data in was written into the import container (an
/// object the data centre created at its full length but filled only from the drives it received has
/// unwritten ranges). Names each missing range; returns whether there was none. The staged copy's ranges
/// come from `staging` (the local staging folder); when it cannot be read, nothing is concluded.
fn unwritten_ranges(
    plan: &CompletionPlan,
    stores: &Stores,
    staging: &dyn BlobStore,
    b: &StagedBlob,
    v: &mut Verification,
) -> bool {
    let staged = match staging.page_ranges(&b.name) {
        Ok(r) => r,
        Err(e) => {
            v.notes.push(format!(
                "object {}: the staged copy's ranges cannot be read ({e}); its written ranges in the import \
                 container are not compared",
                b.name
            ));
            return true;
        }
    };
    let imported = match stores.import.page_ranges(&b.name) {
        Ok(r) => r,
        Err(e) => {
            v.problems.push(format!(
                "object {}: cannot list its written ranges in import container {}: {e}",
                b.name, plan.import_container
            ));
            return false;
        }
    };
    let missing = subtract(&staged, &imported);
    if missing.is_empty() {
        return true;
    }
    const SHOWN: usize = 8;
    let total: u64 = missing.iter().map(|r| r.end - r.start).sum();
    let mut list: Vec<String> = missing
        .iter()
        .take(SHOWN)
        .map(|r| format!("{}..{}", r.start, r.end))
        .collect();
    if missing.len() > SHOWN {
        list.push(format!("and {} more", missing.len() - SHOWN));
    }
    v.problems.push(format!(
        "object {} is in import container {} at its full length but only partly written: {} in {} range(s) \
         holding data in staging were never written (bytes {}); the drive that carried them was not imported",
        b.name,
        plan.import_container,
        seedship_shared::units::human(total),
        missing.len(),
        list.join(", ")
    ));
    false
}

/// The parts of the sorted, disjoint ranges `a` that no range of `b` covers.
fn subtract(a: &[std::ops::Range<u64>], b: &[std::ops::Range<u64>]) -> Vec<std::ops::Range<u64>> {
    let b = seedship_shared::blob::merge_ranges(b.to_vec());
    let mut out = Vec::new();
    for r in seedship_shared::blob::merge_ranges(a.to_vec()) {
        let mut start = r.start;
        for c in b.iter().filter(|c| c.end > r.start && c.start < r.end) {
            if c.start > start {
                out.push(start..c.start);
            }
            start = start.max(c.end);
        }
        if start < r.end {
            out.push(start..r.end);
        }
    }
    out
}

/// Reads every drive's copy log; blobs it does not report clean are compared whole with the staged digest.
/// Returns the objects found damaged.
fn copy_logs(
    plan: &CompletionPlan,
    job: &Job,
    staged: &HashMap<&str, &StagedBlob>,
    stores: &Stores,
    digested: &mut HashSet<String>,
    v: &mut Verification,
) -> HashSet<String> {
    let mut damaged = HashSet::new();
    // object -> what the logs say about it
    let mut suspect: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in job.drives() {
        let id = &d.drive_id;
        if !drive_finished(d.state) {
            v.problems.push(format!(
                "drive {id} is {} although the job is finished: the data centre did not import it (ship it, \
                 or its blobs, again)",
                d.state
                    .map(|s| format!("{s:?}"))
                    .unwrap_or_else(|| "in no state".into())
            ));
        }
        let Some(uri) = &d.error_log_uri else {
            if drive_finished(d.state) {
                v.notes
                    .push(format!("drive {id} has no copy log (no ErrorLogUri)"));
            }
            continue;
        };
        let log = match fetch_log(plan, stores, uri) {
            Ok(l) => l,
            Err(e) => {
                v.problems
                    .push(format!("cannot read the copy log of drive {id} ({uri}): {e}"));
                continue;
            }
        };
        if log.drive_id != *id {
            v.problems.push(format!(
                "the copy log {uri} is for drive {}, not for drive {id}",
                log.drive_id
            ));
        }
        if !matches!(
            log.status,
            DriveStatus::Completed | DriveStatus::CompletedWithWarnings | DriveStatus::CompletedWithErrors
        ) {
            v.problems.push(format!(
                "drive {id}: the data centre could not import it ({}); its blobs are checked below",
                log.status.as_str()
            ));
        }
        for b in &log.blobs {
            let prefix = format!("{}/", plan.import_container);
            let Some(name) = b.blob_path.strip_prefix(&prefix) else {
                v.notes.push(format!(
                    "drive {id}: the copy log names {} outside import container {}",
                    b.blob_path, plan.import_container
                ));
                continue;
            };
            let findings = findings(b);
            if !findings.is_empty() {
                suspect.entry(name.to_owned()).or_default().extend(
                    findings
                        .into_iter()
                        .map(|f| format!("{f} in the copy log of drive {id}")),
                );
            }
        }
    }
    for (name, findings) in suspect {
        let Some(b) = staged.get(name.as_str()) else {
            v.notes
                .push(format!("{name} (not part of this job): {}", findings.join("; ")));
            continue;
        };
        digested.insert(name.clone());
        match digest(&*stores.import, &b.name, None) {
            Ok((len, h)) if len == b.len && h == b.blake3 => v.notes.push(format!(
                "{name}: {}, but the object in import container {} now equals the staged \
                 copy (BLAKE3): accepted",
                findings.join("; "),
                plan.import_container
            )),
            _ => {
                for f in findings {
                    v.problems.push(format!("object {name}: {f}"));
                }
                damaged.insert(name);
            }
        }
    }
    damaged
}

/// What a copy-log entry says went wrong, one line per failed range or blob-level problem.
fn findings(b: &LogBlob) -> Vec<String> {
    let mut out: Vec<String> = b
        .failed_ranges()
        .map(|r| {
            format!(
                "range {}..{} ({} bytes) is {} (not written)",
                r.offset,
                // the copy log is the data centre's word: never trust it not to wrap
                r.offset.saturating_add(r.length),
                r.length,
                r.status.as_str()
            )
        })
        .collect();
    if b.status != BlobStatus::Completed && out.is_empty() {
        out.push(format!("blob status is {}", b.status.as_str()));
    }
    if let Some(d) = &b.disposition {
        use seedship_shared::manifest::copylog::DispositionStatus as D;
        if matches!(d.status, D::Renamed | D::Skipped | D::Cancelled) {
            out.push(format!(
                "import disposition {} {} (a blob of that name existed before the import)",
                d.requested.as_str(),
                d.status.as_str()
            ));
        }
    }
    out
}

/// Fetches and parses a copy log given by URL under the plan's blob endpoint.
pub(super) fn fetch_log(plan: &CompletionPlan, stores: &Stores, uri: &str) -> Result<DriveLog, String> {
    let (container, name) = log_location(&plan.endpoint, uri)?;
    let store = stores.container(container).map_err(|e| format!("{e:#}"))?;
    let props = store.properties(name).map_err(|e| e.to_string())?;
    if props.len > MAX_LOG_LEN {
        return Err(format!("it is {} bytes, more than a copy log can be", props.len));
    }
    let mut buf = vec![0u8; props.len as usize];
    store.read_at(name, 0, &mut buf).map_err(|e| e.to_string())?;
    if let Some(l) = props
        .metadata
        .get("loglength")
        .and_then(|l| l.parse::<usize>().ok())
    {
        buf.truncate(l);
    }
    DriveLog::parse(&buf).map_err(|e| e.to_string())
}

/// The container and blob name of a copy log's URL under the blob endpoint (a query, e.g. a SAS, dropped).
fn log_location<'u>(endpoint: &str, uri: &'u str) -> Result<(&'u str, &'u str), String> {
    let rest = uri
        .split('?')
        .next()
        .unwrap_or(uri)
        .strip_prefix(endpoint)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| {
            format!(
                "it is not under the blob endpoint {endpoint} (give the storage account's endpoint with \
                 --blob-endpoint)"
            )
        })?;
    match rest.split_once('/') {
        Some((c, n)) if !c.is_empty() && !n.is_empty() => Ok((c, n)),
        _ => Err("it names no blob inside a container".to_owned()),
    }
}

/// Opens the repository in the import container and checks its metadata, trees and a sample of data.
fn repository(
    plan: &CompletionPlan,
    desc: &JobDescriptor,
    stores: &Stores,
    passphrase: &str,
    damaged: &HashSet<String>,
    digested: &mut HashSet<String>,
    v: &mut Verification,
) {
    for b in desc.blobs.iter().filter(|b| !b.name.starts_with("data/")) {
        if digested.insert(b.name.clone()) {
            compare_digest(&*stores.import, b, v, None);
        }
    }
    let repo = match Repository::open(stores.import.clone(), passphrase) {
        Ok(r) => r,
        Err(e) => {
            v.problems.push(format!(
                "cannot open the repository in import container {}: {e}",
                plan.import_container
            ));
            return;
        }
    };
    for b in &desc.blobs {
        if b.name.starts_with("index/") || b.name.starts_with("snapshots/") {
            if let Err(e) = repo.read_object(&b.name) {
                v.problems
                    .push(format!("import container {}: {e}", plan.import_container));
            }
        }
    }
    let rep = crate::check::check(&repo, false, None);
    v.snapshots = rep.snapshots;
    v.trees = rep.trees;
    v.problems.extend(
        rep.problems
            .into_iter()
            .map(|p| format!("import container {}: {p}", plan.import_container)),
    );
    let data: Vec<IndexEntry> = match repo.index_entries() {
        Ok(all) => all.into_iter().filter(|e| e.kind == BLOB_DATA).collect(),
        Err(e) => {
            v.problems
                .push(format!("import container {}: {e}", plan.import_container));
            return;
        }
    };
    v.data_blobs = data.len();
    // volumes the copy logs already showed damaged are not sampled: the problem is named once
    let (data, skipped): (Vec<IndexEntry>, Vec<IndexEntry>) = data
        .into_iter()
        .partition(|e| !damaged.contains(&volume_name(e.volume)));
    if !skipped.is_empty() {
        v.notes.push(format!(
            "{} data blob(s) in volumes the copy logs show damaged were not read back",
            skipped.len()
        ));
    }
    let sample = if plan.verify_all {
        Vec::new()
    } else {
        sample(data, plan.sample_blobs)
    };
    for e in &sample {
        match repo.read_entry(e) {
            Ok(_) => v.sampled += 1,
            Err(err) => v
                .problems
                .push(format!("import container {}: {err}", plan.import_container)),
        }
    }
}

/// Picks up to `n` data blobs: the first and last of every volume, then others at random.
fn sample(mut entries: Vec<IndexEntry>, n: usize) -> Vec<IndexEntry> {
    if entries.len() <= n {
        return entries;
    }
    entries.sort_by_key(|e| (e.volume, e.offset));
    let mut pick = vec![false; entries.len()];
    for (i, e) in entries.iter().enumerate() {
        let first = i == 0 || entries[i - 1].volume != e.volume;
        let last = i + 1 == entries.len() || entries[i + 1].volume != e.volume;
        if first || last {
            pick[i] = true;
        }
    }
    let mut chosen = pick.iter().filter(|&&p| p).count();
    while chosen < n {
        let mut r = [0u8; 8];
        if getrandom::fill(&mut r).is_err() {
            break;
        }
        let i = (u64::from_le_bytes(r) % entries.len() as u64) as usize;
        if !pick[i] {
            pick[i] = true;
            chosen += 1;
        }
    }
    entries
        .into_iter()
        .zip(pick)
        .filter_map(|(e, p)| p.then_some(e))
        .collect()
}

/// Compares an object's whole BLAKE3 with the staged one.
fn compare_digest(store: &dyn BlobStore, b: &StagedBlob, v: &mut Verification, meter: Option<&StepMeter>) {
    match digest(store, &b.name, meter) {
        Ok((len, h)) if len == b.len && h == b.blake3 => {}
        Ok((len, h)) => v.problems.push(format!(
            "object {}: {len} bytes with BLAKE3 {h} in the import container, but the staged copy is {} bytes \
             with BLAKE3 {} (job.json): the imported bytes differ",
            b.name, b.len, b.blake3
        )),
        Err(e) => v.problems.push(format!("object {}: {e}", b.name)),
    }
}

/// Length and BLAKE3 of a whole object, read in 32 MiB pieces (several requests in flight each).
fn digest(store: &dyn BlobStore, name: &str, meter: Option<&StepMeter>) -> Result<(u64, String), BlobError> {
    seedship_shared::blob::blake3_of(store, name, 32 << 20, |n| {
        if let Some(m) = meter {
            m.add(n);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // lists of ranges, one range long
    fn subtract_names_what_is_not_covered() {
        assert_eq!(
            subtract(&[0..100], &[10..20, 50..60]),
            vec![0..10, 20..50, 60..100]
        );
        assert_eq!(
            subtract(&[0..100, 200..300], &[0..300]),
            Vec::<std::ops::Range<u64>>::new()
        );
        assert_eq!(subtract(&[0..100], &[]), vec![0..100]);
        assert_eq!(subtract(&[0..100], &[90..200]), vec![0..90]);
    }
    use seedship_shared::manifest::copylog::{
        DispositionStatus, LogDisposition, LogRange, LogRanges, RangeStatus,
    };

    fn entry(volume: u32, offset: u64) -> IndexEntry {
        IndexEntry {
            id: [offset as u8; 32],
            kind: BLOB_DATA,
            volume,
            offset,
            len: 100,
            raw_len: 100,
        }
    }

    #[test]
    fn copy_log_urls() {
        let ep = "http://127.0.0.1:10000/devstoreaccount1";
        assert_eq!(
            log_location(
                ep,
                &format!("{ep}/waimportexport/waies/j_D1_20260101-000000_error.xml?sv=x&sig=y")
            ),
            Ok(("waimportexport", "waies/j_D1_20260101-000000_error.xml"))
        );
        for bad in [
            "https://other.blob.core.windows.net/c/x".to_owned(),
            format!("{ep}/onlycontainer"),
            format!("{ep}//x"),
            format!("{ep}x/c/x"),
        ] {
            assert!(log_location(ep, &bad).is_err(), "{bad}");
        }
    }

    fn log_blob(
        status: BlobStatus,
        ranges: &[(u64, RangeStatus)],
        disp: Option<DispositionStatus>,
    ) -> LogBlob {
        LogBlob {
            status,
            blob_path: "seed/data/00000000".into(),
            imported_blob_path: None,
            file_path: "\\s\\seed\\data\\00000000".into(),
            snapshot: None,
            length: 8 << 20,
            last_modified: None,
            disposition: disp.map(|status| LogDisposition {
                requested: Default::default(),
                status,
            }),
            ranges: Some(LogRanges::Pages(
                ranges
                    .iter()
                    .map(|&(offset, status)| LogRange {
                        offset,
                        length: 4 << 20,
                        id: None,
                        hash: None,
                        status,
                    })
                    .collect(),
            )),
            metadata: None,
            properties: None,
        }
    }

    #[test]
    fn findings_name_each_failed_range_and_odd_disposition() {
        let clean = log_blob(
            BlobStatus::Completed,
            &[(0, RangeStatus::Completed), (4 << 20, RangeStatus::Completed)],
            Some(DispositionStatus::Created),
        );
        assert!(findings(&clean).is_empty());
        let bad = log_blob(
            BlobStatus::CompletedWithErrors,
            &[(0, RangeStatus::Completed), (4 << 20, RangeStatus::Corrupted)],
            None,
        );
        assert_eq!(
            findings(&bad),
            vec!["range 4194304..8388608 (4194304 bytes) is Corrupted (not written)".to_owned()]
        );
        let missing = log_blob(BlobStatus::FileNotFound, &[], None);
        assert_eq!(findings(&missing), vec!["blob status is FileNotFound".to_owned()]);
        let renamed = log_blob(BlobStatus::Completed, &[], Some(DispositionStatus::Renamed));
        let f = findings(&renamed);
        assert!(f.len() == 1 && f[0].contains("rename Renamed"), "{f:?}");
    }

    #[test]
    fn findings_survive_a_range_that_ends_beyond_2_pow_64() {
        let top = u64::MAX - 1024;
        let f = findings(&log_blob(
            BlobStatus::CompletedWithErrors,
            &[(top, RangeStatus::Corrupted)],
            None,
        ));
        assert_eq!(f.len(), 1);
        assert!(f[0].starts_with(&format!("range {top}..{} ", u64::MAX)), "{f:?}");
    }

    #[test]
    fn sample_takes_volume_ends_then_fills_at_random() {
        let all: Vec<IndexEntry> = (0..3u32)
            .flat_map(|v| (0..50u64).map(move |i| entry(v, 512 + i * 1000)))
            .collect();
        let s = sample(all.clone(), 10);
        assert_eq!(s.len(), 10);
        for v in 0..3u32 {
            for off in [512, 512 + 49 * 1000] {
                assert!(
                    s.iter().any(|e| e.volume == v && e.offset == off),
                    "volume {v} offset {off}"
                );
            }
        }
        let mut seen = HashSet::new();
        assert!(
            s.iter().all(|e| seen.insert((e.volume, e.offset))),
            "no entry twice"
        );
        assert_eq!(sample(all[..5].to_vec(), 10).len(), 5);
    }
}
