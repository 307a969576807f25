//! `wharf`: one binary for getting images into clusters that cannot reach
//! the internet. This file parses the command line, runs the command and
//! maps its outcome to an exit code (`exit`): 0 success, 1 the command
//! failed, 2 bad usage.
//!
//! Layout: `cli` (the commands), `commands/` (one module each), `flags`
//! (flags shared between commands), `output` (everything printed on
//! stdout), `settings` (wharf.toml), `exit` (errors and exit codes).

// Reports go through `output`, whose writes fail instead of panicking
// when stdout is a closed pipe.
#![deny(clippy::print_stdout)]

mod cli;
mod commands;
mod exit;
mod flags;
mod logging;
mod output;
mod self_image;
mod settings;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let argv: Vec<_> = std::env::args_os().collect();
    let cli = match cli::Cli::try_parse_from(flags::insecure_host_values(argv.clone())) {
        Ok(cli) => cli,
        // `--insecure X` where X was meant as an argument: parse as written.
        Err(_) => cli::Cli::parse_from(argv),
    };
    exit::finish(cli.command.run())
}
