//! Build contexts as tar streams:
//! - a container build's: the project at `rcross/src/` (minus
//!   [`runner::excluded`](crate::runner::excluded) paths) and an empty `rcross/out/`, unpacked
//!   by the engine at `/` before the container starts ([`write_context`]);
//! - a Dockerfile build's: the context directory at the root of the tar, minus what the
//!   caller's `.dockerignore` leaves out, with extra entries (the Dockerfile when it lies
//!   outside the context), as the `docker` CLI sends it to `/build` ([`write_dockerfile_context`]).
//!   The engine does not apply `.dockerignore` itself: its client does.

use crate::runner::{self, OUT_DIR, SRC_DIR};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What the context writer left out, for a log line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ContextStats {
    pub files: u64,
    pub bytes: u64,
    /// Sockets, FIFOs and device nodes: nothing a build reads from a copy.
    pub skipped_special: Vec<PathBuf>,
}

/// Why the context could not be written: the path and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ContextError {
    pub path: PathBuf,
    pub message: String,
}

fn fail(path: &Path, message: impl std::fmt::Display) -> ContextError {
    ContextError {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Writes the context of `project` as a tar into `out`: directories, regular files (mode,
/// mtime, content) and symlinks (as links, never followed) under `rcross/src/`, with uid/gid 0
/// and no host user names; then an empty `rcross/out/`.
pub fn write_context<W: Write>(project: &Path, out: W) -> Result<(W, ContextStats), ContextError> {
    let meta = fs::metadata(project).map_err(|e| fail(project, e))?;
    if !meta.is_dir() {
        return Err(fail(project, "the project is not a directory"));
    }
    let src = SRC_DIR.trim_start_matches('/');
    let out_dir = OUT_DIR.trim_start_matches('/');
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut stats = ContextStats::default();
    // Parents of SRC_DIR (e.g. `rcross/`), then SRC_DIR itself with the project's mode.
    let mut acc = String::new();
    for part in src.split('/') {
        if !acc.is_empty() {
            acc.push('/');
        }
        acc.push_str(part);
        let mode = if acc == src { meta.mode() } else { 0o755 };
        append_dir(&mut builder, &acc, mode, mtime(&meta)).map_err(|e| fail(project, e))?;
    }
    let filter = ContextFilter {
        excluded: &|rel: &str| runner::excluded(Path::new(rel)),
        walk_excluded_dirs: false,
    };
    walk(
        &mut builder,
        project,
        Path::new(""),
        src,
        &filter,
        &mut stats,
    )?;
    append_dir(&mut builder, out_dir, 0o755, 0).map_err(|e| fail(project, e))?;
    let out = builder
        .into_inner()
        .map_err(|e| fail(project, format!("writing the context archive: {e}")))?;
    Ok((out, stats))
}

/// What a context leaves out.
pub struct ContextFilter<'a> {
    /// Whether a path (slash-separated, relative to the context root) is left out.
    pub excluded: &'a dyn Fn(&str) -> bool,
    /// Whether an excluded directory is still walked, because some paths under it may be kept
    /// (a `.dockerignore` with `!` exceptions); the directory's own entry is left out.
    pub walk_excluded_dirs: bool,
}

/// An entry a Dockerfile context carries that is not a file of the context directory.
pub struct ExtraEntry {
    /// Its path in the tar (relative, slash-separated).
    pub name: String,
    pub content: Vec<u8>,
}

/// Writes the Dockerfile build context `dir` as a tar into `out`, as the `docker` CLI sends it
/// to the classic builder: every directory, regular file (mode, mtime, content) and symlink
/// (never followed) at the root of the tar, with uid/gid 0, except what `filter` leaves out;
/// then the `extra` entries (mode 0644), which replace context files of the same name.
pub fn write_dockerfile_context<W: Write>(
    dir: &Path,
    filter: &ContextFilter,
    extra: &[ExtraEntry],
    out: W,
) -> Result<(W, ContextStats), ContextError> {
    let meta = fs::metadata(dir).map_err(|e| fail(dir, e))?;
    if !meta.is_dir() {
        return Err(fail(dir, "the build context is not a directory"));
    }
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut stats = ContextStats::default();
    let replaced = |rel: &str| extra.iter().any(|e| e.name == rel) || (filter.excluded)(rel);
    let filter = ContextFilter {
        excluded: &replaced,
        walk_excluded_dirs: filter.walk_excluded_dirs,
    };
    walk(&mut builder, dir, Path::new(""), "", &filter, &mut stats)?;
    for e in extra {
        let mut h = header(tar::EntryType::Regular, 0o644, mtime(&meta));
        h.set_size(e.content.len() as u64);
        builder
            .append_data(&mut h, &e.name, e.content.as_slice())
            .map_err(|err| {
                fail(
                    dir,
                    format!("adding {} to the context archive: {err}", e.name),
                )
            })?;
    }
    let out = builder
        .into_inner()
        .map_err(|e| fail(dir, format!("writing the context archive: {e}")))?;
    Ok((out, stats))
}

fn mtime(meta: &fs::Metadata) -> u64 {
    u64::try_from(meta.mtime()).unwrap_or(0)
}

fn header(kind: tar::EntryType, mode: u32, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode & 0o7777);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_size(0);
    h
}

fn append_dir<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    mode: u32,
    mtime: u64,
) -> io::Result<()> {
    let mut h = header(tar::EntryType::Directory, mode, mtime);
    b.append_data(&mut h, format!("{path}/"), io::empty())
}

