//! Rules for one hosts.toml (containerd `remotes/docker/config/hosts.go`,
//! `hostFileConfig` and `parseHostConfig`, 1.6–2.3).
//!
//! containerd decodes hosts.toml leniently: unknown keys are ignored without
//! a word, but a value of the wrong type, an unknown capability or a bad
//! duration fails the whole file. A failed file is logged ("failed to decode
//! hosts.toml") and replaced by the Docker certificate-file fallback, so
//! every pull for the namespace goes straight to the upstream.

use std::collections::HashMap;
use std::path::Path;

use toml_edit::{Document, Item, TableLike, Value};

use super::support::{did_you_mean, key_span, nearest, Source};
use super::{HostEntry, Linter};
use crate::diagnostic::{Code, Diagnostic, Severity};
use crate::mirror::{is_go_duration, Capability, MirrorUrl, Scheme};
use crate::names::{classify_dir_name, DirName, Namespace};
use crate::version::ContainerdRelease;

/// Keys of a `[host."..."]` table, and of the root (which configures `server`).
const HOST_KEYS: [&str; 7] = [
    "capabilities",
    "ca",
    "client",
    "skip_verify",
    "header",
    "override_path",
    "dial_timeout",
];
const ROOT_ONLY_KEYS: [&str; 2] = ["server", "host"];

/// Common spellings from other tools, mapped to the hosts.toml key.
const ALIASES: [(&str, &str); 10] = [
    ("insecure_skip_verify", "skip_verify"),
    ("insecure", "skip_verify"),
    ("ca_file", "ca"),
    ("cert_file", "client"),
    ("key_file", "client"),
    ("headers", "header"),
    ("timeout", "dial_timeout"),
    ("endpoint", "host"),
    ("mirrors", "host"),
    ("hosts", "host"),
];

pub(crate) fn lint_hosts_text(
    path: &Path,
    namespace_dir: &str,
    text: &str,
    linter: &Linter,
) -> Vec<Diagnostic> {
    let src = Source::new(path, text);
    let file = HostsFile {
        src: &src,
        fallback: fallback_upstream(namespace_dir),
        namespace_dir,
        release: linter.containerd,
    };
    let doc = match Document::parse(text) {
        Ok(doc) => doc,
        Err(err) => return vec![file.syntax_error(&err)],
    };
    let mut found = file.lint_root(doc.as_table());
    found.extend(file.lint_hosts(doc.as_table(), linter));
    found
}

/// Where pulls go when the file is unusable or every host failed.
fn fallback_upstream(namespace_dir: &str) -> String {
    let namespace = match classify_dir_name(namespace_dir) {
        DirName::Plain(ns) | DirName::Underscored(ns) => ns,
        _ => Namespace::Default,
    };
    namespace
        .default_server()
        .unwrap_or_else(|| "the registry named in the image".to_owned())
}

struct HostsFile<'a> {
    src: &'a Source<'a>,
    fallback: String,
    namespace_dir: &'a str,
    release: Option<ContainerdRelease>,
}

