//! The conformance suite every [`BlobStore`] must pass: one function, run against each store.

use seedship_shared::blob::{BlobError, BlobStore, Metadata, MAX_PAGE_BLOB};
use std::ops::Range;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// How exactly a store reports page ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranges {
    /// Exactly the pages written (memory, Azure).
    Exact,
    /// A superset of the non-zero pages, rounded out to file-system blocks of at most this size (local).
    RoundedTo(u64),
}

/// What differs between stores, declared by the test that runs the suite.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub ranges: Ranges,
    /// Whether a write past the object's end is refused (Azurite does not enforce it).
    pub refuses_write_past_end: bool,
    /// Number of objects in the listing test (more than one result page on Azure).
    pub list_objects: usize,
}

/// Deterministic non-zero test bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as u8) | 1
        })
        .collect()
}

fn meta(pairs: &[(&str, &str)]) -> Metadata {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn read_all(store: &dyn BlobStore, name: &str) -> Vec<u8> {
    let len = store.properties(name).unwrap().len;
    let mut buf = vec![0xAAu8; len as usize];
    store.read_at(name, 0, &mut buf).unwrap();
    buf
}

/// The pages of `model` that hold non-zero bytes, merged.
fn nonzero_pages(model: &[u8]) -> Vec<Range<u64>> {
    let pages = model
        .chunks(512)
        .enumerate()
        .filter(|(_, p)| p.iter().any(|&b| b != 0))
        .map(|(i, _)| i as u64 * 512..(i as u64 + 1) * 512)
        .collect();
    seedship_shared::blob::merge_ranges(pages)
}

fn covers(ranges: &[Range<u64>], r: &Range<u64>) -> bool {
    ranges.iter().any(|x| x.start <= r.start && r.end <= x.end)
}

/// Checks a store's page ranges against the written ranges and the model bytes.
fn check_ranges(store: &dyn BlobStore, caps: Caps, name: &str, written: &[Range<u64>], model: &[u8]) {
    let got = store.page_ranges(name).unwrap();
    let written = seedship_shared::blob::merge_ranges(written.to_vec());
    match caps.ranges {
        Ranges::Exact => assert_eq!(got, written, "{}: page ranges of {name}", store.describe()),
        Ranges::RoundedTo(block) => {
            for r in nonzero_pages(model) {
                assert!(
                    covers(&got, &r),
                    "{}: data {r:?} of {name} not reported in {got:?}",
                    store.describe()
                );
            }
            let rounded: Vec<_> = written
                .iter()
                .map(|r| r.start / block * block..r.end.div_ceil(block) * block)
                .collect();
            let rounded = seedship_shared::blob::merge_ranges(rounded);
            for r in &got {
                assert!(
                    covers(&rounded, r),
                    "{}: {r:?} of {name} was never written ({written:?})",
                    store.describe()
                );
            }
        }
    }
}

/// Runs every check on `store`, whose container exists and is empty; `missing` is a store of the same kind
/// whose container does not exist. Deletes `store`'s container at the end.
pub fn conformance(store: &dyn BlobStore, missing: &dyn BlobStore, caps: Caps) {
    assert!(
        store.list("").unwrap().is_empty(),
        "{} is not empty",
        store.describe()
    );
    sparse_round_trip(store, caps);
    large_writes(store, caps);
    resize_and_metadata(store);
    listing(store, caps);
    refusals(store, caps);
    missing_objects(store);
    missing_container(missing);
    store.delete_container().unwrap();
    assert!(matches!(store.list(""), Err(BlobError::ContainerNotFound { .. })));
}

fn sparse_round_trip(store: &dyn BlobStore, caps: Caps) {
    let name = "sparse/a.bin";
    let len = MIB;
    store.create(name, len, &meta(&[("kind", "test")])).unwrap();
    let info = store.properties(name).unwrap();
    assert_eq!((info.name.as_str(), info.len), (name, len));
    assert_eq!(info.metadata, meta(&[("kind", "test")]));
    assert_eq!(read_all(store, name), vec![0u8; len as usize]);
    check_ranges(store, caps, name, &[], &vec![0; len as usize]);

    let mut model = vec![0u8; len as usize];
    let mut written = Vec::new();
    let mut write = |store: &dyn BlobStore, off: u64, data: &[u8]| {
        store.write_pages(name, off, data).unwrap();
        model[off as usize..off as usize + data.len()].copy_from_slice(data);
        written.push(off..off + data.len() as u64);
    };
    write(store, 0, &pattern(1, 512)); // first page
    write(store, len - 4096, &pattern(2, 4096)); // last pages
                                                 // Data, a long run of explicit zeros, data.
    let mut mixed = pattern(3, 8192);
    mixed[1024..1024 + 4096 + 512].fill(0);
    write(store, 64 * KIB, &mixed);
    write(store, 200 * KIB, &vec![0u8; 16 * 1024]); // explicit zeros only
    assert_eq!(
        read_all(store, name),
        model,
        "{}: bytes of {name}",
        store.describe()
    );
    check_ranges(store, caps, name, &written, &model);

    // Unaligned reads return the right bytes.
    let mut buf = vec![0u8; 1000];
    store.read_at(name, 64 * KIB + 100, &mut buf).unwrap();
    assert_eq!(buf, model[64 * 1024 + 100..64 * 1024 + 1100]);
    store.read_at(name, len - 7, &mut buf[..7]).unwrap();
    assert_eq!(&buf[..7], &model[len as usize - 7..]);

    // Clear a written range and part of a hole.
    store.clear_pages(name, 64 * KIB, 8192).unwrap();
    model[64 * 1024..64 * 1024 + 8192].fill(0);
    written.retain(|r| r.start != 64 * KIB);
    store.clear_pages(name, 300 * KIB, 4096).unwrap();
    assert_eq!(read_all(store, name), model);
    check_ranges(store, caps, name, &written, &model);

    // create replaces an object: zeros and new metadata.
    store.create(name, 2 * MIB, &Metadata::new()).unwrap();
    let info = store.properties(name).unwrap();
    assert_eq!((info.len, info.metadata.len()), (2 * MIB, 0));
    assert!(read_all(store, name).iter().all(|&b| b == 0));
    check_ranges(store, caps, name, &[], &[]);
    store.delete(name).unwrap();
}

fn large_writes(store: &dyn BlobStore, caps: Caps) {
    let name = "large";
    let len = 12 * MIB;
    store.create(name, len, &Metadata::new()).unwrap();
    // Longer than one Put Page and not aligned to 4 MiB.
    let data = pattern(4, (9 * MIB + 512) as usize);
    let off = MIB + 512;
    store.write_pages(name, off, &data).unwrap();
    let mut back = vec![0u8; data.len() + 1024];
    store.read_at(name, off - 512, &mut back).unwrap();
    assert!(back[..512].iter().all(|&b| b == 0));
    assert!(back[back.len() - 512..].iter().all(|&b| b == 0));
    assert!(
        back[512..512 + data.len()] == data[..],
        "{}: large write read back differs",
        store.describe()
    );
    let mut model = vec![0u8; len as usize];
    model[off as usize..off as usize + data.len()].copy_from_slice(&data);
    let written: Vec<Range<u64>> = std::iter::once(off..off + data.len() as u64).collect();
    check_ranges(store, caps, name, &written, &model);
    store.delete(name).unwrap();
}

fn resize_and_metadata(store: &dyn BlobStore) {
    let name = "resize/r";
    store.create(name, 8192, &Metadata::new()).unwrap();
    let data = pattern(5, 8192);
    store.write_pages(name, 0, &data).unwrap();
    store.resize(name, 16384).unwrap();
    let back = read_all(store, name);
    assert_eq!(back.len(), 16384);
    assert_eq!(&back[..8192], &data[..]);
    assert!(back[8192..].iter().all(|&b| b == 0));
    store.resize(name, 4096).unwrap();
    assert_eq!(read_all(store, name), data[..4096]);
    store.resize(name, 8192).unwrap(); // the dropped tail comes back as zeros
    let back = read_all(store, name);
    assert_eq!(&back[..4096], &data[..4096]);
    assert!(
        back[4096..].iter().all(|&b| b == 0),
        "{}: resize down kept data",
        store.describe()
    );

    let m1 = meta(&[("logicallen", "8000"), ("owner", "seedship")]);
    store.set_metadata(name, &m1).unwrap();
    assert_eq!(store.properties(name).unwrap().metadata, m1);
    let m2 = meta(&[("other", "x y=z")]);
    store.set_metadata(name, &m2).unwrap(); // replaces, does not merge
    assert_eq!(store.properties(name).unwrap().metadata, m2);
    assert_eq!(store.properties(name).unwrap().len, 8192);
    store.set_metadata(name, &Metadata::new()).unwrap();
    assert!(store.properties(name).unwrap().metadata.is_empty());
    store.delete(name).unwrap();
}

fn listing(store: &dyn BlobStore, caps: Caps) {
    let mut expected = Vec::new();
    for i in 0..caps.list_objects {
        let name = format!("many/{:02}/obj{i}", i % 4);
        let m = if i % 3 == 0 {
            meta(&[("index", &i.to_string())])
        } else {
            Metadata::new()
        };
        store.create(&name, 512 * (i as u64 + 1), &m).unwrap();
        expected.push((name, 512 * (i as u64 + 1), m));
    }
    store.create("manyother", 512, &Metadata::new()).unwrap();
    store.create("top", 1024, &Metadata::new()).unwrap();
    expected.sort();
    let got: Vec<_> = store
        .list("many/")
        .unwrap()
        .into_iter()
        .map(|b| (b.name, b.len, b.metadata))
        .collect();
    assert_eq!(got, expected, "{}: listing many/", store.describe());
    let names: Vec<_> = store.list("many").unwrap().into_iter().map(|b| b.name).collect();
    assert_eq!(names.len(), caps.list_objects + 1);
    assert!(names.windows(2).all(|w| w[0] < w[1]), "not sorted: {names:?}");
    let sub: Vec<_> = store
        .list("many/01/")
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    let want: Vec<_> = expected
        .iter()
        .map(|e| e.0.clone())
        .filter(|n| n.starts_with("many/01/"))
        .collect();
    assert_eq!(sub, want);
    assert_eq!(store.list("").unwrap().len(), caps.list_objects + 2);
    assert!(store.list("nothing/").unwrap().is_empty());
    for (name, _, _) in &expected {
        store.delete(name).unwrap();
    }
    // Names are not folders: once "many/..." is gone, "many" can be an object.
    store.create("many", 512, &Metadata::new()).unwrap();
    store.delete("many").unwrap();
    store.delete("manyother").unwrap();
    store.delete("top").unwrap();
    assert!(store.list("").unwrap().is_empty());
}

fn refusals(store: &dyn BlobStore, caps: Caps) {
    let name = "refuse";
    store.create(name, 8192, &Metadata::new()).unwrap();
    let unaligned = |r: Result<(), BlobError>, what: &str| match r {
        Err(e @ BlobError::Unaligned { .. }) => assert!(
            e.to_string().contains(what) && e.to_string().contains("512"),
            "{e}"
        ),
        other => panic!("{}: expected Unaligned {what}, got {other:?}", store.describe()),
    };
    unaligned(store.write_pages(name, 100, &[1u8; 512]), "write offset 100");
    unaligned(store.write_pages(name, 0, &[1u8; 700]), "write length 700");
    unaligned(store.clear_pages(name, 512, 100), "clear length 100");
    unaligned(store.create("odd", 1000, &Metadata::new()), "object length 1000");
    unaligned(store.resize(name, 513), "object length 513");
    for r in [
        store.create("huge", MAX_PAGE_BLOB + 512, &Metadata::new()),
        store.resize(name, MAX_PAGE_BLOB * 2),
    ] {
        match r {
            Err(e @ BlobError::OverLimit { .. }) => assert!(e.to_string().contains("8 TiB"), "{e}"),
            other => panic!("expected OverLimit, got {other:?}"),
        }
    }
    assert!(matches!(
        store.properties("huge"),
        Err(BlobError::NotFound { .. })
    ));
    let mut buf = [0u8; 1024];
    assert!(matches!(
        store.read_at(name, 8192 - 512, &mut buf),
        Err(BlobError::OutOfRange { .. })
    ));
    assert!(matches!(
        store.read_at(name, 16384, &mut buf),
        Err(BlobError::OutOfRange { .. })
    ));
    if caps.refuses_write_past_end {
        assert!(matches!(
            store.write_pages(name, 8192, &[1u8; 512]),
            Err(BlobError::OutOfRange { .. })
        ));
    }
    for bad in ["", "/abs", "a//b", "a/../b"] {
        assert!(
            matches!(
                store.create(bad, 512, &Metadata::new()),
                Err(BlobError::InvalidName { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(
        read_all(store, name).iter().all(|&b| b == 0),
        "a refused write was stored"
    );
    store.delete(name).unwrap();
}

fn missing_objects(store: &dyn BlobStore) {
    let name = "no/such/object";
    let nf = |r: Result<(), BlobError>, op: &str| match r {
        Err(BlobError::NotFound { name: n, .. }) => assert_eq!(n, name, "{op}"),
        other => panic!("{}: {op} on a missing object gave {other:?}", store.describe()),
    };
    nf(store.properties(name).map(drop), "properties");
    nf(store.read_at(name, 0, &mut [0u8; 10]), "read_at");
    nf(store.write_pages(name, 0, &[1u8; 512]), "write_pages");
    nf(store.clear_pages(name, 0, 512), "clear_pages");
    nf(store.page_ranges(name).map(drop), "page_ranges");
    nf(store.resize(name, 1024), "resize");
    nf(store.set_metadata(name, &meta(&[("a", "b")])), "set_metadata");
    nf(store.delete(name), "delete");
}

fn missing_container(store: &dyn BlobStore) {
    let cnf = |r: Result<(), BlobError>, op: &str| match r {
        Err(e @ BlobError::ContainerNotFound { .. }) => assert!(e.to_string().contains("container"), "{e}"),
        other => panic!("{}: {op} in a missing container gave {other:?}", store.describe()),
    };
    cnf(store.create("x", 512, &Metadata::new()), "create");
    cnf(store.list("").map(drop), "list");
    cnf(store.properties("x").map(drop), "properties");
    cnf(store.read_at("x", 0, &mut [0u8; 1]), "read_at");
    cnf(store.write_pages("x", 0, &[0u8; 512]), "write_pages");
    cnf(store.delete("x"), "delete");
    cnf(store.delete_container(), "delete_container");
}
