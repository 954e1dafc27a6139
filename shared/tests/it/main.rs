//! The integration tests of seedship-shared: one binary, one module per area.

mod blob;
mod tar;
//! The single integration-test binary of seedship-shared: one module per area.
mod luks;
