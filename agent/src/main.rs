use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = seedship_agent::Cli::parse();
    seedship_shared::logging::init(cli.verbosity());
    match seedship_agent::run(cli) {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            seedship_agent::Exit::Failure.into()
        }
    }
}
