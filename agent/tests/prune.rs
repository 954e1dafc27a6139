//! Prune, the writer lock and keys, in staging, through the `seedship-agent` binary: space given back
//! (allocated blocks shrink), kept snapshots restore exactly, `check --read-data` passes, SIGKILL at every
//! step of a prune then a rerun, a second prune frees nothing, a backup refused while the lock is held, and
//! passphrases added, changed and removed; a folder split into parts through forget, prune, check and
//! restore. Data stays at a few MiB.

use seedship_shared::blob::{BlobStore, LocalStore};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;

mod common;
use common::{copy_dir, random, s, text, Env};

/// What the prune tests ask of a test folder beyond [`Env`].
trait Staged {
    fn store(&self) -> LocalStore;
    fn snapshot_objects(&self) -> Vec<String>;
    fn allocated(&self) -> u64;
}

impl Staged for Env {
    fn store(&self) -> LocalStore {
        LocalStore::new(self.blobs())
    }
    /// The snapshot objects' names, oldest first (by modification time).
    fn snapshot_objects(&self) -> Vec<String> {
        let mut ids: Vec<(String, i64)> = self
            .store()
            .list("snapshots/")
            .unwrap()
            .into_iter()
            .map(|o| {
                let m = std::fs::metadata(self.blobs().join(&o.name)).unwrap();
                (o.name, m.mtime_nsec() + m.mtime() * 1_000_000_000)
            })
            .collect();
        ids.sort_by_key(|(_, t)| *t);
        ids.into_iter().map(|(n, _)| n).collect()
    }
    /// Bytes allocated to the volumes (holes do not count).
    fn allocated(&self) -> u64 {
        std::fs::read_dir(self.blobs().join("data"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().blocks() * 512)
            .sum()
    }
}

/// Three snapshots: big files replaced, small files deleted and added between them. The first two snapshot
/// objects are then deleted (as `forget` would), leaving their unique blobs unreferenced. Returns the
/// kept snapshot's id and a copy of what it holds.
fn history(e: &Env, volume_mib: &str) -> (String, PathBuf) {
    let src = e.p("src");
    std::fs::create_dir_all(src.join("small")).unwrap();
    std::fs::write(src.join("a.bin"), random(3 << 20, 1)).unwrap();
    std::fs::write(src.join("b.bin"), random(2 << 20, 2)).unwrap();
    for i in 0..60u64 {
        std::fs::write(
            src.join(format!("small/{i}")),
            random(3000 + i as usize * 7, 100 + i),
        )
        .unwrap();
    }
    e.start(&["--volume-size-mib", volume_mib]);
    e.ok(&["backup"]);
    std::fs::write(src.join("a.bin"), random(3 << 20, 11)).unwrap();
    for i in (0..60u64).step_by(2) {
        std::fs::remove_file(src.join(format!("small/{i}"))).unwrap();
    }
    e.ok(&["backup", "--another-snapshot"]);
    std::fs::write(src.join("b.bin"), random(2 << 20, 12)).unwrap();
    std::fs::write(src.join("c.bin"), random(1 << 20, 13)).unwrap();
    e.ok(&["backup", "--another-snapshot"]);
    let ids = e.snapshot_objects();
    assert_eq!(ids.len(), 3);
    let store = e.store();
    for old in &ids[..2] {
        store.delete(old).unwrap();
    }
    let keep = e.p("expect");
    copy_dir(&src, &keep);
    (ids[2]["snapshots/".len()..].to_string(), keep)
}

#[test]
fn prune_in_staging_frees_blocks_and_keeps_the_snapshot() {
    let e = Env::new();
    let (snap, expect) = history(&e, "4");
    let before = e.allocated();
    let dry = e.ok(&["prune", "--dry-run"]);
    assert!(dry.contains("dry run: nothing was changed"), "{dry}");
    assert_eq!(e.allocated(), before, "a dry run changes nothing");
    let out = e.ok(&["prune", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let freed = &v["freed"];
    let uploaded = freed["bytes_repacked"].as_u64().unwrap() + freed["bytes_rewritten"].as_u64().unwrap();
    assert!(
        uploaded * 10 <= freed["bytes_cleared"].as_u64().unwrap(),
        "with the default --max-unused, uploads are at most 10% of what is freed: {out}"
    );
    // a.bin (3 MiB) twice replaced or b.bin (2 MiB) once, plus 30 small files: about 5 MiB are dead
    assert!(v["dead_bytes"].as_u64().unwrap() > 5 << 20, "{out}");
    assert!(freed["blobs_freed"].as_u64().unwrap() >= 35, "{out}");
    let cleared = freed["bytes_cleared"].as_u64().unwrap();
    assert!(cleared > 5 << 20, "{out}");
    let after = e.allocated();
    assert!(
        before - after > v["dead_bytes"].as_u64().unwrap() * 9 / 10,
        "allocated blocks shrink by the dead bytes: {before} -> {after}"
    );
    e.restores_as(&snap, &expect);
    e.check_read_data();
    let again = e.ok(&["prune"]);
    assert!(again.contains("nothing to prune"), "{again}");
    assert_eq!(e.allocated(), after);
}

#[test]
fn prune_repacks_only_past_max_unused_and_within_max_repack() {
    let e = Env::new();
    let (snap, expect) = history(&e, "64");
    let plan = |args: &[&str]| -> serde_json::Value {
        let mut a = vec!["prune", "--dry-run", "--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&e.ok(&a)).unwrap()
    };
    let default = plan(&[]);
    let eager = plan(&["--max-unused", "0%"]);
    assert!(
        eager["packs_to_repack"].as_u64().unwrap() >= 1,
        "small files interleaved with dead ones leave shared pages: {eager}"
    );
    assert!(
        default["repack_bytes"].as_u64().unwrap() <= eager["repack_bytes"].as_u64().unwrap(),
        "{default} {eager}"
    );
    let bounded = plan(&["--max-unused", "0", "--max-repack", "0"]);
    assert_eq!(bounded["repack_bytes"], 0, "{bounded}");
    let out = e.ok(&["prune", "--max-unused", "0%", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["freed"]["bytes_repacked"].as_u64().unwrap() > 0, "{out}");
    assert_eq!(v["freed"]["bytes_repacked"], eager["repack_bytes"], "{out}");
    e.restores_as(&snap, &expect);
    e.check_read_data();
    assert!(e
        .ok(&["prune", "--max-unused", "0%"])
        .contains("nothing to prune"));
}

/// The leaves of the staged volumes are kept in the state folder (0600) so that a backup appending to a
/// volume and a prune clearing ranges of one read back only the 4 MiB leaves they touched; the job
/// descriptor's digests stay those of the whole volumes (`check --read-data` hashes them whole). A damaged
/// cache file is noted and the volumes are hashed whole.
#[test]
fn volume_leaves_are_cached_and_a_damaged_cache_is_noted_and_rebuilt() {
    use std::os::unix::fs::PermissionsExt;
    let e = Env::new();
    let (snap, expect) = history(&e, "64");
    let cache = e.p("state/cache/job1/volume-leaves");
    let meta = std::fs::metadata(&cache).expect("the backups wrote the leaf cache");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let volume = std::fs::metadata(e.blobs().join("data/00000000")).unwrap().len();
    assert!(
        volume > 2 * (4 << 20),
        "the volume spans several leaves: {volume}"
    );

    let both = |args: &[&str]| {
        let o = e.run(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
        format!("{}{}", text(&o.stdout), text(&o.stderr))
    };
    let out = both(&["prune", "--max-unused", "0%"]);
    assert!(out.contains("freed"), "{out}");
    assert!(!out.contains("leaf cache"), "{out}");
    e.check_read_data();

    let mut bytes = std::fs::read(&cache).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&cache, &bytes).unwrap();
    std::fs::write(e.p("src/d.bin"), random(5 << 20, 14)).unwrap();
    let out = both(&["backup", "--another-snapshot"]);
    assert!(
        out.contains("note: leaf cache") && out.contains("damaged") && out.contains("hashed whole"),
        "{out}"
    );
    e.check_read_data();
    let again = both(&["backup", "--another-snapshot"]);
    assert!(
        !again.contains("leaf cache"),
        "rewritten whole by the run before: {again}"
    );
    e.check_read_data();
    e.restores_as(&snap, &expect);
}

#[test]
fn a_prune_killed_at_any_step_leaves_a_sound_repository_and_a_rerun_finishes() {
    let steps = [
        "repacked",
        "recorded",
        "indexed",
        "index-deleted",
        "old-index-deleted",
        "cleared",
        "volume-deleted",
    ];
    for step in steps {
        let e = Env::new();
        let (snap, expect) = history(&e, "2");
        let before = e.allocated();
        e.prune_killed_at(step);
        e.restores_as(&snap, &expect);
        e.check_read_data();
        let out = e.ok(&["prune", "--max-unused", "0%"]);
        assert!(out.contains("freed"), "step {step}: {out}");
        e.restores_as(&snap, &expect);
        e.check_read_data();
        assert!(
            e.ok(&["prune", "--max-unused", "0%"])
                .contains("nothing to prune"),
            "step {step}"
        );
        assert!(
            e.allocated() + (4 << 20) < before,
            "step {step}: space given back"
        );
        assert!(e.store().list("prune/").unwrap().is_empty(), "step {step}");
    }
}

#[test]
fn forget_prune_removes_snapshots_then_gives_their_space_back() {
    let e = Env::new();
    let (snap, expect) = history(&e, "4");
    // history() deleted the first two snapshot objects; two more make forget have something to remove
    std::fs::write(e.p("src/d.bin"), random(2 << 20, 21)).unwrap();
    e.ok(&["backup", "--another-snapshot"]);
    std::fs::remove_file(e.p("src/d.bin")).unwrap();
    e.ok(&["backup", "--another-snapshot"]);
    assert_eq!(e.snapshot_objects().len(), 3);
    let before = e.allocated();
    // the dry run plans the prune as if the forgotten snapshots were gone, and changes nothing
    let dry: serde_json::Value =
        serde_json::from_str(&e.ok(&["forget", "--keep-last", "1", "--prune", "--dry-run", "--json"]))
            .unwrap();
    assert_eq!(dry["removed"].as_array().unwrap().len(), 2, "{dry}");
    let dry_prune = &dry["prune"];
    assert_eq!(dry_prune["snapshots"], 1, "{dry}");
    assert!(
        dry_prune["dead_bytes"].as_u64().unwrap() > 6 << 20,
        "d.bin and what the older snapshots alone held: {dry}"
    );
    assert_eq!(e.snapshot_objects().len(), 3, "a dry run removes nothing");
    assert_eq!(e.allocated(), before, "a dry run frees nothing");
    let out = e.ok(&["forget", "--keep-last", "1", "--prune", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["prune"]["dead_bytes"], dry_prune["dead_bytes"], "{out}");
    assert!(
        v["prune"]["freed"]["bytes_cleared"].as_u64().unwrap() > 6 << 20,
        "{out}"
    );
    assert_eq!(e.snapshot_objects().len(), 1);
    assert!(before - e.allocated() > 6 << 20, "space given back");
    let text_out = e.ok(&["forget", "--keep-last", "1", "--prune"]);
    assert!(text_out.contains("nothing to prune"), "{text_out}");
    // the newest snapshot is the one kept: it restores d.bin removed, as the source is now
    let newest = e.snapshot_objects()[0]["snapshots/".len()..].to_string();
    assert_ne!(newest, snap);
    std::fs::remove_dir_all(&expect).unwrap();
    copy_dir(&e.p("src"), &expect);
    e.restores_as(&newest, &expect);
    e.check_read_data();
}

#[test]
fn backup_and_prune_are_refused_while_the_lock_is_held() {
    let e = Env::new();
    std::fs::write(e.p("src/f"), b"data").unwrap();
    e.start(&["--volume-size-mib", "4"]);
    e.ok(&["backup"]);
    // another process holds the lock: flock on the lock file, its holder line naming a prune
    let path = e.p("staging/job1/lock");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on an open descriptor.
    assert_eq!(
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    std::fs::write(
        &path,
        "command=prune host=other pid=4242 since=2026-12-02T18:00:00Z\n",
    )
    .unwrap();
    for args in [
        &["backup", "--another-snapshot"][..],
        &["prune"][..],
        &["forget", "--keep-last", "1"][..],
    ] {
        let o = e.run(args);
        assert!(!o.status.success());
        let err = text(&o.stderr);
        assert!(
            err.contains("locked by `prune`") && err.contains("4242"),
            "{args:?}: {err}"
        );
    }
    let o = e.run(&["unlock"]);
    assert!(
        !o.status.success(),
        "a lock held by a live process is not removed"
    );
    // the holder dies (its flock goes) leaving its line: the next backup takes over with a note
    drop(f);
    let o = e.run(&["backup", "--another-snapshot"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("took over a stale lock"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"", "released at the end");
}

#[test]
fn keys_are_added_changed_and_the_last_one_stays() {
    let e = Env::new();
    std::fs::write(e.p("src/f"), b"data").unwrap();
    e.start(&["--volume-size-mib", "4"]);
    e.ok(&["backup"]);
    let list = e.ok(&["key", "list"]);
    assert_eq!(list.matches("keys/").count(), 1, "{list}");
    let only = list
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let o = e.run(&["key", "remove", &only]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("passphrase in use"),
        "{}",
        text(&o.stderr)
    );
    // a second passphrase
    std::fs::write(e.p("pass2"), "another long passphrase 2\n").unwrap();
    let o = e.run(&["key", "add", "--new-passphrase-file", "pass2-missing"]);
    assert!(!o.status.success(), "a missing file is an error");
    e.ok(&["key", "add", "--new-passphrase-file", s(&e.p("pass2"))]);
    let with2 = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_seedship-agent"));
        c.env("SEEDSHIP_STATE_DIR", e.p("state"))
            .env_remove("SEEDSHIP_PASSPHRASE")
            .arg("--passphrase-file")
            .arg(e.p("pass2"))
            .args(args);
        c.output().unwrap()
    };
    assert!(with2(&["snapshots"]).status.success());
    // the second passphrase removes the first key; the first passphrase no longer opens
    let o = with2(&["key", "remove", &only]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = e.run(&["snapshots"]);
    assert!(
        text(&o.stderr).contains("wrong passphrase"),
        "{}",
        text(&o.stderr)
    );
    // the last key cannot go, even named by another passphrase's holder
    let list = text(&with2(&["key", "list"]).stdout);
    assert_eq!(list.matches("keys/").count(), 1, "{list}");
    // passwd rewrites that one key object; the old passphrase stops working
    std::fs::write(e.p("pass3"), "the third long passphrase\n").unwrap();
    let o = with2(&["key", "passwd", "--new-passphrase-file", s(&e.p("pass3"))]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(e.store().list("keys/").unwrap().len(), 1);
    assert!(!with2(&["snapshots"]).status.success());
    std::fs::copy(e.p("pass3"), e.p("pass")).unwrap();
    e.ok(&["snapshots"]);
    // a passphrase too short is refused and nothing is written
    std::fs::write(e.p("short"), "short\n").unwrap();
    assert!(!e
        .run(&["key", "add", "--new-passphrase-file", s(&e.p("short"))])
        .status
        .success());
    assert_eq!(e.store().list("keys/").unwrap().len(), 1);
}

#[test]
fn a_folder_split_into_parts_survives_forget_prune_check_and_restore() {
    let e = Env::new();
    // more entries than one tree holds (16,384): the folder's tree is split into parts
    let wide = e.p("src/wide");
    std::fs::create_dir_all(&wide).unwrap();
    for i in 0..17_000 {
        std::fs::write(wide.join(format!("f{i:05}")), format!("entry {i}\n")).unwrap();
    }
    e.start(&[]);
    e.ok(&["backup"]);
    // a few entries changed, removed and added: the parts that hold them are new, the others are shared
    for i in [5, 9_000, 16_999] {
        std::fs::write(wide.join(format!("f{i:05}")), format!("changed entry {i}\n")).unwrap();
    }
    std::fs::remove_file(wide.join("f12345")).unwrap();
    std::fs::write(wide.join("f12345a"), "added\n").unwrap();
    e.ok(&["backup", "--another-snapshot"]);
    let ls = e.ok(&["ls", "latest", &format!("{}/wide", s(&e.p("src")))]);
    // the folder itself and its entries, the parts joined
    assert_eq!(ls.lines().count(), 1 + 17_000, "{}", &ls[..200.min(ls.len())]);
    // the first snapshot's own parts become unreferenced; the shared parts must stay
    let out = e.ok(&["forget", "--keep-last", "1", "--prune", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["prune"]["dead_blobs"].as_u64().unwrap() >= 4, "{out}");
    e.check_read_data();
    let expect = e.p("expect");
    copy_dir(&e.p("src"), &expect);
    e.restores_as(&e.snapshot_ids()[0], &expect);
    // an unchanged run keeps every part: nothing new but the snapshot
    let again = e.ok(&["backup", "--another-snapshot", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(v["files_unchanged"], 17_000, "{again}");
    assert_eq!(v["blobs_new"], 0, "{again}");
}
