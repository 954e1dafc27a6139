//! End to end through completion: the real agent stages a backup, seedship-diskprep copies it onto LUKS2
//! image files and creates the import job at seedship-emulator, `u:` ships it, the agent waits (exit 75)
//! naming the job's state, the emulator's data centre imports the drives into Azurite, and the agent verifies
//! the import, copies it into the vault with Copy Blob, goes online and runs the first incremental. An
//! independent client (the Azure Python SDK, `tests/python/vault_compare.py`) then lists the vault's page
//! blobs and ranges and compares their bytes with staging. Refusals: a changed byte only `--verify-all`
//! reads, an object deleted from the import container, and a drive damaged before the import (its copy log
//! lists Corrupted ranges).
//!
//! Needs the binaries built: `cargo build -p seedship-agent -p seedship-diskprep -p seedship-emulator`.

use seedship_e2e::testkit::{
    cargo_bin, run_python, write_private, Azurite, EmulatorServer, AZURITE_ACCOUNT, AZURITE_KEY,
};
use seedship_e2e::{noise, output, recovery_keys, text};
use seedship_shared::blob::{AzureOptions, AzureStore, BlobError, BlobStore, Credential};
use seedship_shared::manifest::copylog::{DriveLog, DriveStatus, RangeStatus};
use seedship_shared::publish_settings::PublishSettings;
use seedship_shared::staging::BLOBS_DIR;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
/// The data segment starts 16 MiB into every drive.
const DATA_OFFSET: u64 = 16 << 20;

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// Azurite, the emulator serving the Import/Export API, and a folder for everything else.
struct World {
    dir: tempfile::TempDir,
    azurite: Azurite,
    emulator: EmulatorServer,
    emu: PathBuf,
    subscription: String,
    /// Azurite serves HTTPS with Entra ID bearer tokens (`--oauth basic`, the emulator's server certificate)
    /// and the agent gets no storage account key.
    oauth: bool,
}

impl World {
    fn start() -> World {
        World::start_with(false)
    }

    /// [`World::start`], with Azurite in OAuth mode over HTTPS when `oauth` (its certificate is the
    /// emulator's server certificate, so the emulator is initialised first and then pointed at Azurite).
    fn start_with(oauth: bool) -> World {
        let dir = tempfile::Builder::new()
            .prefix("seedship-complete-")
            .tempdir()
            .unwrap();
        let emu = dir.path().join("emulator");
        let plain = (!oauth).then(Azurite::start);
        let endpoint = plain
            .as_ref()
            .map(Azurite::endpoint)
            .unwrap_or_else(|| format!("https://127.0.0.1:1/{AZURITE_ACCOUNT}"));
        // the key through the environment, never on the command line
        let o = output(
            Command::new(cargo_bin("seedship-emulator"))
                .args([
                    "init",
                    "--dir",
                    s(&emu),
                    "--storage-account",
                    AZURITE_ACCOUNT,
                    "--storage-endpoint",
                    &endpoint,
                ])
                .env("SEEDSHIP_EMULATOR_STORAGE_KEY", AZURITE_KEY),
        );
        assert!(o.status.success(), "emulator init: {}", text(&o));
        let azurite = match plain {
            Some(a) => a,
            None => {
                let a = Azurite::start_oauth(&emu.join("server.pem"), &emu.join("server-key.pem"));
                let path = emu.join("emulator.json");
                let mut config: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                assert!(config["StorageAccount"]["Endpoint"].is_string(), "{config}");
                config["StorageAccount"]["Endpoint"] = a.endpoint().into();
                std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
                a
            }
        };
        let emulator = EmulatorServer::start(&emu, &dir.path().join("emulator.log"));
        let ps = PublishSettings::load(&emu.join("emulator.publishsettings")).unwrap();
        let subscription = ps.subscriptions[0].id.clone();
        World {
            dir,
            azurite,
            emulator,
            emu,
            subscription,
            oauth,
        }
    }

    fn store(&self, container: &str) -> AzureStore {
        let cred = Credential::SharedKey(AZURITE_KEY.into());
        let mut o = AzureOptions::new(&self.azurite.endpoint(), AZURITE_ACCOUNT, container, cred);
        if self.oauth {
            o.extra_ca_pem = Some(std::fs::read(self.emu.join("ca.pem")).unwrap());
        }
        AzureStore::new(o).unwrap()
    }

    /// The environment every tool gets: the storage key and endpoint, the emulator's CA.
    fn env<'c>(&self, c: &'c mut Command) -> &'c mut Command {
        if self.oauth {
            // no storage account key anywhere: the vault is signed in to with the application's tokens
            c.env_remove("SEEDSHIP_STORAGE_KEY")
                .env_remove("SEEDSHIP_STORAGE_KEY_FILE")
                .env("SEEDSHIP_BLOB_CA", self.emu.join("ca.pem"));
        } else {
            c.env("SEEDSHIP_STORAGE_KEY", AZURITE_KEY);
        }
        c.env("SEEDSHIP_BLOB_ENDPOINT", self.azurite.endpoint())
            .env("SEEDSHIP_MANAGEMENT_CA", self.emu.join("ca.pem"))
            .env_remove("SEEDSHIP_VAULT_CONTAINER")
            .env_remove("SEEDSHIP_PASSPHRASE")
            .stdin(Stdio::null())
    }

    /// Runs the data centre's import of `drives`; returns its output.
    fn receive(&self, job: &str, drives: &[PathBuf]) -> Output {
        let mut c = Command::new(cargo_bin("seedship-emulator"));
        c.args(["receive", "--dir", s(&self.emu), "--job", job]);
        for d in drives {
            c.arg("--drive").arg(d);
        }
        output(&mut c)
    }
}

/// One staging job, from the source folder to the shipped drives.
struct Seed {
    dir: PathBuf,
    src: PathBuf,
    staging: PathBuf,
    state: PathBuf,
    job: String,
    drives: Vec<PathBuf>,
}

impl Seed {
    fn agent(&self, w: &World, args: &[&str]) -> Output {
        output(
            w.env(&mut Command::new(cargo_bin("seedship-agent")))
                .env("SEEDSHIP_STATE_DIR", &self.state)
                .arg("--passphrase-file")
                .arg(self.dir.join("pass"))
                .args(args),
        )
    }

