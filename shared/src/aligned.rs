//! A byte buffer whose first byte sits on a 4096-byte boundary: what `O_DIRECT` reads and writes need from
//! memory (diskprep's drive writer and reader, the local blob store's large writes).

/// Memory and offset alignment of direct I/O: any logical block size up to 4096 divides it.
pub const ALIGN: usize = 4096;

/// The size (and alignment) of a transparent huge page on x86-64 and most arm64 kernels; buffers at least
/// this large are placed for them (see [`AlignedBuf::new`]).
pub const HUGE: usize = 2 << 20;

/// A byte buffer of fixed capacity whose first byte is [`ALIGN`]-aligned in memory.
pub struct AlignedBuf {
    storage: Vec<u8>,
    /// Index in `storage` of the first (aligned) byte.
    start: usize,
    len: usize,
    cap: usize,
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("cap", &self.cap)
            .finish()
    }
}

impl AlignedBuf {
    /// An empty buffer that can hold `cap` bytes. A buffer of [`HUGE`] or more starts on a [`HUGE`]
    /// boundary and asks the kernel for transparent huge pages (`MADV_HUGEPAGE`): direct I/O pins the
    /// buffer's pages for every read and write, and pinning one 2 MiB page instead of 512 small ones took
    /// most of the kernel time of diskprep's `O_DIRECT` reads and writes (`gup_fast_fallback`, 9% of its
    /// CPU in `perf`). Where huge pages are unavailable the advice is ignored.
    pub fn new(cap: usize) -> Self {
        let align = if cap >= HUGE { HUGE } else { ALIGN };
        let storage = vec![0u8; cap + align];
        let start = (align - storage.as_ptr().addr() % align) % align;
        #[cfg(target_os = "linux")]
        if align == HUGE {
            // SAFETY: the range lies inside `storage` (which has `align` bytes to spare before `start`)
            // and starts on a page boundary; the advice changes how the pages are backed, not their
            // contents.
            unsafe {
                libc::madvise(
                    storage.as_ptr().add(start).cast_mut().cast(),
                    cap,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
        Self {
            storage,
            start,
            len: 0,
            cap,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes it can hold.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Bytes that can still be appended.
    pub fn room(&self) -> usize {
        self.cap - self.len
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }

    /// Appends as much of `data` as fits; returns how much.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.room());
        let at = self.start + self.len;
        self.storage[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }

    /// Sets the length to `n` (at most the capacity); bytes newly inside hold whatever was there before.
    pub fn set_len(&mut self, n: usize) {
        self.len = n.min(self.cap);
    }

    /// Keeps the first `n` bytes.
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
    }

    /// Drops the first `n` bytes, moving the rest to the front.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.storage
            .copy_within(self.start + n..self.start + self.len, self.start);
        self.len -= n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_is_aligned_and_keeps_its_tail() {
        let mut b = AlignedBuf::new(3 * ALIGN);
        assert_eq!(b.as_slice().as_ptr().addr() % ALIGN, 0);
        let data: Vec<u8> = (0..4 * ALIGN).map(|i| (i % 251) as u8).collect();
        assert_eq!(b.push(&data), 3 * ALIGN, "only the capacity is taken");
        assert_eq!(b.room(), 0);
        b.consume(2 * ALIGN + 5);
        assert_eq!(b.as_slice(), &data[2 * ALIGN + 5..3 * ALIGN]);
        assert_eq!(b.as_slice().as_ptr().addr() % ALIGN, 0);
        assert_eq!(b.push(&data[..10]), 10);
        assert_eq!(&b.as_slice()[ALIGN - 5..], &data[..10]);

        // A large buffer sits on a huge-page boundary and holds what is pushed.
        let mut big = AlignedBuf::new(HUGE + 3 * ALIGN);
        assert_eq!(big.as_slice().as_ptr().addr() % HUGE, 0);
        assert_eq!(big.push(&data), data.len());
        assert_eq!(big.as_slice(), &data[..]);
    }
}
