//! `wharf`: one binary for getting images into clusters that cannot reach
//! the internet. This file only parses arguments and maps outcomes to exit
//! codes; each command lives in its own module.
//!
//! Exit codes: 0 success, 1 the command failed, 2 bad usage.

mod auth_cmd;
mod ca_cmd;
mod cli;
mod config;
mod containerd_cmd;
mod doctor_cmd;
mod fsck_cmd;
mod gc_cmd;
mod images_cmd;
mod load_cmd;
mod logging;
mod login_cmd;
mod save_cmd;
mod self_image;
mod serve;
mod transfer_cmd;
mod warm_cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Serve(args) => serve::run(args),
        cli::Command::Ca(args) => ca_cmd::run(args),
        cli::Command::Auth(args) => auth_cmd::run(args),
        cli::Command::Containerd(args) => containerd_cmd::run(args),
        cli::Command::Images(args) => images_cmd::run(args),
        cli::Command::Doctor(args) => doctor_cmd::run(args),
        cli::Command::Fsck(args) => fsck_cmd::run(args),
        cli::Command::Gc(args) => gc_cmd::run(args),
        cli::Command::Copy(args) => transfer_cmd::run_copy(args),
        cli::Command::Sync(args) => transfer_cmd::run_sync(args),
        cli::Command::Save(args) => save_cmd::run(args),
        cli::Command::Load(args) => load_cmd::run(args),
        cli::Command::Warm(args) => warm_cmd::run(args),
        cli::Command::Login(args) => login_cmd::run_login(args),
        cli::Command::Logout(args) => login_cmd::run_logout(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

/// `error: what failed: why`, then a blank line and `hint: what to do` when
/// the error carries a [`cli::Hint`].
fn report(e: &anyhow::Error) {
    let hint = e.downcast_ref::<cli::Hint>().map(|h| h.0.clone());
    let mut causes: Vec<String> = Vec::new();
    for cause in e.chain().map(|c| c.to_string()) {
        // Library errors often print their source already; say it once.
        let repeated = causes.last().is_some_and(|prev| prev.ends_with(&cause));
        if Some(&cause) != hint.as_ref() && !repeated {
            causes.push(cause);
        }
    }
    eprintln!("error: {}", causes.join(": "));
    if let Some(hint) = hint {
        eprintln!("\nhint: {hint}");
    }
}
