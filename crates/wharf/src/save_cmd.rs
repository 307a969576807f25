//! `wharf save`: images from their registries into one offline bundle that
//! `ctr images import`, `podman load`, `docker load` and `wharf load` read.
//! This module parses flags, draws progress and prints the summary; the
//! bundle is `wharf_bundle`'s.
//!
//! Exit codes: 0 the bundle was written, 1 it was not (each failed image
//! named; nothing is left under the bundle's name), 2 bad usage.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use wharf_bundle::{save, SaveOptions};
use wharf_oci::{PlatformSpec, Reference};
use wharf_transfer::{parse_list, Events, ImageReport, Input, NoEvents, DEFAULT_JOBS};

use crate::cli::Hint;
use crate::transfer_cmd::{
    client_reporter, print_line, print_outcome, read_input, registry_client, Output, Progress,
    Trust, Usage, EXIT_USAGE,
};

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Images: references, files listing one a line (`wharf images` output), or - for such a list on stdin.
    #[arg(value_name = "IMAGE|FILE|-")]
    pub images: Vec<String>,
    /// The bundle to write (.tar; .tar.zst compresses it with zstd).
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: PathBuf,
    /// Keep only this platform of multi-platform images (os/arch[/variant]); repeatable. Default: every platform.
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]")]
    pub platforms: Vec<String>,
    /// Leave out the blobs an earlier bundle has (a delta to load on top of it).
    #[arg(long, value_name = "BUNDLE")]
    pub since: Option<PathBuf>,
    /// Compress the bundle with zstd (implied by a .zst file name).
    #[arg(long)]
    pub zstd: bool,
    /// zstd compression level.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub zstd_level: i32,
    /// Also add an image of this wharf binary named REF (registry.home.arpa:5000/wharf/wharf[:TAG]; the tag defaults to this version), and write wharf-pod.yaml and wharf.service that start it by that name. With --ca-file, the image carries those CAs; else the Pod mounts the node's /etc/ssl/certs.
    #[arg(long = "self", value_name = "REF", num_args = 0..=1, default_missing_value = "")]
    pub self_name: Option<String>,
    /// Credentials for the source registries, as USER:PASS.
    #[arg(
        long,
        value_name = "USER:PASS",
        env = "WHARF_SRC_CREDS",
        hide_env_values = true
    )]
    pub src_creds: Option<String>,
    #[command(flatten)]
    pub trust: Trust,
    /// Images resolved, and blobs fetched ahead of the writer, at once.
    #[arg(long, short = 'j', value_name = "N", default_value_t = DEFAULT_JOBS)]
    pub jobs: usize,
    /// No progress on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Summary format on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

