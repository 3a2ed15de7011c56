//! The OCI platform `os/arch[/variant]` and the one table of architecture names.
//!
//! Every name that refers to an architecture (OCI arch + variant, Debian architecture, kernel
//! `uname -m`, GNU triple prefix, common aliases) is written exactly once, in [`ARCHES`]. Parsing
//! and printing both read that table, and the tests walk it in both directions.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One row of the architecture table.
#[derive(Debug, Clone, Copy)]
pub struct ArchInfo {
    /// OCI `architecture` (GOARCH spelling).
    pub arch: &'static str,
    /// OCI `variant` this row stands for, `None` when the architecture has no variants.
    pub variant: Option<&'static str>,
    /// Whether this row is what the bare architecture means (`linux/arm` = `linux/arm/v7`).
    pub default_variant: bool,
    /// Whether the variant is omitted when printing (`linux/arm64/v8` prints as `linux/arm64`).
    pub variant_implied: bool,
    /// Debian architecture name, when Debian has one for exactly this platform.
    pub debian: Option<&'static str>,
    /// What `uname -m` prints on a kernel running this platform natively, when unambiguous.
    pub uname: Option<&'static str>,
    /// GNU triple for the usual glibc toolchain, when one exists.
    pub gnu_triple: Option<&'static str>,
    /// Further names users type for this platform.
    pub aliases: &'static [&'static str],
    /// ELF class (32 or 64) of programs for this platform.
    pub elf_class: u8,
    /// Whether programs for this platform are big-endian.
    pub big_endian: bool,
    /// ELF `e_machine` of programs for this platform.
    pub elf_machine: u16,
    /// Other architectures (OCI arch) whose programs CPUs of this platform may run without
    /// emulation, given kernel support (x86_64 runs i386; most arm64 CPUs run 32-bit ARM).
    /// Only a probe tells whether a given host really does.
    pub compat_arches: &'static [&'static str],
}

