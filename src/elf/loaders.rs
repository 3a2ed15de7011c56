//! Program interpreters (dynamic loaders) and the ELF ABI each one loads. Keyed by ELF facts
//! (machine, class, byte order, ABI), not by platform names, which live only in `platform.rs`.

use super::{Abi, Libc};
use goblin::elf::header::{
    EM_386, EM_AARCH64, EM_ARM, EM_LOONGARCH, EM_MIPS, EM_PPC64, EM_RISCV, EM_S390, EM_X86_64,
};

/// One loader file name and what it loads.
#[derive(Debug, Clone, Copy)]
pub struct Loader {
    pub name: &'static str,
    pub machine: u16,
    pub class: u8,
    pub big_endian: bool,
    pub libc: Libc,
    /// The ABI its programs must have; `Abi::Any` when the machine has only one.
    pub abi: Abi,
}

const fn l(
    name: &'static str,
    machine: u16,
    class: u8,
    big_endian: bool,
    libc: Libc,
    abi: Abi,
) -> Loader {
    Loader {
        name,
        machine,
        class,
        big_endian,
        libc,
        abi,
    }
}

use Abi::*;
use Libc::{Glibc, Musl};

/// Every loader rcross knows. Names are base names: the directory differs between distributions
/// (/lib, /lib64, /usr/lib, /nix/store/…).
#[rustfmt::skip]
pub const LOADERS: &[Loader] = &[
    l("ld-linux-x86-64.so.2",          EM_X86_64,    64, false, Glibc, Any),
    l("ld-musl-x86_64.so.1",           EM_X86_64,    64, false, Musl,  Any),
    l("ld-linux.so.2",                 EM_386,       32, false, Glibc, Any),
    l("ld-musl-i386.so.1",             EM_386,       32, false, Musl,  Any),
    l("ld-linux-aarch64.so.1",         EM_AARCH64,   64, false, Glibc, Any),
    l("ld-musl-aarch64.so.1",          EM_AARCH64,   64, false, Musl,  Any),
    l("ld-linux-armhf.so.3",           EM_ARM,       32, false, Glibc, ArmHard),
    l("ld-linux.so.3",                 EM_ARM,       32, false, Glibc, ArmSoft),
    l("ld-musl-armhf.so.1",            EM_ARM,       32, false, Musl,  ArmHard),
    l("ld-musl-arm.so.1",              EM_ARM,       32, false, Musl,  ArmSoft),
    l("ld-linux-riscv64-lp64d.so.1",   EM_RISCV,     64, false, Glibc, RiscvDouble),
    l("ld-linux-riscv64-lp64.so.1",    EM_RISCV,     64, false, Glibc, RiscvSoft),
    l("ld-musl-riscv64.so.1",          EM_RISCV,     64, false, Musl,  RiscvDouble),
    l("ld-musl-riscv64-sf.so.1",       EM_RISCV,     64, false, Musl,  RiscvSoft),
    l("ld64.so.2",                     EM_PPC64,     64, false, Glibc, Ppc64V2),
    l("ld64.so.1",                     EM_PPC64,     64, true,  Glibc, Ppc64V1),
    l("ld-musl-powerpc64le.so.1",      EM_PPC64,     64, false, Musl,  Ppc64V2),
    l("ld-musl-powerpc64.so.1",        EM_PPC64,     64, true,  Musl,  Ppc64V2),
    l("ld64.so.1",                     EM_S390,      64, true,  Glibc, Any),
    l("ld-musl-s390x.so.1",            EM_S390,      64, true,  Musl,  Any),
    l("ld.so.1",                       EM_MIPS,      64, false, Glibc, Any),
    l("ld.so.1",                       EM_MIPS,      64, true,  Glibc, Any),
    l("ld.so.1",                       EM_MIPS,      32, false, Glibc, Any),
    l("ld.so.1",                       EM_MIPS,      32, true,  Glibc, Any),
    l("ld-musl-mips64el.so.1",         EM_MIPS,      64, false, Musl,  Any),
    l("ld-musl-mips64.so.1",           EM_MIPS,      64, true,  Musl,  Any),
    l("ld-musl-mipsel.so.1",           EM_MIPS,      32, false, Musl,  Any),
    l("ld-musl-mips.so.1",             EM_MIPS,      32, true,  Musl,  Any),
    l("ld-linux-loongarch-lp64d.so.1", EM_LOONGARCH, 64, false, Glibc, Any),
    l("ld-musl-loongarch64.so.1",      EM_LOONGARCH, 64, false, Musl,  Any),
];

/// The base name of a loader path.
pub fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Loaders with this path's base name.
pub fn lookup(path: &str) -> impl Iterator<Item = &'static Loader> + '_ {
    let name = base_name(path);
    LOADERS.iter().filter(move |l| l.name == name)
}

/// The C library family a loader path belongs to, from its name.
pub fn libc_of(path: &str) -> Option<Libc> {
    if let Some(l) = lookup(path).next() {
        return Some(l.libc);
    }
    let name = base_name(path);
    if name.starts_with("ld-musl-") {
        Some(Musl)
    } else if name.starts_with("ld-linux") || name.starts_with("ld64.so") || name == "ld.so.1" {
        Some(Glibc)
    } else if name == "linker" || name == "linker64" {
        Some(Libc::Bionic)
    } else {
        None
    }
}
