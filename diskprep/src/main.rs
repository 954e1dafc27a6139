use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = seedship_diskprep::Cli::parse();
    seedship_shared::logging::init(cli.verbosity());
    match seedship_diskprep::run(cli) {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            seedship_diskprep::Exit::Failure.into()
        }
    }
}
