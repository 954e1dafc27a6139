//! `seedship-diskprep PrepImport` (WAImportExport's spellings) and `create-job --journal`: seed 002's
//! command as written (Linux paths for drive letters), several sessions on one drive, resume and abort of the
//! latest session (the first one after SIGKILL too), an already encrypted drive (`/bk:`), and each drive read
//! by an independent reader (cryptsetup + Python AES-XTS + GNU tar + MD5, tests/python/drive_check.py);
//! then an import job from three journals at the emulator, and its data centre importing the drives into
//! Azurite.

mod support;

use seedship_e2e::testkit::{run_python, Azurite, AZURITE_ACCOUNT, AZURITE_KEY};
use seedship_e2e::{allocated, descriptor, noise, stage_job};
use seedship_shared::host::hostname;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{diskprep, diskprep_tty, text};

const MIB: usize = 1 << 20;

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// A staged job (container `seed`): `config` (one page), `data/0000` (`data_mib` MiB with a 4 MiB hole),
/// `index/0000` (4 MiB).
fn staged(dir: &Path, data_mib: usize) -> PathBuf {
    let mut volume = noise(data_mib * MIB, 7);
    volume[4 * MIB..8 * MIB].fill(0);
    stage_job(
        &dir.join("staging"),
        descriptor("job1", &hostname()),
        &[
            ("config", noise(512, 1)),
            ("data/0000", volume),
            ("index/0000", noise(4 * MIB, 3)),
        ],
    )
}

fn image(dir: &Path, name: &str, mib: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(mib << 20).unwrap();
    p
}

fn ok(o: &Output) -> String {
    let out = text(o);
    assert!(o.status.success(), "{out}");
    out
}

/// The drive's recovery key, as the journal records it.
fn journal_key(journal: &Path) -> String {
    let j = std::fs::read_to_string(journal).unwrap();
    j.lines()
        .find_map(|l| l.strip_prefix("RecoveryKey: "))
        .expect("the journal records the recovery key")
        .to_owned()
}

