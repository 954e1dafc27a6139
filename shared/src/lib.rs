//! seedship-shared: the domain types and formats shared by the agent, diskprep and the emulator.
//!
//! Each module owns one concept. The library never prints: it reports through [`progress::Progress`],
//! `tracing` events and typed errors, and the binaries decide what the operator sees.
//!
//! # Errors
//!
//! Policy, followed by every module of this crate:
//! - Library code returns typed errors (`thiserror` enums, one per subsystem) that carry what an operator needs
//!   to act: the path, the blob or object name, the drive id, the job name, the HTTP status and service code.
//! - Messages say what failed and, where there is one, what to do about it. They never contain secrets
//!   (passphrases, recovery keys, account keys, SAS signatures).
//! - A subsystem error that may succeed when tried again says so through `is_retryable()`; only wrappers
//!   (such as the blob store's retry wrapper) decide to retry. HTTP 4xx is permanent; timeouts, connection
//!   errors and 5xx are transient.
//! - Binaries add context with `anyhow` and map errors to their exit codes; nothing in this crate exits.
//! - A failure on one file of a backup is logged and counted by the caller, not fatal.

pub mod aligned;
pub mod api;
pub mod blob;
pub mod cancel;
pub mod chunker;
pub mod crypto;
pub mod entra;
pub mod exit;
pub mod host;
pub mod journal;
pub mod jsonout;
pub mod logging;
pub mod luks;
pub mod manifest;
pub mod md5batch;
pub mod net;
pub mod progress;
pub mod publish_settings;
pub mod recovery;
pub mod repair;
pub mod repo;
pub mod secret;
pub mod staging;
pub mod tar;
pub mod time;
pub mod units;
