//! `wharf serve` on S3 storage (a Garage server started by the test): two
//! replicas on one bucket, one killed with SIGKILL in the middle of pushes
//! while the other finishes them; presigned-URL redirects; skopeo both ways;
//! start-up against wrong credentials, a missing bucket and a server that is
//! down; garbage collection on both replicas and in a `wharf gc` process
//! while both receive pushes; `wharf fsck` on the bucket.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use wharf_testkit::image::{self, host_arch, write_oci_layout, Format};
use wharf_testkit::process::{send_signal, ChildGuard};
use wharf_testkit::tools::{run, run_unchecked, skopeo};
use wharf_testkit::{free_port, pseudo_random, sha256_digest, wait_for};

use common::api::{push_artifact, push_image_while_collecting, Api, Findings};
use reqwest::blocking::Client;
use rustix::process::Signal;
use wharf_storage_s3::garage::{Garage, BUCKET, REGION};

const MIB: usize = 1024 * 1024;

/// A `wharf serve` process on S3 storage.
struct Replica {
    process: ChildGuard,
    port: u16,
}

impl Replica {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn write_config(work: &Path, name: &str, garage: &Garage, extra: &str) -> PathBuf {
    let path = work.join(format!("{name}.toml"));
    let text = format!(
        "[storage]\ntype = \"s3\"\nendpoint = \"{}\"\nregion = \"{REGION}\"\nbucket = \"{BUCKET}\"\n\
         prefix = \"e2e\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\npart_size = {}\n{extra}",
        garage.endpoint(),
        garage.access_key_id,
        garage.secret_access_key,
        5 * MIB,
    );
    std::fs::write(&path, text).expect("write wharf.toml");
    path
}

fn spawn(work: &Path, name: &str, config: &Path, extra_args: &[&str]) -> Replica {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--config")
        .arg(config)
        .args(extra_args);
    let log = work.join(format!("{name}.log"));
    Replica {
        process: ChildGuard::spawn(cmd, name, &log),
        port,
    }
}

fn readyz(client: &Client, replica: &Replica) -> Option<u16> {
    client
        .get(format!("{}/readyz", replica.url()))
        .send()
        .ok()
        .map(|r| r.status().as_u16())
}

fn start_ready(work: &Path, name: &str, config: &Path) -> Replica {
    let mut replica = spawn(work, name, config, &[]);
    let client = client();
    let ready = wait_for(Duration::from_secs(60), || {
        if let Some(status) = replica.process.exited() {
            panic!("{name} exited: {status}\n{}", replica.process.log_tail(30));
        }
        (readyz(&client, &replica) == Some(200)).then_some(())
    });
    assert!(ready.is_some(), "{name} never became ready");
    replica
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `Range: 0-N` of an upload, as the other replica reports it.
fn upload_offset(client: &Client, url: &str) -> u64 {
    let resp = client.get(url).send().expect("upload status");
    assert_eq!(resp.status(), 204, "GET {url}");
    let range = resp.headers()["range"].to_str().unwrap().to_string();
    let end: u64 = range.trim_start_matches("0-").parse().unwrap();
    end + 1
}

fn patch(client: &Client, url: &str, offset: usize, chunk: &[u8]) {
    let resp = client
        .patch(url)
        .header("Content-Type", "application/octet-stream")
        .header(
            "Content-Range",
            format!("{offset}-{}", offset + chunk.len() - 1),
        )
        .body(chunk.to_vec())
        .send()
        .expect("PATCH");
    assert_eq!(resp.status(), 202, "PATCH {url} at {offset}");
}

/// The closing `PUT` URL of an upload.
fn with_digest(url: &str, digest: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}digest={digest}")
}

/// A request body that sends `first` and then stalls until the connection
/// dies: a push caught in flight by the kill.
struct StallingBody {
    first: std::io::Cursor<Vec<u8>>,
    sent: Option<mpsc::Sender<()>>,
    hold: mpsc::Receiver<()>,
}

impl Read for StallingBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.first.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        if let Some(tx) = self.sent.take() {
            let _ = tx.send(());
        }
        // Blocks until the test drops the sender, long after the kill.
        let _ = self.hold.recv();
        Err(std::io::Error::other("stalled body ends"))
    }
}

