//! Platforms: the selector type is shared with `wharf sync` and lives in
//! wharf-oci; the doctor knows it as `Platform`.

pub use wharf_oci::platform::{describe, PlatformError, PlatformSpec as Platform};
