//! The job operations: Jobs_Create, Get, Update, Delete, the two lists and BitLockerKeys_List, with the
//! body rules of Jobs_Create.

use super::types::*;
use super::view::{classic_package, classic_return_address, record_of, render};
use crate::odata::Reply;
use crate::store::{PutRefusal, StoredJob};
use crate::validation::{self, Rejection, MAX_ACTIVE_JOBS, MAX_DRIVES};
use seedship_shared::api::arm::{
    DriveBitLockerKey, DriveStatus, GetBitLockerKeysResponse, JobResponse, ListJobsResponse,
    PutJobParameters, StorageAccountId, UpdateJobParameters, ARM_API_VERSION,
};
use seedship_shared::api::{self as classic, DriveState, Job, JobState, JobType};

/// A job of the subscription in resource group `rg`, with its record; 404 otherwise.
fn load(ctx: &Ctx<'_>, sub: &str, rg: &str, name: &str) -> Result<(StoredJob, Option<ArmRecord>), Failure> {
    let missing = || {
        not_found(format!(
            "The Resource 'Microsoft.ImportExport/jobs/{name}' under resource group '{rg}' was not found."
        ))
    };
    let sj = ctx.store.get(sub, name)?.ok_or_else(missing)?;
    let record = record_of(ctx.store, &sj)?;
    let group = record
        .as_ref()
        .map_or(CLASSIC_RESOURCE_GROUP, |r| r.resource_group.as_str());
    if !group.eq_ignore_ascii_case(rg) {
        return Err(missing().into());
    }
    Ok((sj, record))
}

pub(super) fn get_job(ctx: &mut Ctx<'_>, sub: &str, rg: &str, name: &str) -> Result<Reply, Failure> {
    let (sj, record) = load(ctx, sub, rg, name)?;
    Ok(json(200, &render(ctx, &sj, record), ctx.now))
}

pub(super) fn list_jobs(ctx: &mut Ctx<'_>, sub: &str, rg: Option<&str>) -> Result<Reply, Failure> {
    let q = ctx.req.query.as_deref();
    if query_param(q, "$filter").is_some() {
        return Err(bad(
            "InvalidFilter",
            "The emulator does not support $filter; list without it and filter the answer.",
        )
        .into());
    }
    let top = match query_param(q, "$top") {
        None => MAX_TOP,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=MAX_TOP).contains(&n) => n,
            _ => {
                return Err(bad(
                    "InvalidTop",
                    format!("$top must be a whole number from 1 to {MAX_TOP}, not '{t}'."),
                )
                .into())
            }
        },
    };
    let skip: usize = match query_param(q, "$skiptoken") {
        None => 0,
        Some(s) => s.parse().map_err(|_| {
            bad(
                "InvalidSkipToken",
                format!("The $skiptoken '{s}' is not one this emulator issued."),
            )
        })?,
    };
    ctx.store.purge_expired(ctx.now)?;
    let mut jobs = Vec::new();
    for sj in ctx.store.list(sub)? {
        let record = record_of(ctx.store, &sj)?;
        let group = record
            .as_ref()
            .map_or(CLASSIC_RESOURCE_GROUP, |r| r.resource_group.as_str());
        if rg.is_none_or(|rg| group.eq_ignore_ascii_case(rg)) {
            jobs.push((sj, record));
        }
    }
    let total = jobs.len();
    let value: Vec<JobResponse> = jobs
        .into_iter()
        .skip(skip)
        .take(top)
        .map(|(sj, r)| render(ctx, &sj, r))
        .collect();
    let next_link = (skip + top < total).then(|| {
        let host = ctx
            .req
            .headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!(
            "https://{host}{}?api-version={ARM_API_VERSION}&$top={top}&$skiptoken={}",
            ctx.req.path,
            skip + top
        )
    });
    Ok(json(200, &ListJobsResponse { next_link, value }, ctx.now))
}

/// A manifest hash: 32 (MD5) or 64 (SHA-256) hex digits.
fn manifest_hash_ok(h: &str) -> bool {
    (h.len() == 32 || h.len() == 64) && h.bytes().all(|b| b.is_ascii_hexdigit())
}

