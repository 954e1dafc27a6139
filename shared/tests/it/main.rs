//! The single integration-test binary of seedship-shared: one module per area.

mod luks;
