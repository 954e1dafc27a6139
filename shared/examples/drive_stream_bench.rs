//! Throughput of the drive payload pipeline without the drive: MD5 of 4 MiB page ranges (single core and in
//! parallel across all cores) and pax tar framing, over in-memory data into `/dev/null`.
//!
//! Run: `cargo run --release -p seedship-shared --example drive_stream_bench [-- <GiB, default 2>]`
//! Prints, per stage, wall-clock GB/s (10^9 bytes per second) and GB per CPU-second of the process: on a
//! shared machine the second figure is the per-core rate, the first what the cores you got delivered.

use std::fs::File;
use std::io::{self, Read};
use std::time::Instant;

use seedship_shared::manifest::ranges::{copy_and_hash, default_threads, hash_windows, range_windows};
use seedship_shared::manifest::{Md5Hash, MAX_RANGE_LEN};
use seedship_shared::tar::{EntryHeader, TarWriter};

const BUFFER: usize = 128 << 20;

fn main() {
    let gib: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let total = gib << 30;
    let threads = default_threads();
    let data = pseudo_random(BUFFER);
    println!(
        "drive_stream_bench: {gib} GiB through a {} MiB in-memory buffer, {threads} hashing threads",
        BUFFER >> 20
    );

    let t = Clock::now();
    let mut sink = 0u8;
    for (offset, len) in range_windows(0, total) {
        sink ^= Md5Hash::of(window(&data, offset, len)).0[0];
    }
    std::hint::black_box(sink);
    report("MD5 of 4 MiB ranges, 1 thread", total, t);

    let t = Clock::now();
    let all: Vec<(u64, u64)> = range_windows(0, total).collect();
    let mut ranges = 0;
    for batch in all.chunks(2 * threads) {
        let windows: Vec<(u64, &[u8])> = batch.iter().map(|&(o, l)| (o, window(&data, o, l))).collect();
        ranges += hash_windows(&windows, threads).into_iter().flatten().count();
    }
    std::hint::black_box(ranges);
    report(&format!("MD5 of 4 MiB ranges, {threads} threads"), total, t);

    let t = Clock::now();
    let mut tar = TarWriter::new(dev_null());
    let mut entry = tar.begin_entry(&header(total)).expect("header");
    io::copy(&mut Cyclic::new(&data, total), &mut entry).expect("copy into /dev/null");
    entry.finish().expect("entry complete");
    tar.finish().expect("tar into /dev/null");
    report("read + pax tar framing into /dev/null", total, t);

    let t = Clock::now();
    let mut tar = TarWriter::new(dev_null());
    let mut entry = tar.begin_entry(&header(total)).expect("header");
    let ranges = copy_and_hash(
        Cyclic::new(&data, total),
        &mut entry,
        0,
        total,
        threads,
        |_, _| Ok(()),
    )
    .expect("copy and hash");
    entry.finish().expect("entry complete");
    tar.finish().expect("tar into /dev/null");
    std::hint::black_box(ranges);
    report(&format!("read + MD5 ({threads} threads) + tar framing"), total, t);

    // The same into a simulated drive that takes the time a 0.4 GB/s disk would (sleeping, not computing):
    // hashing overlaps the drive's time, so the result approaches min(drive, MD5) rather than their harmonic sum.
    let t = Clock::now();
    let mut tar = TarWriter::new(SlowDrive { bytes_per_sec: 0.4e9 });
    let mut entry = tar.begin_entry(&header(total)).expect("header");
    let ranges = copy_and_hash(
        Cyclic::new(&data, total),
        &mut entry,
        0,
        total,
        threads,
        |_, _| Ok(()),
    )
    .expect("copy and hash");
    entry.finish().expect("entry complete");
    tar.finish().expect("tar into the simulated drive");
    std::hint::black_box(ranges);
    report("... into a simulated 0.4 GB/s drive", total, t);
}

/// A sink that sleeps as long as a drive of the given speed would take to write the bytes.
struct SlowDrive {
    bytes_per_sec: f64,
}

impl io::Write for SlowDrive {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        std::thread::sleep(std::time::Duration::from_secs_f64(
            buf.len() as f64 / self.bytes_per_sec,
        ));
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn header(size: u64) -> EntryHeader {
    EntryHeader::file("session/vault/data/volume-0000", size, 1_700_000_000)
}

/// `len` bytes read cyclically from `data` (a staging file stand-in that costs one memcpy per byte).
struct Cyclic<'a> {
    data: &'a [u8],
    at: u64,
    len: u64,
}

impl<'a> Cyclic<'a> {
    fn new(data: &'a [u8], len: u64) -> Self {
        Self { data, at: 0, len }
    }
}

impl Read for Cyclic<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let start = (self.at % self.data.len() as u64) as usize;
        let n = buf
            .len()
            .min((self.len - self.at) as usize)
            .min(self.data.len() - start);
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        self.at += n as u64;
        Ok(n)
    }
}

/// The bytes of blob window `[offset, offset + len)`, taken cyclically from the buffer.
fn window(data: &[u8], offset: u64, len: u64) -> &[u8] {
    let start = (offset % (data.len() as u64 - MAX_RANGE_LEN)) as usize;
    &data[start..start + len as usize]
}

fn dev_null() -> File {
    File::options().write(true).open("/dev/null").expect("/dev/null")
}

/// Wall clock and process CPU time at a starting point.
struct Clock {
    wall: Instant,
    cpu: f64,
}

impl Clock {
    fn now() -> Self {
        Self {
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }
}

fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the struct we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn report(what: &str, bytes: u64, start: Clock) {
    let wall = start.wall.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - start.cpu;
    let gb = bytes as f64 / 1e9;
    println!(
        "{what:<42} {:>7.2} GB/s wall ({wall:.2} s)  {:>6.2} GB per CPU-s ({cpu:.2} CPU-s)",
        gb / wall,
        gb / cpu
    );
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}
