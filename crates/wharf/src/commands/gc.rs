//! `wharf gc`: garbage collection with retention on a storage root or
//! bucket, safe to run next to `wharf serve` processes using the same one.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wharf_storage::{GcReport, Removed};

use crate::commands::{runtime, Work};
use crate::exit::Hint;
use crate::flags::StorageArgs;
use crate::output::{self, Format, OutputArgs};
use crate::settings::{self, Access};

#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Report what would be removed (manifests, blobs, uploads, bytes); remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(args: GcArgs) -> anyhow::Result<ExitCode> {
    let (file, storage) = args.storage.settings()?;
    let mut options = settings::gc_options(&file)
        .context("invalid garbage collection settings")
        .context(Hint(
            "fix the [gc] or [cache] setting named above; durations look like \"30s\", \"24h\", \"30d\""
                .into(),
        ))?;
    options.dry_run = args.dry_run;
    let runtime = runtime(Work::Transfer)?;
    let store = runtime.block_on(storage.open(Access::Beside))?;
    let report = runtime
        .block_on(store.gc(&options))
        .context("garbage collection stopped")
        .context(Hint(
            "nothing referenced was removed; fix the storage error above (`wharf fsck` checks the storage) and run gc again".into(),
        ))?;
    match args.output.output {
        Format::Text => print_text(&report)?,
        Format::Json => output::print_json("gc", serde_json::json!({ "report": report }))?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(report: &GcReport) -> std::io::Result<()> {
    let mut out = output::stdout();
    if report.dry_run {
        for o in &report.removed {
            let repo = o
                .repository
                .as_deref()
                .map(|r| format!("{r}@"))
                .unwrap_or_default();
            let tags = if o.tags.is_empty() {
                String::new()
            } else {
                format!(" (tags: {})", o.tags.join(", "))
            };
            writeln!(
                out,
                "would remove {} {repo}{}{tags}: {} bytes",
                o.kind, o.subject, o.bytes
            )?;
        }
    }
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let part = |r: Removed, what: &str| format!("{} {what} ({} bytes)", r.count, r.bytes);
    writeln!(
        out,
        "{verb} {}, {}, {}; {} link(s) dropped, {} blob(s) rescued by pushes; {:.1} s",
        part(report.manifests, "manifest(s)"),
        part(report.blobs, "blob(s)"),
        part(report.uploads, "upload(s)"),
        report.links,
        report.rescued,
        report.duration_seconds
    )?;
    if let Some(usage) = report.storage {
        writeln!(
            out,
            "storage now holds {} blob(s), {} bytes",
            usage.blobs, usage.bytes
        )?;
    }
    Ok(())
}
