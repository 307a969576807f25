//! Explain what containerd on this node would do to pull an image, and
//! where it breaks.
//!
//! [`diagnose`] reads the containerd configuration ([`plan`]), lists the
//! hosts a pull tries in containerd's order (mirrors from hosts.toml, then
//! `server`, then the registry itself), and tests each host layer by layer:
//! DNS, TCP, TLS, `GET /v2/`, the manifest and every blob, following
//! redirects itself so that an unreachable redirect target is named. The
//! [`Report`] ends with a [`Verdict`]: would the pull succeed, which layer
//! broke on which host, the error containerd would print, and the fix.
//!
//! [`OverridePathProbe`] is the online check behind
//! `wharf containerd lint --online`.
//!
//! Architecture invariant: every layer is opened by hand (tokio sockets,
//! rustls, hyper's connection API) so a failure is attributed to exactly
//! one layer; nothing here retries behind the caller's back.

mod challenge;
mod error;
mod http;
mod net;
mod online;
pub mod plan;
mod platform;
mod probe;
mod render;
mod report;
mod runtime;
mod verdict;

use std::path::PathBuf;
use std::time::Duration;

use wharf_oci::Reference;

pub use error::DoctorError;
pub use net::{ResolveOverride, ResolveOverrideError};
pub use online::OverridePathProbe;
pub use platform::{Platform, PlatformError};
pub use probe::RESOLVE_ACCEPT;
pub use render::render_text;
pub use report::{
    ContainerdSetup, Failure, HostReport, HostRole, HostsDirSource, Layer, Problem, Report, Step,
    StepStatus, Verdict, REPORT_FORMAT_VERSION,
};
pub use runtime::{Runtime, RuntimeSource};

use probe::{Context, HostOutcome};

/// The default time allowed for each lookup, connection, handshake and request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// What to diagnose and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The image reference, as a user would give it to `crictl pull`.
    pub image: String,
    /// containerd's config.toml (default `/etc/containerd/config.toml`).
    pub config_file: Option<PathBuf>,
    /// A hosts directory to use instead of config.toml's `config_path`
    /// (what `ctr --hosts-dir` does).
    pub hosts_dir: Option<PathBuf>,
    pub resolve: Vec<ResolveOverride>,
    /// Default: this node's platform.
    pub platform: Option<Platform>,
    pub timeout: Duration,
    /// Test hosts after the first one that serves the pull, too.
    pub all_hosts: bool,
    /// The containerd release to model when the runtime does not answer
    /// (what it reports wins when it does).
    pub containerd: Option<wharf_containerd::ContainerdRelease>,
    /// containerd's socket, asked what it loaded; `None`: model only.
    pub address: Option<PathBuf>,
}

impl Options {
    pub fn new(image: impl Into<String>) -> Options {
        Options {
            image: image.into(),
            config_file: None,
            hosts_dir: None,
            resolve: Vec::new(),
            platform: None,
            timeout: DEFAULT_TIMEOUT,
            all_hosts: false,
            containerd: None,
            address: None,
        }
    }
}

/// Work out what containerd would do for `options.image` and test it:
/// ask the running containerd what it loaded (or model its release), then
/// test every host it would try, and the sandbox image it needs.
pub async fn diagnose(options: &Options) -> Result<Report, DoctorError> {
    if options.timeout.is_zero() {
        return Err(DoctorError::ZeroTimeout);
    }
    let reference: Reference = options.image.parse()?;
    let runtime = Runtime::discover(
        options.address.as_deref(),
        options.containerd,
        options.timeout,
    )
    .await;
    let mut report = reproduce(options, reference, &runtime).await?;
    check_sandbox(options, &runtime, &mut report).await;
    Ok(report)
}

