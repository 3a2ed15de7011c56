//! cargo takes its `linker` as one program, but zig (`zig cc -target …`) and clang
//! (`clang --target=…`) need arguments. Like cargo-zigbuild, rcross writes a small wrapper
//! script per toolchain into a cache directory and hands cargo its path.

use super::{CompilerKind, Toolchain};
use crate::host::{sh_quote, Host};
use std::path::{Path, PathBuf};

/// The wrapper script for a toolchain whose compiler needs arguments; `None` when the compiler
/// is one program (gcc) or links no Rust target.
pub fn wrapper_script(t: &Toolchain) -> Option<(String, String)> {
    let rt = t.rust_target.as_deref()?;
    if t.cc.len() < 2 {
        return None;
    }
    let cmd: Vec<String> = t.cc.iter().map(|w| sh_quote(w)).collect();
    // rustc asks for libgcc_s (unwinding) on GNU targets; zig ships libunwind instead.
    let rewrite = if t.kind == CompilerKind::Zig {
        "for a do\n  shift\n  case $a in\n    -lgcc_s) set -- \"$@\" -lunwind ;;\n    *) set -- \"$@\" \"$a\" ;;\n  esac\ndone\n"
    } else {
        ""
    };
    let script = format!(
        "#!/bin/sh\n# Written by rcross: links Rust's {rt} with {kind} (cargo takes one program as linker).\n{rewrite}exec {cmd} \"$@\"\n",
        kind = t.kind,
        cmd = cmd.join(" ")
    );
    Some((format!("{rt}-{}-linker", t.kind), script))
}

/// Where wrappers live: `$XDG_CACHE_HOME/rcross/linkers`, else `~/.cache/rcross/linkers`.
pub fn cache_dir(xdg_cache: Option<&Path>, home: Option<&Path>) -> Option<PathBuf> {
    xdg_cache
        .filter(|p| p.is_absolute())
        .map(Path::to_path_buf)
        .or_else(|| home.map(|h| h.join(".cache")))
        .map(|c| c.join("rcross").join("linkers"))
}

/// Why no linker wrapper could be written (cargo then gets no linker).
#[derive(Debug, thiserror::Error)]
pub enum WrapperError {
    #[error(
        "neither XDG_CACHE_HOME nor HOME is set, so no linker wrapper for {triple} can be \
         written; cargo gets no linker"
    )]
    NoCacheDir { triple: String },
    #[error("cannot write the linker wrapper in {}: {error}; cargo gets no linker", dir.display())]
    Write { dir: PathBuf, error: std::io::Error },
}

/// The linker wrapper cargo gets for `toolchain` (see [`ensure`]), written into the user's
/// cache directory ([`cache_dir`] of `XDG_CACHE_HOME` and `HOME`); `Ok(None)` when the
/// toolchain needs none.
pub fn wrapper_for(
    host: &dyn Host,
    toolchain: Option<&Toolchain>,
) -> Result<Option<String>, WrapperError> {
    let Some(t) = toolchain else {
        return Ok(None);
    };
    if wrapper_script(t).is_none() {
        return Ok(None);
    }
    let xdg = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from);
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let Some(dir) = cache_dir(xdg.as_deref(), home.as_deref()) else {
        return Err(WrapperError::NoCacheDir {
            triple: t.triple.clone(),
        });
    };
    match ensure(host, t, &dir) {
        Ok(p) => Ok(p.map(|p| p.to_string_lossy().into_owned())),
        Err(error) => Err(WrapperError::Write { dir, error }),
    }
}

/// Write the wrapper for `t` into `dir` (unless an identical one is there) and return its path.
pub fn ensure(host: &dyn Host, t: &Toolchain, dir: &Path) -> std::io::Result<Option<PathBuf>> {
    let Some((name, script)) = wrapper_script(t) else {
        return Ok(None);
    };
    let path = dir.join(name);
    if host.read(&path).ok().as_deref() != Some(script.as_bytes()) {
        host.write_executable(&path, script.as_bytes())?;
    }
    Ok(Some(path))
}
