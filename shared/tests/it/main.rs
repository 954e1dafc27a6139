//! Integration tests of seedship-shared: one module per area.

mod api;
