//! The LUKS2 binary header pair: encoding, checksum, and choosing a good copy on read.
//!
//! Layout (LUKS2 on-disk format specification, section 2; cryptsetup `lib/luks2/luks2.h`
//! `struct luks2_hdr_disk`): each copy is a 4096-byte binary header followed by the JSON area, together
//! `hdr_size` bytes. The primary copy is at offset 0 with magic `LUKS\xba\xbe`, the secondary at offset
//! `hdr_size` with magic `SKUL\xba\xbe`. All integers are big-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 6 | magic |
//! | 6 | 2 | version (2) |
//! | 8 | 8 | hdr_size (binary header + JSON area) |
//! | 16 | 8 | seqid |
//! | 24 | 48 | label (NUL-terminated) |
//! | 72 | 32 | checksum_alg ("sha256") |
//! | 104 | 64 | salt (different per copy) |
//! | 168 | 40 | uuid |
//! | 208 | 48 | subsystem |
//! | 256 | 8 | hdr_offset (offset of this copy) |
//! | 448 | 64 | csum: hash of the whole `hdr_size` bytes with this field zeroed |
//!
//! Reading follows cryptsetup's `LUKS2_disk_hdr_read`: the primary first; the secondary at the primary's
//! `hdr_size`, or, when the primary is unusable, at each offset in [`HDR2_OFFSETS`]. A copy is good when
//! magic, version, offsets, size and checksum hold and its JSON is valid metadata; of two good copies
//! the higher `seqid` wins.

use std::fmt;

use sha2::{Digest, Sha256, Sha512};

use super::metadata::Metadata;
pub use super::metadata::BIN_LEN;
use super::{LuksError, Source};

/// Header copy size seedship writes (cryptsetup's default): 4 KiB binary + 12 KiB JSON.
pub const HDR_SIZE: u64 = 16 * 1024;
/// The header copy sizes LUKS2 allows, which are also where a secondary copy may start.
pub const HDR2_OFFSETS: [u64; 9] = [
    0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000,
];
/// Longest label (drive id): 48 bytes including the terminating NUL.
pub const MAX_LABEL_LEN: usize = 47;

const MAGIC_1ST: &[u8; 6] = b"LUKS\xba\xbe";
const MAGIC_2ND: &[u8; 6] = b"SKUL\xba\xbe";
const CSUM_AT: usize = 448;

/// Which header copy a [`super::LuksHeader`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderCopy {
    Primary,
    Secondary,
}

impl fmt::Display for HeaderCopy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeaderCopy::Primary => "primary",
            HeaderCopy::Secondary => "secondary",
        })
    }
}

/// The fields of a binary header copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinHeader {
    pub hdr_size: u64,
    pub seqid: u64,
    pub label: String,
    pub uuid: String,
    pub subsystem: String,
}

/// A copy that passed every check.
pub(crate) struct GoodCopy {
    pub bin: BinHeader,
    pub meta: Metadata,
    pub copy: HeaderCopy,
}

fn put_str(buf: &mut [u8], at: usize, len: usize, s: &str) {
    let b = s.as_bytes();
    let n = b.len().min(len - 1);
    buf[at..at + n].copy_from_slice(&b[..n]);
}

fn get_str(buf: &[u8], at: usize, len: usize) -> String {
    let field = &buf[at..at + len];
    let end = field.iter().position(|&b| b == 0).unwrap_or(len);
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn be64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_be_bytes(b)
}

