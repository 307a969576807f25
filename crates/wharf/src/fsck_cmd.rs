//! `wharf fsck`: check a storage root; `--repair` fixes what it safely can.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use wharf_storage::{FsckReport, Store};

use crate::cli::Hint;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Storage root to check.
    #[arg(long, value_name = "DIR", default_value = "./wharf-data")]
    pub root: PathBuf,
    /// Move corrupt blobs to quarantine/, remove tags and repository links that point at nothing.
    #[arg(long)]
    pub repair: bool,
    /// Report format on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

fn print_text(report: &FsckReport) {
    for p in &report.problems {
        let repo = p
            .repository
            .as_deref()
            .map(|r| format!("{r}: "))
            .unwrap_or_default();
        let done = if p.repaired { " (repaired)" } else { "" };
        println!("{}: {repo}{}: {}{done}", p.kind, p.subject, p.detail);
    }
    println!(
        "checked {} blobs ({} bytes), {} repositories, {} tags, {} manifests: {} problem(s)",
        report.blobs_checked,
        report.bytes_checked,
        report.repositories_checked,
        report.tags_checked,
        report.manifests_checked,
        report.problems.len()
    );
}

pub fn run(args: FsckArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.root.join(wharf_storage::layout::VERSION_KEY).exists(),
        "{} is not a wharf storage root (no {} file)",
        args.root.display(),
        wharf_storage::layout::VERSION_KEY
    );
    // Shared: a `wharf serve` may be writing to this root; its files in
    // flight under tmp/ are not fsck's to delete.
    let store = Store::open_fs_shared(&args.root)
        .with_context(|| format!("cannot open storage at {}", args.root.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let report = runtime
        .block_on(store.fsck(args.repair))
        .context("the check could not finish")
        .context(Hint(
            "fix the storage error above and run fsck again".into(),
        ))?;
    match args.output {
        Output::Text => print_text(&report),
        Output::Json => {
            let doc = serde_json::json!({ "version": 1, "report": report });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
