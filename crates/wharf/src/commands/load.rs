//! `wharf load`: verify bundles (every byte, before anything is imported),
//! then push their images into a registry or import them into containerd.
//! Also reads what `docker save`, `podman save` and `skopeo copy …
//! oci-archive:/docker-archive:` write.
//!
//! Exit codes: 0 every image loaded, 1 a bundle did not verify (nothing was
//! imported) or some images failed (each named), 2 bad usage.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use wharf_bundle::{Bundle, BundleServer, BundleSource};
use wharf_oci::Reference;
use wharf_transfer::{
    check_collisions, DestinationMap, Events, ImageJob, ImageReport, NoEvents, Options, Transfer,
};

use crate::commands::{runtime, Work};
use crate::exit::{usage, Hint};
use crate::flags::{self, DestCredentials, Jobs, Quiet, RegistryNames, Trust};
use crate::output::{print_line, print_transfer, OutputArgs, Progress, TransferKind};

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Bundles (.tar or .tar.zst), or docker/podman/skopeo archives; a base before its deltas.
    #[arg(value_name = "BUNDLE")]
    pub bundles: Vec<PathBuf>,
    /// A bundle or archive to load, as with `docker load -i`; repeatable, read after those named without it.
    #[arg(short = 'i', long = "input", value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// Push into this registry, host[:port] (images land under their upstream host, as with sync).
    #[arg(long = "to", value_name = "HOST[:PORT]", value_parser = flags::registry_host)]
    pub to: Option<String>,
    /// Import into containerd (with `ctr images import`) instead.
    #[arg(long, conflicts_with = "to")]
    pub containerd: bool,
    /// Import into containers-storage (CRI-O, podman) instead, each image with `skopeo copy --preserve-digests`, so every registry digest is kept. Storage settings as skopeo reads them (CONTAINERS_STORAGE_CONF).
    #[arg(long, conflicts_with_all = ["to", "containerd"])]
    pub containers_storage: bool,
    /// containerd's socket.
    #[arg(
        long,
        value_name = "SOCKET",
        default_value = "/run/containerd/containerd.sock"
    )]
    pub address: PathBuf,
    /// containerd namespace (the kubelet's is k8s.io).
    #[arg(long, default_value = "k8s.io")]
    pub namespace: String,
    /// Load an archive of one image under this name (an OCI archive whose index entry has no name, or to rename it).
    #[arg(long, value_name = "HOST/REPO:TAG", conflicts_with = "containerd", value_parser = image_name)]
    pub name: Option<Reference>,
    /// Drop the upstream host from destination paths.
    #[arg(long)]
    pub flatten: bool,
    #[command(flatten)]
    pub names: RegistryNames,
    #[command(flatten)]
    pub dest: DestCredentials,
    #[command(flatten)]
    pub trust: Trust,
    #[command(flatten)]
    pub jobs: Jobs,
    /// Where a compressed bundle is decompressed to [default: the system's temp directory].
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    #[command(flatten)]
    pub quiet: Quiet,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `--name`: a full image name (`alpine:3` reads as docker.io/library/alpine:3).
fn image_name(s: &str) -> Result<Reference, String> {
    Reference::parse_normalized(s)
        .map(|(name, _)| name)
        .map_err(|e| format!("{s:?} is not an image name: {e}; expected HOST/REPO:TAG"))
}

impl LoadArgs {
    /// Every bundle named, in order: positional ones, then `-i` ones.
    fn all_bundles(&self) -> Vec<PathBuf> {
        self.bundles.iter().chain(&self.inputs).cloned().collect()
    }
}

