//! What every handler shares: the emulator's state ([`AppState`]) and how a handler fails (`Failure`).
//! Below both the job handlers (`handlers`) and the operator endpoints (`operator`).

use crate::config::{EmulatorConfig, EmulatorDir};
use crate::store::{Store, StoreError};
use crate::validation::Rejection;
use seedship_shared::api::Location;
use std::sync::Mutex;

/// Everything a request may need.
#[derive(Debug)]
pub struct AppState {
    pub dir: EmulatorDir,
    pub config: EmulatorConfig,
    pub locations: Vec<Location>,
    pub store: Mutex<Store>,
    /// The receives the operator endpoint started.
    pub receiving: crate::datacentre::Receiving,
    /// Entra ID: the registrations and the token-signing key (`None` for a directory from before Entra).
    pub entra: Option<crate::entra::Authority>,
    /// The emulator's own URL (`https://host:port`): the authority and management endpoint clients use.
    pub public_url: String,
}

/// Why a handler did not produce its reply: a rejection for the client (with the API version to answer
/// in, when known), or a failure of the job store.
pub(crate) enum Failure {
    Rejected(Rejection, Option<String>),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<Rejection> for Failure {
    fn from(r: Rejection) -> Self {
        Failure::Rejected(r, None)
    }
}