#[test]
fn a_replica_killed_mid_push_leaves_the_other_to_finish() {
    let garage = Garage::start();
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path(), "shared", &garage, "");
    let mut a = start_ready(work.path(), "replica-a", &config);
    let b = start_ready(work.path(), "replica-b", &config);
    let client = client();
    let repo = "e2e/app";
    let blobs: Vec<Vec<u8>> = vec![
        pseudo_random(1, 3 * MIB + 7),
        pseudo_random(2, 7 * MIB + 3),
        pseudo_random(3, 6 * MIB),
    ];
    // Open every upload on A and push part of each in 1 MiB chunks.
    let mut uploads = Vec::new();
    for blob in &blobs {
        let resp = client
            .post(format!("{}/v2/{repo}/blobs/uploads/", a.url()))
            .header("Content-Length", "0")
            .send()
            .unwrap();
        assert_eq!(resp.status(), 202);
        let path = resp.headers()["location"].to_str().unwrap().to_string();
        let sent = blob.len() / 2;
        let mut offset = 0;
        for chunk in blob[..sent].chunks(MIB) {
            patch(&client, &format!("{}{path}", a.url()), offset, chunk);
            offset += chunk.len();
        }
        uploads.push(path);
    }
    // One more PATCH is in flight when A dies.
    let (sent_tx, sent_rx) = mpsc::channel();
    let (hold_tx, hold_rx) = mpsc::channel::<()>();
    let in_flight_url = format!("{}{}", a.url(), uploads[1]);
    let offset = blobs[1].len() / 2;
    let stalled = std::thread::spawn({
        let body = StallingBody {
            first: std::io::Cursor::new(blobs[1][offset..offset + MIB].to_vec()),
            sent: Some(sent_tx),
            hold: hold_rx,
        };
        move || {
            Client::new()
                .patch(in_flight_url)
                .header("Content-Type", "application/octet-stream")
                .body(reqwest::blocking::Body::new(body))
                .send()
        }
    });
    sent_rx
        .recv()
        .expect("the stalled PATCH sent its first bytes");
    send_signal(a.process.pid(), Signal::KILL);
    a.process.reap();
    drop(hold_tx);
    assert!(
        stalled.join().unwrap().is_err(),
        "the in-flight PATCH must fail"
    );

    // B finishes every upload through the same upload URLs.
    for (blob, path) in blobs.iter().zip(&uploads) {
        let url = format!("{}{path}", b.url());
        let digest = sha256_digest(blob);
        let offset = upload_offset(&client, &url) as usize;
        assert!(offset >= blob.len() / 2, "acknowledged chunks were lost");
        assert!(offset <= blob.len());
        // Nothing is visible under the digest before the upload is closed.
        let head = client
            .head(format!("{}/v2/{repo}/blobs/{digest}", b.url()))
            .send()
            .unwrap();
        assert_eq!(head.status(), 404, "half-pushed blob visible");
        for (i, chunk) in blob[offset..].chunks(MIB).enumerate() {
            patch(&client, &url, offset + i * MIB, chunk);
        }
        let resp = client
            .put(with_digest(&url, &digest))
            .header("Content-Length", "0")
            .send()
            .unwrap();
        assert_eq!(
            resp.status(),
            201,
            "closing on B: {}",
            resp.text().unwrap_or_default()
        );
    }
    // Everything is pullable from B, byte for byte.
    let api = Api::new(&b.url());
    for blob in &blobs {
        let digest = sha256_digest(blob);
        let got = api.blob(repo, &digest).expect("blob pulled from B");
        assert!(got == *blob, "blob {digest} differs");
    }
    // And a restarted A sees the same registry.
    let a2 = start_ready(work.path(), "replica-a2", &config);
    let got = Api::new(&a2.url())
        .blob(repo, &sha256_digest(&blobs[2]))
        .unwrap();
    assert!(got == blobs[2]);
}

