//! Preparing shipping drives: from a staged job to LUKS2 drives that each hold their part of the job, a
//! WAImportExport-style manifest and a journal.
//!
//! The flow is [`prepare`] (plan, then execute with a journal). Beneath it: [`staging`] (the staged jobs and
//! their check), [`drive`] (targets and the refusals that protect other disks), [`plan`] (spanning blobs over
//! drives), [`layout`] (where everything sits in a drive's payload, and what the copy records of it), [`error`], [`copy`] (writing one drive),
//! [`source`] (reading the staging files with `O_DIRECT` and hashing them while copying), [`readback`] (the
//! overlapped check of what was written), [`verify`] (the standalone check); the encrypted byte stream and its
//! `O_DIRECT` I/O are `seedship_shared::luks::{payload, direct}`,
//! [`session`] (the journal and the resumable state), [`keyfile`] (the recovery keys) and [`console`] (the
//! operator's terminal).

pub mod console;
pub mod copy;
pub mod drive;
pub mod error;
pub mod keyfile;
pub mod layout;
pub mod plan;
pub mod prepare;
pub mod readback;
pub mod session;
pub mod source;
pub mod staging;
pub mod verify;
