//! `wharf doctor IMAGE`: what containerd on this node would do to pull
//! IMAGE, tested layer by layer on every host it would try, with the layer
//! that breaks and the fix.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use wharf_doctor::{Options, Platform, ResolveOverride};

use crate::exit::usage;
use crate::output::{self, Format, OutputArgs};

#[derive(Debug, Args)]
#[command(
    about = "Explain why this node cannot pull an image: the hosts containerd would try, and which layer breaks (DNS, TCP, TLS, /v2/, manifest, blob)"
)]
pub struct DoctorArgs {
    /// Image reference as given to crictl or the kubelet (e.g. registry.k8s.io/pause:3.10).
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// containerd config.toml [default: /etc/containerd/config.toml].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Hosts directory to use instead of config.toml's config_path (what `ctr --hosts-dir` does).
    #[arg(long = "hosts-dir", value_name = "DIR")]
    pub hosts_dir: Option<PathBuf>,
    /// Answer lookups of HOST (on PORT only, when given) with ADDR, like curl; repeatable.
    #[arg(long = "resolve", value_name = "HOST[:PORT]:ADDR")]
    pub resolve: Vec<ResolveOverride>,
    /// Platform to pull for [default: this node's].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
    /// Seconds allowed for each lookup, connection, handshake and request.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_timeout)]
    pub timeout: Duration,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Also test the hosts after the first one that serves the pull.
    #[arg(long)]
    pub all_hosts: bool,
    /// containerd's socket: the running containerd is asked what it loaded
    /// (CRI Status, plugin introspection); when nothing answers, its release is modelled.
    #[arg(long, value_name = "SOCKET", default_value = wharf_cri::DEFAULT_ADDRESS)]
    pub address: PathBuf,
    /// Model this containerd release when the runtime does not answer
    /// (default: asked of `containerd --version`).
    #[arg(long, value_name = "X.Y[.Z]")]
    pub containerd_version: Option<wharf_containerd::ContainerdRelease>,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 3600.0) {
        return Err("give a number of seconds between 0 and 3600, e.g. 5 or 0.5".to_owned());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Run `wharf doctor`. Exit codes: 0 the pull would succeed, 1 it would
/// not (or the doctor could not run), 2 invalid arguments.
pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let options = Options {
        image: args.image,
        config_file: args.config,
        hosts_dir: args.hosts_dir,
        resolve: args.resolve,
        platform: args.platform,
        timeout: args.timeout,
        all_hosts: args.all_hosts,
        containerd: args
            .containerd_version
            .or_else(crate::commands::containerd::installed_containerd),
        address: Some(args.address),
    };
    let report = match wharf_doctor::diagnose_blocking(&options) {
        Ok(report) => report,
        Err(e) if e.is_usage() => return Err(usage(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    match args.output.output {
        Format::Text => {
            use std::io::Write;
            output::stdout().write_all(wharf_doctor::render_text(&report).as_bytes())?
        }
        Format::Json => output::print_json("doctor", serde_json::to_value(&report)?)?,
    }
    Ok(if report.verdict.would_succeed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
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
        args: DoctorArgs,
    }

    fn parse(argv: &[&str]) -> Result<DoctorArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("doctor").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn takes_an_image_and_repeatable_overrides() {
        let args = parse(&[
            "registry.k8s.io/pause:3.10",
            "--resolve",
            "registry.k8s.io:10.0.0.5",
            "--resolve",
            "mirror.local:5000:127.0.0.1",
            "--platform",
            "linux/arm64/v8",
            "--timeout",
            "0.5",
            "--output",
            "json",
        ])
        .unwrap();
        assert_eq!(args.image, "registry.k8s.io/pause:3.10");
        assert_eq!(args.resolve.len(), 2);
        assert_eq!(args.resolve[1].port, Some(5000));
        assert_eq!(args.platform.unwrap().to_string(), "linux/arm64/v8");
        assert_eq!(args.timeout, Duration::from_millis(500));
        assert_eq!(args.output.output, Format::Json);
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for argv in [
            &["img", "--resolve", "no-address"][..],
            &["img", "--platform", "linux"][..],
            &["img", "--timeout", "0"][..],
            &["img", "--output", "yaml"][..],
            &[][..],
        ] {
            let err = parse(argv).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{argv:?}");
        }
    }

    #[test]
    fn an_invalid_reference_exits_with_usage() {
        let args = parse(&["UPPER/case:1", "--config", "/nonexistent/config.toml"]).unwrap();
        let e = run(args).unwrap_err();
        assert_eq!(
            crate::exit::finish(Err(e)),
            ExitCode::from(crate::exit::EXIT_USAGE)
        );
    }
}
