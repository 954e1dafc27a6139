//! Command-line tests of seedship-diskprep: the drives (tests/api.rs covers the import job against the
//! emulator). The harness is in support/mod.rs.

mod support;

use seedship_e2e::{descriptor, noise, stage_job};
use std::process::{Command, Stdio};
use support::*;

#[test]
fn a_job_spans_three_drives_and_each_verifies_on_its_own() {
    let dir = Folder::new();
    let (t, staging) = (&dir.t, &dir.staging);
    let job = standard_job(staging);
    let d: Vec<String> = (1..=3)
        .map(|i| t.path().join(format!("d{i}.img")).display().to_string())
        .collect();
    let o = drives_only(&[
        &format!("s:{}", staging.display()),
        "--drive",
        &d[0],
        "--drive",
        &d[1],
        "--drive",
        &d[2],
        "--create-image",
        "40M",
        "--yes",
        "--pbkdf",
        "pbkdf2",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("on 3 drive(s)") && out.contains("part 2"), "{out}");
    let key_file = job.join("diskprep/keys.tsv");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let keys = keys(&key_file);
    assert_eq!(keys.len(), 3);
    for (i, (id, key)) in keys.iter().enumerate() {
        assert!(!out.contains(key.as_str()), "a recovery key was printed");
        // the key from a file (here a FIFO, so the command line can be read while it waits): never in argv
        let fifo = t.path().join(format!("key{i}.fifo"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_seedship-diskprep"));
        cmd.args(["verify", "--drive", &d[i], "--key-file", fifo.to_str().unwrap()]);
        let (v, cmdline) = seedship_e2e::testkit::run_with_secret_fifo(&mut cmd, &fifo, key);
        assert!(v.status.success(), "{id}: {}", text(&v));
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(key.as_str()),
            "the key is in argv"
        );
    }
    // --json: one VerifyReport document on stdout (the key from the environment)
    let o = Command::new(env!("CARGO_BIN_EXE_seedship-diskprep"))
        .args(["verify", "--drive", &d[1], "--json"])
        .env("SEEDSHIP_RECOVERY_KEY", &keys[1].1)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let r: seedship_diskprep::report::VerifyReport =
        serde_json::from_slice(&o.stdout).expect("stdout is one VerifyReport document");
    assert!(r.ok && r.error.is_none() && r.ranges > 0 && r.bytes > 0, "{r:?}");
    assert_eq!(r.drive, d[1]);
    // A wrong key is refused by name.
    let v = drives_only(&["verify", "--drive", &d[0], "--key", &keys[1].1]);
    assert!(
        !v.status.success() && text(&v).contains("does not unlock drive"),
        "{}",
        text(&v)
    );
    // A byte changed in the data of a copy of drive 1: the range holding it is named.
    let bad = t.path().join("bad.img");
    std::fs::copy(&d[0], &bad).unwrap();
    let mut image = std::fs::read(&bad).unwrap();
    image[(16 << 20) + (5 << 20) + 123] ^= 0x10;
    std::fs::write(&bad, &image).unwrap();
    let v = drives_only(&["verify", "--drive", bad.to_str().unwrap(), "--key", &keys[0].1]);
    assert!(
        !v.status.success()
            && text(&v).contains("data/0000")
            && text(&v).contains("do not match the manifest"),
        "{}",
        text(&v)
    );
    // Run again: every drive is complete and left alone.
    let again = drives_only(&[
        &format!("s:{}", staging.display()),
        "--drive",
        &d[0],
        "--drive",
        &d[1],
        "--drive",
        &d[2],
        "--yes",
    ]);
    assert!(
        again.status.success() && text(&again).matches("left as it is").count() == 3,
        "{}",
        text(&again)
    );
}

#[test]
fn refusals_name_the_problem_and_write_nothing() {
    let dir = Folder::new();
    let (t, staging) = (&dir.t, &dir.staging);
    let s = dir.s.as_str();
    let img = dir.image("d.img");

    let o = drives_only(&[s, "--drive", &img, "--create-image", "64M", "--yes"]);
    assert!(
        !o.status.success() && text(&o).contains("holds no import job"),
        "{}",
        text(&o)
    );

    let job = standard_job(staging);
    let small = t.path().join("small.img").display().to_string();
    let o = drives_only(&[s, "--drive", &small, "--create-image", "20M", "--yes"]);
    assert!(
        !o.status.success() && text(&o).contains("too small"),
        "{}",
        text(&o)
    );

    let o = drives_only(&one_drive(s, &img, "40M"));
    assert!(
        !o.status.success() && text(&o).contains("more drive payload is needed"),
        "{}",
        text(&o)
    );
    // issue 20 point 7: sizes for people, the header included, and a ready --create-image value that works
    let out = text(&o);
    assert!(out.contains(" MiB") && out.contains("16.0 MiB header"), "{out}");
    let value = out
        .split("--create-image ")
        .nth(1)
        .and_then(|r| r.split([',', ' ']).next())
        .unwrap_or_else(|| panic!("no --create-image value in: {out}"))
        .to_string();
    let second = t.path().join("second.img").display().to_string();
    let o = drives_only(&[
        s,
        "--drive",
        &img,
        "--drive",
        &second,
        "--create-image",
        "40M",
        "--dry-run",
    ]);
    assert!(
        !o.status.success(),
        "40M twice should still be short: {}",
        text(&o)
    );
    let third = t.path().join("third.img");
    std::fs::File::create(&third)
        .unwrap()
        .set_len(seedship_shared::units::parse_size(&value).unwrap())
        .unwrap();
    let o = drives_only(&[
        s,
        "--drive",
        &img,
        "--drive",
        &third.display().to_string(),
        "--create-image",
        "40M",
        "--dry-run",
    ]);
    assert!(
        o.status.success(),
        "a second drive of {value} is enough: {}",
        text(&o)
    );
    std::fs::remove_file(&third).unwrap();
    let small = third.display().to_string();
    std::fs::File::create(&third)
        .unwrap()
        .set_len(seedship_shared::units::parse_size(&value).unwrap() - (1 << 20))
        .unwrap();
    let o = drives_only(&[
        s,
        "--drive",
        &img,
        "--drive",
        &small,
        "--create-image",
        "40M",
        "--dry-run",
    ]);
    assert!(
        !o.status.success(),
        "1 MiB less than {value} is not enough: {}",
        text(&o)
    );
    std::fs::remove_file(&third).unwrap();

    // No confirmation: standard input is not a terminal and --yes is missing.
    let big = t.path().join("big.img").display().to_string();
    let o = drives_only(&[s, "--drive", &big, "--create-image", "128M"]);
    assert!(!o.status.success() && text(&o).contains("--yes"), "{}", text(&o));
    assert!(
        !job.join("diskprep/keys.tsv").exists(),
        "nothing written before confirmation"
    );

    assert!(!job.join("diskprep").exists(), "staging untouched");
}

#[test]
fn a_damaged_staged_blob_fails_the_drive_before_its_manifest_and_the_copy_starts_over() {
    let dir = Folder::new();
    let staging = &dir.staging;
    let job = standard_job(staging);
    let s = dir.s.as_str();
    let img = dir.image("d.img");
    // A flipped byte in the index: found by its BLAKE3 while the drive is written.
    let index = job.join("blobs/index/0000");
    let mut bytes = std::fs::read(&index).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&index, &bytes).unwrap();
    let run = || drives_only(&one_drive(s, &img, "128M"));
    let o = run();
    let out = text(&o);
    assert!(
        !o.status.success()
            && out.contains("index/0000")
            && out.contains(&index.display().to_string())
            && out.contains("damaged")
            && out.contains("no manifest written"),
        "{out}"
    );
    let session = std::fs::read_to_string(job.join("diskprep/session.json")).unwrap();
    assert!(
        session.contains("formatted") && !session.contains("written") && !session.contains("verified"),
        "the drive is not reported good: {session}"
    );
    // Repaired: the same command copies the drive again from the start and verifies it.
    bytes[1000] ^= 1;
    std::fs::write(&index, &bytes).unwrap();
    let o = run();
    assert!(o.status.success(), "{}", text(&o));
    let session = std::fs::read_to_string(job.join("diskprep/session.json")).unwrap();
    assert!(session.contains("verified"), "{session}");
}

#[test]
fn another_machine_needs_the_publish_settings() {
    let dir = Folder::new();
    let staging = &dir.staging;
    stage_job(
        staging,
        descriptor("job2", "some-other-host"),
        &[("config", noise(512, 1))],
    );
    let img = dir.image("d.img");
    let o = drives_only(&[
        &format!("s:{}", staging.display()),
        "--drive",
        &img,
        "--create-image",
        "64M",
        "--yes",
    ]);
    assert!(
        !o.status.success() && text(&o).contains("p:<file>") && text(&o).contains("some-other-host"),
        "{}",
        text(&o)
    );
}

/// Issue 20 point 6: `--create-image` makes no file on a dry run, nor on a run that is then refused.
#[test]
fn dry_runs_and_refused_runs_create_no_image_files() {
    let dir = Folder::new();
    let (t, staging) = (&dir.t, &dir.staging);
    let s = dir.s.as_str();
    standard_job(staging);
    let img = t.path().join("d.img");
    let o = drives_only(&[
        s,
        "--drive",
        &img.display().to_string(),
        "--create-image",
        "128M",
        "--dry-run",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!img.exists(), "a dry run made {}", img.display());
    // refused: too little room on the drives
    let o = drives_only(&[
        s,
        "--drive",
        &img.display().to_string(),
        "--create-image",
        "40M",
        "--yes",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(!img.exists(), "a refused run left {}", img.display());
    // refused: no confirmation
    let o = drives_only(&[s, "--drive", &img.display().to_string(), "--create-image", "128M"]);
    assert!(!o.status.success() && text(&o).contains("--yes"), "{}", text(&o));
    assert!(!img.exists(), "an unconfirmed run left {}", img.display());
}

/// Issue 20 point 11: a rerun after every drive is prepared writes nothing and claims no speed.
#[test]
fn a_rerun_of_a_prepared_job_says_nothing_was_written() {
    let dir = Folder::new();
    let staging = &dir.staging;
    let s = dir.s.as_str();
    standard_job(staging);
    let img = dir.image("d.img");
    let args = one_drive(s, &img, "128M");
    let o = drives_only(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Prepared 1 drive(s)"), "{}", text(&o));
    let o = drives_only(&args);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("prepared and verified by an earlier run; nothing was written"),
        "{out}"
    );
    assert!(
        !out.contains("Prepared 1 drive(s)"),
        "no preparation (and speed) claimed for a run that wrote nothing: {out}"
    );
}
