//! What a build system needs to know about a target: environment variables (sh, JSON, GitHub
//! Actions, make) and toolchain files (CMake, Meson, Cargo). Pure string building; every format
//! quotes values so that whatever the catalog or the user's paths hold comes through literally.

use super::{CompilerKind, TargetSpec, Toolchain};
use crate::host::sh_quote;
use std::collections::BTreeMap;

/// An environment format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvFormat {
    /// `export NAME='value'` lines, safe for `eval`.
    Sh,
    Json,
    /// `$GITHUB_ENV` lines (`NAME=value`, or a heredoc for multi-line values).
    Github,
    /// GNU make `export NAME := value` lines.
    Make,
}

/// A toolchain-file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Cmake,
    Meson,
    Cargo,
}

/// Why a value cannot be written in a format.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error(
        "{name}={value:?} cannot be written as a make variable ({why}); use --format sh or json"
    )]
    Make {
        name: String,
        value: String,
        why: &'static str,
    },
    #[error("no C compiler for {0} is installed, so there is nothing to write into a {1} toolchain file; run `sudo rcross toolchain install {0}`")]
    NoCompiler(crate::platform::Platform, &'static str),
    #[error("no Rust target for {0} is known to rcross")]
    NoRustTarget(crate::platform::Platform),
    #[error("cannot encode the toolchain file: {0}")]
    Toml(String),
}

/// What to render the environment from.
#[derive(Debug, Clone)]
pub struct EnvInput<'a> {
    pub spec: &'a TargetSpec,
    /// The C toolchain to use, if one is installed.
    pub toolchain: Option<&'a Toolchain>,
    /// The command that runs a target program (`rcross run --platform P --`), for cargo's
    /// runner, CMake's emulator and Meson's exe_wrapper.
    pub runner: Vec<String>,
    /// The sysroot for dynamically linked programs, overriding the toolchain's.
    pub sysroot: Option<String>,
    /// A one-program linker for cargo when the compiler needs arguments (see
    /// [`super::linker`]).
    pub linker_wrapper: Option<String>,
}

impl EnvInput<'_> {
    /// What cargo gets as `linker` for the Rust target `rt`.
    fn linker(&self, rt: &str) -> Option<String> {
        let t = self
            .toolchain
            .filter(|t| t.rust_target.as_deref() == Some(rt))?;
        t.single_program_linker()
            .map(str::to_string)
            .or_else(|| self.linker_wrapper.clone())
    }

    /// The Rust target: the one the toolchain links for, else the catalog's first.
    pub fn rust_target(&self) -> Option<&str> {
        self.toolchain
            .and_then(|t| t.rust_target.as_deref())
            .filter(|t| self.spec.rust_targets.iter().any(|x| x == t))
            .or(self.spec.rust_targets.first().map(String::as_str))
    }

    fn sysroot(&self) -> Option<String> {
        self.sysroot.clone().or_else(|| {
            self.toolchain
                .and_then(|t| t.sysroot.as_ref())
                .map(|s| s.to_string_lossy().into_owned())
        })
    }
}

fn words(v: &[String]) -> String {
    v.join(" ")
}

/// The environment variables, in a stable order.
pub fn env_vars(input: &EnvInput) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, val: String| v.push((k.to_string(), val));
    let spec = input.spec;
    set("RCROSS_PLATFORM", spec.platform.to_string());
    let rust = input.rust_target();
    if let Some(t) = input.toolchain {
        set("CC", words(&t.cc));
        for (k, tool) in [
            ("CXX", &t.cxx),
            ("AR", &t.ar),
            ("RANLIB", &t.ranlib),
            ("STRIP", &t.strip),
            ("LD", &t.ld),
        ] {
            if let Some(tool) = tool {
                set(k, words(tool));
            }
        }
        // Only when the platform needs flags: an empty export would wipe the user's own.
        if !t.cflags.is_empty() {
            set("CFLAGS", words(&t.cflags));
            set("CXXFLAGS", words(&t.cflags));
        }
        if !t.ldflags.is_empty() {
            set("LDFLAGS", words(&t.ldflags));
        }
        match t.kind {
            // zig brings only its own libc: no target libraries to find, and the host's must
            // not be found instead.
            CompilerKind::Zig => set("PKG_CONFIG_LIBDIR", String::new()),
            _ => {
                set(
                    "PKG_CONFIG_LIBDIR",
                    format!("/usr/lib/{0}/pkgconfig:/usr/share/pkgconfig", t.triple),
                );
                set("PKG_CONFIG_SYSROOT_DIR", "/".to_string());
            }
        }
        set("PKG_CONFIG_ALLOW_CROSS", "1".to_string());
        if let Some(rt) = rust {
            let lower = rt.replace('-', "_");
            set(&format!("CC_{lower}"), words(&t.cc));
            if let Some(cxx) = &t.cxx {
                set(&format!("CXX_{lower}"), words(cxx));
            }
            if let Some(ar) = &t.ar {
                set(&format!("AR_{lower}"), words(ar));
            }
        }
    }
    if let Some(rt) = rust {
        set("CARGO_BUILD_TARGET", rt.to_string());
        let upper = rt.replace(['-', '.'], "_").to_ascii_uppercase();
        if let Some(l) = input.linker(rt) {
            set(&format!("CARGO_TARGET_{upper}_LINKER"), l);
        }
        set(
            &format!("CARGO_TARGET_{upper}_RUNNER"),
            words(&input.runner),
        );
    }
    set("GOOS", "linux".to_string());
    set("GOARCH", spec.goarch.clone());
    if let Some(a) = &spec.goarm {
        set("GOARM", a.clone());
    }
    set("CGO_ENABLED", "0".to_string());
    if let Some(s) = input.sysroot() {
        set("QEMU_LD_PREFIX", s);
    }
    v
}

