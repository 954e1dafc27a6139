//! Completion of offline seeding: once the import job is finished, verify what the data centre wrote into
//! the import container, copy it into the vault container with Copy Blob, and switch the policy to online.
//!
//! `seedship-agent backup` calls [`run`] while the policy is offline and the staging job is complete. Get Job
//! says where the import stands: before `Completed` / `Closed` the agent prints the state and exits
//! "waiting". Then verification (the `verify` submodule) checks everything before anything is copied (every
//! drive's copy log, every object of the job descriptor present with its length, the repository opened and
//! its metadata authenticated, a sample of data blobs or with `--verify-all` every object's BLAKE3). Any problem is named
//! and nothing is copied; the policy stays offline, so a rerun after a fix tries again. The copy is
//! resumable: objects an earlier run copied (recorded in `<state-dir>/complete-<job>.copied`) and that sit in
//! the vault with the right length are skipped. The passphrase and the storage key are never printed.

mod repair;
mod verify;

use crate::config::StorageKey;
use crate::policy::{self, Mode, Policy, VaultTarget};
use crate::progress::StepMeter;
use crate::store::{azure_options, vault_credential};
use crate::{BackupCmd, Config};
use anyhow::{bail, Context};
use seedship_shared::api::{self, ApiAccess, DriveState, ImportError, Job, JobState as ApiJobState};
use seedship_shared::blob::{AzureStore, BlobError, BlobStore, Credential, RetryPolicy, RetryStore};
use seedship_shared::staging::{ArmSettings, JobDescriptor, ServiceApi};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use verify::Verification;

/// How a completion attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The import job does not exist yet or is not finished.
    Waiting,
    /// Verification found problems (printed); nothing was copied, the policy stays offline.
    Refused,
    /// The objects are in the vault and the policy is online.
    Completed,
}

/// Why completion could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum CompleteError {
    #[error(
        "the default vault container name {name:?} (import container + \"-vault\") is not a valid container \
         name; give one with --vault-container NAME (or SEEDSHIP_VAULT_CONTAINER)"
    )]
    DefaultVaultName { name: String },
    #[error(
        "the vault container {name} is the import container itself; give another with --vault-container NAME"
    )]
    SameContainer { name: String },
    #[error(
        "vault container {container} already holds {count} object(s) that are not part of job {job} (e.g. \
         {example}); give an empty or new container with --vault-container NAME"
    )]
    ForeignObjects {
        container: String,
        job: String,
        count: usize,
        example: String,
    },
    #[error(
        "after copying, {name} in vault container {container} is {found} bytes instead of {expected}; run \
         `seedship-agent backup` again to copy it again"
    )]
    VaultLength {
        container: String,
        name: String,
        found: String,
        expected: u64,
    },
}

/// What completion works with, validated from the command line and the job descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionPlan {
    pub job: String,
    pub account: String,
    /// The blob endpoint without a trailing `/`.
    pub endpoint: String,
    pub import_container: String,
    pub vault_container: String,
    pub verify_all: bool,
    pub sample_blobs: usize,
    /// The Entra ID application of a Resource Manager job: signs in to the storage account when no
    /// storage account key is in the environment.
    pub entra: Option<ArmSettings>,
}

/// Turns the options and the job descriptor into a plan (no I/O).
pub fn plan(c: &BackupCmd, desc: &JobDescriptor) -> anyhow::Result<CompletionPlan> {
    let vault_container = match &c.vault_container {
        Some(v) => {
            policy::check_container_name(v)?;
            v.clone()
        }
        None => {
            let name = format!("{}-vault", desc.container);
            if policy::check_container_name(&name).is_err() {
                return Err(CompleteError::DefaultVaultName { name }.into());
            }
            name
        }
    };
    if vault_container == desc.container {
        return Err(CompleteError::SameContainer {
            name: vault_container,
        }
        .into());
    }
    let endpoint = c
        .blob_endpoint
        .clone()
        .unwrap_or_else(|| format!("https://{}.blob.core.windows.net", desc.storage_account));
    Ok(CompletionPlan {
        job: desc.job_name.clone(),
        account: desc.storage_account.clone(),
        endpoint: endpoint.trim_end_matches('/').to_owned(),
        import_container: desc.container.clone(),
        vault_container,
        verify_all: c.verify_all,
        sample_blobs: c.sample_blobs,
        entra: match &desc.api {
            ServiceApi::ResourceManager(s) => Some((**s).clone()),
            ServiceApi::Classic => None,
        },
    })
}

