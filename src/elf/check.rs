//! Compatibility verdicts: can this file run on (or be loaded on) a target platform?

use super::{loaders, Abi, ElfInfo, FloatAbi, Kind, Linkage};
use crate::platform::Platform;
use goblin::elf::header::{EM_ARM, EM_RISCV};
use serde::Serialize;

/// What is wrong, as a stable word for machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// Another CPU architecture, class or byte order.
    WrongMachine,
    /// ARM code for a newer architecture version than the platform's CPUs.
    ArmArchTooNew,
    /// ARM/RISC-V float calling convention that the platform's system does not use.
    FloatAbi,
    /// The loader named in PT_INTERP is not one the platform's system has.
    ForeignLoader,
    /// The ELF headers cannot be read.
    Corrupt,
    /// The file could not be read at all.
    Unreadable,
}

/// One problem with one file. `path` is filled in by whoever knows where the file came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub path: String,
    pub kind: FindingKind,
    /// What the platform needs.
    pub expected: String,
    /// What the file is.
    pub found: String,
    /// What the user would see, and why.
    pub message: String,
}

impl Finding {
    fn new(kind: FindingKind, expected: String, found: String, message: String) -> Self {
        Finding {
            path: String::new(),
            kind,
            expected,
            found,
            message,
        }
    }

    /// A file whose ELF headers could not be parsed.
    pub fn corrupt(path: &str, error: &dyn std::fmt::Display) -> Self {
        Finding {
            path: path.to_string(),
            kind: FindingKind::Corrupt,
            expected: "a readable ELF file".into(),
            found: error.to_string(),
            message: format!("corrupt ELF header in {path}: {error}"),
        }
    }

    /// A file that could not be read.
    pub fn unreadable(path: &str, error: &dyn std::fmt::Display) -> Self {
        Finding {
            path: path.to_string(),
            kind: FindingKind::Unreadable,
            expected: "a readable file".into(),
            found: error.to_string(),
            message: format!("cannot read {path}: {error}"),
        }
    }

    /// The same finding with its path set.
    pub fn at(mut self, path: &str) -> Self {
        self.path = path.to_string();
        self
    }
}

/// ARM variant level of a platform (5, 6, 7, 8), `None` for other architectures.
fn arm_level(p: &Platform) -> Option<u8> {
    if p.info().elf_machine != EM_ARM {
        return None;
    }
    p.variant()
        .and_then(|v| v.strip_prefix('v'))
        .and_then(|n| n.parse().ok())
}

/// Whether the platform's Linux systems use the ARM hard-float convention: Debian armel (v5) is
/// soft-float; Raspberry Pi OS and Alpine armhf (v6), Debian armhf (v7) and v8 are hard-float.
fn arm_hard_float(level: u8) -> bool {
    level >= 6
}

fn cpu_examples(level: u8) -> &'static str {
    match level {
        5 => "ARMv5 such as Debian armel devices (Kirkwood, Marvell Sheevaplug)",
        6 => "ARMv6 such as Raspberry Pi Zero/1",
        7 => "ARMv7 such as Raspberry Pi 2 and Cortex-A7/A9 boards",
        _ => "older ARM CPUs",
    }
}

