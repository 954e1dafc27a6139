//! `seedship-diskprep create-job --journal FILE... --job-name NAME`: the import job from drive journals, as
//! the portal's wizard creates it from uploaded WAImportExport journal files. Each `prepimport` journal gives
//! its drive's id, recovery key and manifest hash; the job is created through the classic API (publish
//! settings) or Resource Manager (Entra ID sign-in), with the location, return address and carrier options of
//! drive preparation, and the shipping address is printed.
//!
//! The job is recorded as `s:` records it, in a job folder `<job-dir>/<job-name>/` (by default beside the
//! first journal): `job.json`, a job descriptor without staged blobs (which API, subscription, storage
//! account, publish settings or Entra ID application: what `u:` and `delete-job` connect with), and
//! `diskprep/job.json`, the [`JobRecord`]. So `u: s:<job-dir>` and `delete-job s:<job-dir>` work on it as on a
//! job `s:` created. Its empty `repository_id` marks it as made from journals (`JobDescriptor::is_from_journals`): `s:`
//! refuses to prepare drives for it.

use crate::job::console as ui;
use crate::job::create::{
    self as job, Credential, CredentialArgs, JobError, JobRecord, JobRequest, Preflight,
};
use crate::wai::journal::{self, StoredCredential};
use crate::{ApiArgs, ReturnArgs};
use anyhow::{bail, Context};
use clap::Args;
use seedship_shared::api::{recorded_credential, Drive};
use seedship_shared::exit::Exit;
use seedship_shared::staging::{ArmSettings, JobDescriptor, JobState, ServiceApi};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The options of `create-job`.
#[derive(Debug, Args)]
pub struct CreateJobArgs {
    /// A drive's journal written by `prepimport` (its /j: file); repeat (or list several) for each drive.
    #[arg(long, value_name = "FILE", num_args = 1.., required = true)]
    pub journal: Vec<PathBuf>,
    /// The import job's name: lowercase letters, digits, hyphens and underscores, starting with a letter.
    #[arg(long, value_name = "NAME")]
    pub job_name: String,
    /// Where the job is recorded for `u:` and `delete-job`: the folder `DIR/<job-name>/` (default: the
    /// folder of the first journal); follow the job with `seedship-diskprep u: s:DIR`.
    #[arg(long, value_name = "DIR")]
    pub job_dir: Option<PathBuf>,
    /// The storage account the data goes to (classic API; with Resource Manager it is taken from
    /// --storage-account-id).
    #[arg(long, value_name = "NAME")]
    pub storage_account: Option<String>,
    /// The publish-settings file (classic API).
    #[arg(long, value_name = "FILE", conflicts_with = "storage_account_id")]
    pub publish_settings: Option<PathBuf>,
    /// The subscription in the publish-settings file (needed when it holds several).
    #[arg(long, value_name = "ID")]
    pub subscription: Option<String>,
    /// Resource Manager: the storage account's resource id (/subscriptions/../storageAccounts/NAME); sign in
    /// with the Entra ID options.
    #[arg(long, value_name = "ID", requires = "resource_group")]
    pub storage_account_id: Option<String>,
    /// Resource Manager: the resource group the job is created in.
    #[arg(long, value_name = "NAME")]
    pub resource_group: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
    /// The region of the storage account, where the service looks for a shipping location.
    #[arg(long, env = "SEEDSHIP_LOCATION", value_name = "NAME")]
    pub location: Option<String>,
    /// The storage credential; without one, the one recorded in the journals (/sk:, /csas:).
    #[command(flatten)]
    pub cred: CredentialArgs,
    #[command(flatten)]
    pub ret: ReturnArgs,
    /// Check the journals and the job, print where it would be created; create nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as one JSON document on standard output (fields in docs/waimportexport.md).
    #[arg(long)]
    pub json: bool,
}

/// `create-job --json`.
#[derive(Debug, Serialize)]
pub struct CreateJobReport {
    pub job_name: String,
    pub storage_account: String,
    /// `created`, `exists` or `planned` (dry run).
    pub action: &'static str,
    pub location: String,
    pub drive_ids: Vec<String>,
    /// Where to ship the drives.
    pub ship_to: Option<ShipTo>,
    pub link: Option<String>,
    /// The job's record (`<job-dir>/<job-name>/diskprep/job.json`) that `u:` and `delete-job` read; none in a
    /// dry run.
    pub record: Option<String>,
}

