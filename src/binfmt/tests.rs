//! Cross-checks between the three independent descriptions of each architecture: the handler
//! data files (binfmt/*.toml), the platform table (ARCHES) and the self-test programs. Each is
//! written separately, so any one of them being wrong makes one of these tests fail.

use super::catalog::BUILTIN_FILES;
use super::selftest::{program, EXIT_CODE};
use super::*;
use crate::host::{linux::LinuxHost, Host, ProbeOutcome};
use crate::platform::{ArchInfo, Platform};
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const ET_REL: u16 = 1;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const ET_CORE: u16 = 4;

/// A minimal ELF header for a table row, written independently of the self-test ELF writer:
/// ident, e_type at 16, e_machine at 18, e_version at 20, e_flags at 36 (ELF32) or 48 (ELF64).
fn header(a: &ArchInfo, e_type: u16, e_flags: u32) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = if a.elf_class == 64 { 2 } else { 1 };
    h[5] = if a.big_endian { 2 } else { 1 };
    h[6] = 1;
    let flags_at = if a.elf_class == 64 { 48 } else { 36 };
    if a.big_endian {
        h[16..18].copy_from_slice(&e_type.to_be_bytes());
        h[18..20].copy_from_slice(&a.elf_machine.to_be_bytes());
        h[20..24].copy_from_slice(&1u32.to_be_bytes());
        h[flags_at..flags_at + 4].copy_from_slice(&e_flags.to_be_bytes());
    } else {
        h[16..18].copy_from_slice(&e_type.to_le_bytes());
        h[18..20].copy_from_slice(&a.elf_machine.to_le_bytes());
        h[20..24].copy_from_slice(&1u32.to_le_bytes());
        h[flags_at..flags_at + 4].copy_from_slice(&e_flags.to_le_bytes());
    }
    h
}

fn builtin() -> Catalog {
    Catalog::builtin().unwrap_or_else(|e| panic!("built-in catalog: {e}"))
}

