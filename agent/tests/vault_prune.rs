//! Prune and the writer lock in the vault, against Azurite: after an initial backup (moved into the vault
//! by hand, as in `online.rs`) and two incrementals, the older snapshots' objects are deleted (as `forget`
//! would); prune then gives pages back (Get Page Ranges shrinks), uploads at most 10% of what it frees,
//! keeps the snapshot restorable and `check --read-data` clean; SIGKILL at six steps then a rerun; a
//! backup is refused while the lease on the lock blob is held. Data stays at a few MiB.

use seedship_agent::policy::{Mode, Policy, VaultTarget};
use seedship_shared::blob::{AzureOptions, AzureStore, BlobStore, Credential, LocalStore, Metadata};
use seedship_testkit::{Azurite, AZURITE_ACCOUNT, AZURITE_KEY};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{random, s, text, SUB};

struct Env<'a> {
    dir: tempfile::TempDir,
    az: &'a Azurite,
    container: String,
}

impl<'a> Env<'a> {
    /// A test folder whose vault is `container` of the Azurite `az` (one Azurite serves several folders:
    /// starting one costs seconds on a busy machine).
    fn new(az: &'a Azurite, container: &str) -> Env<'a> {
        let e = Env {
            dir: tempfile::tempdir().unwrap(),
            az,
            container: container.to_owned(),
        };
        common::lay_out(e.dir.path());
        e
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_seedship-agent"));
        c.env("SEEDSHIP_STATE_DIR", self.p("state"))
            .env("SEEDSHIP_STORAGE_KEY", AZURITE_KEY)
            .env_remove("SEEDSHIP_PASSPHRASE")
            .env_remove("SEEDSHIP_LIMIT_UPLOAD")
            .env_remove("SEEDSHIP_TEST_KILL_AT")
            .arg("--passphrase-file")
            .arg(self.p("pass"))
            .args(args);
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "{args:?}: {}\n{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        text(&o.stdout)
    }
    fn vault(&self) -> AzureStore {
        let opts = AzureOptions::new(
            &self.az.endpoint(),
            AZURITE_ACCOUNT,
            &self.container,
            Credential::SharedKey(AZURITE_KEY.into()),
        );
        AzureStore::new(opts).unwrap()
    }

    /// The initial backup into staging, every object uploaded into the vault container, the policy
    /// switched to online; then two incrementals that replace files; then the two older snapshot objects
    /// deleted. Returns the kept snapshot's id and a copy of its content.
    fn history(&self, volume_mib: &str) -> (String, PathBuf) {
        let src = self.p("src");
        std::fs::create_dir_all(src.join("small")).unwrap();
        std::fs::write(src.join("a.bin"), random(3 << 20, 1)).unwrap();
        std::fs::write(src.join("b.bin"), random(2 << 20, 2)).unwrap();
        for i in 0..40u64 {
            std::fs::write(
                src.join(format!("small/{i}")),
                random(3000 + i as usize * 11, 50 + i),
            )
            .unwrap();
        }
        self.ok(&[
            "offline",
            "start",
            "--staging",
            s(&self.p("staging")),
            "--job-name",
            "job1",
            "--publish-settings",
            s(&self.p("ps.publishsettings")),
            "--subscription",
            SUB,
            "--storage-account",
            AZURITE_ACCOUNT,
            "--container",
            "seed1",
            "--source",
            s(&src),
            "--volume-size-mib",
            volume_mib,
        ]);
        self.ok(&["backup"]);
        let local = LocalStore::new(self.p("staging/job1/blobs"));
        let vault = self.vault();
        vault.create_container().unwrap();
        for o in local.list("").unwrap() {
            vault.create(&o.name, o.len, &o.metadata).unwrap();
            for r in local.page_ranges(&o.name).unwrap() {
                let mut buf = vec![0u8; (r.end - r.start) as usize];
                local.read_at(&o.name, r.start, &mut buf).unwrap();
                vault.write_pages(&o.name, r.start, &buf).unwrap();
            }
        }
        let mut pol = Policy::load(&self.p("state")).unwrap();
        pol.mode = Mode::Online;
        pol.vault = Some(VaultTarget {
            endpoint: self.az.endpoint(),
            account: AZURITE_ACCOUNT.into(),
            container: self.container.clone(),
            since: 1_795_331_109,
        });
        pol.save(&self.p("state")).unwrap();
        std::fs::rename(self.p("staging"), self.p("staging-shipped")).unwrap();
        std::fs::write(src.join("a.bin"), random(3 << 20, 11)).unwrap();
        for i in (0..40u64).step_by(2) {
            std::fs::remove_file(src.join(format!("small/{i}"))).unwrap();
        }
        self.ok(&["backup"]);
        std::fs::write(src.join("b.bin"), random(2 << 20, 12)).unwrap();
        self.ok(&["backup"]);
        let snaps = self.ok(&["snapshots"]);
        let ids: Vec<String> = snaps
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), 3, "{snaps}");
        let full = |prefix: &str| {
            vault
                .list("snapshots/")
                .unwrap()
                .into_iter()
                .find(|o| o.name["snapshots/".len()..].starts_with(prefix))
                .unwrap()
                .name
        };
        for id in &ids[..2] {
            vault.delete(&full(id)).unwrap();
        }
        let keep = self.p("expect");
        copy_dir(&src, &keep);
        (full(&ids[2])["snapshots/".len()..].to_string(), keep)
    }

    /// Bytes of the volumes' written pages, as Get Page Ranges lists them.
    fn written_pages(&self) -> u64 {
        let v = self.vault();
        v.list("data/")
            .unwrap()
            .iter()
            .flat_map(|o| v.page_ranges(&o.name).unwrap())
            .map(|r| r.end - r.start)
            .sum()
    }
    fn restores_as(&self, snap: &str, expect: &Path) {
        let target = self.p(&format!("restore-{}", &snap[..12]));
        self.ok(&["restore", snap, "--target", s(&target)]);
        let got = target.join(self.p("src").strip_prefix("/").unwrap());
        assert_eq!(files(&got), files(expect), "snapshot {snap}");
        std::fs::remove_dir_all(&target).unwrap();
    }
    fn check_read_data(&self) {
        let out = self.ok(&["check", "--read-data"]);
        assert!(out.contains(": 0 problem(s)"), "{out}");
    }
}

