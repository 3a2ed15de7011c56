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
use nix::fcntl::{openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::ffi::{CStr, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, IntoRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

/// What a name is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Dir,
    Symlink,
    Other,
}

pub(super) fn kind_of(st: &FileStat) -> Kind {
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
pub(super) fn open_root(path: &Path) -> io::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// Opens the single component `name` (no `/`) of `dir` without following it: a symlink comes
/// back as an `O_PATH` descriptor of the link itself when `flags` holds `O_PATH`, else `ELOOP`.
pub(super) fn open_name(dir: BorrowedFd<'_>, name: &OsStr, flags: OFlag) -> Result<OwnedFd, Errno> {
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
pub(super) fn open_real(root: BorrowedFd<'_>, rel: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
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
pub(super) fn create_file(dir: BorrowedFd<'_>, name: &OsStr) -> Result<File, Errno> {
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
pub(super) fn kind_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<Kind>, Errno> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(kind_of(&st))),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What the descriptor refers to.
pub(super) fn kind_fd(fd: BorrowedFd<'_>) -> Result<Kind, Errno> {
    fstat(fd).map(|st| kind_of(&st))
}

/// The names in the directory `dir` (without `.` and `..`).
pub(super) fn names(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
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
pub(super) fn remove_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<Kind>> {
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
