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
use wharf_client::Client;
use wharf_oci::{Reference, Target};
use wharf_transfer::{
    check_collisions, plan_jobs, DestinationMap, Events, ImageReport, Input, NoEvents, Options,
    TagSelection, Transfer,
};

use crate::commands::{read_image_list, runtime, Work};
use crate::exit::{usage, Hint};
use crate::flags::{
    self, DestCredentials, Jobs, Platforms, Quiet, RegistryNames, SourceCredentials, Trust,
};
use crate::output::{print_line, print_transfer, OutputArgs, Progress, TransferKind};

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
    /// Image to copy (registry.k8s.io/coredns/coredns:v1.11.3, alpine, name@sha256:…).
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// Destination registry (host[:port]) or full reference (host[:port]/repo[:tag]).
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

pub fn run_copy(args: CopyArgs) -> anyhow::Result<ExitCode> {
    let plan = copy_input(&args)?;
    run(TransferKind::Copy, &args.flags, plan)
}

pub fn run_sync(args: SyncArgs) -> anyhow::Result<ExitCode> {
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
}

/// `wharf copy SRC host/repo[:tag]`.
struct FixedDestination {
    reference: Reference,
    /// No tag was written: each image keeps its own.
    keep_tag: bool,
}

fn copy_input(args: &CopyArgs) -> anyhow::Result<Plan> {
    let mut input = Input::default();
    match Reference::parse_normalized(&args.source) {
        Ok((source, changed)) => {
            if changed {
                input
                    .notes
                    .push(format!("{}: read as {source}", args.source));
            }
            input.requests.push(wharf_transfer::Request {
                written: args.source.clone(),
                source,
                tags: TagSelection::Given,
                platforms: None,
            });
        }
        Err(e) => {
            return Err(usage(format!(
                "{}: not an image reference: {e}",
                args.source
            )))
        }
    }
    let dst = args.destination.trim().trim_end_matches('/');
    if !dst.contains('/') {
        return Ok(Plan {
            input,
            map: DestinationMap::new(dst, args.flags.flatten)
                .with_names(args.flags.names.registry_names.clone()),
            fixed: None,
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
    })
}

fn sync_input(args: &SyncArgs) -> anyhow::Result<Plan> {
    Ok(Plan {
        input: read_image_list(&args.input)?,
        map: DestinationMap::new(&args.to, args.flags.flatten)
            .with_names(args.flags.names.registry_names.clone()),
        fixed: None,
    })
}

fn client(
    flags: &TransferFlags,
    creds: Option<&wharf_client::Credential>,
    hosts: &BTreeSet<String>,
) -> anyhow::Result<Client> {
    flags::client(&flags.trust, creds, hosts)
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
    let src = client(flags, flags.src.src_creds.as_ref(), &sources)?;
    let dst = client(flags, flags.dest.dest_creds.as_ref(), &dests)?;
    let show_progress = !flags.quiet.quiet && std::io::stderr().is_terminal();
    let progress = show_progress.then(|| Arc::new(Progress::new()));

    let (mut jobs, mut failures, notes) =
        plan_jobs(&src, plan.input, &plan.map, flags.all_tags).await;
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
    let reports = Transfer::new(src, dst, options, events).run(jobs).await;
    if let Some(p) = &progress {
        p.finish();
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
