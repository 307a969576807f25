//! `wharf copy` and `wharf sync`: copy images into a registry, digest for
//! digest. This module plans what goes where and runs it; the copying is
//! `wharf_transfer`'s, the summary `output`'s.
//!
//! Exit codes: 0 every image copied (or up to date), 1 some failed (each
//! named on one line; the others were still copied), 2 bad usage.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use wharf_bundle::{write_layout, FileImage, OpenedImage, Transport, TRANSPORTS};
use wharf_client::Client;
use wharf_oci::{Reference, Target};
use wharf_transfer::{
    check_collisions, plan_jobs, DestinationMap, Events, ImageJob, ImageReport, Input, NoEvents,
    Options, Source, TagSelection, Transfer,
};

use crate::commands::{read_image_list, runtime, Work};
use crate::exit::{usage, Hint};
use crate::flags::{
    self, DestCredentials, Jobs, Platforms, Quiet, RegistryNames, SourceCredentials, Trust,
};
use crate::output::{
    client_reporter, print_line, print_transfer, OutputArgs, Progress, TransferKind,
};

/// Flags shared by `copy` and `sync`.
#[derive(Debug, Args)]
pub struct TransferFlags {
    #[command(flatten)]
    pub src: SourceCredentials,
    #[command(flatten)]
    pub dest: DestCredentials,
    #[command(flatten)]
    pub trust: Trust,
    #[command(flatten)]
    pub jobs: Jobs,
    #[command(flatten)]
    pub platforms: Platforms,
    /// Drop the source registry from destination paths (registry.k8s.io/pause → <dst>/pause).
    #[arg(long)]
    pub flatten: bool,
    #[command(flatten)]
    pub names: RegistryNames,
    /// Copy every tag of each repository.
    #[arg(long)]
    pub all_tags: bool,
    /// Also copy signatures, SBOMs and other artifacts that refer to each image.
    #[arg(long)]
    pub referrers: bool,
    /// Print what would be copied; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub quiet: Quiet,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Image to copy: a reference (registry.k8s.io/coredns/coredns:v1.11.3, alpine, name@sha256:…, docker://…), or a file as skopeo writes it: oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:REF] (REF: the name or tag the image is listed under, or @N).
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// Destination registry (host[:port]) or full reference (host[:port]/repo[:tag]), optionally as docker://….
    #[arg(value_name = "DESTINATION")]
    pub destination: String,
    #[command(flatten)]
    pub flags: TransferFlags,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Destination registry, host[:port].
    #[arg(long = "to", value_name = "HOST[:PORT]", value_parser = flags::registry_host)]
    pub to: String,
    #[command(flatten)]
    pub flags: TransferFlags,
    /// A list of images (one a line, # comments), a TOML sync file (*.toml), or - for stdin.
    #[arg(value_name = "FILE")]
    pub input: PathBuf,
}

pub fn run_copy(mut args: CopyArgs) -> anyhow::Result<ExitCode> {
    args.flags.trust.take_scheme(&mut args.source);
    args.flags.trust.take_scheme(&mut args.destination);
    let plan = copy_input(&args)?;
    run(TransferKind::Copy, &args.flags, plan)
}

pub fn run_sync(mut args: SyncArgs) -> anyhow::Result<ExitCode> {
    args.flags.trust.take_scheme(&mut args.to);
    let plan = sync_input(&args)?;
    run(TransferKind::Sync, &args.flags, plan)
}

fn run(kind: TransferKind, flags: &TransferFlags, plan: Plan) -> anyhow::Result<ExitCode> {
    let options = Options {
        jobs: flags.jobs.jobs,
        platforms: flags.platforms.selected(),
        referrers: flags.referrers,
        dry_run: flags.dry_run,
    };
    runtime(Work::Transfer)?.block_on(execute(kind, flags, options, plan))
}

/// What to copy and where, from the command line.
struct Plan {
    input: Input,
    map: DestinationMap,
    /// `wharf copy` to a full reference: the one destination.
    fixed: Option<FixedDestination>,
    /// `wharf copy` from a layout or archive (`input` is then empty): the
    /// source as written, and what it names.
    file: Option<(String, Transport)>,
    /// `wharf copy SRC oci:DIR[:REF]`: the layout written instead of a
    /// registry (`map` and `fixed` are then unused).
    to_layout: Option<(String, FileImage)>,
}

