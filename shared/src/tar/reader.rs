//! Streaming tar reader: ustar, pax `x`/`g`, GNU `L`/`K`; verifies checksums; bounded metadata allocation.

use std::io::{self, Read};

use super::header::{checksum, checksum_signed, padded, BLOCK, MAX_META_LEN};
use super::TarError;

/// The largest entry size accepted: `i64::MAX`, the largest file size (`off_t`) there is.
pub const MAX_ENTRY_SIZE: u64 = i64::MAX as u64;

/// What kind of member an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
    HardLink,
    /// Any other type flag (devices, FIFOs, vendor types); its content, if any, can still be read.
    Other(u8),
}

/// The resolved header of one entry (ustar fields overridden by pax and GNU long-name records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntryInfo {
    pub path: String,
    pub link: Option<String>,
    pub kind: EntryKind,
    pub size: u64,
    pub mode: u32,
    pub mtime: i64,
    /// Archive offset of the first header block belonging to this entry (pax/long-name headers included).
    pub header_offset: u64,
    /// Archive offset of the first content byte.
    pub data_offset: u64,
}

/// Overrides collected from pax and GNU headers, applied to the next ustar header.
#[derive(Debug, Default, Clone)]
struct Overrides {
    path: Option<String>,
    link: Option<String>,
    size: Option<u64>,
    mtime: Option<i64>,
}

/// Reads entries one by one from a tar stream.
#[derive(Debug)]
pub struct TarReader<R: Read> {
    inner: R,
    offset: u64,
    /// Content bytes of the current entry not yet consumed, then its padding.
    remaining: u64,
    padding: u64,
    current: String,
    global: Overrides,
    done: bool,
}

/// One entry: its header and a `Read` over exactly its content.
#[derive(Debug)]
pub struct TarEntry<'a, R: Read> {
    pub info: TarEntryInfo,
    reader: &'a mut TarReader<R>,
}

impl<R: Read> TarEntry<'_, R> {
    /// Content bytes not yet read.
    pub fn remaining(&self) -> u64 {
        self.reader.remaining
    }
}

