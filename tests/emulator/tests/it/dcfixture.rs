//! Fixtures of the data-centre tests: drives written by the real seedship-diskprep library, an emulator
//! directory importing into Azurite, jobs stored directly in the job store, blobs and logs read back.

use seedship_diskprep::prep::drive::DriveInfo;
use seedship_diskprep::prep::prepare::{self, PrepError, PrepEvent, PrepOptions, PrepUi};
use seedship_diskprep::prep::staging::StagedJob;
use seedship_e2e::{descriptor, noise, stage_job};
use seedship_emulator::config::{EmulatorDir, StorageAccountConfig};
use seedship_emulator::datacentre::{self, DriveLog, JobOutcome};
use seedship_emulator::store::{Store, StoredJob};
use seedship_emulator::{init, InitOptions};
use seedship_shared::api::{Drive, DriveState, Job, JobProperties, JobState, JobType};
use seedship_shared::blob::{AzureOptions, AzureStore, BlobStore};
use seedship_shared::luks::{LuksVolume, Pbkdf};
use seedship_shared::progress::{NoProgress, Progress};
use seedship_testkit::{Azurite, AZURITE_ACCOUNT, AZURITE_KEY};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::harness::SEED_SUB;

pub(crate) const MIB: usize = 1 << 20;

pub(crate) struct Ui;

