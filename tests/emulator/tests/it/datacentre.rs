//! The data centre's import against Azurite, with drives written by the real seedship-diskprep library.

use crate::dcfixture::*;
use seedship_e2e::noise;
use seedship_emulator::datacentre::{self, DriveStatus};
use seedship_shared::api::{DriveState, JobState};
use seedship_shared::blob::BlobStore;
use seedship_shared::luks::LuksVolume;
use seedship_shared::manifest::copylog::{BlobStatus, DispositionStatus, LogDisposition, RangeStatus};
use seedship_shared::manifest::ImportDisposition;
use seedship_testkit::Azurite;
use std::io::Read;

#[test]
fn a_blob_spanning_two_drives_is_imported_whole_and_an_existing_blob_is_renamed() {
    let t = tempfile::tempdir().unwrap();
    let mut disk = noise(14 * MIB, 11);
    disk[4 * MIB..8 * MIB].fill(0);
    let small = noise(64 << 10, 12);
    let blobs = [("vm/disk.img", disk.clone()), ("vm/small.img", small.clone())];
    let drives = prepare_drives(t.path(), "span", &blobs, 2);
    assert_eq!(drives.len(), 2);

    let az = Azurite::start();
    let seed = container(&az, "seed");
    seed.create("vm/small.img", 1024, &Default::default()).unwrap();
    seed.write_pages("vm/small.img", 0, &[9u8; 1024]).unwrap();

    let (dir, sub) = emulator(t.path(), &az);
    let specs: Vec<(&str, &str, &str)> = drives
        .iter()
        .map(|d| (d.id.as_str(), d.key.as_str(), d.hash.as_str()))
        .collect();
    put_job(&dir, &sub, "span", &specs, true);
    let out = receive(&dir, "span", &drives.iter().collect::<Vec<_>>());

    assert_eq!(out.state, JobState::Completed, "{out:?}");
    let written: u64 = out.drives.iter().map(|d| d.bytes_written).sum();
    // The hole of the volume is not on the drives; everything else is.
    assert_eq!(written, (10 * MIB + (64 << 10)) as u64);
    for d in &out.drives {
        assert_eq!(
            (d.status, d.state),
            (DriveStatus::Completed, DriveState::Completed)
        );
        assert_eq!(d.ranges_corrupted + d.ranges_not_written, 0);
        let log = read_log(&az, &d.error_log);
        assert_eq!(
            (log.status.as_str(), log.drive_id.as_str()),
            ("Completed", d.drive_id.as_str())
        );
        assert!(log.blobs.is_empty(), "the error log lists no blob: {log:?}");
        let verbose = read_log(&az, d.verbose_log.as_ref().unwrap());
        assert_eq!(verbose.status, DriveStatus::Completed);
        assert!(verbose.blobs.iter().all(|b| b.is_clean()));
        assert!(d.error_log.1.starts_with(&format!("waies/span_{}_", d.drive_id)));
        assert!(d.error_log.1.ends_with("_error.xml"));
        assert_eq!(d.error_log.0, "waimportexport");
    }
    assert_eq!(read_blob(&seed, "vm/disk.img"), disk);
    assert_eq!(read_blob(&seed, "vm/small (2).img"), small);
    assert_eq!(
        read_blob(&seed, "vm/small.img"),
        vec![9u8; 1024],
        "the existing blob is kept"
    );
    let renamed = out
        .drives
        .iter()
        .flat_map(|d| &d.log.blobs)
        .find(|b| b.blob_path == "seed/vm/small.img")
        .unwrap();
    assert_eq!(
        renamed.imported_blob_path.as_deref(),
        Some("seed/vm/small (2).img")
    );
    assert_eq!(
        renamed.disposition,
        Some(LogDisposition {
            requested: ImportDisposition::Rename,
            status: DispositionStatus::Renamed
        })
    );

    let job = stored(&dir, &sub, "span");
    assert_eq!(job.state, JobState::Completed);
    assert!(job.finished.is_some());
    for d in job.job.drives() {
        assert_eq!(d.state, Some(DriveState::Completed));
        assert_eq!(d.copy_status.as_deref(), Some("Completed"));
        assert!(d
            .error_log_uri
            .as_deref()
            .unwrap()
            .contains("/waimportexport/waies/span_"));
    }
    // A finished job receives nothing more.
    let again = datacentre::receive_and_import(&dir, "span", &[drives[0].path.clone()]);
    assert!(
        matches!(again, Err(datacentre::ReceiveError::WrongState { .. })),
        "{again:?}"
    );
}