/// Encodes one copy (binary header + JSON area, `bin.hdr_size` bytes) with its checksum.
/// `json` must be shorter than the JSON area (the caller checks).
pub fn encode_copy(bin: &BinHeader, copy: HeaderCopy, salt: &[u8; 64], json: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; bin.hdr_size as usize];
    out[..6].copy_from_slice(if copy == HeaderCopy::Primary {
        MAGIC_1ST
    } else {
        MAGIC_2ND
    });
    out[6..8].copy_from_slice(&2u16.to_be_bytes());
    out[8..16].copy_from_slice(&bin.hdr_size.to_be_bytes());
    out[16..24].copy_from_slice(&bin.seqid.to_be_bytes());
    put_str(&mut out, 24, 48, &bin.label);
    put_str(&mut out, 72, 32, "sha256");
    out[104..168].copy_from_slice(salt);
    put_str(&mut out, 168, 40, &bin.uuid);
    put_str(&mut out, 208, 48, &bin.subsystem);
    let offset = if copy == HeaderCopy::Primary {
        0
    } else {
        bin.hdr_size
    };
    out[256..264].copy_from_slice(&offset.to_be_bytes());
    out[BIN_LEN..BIN_LEN + json.len()].copy_from_slice(json);
    let sum = Sha256::digest(&out);
    out[CSUM_AT..CSUM_AT + 32].copy_from_slice(&sum);
    out
}

/// Why one copy is unusable, for the damaged-header error.
type Reason = String;

/// Reads and checks the copy at `offset`. `Ok(None)` means there is no magic at all there.
fn read_copy(src: &dyn Source, offset: u64, copy: HeaderCopy) -> Result<Option<GoodCopy>, Reason> {
    let len = src
        .size()
        .map_err(|e| format!("cannot read the device size: {e}"))?;
    if len < offset + BIN_LEN as u64 {
        return Err(format!(
            "the device ends before the {copy} header at offset {offset}"
        ));
    }
    let mut bin = vec![0u8; BIN_LEN];
    src.read_at(&mut bin, offset)
        .map_err(|e| format!("read error at offset {offset}: {e}"))?;
    let magic = if copy == HeaderCopy::Primary {
        MAGIC_1ST
    } else {
        MAGIC_2ND
    };
    if &bin[..6] != magic {
        return Ok(None);
    }
    let version = u16::from_be_bytes([bin[6], bin[7]]);
    if version != 2 {
        return Err(format!("header version {version}, expected 2"));
    }
    let hdr_size = be64(&bin, 8);
    if !HDR2_OFFSETS.contains(&hdr_size) {
        return Err(format!("invalid header size {hdr_size}"));
    }
    let hdr_offset = be64(&bin, 256);
    if hdr_offset != offset || (copy == HeaderCopy::Secondary && hdr_size != offset) {
        return Err(format!(
            "header at offset {offset} records offset {hdr_offset} and size {hdr_size}"
        ));
    }
    if len < offset + hdr_size {
        return Err(format!("the device ends inside the {copy} header's JSON area"));
    }
    // hdr_size is at most 4 MiB (checked above), so this allocation is bounded.
    let mut whole = vec![0u8; hdr_size as usize];
    whole[..BIN_LEN].copy_from_slice(&bin);
    src.read_at(&mut whole[BIN_LEN..], offset + BIN_LEN as u64)
        .map_err(|e| format!("read error in the JSON area at offset {offset}: {e}"))?;
    verify_checksum(&mut whole)?;
    let json = &whole[BIN_LEN..];
    let end = json.iter().position(|&b| b == 0).unwrap_or(json.len());
    let meta = Metadata::parse(&json[..end], hdr_size - BIN_LEN as u64).map_err(|e| format!("JSON: {e}"))?;
    let bin = BinHeader {
        hdr_size,
        seqid: be64(&whole, 16),
        label: get_str(&whole, 24, 48),
        uuid: get_str(&whole, 168, 40),
        subsystem: get_str(&whole, 208, 48),
    };
    Ok(Some(GoodCopy { bin, meta, copy }))
}

