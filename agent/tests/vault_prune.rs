//! Prune and the writer lock in the vault, against Azurite: after an initial backup (moved into the vault
//! by hand, as in `online.rs`) and two incrementals, the older snapshots' objects are deleted (as `forget`
//! would); prune then gives pages back (Get Page Ranges shrinks), uploads at most 10% of what it frees,
//! keeps the snapshot restorable and `check --read-data` clean; SIGKILL at six steps then a rerun; a
//! backup is refused while the lease on the lock blob is held. Data stays at a few MiB.

use seedship_shared::blob::{AzureOptions, AzureStore, BlobStore, Credential, Metadata};
use seedship_testkit::{Azurite, AZURITE_ACCOUNT, AZURITE_KEY};
use std::path::PathBuf;

mod common;
use common::{copy_dir, random, text, Env};

/// A test folder ([`Env`]) whose vault is `container` of the Azurite `az` (one Azurite serves several
/// folders: starting one costs seconds on a busy machine).
struct Vault<'a> {
    e: Env,
    az: &'a Azurite,
    container: String,
}

impl std::ops::Deref for Vault<'_> {
    type Target = Env;
    fn deref(&self) -> &Env {
        &self.e
    }
}

impl<'a> Vault<'a> {
    fn new(az: &'a Azurite, container: &str) -> Vault<'a> {
        Vault {
            e: Env::new()
                .with_account(AZURITE_ACCOUNT)
                .with_var("SEEDSHIP_STORAGE_KEY", AZURITE_KEY),
            az,
            container: container.to_owned(),
        }
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
        self.start(&["--volume-size-mib", volume_mib]);
        self.ok(&["backup"]);
        let vault = self.vault();
        self.move_into_vault(&vault, &self.az.endpoint(), &self.container);
        std::fs::write(src.join("a.bin"), random(3 << 20, 11)).unwrap();
        for i in (0..40u64).step_by(2) {
            std::fs::remove_file(src.join(format!("small/{i}"))).unwrap();
        }
        self.ok(&["backup"]);
        std::fs::write(src.join("b.bin"), random(2 << 20, 12)).unwrap();
        self.ok(&["backup"]);
        let ids = self.snapshot_ids();
        assert_eq!(ids.len(), 3, "{ids:?}");
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
}

#[test]
fn prune_in_the_vault_clears_pages_and_uploads_little() {
    let az = Azurite::start();
    let e = Vault::new(&az, "vault");
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
        let e = Vault::new(&az, &format!("vault-{step}"));
        let (snap, expect) = e.history("2");
        let before = e.written_pages();
        e.prune_killed_at(step);
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