/// Checks the import job and, once it is finished, verifies the import and moves it into the vault.
pub fn run(cfg: &Config, c: &BackupCmd, pol: &Policy, desc: &JobDescriptor) -> anyhow::Result<Outcome> {
    let plan = plan(c, desc)?;
    let job = match import_job(desc, c)? {
        JobLookup::Found(j) => j,
        JobLookup::Unknown => {
            println!(
                "import job {} does not exist yet: prepare the drives with seedship-diskprep (the initial \
                 backup is staged in {})",
                desc.job_name,
                pol.job_dir().display()
            );
            return Ok(Outcome::Waiting);
        }
        JobLookup::Unreachable(e) => {
            eprintln!("warning: {e}");
            if let ServiceApi::ResourceManager(s) = &desc.api {
                eprintln!(
                    "note: the job's Resource Manager endpoint is {} and its sign-in host {} (recorded at \
                     `offline start`); if the service moved (an emulator restarted on another port), give \
                     --management-endpoint URL and --authority URL together with the credential \
                     (--client-certificate FILE or --client-secret-file FILE)",
                    s.management_endpoint, s.authority
                );
            }
            println!(
                "waiting for import job {}: the Import/Export service did not answer; the next run asks again",
                desc.job_name
            );
            return Ok(Outcome::Waiting);
        }
    };
    let state = print_job(desc, &job);
    match state {
        ApiJobState::Completed | ApiJobState::Closed => {}
        ApiJobState::Faulted => bail!(
            "import job {} is Faulted: the data centre needs attention (ask Azure support); the policy stays \
             offline and the staged backup in {} is kept",
            desc.job_name,
            pol.job_dir().display()
        ),
        _ => {
            println!(
                "waiting for import job {} ({state}): the agent completes the import once the job is \
                 Completed; run `seedship-agent backup` again later",
                desc.job_name
            );
            return Ok(Outcome::Waiting);
        }
    }
    let pass = cfg.passphrase.read(false)?;
    let mut plan = plan;
    if c.blob_endpoint.is_none() {
        if let Some(endpoint) = endpoint_from_logs(&job) {
            if endpoint != plan.endpoint {
                println!(
                    "blob endpoint: {endpoint} (where every drive's copy log is; give --blob-endpoint URL to use \
                     another)"
                );
                plan.endpoint = endpoint;
            }
        }
    }
    let stores = Stores::open(&cfg.storage_key, &plan)?;
    reachable(&cfg.storage_key, &plan, &stores)?;
    let staging = crate::store::open_staging_store(&pol.blobs_dir());
    if c.repair_from_staging {
        let rep = repair_path(&cfg.state_dir, &plan.job);
        let r = repair::from_staging(&plan, &job, desc, &stores, &*staging, &pol.job_dir(), &rep)?;
        if !r.problems.is_empty() {
            for p in &r.problems {
                eprintln!("error: {p}");
            }
            eprintln!(
                "{} problem(s): --repair-from-staging sent nothing; nothing was copied into the vault and the \
                 policy stays offline",
                r.problems.len()
            );
            return Ok(Outcome::Refused);
        }
        if r.damaged_bytes == 0 {
            println!("--repair-from-staging: the copy logs report no damaged or missing range");
        } else {
            println!(
                "repaired from staging: {}",
                seedship_shared::repair::sent_line(r.ranges, r.bytes_sent, r.resumed)
            );
        }
        // nothing goes into the vault before every object's BLAKE3 matched
        plan.verify_all = true;
    }
    println!(
        "verifying the import in container {} of storage account {}{}",
        plan.import_container,
        plan.account,
        if plan.verify_all {
            " (--verify-all: every byte)"
        } else {
            ""
        }
    );
    let v = verify::verify(&plan, &job, desc, &stores, &*staging, &pass, cfg.quiet);
    for n in &v.notes {
        println!("note: {n}");
    }
    if !v.problems.is_empty() {
        refuse(&plan, pol, &v);
        return Ok(Outcome::Refused);
    }
    println!("{}", v.summary());
    let record = record_path(&cfg.state_dir, &plan.job);
    let copied = copy_into_vault(&plan, desc, &stores, &record, cfg.quiet)?;
    go_online(cfg, &plan, pol, desc, &record, copied)?;
    Ok(Outcome::Completed)
}

