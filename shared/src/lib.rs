//! seedship-shared: the domain types and formats shared by the agent, diskprep and the emulator.
//!
//! Each module owns one concept. The library never prints: it reports through [`progress::Progress`],
//! `tracing` events and typed errors, and the binaries decide what the operator sees.

pub mod api;
pub mod blob;
pub mod error;
pub mod logging;
pub mod progress;
pub mod publish_settings;

pub use error::{Error, Result};
