//! The HTTPS client of the Resource Manager API: a bearer token per request from the [`TokenSource`], the
//! `api-version` query parameter, JSON bodies, typed errors from `{"error":{...}}` bodies, `nextLink` paging,
//! and bounded retries (timeouts, 429, 5xx) that honour `Retry-After`.

use super::types::{
    ArmLocation, DriveBitLockerKey, ErrorResponse, GetBitLockerKeysResponse, JobResponse, ListJobsResponse,
    LocationsResponse, PutJobParameters, UpdateJobParameters,
};
use super::{ArmError, ArmOperation, ArmServiceError};
use crate::api::client::{chain, RetryPolicy};
use crate::api::JobRef;
use crate::entra::TokenSource;
use reqwest::Method;
use std::sync::Arc;
use std::time::Duration;

/// The api-version this client speaks.
pub const ARM_API_VERSION: &str = "2021-01-01";

/// Resource Manager of the public Azure cloud.
pub const PUBLIC_MANAGEMENT_ENDPOINT: &str = "https://management.azure.com";

/// Pages followed at most by a list operation (a guard against a `nextLink` loop).
const MAX_PAGES: usize = 1000;

/// Everything the client needs.
#[derive(Debug, Clone)]
pub struct ArmClientOptions {
    /// Resource Manager's address, e.g. [`PUBLIC_MANAGEMENT_ENDPOINT`] or the emulator's.
    pub management_endpoint: String,
    pub subscription_id: String,
    /// The resource group the jobs live in.
    pub resource_group: String,
    /// Where bearer tokens come from.
    pub tokens: Arc<dyn TokenSource>,
    /// The OAuth scope asked for; `{management_endpoint}/.default` unless set otherwise.
    pub scope: String,
    /// Extra trusted CA certificates (PEM), e.g. the emulator's CA.
    pub ca_pem: Option<Vec<u8>>,
    pub api_version: String,
    /// Per-request timeout.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// The longest `Retry-After` honoured; a longer one ends the call with the 429/503 error.
    pub max_retry_after: Duration,
}

