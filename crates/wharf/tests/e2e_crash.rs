//! Crash safety: many concurrent pushes (monolithic, chunked and mounted
//! blobs, manifests, tag updates), SIGKILL to the server at a fixed point
//! while requests are in flight, restart on the same root, then check every
//! stored object through the API. Whatever was acknowledged with a 201 before
//! the kill must be complete and intact, nothing may be half-written, and the
//! interrupted pushes must succeed when redone.

mod common;

use common::server::Wharf;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use wharf_oci::media_type::{OCI_CONFIG, OCI_LAYER_GZIP as OCI_LAYER, OCI_MANIFEST};
use wharf_testkit::process::send_signal;
use wharf_testkit::{pseudo_random, sha256_digest};

use common::api::{Api, ApiError, Findings};
use rustix::process::Signal;
use serde_json::json;

/// Concurrent pushing clients.
const WORKERS: usize = 6;
/// Upper bound of pushes per worker and round; far more than any kill point needs.
const MAX_PUSHES_PER_WORKER: usize = 40;
/// Per round: SIGKILL right after this many manifest PUTs were acknowledged.
const KILL_AFTER_MANIFEST_PUTS: [usize; 3] = [3, 20, 41];
/// Chunk size of chunked uploads; unique layers are up to ~150 KiB, so several chunks.
const CHUNK: usize = 32 * 1024;
/// Repository holding the base layer that every push mounts or uploads again.
const BASE_REPO: &str = "crash/base";

#[test]
fn acknowledged_pushes_survive_sigkill_and_interrupted_ones_can_be_redone() {
    let work = tempfile::tempdir().expect("temp dir");
    let mut wharf = Wharf::start(work.path());
    let base = base_layer();
    let mut ledger = Ledger::default();
    push_base(&Api::new(&wharf.url()), &base, &mut ledger);

    for (round, &kill_at) in KILL_AFTER_MANIFEST_PUTS.iter().enumerate() {
        let interrupted = push_until_killed(&wharf, round, kill_at, &base, &mut ledger);
        wharf.reap_killed();
        wharf.restart();
        let api = Api::new(&wharf.url());

        let problems = check_everything(&api, wharf.root(), &ledger);
        let when = format!("round {round}, restarted after SIGKILL at {kill_at} manifest PUTs");
        assert_consistent(&problems, &when, &wharf);

        redo(&wharf.url(), &interrupted, &base, &mut ledger);
        let problems = check_everything(&api, wharf.root(), &ledger);
        let when = format!("round {round}, after redoing the interrupted pushes");
        assert_consistent(&problems, &when, &wharf);
    }
    wharf.shutdown();
}

fn assert_consistent(problems: &[String], when: &str, wharf: &Wharf) {
    assert!(
        problems.is_empty(),
        "{when}: the store is inconsistent:\n{}\n--- wharf log ---\n{}",
        problems.join("\n"),
        wharf.log_tail()
    );
}

/// What the registry acknowledged (and attempted), across all rounds.
#[derive(Default)]
struct Ledger {
    /// `(repo, digest, size)` of every blob upload that returned 201.
    blobs: BTreeSet<(String, String, usize)>,
    /// `(repo, digest)` of every manifest PUT that returned 201.
    manifests: BTreeSet<(String, String)>,
    /// What was PUT to each `(repo, tag)`; each tag is written by one worker, sequentially.
    tags: BTreeMap<(String, String), TagHistory>,
}

#[derive(Default)]
struct TagHistory {
    /// Digests PUT to the tag, in order.
    attempted: Vec<String>,
    /// Length of `attempted` when the last acknowledged PUT returned (0: none was).
    acknowledged: usize,
}

impl TagHistory {
    /// After a crash the tag may point at the last acknowledged digest or at
    /// one whose PUT was in flight; if nothing was acknowledged it may also be absent.
    fn acceptable(&self) -> &[String] {
        &self.attempted[self.acknowledged.saturating_sub(1)..]
    }
}