impl<R: Read> Read for TarEntry<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = &mut *self.reader;
        if r.remaining == 0 {
            return Ok(0);
        }
        let want = buf.len().min(r.remaining.min(usize::MAX as u64) as usize);
        let n = r.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("tar stream ends inside {:?} at offset {}", r.current, r.offset),
            ));
        }
        r.remaining -= n as u64;
        r.offset += n as u64;
        Ok(n)
    }
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            offset: 0,
            remaining: 0,
            padding: 0,
            current: String::from("start of archive"),
            global: Overrides::default(),
            done: false,
        }
    }

    /// Archive offset of the next byte to be read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next entry, skipping whatever is left of the previous one; `None` at the end-of-archive marker
    /// (or at a clean end of stream on a block boundary).
    pub fn next_entry(&mut self) -> Result<Option<TarEntry<'_, R>>, TarError> {
        match self.next_info()? {
            Some(info) => Ok(Some(TarEntry { info, reader: self })),
            None => Ok(None),
        }
    }

    fn next_info(&mut self) -> Result<Option<TarEntryInfo>, TarError> {
        if self.done {
            return Ok(None);
        }
        self.skip(self.remaining + self.padding)?;
        self.remaining = 0;
        self.padding = 0;
        let header_offset = self.offset;
        let mut local = Overrides::default();
        loop {
            let Some(block) = self.read_block()? else {
                self.done = true;
                return Ok(None);
            };
            if block.iter().all(|&b| b == 0) {
                // End of archive: a second zero block normally follows; a lone one is tolerated.
                let _ = self.read_block()?;
                self.done = true;
                return Ok(None);
            }
            let at = self.offset - BLOCK;
            let name = field_str(&block[0..100]);
            self.current = name.clone();
            verify_checksum(&block, &name, at)?;
            let typeflag = block[156];
            let size = parse_number(&block[124..136]).ok_or_else(|| bad(&name, at, "size"))?;
            match typeflag {
                b'x' | b'g' | b'L' | b'K' => {
                    let data = self.read_meta(size, &name, at)?;
                    match typeflag {
                        b'x' => parse_pax(&data, &mut local, &name, at)?,
                        b'g' => parse_pax(&data, &mut self.global, &name, at)?,
                        b'L' => local.path = Some(gnu_name(&data, &name, at)?),
                        _ => local.link = Some(gnu_name(&data, &name, at)?),
                    }
                }
                _ => return self.finish_header(&block, header_offset, at, local).map(Some),
            }
        }
    }

    fn finish_header(
        &mut self,
        block: &[u8; BLOCK as usize],
        header_offset: u64,
        at: u64,
        local: Overrides,
    ) -> Result<TarEntryInfo, TarError> {
        let raw_name = field_str(&block[0..100]);
        let ustar = &block[257..263] == b"ustar\0";
        let prefix = if ustar {
            field_str(&block[345..500])
        } else {
            String::new()
        };
        let joined = if prefix.is_empty() {
            raw_name.clone()
        } else {
            format!("{prefix}/{raw_name}")
        };
        let path = local.path.or_else(|| self.global.path.clone()).unwrap_or(joined);
        let n = |f: &'static str, r: std::ops::Range<usize>| {
            parse_number(&block[r]).ok_or_else(|| bad(&path, at, f))
        };
        let mode = n("mode", 100..108)? as u32 & 0o7777;
        let ustar_size = n("size", 124..136)?;
        let ustar_mtime = n("mtime", 136..148)? as i64;
        let size = local.size.or(self.global.size).unwrap_or(ustar_size);
        let mtime = local.mtime.or(self.global.mtime).unwrap_or(ustar_mtime);
        let linkfield = field_str(&block[157..257]);
        let link = local.link.or_else(|| self.global.link.clone());
        let link = link.or_else(|| (!linkfield.is_empty()).then_some(linkfield));
        let kind = match block[156] {
            b'0' | 0 | b'7' => EntryKind::File,
            b'5' => EntryKind::Directory,
            b'2' => EntryKind::Symlink,
            b'1' => EntryKind::HardLink,
            other => EntryKind::Other(other),
        };
        // Link headers carry no content whatever the size field says (POSIX: their size is zero); every other
        // type, directories included, is followed by `size` bytes that must be skipped.
        let content = match kind {
            EntryKind::Symlink | EntryKind::HardLink => 0,
            _ => size,
        };
        // no file is larger than i64::MAX (off_t); refusing more also keeps the padding arithmetic in range
        if content > MAX_ENTRY_SIZE {
            return Err(bad(&path, at, "size"));
        }
        self.current = path.clone();
        self.remaining = content;
        self.padding = padded(content) - content;
        Ok(TarEntryInfo {
            path,
            link,
            kind,
            size: content,
            mode,
            mtime,
            header_offset,
            data_offset: self.offset,
        })
    }

    /// Reads a whole block; `None` on a clean end of stream at a block boundary.
    fn read_block(&mut self) -> Result<Option<[u8; BLOCK as usize]>, TarError> {
        let mut block = [0u8; BLOCK as usize];
        let mut filled = 0;
        while filled < block.len() {
            match self.inner.read(&mut block[filled..]) {
                Ok(0) if filled == 0 => return Ok(None),
                Ok(0) => return Err(self.eof()),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(self.io(source)),
            }
        }
        self.offset += BLOCK;
        Ok(Some(block))
    }

    fn read_meta(&mut self, size: u64, name: &str, at: u64) -> Result<Vec<u8>, TarError> {
        if size > MAX_META_LEN {
            return Err(TarError::MetaTooLarge {
                entry: name.to_string(),
                offset: at,
                size,
                limit: MAX_META_LEN,
            });
        }
        let mut data = vec![0u8; size as usize];
        self.inner.read_exact(&mut data).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => self.eof(),
            _ => self.io(e),
        })?;
        self.offset += size;
        self.skip(padded(size) - size)?;
        Ok(data)
    }

    fn skip(&mut self, n: u64) -> Result<(), TarError> {
        if n == 0 {
            return Ok(());
        }
        let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink()).map_err(|e| self.io(e))?;
        self.offset += copied;
        if copied < n {
            return Err(self.eof());
        }
        Ok(())
    }

    fn eof(&self) -> TarError {
        TarError::UnexpectedEof {
            entry: self.current.clone(),
            offset: self.offset,
        }
    }

    fn io(&self, source: io::Error) -> TarError {
        TarError::Io {
            entry: self.current.clone(),
            offset: self.offset,
            source,
        }
    }
}

fn bad(entry: &str, offset: u64, field: &'static str) -> TarError {
    TarError::BadField {
        entry: entry.to_string(),
        offset,
        field,
    }
}

fn verify_checksum(block: &[u8; BLOCK as usize], name: &str, at: u64) -> Result<(), TarError> {
    let stored = parse_octal(&block[148..156]).ok_or_else(|| bad(name, at, "checksum"))?;
    let computed = checksum(block);
    if stored == computed || stored as i64 == checksum_signed(block) {
        return Ok(());
    }
    Err(TarError::BadChecksum {
        entry: name.to_string(),
        offset: at,
        stored,
        computed,
    })
}

/// A NUL-terminated header text field (lossy: ustar names are expected to be ASCII).
fn field_str(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// A numeric field: octal digits (leading spaces, trailing NUL/space) or GNU base-256 (high bit set).
fn parse_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None; // negative base-256 values are not meaningful here
        }
        let mut v: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    parse_octal(field)
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let s = field.iter().skip_while(|&&b| b == b' ');
    let mut v: u64 = 0;
    let mut seen_end = false;
    for &b in s {
        match b {
            b'0'..=b'7' if !seen_end => v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?,
            0 | b' ' => seen_end = true,
            _ => return None,
        }
    }
    Some(v)
}