/// The architecture table: the only place where architecture names are spelled.
pub const ARCHES: &[ArchInfo] = &[
    ArchInfo {
        arch: "amd64",
        variant: None,
        default_variant: true,
        variant_implied: true,
        debian: Some("amd64"),
        uname: Some("x86_64"),
        gnu_triple: Some("x86_64-linux-gnu"),
        aliases: &["x86-64", "x64"],
        elf_class: 64,
        big_endian: false,
        elf_machine: 62,
        compat_arches: &["386"],
    },
    ArchInfo {
        arch: "386",
        variant: None,
        default_variant: true,
        variant_implied: true,
        debian: Some("i386"),
        uname: Some("i686"),
        gnu_triple: Some("i686-linux-gnu"),
        aliases: &["i486", "i586", "x86", "ia32"],
        elf_class: 32,
        big_endian: false,
        elf_machine: 3,
        compat_arches: &[],
    },
    ArchInfo {
        arch: "arm64",
        variant: Some("v8"),
        default_variant: true,
        variant_implied: true,
        debian: Some("arm64"),
        uname: Some("aarch64"),
        gnu_triple: Some("aarch64-linux-gnu"),
        aliases: &["arm64v8"],
        elf_class: 64,
        big_endian: false,
        elf_machine: 183,
        compat_arches: &["arm"],
    },
    ArchInfo {
        arch: "arm",
        variant: Some("v7"),
        default_variant: true,
        variant_implied: false,
        debian: Some("armhf"),
        uname: Some("armv7l"),
        gnu_triple: Some("arm-linux-gnueabihf"),
        aliases: &["armv7", "armv7hl", "arm32v7", "armv7hf"],
        elf_class: 32,
        big_endian: false,
        elf_machine: 40,
        compat_arches: &[],
    },
    ArchInfo {
        arch: "arm",
        variant: Some("v6"),
        default_variant: false,
        variant_implied: false,
        debian: None,
        uname: Some("armv6l"),
        gnu_triple: None,
        aliases: &["armv6", "arm32v6", "armv6hf", "rpi", "raspberrypi"],
        elf_class: 32,
        big_endian: false,
        elf_machine: 40,
        compat_arches: &[],
    },
    ArchInfo {
        arch: "arm",
        variant: Some("v5"),
        default_variant: false,
        variant_implied: false,
        debian: Some("armel"),
        uname: Some("armv5tel"),
        gnu_triple: Some("arm-linux-gnueabi"),
        aliases: &["armv5", "armv5te", "arm32v5"],
        elf_class: 32,
        big_endian: false,
        elf_machine: 40,
        compat_arches: &[],
    },
    ArchInfo {
        arch: "arm",
        variant: Some("v8"),
        default_variant: false,
        variant_implied: false,
        debian: None,
        uname: Some("armv8l"),
        gnu_triple: None,
        aliases: &["armv8", "aarch32"],
        elf_class: 32,
        big_endian: false,
        elf_machine: 40,
        compat_arches: &[],
    },
    ArchInfo {
        arch: "riscv64",
        variant: None,
        default_variant: true,
        variant_implied: true,
        debian: Some("riscv64"),
        uname: None, // same spelling as the OCI name
        gnu_triple: Some("riscv64-linux-gnu"),
        aliases: &["riscv64gc", "rv64", "rv64gc"],
        elf_class: 64,
        big_endian: false,
        elf_machine: 243,
        compat_arches: &[],
    },
    ArchInfo {
        arch: "ppc64le",
        variant: None,
        default_variant: true,
        variant_implied: true,
        debian: Some("ppc64el"),
        uname: None,
        gnu_triple: Some("powerpc64le-linux-gnu"),
        aliases: &["powerpc64le"],
        elf_class: 64,
        big_endian: false,
        elf_machine: 21,
        compat_arches: &[],
    },
    ArchInfo {
        arch: "ppc64",
        variant: None,
        default_variant: true,
        variant_implied: true,
        debian: None, // Debian's "ppc64" is a ports architecture; keep the name for the OCI arch only
        uname: None,
        gnu_triple: Some("powerpc64-linux-gnu"),
        aliases: &["powerpc64"],
        elf_class: 64,
        big_endian: true,
        elf_machine: 21,
        compat_arches: &[],
    },
    ArchInfo {
        arch: "s390x",
        variant: None,
        default_variant: true,
        variant_implied: true,
        debian: None,
        uname: None,
        gnu_triple: Some("s390x-linux-gnu"),
        aliases: &["systemz"],
        elf_class: 64,
        big_endian: true,
        elf_machine: 22,
        compat_arches: &[],
    },
    ArchInfo {
        arch: "mips64le",
        variant: None,
        default_variant: true,
        variant_implied: true,
        debian: Some("mips64el"),
        uname: None, // the kernel prints "mips64" for both byte orders
        gnu_triple: Some("mips64el-linux-gnuabi64"),
        aliases: &[],
        elf_class: 64,
        big_endian: false,
        elf_machine: 8,
        compat_arches: &["mipsle"],
    },
    ArchInfo {
        arch: "mips64",
        variant: None,
        default_variant: true,
        variant_implied: true,
        debian: None,
        uname: None,
        gnu_triple: Some("mips64-linux-gnuabi64"),
        aliases: &[],
        elf_class: 64,
        big_endian: true,
        elf_machine: 8,
        compat_arches: &["mips"],
    },
    ArchInfo {
        arch: "mipsle",
        variant: None,
        default_variant: true,
        variant_implied: true,
        debian: Some("mipsel"),
        uname: None,
        gnu_triple: Some("mipsel-linux-gnu"),
        aliases: &[],
        elf_class: 32,
        big_endian: false,
        elf_machine: 8,
        compat_arches: &[],
    },
    ArchInfo {
        arch: "mips",
        variant: None,
        default_variant: true,
        variant_implied: true,
        debian: None,
        uname: None,
        gnu_triple: Some("mips-linux-gnu"),
        aliases: &[],
        elf_class: 32,
        big_endian: true,
        elf_machine: 8,
        compat_arches: &[],
    },
    ArchInfo {
        arch: "loong64",
        variant: None,
        default_variant: true,
        variant_implied: true,
        debian: Some("loong64"),
        uname: Some("loongarch64"),
        gnu_triple: Some("loongarch64-linux-gnu"),
        aliases: &["la64"],
        elf_class: 64,
        big_endian: false,
        elf_machine: 258,
        compat_arches: &[],
    },
];

