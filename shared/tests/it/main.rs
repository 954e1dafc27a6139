//! The integration tests of seedship-shared: one binary, one module per area.

mod api;
mod arm;
mod blob;
mod copylog;
mod fuzz;
mod journal;
mod luks;
mod manifest;
mod tar;
