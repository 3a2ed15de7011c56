//! Tiny static programs that only exit with [`EXIT_CODE`], one per architecture.
//!
//! Running one through binfmt_misc proves the whole chain (magic matches, emulator found, the
//! kernel hands over, the emulator runs the code) without any image or toolchain. They are
//! hand-assembled so rcross needs no cross compiler; each instruction is written next to its
//! assembly source, and the tests run every program under its QEMU emulator.
//!
//! Layout of every program: ELF header, one PT_LOAD program header mapping the whole file
//! read+execute at [`LOAD_ADDRESS`], then the code. No sections, no stack use, no data.

use crate::platform::{ArchInfo, Platform};

/// Exit status of every self-test program; distinctive enough not to be confused with shell or
/// emulator failures (1, 126, 127, 128+signal).
pub const EXIT_CODE: i32 = 42;

// The instruction constants below have 42 (0x2a) written into them.
const _: () = assert!(EXIT_CODE == 0x2a);

/// Where the file is mapped. 4 MiB is above `vm.mmap_min_addr` everywhere and a multiple of
/// every page size in use (up to 64 KiB), so the one mapping is aligned for every architecture.
pub const LOAD_ADDRESS: u64 = 0x40_0000;

/// Alignment of the PT_LOAD segment: the largest page size (64 KiB on some arm64, ppc64 and
/// loong64 kernels), so one program works whatever page size the host or emulator uses.
const SEGMENT_ALIGN: u64 = 0x1_0000;

/// The self-test program for platform `p`, or `None` when rcross has none for its architecture.
/// All ARM variants share one program written for ARMv5, which every later variant runs.
pub fn program(p: &Platform) -> Option<Vec<u8>> {
    let info = p.info();
    let elf = Elf::for_arch(info);
    let code = match info.arch {
        "amd64" => AMD64.to_vec(),
        "386" => I386.to_vec(),
        "arm64" => words(AARCH64, info.big_endian),
        "arm" => words(ARM, info.big_endian),
        "riscv64" => words(RISCV64, info.big_endian),
        "ppc64le" => words(PPC64, info.big_endian),
        "ppc64" => return Some(ppc64_elfv1(&elf)),
        "s390x" => S390X.to_vec(),
        "mips64le" | "mips64" => words(MIPS_N64, info.big_endian),
        "mipsle" | "mips" => words(MIPS_O32, info.big_endian),
        "loong64" => words(LOONGARCH64, info.big_endian),
        _ => return None,
    };
    Some(elf.write(&code))
}

// ---------------------------------------------------------------------------------------------
// Code. Byte strings for variable-length ISAs, 32-bit instruction words (written in the target's
// byte order) for the others. Each program is "exit(42)" in that architecture's syscall ABI.

/// x86-64: syscall number in eax, first argument in edi.
#[rustfmt::skip]
const AMD64: &[u8] = &[
    0xb8, 0x3c, 0x00, 0x00, 0x00, // mov eax, 60      ; __NR_exit
    0xbf, 0x2a, 0x00, 0x00, 0x00, // mov edi, 42
    0x0f, 0x05,                   // syscall
];

/// i386: int 0x80 with the number in eax, first argument in ebx.
#[rustfmt::skip]
const I386: &[u8] = &[
    0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1       ; __NR_exit
    0xbb, 0x2a, 0x00, 0x00, 0x00, // mov ebx, 42
    0xcd, 0x80,                   // int 0x80
];

/// AArch64: number in x8, argument in x0.
#[rustfmt::skip]
const AARCH64: &[u32] = &[
    0xd280_0540, // movz x0, #42
    0xd280_0ba8, // movz x8, #93      ; __NR_exit
    0xd400_0001, // svc  #0
];

/// 32-bit ARM, A32 encoding valid from ARMv4 on, EABI (number in r7).
#[rustfmt::skip]
const ARM: &[u32] = &[
    0xe3a0_7001, // mov r7, #1        ; __NR_exit
    0xe3a0_002a, // mov r0, #42
    0xef00_0000, // svc #0
];