fn walk<W: Write>(
    b: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    prefix: &str,
    filter: &ContextFilter,
    stats: &mut ContextStats,
) -> Result<(), ContextError> {
    let dir = root.join(rel);
    let mut entries = fs::read_dir(&dir)
        .map_err(|e| fail(&dir, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(&dir, e))?;
    entries.sort();
    for name in entries {
        let rel = rel.join(&name);
        let path = root.join(&rel);
        if (filter.excluded)(&rel.to_string_lossy()) {
            if filter.walk_excluded_dirs && fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                walk(b, root, &rel, prefix, filter, stats)?;
            }
            continue;
        }
        let meta = fs::symlink_metadata(&path).map_err(|e| fail(&path, e))?;
        let name_in_tar = Path::new(prefix).join(&rel);
        let ft = meta.file_type();
        let write_err = |e: io::Error| fail(&path, format!("adding to the context archive: {e}"));
        if ft.is_dir() {
            let mut h = header(tar::EntryType::Directory, meta.mode(), mtime(&meta));
            b.append_data(&mut h, &name_in_tar, io::empty())
                .map_err(write_err)?;
            walk(b, root, &rel, prefix, filter, stats)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(|e| fail(&path, e))?;
            let mut h = header(tar::EntryType::Symlink, 0o777, mtime(&meta));
            b.append_link(&mut h, &name_in_tar, &target)
                .map_err(write_err)?;
        } else if ft.is_file() {
            let file = fs::File::open(&path).map_err(|e| fail(&path, e))?;
            let size = meta.len();
            let mut h = header(tar::EntryType::Regular, meta.mode(), mtime(&meta));
            h.set_size(size);
            let reader = Exact {
                inner: file.take(size),
                left: size,
            };
            b.append_data(&mut h, &name_in_tar, reader)
                .map_err(write_err)?;
            stats.files += 1;
            stats.bytes += size;
        } else if ft.is_socket() || ft.is_fifo() || ft.is_block_device() || ft.is_char_device() {
            stats.skipped_special.push(rel);
        }
    }
    Ok(())
}

