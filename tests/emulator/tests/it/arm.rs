//! The Resource Manager endpoints end to end with seedship-shared's ARM client: every import example of the
//! 2021-01-01 specification replayed (the emulator answers with the documented shape and status), jobs
//! visible through both APIs, `nextLink` paging, and the refusals (token, api-version, subscription, export
//! jobs, bad bodies), none of which leaves anything behind.

use crate::harness::{raw_url, set_state, Emulator, Raw};
use seedship_shared::api::arm::{
    location_id, ArmError, PackageInformation, PutJobParameters, UpdateJobParameters, UpdateJobProperties,
    ARM_API_VERSION,
};
use seedship_testkit::write_private;
use serde_json::Value;
use std::path::PathBuf;

const RG: &str = "myResourceGroup";
const EXAMPLE_SUB: &str = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

fn example(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/tests/fixtures/arm-2021-01-01")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// The example's create body, for the emulator's subscription.
fn create_body(emu: &Emulator) -> PutJobParameters {
    let body = example("CreateJob")["parameters"]["body"]
        .to_string()
        .replace(EXAMPLE_SUB, &emu.sub);
    serde_json::from_str(&body).unwrap()
}

/// Every member of `example` is in `ours` with the same JSON kind (arrays: their first elements).
#[track_caller]
fn assert_shape(path: &str, example: &Value, ours: &Value) {
    match (example, ours) {
        (Value::Object(e), Value::Object(o)) => {
            for (k, v) in e {
                let Some(ov) = o.get(k) else {
                    panic!("{path}.{k} is missing from the emulator's answer {ours}")
                };
                assert_shape(&format!("{path}.{k}"), v, ov);
            }
        }
        (Value::Array(e), Value::Array(o)) => {
            if let Some(e0) = e.first() {
                let o0 = o
                    .first()
                    .unwrap_or_else(|| panic!("{path} is empty in the emulator's answer"));
                assert_shape(&format!("{path}[0]"), e0, o0);
            }
        }
        (e, o) => assert_eq!(
            std::mem::discriminant(e),
            std::mem::discriminant(o),
            "{path}: example {e}, emulator {o}"
        ),
    }
}

fn json<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap()
}

#[track_caller]
fn assert_code<T: std::fmt::Debug>(r: Result<T, ArmError>, status: u16, code: &str) {
    let e = r.expect_err("the emulator must refuse this");
    assert_eq!((e.status(), e.code()), (Some(status), Some(code)), "{e}");
}

