//! From per-host results to a verdict: would containerd's pull succeed,
//! which layer broke on which host, what containerd would say, and what to
//! change. containerd resolves on the first host (in order, with the right
//! capability) that answers, then fetches each blob from the first host
//! that has it.

use wharf_containerd::Capability;
use wharf_oci::Digest;

use crate::plan::ConfigProblem;
use crate::probe::{short, Context, HostOutcome, ResolvedImage};
use crate::report::{Failure, HostRole, Layer, Problem, Step, Verdict};

/// Where to suggest writing hosts.toml files when none is configured.
const SUGGESTED_HOSTS_DIR: &str = "/etc/containerd/certs.d";

/// Build the verdict. `hosts_dir` is the hosts directory in use, if any.
pub fn verdict(
    ctx: &Context,
    outcomes: &[HostOutcome],
    hosts_dir: Option<&str>,
    mut notes: Vec<String>,
    config: Option<&ConfigProblem>,
) -> Verdict {
    let resolver = outcomes.iter().find(|o| o.resolves && o.resolved.is_some());
    let image = resolver.and_then(|o| o.resolved.as_ref());
    let missing = image.and_then(|img| first_missing_blob(img, outcomes));
    let blocked = config.is_some_and(|c| c.blocks);
    let would_succeed = image.is_some() && missing.is_none() && !blocked;
    let mut failures: Vec<Failure> = outcomes
        .iter()
        .filter_map(|o| {
            let step = o.report.first_failure()?;
            Some(Failure {
                url: o.report.url.clone(),
                layer: step.layer,
                reason: step.detail.clone(),
                fix: fix_for(ctx, o, step, hosts_dir, config),
            })
        })
        .collect();
    // A configuration problem comes first: when the pull fails, it is why.
    match config {
        Some(problem) if !would_succeed => failures.insert(0, config_failure(problem)),
        Some(problem) => notes.insert(0, format!("{} (fix: {})", problem.reason, problem.fix)),
        None => {}
    }
    let containerd_error = match (image, missing) {
        (None, _) => Some(resolve_error(ctx, outcomes)),
        (Some(_), Some(blob)) => Some(blob_error(ctx, outcomes, blob)),
        (Some(_), None) => None,
    };
    if would_succeed && !failures.is_empty() {
        notes.push(
            "the pull works, but containerd tries the broken hosts above first and waits for each \
             before falling back"
                .to_owned(),
        );
    }
    if let (false, Some(first), Some(error)) = (would_succeed, failures.first(), &containerd_error)
    {
        let first_host = first_url_authority(&first.url);
        if !error.contains(&first_host) && outcomes.len() > 1 {
            notes.push(format!(
                "containerd's error does not mention {first_host}, the first host it tried: it reports \
                 the first error other than \"not found\", so look at the {} layer of {} above",
                first.layer, first.url
            ));
        }
    }
    Verdict {
        would_succeed,
        served_by: resolver
            .filter(|_| would_succeed)
            .map(|o| o.report.url.clone()),
        digest: image.map(|img| img.digest.to_string()),
        failures,
        containerd_error,
        notes,
    }
}

fn config_failure(problem: &ConfigProblem) -> Failure {
    Failure {
        url: problem.file.display().to_string(),
        layer: Layer::Config,
        reason: problem.reason.clone(),
        fix: problem.fix.clone(),
    }
}

fn first_url_authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

fn first_missing_blob<'a>(
    image: &'a ResolvedImage,
    outcomes: &[HostOutcome],
) -> Option<&'a wharf_oci::Descriptor> {
    image
        .blobs
        .iter()
        .find(|b| !outcomes.iter().any(|o| o.blobs_ok.contains(&b.digest)))
}

/// containerd's resolve error: the first error other than 404 from the
/// hosts it asked, else "not found".
fn resolve_error(ctx: &Context, outcomes: &[HostOutcome]) -> String {
    let reference = ctx.reference.to_string();
    let needed = if ctx.reference.digest().is_some() {
        Capability::Pull
    } else {
        Capability::Resolve
    };
    let asked: Vec<&HostOutcome> = outcomes.iter().filter(|o| o.host.has(needed)).collect();
    let first_error = asked
        .iter()
        .filter_map(|o| o.report.first_failure())
        .find(|s| s.containerd_error.is_some());
    let prefix = format!("failed to pull and unpack image \"{reference}\"");
    match first_error {
        None if asked.is_empty() => format!(
            "{prefix}: failed to resolve reference \"{reference}\": no resolve hosts: not found"
        ),
        None => {
            format!("{prefix}: failed to resolve reference \"{reference}\": {reference}: not found")
        }
        Some(step) if after_resolution(step) => {
            format!(
                "{prefix}: {}",
                step.containerd_error.as_deref().unwrap_or("")
            )
        }
        Some(step) => format!(
            "{prefix}: failed to resolve reference \"{reference}\": {}",
            step.containerd_error.as_deref().unwrap_or("")
        ),
    }
}

