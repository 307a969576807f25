//! `wharf gc`: garbage collection with retention on a storage root or
//! bucket, safe to run next to `wharf serve` processes using the same one.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wharf_storage::{GcReport, Removed, Store};

use crate::cli::Hint;
use crate::config;
use crate::fsck_cmd::Output;

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Storage root [default: `[storage]` of --config (a directory or an S3 bucket), else ./wharf-data].
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Report what would be removed (manifests, blobs, uploads, bytes); remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// TOML configuration file: `[gc]` settings and `[[gc.retention]]` rules.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Report format on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

pub fn run(args: GcArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => config::load(path)?,
        None => config::FileConfig::default(),
    };
    let mut options = config::gc_options(&file)
        .context("invalid garbage collection settings")
        .context(Hint(
            "fix the [gc] or [cache] setting named above; durations look like \"30s\", \"24h\", \"30d\""
                .into(),
        ))?;
    options.dry_run = args.dry_run;
    let storage = config::storage_settings(args.root, file.storage)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let store = runtime.block_on(open_store(&storage))?;
    let report = runtime
        .block_on(store.gc(&options))
        .context("garbage collection stopped")
        .context(Hint(
            "nothing referenced was removed; fix the storage error above (`wharf fsck` checks the root) and run gc again".into(),
        ))?;
    match args.output {
        Output::Text => print_text(&report),
        Output::Json => {
            let doc = serde_json::json!({ "version": 1, "report": report });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The store `wharf serve` uses with the same settings, opened to run next
/// to it: a filesystem root shared (a server may be writing to it right now),
/// or the bucket, checked first.
async fn open_store(storage: &config::StorageSettings) -> anyhow::Result<Store> {
    match storage {
        config::StorageSettings::Filesystem { root } => {
            anyhow::ensure!(
                root.join(wharf_storage::layout::VERSION_KEY).exists(),
                "{} is not a wharf storage root (no {} file)",
                root.display(),
                wharf_storage::layout::VERSION_KEY
            );
            Store::open_fs_shared(root)
                .with_context(|| format!("cannot open storage at {}", root.display()))
        }
        config::StorageSettings::S3(s3) => {
            let what = s3.describe();
            let backend = wharf_storage_s3::S3Backend::open((**s3).clone())
                .await
                .map_err(|e| crate::serve::s3_failure(&what, e))?;
            Ok(Store::new(std::sync::Arc::new(backend)))
        }
    }
}

fn print_text(report: &GcReport) {
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
            println!(
                "would remove {} {repo}{}{tags}: {} bytes",
                o.kind, o.subject, o.bytes
            );
        }
    }
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let part = |r: Removed, what: &str| format!("{} {what} ({} bytes)", r.count, r.bytes);
    println!(
        "{verb} {}, {}, {}; {} link(s) dropped, {} blob(s) rescued by pushes; {:.1} s",
        part(report.manifests, "manifest(s)"),
        part(report.blobs, "blob(s)"),
        part(report.uploads, "upload(s)"),
        report.links,
        report.rescued,
        report.duration_seconds
    );
    if let Some(usage) = report.storage {
        println!(
            "storage now holds {} blob(s), {} bytes",
            usage.blobs, usage.bytes
        );
    }
}