/// Reads exactly `left` bytes: a file that shrinks while it is archived is an error instead of
/// a corrupt archive (one that grows is cut at the size in its header).
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file shrank while it was read ({} bytes missing)",
                    self.left
                ),
            ));
        }
        self.left = self.left.saturating_sub(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// (path, type, mode, link target or content) of every entry.
    fn entries(bytes: &[u8]) -> Vec<(String, char, u32, String)> {
        let mut archive = tar::Archive::new(bytes);
        let mut out = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let h = e.header().clone();
            let kind = match h.entry_type() {
                tar::EntryType::Directory => 'd',
                tar::EntryType::Symlink => 'l',
                tar::EntryType::Regular => 'f',
                _ => '?',
            };
            let extra = match kind {
                'l' => e
                    .link_name()
                    .unwrap()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                'f' => {
                    let mut s = String::new();
                    e.read_to_string(&mut s).unwrap();
                    s
                }
                _ => String::new(),
            };
            assert_eq!(h.uid().unwrap(), 0);
            assert_eq!(h.gid().unwrap(), 0);
            out.push((path, kind, h.mode().unwrap(), extra));
        }
        out
    }

    #[test]
    fn context_keeps_modes_and_links_and_leaves_out_git_and_rcross() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir_all(p.join(".git/objects")).unwrap();
        fs::write(p.join(".git/config"), "secret").unwrap();
        fs::create_dir_all(p.join(".rcross/oci")).unwrap();
        fs::create_dir_all(p.join("src/.git")).unwrap();
        fs::write(p.join("src/.git/keep"), "nested .git is project content").unwrap();
        fs::write(p.join("build.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(p.join("build.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(p.join("src/main.c"), "int main(){}").unwrap();
        fs::set_permissions(p.join("src/main.c"), fs::Permissions::from_mode(0o600)).unwrap();
        symlink("src/main.c", p.join("link")).unwrap();
        symlink("/etc/passwd", p.join("abs-link")).unwrap();
        symlink("missing", p.join("dangling")).unwrap();
        let long = "d".repeat(120);
        fs::create_dir_all(p.join(&long)).unwrap();
        fs::write(p.join(&long).join("f".repeat(100)), "long").unwrap();

        let (bytes, stats) = write_context(p, Vec::new()).unwrap();
        let e = entries(&bytes);
        let names: Vec<&str> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(names[..2], ["rcross/", "rcross/src/"]);
        assert_eq!(names.last().copied(), Some("rcross/out/"));
        assert!(!names.iter().any(|n| n.contains(".rcross")), "{names:?}");
        assert!(
            !names.iter().any(|n| n.starts_with("rcross/src/.git")),
            "{names:?}"
        );
        let find = |n: &str| {
            e.iter()
                .find(|x| x.0 == n)
                .unwrap_or_else(|| panic!("{n} in {names:?}"))
        };
        assert_eq!(
            find("rcross/src/src/.git/keep").3,
            "nested .git is project content"
        );
        assert_eq!(find("rcross/src/build.sh").2, 0o755);
        assert_eq!(find("rcross/src/src/main.c").2, 0o600);
        assert_eq!(find("rcross/src/src/main.c").3, "int main(){}");
        assert_eq!(find("rcross/src/link").1, 'l');
        assert_eq!(find("rcross/src/link").3, "src/main.c");
        assert_eq!(find("rcross/src/abs-link").3, "/etc/passwd");
        assert_eq!(find("rcross/src/dangling").3, "missing");
        let long_file = format!("rcross/src/{long}/{}", "f".repeat(100));
        assert_eq!(find(&long_file).3, "long");
        assert_eq!(find("rcross/out/").1, 'd');
        assert_eq!(stats.files, 4);
    }

    #[test]
    fn a_dockerfile_context_is_at_the_root_without_what_the_filter_leaves_out() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir_all(p.join("secrets")).unwrap();
        fs::write(p.join("secrets/token"), "no").unwrap();
        fs::write(p.join("secrets/public"), "yes").unwrap();
        fs::create_dir_all(p.join(".git")).unwrap();
        fs::write(p.join(".git/HEAD"), "a Dockerfile context keeps .git").unwrap();
        fs::write(p.join("Dockerfile"), "FROM scratch").unwrap();
        let excluded = |rel: &str| rel == "secrets" || rel == "secrets/token";
        let extra = [ExtraEntry {
            name: "Dockerfile".into(),
            content: b"FROM scratch\nCOPY . /\n".to_vec(),
        }];
        let names = |walk_excluded_dirs: bool| {
            let filter = ContextFilter {
                excluded: &excluded,
                walk_excluded_dirs,
            };
            let (bytes, _) = write_dockerfile_context(p, &filter, &extra, Vec::new()).unwrap();
            entries(&bytes)
        };
        let e = names(false);
        let list: Vec<&str> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(list, [".git", ".git/HEAD", "Dockerfile"]);
        assert_eq!(
            e[2].3, "FROM scratch\nCOPY . /\n",
            "the extra entry replaces the file"
        );
        let e = names(true);
        let list: Vec<&str> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(
            list,
            [".git", ".git/HEAD", "secrets/public", "Dockerfile"],
            "an excluded directory is walked for what it may keep"
        );
    }

    #[test]
    fn sockets_are_skipped_and_a_missing_project_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(dir.path().join("s.sock")).unwrap();
        let (_, stats) = write_context(dir.path(), Vec::new()).unwrap();
        assert_eq!(stats.skipped_special, vec![PathBuf::from("s.sock")]);
        let missing = dir.path().join("nope");
        let e = write_context(&missing, Vec::new()).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }
}
