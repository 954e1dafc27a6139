//! One JSON document on standard output, for the binaries' `--json` options: [`json_stdout`] moves the
//! process's standard output to standard error (so every human-readable line still reaches the operator) and
//! hands back the original, where [`emit`] writes the document. The library itself never prints.

use serde::Serialize;
use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;

/// Redirects standard output to standard error for the rest of the process and returns the original
/// standard output, where the JSON document goes: every human-readable line still reaches the operator (on
/// standard error) and standard output holds nothing but the document.
pub fn json_stdout() -> std::io::Result<File> {
    std::io::stdout().flush()?;
    // SAFETY: dup and dup2 on the process's own standard descriptors; no memory is passed. The returned
    // descriptor is new and owned by the File from here on.
    unsafe {
        let saved = libc::dup(1);
        if saved < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::dup2(2, 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(File::from_raw_fd(saved))
    }
}

/// Writes `doc` as one JSON document (and a newline) to `out`.
pub fn emit<T: Serialize>(out: &mut File, doc: &T) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, doc)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}
