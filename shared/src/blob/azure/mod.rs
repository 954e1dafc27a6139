//! A [`BlobStore`] on an Azure storage container of page blobs: a narrow hand-written REST client.
//!
//! It speaks only what seedship needs (containers, page blobs: create, Put Page, clear, Get Page Ranges,
//! ranged Get, resize, metadata, listing, delete, and Copy Blob), authorised by Shared Key or a SAS
//! ([`Credential`]). Azure's limits are enforced before any request is sent (512-byte alignment, 8 TiB per
//! blob); writes longer than 4 MiB are split into several Put Page requests, and large writes and reads keep
//! up to [`AzureOptions::concurrency`] requests in flight. Every Put Page carries its `x-ms-content-crc64`
//! (CRC-64/NVME), so the service refuses a body damaged on the way.
//!
//! **Threads and runtimes.** The trait is blocking. The store owns a small tokio runtime; each call spawns
//! its requests on it and waits on a standard channel. So it can be called from any thread, including
//! from async code through `tokio::task::spawn_blocking` (calling it directly on an async worker thread
//! works but blocks that worker for the duration of the call, so prefer `spawn_blocking`).
//!
//! This store does not retry: wrap it in [`super::RetryStore`].

mod auth;
mod client;
mod lease;
mod xml;

pub use auth::Credential;

use super::{
    check_aligned, check_metadata, check_name, BlobError, BlobStore, Metadata, MAX_PAGE_BLOB, MAX_PUT_PAGE,
};
use base64::Engine as _;
use client::{Inner, Request, Response};
use reqwest::Method;
use std::future::Future;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use url::Url;

/// CRC-64/NVME, the checksum behind `x-ms-content-crc64`.
const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_NVME);

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct AzureOptions {
    /// The blob endpoint: `https://<account>.blob.core.windows.net`, or path style with the account
    /// (`http://127.0.0.1:10000/devstoreaccount1`, Azurite).
    pub endpoint: String,
    pub account: String,
    pub container: String,
    pub credential: Credential,
    /// Requests kept in flight by one large read or write.
    pub concurrency: usize,
    /// `maxresults` of each List Blobs request (at most 5000).
    pub list_page_size: u32,
    pub connect_timeout: Duration,
    /// Limit for one whole request, answer included.
    pub request_timeout: Duration,
    /// How often [`AzureStore::copy_blob`] asks for the copy status, and how long it waits in all.
    pub copy_poll_interval: Duration,
    pub copy_timeout: Duration,
    /// Extra trusted CA certificates (PEM) for an endpoint with a private certificate (Azurite over HTTPS,
    /// which bearer tokens need).
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl AzureOptions {
    /// Options with the defaults: 8 requests in flight, 5000 names per listing page, 10 s to connect, 120 s
    /// per request, copy status every 500 ms for up to an hour.
    pub fn new(endpoint: &str, account: &str, container: &str, credential: Credential) -> AzureOptions {
        AzureOptions {
            endpoint: endpoint.to_owned(),
            account: account.to_owned(),
            container: container.to_owned(),
            credential,
            concurrency: 8,
            list_page_size: 5000,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            copy_poll_interval: Duration::from_millis(500),
            copy_timeout: Duration::from_secs(3600),
            extra_ca_pem: None,
        }
    }
}

impl AzureOptions {
    /// Options from an Azure storage connection string (`AccountName=..;AccountKey=..;BlobEndpoint=..` or
    /// `DefaultEndpointsProtocol=https;AccountName=..;AccountKey=..;EndpointSuffix=core.windows.net`, with
    /// `SharedAccessSignature=..` instead of the key for a SAS) and the container name.
    pub fn from_connection_string(
        connection_string: &str,
        container: &str,
    ) -> Result<AzureOptions, BlobError> {
        let mut fields = std::collections::HashMap::new();
        for part in connection_string
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                config_err(
                    "connection string",
                    "every part must look like Name=value, separated by ';'",
                )
            })?;
            fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
        let account = fields
            .get("accountname")
            .cloned()
            .ok_or_else(|| config_err("connection string", "it has no AccountName"))?;
        let endpoint = match fields.get("blobendpoint") {
            Some(e) => e.clone(),
            None => format!(
                "{}://{account}.blob.{}",
                fields
                    .get("defaultendpointsprotocol")
                    .map_or("https", String::as_str),
                fields
                    .get("endpointsuffix")
                    .map_or("core.windows.net", String::as_str)
            ),
        };
        let credential = match (fields.get("accountkey"), fields.get("sharedaccesssignature")) {
            (Some(key), _) => Credential::SharedKey(key.clone()),
            (None, Some(sas)) => Credential::Sas(sas.clone()),
            (None, None) => {
                return Err(config_err(
                    "connection string",
                    "it has neither AccountKey nor SharedAccessSignature",
                ))
            }
        };
        Ok(AzureOptions::new(&endpoint, &account, container, credential))
    }
}

