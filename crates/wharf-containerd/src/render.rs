//! Output formats: a compiler-style text report and a versioned JSON document.

use serde::Serialize;

use crate::diagnostic::{Diagnostic, Severity};

/// Version of the JSON document layout; bump on any incompatible change.
pub const JSON_FORMAT_VERSION: u32 = 1;

/// Render for people:
///
/// ```text
/// config.toml:5:11: error[WH002]: message
///   |
/// 5 | [plugins."io.containerd.grpc.v1.cri".registry]
///   |           ^
///   = containerd will: ...
///   = fix: ...
/// ```
///
/// No colour is emitted, so `NO_COLOR` is honoured trivially.
pub fn render_human(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&render_one(d));
        out.push('\n');
    }
    out.push_str(&summary_line(diagnostics));
    out
}

fn render_one(d: &Diagnostic) -> String {
    let location = match d.position {
        Some(p) => format!("{}:{}:{}", d.file.display(), p.line, p.column),
        None => d.file.display().to_string(),
    };
    let mut out = format!("{location}: {}[{}]: {}\n", d.severity, d.code, d.message);
    let gutter_width = d.position.map_or(1, |p| p.line.to_string().len());
    let pad = " ".repeat(gutter_width);
    if let (Some(p), Some(line)) = (d.position, &d.source_line) {
        out.push_str(&format!("{pad} |\n{} | {line}\n", p.line));
        out.push_str(&format!("{pad} | {}^\n", caret_indent(line, p.column)));
    }
    if !d.containerd_will.is_empty() {
        out.push_str(&format!("{pad} = containerd will: {}\n", d.containerd_will));
    }
    if !d.fix.is_empty() {
        out.push_str(&format!("{pad} = fix: {}\n", d.fix));
    }
    out
}

/// Spaces up to `column`, copying tabs so the caret lines up in a terminal.
fn caret_indent(line: &str, column: usize) -> String {
    line.chars()
        .take(column.saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect()
}

/// `2 errors, 1 warning, 1 info`: each severity under the name its findings
/// carry (`error[…]`, `warning[…]`, `info[…]`), so the totals read like the
/// lines above them.
fn summary_line(diagnostics: &[Diagnostic]) -> String {
    let counted = |severity: Severity| {
        let n = diagnostics
            .iter()
            .filter(|d| d.severity == severity)
            .count();
        let name = severity.as_str();
        // "info" is a mass noun: 2 info, like 2 information.
        let plural = n != 1 && severity != Severity::Info;
        format!("{n} {name}{}", if plural { "s" } else { "" })
    };
    format!(
        "{}, {}, {}\n",
        counted(Severity::Error),
        counted(Severity::Warning),
        counted(Severity::Info)
    )
}

#[derive(Serialize)]
struct JsonReport<'a> {
    version: u32,
    diagnostics: Vec<JsonDiagnostic<'a>>,
    summary: JsonSummary,
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    code: &'static str,
    name: &'static str,
    severity: Severity,
    file: String,
    line: Option<usize>,
    column: Option<usize>,
    message: &'a str,
    containerd_will: &'a str,
    fix: &'a str,
    source_line: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonSummary {
    errors: usize,
    warnings: usize,
    infos: usize,
}

/// The JSON report as a value: `{"version":1,"diagnostics":[...],"summary":{...}}`.
pub fn json_report(diagnostics: &[Diagnostic]) -> serde_json::Value {
    // Plain strings and numbers: serialising cannot fail.
    serde_json::to_value(report(diagnostics))
        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
}

/// Render as JSON: `{"version":1,"diagnostics":[...],"summary":{...}}`.
pub fn render_json(diagnostics: &[Diagnostic]) -> String {
    // Serialising plain strings and numbers cannot fail.
    serde_json::to_string_pretty(&report(diagnostics))
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

fn report(diagnostics: &[Diagnostic]) -> JsonReport<'_> {
    let count = |s: Severity| diagnostics.iter().filter(|d| d.severity == s).count();
    JsonReport {
        version: JSON_FORMAT_VERSION,
        diagnostics: diagnostics.iter().map(json_diagnostic).collect(),
        summary: JsonSummary {
            errors: count(Severity::Error),
            warnings: count(Severity::Warning),
            infos: count(Severity::Info),
        },
    }
}

fn json_diagnostic(d: &Diagnostic) -> JsonDiagnostic<'_> {
    JsonDiagnostic {
        code: d.code.as_str(),
        name: d.code.name(),
        severity: d.severity,
        file: d.file.display().to_string(),
        line: d.line(),
        column: d.column(),
        message: &d.message,
        containerd_will: &d.containerd_will,
        fix: &d.fix,
        source_line: d.source_line.as_deref(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Code;

    fn finding(severity: Severity) -> Diagnostic {
        Diagnostic::new(
            Code::CtrIgnoresConfigPath,
            severity,
            std::path::Path::new("config.toml"),
            "message".to_owned(),
        )
    }

    #[test]
    fn the_summary_counts_each_severity_by_its_name() {
        let found = [
            finding(Severity::Error),
            finding(Severity::Error),
            finding(Severity::Warning),
            finding(Severity::Info),
        ];
        assert_eq!(summary_line(&found), "2 errors, 1 warning, 1 info\n");
        let infos = [finding(Severity::Info), finding(Severity::Info)];
        assert_eq!(summary_line(&infos), "0 errors, 0 warnings, 2 info\n");
    }
}
