//! The layer of one Dockerfile step: what the step changed in its stage's root filesystem,
//! found by comparing the root before and after it, written as a reproducible tar layer.
//!
//! A [`Snapshot`] records every path of a root without following symlinks: type, permission
//! bits (setuid, setgid and sticky included), owner, size, modification and change times in
//! nanoseconds, device and inode, link count and symlink target. [`changes`] compares two
//! snapshots the way containerd and Docker compute a layer from two mounts, but from metadata
//! only: a path is changed when its type, mode, owner, size, mtime, ctime, inode or link target
//! differ. The change time is what catches a `chmod`, a `chown`, a `touch -r` or an in-place
//! rewrite that keeps size and mtime: the kernel sets it on every change and nothing in user
//! space can set it back. (The kernel takes it from a clock that may tick only every few
//! milliseconds: a rewrite that keeps size and mtime within the same tick as the file's
//! previous change is the one change metadata cannot see; a step's changes come well after the
//! snapshot before it.)
//!
//! What a layer carries, as the OCI image spec's changesets say:
//! - every added or changed path, with every directory above it (with its current metadata, as
//!   Docker and containerd layers carry the parents);
//! - a deleted path as a whiteout `.wh.<name>`, only the topmost one (a deleted directory is one
//!   whiteout, not one per file in it), and none below a path that is no longer a directory;
//! - a path whose type changed is written as its new self: a file over a directory replaces the
//!   directory with what was below it (tar extraction does), a directory over a file likewise;
//! - a directory that was removed and made again (another inode) gets the opaque marker
//!   `<dir>/.wh..wh..opq`, so nothing a lower layer put in it shows through, and everything now in
//!   it is written;
//! - device nodes, FIFOs and sockets are not carried (the unpacker does not create them either,
//!   the runner provides `/dev`): they are left out and listed in
//!   [`Changes::special_skipped`].
//!
//! [`write_diff_layer`] writes the tar in the sorted order of the entry names (so parents come
//! before their children and the same changes always give the same bytes): owners mapped to the
//! image's ids, numeric only; modification times clamped to the build's epoch (`min(actual,
//! epoch)`, BuildKit's rewrite-timestamp rule); full permission bits; symlinks as written; a
//! second path of an inode already written in this layer as a tar hard link to the first;
//! whiteouts and the opaque marker as empty files with mode 0, owner 0:0 and the epoch as mtime.
//! File contents stream from the root; a file that changes size while it is read fails the
//! layer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use crate::exit;
use crate::oci::{self, LayerOptions, OciError};

/// The prefix of a whiteout's name: `.wh.<name>` deletes `<name>` of lower layers.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The opaque-directory marker: what lower layers put in its directory is hidden.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Why a snapshot could not be taken or a layer not written. Each names the path at fault.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading the root failed.
    #[error("{action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A name in the root is not UTF-8 (layers name files in UTF-8).
    #[error(
        "{}: the file name (or symlink target) is not UTF-8, which an image layer cannot \
         name; rename it, or remove it in the step that created it",
        .path.display()
    )]
    NotUtf8 { path: PathBuf },

    /// A file to write is named like a whiteout, which every reader would take for one.
    #[error(
        "{}: a file whose name starts with \".wh.\" cannot go into a layer (image readers take \
         it for a deletion marker); rename it or remove it in the step that created it",
        .path.display()
    )]
    ReservedName { path: PathBuf },

    /// A file changed between the snapshot and the writing of its layer.
    #[error(
        "{}: changed while its layer was being written ({reason}); nothing may run in the \
         stage's root while its layer is written",
        .path.display()
    )]
    ChangedWhileWriting { path: PathBuf, reason: String },

    /// The changes were not computed from this snapshot.
    #[error(
        "{path:?} is in the changes but not in the snapshot; write the layer with the \
         snapshot the changes were computed from"
    )]
    NotInSnapshot { path: String },

    /// The layer could not be compressed or written.
    #[error(transparent)]
    Layer(#[from] OciError),
}

