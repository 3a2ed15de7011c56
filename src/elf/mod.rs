//! ELF classification (architecture, ABI, linkage, loader) and compatibility verdicts.
//!
//! The parser is a small hand-written one over the ELF header, the program headers, the dynamic
//! section and the `.ARM.attributes` section, using goblin's constants. goblin's `Elf::parse`
//! reads every table (sections, symbols, relocations, notes) and allocates by the counts found in
//! the header, which hostile input sets at will, and it refuses truncated files; here every count
//! and offset is checked against the data length before anything is read, each read is capped,
//! and a file whose tail is missing (a prefix of a huge tar entry) is still classified from its
//! headers.

pub mod arm;
mod check;
pub mod loaders;
pub mod source;

pub use check::{check, Finding, FindingKind};
pub use source::{FileSource, ReadAt, SliceSource};

use crate::platform::Platform;
use goblin::elf::dynamic::{DF_1_PIE, DT_FLAGS_1, DT_NEEDED, DT_NULL, DT_STRTAB};
use goblin::elf::header::{
    machine_to_str, EM_386, EM_AARCH64, EM_ARM, EM_LOONGARCH, EM_MIPS, EM_PPC64, EM_RISCV, EM_S390,
    EM_X86_64, ET_CORE, ET_DYN, ET_EXEC, ET_REL,
};
use goblin::elf::program_header::{PT_DYNAMIC, PT_INTERP, PT_LOAD};
use serde::Serialize;
use std::io;

/// ELF magic number.
pub const MAGIC: &[u8; 4] = b"\x7fELF";

/// How many bytes of a file are read up front: enough for the header and program headers of
/// ordinary programs, so most files need no second read until the section headers.
pub const PREFIX_LEN: usize = 16 * 1024;

const MAX_PHDR_BYTES: usize = 65535 * 64;
const MAX_SHDR_BYTES: usize = 65535 * 64;
const MAX_DYNAMIC_BYTES: usize = 1 << 20;
const MAX_ATTRIBUTES_BYTES: usize = 1 << 16;
const MAX_NEEDED: usize = 1024;
const MAX_NAME: usize = 4096;
const SHT_ARM_ATTRIBUTES: u32 = 0x7000_0003;

/// Why bytes could not be classified.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("not an ELF file (no \\x7fELF magic)")]
    NotElf,
    #[error("truncated: the {what} needs {needed} bytes at offset {offset}, the file has {size}")]
    Truncated {
        what: &'static str,
        offset: u64,
        needed: u64,
        size: u64,
    },
    #[error("{what} is invalid: {value}")]
    Invalid { what: &'static str, value: String },
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
}

