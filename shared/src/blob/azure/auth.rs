//! Request authorisation for the Blob service: Shared Key signatures, SAS tokens and Entra ID bearer tokens.
//!
//! Shared Key (versions 2015-02-21 and later): the string to sign is the verb, eleven standard headers
//! (Content-Length empty when 0), the canonicalised `x-ms-*` headers and the canonicalised resource
//! (`/<account><encoded path>` then one `\nname:value` line per query parameter, names lower-cased and sorted,
//! values decoded and comma-joined), signed with HMAC-SHA256 under the Base64-decoded account key. A SAS is
//! a query string appended to every URL. A bearer token (scope `https://storage.azure.com/.default`, role
//! Storage Blob Data Contributor) comes from a [`TokenSource`], which caches it until shortly before it
//! expires; the service takes bearer tokens over HTTPS only. Neither the key, the SAS signature nor a token
//! ever appears in a message.

use crate::entra::TokenSource;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::sync::Arc;
use url::Url;

/// How requests are authorised.
#[derive(Clone)]
pub enum Credential {
    /// The storage account key, Base64 as the portal shows it.
    SharedKey(String),
    /// A shared access signature: the query string, with or without the leading `?`.
    Sas(String),
    /// Microsoft Entra ID bearer tokens for the storage scope from this source (certificate, secret, managed
    /// identity or a handed-over token): no account key on disk.
    Bearer(Arc<dyn TokenSource>),
}

/// The key or SAS text is wiped from memory when the credential is dropped.
impl Drop for Credential {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        match self {
            Credential::SharedKey(s) | Credential::Sas(s) => s.zeroize(),
            Credential::Bearer(_) => {}
        }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::SharedKey(_) => f.write_str("SharedKey(<redacted>)"),
            Credential::Sas(_) => f.write_str("Sas(<redacted>)"),
            Credential::Bearer(source) => f.debug_tuple("Bearer").field(source).finish(),
        }
    }
}

/// A credential ready for use: the decoded key or the parsed SAS parameters.
#[derive(Clone)]
pub(crate) enum Signer {
    SharedKey {
        account: String,
        key: zeroize::Zeroizing<Vec<u8>>,
    },
    Sas(Vec<(String, String)>),
    Bearer(Arc<dyn TokenSource>),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signer::SharedKey { account, .. } => write!(f, "SharedKey({account}, <redacted>)"),
            Signer::Sas(_) => f.write_str("Sas(<redacted>)"),
            Signer::Bearer(source) => f.debug_tuple("Bearer").field(source).finish(),
        }
    }
}

/// The standard headers of the string to sign, in order (Date is always empty: x-ms-date is sent).
const STANDARD: [&str; 11] = [
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
];

