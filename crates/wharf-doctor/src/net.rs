//! DNS, TCP and TLS, each opened by hand so that a failure names its layer
//! and carries the detail a person needs (the address, the certificate
//! problem), not just "request failed".

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wharf_containerd::ClientPair;

use crate::report::Problem;

/// A byte stream HTTP can run over: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type BoxedIo = Pin<Box<dyn Io>>;

/// `HOST[:PORT]:ADDR`: answer lookups of HOST (on PORT only, when given)
/// with ADDR instead of asking DNS, like curl's `--resolve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOverride {
    pub host: String,
    pub port: Option<u16>,
    pub addr: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --resolve {input:?}: {reason} (expected HOST[:PORT]:ADDR, e.g. registry.local:10.0.0.5 or registry.local:443:[fd00::5])")]
pub struct ResolveOverrideError {
    pub input: String,
    pub reason: String,
}

impl FromStr for ResolveOverride {
    type Err = ResolveOverrideError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| ResolveOverrideError {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        // The address is last; an IPv6 address must be bracketed.
        let (rest, addr) = if let Some(stripped) = s.strip_suffix(']') {
            let open = stripped.rfind('[').ok_or_else(|| bad("unbalanced '['"))?;
            let rest = stripped[..open]
                .strip_suffix(':')
                .ok_or_else(|| bad("missing ':' before the address"))?;
            (rest, &stripped[open + 1..])
        } else {
            s.rsplit_once(':').ok_or_else(|| bad("missing ':'"))?
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| bad("the address is not an IP address"))?;
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                Some(
                    p.parse::<u16>()
                        .map_err(|_| bad("the port is not a number"))?,
                ),
            ),
            None => (rest, None),
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        Ok(ResolveOverride {
            host: host.to_ascii_lowercase(),
            port,
            addr,
        })
    }
}

/// `http` or `https` plus where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub https: bool,
    /// `host[:port]` as written (the `Host` header).
    pub authority: String,
    /// The host without brackets or port.
    pub host: String,
    pub port: u16,
}

impl Origin {
    pub fn new(https: bool, authority: &str) -> Origin {
        let default_port = if https { 443 } else { 80 };
        let (host, port) = split_authority(authority);
        Origin {
            https,
            authority: authority.to_owned(),
            host: host.to_owned(),
            port: port.unwrap_or(default_port),
        }
    }

    /// Parse the origin of an absolute `http(s)://` URL; also returns the
    /// path and query.
    pub fn of_url(url: &str) -> Option<(Origin, String)> {
        let (scheme, rest) = url.split_once("://")?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.is_empty() {
            return None;
        }
        let path = match tail.split('#').next().unwrap_or("") {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        Some((Origin::new(https, authority), path))
    }

    pub fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}://{}{}", self.scheme(), self.authority, path_and_query)
    }
}

fn split_authority(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']').unwrap_or(rest.len());
        let port = rest[end..].strip_prefix("]:").and_then(|p| p.parse().ok());
        return (&rest[..end], port);
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (authority, None),
        },
        _ => (authority, None),
    }
}

/// A failure below HTTP, with the layer it happened in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    Dns {
        name: String,
        reason: String,
    },
    Connect {
        addr: SocketAddr,
        problem: Box<Problem>,
        reason: String,
    },
    Tls {
        problem: Box<Problem>,
        reason: String,
    },
}

impl NetError {
    pub fn problem(&self) -> Problem {
        match self {
            NetError::Dns { name, .. } => Problem::NameNotResolved { name: name.clone() },
            NetError::Connect { problem, .. } | NetError::Tls { problem, .. } => {
                (**problem).clone()
            }
        }
    }

    /// The words Go's net/http would use, which is what containerd logs.
    pub fn go_error(&self) -> String {
        match self {
            NetError::Dns { name, .. } => format!("dial tcp: lookup {name}: no such host"),
            NetError::Connect {
                addr,
                problem,
                reason,
            } => match problem.as_ref() {
                Problem::ConnectionRefused { .. } => {
                    format!("dial tcp {addr}: connect: connection refused")
                }
                Problem::ConnectTimeout { .. } => format!("dial tcp {addr}: i/o timeout"),
                _ => format!("dial tcp {addr}: connect: {reason}"),
            },
            NetError::Tls { problem, reason } => go_tls_error(problem, reason),
        }
    }
}

impl NetError {
    /// The reason without the address, for a line that shows it already.
    pub fn reason(&self) -> String {
        match self {
            NetError::Connect { reason, .. } => reason.clone(),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Dns { name, reason } => write!(f, "{name} does not resolve: {reason}"),
            NetError::Connect { addr, reason, .. } => write!(f, "{addr}: {reason}"),
            NetError::Tls { reason, .. } => f.write_str(reason),
        }
    }
}