    fn policy(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.state.join("policy.json")).unwrap()).unwrap()
    }

    fn blobs(&self) -> PathBuf {
        self.staging.join(&self.job).join("blobs")
    }

    fn staged_names(&self) -> Vec<String> {
        let d: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.staging.join(&self.job).join("job.json")).unwrap())
                .unwrap();
        d["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Which Import/Export API the agent's `offline start` chooses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    /// The publish-settings file.
    Classic,
    /// Resource Manager, signed in with the certificate of the application `seedship-emulator init` registered.
    ResourceManager,
}

impl World {
    /// The `offline start` options that reach the service through `api`.
    fn service_args(&self, api: Api) -> Vec<String> {
        let strings = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match api {
            Api::Classic => strings(&[
                "--publish-settings",
                s(&self.emu.join("emulator.publishsettings")),
                "--subscription",
                &self.subscription,
                "--storage-account",
                AZURITE_ACCOUNT,
            ]),
            Api::ResourceManager => {
                let app: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(self.emu.join("entra-app.json")).unwrap()).unwrap();
                let f = |k: &str| app[k].as_str().unwrap().to_owned();
                // the admin's own copy of the certificate and key (so a test can move them)
                let own = self.dir.path().join("app");
                std::fs::create_dir_all(&own).unwrap();
                let copy = |k: &str, name: &str| {
                    let to = own.join(name);
                    std::fs::copy(f(k), &to).unwrap();
                    s(&to).to_owned()
                };
                let (cert, key) = (copy("certificate", "app.pem"), copy("private_key", "app-key.pem"));
                let id = format!(
                    "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{AZURITE_ACCOUNT}",
                    f("subscription"),
                    f("resource_group")
                );
                vec![
                    "--tenant".into(),
                    f("tenant"),
                    "--client-id".into(),
                    f("client_id"),
                    "--client-certificate".into(),
                    cert,
                    "--client-certificate-key".into(),
                    key,
                    "--authority".into(),
                    f("authority"),
                    "--management-endpoint".into(),
                    f("management_endpoint"),
                    "--management-audience".into(),
                    f("management_audience"),
                    "--storage-account-id".into(),
                    id,
                ]
            }
        }
    }
}

/// Stages `files` noise files of `mib` MiB with the real agent, prepares `drives` image files of `image`
/// with diskprep (creating the import job at the emulator) and ships them with `u:`.
fn seed(w: &World, job: &str, container: &str, files: u64, mib: usize, drives: usize, image: &str) -> Seed {
    seed_through(w, Api::Classic, job, container, files, mib, drives, &fixed(image))
}

/// An image size that does not depend on what was staged.
fn fixed(size: &str) -> impl Fn(&Path) -> String + '_ {
    move |_| size.to_owned()
}

/// [`seed`] through the API `api`, with the image size chosen by `image` from the staged blobs folder.
#[allow(clippy::too_many_arguments)]
fn seed_through(
    w: &World,
    api: Api,
    job: &str,
    container: &str,
    files: u64,
    mib: usize,
    drives: usize,
    image: &dyn Fn(&Path) -> String,
) -> Seed {
    let dir = w.dir.path().join(job);
    let seed = Seed {
        src: dir.join("src"),
        staging: dir.join("staging"),
        state: dir.join("state"),
        job: job.to_owned(),
        drives: (1..=drives).map(|i| dir.join(format!("drive{i}.img"))).collect(),
        dir,
    };
    for d in [&seed.src, &seed.staging] {
        std::fs::create_dir_all(d).unwrap();
    }
    for i in 0..files {
        std::fs::write(seed.src.join(format!("f{i}.bin")), noise(mib * MIB, i + 7)).unwrap();
    }
    std::fs::write(seed.src.join("notes.txt"), "the first backup\n".repeat(1000)).unwrap();
    std::fs::write(seed.dir.join("pass"), "a long enough test passphrase\n").unwrap();
    let service = w.service_args(api);
    let mut start = vec![
        "offline",
        "start",
        "--staging",
        s(&seed.staging),
        "--job-name",
        job,
        "--container",
        container,
        "--source",
        s(&seed.src),
        "--volume-size-mib",
        "8",
    ];
    start.extend(service.iter().map(String::as_str));
    let o = seed.agent(w, &start);
    assert!(o.status.success(), "offline start: {}", text(&o));
    let o = seed.agent(w, &["backup"]);
    assert!(o.status.success(), "backup: {}", text(&o));
    // staged, but no import job yet
    let o = seed.agent(w, &["backup"]);
    assert_eq!(code(&o), 75, "{}", text(&o));
    assert!(
        text(&o).contains(&format!("import job {job} does not exist yet")),
        "{}",
        text(&o)
    );
    let image = image(&seed.staging.join(job).join(BLOBS_DIR));
    let mut c = Command::new(cargo_bin("seedship-diskprep"));
    w.env(&mut c).arg(format!("s:{}", seed.staging.display()));
    for d in &seed.drives {
        c.arg("--drive").arg(d);
    }
    c.args([
        "--create-image",
        &image,
        "--yes",
        "--pbkdf",
        "pbkdf2",
        "--location",
        "West Europe",
    ]);
    if api == Api::ResourceManager {
        // Jobs_Create needs the return address
        c.args(RETURN_ADDRESS);
    }
    let o = output(&mut c);
    assert!(o.status.success(), "diskprep: {}", text(&o));
    let o = output(
        w.env(&mut Command::new(cargo_bin("seedship-diskprep")))
            .args([
                "u:",
                &format!("s:{}", seed.staging.display()),
                "--carrier",
                "FedEx",
                "--tracking-number",
                "1Z999AA10123456784",
            ])
            .args(RETURN_ADDRESS)
            .args([
                "--return-carrier",
                "FedEx",
                "--return-carrier-account",
                "123456789",
                "--yes",
            ]),
    );
    assert!(o.status.success(), "u: {}", text(&o));
    seed
}

/// The return address options of diskprep.
const RETURN_ADDRESS: [&str; 8] = [
    "--return-name",
    "Backup Admin",
    "--return-address",
    "1 Main St, Springfield, 12345, USA",
    "--return-phone",
    "+1 555 0100",
    "--return-email",
    "admin@example.com",
];

fn container_missing(store: &AzureStore) -> bool {
    matches!(store.list(""), Err(BlobError::ContainerNotFound { .. }))
}

