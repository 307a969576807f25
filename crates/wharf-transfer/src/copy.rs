//! Copying images: resolve a reference to its manifest tree, move the blobs,
//! then write manifests children first so the destination never serves a
//! manifest whose content is missing.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::future::{join_all, try_join_all};
use futures_util::StreamExt;
use tokio::sync::{OnceCell, Semaphore};
use wharf_client::{referrers_tag, Client, Manifest};
use wharf_oci::{
    media_type, Descriptor, Digest, ParsedManifest, Reference, RepositoryName, Target,
};

use crate::blobs::{BlobMover, BlobTask, Ledger, Tally};
use crate::error::{Result, TransferError};
use crate::platform::{wanted, PlatformSpec};
use crate::report::{Events, ImageReport, Status};
use crate::source::Source;

/// Default number of images and blobs moved at once.
pub const DEFAULT_JOBS: usize = 6;

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Images and blob transfers in flight at once.
    pub jobs: usize,
    /// Platforms kept from multi-platform indexes; empty keeps all.
    pub platforms: Vec<PlatformSpec>,
    /// Also copy manifests that refer to each image (signatures, SBOMs).
    pub referrers: bool,
    /// Work out what would be copied; write nothing.
    pub dry_run: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            jobs: DEFAULT_JOBS,
            platforms: Vec::new(),
            referrers: false,
            dry_run: false,
        }
    }
}

/// One image to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageJob {
    pub source: Reference,
    pub destination: Reference,
    /// Platforms for this image; `None` uses [`Options::platforms`].
    pub platforms: Option<Vec<PlatformSpec>>,
}

impl ImageJob {
    pub fn new(source: Reference, destination: Reference) -> ImageJob {
        ImageJob {
            source,
            destination,
            platforms: None,
        }
    }
}

/// A manifest of the tree being copied, with what it refers to.
#[derive(Debug, Clone)]
pub struct TreeNode {
    pub manifest: Manifest,
    pub parsed: ParsedManifest,
    /// For an index: the children kept (by platform).
    pub kept: Vec<Digest>,
}

impl TreeNode {
    /// Some children of this index were left out (`--platform`).
    pub fn is_partial(&self) -> bool {
        self.kept.len() < self.parsed.manifests.len()
    }
}

type Node = TreeNode;

/// Copies images from a [`Source`] into a registry.
#[derive(Clone)]
pub struct Transfer {
    src: Arc<dyn Source>,
    dst: Client,
    options: Options,
    events: Arc<dyn Events>,
    mover: BlobMover,
    pings: Arc<Pings>,
}

/// A registry as one of the two clients sees it: (is destination, host).
type Side = (bool, String);

/// One ping per registry and side (source or destination client).
#[derive(Default)]
struct Pings(Mutex<HashMap<Side, Arc<OnceCell<()>>>>);

impl Pings {
    fn cell(&self, destination: bool, host: &str) -> Arc<OnceCell<()>> {
        self.0
            .lock()
            .expect("pings lock")
            .entry((destination, host.to_string()))
            .or_default()
            .clone()
    }
}

impl Transfer {
    /// From one registry client to another; they may be the same client.
    pub fn new(src: Client, dst: Client, options: Options, events: Arc<dyn Events>) -> Transfer {
        Transfer::from_source(Arc::new(src), dst, options, events)
    }

    /// From any [`Source`] (a bundle, a layout, an archive, a registry)
    /// into the registries `dst` writes to.
    pub fn from_source(
        src: Arc<dyn Source>,
        dst: Client,
        options: Options,
        events: Arc<dyn Events>,
    ) -> Transfer {
        let jobs = options.jobs.max(1);
        let mover = BlobMover {
            src: src.clone(),
            dst: dst.clone(),
            ledger: Arc::new(Ledger::default()),
            permits: Arc::new(Semaphore::new(jobs)),
            events: events.clone(),
            dry_run: options.dry_run,
        };
        Transfer {
            src,
            dst,
            options: Options { jobs, ..options },
            events,
            mover,
            pings: Arc::default(),
        }
    }

    /// Copy every job, `jobs` at a time; one report per job, in order. A
    /// failure stops only its own image.
    pub async fn run(&self, jobs: Vec<ImageJob>) -> Vec<ImageReport> {
        let mut reports: Vec<(usize, ImageReport)> =
            futures_util::stream::iter(jobs.into_iter().enumerate())
                .map(|(index, job)| {
                    let this = self.clone();
                    async move {
                        let source = job.source.to_string();
                        let handle =
                            tokio::spawn(async move { this.copy_image(index, &job).await });
                        let report = handle.await.unwrap_or_else(|e| {
                            ImageReport::failed(
                                source,
                                "internal",
                                format!("copy task failed: {e}"),
                            )
                        });
                        (index, report)
                    }
                })
                .buffer_unordered(self.options.jobs)
                .collect()
                .await;
        reports.sort_by_key(|(i, _)| *i);
        reports.into_iter().map(|(_, r)| r).collect()
    }

