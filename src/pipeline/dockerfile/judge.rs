//! Which ELF files of a Dockerfile-built image are judged against its platform: those the
//! platform runs. A Dockerfile image carries what packages install, and packages ship ELF files
//! for other architectures that nothing runs: Go's `src/debug/elf/testdata` (executables and
//! objects for 386, arm, ppc, s390x …, mode 0644), `runtime/race/*.syso` objects for every
//! architecture, firmware blobs. Judging those would stop every build that installs Go.
//!
//! Judged: an executable (`ET_EXEC`, or `ET_DYN` with an entry point: a PIE) with an execute
//! bit or in a directory of programs (`/usr/bin` …), and a shared library (`ET_DYN`) that is executable or named `*.so*` under a library
//! directory. Not judged: relocatable objects, core files, executables nobody may execute (no
//! execute bit), and anything under `/usr/share/` or `/usr/local/share/`, which the Filesystem
//! Hierarchy Standard reserves for architecture-independent data (Go's `pprof/testdata/test32`
//! is executable and i386 there). Corrupt ELF headers are judged where an intact file of the
//! same name and mode would be. What is not judged is counted and named in the log.

use crate::elf::{ElfInfo, FindingKind, Kind};

/// Directories whose `*.so*` files the loader loads whatever their mode.
const LIBRARY_DIRS: &[&str] = &[
    "/lib/",
    "/lib64/",
    "/lib32/",
    "/usr/lib/",
    "/usr/lib64/",
    "/usr/lib32/",
    "/usr/local/lib/",
];

/// Directories of programs: an ELF executable there is meant to run even without an execute
/// bit (a COPY that lost it is a bug the ELF check should not hide).
const PROGRAM_DIRS: &[&str] = &[
    "/bin/",
    "/sbin/",
    "/usr/bin/",
    "/usr/sbin/",
    "/usr/local/bin/",
    "/usr/local/sbin/",
    "/usr/libexec/",
];

/// Architecture-independent data (FHS 3.0 §4.11), never run as a program.
const SHARED_DATA_DIRS: &[&str] = &["/usr/share/", "/usr/local/share/"];

/// Whether the file at `path` (absolute in the image), with permission bits `mode`, is one the
/// platform runs or loads (`info` `None`: the headers could not be read).
pub fn runs(path: &str, info: Option<&ElfInfo>, mode: u32) -> bool {
    if SHARED_DATA_DIRS.iter().any(|d| path.starts_with(d)) {
        return false;
    }
    let executable = mode & 0o111 != 0 || PROGRAM_DIRS.iter().any(|d| path.starts_with(d));
    let library_name = {
        let name = path.rsplit('/').next().unwrap_or(path);
        name.ends_with(".so") || name.contains(".so.")
    };
    let in_library_dir = LIBRARY_DIRS.iter().any(|d| path.starts_with(d));
    match info.map(|i| i.kind) {
        Some(Kind::Executable) => executable,
        Some(Kind::SharedLibrary) => executable || (library_name && in_library_dir),
        Some(Kind::Relocatable | Kind::Core | Kind::Other) => false,
        None => executable || (library_name && in_library_dir),
    }
}

/// Whether a finding of `kind` about a file the platform runs stops the build. A shared
/// library (no program interpreter) whose ARM attributes name a newer architecture than the
/// platform's is not judged: libraries carry such code for CPUs that have it and choose at run
/// time (Debian armhf's libgcrypt says ARMv8-A for its crypto-extension routines).
pub fn stops(kind: FindingKind, info: Option<&ElfInfo>) -> bool {
    let library = info.is_some_and(|i| i.kind == Kind::SharedLibrary && i.interpreter.is_none());
    !(kind == FindingKind::ArmArchTooNew && library)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(kind: Kind) -> ElfInfo {
        let mut i = crate::elf::classify(&crate::pipeline::tests::static_exe(62))
            .expect("a minimal x86-64 ELF file");
        i.kind = kind;
        i
    }

    #[test]
    fn what_runs_is_judged_and_what_packages_ship_as_data_is_not() {
        let exe = info(Kind::Executable);
        let dynamic = info(Kind::SharedLibrary);
        let object = info(Kind::Relocatable);
        assert!(runs("/usr/bin/app", Some(&exe), 0o755));
        assert!(runs("/app", Some(&dynamic), 0o755), "a PIE");
        assert!(runs(
            "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13",
            Some(&dynamic),
            0o644
        ));
        assert!(runs("/usr/local/lib/libfoo.so", Some(&dynamic), 0o644));
        assert!(!runs(
            "/usr/share/go-1.19/src/debug/elf/testdata/gcc-386-freebsd-exec",
            Some(&exe),
            0o644
        ));
        assert!(!runs(
            "/usr/share/go-1.19/src/runtime/race/race_linux_arm64.syso",
            Some(&object),
            0o644
        ));
        assert!(!runs(
            "/usr/share/go-1.19/src/debug/elf/testdata/libtiffxx.so_",
            Some(&dynamic),
            0o644
        ));
        assert!(
            !runs("/opt/sdk/lib/x.o", Some(&object), 0o755),
            "objects are never run"
        );
        assert!(!runs(
            "/usr/share/go-1.19/src/runtime/pprof/testdata/test32",
            Some(&exe),
            0o755
        ));
        assert!(
            runs("/usr/bin/app", Some(&exe), 0o644),
            "a program directory"
        );
        assert!(runs("/usr/bin/broken", None, 0o755));
        assert!(!runs("/usr/share/doc/broken", None, 0o644));
    }

    #[test]
    fn a_library_may_carry_code_for_newer_arm_cpus_an_executable_may_not() {
        let exe = info(Kind::Executable);
        let library = info(Kind::SharedLibrary);
        assert!(stops(FindingKind::ArmArchTooNew, Some(&exe)));
        assert!(!stops(FindingKind::ArmArchTooNew, Some(&library)));
        assert!(stops(FindingKind::WrongMachine, Some(&library)));
        let mut pie = info(Kind::SharedLibrary);
        pie.interpreter = Some("/lib/ld-linux-armhf.so.3".into());
        assert!(
            stops(FindingKind::ArmArchTooNew, Some(&pie)),
            "a PIE is a program"
        );
    }
}