#[test]
fn completes_into_the_vault_after_refusing_damage_and_a_missing_object() {
    let mut w = World::start();
    let seed = seed(&w, "seedjob", "seed", 3, 8, 3, "28M");
    let o = seed.agent(&w, &["backup"]);
    assert_eq!(code(&o), 75, "{}", text(&o));
    assert!(text(&o).contains("import job seedjob: Shipping"), "{}", text(&o));
    // The service does not answer: still waiting, the next run asks again.
    w.emulator.stop();
    let o = seed.agent(&w, &["backup"]);
    assert_eq!(code(&o), 75, "{}", text(&o));
    assert!(text(&o).contains("did not answer"), "{}", text(&o));
    w.emulator = EmulatorServer::start(&w.emu, &w.dir.path().join("emulator.log"));
    let o = w.receive("seedjob", &seed.drives);
    assert!(o.status.success(), "receive: {}", text(&o));

    let import = w.store("seed");
    let vault = w.store("seed-vault");
    // A changed byte in a volume header's reserved area: no data blob covers it, so only --verify-all sees it.
    let mut byte = [0u8; 1];
    import.read_at("data/00000000", 100, &mut byte).unwrap();
    let mut page = vec![0u8; 512];
    import.read_at("data/00000000", 0, &mut page).unwrap();
    page[100] ^= 0x5a;
    import.write_pages("data/00000000", 0, &page).unwrap();
    let o = seed.agent(&w, &["backup", "--verify-all"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let out = text(&o);
    println!("--- backup --verify-all with a changed byte:\n{out}");
    assert!(
        out.contains("object data/00000000") && out.contains("BLAKE3"),
        "{out}"
    );
    assert!(out.contains("nothing was copied"), "{out}");
    assert_eq!(seed.policy()["mode"], "offline");
    assert!(container_missing(&vault), "nothing may be copied");
    page[100] ^= 0x5a;
    import.write_pages("data/00000000", 0, &page).unwrap();

    // An object deleted from the import container by hand.
    let snap = seed
        .staged_names()
        .into_iter()
        .find(|n| n.starts_with("snapshots/"))
        .unwrap();
    let props = import.properties(&snap).unwrap();
    let mut bytes = vec![0u8; props.len as usize];
    import.read_at(&snap, 0, &mut bytes).unwrap();
    import.delete(&snap).unwrap();
    let o = seed.agent(&w, &["backup"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let out = text(&o);
    println!("--- backup with {snap} deleted:\n{out}");
    assert!(
        out.contains(&format!("object {snap} (")) && out.contains("is missing from import container seed"),
        "{out}"
    );
    assert_eq!(seed.policy()["mode"], "offline");
    assert!(container_missing(&vault), "nothing may be copied");
    import.create(&snap, props.len, &props.metadata).unwrap();
    import.write_pages(&snap, 0, &bytes).unwrap();

    // As if an earlier completion was interrupted after copying the config: it is not copied again.
    vault.create_container().unwrap();
    vault
        .copy_from_url(import.blob_url("config").unwrap().as_str(), "config")
        .unwrap();
    std::fs::write(seed.state.join("complete-seedjob.copied"), "config\n").unwrap();
    let o = seed.agent(&w, &["status"]);
    assert!(
        text(&o).contains("copying into the vault was interrupted"),
        "{}",
        text(&o)
    );

    // Completion, with a new file for the first incremental.
    let n = seed.staged_names().len();
    std::fs::write(seed.src.join("after-import.bin"), noise(3 * MIB, 99)).unwrap();
    let started = Instant::now();
    let o = seed.agent(&w, &["backup"]);
    println!(
        "completion of {n} objects (verification, Copy Blob, first incremental) took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(o.status.success(), "completion: {}", text(&o));
    let out = text(&o);
    println!("--- completion:\n{out}");
    assert!(out.contains("import job seedjob completed"), "{out}");
    assert!(
        out.contains(&format!("{n} objects present with their lengths")),
        "{out}"
    );
    assert!(
        out.contains(&format!("({} copied with Copy Blob, 1 already there)", n - 1)),
        "{out}"
    );
    assert!(!seed.state.join("complete-seedjob.copied").exists());
    assert!(out.contains("data blobs read back and authenticated"), "{out}");
    assert!(
        out.contains("snapshot ") && out.contains(" saved"),
        "the first incremental ran: {out}"
    );
    let pol = seed.policy();
    assert_eq!(pol["mode"], "online");
    assert_eq!(pol["vault"]["container"], "seed-vault");
    assert_eq!(pol["vault"]["endpoint"], w.azurite.endpoint());

    // The Azure SDK's view of the vault.
    let cs = w.azurite.connection_string();
    let report = run_python(
        "vault_compare.py",
        &["seed-vault", s(&seed.blobs())],
        &[("AZURE_STORAGE_CONNECTION_STRING", &cs)],
    );
    let r: serde_json::Value = serde_json::from_str(&report).unwrap();
    println!("vault_compare.py: {report}");
    assert_eq!(
        r["compared"].as_u64().unwrap() as usize,
        walk_count(&seed.blobs()),
        "{report}"
    );
    assert!(
        !r["grown"].as_array().unwrap().is_empty() || !r["new"].as_array().unwrap().is_empty(),
        "the incremental wrote into the vault: {report}"
    );

    // Online from now on: status says so, the next run is an ordinary incremental, restore reads the vault.
    let o = seed.agent(&w, &["status"]);
    assert!(text(&o).contains("vault: container seed-vault"), "{}", text(&o));
    let o = seed.agent(&w, &["backup"]);
    assert!(o.status.success(), "online backup: {}", text(&o));
    assert!(!text(&o).contains("verifying the import"), "{}", text(&o));
    let target = seed.dir.join("restored");
    let o = seed.agent(&w, &["restore", "latest", "--target", s(&target)]);
    assert!(o.status.success(), "restore: {}", text(&o));
    let restored = target.join(seed.src.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(restored.join("after-import.bin")).unwrap(),
        std::fs::read(seed.src.join("after-import.bin")).unwrap()
    );
    assert_eq!(
        std::fs::read(restored.join("f0.bin")).unwrap(),
        std::fs::read(seed.src.join("f0.bin")).unwrap()
    );

    // The import container still holds the imported objects (billed): status says so, delete-import
    // --dry-run lists them and deletes nothing, delete-import deletes the ones the vault holds alike.
    assert!(
        out.contains("`seedship-agent delete-import` deletes them"),
        "{out}"
    );
    let st = text(&seed.agent(&w, &["status"]));
    assert!(st.contains("import container: seed still holds"), "{st}");
    let import = w.store("seed");
    let before = import.list("").unwrap().len();
    assert!(before >= n, "{before} objects in the import container");
    let o = seed.agent(&w, &["delete-import", "--dry-run"]);
    assert!(o.status.success(), "delete-import --dry-run: {}", text(&o));
    assert!(
        text(&o).contains(&format!("would delete {n} object(s)")),
        "{}",
        text(&o)
    );
    assert_eq!(
        import.list("").unwrap().len(),
        before,
        "a dry run deletes nothing"
    );
    let o = seed.agent(&w, &["delete-import", "--json"]);
    assert!(o.status.success(), "delete-import: {}", text(&o));
    let doc: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(&o.stdout)).unwrap();
    assert_eq!(doc["deleted"].as_array().unwrap().len(), n, "{doc}");
    let left: Vec<String> = import.list("").unwrap().into_iter().map(|b| b.name).collect();
    assert_eq!(left.len(), before - n, "{left:?}");
    assert!(
        left.iter().all(|name| !seed.staged_names().contains(name)),
        "{left:?}"
    );
    let st = text(&seed.agent(&w, &["status"]));
    assert!(!st.contains("import container:"), "{st}");
    let o = seed.agent(
        &w,
        &["restore", "latest", "--target", s(&seed.dir.join("restored-2"))],
    );
    assert!(o.status.success(), "restore after delete-import: {}", text(&o));
}

fn walk_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk_count(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn refuses_a_drive_damaged_before_the_import() {
    let w = World::start();
    let seed = seed(&w, "dmgjob", "dmg", 2, 6, 2, "26M");
    // Flip bytes inside the payload of drive 1, 4 MiB past the LUKS2 header: inside a data volume's range.
    let damaged = &seed.drives[0];
    let img = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(damaged)
        .unwrap();
    use std::os::unix::fs::FileExt;
    let at = DATA_OFFSET + 4 * MIB as u64 + 1000;
    let mut b = [0u8; 16];
    img.read_exact_at(&mut b, at).unwrap();
    for x in &mut b {
        *x ^= 0xff;
    }
    img.write_all_at(&b, at).unwrap();
    drop(img);
    let o = w.receive("dmgjob", &seed.drives);
    assert_eq!(code(&o), 1, "the job ends Closed: {}", text(&o));

    // The data centre's copy log of drive 1 lists Corrupted ranges.
    let keys = recovery_keys(&seed.staging.join("dmgjob/diskprep/keys.tsv"));
    let drive1 = &keys[0].0;
    let logs = w.store("waimportexport");
    let error_log = logs
        .list("")
        .unwrap()
        .into_iter()
        .find(|b| b.name.contains(drive1.as_str()) && b.name.ends_with("_error.xml"))
        .unwrap_or_else(|| panic!("no error log of drive {drive1}"));
    let mut xml = vec![0u8; error_log.len as usize];
    logs.read_at(&error_log.name, 0, &mut xml).unwrap();
    let xml = String::from_utf8_lossy(&xml);
    assert!(xml.contains("Status=\"Corrupted\""), "{xml}");

    let o = seed.agent(&w, &["backup"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let out = text(&o);
    println!("--- backup after a damaged drive:\n{out}");
    assert!(out.contains("import job dmgjob: Closed"), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("Corrupted"))
        .unwrap_or_else(|| panic!("no Corrupted range named: {out}"));
    assert!(
        line.contains("object data/") && line.contains("range ") && line.contains(drive1.as_str()),
        "{line}"
    );
    assert!(out.contains("nothing was copied"), "{out}");
    assert_eq!(seed.policy()["mode"], "offline");
    assert!(container_missing(&w.store("dmg-vault")), "nothing may be copied");
    assert!(
        out.lines()
            .filter(|l| l.starts_with("error: "))
            .all(|l| l.contains("Corrupted")),
        "only the Corrupted ranges are named (the damaged volume is not sampled): {out}"
    );

    // The fix: the damaged object uploaded again from staging; the rerun accepts it and completes.
    let name = line
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches(':')
        .to_owned();
    let bytes = std::fs::read(seed.blobs().join(&name)).unwrap();
    let import = w.store("dmg");
    import.write_pages(&name, 0, &bytes).unwrap();
    let o = seed.agent(&w, &["backup", "--verify-all"]);
    let out = text(&o);
    println!("--- backup after {name} was uploaded again:\n{out}");
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains(&format!("note: {name}: range ")) && out.contains("accepted"),
        "{out}"
    );
    assert!(
        out.contains("every byte compared with the staged BLAKE3"),
        "{out}"
    );
    assert_eq!(seed.policy()["mode"], "online");
}

/// The emulator's `init --storage-key-file`: the key is read from the file, never from the command line.
#[test]
fn emulator_storage_key_file_stays_off_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("key.fifo");
    let emu = dir.path().join("emulator");
    let mut cmd = Command::new(cargo_bin("seedship-emulator"));
    cmd.args([
        "init",
        "--dir",
        s(&emu),
        "--storage-account",
        AZURITE_ACCOUNT,
        "--storage-endpoint",
        "http://127.0.0.1:9/devstoreaccount1",
        "--storage-key-file",
        s(&fifo),
    ]);
    let (o, cmdline) = seedship_e2e::testkit::run_with_secret_fifo(&mut cmd, &fifo, AZURITE_KEY);
    assert!(o.status.success(), "emulator init: {}", text(&o));
    assert!(!String::from_utf8_lossy(&cmdline).contains(AZURITE_KEY));
    let config: String = std::fs::read_dir(&emu)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .collect();
    assert!(
        config.contains(AZURITE_KEY),
        "the key read from the file reached the emulator's config"
    );
}

/// Issue 20 point 3: with one drive of a two-drive job received, every object and range still missing is
/// named: the objects only the second drive carried, and the volume the data centre created at its full
/// length but filled only from the first drive, with its unwritten ranges (also with `--verify-all`).
#[test]
fn a_partial_import_names_every_missing_object_and_range() {
    let w = World::start();
    // Two 8 MiB files of noise make volumes of 8 MiB less up to a chunk (where a volume ends varies from run to
    // run with the repository's chunker key and the order the two files' chunks arrive in). The drives are
    // sized from the staged first volume: its whole length, one 4 MiB segment of the second volume and room
    // for the tar headers and the manifest, so the second volume always spans both drives.
    let cut_second_volume = |blobs: &Path| {
        let first = std::fs::metadata(blobs.join("data/00000000")).unwrap().len();
        let payload = first + 4 * MIB as u64 + 128 * 1024;
        format!("{}M", 16 + payload.div_ceil(MIB as u64))
    };
    let seed = seed_through(&w, Api::Classic, "halfjob", "half", 2, 8, 2, &cut_second_volume);
    let o = w.receive("halfjob", &seed.drives[..1]);
    println!("--- receive of the first drive only:\n{}", text(&o));
    for args in [&["backup"][..], &["backup", "--verify-all"]] {
        let o = seed.agent(&w, args);
        let out = text(&o);
        println!("--- {args:?} after a partial import:\n{out}");
        assert_eq!(code(&o), 1, "{out}");
        assert!(
            out.lines().any(|l| l.contains("object data/0000000")
                && l.contains("is in import container half at its full length but only partly written")
                && l.contains("range(s)")),
            "{out}"
        );
        for prefix in ["index/", "keys/", "snapshots/"] {
            assert!(
                out.lines()
                    .any(|l| l.contains(&format!("object {prefix}")) && l.contains("missing")),
                "{prefix} not named: {out}"
            );
        }
        assert!(out.contains("nothing was copied"), "{out}");
    }
    assert_eq!(seed.policy()["mode"], "offline");

    // Issue 20 point 2: without a blob endpoint the agent takes the one every copy log points at ...
    let with_endpoint = |endpoint: Option<&str>| {
        let mut c = Command::new(cargo_bin("seedship-agent"));
        w.env(&mut c)
            .env_remove("SEEDSHIP_BLOB_ENDPOINT")
            .env("SEEDSHIP_STATE_DIR", &seed.state)
            .arg("--passphrase-file")
            .arg(seed.dir.join("pass"))
            .arg("backup");
        if let Some(e) = endpoint {
            c.env("SEEDSHIP_BLOB_ENDPOINT", e);
        }
        let started = Instant::now();
        (output(&mut c), started.elapsed())
    };
    let (o, _) = with_endpoint(None);
    let out = text(&o);
    assert_eq!(code(&o), 1, "{out}");
    assert!(
        out.contains(&format!(
            "blob endpoint: {} (where every drive's copy log is",
            w.azurite.endpoint()
        )),
        "{out}"
    );
    assert!(out.contains("only partly written"), "{out}");
    // ... and a host name that does not resolve fails at once, naming the setting, without re-ship advice
    let (o, took) = with_endpoint(Some("https://seedship-no-such-host.invalid"));
    let out = text(&o);
    assert_eq!(code(&o), 1, "{out}");
    assert!(
        out.contains("--blob-endpoint") && out.contains("does not resolve"),
        "{out}"
    );
    assert!(!out.contains("ship a re-prepared drive"), "{out}");
    assert!(took < Duration::from_secs(10), "took {took:?}: {out}");
}

/// The same story through Resource Manager: `offline start` with the emulator's Entra ID application and its
/// certificate, diskprep creating the job with Jobs_Create (no storage account key), `u:` through Jobs_Update,
/// the agent's completion through Jobs_Get, and `delete-job` through Jobs_Delete once the job is Completed,
/// after the certificate moved: refused naming the recorded file and `--client-certificate`, then done with
/// the certificate given again. The descriptor records the Resource Manager settings and no secret.
#[test]
fn completes_through_resource_manager_with_a_certificate() {
    let w = World::start();
    let seed = seed_through(
        &w,
        Api::ResourceManager,
        "armjob",
        "armseed",
        1,
        4,
        1,
        &fixed("24M"),
    );
    let desc = std::fs::read_to_string(seed.staging.join("armjob").join("job.json")).unwrap();
    assert!(
        desc.contains("\"resource-manager\"") && desc.contains("storageAccounts/"),
        "{desc}"
    );
    assert!(
        !desc.contains("PRIVATE KEY") && !desc.contains(AZURITE_KEY),
        "{desc}"
    );
    let o = seed.agent(&w, &["backup"]);
    assert_eq!(code(&o), 75, "{}", text(&o));
    assert!(text(&o).contains("import job armjob: Shipping"), "{}", text(&o));
    let o = w.receive("armjob", &seed.drives);
    assert!(o.status.success(), "receive: {}", text(&o));
    let o = seed.agent(&w, &["backup"]);
    assert!(o.status.success(), "completion: {}", text(&o));
    assert!(text(&o).contains("import job armjob completed"), "{}", text(&o));
    assert_eq!(seed.policy()["mode"], "online");
    // The certificate moved: delete-job names the recorded file and the option that replaces it.
    let (own, moved) = (w.dir.path().join("app"), w.dir.path().join("app-moved"));
    std::fs::rename(&own, &moved).unwrap();
    let delete = |extra: &[&str]| {
        output(
            w.env(&mut Command::new(cargo_bin("seedship-diskprep")))
                .args(["delete-job", &format!("s:{}", seed.staging.display()), "--yes"])
                .args(extra),
        )
    };
    let o = delete(&[]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        text(&o).contains(s(&own.join("app.pem"))) && text(&o).contains("--client-certificate FILE"),
        "{}",
        text(&o)
    );
    let o = delete(&[
        "--client-certificate",
        s(&moved.join("app.pem")),
        "--client-certificate-key",
        s(&moved.join("app-key.pem")),
    ]);
    assert!(o.status.success(), "delete-job: {}", text(&o));
    assert!(text(&o).to_lowercase().contains("deleted"), "{}", text(&o));
}

/// `offline start` with a Resource Manager credential that cannot be used names the file or the flag, and
/// writes nothing.
#[test]
fn offline_start_refuses_a_missing_or_unusable_credential_by_name() {
    let w = World::start();
    let dir = w.dir.path().join("refusals");
    let (src, staging, state) = (dir.join("src"), dir.join("staging"), dir.join("state"));
    for d in [&src, &staging] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(dir.join("pass"), "a long enough test passphrase\n").unwrap();
    let start = |service: &[String]| {
        let mut args = vec![
            "--passphrase-file".to_string(),
            s(&dir.join("pass")).into(),
            "offline".into(),
            "start".into(),
            "--staging".into(),
            s(&staging).into(),
            "--job-name".into(),
            "refused".into(),
            "--container".into(),
            "seed".into(),
            "--source".into(),
            s(&src).into(),
        ];
        args.extend(service.iter().cloned());
        output(
            w.env(&mut Command::new(cargo_bin("seedship-agent")))
                .env("SEEDSHIP_STATE_DIR", &state)
                .args(&args),
        )
    };
    let arm = w.service_args(Api::ResourceManager);
    let replaced = |flag: &str, value: &str| {
        let mut v = arm.clone();
        let i = v.iter().position(|a| a == flag).unwrap();
        v[i + 1] = value.into();
        v
    };
    // a certificate file that is not there
    let gone = dir.join("gone.pem");
    let o = start(&replaced("--client-certificate", s(&gone)));
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        text(&o).contains(s(&gone)) && text(&o).contains("--client-certificate"),
        "{}",
        text(&o)
    );
    // a private key readable by others
    let app: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.emu.join("entra-app.json")).unwrap()).unwrap();
    let open_key = dir.join("open-key.pem");
    std::fs::copy(app["private_key"].as_str().unwrap(), &open_key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = start(&replaced("--client-certificate-key", s(&open_key)));
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains(s(&open_key)), "{}", text(&o));
    // no credential at all
    let no_cred: Vec<String> = {
        let i = arm.iter().position(|a| a == "--client-certificate").unwrap();
        let mut v = arm.clone();
        v.drain(i..i + 4); // --client-certificate FILE --client-certificate-key FILE
        v
    };
    let o = start(&no_cred);
    assert_ne!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("--client-certificate FILE"), "{}", text(&o));
    assert!(!staging.join("refused").exists() && !state.join("policy.json").exists());
}

/// Issue 13, "the vault without an account key": a Resource Manager job signed in with the application's
/// certificate completes into the vault, runs an incremental and restores with no storage account key in the
/// agent's environment or files: every vault request carries a bearer token for
/// `https://storage.azure.com/.default` from the emulator's token endpoint, which Azurite (`--oauth basic`,
/// HTTPS) checks. The policy records the application (paths, no secret). An application the storage account
/// does not accept (a token for another audience, here a handed-over management token) is refused naming
/// the application, the scope and the role to grant.
#[test]
fn completes_and_backs_up_with_entra_tokens_and_no_storage_key() {
    let w = World::start_with(true);
    let seed = seed_through(
        &w,
        Api::ResourceManager,
        "tokjob",
        "tokseed",
        1,
        2,
        1,
        &fixed("24M"),
    );
    let o = w.receive("tokjob", &seed.drives);
    assert!(o.status.success(), "receive: {}", text(&o));
    let o = seed.agent(&w, &["backup"]);
    assert!(o.status.success(), "completion: {}", text(&o));
    assert!(text(&o).contains("import job tokjob completed"), "{}", text(&o));
    let pol = seed.policy();
    assert_eq!(pol["mode"], "online");
    assert_eq!(pol["vault"]["endpoint"], w.azurite.endpoint());
    assert!(pol["vault"]["entra"]["client_id"].is_string(), "{pol}");
    // an incremental into the vault, then a restore from it
    std::fs::write(seed.src.join("after-import.bin"), noise(MIB, 99)).unwrap();
    let o = seed.agent(&w, &["backup"]);
    assert!(o.status.success(), "online backup: {}", text(&o));
    let target = seed.dir.join("restored");
    let o = seed.agent(&w, &["restore", "latest", "--target", s(&target)]);
    assert!(o.status.success(), "restore: {}", text(&o));
    let restored = target.join(seed.src.strip_prefix("/").unwrap());
    for f in ["after-import.bin", "f0.bin"] {
        assert_eq!(
            std::fs::read(restored.join(f)).unwrap(),
            std::fs::read(seed.src.join(f)).unwrap(),
            "{f}"
        );
    }
    let in_vault: Vec<String> = w
        .store("tokseed-vault")
        .list("")
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert!(
        in_vault.len() > seed.staged_names().len(),
        "the incremental is in the vault: {in_vault:?}"
    );
    // no key in the agent's files
    for dir in [&seed.state, &seed.staging] {
        for f in walkdir(dir) {
            let bytes = std::fs::read(&f).unwrap();
            assert!(
                !bytes
                    .windows(AZURITE_KEY.len())
                    .any(|w| w == AZURITE_KEY.as_bytes()),
                "{} holds the storage account key",
                f.display()
            );
        }
    }

    // A credential whose token Azurite refuses (a management token handed over instead of a storage one):
    // the refusal names the application, the scope and the role.
    let app: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.emu.join("entra-app.json")).unwrap()).unwrap();
    let mut pol = seed.policy();
    let mgmt_token = seed.dir.join("mgmt-token.json");
    let token = management_token(&w);
    write_private(&mgmt_token, token.as_bytes());
    pol["vault"]["entra"]["credential"] = serde_json::json!({"kind": "token-file", "path": s(&mgmt_token)});
    std::fs::write(
        seed.state.join("policy.json"),
        serde_json::to_vec_pretty(&pol).unwrap(),
    )
    .unwrap();
    let o = seed.agent(&w, &["backup"]);
    assert_ne!(code(&o), 0, "{}", text(&o));
    let err = text(&o);
    println!("the refusal: {err}");
    assert!(
        err.contains(app["client_id"].as_str().unwrap())
            && err.contains("https://storage.azure.com/.default")
            && (err.contains("Storage Blob Data Contributor") || err.contains("issued for")),
        "{err}"
    );
}

