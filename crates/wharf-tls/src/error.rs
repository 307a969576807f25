//! Everything that can go wrong creating, issuing or loading certificates.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} already exists")]
    AlreadyExists(PathBuf),
    #[error("no CA in {dir}: {cert} is missing")]
    NoCa { dir: PathBuf, cert: PathBuf },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoPrivateKey { path: PathBuf },
    #[error("{path} is not valid PEM: {reason}")]
    BadPem { path: PathBuf, reason: String },
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{path}: {reason}")]
    Unusable { path: PathBuf, reason: String },
    #[error("invalid DNS name {0:?}")]
    InvalidDnsName(String),
    #[error("invalid IP address {0:?}")]
    InvalidIp(String),
    #[error("a certificate needs at least one DNS name or IP address")]
    NoNames,
    #[error("validity of {0} days is out of range (1 to 36500)")]
    InvalidValidity(u32),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
}
