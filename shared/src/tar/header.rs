//! Header encoding shared by the writer and the size calculator: one ustar block, optionally preceded by a pax
//! `x` header carrying `path`, `size` and `mtime` when ustar cannot hold them.

use super::TarError;

/// Tar block size.
pub const BLOCK: u64 = 512;
/// Bytes of the end-of-archive marker (two zero blocks).
pub const END_OF_ARCHIVE_LEN: u64 = 2 * BLOCK;
/// Largest size a ustar header holds in its 11 octal digits (8 GiB - 1).
pub const USTAR_MAX_SIZE: u64 = 0o777_7777_7777;
/// Cap on pax extended headers and GNU long names the reader accepts (and the writer produces).
pub const MAX_META_LEN: u64 = 1 << 20;

const NAME_LEN: usize = 100;

/// What the writer needs to know about one regular-file entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryHeader {
    /// Path inside the archive, `/`-separated, relative (no leading `/`, no `..` component).
    pub path: String,
    /// Exact content length in bytes.
    pub size: u64,
    /// Permission bits (e.g. `0o644`).
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
}

impl EntryHeader {
    /// A regular file with mode 0644.
    pub fn file(path: impl Into<String>, size: u64, mtime: i64) -> Self {
        Self {
            path: path.into(),
            size,
            mode: 0o644,
            mtime,
        }
    }

    /// Checks the path: non-empty, relative, no `..`/empty components, no NUL, at most 4096 bytes.
    pub fn validate(&self) -> Result<(), TarError> {
        let bad = |reason| {
            Err(TarError::InvalidPath {
                path: self.path.clone(),
                reason,
            })
        };
        if self.path.is_empty() {
            return bad("empty path");
        }
        if self.path.len() > 4096 {
            return bad("longer than 4096 bytes");
        }
        if self.path.contains('\0') {
            return bad("contains a NUL byte");
        }
        if self.path.starts_with('/') {
            return bad("absolute path; tar members must be relative");
        }
        if self
            .path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return bad("empty, '.' or '..' path component");
        }
        if self.mode > 0o7777 {
            return bad("mode has bits beyond 07777");
        }
        Ok(())
    }

    fn mtime_fits_ustar(&self) -> bool {
        (0..=USTAR_MAX_SIZE as i64).contains(&self.mtime)
    }

    fn path_fits_ustar(&self) -> bool {
        self.path.len() <= NAME_LEN && self.path.is_ascii()
    }
}

/// The pax extended-header payload for `header`, or `None` when plain ustar holds everything.
pub(crate) fn pax_payload(header: &EntryHeader) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    if !header.path_fits_ustar() {
        push_pax_record(&mut out, "path", header.path.as_bytes());
    }
    if header.size > USTAR_MAX_SIZE {
        push_pax_record(&mut out, "size", header.size.to_string().as_bytes());
    }
    if !header.mtime_fits_ustar() {
        push_pax_record(&mut out, "mtime", header.mtime.to_string().as_bytes());
    }
    (!out.is_empty()).then_some(out)
}

