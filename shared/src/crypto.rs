//! Repository cryptography: the master key, its wrapping by Argon2id(passphrase), chunk ids and the
//! authenticated encryption of every object and blob.
//!
//! The master key is 64 random bytes: 32 for AES-256-GCM and 32 for the keyed BLAKE3 that names chunks, so a
//! chunk id reveals nothing about the content to someone without the key. A key file stores the master key
//! encrypted with a key derived by Argon2id from the passphrase. Every encrypted unit is an *envelope*:
//! `nonce (12 random bytes) || ciphertext || tag (16 bytes)`; see docs/repository-format.md.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};

/// Bytes an envelope adds to its plaintext: nonce and tag.
pub const ENVELOPE_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Length of the random nonce at the start of an envelope.
pub const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// The shortest passphrase accepted for a new repository.
pub const MIN_PASSPHRASE_LEN: usize = 16;

/// Errors of the repository cryptography. None of them carries key material or the passphrase.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("authentication failed: the data was altered or damaged, or belongs to another repository")]
    Authentication,
    #[error("envelope of {len} bytes is shorter than the {ENVELOPE_OVERHEAD} bytes of nonce and tag")]
    TooShort { len: usize },
    #[error("the system random number generator failed: {0}")]
    Random(String),
    #[error("key derivation failed: {0}")]
    Kdf(String),
    #[error(
        "the passphrase is {len} characters long; at least {MIN_PASSPHRASE_LEN} are required: choose a longer \
         one (a passphrase file, SEEDSHIP_PASSPHRASE or the prompt)"
    )]
    WeakPassphrase { len: usize },
}

/// Argon2id cost parameters, stored in each key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams {
            m_cost: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

/// Largest Argon2 memory cost accepted, in KiB: 2 GiB, the larger of RFC 9106's two recommended settings.
pub const MAX_KDF_MEMORY_KIB: u32 = 2 * 1024 * 1024;
/// Largest Argon2 pass count accepted (RFC 9106 recommends 1 pass at 2 GiB, 3 at 64 MiB).
pub const MAX_KDF_PASSES: u32 = 16;
/// Largest memory x passes accepted, in KiB: 4 GiB-passes, a few seconds on one core (the default costs
/// 192 MiB-passes). A key object asking for more would hold a machine for minutes to hours per guess.
pub const MAX_KDF_WORK_KIB: u64 = 4 * 1024 * 1024;
/// Largest Argon2 lane count accepted.
pub const MAX_KDF_LANES: u32 = 16;

impl KdfParams {
    /// Refuses costs beyond [`MAX_KDF_MEMORY_KIB`], [`MAX_KDF_PASSES`], [`MAX_KDF_WORK_KIB`] and
    /// [`MAX_KDF_LANES`]: key objects are read from storage an attacker may have written.
    pub fn check(&self) -> Result<(), CryptoError> {
        let KdfParams {
            m_cost,
            t_cost,
            p_cost,
        } = *self;
        if m_cost > MAX_KDF_MEMORY_KIB
            || t_cost == 0
            || t_cost > MAX_KDF_PASSES
            || p_cost == 0
            || p_cost > MAX_KDF_LANES
            || u64::from(m_cost) * u64::from(t_cost) > MAX_KDF_WORK_KIB
        {
            return Err(CryptoError::Kdf(format!(
                "Argon2id costs of {m_cost} KiB x {t_cost} passes x {p_cost} lanes are beyond the accepted \
                 maximum ({MAX_KDF_MEMORY_KIB} KiB, {MAX_KDF_PASSES} passes, {MAX_KDF_WORK_KIB} KiB-passes, \
                 {MAX_KDF_LANES} lanes)"
            )));
        }
        Ok(())
    }
}

/// Fills `buf` with random bytes from the operating system.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|e| CryptoError::Random(e.to_string()))
}

