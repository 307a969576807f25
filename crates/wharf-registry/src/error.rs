//! Errors as data: each spec error code with its HTTP status, rendered as the
//! spec's JSON body `{"errors":[{"code","message","detail"}]}`.

use http::header::{HeaderName, HeaderValue};
use http::StatusCode;
use serde::Serialize;
use wharf_storage::StorageError;

/// The distribution spec's error codes (code-1 … code-14) and wharf's
/// catch-alls, each sent as a spec code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    RangeInvalid,
    /// No such route.
    NotFound,
    /// Method not allowed on this route.
    MethodNotAllowed,
    /// A server-side failure (storage I/O); details go to the log only.
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported | Code::NotFound | Code::MethodNotAllowed => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            // The spec's list has no range code; the 416 status says it.
            Code::RangeInvalid => "BLOB_UPLOAD_INVALID",
            Code::Internal => "UNKNOWN",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::BlobUnknown
            | Code::BlobUploadUnknown
            | Code::ManifestUnknown
            | Code::NameUnknown
            | Code::NotFound => StatusCode::NOT_FOUND,
            Code::BlobUploadInvalid
            | Code::DigestInvalid
            | Code::ManifestBlobUnknown
            | Code::ManifestInvalid
            | Code::NameInvalid
            | Code::SizeInvalid
            | Code::Unsupported => StatusCode::BAD_REQUEST,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Denied => StatusCode::FORBIDDEN,
            Code::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Code::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct ErrorEntry {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<serde_json::Value>,
}

/// One failed request: its code and status, a message for the client, and
/// for 416s the upload state the client should resume from.
#[derive(Debug, Clone)]
pub struct RegistryError {
    pub code: Code,
    pub status: StatusCode,
    entries: Vec<ErrorEntry>,
    /// `(upload location, bytes received)` for a 416 on an upload.
    pub upload_state: Option<(String, u64)>,
    /// Headers the answer must carry (`WWW-Authenticate`, `Retry-After`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl RegistryError {
    pub fn new(code: Code, message: impl Into<String>) -> RegistryError {
        RegistryError {
            code,
            status: code.status(),
            entries: vec![ErrorEntry {
                code: code.as_str(),
                message: message.into(),
                detail: None,
            }],
            upload_state: None,
            headers: Vec::new(),
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> RegistryError {
        self.status = status;
        self
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> RegistryError {
        if let Some(e) = self.entries.first_mut() {
            e.detail = Some(detail);
        }
        self
    }

    /// Sets `name` on the answer, replacing an earlier value.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> RegistryError {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value));
        self
    }

    pub fn with_upload_state(mut self, location: String, size: u64) -> RegistryError {
        self.upload_state = Some((location, size));
        self
    }

    pub fn not_found() -> RegistryError {
        RegistryError::new(Code::NotFound, "no such endpoint in the registry API")
    }

    pub fn name_invalid(e: impl std::fmt::Display) -> RegistryError {
        RegistryError::new(Code::NameInvalid, e.to_string())
    }

    pub fn digest_invalid(e: impl std::fmt::Display) -> RegistryError {
        RegistryError::new(Code::DigestInvalid, e.to_string())
    }

    pub fn manifest_invalid(e: impl std::fmt::Display) -> RegistryError {
        RegistryError::new(Code::ManifestInvalid, e.to_string())
    }

    /// One `MANIFEST_BLOB_UNKNOWN` entry per missing digest, as the spec asks.
    fn manifest_blobs_unknown(missing: &[wharf_oci::Digest]) -> RegistryError {
        let mut err = RegistryError::new(Code::ManifestBlobUnknown, "");
        err.entries = missing
            .iter()
            .map(|d| ErrorEntry {
                code: Code::ManifestBlobUnknown.as_str(),
                message: format!("manifest references {d}, which this repository does not have"),
                detail: Some(serde_json::json!({ "digest": d.to_string() })),
            })
            .collect();
        err
    }

    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "errors": self.entries }))
            .expect("errors serialise")
    }

    pub fn message(&self) -> &str {
        self.entries.first().map_or("", |e| e.message.as_str())
    }
}

impl From<StorageError> for RegistryError {
    fn from(e: StorageError) -> RegistryError {
        let msg = e.to_string();
        match e {
            StorageError::BlobUnknown(_) => RegistryError::new(Code::BlobUnknown, msg),
            StorageError::UploadUnknown(_) => RegistryError::new(Code::BlobUploadUnknown, msg),
            StorageError::RangeMismatch { .. } => RegistryError::new(Code::RangeInvalid, msg),
            StorageError::DigestMismatch { .. } => RegistryError::new(Code::DigestInvalid, msg),
            StorageError::ManifestUnknown => RegistryError::new(Code::ManifestUnknown, msg),
            StorageError::NameUnknown => RegistryError::new(Code::NameUnknown, msg),
            StorageError::ManifestInvalid(_) => RegistryError::new(Code::ManifestInvalid, msg),
            StorageError::ManifestBlobUnknown(missing) => {
                RegistryError::manifest_blobs_unknown(&missing)
            }
            StorageError::BodyInterrupted(ref cause) if crate::body::is_timeout(cause) => {
                RegistryError::new(Code::BlobUploadInvalid, msg)
                    .with_status(StatusCode::REQUEST_TIMEOUT)
            }
            StorageError::BodyInterrupted(_) => RegistryError::new(Code::BlobUploadInvalid, msg),
            StorageError::Corrupt { .. } | StorageError::Io { .. } => {
                tracing::error!(error = %msg, "storage failure");
                RegistryError::new(
                    Code::Internal,
                    "internal storage error; see the registry log",
                )
            }
        }
    }
}
