//! `wharf images`: every image a set of Kubernetes YAML uses.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wharf_kube::{lint, lint_held, references, scan_text, Finding, Held, ImageUse, ParseFailure};
use wharf_oci::{Reference, Target};
use wharf_transfer::DestinationMap;

use crate::commands::{runtime, Work};
use crate::exit::Hint;
use crate::flags::{self, Trust};
use crate::output::{self, Format, OutputArgs};

/// Files larger than this are not manifests; refusing them keeps a stray
/// archive from being read into memory.
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// YAML or JSON files, directories (searched for *.yaml, *.yml, *.json), or - for stdin.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Also report naming traps: bare names, latest or missing tags, mutable tags with IfNotPresent.
    #[arg(long)]
    pub lint: bool,
    /// With --lint: flag references this bundle (wharf save, docker/podman/skopeo archive) does not hold.
    #[arg(long, value_name = "FILE", requires = "lint")]
    pub bundle: Option<PathBuf>,
    /// With --lint: flag references this registry does not hold (under the upstream host, as sync puts them).
    #[arg(long, value_name = "HOST[:PORT]", requires = "lint", value_parser = flags::registry_host)]
    pub registry: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Default)]
struct Collected {
    uses: Vec<ImageUse>,
    failures: Vec<ParseFailure>,
}

fn is_manifest_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>, failures: &mut Vec<ParseFailure>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return failures.push(io_failure(dir, &e.to_string())),
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            files_under(&p, out, failures);
        } else if is_manifest_file(&p) {
            out.push(p);
        }
    }
}

fn io_failure(path: &Path, message: &str) -> ParseFailure {
    ParseFailure {
        file: path.display().to_string(),
        line: 0,
        column: 0,
        message: message.to_string(),
    }
}

fn read_text(path: &Path) -> Result<String, String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    Read::by_ref(&mut file)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "larger than {} MiB; not a manifest",
            MAX_FILE_BYTES >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())
}

fn scan_one(name: &str, text: &str, into: &mut Collected) {
    let r = scan_text(name, text);
    into.uses.extend(r.uses);
    into.failures.extend(r.failure);
}

fn collect(paths: &[PathBuf]) -> Collected {
    let mut c = Collected::default();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => scan_one("-", &text, &mut c),
                Err(e) => c.failures.push(io_failure(path, &e.to_string())),
            }
            continue;
        }
        let mut files = Vec::new();
        if path.is_dir() {
            files_under(path, &mut files, &mut c.failures);
        } else {
            files.push(path.clone());
        }
        for file in files {
            match read_text(&file) {
                Ok(text) => scan_one(&file.display().to_string(), &text, &mut c),
                Err(e) => c.failures.push(io_failure(&file, &e)),
            }
        }
    }
    c
}

fn print_failure(f: &ParseFailure) {
    if f.line == 0 {
        eprintln!("error: {}: {}", f.file, f.message);
    } else {
        eprintln!(
            "error: {}:{}:{}: does not parse: {}",
            f.file, f.line, f.column, f.message
        );
    }
}

fn print_finding(f: &Finding) {
    let level = match f.severity {
        wharf_kube::Severity::Warning => "warning",
        wharf_kube::Severity::Error => "error",
    };
    eprintln!("{}:{}: {level}[{}]: {}", f.file, f.line, f.code, f.message);
    eprintln!("  = fix: {}", f.fix);
}

pub fn run(args: ImagesArgs) -> anyhow::Result<ExitCode> {
    let c = collect(&args.paths);
    let (refs, mut findings) = references(&c.uses);
    if args.lint {
        findings.extend(lint(&c.uses));
        if let Some(path) = &args.bundle {
            findings.extend(lint_held(&c.uses, &held_by_bundle(path)?));
        }
        if let Some(registry) = &args.registry {
            findings.extend(lint_held(&c.uses, &held_by_registry(registry, &c.uses)?));
        }
    }
    findings.sort_by(|a, b| (&a.file, a.line, a.code).cmp(&(&b.file, b.line, b.code)));
    match args.output.output {
        Format::Text => {
            let mut out = output::stdout();
            for r in &refs {
                writeln!(out, "{r}")?;
            }
            c.failures.iter().for_each(print_failure);
            findings.iter().for_each(print_finding);
        }
        Format::Json => output::print_json(
            "images",
            serde_json::json!({
                "images": refs,
                "uses": c.uses,
                "findings": findings,
                "errors": c.failures,
            }),
        )?,
    }
    let clean = c.failures.is_empty() && findings.is_empty();
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Every name a bundle holds, by tag and by digest (the bundle is verified
/// first: a damaged one holds nothing worth checking against).
fn held_by_bundle(path: &Path) -> anyhow::Result<Held> {
    let bundle = wharf_bundle::Bundle::open(path, None)
        .map_err(anyhow::Error::from)
        .context(Hint(
            "--bundle takes a bundle written by wharf save or an image archive".into(),
        ))?;
    let mut held = Held {
        source: format!("bundle {}", path.display()),
        ..Held::default()
    };
    for image in bundle.images() {
        held.names.insert(image.name.to_string());
        let by_digest = Reference::new(
            image.name.host(),
            image.name.repository().clone(),
            Target::Digest(image.manifest.digest.clone()),
        );
        held.names.insert(by_digest.to_string());
    }
    Ok(held)
}

/// What `registry` holds of the repositories the uses name: each reference
/// asked for (by tag or digest) under the upstream host, as `wharf sync`
/// puts it, and the other tags of its repository for suggestions.
fn held_by_registry(registry: &str, uses: &[ImageUse]) -> anyhow::Result<Held> {
    let registry = registry.to_string();
    let trust = Trust {
        insecure: vec![registry.clone()],
        ..Trust::default()
    };
    let client = flags::client(
        &trust,
        None,
        &std::collections::BTreeSet::from([registry.clone()]),
    )?;
    let map = DestinationMap::new(&registry, false);
    let refs: std::collections::HashSet<Reference> = uses
        .iter()
        .filter_map(|u| u.image.parse::<Reference>().ok())
        .collect();
    let runtime = runtime(Work::Requests)?;
    let mut held = Held {
        source: format!("registry {registry}"),
        ..Held::default()
    };
    runtime.block_on(async {
        let mut listed = std::collections::BTreeSet::new();
        for r in &refs {
            let Ok(mirrored) = map.map(r) else { continue };
            let mirrored = match r.digest() {
                Some(d) => mirrored.with_digest(d.clone()),
                None => mirrored,
            };
            match client.head_manifest(&mirrored).await {
                Ok(_) => {
                    held.names.insert(r.to_string());
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    return Err(anyhow::Error::from(e)).context(Hint(format!(
                        "cannot ask {registry}; check it answers (wharf doctor) or drop --registry"
                    )))
                }
            }
            if listed.insert((r.host().to_string(), r.repository().clone())) {
                let repo = mirrored.repository();
                for tag in client.tags_list(&registry, repo).await.unwrap_or_default() {
                    held.names
                        .insert(format!("{}/{}:{tag}", r.host(), r.repository()));
                }
            }
        }
        Ok(())
    })?;
    Ok(held)
}