/// The blob endpoint the drives' copy logs point at (`<endpoint>/waimportexport/<log>`), when every drive
/// that has a copy log agrees on it.
fn endpoint_from_logs(job: &Job) -> Option<String> {
    let mut found: Option<String> = None;
    for d in job.drives() {
        let Some(uri) = &d.error_log_uri else { continue };
        let uri = uri.split('?').next().unwrap_or(uri);
        let (endpoint, _) = uri.split_once(&format!("/{LOG_CONTAINER}/"))?;
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return None;
        }
        match &found {
            Some(f) if f != endpoint => return None,
            _ => found = Some(endpoint.trim_end_matches('/').to_owned()),
        }
    }
    found
}

/// The container the data centre writes the copy logs into (the service's default diagnostics path).
const LOG_CONTAINER: &str = "waimportexport";

/// Fails fast, before any retries, when the blob endpoint's host name does not resolve or its TLS
/// certificate is not trusted: a setting to fix, not a problem of the import.
fn reachable(key: &StorageKey, plan: &CompletionPlan, stores: &Stores) -> anyhow::Result<()> {
    use seedship_shared::net::{classify_text, TransportCause};
    let message = match stores.import_raw.list("") {
        Err(BlobError::Transport { message, .. }) => message,
        Err(e) => {
            let target = VaultTarget {
                endpoint: plan.endpoint.clone(),
                account: plan.account.clone(),
                container: plan.import_container.clone(),
                since: 0,
                import_container: None,
                entra: plan.entra.clone(),
            };
            return match crate::store::refusal_advice(key, &e, &target) {
                Some(advice) => Err(anyhow::Error::new(e).context(format!(
                    "{advice}. Nothing was checked or copied; the import itself is not in question"
                ))),
                None => Ok(()),
            };
        }
        Ok(_) => return Ok(()),
    };
    let what = match classify_text(&message, None) {
        TransportCause::Dns => "its host name does not resolve",
        TransportCause::Tls => "its TLS certificate is not trusted",
        _ => return Ok(()),
    };
    bail!(
        "cannot reach blob endpoint {} of storage account {}: {what} ({message}); give the storage account's \
         endpoint with --blob-endpoint URL (or SEEDSHIP_BLOB_ENDPOINT), e.g. https://{}.blob.core.windows.net, \
         or http://127.0.0.1:10000/devstoreaccount1 for Azurite. Nothing was checked or copied; the import \
         itself is not in question and no drive needs shipping again",
        plan.endpoint,
        plan.account,
        plan.account
    )
}

/// Prints the job's and every drive's state; returns the job's.
fn print_job(desc: &JobDescriptor, job: &Job) -> ApiJobState {
    let state = job.properties.state.unwrap_or(ApiJobState::Creating);
    println!("import job {}: {state}", desc.job_name);
    for d in job.drives() {
        let st = d
            .state
            .map(|s| format!("{s:?}"))
            .unwrap_or_else(|| "unknown".into());
        println!("  drive {}: {st}", d.drive_id);
    }
    state
}

