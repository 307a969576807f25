//! Online garbage collection with retention: removes manifests a policy no
//! longer wants, then every blob no remaining manifest refers to, abandoned
//! uploads, and repository links to removed blobs — while pushes and pulls
//! go on, in this process and in others sharing the same storage.
//!
//! The protocol, in order:
//!
//! 1. **Retention.** Per repository, the first [`RetentionRule`] whose
//!    pattern matches decides which top-level manifests stay (by push time,
//!    tags, age); without a match only untagged manifests older than the
//!    grace period go. Children of a kept index and referrers of a kept
//!    subject stay with it; those of a removed one go. Nothing younger than
//!    the rule's `min_age` is ever removed, so an index's children, pushed
//!    before it, are safe.
//! 2. **Mark.** Every digest a remaining manifest refers to (config, layers,
//!    child manifests, subject, and the manifest itself) is live.
//! 3. **Doom.** Each blob that is not live and older than the grace period
//!    gets a marker, `gc/doomed/<alg>/<hex>`, holding the collection's own
//!    random identity.
//! 4. **Settle.** Wait `settle`. A writer in another process that checked a
//!    blob before the marker appeared commits within that time, so its
//!    manifest is visible to the next step.
//! 5. **Re-mark and sweep.** Mark again; delete a doomed blob only if its
//!    marker still exists *and still holds this collection's identity*, it is
//!    still not live and still older than the grace period; then delete the
//!    marker.
//! 6. Remove repository links to the blobs removed, and uploads untouched
//!    for `upload_max_age`.
//!
//! Writers cooperate: [`Store::manifest_put`] (for every digest it refers
//! to) and every blob commit delete the marker of a digest they need before
//! they check it and commit ("rescue"), and a commit of bytes a blob already
//! holds refreshes its modification time. In this process a read-write lock
//! makes that exact: writers hold it shared from the rescue to the commit;
//! the collection holds it exclusively while it writes one marker, and while
//! it checks and deletes one object.
//!
//! Why a marker carries its collection's identity: with two collections at
//! once (`wharf gc` beside a server with a schedule, or two replicas), a
//! writer's rescue can be undone by the other collection, whose mark ran
//! before the writer's commit was visible and which writes the marker again.
//! An anonymous marker would then look to the first collection like its own
//! marker that nobody withdrew, and it would delete a blob its re-mark, taken
//! before the commit, did not see as live. With identities each sweep trusts
//! only its own marker: a rescue after that marker was written either removed
//! it or was followed by another collection's marker, which is not its own;
//! and that other collection wrote its marker after the rescue, so its own
//! re-mark, a settle period later, sees the writer's commit.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use wharf_oci::{Digest, ParsedManifest, RepositoryName, Tag, Target};

use crate::error::{StorageError, StorageResult};
use crate::layout;
use crate::store::{StorageUsage, Store};

/// A shell-style pattern: `*` and `?` stay within one path component, `**`
/// as a whole component matches any number of them, `[...]` a class.
#[derive(Debug, Clone)]
pub struct Glob {
    source: String,
    pattern: glob::Pattern,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

impl Glob {
    pub fn new(source: &str) -> Result<Glob, PatternError> {
        let pattern = glob::Pattern::new(source).map_err(|e| PatternError {
            pattern: source.to_string(),
            reason: e.msg.to_string(),
        })?;
        Ok(Glob {
            source: source.to_string(),
            pattern,
        })
    }

