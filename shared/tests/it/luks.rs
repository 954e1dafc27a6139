//! LUKS2 interop: our writer against `cryptsetup luksDump`, cryptsetup's images against our reader, our
//! sector encryption against Python's independent AES-XTS, damaged and truncated images, and mutated
//! headers. Needs `cryptsetup` (tests/run installs cryptsetup-bin) and python3 with `cryptography`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use seedship_shared::luks::{
    self, HeaderCopy, LuksError, LuksFormat, LuksHeader, LuksVolume, Pbkdf, VolumeKey,
};
use seedship_shared::recovery::RecoveryKey;
use seedship_testkit::run_python;
use sha2::{Digest, Sha256};

const MIB: u64 = 1 << 20;
const IMAGE_LEN: u64 = 32 * MIB;

struct Image {
    _dir: tempfile::TempDir,
    path: PathBuf,
    file: File,
}

fn image(len: u64) -> Image {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drive.img");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    file.set_len(len).unwrap();
    Image {
        _dir: dir,
        path,
        file,
    }
}

fn reopen(path: &Path) -> File {
    OpenOptions::new().read(true).write(true).open(path).unwrap()
}

fn key_file(dir: &Path, passphrase: &str) -> PathBuf {
    let p = dir.join("keyfile");
    std::fs::write(&p, passphrase.as_bytes()).unwrap();
    p
}

