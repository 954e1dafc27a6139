//! What `init` creates for Entra ID: a tenant, the token-signing key and certificate, one application
//! registration with a certificate (RSA 2048, self-signed, as `az ad sp create-for-rbac --create-cert` makes)
//! and a client secret, a system-assigned managed identity, and `entra-app.json` telling clients where all of
//! it is. Keys, the secret and `entra-app.json` are created with mode 0600 in one call.

use super::{AppRegistration, EntraConfig, ManagedIdentityConfig};
use crate::config::random_guid;
use crate::config::{write_file, EmulatorDir, EmulatorError};
use rsa::pkcs8::EncodePrivateKey as _;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use zeroize::Zeroizing;

/// The roles `init` assigns to the application and the managed identity.
pub const DEFAULT_ROLES: [&str; 2] = ["Contributor", "Storage Blob Data Contributor"];

/// The audience of Resource Manager tokens on the emulator.
pub const MANAGEMENT_AUDIENCE: &str = "https://management.azure.com/";

/// The resource group `entra-app.json` names by default.
pub const DEFAULT_RESOURCE_GROUP: &str = "seedship";

/// `entra-app.json`: what a client needs to sign in as the registered application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntraAppFile {
    pub tenant: String,
    pub client_id: String,
    /// The application's certificate (PEM).
    pub certificate: PathBuf,
    /// Its RSA private key (PKCS#8 PEM, mode 0600).
    pub private_key: PathBuf,
    /// A file holding the client secret's value (mode 0600).
    pub client_secret_file: PathBuf,
    /// The sign-in host: the emulator's URL (the token endpoint is `{authority}/{tenant}/oauth2/v2.0/token`).
    pub authority: String,
    /// The Resource Manager endpoint: the emulator's URL.
    pub management_endpoint: String,
    /// The audience of Resource Manager tokens the emulator accepts (`https://management.azure.com/`, as in
    /// the public cloud): ask for `{management_audience}.default`.
    pub management_audience: String,
    pub subscription: String,
    pub resource_group: String,
    /// The CA certificate that signed the emulator's TLS certificate (trust it for `authority`).
    pub ca_certificate: PathBuf,
    /// The managed identity's client id (for `--managed-identity`, whose endpoint is `authority` too).
    pub managed_identity_client_id: String,
}

fn cert_err(e: impl std::fmt::Display) -> EmulatorError {
    EmulatorError::Certificate(e.to_string())
}

/// A new RSA 2048 key (PKCS#8 DER) and a self-signed certificate for it with common name `cn`.
fn rsa_certificate(cn: &str) -> Result<(Zeroizing<Vec<u8>>, String), EmulatorError> {
    let mut rng = rsa::rand_core::OsRng;
    let key = rsa::RsaPrivateKey::new(&mut rng, 2048).map_err(cert_err)?;
    let der = key.to_pkcs8_der().map_err(cert_err)?;
    let pkcs8 = Zeroizing::new(der.as_bytes().to_vec());
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_slice()),
        &rcgen::PKCS_RSA_SHA256,
    )
    .map_err(cert_err)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let cert = params.self_signed(&pair).map_err(cert_err)?;
    Ok((pkcs8, cert.pem()))
}

fn pkcs8_pem(der: &[u8]) -> Zeroizing<String> {
    use base64::Engine as _;
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let mut pem = Zeroizing::new(String::from("-----BEGIN PRIVATE KEY-----\n"));
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("Base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// A client secret in the portal's style: 40 characters of letters, digits, `~`, `.`, `_` and `-`.
fn new_secret() -> Result<Zeroizing<String>, EmulatorError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789~._-";
    let mut raw = Zeroizing::new([0u8; 40]);
    getrandom::fill(raw.as_mut()).map_err(cert_err)?;
    Ok(Zeroizing::new(
        raw.iter()
            .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
            .collect(),
    ))
}

/// Creates the tenant, keys, registration and managed identity; writes the key, certificate and secret
/// files. `url` is the emulator's URL as far as known (rewritten by `serve` when `init` had no `--url`).
pub fn create_registration(
    dir: &EmulatorDir,
    subscription: &str,
    url: &str,
) -> Result<(EntraConfig, EntraAppFile), EmulatorError> {
    use sha2::Digest as _;
    let (signing_key, signing_cert) = rsa_certificate("seedship emulator token signing")?;
    let (app_key, app_cert) = rsa_certificate("seedship-emulator application")?;
    let secret = new_secret()?;
    write_file(&dir.entra_signing_key(), pkcs8_pem(&signing_key).as_bytes(), true)?;
    write_file(&dir.entra_signing_cert(), signing_cert.as_bytes(), false)?;
    write_file(&dir.entra_app_key(), pkcs8_pem(&app_key).as_bytes(), true)?;
    write_file(&dir.entra_app_cert(), app_cert.as_bytes(), false)?;
    write_file(&dir.entra_app_secret(), secret.as_bytes(), true)?;
    let config = EntraConfig {
        tenant: random_guid()?,
        applications: vec![AppRegistration {
            client_id: random_guid()?,
            object_id: random_guid()?,
            display_name: "seedship".into(),
            certificates: vec![file_name(&dir.entra_app_cert())],
            secret_sha256: vec![hex::encode(sha2::Sha256::digest(secret.as_bytes()))],
            roles: DEFAULT_ROLES.iter().map(|r| r.to_string()).collect(),
        }],
        managed_identity: ManagedIdentityConfig {
            client_id: random_guid()?,
            object_id: random_guid()?,
            roles: DEFAULT_ROLES.iter().map(|r| r.to_string()).collect(),
        },
    };
    let app = EntraAppFile {
        tenant: config.tenant.clone(),
        client_id: config.applications[0].client_id.clone(),
        certificate: absolute(&dir.entra_app_cert()),
        private_key: absolute(&dir.entra_app_key()),
        client_secret_file: absolute(&dir.entra_app_secret()),
        authority: url.to_owned(),
        management_endpoint: url.to_owned(),
        management_audience: MANAGEMENT_AUDIENCE.into(),
        subscription: subscription.to_owned(),
        resource_group: DEFAULT_RESOURCE_GROUP.into(),
        ca_certificate: absolute(&dir.ca_cert()),
        managed_identity_client_id: config.managed_identity.client_id.clone(),
    };
    write_app_file(dir, &app)?;
    Ok((config, app))
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Writes `entra-app.json` (mode 0600).
pub fn write_app_file(dir: &EmulatorDir, app: &EntraAppFile) -> Result<(), EmulatorError> {
    let json = serde_json::to_vec_pretty(app).map_err(cert_err)?;
    write_file(&dir.entra_app(), &json, true)
}

/// Points `entra-app.json` at `url` (what `serve` does when `init` had no fixed `--url`).
pub fn update_app_url(dir: &EmulatorDir, url: &str) -> Result<(), EmulatorError> {
    let path = dir.entra_app();
    if !path.exists() {
        return Ok(());
    }
    let mut app: EntraAppFile = crate::config::read_json(&path)?;
    app.authority = url.to_owned();
    app.management_endpoint = url.to_owned();
    write_app_file(dir, &app)
}
