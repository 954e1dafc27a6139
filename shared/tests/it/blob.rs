//! Blob stores: the conformance suite run against every store, plus store-specific tests.

#[path = "blob_conformance.rs"]
mod conformance;

use conformance::{conformance, Caps, Ranges};
use seedship_shared::blob::{
    AzureOptions, AzureStore, BlobError, BlobStore, Credential, LocalStore, MemoryStore, Metadata,
    RetryPolicy, RetryStore,
};
use seedship_testkit::{Azurite, AZURITE_ACCOUNT, AZURITE_KEY};

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

/// A store on container `container` of the Azurite instance, listing `page` names per request.
fn azure_store(azurite: &Azurite, container: &str, page: u32) -> AzureStore {
    let mut o = AzureOptions::new(
        &azurite.endpoint(),
        AZURITE_ACCOUNT,
        container,
        Credential::SharedKey(AZURITE_KEY.into()),
    );
    o.list_page_size = page;
    AzureStore::new(o).unwrap()
}

#[test]
fn azure_store_conforms() {
    let azurite = Azurite::start();
    let store = azure_store(&azurite, "conformance", 5);
    store.create_container().unwrap();
    store.create_container().unwrap(); // creating an existing container is fine
    let missing = azure_store(&azurite, "missing", 5);
    let caps = Caps {
        ranges: Ranges::Exact,
        refuses_write_past_end: false, // Azurite does not enforce it
        list_objects: 13,              // three result pages of 5
    };
    conformance(&store, &missing, caps);
}

#[test]
fn azure_limits_are_checked_before_any_request() {
    // Nothing listens on this port: any request would fail with a transport error.
    let endpoint = format!(
        "http://127.0.0.1:{}/{AZURITE_ACCOUNT}",
        seedship_testkit::free_port()
    );
    let o = AzureOptions::new(
        &endpoint,
        AZURITE_ACCOUNT,
        "cont1",
        Credential::SharedKey(AZURITE_KEY.into()),
    );
    let store = AzureStore::new(o).unwrap();
    let e = store.write_pages("b", 100, &[1u8; 512]).unwrap_err();
    assert!(
        matches!(e, BlobError::Unaligned { .. }) && e.to_string().contains("write offset 100"),
        "{e}"
    );
    let e = store.write_pages("b", 0, &[1u8; 1000]).unwrap_err();
    assert!(e.to_string().contains("write length 1000"), "{e}");
    let e = store.clear_pages("b", 0, 1).unwrap_err();
    assert!(e.to_string().contains("clear length 1"), "{e}");
    let tib8 = seedship_shared::blob::MAX_PAGE_BLOB;
    for e in [
        store.create("b", tib8 + 512, &Metadata::new()).unwrap_err(),
        store.resize("b", tib8 + 512).unwrap_err(),
        store.write_pages("b", tib8, &[1u8; 512]).unwrap_err(),
        store.clear_pages("b", tib8 - 512, 1024).unwrap_err(),
    ] {
        assert!(
            matches!(e, BlobError::OverLimit { .. }) && e.to_string().contains("8 TiB"),
            "{e}"
        );
    }
    let bad_meta = Metadata::from([("bad-key".to_owned(), "v".to_owned())]);
    assert!(matches!(
        store.create("b", 512, &bad_meta),
        Err(BlobError::InvalidMetadata { .. })
    ));
    assert!(matches!(
        store.create("a//b", 512, &Metadata::new()),
        Err(BlobError::InvalidName { .. })
    ));
    // And a request really fails as a retryable transport error, without the key in the message.
    let e = store.properties("b").unwrap_err();
    assert!(
        matches!(e, BlobError::Transport { .. }) && e.is_retryable(),
        "{e}"
    );
    assert!(!format!("{e} {e:?}").contains(AZURITE_KEY));
}

#[test]
fn azure_options_are_checked() {
    let key = || Credential::SharedKey(AZURITE_KEY.into());
    for (endpoint, container, cred) in [
        ("not a url", "cont1", key()),
        ("ftp://h/a", "cont1", key()),
        ("http://h/a?sv=1", "cont1", key()),
        ("http://h/a", "C", key()),
        ("http://h/a", "cont1", Credential::SharedKey("%%%".into())),
        ("http://h/a", "cont1", Credential::Sas("sv=2020".into())),
    ] {
        let e = AzureStore::new(AzureOptions::new(endpoint, AZURITE_ACCOUNT, container, cred)).unwrap_err();
        assert!(matches!(e, BlobError::InvalidConfig { .. }), "{e}");
    }
}

