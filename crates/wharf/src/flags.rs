//! Flags that several commands share, each defined once as a clap group
//! and parsed into the values the commands take. A value that cannot be
//! right (`--jobs 0`, `--platform linux`, `--src-creds nocolon`) is refused
//! by clap with exit code 2 before any command runs.

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::Args;
use wharf_client::{Client, ClientConfig, Credential, CredentialSources};
use wharf_oci::{PlatformSpec, Reference};

use crate::settings::{self, FileConfig, StorageSettings};

/// How registries are reached: plain HTTP or TLS, and which CAs to trust.
#[derive(Debug, Clone, Default, Args)]
pub struct Trust {
    /// Speak plain HTTP (no TLS) to HOST; alone, to every registry of this command. Loopback always may.
    #[arg(
        long,
        value_name = "HOST[:PORT]",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = ALL_HOSTS
    )]
    pub insecure: Vec<String>,
    /// `--tls-verify=false` is `--insecure` (as podman and skopeo spell it).
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub tls_verify: Option<bool>,
    /// Extra CA certificate (PEM) to trust; repeatable.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Vec<PathBuf>,
}

/// In `--insecure` lists: every host.
const ALL_HOSTS: &str = "*";

impl Trust {
    /// The hosts spoken to over plain HTTP (`*`: all of them).
    pub fn insecure_hosts(&self) -> Vec<String> {
        if self.tls_verify == Some(false) {
            return vec![ALL_HOSTS.into()];
        }
        self.insecure.clone()
    }
}

/// USER:PASS, as `--src-creds` and `--dest-creds` take them.
fn user_pass(s: &str) -> Result<Credential, String> {
    Credential::parse_user_pass(s).ok_or_else(|| "expected USER:PASS".to_string())
}

/// Credentials for the registries images are read from.
#[derive(Debug, Clone, Default, Args)]
pub struct SourceCredentials {
    /// Credentials for the source registries, as USER:PASS.
    #[arg(long, value_name = "USER:PASS", env = "WHARF_SRC_CREDS", hide_env_values = true, value_parser = user_pass)]
    pub src_creds: Option<Credential>,
}

/// Credentials for the registry images are written to.
#[derive(Debug, Clone, Default, Args)]
pub struct DestCredentials {
    /// Credentials for the destination registry, as USER:PASS.
    #[arg(long, value_name = "USER:PASS", env = "WHARF_DEST_CREDS", hide_env_values = true, value_parser = user_pass)]
    pub dest_creds: Option<Credential>,
}

/// How much moves at once.
#[derive(Debug, Clone, Copy, Args)]
pub struct Jobs {
    /// Images and blobs moved at once.
    #[arg(long, short = 'j', value_name = "N", default_value_t = wharf_transfer::DEFAULT_JOBS, value_parser = at_least_one)]
    pub jobs: usize,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

impl Default for Jobs {
    fn default() -> Jobs {
        Jobs {
            jobs: wharf_transfer::DEFAULT_JOBS,
        }
    }
}

/// Which platforms of multi-platform images.
#[derive(Debug, Clone, Default, Args)]
pub struct Platforms {
    /// Keep only these platforms (os/arch[/variant]), comma-separated or repeated; `all` (the default) keeps every one.
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT],…|all", value_delimiter = ',', value_parser = platform_choice)]
    pub platforms: Vec<PlatformChoice>,
}

/// One `--platform` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformChoice {
    All,
    One(PlatformSpec),
}

fn platform_choice(s: &str) -> Result<PlatformChoice, String> {
    if s.trim().eq_ignore_ascii_case("all") {
        return Ok(PlatformChoice::All);
    }
    s.trim()
        .parse::<PlatformSpec>()
        .map(PlatformChoice::One)
        .map_err(|e| e.to_string())
}

impl Platforms {
    /// The platforms to keep; empty: every platform.
    pub fn selected(&self) -> Vec<PlatformSpec> {
        if self.platforms.contains(&PlatformChoice::All) {
            return Vec::new();
        }
        self.platforms
            .iter()
            .filter_map(|p| match p {
                PlatformChoice::One(spec) => Some(spec.clone()),
                PlatformChoice::All => None,
            })
            .collect()
    }
}

/// Other names of the destination registry.
#[derive(Debug, Clone, Default, Args)]
pub struct RegistryNames {
    /// Another name of the destination registry (host[:port]; a bare host means the destination's port): images under it land at their plain path. Repeatable.
    #[arg(long = "registry-name", value_name = "HOST[:PORT]")]
    pub registry_names: Vec<String>,
}

/// No progress on stderr.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct Quiet {
    /// No progress on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Which storage `gc` and `fsck` work on: the server's, named the way the
