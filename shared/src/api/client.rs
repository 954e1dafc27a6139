//! The HTTPS client: mutual TLS with the management certificate, `x-ms-version`, OData JSON light, typed
//! errors from `odata.error` bodies, and bounded retries with exponential backoff on timeouts and 5xx only.

use super::identity::ManagementIdentity;
use super::location::{choose_location, LocationChoice, LocationError};
use super::types::{Job, JobSummary, JobUpdate, Location, ODataErrorBody, ODataList};
use super::{ApiError, JobRef, Operation, ServiceError};
use crate::publish_settings::Subscription;
use reqwest::Method;
use std::path::Path;
use std::time::Duration;

/// The `x-ms-version` sent unless the options say otherwise.
pub const DEFAULT_API_VERSION: &str = "2014-11-01";

/// How often and how patiently a retryable failure (timeout, 5xx) is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, at least 1.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled after each further failure.
    pub first_delay: Duration,
    /// Upper bound of one wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

/// Everything the client needs.
#[derive(Debug, Clone)]
pub struct ApiClientOptions {
    /// `ServiceManagementUrl` of the publish settings, e.g. `https://management.core.windows.net`.
    pub service_management_url: String,
    pub subscription_id: String,
    pub identity: ManagementIdentity,
    /// Extra trusted CA certificates (PEM, one or more), e.g. the emulator's CA (`--management-ca FILE`).
    pub management_ca_pem: Option<Vec<u8>>,
    pub api_version: String,
    /// Per-request timeout.
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl ApiClientOptions {
    /// Options for one subscription of a publish-settings file, with the defaults.
    pub fn from_subscription(sub: &Subscription) -> Result<Self, ApiError> {
        Ok(ApiClientOptions {
            service_management_url: sub.service_management_url.clone(),
            subscription_id: sub.id.clone(),
            identity: ManagementIdentity::from_pkcs12(&sub.id, &sub.management_certificate)?,
            management_ca_pem: None,
            api_version: DEFAULT_API_VERSION.to_string(),
            timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
        })
    }

    /// Also trusts the CA certificate(s) in a PEM file.
    pub fn with_management_ca_file(mut self, path: &Path) -> Result<Self, ApiError> {
        let pem = std::fs::read(path).map_err(|e| ApiError::ManagementCa {
            what: path.display().to_string(),
            reason: e.to_string(),
        })?;
        self.management_ca_pem = Some(pem);
        Ok(self)
    }
}

/// The async client of the classic Import/Export API for one subscription.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: url::Url,
    api_version: String,
    retry: RetryPolicy,
}

impl ApiClient {
    /// Builds the client; fails on an unusable certificate, CA file or URL.
    pub fn new(opts: ApiClientOptions) -> Result<Self, ApiError> {
        let bad_url = |reason: String| ApiError::BadUrl {
            url: opts.service_management_url.clone(),
            reason,
        };
        let mut base = url::Url::parse(&opts.service_management_url).map_err(|e| bad_url(e.to_string()))?;
        if base.scheme() != "https" {
            return Err(bad_url("the classic API is HTTPS only".into()));
        }
        {
            let mut segs = base
                .path_segments_mut()
                .map_err(|_| bad_url("not a hierarchical URL".into()))?;
            segs.pop_if_empty()
                .push(&opts.subscription_id)
                .push("services")
                .push("importexport");
        }
        let identity = reqwest::Identity::from_pem(opts.identity.pem()).map_err(|e| {
            ApiError::Setup(format!(
                "the management certificate is not usable by TLS: {}",
                chain(&e)
            ))
        })?;
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .identity(identity)
            .timeout(opts.timeout)
            .https_only(true);
        if let Some(pem) = &opts.management_ca_pem {
            builder = crate::net::trust_pem(builder, pem).map_err(|reason| ApiError::ManagementCa {
                what: "given PEM".into(),
                reason,
            })?;
        }
        let http = builder.build().map_err(|e| ApiError::Setup(chain(&e)))?;
        Ok(ApiClient {
            http,
            base,
            api_version: opts.api_version,
            retry: opts.retry,
        })
    }

