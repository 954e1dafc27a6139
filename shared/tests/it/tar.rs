//! Tar interop: GNU tar lists and extracts what we write; we read what GNU tar writes.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use seedship_shared::tar::{
    entry_tar_size, EntryHeader, EntryKind, TarError, TarReader, TarWriter, END_OF_ARCHIVE_LEN,
};

/// Deterministic pseudo-random bytes (xorshift), so failures are reproducible.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn gnu_tar(args: &[&str], dir: &Path) -> std::process::Output {
    let out = Command::new("tar")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("GNU tar is installed");
    assert!(
        out.status.success(),
        "tar {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn payload() -> Vec<(String, Vec<u8>)> {
    let long_dir = "d".repeat(120);
    vec![
        ("DriveManifest.xml".into(), b"<DriveManifest/>\n".to_vec()),
        ("session-1/container/empty".into(), Vec::new()),
        ("session-1/container/exact-block".into(), pseudo_random(512, 1)),
        ("session-1/container/odd".into(), pseudo_random(100_003, 2)),
        (
            format!("session-1/{long_dir}/{}", "n".repeat(150)),
            pseudo_random(4097, 3),
        ),
        (
            "session-1/container/caf\u{e9} \u{65e5}\u{672c}.bin".into(),
            pseudo_random(70, 4),
        ),
        (
            format!(
                "session-1/container/{}",
                "x".repeat(100 - "session-1/container/".len())
            ),
            pseudo_random(1, 5),
        ),
    ]
}

fn write_payload(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut tar = TarWriter::new(Vec::new());
    for (i, (path, data)) in files.iter().enumerate() {
        let header = EntryHeader::file(path.clone(), data.len() as u64, 1_700_000_000 + i as i64);
        let before = tar.offset();
        if i % 2 == 0 {
            tar.append(&header, &data[..]).unwrap();
        } else {
            let mut entry = tar.begin_entry(&header).unwrap();
            for chunk in data.chunks(1000) {
                entry.write_all(chunk).unwrap();
            }
            entry.finish().unwrap();
        }
        assert_eq!(
            tar.offset() - before,
            entry_tar_size(&header),
            "size formula for {path}"
        );
    }
    tar.finish().unwrap()
}

#[test]
fn gnu_tar_lists_and_extracts_our_payload_byte_for_byte() {
    let files = payload();
    let archive = write_payload(&files);
    let expected_len: u64 = files
        .iter()
        .map(|(p, d)| entry_tar_size(&EntryHeader::file(p.clone(), d.len() as u64, 0)))
        .sum::<u64>()
        + END_OF_ARCHIVE_LEN;
    assert_eq!(archive.len() as u64, expected_len);

    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("payload.tar"), &archive).unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let listing = gnu_tar(&["-tf", "../payload.tar"], &out);
    let listed: Vec<String> = String::from_utf8(listing.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let names: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(listed, names);
    let verbose = gnu_tar(&["--utc", "-tvf", "../payload.tar"], &out);
    let verbose = String::from_utf8(verbose.stdout).unwrap();
    assert!(verbose.contains("100003 2023-11-14 22:13"), "{verbose}");

    gnu_tar(&["-xf", "../payload.tar"], &out);
    for (path, data) in &files {
        assert_eq!(&fs::read(out.join(path)).unwrap(), data, "{path}");
    }
}

#[test]
fn our_reader_reads_our_payload() {
    let files = payload();
    let archive = write_payload(&files);
    let mut reader = TarReader::new(&archive[..]);
    let mut seen = Vec::new();
    while let Some(mut entry) = reader.next_entry().unwrap() {
        assert_eq!(entry.info.kind, EntryKind::File);
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        seen.push((entry.info.path.clone(), data));
    }
    assert_eq!(seen, files);
    assert_eq!(reader.offset(), archive.len() as u64);
}

fn gnu_written_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let files = vec![
        (
            format!("tree/{}/{}", "a".repeat(90), "b".repeat(90)),
            pseudo_random(3000, 7),
        ),
        ("tree/short.txt".to_string(), b"hello\n".to_vec()),
        (
            "tree/\u{fc}nicode-\u{2603}.dat".to_string(),
            pseudo_random(513, 8),
        ),
        ("tree/zero".to_string(), Vec::new()),
    ];
    for (p, d) in &files {
        let p = root.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, d).unwrap();
    }
    files
}

fn read_all_files(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut reader = TarReader::new(archive);
    let mut files = Vec::new();
    while let Some(mut entry) = reader.next_entry().unwrap() {
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if entry.info.kind == EntryKind::File {
            files.push((entry.info.path.clone(), data));
        } else {
            assert_eq!(entry.info.kind, EntryKind::Directory, "{}", entry.info.path);
            assert!(data.is_empty());
        }
    }
    files.sort();
    files
}

#[test]
fn our_reader_reads_gnu_tar_pax_and_gnu_formats() {
    for format in ["pax", "gnu", "posix"] {
        let dir = tempfile::tempdir().unwrap();
        let mut files = gnu_written_tree(dir.path());
        files.sort();
        let fmt = format!("--format={format}");
        gnu_tar(&["-cf", "t.tar", &fmt, "tree"], dir.path());
        let archive = fs::read(dir.path().join("t.tar")).unwrap();
        assert_eq!(read_all_files(&archive), files, "format {format}");
    }
}

static ZEROS: [u8; 8 << 20] = [0; 8 << 20];

/// A sink that turns writes out of [`ZEROS`] into seeks, so a 9 GiB member costs no disk space or scan time.
struct SparseFile(fs::File);