#[test]
fn redirects_hand_out_presigned_urls_and_skopeo_works_both_ways() {
    let garage = Garage::start();
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path(), "redirect", &garage, "redirect = true\n");
    let wharf = start_ready(work.path(), "wharf-redirect", &config);
    let host = format!("127.0.0.1:{}", wharf.port);
    // Push with skopeo from an OCI layout.
    let artifact = image::image(Format::Oci, "s3-e2e", host_arch());
    let layout = work.path().join("layout");
    write_oci_layout(&artifact, &layout, "v1");
    run(
        skopeo().args([
            "copy",
            "--dest-tls-verify=false",
            "--preserve-digests",
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{host}/s3/app:v1"),
        ]),
        "skopeo copy to wharf on S3",
    );
    let api = Api::new(&wharf.url());
    let mut findings = Findings::default();
    api.verify_tree("s3/app", "v1", &mut findings);
    assert!(findings.problems.is_empty(), "{:?}", findings.problems);
    // A blob GET is a 307 to the object store, and the URL serves the bytes.
    let layer = &artifact.layers()[0];
    let client = client();
    let resp = client
        .get(format!(
            "{}/v2/s3/app/blobs/{}",
            wharf.url(),
            layer.digest()
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 307);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&garage.endpoint()), "{location}");
    let bytes = client.get(&location).send().unwrap().bytes().unwrap();
    assert_eq!(sha256_digest(&bytes), layer.digest().to_string());
    // skopeo pulls through the redirects.
    let pulled = work.path().join("pulled");
    run(
        skopeo().args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{host}/s3/app:v1"),
            &format!("oci:{}:v1", pulled.display()),
        ]),
        "skopeo copy from wharf on S3",
    );
    let pulled_layer = pulled
        .join("blobs/sha256")
        .join(wharf_testkit::digest_hex(&layer.digest().to_string()));
    assert!(
        pulled_layer.is_file(),
        "layer missing from the pulled image"
    );
}

