//! Request validation as the classic service documents it (reference sections 1.1, 1.3, 1.4, 1.6): headers
//! (`x-ms-version`, Accept / `$format`, Content-Type, Content-Length...), job and account names, the drive
//! fields of Put Job, and which Update Job Properties changes each job state allows. Every rule yields a
//! [`Rejection`]: the HTTP status, the `ExtendedCode` (this project's list, docs/api.md) and a message.

use hyper::{HeaderMap, Method};
use seedship_shared::api::{
    Drive, Job, JobState, JobType, JobUpdate, Location, ReturnAddress, ReturnShipping,
};

/// The `x-ms-version` values the service accepts.
pub const API_VERSIONS: [&str; 2] = ["2014-05-01", "2014-11-01"];
/// At most this many drives per job.
pub const MAX_DRIVES: usize = 10;
/// At most this many active (not Completed/Closed) jobs per subscription.
pub const MAX_ACTIVE_JOBS: usize = 20;
/// Longest accepted job name (the documentation gives none; docs/api.md records this choice).
pub const MAX_JOB_NAME: usize = 64;

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Rejection {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            status,
            code,
            message: message.into(),
        }
    }
}

fn bad(code: &'static str, message: impl Into<String>) -> Rejection {
    Rejection::new(400, code, message)
}

/// How much OData metadata the caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metadata {
    None,
    Minimal,
    Full,
}

impl Metadata {
    /// The value for the `odata=` parameter of Content-Type.
    pub fn as_str(self) -> &'static str {
        match self {
            Metadata::None => "nometadata",
            Metadata::Minimal => "minimalmetadata",
            Metadata::Full => "fullmetadata",
        }
    }
}

/// What the headers settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub version: String,
    pub metadata: Metadata,
}

/// Checks the common request headers. `format` is the `$format` query value, which overrides Accept.
pub fn check_headers(
    method: &Method,
    headers: &HeaderMap,
    format: Option<&str>,
) -> Result<Negotiated, Rejection> {
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}").trim());
    let version = match header("x-ms-version") {
        None => {
            return Err(bad(
                "MissingOrIncorrectVersionHeader",
                "The x-ms-version header is required; use 2014-05-01 or 2014-11-01.",
            ))
        }
        Some(v) if !API_VERSIONS.contains(&v) => {
            return Err(bad(
                "MissingOrIncorrectVersionHeader",
                format!("The x-ms-version value '{v}' is not supported; use 2014-05-01 or 2014-11-01."),
            ))
        }
        Some(v) => v.to_string(),
    };
    let metadata = match format.or(header("accept")) {
        None => Metadata::Minimal,
        Some(accept) => negotiate(accept).ok_or_else(|| {
            Rejection::new(
                406,
                "NotAcceptable",
                format!("Accept/$format '{accept}' is not supported; use application/json[;odata=minimalmetadata|nometadata|fullmetadata]."),
            )
        })?,
    };
    if let Some(ct) = header("content-type") {
        if !media_type(ct).eq_ignore_ascii_case("application/json") {
            return Err(Rejection::new(
                406,
                "UnsupportedContentType",
                format!("Content-Type '{ct}' is not supported; use application/json."),
            ));
        }
    }
    check_body_headers(method, &header)?;
    if let Some(lang) = header("accept-language") {
        if !["en", "en-us"].iter().any(|l| l.eq_ignore_ascii_case(lang)) {
            return Err(bad(
                "UnsupportedLanguage",
                format!("Accept-Language '{lang}' is not supported; use en or en-us."),
            ));
        }
    }
    if let Some(date) = header("x-ms-date") {
        if httpdate::parse_http_date(date).is_err() {
            return Err(bad(
                "InvalidDateHeader",
                format!("x-ms-date '{date}' is not an RFC 1123 date."),
            ));
        }
    }
    check_conditionals(headers)?;
    Ok(Negotiated { version, metadata })
}

fn check_body_headers<'a>(
    method: &Method,
    header: &dyn Fn(&str) -> Option<&'a str>,
) -> Result<(), Rejection> {
    let has_body = *method == Method::PUT || *method == Method::PATCH;
    match header("content-length") {
        None if has_body => Err(Rejection::new(
            411,
            "MissingContentLength",
            "Content-Length is required on PUT and PATCH.",
        )),
        Some(len) if !has_body && len != "0" => Err(bad(
            "InvalidContentLength",
            format!("Content-Length must be 0 on {method}, not {len}."),
        )),
        _ => match header("content-encoding") {
            Some(enc) if !enc.eq_ignore_ascii_case("identity") => Err(bad(
                "UnsupportedContentEncoding",
                format!("Content-Encoding '{enc}' is not supported; use identity."),
            )),
            _ => Ok(()),
        },
    }
}

