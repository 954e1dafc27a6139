//! seedship-shared: the domain types and formats shared by the agent, diskprep and the emulator.
//!
//! Each module owns one concept. The library never prints: it reports through [`progress::Progress`],
//! `tracing` events and typed errors, and the binaries decide what the operator sees.

pub mod aligned;
pub mod api;
pub mod blob;
pub mod chunker;
pub mod crypto;
pub mod error;
pub mod host;
pub mod journal;
pub mod logging;
pub mod luks;
pub mod manifest;
pub mod md5batch;
pub mod progress;
pub mod publish_settings;
pub mod recovery;
pub mod repo;
pub mod staging;
pub mod tar;
pub mod time;

pub use error::{Error, Result};
