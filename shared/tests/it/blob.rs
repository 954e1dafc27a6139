//! Blob stores: the conformance suite run against every store, plus store-specific tests.

#[path = "blob_conformance.rs"]
mod conformance;

use conformance::{conformance, Caps, Ranges};
use seedship_shared::blob::{
    AzureOptions, AzureStore, BlobError, BlobStore, Credential, LocalStore, MemoryStore, Metadata,
    RetryPolicy, RetryStore,
};
use seedship_testkit::{run_python, Azurite, AZURITE_ACCOUNT, AZURITE_KEY};

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

/// Long runs go past the page cache with an unaligned head and tail through it: on a disk folder and on
/// tmpfs (which refuses `O_DIRECT`), the file holds exactly what was written, over and around older data.
#[test]
fn local_store_long_writes_land_exactly_with_or_without_direct_io() {
    let disk = tempfile::tempdir().unwrap();
    let shm = std::path::Path::new("/dev/shm");
    let shm = shm.is_dir().then(|| tempfile::tempdir_in(shm).unwrap());
    for dir in std::iter::once(&disk).chain(shm.as_ref()) {
        let store = LocalStore::new(dir.path());
        let len = 8u64 << 20;
        store.create("v", len, &Metadata::new()).unwrap();
        let mut want = vec![0u8; len as usize];
        let old: Vec<u8> = (0..len as usize).map(|i| (i % 7 + 1) as u8).collect();
        store.write_pages("v", 0, &old).unwrap();
        want.copy_from_slice(&old);
        // 512-aligned but not 4096-aligned, 3 MiB + 1536 bytes long: head, direct middle and tail
        let at = 4096 * 3 + 1024;
        let data: Vec<u8> = (0..(3 << 20) + 1536).map(|i| (i * 31 % 251 + 1) as u8).collect();
        store.write_pages("v", at as u64, &data).unwrap();
        want[at..at + data.len()].copy_from_slice(&data);
        let mut back = vec![0u8; len as usize];
        store.read_at("v", 0, &mut back).unwrap();
        assert!(back == want, "store in {}", dir.path().display());
        assert!(std::fs::read(dir.path().join("v")).unwrap() == want);
    }
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
        text.contains("AuthorizationFailure") && text.contains("check the account key, SAS"),
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
fn azure_block_blobs_are_put_block_by_block_and_other_stores_refuse() {
    let azurite = Azurite::start();
    let store = azure_store(&azurite, "blocks", 5000);
    store.create_container().unwrap();
    let a = conformance::pattern(3, 4 << 20);
    let b = conformance::pattern(4, 7);
    store.put_block("f.bin", "AAAAAA==", &a).unwrap();
    store.put_block("f.bin", "AQAAAA==", &b).unwrap();
    assert!(
        store.properties("f.bin").is_err(),
        "uncommitted blocks make no blob"
    );
    store
        .put_block_list("f.bin", &["AAAAAA==".into(), "AQAAAA==".into()])
        .unwrap();
    assert_eq!(store.blob_type("f.bin").unwrap(), "BlockBlob");
    assert_eq!(store.properties("f.bin").unwrap().len, (4 << 20) + 7);
    let mut back = vec![0u8; (4 << 20) + 7];
    store.read_at("f.bin", 0, &mut back).unwrap();
    assert!(back[..4 << 20] == a[..] && back[4 << 20..] == b[..]);
    // No blocks: an empty block blob.
    store.put_block_list("empty", &[]).unwrap();
    assert_eq!(store.blob_type("empty").unwrap(), "BlockBlob");
    assert_eq!(store.properties("empty").unwrap().len, 0);
    // A page blob keeps its type; ids that are not Base64 and blocks over 4 MiB are refused before sending.
    store.create("p", 512, &Metadata::new()).unwrap();
    assert_eq!(store.blob_type("p").unwrap(), "PageBlob");
    for bad in ["", "a b", "<x>"] {
        let e = store.put_block("f.bin", bad, &b).unwrap_err();
        assert!(matches!(e, BlobError::InvalidName { .. }), "{bad:?}: {e}");
    }
    let e = store
        .put_block("f.bin", "AgAAAA==", &vec![0u8; (4 << 20) + 1])
        .unwrap_err();
    assert!(matches!(e, BlobError::OverLimit { .. }), "{e}");
    // Stores of page-blob-shaped objects refuse, naming themselves; the retry wrapper passes the refusal on.
    let memory = RetryStore::new(MemoryStore::default(), RetryPolicy::default());
    for e in [
        memory.put_block("x", "AAAAAA==", &b).unwrap_err(),
        memory.put_block_list("x", &[]).unwrap_err(),
    ] {
        assert!(matches!(e, BlobError::Unsupported { .. }), "{e}");
        assert!(e.to_string().contains("block blobs need Azure"), "{e}");
        assert!(!e.is_retryable());
    }
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

/// Runs the interop script against `azurite`, parsing its JSON answer.
fn python_sdk(azurite: &Azurite, args: &[&str]) -> serde_json::Value {
    let cs = azurite.connection_string();
    let out = run_python(
        "blob_interop.py",
        args,
        &[("AZURE_STORAGE_CONNECTION_STRING", &cs)],
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("blob_interop.py {args:?} printed {out:?}: {e}"))
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

fn ranges_json(ranges: &[std::ops::Range<u64>]) -> serde_json::Value {
    ranges
        .iter()
        .map(|r| serde_json::json!([r.start, r.end]))
        .collect()
}

#[test]
fn python_sdk_reads_what_we_wrote_and_we_read_what_it_wrote() {
    let azurite = Azurite::start();
    let store = azure_store(&azurite, "interop", 5000);
    store.create_container().unwrap();

    // Ours -> SDK: a sparse blob with data at both ends, a multi-request run and explicit zeros.
    let len = 6 << 20;
    let m = Metadata::from([("logicallen".to_owned(), "6291000".to_owned())]);
    store.create("ours/vol 1", len, &m).unwrap();
    let mut model = vec![0u8; len as usize];
    for (off, n, seed) in [
        (0u64, 512usize, 1u64),
        (512 * 1024, 4 * 1024 * 1024 + 4096, 2),
        (len - 1024, 1024, 3),
    ] {
        let data = conformance::pattern(seed, n);
        store.write_pages("ours/vol 1", off, &data).unwrap();
        model[off as usize..off as usize + n].copy_from_slice(&data);
    }
    store.write_pages("ours/vol 1", 5 << 20, &[0u8; 8192]).unwrap();
    let sdk = python_sdk(&azurite, &["describe", "interop", "ours/vol 1"]);
    assert_eq!(sdk["len"], len);
    assert_eq!(sdk["blob_type"], "PageBlob");
    assert_eq!(sdk["sha256"], sha256_hex(&model), "the SDK reads other bytes");
    assert_eq!(
        sdk["ranges"],
        ranges_json(&store.page_ranges("ours/vol 1").unwrap())
    );
    assert_eq!(sdk["metadata"]["logicallen"], "6291000");

    // SDK -> ours.
    let sdk = python_sdk(&azurite, &["write", "interop", "sdk/blob"]);
    let info = store.properties("sdk/blob").unwrap();
    assert_eq!(sdk["len"], info.len);
    assert_eq!(info.metadata.get("writer").map(String::as_str), Some("python"));
    let mut back = vec![0u8; info.len as usize];
    store.read_at("sdk/blob", 0, &mut back).unwrap();
    assert_eq!(
        sdk["sha256"],
        sha256_hex(&back),
        "we read other bytes than the SDK wrote"
    );
    let ranges = store.page_ranges("sdk/blob").unwrap();
    assert_eq!(sdk["ranges"], ranges_json(&ranges));
    assert_eq!(ranges.len(), 3, "{ranges:?}");
    let names: Vec<_> = store.list("").unwrap().into_iter().map(|b| b.name).collect();
    assert_eq!(names, ["ours/vol 1", "sdk/blob"]);
}

#[test]
fn azure_store_works_with_a_container_sas() {
    let azurite = Azurite::start();
    let admin = azure_store(&azurite, "sascont", 5000);
    admin.create_container().unwrap();
    let sas_store = |perms: &str| {
        let token = run_python(
            "blob_interop.py",
            &["sas", "sascont", perms],
            &[("AZURE_STORAGE_CONNECTION_STRING", &azurite.connection_string())],
        );
        let o = AzureOptions::new(
            &azurite.endpoint(),
            AZURITE_ACCOUNT,
            "sascont",
            Credential::Sas(token),
        );
        AzureStore::new(o).unwrap()
    };
    let rw = sas_store("racwdl");
    let data = conformance::pattern(12, 5 << 20);
    rw.create("a/b", 8 << 20, &Metadata::new()).unwrap();
    rw.write_pages("a/b", 1 << 20, &data).unwrap();
    rw.resize("a/b", 7 << 20).unwrap();
    let mut back = vec![0u8; data.len()];
    rw.read_at("a/b", 1 << 20, &mut back).unwrap();
    assert_eq!(back, data);
    assert_eq!(rw.list("a/").unwrap().len(), 1);
    let want: Vec<std::ops::Range<u64>> = std::iter::once((1 << 20)..(6 << 20)).collect();
    assert_eq!(rw.page_ranges("a/b").unwrap(), want);

    let ro = sas_store("rl");
    let e = ro.write_pages("a/b", 0, &[1u8; 512]).unwrap_err();
    assert_eq!(e.http_status(), Some(403), "{e}");
    assert!(e.to_string().contains("for account devstoreaccount1"), "{e}");
    ro.read_at("a/b", 1 << 20, &mut back[..4096]).unwrap();
    rw.delete("a/b").unwrap();
}

#[test]
fn azure_request_timeouts_are_retryable_transport_errors() {
    // A server that accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let conns: Vec<_> = listener.incoming().take(1).collect();
        std::thread::sleep(std::time::Duration::from_secs(3));
        drop(conns);
    });
    let endpoint = format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}");
    let mut o = AzureOptions::new(
        &endpoint,
        AZURITE_ACCOUNT,
        "cont1",
        Credential::SharedKey(AZURITE_KEY.into()),
    );
    o.request_timeout = std::time::Duration::from_millis(300);
    let store = AzureStore::new(o).unwrap();
    let e = store.properties("b").unwrap_err();
    assert!(
        matches!(e, BlobError::Transport { .. }) && e.is_retryable(),
        "{e}"
    );
    assert!(e.to_string().contains("timed out"), "{e}");
    holder.join().unwrap();
}

