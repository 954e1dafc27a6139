//! One HTTP request as the handlers see it, and the check of its client certificate: below the classic
//! handlers and the operator endpoints, which both authenticate.

use crate::config::EmulatorConfig;
use crate::validation::Rejection;
use hyper::{HeaderMap, Method};

/// One HTTP request, as far as the handlers care.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// SHA-1 thumbprint (uppercase hex) of the client certificate, if the client sent one.
    pub thumbprint: Option<String>,
}

/// 403 unless the client certificate is a registered management certificate of the subscription.
pub(crate) fn authenticate(
    config: &EmulatorConfig,
    sub: &str,
    thumbprint: Option<&str>,
) -> Result<(), Rejection> {
    let forbidden = |why: &str| {
        Rejection::new(
            403,
            "ForbiddenError",
            format!("The server failed to authenticate the request: {why}. Verify that the certificate is valid and is associated with this subscription."),
        )
    };
    let Some(thumb) = thumbprint else {
        return Err(forbidden("no client certificate was presented"));
    };
    match config.subscription(sub) {
        Some(s)
            if s.management_certificates
                .iter()
                .any(|t| t.eq_ignore_ascii_case(thumb)) =>
        {
            Ok(())
        }
        _ => Err(forbidden(&format!(
            "certificate {thumb} is not a management certificate of subscription {sub}"
        ))),
    }
}
