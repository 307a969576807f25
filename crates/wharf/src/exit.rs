//! How a command ends. Every command returns `anyhow::Result<ExitCode>`;
//! [`finish`] is the one place that turns an error into a message on stderr
//! and an exit code:
//!
//! - 0: success, and also a closed stdout (`wharf images … | head -1`): the
//!   reader had what it wanted;
//! - 1: the command failed ([`report`] prints `error: …` and any `hint: …`);
//! - 2: bad usage: a [`Usage`] error, or clap's own.

use std::process::ExitCode;

/// Exit code of a command line that does not make sense, as clap's own.
pub const EXIT_USAGE: u8 = 2;

/// A next step to print under an error (`hint: …`); attach it with
/// `.context(Hint(…))`.
#[derive(Debug)]
pub struct Hint(pub String);

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Hint {}

/// A problem with the command line itself: exit code 2.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A usage error as an `anyhow::Error`, to return with `Err(…)` or `?`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Usage(message.into()).into()
}

/// The exit code of a command's outcome; errors are reported on stderr.
pub fn finish(outcome: anyhow::Result<ExitCode>) -> ExitCode {
    match outcome {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::from(exit_code(&e))
        }
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    // `downcast_ref` sees context layers too; `chain` sees the causes.
    if e.downcast_ref::<Usage>().is_some() || e.chain().any(|c| c.is::<Usage>()) {
        EXIT_USAGE
    } else {
        1
    }
}

/// The reader of stdout went away: what was written was all it wanted.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `error: what failed: why`, then a blank line and `hint: what to do` when
/// the error carries a [`Hint`].
pub fn report(e: &anyhow::Error) {
    let hint = e.downcast_ref::<Hint>().map(|h| h.0.clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn usage_errors_exit_2_even_under_context() {
        let e = Err::<(), _>(usage("--to: expected host[:port]"))
            .context(Hint("give a registry".into()))
            .unwrap_err();
        assert_eq!(exit_code(&e), EXIT_USAGE);
        assert_eq!(exit_code(&anyhow::anyhow!("registry unreachable")), 1);
    }

    #[test]
    fn usage_as_context_exits_2() {
        let e = anyhow::anyhow!("two images land on one name").context(Usage("refused".into()));
        assert_eq!(exit_code(&e), EXIT_USAGE);
    }

    #[test]
    fn a_closed_stdout_is_success() {
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let e = anyhow::Error::from(pipe).context("cannot write the report");
        assert!(is_broken_pipe(&e));
        assert_eq!(finish(Err(e)), ExitCode::SUCCESS);
        let other = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(!is_broken_pipe(&other));
    }
}
