//! Which certificates a connection to one host trusts and presents, and the
//! HTTP client that carries them.
//!
//! Every connection trusts the system's roots and the configured CA files.
//! A host may add its own, the way podman and docker read them: a directory
//! named after the host (`HOST:PORT`, or `HOST` without a port) under
//! `/etc/containers/certs.d` or `/etc/docker/certs.d`, holding `*.crt` CA
//! certificates and `*.cert` + `*.key` client certificate pairs. Every root
//! that has the host's directory contributes.
//!
//! Connections to hosts without such a directory share one pool; a host
//! with one gets its own client, built on first use and kept.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::Url;

use crate::config::ClientConfig;
use crate::error::{Context, Error, ErrorKind, Result};

/// Where podman and docker look for per-host certificates.
pub const CERTS_D_ROOTS: [&str; 2] = ["/etc/containers/certs.d", "/etc/docker/certs.d"];

/// What a host's certs.d directories hold.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HostCerts {
    /// `*.crt`: extra CAs to trust for this host.
    pub ca_files: Vec<PathBuf>,
    /// `*.cert` with the `*.key` of the same name: client certificates.
    pub client_pairs: Vec<(PathBuf, PathBuf)>,
}

impl HostCerts {
    pub fn is_empty(&self) -> bool {
        self.ca_files.is_empty() && self.client_pairs.is_empty()
    }
}

/// The certificates for `host` (`name[:port]` as in a URL) under `roots`.
/// A missing directory contributes nothing; an unreadable one, or a client
/// certificate without its key (or a key without its certificate), is an
/// error naming the file.
pub fn host_certs(roots: &[PathBuf], host: &str, ctx: &Context) -> Result<HostCerts> {
    let mut found = HostCerts::default();
    for root in roots {
        let dir = root.join(host);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(config_error(
                    ctx,
                    format!("cannot read {}: {e}", dir.display()),
                ))
            }
        };
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        collect_dir(&names, &mut found, ctx)?;
    }
    Ok(found)
}

fn collect_dir(files: &[PathBuf], found: &mut HostCerts, ctx: &Context) -> Result<()> {
    fn with_ext<'a>(files: &'a [PathBuf], ext: &'a str) -> impl Iterator<Item = &'a PathBuf> {
        files
            .iter()
            .filter(move |p| p.extension().is_some_and(|e| e == ext))
    }
    found.ca_files.extend(with_ext(files, "crt").cloned());
    for cert in with_ext(files, "cert") {
        let key = cert.with_extension("key");
        if !files.contains(&key) {
            return Err(config_error(
                ctx,
                format!(
                    "client certificate {} has no {}",
                    cert.display(),
                    key.display()
                ),
            ));
        }
        found.client_pairs.push((cert.clone(), key));
    }
    for key in with_ext(files, "key") {
        if !files.contains(&key.with_extension("cert")) {
            return Err(config_error(
                ctx,
                format!(
                    "client key {} has no {}",
                    key.display(),
                    key.with_extension("cert").display()
                ),
            ));
        }
    }
    Ok(())
}

fn config_error(ctx: &Context, message: String) -> Error {
    Error::new(ErrorKind::Config, ctx, message)
}

