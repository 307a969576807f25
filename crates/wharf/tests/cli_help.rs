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
    assert!(
        doubled.is_empty(),
        "two defaults for one flag:\n{}",
        doubled.join("\n")
    );
}

#[test]
fn fsck_help_names_the_root_default_once() {
    let help = help_of(&["fsck"]);
    let root = flags(&help)
        .into_iter()
        .find(|f| f.trim_start().starts_with("--root"))
        .expect("fsck --help lists --root");
    assert_eq!(root.matches("[default:").count(), 1, "{root}");
    assert!(root.contains("./wharf-data"), "{root}");
}

/// What `wharf serve --config` says about a configuration file holding
/// `text`: (stderr, exit code). Nothing is started: the file is refused.
fn serve_with_config(text: &str) -> (String, Option<i32>) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wharf.toml");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(WHARF)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--root")
        .arg(dir.path().join("data"))
        .output()
        .expect("run wharf serve");
    (
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

/// The keys serde names after "unknown field `…`, expected one of" (or
/// "expected `a` or `b`") when `text` holds an unknown key.
fn accepted_keys(text: &str) -> Option<Vec<String>> {
    let (stderr, _) = serve_with_config(text);
    let expected = stderr
        .split("unknown field `zz_not_a_key`, expected ")
        .nth(1)?;
    let list = expected.lines().next()?;
    Some(
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect(),
    )
}

/// The text `serve --help` gives a section: its header line and the lines
/// under it, up to the next header.
fn section_help(help: &str, header: &str) -> Option<String> {
    let mut lines = help
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(header));
    let first = lines.next()?;
    let rest = lines.take_while(|l| !l.trim_start().starts_with('[') && !l.trim().is_empty());
    Some(
        std::iter::once(first)
            .chain(rest)
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

#[test]
fn a_config_error_points_to_a_help_that_lists_every_section_and_key() {
    let (stderr, code) = serve_with_config("zz_not_a_key = 1\n");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.ends_with(
            "\nhint: fix the setting shown above; `wharf serve --help` lists every section and key of wharf.toml\n"
        ),
        "{stderr}"
    );

    let help = help_of(&["serve"]);
    let sections = accepted_keys("zz_not_a_key = 1\n").expect("the top-level keys are named");
    assert!(sections.len() >= 8, "{sections:?}");
    for section in &sections {
        // A table is written [name], an array of tables [[name]].
        let (header, keys) = match accepted_keys(&format!("[{section}]\nzz_not_a_key = 1\n")) {
            Some(keys) => (format!("[{section}]"), keys),
            None => (
                format!("[[{section}]]"),
                accepted_keys(&format!("[[{section}]]\nzz_not_a_key = 1\n"))
                    .unwrap_or_else(|| panic!("the keys of {section} are named")),
            ),
        };
        let text = section_help(&help, &header)
            .unwrap_or_else(|| panic!("serve --help lists {header}:\n{help}"));
        // A section whose kind is chosen by `type = "…"` has keys per kind.
        let mut keys = keys;
        for kind in text.split("type = \"").skip(1) {
            let kind = kind.split('"').next().unwrap_or_default();
            keys.extend(
                accepted_keys(&format!(
                    "[{section}]\ntype = \"{kind}\"\nzz_not_a_key = 1\n"
                ))
                .unwrap_or_else(|| panic!("the keys of {section} of type {kind}")),
            );
        }
        for key in keys {
            // A key holding tables has a header of its own ([[gc.retention]]).
            let listed = text
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|word| word == key)
                || help.contains(&format!("[[{section}.{key}]]"));
            assert!(listed, "serve --help lists {key} under {header}:\n{text}");
        }
    }
    // Tables inside sections.
    for (header, probe) in [
        ("[[gc.retention]]", "[[gc.retention]]\nzz_not_a_key = 1\n"),
        (
            "[[upstream]]",
            "[[upstream]]\nhost = \"a\"\ncredentials = { zz_not_a_key = 1 }\n",
        ),
    ] {
        let keys = accepted_keys(probe).unwrap_or_else(|| panic!("the keys of {probe:?}"));
        let text = section_help(&help, header).expect("listed");
        for key in keys {
            assert!(text.contains(&key), "{key} under {header}:\n{text}");
        }
    }
}