/// A container of page blobs in an Azure storage account (or Azurite).
#[derive(Debug)]
pub struct AzureStore {
    inner: Arc<Inner>,
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    concurrency: usize,
    list_page_size: u32,
    copy_poll_interval: Duration,
    copy_timeout: Duration,
}

impl Drop for AzureStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which tokio forbids inside async code: let it wind down by itself.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn config_err(what: &'static str, message: impl Into<String>) -> BlobError {
    BlobError::InvalidConfig {
        what,
        message: message.into(),
    }
}

/// Checks a container name against Azure's rules (3-63 of a-z, 0-9, '-', no leading, trailing or double '-').
fn check_container_name(name: &str) -> Result<(), BlobError> {
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(config_err(
            "container name",
            format!("{name:?} must be 3-63 characters of a-z, 0-9 and single '-' inside"),
        ))
    }
}

fn range_header(offset: u64, len: u64) -> String {
    format!("bytes={}-{}", offset, offset + len - 1)
}

fn crc64_header(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(CRC64.checksum(data).to_le_bytes())
}

impl AzureStore {
    /// Checks the options and builds the HTTP client and runtime; sends nothing.
    pub fn new(options: AzureOptions) -> Result<AzureStore, BlobError> {
        check_container_name(&options.container)?;
        if options.account.is_empty() {
            return Err(config_err("account", "the storage account name is empty"));
        }
        let mut url = Url::parse(options.endpoint.trim_end_matches('/'))
            .map_err(|e| config_err("endpoint", format!("{:?} is not a URL: {e}", options.endpoint)))?;
        if !matches!(url.scheme(), "http" | "https") || url.query().is_some() || url.cannot_be_a_base() {
            return Err(config_err(
                "endpoint",
                format!(
                    "{:?} must be an http(s) URL without a query (give a SAS as the credential)",
                    options.endpoint
                ),
            ));
        }
        url.path_segments_mut()
            .expect("http(s) URLs have a path")
            .pop_if_empty()
            .push(&options.container);
        let signer = auth::Signer::new(&options.account, &options.credential)
            .map_err(|m| config_err("credential", m))?;
        if matches!(options.credential, Credential::Bearer(_)) && url.scheme() != "https" {
            return Err(config_err(
                "endpoint",
                format!(
                    "{:?}: bearer tokens are sent over HTTPS only; use the https:// blob endpoint",
                    options.endpoint
                ),
            ));
        }
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = &options.extra_ca_pem {
            builder = crate::net::trust_pem(builder, pem)
                .map_err(|reason| config_err("CA certificate", format!("not usable PEM: {reason}")))?;
        }
        let client = builder
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| config_err("HTTP client", e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("seedship-azure")
            .enable_all()
            .build()
            .map_err(|e| config_err("runtime", e.to_string()))?;
        let describe = format!(
            "Azure container {} of account {} at {}",
            options.container,
            options.account,
            options.endpoint.trim_end_matches('/')
        );
        Ok(AzureStore {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            inner: Arc::new(Inner {
                client,
                container_url: url,
                account: options.account,
                signer,
                describe,
            }),
            concurrency: options.concurrency.max(1),
            list_page_size: options.list_page_size.clamp(1, 5000),
            copy_poll_interval: options.copy_poll_interval,
            copy_timeout: options.copy_timeout,
        })
    }

    /// The URL of an object without any credential (for messages and as a copy source with Shared Key).
    pub fn blob_url(&self, name: &str) -> Result<Url, BlobError> {
        check_name(name)?;
        Ok(self.inner.url(Some(name)))
    }

    /// Runs one future on the store's runtime and waits for it on the calling thread.
    fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .expect("the store's runtime runs until the store is dropped")
    }