pub fn run(args: SaveArgs) -> anyhow::Result<ExitCode> {
    let (input, options) = match check(&args) {
        Ok(x) => x,
        Err(Usage(message)) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let runtime = crate::transfer_cmd::transfer_runtime()?;
    runtime.block_on(execute(&args, input, options))
}

fn check(args: &SaveArgs) -> Result<(Input, SaveOptions), Usage> {
    let platforms = args
        .platforms
        .iter()
        .map(|p| p.parse::<PlatformSpec>().map_err(|e| Usage(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if args.jobs == 0 {
        return Err(Usage("--jobs must be at least 1".into()));
    }
    if let Some(name) = &args.self_name {
        crate::self_image::image_name(Some(name)).map_err(|e| {
            Usage(format!(
                "--self: {e}\nhint: {}",
                crate::self_image::NAME_HINT
            ))
        })?;
    }
    if args.images.is_empty() && args.self_name.is_none() {
        return Err(Usage(
            "name the images to save (references, a list file, or - for stdin)".into(),
        ));
    }
    let mut input = Input::default();
    for arg in &args.images {
        let path = PathBuf::from(arg);
        let text = if arg == "-" || path.is_file() {
            read_input(&path)?
        } else {
            arg.clone()
        };
        let parsed = parse_list(&text);
        input.requests.extend(parsed.requests);
        input.failures.extend(parsed.failures);
        input.notes.extend(parsed.notes);
    }
    let compress = args.zstd
        || args
            .out
            .extension()
            .is_some_and(|e| e == "zst" || e == "zstd");
    Ok((
        input,
        SaveOptions {
            platforms,
            zstd_level: compress.then_some(args.zstd_level),
            since: None,
            jobs: args.jobs,
            extra: Vec::new(),
        },
    ))
}

async fn execute(
    args: &SaveArgs,
    input: Input,
    mut options: SaveOptions,
) -> anyhow::Result<ExitCode> {
    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let progress = show_progress.then(|| Arc::new(Progress::new()));
    for note in &input.notes {
        print_line(progress.as_deref(), &format!("note: {note}"));
    }
    if !input.failures.is_empty() {
        print_outcome("save", args.output, false, &input.failures, &input.notes)?;
        eprintln!("error: some images are not references; no bundle was written");
        return Ok(ExitCode::FAILURE);
    }
    if let Some(base) = &args.since {
        let blobs = tokio::task::block_in_place(|| wharf_bundle::blobs_of(base))
            .map_err(anyhow::Error::from)
            .context(Hint("--since takes a bundle written by wharf save".into()))?;
        let name = base.file_name().map_or_else(
            || base.display().to_string(),
            |n| n.to_string_lossy().to_string(),
        );
        options.since = Some((name, blobs.into_iter().collect()));
    }
    // The layer file lives until the bundle is written.
    let mut _self_layer = None;
    let self_name = match &args.self_name {
        Some(name) => Some(crate::self_image::image_name(Some(name)).map_err(anyhow::Error::msg)?),
        None => None,
    };
    if let Some(name) = &self_name {
        let dir = bundle_dir(&args.out);
        let (image, layer) = crate::self_image::build(&dir, name.clone(), &args.trust.ca_file)
            .context("cannot build the image of wharf itself")?;
        options.extra.push(image);
        _self_layer = Some(layer);
    }
    let names: Vec<Reference> = input.requests.into_iter().map(|r| r.source).collect();
    let hosts: BTreeSet<String> = names.iter().map(|n| n.host().to_string()).collect();
    let client = registry_client(&args.trust, args.src_creds.as_deref(), &hosts)?
        .with_reporter(client_reporter(progress.as_ref(), args.quiet));
    let events: Arc<dyn Events> = match &progress {
        Some(p) => p.clone(),
        None => Arc::new(NoEvents),
    };
    let extra_names: Vec<String> = options.extra.iter().map(|e| e.name.to_string()).collect();
    let outcome = save(&client, names, &args.out, options, events).await;
    if let Some(p) = &progress {
        p.finish();
    }
    let outcome = outcome
        .with_context(|| format!("cannot write {}", args.out.display()))
        .context(Hint(format!(
            "nothing was left under {}; check the space and permissions of its directory",
            args.out.display()
        )))?;
    let mut reports = outcome.reports;
    for name in extra_names {
        let mut r = ImageReport::new(name, Some(args.out.display().to_string()));
        r.notes
            .push("this wharf binary, built into an image".into());
        if outcome.written {
            reports.push(r);
        }
    }
    print_outcome("save", args.output, false, &reports, &[])?;
    if !outcome.written {
        eprintln!(
            "error: {} was not written: every image must be saved for a bundle to be complete",
            args.out.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    if let Some(name) = &self_name {
        let carries_ca = !args.trust.ca_file.is_empty();
        let written = crate::self_image::write_companions(&args.out, name, carries_ca)?;
        for path in written {
            eprintln!("wrote {}", path.display());
        }
    }
    eprintln!(
        "wrote {} ({})",
        args.out.display(),
        indicatif::HumanBytes(outcome.file_bytes)
    );
    Ok(ExitCode::SUCCESS)
}

/// The directory the bundle goes to.
pub(crate) fn bundle_dir(out: &Path) -> PathBuf {
    match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