#[test]
fn azure_wrong_key_is_403_naming_the_account() {
    let azurite = Azurite::start();
    let wrong = "AAAA".repeat(22);
    let o = AzureOptions::new(
        &azurite.endpoint(),
        AZURITE_ACCOUNT,
        "cont1",
        Credential::SharedKey(wrong.clone()),
    );
    let store = AzureStore::new(o).unwrap();
    let e = store.create_container().unwrap_err();
    assert_eq!(e.http_status(), Some(403), "{e}");
    assert!(!e.is_retryable());
    let text = e.to_string();
    assert!(
        text.contains("403") && text.contains("for account devstoreaccount1"),
        "{text}"
    );
    assert!(
        text.contains("AuthorizationFailure") && text.contains("account key or SAS"),
        "{text}"
    );
    assert!(!text.contains(&wrong));
}

#[test]
fn azure_put_page_with_a_wrong_checksum_is_refused_and_not_stored() {
    let azurite = Azurite::start();
    let store = azure_store(&azurite, "crc", 5000);
    store.create_container().unwrap();
    store.create("b", 64 * 1024, &Metadata::new()).unwrap();
    let data = conformance::pattern(9, 8192);
    let e = store.put_page_with_wrong_checksum("b", 4096, &data).unwrap_err();
    assert_eq!(e.http_status(), Some(400), "{e}");
    assert!(e.to_string().contains("Crc64Mismatch"), "{e}");
    assert!(!e.is_retryable());
    assert!(store.page_ranges("b").unwrap().is_empty());
    let mut back = vec![1u8; 8192];
    store.read_at("b", 4096, &mut back).unwrap();
    assert!(back.iter().all(|&b| b == 0), "the refused page was stored");
    // The same page with its right checksum is stored.
    store.write_pages("b", 4096, &data).unwrap();
    store.read_at("b", 4096, &mut back).unwrap();
    assert_eq!(back, data);
}

#[test]
fn azure_copy_blob_copies_bytes_and_metadata() {
    let azurite = Azurite::start();
    let store = azure_store(&azurite, "copy", 5000);
    store.create_container().unwrap();
    let m = Metadata::from([("logicallen".to_owned(), "5000".to_owned())]);
    store.create("src/a", 1 << 20, &m).unwrap();
    let data = conformance::pattern(10, 64 * 1024);
    store.write_pages("src/a", 512 * 1024, &data).unwrap();
    store.copy_blob("src/a", "dst/a").unwrap();
    let info = store.properties("dst/a").unwrap();
    assert_eq!((info.len, info.metadata), (1 << 20, m));
    let mut back = vec![0u8; data.len()];
    store.read_at("dst/a", 512 * 1024, &mut back).unwrap();
    assert_eq!(back, data);
    assert_eq!(
        store.page_ranges("dst/a").unwrap(),
        store.page_ranges("src/a").unwrap()
    );
    let e = store.copy_blob("src/missing", "dst/b").unwrap_err();
    assert!(
        matches!(
            e,
            BlobError::NotFound { .. } | BlobError::Http { .. } | BlobError::CopyFailed { .. }
        ),
        "{e}"
    );
}

#[test]
fn azure_upload_survives_an_azurite_restart_through_retry_store() {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};
    let mut azurite = Azurite::start();
    let policy = RetryPolicy {
        max_attempts: 40,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        max_total: Duration::from_secs(90),
    };
    let store = RetryStore::new(azure_store(&azurite, "restart", 5000), policy);
    store.create_container().unwrap();
    let total = 20 << 20;
    store.create("vol/0000", total as u64, &Metadata::new()).unwrap();
    let data = conformance::pattern(11, total);
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (stopped_tx, stopped_rx) = mpsc::channel::<Instant>();
    let azurite_ref = &mut azurite;
    let finished = std::thread::scope(|s| {
        s.spawn(move || {
            go_rx.recv().unwrap();
            azurite_ref.terminate();
            stopped_tx.send(Instant::now()).unwrap();
            std::thread::sleep(Duration::from_millis(500));
            azurite_ref.restart();
        });
        let sizes = [512 << 10, 1 << 20, 4 << 20, 2 << 20, 3 << 20];
        let mut off = 0;
        for (i, size) in sizes.iter().cycle().enumerate() {
            if off == total {
                break;
            }
            let n = (*size).min(total - off);
            store
                .write_pages("vol/0000", off as u64, &data[off..off + n])
                .unwrap();
            off += n;
            if i == 1 {
                go_tx.send(()).unwrap(); // stop Azurite while the upload goes on
            }
        }
        Instant::now()
    });
    let stopped_at = stopped_rx.recv().unwrap();
    assert!(stopped_at < finished, "Azurite was not stopped during the upload");
    let mut back = vec![0u8; total];
    store.read_at("vol/0000", 0, &mut back).unwrap();
    assert!(back == data, "the uploaded bytes differ after the restart");
    let want: Vec<std::ops::Range<u64>> = std::iter::once(0..total as u64).collect();
    assert_eq!(store.page_ranges("vol/0000").unwrap(), want);
}
