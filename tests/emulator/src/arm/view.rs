//! The two views of one job: a job made through Resource Manager is stored as a classic job plus its record;
//! these functions convert between the classic and the Resource Manager shapes and render a `JobResponse`.

use super::types::*;
use crate::store::{Store, StoreError, StoredJob};
use seedship_shared::api::arm::{
    DriveStatus, EncryptionKeyDetails, IdentityDetails, JobDetails, JobResponse, ShippingInformation,
    StorageAccountId, SystemData, JOB_RESOURCE_TYPE,
};
use seedship_shared::api::{self as classic, DriveState, JobType};
use seedship_shared::time::UtcTime;

pub(super) fn classic_return_address(a: &seedship_shared::api::arm::ReturnAddress) -> classic::ReturnAddress {
    let mut parts = vec![a.street_address1.clone()];
    parts.extend(a.street_address2.clone().filter(|s| !s.is_empty()));
    parts.push(a.city.clone());
    parts.extend(a.state_or_province.clone().filter(|s| !s.is_empty()));
    parts.push(a.postal_code.clone());
    parts.push(a.country_or_region.clone());
    classic::ReturnAddress {
        name: a.recipient_name.clone(),
        address: parts.join(", "),
        phone: a.phone.clone(),
        email: a.email.clone(),
    }
}

pub(super) use seedship_shared::api::{arm_package, classic_package};

/// The Resource Manager properties of a job made through the classic API.
fn details_of_classic(sub: &str, sj: &StoredJob) -> JobDetails {
    let p = &sj.job.properties;
    JobDetails {
        storage_account_id: Some(StorageAccountId::new(sub, CLASSIC_RESOURCE_GROUP, &sj.account).to_string()),
        job_type: Some(match p.job_type {
            Some(JobType::Export) => "Export".into(),
            _ => "Import".into(),
        }),
        return_address: p
            .return_address
            .as_ref()
            .map(|a| seedship_shared::api::arm::ReturnAddress {
                recipient_name: a.name.clone(),
                street_address1: a.address.clone(),
                phone: a.phone.clone(),
                email: a.email.clone(),
                ..Default::default()
            }),
        return_shipping: p
            .return_shipping
            .as_ref()
            .map(|s| seedship_shared::api::arm::ReturnShipping {
                carrier_name: s.carrier_name.clone(),
                carrier_account_number: s.carrier_account_number.clone(),
            }),
        diagnostics_path: p.import_export_states_path.clone(),
        log_level: p
            .enable_verbose_log
            .map(|v| if v { "Verbose" } else { "Error" }.to_string()),
        backup_drive_manifest: p.backup_drive_manifest,
        drive_list: Some(
            sj.job
                .drives()
                .iter()
                .map(|d| DriveStatus {
                    drive_id: Some(d.drive_id.clone()),
                    manifest_file: d.manifest_file.clone(),
                    manifest_hash: d.manifest_hash.clone(),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    }
}

fn drive_state_name(s: DriveState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub(super) fn record_of(store: &Store, sj: &StoredJob) -> Result<Option<ArmRecord>, StoreError> {
    Ok(store
        .record(&sj.subscription, &sj.name)?
        .and_then(|r| serde_json::from_str(&r).ok()))
}

/// The job as Resource Manager shows it: the record (or the classic job's properties) with the live state,
/// drive progress, packages and the data centre's address; BitLocker keys never appear.
pub(super) fn render(ctx: &Ctx<'_>, sj: &StoredJob, record: Option<ArmRecord>) -> JobResponse {
    let p = &sj.job.properties;
    let (rg, loc_name, tags, mut d, created_by) = match record {
        Some(r) => (r.resource_group, r.location, r.tags, r.details, r.created_by),
        None => (
            CLASSIC_RESOURCE_GROUP.to_string(),
            p.location.clone().unwrap_or_default(),
            None,
            details_of_classic(&sj.subscription, sj),
            "classic API".to_string(),
        ),
    };
    d.state = Some(sj.state.as_str().to_string());
    d.cancel_requested = Some(p.cancel_requested.unwrap_or(false));
    d.percent_complete = p.percent_complete.map(i64::from);
    d.delivery_package = p.delivery_package.as_ref().map(arm_package);
    d.return_package = p.return_package.as_ref().map(arm_package);
    d.incomplete_blob_list_uri = p.incomplete_blob_list_uri.clone();
    d.diagnostics_path.get_or_insert_with(|| "waimportexport".into());
    d.log_level.get_or_insert_with(|| "Error".into());
    d.backup_drive_manifest.get_or_insert(false);
    d.provisioning_state = Some("Succeeded".into());
    d.encryption_key = Some(EncryptionKeyDetails {
        kek_type: Some("MicrosoftManaged".into()),
        ..Default::default()
    });
    d.shipping_information = find_location(ctx, &loc_name).map(|l| ShippingInformation {
        recipient_name: l.recipient_name.clone(),
        street_address1: l.street_address1.clone(),
        street_address2: Some(l.street_address2.clone()),
        city: l.city.clone(),
        state_or_province: Some(l.state_or_province.clone()),
        postal_code: l.postal_code.clone(),
        country_or_region: l.country_or_region.clone(),
        phone: Some(String::new()),
        additional_information: Some(String::new()),
    });
    let live = sj.job.drives();
    for drive in d.drive_list.iter_mut().flatten() {
        drive.bit_locker_key = None;
        let Some(c) = live.iter().find(|c| {
            drive
                .drive_id
                .as_deref()
                .is_some_and(|id| id.eq_ignore_ascii_case(&c.drive_id))
        }) else {
            continue;
        };
        drive.state = Some(drive_state_name(c.state.unwrap_or(DriveState::Specified)));
        drive.copy_status = c.copy_status.clone();
        drive.percent_complete = c.percent_complete.map(i64::from);
        drive.bytes_succeeded = c.bytes_succeeded.and_then(|b| i64::try_from(b).ok());
        drive.verbose_log_uri = c.verbose_log_uri.clone();
        drive.error_log_uri = c.error_log_uri.clone();
        drive.manifest_uri = c.manifest_uri.clone();
    }
    JobResponse {
        system_data: Some(SystemData {
            created_by: Some(created_by.clone()),
            created_by_type: Some("Application".into()),
            created_at: Some(UtcTime::from_unix(sj.created).iso8601()),
            last_modified_by: Some(created_by),
            last_modified_by_type: Some("Application".into()),
            last_modified_at: Some(UtcTime::from_unix(sj.updated).iso8601()),
        }),
        properties: Some(d),
        identity: Some(IdentityDetails {
            identity_type: Some("None".into()),
            ..Default::default()
        }),
        id: Some(job_id(&sj.subscription, &rg, &sj.name)),
        name: Some(sj.name.clone()),
        resource_type: Some(JOB_RESOURCE_TYPE.into()),
        location: Some(loc_name),
        tags,
    }
}

pub(super) fn job_id(sub: &str, rg: &str, name: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ImportExport/jobs/{name}")
}