/// The only operating system rcross builds for.
pub const LINUX: &str = "linux";

/// A normalised OCI platform. Two spellings of the same platform compare equal
/// (`linux/arm64` == `linux/arm64/v8`, `aarch64` == `linux/arm64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    index: usize,
}

/// Why a platform name was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    #[error("empty platform name")]
    Empty,
    #[error("unsupported operating system {os:?} in {input:?}: rcross builds for linux only (e.g. linux/{arch})")]
    Os {
        input: String,
        os: String,
        arch: String,
    },
    #[error("unknown platform {input:?}{}; known platforms: {known}", suggestion.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default())]
    Unknown {
        input: String,
        suggestion: Option<String>,
        known: String,
    },
    #[error("unknown variant {variant:?} of linux/{arch} in {input:?}; valid: {valid}")]
    Variant {
        input: String,
        arch: String,
        variant: String,
        valid: String,
    },
}

impl Platform {
    /// Every platform rcross knows, in table order.
    pub fn all() -> impl Iterator<Item = Platform> {
        (0..ARCHES.len()).map(|index| Platform { index })
    }

    fn info_ref(&self) -> &'static ArchInfo {
        &ARCHES[self.index]
    }

    /// The table row behind this platform.
    pub fn info(&self) -> &'static ArchInfo {
        self.info_ref()
    }

    pub fn os(&self) -> &'static str {
        LINUX
    }

    /// OCI `architecture`.
    pub fn arch(&self) -> &'static str {
        self.info_ref().arch
    }

    /// OCI `variant` as it belongs in an image index descriptor (`v8` for arm64, `v7` for arm).
    pub fn variant(&self) -> Option<&'static str> {
        self.info_ref().variant
    }

    pub fn debian_arch(&self) -> Option<&'static str> {
        self.info_ref().debian
    }

    pub fn gnu_triple(&self) -> Option<&'static str> {
        self.info_ref().gnu_triple
    }

    /// What `uname -m` prints for this platform.
    pub fn uname_machine(&self) -> &'static str {
        self.info_ref().uname.unwrap_or(self.info_ref().arch)
    }

    /// A name without slashes, for file names and binfmt entries (`linux-arm-v7`).
    pub fn slug(&self) -> String {
        self.to_string().replace('/', "-")
    }

    /// Look up by exact OCI fields (as found in an image index).
    pub fn from_oci(
        os: &str,
        arch: &str,
        variant: Option<&str>,
    ) -> Result<Platform, PlatformError> {
        let mut s = format!("{os}/{arch}");
        if let Some(v) = variant.filter(|v| !v.is_empty()) {
            s.push('/');
            s.push_str(v);
        }
        s.parse()
    }

    /// The platform of a kernel whose `uname -m` prints `machine`.
    pub fn from_uname(machine: &str) -> Result<Platform, PlatformError> {
        let m = machine.trim();
        // The kernel spells 64-bit MIPS the same for both byte orders; callers that know the byte
        // order should decide. Default to the little-endian one, which is what exists in practice.
        if m == "mips64" {
            return "linux/mips64le".parse();
        }
        if m == "mips" {
            return "linux/mipsle".parse();
        }
        if let Some(i) = ARCHES.iter().position(|a| a.uname == Some(m)) {
            return Ok(Platform { index: i });
        }
        m.parse()
    }

    /// Whether a program built for `self` runs on a CPU of platform `host` without emulation in
    /// the sense of instruction-set compatibility (older ARM variants run on newer ones).
    pub fn runs_on(&self, host: &Platform) -> bool {
        if self == host {
            return true;
        }
        if self.arch() == "arm" && host.arch() == "arm" {
            return arm_level(self.variant()) <= arm_level(host.variant());
        }
        false
    }

    /// Whether a CPU of platform `host` may run programs of `self` without emulation at all:
    /// the same instruction set (see [`Platform::runs_on`]) or a compatibility mode of the host
    /// architecture. A "may": whether this kernel and CPU really do is for a probe to tell.
    pub fn may_run_natively_on(&self, host: &Platform) -> bool {
        self.runs_on(host) || host.info_ref().compat_arches.contains(&self.arch())
    }
}

