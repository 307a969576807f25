//! `/healthz`, `/readyz` and `/metrics`: what an operator's probes and
//! scraper see.

mod common;

use common::TestRegistry;

fn counter(metrics: &str, series: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_counters() {
    let reg = TestRegistry::start().await;
    assert_eq!(reg.get("/healthz").await.status(), 200);
    assert_eq!(reg.get("/readyz").await.status(), 200);

    let data = b"metrics blob";
    reg.push_blob("ops/app", data).await;
    assert_eq!(reg.get("/v2/ops/app/manifests/absent").await.status(), 404);
    assert_eq!(reg.get("/v2/ops/app/manifests/absent").await.status(), 404);
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data))
    );
    assert_eq!(
        reg.get(&format!("/v2/ops/app/blobs/{digest}"))
            .await
            .status(),
        200
    );
    assert_eq!(reg.get("/v2/NOT_VALID/tags/list").await.status(), 400);
    let not_a_manifest_method = reg.request(
        reqwest::Method::POST,
        reg.url("/v2/ops/app/manifests/latest"),
    );
    assert_eq!(reg.send(not_a_manifest_method).await.status(), 405);

    let metrics = reg.get("/metrics").await;
    assert_eq!(metrics.status(), 200);
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let text = metrics.text();
    let series = |route: &str, method: &str, status: u16| {
        format!("wharf_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}}")
    };
    assert_eq!(
        counter(&text, &series("manifest", "GET", 404)),
        Some(2),
        "{text}"
    );
    assert_eq!(
        counter(&text, &series("blob", "GET", 200)),
        Some(1),
        "{text}"
    );
    assert_eq!(
        counter(&text, &series("invalid", "GET", 400)),
        Some(1),
        "{text}"
    );
    assert_eq!(
        counter(&text, &series("manifest", "POST", 405)),
        Some(1),
        "a method a route does not answer is counted on that route: {text}"
    );
    assert_eq!(
        counter(&text, &series("healthz", "GET", 200)),
        Some(1),
        "{text}"
    );
    assert_eq!(
        counter(&text, "wharf_blob_bytes_sent_total"),
        Some(data.len() as u64)
    );
    assert_eq!(
        counter(&text, "wharf_blob_bytes_received_total"),
        Some(data.len() as u64)
    );
    assert_eq!(counter(&text, "wharf_uploads_finished_total"), Some(1));
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').expect("series and value");
        value
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("bad sample line {line:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_when_the_storage_root_is_gone() {
    let reg = TestRegistry::start().await;
    assert_eq!(reg.get("/readyz").await.status(), 200);
    std::fs::remove_dir_all(reg.store_root()).unwrap();
    assert_eq!(reg.get("/readyz").await.status(), 503);
    assert_eq!(
        reg.get("/healthz").await.status(),
        200,
        "alive, but not ready"
    );
}
