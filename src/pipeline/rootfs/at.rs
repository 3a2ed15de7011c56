//! Filesystem operations of the layer unpacker, all relative to directory descriptors and
//! confined by the kernel (`openat2`), so that no string path is ever resolved from the host's
//! root while a layer is applied.
//!
//! Two ways of opening, both refusing magic links (`/proc/*/fd`) and mount crossings:
//! - [`open_name`] opens one name inside a directory descriptor with `RESOLVE_BENEATH` and
//!   `RESOLVE_NO_SYMLINKS`: a symlink is opened as itself (`O_PATH|O_NOFOLLOW`) or refused, never
//!   followed; the unpacker follows symlinks itself, one component at a time.
//! - [`open_real`] re-opens a *real* path (one with no symlink in it, as the unpacker recorded
//!   it) from the root with `RESOLVE_IN_ROOT` and `RESOLVE_NO_SYMLINKS`: when a later entry
//!   replaced one of its directories with a symlink, the kernel answers `ELOOP` instead of
//!   following it, out of the root or elsewhere inside it.

use nix::errno::Errno;
use nix::fcntl::{openat2, readlinkat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::ffi::{CStr, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, IntoRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use super::{MAX_PATH, MAX_SYMLINK_HOPS};

/// What a name is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    Symlink,
    Other,
}

pub(crate) fn kind_of(st: &FileStat) -> Kind {
    match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFDIR => Kind::Dir,
        SFlag::S_IFLNK => Kind::Symlink,
        _ => Kind::Other,
    }
}

/// One name inside `dir`: the resolution may not leave `dir`, follow any symlink or magic link,
/// or cross a mount.
fn beneath() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
        | ResolveFlag::RESOLVE_NO_XDEV
}

/// The root directory itself (the caller's own path, trusted), as the anchor of every other
/// operation.
pub(crate) fn open_root(path: &Path) -> io::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// Opens the single component `name` (no `/`) of `dir` without following it: a symlink comes
/// back as an `O_PATH` descriptor of the link itself when `flags` holds `O_PATH`, else `ELOOP`.
pub(crate) fn open_name(dir: BorrowedFd<'_>, name: &OsStr, flags: OFlag) -> Result<OwnedFd, Errno> {
    if name.as_bytes().contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    openat2(
        dir,
        name,
        OpenHow::new()
            .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(beneath()),
    )
}

/// Re-opens the real path `rel` (relative, free of symlinks and `..`) inside `root`; `ELOOP` when
/// any of its components is now a symlink, `ENOENT`/`ENOTDIR` when it is gone.
pub(crate) fn open_real(root: BorrowedFd<'_>, rel: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    openat2(
        root,
        rel,
        OpenHow::new()
            .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(
                ResolveFlag::RESOLVE_IN_ROOT
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS
                    | ResolveFlag::RESOLVE_NO_XDEV,
            ),
    )
}

/// A new regular file `name` in `dir`, open for writing; fails when anything is at that name.
pub(crate) fn create_file(dir: BorrowedFd<'_>, name: &OsStr) -> Result<File, Errno> {
    if name.as_bytes().contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    openat2(
        dir,
        name,
        OpenHow::new()
            .flags(
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
            )
            .mode(Mode::from_bits_truncate(0o600))
            .resolve(beneath()),
    )
    .map(File::from)
}

/// What `name` in `dir` is, not following a symlink; `None` when nothing is there.
pub(crate) fn kind_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<Kind>, Errno> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(kind_of(&st))),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What the descriptor refers to.
pub(crate) fn kind_fd(fd: BorrowedFd<'_>) -> Result<Kind, Errno> {
    fstat(fd).map(|st| kind_of(&st))
}

/// The names in the directory `dir` (without `.` and `..`).
pub(crate) fn names(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let fd = open_name(dir, OsStr::new("."), OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    let raw = fd.into_raw_fd();
    // SAFETY: `raw` is an open directory descriptor nothing else owns; on success the stream
    // owns it and `closedir` below closes it.
    let stream = unsafe { nix::libc::fdopendir(raw) };
    if stream.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so `raw` is still ours and closed exactly once here.
        unsafe { nix::libc::close(raw) };
        return Err(e);
    }
    let mut out = Vec::new();
    let result = loop {
        Errno::clear();
        // SAFETY: `stream` is a valid directory stream until `closedir` below.
        let entry = unsafe { nix::libc::readdir(stream) };
        if entry.is_null() {
            break match Errno::last_raw() {
                0 => Ok(()),
                e => Err(io::Error::from_raw_os_error(e)),
            };
        }
        // SAFETY: a non-null entry from readdir holds a NUL-terminated `d_name`, valid until the
        // next readdir or closedir on this stream; it is copied before either.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            out.push(OsStr::from_bytes(name).to_os_string());
        }
    };
    // SAFETY: `stream` is valid and not used after this.
    unsafe { nix::libc::closedir(stream) };
    result.map(|()| out)
}

