//! Online mode against Azurite: after an initial backup into staging, the import and its move into the vault
//! are played by hand (every staging object uploaded into an Azurite container under the same name, the
//! policy switched to online), then incrementals run over the network. The staging folder is renamed away
//! first: nothing in online mode may need it.
//!
//! Figures (bytes changed, bytes sent, times) are printed; run with `--nocapture` to see them.

use seedship_shared::blob::{AzureOptions, AzureStore, BlobStore, Credential};
use seedship_testkit::{Azurite, AZURITE_ACCOUNT, AZURITE_KEY};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{random, s, text, Env};
const VAULT: &str = "vault";

/// A test folder ([`Env`]) with its own Azurite, whose container `vault` is the vault.
struct Online {
    e: Env,
    az: Azurite,
}

impl std::ops::Deref for Online {
    type Target = Env;
    fn deref(&self) -> &Env {
        &self.e
    }
}

impl Online {
    fn new() -> Online {
        Online {
            e: Env::new()
                .with_account(AZURITE_ACCOUNT)
                .with_var("SEEDSHIP_STORAGE_KEY", AZURITE_KEY),
            az: Azurite::start(),
        }
    }

    fn vault(&self) -> AzureStore {
        let opts = AzureOptions::new(
            &self.az.endpoint(),
            AZURITE_ACCOUNT,
            VAULT,
            Credential::SharedKey(AZURITE_KEY.into()),
        );
        AzureStore::new(opts).unwrap()
    }

    /// `offline start` and the initial backup into staging, then the import and the move into the vault
    /// by hand: every staging object uploaded, the policy switched to online, the staging folder renamed.
    fn seed(&self) {
        self.seed_with(&[]);
    }

    /// [`Online::seed`] with more `offline start` options.
    fn seed_with(&self, options: &[&str]) {
        self.start(options);
        self.ok(&["backup"]);
        self.move_into_vault(&self.vault(), &self.az.endpoint(), VAULT);
    }

    fn restore_and_compare(&self, target: &str) {
        self.ok(&["restore", "latest", "--target", s(&self.p(target))]);
        let src = self.p("src");
        assert_same(&src, &self.p(target).join(src.strip_prefix("/").unwrap()));
    }

    fn check_read_data(&self) {
        let out = self.ok(&["check", "--read-data"]);
        assert!(out.contains(" 0 problem(s)"), "{out}");
    }
}

