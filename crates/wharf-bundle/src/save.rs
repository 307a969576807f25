//! `wharf save`: resolve images at their registries and stream them into a
//! bundle. The tar is written by one blocking thread; blobs are fetched a
//! few ahead of it, each through a small bounded channel, so memory stays
//! constant whatever the blob sizes. The bundle is written under a temp
//! name in the target's directory and renamed only once complete and
//! synced: a failure (a missing image, a full disk) leaves nothing under
//! the final name.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use wharf_client::Client;
use wharf_oci::{media_type, Descriptor, Digest, ParsedManifest, PlatformSpec, Reference};
use wharf_transfer::{
    filtered_index, resolve_tree, Events, ImageReport, Status, TransferError, TreeNode,
};

use crate::format::OmittedBlob;
use crate::writer::{index_names, BundleWriter, DockerImage, ImageRecord, WriteError};

/// Chunks buffered per blob between the network and the tar.
const CHUNKS_PER_BLOB: usize = 16;
const WRITE_BUFFER: usize = 1 << 20;

/// How to write the bundle.
#[derive(Debug, Clone, Default)]
pub struct SaveOptions {
    /// Platforms kept from multi-platform images; empty keeps all.
    pub platforms: Vec<PlatformSpec>,
    /// Compress the whole bundle with zstd at this level.
    pub zstd_level: Option<i32>,
    /// Blobs an earlier bundle has: left out (a delta), and the base's name.
    pub since: Option<(String, HashSet<Digest>)>,
    /// Images resolved, and blobs fetched ahead of the writer, at once.
    pub jobs: usize,
    /// Extra images made locally (`--self`), written after the others.
    pub extra: Vec<LocalImage>,
}

/// An image whose blobs are files or bytes on this machine.
#[derive(Debug, Clone)]
pub struct LocalImage {
    pub name: Reference,
    pub manifest: Bytes,
    pub config: Bytes,
    /// Layer descriptors and the files that hold them.
    pub layers: Vec<(Descriptor, PathBuf)>,
}

/// What was written.
#[derive(Debug)]
pub struct SaveOutcome {
    pub reports: Vec<ImageReport>,
    /// The bundle exists under its final name.
    pub written: bool,
    /// Size of the bundle file.
    pub file_bytes: u64,
}

/// An image resolved at its registry, ready to write.
struct Resolved {
    index: usize,
    name: Reference,
    tree: Vec<TreeNode>,
}

/// What the writer thread is asked to do, in order.
enum Command {
    Blob {
        digest: Digest,
        size: u64,
        data: mpsc::Receiver<io::Result<Bytes>>,
    },
    File {
        digest: Digest,
        size: u64,
        path: PathBuf,
    },
    Bytes {
        digest: Digest,
        bytes: Bytes,
    },
    Finish {
        records: Vec<ImageRecord>,
        omitted: Vec<OmittedBlob>,
        base: Option<String>,
    },
}

/// Save `names` from their registries into a bundle at `out`.
pub async fn save(
    client: &Client,
    names: Vec<Reference>,
    out: &Path,
    options: SaveOptions,
    events: Arc<dyn Events>,
) -> io::Result<SaveOutcome> {
    let jobs = options.jobs.max(1);
    let mut reports: Vec<ImageReport> = names
        .iter()
        .map(|n| ImageReport::new(n.to_string(), Some(out.display().to_string())))
        .collect();
    let resolved = resolve_all(client, names, &options.platforms, jobs, &mut reports).await;
    refuse_name_collisions(&resolved, &options.extra, &mut reports);
    if reports.iter().any(ImageReport::is_failed) {
        return Ok(SaveOutcome {
            reports,
            written: false,
            file_bytes: 0,
        });
    }
    let (commands, rx) = mpsc::channel::<Command>(jobs);
    let target = out.to_path_buf();
    let level = options.zstd_level;
    let writer = tokio::task::spawn_blocking(move || write_bundle(&target, level, rx));
    let feed = feed(client, &resolved, &options, commands, &mut reports, &events).await;
    let written = writer
        .await
        .map_err(|e| io::Error::other(format!("the bundle writer failed: {e}")))?;
    match (feed, written) {
        (Ok(()), Ok(file_bytes)) => {
            for (i, r) in reports.iter().enumerate() {
                events.image_finished(i, r);
            }
            Ok(SaveOutcome {
                reports,
                written: true,
                file_bytes,
            })
        }
        // The writer's error says what happened to the file (disk full);
        // a fetch error shows up there as a broken blob too.
        (Err(fetch), Err(write)) if fetch.kind() != io::ErrorKind::BrokenPipe => {
            Err(io::Error::new(write.kind(), format!("{fetch} ({write})")))
        }
        (_, Err(write)) => Err(write),
        (Err(fetch), Ok(_)) => Err(fetch),
    }
}

