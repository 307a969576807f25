//! `wharf serve` as a pull-through cache, end to end: the upstream is a
//! second `wharf serve` behind a redirector that answers every blob GET with
//! a 307 elsewhere (as registries hand blobs to a CDN). `wharf warm` fills
//! the cache; containerd, in a network namespace with only loopback, pulls
//! through it by tag and by digest; with the upstream gone, the cache still
//! serves what it holds.

mod common;

use common::cli::wharf_htpasswd;
use common::server::Wharf;
use std::path::Path;
use std::process::Command;
use wharf_testkit::image::{self, host_arch, Format};
use wharf_testkit::in_private_netns;
use wharf_testkit::tools::run;

use common::api::{push_artifact as push, Api};
use common::containerd::{write_docker_io_mirror, Containerd};
use common::redirector::Redirector;
use common::standin::StandIn;

/// A cache for `docker.io` whose endpoint is the redirector.
fn start_cache(work: &Path, redirector: &Redirector, tag_ttl: &str) -> Wharf {
    let config = work.join("wharf.toml");
    std::fs::write(
        &config,
        format!(
            "[cache]\ntag_ttl = \"{tag_ttl}\"\nread_timeout = \"5s\"\nconnect_timeout = \"2s\"\nattempts = 1\n\n\
             [[upstream]]\nhost = \"docker.io\"\nendpoint = \"http://{}\"\n",
            redirector.host()
        ),
    )
    .expect("write wharf.toml");
    Wharf::start_with(
        &work.join("cache"),
        &["--config".into(), config.display().to_string()],
    )
}

fn metric(cache: &Wharf, name: &str) -> u64 {
    let text = reqwest::blocking::get(format!("{}/metrics", cache.url()))
        .expect("GET /metrics")
        .text()
        .expect("metrics body");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
}

#[test]
fn warm_fills_the_cache_which_then_serves_without_the_upstream() {
    let work = tempfile::tempdir().expect("temp dir");
    let upstream = Wharf::start(&work.path().join("upstream"));
    let artifact = image::image(Format::Docker, "wharf-cache-warm", host_arch());
    push(&Api::new(&upstream.url()), "library/app", "1.0", &artifact);
    let mut redirector = Redirector::start(&upstream.host());
    let cache = start_cache(work.path(), &redirector, "0s");

    let list = work.path().join("images.txt");
    std::fs::write(&list, "# warmed ahead of time\ndocker.io/library/app:1.0\n").unwrap();
    let out = run(
        Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["warm", "--to", &cache.url()])
            .arg(&list),
        "wharf warm",
    );
    assert!(
        out.stdout.contains("warmed 1 image(s)") && out.stdout.contains("0 failed"),
        "{}",
        out.describe()
    );
    for blob in &artifact.blobs {
        let line = format!("GET /v2/library/app/blobs/{} ", blob.digest());
        assert_eq!(
            redirector.count(&line),
            1,
            "each blob crosses once: {:?}",
            redirector.lines()
        );
    }

    redirector.stop();
    let api = Api::new(&cache.url());
    // containerd's form (?ns=) and the path-prefixed form, both byte-exact.
    let by_ns = api
        .manifest("library/app", "1.0?ns=docker.io")
        .expect("a stale tag is served when the upstream is gone");
    assert_eq!(by_ns.body, artifact.manifest);
    assert_eq!(by_ns.digest, artifact.digest().to_string());
    assert_eq!(by_ns.content_type, artifact.media_type);
    let by_digest = api
        .manifest("docker.io/library/app", &artifact.digest().to_string())
        .expect("by digest from the cache");
    assert_eq!(by_digest.body, artifact.manifest);
    for blob in &artifact.blobs {
        let bytes = api
            .blob("docker.io/library/app", &blob.digest().to_string())
            .expect("a blob from the cache");
        assert_eq!(bytes, blob.bytes);
    }
    assert_eq!(metric(&cache, "wharf_cache_stale_serves_total"), 1);
    assert!(metric(&cache, "wharf_cache_upstream_errors_total") >= 1);
}