impl ElfError {
    fn invalid(what: &'static str, value: impl ToString) -> Self {
        ElfError::Invalid {
            what,
            value: value.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Endian {
    Little,
    Big,
}

/// What kind of object the file is (`e_type`, refined for ET_DYN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Executable,
    SharedLibrary,
    Relocatable,
    Core,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Linkage {
    /// No loader, fixed addresses.
    Static,
    /// No loader, relocates itself.
    StaticPie,
    /// Needs a loader (PT_INTERP), or is a shared library loaded by one.
    Dynamic,
    /// Object files and core dumps: not run at all.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Libc {
    Glibc,
    Musl,
    Bionic,
}

/// The calling convention for floating-point values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FloatAbi {
    /// In integer registers (ARM soft/softfp, RISC-V lp64).
    Soft,
    /// In VFP registers (ARM armhf).
    Hard,
    /// RISC-V single precision (lp64f).
    Single,
    /// RISC-V double precision (lp64d, the Linux distribution default).
    Double,
    /// RISC-V quad precision (lp64q).
    Quad,
    /// Compatible with both ARM conventions (no floating-point arguments).
    Any,
}

/// An ABI a loader requires of the programs it loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Abi {
    Any,
    ArmHard,
    ArmSoft,
    RiscvDouble,
    RiscvSoft,
    Ppc64V1,
    Ppc64V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MipsAbi {
    O32,
    N32,
    N64,
}

/// Everything rcross tells about one ELF file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ElfInfo {
    /// The platform the code is for; `null` when no platform rcross knows has this machine.
    pub platform: Option<Platform>,
    /// Architecture name from `e_machine` ("x86_64", "aarch64", "arm", "riscv", …).
    pub machine: String,
    pub e_machine: u16,
    pub class: u8,
    pub endian: Endian,
    pub kind: Kind,
    pub linkage: Linkage,
    /// PT_INTERP: the loader a dynamic program needs.
    pub interpreter: Option<String>,
    /// C library family of the loader.
    pub libc: Option<Libc>,
    /// Whether the loader is the one for this file's machine and ABI; `null` without a loader or
    /// when the loader is unknown.
    pub interpreter_matches: Option<bool>,
    /// DT_NEEDED libraries.
    pub needed: Vec<String>,
    pub e_flags: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub float_abi: Option<FloatAbi>,
    /// ARM EABI version from e_flags (5 for every current toolchain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arm_eabi: Option<u8>,
    /// ARM architecture version from Tag_CPU_arch ("v7", "v6KZ", "v5TE", …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arm_arch: Option<String>,
    /// The variant level (5, 6, 7, 8) the ARM code needs, when the attributes say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arm_level: Option<u8>,
    /// Code for Thumb only (no ARM instruction set), e.g. M-profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumb_only: Option<bool>,
    /// RISC-V compressed instructions (C extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rvc: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mips_abi: Option<MipsAbi>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mips_isa: Option<String>,
    /// PowerPC64 ELF ABI version (1 or 2), from e_flags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ppc64_abi: Option<u8>,
    /// Parts the headers point at lie beyond the data given (a prefix of a larger file).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

impl ElfInfo {
    /// The ABI this file's code uses, as loaders require it.
    pub fn abi(&self) -> Abi {
        match (self.e_machine, self.float_abi) {
            (EM_ARM, Some(FloatAbi::Hard)) => Abi::ArmHard,
            (EM_ARM, Some(FloatAbi::Soft)) => Abi::ArmSoft,
            (EM_RISCV, Some(FloatAbi::Double)) => Abi::RiscvDouble,
            (EM_RISCV, Some(FloatAbi::Soft)) => Abi::RiscvSoft,
            (EM_PPC64, _) if self.ppc64_abi == Some(1) => Abi::Ppc64V1,
            (EM_PPC64, _) if self.ppc64_abi == Some(2) => Abi::Ppc64V2,
            _ => Abi::Any,
        }
    }

    /// "linux/arm/v7", or the machine name when no platform matches.
    pub fn describe(&self) -> String {
        match self.platform {
            Some(p) => p.to_string(),
            None => format!(
                "{} ({}-bit {}-endian)",
                self.machine,
                self.class,
                self.endian_str()
            ),
        }
    }

    fn endian_str(&self) -> &'static str {
        match self.endian {
            Endian::Little => "little",
            Endian::Big => "big",
        }
    }
}

/// Classify a file held in memory; `data` may be a prefix of the file.
pub fn classify(data: &[u8]) -> Result<ElfInfo, ElfError> {
    classify_from(&mut SliceSource(data))
}

/// Whether these first bytes start an ELF file.
pub fn is_elf(prefix: &[u8]) -> bool {
    prefix.starts_with(MAGIC)
}

/// Classify a file through random access, reading only the parts needed.
pub fn classify_from(src: &mut dyn ReadAt) -> Result<ElfInfo, ElfError> {
    let header = read_header(src)?;
    let phdrs = read_program_headers(src, &header)?;
    let mut parts = PrefixReader {
        src,
        partial: false,
    };
    let interpreter = read_interpreter(&mut parts, &phdrs)?;
    let dynamic = read_dynamic(&mut parts, &header, &phdrs)?;
    let attrs = if header.e_machine == EM_ARM {
        read_arm_attributes(&mut parts, &header)?
    } else {
        arm::Attributes::default()
    };
    let (kind, linkage) = kind_and_linkage(header.e_type, interpreter.is_some(), &dynamic);

    let mut info = ElfInfo {
        platform: None,
        machine: machine_name(header.e_machine),
        e_machine: header.e_machine,
        class: header.class,
        endian: if header.r.big {
            Endian::Big
        } else {
            Endian::Little
        },
        kind,
        linkage,
        libc: interpreter.as_deref().and_then(loaders::libc_of),
        interpreter,
        interpreter_matches: None,
        needed: dynamic.needed,
        e_flags: header.e_flags,
        float_abi: None,
        arm_eabi: None,
        arm_arch: None,
        arm_level: None,
        thumb_only: None,
        rvc: None,
        mips_abi: None,
        mips_isa: None,
        ppc64_abi: None,
        partial: parts.partial,
    };
    match header.e_machine {
        EM_ARM => arm_details(&mut info, &attrs),
        EM_RISCV => riscv_details(&mut info),
        EM_MIPS => mips_details(&mut info),
        EM_PPC64 => ppc64_details(&mut info),
        _ => {}
    }
    info.platform = platform_of(&info);
    info.interpreter_matches = interpreter_matches(&info);
    Ok(info)
}

/// The fields of the ELF header that classification uses.
struct ElfHeader {
    class: u8,
    r: Rd,
    e_type: u16,
    e_machine: u16,
    e_flags: u32,
    phoff: u64,
    phentsize: u16,
    phnum: u16,
    shoff: u64,
    shentsize: u16,
    shnum: u16,
    /// Length of the whole file.
    size: u64,
}

impl ElfHeader {
    fn truncated(&self, what: &'static str, offset: u64, needed: u64) -> ElfError {
        ElfError::Truncated {
            what,
            offset,
            needed,
            size: self.size,
        }
    }
}

/// Check the identification bytes and read the ELF header.
fn read_header(src: &mut dyn ReadAt) -> Result<ElfHeader, ElfError> {
    let size = src.size();
    let ident = src.read_range(0, 64)?;
    if !ident.starts_with(MAGIC) {
        return Err(ElfError::NotElf);
    }
    let need = |what, needed: u64| ElfError::Truncated {
        what,
        offset: 0,
        needed,
        size,
    };
    if ident.len() < 16 {
        return Err(need("ELF identification", 16));
    }
    let class = match ident[4] {
        1 => 32u8,
        2 => 64,
        v => return Err(ElfError::invalid("ELF class (EI_CLASS)", v)),
    };
    let big = match ident[5] {
        1 => false,
        2 => true,
        v => return Err(ElfError::invalid("byte order (EI_DATA)", v)),
    };
    let r = Rd { big };
    let ehsize = if class == 64 { 64 } else { 52 };
    if ident.len() < ehsize {
        return Err(need("ELF header", ehsize as u64));
    }
    let h = &ident[..];
    let (phoff, shoff, e_flags, phentsize, phnum, shentsize, shnum) = if class == 64 {
        (
            r.u64(h, 32),
            r.u64(h, 40),
            r.u32(h, 48),
            r.u16(h, 54),
            r.u16(h, 56),
            r.u16(h, 58),
            r.u16(h, 60),
        )
    } else {
        (
            u64::from(r.u32(h, 28)),
            u64::from(r.u32(h, 32)),
            r.u32(h, 36),
            r.u16(h, 42),
            r.u16(h, 44),
            r.u16(h, 46),
            r.u16(h, 48),
        )
    };
    Ok(ElfHeader {
        class,
        r,
        e_type: r.u16(h, 16),
        e_machine: r.u16(h, 18),
        e_flags,
        phoff,
        phentsize,
        phnum,
        shoff,
        shentsize,
        shnum,
        size,
    })
}

/// The program header table, which must lie wholly within the data.
fn read_program_headers(src: &mut dyn ReadAt, h: &ElfHeader) -> Result<Vec<Phdr>, ElfError> {
    let (r, phoff, phentsize) = (h.r, h.phoff, h.phentsize);
    if h.phnum == 0 {
        return Ok(Vec::new());
    }
    let min_ph = if h.class == 64 { 56 } else { 32 };
    if usize::from(phentsize) < min_ph {
        return Err(ElfError::invalid(
            "program header size (e_phentsize)",
            phentsize,
        ));
    }
    let total = usize::from(phentsize) * usize::from(h.phnum);
    if total > MAX_PHDR_BYTES {
        return Err(ElfError::invalid("program header table size", total));
    }
    let end = phoff.checked_add(total as u64);
    if end.is_none_or(|e| e > h.size) {
        return Err(h.truncated("program header table", phoff, total as u64));
    }
    let table = src.read_range(phoff, total)?;
    if table.len() < total {
        return Err(h.truncated("program header table", phoff, total as u64));
    }
    let phdrs = table
        .chunks_exact(usize::from(phentsize))
        .map(|e| {
            if h.class == 64 {
                Phdr {
                    p_type: r.u32(e, 0),
                    offset: r.u64(e, 8),
                    vaddr: r.u64(e, 16),
                    filesz: r.u64(e, 32),
                }
            } else {
                Phdr {
                    p_type: r.u32(e, 0),
                    offset: u64::from(r.u32(e, 4)),
                    vaddr: u64::from(r.u32(e, 8)),
                    filesz: u64::from(r.u32(e, 16)),
                }
            }
        })
        .collect();
    Ok(phdrs)
}

/// Reads the parts the headers point at from data that may be only a prefix of the file,
/// remembering whether any of them was cut off.
struct PrefixReader<'a> {
    src: &'a mut dyn ReadAt,
    partial: bool,
}

