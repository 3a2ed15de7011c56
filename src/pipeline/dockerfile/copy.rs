//! COPY and ADD into a stage's root, with BuildKit's semantics. Read for this (and cited in the
//! tests): moby/buildkit frontend/dockerfile/dockerfile2llb/convert_copy.go `dispatchCopy`
//! (every local source is copied with `FollowSymlinks`, `CopyDirContentsOnly`,
//! `AllowWildcard`, `AllowEmptyWildcard`, `CreateDestPath`, ADD with `AttemptUnpack`),
//! solver/llbsolver/file/backend.go `docopy`, backend_unix.go `mapUserToChowner`, unpack.go,
//! and tonistiigi/fsutil copy/copy.go, copy_unix.go, mkdir.go.
//!
//! Sources:
//! - are paths relative to the source root (the context, or a stage's or image's root for
//!   `--from`): `..` and a leading `/` cannot leave it, a trailing `/` means nothing;
//! - a wildcard (`* ? [..]`, Go's `filepath.Match`) matches entries of the directory its
//!   wildcard-free prefix names, component by component, in name order; one that matches nothing
//!   is not an error (BuildKit's `AllowEmptyWildcard`, its test `testEmptyWildcard`); a plain
//!   path that does not exist is;
//! - a source that is a symlink is followed, inside the source root (fsutil `rootPath` with
//!   `FollowLinks`); symlinks *inside* a copied directory are copied as symlinks;
//! - from the context, `.dockerignore` decides what exists: an excluded path is not there (an
//!   excluded directory holding an exception `!` path is, with only that path);
//! - a directory source copies its contents, merged into the destination directory.
//!
//! The destination (relative ones from the working directory) is a directory when it ends in
//! `/` (or is `.`); several sources or a wildcard need one (the documented rule; the error names
//! the sources). A file source copied onto an existing directory goes inside it, else it takes
//! the destination's name. Missing directories on the way are created with mode 0755 (the
//! `--chmod` mode when given, as fsutil's `MkdirAll` does) owned by the `--chown` user, else
//! by root. Copied entries keep their modes and mtimes (`--chmod` replaces the mode of files
//! and directories); their owner is the `--chown` user, else root for the context and the
//! source's own owner (in image ids) for `--from`. A directory onto an existing file, or a file
//! onto an existing directory, is an error, as in fsutil. An existing destination directory
//! keeps its owner and mode, and takes the copied directory's mtime (fsutil restores the
//! timestamp of a directory it did not create). Device nodes, FIFOs and sockets are not copied
//! (counted in [`CopyStats::skipped`]; rcross never creates device nodes in a root); hard
//! links are copied as separate files.
//!
//! ADD: a regular file whose content is a tar archive (plain, gzip or zstd; the first header
//! must read, as BuildKit's `isArchivePath`) is extracted into the destination (always a
//! directory, as unpack.go), by rootfs's hardened unpacker; owners come from the archive unless
//! `--chown` (moby `archive.Untar` with `ChownOpts`); bzip2 and xz archives are refused, naming
//! the format. Anything else is copied.
//!
//! Writing into the stage root never follows a symlink out of it: the destination is resolved
//! one component at a time inside the root (an absolute target starting again at the root, see
//! rootfs's `at::resolve_dir`), and every entry is written relative to a directory descriptor
//! opened with `openat2` without following symlinks.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fchmod, fchmodat, mkdirat, utimensat, FchmodatFlags, Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::ignore::{clean_path, glob_match, has_wildcards, DockerIgnore};
use crate::dockerfile::CopySource;
use crate::image::Sha256;
use crate::pipeline::rootfs::{self, at, RootfsError};

/// Symlinks followed while resolving one source path.
const MAX_HOPS: usize = 255;

/// Where COPY's sources come from.
pub enum CopyFrom<'a> {
    /// The build context, filtered by its `.dockerignore`.
    Context {
        dir: &'a Path,
        ignore: &'a DockerIgnore,
    },
    /// A stage's or image's root (owners stored in host ids, see [`CopySpec::from_host_ids`]).
    Root(&'a Path),
}

/// One COPY or ADD, its arguments expanded.
pub struct CopySpec<'a> {
    pub sources: &'a [CopySource],
    pub dest: &'a str,
    /// The stage's absolute working directory (a relative `dest` starts there).
    pub workdir: &'a str,
    pub from: CopyFrom<'a>,
    /// ADD: local tar archives are extracted.
    pub add: bool,
    /// `--chown`, resolved to image ids.
    pub chown: Option<(u32, u32)>,
    /// `--chmod`, octal (at most 0o7777).
    pub chmod: Option<u32>,
    /// Image ids → the ids to store in the stage root.
    pub to_host_ids: &'a dyn Fn(u32, u32) -> (u32, u32),
    /// The source root's stored ids → image ids ([`CopyFrom::Root`] only).
    pub from_host_ids: &'a dyn Fn(u32, u32) -> (u32, u32),
}

