use crate::binfmt;
use crate::cli::{FileFormatArg, ToolchainArgs, ToolchainCommand, ToolchainPaths};
use crate::exit::{self, Failure};
use crate::host::linux::LinuxHost;
use crate::host::Host;
use crate::platform::Platform;
use crate::toolchain::install::{self, ComponentState, InstallError};
use crate::toolchain::render::{self, FileFormat};
use crate::toolchain::{self, Catalog, Facts};
use serde::Serialize;

/// The catalogs and host facts (every platform, every tool) the toolchain commands start from.
fn load(
    host: &dyn Host,
    paths: &ToolchainPaths,
) -> exit::Result<(Catalog, binfmt::Catalog, Facts)> {
    super::load_toolchains(host, paths, toolchain::Scope::default())
}

pub fn run(args: ToolchainArgs, json: bool) -> exit::Result<u8> {
    match args.command {
        ToolchainCommand::List(a) => list(&a.paths, json),
        ToolchainCommand::Install(a) => install(&a.platforms, a.dry_run, &a.paths, json),
        ToolchainCommand::File(a) => {
            let host = LinuxHost;
            let p: Platform = a.platform.parse().map_err(Failure::usage)?;
            let (catalog, _, facts) = load(&host, &a.paths)?;
            let sysroot = a.sysroot.map(|s| s.to_string_lossy().into_owned());
            let input = super::env_input(&host, &catalog, &facts, p, sysroot)?;
            let format = match a.format {
                FileFormatArg::Cmake => FileFormat::Cmake,
                FileFormatArg::Meson => FileFormat::Meson,
                FileFormatArg::Cargo => FileFormat::Cargo,
            };
            let text = render::render_file(&input, format).map_err(Failure::env)?;
            print!("{text}");
            Ok(exit::OK)
        }
    }
}

#[derive(Debug, Serialize)]
struct ListRow<'a> {
    platform: Platform,
    native: bool,
    toolchains: &'a [toolchain::Toolchain],
    incomplete: &'a [String],
    rust_targets_installed: Vec<&'a str>,
    go: bool,
    emulator: Option<&'a std::path::Path>,
    handler: Option<&'a str>,
}

fn list(paths: &ToolchainPaths, json: bool) -> exit::Result<u8> {
    let host = LinuxHost;
    let (catalog, _, facts) = load(&host, paths)?;
    let rows: Vec<ListRow> = catalog
        .targets
        .iter()
        .filter_map(|spec| {
            let tf = facts.target(&spec.platform)?;
            Some(ListRow {
                platform: spec.platform,
                native: facts.native.contains(&spec.platform),
                toolchains: &tf.toolchains,
                incomplete: &tf.incomplete,
                rust_targets_installed: spec
                    .rust_targets
                    .iter()
                    .filter(|t| facts.rust_targets.as_ref().is_some_and(|v| v.contains(t)))
                    .map(String::as_str)
                    .collect(),
                go: facts.go.is_some(),
                emulator: tf.emulator.as_deref(),
                handler: tf.handler.as_deref(),
            })
        })
        .collect();
    if json {
        #[derive(Serialize)]
        struct Report<'a> {
            host: Platform,
            go: Option<&'a std::path::Path>,
            zig: Option<&'a std::path::Path>,
            rustup: bool,
            platforms: Vec<ListRow<'a>>,
        }
        super::print_json(&Report {
            host: facts.host,
            go: facts.go.as_deref(),
            zig: facts.zig.as_deref(),
            rustup: facts.rust_targets.is_some(),
            platforms: rows,
        })?;
        return Ok(exit::OK);
    }
    let opt = |p: Option<&std::path::Path>| {
        p.map(|p| p.display().to_string())
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "host {}   go: {}   zig: {}   rustup: {}",
        facts.host,
        opt(facts.go.as_deref()),
        opt(facts.zig.as_deref()),
        if facts.rust_targets.is_some() {
            "yes"
        } else {
            "no"
        }
    );
    let dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
    let mut table = vec![[
        "PLATFORM".to_string(),
        "NATIVE".into(),
        "C/C++".into(),
        "RUST TARGETS".into(),
        "EMULATOR".into(),
        "HANDLER".into(),
    ]];
    for r in &rows {
        let comps: Vec<String> = r.toolchains.iter().map(|t| t.kind.to_string()).collect();
        table.push([
            r.platform.to_string(),
            if r.native { "yes" } else { "no" }.into(),
            dash(comps.join(",")),
            dash(r.rust_targets_installed.join(",")),
            r.emulator
                .and_then(|e| e.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "-".into()),
            r.handler.unwrap_or("-").to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            table
                .iter()
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (n, row) in table.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
        if n > 0 {
            for i in rows[n - 1].incomplete {
                println!("  note: {i}");
            }
        }
    }
    Ok(exit::OK)
}

fn describe(p: &ComponentState) -> String {
    match p {
        ComponentState::AlreadyInstalled(w) => format!("already installed: {w}"),
        ComponentState::Install(w) => format!("install {w}"),
        ComponentState::NotNeeded(w) => format!("not needed: {w}"),
    }
}

fn install(
    platforms: &[String],
    dry_run: bool,
    paths: &ToolchainPaths,
    json: bool,
) -> exit::Result<u8> {
    let host = LinuxHost;
    let platforms = super::parse_platforms(platforms)?;
    let (catalog, _, facts) = load(&host, paths)?;
    let plan = install::plan(&facts, &catalog, &platforms).map_err(|e| match e {
        InstallError::NoCatalogEntry(_) => Failure::usage(e),
        _ => Failure::env(e),
    })?;
    if json {
        super::print_json(&plan)?;
    } else {
        for i in &plan.items {
            println!("{}", i.platform);
            println!("  compiler: {}", describe(&i.compiler));
            println!("  emulator: {}", describe(&i.emulator));
        }
    }
    if plan.commands.is_empty() {
        if !json {
            println!("nothing to install: everything is already installed");
        }
        return Ok(exit::OK);
    }
    if dry_run {
        if !json {
            for c in &plan.commands {
                println!("{}", c.display());
            }
        }
        return Ok(exit::OK);
    }
    if host.effective_uid() != 0 {
        let names: Vec<String> = platforms.iter().map(|p| p.to_string()).collect();
        return Err(Failure::env(InstallError::NotRoot(names.join(" "))));
    }
    for c in &plan.commands {
        eprintln!("rcross: running {}", c.display());
    }
    install::apply(&host, &plan).map_err(Failure::env)?;
    // Check the result rather than trust the package manager's exit status.
    let (_, _, after) = load(&host, paths)?;
    let mut missing = Vec::new();
    for p in &platforms {
        let t = after.target(p);
        if *p != after.host && t.is_none_or(|t| t.toolchains.is_empty()) {
            missing.push(format!("{p}: no usable C compiler found after installing"));
        }
        if !after.native.contains(p) && t.is_none_or(|t| t.emulator.is_none()) {
            missing.push(format!("{p}: no emulator found after installing"));
        }
    }
    if !missing.is_empty() {
        return Err(Failure::env(anyhow::anyhow!(
            "the packages installed, but {}; see `rcross toolchain list`",
            missing.join("; ")
        )));
    }
    eprintln!(
        "rcross: installed; `rcross plan --platform {}` shows how each platform builds now",
        platforms
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    Ok(exit::OK)
}
