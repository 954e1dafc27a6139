//! AES-256-XTS throughput of the LUKS2 sector path: one core and all cores, plus the `xts-mode` crate's
//! block-at-a-time loop for comparison. Run: `cargo run --release -p seedship-shared --example xts_bench`
//! (optional argument: buffer size in MiB, default 256). Prints wall-clock throughput and throughput per
//! CPU-second (the latter is what one core delivers when the machine is busy with other work).

use std::time::Instant;

use aes::cipher::generic_array::GenericArray;
use aes::cipher::KeyInit;
use seedship_shared::luks::crypt::XtsCipher;

const SECTOR: usize = 4096;

/// CPU time (user + system) of this process so far, in seconds, from /proc/self/stat (Linux, 100 Hz ticks).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After ") " come: state (field 3), then numbers; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let num = |i: usize| fields.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (num(11) + num(12)) / 100.0
}

fn measure(label: &str, bytes: usize, reps: usize, mut f: impl FnMut()) {
    f(); // warm-up
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    for _ in 0..reps {
        f();
    }
    let (secs, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    let total = (bytes * reps) as f64;
    println!(
        "{label:<44} {:>5.2} GB/s wall, {:>5.2} GB/s per CPU-second ({:.0} MiB, {secs:.2} s wall, {cpu:.2} s CPU)",
        total / secs / 1e9,
        total / cpu.max(0.01) / 1e9,
        total / 1048576.0
    );
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(256);
    let len = mib << 20;
    let key: [u8; 64] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
    let cipher = XtsCipher::new(&key);
    let mut buf: Vec<u8> = (0..len).map(|i| (i * 7 + (i >> 12)) as u8).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("AES-256-XTS, {SECTOR}-byte sectors, {mib} MiB buffer, {threads} hardware threads");
    measure("seedship XtsCipher, 1 thread", len, 8, || {
        cipher.encrypt_serial(&mut buf, SECTOR, 0, 8)
    });
    measure(
        &format!("seedship XtsCipher, all cores ({threads} threads)"),
        len,
        8,
        || cipher.encrypt(&mut buf, SECTOR, 0, 8),
    );
    let xts = xts_mode::Xts128::new(
        aes::Aes256::new(GenericArray::from_slice(&key[..32])),
        aes::Aes256::new(GenericArray::from_slice(&key[32..])),
    );
    measure("xts-mode crate (block at a time), 1 thread", len, 2, || {
        for (i, s) in buf.chunks_exact_mut(SECTOR).enumerate() {
            xts.encrypt_sector(s, xts_mode::get_tweak_default(i as u128 * 8));
        }
    });
}