/// The pull of `reference`, host by host, with its verdict.
async fn reproduce(
    options: &Options,
    reference: Reference,
    runtime: &Runtime,
) -> Result<Report, DoctorError> {
    let plan = plan::plan(
        &reference,
        options.config_file.as_deref(),
        options.hosts_dir.as_deref(),
        runtime,
    )?;
    let ctx = Context {
        reference,
        resolver: net::Resolver::new(options.resolve.clone()),
        timeout: options.timeout,
        platform: options
            .platform
            .clone()
            .unwrap_or_else(Platform::of_this_node),
    };
    let outcomes = test_hosts(&ctx, &plan.hosts, options.all_hosts).await;
    let verdict = verdict::verdict(
        &ctx,
        &outcomes,
        plan.setup.hosts_dir.as_deref(),
        plan.notes,
        plan.config_problem.as_ref(),
    );
    Ok(Report {
        version: REPORT_FORMAT_VERSION,
        image: ctx.reference.to_string(),
        platform: ctx.platform.to_string(),
        containerd: plan.setup,
        hosts: outcomes.into_iter().map(|o| o.report).collect(),
        verdict,
    })
}

/// Whether the sandbox image every pod needs is on the node, and when it is
/// not, whether it could be pulled the same way. Only asked of a running
/// containerd: off the node, presence means nothing.
async fn check_sandbox(options: &Options, runtime: &Runtime, report: &mut Report) {
    let (Runtime::Asked { socket, .. }, Some(image)) =
        (runtime, report.containerd.sandbox_image.clone())
    else {
        return;
    };
    let present = match wharf_cri::CriClient::connect(socket, options.timeout).await {
        Ok(client) => client.image_status(&image).await.map(|i| i.is_some()),
        Err(e) => Err(e),
    };
    let present = match present {
        Ok(present) => present,
        Err(e) => {
            report.verdict.notes.push(format!(
                "could not ask whether the sandbox image {image} is present: {e}"
            ));
            return;
        }
    };
    report.containerd.sandbox_image_present = Some(present);
    if present {
        return;
    }
    let same_image = image
        .parse::<Reference>()
        .is_ok_and(|r| r.to_string() == report.image);
    let would_pull = if same_image {
        report.verdict.would_succeed
    } else {
        match image.parse::<Reference>() {
            Ok(reference) => reproduce(options, reference, runtime)
                .await
                .is_ok_and(|r| r.verdict.would_succeed),
            Err(_) => false,
        }
    };
    report.containerd.sandbox_pull_would_succeed = Some(would_pull);
    report.verdict.notes.push(if would_pull {
        format!("the sandbox image {image} is not on this node yet; the first pod start will pull it (that pull would succeed)")
    } else {
        format!(
            "the sandbox image {image} is not on this node and its pull would FAIL: no pod can start; \
             run `wharf doctor {image}` for the layer that breaks, and copy it to the mirror"
        )
    });
}

/// [`diagnose`] for callers without a tokio runtime (a CLI).
pub fn diagnose_blocking(options: &Options) -> Result<Report, DoctorError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DoctorError::Runtime(e.to_string()))?
        .block_on(diagnose(options))
}

/// Test hosts in containerd's order; once the pull is served, later hosts
/// are only listed (containerd would not contact them).
async fn test_hosts(
    ctx: &Context,
    hosts: &[wharf_containerd::RegistryHost],
    all_hosts: bool,
) -> Vec<HostOutcome> {
    let mut outcomes: Vec<HostOutcome> = Vec::new();
    for host in hosts {
        if let (Some(url), false) = (served_by(&outcomes), all_hosts) {
            let why = format!("not tried: {url} already serves the pull");
            outcomes.push(probe::untested(ctx, host, why));
            continue;
        }
        let earlier = outcomes
            .iter()
            .find(|o| o.resolves && o.resolved.is_some())
            .and_then(|o| o.resolved.clone());
        outcomes.push(probe::probe_host(ctx, host, earlier.as_ref()).await);
    }
    outcomes
}

/// The host that resolved the image, once every blob has been served.
fn served_by(outcomes: &[HostOutcome]) -> Option<String> {
    let resolver = outcomes
        .iter()
        .find(|o| o.resolves && o.resolved.is_some())?;
    let image = resolver.resolved.as_ref()?;
    let all_blobs = image
        .blobs
        .iter()
        .all(|b| outcomes.iter().any(|o| o.blobs_ok.contains(&b.digest)));
    all_blobs.then(|| resolver.report.url.clone())
}
