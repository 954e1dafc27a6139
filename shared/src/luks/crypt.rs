//! AES-256-XTS sector encryption with dm-crypt's `plain64` IV, batched for AES-NI and spread over cores.
//!
//! [`XtsCipher`] holds the two AES-256 keys of a 512-bit XTS key (first half encrypts data, second half
//! encrypts the tweak, IEEE 1619). A sector's tweak is its IV as a 128-bit little-endian number; with
//! `plain64` that is a 64-bit sector number (upper half zero). Which number is the caller's business
//! (see the IV rule in the [`crate::luks`] module docs); this file only takes it per sector.
//!
//! The blocks of a sector are processed in batches of [`BATCH`] so the `aes` crate can pipeline its
//! AES-NI rounds (`encrypt_blocks`), which is several times faster than one block at a time. The result is
//! checked against the `xts-mode` crate in the unit tests and against Python's `cryptography` in the
//! integration tests. Buffers of at least [`PARALLEL_MIN`] bytes are split into whole-sector chunks over
//! `available_parallelism()` scoped threads.
//!
//! Where the CPU has VAES and VPCLMULQDQ with AVX-512 or AVX2 (x86-64, detected at run time), sectors whose
//! size is a multiple of 512 bytes go through the VAES code (`xts_vaes.rs`) instead: four (AVX-512) or two
//! (AVX2) blocks per instruction with the tweaks kept in registers, a sixth to a fifth of the portable
//! path's CPU time (diskprep's profiles, docs/BENCHMARKS.md).

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::{Aes256, Aes256Enc};

/// Blocks per AES batch (a multiple of the AES-NI backend's 8-block pipeline).
pub const BATCH: usize = 32;
/// Buffers at least this large are processed on every core.
pub const PARALLEL_MIN: usize = 1 << 20;

type Block = GenericArray<u8, aes::cipher::consts::U16>;

/// AES-256-XTS with a 512-bit key.
#[derive(Clone)]
pub struct XtsCipher {
    data: Aes256,
    tweak: Aes256Enc,
    /// The round keys for the VAES path, when the CPU has it.
    #[cfg(target_arch = "x86_64")]
    vaes: Option<super::xts_vaes::Keys>,
}

impl XtsCipher {
    /// `key` is the 64-byte XTS key: data key then tweak key.
    pub fn new(key: &[u8; 64]) -> Self {
        Self {
            data: Aes256::new(GenericArray::from_slice(&key[..32])),
            tweak: Aes256Enc::new(GenericArray::from_slice(&key[32..])),
            #[cfg(target_arch = "x86_64")]
            vaes: super::xts_vaes::Keys::new(key),
        }
    }

    /// Encrypts `buf`, consecutive sectors of `sector_size` bytes; sector `i` gets IV `first_iv + i * iv_step`.
    /// `buf.len()` must be a multiple of `sector_size`, which must be a multiple of 16.
    pub fn encrypt(&self, buf: &mut [u8], sector_size: usize, first_iv: u64, iv_step: u64) {
        self.run(buf, sector_size, first_iv, iv_step, true);
    }

    /// Decrypts; the inverse of [`XtsCipher::encrypt`] with the same arguments.
    pub fn decrypt(&self, buf: &mut [u8], sector_size: usize, first_iv: u64, iv_step: u64) {
        self.run(buf, sector_size, first_iv, iv_step, false);
    }

    fn run(&self, buf: &mut [u8], sector_size: usize, first_iv: u64, iv_step: u64, enc: bool) {
        debug_assert!(
            sector_size >= 16 && sector_size.is_multiple_of(16) && buf.len().is_multiple_of(sector_size)
        );
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let sectors = buf.len() / sector_size;
        if buf.len() < PARALLEL_MIN || threads < 2 || sectors < 2 {
            self.run_serial(buf, sector_size, first_iv, iv_step, enc);
            return;
        }
        let per_thread = sectors.div_ceil(threads);
        std::thread::scope(|scope| {
            for (i, chunk) in buf.chunks_mut(per_thread * sector_size).enumerate() {
                let iv = first_iv.wrapping_add((i * per_thread) as u64 * iv_step);
                scope.spawn(move || self.run_serial(chunk, sector_size, iv, iv_step, enc));
            }
        });
    }

    /// Encrypts `src` into `dst` (of the same length): [`XtsCipher::encrypt`] without copying the plaintext
    /// into place first (the VAES path reads `src` and writes `dst`; the portable one copies, then encrypts).
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn encrypt_into(&self, src: &[u8], dst: &mut [u8], sector_size: usize, first_iv: u64, iv_step: u64) {
        assert_eq!(
            src.len(),
            dst.len(),
            "encrypt_into: source and destination of one length"
        );
        debug_assert!(
            sector_size >= 16 && sector_size.is_multiple_of(16) && src.len().is_multiple_of(sector_size)
        );
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let sectors = src.len() / sector_size;
        if src.len() < PARALLEL_MIN || threads < 2 || sectors < 2 {
            self.run_serial_into(src, dst, sector_size, first_iv, iv_step);
            return;
        }
        let per_thread = (sectors.div_ceil(threads)) * sector_size;
        std::thread::scope(|scope| {
            for (i, (s, d)) in src.chunks(per_thread).zip(dst.chunks_mut(per_thread)).enumerate() {
                let iv = first_iv.wrapping_add(((i * per_thread / sector_size) as u64).wrapping_mul(iv_step));
                scope.spawn(move || self.run_serial_into(s, d, sector_size, iv, iv_step));
            }
        });
    }