impl PrefixReader<'_> {
    /// Up to `len` bytes at `offset`; fewer mark the file as partial.
    fn read(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let bytes = self.src.read_range(offset, len)?;
        if bytes.len() < len {
            self.partial = true;
        }
        Ok(bytes)
    }
}

/// PT_INTERP: the loader a dynamic program names.
fn read_interpreter(parts: &mut PrefixReader, phdrs: &[Phdr]) -> io::Result<Option<String>> {
    let Some(ph) = phdrs.iter().find(|p| p.p_type == PT_INTERP) else {
        return Ok(None);
    };
    let len = usize::try_from(ph.filesz).unwrap_or(MAX_NAME).min(MAX_NAME);
    let bytes = parts.read(ph.offset, len)?;
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Ok(Some(String::from_utf8_lossy(&bytes[..end]).into_owned()))
}

/// What the dynamic section (PT_DYNAMIC) says.
#[derive(Default)]
struct DynamicSection {
    /// Whether the file has one.
    present: bool,
    /// DT_NEEDED library names.
    needed: Vec<String>,
    /// DT_FLAGS_1 (DF_1_PIE marks a position-independent executable).
    flags_1: u64,
}

fn read_dynamic(
    parts: &mut PrefixReader,
    h: &ElfHeader,
    phdrs: &[Phdr],
) -> io::Result<DynamicSection> {
    let Some(ph) = phdrs.iter().find(|p| p.p_type == PT_DYNAMIC) else {
        return Ok(DynamicSection::default());
    };
    let mut section = DynamicSection {
        present: true,
        ..DynamicSection::default()
    };
    let len = usize::try_from(ph.filesz)
        .unwrap_or(MAX_DYNAMIC_BYTES)
        .min(MAX_DYNAMIC_BYTES);
    let dynamic = parts.read(ph.offset, len)?;
    let (r, dsz) = (h.r, if h.class == 64 { 16 } else { 8 });
    let mut strtab = None;
    let mut name_offsets = Vec::new();
    for d in dynamic.chunks_exact(dsz) {
        let (tag, val) = if h.class == 64 {
            (r.u64(d, 0), r.u64(d, 8))
        } else {
            (u64::from(r.u32(d, 0)), u64::from(r.u32(d, 4)))
        };
        match tag {
            DT_NULL => break,
            DT_NEEDED if name_offsets.len() < MAX_NEEDED => name_offsets.push(val),
            DT_STRTAB => strtab = Some(val),
            DT_FLAGS_1 => section.flags_1 = val,
            _ => {}
        }
    }
    match strtab.and_then(|va| vaddr_to_offset(phdrs, va)) {
        Some(base) => {
            for off in name_offsets {
                let Some(at) = base.checked_add(off) else {
                    continue;
                };
                let bytes = parts.src.read_range(at, 256)?;
                let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                if end == bytes.len() && bytes.len() < 256 {
                    parts.partial = true;
                }
                section
                    .needed
                    .push(String::from_utf8_lossy(&bytes[..end]).into_owned());
            }
        }
        None if !name_offsets.is_empty() => parts.partial = true,
        None => {}
    }
    Ok(section)
}