fn gnu_name(data: &[u8], name: &str, at: u64) -> Result<String, TarError> {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    String::from_utf8(data[..end].to_vec()).map_err(|_| TarError::BadPax {
        entry: name.to_string(),
        offset: at,
        reason: "GNU long name is not UTF-8".into(),
    })
}

/// Parses pax records into `into`; unknown keys are ignored, as POSIX allows.
fn parse_pax(data: &[u8], into: &mut Overrides, name: &str, at: u64) -> Result<(), TarError> {
    let fail = |reason: String| TarError::BadPax {
        entry: name.to_string(),
        offset: at,
        reason,
    };
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break; // trailing NUL padding written by some tools
        }
        let sp = rest
            .iter()
            .take(20)
            .position(|&b| b == b' ')
            .ok_or_else(|| fail("record without length".into()))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| fail("record length is not a decimal number".into()))?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(fail(format!("record length {len} does not match the record")));
        }
        let record = &rest[sp + 1..len - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| fail("record without '='".into()))?;
        let key = std::str::from_utf8(&record[..eq]).map_err(|_| fail("key is not UTF-8".into()))?;
        let value = std::str::from_utf8(&record[eq + 1..])
            .map_err(|_| fail(format!("value of {key} is not UTF-8")))?;
        match key {
            "path" => into.path = Some(value.to_string()),
            "linkpath" => into.link = Some(value.to_string()),
            "size" => {
                into.size = Some(
                    value
                        .parse()
                        .map_err(|_| fail(format!("size {value:?} is not a number")))?,
                )
            }
            "mtime" => {
                into.mtime = Some(
                    parse_pax_time(value).ok_or_else(|| fail(format!("mtime {value:?} is not a time")))?,
                )
            }
            _ => {}
        }
        rest = &rest[len..];
    }
    Ok(())
}

/// `[-]seconds[.fraction]`, truncated to whole seconds.
fn parse_pax_time(v: &str) -> Option<i64> {
    let int = v.split('.').next()?;
    let frac_ok = v
        .split('.')
        .nth(1)
        .is_none_or(|f| f.bytes().all(|b| b.is_ascii_digit()));
    if !frac_ok || v.split('.').count() > 2 {
        return None;
    }
    int.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_in_octal_and_base256() {
        assert_eq!(parse_number(b"00000001750\0"), Some(1000));
        assert_eq!(parse_number(b"   1750 \0"), Some(1000));
        assert_eq!(
            parse_number(&[0x80, 0, 0, 0, 0, 0, 0, 2, 0x80, 0, 0, 0]),
            Some(0x2_8000_0000)
        );
        assert_eq!(parse_number(b"0009\0"), None);
        assert_eq!(parse_number(b"12 3"), None);
    }

    /// A ustar file header named `big` whose size field is `size` (12 bytes), with a valid checksum.
    fn header_with_size(size: [u8; 12]) -> Vec<u8> {
        let mut b = [0u8; BLOCK as usize];
        b[..3].copy_from_slice(b"big");
        b[100..108].copy_from_slice(b"0000644\0");
        b[124..136].copy_from_slice(&size);
        b[136..148].copy_from_slice(b"00000000000\0");
        b[156] = b'0';
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        let sum = format!("{:06o}\0 ", checksum(&b));
        b[148..156].copy_from_slice(sum.as_bytes());
        let mut out = b.to_vec();
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    #[test]
    fn sizes_above_i64_max_are_refused_not_wrapped() {
        // base-256 u64::MAX: padded() used to overflow (a panic with overflow checks, a wrap to 0 without)
        let mut size = [0xffu8; 12];
        size[..4].copy_from_slice(&[0x80, 0, 0, 0]);
        let data = header_with_size(size);
        let mut r = TarReader::new(&data[..]);
        let err = r.next_entry().map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("big") && err.contains("size"), "{err}");
        // i64::MAX itself is a size a file can have
        let mut size = [0u8; 12];
        size[0] = 0x80;
        size[4..].copy_from_slice(&(i64::MAX as u64).to_be_bytes());
        let data = header_with_size(size);
        let mut r = TarReader::new(&data[..]);
        assert_eq!(r.next_entry().unwrap().unwrap().info.size, i64::MAX as u64);
    }

    #[test]
    fn pax_time_accepts_fractions_and_rejects_junk() {
        assert_eq!(parse_pax_time("1700000000.123456789"), Some(1_700_000_000));
        assert_eq!(parse_pax_time("-5"), Some(-5));
        assert_eq!(parse_pax_time("1.2.3"), None);
        assert_eq!(parse_pax_time("x"), None);
    }
}
