//! The WAImportExport spellings: `seedship-diskprep PrepImport /j:FILE /id:SESSION /t:DRIVE /format ...`
//! works as Microsoft's tool is documented (seed 002, docs/importexport-reference.md section 3), with Linux
//! paths for drive letters.
//!
//! [`split_token`] recognises one `/Name[:value]` token (names case-insensitive, as WAImportExport takes
//! them); [`prep_args`] turns a PrepImport command line into ordinary options before clap sees it, as
//! [`crate::args`] does for `s:`/`p:`/`u:`; [`journal`] is the drive's record (the `/j:` file); [`prepimport`]
//! is the command and its flow, over `drive` (probing, formatting or unlocking the target) and `session`
//! (planning, copying, the manifest, aborting); [`repair_args`] and [`repair`] are RepairImport's translator
//! and command (after an import, the damaged ranges again). docs/waimportexport.md lists every flag and what
//! it maps to.

pub mod additional;
pub mod chain;
mod drive;
pub mod journal;
pub mod prep_args;
pub mod prepimport;
pub mod repair;
pub mod repair_args;
mod request;
mod session;
pub mod source;

/// One `/Name` or `/Name:value` token. `name` is as typed (compare with `eq_ignore_ascii_case`); `value` is
/// `None` for a bare flag and `Some("")` for `/Name:` with nothing after the colon (WAImportExport's
/// documentation writes `/id: <SessionId>` with a space, so the value may be the next argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token<'a> {
    pub name: &'a str,
    pub value: Option<&'a str>,
}

/// Splits `arg` when it is a WAImportExport token: a `/`, letters, then the end or a `:`. A Linux path such
/// as `/srv/staging` is not a token (its first component is followed by `/`), so paths pass through.
pub fn split_token(arg: &str) -> Option<Token<'_>> {
    let rest = arg.strip_prefix('/')?;
    let end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    if end == 0 {
        return None;
    }
    let (name, tail) = rest.split_at(end);
    match tail.strip_prefix(':') {
        Some(value) => Some(Token {
            name,
            value: Some(value),
        }),
        None if tail.is_empty() => Some(Token { name, value: None }),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t<'a>(name: &'a str, value: Option<&'a str>) -> Option<Token<'a>> {
        Some(Token { name, value })
    }

    #[test]
    fn tokens_and_paths() {
        assert_eq!(split_token("/j:/tmp/d1.jrn"), t("j", Some("/tmp/d1.jrn")));
        assert_eq!(split_token("/id:"), t("id", Some("")));
        assert_eq!(split_token("/format"), t("format", None));
        assert_eq!(split_token("/BlobType:PageBlob"), t("BlobType", Some("PageBlob")));
        assert_eq!(split_token("/dstdir:backup/"), t("dstdir", Some("backup/")));
        assert_eq!(split_token("/srv/staging"), None);
        assert_eq!(split_token("/"), None);
        assert_eq!(split_token("/1:x"), None);
        assert_eq!(split_token("session1"), None);
        assert_eq!(split_token("-v"), None);
    }
}