impl SnapshotError {
    fn io<'a>(
        action: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
        move |source| SnapshotError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The documented exit code (see `crate::exit`) a command should end with for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            SnapshotError::NotUtf8 { .. } | SnapshotError::ReservedName { .. } => exit::USAGE,
            SnapshotError::ChangedWhileWriting { .. } => exit::CHECK_FAILED,
            SnapshotError::Io { .. } | SnapshotError::NotInSnapshot { .. } => exit::INTERNAL,
            SnapshotError::Layer(e) => e.exit_code(),
        }
    }
}

/// What a path is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    Regular,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl FileKind {
    fn of(file_type: std::fs::FileType) -> FileKind {
        if file_type.is_dir() {
            FileKind::Directory
        } else if file_type.is_symlink() {
            FileKind::Symlink
        } else if file_type.is_char_device() {
            FileKind::CharDevice
        } else if file_type.is_block_device() {
            FileKind::BlockDevice
        } else if file_type.is_fifo() {
            FileKind::Fifo
        } else if file_type.is_socket() {
            FileKind::Socket
        } else {
            FileKind::Regular
        }
    }

    /// Device nodes, FIFOs and sockets: never carried by a layer.
    pub fn is_special(self) -> bool {
        !matches!(
            self,
            FileKind::Directory | FileKind::Regular | FileKind::Symlink
        )
    }
}

/// One path of a snapshot, as `lstat` saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    pub kind: FileKind,
    /// Permission bits with setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owners as stored in the root (host ids of the job's range).
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Change time (of the inode), nanoseconds since the epoch.
    pub ctime_ns: i128,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    /// A symlink's target, as written.
    pub link_target: Option<String>,
}

impl SnapshotEntry {
    /// Whether the path was changed between `self` (before) and `after`. The link count is not
    /// compared: linking or unlinking changes the change time.
    fn changed(&self, after: &SnapshotEntry) -> bool {
        self.kind != after.kind
            || self.mode != after.mode
            || (self.uid, self.gid) != (after.uid, after.gid)
            || self.size != after.size
            || self.mtime_ns != after.mtime_ns
            || self.ctime_ns != after.ctime_ns
            || (self.dev, self.ino) != (after.dev, after.ino)
            || self.link_target != after.link_target
    }
}

/// Every path of a root filesystem (relative, `/`-separated, the root itself not included) with
/// its metadata. `Snapshot::default()` is an empty root (`FROM scratch`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    entries: BTreeMap<String, SnapshotEntry>,
}

impl Snapshot {
    pub fn get(&self, path: &str) -> Option<&SnapshotEntry> {
        self.entries.get(path)
    }

    /// The paths in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SnapshotEntry)> {
        self.entries.iter().map(|(p, e)| (p.as_str(), e))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn is_dir(&self, path: &str) -> bool {
        self.entries
            .get(path)
            .is_some_and(|e| e.kind == FileKind::Directory)
    }
}