fn check_drives(drives: &[DriveStatus]) -> Result<(), Rejection> {
    if drives.is_empty() {
        return Err(bad(
            "MissingDriveList",
            "An import job needs properties.driveList with at least one drive.",
        ));
    }
    if drives.len() > MAX_DRIVES {
        return Err(bad(
            "TooManyDrives",
            format!(
                "A job holds at most {MAX_DRIVES} drives; this one lists {}.",
                drives.len()
            ),
        ));
    }
    let mut seen: Vec<&str> = Vec::new();
    for d in drives {
        let id = d.drive_id.as_deref().unwrap_or("");
        if !validation::drive_id(id) {
            return Err(bad("InvalidDriveId", format!("The driveId '{id}' is invalid: use the serial number without spaces (1 to 64 characters).")));
        }
        if seen.iter().any(|s| s.eq_ignore_ascii_case(id)) {
            return Err(bad(
                "DuplicateDriveId",
                format!("The driveId '{id}' appears twice in driveList."),
            ));
        }
        seen.push(id);
        if !d.bit_locker_key.as_deref().is_some_and(validation::bitlocker_key) {
            return Err(bad("InvalidBitLockerKey", format!("The bitLockerKey of drive '{id}' is missing or not 48 digits in 8 groups, each a multiple of 11 below 720896.")));
        }
        if !d
            .manifest_file
            .as_deref()
            .is_some_and(|f| !f.is_empty() && f.len() <= 1024)
        {
            return Err(bad(
                "InvalidManifestFile",
                format!("The manifestFile of drive '{id}' is missing or longer than 1024 characters."),
            ));
        }
        if !d.manifest_hash.as_deref().is_some_and(manifest_hash_ok) {
            return Err(bad("InvalidManifestHash", format!("The manifestHash of drive '{id}' is missing or not 32 (MD5) or 64 (SHA-256) hexadecimal digits.")));
        }
    }
    Ok(())
}

fn check_return_address(a: &seedship_shared::api::arm::ReturnAddress) -> Result<(), Rejection> {
    let missing: Vec<&str> = [
        ("recipientName", &a.recipient_name),
        ("streetAddress1", &a.street_address1),
        ("city", &a.city),
        ("postalCode", &a.postal_code),
        ("countryOrRegion", &a.country_or_region),
        ("phone", &a.phone),
        ("email", &a.email),
    ]
    .into_iter()
    .filter(|(_, v)| v.trim().is_empty())
    .map(|(k, _)| k)
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(bad(
            "InvalidReturnAddress",
            format!("returnAddress lacks {}.", missing.join(", ")),
        ))
    }
}

/// The body rules of Jobs_Create: the job's storage account, location and the classic job to store.
fn plan_job(
    ctx: &Ctx<'_>,
    sub: &str,
    name: &str,
    params: &PutJobParameters,
) -> Result<(Job, String), Rejection> {
    let d = params
        .properties
        .as_ref()
        .ok_or_else(|| bad("MissingProperties", "The request body needs 'properties'."))?;
    match d.job_type.as_deref() {
        Some(t) if t.eq_ignore_ascii_case("Import") => {}
        Some(t) if t.eq_ignore_ascii_case("Export") => {
            return Err(bad(
                "ExportJobsNotSupported",
                "Export jobs are not supported by seedship-emulator; only import jobs (jobType Import) are.",
            ))
        }
        other => {
            return Err(bad(
                "InvalidJobType",
                format!("properties.jobType must be Import, not {other:?}."),
            ))
        }
    }
    if d.export.is_some() {
        return Err(bad(
            "ExportJobsNotSupported",
            "An import job takes no 'export' property; export jobs are not supported by seedship-emulator.",
        ));
    }
    let acct_id = d.storage_account_id.as_deref().ok_or_else(|| {
        bad(
            "MissingStorageAccountId",
            "properties.storageAccountId (the storage account's resource id) is required.",
        )
    })?;
    let acct = StorageAccountId::parse(acct_id).map_err(|e| bad("InvalidStorageAccountId", e))?;
    if !acct.subscription.eq_ignore_ascii_case(sub) {
        return Err(bad(
            "InvalidStorageAccountId",
            format!("The storage account '{acct_id}' is not in subscription '{sub}'."),
        ));
    }
    validation::account_name(&acct.name)?;
    let loc_name = params
        .location
        .as_deref()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| {
            bad(
                "LocationRequired",
                "The job's 'location' is required; see Locations_List.",
            )
        })?;
    let location = find_location(ctx, loc_name).ok_or_else(|| {
        bad(
            "InvalidLocation",
            format!("Location '{loc_name}' is not an Import/Export location; see Locations_List."),
        )
    })?;
    if !location.is_open() {
        let alts = location
            .alternate_locations
            .clone()
            .unwrap_or_default()
            .join(", ");
        return Err(bad(
            "LocationNotAvailable",
            format!("Location '{}' is closed; ship to one of: {alts}.", location.name),
        ));
    }
    let ret = d
        .return_address
        .as_ref()
        .ok_or_else(|| bad("MissingReturnAddress", "properties.returnAddress is required."))?;
    check_return_address(ret)?;
    if let Some(s) = &d.return_shipping {
        if s.carrier_name.trim().is_empty() || s.carrier_account_number.trim().is_empty() {
            return Err(bad(
                "InvalidReturnShipping",
                "returnShipping needs carrierName and carrierAccountNumber.",
            ));
        }
    }
    check_drives(d.drives())?;
    let drives = d
        .drives()
        .iter()
        .map(|x| classic::Drive {
            drive_id: x.drive_id.clone().unwrap_or_default(),
            bit_locker_key: x.bit_locker_key.clone(),
            manifest_file: x.manifest_file.clone(),
            manifest_hash: x.manifest_hash.as_ref().map(|h| h.to_ascii_uppercase()),
            state: Some(DriveState::Specified),
            ..Default::default()
        })
        .collect();
    let job = Job {
        name: name.to_string(),
        properties: classic::JobProperties {
            storage_account_name: Some(acct.name.clone()),
            location: Some(location.name.clone()),
            job_type: Some(JobType::Import),
            return_address: Some(classic_return_address(ret)),
            return_shipping: d.return_shipping.as_ref().map(|s| classic::ReturnShipping {
                carrier_name: s.carrier_name.clone(),
                carrier_account_number: s.carrier_account_number.clone(),
            }),
            import_export_states_path: d.diagnostics_path.clone(),
            enable_verbose_log: Some(
                d.log_level
                    .as_deref()
                    .is_some_and(|l| l.eq_ignore_ascii_case("Verbose")),
            ),
            backup_drive_manifest: d.backup_drive_manifest,
            ..Default::default()
        },
        drive_list: Some(drives),
        ..Default::default()
    };
    Ok((job, location.name.clone()))
}