/// The shipping address.
#[derive(Debug, Serialize)]
pub struct ShipTo {
    pub name: String,
    pub recipient: String,
    pub street_address1: String,
    pub street_address2: String,
    pub city: String,
    pub state_or_province: String,
    pub postal_code: String,
    pub country_or_region: String,
}

/// One drive as its journal records it.
struct JournalDrive {
    drive_id: String,
    recovery_key: zeroize::Zeroizing<String>,
    manifest_hash: String,
}

/// Reads the journals: every drive complete (its latest session finished), each drive once. A session whose
/// data set continues on more drives (`/AdditionalDriveSet:`) brings their journals in; one whose rest is on
/// no drive yet is refused.
fn read_journals(paths: &[PathBuf]) -> anyhow::Result<(Vec<JournalDrive>, Option<StoredCredential>)> {
    let mut drives: Vec<JournalDrive> = Vec::new();
    let mut credential = None;
    let mut queue: std::collections::VecDeque<PathBuf> = paths.iter().cloned().collect();
    let mut seen: Vec<PathBuf> = Vec::new();
    while let Some(path) = queue.pop_front() {
        let p = &path;
        let canonical = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        if seen.contains(&canonical) {
            continue;
        }
        seen.push(canonical);
        let s = journal::read(p).with_context(|| format!("reading journal {}", p.display()))?;
        let d = s.drive.as_ref().with_context(|| {
            format!(
                "journal {} records no drive: run prepimport with it first",
                p.display()
            )
        })?;
        if let Some(l) = s.latest().filter(|l| !l.is_done()) {
            bail!(
                "journal {}: session {} of drive {} did not finish; resume it (/ResumeSession) or roll it back \
                 (/AbortSession) first",
                p.display(),
                l.session_id,
                d.drive_id
            );
        }
        let hash = s.manifest_hash.clone().with_context(|| {
            format!(
                "journal {}: drive {} holds no complete session",
                p.display(),
                d.drive_id
            )
        })?;
        if drives.iter().any(|x| x.drive_id == d.drive_id) {
            bail!(
                "drive {} is in two journals (the second is {})",
                d.drive_id,
                p.display()
            );
        }
        for sess in s.done().filter(|x| !x.rest.is_empty()) {
            let id = &sess.session_id;
            match &sess.continued_in {
                Some(next) if crate::wai::chain::session_in(next, id)?.is_some() => {
                    queue.push_back(next.clone())
                }
                _ => bail!(
                    "journal {}: session {id} of drive {} filled the drive and {} files of its data set ({}) are \
                     on no drive yet; continue it with seedship-diskprep PrepImport /j:{} /id:{id} \
                     /AdditionalDriveSet:<drives.csv>",
                    p.display(),
                    d.drive_id,
                    sess.rest.len(),
                    seedship_shared::units::human(crate::wai::chain::rest_bytes(&sess.rest)),
                    p.display()
                ),
            }
        }
        credential = credential.or(s.credential.clone());
        drives.push(JournalDrive {
            drive_id: d.drive_id.clone(),
            recovery_key: d.recovery_key.clone(),
            manifest_hash: hash,
        });
    }
    Ok((drives, credential))
}

