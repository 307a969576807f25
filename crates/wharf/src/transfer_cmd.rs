//! `wharf copy` and `wharf sync`: copy images into a registry, digest for
//! digest. This module parses flags, draws progress, prints the summary and
//! maps outcomes to exit codes; the copying is `wharf_transfer`'s.
//!
//! Exit codes: 0 every image copied (or up to date), 1 some failed (each
//! named on one line; the others were still copied), 2 bad usage.

use std::collections::{BTreeSet, HashMap};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use wharf_client::{Client, ClientConfig, Credential, CredentialSources};
use wharf_bundle::{Transport, TRANSPORTS};
use wharf_oci::{Reference, Target};
use wharf_transfer::{
    check_collisions, parse_list, parse_sync_file, plan_jobs, DestinationMap, Events, ImageJob,
    ImageReport, Input, NoEvents, Options, PlatformSpec, Source, Status, TagSelection, Transfer,
    DEFAULT_JOBS, REPORT_VERSION,
};

use crate::cli::Hint;

/// Exit code for invalid arguments, matching clap's own usage errors.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Largest list or sync file read (a list of references is small).
const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Flags shared by `copy` and `sync`.
/// How registries are reached: the flags every command that talks to
/// registries shares.
#[derive(Debug, Args)]
pub struct Trust {
    /// Registry spoken to over plain HTTP (loopback always is); repeatable.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure: Vec<String>,
    /// Extra CA certificate (PEM) to trust; repeatable.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TransferFlags {
    /// Credentials for the source registries, as USER:PASS.
    #[arg(
        long,
        value_name = "USER:PASS",
        env = "WHARF_SRC_CREDS",
        hide_env_values = true
    )]
    pub src_creds: Option<String>,
    /// Credentials for the destination registry, as USER:PASS.
    #[arg(
        long,
        value_name = "USER:PASS",
        env = "WHARF_DEST_CREDS",
        hide_env_values = true
    )]
    pub dest_creds: Option<String>,
    #[command(flatten)]
    pub trust: Trust,
    /// Images and blobs moved at once.
    #[arg(long, short = 'j', value_name = "N", default_value_t = DEFAULT_JOBS)]
    pub jobs: usize,
    /// Keep only this platform of multi-platform images (os/arch[/variant]); repeatable.
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]")]
    pub platforms: Vec<String>,
    /// Drop the source registry from destination paths (registry.k8s.io/pause → <dst>/pause).
    #[arg(long)]
    pub flatten: bool,
    /// Another name of the destination registry (host[:port]; a bare host means the destination's port): images under it land at their plain path. Repeatable.
    #[arg(long = "registry-name", value_name = "HOST[:PORT]")]
    pub registry_names: Vec<String>,
    /// Copy every tag of each repository.
    #[arg(long)]
    pub all_tags: bool,
    /// Also copy signatures, SBOMs and other artifacts that refer to each image.
    #[arg(long)]
    pub referrers: bool,
    /// Print what would be copied; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// No progress on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Summary format on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
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
    #[arg(long = "to", value_name = "HOST[:PORT]")]
    pub to: String,
    #[command(flatten)]
    pub flags: TransferFlags,
    /// A list of images (one a line, # comments), a TOML sync file (*.toml), or - for stdin.
    #[arg(value_name = "FILE")]
    pub input: PathBuf,
}

/// A problem with the command line itself (exit code 2).
#[derive(Debug)]
pub(crate) struct Usage(pub String);

pub(crate) type Outcome<T> = Result<T, Usage>;

pub fn run_copy(args: CopyArgs) -> anyhow::Result<ExitCode> {
    run_checked("copy", &args.flags, || copy_input(&args))
}

pub fn run_sync(args: SyncArgs) -> anyhow::Result<ExitCode> {
    run_checked("sync", &args.flags, || sync_input(&args))
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
}

/// `wharf copy SRC host/repo[:tag]`.
struct FixedDestination {
    reference: Reference,
    /// No tag was written: each image keeps its own.
    keep_tag: bool,
}

