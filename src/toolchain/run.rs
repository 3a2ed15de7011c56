//! `rcross run`: run a foreign program through its QEMU user-mode emulator directly (no
//! binfmt_misc handler needed), as the platform's CPU variant, with a sysroot for dynamically
//! linked programs.

use super::Catalog;
use crate::binfmt;
use crate::detect::{self, Linkage};
use crate::host::{CommandSpec, Host};
use crate::platform::Platform;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub platform: Platform,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// `--sysroot`, else `$QEMU_LD_PREFIX`, else the catalog's toolchain sysroot.
    pub sysroot: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Detect(#[from] detect::DetectError),
    #[error("program {0:?} not found on PATH; give its path")]
    NotFound(String),
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no QEMU emulator for {platform} is installed (looked for {tried}): run `sudo rcross toolchain install {platform}`")]
    NoEmulator { platform: Platform, tried: String },
    #[error("rcross knows no emulator for {0}")]
    NoHandler(Platform),
    #[error("{} is dynamically linked and no C library for {platform} is installed (looked in {looked}): run `sudo rcross toolchain install {platform}` or pass --sysroot DIR", program.display())]
    NoSysroot {
        platform: Platform,
        program: PathBuf,
        looked: String,
    },
}

/// How much of the program to read to find its program headers.
const ELF_PREFIX: usize = 64 * 1024;

/// Build the command that runs the request's program.
pub fn command(
    host: &dyn Host,
    catalog: &Catalog,
    handlers: &binfmt::Catalog,
    req: &RunRequest,
) -> Result<CommandSpec, RunError> {
    let p = req.platform;
    let program = if req.program.components().count() > 1 || req.program.is_absolute() {
        req.program.clone()
    } else {
        let name = req.program.to_string_lossy().into_owned();
        if host.exists(&req.program) {
            req.program.clone()
        } else {
            host.find_program(&name).ok_or(RunError::NotFound(name))?
        }
    };
    let host_platform = detect::host_platform(host)?;
    if p == host_platform {
        return Ok(CommandSpec::new(program).args(req.args.iter().cloned()));
    }
    let handler = handlers.for_platform(&p).ok_or(RunError::NoHandler(p))?;
    let emulator = detect::find_emulator(host, handler).ok_or_else(|| RunError::NoEmulator {
        platform: p,
        tried: handler.emulators.join(", "),
    })?;
    let prefix = host
        .read_prefix(&program, ELF_PREFIX)
        .map_err(|source| RunError::Unreadable {
            path: program.clone(),
            source,
        })?;
    let spec = catalog.get(&p);
    let mut cmd = CommandSpec::new(emulator.path);
    if let Some(cpu) = spec.and_then(|s| s.qemu_cpu.as_ref()) {
        cmd = cmd.args(["-cpu", cpu.as_str()]);
    }
    if detect::elf_linkage(&prefix) == Linkage::Dynamic {
        let interp = interpreter(&prefix);
        // This platform's sysroots first, then those of its architecture's other variants
        // (an armhf program run as linux/arm/v6 needs the armhf loader).
        let mut candidates: Vec<PathBuf> = Vec::new();
        match &req.sysroot {
            Some(s) => candidates.push(s.clone()),
            None => {
                let same_arch = catalog
                    .targets
                    .iter()
                    .filter(|t| t.platform != p && t.platform.arch() == p.arch());
                for t in spec.into_iter().chain(same_arch) {
                    for s in t.compilers.iter().filter_map(|c| c.sysroot.clone()) {
                        if !candidates.contains(&s) {
                            candidates.push(s);
                        }
                    }
                }
            }
        }
        // An explicit sysroot is used as given (the emulator reports what it lacks);
        // otherwise the first that holds the program's loader, else the first that exists.
        let holds_loader = |s: &PathBuf| {
            interp
                .as_deref()
                .is_some_and(|i| host.exists(&s.join(i.trim_start_matches('/'))))
        };
        let chosen = if req.sysroot.is_some() {
            candidates.first().cloned()
        } else {
            candidates
                .iter()
                .find(|s| holds_loader(s))
                .or_else(|| {
                    spec.and_then(|_| candidates.iter().find(|s| host.exists(&s.join("lib"))))
                })
                .cloned()
        };
        let Some(root) = chosen else {
            return Err(RunError::NoSysroot {
                platform: p,
                program,
                looked: candidates
                    .iter()
                    .map(|c| c.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        cmd = cmd.arg("-L").arg(root.into_os_string());
    }
    Ok(cmd
        .arg(program.into_os_string())
        .args(req.args.iter().cloned()))
}

/// The exit status a shell would report for a program that ended this way.
pub fn shell_status(o: &crate::host::ProbeOutcome) -> u8 {
    use crate::host::ProbeOutcome;
    match o {
        ProbeOutcome::Exited(c) => u8::try_from(*c & 0xff).unwrap_or(1),
        ProbeOutcome::Signaled(s) => u8::try_from((128 + *s).clamp(0, 255)).unwrap_or(255),
        // What shells report for a file they cannot execute.
        ProbeOutcome::ExecFormatError => 126,
    }
}

/// The runner command other tools are given (cargo runner, CMake emulator, Meson exe_wrapper).
pub fn runner(rcross: &Path, p: &Platform) -> Vec<String> {
    vec![
        rcross.to_string_lossy().into_owned(),
        "run".into(),
        "--platform".into(),
        p.to_string(),
        "--".into(),
    ]
}

/// The loader (PT_INTERP) a dynamically linked program asks for, from its first bytes.
pub fn interpreter(prefix: &[u8]) -> Option<String> {
    use goblin::container::{Container, Ctx, Endian};
    use goblin::elf::{program_header::PT_INTERP, Elf, ProgramHeader};
    let header = Elf::parse_header(prefix).ok()?;
    let ctx = Ctx::new(
        if header.e_ident[4] == 2 {
            Container::Big
        } else {
            Container::Little
        },
        if header.e_ident[5] == 2 {
            Endian::Big
        } else {
            Endian::Little
        },
    );
    let phoff = usize::try_from(header.e_phoff).ok()?;
    let phs = ProgramHeader::parse(prefix, phoff, header.e_phnum as usize, ctx).ok()?;
    let ph = phs.iter().find(|p| p.p_type == PT_INTERP)?;
    let start = usize::try_from(ph.p_offset).ok()?;
    let end = start.checked_add(usize::try_from(ph.p_filesz).ok()?)?;
    let bytes = prefix.get(start..end)?;
    let s = bytes.split(|b| *b == 0).next()?;
    Some(String::from_utf8_lossy(s).into_owned())
}