/// What a copy wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Archives ADD extracted.
    pub archives: u64,
    /// Device nodes, FIFOs and sockets not copied.
    pub skipped: u64,
}

/// Why a COPY, ADD, `--chown` or USER failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("COPY failed: no source files were specified")]
    NoSources,
    #[error(
        "COPY failed: {source_path:?} not found in {place}; paths are relative to {place}'s root \
         (`..` cannot leave it): check the name"
    )]
    NotFound { source_path: String, place: String },
    #[error(
        "COPY failed: {source_path:?} is excluded by .dockerignore (pattern {pattern:?} in \
         {file}); remove the pattern or add an exception `!{source_path}`"
    )]
    Excluded {
        source_path: String,
        pattern: String,
        file: String,
    },
    #[error(
        "COPY {} {dest}: several sources or a wildcard need a destination directory ending in \
         `/`; write `{dest}/`",
        sources.join(" ")
    )]
    DestNotDirectory { sources: Vec<String>, dest: String },
    #[error("COPY failed: source pattern {pattern:?} is malformed: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("COPY failed: {path}: {message}")]
    Conflict { path: String, message: String },
    #[error(
        "ADD failed: {source_path:?} is a {format}-compressed file; rcross extracts plain, gzip \
         and zstd tar archives only: recompress it with gzip, or COPY it and unpack it in a RUN"
    )]
    UnsupportedArchive { source_path: String, format: String },
    #[error("ADD failed: extracting {source_path:?}: {source}")]
    Archive {
        source_path: String,
        #[source]
        source: Box<RootfsError>,
    },
    #[error("COPY failed: the destination {path} in the stage root: {reason}")]
    Destination { path: String, reason: String },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{file}: pattern {pattern:?} is malformed: {reason}")]
    IgnorePattern {
        file: String,
        pattern: String,
        reason: String,
    },
    #[error("--chmod={value}: {reason}")]
    BadChmod { value: String, reason: String },
    #[error("user spec {spec:?}: {reason}")]
    BadChown { spec: String, reason: String },
    #[error(
        "user spec {spec:?}: no {kind} {name:?} in the stage's {file}; create it in an earlier \
         RUN, or use a numeric id"
    )]
    UnknownName {
        kind: String,
        name: String,
        spec: String,
        file: String,
    },
    #[error("the stage's {file} (in {}) is missing; use numeric ids", root.display())]
    UserFileMissing { file: String, root: PathBuf },
    #[error("the stage's {file} (in {}) cannot be read: {reason}", root.display())]
    UserFile {
        file: String,
        root: PathBuf,
        reason: String,
    },
}

fn io_err(what: &str, path: &Path) -> impl FnOnce(io::Error) -> CopyError {
    let (what, path) = (what.to_string(), path.to_path_buf());
    move |source| CopyError::Io { what, path, source }
}

/// `--chmod` as BuildKit reads an octal one (`strconv.ParseUint(…, 8, 32)`, at most 0o7777).
/// Symbolic modes (BuildKit 1.14+) are refused, naming the value.
pub fn parse_chmod(value: &str) -> Result<u32, CopyError> {
    let bad = |reason: &str| CopyError::BadChmod {
        value: value.to_string(),
        reason: reason.to_string(),
    };
    match u32::from_str_radix(value, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        Ok(_) => Err(bad("an octal mode is between 0 and 07777")),
        Err(_) => Err(bad(
            "rcross takes octal modes (0755); symbolic ones (u+x) are not supported yet",
        )),
    }
}

/// Copies what `spec` names into `stage_root`.
pub fn copy_into(stage_root: &Path, spec: &CopySpec) -> Result<CopyStats, CopyError> {
    let items = plan(spec)?;
    let root_fd =
        at::open_root(stage_root).map_err(io_err("opening the stage root", stage_root))?;
    let mut writer = Writer {
        root: stage_root.to_path_buf(),
        root_fd,
        spec,
        stats: CopyStats::default(),
        dir_meta: Vec::new(),
    };
    let dest = Dest::of(spec);
    for item in &items {
        writer.item(item, &dest)?;
    }
    writer.finish_dirs()?;
    Ok(writer.stats)
}

