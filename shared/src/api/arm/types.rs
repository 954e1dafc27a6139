//! The wire types of `Microsoft.ImportExport` api-version 2021-01-01, named as the specification's
//! definitions (`PutJobParameters`, `JobDetails`, `JobResponse`, `DriveStatus`, ...), in camelCase JSON.
//!
//! Every field the service may leave out is an `Option` and is left out of what we send when `None`, so a
//! request body holds exactly what the caller set. Unknown fields in answers are ignored. States are kept as
//! strings (the specification models them "as string", and Update Job sends `"state": ""`); [`JobDetails::job_state`]
//! parses them into the classic [`JobState`].

use crate::api::types::{DriveState, JobState};
use serde::{Deserialize, Serialize};

/// The resource type of a job.
pub const JOB_RESOURCE_TYPE: &str = "Microsoft.ImportExport/jobs";
/// The resource type of a location.
pub const LOCATION_RESOURCE_TYPE: &str = "Microsoft.ImportExport/locations";

/// Body of Jobs_Create (`PutJobParameters`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutJobParameters {
    /// The Azure location (region) of the job, e.g. `West US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<JobDetails>,
}

/// The job's properties (`JobDetails`), sent on create and answered by every job operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDetails {
    /// Resource id of the storage account, `/subscriptions/../resourceGroups/../providers/Microsoft.Storage/storageAccounts/NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_account_id: Option<String>,
    /// `Import` or `Export`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_address: Option<ReturnAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_shipping: Option<ReturnShipping>,
    /// The data centre's address (answers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_information: Option<ShippingInformation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_package: Option<PackageInformation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_package: Option<PackageInformation>,
    /// Virtual blob directory of the copy logs (the classic `ImportExportStatesPath`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics_path: Option<String>,
    /// `Error` (default) or `Verbose`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_drive_manifest: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_requested: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent_complete: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete_blob_list_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive_list: Option<Vec<DriveStatus>>,
    /// Export jobs only (not supported by seedship; kept as raw JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<EncryptionKeyDetails>,
}

impl JobDetails {
    /// The job state, when the service sent one this project knows.
    pub fn job_state(&self) -> Option<JobState> {
        self.state.as_deref().and_then(JobState::parse)
    }

    /// The drives (empty when none were sent).
    pub fn drives(&self) -> &[DriveStatus] {
        self.drive_list.as_deref().unwrap_or_default()
    }
}

/// `ReturnAddress`: where the drives go back to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReturnAddress {
    pub recipient_name: String,
    pub street_address1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street_address2: Option<String>,
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_or_province: Option<String>,
    pub postal_code: String,
    pub country_or_region: String,
    pub phone: String,
    pub email: String,
}

/// `ReturnShipping`: the carrier and the customer's account with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReturnShipping {
    pub carrier_name: String,
    pub carrier_account_number: String,
}

/// `ShippingInformation`: the data centre's address the drives are shipped to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShippingInformation {
    pub recipient_name: String,
    pub street_address1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street_address2: Option<String>,
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_or_province: Option<String>,
    pub postal_code: String,
    pub country_or_region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_information: Option<String>,
}

/// `PackageInformation` / `DeliveryPackageInformation`: a package and its tracking number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageInformation {
    pub carrier_name: String,
    pub tracking_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ship_date: Option<String>,
}

/// `DriveStatus`: one drive of the job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriveStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive_id: Option<String>,
    /// The recovery password; sent on create, never answered (use List BitLocker Keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bit_locker_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_file: Option<String>,
    /// Base16 digest of the manifest file's bytes: MD5 (32 digits) per the specification's definition; see
    /// docs/api.md "classic vs Resource Manager" for the 64-digit value in one example.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive_header_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent_complete: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verbose_log_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_log_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_succeeded: Option<i64>,
}

impl DriveStatus {
    /// The drive state, when it is one this project knows.
    pub fn drive_state(&self) -> Option<DriveState> {
        let s = self.state.as_deref()?;
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

/// `EncryptionKeyDetails`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionKeyDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kek_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kek_url: Option<String>,
    #[serde(
        rename = "kekVaultResourceID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub kek_vault_resource_id: Option<String>,
}

/// `IdentityDetails`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityDetails {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub identity_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
}

/// Resource Manager's `systemData`: who created and last changed the resource, when.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified_by_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified_at: Option<String>,
}

/// `JobResponse`: a job as every job operation answers it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_data: Option<SystemData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<JobDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<serde_json::Map<String, serde_json::Value>>,
}

impl JobResponse {
    /// The properties, or empty ones when the answer had none.
    pub fn details(&self) -> JobDetails {
        self.properties.clone().unwrap_or_default()
    }
}

/// Body of Jobs_Update (`UpdateJobParameters`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateJobParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<UpdateJobProperties>,
}

/// The properties Jobs_Update may change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateJobProperties {
    /// If given, must be true: asks the service to cancel the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_requested: Option<bool>,
    /// If given and not empty, must be `Shipping`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_address: Option<ReturnAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_shipping: Option<ReturnShipping>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_package: Option<PackageInformation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_drive_manifest: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive_list: Option<Vec<DriveStatus>>,
}

/// `ListJobsResponse`: one page of jobs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListJobsResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
    #[serde(default)]
    pub value: Vec<JobResponse>,
}