/// Failures that happen once a manifest was found (choosing the platform).
fn after_resolution(step: &Step) -> bool {
    matches!(
        step.problem,
        Some(Problem::PlatformMissing { .. } | Problem::BadManifest { .. })
    )
}

/// containerd's fetch error for a blob no host served: the first host's error.
fn blob_error(ctx: &Context, outcomes: &[HostOutcome], blob: &wharf_oci::Descriptor) -> String {
    let first = outcomes
        .iter()
        .find_map(|o| blob_error_on(ctx, o, &blob.digest));
    let error = match first {
        Some(e) if !e.ends_with("not found: not found") => e,
        _ => format!(
            "could not fetch content descriptor {} ({}) from remote: not found",
            blob.digest, blob.media_type
        ),
    };
    format!(
        "failed to pull and unpack image \"{}\": failed to copy: httpReadSeeker: failed open: {error}",
        ctx.reference
    )
}

fn blob_error_on(ctx: &Context, outcome: &HostOutcome, digest: &Digest) -> Option<String> {
    if let Some(go) = &outcome.net_error {
        let url = crate::probe::request_url(ctx, &outcome.host, "blobs", &digest.to_string());
        return Some(format!("failed to do request: Get \"{url}\": {go}"));
    }
    let wanted = short(digest);
    outcome
        .report
        .steps
        .iter()
        .filter(|s| s.layer == Layer::Blob && s.target.ends_with(&wanted))
        .find_map(|s| s.containerd_error.clone())
}

/// Where the host is configured, for fixes: ` ([host."…"] at file:line)`.
fn configured_at(outcome: &HostOutcome) -> String {
    let r = &outcome.report;
    let place = |file: &std::path::Path| match r.line {
        Some(line) => format!("{}:{line}", file.display()),
        None => file.display().to_string(),
    };
    match (r.role, &r.file) {
        (HostRole::Mirror, Some(file)) => format!(" ([host] at {})", place(file)),
        (HostRole::Server, Some(file)) => format!(" (`server` at {})", place(file)),
        _ => String::new(),
    }
}

