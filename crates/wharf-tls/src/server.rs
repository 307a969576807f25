//! The server side: certificate and key files into a rustls configuration.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerConfig;
use rustls::sign::CertifiedKey;
use rustls::version::{TLS12, TLS13};
use tokio_rustls::TlsAcceptor;

use crate::files;
use crate::reload::ReloadingCert;
use crate::TlsError;

/// The one crypto provider wharf serves with (the same the doctor uses).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS 1.2/1.3 server configuration offering `h2` and `http/1.1`, with the
/// certificate chain from `cert` and the key from `key` — re-read whenever
/// either file changes (see [`ReloadingCert`]). Fails now when the files are
/// unreadable or do not match, so a bad setup is caught at start-up.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let resolver = ReloadingCert::new(cert, key)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&TLS13, &TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// [`server_config`] as the acceptor the registry's accept loop takes.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    server_config(cert, key).map(TlsAcceptor::from)
}

/// Reads a PEM certificate chain (server certificate first) and a PEM
/// private key (PKCS#8, SEC1 or PKCS#1) and checks that they belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = read_chain(cert)?;
    let key_der = read_key(key)?;
    let provider = provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| TlsError::Unusable {
            path: key.to_owned(),
            reason: format!("private key not usable for TLS: {e}"),
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            })
        }
        Err(e) => Err(TlsError::Unusable {
            path: cert.to_owned(),
            reason: format!("certificate not usable: {e}"),
        }),
    }
}

/// The DNS names and IP addresses the server certificate (the first of the
/// PEM chain at `cert`) is issued for: the names the registry is known by.
/// Wildcards name no one host and are left out; IPv6 addresses come in
/// brackets, as in a `host:port`.
pub fn certificate_names(cert: &Path) -> Result<Vec<String>, TlsError> {
    let chain = read_chain(cert)?;
    let unreadable = |reason: String| TlsError::Unusable {
        path: cert.to_owned(),
        reason: format!("cannot read the certificate's names: {reason}"),
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(chain[0].as_ref())
        .map_err(|e| unreadable(e.to_string()))?;
    let sans = parsed
        .subject_alternative_name()
        .map_err(|e| unreadable(e.to_string()))?;
    let names = sans.iter().flat_map(|ext| ext.value.general_names.iter());
    Ok(names
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) if !dns.starts_with('*') => {
                Some(dns.to_ascii_lowercase())
            }
            x509_parser::extensions::GeneralName::IPAddress(bytes) => ip_name(bytes),
            _ => None,
        })
        .collect())
}

/// An IP address SAN as a registry host: IPv6 in brackets.
fn ip_name(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).to_string()),
        16 => Some(format!(
            "[{}]",
            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)
        )),
        _ => None,
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = files::read_to_string(path)?;
    let chain = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(path, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = files::read_to_string(path)?;
    PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_owned(),
        },
        e => bad_pem(path, e),
    })
}

fn bad_pem(path: &Path, e: pem::Error) -> TlsError {
    TlsError::BadPem {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}
