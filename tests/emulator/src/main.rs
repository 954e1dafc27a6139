use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = seedship_emulator::Cli::parse();
    seedship_shared::logging::init(cli.verbosity());
    match seedship_emulator::run(cli) {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            seedship_emulator::Exit::Failure.into()
        }
    }
}