fn files(root: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.insert(
                    e.path().strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(e.path()).unwrap(),
                );
            }
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    for (rel, data) in files(from) {
        let p = to.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

#[test]
fn prune_in_the_vault_clears_pages_and_uploads_little() {
    let az = Azurite::start();
    let e = Env::new(&az, "vault");
    let (snap, expect) = e.history("64");
    // while another process holds the lease on the lock blob, backup and prune are refused
    let vault = e.vault();
    let lease = vault
        .acquire_lease("lock", 60)
        .unwrap()
        .expect("the lock is free");
    let holder = Metadata::from([
        ("command".to_owned(), "prune".to_owned()),
        ("pid".to_owned(), "4242".to_owned()),
        ("host".to_owned(), "other".to_owned()),
    ]);
    vault.set_metadata_leased("lock", &holder, &lease).unwrap();
    for args in [&["backup"][..], &["prune"][..]] {
        let o = e.run(args);
        assert!(!o.status.success(), "{args:?}");
        assert!(
            text(&o.stderr).contains("locked by `prune` (process 4242 on host other"),
            "{args:?}: {}",
            text(&o.stderr)
        );
    }
    // `unlock` breaks the lease of a holder known to be gone
    assert!(e
        .ok(&["unlock"])
        .contains("removed the vault's lock held by `prune`"));
    assert!(vault.acquire_lease("lock", 15).unwrap().is_some());
    e.ok(&["unlock"]);

    let before = e.written_pages();
    let out = e.ok(&["prune", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let after = e.written_pages();
    let dead = v["dead_bytes"].as_u64().unwrap();
    let cleared = v["freed"]["bytes_cleared"].as_u64().unwrap();
    let sent = v["bytes_sent"].as_u64().unwrap();
    let uploaded =
        v["freed"]["bytes_repacked"].as_u64().unwrap() + v["freed"]["bytes_rewritten"].as_u64().unwrap();
    println!(
        "vault prune: dead {dead} bytes, written pages {before} -> {after}, cleared {cleared}, uploaded {uploaded} \
         (blobs), {sent} bytes sent in all (with index and record objects)"
    );
    assert!(dead > 5 << 20, "{out}");
    assert!(
        before - after >= dead * 9 / 10,
        "Get Page Ranges shrinks by the dead bytes: {before} -> {after}, {out}"
    );
    assert!(
        uploaded * 10 <= before - after,
        "uploads at most 10% of what is freed: {out}"
    );
    e.restores_as(&snap, &expect);
    e.check_read_data();
    assert!(e.ok(&["prune"]).contains("nothing to prune"));
    assert_eq!(e.written_pages(), after, "a second prune frees nothing");
    // the lock was released: a backup runs
    e.ok(&["backup"]);
}

#[test]
fn a_vault_prune_killed_at_any_step_leaves_a_sound_repository_and_a_rerun_finishes() {
    let az = Azurite::start();
    for step in [
        "recorded",
        "repacked",
        "indexed",
        "index-deleted",
        "old-index-deleted",
        "cleared",
        "volume-deleted",
    ] {
        let e = Env::new(&az, &format!("vault-{step}"));
        let (snap, expect) = e.history("2");
        let before = e.written_pages();
        let o = e
            .cmd(&["prune", "--max-unused", "0%"])
            .env("SEEDSHIP_TEST_KILL_AT", step)
            .output()
            .unwrap();
        assert_eq!(
            o.status.signal(),
            Some(libc::SIGKILL),
            "prune never reached step {step}: {}\n{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        e.restores_as(&snap, &expect);
        e.check_read_data();
        // the killed process's lease expires within 60 s; unlock breaks it at once
        e.ok(&["unlock"]);
        e.ok(&["prune", "--max-unused", "0%"]);
        e.restores_as(&snap, &expect);
        e.check_read_data();
        assert!(
            e.ok(&["prune", "--max-unused", "0%"])
                .contains("nothing to prune"),
            "step {step}"
        );
        assert!(
            e.written_pages() + (4 << 20) < before,
            "step {step}: pages given back"
        );
        assert!(e.vault().list("prune/").unwrap().is_empty(), "step {step}");
    }
}
