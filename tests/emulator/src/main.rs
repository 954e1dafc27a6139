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
            seedship_shared::exit::report_error("seedship-emulator", e.as_ref());
            seedship_emulator::Exit::Failure.into()
        }
    }
}
