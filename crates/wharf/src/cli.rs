//! The command line: the commands and their arguments, parsed once. Each
//! command's own flags are defined in its module under `commands/`, the
//! shared ones in `flags`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::{
    auth, ca, containerd, copy, doctor, fsck, gc, images, load, save, serve, warm,
};

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
    Serve(serve::ServeArgs),
    /// A local certificate authority for serving HTTPS: create it, issue server certificates.
    Ca(ca::CaArgs),
    /// Manage registry users (htpasswd files with bcrypt entries).
    Auth(auth::AuthArgs),
    /// Generate and lint containerd registry configuration (hosts.toml, config.toml).
    Containerd(containerd::ContainerdArgs),
    /// List every image a set of Kubernetes YAML uses (fully-qualified, sorted, unique).
    Images(images::ImagesArgs),
    /// Explain why this node cannot pull an image: each host containerd would try, layer by layer.
    Doctor(doctor::DoctorArgs),
    /// Check a registry's storage (a directory or an S3 bucket): every blob rehashed, every tag and manifest reference followed.
    Fsck(fsck::FsckArgs),
    /// Remove what retention rules let go and every blob nothing refers to; safe next to a running server.
    Gc(gc::GcArgs),
    /// Copy one image (every platform, digest for digest) to a registry.
    Copy(copy::CopyArgs),
    /// Copy a list of images or a TOML sync file to a registry; only what changed moves.
    Sync(copy::SyncArgs),
    /// Write images from their registries into one offline bundle (a tar ctr, podman and docker import).
    Save(save::SaveArgs),
    /// Verify bundles, then push them into a registry or import them into containerd.
    Load(load::LoadArgs),
    /// Fill a running pull-through cache ahead of time from a list (the same input as sync).
    Warm(warm::WarmArgs),
}

impl Command {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Serve(args) => serve::run(args),
            Command::Ca(args) => ca::run(args),
            Command::Auth(args) => auth::run(args),
            Command::Containerd(args) => containerd::run(args),
            Command::Images(args) => images::run(args),
            Command::Doctor(args) => doctor::run(args),
            Command::Fsck(args) => fsck::run(args),
            Command::Gc(args) => gc::run(args),
            Command::Copy(args) => copy::run_copy(args),
            Command::Sync(args) => copy::run_sync(args),
            Command::Save(args) => save::run(args),
            Command::Load(args) => load::run(args),
            Command::Warm(args) => warm::run(args),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
