//! seedship-e2e: end-to-end scenarios across the agent, diskprep and the emulator.
//!
//! The scenarios live in `tests/tests/`; this library holds what they share.

pub use seedship_testkit as testkit;
