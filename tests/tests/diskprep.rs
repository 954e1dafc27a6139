//! End to end through seedship-diskprep: a staging location written by the real seedship-agent is copied
//! onto three LUKS2 image files (the job spans them), every drive is verified, and an independent reader
//! (cryptsetup + Python AES-XTS + GNU tar + MD5, `tests/python/drive_check.py`) finds every byte of every
//! staging blob exactly once. Then resume after SIGKILL at several points and after Ctrl-C, and a write
//! error on the drive mid-copy.

use seedship_e2e::testkit::{cargo_bin, run_python};
use seedship_e2e::{allocated, descriptor, half_compressible, noise, output, recovery_keys, stage_job, text};
use seedship_shared::host::hostname;
use seedship_shared::staging::JobDescriptor;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const SUB: &str = "11111111-2222-3333-4444-555555555555";
const MIB: u64 = 1 << 20;
/// The data segment starts 16 MiB into every drive.
const DATA_OFFSET: u64 = 16 * MIB;

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// Writes a staging location with the real agent: `src` gets ~150 MiB of half-compressible files.
fn agent_staging(root: &Path) -> PathBuf {
    let src = root.join("src");
    let staging = root.join("staging");
    let state = root.join("state");
    for d in [&src, &staging, &state] {
        std::fs::create_dir_all(d).unwrap();
    }
    for i in 0..6u64 {
        std::fs::write(src.join(format!("f{i}.bin")), half_compressible(25 << 20, i + 1)).unwrap();
    }
    std::fs::write(root.join("pass"), "a long enough test passphrase\n").unwrap();
    let ps = root.join("ps.publishsettings");
    seedship_e2e::testkit::write_offline_publish_settings(&ps, SUB);
    let agent = |args: &[&str]| {
        let o = output(
            Command::new(cargo_bin("seedship-agent"))
                .env("SEEDSHIP_STATE_DIR", &state)
                .env_remove("SEEDSHIP_PASSPHRASE")
                .arg("--passphrase-file")
                .arg(root.join("pass"))
                .args(args),
        );
        assert!(o.status.success(), "seedship-agent {args:?}: {}", text(&o));
    };
    agent(&[
        "offline",
        "start",
        "--staging",
        s(&staging),
        "--job-name",
        "job1",
        "--publish-settings",
        s(&ps),
        "--subscription",
        SUB,
        "--storage-account",
        "acct1",
        "--container",
        "seed1",
        "--source",
        s(&src),
        "--volume-size-mib",
        "64",
    ]);
    agent(&["backup"]);
    std::fs::remove_dir_all(&src).unwrap();
    staging
}

/// The diskprep command of a drive set: `s:<staging> --drive ... --create-image SIZE --yes --pbkdf pbkdf2`,
/// without creating the import job (no service runs in these tests).
fn prep_cmd(staging: &Path, drives: &[PathBuf], image: &str) -> Command {
    let mut c = Command::new(cargo_bin("seedship-diskprep"));
    c.arg(format!("s:{}", staging.display()));
    for d in drives {
        c.arg("--drive").arg(d);
    }
    c.args([
        "--create-image",
        image,
        "--yes",
        "--pbkdf",
        "pbkdf2",
        "--no-create-job",
    ])
    .stdin(Stdio::null());
    c
}

fn images(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    (1..=3).map(|i| dir.join(format!("{prefix}{i}.img"))).collect()
}

