//! How to build for each platform: `native`, `cross`, `emulate` or `unavailable`, with the reason
//! and the commands that would enable a faster strategy. A pure function of [`Facts`].

use super::{Catalog, Facts, PackageManager, TargetFacts, Toolchain};
use crate::platform::Platform;
use serde::Serialize;
use std::str::FromStr;

/// The language being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    C,
    Go,
    Rust,
}

impl FromStr for Lang {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "c" | "c++" | "cpp" | "cxx" => Ok(Lang::C),
            "go" => Ok(Lang::Go),
            "rust" => Ok(Lang::Rust),
            _ => Err(format!("unknown language {s:?}: use c, go, rust or auto")),
        }
    }
}

impl std::fmt::Display for Lang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lang::C => "c",
            Lang::Go => "go",
            Lang::Rust => "rust",
        })
    }
}

/// How to build, fastest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The host CPU runs the platform's programs: build natively.
    Native,
    /// A cross toolchain for the language is installed.
    Cross,
    /// No cross toolchain, but a registered emulator runs a native build environment.
    Emulate,
    /// Neither.
    Unavailable,
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Strategy::Native => "native",
            Strategy::Cross => "cross",
            Strategy::Emulate => "emulate",
            Strategy::Unavailable => "unavailable",
        })
    }
}

/// A command that enables a faster strategy, and what it enables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fix {
    pub command: String,
    pub enables: Strategy,
    pub why: String,
}

/// The decision for one platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanItem {
    pub platform: Platform,
    pub lang: Lang,
    pub strategy: Strategy,
    pub reason: String,
    /// The toolchain used for `cross` ("gcc (/usr/bin/aarch64-linux-gnu-gcc)", "go", …).
    pub toolchain: Option<String>,
    /// For Rust: the target to build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rust_target: Option<String>,
    /// How the built programs run on this host (natively, emulator path), or why not.
    pub run: String,
    /// Commands that enable a faster strategy, in the order to run them.
    pub fixes: Vec<Fix>,
}

/// Why no plan could be made for a platform.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("rcross has no toolchain data for {0}; add a file for it to {dir}", dir = super::USER_DIR)]
    NoCatalogEntry(Platform),
}

fn install_cmd(p: &Platform) -> String {
    format!("sudo rcross toolchain install {p}")
}

fn go_install(pm: Option<PackageManager>) -> String {
    match pm {
        Some(PackageManager::AptGet) => "sudo apt-get install golang-go".into(),
        Some(PackageManager::Dnf) => "sudo dnf install golang".into(),
        None => "install Go from https://go.dev/dl/".into(),
    }
}

/// Decide for each platform.
pub fn plan(
    facts: &Facts,
    catalog: &Catalog,
    platforms: &[Platform],
    lang: Lang,
) -> Result<Vec<PlanItem>, PlanError> {
    platforms
        .iter()
        .map(|p| plan_one(facts, catalog, *p, lang))
        .collect()
}

/// What the cross toolchain for `lang` is, or why there is none and how to get one.
struct Cross {
    toolchain: Option<String>,
    rust_target: Option<String>,
    missing: String,
    fixes: Vec<Fix>,
}

impl Cross {
    fn installed(toolchain: String, rust_target: Option<String>) -> Cross {
        Cross {
            toolchain: Some(toolchain),
            rust_target,
            missing: String::new(),
            fixes: Vec::new(),
        }
    }
}

/// A command that installs what building with the `cross` strategy needs.
fn cross_fix(command: String, why: String) -> Fix {
    Fix {
        command,
        enables: Strategy::Cross,
        why,
    }
}

fn cross(facts: &Facts, spec: &super::TargetSpec, tf: Option<&TargetFacts>, lang: Lang) -> Cross {
    let toolchains = tf.map(|t| t.toolchains.as_slice()).unwrap_or_default();
    match lang {
        Lang::C => c_cross(spec.platform, toolchains, tf),
        Lang::Go => go_cross(facts, spec),
        Lang::Rust => rust_cross(facts, spec, toolchains),
    }
}

