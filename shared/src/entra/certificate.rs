//! The client certificate of an application registration and the JWT client assertion signed with its key.
//!
//! The certificate and its RSA private key are PEM: one file holding both (what `az ad sp create-for-rbac
//! --create-cert` writes), or the certificate and the key in two files. The key may be PKCS#8 (`BEGIN PRIVATE
//! KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`); Entra ID certificates are RSA. Key files must not be readable by
//! group or others. The PEM and DER bytes of the key are wiped from memory once the key is parsed.

use super::jwt::{b64url, sign_rs256, unix_seconds};
use super::EntraError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha1::Digest as _;
use std::path::Path;
use std::time::{Duration, SystemTime};
use zeroize::Zeroizing;

/// How long a client assertion is valid.
pub const ASSERTION_LIFETIME: Duration = Duration::from_secs(600);

/// A certificate with its private key, ready to sign client assertions.
pub struct ClientCertificate {
    der: Vec<u8>,
    key: ring::rsa::KeyPair,
    /// Where it came from, for messages.
    origin: String,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("origin", &self.origin)
            .field("sha1_thumbprint", &self.sha1_thumbprint_hex())
            .finish_non_exhaustive()
    }
}

fn file_err(what: &'static str, path: &Path, message: impl Into<String>) -> EntraError {
    EntraError::File {
        what,
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Reads a file holding a secret or a private key, refusing one that group or others may read.
pub(crate) fn read_private_file(what: &'static str, path: &Path) -> Result<Zeroizing<Vec<u8>>, EntraError> {
    let meta = std::fs::metadata(path).map_err(|e| file_err(what, path, e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(file_err(
                what,
                path,
                format!(
                    "is readable by others (mode {:o}); run `chmod 600 {}` and try again",
                    mode & 0o777,
                    path.display()
                ),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| file_err(what, path, e.to_string()))
}

impl ClientCertificate {
    /// Loads the certificate from `cert_path` and the key from `key_path`, or from `cert_path` too.
    pub fn load(cert_path: &Path, key_path: Option<&Path>) -> Result<ClientCertificate, EntraError> {
        let cert_pem = match key_path {
            // the certificate alone is public
            Some(_) => Zeroizing::new(
                std::fs::read(cert_path)
                    .map_err(|e| file_err("client certificate", cert_path, e.to_string()))?,
            ),
            None => read_private_file("client certificate", cert_path)?,
        };
        let key_pem = match key_path {
            Some(p) => read_private_file("client certificate key", p)?,
            None => cert_pem.clone(),
        };
        let origin = cert_path.display().to_string();
        let cert = CertificateDer::pem_slice_iter(&cert_pem)
            .next()
            .ok_or_else(|| {
                file_err(
                    "client certificate",
                    cert_path,
                    "holds no PEM certificate (BEGIN CERTIFICATE)",
                )
            })?
            .map_err(|e| file_err("client certificate", cert_path, format!("is not valid PEM: {e}")))?;
        let key_file = key_path.unwrap_or(cert_path);
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
            file_err(
                "client certificate key",
                key_file,
                "holds no PEM private key (BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY); give it with --client-certificate-key",
            )
        })?;
        let key = parse_rsa_key(&key).map_err(|m| file_err("client certificate key", key_file, m))?;
        Ok(ClientCertificate {
            der: cert.to_vec(),
            key,
            origin,
        })
    }

    /// From DER bytes (certificate) and a PKCS#8 RSA key, for callers that hold them in memory.
    pub fn from_der(
        cert_der: &[u8],
        pkcs8_key: &[u8],
        origin: &str,
    ) -> Result<ClientCertificate, EntraError> {
        let key = ring::rsa::KeyPair::from_pkcs8(pkcs8_key).map_err(|e| EntraError::File {
            what: "client certificate key",
            path: origin.to_owned(),
            message: format!("is not a usable RSA key: {e}"),
        })?;
        Ok(ClientCertificate {
            der: cert_der.to_vec(),
            key,
            origin: origin.to_owned(),
        })
    }

    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-1 of the certificate, uppercase hex (the thumbprint the portal shows).
    pub fn sha1_thumbprint_hex(&self) -> String {
        hex::encode_upper(sha1::Sha1::digest(&self.der))
    }

    /// The `x5t` header: SHA-1 of the certificate, Base64url.
    pub fn x5t(&self) -> String {
        b64url(&sha1::Sha1::digest(&self.der))
    }

    /// The `x5t#S256` header: SHA-256 of the certificate, Base64url.
    pub fn x5t_s256(&self) -> String {
        b64url(&sha2::Sha256::digest(&self.der))
    }

    /// A client assertion for `client_id` at `token_endpoint`, valid from `now` for `ASSERTION_LIFETIME` (10 minutes).
    pub fn assertion(
        &self,
        client_id: &str,
        token_endpoint: &str,
        now: SystemTime,
    ) -> Result<String, EntraError> {
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|e| EntraError::Config {
            what: "random source",
            message: e.to_string(),
        })?;
        let now = unix_seconds(now);
        let header = serde_json::json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5t": self.x5t(),
            "x5t#S256": self.x5t_s256(),
        });
        let claims = serde_json::json!({
            "aud": token_endpoint,
            "iss": client_id,
            "sub": client_id,
            "jti": hex::encode(jti),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME.as_secs() as i64,
        });
        sign_rs256(&self.key, &header, &claims).map_err(|m| EntraError::File {
            what: "client certificate key",
            path: self.origin.clone(),
            message: m,
        })
    }
}

fn parse_rsa_key(key: &PrivateKeyDer<'_>) -> Result<ring::rsa::KeyPair, String> {
    let parsed = match key {
        PrivateKeyDer::Pkcs8(k) => ring::rsa::KeyPair::from_pkcs8(k.secret_pkcs8_der()),
        PrivateKeyDer::Pkcs1(k) => ring::rsa::KeyPair::from_der(k.secret_pkcs1_der()),
        _ => return Err("is not an RSA key (Entra ID application certificates use RSA keys)".into()),
    };
    parsed.map_err(|e| format!("is not a usable RSA key (2048 bits or more): {e}"))
}
