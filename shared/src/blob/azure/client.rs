//! The HTTP layer of [`super::AzureStore`]: builds URLs, signs and sends one request, reads the answer with a
//! size cap and maps failures to [`BlobError`].
//!
//! Error mapping: 404 with code `ContainerNotFound` is [`BlobError::ContainerNotFound`], other 404s are
//! [`BlobError::NotFound`], 409 `*AlreadyExists` is [`BlobError::AlreadyExists`], everything else is
//! [`BlobError::Http`] with the status, the service's error code (header `x-ms-error-code`, else the XML body)
//! and message; a 403 names the account and says to check the key or SAS. Connection failures and timeouts
//! are [`BlobError::Transport`] (retryable). Messages never contain the key or the SAS signature
//! (reqwest errors are stripped of their URL).

use super::auth::Signer;
use super::xml;
use crate::blob::BlobError;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use url::Url;

/// The service version sent with every request.
pub(crate) const API_VERSION: &str = "2024-11-04";

/// The part of the store that requests need, shared by the tasks of one call.
#[derive(Debug)]
pub(crate) struct Inner {
    pub client: reqwest::Client,
    /// The container's URL (no query).
    pub container_url: Url,
    pub account: String,
    pub signer: Signer,
    pub describe: String,
}

/// One request to send.
#[derive(Debug)]
pub(crate) struct Request {
    pub operation: &'static str,
    pub method: Method,
    /// The object name, or `None` for a container request.
    pub name: Option<String>,
    pub query: Vec<(&'static str, String)>,
    /// Extra headers, lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The largest response body accepted.
    pub max_body: usize,
}

impl Request {
    pub fn new(operation: &'static str, method: Method, name: Option<&str>) -> Request {
        Request {
            operation,
            method,
            name: name.map(str::to_owned),
            query: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
            max_body: 1 << 20,
        }
    }

    pub fn query(mut self, k: &'static str, v: impl Into<String>) -> Request {
        self.query.push((k, v.into()));
        self
    }

    pub fn header(mut self, k: &str, v: impl Into<String>) -> Request {
        self.headers.push((k.to_ascii_lowercase(), v.into()));
        self
    }
}

/// A successful answer.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Inner {
    /// The URL of object `name` (or of the container), without authorisation.
    pub fn url(&self, name: Option<&str>) -> Url {
        let mut url = self.container_url.clone();
        if let Some(name) = name {
            url.path_segments_mut()
                .expect("http(s) URLs have a path")
                .extend(name.split('/'));
        }
        url
    }

    fn err_name(&self, req: &Request) -> String {
        req.name.clone().unwrap_or_default()
    }

    pub fn transport(&self, req: &Request, e: reqwest::Error) -> BlobError {
        let mut message = if e.is_timeout() {
            "timed out".to_owned()
        } else if e.is_connect() {
            "cannot connect".to_owned()
        } else {
            "request failed".to_owned()
        };
        let e = e.without_url();
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        BlobError::Transport {
            store: self.describe.clone(),
            operation: req.operation,
            name: self.err_name(req),
            message,
        }
    }

    pub fn bad_response(&self, req: &Request, message: impl Into<String>) -> BlobError {
        BlobError::BadResponse {
            store: self.describe.clone(),
            operation: req.operation,
            name: self.err_name(req),
            message: message.into(),
        }
    }

    /// Signs and sends `req`; a non-2xx answer becomes the mapped error.
    pub async fn send(&self, mut req: Request) -> Result<Response, BlobError> {
        let mut url = self.url(req.name.as_deref());
        for (k, v) in &req.query {
            url.query_pairs_mut().append_pair(k, v);
        }
        self.signer.prepare_url(&mut url);
        let body = std::mem::take(&mut req.body);
        let mut headers = std::mem::take(&mut req.headers);
        headers.push((
            "x-ms-date".into(),
            httpdate::fmt_http_date(std::time::SystemTime::now()),
        ));
        headers.push(("x-ms-version".into(), API_VERSION.into()));
        if req.method != Method::GET && req.method != Method::HEAD {
            headers.push(("content-length".into(), body.len().to_string()));
        }
        if let Some(auth) = self.signer.authorization(req.method.as_str(), &url, &headers) {
            headers.push(("authorization".into(), auth));
        }
        if let Some(source) = self.signer.bearer() {
            // Cached tokens come back at once; a renewal blocks this worker for one token request.
            let token =
                tokio::task::block_in_place(|| source.token(crate::entra::STORAGE_SCOPE)).map_err(|e| {
                    BlobError::SignIn {
                        store: self.describe.clone(),
                        operation: req.operation,
                        name: self.err_name(&req),
                        source: Box::new(e),
                    }
                })?;
            headers.push(("authorization".into(), format!("Bearer {}", token.token.as_str())));
        }
        let mut map = HeaderMap::new();
        for (k, v) in &headers {
            // Our header names are constants; only metadata keys and values come from callers, and those
            // were checked by check_metadata. Report the key if one still cannot be encoded.
            let (Ok(name), Ok(mut value)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v))
            else {
                return Err(BlobError::InvalidMetadata {
                    key: k.trim_start_matches("x-ms-meta-").to_owned(),
                    reason: "it cannot be sent as an HTTP header",
                });
            };
            value.set_sensitive(k == "authorization");
            map.append(name, value);
        }
        let mut builder = self.client.request(req.method.clone(), url).headers(map);
        if !body.is_empty() {
            builder = builder.body(body);
        }
        let mut resp = builder.send().await.map_err(|e| self.transport(&req, e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        // Error bodies are small XML documents: read at most 64 KiB of one.
        let cap = if status.is_success() {
            req.max_body
        } else {
            64 << 10
        };
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(&req, e))? {
            if !status.is_success() && body.len() + chunk.len() > cap {
                break;
            }
            if body.len() + chunk.len() > cap {
                return Err(self.bad_response(&req, format!("answer longer than {} bytes", req.max_body)));
            }
            body.extend_from_slice(&chunk);
        }
        let answer = Response {
            status,
            headers,
            body,
        };
        if status.is_success() {
            Ok(answer)
        } else {
            Err(self.map_error(&req, answer))
        }
    }

    fn map_error(&self, req: &Request, answer: Response) -> BlobError {
        let (xml_code, xml_message) = xml::parse_error(&answer.body);
        let code = answer.header("x-ms-error-code").map(str::to_owned).or(xml_code);
        let status = answer.status.as_u16();
        let store = self.describe.clone();
        let name = self.err_name(req);
        match (status, code.as_deref()) {
            (404, Some("ContainerNotFound")) => return BlobError::ContainerNotFound { store },
            (404, _) if req.name.is_some() => return BlobError::NotFound { store, name },
            (404, _) => return BlobError::ContainerNotFound { store },
            (409, Some(c)) if c.ends_with("AlreadyExists") => {
                return BlobError::AlreadyExists { store, name }
            }
            _ => {}
        }
        let server = xml_message.unwrap_or_else(|| {
            answer
                .status
                .canonical_reason()
                .unwrap_or("no message")
                .to_owned()
        });
        let message = if status == 403 {
            format!(
                "{status} {} for account {}: check the account key, SAS or the signed-in application's role \
                 (Storage Blob Data Contributor) and that it allows this operation ({server})",
                code.as_deref().unwrap_or("Forbidden"),
                self.account
            )
        } else {
            server
        };
        BlobError::Http {
            store,
            operation: req.operation,
            name,
            status,
            code,
            message,
        }
    }
}
