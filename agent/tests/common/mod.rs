//! What the agent's test suites share: the layout of a test folder (sources, staging, state directory, a
//! passphrase file and a publish-settings file whose certificate is never used), its constants and small
//! helpers, and [`Env`], the agent run in such a folder. Each test file uses a part of it.
#![allow(dead_code)]

use seedship_agent::policy::{Mode, Policy, VaultTarget};
use seedship_shared::blob::{AzureStore, BlobStore, LocalStore};
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The subscription of the test publish-settings file.
pub const SUB: &str = "11111111-2222-3333-4444-555555555555";
/// The repository passphrase, in `<dir>/pass`.
pub const PASS: &str = "a long enough test passphrase";

/// Creates `src/`, `staging/`, `state/`, `pass` and `ps.publishsettings` under `dir`.
pub fn lay_out(dir: &Path) {
    for d in ["src", "staging", "state"] {
        std::fs::create_dir(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("pass"), format!("{PASS}\n")).unwrap();
    seedship_testkit::write_offline_publish_settings(&dir.join("ps.publishsettings"), SUB);
}

/// A path as the `&str` a command line takes.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A command's output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `n` incompressible bytes, the same for the same seed.
pub fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; n];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Relative path -> content of every file under `root`.
pub fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
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

/// Copies the files under `from` to `to` (folders made as needed).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for (rel, data) in files(from) {
        let p = to.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

/// A test folder laid out by [`lay_out`], and the agent run in it: its state directory, its passphrase
/// file, and none of the variables a developer's shell may carry (passphrase, upload limit, kill point).
pub struct Env {
    pub dir: tempfile::TempDir,
    vars: Vec<(&'static str, String)>,
    account: String,
}

impl Env {
    pub fn new() -> Env {
        let e = Env {
            dir: tempfile::tempdir().unwrap(),
            vars: Vec::new(),
            account: "acct1".into(),
        };
        lay_out(e.dir.path());
        e
    }

    /// The same, with `name=value` in every command's environment.
    pub fn with_var(mut self, name: &'static str, value: &str) -> Env {
        self.vars.push((name, value.to_owned()));
        self
    }

    /// The same, with `offline start --storage-account account`.
    pub fn with_account(mut self, account: &str) -> Env {
        self.account = account.to_owned();
        self
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_seedship-agent"));
        c.env("SEEDSHIP_STATE_DIR", self.p("state"))
            .env_remove("SEEDSHIP_PASSPHRASE")
            .env_remove("SEEDSHIP_LIMIT_UPLOAD")
            .env_remove("SEEDSHIP_TEST_KILL_AT");
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c.arg("--passphrase-file").arg(self.p("pass")).args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and asserts success; the standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "{args:?} exited {:?}: {}\n{}",
            o.status,
            text(&o.stdout),
            text(&o.stderr)
        );
        text(&o.stdout)
    }

    /// Runs and asserts failure; the standard error.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(!o.status.success(), "{args:?} succeeded: {}", text(&o.stdout));
        text(&o.stderr)
    }

    /// `offline start` of job `job1` (container `seed1`) backing up `src/` into `staging/`, then `extra`.
    pub fn start_args(&self, extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = [
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
            &self.account,
            "--container",
            "seed1",
            "--source",
            s(&self.p("src")),
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    }

    /// Runs [`Env::start_args`].
    pub fn start(&self, extra: &[&str]) {
        let a = self.start_args(extra);
        self.ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// The staging job's objects.
    pub fn blobs(&self) -> PathBuf {
        self.p("staging/job1/blobs")
    }

    /// The snapshot ids `snapshots` lists, oldest first.
    pub fn snapshot_ids(&self) -> Vec<String> {
        self.ok(&["snapshots"])
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect()
    }

    /// Restores `snap` and compares it with the copy of the sources in `expect`.
    pub fn restores_as(&self, snap: &str, expect: &Path) {
        let target = self.p(&format!("restore-{}", &snap[..12]));
        self.ok(&["restore", snap, "--target", s(&target)]);
        let got = target.join(self.p("src").strip_prefix("/").unwrap());
        assert_eq!(files(&got), files(expect), "snapshot {snap}");
        std::fs::remove_dir_all(&target).unwrap();
    }

    /// `check --read-data` finds no problem.
    pub fn check_read_data(&self) {
        let out = self.ok(&["check", "--read-data"]);
        assert!(out.contains(": 0 problem(s)"), "{out}");
    }

    /// `prune --max-unused 0%` killed by the agent itself at `step` (`SEEDSHIP_TEST_KILL_AT`); asserts it
    /// got there.
    pub fn prune_killed_at(&self, step: &str) {
        let o = self
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
    }

    /// The import and the move into the vault, by hand: every staging object uploaded into `vault` under
    /// the same name, the policy switched to online with `vault` (`container` at `endpoint`) as its target,
    /// and the staging folder renamed away (nothing in online mode may need it).
    pub fn move_into_vault(&self, vault: &AzureStore, endpoint: &str, container: &str) {
        let local = LocalStore::new(self.blobs());
        vault.create_container().unwrap();
        for o in local.list("").unwrap() {
            vault.create(&o.name, o.len, &o.metadata).unwrap();
            for r in local.page_ranges(&o.name).unwrap() {
                let mut pos = r.start;
                while pos < r.end {
                    let n = (r.end - pos).min(4 << 20);
                    let mut buf = vec![0u8; n as usize];
                    local.read_at(&o.name, pos, &mut buf).unwrap();
                    vault.write_pages(&o.name, pos, &buf).unwrap();
                    pos += n;
                }
            }
        }
        let mut pol = Policy::load(&self.p("state")).unwrap();
        pol.mode = Mode::Online;
        pol.vault = Some(VaultTarget {
            endpoint: endpoint.to_owned(),
            account: seedship_testkit::AZURITE_ACCOUNT.into(),
            container: container.to_owned(),
            since: 1_795_331_109,
            import_container: None,
            entra: None,
        });
        pol.save(&self.p("state")).unwrap();
        std::fs::rename(self.p("staging"), self.p("staging-shipped")).unwrap();
    }
}
