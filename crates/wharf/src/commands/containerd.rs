//! `wharf containerd`: write and check containerd's registry configuration.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use wharf_containerd as wc;

use crate::commands::{runtime, Work};
use crate::exit::Usage;
use crate::output::{self, Format, OutputArgs};

/// Default location of containerd's main configuration file.
const DEFAULT_CONFIG: &str = "/etc/containerd/config.toml";
/// The hosts directory wharf suggests (containerd's documented default).
const DEFAULT_HOSTS_DIR: &str = "/etc/containerd/certs.d";

#[derive(Debug, Args)]
#[command(about = "Generate and lint containerd registry configuration (config.toml, hosts.toml)")]
pub struct ContainerdArgs {
    #[command(subcommand)]
    pub command: ContainerdCommand,
}

#[derive(Debug, Subcommand)]
pub enum ContainerdCommand {
    /// Write <dir>/hosts.toml files that send pulls to mirrors.
    Hosts(HostsArgs),
    /// Print or patch the config.toml section that sets config_path.
    Config(ConfigArgs),
    /// Check config.toml and the hosts directory; never changes a file.
    Lint(LintArgs),
}

#[derive(Debug, Args)]
pub struct HostsArgs {
    /// Upstream registries to mirror, e.g. registry.k8s.io docker.io host:5000.
    #[arg(value_name = "UPSTREAM")]
    pub upstreams: Vec<String>,
    /// Mirror URL, tried in the order given (e.g. http://registry.home.arpa:5000).
    #[arg(long = "mirror", value_name = "URL", required = true)]
    pub mirrors: Vec<String>,
    /// Hosts directory to write into (one <upstream>/hosts.toml each); prints to stdout when absent.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also write _default/hosts.toml, used for every registry without its own directory.
    #[arg(long)]
    pub default: bool,
    /// Do not verify the mirror's TLS certificate (https mirrors only).
    #[arg(long)]
    pub skip_verify: bool,
    /// CA certificate file for the mirror (https mirrors only); repeatable.
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<String>,
    /// Client certificate for the mirror, as CERT or CERT,KEY; repeatable.
    #[arg(long, value_name = "CERT[,KEY]")]
    pub client: Vec<String>,
    /// Extra HTTP header sent to the mirror, as NAME=VALUE; repeatable.
    #[arg(long = "header", value_name = "NAME=VALUE")]
    pub headers: Vec<String>,
    /// Capabilities of the mirrors (default: pull, resolve).
    #[arg(long = "capability", value_name = "CAP", value_delimiter = ',')]
    pub capabilities: Vec<String>,
    /// Connection timeout for the mirrors, e.g. 1s (containerd 2.0.7+ / 2.1+).
    #[arg(long, value_name = "DURATION")]
    pub dial_timeout: Option<String>,
    /// Target containerd release, e.g. 1.7 or 2.1 (needed for release-specific keys).
    #[arg(long = "containerd-version", value_name = "X.Y[.Z]")]
    pub containerd_version: Option<String>,
}

#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub struct ConfigArgs {
    /// config.toml schema version: 2 (containerd 1.6/1.7), 3 (2.0–2.2), 4 (2.3+).
    #[arg(long = "version", value_name = "N")]
    pub version: Option<u8>,
    /// Target containerd release; picks --version when that is not given.
    #[arg(long = "containerd-version", value_name = "X.Y[.Z]")]
    pub containerd_version: Option<String>,
    /// Directory (or ':'-separated directories) holding <registry>/hosts.toml.
    #[arg(long = "config-path", value_name = "DIR", default_value = DEFAULT_HOSTS_DIR)]
    pub config_path: String,
    /// Edit this config.toml in place (atomically, keeping comments and order).
    #[arg(long, value_name = "FILE")]
    pub patch: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// containerd config.toml (default /etc/containerd/config.toml unless only --hosts-dir is given).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Hosts directory to check instead of the config's config_path.
    #[arg(long = "hosts-dir", value_name = "DIR")]
    pub hosts_dir: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
    /// The old spelling of --output (`human` is `text`); kept for a release.
    #[arg(long, value_enum, hide = true)]
    pub format: Option<LegacyFormat>,
    /// Judge release-specific behaviour for this containerd release
    /// [default: the release running on --address, else `containerd --version`].
    #[arg(long = "containerd-version", value_name = "X.Y[.Z]")]
    pub containerd_version: Option<String>,
    /// containerd's socket, asked for its release when --containerd-version is not given.
    #[arg(long, value_name = "SOCKET", default_value = wharf_cri::DEFAULT_ADDRESS)]
    pub address: PathBuf,
    /// Also contact mirrors: for each host with `override_path = true`, check
    /// whether the registry answers at the standard /v2/ (then override_path is wrong).
    #[arg(long)]
    pub online: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LegacyFormat {
    Human,
    Json,
}

