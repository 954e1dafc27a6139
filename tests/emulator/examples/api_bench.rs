//! Measures the emulator through seedship-shared's blocking client: List Locations, Put Job and Get Job
//! round trips per second on one keep-alive connection. Prints figures; asserts nothing.
//!
//!     cargo run -p seedship-emulator --example api_bench [-- REQUESTS]

use seedship_emulator::{bind, init, InitOptions, ServeConfig};
use seedship_shared::api::{ApiClientOptions, BlockingApiClient, Drive, Job, JobProperties, JobType};
use seedship_shared::publish_settings::PublishSettings;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(300);
    let dir = tempfile::tempdir()?;
    let report = init(&InitOptions {
        dir: dir.path().to_path_buf(),
        subscription_id: None,
        subscription_name: "bench".into(),
        storage_account: None,
        url: None,
        listen_port: None,
    })?;
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let config = ServeConfig {
        dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse()?,
    };
    let server = std::thread::spawn(move || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        rt.block_on(async {
            let bound = bind(&config).await?;
            tx.send(())?;
            bound.run(async { drop(stop_rx.await) }).await?;
            Ok(())
        })
    });
    rx.recv()?;
    let ps = PublishSettings::load(&report.publish_settings)?;
    let opts = ApiClientOptions::from_subscription(ps.subscription(&report.subscription_id)?)?
        .with_management_ca_file(&report.ca_cert)?;
    let client = BlockingApiClient::new(opts)?;

    let t = Instant::now();
    for _ in 0..n {
        client.list_locations(Some("West US"))?;
    }
    print_rate("List Locations", n, t);
    let t = Instant::now();
    for i in 0..n {
        client.put_job("benchacct", &job(&format!("job{}", i % 20)))?;
    }
    print_rate("Put Job (replace, SQLite fsync)", n, t);
    let t = Instant::now();
    for i in 0..n {
        client.get_job("benchacct", &format!("job{}", i % 20))?;
    }
    print_rate("Get Job", n, t);
    drop(stop_tx);
    server
        .join()
        .map_err(|_| anyhow::anyhow!("server thread panicked"))??;
    Ok(())
}

fn print_rate(what: &str, n: usize, t: Instant) {
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{what:<34} {n:>6} requests in {secs:>6.2} s = {:>7.0} req/s",
        n as f64 / secs
    );
}

fn job(name: &str) -> Job {
    Job {
        name: name.into(),
        properties: JobProperties {
            storage_account_key: Some("a2V5".into()),
            location: Some("West US".into()),
            job_type: Some(JobType::Import),
            ..Default::default()
        },
        drive_list: Some(vec![Drive {
            drive_id: "BENCH0001".into(),
            bit_locker_key: Some("259358-100188-581471-154165-090552-296406-410091-426844".into()),
            manifest_file: Some("\\DriveManifest.xml".into()),
            manifest_hash: Some("B306C4B34DAA0E99957A4B9C779D2FA2".into()),
            ..Default::default()
        }]),
        ..Default::default()
    }
}
