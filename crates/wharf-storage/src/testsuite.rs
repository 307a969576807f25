//! The one test suite every backend must pass. A backend's tests call
//! [`run_all`] with a factory for fresh, empty backends; each check panics
//! with a message naming what broke.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use wharf_oci::{media_type, Algorithm, Digest, Hasher, RepositoryName, Target};

use crate::backend::{AppendOutcome, Backend, ByteStream, Durability, UploadReader, WriteObserver};
use crate::error::{StorageError, StorageResult};
use crate::gc::{Collection, GcReport};
use crate::store::{ManifestPutOptions, Store, UploadWatcher};

/// Run every check, each on a fresh backend from `make`.
pub async fn run_all<F: Fn() -> Arc<dyn Backend>>(make: F) {
    documents(make()).await;
    chunked_upload_round_trip(make()).await;
    wrong_digest_is_never_visible(make()).await;
    out_of_order_chunk_is_refused(make()).await;
    upload_resumes_after_restart(make()).await;
    concurrent_pushes_of_one_blob(make()).await;
    sha512_blobs(make()).await;
    closing_digest_may_switch_algorithm(make()).await;
    manifests_are_byte_exact(make()).await;
    manifest_references_are_checked(make()).await;
    tags_and_deletes(make()).await;
    referrers_are_listed(make()).await;
    catalog_lists_nested_repositories(make()).await;
    ranges_are_served(make()).await;
    modification_times(make()).await;
    doomed_blobs_are_rescued_by_writers(make()).await;
    two_collections_keep_a_blob_a_push_reuses(make()).await;
    a_delete_racing_a_tag_push_leaves_no_dangling_tag(make()).await;
    watched_uploads_are_readable_while_written(make()).await;
    documents_are_touched(make()).await;
}

pub fn stream_of(chunks: Vec<Bytes>) -> ByteStream {
    Box::pin(futures_util::stream::iter(chunks.into_iter().map(Ok)))
}

/// Make every file under `root` look last written `ago`, as garbage
/// collection's grace periods and age rules see it (a test cannot wait out
/// an hour).
pub fn age_tree(root: &std::path::Path, ago: std::time::Duration) {
    let when = std::time::SystemTime::now() - ago;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let f = std::fs::File::options().write(true).open(&path).unwrap();
                f.set_modified(when).unwrap();
            }
        }
    }
}

pub async fn collect(mut s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.expect("stream chunk"));
    }
    out
}

fn repo(name: &str) -> RepositoryName {
    name.parse().expect("valid test repository")
}

fn pseudo_random(len: usize, seed: u8) -> Bytes {
    let mut x = seed as u32 | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect::<Vec<_>>()
        .into()
}

async fn push(store: &Store, r: &RepositoryName, data: &Bytes) -> Digest {
    let d = Digest::sha256_of(data);
    store
        .put_blob(r, &d, stream_of(vec![data.clone()]))
        .await
        .expect("monolithic push");
    d
}

async fn documents(b: Arc<dyn Backend>) {
    assert_eq!(b.get("repositories/a/x").await.unwrap(), None);
    b.put(
        "repositories/a/x",
        Bytes::from_static(b"1"),
        Durability::Durable,
    )
    .await
    .unwrap();
    b.put(
        "repositories/a/x",
        Bytes::from_static(b"2"),
        Durability::Durable,
    )
    .await
    .unwrap();
    assert_eq!(b.get("repositories/a/x").await.unwrap().unwrap(), "2");
    assert!(b.exists("repositories/a/x").await.unwrap());
    assert_eq!(
        b.list("repositories/a").await.unwrap(),
        vec!["x".to_string()]
    );
    assert!(b.list("repositories/none").await.unwrap().is_empty());
    assert!(b.delete("repositories/a/x").await.unwrap());
    assert!(!b.delete("repositories/a/x").await.unwrap());
}

async fn chunked_upload_round_trip(b: Arc<dyn Backend>) {
    let store = Store::new(b);
    let r = repo("suite/chunked");
    let data = pseudo_random(3 * 1024 * 1024 + 17, 1);
    let id = store.start_upload(&r, Algorithm::Sha256).await.unwrap();
    let (first, rest) = data.split_at(1024 * 1024);
    let s = store
        .append_upload(
            &r,
            &id,
            Some(0),
            stream_of(vec![Bytes::copy_from_slice(first)]),
        )
        .await
        .unwrap();
    assert_eq!(s.size, 1024 * 1024);
    assert_eq!(store.upload_status(&r, &id).await.unwrap().size, s.size);
    // The upload is not reachable through another repository.
    assert!(matches!(
        store.upload_status(&repo("suite/other"), &id).await,
        Err(StorageError::UploadUnknown(_))
    ));
    let d = Digest::sha256_of(&data);
    let size = store
        .finish_upload(
            &r,
            &id,
            &d,
            Some((Some(s.size), stream_of(vec![Bytes::copy_from_slice(rest)]))),
        )
        .await
        .unwrap();
    assert_eq!(size, data.len() as u64);
    assert_eq!(
        store.blob_size(&r, &d).await.unwrap(),
        Some(data.len() as u64)
    );
    let back = collect(store.blob_read(&d, 0..data.len() as u64).await.unwrap()).await;
    assert!(back == data, "blob read back differs");
    assert!(matches!(
        store.upload_status(&r, &id).await,
        Err(StorageError::UploadUnknown(_))
    ));
}

