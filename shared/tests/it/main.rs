//! The integration tests of seedship-shared: one binary, one module per area.

mod copylog;
mod fuzz;
mod journal;
mod manifest;
mod tar;