/// One push: a shared base layer, a unique layer, a config, and a manifest
/// written to its own tag and to the moving tag `latest`.
struct Push {
    repo: String,
    tag: String,
    unique_layer: Vec<u8>,
    config: Vec<u8>,
    manifest: Vec<u8>,
    /// Upload the unique layer in chunks (else monolithic).
    chunked: bool,
    /// Mount the base layer from [`BASE_REPO`] (else upload it again, racing other workers).
    mount_base: bool,
}

impl Push {
    fn plan(round: usize, worker: usize, index: usize, base: &[u8]) -> Push {
        let seed = (round * 1_000 + worker) * 1_000 + index;
        let unique_layer = pseudo_random(seed as u64, 1_024 + (seed * 7_919) % 150_000);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Labels": { "push": format!("r{round}-w{worker}-i{index}") } },
            "rootfs": { "type": "layers", "diff_ids": [] },
        }))
        .expect("config JSON");
        let manifest = oci_manifest(&config, &[base, &unique_layer]);
        Push {
            repo: format!("crash/round{round}/worker{worker}"),
            tag: format!("v{index}"),
            unique_layer,
            config,
            manifest,
            chunked: index % 2 == 1,
            mount_base: index % 3 != 2,
        }
    }

    fn digest(&self) -> String {
        sha256_digest(&self.manifest)
    }
}

/// Shared state of one round's workers.
struct Round<'a> {
    api: Api,
    /// `(pid, n)`: SIGKILL the server `pid` when the n-th manifest PUT is acknowledged.
    kill: Option<(u32, usize)>,
    manifest_acks: AtomicUsize,
    killed: AtomicBool,
    base: &'a [u8],
    ledger: Mutex<&'a mut Ledger>,
    /// Failures that happened before the kill: real server errors.
    errors_before_kill: Mutex<Vec<String>>,
    /// Pushes cut short by the kill, to redo after the restart.
    interrupted: Mutex<Vec<Push>>,
}

impl<'a> Round<'a> {
    fn new(url: &str, kill: Option<(u32, usize)>, base: &'a [u8], ledger: &'a mut Ledger) -> Self {
        Round {
            api: Api::new(url),
            kill,
            manifest_acks: AtomicUsize::new(0),
            killed: AtomicBool::new(false),
            base,
            ledger: Mutex::new(ledger),
            errors_before_kill: Mutex::new(Vec::new()),
            interrupted: Mutex::new(Vec::new()),
        }
    }

    /// Counts an acknowledged manifest PUT; the one that reaches the kill point kills the server.
    fn manifest_acknowledged(&self) {
        let acks = self.manifest_acks.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some((pid, kill_at)) = self.kill {
            if acks == kill_at {
                self.killed.store(true, Ordering::SeqCst);
                send_signal(pid, Signal::KILL);
            }
        }
    }

    fn record_blob(&self, repo: &str, bytes: &[u8]) {
        let entry = (repo.to_owned(), sha256_digest(bytes), bytes.len());
        self.ledger.lock().expect("ledger").blobs.insert(entry);
    }

    fn put_manifest(&self, push: &Push, tag: &str) -> Result<(), ApiError> {
        let key = (push.repo.clone(), tag.to_owned());
        self.ledger
            .lock()
            .expect("ledger")
            .tags
            .entry(key.clone())
            .or_default()
            .attempted
            .push(push.digest().to_string());
        self.api
            .put_manifest(&push.repo, tag, OCI_MANIFEST, &push.manifest)?;
        {
            let mut ledger = self.ledger.lock().expect("ledger");
            let history = ledger.tags.get_mut(&key).expect("attempt recorded");
            history.acknowledged = history.attempted.len();
            ledger
                .manifests
                .insert((push.repo.clone(), push.digest().to_string()));
        }
        self.manifest_acknowledged();
        Ok(())
    }