#[test]
fn containerd_pulls_through_the_cache_by_tag_and_digest() {
    wharf_testkit::tools::require_root("containerd in a network namespace");
    let work = tempfile::tempdir().expect("temp dir");
    in_private_netns(|| {
        let upstream = Wharf::start(&work.path().join("upstream"));
        let single = image::image(Format::Oci, "wharf-cache-oci", host_arch());
        let multi = image::multi_arch(Format::Docker, "wharf-cache-multi");
        let api = Api::new(&upstream.url());
        push(&api, "library/single", "1.0", &single);
        push(&api, "library/multi", "1.0", &multi);
        let redirector = Redirector::start(&upstream.host());
        let cache = start_cache(work.path(), &redirector, "10m");
        // The hosts.toml's `server` is a counting stand-in: everything must
        // come through the cache.
        let fallback = StandIn::start();
        let hosts_dir = work.path().join("certs.d");
        write_docker_io_mirror(&hosts_dir, &fallback.url(), &cache.url());
        let containerd = Containerd::start(&work.path().join("containerd"));

        for (name, artifact) in [("single", &single), ("multi", &multi)] {
            for reference in [
                format!("docker.io/library/{name}:1.0"),
                format!("docker.io/library/{name}@{}", artifact.digest()),
            ] {
                let out = containerd.pull(&hosts_dir, &reference);
                assert!(
                    out.status.success(),
                    "containerd could not pull {reference} through the cache\n{}\n\
                     --- cache log ---\n{}\n--- containerd log ---\n{}\nupstream saw: {:?}",
                    out.describe(),
                    cache.log_tail(),
                    containerd.log_tail(),
                    redirector.lines()
                );
                let rows = containerd.images();
                let row = rows
                    .iter()
                    .find(|r| r.reference == reference)
                    .unwrap_or_else(|| panic!("ctr images ls lacks {reference}: {rows:?}"));
                assert_eq!(row.digest, artifact.digest().to_string(), "{reference}");
            }
        }
        assert_eq!(
            fallback.requests(),
            0,
            "containerd fell back to the server: {:?}",
            fallback.request_lines()
        );
        assert!(
            redirector.count("GET /v2/library/single/blobs/") >= 1,
            "the cache fetched blobs through the redirect: {:?}",
            redirector.lines()
        );
    });
}

/// Pretend `repo@digest` was last pulled through `cache` two hours ago.
fn last_pulled_two_hours_ago(cache: &Wharf, repo: &str, digest: &str) {
    let key = wharf_storage::layout::revision(
        &repo.parse().expect("repository"),
        &digest.parse().expect("digest"),
    );
    let file = std::fs::File::options()
        .write(true)
        .open(cache.root().join(key))
        .expect("the cached manifest's revision");
    file.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .expect("set its modification time");
}

#[test]
fn cache_max_age_lets_wharf_gc_remove_images_not_pulled_since() {
    let work = tempfile::tempdir().expect("temp dir");
    let upstream = Wharf::start(&work.path().join("upstream"));
    let hot = image::image(Format::Oci, "wharf-cache-hot", host_arch());
    let cold = image::image(Format::Docker, "wharf-cache-cold", host_arch());
    let up = Api::new(&upstream.url());
    push(&up, "library/hot", "1.0", &hot);
    push(&up, "library/cold", "1.0", &cold);
    let redirector = Redirector::start(&upstream.host());
    let config = work.path().join("wharf.toml");
    std::fs::write(
        &config,
        format!(
            "[cache]\nmax_age = \"1h\"\n\n[gc]\ngrace = \"0s\"\nsettle = \"0s\"\n\n\
             [[upstream]]\nhost = \"docker.io\"\nendpoint = \"http://{}\"\n",
            redirector.host()
        ),
    )
    .expect("write wharf.toml");
    let cache = Wharf::start_with(
        &work.path().join("cache"),
        &["--config".into(), config.display().to_string()],
    );
    let api = Api::new(&cache.url());
    for (name, artifact) in [("hot", &hot), ("cold", &cold)] {
        let repo = format!("docker.io/library/{name}");
        assert_eq!(
            api.manifest(&repo, "1.0").expect("pull").body,
            artifact.manifest
        );
        for blob in &artifact.blobs {
            assert_eq!(
                api.blob(&repo, &blob.digest().to_string()).expect("pull"),
                blob.bytes
            );
        }
    }
    last_pulled_two_hours_ago(&cache, "docker.io/library/hot", &hot.digest().to_string());
    last_pulled_two_hours_ago(&cache, "docker.io/library/cold", &cold.digest().to_string());
    // Only `hot` is pulled again: its last pull is now.
    api.manifest("docker.io/library/hot", "1.0")
        .expect("pull again");

    let out = run(
        Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["gc", "--output", "json", "--config"])
            .arg(&config)
            .arg("--root")
            .arg(cache.root()),
        "wharf gc",
    );
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("a JSON report");
    let removed: Vec<&str> = report["report"]["removed"]
        .as_array()
        .expect("removed objects")
        .iter()
        .filter(|o| o["kind"] == "manifest")
        .filter_map(|o| o["subject"].as_str())
        .collect();
    assert_eq!(removed, [cold.digest().to_string()], "{}", out.describe());

    // `hot` is served from the cache; `cold` comes from the upstream again.
    let before = redirector.count("GET /v2/library/cold/manifests/1.0");
    let hot_blob_gets = redirector.count("GET /v2/library/hot/blobs/");
    assert_eq!(
        api.manifest("docker.io/library/hot", "1.0").unwrap().body,
        hot.manifest
    );
    for blob in &hot.blobs {
        assert_eq!(
            api.blob("docker.io/library/hot", &blob.digest().to_string())
                .unwrap(),
            blob.bytes
        );
    }
    assert_eq!(
        redirector.count("GET /v2/library/hot/blobs/"),
        hot_blob_gets
    );
    assert_eq!(
        api.manifest("docker.io/library/cold", "1.0").unwrap().body,
        cold.manifest
    );
    assert_eq!(
        redirector.count("GET /v2/library/cold/manifests/1.0"),
        before + 1
    );
    for blob in &cold.blobs {
        assert_eq!(
            api.blob("docker.io/library/cold", &blob.digest().to_string())
                .unwrap(),
            blob.bytes
        );
        let line = format!("GET /v2/library/cold/blobs/{} ", blob.digest());
        assert_eq!(
            redirector.count(&line),
            2,
            "fetched again: {:?}",
            redirector.lines()
        );
    }
}

