//! The classic Azure Import/Export API (`https://<ServiceManagementUrl>/<subscription>/services/importexport/`):
//! its OData JSON-light types, the management-certificate identity, seed 000's location rule and a client.
//!
//! The client is async ([`ApiClient`]); [`BlockingApiClient`] wraps it for the synchronous CLIs. Every failure
//! is an [`ApiError`] that names the operation, the job and the HTTP status, and keeps the service's
//! `odata.error` code, message and `ExtendedCode`. Only timeouts and 5xx answers are retried (bounded, with
//! backoff); 4xx answers are final. docs/api.md describes the wire format this project settled on.

mod access;
pub mod arm;
mod client;
pub mod identity;
pub mod location;
mod service;
pub mod types;

pub use access::{connect, recorded_credential, recorded_options, ApiAccess, ConnectError, Connection};
pub use client::{
    percent_encode, ApiClient, ApiClientOptions, BlockingApiClient, RetryPolicy, DEFAULT_API_VERSION,
    MAX_RESPONSE_LEN,
};
pub use identity::{IdentityError, ManagementIdentity};
pub use location::{choose_location, LocationChoice, LocationError};
pub use service::{
    arm_package, arm_put, arm_return_address, arm_update, classic_job, classic_location, classic_package,
    ImportError, ImportService,
};
pub use types::*;

use crate::net::TransportCause;

/// The environment variable binaries read for `--management-ca FILE` (a PEM file of extra trusted CA
/// certificates, e.g. the emulator's `ca.pem`). The library itself never reads the environment.
pub const MANAGEMENT_CA_ENV: &str = "SEEDSHIP_MANAGEMENT_CA";

/// The operations of the API, for error messages and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    ListLocations,
    PutJob,
    GetJob,
    ListJobs,
    UpdateJobProperties,
    DeleteJob,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::ListLocations => "List Locations",
            Operation::PutJob => "Put Job",
            Operation::GetJob => "Get Job",
            Operation::ListJobs => "List Jobs",
            Operation::UpdateJobProperties => "Update Job Properties",
            Operation::DeleteJob => "Delete Job",
        })
    }
}

/// Names the job of a failed call, or nothing for subscription-wide operations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobRef(pub Option<String>);

impl std::fmt::Display for JobRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(j) => write!(f, " of job '{j}'"),
            None => Ok(()),
        }
    }
}

/// A failure of the Import/Export API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("the management CA certificate ({what}) is not usable PEM: {reason}")]
    ManagementCa { what: String, reason: String },
    #[error("the service management URL '{url}' is not a usable https URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot set up the HTTPS client: {0}")]
    Setup(String),
    /// The service answered with an `odata.error` body.
    #[error(transparent)]
    Service(Box<ServiceError>),
    /// The service answered with an unexpected status and no `odata.error` body.
    #[error("{operation}{job} failed: HTTP {status} without an odata.error body: {excerpt}{}", hint(*status))]
    Http {
        operation: Operation,
        job: JobRef,
        status: u16,
        excerpt: String,
    },
    /// No answer (connection refused, TLS failure, name resolution, timeout).
    #[error("{operation}{job} failed: no answer from {url}: {reason}{}", transport_hint(*cause))]
    Transport {
        operation: Operation,
        job: JobRef,
        url: String,
        reason: String,
        cause: TransportCause,
    },
    /// The answer's body did not decode.
    #[error("{operation}{job}: the service's answer (HTTP {status}) is not the expected JSON: {reason}")]
    Decode {
        operation: Operation,
        job: JobRef,
        status: u16,
        reason: String,
    },
    /// The answer is longer than the client reads ([`MAX_RESPONSE_LEN`]); it was not read.
    #[error("{operation}{job}: the answer of {url} (HTTP {status}) is longer than {limit} bytes; refused without reading it")]
    TooLong {
        operation: Operation,
        job: JobRef,
        url: String,
        status: u16,
        limit: usize,
    },
    #[error(transparent)]
    Location(#[from] LocationError),
}

/// An `odata.error` answer: what failed, the HTTP status, and the service's code, message and ExtendedCode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{operation}{job} failed: HTTP {status}{}: {message}{}",
    extended_code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(),
    hint(*status)
)]
pub struct ServiceError {
    pub operation: Operation,
    pub job: JobRef,
    pub status: u16,
    /// `odata.error.code` (the status as a string in the documented samples).
    pub code: String,
    pub message: String,
    pub extended_code: Option<String>,
    pub extended_information: Option<String>,
}

fn hint(status: u16) -> &'static str {
    match status {
        403 => " (is the management certificate registered for this subscription? download the publish-settings file again)",
        _ => "",
    }
}

/// What to check when the service gave no answer, by cause.
fn transport_hint(cause: TransportCause) -> &'static str {
    match cause {
        TransportCause::Tls => {
            " (the service's TLS certificate is not trusted: for the emulator, or behind a TLS-intercepting \
             proxy, give its CA certificate with --management-ca FILE or SEEDSHIP_MANAGEMENT_CA)"
        }
        TransportCause::Dns => {
            " (the service's host name does not resolve: check the ServiceManagementUrl in the \
             publish-settings file (--publish-settings) and this machine's DNS)"
        }
        _ => "",
    }
}

impl ApiError {
    /// Whether the same call may succeed when tried again: timeouts and 5xx answers.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Service(e) => e.status >= 500,
            ApiError::Http { status, .. } => *status >= 500,
            ApiError::Transport { cause, .. } => *cause == TransportCause::Timeout,
            _ => false,
        }
    }

    /// The HTTP status, when the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Service(e) => Some(e.status),
            ApiError::Http { status, .. }
            | ApiError::Decode { status, .. }
            | ApiError::TooLong { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the failure may pass by itself (the service is down or overloaded: a timeout, a refused
    /// connection, a 5xx answer), so that a scheduled run may wait and ask again; certificate, name
    /// resolution and 4xx failures need a change of settings and never pass by waiting.
    pub fn may_pass(&self) -> bool {
        match self {
            ApiError::Transport { cause, .. } => cause.may_pass(),
            _ => self.status().is_some_and(|s| s >= 500),
        }
    }

    /// The service's `ExtendedCode`, when it sent one.
    pub fn extended_code(&self) -> Option<&str> {
        match self {
            ApiError::Service(e) => e.extended_code.as_deref(),
            _ => None,
        }
    }
}