/// `Location`: a data centre drives can be shipped to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArmLocation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<LocationProperties>,
    /// `/providers/Microsoft.ImportExport/locations/westus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The display name, e.g. `West US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
}

/// The properties of a [`ArmLocation`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocationProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street_address1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street_address2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_or_province: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_or_region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_shipping_information: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported_carriers: Option<Vec<String>>,
    /// Location resource ids (`/providers/Microsoft.ImportExport/locations/westus`), the location itself when open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternate_locations: Option<Vec<String>>,
}

/// `LocationsResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocationsResponse {
    #[serde(default)]
    pub value: Vec<ArmLocation>,
}

/// `DriveBitLockerKey`: the recovery password of one drive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriveBitLockerKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bit_locker_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive_id: Option<String>,
}

/// `GetBitLockerKeysResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetBitLockerKeysResponse {
    #[serde(default)]
    pub value: Vec<DriveBitLockerKey>,
}

/// `ErrorResponse`: `{"error": {"code", "message", "target", "details"}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorResponse {
    pub error: ErrorInfo,
}

/// The `error` object of an [`ErrorResponse`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorInfo {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorDetail>,
}

/// One entry of [`ErrorInfo::details`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    #[serde(default)]
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default)]
    pub message: String,
}

/// A parsed storage-account resource id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageAccountId {
    pub subscription: String,
    pub resource_group: String,
    /// `Microsoft.Storage` or `Microsoft.ClassicStorage`.
    pub provider: String,
    pub name: String,
}

impl StorageAccountId {
    /// The id of a `Microsoft.Storage` account.
    pub fn new(subscription: &str, resource_group: &str, name: &str) -> Self {
        StorageAccountId {
            subscription: subscription.to_string(),
            resource_group: resource_group.to_string(),
            provider: "Microsoft.Storage".into(),
            name: name.to_string(),
        }
    }

    /// Parses `/subscriptions/S/resourceGroups/G/providers/Microsoft.Storage/storageAccounts/N` (also
    /// `Microsoft.ClassicStorage`); segment names are matched without regard to case, as Resource Manager does.
    pub fn parse(id: &str) -> Result<Self, String> {
        let segs: Vec<&str> = id.trim_start_matches('/').split('/').collect();
        let word = |i: usize, w: &str| segs.get(i).is_some_and(|s| s.eq_ignore_ascii_case(w));
        let provider_ok = segs.get(5).is_some_and(|p| {
            p.eq_ignore_ascii_case("Microsoft.Storage") || p.eq_ignore_ascii_case("Microsoft.ClassicStorage")
        });
        if !id.starts_with('/')
            || segs.len() != 8
            || !word(0, "subscriptions")
            || !word(2, "resourceGroups")
            || !word(4, "providers")
            || !provider_ok
            || !word(6, "storageAccounts")
            || segs.iter().any(|s| s.is_empty())
        {
            return Err(format!(
                "'{id}' is not a storage account resource id; expected /subscriptions/SUBSCRIPTION/resourceGroups/GROUP/providers/Microsoft.Storage/storageAccounts/NAME"
            ));
        }
        Ok(StorageAccountId {
            subscription: segs[1].to_string(),
            resource_group: segs[3].to_string(),
            provider: segs[5].to_string(),
            name: segs[7].to_string(),
        })
    }
}

impl std::fmt::Display for StorageAccountId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "/subscriptions/{}/resourceGroups/{}/providers/{}/storageAccounts/{}",
            self.subscription, self.resource_group, self.provider, self.name
        )
    }
}

/// The resource id of a location from its name: `West US` -> `/providers/Microsoft.ImportExport/locations/westus`.
pub fn location_id(name: &str) -> String {
    format!(
        "/providers/Microsoft.ImportExport/locations/{}",
        location_short_name(name)
    )
}

/// A location's short name: lower case without spaces (`West US` -> `westus`).
pub fn location_short_name(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_account_ids_round_trip_and_bad_ones_are_named() {
        let id = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct";
        let p = StorageAccountId::parse(id).unwrap();
        assert_eq!(
            (
                p.subscription.as_str(),
                p.resource_group.as_str(),
                p.name.as_str()
            ),
            ("s1", "rg", "acct")
        );
        assert_eq!(p.to_string(), id);
        let classic =
            "/subscriptions/x/resourceGroups/g/providers/Microsoft.ClassicStorage/storageAccounts/test";
        assert_eq!(StorageAccountId::parse(classic).unwrap().name, "test");
        for bad in [
            "acct",
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/storageAccounts/a",
            "/subscriptions/s1/resourceGroups//providers/Microsoft.Storage/storageAccounts/a",
        ] {
            let e = StorageAccountId::parse(bad).unwrap_err();
            assert!(e.contains(bad) && e.contains("storageAccounts/NAME"), "{e}");
        }
    }

    #[test]
    fn location_ids_use_the_short_name() {
        assert_eq!(
            location_id("West US"),
            "/providers/Microsoft.ImportExport/locations/westus"
        );
        assert_eq!(location_short_name("Australia Southeast"), "australiasoutheast");
    }

    #[test]
    fn update_with_empty_state_keeps_the_empty_string() {
        let u = UpdateJobParameters {
            tags: None,
            properties: Some(UpdateJobProperties {
                state: Some(String::new()),
                ..Default::default()
            }),
        };
        assert_eq!(
            serde_json::to_string(&u).unwrap(),
            r#"{"properties":{"state":""}}"#
        );
    }
}