#[test]
fn every_import_example_is_answered_with_its_documented_shape() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(dir.path());
    let c = emu.arm_client(RG);

    let locations = c.list_locations().unwrap();
    assert_eq!(locations.len(), 4);
    let ex = &example("ListLocations")["responses"]["200"]["body"];
    assert_shape(
        "ListLocations",
        ex,
        &serde_json::json!({ "value": json(&locations) }),
    );
    let west = c.get_location("westus").unwrap();
    assert_shape(
        "GetLocation",
        &example("GetLocation")["responses"]["200"]["body"],
        &json(&west),
    );
    assert_eq!(west.name.as_deref(), Some("West US"));
    assert_eq!(west.id.as_deref(), Some(location_id("West US").as_str()));
    assert_code(c.get_location("Atlantis"), 404, "ResourceNotFound");

    let body = create_body(&emu);
    let (created, new) = c.create_job("myJob", &body).unwrap();
    assert!(new, "a new job answers 201");
    assert_shape(
        "CreateJob",
        &example("CreateJob")["responses"]["201"]["body"],
        &json(&created),
    );
    let d = created.details();
    assert_eq!(d.state.as_deref(), Some("Creating"));
    assert_eq!(d.drives()[0].state.as_deref(), Some("Specified"));
    assert_eq!(
        d.drives()[0].bit_locker_key,
        None,
        "answers never carry BitLocker keys"
    );
    assert_eq!(d.shipping_information.as_ref().unwrap().city, "Santa Clara");
    assert_eq!(
        created.id.as_deref(),
        Some(
            format!(
                "/subscriptions/{}/resourceGroups/{RG}/providers/Microsoft.ImportExport/jobs/myJob",
                emu.sub
            )
            .as_str()
        )
    );
    let (again, new) = c.create_job("myJob", &body).unwrap();
    assert!(!new, "replacing a Creating job answers 200");
    assert_shape(
        "CreateJob",
        &example("CreateJob")["responses"]["200"]["body"],
        &json(&again),
    );

    let got = c.get_job("myJob").unwrap();
    assert_shape(
        "GetJob",
        &example("GetJob")["responses"]["200"]["body"],
        &json(&got),
    );

    let keys = c.list_bitlocker_keys("myJob").unwrap();
    assert_shape(
        "ListBitLockerKeys",
        &example("ListBitLockerKeys")["responses"]["200"]["body"],
        &serde_json::json!({ "value": json(&keys) }),
    );
    let sent = body.properties.as_ref().unwrap().drives()[0]
        .bit_locker_key
        .clone();
    assert_eq!(
        (keys[0].drive_id.as_deref(), keys[0].bit_locker_key.clone()),
        (Some("9CA995BB"), sent)
    );

    let update: UpdateJobParameters =
        serde_json::from_value(example("UpdateJob")["parameters"]["body"].clone()).unwrap();
    let updated = c.update_job("myJob", &update).unwrap();
    assert_shape(
        "UpdateJob",
        &example("UpdateJob")["responses"]["200"]["body"],
        &json(&updated),
    );
    assert_eq!(
        updated.details().state.as_deref(),
        Some("Creating"),
        "state \"\" changes nothing"
    );

    let ship = UpdateJobParameters {
        tags: None,
        properties: Some(UpdateJobProperties {
            state: Some("Shipping".into()),
            delivery_package: Some(PackageInformation {
                carrier_name: "FedEx".into(),
                tracking_number: "787895108176".into(),
                drive_count: Some(1),
                ship_date: Some("2026-12-02".into()),
            }),
            ..Default::default()
        }),
    };
    assert_eq!(
        c.update_job("myJob", &ship).unwrap().details().state.as_deref(),
        Some("Shipping")
    );
    let listed = c.list_jobs_by_resource_group(None, None).unwrap();
    let ex = &example("ListJobsInResourceGroup")["responses"]["200"]["body"];
    assert_shape(
        "ListJobsInResourceGroup",
        ex,
        &serde_json::json!({ "value": json(&listed) }),
    );
    assert_eq!(c.list_jobs_by_subscription(None, None).unwrap().len(), 1);

    // the classic API sees the same job, BitLocker key and all
    let classic = emu.client().get_job("test", "myJob").unwrap();
    assert_eq!(
        classic.properties.state,
        Some(seedship_shared::api::JobState::Shipping)
    );
    assert_eq!(classic.drives()[0].drive_id, "9CA995BB");

    assert_code(c.delete_job("myJob"), 409, "InvalidJobState");
    set_state(&emu, "test", "myJob", "Completed");
    c.delete_job("myJob").unwrap();
    assert_code(c.get_job("myJob"), 404, "ResourceNotFound");
    assert!(
        emu.client().list_jobs().unwrap().is_empty(),
        "deleted for the classic API too"
    );
}

#[test]
fn classic_jobs_show_under_their_resource_group_and_lists_page() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(dir.path());
    emu.client()
        .put_job(
            crate::client::ACCOUNT,
            &crate::client::job("classic1", "West US", 1),
        )
        .unwrap();
    let c = emu.arm_client(RG);
    let all = c.list_jobs_by_subscription(None, None).unwrap();
    assert_eq!(all.len(), 1);
    let id = all[0].id.clone().unwrap();
    assert!(id.contains("/resourceGroups/classic-importexport/"), "{id}");
    let classic_rg = emu.arm_client("classic-importexport");
    let job = classic_rg.get_job("classic1").unwrap();
    assert_eq!(job.details().drives()[0].drive_id.as_deref(), Some("SERIAL0"));
    assert_code(c.get_job("classic1"), 404, "ResourceNotFound");

    for name in ["page1", "page2", "page3"] {
        c.create_job(name, &create_body(&emu)).unwrap();
    }
    let paged = c.list_jobs_by_resource_group(Some(2), None).unwrap();
    let names: Vec<_> = paged.iter().filter_map(|j| j.name.clone()).collect();
    assert_eq!(names, ["page1", "page2", "page3"], "the client follows nextLink");
    assert_eq!(c.list_jobs_by_subscription(Some(1), None).unwrap().len(), 4);
}

