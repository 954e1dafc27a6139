//! The command-line glue of the import job: turns the typed options `lib.rs` builds ([`JobSetup`],
//! [`JobTarget`]) and the return options into [`create`](crate::job::create), [`ship`](crate::job::ship) and
//! [`delete`](crate::job::delete) calls, asks what is missing on the terminal, and prints through
//! [`console`](crate::job::console).

use crate::job::console::{self as ui, interactive};
use crate::job::create::{self as job, Connection, Credential, JobError, JobRecord, JobRequest, Preflight};
use crate::job::ship::{self, ShipDetails, ShipError};
use crate::prep::prepare::{PrepPlan, PrepReport};
use anyhow::Context;
use clap::Args;
use seedship_shared::api::{ApiAccess, JobState, ReturnAddress, ReturnShipping};
use seedship_shared::exit::Exit;
use std::path::PathBuf;

/// What creating the import job needs, from the preparation's options (built by `lib.rs`).
pub(crate) struct JobSetup {
    /// How the Import/Export service is reached.
    pub access: ApiAccess,
    /// The job's location, credential and return details as given (what is missing is asked).
    pub request: JobRequest,
}

/// The job `u:` and `delete-job` work on (built by `lib.rs` from the options).
pub(crate) struct JobTarget {
    /// The staging location.
    pub staging: PathBuf,
    /// The job, when several in the staging location have an import job.
    pub job: Option<String>,
    /// How the Import/Export service is reached.
    pub access: ApiAccess,
}

/// Everything needed to create the job once the drives are ready.
pub(crate) struct Creation {
    conn: Connection,
    req: JobRequest,
    pre: Preflight,
}

/// Where the drives go back to, and whose carrier account pays (all optional at preparation; `u:` needs them).
#[derive(Debug, Args, Clone, Default)]
pub struct ReturnArgs {
    /// Return address: the recipient's name.
    #[arg(long, value_name = "TEXT")]
    pub return_name: Option<String>,
    /// Return address: street, city, postal code, country (one line).
    #[arg(long, value_name = "TEXT")]
    pub return_address: Option<String>,
    /// Return address: phone.
    #[arg(long, value_name = "TEXT")]
    pub return_phone: Option<String>,
    /// Return address: email.
    #[arg(long, value_name = "TEXT")]
    pub return_email: Option<String>,
    /// The carrier that ships the drives back.
    #[arg(long, value_name = "NAME")]
    pub return_carrier: Option<String>,
    /// Your account number with that carrier.
    #[arg(long, value_name = "NUMBER")]
    pub return_carrier_account: Option<String>,
}

impl ReturnArgs {
    /// All four address parts, none, or an error naming the missing ones.
    pub(crate) fn address(&self) -> anyhow::Result<Option<ReturnAddress>> {
        let parts = [
            ("--return-name", &self.return_name),
            ("--return-address", &self.return_address),
            ("--return-phone", &self.return_phone),
            ("--return-email", &self.return_email),
        ];
        all_or_none(&parts)?;
        Ok(self.return_name.as_ref().map(|name| ReturnAddress {
            name: name.clone(),
            address: self.return_address.clone().unwrap_or_default(),
            phone: self.return_phone.clone().unwrap_or_default(),
            email: self.return_email.clone().unwrap_or_default(),
        }))
    }

    pub(crate) fn shipping(&self) -> anyhow::Result<Option<ReturnShipping>> {
        all_or_none(&[
            ("--return-carrier", &self.return_carrier),
            ("--return-carrier-account", &self.return_carrier_account),
        ])?;
        Ok(self.return_carrier.as_ref().map(|c| ReturnShipping {
            carrier_name: c.clone(),
            carrier_account_number: self.return_carrier_account.clone().unwrap_or_default(),
        }))
    }
}