impl LintArgs {
    /// `--output`, or what the old `--format` said (with a warning).
    fn format(&self) -> Format {
        match self.format {
            None => self.output.output,
            Some(old) => {
                let new = match old {
                    LegacyFormat::Human => Format::Text,
                    LegacyFormat::Json => Format::Json,
                };
                eprintln!(
                    "warning: --format is now --output {}",
                    if new == Format::Json { "json" } else { "text" }
                );
                new
            }
        }
    }
}

/// Run `wharf containerd ...`. Exit codes: 0 success (lint: no error),
/// 1 lint errors or a refused/failed operation, 2 invalid arguments.
pub fn run(args: ContainerdArgs) -> anyhow::Result<ExitCode> {
    let outcome = match args.command {
        ContainerdCommand::Hosts(a) => run_hosts(&a),
        ContainerdCommand::Config(a) => run_config(&a),
        ContainerdCommand::Lint(a) => run_lint(&a),
    };
    match outcome {
        Ok(code) => Ok(code),
        Err(err) => report_failure(err),
    }
}

/// Invalid input is a usage error (2); anything else that went wrong is 1.
fn report_failure(err: anyhow::Error) -> anyhow::Result<ExitCode> {
    let usage = matches!(
        err.downcast_ref::<wc::Error>(),
        Some(
            wc::Error::InvalidUpstream { .. }
                | wc::Error::InvalidMirror { .. }
                | wc::Error::InvalidContainerdVersion { .. }
                | wc::Error::UnsupportedConfigVersion(_)
                | wc::Error::InvalidConfigPath { .. }
                | wc::Error::InvalidOption(_)
        )
    );
    if usage {
        Err(Usage(format!("{err:#}")).into())
    } else {
        Err(err)
    }
}