fn arm_raw(
    emu: &Emulator,
    method: &str,
    path_and_query: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> Raw {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    raw_url(
        emu,
        false,
        method,
        &format!("{}{path_and_query}", emu.url),
        &headers,
        body,
    )
}

#[track_caller]
fn assert_arm_error(r: &Raw, status: u16, code: &str) {
    let v = r.json();
    assert_eq!(
        (r.status, v["error"]["code"].as_str()),
        (status, Some(code)),
        "{v}"
    );
    assert!(!v["error"]["message"].as_str().unwrap_or("").is_empty(), "{v}");
}

#[test]
fn refusals_are_resource_manager_errors_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(dir.path());
    let token = emu.management_token();
    let jobs = format!(
        "/subscriptions/{}/resourceGroups/{RG}/providers/Microsoft.ImportExport/jobs",
        emu.sub
    );
    let q = format!("?api-version={ARM_API_VERSION}");
    let body = serde_json::to_vec(&create_body(&emu)).unwrap();

    let r = arm_raw(&emu, "PUT", &format!("{jobs}/j1{q}"), None, Some(&body));
    assert_arm_error(&r, 401, "AuthenticationFailed");
    assert!(r
        .header("www-authenticate")
        .is_some_and(|h| h.starts_with("Bearer")));
    let r = arm_raw(&emu, "PUT", &format!("{jobs}/j1"), Some(&token), Some(&body));
    assert_arm_error(&r, 400, "MissingApiVersionParameter");
    let r = arm_raw(
        &emu,
        "PUT",
        &format!("{jobs}/j1?api-version=2016-11-01"),
        Some(&token),
        Some(&body),
    );
    assert_arm_error(&r, 400, "InvalidApiVersionParameter");
    let r = arm_raw(
        &emu,
        "GET",
        &format!(
            "/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.ImportExport/jobs{q}"
        ),
        Some(&token),
        None,
    );
    assert_arm_error(&r, 404, "SubscriptionNotFound");
    let r = arm_raw(
        &emu,
        "PUT",
        &format!("{jobs}/j1{q}"),
        Some(&token),
        Some(b"{not json"),
    );
    assert_arm_error(&r, 400, "InvalidRequestContent");

    let c = emu.arm_client(RG);
    let mut e = create_body(&emu);
    e.properties.as_mut().unwrap().job_type = Some("Export".into());
    assert_code(c.create_job("j1", &e), 400, "ExportJobsNotSupported");
    let mut e = create_body(&emu);
    e.properties.as_mut().unwrap().storage_account_id = Some("test".into());
    assert_code(c.create_job("j1", &e), 400, "InvalidStorageAccountId");
    let mut e = create_body(&emu);
    e.location = Some("West Europe".into());
    assert_code(c.create_job("j1", &e), 400, "LocationNotAvailable");
    let mut e = create_body(&emu);
    e.properties.as_mut().unwrap().drive_list.as_mut().unwrap()[0].manifest_hash = Some("1234".into());
    assert_code(c.create_job("j1", &e), 400, "InvalidManifestHash");
    let mut e = create_body(&emu);
    e.properties.as_mut().unwrap().drive_list.as_mut().unwrap()[0].bit_locker_key = Some("123".into());
    assert_code(c.create_job("j1", &e), 400, "InvalidBitLockerKey");
    assert_code(
        c.create_job("bad name!", &create_body(&emu)),
        400,
        "InvalidJobName",
    );

    assert!(
        c.list_jobs_by_subscription(None, None).unwrap().is_empty(),
        "no refusal left a job"
    );
    assert!(emu.client().list_jobs().unwrap().is_empty());

    c.create_job("j1", &create_body(&emu)).unwrap();
    let bad_state = UpdateJobParameters {
        tags: None,
        properties: Some(UpdateJobProperties {
            state: Some("Completed".into()),
            ..Default::default()
        }),
    };
    assert_code(c.update_job("j1", &bad_state), 400, "InvalidStateValue");
    let other_rg = emu.arm_client("otherGroup");
    assert_code(
        other_rg.create_job("j1", &create_body(&emu)),
        409,
        "JobAlreadyExists",
    );
}