#[test]
fn azure_store_can_be_used_from_async_code() {
    let azurite = Azurite::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Built from the connection string the SDKs use.
    let options = AzureOptions::from_connection_string(&azurite.connection_string(), "asyncuse").unwrap();
    rt.block_on(async move {
        let store = std::sync::Arc::new(AzureStore::new(options).unwrap());
        let s = store.clone();
        tokio::task::spawn_blocking(move || {
            s.create_container().unwrap();
            s.create("x", 4096, &Metadata::new()).unwrap();
            s.write_pages("x", 0, &[5u8; 4096]).unwrap();
        })
        .await
        .unwrap();
        // Called directly on a worker thread it still works (it blocks that worker meanwhile).
        let mut buf = [0u8; 4096];
        store.read_at("x", 0, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 5));
        drop(store); // dropping inside async code must not panic
    });
}

#[test]
fn local_store_is_usable_from_several_threads() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    store.create("shared", 64 * 512, &Metadata::new()).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let store = &store;
            s.spawn(move || {
                for i in 0..25u64 {
                    // Objects come and go in one folder (deletes remove empty folders meanwhile).
                    let name = format!("folder/t{t}");
                    store.create(&name, 1024, &Metadata::new()).unwrap();
                    store.write_pages(&name, 512, &[t as u8 + 1; 512]).unwrap();
                    store.delete(&name).unwrap();
                    store
                        .write_pages("shared", (t * 16 + i % 16) * 512, &[t as u8 + 1; 512])
                        .unwrap();
                }
            });
        }
    });
    let mut back = vec![0u8; 64 * 512];
    store.read_at("shared", 0, &mut back).unwrap();
    for (i, page) in back.chunks(512).enumerate() {
        assert!(page.iter().all(|&b| b == (i / 16) as u8 + 1), "page {i}");
    }
    assert_eq!(store.list("").unwrap().len(), 1);
}
