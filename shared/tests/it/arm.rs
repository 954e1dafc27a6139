//! The Resource Manager types against the import examples of the 2021-01-01 specification
//! (tests/fixtures/arm-2021-01-01, README there): the request bodies our types produce for the examples' inputs
//! equal the examples' bodies, and every example answer decodes and encodes back to itself (so no field of
//! the documented shapes is lost). The client against a live service is tested in tests/emulator.

use seedship_shared::api::arm::{
    ArmLocation, DriveStatus, GetBitLockerKeysResponse, JobDetails, JobResponse, ListJobsResponse,
    LocationsResponse, PutJobParameters, ReturnAddress, ReturnShipping, StorageAccountId,
    UpdateJobParameters, UpdateJobProperties,
};
use serde_json::Value;
use std::path::PathBuf;

/// The example file `name` (without `.json`).
pub fn example(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/arm-2021-01-01")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The create body of CreateJob.json, built field by field from its inputs as a caller would.
pub fn create_job_inputs(subscription: &str, resource_group: &str) -> PutJobParameters {
    let mut account = StorageAccountId::new(subscription, resource_group, "test");
    account.provider = "Microsoft.ClassicStorage".into();
    PutJobParameters {
        location: Some("West US".into()),
        tags: None,
        properties: Some(JobDetails {
            storage_account_id: Some(account.to_string()),
            job_type: Some("Import".into()),
            return_address: Some(ReturnAddress {
                recipient_name: "Test".into(),
                street_address1: "Street1".into(),
                street_address2: Some("street2".into()),
                city: "Redmond".into(),
                state_or_province: Some("wa".into()),
                postal_code: "98007".into(),
                country_or_region: "USA".into(),
                phone: "4250000000".into(),
                email: "Test@contoso.com".into(),
            }),
            return_shipping: Some(ReturnShipping {
                carrier_name: "FedEx".into(),
                carrier_account_number: "989ffff".into(),
            }),
            diagnostics_path: Some("waimportexport".into()),
            log_level: Some("Verbose".into()),
            backup_drive_manifest: Some(true),
            drive_list: Some(vec![DriveStatus {
                drive_id: Some("9CA995BB".into()),
                bit_locker_key: Some("238810-662376-448998-450120-652806-203390-606320-483076".into()),
                manifest_file: Some("\\8a0c23f7-14b7-470a-9633-fcd46590a1bc.manifest".into()),
                manifest_hash: Some("4228EC5D8E048CB9B515338C789314BE8D0B2FDBC7C7A0308E1C826242CDE74E".into()),
                drive_header_hash: Some("0:1048576:FB6B6ED500D49DA6E0D723C98D42C657F2881CC13357C28DCECA6A524F1292501571A321238540E621AB5BD9C9A32637615919A75593E6CB5C1515DAE341CABF;135266304:143360:C957A189AFC38C4E80731252301EB91427CE55E61448FA3C73C6FDDE70ABBC197947EC8D0249A2C639BB10B95957D5820A4BE8DFBBF76FFFA688AE5CE0D42EC3".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

/// The update body of UpdateJob.json, built from its inputs.
pub fn update_job_inputs() -> UpdateJobParameters {
    UpdateJobParameters {
        tags: None,
        properties: Some(UpdateJobProperties {
            state: Some(String::new()),
            log_level: Some("Verbose".into()),
            backup_drive_manifest: Some(true),
            ..Default::default()
        }),
    }
}

#[test]
fn request_bodies_equal_the_examples() {
    let create = example("CreateJob");
    let sub = create["parameters"]["subscriptionId"].as_str().unwrap();
    let rg = create["parameters"]["resourceGroupName"].as_str().unwrap();
    let ours = serde_json::to_value(create_job_inputs(sub, rg)).unwrap();
    assert_eq!(ours, create["parameters"]["body"], "Jobs_Create body");
    let update = example("UpdateJob");
    let ours = serde_json::to_value(update_job_inputs()).unwrap();
    assert_eq!(ours, update["parameters"]["body"], "Jobs_Update body");
}

/// Decodes `v` as `T` and encodes it again: equal to `v` when the type models every field.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(what: &str, v: &Value) {
    let t: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(
        &serde_json::to_value(&t).unwrap(),
        v,
        "{what} does not survive a round trip"
    );
}

#[test]
fn every_example_answer_decodes_and_encodes_back_to_itself() {
    let create = example("CreateJob");
    round_trip::<PutJobParameters>("CreateJob request", &create["parameters"]["body"]);
    for status in ["200", "201"] {
        round_trip::<JobResponse>("CreateJob answer", &create["responses"][status]["body"]);
    }
    round_trip::<JobResponse>("GetJob answer", &example("GetJob")["responses"]["200"]["body"]);
    round_trip::<JobResponse>(
        "UpdateJob answer",
        &example("UpdateJob")["responses"]["200"]["body"],
    );
    round_trip::<UpdateJobParameters>("UpdateJob request", &example("UpdateJob")["parameters"]["body"]);
    round_trip::<ListJobsResponse>(
        "ListJobsInResourceGroup answer",
        &example("ListJobsInResourceGroup")["responses"]["200"]["body"],
    );
    round_trip::<LocationsResponse>(
        "ListLocations answer",
        &example("ListLocations")["responses"]["200"]["body"],
    );
    round_trip::<ArmLocation>(
        "GetLocation answer",
        &example("GetLocation")["responses"]["200"]["body"],
    );
    round_trip::<GetBitLockerKeysResponse>(
        "ListBitLockerKeys answer",
        &example("ListBitLockerKeys")["responses"]["200"]["body"],
    );
    assert_eq!(
        example("DeleteJob")["responses"]["200"],
        serde_json::json!({}),
        "Jobs_Delete answers no body"
    );
}

#[test]
fn decoded_answers_expose_state_drives_and_addresses() {
    let job: JobResponse =
        serde_json::from_value(example("GetJob")["responses"]["200"]["body"].clone()).unwrap();
    let d = job.details();
    assert_eq!(d.job_state(), Some(seedship_shared::api::JobState::Creating));
    assert_eq!(
        d.drives()[0].drive_state(),
        Some(seedship_shared::api::DriveState::Specified)
    );
    assert_eq!(
        d.drives()[0].bit_locker_key,
        None,
        "answers never carry the BitLocker key"
    );
    let acct = StorageAccountId::parse(d.storage_account_id.as_deref().unwrap()).unwrap();
    assert_eq!(
        (acct.resource_group.as_str(), acct.name.as_str()),
        ("myResourceGroup", "test")
    );
    assert_eq!(d.shipping_information.unwrap().city, "Santa Clara");
    let list: ListJobsResponse =
        serde_json::from_value(example("ListJobsInResourceGroup")["responses"]["200"]["body"].clone())
            .unwrap();
    let shipped = list.value[0].details();
    assert_eq!(
        shipped.job_state(),
        Some(seedship_shared::api::JobState::Received)
    );
    assert_eq!(shipped.delivery_package.unwrap().tracking_number, "787895108176");
}