async fn wrong_digest_is_never_visible(b: Arc<dyn Backend>) {
    let store = Store::new(b.clone());
    let r = repo("suite/wrong");
    let data = pseudo_random(4096, 2);
    let claimed = Digest::sha256_of(b"something else");
    let err = store
        .put_blob(&r, &claimed, stream_of(vec![data.clone()]))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::DigestMismatch { .. }), "{err}");
    assert_eq!(store.blob_size(&r, &claimed).await.unwrap(), None);
    assert_eq!(b.blob_size(&claimed).await.unwrap(), None);
    assert!(
        b.upload_list().await.unwrap().is_empty(),
        "failed one-shot upload left behind"
    );
}

async fn out_of_order_chunk_is_refused(b: Arc<dyn Backend>) {
    let store = Store::new(b);
    let r = repo("suite/order");
    let id = store.start_upload(&r, Algorithm::Sha256).await.unwrap();
    store
        .append_upload(
            &r,
            &id,
            Some(0),
            stream_of(vec![Bytes::from_static(b"abc")]),
        )
        .await
        .unwrap();
    let err = store
        .append_upload(
            &r,
            &id,
            Some(10),
            stream_of(vec![Bytes::from_static(b"def")]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::RangeMismatch {
                current: 3,
                requested: 10
            }
        ),
        "{err}"
    );
    assert_eq!(store.upload_status(&r, &id).await.unwrap().size, 3);
}

async fn upload_resumes_after_restart(b: Arc<dyn Backend>) {
    let r = repo("suite/resume");
    let data = pseudo_random(200_000, 3);
    let id = {
        let before = Store::new(b.clone());
        let id = before.start_upload(&r, Algorithm::Sha256).await.unwrap();
        before
            .append_upload(&r, &id, Some(0), stream_of(vec![data.slice(..100_000)]))
            .await
            .unwrap();
        id
    };
    // A new Store has no running hash: it must rebuild it from storage.
    let after = Store::new(b);
    assert_eq!(after.upload_status(&r, &id).await.unwrap().size, 100_000);
    let d = Digest::sha256_of(&data);
    after
        .finish_upload(
            &r,
            &id,
            &d,
            Some((Some(100_000), stream_of(vec![data.slice(100_000..)]))),
        )
        .await
        .unwrap();
    assert_eq!(after.blob_size(&r, &d).await.unwrap(), Some(200_000));
}