impl HostsFile<'_> {
    fn whole_file_dropped(&self) -> String {
        format!(
            "log \"failed to decode hosts.toml\" and ignore the whole file (every release 1.6–2.3): \
             pulls go straight to {}",
            self.fallback
        )
    }

    fn syntax_error(&self, err: &toml_edit::TomlError) -> Diagnostic {
        self.src
            .diag(
                Code::InvalidToml,
                Severity::Error,
                err.span(),
                format!("not valid TOML: {}", err.message().trim()),
            )
            .containerd_will(self.whole_file_dropped())
            .fix("correct the TOML at this position; `wharf containerd hosts` writes a valid file")
    }

    fn lint_root(&self, root: &toml_edit::Table) -> Vec<Diagnostic> {
        let mut found = Vec::new();
        for (key, item) in root.iter() {
            match key {
                "server" => found.extend(self.check_server(root, item)),
                "host" => {}
                k if HOST_KEYS.contains(&k) => found.extend(self.check_value(root, k, item)),
                k => found.push(self.unknown_key(root, k, true, "the top level")),
            }
        }
        if !root.contains_key("server") && self.namespace_dir != crate::names::DEFAULT_NAMESPACE {
            found.push(self.server_implicit());
        }
        if root.contains_key("server") && !root.contains_key("host") {
            found.extend(self.server_only(root));
        }
        found
    }

    /// containerd 1.6.20 and 1.7.0 ignore a hosts.toml that has `server`
    /// and no `[host]` table, and pull from the registry itself.
    fn server_only(&self, root: &toml_edit::Table) -> Option<Diagnostic> {
        let affected = |r: ContainerdRelease| {
            (r.major, r.minor, r.patch) == (1, 6, Some(20))
                || (r.major, r.minor, r.patch) == (1, 7, Some(0))
        };
        let severity = match self.release {
            Some(r) if affected(r) => Severity::Error,
            Some(_) => return None,
            None => Severity::Warning,
        };
        let server = root
            .get("server")
            .and_then(Item::as_str)
            .unwrap_or_default();
        let span = root.key("server").and_then(|k| k.span());
        Some(
            self.src
                .diag(
                    Code::ServerOnlyIgnored,
                    severity,
                    span,
                    "only `server` and no [host] table: containerd 1.6.20 and 1.7.0 ignore such a file",
                )
                .containerd_will(format!(
                    "on 1.6.20 and 1.7.0 pull straight from {} instead of {server}; other releases use `server`",
                    self.fallback
                ))
                .fix(format!(
                    "add the mirror as a table too: [host.\"{server}\"] with capabilities = [\"pull\", \"resolve\"] \
                     (`wharf containerd hosts --mirror {server}` writes it)"
                )),
        )
    }

    fn check_server(&self, root: &toml_edit::Table, item: &Item) -> Option<Diagnostic> {
        if item.as_str().is_some() {
            return None;
        }
        Some(self.invalid_value(
            root,
            "server",
            "`server` must be a URL string such as \"https://registry.k8s.io\"",
        ))
    }

    fn server_implicit(&self) -> Diagnostic {
        self.src
            .diag(
                Code::ServerImplicit,
                Severity::Info,
                None,
                "no `server`: the fallback after the hosts is implicit",
            )
            .containerd_will(format!(
                "try each [host] in order, then {} (the namespace's own registry)",
                self.fallback
            ))
            .fix(format!(
                "add `server = \"{}\"` to make the fallback explicit, or set `server` to the mirror to never reach the upstream",
                self.fallback
            ))
    }

    fn lint_hosts(&self, root: &toml_edit::Table, linter: &Linter) -> Vec<Diagnostic> {
        let Some(hosts_item) = root.get("host") else {
            return Vec::new();
        };
        let Some(hosts) = hosts_item.as_table_like() else {
            return vec![self.invalid_value(
                root,
                "host",
                "`host` must be a table of [host.\"<url>\"] sections",
            )];
        };
        let mut found = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (url, item) in hosts.iter() {
            let Some(table) = item.as_table_like() else {
                found.push(self.invalid_value(
                    hosts,
                    url,
                    "each host must be a [host.\"<url>\"] table",
                ));
                continue;
            };
            if let Some(d) = self.duplicate(hosts, url, &mut seen) {
                found.push(d);
            }
            found.extend(self.lint_host(hosts, url, table));
            found.extend(self.online_checks(hosts, url, table, linter));
        }
        found
    }

    fn lint_host(
        &self,
        hosts: &dyn TableLike,
        url: &str,
        table: &dyn TableLike,
    ) -> Vec<Diagnostic> {
        let mut found = Vec::new();
        for (key, item) in table.iter() {
            if HOST_KEYS.contains(&key) {
                found.extend(self.check_value(table, key, item));
            } else {
                found.push(self.unknown_key(table, key, false, &format!("[host.\"{url}\"]")));
            }
        }
        let parsed = self.check_url(hosts, url, &mut found);
        if let Some(mirror) = parsed {
            found.extend(self.override_without_path(table, &mirror));
            found.extend(self.tls_on_http(table, &mirror));
        }
        found.extend(self.capability_gaps(table, url));
        found
    }

    /// A URL containerd cannot parse fails the file; one without a scheme gets https.
    fn check_url(
        &self,
        hosts: &dyn TableLike,
        url: &str,
        found: &mut Vec<Diagnostic>,
    ) -> Option<MirrorUrl> {
        if url.contains(char::is_whitespace) || url.is_empty() {
            found.push(self.invalid_value(
                hosts,
                url,
                "a host URL cannot be empty or contain spaces",
            ));
            return None;
        }
        if !url.starts_with("http") {
            found.push(self.no_scheme(hosts, url));
            return MirrorUrl::parse(&format!("https://{url}")).ok();
        }
        MirrorUrl::parse(url).ok()
    }

    fn no_scheme(&self, hosts: &dyn TableLike, url: &str) -> Diagnostic {
        self.src
            .diag(
                Code::HostWithoutScheme,
                Severity::Warning,
                key_span(hosts, url),
                format!("host `{url}` has no scheme"),
            )
            .containerd_will(format!(
                "use https://{url}; a plain-HTTP registry there fails every request and pulls fall through to the next host"
            ))
            .fix(format!("write the scheme: [host.\"http://{url}\"] or [host.\"https://{url}\"]"))
    }

    fn duplicate(
        &self,
        hosts: &dyn TableLike,
        url: &str,
        seen: &mut HashMap<String, usize>,
    ) -> Option<Diagnostic> {
        let normalized = MirrorUrl::parse(url)
            .map(|m| m.to_string())
            .unwrap_or_else(|_| url.trim_end_matches('/').to_ascii_lowercase());
        let count = seen.entry(normalized.clone()).or_insert(0);
        *count += 1;
        (*count > 1).then(|| {
            self.src
                .diag(
                    Code::DuplicateHost,
                    Severity::Warning,
                    key_span(hosts, url),
                    format!("host `{url}` is the same as an earlier host ({normalized})"),
                )
                .containerd_will("try the same mirror twice, doubling the wait before falling back when it is down")
                .fix("delete one of the two sections (merge their settings)")
        })
    }

    /// The seed trap: `override_path` on a compliant registry.
    fn override_without_path(
        &self,
        table: &dyn TableLike,
        mirror: &MirrorUrl,
    ) -> Option<Diagnostic> {
        if table.get("override_path").and_then(Item::as_bool) != Some(true)
            || mirror.has_path_beyond_api_root()
        {
            return None;
        }
        let (severity, will) = if mirror.path().is_empty() {
            (
                Severity::Error,
                format!(
                    "send requests to {mirror}/<name>/manifests/<ref>, without /v2: a registry that serves /v2/ \
                     answers 404 to every request and containerd falls back to {}",
                    self.fallback
                ),
            )
        } else {
            (
                Severity::Warning,
                format!("use {mirror} as the API root, exactly what it does without override_path"),
            )
        };
        Some(
            self.src
                .diag(
                    Code::OverridePathWithoutPath,
                    severity,
                    key_span(table, "override_path"),
                    format!("`override_path = true` but {mirror} has no path beyond /v2"),
                )
                .containerd_will(will)
                .fix("the registry has /v2/: remove `override_path` (it is only for registries whose API root is a custom path, given in the URL)"),
        )
    }

    fn tls_on_http(&self, table: &dyn TableLike, mirror: &MirrorUrl) -> Vec<Diagnostic> {
        if mirror.scheme() != Scheme::Http {
            return Vec::new();
        }
        ["skip_verify", "ca", "client"]
            .into_iter()
            .filter(|k| table.contains_key(k))
            .map(|key| {
                self.src
                    .diag(
                        Code::TlsOnPlainHttp,
                        Severity::Warning,
                        key_span(table, key),
                        format!("`{key}` on plain-HTTP host {mirror} has no TLS to apply to"),
                    )
                    .containerd_will(self.http_tls_behaviour(mirror))
                    .fix(format!(
                        "remove `{key}`, or use https://{} if the mirror serves TLS",
                        mirror.authority()
                    ))
            })
            .collect()
    }

    /// containerd 1.7.16+ and 2.x try HTTPS first for an http:// host with
    /// TLS settings (unless port 80), then fall back to HTTP.
    fn http_tls_behaviour(&self, mirror: &MirrorUrl) -> String {
        let port_80 = mirror.authority().ends_with(":80");
        match self.release {
            Some(r) if r.http_host_tries_tls_first() && !port_80 => {
                "try HTTPS first with these settings, then fall back to plain HTTP (slower, and confusing in logs)".to_owned()
            }
            Some(_) => "ignore it and speak plain HTTP".to_owned(),
            None => "ignore it on containerd 1.6 and 1.7 before 1.7.16; 1.7.16+ and 2.x try HTTPS first with these \
                     settings, then fall back to plain HTTP"
                .to_owned(),
        }
    }

    fn capability_gaps(&self, table: &dyn TableLike, url: &str) -> Option<Diagnostic> {
        let caps: Vec<Capability> = table
            .get("capabilities")?
            .as_array()?
            .iter()
            .filter_map(|v| v.as_str().and_then(Capability::parse))
            .collect();
        let (message, will) = if !caps.contains(&Capability::Pull) {
            (
                format!("host `{url}` lacks the `pull` capability"),
                "never fetch image content from this host".to_owned(),
            )
        } else if !caps.contains(&Capability::Resolve) {
            (
                format!("host `{url}` lacks the `resolve` capability"),
                format!(
                    "resolve tags (name:tag → digest) at the next host with `resolve`, ultimately {}: offline, \
                     pulls by tag fail even though the mirror has the image; pulls by digest still use the mirror",
                    self.fallback
                ),
            )
        } else {
            return None;
        };
        Some(
            self.src
                .diag(Code::MissingCapability, Severity::Warning, key_span(table, "capabilities"), message)
                .containerd_will(will)
                .fix("use `capabilities = [\"pull\", \"resolve\"]` for a mirror you trust (a private mirror)"),
        )
    }

    /// Type and value checks mirroring `parseHostConfig`.
    fn check_value(&self, table: &dyn TableLike, key: &str, item: &Item) -> Option<Diagnostic> {
        let problem = match key {
            "capabilities" => self.capabilities_problem(item),
            "ca" => (!string_or_strings(item))
                .then(|| "`ca` must be a path or an array of paths".to_owned()),
            "client" => (!client_shape_ok(item)).then(|| {
                "`client` must be a path, an array of paths, or an array of [cert, key] pairs"
                    .to_owned()
            }),
            "skip_verify" | "override_path" => item
                .as_bool()
                .is_none()
                .then(|| format!("`{key}` must be true or false (no quotes)")),
            "header" => (!headers_ok(item))
                .then(|| "`header` must be a table of strings or arrays of strings".to_owned()),
            "dial_timeout" => return self.dial_timeout_problem(table, item),
            _ => None,
        }?;
        Some(self.invalid_value(table, key, &problem))
    }

    fn capabilities_problem(&self, item: &Item) -> Option<String> {
        let Some(array) = item.as_array() else {
            return Some(
                "`capabilities` must be an array such as [\"pull\", \"resolve\"]".to_owned(),
            );
        };
        for value in array.iter() {
            let Some(name) = value.as_str() else {
                return Some("every capability must be a string".to_owned());
            };
            match Capability::parse(name) {
                None => return Some(format!("unknown capability {name:?} (known: pull, resolve, push)")),
                Some(Capability::Referrers) if self.release.is_some_and(|r| !r.supports_referrers()) => {
                    return Some(format!(
                        "the `referrers` capability needs containerd 2.2+; containerd {} rejects it",
                        self.release.map(|r| r.to_string()).unwrap_or_default()
                    ))
                }
                Some(_) => {}
            }
        }
        None
    }

    fn dial_timeout_problem(&self, table: &dyn TableLike, item: &Item) -> Option<Diagnostic> {
        if let Some(r) = self.release.filter(|r| !r.supports_dial_timeout()) {
            return Some(
                self.src
                    .diag(
                        Code::UnknownKey,
                        Severity::Warning,
                        key_span(table, "dial_timeout"),
                        format!("`dial_timeout` is not known to containerd {r}"),
                    )
                    .containerd_will("ignore it silently (added in containerd 2.0.7 and 2.1.0): connections use the default 30s timeout")
                    .fix("remove it, or upgrade containerd to 2.0.7+/2.1+"),
            );
        }
        match item.as_str() {
            Some(s) if is_go_duration(s) => None,
            _ => Some(self.invalid_value(
                table,
                "dial_timeout",
                "`dial_timeout` must be a duration string such as \"1s\" or \"500ms\"",
            )),
        }
    }

    fn invalid_value(&self, table: &dyn TableLike, key: &str, problem: &str) -> Diagnostic {
        self.src
            .diag(
                Code::InvalidValue,
                Severity::Error,
                key_span(table, key),
                problem.to_owned(),
            )
            .containerd_will(self.whole_file_dropped())
            .fix(format!("correct `{key}` (see containerd docs/hosts.md)"))
    }

    fn unknown_key(
        &self,
        table: &dyn TableLike,
        key: &str,
        at_root: bool,
        place: &str,
    ) -> Diagnostic {
        let alias = ALIASES.iter().find(|(a, _)| *a == key).map(|(_, k)| *k);
        let mut known: Vec<&str> = HOST_KEYS.to_vec();
        if at_root {
            known.extend(ROOT_ONLY_KEYS);
        }
        let suggestion = alias.or_else(|| nearest(key, &known));
        let nested = !at_root && key == "host";
        let message = if nested {
            format!("nested `host` in {place}: hosts cannot contain hosts")
        } else {
            format!("unknown key `{key}` in {place}{}", did_you_mean(suggestion))
        };
        let fix = match (nested, suggestion) {
            (true, _) => {
                "move the inner [host.\"...\"] to the top level; hosts are tried in file order"
                    .to_owned()
            }
            (false, Some(s)) => format!("rename `{key}` to `{s}`"),
            (false, None) => format!("remove `{key}`"),
        };
        self.src
            .diag(
                Code::UnknownKey,
                Severity::Warning,
                key_span(table, key),
                message,
            )
            .containerd_will("ignore it without any log message")
            .fix(fix)
    }

    fn online_checks(
        &self,
        hosts: &dyn TableLike,
        url: &str,
        table: &dyn TableLike,
        linter: &Linter,
    ) -> Vec<Diagnostic> {
        if linter.online.is_empty() {
            return Vec::new();
        }
        let position = self.src.position(key_span(hosts, url));
        let entry = HostEntry {
            file: self.src.path,
            namespace_dir: self.namespace_dir,
            url,
            override_path: table.get("override_path").and_then(Item::as_bool) == Some(true),
            skip_verify: table.get("skip_verify").and_then(Item::as_bool) == Some(true),
            position,
            source_line: self.src.line_text(position),
        };
        linter
            .online
            .iter()
            .flat_map(|c| c.check_host(&entry))
            .collect()
    }
}

fn string_or_strings(item: &Item) -> bool {
    item.as_str().is_some()
        || item
            .as_array()
            .is_some_and(|a| a.iter().all(|v| v.as_str().is_some()))
}

fn client_shape_ok(item: &Item) -> bool {
    if item.as_str().is_some() {
        return true;
    }
    let pair_or_path = |v: &Value| match v {
        Value::String(_) => true,
        Value::Array(pair) => pair.len() == 2 && pair.iter().all(|p| p.as_str().is_some()),
        _ => false,
    };
    item.as_array().is_some_and(|a| a.iter().all(pair_or_path))
}

fn headers_ok(item: &Item) -> bool {
    let Some(table) = item.as_table_like() else {
        return false;
    };
    table.iter().all(|(_, v)| string_or_strings(v))
}