/// Records every path below `root` without following symlinks. `skip` gets each relative path
/// (`proc`, `usr/bin/x`) before it is looked at: a path it accepts is not recorded and, if a
/// directory, not entered (for mount points such as `proc`, `sys`, `dev`).
pub fn snapshot(root: &Path, skip: &dyn Fn(&str) -> bool) -> Result<Snapshot, SnapshotError> {
    let meta = std::fs::symlink_metadata(root).map_err(SnapshotError::io("reading", root))?;
    if !meta.is_dir() {
        return Err(SnapshotError::Io {
            action: "reading the root directory",
            path: root.to_path_buf(),
            source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        });
    }
    let mut entries = BTreeMap::new();
    // Directories still to read, by their relative path ("" is the root).
    let mut pending = vec![String::new()];
    while let Some(dir) = pending.pop() {
        let dir_path = root.join(&dir);
        let read = std::fs::read_dir(&dir_path)
            .map_err(SnapshotError::io("reading the directory", &dir_path))?;
        for child in read {
            let child = child.map_err(SnapshotError::io("reading the directory", &dir_path))?;
            let path = child.path();
            let Some(name) = child.file_name().to_str().map(str::to_string) else {
                return Err(SnapshotError::NotUtf8 { path });
            };
            let rel = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            if skip(&rel) {
                continue;
            }
            let meta =
                std::fs::symlink_metadata(&path).map_err(SnapshotError::io("reading", &path))?;
            let kind = FileKind::of(meta.file_type());
            let link_target = match kind {
                FileKind::Symlink => {
                    let target =
                        std::fs::read_link(&path).map_err(SnapshotError::io("reading", &path))?;
                    match target.into_os_string().into_string() {
                        Ok(target) => Some(target),
                        Err(_) => return Err(SnapshotError::NotUtf8 { path }),
                    }
                }
                _ => None,
            };
            if kind == FileKind::Directory {
                pending.push(rel.clone());
            }
            entries.insert(
                rel,
                SnapshotEntry {
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    size: meta.size(),
                    mtime_ns: i128::from(meta.mtime()) * 1_000_000_000
                        + i128::from(meta.mtime_nsec()),
                    ctime_ns: i128::from(meta.ctime()) * 1_000_000_000
                        + i128::from(meta.ctime_nsec()),
                    dev: meta.dev(),
                    ino: meta.ino(),
                    nlink: meta.nlink(),
                    link_target,
                },
            );
        }
    }
    Ok(Snapshot { entries })
}

/// What one entry of a layer does to the path it concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The path as it is now (added, changed, or a directory above one of those).
    Write,
    /// The path was deleted: `.wh.<name>` hides it in lower layers.
    Whiteout,
    /// The directory was made anew: `.wh..wh..opq` hides what lower layers put in it.
    Opaque,
}

/// One entry of a diff layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerChange {
    /// The path concerned (the deleted path of a whiteout, the directory of an opaque marker).
    pub path: String,
    pub kind: ChangeKind,
}

impl LayerChange {
    /// The entry's name in the tar (without a directory's trailing `/`).
    pub fn entry_name(&self) -> String {
        match self.kind {
            ChangeKind::Write => self.path.clone(),
            ChangeKind::Opaque => format!("{}/{OPAQUE_MARKER}", self.path),
            ChangeKind::Whiteout => match self.path.rsplit_once('/') {
                Some((parent, name)) => format!("{parent}/{WHITEOUT_PREFIX}{name}"),
                None => format!("{WHITEOUT_PREFIX}{}", self.path),
            },
        }
    }
}

/// What changed between two snapshots, as the entries of a layer in their order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Sorted by entry name: parents before children, the same changes in the same order.
    entries: Vec<LayerChange>,
    /// Device nodes, FIFOs and sockets added or changed, which the layer leaves out.
    special_skipped: Vec<String>,
}

impl Changes {
    /// Nothing to put in a layer (skipped special files aside).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The layer's entries in the order they are written.
    pub fn iter(&self) -> impl Iterator<Item = &LayerChange> {
        self.entries.iter()
    }

    /// Added or changed device nodes, FIFOs and sockets, which no layer carries.
    pub fn special_skipped(&self) -> &[String] {
        &self.special_skipped
    }
}

