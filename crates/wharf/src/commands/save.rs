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
use wharf_oci::Reference;
use wharf_transfer::{parse_list, Events, ImageReport, Input, NoEvents};

use crate::commands::{read_input, runtime, Work};
use crate::exit::{usage, Hint};
use crate::flags::{self, Jobs, Platforms, Quiet, SourceCredentials, Trust};
use crate::output::{print_line, print_transfer, Format, Progress, TransferKind};

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Images: references, files listing one a line (`wharf images` output), or - for such a list on stdin.
    #[arg(value_name = "IMAGE|FILE|-")]
    pub images: Vec<String>,
    /// The bundle to write (.tar; .tar.zst compresses it with zstd), as with `docker save -o`.
    #[arg(short = 'o', long = "output", alias = "out", value_name = "FILE", required = true, action = clap::ArgAction::Append)]
    pub output: Vec<PathBuf>,
    /// Report format on stdout.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    #[command(flatten)]
    pub platforms: Platforms,
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
    #[command(flatten)]
    pub src: SourceCredentials,
    #[command(flatten)]
    pub trust: Trust,
    #[command(flatten)]
    pub jobs: Jobs,
    #[command(flatten)]
    pub quiet: Quiet,
}

/// Where the bundle goes and how the report is printed, from `-o`/`--output`
/// and `--format`. Before `--output` named the file, it named the report
/// format (`--out FILE --output json`); that spelling still works, with a
/// warning, for one release.
#[derive(Debug, PartialEq)]
struct Destination {
    bundle: PathBuf,
    format: Format,
    warning: Option<String>,
}

fn destination(args: &SaveArgs) -> anyhow::Result<Destination> {
    let is_format = |p: &PathBuf| matches!(p.to_str(), Some("text" | "json"));
    match args.output.as_slice() {
        [bundle] => Ok(Destination {
            bundle: bundle.clone(),
            format: args.format.unwrap_or_default(),
            warning: None,
        }),
        [a, b] if is_format(a) != is_format(b) && args.format.is_none() => {
            let (format, bundle) = if is_format(a) { (a, b) } else { (b, a) };
            let format = if format.to_str() == Some("json") {
                Format::Json
            } else {
                Format::Text
            };
            Ok(Destination {
                bundle: bundle.clone(),
                format,
                warning: Some(format!(
                    "--output {} names the report format in the old spelling; use --format {0} (--output names the bundle, as in docker save)",
                    if format == Format::Json { "json" } else { "text" }
                )),
            })
        }
        _ => Err(usage(
            "give the bundle once: -o/--output FILE (the report format is --format text|json)",
        )),
    }
}

pub fn run(args: SaveArgs) -> anyhow::Result<ExitCode> {
    let to = destination(&args)?;
    if let Some(warning) = &to.warning {
        eprintln!("warning: {warning}");
    }
    let (input, options) = check(&args, &to.bundle)?;
    runtime(Work::Transfer)?.block_on(execute(&args, &to, input, options))
}

