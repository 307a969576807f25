//! `wharf fsck`: check a registry's storage (a directory or an S3 bucket);
//! `--repair` fixes what it safely can.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wharf_storage::FsckReport;

use crate::commands::{runtime, Work};
use crate::exit::Hint;
use crate::flags::StorageArgs;
use crate::output::{self, Format, OutputArgs};
use crate::settings::Access;

#[derive(Debug, Args)]
pub struct FsckArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Move corrupt blobs to quarantine/, remove tags and repository links that point at nothing.
    #[arg(long)]
    pub repair: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn print_text(report: &FsckReport) -> std::io::Result<()> {
    let mut out = output::stdout();
    for p in &report.problems {
        let repo = p
            .repository
            .as_deref()
            .map(|r| format!("{r}: "))
            .unwrap_or_default();
        let done = if p.repaired { " (repaired)" } else { "" };
        writeln!(out, "{}: {repo}{}: {}{done}", p.kind, p.subject, p.detail)?;
    }
    writeln!(
        out,
        "checked {} blobs ({} bytes), {} repositories, {} tags, {} manifests: {} problem(s)",
        report.blobs_checked,
        report.bytes_checked,
        report.repositories_checked,
        report.tags_checked,
        report.manifests_checked,
        report.problems.len()
    )
}

pub fn run(args: FsckArgs) -> anyhow::Result<ExitCode> {
    let (_, storage) = args.storage.settings()?;
    let runtime = runtime(Work::Transfer)?;
    // Beside: a `wharf serve` may be writing to this storage; its uploads
    // in flight are not fsck's to delete.
    let store = runtime.block_on(storage.open(Access::Beside))?;
    let report = runtime
        .block_on(store.fsck(args.repair))
        .with_context(|| format!("the check of {} could not finish", storage.describe()))
        .context(Hint(
            "fix the storage error above and run fsck again".into(),
        ))?;
    match args.output.output {
        Format::Text => print_text(&report)?,
        Format::Json => output::print_json("fsck", serde_json::json!({ "report": report }))?,
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
