//! Writers, deletions and garbage collections at once, in several processes
//! on one storage root: two `wharf gc` processes beside a `wharf serve`
//! while clients push images over old unreferenced layers, and manifest
//! DELETEs racing pushes of the same manifest under new tags, within one
//! server and across two.

mod common;

use common::server::Wharf;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wharf_oci::media_type::OCI_MANIFEST;
use wharf_testkit::{sha256_digest, wait_for};

use common::api::{oci_manifest, push_image, push_image_skipping_present, Api, ApiError};

const COLLECTORS: usize = 2;
/// How long a pusher waits for the collections in progress to finish.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn wharf(args: &[&str], root: &Path, config: Option<&Path>) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.args(args).arg("--root").arg(root);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let out = cmd.output().expect("run wharf");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_fsck_clean(root: &Path, when: &str) {
    let (code, text, err) = wharf(&["fsck"], root, None);
    assert_eq!(code, 0, "fsck {when}:\n{text}{err}");
}

/// One `wharf gc` after another until `done`, counting finished runs.
fn collect_until(
    root: &Path,
    config: &Path,
    done: &AtomicBool,
    finished: &AtomicUsize,
) -> Vec<serde_json::Value> {
    let mut reports = Vec::new();
    while reports.len() < 2 || !done.load(Ordering::Relaxed) {
        let (code, json, err) = wharf(&["gc", "--output", "json"], root, Some(config));
        assert_eq!(code, 0, "wharf gc failed: {err}");
        let doc: serde_json::Value = serde_json::from_str(&json).expect("JSON report");
        reports.push(doc["report"].clone());
        finished.fetch_add(1, Ordering::SeqCst);
    }
    reports
}

/// Wait until every collector has finished the run it was in when `seen`
/// was taken: any run that could have doomed a blob before then is over.
fn wait_for_runs_after(finished: &[AtomicUsize], seen: &[usize]) {
    let over = wait_for(RUN_TIMEOUT, || {
        finished
            .iter()
            .zip(seen)
            .all(|(now, then)| now.load(Ordering::SeqCst) > *then)
            .then_some(())
    });
    assert!(over.is_some(), "the collections did not finish a run");
}

fn snapshot(finished: &[AtomicUsize]) -> Vec<usize> {
    finished.iter().map(|f| f.load(Ordering::SeqCst)).collect()
}

fn sum(reports: &[serde_json::Value], field: &str, sub: Option<&str>) -> u64 {
    reports
        .iter()
        .map(|r| match sub {
            Some(sub) => r[field][sub].as_u64().unwrap(),
            None => r[field].as_u64().unwrap(),
        })
        .sum()
}

/// One pusher's rounds: put an image over its old layer (found by HEAD, not
/// uploaded again when still there), wait until both collections finished
/// the runs in progress, check the image whole, and delete it so that the
/// layer is garbage again for the next round. The last image stays.
fn push_rounds(
    url: &str,
    p: usize,
    layer: &[u8],
    rounds: usize,
    finished: &[AtomicUsize],
) -> ((String, String, String, Vec<u8>), usize) {
    let api = Api::new(url);
    let repo = format!("team/app{p}");
    let mut skipped = 0;
    let mut last = None;
    for i in 0..rounds {
        let config = format!("{{\"pusher\":{p},\"round\":{i}}}").into_bytes();
        let tag = format!("r{i}");
        let (digest, skips) = push_image_skipping_present(&api, &repo, &tag, &config, &[layer]);
        skipped += skips;
        wait_for_runs_after(finished, &snapshot(finished));
        let m = api
            .manifest(&repo, &tag)
            .unwrap_or_else(|e| panic!("{repo}:{tag} acknowledged, then: {e}"));
        assert_eq!(m.digest, digest);
        for blob in [config.as_slice(), layer] {
            let got = api
                .blob(&repo, &sha256_digest(blob))
                .unwrap_or_else(|e| panic!("{repo}:{tag} acknowledged, then lost a blob: {e}"));
            assert_eq!(got, blob);
        }
        if i + 1 < rounds {
            api.delete_manifest(&repo, &digest).unwrap();
        }
        last = Some((repo.clone(), tag, digest, config));
    }
    (last.expect("at least one round"), skipped)
}