/// Only If-None-Match + If-Modified-Since or If-Match + If-Unmodified-Since may be combined.
fn check_conditionals(headers: &HeaderMap) -> Result<(), Rejection> {
    let names = [
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
    ];
    let present: Vec<&str> = names.into_iter().filter(|n| headers.contains_key(*n)).collect();
    let ok = matches!(
        present.as_slice(),
        [] | [_] | ["if-none-match", "if-modified-since"] | ["if-match", "if-unmodified-since"]
    );
    if ok {
        Ok(())
    } else {
        Err(bad(
            "InvalidConditionalHeaders",
            format!(
                "The conditional headers {} cannot be combined.",
                present.join(", ")
            ),
        ))
    }
}

/// The part of a media type before its parameters.
fn media_type(v: &str) -> &str {
    v.split(';').next().unwrap_or("").trim()
}

/// The metadata level of an Accept value, if it names application/json with a known `odata=` parameter.
fn negotiate(accept: &str) -> Option<Metadata> {
    accept.split(',').find_map(|item| {
        let mut parts = item.split(';').map(str::trim);
        if !parts.next()?.eq_ignore_ascii_case("application/json") {
            return None;
        }
        let mut level = Metadata::Minimal;
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            if k.trim().eq_ignore_ascii_case("odata") {
                level = match v.trim().to_ascii_lowercase().as_str() {
                    "minimalmetadata" => Metadata::Minimal,
                    "nometadata" | "nometatadata" => Metadata::None,
                    "fullmetadata" => Metadata::Full,
                    _ => return None,
                };
            }
        }
        Some(level)
    })
}

/// Job names: lowercase letters, digits, `-` and `_`, starting with a letter, at most [`MAX_JOB_NAME`].
pub fn job_name(name: &str) -> Result<(), Rejection> {
    let ok = name.len() <= MAX_JOB_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(bad(
            "InvalidJobName",
            format!("The job name '{name}' is invalid: use 1 to {MAX_JOB_NAME} lowercase letters, digits, '-' or '_', starting with a letter."),
        ))
    }
}

/// Storage account names: 3 to 24 lowercase letters and digits.
pub fn account_name(name: &str) -> Result<(), Rejection> {
    if (3..=24).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(bad(
            "InvalidStorageAccountName",
            format!(
                "The storage account name '{name}' is invalid: use 3 to 24 lowercase letters and digits."
            ),
        ))
    }
}

/// A BitLocker recovery password: 8 groups of 6 digits, each group a multiple of 11 below 11 * 65536.
pub fn bitlocker_key(key: &str) -> bool {
    let groups: Vec<&str> = key.split('-').collect();
    groups.len() == 8
        && groups.iter().all(|g| {
            g.len() == 6
                && g.bytes().all(|b| b.is_ascii_digit())
                && g.parse::<u32>().is_ok_and(|v| v % 11 == 0 && v / 11 < 65536)
        })
}

