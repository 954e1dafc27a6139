//! seedship-shared's Import/Export client end to end against the emulator: locations and seed 000's rule,
//! Put / Get / List / Update / Delete Job, the documented refusals as typed errors, and the time rules on the
//! emulator's movable clock.

use crate::harness::{advance_clock, init_dir, raw, set_state, Emulator};
use seedship_shared::api::{
    ApiError, Drive, DriveState, Job, JobProperties, JobState, JobType, JobUpdate, LocationChoice, Package,
    ReturnAddress, ReturnShipping,
};

pub const ACCOUNT: &str = "seedacct";
const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

pub fn drive(id: &str) -> Drive {
    Drive {
        drive_id: id.into(),
        bit_locker_key: Some("259358-100188-581471-154165-090552-296406-410091-426844".into()),
        manifest_file: Some("\\DriveManifest.xml".into()),
        manifest_hash: Some("B306C4B34DAA0E99957A4B9C779D2FA2".into()),
        ..Default::default()
    }
}

pub fn job(name: &str, location: &str, drives: usize) -> Job {
    Job {
        name: name.into(),
        properties: JobProperties {
            storage_account_name: Some(ACCOUNT.into()),
            storage_account_key: Some("c2VjcmV0LWtleQ==".into()),
            location: Some(location.into()),
            job_type: Some(JobType::Import),
            friendly_name: Some("initial backup".into()),
            return_shipping: Some(ReturnShipping {
                carrier_name: "FedEx".into(),
                carrier_account_number: "123".into(),
            }),
            ..Default::default()
        },
        drive_list: Some((0..drives).map(|i| drive(&format!("SERIAL{i}"))).collect()),
        ..Default::default()
    }
}

fn address() -> ReturnAddress {
    ReturnAddress {
        name: "Backup Admin".into(),
        address: "1 Main Street, Springfield".into(),
        phone: "555-0100".into(),
        email: "admin@example.invalid".into(),
    }
}

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(r: Result<T, ApiError>, status: u16, code: &str) {
    let e = r.expect_err("the service must refuse this");
    assert_eq!((e.status(), e.extended_code()), (Some(status), Some(code)), "{e}");
}

#[test]
fn locations_and_the_alternate_rule() {
    let dir = init_dir();
    let emu = Emulator::start(dir.path());
    let c = emu.client();
    let all = c.list_locations(None).unwrap();
    assert_eq!(all.len(), 4);
    let west_us = c.list_locations(Some("West US")).unwrap();
    assert_eq!(west_us.len(), 1);
    assert!(west_us[0].is_open());
    let (choice, loc) = c.resolve_location("West US").unwrap();
    assert_eq!(choice, LocationChoice::Origin("West US".into()));
    assert_eq!(loc.city, "Santa Clara");
    let (choice, loc) = c.resolve_location("west europe").unwrap();
    assert_eq!(
        choice,
        LocationChoice::Alternate {
            closed: "West Europe".into(),
            alternate: "North Europe".into()
        }
    );
    assert_eq!((loc.name.as_str(), loc.city.as_str()), ("North Europe", "Dublin"));
    assert!(matches!(
        c.resolve_location("Atlantis"),
        Err(ApiError::Location(_))
    ));
}

