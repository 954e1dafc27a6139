//! ImportDisposition (reference section 2.1): what happens when a blob the manifest names already exists
//! before the import. `rename` writes to `name (2)`, `name (3)`, ... (before the last dot of the last path
//! segment: `Seattle.jpg` → `Seattle (2).jpg`), `no-overwrite` skips the blob, `overwrite` replaces it. The
//! decision is taken once per blob and job, when the first drive holding a part of it is imported.

use seedship_shared::blob::{BlobError, BlobStore};
use seedship_shared::manifest::copylog::{BlobStatus, DispositionStatus};
use seedship_shared::manifest::ImportDisposition;

/// How many renamed names (` (2)` ... ) are tried before a blob is logged `RenameFailed`.
pub const MAX_RENAME: u32 = 1000;

/// Where a blob path of the manifests goes, decided once per import of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Write into this blob (container, name); `disposition` is what the log reports.
    Write {
        container: String,
        name: String,
        disposition: DispositionStatus,
    },
    /// Not imported; `status` is the blob status logged, `disposition` the disposition status.
    Skip {
        status: BlobStatus,
        disposition: DispositionStatus,
    },
}

/// `Seattle.jpg` → `Seattle (n).jpg`, `dir/name` → `dir/name (n)` (the dot must be in the last segment).
pub fn renamed(name: &str, n: u32) -> String {
    let seg = name.rfind('/').map_or(0, |i| i + 1);
    match name[seg..].rfind('.') {
        Some(dot) if dot > 0 => {
            let dot = seg + dot;
            format!("{} ({n}){}", &name[..dot], &name[dot..])
        }
        _ => format!("{name} ({n})"),
    }
}

fn exists(store: &dyn BlobStore, name: &str) -> Result<bool, BlobError> {
    match store.properties(name) {
        Ok(_) => Ok(true),
        Err(BlobError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Applies the disposition to a blob the job has not written yet, creating the page blob to write into.
pub fn resolve_target(
    store: &dyn BlobStore,
    container: &str,
    name: &str,
    length: u64,
    disposition: ImportDisposition,
) -> Target {
    resolve(store, container, name, disposition, &|name| {
        store.create(name, length, &Default::default())
    })
}

/// [`resolve_target`] for a block blob: nothing is created yet (Put Block List creates the blob once its
/// blocks are uploaded); `overwrite` deletes the existing blob, whatever its type.
pub fn resolve_block_target(
    store: &dyn BlobStore,
    container: &str,
    name: &str,
    disposition: ImportDisposition,
) -> Target {
    resolve(store, container, name, disposition, &|_| Ok(()))
}

fn resolve(
    store: &dyn BlobStore,
    container: &str,
    name: &str,
    disposition: ImportDisposition,
    create: &dyn Fn(&str) -> Result<(), BlobError>,
) -> Target {
    let failed = |status| Target::Skip {
        status,
        disposition: DispositionStatus::Cancelled,
    };
    let write = |name: String, disposition| Target::Write {
        container: container.to_owned(),
        name,
        disposition,
    };
    let found = match exists(store, name) {
        Ok(f) => f,
        Err(_) => return failed(BlobStatus::BlobRequestFailed),
    };
    match (found, disposition) {
        (false, _) => match create(name) {
            Ok(()) => write(name.to_owned(), DispositionStatus::Created),
            Err(_) => failed(BlobStatus::BlobRequestFailed),
        },
        (true, ImportDisposition::NoOverwrite) => Target::Skip {
            status: BlobStatus::Completed,
            disposition: DispositionStatus::Skipped,
        },
        (true, ImportDisposition::Overwrite) => {
            let replaced = match store.delete(name) {
                Ok(()) | Err(BlobError::NotFound { .. }) => create(name),
                Err(e) => Err(e),
            };
            match replaced {
                Ok(()) => write(name.to_owned(), DispositionStatus::Overwritten),
                Err(_) => failed(BlobStatus::BlobRequestFailed),
            }
        }
        (true, ImportDisposition::Rename) => {
            for n in 2..=MAX_RENAME {
                let candidate = renamed(name, n);
                match exists(store, &candidate) {
                    Ok(true) => continue,
                    Ok(false) => {
                        return match create(&candidate) {
                            Ok(()) => write(candidate, DispositionStatus::Renamed),
                            Err(_) => failed(BlobStatus::RenameFailed),
                        }
                    }
                    Err(_) => return failed(BlobStatus::RenameFailed),
                }
            }
            failed(BlobStatus::RenameFailed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seedship_shared::blob::MemoryStore;

    #[test]
    fn rename_rule_follows_the_reference() {
        assert_eq!(renamed("Seattle.jpg", 2), "Seattle (2).jpg");
        assert_eq!(renamed("a.b/Seattle.tar.gz", 3), "a.b/Seattle.tar (3).gz");
        assert_eq!(renamed("dir.x/name", 2), "dir.x/name (2)");
        assert_eq!(renamed(".hidden", 2), ".hidden (2)");
    }

    fn existing(store: &MemoryStore, name: &str) {
        store.create(name, 1024, &Default::default()).unwrap();
        store.write_pages(name, 0, &[7u8; 1024]).unwrap();
    }

    #[test]
    fn dispositions() {
        let s = MemoryStore::default();
        let t = resolve_target(&s, "c", "new.img", 4096, ImportDisposition::NoOverwrite);
        assert_eq!(
            t,
            Target::Write {
                container: "c".into(),
                name: "new.img".into(),
                disposition: DispositionStatus::Created
            }
        );
        assert_eq!(s.properties("new.img").unwrap().len, 4096);

        existing(&s, "a.img");
        existing(&s, "a (2).img");
        match resolve_target(&s, "c", "a.img", 4096, ImportDisposition::Rename) {
            Target::Write {
                name, disposition, ..
            } => {
                assert_eq!(
                    (name.as_str(), disposition),
                    ("a (3).img", DispositionStatus::Renamed)
                );
            }
            t => panic!("{t:?}"),
        }
        assert_eq!(s.properties("a.img").unwrap().len, 1024, "the original is kept");
        assert_eq!(s.properties("a (3).img").unwrap().len, 4096);

        let t = resolve_target(&s, "c", "a.img", 4096, ImportDisposition::NoOverwrite);
        assert_eq!(
            t,
            Target::Skip {
                status: BlobStatus::Completed,
                disposition: DispositionStatus::Skipped
            }
        );
        assert_eq!(s.properties("a.img").unwrap().len, 1024);

        let t = resolve_target(&s, "c", "a.img", 4096, ImportDisposition::Overwrite);
        assert!(
            matches!(
                t,
                Target::Write {
                    disposition: DispositionStatus::Overwritten,
                    ..
                }
            ),
            "{t:?}"
        );
        let mut back = vec![1u8; 1024];
        s.read_at("a.img", 0, &mut back).unwrap();
        assert_eq!(s.properties("a.img").unwrap().len, 4096);
        assert!(back.iter().all(|&b| b == 0), "the old bytes are gone");
    }
}
