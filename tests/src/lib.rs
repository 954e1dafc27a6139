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