/// Two different images under one name would make the bundle's index name
/// one of them wrongly: the image that takes the name second fails, before
/// anything is written.
fn refuse_name_collisions(
    resolved: &[Resolved],
    extra: &[LocalImage],
    reports: &mut [ImageReport],
) {
    let record = |name: &Reference, digest: Digest| ImageRecord {
        name: name.clone(),
        manifest: Descriptor::new(media_type::OCI_MANIFEST, digest, 0),
        docker: None,
    };
    let mut records = Vec::new();
    for image in resolved {
        let digest = reports[image.index].digest.clone();
        records.push(record(
            &image.name,
            digest.expect("a resolved image has its digest"),
        ));
    }
    for local in extra {
        records.push(record(&local.name, Digest::sha256_of(&local.manifest)));
    }
    let Err(collision) = index_names(&records) else {
        return;
    };
    // The report of a saved image involved (an extra image has none).
    let involved = |image: &&Resolved| {
        let name = image.name.to_string();
        name == collision.first || name == collision.second
    };
    let failed = resolved.iter().rfind(involved).or(resolved.first());
    if let Some(image) = failed {
        reports[image.index].fail("invalid", collision.to_string());
    }
}

async fn resolve_all(
    client: &Client,
    names: Vec<Reference>,
    platforms: &[PlatformSpec],
    jobs: usize,
    reports: &mut [ImageReport],
) -> Vec<Resolved> {
    let results: Vec<(usize, Reference, Result<Vec<TreeNode>, TransferError>)> =
        futures_util::stream::iter(names.into_iter().enumerate())
            .map(|(index, name)| async move {
                let tree = resolve_one(client, &name, platforms).await;
                (index, name, tree)
            })
            .buffered(jobs)
            .collect()
            .await;
    let mut resolved = Vec::new();
    for (index, name, tree) in results {
        match tree {
            Ok(tree) => {
                let top = tree.last().expect("a tree has a top");
                reports[index].digest = Some(top.manifest.digest.clone());
                resolved.push(Resolved { index, name, tree });
            }
            Err(e) => reports[index].fail(e.cause(), e.to_string()),
        }
    }
    resolved
}

async fn resolve_one(
    client: &Client,
    name: &Reference,
    platforms: &[PlatformSpec],
) -> Result<Vec<TreeNode>, TransferError> {
    let info = client.head_manifest(name).await.map_err(|e| {
        if e.is_not_found() {
            TransferError::Missing(e)
        } else {
            e.into()
        }
    })?;
    resolve_tree(client, &name.with_digest(info.digest), platforms).await
}

/// Send every blob, manifest and finally the indexes to the writer.
async fn feed(
    client: &Client,
    resolved: &[Resolved],
    options: &SaveOptions,
    commands: mpsc::Sender<Command>,
    reports: &mut [ImageReport],
    events: &Arc<dyn Events>,
) -> io::Result<()> {
    let closed = || io::Error::new(io::ErrorKind::BrokenPipe, "the bundle writer stopped");
    let mut sent: HashSet<Digest> = HashSet::new();
    let (base_name, base) = match &options.since {
        Some((name, blobs)) => (Some(name.clone()), blobs.clone()),
        None => (None, HashSet::new()),
    };
    let mut omitted: Vec<OmittedBlob> = Vec::new();
    let mut records = Vec::new();
    let default = default_platform(&options.platforms);
    for image in resolved {
        let report = &mut reports[image.index];
        let leaves = wharf_transfer::unique_blobs(&image.tree);
        let planned: u64 = leaves
            .iter()
            .filter(|b| !sent.contains(&b.digest) && !base.contains(&b.digest))
            .map(|b| b.size)
            .sum();
        events.image_planned(image.index, &report.source, planned);
        for blob in leaves {
            if base.contains(&blob.digest) {
                if !omitted.iter().any(|o| o.digest == blob.digest) {
                    omitted.push(OmittedBlob {
                        digest: blob.digest.clone(),
                        size: blob.size,
                    });
                }
                report.blobs_skipped += 1;
                continue;
            }
            if !sent.insert(blob.digest.clone()) {
                report.blobs_skipped += 1;
                continue;
            }
            let (tx, rx) = mpsc::channel(CHUNKS_PER_BLOB);
            commands
                .send(Command::Blob {
                    digest: blob.digest.clone(),
                    size: blob.size,
                    data: rx,
                })
                .await
                .map_err(|_| closed())?;
            // Fetched while earlier blobs are still being written; the
            // command channel's bound limits how far ahead.
            tokio::spawn(fetch_blob(
                client.clone(),
                image.name.clone(),
                blob.clone(),
                tx,
                events.clone(),
                image.index,
            ));
            report.bytes_sent += blob.size;
            report.blobs_sent += 1;
        }
        let top = write_manifests(image, &commands, &mut sent, report).await?;
        records.push(ImageRecord {
            name: image.name.clone(),
            manifest: top,
            docker: docker_image(&image.tree, &default),
        });
    }
    for local in &options.extra {
        records.push(send_local(local, &commands, &mut sent).await?);
    }
    commands
        .send(Command::Finish {
            records,
            omitted,
            base: base_name,
        })
        .await
        .map_err(|_| closed())?;
    Ok(())
}