/// Prints every problem and what to do.
fn refuse(plan: &CompletionPlan, pol: &Policy, v: &Verification) {
    for p in &v.problems {
        eprintln!("error: {p}");
    }
    eprintln!(
        "{} problem(s): nothing was copied into the vault and the policy stays offline. The staged copy is kept \
         in {} (check it with `seedship-agent check --read-data`): put each object named above into import \
         container {} again (ship a re-prepared drive in a new import job, or upload the staged file as a \
         page blob of the same name; for ranges a copy log reports damaged or missing, `seedship-agent backup \
         --repair-from-staging` sends them again from the staged copy), then run `seedship-agent backup` again.",
        v.problems.len(),
        pol.job_dir().display(),
        plan.import_container
    );
}

/// Records the vault in the policy (mode online) and says what happened.
fn go_online(
    cfg: &Config,
    plan: &CompletionPlan,
    pol: &Policy,
    desc: &JobDescriptor,
    record: &Path,
    copied: CopyStats,
) -> anyhow::Result<()> {
    let mut online = pol.clone();
    online.mode = Mode::Online;
    online.vault = Some(VaultTarget {
        endpoint: plan.endpoint.clone(),
        account: plan.account.clone(),
        container: plan.vault_container.clone(),
        since: seedship_shared::time::now_unix() as u64,
        import_container: Some(plan.import_container.clone()),
        entra: plan.entra.clone(),
    });
    online.save(&cfg.state_dir)?;
    let _ = std::fs::remove_file(record);
    let _ = std::fs::remove_file(repair_path(&cfg.state_dir, &plan.job));
    println!(
        "import job {} completed: {} objects ({} MiB) in vault container {} ({} copied with Copy Blob, {} \
         already there); the policy is online: backups now go to the vault",
        plan.job,
        desc.blobs.len(),
        desc.blobs.iter().map(|b| b.len).sum::<u64>() >> 20,
        plan.vault_container,
        copied.copied,
        copied.skipped
    );
    println!(
        "the import container {} still holds the imported objects (billed for their written pages); the vault \
         holds them now: `seedship-agent delete-import` deletes them (--dry-run lists them first)",
        plan.import_container
    );
    Ok(())
}

/// What Get Job said about the staging job.
enum JobLookup {
    Found(Box<Job>),
    /// The service does not know the job.
    Unknown,
    /// The service could not be reached or failed (timeout, refused connection, 5xx): ask again on the next
    /// run. A certificate, name-resolution or 4xx failure is an error instead.
    Unreachable(ImportError),
}

/// Get Job for the staging job, through the API and with the sign-in its descriptor records (publish
/// settings, or an Entra ID application; options given now override the recorded files). A configuration
/// problem (publish settings, certificate, credential, a 4xx answer) is an error.
fn import_job(desc: &JobDescriptor, c: &BackupCmd) -> anyhow::Result<JobLookup> {
    let access = ApiAccess {
        publish_settings: c.publish_settings.clone(),
        management_ca: c.management_ca.clone(),
        entra: c.entra.clone().into_options_for(desc.api.is_classic())?,
    };
    let conn = api::connect(desc, &access).with_context(|| {
        format!(
            "cannot check import job {}: no client for the Import/Export service",
            desc.job_name
        )
    })?;
    match conn.client.get_job(&desc.storage_account, &desc.job_name) {
        Ok(j) => Ok(JobLookup::Found(Box::new(j))),
        Err(e) if e.status() == Some(404) => Ok(JobLookup::Unknown),
        Err(e) if e.may_pass() => Ok(JobLookup::Unreachable(e)),
        Err(e) => Err(e).context(format!(
            "cannot ask the Import/Export service where import job {} stands (a setting needs fixing; \
             waiting would not help)",
            desc.job_name
        )),
    }
}