fn check_ok(args: &[&str], o: Output) -> String {
    assert!(
        o.status.success(),
        "{args:?} exited {:?}: {}\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// The number in `... <before>NUMBER<after> ...` of a backup's output.
fn figure(out: &str, before: &str, after: &str) -> u64 {
    let rest = out
        .split(before)
        .nth(1)
        .unwrap_or_else(|| panic!("no {before:?} in {out}"));
    let end = rest
        .find(after)
        .unwrap_or_else(|| panic!("no {after:?} in {out}"));
    rest[..end].trim().parse().unwrap()
}

fn sent(out: &str) -> u64 {
    figure(out, "sent ", " bytes to the vault")
}

/// Relative path -> (mode, mtime, content) of every regular file and directory under `root`.
fn listing(root: &Path) -> BTreeMap<PathBuf, (u32, i64, Option<Vec<u8>>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
        let content = m.is_file().then(|| std::fs::read(&p).unwrap());
        let mtime = if rel.as_os_str().is_empty() || m.is_dir() {
            0
        } else {
            m.mtime()
        };
        out.insert(rel, (m.permissions().mode(), mtime, content));
    }
    out
}

fn assert_same(a: &Path, b: &Path) {
    let (x, y) = (listing(a), listing(b));
    assert_eq!(
        x.keys().collect::<Vec<_>>(),
        y.keys().collect::<Vec<_>>(),
        "different entries in {a:?} and {b:?}"
    );
    for (k, v) in &x {
        assert!(y[k] == *v, "{k:?} differs between {a:?} and {b:?}");
    }
}

#[test]
fn incrementals_into_the_vault_send_about_what_changed() {
    let e = Online::new();
    std::fs::create_dir(e.p("src/small")).unwrap();
    for i in 0..40 {
        std::fs::write(e.p(&format!("src/small/f{i:02}.bin")), random(256 << 10, i)).unwrap();
    }
    std::fs::write(e.p("src/big.bin"), random(24 << 20, 99)).unwrap();
    let total = (40 * (256 << 10) + (24 << 20)) as u64;
    e.seed();
    let st = e.ok(&["status"]);
    assert!(
        st.contains("vault: container vault") && st.contains("last backup: none"),
        "{st}"
    );

    // unchanged: only the snapshot is sent, and nothing is read from the vault (trees come from the cache)
    let t = Instant::now();
    let out = e.ok(&["backup"]);
    let unchanged_time = t.elapsed();
    print!("{out}");
    assert!(
        out.contains("(41 unchanged)") && out.contains(" 0 new blobs"),
        "{out}"
    );
    assert!(sent(&out) < 8 << 10, "{out}");
    assert_eq!(figure(&out, "received ", " bytes from the vault"), 0, "{out}");
    assert_eq!(figure(&out, "local cache, ", " from the vault"), 0, "{out}");
    // the snapshot root's tree from the cache; the unchanged folders are kept by their walk records unread
    assert!(figure(&out, "trees: ", " from the local cache") >= 1, "{out}");
    println!(
        "unchanged incremental against the vault ({} MiB in 41 files): {:.2} s, sent {} bytes",
        total >> 20,
        unchanged_time.as_secs_f64(),
        sent(&out)
    );

    // about 1% changed, as whole files: one rewritten, one new
    std::fs::write(e.p("src/small/f07.bin"), random(256 << 10, 1007)).unwrap();
    std::fs::write(e.p("src/small/new.bin"), random(96 << 10, 1008)).unwrap();
    let changed = (256 + 96) << 10;
    let out = e.ok(&["backup"]);
    print!("{out}");
    let sent_files = sent(&out);
    println!(
        "1% change as files: {changed} bytes changed ({:.2}% of {total}), {sent_files} bytes sent ({:.2}%)",
        changed as f64 * 100.0 / total as f64,
        sent_files as f64 * 100.0 / total as f64
    );
    assert!(sent_files >= changed, "random data cannot shrink: {out}");
    assert!(
        sent_files <= changed + changed / 20 + (64 << 10),
        "more than the changed files plus metadata was sent: {out}"
    );

    // 1% of the bytes of the big file rewritten in place: content-defined chunks around the change are new
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(e.p("src/big.bin"))
            .unwrap();
        f.write_all_at(&random((total / 100) as usize, 1009), 10 << 20)
            .unwrap();
    }
    let out = e.ok(&["backup"]);
    let sent_big = sent(&out);
    println!(
        "1% of a 24 MiB file rewritten in place: {} bytes changed, {sent_big} bytes sent ({:.2}% of the data)",
        total / 100,
        sent_big as f64 * 100.0 / total as f64
    );
    // chunks cluster around 1 MiB; with normalized chunking the cut rule depends on the distance from the
    // last cut, so boundaries resynchronise a few chunks after the change (measured: 1 to 6 MiB sent)
    assert!(
        sent_big < 16 << 20,
        "two thirds of the file or more was sent again: {out}"
    );

    e.restore_and_compare("out");
    e.check_read_data();
    let snaps = e.ok(&["snapshots"]);
    assert_eq!(snaps.lines().count(), 5, "{snaps}");
    let st = e.ok(&["status"]);
    assert!(
        st.contains("mode: online") && st.contains(&format!("sent {sent_big} bytes")),
        "{st}"
    );

    // the storage key: missing, then wrong; neither is ever printed
    let o = e
        .cmd(&["backup"])
        .env_remove("SEEDSHIP_STORAGE_KEY")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("no key for storage account devstoreaccount1: set SEEDSHIP_STORAGE_KEY"),
        "{}",
        text(&o.stderr)
    );
    let wrong = "V3JvbmdXcm9uZ1dyb25nV3JvbmdXcm9uZ1dyb25nV3JvbmdXcm9uZ1dyb25nV3Jvbmc=";
    let o = e
        .cmd(&["snapshots"])
        .env("SEEDSHIP_STORAGE_KEY", wrong)
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refused the storage account key") && err.contains("SEEDSHIP_STORAGE_KEY"),
        "{err}"
    );
    assert!(!err.contains(wrong) && !err.contains(AZURITE_KEY), "{err}");

    // a flipped byte in a blob in the vault is found and named by check --read-data (read in windows)
    let vault = e.vault();
    let mut page = vec![0u8; 512];
    vault.read_at("data/00000000", 4096, &mut page).unwrap();
    page[100] ^= 0x10;
    vault.write_pages("data/00000000", 4096, &page).unwrap();
    let o = e.cmd(&["check", "--read-data"]).output().unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    assert!(err.contains("data/00000000") && err.contains("damaged"), "{err}");
}

