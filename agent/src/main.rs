use clap::Parser;
use seedship_agent::Exit;
use seedship_shared::cancel::Cancel;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Blob buffers (up to 8 MiB) are allocated in reader threads and freed in the writer: a fixed mmap
    // threshold returns them to the system at once instead of letting glibc's per-thread heaps grow.
    // SAFETY: mallopt only tunes the allocator; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
    let cli = seedship_agent::Cli::parse();
    seedship_shared::logging::init(cli.verbosity());
    // SIGINT, SIGTERM, SIGHUP: a running backup pipeline stops at a safe point (exit 130, run again to
    // continue); before one runs, the process ends at once with exit 130.
    let cancel = Cancel::new();
    let on_signal = cancel.clone();
    if let Err(e) = ctrlc::set_handler(move || {
        if on_signal.is_listening() {
            on_signal.cancel();
        } else {
            std::process::exit(Exit::Interrupted as i32);
        }
    }) {
        eprintln!("warning: cannot handle Ctrl-C: {e}");
    }
    match seedship_agent::run(cli, cancel) {
        Ok(code) => code.into(),
        Err(e) => {
            seedship_shared::exit::report_error("seedship-agent", e.as_ref());
            Exit::Failure.into()
        }
    }
}
