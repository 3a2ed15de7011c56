//! Toolchains: which compilers can build for which platform (catalog), what this host has
//! (discovery), how to build for each platform (plan), what to install (install), what a build
//! system needs to know (env and toolchain-file rendering) and how to run foreign programs (run).
//!
//! Discovery goes through [`Host`]; everything after it is a pure function of [`Facts`].

pub mod catalog;
pub mod install;
pub mod linker;
pub mod plan;
pub mod render;
pub mod run;

pub use catalog::{Catalog, CatalogError, CompilerKind, CompilerSpec, TargetSpec};

use crate::binfmt;
use crate::detect::{self, RunMode};
use crate::host::{CommandSpec, Host};
use crate::platform::Platform;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Where user toolchain files live by default.
pub const USER_DIR: &str = "/etc/rcross/toolchains.d";

/// A compiler that is installed and usable, resolved to the commands a build system runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Toolchain {
    pub kind: CompilerKind,
    pub triple: String,
    /// The C compiler: program and the arguments it always needs (zig: `zig cc -target …`).
    pub cc: Vec<String>,
    pub cxx: Option<Vec<String>>,
    pub ar: Option<Vec<String>>,
    pub ranlib: Option<Vec<String>>,
    pub strip: Option<Vec<String>>,
    pub ld: Option<Vec<String>>,
    pub cflags: Vec<String>,
    pub ldflags: Vec<String>,
    /// The target's C library, for `-L` when running dynamically linked programs.
    pub sysroot: Option<PathBuf>,
    /// The Rust target this toolchain links for.
    pub rust_target: Option<String>,
}

impl Toolchain {
    /// A short description: "gcc (/usr/bin/aarch64-linux-gnu-gcc)".
    pub fn describe(&self) -> String {
        format!("{} ({})", self.kind, self.cc.join(" "))
    }

    /// The C compiler as one program path, when it needs no arguments (cargo's `linker` and
    /// CMake's AR take a path only); zig and clang need a wrapper, see [`linker`].
    pub fn single_program_linker(&self) -> Option<&str> {
        match self.cc.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

/// What the host has for one platform.
#[derive(Debug, Clone, Serialize)]
pub struct TargetFacts {
    pub platform: Platform,
    /// Usable compilers in the catalog's order of preference.
    pub toolchains: Vec<Toolchain>,
    /// Compilers found but not usable, with the reason.
    pub incomplete: Vec<String>,
    /// The QEMU user-mode emulator for the platform.
    pub emulator: Option<PathBuf>,
    /// A binfmt_misc handler runs the platform's programs (self-tested).
    pub handler: Option<String>,
}

/// A host package manager rcross can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PackageManager {
    AptGet,
    Dnf,
}

/// Everything about the host that toolchain decisions depend on.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    pub host: Platform,
    /// Platforms whose programs the host CPU runs (its own included).
    pub native: Vec<Platform>,
    pub package_manager: Option<PackageManager>,
    /// `go` on PATH.
    pub go: Option<PathBuf>,
    /// Installed Rust targets; `None` when rustup is not available.
    pub rust_targets: Option<Vec<String>>,
    /// zig, as a program path.
    pub zig: Option<PathBuf>,
    /// `python3 -m pip` works (needed to install zig from PyPI).
    pub pip: bool,
    pub targets: Vec<TargetFacts>,
}

impl Facts {
    pub fn target(&self, p: &Platform) -> Option<&TargetFacts> {
        self.targets.iter().find(|t| t.platform == *p)
    }
}

/// Why host facts could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error(transparent)]
    Detect(#[from] detect::DetectError),
}

