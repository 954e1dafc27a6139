//! The import job against the real emulator: seedship-emulator runs in-process (its library, on 127.0.0.1:0
//! in a thread with its own runtime) and seedship-diskprep runs as its binary, as an operator would run it.

use seedship_emulator::{InitOptions, ServeConfig};
use seedship_shared::api::{
    ApiClientOptions, BlockingApiClient, Drive, Job, JobProperties, JobState, JobType,
};
use seedship_shared::host::hostname;
use seedship_shared::publish_settings::PublishSettings;
use seedship_shared::staging::{JobDescriptor, JobState as StagingState, StagedBlob, BLOBS_DIR};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const SUB: &str = "afb1a4eb-bc88-4ce1-b1af-dfec80067464";
const ACCOUNT: &str = "seedacct";
const STORAGE_KEY: &str = "c2VlZHNoaXAtdGVzdC1rZXktbmV2ZXItcHJpbnRlZA==";

/// One emulator, stopped when dropped.
struct Emulator {
    dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Emulator {
    fn start(dir: &Path) -> Emulator {
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

    fn publish_settings(&self) -> PathBuf {
        self.dir.join("emulator.publishsettings")
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn client_options(&self) -> ApiClientOptions {
        let ps = PublishSettings::load(&self.publish_settings()).unwrap();
        ApiClientOptions::from_subscription(ps.subscription(SUB).unwrap())
            .unwrap()
            .with_management_ca_file(&self.ca())
            .unwrap()
    }

    fn client(&self) -> BlockingApiClient {
        BlockingApiClient::new(self.client_options()).unwrap()
    }

    /// Operator endpoint: sets a job's state as the data centre would.
    fn set_state(&self, job: &str, state: &str) {
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

fn diskprep(args: &[&str], envs: &[(&str, &str)]) -> Output {
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

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A small ready job `name` under `staging`, made by the source machine (this one), whose descriptor names the
/// emulator's publish-settings file.
fn make_job(staging: &Path, name: &str, publish_settings: &Path) -> PathBuf {
    let dir = staging.join(name);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let bytes: Vec<u8> = (0..(3 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let p = dir.join(BLOBS_DIR).join("data/0000");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, &bytes).unwrap();
    JobDescriptor {
        format: 1,
        job_name: name.into(),
        subscription: SUB.into(),
        storage_account: ACCOUNT.into(),
        container: "seed".into(),
        publish_settings: publish_settings.to_path_buf(),
        source_host: hostname(),
        repository_id: "r1".into(),
        state: StagingState::BackupComplete,
        created: 1_700_000_000,
        blobs: vec![StagedBlob {
            name: "data/0000".into(),
            len: bytes.len() as u64,
            blake3: blake3::hash(&bytes).to_hex().to_string(),
        }],
    }
    .save(&dir)
    .unwrap();
    dir
}

fn key_file_ids(job_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(job_dir.join("diskprep/keys.tsv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').nth(1).unwrap().to_owned())
        .collect()
}

#[test]
fn job_created_shipped_followed_and_deleted() {
    let t = tempfile::tempdir().unwrap();
    let emu = Emulator::start(&t.path().join("emulator"));
    let staging = t.path().join("staging");
    let job_dir = make_job(&staging, "job1", &emu.publish_settings());
    let s = format!("s:{}", staging.display());
    let ca = emu.ca().display().to_string();
    let img = t.path().join("d1.img").display().to_string();
    let prep = [
        s.as_str(),
        "--drive",
        &img,
        "--create-image",
        "40M",
        "--yes",
        "--pbkdf",
        "pbkdf2",
        "--location",
        "West Europe",
        "--management-ca",
        &ca,
    ];
    let env = [("SEEDSHIP_STORAGE_KEY", STORAGE_KEY)];

    // drives ready, then the job: West Europe is closed, the service names North Europe
    let o = diskprep(&prep, &env);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("Created import job job1 in storage account seedacct (location North Europe)"),
        "{out}"
    );
    assert!(out.contains("Location West Europe is closed"), "{out}");
    for line in [
        "Windows Azure Import Export Service",
        "1 Emulator Road",
        "Dublin, Dublin D24",
        "Ireland",
    ] {
        assert!(out.contains(line), "address line {line:?} missing: {out}");
    }
    assert!(out.contains("Supported carriers: FedEx"), "{out}");
    let link = format!("/{SUB}/services/importexport/storageaccounts/{ACCOUNT}/jobs/job1");
    assert!(out.contains(&link), "{out}");
    assert!(
        !out.contains(STORAGE_KEY),
        "the storage key must never be printed"
    );
    let client = emu.client();
    let job = client.get_job(ACCOUNT, "job1").unwrap();
    assert_eq!(job.properties.state, Some(JobState::Creating));
    assert_eq!(job.properties.location.as_deref(), Some("North Europe"));
    let ids: Vec<String> = job.drives().iter().map(|d| d.drive_id.clone()).collect();
    assert_eq!(ids, key_file_ids(&job_dir));
    assert_eq!(
        job.drives()[0].manifest_file.as_deref(),
        Some("\\DriveManifest.xml")
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(job_dir.join("diskprep/job.json")).unwrap()).unwrap();
    assert_eq!(record["job_name"], "job1");
    assert_eq!(record["location"], "North Europe");

    // a rerun creates nothing new and shows the address again
    let o = diskprep(&prep, &env);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("Import job job1 already exists"), "{out}");
    assert!(out.contains("1 Emulator Road"), "{out}");
    assert_eq!(client.list_jobs().unwrap().len(), 1);

    // u: refuses a carrier the location does not take, and sends nothing
    let u = |extra: &[&str]| {
        let mut a = vec!["u:", s.as_str(), "--management-ca", ca.as_str()];
        a.extend_from_slice(extra);
        diskprep(&a, &[])
    };
    let answers = [
        "--tracking-number",
        "1Z999",
        "--ship-date",
        "2026-11-20",
        "--return-name",
        "Backup Admin",
        "--return-address",
        "1 Main St, Springfield 12345, USA",
        "--return-phone",
        "+1 555 0100",
        "--return-email",
        "admin@example.com",
        "--return-carrier",
        "FedEx",
        "--return-carrier-account",
        "123456789",
        "--yes",
    ];
    let mut wrong = vec!["--carrier", "Pigeon"];
    wrong.extend_from_slice(&answers);
    let o = u(&wrong);
    let out = text(&o);
    assert!(!o.status.success());
    assert!(
        out.contains("carrier 'Pigeon' is not accepted at North Europe; use one of: FedEx"),
        "{out}"
    );
    assert_eq!(
        client.get_job(ACCOUNT, "job1").unwrap().properties.state,
        Some(JobState::Creating)
    );

    // without --yes and without a terminal nothing is sent
    let mut unconfirmed = vec!["--carrier", "fedex"];
    unconfirmed.extend_from_slice(&answers[..answers.len() - 1]);
    let o = u(&unconfirmed);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("--yes"), "{}", text(&o));
    assert_eq!(
        client.get_job(ACCOUNT, "job1").unwrap().properties.state,
        Some(JobState::Creating)
    );

    // delete is refused in Shipping, so first ship
    let mut right = vec!["--carrier", "fedex"];
    right.extend_from_slice(&answers);
    let o = u(&right);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("Tracking number: 1Z999"), "{out}");
    assert!(out.contains("now Shipping"), "{out}");
    let saved = job_dir.join("diskprep/shipping.json");
    assert!(out.contains(&saved.display().to_string()), "{out}");
    let mode = std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let job = client.get_job(ACCOUNT, "job1").unwrap();
    assert_eq!(job.properties.state, Some(JobState::Shipping));
    let pkg = job.properties.delivery_package.clone().unwrap();
    assert_eq!(
        (pkg.carrier_name.as_str(), pkg.tracking_number.as_str()),
        ("FedEx", "1Z999")
    );
    assert_eq!(pkg.drive_count, Some(1));
    assert_eq!(job.properties.return_address.unwrap().email, "admin@example.com");

    // later, u: shows the status
    let o = u(&[]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("Import job job1 (storage account seedacct): Shipping"),
        "{out}"
    );
    assert!(out.contains(&format!("Drive {}: Specified", ids[0])), "{out}");
    assert!(out.contains("Sent with FedEx tracking number 1Z999"), "{out}");

    let del = || {
        diskprep(
            &["delete-job", s.as_str(), "--management-ca", ca.as_str(), "--yes"],
            &[],
        )
    };
    let o = del();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("is Shipping and cannot be deleted now"), "{out}");
    assert!(client.get_job(ACCOUNT, "job1").is_ok());

    emu.set_state("job1", "Completed");
    let o = u(&[]);
    assert!(
        text(&o).contains(&format!("Drive {}: Completed", ids[0])),
        "{}",
        text(&o)
    );
    let o = del();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("Deleted import job job1 (it was Completed)"),
        "{out}"
    );
    assert_eq!(client.get_job(ACCOUNT, "job1").unwrap_err().status(), Some(404));
    assert!(!saved.exists(), "the local shipping details go with the job");

    // a rerun of the preparation does not bring a deleted job back
    let o = diskprep(&prep, &env);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("is not created again"), "{}", text(&o));
    assert!(client.list_jobs().unwrap().is_empty());
}

#[test]
fn problems_are_refused_before_any_drive_is_written() {
    let t = tempfile::tempdir().unwrap();
    let emu = Emulator::start(&t.path().join("emulator"));
    let ca = emu.ca().display().to_string();
    let client = emu.client();
    let run = |staging: &Path, job: &str, extra: &[&str], env: &[(&str, &str)]| {
        make_job(staging, job, &emu.publish_settings());
        let img = staging.join("d.img").display().to_string();
        let s = format!("s:{}", staging.display());
        let mut a = vec![
            s.as_str(),
            "--drive",
            &img,
            "--create-image",
            "40M",
            "--yes",
            "--pbkdf",
            "pbkdf2",
            "--management-ca",
            &ca,
        ];
        a.extend_from_slice(extra);
        let o = diskprep(&a, env);
        let formatted = std::fs::read(&img)
            .map(|b| b.iter().any(|&x| x != 0))
            .unwrap_or(false);
        (o, formatted)
    };

    // no storage key, no terminal to ask on
    let (o, formatted) = run(&t.path().join("s1"), "job1", &["--location", "West US"], &[]);
    let out = text(&o);
    assert!(!o.status.success());
    assert!(out.contains("SEEDSHIP_STORAGE_KEY"), "{out}");
    assert!(
        !formatted,
        "nothing may be written when the job cannot be created"
    );

    // no location: the message lists the service's locations
    let (o, formatted) = run(
        &t.path().join("s2"),
        "job2",
        &[],
        &[("SEEDSHIP_STORAGE_KEY", STORAGE_KEY)],
    );
    let out = text(&o);
    assert!(!o.status.success());
    assert!(
        out.contains("--location") && out.contains("West US, East US, North Europe, West Europe"),
        "{out}"
    );
    assert!(!formatted);

    // a job of that name with other drives is refused
    let other = Job {
        name: "job3".into(),
        properties: JobProperties {
            storage_account_key: Some(STORAGE_KEY.into()),
            location: Some("West US".into()),
            job_type: Some(JobType::Import),
            ..Default::default()
        },
        drive_list: Some(vec![Drive {
            drive_id: "OTHERDRIVE1".into(),
            bit_locker_key: Some("000000-000000-000000-000000-000000-000000-000000-000000".into()),
            manifest_file: Some("\\DriveManifest.xml".into()),
            manifest_hash: Some("0123456789ABCDEF0123456789ABCDEF".into()),
            ..Default::default()
        }]),
        ..Default::default()
    };
    client.put_job(ACCOUNT, &other).unwrap();
    let (o, formatted) = run(
        &t.path().join("s3"),
        "job3",
        &["--location", "West US"],
        &[("SEEDSHIP_STORAGE_KEY", STORAGE_KEY)],
    );
    let out = text(&o);
    assert!(!o.status.success());
    assert!(
        out.contains("import job job3 already exists in storage account seedacct with drives OTHERDRIVE1"),
        "{out}"
    );
    assert!(!formatted);
    assert_eq!(
        client.get_job(ACCOUNT, "job3").unwrap().drives()[0].drive_id,
        "OTHERDRIVE1"
    );

    // --no-create-job prepares the drives only
    let (o, formatted) = run(&t.path().join("s4"), "job4", &["--no-create-job"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(formatted);
    assert_eq!(client.get_job(ACCOUNT, "job4").unwrap_err().status(), Some(404));
}

#[test]
fn p_gives_the_publish_settings_when_the_recorded_path_is_not_here() {
    let t = tempfile::tempdir().unwrap();
    let emu = Emulator::start(&t.path().join("emulator"));
    let staging = t.path().join("staging");
    make_job(&staging, "job1", Path::new("/nowhere/agent.publishsettings"));
    let s = format!("s:{}", staging.display());
    let p = format!("p:{}", emu.publish_settings().display());
    let ca = emu.ca().display().to_string();
    let img = t.path().join("d1.img").display().to_string();
    let mut prep = vec![
        s.as_str(),
        "--drive",
        &img,
        "--create-image",
        "40M",
        "--yes",
        "--pbkdf",
        "pbkdf2",
        "--location",
        "West US",
    ];
    let env = [
        ("SEEDSHIP_STORAGE_KEY", STORAGE_KEY),
        ("SEEDSHIP_MANAGEMENT_CA", ca.as_str()),
    ];

    // the recorded path does not exist here: refused before any drive is written, asking for p:
    let o = diskprep(&prep, &env);
    let out = text(&o);
    assert!(!o.status.success());
    assert!(
        out.contains("/nowhere/agent.publishsettings") && out.contains("p:<file>"),
        "{out}"
    );

    prep.push(&p);
    let o = diskprep(&prep, &env);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("2045 Lafayette Street") && out.contains("Santa Clara, CA 95050"),
        "{out}"
    );
    let job = emu.client().get_job(ACCOUNT, "job1").unwrap();
    assert_eq!(job.properties.location.as_deref(), Some("West US"));

    // u: the same way; the CA comes from the environment
    let o = diskprep(&["u:", s.as_str()], &env);
    assert!(text(&o).contains("p:<file>"), "{}", text(&o));
    let o = diskprep(&["u:", s.as_str(), p.as_str()], &env);
    let out = text(&o);
    assert!(!o.status.success(), "no carrier given and no terminal: {out}");
    assert!(out.contains("--carrier"), "{out}");
}

/// Runs seedship-diskprep with standard input on a pseudo-terminal fed with `input` (what an operator types).
fn diskprep_tty(args: &[&str], envs: &[(&str, &str)], input: &str) -> Output {
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

#[test]
fn an_operator_answers_on_the_terminal_and_only_yes_commits() {
    let t = tempfile::tempdir().unwrap();
    let emu = Emulator::start(&t.path().join("emulator"));
    let staging = t.path().join("staging");
    make_job(&staging, "job1", &emu.publish_settings());
    let s = format!("s:{}", staging.display());
    let ca = emu.ca().display().to_string();
    let img = t.path().join("d1.img").display().to_string();
    let env = [("SEEDSHIP_MANAGEMENT_CA", ca.as_str())];
    let prep = [
        s.as_str(),
        "--drive",
        &img,
        "--create-image",
        "40M",
        "--yes",
        "--pbkdf",
        "pbkdf2",
    ];

    // the storage key (not echoed) and the region are asked before anything is written
    let o = diskprep_tty(&prep, &env, &format!("{STORAGE_KEY}\nEast US\n"));
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("Key of storage account seedacct (not shown)"),
        "{out}"
    );
    assert!(
        out.contains("Region of storage account seedacct (West US, East US"),
        "{out}"
    );
    assert!(
        out.contains("Created import job job1 in storage account seedacct (location East US)"),
        "{out}"
    );
    assert!(
        !out.contains(STORAGE_KEY),
        "the storage key must never be printed"
    );

    // every answer typed, then "no": nothing is sent
    let answers =
        "\nfedex\n1Z42\n\nAda Admin\n2 Side St, Dublin\n+353 1 0000\nada@example.com\nFedEx\n4711\n";
    let o = diskprep_tty(&["u:", s.as_str()], &env, &format!("{answers}no\n"));
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("Tracking number: 1Z42") && out.contains("Type yes to go on"),
        "{out}"
    );
    assert!(out.contains("not confirmed; nothing was sent"), "{out}");
    let client = emu.client();
    assert_eq!(
        client.get_job(ACCOUNT, "job1").unwrap().properties.state,
        Some(JobState::Creating)
    );

    // the same answers and "yes": Shipping, with the defaults for drive count and date
    let o = diskprep_tty(&["u:", s.as_str()], &env, &format!("{answers}yes\n"));
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let job = client.get_job(ACCOUNT, "job1").unwrap();
    assert_eq!(job.properties.state, Some(JobState::Shipping));
    let pkg = job.properties.delivery_package.unwrap();
    assert_eq!(pkg.drive_count, Some(1));
    assert_eq!(pkg.tracking_number, "1Z42");
    let date = pkg.ship_date.unwrap();
    assert!(date.len() == 10 && date.starts_with("20"), "{date}");
    assert_eq!(
        job.properties.return_shipping.unwrap().carrier_account_number,
        "4711"
    );
}