/// The directories above `path`, nearest last (`a`, `a/b` for `a/b/c`).
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// What changed from `before` to `after` (see the module documentation for the rules).
pub fn changes(before: &Snapshot, after: &Snapshot) -> Changes {
    let mut written = BTreeSet::new();
    let mut opaque = BTreeSet::new();
    let mut special_skipped = BTreeSet::new();
    for (path, now) in &after.entries {
        let was = before.entries.get(path);
        if !was.is_none_or(|was| was.changed(now)) {
            continue;
        }
        if now.kind.is_special() {
            special_skipped.insert(path.clone());
            continue;
        }
        written.insert(path.as_str());
        if let Some(was) = was {
            let both_dirs = was.kind == FileKind::Directory && now.kind == FileKind::Directory;
            if both_dirs && (was.dev, was.ino) != (now.dev, now.ino) {
                opaque.insert(path.as_str());
            }
        }
    }
    // Below an opaque directory nothing of the lower layers shows: all of it is written.
    for dir in &opaque {
        let prefix = format!("{dir}/");
        for (path, now) in after.entries.range(prefix.clone()..) {
            if !path.starts_with(&prefix) {
                break;
            }
            if now.kind.is_special() {
                special_skipped.insert(path.clone());
            } else {
                written.insert(path.as_str());
            }
        }
    }
    // A deleted path (or one that became a special file) gets a whiteout when its directory is
    // still there and lower layers would show it: not below another deleted path, a path that
    // is no longer a directory, or an opaque directory.
    let mut whiteouts = BTreeSet::new();
    for (path, was) in &before.entries {
        let gone = match after.entries.get(path) {
            None => true,
            Some(now) => now.kind.is_special() && was.changed(now),
        };
        let visible = ancestors(path).all(|a| after.is_dir(a) && !opaque.contains(a));
        if gone && visible {
            whiteouts.insert(path.as_str());
        }
    }
    let mut parents = BTreeSet::new();
    for path in written.iter().chain(&whiteouts) {
        parents.extend(ancestors(path));
    }
    written.extend(parents);

    let mut entries: Vec<(String, LayerChange)> = written
        .into_iter()
        .map(|p| (p, ChangeKind::Write))
        .chain(whiteouts.into_iter().map(|p| (p, ChangeKind::Whiteout)))
        .chain(opaque.into_iter().map(|p| (p, ChangeKind::Opaque)))
        .map(|(path, kind)| {
            let change = LayerChange {
                path: path.to_string(),
                kind,
            };
            (change.entry_name(), change)
        })
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Changes {
        entries: entries.into_iter().map(|(_, c)| c).collect(),
        special_skipped: special_skipped.into_iter().collect(),
    }
}

/// How a diff layer is written.
pub struct DiffLayerOptions<'a> {
    /// Compression, threads, and `mtime`: the build's epoch, which clamps every entry's time.
    pub layer: LayerOptions,
    /// Owners as stored in the root → the image's ids.
    pub to_image_ids: &'a dyn Fn(u32, u32) -> (u32, u32),
}

/// Writes the layer of `changes` (computed with `after`, the snapshot of `root` as it is now)
/// into `out`, and returns its digests and `out`.
pub fn write_diff_layer<W: Write + Send>(
    root: &Path,
    after: &Snapshot,
    changes: &Changes,
    options: &DiffLayerOptions,
    out: W,
) -> Result<(oci::Layer, W), SnapshotError> {
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SnapshotError::Io {
        action: "opening the root directory",
        path: root.to_path_buf(),
        source: e.into(),
    })?;
    let writer = DiffTarWriter {
        root,
        root_fd,
        after,
        options,
    };
    oci::write_tar_layer(&options.layer, out, |sink| writer.write(changes, sink))
}

struct DiffTarWriter<'a> {
    root: &'a Path,
    root_fd: OwnedFd,
    after: &'a Snapshot,
    options: &'a DiffLayerOptions<'a>,
}

impl<'a> DiffTarWriter<'a> {
    fn write(&self, changes: &'a Changes, sink: &mut dyn Write) -> Result<(), SnapshotError> {
        let mut builder = tar::Builder::new(sink);
        // The first path written of each inode with more than one link.
        let mut inodes: HashMap<(u64, u64), &'a str> = HashMap::new();
        for change in changes.iter() {
            match change.kind {
                ChangeKind::Write => self.append_path(&mut builder, &change.path, &mut inodes)?,
                ChangeKind::Whiteout | ChangeKind::Opaque => {
                    let mut header =
                        oci::base_header(tar::EntryType::Regular, 0, self.options.layer.mtime);
                    builder
                        .append_data(&mut header, change.entry_name(), io::empty())
                        .map_err(oci::sink_error)?;
                }
            }
        }
        builder.finish().map_err(oci::sink_error)?;
        Ok(())
    }