impl Write for SparseFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let zeros = ZEROS.as_ptr_range();
        if zeros.contains(&buf.as_ptr()) {
            self.0.seek(SeekFrom::Current(buf.len() as i64))?;
            Ok(buf.len())
        } else {
            self.0.write(buf)
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The > 8 GiB path for real: a 9 GiB member (size only in the pax `size` record) is streamed through the
/// writer into a sparse file (zeros become holes) followed by a small member; GNU tar lists both with the
/// right sizes, which needs the pax size to be right and the 9 GiB of content plus padding to be exactly placed.
#[test]
fn nine_gib_member_uses_pax_size_and_gnu_tar_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.tar");
    let big = 9u64 << 30;
    let mut tar = TarWriter::new(SparseFile(fs::File::create(&path).unwrap()));
    let header = EntryHeader::file("session/c/big.vhd", big, 1_700_000_000);
    let mut entry = tar.begin_entry(&header).unwrap();
    while entry.remaining() > 0 {
        let n = entry.remaining().min(ZEROS.len() as u64) as usize;
        entry.write_all(&ZEROS[..n]).unwrap();
    }
    assert!(
        entry.write(&[0]).is_err(),
        "a byte beyond the declared size must be refused"
    );
    entry.finish().unwrap();
    tar.append(&EntryHeader::file("after.txt", 6, 1_700_000_000), &b"after\n"[..])
        .unwrap();
    let mut file = tar.finish().unwrap();
    let end = file.0.stream_position().unwrap();
    file.0.set_len(end).unwrap();
    drop(file);
    let len = fs::metadata(&path).unwrap().len();
    assert_eq!(len, entry_tar_size(&header) + 1024 + END_OF_ARCHIVE_LEN);

    let listing = gnu_tar(&["-tvf", "big.tar"], dir.path());
    let listing = String::from_utf8(listing.stdout).unwrap();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 2, "{listing}");
    assert!(
        lines[0].contains(" 9663676416 ") && lines[0].ends_with("session/c/big.vhd"),
        "{listing}"
    );
    assert!(
        lines[1].contains(" 6 ") && lines[1].ends_with("after.txt"),
        "{listing}"
    );
    gnu_tar(&["-xf", "big.tar", "after.txt"], dir.path());
    assert_eq!(fs::read(dir.path().join("after.txt")).unwrap(), b"after\n");

    // Our reader resolves the pax size without touching the content.
    let mut reader = TarReader::new(fs::File::open(&path).unwrap());
    let entry = reader.next_entry().unwrap().unwrap();
    assert_eq!(
        (entry.info.path.as_str(), entry.info.size),
        ("session/c/big.vhd", big)
    );
    assert_eq!(entry.info.data_offset, 3 * 512);
}

#[test]
fn errors_name_the_entry_and_offset() {
    let archive = write_payload(&payload());
    // Corrupt the ustar header of the second entry (offset 1024: the first entry is one header + one block).
    let mut bad = archive.clone();
    bad[1024 + 10] ^= 0x20;
    let mut reader = TarReader::new(&bad[..]);
    reader.next_entry().unwrap().unwrap();
    match reader.next_entry().unwrap_err() {
        TarError::BadChecksum { offset, entry, .. } => {
            assert_eq!(offset, 1024);
            assert!(entry.starts_with("session-1/"), "{entry}");
        }
        other => panic!("unexpected {other}"),
    }
    // Truncation inside the content of an entry.
    let cut = &archive[..1024 + 512 + 100];
    let mut reader = TarReader::new(cut);
    reader.next_entry().unwrap();
    reader.next_entry().unwrap();
    let err = reader.next_entry().unwrap_err();
    assert!(
        matches!(err, TarError::UnexpectedEof { ref entry, .. } if entry == "session-1/container/empty"),
        "{err}"
    );
    // Short content on write is refused.
    let mut tar = TarWriter::new(Vec::new());
    let err = tar
        .append(&EntryHeader::file("f", 10, 0), &b"abc"[..])
        .unwrap_err();
    assert!(
        matches!(
            err,
            TarError::SizeMismatch {
                declared: 10,
                written: 3,
                ..
            }
        ),
        "{err}"
    );
}

/// The stored GNU tar fixtures (pax and gnu formats, see fixtures/README.md) read with every field right.
#[test]
fn our_reader_reads_the_stored_gnu_tar_fixtures() {
    let long = format!("tree/{}/{}", "a".repeat(90), "b".repeat(90));
    for name in ["gnu-pax.tar", "gnu-gnu.tar"] {
        let bytes = fs::read(crate::manifest::fixture(&format!("tar/{name}"))).unwrap();
        let mut reader = TarReader::new(&bytes[..]);
        let mut seen = Vec::new();
        while let Some(mut entry) = reader.next_entry().unwrap() {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            let i = &entry.info;
            assert_eq!(i.mtime, 1_704_164_645, "{name} {}", i.path);
            let mode = if i.kind == EntryKind::Directory {
                0o755
            } else {
                0o644
            };
            assert_eq!(i.mode, mode, "{name} {}", i.path);
            seen.push((i.path.trim_end_matches('/').to_string(), i.kind, data));
        }
        let want = vec![
            ("tree".to_string(), EntryKind::Directory, vec![]),
            (format!("tree/{}", "a".repeat(90)), EntryKind::Directory, vec![]),
            (long.clone(), EntryKind::File, b"long name file\n".to_vec()),
            (
                "tree/caf\u{e9} \u{2603}.txt".to_string(),
                EntryKind::File,
                "caf\u{e9}\n".as_bytes().to_vec(),
            ),
            ("tree/empty".to_string(), EntryKind::File, vec![]),
            ("tree/zeds".to_string(), EntryKind::File, vec![b'z'; 1000]),
        ];
        assert_eq!(seen, want, "{name}");
    }
}