#[test]
fn job_lifecycle() {
    let dir = init_dir();
    let emu = Emulator::start(dir.path());
    let c = emu.client();
    c.put_job(ACCOUNT, &job("seed-job", "North Europe", 2)).unwrap();
    let got = c.get_job(ACCOUNT, "seed-job").unwrap();
    assert_eq!(got.name, "seed-job");
    assert_eq!(got.properties.state, Some(JobState::Creating));
    assert_eq!(
        got.properties.storage_account_key, None,
        "Get Job never returns the account key"
    );
    assert_eq!(
        got.properties
            .shipping_information
            .as_ref()
            .map(|l| l.city.as_str()),
        Some("Dublin")
    );
    assert_eq!(got.drives().len(), 2);
    assert_eq!(
        got.properties.import_export_states_path.as_deref(),
        Some("waimportexport")
    );
    assert_eq!(
        (got.properties.enable_verbose_log, got.properties.cancel_requested),
        (Some(false), Some(false))
    );
    assert!(got
        .drives()
        .iter()
        .all(|d| d.state == Some(DriveState::Specified) && d.bit_locker_key.is_none()));
    assert_eq!(
        got.drives()[1].manifest_hash.as_deref(),
        Some("B306C4B34DAA0E99957A4B9C779D2FA2")
    );
    // Put again while Creating replaces the job
    let mut again = job("seed-job", "North Europe", 3);
    again.properties.friendly_name = Some("second try".into());
    c.put_job(ACCOUNT, &again).unwrap();
    let got = c.get_job(ACCOUNT, "seed-job").unwrap();
    assert_eq!(
        (got.drives().len(), got.properties.friendly_name.as_deref()),
        (3, Some("second try"))
    );

    let list = c.list_jobs().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].state, list[0].storage_account_name.as_str()),
        (JobState::Creating, ACCOUNT)
    );

    // Shipping needs ReturnAddress and DeliveryPackage
    let mut ship = JobUpdate::default();
    ship.properties.state = Some(JobState::Shipping);
    assert_refused(
        c.update_job(ACCOUNT, "seed-job", &ship),
        400,
        "MissingShippingInformation",
    );
    let mut addr = JobUpdate::default();
    addr.properties.return_address = Some(address());
    c.update_job(ACCOUNT, "seed-job", &addr).unwrap();
    assert_refused(
        c.update_job(ACCOUNT, "seed-job", &ship),
        400,
        "MissingShippingInformation",
    );
    ship.properties.delivery_package = Some(Package {
        carrier_name: "FedEx".into(),
        tracking_number: "999999999999".into(),
        drive_count: Some(3),
        ship_date: Some("4/30/2014 12:25:40 AM".into()),
    });
    c.update_job(ACCOUNT, "seed-job", &ship).unwrap();
    let got = c.get_job(ACCOUNT, "seed-job").unwrap();
    assert_eq!(got.properties.state, Some(JobState::Shipping));
    assert_eq!(
        got.properties
            .delivery_package
            .as_ref()
            .map(|p| p.tracking_number.as_str()),
        Some("999999999999")
    );
    assert_eq!(got.properties.return_address, Some(address()));

    // state rules: no second Shipping, no delete, no reuse of the name
    assert_refused(c.update_job(ACCOUNT, "seed-job", &ship), 409, "InvalidJobState");
    assert_refused(c.delete_job(ACCOUNT, "seed-job"), 409, "InvalidJobState");
    assert_refused(
        c.put_job(ACCOUNT, &job("seed-job", "North Europe", 1)),
        409,
        "JobAlreadyExists",
    );
    let mut cancel = JobUpdate::default();
    cancel.properties.cancel_requested = Some(true);
    c.update_job(ACCOUNT, "seed-job", &cancel).unwrap();
    set_state(&emu, ACCOUNT, "seed-job", "Packaging");
    assert_refused(c.update_job(ACCOUNT, "seed-job", &addr), 409, "InvalidJobState");
    assert_refused(c.update_job(ACCOUNT, "seed-job", &cancel), 409, "InvalidJobState");
    set_state(&emu, ACCOUNT, "seed-job", "Closed");
    assert_refused(c.delete_job(ACCOUNT, "seed-job"), 409, "InvalidJobState");
    set_state(&emu, ACCOUNT, "seed-job", "Completed");
    assert_eq!(
        c.get_job(ACCOUNT, "seed-job").unwrap().drives()[0].state,
        Some(DriveState::Completed)
    );
    c.delete_job(ACCOUNT, "seed-job").unwrap();
    assert_refused(c.get_job(ACCOUNT, "seed-job"), 404, "ResourceNotFound");
    // a deleted name can be used again; a Creating job can be deleted
    c.put_job(ACCOUNT, &job("seed-job", "West US", 1)).unwrap();
    c.delete_job(ACCOUNT, "seed-job").unwrap();
    assert!(c.list_jobs().unwrap().is_empty());
}