fn verify_checksum(whole: &mut [u8]) -> Result<(), Reason> {
    let alg = get_str(whole, 72, 32);
    let mut stored = [0u8; 64];
    stored.copy_from_slice(&whole[CSUM_AT..CSUM_AT + 64]);
    whole[CSUM_AT..CSUM_AT + 64].fill(0);
    let ok = match alg.as_str() {
        "sha256" => Sha256::digest(&*whole)[..] == stored[..32],
        "sha512" => Sha512::digest(&*whole)[..] == stored[..],
        other => return Err(format!("unsupported checksum algorithm {other:?}")),
    };
    whole[CSUM_AT..CSUM_AT + 64].copy_from_slice(&stored);
    if ok {
        Ok(())
    } else {
        Err("checksum mismatch".into())
    }
}

/// Finds the good header copy as cryptsetup does (see the module docs).
pub(crate) fn read_best(src: &dyn Source) -> Result<GoodCopy, LuksError> {
    let len = src
        .size()
        .map_err(|e| LuksError::io("reading the device size", e))?;
    let minimum = 2 * HDR_SIZE;
    if len < minimum {
        return Err(LuksError::Truncated {
            len,
            needed: minimum,
            what: "the two LUKS2 header copies",
        });
    }
    let primary = read_copy(src, 0, HeaderCopy::Primary);
    let secondary = match &primary {
        Ok(Some(p)) => read_copy(src, p.bin.hdr_size, HeaderCopy::Secondary),
        _ => {
            let mut found = Ok(None);
            for off in HDR2_OFFSETS {
                found = read_copy(src, off, HeaderCopy::Secondary);
                if !matches!(found, Ok(None)) {
                    break;
                }
            }
            found
        }
    };
    match (primary, secondary) {
        (Ok(Some(p)), Ok(Some(s))) => Ok(if s.bin.seqid > p.bin.seqid { s } else { p }),
        (Ok(Some(p)), _) => Ok(p),
        (_, Ok(Some(s))) => Ok(s),
        (Ok(None), Ok(None)) => Err(LuksError::NotLuks),
        (p, s) => Err(LuksError::HeaderDamaged {
            primary: describe(p),
            secondary: describe(s),
        }),
    }
}

fn describe(r: Result<Option<GoodCopy>, Reason>) -> String {
    match r {
        Ok(Some(_)) => "good".into(),
        Ok(None) => "no LUKS2 magic".into(),
        Err(reason) => reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_offsets_match_the_spec() {
        let bin = BinHeader {
            hdr_size: HDR_SIZE,
            seqid: 7,
            label: "DRIVE-1".into(),
            uuid: "0b4a4f66-3f1e-4a4e-9d0e-8f1f6f0f3c11".into(),
            subsystem: String::new(),
        };
        let out = encode_copy(&bin, HeaderCopy::Secondary, &[0xab; 64], b"{}");
        assert_eq!(out.len(), HDR_SIZE as usize);
        assert_eq!(&out[..6], MAGIC_2ND);
        assert_eq!(&out[6..8], &[0, 2]);
        assert_eq!(be64(&out, 8), HDR_SIZE);
        assert_eq!(be64(&out, 16), 7);
        assert_eq!(get_str(&out, 24, 48), "DRIVE-1");
        assert_eq!(get_str(&out, 72, 32), "sha256");
        assert_eq!(out[104], 0xab);
        assert_eq!(get_str(&out, 168, 40), bin.uuid);
        assert_eq!(be64(&out, 256), HDR_SIZE);
        assert_eq!(&out[BIN_LEN..BIN_LEN + 2], b"{}");
        let mut copy = out.clone();
        verify_checksum(&mut copy).unwrap();
        assert_eq!(copy, out);
        copy[BIN_LEN + 100] ^= 1;
        assert!(verify_checksum(&mut copy).is_err());
    }

    #[test]
    fn long_labels_are_cut_to_fit_the_field() {
        let mut out = vec![0u8; 100];
        put_str(&mut out, 0, 48, &"x".repeat(60));
        assert_eq!(get_str(&out, 0, 48).len(), MAX_LABEL_LEN);
    }
}