    fn run_serial_into(&self, src: &[u8], dst: &mut [u8], sector_size: usize, first_iv: u64, iv_step: u64) {
        #[cfg(target_arch = "x86_64")]
        if let Some(keys) = &self.vaes {
            if sector_size.is_multiple_of(super::xts_vaes::SECTOR_MULTIPLE) {
                super::xts_vaes::xts_into(keys, src, dst, sector_size, first_iv, iv_step, true);
                return;
            }
        }
        dst.copy_from_slice(src);
        self.run_serial(dst, sector_size, first_iv, iv_step, true);
    }

    /// Single-threaded variant of [`XtsCipher::encrypt`] (for benchmarks and small buffers).
    pub fn encrypt_serial(&self, buf: &mut [u8], sector_size: usize, first_iv: u64, iv_step: u64) {
        self.run_serial(buf, sector_size, first_iv, iv_step, true);
    }

    fn run_serial(&self, buf: &mut [u8], sector_size: usize, first_iv: u64, iv_step: u64, enc: bool) {
        #[cfg(target_arch = "x86_64")]
        if let Some(keys) = &self.vaes {
            if sector_size.is_multiple_of(super::xts_vaes::SECTOR_MULTIPLE) {
                super::xts_vaes::xts(keys, buf, sector_size, first_iv, iv_step, enc);
                return;
            }
        }
        let mut iv = first_iv;
        for sector in buf.chunks_exact_mut(sector_size) {
            self.sector(sector, iv, enc);
            iv = iv.wrapping_add(iv_step);
        }
    }