#[test]
fn put_job_validation() {
    let dir = init_dir();
    let emu = Emulator::start(dir.path());
    let c = emu.client();
    assert_refused(
        c.put_job(ACCOUNT, &job("Bad Name", "West US", 1)),
        400,
        "InvalidJobName",
    );
    assert_refused(
        c.put_job(ACCOUNT, &job("1job", "West US", 1)),
        400,
        "InvalidJobName",
    );
    assert_refused(
        c.put_job("Bad_Account", &job("j", "West US", 1)),
        400,
        "InvalidStorageAccountName",
    );
    assert_refused(
        c.put_job(ACCOUNT, &job("j", "West Europe", 1)),
        400,
        "LocationNotAvailable",
    );
    assert_refused(
        c.put_job(ACCOUNT, &job("j", "Atlantis", 1)),
        400,
        "InvalidLocation",
    );
    assert_refused(c.put_job(ACCOUNT, &job("j", "West US", 11)), 400, "TooManyDrives");
    assert_refused(
        c.put_job(ACCOUNT, &job("j", "West US", 0)),
        400,
        "MissingDriveList",
    );
    let mut j = job("j", "West US", 2);
    j.drive_list.as_mut().unwrap()[1].drive_id = "SERIAL0".into();
    assert_refused(c.put_job(ACCOUNT, &j), 400, "DuplicateDriveId");
    let mut j = job("j", "West US", 1);
    j.drive_list.as_mut().unwrap()[0].drive_id = "HAS SPACE".into();
    assert_refused(c.put_job(ACCOUNT, &j), 400, "InvalidDriveId");
    let mut j = job("j", "West US", 1);
    j.drive_list.as_mut().unwrap()[0].bit_locker_key =
        Some("259359-100188-581471-154165-090552-296406-410091-426844".into());
    assert_refused(c.put_job(ACCOUNT, &j), 400, "InvalidBitLockerKey");
    let mut j = job("j", "West US", 1);
    j.drive_list.as_mut().unwrap()[0].manifest_hash = Some("b306c4b34daa0e99957a4b9c779d2fa2".into());
    assert_refused(c.put_job(ACCOUNT, &j), 400, "InvalidManifestHash");
    let mut j = job("j", "West US", 1);
    j.properties.container_sas = Some("c?sv=2014-02-14&sig=x".into());
    assert_refused(c.put_job(ACCOUNT, &j), 400, "InvalidStorageCredentials");
    let mut j = job("j", "West US", 1);
    j.properties.return_address = Some(ReturnAddress {
        email: String::new(),
        ..address()
    });
    assert_refused(c.put_job(ACCOUNT, &j), 400, "InvalidReturnAddress");
    // DriveList inside Properties is accepted too
    let mut j = job("inside", "West US", 0);
    j.properties.drive_list = Some(vec![drive("INSIDE1")]);
    c.put_job(ACCOUNT, &j).unwrap();
    assert_eq!(
        c.get_job(ACCOUNT, "inside").unwrap().drives()[0].drive_id,
        "INSIDE1"
    );
    // a body that is not a job, and a PUT without a body
    let v = ("x-ms-version", "2014-11-01");
    raw(
        &emu,
        true,
        "PUT",
        "/storageaccounts/seedacct/jobs/x",
        &[v],
        Some(b"not json"),
    )
    .assert_error(400, "InvalidRequestBody");
    assert!(c.list_jobs().unwrap().len() == 1);
}

#[test]
fn at_most_twenty_active_jobs() {
    let dir = init_dir();
    let emu = Emulator::start(dir.path());
    let c = emu.client();
    for i in 0..20 {
        c.put_job(ACCOUNT, &job(&format!("job{i}"), "West US", 1))
            .unwrap();
    }
    assert_refused(
        c.put_job(ACCOUNT, &job("job20", "West US", 1)),
        409,
        "TooManyActiveJobs",
    );
    // replacing a Creating job is not a new one; a finished job no longer counts
    c.put_job(ACCOUNT, &job("job3", "West US", 2)).unwrap();
    set_state(&emu, ACCOUNT, "job0", "Completed");
    c.put_job(ACCOUNT, &job("job20", "West US", 1)).unwrap();
    assert_eq!(c.list_jobs().unwrap().len(), 21);
}

#[test]
fn creating_jobs_expire_after_two_weeks_and_finished_ones_after_ninety_days() {
    let dir = init_dir();
    let emu = Emulator::start(dir.path());
    let c = emu.client();
    c.put_job(ACCOUNT, &job("left", "West US", 1)).unwrap();
    c.put_job(ACCOUNT, &job("touched", "West US", 1)).unwrap();
    c.put_job(ACCOUNT, &job("done", "West US", 1)).unwrap();
    set_state(&emu, ACCOUNT, "done", "Completed");
    advance_clock(&emu, 13 * DAY);
    let mut touch = JobUpdate::default();
    touch.properties.description = Some("still preparing drives".into());
    c.update_job(ACCOUNT, "touched", &touch).unwrap();
    assert_eq!(c.list_jobs().unwrap().len(), 3);
    // margins of an hour keep real seconds passing during the test out of the way
    advance_clock(&emu, DAY + HOUR);
    // "left" reached two weeks in Creating; the update reset "touched"'s timer
    let names: Vec<String> = c.list_jobs().unwrap().into_iter().map(|j| j.name).collect();
    assert_eq!(names, ["done", "touched"]);
    assert_refused(c.get_job(ACCOUNT, "left"), 404, "ResourceNotFound");
    advance_clock(&emu, 13 * DAY - 2 * HOUR);
    assert!(c.get_job(ACCOUNT, "touched").is_ok());
    advance_clock(&emu, 2 * HOUR);
    assert_refused(c.get_job(ACCOUNT, "touched"), 404, "ResourceNotFound");
    // "done" finished on day 0: present until day 90 (now: day 27 + 1 hour)
    advance_clock(&emu, 63 * DAY - 2 * HOUR);
    assert!(c.get_job(ACCOUNT, "done").is_ok());
    advance_clock(&emu, 2 * HOUR);
    assert!(c.list_jobs().unwrap().is_empty());
}

