//! Blob stores: the conformance suite run against every store, plus store-specific tests.

#[path = "blob_conformance.rs"]
mod conformance;

use conformance::{conformance, Caps, Ranges};
use seedship_shared::blob::{BlobError, BlobStore, LocalStore, MemoryStore, Metadata};

#[test]
fn memory_store_conforms() {
    let caps = Caps {
        ranges: Ranges::Exact,
        refuses_write_past_end: true,
        list_objects: 13,
    };
    conformance(&MemoryStore::default(), &MemoryStore::without_container(), caps);
}

#[test]
fn local_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("container"));
    store.create_container().unwrap();
    let missing = LocalStore::new(dir.path().join("missing"));
    let caps = Caps {
        ranges: Ranges::RoundedTo(64 * 1024),
        refuses_write_past_end: true,
        list_objects: 13,
    };
    conformance(&store, &missing, caps);
    assert!(!dir.path().join("container").exists());
}

#[test]
fn local_store_files_are_the_objects() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let m: Metadata = [("k".to_string(), "v".to_string())].into();
    store.create("data/0000", 4096, &m).unwrap();
    store.write_pages("data/0000", 512, &[9u8; 512]).unwrap();
    let bytes = std::fs::read(dir.path().join("data/0000")).unwrap();
    assert_eq!(bytes.len(), 4096);
    assert!(bytes[512..1024].iter().all(|&b| b == 9) && bytes[..512].iter().all(|&b| b == 0));
    // A file copied in by another tool is an object with empty metadata; the sidecar folder is not listed.
    std::fs::write(dir.path().join("foreign"), vec![1u8; 1024]).unwrap();
    let names: Vec<_> = store
        .list("")
        .unwrap()
        .into_iter()
        .map(|b| (b.name, b.metadata.len()))
        .collect();
    assert_eq!(
        names,
        vec![("data/0000".to_string(), 1), ("foreign".to_string(), 0)]
    );
    assert!(matches!(
        store.create(".seedship/x", 512, &m),
        Err(BlobError::InvalidName { .. })
    ));
    // A corrupt sidecar is reported with its path.
    let sidecar = dir.path().join(".seedship/meta/data/0000.json");
    std::fs::write(&sidecar, b"not json").unwrap();
    let e = store.properties("data/0000").unwrap_err().to_string();
    assert!(e.contains("0000.json"), "{e}");
}