    /// Ping a registry once per run before its first request: images run
    /// in parallel and would otherwise all ping it at once. A failed ping
    /// is not an error here; the image's own request reports it.
    async fn ready(&self, destination: bool, host: &str) {
        let cell = self.pings.cell(destination, host);
        cell.get_or_init(|| async {
            if destination {
                let _ = self.dst.ping(host).await;
            } else {
                self.src.ready(host).await;
            }
        })
        .await;
    }

    /// Copy one image and say how it went.
    pub async fn copy_image(&self, index: usize, job: &ImageJob) -> ImageReport {
        let mut report =
            ImageReport::new(job.source.to_string(), Some(job.destination.to_string()));
        let tally = Arc::new(Tally::default());
        if let Err(e) = self.copy_into(index, job, &mut report, &tally).await {
            report.fail(e.cause(), e.to_string());
        }
        report.bytes_sent = tally.bytes_sent.load(Ordering::Relaxed);
        report.blobs_sent = tally.sent.load(Ordering::Relaxed);
        report.blobs_skipped = tally.skipped.load(Ordering::Relaxed);
        report.blobs_mounted = tally.mounted.load(Ordering::Relaxed);
        self.events.image_finished(index, &report);
        report
    }

    async fn copy_into(
        &self,
        index: usize,
        job: &ImageJob,
        report: &mut ImageReport,
        tally: &Arc<Tally>,
    ) -> Result<()> {
        tokio::join!(
            self.ready(false, job.source.host()),
            self.ready(true, job.destination.host())
        );
        // Both HEADs at once: an unchanged image costs one round trip, not
        // two. The destination's answer is wasted only when the source
        // fails, and then the image fails anyway.
        let (source, destination) = tokio::join!(
            self.src.resolve(&job.source),
            self.destination_digest(&job.destination)
        );
        let source_digest = source?;
        report.digest = Some(source_digest.clone());
        if destination? == Some(source_digest.clone()) {
            report.status = Status::UpToDate;
            self.events.image_planned(index, &report.source, 0);
        } else {
            let platforms = job.platforms.as_ref().unwrap_or(&self.options.platforms);
            let source_ref = job.source.with_digest(source_digest.clone());
            let tree = self.resolve_tree(&source_ref, platforms).await?;
            let bytes: u64 = unique_blobs(&tree).iter().map(|b| b.size).sum();
            self.events.image_planned(index, &report.source, bytes);
            self.move_blobs(index, job, &tree, tally).await?;
            self.write_manifests(job, &tree, report).await?;
        }
        if self.options.referrers {
            report.referrers_copied = self
                .copy_referrers(index, job, &source_digest, tally)
                .await?;
        }
        Ok(())
    }

