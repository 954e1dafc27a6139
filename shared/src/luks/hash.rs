//! The hash functions a LUKS2 header names (`"sha256"`, `"sha512"`), one enum for every place that names
//! one: the AF splitter's diffusion ([`super::af`]), PBKDF2 keyslots and the volume-key digest
//! ([`super::kdf`]).

use sha2::{Digest, Sha256, Sha512};

/// A hash function of the LUKS2 metadata that seedship reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LuksHash {
    Sha256,
    Sha512,
}

impl LuksHash {
    /// Parses the JSON `hash` name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Self::Sha256),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// The JSON `hash` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// Output length of the hash, in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// `hash(parts[0] || parts[1] || ...)` truncated to `out.len()` (at most [`LuksHash::output_len`]).
    pub fn digest_into(self, parts: &[&[u8]], out: &mut [u8]) {
        fn run<D: Digest>(parts: &[&[u8]], out: &mut [u8]) {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            out.copy_from_slice(&d.finalize()[..out.len()]);
        }
        match self {
            Self::Sha256 => run::<Sha256>(parts, out),
            Self::Sha512 => run::<Sha512>(parts, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_digests_are_the_named_hash() {
        for h in [LuksHash::Sha256, LuksHash::Sha512] {
            assert_eq!(LuksHash::from_name(h.name()), Some(h));
        }
        assert_eq!(LuksHash::from_name("sha1"), None);
        // SHA-256("abc"), FIPS 180-2 appendix B.1, first 8 bytes; split over two parts
        let mut out = [0u8; 8];
        LuksHash::Sha256.digest_into(&[b"a", b"bc"], &mut out);
        assert_eq!(out, [0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea]);
        let mut full = [0u8; 64];
        LuksHash::Sha512.digest_into(&[b"abc"], &mut full);
        // SHA-512("abc"), FIPS 180-2 appendix C.1, first and last bytes
        assert_eq!((full[0], full[63]), (0xdd, 0x9f));
    }
}