/// The storage account's containers completion touches.
pub struct Stores {
    endpoint: String,
    account: String,
    /// The import container, with retries (reads).
    pub import: Arc<dyn BlobStore>,
    /// The import container without retries (copy source URLs).
    import_raw: AzureStore,
    /// The vault container, with retries.
    vault: Arc<dyn BlobStore>,
    /// The vault container without retries (Copy Blob).
    vault_raw: AzureStore,
    /// How every request is authorised (one token source for all containers).
    credential: Credential,
}

impl Stores {
    fn open(key: &StorageKey, plan: &CompletionPlan) -> anyhow::Result<Stores> {
        let cred = vault_credential(key, &plan.account, plan.entra.as_ref())?;
        let raw = |container: &str| -> anyhow::Result<AzureStore> {
            let opts = azure_options(&plan.endpoint, &plan.account, container, cred.clone())?;
            AzureStore::new(opts)
                .with_context(|| format!("cannot open container {container} at {}", plan.endpoint))
        };
        let retried = |container: &str| -> anyhow::Result<Arc<dyn BlobStore>> {
            Ok(Arc::new(RetryStore::new(raw(container)?, RetryPolicy::default())))
        };
        Ok(Stores {
            endpoint: plan.endpoint.clone(),
            account: plan.account.clone(),
            import: retried(&plan.import_container)?,
            import_raw: raw(&plan.import_container)?,
            vault: retried(&plan.vault_container)?,
            vault_raw: raw(&plan.vault_container)?,
            credential: cred,
        })
    }

    /// Another container of the account (where the copy logs are), with retries.
    fn container(&self, name: &str) -> anyhow::Result<Arc<dyn BlobStore>> {
        let opts = azure_options(&self.endpoint, &self.account, name, self.credential.clone())?;
        let store = AzureStore::new(opts)
            .with_context(|| format!("cannot open container {name} at {}", self.endpoint))?;
        Ok(Arc::new(RetryStore::new(store, RetryPolicy::default())))
    }
}

/// What the copy did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    pub copied: usize,
    pub skipped: usize,
    pub bytes: u64,
}

/// Copies every object of the job from the import container into the vault container (created if
/// missing), skipping those an earlier run copied, then checks every length in the vault.
fn copy_into_vault(
    plan: &CompletionPlan,
    desc: &JobDescriptor,
    stores: &Stores,
    record: &Path,
    quiet: bool,
) -> anyhow::Result<CopyStats> {
    stores.vault.create_container()?;
    let present: HashMap<String, u64> = stores
        .vault
        .list("")?
        .into_iter()
        .map(|b| (b.name, b.len))
        .collect();
    let ours: HashSet<&str> = desc.blobs.iter().map(|b| b.name.as_str()).collect();
    let foreign: Vec<&String> = present.keys().filter(|n| !ours.contains(n.as_str())).collect();
    if let Some(example) = foreign.first() {
        return Err(CompleteError::ForeignObjects {
            container: plan.vault_container.clone(),
            job: plan.job.clone(),
            count: foreign.len(),
            example: example.to_string(),
        }
        .into());
    }
    let done: HashSet<String> = std::fs::read_to_string(record)
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(record)
        .with_context(|| format!("cannot write {}", record.display()))?;
    let total: u64 = desc.blobs.iter().map(|b| b.len).sum();
    let meter = StepMeter::start("copied", total, quiet);
    let mut stats = CopyStats::default();
    for b in &desc.blobs {
        if present.get(&b.name) == Some(&b.len) && done.contains(&b.name) {
            stats.skipped += 1;
            meter.add(b.len);
            continue;
        }
        let source = stores.import_raw.blob_url(&b.name)?;
        copy_with_retry(&stores.vault_raw, source.as_str(), &b.name)?;
        writeln!(log, "{}", b.name)
            .and_then(|()| log.sync_data())
            .with_context(|| format!("cannot write {}", record.display()))?;
        stats.copied += 1;
        stats.bytes += b.len;
        meter.add(b.len);
        tracing::debug!(object = %b.name, len = b.len, "copied into the vault");
    }
    drop(meter);
    let after: HashMap<String, u64> = stores
        .vault
        .list("")?
        .into_iter()
        .map(|b| (b.name, b.len))
        .collect();
    for b in &desc.blobs {
        if after.get(&b.name) != Some(&b.len) {
            return Err(CompleteError::VaultLength {
                container: plan.vault_container.clone(),
                name: b.name.clone(),
                found: after
                    .get(&b.name)
                    .map_or_else(|| "missing".into(), |l| l.to_string()),
                expected: b.len,
            }
            .into());
        }
    }
    Ok(stats)
}

