//! The credentials: an application with a certificate or a secret (client-credentials grant), a managed
//! identity (instance metadata endpoint) and a token handed over from the Azure CLI.

use super::cache::TokenCache;
use super::certificate::ClientCertificate;
use super::http::{strip_query, token_answer, TokenHttp};
use super::jwt::{self, from_unix_seconds, numeric_claim, string_claim};
use super::{scope_resource, AccessToken, EntraError, TokenSource};
use std::io::Read as _;
use std::path::Path;
use std::time::{Duration, SystemTime};
use url::Url;
use zeroize::Zeroizing;

/// How long one token request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What proves the application's identity.
pub enum ClientSecret {
    /// A certificate registered for the application; its key signs the client assertion.
    Certificate(Box<ClientCertificate>),
    /// A client secret (the value, not its id).
    Secret(Zeroizing<String>),
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientSecret::Certificate(c) => f.debug_tuple("Certificate").field(c).finish(),
            ClientSecret::Secret(_) => f.write_str("Secret(<redacted>)"),
        }
    }
}

/// The OAuth 2.0 client-credentials grant of an application registration.
#[derive(Debug)]
pub struct ClientCredential {
    token_endpoint: String,
    client_id: String,
    secret: ClientSecret,
    http: TokenHttp,
    cache: TokenCache,
}

/// Checks a tenant (a GUID or a domain name such as `contoso.onmicrosoft.com`) for use in a URL path.
fn check_tenant(tenant: &str) -> Result<(), EntraError> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 256
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(EntraError::Config {
            what: "tenant",
            message: format!("{tenant:?} is not a tenant id (a GUID) or domain name; give --tenant"),
        })
    }
}

/// The token endpoint `{authority}/{tenant}/oauth2/v2.0/token`.
pub fn token_endpoint(authority: &str, tenant: &str) -> Result<String, EntraError> {
    check_tenant(tenant)?;
    let url = Url::parse(authority.trim_end_matches('/')).map_err(|e| EntraError::Config {
        what: "authority",
        message: format!("{authority:?} is not a URL ({e}); give e.g. https://login.microsoftonline.com"),
    })?;
    if url.scheme() != "https" || url.query().is_some() || url.cannot_be_a_base() {
        return Err(EntraError::Config {
            what: "authority",
            message: format!(
                "{authority:?} must be an https URL without a query, e.g. https://login.microsoftonline.com"
            ),
        });
    }
    Ok(format!(
        "{}/{tenant}/oauth2/v2.0/token",
        url.as_str().trim_end_matches('/')
    ))
}

fn check_client_id(client_id: &str) -> Result<(), EntraError> {
    if client_id.trim().is_empty() || client_id.contains(char::is_whitespace) {
        return Err(EntraError::Config {
            what: "client id",
            message: format!("{client_id:?} is not an application (client) id; give --client-id"),
        });
    }
    Ok(())
}

impl ClientCredential {
    /// An application of `tenant` at `authority` (e.g. `https://login.microsoftonline.com`), trusting
    /// the extra CA certificates in `ca_pem` for the authority's TLS certificate.
    pub fn new(
        authority: &str,
        tenant: &str,
        client_id: &str,
        secret: ClientSecret,
        ca_pem: Option<&[u8]>,
    ) -> Result<ClientCredential, EntraError> {
        check_client_id(client_id)?;
        if let ClientSecret::Secret(s) = &secret {
            if s.trim().is_empty() {
                return Err(EntraError::Config {
                    what: "client secret",
                    message: "it is empty; put the secret's value (not its id) in the file".into(),
                });
            }
        }
        Ok(ClientCredential {
            token_endpoint: token_endpoint(authority, tenant)?,
            client_id: client_id.to_owned(),
            secret,
            http: TokenHttp::new(ca_pem, REQUEST_TIMEOUT)?,
            cache: TokenCache::default(),
        })
    }

    /// The token endpoint this credential signs in at.
    pub fn token_endpoint(&self) -> &str {
        &self.token_endpoint
    }

    fn request(&self, scope: &str, now: SystemTime) -> Result<AccessToken, EntraError> {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.client_id)
            .append_pair("scope", scope);
        match &self.secret {
            ClientSecret::Secret(s) => {
                form.append_pair("client_secret", s.trim());
            }
            ClientSecret::Certificate(c) => {
                let assertion = Zeroizing::new(c.assertion(&self.client_id, &self.token_endpoint, now)?);
                form.append_pair(
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                )
                .append_pair("client_assertion", &assertion);
            }
        }
        let form = Zeroizing::new(form.finish());
        let answer = self.http.post_form(&self.token_endpoint, form)?;
        token_answer(&answer, &self.token_endpoint, &self.client_id, now)
    }
}