impl ArmClientOptions {
    /// Options with the defaults: scope from the endpoint, api-version 2021-01-01, 60 s timeout, the default
    /// retry policy, `Retry-After` honoured up to 2 minutes.
    pub fn new(
        management_endpoint: &str,
        subscription_id: &str,
        resource_group: &str,
        tokens: Arc<dyn TokenSource>,
    ) -> Self {
        ArmClientOptions {
            management_endpoint: management_endpoint.to_string(),
            subscription_id: subscription_id.to_string(),
            resource_group: resource_group.to_string(),
            tokens,
            scope: format!("{}/.default", management_endpoint.trim_end_matches('/')),
            ca_pem: None,
            api_version: ARM_API_VERSION.to_string(),
            timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// The async client of `Microsoft.ImportExport` for one subscription and resource group.
#[derive(Debug, Clone)]
pub struct ArmClient {
    http: reqwest::Client,
    base: url::Url,
    subscription: String,
    resource_group: String,
    tokens: Arc<dyn TokenSource>,
    scope: String,
    api_version: String,
    retry: RetryPolicy,
    max_retry_after: Duration,
}

/// One 2xx answer: status and body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl ArmClient {
    /// Builds the client; fails on an unusable endpoint or CA file.
    pub fn new(opts: ArmClientOptions) -> Result<Self, ArmError> {
        let bad_url = |reason: &str| ArmError::BadUrl {
            url: opts.management_endpoint.clone(),
            reason: reason.to_string(),
        };
        let base = url::Url::parse(&opts.management_endpoint).map_err(|e| bad_url(&e.to_string()))?;
        if base.scheme() != "https" {
            return Err(bad_url("bearer tokens are sent over https only"));
        }
        if base.cannot_be_a_base() || base.query().is_some() {
            return Err(bad_url("expected a plain https://HOST[:PORT][/PATH] address"));
        }
        if opts.subscription_id.is_empty() || opts.resource_group.is_empty() {
            return Err(ArmError::Setup(
                "the subscription id and the resource group must not be empty".into(),
            ));
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(opts.timeout)
            .https_only(true)
            .user_agent(concat!("seedship/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &opts.ca_pem {
            builder = crate::net::trust_pem(builder, pem).map_err(|reason| ArmError::ManagementCa {
                what: "given PEM".into(),
                reason,
            })?;
        }
        let http = builder.build().map_err(|e| ArmError::Setup(chain(&e)))?;
        Ok(ArmClient {
            http,
            base,
            subscription: opts.subscription_id,
            resource_group: opts.resource_group,
            tokens: opts.tokens,
            scope: opts.scope,
            api_version: opts.api_version,
            retry: opts.retry,
            max_retry_after: opts.max_retry_after,
        })
    }

    /// The subscription the client works in.
    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// The resource group the client's jobs live in.
    pub fn resource_group(&self) -> &str {
        &self.resource_group
    }

    /// The address of a path below the endpoint, with `api-version` and the extra query pairs.
    pub fn url(&self, path: &[&str], query: &[(&str, String)]) -> url::Url {
        let mut url = self.base.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty().extend(path);
        }
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("api-version", &self.api_version);
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        url
    }

    /// `subscriptions/S/resourceGroups/G/providers/Microsoft.ImportExport/jobs`, plus the job's name if given.
    fn job_path<'a>(&'a self, name: Option<&'a str>) -> Vec<&'a str> {
        let mut p = vec![
            "subscriptions",
            self.subscription.as_str(),
            "resourceGroups",
            self.resource_group.as_str(),
            "providers",
            "Microsoft.ImportExport",
            "jobs",
        ];
        p.extend(name);
        p
    }

    /// Locations_List: every data centre drives can be shipped to.
    pub async fn list_locations(&self) -> Result<Vec<ArmLocation>, ArmError> {
        let op = ArmOperation::ListLocations;
        let url = self.url(&["providers", "Microsoft.ImportExport", "locations"], &[]);
        let a = self.call(op, None, Method::GET, url, None).await?;
        let list: LocationsResponse = decode(op, None, &a)?;
        Ok(list.value)
    }

    /// Locations_Get: one location by name (`West US` or `westus`).
    pub async fn get_location(&self, name: &str) -> Result<ArmLocation, ArmError> {
        let op = ArmOperation::GetLocation;
        let url = self.url(&["providers", "Microsoft.ImportExport", "locations", name], &[]);
        let a = self.call(op, None, Method::GET, url, None).await?;
        decode(op, None, &a)
    }

    /// Jobs_Create: creates the job (or replaces it while it is still `Creating`); the answer and whether it
    /// was created (201) rather than replaced (200).
    pub async fn create_job(
        &self,
        name: &str,
        job: &PutJobParameters,
    ) -> Result<(JobResponse, bool), ArmError> {
        let op = ArmOperation::CreateJob;
        let body = serde_json::to_vec(job).map_err(|e| ArmError::Setup(e.to_string()))?;
        let url = self.url(&self.job_path(Some(name)), &[]);
        let a = self.call(op, Some(name), Method::PUT, url, Some(body)).await?;
        Ok((decode(op, Some(name), &a)?, a.status == 201))
    }

    /// Jobs_Get.
    pub async fn get_job(&self, name: &str) -> Result<JobResponse, ArmError> {
        let op = ArmOperation::GetJob;
        let url = self.url(&self.job_path(Some(name)), &[]);
        let a = self.call(op, Some(name), Method::GET, url, None).await?;
        decode(op, Some(name), &a)
    }

    /// Jobs_Update (PATCH): the job as it is afterwards.
    pub async fn update_job(
        &self,
        name: &str,
        update: &UpdateJobParameters,
    ) -> Result<JobResponse, ArmError> {
        let op = ArmOperation::UpdateJob;
        let body = serde_json::to_vec(update).map_err(|e| ArmError::Setup(e.to_string()))?;
        let url = self.url(&self.job_path(Some(name)), &[]);
        let a = self.call(op, Some(name), Method::PATCH, url, Some(body)).await?;
        decode(op, Some(name), &a)
    }

    /// Jobs_Delete (allowed by the service only in `Creating` and `Completed`).
    pub async fn delete_job(&self, name: &str) -> Result<(), ArmError> {
        let url = self.url(&self.job_path(Some(name)), &[]);
        self.call(ArmOperation::DeleteJob, Some(name), Method::DELETE, url, None)
            .await?;
        Ok(())
    }

    /// BitLockerKeys_List (POST `.../listBitLockerKeys`): the recovery password of each drive.
    pub async fn list_bitlocker_keys(&self, name: &str) -> Result<Vec<DriveBitLockerKey>, ArmError> {
        let op = ArmOperation::ListBitLockerKeys;
        let mut path = self.job_path(Some(name));
        path.push("listBitLockerKeys");
        let url = self.url(&path, &[]);
        let a = self.call(op, Some(name), Method::POST, url, None).await?;
        let list: GetBitLockerKeysResponse = decode(op, Some(name), &a)?;
        Ok(list.value)
    }

    /// Jobs_ListBySubscription: every job of the subscription, all pages; `top` and `filter` as the service
    /// defines them (`$top` at most 100 per page).
    pub async fn list_jobs_by_subscription(
        &self,
        top: Option<u32>,
        filter: Option<&str>,
    ) -> Result<Vec<JobResponse>, ArmError> {
        let path = [
            "subscriptions",
            &self.subscription,
            "providers",
            "Microsoft.ImportExport",
            "jobs",
        ];
        self.list_jobs(ArmOperation::ListJobsBySubscription, &path, top, filter)
            .await
    }

    /// Jobs_ListByResourceGroup: every job of the client's resource group, all pages.
    pub async fn list_jobs_by_resource_group(
        &self,
        top: Option<u32>,
        filter: Option<&str>,
    ) -> Result<Vec<JobResponse>, ArmError> {
        let path = self.job_path(None);
        self.list_jobs(ArmOperation::ListJobsByResourceGroup, &path, top, filter)
            .await
    }

    async fn list_jobs(
        &self,
        op: ArmOperation,
        path: &[&str],
        top: Option<u32>,
        filter: Option<&str>,
    ) -> Result<Vec<JobResponse>, ArmError> {
        let mut query = Vec::new();
        if let Some(t) = top {
            query.push(("$top", t.to_string()));
        }
        if let Some(f) = filter {
            query.push(("$filter", f.to_string()));
        }
        let mut url = self.url(path, &query);
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let a = self.call(op, None, Method::GET, url.clone(), None).await?;
            let page: ListJobsResponse = decode(op, None, &a)?;
            out.extend(page.value);
            match page.next_link.filter(|l| !l.is_empty()) {
                None => return Ok(out),
                Some(link) => url = self.next_link(op, &link, a.status)?,
            }
        }
        Err(ArmError::Decode {
            operation: op,
            job: JobRef(None),
            status: 200,
            reason: format!("more than {MAX_PAGES} pages of jobs (a nextLink loop?)"),
        })
    }

    /// A `nextLink` is followed only to the endpoint's own origin: the bearer token goes nowhere else.
    fn next_link(&self, op: ArmOperation, link: &str, status: u16) -> Result<url::Url, ArmError> {
        let bad = |reason: String| ArmError::Decode {
            operation: op,
            job: JobRef(None),
            status,
            reason,
        };
        let url = url::Url::parse(link).map_err(|e| bad(format!("nextLink '{link}' is not a URL: {e}")))?;
        if url.origin() != self.base.origin() {
            return Err(bad(format!(
                "nextLink '{link}' leaves the management endpoint {}; not followed",
                self.base
            )));
        }
        Ok(url)
    }

    /// One operation with retries: the answer when it is 2xx.
    async fn call(
        &self,
        op: ArmOperation,
        job: Option<&str>,
        method: Method,
        url: url::Url,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, ArmError> {
        with_retry(self.retry, self.max_retry_after, op, || {
            self.attempt(op, job, &method, &url, body.as_deref())
        })
        .await
    }

    async fn token(
        &self,
        op: ArmOperation,
        job: Option<&str>,
    ) -> Result<zeroize::Zeroizing<String>, ArmError> {
        let tokens = self.tokens.clone();
        let scope = self.scope.clone();
        let got = tokio::task::spawn_blocking(move || tokens.token(&scope))
            .await
            .map_err(|e| ArmError::Setup(format!("the token source failed: {e}")))?;
        got.map(|t| t.token).map_err(|source| ArmError::Token {
            operation: op,
            job: JobRef(job.map(str::to_string)),
            scope: self.scope.clone(),
            source: Box::new(source),
        })
    }

    async fn attempt(
        &self,
        op: ArmOperation,
        job: Option<&str>,
        method: &Method,
        url: &url::Url,
        body: Option<&[u8]>,
    ) -> Result<Answer, ArmError> {
        let token = self.token(op, job).await?;
        let transport = |e: reqwest::Error| ArmError::Transport {
            operation: op,
            job: JobRef(job.map(str::to_string)),
            url: url.to_string(),
            timeout: e.is_timeout(),
            reason: chain(&e),
        };
        let mut auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.as_str()))
            .map_err(|_| {
                ArmError::Setup("the access token holds characters not allowed in a header".into())
            })?;
        auth.set_sensitive(true);
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .header(reqwest::header::AUTHORIZATION, auth)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_vec());
        } else if *method == Method::POST {
            req = req.header(reqwest::header::CONTENT_LENGTH, "0");
        }
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let bytes = resp.bytes().await.map_err(transport)?.to_vec();
        if (200..300).contains(&status) {
            return Ok(Answer { status, body: bytes });
        }
        Err(service_error(op, job, status, retry_after, &bytes))
    }
}

