//! What the agent's test suites share: the layout of a test folder (sources, staging, state directory, a
//! passphrase file and a publish-settings file whose certificate is never used) and its constants.

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
    std::fs::write(
        dir.join("ps.publishsettings"),
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<PublishData><PublishProfile SchemaVersion="2.0" PublishMethod="AzureServiceManagementAPI">
<Subscription ServiceManagementUrl="https://127.0.0.1:8443/" Id="{SUB}" Name="t" ManagementCertificate="AQID" />
</PublishProfile></PublishData>"#
        ),
    )
    .unwrap();
}
