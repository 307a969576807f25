use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the runtime could not be asked. Each variant says what the socket
/// turned out to be, so a caller can say what to do next.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CriError {
    /// No socket, or nothing accepting on it: the runtime is not running here.
    #[error("nothing answers on {socket}: {reason}")]
    NotRunning { socket: PathBuf, reason: String },
    #[error("no permission to connect to {socket}: {reason}")]
    PermissionDenied { socket: PathBuf, reason: String },
    /// Something accepts connections but does not speak gRPC over HTTP/2.
    #[error("{socket} is not a container runtime's gRPC socket: {reason}")]
    NotGrpc { socket: PathBuf, reason: String },
    /// The peer speaks gRPC but has no such service (e.g. the CRI plugin is
    /// disabled, or it is not containerd).
    #[error("{socket} does not serve {method}: {message}")]
    Unimplemented {
        socket: PathBuf,
        method: String,
        message: String,
    },
    /// The call reached the runtime, which answered with an error.
    #[error("{method} on {socket} failed: {code}: {message}")]
    Call {
        socket: PathBuf,
        method: String,
        code: String,
        message: String,
    },
    #[error("{socket} did not answer {what} within {timeout:?}")]
    Timeout {
        socket: PathBuf,
        what: String,
        timeout: Duration,
    },
    #[error("{socket} answered {what} with something that is not what containerd sends: {reason}")]
    Unexpected {
        socket: PathBuf,
        what: String,
        reason: String,
    },
}

impl CriError {
    pub(crate) fn unreachable(socket: &Path, e: &std::io::Error) -> CriError {
        let socket = socket.to_owned();
        let reason = e.to_string();
        match e.kind() {
            std::io::ErrorKind::PermissionDenied => CriError::PermissionDenied { socket, reason },
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                CriError::NotRunning { socket, reason }
            }
            _ => CriError::NotGrpc { socket, reason },
        }
    }

    pub(crate) fn not_grpc(socket: &Path, e: &dyn std::error::Error) -> CriError {
        CriError::NotGrpc {
            socket: socket.to_owned(),
            reason: chain(e),
        }
    }

    pub(crate) fn timeout(socket: &Path, what: &str, timeout: Duration) -> CriError {
        CriError::Timeout {
            socket: socket.to_owned(),
            what: what.to_owned(),
            timeout,
        }
    }

    pub(crate) fn from_status(socket: &Path, method: &str, status: tonic::Status) -> CriError {
        let socket = socket.to_owned();
        let method = method.to_owned();
        let message = status.message().to_owned();
        match status.code() {
            tonic::Code::Unimplemented => CriError::Unimplemented {
                socket,
                method,
                message,
            },
            // tonic reports a peer that is not gRPC (an HTTP server's answer,
            // a wrong content type) as Internal/Unknown with no message from
            // the server; say so instead of quoting the codec.
            tonic::Code::Internal | tonic::Code::Unknown if looks_like_transport(&status) => {
                CriError::NotGrpc {
                    socket,
                    reason: format!("{}: {message}", status.code()),
                }
            }
            code => CriError::Call {
                socket,
                method,
                code: format!("{code:?}"),
                message,
            },
        }
    }

    /// What to do next, for a CLI's `hint:` line.
    pub fn hint(&self) -> String {
        match self {
            CriError::NotRunning { .. } => {
                "start containerd (`systemctl start containerd`), or give its socket with --address".to_owned()
            }
            CriError::PermissionDenied { .. } => "run as root (the socket is root's)".to_owned(),
            CriError::NotGrpc { .. } => {
                "check --address: it must be containerd's gRPC socket (`[grpc] address` in config.toml)".to_owned()
            }
            CriError::Unimplemented { .. } => {
                "enable containerd's CRI plugin (remove it from `disabled_plugins`) and restart containerd".to_owned()
            }
            CriError::Call { .. } | CriError::Unexpected { .. } => {
                "see containerd's log (`journalctl -u containerd`)".to_owned()
            }
            CriError::Timeout { .. } => "check that containerd is healthy (`journalctl -u containerd`)".to_owned(),
        }
    }
}

fn looks_like_transport(status: &tonic::Status) -> bool {
    let m = status.message();
    m.contains("protocol error")
        || m.contains("content-type")
        || m.contains("h2")
        || m.contains("transport")
        || m.contains("HTTP status")
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