/// The `.ARM.attributes` section, found by section type, so the section name table is not
/// needed.
fn read_arm_attributes(parts: &mut PrefixReader, h: &ElfHeader) -> io::Result<arm::Attributes> {
    let r = h.r;
    let min_sh = if h.class == 64 { 64 } else { 40 };
    if h.shnum == 0 || h.shoff == 0 || usize::from(h.shentsize) < min_sh {
        return Ok(arm::Attributes::default());
    }
    let total = (usize::from(h.shentsize) * usize::from(h.shnum)).min(MAX_SHDR_BYTES);
    let table = parts.read(h.shoff, total)?;
    for s in table.chunks_exact(usize::from(h.shentsize)) {
        let (sh_type, off, len) = if h.class == 64 {
            (r.u32(s, 4), r.u64(s, 24), r.u64(s, 32))
        } else {
            (
                r.u32(s, 4),
                u64::from(r.u32(s, 16)),
                u64::from(r.u32(s, 20)),
            )
        };
        if sh_type == SHT_ARM_ATTRIBUTES {
            let len = usize::try_from(len)
                .unwrap_or(MAX_ATTRIBUTES_BYTES)
                .min(MAX_ATTRIBUTES_BYTES);
            let data = parts.read(off, len)?;
            return Ok(arm::parse(&data, r.big));
        }
    }
    Ok(arm::Attributes::default())
}