/// The job as job creation knows it: a descriptor without staging.
fn descriptor(a: &CreateJobArgs) -> anyhow::Result<JobDescriptor> {
    let valid = a.job_name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && a.job_name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!(
            "job name {:?}: lowercase letters, digits, hyphens and underscores, starting with a letter",
            a.job_name
        );
    }
    let (subscription, account, api, publish_settings) = match (&a.storage_account_id, &a.publish_settings) {
        (Some(id), _) => {
            let segs: Vec<&str> = id.trim_start_matches('/').split('/').collect();
            let (Some(sub), Some(name)) = (segs.get(1), segs.last()) else {
                bail!("--storage-account-id {id:?} is not /subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Storage/storageAccounts/NAME");
            };
            let entra = (*a.api.entra)
                .clone()
                .into_options()?
                .context("Resource Manager needs an Entra ID sign-in: give --client-id, --tenant and a credential (see --help)")?;
            let arm = ArmSettings {
                tenant: entra.tenant.clone(),
                client_id: entra.client_id.clone(),
                credential: recorded_credential(&entra.credential),
                resource_group: a.resource_group.clone().unwrap_or_default(),
                storage_account_id: id.clone(),
                authority: entra.authority.clone(),
                management_endpoint: entra.management_endpoint.clone(),
                management_audience: entra.management_audience.clone(),
            };
            (
                sub.to_string(),
                name.to_string(),
                ServiceApi::ResourceManager(Box::new(arm)),
                PathBuf::new(),
            )
        }
        (None, Some(p)) => {
            let account = a
                .storage_account
                .clone()
                .context("give the storage account with --storage-account NAME")?;
            let settings = seedship_shared::publish_settings::PublishSettings::load(p)?;
            let sub = match (&a.subscription, &settings.subscriptions[..]) {
                (Some(id), _) => settings.subscription(id)?.id.clone(),
                (None, [one]) => one.id.clone(),
                (None, all) => bail!(
                    "{} holds {} subscriptions: give one with --subscription ID ({})",
                    p.display(),
                    all.len(),
                    all.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(", ")
                ),
            };
            let p = std::path::absolute(p).with_context(|| format!("{}", p.display()))?;
            (sub, account, ServiceApi::Classic, p)
        }
        (None, None) => bail!(
            "give the service: --publish-settings FILE and --storage-account NAME (classic API), or \
             --storage-account-id ID --resource-group NAME with the Entra ID options (Resource Manager)"
        ),
    };
    Ok(JobDescriptor {
        format: 1,
        job_name: a.job_name.clone(),
        subscription,
        storage_account: account,
        container: String::new(),
        publish_settings,
        api,
        source_host: seedship_shared::host::hostname(),
        repository_id: String::new(),
        state: JobState::BackupComplete,
        created: seedship_shared::time::now_unix(),
        blobs: Vec::new(),
    })
}

/// `<job-dir>/<job-name>`, absolute: where the job is recorded.
fn job_folder(a: &CreateJobArgs) -> anyhow::Result<PathBuf> {
    let base = match &a.job_dir {
        Some(d) => d.clone(),
        None => a.journal[0]
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned(),
    };
    let base = std::path::absolute(&base).with_context(|| format!("{}", base.display()))?;
    Ok(base.join(&a.job_name))
}

