//! The token endpoint, the managed-identity endpoint and the keys document.
//!
//! Refusals follow Entra ID's shape: `{"error": "...", "error_description": "AADSTS...: ...", "error_codes":
//! [...]}` with 400 or 401, and name the thing that is wrong (the client id, the certificate thumbprint, the
//! assertion's time range or audience, the scope).

use super::{issuer, Authority, TOKEN_LIFETIME};
use crate::handlers::Request;
use crate::odata::Reply;
use hyper::Method;
use rustls::pki_types::CertificateDer;
use seedship_shared::entra::jwt::{self, b64url, numeric_claim, string_claim};
use sha2::Digest as _;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Clock skew tolerated on assertion times.
const SKEW: i64 = 300;

fn json_reply(status: u16, body: serde_json::Value) -> Reply {
    Reply {
        status,
        headers: vec![
            ("Content-Type", "application/json; charset=utf-8".into()),
            ("Cache-Control", "no-store, no-cache".into()),
            ("Server", crate::odata::SERVER.into()),
        ],
        body: body.to_string().into_bytes(),
    }
}

/// An Entra-style error answer.
fn refuse(status: u16, error: &str, aadsts: u32, description: String) -> Reply {
    json_reply(
        status,
        serde_json::json!({
            "error": error,
            "error_description": format!("AADSTS{aadsts}: {description}"),
            "error_codes": [aadsts],
        }),
    )
}

/// Answers the sign-in endpoints, or `None` when `req` is for another endpoint. `public_url` is the
/// emulator's own `https://host:port` (the audience client assertions must name).
pub fn route(authority: Option<&Authority>, public_url: &str, req: &Request, now: i64) -> Option<Reply> {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let kind = match segs.as_slice() {
        [_, "oauth2", "v2.0", "token"] => 0,
        [_, "discovery", "v2.0", "keys"] => 1,
        ["metadata", "identity", "oauth2", "token"] => 2,
        [_, "v2.0", ".well-known", "openid-configuration"] => 3,
        _ => return None,
    };
    let Some(auth) = authority else {
        return Some(refuse(
            400,
            "invalid_request",
            90002,
            "This emulator has no Entra ID registration; run `seedship-emulator init` again to create one."
                .into(),
        ));
    };
    Some(match (kind, &req.method) {
        (0, &Method::POST) => token(auth, public_url, segs[0], req, now),
        (1, &Method::GET) => keys(auth),
        (2, &Method::GET) => managed_identity(auth, req, now),
        (3, &Method::GET) => openid_configuration(auth, public_url, segs[0]),
        _ => refuse(
            405,
            "invalid_request",
            900561,
            format!(
                "The endpoint only accepts {} requests.",
                if kind == 0 { "POST" } else { "GET" }
            ),
        ),
    })
}

