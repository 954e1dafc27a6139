use clap::Parser;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = seedship_emulator::Cli::parse();
    seedship_shared::logging::init(cli.verbosity());
    let result = seedship_emulator::run(cli);
    let _ = std::io::stdout().flush();
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(log) = std::env::var_os(seedship_shared::exit::ERROR_LOG_ENV) {
                seedship_shared::exit::append_error_line(
                    log.as_ref(),
                    "seedship-emulator",
                    &format!("{e:#}"),
                );
            }
            seedship_emulator::Exit::Failure.into()
        }
    }
}