/// Every file under `dir`.
fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

/// `az account get-access-token` JSON holding a Resource Manager token of the registered application, from
/// the emulator's token endpoint.
fn management_token(w: &World) -> String {
    let app: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.emu.join("entra-app.json")).unwrap()).unwrap();
    let f = |k: &str| app[k].as_str().unwrap().to_owned();
    let mut opts =
        seedship_shared::entra::EntraOptions::new(seedship_shared::entra::CredentialChoice::Certificate {
            cert: f("certificate").into(),
            key: Some(f("private_key").into()),
        });
    opts.tenant = Some(f("tenant"));
    opts.client_id = Some(f("client_id"));
    opts.authority = f("authority");
    opts.ca_pem = Some(std::fs::read(w.emu.join("ca.pem")).unwrap());
    let t = opts
        .token_source()
        .unwrap()
        .token(&format!(
            "{}/.default",
            f("management_audience").trim_end_matches('/')
        ))
        .unwrap();
    let expires = t
        .expires_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    serde_json::json!({
        "accessToken": t.token.as_str(),
        "expiresOn": "2099-01-01 00:00:00.000000",
        "expires_on": expires,
        "tokenType": "Bearer",
    })
    .to_string()
}

/// Issue 19, repair after import: flips bytes in two 4 MiB segments of drive 1 (after diskprep wrote it),
/// imports, and returns the drive's id with its parsed error log (which lists them Corrupted).
fn damaged_import(w: &World, job: &str, container: &str) -> (Seed, String, DriveLog) {
    let seed = seed(w, job, container, 2, 6, 2, "26M");
    let img = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seed.drives[0])
        .unwrap();
    use std::os::unix::fs::FileExt;
    // payload 1 MiB and 6 MiB in: the first volume's first and second segment
    for at in [
        DATA_OFFSET + MIB as u64 + 1000,
        DATA_OFFSET + 6 * MIB as u64 + 1000,
    ] {
        let mut b = [0u8; 16];
        img.read_exact_at(&mut b, at).unwrap();
        b.iter_mut().for_each(|x| *x ^= 0xff);
        img.write_all_at(&b, at).unwrap();
    }
    drop(img);
    let o = w.receive(job, &seed.drives);
    assert_eq!(code(&o), 1, "the job ends Closed: {}", text(&o));
    let keys = recovery_keys(&seed.staging.join(job).join("diskprep/keys.tsv"));
    let drive = keys[0].0.clone();
    let logs = w.store("waimportexport");
    let b = logs
        .list("")
        .unwrap()
        .into_iter()
        .find(|b| b.name.contains(drive.as_str()) && b.name.ends_with("_error.xml"))
        .unwrap_or_else(|| panic!("no error log of drive {drive}"));
    let mut xml = vec![0u8; b.len as usize];
    logs.read_at(&b.name, 0, &mut xml).unwrap();
    let log = DriveLog::parse(&xml).unwrap();
    let corrupted = log
        .blobs
        .iter()
        .flat_map(|b| b.failed_ranges())
        .filter(|r| r.status == RangeStatus::Corrupted)
        .count();
    assert_eq!(corrupted, 2, "{}", String::from_utf8_lossy(&xml));
    (seed, drive, log)
}