fn go_tls_error(problem: &Problem, reason: &str) -> String {
    match problem {
        Problem::CertificateUnknownIssuer => {
            "tls: failed to verify certificate: x509: certificate signed by unknown authority"
                .to_owned()
        }
        Problem::CertificateNameMismatch {
            expected,
            presented,
        } => format!(
            "tls: failed to verify certificate: x509: certificate is valid for {}, not {expected}",
            presented.join(", ")
        ),
        Problem::CertificateExpired | Problem::CertificateNotYetValid => {
            "tls: failed to verify certificate: x509: certificate has expired or is not yet valid"
                .to_owned()
        }
        Problem::NotTls => "http: server gave HTTP response to HTTPS client".to_owned(),
        _ => format!("tls: {reason}"),
    }
}

/// How a name was turned into addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolvedBy {
    Literal,
    Override,
    Dns,
}

/// Name resolution with `--resolve` overrides.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    overrides: Vec<ResolveOverride>,
}

impl Resolver {
    pub fn new(overrides: Vec<ResolveOverride>) -> Resolver {
        Resolver { overrides }
    }

    pub async fn resolve(
        &self,
        origin: &Origin,
        timeout: Duration,
    ) -> Result<(Vec<SocketAddr>, ResolvedBy), NetError> {
        if let Ok(ip) = origin.host.parse::<IpAddr>() {
            return Ok((vec![SocketAddr::new(ip, origin.port)], ResolvedBy::Literal));
        }
        if let Some(o) = self.override_for(origin) {
            return Ok((
                vec![SocketAddr::new(o.addr, origin.port)],
                ResolvedBy::Override,
            ));
        }
        let dns_error = |reason: String| NetError::Dns {
            name: origin.host.clone(),
            reason,
        };
        let lookup = tokio::net::lookup_host((origin.host.as_str(), origin.port));
        match tokio::time::timeout(timeout, lookup).await {
            Err(_) => Err(dns_error(format!(
                "no answer within {}",
                human_duration(timeout)
            ))),
            Ok(Err(e)) => Err(dns_error(e.to_string())),
            Ok(Ok(addrs)) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                if addrs.is_empty() {
                    Err(dns_error("no addresses".to_owned()))
                } else {
                    Ok((addrs, ResolvedBy::Dns))
                }
            }
        }
    }

    fn override_for(&self, origin: &Origin) -> Option<&ResolveOverride> {
        let host = origin.host.to_ascii_lowercase();
        self.overrides
            .iter()
            .find(|o| o.host == host && o.port.is_none_or(|p| p == origin.port))
    }
}

/// Connect to the first address that accepts, reporting the first failure
/// (what Go reports) when none does.
pub async fn connect_tcp(
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<(TcpStream, SocketAddr), NetError> {
    let mut first_error = None;
    for &addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, addr));
            }
            Ok(Err(e)) => {
                first_error.get_or_insert_with(|| connect_error(addr, &e));
            }
            Err(_) => {
                first_error.get_or_insert_with(|| NetError::Connect {
                    addr,
                    problem: Box::new(Problem::ConnectTimeout {
                        addr: addr.to_string(),
                    }),
                    reason: format!(
                        "no answer within {} (filtered by a firewall?)",
                        human_duration(timeout)
                    ),
                });
            }
        }
    }
    Err(first_error.expect("at least one address"))
}

fn connect_error(addr: SocketAddr, e: &io::Error) -> NetError {
    let a = addr.to_string();
    let (problem, reason) = match e.kind() {
        io::ErrorKind::ConnectionRefused => (
            Problem::ConnectionRefused { addr: a },
            "connection refused (nothing listens there, or a firewall rejects it)".to_owned(),
        ),
        io::ErrorKind::TimedOut => (Problem::ConnectTimeout { addr: a }, e.to_string()),
        io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable => {
            (Problem::Unreachable { addr: a }, e.to_string())
        }
        _ => (Problem::Unreachable { addr: a }, e.to_string()),
    };
    NetError::Connect {
        addr,
        problem: Box::new(problem),
        reason,
    }
}

/// The TLS settings of one host (hosts.toml `skip_verify`, `ca`, `client`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub skip_verify: bool,
    pub ca: Vec<PathBuf>,
    pub client: Vec<ClientPair>,
}

