//! `wharf ca`: a local certificate authority, so `wharf serve` can speak
//! HTTPS where no public CA reaches.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use wharf_tls::{ca, LocalCa, ServerNames, TlsError};

use std::io::Write;

use crate::exit::Hint;
use crate::output;

/// Where `wharf ca` keeps the CA unless told otherwise.
const DEFAULT_CA_DIR: &str = "wharf-ca";

#[derive(Debug, Args)]
pub struct CaArgs {
    #[command(subcommand)]
    pub command: CaCommand,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a CA: DIR/ca.key (ECDSA P-256, mode 0600) and DIR/ca.crt (self-signed, ten years).
    Init(InitArgs),
    /// Issue a server certificate for DNS names and IP addresses: PREFIX.crt (with the CA) and PREFIX.key.
    Issue(IssueArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory for ca.crt and ca.key.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CA_DIR)]
    pub dir: PathBuf,
    /// Replace an existing CA (certificates it issued stop being trusted where the new CA replaces it).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// DNS names (or IP addresses) the certificate is valid for, e.g. registry.home.arpa.
    #[arg(value_name = "NAME", required_unless_present = "ips")]
    pub names: Vec<String>,
    /// IP address the certificate is valid for; repeatable.
    #[arg(long = "ip", value_name = "IP")]
    pub ips: Vec<String>,
    /// Directory of the CA made by `wharf ca init`.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CA_DIR)]
    pub dir: PathBuf,
    /// Output prefix: writes PREFIX.crt and PREFIX.key [default: the first name].
    #[arg(long, value_name = "PREFIX")]
    pub out: Option<PathBuf>,
    /// Days the certificate stays valid.
    #[arg(long, value_name = "N", default_value_t = ca::DEFAULT_SERVER_VALIDITY_DAYS)]
    pub days: u32,
}

pub fn run(args: CaArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        CaCommand::Init(args) => init(&args),
        CaCommand::Issue(args) => issue(&args),
    }
    .map(|()| ExitCode::SUCCESS)
}

fn init(args: &InitArgs) -> anyhow::Result<()> {
    let paths = wharf_tls::init_ca(&args.dir, args.force).map_err(|e| {
        let hint = match &e {
            TlsError::AlreadyExists(_) => format!(
                "{} already holds a CA; keep it and run `wharf ca issue NAME --dir {}`, \
                 or pass --force to replace it (nodes must then trust the new ca.crt)",
                args.dir.display(),
                args.dir.display()
            ),
            _ => "check that the directory given to --dir is writable by this user".into(),
        };
        anyhow::Error::new(e)
            .context(format!("cannot create a CA in {}", args.dir.display()))
            .context(Hint(hint))
    })?;
    let dir = args.dir.display();
    let mut out = output::stdout();
    writeln!(out, "CA certificate: {}", paths.cert.display())?;
    writeln!(
        out,
        "CA private key: {} (mode 0600; keep it off the nodes)",
        paths.key.display()
    )?;
    writeln!(out)?;
    writeln!(out, "Next:")?;
    writeln!(
        out,
        "  wharf ca issue registry.home.arpa --ip 192.0.2.10 --dir {dir} --out registry"
    )?;
    writeln!(
        out,
        "  wharf serve --listen 0.0.0.0:5000 --tls-cert registry.crt --tls-key registry.key"
    )?;
    writeln!(
        out,
        "  wharf containerd hosts --mirror https://registry.home.arpa:5000 --ca {} docker.io --out /etc/containerd/certs.d",
        paths.cert.display()
    )?;
    Ok(())
}

fn issue(args: &IssueArgs) -> anyhow::Result<()> {
    let names = ServerNames::parse(&args.names, &args.ips)
        .context("cannot issue a certificate")
        .context(Hint(
            "give DNS names as arguments (registry.home.arpa, *.home.arpa) and addresses with --ip (192.0.2.10, ::1)".into(),
        ))?;
    let ca = LocalCa::load(&args.dir).map_err(|e| {
        let hint = match &e {
            TlsError::NoCa { .. } => format!(
                "create one first with `wharf ca init --dir {}`, or point --dir at an existing CA",
                args.dir.display()
            ),
            _ => "ca.crt and ca.key must be the pair `wharf ca init` wrote".into(),
        };
        anyhow::Error::new(e)
            .context(format!("cannot load the CA from {}", args.dir.display()))
            .context(Hint(hint))
    })?;
    let issued = ca
        .issue(&names, args.days)
        .context("cannot issue a certificate")?;
    let prefix = args.out.clone().unwrap_or_else(|| default_prefix(&names));
    let (cert, key) = issued
        .write(&prefix)
        .with_context(|| format!("cannot write the certificate to {}", prefix.display()))?;
    print_issued(&cert, &key, &names, args.days, ca.paths())?;
    Ok(())
}

/// `registry.home.arpa` for a certificate whose first name is that; an
/// address becomes `192.0.2.10`, a wildcard `_.home.arpa`.
fn default_prefix(names: &ServerNames) -> PathBuf {
    let first = names
        .dns
        .first()
        .cloned()
        .or_else(|| names.ips.first().map(ToString::to_string))
        .unwrap_or_else(|| "server".into());
    PathBuf::from(first.replace(['*', ':'], "_"))
}

fn print_issued(
    cert: &Path,
    key: &Path,
    names: &ServerNames,
    days: u32,
    ca: &ca::CaPaths,
) -> std::io::Result<()> {
    let mut out = output::stdout();
    let all: Vec<String> = names
        .dns
        .iter()
        .cloned()
        .chain(names.ips.iter().map(ToString::to_string))
        .collect();
    writeln!(
        out,
        "Certificate: {} (valid {days} days for {})",
        cert.display(),
        all.join(", ")
    )?;
    writeln!(out, "Private key: {} (mode 0600)", key.display())?;
    writeln!(out)?;
    writeln!(out, "Next:")?;
    writeln!(
        out,
        "  wharf serve --tls-cert {} --tls-key {}",
        cert.display(),
        key.display()
    )?;
    writeln!(
        out,
        "  wharf containerd hosts --mirror https://{}:5000 --ca {} docker.io --out /etc/containerd/certs.d",
        url_host(names),
        ca.cert.display()
    )?;
    Ok(())
}

fn url_host(names: &ServerNames) -> String {
    match (
        names.dns.iter().find(|n| !n.starts_with('*')),
        names.ips.first(),
    ) {
        (Some(dns), _) => dns.clone(),
        (None, Some(std::net::IpAddr::V6(ip))) => format!("[{ip}]"),
        (None, Some(ip)) => ip.to_string(),
        (None, None) => "REGISTRY".into(),
    }
}