/// Why the catalogs or the host facts could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Toolchains(#[from] CatalogError),
    #[error(transparent)]
    Handlers(#[from] binfmt::CatalogError),
    #[error(transparent)]
    Facts(#[from] FactsError),
}

impl LoadError {
    /// The process exit code this failure maps to (see `exit`): a bad catalog file is the
    /// user's input, facts that cannot be gathered are the host's problem.
    pub fn exit_code(&self) -> u8 {
        match self {
            LoadError::Toolchains(_) | LoadError::Handlers(_) => crate::exit::USAGE,
            LoadError::Facts(_) => crate::exit::ENVIRONMENT,
        }
    }
}

/// The catalogs (built in, plus the user files in `toolchain_dir` and `binfmt_dir`) and the
/// host facts `scope` needs: what every toolchain command and every build starts from.
pub fn load(
    host: &dyn Host,
    toolchain_dir: &Path,
    binfmt_dir: &Path,
    binfmt_misc: &Path,
    scope: Scope,
) -> Result<(Catalog, binfmt::Catalog, Facts), LoadError> {
    let catalog = Catalog::load(toolchain_dir)?;
    let handlers = binfmt::Catalog::load(binfmt_dir)?;
    let facts = gather_scoped(host, &catalog, &handlers, binfmt_misc, scope)?;
    Ok((catalog, handlers, facts))
}

/// The language a `lang` setting names: `auto` is what the project in `dir` is written in
/// (Cargo.toml: Rust, go.mod: Go, else C).
pub fn resolve_lang(lang: &str, dir: &Path) -> Result<plan::Lang, String> {
    if lang != "auto" {
        return lang.parse();
    }
    Ok(if dir.join("Cargo.toml").is_file() {
        plan::Lang::Rust
    } else if dir.join("go.mod").is_file() {
        plan::Lang::Go
    } else {
        plan::Lang::C
    })
}

/// The catalog has no entry for a platform.
#[derive(Debug, thiserror::Error)]
#[error("rcross has no toolchain data for {0}")]
pub struct NoToolchainData(pub Platform);

/// The `rcross run --platform P --` command other tools call (this program, by its path).
pub fn runner_command(p: &Platform) -> Vec<String> {
    let me = std::env::current_exe().unwrap_or_else(|_| "rcross".into());
    run::runner(&me, p)
}

/// What `env`, toolchain files and host builds render for platform `p`: its catalog entry, the
/// first installed toolchain, rcross as the runner, and a linker wrapper where cargo needs one
/// (when it cannot be written, `warn` is told why and cargo gets no linker).
pub fn env_input<'a>(
    host: &dyn Host,
    catalog: &'a Catalog,
    facts: &'a Facts,
    p: Platform,
    sysroot: Option<String>,
    warn: &mut dyn FnMut(linker::WrapperError),
) -> Result<render::EnvInput<'a>, NoToolchainData> {
    let spec = catalog.get(&p).ok_or(NoToolchainData(p))?;
    let toolchain = facts.target(&p).and_then(|t| t.toolchains.first());
    let linker_wrapper = linker::wrapper_for(host, toolchain).unwrap_or_else(|e| {
        warn(e);
        None
    });
    Ok(render::EnvInput {
        spec,
        toolchain,
        runner: runner_command(&p),
        sysroot,
        linker_wrapper,
    })
}

/// Find zig: on PATH, or the binary inside PyPI's `ziglang` package.
fn find_zig(host: &dyn Host) -> Option<PathBuf> {
    if let Some(p) = host.find_program("zig") {
        return Some(p);
    }
    let out = host
        .run_capture(&CommandSpec::new("python3").args([
            "-c",
            "import os, ziglang; print(os.path.dirname(ziglang.__file__))",
        ]))
        .ok()
        .filter(|o| o.success())?;
    let p = Path::new(out.stdout.trim()).join("zig");
    host.exists(&p).then_some(p)
}