    fn run_push(&self, push: &Push) -> Result<(), ApiError> {
        if push.mount_base {
            self.api.mount_blob(&push.repo, BASE_REPO, self.base)?;
        } else {
            self.api.push_blob_monolithic(&push.repo, self.base)?;
        }
        self.record_blob(&push.repo, self.base);
        if push.chunked {
            self.api
                .push_blob_chunked(&push.repo, &push.unique_layer, CHUNK)?;
        } else {
            self.api
                .push_blob_monolithic(&push.repo, &push.unique_layer)?;
        }
        self.record_blob(&push.repo, &push.unique_layer);
        self.api.push_blob_monolithic(&push.repo, &push.config)?;
        self.record_blob(&push.repo, &push.config);
        self.put_manifest(push, &push.tag)?;
        self.put_manifest(push, "latest")
    }

    /// Pushes until a push fails (normally because the server was killed).
    fn worker(&self, round: usize, worker: usize) {
        for index in 0..MAX_PUSHES_PER_WORKER {
            let push = Push::plan(round, worker, index, self.base);
            if let Err(error) = self.run_push(&push) {
                if !self.killed.load(Ordering::SeqCst) {
                    self.errors_before_kill
                        .lock()
                        .expect("errors")
                        .push(format!("worker {worker}, push {index}: {error}"));
                }
                self.interrupted.lock().expect("interrupted").push(push);
                return;
            }
        }
    }
}

/// Runs the workers until the server is killed; returns the interrupted pushes.
fn push_until_killed(
    wharf: &Wharf,
    round: usize,
    kill_at: usize,
    base: &[u8],
    ledger: &mut Ledger,
) -> Vec<Push> {
    let state = Round::new(&wharf.url(), Some((wharf.pid(), kill_at)), base, ledger);
    std::thread::scope(|scope| {
        for worker in 0..WORKERS {
            let state = &state;
            scope.spawn(move || state.worker(round, worker));
        }
    });
    assert!(
        state.killed.load(Ordering::SeqCst),
        "round {round}: the workers finished before {kill_at} manifest PUTs were acknowledged"
    );
    let errors = state.errors_before_kill.into_inner().expect("errors");
    assert!(
        errors.is_empty(),
        "round {round}: requests failed before the server was killed:\n{}\n--- wharf log ---\n{}",
        errors.join("\n"),
        wharf.log_tail()
    );
    state.interrupted.into_inner().expect("interrupted")
}

/// The base layer and a manifest for it in [`BASE_REPO`], pushed before any crash.
fn push_base(api: &Api, base: &[u8], ledger: &mut Ledger) {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let manifest = oci_manifest(config, &[base]);
    for blob in [base, config.as_slice()] {
        api.push_blob_monolithic(BASE_REPO, blob)
            .unwrap_or_else(|e| panic!("pushing the base layer: {e}"));
        ledger
            .blobs
            .insert((BASE_REPO.to_owned(), sha256_digest(blob), blob.len()));
    }
    api.put_manifest(BASE_REPO, "base", OCI_MANIFEST, &manifest)
        .unwrap_or_else(|e| panic!("pushing the base manifest: {e}"));
    let digest = sha256_digest(&manifest);
    ledger
        .manifests
        .insert((BASE_REPO.to_owned(), digest.clone()));
    ledger.tags.insert(
        (BASE_REPO.to_owned(), "base".to_owned()),
        TagHistory {
            attempted: vec![digest],
            acknowledged: 1,
        },
    );
}

/// Pushes that the kill interrupted must succeed when simply redone.
fn redo(url: &str, interrupted: &[Push], base: &[u8], ledger: &mut Ledger) {
    let state = Round::new(url, None, base, ledger);
    for push in interrupted {
        if let Err(error) = state.run_push(push) {
            panic!(
                "redoing the interrupted push of {}:{} failed: {error}",
                push.repo, push.tag
            );
        }
    }
}

