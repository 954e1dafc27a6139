//! The OData JSON-light bodies of the classic Import/Export API, as serde types with the service's PascalCase
//! names (docs/importexport-reference.md section 1, seed 001 for locations, docs/api.md for the names this
//! project chose where the classic documentation is silent).
//!
//! One set of types serves both sides: the client sends and decodes them, the emulator decodes requests and
//! renders responses with them. Every optional field is skipped when absent so a request carries only what the
//! caller set. Secrets (`StorageAccountKey`, `ContainerSas`, `BitLockerKey`) are never shown by `Debug`.

use serde::{Deserialize, Serialize};

/// The OData type name of a location entry.
pub const LOCATION_TYPE: &str = "Microsoft.Cis.Services.ImportExport.Public.Location";
/// The OData type name of a job.
pub const JOB_TYPE: &str = "Microsoft.Cis.Services.ImportExport.Public.Job";

/// One shipping location (a data-centre region) as List Locations returns it (seed 001).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Location {
    #[serde(rename = "odata.type", skip_serializing_if = "Option::is_none", default)]
    pub odata_type: Option<String>,
    #[serde(rename = "odata.id", skip_serializing_if = "Option::is_none", default)]
    pub odata_id: Option<String>,
    #[serde(rename = "odata.editLink", skip_serializing_if = "Option::is_none", default)]
    pub odata_edit_link: Option<String>,
    pub name: String,
    #[serde(default)]
    pub recipient_name: String,
    #[serde(default)]
    pub street_address1: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub street_address2: String,
    #[serde(default)]
    pub city: String,
    #[serde(default)]
    pub state_or_province: String,
    #[serde(default)]
    pub postal_code: String,
    #[serde(default)]
    pub country_or_region: String,
    #[serde(default)]
    pub supported_carriers: Vec<String>,
    /// Where to ship instead (seed 000). Absent means "open": the location serves itself; the emulator omits
    /// the property when it would contain only the location itself, so seed 001's sample body stays exact.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub alternate_locations: Option<Vec<String>>,
}

impl Location {
    /// Whether this location accepts drives itself: its AlternateLocations are absent or contain its own name.
    pub fn is_open(&self) -> bool {
        match &self.alternate_locations {
            None => true,
            Some(alts) => alts.iter().any(|a| a.eq_ignore_ascii_case(&self.name)),
        }
    }

    /// The address lines to print on the parcel.
    pub fn address_lines(&self) -> Vec<String> {
        let mut lines = vec![self.recipient_name.clone(), self.street_address1.clone()];
        if !self.street_address2.is_empty() {
            lines.push(self.street_address2.clone());
        }
        lines.push(format!(
            "{}, {} {}",
            self.city, self.state_or_province, self.postal_code
        ));
        lines.push(self.country_or_region.clone());
        lines
    }
}

/// An OData collection: `{"odata.metadata":..,"odata.count":"n","value":[..]}`. `odata.count` is a string in
/// the service's sample; both a string and a number are accepted when decoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ODataList<T> {
    #[serde(rename = "odata.metadata", skip_serializing_if = "Option::is_none", default)]
    pub metadata: Option<String>,
    #[serde(rename = "odata.count", skip_serializing_if = "Option::is_none", default)]
    pub count: Option<serde_json::Value>,
    pub value: Vec<T>,
}

/// Job type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobType {
    Import,
    Export,
}

/// Job states (reference section 1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobState {
    Creating,
    Shipping,
    Received,
    Transferring,
    Packaging,
    Completed,
    Closed,
    Faulted,
}

impl JobState {
    /// All states, for parsing.
    pub const ALL: [JobState; 8] = [
        JobState::Creating,
        JobState::Shipping,
        JobState::Received,
        JobState::Transferring,
        JobState::Packaging,
        JobState::Completed,
        JobState::Closed,
        JobState::Faulted,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Creating => "Creating",
            JobState::Shipping => "Shipping",
            JobState::Received => "Received",
            JobState::Transferring => "Transferring",
            JobState::Packaging => "Packaging",
            JobState::Completed => "Completed",
            JobState::Closed => "Closed",
            JobState::Faulted => "Faulted",
        }
    }

    /// Parses a wire name (exact case).
    pub fn parse(s: &str) -> Option<JobState> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Finished states (`Completed`, `Closed`): no longer count as active, deleted 90 days later.
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Completed | JobState::Closed)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Drive states (reference section 1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DriveState {
    Specified,
    Received,
    NeverReceived,
    Transferring,
    Completed,
    CompletedMoreInfo,
    ShippedBack,
    Faulted,
}

/// Where the drives go back to. All four members are required when present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ReturnAddress {
    pub name: String,
    pub address: String,
    pub phone: String,
    pub email: String,
}

/// The customer's carrier account for the return parcel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ReturnShipping {
    pub carrier_name: String,
    pub carrier_account_number: String,
}

/// The parcel the customer sent (Update Job Properties) or the service sent back (`ReturnPackage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Package {
    pub carrier_name: String,
    pub tracking_number: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub drive_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ship_date: Option<String>,
}

/// One drive of a job: what Put Job sends, plus the fields Get Job adds.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Drive {
    pub drive_id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bit_locker_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub manifest_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub manifest_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub state: Option<DriveState>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub copy_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub percent_complete: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bytes_succeeded: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub verbose_log_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error_log_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub manifest_uri: Option<String>,
}

