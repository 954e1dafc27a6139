//! What the operator sees during long work, from one display thread ([`Display`]): an indicatif bar on a
//! terminal, a log line every 10 seconds otherwise. Two views use it: a backup's ([`Display::start`]: files,
//! bytes, rate, ETA; in online mode also the bytes sent to the vault) and a step over a known number of bytes
//! ([`StepMeter`]: completion's verification and copy into the vault).

use seedship_shared::blob::Meter;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the bar is redrawn and the stop flag looked at.
const TICK: Duration = Duration::from_millis(200);
/// How often a log line is written when standard error is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

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

/// What one display shows, each tick.
trait View: Send + 'static {
    /// The bar on a terminal (called once, on the display thread).
    fn bar(&self) -> indicatif::ProgressBar;
    /// Updates the bar.
    fn draw(&self, bar: &indicatif::ProgressBar);
    /// Writes the log line, `elapsed` after the start.
    fn log(&self, elapsed: Duration);
}

/// A bar with `template`, or the default bar when the template does not parse.
fn styled(bar: indicatif::ProgressBar, template: &str) -> indicatif::ProgressBar {
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// A running progress display; stops when dropped.
pub struct Display {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Display {
    /// Starts the display for a backup that reads about `total` bytes (0 when unknown).
    pub fn start(counters: &Counters, total: u64, quiet: bool) -> Display {
        Display::spawn(
            BackupView {
                counters: counters.clone(),
                total,
            },
            quiet,
        )
    }

    /// The display thread (none when `quiet`).
    fn spawn(view: impl View, quiet: bool) -> Display {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = (!quiet).then(|| {
            std::thread::spawn(move || {
                let start = Instant::now();
                if std::io::stderr().is_terminal() {
                    let bar = view.bar();
                    while !s.load(Ordering::Relaxed) {
                        view.draw(&bar);
                        std::thread::sleep(TICK);
                    }
                    bar.finish_and_clear();
                } else {
                    let mut last = Instant::now();
                    while !s.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        if last.elapsed() >= LOG_EVERY {
                            last = Instant::now();
                            view.log(start.elapsed());
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

/// A backup: bytes read (with a size estimate a bar with ETA, else a counter), files, bytes sent.
struct BackupView {
    counters: Counters,
    total: u64,
}

impl View for BackupView {
    fn bar(&self) -> indicatif::ProgressBar {
        // with a size estimate (the previous snapshot's) a bar with ETA, else a counter
        if self.total > 0 {
            styled(
                indicatif::ProgressBar::new(self.total),
                "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
            )
        } else {
            styled(
                indicatif::ProgressBar::new_spinner(),
                "{elapsed_precise} {spinner} {bytes} read, {binary_bytes_per_sec} {msg}",
            )
        }
    }

    fn draw(&self, bar: &indicatif::ProgressBar) {
        bar.set_position(self.counters.bytes.load(Ordering::Relaxed));
        bar.set_message(self.counters.message());
    }

    fn log(&self, elapsed: Duration) {
        let c = &self.counters;
        let b = c.bytes.load(Ordering::Relaxed);
        let rate = b as f64 / elapsed.as_secs_f64() / 1e6;
        let sent = c.meter.as_ref().map(|m| m.stats().bytes_sent);
        tracing::info!(
            files = c.files.load(Ordering::Relaxed),
            bytes_read = b,
            bytes_sent = sent,
            "progress: {rate:.0} MB/s read"
        );
    }
}

/// Progress of a long step over a known number of bytes (`what`: "copied", "verified"); stops when dropped.
pub struct StepMeter {
    done: Arc<AtomicU64>,
    _display: Display,
}

impl StepMeter {
    /// Starts the display of a step over `total` bytes.
    pub fn start(what: &'static str, total: u64, quiet: bool) -> StepMeter {
        let done = Arc::new(AtomicU64::new(0));
        let view = StepView {
            what,
            total,
            done: done.clone(),
        };
        StepMeter {
            done,
            _display: Display::spawn(view, quiet),
        }
    }

    /// Counts `bytes` more as done.
    pub fn add(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }
}

struct StepView {
    what: &'static str,
    total: u64,
    done: Arc<AtomicU64>,
}

impl View for StepView {
    fn bar(&self) -> indicatif::ProgressBar {
        let bar = styled(
            indicatif::ProgressBar::new(self.total),
            "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
        );
        bar.set_message(self.what);
        bar
    }

    fn draw(&self, bar: &indicatif::ProgressBar) {
        bar.set_position(self.done.load(Ordering::Relaxed));
    }

    fn log(&self, elapsed: Duration) {
        let b = self.done.load(Ordering::Relaxed);
        tracing::info!(
            bytes = b,
            total = self.total,
            "{}: {} of {} MiB after {} s",
            self.what,
            b >> 20,
            self.total >> 20,
            elapsed.as_secs()
        );
    }
}
