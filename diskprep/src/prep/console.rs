//! The operator's side of `seedship-diskprep`: questions on the terminal, progress bars (or periodic log
//! lines when standard error is not a terminal), and the plan and summary printed to standard output.

use crate::prep::drive::DriveInfo;
use crate::prep::prepare::{PrepError, PrepEvent, PrepPlan, PrepReport, PrepUi};
use crate::prep::staging::StagedJob;
use seedship_shared::progress::Progress;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use seedship_shared::units::human;

/// The console: asks on standard input when it is a terminal, refuses to guess when it is not.
#[derive(Debug)]
pub struct ConsoleUi {
    interactive: bool,
    bars: indicatif::MultiProgress,
}

impl Default for ConsoleUi {
    fn default() -> Self {
        let bars = indicatif::MultiProgress::new();
        if !std::io::stderr().is_terminal() {
            bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        ConsoleUi {
            interactive: std::io::stdin().is_terminal(),
            bars,
        }
    }
}

impl ConsoleUi {
    fn ask(&mut self, question: &str, needed_for: &str) -> Result<String, PrepError> {
        if !self.interactive {
            return Err(PrepError::Ui(format!(
                "{question} needs an answer, but standard input is not a terminal; {needed_for}"
            )));
        }
        eprint!("{question} ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| PrepError::Ui(format!("reading the answer: {e}")))?;
        Ok(line.trim().to_owned())
    }
}

impl PrepUi for ConsoleUi {
    fn choose_job(&mut self, jobs: &[StagedJob]) -> Result<usize, PrepError> {
        println!("The staging location holds {} import jobs:", jobs.len());
        for (i, j) in jobs.iter().enumerate() {
            let d = &j.descriptor;
            println!(
                "  {}. {}  (storage account {}, container {}, {} from {})",
                i + 1,
                d.job_name,
                d.storage_account,
                d.container,
                human(j.total_len()),
                d.source_host
            );
        }
        let a = self.ask("Which job do the drives belong to? Number:", "pass --job NAME")?;
        a.parse::<usize>()
            .ok()
            .filter(|n| (1..=jobs.len()).contains(n))
            .map(|n| n - 1)
            .ok_or_else(|| PrepError::Ui(format!("{a:?} is not a job number from 1 to {}", jobs.len())))
    }

    fn ask_drive(&mut self, number: usize, needed: u64) -> Result<Option<PathBuf>, PrepError> {
        let what = if number == 1 {
            "a drive"
        } else {
            "an additional drive"
        };
        println!("{} still to copy: attach {what}.", human(needed));
        let a = self.ask(
            &format!("Drive {number}: device or image path (empty to stop):"),
            "pass the drives with --drive PATH (repeat it for several drives)",
        )?;
        Ok((!a.is_empty()).then(|| PathBuf::from(a)))
    }

    fn confirm_format(&mut self, info: &DriveInfo, drive_id: &str) -> Result<bool, PrepError> {
        println!(
            "About to FORMAT {} — everything on it will be lost:",
            info.path.display()
        );
        println!("  model:  {}", info.model.as_deref().unwrap_or("unknown"));
        println!(
            "  serial: {}",
            info.serial.as_deref().unwrap_or("none (a drive id is generated)")
        );
        println!("  size:   {} ({} bytes)", human(info.size), info.size);
        println!("  drive id: {drive_id}");
        let a = self.ask(
            &format!("Type the drive id ({drive_id}) to format it:"),
            "pass --yes to format without asking (silent mode)",
        )?;
        Ok(a == drive_id)
    }

    fn event(&mut self, event: PrepEvent<'_>) {
        match event {
            PrepEvent::JobSelected(j) => {
                let d = &j.descriptor;
                println!(
                    "Import job {}: storage account {}, container {}, source machine {}, {} in {} blobs.",
                    d.job_name,
                    d.storage_account,
                    d.container,
                    d.source_host,
                    human(j.total_len()),
                    d.blobs.len()
                );
            }
            PrepEvent::Checked { job, blobs, bytes } => {
                println!(
                    "Checked the staging data of {job}: {blobs} blobs, {}, lengths match (each BLAKE3 is checked while copying).",
                    human(bytes)
                );
            }
            PrepEvent::PlanReady(plan) => print_plan(plan),
            PrepEvent::DriveSkipped { drive } => {
                println!("Drive {drive} is already complete and verified: left as it is.")
            }
            PrepEvent::DriveWritten {
                drive,
                bytes,
                manifest_hash,
                verified,
            } => println!(
                "Drive {drive}: {} written, manifest MD5 {manifest_hash}{}.",
                human(bytes),
                if verified {
                    ", read back and verified"
                } else {
                    " (not verified: --no-verify)"
                }
            ),
        }
    }

    fn progress(&mut self, label: &str, total: u64) -> Box<dyn Progress> {
        if self.bars.is_hidden() {
            return Box::new(LogProgress::new(label, total));
        }
        let bar = self.bars.add(indicatif::ProgressBar::new(total));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>22} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_owned());
        Box::new(BarProgress(bar))
    }
}