/// drive_check.py over one drive per `(image, journal)`; every blob of `job` must be found exactly.
fn independent_check(job: &Path, drives: &[(&Path, &Path)], work: &Path) -> serde_json::Value {
    let mut args = vec![
        "--job".to_owned(),
        s(job).to_owned(),
        "--work".to_owned(),
        s(work).to_owned(),
    ];
    std::fs::create_dir_all(work).unwrap();
    for (i, (img, journal)) in drives.iter().enumerate() {
        let kf = work.join(format!("key{i}"));
        std::fs::write(&kf, journal_key(journal)).unwrap();
        args.push("--drive".into());
        args.push(format!("{}:{}", s(img), s(&kf)));
        // diskprep's own reader agrees
        let o = diskprep(
            &["verify", "--drive", s(img)],
            &[("SEEDSHIP_RECOVERY_KEY", &journal_key(journal))],
        );
        ok(&o);
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_python("drive_check.py", &a, &[]);
    std::fs::remove_dir_all(work).unwrap();
    serde_json::from_str(&out).expect("drive_check.py prints JSON")
}

#[test]
fn seed_002_as_written_then_two_more_sessions_pass_the_interop_check() {
    let t = tempfile::tempdir().unwrap();
    let job = staged(t.path(), 12);
    let blobs = job.join("blobs");
    let img = image(t.path(), "g.img", 64);
    let jrn = t.path().join("g.jrn");
    let key = "c2VlZHNoaXAtdGVzdC1rZXktbmV2ZXItcHJpbnRlZA==";
    // Seed 002's command, the drive letter G replaced by an image path and the staging location by the job's
    // blobs folder; `/id: <SessionId>` and `/dstdir: <dir>/` with a space, as the page writes them.
    let cmd = [
        "PrepImport",
        &format!("/j:{}", s(&jrn)),
        "/id:",
        "session1",
        &format!("/sk:{key}"),
        "/BlobType:PageBlob",
        &format!("/t:{}", s(&img)),
        "/format",
        "/encrypt",
        &format!("/srcdir:{}/data/", s(&blobs)),
        "/dstdir:",
        "seed/data/",
        "--pbkdf",
        "pbkdf2",
    ];
    // A dry run shows the drive id to type, and writes nothing (not even the journal).
    let mut dry: Vec<&str> = cmd.to_vec();
    dry.push("--dry-run");
    let out = ok(&diskprep(&dry, &[]));
    assert!(!jrn.exists(), "a dry run writes no journal");
    let id = out
        .split("as drive ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    // Without /silentmode the tool asks, as WAImportExport does: type the drive id.
    let o = diskprep_tty(&cmd, &[], &format!("{id}\n"));
    let out = ok(&o);
    assert!(out.contains("About to FORMAT"), "{out}");
    assert!(
        out.contains("/sk:@FILE") && out.contains("SEEDSHIP_STORAGE_KEY"),
        "the secret on the command line is named with the safe ways: {out}"
    );
    assert!(!out.contains(key), "the key is never printed: {out}");
    let mode = std::fs::metadata(&jrn).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the journal holds the recovery key");
    let journal = std::fs::read_to_string(&jrn).unwrap();
    assert!(journal.contains(&format!("<DriveId>{id}</DriveId>")), "{journal}");

    // A second session: one file; a third: a v2 data set file. The drive is not formatted again.
    let kf = t.path().join("key.txt");
    std::fs::write(&kf, key).unwrap();
    ok(&diskprep(
        &[
            "PrepImport",
            &format!("/j:{}", s(&jrn)),
            "/id:session2",
            &format!("/sk:@{}", s(&kf)),
            &format!("/srcfile:{}/config", s(&blobs)),
            "/dstblob:seed/config",
            "/Disposition:overwrite",
            &format!("/logdir:{}", s(&t.path().join("logs"))),
        ],
        &[],
    ));
    let log = std::fs::read_to_string(t.path().join("logs/session2.log")).unwrap();
    assert!(
        log.contains("session session2") && log.contains("completed"),
        "{log}"
    );
    let csv = t.path().join("dataset.csv");
    std::fs::write(
        &csv,
        format!(
            "BasePath,DstBlobPathOrPrefix,BlobType,Disposition,MetadataFile,PropertiesFile\n\"{}/index/\",\"seed/index/\",PageBlob,rename,\"None\",None\n",
            s(&blobs)
        ),
    )
    .unwrap();
    let o = diskprep(
        &[
            "PrepImport",
            &format!("/j:{}", s(&jrn)),
            "/id:session3",
            &format!("/DataSet:{}", s(&csv)),
            "--json",
        ],
        &[],
    );
    let out = ok(&o);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{out}"));
    assert_eq!(
        doc["sessions"],
        serde_json::json!(["session1", "session2", "session3"])
    );
    assert_eq!(doc["drive_id"], id.as_str());

    // A fourth session with an id used before, and /format on a drive with sessions, are refused.
    let o = diskprep(
        &[
            "PrepImport",
            &format!("/j:{}", s(&jrn)),
            "/id:session3",
            &format!("/srcfile:{}/config", s(&blobs)),
            "/dstblob:seed/x",
        ],
        &[],
    );
    assert!(
        !o.status.success() && text(&o).contains("already has a session session3"),
        "{}",
        text(&o)
    );

    let check = independent_check(&job, &[(&img, &jrn)], &t.path().join("check"));
    let manifest = check["drives"][0]["manifest"].as_str().unwrap();
    for folder in [
        "\\session1\\seed\\data\\0000",
        "\\session2\\seed\\config",
        "\\session3\\seed\\index\\0000",
    ] {
        assert!(
            manifest.contains(folder),
            "each session in its own folder: {folder} in {manifest}"
        );
    }
    assert!(
        manifest.contains("<ImportDisposition>overwrite</ImportDisposition>"),
        "{manifest}"
    );
    assert_eq!(check["blobs"].as_object().unwrap().len(), 3, "{check}");
}

/// Starts `cmd`, SIGKILLs it once `ready()` holds; panics if it ends first.
fn kill_when(cmd: &[&str], ready: impl Fn() -> bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_seedship-diskprep"))
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if ready() {
            child.kill().unwrap();
            child.wait().unwrap();
            return;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("seedship-diskprep ended ({st}) before it could be killed");
        }
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn checkpoints(jrn: &Path, session: &str) -> usize {
    let j = std::fs::read_to_string(jrn).unwrap_or_default();
    j.split("[Type:SessionCheckpoint]")
        .skip(1)
        .filter(|r| r.lines().nth(1) == Some(&format!("SessionId: {session}")))
        .count()
}

#[test]
fn the_first_session_resumes_after_sigkill_and_the_latest_one_aborts() {
    let t = tempfile::tempdir().unwrap();
    let job = staged(t.path(), 40);
    let blobs = job.join("blobs");
    let img = image(t.path(), "d.img", 160);
    let jrn = t.path().join("d.jrn");
    let j = format!("/j:{}", s(&jrn));
    let first = [
        "PrepImport",
        &j,
        "/id:first",
        &format!("/t:{}", s(&img)),
        "/format",
        "/encrypt",
        "/silentmode",
        "/BlobType:PageBlob",
        &format!("/srcdir:{}/data/", s(&blobs)),
        "/dstdir:seed/data/",
        "--pbkdf",
        "pbkdf2",
    ];
    // SIGKILL inside the first session's data (unlike WAImportExport, a first session resumes).
    kill_when(&first, || allocated(&img) >= (16 + 12) << 20);
    let o = diskprep(&first, &[]);
    assert!(!o.status.success(), "the same command again does not start over");
    assert!(
        text(&o).contains("/ResumeSession") && text(&o).contains("/AbortSession"),
        "{}",
        text(&o)
    );
    let out = ok(&diskprep(&["PrepImport", &j, "/id:first", "/ResumeSession"], &[]));
    assert!(out.contains("Session first is on drive"), "{out}");

    // The second session killed mid-copy, then rolled back: the drive is as after the first session.
    let last_hash = |text: &str| {
        let from = text.rfind("<ManifestHash>").expect("a DriveInfo record") + "<ManifestHash>".len();
        text[from..].split('<').next().unwrap().to_owned()
    };
    let before = last_hash(&std::fs::read_to_string(&jrn).unwrap());
    let second = [
        "PrepImport",
        &j,
        "/id:second",
        &format!("/srcdir:{}/index/", s(&blobs)),
        "/dstdir:seed/index/",
    ];
    // index/0000 is 4 MiB: one checkpoint; kill once it is recorded, before the session ends.
    let third_src = format!("/srcdir:{}/data/", s(&blobs));
    let third = ["PrepImport", &j, "/id:third", &third_src, "/dstdir:seed/again/"];
    ok(&diskprep(&second, &[]));
    kill_when(&third, || checkpoints(&jrn, "third") >= 2);
    let o = diskprep(&["PrepImport", &j, "/id:second", "/AbortSession"], &[]);
    assert!(
        !o.status.success() && text(&o).contains("latest session"),
        "{}",
        text(&o)
    );
    let out = ok(&diskprep(&["PrepImport", &j, "/id:third", "/AbortSession"], &[]));
    assert!(
        out.contains("rolled back") && out.contains("sessions first, second"),
        "{out}"
    );
    // Then abort the complete second session too: the manifest is the first session's again.
    ok(&diskprep(&["PrepImport", &j, "/id:second", "/AbortSession"], &[]));
    let after = last_hash(&std::fs::read_to_string(&jrn).unwrap());
    assert_eq!(after, before, "rolled back to the first session's manifest");
    // A new session after the aborts: resumable, complete, and the whole drive reads back.
    kill_when(
        &[
            "PrepImport",
            &j,
            "/id:fourth",
            &format!("/srcdir:{}/index/", s(&blobs)),
            "/dstdir:seed/index/",
        ],
        || {
            std::fs::read_to_string(&jrn)
                .unwrap_or_default()
                .matches("SessionId: fourth")
                .count()
                >= 1
        },
    );
    ok(&diskprep(
        &["PrepImport", &j, "/id:fourth", "/ResumeSession"],
        &[],
    ));
    // config was never copied: put it on with a last session, then every blob is found exactly once.
    ok(&diskprep(
        &[
            "PrepImport",
            &j,
            "/id:fifth",
            &format!("/srcfile:{}/config", s(&blobs)),
            "/dstblob:seed/config",
        ],
        &[],
    ));
    let check = independent_check(&job, &[(&img, &jrn)], &t.path().join("check"));
    let manifest = check["drives"][0]["manifest"].as_str().unwrap();
    assert!(
        !manifest.contains("\\third\\") && !manifest.contains("\\second\\"),
        "{manifest}"
    );
}

#[test]
fn an_encrypted_drive_is_written_with_its_key_and_a_wrong_key_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let job = staged(t.path(), 8);
    let blobs = job.join("blobs");
    let img = image(t.path(), "e.img", 64);
    let first = t.path().join("first.jrn");
    ok(&diskprep(
        &[
            "PrepImport",
            &format!("/j:{}", s(&first)),
            "/id:old",
            &format!("/t:{}", s(&img)),
            "/format",
            "/encrypt",
            "/silentmode",
            &format!("/srcfile:{}/config", s(&blobs)),
            "/dstblob:seed/old",
            "--pbkdf",
            "pbkdf2",
        ],
        &[],
    ));
    let header = |p: &Path| std::fs::read(p).unwrap()[..16 * MIB].to_vec();
    let before_header = header(&img);
    let whole = std::fs::read(&img).unwrap();

    // A wrong key (well-formed, another drive's): refused, and not a byte of the drive changes.
    let wrong = t.path().join("wrong.key");
    std::fs::write(&wrong, "000011-000022-000033-000044-000055-000066-000077-000088").unwrap();
    let jrn = t.path().join("again.jrn");
    let cmd = |key: &Path| {
        vec![
            "PrepImport".to_owned(),
            format!("/j:{}", s(&jrn)),
            "/id:again".into(),
            format!("/t:{}", s(&img)),
            format!("/bk:@{}", s(key)),
            format!("/srcdir:{}/", s(&blobs)),
            "/dstdir:seed/".into(),
        ]
    };
    let args = cmd(&wrong);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = diskprep(&a, &[]);
    assert!(
        !o.status.success() && text(&o).contains("does not unlock"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("nothing was written"), "{}", text(&o));
    assert!(
        std::fs::read(&img).unwrap() == whole,
        "a refused key writes nothing"
    );

    // The right key (v2's drive set, AlreadyEncrypted): written without reformatting.
    let key = journal_key(&first);
    let set = t.path().join("driveset.csv");
    std::fs::write(
        &set,
        format!("DriveLetter,FormatOption,SilentOrPromptOnFormat,Encryption,ExistingBitLockerKey\n{},AlreadyFormatted,SilentMode,AlreadyEncrypted,{key}\n", s(&img)),
    )
    .unwrap();
    let out = ok(&diskprep(
        &[
            "PrepImport",
            &format!("/j:{}", s(&jrn)),
            "/id:again",
            &format!("/InitialDriveSet:{}", s(&set)),
            &format!("/srcdir:{}/", s(&blobs)),
            "/dstdir:seed/",
        ],
        &[],
    ));
    assert!(!out.contains("About to FORMAT"), "{out}");
    assert!(
        header(&img) == before_header,
        "the LUKS2 header is the same: not reformatted"
    );
    assert_eq!(journal_key(&jrn), key);
    let id = |j: &Path| {
        std::fs::read_to_string(j)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("DriveId: "))
            .unwrap()
            .to_owned()
    };
    assert_eq!(id(&jrn), id(&first), "the drive id is the drive's label");
    independent_check(&job, &[(&img, &jrn)], &t.path().join("check"));
}

/// Azurite, and the emulator (in `dir/emulator`) importing into it.
fn emulator_with_azurite(dir: &Path) -> (Azurite, seedship_emuharness::Emulator, PathBuf) {
    let azurite = Azurite::start();
    let emu_dir = dir.join("emulator");
    seedship_emulator::init(&seedship_emulator::InitOptions {
        dir: emu_dir.clone(),
        subscription_id: Some(support::SUB.into()),
        subscription_name: "test".into(),
        storage_account: Some(seedship_emulator::config::StorageAccountConfig {
            name: AZURITE_ACCOUNT.into(),
            endpoint: azurite.endpoint(),
            key: AZURITE_KEY.into(),
        }),
        url: None,
        listen_port: None,
    })
    .unwrap();
    let emu = seedship_emuharness::Emulator::start(&emu_dir);
    (azurite, emu, emu_dir)
}

/// The emulator's data centre receives the drives of job `job` and imports them into Azurite.
fn import_drives(emu: &seedship_emuharness::Emulator, job: &str, drives: &[&Path]) {
    use seedship_emuharness::{receive, wait_received};
    let r = receive(emu, AZURITE_ACCOUNT, job, drives);
    assert!(
        r.status < 300,
        "receive: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    let status = wait_received(emu, AZURITE_ACCOUNT, job, Duration::from_secs(120));
    assert!(status.error.is_none(), "{status:?}");
}

/// The arguments of `create-job --journal ...` through the classic API of the emulator, with `--json`;
/// `carrier` adds the return carrier and its account.
fn classic_create_job_args(
    emu: &seedship_emuharness::Emulator,
    name: &str,
    journals: &[&Path],
    carrier: bool,
) -> Vec<String> {
    let (ps, ca) = (emu.publish_settings(), emu.ca());
    let mut args = vec!["create-job".to_owned(), "--job-name".into(), name.into()];
    for j in journals {
        args.extend(["--journal".to_owned(), s(j).to_owned()]);
    }
    args.extend(
        [
            "--publish-settings",
            s(&ps),
            "--storage-account",
            AZURITE_ACCOUNT,
            "--location",
            "West US",
            "--management-ca",
            s(&ca),
            "--json",
        ]
        .map(String::from),
    );
    if carrier {
        args.extend(
            [
                "--return-carrier",
                "FedEx",
                "--return-carrier-account",
                "123456789",
            ]
            .map(String::from),
        );
    }
    args
}

/// Runs `create-job` as [`classic_create_job_args`] spells it.
fn classic_create_job(
    emu: &seedship_emuharness::Emulator,
    name: &str,
    journals: &[&Path],
    carrier: bool,
) -> Output {
    let args = classic_create_job_args(emu, name, journals, carrier);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    diskprep(&a, &[])
}

/// Container `container` of Azurite's account.
fn azurite_store(azurite: &Azurite, container: &str) -> seedship_shared::blob::AzureStore {
    use seedship_shared::blob::{AzureOptions, AzureStore, Credential};
    AzureStore::new(AzureOptions::new(
        &azurite.endpoint(),
        AZURITE_ACCOUNT,
        container,
        Credential::SharedKey(AZURITE_KEY.into()),
    ))
    .unwrap()
}

#[test]
fn a_job_from_three_journals_is_created_and_imported() {
    use seedship_shared::blob::BlobStore;
    let t = tempfile::tempdir().unwrap();
    let (azurite, emu, emu_dir) = emulator_with_azurite(t.path());
    let job = staged(t.path(), 8);
    let blobs = job.join("blobs");
    let key_file = t.path().join("storage.key");
    std::fs::write(&key_file, AZURITE_KEY).unwrap();
    // Three drives, one source each, the account key recorded with /sk:@FILE.
    let sources = [
        ("config", "seed/config"),
        ("data/0000", "seed/data/0000"),
        ("index/0000", "seed/index/0000"),
    ];
    let mut drives = Vec::new();
    for (i, (file, blob)) in sources.iter().enumerate() {
        let img = image(t.path(), &format!("d{i}.img"), 40);
        let jrn = t.path().join(format!("d{i}.jrn"));
        ok(&diskprep(
            &[
                "PrepImport",
                &format!("/j:{}", s(&jrn)),
                "/id:seed1",
                &format!("/sk:@{}", s(&key_file)),
                &format!("/t:{}", s(&img)),
                "/format",
                "/encrypt",
                "/silentmode",
                "/BlobType:PageBlob",
                &format!("/srcfile:{}/{file}", s(&blobs)),
                &format!("/dstblob:{blob}"),
                "--pbkdf",
                "pbkdf2",
            ],
            &[],
        ));
        drives.push((img, jrn));
    }
    let ca = emu.ca();
    let journals: Vec<&Path> = drives.iter().map(|(_, j)| j.as_path()).collect();
    let args = classic_create_job_args(&emu, "jrnjob", &journals, true);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = diskprep(&a, &[]);
    let out = ok(&o);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{out}"));
    assert_eq!(doc["action"], "created", "{doc}");
    assert_eq!(doc["drive_ids"].as_array().unwrap().len(), 3);
    assert!(
        doc["ship_to"]["street_address1"]
            .as_str()
            .is_some_and(|a| !a.is_empty()),
        "{doc}"
    );
    assert!(!out.contains(AZURITE_KEY), "the key is never printed");
    // The job is recorded beside the first journal as s: records a job: <dir>/<job>/job.json (descriptor) and
    // <dir>/<job>/diskprep/job.json (record, mode 0600), so u: s:<dir> and delete-job s:<dir> find it.
    let record = t.path().join("jrnjob/diskprep/job.json");
    assert_eq!(doc["record"], s(&record), "{doc}");
    let mode = std::fs::metadata(&record).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    assert_eq!(rec["drive_ids"], doc["drive_ids"], "{rec}");
    assert!(t.path().join("jrnjob/job.json").exists());
    // Run again: the job exists with these drives, nothing new.
    let o = diskprep(&a, &[]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!(doc["action"], "exists", "{doc}");
    // s: does not take the job folder for a staged backup.
    let o = diskprep(
        &["--staging", s(t.path()), "--job", "jrnjob", "--dry-run"],
        &[("SEEDSHIP_NO_CREATE_JOB", "1")],
    );
    assert!(
        !o.status.success() && text(&o).contains("was created from prepimport journals"),
        "{}",
        text(&o)
    );

    // --job-dir records it elsewhere, e.g. beside the agent's staged job: s: without --job takes the staged
    // job (the one from journals is not offered), and s: --job jrnjob names why it is refused.
    let staging_dir = job.parent().unwrap();
    let mut elsewhere = a.clone();
    elsewhere.extend(["--job-dir", s(staging_dir)]);
    let doc: serde_json::Value = serde_json::from_slice(&diskprep(&elsewhere, &[]).stdout).unwrap();
    assert_eq!(doc["action"], "exists", "{doc}");
    assert_eq!(
        doc["record"],
        s(&staging_dir.join("jrnjob/diskprep/job.json")),
        "{doc}"
    );
    let img = t.path().join("prep.img");
    let o = diskprep(
        &[
            "--staging",
            s(staging_dir),
            "--drive",
            s(&img),
            "--create-image",
            "40M",
            "--yes",
            "--dry-run",
        ],
        &[("SEEDSHIP_NO_CREATE_JOB", "1")],
    );
    let out = ok(&o);
    assert!(out.contains("job1"), "{out}");

    // The same journals through Resource Manager (signed in as the emulator's Entra ID application).
    let app: serde_json::Value =
        serde_json::from_slice(&std::fs::read(emu_dir.join("entra-app.json")).unwrap()).unwrap();
    let f = |k: &str| app[k].as_str().unwrap().to_owned();
    let id = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{AZURITE_ACCOUNT}",
        f("subscription"),
        f("resource_group")
    );
    let mut arm = vec!["create-job".to_owned(), "--job-name".into(), "armjob".into()];
    for (_, j) in &drives {
        arm.extend(["--journal".to_owned(), s(j).to_owned()]);
    }
    arm.extend([
        "--storage-account-id".into(),
        id,
        "--resource-group".into(),
        f("resource_group"),
        "--tenant".into(),
        f("tenant"),
        "--client-id".into(),
        f("client_id"),
        "--client-certificate".into(),
        f("certificate"),
        "--client-certificate-key".into(),
        f("private_key"),
        "--authority".into(),
        f("authority"),
        "--management-endpoint".into(),
        f("management_endpoint"),
        "--management-audience".into(),
        f("management_audience"),
        "--management-ca".into(),
        s(&ca).to_owned(),
        "--location".into(),
        "West US".into(),
        "--json".into(),
        "--return-name".into(),
        "Backup Admin".into(),
        "--return-address".into(),
        "1 Main St, Springfield, 12345, USA".into(),
        "--return-phone".into(),
        "+1 555 0100".into(),
        "--return-email".into(),
        "admin@example.com".into(),
    ]);
    let a: Vec<&str> = arm.iter().map(String::as_str).collect();
    let o = diskprep(&a, &[]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!(doc["action"], "created", "{doc}");
    assert_eq!(doc["drive_ids"].as_array().unwrap().len(), 3, "{doc}");

    // u: and delete-job work on jobs from journals: the journals' folder holds two, so --job names one.
    let staging = format!("s:{}", s(t.path()));
    let u = |job: &str, extra: &[&str]| {
        let mut a = vec!["u:", &staging, "--job", job, "--management-ca", s(&ca)];
        a.extend_from_slice(extra);
        diskprep(&a, &[])
    };
    let o = u("jrnjob", &[]);
    assert!(
        !o.status.success() && text(&o).contains("--carrier"),
        "without a terminal the missing answers are named: {}",
        text(&o)
    );
    let o = diskprep(&["u:", &staging, "--management-ca", s(&ca)], &[]);
    assert!(
        !o.status.success() && text(&o).contains("armjob, jrnjob"),
        "{}",
        text(&o)
    );
    let shipped = u(
        "jrnjob",
        &[
            "--carrier",
            "fedex",
            "--tracking-number",
            "1Z777",
            "--ship-date",
            "2026-12-01",
            "--return-name",
            "Backup Admin",
            "--return-address",
            "1 Main St, Springfield 12345, USA",
            "--return-phone",
            "+1 555 0100",
            "--return-email",
            "admin@example.com",
            "--yes",
        ],
    );
    let out = ok(&shipped);
    assert!(out.contains("now Shipping"), "{out}");
    let o = u("jrnjob", &["--json"]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!(st["state"], "Shipping", "{st}");
    assert_eq!(st["delivery_package"]["tracking_number"], "1Z777", "{st}");
    assert_eq!(st["drives"].as_array().unwrap().len(), 3, "{st}");
    // The Resource Manager job, still Creating, is deleted (signed in with the recorded Entra ID settings);
    // creating it again is refused.
    let o = diskprep(
        &[
            "delete-job",
            &staging,
            "--job",
            "armjob",
            "--management-ca",
            s(&ca),
            "--yes",
        ],
        &[],
    );
    ok(&o);
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.path().join("armjob/diskprep/job.json")).unwrap()).unwrap();
    assert!(rec["deleted"].is_i64(), "{rec}");
    let o = diskprep(&a, &[]);
    assert!(
        !o.status.success() && text(&o).contains("was deleted with delete-job"),
        "{}",
        text(&o)
    );

    // The data centre: the drives arrive and are imported into Azurite.
    let paths: Vec<&Path> = drives.iter().map(|(i, _)| i.as_path()).collect();
    import_drives(&emu, "jrnjob", &paths);
    let store = azurite_store(&azurite, "seed");
    for (file, blob) in sources {
        let want = std::fs::read(blobs.join(file)).unwrap();
        let name = blob.strip_prefix("seed/").unwrap();
        let mut got = vec![0u8; want.len()];
        store.read_at(name, 0, &mut got).unwrap();
        assert!(got == want, "blob {blob} imported exactly");
    }
}

#[test]
fn a_data_set_bigger_than_its_drive_continues_on_an_additional_drive_and_is_imported() {
    use seedship_shared::blob::BlobStore;
    let t = tempfile::tempdir().unwrap();
    // 28 MiB of data/0000 (a 4 MiB hole), 4 MiB of index, one config page: more than a 40 MiB drive holds.
    let job = staged(t.path(), 28);
    let blobs = job.join("blobs");
    let key_file = t.path().join("storage.key");
    std::fs::write(&key_file, AZURITE_KEY).unwrap();
    let img1 = image(t.path(), "d1.img", 40);
    let img2 = image(t.path(), "d2.img", 40);
    let img3 = image(t.path(), "d3.img", 40);
    let jrn = t.path().join("big.jrn");
    // And a sparse file whose data starts after a hole (5 MiB of 8): its drive file holds only its data.
    let sparse = t.path().join("sparse.vhd");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(&sparse).unwrap();
        f.set_len(8 * MIB as u64).unwrap();
        f.seek(SeekFrom::Start(5 * MIB as u64)).unwrap();
        f.write_all(&noise(MIB, 9)).unwrap();
    }
    let data = seedship_shared::blob::BlobStore::page_ranges(
        &seedship_shared::blob::LocalStore::new(t.path().to_owned()),
        "sparse.vhd",
    )
    .unwrap();
    assert_eq!(
        data.first().map(|r| r.start),
        Some(5 * MIB as u64),
        "the file system keeps the hole"
    );
    let dataset = t.path().join("dataset.csv");
    std::fs::write(
        &dataset,
        format!(
            "BasePath,DstBlobPathOrPrefix,BlobType,Disposition,MetadataFile,PropertiesFile\n\"{}/\",\"seed/\",PageBlob,rename,None,None\n{},seed/sparse.vhd,PageBlob,rename,None,None\n",
            s(&blobs),
            s(&sparse)
        ),
    )
    .unwrap();
    let drive_set = |name: &str, imgs: &[&Path]| {
        let p = t.path().join(name);
        let mut text =
            "DriveLetter,FormatOption,SilentOrPromptOnFormat,Encryption,ExistingBitLockerKey\n".to_owned();
        for i in imgs {
            text.push_str(&format!("{},Format,SilentMode,Encrypt,\n", s(i)));
        }
        std::fs::write(&p, text).unwrap();
        p
    };
    let initial = drive_set("initial.csv", &[&img1]);
    let more = drive_set("more.csv", &[&img2, &img3]);
    let json = |o: &Output| -> serde_json::Value {
        let out = ok(o);
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{out}"))
    };
    // A v1 session (/srcdir:) that does not fit is refused before anything is written.
    let o = diskprep(
        &[
            "PrepImport",
            &format!("/j:{}", s(&jrn)),
            "/id:big1",
            &format!("/InitialDriveSet:{}", s(&initial)),
            &format!("/srcdir:{}/", s(&blobs)),
            "/dstdir:seed/",
        ],
        &[],
    );
    assert!(
        !o.status.success() && text(&o).contains("/AdditionalDriveSet:"),
        "{}",
        text(&o)
    );
    assert!(!jrn.exists());
    // The v2 data set fills the first drive.
    let doc = json(&diskprep(
        &[
            "PrepImport",
            &format!("/j:{}", s(&jrn)),
            "/id:big1",
            &format!("/sk:@{}", s(&key_file)),
            &format!("/InitialDriveSet:{}", s(&initial)),
            &format!("/DataSet:{}", s(&dataset)),
            "--pbkdf",
            "pbkdf2",
            "--json",
        ],
        &[],
    ));
    assert_eq!(doc["action"], "filled", "{doc}");
    assert!(doc["remaining_files"].as_u64().unwrap() >= 1, "{doc}");
    // The job cannot be made of a drive whose data set is not all on drives.
    let ps = t.path().join("none.publishsettings");
    let o = diskprep(
        &[
            "create-job",
            "--journal",
            s(&jrn),
            "--job-name",
            "bigjob",
            "--publish-settings",
            s(&ps),
            "--storage-account",
            AZURITE_ACCOUNT,
        ],
        &[],
    );
    assert!(
        !o.status.success() && text(&o).contains("/AdditionalDriveSet:"),
        "{}",
        text(&o)
    );
    // The rest continues on the additional drive set: the second drive takes it, the third is not needed.
    // The continuation is killed once its session is recorded; run again it names the resume command.
    let jrn2 = t.path().join("big-big1-2.jrn");
    let add = [
        "PrepImport",
        &format!("/j:{}", s(&jrn)),
        "/id:big1",
        &format!("/AdditionalDriveSet:{}", s(&more)),
        "--pbkdf",
        "pbkdf2",
    ];
    let mut dry = add.to_vec();
    dry.push("--dry-run");
    let out = ok(&diskprep(&dry, &[]));
    assert!(out.contains("Dry run: session big1 would continue on"), "{out}");
    assert!(!jrn2.exists(), "a dry run writes no journal");
    kill_when(&add, || {
        std::fs::read_to_string(&jrn2)
            .unwrap_or_default()
            .contains("[Type:PrepImportSession]")
    });
    let o = diskprep(&add, &[]);
    let resume = format!("/j:{} /id:big1 /ResumeSession", s(&jrn2));
    assert!(!o.status.success() && text(&o).contains(&resume), "{}", text(&o));
    let doc = json(&diskprep(
        &[
            "PrepImport",
            &format!("/j:{}", s(&jrn2)),
            "/id:big1",
            "/ResumeSession",
            "--json",
        ],
        &[],
    ));
    assert_eq!(doc["action"], "completed", "{doc}");
    assert_eq!(doc["remaining_files"], 0, "{doc}");
    assert_eq!(doc["journals"], serde_json::json!([s(&jrn), s(&jrn2)]), "{doc}");
    let mode = std::fs::metadata(&jrn2).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        std::fs::read(&img3).unwrap().iter().all(|&b| b == 0),
        "the drive not needed is not written"
    );
    // The first drive's session cannot be rolled back while it continues on another.
    let o = diskprep(
        &[
            "PrepImport",
            &format!("/j:{}", s(&jrn)),
            "/id:big1",
            "/AbortSession",
        ],
        &[],
    );
    assert!(!o.status.success() && text(&o).contains(s(&jrn2)), "{}", text(&o));
    // The independent reader: data/0000 is split in two parts over the drives, and reassembles exactly.
    let check = independent_check(&job, &[(&img1, &jrn), (&img2, &jrn2)], &t.path().join("check"));
    assert_eq!(check["blobs"]["data/0000"]["parts"], 2, "{check}");
    assert_eq!(check["blobs"].as_object().unwrap().len(), 3, "{check}");

    // The job from the first journal brings in the second drive; the data centre imports both.
    let (azurite, emu, _) = emulator_with_azurite(t.path());
    let doc = json(&classic_create_job(&emu, "bigjob", &[&jrn], false));
    assert_eq!(doc["action"], "created", "{doc}");
    assert_eq!(doc["drive_ids"].as_array().unwrap().len(), 2, "{doc}");
    seedship_emuharness::set_state(&emu, AZURITE_ACCOUNT, "bigjob", "Shipping");
    import_drives(&emu, "bigjob", &[&img1, &img2]);
    let store = azurite_store(&azurite, "seed");
    for (name, file) in [
        ("config", blobs.join("config")),
        ("data/0000", blobs.join("data/0000")),
        ("index/0000", blobs.join("index/0000")),
        ("sparse.vhd", sparse.clone()),
    ] {
        let want = std::fs::read(file).unwrap();
        assert_eq!(store.properties(name).unwrap().len, want.len() as u64, "{name}");
        let mut got = vec![0u8; want.len()];
        store.read_at(name, 0, &mut got).unwrap();
        assert!(got == want, "blob {name} imported exactly");
    }
}

/// Flips 16 bytes of the ciphertext where the drive's payload holds `needle` (an XTS block: only those
/// 16 plaintext bytes change).
fn damage_payload(img: &Path, journal: &Path, needle: &[u8]) {
    use std::io::Read;
    use std::os::unix::fs::FileExt;
    let key = seedship_shared::recovery::RecoveryKey::parse(&journal_key(journal)).unwrap();
    let file = std::fs::File::open(img).unwrap();
    let volume = seedship_shared::luks::LuksVolume::open(&file, key.passphrase()).unwrap();
    let mut payload = Vec::new();
    volume.reader(&file).read_to_end(&mut payload).unwrap();
    let at = payload
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the bytes are on the drive") as u64;
    let at = at.div_ceil(16) * 16;
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    f.write_all_at(&[0xA5; 16], volume.data_offset() + at).unwrap();
}

#[test]
fn block_blobs_of_any_length_pass_the_interop_reader_and_import_as_block_blobs() {
    use seedship_shared::blob::BlobStore;
    use seedship_shared::manifest::copylog::{BlobStatus, DriveLog, RangeStatus};
    let t = tempfile::tempdir().unwrap();
    // Block blobs of 0 bytes, 1 byte, and 4 MiB of zeros + 1 byte (its zero block is listed all the same);
    // config (one page) as a block blob too; data/0000 (a 4 MiB hole) as a page blob.
    let mut big = vec![0u8; 4 * MIB + 1];
    big[4 * MIB] = 0x5A;
    let mut volume = noise(8 * MIB, 7);
    volume[4 * MIB..8 * MIB].fill(0);
    let contents = [
        ("bb/empty", Vec::new()),
        ("bb/one", vec![0xC3]),
        ("bb/big", big),
        ("config", noise(512, 1)),
        ("data/0000", volume),
    ];
    let job = stage_job(
        &t.path().join("staging"),
        descriptor("bbjob", &hostname()),
        &contents,
    );
    let blobs = job.join("blobs");
    let key_file = t.path().join("storage.key");
    std::fs::write(&key_file, AZURITE_KEY).unwrap();
    let img = image(t.path(), "g.img", 40);
    let jrn = t.path().join("g.jrn");
    let first = |blob_type: &str| {
        diskprep(
            &[
                "PrepImport",
                &format!("/j:{}", s(&jrn)),
                "/id:blk1",
                &format!("/sk:@{}", s(&key_file)),
                &format!("/t:{}", s(&img)),
                "/format",
                "/encrypt",
                "/silentmode",
                blob_type,
                &format!("/srcdir:{}/bb/", s(&blobs)),
                "/dstdir:seed/bb/",
                "--pbkdf",
                "pbkdf2",
            ],
            &[],
        )
    };
    // As page blobs the odd lengths are refused, naming the way out.
    let o = first("/BlobType:PageBlob");
    assert!(
        !o.status.success() && text(&o).contains("/BlobType:BlockBlob"),
        "{}",
        text(&o)
    );
    assert!(!jrn.exists());
    ok(&first("/BlobType:BlockBlob"));
    // A data set mixing a page-blob folder and a block-blob file.
    let csv = t.path().join("dataset.csv");
    std::fs::write(
        &csv,
        format!(
            "BasePath,DstBlobPathOrPrefix,BlobType,Disposition,MetadataFile,PropertiesFile\n\"{}/data/\",\"seed/data/\",PageBlob,rename,None,None\n{}/config,seed/config,BlockBlob,overwrite,None,None\n",
            s(&blobs),
            s(&blobs)
        ),
    )
    .unwrap();
    ok(&diskprep(
        &[
            "PrepImport",
            &format!("/j:{}", s(&jrn)),
            "/id:blk2",
            &format!("/DataSet:{}", s(&csv)),
        ],
        &[],
    ));
    let check = independent_check(&job, &[(&img, &jrn)], &t.path().join("check"));
    let manifest = check["drives"][0]["manifest"].as_str().unwrap();
    for needle in [
        "<BlockList>",
        "<Block Offset=\"0\" Length=\"4194304\" Id=\"AAAAAA==\"",
        "<Block Offset=\"4194304\" Length=\"1\" Id=\"AQAAAA==\"",
        "<Block Offset=\"0\" Length=\"1\" Id=\"AAAAAA==\"",
        "<PageRangeList>",
    ] {
        assert!(manifest.contains(needle), "{needle} in {manifest}");
    }
    for (name, bytes) in &contents {
        let b = &check["blobs"][*name];
        let want = if name.starts_with("data/") {
            "PageBlob"
        } else {
            "BlockBlob"
        };
        assert_eq!(b["type"], want, "{name}: {check}");
        if want == "BlockBlob" {
            assert_eq!(b["covered"], bytes.len(), "every byte is in a block: {check}");
        }
    }

    // A second drive: one block blob of 5 MiB + 7 bytes whose second block is damaged after it was written.
    let noisy = t.path().join("noisy.bin");
    let noisy_data = noise(5 * MIB + 7, 21);
    std::fs::write(&noisy, &noisy_data).unwrap();
    let img2 = image(t.path(), "h.img", 40);
    let jrn2 = t.path().join("h.jrn");
    ok(&diskprep(
        &[
            "PrepImport",
            &format!("/j:{}", s(&jrn2)),
            "/id:blk3",
            &format!("/sk:@{}", s(&key_file)),
            &format!("/t:{}", s(&img2)),
            "/format",
            "/encrypt",
            "/silentmode",
            "/BlobType:BlockBlob",
            &format!("/srcfile:{}", s(&noisy)),
            "/dstblob:seed/noisy.bin",
            "--pbkdf",
            "pbkdf2",
        ],
        &[],
    ));
    let v = diskprep(
        &["verify", "--drive", s(&img2)],
        &[("SEEDSHIP_RECOVERY_KEY", &journal_key(&jrn2))],
    );
    ok(&v);
    // a drive of block blobs: what was checked is named blocks, not page ranges
    assert!(
        text(&v).contains(" blocks, ") && !text(&v).contains("page ranges"),
        "{}",
        text(&v)
    );
    damage_payload(&img2, &jrn2, &noisy_data[4 * MIB + 4096..4 * MIB + 4160]);
    let o = diskprep(
        &["verify", "--drive", s(&img2)],
        &[("SEEDSHIP_RECOVERY_KEY", &journal_key(&jrn2))],
    );
    assert!(
        !o.status.success() && text(&o).contains("seed/noisy.bin"),
        "diskprep verify finds the damaged block: {}",
        text(&o)
    );

    // The data centre imports both drives of one job.
    let (azurite, emu, _emu_dir) = emulator_with_azurite(t.path());
    let ca = emu.ca();
    let o = classic_create_job(&emu, "bbimport", &[&jrn, &jrn2], true);
    ok(&o);
    let staging = format!("s:{}", s(t.path()));
    ok(&diskprep(
        &[
            "u:",
            &staging,
            "--job",
            "bbimport",
            "--management-ca",
            s(&ca),
            "--carrier",
            "fedex",
            "--tracking-number",
            "1Z778",
            "--ship-date",
            "2026-12-01",
            "--return-name",
            "Backup Admin",
            "--return-address",
            "1 Main St, Springfield 12345, USA",
            "--return-phone",
            "+1 555 0100",
            "--return-email",
            "admin@example.com",
            "--yes",
        ],
        &[],
    ));
    import_drives(&emu, "bbimport", &[&img, &img2]);
    let store = azurite_store(&azurite, "seed");
    for (name, bytes) in &contents {
        let want = if name.starts_with("data/") {
            "PageBlob"
        } else {
            "BlockBlob"
        };
        assert_eq!(store.blob_type(name).unwrap(), want, "{name}");
        assert_eq!(store.properties(name).unwrap().len, bytes.len() as u64, "{name}");
        let mut got = vec![0u8; bytes.len()];
        store.read_at(name, 0, &mut got).unwrap();
        assert!(got == *bytes, "blob {name} imported exactly");
    }
    // The damaged block is Corrupted in the copy log; the blob is not committed (its other block waits
    // Uncommitted).
    assert!(store.properties("noisy.bin").is_err(), "no partial block blob");
    let logs = azurite_store(&azurite, "waimportexport");
    let mut found = None;
    for l in logs.list("waies/bbimport_").unwrap() {
        let mut buf = vec![0u8; l.len as usize];
        logs.read_at(&l.name, 0, &mut buf).unwrap();
        let log = DriveLog::parse(&buf).unwrap();
        if let Some(b) = log.blobs.iter().find(|b| b.blob_path == "seed/noisy.bin") {
            found = Some(b.clone());
        }
    }
    let b = found.expect("the copy log lists the damaged blob");
    assert_eq!(b.status, BlobStatus::CompletedWithErrors, "{b:?}");
    let statuses: Vec<_> = b
        .range_list()
        .iter()
        .map(|r| (r.offset, r.length, r.status, r.id.clone()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (
                0,
                4 * MIB as u64,
                RangeStatus::Uncommitted,
                Some("AAAAAA==".into())
            ),
            (
                4 * MIB as u64,
                MIB as u64 + 7,
                RangeStatus::Corrupted,
                Some("AQAAAA==".into())
            ),
        ],
        "{b:?}"
    );
}

#[test]
fn a_block_blob_that_does_not_fit_waits_whole_for_the_additional_drive() {
    let t = tempfile::tempdir().unwrap();
    // Two block blobs of 20 MiB and a few bytes: one fills most of a 40 MiB drive, the other is not cut.
    let job = stage_job(
        &t.path().join("staging"),
        descriptor("bbspan", &hostname()),
        &[
            ("a.bin", noise(20 * MIB + 3, 31)),
            ("b.bin", noise(20 * MIB + 5, 32)),
        ],
    );
    let blobs = job.join("blobs");
    let (img1, img2) = (image(t.path(), "d1.img", 40), image(t.path(), "d2.img", 40));
    let jrn = t.path().join("bb.jrn");
    let csv = |name: &str, img: &Path| {
        let p = t.path().join(name);
        std::fs::write(
            &p,
            format!(
                "DriveLetter,FormatOption,SilentOrPromptOnFormat,Encryption,ExistingBitLockerKey\n{},Format,SilentMode,Encrypt,\n",
                s(img)
            ),
        )
        .unwrap();
        p
    };
    let dataset = t.path().join("dataset.csv");
    std::fs::write(
        &dataset,
        format!(
            "BasePath,DstBlobPathOrPrefix,BlobType,Disposition,MetadataFile,PropertiesFile\n\"{}/\",\"seed/\",BlockBlob,rename,None,None\n",
            s(&blobs)
        ),
    )
    .unwrap();
    let key_file = t.path().join("storage.key");
    std::fs::write(&key_file, AZURITE_KEY).unwrap();
    let o = diskprep(
        &[
            "PrepImport",
            &format!("/j:{}", s(&jrn)),
            "/id:bbs",
            &format!("/sk:@{}", s(&key_file)),
            &format!("/InitialDriveSet:{}", s(&csv("init.csv", &img1))),
            &format!("/DataSet:{}", s(&dataset)),
            "--pbkdf",
            "pbkdf2",
            "--json",
        ],
        &[],
    );
    let out = ok(&o);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{out}"));
    assert_eq!(
        (
            doc["action"].as_str(),
            doc["blobs"].as_u64(),
            doc["remaining_files"].as_u64()
        ),
        (Some("filled"), Some(1), Some(1)),
        "{doc}"
    );
    ok(&diskprep(
        &[
            "PrepImport",
            &format!("/j:{}", s(&jrn)),
            "/id:bbs",
            &format!("/AdditionalDriveSet:{}", s(&csv("more.csv", &img2))),
            "--pbkdf",
            "pbkdf2",
        ],
        &[],
    ));
    let jrn2 = t.path().join("bb-bbs-2.jrn");
    let check = independent_check(&job, &[(&img1, &jrn), (&img2, &jrn2)], &t.path().join("check"));
    for name in ["a.bin", "b.bin"] {
        assert_eq!(check["blobs"][name]["parts"], 1, "{check}");
        assert_eq!(check["blobs"][name]["type"], "BlockBlob", "{check}");
    }
    let on_first = check["drives"][0]["manifest"].as_str().unwrap();
    assert!(
        on_first.contains("seed/a.bin") && !on_first.contains("seed/b.bin"),
        "{on_first}"
    );
}
