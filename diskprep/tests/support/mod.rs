//! The harness of tests/api.rs: an in-process emulator, the diskprep binary (plain and on a pseudo-terminal),
//! and a small staged job.

use seedship_e2e::{descriptor, noise, stage_job};
use seedship_emulator::{InitOptions, ServeConfig};
use seedship_shared::api::{ApiClientOptions, BlockingApiClient};
use seedship_shared::host::hostname;
use seedship_shared::publish_settings::PublishSettings;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const SUB: &str = "afb1a4eb-bc88-4ce1-b1af-dfec80067464";
pub const ACCOUNT: &str = "seedacct";
pub const STORAGE_KEY: &str = "c2VlZHNoaXAtdGVzdC1rZXktbmV2ZXItcHJpbnRlZA==";

/// One emulator, stopped when dropped.
pub struct Emulator {
    dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Emulator {
    pub fn start(dir: &Path) -> Emulator {
        seedship_emulator::init(&InitOptions {
            dir: dir.to_path_buf(),
            subscription_id: Some(SUB.into()),
            subscription_name: "test".into(),
            storage_account: None,
            url: None,
            listen_port: None,
        })
        .expect("emulator init");
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let config = ServeConfig {
            dir: dir.to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
        };
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let bound = seedship_emulator::bind(&config).await.expect("bind");
                url_tx.send(bound.url().to_string()).unwrap();
                bound
                    .run(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        url_rx.recv().expect("emulator started");
        Emulator {
            dir: dir.to_path_buf(),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn publish_settings(&self) -> PathBuf {
        self.dir.join("emulator.publishsettings")
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn client_options(&self) -> ApiClientOptions {
        let ps = PublishSettings::load(&self.publish_settings()).unwrap();
        ApiClientOptions::from_subscription(ps.subscription(SUB).unwrap())
            .unwrap()
            .with_management_ca_file(&self.ca())
            .unwrap()
    }

    pub fn client(&self) -> BlockingApiClient {
        BlockingApiClient::new(self.client_options()).unwrap()
    }

    /// Operator endpoint: sets a job's state as the data centre would.
    pub fn set_state(&self, job: &str, state: &str) {
        let opts = self.client_options();
        let url = format!(
            "{}/{SUB}/services/importexport/_operator/storageaccounts/{ACCOUNT}/jobs/{job}/state",
            opts.service_management_url
        );
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(self.ca()).unwrap()).unwrap())
            .identity(reqwest::Identity::from_pem(opts.identity.pem()).unwrap())
            .build()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let status = rt.block_on(async {
            client
                .post(url)
                .header("accept", "application/json")
                .body(format!("{{\"State\":\"{state}\"}}"))
                .send()
                .await
                .expect("operator request")
                .status()
        });
        assert_eq!(status.as_u16(), 204);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn diskprep(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_seedship-diskprep"));
    c.args(args).stdin(Stdio::null());
    for var in [
        "SEEDSHIP_NO_CREATE_JOB",
        "SEEDSHIP_STORAGE_KEY",
        "SEEDSHIP_CONTAINER_SAS",
        "SEEDSHIP_LOCATION",
        "SEEDSHIP_MANAGEMENT_CA",
    ] {
        c.env_remove(var);
    }
    c.envs(envs.iter().copied());
    c.output().expect("run seedship-diskprep")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A small ready job `name` under `staging`, made by the source machine (this one), whose descriptor names the
/// emulator's publish-settings file.
pub fn make_job(staging: &Path, name: &str, publish_settings: &Path) -> PathBuf {
    let mut d = descriptor(name, &hostname());
    d.subscription = SUB.into();
    d.storage_account = ACCOUNT.into();
    d.publish_settings = publish_settings.to_path_buf();
    stage_job(staging, d, &[("data/0000", noise(3 << 20, 1))])
}

pub fn key_file_ids(job_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(job_dir.join("diskprep/keys.tsv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').nth(1).unwrap().to_owned())
        .collect()
}

/// Runs seedship-diskprep with standard input on a pseudo-terminal fed with `input` (what an operator types).
pub fn diskprep_tty(args: &[&str], envs: &[(&str, &str)], input: &str) -> Output {
    use std::io::{Read, Write};
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new file descriptors into the integers; the other arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty");
    // SAFETY: both descriptors were just opened and are owned here only.
    let (mut master, slave) = unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::fs::File::from_raw_fd(slave),
        )
    };
    let mut c = Command::new(env!("CARGO_BIN_EXE_seedship-diskprep"));
    c.args(args)
        .stdin(Stdio::from(slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in [
        "SEEDSHIP_NO_CREATE_JOB",
        "SEEDSHIP_STORAGE_KEY",
        "SEEDSHIP_LOCATION",
    ] {
        c.env_remove(var);
    }
    c.envs(envs.iter().copied());
    let child = c.spawn().expect("run seedship-diskprep");
    drop(c);
    master.write_all(input.as_bytes()).unwrap();
    let mut echo = master.try_clone().unwrap();
    let drain = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while echo.read(&mut buf).is_ok_and(|n| n > 0) {}
    });
    let out = child.wait_with_output().unwrap();
    drop(master);
    let _ = drain.join();
    out
}