fn c_cross(p: Platform, toolchains: &[Toolchain], tf: Option<&TargetFacts>) -> Cross {
    if let Some(t) = toolchains.first() {
        return Cross::installed(t.describe(), None);
    }
    let mut missing = format!("no C cross compiler for {p} is installed");
    if let Some(why) = tf.and_then(|t| t.incomplete.first()) {
        missing.push_str(&format!(" ({why})"));
    }
    Cross {
        toolchain: None,
        rust_target: None,
        missing,
        fixes: vec![cross_fix(
            install_cmd(&p),
            format!("installs a C/C++ cross compiler for {p}"),
        )],
    }
}

fn go_cross(facts: &Facts, spec: &super::TargetSpec) -> Cross {
    match &facts.go {
        Some(go) => Cross::installed(
            format!(
                "go ({}, GOARCH={}{})",
                go.display(),
                spec.goarch,
                spec.goarm
                    .as_ref()
                    .map(|a| format!(" GOARM={a}"))
                    .unwrap_or_default()
            ),
            None,
        ),
        None => Cross {
            toolchain: None,
            rust_target: None,
            missing: "Go is not installed".into(),
            fixes: vec![cross_fix(
                go_install(facts.package_manager),
                "Go cross-compiles for every platform by itself".into(),
            )],
        },
    }
}

fn rust_cross(facts: &Facts, spec: &super::TargetSpec, toolchains: &[Toolchain]) -> Cross {
    let p = spec.platform;
    // Each Rust target with the toolchain that links for it.
    let linker_for = |t: &str| {
        toolchains
            .iter()
            .find(|c| c.rust_target.as_deref() == Some(t) && c.single_program_linker().is_some())
    };
    let installed = |t: &str| {
        facts
            .rust_targets
            .as_ref()
            .is_some_and(|v| v.iter().any(|x| x == t))
    };
    if let Some(t) = spec
        .rust_targets
        .iter()
        .find(|t| installed(t) && linker_for(t).is_some())
    {
        let l = linker_for(t).map(|c| c.describe()).unwrap_or_default();
        return Cross::installed(format!("rust {t}, linker {l}"), Some(t.clone()));
    }
    // The target to recommend: the first one a linker exists (or can be installed) for.
    let want = spec
        .rust_targets
        .iter()
        .find(|t| linker_for(t).is_some())
        .or_else(|| {
            spec.rust_targets.iter().find(|t| {
                spec.compilers.iter().any(|c| {
                    c.rust_target.as_deref() == Some(t.as_str())
                        && c.kind == super::CompilerKind::Gcc
                })
            })
        })
        .or(spec.rust_targets.first())
        .cloned();
    let Some(want) = want else {
        return Cross {
            toolchain: None,
            rust_target: None,
            missing: format!("Rust has no target for {p}"),
            fixes: Vec::new(),
        };
    };
    let mut fixes = Vec::new();
    let mut missing = Vec::new();
    match &facts.rust_targets {
        None => {
            missing.push("rustup is not installed".to_string());
            fixes.push(cross_fix(
                format!(
                    "curl --proto '=https' -sSf https://sh.rustup.rs | sh -s -- -y --target {want}"
                ),
                "installs Rust with rustup and the target's standard library".into(),
            ));
        }
        Some(_) if !installed(&want) => {
            missing.push(format!("the Rust target {want} is not installed"));
            fixes.push(cross_fix(
                format!("rustup target add {want}"),
                format!("installs the standard library for {want}"),
            ));
        }
        Some(_) => {}
    }
    if linker_for(&want).is_none() {
        missing.push(format!("no linker for {want} is installed"));
        fixes.push(cross_fix(
            rust_linker_install(spec, facts.package_manager, &want),
            format!("installs a cross gcc that links {want}"),
        ));
    }
    Cross {
        toolchain: None,
        rust_target: Some(want),
        missing: missing.join("; "),
        fixes,
    }
}

