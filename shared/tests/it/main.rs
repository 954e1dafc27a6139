//! The integration tests of seedship-shared: one binary, one module per area.

mod api;
mod blob;
mod journal;
mod luks;
mod manifest;
mod tar;
