//! The HTTP side of sign-in: one reqwest client on a small runtime owned by the credential, so token
//! requests are blocking calls that work from any thread. Answers are read with a size cap; error answers
//! (`{"error": "...", "error_description": "AADSTS..."}`) become [`EntraError::Refused`].

use super::{AccessToken, EntraError};
use crate::net::chain;
use std::future::Future;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};
use zeroize::Zeroizing;

/// Largest answer read from a token endpoint.
const MAX_ANSWER: usize = 256 << 10;

/// A blocking HTTP client for token endpoints.
pub(crate) struct TokenHttp {
    client: reqwest::Client,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for TokenHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHttp")
    }
}

impl Drop for TokenHttp {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// One answer.
pub(crate) struct Answer {
    pub status: u16,
    pub body: Zeroizing<Vec<u8>>,
}

impl TokenHttp {
    /// A client trusting the system roots and the CA certificates in `extra_ca_pem` (e.g. the emulator's).
    pub fn new(extra_ca_pem: Option<&[u8]>, timeout: Duration) -> Result<TokenHttp, EntraError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(Duration::from_secs(10))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = extra_ca_pem {
            builder = crate::net::trust_pem(builder, pem).map_err(|reason| EntraError::Config {
                what: "CA certificate",
                message: format!("not usable PEM: {reason}"),
            })?;
        }
        let client = builder.build().map_err(|e| EntraError::Config {
            what: "HTTP client",
            message: e.to_string(),
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("seedship-entra")
            .enable_all()
            .build()
            .map_err(|e| EntraError::Config {
                what: "runtime",
                message: e.to_string(),
            })?;
        Ok(TokenHttp {
            client,
            runtime: Some(runtime),
        })
    }

    fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = mpsc::sync_channel(1);
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the client")
            .spawn(async move {
                let _ = tx.send(fut.await);
            });
        rx.recv().expect("the runtime runs until the client is dropped")
    }

    /// POSTs a form (`application/x-www-form-urlencoded`) to `url`.
    pub fn post_form(&self, url: &str, form: Zeroizing<String>) -> Result<Answer, EntraError> {
        let req = self
            .client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form.to_string());
        drop(form);
        self.send(url, req)
    }

    /// GETs `url` with extra headers.
    pub fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Answer, EntraError> {
        let mut req = self.client.get(url).header("accept", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(url, req)
    }

    fn send(&self, url: &str, req: reqwest::RequestBuilder) -> Result<Answer, EntraError> {
        let endpoint = strip_query(url);
        let ep = endpoint.clone();
        self.run(async move {
            let transport = |e: reqwest::Error| EntraError::Transport {
                endpoint: ep.clone(),
                message: chain(&e.without_url()),
            };
            let mut resp = req.send().await.map_err(transport)?;
            let status = resp.status().as_u16();
            let too_long = || EntraError::BadResponse {
                endpoint: ep.clone(),
                status,
                message: format!("answer longer than {MAX_ANSWER} bytes; refused without reading it"),
            };
            if resp.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
                return Err(too_long());
            }
            let mut body = Zeroizing::new(Vec::new());
            while let Some(chunk) = resp.chunk().await.map_err(transport)? {
                if body.len() + chunk.len() > MAX_ANSWER {
                    return Err(too_long());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Answer { status, body })
        })
    }
}

/// The URL without its query, for messages.
pub(crate) fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

/// Reads a token answer: `access_token` with `expires_in` (seconds from now, the token endpoint) or
/// `expires_on` (Unix seconds, the metadata endpoint). A non-2xx answer is a refusal with the endpoint's
/// `error` and `error_description`.
pub(crate) fn token_answer(
    answer: &Answer,
    endpoint: &str,
    client: &str,
    now: SystemTime,
) -> Result<AccessToken, EntraError> {
    let json: Option<serde_json::Value> = serde_json::from_slice(&answer.body).ok();
    if !(200..300).contains(&answer.status) {
        let field = |k: &str| {
            json.as_ref()
                .and_then(|j| j.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let code = field("error").unwrap_or_else(|| "no error code".into());
        let description = field("error_description")
            .or_else(|| field("message"))
            .unwrap_or_else(|| excerpt(&answer.body));
        if json.is_none() && answer.status >= 500 {
            return Err(EntraError::BadResponse {
                endpoint: endpoint.to_owned(),
                status: answer.status,
                message: description,
            });
        }
        return Err(EntraError::Refused {
            endpoint: endpoint.to_owned(),
            client: client.to_owned(),
            status: answer.status,
            code,
            description,
        });
    }
    let bad = |m: &str| EntraError::BadResponse {
        endpoint: endpoint.to_owned(),
        status: answer.status,
        message: m.to_owned(),
    };
    let json = json.ok_or_else(|| bad("the answer is not JSON"))?;
    let token = json
        .get("access_token")
        .and_then(|v| v.as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("the answer has no access_token"))?;
    let expires_at = if let Some(secs) = super::jwt::numeric_claim(&json, "expires_in") {
        now + Duration::from_secs(secs.max(0) as u64)
    } else if let Some(on) = super::jwt::numeric_claim(&json, "expires_on") {
        super::jwt::from_unix_seconds(on)
    } else {
        return Err(bad("the answer has neither expires_in nor expires_on"));
    };
    Ok(AccessToken {
        token: Zeroizing::new(token.to_owned()),
        expires_at,
    })
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let t: String = text.chars().take(200).collect();
    if t.trim().is_empty() {
        "empty answer".into()
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: Zeroizing::new(body.as_bytes().to_vec()),
        }
    }

    #[test]
    fn token_answers_and_refusals() {
        let now = SystemTime::now();
        let t = token_answer(
            &answer(
                200,
                r#"{"token_type":"Bearer","expires_in":3599,"access_token":"abc"}"#,
            ),
            "e",
            "c",
            now,
        )
        .unwrap();
        assert_eq!(t.token.as_str(), "abc");
        assert_eq!(t.expires_at, now + Duration::from_secs(3599));
        let t = token_answer(
            &answer(200, r#"{"access_token":"x","expires_on":"1700000000"}"#),
            "e",
            "c",
            now,
        )
        .unwrap();
        assert_eq!(super::super::jwt::unix_seconds(t.expires_at), 1_700_000_000);
        let e = token_answer(
            &answer(401, r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#),
            "https://h/t/oauth2/v2.0/token",
            "app",
            now,
        )
        .unwrap_err();
        assert!(
            matches!(e, EntraError::Refused { status: 401, ref code, .. } if code == "invalid_client"),
            "{e}"
        );
        assert!(matches!(
            token_answer(&answer(502, "<html>"), "e", "c", now),
            Err(EntraError::BadResponse { status: 502, .. })
        ));
        assert!(token_answer(&answer(200, r#"{"expires_in":1}"#), "e", "c", now).is_err());
    }
}