/// The command that installs a linker for the Rust target `want`. `toolchain install` installs
/// the platform's first compiler; when that is not the one linking this target (arm/v6: zig
/// first, armel gcc links Rust), the linker's packages are named directly.
fn rust_linker_install(
    spec: &super::TargetSpec,
    package_manager: Option<PackageManager>,
    want: &str,
) -> String {
    let gcc = spec
        .compilers
        .iter()
        .find(|c| c.kind == super::CompilerKind::Gcc && c.rust_target.as_deref() == Some(want));
    let first_links = spec.compilers.first().is_some_and(|c| {
        c.rust_target.as_deref() == Some(want) && c.kind == super::CompilerKind::Gcc
    });
    match (gcc, package_manager) {
        (Some(g), Some(PackageManager::AptGet)) if !first_links && !g.debian.is_empty() => {
            format!("sudo apt-get install {}", g.debian.join(" "))
        }
        (Some(g), Some(PackageManager::Dnf)) if !first_links && !g.fedora.is_empty() => {
            format!("sudo dnf install {}", g.fedora.join(" "))
        }
        _ => install_cmd(&spec.platform),
    }
}

fn plan_one(
    facts: &Facts,
    catalog: &Catalog,
    p: Platform,
    lang: Lang,
) -> Result<PlanItem, PlanError> {
    let spec = catalog.get(&p).ok_or(PlanError::NoCatalogEntry(p))?;
    let tf = facts.target(&p);
    let native = facts.native.contains(&p);
    let emulator = tf.and_then(|t| t.emulator.as_ref());
    let handler = tf.and_then(|t| t.handler.as_ref());
    let run = if native {
        "natively".to_string()
    } else if let Some(e) = emulator {
        format!(
            "under {} (rcross run --platform {p} -- PROGRAM)",
            e.display()
        )
    } else {
        format!("cannot run here: no emulator for {p} is installed")
    };
    let c = cross(facts, spec, tf, lang);
    let item = |strategy, reason: String, toolchain, fixes| PlanItem {
        platform: p,
        lang,
        strategy,
        reason,
        toolchain,
        rust_target: c.rust_target.clone(),
        run: run.clone(),
        fixes,
    };

    if p == facts.host {
        return Ok(item(
            Strategy::Native,
            format!("the host is {p}"),
            None,
            Vec::new(),
        ));
    }
    if c.toolchain.is_some() {
        return Ok(item(
            Strategy::Cross,
            format!("a {lang} cross toolchain for {p} is installed"),
            c.toolchain.clone(),
            Vec::new(),
        ));
    }
    if native {
        return Ok(item(
            Strategy::Native,
            format!(
                "the host CPU runs {p} programs: build in a {p} container or chroot ({})",
                c.missing
            ),
            None,
            c.fixes.clone(),
        ));
    }
    if let Some(h) = handler {
        return Ok(item(
            Strategy::Emulate,
            format!(
                "{}; binfmt_misc handler {h} runs {p} programs, so a {p} build environment works under emulation (4-40x slower)",
                c.missing
            ),
            None,
            c.fixes.clone(),
        ));
    }
    // Nothing works: everything that would help, the faster way first.
    let mut fixes = c.fixes.clone();
    let mut why = vec![c.missing.clone()];
    let install = install_cmd(&p);
    if emulator.is_none() {
        why.push(format!("no emulator for {p} is installed"));
        if !fixes.iter().any(|f| f.command == install) {
            fixes.push(Fix {
                command: install,
                enables: Strategy::Emulate,
                why: format!("installs the QEMU emulator for {p}"),
            });
        }
    } else {
        why.push(format!("no binfmt_misc handler for {p} is registered"));
    }
    fixes.push(Fix {
        command: format!("sudo rcross setup --platform {p}"),
        enables: Strategy::Emulate,
        why: format!("registers the emulator so {p} programs and containers run"),
    });
    Ok(item(Strategy::Unavailable, why.join("; "), None, fixes))
}