#[test]
fn the_azure_sdk_for_python_manages_an_import_job() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(dir.path());
    let app = emu.entra_app();
    // azure-identity's CertificateCredential wants the certificate and its key in one PEM file
    let combined = emu.dir.join("app-combined.pem");
    let mut pem = std::fs::read(&app.certificate).unwrap();
    pem.extend(std::fs::read(&app.private_key).unwrap());
    write_private(&combined, &pem);
    for kind in ["certificate", "secret"] {
        let rg = format!("sdk-{kind}");
        let job = format!("{kind}job");
        let drive = format!("{}1", kind.to_uppercase());
        let account = seedship_shared::api::arm::StorageAccountId::new(&emu.sub, &rg, "sdkacct").to_string();
        let out = seedship_testkit::run_python(
            "arm_sdk.py",
            &[
                kind,
                emu.dir.join("entra-app.json").to_str().unwrap(),
                combined.to_str().unwrap(),
                &rg,
                &account,
            ],
            &[("REQUESTS_CA_BUNDLE", emu.ca().to_str().unwrap())],
        );
        let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(
            v["locations"],
            serde_json::json!(["East US", "North Europe", "West Europe", "West US"]),
            "{kind}: {v}"
        );
        assert_eq!(v["west_us_city"], "Santa Clara");
        assert_eq!(v["created"]["state"], "Creating");
        assert_eq!(v["created"]["drive_state"], "Specified");
        assert_eq!(v["created"]["key_echoed"], false);
        assert_eq!(v["created"]["ship_to"], "Santa Clara");
        let id = format!(
            "/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.ImportExport/jobs/{job}",
            emu.sub
        );
        assert_eq!(v["created"]["id"], id.as_str());
        assert_eq!(v["got_state"], "Creating");
        assert_eq!(v["listed"], serde_json::json!([job]));
        assert_eq!(
            v["keys"],
            serde_json::json!([[drive, "259358-100188-581471-154165-090552-296406-410091-426844"]])
        );
        assert_eq!(
            (&v["updated_state"], &v["tracking"]),
            (&Value::from("Shipping"), &Value::from("1234567890"))
        );
        assert_eq!(
            v["delete_while_shipping"],
            serde_json::json!([409, "InvalidJobState"])
        );
        assert_eq!(v["after_delete"], serde_json::json!([404, "ResourceNotFound"]));
        assert_eq!(
            v["scopes"],
            serde_json::json!(["https://management.azure.com/.default"])
        );
        // the job the SDK made is the classic API's job too
        let classic = emu.client().get_job("sdkacct", &job).unwrap();
        assert_eq!(
            classic.properties.state,
            Some(seedship_shared::api::JobState::Shipping)
        );
    }
}

/// Sets the role assignments of `init`'s application in `DIR/emulator.json` (before `serve` loads them).
fn set_app_roles(dir: &std::path::Path, roles: &[&str]) {
    let path = dir.join("emulator.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    v["Entra"]["Applications"][0]["Roles"] = serde_json::json!(roles);
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

#[test]
fn resource_manager_takes_only_the_emulators_entra_tokens_with_a_role() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(dir.path());
    let jobs = format!(
        "/subscriptions/{}/resourceGroups/{RG}/providers/Microsoft.ImportExport/jobs",
        emu.sub
    );
    let q = format!("?api-version={ARM_API_VERSION}");
    let put = format!("{jobs}/j1{q}");
    let body = serde_json::to_vec(&create_body(&emu)).unwrap();
    let nothing_created = |emu: &Emulator| {
        assert!(
            emu.client().list_jobs().unwrap().is_empty(),
            "a refused request created a job"
        );
    };
    let token = emu.management_token();

    // no token, not a bearer token, not a JWT
    let r = arm_raw(&emu, "PUT", &put, None, Some(&body));
    assert_arm_error(&r, 401, "AuthenticationFailed");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Authorization"));
    assert!(r
        .header("www-authenticate")
        .is_some_and(|h| h.starts_with("Bearer") && h.contains(&emu.url)));
    let r = arm_raw(&emu, "PUT", &put, Some("not-a-jwt"), Some(&body));
    assert_arm_error(&r, 401, "InvalidAuthenticationToken");
    // a token for the storage audience
    let entra = emu.entra_options(emu.certificate_credential());
    let storage = entra
        .token_source()
        .unwrap()
        .token(seedship_shared::entra::STORAGE_SCOPE)
        .unwrap();
    let r = arm_raw(&emu, "PUT", &put, Some(storage.token.as_str()), Some(&body));
    assert_arm_error(&r, 401, "InvalidAuthenticationTokenAudience");
    let m = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        m.contains("https://storage.azure.com") && m.contains("https://management.azure.com/"),
        "{m}"
    );
    // a token whose signature is not the emulator's
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut sig = sig.as_bytes().to_vec();
    sig[10] = if sig[10] == b'A' { b'B' } else { b'A' };
    let forged = format!("{input}.{}", String::from_utf8(sig).unwrap());
    let r = arm_raw(&emu, "PUT", &put, Some(&forged), Some(&body));
    assert_arm_error(&r, 401, "InvalidAuthenticationToken");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("signature"));
    nothing_created(&emu);

    // the good token works, through the raw request and through the client
    let r = arm_raw(&emu, "GET", &format!("{jobs}{q}"), Some(&token), None);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // an expired token: the emulator clock moves past its lifetime
    crate::harness::advance_clock(&emu, 2 * 3600);
    let r = arm_raw(&emu, "PUT", &put, Some(&token), Some(&body));
    assert_arm_error(&r, 401, "ExpiredAuthenticationToken");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("new token"));
    nothing_created(&emu);
    emu.stop();

    // the application with only a data-plane role: refused reads and writes, 403 naming the role it needs
    let dir = tempfile::tempdir().unwrap();
    crate::harness::init(dir.path());
    set_app_roles(dir.path(), &["Storage Blob Data Contributor"]);
    let emu = Emulator::start(dir.path());
    let app = emu.entra_app();
    let token = emu.management_token();
    let r = arm_raw(&emu, "PUT", &put, Some(&token), Some(&body));
    assert_arm_error(&r, 403, "AuthorizationFailed");
    let m = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        m.contains(&app.client_id) && m.contains("Contributor or Owner"),
        "{m}"
    );
    let r = arm_raw(&emu, "GET", &format!("{jobs}{q}"), Some(&token), None);
    assert_arm_error(&r, 403, "AuthorizationFailed");
    assert_code(
        emu.arm_client(RG).create_job("j1", &create_body(&emu)),
        403,
        "AuthorizationFailed",
    );
    nothing_created(&emu);
    emu.stop();

    // a Reader may list but not create
    let dir = tempfile::tempdir().unwrap();
    crate::harness::init(dir.path());
    set_app_roles(dir.path(), &["Reader"]);
    let emu = Emulator::start(dir.path());
    let c = emu.arm_client(RG);
    assert!(c.list_jobs_by_resource_group(None, None).unwrap().is_empty());
    assert_code(c.create_job("j1", &create_body(&emu)), 403, "AuthorizationFailed");
    nothing_created(&emu);
}

