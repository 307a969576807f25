//! `wharf login HOST` and `wharf logout HOST`: the registry credentials
//! podman and skopeo share, in their `auth.json`.
//!
//! `login` checks the credentials against the registry's `/v2/` (through
//! its token server when it has one) before anything is written; a refused
//! password leaves the file as it was. The file is `--authfile`, else
//! `$REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`,
//! else `/run/containers/$UID/auth.json`: where podman writes it, and
//! where every wharf command that talks to registries reads it.

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use wharf_client::{auth_file, split_scheme, Credential, ErrorKind};

use crate::commands::{runtime, Work};
use crate::exit::{usage, Hint};
use crate::flags::{self, Trust};
use crate::output::client_reporter;

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The registry, host[:port] (an https:// or http:// before it chooses the scheme).
    #[arg(value_name = "HOST[:PORT]")]
    pub host: String,
    /// The user name (asked for when missing and stdin is a terminal).
    #[arg(long, short = 'u', value_name = "USER")]
    pub username: Option<String>,
    /// Read the password from stdin (its first line) instead of asking for it.
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub trust: Trust,
}

#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// The registry, host[:port].
    #[arg(value_name = "HOST[:PORT]", required_unless_present = "all")]
    pub host: Option<String>,
    /// Remove the credentials of every registry.
    #[arg(long, conflicts_with = "host")]
    pub all: bool,
    /// Registry credentials file (auth.json as podman and skopeo write it).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

/// The file `--authfile` names, or the one podman uses.
fn auth_file_path(given: Option<&PathBuf>) -> PathBuf {
    given.cloned().unwrap_or_else(|| {
        auth_file::default_path(|k| std::env::var_os(k), rustix::process::geteuid().as_raw())
    })
}

/// `HOST[:PORT]` as written, without a scheme or a trailing slash; `None`
/// when it holds a path.
fn registry_host(written: &str) -> Option<(Option<&'static str>, String)> {
    let (scheme, rest) = split_scheme(written.trim());
    let host = rest.trim_end_matches('/');
    let valid = !host.is_empty() && !host.contains('/') && !host.contains('@');
    valid.then(|| (scheme, host.to_string()))
}

pub fn run_login(mut args: LoginArgs) -> anyhow::Result<ExitCode> {
    let Some((scheme, host)) = registry_host(&args.host) else {
        return Err(usage(format!(
            "{:?} is not a registry host: give host[:port], e.g. wharf login registry.example:5000",
            args.host
        )));
    };
    if let Some(scheme) = scheme {
        args.trust.schemes.push((host.clone(), scheme));
    }
    let username = match &args.username {
        Some(u) => u.clone(),
        None => prompt_username()?,
    };
    let password = if args.password_stdin {
        read_password_stdin()?
    } else {
        prompt_password(&username)?
    };
    let credential = Credential::basic(&username, &password);
    let client = flags::client(&args.trust, None, &BTreeSet::new())?
        .with_reporter(client_reporter(None, false));
    let checked = runtime(Work::Requests)?.block_on(client.verify_credential(&host, credential));
    let path = auth_file_path(args.trust.authfile.as_ref());
    if let Err(e) = checked {
        let hint = match e.kind() {
            ErrorKind::Unauthorized | ErrorKind::Denied => format!(
                "check the user name and password; nothing was saved to {}",
                path.display()
            ),
            _ => format!(
                "nothing was saved to {}; check that {host} is reachable and is a registry",
                path.display()
            ),
        };
        return Err(anyhow::Error::new(e).context(Hint(hint)));
    }
    auth_file::save(&path, &host, &username, &password)
        .map_err(anyhow::Error::new)
        .context(Hint(
            "give a file this user can write with --authfile FILE".into(),
        ))?;
    eprintln!(
        "login succeeded: credentials for {host} saved in {}",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run_logout(args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let path = auth_file_path(args.authfile.as_ref());
    if args.all {
        let removed = auth_file::remove_all(&path)?;
        eprintln!(
            "removed the credentials of {removed} registr{} from {}",
            if removed == 1 { "y" } else { "ies" },
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let written = args.host.as_deref().unwrap_or_default();
    let Some((_, host)) = registry_host(written) else {
        return Err(usage(format!(
            "{written:?} is not a registry host: give host[:port]"
        )));
    };
    if !auth_file::remove(&path, &host)? {
        return Err(anyhow::anyhow!(
            "not logged in to {host}: {} has no credentials for it",
            path.display()
        )
        .context(Hint(
            "give the file wharf login wrote with --authfile FILE, or check the host's spelling"
                .into(),
        )));
    }
    eprintln!("removed the credentials for {host} from {}", path.display());
    Ok(ExitCode::SUCCESS)
}

fn prompt_username() -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        return Err(anyhow::anyhow!("no user name was given")).context(Hint(
            "give it with -u USER (and the password on stdin with --password-stdin)".into(),
        ));
    }
    eprint!("Username: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the user name")?;
    let user = line.trim().to_string();
    if user.is_empty() {
        return Err(anyhow::anyhow!("no user name was given"))
            .context(Hint("give it with -u USER".into()));
    }
    Ok(user)
}

/// Asked on the terminal without echo.
fn prompt_password(user: &str) -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        return Err(anyhow::anyhow!("no password was given")).context(Hint(
            "pipe it in with --password-stdin, e.g. `printf '%s' \"$PASSWORD\" | wharf login -u USER --password-stdin HOST`"
                .into(),
        ));
    }
    let password = rpassword::prompt_password(format!("Password for {user}: "))
        .context("cannot read the password from the terminal")?;
    non_empty(password)
}

fn read_password_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    non_empty(password.to_string())
}

fn non_empty(password: String) -> anyhow::Result<String> {
    if password.is_empty() {
        return Err(anyhow::anyhow!("the password is empty")).context(Hint(
            "pipe the password in, e.g. `printf '%s' \"$PASSWORD\" | wharf login -u USER --password-stdin HOST`"
                .into(),
        ));
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_as_written() {
        assert_eq!(
            registry_host("https://localhost:5002/"),
            Some((Some("https"), "localhost:5002".into()))
        );
        assert_eq!(registry_host("r.example"), Some((None, "r.example".into())));
        assert_eq!(registry_host("r.example/team"), None);
        assert_eq!(registry_host(""), None);
    }

    #[test]
    fn authfile_flag_wins() {
        let given = PathBuf::from("/tmp/given.json");
        assert_eq!(auth_file_path(Some(&given)), given);
    }
}
