//! `seedship-diskprep create-job --journal FILE... --job-name NAME`: the import job from drive journals, as
//! the portal's wizard creates it from uploaded WAImportExport journal files. Each `prepimport` journal gives
//! its drive's id, recovery key and manifest hash; the job is created through the classic API (publish
//! settings) or Resource Manager (Entra ID sign-in), with the location, return address and carrier options of
//! drive preparation, and the shipping address is printed.

use crate::job::console as ui;
use crate::job::create::{self as job, Credential, CredentialArgs, JobRequest, Preflight};
use crate::wai::journal::{self, StoredCredential};
use crate::{ApiArgs, ReturnArgs};
use anyhow::{bail, Context};
use clap::Args;
use seedship_shared::api::{recorded_credential, Drive};
use seedship_shared::exit::Exit;
use seedship_shared::staging::{ArmSettings, JobDescriptor, JobState, ServiceApi};
use serde::Serialize;
use std::path::PathBuf;

/// The options of `create-job`.
#[derive(Debug, Args)]
pub struct CreateJobArgs {
    /// A drive's journal written by `prepimport` (its /j: file); repeat (or list several) for each drive.
    #[arg(long, value_name = "FILE", num_args = 1.., required = true)]
    pub journal: Vec<PathBuf>,
    /// The import job's name: lowercase letters, digits, hyphens and underscores, starting with a letter.
    #[arg(long, value_name = "NAME")]
    pub job_name: String,
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

/// Reads the journals: every drive complete (its latest session finished), each drive once.
fn read_journals(paths: &[PathBuf]) -> anyhow::Result<(Vec<JournalDrive>, Option<StoredCredential>)> {
    let mut drives: Vec<JournalDrive> = Vec::new();
    let mut credential = None;
    for p in paths {
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
            (sub, account, ServiceApi::Classic, p.clone())
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

/// Runs `create-job`.
pub fn run(a: CreateJobArgs) -> anyhow::Result<Exit> {
    let (drives, recorded) = read_journals(&a.journal)?;
    let d = descriptor(&a)?;
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
        }
    }
    Ok(Exit::Success)
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