/// Render environment variables in a format.
pub fn render_env(vars: &[(String, String)], format: EnvFormat) -> Result<String, RenderError> {
    let mut out = String::new();
    match format {
        EnvFormat::Sh => {
            for (k, v) in vars {
                out.push_str(&format!("export {k}={}\n", sh_quote(v)));
            }
        }
        EnvFormat::Json => {
            let map: BTreeMap<&str, &str> =
                vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            out =
                serde_json::to_string_pretty(&map).map_err(|e| RenderError::Toml(e.to_string()))?;
            out.push('\n');
        }
        EnvFormat::Github => {
            for (k, v) in vars {
                if v.contains(['\n', '\r']) {
                    let mut delim = "RCROSS_EOF".to_string();
                    while v.contains(&delim) {
                        delim.push('_');
                    }
                    out.push_str(&format!("{k}<<{delim}\n{v}\n{delim}\n"));
                } else {
                    out.push_str(&format!("{k}={v}\n"));
                }
            }
        }
        EnvFormat::Make => {
            for (k, v) in vars {
                let bad = |why| RenderError::Make {
                    name: k.clone(),
                    value: v.clone(),
                    why,
                };
                if v.contains(['\n', '\r']) {
                    return Err(bad("it holds a line break"));
                }
                if v.ends_with('\\') {
                    return Err(bad(
                        "it ends with a backslash, which make reads as a line continuation",
                    ));
                }
                if v.starts_with([' ', '\t']) {
                    return Err(bad("make strips leading blanks"));
                }
                let esc = v.replace('$', "$$").replace('#', "\\#");
                out.push_str(&format!("export {k} := {esc}\n"));
            }
        }
    }
    Ok(out)
}