/// Runs `attempt` until it succeeds, fails for good, or the policy's attempts are used up. Only
/// [`ArmError::is_retryable`] failures are tried again, after the `Retry-After` the service asked for or else
/// the policy's exponential backoff; a `Retry-After` longer than `max_retry_after` ends the call at once.
async fn with_retry<T, F, Fut>(
    policy: RetryPolicy,
    max_retry_after: Duration,
    op: ArmOperation,
    mut attempt: F,
) -> Result<T, ArmError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ArmError>>,
{
    let mut delay = policy.first_delay;
    let mut n = 1;
    loop {
        match attempt().await {
            Err(e) if e.is_retryable() && n < policy.max_attempts.max(1) => {
                let wait = match e.retry_after() {
                    Some(w) if w > max_retry_after => return Err(e),
                    Some(w) => w,
                    None => delay,
                };
                tracing::warn!(operation = %op, attempt = n, error = %e, "retrying after {:?}", wait);
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(policy.max_delay);
                n += 1;
            }
            other => return other,
        }
    }
}

/// `Retry-After` as seconds (the form Resource Manager uses) or an HTTP date.
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// Decodes a non-2xx answer into [`ArmError::Service`] when it carries `{"error":{...}}`.
fn service_error(
    op: ArmOperation,
    job: Option<&str>,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> ArmError {
    let job = JobRef(job.map(str::to_string));
    match serde_json::from_slice::<ErrorResponse>(body) {
        Ok(e) if !e.error.code.is_empty() => ArmError::Service(Box::new(ArmServiceError {
            operation: op,
            job,
            status,
            code: e.error.code,
            message: e.error.message,
            target: e.error.target,
            retry_after,
        })),
        _ => ArmError::Http {
            operation: op,
            job,
            status,
            excerpt: excerpt(body),
            retry_after,
        },
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    op: ArmOperation,
    job: Option<&str>,
    a: &Answer,
) -> Result<T, ArmError> {
    serde_json::from_slice(&a.body).map_err(|e| ArmError::Decode {
        operation: op,
        job: JobRef(job.map(str::to_string)),
        status: a.status,
        reason: if a.body.is_empty() {
            "the body is empty".into()
        } else {
            e.to_string()
        },
    })
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    if text.is_empty() {
        "(empty body)".into()
    } else {
        text
    }
}

/// The synchronous facade for the CLIs: the async client on a private current-thread runtime. Do not call it
/// from inside a tokio runtime.
#[derive(Debug)]
pub struct BlockingArmClient {
    rt: tokio::runtime::Runtime,
    inner: ArmClient,
}

impl BlockingArmClient {
    /// Builds the client and its runtime.
    pub fn new(opts: ArmClientOptions) -> Result<Self, ArmError> {
        let rt = crate::net::blocking_runtime().map_err(ArmError::Setup)?;
        Ok(BlockingArmClient {
            rt,
            inner: ArmClient::new(opts)?,
        })
    }

    /// The async client inside.
    pub fn inner(&self) -> &ArmClient {
        &self.inner
    }

    /// See [`ArmClient::list_locations`].
    pub fn list_locations(&self) -> Result<Vec<ArmLocation>, ArmError> {
        self.rt.block_on(self.inner.list_locations())
    }

    /// See [`ArmClient::get_location`].
    pub fn get_location(&self, name: &str) -> Result<ArmLocation, ArmError> {
        self.rt.block_on(self.inner.get_location(name))
    }

    /// See [`ArmClient::create_job`].
    pub fn create_job(&self, name: &str, job: &PutJobParameters) -> Result<(JobResponse, bool), ArmError> {
        self.rt.block_on(self.inner.create_job(name, job))
    }

    /// See [`ArmClient::get_job`].
    pub fn get_job(&self, name: &str) -> Result<JobResponse, ArmError> {
        self.rt.block_on(self.inner.get_job(name))
    }

    /// See [`ArmClient::update_job`].
    pub fn update_job(&self, name: &str, update: &UpdateJobParameters) -> Result<JobResponse, ArmError> {
        self.rt.block_on(self.inner.update_job(name, update))
    }

    /// See [`ArmClient::delete_job`].
    pub fn delete_job(&self, name: &str) -> Result<(), ArmError> {
        self.rt.block_on(self.inner.delete_job(name))
    }

    /// See [`ArmClient::list_bitlocker_keys`].
    pub fn list_bitlocker_keys(&self, name: &str) -> Result<Vec<DriveBitLockerKey>, ArmError> {
        self.rt.block_on(self.inner.list_bitlocker_keys(name))
    }

    /// See [`ArmClient::list_jobs_by_subscription`].
    pub fn list_jobs_by_subscription(
        &self,
        top: Option<u32>,
        filter: Option<&str>,
    ) -> Result<Vec<JobResponse>, ArmError> {
        self.rt
            .block_on(self.inner.list_jobs_by_subscription(top, filter))
    }

    /// See [`ArmClient::list_jobs_by_resource_group`].
    pub fn list_jobs_by_resource_group(
        &self,
        top: Option<u32>,
        filter: Option<&str>,
    ) -> Result<Vec<JobResponse>, ArmError> {
        self.rt
            .block_on(self.inner.list_jobs_by_resource_group(top, filter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `with_retry` over scripted answers: `(status, retry_after seconds)`, 200 = success.
    fn run(script: &[(u16, Option<u64>)], max_retry_after: Duration) -> (Result<(), ArmError>, usize) {
        let count = std::cell::Cell::new(0usize);
        let policy = RetryPolicy {
            max_attempts: 4,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let rt = crate::net::blocking_runtime().unwrap();
        let result = rt.block_on(with_retry(policy, max_retry_after, ArmOperation::GetJob, || {
            let i = count.get();
            count.set(i + 1);
            let (status, after) = script[i.min(script.len() - 1)];
            let body = br#"{"error":{"code":"TooManyRequests","message":"slow down"}}"#;
            async move {
                match status {
                    200 => Ok(()),
                    s => Err(service_error(
                        ArmOperation::GetJob,
                        Some("j"),
                        s,
                        after.map(Duration::from_secs),
                        body,
                    )),
                }
            }
        }));
        (result, count.get())
    }

    #[test]
    fn throttling_and_5xx_are_retried_honouring_retry_after() {
        let (r, n) = run(
            &[(429, Some(0)), (503, None), (200, None)],
            Duration::from_secs(1),
        );
        assert!(r.is_ok());
        assert_eq!(n, 3);
        // a wait longer than the caller accepts ends the call with the 429 and its Retry-After
        let (r, n) = run(&[(429, Some(30)), (200, None)], Duration::from_secs(1));
        let e = r.unwrap_err();
        assert_eq!(
            (e.status(), e.retry_after(), n),
            (Some(429), Some(Duration::from_secs(30)), 1)
        );
        assert!(e.to_string().contains("too many requests"), "{e}");
        // other 4xx answers are final
        for s in [400, 401, 403, 404, 409] {
            let (r, n) = run(&[(s, None), (200, None)], Duration::from_secs(1));
            assert_eq!((r.unwrap_err().status(), n), (Some(s), 1));
        }
        let (r, n) = run(&[(500, None)], Duration::from_secs(1));
        assert_eq!((r.unwrap_err().status(), n), (Some(500), 4));
    }

    #[test]
    fn resource_manager_error_bodies_become_typed_errors() {
        let body = br#"{"error":{"code":"InvalidAuthenticationTokenAudience","message":"wrong audience","target":"token"}}"#;
        let e = service_error(ArmOperation::CreateJob, Some("j1"), 401, None, body);
        assert_eq!(e.code(), Some("InvalidAuthenticationTokenAudience"));
        let text = e.to_string();
        assert!(
            text.starts_with(
                "Jobs_Create of job 'j1' failed: HTTP 401 InvalidAuthenticationTokenAudience: wrong audience"
            ),
            "{text}"
        );
        assert!(text.contains("check the tenant"), "{text}");
        let e = service_error(
            ArmOperation::ListLocations,
            None,
            502,
            None,
            b"<html>bad gateway</html>",
        );
        assert!(matches!(e, ArmError::Http { status: 502, .. }));
        assert!(e.is_retryable());
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        assert_eq!(parse_retry_after("17"), Some(Duration::from_secs(17)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