async fn concurrent_pushes_of_one_blob(b: Arc<dyn Backend>) {
    let store = Store::new(b.clone());
    let data = pseudo_random(256 * 1024, 4);
    let d = Digest::sha256_of(&data);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (store, data, d) = (store.clone(), data.clone(), d.clone());
        tasks.push(tokio::spawn(async move {
            let r = repo(&format!("suite/concurrent{}", i % 3));
            let chunks = vec![data.slice(..1000), data.slice(1000..)];
            store.put_blob(&r, &d, stream_of(chunks)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("every concurrent push succeeds");
    }
    assert_eq!(b.blob_list().await.unwrap(), vec![d.clone()], "stored once");
    for i in 0..3 {
        let r = repo(&format!("suite/concurrent{i}"));
        assert_eq!(
            store.blob_size(&r, &d).await.unwrap(),
            Some(data.len() as u64)
        );
    }
}

async fn sha512_blobs(b: Arc<dyn Backend>) {
    let store = Store::new(b);
    let r = repo("suite/sha512");
    let data = pseudo_random(5000, 5);
    let d = Digest::of(Algorithm::Sha512, &data);
    let id = store.start_upload(&r, Algorithm::Sha512).await.unwrap();
    store
        .finish_upload(&r, &id, &d, Some((None, stream_of(vec![data.clone()]))))
        .await
        .unwrap();
    assert_eq!(store.blob_size(&r, &d).await.unwrap(), Some(5000));
}

async fn closing_digest_may_switch_algorithm(b: Arc<dyn Backend>) {
    let store = Store::new(b);
    let r = repo("suite/switch");
    let data = pseudo_random(70_000, 8);
    let id = store.start_upload(&r, Algorithm::Sha256).await.unwrap();
    store
        .append_upload(&r, &id, Some(0), stream_of(vec![data.slice(..30_000)]))
        .await
        .unwrap();
    let d = Digest::of(Algorithm::Sha512, &data);
    let tail = stream_of(vec![data.slice(30_000..)]);
    store
        .finish_upload(&r, &id, &d, Some((Some(30_000), tail)))
        .await
        .expect("an upload opened for sha256 closes with a sha512 digest");
    assert_eq!(store.blob_size(&r, &d).await.unwrap(), Some(70_000));
}

fn image_manifest(
    config: &Digest,
    config_len: usize,
    layer: &Digest,
    layer_len: usize,
    mt: &str,
) -> Bytes {
    Bytes::from(format!(
        "{{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"{mt}\",\n   \"config\": {{\"mediaType\": \"{}\", \"size\": {config_len}, \"digest\": \"{config}\"}},\n   \"layers\": [{{\"mediaType\": \"{}\", \"size\": {layer_len}, \"digest\": \"{layer}\"}}]\n}}",
        media_type::DOCKER_CONFIG,
        media_type::DOCKER_LAYER_GZIP
    ))
}

/// `config` and `layer` pushed to `r` as blobs, and the OCI manifest that
/// names them (not pushed): their digests and the manifest's bytes.
async fn blobs_and_manifest(
    store: &Store,
    r: &RepositoryName,
    config: &Bytes,
    layer: &Bytes,
) -> (Digest, Digest, Bytes) {
    let cd = push(store, r, config).await;
    let ld = push(store, r, layer).await;
    let m = image_manifest(
        &cd,
        config.len(),
        &ld,
        layer.len(),
        media_type::OCI_MANIFEST,
    );
    (cd, ld, m)
}

async fn manifests_are_byte_exact(b: Arc<dyn Backend>) {
    let store = Store::new(b);
    let r = repo("suite/docker");
    let config = Bytes::from_static(b"{}");
    let layer = pseudo_random(1000, 6);
    let (cd, ld) = (
        push(&store, &r, &config).await,
        push(&store, &r, &layer).await,
    );
    let bytes = image_manifest(&cd, 2, &ld, 1000, media_type::DOCKER_MANIFEST);
    let tag: Target = Target::Tag("v1".parse().unwrap());
    let put = store
        .manifest_put(
            &r,
            &tag,
            bytes.clone(),
            Some(media_type::DOCKER_MANIFEST),
            &ManifestPutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(put.digest, Digest::sha256_of(&bytes));
    for target in [tag, Target::Digest(put.digest.clone())] {
        let got = store.manifest_get(&r, &target).await.unwrap();
        assert_eq!(got.bytes, bytes, "manifest bytes changed");
        assert_eq!(
            got.media_type,
            media_type::DOCKER_MANIFEST,
            "media type changed"
        );
        assert_eq!(got.digest, put.digest);
    }
}

async fn manifest_references_are_checked(b: Arc<dyn Backend>) {
    let store = Store::new(b);
    let r = repo("suite/refs");
    let config = Bytes::from_static(b"{}");
    let cd = push(&store, &r, &config).await;
    let absent = Digest::sha256_of(b"absent layer");
    let bytes = image_manifest(&cd, 2, &absent, 12, media_type::OCI_MANIFEST);
    let err = store
        .manifest_put(
            &r,
            &Target::Tag("x".parse().unwrap()),
            bytes,
            None,
            &ManifestPutOptions::default(),
        )
        .await
        .unwrap_err();
    match err {
        StorageError::ManifestBlobUnknown(missing) => assert_eq!(missing, vec![absent.clone()]),
        other => panic!("expected ManifestBlobUnknown, got {other}"),
    }
    // An index whose children are absent: refused, unless sparse.
    let index = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{absent}","size":12,"platform":{{"architecture":"arm64","os":"linux"}}}}]}}"#,
        media_type::OCI_INDEX,
        media_type::OCI_MANIFEST
    ));
    let t = Target::Tag("idx".parse().unwrap());
    assert!(matches!(
        store
            .manifest_put(&r, &t, index.clone(), None, &ManifestPutOptions::default())
            .await,
        Err(StorageError::ManifestBlobUnknown(_))
    ));
    let sparse = ManifestPutOptions {
        sparse_indexes: true,
        ..Default::default()
    };
    let put = store
        .manifest_put(&r, &t, index.clone(), None, &sparse)
        .await
        .unwrap();
    assert_eq!(put.digest, Digest::sha256_of(&index));
    assert!(matches!(
        store
            .manifest_put(&r, &t, Bytes::from_static(b"{nope"), None, &sparse)
            .await,
        Err(StorageError::ManifestInvalid(_))
    ));
}

async fn tags_and_deletes(b: Arc<dyn Backend>) {
    let store = Store::new(b);
    let r = repo("suite/tags");
    let cd = push(&store, &r, &Bytes::from_static(b"{}")).await;
    let m = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{cd}","size":2}},"layers":[]}}"#,
        media_type::OCI_MANIFEST,
        media_type::OCI_CONFIG
    ));
    let opts = ManifestPutOptions::default();
    let mut digest = None;
    for t in ["b", "a", "C", "c"] {
        let put = store
            .manifest_put(&r, &Target::Tag(t.parse().unwrap()), m.clone(), None, &opts)
            .await
            .unwrap();
        digest = Some(put.digest);
    }
    let page = store.tags(&r, None, None).await.unwrap();
    assert_eq!(page.tags, vec!["C", "a", "b", "c"], "byte order");
    let page = store.tags(&r, Some(2), Some("a")).await.unwrap();
    assert_eq!(
        (page.tags, page.more),
        (vec!["b".to_string(), "c".to_string()], false)
    );
    assert!(matches!(
        store.tags(&repo("suite/nothing"), None, None).await,
        Err(StorageError::NameUnknown)
    ));
    store
        .manifest_delete(&r, &Target::Tag("a".parse().unwrap()))
        .await
        .unwrap();
    assert!(matches!(
        store
            .manifest_get(&r, &Target::Tag("a".parse().unwrap()))
            .await,
        Err(StorageError::ManifestUnknown)
    ));
    let digest = Target::Digest(digest.unwrap());
    store.manifest_delete(&r, &digest).await.unwrap();
    assert!(
        store.tags(&r, None, None).await.unwrap().tags.is_empty(),
        "tags of a deleted manifest remain"
    );
    assert!(matches!(
        store.manifest_get(&r, &digest).await,
        Err(StorageError::ManifestUnknown)
    ));
    assert!(matches!(
        store.manifest_delete(&r, &digest).await,
        Err(StorageError::ManifestUnknown)
    ));
    store.blob_delete(&r, &cd).await.unwrap();
    assert_eq!(store.blob_size(&r, &cd).await.unwrap(), None);
    assert!(matches!(
        store.blob_delete(&r, &cd).await,
        Err(StorageError::BlobUnknown(_))
    ));
}

