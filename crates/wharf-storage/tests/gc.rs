//! Garbage collection on a real filesystem store: retention policies, index
//! children and referrers, dry runs, abandoned uploads, and collection while
//! other tasks — with their own `Store`, as another process would — push
//! images that share blobs with the garbage.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use wharf_oci::{media_type, Algorithm, Digest, RepositoryName, Target};
use wharf_storage::testsuite::{age_tree, stream_of};
use wharf_storage::{
    layout, Backend, FsBackend, GcOptions, GcReport, Glob, ManifestPutOptions, RetentionRule,
    StorageError, Store,
};

const HOUR: Duration = Duration::from_secs(3600);

fn repo(name: &str) -> RepositoryName {
    name.parse().unwrap()
}

async fn push_blob(store: &Store, r: &RepositoryName, data: &[u8]) -> Digest {
    let d = Digest::sha256_of(data);
    store
        .put_blob(r, &d, stream_of(vec![Bytes::copy_from_slice(data)]))
        .await
        .unwrap();
    d
}

fn image_manifest(config: &[u8], layers: &[&[u8]], subject: Option<&Digest>) -> Bytes {
    let layers: Vec<String> = layers
        .iter()
        .map(|l| {
            format!(
                r#"{{"mediaType":"{}","digest":"{}","size":{}}}"#,
                media_type::OCI_LAYER_GZIP,
                Digest::sha256_of(l),
                l.len()
            )
        })
        .collect();
    let subject = subject
        .map(|s| {
            format!(
                r#","subject":{{"mediaType":"{}","digest":"{s}","size":1}}"#,
                media_type::OCI_MANIFEST
            )
        })
        .unwrap_or_default();
    Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[{}]{subject}}}"#,
        media_type::OCI_MANIFEST,
        media_type::OCI_CONFIG,
        Digest::sha256_of(config),
        config.len(),
        layers.join(",")
    ))
}

fn index_manifest(children: &[(&Digest, usize)]) -> Bytes {
    let children: Vec<String> = children
        .iter()
        .map(|(d, size)| {
            format!(
                r#"{{"mediaType":"{}","digest":"{d}","size":{size},"platform":{{"architecture":"amd64","os":"linux"}}}}"#,
                media_type::OCI_MANIFEST
            )
        })
        .collect();
    Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{}]}}"#,
        media_type::OCI_INDEX,
        children.join(",")
    ))
}

/// Push an image's blobs and manifest; `tag` or by digest.
async fn push_image(
    store: &Store,
    r: &RepositoryName,
    config: &[u8],
    layers: &[&[u8]],
    tag: Option<&str>,
) -> Result<Digest, StorageError> {
    push_blob(store, r, config).await;
    for l in layers {
        push_blob(store, r, l).await;
    }
    put_manifest(store, r, image_manifest(config, layers, None), tag).await
}

async fn put_manifest(
    store: &Store,
    r: &RepositoryName,
    bytes: Bytes,
    tag: Option<&str>,
) -> Result<Digest, StorageError> {
    let target = match tag {
        Some(t) => Target::Tag(t.parse().unwrap()),
        None => Target::Digest(Digest::sha256_of(&bytes)),
    };
    let put = store
        .manifest_put(r, &target, bytes, None, &ManifestPutOptions::default())
        .await?;
    Ok(put.digest)
}

fn quick(retention: Vec<RetentionRule>) -> GcOptions {
    GcOptions {
        grace: HOUR,
        settle: Duration::from_millis(50),
        retention,
        ..GcOptions::default()
    }
}

async fn has_manifest(store: &Store, r: &RepositoryName, d: &Digest) -> bool {
    match store.manifest_get(r, &Target::Digest(d.clone())).await {
        Ok(_) => true,
        Err(StorageError::ManifestUnknown) => false,
        Err(e) => panic!("{e}"),
    }
}

async fn assert_clean(store: &Store) {
    let fsck = store.fsck(false).await.unwrap();
    assert!(fsck.is_clean(), "{:#?}", fsck.problems);
}