fn package_manager(host: &dyn Host) -> Option<PackageManager> {
    let os = host
        .read_to_string(Path::new("/etc/os-release"))
        .unwrap_or_default();
    let ids: Vec<String> = os
        .lines()
        .filter_map(|l| l.strip_prefix("ID=").or_else(|| l.strip_prefix("ID_LIKE=")))
        .flat_map(|v| {
            v.trim_matches('"')
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    let has = |id: &str| ids.iter().any(|i| i == id);
    if (has("debian") || has("ubuntu")) && host.find_program("apt-get").is_some() {
        Some(PackageManager::AptGet)
    } else if (has("fedora") || has("rhel")) && host.find_program("dnf").is_some() {
        Some(PackageManager::Dnf)
    } else {
        None
    }
}

fn prog(p: PathBuf) -> String {
    p.to_string_lossy().into_owned()
}

/// Resolve one catalog compiler against the host: `Ok(Some)` usable, `Ok(None)` absent,
/// `Err(reason)` present but unusable.
fn resolve(
    host: &dyn Host,
    spec: &CompilerSpec,
    zig: Option<&Path>,
    host_platform: Platform,
) -> Result<Option<Toolchain>, String> {
    // The host's own compiler finds its C library in /usr/include, not in a cross sysroot.
    let own = host_platform.gnu_triple() == Some(spec.triple.as_str());
    let libc_ok = |s: &Path| {
        host.exists(&s.join("include/stdio.h"))
            || (own && host.exists(Path::new("/usr/include/stdio.h")))
    };
    let base = Toolchain {
        kind: spec.kind,
        triple: spec.triple.clone(),
        cc: Vec::new(),
        cxx: None,
        ar: None,
        ranlib: None,
        strip: None,
        ld: None,
        cflags: spec.cflags.clone(),
        ldflags: spec.ldflags.clone(),
        sysroot: spec.sysroot.clone(),
        rust_target: spec.rust_target.clone(),
    };
    match spec.kind {
        CompilerKind::Gcc => {
            let t = &spec.triple;
            let Some(gcc) = host.find_program(&format!("{t}-gcc")) else {
                return Ok(None);
            };
            if let Some(s) = spec.sysroot.as_deref().filter(|s| !libc_ok(s)) {
                return Err(format!(
                    "{} is installed but the C library for it is missing ({} has no include/stdio.h)",
                    gcc.display(),
                    s.display()
                ));
            }
            let tool = |n: &str| {
                host.find_program(&format!("{t}-{n}"))
                    .map(|p| vec![prog(p)])
            };
            Ok(Some(Toolchain {
                cc: vec![prog(gcc)],
                cxx: tool("g++"),
                ar: tool("ar"),
                ranlib: tool("ranlib"),
                strip: tool("strip"),
                ld: tool("ld"),
                ..base
            }))
        }
        CompilerKind::Clang => {
            let Some(clang) = host.find_program("clang") else {
                return Ok(None);
            };
            if let Some(s) = spec.sysroot.as_deref().filter(|s| !libc_ok(s)) {
                return Err(format!(
                    "clang is installed but has no C library for {} ({} has no include/stdio.h)",
                    spec.triple,
                    s.display()
                ));
            }
            let target = format!("--target={}", spec.triple);
            let llvm = |n: &str| host.find_program(n).map(|p| vec![prog(p)]);
            Ok(Some(Toolchain {
                cc: vec![prog(clang), target.clone()],
                cxx: host.find_program("clang++").map(|p| vec![prog(p), target]),
                ar: llvm("llvm-ar"),
                ranlib: llvm("llvm-ranlib"),
                strip: llvm("llvm-strip"),
                ld: llvm("ld.lld"),
                ..base
            }))
        }
        CompilerKind::Zig => {
            let Some(zig) = zig else {
                return Ok(None);
            };
            let z = zig.to_string_lossy().into_owned();
            let mut target = vec!["-target".to_string(), spec.triple.clone()];
            if let Some(cpu) = &spec.cpu {
                target.push(format!("-mcpu={cpu}"));
            }
            let with = |sub: &str, extra: &[String]| {
                let mut v = vec![z.clone(), sub.to_string()];
                v.extend(extra.iter().cloned());
                Some(v)
            };
            Ok(Some(Toolchain {
                cc: with("cc", &target).unwrap_or_default(),
                cxx: with("c++", &target),
                ar: with("ar", &[]),
                ranlib: with("ranlib", &[]),
                strip: None,
                ld: None,
                // zig links musl statically: nothing to find at run time.
                sysroot: None,
                ..base
            }))
        }
    }
}

/// Which facts a command needs: every platform and every tool (`toolchain list`, `install`), or
/// only some platforms and one language (`plan`, `env`, `build`). Each probe of a helper program
/// (`python3` for zig and pip, `rustup`) costs up to a second on some hosts, so a scoped gather
/// runs only the probes its answer depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope<'a> {
    /// `None`: all platforms of the catalog.
    pub platforms: Option<&'a [Platform]>,
    /// `None`: every language. With a language other than Rust, only the first usable
    /// toolchain of each platform is looked for (the one env and builds use).
    pub lang: Option<plan::Lang>,
    /// Probe outcomes remembered for an unchanged host and binfmt_misc (`None`: run every
    /// probe program).
    pub probe_cache: Option<&'a detect::ProbeCache>,
}

impl Scope<'_> {
    fn full(&self) -> bool {
        self.platforms.is_none() && self.lang.is_none()
    }
}