    /// The `.../<subscription>/services/importexport` address every operation is relative to.
    pub fn base_url(&self) -> &url::Url {
        &self.base
    }

    /// List Locations, optionally for one origin region (seed 001).
    pub async fn list_locations(&self, origin: Option<&str>) -> Result<Vec<Location>, ApiError> {
        let op = Operation::ListLocations;
        let query = origin.map(|o| format!("originlocation={}", percent_encode(o)));
        let (status, body) = self
            .call(op, None, Method::GET, &["locations"], query, None)
            .await?;
        let list: ODataList<Location> = decode(op, None, status, &body)?;
        Ok(list.value)
    }

    /// Seed 000's procedure: the location for `origin` if it is open, otherwise an alternate, with the address
    /// of the chosen one (fetched separately when the first answer did not carry it).
    pub async fn resolve_location(&self, origin: &str) -> Result<(LocationChoice, Location), ApiError> {
        let first = self.list_locations(Some(origin)).await?;
        let choice = choose_location(origin, &first)?;
        let name = choice.name().to_string();
        let found = |list: &[Location]| list.iter().find(|l| l.name.eq_ignore_ascii_case(&name)).cloned();
        if let Some(loc) = found(&first) {
            return Ok((choice, loc));
        }
        let second = self.list_locations(Some(&name)).await?;
        let loc = found(&second).ok_or(LocationError::Unknown(name))?;
        Ok((choice, loc))
    }

    /// Put Job: creates the job (or replaces it while it is still `Creating`).
    pub async fn put_job(&self, account: &str, job: &Job) -> Result<(), ApiError> {
        let op = Operation::PutJob;
        let body = serde_json::to_vec(job).map_err(|e| ApiError::Setup(e.to_string()))?;
        let path = ["storageaccounts", account, "jobs", &job.name];
        self.call(op, Some(&job.name), Method::PUT, &path, None, Some(body))
            .await?;
        Ok(())
    }

    /// Get Job.
    pub async fn get_job(&self, account: &str, name: &str) -> Result<Job, ApiError> {
        let op = Operation::GetJob;
        let path = ["storageaccounts", account, "jobs", name];
        let (status, body) = self.call(op, Some(name), Method::GET, &path, None, None).await?;
        decode(op, Some(name), status, &body)
    }

    /// List Jobs: every job of the subscription with its type, state and storage account.
    pub async fn list_jobs(&self) -> Result<Vec<JobSummary>, ApiError> {
        let op = Operation::ListJobs;
        let (status, body) = self.call(op, None, Method::GET, &["jobs"], None, None).await?;
        let list: ODataList<JobSummary> = decode(op, None, status, &body)?;
        Ok(list.value)
    }

    /// Update Job Properties (PATCH).
    pub async fn update_job(&self, account: &str, name: &str, update: &JobUpdate) -> Result<(), ApiError> {
        let op = Operation::UpdateJobProperties;
        let body = serde_json::to_vec(update).map_err(|e| ApiError::Setup(e.to_string()))?;
        let path = ["storageaccounts", account, "jobs", name];
        self.call(op, Some(name), Method::PATCH, &path, None, Some(body))
            .await?;
        Ok(())
    }

    /// Delete Job (allowed by the service only in `Creating` and `Completed`).
    pub async fn delete_job(&self, account: &str, name: &str) -> Result<(), ApiError> {
        let path = ["storageaccounts", account, "jobs", name];
        self.call(
            Operation::DeleteJob,
            Some(name),
            Method::DELETE,
            &path,
            None,
            None,
        )
        .await?;
        Ok(())
    }

