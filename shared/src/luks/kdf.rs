//! Keyslot key derivation: PBKDF2 (HMAC-SHA256/512) and Argon2i/Argon2id, as LUKS2 keyslots name them.
//!
//! The derived key (64 bytes for an `aes-xts-plain64` keyslot area with `key_size` 64) decrypts the
//! keyslot's AF material. Argon2 is version 0x13 with no secret and no associated data, as cryptsetup
//! calls it (`lib/crypto_backend/argon2_generic.c`). Bounds enforced on what a header may ask for:
//! Argon2 memory at most [`MAX_ARGON2_MEMORY_KIB`] (cryptsetup's own maximum, 4 GiB), lanes at most
//! [`MAX_ARGON2_LANES`], memory x passes at most [`MAX_ARGON2_WORK_KIB`], PBKDF2 iterations (keyslot and
//! digest) at most [`MAX_PBKDF2_ITERATIONS`]. A drive comes from a customer: without these bounds one header
//! could hold a data-centre host for hours (2^32 PBKDF2 iterations, or 2^20 passes over 4 GiB).

use sha2::{Sha256, Sha512};

use super::hash::LuksHash;
use super::LuksError;

/// Largest Argon2 memory cost accepted from a header or option, in KiB (cryptsetup's limit).
pub const MAX_ARGON2_MEMORY_KIB: u32 = 4 * 1024 * 1024;
/// Largest Argon2 lane count accepted (cryptsetup caps `cpus` at 4 when it chooses; we allow more).
pub const MAX_ARGON2_LANES: u32 = 64;
/// Largest Argon2 time cost accepted.
pub const MAX_ARGON2_TIME: u32 = 1 << 20;
/// Largest Argon2 memory x passes accepted, in KiB: 32 GiB-passes, about a minute on one core. cryptsetup's
/// 2-second benchmark picks 1 GiB and a handful of passes; seedship's default is 256 MiB x 4.
pub const MAX_ARGON2_WORK_KIB: u64 = 32 * 1024 * 1024;
/// Largest PBKDF2 iteration count accepted (keyslot and digest): 16 million, several times what cryptsetup's
/// 2-second benchmark picks for PBKDF2-SHA256 on a current CPU (1 to 4 million); about 10 s here.
pub const MAX_PBKDF2_ITERATIONS: u32 = 16_000_000;

/// Rejects a PBKDF2 iteration count outside 1..=[`MAX_PBKDF2_ITERATIONS`].
pub fn check_pbkdf2(iterations: u32) -> Result<(), LuksError> {
    if iterations == 0 || iterations > MAX_PBKDF2_ITERATIONS {
        return Err(LuksError::Kdf {
            reason: format!("{iterations} PBKDF2 iterations is outside 1..={MAX_PBKDF2_ITERATIONS}"),
        });
    }
    Ok(())
}

/// The password-based key derivation for a new keyslot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pbkdf {
    /// PBKDF2-HMAC-SHA256 with this many iterations (cryptsetup's minimum is 1000).
    Pbkdf2 { iterations: u32 },
    /// Argon2id: `time` passes over `memory_kib` KiB with `parallel` lanes (cryptsetup: time ≥ 4,
    /// memory 32 KiB ..= 4 GiB, lanes 1..=4 by default).
    Argon2id {
        time: u32,
        memory_kib: u32,
        parallel: u32,
    },
}

impl Pbkdf {
    /// The default for new shipping drives: Argon2id, 4 passes, 256 MiB, 2 lanes. The passphrase is a
    /// 128-bit random recovery key, so guessing is hopeless whatever the cost; the cost is kept modest
    /// so a data-centre host unlocks many drives without memory trouble.
    pub const DEFAULT: Pbkdf = Pbkdf::Argon2id {
        time: 4,
        memory_kib: 256 * 1024,
        parallel: 2,
    };
}

impl Default for Pbkdf {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// PBKDF2-HMAC with `hash`.
pub fn pbkdf2(hash: LuksHash, password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    match hash {
        LuksHash::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, out),
        LuksHash::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, out),
    }
}

/// A keyslot's KDF as read from (or written to) the JSON metadata, salt included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyslotKdf {
    Pbkdf2 {
        hash: LuksHash,
        iterations: u32,
        salt: Vec<u8>,
    },
    Argon2 {
        id: bool,
        time: u32,
        memory_kib: u32,
        lanes: u32,
        salt: Vec<u8>,
    },
}

