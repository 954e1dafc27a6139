//! The Import/Export client's identity handling against PKCS#12 files made by OpenSSL (an independent tool):
//! the modern encoding (PBES2/AES-256, SHA-256 MAC) and the legacy one Windows produced (RC2-40 / 3DES, SHA-1
//! MAC), both with the empty password publish-settings files use. The client against a live service is tested
//! in tests/emulator (package seedship-emulator).

use base64::Engine;
use seedship_shared::api::{ApiClient, ApiClientOptions, ApiError, IdentityError, ManagementIdentity};
use seedship_shared::publish_settings::PublishSettings;
use std::path::PathBuf;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/api")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn openssl_thumbprint() -> String {
    let text = String::from_utf8(fixture("sha1.txt")).unwrap();
    text.trim().split('=').nth(1).unwrap().replace(':', "")
}

#[test]
fn openssl_pkcs12_files_become_a_tls_identity() {
    for name in ["openssl-aes.pfx", "openssl-legacy.pfx"] {
        let id = ManagementIdentity::from_pkcs12("sub-1", &fixture(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(id.thumbprint(), openssl_thumbprint(), "{name}");
        let pem = String::from_utf8(id.pem().to_vec()).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{name}");
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 1, "{name}");
        reqwest::Identity::from_pem(id.pem())
            .unwrap_or_else(|e| panic!("{name}: reqwest refuses the PEM: {e}"));
        assert!(
            !format!("{id:?}").contains("PRIVATE"),
            "Debug must not show the key"
        );
    }
}

#[test]
fn client_options_from_a_publish_settings_file() {
    let b64 = base64::engine::general_purpose::STANDARD.encode(fixture("openssl-legacy.pfx"));
    let xml = format!(
        r#"<PublishData><PublishProfile SchemaVersion="2.0" PublishMethod="AzureServiceManagementAPI">
        <Subscription ServiceManagementUrl="https://127.0.0.1:9" Id="sub-1" Name="x" ManagementCertificate="{b64}"/>
        </PublishProfile></PublishData>"#
    );
    let ps = PublishSettings::parse(&xml).unwrap();
    let opts = ApiClientOptions::from_subscription(ps.subscription("sub-1").unwrap()).unwrap();
    assert_eq!(opts.identity.thumbprint(), openssl_thumbprint());
    let client = ApiClient::new(opts.clone()).unwrap();
    assert_eq!(
        client.base_url().as_str(),
        "https://127.0.0.1:9/sub-1/services/importexport"
    );

    let mut http = opts.clone();
    http.service_management_url = "http://127.0.0.1:9".into();
    assert!(matches!(ApiClient::new(http), Err(ApiError::BadUrl { .. })));
    let missing = opts
        .clone()
        .with_management_ca_file(std::path::Path::new("/nonexistent/ca.pem"));
    assert!(
        matches!(missing, Err(ApiError::ManagementCa { ref what, .. }) if what.contains("/nonexistent/ca.pem"))
    );
    let mut junk = opts;
    junk.management_ca_pem = Some(b"not a certificate".to_vec());
    assert!(matches!(ApiClient::new(junk), Err(ApiError::ManagementCa { .. })));
}

#[test]
fn a_broken_certificate_names_the_subscription() {
    let e = ManagementIdentity::from_pkcs12("sub-9", b"\x30\x03\x02\x01\x03").unwrap_err();
    assert!(matches!(e, IdentityError::Pkcs12 { .. }));
    assert!(
        e.to_string().contains("sub-9") && e.to_string().contains("publish-settings"),
        "{e}"
    );
    let mut pfx = fixture("openssl-aes.pfx");
    let last = pfx.len() - 1;
    pfx[last] ^= 1; // breaks the MAC
    assert!(ManagementIdentity::from_pkcs12("sub-9", &pfx).is_err());
}
