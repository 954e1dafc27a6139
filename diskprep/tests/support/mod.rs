//! The harness of tests/api.rs: an in-process emulator (seedship-emuharness), the diskprep binary (plain and
//! on a pseudo-terminal), and a small staged job.

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
