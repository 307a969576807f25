//! Checking everything the store holds: every blob hashes to its name,
//! every tag points at a manifest the repository has, every manifest's
//! references are there. `repair` moves corrupt blobs aside and removes
//! tags and links that point at nothing; it never deletes good content.

use serde::Serialize;
use wharf_oci::{Digest, ParsedManifest, RepositoryName, Tag, Target};

use crate::error::{StorageError, StorageResult};
use crate::layout;
use crate::store::{hash_stream, Store};

/// One thing found wrong, and what `repair` did about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `corrupt-blob`, `dangling-tag`, `broken-link`, `missing-reference`.
    pub kind: &'static str,
    pub repository: Option<String>,
    pub subject: String,
    pub detail: String,
    pub repaired: bool,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct FsckReport {
    pub blobs_checked: usize,
    pub bytes_checked: u64,
    pub repositories_checked: usize,
    pub tags_checked: usize,
    pub manifests_checked: usize,
    pub problems: Vec<Problem>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Check the whole store; with `repair`, fix what can be fixed safely.
    pub async fn fsck(&self, repair: bool) -> StorageResult<FsckReport> {
        let mut report = FsckReport::default();
        self.check_blobs(repair, &mut report).await?;
        let repos = self.catalog(None, None).await?.tags;
        for name in repos {
            let Ok(repo) = name.parse::<RepositoryName>() else {
                continue;
            };
            report.repositories_checked += 1;
            self.check_repository(&repo, repair, &mut report).await?;
        }
        Ok(report)
    }

    async fn check_blobs(&self, repair: bool, report: &mut FsckReport) -> StorageResult<()> {
        for digest in self.backend().blob_list().await? {
            let Some(size) = self.backend().blob_size(&digest).await? else {
                continue; // removed while listing
            };
            let actual = self.hash_blob(&digest, size).await?;
            report.blobs_checked += 1;
            report.bytes_checked += size;
            if actual != digest {
                if repair {
                    self.backend().blob_quarantine(&digest).await?;
                }
                report.problems.push(Problem {
                    kind: "corrupt-blob",
                    repository: None,
                    subject: digest.to_string(),
                    detail: format!("its {size} bytes hash to {actual}"),
                    repaired: repair,
                });
            }
        }
        Ok(())
    }

    async fn hash_blob(&self, digest: &Digest, size: u64) -> StorageResult<Digest> {
        let stream = self.blob_read(digest, 0..size).await?;
        let what = format!("blob {digest}");
        let (hasher, _) = hash_stream(stream, digest.algorithm().hasher(), &what).await?;
        Ok(hasher.finish())
    }

    async fn check_repository(
        &self,
        repo: &RepositoryName,
        repair: bool,
        report: &mut FsckReport,
    ) -> StorageResult<()> {
        self.check_tags(repo, repair, report).await?;
        self.check_links(repo, repair, report).await?;
        self.check_manifests(repo, report).await
    }

    async fn check_tags(
        &self,
        repo: &RepositoryName,
        repair: bool,
        report: &mut FsckReport,
    ) -> StorageResult<()> {
        for name in self.backend().list(&layout::tags(repo)).await? {
            let Ok(tag) = name.parse::<Tag>() else {
                continue;
            };
            report.tags_checked += 1;
            let detail = match self.manifest_get(repo, &Target::Tag(tag.clone())).await {
                Ok(_) => continue,
                Err(StorageError::ManifestUnknown) => {
                    "points at a manifest the repository does not have".to_string()
                }
                Err(StorageError::Corrupt { reason, .. }) => reason,
                Err(e) => return Err(e),
            };
            if repair {
                self.backend().delete(&layout::tag(repo, &tag)).await?;
            }
            report.problems.push(Problem {
                kind: "dangling-tag",
                repository: Some(repo.to_string()),
                subject: tag.to_string(),
                detail,
                repaired: repair,
            });
        }
        Ok(())
    }

    /// Digests listed under `prefix/<alg>/<hex>`.
    pub(crate) async fn digests_under(&self, prefix: &str) -> StorageResult<Vec<Digest>> {
        let mut out = Vec::new();
        for alg in self.backend().list(prefix).await? {
            let Ok(algorithm) = alg.parse() else { continue };
            for hex in self.backend().list(&format!("{prefix}/{alg}")).await? {
                if let Ok(d) = Digest::new(algorithm, &hex) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    async fn check_links(
        &self,
        repo: &RepositoryName,
        repair: bool,
        report: &mut FsckReport,
    ) -> StorageResult<()> {
        let prefix = format!("{}/{}", layout::repository(repo), layout::LAYERS_DIR);
        for digest in self.digests_under(&prefix).await? {
            if self.backend().blob_size(&digest).await?.is_some() {
                continue;
            }
            if repair {
                self.backend()
                    .delete(&layout::layer_link(repo, &digest))
                    .await?;
            }
            report.problems.push(Problem {
                kind: "broken-link",
                repository: Some(repo.to_string()),
                subject: digest.to_string(),
                detail: "the repository lists a blob the store does not have".into(),
                repaired: repair,
            });
        }
        Ok(())
    }

    async fn check_manifests(
        &self,
        repo: &RepositoryName,
        report: &mut FsckReport,
    ) -> StorageResult<()> {
        for digest in self.digests_under(&layout::revisions(repo)).await? {
            report.manifests_checked += 1;
            let manifest = match self
                .manifest_get(repo, &Target::Digest(digest.clone()))
                .await
            {
                Ok(m) => m,
                // A corrupt manifest blob was already reported by the blob pass.
                Err(StorageError::ManifestUnknown | StorageError::Corrupt { .. }) => continue,
                Err(e) => return Err(e),
            };
            let Ok(parsed) = ParsedManifest::parse(&manifest.bytes, Some(&manifest.media_type))
            else {
                continue;
            };
            for blob in parsed.required_blobs() {
                if self.blob_size(repo, &blob.digest).await?.is_none() {
                    report
                        .problems
                        .push(missing(repo, &digest, &blob.digest, "blob"));
                }
            }
            for child in &parsed.manifests {
                let key = layout::revision(repo, &child.digest);
                if !self.backend().exists(&key).await? {
                    report
                        .problems
                        .push(missing(repo, &digest, &child.digest, "child manifest"));
                }
            }
        }
        Ok(())
    }
}

fn missing(repo: &RepositoryName, manifest: &Digest, referenced: &Digest, what: &str) -> Problem {
    Problem {
        kind: "missing-reference",
        repository: Some(repo.to_string()),
        subject: manifest.to_string(),
        detail: format!("references {what} {referenced}, which the repository does not have (sparse index, or lost content)"),
        repaired: false,
    }
}