/// Manifests children first; a top index that lost platforms is written
/// filtered (its digest changes; the report says so).
async fn write_manifests(
    image: &Resolved,
    commands: &mpsc::Sender<Command>,
    sent: &mut HashSet<Digest>,
    report: &mut ImageReport,
) -> io::Result<Descriptor> {
    let closed = || io::Error::new(io::ErrorKind::BrokenPipe, "the bundle writer stopped");
    let (top, children) = image.tree.split_last().expect("a tree has a top");
    for node in children {
        if sent.insert(node.manifest.digest.clone()) {
            commands
                .send(Command::Bytes {
                    digest: node.manifest.digest.clone(),
                    bytes: node.manifest.bytes.clone(),
                })
                .await
                .map_err(|_| closed())?;
        }
        report.manifests_written += 1;
    }
    let bytes = if top.is_partial() {
        let filtered = filtered_index(&top.manifest.bytes, &top.kept)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let digest = Digest::sha256_of(&filtered);
        report.notes.push(format!(
            "kept {} of {} platforms: the bundle holds a filtered index {digest} (source {})",
            top.kept.len(),
            top.parsed.manifests.len(),
            top.manifest.digest
        ));
        report.source_digest = Some(top.manifest.digest.clone());
        report.digest = Some(digest);
        filtered
    } else {
        top.manifest.bytes.clone()
    };
    let digest = Digest::sha256_of(&bytes);
    let descriptor = Descriptor::new(&top.manifest.media_type, digest.clone(), bytes.len() as u64);
    if sent.insert(digest.clone()) {
        commands
            .send(Command::Bytes { digest, bytes })
            .await
            .map_err(|_| closed())?;
    }
    report.manifests_written += 1;
    report.status = Status::Copied;
    Ok(descriptor)
}

async fn send_local(
    local: &LocalImage,
    commands: &mpsc::Sender<Command>,
    sent: &mut HashSet<Digest>,
) -> io::Result<ImageRecord> {
    let closed = || io::Error::new(io::ErrorKind::BrokenPipe, "the bundle writer stopped");
    let config = Digest::sha256_of(&local.config);
    let mut layers = Vec::new();
    for (d, path) in &local.layers {
        layers.push(d.digest.clone());
        if sent.insert(d.digest.clone()) {
            commands
                .send(Command::File {
                    digest: d.digest.clone(),
                    size: d.size,
                    path: path.clone(),
                })
                .await
                .map_err(|_| closed())?;
        }
    }
    let manifest = Digest::sha256_of(&local.manifest);
    for (digest, bytes) in [
        (config.clone(), &local.config),
        (manifest.clone(), &local.manifest),
    ] {
        if sent.insert(digest.clone()) {
            commands
                .send(Command::Bytes {
                    digest,
                    bytes: bytes.clone(),
                })
                .await
                .map_err(|_| closed())?;
        }
    }
    Ok(ImageRecord {
        name: local.name.clone(),
        manifest: Descriptor::new(
            media_type::OCI_MANIFEST,
            manifest,
            local.manifest.len() as u64,
        ),
        docker: Some(DockerImage { config, layers }),
    })
}

/// Stream one blob from its registry into the writer's channel.
async fn fetch_blob(
    client: Client,
    name: Reference,
    blob: Descriptor,
    tx: mpsc::Sender<io::Result<Bytes>>,
    events: Arc<dyn Events>,
    index: usize,
) {
    let stream = client
        .get_blob(name.host(), name.repository(), &blob.digest)
        .await;
    let mut stream = match stream {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
            return;
        }
    };
    while let Some(item) = stream.next().await {
        let item = item.map_err(|e| io::Error::other(e.to_string()));
        let failed = item.is_err();
        if let Ok(chunk) = &item {
            events.bytes_sent(index, chunk.len() as u64);
        }
        if tx.send(item).await.is_err() || failed {
            return;
        }
    }
}