/// sha256 over everything the copy would write: for each source in order, each entry (sorted
/// by path within its source) as its path, type, mode (after `--chmod`), owner in image ids
/// (after `--chown`), size, content sha256 and link target; then the destination, working
/// directory, `--chown`, `--chmod` and ADD. mtimes are left out (the step cache keys content,
/// as BuildKit's content checksums do). File contents are hashed while streamed.
pub fn source_digest(spec: &CopySpec) -> Result<String, CopyError> {
    let items = plan(spec)?;
    let mut h = Sha256::new();
    let line = |h: &mut Sha256, text: String| {
        h.update(&(text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    };
    line(
        &mut h,
        format!(
            "dest={} workdir={} chown={:?} chmod={:?} add={}",
            spec.dest, spec.workdir, spec.chown, spec.chmod, spec.add
        ),
    );
    for item in &items {
        line(&mut h, format!("source {} as {}", item.shown, item.name));
        match &item.kind {
            ItemKind::Heredoc(content) => {
                let mode = spec.chmod.unwrap_or(0o644);
                line(
                    &mut h,
                    format!(
                        "file {mode:o} {:?} {} {}",
                        spec.chown.unwrap_or((0, 0)),
                        content.len(),
                        crate::image::digest::sha256_hex(content.as_bytes())
                    ),
                );
            }
            ItemKind::Archive(_) | ItemKind::File => {
                let meta = stat(&item.host)?;
                let kind = if matches!(item.kind, ItemKind::Archive(_)) {
                    "archive"
                } else {
                    "file"
                };
                line(&mut h, describe(spec, kind, "", &item.host, &meta)?);
            }
            ItemKind::Tree(entries) => {
                for entry in entries {
                    let host = item.host.join(&entry.rel);
                    let kind = kind_name(&entry.meta);
                    line(
                        &mut h,
                        describe(spec, kind, &entry.rel.to_string_lossy(), &host, &entry.meta)?,
                    );
                }
            }
        }
    }
    Ok(h.digest())
}

/// One entry of [`source_digest`].
fn describe(
    spec: &CopySpec,
    kind: &str,
    rel: &str,
    host: &Path,
    meta: &Metadata,
) -> Result<String, CopyError> {
    let mode = mode_of(spec, meta);
    let owner = image_owner(spec, meta);
    let extra = match kind {
        "file" | "archive" => hash_file(host)?,
        "symlink" => fs::read_link(host)
            .map_err(io_err("reading the symlink", host))?
            .to_string_lossy()
            .into_owned(),
        _ => String::new(),
    };
    Ok(format!(
        "{kind} {rel:?} {mode:o} {owner:?} {} {extra}",
        if kind == "dir" { 0 } else { meta.len() }
    ))
}

fn hash_file(path: &Path) -> Result<String, CopyError> {
    let mut file = open_source(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io_err("reading", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.hex())
}

fn kind_name(meta: &Metadata) -> &'static str {
    let ft = meta.file_type();
    if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else {
        "special"
    }
}

/// The mode a copied entry gets: `--chmod` (permission, setuid, setgid, sticky bits) or its own.
fn mode_of(spec: &CopySpec, meta: &Metadata) -> u32 {
    spec.chmod.unwrap_or(meta.mode()) & 0o7777
}

/// The owner a copied entry gets, in image ids.
fn image_owner(spec: &CopySpec, meta: &Metadata) -> (u32, u32) {
    match (spec.chown, &spec.from) {
        (Some(owner), _) => owner,
        (None, CopyFrom::Context { .. }) => (0, 0),
        (None, CopyFrom::Root(_)) => (spec.from_host_ids)(meta.uid(), meta.gid()),
    }
}

// ---------------------------------------------------------------------------------------------
// Planning: what each source is.

/// One source, resolved.
struct Item {
    /// The source as written or as the wildcard matched it (for messages and the digest).
    shown: String,
    /// The name it takes inside a destination directory (the unresolved source's last
    /// component, as fsutil's `filepath.Base(src)`).
    name: String,
    /// Its real path on the host (symlinks followed inside the source root).
    host: PathBuf,
    kind: ItemKind,
}

enum ItemKind {
    /// A directory: its entries (path relative to it, metadata), sorted, directories before
    /// what they hold.
    Tree(Vec<TreeEntry>),
    File,
    /// ADD of a tar archive.
    Archive(Compression),
    Heredoc(String),
}

struct TreeEntry {
    rel: PathBuf,
    meta: Metadata,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The source root as COPY sees it.
struct SourceView<'a> {
    root: &'a Path,
    ignore: Option<&'a DockerIgnore>,
}

impl SourceView<'_> {
    /// Whether the real path `rel` (relative to the root) is in the view; `is_dir` because an
    /// excluded directory still holds the exceptions below it.
    fn visible(&self, rel: &str, is_dir: bool) -> bool {
        match self.ignore {
            Some(ignore) => !ignore.is_excluded(rel) || (is_dir && ignore.has_exceptions()),
            None => true,
        }
    }

    fn excluded_error(&self, shown: &str, rel: &str) -> Option<CopyError> {
        let ignore = self.ignore?;
        let pattern = ignore.excluding_pattern(rel)?;
        Some(CopyError::Excluded {
            source_path: shown.to_string(),
            pattern,
            file: ignore.source().unwrap_or(".dockerignore").to_string(),
        })
    }

    /// The real path (no symlinks, relative to the root) `rel` leads to, every symlink on the
    /// way followed inside the root as continuity's `fs.RootPath` does (an absolute target
    /// starts again at the root, `..` stops there), and its metadata; `None` when it does not
    /// exist.
    fn resolve(&self, rel: &str) -> Result<Option<(String, Metadata)>, CopyError> {
        let mut todo: Vec<String> = rel.split('/').rev().map(str::to_string).collect();
        let mut real: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(part) = todo.pop() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    real.pop();
                    continue;
                }
                _ => {}
            }
            real.push(part);
            let path = self.root.join(real.join("/"));
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if matches!(e.kind(), io::ErrorKind::NotFound) => return Ok(None),
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOTDIR) => return Ok(None),
                Err(e) => return Err(io_err("reading", &path)(e)),
            };
            if meta.file_type().is_symlink() {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(CopyError::Io {
                        what: "resolving".into(),
                        path,
                        source: io::Error::other("too many levels of symlinks"),
                    });
                }
                let target = fs::read_link(&path).map_err(io_err("reading the symlink", &path))?;
                let target = target.to_string_lossy().into_owned();
                real.pop();
                if target.starts_with('/') {
                    real.clear();
                }
                todo.extend(target.split('/').rev().map(str::to_string));
            }
        }
        let joined = real.join("/");
        let meta = fs::metadata(self.root.join(&joined))
            .map_err(io_err("reading", &self.root.join(&joined)))?;
        Ok(Some((joined, meta)))
    }
}

