//! The integration tests of seedship-shared: one module per area.

mod blob;
