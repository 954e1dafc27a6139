//! The `seedship-emulator` binary: `init` twice into one directory, `serve` printing its address and writing
//! DIR/url, answering our client, and stopping cleanly (exit 0) on SIGTERM.

use crate::harness::SEED_SUB;
use seedship_shared::api::{ApiClientOptions, BlockingApiClient};
use seedship_shared::publish_settings::PublishSettings;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_seedship-emulator");

#[test]
fn init_serve_and_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("emu");
    let dir_s = dir.to_str().unwrap();
    let out = Command::new(BIN)
        .args(["init", "--dir", dir_s, "--subscription-id", SEED_SUB])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("emulator.publishsettings"));
    let again = Command::new(BIN).args(["init", "--dir", dir_s]).output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds an emulator"));

    let mut child = Command::new(BIN)
        .args(["-q", "serve", "--dir", dir_s, "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {line:?}"))
        .to_string();
    assert_eq!(std::fs::read_to_string(dir.join("url")).unwrap().trim(), url);

    let ps = PublishSettings::load(&dir.join("emulator.publishsettings")).unwrap();
    let opts = ApiClientOptions::from_subscription(ps.subscription(SEED_SUB).unwrap())
        .unwrap()
        .with_management_ca_file(&dir.join("ca.pem"))
        .unwrap();
    assert_eq!(opts.service_management_url, url);
    let client = BlockingApiClient::new(opts).unwrap();
    assert_eq!(client.list_locations(None).unwrap().len(), 4);

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "serve exits 0 after SIGTERM");
}