pub fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    if args.all_bundles().is_empty() {
        return Err(usage(
            "name the bundles to load (wharf load BUNDLE…, or -i BUNDLE as with docker load)",
        ));
    }
    if args.to.is_none() && !args.containerd && !args.containers_storage {
        return Err(usage(
            "say where to load: --to HOST[:PORT] (a registry), --containerd or --containers-storage",
        ));
    }
    if args.containerd {
        require_containerd(&args.address)?;
    }
    let bundles = verify_all(&args, args.name.as_ref())?;
    let mut reports = Vec::new();
    let mut notes = Vec::new();
    for bundle in &bundles {
        for note in bundle.notes() {
            notes.push(format!("{}: {note}", bundle.path().display()));
        }
    }
    if let Some(to) = &args.to {
        reports = runtime(Work::Transfer)?.block_on(push_all(&args, to, bundles, &notes))?;
    } else if args.containers_storage {
        for note in &notes {
            eprintln!("note: {note}");
        }
        let runtime = runtime(Work::Transfer)?;
        for bundle in &bundles {
            reports.extend(runtime.block_on(import_containers_storage(bundle))?);
        }
    } else {
        for note in &notes {
            eprintln!("note: {note}");
        }
        for bundle in &bundles {
            reports.extend(import_containerd(&args, bundle));
        }
    }
    print_transfer(
        TransferKind::Load,
        args.output.output,
        false,
        &reports,
        &notes,
    )?;
    Ok(if reports.iter().any(ImageReport::is_failed) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// How long containerd's socket may take to accept a connection and the
/// HTTP/2 handshake; a containerd that is up answers in milliseconds.
const CONTAINERD_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// containerd must answer on `address` before any bundle is verified: else
/// `ctr` waits 10 s for each bundle and every image repeats its dial error.
fn require_containerd(address: &Path) -> anyhow::Result<()> {
    let connected = runtime(Work::Requests)?.block_on(wharf_cri::CriClient::connect(
        address,
        CONTAINERD_CONNECT_TIMEOUT,
    ));
    connected.map(drop).map_err(|e| {
        let next = match &e {
            wharf_cri::CriError::NotRunning { .. } => {
                "is containerd running? Start it (`systemctl start containerd`), or give its socket with --address PATH".to_owned()
            }
            other => other.hint(),
        };
        anyhow::Error::new(e)
            .context("cannot import into containerd")
            .context(Hint(format!("{next}; nothing was imported")))
    })
}

/// Every bundle is read and checked in full before any is imported, and
/// every image it lists must have a name to load it under.
fn verify_all(args: &LoadArgs, name: Option<&Reference>) -> anyhow::Result<Vec<Arc<Bundle>>> {
    let mut bundles = Vec::new();
    for path in &args.all_bundles() {
        if !args.quiet.quiet {
            eprintln!("verifying {}", path.display());
        }
        let mut bundle = Bundle::open(path, args.spool_dir.as_deref())
            .map_err(anyhow::Error::from)
            .context(Hint(
                "nothing was imported; copy the bundle again (its checksums are inside it) or write it anew with wharf save".into(),
            ))?;
        if let Some(name) = name {
            bundle
                .rename_single(name.clone())
                .map_err(anyhow::Error::from)
                .context(Hint(
                    "nothing was imported; load the archive without --name, or pick its image with wharf copy oci-archive:FILE:REF HOST/REPO:TAG".into(),
                ))?;
        }
        refuse_unnamed(&bundle, args.containerd)?;
        if !args.quiet.quiet {
            eprintln!(
                "verified {}: {}, {} images, {}",
                path.display(),
                bundle.format().describe(),
                bundle.images().len(),
                indicatif::HumanBytes(bundle.content_bytes())
            );
        }
        bundles.push(Arc::new(bundle));
    }
    Ok(bundles)
}

/// An image listed without a name would silently not be loaded: refused,
/// naming the file, with the ways to give it one.
fn refuse_unnamed(bundle: &Bundle, containerd: bool) -> anyhow::Result<()> {
    let unnamed = bundle.unnamed().len();
    if unnamed == 0 {
        return Ok(());
    }
    let path = bundle.path().display();
    let transport = match bundle.format() {
        wharf_bundle::Format::DockerArchive => "docker-archive",
        _ => "oci-archive",
    };
    let how = if containerd {
        "load it into a registry with --to HOST[:PORT] --name HOST/REPO:TAG"
    } else {
        "give it one with --name HOST/REPO:TAG"
    };
    let images = if unnamed == 1 {
        "image is"
    } else {
        "images are"
    };
    Err(anyhow::anyhow!(
        "{path}: {unnamed} {images} listed without a name to load under (no full org.opencontainers.image.ref.name, no RepoTags)"
    ))
    .context(Hint(format!(
        "nothing was imported; {how} (an archive of one image), or write the archive with a full name ({transport}:{path}:host/repo:tag), or copy one image: wharf copy {transport}:{path}[:REF] HOST/REPO:TAG"
    )))
}

/// Each bundle in turn (a base before its deltas) through `wharf_transfer`.
async fn push_all(
    args: &LoadArgs,
    to: &str,
    bundles: Vec<Arc<Bundle>>,
    notes: &[String],
) -> anyhow::Result<Vec<ImageReport>> {
    let show_progress = !args.quiet.quiet && std::io::stderr().is_terminal();
    let progress = show_progress.then(|| Arc::new(Progress::new()));
    for note in notes {
        print_line(progress.as_deref(), &format!("note: {note}"));
    }
    let dst = flags::client(
        &args.trust,
        args.dest.dest_creds.as_ref(),
        &BTreeSet::from([to.to_string()]),
    )?;
    let map = DestinationMap::new(to, args.flatten).with_names(args.names.registry_names.clone());
    refuse_collisions(&map, &bundles)?;
    let events: Arc<dyn Events> = match &progress {
        Some(p) => p.clone(),
        None => Arc::new(NoEvents),
    };
    let mut reports = Vec::new();
    for bundle in bundles {
        let mut names = Vec::new();
        let mut jobs = Vec::new();
        for image in bundle.images() {
            match map.map(&image.name) {
                Ok(destination) => {
                    names.push((image.name.to_string(), map.plain_path_note(&image.name)));
                    let source = image.name.with_digest(image.manifest.digest.clone());
                    jobs.push(ImageJob::new(source, destination));
                }
                Err(e) => reports.push(ImageReport::failed(
                    image.name.to_string(),
                    "invalid",
                    e.to_string(),
                )),
            }
        }
        let options = Options {
            jobs: args.jobs.jobs,
            ..Options::default()
        };
        // Manifests and blobs go from the verified tar straight into the
        // destination.
        let source = Arc::new(BundleSource::new(bundle.clone()));
        let done = Transfer::from_source(source, dst.clone(), options, events.clone())
            .run(jobs)
            .await;
        for (mut report, (name, note)) in done.into_iter().zip(names) {
            // Name the image as the bundle does, without the pinned digest.
            report.source = name;
            report.notes.extend(note);
            reports.push(report);
        }
    }
    if let Some(p) = &progress {
        p.finish();
    }
    Ok(reports)
}

/// Two different images of the bundles landing under one name: refused
/// before anything is pushed.
fn refuse_collisions(map: &DestinationMap, bundles: &[Arc<Bundle>]) -> anyhow::Result<()> {
    let mut landing = Vec::new();
    for image in bundles.iter().flat_map(|b| b.images()) {
        if let Ok(destination) = map.map(&image.name) {
            landing.push((
                image.name.clone(),
                destination,
                image.manifest.digest.to_string(),
            ));
        }
    }
    check_collisions(landing.iter().map(|(s, d, c)| (s, d, Some(c.as_str()))))
        .map_err(anyhow::Error::from)
        .context(Hint(
            "nothing was loaded; drop the --registry-name that maps one image onto the other, or load the bundles apart".into(),
        ))
}

/// Each image of the verified bundle, served on loopback, copied by digest
/// into containers-storage with `skopeo copy --preserve-digests`. `podman
/// load` of a bundle with more than one image (podman 4.3) falls back to
/// Docker's `manifest.json` and writes new manifests, so the digests a
/// CRI-O node's pods are pinned to would be missing; this way they are the
/// registry's. One report per image; a failed image does not stop the others.
async fn import_containers_storage(bundle: &Arc<Bundle>) -> anyhow::Result<Vec<ImageReport>> {
    let source = BundleServer::start(bundle.clone())
        .await
        .context("cannot serve the bundle on loopback")?;
    let mut reports = Vec::new();
    for image in bundle.images() {
        let mut report =
            ImageReport::new(image.name.to_string(), Some("containers-storage".into()));
        report.digest = Some(image.manifest.digest.clone());
        match image.name.tag() {
            None => report.fail(
                "invalid",
                "named only by digest: containers-storage needs a tag to name the image; save it as host/repo:tag".to_string(),
            ),
            Some(tag) => {
                let to = format!(
                    "containers-storage:{}/{}:{tag}",
                    image.name.host(),
                    image.name.repository()
                );
                let from = format!("docker://{}", source.reference(image));
                if let Some(failure) = skopeo_copy(from, to).await {
                    report.fail("containers-storage", failure);
                }
            }
        }
        reports.push(report);
    }
    Ok(reports)
}

/// `skopeo copy --preserve-digests` (the loopback source is plain HTTP);
/// what went wrong, if anything.
async fn skopeo_copy(from: String, to: String) -> Option<String> {
    let outcome = tokio::process::Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--preserve-digests",
            "--src-tls-verify=false",
            &from,
            &to,
        ])
        .output()
        .await;
    match outcome {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "skopeo copy failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!(
            "cannot run skopeo: {e}; install skopeo, or load --to a registry the node pulls from"
        )),
    }
}

/// `ctr images import` of the verified tar (the spool copy of a compressed
/// bundle), every platform; one report per image.
fn import_containerd(args: &LoadArgs, bundle: &Bundle) -> Vec<ImageReport> {
    let destination = format!("containerd:{}", args.namespace);
    let mut command = Command::new("ctr");
    command
        .arg("--address")
        .arg(&args.address)
        .arg("--namespace")
        .arg(&args.namespace)
        .args(["images", "import", "--all-platforms"])
        .arg(bundle.tar_path());
    let outcome = command.output();
    let failure = match outcome {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "ctr images import failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!(
            "cannot run ctr: {e}; install containerd's ctr or load --to a registry"
        )),
    };
    bundle
        .images()
        .iter()
        .map(|image| {
            let mut r = ImageReport::new(image.name.to_string(), Some(destination.clone()));
            r.digest = Some(image.manifest.digest.clone());
            if let Some(f) = &failure {
                r.fail("containerd", format!("{}: {f}", bundle.path().display()));
            }
            r
        })
        .collect()
}