#[test]
fn the_upload_limit_holds_and_an_azurite_restart_mid_incremental_loses_nothing() {
    let mut e = Online::new();
    std::fs::write(e.p("src/first.bin"), random(2 << 20, 1)).unwrap();
    e.seed();

    // the limit (here from the environment): a lower bound on the time only, so it cannot flake
    for i in 0..2 {
        std::fs::write(e.p(&format!("src/limited{i}.bin")), random(4 << 20, 10 + i)).unwrap();
    }
    let t = Instant::now();
    let o = e
        .cmd(&["backup"])
        .env("SEEDSHIP_LIMIT_UPLOAD", "2M")
        .output()
        .unwrap();
    let elapsed = t.elapsed().as_secs_f64();
    let out = check_ok(&["backup"], o);
    let bytes = sent(&out);
    // the bucket starts with half a second's worth
    let floor = (bytes as f64 - (1 << 20) as f64) / (2 << 20) as f64;
    println!("upload limit 2 MiB/s: sent {bytes} bytes in {elapsed:.2} s (at least {floor:.2} s expected)");
    assert!(bytes >= 8 << 20, "{out}");
    assert!(elapsed >= floor * 0.95, "{elapsed} s < {floor} s: {out}");

    // Azurite stopped and started again while an incremental uploads (slowed so the restart lands mid-way)
    for i in 0..6 {
        std::fs::write(e.p(&format!("src/more{i}.bin")), random(4 << 20, 20 + i)).unwrap();
    }
    let child = e
        .cmd(&["backup", "--limit-upload", "6M"])
        .env("SEEDSHIP_PACK_SIZE_KIB", "1024")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let pid = child.id() as i32;
    // SAFETY: signal 0 only checks that our child still exists.
    assert_eq!(unsafe { libc::kill(pid, 0) }, 0);
    e.az.terminate();
    std::thread::sleep(Duration::from_millis(1000));
    e.az.restart();
    let o = child.wait_with_output().unwrap();
    let out = check_ok(&["backup", "(restarted)"], o.clone());
    let retried = text(&o.stderr).contains("retrying");
    println!(
        "Azurite restarted mid-incremental: finished, sent {} bytes; retries logged: {retried}",
        sent(&out)
    );
    assert!(out.contains("snapshot "), "{out}");
    assert!(
        retried,
        "no request failed while Azurite was down: the restart did not land mid-way\n{}",
        text(&o.stderr)
    );
    e.check_read_data();
    e.restore_and_compare("out");
}