impl Signer {
    /// Decodes the credential; the error message never contains the secret.
    pub(crate) fn new(account: &str, credential: &Credential) -> Result<Signer, String> {
        match credential {
            Credential::SharedKey(key) => {
                let key = base64::engine::general_purpose::STANDARD
                    .decode(key.trim())
                    .map(zeroize::Zeroizing::new)
                    .map_err(|_| {
                        "the account key is not valid Base64 (copy it again from the portal)".to_owned()
                    })?;
                if key.is_empty() {
                    return Err("the account key is empty".to_owned());
                }
                Ok(Signer::SharedKey {
                    account: account.to_owned(),
                    key,
                })
            }
            Credential::Sas(token) => {
                let token = token.trim().trim_start_matches('?');
                let pairs: Vec<(String, String)> = url::form_urlencoded::parse(token.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                if !pairs.iter().any(|(k, _)| k == "sig") {
                    return Err("the SAS token has no `sig` parameter".to_owned());
                }
                Ok(Signer::Sas(pairs))
            }
            Credential::Bearer(source) => Ok(Signer::Bearer(source.clone())),
        }
    }

    /// Adds the SAS parameters to a URL (nothing for Shared Key).
    pub(crate) fn prepare_url(&self, url: &mut Url) {
        if let Signer::Sas(pairs) = self {
            let mut q = url.query_pairs_mut();
            for (k, v) in pairs {
                q.append_pair(k, v);
            }
        }
    }

    /// The token source of a bearer credential.
    pub(crate) fn bearer(&self) -> Option<&Arc<dyn TokenSource>> {
        match self {
            Signer::Bearer(source) => Some(source),
            _ => None,
        }
    }

    /// The Shared Key `Authorization` header value for a request (`None` for SAS and bearer tokens, see
    /// [`Signer::bearer`]). `headers` hold lower-case names.
    pub(crate) fn authorization(
        &self,
        method: &str,
        url: &Url,
        headers: &[(String, String)],
    ) -> Option<String> {
        let Signer::SharedKey { account, key } = self else {
            return None;
        };
        let sts = string_to_sign(account, method, url, headers);
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
        mac.update(sts.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        Some(format!("SharedKey {account}:{sig}"))
    }
}

/// The Shared Key string to sign.
pub(crate) fn string_to_sign(account: &str, method: &str, url: &Url, headers: &[(String, String)]) -> String {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let mut s = String::with_capacity(256);
    s.push_str(method);
    s.push('\n');
    for name in STANDARD {
        let v = get(name);
        if name == "content-length" && v == "0" {
            // empty when 0
        } else {
            s.push_str(v);
        }
        s.push('\n');
    }
    let mut ms: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(n, _)| n.starts_with("x-ms-"))
        .map(|(n, v)| (n.as_str(), v.trim()))
        .collect();
    ms.sort();
    for (n, v) in ms {
        s.push_str(n);
        s.push(':');
        s.push_str(v);
        s.push('\n');
    }
    s.push('/');
    s.push_str(account);
    s.push_str(url.path());
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in url.query_pairs() {
        params.entry(k.to_lowercase()).or_default().push(v.into_owned());
    }
    for (k, mut vs) in params {
        vs.sort();
        s.push('\n');
        s.push_str(&k);
        s.push(':');
        s.push_str(&vs.join(","));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_to_sign_layout() {
        let url = Url::parse("http://127.0.0.1:10000/devstoreaccount1/c/a%20b?comp=page&B=2&b=1").unwrap();
        let headers = vec![
            ("content-length".to_owned(), "512".to_owned()),
            ("x-ms-version".to_owned(), "2024-11-04".to_owned()),
            ("x-ms-date".to_owned(), "Sun, 22 Nov 2026 04:00:00 GMT".to_owned()),
            ("x-ms-range".to_owned(), "bytes=0-511".to_owned()),
        ];
        let sts = string_to_sign("devstoreaccount1", "PUT", &url, &headers);
        let want = "PUT\n\n\n512\n\n\n\n\n\n\n\n\n\
                    x-ms-date:Sun, 22 Nov 2026 04:00:00 GMT\nx-ms-range:bytes=0-511\nx-ms-version:2024-11-04\n\
                    /devstoreaccount1/devstoreaccount1/c/a%20b\nb:1,2\ncomp:page";
        assert_eq!(sts, want);
        let zero = vec![("content-length".to_owned(), "0".to_owned())];
        assert!(string_to_sign("a", "PUT", &url, &zero).starts_with("PUT\n\n\n\n"));
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let c = Credential::SharedKey("c2VjcmV0".into());
        assert!(!format!("{c:?}").contains("c2VjcmV0"));
        let s = Signer::new("acct", &c).unwrap();
        assert!(!format!("{s:?}").contains("c2VjcmV0"));
        let e = Signer::new("acct", &Credential::SharedKey("not base64!!".into())).unwrap_err();
        assert!(!e.contains("not base64!!"), "{e}");
        let sas = Signer::new("acct", &Credential::Sas("?sv=1&sig=abc%2B".into())).unwrap();
        let mut u = Url::parse("http://h/acct/c").unwrap();
        sas.prepare_url(&mut u);
        assert_eq!(u.query_pairs().find(|(k, _)| k == "sig").unwrap().1, "abc+");
        assert!(Signer::new("acct", &Credential::Sas("sv=1".into())).is_err());
    }
}