fn all_or_none(parts: &[(&str, &Option<String>)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = parts
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() && missing.len() != parts.len() {
        anyhow::bail!(
            "give all of {} together (missing: {})",
            parts.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
            missing.join(", ")
        );
    }
    Ok(())
}

/// Before the drives are written: connects, and either finds the job with these drives or makes sure it can
/// be created (location and credential known, location resolved). `None` when the job was deleted before.
pub(crate) fn preflight(plan: &PrepPlan, setup: JobSetup) -> anyhow::Result<Option<Creation>> {
    let d = &plan.job.descriptor;
    match JobRecord::load(&plan.job.dir) {
        Ok(r) if r.deleted.is_some() => {
            println!(
                "Import job {} was deleted with delete-job; it is not created again (give the job another \
                 name in the agent for a new one).",
                r.job_name
            );
            return Ok(None);
        }
        Ok(_) | Err(JobError::NoRecord { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let conn = job::connect(d, &setup.access)?;
    let mut req = setup.request;
    let ids: Vec<String> = plan.drives.iter().map(|p| p.drive_id.clone()).collect();
    loop {
        match job::preflight(&conn, d, &ids, &req) {
            Ok(pre) => return Ok(Some(Creation { conn, req, pre })),
            Err(JobError::NoCredential { account, .. }) if interactive() => {
                let key = ui::ask_secret(
                    &format!("Key of storage account {account}"),
                    "--storage-account-key-file FILE or SEEDSHIP_STORAGE_KEY",
                )?;
                anyhow::ensure!(!key.is_empty(), "no storage account key given");
                req.credential = Some(Credential::AccountKey(key));
            }
            Err(JobError::NoLocation {
                account, available, ..
            }) if interactive() => {
                let l = ui::ask(
                    &format!("Region of storage account {account} ({available})"),
                    None,
                    "--location",
                )?;
                anyhow::ensure!(!l.is_empty(), "no location given");
                req.location = Some(l);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A dry run: what would happen to the import job, and at which location (nothing is created).
pub(crate) fn print_dry_run(creation: Option<&Creation>) {
    match creation.map(|c| &c.pre) {
        None => {}
        Some(Preflight::Exists(job)) => ui::print_dry_run_exists(job),
        Some(Preflight::Create { choice, location }) => ui::print_dry_run_create(choice, location),
    }
}

/// After the drives are ready: creates (or reports) the job and prints where to ship.
pub(crate) fn create(plan: &PrepPlan, report: &PrepReport, c: Creation) -> anyhow::Result<()> {
    let dir = &plan.job.dir;
    let outcome = job::create_or_report(&c.conn, dir, &plan.job.descriptor, report, &c.req, c.pre).context(
        "the drives are ready, but the import job was not created; run the same command again to create it",
    )?;
    let staging = dir.parent().map(PathBuf::from).unwrap_or_default();
    ui::print_job(&outcome, &JobRecord::path(dir), &staging);
    Ok(())
}

/// The answers of `u:` given on the command line.
pub(crate) struct ShipAnswers {
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub drive_count: Option<u32>,
    pub ship_date: Option<String>,
    pub ret: ReturnArgs,
}

fn locate(target: &JobTarget) -> anyhow::Result<(crate::prep::staging::StagedJob, JobRecord, Connection)> {
    let (staged, record) = ship::locate(&target.staging, target.job.as_deref())?;
    let conn = job::connect(&staged.descriptor, &target.access)?;
    Ok((staged, record, conn))
}

/// `u:`: the shipping details while the job is `Creating`, its status afterwards.
/// `ship --json`: the job's state as the service reports it, one JSON document on `out`.
pub(crate) fn job_status_json(target: &JobTarget, out: &mut std::fs::File) -> anyhow::Result<Exit> {
    let (_, record, conn) = locate(target)?;
    let job = if record.deleted.is_some() {
        None
    } else {
        Some(
            job::find_job(&conn, &record.storage_account, &record.job_name)?.ok_or_else(|| {
                anyhow::anyhow!(
                    "the service no longer knows import job {} in storage account {}",
                    record.job_name,
                    record.storage_account
                )
            })?,
        )
    };
    seedship_shared::jsonout::emit(out, &crate::report::JobStatusReport::new(&record, job.as_ref()))?;
    Ok(Exit::Success)
}

pub(crate) fn ship_cmd(target: &JobTarget, a: ShipAnswers, yes: bool) -> anyhow::Result<Exit> {
    let (staged, record, conn) = locate(target)?;
    if record.deleted.is_some() {
        println!("Import job {} was deleted with delete-job.", record.job_name);
        return Ok(Exit::Success);
    }
    let job = job::find_job(&conn, &record.storage_account, &record.job_name)?.ok_or_else(|| {
        anyhow::anyhow!(
            "the service no longer knows import job {} in storage account {} (deleted, or expired after two \
             weeks in Creating); run the preparation again to create it",
            record.job_name,
            record.storage_account
        )
    })?;
    if job.properties.state != Some(JobState::Creating) {
        ui::print_status(&job, &record);
        return Ok(Exit::Success);
    }
    let ship_to = match &job.properties.shipping_information {
        Some(l) => l.clone(),
        None => conn.client.resolve_location(&record.location)?.1,
    };
    let drives = job.drives().len();
    let given = job.properties.return_address.clone().unwrap_or_default();
    let given_ship = job.properties.return_shipping.clone().unwrap_or_default();
    let answer = |v: Option<String>, q: &str, default: &str, opt: &str| -> anyhow::Result<String> {
        match v {
            Some(v) => Ok(v),
            None => ui::ask(q, (!default.is_empty()).then_some(default), opt),
        }
    };
    let carriers = ship_to.supported_carriers.join(", ");
    let count = match a.drive_count {
        Some(n) => n,
        None => answer(
            None,
            "Drives in the package",
            &drives.to_string(),
            "--drive-count",
        )?
        .parse()
        .context("the drive count is not a number")?,
    };
    let mut details = ShipDetails {
        job_name: record.job_name.clone(),
        storage_account: record.storage_account.clone(),
        carrier: answer(a.carrier, &format!("Carrier ({carriers})"), "", "--carrier")?,
        tracking_number: answer(a.tracking_number, "Tracking number", "", "--tracking-number")?,
        drive_count: count,
        ship_date: answer(
            a.ship_date,
            "Ship date (YYYY-MM-DD)",
            &ship::today(),
            "--ship-date",
        )?,
        return_address: ReturnAddress {
            name: answer(
                a.ret.return_name,
                "Return to (name)",
                &given.name,
                "--return-name",
            )?,
            address: answer(
                a.ret.return_address,
                "Return address",
                &given.address,
                "--return-address",
            )?,
            phone: answer(a.ret.return_phone, "Phone", &given.phone, "--return-phone")?,
            email: answer(a.ret.return_email, "Email", &given.email, "--return-email")?,
        },
        return_shipping: ReturnShipping {
            carrier_name: answer(
                a.ret.return_carrier,
                "Return carrier",
                &given_ship.carrier_name,
                "--return-carrier",
            )?,
            carrier_account_number: answer(
                a.ret.return_carrier_account,
                "Return carrier account number",
                &given_ship.carrier_account_number,
                "--return-carrier-account",
            )?,
        },
        committed: None,
    };
    ship::check(&mut details, &ship_to, drives)?;
    ui::print_review(&details, &ship_to);
    if !yes && !ui::confirm("Send these details to the Import/Export service?")? {
        return Err(ShipError::NotConfirmed.into());
    }
    let path = ship::save(&staged.dir, &details)?;
    ship::commit(&conn.client, &mut details)?;
    ship::save(&staged.dir, &details)?;
    println!(
        "Import job {} is now Shipping. The drives must arrive within two weeks.",
        record.job_name
    );
    println!(
        "The details are saved in {} (readable by you only).",
        path.display()
    );
    println!(
        "Run `seedship-diskprep u: s:{}` again to follow the job.",
        staged.dir.parent().unwrap_or(&staged.dir).display()
    );
    Ok(Exit::Success)
}

/// `delete-job`.
pub(crate) fn delete_cmd(target: &JobTarget, yes: bool) -> anyhow::Result<Exit> {
    let (staged, mut record, conn) = locate(target)?;
    if !yes
        && !ui::confirm(&format!(
            "Delete import job {} in storage account {}?",
            record.job_name, record.storage_account
        ))?
    {
        return Err(ShipError::NotConfirmed.into());
    }
    let outcome = crate::job::delete::delete_job(&conn, &staged.dir, &mut record)?;
    ui::print_delete(&outcome, &record);
    Ok(match outcome {
        crate::job::delete::DeleteOutcome::Refused(_) => Exit::Failure,
        _ => Exit::Success,
    })
}