/// A CMake quoted argument.
fn cmake_quote(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '$' => o.push_str("\\$"),
            ';' => o.push_str("\\;"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            _ => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A Meson string literal.
fn meson_quote(s: &str) -> String {
    let mut o = String::from("'");
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\'' => o.push_str("\\'"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            _ => o.push(c),
        }
    }
    o.push('\'');
    o
}

fn meson_array(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter()
            .map(|s| meson_quote(s))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Render a toolchain file.
pub fn render_file(input: &EnvInput, format: FileFormat) -> Result<String, RenderError> {
    let spec = input.spec;
    let p = spec.platform;
    match format {
        FileFormat::Cargo => {
            let rt = input.rust_target().ok_or(RenderError::NoRustTarget(p))?;
            let mut target = toml::Table::new();
            if let Some(l) = input.linker(rt) {
                target.insert("linker".into(), toml::Value::String(l));
            }
            target.insert(
                "runner".into(),
                toml::Value::Array(
                    input
                        .runner
                        .iter()
                        .cloned()
                        .map(toml::Value::String)
                        .collect(),
                ),
            );
            let mut targets = toml::Table::new();
            targets.insert(rt.to_string(), toml::Value::Table(target));
            let mut build = toml::Table::new();
            build.insert("target".into(), toml::Value::String(rt.to_string()));
            let mut root = toml::Table::new();
            root.insert("build".into(), toml::Value::Table(build));
            root.insert("target".into(), toml::Value::Table(targets));
            let body = toml::to_string(&root).map_err(|e| RenderError::Toml(e.to_string()))?;
            Ok(format!(
                "# .cargo/config.toml fragment for {p}, written by rcross.\n{body}"
            ))
        }
        FileFormat::Cmake => {
            let t = input.toolchain.ok_or(RenderError::NoCompiler(p, "CMake"))?;
            let list = |v: &[String]| {
                v.iter()
                    .map(|s| cmake_quote(s))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let mut o = format!("# CMake toolchain file for {p}, written by rcross.\n");
            o.push_str("set(CMAKE_SYSTEM_NAME Linux)\n");
            o.push_str(&format!(
                "set(CMAKE_SYSTEM_PROCESSOR {})\n",
                cmake_quote(p.uname_machine())
            ));
            // A list: the compiler program, then arguments it always needs (zig cc -target …).
            o.push_str(&format!("set(CMAKE_C_COMPILER {})\n", list(&t.cc)));
            if let Some(cxx) = &t.cxx {
                o.push_str(&format!("set(CMAKE_CXX_COMPILER {})\n", list(cxx)));
            }
            for (var, tool) in [
                ("CMAKE_AR", &t.ar),
                ("CMAKE_RANLIB", &t.ranlib),
                ("CMAKE_STRIP", &t.strip),
            ] {
                // CMake takes these as single programs only.
                if let Some([one]) = tool.as_deref() {
                    o.push_str(&format!(
                        "set({var} {} CACHE FILEPATH \"\")\n",
                        cmake_quote(one)
                    ));
                }
            }
            let flags = words(&t.cflags);
            o.push_str(&format!(
                "set(CMAKE_C_FLAGS_INIT {})\n",
                cmake_quote(&flags)
            ));
            o.push_str(&format!(
                "set(CMAKE_CXX_FLAGS_INIT {})\n",
                cmake_quote(&flags)
            ));
            let ld = words(&t.ldflags);
            o.push_str(&format!(
                "set(CMAKE_EXE_LINKER_FLAGS_INIT {})\n",
                cmake_quote(&ld)
            ));
            if let Some(s) = input.sysroot() {
                // The Debian cross compilers find their C library themselves; CMAKE_SYSROOT
                // would pass --sysroot and hide it. Search the sysroot for libraries instead.
                o.push_str(&format!("set(CMAKE_FIND_ROOT_PATH {})\n", cmake_quote(&s)));
            }
            o.push_str("set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)\n");
            o.push_str("set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)\n");
            o.push_str("set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)\n");
            o.push_str("set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)\n");
            o.push_str("# try_run, add_test and ctest run target programs through the emulator.\n");
            o.push_str(&format!(
                "set(CMAKE_CROSSCOMPILING_EMULATOR {})\n",
                list(&input.runner)
            ));
            Ok(o)
        }
        FileFormat::Meson => {
            let t = input.toolchain.ok_or(RenderError::NoCompiler(p, "Meson"))?;
            let mut o = format!("# Meson cross file for {p}, written by rcross.\n[binaries]\n");
            o.push_str(&format!("c = {}\n", meson_array(&t.cc)));
            if let Some(cxx) = &t.cxx {
                o.push_str(&format!("cpp = {}\n", meson_array(cxx)));
            }
            for (k, tool) in [("ar", &t.ar), ("ranlib", &t.ranlib), ("strip", &t.strip)] {
                if let Some(tool) = tool {
                    o.push_str(&format!("{k} = {}\n", meson_array(tool)));
                }
            }
            o.push_str("pkg-config = 'pkg-config'\n");
            o.push_str(&format!("exe_wrapper = {}\n", meson_array(&input.runner)));
            o.push_str("\n[built-in options]\n");
            o.push_str(&format!("c_args = {}\n", meson_array(&t.cflags)));
            o.push_str(&format!("cpp_args = {}\n", meson_array(&t.cflags)));
            o.push_str(&format!("c_link_args = {}\n", meson_array(&t.ldflags)));
            o.push_str(&format!("cpp_link_args = {}\n", meson_array(&t.ldflags)));
            o.push_str("\n[properties]\n");
            if t.kind == CompilerKind::Zig {
                o.push_str("pkg_config_libdir = ''\n");
            } else {
                o.push_str(&format!(
                    "pkg_config_libdir = {}\n",
                    meson_quote(&format!(
                        "/usr/lib/{0}/pkgconfig:/usr/share/pkgconfig",
                        t.triple
                    ))
                ));
            }
            o.push_str("\n[host_machine]\nsystem = 'linux'\n");
            o.push_str(&format!(
                "cpu_family = {}\ncpu = {}\nendian = {}\n",
                meson_quote(&spec.meson_cpu_family),
                meson_quote(p.uname_machine()),
                meson_quote(if p.info().big_endian { "big" } else { "little" })
            ));
            Ok(o)
        }
    }
}
