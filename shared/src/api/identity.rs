//! The management certificate as a TLS client identity: the publish-settings file carries it as Base64 of a
//! PKCS#12 with an empty password (reference section 5); reqwest with rustls wants PEM (a PKCS#8 key followed
//! by the certificate chain). This module converts one into the other in pure Rust and computes the SHA-1
//! thumbprint the service uses to name a management certificate.

use base64::Engine;
use sha1::{Digest, Sha1};

/// Why a management certificate could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "the management certificate of subscription {subscription} is not a PKCS#12 file with an empty password \
         ({reason}); download the publish-settings file again"
    )]
    Pkcs12 { subscription: String, reason: String },
    #[error(
        "the management certificate of subscription {subscription} holds no private key with a certificate; \
         download the publish-settings file again"
    )]
    NoKey { subscription: String },
}

/// A client identity for mutual TLS. `Debug` never shows the key; the key is wiped from memory on drop.
#[derive(Clone)]
pub struct ManagementIdentity {
    pem: zeroize::Zeroizing<Vec<u8>>,
    thumbprint: String,
}

impl std::fmt::Debug for ManagementIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementIdentity")
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl ManagementIdentity {
    /// Reads a PKCS#12 (empty password) holding one private key and its certificate chain.
    pub fn from_pkcs12(subscription: &str, pkcs12: &[u8]) -> Result<Self, IdentityError> {
        let store = p12_keystore::KeyStore::from_pkcs12(pkcs12, "").map_err(|e| IdentityError::Pkcs12 {
            subscription: subscription.to_string(),
            reason: e.to_string(),
        })?;
        let (_, chain) = store
            .private_key_chain()
            .filter(|(_, c)| !c.chain().is_empty())
            .ok_or_else(|| IdentityError::NoKey {
                subscription: subscription.to_string(),
            })?;
        let mut pem = zeroize::Zeroizing::new(pem_block("PRIVATE KEY", chain.key()));
        for cert in chain.chain() {
            pem.push_str(&pem_block("CERTIFICATE", cert.as_der()));
        }
        let thumbprint = thumbprint(chain.chain()[0].as_der());
        Ok(ManagementIdentity {
            pem: zeroize::Zeroizing::new(pem.as_bytes().to_vec()),
            thumbprint,
        })
    }

    /// The PEM text: the PKCS#8 key, then the leaf certificate, then the rest of the chain.
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }

    /// The SHA-1 thumbprint of the leaf certificate, uppercase hex (how Azure names management certificates).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }
}

/// SHA-1 over a certificate's DER bytes, uppercase hex.
pub fn thumbprint(cert_der: &[u8]) -> String {
    hex::encode_upper(Sha1::digest(cert_der))
}

/// One PEM block with 64-column Base64 lines.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
