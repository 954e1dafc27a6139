//! seedship-e2e: end-to-end scenarios across the agent, diskprep and the emulator.
//!
//! The scenarios live in `tests/tests/` (one test binary); this library holds what they share. The binaries
//! under test are found with [`testkit::cargo_bin`] next to the test executable: `cargo test --workspace`
//! builds them first; `cargo test -p seedship-e2e` alone does not (build them with
//! `cargo build -p seedship-agent -p seedship-diskprep`), and the test then fails naming the missing binary.

pub use seedship_testkit as testkit;

use std::path::Path;
use std::process::{Command, Output};

/// A deterministic pseudo-random byte stream (xorshift64, 8 bytes a step): incompressible test data.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Data that compresses to about half: 128 KiB blocks, alternately noise and a repeated byte.
pub fn half_compressible(n: usize, seed: u64) -> Vec<u8> {
    let mut out = noise(n, seed);
    for (i, block) in out.chunks_mut(128 << 10).enumerate() {
        if i % 2 == 1 {
            block.fill((seed as u8).wrapping_add(i as u8));
        }
    }
    out
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs a command to completion, panicking when it cannot be started.
pub fn output(c: &mut Command) -> Output {
    c.output().unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"))
}

/// Bytes a file occupies on disk (allocated blocks), which grows as a sparse image is written.
pub fn allocated(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).map(|m| m.blocks() * 512).unwrap_or(0)
}

/// The recovery keys of a diskprep key file (`job<TAB>drive id<TAB>key` lines), as (drive id, key).
pub fn recovery_keys(key_file: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(key_file)
        .unwrap_or_else(|e| panic!("{}: {e}", key_file.display()))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert!(f.len() >= 3, "key file line has {} fields", f.len());
            (f[1].to_owned(), f[2].to_owned())
        })
        .collect()
}

/// The descriptor of a ready job `job` whose source machine is `host`, with fixed test values for the rest;
/// callers change what their test needs, then [`stage_job`] writes it with its blobs.
pub fn descriptor(job: &str, host: &str) -> seedship_shared::staging::JobDescriptor {
    seedship_shared::staging::JobDescriptor {
        format: 1,
        job_name: job.into(),
        subscription: "11111111-2222-3333-4444-555555555555".into(),
        storage_account: "seedacct".into(),
        container: "seed".into(),
        publish_settings: "/nowhere.publishsettings".into(),
        api: Default::default(),
        source_host: host.into(),
        repository_id: "r1".into(),
        state: seedship_shared::staging::JobState::BackupComplete,
        created: 1_700_000_000,
        blobs: Vec::new(),
    }
}

/// Stages a job as the agent leaves it: `blobs` (name, bytes) under `<staging>/<job>/blobs/` and the job
/// descriptor, completed with each blob's length and BLAKE3. Returns the job folder.
pub fn stage_job(
    staging: &Path,
    mut descriptor: seedship_shared::staging::JobDescriptor,
    blobs: &[(&str, Vec<u8>)],
) -> std::path::PathBuf {
    let dir = staging.join(&descriptor.job_name);
    for (name, bytes) in blobs {
        let p = dir.join(seedship_shared::staging::BLOBS_DIR).join(name);
        std::fs::create_dir_all(p.parent().expect("a blob path has a parent")).expect("staging folder");
        std::fs::write(&p, bytes).expect("staging blob");
        descriptor.blobs.push(seedship_shared::staging::StagedBlob {
            name: name.to_string(),
            len: bytes.len() as u64,
            blake3: blake3::hash(bytes).to_hex().to_string(),
        });
    }
    descriptor.save(&dir).expect("job descriptor");
    dir
}