    /// What the destination serves under its reference, if anything.
    async fn destination_digest(&self, destination: &Reference) -> Result<Option<Digest>> {
        match self.dst.head_manifest(destination).await {
            Ok(info) => Ok(Some(info.digest)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn resolve_tree(
        &self,
        reference: &Reference,
        platforms: &[PlatformSpec],
    ) -> Result<Vec<Node>> {
        resolve_tree(self.src.as_ref(), reference, platforms).await
    }

    async fn move_blobs(
        &self,
        index: usize,
        job: &ImageJob,
        tree: &[Node],
        tally: &Arc<Tally>,
    ) -> Result<()> {
        let tasks = unique_blobs(tree).into_iter().map(|blob| {
            let task = BlobTask {
                image: index,
                src_host: job.source.host().to_string(),
                src_repo: job.source.repository().clone(),
                dst_host: job.destination.host().to_string(),
                dst_repo: job.destination.repository().clone(),
                blob,
                tally: tally.clone(),
            };
            let mover = self.mover.clone();
            async move {
                tokio::spawn(async move { mover.ensure(&task).await })
                    .await
                    .unwrap_or_else(|e| {
                        Err(TransferError::Internal(format!("blob task failed: {e}")))
                    })
            }
        });
        // Every blob is tried even when one fails, so that a rerun has
        // less to do; the first error is the image's.
        let results = join_all(tasks).await;
        results.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
    }

    /// Write children by digest, then the top manifest under the
    /// destination's tag (or digest).
    async fn write_manifests(
        &self,
        job: &ImageJob,
        tree: &[Node],
        report: &mut ImageReport,
    ) -> Result<()> {
        let Some((top, children)) = tree.split_last() else {
            return Ok(());
        };
        if self.options.dry_run {
            report.status = Status::Planned;
            return Ok(());
        }
        let (host, repo) = (job.destination.host(), job.destination.repository());
        for child in children {
            let target = Target::Digest(child.manifest.digest.clone());
            self.put(host, repo, &target, &child.manifest).await?;
            report.manifests_written += 1;
        }
        let target = job.destination.target();
        let partial = top.kept.len() < top.parsed.manifests.len();
        match self.put(host, repo, &target, &top.manifest).await {
            Ok(()) => {}
            Err(TransferError::Registry(e)) if partial && refuses_sparse(&e) => {
                let digest = self.write_filtered_index(job, top).await?;
                report.notes.push(format!(
                    "the destination refused an index with absent platforms; wrote a filtered index with {} of {} platforms: {digest} (source {})",
                    top.kept.len(),
                    top.parsed.manifests.len(),
                    top.manifest.digest
                ));
                report.source_digest = Some(top.manifest.digest.clone());
                report.digest = Some(digest);
            }
            Err(e) => return Err(e),
        }
        report.manifests_written += 1;
        Ok(())
    }

    async fn put(
        &self,
        host: &str,
        repo: &RepositoryName,
        target: &Target,
        manifest: &Manifest,
    ) -> Result<()> {
        self.dst
            .put_manifest(
                host,
                repo,
                target,
                manifest.bytes.clone(),
                &manifest.media_type,
            )
            .await?;
        Ok(())
    }

    /// The index without the entries that were not copied.
    async fn write_filtered_index(&self, job: &ImageJob, top: &Node) -> Result<Digest> {
        let bytes = filtered_index(&top.manifest.bytes, &top.kept)?;
        let digest = Digest::sha256_of(&bytes);
        let target = match job.destination.target() {
            Target::Digest(_) => Target::Digest(digest.clone()),
            tag => tag,
        };
        self.dst
            .put_manifest(
                job.destination.host(),
                job.destination.repository(),
                &target,
                bytes,
                &top.manifest.media_type,
            )
            .await?;
        Ok(digest)
    }

    /// Copy what refers to `subject` (after the subject itself, so the
    /// destination can index them); returns how many were copied.
    async fn copy_referrers(
        &self,
        index: usize,
        job: &ImageJob,
        subject: &Digest,
        tally: &Arc<Tally>,
    ) -> Result<u32> {
        let found = self
            .src
            .referrers(job.source.host(), job.source.repository(), subject)
            .await?;
        let mut copied = 0;
        for referrer in &found {
            let child = ImageJob {
                source: by_digest(&job.source, &referrer.digest),
                destination: by_digest(&job.destination, &referrer.digest),
                platforms: Some(Vec::new()),
            };
            if self.destination_digest(&child.destination).await?.as_ref() == Some(&referrer.digest)
            {
                continue;
            }
            let tree = self.resolve_tree(&child.source, &[]).await?;
            self.move_blobs(index, &child, &tree, tally).await?;
            let mut scratch = ImageReport::new("", None);
            self.write_manifests(&child, &tree, &mut scratch).await?;
            copied += 1;
        }
        if !found.is_empty() && !self.options.dry_run {
            self.index_referrers_by_tag(job, subject, &found).await?;
        }
        Ok(copied)
    }

    /// A registry without the referrers API (distribution 2.8) finds
    /// referrers through the `<alg>-<hex>` tag index, which nothing else
    /// maintains there: add what the destination does not list yet.
    async fn index_referrers_by_tag(
        &self,
        job: &ImageJob,
        subject: &Digest,
        found: &[Descriptor],
    ) -> Result<()> {
        let (host, repo) = (job.destination.host(), job.destination.repository());
        let mut listed = self.dst.referrers(host, repo, subject, None).await?;
        let before = listed.len();
        for d in found {
            if !listed.iter().any(|l| l.digest == d.digest) {
                listed.push(d.clone());
            }
        }
        if listed.len() == before {
            return Ok(());
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": listed,
        });
        let bytes = serde_json::to_vec(&index)
            .map_err(|e| TransferError::Internal(format!("cannot write a referrers index: {e}")))?;
        let tag = referrers_tag(subject)
            .parse()
            .map_err(|e| TransferError::Internal(format!("referrers tag: {e}")))?;
        self.dst
            .put_manifest(
                host,
                repo,
                &Target::Tag(tag),
                Bytes::from(bytes),
                media_type::OCI_INDEX,
            )
            .await?;
        Ok(())
    }
}

/// The manifest at `reference` and, for an index, its kept children,
/// children first (the order they must be written in). Shared by copy
/// and `wharf save`.
pub async fn resolve_tree(
    src: &dyn Source,
    reference: &Reference,
    platforms: &[PlatformSpec],
) -> Result<Vec<Node>> {
    let manifest = src.manifest(reference).await?;
    let parsed = parse(&manifest)?;
    if !parsed.is_index() {
        return Ok(vec![Node {
            manifest,
            parsed,
            kept: Vec::new(),
        }]);
    }
    let kept: Vec<Digest> = parsed
        .manifests
        .iter()
        .filter(|d| wanted(platforms, d.platform.as_ref()))
        .map(|d| d.digest.clone())
        .collect();
    if kept.is_empty() {
        let asked: Vec<String> = platforms.iter().map(ToString::to_string).collect();
        return Err(TransferError::Invalid(format!(
            "the index has no manifest for {}",
            asked.join(", ")
        )));
    }
    let children = try_join_all(kept.iter().map(|d| {
        let child = by_digest(reference, d);
        // Children of a kept child are all kept: the platform choice was made.
        Box::pin(async move { resolve_tree(src, &child, &[]).await })
    }))
    .await?;
    let mut nodes: Vec<Node> = children.into_iter().flatten().collect();
    nodes.push(Node {
        manifest,
        parsed,
        kept,
    });
    Ok(nodes)
}

/// `digest` in the repository of `r`, without a tag, so that writing it
/// does not move one.
fn by_digest(r: &Reference, digest: &Digest) -> Reference {
    Reference::new(
        r.host(),
        r.repository().clone(),
        Target::Digest(digest.clone()),
    )
}

fn parse(manifest: &Manifest) -> Result<ParsedManifest> {
    ParsedManifest::parse(&manifest.bytes, Some(&manifest.media_type)).map_err(|e| {
        TransferError::Source(format!(
            "manifest {} cannot be copied: {e}",
            manifest.digest
        ))
    })
}

/// Every blob the tree needs, each once.
pub fn unique_blobs(tree: &[Node]) -> Vec<Descriptor> {
    let mut seen = HashSet::new();
    tree.iter()
        .flat_map(|n| n.parsed.required_blobs())
        .filter(|d| seen.insert(d.digest.clone()))
        .cloned()
        .collect()
}

/// The destination will not take an index whose children it lacks.
fn refuses_sparse(e: &wharf_client::Error) -> bool {
    e.api_errors()
        .iter()
        .any(|a| a.code == "MANIFEST_BLOB_UNKNOWN" || a.code == "MANIFEST_UNKNOWN")
}

/// `bytes` (an index) keeping only the entries in `kept`, every other field
/// as it was.
pub fn filtered_index(bytes: &[u8], kept: &[Digest]) -> Result<Bytes> {
    let invalid = |e: serde_json::Error| TransferError::Source(format!("index is not JSON: {e}"));
    let mut doc: serde_json::Value = serde_json::from_slice(bytes).map_err(invalid)?;
    let keep: HashSet<String> = kept.iter().map(ToString::to_string).collect();
    if let Some(list) = doc.get_mut("manifests").and_then(|m| m.as_array_mut()) {
        list.retain(|d| {
            d.get("digest")
                .and_then(|v| v.as_str())
                .is_some_and(|s| keep.contains(s))
        });
    }
    Ok(Bytes::from(
        serde_json::to_vec_pretty(&doc).map_err(invalid)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filtered_index_keeps_only_chosen_entries() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{a}","size":1}},{{"mediaType":"{}","digest":"{b}","size":1}}],"annotations":{{"x":"y"}}}}"#,
            media_type::OCI_INDEX,
            media_type::OCI_MANIFEST,
            media_type::OCI_MANIFEST
        );
        let out = filtered_index(index.as_bytes(), std::slice::from_ref(&b)).unwrap();
        let parsed = ParsedManifest::parse(&out, Some(media_type::OCI_INDEX)).unwrap();
        assert_eq!(parsed.manifests.len(), 1);
        assert_eq!(parsed.manifests[0].digest, b);
        assert_eq!(parsed.annotations.unwrap()["x"], "y");
    }
}
