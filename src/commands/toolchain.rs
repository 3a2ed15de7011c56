use crate::binfmt;
use crate::cli::{FileFormatArg, ToolchainArgs, ToolchainCommand, ToolchainPaths};
use crate::exit::{self, Failure};
use crate::host::linux::LinuxHost;
use crate::host::Host;
use crate::platform::{self, Platform};
use crate::toolchain::install::{self, InstallError, Part};
use crate::toolchain::render::{self, EnvInput, FileFormat};
use crate::toolchain::{self, Catalog, Facts};
use serde::Serialize;

/// What `env`, toolchain files and builds render for platform `p`: its catalog entry, the first
/// installed toolchain, rcross as the runner, and a linker wrapper where cargo needs one.
pub(crate) fn env_input<'a>(
    host: &dyn Host,
    catalog: &'a Catalog,
    facts: &'a Facts,
    p: Platform,
    sysroot: Option<String>,
) -> exit::Result<EnvInput<'a>> {
    let spec = catalog
        .get(&p)
        .ok_or_else(|| Failure::usage(anyhow::anyhow!("rcross has no toolchain data for {p}")))?;
    let toolchain = facts.target(&p).and_then(|t| t.toolchains.first());
    Ok(EnvInput {
        spec,
        toolchain,
        runner: runner(&p),
        sysroot,
        linker_wrapper: linker_wrapper(host, toolchain),
    })
}

/// The catalogs and host facts every toolchain command starts from.
pub(crate) fn load(
    host: &dyn Host,
    paths: &ToolchainPaths,
) -> exit::Result<(Catalog, binfmt::Catalog, Facts)> {
    load_scoped(host, paths, toolchain::Scope::default())
}

/// [`load`], probing only what `scope` needs (see [`toolchain::Scope`]).
pub(crate) fn load_scoped(
    host: &dyn Host,
    paths: &ToolchainPaths,
    scope: toolchain::Scope,
) -> exit::Result<(Catalog, binfmt::Catalog, Facts)> {
    let catalog = Catalog::load(&paths.toolchain_dir).map_err(Failure::usage)?;
    let handlers = binfmt::Catalog::load(&paths.host.binfmt_dir).map_err(Failure::usage)?;
    let facts = toolchain::gather_scoped(host, &catalog, &handlers, &paths.host.binfmt_misc, scope)
        .map_err(Failure::env)?;
    Ok((catalog, handlers, facts))
}

pub(crate) fn parse_platforms(args: &[String]) -> exit::Result<Vec<Platform>> {
    let mut out: Vec<Platform> = Vec::new();
    for a in args {
        for p in platform::parse_list(a).map_err(Failure::usage)? {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// The `rcross run --platform P --` command other tools call.
pub(crate) fn runner(p: &Platform) -> Vec<String> {
    let me = std::env::current_exe().unwrap_or_else(|_| "rcross".into());
    toolchain::run::runner(&me, p)
}

/// The cargo linker wrapper for a compiler that needs arguments (zig, clang), written into the
/// user's cache directory; a warning and no wrapper when that fails.
pub(crate) fn linker_wrapper(
    host: &dyn Host,
    toolchain: Option<&toolchain::Toolchain>,
) -> Option<String> {
    let t = toolchain?;
    toolchain::linker::wrapper_script(t)?;
    let xdg = std::env::var_os("XDG_CACHE_HOME").map(std::path::PathBuf::from);
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let Some(dir) = toolchain::linker::cache_dir(xdg.as_deref(), home.as_deref()) else {
        eprintln!("rcross: warning: neither XDG_CACHE_HOME nor HOME is set, so no linker wrapper for {} can be written; cargo gets no linker", t.triple);
        return None;
    };
    match toolchain::linker::ensure(host, t, &dir) {
        Ok(p) => p.map(|p| p.to_string_lossy().into_owned()),
        Err(e) => {
            eprintln!(
                "rcross: warning: cannot write the linker wrapper in {}: {e}; cargo gets no linker",
                dir.display()
            );
            None
        }
    }
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
            let input = env_input(&host, &catalog, &facts, p, sysroot)?;
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

fn describe(p: &Part) -> String {
    match p {
        Part::AlreadyInstalled(w) => format!("already installed: {w}"),
        Part::Install(w) => format!("install {w}"),
        Part::NotNeeded(w) => format!("not needed: {w}"),
    }
}

fn install(
    platforms: &[String],
    dry_run: bool,
    paths: &ToolchainPaths,
    json: bool,
) -> exit::Result<u8> {
    let host = LinuxHost;
    let platforms = parse_platforms(platforms)?;
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