fn run_checked(
    command: &'static str,
    flags: &TransferFlags,
    plan: impl FnOnce() -> Outcome<Plan>,
) -> anyhow::Result<ExitCode> {
    let outcome = check_flags(flags).and_then(|options| Ok((options, plan()?)));
    let (options, plan) = match outcome {
        Ok(x) => x,
        Err(Usage(message)) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let runtime = transfer_runtime()?;
    runtime.block_on(execute(command, flags, options, plan))
}

fn check_flags(flags: &TransferFlags) -> Outcome<Options> {
    let platforms = flags
        .platforms
        .iter()
        .map(|p| p.parse::<PlatformSpec>().map_err(|e| Usage(e.to_string())))
        .collect::<Outcome<Vec<_>>>()?;
    for (flag, value) in [
        ("--src-creds", &flags.src_creds),
        ("--dest-creds", &flags.dest_creds),
    ] {
        if value
            .as_deref()
            .is_some_and(|v| Credential::parse_user_pass(v).is_none())
        {
            return Err(Usage(format!("{flag} takes USER:PASS")));
        }
    }
    if flags.jobs == 0 {
        return Err(Usage("--jobs must be at least 1".into()));
    }
    Ok(Options {
        jobs: flags.jobs,
        platforms,
        referrers: flags.referrers,
        dry_run: flags.dry_run,
    })
}

fn copy_input(args: &CopyArgs) -> Outcome<Plan> {
    let transport = Transport::parse(&args.source).map_err(|e| Usage(e.to_string()))?;
    let mut input = Input::default();
    let file = match transport {
        Transport::Registry(written) => {
            input.requests.push(registry_request(&written)?);
            None
        }
        file if args.flags.all_tags => {
            return Err(Usage(format!(
                "--all-tags lists tags of a registry; {} is a {} source: copy its images one at a time (SOURCE:REF)",
                args.source,
                file.name()
            )))
        }
        file => Some((args.source.clone(), file)),
    };
    let normalized = input.requests.first().is_some_and(|r| r.written != r.source.to_string());
    if let Some(request) = input.requests.first().filter(|_| normalized) {
        input
            .notes
            .push(format!("{}: read as {}", request.written, request.source));
    }
    let dst = args.destination.trim().trim_end_matches('/');
    let dst = dst.strip_prefix("docker://").unwrap_or(dst);
    if !dst.contains('/') {
        return Ok(Plan {
            input,
            map: DestinationMap::new(dst, args.flags.flatten)
                .with_names(args.flags.registry_names.clone()),
            fixed: None,
            file,
        });
    }
    let reference: Reference = dst
        .parse()
        .map_err(|e| Usage(format!("{dst}: not a registry or image reference: {e}")))?;
    let last = dst.rsplit('/').next().unwrap_or(dst);
    let keep_tag = !last.contains(':') && !last.contains('@');
    if args.flags.all_tags && !keep_tag {
        return Err(Usage(format!(
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
    })
}

/// A registry reference as written (`docker://` already dropped).
fn registry_request(written: &str) -> Outcome<wharf_transfer::Request> {
    let (source, _) = Reference::parse_normalized(written).map_err(|e| {
        Usage(format!(
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


fn sync_input(args: &SyncArgs) -> Outcome<Plan> {
    let to = args.to.trim().trim_end_matches('/');
    if to.is_empty() || to.contains('/') || format!("{to}/x").parse::<Reference>().is_err() {
        return Err(Usage(format!(
            "--to {to:?}: expected a registry, host[:port]"
        )));
    }
    let text = read_input(&args.input)?;
    let is_toml = args.input.extension().is_some_and(|e| e == "toml");
    let input = if is_toml {
        parse_sync_file(&text).map_err(|e| Usage(format!("{}: {e}", args.input.display())))?
    } else {
        parse_list(&text)
    };
    Ok(Plan {
        input,
        map: DestinationMap::new(to, args.flags.flatten)
            .with_names(args.flags.registry_names.clone()),
        fixed: None,
        file: None,
    })
}

pub(crate) fn read_input(path: &PathBuf) -> Outcome<String> {
    let mut text = String::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_INPUT_BYTES)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_INPUT_BYTES).read_to_string(&mut text))
    };
    read.map_err(|e| Usage(format!("cannot read {}: {e}", path.display())))?;
    Ok(text)
}

fn client(
    flags: &TransferFlags,
    creds: Option<&str>,
    hosts: &BTreeSet<String>,
) -> anyhow::Result<Client> {
    registry_client(&flags.trust.insecure, &flags.trust.ca_file, creds, hosts)
}

/// A registry client with credentials from the usual places, `creds`
/// (USER:PASS) for each of `hosts`, and the TLS settings given.
pub(crate) fn registry_client(
    insecure: &[String],
    ca_files: &[PathBuf],
    creds: Option<&str>,
    hosts: &BTreeSet<String>,
) -> anyhow::Result<Client> {
    let mut credentials = CredentialSources::from_env();
    if let Some(credential) = creds.and_then(Credential::parse_user_pass) {
        for host in hosts {
            credentials = credentials.with_explicit(host, credential.clone());
        }
    }
    Ok(Client::new(ClientConfig {
        insecure_hosts: insecure.to_vec(),
        ca_files: ca_files.to_vec(),
        credentials,
        ..ClientConfig::default()
    })?)
}

async fn execute(
    command: &'static str,
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
    let src = client(flags, flags.src_creds.as_deref(), &sources)?;
    let dst = client(flags, flags.dest_creds.as_deref(), &dests)?;
    let show_progress = !flags.quiet && std::io::stderr().is_terminal();
    let progress = show_progress.then(|| Arc::new(Progress::new()));

    let (source, mut jobs, mut failures, notes): (Arc<dyn Source>, _, _, _) = match &plan.file {
        Some((written, transport)) => {
            let (source, job) = file_job(written, transport, &plan, flags.quiet).await?;
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
        eprintln!("error: {e}");
        eprintln!("hint: a --registry-name maps an image of that registry onto its plain path; drop the name, or one of the images");
        return Ok(ExitCode::from(EXIT_USAGE));
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
    print_outcome(command, flags.output, flags.dry_run, &reports, &notes)?;
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
    if !quiet {
        eprintln!("reading {written}");
    }
    let opening = transport.clone();
    let opened = tokio::task::spawn_blocking(move || opening.open(None))
        .await
        .context("reading the source failed")?
        .map_err(anyhow::Error::from)
        .with_context(|| {
            Hint(format!(
                "check the path; {written} is read as a {} source ({TRANSPORTS})",
                transport.name()
            ))
        })?
        .context("a registry source has no file to open")?;
    let destination = match (&plan.fixed, &opened.name) {
        (Some(fixed), _) => fixed_destination(fixed, &opened.reference),
        (None, Some(_)) => plan.map.map(&opened.reference)?,
        (None, None) => {
            return Err(anyhow::anyhow!(
                "{written}: the image has no name to keep at {}",
                plan.map.registry
            )
            .context(Hint(format!(
                "give the destination in full: wharf copy {written} {}/REPO:TAG",
                plan.map.registry
            ))))
        }
    };
    Ok((
        opened.source,
        ImageJob::new(opened.reference, destination),
    ))
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

pub(crate) fn print_line(progress: Option<&Progress>, line: &str) {
    match progress {
        Some(p) => p.println(line),
        None => eprintln!("{line}"),
    }
}

/// Failures on stderr, one line each; then the summary on stdout.
pub(crate) fn print_outcome(
    command: &str,
    output: Output,
    dry_run: bool,
    reports: &[ImageReport],
    notes: &[String],
) -> anyhow::Result<()> {
    for r in reports {
        for note in &r.notes {
            eprintln!("note: {}: {note}", r.source);
        }
        if let Some(error) = &r.error {
            eprintln!("error: {}: {error}", r.source);
        }
    }
    let mut out = std::io::stdout().lock();
    match output {
        Output::Json => {
            let doc = serde_json::json!({
                "version": REPORT_VERSION,
                "command": command,
                "dry_run": dry_run,
                "summary": totals(reports),
                "notes": notes,
                "images": reports,
            });
            serde_json::to_writer_pretty(&mut out, &doc)?;
            writeln!(out)?;
        }
        Output::Text => write_table(&mut out, reports, dry_run)?,
    }
    Ok(())
}

fn totals(reports: &[ImageReport]) -> serde_json::Value {
    let count = |s: Status| reports.iter().filter(|r| r.status == s).count();
    serde_json::json!({
        "images": reports.len(),
        "copied": count(Status::Copied),
        "up_to_date": count(Status::UpToDate),
        "planned": count(Status::Planned),
        "failed": count(Status::Failed),
        "bytes_sent": reports.iter().map(|r| r.bytes_sent).sum::<u64>(),
    })
}

fn write_table(
    out: &mut impl Write,
    reports: &[ImageReport],
    dry_run: bool,
) -> std::io::Result<()> {
    let rows: Vec<[String; 6]> = reports
        .iter()
        .map(|r| {
            [
                r.source.clone(),
                r.digest
                    .as_ref()
                    .map_or("-".into(), |d| short_digest(&d.to_string())),
                indicatif::HumanBytes(r.bytes_sent).to_string(),
                r.blobs_skipped.to_string(),
                r.blobs_mounted.to_string(),
                r.status.as_str().to_string(),
            ]
        })
        .collect();
    let sent_label = if dry_run { "TO SEND" } else { "SENT" };
    let header = [
        "IMAGE", "DIGEST", sent_label, "SKIPPED", "MOUNTED", "STATUS",
    ]
    .map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", cells.join("  ").trim_end())?;
    }
    let sent: u64 = reports.iter().map(|r| r.bytes_sent).sum();
    let failed = reports.iter().filter(|r| r.is_failed()).count();
    let verb = if dry_run { "to send" } else { "sent" };
    writeln!(
        out,
        "{} images, {} failed, {} {verb}",
        reports.len(),
        failed,
        indicatif::HumanBytes(sent)
    )
}

/// `sha256:0123456789ab`: enough to recognise, short enough for a table.
fn short_digest(d: &str) -> String {
    d.chars().take("sha256:".len() + 12).collect()
}

/// Progress bars on stderr: one per image in flight and a total with speed
/// and ETA.
pub(crate) struct Progress {
    multi: MultiProgress,
    total: ProgressBar,
    bars: Mutex<HashMap<usize, ProgressBar>>,
}

impl Progress {
    pub(crate) fn new() -> Progress {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let total = multi.add(ProgressBar::new(0));
        total.set_style(
            ProgressStyle::with_template(
                "{prefix:>8} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        total.set_prefix("total");
        total.enable_steady_tick(Duration::from_millis(200));
        Progress {
            multi,
            total,
            bars: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn println(&self, line: &str) {
        let _ = self.multi.println(line);
    }

    pub(crate) fn finish(&self) {
        self.total.finish_and_clear();
    }
}

impl Events for Progress {
    fn image_planned(&self, index: usize, source: &str, bytes: u64) {
        if bytes == 0 {
            return;
        }
        self.total.inc_length(bytes);
        let bar = self
            .multi
            .insert_before(&self.total, ProgressBar::new(bytes));
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:40!} [{bar:20}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(source.to_string());
        self.bars.lock().expect("bars").insert(index, bar);
    }

    fn bytes_sent(&self, index: usize, bytes: u64) {
        self.total.inc(bytes);
        if let Some(bar) = self.bars.lock().expect("bars").get(&index) {
            bar.inc(bytes);
        }
    }

    fn bytes_not_needed(&self, index: usize, bytes: u64) {
        // Shrinking the lengths, rather than advancing the positions, keeps
        // the speed and ETA about bytes that really move.
        shrink(&self.total, bytes);
        if let Some(bar) = self.bars.lock().expect("bars").get(&index) {
            shrink(bar, bytes);
        }
    }

    fn image_finished(&self, index: usize, report: &ImageReport) {
        if let Some(bar) = self.bars.lock().expect("bars").remove(&index) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        let mark = if report.is_failed() {
            "failed"
        } else {
            report.status.as_str()
        };
        self.println(&format!("{mark:>10}  {}", report.source));
    }
}

fn shrink(bar: &ProgressBar, bytes: u64) {
    if let Some(length) = bar.length() {
        bar.set_length(length.saturating_sub(bytes));
    }
}

/// The runtime of the commands that move images (copy, sync, save, load):
/// a worker per core, at most eight; transfers are I/O bound beyond that.
pub(crate) fn transfer_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .min(8),
        )
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_destinations() {
        let args = |dst: &str| CopyArgs {
            source: "alpine:3.20".into(),
            destination: dst.into(),
            flags: flags(),
        };
        let plan = copy_input(&args("registry.home.arpa:5000")).unwrap();
        assert!(plan.fixed.is_none());
        assert_eq!(plan.input.notes.len(), 1, "alpine is normalised");
        let plan = copy_input(&args("127.0.0.1:5000/mine/alpine")).unwrap();
        let fixed = plan.fixed.unwrap();
        assert!(fixed.keep_tag);
        let source: Reference = "docker.io/library/alpine:3.20".parse().unwrap();
        assert_eq!(
            fixed_destination(&fixed, &source).to_string(),
            "127.0.0.1:5000/mine/alpine:3.20"
        );
        assert!(copy_input(&args("127.0.0.1:5000/Bad Name")).is_err());
    }

    fn flags() -> TransferFlags {
        TransferFlags {
            src_creds: None,
            dest_creds: None,
            trust: Trust {
                insecure: vec![],
                ca_file: vec![],
            },
            jobs: 4,
            platforms: vec![],
            flatten: false,
            registry_names: vec![],
            all_tags: false,
            referrers: false,
            dry_run: false,
            quiet: true,
            output: Output::Text,
        }
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        let mut f = flags();
        f.platforms = vec!["linux".into()];
        assert!(check_flags(&f).is_err());
        let mut f = flags();
        f.src_creds = Some("nocolon".into());
        assert!(check_flags(&f).is_err());
    }

    #[test]
    fn the_table_names_every_image() {
        let mut ok = ImageReport::new("127.0.0.1:5000/a:v1", None);
        ok.bytes_sent = 2048;
        let failed = ImageReport::failed("b", "invalid", "nope".into());
        let mut out = Vec::new();
        write_table(&mut out, &[ok, failed], false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("127.0.0.1:5000/a:v1"));
        assert!(text.contains("2.00 KiB"));
        assert!(text.contains("2 images, 1 failed"));
    }
}