/// What the object is (`e_type`, an ET_DYN with a loader or DF_1_PIE being an executable) and
/// how it is linked.
fn kind_and_linkage(
    e_type: u16,
    has_interpreter: bool,
    dynamic: &DynamicSection,
) -> (Kind, Linkage) {
    let kind = match e_type {
        ET_EXEC => Kind::Executable,
        ET_DYN if has_interpreter || dynamic.flags_1 & DF_1_PIE != 0 => Kind::Executable,
        ET_DYN => Kind::SharedLibrary,
        ET_REL => Kind::Relocatable,
        ET_CORE => Kind::Core,
        _ => Kind::Other,
    };
    let linkage = if has_interpreter {
        Linkage::Dynamic
    } else {
        match kind {
            Kind::Executable if e_type == ET_DYN => Linkage::StaticPie,
            Kind::Executable => Linkage::Static,
            Kind::SharedLibrary if dynamic.present => Linkage::Dynamic,
            Kind::SharedLibrary => Linkage::StaticPie,
            _ => Linkage::None,
        }
    };
    (kind, linkage)
}

/// Whether the loader is one known for this file's machine, class, byte order and ABI; `None`
/// without a loader or when the loader is unknown.
fn interpreter_matches(info: &ElfInfo) -> Option<bool> {
    let interp = info.interpreter.as_deref()?;
    let mut known = loaders::lookup(interp).peekable();
    known.peek()?;
    let abi = info.abi();
    let big = info.endian == Endian::Big;
    Some(known.any(|l| {
        l.machine == info.e_machine
            && l.class == info.class
            && l.big_endian == big
            && (l.abi == Abi::Any || abi == Abi::Any || l.abi == abi)
    }))
}

fn riscv_details(info: &mut ElfInfo) {
    const EF_RISCV_RVC: u32 = 0x1;
    info.rvc = Some(info.e_flags & EF_RISCV_RVC != 0);
    info.float_abi = Some(match (info.e_flags >> 1) & 3 {
        0 => FloatAbi::Soft,
        1 => FloatAbi::Single,
        2 => FloatAbi::Double,
        _ => FloatAbi::Quad,
    });
}

fn mips_details(info: &mut ElfInfo) {
    const EF_MIPS_ABI2: u32 = 0x20;
    info.mips_abi = Some(if info.class == 64 {
        MipsAbi::N64
    } else if info.e_flags & EF_MIPS_ABI2 != 0 {
        MipsAbi::N32
    } else {
        MipsAbi::O32
    });
    info.mips_isa = Some(
        match info.e_flags >> 28 {
            0 => "mips1",
            1 => "mips2",
            2 => "mips3",
            3 => "mips4",
            4 => "mips5",
            5 => "mips32",
            6 => "mips64",
            7 => "mips32r2",
            8 => "mips64r2",
            9 => "mips32r6",
            10 => "mips64r6",
            _ => "unknown",
        }
        .to_string(),
    );
}

fn ppc64_details(info: &mut ElfInfo) {
    // e_flags bits 0-1: 0 = unspecified (big-endian toolchains mean v1), 1 = v1, 2 = v2.
    info.ppc64_abi = Some(match info.e_flags & 3 {
        2 => 2,
        1 => 1,
        _ if info.endian == Endian::Big => 1,
        _ => 2,
    });
}