fn place_name<'a>(from: &CopyFrom<'a>) -> (&'static str, &'a Path, Option<&'a DockerIgnore>) {
    match from {
        CopyFrom::Context { dir, ignore } => ("the build context", dir, Some(*ignore)),
        CopyFrom::Root(root) => ("the --from source", root, None),
    }
}

fn plan(spec: &CopySpec) -> Result<Vec<Item>, CopyError> {
    if spec.sources.is_empty() {
        return Err(CopyError::NoSources);
    }
    let dest = Dest::of(spec);
    let several = spec.sources.len() > 1
        || spec
            .sources
            .iter()
            .any(|s| matches!(s, CopySource::Path(p) if has_wildcards(p)));
    if several && !dest.is_dir {
        return Err(CopyError::DestNotDirectory {
            sources: spec
                .sources
                .iter()
                .map(|s| match s {
                    CopySource::Path(p) => p.clone(),
                    CopySource::Heredoc { name, .. } => format!("<<{name}"),
                })
                .collect(),
            dest: spec.dest.to_string(),
        });
    }
    let (place, root, ignore) = place_name(&spec.from);
    let view = SourceView { root, ignore };
    let mut items = Vec::new();
    for source in spec.sources {
        match source {
            CopySource::Heredoc { name, content } => items.push(Item {
                shown: format!("<<{name}"),
                name: name.clone(),
                host: PathBuf::new(),
                kind: ItemKind::Heredoc(content.clone()),
            }),
            CopySource::Path(p) => {
                let cleaned = clean_path(&format!("/{p}"));
                let rel = cleaned.trim_start_matches('/');
                if has_wildcards(rel) {
                    for matched in wildcard_matches(&view, rel)? {
                        // A match that is a dangling symlink fails, as fsutil's Lstat of the
                        // followed path does.
                        match source_item(&view, spec, &matched, &matched)? {
                            Some(item) => items.push(item),
                            None => {
                                return Err(CopyError::NotFound {
                                    source_path: matched,
                                    place: place.to_string(),
                                })
                            }
                        }
                    }
                } else {
                    match source_item(&view, spec, p, rel)? {
                        Some(item) => items.push(item),
                        None => {
                            return Err(CopyError::NotFound {
                                source_path: p.clone(),
                                place: place.to_string(),
                            })
                        }
                    }
                }
            }
        }
    }
    Ok(items)
}

/// The source `rel` (cleaned, relative), followed; `None` when it is not in the view.
fn source_item(
    view: &SourceView,
    spec: &CopySpec,
    shown: &str,
    rel: &str,
) -> Result<Option<Item>, CopyError> {
    let Some((real, meta)) = view.resolve(rel)? else {
        return Ok(None);
    };
    if !view.visible(&real, meta.is_dir()) {
        return match view.excluded_error(shown, &real) {
            Some(e) => Err(e),
            None => Ok(None),
        };
    }
    let host = view.root.join(&real);
    let name = rel.rsplit('/').next().unwrap_or_default().to_string();
    let kind = if meta.is_dir() {
        let entries = tree_entries(view, &real, &host)?;
        if entries.is_none() {
            return match view.excluded_error(shown, &real) {
                Some(e) => Err(e),
                None => Ok(None),
            };
        }
        ItemKind::Tree(entries.unwrap_or_default())
    } else if spec.add && meta.is_file() {
        match archive_kind(&host)? {
            Some(c) => ItemKind::Archive(c),
            None => ItemKind::File,
        }
    } else {
        ItemKind::File
    };
    Ok(Some(Item {
        shown: shown.to_string(),
        name,
        host,
        kind,
    }))
}

/// The entries below the directory `host` (real path `real` in the view), sorted, each
/// directory before its contents; `None` when the directory itself is excluded and nothing
/// below it is taken back.
fn tree_entries(
    view: &SourceView,
    real: &str,
    host: &Path,
) -> Result<Option<Vec<TreeEntry>>, CopyError> {
    let mut out = Vec::new();
    let self_excluded = view.ignore.is_some_and(|i| i.is_excluded(real));
    walk_tree(view, real, host, Path::new(""), &mut out)?;
    if self_excluded && out.is_empty() {
        return Ok(None);
    }
    Ok(Some(out))
}