/// `host[:port]` of a URL, as certs.d directories are named.
fn url_host(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

/// The HTTP clients of one [`crate::Client`]: the shared one, and one per
/// host that has certificates of its own.
pub(crate) struct Transport {
    shared: reqwest::Client,
    config: ClientConfig,
    per_host: Mutex<HashMap<String, reqwest::Client>>,
}

impl Transport {
    pub fn new(config: &ClientConfig) -> Result<Transport> {
        let shared = build(config, &HostCerts::default(), "all registries")?;
        Ok(Transport {
            shared,
            config: config.clone(),
            per_host: Mutex::default(),
        })
    }

    /// The client for a request to `url`.
    pub fn for_url(&self, url: &Url) -> Result<reqwest::Client> {
        let Some(host) = url_host(url).filter(|_| url.scheme() == "https") else {
            return Ok(self.shared.clone());
        };
        if let Some(client) = self.per_host.lock().expect("lock").get(&host) {
            return Ok(client.clone());
        }
        let ctx = Context::new("read the certificates of", &host);
        let certs = host_certs(&self.config.certs_dirs, &host, &ctx)?;
        let client = if certs.is_empty() {
            self.shared.clone()
        } else {
            tracing::debug!(%host, ?certs, "using the host's own certificates");
            build(&self.config, &certs, &host)?
        };
        self.per_host
            .lock()
            .expect("lock")
            .insert(host, client.clone());
        Ok(client)
    }
}

/// A reqwest client trusting the system's roots, the configured CA files
/// and `extra`'s, presenting `extra`'s client certificate.
fn build(config: &ClientConfig, extra: &HostCerts, for_whom: &str) -> Result<reqwest::Client> {
    let ctx = Context::new("configure the client for", for_whom);
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(config.user_agent.clone())
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.read_timeout)
        .pool_idle_timeout(Duration::from_secs(90));
    for path in config.ca_files.iter().chain(&extra.ca_files) {
        for cert in read_ca_file(path, &ctx)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some((cert, key)) = extra.client_pairs.first() {
        builder = builder.identity(read_identity(cert, key, &ctx)?);
    }
    builder.build().map_err(|e| {
        Error::new(ErrorKind::Config, &ctx, "cannot build the HTTP client").with_source(e)
    })
}

fn read_ca_file(path: &Path, ctx: &Context) -> Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path)
        .map_err(|e| config_error(ctx, format!("cannot read CA file {}: {e}", path.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| {
        config_error(
            ctx,
            format!("CA file {} holds no valid PEM certificate", path.display()),
        )
    })?;
    if certs.is_empty() {
        return Err(config_error(
            ctx,
            format!("CA file {} holds no certificate", path.display()),
        ));
    }
    Ok(certs)
}

fn read_identity(cert: &Path, key: &Path, ctx: &Context) -> Result<reqwest::Identity> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| config_error(ctx, format!("cannot read {}: {e}", p.display())))
    };
    let mut pem = read(cert)?;
    pem.push(b'\n');
    pem.extend(read(key)?);
    reqwest::Identity::from_pem(&pem).map_err(|_| {
        config_error(
            ctx,
            format!(
                "{} and {} are not a PEM certificate and its private key",
                cert.display(),
                key.display()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, names: &[&str]) {
        std::fs::create_dir_all(dir).unwrap();
        for n in names {
            std::fs::write(dir.join(n), "x").unwrap();
        }
    }

    #[test]
    fn reads_each_root_for_the_host_with_port() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("containers"), tmp.path().join("docker"));
        touch(
            &a.join("r.example:5000"),
            &["ca.crt", "client.cert", "client.key", "notes.txt"],
        );
        touch(&b.join("r.example:5000"), &["other.crt"]);
        touch(&b.join("r.example"), &["portless.crt"]);
        let ctx = Context::new("t", "r");
        let certs = host_certs(&[a.clone(), b.clone()], "r.example:5000", &ctx).unwrap();
        assert_eq!(
            certs.ca_files,
            [
                a.join("r.example:5000/ca.crt"),
                b.join("r.example:5000/other.crt")
            ]
        );
        assert_eq!(
            certs.client_pairs,
            [(
                a.join("r.example:5000/client.cert"),
                a.join("r.example:5000/client.key")
            )]
        );
        let portless = host_certs(std::slice::from_ref(&b), "r.example", &ctx).unwrap();
        assert_eq!(portless.ca_files, [b.join("r.example/portless.crt")]);
        assert!(host_certs(&[a], "elsewhere", &ctx).unwrap().is_empty());
    }

    #[test]
    fn a_lonely_half_of_a_pair_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        touch(&tmp.path().join("h"), &["client.key"]);
        let err =
            host_certs(&[tmp.path().to_path_buf()], "h", &Context::new("t", "h")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("client.cert"), "{err}");
    }
}