/// Derives the 32-byte key-encryption key from a passphrase with Argon2id.
pub fn derive_kek(
    passphrase: &str,
    salt: &[u8],
    params: KdfParams,
) -> Result<zeroize::Zeroizing<[u8; 32]>, CryptoError> {
    params.check()?;
    let p = argon2::Params::new(params.m_cost, params.t_cost, params.p_cost, Some(32))
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    argon2_into(&argon, passphrase.as_bytes(), salt, &mut *out)
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    Ok(out)
}

/// Runs `argon` into `out` with its working memory on transparent huge pages where the kernel gives them,
/// wiped before it is freed. The crate's own `hash_password_into` fills a vector of 1 KiB blocks: 64 MiB
/// is 16,384 page faults, which took a third of a derivation's time on a virtual machine (0.03-0.09 s of
/// 0.13-0.19 s; with huge pages 0.09-0.13 s), and every run of the agent derives its key once.
pub fn argon2_into(
    argon: &argon2::Argon2<'_>,
    pwd: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    use crate::aligned::{AlignedBuf, ALIGN};
    const {
        assert!(
            std::mem::size_of::<argon2::Block>() == argon2::Block::SIZE
                && ALIGN.is_multiple_of(std::mem::align_of::<argon2::Block>())
        )
    };
    let blocks = argon.params().block_count();
    let mut mem = AlignedBuf::new(blocks * argon2::Block::SIZE);
    mem.set_len(mem.capacity());
    let bytes = mem.as_mut_slice();
    // SAFETY: `bytes` holds exactly `blocks` blocks, starts on an ALIGN boundary (a multiple of a block's
    // alignment, checked above) and is initialised (zeros); a block is 128 plain u64 words, valid for any
    // bytes. The block view is the only use of `bytes` until the call returns.
    let view = unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<argon2::Block>(), blocks) };
    let result = argon.hash_password_into_with_memory(pwd, salt, out, view);
    zeroize::Zeroize::zeroize(mem.as_mut_slice());
    result
}

/// Encrypts `plaintext` under `key` into an envelope, with a fresh random nonce.
pub fn seal(key: &[u8; 32], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce)?;
    let cipher = Aes256Gcm::new(key.into());
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), plaintext)
        .map_err(|_| CryptoError::Authentication)?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Decrypts and authenticates an envelope made by [`seal`].
pub fn open(key: &[u8; 32], envelope: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if envelope.len() < ENVELOPE_OVERHEAD {
        return Err(CryptoError::TooShort { len: envelope.len() });
    }
    let (nonce, ct) = envelope.split_at(NONCE_LEN);
    Aes256Gcm::new(key.into())
        .decrypt(Nonce::from_slice(nonce), ct)
        .map_err(|_| CryptoError::Authentication)
}

/// The repository's master key. Never printed: `Debug` shows nothing of it.
#[derive(Clone)]
pub struct MasterKey {
    enc: [u8; 32],
    id: [u8; 32],
}

/// The key's bytes are wiped when it goes.
impl Drop for MasterKey {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.enc.zeroize();
        self.id.zeroize();
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A new random master key.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut b = [0u8; 64];
        random_bytes(&mut b)?;
        Ok(Self::from_bytes(&b))
    }

    /// The key from its 64-byte serialization.
    pub fn from_bytes(b: &[u8; 64]) -> Self {
        let mut enc = [0u8; 32];
        let mut id = [0u8; 32];
        enc.copy_from_slice(&b[..32]);
        id.copy_from_slice(&b[32..]);
        MasterKey { enc, id }
    }

    /// The 64-byte serialization (encryption key, then id key).
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[..32].copy_from_slice(&self.enc);
        b[32..].copy_from_slice(&self.id);
        b
    }

    /// The chunk id of `data`: BLAKE3 keyed with the id key.
    pub fn chunk_id(&self, data: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.id, data).as_bytes()
    }

    /// 32 bytes derived from the id key for another purpose (the chunker's gear table).
    pub fn derive(&self, context: &str) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key(context);
        h.update(&self.id);
        *h.finalize().as_bytes()
    }

    /// Encrypts under the master key.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        seal(&self.enc, plaintext)
    }

    /// Encrypts in place: `buf` holds [`NONCE_LEN`] bytes of room followed by the plaintext; afterwards it
    /// is an envelope (random nonce, ciphertext, tag).
    pub fn seal_in_place(&self, buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        use aes_gcm::AeadInPlace;
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        buf[..NONCE_LEN].copy_from_slice(&nonce);
        let tag = Aes256Gcm::new((&self.enc).into())
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), b"", &mut buf[NONCE_LEN..])
            .map_err(|_| CryptoError::Authentication)?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    /// Decrypts under the master key.
    pub fn open(&self, envelope: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open(&self.enc, envelope)
    }
}