/// Appends the visible entries below `host/rel`; returns whether any was appended.
fn walk_tree(
    view: &SourceView,
    real: &str,
    host: &Path,
    rel: &Path,
    out: &mut Vec<TreeEntry>,
) -> Result<bool, CopyError> {
    let dir = host.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(io_err("reading the directory", &dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_err("reading the directory", &dir))?;
    names.sort();
    let mut any = false;
    for name in names {
        let child = rel.join(&name);
        let path = host.join(&child);
        let meta = fs::symlink_metadata(&path).map_err(io_err("reading", &path))?;
        let context_rel = if real.is_empty() {
            child.to_string_lossy().into_owned()
        } else {
            format!("{real}/{}", child.to_string_lossy())
        };
        let excluded = view.ignore.is_some_and(|i| i.is_excluded(&context_rel));
        if meta.is_dir() {
            if excluded && !view.visible(&context_rel, true) {
                continue;
            }
            let at = out.len();
            out.push(TreeEntry {
                rel: child.clone(),
                meta,
            });
            let inner = walk_tree(view, real, host, &child, out)?;
            if excluded && !inner {
                // An excluded directory is there only for what is taken back below it.
                out.truncate(at);
                continue;
            }
            any = true;
        } else if !excluded {
            out.push(TreeEntry { rel: child, meta });
            any = true;
        }
    }
    Ok(any)
}

/// fsutil `ResolveWildcards` + `resolveWildcards`: the wildcard-free leading components name a
/// directory (followed); below it, entries whose path matches the rest (component for
/// component, `filepath.Match`) in walk (name) order; a matching directory is not entered.
fn wildcard_matches(view: &SourceView, rel: &str) -> Result<Vec<String>, CopyError> {
    let parts: Vec<&str> = rel.split('/').collect();
    let first = parts.iter().position(|p| has_wildcards(p)).unwrap_or(0);
    let (fixed, pattern) = (parts[..first].join("/"), parts[first..].join("/"));
    let Some((base_real, meta)) = view.resolve(&fixed)? else {
        return Ok(Vec::new());
    };
    if !meta.is_dir() {
        return Ok(Vec::new());
    }
    let depth = parts.len() - first;
    let mut out = Vec::new();
    walk_matches(view, &base_real, "", &pattern, depth, &mut out)?;
    Ok(out)
}

fn walk_matches(
    view: &SourceView,
    base: &str,
    rel: &str,
    pattern: &str,
    depth: usize,
    out: &mut Vec<String>,
) -> Result<(), CopyError> {
    let join = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else {
            format!("{a}/{b}")
        }
    };
    let dir = view.root.join(join(base, rel));
    let mut names: Vec<String> = match fs::read_dir(&dir) {
        Ok(rd) => rd
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()
            .map_err(io_err("reading the directory", &dir))?,
        Err(e) => return Err(io_err("reading the directory", &dir)(e)),
    };
    names.sort();
    for name in names {
        let child = join(rel, &name);
        let full = join(base, &child);
        let meta = fs::symlink_metadata(view.root.join(&full))
            .map_err(io_err("reading", &view.root.join(&full)))?;
        if !view.visible(&full, meta.is_dir()) {
            continue;
        }
        let matched = glob_match(pattern, &child).map_err(|reason| CopyError::BadPattern {
            pattern: pattern.to_string(),
            reason,
        })?;
        if matched {
            out.push(full);
            continue;
        }
        if meta.is_dir() && child.matches('/').count() + 1 < depth {
            walk_matches(view, base, &child, pattern, depth, out)?;
        }
    }
    Ok(())
}

/// BuildKit's `isArchivePath`: a regular file that decompresses (or is plain) and starts with a
/// readable tar header.
fn archive_kind(path: &Path) -> Result<Option<Compression>, CopyError> {
    let mut head = [0u8; 6];
    let n = read_up_to(&mut open_source(path)?, &mut head).map_err(io_err("reading", path))?;
    let head = &head[..n];
    let shown = path.to_string_lossy().into_owned();
    let unsupported = |format: &str| {
        Err(CopyError::UnsupportedArchive {
            source_path: shown.clone(),
            format: format.to_string(),
        })
    };
    let compression = if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if head.starts_with(b"BZh") {
        return unsupported("bzip2");
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        return unsupported("xz");
    } else {
        Compression::None
    };
    let mut reader = match decompressed(path, compression) {
        Ok(r) => r,
        Err(_) => return Ok(None),
    };
    let mut block = [0u8; 512];
    match read_up_to(&mut reader, &mut block) {
        Ok(512) if tar_header_ok(&block) => Ok(Some(compression)),
        _ => Ok(None),
    }
}