async fn referrers_are_listed(b: Arc<dyn Backend>) {
    let store = Store::new(b);
    let r = repo("suite/referrers");
    let empty = push(&store, &r, &Bytes::from_static(b"{}")).await;
    let subject = Digest::sha256_of(b"a subject that was never pushed");
    let opts = ManifestPutOptions::default();
    let mut pushed = Vec::new();
    for (i, artifact) in [
        "application/vnd.example.sbom",
        "application/vnd.example.sig",
    ]
    .iter()
    .enumerate()
    {
        let m = Bytes::from(format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"{artifact}","config":{{"mediaType":"{}","digest":"{empty}","size":2}},"layers":[],"subject":{{"mediaType":"{}","digest":"{subject}","size":10}},"annotations":{{"n":"{i}"}}}}"#,
            media_type::OCI_MANIFEST,
            media_type::OCI_EMPTY,
            media_type::OCI_MANIFEST
        ));
        let put = store
            .manifest_put(&r, &Target::Digest(Digest::sha256_of(&m)), m, None, &opts)
            .await
            .unwrap();
        assert_eq!(put.subject.as_ref(), Some(&subject));
        pushed.push(put.digest);
    }
    let all = store
        .referrers(&r, &subject, None, None, None)
        .await
        .unwrap();
    assert_eq!(all.descriptors.len(), 2);
    assert!(all.next.is_none());
    let sboms = store
        .referrers(
            &r,
            &subject,
            Some("application/vnd.example.sbom"),
            None,
            None,
        )
        .await
        .unwrap()
        .descriptors;
    assert_eq!(sboms.len(), 1);
    assert_eq!(sboms[0].annotations.as_ref().unwrap()["n"], "0");
    // One at a time: the first page names where the second starts.
    let first = store
        .referrers(&r, &subject, None, None, Some(1))
        .await
        .unwrap();
    assert_eq!(first.descriptors.len(), 1);
    let second = store
        .referrers(&r, &subject, None, first.next.as_deref(), Some(1))
        .await
        .unwrap();
    assert_eq!(second.descriptors.len(), 1);
    assert!(second.next.is_none());
    assert_ne!(first.descriptors[0].digest, second.descriptors[0].digest);
    store
        .manifest_delete(&r, &Target::Digest(pushed[0].clone()))
        .await
        .unwrap();
    let left = store
        .referrers(&r, &subject, None, None, None)
        .await
        .unwrap();
    assert_eq!(left.descriptors.len(), 1);
}

async fn catalog_lists_nested_repositories(b: Arc<dyn Backend>) {
    let store = Store::new(b);
    for name in ["x/y/z", "x", "docker.io/library/alpine", "a"] {
        push(&store, &repo(name), &Bytes::from_static(b"blob")).await;
    }
    let all = store.catalog(None, None).await.unwrap().tags;
    assert_eq!(all, vec!["a", "docker.io/library/alpine", "x", "x/y/z"]);
    let page = store.catalog(Some(2), Some("a")).await.unwrap();
    assert_eq!(page.tags, vec!["docker.io/library/alpine", "x"]);
    assert!(page.more);
}

async fn ranges_are_served(b: Arc<dyn Backend>) {
    let store = Store::new(b);
    let r = repo("suite/range");
    let data = pseudo_random(2 * 1024 * 1024, 7);
    let d = push(&store, &r, &data).await;
    let part = collect(store.blob_read(&d, 1000..1_500_000).await.unwrap()).await;
    assert!(part == data[1000..1_500_000], "range read differs");
}

