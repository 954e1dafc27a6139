//! `luks2` keyslots: sealing the volume key under a passphrase, and unsealing it.
//!
//! Sealing (cryptsetup `luks2_keyslot_set_key`): derive a 64-byte key from the passphrase with the
//! keyslot KDF, AF-split the volume key into 4000 stripes ([`super::af`]), and encrypt the material with
//! `aes-xts-plain64` in 512-byte sectors whose IVs count from 0 at the start of the keyslot area
//! (cryptsetup `luks2_encrypt_to_storage`: `crypt_storage_wrapper_init(.., offset, 0, SECTOR_SIZE, ..)`).
//! Unsealing reverses this; the candidate key is accepted only if the PBKDF2 digest bound to the keyslot
//! and the data segment matches ([`digest_matches`]).

use super::af;
use super::crypt::XtsCipher;
use super::hash::LuksHash;
use super::kdf::{self, KeyslotKdf};
use super::metadata::{KeyDigest, Keyslot, KEY_SIZE};
use super::{LuksError, Source};

/// Encrypted key material for a new keyslot (`af::split_len(64, 4000)` bytes) sealing `volume_key`.
pub fn seal(volume_key: &[u8; KEY_SIZE], passphrase: &[u8], kdf: &KeyslotKdf) -> Result<Vec<u8>, LuksError> {
    let mut derived = [0u8; KEY_SIZE];
    kdf.derive(passphrase, &mut derived)?;
    let mut material = af::split(volume_key, af::STRIPES, LuksHash::Sha256)?;
    XtsCipher::new(&derived).encrypt(&mut material, 512, 0, 1);
    derived.fill(0);
    Ok(material)
}

/// The candidate volume key in `slot` for `passphrase` (not yet checked against a digest).
pub(crate) fn unseal(
    src: &dyn Source,
    slot: &Keyslot,
    passphrase: &[u8],
) -> Result<[u8; KEY_SIZE], LuksError> {
    let mut derived = [0u8; KEY_SIZE];
    slot.kdf.derive(passphrase, &mut derived)?;
    // Bounded: stripes == 4000 and the key is 64 bytes (checked when the metadata was parsed).
    let mut material = vec![0u8; af::split_len(KEY_SIZE, slot.stripes)];
    src.read_at(&mut material, slot.area_offset).map_err(|e| {
        LuksError::io(
            format!("reading keyslot {} at offset {}", slot.id, slot.area_offset),
            e,
        )
    })?;
    XtsCipher::new(&derived).decrypt(&mut material, 512, 0, 1);
    derived.fill(0);
    let key = af::merge(&material, KEY_SIZE, slot.stripes, slot.af_hash);
    material.fill(0);
    let mut out = [0u8; KEY_SIZE];
    out.copy_from_slice(&key);
    Ok(out)
}

/// PBKDF2 digest of a volume key as stored in a digest object.
pub fn compute_digest(d: &KeyDigest, key: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; d.digest.len()];
    kdf::pbkdf2(d.hash, key, &d.salt, d.iterations, &mut out);
    out
}

/// Whether `key` matches digest `d`, compared without an early exit.
pub fn digest_matches(d: &KeyDigest, key: &[u8]) -> bool {
    let got = compute_digest(d, key);
    got.len() == d.digest.len() && got.iter().zip(&d.digest).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::luks::hash::LuksHash;

    #[test]
    fn seal_then_unseal() {
        let key: [u8; 64] = std::array::from_fn(|i| i as u8);
        let kdf = KeyslotKdf::Pbkdf2 {
            hash: LuksHash::Sha256,
            iterations: 1000,
            salt: vec![7; 32],
        };
        let material = seal(&key, b"secret", &kdf).unwrap();
        let mut image = vec![0u8; 4096];
        image.extend_from_slice(&material);
        let slot = Keyslot {
            id: 0,
            area_offset: 4096,
            area_size: material.len() as u64,
            af_hash: LuksHash::Sha256,
            stripes: af::STRIPES,
            kdf,
        };
        assert_eq!(
            unseal(&crate::luks::MemImage(&image), &slot, b"secret").unwrap(),
            key
        );
        assert_ne!(
            unseal(&crate::luks::MemImage(&image), &slot, b"Secret").unwrap(),
            key
        );
        let digest = KeyDigest {
            keyslots: vec![0],
            segments: vec![0],
            hash: LuksHash::Sha256,
            iterations: 1000,
            salt: vec![1; 32],
            digest: vec![0; 32],
        };
        let stored = KeyDigest {
            digest: compute_digest(&digest, &key),
            ..digest
        };
        assert!(digest_matches(&stored, &key));
        assert!(!digest_matches(&stored, &[0u8; 64]));
    }
}
