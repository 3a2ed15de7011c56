//! The toolchain catalog: per target platform, the compilers that can build for it (in order of
//! preference), their triples, flags and packages, the Rust and Go target names and the CPU the
//! emulator should pretend to be.
//!
//! Built-in entries are the files in the crate's `toolchains/` directory, compiled in by
//! `build.rs`; a user directory can add platforms or replace built-in ones by `platform`.

use crate::platform::Platform;
use crate::userdir::{DefinitionError, DefinitionFiles};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/toolchains_builtin.rs"));

/// What kind of compiler driver a toolchain is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum CompilerKind {
    /// A GNU cross compiler named `<triple>-gcc`.
    Gcc,
    /// `clang --target=<triple>` with a sysroot holding the target's C library.
    Clang,
    /// `zig cc -target <triple>`, which brings its own C libraries.
    Zig,
}

impl std::fmt::Display for CompilerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CompilerKind::Gcc => "gcc",
            CompilerKind::Clang => "clang",
            CompilerKind::Zig => "zig",
        })
    }
}

/// One way to compile C/C++ for a platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompilerSpec {
    pub kind: CompilerKind,
    /// gcc: program prefix without the trailing '-'; clang: `--target`; zig: `-target`.
    pub triple: String,
    /// Directory holding the target's C library (gcc, clang); also the emulator's `-L` default.
    #[serde(default)]
    pub sysroot: Option<PathBuf>,
    /// zig only: `-mcpu=` value.
    #[serde(default)]
    pub cpu: Option<String>,
    /// Flags every compile needs to produce code for exactly this platform variant.
    #[serde(default)]
    pub cflags: Vec<String>,
    /// Flags every link needs (e.g. `-static` when the target system lacks this C library).
    #[serde(default)]
    pub ldflags: Vec<String>,
    /// The Rust target this compiler can link for.
    #[serde(default)]
    pub rust_target: Option<String>,
    /// Packages providing it on Debian/Ubuntu (apt-get).
    #[serde(default)]
    pub debian: Vec<String>,
    /// Packages providing it on Fedora (dnf).
    #[serde(default)]
    pub fedora: Vec<String>,
    /// Python packages providing it (pip), for zig.
    #[serde(default)]
    pub pip: Vec<String>,
}

/// Packages per package manager.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Packages {
    #[serde(default)]
    pub debian: Vec<String>,
    #[serde(default)]
    pub fedora: Vec<String>,
}

/// Everything rcross knows about building for one platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetSpec {
    pub platform: Platform,
    /// Meson's `cpu_family`.
    pub meson_cpu_family: String,
    /// QEMU `-cpu` for `rcross run`; `None` = QEMU's default (it accepts every extension).
    pub qemu_cpu: Option<String>,
    /// Rust targets, preferred first.
    pub rust_targets: Vec<String>,
    pub goarch: String,
    pub goarm: Option<String>,
    pub compilers: Vec<CompilerSpec>,
    pub emulator_packages: Packages,
    /// `"builtin"` or the user file that defined it.
    pub source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    platform: String,
    meson_cpu_family: String,
    #[serde(default)]
    qemu_cpu: Option<String>,
    #[serde(default)]
    rust_targets: Vec<String>,
    goarch: String,
    #[serde(default)]
    goarm: Option<String>,
    #[serde(default)]
    compilers: Vec<CompilerSpec>,
    #[serde(default)]
    emulator_packages: Packages,
}

/// Why the toolchain catalog could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    File(#[from] DefinitionError),
    #[error("platform {platform} is described by both {first} and {second}; remove one of them (a user file replaces the built-in file of the same platform, but two files in one place may not)")]
    Duplicate {
        platform: Platform,
        first: String,
        second: String,
    },
}

/// All known target platforms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    pub targets: Vec<TargetSpec>,
}

impl Catalog {
    /// The entries compiled into rcross.
    pub fn builtin() -> Result<Catalog, CatalogError> {
        Ok(Catalog {
            targets: TARGET_FILES.merge(None)?,
        })
    }

    /// The built-in entries, then every `*.toml` in `user_dir` (sorted by name): a file for a
    /// platform that has a built-in entry replaces it. A missing directory adds nothing.
    pub fn load(user_dir: &Path) -> Result<Catalog, CatalogError> {
        Ok(Catalog {
            targets: TARGET_FILES.merge(Some(user_dir))?,
        })
    }

    pub fn get(&self, p: &Platform) -> Option<&TargetSpec> {
        self.targets.iter().find(|t| t.platform == *p)
    }
}

/// Toolchain files: built in, or in the user's directory, one entry per `platform`.
const TARGET_FILES: DefinitionFiles<TargetSpec, Platform, CatalogError> = DefinitionFiles {
    what: "toolchain",
    example: "toolchains/arm64.toml",
    builtin: BUILTIN_FILES,
    parse: parse_target,
    key: |t| t.platform,
    duplicate: |t, first, second| CatalogError::Duplicate {
        platform: t.platform,
        first,
        second,
    },
};