impl std::fmt::Debug for Drive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drive")
            .field("drive_id", &self.drive_id)
            .field(
                "bit_locker_key",
                &self.bit_locker_key.as_ref().map(|_| "<redacted>"),
            )
            .field("manifest_file", &self.manifest_file)
            .field("manifest_hash", &self.manifest_hash)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// The `Properties` of a job: what Put Job sends, plus the server-filled fields Get Job adds.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct JobProperties {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub storage_account_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub storage_account_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub container_sas: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub location: Option<String>,
    #[serde(rename = "Type", skip_serializing_if = "Option::is_none", default)]
    pub job_type: Option<JobType>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub friendly_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub metadata: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub return_address: Option<ReturnAddress>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub return_shipping: Option<ReturnShipping>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub import_export_states_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub enable_verbose_log: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub backup_drive_manifest: Option<bool>,
    /// Accepted here too on Put Job (the reference's schema template); the sample puts it at the top level.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub drive_list: Option<Vec<Drive>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub state: Option<JobState>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cancel_requested: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub percent_complete: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub shipping_information: Option<Location>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub delivery_package: Option<Package>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub return_package: Option<Package>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub incomplete_blob_list_uri: Option<String>,
}

impl std::fmt::Debug for JobProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobProperties")
            .field("storage_account_name", &self.storage_account_name)
            .field(
                "storage_account_key",
                &self.storage_account_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "container_sas",
                &self.container_sas.as_ref().map(|_| "<redacted>"),
            )
            .field("location", &self.location)
            .field("job_type", &self.job_type)
            .field("state", &self.state)
            .field("return_address", &self.return_address)
            .field("delivery_package", &self.delivery_package)
            .field("drive_list", &self.drive_list)
            .finish_non_exhaustive()
    }
}

/// A job: the Put Job request body and the Get Job response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Job {
    #[serde(rename = "odata.type", skip_serializing_if = "Option::is_none", default)]
    pub odata_type: Option<String>,
    #[serde(rename = "odata.id", skip_serializing_if = "Option::is_none", default)]
    pub odata_id: Option<String>,
    #[serde(rename = "odata.editLink", skip_serializing_if = "Option::is_none", default)]
    pub odata_edit_link: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub properties: JobProperties,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub drive_list: Option<Vec<Drive>>,
}

impl Job {
    /// The drives, wherever the body put them (top level first, then inside `Properties`).
    pub fn drives(&self) -> &[Drive] {
        match (&self.drive_list, &self.properties.drive_list) {
            (Some(top), _) if !top.is_empty() => top,
            (_, Some(inner)) => inner,
            (Some(top), None) => top,
            (None, None) => &[],
        }
    }
}

/// What Update Job Properties may change (reference section 1.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct JobUpdateProperties {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub friendly_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub metadata: Option<String>,
    /// Only `Shipping` is allowed, and only while the job is `Creating`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub state: Option<JobState>,
    /// Only `true` is allowed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cancel_requested: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub return_address: Option<ReturnAddress>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub return_shipping: Option<ReturnShipping>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub delivery_package: Option<Package>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub enable_verbose_log: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub backup_drive_manifest: Option<bool>,
}

/// The Update Job Properties body: the job envelope with only `Properties`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct JobUpdate {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    #[serde(default)]
    pub properties: JobUpdateProperties,
}

/// One row of List Jobs: name, type, state and storage account (reference section 1.2, source "ENUM").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JobSummary {
    #[serde(rename = "odata.id", skip_serializing_if = "Option::is_none", default)]
    pub odata_id: Option<String>,
    #[serde(rename = "odata.editLink", skip_serializing_if = "Option::is_none", default)]
    pub odata_edit_link: Option<String>,
    pub name: String,
    #[serde(rename = "Type")]
    pub job_type: JobType,
    pub state: JobState,
    pub storage_account_name: String,
}

/// The `odata.error` body every failed operation returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ODataErrorBody {
    #[serde(rename = "odata.error")]
    pub error: ODataError,
}

/// The inside of `odata.error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ODataError {
    pub code: String,
    pub message: ODataMessage,
    #[serde(rename = "azure.values", default, skip_serializing_if = "Vec::is_empty")]
    pub azure_values: Vec<AzureValue>,
}

/// `{"lang":"en-US","value":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ODataMessage {
    pub lang: String,
    pub value: String,
}

/// One entry of `azure.values`: `{"ExtendedCode":..}` or `{"ExtendedInformation":..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AzureValue {
    ExtendedCode(String),
    ExtendedInformation(String),
}

impl ODataErrorBody {
    /// Builds an error body for `status` with a predefined `extended_code` and a message.
    pub fn new(status: u16, extended_code: &str, message: impl Into<String>) -> Self {
        ODataErrorBody {
            error: ODataError {
                code: status.to_string(),
                message: ODataMessage {
                    lang: "en-US".into(),
                    value: message.into(),
                },
                azure_values: vec![AzureValue::ExtendedCode(extended_code.into())],
            },
        }
    }

    /// The `ExtendedCode`, if any.
    pub fn extended_code(&self) -> Option<&str> {
        self.error.azure_values.iter().find_map(|v| match v {
            AzureValue::ExtendedCode(c) => Some(c.as_str()),
            AzureValue::ExtendedInformation(_) => None,
        })
    }

    /// The `ExtendedInformation`, if any.
    pub fn extended_information(&self) -> Option<&str> {
        self.error.azure_values.iter().find_map(|v| match v {
            AzureValue::ExtendedInformation(c) => Some(c.as_str()),
            AzureValue::ExtendedCode(_) => None,
        })
    }
}

/// Serialises like `serde_json::to_vec` but escapes `/` as `\/`, as the service does (seed 001's sample body).
/// A `/` can only occur inside JSON strings, so the replacement cannot change the structure.
pub fn to_service_json<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let plain = serde_json::to_vec(value)?;
    let mut out = Vec::with_capacity(plain.len() + plain.len() / 16);
    for b in plain {
        if b == b'/' {
            out.push(b'\\');
        }
        out.push(b);
    }
    Ok(out)
}
