//! A certificate authority kept in a directory (`ca.crt`, `ca.key`), and the
//! server certificates it issues.
//!
//! Keys are ECDSA P-256: every TLS client wharf meets (Go's crypto/tls in
//! containerd and skopeo, rustls, OpenSSL) supports it, and it is small and
//! fast to sign with.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::DnsName;
use time::{Duration, OffsetDateTime};

use crate::files::{self, PRIVATE_MODE, PUBLIC_MODE};
use crate::TlsError;

/// The CA's common name, shown by clients that explain a verification failure.
pub const CA_COMMON_NAME: &str = "wharf local CA";
/// File name of the CA certificate inside the CA directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the CA private key inside the CA directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// A CA outlives many server certificates: ten years.
pub const CA_VALIDITY_DAYS: u32 = 3650;
/// Default validity of a server certificate: one year, renewed with `wharf ca issue`.
pub const DEFAULT_SERVER_VALIDITY_DAYS: u32 = 365;
/// Longest validity accepted for anything issued here.
const MAX_VALIDITY_DAYS: u32 = 36500;
/// Certificates start to be valid a little in the past, so a node whose clock
/// lags the registry's does not reject a certificate issued a minute ago.
const BACKDATE: Duration = Duration::hours(1);

/// Where a CA directory keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPaths {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CaPaths {
    pub fn in_dir(dir: &Path) -> CaPaths {
        CaPaths {
            dir: dir.to_owned(),
            cert: dir.join(CA_CERT_FILE),
            key: dir.join(CA_KEY_FILE),
        }
    }
}

/// Creates a CA in `dir` (created if missing): a new P-256 key in `ca.key`
/// (mode 0600) and a self-signed certificate in `ca.crt`. An existing CA is
/// an error unless `force` is set — replacing it would invalidate every
/// certificate it issued and every node that trusts it.
pub fn init_ca(dir: &Path, force: bool) -> Result<CaPaths, TlsError> {
    let paths = CaPaths::in_dir(dir);
    if !force {
        for existing in [&paths.cert, &paths.key] {
            if existing.exists() {
                return Err(TlsError::AlreadyExists(existing.clone()));
            }
        }
    }
    fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let key = KeyPair::generate()?;
    let cert = ca_params(CA_VALIDITY_DAYS)?.self_signed(&key)?;
    // Key first: a directory holding a certificate without its key would
    // look like a CA that cannot issue.
    files::write_atomic(&paths.key, key.serialize_pem().as_bytes(), PRIVATE_MODE)?;
    files::write_atomic(&paths.cert, cert.pem().as_bytes(), PUBLIC_MODE)?;
    Ok(paths)
}

fn ca_params(days: u32) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(CA_COMMON_NAME);
    // Path length 0: this CA signs server certificates, never other CAs.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, days)?;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

fn set_validity(params: &mut CertificateParams, days: u32) -> Result<(), TlsError> {
    if days == 0 || days > MAX_VALIDITY_DAYS {
        return Err(TlsError::InvalidValidity(days));
    }
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(i64::from(days));
    Ok(())
}

/// 16 random bytes, top bit clear so the DER integer stays positive: clients
/// cache certificates by issuer and serial, so two must never share one.
fn random_serial() -> Result<SerialNumber, TlsError> {
    use rustls::crypto::ring::default_provider;
    let mut bytes = [0u8; 16];
    default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| rustls::Error::FailedToGetRandomBytes)?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01 << 6; // never a leading zero byte
    Ok(SerialNumber::from_slice(&bytes))
}

