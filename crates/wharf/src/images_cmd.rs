//! `wharf images`: every image a set of Kubernetes YAML uses.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use wharf_kube::{lint, references, scan_text, Finding, ImageUse, ParseFailure};

/// Files larger than this are not manifests; refusing them keeps a stray
/// archive from being read into memory.
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// YAML or JSON files, directories (searched for *.yaml, *.yml, *.json), or - for stdin.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Also report naming traps: bare names, latest or missing tags, mutable tags with IfNotPresent.
    #[arg(long)]
    pub lint: bool,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
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
    file.by_ref()
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
    }
    findings.sort_by(|a, b| (&a.file, a.line, a.code).cmp(&(&b.file, b.line, b.code)));
    match args.output {
        Output::Text => {
            for r in &refs {
                println!("{r}");
            }
            c.failures.iter().for_each(print_failure);
            findings.iter().for_each(print_finding);
        }
        Output::Json => {
            let doc = serde_json::json!({
                "version": 1,
                "images": refs,
                "uses": c.uses,
                "findings": findings,
                "errors": c.failures,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
    }
    let clean = c.failures.is_empty() && findings.is_empty();
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