/// Appends one `"<len> <key>=<value>\n"` record, where `<len>` counts the whole record including itself.
pub(crate) fn push_pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len != rest + decimal_digits(len as u64) {
        len = rest + decimal_digits(len as u64);
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn decimal_digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// Rounds up to the next multiple of the block size.
pub(crate) fn padded(len: u64) -> u64 {
    len.div_ceil(BLOCK) * BLOCK
}

/// Exact number of archive bytes the entry takes: pax header (if any) + ustar header + content padded to 512.
/// The end-of-archive marker ([`END_OF_ARCHIVE_LEN`]) is not included.
pub fn entry_tar_size(header: &EntryHeader) -> u64 {
    let pax = pax_payload(header).map_or(0, |p| BLOCK + padded(p.len() as u64));
    pax + BLOCK + padded(header.size)
}

/// Encodes the header blocks (pax `x` block + payload, then the ustar block) for `header`.
pub fn encode_header(header: &EntryHeader) -> Result<Vec<u8>, TarError> {
    header.validate()?;
    let mut out = Vec::with_capacity(3 * BLOCK as usize);
    let short_name = ustar_name(&header.path);
    if let Some(pax) = pax_payload(header) {
        if pax.len() as u64 > MAX_META_LEN {
            return Err(TarError::InvalidPath {
                path: header.path.clone(),
                reason: "pax header would exceed 1 MiB",
            });
        }
        let pax_name = format!("PaxHeaders/{}", short_name);
        out.extend_from_slice(&ustar_block(&pax_name, pax.len() as u64, 0o644, 0, b'x'));
        out.extend_from_slice(&pax);
        out.resize(padded(out.len() as u64) as usize, 0);
    }
    let mtime = if header.mtime_fits_ustar() {
        header.mtime as u64
    } else {
        0
    };
    let size = if header.size > USTAR_MAX_SIZE {
        0
    } else {
        header.size
    };
    out.extend_from_slice(&ustar_block(&short_name, size, header.mode, mtime, b'0'));
    Ok(out)
}

/// The name stored in the ustar field: the path itself when it fits, otherwise an ASCII stand-in (the real
/// path is in the pax header) made of the path's last bytes with non-ASCII replaced by `_`.
fn ustar_name(path: &str) -> String {
    let ascii: String = path
        .chars()
        .map(|c| if c.is_ascii() && c != '\0' { c } else { '_' })
        .collect();
    if ascii.len() <= NAME_LEN {
        ascii
    } else {
        ascii[ascii.len() - NAME_LEN..]
            .trim_start_matches('/')
            .to_string()
    }
}

fn ustar_block(name: &str, size: u64, mode: u32, mtime: u64, typeflag: u8) -> [u8; BLOCK as usize] {
    let mut b = [0u8; BLOCK as usize];
    let n = name.as_bytes();
    b[..n.len().min(NAME_LEN)].copy_from_slice(&n[..n.len().min(NAME_LEN)]);
    put_octal(&mut b[100..108], u64::from(mode));
    put_octal(&mut b[108..116], 0);
    put_octal(&mut b[116..124], 0);
    put_octal(&mut b[124..136], size);
    put_octal(&mut b[136..148], mtime);
    b[156] = typeflag;
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    let sum = checksum(&b);
    // Six octal digits, NUL, space: the traditional layout GNU tar writes.
    b[148..154].copy_from_slice(format!("{sum:06o}").as_bytes());
    b[154] = 0;
    b[155] = b' ';
    b
}

/// Zero-padded octal digits filling all but the last byte of `field`, which stays NUL.
fn put_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&s.as_bytes()[s.len() - digits..]);
    field[digits] = 0;
}

/// Header checksum: byte sum with the checksum field counted as eight spaces.
pub(crate) fn checksum(block: &[u8; BLOCK as usize]) -> u64 {
    block
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u64::from(b) })
        .sum()
}

/// The signed-byte checksum some historic tars computed; accepted on read.
pub(crate) fn checksum_signed(block: &[u8; BLOCK as usize]) -> i64 {
    block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                i64::from(b as i8)
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        for vlen in [0usize, 1, 5, 6, 7, 90, 91, 92, 93, 994, 995, 996, 997, 9990] {
            let mut out = Vec::new();
            push_pax_record(&mut out, "path", &vec![b'a'; vlen]);
            let text = String::from_utf8(out.clone()).unwrap();
            let (len, _) = text.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), out.len(), "value length {vlen}");
        }
    }

    #[test]
    fn ten_gib_size_goes_to_pax_and_size_formula_matches_encoder() {
        let h = EntryHeader::file("big.bin", 10 << 30, 1_700_000_000);
        let pax = pax_payload(&h).unwrap();
        assert_eq!(pax, b"20 size=10737418240\n");
        let enc = encode_header(&h).unwrap();
        assert_eq!(enc.len(), 3 * 512);
        assert_eq!(entry_tar_size(&h), enc.len() as u64 + (10 << 30));
        // the ustar size field of the real header is zero; the pax record carries the size
        assert_eq!(&enc[1024 + 124..1024 + 136], b"00000000000\0");
    }

    #[test]
    fn short_ascii_entry_has_no_pax_header() {
        let h = EntryHeader::file("a/b.txt", 1, 0);
        assert!(pax_payload(&h).is_none());
        assert_eq!(entry_tar_size(&h), 1024);
        assert_eq!(encode_header(&h).unwrap().len(), 512);
        let boundary = EntryHeader::file("x".repeat(100), USTAR_MAX_SIZE, 0);
        assert!(pax_payload(&boundary).is_none());
        let over = EntryHeader::file("x".repeat(101), USTAR_MAX_SIZE + 1, -1);
        assert_eq!(
            pax_payload(&over)
                .unwrap()
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
            3
        );
    }

    #[test]
    fn invalid_paths_are_refused_with_the_path_named() {
        for p in ["", "/abs", "a//b", "a/../b", "./a", "a\0b"] {
            let err = encode_header(&EntryHeader::file(p, 0, 0)).unwrap_err();
            assert!(
                matches!(err, TarError::InvalidPath { ref path, .. } if path == p),
                "{p:?}"
            );
        }
    }
}