/// A rustls client configuration like containerd's: the system roots plus
/// the host's CA files, its client certificate, or no verification.
pub fn client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, NetError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_setup_error(e.to_string()))?;
    let builder = if settings.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        builder.with_root_certificates(root_store(&settings.ca)?)
    };
    let mut config = match settings.client.first() {
        None => builder.with_no_client_auth(),
        Some(pair) => {
            let (chain, key) = load_client_pair(pair)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls_setup_error(format!("client certificate: {e}")))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn tls_setup_error(reason: String) -> NetError {
    NetError::Tls {
        problem: Box::new(Problem::ClientCertificate {
            reason: reason.clone(),
        }),
        reason,
    }
}

fn root_store(ca_files: &[PathBuf]) -> Result<RootCertStore, NetError> {
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(system_roots().iter().cloned());
    for file in ca_files {
        let certs = read_pem_certs(file)?;
        if certs.is_empty() {
            return Err(ca_error(file, "holds no PEM certificate"));
        }
        let (added, _) = store.add_parsable_certificates(certs);
        if added == 0 {
            return Err(ca_error(file, "holds no usable CA certificate"));
        }
    }
    Ok(store)
}

fn ca_error(file: &Path, what: &str) -> NetError {
    let reason = format!("CA file {} {what}", file.display());
    NetError::Tls {
        problem: Box::new(Problem::CertificateInvalid {
            reason: reason.clone(),
        }),
        reason,
    }
}

fn read_pem_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>, NetError> {
    let iter = CertificateDer::pem_file_iter(file)
        .map_err(|e| ca_error(file, &format!("cannot be read: {e}")))?;
    iter.collect::<Result<Vec<_>, _>>()
        .map_err(|e| ca_error(file, &format!("is not valid PEM: {e}")))
}

/// The system's roots, loaded once (reading them takes a while).
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

fn load_client_pair(
    pair: &ClientPair,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), NetError> {
    let chain = CertificateDer::pem_file_iter(&pair.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_setup_error(format!("client certificate {}: {e}", pair.cert.display())))?;
    let key_file = pair.key.as_ref().unwrap_or(&pair.cert);
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| tls_setup_error(format!("client key {}: {e}", key_file.display())))?;
    Ok((chain, key))
}

/// `skip_verify = true`: accept any certificate, still check the handshake.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What a successful handshake agreed on.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    pub protocol: String,
    pub verified: bool,
}

/// Run the TLS handshake on `tcp` for `origin`.
pub async fn tls_handshake(
    tcp: TcpStream,
    origin: &Origin,
    config: Arc<ClientConfig>,
    verified: bool,
    timeout: Duration,
) -> Result<(BoxedIo, TlsInfo), NetError> {
    let name = ServerName::try_from(origin.host.clone()).map_err(|e| NetError::Tls {
        problem: Box::new(Problem::TlsHandshake {
            reason: e.to_string(),
        }),
        reason: format!("{:?} cannot be used as a TLS server name: {e}", origin.host),
    })?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let stream = match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Err(_) => {
            return Err(NetError::Tls {
                problem: Box::new(Problem::Timeout),
                reason: format!("no TLS handshake within {}", human_duration(timeout)),
            })
        }
        Ok(Err(e)) => return Err(tls_error(&e, origin)),
        Ok(Ok(stream)) => stream,
    };
    let protocol = stream
        .get_ref()
        .1
        .protocol_version()
        .map(|v| format!("{v:?}").replace('_', "."))
        .unwrap_or_else(|| "TLS".to_owned());
    Ok((Box::pin(stream), TlsInfo { protocol, verified }))
}

fn tls_error(e: &io::Error, origin: &Origin) -> NetError {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let (problem, reason) = match rustls_error {
        Some(rustls::Error::InvalidCertificate(cert)) => certificate_problem(cert, origin),
        Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) => (
            Problem::NotTls,
            "the server answered the TLS handshake in plain text: it speaks HTTP, not HTTPS"
                .to_owned(),
        ),
        Some(rustls::Error::AlertReceived(alert)) => (
            Problem::TlsHandshake {
                reason: format!("{alert:?}"),
            },
            format!("the server ended the handshake with alert {alert:?}"),
        ),
        Some(other) => (
            Problem::TlsHandshake {
                reason: other.to_string(),
            },
            format!("TLS handshake failed: {other}"),
        ),
        None => (
            Problem::TlsHandshake {
                reason: e.to_string(),
            },
            format!("TLS handshake failed: {e}"),
        ),
    };
    NetError::Tls {
        problem: Box::new(problem),
        reason,
    }
}

