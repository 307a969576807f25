//! Why the doctor could not run at all. Everything it finds about the
//! network or the registry is part of the report instead.

use crate::net::ResolveOverrideError;
use crate::platform::PlatformError;

#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error(transparent)]
    Reference(#[from] wharf_oci::ReferenceError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error(transparent)]
    Resolve(#[from] ResolveOverrideError),
    #[error("containerd config: {0}")]
    Config(String),
    #[error("--timeout must be more than zero")]
    ZeroTimeout,
    #[error("cannot start the async runtime: {0}")]
    Runtime(String),
}

impl DoctorError {
    /// Whether the user asked for something impossible (exit code 2).
    pub fn is_usage(&self) -> bool {
        !matches!(self, DoctorError::Config(_) | DoctorError::Runtime(_))
    }
}