    /// Appends `path` as the snapshot saw it: a directory, a symlink, a regular file or a hard
    /// link to the first path of its inode written before.
    fn append_path(
        &self,
        builder: &mut tar::Builder<&mut dyn Write>,
        path: &'a str,
        inodes: &mut HashMap<(u64, u64), &'a str>,
    ) -> Result<(), SnapshotError> {
        let entry = self
            .after
            .get(path)
            .ok_or_else(|| SnapshotError::NotInSnapshot {
                path: path.to_string(),
            })?;
        let name = path.rsplit('/').next().unwrap_or(path);
        if name.starts_with(WHITEOUT_PREFIX) {
            return Err(SnapshotError::ReservedName {
                path: self.root.join(path),
            });
        }
        match entry.kind {
            FileKind::Directory => builder.append_data(
                &mut self.header(entry, tar::EntryType::Directory),
                format!("{path}/"),
                io::empty(),
            ),
            FileKind::Symlink => builder.append_link(
                &mut self.header(entry, tar::EntryType::Symlink),
                path,
                entry.link_target.as_deref().unwrap_or_default(),
            ),
            FileKind::Regular => match inodes.get(&(entry.dev, entry.ino)) {
                Some(first) => {
                    builder.append_link(&mut self.header(entry, tar::EntryType::Link), path, first)
                }
                None => {
                    if entry.nlink > 1 {
                        inodes.insert((entry.dev, entry.ino), path);
                    }
                    return self.append_regular(builder, path, entry);
                }
            },
            // Left out by `changes`; a special file is never written.
            FileKind::CharDevice | FileKind::BlockDevice | FileKind::Fifo | FileKind::Socket => {
                Ok(())
            }
        }
        .map_err(|e| oci::sink_error(e).into())
    }

    /// A header for `entry`: its mode, its owner in image ids, its mtime clamped to the epoch.
    fn header(&self, entry: &SnapshotEntry, kind: tar::EntryType) -> tar::Header {
        let mtime = u64::try_from(entry.mtime_ns.div_euclid(1_000_000_000))
            .unwrap_or(0)
            .min(self.options.layer.mtime);
        let mut header = oci::base_header(kind, entry.mode, mtime);
        let (uid, gid) = (self.options.to_image_ids)(entry.uid, entry.gid);
        header.set_uid(u64::from(uid));
        header.set_gid(u64::from(gid));
        header
    }

    /// Streams a regular file's content, exactly the size the snapshot saw.
    fn append_regular(
        &self,
        builder: &mut tar::Builder<&mut dyn Write>,
        path: &str,
        entry: &SnapshotEntry,
    ) -> Result<(), SnapshotError> {
        let file = self.open_regular(path, entry)?;
        let mut header = self.header(entry, tar::EntryType::Regular);
        let source = self.root.join(path);
        oci::append_file(builder, &mut header, path, file, &source, entry.size).map_err(|e| match e
        {
            OciError::FileChanged { path, expected } => SnapshotError::ChangedWhileWriting {
                path,
                reason: format!("it no longer has {expected} bytes"),
            },
            e => e.into(),
        })
    }

