use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = seedship_agent::Cli::parse();
    seedship_shared::logging::init(cli.verbosity());
    match seedship_agent::run(cli) {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(log) = std::env::var_os(seedship_shared::exit::ERROR_LOG_ENV) {
                seedship_shared::exit::append_error_line(log.as_ref(), "seedship-agent", &format!("{e:#}"));
            }
            seedship_agent::Exit::Failure.into()
        }
    }
}
