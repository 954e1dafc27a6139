//! Where a drive's payload goes: the [`Device`] seen as positioned reads and writes, for a plain file and,
//! in `direct`, for a drive with an `O_DIRECT` descriptor beside it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Where the payload goes: the drive, seen as positioned reads and writes.
pub trait Device: Send + Sync {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn sync(&self) -> io::Result<()>;
    /// Starts writing `len` bytes at `offset` to the medium without waiting for it, so that the disk streams
    /// while the next bytes are prepared and a later [`Device::sync`] has little left to do. Advisory: a
    /// write error shows at the next sync.
    fn start_writeback(&self, _offset: u64, _len: u64) {}
    /// Asks for `len` bytes at `offset` to be read ahead in the background, so that reading them later
    /// finds them in memory while the bytes before them are decrypted and checked. Advisory.
    fn prefetch(&self, _offset: u64, _len: u64) {}
    /// An owned descriptor of the device opened with `O_DIRECT`, when it has one: the payload writer then
    /// writes whole chunks through it on a thread of its own.
    fn direct_handle(&self) -> Option<File> {
        None
    }
}

impl Device for File {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.sync_data()
    }
    fn start_writeback(&self, offset: u64, len: u64) {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: sync_file_range only reads its integer arguments; the descriptor is open for as long as
        // `self` is borrowed. Its result is ignored on purpose (see the trait method).
        unsafe {
            libc::sync_file_range(self.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    fn prefetch(&self, offset: u64, len: u64) {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is open for as long as
        // `self` is borrowed. Its result is ignored on purpose (see the trait method).
        unsafe {
            libc::posix_fadvise(self.as_raw_fd(), offset, len, libc::POSIX_FADV_WILLNEED);
        }
    }
}
