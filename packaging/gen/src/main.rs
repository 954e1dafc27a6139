use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: seedship-gen OUT_DIR\n\
writes OUT_DIR/man/*.1 (every command and subcommand of seedship-agent and seedship-diskprep) and \
OUT_DIR/completions/{bash,zsh,fish}/";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out] = args.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match seedship_gen::generate(seedship_gen::programs(), &PathBuf::from(out)) {
        Ok(files) => {
            println!("wrote {} files under {out}", files.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