/// Two `wharf gc` processes loop beside a `wharf serve` on one root while
/// clients push images whose layer is old and unreferenced: they find it
/// (HEAD), skip its upload and put the manifest. Blobs have no grace period,
/// so every collection dooms the layer whenever no manifest refers to it.
/// Every acknowledged image stays whole and fsck is clean.
#[test]
fn two_gc_processes_beside_a_server_keep_reused_layers() {
    const PUSHERS: usize = 3;
    const ROUNDS: usize = 8;
    let work = tempfile::tempdir().unwrap();
    let mut server = Wharf::start(&work.path().join("wharf"));
    let (url, root) = (server.url(), server.root().to_path_buf());
    let config = work.path().join("wharf.toml");
    std::fs::write(
        &config,
        "[gc]\ngrace = \"0s\"\nsettle = \"300ms\"\n[[gc.retention]]\nrepos = \"**\"\nmin_age = \"1h\"\n",
    )
    .unwrap();
    let api = Api::new(&url);
    let layers: Vec<Vec<u8>> = (0..PUSHERS)
        .map(|p| format!("old layer {p}: {}", "o".repeat(4096 + p)).into_bytes())
        .collect();
    for (p, layer) in layers.iter().enumerate() {
        api.push_blob_monolithic(&format!("team/app{p}"), layer)
            .unwrap();
    }

    let done = Arc::new(AtomicBool::new(false));
    let finished: Arc<Vec<AtomicUsize>> =
        Arc::new((0..COLLECTORS).map(|_| AtomicUsize::new(0)).collect());
    let collectors: Vec<_> = (0..COLLECTORS)
        .map(|c| {
            let (root, config, done, finished) =
                (root.clone(), config.clone(), done.clone(), finished.clone());
            std::thread::spawn(move || collect_until(&root, &config, &done, &finished[c]))
        })
        .collect();
    let pushers: Vec<_> = layers
        .iter()
        .enumerate()
        .map(|(p, layer)| {
            let (url, layer, finished) = (url.clone(), layer.clone(), finished.clone());
            std::thread::spawn(move || push_rounds(&url, p, &layer, ROUNDS, &finished))
        })
        .collect();
    let mut kept = Vec::new();
    let mut skipped = 0;
    for p in pushers {
        let (image, skips) = p.join().expect("a pusher failed");
        kept.push(image);
        skipped += skips;
    }
    done.store(true, Ordering::Relaxed);
    let reports: Vec<serde_json::Value> = collectors
        .into_iter()
        .flat_map(|c| c.join().expect("a collector failed"))
        .collect();
    assert!(
        skipped > 0,
        "no push found its old layer still there: the reuse was not exercised"
    );
    for (repo, tag, digest, config) in &kept {
        let m = api.manifest(repo, tag).unwrap();
        assert_eq!(&m.digest, digest);
        assert_eq!(api.blob(repo, &sha256_digest(config)).unwrap(), *config);
    }
    server.shutdown();
    assert_fsck_clean(&root, "after two collections beside a server");
    eprintln!(
        "{} gc runs, {} blobs collected, {} rescued, {skipped} blobs found by HEAD and not uploaded again",
        reports.len(),
        sum(&reports, "blobs", Some("count")),
        sum(&reports, "rescued", None),
    );
}

/// What one round of [`delete_racing_tag_push`] ended with.
#[derive(Debug, Default)]
struct RaceOutcome {
    tag_kept: usize,
    tag_removed: usize,
}

/// Put `manifest` under `tag` on `pusher` while `deleter` deletes it by
/// digest; both must succeed, and the tag afterwards either resolves or is
/// gone, never points at nothing.
fn race_round(pusher: &Api, deleter: &Api, repo: &str, tag: &str, manifest: &[u8]) -> bool {
    let digest = sha256_digest(manifest);
    let (put, delete) = std::thread::scope(|s| {
        let put = s.spawn(|| pusher.put_manifest(repo, tag, OCI_MANIFEST, manifest));
        let delete = s.spawn(|| deleter.delete_manifest(repo, &digest));
        (put.join().unwrap(), delete.join().unwrap())
    });
    put.unwrap_or_else(|e| panic!("PUT {repo}:{tag}: {e}"));
    match delete {
        Ok(()) => {}
        // The push came first and was deleted already: nothing is wrong.
        Err(ApiError {
            status: Some(404), ..
        }) => {}
        Err(e) => panic!("DELETE {repo}@{digest}: {e}"),
    }
    let tags = pusher.tags(repo).unwrap_or_default();
    if !tags.iter().any(|t| t == tag) {
        return false;
    }
    match pusher.manifest(repo, tag) {
        Ok(m) => {
            assert_eq!(m.digest, digest);
            true
        }
        Err(e) => panic!("tag {tag} is listed but points at nothing: {e}"),
    }
}

/// A push of existing manifest bytes under a new tag while another client
/// deletes that manifest by digest: on one server (its lock orders the two)
/// and across two servers on one root (each looks again after its last
/// write). Never a tag without its manifest; fsck is clean.
#[test]
fn delete_racing_a_tag_push_leaves_no_dangling_tag() {
    const ROUNDS: usize = 40;
    let work = tempfile::tempdir().unwrap();
    let mut first = Wharf::start(&work.path().join("first"));
    let root = first.root().to_path_buf();
    // The second server shares the first one's root.
    let second_dir = work.path().join("second");
    std::fs::create_dir_all(&second_dir).unwrap();
    std::os::unix::fs::symlink(&root, second_dir.join("root")).unwrap();
    let mut second = Wharf::start(&second_dir);
    let (one, two) = (Api::new(&first.url()), Api::new(&second.url()));
    let repo = "race/app";
    let (config, layer): (&[u8], &[u8]) = (b"{\"race\":1}", b"the raced image's layer");
    let manifest = oci_manifest(config, &[layer]);
    let mut outcome = [RaceOutcome::default(), RaceOutcome::default()];
    for round in 0..ROUNDS {
        push_image(&one, repo, "base", config, &[layer]).unwrap();
        let across = round % 2 == 1;
        let deleter = if across { &two } else { &one };
        let kept = race_round(&one, deleter, repo, &format!("t{round}"), &manifest);
        let o = &mut outcome[across as usize];
        if kept {
            o.tag_kept += 1;
        } else {
            o.tag_removed += 1;
        }
    }
    first.shutdown();
    second.shutdown();
    assert_fsck_clean(&root, "after DELETEs raced tag pushes");
    eprintln!(
        "one server: {:?}; two servers: {:?}",
        outcome[0], outcome[1]
    );
}
