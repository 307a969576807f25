//! Command-line arguments, parsed once.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "wharf",
    version,
    about = "Get container images into clusters that cannot reach the internet, and keep them there."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the OCI registry (HTTP, or HTTPS with --tls-cert/--tls-key; filesystem storage by default, or an S3 bucket).
    Serve(ServeArgs),
    /// A local certificate authority for serving HTTPS: create it, issue server certificates.
    Ca(crate::ca_cmd::CaArgs),
    /// Manage registry users (htpasswd files with bcrypt entries).
    Auth(crate::auth_cmd::AuthArgs),
    /// Generate and lint containerd registry configuration (hosts.toml, config.toml).
    Containerd(crate::containerd_cmd::ContainerdArgs),
    /// List every image a set of Kubernetes YAML uses (fully-qualified, sorted, unique).
    Images(crate::images_cmd::ImagesArgs),
    /// Explain why this node cannot pull an image: each host containerd would try, layer by layer.
    Doctor(crate::doctor_cmd::DoctorArgs),
    /// Check a storage root: every blob rehashed, every tag and manifest reference followed.
    Fsck(crate::fsck_cmd::FsckArgs),
    /// Remove what retention rules let go and every blob nothing refers to; safe next to a running server.
    Gc(crate::gc_cmd::GcArgs),
    /// Copy one image (every platform, digest for digest) to a registry.
    Copy(crate::transfer_cmd::CopyArgs),
    /// Copy a list of images or a TOML sync file to a registry; only what changed moves.
    Sync(crate::transfer_cmd::SyncArgs),
    /// Write images from their registries into one offline bundle (a tar ctr, podman and docker import).
    Save(crate::save_cmd::SaveArgs),
    /// Verify bundles, then push them into a registry or import them into containerd.
    Load(crate::load_cmd::LoadArgs),
    /// Fill a running pull-through cache ahead of time from a list (the same input as sync).
    Warm(crate::warm_cmd::WarmArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = crate::config::SECTIONS_HELP)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:5000].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Storage root directory [default: ./wharf-data].
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// TOML configuration file; flags given on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format on stderr [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Largest manifest accepted, in bytes [default: 4194304].
    #[arg(long, value_name = "BYTES")]
    pub max_manifest_bytes: Option<usize>,
    /// Accept image indexes whose child manifests are absent (single-platform mirrors keep the upstream index digest).
    #[arg(long)]
    pub sparse_indexes: bool,
    /// Serve HTTPS with this PEM certificate chain (server certificate first); reloaded when it changes.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert; reloaded when it changes.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// With object storage: start even when the bucket does not answer yet, report not ready on /readyz, and keep retrying (instead of exiting).
    #[arg(long)]
    pub wait_for_storage: bool,
    /// A name this registry is known by (host[:port]); `?ns=` of it serves the plain path. Repeatable; the TLS certificate's names count too.
    #[arg(long = "registry-name", value_name = "HOST[:PORT]")]
    pub registry_names: Vec<String>,
    /// At start-up, store this binary's own image under REF (e.g. registry.home.arpa:5000/wharf/wharf:0.2.0), as `wharf save --self REF` builds it.
    #[arg(long, value_name = "REF")]
    pub publish_self: Option<String>,
}

/// A next step to print under an error (`hint: …`).
#[derive(Debug)]
pub struct Hint(pub String);

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Hint {}
