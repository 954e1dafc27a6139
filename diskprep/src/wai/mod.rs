//! The WAImportExport spellings. This branch holds RepairImport only: [`repair_args`] turns a
//! `RepairImport /r: /d: /sn: /sk: /CopyLogFile: ...` command line into ordinary options before clap sees it,
//! as [`crate::args`] does for `s:`/`p:`/`u:`, and [`repair`] is the command. docs/waimportexport.md lists
//! every flag and what it maps to.

pub mod repair;
pub mod repair_args;