impl TokenSource for ClientCredential {
    fn token(&self, scope: &str) -> Result<AccessToken, EntraError> {
        self.cache.get_or_fetch(scope, |now| self.request(scope, now))
    }
}

/// A managed identity: tokens from the instance metadata endpoint of the Azure VM the agent runs on.
#[derive(Debug)]
pub struct ManagedIdentity {
    endpoint: String,
    /// A user-assigned identity's client id; `None` for the system-assigned identity.
    client_id: Option<String>,
    http: TokenHttp,
    cache: TokenCache,
}

impl ManagedIdentity {
    /// The identity behind `base` (normally [`super::IMDS_BASE`]; the emulator's URL in tests).
    pub fn new(
        base: &str,
        client_id: Option<&str>,
        ca_pem: Option<&[u8]>,
    ) -> Result<ManagedIdentity, EntraError> {
        let url = Url::parse(base.trim_end_matches('/')).map_err(|e| EntraError::Config {
            what: "managed identity endpoint",
            message: format!("{base:?} is not a URL: {e}"),
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
            return Err(EntraError::Config {
                what: "managed identity endpoint",
                message: format!("{base:?} must be an http(s) URL without a query"),
            });
        }
        if let Some(id) = client_id {
            check_client_id(id)?;
        }
        Ok(ManagedIdentity {
            endpoint: format!(
                "{}/metadata/identity/oauth2/token",
                url.as_str().trim_end_matches('/')
            ),
            client_id: client_id.map(str::to_owned),
            http: TokenHttp::new(ca_pem, REQUEST_TIMEOUT)?,
            cache: TokenCache::default(),
        })
    }

    fn request(&self, scope: &str, now: SystemTime) -> Result<AccessToken, EntraError> {
        let mut url = Url::parse(&self.endpoint).expect("checked in new");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("api-version", "2018-02-01")
                .append_pair("resource", scope_resource(scope));
            if let Some(id) = &self.client_id {
                q.append_pair("client_id", id);
            }
        }
        let answer = self.http.get(url.as_str(), &[("metadata", "true")])?;
        let who = self.client_id.as_deref().unwrap_or("(system-assigned identity)");
        token_answer(&answer, &strip_query(url.as_str()), who, now)
    }
}

impl TokenSource for ManagedIdentity {
    fn token(&self, scope: &str) -> Result<AccessToken, EntraError> {
        self.cache.get_or_fetch(scope, |now| self.request(scope, now))
    }
}

/// An access token handed over from `az account get-access-token --resource R` (its JSON output, from a
/// file or stdin). It is used as it is for the resource it was issued for and never renewed.
pub struct HandedToken {
    source_name: String,
    token: AccessToken,
    /// The `aud` claim, when the token is a readable JWT.
    audience: Option<String>,
}

impl std::fmt::Debug for HandedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandedToken")
            .field("source", &self.source_name)
            .field("audience", &self.audience)
            .field("expires_at", &self.token.expires_at)
            .finish()
    }
}

impl HandedToken {
    /// Reads the JSON from `path`, or from stdin when `path` is `-`.
    pub fn load(path: &Path) -> Result<HandedToken, EntraError> {
        let (name, text) = if path == Path::new("-") {
            let mut s = Zeroizing::new(String::new());
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| EntraError::File {
                    what: "access token",
                    path: "stdin".into(),
                    message: e.to_string(),
                })?;
            ("stdin".to_owned(), Zeroizing::new(s.as_bytes().to_vec()))
        } else {
            let text = super::certificate::read_private_file("access token file", path)?;
            (path.display().to_string(), text)
        };
        HandedToken::parse(&name, &text)
    }

    /// Parses `az account get-access-token` output: `accessToken` and `expires_on` (Unix seconds; older
    /// versions of the CLI print only `expiresOn` in local time, so the token's own `exp` claim is used then).
    pub fn parse(source_name: &str, json: &[u8]) -> Result<HandedToken, EntraError> {
        let bad = |m: &str| EntraError::File {
            what: "access token",
            path: source_name.to_owned(),
            message: format!("{m}; hand over the JSON that `az account get-access-token` prints"),
        };
        let v: serde_json::Value = serde_json::from_slice(json).map_err(|_| bad("is not JSON"))?;
        let token = string_claim(&v, "accessToken")
            .or_else(|| string_claim(&v, "access_token"))
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad("has no accessToken"))?;
        let claims = jwt::decode(token).ok().map(|p| p.claims);
        let expires = numeric_claim(&v, "expires_on")
            .or_else(|| claims.as_ref().and_then(|c| numeric_claim(c, "exp")))
            .ok_or_else(|| bad("has no expires_on and the token carries no exp claim"))?;
        let audience = claims
            .as_ref()
            .and_then(|c| string_claim(c, "aud"))
            .map(str::to_owned);
        Ok(HandedToken {
            source_name: source_name.to_owned(),
            token: AccessToken {
                token: Zeroizing::new(token.to_owned()),
                expires_at: from_unix_seconds(expires),
            },
            audience,
        })
    }
}