/// The names a server certificate is valid for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerNames {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl ServerNames {
    /// `names` may mix DNS names and IP addresses (an address among the
    /// names is taken as an IP SAN, as clients expect); `ips` must all be
    /// addresses. Every name is checked before anything is signed.
    pub fn parse(names: &[String], ips: &[String]) -> Result<ServerNames, TlsError> {
        let mut parsed = ServerNames::default();
        for name in names {
            match name.parse::<IpAddr>() {
                Ok(ip) => parsed.push_ip(ip),
                Err(_) => parsed.push_dns(name)?,
            }
        }
        for ip in ips {
            let ip = ip
                .parse::<IpAddr>()
                .map_err(|_| TlsError::InvalidIp(ip.clone()))?;
            parsed.push_ip(ip);
        }
        if parsed.dns.is_empty() && parsed.ips.is_empty() {
            return Err(TlsError::NoNames);
        }
        Ok(parsed)
    }

    fn push_dns(&mut self, name: &str) -> Result<(), TlsError> {
        let lower = name.to_ascii_lowercase();
        // A wildcard may only be the whole leftmost label (RFC 6125 6.4.3).
        let checked = lower.strip_prefix("*.").unwrap_or(&lower);
        if checked.contains('*') || DnsName::try_from(checked).is_err() {
            return Err(TlsError::InvalidDnsName(name.to_owned()));
        }
        if !self.dns.contains(&lower) {
            self.dns.push(lower);
        }
        Ok(())
    }

    fn push_ip(&mut self, ip: IpAddr) {
        if !self.ips.contains(&ip) {
            self.ips.push(ip);
        }
    }

    /// The name that goes into the subject's common name: the first DNS
    /// name, else the first address. Clients match SANs, never the CN.
    fn primary(&self) -> String {
        self.dns
            .first()
            .cloned()
            .or_else(|| self.ips.first().map(IpAddr::to_string))
            .unwrap_or_default()
    }

    fn sans(&self) -> Result<Vec<SanType>, TlsError> {
        let mut sans = Vec::with_capacity(self.dns.len() + self.ips.len());
        for name in &self.dns {
            let ia5 = name
                .clone()
                .try_into()
                .map_err(|_| TlsError::InvalidDnsName(name.clone()))?;
            sans.push(SanType::DnsName(ia5));
        }
        sans.extend(self.ips.iter().copied().map(SanType::IpAddress));
        Ok(sans)
    }
}

/// A CA loaded from its directory, ready to sign.
pub struct LocalCa {
    paths: CaPaths,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl LocalCa {
    /// Loads `ca.crt` and `ca.key` from `dir`.
    pub fn load(dir: &Path) -> Result<LocalCa, TlsError> {
        let paths = CaPaths::in_dir(dir);
        if !paths.cert.exists() {
            return Err(TlsError::NoCa {
                dir: dir.to_owned(),
                cert: paths.cert,
            });
        }
        let cert_pem = files::read_to_string(&paths.cert)?;
        let key_pem = files::read_to_string(&paths.key)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::Unusable {
            path: paths.key.clone(),
            reason: format!("not a private key wharf can use: {e}"),
        })?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| TlsError::Unusable {
            path: paths.cert.clone(),
            reason: format!("not a CA certificate: {e}"),
        })?;
        Ok(LocalCa {
            paths,
            cert_pem,
            issuer,
        })
    }

    pub fn paths(&self) -> &CaPaths {
        &self.paths
    }

    /// The CA certificate, PEM: what clients must trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A new P-256 key and a server certificate for `names`, valid `days`
    /// days, signed by this CA.
    pub fn issue(&self, names: &ServerNames, days: u32) -> Result<IssuedCert, TlsError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(&names.primary());
        params.subject_alt_names = names.sans()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, days)?;
        params.serial_number = Some(random_serial()?);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            chain_pem: format!("{}{}", cert.pem(), ensure_newline(&self.cert_pem)),
            key_pem: key.serialize_pem(),
        })
    }
}

fn ensure_newline(pem: &str) -> String {
    if pem.ends_with('\n') {
        pem.to_owned()
    } else {
        format!("{pem}\n")
    }
}

/// A server certificate with its chain and key, not yet on disk.
pub struct IssuedCert {
    /// The server certificate followed by the CA certificate.
    pub chain_pem: String,
    pub key_pem: String,
}

impl IssuedCert {
    /// Writes `PREFIX.crt` (chain) and `PREFIX.key` (mode 0600), each
    /// atomically; returns their paths. A server reloading them in between
    /// sees a mismatched pair, refuses it and keeps its previous certificate
    /// until the second file lands.
    pub fn write(&self, prefix: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
        let cert = with_suffix(prefix, "crt");
        let key = with_suffix(prefix, "key");
        if let Some(parent) = prefix.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|source| TlsError::Write {
                path: parent.to_owned(),
                source,
            })?;
        }
        files::write_atomic(&key, self.key_pem.as_bytes(), PRIVATE_MODE)?;
        files::write_atomic(&cert, self.chain_pem.as_bytes(), PUBLIC_MODE)?;
        Ok((cert, key))
    }
}

/// `PREFIX.ext`, keeping any dots already in the prefix (`registry.home.arpa`).
fn with_suffix(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}