/// Go archive/tar's first-header check: not a zero block, and the checksum (unsigned or
/// signed sum with the checksum field as spaces) agrees.
fn tar_header_ok(block: &[u8; 512]) -> bool {
    if block.iter().all(|&b| b == 0) {
        return false;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .map(|&b| b as char)
        .filter(|c| !c.is_whitespace() && *c != '\0')
        .collect();
    let Ok(want) = i64::from_str_radix(&text, 8) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    want == unsigned || want == signed
}

fn read_up_to(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn decompressed(path: &Path, compression: Compression) -> Result<Box<dyn Read>, CopyError> {
    let file = BufReader::new(open_source(path)?);
    Ok(match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(file)
                .map_err(io_err("decompressing", path))?,
        ),
    })
}

/// A source file, opened without following a symlink at its name.
fn open_source(path: &Path) -> Result<File, CopyError> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(io_err("opening", path))
}

fn stat(path: &Path) -> Result<Metadata, CopyError> {
    fs::symlink_metadata(path).map_err(io_err("reading", path))
}

// ---------------------------------------------------------------------------------------------
// Writing into the stage root.

/// The destination, absolute and cleaned, and whether it names a directory.
struct Dest {
    /// Its components below the root.
    parts: Vec<String>,
    is_dir: bool,
}

impl Dest {
    /// dockerfile2llb `pathRelativeToWorkingDir`: relative to the working directory, `.` and ``
    /// are `./`; a trailing `/` (or `/.`) keeps it a directory.
    fn of(spec: &CopySpec) -> Dest {
        let dest = spec.dest;
        let is_dir = dest.is_empty()
            || dest == "."
            || dest.ends_with('/')
            || dest.ends_with("/.")
            || clean_path(&format!("/{}/{dest}", spec.workdir)) == "/";
        let full = if dest.starts_with('/') {
            clean_path(dest)
        } else {
            clean_path(&format!("/{}/{dest}", spec.workdir))
        };
        Dest {
            parts: full
                .split('/')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            is_dir,
        }
    }

    fn shown(&self) -> String {
        format!("/{}", self.parts.join("/"))
    }
}

struct Writer<'a> {
    root: PathBuf,
    root_fd: OwnedFd,
    spec: &'a CopySpec<'a>,
    stats: CopyStats,
    /// Directories whose mode (when copied) and times are set after their contents: real path
    /// below the root, mode (`None`: keep), owner (`None`: keep), mtime.
    dir_meta: Vec<DirMeta>,
}

struct DirMeta {
    rel: PathBuf,
    mode: Option<u32>,
    owner: Option<(u32, u32)>,
    mtime: TimeSpec,
}

/// What a name in a directory of the root is.
enum Existing {
    Nothing,
    Dir,
    Other,
}

