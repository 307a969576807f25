//! `wharf containerd lint --online`: check `override_path = true` against
//! the registry itself. With override_path containerd drops `/v2` from
//! every request; when the registry answers at the standard `/v2/` (and
//! not at the URL's own path), those requests 404 and pulls fall back to
//! the upstream. Only a URL with a path of its own needs asking: without one,
//! `override_path` is wrong whatever the registry says, which the offline
//! lint reports.

use std::time::Duration;

use http::{Method, StatusCode};
use wharf_containerd::{Code, Diagnostic, HostEntry, MirrorUrl, OnlineCheck, Severity};

use crate::http::{Call, HostClient};
use crate::net::{self, Origin, Resolver, TlsSettings};

/// Probes `GET <scheme>://<host>/v2/` for hosts with `override_path = true`.
#[derive(Debug, Clone)]
pub struct OverridePathProbe {
    timeout: Duration,
    resolver: Resolver,
}

impl OverridePathProbe {
    pub fn new(timeout: Duration) -> OverridePathProbe {
        OverridePathProbe {
            timeout,
            resolver: Resolver::default(),
        }
    }

    /// Answer lookups of some names from `--resolve`-style overrides.
    pub fn with_resolve(mut self, overrides: Vec<net::ResolveOverride>) -> OverridePathProbe {
        self.resolver = Resolver::new(overrides);
        self
    }

    async fn status_of(&self, origin: &Origin, path: &str) -> Result<Answer, String> {
        // Only the path is in question: certificate trust is not, so the
        // probe does not verify (the offline lint judges TLS settings).
        let tls = net::client_config(&TlsSettings {
            skip_verify: true,
            ..TlsSettings::default()
        })
        .map_err(|e| e.to_string())?;
        let mut client = HostClient::new(
            self.resolver.clone(),
            tls,
            false,
            self.timeout,
            origin.clone(),
            Vec::new(),
            String::new(),
            None,
        );
        let call = Call {
            method: Method::GET,
            path_and_query: path,
            headers: Vec::new(),
            body_limit: 64 * 1024,
        };
        let exchange = client.call(&call).await.map_err(|e| e.to_string())?;
        let response = exchange.response;
        let registry = response.status == StatusCode::OK
            || (response.status == StatusCode::UNAUTHORIZED
                && !crate::challenge::challenges(&response.headers).is_empty());
        Ok(Answer {
            status: response.status.as_u16(),
            registry,
        })
    }

    async fn check(&self, host: &HostEntry<'_>) -> Vec<Diagnostic> {
        let with_scheme = if host.url.starts_with("http") {
            host.url.to_owned()
        } else {
            format!("https://{}", host.url)
        };
        let Some((origin, path)) = Origin::of_url(&with_scheme) else {
            return Vec::new();
        };
        let root = path
            .split('?')
            .next()
            .unwrap_or("/")
            .trim_end_matches('/')
            .to_owned();
        if !root.is_empty() {
            // containerd uses the URL's path as the API root: fine if a
            // registry answers there (`/v2` itself included).
            if let Ok(answer) = self.status_of(&origin, &format!("{root}/")).await {
                if answer.registry {
                    return Vec::new();
                }
            }
        }
        match self.status_of(&origin, "/v2/").await {
            Ok(answer) if answer.registry => {
                vec![wrong_override(host, &origin, &root, answer.status)]
            }
            Ok(_) => Vec::new(),
            Err(reason) => vec![unreachable(host, &origin, &reason)],
        }
    }
}

struct Answer {
    status: u16,
    registry: bool,
}

/// Whether only the network can tell if `override_path` is right for this
/// URL. Without a path beyond `/v2` it is wrong for certain, and the offline
/// lint already says so (WH011) at the `override_path` line: probing too
/// would report the one problem twice.
fn needs_probe(host: &HostEntry<'_>) -> bool {
    let with_scheme = if host.url.starts_with("http") {
        host.url.to_owned()
    } else {
        format!("https://{}", host.url)
    };
    host.override_path
        && MirrorUrl::parse(&with_scheme).is_ok_and(|url| url.has_path_beyond_api_root())
}

impl OnlineCheck for OverridePathProbe {
    fn check_host(&self, host: &HostEntry<'_>) -> Vec<Diagnostic> {
        if !needs_probe(host) {
            return Vec::new();
        }
        // The lint is synchronous and may run inside or outside a runtime:
        // a thread of its own with its own runtime works in both cases.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map(|rt| rt.block_on(self.check(host)))
                        .unwrap_or_default()
                })
                .join()
                .unwrap_or_default()
        })
    }
}

fn placed(mut d: Diagnostic, host: &HostEntry<'_>) -> Diagnostic {
    d.position = host.position;
    d.source_line = host.source_line.map(str::to_owned);
    d
}

fn wrong_override(host: &HostEntry<'_>, origin: &Origin, root: &str, status: u16) -> Diagnostic {
    let standard = origin.url("/v2/");
    let d = Diagnostic::new(
        Code::OverridePathWithoutPath,
        Severity::Error,
        host.file,
        format!(
            "`override_path = true` on {}, but the registry answers at {standard} (HTTP {status}){}",
            host.url,
            if root.is_empty() {
                String::new()
            } else {
                format!(" and not at {}", origin.url(&format!("{root}/")))
            }
        ),
    )
    .containerd_will(format!(
        "request {}{root}/<name>/manifests/<ref> without /v2: every request 404s and pulls fall back to the next host",
        origin.url("")
    ))
    .fix("remove `override_path = true` from this host: the registry answers at /v2/ (checked online)");
    placed(d, host)
}

fn unreachable(host: &HostEntry<'_>, origin: &Origin, reason: &str) -> Diagnostic {
    let d = Diagnostic::new(
        Code::OverridePathWithoutPath,
        Severity::Info,
        host.file,
        format!(
            "could not check `override_path` online: {} did not answer ({reason})",
            origin.url("/v2/")
        ),
    )
    .containerd_will("fail the same way if it cannot reach this host either")
    .fix("run `wharf doctor <image>` on a node that uses this file to see where the connection breaks");
    placed(d, host)
}