/// Garbage collection reads push times from documents and blob ages from
/// blobs; a commit of bytes a blob already holds makes it young again.
/// Times are compared with a second's slack: object stores keep seconds.
async fn modification_times(b: Arc<dyn Backend>) {
    use std::time::{Duration, SystemTime};
    let slack = Duration::from_secs(2);
    let before = SystemTime::now() - slack;
    assert_eq!(b.modified("repositories/t/doc").await.unwrap(), None);
    b.put(
        "repositories/t/doc",
        Bytes::from_static(b"x"),
        Durability::Durable,
    )
    .await
    .unwrap();
    let written = b
        .modified("repositories/t/doc")
        .await
        .unwrap()
        .expect("a time");
    assert!(written >= before && written <= SystemTime::now() + slack);

    let store = Store::new(b.clone());
    let r = repo("suite/times");
    let data = pseudo_random(1000, 9);
    let d = Digest::sha256_of(&data);
    assert_eq!(b.blob_modified(&d).await.unwrap(), None);
    push(&store, &r, &data).await;
    let first = b.blob_modified(&d).await.unwrap().expect("a blob time");
    assert!(first >= before && first <= SystemTime::now() + slack);
    b.blob_put_verified(&d, data.clone()).await.unwrap();
    let again = b.blob_modified(&d).await.unwrap().expect("a blob time");
    assert!(again >= first, "a second commit must not make a blob older");
}

/// A writer deletes the doomed marker of every blob it commits or refers to.
async fn doomed_blobs_are_rescued_by_writers(b: Arc<dyn Backend>) {
    use crate::layout;
    let store = Store::new(b.clone());
    let r = repo("suite/rescue");
    let config = Bytes::from_static(b"{}");
    let layer = pseudo_random(3000, 10);
    let (cd, ld) = (Digest::sha256_of(&config), Digest::sha256_of(&layer));
    for d in [&cd, &ld] {
        b.put(&layout::doomed(d), Bytes::new(), Durability::Volatile)
            .await
            .unwrap();
    }
    push(&store, &r, &config).await;
    assert!(
        !b.exists(&layout::doomed(&cd)).await.unwrap(),
        "a blob commit rescues its digest"
    );
    push(&store, &r, &layer).await;
    b.put(&layout::doomed(&ld), Bytes::new(), Durability::Volatile)
        .await
        .unwrap();
    let m = image_manifest(&cd, 2, &ld, 3000, media_type::OCI_MANIFEST);
    store
        .manifest_put(
            &r,
            &Target::Tag("v1".parse().unwrap()),
            m,
            None,
            &ManifestPutOptions::default(),
        )
        .await
        .unwrap();
    assert!(
        !b.exists(&layout::doomed(&ld)).await.unwrap(),
        "a manifest push rescues the blobs it refers to"
    );
    b.put(&layout::doomed(&ld), Bytes::new(), Durability::Volatile)
        .await
        .unwrap();
    assert!(store
        .blob_mount(&repo("suite/rescue2"), Some(&r), &ld)
        .await
        .unwrap());
    assert!(
        !b.exists(&layout::doomed(&ld)).await.unwrap(),
        "a mount rescues its digest"
    );
}

/// What a [`Store::put_blob_watched`] watcher saw.
#[derive(Default)]
struct Seen {
    reader: Mutex<Option<Arc<dyn UploadReader>>>,
    sizes: Arc<Mutex<Vec<u64>>>,
    verified: Mutex<Option<u64>>,
}

impl UploadWatcher for Seen {
    fn opened(&self, reader: Arc<dyn UploadReader>) {
        *self.reader.lock().unwrap() = Some(reader);
    }
    fn written(&self) -> WriteObserver {
        let sizes = self.sizes.clone();
        Arc::new(move |size, _| sizes.lock().unwrap().push(size))
    }
    fn verified(&self, size: u64) {
        *self.verified.lock().unwrap() = Some(size);
    }
}

