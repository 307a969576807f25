//! Flags that several commands share, each defined once as a clap group
//! and parsed into the values the commands take. A value that cannot be
//! right (`--jobs 0`, `--platform linux`, `--src-creds nocolon`) is refused
//! by clap with exit code 2 before any command runs.

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::Args;
use wharf_client::{split_scheme, Client, ClientConfig, Credential, CredentialSources};
use wharf_oci::{PlatformSpec, Reference};

use crate::settings::{self, FileConfig, StorageSettings};

/// How registries are reached: plain HTTP or TLS, which CAs to trust, and
/// which credentials file to read first.
#[derive(Debug, Clone, Default, Args)]
pub struct Trust {
    /// Speak plain HTTP (no TLS) to HOST (`--insecure=HOST`, or `--insecure HOST` when HOST is host:port or a dotted name); alone, to every registry of this command. Loopback always may. Such a registry is tried in plain HTTP, and in TLS from the moment it answers in TLS.
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
    /// Extra CA certificate (PEM) to trust; repeatable. Per-host CAs and client certificates are also read from /etc/containers/certs.d/HOST[:PORT]/ and /etc/docker/certs.d/HOST[:PORT]/.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Vec<PathBuf>,
    /// Registry credentials file (auth.json as podman, skopeo and wharf login write it), read before the usual places.
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Schemes written before registry hosts (`https://localhost:5002`).
    #[arg(skip)]
    pub schemes: Vec<(String, &'static str)>,
}

/// In `--insecure` lists: every host.
const ALL_HOSTS: &str = "*";

impl Trust {
    /// Strip an `https://` or `http://` written before a registry or an
    /// image reference, remembering it for the registry's host.
    pub fn take_scheme(&mut self, written: &mut String) {
        let (scheme, rest) = split_scheme(written.trim());
        if let Some(scheme) = scheme {
            let host = rest.split('/').next().unwrap_or(rest).to_string();
            self.schemes.push((host, scheme));
            *written = rest.to_string();
        }
    }

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

/// `--insecure HOST`, as earlier releases and other tools spell it, read as
/// `--insecure=HOST` when HOST can only be a registry: a `host:port`, a
/// dotted name or `localhost`, with no `/`, and no file of that name. An
/// image (`alpine`, `registry.k8s.io/pause:3.10`) or a list file after a
/// bare `--insecure` stays where it is. `main` parses the original command
/// line when the rewritten one does not parse.
pub fn insecure_host_values(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        let next_is_host = args
            .peek()
            .and_then(|n| n.to_str())
            .is_some_and(looks_like_a_registry);
        if arg == "--insecure" && next_is_host {
            let host = args.next().expect("peeked");
            let mut joined = std::ffi::OsString::from("--insecure=");
            joined.push(host);
            out.push(joined);
        } else {
            out.push(arg);
        }
    }
    out
}

fn looks_like_a_registry(s: &str) -> bool {
    let has_port = s
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    !s.starts_with('-')
        && registry_host(s).is_ok()
        && (has_port || s.contains('.') || s == "localhost")
        && !std::path::Path::new(s).exists()
}

/// A registry named by `host[:port]` (`--to`, `--registry`), perhaps with
/// an `https://` or `http://` before it (kept, for [`Trust::take_scheme`]):
/// trailing slashes dropped, paths refused.
pub fn registry_host(s: &str) -> Result<String, String> {
    let written = s.trim().trim_end_matches('/');
    let (_, host) = split_scheme(written);
    if host.is_empty() || host.contains('/') || format!("{host}/x").parse::<Reference>().is_err() {
        return Err(format!(
            "{host:?} is not a registry: expected host[:port], e.g. registry.home.arpa:5000"
        ));
    }
    Ok(written.to_string())
}

/// A registry client with credentials from `--authfile` and the usual
/// places (see `wharf_client::credentials` for the order), `creds` for each
/// of `hosts`, and the trust and schemes given.
pub fn client(
    trust: &Trust,
    creds: Option<&Credential>,
    hosts: &BTreeSet<String>,
) -> anyhow::Result<Client> {
    let mut credentials = CredentialSources::from_env();
    if let Some(file) = &trust.authfile {
        credentials = credentials.with_authfile(file.clone());
    }
    if let Some(credential) = creds {
        for host in hosts {
            credentials = credentials.with_explicit(host, credential.clone());
        }
    }
    let mut config = ClientConfig {
        insecure_hosts: trust.insecure_hosts(),
        ca_files: trust.ca_file.clone(),
        credentials,
        // A command runs once: a registry that did not answer through every
        // retry is not asked all over again by each image.
        unreachable_memory: std::time::Duration::from_secs(30),
        ..ClientConfig::default()
    };
    for (host, scheme) in &trust.schemes {
        config.force_scheme(host, scheme);
    }
    Ok(Client::new(config)?)
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
    fn insecure_followed_by_a_registry_takes_it() {
        let argv = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        let rewritten = insecure_host_values(argv(&[
            "wharf",
            "--insecure",
            "127.0.0.1:5000",
            "--insecure",
            "mirror.lan",
            "--insecure",
            "alpine",
            "--insecure",
            "registry.k8s.io/pause:3.10",
            "--insecure",
        ]));
        assert_eq!(
            rewritten,
            argv(&[
                "wharf",
                "--insecure=127.0.0.1:5000",
                "--insecure=mirror.lan",
                "--insecure",
                "alpine",
                "--insecure",
                "registry.k8s.io/pause:3.10",
                "--insecure",
            ])
        );
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("images.txt");
        std::fs::write(&list, "alpine\n").unwrap();
        let list = list.to_str().unwrap();
        assert!(!looks_like_a_registry(list), "a file is never a host");
        let cmd = Cmd::try_parse_from(insecure_host_values(argv(&[
            "wharf",
            "--insecure",
            "reg.lan:5000",
            "alpine",
        ])))
        .unwrap();
        assert_eq!(cmd.trust.insecure_hosts(), ["reg.lan:5000"]);
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
    fn a_scheme_before_a_host_is_remembered_for_it() {
        let mut cmd = parse(&["--authfile", "/tmp/auth.json", "x"]).unwrap();
        assert_eq!(
            cmd.trust.authfile.as_deref(),
            Some(std::path::Path::new("/tmp/auth.json"))
        );
        let mut written = "https://localhost:5002/team/app:v1".to_string();
        cmd.trust.take_scheme(&mut written);
        assert_eq!(written, "localhost:5002/team/app:v1");
        let mut plain = "registry.lan/app".to_string();
        cmd.trust.take_scheme(&mut plain);
        assert_eq!(plain, "registry.lan/app");
        assert_eq!(cmd.trust.schemes, [("localhost:5002".to_string(), "https")]);
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
        assert_eq!(
            registry_host("https://localhost:5002/").unwrap(),
            "https://localhost:5002"
        );
        assert!(registry_host("https://localhost:5002/repo").is_err());
        assert!(registry_host("").is_err());
        assert_eq!(parse(&["--to", "a/b"]).unwrap_err().exit_code(), 2);
    }
}