/// Runs `drive_check.py` over a drive set whose keys are in `job/diskprep/keys.tsv`; returns its JSON. With
/// `also_verify`, `seedship-diskprep verify` must accept each drive too.
fn independent_check(job: &Path, drives: &[PathBuf], work: &Path, also_verify: bool) -> serde_json::Value {
    let keys = recovery_keys(&job.join("diskprep/keys.tsv"));
    assert_eq!(keys.len(), drives.len(), "one recovery key per drive");
    let mut args = vec![
        "--job".to_owned(),
        s(job).to_owned(),
        "--work".to_owned(),
        s(work).to_owned(),
    ];
    std::fs::create_dir_all(work).unwrap();
    for (i, ((id, key), drive)) in keys.iter().zip(drives).enumerate() {
        let kf = work.join(format!("key{i}"));
        std::fs::write(&kf, key).unwrap();
        args.push("--drive".into());
        args.push(format!("{}:{}", s(drive), s(&kf)));
        if !also_verify {
            continue;
        }
        // diskprep's own reader agrees.
        let v = output(
            Command::new(cargo_bin("seedship-diskprep"))
                .args(["verify", "--drive", s(drive)])
                .env("SEEDSHIP_RECOVERY_KEY", key),
        );
        assert!(v.status.success(), "verify {id}: {}", text(&v));
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_python("drive_check.py", &a, &[]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("drive_check.py prints JSON");
    std::fs::remove_dir_all(work).unwrap();
    v
}

/// The normalised manifests of a check, in drive order.
fn manifests(check: &serde_json::Value) -> Vec<String> {
    check["drives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["manifest"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits for `child` to end, at most `limit`.
fn wait(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("seedship-diskprep did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `cmd` and SIGKILLs it once `image` occupies at least `threshold` bytes. Panics if it ends first.
fn kill_when(cmd: &mut Command, image: &Path, threshold: u64) {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if allocated(image) >= threshold {
            child.kill().unwrap();
            child.wait().unwrap();
            return;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "seedship-diskprep ended ({st}) before {} reached {threshold} bytes (it has {})",
                image.display(),
                allocated(image)
            );
        }
        assert!(Instant::now() < deadline, "no progress on {}", image.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn agent_staging_spans_three_drives_every_byte_once_and_resumes_after_sigkill() {
    let t = tempfile::Builder::new()
        .prefix("seedship-e2e-")
        .tempdir()
        .unwrap();
    let staging = agent_staging(t.path());
    let job = staging.join("job1");
    // A copy of the same staging for the interrupted run.
    let staging_b = t.path().join("staging-b");
    let cp = output(Command::new("cp").arg("-a").arg(&staging).arg(&staging_b));
    assert!(cp.status.success(), "cp: {}", text(&cp));

    // Uninterrupted: three 48 MiB images (32 MiB of payload each) for ~76 MiB of staging.
    let d = images(t.path(), "d");
    let o = output(&mut prep_cmd(&staging, &d, "48M"));
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("on 3 drive(s)") && out.contains("part 3"),
        "no spanning:\n{out}"
    );
    let check = independent_check(&job, &d, &t.path().join("check-a"), true);
    let blobs = check["blobs"].as_object().unwrap();
    let descriptor = JobDescriptor::load(&job).unwrap();
    assert_eq!(blobs.len(), descriptor.blobs.len());
    assert!(
        blobs.values().any(|b| b["parts"].as_u64().unwrap() >= 2),
        "some blob spans drives: {check}"
    );
    let reference = manifests(&check);
    for img in &d {
        std::fs::remove_file(img).unwrap();
    }

    // Interrupted with SIGKILL: inside drive 1's data, inside drive 2's data, late in drive 3.
    let e = images(t.path(), "e");
    for (img, at) in [(0, 8 * MIB), (1, 20 * MIB), (2, 14 * MIB)] {
        kill_when(&mut prep_cmd(&staging_b, &e, "48M"), &e[img], DATA_OFFSET + at);
    }
    let o = output(&mut prep_cmd(&staging_b, &e, "48M"));
    assert!(o.status.success(), "resumed run: {}", text(&o));
    assert!(text(&o).contains("resuming the copy"), "{}", text(&o));
    let resumed = independent_check(&staging_b.join("job1"), &e, &t.path().join("check-b"), false);
    assert_eq!(
        manifests(&resumed),
        reference,
        "the resumed drives' manifests differ from an uninterrupted run's"
    );
    assert_eq!(resumed["blobs"], check["blobs"]);
}

/// Writes a ready job of ~30 MiB under `staging/job1` (as the agent would) and returns its folder.
fn small_job(staging: &Path) -> PathBuf {
    let mut volume = noise(26 << 20, 5);
    volume[8 << 20..12 << 20].fill(0);
    let mut d = descriptor("job1", &hostname());
    d.subscription = SUB.into();
    d.storage_account = "acct1".into();
    d.container = "seed1".into();
    stage_job(
        staging,
        d,
        &[
            ("config", noise(512, 1)),
            ("data/00000000", volume),
            ("index/00", noise(4 << 20, 2)),
        ],
    )
}

/// BLAKE3 of every file under `dir` except diskprep's own folder, by relative path.
fn fingerprint(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().unwrap() != "diskprep" {
                    stack.push(p);
                }
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((
                    rel,
                    blake3::hash(&std::fs::read(&p).unwrap()).to_hex().to_string(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn ctrl_c_exits_130_and_a_rerun_finishes() {
    let t = tempfile::Builder::new()
        .prefix("seedship-e2e-")
        .tempdir()
        .unwrap();
    let staging = t.path().join("staging");
    let job = small_job(&staging);
    let img = vec![t.path().join("d.img")];
    let mut child = prep_cmd(&staging, &img, "64M")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while allocated(&img[0]) < DATA_OFFSET + 4 * MIB {
        assert!(child.try_wait().unwrap().is_none(), "ended before Ctrl-C");
        assert!(Instant::now() < deadline, "no progress on {}", img[0].display());
        std::thread::sleep(Duration::from_millis(5));
    }
    let k = output(Command::new("kill").args(["-INT", &child.id().to_string()]));
    assert!(k.status.success(), "kill -INT: {}", text(&k));
    let st = wait(&mut child, Duration::from_secs(60));
    let o = child.wait_with_output().unwrap();
    assert_eq!(st.code(), Some(130), "{}", text(&o));
    assert!(text(&o).contains("run the same command again"), "{}", text(&o));
    let o = output(&mut prep_cmd(&staging, &img, "64M"));
    assert!(o.status.success(), "rerun: {}", text(&o));
    let check = independent_check(&job, &img, &t.path().join("check"), false);
    assert_eq!(check["blobs"]["data/00000000"]["covered"], 22 << 20);
}

#[test]
fn a_write_error_on_the_drive_mid_copy_names_the_drive_and_offset() {
    let t = tempfile::Builder::new()
        .prefix("seedship-e2e-")
        .tempdir()
        .unwrap();
    let staging = t.path().join("staging");
    let job = small_job(&staging);
    let before = fingerprint(&job);
    let img = t.path().join("d.img");
    // The image exists at full size; writes past 28 MiB fail with EFBIG (bash counts 1024-byte blocks).
    std::fs::File::create(&img).unwrap().set_len(64 * MIB).unwrap();
    let o = output(
        Command::new("bash")
            .arg("-c")
            .arg(r#"ulimit -f 28672 && exec "$@""#)
            .arg("bash")
            .arg(cargo_bin("seedship-diskprep"))
            .arg(format!("s:{}", staging.display()))
            .args([
                "--drive",
                s(&img),
                "--yes",
                "--pbkdf",
                "pbkdf2",
                "--no-create-job",
            ])
            .stdin(Stdio::null()),
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("writing drive") && out.contains("payload offset") && out.contains("File too large"),
        "{out}"
    );
    let drive_id = &recovery_keys(&job.join("diskprep/keys.tsv"))[0].0;
    assert!(out.contains(drive_id.as_str()), "the drive is named: {out}");
    assert_eq!(fingerprint(&job), before, "staging blobs and job.json unchanged");
}
