//! Checking bearer tokens on the emulator's own endpoints (the Resource Manager API): signature by the
//! emulator's signing key, issuer, audience, lifetime, then role assignments. Errors carry Resource
//! Manager's status and code so callers answer `{"error": {"code", "message"}}`.

use super::{issuer, Authority};
use rustls::pki_types::CertificateDer;
use seedship_shared::entra::jwt::{self, numeric_claim, string_claim};

/// The claims of an accepted token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The application (client) id.
    pub app_id: String,
    /// The service principal's object id.
    pub object_id: String,
    pub tenant: String,
    pub audience: String,
    pub expires: i64,
}

/// Why a request's token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "Authentication failed. The 'Authorization' header is missing; send 'Authorization: Bearer <token>'."
    )]
    Missing,
    #[error("Authentication failed. The 'Authorization' header is not a bearer token: {0}.")]
    Malformed(String),
    #[error(
        "The access token has an invalid signature: it was not issued by this emulator's token endpoint."
    )]
    BadSignature,
    #[error("The access token is from the wrong issuer '{0}'. It must match the tenant's issuer '{1}'.")]
    WrongIssuer(String, String),
    #[error("The access token has been obtained for wrong audience or resource '{got}'. It should exactly match with one of the allowed audiences '{want}'.")]
    WrongAudience { got: String, want: String },
    #[error(
        "The access token expiry UTC time '{0}' is earlier than current UTC time '{1}'; get a new token."
    )]
    Expired(String, String),
    #[error("The access token is not valid before '{0}' (current time '{1}').")]
    NotYetValid(String, String),
    #[error("The client '{app_id}' with object id '{object_id}' does not have authorization to perform this action: it needs one of the roles {needed} (it has {has}). Assign the role to the application and try again.")]
    MissingRole {
        app_id: String,
        object_id: String,
        needed: String,
        has: String,
    },
}

impl AuthError {
    /// The HTTP status: 401 for token problems, 403 for a missing role.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::MissingRole { .. } => 403,
            _ => 401,
        }
    }

    /// Resource Manager's error code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "AuthenticationFailed",
            AuthError::WrongAudience { .. } => "InvalidAuthenticationTokenAudience",
            AuthError::Expired(..) => "ExpiredAuthenticationToken",
            AuthError::MissingRole { .. } => "AuthorizationFailed",
            _ => "InvalidAuthenticationToken",
        }
    }

    /// The body `{"error": {"code", "message"}}`.
    pub fn arm_body(&self) -> Vec<u8> {
        serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}})
            .to_string()
            .into_bytes()
    }
}

fn when(secs: i64) -> String {
    seedship_shared::time::UtcTime::from_unix(secs).readable()
}

/// Checks the `Authorization` header value `header` for `audience` (trailing `/` ignored) at `now` (Unix
/// seconds of the emulator clock).
pub fn validate_bearer(
    auth: &Authority,
    header: Option<&str>,
    audience: &str,
    now: i64,
) -> Result<Claims, AuthError> {
    let header = header.ok_or(AuthError::Missing)?.trim();
    let token = match header.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => t.trim(),
        _ => return Err(AuthError::Malformed("expected 'Bearer <token>'".into())),
    };
    let parts = jwt::decode(token).map_err(AuthError::Malformed)?;
    if string_claim(&parts.header, "alg") != Some("RS256") {
        return Err(AuthError::BadSignature);
    }
    let der = CertificateDer::from(auth.signing_cert());
    let ee = webpki::EndEntityCert::try_from(&der).map_err(|_| AuthError::BadSignature)?;
    ee.verify_signature(
        webpki::ring::RSA_PKCS1_2048_8192_SHA256,
        parts.signing_input.as_bytes(),
        &parts.signature,
    )
    .map_err(|_| AuthError::BadSignature)?;
    let c = &parts.claims;
    let want_iss = issuer(&auth.config.tenant);
    let iss = string_claim(c, "iss").unwrap_or("");
    if iss != want_iss {
        return Err(AuthError::WrongIssuer(iss.into(), want_iss));
    }
    let aud = string_claim(c, "aud").unwrap_or("");
    if !aud
        .trim_end_matches('/')
        .eq_ignore_ascii_case(audience.trim_end_matches('/'))
    {
        return Err(AuthError::WrongAudience {
            got: aud.into(),
            want: audience.into(),
        });
    }
    let exp = numeric_claim(c, "exp").unwrap_or(0);
    if exp <= now {
        return Err(AuthError::Expired(when(exp), when(now)));
    }
    let nbf = numeric_claim(c, "nbf").unwrap_or(0);
    if nbf > now + 300 {
        return Err(AuthError::NotYetValid(when(nbf), when(now)));
    }
    Ok(Claims {
        app_id: string_claim(c, "appid").unwrap_or("").to_owned(),
        object_id: string_claim(c, "oid").unwrap_or("").to_owned(),
        tenant: string_claim(c, "tid").unwrap_or("").to_owned(),
        audience: aud.to_owned(),
        expires: exp,
    })
}

/// Checks that the principal of `claims` holds one of `roles` (role assignments are looked up in the
/// registration now, as Resource Manager does, not taken from the token).
pub fn authorize(auth: &Authority, claims: &Claims, roles: &[&str]) -> Result<(), AuthError> {
    let has = auth.roles_of(&claims.app_id).unwrap_or(&[]);
    if has
        .iter()
        .any(|r| roles.iter().any(|w| r.eq_ignore_ascii_case(w)))
    {
        return Ok(());
    }
    Err(AuthError::MissingRole {
        app_id: claims.app_id.clone(),
        object_id: claims.object_id.clone(),
        needed: roles.join(" or "),
        has: if has.is_empty() {
            "none".into()
        } else {
            has.join(", ")
        },
    })
}
