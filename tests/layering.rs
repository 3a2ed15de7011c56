//! The layering rules of README.md's "How the code is organised", checked on the source text so
//! that a `use` pointing up fails the test command instead of waiting for a reviewer.
//!
//! Comment lines are left out (a doc comment may name a module above); everything else that
//! names `crate::<module>` counts, whether in a `use` or inline.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The top-level modules of the library.
const MODULES: &[&str] = &[
    "binfmt",
    "cli",
    "commands",
    "detect",
    "dockerfile",
    "elf",
    "engine",
    "exit",
    "host",
    "image",
    "oci",
    "pipeline",
    "platform",
    "registry",
    "runner",
    "setup",
    "tags",
    "toolchain",
    "userdir",
    "walk",
];

/// (module, the modules it must not name), from the README's rules.
const FORBIDDEN: &[(&str, &[&str])] = &[
    // The bottom layer: the door to the kernel and processes.
    (
        "host",
        &[
            "binfmt",
            "cli",
            "commands",
            "detect",
            "elf",
            "engine",
            "image",
            "oci",
            "pipeline",
            "registry",
            "runner",
            "setup",
            "tags",
            "toolchain",
            "userdir",
            "walk",
        ],
    ),
    // Writing images knows nothing of transport or of reading layers.
    (
        "oci",
        &["registry", "pipeline", "engine", "walk", "commands", "cli"],
    ),
    // Reading never calls the writer.
    (
        "walk",
        &["oci", "pipeline", "registry", "engine", "commands", "cli"],
    ),
    // The read model sits below the writer (which re-exports its types) and every source.
    (
        "image",
        &[
            "oci", "walk", "registry", "pipeline", "engine", "commands", "cli",
        ],
    ),
    // The runner contract sits below both of its implementations.
    ("runner", &["pipeline", "engine", "commands", "cli"]),
    ("engine", &["pipeline", "commands", "cli"]),
    (
        "registry",
        &["pipeline", "engine", "walk", "commands", "cli"],
    ),
    (
        "elf",
        &[
            "pipeline", "oci", "registry", "engine", "walk", "image", "commands", "cli",
        ],
    ),
    (
        "platform",
        &["pipeline", "oci", "registry", "engine", "commands", "cli"],
    ),
    // The library takes no clap types and never reaches into the command layer.
    ("pipeline", &["commands", "cli"]),
    ("toolchain", &["pipeline", "commands", "cli"]),
    ("setup", &["pipeline", "commands", "cli"]),
    // The Dockerfile front end is pure (text + options → a build graph): it reads the platform
    // table and the read model's platform normalisation, and nothing that runs, fetches or
    // writes.
    (
        "dockerfile",
        &[
            "pipeline",
            "commands",
            "cli",
            "engine",
            "registry",
            "runner",
            "oci",
            "walk",
            "host",
            "binfmt",
            "setup",
            "toolchain",
            "detect",
            "elf",
            "tags",
            "userdir",
        ],
    ),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The files of a top-level module: `src/<m>.rs` and everything under `src/<m>/`.
fn files_of(module: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let file = src().join(format!("{module}.rs"));
    if file.is_file() {
        files.push(file);
    }
    let dir = src().join(module);
    if dir.is_dir() {
        rust_files(&dir, &mut files);
    }
    assert!(!files.is_empty(), "module {module} has no files under src/");
    files
}

/// The lines that are code (not `//` comments), numbered from 1.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l.to_string()))
        .collect()
}

/// The `crate::<module>` names on a line (also inside `use crate::{a, b::C}` groups).
fn named_modules(line: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = Vec::new();
    for (at, _) in line.match_indices("crate::") {
        let rest = &line[at + "crate::".len()..];
        match rest.strip_prefix('{') {
            // A group: each top-level item's first name.
            Some(group) => {
                let mut depth = 0;
                let mut start = 0;
                for (k, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            names.push(ident(&group[start..k]));
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            names.push(ident(&group[start..k]));
                            start = k + 1;
                        }
                        _ => {}
                    }
                }
            }
            None => names.push(ident(rest)),
        }
    }
    names
        .into_iter()
        .filter(|n| MODULES.contains(&n.as_str()))
        .collect()
}

#[test]
fn modules_import_only_the_layers_below_them() {
    let mut violations = Vec::new();
    let mut checked = 0;
    for (module, forbidden) in FORBIDDEN {
        for file in files_of(module) {
            checked += 1;
            for (n, line) in code_lines(&file) {
                for named in named_modules(&line) {
                    if forbidden.contains(&named.as_str()) {
                        violations.push(format!(
                            "{}:{n}: {module} must not use crate::{named}: {}",
                            file.strip_prefix(src()).unwrap().display(),
                            line.trim()
                        ));
                    }
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} files checked");
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn no_command_imports_a_sibling_command() {
    let dir = src().join("commands");
    let mut siblings: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
        .filter(|s| s != "mod")
        .collect();
    siblings.sort();
    assert!(siblings.len() > 10, "{siblings:?}");
    let mut violations = Vec::new();
    for name in &siblings {
        let file = dir.join(format!("{name}.rs"));
        for (n, line) in code_lines(&file) {
            for other in &siblings {
                for pattern in [
                    format!("super::{other}::"),
                    format!("crate::commands::{other}"),
                    format!("super::{{{other}"),
                ] {
                    if line.contains(&pattern) {
                        violations.push(format!("commands/{name}.rs:{n}: {}", line.trim()));
                    }
                }
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn only_the_command_layer_prints() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(src()).unwrap();
        if rel.starts_with("commands") || rel == Path::new("main.rs") {
            continue;
        }
        // Unit tests may print what they like.
        let text = fs::read_to_string(file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            // (`print!(` is also found inside `eprint!(` and `println!(`: one report a line.)
            if ["print!(", "println!(", "dbg!("]
                .iter()
                .any(|m| line.contains(m))
            {
                violations.push(format!("{}:{}: {line}", rel.display(), n + 1));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_checker_sees_what_it_looks_for() {
    // The rules above are only as good as these readers of the source text.
    assert_eq!(
        named_modules("use crate::registry::{Client, Reference};"),
        BTreeSet::from(["registry".to_string()])
    );
    assert_eq!(
        named_modules("use crate::{engine, oci::Layer};"),
        BTreeSet::from(["engine".to_string(), "oci".to_string()])
    );
    assert_eq!(
        named_modules("    let e = crate::engine::Endpoint::from_env();"),
        BTreeSet::from(["engine".to_string()])
    );
    assert_eq!(
        named_modules("use crate::{self_test, image::{ImageSource, model::Descriptor}, walk};"),
        BTreeSet::from(["image".to_string(), "walk".to_string()])
    );
    assert!(named_modules("use std::io;").is_empty());
}
