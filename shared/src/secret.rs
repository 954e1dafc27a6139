//! Secrets given without putting them on a command line, where any user can read them in `/proc/<pid>/cmdline`
//! and `ps`: a file (`--xxx-file`, `SEEDSHIP_XXX_FILE`), an environment variable, or a prompt. What is read is
//! held in a [`Zeroizing`] string, wiped when dropped.

use std::io::Read;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the {what} from {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no {what}: write it into the file (one line)", path.display())]
    Empty { what: &'static str, path: PathBuf },
}

/// Reads a secret from `path`: the file's content without the trailing line break (and without surrounding
/// white space, which no key, SAS or recovery key contains).
pub fn from_file(path: &Path, what: &'static str) -> Result<Zeroizing<String>, SecretError> {
    let read = |source| SecretError::Read {
        what,
        path: path.to_path_buf(),
        source,
    };
    let mut raw = Zeroizing::new(String::new());
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut raw))
        .map_err(read)?;
    let secret = Zeroizing::new(raw.trim().to_owned());
    if secret.is_empty() {
        return Err(SecretError::Empty {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_without_the_line_break_and_names_the_file_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, "c2VjcmV0\n").unwrap();
        assert_eq!(from_file(&p, "storage account key").unwrap().as_str(), "c2VjcmV0");
        std::fs::write(&p, "\n").unwrap();
        let e = from_file(&p, "storage account key").unwrap_err().to_string();
        assert!(
            e.contains("holds no storage account key") && e.contains(&p.display().to_string()),
            "{e}"
        );
        let e = from_file(&dir.path().join("missing"), "SAS")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read the SAS from"), "{e}");
    }
}