/// Whether a token issued for `audience` serves `resource` (trailing slashes do not matter).
fn same_resource(audience: &str, resource: &str) -> bool {
    audience
        .trim_end_matches('/')
        .eq_ignore_ascii_case(resource.trim_end_matches('/'))
}

impl TokenSource for HandedToken {
    fn token(&self, scope: &str) -> Result<AccessToken, EntraError> {
        let resource = scope_resource(scope);
        let refuse = |problem: String| EntraError::HandedToken {
            source_name: self.source_name.clone(),
            problem,
            resource: resource.to_owned(),
        };
        if let Some(aud) = &self.audience {
            if !same_resource(aud, resource) {
                return Err(refuse(format!("was issued for {aud}, not for {resource}")));
            }
        }
        if self
            .token
            .expires_within(Duration::from_secs(60), SystemTime::now())
        {
            return Err(refuse(format!(
                "expired at {}",
                crate::time::UtcTime::from_unix(jwt::unix_seconds(self.token.expires_at)).readable()
            )));
        }
        Ok(self.token.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt::b64url;

    fn fake_jwt(claims: &str) -> String {
        format!(
            "{}.{}.c2ln",
            b64url(br#"{"alg":"RS256"}"#),
            b64url(claims.as_bytes())
        )
    }

    #[test]
    fn token_endpoint_checks_authority_and_tenant() {
        assert_eq!(
            token_endpoint("https://login.microsoftonline.com/", "contoso.onmicrosoft.com").unwrap(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert!(token_endpoint("http://login.example", "t")
            .unwrap_err()
            .to_string()
            .contains("https"));
        assert!(token_endpoint("https://login.example", "a/b")
            .unwrap_err()
            .to_string()
            .contains("--tenant"));
        assert!(token_endpoint("https://login.example", "").is_err());
    }

    #[test]
    fn handed_token_checks_resource_and_expiry() {
        let exp = jwt::unix_seconds(SystemTime::now()) + 3000;
        let t = fake_jwt(&format!(
            r#"{{"aud":"https://management.azure.com/","exp":{exp}}}"#
        ));
        let json = format!(
            r#"{{"accessToken":"{t}","expiresOn":"2030-01-01 00:00:00.000000","tokenType":"Bearer"}}"#
        );
        let h = HandedToken::parse("t.json", json.as_bytes()).unwrap();
        assert_eq!(
            h.token("https://management.azure.com/.default")
                .unwrap()
                .token
                .as_str(),
            t
        );
        let e = h.token(super::super::STORAGE_SCOPE).unwrap_err().to_string();
        assert!(
            e.contains("issued for https://management.azure.com/")
                && e.contains("--resource https://storage.azure.com/"),
            "{e}"
        );
        assert!(!format!("{h:?}").contains(&t));
        let old = format!(r#"{{"accessToken":"{t}","expires_on":1000}}"#);
        let e = HandedToken::parse("old.json", old.as_bytes())
            .unwrap()
            .token("https://management.azure.com/.default")
            .unwrap_err();
        assert!(e.to_string().contains("expired at 1970"), "{e}");
        assert!(HandedToken::parse("x", b"{}")
            .unwrap_err()
            .to_string()
            .contains("accessToken"));
        assert!(HandedToken::parse("x", br#"{"accessToken":"opaque"}"#)
            .unwrap_err()
            .to_string()
            .contains("expires_on"));
    }

    #[test]
    fn empty_secret_and_client_id_are_refused() {
        let e = ClientCredential::new(
            "https://h",
            "t",
            "c",
            ClientSecret::Secret(Zeroizing::new(" \n".into())),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("client secret"), "{e}");
        let e = ClientCredential::new(
            "https://h",
            "t",
            "",
            ClientSecret::Secret(Zeroizing::new("s".into())),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("--client-id"), "{e}");
        assert!(format!("{:?}", ClientSecret::Secret(Zeroizing::new("hush".into()))).contains("redacted"));
    }
}