#[test]
fn damaged_sectors_wrong_keys_and_wrong_manifests_are_reported() {
    let OneDrive {
        t: _dir_kept_until_the_end,
        data,
        drive: d,
        az,
        dir,
        sub,
    } = one_drive_job("dmg", 21);
    let d = &d;
    // Damage the ciphertext of the sector holding blob offset 5 MiB + 4096 (in the range at 4 MiB).
    let blob_off = 5 * MIB + 4096;
    let (at, data_offset) = payload_offset(d, &data[blob_off..blob_off + 64]);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&d.path).unwrap();
        f.write_all_at(&[0xA5; 16], data_offset + at).unwrap();
    }
    let out = receive(&dir, "dmg", &[d]);
    assert_eq!(out.state, JobState::Closed);
    let o = &out.drives[0];
    assert_eq!(
        (o.status, o.state),
        (DriveStatus::CompletedWithErrors, DriveState::CompletedMoreInfo)
    );
    assert_eq!(o.ranges_corrupted, 1);
    assert!(o.verbose_log.is_none());
    let log = read_log(&az, &o.error_log);
    assert_eq!(log.status, DriveStatus::CompletedWithErrors);
    assert_eq!(log.blobs.len(), 1);
    assert_eq!(log.blobs[0].status, BlobStatus::CompletedWithErrors);
    let bad: Vec<_> = log.blobs[0]
        .range_list()
        .iter()
        .filter(|r| r.status == RangeStatus::Corrupted)
        .collect();
    assert_eq!(bad.len(), 1, "{log:?}");
    let (start, end) = (bad[0].offset as usize, (bad[0].offset + bad[0].length) as usize);
    assert!(start <= blob_off && blob_off < end);
    let back = read_blob(&container(&az, "seed"), "vm/disk.img");
    assert_eq!(back.len(), data.len());
    assert_eq!(back[..start], data[..start]);
    assert!(
        back[start..end].iter().all(|&b| b == 0),
        "the corrupted range is not written"
    );
    assert_eq!(back[end..], data[end..]);
    let job = stored(&dir, &sub, "dmg");
    assert_eq!(job.state, JobState::Closed);
    assert_eq!(job.job.drives()[0].state, Some(DriveState::CompletedMoreInfo));
    assert_eq!(
        job.job.drives()[0].copy_status.as_deref(),
        Some("CompletedWithErrors")
    );

    // The same drive under a job with another key, and under one with another manifest hash.
    let other_key = seedship_shared::recovery::RecoveryKey::generate().unwrap();
    put_job(
        &dir,
        &sub,
        "wrongkey",
        &[(&d.id, other_key.as_str(), &d.hash)],
        false,
    );
    put_job(
        &dir,
        &sub,
        "wronghash",
        &[(&d.id, &d.key, &"0".repeat(32))],
        false,
    );
    for (job, status) in [
        ("wrongkey", DriveStatus::BitLockerUnlockVolumeFailed),
        ("wronghash", DriveStatus::ManifestCorrupted),
    ] {
        let out = receive(&dir, job, &[d]);
        assert_eq!(out.state, JobState::Closed, "{job}");
        assert_eq!(out.drives[0].status, status, "{job}");
        assert_eq!(out.drives[0].bytes_written, 0);
        let log = read_log(&az, &out.drives[0].error_log);
        assert_eq!((log.status.as_str(), log.blobs.len()), (status.as_str(), 0));
    }

    // A drive that is not in the job's list is refused before anything changes.
    put_job(
        &dir,
        &sub,
        "otherdrive",
        &[("NOT-THIS-ONE", &d.key, &d.hash)],
        false,
    );
    let e = datacentre::receive_and_import(&dir, "otherdrive", std::slice::from_ref(&d.path)).unwrap_err();
    assert!(e.to_string().contains("is not in the drive list"), "{e}");
    assert_eq!(stored(&dir, &sub, "otherdrive").state, JobState::Shipping);

    // The command line: the same drive for another job; the blob exists now, so it is renamed.
    put_job(&dir, &sub, "clijob", &[(&d.id, &d.key, &d.hash)], false);
    let cli = |drives: &[&std::path::Path]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_seedship-emulator"));
        c.args(["receive", "--dir", dir.to_str().unwrap(), "--job", "clijob"]);
        for d in drives {
            c.arg("--drive").arg(d);
        }
        c.output().unwrap()
    };
    // Refusals first (the checks the operator endpoint makes too): nothing changes.
    let missing = dir.join("no-such-drive.img");
    for (drives, needle) in [
        (vec![missing.as_path()], "no-such-drive.img cannot be opened"),
        (vec![d.path.as_path(), d.path.as_path()], "is given twice"),
    ] {
        let o = cli(&drives);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(needle), "{err}");
    }
    assert_eq!(stored(&dir, &sub, "clijob").state, JobState::Shipping);
    let o = cli(&[&d.path]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text.contains("CompletedWithErrors (CompletedMoreInfo)") && text.contains("job clijob: Closed"),
        "{text}"
    );
    assert!(!text.contains(&d.key), "the key is not printed");
    let renamed = read_blob(&container(&az, "seed"), "vm/disk (2).img");
    assert_eq!(renamed[..start], data[..start]);
}