/// Bytes of the ranges a copy log reports not written.
fn damaged_bytes(log: &DriveLog) -> u64 {
    log.blobs
        .iter()
        .flat_map(|b| b.failed_ranges())
        .map(|r| r.length)
        .sum()
}

/// After repair: completion (every damaged object's BLAKE3 compared), the first incremental, a restore that
/// equals the source.
fn completes_and_restores(w: &World, seed: &Seed, extra: &[&str]) -> String {
    std::fs::write(seed.src.join("after-repair.bin"), noise(MIB, 5)).unwrap();
    let mut args = vec!["backup"];
    args.extend_from_slice(extra);
    let o = seed.agent(w, &args);
    let out = text(&o);
    assert!(o.status.success(), "completion after the repair: {out}");
    assert!(out.contains("completed"), "{out}");
    assert!(
        out.contains("snapshot ") && out.contains(" saved"),
        "the first incremental ran: {out}"
    );
    assert_eq!(seed.policy()["mode"], "online");
    let target = seed.dir.join("restored");
    let o = seed.agent(w, &["restore", "latest", "--target", s(&target)]);
    assert!(o.status.success(), "restore: {}", text(&o));
    let restored = target.join(seed.src.strip_prefix("/").unwrap());
    for f in ["f0.bin", "f1.bin", "notes.txt", "after-repair.bin"] {
        assert!(
            std::fs::read(restored.join(f)).unwrap() == std::fs::read(seed.src.join(f)).unwrap(),
            "{f} restored exactly"
        );
    }
    out
}

