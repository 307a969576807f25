//! Testing one host layer by layer: DNS, TCP, TLS, `GET /v2/`, the
//! manifest (resolve with containerd's `Accept`, HEAD then GET; the
//! platform's manifest of an index), then every blob (HEAD and the first
//! bytes), with the requests containerd would make (`?ns=`, API root).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderName};
use http::{Method, StatusCode};
use rustls::ClientConfig;
use wharf_containerd::{Capability, HostSource, RegistryHost, Scheme};
use wharf_oci::{media_type, Descriptor, Digest, ParsedManifest, Reference};

use crate::http::{self as h, Call, Exchange, FetchError, HostClient};
use crate::net::{self, NetError, Origin, ResolvedBy, Resolver, TlsSettings};
use crate::platform::{self, Platform};
use crate::report::{HostReport, HostRole, Layer, Problem, Step};

/// The `Accept` header containerd's resolver sends (1.6–2.x `NewResolver`).
pub const RESOLVE_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, */*";
/// containerd's `MaxManifestSize` (4 * 1048 * 1048 bytes, sic).
const MAX_MANIFEST_BYTES: usize = 4 * 1048 * 1048;
/// The blob bytes read to prove content flows.
const BLOB_PROBE_BYTES: usize = 1024;

/// What every host is tested against.
pub struct Context {
    pub reference: Reference,
    pub resolver: Resolver,
    pub timeout: Duration,
    pub platform: Platform,
}

/// An image as resolved on a host: what containerd goes on to fetch.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// What the reference resolves to (an index or a manifest).
    pub digest: Digest,
    /// Config and layers of the platform's manifest.
    pub blobs: Vec<Descriptor>,
}

/// Everything learnt about one host.
pub struct HostOutcome {
    pub report: HostReport,
    pub host: RegistryHost,
    pub resolved: Option<ResolvedImage>,
    pub blobs_ok: HashSet<Digest>,
    /// Whether containerd asks this host to resolve the reference.
    pub resolves: bool,
    /// Go's text for a connection failure, to phrase later requests' errors.
    pub net_error: Option<String>,
    /// Whether `GET /v2/` answered like a registry.
    pub v2_answers: Option<bool>,
}

impl HostOutcome {
    fn push(&mut self, step: Step) {
        self.report.steps.push(step);
    }
}

/// A host not tested because an earlier one serves the pull.
pub fn untested(ctx: &Context, host: &RegistryHost, why: String) -> HostOutcome {
    let mut outcome = new_outcome(ctx, host);
    outcome.report.not_tested = Some(why);
    outcome
}

fn new_outcome(ctx: &Context, host: &RegistryHost) -> HostOutcome {
    let (role, file, line) = match &host.source {
        HostSource::Mirror { file, line } => (HostRole::Mirror, Some(file.clone()), *line),
        HostSource::Server { file, line } => (HostRole::Server, Some(file.clone()), *line),
        HostSource::Default => (HostRole::Upstream, None, None),
    };
    let registry = ctx.reference.host();
    HostOutcome {
        report: HostReport {
            url: host.base_url(),
            role,
            file,
            line,
            capabilities: host
                .capabilities
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect(),
            override_path: host.override_path,
            skip_verify: host.skip_verify,
            ns: host.is_proxy_for(registry).then(|| registry.to_owned()),
            not_tested: None,
            steps: Vec::new(),
        },
        host: host.clone(),
        resolved: None,
        blobs_ok: HashSet::new(),
        resolves: false,
        net_error: None,
        v2_answers: None,
    }
}

/// Test `host`; `earlier` is the image an earlier host resolved, for a
/// host that only pulls.
pub async fn probe_host(
    ctx: &Context,
    host: &RegistryHost,
    earlier: Option<&ResolvedImage>,
) -> HostOutcome {
    let mut out = new_outcome(ctx, host);
    let mut probe = Probe { ctx, host };
    let Some(mut client) = probe.connect(&mut out).await else {
        return out;
    };
    probe.api(&mut client, &mut out).await;
    let resolved = probe.manifest(&mut client, &mut out).await;
    let image = match (&resolved, out.report.steps.last()) {
        (Some(image), _) => Some(image.clone()),
        // A pull-only host serves blobs of what another host resolved.
        (None, Some(last)) if last.layer == Layer::Manifest && !last.is_failed() => {
            earlier.cloned()
        }
        _ => None,
    };
    out.resolved = resolved;
    if let Some(image) = image {
        probe.blobs(&mut client, &image, &mut out).await;
    }
    out
}

/// The URL containerd requests for `<kind>/<object>` on `host`.
pub fn request_url(ctx: &Context, host: &RegistryHost, kind: &str, object: &str) -> String {
    let probe = Probe { ctx, host };
    probe.url(&probe.request_path(kind, object))
}

struct Probe<'a> {
    ctx: &'a Context,
    host: &'a RegistryHost,
}

impl Probe<'_> {
    fn origin(&self) -> Origin {
        Origin::new(self.host.scheme == Scheme::Https, &self.host.host)
    }

    fn tls_settings(&self) -> TlsSettings {
        TlsSettings {
            skip_verify: self.host.skip_verify,
            ca: self.host.ca.clone(),
            client: self.host.client.clone(),
        }
    }

    /// `<api root>/<repository>/<kind>/<object>[?ns=<registry>]`.
    fn request_path(&self, kind: &str, object: &str) -> String {
        let registry = self.ctx.reference.host();
        let mut path = format!(
            "{}/{}/{kind}/{object}",
            self.host.path.trim_end_matches('/'),
            self.ctx.reference.repository()
        );
        if self.host.is_proxy_for(registry) {
            path.push_str(&format!("?ns={}", h::query_escape(registry)));
        }
        path
    }

    fn url(&self, path: &str) -> String {
        self.origin().url(path)
    }

    /// The first request containerd makes: resolving the reference.
    fn resolve_url(&self) -> String {
        self.url(&self.request_path("manifests", &self.ctx.reference.target().to_string()))
    }

    async fn connect(&mut self, out: &mut HostOutcome) -> Option<HostClient> {
        let origin = self.origin();
        let addrs = self.dns(&origin, out).await?;
        let (tcp, addr) = self.tcp(&addrs, out).await?;
        let tls = self.tls_config(&origin, out)?;
        let io = if origin.https {
            self.tls(tcp, &origin, &tls, out).await?
        } else {
            out.push(Step::skipped(
                Layer::Tls,
                &origin.authority,
                "plain HTTP: no TLS",
            ));
            Box::pin(tcp)
        };
        let conn = match h::handshake(io, self.ctx.timeout).await {
            Ok(conn) => conn,
            Err(e) => {
                out.push(Step::failed(
                    Layer::Api,
                    addr.to_string(),
                    format!("HTTP/1.1 could not start: {e}"),
                    Problem::Protocol {
                        reason: e.to_string(),
                    },
                ));
                return None;
            }
        };
        Some(HostClient::new(
            self.ctx.resolver.clone(),
            tls,
            !self.host.skip_verify,
            self.ctx.timeout,
            origin,
            self.host.headers.clone(),
            format!("repository:{}:pull", self.ctx.reference.repository()),
            Some(conn),
        ))
    }

    fn net_failure(&self, layer: Layer, target: &str, error: &NetError, out: &mut HostOutcome) {
        let go = error.go_error();
        out.net_error = Some(go.clone());
        out.push(
            Step::failed(layer, target, error.reason(), error.problem()).with_containerd_error(
                format!(
                    "failed to do request: Head \"{}\": {go}",
                    self.resolve_url()
                ),
            ),
        );
    }

    async fn dns(&self, origin: &Origin, out: &mut HostOutcome) -> Option<Vec<SocketAddr>> {
        let started = Instant::now();
        match self.ctx.resolver.resolve(origin, self.ctx.timeout).await {
            Ok((addrs, by)) => {
                let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
                let detail = match by {
                    ResolvedBy::Literal => "an address: no lookup".to_owned(),
                    ResolvedBy::Override => format!("→ {} (from --resolve)", list.join(", ")),
                    ResolvedBy::Dns => format!("→ {} (DNS)", list.join(", ")),
                };
                out.push(Step::ok(Layer::Dns, &origin.host, detail).timed(started.elapsed()));
                Some(addrs)
            }
            Err(e) => {
                self.net_failure(Layer::Dns, &origin.host, &e, out);
                None
            }
        }
    }

    async fn tcp(
        &self,
        addrs: &[SocketAddr],
        out: &mut HostOutcome,
    ) -> Option<(tokio::net::TcpStream, SocketAddr)> {
        let started = Instant::now();
        match net::connect_tcp(addrs, self.ctx.timeout).await {
            Ok((tcp, addr)) => {
                let elapsed = started.elapsed();
                out.push(
                    Step::ok(
                        Layer::Tcp,
                        addr.to_string(),
                        format!("connected in {}", millis(elapsed)),
                    )
                    .timed(elapsed),
                );
                Some((tcp, addr))
            }
            Err(e) => {
                let target = match &e {
                    NetError::Connect { addr, .. } => addr.to_string(),
                    _ => self.host.host.clone(),
                };
                self.net_failure(Layer::Tcp, &target, &e, out);
                None
            }
        }
    }

    /// containerd fails the host before connecting when a CA or client
    /// file is unusable; plain-HTTP hosts only need it for redirects.
    fn tls_config(&self, origin: &Origin, out: &mut HostOutcome) -> Option<Arc<ClientConfig>> {
        match net::client_config(&self.tls_settings()) {
            Ok(config) => Some(config),
            Err(_) if !origin.https => net::client_config(&TlsSettings::default()).ok(),
            Err(e) => {
                self.net_failure(Layer::Tls, &origin.authority, &e, out);
                None
            }
        }
    }

    async fn tls(
        &self,
        tcp: tokio::net::TcpStream,
        origin: &Origin,
        config: &Arc<ClientConfig>,
        out: &mut HostOutcome,
    ) -> Option<net::BoxedIo> {
        let started = Instant::now();
        let verified = !self.host.skip_verify;
        match net::tls_handshake(tcp, origin, config.clone(), verified, self.ctx.timeout).await {
            Ok((io, info)) => {
                let trust = if info.verified {
                    format!("certificate valid for {}", origin.host)
                } else {
                    "certificate NOT verified (skip_verify = true)".to_owned()
                };
                out.push(
                    Step::ok(
                        Layer::Tls,
                        &origin.authority,
                        format!("{}, {trust}", info.protocol),
                    )
                    .timed(started.elapsed()),
                );
                Some(io)
            }
            Err(e) => {
                self.net_failure(Layer::Tls, &origin.authority, &e, out);
                None
            }
        }
    }

    /// `GET /v2/` (or the override root): is there a registry, and does it
    /// give an anonymous token? containerd itself never asks, so a failure
    /// here does not stop the manifest test.
    async fn api(&self, client: &mut HostClient, out: &mut HostOutcome) {
        let ping = ping_path(self.host);
        let target = format!("GET {ping}");
        let call = Call {
            method: Method::GET,
            path_and_query: &ping,
            headers: Vec::new(),
            body_limit: 64 * 1024,
        };
        let step = match client.call(&call).await {
            Err(e) => self.fetch_failure(Layer::Api, &target, &e, "Get", &self.url(&ping)),
            Ok(exchange) => {
                let answers = answers_like_registry(&exchange);
                if ping == "/v2/" {
                    out.v2_answers = Some(answers);
                }
                api_step(&target, &exchange, answers, client.has_token())
            }
        };
        out.push(step);
    }

    async fn manifest(
        &self,
        client: &mut HostClient,
        out: &mut HostOutcome,
    ) -> Option<ResolvedImage> {
        let by_digest = self.ctx.reference.digest().is_some();
        let needed = if by_digest {
            Capability::Pull
        } else {
            Capability::Resolve
        };
        let object = self.ctx.reference.target().to_string();
        let path = self.request_path("manifests", &object);
        if !self.host.has(needed) {
            out.push(Step::skipped(
                Layer::Manifest,
                format!("HEAD {path}"),
                format!(
                    "no `{}` capability: containerd does not resolve {object} on this host",
                    needed.as_str()
                ),
            ));
            return None;
        }
        out.resolves = true;
        match self.resolve_and_fetch(client, &path, &object).await {
            Ok((image, steps)) => {
                out.report.steps.extend(steps);
                Some(image)
            }
            Err(step) => {
                out.push(*step);
                None
            }
        }
    }

    /// Resolve `object` (HEAD, then GET when the HEAD answer lacks digest
    /// or length), fetch the manifest by digest, and descend into the
    /// platform's manifest of an index.
    async fn resolve_and_fetch(
        &self,
        client: &mut HostClient,
        path: &str,
        object: &str,
    ) -> Result<(ResolvedImage, Vec<Step>), Box<Step>> {
        let started = Instant::now();
        let (digest, media_type, how) = self.resolve(client, path, object).await?;
        let top = self
            .fetch_manifest(client, &digest, &media_type, &format!("HEAD {path}"))
            .await?;
        let mut steps = vec![Step::ok(
            Layer::Manifest,
            format!("HEAD {path}"),
            format!(
                "{how} → {} ({}, {})",
                short(&digest),
                kind_of(&top.media_type),
                size(top.size)
            ),
        )
        .timed(started.elapsed())];
        let manifest = if top.parsed.is_index() {
            let (child, step) = self.platform_manifest(client, &top.parsed).await?;
            steps.push(step);
            child.parsed
        } else {
            top.parsed
        };
        let blobs: Vec<Descriptor> = manifest.required_blobs().cloned().collect();
        Ok((ResolvedImage { digest, blobs }, steps))
    }

    async fn resolve(
        &self,
        client: &mut HostClient,
        path: &str,
        object: &str,
    ) -> Result<(Digest, String, String), Box<Step>> {
        let target = format!("HEAD {path}");
        let mut method = Method::HEAD;
        loop {
            let call = Call {
                method: method.clone(),
                path_and_query: path,
                headers: vec![(header::ACCEPT, RESOLVE_ACCEPT.to_owned())],
                body_limit: if method == Method::HEAD {
                    0
                } else {
                    MAX_MANIFEST_BYTES
                },
            };
            let verb = if method == Method::HEAD {
                "Head"
            } else {
                "Get"
            };
            let exchange = client.call(&call).await.map_err(|e| {
                Box::new(self.fetch_failure(Layer::Manifest, &target, &e, verb, &self.url(path)))
            })?;
            let response = &exchange.response;
            // Registries without HEAD on manifests: containerd retries with GET.
            if response.status == StatusCode::METHOD_NOT_ALLOWED && method == Method::HEAD {
                method = Method::GET;
                continue;
            }
            if !response.status.is_success() {
                return Err(Box::new(self.manifest_status_failure(
                    &target,
                    response.status,
                    object,
                )));
            }
            if let Some((digest, media_type)) = self.digest_of(&exchange, &method) {
                let how = format!("{} {}", method, response.status.as_u16());
                return Ok((digest, media_type, how));
            }
            // No Docker-Content-Digest or no length: containerd GETs the body.
            method = Method::GET;
        }
    }

    /// The digest and media type an answer establishes, if it does: a
    /// HEAD needs `Docker-Content-Digest` and a length, a GET has the body.
    fn digest_of(&self, exchange: &Exchange, method: &Method) -> Option<(Digest, String)> {
        let response = &exchange.response;
        let media_type =
            media_type::essence(response.header(header::CONTENT_TYPE).unwrap_or("")).to_owned();
        if let Some(d) = self.ctx.reference.digest() {
            return Some((d.clone(), media_type));
        }
        if *method == Method::GET {
            return Some((Digest::sha256_of(&response.body), media_type));
        }
        let has_length = response.headers.contains_key(header::CONTENT_LENGTH);
        let header_digest = response
            .header(HeaderName::from_static("docker-content-digest"))
            .and_then(|d| d.parse::<Digest>().ok());
        header_digest
            .filter(|_| has_length)
            .map(|d| (d, media_type))
    }

    async fn fetch_manifest(
        &self,
        client: &mut HostClient,
        digest: &Digest,
        media_type: &str,
        target: &str,
    ) -> Result<FetchedManifest, Box<Step>> {
        let path = self.request_path("manifests", &digest.to_string());
        let call = Call {
            method: Method::GET,
            path_and_query: &path,
            headers: vec![(header::ACCEPT, fetch_accept(media_type))],
            body_limit: MAX_MANIFEST_BYTES + 1,
        };
        let exchange = client.call(&call).await.map_err(|e| {
            Box::new(self.fetch_failure(Layer::Manifest, target, &e, "Get", &self.url(&path)))
        })?;
        let response = exchange.response;
        if !response.status.is_success() {
            return Err(Box::new(self.manifest_status_failure(
                target,
                response.status,
                &digest.to_string(),
            )));
        }
        let bad = |reason: String| {
            Box::new(Step::failed(
                Layer::Manifest,
                target,
                reason.clone(),
                Problem::BadManifest { reason },
            ))
        };
        if response.truncated {
            return Err(bad(format!(
                "the manifest is larger than {MAX_MANIFEST_BYTES} bytes: containerd rejects it"
            )));
        }
        let actual = Digest::of(digest.algorithm(), &response.body);
        if &actual != digest {
            return Err(bad(format!(
                "the manifest served as {digest} has digest {actual}"
            )));
        }
        let content_type = response.header(header::CONTENT_TYPE).map(str::to_owned);
        let parsed =
            ParsedManifest::parse(&response.body, content_type.as_deref().or(Some(media_type)))
                .map_err(|e| bad(format!("the manifest does not parse: {e}")))?;
        Ok(FetchedManifest {
            media_type: parsed.media_type.clone(),
            size: response.body.len() as u64,
            parsed,
        })
    }

    /// Pick the manifest for the wanted platform and fetch it.
    async fn platform_manifest(
        &self,
        client: &mut HostClient,
        index: &ParsedManifest,
    ) -> Result<(FetchedManifest, Step), Box<Step>> {
        let wanted = &self.ctx.platform;
        let target = format!("platform {wanted}");
        let chosen = index
            .manifests
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| wanted.matches(p)));
        let Some(child) = chosen else {
            let available: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref().map(platform::describe))
                .collect();
            return Err(Box::new(
                Step::failed(
                    Layer::Manifest,
                    target,
                    format!(
                        "the index has no {wanted} manifest (it has: {})",
                        available.join(", ")
                    ),
                    Problem::PlatformMissing {
                        wanted: wanted.to_string(),
                        available,
                    },
                )
                .with_containerd_error(format!(
                    "no match for platform in manifest: not found (wanted {wanted})"
                )),
            ));
        };
        let started = Instant::now();
        let fetched = self
            .fetch_manifest(client, &child.digest, &child.media_type, &target)
            .await?;
        let total: u64 = fetched.parsed.required_blobs().map(|b| b.size).sum();
        let step = Step::ok(
            Layer::Manifest,
            target,
            format!(
                "→ {} ({}, {})",
                short(&child.digest),
                plural(fetched.parsed.layers.len(), "layer"),
                size(total)
            ),
        )
        .timed(started.elapsed());
        Ok((fetched, step))
    }

    async fn blobs(&self, client: &mut HostClient, image: &ResolvedImage, out: &mut HostOutcome) {
        for (i, blob) in image.blobs.iter().enumerate() {
            let role = if i == 0 { "config" } else { "layer" };
            let step = self.blob(client, blob, role).await;
            if !step.is_failed() {
                out.blobs_ok.insert(blob.digest.clone());
            }
            out.push(step);
        }
    }

    async fn blob(&self, client: &mut HostClient, blob: &Descriptor, role: &str) -> Step {
        let path = self.request_path("blobs", &blob.digest.to_string());
        let target = format!("{role} {}", short(&blob.digest));
        let started = Instant::now();
        let accept = fetch_accept(&blob.media_type);
        let head = Call {
            method: Method::HEAD,
            path_and_query: &path,
            headers: vec![(header::ACCEPT, accept.clone())],
            body_limit: 0,
        };
        // containerd only GETs blobs, so its errors say Get for both.
        let head = match self.blob_call(client, &head, &target, blob).await {
            Ok(exchange) => exchange,
            Err(step) => return *step,
        };
        let range = Call {
            method: Method::GET,
            path_and_query: &path,
            headers: vec![
                (header::ACCEPT, accept),
                (header::RANGE, format!("bytes=0-{}", BLOB_PROBE_BYTES - 1)),
            ],
            body_limit: BLOB_PROBE_BYTES,
        };
        let get = match self.blob_call(client, &range, &target, blob).await {
            Ok(exchange) => exchange,
            Err(step) => return *step,
        };
        let via = hops_text(&get);
        Step::ok(
            Layer::Blob,
            target,
            format!(
                "{}: HEAD {}, GET first {} bytes {}{via}",
                size(blob.size),
                head.response.status.as_u16(),
                get.response.body.len(),
                get.response.status.as_u16()
            ),
        )
        .timed(started.elapsed())
    }

    async fn blob_call(
        &self,
        client: &mut HostClient,
        call: &Call<'_>,
        target: &str,
        blob: &Descriptor,
    ) -> Result<Exchange, Box<Step>> {
        let url = self.url(call.path_and_query);
        let exchange = client
            .call(call)
            .await
            .map_err(|e| Box::new(self.fetch_failure(Layer::Blob, target, &e, "Get", &url)))?;
        let status = exchange.response.status;
        if status.is_success() {
            return Ok(exchange);
        }
        let method = &call.method;
        let (problem, detail, containerd) = if status == StatusCode::NOT_FOUND {
            (
                Problem::BlobNotFound {
                    digest: blob.digest.to_string(),
                },
                format!(
                    "{method} answered 404: the registry does not have this blob{}",
                    hops_text(&exchange)
                ),
                format!("content at {url} not found: not found"),
            )
        } else {
            (
                Problem::HttpStatus {
                    status: status.as_u16(),
                },
                format!(
                    "{method} answered {}{}",
                    status_text(status),
                    hops_text(&exchange)
                ),
                format!("unexpected status code {url}: {}", status_text(status)),
            )
        };
        Err(Box::new(
            Step::failed(Layer::Blob, target, detail, problem).with_containerd_error(containerd),
        ))
    }

    fn manifest_status_failure(&self, target: &str, status: StatusCode, object: &str) -> Step {
        match status {
            StatusCode::NOT_FOUND => Step::failed(
                Layer::Manifest,
                target,
                format!("404 Not Found: the registry has no manifest {object} there"),
                Problem::ManifestNotFound,
            ),
            StatusCode::UNAUTHORIZED => Step::failed(
                Layer::Manifest,
                target,
                "401 Unauthorized: the registry wants credentials for this repository".to_owned(),
                Problem::AuthRequired {
                    scheme: "bearer or basic".to_owned(),
                },
            )
            .with_containerd_error(format!(
                "pull access denied, repository does not exist or may require authorization: {}",
                status_text(status)
            )),
            other => Step::failed(
                Layer::Manifest,
                target,
                format!("the registry answered {}", status_text(other)),
                Problem::HttpStatus {
                    status: other.as_u16(),
                },
            )
            .with_containerd_error(format!(
                "pulling from host {} failed with status code [manifests {object}]: {}",
                self.host.host,
                status_text(other)
            )),
        }
    }

    /// A request that got no answer: the step, with containerd's wording.
    fn fetch_failure(
        &self,
        layer: Layer,
        target: &str,
        error: &FetchError,
        verb: &str,
        url: &str,
    ) -> Step {
        match error {
            FetchError::Net(e) => Step::failed(
                layer,
                target,
                format!("reconnecting failed: {e}"),
                e.problem(),
            )
            .with_containerd_error(format!(
                "failed to do request: {verb} \"{url}\": {}",
                e.go_error()
            )),
            FetchError::Http(e) => {
                let problem = match e {
                    h::HttpError::Timeout(_) => Problem::Timeout,
                    h::HttpError::Protocol(reason) => Problem::Protocol {
                        reason: reason.clone(),
                    },
                };
                Step::failed(layer, target, e.to_string(), problem)
                    .with_containerd_error(format!("failed to do request: {verb} \"{url}\": {e}"))
            }
            FetchError::Redirect {
                location,
                hops,
                error,
            } => {
                let addr = match error {
                    NetError::Connect { addr, .. } => addr.to_string(),
                    NetError::Dns { name, .. } => name.clone(),
                    NetError::Tls { .. } => {
                        Origin::of_url(location).map_or_else(String::new, |(o, _)| o.authority)
                    }
                };
                let statuses: Vec<String> = hops.iter().map(|h| h.status.to_string()).collect();
                Step::failed(
                    layer,
                    target,
                    format!(
                        "redirected ({}) to {location}, which this node cannot reach: {error}",
                        statuses.join(" → ")
                    ),
                    Problem::RedirectUnreachable {
                        location: location.clone(),
                        addr,
                        reason: error.to_string(),
                    },
                )
                .with_containerd_error(format!(
                    "failed to do request: {verb} \"{location}\": {}",
                    error.go_error()
                ))
            }
            FetchError::TooManyRedirects(_) => Step::failed(
                layer,
                target,
                "more than 10 redirects".to_owned(),
                Problem::TooManyRedirects,
            )
            .with_containerd_error(format!(
                "failed to do request: {verb} \"{url}\": stopped after 10 redirects"
            )),
            FetchError::Token { realm, reason } => Step::failed(
                layer,
                target,
                format!("no anonymous token from {realm}: {reason}"),
                Problem::TokenFailed {
                    realm: realm.clone(),
                    reason: reason.clone(),
                },
            )
            .with_containerd_error(format!(
                "failed to authorize: failed to fetch anonymous token: {reason}"
            )),
        }
    }
}

struct FetchedManifest {
    media_type: String,
    size: u64,
    parsed: ParsedManifest,
}

/// The API root containerd uses for this host, or `/v2/` when
/// `override_path` left it empty (then it tells whether override_path is
/// needed at all).
fn ping_path(host: &RegistryHost) -> String {
    if host.path.is_empty() {
        "/v2/".to_owned()
    } else {
        format!("{}/", host.path.trim_end_matches('/'))
    }
}

/// 200, or 401 with a challenge a client can answer.
fn answers_like_registry(exchange: &Exchange) -> bool {
    let response = &exchange.response;
    response.status == StatusCode::OK
        || (response.status == StatusCode::UNAUTHORIZED
            && !crate::challenge::challenges(&response.headers).is_empty())
}

fn api_step(target: &str, exchange: &Exchange, answers: bool, token: bool) -> Step {
    let status = exchange.response.status;
    let via = hops_text(exchange);
    if answers {
        let auth = match (status, token) {
            (StatusCode::OK, true) => " (with an anonymous bearer token)".to_owned(),
            (StatusCode::OK, false) => String::new(),
            _ => {
                let schemes: Vec<String> = crate::challenge::challenges(&exchange.response.headers)
                    .into_iter()
                    .map(|c| c.scheme)
                    .collect();
                format!(" ({}: the registry wants credentials)", schemes.join(", "))
            }
        };
        return Step::ok(
            Layer::Api,
            target,
            format!("{}{auth}{via}", status_text(status)),
        );
    }
    let detail = match status {
        StatusCode::NOT_FOUND => format!("404 Not Found: no registry API here{via}"),
        StatusCode::UNAUTHORIZED => format!("401 without a usable WWW-Authenticate challenge{via}"),
        other => format!("{}{via}", status_text(other)),
    };
    Step::failed(
        Layer::Api,
        target,
        detail,
        Problem::HttpStatus {
            status: status.as_u16(),
        },
    )
}

/// `Accept` for fetching content of a known type (containerd `open`).
fn fetch_accept(media_type: &str) -> String {
    if media_type.is_empty() {
        "*/*".to_owned()
    } else {
        format!("{media_type}, */*")
    }
}

fn hops_text(exchange: &Exchange) -> String {
    exchange
        .hops
        .iter()
        .map(|h| format!(" via {} → {}", h.status, h.location))
        .collect()
}

/// Go's `resp.Status`: `404 Not Found`.
pub fn status_text(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim_end()
    .to_owned()
}

/// `sha256:0123456789ab…`.
pub fn short(digest: &Digest) -> String {
    format!("{}:{}", digest.algorithm(), &digest.hex()[..12])
}

fn kind_of(media_type: &str) -> &'static str {
    match media_type {
        media_type::OCI_INDEX => "OCI index",
        media_type::DOCKER_MANIFEST_LIST => "Docker manifest list",
        media_type::OCI_MANIFEST => "OCI manifest",
        media_type::DOCKER_MANIFEST => "Docker manifest",
        _ => "manifest",
    }
}

/// `512 B`, `1.5 KiB`, `3.2 MiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn status_text_matches_go() {
        assert_eq!(status_text(StatusCode::NOT_FOUND), "404 Not Found");
        assert_eq!(status_text(StatusCode::from_u16(599).unwrap()), "599");
    }
}
