//! An admin's first day by hand (issue 20): misconfiguration fails loudly and every error names its fix.
//! Each test runs the release-shaped binaries as a new user would: the agent and diskprep against
//! `seedship-emulator serve` (and Azurite where blobs are needed).
//!
//! Needs the binaries built: `cargo build -p seedship-agent -p seedship-diskprep -p seedship-emulator`.

use seedship_e2e::testkit::{cargo_bin, EmulatorServer};
use seedship_e2e::{output, text};
use seedship_shared::publish_settings::PublishSettings;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// An emulator folder made by `seedship-emulator init`, served on a free port of 127.0.0.1 (killed when
/// dropped).
struct Service {
    server: EmulatorServer,
    subscription: String,
}

impl Service {
    fn start(dir: &Path) -> Service {
        let o = output(Command::new(cargo_bin("seedship-emulator")).args(["init", "--dir", s(dir)]));
        assert!(o.status.success(), "emulator init: {}", text(&o));
        let server = EmulatorServer::start(dir, &dir.join("serve.log"));
        let ps = PublishSettings::load(&server.publish_settings()).unwrap();
        Service {
            server,
            subscription: ps.subscriptions[0].id.clone(),
        }
    }

    fn publish_settings(&self) -> PathBuf {
        self.server.publish_settings()
    }

    fn ca(&self) -> PathBuf {
        self.server.ca()
    }
}

/// A staging job set up with `offline start` and its initial backup staged.
struct Staged {
    root: PathBuf,
    state: PathBuf,
    staging: PathBuf,
}

impl Staged {
    /// The agent with this job's state directory and passphrase, without the service's CA unless given.
    fn agent(&self, ca: Option<&Path>) -> Command {
        let mut c = Command::new(cargo_bin("seedship-agent"));
        c.env("SEEDSHIP_STATE_DIR", &self.state)
            .env_remove("SEEDSHIP_MANAGEMENT_CA")
            .env_remove("SEEDSHIP_PASSPHRASE")
            .env_remove("SEEDSHIP_BLOB_ENDPOINT")
            .stdin(Stdio::null())
            .arg("--passphrase-file")
            .arg(self.root.join("pass"));
        if let Some(ca) = ca {
            c.env("SEEDSHIP_MANAGEMENT_CA", ca);
        }
        c
    }
}

fn stage(root: &Path, svc: &Service, job: &str) -> Staged {
    let st = Staged {
        root: root.to_path_buf(),
        state: root.join("state"),
        staging: root.join("staging"),
    };
    let src = root.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&st.staging).unwrap();
    std::fs::write(src.join("a.txt"), "first day\n".repeat(100)).unwrap();
    std::fs::write(root.join("pass"), "a long enough test passphrase\n").unwrap();
    let o = output(st.agent(None).args([
        "offline",
        "start",
        "--staging",
        s(&st.staging),
        "--job-name",
        job,
        "--publish-settings",
        s(&svc.publish_settings()),
        "--subscription",
        &svc.subscription,
        "--storage-account",
        "seedacct1",
        "--container",
        "seed",
        "--source",
        s(&src),
    ]));
    assert!(o.status.success(), "offline start: {}", text(&o));
    let o = output(st.agent(None).arg("backup"));
    assert!(o.status.success(), "backup: {}", text(&o));
    st
}

/// Point 1: a certificate the agent does not trust is a setting to fix (exit 1 naming `--management-ca`),
/// never "waiting" (exit 75, which a scheduled run counts as success).
#[test]
fn an_untrusted_service_certificate_fails_and_names_management_ca() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("emu"));
    let st = stage(&dir.path().join("job"), &svc, "firstday1");
    let o = output(st.agent(None).arg("backup"));
    let out = text(&o);
    assert_eq!(code(&o), 1, "{out}");
    assert!(out.contains("--management-ca"), "{out}");
    assert!(!out.contains("waiting for import job"), "{out}");
    // with the CA trusted the same run waits for the job that does not exist yet
    let o = output(st.agent(Some(&svc.ca())).arg("backup"));
    assert_eq!(code(&o), 75, "{}", text(&o));
    assert!(text(&o).contains("does not exist yet"), "{}", text(&o));
    // a service that is really gone is still "waiting"
    drop(svc);
    let o = output(st.agent(Some(&dir.path().join("emu/ca.pem"))).arg("backup"));
    assert_eq!(code(&o), 75, "{}", text(&o));
    assert!(text(&o).contains("did not answer"), "{}", text(&o));
}

/// Point 4: the publish-settings file moved after `offline start`: the error says the path once and how to
/// give the new one, and `backup --publish-settings FILE` uses it.
#[test]
fn a_moved_publish_settings_file_is_given_with_publish_settings() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("emu"));
    let st = stage(&dir.path().join("job"), &svc, "firstday4");
    let moved = dir.path().join("moved.publishsettings");
    std::fs::rename(svc.publish_settings(), &moved).unwrap();
    let o = output(st.agent(Some(&svc.ca())).arg("backup"));
    let out = text(&o);
    assert_eq!(code(&o), 1, "{out}");
    assert!(out.contains("emulator.publishsettings does not exist"), "{out}");
    assert!(out.contains("--publish-settings FILE"), "{out}");
    assert!(!out.contains("os error"), "{out}");
    let o = output(
        st.agent(Some(&svc.ca()))
            .args(["backup", "--publish-settings"])
            .arg(&moved),
    );
    assert_eq!(code(&o), 75, "{}", text(&o));
    assert!(text(&o).contains("does not exist yet"), "{}", text(&o));
}