async fn watched_uploads_are_readable_while_written(b: Arc<dyn Backend>) {
    let store = Store::new(b.clone());
    let r = repo("suite/watched");
    let data = pseudo_random(3 * 1024 * 1024 + 17, 9);
    let digest = Digest::sha256_of(&data);
    let chunks: Vec<Bytes> = data.chunks(100_000).map(Bytes::copy_from_slice).collect();
    let seen = Seen::default();
    if !b.follows_uploads() {
        // A backend that cannot follow an upload refuses cleanly.
        let result = store
            .put_blob_watched(&r, &digest, stream_of(chunks), &seen)
            .await;
        assert!(result.is_err(), "a watched upload it cannot follow");
        assert_eq!(b.blob_size(&digest).await.unwrap(), None);
        assert!(
            b.upload_list().await.unwrap().is_empty(),
            "upload left behind"
        );
        return;
    }
    let size = store
        .put_blob_watched(&r, &digest, stream_of(chunks), &seen)
        .await
        .expect("watched upload");
    assert_eq!(size, data.len() as u64);
    let sizes = seen.sizes.lock().unwrap().clone();
    assert!(
        sizes.windows(2).all(|w| w[0] < w[1]),
        "sizes go up: {sizes:?}"
    );
    assert_eq!(
        sizes.last(),
        Some(&size),
        "the last report is the whole size"
    );
    assert_eq!(*seen.verified.lock().unwrap(), Some(size));
    assert_eq!(store.blob_size(&r, &digest).await.unwrap(), Some(size));
    // The reader opened on the upload still reads it after the commit.
    let reader = seen.reader.lock().unwrap().clone().expect("opened");
    let tail = reader
        .read_at(size - 17, 100)
        .await
        .expect("read after commit");
    assert_eq!(&tail[..], &data[data.len() - 17..]);

    // A wrong digest: nothing visible, no upload left, never verified.
    let seen = Seen::default();
    let wrong = Digest::sha256_of(b"not these bytes");
    let err = store
        .put_blob_watched(&r, &wrong, stream_of(vec![data.clone()]), &seen)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::DigestMismatch { .. }), "{err}");
    assert_eq!(*seen.verified.lock().unwrap(), None);
    assert_eq!(b.blob_size(&wrong).await.unwrap(), None);
    assert!(
        b.upload_list().await.unwrap().is_empty(),
        "upload left behind"
    );

    // A body that breaks off: the same.
    let seen = Seen::default();
    let broken: ByteStream = Box::pin(futures_util::stream::iter(vec![
        Ok(data.slice(..1000)),
        Err(std::io::Error::other("connection reset")),
    ]));
    let err = store
        .put_blob_watched(&r, &wrong, broken, &seen)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::BodyInterrupted(_)), "{err}");
    assert_eq!(*seen.verified.lock().unwrap(), None);
    assert!(
        b.upload_list().await.unwrap().is_empty(),
        "upload left behind"
    );
}

/// Touching a document refreshes its modification time.
async fn documents_are_touched(b: Arc<dyn Backend>) {
    b.put(
        "suite/touched",
        Bytes::from_static(b"x"),
        Durability::Volatile,
    )
    .await
    .unwrap();
    assert!(b.touch("suite/touched").await.unwrap());
    assert!(!b.touch("suite/absent").await.unwrap());
}

/// How long a test waits for a held operation to be reached.
const GATE_TIMEOUT: Duration = Duration::from_secs(30);

/// A backend over another that holds the first `put` or `delete` of one key
/// until the test lets it go. Stores over it and stores over the backend
/// beneath share storage as processes do; the gate forces one interleaving
/// of their steps.
struct Gated {
    inner: Arc<dyn Backend>,
    key: String,
    armed: AtomicBool,
    reached: tokio::sync::Notify,
    open: tokio::sync::Notify,
}

impl Gated {
    fn new(inner: Arc<dyn Backend>, key: String) -> Arc<Gated> {
        Arc::new(Gated {
            inner,
            key,
            armed: AtomicBool::new(true),
            reached: tokio::sync::Notify::new(),
            open: tokio::sync::Notify::new(),
        })
    }

    async fn pass(&self, key: &str) {
        if key == self.key && self.armed.swap(false, Ordering::SeqCst) {
            self.reached.notify_one();
            self.open.notified().await;
        }
    }

    /// Wait until a write of the key is being held.
    async fn held(&self) {
        tokio::time::timeout(GATE_TIMEOUT, self.reached.notified())
            .await
            .unwrap_or_else(|_| panic!("no write of {} was reached", self.key));
    }

    fn release(&self) {
        self.open.notify_one();
    }
}

