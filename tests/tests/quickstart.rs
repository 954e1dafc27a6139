//! docs/quickstart.md followed literally (issue 20 point 5): its ```` ```sh ```` blocks are extracted and run in
//! order in one bash (`set -euo pipefail`), with a temporary HOME, against Azurite on a free loopback port (the
//! testkit's, exported as the page's not-run Azurite block exports it) and the emulator the page itself starts
//! (`serve --listen 127.0.0.1:0`). A command of the page that fails fails this test; so does a page that loses
//! one of the story's steps or runs a block of its real-Azure section.
//!
//! Needs the binaries built: `cargo build -p seedship-agent -p seedship-diskprep -p seedship-emulator`, and
//! Azurite installed (`cd tests && npm ci`).

use seedship_e2e::testkit::{cargo_bin, workspace_root, Azurite, AZURITE_KEY};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// The heading after which nothing may run (real Azure).
const REAL_AZURE: &str = "## The same against real Azure";

/// A fenced code block of the page: its info string, the line it starts on, its text.
struct Block {
    info: String,
    line: usize,
    text: String,
    after_real_azure: bool,
}

fn blocks(page: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    let mut real_azure = false;
    for (i, line) in page.lines().enumerate() {
        match open.as_mut() {
            None if line.starts_with("```") => {
                open = Some(Block {
                    info: line.trim_start_matches('`').trim().to_owned(),
                    line: i + 1,
                    text: String::new(),
                    after_real_azure: real_azure,
                })
            }
            None => real_azure |= line.starts_with(REAL_AZURE),
            Some(_) if line.starts_with("```") => out.push(open.take().unwrap()),
            Some(b) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
        }
    }
    assert!(open.is_none(), "docs/quickstart.md ends inside a code block");
    out
}

/// The bash script: a prologue standing in for the page's not-run blocks (the tools on PATH, Azurite's
/// exports), then every `sh` block in order, then a marker that the end was reached.
fn script(runnable: &[&Block], bin: &Path, azurite: &Azurite, done: &Path) -> String {
    let mut s = format!(
        "set -euo pipefail\n\
         trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n\
         export PATH='{}':\"$PATH\"\n\
         export SEEDSHIP_STORAGE_KEY='{AZURITE_KEY}'\n\
         export SEEDSHIP_BLOB_ENDPOINT='{}'\n",
        bin.display(),
        azurite.endpoint()
    );
    for b in runnable {
        s.push_str(&format!(
            "echo '### docs/quickstart.md line {}' >&2\n{}",
            b.line, b.text
        ));
    }
    s.push_str(&format!("touch '{}'\n", done.display()));
    s
}

#[test]
fn quickstart_runs_as_written() {
    let page_path = workspace_root().join("docs/quickstart.md");
    let page = std::fs::read_to_string(&page_path).unwrap();
    let all = blocks(&page);
    let runnable: Vec<&Block> = all.iter().filter(|b| b.info == "sh").collect();
    for b in &runnable {
        assert!(
            !b.after_real_azure,
            "docs/quickstart.md line {}: a `sh` block in the real-Azure section would run against Azure; \
             mark it `shell`",
            b.line
        );
    }
    let code: String = runnable.iter().map(|b| b.text.as_str()).collect();
    for step in [
        "seedship-emulator init",
        "seedship-emulator serve",
        "seedship-agent offline start",
        "seedship-agent backup",
        "seedship-diskprep \"s:",
        "--dry-run",
        "seedship-diskprep u:",
        "seedship-emulator receive",
        "seedship-agent restore",
        "diff -r",
    ] {
        assert!(
            code.contains(step),
            "docs/quickstart.md no longer runs `{step}` in a `sh` block: the story lost a step"
        );
    }
    // The not-run Azurite block must export what the prologue exports here.
    assert!(
        page.contains(&format!("export SEEDSHIP_STORAGE_KEY=\"{AZURITE_KEY}\""))
            && page.contains("export SEEDSHIP_BLOB_ENDPOINT=http://127.0.0.1:10000/devstoreaccount1"),
        "docs/quickstart.md's Azurite block no longer exports Azurite's key and endpoint"
    );

    let azurite = Azurite::start();
    let home = tempfile::Builder::new()
        .prefix("seedship-quickstart-")
        .tempdir()
        .unwrap();
    let bin = cargo_bin("seedship-agent").parent().unwrap().to_path_buf();
    cargo_bin("seedship-diskprep");
    cargo_bin("seedship-emulator");
    let done = home.path().join(".quickstart-done");
    let script_path = home.path().join("quickstart.sh");
    std::fs::write(&script_path, script(&runnable, &bin, &azurite, &done)).unwrap();

    let child = Command::new("timeout")
        .arg("300")
        .arg("bash")
        .arg(&script_path)
        .current_dir(home.path())
        .env_clear()
        .env("HOME", home.path())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("run bash");
    let group = child.id();
    let out = child.wait_with_output().expect("wait for bash");
    // whatever the page left running (the emulator when it failed halfway)
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg("--")
        .arg(format!("-{group}"))
        .stderr(Stdio::null())
        .status();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last_block = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("### docs/quickstart.md"))
        .unwrap_or("(before the first block)");
    assert!(
        out.status.success() && done.exists(),
        "docs/quickstart.md failed ({}) in the block at {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status,
        last_block.trim_start_matches("### ")
    );
    let policy = std::fs::read_to_string(home.path().join("seedship-quickstart/agent-state/policy.json"))
        .expect("the agent's policy");
    assert!(
        policy.contains("\"online\""),
        "after the page the agent should back up online: {policy}"
    );
}
