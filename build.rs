//! Generates the lists of built-in data files (binfmt handlers in `binfmt/`, toolchains in
//! `toolchains/`), so that adding a file is the whole change needed to ship it (no
//! hand-maintained include list to forget).

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    embed(&manifest_dir, "binfmt", &out_dir.join("binfmt_builtin.rs"))?;
    embed(
        &manifest_dir,
        "toolchains",
        &out_dir.join("toolchains_builtin.rs"),
    )?;
    Ok(())
}

/// Write `out` as a Rust file listing every `*.toml` in `manifest_dir/subdir` as
/// `BUILTIN_FILES: &[(relative name, contents)]`.
fn embed(manifest_dir: &Path, subdir: &str, out_file: &Path) -> Result<(), Box<dyn Error>> {
    let dir = manifest_dir.join(subdir);
    // A directory here makes cargo rerun the script when any file in it is added, removed or
    // changed.
    println!("cargo:rerun-if-changed={}", dir.display());

    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            files.push(path);
        }
    }
    // Sorted, so the built-in catalog order (and thus the binary) does not depend on the
    // order the file system lists entries in.
    files.sort();

    let mut out = String::from(
        "/// Built-in data files: (file name relative to the crate, contents).\n\
         pub(crate) const BUILTIN_FILES: &[(&str, &str)] = &[\n",
    );
    for path in &files {
        let rel = path
            .strip_prefix(manifest_dir)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let abs = path
            .to_str()
            .ok_or_else(|| format!("{}: file name is not UTF-8", path.display()))?;
        let rel = rel
            .to_str()
            .ok_or_else(|| format!("{}: file name is not UTF-8", path.display()))?;
        // `{:?}` writes a valid Rust string literal, whatever characters the path holds.
        writeln!(out, "    ({rel:?}, include_str!({abs:?})),")?;
    }
    out.push_str("];\n");

    std::fs::write(out_file, out)?;
    Ok(())
}