/// Gives blobs of a prepared drive's manifest a disposition, in place (the manifest slot is padded with
/// spaces, so the text grows into the padding); returns the new ManifestHash.
fn set_dispositions(d: &Prepared, dispositions: &[(&str, &str)]) -> String {
    let key = seedship_shared::recovery::RecoveryKey::parse(&d.key).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&d.path)
        .unwrap();
    let volume = LuksVolume::open(&file, key.passphrase()).unwrap();
    let mut head = vec![0u8; 256 << 10];
    volume.read_sectors(&file, 0, &mut head).unwrap();
    let text_at = head.windows(5).position(|w| w == b"<?xml").unwrap();
    let end = text_at
        + head[text_at..]
            .windows(17)
            .position(|w| w == b"</DriveManifest>\n")
            .unwrap()
        + 17;
    let mut text = String::from_utf8(head[text_at..end].to_vec()).unwrap();
    let grown_from = text.len();
    for (blob, disposition) in dispositions {
        let at = text.find(&format!("<BlobPath>{blob}</BlobPath>")).unwrap();
        let was = "<ImportDisposition>rename</ImportDisposition>";
        let from = at + text[at..].find(was).unwrap();
        text.replace_range(
            from..from + was.len(),
            &format!("<ImportDisposition>{disposition}</ImportDisposition>"),
        );
    }
    let grown = text.len() - grown_from;
    assert!(
        head[end..end + grown].iter().all(|&b| b == b' '),
        "room in the padding"
    );
    head[text_at..end + grown].copy_from_slice(text.as_bytes());
    volume.write_sectors(&file, 0, &mut head).unwrap();
    let mut tar = seedship_shared::tar::TarReader::new(volume.reader(&file));
    let mut manifest = Vec::new();
    tar.next_entry()
        .unwrap()
        .unwrap()
        .read_to_end(&mut manifest)
        .unwrap();
    seedship_shared::manifest::DriveManifest::parse(&manifest).expect("the edited manifest parses");
    seedship_shared::manifest::Md5Hash::of(&manifest).to_string()
}

#[test]
fn no_overwrite_skips_and_overwrite_replaces_existing_blobs() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, c) = (noise(64 << 10, 31), noise(64 << 10, 32), noise(64 << 10, 33));
    let drives = prepare_drives(
        t.path(),
        "disp",
        &[("a.img", a.clone()), ("b.img", b.clone()), ("c.img", c.clone())],
        1,
    );
    let d = &drives[0];
    let hash = set_dispositions(
        d,
        &[
            ("seed/a.img", "no-overwrite"),
            ("seed/b.img", "overwrite"),
            ("seed/c.img", "no-overwrite"),
        ],
    );

    let az = Azurite::start();
    let seed = container(&az, "seed");
    for name in ["a.img", "b.img"] {
        seed.create(name, 1024, &Default::default()).unwrap();
        seed.write_pages(name, 0, &[9u8; 1024]).unwrap();
    }
    let (dir, sub) = emulator(t.path(), &az);
    put_job(&dir, &sub, "disp", &[(&d.id, &d.key, &hash)], true);
    let out = receive(&dir, "disp", &[d]);
    assert_eq!(out.state, JobState::Completed, "{out:?}");
    assert_eq!(out.drives[0].status, DriveStatus::Completed);

    assert_eq!(
        read_blob(&seed, "a.img"),
        vec![9u8; 1024],
        "no-overwrite keeps the blob"
    );
    assert_eq!(read_blob(&seed, "b.img"), b, "overwrite replaces it");
    assert_eq!(
        read_blob(&seed, "c.img"),
        c,
        "no-overwrite creates a missing blob"
    );
    let log = read_log(&az, out.drives[0].verbose_log.as_ref().unwrap());
    let status = |path: &str| {
        let blob = log.blobs.iter().find(|x| x.blob_path == path).unwrap();
        let d = blob.disposition.unwrap();
        (
            blob.status,
            d.status,
            d.requested.as_str(),
            blob.failed_ranges().next().is_none(),
        )
    };
    use DispositionStatus::{Created, Overwritten, Skipped};
    let done = BlobStatus::Completed;
    assert_eq!(status("seed/a.img"), (done, Skipped, "no-overwrite", false));
    assert_eq!(status("seed/b.img"), (done, Overwritten, "overwrite", true));
    assert_eq!(status("seed/c.img"), (done, Created, "no-overwrite", true));
    assert!(log
        .blobs
        .iter()
        .find(|x| x.blob_path == "seed/a.img")
        .unwrap()
        .range_list()
        .iter()
        .all(|r| r.status == RangeStatus::Cancelled));
}