fn run_hosts(args: &HostsArgs) -> anyhow::Result<ExitCode> {
    let request = hosts_request(args)?;
    let files = wc::generate_hosts(&request)?;
    match &args.out {
        Some(dir) => write_hosts_files(dir, &files)?,
        None => print_hosts_files(&files)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn hosts_request(args: &HostsArgs) -> anyhow::Result<wc::HostsRequest> {
    let upstreams = args
        .upstreams
        .iter()
        .map(|u| wc::Namespace::parse(u))
        .collect::<Result<Vec<_>, _>>()?;
    let mirrors = args
        .mirrors
        .iter()
        .map(|m| host_settings(args, m))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(wc::HostsRequest {
        upstreams,
        mirrors,
        include_default: args.default,
        containerd: parse_release(args.containerd_version.as_deref())?,
    })
}

fn host_settings(args: &HostsArgs, url: &str) -> anyhow::Result<wc::HostSettings> {
    let mut host = wc::HostSettings::new(wc::MirrorUrl::parse(url)?);
    if !args.capabilities.is_empty() {
        host.capabilities = args
            .capabilities
            .iter()
            .map(|c| {
                wc::Capability::parse(c).ok_or_else(|| {
                    wc::Error::InvalidOption(format!(
                        "unknown capability {c:?} (known: pull, resolve, push, referrers)"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
    }
    host.skip_verify = args.skip_verify;
    host.ca = args.ca.clone();
    host.client = args.client.iter().map(|c| client_cert(c)).collect();
    host.headers = args
        .headers
        .iter()
        .map(|h| header(h))
        .collect::<Result<_, _>>()?;
    host.dial_timeout = args.dial_timeout.clone();
    Ok(host)
}

fn client_cert(arg: &str) -> wc::ClientCert {
    match arg.split_once(',') {
        Some((cert, key)) => wc::ClientCert {
            cert: cert.to_owned(),
            key: Some(key.to_owned()),
        },
        None => wc::ClientCert {
            cert: arg.to_owned(),
            key: None,
        },
    }
}

fn header(arg: &str) -> Result<(String, Vec<String>), wc::Error> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| wc::Error::InvalidOption(format!("header {arg:?} is not NAME=VALUE")))?;
    Ok((name.trim().to_owned(), vec![value.to_owned()]))
}

fn parse_release(arg: Option<&str>) -> Result<Option<wc::ContainerdRelease>, wc::Error> {
    arg.map(str::parse).transpose()
}

fn write_hosts_files(dir: &Path, files: &[wc::HostsFile]) -> anyhow::Result<()> {
    for file in files {
        let target_dir = dir.join(&file.dir);
        std::fs::create_dir_all(&target_dir)
            .with_context(|| format!("creating {}", target_dir.display()))?;
        let path = dir.join(file.relative_path());
        wc::write_atomic(&path, file.contents.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn print_hosts_files(files: &[wc::HostsFile]) -> anyhow::Result<()> {
    let mut out = output::stdout();
    for (i, file) in files.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(out, "# ---- {} ----", file.relative_path().display())?;
        out.write_all(file.contents.as_bytes())?;
    }
    Ok(())
}

fn run_config(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let version = config_version(args)?;
    match &args.patch {
        Some(file) => patch_file(file, &args.config_path, version),
        None => {
            let version = version.ok_or_else(|| {
                wc::Error::InvalidOption(
                    "give --version 2 (containerd 1.6/1.7), 3 (2.0–2.2) or 4 (2.3+), or --containerd-version"
                        .to_owned(),
                )
            })?;
            let snippet = wc::config_snippet(version, &args.config_path)?;
            output::stdout().write_all(snippet.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn config_version(args: &ConfigArgs) -> anyhow::Result<Option<wc::ConfigVersion>> {
    let from_release =
        parse_release(args.containerd_version.as_deref())?.map(|r| r.config_version());
    let explicit = args
        .version
        .map(|n| wc::ConfigVersion::from_number(i64::from(n)))
        .transpose()?;
    match (explicit, from_release) {
        (Some(v), Some(r)) if v != r => Err(wc::Error::InvalidOption(format!(
            "--version {v} does not match --containerd-version (which reads version {r})"
        ))
        .into()),
        (Some(v), _) | (None, Some(v)) => Ok(Some(v)),
        (None, None) => Ok(None),
    }
}

fn patch_file(
    file: &Path,
    config_path: &str,
    version: Option<wc::ConfigVersion>,
) -> anyhow::Result<ExitCode> {
    let text = wc::read_text_file(file)?;
    let options = wc::PatchOptions {
        config_path: config_path.to_owned(),
        version,
    };
    let patched = wc::patch_config(&text, &options).map_err(|e| relabel_syntax(e, file))?;
    if patched == text {
        eprintln!(
            "{}: config_path is already {config_path:?}; nothing to do",
            file.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    wc::write_atomic(file, patched.as_bytes())?;
    eprintln!(
        "{}: set config_path = {config_path:?}; restart containerd to apply it",
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Name the real file in syntax errors from `patch_config`.
fn relabel_syntax(err: wc::Error, file: &Path) -> wc::Error {
    match err {
        wc::Error::Syntax {
            line,
            column,
            message,
            ..
        } => wc::Error::Syntax {
            path: file.display().to_string(),
            line,
            column,
            message,
        },
        other => other,
    }
}

/// The release of the `containerd` on PATH, if there is one that answers.
pub fn installed_containerd() -> Option<wc::ContainerdRelease> {
    let out = std::process::Command::new("containerd")
        .arg("--version")
        .output()
        .ok()?;
    wc::ContainerdRelease::from_version_output(&String::from_utf8_lossy(&out.stdout))
}

/// The release to judge for: the one answering on `address`, else the
/// installed binary's; with where it came from.
fn detect_release(address: &Path) -> Option<(wc::ContainerdRelease, String)> {
    let asked = runtime(Work::Requests).ok().and_then(|rt| {
        rt.block_on(async {
            let client = wharf_cri::CriClient::connect(address, wharf_doctor::DEFAULT_TIMEOUT)
                .await
                .ok()?;
            client.version().await.ok()
        })
    });
    if let Some(version) = asked {
        let (release, note) = wc::ContainerdRelease::nearest_known(&version.runtime_version)?;
        let mut source = format!("running on {}", address.display());
        if let Some(note) = note {
            source = format!("{source}; {note}");
        }
        return Some((release, source));
    }
    installed_containerd().map(|r| (r, "`containerd --version`".to_owned()))
}

fn judged_for(release: Option<&(wc::ContainerdRelease, String)>) -> String {
    match release {
        Some((release, source)) => format!("judged for containerd {release} ({source})\n"),
        None => "judged for every containerd release (none found here; --containerd-version picks one)\n"
            .to_owned(),
    }
}

fn run_lint(args: &LintArgs) -> anyhow::Result<ExitCode> {
    let mut linter = wc::Linter::new();
    // Release-specific behaviour is judged for the installed release unless
    // --containerd-version names another.
    let release = match parse_release(args.containerd_version.as_deref())? {
        Some(release) => Some((release, "--containerd-version".to_owned())),
        None => detect_release(&args.address),
    };
    if let Some((release, _)) = release {
        linter = linter.with_containerd(release);
    }
    if args.online {
        let probe = wharf_doctor::OverridePathProbe::new(wharf_doctor::DEFAULT_TIMEOUT);
        linter = linter.with_online_check(Box::new(probe));
    }
    let diagnostics = match (&args.config, &args.hosts_dir) {
        (None, Some(dir)) => linter.lint_hosts_dir(dir),
        (config, dir) => {
            let config = config
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
            linter.lint_setup(&config, dir.as_deref())
        }
    };
    match args.format() {
        Format::Text => {
            let rendered = judged_for(release.as_ref()) + &wc::render_human(&diagnostics);
            output::stdout().write_all(rendered.as_bytes())?;
        }
        Format::Json => {
            output::print_json("containerd lint", wc::json_report(&diagnostics))?;
        }
    }
    Ok(if wc::has_errors(&diagnostics) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Stand-in for the binary's top-level parser.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ContainerdArgs,
    }

    fn parse(argv: &[&str]) -> Result<ContainerdArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("containerd").chain(argv.iter().copied()))
            .map(|c| c.args)
    }

    #[test]
    fn hosts_takes_upstreams_and_repeatable_mirrors() {
        let args = parse(&[
            "hosts",
            "--mirror",
            "http://registry.home.arpa:5000",
            "registry.k8s.io",
            "docker.io",
            "--default",
        ])
        .unwrap();
        let ContainerdCommand::Hosts(h) = args.command else {
            panic!("expected hosts")
        };
        assert_eq!(h.upstreams, ["registry.k8s.io", "docker.io"]);
        assert!(h.default);
        let request = hosts_request(&h).unwrap();
        assert_eq!(request.mirrors.len(), 1);
    }

    #[test]
    fn hosts_requires_a_mirror() {
        assert!(parse(&["hosts", "ghcr.io"]).is_err());
    }

    #[test]
    fn config_accepts_its_own_version_flag() {
        let args = parse(&[
            "config",
            "--version",
            "3",
            "--config-path",
            "/etc/containerd/certs.d",
        ])
        .unwrap();
        let ContainerdCommand::Config(c) = args.command else {
            panic!("expected config")
        };
        assert_eq!(config_version(&c).unwrap(), Some(wc::ConfigVersion::V3));
    }

    #[test]
    fn config_version_must_agree_with_the_release() {
        let args = parse(&["config", "--version", "2", "--containerd-version", "2.1"]).unwrap();
        let ContainerdCommand::Config(c) = args.command else {
            panic!("expected config")
        };
        assert!(config_version(&c).is_err());
    }

    #[test]
    fn lint_output_json_and_the_old_format_spelling() {
        let lint = |argv: &[&str]| {
            let ContainerdCommand::Lint(l) = parse(argv).unwrap().command else {
                panic!("expected lint")
            };
            l
        };
        let l = lint(&["lint", "--hosts-dir", "/x", "--output", "json"]);
        assert_eq!(l.format(), Format::Json);
        assert!(!l.online);
        assert_eq!(lint(&["lint", "--hosts-dir", "/x"]).format(), Format::Text);
        assert_eq!(lint(&["lint", "--format", "human"]).format(), Format::Text);
        assert_eq!(lint(&["lint", "--format", "json"]).format(), Format::Json);
    }

    #[test]
    fn lint_online_is_opt_in() {
        let args = parse(&["lint", "--hosts-dir", "/x", "--online"]).unwrap();
        let ContainerdCommand::Lint(l) = args.command else {
            panic!("expected lint")
        };
        assert!(l.online);
    }
}
