//! A client nobody here wrote: curl, with the management certificate taken out of the publish-settings file
//! and converted to PEM by `openssl pkcs12 -nodes -passin pass:`, lists locations and creates a job. Without
//! a certificate the TLS handshake succeeds and the service answers 403 with an `odata.error` body.

use crate::harness::{init_dir, Emulator};
use base64::Engine;
use seedship_shared::publish_settings::PublishSettings;
use std::path::Path;
use std::process::Command;

fn tool(name: &str, args: &[&str], dir: &Path) -> String {
    let out = Command::new(name)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{name} is needed for this test (apt-get install {name}): {e}"));
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs curl; returns (status, body).
fn curl(dir: &Path, args: &[&str]) -> (u16, serde_json::Value) {
    // curl's default "Accept: */*" is refused with 406, as the service documents
    let mut all = vec![
        "-H",
        "Accept: application/json",
        "-sS",
        "-o",
        "body.json",
        "-w",
        "%{http_code}",
        "--cacert",
        "ca.pem",
    ];
    all.extend_from_slice(args);
    let status: u16 = tool("curl", &all, dir).trim().parse().unwrap();
    let body = std::fs::read(dir.join("body.json")).unwrap_or_default();
    let json = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    (status, json)
}

#[test]
fn curl_with_the_certificate_from_the_publish_settings() {
    let dir = init_dir();
    let emu = Emulator::start(dir.path());
    let d = dir.path();
    let ps = PublishSettings::load(&d.join("emulator.publishsettings")).unwrap();
    let sub = ps.subscription(&emu.sub).unwrap();
    // what the publish-settings file carries, not the emulator's own copy
    let pfx = base64::engine::general_purpose::STANDARD.encode(&sub.management_certificate);
    std::fs::write(
        d.join("from-settings.pfx"),
        base64::engine::general_purpose::STANDARD.decode(pfx).unwrap(),
    )
    .unwrap();
    tool(
        "openssl",
        &[
            "pkcs12",
            "-in",
            "from-settings.pfx",
            "-nodes",
            "-passin",
            "pass:",
            "-out",
            "mgmt.pem",
        ],
        d,
    );

    let base = format!(
        "{}/services/importexport",
        sub.service_management_url.clone() + "/" + &sub.id
    );
    let v = "x-ms-version: 2014-11-01";
    let (status, body) = curl(
        d,
        &[
            "--cert",
            "mgmt.pem",
            "-H",
            v,
            &format!("{base}/locations?originlocation=West%20US"),
        ],
    );
    assert_eq!(status, 200);
    assert_eq!(body["value"][0]["Name"], "West US");

    let job = r#"{"Name":"curljob","Properties":{"StorageAccountKey":"a2V5","Location":"West US","Type":"Import"},
        "DriveList":[{"DriveId":"CURL0001","BitLockerKey":"259358-100188-581471-154165-090552-296406-410091-426844",
        "ManifestFile":"\\DriveManifest.xml","ManifestHash":"B306C4B34DAA0E99957A4B9C779D2FA2"}]}"#;
    let url = format!("{base}/storageaccounts/seedacct/jobs/curljob");
    let ct = "Content-Type: application/json";
    let (status, _) = curl(
        d,
        &[
            "--cert",
            "mgmt.pem",
            "-X",
            "PUT",
            "-H",
            v,
            "-H",
            ct,
            "--data-binary",
            job,
            &url,
        ],
    );
    assert_eq!(status, 201);
    let (status, body) = curl(d, &["--cert", "mgmt.pem", "-H", v, &url]);
    assert_eq!(status, 200);
    assert_eq!(body["Properties"]["State"], "Creating");
    assert_eq!(body["DriveList"][0]["DriveId"], "CURL0001");

    // without the certificate: refused by the HTTP layer with 403 odata.error
    let (status, body) = curl(d, &["-H", v, &format!("{base}/locations")]);
    assert_eq!(status, 403);
    assert_eq!(
        body["odata.error"]["azure.values"][0]["ExtendedCode"],
        "ForbiddenError"
    );
    // and our own client sees the job curl made
    assert_eq!(emu.client().list_jobs().unwrap()[0].name, "curljob");
}