/// Everything that keeps `info` from running on `target`; empty when it runs.
pub fn check(info: &ElfInfo, target: &Platform) -> Vec<Finding> {
    let t = target.info();
    let big = info.endian == super::Endian::Big;
    let mut out = Vec::new();
    if info.e_machine != t.elf_machine || info.class != t.elf_class || big != t.big_endian {
        let found = info.describe();
        let message = match info.kind {
            Kind::SharedLibrary => format!(
                "built for {found}: programs on {target} cannot load it (\"wrong ELF class\" or \"cannot open shared object file\")"
            ),
            Kind::Relocatable | Kind::Core | Kind::Other => {
                format!("built for {found}: object for another architecture than {target}")
            }
            Kind::Executable => format!("built for {found}: exec format error on {target}"),
        };
        out.push(Finding::new(
            FindingKind::WrongMachine,
            target.to_string(),
            found,
            message,
        ));
        return out;
    }
    if info.mips_abi == Some(super::MipsAbi::N32) {
        out.push(Finding::new(
            FindingKind::WrongMachine,
            target.to_string(),
            info.describe(),
            format!("MIPS n32 ABI: {target} systems run o32 or n64 programs only"),
        ));
        return out;
    }

    if let Some(level) = arm_level(target) {
        if let Some(code) = info.arm_level.filter(|&c| c > level) {
            let name = info.arm_arch.as_deref().unwrap_or("newer");
            out.push(Finding::new(
                FindingKind::ArmArchTooNew,
                format!("ARMv{level} or older code"),
                format!("ARM{name} code (needs linux/arm/v{code})"),
                if name == format!("v{code}") {
                    format!(
                        "ARMv{code} instructions: Illegal instruction on {}",
                        cpu_examples(level)
                    )
                } else {
                    format!(
                        "ARMv{code} instructions ({name}): Illegal instruction on {}",
                        cpu_examples(level)
                    )
                },
            ));
        }
        let hard_system = arm_hard_float(level);
        let loader_abi = info
            .interpreter
            .as_deref()
            .and_then(|i| loaders::lookup(i).find(|l| l.machine == EM_ARM))
            .map(|l| l.abi);
        match (info.linkage, loader_abi) {
            (Linkage::Dynamic, Some(abi)) if (abi == Abi::ArmHard) != hard_system => {
                let (what, system) = if abi == Abi::ArmHard {
                    ("hard-float", "soft-float")
                } else {
                    ("soft-float", "hard-float")
                };
                let interp = info.interpreter.clone().unwrap_or_default();
                out.push(Finding::new(
                    FindingKind::FloatAbi,
                    format!("{system} loader"),
                    format!("{what} loader {interp}"),
                    format!("{what} loader {interp} absent on a {system} system ({target}): \"No such file or directory\" when run"),
                ));
            }
            _ => {
                let fa = info.float_abi.unwrap_or(FloatAbi::Any);
                if !hard_system && fa == FloatAbi::Hard {
                    let message = if info.kind == Kind::SharedLibrary {
                        format!("hard-float library: the soft-float loader on {target} refuses it")
                    } else {
                        format!(
                            "hard-float (VFP) code: Illegal instruction on {} without VFP; build for soft-float (armel)",
                            cpu_examples(level)
                        )
                    };
                    out.push(Finding::new(
                        FindingKind::FloatAbi,
                        "soft-float code".into(),
                        "hard-float code".into(),
                        message,
                    ));
                } else if hard_system
                    && fa == FloatAbi::Soft
                    && info.kind == Kind::SharedLibrary
                    && info.linkage == Linkage::Dynamic
                {
                    out.push(Finding::new(
                        FindingKind::FloatAbi,
                        "hard-float code".into(),
                        "soft-float library".into(),
                        format!("soft-float library: the hard-float loader on {target} refuses it"),
                    ));
                }
            }
        }
    }

    // Loaders of another machine, or of an ABI the platform's systems do not use.
    if info.linkage == Linkage::Dynamic {
        if let Some(interp) = info.interpreter.as_deref() {
            let known: Vec<_> = loaders::lookup(interp).collect();
            let for_target = known.iter().any(|l| {
                l.machine == t.elf_machine && l.class == t.elf_class && l.big_endian == t.big_endian
            });
            if !known.is_empty() && !for_target {
                out.push(Finding::new(
                    FindingKind::ForeignLoader,
                    format!("a loader of {target}"),
                    format!("loader {interp}"),
                    format!("loader {interp} belongs to another architecture: absent on {target} (\"No such file or directory\" when run)"),
                ));
            } else if info.e_machine == EM_RISCV
                && known
                    .iter()
                    .any(|l| l.machine == EM_RISCV && l.abi == Abi::RiscvSoft)
            {
                out.push(Finding::new(
                    FindingKind::FloatAbi,
                    "lp64d (double-float) loader".into(),
                    format!("soft-float loader {interp}"),
                    format!("soft-float loader {interp} absent on a double-float (lp64d) system ({target})"),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::{Endian, MipsAbi};
    use goblin::elf::header::{EM_AARCH64, EM_X86_64};

    fn p(s: &str) -> Platform {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn base(machine: u16, class: u8) -> ElfInfo {
        let mut i = ElfInfo {
            platform: None,
            machine: super::super::machine_name(machine),
            e_machine: machine,
            class,
            endian: Endian::Little,
            kind: Kind::Executable,
            linkage: Linkage::Static,
            interpreter: None,
            libc: None,
            interpreter_matches: None,
            needed: vec![],
            e_flags: 0,
            float_abi: None,
            arm_eabi: None,
            arm_arch: None,
            arm_level: None,
            thumb_only: None,
            rvc: None,
            mips_abi: None,
            mips_isa: None,
            ppc64_abi: None,
            partial: false,
        };
        i.platform = super::super::platform_of(&i);
        i
    }

    fn arm(level: u8, fa: FloatAbi, interp: Option<&str>) -> ElfInfo {
        let mut i = base(EM_ARM, 32);
        i.arm_level = Some(level);
        i.arm_arch = Some(format!("v{level}"));
        i.float_abi = Some(fa);
        if let Some(x) = interp {
            i.interpreter = Some(x.into());
            i.linkage = Linkage::Dynamic;
        }
        i.platform = super::super::platform_of(&i);
        i
    }

    fn kinds(f: &[Finding]) -> Vec<FindingKind> {
        f.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn wrong_machine_is_exec_format_error() {
        let f = check(&base(EM_X86_64, 64), &p("linux/arm64"));
        assert_eq!(kinds(&f), [FindingKind::WrongMachine]);
        assert_eq!(
            f[0].message,
            "built for linux/amd64: exec format error on linux/arm64"
        );
        assert!(check(&base(EM_AARCH64, 64), &p("linux/arm64")).is_empty());
        // Same machine, other class or byte order.
        let f = check(&base(EM_X86_64, 32), &p("linux/amd64"));
        assert_eq!(kinds(&f), [FindingKind::WrongMachine]);
        let mut be = base(EM_AARCH64, 64);
        be.endian = Endian::Big;
        be.platform = None;
        assert_eq!(
            kinds(&check(&be, &p("linux/arm64"))),
            [FindingKind::WrongMachine]
        );
    }

    #[test]
    fn older_arm_code_runs_on_newer_variants_only() {
        let v6 = arm(6, FloatAbi::Hard, Some("/lib/ld-linux-armhf.so.3"));
        assert!(check(&v6, &p("linux/arm/v7")).is_empty());
        assert!(check(&v6, &p("linux/arm/v6")).is_empty());
        let v7 = arm(7, FloatAbi::Hard, Some("/lib/ld-linux-armhf.so.3"));
        let f = check(&v7, &p("linux/arm/v6"));
        assert_eq!(kinds(&f), [FindingKind::ArmArchTooNew]);
        assert!(
            f[0].message
                .contains("Illegal instruction on ARMv6 such as Raspberry Pi Zero/1"),
            "{}",
            f[0].message
        );
        assert!(check(&v7, &p("linux/arm/v7")).is_empty());
        assert!(check(&v7, &p("linux/arm/v8")).is_empty());
        // arm/v7 code is not arm64 code.
        assert_eq!(
            kinds(&check(&v7, &p("linux/arm64"))),
            [FindingKind::WrongMachine]
        );
    }

    #[test]
    fn soft_float_loader_on_hard_float_system() {
        let armel = arm(5, FloatAbi::Soft, Some("/lib/ld-linux.so.3"));
        assert!(check(&armel, &p("linux/arm/v5")).is_empty());
        let f = check(&armel, &p("linux/arm/v7"));
        assert_eq!(kinds(&f), [FindingKind::FloatAbi]);
        assert!(
            f[0].message
                .starts_with("soft-float loader /lib/ld-linux.so.3 absent on a hard-float system"),
            "{}",
            f[0].message
        );
        let armhf = arm(7, FloatAbi::Hard, Some("/lib/ld-linux-armhf.so.3"));
        let f = check(&armhf, &p("linux/arm/v5"));
        assert_eq!(
            kinds(&f),
            [FindingKind::ArmArchTooNew, FindingKind::FloatAbi]
        );
        assert!(f[1].message.contains("hard-float loader"));
    }

    #[test]
    fn static_programs_skip_loader_checks() {
        // A static soft-float ARMv5 program runs on a hard-float system: no loader involved.
        let s = arm(5, FloatAbi::Soft, None);
        assert!(check(&s, &p("linux/arm/v7")).is_empty());
        assert!(check(&s, &p("linux/arm/v6")).is_empty());
        // A static hard-float program still needs VFP.
        let h = arm(6, FloatAbi::Hard, None);
        assert_eq!(
            kinds(&check(&h, &p("linux/arm/v5"))),
            [FindingKind::ArmArchTooNew, FindingKind::FloatAbi]
        );
    }

    #[test]
    fn foreign_and_soft_float_loaders() {
        let mut i = base(EM_AARCH64, 64);
        i.linkage = Linkage::Dynamic;
        i.interpreter = Some("/lib64/ld-linux-x86-64.so.2".into());
        assert_eq!(
            kinds(&check(&i, &p("linux/arm64"))),
            [FindingKind::ForeignLoader]
        );
        i.interpreter = Some("/lib/ld-musl-aarch64.so.1".into());
        assert!(check(&i, &p("linux/arm64")).is_empty());
        i.interpreter = Some("/opt/custom/ld.so".into());
        assert!(check(&i, &p("linux/arm64")).is_empty());

        let mut r = base(EM_RISCV, 64);
        r.linkage = Linkage::Dynamic;
        r.float_abi = Some(FloatAbi::Soft);
        r.interpreter = Some("/lib/ld-linux-riscv64-lp64.so.1".into());
        assert_eq!(
            kinds(&check(&r, &p("linux/riscv64"))),
            [FindingKind::FloatAbi]
        );
    }

    #[test]
    fn mips_n32_is_not_a_platform() {
        let mut m = base(goblin::elf::header::EM_MIPS, 32);
        m.mips_abi = Some(MipsAbi::N32);
        assert_eq!(
            kinds(&check(&m, &p("linux/mipsle"))),
            [FindingKind::WrongMachine]
        );
    }
}