    /// Opens the regular file at `path` inside the root, following no symlink on the way, and
    /// checks it is still the file the snapshot saw.
    fn open_regular(&self, path: &str, entry: &SnapshotEntry) -> Result<File, SnapshotError> {
        let source = self.root.join(path);
        let fd = openat2(
            &self.root_fd,
            path,
            OpenHow::new()
                .flags(OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)
                .resolve(
                    ResolveFlag::RESOLVE_BENEATH
                        | ResolveFlag::RESOLVE_NO_SYMLINKS
                        | ResolveFlag::RESOLVE_NO_MAGICLINKS,
                ),
        )
        .map_err(|e| SnapshotError::Io {
            action: "opening",
            path: source.clone(),
            source: e.into(),
        })?;
        let file = File::from(fd);
        let meta = file
            .metadata()
            .map_err(SnapshotError::io("reading", &source))?;
        if !meta.is_file() || (meta.dev(), meta.ino()) != (entry.dev, entry.ino) {
            return Err(SnapshotError::ChangedWhileWriting {
                path: source,
                reason: "it was replaced".to_string(),
            });
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::os::unix::fs::PermissionsExt as _;

    fn entry(kind: FileKind, ino: u64) -> SnapshotEntry {
        SnapshotEntry {
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            size: 0,
            mtime_ns: 1_000_000_000,
            ctime_ns: 1_000_000_000,
            dev: 1,
            ino,
            nlink: 1,
            link_target: None,
        }
    }

    fn dir(ino: u64) -> SnapshotEntry {
        entry(FileKind::Directory, ino)
    }

    fn file(ino: u64) -> SnapshotEntry {
        entry(FileKind::Regular, ino)
    }

    fn snap(list: &[(&str, SnapshotEntry)]) -> Snapshot {
        Snapshot {
            entries: list
                .iter()
                .map(|(p, e)| (p.to_string(), e.clone()))
                .collect(),
        }
    }

    /// The layer's entry names, with `W`/`D`/`O` for write, whiteout, opaque.
    fn listed(changes: &Changes) -> Vec<String> {
        changes
            .iter()
            .map(|c| {
                let k = match c.kind {
                    ChangeKind::Write => "W",
                    ChangeKind::Whiteout => "D",
                    ChangeKind::Opaque => "O",
                };
                format!("{k} {}", c.entry_name())
            })
            .collect()
    }

    #[test]
    fn unchanged_snapshots_give_no_changes() {
        let s = snap(&[("a", dir(1)), ("a/f", file(2))]);
        let c = changes(&s, &s.clone());
        assert!(c.is_empty() && c.special_skipped().is_empty(), "{c:?}");
        assert!(changes(&Snapshot::default(), &Snapshot::default()).is_empty());
    }

    #[test]
    fn every_compared_field_is_a_change_and_brings_its_parents() {
        let before = snap(&[("a", dir(1)), ("a/b", dir(2)), ("a/b/f", file(3))]);
        type Edit = (&'static str, fn(&mut SnapshotEntry));
        let edits: [Edit; 9] = [
            ("mode", |e| e.mode = 0o4755),
            ("uid", |e| e.uid = 1),
            ("gid", |e| e.gid = 1),
            ("size", |e| e.size = 1),
            ("mtime", |e| e.mtime_ns += 1),
            ("ctime", |e| e.ctime_ns += 1),
            ("ino", |e| e.ino = 9),
            ("dev", |e| e.dev = 9),
            ("kind", |e| e.kind = FileKind::Symlink),
        ];
        for (what, edit) in edits {
            let mut after = before.clone();
            edit(after.entries.get_mut("a/b/f").unwrap());
            assert_eq!(
                listed(&changes(&before, &after)),
                ["W a", "W a/b", "W a/b/f"],
                "{what}"
            );
        }
        let mut after = before.clone();
        after.entries.get_mut("a/b/f").unwrap().nlink = 2;
        assert!(changes(&before, &after).is_empty(), "nlink alone");
        let (mut l1, mut l2) = (entry(FileKind::Symlink, 4), entry(FileKind::Symlink, 4));
        l1.link_target = Some("x".into());
        l2.link_target = Some("y".into());
        let c = changes(&snap(&[("l", l1)]), &snap(&[("l", l2)]));
        assert_eq!(listed(&c), ["W l"]);
    }

    #[test]
    fn a_deleted_directory_is_one_whiteout() {
        let before = snap(&[
            ("a", dir(1)),
            ("a/gone", dir(2)),
            ("a/gone/x", file(3)),
            ("a/gone/y", dir(4)),
            ("a/gone/y/z", file(5)),
            ("top", file(6)),
        ]);
        let after = snap(&[("a", dir(1))]);
        assert_eq!(
            listed(&changes(&before, &after)),
            ["D .wh.top", "W a", "D a/.wh.gone"]
        );
    }

    #[test]
    fn type_changes_write_the_new_entry_only() {
        let before = snap(&[
            ("d", dir(1)),
            ("d/x", file(2)),
            ("d/y", dir(3)),
            ("d/y/z", file(4)),
            ("f", file(5)),
        ]);
        // d: directory → file; f: file → directory with a child.
        let after = snap(&[("d", file(6)), ("f", dir(7)), ("f/new", file(8))]);
        assert_eq!(listed(&changes(&before, &after)), ["W d", "W f", "W f/new"]);
    }

    #[test]
    fn a_recreated_directory_is_opaque_and_written_whole() {
        let before = snap(&[
            ("r", dir(1)),
            ("r/old", file(2)),
            ("r/kept", file(3)),
            ("r/sub", dir(4)),
            ("r/sub/gone", file(5)),
        ]);
        // `r` is another inode; `r/kept` is the same inode as before (a hard link moved in),
        // unchanged, yet lower layers no longer show it: it must be written.
        let after = snap(&[
            ("r", dir(10)),
            ("r/kept", file(3)),
            ("r/sub", dir(11)),
            ("r/fifo", entry(FileKind::Fifo, 12)),
        ]);
        let c = changes(&before, &after);
        assert_eq!(
            listed(&c),
            [
                "W r",
                "O r/.wh..wh..opq",
                "W r/kept",
                "W r/sub",
                "O r/sub/.wh..wh..opq"
            ]
        );
        assert_eq!(c.special_skipped(), ["r/fifo"]);
    }

    #[test]
    fn special_files_are_skipped_and_hide_what_they_replaced() {
        let before = snap(&[
            ("d", dir(1)),
            ("d/was_file", file(2)),
            ("d/p", entry(FileKind::Fifo, 3)),
        ]);
        let after = snap(&[
            ("d", dir(1)),
            ("d/was_file", entry(FileKind::Fifo, 4)),
            ("d/p", entry(FileKind::Fifo, 3)),
            ("d/sock", entry(FileKind::Socket, 5)),
            ("d/dev", entry(FileKind::CharDevice, 6)),
        ]);
        let c = changes(&before, &after);
        assert_eq!(listed(&c), ["W d", "D d/.wh.was_file"]);
        assert_eq!(c.special_skipped(), ["d/dev", "d/sock", "d/was_file"]);
    }

    /// The layer's entries, one line each: `name type mode uid:gid mtime link content`
    /// (owners through a mapping that drops thousands: host 1005 is image 5).
    fn write(
        root: &Path,
        after: &Snapshot,
        changes: &Changes,
        epoch: u64,
    ) -> Result<Vec<String>, SnapshotError> {
        let shift = |u: u32, g: u32| (u % 1000, g % 1000);
        let options = DiffLayerOptions {
            layer: LayerOptions {
                mtime: epoch,
                ..LayerOptions::default()
            },
            to_image_ids: &shift,
        };
        let (layer, bytes) = write_diff_layer(root, after, changes, &options, Vec::new())?;
        assert_eq!(layer.digest, oci::sha256_digest(&bytes));
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
        let mut out = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(format!(
                "{} {} {:o} {}:{} {} {link} {:?}",
                e.path().unwrap().display(),
                h.entry_type().as_byte() as char,
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap(),
                String::from_utf8_lossy(&data),
            ));
        }
        Ok(out)
    }

    #[test]
    fn the_layer_carries_modes_owners_links_and_clamped_times() {
        if !crate::prereq::require(
            nix::unistd::geteuid().is_root(),
            "root (the test changes owners; tests/run.sh runs as root)",
        ) {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let before = snapshot(root, &|_| false).unwrap();
        std::fs::create_dir(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/su"), b"suid").unwrap();
        std::fs::hard_link(root.join("bin/su"), root.join("bin/su2")).unwrap();
        std::os::unix::fs::symlink("su", root.join("bin/link")).unwrap();
        std::fs::create_dir(root.join("skipped")).unwrap();
        std::fs::write(root.join("skipped/x"), b"x").unwrap();
        for p in ["bin", "bin/su", "bin/link"] {
            std::os::unix::fs::lchown(root.join(p), Some(1005), Some(1007)).unwrap();
        }
        // After the owner: chown clears setuid.
        std::fs::set_permissions(root.join("bin/su"), std::fs::Permissions::from_mode(0o4711))
            .unwrap();
        let old = nix::sys::time::TimeSpec::new(100, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &root.join("bin/link"),
            &old,
            &old,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        let after = snapshot(root, &|p| p == "skipped").unwrap();
        assert!(after.get("skipped").is_none() && after.get("skipped/x").is_none());
        assert_eq!(after.get("bin/su").unwrap().mode, 0o4711);
        let c = changes(&before, &after);
        let listed = write(root, &after, &c, 1_000).unwrap();
        assert_eq!(
            listed,
            [
                "bin/ 5 755 5:7 1000  \"\"",
                "bin/link 2 777 5:7 100 su \"\"",
                "bin/su 0 4711 5:7 1000  \"suid\"",
                "bin/su2 1 4711 5:7 1000 bin/su \"\"",
            ]
        );
        // Whiteouts: empty files, mode 0, 0:0, the epoch.
        std::fs::remove_file(root.join("bin/su2")).unwrap();
        let later = snapshot(root, &|p| p == "skipped").unwrap();
        let listed = write(root, &later, &changes(&after, &later), 1_000).unwrap();
        assert!(
            listed.contains(&"bin/.wh.su2 0 0 0:0 1000  \"\"".to_string()),
            "{listed:#?}"
        );
    }

    #[test]
    fn a_file_that_changes_while_written_fails_the_layer() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("f"), b"four").unwrap();
        let after = snapshot(root, &|_| false).unwrap();
        let c = changes(&Snapshot::default(), &after);
        std::fs::write(root.join("f"), b"longer now").unwrap();
        let e = write(root, &after, &c, 0).unwrap_err();
        assert!(
            matches!(&e, SnapshotError::ChangedWhileWriting { path, .. } if path.ends_with("f")),
            "{e}"
        );
        std::fs::write(root.join("f"), b"fo").unwrap();
        assert!(write(root, &after, &c, 0).is_err());
        // Another inode of the same size (the old one kept alive, so its number is not reused).
        std::fs::write(root.join("f"), b"four").unwrap();
        std::fs::hard_link(root.join("f"), root.join("kept")).unwrap();
        std::fs::write(root.join("g"), b"four").unwrap();
        std::fs::rename(root.join("g"), root.join("f")).unwrap();
        let e = write(root, &after, &c, 0).unwrap_err();
        assert!(e.to_string().contains("replaced"), "{e}");
    }

    #[test]
    fn names_a_layer_cannot_carry_are_errors_naming_them() {
        use std::os::unix::ffi::OsStrExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::write(
            root.join("d").join(std::ffi::OsStr::from_bytes(b"bad\xff")),
            b"",
        )
        .unwrap();
        let e = snapshot(root, &|_| false).unwrap_err();
        assert!(
            matches!(&e, SnapshotError::NotUtf8 { path } if path.starts_with(root)),
            "{e}"
        );
        assert!(e.to_string().contains("rename"), "{e}");
        assert!(snapshot(root, &|p| p == "d").unwrap().is_empty());

        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join(".wh.x"), b"").unwrap();
        let after = snapshot(root, &|_| false).unwrap();
        let e = write(root, &after, &changes(&Snapshot::default(), &after), 0).unwrap_err();
        assert!(matches!(e, SnapshotError::ReservedName { .. }), "{e}");
        let e = write(
            root,
            &Snapshot::default(),
            &changes(&Snapshot::default(), &after),
            0,
        )
        .unwrap_err();
        assert!(matches!(e, SnapshotError::NotInSnapshot { .. }), "{e}");
    }
}
