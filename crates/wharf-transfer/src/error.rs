//! Why one image could not be copied. Every variant prints as one line that
//! names the cause; the image itself is named by the report that holds it.

use wharf_client::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The registry said no, or the network did.
    #[error("{0}")]
    Registry(#[from] wharf_client::Error),
    /// A reference, platform or filter that does not parse.
    #[error("{0}")]
    Invalid(String),
    /// The source served something that cannot be copied faithfully.
    #[error("{0}")]
    Source(String),
    /// The tag or digest does not exist at the source.
    #[error("no such image at the source ({0})")]
    Missing(wharf_client::Error),
    /// The tag or digest is not in a source that is not a registry (a
    /// bundle, a layout): what was asked for and where.
    #[error("{0}")]
    NotInSource(String),
    /// A bug: a task panicked.
    #[error("{0}")]
    Internal(String),
}

impl TransferError {
    /// A short word for the cause, stable for JSON output.
    pub fn cause(&self) -> &'static str {
        match self {
            TransferError::Registry(e) => match e.kind() {
                ErrorKind::NotFound => "not-found",
                ErrorKind::Unauthorized => "unauthorized",
                ErrorKind::Denied => "denied",
                ErrorKind::RateLimited => "rate-limited",
                ErrorKind::DigestMismatch => "digest-mismatch",
                ErrorKind::Network => "network",
                ErrorKind::Tls => "tls",
                ErrorKind::Server => "server",
                ErrorKind::Protocol => "protocol",
                ErrorKind::Config => "config",
                ErrorKind::Invalid => "invalid",
            },
            TransferError::Invalid(_) => "invalid",
            TransferError::Source(_) => "source",
            TransferError::Missing(_) => "not-found",
            // Its message names the file and what to do; the registry's
            // not-found advice would not fit.
            TransferError::NotInSource(_) => "source",
            TransferError::Internal(_) => "internal",
        }
    }
}

pub type Result<T, E = TransferError> = std::result::Result<T, E>;