    pub fn matches(&self, text: &str) -> bool {
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        self.pattern.matches_with(text, options)
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// Which manifests of the repositories matching `repos` to keep.
#[derive(Debug, Clone)]
pub struct RetentionRule {
    pub repos: Glob,
    /// Keep the newest N top-level manifests (by push time), tagged or not.
    pub keep_last: Option<usize>,
    /// Keep every manifest with a tag matching one of these.
    pub keep_tags: Vec<Glob>,
    /// Never remove anything younger; the collection's grace period when unset.
    pub min_age: Option<Duration>,
    /// Remove even tagged manifests older than this (unless `keep_tags` or
    /// `keep_last` keep them): how pull-through-cached images age out.
    pub max_age: Option<Duration>,
}

impl RetentionRule {
    /// A rule that keeps what the default policy keeps, for `repos`.
    pub fn new(repos: &str) -> Result<RetentionRule, PatternError> {
        Ok(RetentionRule {
            repos: Glob::new(repos)?,
            keep_last: None,
            keep_tags: Vec::new(),
            min_age: None,
            max_age: None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Nothing younger is removed: neither manifests (unless a rule sets
    /// its own `min_age`) nor blobs. Covers a push's blobs waiting for
    /// their manifest.
    pub grace: Duration,
    /// Time between dooming blobs and deleting them; must exceed the time
    /// a writer in another process takes from checking a blob to committing
    /// the manifest that uses it.
    pub settle: Duration,
    /// Uploads untouched this long are abandoned and removed.
    pub upload_max_age: Duration,
    /// First matching rule applies; none matching: the default policy.
    pub retention: Vec<RetentionRule>,
    /// Report what would go, delete nothing.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: Duration::from_secs(24 * 3600),
            settle: Duration::from_secs(30),
            upload_max_age: Duration::from_secs(24 * 3600),
            retention: Vec::new(),
            dry_run: false,
        }
    }
}

/// How many objects of one kind went, and their bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Removed {
    pub count: u64,
    pub bytes: u64,
}

impl Removed {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes += bytes;
    }
}

/// One object removed (or, in a dry run, that would be).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemovedObject {
    /// `manifest`, `blob` or `upload`.
    pub kind: &'static str,
    pub repository: Option<String>,
    /// The digest, or the upload id.
    pub subject: String,
    pub bytes: u64,
    /// Tags a removed manifest had.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Manifests removed; bytes are the manifests' own.
    pub manifests: Removed,
    /// Blobs removed, manifest contents included: the bytes freed.
    pub blobs: Removed,
    pub uploads: Removed,
    /// Repository links to removed blobs that were dropped.
    pub links: u64,
    /// Blobs doomed and then kept: a writer needed them during the settle
    /// period, or a collection running at the same time doomed them since
    /// (and decides about them itself).
    pub rescued: u64,
    pub duration_seconds: f64,
    /// Blob count and bytes after the run (not in a dry run).
    pub storage: Option<StorageUsage>,
    pub removed: Vec<RemovedObject>,
}

/// Every digest a manifest refers to and that must therefore stay stored.
pub(crate) fn references(parsed: &ParsedManifest) -> impl Iterator<Item = &Digest> {
    parsed
        .config
        .iter()
        .chain(&parsed.layers)
        .chain(&parsed.manifests)
        .chain(&parsed.subject)
        .map(|d| &d.digest)
}

/// A manifest of one repository as retention sees it.
#[derive(Debug, Clone)]
struct RepoManifest {
    digest: Digest,
    pushed: SystemTime,
    size: u64,
    tags: Vec<String>,
    children: Vec<Digest>,
    subject: Option<Digest>,
}

/// The policy for one repository, defaults filled in.
struct Policy<'a> {
    keep_last: Option<usize>,
    keep_tags: &'a [Glob],
    min_age: Duration,
    max_age: Option<Duration>,
}

impl<'a> Policy<'a> {
    fn for_repository(repo: &str, options: &'a GcOptions) -> Policy<'a> {
        match options.retention.iter().find(|r| r.repos.matches(repo)) {
            Some(rule) => Policy {
                keep_last: rule.keep_last,
                keep_tags: &rule.keep_tags,
                min_age: rule.min_age.unwrap_or(options.grace),
                max_age: rule.max_age,
            },
            None => Policy {
                keep_last: None,
                keep_tags: &[],
                min_age: options.grace,
                max_age: None,
            },
        }
    }

    /// Does the policy keep a top-level manifest, `rank` being its place by
    /// push time (0 the newest)?
    fn keeps(&self, m: &RepoManifest, rank: usize, age: Duration) -> bool {
        if age < self.min_age {
            return true;
        }
        if m.tags
            .iter()
            .any(|t| self.keep_tags.iter().any(|g| g.matches(t)))
        {
            return true;
        }
        if self.max_age.is_some_and(|max| age >= max) {
            return false;
        }
        match self.keep_last {
            Some(n) => rank < n,
            None => !m.tags.is_empty(),
        }
    }
}

fn age(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

/// The manifests of one repository that `policy` removes, parents first.
fn plan_repository(policy: &Policy, manifests: &[RepoManifest], now: SystemTime) -> Vec<Digest> {
    let children: HashSet<&Digest> = manifests.iter().flat_map(|m| &m.children).collect();
    // Top-level: what a user pushed on purpose. Children follow their
    // index, referrers their subject — unless tagged themselves.
    let mut top: Vec<&RepoManifest> = manifests
        .iter()
        .filter(|m| !m.tags.is_empty() || (!children.contains(&m.digest) && m.subject.is_none()))
        .collect();
    top.sort_by(|a, b| b.pushed.cmp(&a.pushed).then(a.digest.cmp(&b.digest)));
    let mut kept: HashSet<&Digest> = top
        .iter()
        .enumerate()
        .filter(|(rank, m)| policy.keeps(m, *rank, age(now, m.pushed)))
        .map(|(_, m)| &m.digest)
        .collect();
    kept.extend(
        manifests
            .iter()
            .filter(|m| age(now, m.pushed) < policy.min_age)
            .map(|m| &m.digest),
    );
    // Children of kept indexes and referrers of kept subjects, to a fixpoint
    // (an index of indexes, a signature of an attestation).
    loop {
        let before = kept.len();
        for m in manifests {
            if kept.contains(&m.digest) {
                kept.extend(m.children.iter());
            } else if m.subject.as_ref().is_some_and(|s| kept.contains(s)) {
                kept.insert(&m.digest);
            }
        }
        if kept.len() == before {
            break;
        }
    }
    let mut removed: Vec<&RepoManifest> = manifests
        .iter()
        .filter(|m| !kept.contains(&m.digest))
        .collect();
    // Indexes before their children: a crash in between leaves no index
    // pointing at a child that is gone.
    removed.sort_by_key(|m| (m.children.is_empty(), m.digest.clone()));
    removed.into_iter().map(|m| m.digest.clone()).collect()
}

/// Digests the doom step marked, with their sizes.
pub(crate) type Doomed = Vec<(Digest, u64)>;

/// Markers older than this were left by a collection that stopped before
/// its sweep, and are removed. Younger ones may belong to a collection still
/// running (in another process) and stay: a marker only ever lets the
/// collection that wrote it delete, so a foreign one is never a reason to
/// delete anything, and removing one only ever keeps a blob.
const STALE_MARKER_AGE: Duration = Duration::from_secs(24 * 3600);

/// One collection run, as its doomed markers name it.
pub(crate) struct Collection {
    id: bytes::Bytes,
}

impl Collection {
    pub(crate) fn new() -> Collection {
        Collection {
            id: uuid::Uuid::new_v4().hyphenated().to_string().into(),
        }
    }
}

impl Store {
    /// Run one garbage collection (see the module documentation).
    pub async fn gc(&self, options: &GcOptions) -> StorageResult<GcReport> {
        let started = Instant::now();
        let mut report = GcReport {
            dry_run: options.dry_run,
            ..GcReport::default()
        };
        let removed_manifests = self.apply_retention(options, &mut report).await?;
        let live = self.mark(&removed_manifests).await?;
        let candidates = self.unreferenced_blobs(&live, options.grace).await?;
        if options.dry_run {
            for (digest, size) in &candidates {
                report.blobs.add(*size);
                report.removed.push(blob_removed(digest, *size));
            }
        } else {
            let run = Collection::new();
            self.doom(&run, &candidates).await?;
            tracing::debug!(doomed = candidates.len(), settle = ?options.settle, "garbage collection: settling");
            tokio::time::sleep(options.settle).await;
            let live = self.mark(&HashSet::new()).await?;
            let deleted = self
                .sweep(&run, &candidates, &live, options.grace, &mut report)
                .await?;
            self.drop_links(&deleted, &mut report).await?;
        }
        self.remove_abandoned_uploads(options, &mut report).await?;
        if !options.dry_run {
            report.storage = Some(self.refresh_storage_usage().await?);
        }
        report.duration_seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            dry_run = options.dry_run,
            manifests = report.manifests.count,
            blobs = report.blobs.count,
            blob_bytes = report.blobs.bytes,
            uploads = report.uploads.count,
            rescued = report.rescued,
            seconds = report.duration_seconds,
            "garbage collection finished"
        );
        Ok(report)
    }

    // --- retention -----------------------------------------------------------

    /// Remove (or, dry, list) the manifests retention lets go. Returns them.
    async fn apply_retention(
        &self,
        options: &GcOptions,
        report: &mut GcReport,
    ) -> StorageResult<HashSet<(String, Digest)>> {
        let now = SystemTime::now();
        let mut gone = HashSet::new();
        for name in self.catalog(None, None).await?.tags {
            let Ok(repo) = name.parse::<RepositoryName>() else {
                continue;
            };
            let manifests = self.repository_manifests(&repo).await?;
            let policy = Policy::for_repository(&name, options);
            let by_digest: HashMap<&Digest, &RepoManifest> =
                manifests.iter().map(|m| (&m.digest, m)).collect();
            for digest in plan_repository(&policy, &manifests, now) {
                let m = by_digest[&digest];
                if !options.dry_run && !self.remove_manifest(&repo, m).await? {
                    continue;
                }
                report.manifests.add(m.size);
                report.removed.push(RemovedObject {
                    kind: "manifest",
                    repository: Some(name.clone()),
                    subject: digest.to_string(),
                    bytes: m.size,
                    tags: m.tags.clone(),
                });
                gone.insert((name.clone(), digest));
            }
        }
        Ok(gone)
    }

    /// Every manifest of `repo` with its push time, tags and references.
    async fn repository_manifests(
        &self,
        repo: &RepositoryName,
    ) -> StorageResult<Vec<RepoManifest>> {
        let mut tags: HashMap<Digest, Vec<String>> = HashMap::new();
        for name in self.backend().list(&layout::tags(repo)).await? {
            let Ok(tag) = name.parse::<Tag>() else {
                continue;
            };
            if let Some(digest) = self.tag_target(repo, &tag).await? {
                tags.entry(digest).or_default().push(name);
            }
        }
        let mut out = Vec::new();
        for digest in self.digests_under(&layout::revisions(repo)).await? {
            let Some(pushed) = self
                .backend()
                .modified(&layout::revision(repo, &digest))
                .await?
            else {
                continue; // deleted while listing
            };
            let (size, children, subject) = match self.parsed_manifest(repo, &digest).await? {
                Some((size, parsed)) => (
                    size,
                    parsed.manifests.iter().map(|d| d.digest.clone()).collect(),
                    parsed.subject.map(|s| s.digest),
                ),
                None => (0, Vec::new(), None),
            };
            let mut tags = tags.remove(&digest).unwrap_or_default();
            tags.sort();
            out.push(RepoManifest {
                digest,
                pushed,
                size,
                tags,
                children,
                subject,
            });
        }
        Ok(out)
    }

    /// The digest a tag points at; `None` when absent or unreadable (fsck
    /// reports those).
    async fn tag_target(&self, repo: &RepositoryName, tag: &Tag) -> StorageResult<Option<Digest>> {
        let Some(bytes) = self.backend().get(&layout::tag(repo, tag)).await? else {
            return Ok(None);
        };
        Ok(std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| t.trim().parse().ok()))
    }