fn arm_level(v: Option<&str>) -> u8 {
    v.and_then(|v| v.strip_prefix('v'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.info_ref();
        write!(f, "{LINUX}/{}", a.arch)?;
        if let (Some(v), false) = (a.variant, a.variant_implied) {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn canonical_names() -> Vec<String> {
    Platform::all().map(|p| p.to_string()).collect()
}

/// All spellings that resolve to a table row, for suggestions.
fn all_spellings() -> Vec<String> {
    let mut v = Vec::new();
    for p in Platform::all() {
        let a = p.info_ref();
        v.push(p.to_string());
        if a.default_variant {
            v.push(a.arch.to_string());
        }
        if let Some(d) = a.debian {
            v.push(d.to_string());
        }
        if let Some(u) = a.uname {
            v.push(u.to_string());
        }
        v.extend(a.aliases.iter().map(|s| s.to_string()));
    }
    v
}

fn suggest(input: &str) -> Option<String> {
    let lower = input.to_ascii_lowercase();
    let mut best: Option<(f64, String)> = None;
    for cand in all_spellings() {
        let score = strsim::jaro_winkler(&lower, &cand);
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, cand));
        }
    }
    let (score, cand) = best?;
    if score < 0.7 {
        return None;
    }
    // Suggest the canonical spelling of whatever the nearest name means.
    cand.parse::<Platform>().ok().map(|p| p.to_string())
}

fn unknown(input: &str) -> PlatformError {
    PlatformError::Unknown {
        input: input.to_string(),
        suggestion: suggest(input),
        known: canonical_names().join(", "),
    }
}

/// Resolve a single architecture word (no slash) to a table row.
fn lookup_word(word: &str) -> Option<usize> {
    // Exact OCI arch with its default variant first, then every other spelling.
    if let Some(i) = ARCHES
        .iter()
        .position(|a| a.arch == word && a.default_variant)
    {
        return Some(i);
    }
    ARCHES
        .iter()
        .position(|a| a.debian == Some(word) || a.uname == Some(word) || a.aliases.contains(&word))
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim().to_ascii_lowercase();
        if s.is_empty() {
            return Err(PlatformError::Empty);
        }
        let parts: Vec<&str> = s.split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [word] => (LINUX, *word, None),
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(*variant)),
            _ => return Err(unknown(input)),
        };
        if arch.is_empty() || variant == Some("") {
            return Err(unknown(input));
        }
        if os != LINUX {
            return Err(PlatformError::Os {
                input: input.to_string(),
                os: os.to_string(),
                arch: lookup_word(arch)
                    .map(|i| ARCHES[i].arch)
                    .unwrap_or("amd64")
                    .to_string(),
            });
        }
        let base = lookup_word(arch).ok_or_else(|| unknown(input))?;
        let Some(variant) = variant else {
            return Ok(Platform { index: base });
        };
        // A variant after an alias that already names a variant ("armhf/v7") is accepted only
        // when it agrees.
        let oci_arch = ARCHES[base].arch;
        ARCHES
            .iter()
            .position(|a| a.arch == oci_arch && a.variant == Some(variant))
            .filter(|&i| ARCHES[base].arch == arch || i == base)
            .map(|index| Platform { index })
            .ok_or_else(|| PlatformError::Variant {
                input: input.to_string(),
                arch: oci_arch.to_string(),
                variant: variant.to_string(),
                valid: {
                    let v: Vec<&str> = ARCHES
                        .iter()
                        .filter(|a| a.arch == oci_arch)
                        .filter_map(|a| a.variant)
                        .collect();
                    if v.is_empty() {
                        "none (this architecture has no variants)".to_string()
                    } else {
                        v.join(", ")
                    }
                },
            })
    }
}

