//! `wharf`: one binary for getting images into clusters that cannot reach
//! the internet. This file only parses arguments and maps outcomes to exit
//! codes; each command lives in its own module.
//!
//! Exit codes: 0 success, 1 the command failed, 2 bad usage.

mod cli;
mod config;
mod containerd_cmd;
mod logging;
mod serve;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Serve(args) => serve::run(args),
        cli::Command::Containerd(args) => containerd_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(hint) = hint_for(&e) {
                eprintln!("\nhint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

/// A next step for errors a user can fix, found by their kind.
fn hint_for(e: &anyhow::Error) -> Option<String> {
    e.chain()
        .find_map(|c| c.downcast_ref::<cli::Hint>())
        .map(|h| h.0.clone())
}