impl PrepUi for Ui {
    fn choose_job(&mut self, _jobs: &[StagedJob]) -> Result<usize, PrepError> {
        Ok(0)
    }
    fn ask_drive(&mut self, _number: usize, _needed: u64) -> Result<Option<PathBuf>, PrepError> {
        Ok(None)
    }
    fn confirm_format(&mut self, _info: &DriveInfo, _drive_id: &str) -> Result<bool, PrepError> {
        Ok(true)
    }
    fn event(&mut self, _event: PrepEvent<'_>) {}
    fn progress(&mut self, _label: &str, _total: u64) -> Box<dyn Progress> {
        Box::new(NoProgress)
    }
}

/// A prepared drive: image path, drive id, recovery key, manifest hash.
pub(crate) struct Prepared {
    pub(crate) path: PathBuf,
    pub(crate) id: String,
    pub(crate) key: String,
    pub(crate) hash: String,
}

/// Stages `blobs` as job `job` and writes them with diskprep onto `drives` image files of 28 MiB.
pub(crate) fn prepare_drives(t: &Path, job: &str, blobs: &[(&str, Vec<u8>)], drives: usize) -> Vec<Prepared> {
    let staging = t.join("staging");
    let mut d = descriptor(job, "dc-test");
    d.storage_account = AZURITE_ACCOUNT.into();
    stage_job(&staging, d, blobs);
    let opts = PrepOptions {
        staging,
        publish_settings: None,
        job: Some(job.into()),
        drives: (0..drives).map(|i| t.join(format!("{job}-d{i}.img"))).collect(),
        create_image: Some(28 << 20),
        yes: true,
        verify: false,
        key_file: None,
        dry_run: false,
        pbkdf: Pbkdf::Pbkdf2 { iterations: 1000 },
        host: "dc-test".into(),
    };
    let plan = prepare::plan(&opts, &mut Ui).unwrap();
    let report = prepare::execute(&plan, &opts, &mut Ui, &Default::default()).unwrap();
    let keys = seedship_diskprep::prep::keyfile::read(&report.key_file).unwrap();
    report
        .drives
        .iter()
        .map(|d| Prepared {
            path: d.target.clone(),
            id: d.drive_id.clone(),
            key: keys
                .iter()
                .rev()
                .find(|k| k.drive_id == d.drive_id)
                .unwrap()
                .recovery_key
                .clone(),
            hash: d.manifest_hash.clone(),
        })
        .collect()
}

/// An emulator directory whose storage account is Azurite's; returns (dir, subscription).
pub(crate) fn emulator(t: &Path, az: &Azurite) -> (PathBuf, String) {
    let dir = t.join("emu");
    let report = init(&InitOptions {
        dir: dir.clone(),
        subscription_id: Some(SEED_SUB.into()),
        subscription_name: "dc".into(),
        storage_account: Some(StorageAccountConfig {
            name: AZURITE_ACCOUNT.into(),
            endpoint: az.endpoint(),
            key: AZURITE_KEY.into(),
        }),
        url: None,
        listen_port: None,
    })
    .unwrap();
    (dir, report.subscription_id)
}

/// Stores job `name` in Shipping with these drives (id, key, hash).
pub(crate) fn put_job(dir: &Path, sub: &str, name: &str, drives: &[(&str, &str, &str)], verbose: bool) {
    let mut store = Store::open(&EmulatorDir::new(dir).database()).unwrap();
    let job = Job {
        name: name.into(),
        properties: JobProperties {
            storage_account_name: Some(AZURITE_ACCOUNT.into()),
            job_type: Some(JobType::Import),
            enable_verbose_log: Some(verbose),
            ..Default::default()
        },
        drive_list: Some(
            drives
                .iter()
                .map(|(id, key, hash)| Drive {
                    drive_id: id.to_string(),
                    bit_locker_key: Some(key.to_string()),
                    manifest_file: Some("\\DriveManifest.xml".into()),
                    manifest_hash: Some(hash.to_string()),
                    state: Some(DriveState::Specified),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    };
    let stored = StoredJob {
        subscription: sub.into(),
        name: name.into(),
        account: AZURITE_ACCOUNT.into(),
        state: JobState::Shipping,
        job,
        created: 0,
        updated: 0,
        finished: None,
    };
    store.put(&stored, 20).unwrap().unwrap();
}

pub(crate) fn container(az: &Azurite, name: &str) -> AzureStore {
    let s = AzureStore::new(AzureOptions::from_connection_string(&az.connection_string(), name).unwrap())
        .unwrap();
    s.create_container().unwrap();
    s
}

pub(crate) fn read_blob(store: &AzureStore, name: &str) -> Vec<u8> {
    let len = store.properties(name).unwrap().len;
    let mut buf = vec![0u8; len as usize];
    store.read_at(name, 0, &mut buf).unwrap();
    buf
}

pub(crate) fn read_log(az: &Azurite, (c, name): &(String, String)) -> DriveLog {
    DriveLog::parse(&read_blob(&container(az, c), name)).unwrap()
}

pub(crate) fn stored(dir: &Path, sub: &str, name: &str) -> StoredJob {
    Store::open(&EmulatorDir::new(dir).database())
        .unwrap()
        .get(sub, name)
        .unwrap()
        .unwrap()
}

pub(crate) fn receive(dir: &Path, job: &str, drives: &[&Prepared]) -> JobOutcome {
    let paths: Vec<PathBuf> = drives.iter().map(|d| d.path.clone()).collect();
    datacentre::receive_and_import(dir, job, &paths).unwrap()
}

/// One drive of job `job` holding 6 MiB of noise (`seed`) as `seed/vm/disk.img`, the job stored Shipping
/// (without verbose log) in an emulator directory whose storage account is a fresh Azurite.
pub(crate) struct OneDrive {
    pub(crate) t: tempfile::TempDir,
    pub(crate) data: Vec<u8>,
    pub(crate) drive: Prepared,
    pub(crate) az: Azurite,
    pub(crate) dir: PathBuf,
    pub(crate) sub: String,
}

pub(crate) fn one_drive_job(job: &str, seed: u64) -> OneDrive {
    let t = tempfile::tempdir().unwrap();
    let data = noise(6 * MIB, seed);
    let drive = prepare_drives(t.path(), job, &[("vm/disk.img", data.clone())], 1).remove(0);
    let az = Azurite::start();
    let (dir, sub) = emulator(t.path(), &az);
    put_job(&dir, &sub, job, &[(&drive.id, &drive.key, &drive.hash)], false);
    OneDrive {
        t,
        data,
        drive,
        az,
        dir,
        sub,
    }
}

/// The payload offset of `needle` in the drive's decrypted payload.
pub(crate) fn payload_offset(d: &Prepared, needle: &[u8]) -> (u64, u64) {
    let key = seedship_shared::recovery::RecoveryKey::parse(&d.key).unwrap();
    let file = std::fs::File::open(&d.path).unwrap();
    let volume = LuksVolume::open(&file, key.passphrase()).unwrap();
    let mut payload = Vec::new();
    volume.reader(&file).read_to_end(&mut payload).unwrap();
    let at = payload.windows(needle.len()).position(|w| w == needle).unwrap();
    (at as u64, volume.data_offset())
}