/// `seedship-diskprep RepairImport` with WAImportExport's spellings.
fn repairimport(w: &World, args: &[String], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(cargo_bin("seedship-diskprep"));
    w.env(&mut c)
        .env_remove("SEEDSHIP_TEST_KILL_AT")
        .arg("RepairImport")
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    output(&mut c)
}

fn json_of(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// Issue 19: `repairimport` refuses a copy log naming a blob not in the manifest and staging changed since
/// the drives (nothing sent), then sends only the Corrupted ranges, resumes after a SIGKILL from its repair
/// file, and completion, the first incremental and a restore succeed.
#[test]
fn repairimport_sends_only_the_damaged_ranges_and_resumes() {
    let w = World::start();
    let (seed, drive, log) = damaged_import(&w, "rijob", "rim");
    let damaged = damaged_bytes(&log);
    let work = seed.dir.join("repair");
    std::fs::create_dir_all(&work).unwrap();
    let log_file = work.join("copylog.xml");
    std::fs::write(&log_file, log.to_xml().unwrap()).unwrap();
    let key_file = work.join("key");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_file)
            .unwrap();
        f.write_all(AZURITE_KEY.as_bytes()).unwrap();
    }
    let rep = work.join(format!("{drive}.rep"));
    let args = |copy_log: &Path, dirs: &str, extra: &[&str]| -> Vec<String> {
        let mut v = vec![
            format!("/r:{}", rep.display()),
            format!("/d:{dirs}"),
            format!("/sn:{AZURITE_ACCOUNT}"),
            format!("/sk:@{}", key_file.display()),
            format!("/CopyLogFile:{}", copy_log.display()),
            "--json".to_owned(),
        ];
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    let import = w.store("rim");
    let name = log.blobs.iter().find(|b| !b.is_clean()).unwrap().blob_path["rim/".len()..].to_owned();
    let imported = |store: &AzureStore| {
        let mut b = vec![0u8; store.properties(&name).unwrap().len as usize];
        store.read_at(&name, 0, &mut b).unwrap();
        b
    };
    let before = imported(&import);

    // A copy log naming a blob the drive's manifest does not list: refused by name, nothing sent.
    let mut foreign = log.clone();
    for b in &mut foreign.blobs {
        if !b.is_clean() {
            b.blob_path = "rim/data/99999999".into();
        }
    }
    let foreign_file = work.join("foreign.xml");
    std::fs::write(&foreign_file, foreign.to_xml().unwrap()).unwrap();
    let o = repairimport(&w, &args(&foreign_file, s(&seed.blobs()), &[]), &[]);
    println!("--- repairimport with a foreign blob:\n{}", text(&o));
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        text(&o).contains("names blob rim/data/99999999, which is not in the manifest"),
        "{}",
        text(&o)
    );
    assert_eq!(json_of(&o)["bytes_sent"], 0);

    // Staging changed since the drives (a byte in a damaged range of a copy of it): refused, nothing sent.
    let changed = work.join("changed");
    std::fs::create_dir_all(changed.join("data")).unwrap();
    let mut bytes = std::fs::read(seed.blobs().join(&name)).unwrap();
    let first = log
        .blobs
        .iter()
        .flat_map(|b| b.failed_ranges())
        .next()
        .unwrap()
        .offset as usize;
    bytes[first + 10] ^= 1;
    std::fs::write(changed.join(&name), &bytes).unwrap();
    let journal = seed.staging.join("rijob/diskprep").join(format!("{drive}.jrn"));
    let o = repairimport(
        &w,
        &args(&log_file, s(&changed), &[&format!("/j:{}", journal.display())]),
        &[],
    );
    println!("--- repairimport from changed data:\n{}", text(&o));
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        text(&o).contains(&format!("object {name}: range {first}..")) && text(&o).contains("changed"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("nothing was sent"), "{}", text(&o));
    assert!(imported(&import) == before, "nothing may be sent");
    assert!(!rep.exists(), "no repair file before anything is sent");

    // The blob's file in two source folders: ambiguous, so the path map file lists it; filled in, the run
    // goes on (a dry run here).
    let twin = work.join("twin");
    std::fs::create_dir_all(twin.join("data")).unwrap();
    std::fs::copy(seed.blobs().join(&name), twin.join(&name)).unwrap();
    let dirs = format!("{};{}", seed.blobs().display(), twin.display());
    let o = repairimport(&w, &args(&log_file, &dirs, &["--dry-run"]), &[]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        text(&o).contains("ambiguous") && text(&o).contains("/PathMapFile:"),
        "{}",
        text(&o)
    );
    let map_file = PathBuf::from(format!("{}_pathmap.txt", rep.display()));
    let listed = std::fs::read_to_string(&map_file).unwrap();
    let file_path = listed.lines().next().unwrap().trim_end_matches('\t').to_owned();
    assert!(file_path.ends_with(&name.replace('/', "\\")), "{listed}");
    std::fs::write(
        &map_file,
        format!("{file_path}\t{}\n", twin.join(&name).display()),
    )
    .unwrap();
    let map_arg = format!("/PathMapFile:{}", map_file.display());
    let o = repairimport(&w, &args(&log_file, &dirs, &["--dry-run", &map_arg]), &[]);
    assert!(o.status.success(), "{}", text(&o));

    // A clean copy log: nothing to send.
    let clean = work.join("clean.xml");
    std::fs::write(
        &clean,
        DriveLog::new(&drive, DriveStatus::Completed).to_xml().unwrap(),
    )
    .unwrap();
    let o = repairimport(&w, &args(&clean, s(&seed.blobs()), &[]), &[]);
    assert!(
        o.status.success() && text(&o).contains("nothing to send"),
        "{}",
        text(&o)
    );
    assert_eq!(json_of(&o)["bytes_sent"], 0);

    // The dry run checks everything and sends nothing.
    let o = repairimport(&w, &args(&log_file, s(&seed.blobs()), &["--dry-run"]), &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(json_of(&o)["ranges"], 2);
    assert_eq!(json_of(&o)["damaged_bytes"], damaged);
    assert!(imported(&import) == before, "a dry run sends nothing");

    // Killed after the first range; the rerun resumes from the repair file and sends only the second.
    let o = repairimport(
        &w,
        &args(&log_file, s(&seed.blobs()), &[]),
        &[("SEEDSHIP_TEST_KILL_AT", "repair-range-1")],
    );
    assert_eq!(o.status.code(), None, "killed: {}", text(&o));
    // the key itself this time: accepted, with a warning saying how to pass it safely
    let mut again = args(&log_file, s(&seed.blobs()), &[]);
    again[3] = format!("/sk:{AZURITE_KEY}");
    let o = repairimport(&w, &again, &[]);
    let out = text(&o);
    println!("--- repairimport after a kill:\n{out}");
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("warning: /sk: put the storage account key on the command line")
            && out.contains("/sk:@FILE"),
        "{out}"
    );
    let doc = json_of(&o);
    assert_eq!(
        (doc["ranges_sent"].as_u64(), doc["ranges_resumed"].as_u64()),
        (Some(1), Some(1)),
        "{doc}"
    );
    let second = log
        .blobs
        .iter()
        .flat_map(|b| b.failed_ranges())
        .nth(1)
        .unwrap()
        .length;
    let sent = doc["bytes_sent"].as_u64().unwrap();
    println!("repairimport: damaged {damaged} bytes, the resumed run sent {sent} bytes");
    assert!(
        sent == second && sent <= damaged + 4 * MIB as u64,
        "only the range left is sent: {doc}"
    );
    assert!(imported(&import) == std::fs::read(seed.blobs().join(&name)).unwrap());

    let out = completes_and_restores(&w, &seed, &[]);
    assert!(
        out.contains(&format!("note: {name}: range ")) && out.contains("accepted"),
        "{out}"
    );
}