#[test]
fn start_up_problems_are_clear_errors_and_readiness_waits_for_storage() {
    let mut garage = Garage::start();
    let work = tempfile::tempdir().unwrap();
    let serve = |config: &Path, extra: &[&str]| {
        run_unchecked(
            Command::new(env!("CARGO_BIN_EXE_wharf"))
                .args(["serve", "--listen", "127.0.0.1:0", "--config"])
                .arg(config)
                .args(extra),
        )
    };
    // Wrong secret.
    let good = std::fs::read_to_string(write_config(work.path(), "good", &garage, "")).unwrap();
    let wrong = work.path().join("wrong.toml");
    std::fs::write(
        &wrong,
        good.replace(&garage.secret_access_key, &"0".repeat(64)),
    )
    .unwrap();
    let out = serve(&wrong, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("rejected the credentials"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("hint:"), "{}", out.stderr);
    // Missing bucket.
    let missing = work.path().join("missing.toml");
    std::fs::write(
        &missing,
        good.replace(&format!("bucket = \"{BUCKET}\""), "bucket = \"absent\""),
    )
    .unwrap();
    let out = serve(&missing, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    assert!(out.stderr.contains("create the bucket"), "{}", out.stderr);
    // Server down.
    let config = work.path().join("good.toml");
    garage.kill();
    let out = serve(&config, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert!(out.stderr.contains("does not answer"), "{}", out.stderr);
    assert!(out.stderr.contains("--wait-for-storage"), "{}", out.stderr);
    // With --wait-for-storage it serves, not ready, until the server is back.
    let waiting = spawn(work.path(), "waiting", &config, &["--wait-for-storage"]);
    let client = client();
    let status = wait_for(Duration::from_secs(30), || readyz(&client, &waiting));
    assert_eq!(status, Some(503), "/readyz while the store is down");
    garage.restart();
    let ready = wait_for(Duration::from_secs(60), || {
        (readyz(&client, &waiting) == Some(200)).then_some(())
    });
    assert!(
        ready.is_some(),
        "never became ready after the store came back"
    );
    // The store going away while serving: not ready, a push fails with a
    // spec error body, and the registry recovers when the store is back.
    garage.kill();
    let down = wait_for(Duration::from_secs(60), || {
        (readyz(&client, &waiting) == Some(503)).then_some(())
    });
    assert!(down.is_some(), "/readyz still ready with the store down");
    let resp = client
        .post(format!("{}/v2/e2e/down/blobs/uploads/", waiting.url()))
        .header("Content-Length", "0")
        .send()
        .unwrap();
    assert!(resp.status().is_server_error(), "{}", resp.status());
    let body: serde_json::Value = resp.json().expect("a JSON error body");
    assert!(body["errors"][0]["code"].is_string(), "{body}");
    garage.restart();
    let back = wait_for(Duration::from_secs(60), || {
        (readyz(&client, &waiting) == Some(200)).then_some(())
    });
    assert!(back.is_some(), "not ready again after the store came back");
    let pushed = Api::new(&waiting.url()).push_blob_monolithic("e2e/down", b"after the outage");
    assert!(pushed.is_ok(), "push after recovery: {:?}", pushed.err());
}

/// Two replicas on one bucket receive pushes while garbage collection runs
/// on both of them (`[gc] schedule`) and in a separate `wharf gc` process
/// looping next to them. Blobs get no grace period: the doomed markers and
/// the settle period alone keep the pushes whole. Every pushed image stays
/// complete on both replicas and the junk is collected.
#[test]
fn garbage_collection_with_two_replicas_pushing_loses_nothing() {
    const PUSHERS: usize = 4;
    const IMAGES: usize = 6;
    let garage = Garage::start();
    let work = tempfile::tempdir().unwrap();
    let gc_settings = "[gc]\nschedule = \"1s\"\ngrace = \"0s\"\nsettle = \"1s\"\n\
                       [[gc.retention]]\nrepos = \"**\"\nmin_age = \"1h\"\n";
    let config = write_config(work.path(), "gc", &garage, gc_settings);
    let replicas = [
        start_ready(work.path(), "replica-a", &config),
        start_ready(work.path(), "replica-b", &config),
    ];
    let urls: Vec<String> = replicas.iter().map(Replica::url).collect();
    let api = Api::new(&urls[0]);
    let shared: Vec<Vec<u8>> = (0..3)
        .map(|i| pseudo_random(100 + i as u64, 64 * 1024 + i))
        .collect();
    for layer in &shared {
        api.push_blob_monolithic("garbage/shared", layer).unwrap();
    }
    let junk: Vec<String> = (0..8)
        .map(|i| {
            api.push_blob_monolithic("garbage/junk", format!("junk {i}").as_bytes())
                .unwrap()
        })
        .collect();

    let done = Arc::new(AtomicBool::new(false));
    let collector = {
        let (config, done) = (config.clone(), done.clone());
        std::thread::spawn(move || {
            let mut runs = 0;
            while runs < 2 || !done.load(Ordering::Relaxed) {
                let out = run_unchecked(
                    Command::new(env!("CARGO_BIN_EXE_wharf"))
                        .args(["gc", "--output", "json", "--config"])
                        .arg(&config),
                );
                assert_eq!(out.status.code(), Some(0), "wharf gc: {}", out.describe());
                let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
                assert_eq!(doc["version"], 1);
                runs += 1;
            }
            runs
        })
    };
    let pushers: Vec<_> = (0..PUSHERS)
        .map(|p| {
            let (urls, shared) = (urls.clone(), shared.clone());
            std::thread::spawn(move || {
                let mut pushed = Vec::new();
                for i in 0..IMAGES {
                    // Alternate replicas: each image goes to one of the two.
                    let api = Api::new(&urls[(p + i) % urls.len()]);
                    let repo = format!("team/app{p}");
                    let config = format!("{{\"pusher\":{p},\"image\":{i}}}");
                    let own = pseudo_random((p * 100 + i) as u64 + 1000, 32 * 1024 + i);
                    let layers: Vec<&[u8]> = vec![shared[(p + i) % shared.len()].as_slice(), &own];
                    let tag = format!("v{i}");
                    let digest =
                        push_image_while_collecting(&api, &repo, &tag, config.as_bytes(), &layers);
                    pushed.push((repo, tag, digest));
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
    let runs = collector.join().expect("the wharf gc loop failed");
    assert!(runs >= 2);

    // The replicas' own schedules keep collecting: the junk goes.
    let junk_gone = wait_for(Duration::from_secs(60), || {
        junk.iter()
            .all(|d| matches!(api.blob("garbage/junk", d), Err(e) if e.status == Some(404)))
            .then_some(())
    });
    assert!(junk_gone.is_some(), "the junk blobs were never collected");
    for url in &urls {
        let api = Api::new(url);
        for (repo, tag, digest) in &images {
            let mut findings = Findings::default();
            let got = api.verify_tree(repo, tag, &mut findings);
            assert!(
                findings.problems.is_empty(),
                "{url} {repo}:{tag}: {:?}",
                findings.problems
            );
            assert_eq!(got.as_ref(), Some(digest), "{repo}:{tag} on {url}");
        }
        let metrics = client()
            .get(format!("{url}/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let gc_runs: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("wharf_gc_runs_total "))
            .expect("wharf_gc_runs_total in /metrics")
            .trim()
            .parse()
            .unwrap();
        assert!(gc_runs >= 1.0, "{url} never collected: {gc_runs}");
    }
}

/// A store that accepts connections and never answers (a hung gateway):
/// start-up fails with the reason once the request timeout has passed,
/// instead of hanging, and `--wait-for-storage` serves as not ready.
#[test]
fn a_store_that_never_answers_fails_start_up_instead_of_hanging() {
    let work = tempfile::tempdir().unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    // Accept and hold every connection without a byte of answer.
    let held = std::thread::spawn(move || {
        let mut connections = Vec::new();
        for stream in silent.incoming() {
            match stream {
                Ok(s) => connections.push(s),
                Err(_) => break,
            }
            if connections.len() >= 64 {
                break;
            }
        }
    });
    let config = work.path().join("silent.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ntype = \"s3\"\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"{REGION}\"\n\
             bucket = \"{BUCKET}\"\naccess_key_id = \"GK0\"\nsecret_access_key = \"{}\"\n\
             request_timeout_secs = 1\n",
            "0".repeat(64)
        ),
    )
    .unwrap();
    let out = run_unchecked(
        Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config),
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert!(out.stderr.contains("does not answer"), "{}", out.stderr);
    assert!(out.stderr.contains("hint:"), "{}", out.stderr);

    let waiting = spawn(
        work.path(),
        "silent-waiting",
        &config,
        &["--wait-for-storage"],
    );
    let client = client();
    let status = wait_for(Duration::from_secs(60), || readyz(&client, &waiting));
    assert_eq!(status, Some(503), "/readyz with a store that never answers");
    drop(waiting);
    drop(held);
}

/// `wharf fsck` reads the server's `[storage]`: it checks a bucket as it
/// checks a directory, and refuses a `--root` that would point elsewhere.
#[test]
fn fsck_checks_the_bucket_the_server_uses() {
    let garage = Garage::start();
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path(), "fsck", &garage, "");
    let replica = start_ready(work.path(), "fsck-replica", &config);
    let artifact = image::image(Format::Oci, "fsck-on-s3", host_arch());
    push_artifact(&Api::new(&replica.url()), "team/fsck", "v1", &artifact);

    let out = run_unchecked(
        Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["fsck", "--output", "json", "--config"])
            .arg(&config),
    );
    assert_eq!(out.status.code(), Some(0), "wharf fsck: {}", out.describe());
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["command"], "fsck");
    let report = &doc["report"];
    assert_eq!(
        report["problems"].as_array().map(Vec::len),
        Some(0),
        "{doc}"
    );
    assert_eq!(report["tags_checked"], 1, "{doc}");
    assert!(
        report["blobs_checked"].as_u64() >= Some(artifact.blobs.len() as u64),
        "every blob of the bucket rehashed: {doc}"
    );

    let out = run_unchecked(
        Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["fsck", "--root"])
            .arg(work.path().join("elsewhere"))
            .arg("--config")
            .arg(&config),
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("--root applies to filesystem storage"),
        "{}",
        out.describe()
    );
}