/// Checks the whole store through the API and against the ledger; returns every problem.
fn check_everything(api: &Api, root: &Path, ledger: &Ledger) -> Vec<String> {
    let mut findings = Findings::default();
    check_tmp_empty(root, &mut findings.problems);
    check_fsck(root, &mut findings.problems);
    check_catalog(api, ledger, &mut findings);
    for ((repo, tag), history) in &ledger.tags {
        check_tag(api, repo, tag, history, &mut findings.problems);
    }
    for (repo, digest) in &ledger.manifests {
        api.verify_tree(repo, digest, &mut findings);
    }
    for (repo, digest, size) in &ledger.blobs {
        api.verify_blob(repo, digest, *size as u64, &mut findings);
    }
    findings.problems
}

/// `wharf fsck` on the storage after the restart: every blob hashes to its
/// name, no tag or link points at nothing, every manifest's references are
/// there. (Read-only, so it may run beside the server.)
fn check_fsck(root: &Path, problems: &mut Vec<String>) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["fsck", "--root"])
        .arg(root)
        .output()
        .expect("run wharf fsck");
    if !out.status.success() {
        problems.push(format!(
            "wharf fsck found problems after the restart:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
}

/// Temp files of interrupted uploads must be gone after the restart.
fn check_tmp_empty(root: &Path, problems: &mut Vec<String>) {
    let tmp = root.join("tmp");
    let leftovers: Vec<String> = std::fs::read_dir(&tmp)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    if !leftovers.is_empty() {
        problems.push(format!(
            "{} is not empty after restart: {leftovers:?}",
            tmp.display()
        ));
    }
}

/// Every repository in the catalog is fully readable, and every repository
/// with an acknowledged manifest is listed.
fn check_catalog(api: &Api, ledger: &Ledger, findings: &mut Findings) {
    let catalog = match api.catalog() {
        Ok(catalog) => catalog,
        Err(e) => return findings.problems.push(format!("catalog: {e}")),
    };
    let listed: BTreeSet<&str> = catalog.iter().map(String::as_str).collect();
    for (repo, _) in &ledger.manifests {
        if !listed.contains(repo.as_str()) {
            findings
                .problems
                .push(format!("repository {repo} missing from the catalog"));
        }
    }
    for repo in &catalog {
        match api.tags(repo) {
            // A repository that only has blobs (its manifest PUT was cut short) may have no tag list.
            Err(e) if e.status == Some(404) && !has_acknowledged_tag(ledger, repo) => {}
            Err(e) => findings.problems.push(format!("tags of {repo}: {e}")),
            Ok(tags) => {
                for tag in tags {
                    api.verify_tree(repo, &tag, findings);
                }
            }
        }
    }
}

fn has_acknowledged_tag(ledger: &Ledger, repo: &str) -> bool {
    ledger
        .tags
        .iter()
        .any(|((r, _), history)| r == repo && history.acknowledged > 0)
}

/// The tag exists if a PUT to it was acknowledged, and points at an acceptable digest.
fn check_tag(api: &Api, repo: &str, tag: &str, history: &TagHistory, problems: &mut Vec<String>) {
    match api.manifest(repo, tag) {
        Ok(fetched) => {
            if !history.acceptable().contains(&fetched.digest) {
                problems.push(format!(
                    "{repo}:{tag} points at {}, expected one of {:?}",
                    fetched.digest,
                    history.acceptable()
                ));
            }
        }
        Err(e) if history.acknowledged > 0 => {
            problems.push(format!("acknowledged tag {repo}:{tag} lost: {e}"));
        }
        Err(_) => {}
    }
}

fn descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    json!({ "mediaType": media_type, "digest": sha256_digest(bytes), "size": bytes.len() })
}

fn oci_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": layers.iter().map(|l| descriptor(OCI_LAYER, l)).collect::<Vec<_>>(),
    }))
    .expect("manifest JSON")
}

fn base_layer() -> Vec<u8> {
    pseudo_random(u64::MAX / 3, 200_000)
}
