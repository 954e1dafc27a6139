use clap::Parser;
use seedship_shared::cancel::Cancel;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = seedship_diskprep::Cli::parse_from(seedship_diskprep::args::normalize(std::env::args_os()));
    seedship_shared::logging::init(cli.verbosity());
    // A write past a file-size limit must be an error naming the drive, not a silent death.
    // SAFETY: ignoring SIGXFSZ is always sound.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let cancel = Cancel::new();
    let on_signal = cancel.clone();
    if let Err(e) = ctrlc::set_handler(move || {
        if on_signal.cancel() {
            eprintln!("\nstopping now");
            std::process::exit(seedship_diskprep::Exit::Interrupted as i32);
        }
        eprintln!(
            "\nstopping at the next checkpoint (Ctrl-C again to stop at once; the journal allows a resume)"
        );
    }) {
        eprintln!("warning: cannot handle Ctrl-C: {e}");
    }
    match seedship_diskprep::run(cli, cancel.flag()) {
        Ok(code) => code.into(),
        Err(e) => {
            seedship_shared::exit::report_error("seedship-diskprep", e.as_ref());
            seedship_diskprep::Exit::Failure.into()
        }
    }
}