    fn sector(&self, sector: &mut [u8], iv: u64, enc: bool) {
        let mut t = Block::from(u128::from(iv).to_le_bytes());
        self.tweak.encrypt_block(&mut t);
        let mut tweak = u128::from_le_bytes(t.into());
        let mut blocks = [Block::default(); BATCH];
        let mut tweaks = [0u128; BATCH];
        for batch in sector.chunks_mut(16 * BATCH) {
            let n = batch.len() / 16;
            for (i, chunk) in batch.chunks_exact(16).enumerate() {
                tweaks[i] = tweak;
                let mut b = [0u8; 16];
                b.copy_from_slice(chunk);
                blocks[i] = Block::from((u128::from_le_bytes(b) ^ tweak).to_le_bytes());
                tweak = super::gf_double(tweak);
            }
            if enc {
                self.data.encrypt_blocks(&mut blocks[..n]);
            } else {
                self.data.decrypt_blocks(&mut blocks[..n]);
            }
            for (i, chunk) in batch.chunks_exact_mut(16).enumerate() {
                let v = u128::from_le_bytes(blocks[i].into()) ^ tweaks[i];
                chunk.copy_from_slice(&v.to_le_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xts_mode_reference(key: &[u8; 64], buf: &mut [u8], sector_size: usize, first_iv: u64, step: u64) {
        let c1 = Aes256::new(GenericArray::from_slice(&key[..32]));
        let c2 = Aes256::new(GenericArray::from_slice(&key[32..]));
        let xts = xts_mode::Xts128::new(c1, c2);
        let mut iv = first_iv;
        for s in buf.chunks_exact_mut(sector_size) {
            xts.encrypt_sector(s, xts_mode::get_tweak_default(u128::from(iv)));
            iv += step;
        }
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
            .collect()
    }

    #[test]
    fn matches_xts_mode_crate() {
        let key: [u8; 64] = std::array::from_fn(|i| (i as u8).wrapping_mul(7).wrapping_add(3));
        for (sector_size, iv, step) in [(4096, 0, 8), (4096, 123_456_789, 8), (512, 7, 1), (1024, 0, 2)] {
            let plain = pattern(sector_size * 5, iv as u8);
            let mut ours = plain.clone();
            XtsCipher::new(&key).encrypt(&mut ours, sector_size, iv, step);
            let mut theirs = plain.clone();
            xts_mode_reference(&key, &mut theirs, sector_size, iv, step);
            assert_eq!(ours, theirs, "sector size {sector_size}, iv {iv}");
            XtsCipher::new(&key).decrypt(&mut ours, sector_size, iv, step);
            assert_eq!(ours, plain);
        }
    }

    #[test]
    fn parallel_equals_serial() {
        let key: [u8; 64] = std::array::from_fn(|i| i as u8 ^ 0x5a);
        let cipher = XtsCipher::new(&key);
        let plain = pattern(PARALLEL_MIN + 3 * 4096, 9);
        let mut par = plain.clone();
        cipher.encrypt(&mut par, 4096, 40, 8);
        let mut ser = plain.clone();
        cipher.encrypt_serial(&mut ser, 4096, 40, 8);
        assert_eq!(par, ser);
        cipher.decrypt(&mut par, 4096, 40, 8);
        assert_eq!(par, plain);
    }

    /// The same cipher without the VAES path (the portable code, whatever the CPU has).
    fn portable(c: &XtsCipher) -> XtsCipher {
        XtsCipher {
            #[cfg(target_arch = "x86_64")]
            vaes: None,
            ..c.clone()
        }
    }

    #[test]
    fn the_vaes_path_equals_the_portable_one() {
        let key: [u8; 64] = std::array::from_fn(|i| (i as u8).wrapping_mul(13) ^ 0xa7);
        let cipher = XtsCipher::new(&key);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            cipher.vaes.is_some(),
            super::super::xts_vaes::available().is_some()
        );
        let slow = portable(&cipher);
        let mut ciphers = vec![cipher.clone()];
        // Where the CPU has AVX-512 the AVX2 path is checked as well.
        #[cfg(target_arch = "x86_64")]
        if let Some(keys) = &cipher.vaes {
            use super::super::xts_vaes::{runs, Width};
            if keys.width != Width::Avx2 && runs(Width::Avx2) {
                let mut narrow = cipher.clone();
                narrow.vaes.as_mut().expect("VAES keys").width = Width::Avx2;
                ciphers.push(narrow);
            }
        }
        for cipher in &ciphers {
            check_against(cipher, &slow);
        }
    }

    fn check_against(cipher: &XtsCipher, slow: &XtsCipher) {
        // Sector sizes the VAES path takes (512..4096) and one it leaves to the portable code (1040); IVs
        // that carry into the tweak's high bits; an IV step of 8 as diskprep's 4096-byte sectors use.
        for (sector_size, iv, step) in [
            (4096, 0, 8),
            (4096, u64::MAX - 20, 8),
            (512, 7, 1),
            (1024, 1 << 40, 2),
            (2048, 3, 1),
            (1040, 5, 1),
        ] {
            let plain = pattern(sector_size * 7, (iv as u8) ^ 0x3c);
            let mut fast = plain.clone();
            cipher.encrypt_serial(&mut fast, sector_size, iv, step);
            let mut want = plain.clone();
            slow.encrypt_serial(&mut want, sector_size, iv, step);
            assert!(fast == want, "encrypt, sector size {sector_size}, iv {iv}");
            cipher.decrypt(&mut fast, sector_size, iv, step);
            assert!(fast == plain, "decrypt, sector size {sector_size}, iv {iv}");
            let mut par = plain.clone();
            par.resize(PARALLEL_MIN + sector_size * 9 - PARALLEL_MIN % sector_size, 0x55);
            let mut want = par.clone();
            cipher.encrypt(&mut par, sector_size, iv, step);
            slow.encrypt(&mut want, sector_size, iv, step);
            assert!(par == want, "parallel, sector size {sector_size}, iv {iv}");
            // From another buffer, serial and parallel.
            let mut into = vec![0u8; plain.len()];
            cipher.encrypt_into(&plain, &mut into, sector_size, iv, step);
            let mut want = plain.clone();
            slow.encrypt(&mut want, sector_size, iv, step);
            assert!(into == want, "into, sector size {sector_size}, iv {iv}");
            let src: Vec<u8> = (0..PARALLEL_MIN + sector_size * 5 - PARALLEL_MIN % sector_size)
                .map(|i| (i * 7 + i / 4099) as u8)
                .collect();
            let mut into = vec![0u8; src.len()];
            cipher.encrypt_into(&src, &mut into, sector_size, iv, step);
            let mut want = src.clone();
            slow.encrypt(&mut want, sector_size, iv, step);
            assert!(into == want, "into, parallel, sector size {sector_size}, iv {iv}");
            slow.encrypt_into(&src, &mut into, sector_size, iv, step);
            assert!(into == want, "portable into, sector size {sector_size}, iv {iv}");
        }
    }

    #[test]
    fn ieee_1619_vector_10() {
        // IEEE P1619/D16 annex B, vector 10: XTS-AES-256, data unit sequence number 0xff, 512 bytes.
        let key = hex::decode(concat!(
            "2718281828459045235360287471352662497757247093699959574966967627",
            "3141592653589793238462643383279502884197169399375105820974944592"
        ))
        .unwrap();
        let key: [u8; 64] = key.try_into().unwrap();
        let mut buf: Vec<u8> = (0..512).map(|i| i as u8).collect();
        XtsCipher::new(&key).encrypt(&mut buf, 512, 0xff, 1);
        assert_eq!(
            hex::encode(&buf[..32]),
            "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b"
        );
        assert_eq!(hex::encode(&buf[496..]), "c4f36ffda9fcea70b9c6e693e148c151");
    }
}
