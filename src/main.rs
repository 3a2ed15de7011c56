use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = rcross::cli::Cli::parse();
    match rcross::commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("rcross: error: {f}");
            ExitCode::from(f.code)
        }
    }
}