/// server names it.
#[derive(Debug, Clone, Default, Args)]
pub struct StorageArgs {
    /// Storage root directory [default: `[storage]` of --config (a directory or an S3 bucket), else ./wharf-data].
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// The server's TOML configuration file; its `[storage]` says where the data is (and `[gc]` how to collect).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl StorageArgs {
    /// The configuration file (empty without --config) and the storage it
    /// and --root name.
    pub fn settings(&self) -> anyhow::Result<(FileConfig, StorageSettings)> {
        let file = match &self.config {
            Some(path) => settings::load(path)?,
            None => FileConfig::default(),
        };
        let storage = file.storage.clone().resolve(self.root.clone())?;
        Ok((file, storage))
    }
}

/// A registry named by `host[:port]` (`--to`, `--registry`): trailing
/// slashes dropped, paths refused.
pub fn registry_host(s: &str) -> Result<String, String> {
    let host = s.trim().trim_end_matches('/');
    if host.is_empty() || host.contains('/') || format!("{host}/x").parse::<Reference>().is_err() {
        return Err(format!(
            "{host:?} is not a registry: expected host[:port], e.g. registry.home.arpa:5000"
        ));
    }
    Ok(host.to_string())
}

/// A registry client with credentials from the usual places, `creds` for
/// each of `hosts`, and the TLS settings given.
pub fn client(
    trust: &Trust,
    creds: Option<&Credential>,
    hosts: &BTreeSet<String>,
) -> anyhow::Result<Client> {
    let mut credentials = CredentialSources::from_env();
    if let Some(credential) = creds {
        for host in hosts {
            credentials = credentials.with_explicit(host, credential.clone());
        }
    }
    Ok(Client::new(ClientConfig {
        insecure_hosts: trust.insecure_hosts(),
        ca_files: trust.ca_file.clone(),
        credentials,
        ..ClientConfig::default()
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        trust: Trust,
        #[command(flatten)]
        src: SourceCredentials,
        #[command(flatten)]
        jobs: Jobs,
        #[command(flatten)]
        platforms: Platforms,
        #[arg(long, value_parser = registry_host)]
        to: Option<String>,
        positional: Vec<String>,
    }

    fn parse(args: &[&str]) -> Result<Cmd, clap::Error> {
        Cmd::try_parse_from(std::iter::once("wharf").chain(args.iter().copied()))
    }

    #[test]
    fn insecure_never_takes_the_next_argument() {
        let cmd = parse(&["--insecure", "alpine", "127.0.0.1:5000"]).unwrap();
        assert_eq!(cmd.trust.insecure_hosts(), ["*"]);
        assert_eq!(cmd.positional, ["alpine", "127.0.0.1:5000"]);
        let cmd = parse(&["--insecure=mirror.lan:5000", "alpine"]).unwrap();
        assert_eq!(cmd.trust.insecure_hosts(), ["mirror.lan:5000"]);
        assert_eq!(cmd.positional, ["alpine"]);
    }

    #[test]
    fn tls_verify_false_is_insecure() {
        let cmd = parse(&["--tls-verify=false", "alpine"]).unwrap();
        assert_eq!(cmd.trust.insecure_hosts(), ["*"]);
        let cmd = parse(&["--tls-verify", "alpine"]).unwrap();
        assert!(cmd.trust.insecure_hosts().is_empty());
        assert_eq!(cmd.positional, ["alpine"]);
        assert!(parse(&["--tls-verify=maybe"]).is_err());
    }

    #[test]
    fn jobs_must_be_at_least_one() {
        assert_eq!(parse(&[]).unwrap().jobs.jobs, wharf_transfer::DEFAULT_JOBS);
        assert_eq!(parse(&["-j", "3"]).unwrap().jobs.jobs, 3);
        let e = parse(&["--jobs", "0"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn platforms_are_lists_or_all() {
        let cmd = parse(&["--platform", "linux/amd64,linux/arm64/v8"]).unwrap();
        let names: Vec<String> = cmd
            .platforms
            .selected()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(names, ["linux/amd64", "linux/arm64/v8"]);
        let cmd = parse(&["--platform", "linux/amd64", "--platform", "linux/s390x"]).unwrap();
        assert_eq!(cmd.platforms.selected().len(), 2);
        assert!(parse(&["--platform", "all"])
            .unwrap()
            .platforms
            .selected()
            .is_empty());
        assert!(parse(&[]).unwrap().platforms.selected().is_empty());
        assert_eq!(parse(&["--platform", "linux"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn credentials_are_user_pass() {
        let cmd = parse(&["--src-creds", "me:secret"]).unwrap();
        assert!(cmd.src.src_creds.is_some());
        assert_eq!(
            parse(&["--src-creds", "nocolon"]).unwrap_err().exit_code(),
            2
        );
    }

    #[test]
    fn registry_hosts() {
        assert_eq!(
            registry_host("registry.home.arpa:5000/").unwrap(),
            "registry.home.arpa:5000"
        );
        assert!(registry_host("registry.home.arpa:5000/repo").is_err());
        assert!(registry_host("").is_err());
        assert_eq!(parse(&["--to", "a/b"]).unwrap_err().exit_code(), 2);
    }
}
