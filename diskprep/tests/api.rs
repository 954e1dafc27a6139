//! The import job against the real emulator: seedship-emulator runs in-process (its library, on 127.0.0.1:0
//! in a thread with its own runtime) and seedship-diskprep runs as its binary, as an operator would run it.
//! The harness is in support/mod.rs.

mod support;

use seedship_shared::api::{Drive, Job, JobProperties, JobState, JobType};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use support::*;

#[test]
fn job_created_shipped_followed_and_deleted() {
    let setup = JobSetup::new();
    let (emu, job_dir, s, ca) = (&setup.emu, &setup.job_dir, &setup.dir.s, &setup.ca);
    let prep = setup.prep();
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
    assert_eq!(ids, key_file_ids(job_dir));
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
    // the same as one JSON document, read back with its serde type; nothing else on stdout
    let o = u(&["--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let st: seedship_diskprep::report::JobStatusReport =
        serde_json::from_slice(&o.stdout).expect("stdout is one JobStatusReport document");
    assert_eq!((st.job.as_str(), st.state.as_deref()), ("job1", Some("Shipping")));
    assert_eq!(st.drives.len(), 1);
    assert_eq!(st.drives[0].drive_id, ids[0]);
    assert_eq!(st.delivery_package.unwrap().tracking_number, "1Z999");
    assert!(!st.deleted);

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
    // issue 20 point 11: a rerun of the preparation on the Completed job says what is next, not to ship
    let o = diskprep(&prep, &env);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("The import is complete") && out.contains("seedship-agent backup"),
        "{out}"
    );
    assert!(
        !out.contains("After sending it") && !out.contains("Ship the drives to"),
        "{out}"
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
        let mut a = one_drive(&s, &img, "40M");
        a.extend(["--management-ca", ca.as_str()]);
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
    let mut prep = one_drive(&s, &img, "40M");
    prep.extend(["--location", "West US"]);
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

#[test]
fn an_operator_answers_on_the_terminal_and_only_yes_commits() {
    let setup = JobSetup::new();
    let (emu, s) = (&setup.emu, &setup.dir.s);
    let env = [("SEEDSHIP_MANAGEMENT_CA", setup.ca.as_str())];
    let prep = one_drive(s, &setup.img, "40M");

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

/// Issue 20 point 11: a dry run shows the drive id the real run will use (the same on every dry run) and the
/// location the job would be created at.
#[test]
fn a_dry_run_shows_the_real_drive_id_and_the_location() {
    let setup = JobSetup::new();
    let (emu, job_dir) = (&setup.emu, &setup.job_dir);
    let mut args = setup.prep();
    let env = [("SEEDSHIP_STORAGE_KEY", STORAGE_KEY)];
    let drive_id = |out: &str| -> String {
        out.lines()
            .find_map(|l| l.trim().strip_prefix("drive 1 "))
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no drive line in: {out}"))
            .to_owned()
    };
    args.push("--dry-run");
    let first = text(&diskprep(&args, &env));
    let second = text(&diskprep(&args, &env));
    assert_eq!(drive_id(&first), drive_id(&second), "{first}\n---\n{second}");
    assert!(
        first.contains("The import job would be created at location North Europe")
            && first.contains("West Europe is closed"),
        "{first}"
    );
    assert!(
        first.contains("Ship the drives to the North Europe data centre"),
        "{first}"
    );
    assert!(
        emu.client().list_jobs().unwrap().is_empty(),
        "a dry run created a job"
    );
    args.pop();
    let o = diskprep(&args, &env);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(key_file_ids(job_dir), vec![drive_id(&first)]);
}