#[test]
fn a_job_made_through_resource_manager_is_imported_by_receive() {
    use crate::dcfixture::{container, emulator, prepare_drives, read_blob, receive};
    let t = tempfile::tempdir().unwrap();
    let data = seedship_e2e::noise(2 << 20, 77);
    let d = prepare_drives(t.path(), "armjob", &[("vm/disk.img", data.clone())], 1).remove(0);
    let az = seedship_testkit::Azurite::start();
    let (dir, _) = emulator(t.path(), &az);
    let emu = Emulator::start(&dir);
    let c = emu.arm_client(RG);
    let mut body = create_body(&emu);
    let props = body.properties.as_mut().unwrap();
    props.storage_account_id = Some(
        seedship_shared::api::arm::StorageAccountId::new(&emu.sub, RG, seedship_testkit::AZURITE_ACCOUNT)
            .to_string(),
    );
    let drive = &mut props.drive_list.as_mut().unwrap()[0];
    drive.drive_id = Some(d.id.clone());
    drive.bit_locker_key = Some(d.key.clone());
    drive.manifest_file = Some("\\DriveManifest.xml".into());
    drive.manifest_hash = Some(d.hash.clone());
    drive.drive_header_hash = None;
    c.create_job("armjob", &body).unwrap();
    let ship = UpdateJobParameters {
        tags: None,
        properties: Some(UpdateJobProperties {
            state: Some("Shipping".into()),
            delivery_package: Some(PackageInformation {
                carrier_name: "FedEx".into(),
                tracking_number: "1".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    c.update_job("armjob", &ship).unwrap();
    let outcome = receive(&dir, "armjob", &[&d]);
    assert_eq!(
        outcome.state,
        seedship_shared::api::JobState::Completed,
        "{outcome:?}"
    );
    let job = c.get_job("armjob").unwrap().details();
    assert_eq!(job.state.as_deref(), Some("Completed"));
    let drive = &job.drives()[0];
    assert_eq!(drive.state.as_deref(), Some("Completed"));
    assert!(
        drive.error_log_uri.is_some() || drive.verbose_log_uri.is_some(),
        "{drive:?}"
    );
    assert_eq!(read_blob(&container(&az, "seed"), "vm/disk.img"), data);
}