fn p(s: &str) -> Platform {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn builtin_files_are_named_after_their_handler() {
    let c = builtin();
    assert_eq!(c.handlers.len(), BUILTIN_FILES.len());
    for (h, (file, _)) in c.handlers.iter().zip(BUILTIN_FILES) {
        assert_eq!(*file, format!("binfmt/{}.toml", h.name));
        assert_eq!(h.source, "builtin");
        assert_eq!(h.kernel_name(), format!("rcross-{}", h.name));
        assert!(h.preserve_argv0, "{}: every QEMU ≥ 2.12 supports P", h.name);
        assert_eq!(
            h.emulators,
            [
                format!("qemu-{}-static", h.name),
                format!("qemu-{}", h.name)
            ],
            "{}: static emulator first",
            h.name
        );
    }
}

/// The handler names the caller expects, each with the platforms it serves.
#[test]
fn expected_handlers_serve_expected_platforms() {
    let c = builtin();
    let expect: &[(&str, &[&str])] = &[
        ("i386", &["linux/386"]),
        (
            "arm",
            &[
                "linux/arm/v7",
                "linux/arm/v6",
                "linux/arm/v5",
                "linux/arm/v8",
            ],
        ),
        ("aarch64", &["linux/arm64"]),
        ("riscv64", &["linux/riscv64"]),
        ("ppc64le", &["linux/ppc64le"]),
        ("ppc64", &["linux/ppc64"]),
        ("s390x", &["linux/s390x"]),
        ("mips64el", &["linux/mips64le"]),
        ("mips64", &["linux/mips64"]),
        ("mipsel", &["linux/mipsle"]),
        ("mips", &["linux/mips"]),
        ("loongarch64", &["linux/loong64"]),
        ("x86_64", &["linux/amd64"]),
    ];
    assert_eq!(c.handlers.len(), expect.len());
    for (name, plats) in expect {
        let h = c
            .by_name(name)
            .unwrap_or_else(|| panic!("no built-in handler {name}"));
        let want: Vec<Platform> = plats.iter().map(|s| p(s)).collect();
        assert_eq!(h.platforms, want, "{name}");
    }
}

/// The data file and the platform table describe the same ELF header, byte by byte.
#[test]
fn magic_and_mask_agree_with_the_platform_table() {
    for h in builtin().handlers {
        let n = &h.name;
        assert_eq!(h.offset, 0, "{n}: ELF magic starts the file");
        assert!(h.magic.len() >= 20, "{n}: must cover e_machine");
        assert_eq!(&h.magic[..4], b"\x7fELF", "{n}");
        assert_eq!(&h.mask[..4], &[0xff; 4], "{n}");
        for plat in &h.platforms {
            let a = plat.info();
            // EI_CLASS fully compared.
            assert_eq!(h.mask[4], 0xff, "{n}: class byte must be compared");
            assert_eq!(h.magic[4], if a.elf_class == 64 { 2 } else { 1 }, "{n}");
            // EI_DATA: our byte order matches, the other one does not.
            let (ours, other) = if a.big_endian { (2, 1) } else { (1, 2) };
            assert_eq!(h.magic[5], ours & h.mask[5], "{n}: byte order");
            assert_ne!(other & h.mask[5], h.magic[5], "{n}: other byte order");
            // e_type: executables and PIEs, nothing else.
            for (t, want) in [
                (ET_EXEC, true),
                (ET_DYN, true),
                (ET_REL, false),
                (ET_CORE, false),
            ] {
                let bytes = if a.big_endian {
                    t.to_be_bytes()
                } else {
                    t.to_le_bytes()
                };
                let hit = (0..2).all(|i| (bytes[i] ^ h.magic[16 + i]) & h.mask[16 + i] == 0);
                assert_eq!(hit, want, "{n}: e_type {t}");
            }
            // e_machine in the platform's byte order.
            let m = if a.big_endian {
                a.elf_machine.to_be_bytes()
            } else {
                a.elf_machine.to_le_bytes()
            };
            for (i, byte) in m.iter().enumerate() {
                assert_eq!(
                    h.magic[18 + i],
                    byte & h.mask[18 + i],
                    "{n}: e_machine byte {i} for {plat}"
                );
            }
            // And the same through `matches` on whole headers.
            assert!(h.matches(&header(a, ET_EXEC, 0)), "{n}: {plat} executable");
            assert!(h.matches(&header(a, ET_DYN, 0)), "{n}: {plat} PIE");
            assert!(!h.matches(&header(a, ET_REL, 0)), "{n}: {plat} object file");
            assert!(!h.matches(&header(a, ET_CORE, 0)), "{n}: {plat} core dump");
        }
    }
}

#[test]
fn every_platform_is_served_by_exactly_one_handler() {
    let c = builtin();
    for plat in Platform::all() {
        let serving: Vec<&str> = c
            .handlers
            .iter()
            .filter(|h| h.platforms.contains(&plat))
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(serving.len(), 1, "{plat} is served by {serving:?}");
        let h = c.for_platform(&plat).map(|h| h.name.as_str());
        assert_eq!(h, Some(serving[0]));
        // And the kernel's view agrees: a typical executable of this platform is matched by
        // that handler and no other.
        let matched: Vec<&str> = c
            .matching(&header(plat.info(), ET_EXEC, 0))
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(matched, serving, "{plat}: header matched by {matched:?}");
    }
}

#[test]
fn mips_o32_handlers_leave_n32_programs_alone() {
    const EF_MIPS_ABI2: u32 = 0x20;
    let c = builtin();
    for plat in ["linux/mips", "linux/mipsle"] {
        let a = p(plat).info();
        assert!(
            c.matching(&header(a, ET_EXEC, EF_MIPS_ABI2)).is_empty(),
            "{plat}"
        );
        assert_eq!(
            c.matching(&header(a, ET_EXEC, 0x5000_1000)).len(),
            1,
            "{plat}"
        );
    }
}

#[test]
fn self_test_programs_are_well_formed() {
    for plat in Platform::all() {
        let prog = program(&plat).unwrap_or_else(|| panic!("no self-test program for {plat}"));
        assert!(prog.len() <= 256, "{plat}: {} bytes", prog.len());
        let elf = goblin::elf::Elf::parse(&prog).unwrap_or_else(|e| panic!("{plat}: {e}"));
        let a = plat.info();
        assert_eq!(elf.is_64, a.elf_class == 64, "{plat}");
        assert_eq!(elf.little_endian, !a.big_endian, "{plat}");
        assert_eq!(elf.header.e_machine, a.elf_machine, "{plat}");
        assert_eq!(elf.header.e_type, ET_EXEC, "{plat}");
        assert_eq!(elf.program_headers.len(), 1, "{plat}");
        let ph = &elf.program_headers[0];
        assert_eq!(ph.p_filesz as usize, prog.len(), "{plat}");
        let start = ph.p_vaddr;
        let end = start + ph.p_filesz;
        assert!(
            (start..end).contains(&elf.entry),
            "{plat}: entry outside the file"
        );
        assert_eq!(ph.p_vaddr % ph.p_align, ph.p_offset % ph.p_align, "{plat}");
    }
}

/// The programs and the binfmt data verify each other: each program is recognised by its own
/// platform's handler and by no other.
#[test]
fn each_self_test_program_is_matched_by_its_handler_only() {
    let c = builtin();
    let mut cases = crate::prereq::Cases::new("self-test programs matched against the catalog");
    for plat in Platform::all() {
        let Some(prog) = program(&plat) else { continue };
        let Some(h) = c.for_platform(&plat) else {
            continue;
        };
        let matched: Vec<&str> = c.matching(&prog).iter().map(|h| h.name.as_str()).collect();
        assert_eq!(matched, [h.name.as_str()], "{plat}");
        cases.ran();
    }
    cases.finish();
}

/// Runs every self-test program under its emulator (natively for the host's own platform) and
/// checks the exit status: the hand-assembled code really is exit(EXIT_CODE).
///
/// Needs the emulators (Debian: `apt-get install qemu-user-static`): a missing one is a missing
/// prerequisite ([`crate::prereq`]: a failure under tests/run.sh and CI), and a run that executed
/// no program fails.
#[test]
fn self_test_programs_run_under_qemu() {
    use std::os::unix::fs::PermissionsExt;

    let c = builtin();
    let host = Platform::from_uname(std::env::consts::ARCH).ok();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let mut done: HashSet<Vec<u8>> = HashSet::new();
    let mut failures = Vec::new();
    let mut cases = crate::prereq::Cases::new("self-test programs run under QEMU");

    for plat in Platform::all() {
        let Some(prog) = program(&plat) else { continue };
        // All ARM variants share one program; run it once.
        if !done.insert(prog.clone()) {
            continue;
        }
        let Some(h) = c.for_platform(&plat) else {
            failures.push(format!("{plat}: no handler"));
            continue;
        };
        let path = dir.path().join(format!("selftest-{}", plat.slug()));
        std::fs::write(&path, &prog).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));

        let (program_path, args): (PathBuf, Vec<PathBuf>) = if host == Some(plat) {
            (path.clone(), vec![])
        } else {
            let Some(emu) = h.emulators.iter().find_map(|e| which::which(e).ok()) else {
                cases.missing(
                    &format!("{plat}: none of the emulators {:?}", h.emulators),
                    "apt-get install qemu-user-static",
                );
                continue;
            };
            (emu, vec![path.clone()])
        };
        match run(&program_path, &args) {
            Ok(Some(code)) if code == EXIT_CODE => cases.ran(),
            Ok(code) => failures.push(format!(
                "{plat}: {} {:?} exited with {code:?}, want {EXIT_CODE}",
                program_path.display(),
                args
            )),
            Err(e) => failures.push(format!("{plat}: {}: {e}", program_path.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    cases.finish();
}

/// Runs a command and returns its exit code. Retries "text file busy": another test thread may
/// fork while our freshly written file is still open for writing, and the child then holds the
/// write descriptor until it execs.
fn run(program: &std::path::Path, args: &[PathBuf]) -> std::io::Result<Option<i32>> {
    let mut tries = 0;
    loop {
        match Command::new(program).args(args).status() {
            Ok(status) => return Ok(status.code()),
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The real host runs a self-test program among scripts and garbage, all at once: each result
/// comes back in its own place, whatever order they end in, and together they take about as long
/// as the slowest, not the sum. (Setup runs its probes and self-tests this way.)
#[test]
fn host_runs_self_test_programs_at_once_in_order() {
    let slow: &[u8] = b"#!/bin/sh\nsleep 0.4; exit 7\n";
    let fast: &[u8] = b"#!/bin/sh\nexit 3\n";
    let garbage: &[u8] = b"\x00\x01 not a program";
    let elf = program(&p("linux/amd64")).unwrap();
    let start = Instant::now();
    let r = LinuxHost.run_programs(&[slow, fast, garbage, &elf, slow]);
    let took = start.elapsed();
    let r: Vec<ProbeOutcome> = r.into_iter().map(|o| o.unwrap()).collect();
    assert_eq!(
        r,
        vec![
            ProbeOutcome::Exited(7),
            ProbeOutcome::Exited(3),
            ProbeOutcome::ExecFormatError,
            ProbeOutcome::Exited(EXIT_CODE),
            ProbeOutcome::Exited(7),
        ]
    );
    // Two 0.4 s programs one after another would take 0.8 s.
    assert!(took < Duration::from_millis(750), "took {took:?}");
}

/// No two built-in handlers match the same program: setup would otherwise report rcross's own
/// entries as conflicts of each other, and the kernel would pick between them by age.
#[test]
fn builtin_handlers_never_overlap() {
    let c = Catalog::builtin().unwrap();
    for (i, a) in c.handlers.iter().enumerate() {
        for b in &c.handlers[i + 1..] {
            assert!(
                !magics_overlap((a.offset, &a.magic, &a.mask), (b.offset, &b.magic, &b.mask)),
                "built-in handlers {} and {} match the same programs",
                a.name,
                b.name
            );
        }
    }
}
