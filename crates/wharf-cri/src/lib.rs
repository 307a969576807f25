//! Ask a running containerd what it loaded, over its unix socket: the
//! Kubernetes CRI's `Version`, verbose `Status`, `PullImage` and
//! `ImageStatus`, and containerd's plugin introspection.
//!
//! [`ask`] returns a [`Loaded`] view (the CRI's `config_path`, deprecated
//! mirrors, sandbox image, deprecation warnings) that the doctor compares
//! with what config.toml says; [`CriClient`] is also the project's own CRI
//! client for tests that pull the way the kubelet does.
//!
//! Architecture invariant: every call is bounded by the caller's timeout,
//! and a socket that is missing, refuses, is not gRPC, or lacks the CRI
//! gives a distinct [`CriError`], never an empty answer.

mod client;
mod error;
mod loaded;
pub mod proto;

pub use client::CriClient;
pub use error::CriError;
pub use loaded::{
    ask, from_answers, Loaded, LoadedRegistry, CRI_IMAGES_PLUGIN_TYPE, REGISTRY_CONFIG_PATH_EXPORT,
};

/// containerd's default socket.
pub const DEFAULT_ADDRESS: &str = "/run/containerd/containerd.sock";
