//! `wharf auth htpasswd FILE USER`: add or update a bcrypt entry.
//!
//! The password is read from standard input (first line), never from the
//! command line, where other users could read it in the process list.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use wharf_auth::htpasswd;

use crate::exit::Hint;

#[derive(Debug, clap::Args)]
pub struct AuthArgs {
    #[command(subcommand)]
    pub command: AuthCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AuthCommand {
    /// Add or update USER in an htpasswd file (bcrypt), reading the password from stdin.
    Htpasswd(HtpasswdArgs),
}

#[derive(Debug, clap::Args)]
pub struct HtpasswdArgs {
    /// The htpasswd file; created (mode 0600) when missing, replaced atomically.
    pub file: PathBuf,
    /// The user to add or update.
    pub user: String,
    /// Read the password from stdin (the default; kept for scripts that say so).
    #[arg(long)]
    pub password_stdin: bool,
    /// bcrypt cost (4 to 31); each step doubles the time a check takes.
    #[arg(long, default_value_t = htpasswd::DEFAULT_COST, value_parser = clap::value_parser!(u32).range(4..=31))]
    pub cost: u32,
}

pub fn run(args: AuthArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AuthCommand::Htpasswd(args) => set_password(&args),
    }
}

fn set_password(args: &HtpasswdArgs) -> anyhow::Result<ExitCode> {
    htpasswd::validate_user_name(&args.user).context(Hint(
        "a user name cannot be empty, contain ':' or spaces, or be \"anonymous\"".into(),
    ))?;
    let password = read_password(&args.user)?;
    let existing = read_existing(&args.file)?;
    let hash = match htpasswd::hash_password(&password, args.cost) {
        Err(e @ wharf_auth::AuthError::PasswordTooLong(_)) => {
            return Err(e)
                .with_context(|| format!("cannot set the password for {:?}", args.user))
                .context(Hint(format!(
                    "choose a password of at most {} bytes (bcrypt ignores the rest); \
                     nothing was written to {}",
                    htpasswd::MAX_PASSWORD_BYTES,
                    args.file.display()
                )))
        }
        hashed => hashed?,
    };
    let updated = htpasswd::upsert_entry(&existing, &args.user, &hash);
    // What is written must load: refuse to save a file the registry would refuse.
    htpasswd::Htpasswd::parse(&updated, &args.file).context(Hint(
        "fix or remove the line named above, then run the command again".into(),
    ))?;
    wharf_auth::write_private(&args.file, updated.as_bytes())
        .with_context(|| format!("cannot write {}", args.file.display()))
        .context(Hint(
            "check that the directory exists and is writable by this user".into(),
        ))?;
    eprintln!("{}: password for {:?} set", args.file.display(), args.user);
    Ok(ExitCode::SUCCESS)
}

fn read_password(user: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password for {user} (input is shown; pipe it in to hide it): ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(anyhow::anyhow!("no password was given on stdin")).context(Hint(
            "pipe the password in, e.g. `printf '%s' \"$PASSWORD\" | wharf auth htpasswd FILE USER`"
                .into(),
        ));
    }
    Ok(password.to_string())
}

fn read_existing(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}
