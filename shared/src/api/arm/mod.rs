//! The Resource Manager Import/Export API, `Microsoft.ImportExport` api-version 2021-01-01: its camelCase
//! types ([`types`]) and a client ([`ArmClient`], with [`BlockingArmClient`] for the synchronous CLIs).
//!
//! Requests carry `Authorization: Bearer` with a token for `{management endpoint}/.default` from a
//! [`TokenSource`](crate::entra::TokenSource) (a Microsoft Entra ID credential). Every failure is an
//! [`ArmError`] naming the operation, the job and the HTTP status, and keeping Resource Manager's
//! `{"error":{"code","message"}}`. Timeouts, 5xx and 429 answers are retried (bounded, with backoff; a
//! `Retry-After` header sets the wait); other 4xx answers are final. The specification declares no
//! long-running operation for this provider (every operation answers 200/201 with the result), so the client
//! does not poll `Azure-AsyncOperation`; an unexpected 202 is reported as such. docs/api.md, section "classic vs
//! Resource Manager", lists how this API differs from the classic one.

mod client;
pub mod types;

pub use client::{
    ArmClient, ArmClientOptions, BlockingArmClient, ARM_API_VERSION, PUBLIC_MANAGEMENT_ENDPOINT,
};
pub use types::*;

use crate::entra::EntraError;

/// The operations of the Resource Manager API, for error messages and logs (the specification's operation ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArmOperation {
    ListLocations,
    GetLocation,
    CreateJob,
    GetJob,
    UpdateJob,
    DeleteJob,
    ListJobsBySubscription,
    ListJobsByResourceGroup,
    ListBitLockerKeys,
}

impl std::fmt::Display for ArmOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ArmOperation::ListLocations => "Locations_List",
            ArmOperation::GetLocation => "Locations_Get",
            ArmOperation::CreateJob => "Jobs_Create",
            ArmOperation::GetJob => "Jobs_Get",
            ArmOperation::UpdateJob => "Jobs_Update",
            ArmOperation::DeleteJob => "Jobs_Delete",
            ArmOperation::ListJobsBySubscription => "Jobs_ListBySubscription",
            ArmOperation::ListJobsByResourceGroup => "Jobs_ListByResourceGroup",
            ArmOperation::ListBitLockerKeys => "BitLockerKeys_List",
        })
    }
}

/// A failure of the Resource Manager client.
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    /// No bearer token could be had for the management endpoint.
    #[error("{operation}{job}: no access token for {scope}: {source}")]
    Token {
        operation: ArmOperation,
        job: crate::api::JobRef,
        scope: String,
        source: Box<EntraError>,
    },
    #[error("the Resource Manager endpoint '{url}' is not usable: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("the CA certificate ({what}) for the Resource Manager endpoint is not usable PEM: {reason}")]
    ManagementCa { what: String, reason: String },
    #[error("cannot set up the HTTPS client: {0}")]
    Setup(String),
    /// Resource Manager answered with an `{"error":{...}}` body.
    #[error(transparent)]
    Service(Box<ArmServiceError>),
    /// An unexpected status without an error body.
    #[error("{operation}{job} failed: HTTP {status} without an error body: {excerpt}{}", hint(*status))]
    Http {
        operation: ArmOperation,
        job: crate::api::JobRef,
        status: u16,
        excerpt: String,
        retry_after: Option<std::time::Duration>,
    },
    /// No answer (connection refused, TLS failure, timeout).
    #[error("{operation}{job} failed: no answer from {url}: {reason}")]
    Transport {
        operation: ArmOperation,
        job: crate::api::JobRef,
        url: String,
        reason: String,
        timeout: bool,
    },
    /// The answer is longer than the client reads ([`crate::net::MAX_API_ANSWER`]); it was not read.
    #[error("{operation}{job}: the answer of {url} (HTTP {status}) is longer than {limit} bytes; refused without reading it")]
    TooLong {
        operation: ArmOperation,
        job: crate::api::JobRef,
        url: String,
        status: u16,
        limit: usize,
    },
    /// The answer's body did not decode.
    #[error("{operation}{job}: the answer (HTTP {status}) is not the expected JSON: {reason}")]
    Decode {
        operation: ArmOperation,
        job: crate::api::JobRef,
        status: u16,
        reason: String,
    },
}

/// A Resource Manager error answer: what failed, the status and the service's code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation}{job} failed: HTTP {status} {code}: {message}{}", hint(*status))]
pub struct ArmServiceError {
    pub operation: ArmOperation,
    pub job: crate::api::JobRef,
    pub status: u16,
    /// `error.code`, e.g. `ResourceNotFound`, `InvalidAuthenticationToken`.
    pub code: String,
    pub message: String,
    pub target: Option<String>,
    /// The `Retry-After` header of a 429 or 503 answer.
    pub retry_after: Option<std::time::Duration>,
}

fn hint(status: u16) -> &'static str {
    match status {
        401 => " (the access token was refused: check the tenant, the client id, the credential and the management endpoint)",
        403 => " (the application has no role that allows this: give it Contributor on the resource group, or the Import/Export role)",
        429 => " (too many requests: try again later)",
        _ => "",
    }
}

impl ArmError {
    /// Whether the same call may succeed when tried again: timeouts, 429 and 5xx answers.
    pub fn is_retryable(&self) -> bool {
        match self.status() {
            Some(s) => s == 429 || s >= 500,
            None => matches!(self, ArmError::Transport { timeout: true, .. }),
        }
    }

    /// The HTTP status, when the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ArmError::Service(e) => Some(e.status),
            ArmError::Http { status, .. }
            | ArmError::Decode { status, .. }
            | ArmError::TooLong { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Resource Manager's `error.code`, when it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ArmError::Service(e) => Some(&e.code),
            _ => None,
        }
    }

    /// How long the service asked to wait (`Retry-After`), when it did.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ArmError::Service(e) => e.retry_after,
            ArmError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