fn parse_target(text: &str, origin: &str, source: &str) -> Result<TargetSpec, CatalogError> {
    let raw: TargetFile = TARGET_FILES.read_toml(text, origin)?;
    let field = |field: &'static str, problem: String, fix: &str| {
        CatalogError::from(TARGET_FILES.field_error(origin, field, problem, fix))
    };
    let platform: Platform = raw.platform.parse().map_err(|e| {
        field(
            "platform",
            format!("is {:?}, which is not a platform ({e})", raw.platform),
            "write an OCI platform like \"linux/arm64\"",
        )
    })?;
    for c in &raw.compilers {
        if !plain_word(&c.triple) {
            return Err(field(
                "compilers.triple",
                format!("is {:?}", c.triple),
                "use letters, digits, '_', '-' and '.' only, like \"aarch64-linux-gnu\"",
            ));
        }
        if c.kind != CompilerKind::Zig && c.sysroot.is_none() {
            return Err(field(
                "compilers.sysroot",
                format!("is missing for the {} compiler {}", c.kind, c.triple),
                "give the directory holding the target's C library, like \"/usr/aarch64-linux-gnu\"",
            ));
        }
        if let Some(s) = c.sysroot.as_ref().filter(|s| !s.is_absolute()) {
            return Err(field(
                "compilers.sysroot",
                format!("is {}, a relative path", s.display()),
                "give an absolute path",
            ));
        }
        let names = c.debian.iter().chain(&c.fedora).chain(&c.pip);
        for n in names.chain(&raw.emulator_packages.debian) {
            if !plain_word(n) || n.starts_with('-') {
                return Err(field(
                    "packages",
                    format!("has {n:?}"),
                    "name packages with letters, digits, '.', '+', '_' and '-' only (not starting with '-')",
                ));
            }
        }
    }
    for t in &raw.rust_targets {
        if !plain_word(t) {
            return Err(field(
                "rust_targets",
                format!("has {t:?}"),
                "write Rust target triples like \"aarch64-unknown-linux-gnu\"",
            ));
        }
    }
    Ok(TargetSpec {
        platform,
        meson_cpu_family: raw.meson_cpu_family,
        qemu_cpu: raw.qemu_cpu,
        rust_targets: raw.rust_targets,
        goarch: raw.goarch,
        goarm: raw.goarm,
        compilers: raw.compilers,
        emulator_packages: raw.emulator_packages,
        source: source.to_string(),
    })
}

/// Names that go into program names, package-manager command lines and environment variable
/// names: a plain alphabet keeps them from being read as options or shell syntax.
fn plain_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_platform_has_exactly_one_builtin_entry() {
        let c = Catalog::builtin().unwrap();
        for p in Platform::all() {
            let n = c.targets.iter().filter(|t| t.platform == p).count();
            assert_eq!(n, 1, "{p} has {n} toolchain files");
        }
        assert_eq!(c.targets.len(), Platform::all().count());
    }

    /// The catalog and the platform table must not drift: gcc triples agree with the table's
    /// GNU triple where the platform has one (except arm/v6, which has none on purpose).
    #[test]
    fn gcc_triples_agree_with_the_platform_table() {
        let c = Catalog::builtin().unwrap();
        for t in &c.targets {
            for comp in t.compilers.iter().filter(|c| c.kind == CompilerKind::Gcc) {
                if let Some(g) = t.platform.gnu_triple() {
                    assert_eq!(comp.triple, g, "{}", t.platform);
                }
                assert!(comp.debian.iter().any(|p| p.starts_with("gcc-")));
            }
            assert!(!t.rust_targets.is_empty(), "{}", t.platform);
        }
    }

    #[test]
    fn arm_v6_never_uses_the_armv7_armhf_gcc() {
        let c = Catalog::builtin().unwrap();
        let v6 = c.get(&"linux/arm/v6".parse().unwrap()).unwrap();
        assert!(v6
            .compilers
            .iter()
            .all(|c| c.triple != "arm-linux-gnueabihf"));
        assert_eq!(v6.compilers[0].kind, CompilerKind::Zig);
        assert_eq!(v6.compilers[0].cpu.as_deref(), Some("arm1176jzf_s"));
        assert_eq!(v6.qemu_cpu.as_deref(), Some("arm1176"));
        assert_eq!(v6.goarm.as_deref(), Some("6"));
    }

    #[test]
    fn user_files_override_and_errors_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("a.toml"),
            "platform = \"aarch64\"\nmeson_cpu_family = \"aarch64\"\ngoarch = \"arm64\"\n",
        )
        .unwrap();
        let c = Catalog::load(d.path()).unwrap();
        let t = c.get(&"linux/arm64".parse().unwrap()).unwrap();
        assert!(t.compilers.is_empty());
        assert!(t.source.ends_with("a.toml"));

        std::fs::write(
            d.path().join("b.toml"),
            "platform = \"linux/arm64\"\nmeson_cpu_family = \"x\"\ngoarch = \"arm64\"\n",
        )
        .unwrap();
        let e = Catalog::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("a.toml") && e.contains("b.toml"), "{e}");

        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("x.toml"),
            "platform = \"linux/foo\"\nmeson_cpu_family = \"x\"\ngoarch = \"x\"\n",
        )
        .unwrap();
        let e = Catalog::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("x.toml") && e.contains("platform"), "{e}");

        std::fs::write(d.path().join("x.toml"), "platform = \"linux/arm64\"\nmeson_cpu_family = \"x\"\ngoarch = \"x\"\n[[compilers]]\nkind = \"gcc\"\ntriple = \"a b\"\nsysroot = \"/x\"\n").unwrap();
        let e = Catalog::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("triple"), "{e}");

        std::fs::write(d.path().join("x.toml"), "nonsense = 1\n").unwrap();
        let e = Catalog::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("x.toml") && e.contains("not valid"), "{e}");
    }
}
