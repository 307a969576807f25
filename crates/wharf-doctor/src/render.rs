//! The report as text: the setup, one line per layer per host, then the
//! verdict and the fix.

use std::fmt::Write as _;

use crate::report::{HostReport, HostRole, HostsDirSource, Report, Step, StepStatus};

/// Render for a terminal.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "image:    {} ({})", report.image, report.platform);
    setup(&mut out, report);
    let total = report.hosts.len();
    for (i, host) in report.hosts.iter().enumerate() {
        let _ = writeln!(out);
        host_block(&mut out, i + 1, total, host);
    }
    let _ = writeln!(out);
    verdict(&mut out, report);
    out
}

fn setup(out: &mut String, report: &Report) {
    let c = &report.containerd;
    if let Some(runtime) = &c.runtime {
        let _ = writeln!(out, "runtime:  {}", runtime.summary);
        if let Some(warning) = &runtime.warning {
            let _ = writeln!(out, "          warning: {warning}");
        }
    }
    let version = c
        .config_version
        .map(|v| format!(" (version {v})"))
        .unwrap_or_default();
    let found = if c.config_found { "" } else { " (not found)" };
    let _ = writeln!(out, "config:   {}{found}{version}", c.config_file.display());
    let hosts_dir = match (c.hosts_dir_source, &c.hosts_dir) {
        (HostsDirSource::Flag, Some(d)) => format!("{d} (--hosts-dir)"),
        (HostsDirSource::ConfigPath, Some(d)) => format!("{d} (config_path)"),
        _ => "none: no config_path".to_owned(),
    };
    let _ = writeln!(out, "hosts:    {hosts_dir}");
    match (&c.hosts_file, &c.namespace_dir) {
        (Some(file), _) => {
            let _ = writeln!(out, "file:     {}", file.display());
        }
        (None, Some(dir)) => {
            let _ = writeln!(out, "file:     none usable in {}", dir.display());
        }
        (None, None) => {}
    }
    if let Some(image) = &c.sandbox_image {
        let source = c
            .sandbox_image_source
            .as_deref()
            .unwrap_or("unknown source");
        let state = match (c.sandbox_image_present, c.sandbox_pull_would_succeed) {
            (Some(true), _) => "; present on this node",
            (Some(false), Some(true)) => "; not on this node, its pull would succeed",
            (Some(false), Some(false)) => "; not on this node, and its pull would FAIL",
            _ => "",
        };
        let _ = writeln!(out, "sandbox:  {image} ({source}{state})");
    }
}

fn host_block(out: &mut String, n: usize, total: usize, host: &HostReport) {
    let role = match host.role {
        HostRole::Mirror => "mirror",
        HostRole::Server => "server",
        HostRole::Upstream => "upstream",
    };
    let mut facts = vec![role.to_owned()];
    if let Some(file) = &host.file {
        let line = host.line.map(|l| format!(":{l}")).unwrap_or_default();
        facts.push(format!("{}{line}", file.display()));
    }
    facts.push(host.capabilities.join("+"));
    if host.override_path {
        facts.push("override_path".to_owned());
    }
    if host.skip_verify {
        facts.push("skip_verify".to_owned());
    }
    if let Some(ns) = &host.ns {
        facts.push(format!("?ns={ns}"));
    }
    let _ = writeln!(out, "host {n}/{total}: {} ({})", host.url, facts.join(", "));
    if let Some(why) = &host.not_tested {
        let _ = writeln!(out, "  {why}");
    }
    for step in &host.steps {
        let _ = writeln!(out, "{}", step_line(step));
    }
}

/// `  ok    tcp     127.0.0.1:5000 connected in 0.3 ms`.
pub fn step_line(step: &Step) -> String {
    let status = match step.status {
        StepStatus::Ok => "ok",
        StepStatus::Failed => "FAIL",
        StepStatus::Skipped => "skip",
    };
    format!(
        "  {status:<5} {:<7} {} {}",
        step.layer.as_str(),
        step.target,
        step.detail
    )
}

fn verdict(out: &mut String, report: &Report) {
    let v = &report.verdict;
    if v.would_succeed {
        let by = v.served_by.as_deref().unwrap_or("a host");
        let _ = writeln!(out, "verdict:  the pull would succeed (served by {by})");
    } else {
        let _ = writeln!(out, "verdict:  the pull would FAIL");
    }
    for (i, failure) in v.failures.iter().enumerate() {
        let label = if i == 0 && !v.would_succeed {
            "broken:"
        } else {
            "also:"
        };
        let _ = writeln!(
            out,
            "  {label:<8}{} layer on {}: {}",
            failure.layer, failure.url, failure.reason
        );
        let _ = writeln!(out, "  {:<8}{}", "fix:", failure.fix);
    }
    if let Some(error) = &v.containerd_error {
        let _ = writeln!(out, "containerd would report:\n  {error}");
    }
    for note in &v.notes {
        let _ = writeln!(out, "note: {note}");
    }
}