/// Copy Blob, tried again (up to 5 times, with a growing pause) when the failure is transient.
fn copy_with_retry(vault: &AzureStore, source: &str, name: &str) -> Result<(), BlobError> {
    let mut attempt = 0;
    loop {
        match vault.copy_from_url(source, name) {
            Err(e) if e.is_retryable() && attempt < 4 => {
                attempt += 1;
                tracing::warn!(object = %name, error = %e, "Copy Blob failed; trying again");
                std::thread::sleep(Duration::from_secs(1 << attempt));
            }
            r => return r,
        }
    }
}

/// Where `--repair-from-staging` records the ranges it sent (a rerun resumes).
pub fn repair_path(state_dir: &Path, job: &str) -> PathBuf {
    state_dir.join(format!("repair-{job}.rep"))
}

/// Where the copy record of a job lives (for `status`).
pub fn record_path(state_dir: &Path, job: &str) -> PathBuf {
    state_dir.join(format!("complete-{job}.copied"))
}

/// Whether a drive state means the data centre is done with the drive.
fn drive_finished(s: Option<DriveState>) -> bool {
    matches!(
        s,
        Some(DriveState::Completed | DriveState::CompletedMoreInfo | DriveState::ShippedBack)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cmd(args: &[&str]) -> BackupCmd {
        let mut v = vec!["seedship-agent", "backup"];
        v.extend_from_slice(args);
        match crate::Cli::parse_from(v).command {
            crate::Command::Backup(c) => c,
            _ => unreachable!("parsed a backup command"),
        }
    }

    fn desc(container: &str) -> JobDescriptor {
        JobDescriptor {
            format: 1,
            job_name: "job1".into(),
            subscription: "s".into(),
            storage_account: "acct1".into(),
            container: container.into(),
            publish_settings: "/p".into(),
            api: Default::default(),
            source_host: "h".into(),
            repository_id: "r".into(),
            state: seedship_shared::staging::JobState::BackupComplete,
            created: 0,
            blobs: vec![],
        }
    }

    #[test]
    fn plan_defaults_and_names() {
        let p = plan(&cmd(&[]), &desc("seed")).unwrap();
        assert_eq!(p.vault_container, "seed-vault");
        assert_eq!(p.endpoint, "https://acct1.blob.core.windows.net");
        assert_eq!(p.sample_blobs, 64);
        let p = plan(
            &cmd(&[
                "--vault-container",
                "vault1",
                "--blob-endpoint",
                "http://h:1/a/",
                "--verify-all",
            ]),
            &desc("seed"),
        )
        .unwrap();
        assert_eq!(
            (p.vault_container.as_str(), p.endpoint.as_str(), p.verify_all),
            ("vault1", "http://h:1/a", true)
        );
        let long = "a".repeat(60);
        let e = plan(&cmd(&[]), &desc(&long)).unwrap_err().to_string();
        assert!(e.contains("--vault-container"), "{e}");
        let e = plan(&cmd(&["--vault-container", "seed"]), &desc("seed"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("import container itself"), "{e}");
        assert!(plan(&cmd(&["--vault-container", "Bad_Name"]), &desc("seed")).is_err());
    }

    #[test]
    fn finished_drive_states() {
        assert!(drive_finished(Some(DriveState::CompletedMoreInfo)));
        assert!(!drive_finished(Some(DriveState::Transferring)));
        assert!(!drive_finished(None));
    }
}