/// Resource Manager job names: letters (either case, as the specification's `myJob`), digits, `-` and `_`,
/// starting with a letter, at most [`validation::MAX_JOB_NAME`] characters.
fn job_name(name: &str) -> Result<(), Rejection> {
    let ok = name.len() <= validation::MAX_JOB_NAME
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(bad(
            "InvalidJobName",
            format!("The job name '{name}' is invalid: use 1 to {} letters, digits, '-' or '_', starting with a letter.", validation::MAX_JOB_NAME),
        ))
    }
}

pub(super) fn create_job(ctx: &mut Ctx<'_>, sub: &str, rg: &str, name: &str) -> Result<Reply, Failure> {
    job_name(name)?;
    let params: PutJobParameters = serde_json::from_slice(&ctx.req.body).map_err(|e| {
        bad(
            "InvalidRequestContent",
            format!("The request content is not a valid PutJobParameters: {e}."),
        )
    })?;
    let (job, location) = plan_job(ctx, sub, name, &params)?;
    let existing = ctx.store.get(sub, name)?;
    if let Some(e) = &existing {
        let record = record_of(ctx.store, e)?;
        let group = record
            .as_ref()
            .map_or(CLASSIC_RESOURCE_GROUP, |r| r.resource_group.as_str());
        if e.state != JobState::Creating || !group.eq_ignore_ascii_case(rg) {
            return Err(conflict(name, e.state, group));
        }
    }
    let mut details = params.properties.clone().unwrap_or_default();
    for d in details.drive_list.iter_mut().flatten() {
        d.manifest_hash = d.manifest_hash.as_ref().map(|h| h.to_ascii_uppercase());
        d.state = None;
    }
    let record = ArmRecord {
        resource_group: rg.to_string(),
        location,
        tags: params.tags.clone(),
        details,
        created_by: ctx.subject.clone(),
    };
    let stored = StoredJob {
        subscription: sub.to_string(),
        name: name.to_string(),
        account: job.properties.storage_account_name.clone().unwrap_or_default(),
        state: JobState::Creating,
        job,
        created: existing.as_ref().map_or(ctx.now, |e| e.created),
        updated: ctx.now,
        finished: None,
    };
    let json_record = serde_json::to_string(&record).unwrap_or_default();
    match ctx.store.put_with_record(&stored, MAX_ACTIVE_JOBS, Some(&json_record))? {
        Ok(replaced) => {
            let status = if replaced { 200 } else { 201 };
            Ok(json(status, &render(ctx, &stored, Some(record)), ctx.now))
        }
        Err(PutRefusal::NameTaken { state, account }) => Err(conflict(name, state, &account)),
        Err(PutRefusal::TooManyActive(n)) => Err(Rejection::new(
            409,
            "TooManyActiveJobs",
            format!("The subscription has {n} active jobs; at most {MAX_ACTIVE_JOBS} are allowed. Complete or delete one first."),
        )
        .into()),
    }
}

fn conflict(name: &str, state: JobState, where_: &str) -> Failure {
    Rejection::new(
        409,
        "JobAlreadyExists",
        format!("Job '{name}' already exists ({where_}, state {state}); a job can be replaced only while it is Creating and in the same resource group, and a name reused only after the job is deleted."),
    )
    .into()
}