#[async_trait]
impl Backend for Gated {
    async fn get(&self, key: &str) -> StorageResult<Option<Bytes>> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: Bytes, durability: Durability) -> StorageResult<()> {
        self.pass(key).await;
        self.inner.put(key, value, durability).await
    }
    async fn delete(&self, key: &str) -> StorageResult<bool> {
        self.pass(key).await;
        self.inner.delete(key).await
    }
    async fn touch(&self, key: &str) -> StorageResult<bool> {
        self.inner.touch(key).await
    }
    async fn exists(&self, key: &str) -> StorageResult<bool> {
        self.inner.exists(key).await
    }
    async fn list(&self, prefix: &str) -> StorageResult<Vec<String>> {
        self.inner.list(prefix).await
    }
    async fn delete_prefix(&self, prefix: &str) -> StorageResult<()> {
        self.inner.delete_prefix(prefix).await
    }
    async fn modified(&self, key: &str) -> StorageResult<Option<SystemTime>> {
        self.inner.modified(key).await
    }
    async fn blob_size(&self, digest: &Digest) -> StorageResult<Option<u64>> {
        self.inner.blob_size(digest).await
    }
    async fn blob_modified(&self, digest: &Digest) -> StorageResult<Option<SystemTime>> {
        self.inner.blob_modified(digest).await
    }
    async fn blob_read(&self, digest: &Digest, range: Range<u64>) -> StorageResult<ByteStream> {
        self.inner.blob_read(digest, range).await
    }
    async fn blob_put_verified(&self, digest: &Digest, bytes: Bytes) -> StorageResult<()> {
        self.inner.blob_put_verified(digest, bytes).await
    }
    async fn blob_delete(&self, digest: &Digest) -> StorageResult<bool> {
        self.inner.blob_delete(digest).await
    }
    async fn blob_list(&self) -> StorageResult<Vec<Digest>> {
        self.inner.blob_list().await
    }
    async fn blob_quarantine(&self, digest: &Digest) -> StorageResult<()> {
        self.inner.blob_quarantine(digest).await
    }
    async fn blob_url(&self, digest: &Digest) -> StorageResult<Option<String>> {
        self.inner.blob_url(digest).await
    }
    async fn upload_create(&self, id: &str) -> StorageResult<()> {
        self.inner.upload_create(id).await
    }
    async fn upload_size(&self, id: &str) -> StorageResult<Option<u64>> {
        self.inner.upload_size(id).await
    }
    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        body: ByteStream,
        hasher: Hasher,
    ) -> StorageResult<AppendOutcome> {
        self.inner.upload_append(id, offset, body, hasher).await
    }
    async fn upload_append_observed(
        &self,
        id: &str,
        offset: u64,
        body: ByteStream,
        hasher: Hasher,
        on_written: WriteObserver,
    ) -> StorageResult<AppendOutcome> {
        self.inner
            .upload_append_observed(id, offset, body, hasher, on_written)
            .await
    }
    async fn upload_reader(&self, id: &str) -> StorageResult<Arc<dyn UploadReader>> {
        self.inner.upload_reader(id).await
    }
    fn follows_uploads(&self) -> bool {
        self.inner.follows_uploads()
    }
    async fn upload_read(&self, id: &str) -> StorageResult<ByteStream> {
        self.inner.upload_read(id).await
    }
    async fn upload_hasher(&self, id: &str) -> StorageResult<Option<(u64, Hasher)>> {
        self.inner.upload_hasher(id).await
    }
    async fn upload_commit(&self, id: &str, digest: &Digest) -> StorageResult<()> {
        self.inner.upload_commit(id, digest).await
    }
    async fn upload_delete(&self, id: &str) -> StorageResult<bool> {
        self.inner.upload_delete(id).await
    }
    async fn upload_list(&self) -> StorageResult<Vec<(String, u64)>> {
        self.inner.upload_list().await
    }
}

/// One collection's mark and doom, as `Store::gc` runs them (no grace).
async fn mark_and_doom(store: &Store, run: &Collection) -> crate::gc::Doomed {
    let live = store.mark(&HashSet::new()).await.unwrap();
    let doomed = store
        .unreferenced_blobs(&live, Duration::ZERO)
        .await
        .unwrap();
    store.doom(run, &doomed).await.unwrap();
    doomed
}

/// One collection's re-mark and sweep; the digests it deleted.
async fn remark_and_sweep(
    store: &Store,
    run: &Collection,
    doomed: &crate::gc::Doomed,
) -> Vec<Digest> {
    let live = store.mark(&HashSet::new()).await.unwrap();
    let mut report = GcReport::default();
    let deleted = store
        .sweep(run, doomed, &live, Duration::ZERO, &mut report)
        .await
        .unwrap();
    deleted.into_iter().collect()
}

async fn assert_fsck_clean(store: &Store, when: &str) {
    let report = store.fsck(false).await.unwrap();
    assert!(report.is_clean(), "{when}: {:#?}", report.problems);
}