/// Gather every fact through `host`. Runs the binfmt self-test programs to learn which platforms
/// run natively and which through a registered handler.
pub fn gather(
    host: &dyn Host,
    catalog: &Catalog,
    handlers: &binfmt::Catalog,
    binfmt_misc: &Path,
) -> Result<Facts, FactsError> {
    gather_scoped(host, catalog, handlers, binfmt_misc, Scope::default())
}

/// Gather what `scope` needs (see [`Scope`]).
pub fn gather_scoped(
    host: &dyn Host,
    catalog: &Catalog,
    handlers: &binfmt::Catalog,
    binfmt_misc: &Path,
    scope: Scope,
) -> Result<Facts, FactsError> {
    let host_platform = detect::host_platform(host)?;
    let state = detect::binfmt_state(host, binfmt_misc, handlers);
    // Only the platforms asked about: each test program costs an exec (and an emulator start).
    let runs = match scope.platforms {
        Some(ps) => detect::probe_some_cached(
            host,
            host_platform,
            &state,
            ps.iter().copied(),
            scope.probe_cache,
        ),
        None => detect::probe_platforms_cached(host, host_platform, &state, scope.probe_cache),
    };
    let mut native = vec![host_platform];
    for r in &runs {
        if r.mode == RunMode::Native && !native.contains(&r.platform) {
            native.push(r.platform);
        }
    }
    // zig is looked for the first time a zig toolchain is considered.
    let mut zig: Option<Option<PathBuf>> = if scope.full() {
        Some(find_zig(host))
    } else {
        None
    };
    let rust_targets = if matches!(scope.lang, None | Some(plan::Lang::Rust)) {
        host.run_capture(&CommandSpec::new("rustup").args(["target", "list", "--installed"]))
            .ok()
            .filter(|o| o.success())
            .map(|o| o.stdout.lines().map(|l| l.trim().to_string()).collect())
    } else {
        None
    };
    // pip only matters for installing zig.
    let pip = scope.full()
        && host
            .run_capture(&CommandSpec::new("python3").args(["-m", "pip", "--version"]))
            .is_ok_and(|o| o.success());
    let first_only = matches!(scope.lang, Some(l) if l != plan::Lang::Rust);
    let mut targets = Vec::new();
    for spec in &catalog.targets {
        if scope
            .platforms
            .is_some_and(|ps| !ps.contains(&spec.platform))
        {
            continue;
        }
        let mut toolchains = Vec::new();
        let mut incomplete = Vec::new();
        for c in &spec.compilers {
            if first_only && !toolchains.is_empty() {
                break;
            }
            let zig_path = if c.kind == CompilerKind::Zig {
                zig.get_or_insert_with(|| find_zig(host)).clone()
            } else {
                None
            };
            match resolve(host, c, zig_path.as_deref(), host_platform) {
                Ok(Some(t)) => toolchains.push(t),
                Ok(None) => {}
                Err(why) => incomplete.push(why),
            }
        }
        let emulator = handlers
            .for_platform(&spec.platform)
            .and_then(|h| detect::find_emulator(host, h))
            .map(|e| e.path);
        let handler = runs
            .iter()
            .find(|r| r.platform == spec.platform)
            .and_then(|r| match &r.mode {
                RunMode::Emulated { entry, .. } => Some(entry.clone()),
                _ => None,
            });
        targets.push(TargetFacts {
            platform: spec.platform,
            toolchains,
            incomplete,
            emulator,
            handler,
        });
    }
    Ok(Facts {
        host: host_platform,
        native,
        package_manager: package_manager(host),
        go: host.find_program("go"),
        rust_targets,
        zig: zig.flatten(),
        pip,
        targets,
    })
}

#[cfg(test)]
mod tests;
