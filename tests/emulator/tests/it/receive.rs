//! The operator endpoint `POST/GET _operator/storageaccounts/<account>/jobs/<job>/receive` against Azurite:
//! refusals, the background import seen through Get Job and the receive status, stopping mid-import.

use crate::dcfixture::*;
use crate::harness::{raw, receive as operator_receive, receive_status, wait_received, Emulator};
use seedship_shared::api::{DriveState, JobState, JobUpdate, ReturnAddress};
use seedship_testkit::AZURITE_ACCOUNT;

#[test]
fn the_operator_endpoint_checks_the_drives_then_imports_them_in_the_background() {
    let OneDrive {
        t,
        data,
        drive: d,
        mut az,
        dir,
        sub,
    } = one_drive_job("op", 41);
    let d = &d;
    put_job(
        &dir,
        &sub,
        "otherdrive",
        &[("NOT-THIS-ONE", &d.key, &d.hash)],
        false,
    );
    let emu = Emulator::start(&dir);
    let client = emu.client();
    let acct = AZURITE_ACCOUNT;

    // Refusals change nothing.
    operator_receive(&emu, acct, "nosuchjob", &[&d.path]).assert_error(404, "ResourceNotFound");
    operator_receive(&emu, "otheraccount", "op", &[&d.path]).assert_error(404, "ResourceNotFound");
    let missing = t.path().join("missing.img");
    let r = operator_receive(&emu, acct, "op", &[&missing]);
    r.assert_error(400, "DriveNotFound");
    let message = r.json()["odata.error"]["message"]["value"].to_string();
    assert!(message.contains("missing.img"), "{message}");
    let plain = t.path().join("plain.img");
    std::fs::write(&plain, vec![0u8; 64 << 10]).unwrap();
    operator_receive(&emu, acct, "op", &[&plain]).assert_error(400, "DriveNotReadable");
    let r = operator_receive(&emu, acct, "otherdrive", &[&d.path]);
    r.assert_error(400, "DriveNotInJob");
    assert!(
        r.json().to_string().contains("NOT-THIS-ONE"),
        "the message lists the job's drives"
    );
    operator_receive(&emu, acct, "op", &[&d.path, &d.path]).assert_error(400, "DriveNotInJob");
    operator_receive(&emu, acct, "op", &[]).assert_error(400, "InvalidRequestBody");
    let path = format!("/_operator/storageaccounts/{acct}/jobs/op/receive");
    raw(&emu, true, "POST", &path, &[], Some(b"{\"Drive\":[]}")).assert_error(400, "InvalidRequestBody");
    raw(&emu, false, "POST", &path, &[], Some(b"{\"Drives\":[]}")).assert_error(403, "ForbiddenError");
    assert_eq!(receive_status(&emu, acct, "op").unwrap_err().status, 404);
    assert_eq!(stored(&dir, &sub, "op").state, JobState::Shipping);
    assert_eq!(stored(&dir, &sub, "otherdrive").state, JobState::Shipping);

    // With the storage account down, the import waits (retrying) and the receive is seen running.
    az.stop();
    let r = operator_receive(&emu, acct, "op", &[&d.path]);
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["Running"], true);
    assert_eq!(r.json()["DriveIds"], serde_json::json!([d.id]));
    operator_receive(&emu, acct, "op", &[&d.path]).assert_error(409, "ReceiveInProgress");
    assert!(receive_status(&emu, acct, "op").unwrap().running);
    let job = client.get_job(acct, "op").unwrap();
    assert!(
        matches!(
            job.properties.state,
            Some(JobState::Received | JobState::Transferring)
        ),
        "{:?}",
        job.properties.state
    );
    assert!(matches!(
        job.drives()[0].state,
        Some(DriveState::Received | DriveState::Transferring)
    ));

    // The customer's Update Job during the import is kept (the import changes the job as stored).
    let mut update = JobUpdate::default();
    let address = ReturnAddress {
        name: "Backup Admin".into(),
        address: "2 Data Centre Road".into(),
        phone: "555-0199".into(),
        email: "admin@example.invalid".into(),
    };
    update.properties.return_address = Some(address.clone());
    client.update_job(acct, "op", &update).unwrap();

    // Stopping the emulator waits for the import, which goes on once the storage account is back.
    az.restart();
    emu.stop();
    assert_eq!(stored(&dir, &sub, "op").state, JobState::Completed);
    let emu = Emulator::start(&dir);
    let client = emu.client();
    let job = client.get_job(acct, "op").unwrap();
    assert_eq!(job.properties.state, Some(JobState::Completed));
    assert_eq!(job.properties.return_address, Some(address));
    let drive = &job.drives()[0];
    assert_eq!(drive.state, Some(DriveState::Completed));
    assert_eq!(drive.copy_status.as_deref(), Some("Completed"));
    assert_eq!(drive.bytes_succeeded, Some(data.len() as u64));
    assert!(drive
        .error_log_uri
        .as_deref()
        .unwrap()
        .contains("/waimportexport/waies/op_"));
    assert_eq!(read_blob(&container(&az, "seed"), "vm/disk.img"), data);
    assert_eq!(
        receive_status(&emu, acct, "op").unwrap_err().status,
        404,
        "receives are remembered while serve runs"
    );

    // The same drive for a second job, followed through the receive status: the blob is renamed.
    put_job(&dir, &sub, "op2", &[(&d.id, &d.key, &d.hash)], false);
    let r = operator_receive(&emu, acct, "op2", &[&d.path]);
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let status = wait_received(&emu, acct, "op2", std::time::Duration::from_secs(180));
    assert_eq!(
        (status.final_state, status.error),
        (Some(JobState::Completed), None)
    );
    assert_eq!(
        client.get_job(acct, "op2").unwrap().properties.state,
        Some(JobState::Completed)
    );
    assert_eq!(read_blob(&container(&az, "seed"), "vm/disk (2).img"), data);

    // A finished job takes no more drives.
    operator_receive(&emu, acct, "op", &[&d.path]).assert_error(409, "InvalidJobState");
}