/// One `wharf serve` that keeps a private repository and caches `docker.io`
/// for anonymous nodes: reading the private blob by its digest through the
/// cached namespace must fail exactly as for a blob nobody has.
#[test]
fn an_anonymous_node_cannot_read_a_private_blob_through_the_cache() {
    const CI_PASSWORD: &str = "ci-Pa55word";
    let work = tempfile::tempdir().expect("temp dir");
    let upstream = Wharf::start(&work.path().join("upstream"));
    let public = image::image(Format::Oci, "wharf-cache-public", host_arch());
    push(&Api::new(&upstream.url()), "library/app", "1.0", &public);
    let redirector = Redirector::start(&upstream.host());
    let htpasswd = work.path().join("htpasswd");
    let added = wharf_htpasswd(&htpasswd, "ci", CI_PASSWORD);
    assert!(added.status.success(), "{}", added.describe());
    let cache = Wharf::start_with_config_text(
        &work.path().join("cache"),
        &format!(
            "[auth]\nmode = \"basic\"\nhtpasswd = {htpasswd:?}\n\n\
             [[access]]\nrepos = \"**\"\nusers = [\"ci\"]\nactions = [\"pull\", \"push\"]\n\n\
             [[access]]\nrepos = \"docker.io/**\"\nusers = [\"anonymous\"]\nactions = [\"pull\"]\n\n\
             [cache]\nread_timeout = \"5s\"\nconnect_timeout = \"2s\"\nattempts = 1\n\n\
             [[upstream]]\nhost = \"docker.io\"\nendpoint = \"http://{}\"\n",
            redirector.host()
        ),
    );
    let http = reqwest::blocking::Client::new();
    let secret = b"private build secret: never on any upstream".to_vec();
    let digest = wharf_testkit::sha256_digest(&secret);
    let pushed = http
        .post(format!(
            "{}/v2/private/app/blobs/uploads/?digest={digest}",
            cache.url()
        ))
        .basic_auth("ci", Some(CI_PASSWORD))
        .header("content-type", "application/octet-stream")
        .body(secret.clone())
        .send()
        .expect("push the private blob");
    assert_eq!(pushed.status().as_u16(), 201, "the private blob is stored");
    let anonymous_private = http
        .get(format!("{}/v2/private/app/blobs/{digest}", cache.url()))
        .send()
        .expect("GET");
    assert_eq!(anonymous_private.status().as_u16(), 401, "private indeed");

    for path in [
        format!("/v2/docker.io/library/anything/blobs/{digest}"),
        format!("/v2/library/anything/blobs/{digest}?ns=docker.io"),
    ] {
        let url = format!("{}{path}", cache.url());
        let got = http.get(&url).send().expect("GET through the cache");
        assert_eq!(got.status().as_u16(), 404, "GET {path}");
        let body: serde_json::Value = got.json().expect("a spec error body");
        assert_eq!(body["errors"][0]["code"], "BLOB_UNKNOWN", "GET {path}");
        let head = http.head(&url).send().expect("HEAD through the cache");
        assert_eq!(
            head.status().as_u16(),
            404,
            "HEAD {path} must not reveal that the store holds the blob"
        );
    }
    assert_eq!(
        redirector.count(&format!("GET /v2/library/anything/blobs/{digest} ")),
        2,
        "each GET was the upstream's to answer: {:?}",
        redirector.lines()
    );
    // Nothing was linked into the cached repository for later either.
    let again = http
        .get(format!(
            "{}/v2/docker.io/library/anything/blobs/{digest}",
            cache.url()
        ))
        .basic_auth("ci", Some(CI_PASSWORD))
        .send()
        .expect("GET as ci");
    assert_eq!(again.status().as_u16(), 404);

    // What the upstream does serve comes through as before.
    let layer = &public.blobs[0];
    let pulled = http
        .get(format!(
            "{}/v2/docker.io/library/app/blobs/{}",
            cache.url(),
            layer.digest()
        ))
        .send()
        .expect("GET a public blob");
    assert_eq!(pulled.status().as_u16(), 200);
    assert_eq!(
        pulled.bytes().expect("body").as_ref(),
        layer.bytes.as_slice()
    );
}
