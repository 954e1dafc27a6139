//! What the operator sees while a backup runs: an indicatif bar on a terminal (files, bytes, rate, ETA),
//! a log line every 10 seconds otherwise; in online mode also the bytes sent to the vault.

use seedship_shared::blob::Meter;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counters the pipeline updates from every thread.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub files: Arc<AtomicU64>,
    pub bytes: Arc<AtomicU64>,
    /// The vault's traffic meter (online mode): the display adds the bytes sent.
    pub meter: Option<Arc<Meter>>,
}

impl Counters {
    /// `N files` or, with a meter, `N files, X sent`.
    fn message(&self) -> String {
        let files = self.files.load(Ordering::Relaxed);
        match &self.meter {
            Some(m) => format!(
                "{files} files, {} sent",
                seedship_shared::units::human(m.stats().bytes_sent)
            ),
            None => format!("{files} files"),
        }
    }
}

/// A running progress display; stops when dropped.
pub struct Display {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Display {
    /// Starts the display for a backup that reads about `total` bytes (0 when unknown).
    pub fn start(counters: &Counters, total: u64, quiet: bool) -> Display {
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counters.clone(), stop.clone());
        let thread = (!quiet).then(|| {
            std::thread::spawn(move || {
                let start = Instant::now();
                if std::io::stderr().is_terminal() {
                    // with a size estimate (the previous snapshot's) a bar with ETA, else a counter
                    let (bar, template) = if total > 0 {
                        (
                            indicatif::ProgressBar::new(total),
                            "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
                        )
                    } else {
                        (
                            indicatif::ProgressBar::new_spinner(),
                            "{elapsed_precise} {spinner} {bytes} read, {binary_bytes_per_sec} {msg}",
                        )
                    };
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(template)
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                    while !s.load(Ordering::Relaxed) {
                        bar.set_position(c.bytes.load(Ordering::Relaxed));
                        bar.set_message(c.message());
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    bar.finish_and_clear();
                } else {
                    let mut last = Instant::now();
                    while !s.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(200));
                        if last.elapsed() >= Duration::from_secs(10) {
                            last = Instant::now();
                            let b = c.bytes.load(Ordering::Relaxed);
                            let rate = b as f64 / start.elapsed().as_secs_f64() / 1e6;
                            let sent = c.meter.as_ref().map(|m| m.stats().bytes_sent);
                            tracing::info!(
                                files = c.files.load(Ordering::Relaxed),
                                bytes_read = b,
                                bytes_sent = sent,
                                "progress: {rate:.0} MB/s read"
                            );
                        }
                    }
                }
            })
        });
        Display { stop, thread }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
