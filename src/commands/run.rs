use crate::binfmt;
use crate::cli::RunArgs;
use crate::exit::{self, Failure};
use crate::host::linux::LinuxHost;
use crate::host::Host;
use crate::platform::Platform;
use crate::toolchain::run::{self, RunError, RunRequest};
use crate::toolchain::Catalog;
use std::path::PathBuf;

pub fn run(args: RunArgs) -> exit::Result<u8> {
    let host = LinuxHost;
    let p: Platform = args.platform.parse().map_err(Failure::usage)?;
    let catalog = Catalog::load(&args.paths.toolchain_dir).map_err(Failure::usage)?;
    let handlers = binfmt::Catalog::load(&args.paths.host.binfmt_dir).map_err(Failure::usage)?;
    let mut words = args.command.into_iter();
    let Some(program) = words.next() else {
        return Err(Failure::usage(anyhow::anyhow!(
            "no program given: rcross run --platform {p} -- PROGRAM ARGS…"
        )));
    };
    let sysroot = args.sysroot.or_else(|| {
        std::env::var_os("QEMU_LD_PREFIX")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let req = RunRequest {
        platform: p,
        program: PathBuf::from(program),
        args: words.collect(),
        sysroot,
    };
    let cmd = run::command(&host, &catalog, &handlers, &req).map_err(|e| match e {
        RunError::NotFound(_) | RunError::Unreadable { .. } => Failure::usage(e),
        _ => Failure::env(e),
    })?;
    let outcome = host
        .run_inherit(&cmd)
        .map_err(|e| Failure::env(anyhow::anyhow!("cannot start {}: {e}", cmd.display())))?;
    Ok(run::shell_status(&outcome))
}