/// The platform Docker's `manifest.json` lists: the first asked for, else
/// linux/amd64.
fn default_platform(platforms: &[PlatformSpec]) -> PlatformSpec {
    platforms
        .first()
        .cloned()
        .unwrap_or_else(|| "linux/amd64".parse().expect("a valid platform"))
}

/// The config and layers of the image `default` selects from the tree.
fn docker_image(tree: &[TreeNode], default: &PlatformSpec) -> Option<DockerImage> {
    let top = tree.last()?;
    let chosen = if top.parsed.is_index() {
        let entry = top.parsed.manifests.iter().find(|d| {
            top.kept.contains(&d.digest) && d.platform.as_ref().is_some_and(|p| default.matches(p))
        })?;
        tree.iter().find(|n| n.manifest.digest == entry.digest)?
    } else {
        top
    };
    image_parts(&chosen.parsed)
}

fn image_parts(parsed: &ParsedManifest) -> Option<DockerImage> {
    Some(DockerImage {
        config: parsed.config.as_ref()?.digest.clone(),
        layers: parsed.layers.iter().map(|l| l.digest.clone()).collect(),
    })
}

/// The file a bundle is written to, maybe through zstd.
enum Sink {
    Plain(BufWriter<File>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<File>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Zstd(w) => w.flush(),
        }
    }
}

impl Sink {
    fn close(self) -> io::Result<File> {
        let buffered = match self {
            Sink::Plain(w) => w,
            Sink::Zstd(w) => w.finish()?,
        };
        buffered.into_inner().map_err(|e| e.into_error())
    }
}

/// The writer thread: a temp file next to `target`, renamed into place
/// once complete and synced. Returns the bundle's size.
fn write_bundle(
    target: &Path,
    zstd_level: Option<i32>,
    mut commands: mpsc::Receiver<Command>,
) -> io::Result<u64> {
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "bundle".into());
    // Mode 0666 less the umask, as for any file a user creates (0644 under
    // umask 022): a bundle is meant to be copied and read by others.
    // tempfile's own default, 0600, is for secrets.
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".partial")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(&dir)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create a file in {}: {e}", dir.display()),
            )
        })?;
    let file = temp.reopen()?;
    let buffered = BufWriter::with_capacity(WRITE_BUFFER, file);
    let sink = match zstd_level {
        None => Sink::Plain(buffered),
        Some(level) => {
            let mut encoder = zstd::stream::write::Encoder::new(buffered, level)?;
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
            // Compression on worker threads keeps the tar writer streaming.
            let _ = encoder.multithread(threads);
            Sink::Zstd(encoder)
        }
    };
    let mut writer = BundleWriter::new(sink).map_err(to_io)?;
    let mut finished = None;
    while let Some(command) = commands.blocking_recv() {
        match command {
            Command::Blob { digest, size, data } => {
                let reader = ChannelReader {
                    rx: data,
                    current: Bytes::new(),
                };
                // The download verifies its digest and ends with an error
                // when it does not match.
                writer
                    .add_verified_blob(&digest, size, reader)
                    .map_err(to_io)?;
            }
            Command::File { digest, size, path } => {
                let file = File::open(&path)?;
                writer.add_blob(&digest, size, file).map_err(to_io)?;
            }
            Command::Bytes { digest, bytes } => {
                writer.add_blob_bytes(&digest, &bytes).map_err(to_io)?;
            }
            Command::Finish {
                records,
                omitted,
                base,
            } => {
                finished = Some(writer.finish(&records, omitted, base).map_err(to_io)?);
                break;
            }
        }
    }
    let sink = finished.ok_or_else(|| {
        io::Error::new(io::ErrorKind::Interrupted, "the bundle was not completed")
    })?;
    let file = sink.close()?;
    file.sync_all()?;
    let size = file.metadata()?.len();
    temp.persist(target).map_err(|e| e.error)?;
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(size)
}

fn to_io(e: WriteError) -> io::Error {
    match e {
        WriteError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// A blob's chunks as a `Read` for the tar builder.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Blob digests an earlier bundle holds (or leaves to its own base), read
/// from its entry names and checksum manifest without hashing anything.
pub fn blobs_of(path: &Path) -> crate::Result<HashSet<Digest>> {
    crate::reader::list_blobs(path)
}
