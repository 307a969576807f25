//! `wharf gc` on a real storage root: dry-run text and JSON, a run that
//! removes exactly what the dry run listed, the gc and storage-size series
//! of `/metrics`, and `wharf gc` in its own process collecting while a
//! `wharf serve` process receives pushes into the same directory.

mod common;

use common::server::Wharf;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wharf_testkit::{sha256_digest, wait_for};

use common::api::{oci_manifest, push_image, push_image_while_collecting, Api};
use wharf_storage::testsuite::age_tree;

fn wharf(args: &[&str], extra: &[&Path]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .args(extra)
        .output()
        .expect("run wharf");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn gc(root: &Path, config: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["gc"];
    args.extend_from_slice(extra);
    let (root_flag, config_flag) = (PathBuf::from("--root"), PathBuf::from("--config"));
    wharf(&args, &[&root_flag, root, &config_flag, config])
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("wharf.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort();
    out
}

fn removed_subjects(report: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = report["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{} {}",
                o["kind"].as_str().unwrap(),
                o["subject"].as_str().unwrap()
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn gc_dry_run_lists_what_a_run_then_removes() {
    let work = tempfile::tempdir().unwrap();
    let mut server = Wharf::start(&work.path().join("wharf"));
    let api = Api::new(&server.url());
    push_image(&api, "gc/app", "v1", b"{\"kept\":1}", &[b"kept layer"]).unwrap();
    let untagged = push_image(&api, "gc/app", "tmp", b"{\"kept\":0}", &[b"dropped layer"]).unwrap();
    // Moving the tag leaves the first manifest of "tmp" untagged.
    push_image(&api, "gc/app", "tmp", b"{\"kept\":2}", &[]).unwrap();
    let stray = api.push_blob_monolithic("gc/app", b"stray").unwrap();
    server.shutdown();
    let root = server.root().to_path_buf();
    age_tree(&root, Duration::from_secs(48 * 3600));
    let config = write_config(work.path(), "[gc]\nsettle = \"100ms\"\n");

    let before = files_under(&root);
    let (code, text, err) = gc(&root, &config, &["--dry-run"]);
    assert_eq!(code, 0, "{text}{err}");
    assert!(
        text.contains(&format!("would remove manifest gc/app@{untagged}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("would remove blob {stray}: 5 bytes")),
        "{text}"
    );
    assert!(text.contains("would remove 1 manifest(s)"), "{text}");
    assert!(text.contains("4 blob(s)"), "{text}");
    assert_eq!(files_under(&root), before, "a dry run changes nothing");

    let (code, json, err) = gc(&root, &config, &["--dry-run", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let dry: serde_json::Value = serde_json::from_str(&json).expect("JSON report");
    assert_eq!(dry["version"], 1);
    assert_eq!(dry["report"]["dry_run"], true);
    assert_eq!(dry["report"]["manifests"]["count"], 1);
    assert_eq!(dry["report"]["blobs"]["count"], 4);

    let (code, json, err) = gc(&root, &config, &["--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let real: serde_json::Value = serde_json::from_str(&json).expect("JSON report");
    assert_eq!(real["report"]["dry_run"], false);
    assert_eq!(
        removed_subjects(&dry["report"]),
        removed_subjects(&real["report"])
    );
    assert_eq!(
        dry["report"]["blobs"]["bytes"],
        real["report"]["blobs"]["bytes"]
    );
    assert_eq!(real["report"]["links"], 3);
    assert!(real["report"]["storage"]["blobs"].as_u64().unwrap() > 0);

    let (code, text, _) = wharf(&["fsck", "--root"], &[&root]);
    assert_eq!(code, 0, "fsck after gc: {text}");
    let (code, text, _) = gc(&root, &config, &[]);
    assert_eq!(code, 0);
    assert!(
        text.contains("removed 0 manifest(s) (0 bytes), 0 blob(s)"),
        "{text}"
    );

    // Errors: not a root, a bad setting, a bad flag.
    let (code, _, err) = gc(&work.path().join("nothing"), &config, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("is not a wharf storage root"), "{err}");
    let bad = write_config(work.path(), "[gc]\nsettle = \"soon\"\n");
    let (code, _, err) = gc(&root, &bad, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("settle") && err.contains("hint:"), "{err}");
    let bad = write_config(work.path(), "[gc]\nkeep_last = 3\n");
    let (code, _, err) = gc(&root, &bad, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("keep_last"), "{err}");
    let (code, _, _) = wharf(&["gc", "--no-such-flag"], &[]);
    assert_eq!(code, 2);
}

/// The value of the series `name` (with its labels) in a Prometheus text page.
fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn scrape(url: &str) -> String {
    reqwest::blocking::get(format!("{url}/metrics"))
        .unwrap()
        .text()
        .unwrap()
}

#[test]
fn metrics_report_storage_size_and_collections() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("wharf");
    let junk: [&[u8]; 3] = [b"junk one", b"junk number two", b"junk 3"];
    let junk_bytes: usize = junk.iter().map(|j| j.len()).sum();
    {
        let mut server = Wharf::start(&dir);
        let api = Api::new(&server.url());
        for j in junk {
            api.push_blob_monolithic("junk", j).unwrap();
        }
        server.shutdown();
    }
    age_tree(&dir.join("root"), Duration::from_secs(48 * 3600));

    // No schedule: the start-up scan counts the junk, a push adds to it.
    let mut server = Wharf::start(&dir);
    let url = server.url();
    let page = wait_for(Duration::from_secs(30), || {
        let page = scrape(&url);
        metric(&page, "wharf_storage_blobs").map(|_| page)
    })
    .expect("the storage gauges appear once the start-up scan finished");
    assert_eq!(metric(&page, "wharf_storage_blobs"), Some(3.0));
    assert_eq!(
        metric(&page, "wharf_storage_bytes"),
        Some(junk_bytes as f64)
    );
    assert_eq!(metric(&page, "wharf_gc_runs_total"), Some(0.0));
    assert_eq!(
        metric(&page, "wharf_gc_last_run_timestamp_seconds"),
        Some(0.0)
    );
    let api = Api::new(&url);
    let (config, layer): (&[u8], &[u8]) = (b"{\"metrics\":true}", b"a layer of some bytes");
    push_image(&api, "app", "v1", config, &[layer]).unwrap();
    let image_bytes = config.len() + layer.len() + oci_manifest(config, &[layer]).len();
    let page = scrape(&url);
    assert_eq!(metric(&page, "wharf_storage_blobs"), Some(6.0));
    assert_eq!(
        metric(&page, "wharf_storage_bytes"),
        Some((junk_bytes + image_bytes) as f64)
    );
    server.shutdown();

    // Scheduled collections remove the junk, and say so.
    let cfg = write_config(work.path(), "[gc]\nschedule = \"1s\"\nsettle = \"100ms\"\n");
    let mut server = Wharf::start_with_config(&dir, Some(&cfg));
    let url = server.url();
    let page = wait_for(Duration::from_secs(60), || {
        let page = scrape(&url);
        (metric(&page, "wharf_gc_runs_total")? >= 1.0).then_some(page)
    })
    .unwrap_or_else(|| panic!("no collection ran\n{}", server.log_tail()));
    let removed = |kind: &str, what: &str| {
        metric(
            &page,
            &format!("wharf_gc_removed_{what}_total{{kind=\"{kind}\"}}"),
        )
    };
    assert_eq!(removed("blob", "objects"), Some(3.0), "{page}");
    assert_eq!(removed("blob", "bytes"), Some(junk_bytes as f64));
    assert_eq!(removed("manifest", "objects"), Some(0.0));
    assert_eq!(metric(&page, "wharf_gc_failures_total"), Some(0.0));
    assert_eq!(metric(&page, "wharf_gc_removed_links_total"), Some(3.0));
    assert!(metric(&page, "wharf_gc_last_run_timestamp_seconds").unwrap() > 1.0e9);
    assert!(
        metric(&page, "wharf_gc_last_duration_seconds").unwrap() >= 0.1,
        "settle included"
    );
    assert_eq!(metric(&page, "wharf_storage_blobs"), Some(3.0));
    assert_eq!(
        metric(&page, "wharf_storage_bytes"),
        Some(image_bytes as f64)
    );
    Api::new(&url)
        .manifest("app", "v1")
        .expect("the image stays");
    server.shutdown();
}

/// `wharf gc` runs again and again in its own process while a `wharf serve`
/// process receives pushes of images whose layers were garbage a moment
/// before. No blob has a grace period; the settle period and the doomed
/// markers alone keep the pushes whole.
#[test]
fn gc_process_next_to_a_serving_process_loses_nothing() {
    const PUSHERS: usize = 4;
    const IMAGES: usize = 10;
    let work = tempfile::tempdir().unwrap();
    let mut server = Wharf::start(&work.path().join("wharf"));
    let url = server.url();
    let root = server.root().to_path_buf();
    let config = write_config(
        work.path(),
        "[gc]\ngrace = \"0s\"\nsettle = \"300ms\"\n[[gc.retention]]\nrepos = \"**\"\nmin_age = \"1h\"\n",
    );
    let api = Api::new(&url);
    let shared: Vec<Vec<u8>> = (0..4)
        .map(|i| format!("shared layer {i}: {}", "s".repeat(4096 * i)).into_bytes())
        .collect();
    for layer in &shared {
        api.push_blob_monolithic("garbage/shared", layer).unwrap();
    }
    for i in 0..10 {
        api.push_blob_monolithic("garbage/junk", format!("junk {i}").as_bytes())
            .unwrap();
    }

    let done = Arc::new(AtomicBool::new(false));
    let collector = {
        let (root, config, done) = (root.clone(), config.clone(), done.clone());
        std::thread::spawn(move || {
            let mut reports = Vec::new();
            while reports.len() < 2 || !done.load(Ordering::Relaxed) {
                let (code, json, err) = gc(&root, &config, &["--output", "json"]);
                assert_eq!(code, 0, "wharf gc failed: {err}");
                let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
                reports.push(doc["report"].clone());
            }
            reports
        })
    };
    let pushers: Vec<_> = (0..PUSHERS)
        .map(|p| {
            let (url, shared) = (url.clone(), shared.clone());
            std::thread::spawn(move || {
                let api = Api::new(&url);
                let repo = format!("team/app{p}");
                let mut pushed = Vec::new();
                for i in 0..IMAGES {
                    let config = format!("{{\"pusher\":{p},\"image\":{i}}}");
                    let own = format!("own layer {p}/{i}");
                    let layers: Vec<&[u8]> = if i % 2 == 0 {
                        vec![own.as_bytes()]
                    } else {
                        vec![shared[(p + i) % shared.len()].as_slice(), own.as_bytes()]
                    };
                    let tag = format!("v{i}");
                    let digest =
                        push_image_while_collecting(&api, &repo, &tag, config.as_bytes(), &layers);
                    pushed.push((
                        repo.clone(),
                        tag,
                        digest,
                        config,
                        layers.iter().map(|l| l.to_vec()).collect::<Vec<_>>(),
                    ));
                }
                pushed
            })
        })
        .collect();
    let mut images = Vec::new();
    for p in pushers {
        images.extend(p.join().expect("a pusher failed"));
    }
    done.store(true, Ordering::Relaxed);
    let reports = collector.join().expect("the collector failed");
    let collected: u64 = reports
        .iter()
        .map(|r| r["blobs"]["count"].as_u64().unwrap())
        .sum();
    assert!(collected >= 10, "the junk was not collected: {reports:#?}");

    for (repo, tag, digest, config, layers) in &images {
        let m = api
            .manifest(repo, tag)
            .unwrap_or_else(|e| panic!("{repo}:{tag}: {e}"));
        assert_eq!(&m.digest, digest);
        let config_digest = sha256_digest(config.as_bytes());
        assert_eq!(api.blob(repo, &config_digest).unwrap(), config.as_bytes());
        for l in layers {
            let got = api
                .blob(repo, &sha256_digest(l))
                .unwrap_or_else(|e| panic!("{repo}:{tag} lost a layer: {e}"));
            assert_eq!(&got, l);
        }
    }
    server.shutdown();
    let (code, text, _) = wharf(&["fsck", "--root"], &[&root]);
    assert_eq!(code, 0, "fsck after concurrent gc: {text}");
    eprintln!(
        "{} gc runs, {collected} blobs collected, {} rescued",
        reports.len(),
        reports
            .iter()
            .map(|r| r["rescued"].as_u64().unwrap())
            .sum::<u64>()
    );
}