/// What the job folder holds already: nothing, or a job from journals of the same account (and maybe its
/// record). A staged job of the agent, a job of another account, or a deleted job is refused.
fn existing_record(dir: &Path, d: &JobDescriptor) -> anyhow::Result<Option<JobRecord>> {
    if JobDescriptor::path_in(dir).exists() {
        let found = JobDescriptor::load(dir)?;
        if !found.is_from_journals() {
            bail!(
                "{} is the staged job {} of the backup agent, not a job from journals: give another \
                 --job-dir (or another --job-name)",
                dir.display(),
                found.job_name
            );
        }
        if (found.subscription.as_str(), found.storage_account.as_str())
            != (d.subscription.as_str(), d.storage_account.as_str())
        {
            bail!(
                "{} records job {} of storage account {} (subscription {}), not of {} ({}): give another \
                 --job-dir (or another --job-name)",
                dir.display(),
                found.job_name,
                found.storage_account,
                found.subscription,
                d.storage_account,
                d.subscription
            );
        }
    }
    match JobRecord::load(dir) {
        Ok(r) if r.deleted.is_some() => bail!(
            "import job {} was deleted with delete-job ({} records it) and is not created again: give the new \
             job another --job-name, or remove the folder {} to use the name again",
            r.job_name,
            JobRecord::path(dir).display(),
            dir.display()
        ),
        Ok(r) => Ok(Some(r)),
        Err(JobError::NoRecord { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Runs `create-job`.
pub fn run(a: CreateJobArgs) -> anyhow::Result<Exit> {
    let (drives, recorded) = read_journals(&a.journal)?;
    let d = descriptor(&a)?;
    let folder = job_folder(&a)?;
    existing_record(&folder, &d)?;
    let access = a.api.access(a.publish_settings.clone()).for_job(&d)?;
    let conn = job::connect(&d, &access)?;
    let credential = a.cred.credential()?.or_else(|| {
        recorded.map(|c| match c {
            StoredCredential::AccountKey(k) => Credential::AccountKey(k.to_string()),
            StoredCredential::ContainerSas(s) => Credential::ContainerSas(s.to_string()),
        })
    });
    let req = JobRequest {
        location: a.location.clone(),
        credential,
        return_address: a.ret.address()?,
        return_shipping: a.ret.shipping()?,
    };
    let ids: Vec<String> = drives.iter().map(|x| x.drive_id.clone()).collect();
    let pre = job::preflight(&conn, &d, &ids, &req)?;
    let json = a.json.then(seedship_shared::jsonout::json_stdout).transpose()?;
    let mut report = CreateJobReport {
        job_name: d.job_name.clone(),
        storage_account: d.storage_account.clone(),
        action: "planned",
        location: String::new(),
        drive_ids: ids.clone(),
        ship_to: None,
        link: None,
        record: None,
    };
    if a.dry_run {
        match &pre {
            Preflight::Exists(j) => {
                report.action = "exists";
                if json.is_none() {
                    ui::print_dry_run_exists(j);
                }
            }
            Preflight::Create { choice, location } => {
                report.location = location.name.clone();
                report.ship_to = Some(ship_to(location));
                if json.is_none() {
                    ui::print_dry_run_create(choice, location);
                    println!("Dry run: nothing was created.");
                }
            }
        }
        if let Some(mut out) = json {
            seedship_shared::jsonout::emit(&mut out, &report)?;
        }
        return Ok(Exit::Success);
    }
    let job_drives = || -> Result<Vec<Drive>, job::JobError> {
        Ok(drives
            .iter()
            .map(|x| job::job_drive(&x.drive_id, &x.recovery_key, &x.manifest_hash))
            .collect())
    };
    let outcome = job::put_and_read(&conn, &d, &ids, job_drives, &req, pre)?;
    let record_path = record_job(&folder, &d, &outcome.record).with_context(|| {
        format!(
            "import job {} exists, but recording it in {} failed; run the same command again to record it",
            d.job_name,
            folder.display()
        )
    })?;
    report.record = Some(record_path.display().to_string());
    report.action = if outcome.created { "created" } else { "exists" };
    report.location = outcome.record.location.clone();
    report.ship_to = Some(ship_to(&outcome.ship_to));
    report.link = Some(outcome.record.link.clone());
    match json {
        Some(mut out) => seedship_shared::jsonout::emit(&mut out, &report)?,
        None => {
            println!(
                "{} import job {} in storage account {} (location {}) with drives {}.",
                if outcome.created {
                    "Created"
                } else {
                    "Found the existing"
                },
                d.job_name,
                d.storage_account,
                outcome.record.location,
                ids.join(", ")
            );
            ui::print_address(&outcome.ship_to);
            println!("Job link: {}", outcome.record.link);
            let base = folder.parent().unwrap_or(&folder).display();
            println!(
                "Recorded in {}; after sending the drives: seedship-diskprep u: s:{base} --job {} (delete-job \
                 the same way).",
                record_path.display(),
                d.job_name
            );
        }
    }
    Ok(Exit::Success)
}

/// Writes the job folder: the descriptor (kept when one is there) and the record.
fn record_job(folder: &Path, d: &JobDescriptor, record: &JobRecord) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    if !JobDescriptor::path_in(folder).exists() {
        d.save(folder)?;
    }
    Ok(record.save(folder)?)
}

fn ship_to(l: &seedship_shared::api::Location) -> ShipTo {
    ShipTo {
        name: l.name.clone(),
        recipient: l.recipient_name.clone(),
        street_address1: l.street_address1.clone(),
        street_address2: l.street_address2.clone(),
        city: l.city.clone(),
        state_or_province: l.state_or_province.clone(),
        postal_code: l.postal_code.clone(),
        country_or_region: l.country_or_region.clone(),
    }
}
