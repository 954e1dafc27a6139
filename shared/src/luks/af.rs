//! The LUKS anti-forensic (AF) splitter: one key spread over `stripes` blocks so that wiping any part
//! of the keyslot area destroys the key.
//!
//! From the LUKS1 specification (AF-Split, section 2.4) and cryptsetup `lib/luks1/af.c`, which LUKS2
//! keyslots of `af.type = "luks1"` reuse: with `d` a zero block, for each of the first `stripes - 1`
//! stripes `s_i`: `d = H(d ^ s_i)`; the last stripe is `d ^ key`. `H` (diffuse) hashes the block in
//! digest-sized pieces, piece `j` as `hash(be32(j) || piece)` truncated to the piece's length.

use super::hash::LuksHash;
use super::LuksError;

/// Stripes cryptsetup uses for every LUKS2 keyslot (its `LUKS_STRIPES`).
pub const STRIPES: usize = 4000;

/// Bytes of split material for a key of `key_len` bytes, rounded up to 512-byte sectors as cryptsetup's
/// `AF_split_sectors` does.
pub const fn split_len(key_len: usize, stripes: usize) -> usize {
    (key_len * stripes).div_ceil(512) * 512
}

fn diffuse(block: &mut [u8], hash: LuksHash) {
    let n = hash.output_len();
    let mut out = vec![0u8; block.len()];
    for (j, (src, dst)) in block.chunks(n).zip(out.chunks_mut(n)).enumerate() {
        hash.digest_into(&[&(j as u32).to_be_bytes(), src], dst);
    }
    block.copy_from_slice(&out);
}

fn xor_into(acc: &mut [u8], other: &[u8]) {
    for (a, b) in acc.iter_mut().zip(other) {
        *a ^= b;
    }
}

/// Splits `key` into [`split_len`] bytes of AF material (the padding after `key.len() * stripes` is zero).
pub fn split(key: &[u8], stripes: usize, hash: LuksHash) -> Result<Vec<u8>, LuksError> {
    let n = key.len();
    let mut out = vec![0u8; split_len(n, stripes)];
    getrandom::fill(&mut out[..n * (stripes - 1)]).map_err(|e| LuksError::Random {
        reason: e.to_string(),
    })?;
    let mut d = vec![0u8; n];
    for stripe in out[..n * (stripes - 1)].chunks_exact(n) {
        xor_into(&mut d, stripe);
        diffuse(&mut d, hash);
    }
    xor_into(&mut d, key);
    out[n * (stripes - 1)..n * stripes].copy_from_slice(&d);
    Ok(out)
}

/// Recovers the key of `key_len` bytes from AF material (at least `key_len * stripes` bytes).
pub fn merge(material: &[u8], key_len: usize, stripes: usize, hash: LuksHash) -> Vec<u8> {
    debug_assert!(stripes >= 1 && material.len() >= key_len * stripes);
    let mut d = vec![0u8; key_len];
    for stripe in material[..key_len * (stripes - 1)].chunks_exact(key_len) {
        xor_into(&mut d, stripe);
        diffuse(&mut d, hash);
    }
    xor_into(&mut d, &material[key_len * (stripes - 1)..key_len * stripes]);
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn split_then_merge_round_trips() {
        let key: Vec<u8> = (0..64).collect();
        for hash in [LuksHash::Sha256, LuksHash::Sha512] {
            let m = split(&key, STRIPES, hash).unwrap();
            assert_eq!(m.len(), 256_000);
            assert_eq!(merge(&m, 64, STRIPES, hash), key);
            let m = split(&key[..20], 3, hash).unwrap();
            assert_eq!(m.len(), 512);
            assert_eq!(merge(&m, 20, 3, hash), &key[..20]);
        }
    }

    #[test]
    fn damaging_one_stripe_destroys_the_key() {
        let key = [0x42u8; 64];
        let mut m = split(&key, STRIPES, LuksHash::Sha256).unwrap();
        m[1000] ^= 1;
        assert_ne!(merge(&m, 64, STRIPES, LuksHash::Sha256), key);
    }

    #[test]
    fn diffuse_known_answer() {
        // Two stripes over a 40-byte key with zero first stripe: last stripe = H(0) ^ key, where H hashes
        // piece 0 (32 bytes) with index 0 and piece 1 (8 bytes) with index 1, truncated.
        let mut zero = [0u8; 40];
        diffuse(&mut zero, LuksHash::Sha256);
        let mut first = Sha256::new();
        first.update([0, 0, 0, 0]);
        first.update([0u8; 32]);
        let mut second = Sha256::new();
        second.update([0, 0, 0, 1]);
        second.update([0u8; 8]);
        assert_eq!(&zero[..32], &first.finalize()[..]);
        assert_eq!(&zero[32..], &second.finalize()[..8]);
    }
}