/// RISC-V RV64I, no compressed instructions: number in a7, argument in a0.
#[rustfmt::skip]
const RISCV64: &[u32] = &[
    0x02a0_0513, // addi a0, zero, 42
    0x05d0_0893, // addi a7, zero, 93 ; __NR_exit
    0x0000_0073, // ecall
];

/// 64-bit PowerPC (both byte orders): number in r0, argument in r3.
#[rustfmt::skip]
const PPC64: &[u32] = &[
    0x3800_0001, // li r0, 1          ; __NR_exit
    0x3860_002a, // li r3, 42
    0x4400_0002, // sc
];

/// s390x: `svc n` carries syscall numbers below 256 in the instruction; argument in r2.
#[rustfmt::skip]
const S390X: &[u8] = &[
    0xa7, 0x29, 0x00, 0x2a, // lghi %r2, 42
    0x0a, 0x01,             // svc  1         ; __NR_exit
];

/// MIPS n64 (either byte order): number in v0 (n64 numbers start at 5000), argument in a0.
#[rustfmt::skip]
const MIPS_N64: &[u32] = &[
    0x2404_002a, // addiu $a0, $zero, 42
    0x2402_13c2, // addiu $v0, $zero, 5058  ; __NR_exit (n64)
    0x0000_000c, // syscall
];

/// MIPS o32 (either byte order): number in v0 (o32 numbers start at 4000), argument in a0.
#[rustfmt::skip]
const MIPS_O32: &[u32] = &[
    0x2404_002a, // addiu $a0, $zero, 42
    0x2402_0fa1, // addiu $v0, $zero, 4001  ; __NR_exit (o32)
    0x0000_000c, // syscall
];

/// LoongArch64: number in a7, argument in a0.
#[rustfmt::skip]
const LOONGARCH64: &[u32] = &[
    0x0280_a804, // addi.w $a0, $zero, 42
    0x0281_740b, // addi.w $a7, $zero, 93   ; __NR_exit
    0x002b_0000, // syscall 0
];

/// Big-endian ppc64 uses ELFv1, whose entry point is a function descriptor (code address, TOC,
/// environment), not code; that is what the kernel and QEMU expect for an e_flags ABI of 1.
/// The descriptor comes first in the payload, the code right after it.
fn ppc64_elfv1(elf: &Elf) -> Vec<u8> {
    const DESCRIPTOR_LEN: u64 = 24;
    let code_address = LOAD_ADDRESS + elf.headers_len() as u64 + DESCRIPTOR_LEN;
    let mut payload = Vec::new();
    payload.extend(code_address.to_be_bytes()); // entry
    payload.extend(0u64.to_be_bytes()); // TOC: the code uses no globals
    payload.extend(0u64.to_be_bytes()); // environment pointer: unused
    payload.extend(words(PPC64, true));
    elf.write(&payload)
}

