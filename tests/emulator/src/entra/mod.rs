//! Microsoft Entra ID, emulated: the application registration `init` creates, a token endpoint
//! (`POST /{tenant}/oauth2/v2.0/token`, client-credentials grant with a certificate assertion or a secret), a
//! managed-identity endpoint (`GET /metadata/identity/oauth2/token`, the instance metadata service's shape), the
//! signing keys (`GET /{tenant}/discovery/v2.0/keys`) and [`validate_bearer`] / [`authorize`] for the
//! endpoints that take bearer tokens.
//!
//! Tokens are JWTs signed RS256 by the emulator's signing key (`entra-signing-key.pem`, certificate
//! `entra-signing-cert.pem`), with issuer `https://sts.windows.net/{tenant}/` (the issuer Azure Storage and
//! Azurite accept), the audience of the requested `.default` scope, `iat`/`nbf`/`exp` from the emulator
//! clock, `appid`, `oid`, `tid` and the registration's `roles`. docs/emulator.md lists the files and answers.

mod bearer;
pub mod register;
pub mod settings;
mod token;

pub use bearer::{authorize, validate_bearer, AuthError, Claims};
pub use register::{create_registration, write_app_file, EntraAppFile};

use crate::config::{io, EmulatorDir, EmulatorError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
pub use settings::{AppRegistration, EntraConfig, ManagedIdentityConfig};

/// Lifetime of issued tokens (as Entra ID's default, just under an hour).
pub const TOKEN_LIFETIME: i64 = 3599;

/// The issuer of the emulator's tokens for `tenant`.
pub fn issuer(tenant: &str) -> String {
    format!("https://sts.windows.net/{tenant}/")
}

/// The registrations with their certificates and the signing key, loaded by `serve`.
pub struct Authority {
    pub config: EntraConfig,
    /// Each application's certificates (DER), in the order of [`EntraConfig::applications`].
    pub(crate) app_certs: Vec<Vec<Vec<u8>>>,
    signing_key: ring::rsa::KeyPair,
    signing_cert: Vec<u8>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Reads the first PEM certificate of a file, as DER.
pub(crate) fn read_cert(path: &std::path::Path) -> Result<Vec<u8>, EmulatorError> {
    let pem = std::fs::read(path).map_err(io(path))?;
    let cert = CertificateDer::pem_slice_iter(&pem)
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| EmulatorError::Config {
            path: path.to_path_buf(),
            reason: "no PEM certificate in it".into(),
        })?;
    Ok(cert.to_vec())
}

impl Authority {
    /// Loads the signing key and every registered certificate named by `config`.
    pub fn load(dir: &EmulatorDir, config: EntraConfig) -> Result<Authority, EmulatorError> {
        let key_path = dir.entra_signing_key();
        let key_pem = zeroize::Zeroizing::new(std::fs::read(&key_path).map_err(io(&key_path))?);
        let bad_key = |reason: String| EmulatorError::Config {
            path: key_path.clone(),
            reason,
        };
        let der =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| bad_key(e.to_string()))?;
        let signing_key = match &der {
            rustls::pki_types::PrivateKeyDer::Pkcs8(k) => {
                ring::rsa::KeyPair::from_pkcs8(k.secret_pkcs8_der())
                    .map_err(|e| bad_key(format!("not an RSA key: {e}")))?
            }
            _ => return Err(bad_key("not a PKCS#8 key".into())),
        };
        let signing_cert = read_cert(&dir.entra_signing_cert())?;
        let mut app_certs = Vec::new();
        for app in &config.applications {
            let certs = app
                .certificates
                .iter()
                .map(|name| read_cert(&dir.dir.join(name)))
                .collect::<Result<Vec<_>, _>>()?;
            app_certs.push(certs);
        }
        Ok(Authority {
            config,
            app_certs,
            signing_key,
            signing_cert,
        })
    }

    /// The signing certificate (DER): what verifies the emulator's tokens.
    pub fn signing_cert(&self) -> &[u8] {
        &self.signing_cert
    }

    /// The `kid`/`x5t` of the signing certificate.
    pub fn key_id(&self) -> String {
        use sha1::Digest;
        seedship_shared::entra::jwt::b64url(&sha1::Sha1::digest(&self.signing_cert))
    }

    /// Signs `claims` as an RS256 JWT with the signing key.
    pub(crate) fn sign(&self, claims: &serde_json::Value) -> Result<String, String> {
        let kid = self.key_id();
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5t": kid, "kid": kid});
        seedship_shared::entra::jwt::sign_rs256(&self.signing_key, &header, claims)
    }

    /// The application with this client id.
    pub(crate) fn application(&self, client_id: &str) -> Option<(usize, &AppRegistration)> {
        self.config
            .applications
            .iter()
            .enumerate()
            .find(|(_, a)| a.client_id.eq_ignore_ascii_case(client_id))
    }

    /// The roles of the principal with this application (client) id: an application or the managed identity.
    pub fn roles_of(&self, client_id: &str) -> Option<&[String]> {
        if let Some((_, app)) = self.application(client_id) {
            return Some(&app.roles);
        }
        let mi = &self.config.managed_identity;
        mi.client_id
            .eq_ignore_ascii_case(client_id)
            .then_some(mi.roles.as_slice())
    }
}

pub use token::route;