fn removed_set(report: &GcReport) -> HashSet<(String, Option<String>, String)> {
    report
        .removed
        .iter()
        .map(|o| (o.kind.to_string(), o.repository.clone(), o.subject.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_policy_removes_old_untagged_manifests_and_their_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_fs(dir.path()).unwrap();
    let r = repo("app");
    let shared: &[u8] = b"shared base layer";
    let tagged = push_image(
        &store,
        &r,
        b"{\"v\":1}",
        &[shared, b"layer one"],
        Some("v1"),
    )
    .await
    .unwrap();
    let untagged = push_image(&store, &r, b"{\"v\":2}", &[shared, b"layer two"], None)
        .await
        .unwrap();
    let stray = push_blob(&store, &r, b"a blob no manifest uses").await;
    age_tree(dir.path(), 48 * HOUR);
    // Pushed just now: younger than the grace period, so it stays.
    let young = push_image(&store, &r, b"{\"v\":3}", &[b"layer three"], None)
        .await
        .unwrap();
    let young_stray = push_blob(&store, &r, b"a young stray blob").await;
    let before = store.refresh_storage_usage().await.unwrap();

    let report = store.gc(&quick(vec![])).await.unwrap();
    assert_eq!(report.manifests.count, 1, "{report:#?}");
    assert!(has_manifest(&store, &r, &tagged).await);
    assert!(!has_manifest(&store, &r, &untagged).await);
    assert!(has_manifest(&store, &r, &young).await);
    // The untagged image's own config, layer and manifest bytes, and the stray.
    let gone: HashSet<Digest> = [
        Digest::sha256_of(b"{\"v\":2}"),
        Digest::sha256_of(b"layer two"),
        untagged.clone(),
        stray.clone(),
    ]
    .into();
    let removed: HashSet<Digest> = report
        .removed
        .iter()
        .filter(|o| o.kind == "blob")
        .map(|o| o.subject.parse().unwrap())
        .collect();
    assert_eq!(removed, gone);
    for d in &gone {
        assert_eq!(store.backend().blob_size(d).await.unwrap(), None, "{d}");
    }
    for d in [&Digest::sha256_of(shared), &young_stray] {
        assert!(store.backend().blob_size(d).await.unwrap().is_some());
    }
    assert_eq!(
        report.links, 3,
        "links to the removed layer, config and stray"
    );
    let after = report.storage.expect("usage after a run");
    assert_eq!(after.blobs, before.blobs - 4);
    assert_eq!(after.bytes + report.blobs.bytes, before.bytes);
    assert_eq!(store.storage_usage(), Some(after));
    assert!(
        !dir.path().join(layout::DOOMED).exists()
            || std::fs::read_dir(dir.path().join("gc/doomed/sha256"))
                .map(|d| d.count() == 0)
                .unwrap_or(true),
        "markers are removed after the sweep"
    );
    assert_clean(&store).await;
    // A second run finds nothing more.
    let again = store.gc(&quick(vec![])).await.unwrap();
    assert_eq!((again.manifests.count, again.blobs.count), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_rules_keep_last_keep_tags_and_max_age() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_fs(dir.path()).unwrap();
    let ci = repo("ci/app");
    let cached = repo("registry.k8s.io/pause");
    let mut ci_images = Vec::new();
    for (i, tag) in ["v1.0", "build-1", "build-2", "build-3", "stable"]
        .iter()
        .enumerate()
    {
        let config = format!("{{\"ci\":{i}}}");
        let d = push_image(&store, &ci, config.as_bytes(), &[], Some(tag))
            .await
            .unwrap();
        // Push times one hour apart, oldest first.
        let rev = dir
            .path()
            .join("repositories/ci/app/_manifests/revisions/sha256")
            .join(d.hex());
        let f = std::fs::File::options().write(true).open(rev).unwrap();
        f.set_modified(SystemTime::now() - (30 - i as u32) * HOUR)
            .unwrap();
        ci_images.push(d);
    }
    let old_cached = push_image(&store, &cached, b"{\"p\":1}", &[], Some("3.9"))
        .await
        .unwrap();
    let kept_cached = push_image(&store, &cached, b"{\"p\":2}", &[], Some("3.10"))
        .await
        .unwrap();
    age_tree(&dir.path().join("blobs"), 48 * HOUR);
    age_tree(
        &dir.path().join("repositories/registry.k8s.io"),
        40 * 24 * HOUR,
    );
    let rev = dir
        .path()
        .join("repositories/registry.k8s.io/pause/_manifests/revisions/sha256")
        .join(kept_cached.hex());
    std::fs::File::options()
        .write(true)
        .open(rev)
        .unwrap()
        .set_modified(SystemTime::now() - 2 * 24 * HOUR)
        .unwrap();

    let mut ci_rule = RetentionRule::new("ci/**").unwrap();
    ci_rule.keep_last = Some(2);
    ci_rule.keep_tags = vec![Glob::new("v*").unwrap()];
    let mut cache_rule = RetentionRule::new("registry.k8s.io/**").unwrap();
    cache_rule.max_age = Some(30 * 24 * HOUR);
    let report = store.gc(&quick(vec![ci_rule, cache_rule])).await.unwrap();

    // keep_last 2 keeps build-3 and stable, keep_tags keeps v1.0.
    let present = |i: usize| has_manifest(&store, &ci, &ci_images[i]);
    assert!(present(0).await && present(3).await && present(4).await);
    assert!(!present(1).await && !present(2).await);
    assert!(
        !has_manifest(&store, &cached, &old_cached).await,
        "older than max_age"
    );
    assert!(has_manifest(&store, &cached, &kept_cached).await);
    assert_eq!(report.manifests.count, 3);
    let tags = store.tags(&ci, None, None).await.unwrap().tags;
    assert_eq!(tags, vec!["build-3", "stable", "v1.0"]);
    assert_clean(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_children_and_referrers_follow_their_parent() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_fs(dir.path()).unwrap();
    let r = repo("multi");
    let mut children = Vec::new();
    for arch in ["amd64", "arm64", "old-amd64"] {
        let config = format!("{{\"arch\":\"{arch}\"}}");
        let layer = format!("{arch} layer");
        let m = image_manifest(config.as_bytes(), &[layer.as_bytes()], None);
        push_blob(&store, &r, config.as_bytes()).await;
        push_blob(&store, &r, layer.as_bytes()).await;
        let d = put_manifest(&store, &r, m.clone(), None).await.unwrap();
        children.push((d, m.len()));
    }
    let kept_index = index_manifest(&[
        (&children[0].0, children[0].1),
        (&children[1].0, children[1].1),
    ]);
    let kept = put_manifest(&store, &r, kept_index, Some("v1"))
        .await
        .unwrap();
    let old_index = index_manifest(&[(&children[2].0, children[2].1)]);
    let old = put_manifest(&store, &r, old_index, None).await.unwrap();
    push_blob(&store, &r, b"{}").await;
    let sig_of_kept = image_manifest(b"{}", &[], Some(&kept));
    let sig_kept = put_manifest(&store, &r, sig_of_kept, None).await.unwrap();
    let sig_of_old = image_manifest(b"{}", &[b"sbom"], Some(&old));
    push_blob(&store, &r, b"sbom").await;
    let sig_old = put_manifest(&store, &r, sig_of_old, None).await.unwrap();
    age_tree(dir.path(), 48 * HOUR);

    let report = store.gc(&quick(vec![])).await.unwrap();
    for d in [&kept, &children[0].0, &children[1].0, &sig_kept] {
        assert!(has_manifest(&store, &r, d).await, "{d} must stay");
    }
    for d in [&old, &children[2].0, &sig_old] {
        assert!(!has_manifest(&store, &r, d).await, "{d} must go");
    }
    assert_eq!(report.manifests.count, 3);
    let listed = |subject| store.referrers(&r, subject, None, None, None);
    assert_eq!(listed(&kept).await.unwrap().descriptors.len(), 1);
    assert!(listed(&old).await.unwrap().descriptors.is_empty());
    for gone in [b"old-amd64 layer".as_slice(), b"sbom"] {
        let d = Digest::sha256_of(gone);
        assert_eq!(store.backend().blob_size(&d).await.unwrap(), None);
    }
    assert!(store
        .backend()
        .blob_size(&Digest::sha256_of(b"{}"))
        .await
        .unwrap()
        .is_some());
    assert_clean(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_deletes_nothing_and_reports_what_a_run_removes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_fs(dir.path()).unwrap();
    let r = repo("dry");
    push_image(&store, &r, b"{\"d\":1}", &[b"kept layer"], Some("v1"))
        .await
        .unwrap();
    push_image(&store, &r, b"{\"d\":2}", &[b"dropped layer"], None)
        .await
        .unwrap();
    push_blob(&store, &r, b"stray").await;
    let upload = store.start_upload(&r, Algorithm::Sha256).await.unwrap();
    store
        .append_upload(
            &r,
            &upload,
            Some(0),
            stream_of(vec![Bytes::from_static(b"partial")]),
        )
        .await
        .unwrap();
    age_tree(dir.path(), 48 * HOUR);
    let snapshot = || {
        let mut files = Vec::new();
        let mut pending = vec![dir.path().to_path_buf()];
        while let Some(d) = pending.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    pending.push(p.clone());
                }
                files.push(p);
            }
        }
        files.sort();
        files
    };
    let before = snapshot();
    let dry = store
        .gc(&GcOptions {
            dry_run: true,
            ..quick(vec![])
        })
        .await
        .unwrap();
    assert_eq!(snapshot(), before, "a dry run changes nothing");
    assert!(dry.dry_run && dry.storage.is_none());
    assert_eq!(
        (dry.manifests.count, dry.blobs.count, dry.uploads.count),
        (1, 4, 1),
        "{dry:#?}"
    );
    let real = store.gc(&quick(vec![])).await.unwrap();
    assert_eq!(removed_set(&dry), removed_set(&real));
    assert_eq!(
        (dry.manifests, dry.blobs, dry.uploads),
        (real.manifests, real.blobs, real.uploads)
    );
    assert_eq!(real.uploads.bytes, 7);
    assert!(matches!(
        store.upload_status(&r, &upload).await,
        Err(StorageError::UploadUnknown(_))
    ));
    assert_clean(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_uploads_go_and_recent_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_fs(dir.path()).unwrap();
    let r = repo("uploads");
    let old = store.start_upload(&r, Algorithm::Sha256).await.unwrap();
    age_tree(&dir.path().join("uploads"), 25 * HOUR);
    let recent = store.start_upload(&r, Algorithm::Sha256).await.unwrap();
    let report = store.gc(&quick(vec![])).await.unwrap();
    assert_eq!(report.uploads.count, 1);
    assert!(store.upload_status(&r, &old).await.is_err());
    assert!(store.upload_status(&r, &recent).await.is_ok());
}

/// Run a collection in the background and wait until it has doomed `digest`.
async fn gc_until_doomed(
    gc_store: &Store,
    digest: &Digest,
    settle: Duration,
) -> tokio::task::JoinHandle<GcReport> {
    let options = GcOptions {
        grace: Duration::ZERO,
        settle,
        ..GcOptions::default()
    };
    let runner = gc_store.clone();
    let handle = tokio::spawn(async move { runner.gc(&options).await.unwrap() });
    let marker = layout::doomed(digest);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !gc_store.backend().exists(&marker).await.unwrap() {
        assert!(
            Instant::now() < deadline,
            "the collection never doomed {digest}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle
}

/// A layer nothing refers to when the collection marks, and that a manifest
/// pushed during the settle period then uses, survives — whether the
/// pusher shares the collection's `Store` or has its own (another process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_pushed_while_settling_rescues_its_blobs() {
    for separate_store in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(FsBackend::open(dir.path()).unwrap());
        let gc_store = Store::new(backend.clone());
        let pusher = if separate_store {
            Store::new(backend.clone())
        } else {
            gc_store.clone()
        };
        let r = repo("rescue");
        let layer: &[u8] = b"unreferenced at mark time";
        let layer_digest = push_blob(&pusher, &r, layer).await;
        push_blob(&pusher, &r, b"{}").await;
        let gc = gc_until_doomed(&gc_store, &layer_digest, Duration::from_secs(2)).await;
        put_manifest(
            &pusher,
            &r,
            image_manifest(b"{}", &[layer], None),
            Some("v1"),
        )
        .await
        .expect("the blobs are still there during the settle period");
        let report = gc.await.unwrap();
        assert!(report.rescued >= 1, "{report:#?}");
        assert!(
            pusher.blob_size(&r, &layer_digest).await.unwrap().is_some(),
            "a blob a new manifest uses was deleted (separate store: {separate_store})"
        );
        assert_clean(&pusher).await;
    }
}

/// Many tasks push images sharing layers with garbage while collections run
/// back to back with no grace period: every blob is fair game the moment
/// nothing refers to it. Afterwards every pushed image is complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn collection_under_concurrent_pushes_loses_nothing() {
    for separate_store in [false, true] {
        concurrent_pushes(separate_store).await;
    }
}

async fn concurrent_pushes(separate_store: bool) {
    const PUSHERS: usize = 6;
    const IMAGES: usize = 12;
    const SHARED: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(FsBackend::open(dir.path()).unwrap());
    let gc_store = Store::new(backend.clone());
    let shared: Vec<Vec<u8>> = (0..SHARED)
        .map(|i| format!("shared layer {i} {}", "x".repeat(1000 * i)).into_bytes())
        .collect();
    // Garbage: the shared layers, which images pushed later will use, and
    // junk nothing will ever use.
    for (i, layer) in shared.iter().enumerate() {
        push_blob(&gc_store, &repo(&format!("garbage/{i}")), layer).await;
    }
    const JUNK: usize = 20;
    for i in 0..JUNK {
        push_blob(
            &gc_store,
            &repo("garbage/junk"),
            format!("junk {i}").as_bytes(),
        )
        .await;
    }
    let done = Arc::new(AtomicBool::new(false));
    let retries = Arc::new(AtomicU64::new(0));
    let mut pushers = Vec::new();
    for p in 0..PUSHERS {
        let store = if separate_store {
            Store::new(backend.clone())
        } else {
            gc_store.clone()
        };
        let (shared, retries) = (shared.clone(), retries.clone());
        pushers.push(tokio::spawn(async move {
            let r = repo(&format!("team/app{p}"));
            let mut pushed = Vec::new();
            for i in 0..IMAGES {
                let config = format!("{{\"pusher\":{p},\"image\":{i}}}");
                let own = format!("own layer {p}/{i}");
                // The first half uses only its own layers, so the shared
                // ones are garbage to the collections running meanwhile.
                let layers: Vec<&[u8]> = if i < IMAGES / 2 {
                    vec![own.as_bytes()]
                } else {
                    vec![shared[(p + i) % SHARED].as_slice(), own.as_bytes()]
                };
                let tag = format!("v{i}");
                // A client whose blobs were collected before its manifest
                // arrived gets MANIFEST_BLOB_UNKNOWN and pushes them again.
                let digest = loop {
                    match push_image(&store, &r, config.as_bytes(), &layers, Some(&tag)).await {
                        Ok(d) => break d,
                        Err(StorageError::ManifestBlobUnknown(_)) => {
                            retries.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("push failed: {e}"),
                    }
                };
                pushed.push((r.clone(), tag, digest));
            }
            pushed
        }));
    }
    let collector = {
        let (store, done) = (gc_store.clone(), done.clone());
        tokio::spawn(async move {
            // Blobs have no grace at all. Manifests get one across
            // processes: a push writes its revision before its tags, and
            // only this process's lock shows a collection both at once.
            let mut manifests = RetentionRule::new("**").unwrap();
            manifests.min_age = Some(HOUR);
            let options = GcOptions {
                grace: Duration::ZERO,
                settle: Duration::from_millis(300),
                retention: if separate_store {
                    vec![manifests]
                } else {
                    Vec::new()
                },
                ..GcOptions::default()
            };
            let mut runs = Vec::new();
            while runs.len() < 3 || !done.load(Ordering::Relaxed) {
                runs.push(store.gc(&options).await.unwrap());
            }
            runs
        })
    };
    let mut images = Vec::new();
    for p in pushers {
        images.extend(p.await.unwrap());
    }
    done.store(true, Ordering::Relaxed);
    let runs = collector.await.unwrap();
    let deleted: u64 = runs.iter().map(|r| r.blobs.count).sum();
    assert!(
        deleted >= JUNK as u64,
        "the junk was not collected: {runs:#?}"
    );

    let reader = Store::new(backend.clone());
    for (r, tag, digest) in &images {
        let m = reader
            .manifest_get(r, &Target::Tag(tag.parse().unwrap()))
            .await
            .unwrap_or_else(|e| panic!("{r}:{tag}: {e}"));
        assert_eq!(&m.digest, digest);
        let parsed = wharf_oci::ParsedManifest::parse(&m.bytes, Some(&m.media_type)).unwrap();
        for blob in parsed.required_blobs() {
            let size = reader.blob_size(r, &blob.digest).await.unwrap();
            assert_eq!(size, Some(blob.size), "{r}:{tag} lost {}", blob.digest);
        }
    }
    assert_eq!(images.len(), PUSHERS * IMAGES);
    assert_clean(&reader).await;
    eprintln!(
        "separate store {separate_store}: {} runs, {deleted} blobs collected, {} pushes retried, {} rescues",
        runs.len(),
        retries.load(Ordering::Relaxed),
        runs.iter().map(|r| r.rescued).sum::<u64>()
    );
}