/// `wharf copy SRC host/repo[:tag]`.
struct FixedDestination {
    reference: Reference,
    /// No tag was written: each image keeps its own.
    keep_tag: bool,
}

fn copy_input(args: &CopyArgs) -> anyhow::Result<Plan> {
    let transport = Transport::parse(&args.source).map_err(|e| usage(e.to_string()))?;
    let mut input = Input::default();
    let file = match transport {
        Transport::Registry(written) => {
            let request = registry_request(&written)?;
            if request.written != request.source.to_string() {
                input
                    .notes
                    .push(format!("{}: read as {}", request.written, request.source));
            }
            input.requests.push(request);
            None
        }
        file if args.flags.all_tags => {
            return Err(usage(format!(
                "--all-tags lists the tags of a registry; {} is read with the {} transport: copy its images one at a time (SOURCE:REF)",
                args.source,
                file.name()
            )))
        }
        file => Some((args.source.clone(), file)),
    };
    let dst = args.destination.trim().trim_end_matches('/');
    let dst = dst.strip_prefix("docker://").unwrap_or(dst);
    if let Some(layout) = layout_destination(dst, &args.flags)? {
        return Ok(Plan {
            input,
            map: DestinationMap::new("localhost", true),
            fixed: None,
            file,
            to_layout: Some((dst.to_string(), layout)),
        });
    }
    if !dst.contains('/') {
        return Ok(Plan {
            input,
            map: DestinationMap::new(dst, args.flags.flatten)
                .with_names(args.flags.names.registry_names.clone()),
            fixed: None,
            file,
            to_layout: None,
        });
    }
    let reference: Reference = dst
        .parse()
        .map_err(|e| usage(format!("{dst}: not a registry or image reference: {e}")))?;
    let last = dst.rsplit('/').next().unwrap_or(dst);
    let keep_tag = !last.contains(':') && !last.contains('@');
    if args.flags.all_tags && !keep_tag {
        return Err(usage(format!(
            "--all-tags copies every tag: give the destination without one ({})",
            reference.repository()
        )));
    }
    Ok(Plan {
        input,
        map: DestinationMap::new(reference.host(), true),
        fixed: Some(FixedDestination {
            keep_tag,
            reference,
        }),
        file,
        to_layout: None,
    })
}

/// A registry reference as written (`docker://` already dropped).
fn registry_request(written: &str) -> anyhow::Result<wharf_transfer::Request> {
    let (source, _) = Reference::parse_normalized(written).map_err(|e| {
        usage(format!(
            "{written}: not an image reference: {e} (a file is read with one of {TRANSPORTS})"
        ))
    })?;
    Ok(wharf_transfer::Request {
        written: written.to_string(),
        source,
        tags: TagSelection::Given,
        platforms: None,
    })
}

fn sync_input(args: &SyncArgs) -> anyhow::Result<Plan> {
    Ok(Plan {
        input: read_image_list(&args.input)?,
        map: DestinationMap::new(&args.to, args.flags.flatten)
            .with_names(args.flags.names.registry_names.clone()),
        fixed: None,
        file: None,
        to_layout: None,
    })
}

