//! The one harness of diskprep's integration tests (cli.rs: the drives; api.rs: the import job against an
//! in-process emulator, seedship-emuharness): the diskprep binary (plain and on a pseudo-terminal), a test
//! folder, the arguments of a one-drive preparation, small staged jobs and the recovery-key file. Each test
//! file uses a part of it.
#![allow(dead_code)]

use seedship_e2e::{descriptor, noise, stage_job};
use seedship_shared::host::hostname;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use seedship_emuharness::{Emulator, SEED_SUB as SUB};
pub const ACCOUNT: &str = "seedacct";
pub const STORAGE_KEY: &str = "c2VlZHNoaXAtdGVzdC1rZXktbmV2ZXItcHJpbnRlZA==";

/// What tests/api.rs asks of the emulator beyond the shared harness.
pub trait EmulatorExt {
    /// Operator endpoint: sets the state of job `job` of [`ACCOUNT`] as the data centre would.
    fn set_state(&self, job: &str, state: &str);
}

impl EmulatorExt for Emulator {
    fn set_state(&self, job: &str, state: &str) {
        seedship_emuharness::set_state(self, ACCOUNT, job, state);
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

/// seedship-diskprep preparing drives only (the import job is api.rs's subject).
pub fn drives_only(args: &[&str]) -> Output {
    diskprep(args, &[("SEEDSHIP_NO_CREATE_JOB", "1")])
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

/// A job of about 52 MiB: a config page, a 40 MiB volume with a hole, an 8 MiB index, an empty blob.
pub fn standard_job(staging: &Path) -> PathBuf {
    let mut volume = noise(40 << 20, 7);
    volume[10 << 20..14 << 20].fill(0);
    stage_job(
        staging,
        descriptor("job1", &hostname()),
        &[
            ("config", noise(512, 1)),
            ("data/0000", volume),
            ("index/0000", noise(8 << 20, 3)),
            ("keys/empty", vec![0; 4096]),
        ],
    )
}

/// The (drive id, recovery key) lines of a key file.
pub fn keys(key_file: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(key_file)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[1].to_owned(), f[2].to_owned())
        })
        .collect()
}

/// The drive ids of a job's key file.
pub fn key_file_ids(job_dir: &Path) -> Vec<String> {
    keys(&job_dir.join("diskprep/keys.tsv"))
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// A test folder with an empty `staging/`, and `s:<staging>` as the command line gives it.
pub struct Folder {
    pub t: tempfile::TempDir,
    pub staging: PathBuf,
    pub s: String,
}

impl Folder {
    pub fn new() -> Folder {
        let t = tempfile::tempdir().unwrap();
        let staging = t.path().join("staging");
        std::fs::create_dir_all(&staging).unwrap();
        let s = format!("s:{}", staging.display());
        Folder { t, staging, s }
    }

    /// The path of the drive image file `name` in the folder.
    pub fn image(&self, name: &str) -> String {
        self.t.path().join(name).display().to_string()
    }
}

/// A preparation of `s:STAGING` onto one drive image `img`, created at `size` when missing, confirmed, with
/// PBKDF2 (fast to format).
pub fn one_drive<'a>(s: &'a str, img: &'a str, size: &'a str) -> Vec<&'a str> {
    vec![
        s,
        "--drive",
        img,
        "--create-image",
        size,
        "--yes",
        "--pbkdf",
        "pbkdf2",
    ]
}

/// The emulator in a test [`Folder`], a small job `job1` in its staging that names the emulator's
/// publish-settings file, and a drive image path `d1.img`.
pub struct JobSetup {
    pub dir: Folder,
    pub emu: Emulator,
    pub job_dir: PathBuf,
    pub ca: String,
    pub img: String,
}

impl JobSetup {
    pub fn new() -> JobSetup {
        let dir = Folder::new();
        let emu = Emulator::start(&dir.t.path().join("emulator"));
        let job_dir = make_job(&dir.staging, "job1", &emu.publish_settings());
        let ca = emu.ca().display().to_string();
        let img = dir.image("d1.img");
        JobSetup {
            dir,
            emu,
            job_dir,
            ca,
            img,
        }
    }

    /// A one-drive preparation (40 MiB) that creates the job at West Europe, trusting the emulator's CA.
    pub fn prep(&self) -> Vec<&str> {
        let mut a = one_drive(&self.dir.s, &self.img, "40M");
        a.extend(["--location", "West Europe", "--management-ca", &self.ca]);
        a
    }
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