/// The tenant's OpenID Connect metadata, which MSAL-based clients (the Azure SDKs) read first.
fn openid_configuration(auth: &Authority, public_url: &str, tenant: &str) -> Reply {
    if !tenant.eq_ignore_ascii_case(&auth.config.tenant) && tenant != "organizations" && tenant != "common" {
        return refuse(
            400,
            "invalid_tenant",
            90002,
            format!("Tenant '{tenant}' not found."),
        );
    }
    let base = format!("{}/{}", public_url.trim_end_matches('/'), auth.config.tenant);
    json_reply(
        200,
        serde_json::json!({
            "issuer": format!("{base}/v2.0"),
            "token_endpoint": format!("{base}/oauth2/v2.0/token"),
            "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
            "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
            "jwks_uri": format!("{base}/discovery/v2.0/keys"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "token"],
            "subject_types_supported": ["pairwise"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "tenant_region_scope": "WW",
        }),
    )
}

fn keys(auth: &Authority) -> Reply {
    use base64::Engine as _;
    let x5c = base64::engine::general_purpose::STANDARD.encode(auth.signing_cert());
    json_reply(
        200,
        serde_json::json!({"keys": [{"kty": "RSA", "use": "sig", "kid": auth.key_id(), "x5t": auth.key_id(), "x5c": [x5c]}]}),
    )
}

/// The resource of a `.default` scope, or a refusal naming the scope.
fn scope_resource(scope: Option<&str>) -> Result<String, Reply> {
    let scope = scope.unwrap_or("");
    let resource = scope.strip_suffix("/.default").unwrap_or("");
    if resource.starts_with("https://") && !resource.contains(' ') {
        Ok(resource.to_owned())
    } else {
        Err(refuse(
            400,
            "invalid_scope",
            1002012,
            format!(
                "The provided value for scope {scope:?} is not valid. Client credential flows must have a scope \
                 value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ))
    }
}

fn issue(
    auth: &Authority,
    resource: &str,
    client_id: &str,
    object_id: &str,
    roles: &[String],
    now: i64,
) -> Reply {
    let tenant = &auth.config.tenant;
    let claims = serde_json::json!({
        "aud": resource,
        "iss": issuer(tenant),
        "iat": now,
        "nbf": now,
        "exp": now + TOKEN_LIFETIME,
        "appid": client_id,
        "azp": client_id,
        "appidacr": "2",
        "idtyp": "app",
        "oid": object_id,
        "sub": object_id,
        "tid": tenant,
        "roles": roles,
        "ver": "1.0",
    });
    match auth.sign(&claims) {
        Ok(token) => json_reply(
            200,
            serde_json::json!({
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME,
                "ext_expires_in": TOKEN_LIFETIME,
                "access_token": token,
            }),
        ),
        Err(e) => refuse(
            500,
            "server_error",
            50000,
            format!("Signing the token failed: {e}."),
        ),
    }
}

fn token(auth: &Authority, public_url: &str, tenant: &str, req: &Request, now: i64) -> Reply {
    if !tenant.eq_ignore_ascii_case(&auth.config.tenant) {
        return refuse(
            400,
            "invalid_request",
            90002,
            format!("Tenant '{tenant}' not found. Check the tenant id; this emulator's tenant is in entra-app.json."),
        );
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if field("grant_type") != Some("client_credentials") {
        return refuse(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type; only client_credentials is emulated.".into(),
        );
    }
    let Some(client_id) = field("client_id").filter(|c| !c.is_empty()) else {
        return refuse(
            400,
            "invalid_request",
            900144,
            "The request body must contain the parameter 'client_id'.".into(),
        );
    };
    let resource = match scope_resource(field("scope")) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    let Some((index, app)) = auth.application(client_id) else {
        return refuse(
            400,
            "unauthorized_client",
            700016,
            format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'."),
        );
    };
    let checked = match (field("client_secret"), field("client_assertion")) {
        (Some(secret), None) => check_secret(app, secret),
        (None, Some(assertion)) => {
            if field("client_assertion_type") != Some(JWT_BEARER) {
                Err(refuse(
                    400,
                    "invalid_request",
                    50027,
                    format!("client_assertion_type must be {JWT_BEARER}."),
                ))
            } else {
                let endpoint = format!("{}/{tenant}/oauth2/v2.0/token", public_url.trim_end_matches('/'));
                check_assertion(&auth.app_certs[index], client_id, &endpoint, assertion, now)
            }
        }
        _ => Err(refuse(
            401,
            "invalid_client",
            7000218,
            "The request body must contain exactly one of 'client_assertion' or 'client_secret'.".into(),
        )),
    };
    match checked {
        Ok(()) => issue(auth, &resource, &app.client_id, &app.object_id, &app.roles, now),
        Err(reply) => reply,
    }
}

fn check_secret(app: &super::AppRegistration, secret: &str) -> Result<(), Reply> {
    let digest = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
    if app.secret_sha256.iter().any(|s| s.eq_ignore_ascii_case(&digest)) {
        Ok(())
    } else {
        Err(refuse(
            401,
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret \
                 value, not the client secret ID, for a secret added to app '{}'.",
                app.client_id
            ),
        ))
    }
}

fn bad_assertion(code: u32, description: String) -> Reply {
    refuse(401, "invalid_client", code, description)
}

/// Checks a client assertion: registered certificate (by `x5t#S256` or `x5t`), signature (RS256 or PS256),
/// `iss` = `sub` = client id, `aud` = the token endpoint, `exp` (and `nbf` or `iat` if present) around `now`.
fn check_assertion(
    certs: &[Vec<u8>],
    client_id: &str,
    endpoint: &str,
    assertion: &str,
    now: i64,
) -> Result<(), Reply> {
    let parts = jwt::decode(assertion)
        .map_err(|m| bad_assertion(50012, format!("The client assertion is not valid: {m}.")))?;
    let h = &parts.header;
    // MSAL pads its thumbprints with '='; JOSE says unpadded: accept both
    let s256 = string_claim(h, "x5t#S256").map(|t| t.trim_end_matches('='));
    let s1 = string_claim(h, "x5t").map(|t| t.trim_end_matches('='));
    let cert = certs
        .iter()
        .find(|der| {
            s256.is_some_and(|t| t == b64url(&sha2::Sha256::digest(der)))
                || s1.is_some_and(|t| {
                    use sha1::Digest as _;
                    t == b64url(&sha1::Sha1::digest(der))
                })
        })
        .ok_or_else(|| {
            bad_assertion(
                700027,
                format!(
                    "The certificate with identifier {} used to sign the client assertion is not registered on \
                     application '{client_id}'. Upload the certificate to the app registration.",
                    s256.or(s1).unwrap_or("(no x5t#S256 or x5t header)")
                ),
            )
        })?;
    let alg: &dyn rustls::pki_types::SignatureVerificationAlgorithm = match string_claim(h, "alg") {
        Some("RS256") => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
        Some("PS256") => webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        other => {
            return Err(bad_assertion(
                5002738,
                format!("The client assertion's algorithm {other:?} is not supported; use RS256 or PS256."),
            ))
        }
    };
    let der = CertificateDer::from(cert.as_slice());
    let ee = webpki::EndEntityCert::try_from(&der)
        .map_err(|e| bad_assertion(700027, format!("The registered certificate cannot be read: {e}.")))?;
    ee.verify_signature(alg, parts.signing_input.as_bytes(), &parts.signature)
        .map_err(|_| {
            bad_assertion(
                700027,
                format!("Client assertion contains an invalid signature for application '{client_id}'."),
            )
        })?;
    let c = &parts.claims;
    if string_claim(c, "iss") != Some(client_id) || string_claim(c, "sub") != Some(client_id) {
        return Err(bad_assertion(
            700021,
            format!("The client assertion's iss and sub must both be the client id '{client_id}'."),
        ));
    }
    let aud = string_claim(c, "aud").unwrap_or("");
    if !same_endpoint(aud, endpoint) {
        return Err(bad_assertion(
            700212,
            format!("The client assertion's audience '{aud}' is not this token endpoint '{endpoint}'."),
        ));
    }
    let Some(exp) = numeric_claim(c, "exp") else {
        return Err(bad_assertion(
            700024,
            "The client assertion has no exp claim.".into(),
        ));
    };
    // nbf is optional (MSAL sends iat and exp only)
    let nbf = numeric_claim(c, "nbf")
        .or_else(|| numeric_claim(c, "iat"))
        .unwrap_or(now);
    if exp < now - SKEW || nbf > now + SKEW {
        return Err(bad_assertion(
            700024,
            format!(
                "Client assertion is not within its valid time range (nbf {nbf}, exp {exp}, current time {now}). \
                 Check the clock of the machine signing it."
            ),
        ));
    }
    if exp - nbf > 24 * 3600 {
        return Err(bad_assertion(
            700024,
            "The client assertion is valid for more than a day.".into(),
        ));
    }
    Ok(())
}

/// The same token endpoint: equal paths and ports, `localhost` and `127.0.0.1` taken as one host.
fn same_endpoint(aud: &str, endpoint: &str) -> bool {
    let norm = |s: &str| {
        s.trim_end_matches('/')
            .to_ascii_lowercase()
            .replace("://localhost:", "://127.0.0.1:")
    };
    norm(aud) == norm(endpoint)
}

fn managed_identity(auth: &Authority, req: &Request, now: i64) -> Reply {
    let has_metadata = req
        .headers
        .get("metadata")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !has_metadata {
        return json_reply(
            400,
            serde_json::json!({"error": "invalid_request", "error_description": "Required metadata header not specified"}),
        );
    }
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(req.query.as_deref().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let Some(resource) = q("resource").filter(|r| r.starts_with("https://")) else {
        return json_reply(
            400,
            serde_json::json!({"error": "invalid_request", "error_description": "Required query variable 'resource' is missing or not an https URI"}),
        );
    };
    let mi = &auth.config.managed_identity;
    if let Some(id) = q("client_id") {
        if !id.eq_ignore_ascii_case(&mi.client_id) {
            return json_reply(
                400,
                serde_json::json!({"error": "invalid_request", "error_description": format!("Identity not found: no managed identity with client id '{id}' is assigned to this VM")}),
            );
        }
    }
    let resource = resource.trim_end_matches('/');
    let issued = issue(auth, resource, &mi.client_id, &mi.object_id, &mi.roles, now);
    if issued.status != 200 {
        return issued;
    }
    let v: serde_json::Value = serde_json::from_slice(&issued.body).unwrap_or_default();
    json_reply(
        200,
        serde_json::json!({
            "access_token": v["access_token"],
            "client_id": mi.client_id,
            "expires_in": TOKEN_LIFETIME.to_string(),
            "expires_on": (now + TOKEN_LIFETIME).to_string(),
            "ext_expires_in": TOKEN_LIFETIME.to_string(),
            "not_before": now.to_string(),
            "resource": resource,
            "token_type": "Bearer",
        }),
    )
}