#[test]
fn conditional_requests() {
    let dir = init_dir();
    let emu = Emulator::start(dir.path());
    let c = emu.client();
    let v = ("x-ms-version", "2014-11-01");
    let path = format!("/storageaccounts/{ACCOUNT}/jobs/cond");
    let body = serde_json::to_vec(&job("cond", "West US", 1)).unwrap();
    // one request on the job with x-ms-version and these conditional headers
    let req = |method: &str, conditions: &[(&str, &str)], body: Option<&[u8]>| {
        let headers: Vec<(&str, &str)> = std::iter::once(v).chain(conditions.iter().copied()).collect();
        raw(&emu, true, method, &path, &headers, body)
    };
    let long_ago = "Sat, 01 Jan 2000 00:00:00 GMT";
    // If-Match on a job that does not exist yet
    req("PUT", &[("if-match", "*")], Some(&body)).assert_error(412, "ConditionNotMet");
    let created = req("PUT", &[("if-none-match", "*")], Some(&body));
    assert_eq!(created.status, 201);
    let etag = created.header("etag").unwrap().to_string();
    assert!(etag.starts_with("W/\"datetime'"), "{etag}");
    req("PUT", &[("if-none-match", "*")], Some(&body)).assert_error(412, "ConditionNotMet");
    let got = req("GET", &[("if-match", &etag)], None);
    assert_eq!((got.status, got.header("etag")), (200, Some(etag.as_str())));
    let old_etag = "W/\"datetime'2000-01-01T00%3A00%3A00Z'\"";
    req("GET", &[("if-match", old_etag)], None).assert_error(412, "ConditionNotMet");
    req("DELETE", &[("if-unmodified-since", long_ago)], None).assert_error(412, "ConditionNotMet");
    req("GET", &[("if-match", "*"), ("if-modified-since", long_ago)], None)
        .assert_error(400, "InvalidConditionalHeaders");
    // a name past Creating is refused with 409 whatever the conditions say
    set_state(&emu, ACCOUNT, "cond", "Shipping");
    req("PUT", &[("if-match", "*")], Some(&body)).assert_error(409, "JobAlreadyExists");
    assert_eq!(
        c.get_job(ACCOUNT, "cond").unwrap().properties.state,
        Some(JobState::Shipping)
    );
}

#[test]
fn operator_endpoints_want_the_operator_credential_and_the_clock_offset_is_clamped() {
    let dir = init_dir();
    let emu = Emulator::start(dir.path());
    let clock = |token: Option<&str>, body: &str| {
        let headers: Vec<(&str, &str)> = token
            .map(|t| ("x-seedship-operator-token", t))
            .into_iter()
            .collect();
        raw(
            &emu,
            true,
            "POST",
            "/_operator/clock",
            &headers,
            Some(body.as_bytes()),
        )
    };
    // a subscription's certificate alone proves a customer, not the data centre
    let wrong = "0".repeat(64);
    for token in ["", wrong.as_str()] {
        clock(Some(token), r#"{"AdvanceSeconds":60}"#).assert_error(403, "ForbiddenError");
    }
    // an offset of i64::MAX used to overflow "now"
    let r = clock(None, &format!(r#"{{"OffsetSeconds":{}}}"#, i64::MAX));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(
        v["OffsetSeconds"].as_i64(),
        Some(seedship_emulator::store::MAX_CLOCK_OFFSET)
    );
    let r = clock(None, r#"{"AdvanceSeconds":9223372036854775807}"#);
    assert_eq!(
        r.json()["OffsetSeconds"].as_i64(),
        Some(seedship_emulator::store::MAX_CLOCK_OFFSET)
    );
    advance_clock(&emu, -seedship_emulator::store::MAX_CLOCK_OFFSET);
}