impl Writer<'_> {
    fn dest_err(&self, path: &Path, reason: impl Into<String>) -> CopyError {
        CopyError::Destination {
            path: format!("/{}", path.display()),
            reason: reason.into(),
        }
    }

    /// Host ids for the owner of created parent directories: the `--chown` user, else root.
    fn parent_owner(&self) -> (u32, u32) {
        let (uid, gid) = self.spec.chown.unwrap_or((0, 0));
        (self.spec.to_host_ids)(uid, gid)
    }

    /// The directory `parts` inside the root, symlinks on the way followed inside it, missing
    /// ones created (fsutil `MkdirAll`: mode 0755 or the `--chmod` mode, the parent owner).
    fn ensure_dir(&mut self, parts: &[String]) -> Result<(OwnedFd, PathBuf), CopyError> {
        let owner = self.parent_owner();
        let mode = self.spec.chmod.unwrap_or(0o755);
        let names: Vec<&OsStr> = parts.iter().map(OsStr::new).collect();
        let mut created = |rel: &Path, parent: BorrowedFd<'_>| -> Result<(), String> {
            let leaf = rel.file_name().unwrap_or_default();
            chown_at(parent, leaf, owner);
            // A directory just made by mkdirat: following its name is the same as not (and
            // Linux has no chmod that does not follow).
            fchmodat(
                parent,
                leaf,
                Mode::from_bits_truncate(mode),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| format!("setting the mode of /{}: {e}", rel.display()))
        };
        match at::resolve_dir(self.root_fd.as_fd(), &names, Some(&mut created)) {
            Ok(Some(found)) => Ok(found),
            Ok(None) => Err(self.dest_err(Path::new(&parts.join("/")), "cannot be created")),
            Err(reason) => Err(self.dest_err(Path::new(&parts.join("/")), reason)),
        }
    }

    /// What `parts` is, symlinks followed inside the root: a directory (open, real path), or
    /// not one (missing or something else).
    fn existing_dir(&self, parts: &[String]) -> Option<(OwnedFd, PathBuf)> {
        let names: Vec<&OsStr> = parts.iter().map(OsStr::new).collect();
        at::resolve_dir(self.root_fd.as_fd(), &names, None)
            .ok()
            .flatten()
    }

    fn item(&mut self, item: &Item, dest: &Dest) -> Result<(), CopyError> {
        match &item.kind {
            ItemKind::Tree(entries) => {
                let (_, real) = match self.existing_dir(&dest.parts) {
                    Some(found) => found,
                    None => {
                        if !dest.parts.is_empty() && self.exists_non_dir(&dest.parts) {
                            return Err(CopyError::Conflict {
                                path: dest.shown(),
                                message: format!(
                                    "cannot copy the directory {} to a non-directory",
                                    item.shown
                                ),
                            });
                        }
                        self.ensure_dir(&dest.parts)?
                    }
                };
                let top = stat(&item.host)?;
                self.dir_meta.push(DirMeta {
                    rel: real.clone(),
                    mode: None,
                    owner: None,
                    mtime: mtime_of(&top),
                });
                for entry in entries {
                    self.entry(
                        &item.host.join(&entry.rel),
                        &real.join(&entry.rel),
                        &entry.meta,
                    )?;
                }
                Ok(())
            }
            ItemKind::Archive(compression) => {
                let (_, real) = self.ensure_dir(&dest.parts)?;
                let mut reader = decompressed(&item.host, *compression)?;
                let spec = self.spec;
                let owners = |uid: u32, gid: u32| {
                    let image = spec.chown.unwrap_or((uid, gid));
                    (spec.to_host_ids)(image.0, image.1)
                };
                rootfs::unpack_tar(&mut reader, &self.root.join(&real), &item.name, &owners)
                    .map_err(|source| CopyError::Archive {
                        source_path: item.shown.clone(),
                        source: Box::new(source),
                    })?;
                self.stats.archives += 1;
                Ok(())
            }
            ItemKind::File | ItemKind::Heredoc(_) => {
                let target = self.file_target(item, dest)?;
                match &item.kind {
                    ItemKind::Heredoc(content) => self.heredoc(&target, content),
                    _ => {
                        let meta = stat(&item.host)?;
                        self.entry(&item.host, &target, &meta)
                    }
                }
            }
        }
    }

    /// Where a file source goes (fsutil `prepareTargetDir`): inside the destination when it is
    /// (or, ending in `/`, becomes) a directory, else at the destination's name.
    fn file_target(&mut self, item: &Item, dest: &Dest) -> Result<PathBuf, CopyError> {
        if dest.is_dir {
            let (_, real) = self.ensure_dir(&dest.parts)?;
            return Ok(real.join(&item.name));
        }
        if let Some((_, real)) = self.existing_dir(&dest.parts) {
            return Ok(real.join(&item.name));
        }
        let Some((leaf, parents)) = dest.parts.split_last() else {
            return Err(self.dest_err(Path::new(""), "is the root"));
        };
        let (_, real) = self.ensure_dir(parents)?;
        Ok(real.join(leaf))
    }

    fn exists_non_dir(&self, parts: &[String]) -> bool {
        let Some((leaf, parents)) = parts.split_last() else {
            return false;
        };
        match self.existing_dir(parents) {
            Some((fd, _)) => matches!(at::kind_at(fd.as_fd(), OsStr::new(leaf)), Ok(Some(_))),
            None => false,
        }
    }

    /// The open parent directory of the real path `rel` and what is at its name.
    fn open_parent(&self, rel: &Path) -> Result<(OwnedFd, Existing), CopyError> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let leaf = rel.file_name().unwrap_or_default();
        let fd = at::open_real(
            self.root_fd.as_fd(),
            parent,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
        )
        .map_err(|e| self.dest_err(parent, format!("cannot be opened: {e}")))?;
        let existing = match at::kind_at(fd.as_fd(), leaf) {
            Ok(None) => Existing::Nothing,
            Ok(Some(at::Kind::Dir)) => Existing::Dir,
            Ok(Some(_)) => Existing::Other,
            Err(e) => return Err(self.dest_err(rel, format!("cannot be read: {e}"))),
        };
        Ok((fd, existing))
    }

    /// Copies one entry (`src` on the host, `meta` its lstat) to the real path `rel`.
    fn entry(&mut self, src: &Path, rel: &Path, meta: &Metadata) -> Result<(), CopyError> {
        let (dir, existing) = self.open_parent(rel)?;
        let leaf = rel.file_name().unwrap_or_default();
        let ft = meta.file_type();
        let image = image_owner(self.spec, meta);
        let owner = (self.spec.to_host_ids)(image.0, image.1);
        let mode = mode_of(self.spec, meta);
        if ft.is_dir() {
            match existing {
                Existing::Nothing => {
                    mkdirat(dir.as_fd(), leaf, Mode::from_bits_truncate(0o700))
                        .map_err(|e| self.dest_err(rel, format!("cannot be created: {e}")))?;
                }
                Existing::Dir => {}
                Existing::Other => {
                    return Err(CopyError::Conflict {
                        path: format!("/{}", rel.display()),
                        message: format!(
                            "cannot copy the directory {} to a non-directory",
                            src.display()
                        ),
                    })
                }
            }
            chown_at(dir.as_fd(), leaf, owner);
            self.dir_meta.push(DirMeta {
                rel: rel.to_path_buf(),
                mode: Some(mode),
                owner: Some(owner),
                mtime: mtime_of(meta),
            });
            self.stats.dirs += 1;
            return Ok(());
        }
        match existing {
            Existing::Dir => {
                return Err(CopyError::Conflict {
                    path: format!("/{}", rel.display()),
                    message: format!(
                        "cannot replace the directory with the file {}",
                        src.display()
                    ),
                })
            }
            Existing::Other => unlinkat(dir.as_fd(), leaf, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| self.dest_err(rel, format!("cannot be replaced: {e}")))?,
            Existing::Nothing => {}
        }
        let t = mtime_of(meta);
        if ft.is_symlink() {
            let target = fs::read_link(src).map_err(io_err("reading the symlink", src))?;
            symlinkat(target.as_os_str(), dir.as_fd(), leaf)
                .map_err(|e| self.dest_err(rel, format!("cannot be created: {e}")))?;
            chown_at(dir.as_fd(), leaf, owner);
            let _ = utimensat(dir.as_fd(), leaf, &t, &t, UtimensatFlags::NoFollowSymlink);
            self.stats.symlinks += 1;
        } else if ft.is_file() {
            let mut input = open_source(src)?;
            let mut output = at::create_file(dir.as_fd(), leaf)
                .map_err(|e| self.dest_err(rel, format!("cannot be created: {e}")))?;
            let n = io::copy(&mut input, &mut output).map_err(io_err("copying", src))?;
            chown_at(dir.as_fd(), leaf, owner);
            // After the owner: chown clears setuid and setgid bits.
            fchmod(&output, Mode::from_bits_truncate(mode))
                .map_err(|e| self.dest_err(rel, format!("mode cannot be set: {e}")))?;
            let _ = nix::sys::stat::futimens(&output, &t, &t);
            self.stats.files += 1;
            self.stats.bytes += n;
        } else {
            self.stats.skipped += 1;
        }
        Ok(())
    }

    /// A heredoc source: a file of mode 0644 (or `--chmod`), owned by root (or `--chown`).
    fn heredoc(&mut self, rel: &Path, content: &str) -> Result<(), CopyError> {
        let (dir, existing) = self.open_parent(rel)?;
        let leaf = rel.file_name().unwrap_or_default();
        match existing {
            Existing::Dir => {
                return Err(CopyError::Conflict {
                    path: format!("/{}", rel.display()),
                    message: "cannot replace the directory with a heredoc file".into(),
                })
            }
            Existing::Other => unlinkat(dir.as_fd(), leaf, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| self.dest_err(rel, format!("cannot be replaced: {e}")))?,
            Existing::Nothing => {}
        }
        let mut output = at::create_file(dir.as_fd(), leaf)
            .map_err(|e| self.dest_err(rel, format!("cannot be created: {e}")))?;
        output
            .write_all(content.as_bytes())
            .map_err(io_err("writing", &self.root.join(rel)))?;
        chown_at(dir.as_fd(), leaf, self.parent_owner());
        fchmod(
            &output,
            Mode::from_bits_truncate(self.spec.chmod.unwrap_or(0o644)),
        )
        .map_err(|e| self.dest_err(rel, format!("mode cannot be set: {e}")))?;
        self.stats.files += 1;
        self.stats.bytes += content.len() as u64;
        Ok(())
    }

    /// Directory modes, owners and times, deepest first (a read-only directory is filled
    /// before it becomes read-only; its time is not disturbed by its children).
    fn finish_dirs(&mut self) -> Result<(), CopyError> {
        // A directory copied twice takes the later copy's metadata.
        let mut seen = BTreeSet::new();
        let mut dirs: Vec<DirMeta> = std::mem::take(&mut self.dir_meta)
            .into_iter()
            .rev()
            .filter(|d| seen.insert(d.rel.clone()))
            .collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.rel.components().count()));
        for d in &dirs {
            let fd = match at::open_real(
                self.root_fd.as_fd(),
                &d.rel,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            ) {
                Ok(fd) => fd,
                Err(e) => return Err(self.dest_err(&d.rel, format!("cannot be opened: {e}"))),
            };
            if let Some((uid, gid)) = d.owner {
                let _ =
                    nix::unistd::fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
            }
            if let Some(mode) = d.mode {
                fchmod(&fd, Mode::from_bits_truncate(mode))
                    .map_err(|e| self.dest_err(&d.rel, format!("mode cannot be set: {e}")))?;
            }
            let _ = nix::sys::stat::futimens(&fd, &d.mtime, &d.mtime);
        }
        Ok(())
    }
}

/// `lchown` relative to a directory; best effort (as an unprivileged user only the copier's
/// own ids are possible).
fn chown_at(dir: BorrowedFd<'_>, name: &OsStr, (uid, gid): (u32, u32)) {
    let _ = fchownat(
        dir,
        name,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    );
}

fn mtime_of(meta: &Metadata) -> TimeSpec {
    TimeSpec::new(meta.mtime(), meta.mtime_nsec())
}

#[cfg(test)]
mod tests;
