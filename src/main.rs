//! The `lightbox` binary: the command line over the embedded engine.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Everything Lightbox creates (store, logs, backups, anchor) holds patient data:
    // readable by its owner only.
    // SAFETY: umask has no preconditions and is called before any thread starts.
    unsafe {
        libc::umask(0o077);
    }
    match cli::main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lightbox: {}", cli::defang(&cli::error_text(&e)));
            if e.downcast_ref::<cli::UsageError>().is_some() { ExitCode::from(2) } else { ExitCode::from(1) }
        }
    }
}
