//! The import job's lifecycle after the drives are prepared: [`create`] (connect with the publish settings,
//! pick the location, Put Job once), [`record`] (`<staging>/<job>/diskprep/job.json` and the private JSON
//! writer), [`ship`] (`u:`: carrier, tracking number, return address; the job's and drives' state),
//! [`delete`] (`delete-job`), [`from_journals`] (`create-job --journal`: a job from `prepimport` journals), [`error`] (what all of them report), [`console`] (what the operator is asked
//! and shown) and `cmd` (the command-line glue that turns options into these calls).

pub(crate) mod cmd;
pub mod console;
pub mod create;
pub mod delete;
pub mod error;
pub mod from_journals;
pub mod record;
pub mod ship;
