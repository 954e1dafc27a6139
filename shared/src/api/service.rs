//! One import service, two APIs: [`ImportService`] creates, reads, updates and deletes an import job and
//! lists locations through either the classic API ([`BlockingApiClient`]) or Resource Manager
//! ([`BlockingArmClient`]), in the classic types ([`Job`], [`Location`], [`JobUpdate`]) the callers already
//! use, so diskprep and the agent have no `if arm` of their own. Every failure is an [`ImportError`] that keeps
//! the message of the API that failed.
//!
//! Resource Manager answers are turned into the classic view here: `storageAccountId` gives the account name,
//! location ids in `alternateLocations` become location names (so seed 000's [`choose_location`] applies
//! unchanged), drive and job states become the classic enums. A classic return address is one line; Resource
//! Manager wants its parts, read from `street, city, [state,] postal code, country`.

use super::arm::{
    self, ArmError, ArmLocation, BlockingArmClient, JobDetails, JobResponse, PutJobParameters,
    StorageAccountId, UpdateJobParameters, UpdateJobProperties,
};
use super::{
    choose_location, ApiError, BlockingApiClient, Drive, Job, JobProperties, JobType, JobUpdate, Location,
    LocationChoice, LocationError, Package, ReturnAddress, ReturnShipping,
};

