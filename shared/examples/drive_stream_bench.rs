//! Throughput of the drive payload pipeline without the drive (issue #4): encrypt + MD5 + tar. Staging bytes
//! are "read" (copied out of an in-memory buffer, as from the page cache) in batches of eight 4 MiB page
//! ranges, each range is MD5-hashed for the manifest, and the bytes are framed as a pax tar member and
//! encrypted with AES-256-XTS in 4096-byte sectors (as diskprep's payload writer does) into `/dev/null`.
//! The stages are also timed alone.
//!
//! Run: `cargo run --release -p seedship-shared --example drive_stream_bench [-- <GiB, default 2>]`
//! Prints, per stage, wall-clock GB/s (10^9 bytes per second) and GB per CPU-second of the process: on a
//! shared machine the second figure is the per-core rate, the first what the cores you got delivered.

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc;
use std::time::Instant;

use seedship_shared::luks::crypt::XtsCipher;
use seedship_shared::manifest::ranges::range_windows;
use seedship_shared::manifest::{Md5Hash, MAX_RANGE_LEN};
use seedship_shared::md5batch::{backend, md5_many, md5_many_threads, LANES};
use seedship_shared::tar::{EntryHeader, TarWriter};

/// The in-memory "staging file" the batches are taken from, cyclically.
const BUFFER: usize = 128 << 20;
/// Bytes per batch: eight ranges, as diskprep reads and hashes them.
const BATCH: usize = LANES * MAX_RANGE_LEN as usize;
const SECTOR: usize = 4096;
/// What the payload writer gathers before encrypting and writing.
const CHUNK: usize = 8 << 20;

fn main() {
    let gib: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let total = gib << 30;
    let data = pseudo_random(BUFFER);
    println!(
        "drive_stream_bench: {gib} GiB from a {} MiB in-memory buffer; MD5 backend: {}",
        BUFFER >> 20,
        backend()
    );

    let t = Clock::now();
    let mut sink = 0u8;
    for (offset, len) in range_windows(0, total) {
        sink ^= Md5Hash::of(window(&data, offset, len)).0[0];
    }
    std::hint::black_box(sink);
    report("MD5 (md-5 crate), 1 thread", total, t);

    for threads in [1, 2] {
        let t = Clock::now();
        let all: Vec<(u64, u64)> = range_windows(0, total).collect();
        let mut sink = 0u8;
        for group in all.chunks(LANES * threads) {
            let msgs: Vec<&[u8]> = group.iter().map(|&(o, l)| window(&data, o, l)).collect();
            sink ^= md5_many_threads(&msgs, threads).iter().fold(0, |a, d| a ^ d[0]);
        }
        std::hint::black_box(sink);
        report(&format!("MD5 (md5batch, 8 lanes), {threads} thread(s)"), total, t);
    }

    let t = Clock::now();
    let cipher = XtsCipher::new(&KEY);
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0u64;
    while at < total {
        let from = (at % BUFFER as u64) as usize;
        buf.copy_from_slice(&data[from..from + CHUNK]);
        cipher.encrypt_serial(&mut buf, SECTOR, at / SECTOR as u64, 1);
        at += CHUNK as u64;
    }
    std::hint::black_box(&buf);
    report("read + AES-256-XTS, 1 thread", total, t);

    let t = Clock::now();
    one_thread(&data, total);
    report("read + encrypt + MD5 + tar, 1 thread", total, t);

    let t = Clock::now();
    two_threads(&data, total);
    report("read + encrypt + MD5 + tar, 2 threads", total, t);
}

/// Batch `i`: `BATCH` bytes of the buffer.
fn batch_of(data: &[u8], i: u64) -> &[u8] {
    let from = (i * BATCH as u64 % BUFFER as u64) as usize;
    &data[from..from + BATCH]
}

/// Reads a batch into `buf` and returns the MD5 of its ranges.
fn read_and_hash(data: &[u8], i: u64, buf: &mut Vec<u8>) -> Vec<[u8; 16]> {
    buf.clear();
    buf.extend_from_slice(batch_of(data, i));
    let ranges: Vec<&[u8]> = buf.chunks(MAX_RANGE_LEN as usize).collect();
    md5_many(&ranges)
}

/// The whole pipeline on this thread.
fn one_thread(data: &[u8], total: u64) {
    let mut tar = TarWriter::new(XtsSink::new());
    let mut entry = tar.begin_entry(&header(total)).expect("header");
    let mut buf = Vec::with_capacity(BATCH);
    let mut digests = 0usize;
    for i in 0..total / BATCH as u64 {
        digests += read_and_hash(data, i, &mut buf).len();
        entry.write_all(&buf).expect("into /dev/null");
    }
    entry.finish().expect("entry complete");
    tar.finish().expect("tar").flush().expect("into /dev/null");
    std::hint::black_box(digests);
}

/// Reading and hashing on one thread, a batch ahead of framing and encrypting on the other (diskprep's
/// arrangement); the buffers go back and forth.
fn two_threads(data: &[u8], total: u64) {
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, Vec<[u8; 16]>)>(1);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..3 {
        empty_tx.send(Vec::with_capacity(BATCH)).expect("buffer pool");
    }
    std::thread::scope(|s| {
        s.spawn(move || {
            for i in 0..total / BATCH as u64 {
                let mut buf = empty_rx.recv().expect("a buffer comes back");
                let digests = read_and_hash(data, i, &mut buf);
                full_tx.send((buf, digests)).expect("the writer runs");
            }
        });
        let mut tar = TarWriter::new(XtsSink::new());
        let mut entry = tar.begin_entry(&header(total)).expect("header");
        let mut digests = 0usize;
        for (buf, d) in full_rx {
            entry.write_all(&buf).expect("into /dev/null");
            digests += d.len();
            let _ = empty_tx.send(buf);
        }
        entry.finish().expect("entry complete");
        tar.finish().expect("tar").flush().expect("into /dev/null");
        std::hint::black_box(digests);
    });
}

const KEY: [u8; 64] = [0x5c; 64];

/// Gathers the stream, encrypts whole sectors (one thread) and writes them to `/dev/null`.
struct XtsSink {
    cipher: XtsCipher,
    buf: Vec<u8>,
    /// Payload offset of `buf[0]`.
    at: u64,
    out: File,
}

impl XtsSink {
    fn new() -> Self {
        Self {
            cipher: XtsCipher::new(&KEY),
            buf: Vec::with_capacity(CHUNK + SECTOR),
            at: 0,
            out: File::options().write(true).open("/dev/null").expect("/dev/null"),
        }
    }

    fn write_sectors(&mut self) -> io::Result<()> {
        let whole = self.buf.len() / SECTOR * SECTOR;
        let sectors = &mut self.buf[..whole];
        self.cipher
            .encrypt_serial(sectors, SECTOR, self.at / SECTOR as u64, 1);
        self.out.write_all(sectors)?;
        self.buf.drain(..whole);
        self.at += whole as u64;
        Ok(())
    }
}

impl Write for XtsSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK + SECTOR - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.write_sectors()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.buf.resize(self.buf.len().div_ceil(SECTOR) * SECTOR, 0);
        self.write_sectors()
    }
}

fn header(size: u64) -> EntryHeader {
    EntryHeader::file("session/vault/data/volume-0000", size, 1_700_000_000)
}

/// The bytes of blob window `[offset, offset + len)`, taken cyclically from the buffer.
fn window(data: &[u8], offset: u64, len: u64) -> &[u8] {
    let start = (offset % (data.len() as u64 - MAX_RANGE_LEN)) as usize;
    &data[start..start + len as usize]
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