    /// One operation with retries: returns the status and body of a 2xx answer.
    async fn call(
        &self,
        op: Operation,
        job: Option<&str>,
        method: Method,
        path: &[&str],
        query: Option<String>,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), ApiError> {
        let mut url = self.base.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.extend(path);
        }
        url.set_query(query.as_deref());
        with_retry(self.retry, op, || {
            self.attempt(op, job, &method, &url, body.as_deref())
        })
        .await
    }

    async fn attempt(
        &self,
        op: Operation,
        job: Option<&str>,
        method: &Method,
        url: &url::Url,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), ApiError> {
        let transport = |e: reqwest::Error| ApiError::Transport {
            operation: op,
            job: JobRef(job.map(str::to_string)),
            url: url.to_string(),
            cause: crate::net::classify(&e, e.is_timeout()),
            reason: chain(&e),
        };
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .header("x-ms-version", &self.api_version)
            .header(reqwest::header::ACCEPT, "application/json;odata=minimalmetadata");
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_vec());
        }
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let mut resp = resp;
        let too_long = || ApiError::Decode {
            operation: op,
            job: JobRef(job.map(str::to_string)),
            status,
            reason: format!("the answer is longer than {MAX_RESPONSE_LEN} bytes; refusing to read more"),
        };
        if resp.content_length().is_some_and(|n| n > MAX_RESPONSE_LEN as u64) {
            return Err(too_long());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_LEN {
                return Err(too_long());
            }
            bytes.extend_from_slice(&chunk);
        }
        if (200..300).contains(&status) {
            return Ok((status, bytes));
        }
        Err(service_error(op, job, status, &bytes))
    }
}

/// The longest response body read: 4 MiB. A List Jobs answer of a few hundred jobs is well under 1 MiB;
/// a service (or anything posing as one) that sends more is refused rather than buffered.
pub const MAX_RESPONSE_LEN: usize = 4 << 20;

/// Runs `attempt` until it succeeds, fails for good, or the policy's attempts are used up; waits between
/// attempts with exponential backoff. Only [`ApiError::is_retryable`] failures are tried again.
async fn with_retry<T, F, Fut>(policy: RetryPolicy, op: Operation, mut attempt: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let mut delay = policy.first_delay;
    let mut n = 1;
    loop {
        match attempt().await {
            Err(e) if e.is_retryable() && n < policy.max_attempts.max(1) => {
                tracing::warn!(operation = %op, attempt = n, error = %e, "retrying after {:?}", delay);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(policy.max_delay);
                n += 1;
            }
            other => return other,
        }
    }
}

/// Decodes a non-2xx answer into [`ApiError::Service`] when it carries `odata.error`.
fn service_error(op: Operation, job: Option<&str>, status: u16, body: &[u8]) -> ApiError {
    let job = JobRef(job.map(str::to_string));
    match serde_json::from_slice::<ODataErrorBody>(body) {
        Ok(e) => ApiError::Service(Box::new(ServiceError {
            operation: op,
            job,
            status,
            extended_code: e.extended_code().map(str::to_string),
            extended_information: e.extended_information().map(str::to_string),
            code: e.error.code,
            message: e.error.message.value,
        })),
        Err(_) => ApiError::Http {
            operation: op,
            job,
            status,
            excerpt: excerpt(body),
        },
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    op: Operation,
    job: Option<&str>,
    status: u16,
    body: &[u8],
) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::Decode {
        operation: op,
        job: JobRef(job.map(str::to_string)),
        status,
        reason: e.to_string(),
    })
}

/// The first 200 characters of a body, lossily decoded, for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    if text.is_empty() {
        "(empty body)".into()
    } else {
        text
    }
}

pub(crate) use crate::net::chain;

/// Percent-encodes a query value: unreserved characters stay, everything else (space included) becomes `%XX`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The synchronous facade for the CLIs: the async client on a private current-thread runtime. Do not call it
/// from inside a tokio runtime.
#[derive(Debug)]
pub struct BlockingApiClient {
    rt: tokio::runtime::Runtime,
    inner: ApiClient,
}

impl BlockingApiClient {
    /// Builds the client and its runtime.
    pub fn new(opts: ApiClientOptions) -> Result<Self, ApiError> {
        let rt = crate::net::blocking_runtime().map_err(ApiError::Setup)?;
        Ok(BlockingApiClient {
            rt,
            inner: ApiClient::new(opts)?,
        })
    }

    /// The async client inside.
    pub fn inner(&self) -> &ApiClient {
        &self.inner
    }

    /// See [`ApiClient::list_locations`].
    pub fn list_locations(&self, origin: Option<&str>) -> Result<Vec<Location>, ApiError> {
        self.rt.block_on(self.inner.list_locations(origin))
    }