fn fix_for(
    ctx: &Context,
    outcome: &HostOutcome,
    step: &Step,
    hosts_dir: Option<&str>,
    config: Option<&ConfigProblem>,
) -> String {
    let at = configured_at(outcome);
    let registry = ctx.reference.host();
    // A `server` that is the registry itself is the upstream too: an
    // air-gapped node is not meant to reach it.
    let upstream = outcome.report.role == HostRole::Upstream
        || (outcome.report.role == HostRole::Server && !outcome.host.is_proxy_for(registry));
    let add_mirror = match (config, hosts_dir) {
        // The node has a mirror that containerd does not use: fix that.
        (Some(problem), _) => format!("the mirror is configured but not used: {}", problem.fix),
        (None, Some(dir)) => format!(
            "give this node a mirror it can reach: `wharf containerd hosts {registry} --mirror <URL> --out {dir}`"
        ),
        (None, None) => format!(
            "give this node a mirror it can reach: `wharf containerd hosts {registry} --mirror <URL> --out {SUGGESTED_HOSTS_DIR}`, \
             then point containerd at it (`wharf containerd config --patch /etc/containerd/config.toml`) and restart containerd"
        ),
    };
    let Some(problem) = &step.problem else {
        return String::new();
    };
    match problem {
        Problem::NameNotResolved { name } if upstream => {
            format!("{name} does not resolve on this node (expected without internet): {add_mirror}")
        }
        Problem::NameNotResolved { name } => format!(
            "{name} does not resolve on this node: add it to DNS or /etc/hosts, or write the mirror's IP address in the URL{at}"
        ),
        Problem::ConnectionRefused { addr } if upstream => {
            format!("nothing accepts connections on {addr} from this node: {add_mirror}")
        }
        Problem::ConnectionRefused { addr } => format!(
            "nothing accepts connections on {addr}: start the registry there, or correct the host and port of the URL{at}"
        ),
        Problem::ConnectTimeout { addr } | Problem::Unreachable { addr } if upstream => {
            format!("this node cannot reach {addr} (a firewall drops the traffic): {add_mirror}")
        }
        Problem::ConnectTimeout { addr } | Problem::Unreachable { addr } => format!(
            "this node cannot reach {addr} (a firewall drops the traffic?): allow TCP from this node to {addr}, or use a mirror it can reach{at}"
        ),
        Problem::CertificateUnknownIssuer => tls_ca_fix(outcome, &at),
        Problem::CertificateNameMismatch { expected, presented } => format!(
            "the certificate is valid for {}, not {expected}: reissue it with {expected} as a subject alternative name, or use a name it is valid for in the URL{at}",
            if presented.is_empty() { "other names".to_owned() } else { presented.join(", ") }
        ),
        Problem::CertificateExpired => format!(
            "renew the server certificate of {} (it has expired); `skip_verify = true` would hide the problem{at}",
            outcome.host.host
        ),
        Problem::CertificateNotYetValid => "check this node's clock (NTP): the certificate is not valid yet by its time".to_owned(),
        Problem::CertificateInvalid { reason } | Problem::ClientCertificate { reason } => {
            format!("fix the TLS files named in hosts.toml ({reason}){at}")
        }
        Problem::NotTls => format!(
            "the server speaks plain HTTP: write http://{} in the URL{at}",
            outcome.host.host
        ),
        Problem::TlsHandshake { reason } => format!(
            "the TLS handshake with {} failed ({reason}): check the server's TLS setup, or whether it wants a client certificate (`client = ...`){at}",
            outcome.host.host
        ),
        Problem::Timeout => format!(
            "{} did not answer in time: check the registry's health, or raise --timeout",
            outcome.report.url
        ),
        Problem::HttpStatus { status: 404 } if step.layer == Layer::Api => format!(
            "{} is not a registry API root (GET {} answered 404): correct the port or path of the URL{at}; a registry whose API lives under a custom path needs that path in the URL and `override_path = true`",
            outcome.report.url,
            step.target.trim_start_matches("GET ")
        ),
        Problem::HttpStatus { status } => format!(
            "{} answered {status}: see the registry's logs",
            outcome.report.url
        ),
        Problem::AuthRequired { .. } => format!(
            "the registry wants credentials: set them for {} in the CRI config (`[plugins.\"…\".registry.configs.\"{}\".auth]`); this check only tries anonymous pulls",
            outcome.host.host, outcome.host.host
        ),
        Problem::TokenFailed { realm, .. } => format!(
            "this node must reach the token service {realm} as well as the registry (or use a mirror that needs no token)"
        ),
        Problem::ManifestNotFound => manifest_not_found_fix(ctx, outcome, &at),
        Problem::PlatformMissing { wanted, .. } => format!(
            "the image has no {wanted} build: copy an image that includes {wanted}, or check --platform"
        ),
        Problem::BadManifest { reason } => format!("the registry serves a broken manifest ({reason}): copy the image again"),
        Problem::BlobNotFound { digest } => format!(
            "{} has the manifest but not blob {digest}: copy the image to it again (all platforms' blobs), e.g. with `skopeo copy --all`",
            outcome.report.url
        ),
        Problem::RedirectUnreachable { addr, .. } => format!(
            "the {} redirect goes to {addr} which this node cannot reach: use a pull-through cache that follows redirects itself (wharf serve with [[upstream]]), or allow this node to reach {addr}",
            step.layer
        ),
        Problem::TooManyRedirects => format!("{} redirects in a loop: check its proxy configuration", outcome.report.url),
        Problem::Protocol { reason } => format!(
            "{} does not speak HTTP/1.1 as expected ({reason}): is the port right{at}?",
            outcome.report.url
        ),
    }
}

fn tls_ca_fix(outcome: &HostOutcome, at: &str) -> String {
    match &outcome.report.file {
        Some(file) => {
            let dir = file.parent().map_or_else(String::new, |d| d.display().to_string());
            format!(
                "add the CA that signed the server certificate with `ca = \"{dir}/ca.crt\"` under [host.\"{}://{}\"] in {}{at}",
                outcome.host.scheme.as_str(),
                outcome.host.host,
                file.display()
            )
        }
        None => format!(
            "add the CA that signed {}'s certificate to the system trust store, or put it in <hosts dir>/{}/ca.crt",
            outcome.host.host, outcome.host.host
        ),
    }
}

fn manifest_not_found_fix(ctx: &Context, outcome: &HostOutcome, at: &str) -> String {
    let host = &outcome.host;
    let standard_root = host.path.is_empty() || !host.path.ends_with("/v2");
    if host.override_path && standard_root && outcome.v2_answers == Some(true) {
        let place = match (&outcome.report.file, host.override_path_line) {
            (Some(file), Some(line)) => format!("{}:{line}", file.display()),
            (Some(file), None) => file.display().to_string(),
            _ => "hosts.toml".to_owned(),
        };
        return format!(
            "remove `override_path = true` from {place}: the registry answers at /v2/, but with override_path containerd asks for {}/{}/manifests/… without /v2",
            host.path,
            ctx.reference.repository()
        );
    }
    let reference = ctx.reference.target();
    match &outcome.report.ns {
        Some(ns) => format!(
            "the mirror has no {}:{reference}: copy the image to it (containerd asks for /v2/{} with ?ns={ns}; a wharf mirror serves that from {ns}/{}){at}",
            ctx.reference.repository(),
            ctx.reference.repository(),
            ctx.reference.repository()
        ),
        None => format!(
            "{} has no {}:{reference}: check the image name and tag",
            outcome.report.url,
            ctx.reference.repository()
        ),
    }
}