pub(super) fn update_job(ctx: &mut Ctx<'_>, sub: &str, rg: &str, name: &str) -> Result<Reply, Failure> {
    let (mut sj, mut record) = load(ctx, sub, rg, name)?;
    let params: UpdateJobParameters = serde_json::from_slice(&ctx.req.body).map_err(|e| {
        bad(
            "InvalidRequestContent",
            format!("The request content is not a valid UpdateJobParameters: {e}."),
        )
    })?;
    let n = params.properties.clone().unwrap_or_default();
    if n.drive_list.is_some() {
        return Err(bad("DriveListUpdateNotSupported", "Changing driveList with Jobs_Update is not supported by seedship-emulator; create the job again while it is Creating.").into());
    }
    let state = match n.state.as_deref() {
        None | Some("") => None,
        Some(s) if s.eq_ignore_ascii_case("Shipping") => Some(JobState::Shipping),
        Some(s) => {
            return Err(bad(
                "InvalidStateValue",
                format!("state can only be set to Shipping, not '{s}'."),
            )
            .into())
        }
    };
    if let Some(a) = &n.return_address {
        check_return_address(a)?;
    }
    let verbose = n.log_level.as_deref().map(|l| l.eq_ignore_ascii_case("Verbose"));
    let u = classic::JobUpdate {
        name: None,
        properties: classic::JobUpdateProperties {
            state,
            // the Azure SDK for Python sends `cancelRequested: false` in every update: false asks for nothing
            cancel_requested: n.cancel_requested.filter(|c| *c),
            return_address: n.return_address.as_ref().map(classic_return_address),
            return_shipping: n.return_shipping.as_ref().map(|s| classic::ReturnShipping {
                carrier_name: s.carrier_name.clone(),
                carrier_account_number: s.carrier_account_number.clone(),
            }),
            delivery_package: n.delivery_package.as_ref().map(classic_package),
            enable_verbose_log: verbose,
            backup_drive_manifest: n.backup_drive_manifest,
            ..Default::default()
        },
    };
    let p = &mut sj.job.properties;
    validation::update(
        &u,
        sj.state,
        p.return_address.is_some(),
        p.delivery_package.is_some(),
    )?;
    let c = u.properties;
    if c.cancel_requested.is_some() {
        p.cancel_requested = c.cancel_requested;
    }
    if c.return_address.is_some() {
        p.return_address = c.return_address;
    }
    if c.return_shipping.is_some() {
        p.return_shipping = c.return_shipping;
    }
    if c.delivery_package.is_some() {
        p.delivery_package = c.delivery_package;
    }
    if c.enable_verbose_log.is_some() {
        p.enable_verbose_log = c.enable_verbose_log;
    }
    if c.backup_drive_manifest.is_some() {
        p.backup_drive_manifest = c.backup_drive_manifest;
    }
    if state == Some(JobState::Shipping) {
        sj.state = JobState::Shipping;
    }
    sj.updated = ctx.now;
    ctx.store.save(&sj)?;
    if let Some(r) = record.as_mut() {
        let d = &mut r.details;
        if n.return_address.is_some() {
            d.return_address = n.return_address.clone();
        }
        if n.return_shipping.is_some() {
            d.return_shipping = n.return_shipping.clone();
        }
        if n.log_level.is_some() {
            d.log_level = n.log_level.clone();
        }
        if n.backup_drive_manifest.is_some() {
            d.backup_drive_manifest = n.backup_drive_manifest;
        }
        if params.tags.is_some() {
            r.tags = params.tags.clone();
        }
        ctx.store
            .save_record(sub, name, &serde_json::to_string(&r).unwrap_or_default())?;
    }
    Ok(json(200, &render(ctx, &sj, record), ctx.now))
}

pub(super) fn delete_job(ctx: &mut Ctx<'_>, sub: &str, rg: &str, name: &str) -> Result<Reply, Failure> {
    let (sj, _) = load(ctx, sub, rg, name)?;
    validation::delete(sj.state)?;
    ctx.store.delete(sub, name)?;
    Ok(base_reply(200, ctx.now))
}

pub(super) fn list_keys(ctx: &mut Ctx<'_>, sub: &str, rg: &str, name: &str) -> Result<Reply, Failure> {
    let (sj, _) = load(ctx, sub, rg, name)?;
    let value = sj
        .job
        .drives()
        .iter()
        .map(|d| DriveBitLockerKey {
            bit_locker_key: d.bit_locker_key.clone(),
            drive_id: Some(d.drive_id.clone()),
        })
        .collect();
    Ok(json(200, &GetBitLockerKeysResponse { value }, ctx.now))
}