/// Checks the passphrase policy for new repositories.
pub fn check_passphrase(passphrase: &str) -> Result<(), CryptoError> {
    let len = passphrase.chars().count();
    if len < MIN_PASSPHRASE_LEN {
        return Err(CryptoError::WeakPassphrase { len });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let k = MasterKey::generate().unwrap();
        let env = k.seal(b"hello world").unwrap();
        assert_eq!(env.len(), 11 + ENVELOPE_OVERHEAD);
        assert_eq!(k.open(&env).unwrap(), b"hello world");
        let mut inplace = vec![0u8; NONCE_LEN];
        inplace.extend_from_slice(b"in place");
        k.seal_in_place(&mut inplace).unwrap();
        assert_eq!(k.open(&inplace).unwrap(), b"in place");
        for i in 0..env.len() {
            let mut bad = env.clone();
            bad[i] ^= 1;
            assert!(matches!(k.open(&bad), Err(CryptoError::Authentication)));
        }
        assert!(matches!(k.open(&env[..5]), Err(CryptoError::TooShort { .. })));
    }

    #[test]
    fn chunk_ids_depend_on_key() {
        let a = MasterKey::generate().unwrap();
        let b = MasterKey::generate().unwrap();
        assert_eq!(a.chunk_id(b"x"), a.chunk_id(b"x"));
        assert_ne!(a.chunk_id(b"x"), b.chunk_id(b"x"));
        assert_ne!(a.chunk_id(b"x"), *blake3::hash(b"x").as_bytes());
        let back = MasterKey::from_bytes(&a.to_bytes());
        assert_eq!(back.chunk_id(b"y"), a.chunk_id(b"y"));
    }

    #[test]
    fn kdf_depends_on_passphrase_and_salt() {
        let p = KdfParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        };
        let a = derive_kek("correct horse battery", b"saltsaltsaltsalt", p).unwrap();
        assert_eq!(
            a,
            derive_kek("correct horse battery", b"saltsaltsaltsalt", p).unwrap()
        );
        assert_ne!(
            a,
            derive_kek("correct horse batterz", b"saltsaltsaltsalt", p).unwrap()
        );
        assert_ne!(
            a,
            derive_kek("correct horse battery", b"saltsaltsaltsalx", p).unwrap()
        );
        assert!(check_passphrase("short").is_err());
        assert!(check_passphrase("sixteen chars ok").is_ok());
    }

    #[test]
    fn argon2_on_our_memory_equals_the_crates_own() {
        // Sizes below and above a huge page, one with a partial last block group, several lanes.
        for (m_cost, t_cost, lanes) in [(64, 1, 1), (4100, 2, 4), (3 * 1024, 1, 2), (2 * 1024 + 8, 3, 1)] {
            let params = argon2::Params::new(m_cost, t_cost, lanes, Some(32)).unwrap();
            let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
            let (mut ours, mut theirs) = ([0u8; 32], [0u8; 32]);
            argon2_into(&argon, b"correct horse battery", b"saltsaltsaltsalt", &mut ours).unwrap();
            argon
                .hash_password_into(b"correct horse battery", b"saltsaltsaltsalt", &mut theirs)
                .unwrap();
            assert_eq!(ours, theirs, "m_cost {m_cost}, t_cost {t_cost}, lanes {lanes}");
        }
    }
}