fn certificate_problem(cert: &CertificateError, origin: &Origin) -> (Problem, String) {
    match cert {
        CertificateError::UnknownIssuer => (
            Problem::CertificateUnknownIssuer,
            "certificate signed by unknown authority: no CA in the system store or in `ca` signed the server certificate".to_owned(),
        ),
        CertificateError::NotValidForName => (
            Problem::CertificateNameMismatch {
                expected: origin.host.clone(),
                presented: Vec::new(),
            },
            format!("the certificate is not valid for {}", origin.host),
        ),
        CertificateError::NotValidForNameContext { presented, .. } => {
            let presented: Vec<String> = presented.iter().map(|p| plain_name(p)).collect();
            // rustls prints the expected name as `DnsName("x")`; it is the
            // host we connected to.
            let expected = origin.host.clone();
            (
                Problem::CertificateNameMismatch {
                    expected: expected.clone(),
                    presented: presented.clone(),
                },
                format!(
                    "the certificate is valid for {}, not {expected}",
                    presented.join(", ")
                ),
            )
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => (
            Problem::CertificateExpired,
            format!("the certificate has expired{}", expiry_text(cert)),
        ),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => (
            Problem::CertificateNotYetValid,
            "the certificate is not valid yet (check this node's clock)".to_owned(),
        ),
        other => (
            Problem::CertificateInvalid {
                reason: format!("{other:?}"),
            },
            format!("the certificate was rejected: {other:?}"),
        ),
    }
}

/// rustls lists presented names as `DnsName("x")` or `IpAddress(1.2.3.4)`.
fn plain_name(presented: &str) -> String {
    let inner = presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(presented);
    inner.trim_matches('"').to_owned()
}

fn expiry_text(cert: &CertificateError) -> String {
    match cert {
        CertificateError::ExpiredContext { time, not_after } => {
            let ago = time.as_secs().saturating_sub(not_after.as_secs());
            format!(" ({} ago)", human_duration(Duration::from_secs(ago)))
        }
        _ => String::new(),
    }
}

/// `1.5 s`, `300 ms`, `3 d`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 86_400.0 {
        format!("{:.0} d", secs / 86_400.0)
    } else if secs >= 3_600.0 {
        format!("{:.0} h", secs / 3_600.0)
    } else if secs >= 1.0 {
        format!("{secs:.1} s")
    } else {
        format!("{:.0} ms", secs * 1000.0)
    }
}

/// Resolve, connect and (for https) handshake in one go: for requests after
/// the layer-by-layer probe, and for redirect targets and token realms.
pub async fn open(
    resolver: &Resolver,
    origin: &Origin,
    tls: &Arc<ClientConfig>,
    verified: bool,
    timeout: Duration,
) -> Result<(BoxedIo, SocketAddr), NetError> {
    let (addrs, _) = resolver.resolve(origin, timeout).await?;
    let (tcp, addr) = connect_tcp(&addrs, timeout).await?;
    if !origin.https {
        return Ok((Box::pin(tcp), addr));
    }
    let (io, _) = tls_handshake(tcp, origin, tls.clone(), verified, timeout).await?;
    Ok((io, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resolve_overrides() {
        let o: ResolveOverride = "Registry.local:10.0.0.5".parse().unwrap();
        assert_eq!((o.host.as_str(), o.port), ("registry.local", None));
        let o: ResolveOverride = "registry.local:443:[fd00::5]".parse().unwrap();
        assert_eq!(o.port, Some(443));
        assert_eq!(o.addr, "fd00::5".parse::<IpAddr>().unwrap());
        assert!("registry.local".parse::<ResolveOverride>().is_err());
        assert!("registry.local:not-an-ip"
            .parse::<ResolveOverride>()
            .is_err());
        assert!(":127.0.0.1".parse::<ResolveOverride>().is_err());
    }

    #[test]
    fn origins_of_urls() {
        let (o, path) = Origin::of_url("http://127.0.0.1:9/x/y?z=1").unwrap();
        assert_eq!((o.host.as_str(), o.port, o.https), ("127.0.0.1", 9, false));
        assert_eq!(path, "/x/y?z=1");
        let (o, path) = Origin::of_url("https://[::1]").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("::1", 443));
        assert_eq!(path, "/");
        assert!(Origin::of_url("ftp://x/").is_none());
    }

    #[test]
    fn presented_names_read_plainly() {
        assert_eq!(
            plain_name("DnsName(\"registry.example\")"),
            "registry.example"
        );
        assert_eq!(plain_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(plain_name("plain"), "plain");
    }

    #[test]
    fn overrides_apply_per_port() {
        let r = Resolver::new(vec!["r.example:5000:127.0.0.2".parse().unwrap()]);
        assert!(r
            .override_for(&Origin::new(false, "r.example:5000"))
            .is_some());
        assert!(r.override_for(&Origin::new(true, "r.example")).is_none());
    }
}
