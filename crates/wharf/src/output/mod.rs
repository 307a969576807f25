//! Everything a command prints on stdout goes through here: one
//! `--output text|json` flag, one versioned JSON envelope, aligned tables,
//! the transfer commands' summaries, and progress on stderr.
//!
//! Writes return `io::Result` instead of panicking like `println!`: a reader
//! that closes the pipe early (`wharf images … | head -1`) ends the command
//! with [`crate::exit::finish`]'s exit code 0.

mod progress;
mod table;
mod transfer;

use std::io::Write;

use clap::{Args, ValueEnum};

pub use progress::{print_line, Progress};
pub use table::Table;
pub use transfer::{print_transfer, TransferKind};

/// Version of every JSON document wharf prints. It changes only when a
/// field is removed or changes meaning; added fields keep it.
pub const JSON_VERSION: u32 = 1;

/// How a report is printed on stdout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people: lines and tables.
    #[default]
    Text,
    /// For programs: one JSON document, `{"version": 1, "command": …, …}`.
    Json,
}

/// `--output text|json`, the flag of every command that prints a report.
#[derive(Debug, Clone, Copy, Args)]
pub struct OutputArgs {
    /// Report format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

/// Lines to stdout, for reports in text form.
pub fn stdout() -> std::io::StdoutLock<'static> {
    std::io::stdout().lock()
}

/// One line of text on stdout.
pub fn line(text: impl std::fmt::Display) -> std::io::Result<()> {
    writeln!(stdout(), "{text}")
}

/// The JSON envelope: `payload`'s fields after `version` and `command`.
pub fn envelope(command: &str, payload: serde_json::Value) -> serde_json::Value {
    let mut doc = serde_json::Map::new();
    doc.insert("version".into(), JSON_VERSION.into());
    doc.insert("command".into(), command.into());
    match payload {
        serde_json::Value::Object(fields) => doc.extend(fields),
        other => {
            doc.insert("report".into(), other);
        }
    }
    serde_json::Value::Object(doc)
}

/// `command`'s report as one pretty-printed JSON document on stdout.
pub fn print_json(command: &str, payload: serde_json::Value) -> std::io::Result<()> {
    let mut out = stdout();
    serde_json::to_writer_pretty(&mut out, &envelope(command, payload))?;
    writeln!(out)
}

/// `sha256:0123456789ab`: enough to recognise, short enough for a table.
pub fn short_digest(d: &str) -> String {
    d.chars().take("sha256:".len() + 12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_leads_with_version_and_command() {
        let doc = envelope("gc", serde_json::json!({"report": {"blobs": 3}}));
        assert_eq!(doc["version"], JSON_VERSION);
        assert_eq!(doc["command"], "gc");
        assert_eq!(doc["report"]["blobs"], 3);
        let wrapped = envelope("fsck", serde_json::json!([1, 2]));
        assert_eq!(wrapped["report"], serde_json::json!([1, 2]));
    }

    #[test]
    fn output_flag_parses_both_formats_and_refuses_others() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cmd {
            #[command(flatten)]
            output: OutputArgs,
        }
        let parse =
            |args: &[&str]| Cmd::try_parse_from(std::iter::once("x").chain(args.iter().copied()));
        assert_eq!(parse(&[]).unwrap().output.output, Format::Text);
        assert_eq!(
            parse(&["--output", "json"]).unwrap().output.output,
            Format::Json
        );
        assert!(parse(&["--output", "yaml"]).is_err());
    }
}