fn arm_details(info: &mut ElfInfo, attrs: &arm::Attributes) {
    const EF_ARM_ABI_FLOAT_SOFT: u32 = 0x200;
    const EF_ARM_ABI_FLOAT_HARD: u32 = 0x400;
    let eabi = (info.e_flags >> 24) as u8;
    info.arm_eabi = Some(eabi);
    info.float_abi = match attrs.vfp_args {
        Some(1) => Some(FloatAbi::Hard),
        Some(0) => Some(FloatAbi::Soft),
        Some(3) => Some(FloatAbi::Any),
        _ if info.e_flags & EF_ARM_ABI_FLOAT_HARD != 0 => Some(FloatAbi::Hard),
        _ if info.e_flags & EF_ARM_ABI_FLOAT_SOFT != 0 => Some(FloatAbi::Soft),
        // Without either flag or attribute, EABI5 means the base (soft) convention.
        _ => Some(FloatAbi::Soft),
    };
    // A hard-float program linked against a soft-float loader or vice versa is decided by
    // the loader for the whole process; the file's own attributes still win for the file.
    if info.float_abi == Some(FloatAbi::Any) {
        if let Some(l) = info
            .interpreter
            .as_deref()
            .and_then(|i| loaders::lookup(i).next())
        {
            info.float_abi = match l.abi {
                Abi::ArmHard => Some(FloatAbi::Hard),
                Abi::ArmSoft => Some(FloatAbi::Soft),
                _ => Some(FloatAbi::Any),
            };
        }
    }
    if let Some((level, name)) = attrs.cpu_arch.and_then(arm::arch_level) {
        info.arm_level = Some(level);
        info.arm_arch = Some(name.to_string());
    }
    info.thumb_only = Some(attrs.arm_isa_use == Some(0) || attrs.profile == Some(u64::from(b'M')));
}

/// The platform row for the file's machine, class and byte order; for ARM the variant is the
/// architecture level the code needs, or when the attributes are missing the lowest level that
/// fits the float ABI (v5 soft-float, v6 hard-float: VFP hard-float starts with ARMv6 in Linux
/// devices).
fn platform_of(info: &ElfInfo) -> Option<Platform> {
    let big = info.endian == Endian::Big;
    let rows = Platform::all().filter(|p| {
        let a = p.info();
        a.elf_machine == info.e_machine && a.elf_class == info.class && a.big_endian == big
    });
    if info.e_machine != EM_ARM {
        // One row per (machine, class, endian) outside ARM; MIPS n32 is 32-bit class but a
        // 64-bit ABI, which no platform stands for.
        if info.mips_abi == Some(MipsAbi::N32) {
            return None;
        }
        return rows.into_iter().next();
    }
    let level = info.arm_level.unwrap_or(match info.float_abi {
        Some(FloatAbi::Hard) => 6,
        _ => 5,
    });
    let want = format!("v{level}");
    rows.into_iter()
        .find(|p| p.variant() == Some(want.as_str()))
}

/// Fuzzing entry point (cargo-fuzz target and the loop harness in tests/): classify, judge
/// against every platform, serialise.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    if let Ok(info) = classify(data) {
        for p in Platform::all() {
            let _ = check(&info, &p);
        }
        let _ = serde_json::to_string(&info);
    }
}

/// Lower-case architecture name of an `e_machine` value.
pub fn machine_name(m: u16) -> String {
    match m {
        EM_X86_64 => "x86_64".into(),
        EM_386 => "i386".into(),
        EM_AARCH64 => "aarch64".into(),
        EM_ARM => "arm".into(),
        EM_RISCV => "riscv".into(),
        EM_PPC64 => "ppc64".into(),
        EM_S390 => "s390".into(),
        EM_MIPS => "mips".into(),
        EM_LOONGARCH => "loongarch".into(),
        other => {
            let s = machine_to_str(other);
            if s == "EM_UNKNOWN" || s.is_empty() {
                format!("e_machine {other}")
            } else {
                s.trim_start_matches("EM_").to_ascii_lowercase()
            }
        }
    }
}

struct Phdr {
    p_type: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

fn vaddr_to_offset(phdrs: &[Phdr], va: u64) -> Option<u64> {
    phdrs
        .iter()
        .filter(|p| p.p_type == PT_LOAD)
        .find(|p| va >= p.vaddr && va - p.vaddr < p.filesz)
        .and_then(|p| p.offset.checked_add(va - p.vaddr))
}

/// Endian-aware reads from a slice whose length the caller checked; short slices read as zero.
#[derive(Clone, Copy)]
struct Rd {
    big: bool,
}

impl Rd {
    fn bytes<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
        b.get(at..at + N)
            .and_then(|s| s.try_into().ok())
            .unwrap_or([0; N])
    }
    fn u16(self, b: &[u8], at: usize) -> u16 {
        let a = Self::bytes::<2>(b, at);
        if self.big {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        }
    }
    fn u32(self, b: &[u8], at: usize) -> u32 {
        let a = Self::bytes::<4>(b, at);
        if self.big {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }
    fn u64(self, b: &[u8], at: usize) -> u64 {
        let a = Self::bytes::<8>(b, at);
        if self.big {
            u64::from_be_bytes(a)
        } else {
            u64::from_le_bytes(a)
        }
    }
}

#[cfg(test)]
mod tests;