fn check(args: &SaveArgs, bundle: &Path) -> anyhow::Result<(Input, SaveOptions)> {
    if let Some(name) = &args.self_name {
        crate::self_image::image_name(Some(name))
            .map_err(|e| usage(format!("--self: {e}")))
            .context(Hint(crate::self_image::NAME_HINT.into()))?;
    }
    if args.images.is_empty() && args.self_name.is_none() {
        return Err(usage(
            "name the images to save (references, a list file, or - for stdin)",
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
        || bundle
            .extension()
            .is_some_and(|e| e == "zst" || e == "zstd");
    Ok((
        input,
        SaveOptions {
            platforms: args.platforms.selected(),
            zstd_level: compress.then_some(args.zstd_level),
            since: None,
            jobs: args.jobs.jobs,
            extra: Vec::new(),
        },
    ))
}

async fn execute(
    args: &SaveArgs,
    to: &Destination,
    input: Input,
    mut options: SaveOptions,
) -> anyhow::Result<ExitCode> {
    let show_progress = !args.quiet.quiet && std::io::stderr().is_terminal();
    let progress = show_progress.then(|| Arc::new(Progress::new()));
    for note in &input.notes {
        print_line(progress.as_deref(), &format!("note: {note}"));
    }
    if !input.failures.is_empty() {
        let kind = TransferKind::Save { written: false };
        print_transfer(kind, to.format, false, &input.failures, &input.notes)?;
        anyhow::bail!("some images are not references; no bundle was written");
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
        let dir = crate::self_image::bundle_dir(&to.bundle);
        let (image, layer) = crate::self_image::build(&dir, name.clone(), &args.trust.ca_file)
            .context("cannot build the image of wharf itself")?;
        options.extra.push(image);
        _self_layer = Some(layer);
    }
    let names: Vec<Reference> = input.requests.into_iter().map(|r| r.source).collect();
    let hosts: BTreeSet<String> = names.iter().map(|n| n.host().to_string()).collect();
    let client = flags::client(&args.trust, args.src.src_creds.as_ref(), &hosts)?;
    let events: Arc<dyn Events> = match &progress {
        Some(p) => p.clone(),
        None => Arc::new(NoEvents),
    };
    let extra_names: Vec<String> = options.extra.iter().map(|e| e.name.to_string()).collect();
    let outcome = save(&client, names, &to.bundle, options, events).await;
    if let Some(p) = &progress {
        p.finish();
    }
    let outcome = outcome
        .with_context(|| format!("cannot write {}", to.bundle.display()))
        .context(Hint(format!(
            "nothing was left under {}; check the space and permissions of its directory",
            to.bundle.display()
        )))?;
    let mut reports = outcome.reports;
    for name in extra_names {
        let mut r = ImageReport::new(name, Some(to.bundle.display().to_string()));
        r.notes
            .push("this wharf binary, built into an image".into());
        if outcome.written {
            reports.push(r);
        }
    }
    let kind = TransferKind::Save {
        written: outcome.written,
    };
    print_transfer(kind, to.format, false, &reports, &[])?;
    if !outcome.written {
        anyhow::bail!(
            "{} was not written: every image must be saved for a bundle to be complete",
            to.bundle.display()
        );
    }
    if let Some(name) = &self_name {
        let carries_ca = !args.trust.ca_file.is_empty();
        let written = crate::self_image::write_companions(&to.bundle, name, carries_ca)?;
        for path in written {
            eprintln!("wrote {}", path.display());
        }
    }
    eprintln!(
        "wrote {} ({})",
        to.bundle.display(),
        indicatif::HumanBytes(outcome.file_bytes)
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Save {
        #[command(flatten)]
        args: SaveArgs,
    }

    fn parse(argv: &[&str]) -> Result<Destination, String> {
        let args = Save::try_parse_from(std::iter::once("save").chain(argv.iter().copied()))
            .map_err(|e| e.to_string())?
            .args;
        destination(&args).map_err(|e| e.to_string())
    }

    #[test]
    fn output_names_the_bundle_as_in_docker_save() {
        for flag in ["-o", "--output", "--out"] {
            let d = parse(&["alpine", flag, "b.tar"]).unwrap();
            assert_eq!(d.bundle, PathBuf::from("b.tar"));
            assert_eq!(d.format, Format::Text);
            assert!(d.warning.is_none());
        }
        let d = parse(&["alpine", "-o", "b.tar", "--format", "json"]).unwrap();
        assert_eq!(d.format, Format::Json);
    }

    #[test]
    fn the_old_spelling_still_works_with_a_warning() {
        let d = parse(&["alpine", "--out", "b.tar", "--output", "json"]).unwrap();
        assert_eq!(d.bundle, PathBuf::from("b.tar"));
        assert_eq!(d.format, Format::Json);
        assert!(d.warning.unwrap().contains("--format json"));
        assert!(parse(&["alpine", "-o", "a.tar", "-o", "b.tar"]).is_err());
        assert!(parse(&["alpine"]).is_err(), "the bundle is required");
    }
}