    /// Sends one request and waits for its answer.
    fn send(&self, req: Request) -> Result<Response, BlobError> {
        let inner = self.inner.clone();
        self.run(async move { inner.send(req).await })
    }

    /// Sends the requests `jobs` yields, at most `concurrency` at a time, handing each answer to `done` in
    /// completion order. Stops at the first error (waiting for the requests already sent).
    fn send_many<T: Send + 'static>(
        &self,
        jobs: impl Iterator<Item = (Request, T)>,
        mut done: impl FnMut(T, Response) -> Result<(), BlobError>,
    ) -> Result<(), BlobError> {
        let (tx, rx) = mpsc::channel::<(T, Result<Response, BlobError>)>();
        let mut in_flight = 0usize;
        let mut first_err: Option<BlobError> = None;
        let mut take = |r: (T, Result<Response, BlobError>), first_err: &mut Option<BlobError>| {
            let result = r.1.and_then(|resp| done(r.0, resp));
            if let Err(e) = result {
                first_err.get_or_insert(e);
            }
        };
        for (req, tag) in jobs {
            while in_flight >= self.concurrency {
                take(rx.recv().expect("sender alive"), &mut first_err);
                in_flight -= 1;
            }
            if first_err.is_some() {
                break;
            }
            let (inner, tx) = (self.inner.clone(), tx.clone());
            self.handle.spawn(async move {
                let _ = tx.send((tag, inner.send(req).await));
            });
            in_flight += 1;
        }
        while in_flight > 0 {
            take(rx.recv().expect("sender alive"), &mut first_err);
            in_flight -= 1;
        }
        first_err.map_or(Ok(()), Err)
    }

    fn out_of_range(&self, name: &str, offset: u64, end: u64, len: u64) -> BlobError {
        BlobError::OutOfRange {
            store: self.describe(),
            name: name.to_owned(),
            offset,
            end,
            len,
        }
    }

    fn check_write(
        &self,
        name: &str,
        offset: u64,
        len: u64,
        what: [&'static str; 2],
    ) -> Result<(), BlobError> {
        check_name(name)?;
        check_aligned(what[0], offset)?;
        check_aligned(what[1], len)?;
        let end = offset.saturating_add(len);
        if end > MAX_PAGE_BLOB {
            return Err(BlobError::OverLimit {
                what: "end of the written range",
                value: end,
                limit: MAX_PAGE_BLOB,
                limit_name: "8 TiB, the largest page blob",
            });
        }
        Ok(())
    }

    fn put_page_request(name: &str, offset: u64, data: Vec<u8>, crc: String) -> Request {
        let mut req = Request::new("Put Page", Method::PUT, Some(name))
            .query("comp", "page")
            .header("x-ms-page-write", "update")
            .header("x-ms-range", range_header(offset, data.len() as u64))
            .header("x-ms-content-crc64", crc);
        req.body = data;
        req
    }

    /// Test hook: sends one Put Page whose `x-ms-content-crc64` does not match its body, to check that the
    /// service refuses it. Not for production use.
    #[doc(hidden)]
    pub fn put_page_with_wrong_checksum(
        &self,
        name: &str,
        offset: u64,
        data: &[u8],
    ) -> Result<(), BlobError> {
        self.check_write(name, offset, data.len() as u64, ["write offset", "write length"])?;
        let mut other = data.to_vec();
        other[0] ^= 0xFF;
        self.send(Self::put_page_request(
            name,
            offset,
            data.to_vec(),
            crc64_header(&other),
        ))
        .map(drop)
    }

    /// Copies `source` (an object of this container) onto `dest` with Copy Blob and waits until the service
    /// reports success; a failed or aborted copy is [`BlobError::CopyFailed`].
    pub fn copy_blob(&self, source: &str, dest: &str) -> Result<(), BlobError> {
        let mut source_url = self.blob_url(source)?;
        self.inner.signer.prepare_url(&mut source_url);
        self.copy_from_url(source_url.as_str(), dest)
    }

    /// Copies the object at `source_url` (readable by the service: same account, public, or with a SAS) onto
    /// `dest` and waits for the copy to finish.
    pub fn copy_from_url(&self, source_url: &str, dest: &str) -> Result<(), BlobError> {
        check_name(dest)?;
        let req = Request::new("Copy Blob", Method::PUT, Some(dest)).header("x-ms-copy-source", source_url);
        let mut resp = self.send(req)?;
        let started = Instant::now();
        loop {
            let status = resp.header("x-ms-copy-status").unwrap_or("").to_owned();
            match status.as_str() {
                "success" => return Ok(()),
                "pending" if started.elapsed() < self.copy_timeout => {
                    std::thread::sleep(self.copy_poll_interval);
                    resp = self.send(Request::new("Get Blob Properties", Method::HEAD, Some(dest)))?;
                }
                _ => {
                    return Err(BlobError::CopyFailed {
                        store: self.describe(),
                        name: dest.to_owned(),
                        description: match status.as_str() {
                            "pending" => format!("still pending after {:?}", self.copy_timeout),
                            _ => resp
                                .header("x-ms-copy-status-description")
                                .unwrap_or("")
                                .to_owned(),
                        },
                        status: if status.is_empty() {
                            "missing".to_owned()
                        } else {
                            status
                        },
                    })
                }
            }
        }
    }

    fn metadata_headers(mut req: Request, metadata: &Metadata) -> Result<Request, BlobError> {
        check_metadata(metadata)?;
        for (k, v) in metadata {
            req = req.header(&format!("x-ms-meta-{k}"), v.clone());
        }
        Ok(req)
    }

    fn read_chunks(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), BlobError> {
        let len = buf.len() as u64;
        let jobs = (0..len).step_by(MAX_PUT_PAGE as usize).map(|at| {
            let n = (len - at).min(MAX_PUT_PAGE);
            let mut req = Request::new("Get Blob", Method::GET, Some(name))
                .header("x-ms-range", range_header(offset + at, n));
            req.max_body = n as usize;
            (req, (at, n))
        });
        let mut short = false;
        self.send_many(jobs, |(at, n), resp| {
            if resp.body.len() as u64 != n {
                short = true;
            } else {
                buf[at as usize..(at + n) as usize].copy_from_slice(&resp.body);
            }
            Ok(())
        })?;
        if short {
            let blob_len = self.properties(name)?.len;
            return Err(self.out_of_range(name, offset, offset + len, blob_len));
        }
        Ok(())
    }
}