impl Serialize for Platform {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Platform {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Parse a comma-separated list (`linux/arm64,linux/arm/v7`), as `--platform` accepts.
pub fn parse_list(s: &str) -> Result<Vec<Platform>, PlatformError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let p: Platform = part.parse()?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(PlatformError::Empty);
    }
    Ok(out)
}

/// Parse every `--platform` argument (each a comma-separated list) into one list without
/// repeats, in the order given.
pub fn parse_lists(args: &[String]) -> Result<Vec<Platform>, PlatformError> {
    let mut out: Vec<Platform> = Vec::new();
    for a in args {
        for p in parse_list(a)? {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn issue_aliases() {
        assert_eq!(p("aarch64").to_string(), "linux/arm64");
        assert_eq!(p("armhf").to_string(), "linux/arm/v7");
        assert_eq!(p("armel").to_string(), "linux/arm/v5");
        assert_eq!(p("x86_64").to_string(), "linux/amd64");
        assert_eq!(p("i686").to_string(), "linux/386");
        assert_eq!(p("ppc64el").to_string(), "linux/ppc64le");
        assert_eq!(p("loongarch64").to_string(), "linux/loong64");
        assert_eq!(p("mips64el").to_string(), "linux/mips64le");
    }

    #[test]
    fn defaults_and_variants() {
        assert_eq!(p("linux/arm64"), p("linux/arm64/v8"));
        assert_eq!(p("linux/arm64/v8").to_string(), "linux/arm64");
        assert_eq!(p("linux/arm64").variant(), Some("v8"));
        assert_eq!(p("linux/arm"), p("linux/arm/v7"));
        assert_eq!(p("LINUX/ARM/V6").to_string(), "linux/arm/v6");
        assert_eq!(p(" linux/amd64 ").to_string(), "linux/amd64");
        assert_ne!(p("linux/arm/v6"), p("linux/arm/v7"));
    }

    #[test]
    fn issue_minimum_set_is_known() {
        for s in [
            "linux/amd64",
            "linux/386",
            "linux/arm64",
            "linux/arm/v5",
            "linux/arm/v6",
            "linux/arm/v7",
            "linux/riscv64",
            "linux/ppc64le",
            "linux/s390x",
            "linux/mips64le",
            "linux/mips64",
            "linux/loong64",
        ] {
            assert_eq!(
                p(s).to_string(),
                s,
                "canonical form of {s} must print as itself"
            );
        }
    }

    /// Every row: canonical name -> platform -> canonical name, and every other spelling of the
    /// row parses back to the same platform (both directions of the one table).
    #[test]
    fn round_trip_every_spelling() {
        for plat in Platform::all() {
            let a = plat.info();
            let printed = plat.to_string();
            assert_eq!(p(&printed), plat, "{printed}");
            let full = match a.variant {
                Some(v) => format!("linux/{}/{v}", a.arch),
                None => format!("linux/{}", a.arch),
            };
            assert_eq!(p(&full), plat, "{full}");
            assert_eq!(
                Platform::from_oci("linux", a.arch, a.variant).unwrap(),
                plat
            );
            if let Some(d) = a.debian {
                assert_eq!(p(d), plat, "debian {d}");
                assert_eq!(plat.debian_arch(), Some(d));
            }
            if !a.arch.starts_with("mips") {
                assert_eq!(
                    Platform::from_uname(plat.uname_machine()).unwrap().arch(),
                    a.arch
                );
            }
            if a.uname.is_some() {
                assert_eq!(Platform::from_uname(plat.uname_machine()).unwrap(), plat);
            }
            for alias in a.aliases {
                assert_eq!(p(alias), plat, "alias {alias}");
            }
            assert_eq!(p(&plat.slug().replace('-', "/")), plat);
        }
    }

    #[test]
    fn no_spelling_is_claimed_twice() {
        let mut seen = std::collections::HashMap::new();
        for plat in Platform::all() {
            let a = plat.info();
            let mut names: Vec<&str> = a.aliases.to_vec();
            names.extend(a.debian);
            names.extend(a.uname);
            for n in names {
                if let Some(prev) = seen.insert(n, plat) {
                    panic!("{n} names both {prev} and {plat}");
                }
            }
        }
    }

    #[test]
    fn serde_uses_the_canonical_string() {
        let j = serde_json::to_string(&p("aarch64")).unwrap();
        assert_eq!(j, "\"linux/arm64\"");
        let back: Platform = serde_json::from_str("\"armhf\"").unwrap();
        assert_eq!(back, p("linux/arm/v7"));
        assert!(serde_json::from_str::<Platform>("\"linux/foo\"").is_err());
    }

    #[test]
    fn unknown_names_suggest_the_nearest() {
        let e = "linux/arm46".parse::<Platform>().unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("did you mean linux/arm64?"), "{msg}");
        let e = "aarch46".parse::<Platform>().unwrap_err().to_string();
        assert!(e.contains("did you mean linux/arm64?"), "{e}");
        let e = "riscv".parse::<Platform>().unwrap_err().to_string();
        assert!(e.contains("did you mean linux/riscv64?"), "{e}");
        let e = "zzzzzzzz".parse::<Platform>().unwrap_err().to_string();
        assert!(e.contains("known platforms: linux/amd64"), "{e}");
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        for s in [
            "",
            "/",
            "//",
            "linux/",
            "linux//v7",
            "linux/arm/",
            "a/b/c/d",
            "linux/arm/v9",
            "linux/amd64/v8",
            "windows/amd64",
            "darwin/arm64",
            "\u{0}",
            "linux/armhf/v6",
        ] {
            assert!(s.parse::<Platform>().is_err(), "{s:?} must not parse");
        }
        let e = "windows/amd64".parse::<Platform>().unwrap_err().to_string();
        assert!(e.contains("linux only"), "{e}");
        let e = "linux/arm/v9".parse::<Platform>().unwrap_err().to_string();
        assert!(e.contains("v7"), "{e}");
    }

    #[test]
    fn lists() {
        let l = parse_list("linux/arm64, armhf,linux/arm64/v8").unwrap();
        assert_eq!(l, vec![p("linux/arm64"), p("linux/arm/v7")]);
        assert!(parse_list(" , ").is_err());
    }

    #[test]
    fn arm_compatibility() {
        assert!(p("linux/arm/v6").runs_on(&p("linux/arm/v7")));
        assert!(p("linux/arm/v5").runs_on(&p("linux/arm/v6")));
        assert!(!p("linux/arm/v7").runs_on(&p("linux/arm/v6")));
        assert!(!p("linux/amd64").runs_on(&p("linux/arm64")));
        assert!(p("linux/arm64").runs_on(&p("linux/arm64")));
        assert!(p("linux/386").may_run_natively_on(&p("linux/amd64")));
        assert!(p("linux/arm/v7").may_run_natively_on(&p("linux/arm64")));
        assert!(!p("linux/arm64").may_run_natively_on(&p("linux/amd64")));
        assert!(!p("linux/amd64").may_run_natively_on(&p("linux/386")));
    }
}
