//! The `lightbox` binary: the command line over the embedded engine.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lightbox: {e:#}");
            ExitCode::from(1)
        }
    }
}