/// A manifest hash: 32 uppercase hex digits (Base16 MD5).
pub fn manifest_hash(hash: &str) -> bool {
    hash.len() == 32
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// A drive id: the hardware serial without spaces, 1 to 64 visible ASCII characters.
pub fn drive_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

fn drive(d: &Drive, seen: &mut Vec<String>) -> Result<(), Rejection> {
    let id = &d.drive_id;
    if !drive_id(id) {
        return Err(bad(
            "InvalidDriveId",
            format!(
                "The drive id '{id}' is invalid: use the serial number without spaces (1 to 64 characters)."
            ),
        ));
    }
    if seen.contains(id) {
        return Err(bad(
            "DuplicateDriveId",
            format!("The drive id '{id}' appears twice in DriveList."),
        ));
    }
    seen.push(id.clone());
    if !d.bit_locker_key.as_deref().is_some_and(bitlocker_key) {
        return Err(bad("InvalidBitLockerKey", format!("The BitLockerKey of drive '{id}' is missing or not 48 digits in 8 groups, each a multiple of 11 below 720896.")));
    }
    match d.manifest_file.as_deref() {
        Some(f) if !f.is_empty() && f.len() <= 1024 => {}
        _ => {
            return Err(bad(
                "InvalidManifestFile",
                format!("The ManifestFile of drive '{id}' is missing or longer than 1024 characters."),
            ))
        }
    }
    if !d.manifest_hash.as_deref().is_some_and(manifest_hash) {
        return Err(bad(
            "InvalidManifestHash",
            format!("The ManifestHash of drive '{id}' is missing or not 32 uppercase hexadecimal digits."),
        ));
    }
    Ok(())
}

/// The Put Job body rules. Returns the shipping location the job names.
pub fn new_job<'a>(
    job: &Job,
    name: &str,
    account: &str,
    version: &str,
    locations: &'a [Location],
) -> Result<&'a Location, Rejection> {
    if !job.name.is_empty() && job.name != name {
        return Err(bad(
            "JobNameMismatch",
            format!("The body names job '{}' but the URI names '{name}'.", job.name),
        ));
    }
    let p = &job.properties;
    if p.storage_account_name.as_deref().is_some_and(|a| a != account) {
        return Err(bad(
            "StorageAccountNameMismatch",
            format!("StorageAccountName differs from the account '{account}' in the URI."),
        ));
    }
    match (&p.storage_account_key, &p.container_sas) {
        (Some(_), None) => {}
        (None, Some(_)) if version != "2014-05-01" => {}
        (None, Some(_)) => {
            return Err(bad(
                "InvalidStorageCredentials",
                "ContainerSas needs x-ms-version 2014-11-01.",
            ))
        }
        _ => {
            return Err(bad(
                "InvalidStorageCredentials",
                "Give exactly one of StorageAccountKey and ContainerSas.",
            ))
        }
    }
    let loc_name = p
        .location
        .as_deref()
        .ok_or_else(|| bad("MissingLocation", "Properties.Location is required."))?;
    let location = locations
        .iter()
        .find(|l| l.name.eq_ignore_ascii_case(loc_name))
        .ok_or_else(|| {
            bad(
                "InvalidLocation",
                format!("Location '{loc_name}' is not an Import/Export location; see List Locations."),
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
    return_information(p.return_address.as_ref(), p.return_shipping.as_ref())?;
    let drives = job.drives();
    match p.job_type {
        None => {
            return Err(bad(
                "MissingJobType",
                "Properties.Type is required: Import or Export.",
            ))
        }
        Some(JobType::Import) if drives.is_empty() => {
            return Err(bad("MissingDriveList", "An import job needs a DriveList."))
        }
        Some(JobType::Export) if !drives.is_empty() => {
            return Err(bad("DriveListNotAllowed", "An export job takes no DriveList."))
        }
        _ => {}
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
    let mut seen = Vec::new();
    for d in drives {
        drive(d, &mut seen)?;
    }
    Ok(location)
}

fn state_conflict(what: &str, state: JobState) -> Rejection {
    Rejection::new(
        409,
        "InvalidJobState",
        format!("{what} cannot be changed while the job is {state}."),
    )
}

/// Checks an Update Job Properties request against the job's current state and what the job already holds
/// (`has_return_address`, `has_delivery_package`).
pub fn update(
    u: &JobUpdate,
    state: JobState,
    has_return_address: bool,
    has_delivery_package: bool,
) -> Result<(), Rejection> {
    use JobState::*;
    let p = &u.properties;
    if let Some(s) = p.state {
        if s != Shipping {
            return Err(bad(
                "InvalidStateValue",
                format!("State can only be set to Shipping, not {s}."),
            ));
        }
        if state != Creating {
            return Err(state_conflict("State", state));
        }
        if !(has_return_address || p.return_address.is_some())
            || !(has_delivery_package || p.delivery_package.is_some())
        {
            return Err(bad("MissingShippingInformation", "Setting State to Shipping needs ReturnAddress and DeliveryPackage (in this or an earlier request)."));
        }
    }
    if let Some(c) = p.cancel_requested {
        if !c {
            return Err(bad(
                "InvalidCancelValue",
                "CancelRequested can only be set to true.",
            ));
        }
        if !matches!(state, Creating | Shipping | Transferring) {
            return Err(state_conflict("CancelRequested", state));
        }
    }
    let until_packaging = matches!(state, Creating | Shipping | Received | Transferring);
    if !until_packaging
        && (p.return_address.is_some()
            || p.return_shipping.is_some()
            || p.enable_verbose_log.is_some()
            || p.backup_drive_manifest.is_some())
    {
        return Err(state_conflict(
            "ReturnAddress, ReturnShipping, EnableVerboseLog and BackupDriveManifest",
            state,
        ));
    }
    return_information(p.return_address.as_ref(), p.return_shipping.as_ref())?;
    if let Some(d) = &p.delivery_package {
        if !matches!(state, Creating | Shipping) {
            return Err(state_conflict("DeliveryPackage", state));
        }
        if d.carrier_name.trim().is_empty() || d.tracking_number.trim().is_empty() {
            return Err(bad(
                "InvalidDeliveryPackage",
                "DeliveryPackage needs CarrierName and TrackingNumber.",
            ));
        }
    }
    Ok(())
}

/// ReturnAddress and ReturnShipping, when given (Put Job and Update Job), must be complete.
fn return_information(
    address: Option<&ReturnAddress>,
    shipping: Option<&ReturnShipping>,
) -> Result<(), Rejection> {
    if let Some(a) = address {
        if [&a.name, &a.address, &a.phone, &a.email]
            .iter()
            .any(|f| f.trim().is_empty())
        {
            return Err(bad(
                "InvalidReturnAddress",
                "ReturnAddress needs Name, Address, Phone and Email.",
            ));
        }
    }
    if let Some(s) = shipping {
        if s.carrier_name.trim().is_empty() || s.carrier_account_number.trim().is_empty() {
            return Err(bad(
                "InvalidReturnShipping",
                "ReturnShipping needs CarrierName and CarrierAccountNumber.",
            ));
        }
    }
    Ok(())
}

/// Delete Job is allowed only in Creating and Completed.
pub fn delete(state: JobState) -> Result<(), Rejection> {
    if matches!(state, JobState::Creating | JobState::Completed) {
        Ok(())
    } else {
        Err(Rejection::new(
            409,
            "InvalidJobState",
            format!("A job can be deleted only while Creating or Completed; this one is {state}."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitlocker_keys() {
        assert!(bitlocker_key(
            "259358-100188-581471-154165-090552-296406-410091-426844"
        ));
        assert!(bitlocker_key(
            "000000-000000-000000-000000-000000-000000-000000-000000"
        ));
        // 720896 = 11 * 65536: too big
        assert!(!bitlocker_key(
            "720896-000000-000000-000000-000000-000000-000000-000000"
        ));
        assert!(!bitlocker_key(
            "259359-100188-581471-154165-090552-296406-410091-426844"
        ));
        assert!(!bitlocker_key("259358-100188-581471-154165-090552-296406-410091"));
        assert!(!bitlocker_key(
            "25935-8100188-581471-154165-090552-296406-410091-426844"
        ));
        assert!(!bitlocker_key(
            "+25935-100188-581471-154165-090552-296406-410091-426844"
        ));
    }

    #[test]
    fn names_and_hashes() {
        assert!(job_name("job-1_a").is_ok());
        for bad_name in ["", "1job", "Job", "job name", "j\u{e9}", &"a".repeat(65)] {
            assert_eq!(
                job_name(bad_name).unwrap_err().code,
                "InvalidJobName",
                "{bad_name}"
            );
        }
        assert!(manifest_hash("B306C4B34DAA0E99957A4B9C779D2FA2"));
        assert!(!manifest_hash("b306c4b34daa0e99957a4b9c779d2fa2"));
        assert!(!manifest_hash("B306C4B34DAA0E99957A4B9C779D2FA"));
        assert!(drive_id("1W0F9LV1") && !drive_id("1W0 F9") && !drive_id(""));
    }

    #[test]
    fn accept_negotiation() {
        assert_eq!(negotiate("application/json"), Some(Metadata::Minimal));
        assert_eq!(
            negotiate("application/json;odata=nometatadata"),
            Some(Metadata::None)
        );
        assert_eq!(
            negotiate("application/json; odata=fullmetadata"),
            Some(Metadata::Full)
        );
        assert_eq!(negotiate("application/xml"), None);
        assert_eq!(negotiate("application/json;odata=verbose"), None);
        assert_eq!(negotiate("*/*"), None);
    }

    #[test]
    fn update_state_rules() {
        let mut u = JobUpdate::default();
        u.properties.state = Some(JobState::Shipping);
        assert_eq!(
            update(&u, JobState::Creating, true, false).unwrap_err().code,
            "MissingShippingInformation"
        );
        assert!(update(&u, JobState::Creating, true, true).is_ok());
        assert_eq!(
            update(&u, JobState::Shipping, true, true).unwrap_err().status,
            409
        );
        let mut u = JobUpdate::default();
        u.properties.return_shipping = Some(ReturnShipping {
            carrier_name: "FedEx".into(),
            carrier_account_number: " ".into(),
        });
        assert_eq!(
            update(&u, JobState::Shipping, true, true).unwrap_err().code,
            "InvalidReturnShipping"
        );
        assert!(delete(JobState::Creating).is_ok() && delete(JobState::Completed).is_ok());
        assert!(delete(JobState::Shipping).is_err() && delete(JobState::Closed).is_err());
    }
}
