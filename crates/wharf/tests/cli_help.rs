//! What `--help` tells a new user, for every command and subcommand: each
//! flag states its default once, and the sections of `wharf.toml` that
//! configuration errors send users to are listed where the hint says.

use std::process::Command;

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");

fn help_of(command: &[&str]) -> String {
    let out = Command::new(WHARF)
        .args(command)
        .arg("--help")
        .output()
        .expect("run wharf --help");
    assert!(out.status.success(), "wharf {command:?} --help failed");
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// The subcommand names under the `Commands:` heading of a help text.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every command path (`["containerd", "lint"]` …) with its help text.
fn every_help() -> Vec<(Vec<String>, String)> {
    let mut found = Vec::new();
    let mut queue = vec![Vec::<String>::new()];
    while let Some(path) = queue.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let help = help_of(&args);
        for sub in subcommands(&help) {
            let mut child = path.clone();
            child.push(sub);
            queue.push(child);
        }
        found.push((path, help));
    }
    found
}

/// Each option's text: its line and the wrapped lines under it, up to the
/// next option (clap indents options by 2 or 6 spaces, wrapped text more).
fn flags(help: &str) -> Vec<String> {
    let mut flags: Vec<String> = Vec::new();
    for line in help.lines() {
        let indent = line.len() - line.trim_start().len();
        let starts_flag = line.trim_start().starts_with('-') && (2..=6).contains(&indent);
        match flags.last_mut() {
            Some(flag) if !starts_flag && indent > 6 => flag.push_str(line),
            _ if starts_flag => flags.push(line.to_owned()),
            _ => {}
        }
    }
    flags
}

#[test]
fn every_flag_states_its_default_once() {
    let helps = every_help();
    assert!(
        helps.iter().any(|(path, _)| path == &["fsck"]),
        "the walk reaches the commands: {:?}",
        helps.iter().map(|(p, _)| p.join(" ")).collect::<Vec<_>>()
    );
    let mut doubled = Vec::new();
    for (path, help) in &helps {
        for flag in flags(help) {
            if flag.matches("[default:").count() > 1 {
                doubled.push(format!("wharf {}: {}", path.join(" "), flag.trim()));
            }
        }
    }
    assert!(doubled.is_empty(), "two defaults for one flag:\n{}", doubled.join("\n"));
}

#[test]
fn fsck_help_names_the_root_default_once() {
    let help = help_of(&["fsck"]);
    let root = help
        .lines()
        .find(|l| l.contains("--root"))
        .expect("fsck --help lists --root");
    assert!(
        root.ends_with("Storage root to check [default: ./wharf-data]"),
        "{root}"
    );
}