async fn execute(
    kind: TransferKind,
    flags: &TransferFlags,
    options: Options,
    plan: Plan,
) -> anyhow::Result<ExitCode> {
    let sources: BTreeSet<String> = plan
        .input
        .requests
        .iter()
        .map(|r| r.source.host().to_string())
        .collect();
    let dests = BTreeSet::from([plan.map.registry.clone()]);
    if plan.to_layout.is_some() {
        // No bars are drawn there: retries and redirects are lines on stderr.
        let src = flags::client(&flags.trust, flags.src.src_creds.as_ref(), &sources)?
            .with_reporter(client_reporter(None, flags.quiet.quiet));
        return copy_to_layout(kind, flags, options, plan, src).await;
    }
    let show_progress = !flags.quiet.quiet && std::io::stderr().is_terminal();
    let progress = show_progress.then(|| Arc::new(Progress::new()));
    let reporter = client_reporter(progress.as_ref(), flags.quiet.quiet);
    let src = flags::client(&flags.trust, flags.src.src_creds.as_ref(), &sources)?
        .with_reporter(reporter.clone());
    let dst = flags::client(&flags.trust, flags.dest.dest_creds.as_ref(), &dests)?
        .with_reporter(reporter);

    let (source, mut jobs, mut failures, notes): (Arc<dyn Source>, _, _, _) = match &plan.file {
        Some((written, transport)) => {
            let (source, job) = file_job(written, transport, &plan, flags.quiet.quiet).await?;
            (source, vec![job], Vec::new(), plan.input.notes)
        }
        None => {
            let (jobs, failures, notes) =
                plan_jobs(&src, plan.input, &plan.map, flags.all_tags).await;
            (Arc::new(src), jobs, failures, notes)
        }
    };
    if let Some(fixed) = &plan.fixed {
        for job in &mut jobs {
            job.destination = fixed_destination(fixed, &job.source);
        }
    }
    for note in &notes {
        print_line(progress.as_deref(), &format!("note: {note}"));
    }
    let landing = jobs.iter().map(|j| (&j.source, &j.destination, None));
    if let Err(e) = check_collisions(landing) {
        return Err(usage(e.to_string())).context(Hint(
            "a --registry-name maps an image of that registry onto its plain path; drop the name, or one of the images".into(),
        ));
    }
    let events: Arc<dyn Events> = match &progress {
        Some(p) => p.clone(),
        None => Arc::new(NoEvents),
    };
    let mut reports = Transfer::from_source(source, dst, options, events)
        .run(jobs)
        .await;
    if let Some(p) = &progress {
        p.finish();
    }
    if let (Some((written, _)), Some(report)) = (&plan.file, reports.first_mut()) {
        // Name the image as the user wrote it, not by its name inside the file.
        report.source = written.clone();
    }
    failures.extend(reports);
    let reports = failures;
    print_transfer(kind, flags.output.output, flags.dry_run, &reports, &notes)?;
    let failed = reports.iter().any(ImageReport::is_failed);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Open the layout or archive `written` names (an archive is verified in
/// full first) and the one job that copies its image.
async fn file_job(
    written: &str,
    transport: &Transport,
    plan: &Plan,
    quiet: bool,
) -> anyhow::Result<(Arc<dyn Source>, ImageJob)> {
    let opened = open_file(written, transport, quiet).await?;
    let destination = match (&plan.fixed, &opened.name) {
        (Some(fixed), _) => fixed_destination(fixed, &opened.reference),
        (None, Some(_)) => plan.map.map(&opened.reference)?,
        (None, None) => {
            return Err(anyhow::anyhow!(
                "{written}: the image has no name to keep at {}",
                plan.map.registry
            )
            .context(Hint(format!(
            "nothing was copied; give the destination in full: wharf copy {written} {}/REPO:TAG",
            plan.map.registry
        ))))
        }
    };
    Ok((opened.source, ImageJob::new(opened.reference, destination)))
}

/// Open the layout or archive `written` names (an archive is verified in
/// full first) and pick its image.
async fn open_file(
    written: &str,
    transport: &Transport,
    quiet: bool,
) -> anyhow::Result<OpenedImage> {
    if !quiet {
        eprintln!("reading {written}");
    }
    let opening = transport.clone();
    tokio::task::spawn_blocking(move || opening.open(None))
        .await
        .context("reading the source failed")?
        .map_err(anyhow::Error::from)
        .with_context(|| {
            Hint(format!(
                "nothing was copied; check the path and REF: {written} is read with the {} transport (one of {TRANSPORTS})",
                transport.name()
            ))
        })?
        .context("a registry source has no file to open")
}

/// `oci:DIR[:REF]` as the destination; other file transports are refused
/// (`wharf save` writes archives).
fn layout_destination(dst: &str, flags: &TransferFlags) -> anyhow::Result<Option<FileImage>> {
    let layout = match Transport::parse(dst).map_err(|e| usage(e.to_string()))? {
        Transport::Registry(_) => return Ok(None),
        Transport::OciLayout(layout) => layout,
        other => {
            return Err(usage(format!(
                "{dst}: copy writes to a registry or an oci:DIR[:REF] layout, not to {}: (wharf save writes archives)",
                other.name()
            )))
        }
    };
    for (given, flag) in [
        (flags.all_tags, "--all-tags"),
        (flags.dry_run, "--dry-run"),
        (flags.referrers, "--referrers"),
    ] {
        if given {
            return Err(usage(format!(
                "{flag} is for a registry destination, not {dst}"
            )));
        }
    }
    Ok(Some(layout))
}

/// `wharf copy SRC oci:DIR[:REF]`: the image (its platforms as chosen)
/// written into the layout, listed under REF, else its own tag.
async fn copy_to_layout(
    kind: TransferKind,
    flags: &TransferFlags,
    options: Options,
    plan: Plan,
    src: Client,
) -> anyhow::Result<ExitCode> {
    let (written, layout) = plan.to_layout.expect("a layout destination");
    let (source, reference, shown): (Arc<dyn Source>, Reference, String) = match &plan.file {
        Some((text, transport)) => {
            let opened = open_file(text, transport, flags.quiet.quiet).await?;
            (opened.source, opened.reference, text.clone())
        }
        None => {
            let request = plan.input.requests.first().context("no source image")?;
            (
                Arc::new(src),
                request.source.clone(),
                request.written.clone(),
            )
        }
    };
    let ref_name = layout
        .reference
        .clone()
        .or_else(|| reference.tag().map(ToString::to_string));
    let mut report = ImageReport::new(shown, Some(written.clone()));
    match write_layout(
        source.as_ref(),
        &reference,
        &options.platforms,
        &layout.path,
        ref_name.as_deref(),
    )
    .await
    {
        Ok(top) => report.digest = Some(top.digest),
        Err(e) => report.fail("layout", e.to_string()),
    }
    let reports = vec![report];
    print_transfer(
        kind,
        flags.output.output,
        false,
        &reports,
        &plan.input.notes,
    )?;
    Ok(if reports.iter().any(ImageReport::is_failed) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn fixed_destination(fixed: &FixedDestination, source: &Reference) -> Reference {
    let d = &fixed.reference;
    if !fixed.keep_tag {
        return d.clone();
    }
    let target = source
        .tag()
        .map(|t| Target::Tag(t.clone()))
        .unwrap_or_else(|| source.target());
    Reference::new(d.host(), d.repository().clone(), target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Copy {
        #[command(flatten)]
        args: CopyArgs,
    }

    fn args(argv: &[&str]) -> CopyArgs {
        Copy::try_parse_from(std::iter::once("copy").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn copy_destinations() {
        let plan = copy_input(&args(&["alpine:3.20", "registry.home.arpa:5000"])).unwrap();
        assert!(plan.fixed.is_none());
        assert_eq!(plan.input.notes.len(), 1, "alpine is normalised");
        let plan = copy_input(&args(&["alpine:3.20", "127.0.0.1:5000/mine/alpine"])).unwrap();
        let fixed = plan.fixed.unwrap();
        assert!(fixed.keep_tag);
        let source: Reference = "docker.io/library/alpine:3.20".parse().unwrap();
        assert_eq!(
            fixed_destination(&fixed, &source).to_string(),
            "127.0.0.1:5000/mine/alpine:3.20"
        );
        let bad = copy_input(&args(&["alpine:3.20", "127.0.0.1:5000/Bad Name"]));
        assert!(bad
            .err()
            .unwrap()
            .downcast_ref::<crate::exit::Usage>()
            .is_some());
    }

    #[test]
    fn file_transports_are_planned_as_files_and_docker_prefixes_dropped() {
        let plan = copy_input(&args(&[
            "oci-archive:a.tar:v1",
            "docker://127.0.0.1:5000/x/y",
        ]))
        .unwrap();
        assert!(plan.input.requests.is_empty());
        let (written, transport) = plan.file.expect("a file source");
        assert_eq!(written, "oci-archive:a.tar:v1");
        assert_eq!(transport.name(), "oci-archive");
        assert_eq!(
            plan.fixed.unwrap().reference.to_string(),
            "127.0.0.1:5000/x/y:latest"
        );
        let plan = copy_input(&args(&["docker://alpine:3.20", "127.0.0.1:5000"])).unwrap();
        assert!(plan.file.is_none());
        assert_eq!(
            plan.input.requests[0].source.to_string(),
            "docker.io/library/alpine:3.20"
        );
        let e = copy_input(&args(&["oci:dir", "127.0.0.1:5000", "--all-tags"]))
            .err()
            .unwrap();
        assert!(e.downcast_ref::<crate::exit::Usage>().is_some(), "{e}");
        assert!(e.to_string().contains("oci transport"), "{e}");
    }

    #[test]
    fn all_tags_needs_a_destination_without_a_tag() {
        let e = copy_input(&args(&[
            "alpine",
            "127.0.0.1:5000/mine/alpine:1",
            "--all-tags",
        ]))
        .err()
        .unwrap();
        assert!(e.to_string().contains("--all-tags"), "{e}");
    }
}
