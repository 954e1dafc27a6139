//! The frame of small objects (config, keys, index, snapshots): a 48-byte header with magic, logical length and
//! BLAKE3 of the payload, then the payload, then zeros up to a multiple of 512 bytes.

use super::RepoError;
use crate::blob::PAGE_SIZE;

/// The first 8 bytes of every framed object.
pub const FRAME_MAGIC: &[u8; 8] = b"SEEDSHP1";
/// Header length: magic, u64 little-endian payload length, 32-byte BLAKE3 of the payload.
pub const FRAME_HEADER_LEN: usize = 48;

/// Frames `payload`: the result's length is a multiple of 512.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let total = FRAME_HEADER_LEN + payload.len();
    let padded = total.div_ceil(PAGE_SIZE as usize) * PAGE_SIZE as usize;
    let mut out = Vec::with_capacity(padded);
    out.extend_from_slice(FRAME_MAGIC);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(blake3::hash(payload).as_bytes());
    out.extend_from_slice(payload);
    out.resize(padded, 0);
    out
}

/// Checks a framed object (magic, length, digest, zero padding) and returns its payload.
pub fn unframe<'a>(object: &str, bytes: &'a [u8]) -> Result<&'a [u8], RepoError> {
    if bytes.len() < FRAME_HEADER_LEN || &bytes[..8] != FRAME_MAGIC {
        return Err(RepoError::damaged(object, "bad frame header (magic)"));
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let avail = (bytes.len() - FRAME_HEADER_LEN) as u64;
    if len > avail {
        return Err(RepoError::damaged(
            object,
            format!("frame length {len} exceeds the object's {avail} payload bytes"),
        ));
    }
    let end = FRAME_HEADER_LEN + len as usize;
    let payload = &bytes[FRAME_HEADER_LEN..end];
    if blake3::hash(payload).as_bytes() != &bytes[16..48] {
        return Err(RepoError::damaged(object, "payload digest mismatch"));
    }
    if let Some(p) = bytes[end..].iter().position(|&b| b != 0) {
        return Err(RepoError::damaged(
            object,
            format!("non-zero byte in the padding at offset {}", end + p),
        ));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_flip_detected() {
        let f = frame(b"payload bytes");
        assert_eq!(f.len(), 512);
        assert_eq!(unframe("x", &f).unwrap(), b"payload bytes");
        for i in 0..f.len() {
            let mut bad = f.clone();
            bad[i] ^= 0x10;
            let e = unframe("keys/ab", &bad).unwrap_err().to_string();
            assert!(e.contains("keys/ab"), "{e}");
        }
        assert!(unframe("x", &f[..10]).is_err());
    }
}