/// Sets the stored job's `ContainerSas` (and no account key).
fn set_container_sas(dir: &std::path::Path, sub: &str, job: &str, sas: &str) {
    let store =
        seedship_emulator::store::Store::open(&seedship_emulator::EmulatorDir::new(dir).database()).unwrap();
    let mut j = store.get(sub, job).unwrap().unwrap();
    j.job.properties.storage_account_key = None;
    j.job.properties.container_sas = Some(sas.to_owned());
    store.save(&j).unwrap();
}

/// A container SAS made by the Azure SDK for Python for `container` with `perms`, valid one hour.
fn python_sas(az: &Azurite, container: &str, perms: &str) -> String {
    let token = seedship_testkit::run_python(
        "blob_interop.py",
        &["sas", container, perms],
        &[("AZURE_STORAGE_CONNECTION_STRING", &az.connection_string())],
    );
    format!("{container}?{}", token.trim())
}

#[test]
fn a_container_sas_confines_the_import_to_its_container() {
    let o = one_drive_job("sasjob", 31);
    // The drive's manifest names container `seed`; the SAS is for `elsewhere`: nothing may land in `seed`.
    container(&o.az, "elsewhere");
    set_container_sas(
        &o.dir,
        &o.sub,
        "sasjob",
        &python_sas(&o.az, "elsewhere", "racwdl"),
    );
    let out = receive(&o.dir, "sasjob", &[&o.drive]);
    assert_eq!(out.state, JobState::Closed, "{out:?}");
    let d = &out.drives[0];
    assert_eq!(d.state, DriveState::CompletedMoreInfo);
    assert_eq!(d.bytes_written, 0);
    let log = read_log(&o.az, &d.error_log);
    let blob = log
        .blobs
        .iter()
        .find(|b| b.blob_path == "seed/vm/disk.img")
        .unwrap();
    assert_eq!(blob.status, BlobStatus::BlobRequestForbidden, "{log:?}");
    assert_eq!(
        d.error_log.0, "elsewhere",
        "the copy log goes into the SAS's container"
    );
    assert!(
        d.error_log.1.starts_with("waimportexport/waies/sasjob_"),
        "{:?}",
        d.error_log
    );
    let seed = blob_names(&o.az, "seed");
    assert!(
        seed.is_empty(),
        "nothing was written outside the SAS's container: {seed:?}"
    );

    // A SAS for the manifest's container imports the drive, written with the SAS.
    let o = one_drive_job("sasjob", 32);
    container(&o.az, "seed");
    set_container_sas(&o.dir, &o.sub, "sasjob", &python_sas(&o.az, "seed", "racwdl"));
    let out = receive(&o.dir, "sasjob", &[&o.drive]);
    assert_eq!(out.state, JobState::Completed, "{out:?}");
    assert_eq!(read_blob(&container(&o.az, "seed"), "vm/disk.img"), o.data);

    // A read-only SAS, or one signed with another key, is refused before anything changes.
    set_container_sas(&o.dir, &o.sub, "sasjob", &python_sas(&o.az, "seed", "rl"));
    let mut j = stored(&o.dir, &o.sub, "sasjob");
    j.state = JobState::Shipping;
    seedship_emulator::store::Store::open(&seedship_emulator::EmulatorDir::new(&o.dir).database())
        .unwrap()
        .save(&j)
        .unwrap();
    let err =
        datacentre::receive_and_import(&o.dir, "sasjob", std::slice::from_ref(&o.drive.path)).unwrap_err();
    assert!(
        matches!(err, datacentre::ReceiveError::BadSas { .. })
            && err.to_string().contains("does not grant write"),
        "{err}"
    );
    let forged = python_sas(&o.az, "seed", "racwdl").replace("sig=", "sig=AAAA");
    set_container_sas(&o.dir, &o.sub, "sasjob", &forged);
    let err =
        datacentre::receive_and_import(&o.dir, "sasjob", std::slice::from_ref(&o.drive.path)).unwrap_err();
    assert!(
        err.to_string()
            .contains("is not signed with the key of storage account"),
        "{err}"
    );
    assert_eq!(stored(&o.dir, &o.sub, "sasjob").state, JobState::Shipping);
}

fn blob_names(az: &Azurite, name: &str) -> Vec<String> {
    container(az, name)
        .list("")
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect()
}