fn words(instructions: &[u32], big_endian: bool) -> Vec<u8> {
    instructions
        .iter()
        .flat_map(|w| {
            if big_endian {
                w.to_be_bytes()
            } else {
                w.to_le_bytes()
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// ELF writer.

const ET_EXEC: u16 = 2;
const EV_CURRENT: u8 = 1;
const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_R: u32 = 4;

/// What the ELF header says about the machine.
#[derive(Debug, Clone, Copy)]
struct Elf {
    class64: bool,
    big_endian: bool,
    machine: u16,
    flags: u32,
}

impl Elf {
    /// Class, byte order and machine come from the platform table, so the programs cannot
    /// disagree with it; only e_flags (the ABI) is chosen here.
    fn for_arch(info: &ArchInfo) -> Elf {
        let flags = match info.arch {
            // EABI version 5, no float ABI flag: runs on soft-float (armel) and hard-float
            // (armhf) systems alike, since it touches no floating point.
            "arm" => 0x0500_0000,
            "ppc64le" => 2, // ELFv2
            "ppc64" => 1,   // ELFv1 (function descriptors)
            // EF_MIPS_ARCH_32 | EF_MIPS_ABI_O32; EF_MIPS_ABI2 clear, as the o32 magic requires.
            "mipsle" | "mips" => 0x5000_1000,
            "mips64le" | "mips64" => 0x6000_0000, // EF_MIPS_ARCH_64 (n64 has no ABI bits)
            // EF_LOONGARCH_ABI_DOUBLE_FLOAT | EF_LOONGARCH_OBJABI_V1, as current toolchains write.
            "loong64" => 0x43,
            _ => 0,
        };
        Elf {
            class64: info.elf_class == 64,
            big_endian: info.big_endian,
            machine: info.elf_machine,
            flags,
        }
    }

    fn ehdr_len(&self) -> usize {
        if self.class64 {
            64
        } else {
            52
        }
    }

    fn phdr_len(&self) -> usize {
        if self.class64 {
            56
        } else {
            32
        }
    }

    fn headers_len(&self) -> usize {
        self.ehdr_len() + self.phdr_len()
    }

    /// A complete executable: headers, then `payload`, where execution starts (for ELFv1
    /// ppc64, the payload starts with the entry's function descriptor instead).
    fn write(&self, payload: &[u8]) -> Vec<u8> {
        let mut w = Writer {
            out: Vec::new(),
            be: self.big_endian,
            wide: self.class64,
        };
        let headers = self.headers_len() as u64;
        let file_len = headers + payload.len() as u64;

        // e_ident
        w.out.extend(b"\x7fELF");
        w.out.push(if self.class64 { 2 } else { 1 }); // EI_CLASS
        w.out.push(if self.big_endian { 2 } else { 1 }); // EI_DATA
        w.out.push(EV_CURRENT); // EI_VERSION
        w.out.push(0); // EI_OSABI: System V
        w.out.extend([0u8; 8]); // EI_ABIVERSION + padding
        w.u16(ET_EXEC);
        w.u16(self.machine);
        w.u32(u32::from(EV_CURRENT));
        w.addr(LOAD_ADDRESS + headers); // e_entry
        w.addr(self.ehdr_len() as u64); // e_phoff
        w.addr(0); // e_shoff: no sections
        w.u32(self.flags);
        w.u16(self.ehdr_len() as u16);
        w.u16(self.phdr_len() as u16);
        w.u16(1); // e_phnum
        w.u16(if self.class64 { 64 } else { 40 }); // e_shentsize
        w.u16(0); // e_shnum
        w.u16(0); // e_shstrndx

        // The one program header: the whole file, readable and executable.
        w.u32(PT_LOAD);
        if self.class64 {
            w.u32(PF_R | PF_X); // p_flags comes second in ELF64
        }
        w.addr(0); // p_offset
        w.addr(LOAD_ADDRESS); // p_vaddr
        w.addr(LOAD_ADDRESS); // p_paddr
        w.addr(file_len); // p_filesz
        w.addr(file_len); // p_memsz
        if !self.class64 {
            w.u32(PF_R | PF_X); // and last but one in ELF32
        }
        w.addr(SEGMENT_ALIGN);

        w.out.extend(payload);
        w.out
    }
}

/// Appends integers in the target's byte order and address width.
struct Writer {
    out: Vec<u8>,
    be: bool,
    wide: bool,
}

impl Writer {
    /// A number's bytes in the file's byte order.
    fn number<const N: usize>(&mut self, big: [u8; N], little: [u8; N]) {
        self.out.extend(if self.be { big } else { little });
    }

    fn u16(&mut self, v: u16) {
        self.number(v.to_be_bytes(), v.to_le_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.number(v.to_be_bytes(), v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.number(v.to_be_bytes(), v.to_le_bytes());
    }

    /// An address or offset: 8 bytes in ELF64, 4 in ELF32 (all values here fit in 32 bits).
    fn addr(&mut self, v: u64) {
        if self.wide {
            self.u64(v);
        } else {
            self.u32(v as u32);
        }
    }
}