mod store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings() {
        let o = AzureOptions::from_connection_string(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;",
            "cont",
        )
        .unwrap();
        assert_eq!(o.endpoint, "http://127.0.0.1:1/devstoreaccount1");
        assert_eq!(
            (o.account.as_str(), o.container.as_str()),
            ("devstoreaccount1", "cont")
        );
        assert!(matches!(o.credential, Credential::SharedKey(ref k) if k == "a2V5"));
        let o =
            AzureOptions::from_connection_string("AccountName=acct;SharedAccessSignature=sv=1&sig=x", "c")
                .unwrap();
        assert_eq!(o.endpoint, "https://acct.blob.core.windows.net");
        assert!(matches!(o.credential, Credential::Sas(ref t) if t == "sv=1&sig=x"));
        for bad in ["AccountKey=a2V5", "AccountName=a", "AccountName"] {
            let e = AzureOptions::from_connection_string(bad, "c").unwrap_err();
            assert!(matches!(e, BlobError::InvalidConfig { .. }), "{bad}: {e}");
            assert!(!e.to_string().contains("a2V5"));
        }
    }

    #[test]
    fn crc64_known_answer() {
        // CRC-64/NVME check value of "123456789" (the catalogue's check), sent little-endian in Base64.
        assert_eq!(CRC64.checksum(b"123456789"), 0xae8b_1486_0a79_9888);
        assert_eq!(
            crc64_header(b"123456789"),
            base64::engine::general_purpose::STANDARD.encode(0xae8b_1486_0a79_9888u64.to_le_bytes())
        );
    }
}
