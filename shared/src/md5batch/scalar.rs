//! MD5 one message block at a time, written from RFC 1321 section 3.4: the constants, the block function
//! shared with the AVX2 lanes, and the final padding (section 3.1-3.2) that every lane ends with.

/// The initial chaining value A, B, C, D (RFC 1321 section 3.3).
pub(super) const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// `K[i]` = floor(2^32 * abs(sin(i + 1))), the additive constant of step `i`.
pub(super) const K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, //
    0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501, //
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, //
    0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821, //
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, //
    0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8, //
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, //
    0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, //
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, //
    0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, //
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, //
    0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, //
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, //
    0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1, //
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, //
    0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391, //
];

/// The left-rotation of each step, per round (the four steps of a round repeat four times).
const S: [[u32; 4]; 4] = [[7, 12, 17, 22], [5, 9, 14, 20], [4, 11, 16, 23], [6, 10, 15, 21]];

/// Processes one 64-byte block into `state`.
pub(super) fn compress(state: &mut [u32; 4], block: &[u8; 64]) {
    let mut m = [0u32; 16];
    for (w, b) in m.iter_mut().zip(block.chunks_exact(4)) {
        *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    let [mut a, mut b, mut c, mut d] = *state;
    for i in 0..64 {
        let (f, g) = match i / 16 {
            0 => (d ^ (b & (c ^ d)), i),
            1 => (c ^ (d & (b ^ c)), (5 * i + 1) % 16),
            2 => (b ^ c ^ d, (3 * i + 5) % 16),
            _ => (c ^ (b | !d), (7 * i) % 16),
        };
        let t = a.wrapping_add(f).wrapping_add(K[i]).wrapping_add(m[g]);
        a = d;
        d = c;
        c = b;
        b = b.wrapping_add(t.rotate_left(S[i / 16][i % 4]));
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d]) {
        *s = s.wrapping_add(v);
    }
}

/// Processes every whole block of `data` (its length a multiple of 64).
pub(super) fn compress_blocks(state: &mut [u32; 4], data: &[u8]) {
    debug_assert!(data.len().is_multiple_of(64));
    for block in data.chunks_exact(64) {
        compress(state, block.try_into().expect("64-byte chunk"));
    }
}

/// Ends a message: `tail` (fewer than 64 bytes) is what follows the blocks already in `state`, and
/// `total_len` the whole message's length in bytes. Appends the padding and the bit length, returns the digest.
pub(super) fn finish(mut state: [u32; 4], tail: &[u8], total_len: u64) -> [u8; 16] {
    debug_assert!(tail.len() < 64);
    let mut last = [0u8; 128];
    last[..tail.len()].copy_from_slice(tail);
    last[tail.len()] = 0x80;
    // One block if the length still fits after the 0x80 byte, else two.
    let blocks = if tail.len() < 56 { 1 } else { 2 };
    let end = blocks * 64;
    last[end - 8..end].copy_from_slice(&total_len.wrapping_mul(8).to_le_bytes());
    compress_blocks(&mut state, &last[..end]);
    digest_of(state)
}

/// The digest bytes of a final state (A, B, C, D, each little-endian).
pub(super) fn digest_of(state: [u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, s) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&s.to_le_bytes());
    }
    out
}

/// MD5 of one message with this file's code alone.
pub(super) fn md5(data: &[u8]) -> [u8; 16] {
    let whole = data.len() / 64 * 64;
    let mut state = INIT;
    compress_blocks(&mut state, &data[..whole]);
    finish(state, &data[whole..], data.len() as u64)
}