#[test]
fn sigkill_mid_incremental_then_the_rerun_sends_only_the_rest() {
    let e = Online::new();
    std::fs::write(e.p("src/first.bin"), random(2 << 20, 1)).unwrap();
    // 8 MiB volumes: the incremental appends to the imported volume, then opens new ones in the vault
    e.seed_with(&["--volume-size-mib", "8"]);
    let new_bytes: u64 = 24 << 20;
    for i in 0..6 {
        std::fs::write(e.p(&format!("src/new{i}.bin")), random(4 << 20, 50 + i)).unwrap();
    }
    let vault = e.vault();
    let indexes = || vault.list("index/").map(|l| l.len()).unwrap_or(0);
    let before = indexes();
    let mut child = e
        .cmd(&["backup", "--limit-upload", "8M"])
        .env("SEEDSHIP_PACK_SIZE_KIB", "1024")
        .env("SEEDSHIP_INDEX_EVERY", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if indexes() >= before + 3 {
            child.kill().unwrap(); // SIGKILL
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait().unwrap();
    assert!(killed, "the incremental finished before it could be killed");
    let at_kill = indexes() - before;
    let out = e.ok(&["backup"]);
    let rest = sent(&out);
    println!(
        "SIGKILL after {} index objects: the rerun sent {rest} bytes of {new_bytes} new",
        at_kill
    );
    assert!(
        rest < new_bytes - (4 << 20),
        "the rerun uploaded again what the killed run had made durable: {out}"
    );
    let listing: Vec<_> = vault
        .list("data/")
        .unwrap()
        .into_iter()
        .map(|o| (o.name, o.len))
        .collect();
    println!("volumes: {listing:?}");
    let volumes = listing.len();
    assert!(volumes >= 4, "{volumes} volumes for 26 MiB in 8 MiB volumes");
    assert!(listing.iter().all(|(_, len)| *len <= 8 << 20), "{listing:?}");
    e.check_read_data();
    e.restore_and_compare("out");
}

/// In the vault: a work-hours upload schedule in force (a work rate at every hour of every day), retention
/// stored in the policy and applied by each incremental, `forget` and browsing over the network.
#[test]
fn retention_schedule_and_browsing_in_the_vault() {
    let e = Online::new();
    std::fs::write(e.p("src/a.bin"), random(1 << 20, 11)).unwrap();
    e.seed();
    let out = e.ok(&[
        "policy",
        "set",
        "--keep-last",
        "2",
        "--limit-upload-work",
        "512K",
        "--limit-upload-off",
        "100M",
        "--work-hours",
        "00:00-24:00",
        "--work-days",
        "mon-sun",
    ]);
    assert!(out.contains("retention: none -> last 2"), "{out}");
    let status = e.ok(&["status"]);
    assert!(
        status
            .contains("upload limit: 512.0 KiB/s during work hours 00:00-24:00 mon,tue,wed,thu,fri,sat,sun"),
        "{status}"
    );
    // 1 MiB of new data at 512 KiB/s (a quarter second's burst): about two seconds
    std::fs::write(e.p("src/b.bin"), random(1 << 20, 12)).unwrap();
    let t = Instant::now();
    let out = e.ok(&["backup"]);
    let took = t.elapsed();
    assert!(sent(&out) >= 1 << 20, "{out}");
    assert!(
        took >= Duration::from_millis(1500),
        "the work-hours limit was not applied: {took:?}\n{out}"
    );
    assert!(
        out.contains("retention (last 2): removed 0 snapshot(s), kept 2"),
        "{out}"
    );
    e.ok(&["policy", "set", "--no-limit-upload"]);
    std::fs::write(e.p("src/c.txt"), b"third").unwrap();
    let out = e.ok(&["backup"]);
    assert!(
        out.contains("retention (last 2): removed 1 snapshot(s), kept 2"),
        "{out}"
    );
    assert_eq!(e.vault().list("snapshots/").unwrap().len(), 2);
    // browsing reads the vault
    let snaps = e.ok(&["snapshots"]);
    let ids: Vec<&str> = snaps
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    let diff = e.ok(&["diff", ids[0], ids[1]]);
    let src = e.p("src");
    assert!(
        diff.contains(&format!("+  {}/c.txt  (5 bytes)", s(&src))),
        "{diff}"
    );
    let o = e
        .cmd(&["dump", "latest", &format!("{}/b.bin", s(&src))])
        .output()
        .unwrap();
    assert_eq!(o.stdout, random(1 << 20, 12));
    // forget in the vault
    let plan: serde_json::Value =
        serde_json::from_str(&e.ok(&["forget", "--keep-last", "1", "--dry-run", "--json"])).unwrap();
    assert_eq!(plan["removed"].as_array().unwrap().len(), 1);
    assert_eq!(e.vault().list("snapshots/").unwrap().len(), 2);
    let out = e.ok(&["forget", "--keep-last", "1"]);
    assert!(out.contains("removed 1 snapshot(s), kept 1"), "{out}");
    assert_eq!(e.vault().list("snapshots/").unwrap().len(), 1);
    e.check_read_data();
    e.restore_and_compare("out");
}
