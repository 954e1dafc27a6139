//! The 512-bit volume key of a drive, and the random source for it and for the header's salts.

use std::fmt;

use super::metadata::KEY_SIZE;
use super::LuksError;

/// A 512-bit volume key. A secret: `Debug` is redacted and the bytes are zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct VolumeKey([u8; KEY_SIZE]);

impl VolumeKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<Self, LuksError> {
        let mut k = [0u8; KEY_SIZE];
        random(&mut k)?;
        Ok(Self(k))
    }

    pub fn from_bytes(bytes: [u8; KEY_SIZE]) -> Self {
        Self(bytes)
    }

    /// The raw key: for handing to an independent implementation in tests or a recovery tool only.
    pub fn as_bytes(&self) -> &[u8; KEY_SIZE] {
        &self.0
    }
}

impl fmt::Debug for VolumeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VolumeKey(<redacted>)")
    }
}

impl Drop for VolumeKey {
    fn drop(&mut self) {
        self.0.fill(0);
    }
}

pub(crate) fn random(buf: &mut [u8]) -> Result<(), LuksError> {
    getrandom::fill(buf).map_err(|e| LuksError::Random {
        reason: e.to_string(),
    })
}
