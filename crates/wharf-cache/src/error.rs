//! Building a cache, and turning upstream failures into spec errors.

use http::StatusCode;
use wharf_client::{Error as ClientError, ErrorKind};
use wharf_registry::error::{Code, RegistryError};

/// A cache that cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("upstream {host:?}: {reason}")]
    Upstream { host: String, reason: String },
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// What a requester is told when the upstream failed. `missing` is the code
/// for "the upstream does not have it". Client errors carry no secrets, so
/// their text is safe to pass on.
pub(crate) fn upstream_error(e: &ClientError, missing: Code) -> RegistryError {
    let message = format!("upstream: {e}");
    match e.kind() {
        ErrorKind::NotFound => RegistryError::new(missing, message),
        ErrorKind::RateLimited => RegistryError::new(Code::TooManyRequests, message),
        ErrorKind::Unauthorized | ErrorKind::Denied => {
            // The requester's own credentials are not the problem: wharf's
            // credentials for the upstream are.
            RegistryError::new(Code::Denied, message)
        }
        // The spec has no code for "the upstream failed": the content is
        // unknown here, and the gateway status tells why.
        ErrorKind::Network if is_timeout(e) => {
            RegistryError::new(missing, message).with_status(StatusCode::GATEWAY_TIMEOUT)
        }
        _ => RegistryError::new(missing, message).with_status(StatusCode::BAD_GATEWAY),
    }
}

fn is_timeout(e: &ClientError) -> bool {
    e.to_string().contains("timed out")
}

/// The upstream could not be asked at all (unreachable, timing out, 5xx),
/// as opposed to answering "no": the case where a stale copy is served.
pub(crate) fn is_unreachable(e: &ClientError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Network | ErrorKind::Tls | ErrorKind::Server | ErrorKind::RateLimited
    )
}