/// A failure of either API, with that API's own message.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Classic(#[from] ApiError),
    #[error(transparent)]
    ResourceManager(#[from] ArmError),
    #[error(transparent)]
    Location(#[from] LocationError),
    /// A request the chosen API cannot express.
    #[error("{0}")]
    Unsupported(String),
}

impl ImportError {
    /// The HTTP status, when the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ImportError::Classic(e) => e.status(),
            ImportError::ResourceManager(e) => e.status(),
            _ => None,
        }
    }

    /// Whether the same call may succeed when tried again.
    pub fn is_retryable(&self) -> bool {
        match self {
            ImportError::Classic(e) => e.is_retryable(),
            ImportError::ResourceManager(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// Whether the failure may pass by waiting (service down or overloaded), see [`ApiError::may_pass`].
    pub fn may_pass(&self) -> bool {
        match self {
            ImportError::Classic(e) => e.may_pass(),
            ImportError::ResourceManager(ArmError::Transport { .. }) => true,
            ImportError::ResourceManager(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// The service of one job, through the API its descriptor chose.
#[derive(Debug)]
pub enum ImportService {
    Classic(BlockingApiClient),
    ResourceManager {
        client: BlockingArmClient,
        /// The job's storage account.
        account: StorageAccountId,
    },
}

impl ImportService {
    /// `classic` or `Resource Manager`, for messages.
    pub fn api_name(&self) -> &'static str {
        match self {
            ImportService::Classic(_) => "classic Import/Export API",
            ImportService::ResourceManager { .. } => "Resource Manager (Microsoft.ImportExport)",
        }
    }

    /// Whether creating a job needs the storage account's key or a SAS (classic only; Resource Manager
    /// names the account by its resource id and checks the caller's role instead).
    pub fn needs_storage_credential(&self) -> bool {
        matches!(self, ImportService::Classic(_))
    }

    /// Checks before any drive is written that a new job's return address is what the API needs: Resource
    /// Manager requires one at creation, in parts (classic takes it later, with `u:`).
    pub fn check_return_address(&self, a: Option<&ReturnAddress>) -> Result<(), ImportError> {
        match (self, a) {
            (ImportService::Classic(_), _) => Ok(()),
            (ImportService::ResourceManager { .. }, Some(a)) => arm_return_address(a).map(|_| ()),
            (ImportService::ResourceManager { .. }, None) => Err(ImportError::Unsupported(
                "Resource Manager needs the return address when the job is created: give --return-name, \
                 --return-address 'street, city, [state,] postal code, country', --return-phone and \
                 --return-email"
                    .into(),
            )),
        }
    }

    /// The locations, all of them or (classic) those seen from `origin`.
    pub fn list_locations(&self, origin: Option<&str>) -> Result<Vec<Location>, ImportError> {
        match self {
            ImportService::Classic(c) => Ok(c.list_locations(origin)?),
            ImportService::ResourceManager { client, .. } => {
                let all = client.list_locations()?;
                Ok(all.iter().map(|l| classic_location(l, &all)).collect())
            }
        }
    }

    /// Seed 000's rule: the location to ship to for the storage account's region `origin`.
    pub fn resolve_location(&self, origin: &str) -> Result<(LocationChoice, Location), ImportError> {
        match self {
            ImportService::Classic(c) => Ok(c.resolve_location(origin)?),
            ImportService::ResourceManager { .. } => {
                let all = self.list_locations(None)?;
                let wanted = arm::location_short_name(origin);
                let origin = all
                    .iter()
                    .find(|l| arm::location_short_name(&l.name) == wanted)
                    .map_or(origin, |l| l.name.as_str());
                let choice = choose_location(origin, &all)?;
                let loc = all
                    .iter()
                    .find(|l| l.name.eq_ignore_ascii_case(choice.name()))
                    .cloned()
                    .ok_or_else(|| LocationError::Unknown(choice.name().to_string()))?;
                Ok((choice, loc))
            }
        }
    }

    /// Creates the job (classic Put Job, Resource Manager Jobs_Create).
    pub fn put_job(&self, account: &str, job: &Job) -> Result<(), ImportError> {
        match self {
            ImportService::Classic(c) => Ok(c.put_job(account, job)?),
            ImportService::ResourceManager { client, account } => {
                let params = arm_put(job, account)?;
                client.create_job(&job.name, &params)?;
                Ok(())
            }
        }
    }

    /// Reads the job.
    pub fn get_job(&self, account: &str, name: &str) -> Result<Job, ImportError> {
        match self {
            ImportService::Classic(c) => Ok(c.get_job(account, name)?),
            ImportService::ResourceManager { client, .. } => {
                let mut job = classic_job(&client.get_job(name)?);
                // Resource Manager's shippingInformation has no carriers: take the location's
                if let Some(ship) = job.properties.shipping_information.as_mut() {
                    let short = arm::location_short_name(&ship.name);
                    let all = self.list_locations(None)?;
                    if let Some(l) = all.iter().find(|l| arm::location_short_name(&l.name) == short) {
                        ship.name = l.name.clone();
                        ship.supported_carriers = l.supported_carriers.clone();
                    }
                }
                Ok(job)
            }
        }
    }

    /// Changes the job (shipping details, state `Shipping`, cancellation).
    pub fn update_job(&self, account: &str, name: &str, update: &JobUpdate) -> Result<(), ImportError> {
        match self {
            ImportService::Classic(c) => Ok(c.update_job(account, name, update)?),
            ImportService::ResourceManager { client, .. } => {
                client.update_job(name, &arm_update(update)?)?;
                Ok(())
            }
        }
    }

    /// Deletes the job.
    pub fn delete_job(&self, account: &str, name: &str) -> Result<(), ImportError> {
        match self {
            ImportService::Classic(c) => Ok(c.delete_job(account, name)?),
            ImportService::ResourceManager { client, .. } => Ok(client.delete_job(name)?),
        }
    }
}

/// A Resource Manager location in the classic shape; alternate location ids become names found in `all`.
pub fn classic_location(l: &ArmLocation, all: &[ArmLocation]) -> Location {
    let p = l.properties.clone().unwrap_or_default();
    let name_of = |id: &str| {
        let short = id.rsplit('/').next().unwrap_or(id);
        all.iter()
            .find(|o| {
                o.id.as_deref().is_some_and(|oid| oid.eq_ignore_ascii_case(id))
                    || o.name
                        .as_deref()
                        .is_some_and(|n| arm::location_short_name(n) == arm::location_short_name(short))
            })
            .and_then(|o| o.name.clone())
            .unwrap_or_else(|| short.to_string())
    };
    Location {
        name: l.name.clone().unwrap_or_default(),
        recipient_name: p.recipient_name.unwrap_or_default(),
        street_address1: p.street_address1.unwrap_or_default(),
        street_address2: p.street_address2.unwrap_or_default(),
        city: p.city.unwrap_or_default(),
        state_or_province: p.state_or_province.unwrap_or_default(),
        postal_code: p.postal_code.unwrap_or_default(),
        country_or_region: p.country_or_region.unwrap_or_default(),
        supported_carriers: p.supported_carriers.unwrap_or_default(),
        alternate_locations: p
            .alternate_locations
            .map(|alts| alts.iter().map(|a| name_of(a)).collect()),
        ..Default::default()
    }
}

/// A Resource Manager package in the classic shape.
pub fn classic_package(p: &arm::PackageInformation) -> Package {
    Package {
        carrier_name: p.carrier_name.clone(),
        tracking_number: p.tracking_number.clone(),
        drive_count: p.drive_count.and_then(|n| u32::try_from(n).ok()),
        ship_date: p.ship_date.clone(),
    }
}

/// A classic package in the Resource Manager shape.
pub fn arm_package(p: &Package) -> arm::PackageInformation {
    arm::PackageInformation {
        carrier_name: p.carrier_name.clone(),
        tracking_number: p.tracking_number.clone(),
        drive_count: p.drive_count.map(i64::from),
        ship_date: p.ship_date.clone(),
    }
}

/// A Resource Manager job in the classic shape (what the callers read: state, location, drives and their
/// states and logs, shipping information, packages).
pub fn classic_job(r: &JobResponse) -> Job {
    let d: JobDetails = r.details();
    let drives: Vec<Drive> = d
        .drives()
        .iter()
        .map(|x| Drive {
            drive_id: x.drive_id.clone().unwrap_or_default(),
            manifest_file: x.manifest_file.clone(),
            manifest_hash: x.manifest_hash.clone(),
            state: x.drive_state(),
            copy_status: x.copy_status.clone(),
            percent_complete: x.percent_complete.and_then(|p| u8::try_from(p).ok()),
            bytes_succeeded: x.bytes_succeeded.and_then(|b| u64::try_from(b).ok()),
            verbose_log_uri: x.verbose_log_uri.clone(),
            error_log_uri: x.error_log_uri.clone(),
            manifest_uri: x.manifest_uri.clone(),
            ..Default::default()
        })
        .collect();
    let ship = d.shipping_information.as_ref().map(|s| Location {
        name: r.location.clone().unwrap_or_default(),
        recipient_name: s.recipient_name.clone(),
        street_address1: s.street_address1.clone(),
        street_address2: s.street_address2.clone().unwrap_or_default(),
        city: s.city.clone(),
        state_or_province: s.state_or_province.clone().unwrap_or_default(),
        postal_code: s.postal_code.clone(),
        country_or_region: s.country_or_region.clone(),
        ..Default::default()
    });
    Job {
        name: r.name.clone().unwrap_or_default(),
        properties: JobProperties {
            storage_account_name: d
                .storage_account_id
                .as_deref()
                .and_then(|id| StorageAccountId::parse(id).ok())
                .map(|a| a.name),
            location: r.location.clone(),
            job_type: match d.job_type.as_deref() {
                Some("Export") => Some(JobType::Export),
                Some(_) => Some(JobType::Import),
                None => None,
            },
            state: d.job_state(),
            cancel_requested: d.cancel_requested,
            percent_complete: d.percent_complete.and_then(|p| u8::try_from(p).ok()),
            shipping_information: ship,
            delivery_package: d.delivery_package.as_ref().map(classic_package),
            return_package: d.return_package.as_ref().map(classic_package),
            return_shipping: d.return_shipping.as_ref().map(|s| ReturnShipping {
                carrier_name: s.carrier_name.clone(),
                carrier_account_number: s.carrier_account_number.clone(),
            }),
            import_export_states_path: d.diagnostics_path.clone(),
            backup_drive_manifest: d.backup_drive_manifest,
            enable_verbose_log: d.log_level.as_deref().map(|l| l.eq_ignore_ascii_case("Verbose")),
            incomplete_blob_list_uri: d.incomplete_blob_list_uri.clone(),
            ..Default::default()
        },
        drive_list: Some(drives),
        ..Default::default()
    }
}

/// A one-line return address (`street, city, [state,] postal code, country`) in Resource Manager's parts.
pub fn arm_return_address(a: &ReturnAddress) -> Result<arm::ReturnAddress, ImportError> {
    let parts: Vec<&str> = a
        .address
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if parts.len() < 4 {
        return Err(ImportError::Unsupported(format!(
            "the return address '{}' has too few parts for Resource Manager: write it as \
             'street, city, [state,] postal code, country' (--return-address)",
            a.address
        )));
    }
    let n = parts.len();
    Ok(arm::ReturnAddress {
        recipient_name: a.name.clone(),
        street_address1: parts[0].to_string(),
        street_address2: None,
        city: parts[1].to_string(),
        state_or_province: (n >= 5).then(|| parts[2..n - 2].join(", ")),
        postal_code: parts[n - 2].to_string(),
        country_or_region: parts[n - 1].to_string(),
        phone: a.phone.clone(),
        email: a.email.clone(),
    })
}

fn arm_shipping(s: &ReturnShipping) -> arm::ReturnShipping {
    arm::ReturnShipping {
        carrier_name: s.carrier_name.clone(),
        carrier_account_number: s.carrier_account_number.clone(),
    }
}

/// The Jobs_Create body of a classic Put Job body, for the storage account `account` (no key: Resource
/// Manager checks the caller's role on the account).
pub fn arm_put(job: &Job, account: &StorageAccountId) -> Result<PutJobParameters, ImportError> {
    let p = &job.properties;
    if p.job_type == Some(JobType::Export) {
        return Err(ImportError::Unsupported("export jobs are not supported".into()));
    }
    let drives = job
        .drives()
        .iter()
        .map(|x| arm::DriveStatus {
            drive_id: Some(x.drive_id.clone()),
            bit_locker_key: x.bit_locker_key.clone(),
            manifest_file: x.manifest_file.clone(),
            manifest_hash: x.manifest_hash.clone(),
            ..Default::default()
        })
        .collect();
    Ok(PutJobParameters {
        location: p.location.clone(),
        tags: None,
        properties: Some(JobDetails {
            storage_account_id: Some(account.to_string()),
            job_type: Some("Import".into()),
            return_address: p.return_address.as_ref().map(arm_return_address).transpose()?,
            return_shipping: p.return_shipping.as_ref().map(arm_shipping),
            diagnostics_path: p.import_export_states_path.clone(),
            log_level: p
                .enable_verbose_log
                .map(|v| if v { "Verbose" } else { "Error" }.to_string()),
            backup_drive_manifest: p.backup_drive_manifest,
            drive_list: Some(drives),
            ..Default::default()
        }),
    })
}

/// The Jobs_Update body of a classic Update Job Properties body.
pub fn arm_update(u: &JobUpdate) -> Result<UpdateJobParameters, ImportError> {
    let p = &u.properties;
    Ok(UpdateJobParameters {
        tags: None,
        properties: Some(UpdateJobProperties {
            cancel_requested: p.cancel_requested,
            state: p.state.map(|s| s.as_str().to_string()),
            return_address: p.return_address.as_ref().map(arm_return_address).transpose()?,
            return_shipping: p.return_shipping.as_ref().map(arm_shipping),
            delivery_package: p.delivery_package.as_ref().map(arm_package),
            log_level: p
                .enable_verbose_log
                .map(|v| if v { "Verbose" } else { "Error" }.to_string()),
            backup_drive_manifest: p.backup_drive_manifest,
            drive_list: None,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::arm::LocationProperties;

    fn loc(name: &str, alts: &[&str]) -> ArmLocation {
        ArmLocation {
            id: Some(arm::location_id(name)),
            name: Some(name.into()),
            properties: Some(LocationProperties {
                alternate_locations: Some(alts.iter().map(|a| arm::location_id(a)).collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn alternate_location_ids_become_names_and_seed_000_applies() {
        let all = vec![loc("West US", &["East US"]), loc("East US", &["East US"])];
        let classic: Vec<Location> = all.iter().map(|l| classic_location(l, &all)).collect();
        assert_eq!(classic[0].alternate_locations, Some(vec!["East US".to_string()]));
        let c = choose_location("west us", &classic).unwrap();
        assert_eq!(c.name(), "East US");
    }

    #[test]
    fn return_addresses_split_into_parts_or_are_refused_by_name() {
        let a = ReturnAddress {
            name: "Ops".into(),
            address: "1 Main St, Redmond, WA, 98052, USA".into(),
            phone: "1".into(),
            email: "a@b".into(),
        };
        let r = arm_return_address(&a).unwrap();
        assert_eq!(
            (
                r.city.as_str(),
                r.state_or_province.as_deref(),
                r.postal_code.as_str()
            ),
            ("Redmond", Some("WA"), "98052")
        );
        let short = ReturnAddress {
            address: "1 Main St".into(),
            ..a
        };
        let e = arm_return_address(&short).unwrap_err().to_string();
        assert!(e.contains("--return-address") && e.contains("1 Main St"), "{e}");
    }

    #[test]
    fn put_and_get_round_trip_through_the_classic_view() {
        let acct = StorageAccountId::new("sub", "rg", "acct");
        let job = Job {
            name: "job1".into(),
            properties: JobProperties {
                location: Some("West US".into()),
                job_type: Some(JobType::Import),
                storage_account_key: Some("secret".into()),
                ..Default::default()
            },
            drive_list: Some(vec![Drive {
                drive_id: "D1".into(),
                bit_locker_key: Some("k".into()),
                manifest_hash: Some("AB".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let put = arm_put(&job, &acct).unwrap();
        let body = serde_json::to_string(&put).unwrap();
        assert!(
            !body.contains("secret"),
            "no account key through Resource Manager: {body}"
        );
        assert!(body.contains("storageAccounts/acct"), "{body}");
        let answer = JobResponse {
            name: Some("job1".into()),
            location: Some("West US".into()),
            properties: Some(JobDetails {
                state: Some("Shipping".into()),
                ..put.properties.clone().unwrap()
            }),
            ..Default::default()
        };
        let back = classic_job(&answer);
        assert_eq!(back.properties.storage_account_name.as_deref(), Some("acct"));
        assert_eq!(back.properties.state, Some(super::super::JobState::Shipping));
        assert_eq!(back.drives()[0].drive_id, "D1");
        assert!(back.drives()[0].bit_locker_key.is_none());
    }
}
