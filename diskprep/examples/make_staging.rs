//! Writes a ready staging job for benchmarks: `<staging>/job1` with 1 GiB page-blob-shaped volumes of
//! incompressible pseudo-random data (the last one shorter) and a `job.json` whose blob list carries each
//! blob's length and BLAKE3, as seedship-agent leaves it after the initial backup.
//!
//! ```text
//! cargo run --release -p seedship-diskprep --example make_staging -- STAGING_DIR GIB
//! ```

use seedship_shared::host::hostname;
use seedship_shared::staging::{JobDescriptor, JobState, StagedBlob, BLOBS_DIR};
use std::io::Write;
use std::path::PathBuf;

const VOLUME: u64 = 1 << 30;
const BUF: usize = 8 << 20;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(gib)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: make_staging STAGING_DIR GIB");
    };
    let total: u64 = (gib.parse::<f64>()? * VOLUME as f64) as u64 / 4096 * 4096;
    let job = PathBuf::from(dir).join("job1");
    anyhow::ensure!(!job.exists(), "{} exists already", job.display());
    let mut blobs = Vec::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; BUF];
    let mut left = total;
    let mut n = 0;
    while left > 0 {
        let len = left.min(VOLUME);
        let name = format!("data/{n:08}");
        let path = job.join(BLOBS_DIR).join(&name);
        std::fs::create_dir_all(path.parent().expect("blob folder"))?;
        let mut f = std::io::BufWriter::with_capacity(BUF, std::fs::File::create(&path)?);
        let mut h = blake3::Hasher::new();
        let mut done = 0;
        while done < len {
            let k = (len - done).min(BUF as u64) as usize;
            for w in buf[..k].chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                w.copy_from_slice(&x.to_le_bytes());
            }
            h.update(&buf[..k]);
            f.write_all(&buf[..k])?;
            done += k as u64;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        blobs.push(StagedBlob {
            name,
            len,
            blake3: h.finalize().to_hex().to_string(),
        });
        left -= len;
        n += 1;
    }
    JobDescriptor {
        format: 1,
        job_name: "job1".into(),
        subscription: "11111111-2222-3333-4444-555555555555".into(),
        storage_account: "benchacct".into(),
        container: "bench".into(),
        publish_settings: "/nowhere.publishsettings".into(),
        api: Default::default(),
        source_host: hostname(),
        repository_id: "bench".into(),
        state: JobState::BackupComplete,
        created: 1_700_000_000,
        blobs,
    }
    .save(&job)?;
    println!("{}: {} bytes in {} blob(s)", job.display(), total, n);
    Ok(())
}