/// Removes whatever is at `name` in `dir` (a directory with everything below it), never
/// following a symlink; nothing there is fine. Returns what was removed.
pub(crate) fn remove_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<Kind>> {
    let kind = kind_at(dir, name)?;
    match kind {
        None => {}
        Some(Kind::Dir) => {
            let sub = open_name(dir, name, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
            for child in names(sub.as_fd())? {
                remove_at(sub.as_fd(), &child)?;
            }
            drop(sub);
            unlinkat(dir, name, UnlinkatFlags::RemoveDir)?;
        }
        Some(_) => unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)?,
    }
    Ok(kind)
}

/// Called with each directory [`resolve_dir`] creates: its real path below the root and its
/// parent directory (for an owner or mode of the caller's choosing).
pub(crate) type OnCreate<'c> = dyn FnMut(&Path, BorrowedFd<'_>) -> Result<(), String> + 'c;

/// The real directory that holds the components `parts` below `root`, open, with its path
/// relative to the root: each symlink on the way is followed inside the root, never out of it
/// (an absolute target starts again at the root, `..` stops there), as container runtimes
/// resolve them. Every step opens one name below the directory before it with `openat2`
/// (`RESOLVE_BENEATH`, no symlinks followed by the kernel), and `..` re-opens the real path
/// from the root with `RESOLVE_IN_ROOT`, so no step can leave the root. Missing directories are
/// created (mode 0755, and `created` told) when `created` is given, else the answer is `None`.
pub(crate) fn resolve_dir(
    root: BorrowedFd<'_>,
    parts: &[&OsStr],
    mut created: Option<&mut OnCreate<'_>>,
) -> Result<Option<(OwnedFd, PathBuf)>, String> {
    let root_dup = || {
        root.try_clone_to_owned()
            .map_err(|e| format!("duplicating the descriptor of the root: {e}"))
    };
    let mut todo: Vec<OsString> = parts.iter().rev().map(|p| p.to_os_string()).collect();
    // The real path of `cur` below the root.
    let mut names: Vec<OsString> = Vec::new();
    let mut cur = root_dup()?;
    let mut hops = 0usize;
    while let Some(part) = todo.pop() {
        match part.as_bytes() {
            b"" | b"." => continue,
            b".." => {
                if names.pop().is_some() {
                    let rel: PathBuf = names.iter().collect();
                    cur = open_real(root, &rel, OFlag::O_PATH | OFlag::O_DIRECTORY)
                        .map_err(|e| format!("opening /{}: {e}", rel.display()))?;
                }
                continue;
            }
            _ => {}
        }
        let rel: PathBuf = names.iter().chain(std::iter::once(&part)).collect();
        match open_name(cur.as_fd(), &part, OFlag::O_PATH) {
            Ok(fd) => match kind_fd(fd.as_fd()) {
                Ok(Kind::Dir) => {
                    cur = fd;
                    names.push(part);
                }
                Ok(Kind::Symlink) => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(format!(
                            "more than {MAX_SYMLINK_HOPS} symlinks on the way (a loop?) at /{}",
                            rel.display()
                        ));
                    }
                    // The link itself, through its O_PATH descriptor.
                    let target = readlinkat(fd.as_fd(), "")
                        .map_err(|e| format!("reading the symlink /{}: {e}", rel.display()))?;
                    let target = target.as_bytes();
                    if target.starts_with(b"/") {
                        names.clear();
                        cur = root_dup()?;
                    }
                    todo.extend(
                        target
                            .split(|&b| b == b'/')
                            .rev()
                            .map(|p| OsStr::from_bytes(p).to_os_string()),
                    );
                }
                Ok(Kind::Other) => return Err(format!("/{} is not a directory", rel.display())),
                Err(e) => return Err(format!("reading /{}: {e}", rel.display())),
            },
            Err(Errno::ENOENT) => {
                let Some(created) = created.as_mut() else {
                    return Ok(None);
                };
                mkdirat(
                    cur.as_fd(),
                    part.as_os_str(),
                    Mode::from_bits_truncate(0o755),
                )
                .map_err(|e| format!("creating the directory /{}: {e}", rel.display()))?;
                created(&rel, cur.as_fd())?;
                cur = open_name(cur.as_fd(), &part, OFlag::O_PATH | OFlag::O_DIRECTORY)
                    .map_err(|e| format!("opening /{}: {e}", rel.display()))?;
                names.push(part);
            }
            Err(e) => return Err(format!("reading /{}: {e}", rel.display())),
        }
        if names.iter().map(|c| c.len() + 1).sum::<usize>() > MAX_PATH {
            return Err(format!("the resolved path is longer than {MAX_PATH} bytes"));
        }
    }
    Ok(Some((cur, names.iter().collect())))
}