fn print_plan(plan: &PrepPlan) {
    println!(
        "Plan: {} on {} drive(s), session {}:",
        human(plan.total_bytes),
        plan.drives.len(),
        plan.layout.session
    );
    for (i, d) in plan.drives.iter().enumerate() {
        let split: Vec<String> = d
            .plan
            .parts
            .iter()
            .zip(&plan.part_numbers[i])
            .filter_map(|(p, n)| n.map(|n| format!("{} part {n}", p.blob)))
            .collect();
        println!(
            "  drive {} {} at {}: {} of {} payload, {} blobs{}{}",
            i + 1,
            d.drive_id,
            d.info.path.display(),
            human(d.plan.payload_len),
            human(d.capacity),
            d.plan.parts.len(),
            if split.is_empty() {
                String::new()
            } else {
                format!(" ({})", split.join(", "))
            },
            match d.resumed {
                Some(s) => format!(" [earlier run: {s:?}]"),
                None => String::new(),
            }
        );
    }
}

/// Prints the summary of a finished preparation.
pub fn print_report(report: &PrepReport) {
    println!();
    println!("{}", summary_line(report));
    for d in &report.drives {
        println!(
            "  {}  {}  {}  manifest {} MD5 {}",
            d.drive_id,
            d.target.display(),
            human(d.bytes),
            d.manifest_file,
            d.manifest_hash
        );
    }
    println!(
        "Recovery keys and the drive list are in {} (readable by you only). Keep it safe.",
        report.key_file.display()
    );
}

/// Below this, a rate says more about timer noise and the page cache than about the drives.
const MIN_RATE_SECS: f64 = 1.0;

/// The first line of the summary: how many drives this run wrote, and how fast when that means something
/// (at least [`MIN_RATE_SECS`] of writing and some bytes copied).
fn summary_line(report: &PrepReport) -> String {
    let written: Vec<_> = report.drives.iter().filter(|d| d.written).collect();
    if written.is_empty() {
        return format!(
            "All {} drive(s) of import job {} were prepared and verified by an earlier run; nothing was written:",
            report.drives.len(),
            report.job
        );
    }
    let bytes: u64 = written.iter().map(|d| d.bytes).sum();
    let secs = report.elapsed.as_secs_f64();
    let rate = if secs >= MIN_RATE_SECS && bytes > 0 {
        format!(" in {secs:.1} s ({}/s)", human((bytes as f64 / secs) as u64))
    } else {
        format!(" in {secs:.1} s")
    };
    format!(
        "Prepared {} drive(s) for import job {}{rate}{}:",
        written.len(),
        report.job,
        match report.drives.len() - written.len() {
            0 => String::new(),
            n => format!("; {n} more were prepared by an earlier run"),
        }
    )
}

/// A bar on the terminal.
struct BarProgress(indicatif::ProgressBar);

impl Progress for BarProgress {
    fn set_total(&self, total: u64) {
        self.0.set_length(total);
    }
    fn inc(&self, delta: u64) {
        self.0.inc(delta);
    }
    fn set_message(&self, message: &str) {
        self.0.set_message(message.to_owned());
    }
    fn finish(&self) {
        self.0.finish();
    }
}

/// Log lines every 10 seconds, for logs and CI.
struct LogProgress {
    label: String,
    total: AtomicU64,
    done: AtomicU64,
    started: Instant,
    last: Mutex<Instant>,
}

impl LogProgress {
    fn new(label: &str, total: u64) -> Self {
        LogProgress {
            label: label.to_owned(),
            total: AtomicU64::new(total),
            done: AtomicU64::new(0),
            started: Instant::now(),
            last: Mutex::new(Instant::now()),
        }
    }

    fn line(&self) {
        let done = self.done.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        tracing::info!(
            "{}: {} of {} ({}/s)",
            self.label,
            human(done),
            human(self.total.load(Ordering::Relaxed)),
            human((done as f64 / secs) as u64)
        );
    }
}

impl Progress for LogProgress {
    fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }
    fn inc(&self, delta: u64) {
        self.done.fetch_add(delta, Ordering::Relaxed);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= Duration::from_secs(10) {
            *last = Instant::now();
            drop(last);
            self.line();
        }
    }
    fn set_message(&self, _message: &str) {}
    fn finish(&self) {
        self.line();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prep::prepare::DriveReport;

    fn report(bytes: u64, elapsed: Duration) -> PrepReport {
        PrepReport {
            job: "job1".into(),
            drives: vec![DriveReport {
                drive_id: "SEED0001".into(),
                target: "/tmp/d1.img".into(),
                bytes,
                manifest_hash: "00".into(),
                manifest_file: "\\DriveManifest.xml".into(),
                verified: true,
                written: true,
            }],
            key_file: "/tmp/keys.tsv".into(),
            elapsed,
        }
    }

    #[test]
    fn no_rate_for_a_run_under_a_second() {
        let line = summary_line(&report(10 << 30, Duration::from_millis(20)));
        assert_eq!(line, "Prepared 1 drive(s) for import job job1 in 0.0 s:");
    }

    #[test]
    fn no_rate_when_nothing_was_copied() {
        let line = summary_line(&report(0, Duration::from_secs(5)));
        assert!(!line.contains("/s"), "{line}");
    }

    #[test]
    fn a_rate_for_a_real_copy() {
        let line = summary_line(&report(100 << 20, Duration::from_secs(2)));
        assert!(line.ends_with("in 2.0 s (50.0 MiB/s):"), "{line}");
    }
}