fn cryptsetup(args: &[&str]) -> String {
    let out = Command::new("cryptsetup")
        .args(args)
        .output()
        .expect("cryptsetup is installed (cryptsetup-bin)");
    assert!(
        out.status.success(),
        "cryptsetup {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The volume key as `cryptsetup luksDump --dump-volume-key` prints it (2.6 calls it "MK dump").
fn dump_volume_key(img: &Path, passphrase: &str) -> Vec<u8> {
    let kf = key_file(img.parent().unwrap(), passphrase);
    let out = cryptsetup(&[
        "luksDump",
        "--dump-volume-key",
        "--batch-mode",
        "--key-file",
        kf.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    let mut key = Vec::new();
    let mut in_dump = false;
    for line in out.lines() {
        let rest = match line.split_once("dump:") {
            Some((_, rest)) => {
                in_dump = true;
                rest
            }
            None if in_dump => line,
            None => continue,
        };
        let bytes: Vec<u8> = rest
            .split_whitespace()
            .filter_map(|t| u8::from_str_radix(t, 16).ok())
            .collect();
        if bytes.is_empty() {
            break;
        }
        key.extend(bytes);
    }
    assert_eq!(key.len(), 64, "volume key in:\n{out}");
    key
}

fn fast_format(label: &str) -> LuksFormat {
    LuksFormat {
        pbkdf: Pbkdf::Pbkdf2 { iterations: 1000 },
        digest_iterations: 1000,
        ..LuksFormat::new(label)
    }
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn our_format_passes_luksdump_and_cryptsetup_recovers_our_key() {
    for (pbkdf, label) in [
        (Pbkdf::Pbkdf2 { iterations: 1000 }, "SEEDSHIP-DRIVE-0001"),
        (
            Pbkdf::Argon2id {
                time: 4,
                memory_kib: 32768,
                parallel: 2,
            },
            "seedship-argon2-drive",
        ),
    ] {
        let img = image(IMAGE_LEN);
        let rk = RecoveryKey::generate().unwrap();
        let key = VolumeKey::generate().unwrap();
        let opts = LuksFormat {
            pbkdf,
            ..fast_format(label)
        };
        let vol = luks::format_with_key(&img.file, IMAGE_LEN, rk.passphrase(), &opts, key.clone()).unwrap();
        assert_eq!(vol.payload_len(), IMAGE_LEN - 16 * MIB);

        let dump = cryptsetup(&["luksDump", img.path.to_str().unwrap()]);
        let dumped_label = dump.lines().find_map(|l| l.strip_prefix("Label:")).map(str::trim);
        assert_eq!(dumped_label, Some(label), "{dump}");
        assert!(
            dump.contains("cipher: aes-xts-plain64") && dump.contains("sector: 4096 [bytes]"),
            "{dump}"
        );
        assert!(dump.contains("offset: 16777216 [bytes]"), "{dump}");
        assert_eq!(dump_volume_key(&img.path, rk.as_str()), key.as_bytes());

        let header = LuksHeader::read(&img.file).unwrap();
        assert_eq!((header.label(), header.copy()), (label, HeaderCopy::Primary));
        let opened = LuksVolume::open(&img.file, rk.passphrase()).unwrap();
        assert_eq!(opened.volume_key(), &key);
    }
}

#[test]
fn cryptsetup_images_open_in_our_reader() {
    let variants: [&[&str]; 2] = [
        &["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"],
        &[
            "--pbkdf",
            "argon2id",
            "--pbkdf-memory",
            "32768",
            "--pbkdf-force-iterations",
            "4",
        ],
    ];
    for (i, kdf_args) in variants.iter().enumerate() {
        let img = image(IMAGE_LEN);
        let rk = RecoveryKey::generate().unwrap();
        let kf = key_file(img.path.parent().unwrap(), rk.as_str());
        let label = format!("CS-DRIVE-{i}");
        let mut args = vec![
            "luksFormat",
            "--type",
            "luks2",
            "--sector-size",
            "4096",
            "--label",
            &label,
        ];
        args.extend_from_slice(kdf_args);
        args.extend([
            "--batch-mode",
            "--key-file",
            kf.to_str().unwrap(),
            img.path.to_str().unwrap(),
        ]);
        cryptsetup(&args);

        let file = reopen(&img.path);
        assert_eq!(LuksHeader::read(&file).unwrap().label(), label);
        let vol = LuksVolume::open(&file, rk.passphrase()).unwrap();
        assert_eq!(vol.label(), label);
        assert_eq!(vol.data_offset(), 16 * MIB);
        assert_eq!(
            vol.volume_key().as_bytes().as_slice(),
            dump_volume_key(&img.path, rk.as_str())
        );

        let wrong = RecoveryKey::generate().unwrap();
        let err = LuksVolume::open(&file, wrong.passphrase()).unwrap_err();
        assert!(matches!(err, LuksError::WrongKey { .. }), "{err}");
        assert!(
            err.to_string().starts_with(&format!(
                "the key does not unlock drive {label}: give that drive's"
            )),
            "{err}"
        );
    }
}

#[test]
fn our_encryption_matches_an_independent_aes_xts() {
    let img = image(IMAGE_LEN);
    let rk = RecoveryKey::generate().unwrap();
    let vol = luks::format(&img.file, IMAGE_LEN, rk.passphrase(), &fast_format("XTS-CHECK")).unwrap();
    // Through the streaming writer: 5 MiB + 1000 bytes from payload offset 8 KiB (several chunks,
    // parallel encryption, a padded last sector).
    let plain = pattern(5 * MIB as usize + 1000, 1);
    let mut w = vol.writer(&img.file, 8192).unwrap();
    w.write_all(&plain).unwrap();
    w.sync().unwrap();
    assert_eq!(w.position(), 8192 + plain.len() as u64);
    // The last sector is written padded with zeros.
    let end = 8192 + (plain.len() as u64).div_ceil(4096) * 4096;

    let dir = img.path.parent().unwrap();
    let key = dump_volume_key(&img.path, rk.as_str());
    assert_eq!(key, vol.volume_key().as_bytes());
    std::fs::write(dir.join("vk"), &key).unwrap();
    let out = dir.join("plain.out");
    let len = (end - 8192).to_string();
    run_python(
        "luks_xts.py",
        &[
            "decrypt",
            "--key-file",
            dir.join("vk").to_str().unwrap(),
            "--image",
            img.path.to_str().unwrap(),
            "--data-offset",
            &vol.data_offset().to_string(),
            "--payload-offset",
            "8192",
            "--length",
            &len,
            "--output",
            out.to_str().unwrap(),
        ],
        &[],
    );
    let got = std::fs::read(&out).unwrap();
    assert_eq!(
        &got[..plain.len()],
        &plain[..],
        "python's AES-XTS disagrees with ours"
    );
    assert!(got[plain.len()..].iter().all(|&b| b == 0));
}

#[test]
fn independent_aes_xts_sectors_decrypt_in_our_reader() {
    let img = image(IMAGE_LEN);
    let rk = RecoveryKey::generate().unwrap();
    let kf = key_file(img.path.parent().unwrap(), rk.as_str());
    cryptsetup(&[
        "luksFormat",
        "--type",
        "luks2",
        "--sector-size",
        "4096",
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
        "--label",
        "PY-XTS",
        "--batch-mode",
        "--key-file",
        kf.to_str().unwrap(),
        img.path.to_str().unwrap(),
    ]);
    let dir = img.path.parent().unwrap();
    std::fs::write(dir.join("vk"), dump_volume_key(&img.path, rk.as_str())).unwrap();
    let plain = pattern(3 * MIB as usize, 2);
    std::fs::write(dir.join("plain.in"), &plain).unwrap();
    let payload_offset = 40960u64;
    run_python(
        "luks_xts.py",
        &[
            "encrypt",
            "--key-file",
            dir.join("vk").to_str().unwrap(),
            "--image",
            img.path.to_str().unwrap(),
            "--data-offset",
            &(16 * MIB).to_string(),
            "--payload-offset",
            &payload_offset.to_string(),
            "--input",
            dir.join("plain.in").to_str().unwrap(),
        ],
        &[],
    );
    let file = reopen(&img.path);
    let vol = LuksVolume::open(&file, rk.passphrase()).unwrap();
    let mut reader = vol.reader(&file);
    reader.seek(SeekFrom::Start(payload_offset + 100)).unwrap();
    let mut got = vec![0u8; plain.len() - 100];
    reader.read_exact(&mut got).unwrap();
    assert_eq!(got, plain[100..], "our reader disagrees with python's AES-XTS");
    // Whole sectors through the in-place API as well.
    let mut sector = vec![0u8; 4096];
    vol.read_sectors(&file, payload_offset + 4096, &mut sector)
        .unwrap();
    assert_eq!(sector, plain[4096..8192]);
    assert_eq!(reader.seek(SeekFrom::End(0)).unwrap(), IMAGE_LEN - 16 * MIB);
    assert_eq!(reader.read(&mut sector).unwrap(), 0);
}

#[test]
fn damaged_primary_header_falls_back_to_the_secondary() {
    let img = image(IMAGE_LEN);
    let rk = RecoveryKey::generate().unwrap();
    luks::format(&img.file, IMAGE_LEN, rk.passphrase(), &fast_format("FALLBACK-1")).unwrap();
    // A flipped byte in the primary JSON area: checksum mismatch.
    img.file.write_all_at(b"X", 4096 + 20).unwrap();
    let vol = LuksVolume::open(&img.file, rk.passphrase()).unwrap();
    assert_eq!(
        (vol.label(), vol.header().copy()),
        ("FALLBACK-1", HeaderCopy::Secondary)
    );
    // The primary magic wiped altogether: found by scanning the secondary offsets.
    img.file.write_all_at(&[0u8; 4096], 0).unwrap();
    let header = LuksHeader::read(&img.file).unwrap();
    assert_eq!(
        (header.label(), header.copy()),
        ("FALLBACK-1", HeaderCopy::Secondary)
    );
    // And cryptsetup agrees the secondary copy is good.
    assert_eq!(
        dump_volume_key(&img.path, rk.as_str()),
        vol.volume_key().as_bytes()
    );
}

#[test]
fn both_headers_damaged_is_a_named_error() {
    let img = image(IMAGE_LEN);
    let rk = RecoveryKey::generate().unwrap();
    luks::format(&img.file, IMAGE_LEN, rk.passphrase(), &fast_format("BROKEN-2")).unwrap();
    img.file.write_all_at(b"X", 4096 + 20).unwrap();
    img.file.write_all_at(b"X", 16384 + 4096 + 20).unwrap();
    let err = LuksVolume::open(&img.file, rk.passphrase()).unwrap_err();
    assert!(matches!(err, LuksError::HeaderDamaged { .. }), "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");

    let zeros = image(IMAGE_LEN);
    assert!(matches!(
        LuksHeader::read(&zeros.file).unwrap_err(),
        LuksError::NotLuks
    ));
}

#[test]
fn truncated_images_are_named_errors() {
    let img = image(IMAGE_LEN);
    let rk = RecoveryKey::generate().unwrap();
    luks::format(&img.file, IMAGE_LEN, rk.passphrase(), &fast_format("SHORT-3")).unwrap();
    for (len, needed) in [
        (16 * MIB + 100, 16 * MIB + 4096),
        (8 * MIB, 16 * MIB),
        (100_000, 16 * MIB),
        (20_000, 32768),
        (0, 32768),
    ] {
        img.file.set_len(len).unwrap();
        let err = LuksVolume::open(&img.file, rk.passphrase()).unwrap_err();
        match &err {
            LuksError::Truncated {
                len: l, needed: n, ..
            } => assert_eq!((*l, *n), (len, needed), "{err}"),
            other => panic!("{len}-byte image: expected Truncated, got {other}"),
        }
        assert!(err.to_string().contains(&format!("{len} bytes")), "{err}");
    }
}

#[test]
fn format_refuses_bad_options_with_named_errors() {
    let img = image(IMAGE_LEN);
    let long = "x".repeat(48);
    let err = luks::format(&img.file, IMAGE_LEN, b"p", &fast_format(&long)).unwrap_err();
    assert!(matches!(err, LuksError::Label { .. }), "{err}");
    let err = luks::format(&img.file, 16 * MIB, b"p", &fast_format("SMALL")).unwrap_err();
    assert!(matches!(err, LuksError::Layout { .. }), "{err}");
    let opts = LuksFormat {
        data_offset: 16 * MIB + 512,
        ..fast_format("ODD")
    };
    assert!(matches!(
        luks::format(&img.file, IMAGE_LEN, b"p", &opts),
        Err(LuksError::Layout { .. })
    ));
}

/// Rewrites the checksum of the header copy at `at` (sha256 over the copy with the field zeroed).
fn fix_checksum(buf: &mut [u8], at: usize, hdr_size: usize) {
    let copy = &mut buf[at..at + hdr_size];
    copy[448..512].fill(0);
    let sum = Sha256::digest(&*copy);
    copy[448..480].copy_from_slice(&sum);
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_and_arbitrary_headers_never_panic() {
    // A small valid drive: minimum data offset, 16 sectors of payload, held in memory.
    let data_offset = luks::header::HDR_SIZE * 2 + 258_048;
    let img = image(data_offset + 16 * 4096);
    let opts = LuksFormat {
        data_offset,
        ..fast_format("FUZZ-DRIVE")
    };
    luks::format(&img.file, data_offset + 16 * 4096, b"fuzz", &opts).unwrap();
    let mut base = Vec::new();
    reopen(&img.path).read_to_end(&mut base).unwrap();
    assert!(LuksHeader::from_bytes(&base).is_ok());
    let json_end = 4096 + base[4096..16384].iter().position(|&b| b == 0).unwrap();
    let json = base[4096..json_end].to_vec();
    let alphabet = b"{}[]\":,0123456789abcdefghijklmnopqrstuvwxyz-+. \\";

    let mut rng = Rng(0x5eed_5eed_1234_5678);
    let (mut tried, mut parsed, mut opened) = (0u64, 0u64, 0u64);
    for round in 0..6000 {
        let mut buf = base.clone();
        match round % 4 {
            // Random bytes anywhere in the first header copy, checksum not fixed.
            0 => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(16384);
                    buf[i] = rng.next() as u8;
                }
            }
            // Mutated JSON in both copies with valid checksums: exercises the metadata parser.
            1 | 2 => {
                let mut j = json.clone();
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(j.len());
                    let c = alphabet[rng.below(alphabet.len())];
                    match rng.below(3) {
                        0 => j[i] = c,
                        1 => j.insert(i, c),
                        _ => {
                            j.remove(i);
                        }
                    }
                }
                for copy in [0, 16384] {
                    buf[copy + 4096..copy + 16384].fill(0);
                    let n = j.len().min(12288);
                    buf[copy + 4096..copy + 4096 + n].copy_from_slice(&j[..n]);
                    fix_checksum(&mut buf, copy, 16384);
                }
            }
            // Binary header fields rewritten with valid checksums: sizes, offsets, version, label bytes.
            _ => {
                for copy in [0, 16384] {
                    let field = [6usize, 8, 16, 24, 72, 256][rng.below(6)];
                    for k in 0..8 {
                        buf[copy + field + k] = rng.next() as u8;
                    }
                    fix_checksum(&mut buf, copy, 16384);
                }
            }
        }
        tried += 1;
        if let Ok(h) = LuksHeader::from_bytes(&buf) {
            parsed += 1;
            let _ = (h.label(), h.payload_len(), h.data_offset());
            // Unlock only when the KDF costs are unchanged (mutated iteration counts could be huge).
            let text = String::from_utf8_lossy(&buf[4096..16384]);
            if text.matches("\"iterations\":1000,").count() == 2 {
                let dir = tempfile::tempdir().unwrap();
                let p = dir.path().join("m.img");
                std::fs::write(&p, &buf).unwrap();
                let r = LuksVolume::open(&File::open(&p).unwrap(), b"fuzz");
                opened += u64::from(r.is_ok());
            }
        }
    }
    // Arbitrary images of arbitrary lengths, some with a LUKS2 magic at the front.
    for round in 0..2000 {
        let len = rng.below(70_000);
        let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if round % 2 == 0 && len >= 6 {
            buf[..6].copy_from_slice(b"LUKS\xba\xbe");
        }
        tried += 1;
        assert!(LuksHeader::from_bytes(&buf).is_err());
    }
    println!("luks fuzz: {tried} inputs tried, {parsed} parsed as headers, {opened} unlocked; no panic");
    assert!(
        parsed > 0 && opened > 0,
        "the mutations never produced a valid header"
    );
}

#[test]
fn other_ciphers_and_key_sizes_are_named_unsupported() {
    for (cipher, key_bits, want) in [
        ("aes-cbc-essiv:sha256", "256", "aes-cbc-essiv:sha256"),
        ("aes-xts-plain64", "256", "256-bit key"),
    ] {
        let img = image(IMAGE_LEN);
        let kf = key_file(img.path.parent().unwrap(), "passphrase");
        cryptsetup(&[
            "luksFormat",
            "--type",
            "luks2",
            "--cipher",
            cipher,
            "--key-size",
            key_bits,
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--label",
            "OTHER-CIPHER",
            "--batch-mode",
            "--key-file",
            kf.to_str().unwrap(),
            img.path.to_str().unwrap(),
        ]);
        let file = reopen(&img.path);
        assert_eq!(LuksHeader::read(&file).unwrap().label(), "OTHER-CIPHER");
        let err = LuksVolume::open(&file, b"passphrase").unwrap_err();
        assert!(matches!(err, LuksError::Unsupported { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("OTHER-CIPHER") && msg.contains(want), "{msg}");
    }
}

#[test]
fn cryptsetup_can_rewrite_our_header_and_we_read_its_update() {
    // luksAddKey makes cryptsetup validate our metadata strictly, add keyslot 1 and rewrite both header
    // copies with a higher seqid; our reader must then open either keyslot.
    let img = image(IMAGE_LEN);
    let rk = RecoveryKey::generate().unwrap();
    let vol = luks::format(&img.file, IMAGE_LEN, rk.passphrase(), &fast_format("ADDKEY-5")).unwrap();
    let dir = img.path.parent().unwrap();
    let kf = key_file(dir, rk.as_str());
    let second = RecoveryKey::generate().unwrap();
    let new_kf = dir.join("newkey");
    std::fs::write(&new_kf, second.as_str()).unwrap();
    cryptsetup(&[
        "luksAddKey",
        "--batch-mode",
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
        "--key-file",
        kf.to_str().unwrap(),
        img.path.to_str().unwrap(),
        new_kf.to_str().unwrap(),
    ]);
    let file = reopen(&img.path);
    let header = LuksHeader::read(&file).unwrap();
    assert!(header.seqid() > 1, "cryptsetup should have bumped the seqid");
    for pass in [&rk, &second] {
        let opened = LuksVolume::open(&file, pass.passphrase()).unwrap();
        assert_eq!(opened.volume_key(), vol.volume_key());
        assert_eq!(opened.label(), "ADDKEY-5");
    }
}