    /// A manifest's size and parsed form. `None` when it is gone or its bytes
    /// are lost: such a manifest cannot be served and protects nothing. A
    /// manifest whose bytes are corrupt stops the collection, since what it
    /// refers to is unknown: `wharf fsck --repair` moves it aside first.
    async fn parsed_manifest(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> StorageResult<Option<(u64, ParsedManifest)>> {
        let manifest = match self
            .manifest_get(repo, &Target::Digest(digest.clone()))
            .await
        {
            Ok(m) => m,
            Err(StorageError::ManifestUnknown) => return Ok(None),
            Err(e) => return Err(e),
        };
        match ParsedManifest::parse(&manifest.bytes, Some(&manifest.media_type)) {
            Ok(parsed) => Ok(Some((manifest.bytes.len() as u64, parsed))),
            Err(e) => Err(StorageError::Corrupt {
                key: layout::blob(digest),
                reason: format!("stored manifest does not parse: {e}"),
            }),
        }
    }

    /// Delete one manifest retention let go: its tags, referrer entry and
    /// revision. `false` when it was pushed again since it was planned (its
    /// revision is newer), and stays.
    async fn remove_manifest(
        &self,
        repo: &RepositoryName,
        m: &RepoManifest,
    ) -> StorageResult<bool> {
        let _exclusive = self.gc_lock().write().await;
        let revision = layout::revision(repo, &m.digest);
        if self.backend().modified(&revision).await? != Some(m.pushed) {
            return Ok(false);
        }
        // A push writes the revision before its tags: a tag that appeared
        // since the plan means the manifest was pushed again meanwhile.
        let mut tags = Vec::new();
        for name in self.backend().list(&layout::tags(repo)).await? {
            let Ok(tag) = name.parse::<Tag>() else {
                continue;
            };
            if self.tag_target(repo, &tag).await?.as_ref() == Some(&m.digest) {
                if !m.tags.contains(&name) {
                    return Ok(false);
                }
                tags.push(tag);
            }
        }
        // As a manifest DELETE does: tags, referrer entry, revision, and a
        // second look for tags a push in another process wrote meanwhile.
        self.remove_manifest_entries(repo, &m.digest, &tags, m.subject.as_ref())
            .await?;
        Ok(true)
    }

    // --- mark, doom, sweep ---------------------------------------------------

    /// Every digest a manifest still in the store refers to, and the
    /// manifests themselves; `skip` lists manifests to treat as removed.
    pub(crate) async fn mark(
        &self,
        skip: &HashSet<(String, Digest)>,
    ) -> StorageResult<HashSet<Digest>> {
        let mut live = HashSet::new();
        for name in self.catalog(None, None).await?.tags {
            let Ok(repo) = name.parse::<RepositoryName>() else {
                continue;
            };
            for digest in self.digests_under(&layout::revisions(&repo)).await? {
                if skip.contains(&(name.clone(), digest.clone())) {
                    continue;
                }
                if let Some((_, parsed)) = self.parsed_manifest(&repo, &digest).await? {
                    live.extend(references(&parsed).cloned());
                }
                live.insert(digest);
            }
        }
        Ok(live)
    }

    /// Blobs not in `live` and older than `grace`, with their sizes.
    pub(crate) async fn unreferenced_blobs(
        &self,
        live: &HashSet<Digest>,
        grace: Duration,
    ) -> StorageResult<Doomed> {
        let now = SystemTime::now();
        let mut out = Vec::new();
        for digest in self.backend().blob_list().await? {
            if live.contains(&digest) || !self.old_enough(&digest, grace, now).await? {
                continue;
            }
            if let Some(size) = self.backend().blob_size(&digest).await? {
                out.push((digest, size));
            }
        }
        out.sort();
        Ok(out)
    }

    async fn old_enough(
        &self,
        digest: &Digest,
        grace: Duration,
        now: SystemTime,
    ) -> StorageResult<bool> {
        Ok(self
            .backend()
            .blob_modified(digest)
            .await?
            .is_some_and(|t| age(now, t) >= grace))
    }

    /// Write this collection's marker for every candidate, after clearing
    /// markers a stopped collection left (clearing one only ever keeps a
    /// blob). A candidate another collection has doomed too gets this
    /// collection's marker instead: the other one then keeps the blob.
    pub(crate) async fn doom(&self, run: &Collection, candidates: &Doomed) -> StorageResult<()> {
        self.clear_stale_markers().await?;
        for (digest, _) in candidates {
            let _exclusive = self.gc_lock().write().await;
            self.backend()
                .put(
                    &layout::doomed(digest),
                    run.id.clone(),
                    crate::Durability::Volatile,
                )
                .await?;
        }
        Ok(())
    }

    async fn clear_stale_markers(&self) -> StorageResult<()> {
        let now = SystemTime::now();
        for algorithm in self.backend().list(layout::DOOMED).await? {
            let dir = format!("{}/{algorithm}", layout::DOOMED);
            for hex in self.backend().list(&dir).await? {
                let marker = format!("{dir}/{hex}");
                let stale = self
                    .backend()
                    .modified(&marker)
                    .await?
                    .is_some_and(|t| age(now, t) >= STALE_MARKER_AGE);
                if stale {
                    self.backend().delete(&marker).await?;
                }
            }
        }
        Ok(())
    }

    /// Does the marker of `digest` still hold `run`'s identity? Not when a
    /// writer withdrew it, nor when another collection doomed the blob since.
    async fn still_doomed_by(&self, run: &Collection, digest: &Digest) -> StorageResult<bool> {
        let marker = self.backend().get(&layout::doomed(digest)).await?;
        Ok(marker.is_some_and(|id| id == run.id))
    }

    /// Delete each blob still doomed by this collection's own marker (no
    /// writer rescued it, no other collection took it over), that is still
    /// not live and still old. Returns the digests deleted.
    pub(crate) async fn sweep(
        &self,
        run: &Collection,
        candidates: &Doomed,
        live: &HashSet<Digest>,
        grace: Duration,
        report: &mut GcReport,
    ) -> StorageResult<HashSet<Digest>> {
        let mut deleted = HashSet::new();
        for (digest, _) in candidates {
            let _exclusive = self.gc_lock().write().await;
            if !self.still_doomed_by(run, digest).await? {
                // Withdrawn, or another collection's now: not ours to remove.
                report.rescued += 1;
                continue;
            }
            let marker = layout::doomed(digest);
            let doomed =
                !live.contains(digest) && self.old_enough(digest, grace, SystemTime::now()).await?;
            if !doomed {
                report.rescued += 1;
                self.backend().delete(&marker).await?;
                continue;
            }
            if let Some(size) = self.backend().blob_size(digest).await? {
                if self.backend().blob_delete(digest).await? {
                    self.blob_removed(size);
                    report.blobs.add(size);
                    report.removed.push(blob_removed(digest, size));
                    deleted.insert(digest.clone());
                }
            }
            self.backend().delete(&marker).await?;
        }
        Ok(deleted)
    }

    /// Drop repository links to blobs this run deleted, unless a writer has
    /// pushed the blob again since.
    async fn drop_links(
        &self,
        deleted: &HashSet<Digest>,
        report: &mut GcReport,
    ) -> StorageResult<()> {
        if deleted.is_empty() {
            return Ok(());
        }
        for name in self.catalog(None, None).await?.tags {
            let Ok(repo) = name.parse::<RepositoryName>() else {
                continue;
            };
            for digest in self.digests_under(&layout::layer_links(&repo)).await? {
                if !deleted.contains(&digest) {
                    continue;
                }
                let _exclusive = self.gc_lock().write().await;
                if self.backend().blob_size(&digest).await?.is_none()
                    && self
                        .backend()
                        .delete(&layout::layer_link(&repo, &digest))
                        .await?
                {
                    report.links += 1;
                }
            }
        }
        Ok(())
    }

    // --- uploads -------------------------------------------------------------

    async fn remove_abandoned_uploads(
        &self,
        options: &GcOptions,
        report: &mut GcReport,
    ) -> StorageResult<()> {
        for (id, age_secs) in self.backend().upload_list().await? {
            if age_secs < options.upload_max_age.as_secs()
                || !layout::is_valid_upload_id(&id)
                || self.upload_in_use(&id)
            {
                continue;
            }
            let size = self.backend().upload_size(&id).await?.unwrap_or(0);
            if !options.dry_run {
                if !self.backend().upload_delete(&id).await? {
                    continue; // finished or cancelled meanwhile
                }
                self.forget_slot(&id);
            }
            report.uploads.add(size);
            report.removed.push(RemovedObject {
                kind: "upload",
                repository: None,
                subject: id,
                bytes: size,
                tags: Vec::new(),
            });
        }
        Ok(())
    }
}

fn blob_removed(digest: &Digest, size: u64) -> RemovedObject {
    RemovedObject {
        kind: "blob",
        repository: None,
        subject: digest.to_string(),
        bytes: size,
        tags: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    fn manifest(n: u8, age_hours: u64, tags: &[&str], now: SystemTime) -> RepoManifest {
        RepoManifest {
            digest: digest(n),
            pushed: now - Duration::from_secs(age_hours * 3600),
            size: 100,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            children: Vec::new(),
            subject: None,
        }
    }

    fn options(rules: Vec<RetentionRule>) -> GcOptions {
        GcOptions {
            grace: Duration::from_secs(3600),
            retention: rules,
            ..GcOptions::default()
        }
    }

    fn plan(
        options: &GcOptions,
        repo: &str,
        manifests: &[RepoManifest],
        now: SystemTime,
    ) -> Vec<Digest> {
        let mut out = plan_repository(&Policy::for_repository(repo, options), manifests, now);
        out.sort();
        out
    }

    fn sorted(mut v: Vec<Digest>) -> Vec<Digest> {
        v.sort();
        v
    }

    #[test]
    fn globs_keep_to_path_components() {
        let g = Glob::new("registry.k8s.io/**").unwrap();
        assert!(g.matches("registry.k8s.io/coredns/coredns"));
        assert!(g.matches("registry.k8s.io/pause"));
        assert!(!g.matches("docker.io/library/alpine"));
        let one = Glob::new("team/*").unwrap();
        assert!(one.matches("team/app"));
        assert!(!one.matches("team/app/sub"), "* must not cross a /");
        assert!(Glob::new("v*").unwrap().matches("v1.2.3"));
        assert!(Glob::new("[").is_err());
    }

    #[test]
    fn default_policy_removes_only_old_untagged_manifests() {
        let now = SystemTime::now();
        let ms = [
            manifest(1, 48, &["v1"], now),
            manifest(2, 48, &[], now),
            manifest(3, 0, &[], now),
        ];
        assert_eq!(plan(&options(vec![]), "any", &ms, now), vec![digest(2)]);
    }

    #[test]
    fn keep_last_keep_tags_and_max_age() {
        let now = SystemTime::now();
        let ms = [
            manifest(1, 10, &["v1"], now),
            manifest(2, 9, &["stable"], now),
            manifest(3, 8, &["build-3"], now),
            manifest(4, 7, &[], now),
            manifest(5, 6, &["build-5"], now),
        ];
        let mut rule = RetentionRule::new("ci/**").unwrap();
        rule.keep_last = Some(2);
        rule.keep_tags = vec![Glob::new("v*").unwrap(), Glob::new("stable").unwrap()];
        let opts = options(vec![rule]);
        // Newest two (5, 4) and the keep_tags matches (1, 2) stay.
        assert_eq!(plan(&opts, "ci/app", &ms, now), vec![digest(3)]);
        // Another repository falls back to the default policy: untagged only.
        assert_eq!(plan(&opts, "other", &ms, now), vec![digest(4)]);

        let mut cache = RetentionRule::new("registry.k8s.io/**").unwrap();
        cache.max_age = Some(Duration::from_secs(8 * 3600));
        cache.keep_tags = vec![Glob::new("stable").unwrap()];
        let opts = options(vec![cache]);
        // Older than max_age: gone even when tagged, except by keep_tags.
        assert_eq!(
            plan(&opts, "registry.k8s.io/pause", &ms, now),
            sorted(vec![digest(1), digest(3), digest(4)])
        );
    }

    #[test]
    fn min_age_protects_everything_young() {
        let now = SystemTime::now();
        let ms = [manifest(1, 2, &[], now), manifest(2, 2, &["x"], now)];
        let mut rule = RetentionRule::new("**").unwrap();
        rule.keep_last = Some(0);
        rule.min_age = Some(Duration::from_secs(3 * 3600));
        assert!(plan(&options(vec![rule.clone()]), "a", &ms, now).is_empty());
        rule.min_age = Some(Duration::from_secs(3600));
        assert_eq!(
            plan(&options(vec![rule]), "a", &ms, now),
            sorted(vec![digest(1), digest(2)])
        );
    }

    #[test]
    fn children_and_referrers_follow_their_parent() {
        let now = SystemTime::now();
        let mut kept_index = manifest(1, 48, &["v1"], now);
        kept_index.children = vec![digest(2)];
        let kept_child = manifest(2, 48, &[], now);
        let mut gone_index = manifest(3, 48, &[], now);
        gone_index.children = vec![digest(4)];
        let gone_child = manifest(4, 48, &[], now);
        let mut kept_sig = manifest(5, 48, &[], now);
        kept_sig.subject = Some(digest(1));
        let mut gone_sig = manifest(6, 48, &[], now);
        gone_sig.subject = Some(digest(3));
        let mut sig_of_sig = manifest(7, 48, &[], now);
        sig_of_sig.subject = Some(digest(5));
        let ms = [
            kept_index, kept_child, gone_index, gone_child, kept_sig, gone_sig, sig_of_sig,
        ];
        let removed = plan_repository(&Policy::for_repository("r", &options(vec![])), &ms, now);
        assert_eq!(removed[0], digest(3), "the index goes before its child");
        assert_eq!(
            sorted(removed),
            sorted(vec![digest(3), digest(4), digest(6)])
        );
    }
}