/// Two collections at once (two processes) and a push that reuses blobs
/// nothing referred to. Collection A dooms them; the push withdraws A's
/// markers and checks the blobs; collection B, whose mark ran before the
/// push was visible, dooms them again; A re-marks before the push commits
/// and sweeps. A must not take B's markers for its own.
async fn two_collections_keep_a_blob_a_push_reuses(b: Arc<dyn Backend>) {
    use crate::layout;
    let r = repo("suite/two-collections");
    let setup = Store::new(b.clone());
    let config = Bytes::from_static(b"{\"reused\":true}");
    let layer = pseudo_random(3000, 11);
    let (cd, ld, m) = blobs_and_manifest(&setup, &r, &config, &layer).await;
    let md = Digest::sha256_of(&m);

    let (a, b_store) = (Store::new(b.clone()), Store::new(b.clone()));
    let gate = Gated::new(b.clone(), layout::revision(&r, &md));
    let writer = Store::new(gate.clone());
    let (run_a, run_b) = (Collection::new(), Collection::new());

    let doomed_a = mark_and_doom(&a, &run_a).await;
    let digests = |d: &crate::gc::Doomed| d.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>();
    assert!(digests(&doomed_a).contains(&ld) && digests(&doomed_a).contains(&cd));
    // The client found the blobs (HEAD) and puts the manifest; it stops
    // after its rescue and check, before the revision is written.
    let push = {
        let (r, m) = (r.clone(), m.clone());
        tokio::spawn(async move {
            writer
                .manifest_put(
                    &r,
                    &Target::Tag("v1".parse().unwrap()),
                    m,
                    None,
                    &ManifestPutOptions::default(),
                )
                .await
        })
    };
    gate.held().await;
    assert!(
        !b.exists(&layout::doomed(&ld)).await.unwrap(),
        "the push withdrew the marker"
    );
    let live_a = a.mark(&HashSet::new()).await.unwrap();
    assert!(!live_a.contains(&ld), "A's re-mark runs before the commit");
    let doomed_b = mark_and_doom(&b_store, &run_b).await;
    assert!(digests(&doomed_b).contains(&ld), "B dooms the layer again");
    let mut report_a = GcReport::default();
    let deleted_a = a
        .sweep(&run_a, &doomed_a, &live_a, Duration::ZERO, &mut report_a)
        .await
        .unwrap();
    assert!(
        !deleted_a.contains(&ld) && !deleted_a.contains(&cd),
        "collection A deleted blobs a push had rescued, on B's markers: {deleted_a:?}"
    );
    gate.release();
    push.await.unwrap().expect("the push of the manifest");
    // B's settle period has passed: its re-mark sees the push.
    let deleted_b = remark_and_sweep(&b_store, &run_b, &doomed_b).await;
    assert!(
        !deleted_b.contains(&ld) && !deleted_b.contains(&cd),
        "collection B deleted blobs of an acknowledged manifest: {deleted_b:?}"
    );
    for (d, len) in [(&cd, config.len()), (&ld, layer.len())] {
        assert_eq!(setup.blob_size(&r, d).await.unwrap(), Some(len as u64));
    }
    assert_fsck_clean(&setup, "after two collections and a push").await;
}

/// Every tag of `r` resolves to a manifest that is there.
async fn assert_no_dangling_tag(store: &Store, r: &RepositoryName, when: &str) {
    for tag in store.tags(r, None, None).await.unwrap().tags {
        let target = Target::Tag(tag.parse().unwrap());
        if let Err(e) = store.manifest_get(r, &target).await {
            panic!("{when}: tag {tag} points at nothing ({e})");
        }
    }
    assert_fsck_clean(store, when).await;
}

/// A DELETE by digest in one process and a push of the same manifest bytes
/// under a new tag in another, in the two interleavings that matter: the
/// push wholly inside the deletion, and the deletion wholly inside the push.
/// Neither may leave a tag pointing at nothing.
async fn a_delete_racing_a_tag_push_leaves_no_dangling_tag(b: Arc<dyn Backend>) {
    use crate::layout;
    let r = repo("suite/delete-race");
    let setup = Store::new(b.clone());
    let config = Bytes::from_static(b"{\"raced\":true}");
    let layer = pseudo_random(2000, 12);
    let (_, _, m) = blobs_and_manifest(&setup, &r, &config, &layer).await;
    let opts = ManifestPutOptions::default();
    let tag = |t: &str| Target::Tag(t.parse().unwrap());
    let md = setup
        .manifest_put(&r, &tag("v1"), m.clone(), None, &opts)
        .await
        .unwrap()
        .digest;
    let by_digest = Target::Digest(md.clone());

    // The deletion has removed the tags it found and stops before the
    // revision; the push of "new" runs meanwhile.
    let gate = Gated::new(b.clone(), layout::revision(&r, &md));
    let deleter = Store::new(gate.clone());
    let deletion = {
        let (r, by_digest) = (r.clone(), by_digest.clone());
        tokio::spawn(async move { deleter.manifest_delete(&r, &by_digest).await })
    };
    gate.held().await;
    let pusher = Store::new(b.clone());
    pusher
        .manifest_put(&r, &tag("new"), m.clone(), None, &opts)
        .await
        .expect("the push while the deletion waits");
    gate.release();
    deletion.await.unwrap().expect("the deletion");
    assert_no_dangling_tag(&setup, &r, "push inside a deletion").await;
    assert!(
        matches!(
            setup.manifest_get(&r, &by_digest).await,
            Err(StorageError::ManifestUnknown)
        ),
        "the deletion came last"
    );

    // The push has written the revision and stops before its tag; the
    // deletion runs meanwhile.
    setup
        .manifest_put(&r, &tag("v1"), m.clone(), None, &opts)
        .await
        .unwrap();
    let gate = Gated::new(b.clone(), layout::tag(&r, &"new2".parse().unwrap()));
    let pusher = Store::new(gate.clone());
    let push = {
        let (r, m, opts) = (r.clone(), m.clone(), opts.clone());
        tokio::spawn(async move { pusher.manifest_put(&r, &tag("new2"), m, None, &opts).await })
    };
    gate.held().await;
    Store::new(b.clone())
        .manifest_delete(&r, &by_digest)
        .await
        .expect("the deletion while the push waits");
    gate.release();
    push.await.unwrap().expect("the push");
    assert_no_dangling_tag(&setup, &r, "deletion inside a push").await;
}