/// Issue 19: `backup --repair-from-staging` refuses staging changed since the drives (nothing sent), then
/// sends only the Corrupted ranges from staging and completes with every object's BLAKE3 compared.
#[test]
fn repair_from_staging_sends_only_the_damaged_ranges_then_completes() {
    let w = World::start();
    let (seed, _drive, log) = damaged_import(&w, "rsjob", "rsm");
    let damaged = damaged_bytes(&log);
    let name = log.blobs.iter().find(|b| !b.is_clean()).unwrap().blob_path["rsm/".len()..].to_owned();
    let staged = seed.blobs().join(&name);
    let good = std::fs::read(&staged).unwrap();
    let mut bad = good.clone();
    bad[100] ^= 1;
    std::fs::write(&staged, &bad).unwrap();
    let o = seed.agent(&w, &["backup", "--repair-from-staging"]);
    let out = text(&o);
    println!("--- --repair-from-staging with staging changed:\n{out}");
    assert_eq!(code(&o), 1, "{out}");
    assert!(
        out.contains(&format!("object {name}: the staged copy")) && out.contains("staging changed"),
        "{out}"
    );
    assert!(out.contains("sent nothing"), "{out}");
    assert_eq!(seed.policy()["mode"], "offline");
    assert!(container_missing(&w.store("rsm-vault")), "nothing may be copied");
    std::fs::write(&staged, &good).unwrap();

    let out = completes_and_restores(&w, &seed, &["--repair-from-staging"]);
    println!("--- --repair-from-staging:\n{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("repaired from staging:"))
        .unwrap_or_else(|| panic!("no repair line: {out}"));
    assert!(line.contains("2 range(s) sent"), "{line}");
    let sent: u64 = line
        .rsplit_once('(')
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count: {line}"));
    println!("--repair-from-staging: damaged {damaged} bytes, sent {sent} bytes");
    assert!(sent >= damaged && sent <= damaged + 4 * MIB as u64, "{line}");
    assert!(
        out.contains("every byte compared with the staged BLAKE3"),
        "{out}"
    );
}