impl KeyslotKdf {
    /// Derives `out.len()` bytes from `passphrase`.
    pub fn derive(&self, passphrase: &[u8], out: &mut [u8]) -> Result<(), LuksError> {
        match self {
            KeyslotKdf::Pbkdf2 {
                hash,
                iterations,
                salt,
            } => {
                check_pbkdf2(*iterations)?;
                pbkdf2(*hash, passphrase, salt, *iterations, out);
                Ok(())
            }
            KeyslotKdf::Argon2 {
                id,
                time,
                memory_kib,
                lanes,
                salt,
            } => {
                check_argon2(*time, *memory_kib, *lanes)?;
                let params =
                    argon2::Params::new(*memory_kib, *time, *lanes, Some(out.len())).map_err(|e| {
                        LuksError::Kdf {
                            reason: format!("Argon2 parameters: {e}"),
                        }
                    })?;
                let alg = if *id {
                    argon2::Algorithm::Argon2id
                } else {
                    argon2::Algorithm::Argon2i
                };
                let argon = argon2::Argon2::new(alg, argon2::Version::V0x13, params);
                crate::crypto::argon2_into(&argon, passphrase, salt, out).map_err(|e| LuksError::Kdf {
                    reason: format!("Argon2: {e}"),
                })
            }
        }
    }
}

/// Rejects Argon2 costs outside the bounds in the module docs.
pub fn check_argon2(time: u32, memory_kib: u32, lanes: u32) -> Result<(), LuksError> {
    let bad = |what: String| Err(LuksError::Kdf { reason: what });
    if time == 0 || time > MAX_ARGON2_TIME {
        return bad(format!(
            "Argon2 time cost {time} is outside 1..={MAX_ARGON2_TIME}"
        ));
    }
    if lanes == 0 || lanes > MAX_ARGON2_LANES {
        return bad(format!(
            "Argon2 lane count {lanes} is outside 1..={MAX_ARGON2_LANES}"
        ));
    }
    if memory_kib < 8 * lanes || memory_kib > MAX_ARGON2_MEMORY_KIB {
        return bad(format!(
            "Argon2 memory {memory_kib} KiB is outside {}..={MAX_ARGON2_MEMORY_KIB} KiB",
            8 * lanes
        ));
    }
    if u64::from(memory_kib) * u64::from(time) > MAX_ARGON2_WORK_KIB {
        return bad(format!(
            "Argon2 cost of {memory_kib} KiB x {time} passes is beyond {MAX_ARGON2_WORK_KIB} KiB-passes"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_sha256_rfc7914_vector() {
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256("passwd", "salt", c = 1, dkLen = 64).
        let mut out = [0u8; 64];
        pbkdf2(LuksHash::Sha256, b"passwd", b"salt", 1, &mut out);
        assert_eq!(
            hex::encode(out),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc\
             49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"
        );
    }

    #[test]
    fn argon2_bounds_are_enforced() {
        let kdf = KeyslotKdf::Argon2 {
            id: true,
            time: 1,
            memory_kib: u32::MAX,
            lanes: 1,
            salt: vec![0; 32],
        };
        let mut out = [0u8; 32];
        assert!(matches!(kdf.derive(b"x", &mut out), Err(LuksError::Kdf { .. })));
        assert!(check_argon2(0, 1024, 1).is_err());
        assert!(check_argon2(4, 1024, 0).is_err());
        assert!(check_argon2(4, 1024, 2).is_ok());
        // 2^20 passes over 4 GiB is within each single bound but would run for days
        assert!(check_argon2(MAX_ARGON2_TIME, MAX_ARGON2_MEMORY_KIB, 4).is_err());
        assert!(check_argon2(8, 4 * 1024 * 1024, 4).is_ok());
        assert!(check_pbkdf2(MAX_PBKDF2_ITERATIONS).is_ok());
        assert!(check_pbkdf2(MAX_PBKDF2_ITERATIONS + 1).is_err());
        let slow = KeyslotKdf::Pbkdf2 {
            hash: LuksHash::Sha256,
            iterations: u32::MAX,
            salt: vec![0; 32],
        };
        assert!(matches!(slow.derive(b"x", &mut out), Err(LuksError::Kdf { .. })));
    }

    #[test]
    fn argon2id_derives_deterministically() {
        let kdf = KeyslotKdf::Argon2 {
            id: true,
            time: 1,
            memory_kib: 64,
            lanes: 1,
            salt: vec![1; 32],
        };
        let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
        kdf.derive(b"pass", &mut a).unwrap();
        kdf.derive(b"pass", &mut b).unwrap();
        assert_eq!(a, b);
        kdf.derive(b"pasS", &mut b).unwrap();
        assert_ne!(a, b);
    }
}