    /// See [`ApiClient::resolve_location`].
    pub fn resolve_location(&self, origin: &str) -> Result<(LocationChoice, Location), ApiError> {
        self.rt.block_on(self.inner.resolve_location(origin))
    }

    /// See [`ApiClient::put_job`].
    pub fn put_job(&self, account: &str, job: &Job) -> Result<(), ApiError> {
        self.rt.block_on(self.inner.put_job(account, job))
    }

    /// See [`ApiClient::get_job`].
    pub fn get_job(&self, account: &str, name: &str) -> Result<Job, ApiError> {
        self.rt.block_on(self.inner.get_job(account, name))
    }

    /// See [`ApiClient::list_jobs`].
    pub fn list_jobs(&self) -> Result<Vec<JobSummary>, ApiError> {
        self.rt.block_on(self.inner.list_jobs())
    }

    /// See [`ApiClient::update_job`].
    pub fn update_job(&self, account: &str, name: &str, update: &JobUpdate) -> Result<(), ApiError> {
        self.rt.block_on(self.inner.update_job(account, name, update))
    }

    /// See [`ApiClient::delete_job`].
    pub fn delete_job(&self, account: &str, name: &str) -> Result<(), ApiError> {
        self.rt.block_on(self.inner.delete_job(account, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_use_percent_20_for_spaces() {
        assert_eq!(percent_encode("West US"), "West%20US");
        assert_eq!(percent_encode("a/b&c"), "a%2Fb%26c");
    }

    fn answers(script: Vec<u16>) -> (std::cell::Cell<usize>, Vec<u16>) {
        (std::cell::Cell::new(0), script)
    }

    /// Runs `with_retry` over a scripted list of statuses (200 = success); returns the result and the attempts.
    fn run_script(script: Vec<u16>, max_attempts: u32) -> (Result<(), ApiError>, usize) {
        let (count, script) = answers(script);
        let policy = RetryPolicy {
            max_attempts,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let rt = crate::net::blocking_runtime().unwrap();
        let result = rt.block_on(with_retry(policy, Operation::GetJob, || {
            let i = count.get();
            count.set(i + 1);
            let status = script[i.min(script.len() - 1)];
            async move {
                match status {
                    200 => Ok(()),
                    0 => Err(ApiError::Transport {
                        operation: Operation::GetJob,
                        job: JobRef(None),
                        url: "https://x".into(),
                        reason: "timed out".into(),
                        cause: crate::net::TransportCause::Timeout,
                    }),
                    s => Err(service_error(Operation::GetJob, Some("j"), s, b"")),
                }
            }
        }));
        (result, count.get())
    }

    #[test]
    fn only_timeouts_and_5xx_are_retried_and_only_so_often() {
        let (r, n) = run_script(vec![503, 0, 500, 200], 4);
        assert!(r.is_ok());
        assert_eq!(n, 4);
        let (r, n) = run_script(vec![503, 503, 503, 503, 200], 3);
        assert_eq!((r.unwrap_err().status(), n), (Some(503), 3));
        let (r, n) = run_script(vec![503, 404, 200], 4);
        assert_eq!((r.unwrap_err().status(), n), (Some(404), 2));
        let (r, n) = run_script(vec![400, 200], 4);
        assert_eq!((r.unwrap_err().status(), n), (Some(400), 1));
    }

    #[test]
    fn odata_error_bodies_become_typed_errors() {
        let body = br#"{"odata.error":{"code":"400","message":{"lang":"en-US","value":"bad name"},
            "azure.values":[{"ExtendedCode":"InvalidJobName"},{"ExtendedInformation":"x"}]}}"#;
        let e = service_error(Operation::PutJob, Some("j1"), 400, body);
        assert_eq!(e.status(), Some(400));
        assert_eq!(e.extended_code(), Some("InvalidJobName"));
        assert!(!e.is_retryable());
        assert!(
            e.to_string()
                .contains("Put Job of job 'j1' failed: HTTP 400 InvalidJobName: bad name"),
            "{e}"
        );
        let e = service_error(Operation::ListJobs, None, 503, b"<html>busy</html>");
        assert!(matches!(e, ApiError::Http { status: 503, .. }));
        assert!(e.is_retryable());
    }
}
