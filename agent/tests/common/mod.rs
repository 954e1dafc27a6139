//! What the agent's test suites share: the layout of a test folder (sources, staging, state directory, a
//! passphrase file and a publish-settings file whose certificate is never used), its constants and small
//! helpers.

use std::path::Path;

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
