//! An image's root filesystem on disk, for the daemonless chroot fallback: the layers of one
//! platform manifest applied in order into a directory, with OCI whiteouts, hard links,
//! symlinks, modes and (as root) owners.
//!
//! Layers are untrusted input. Every path is resolved inside the destination one component at
//! a time: a symlink met on the way is followed *within* the destination (an absolute target
//! starts again at the destination, `..` stops there), as container runtimes resolve them, and
//! the leaf is never followed: a file replaces whatever was at its path, a symlink is stored as
//! written. The kernel enforces it: the destination is opened once as a directory descriptor,
//! each step of a resolution opens one name below the directory before it with `openat2`
//! (`RESOLVE_BENEATH`, no symlinks, no magic links, no mount crossing), and every change is an
//! `*at` call relative to the directory so found (see the `at` module). Directory modes and
//! times, applied after the last layer, re-open each directory by its real path with
//! `RESOLVE_IN_ROOT` and no symlinks, so a directory whose parent a later entry replaced with a
//! symlink is skipped, never looked for where the symlink points. Entries that name `..`, names
//! longer than Linux allows, NUL bytes and hard links to missing or directory targets are errors
//! naming the layer and the entry. Device nodes, FIFOs and other special files are not created
//! (as root they would open the host's devices to the build; in a user namespace mknod fails;
//! rootless buildah and podman skip them too; the runner provides `/dev`), and are counted in
//! [`Stats`] so the caller can say so.
//!
//! Each blob is decompressed by its media type (gzip, zstd or none) and its digest and size are
//! checked while it streams; a mismatch fails the unpack. [`unpack_cached`] keeps finished roots
//! under a cache directory keyed by manifest digest (see [`default_cache_dir`]): a root is
//! unpacked into a temporary sibling, the `complete` marker is written last, and the directory
//! is renamed into place, so a root in the cache is always whole; a concurrent unpack of the
//! same manifest loses the rename and uses the winner's.

use crate::image::model::{LayerCompression, MediaKind};
use crate::image::{BlobFault, ImageSource, SourceError};
use crate::oci::Layer;
use crate::walk::tar::{self, Entry, TarEntryKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

use at::Kind;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fchmod, futimens, mkdirat, utimensat, Mode, UtimensatFlags};
use nix::unistd::{fchownat, linkat, symlinkat};
use std::ffi::OsStr;
use std::os::fd::{AsFd as _, OwnedFd};

pub(crate) mod at;

/// Longest name of one path component Linux accepts (`NAME_MAX`).
const MAX_NAME: usize = 255;
/// Longest path Linux accepts (`PATH_MAX`), counted inside the root.
const MAX_PATH: usize = 4096;
/// Symlinks followed while resolving one path, as the kernel's `MAXSYMLINKS`.
const MAX_SYMLINK_HOPS: usize = 40;
/// Special entries named in [`Stats::special_examples`].
const MAX_EXAMPLES: usize = 5;

/// The cache entry's subdirectory holding the root filesystem.
pub const ROOT_DIR: &str = "root";
/// The cache entry's marker, written after the root is complete.
pub const MARKER: &str = "complete";

/// What an unpack did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub layers: usize,
    /// Tar entries read across all layers.
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Whiteout and opaque-directory markers applied.
    pub whiteouts: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Device nodes, FIFOs and other special files not created.
    pub special_skipped: u64,
    /// The first few of those, as `path (kind)`.
    pub special_examples: Vec<String>,
    /// Whether the layers' owners were applied (only when unpacking as root, and only while the
    /// kernel accepts them: a user namespace maps few ids).
    pub owners_kept: bool,
}

/// Why a root filesystem could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("layer {digest} of {image}: {source}")]
    Source {
        image: String,
        digest: String,
        #[source]
        source: SourceError,
    },
    #[error("layer {digest} of {image}: {message}")]
    Layer {
        image: String,
        digest: String,
        message: String,
    },
    #[error("layer {digest} of {image}: entry {path:?}: {message}")]
    Entry {
        image: String,
        digest: String,
        path: String,
        message: String,
    },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>, path: &Path) -> impl FnOnce(io::Error) -> RootfsError + '_ {
    let what = what.into();
    move |source| RootfsError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// What to say of a blob that could not be read to its end.
fn blob_failure(e: &io::Error) -> String {
    match BlobFault::of(e) {
        Some(BlobFault::Digest { actual, .. }) => format!(
            "the blob's content has digest sha256:{actual}; it is damaged or was replaced: \
             fetch the image again"
        ),
        Some(fault) => format!("{fault}; it is damaged or truncated"),
        None => format!("the blob cannot be read: {e}; it is damaged or was replaced"),
    }
}

/// Where the layers' owners go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owners {
    /// Not root: files belong to whoever unpacks.
    Ignore,
    /// Root: apply, until the kernel refuses an id.
    Apply,
}

/// Directory metadata applied after every layer, deepest first, so that a read-only directory
/// can still be filled and times are not disturbed by later entries.
#[derive(Debug, Clone, Copy)]
struct DirMeta {
    mode: u32,
    mtime: u64,
}

struct Unpacker<'a> {
    /// The root's path, for messages only.
    root: PathBuf,
    /// The root, opened once: every operation of the unpack is relative to it.
    root_fd: OwnedFd,
    image: String,
    owners: Owners,
    stats: &'a mut Stats,
    dirs: BTreeMap<PathBuf, DirMeta>,
    /// The directory the last path resolved to, by its components as the layer wrote them:
    /// entries come grouped by directory, and one resolution serves the whole group. Only the
    /// removal of a directory or a symlink can change where a path that resolved leads (a new
    /// entry takes a free name; nothing is ever renamed; a removed file was not on the way), so
    /// such a removal, and every new layer, forgets it.
    last: Option<(Vec<String>, Dir)>,
    /// The owners to give an entry owned by `(uid, gid)` in the archive (identity for layers).
    owner_map: Option<&'a dyn Fn(u32, u32) -> (u32, u32)>,
    /// Whether `.wh.` names are OCI whiteouts (layers) or ordinary names (a plain archive).
    whiteouts: bool,
}

/// One layer's state: the digest for messages and the real paths this layer put in place
/// (whiteouts and opaque markers apply only to lower layers).
struct LayerState {
    digest: String,
    unpacked: HashSet<PathBuf>,
}

/// Maps an image's `(uid, gid)` to the ids stored on disk.
pub type IdMap<'a> = dyn Fn(u32, u32) -> (u32, u32) + Sync + 'a;

/// Unpack `layers` (oldest first, as [`super::base::resolve`] gives them) of `source`
/// into `dest`, which should be an empty directory (it is created when missing).
pub fn unpack(
    source: &dyn ImageSource,
    layers: &[Layer],
    dest: &Path,
) -> Result<Stats, RootfsError> {
    unpack_mapped(source, layers, dest, None)
}

/// [`unpack`] onto `dest` (which may already hold a tree the layers apply to: whiteouts
/// remove from it), storing owners through `id_map` (as root).
pub fn unpack_mapped(
    source: &dyn ImageSource,
    layers: &[Layer],
    dest: &Path,
    id_map: Option<&IdMap>,
) -> Result<Stats, RootfsError> {
    let mut stats = Stats::default();
    let owner_map = id_map.map(|m| m as &dyn Fn(u32, u32) -> (u32, u32));
    let mut u = Unpacker::new(dest, source.describe(), &mut stats, owner_map, true)?;
    for layer in layers {
        u.last = None;
        u.layer(source, layer)?;
        u.stats.layers += 1;
    }
    u.finish_dirs()?;
    Ok(stats)
}

/// Unpack one tar stream (already decompressed; ADD's local archive) into the directory `dest`
/// (created when missing), as safely as a layer: every entry stays inside `dest`, symlinks on
/// the way are followed inside it, device nodes are not created. `.wh.` names are ordinary
/// names here (moby's `archive.Untar`, which BuildKit's ADD uses, writes them as files). Owners
/// are `owners(uid, gid)` of the archive's (as root only). `name` names the archive in errors.
pub fn unpack_tar(
    archive: &mut dyn Read,
    dest: &Path,
    name: &str,
    owners: &dyn Fn(u32, u32) -> (u32, u32),
) -> Result<Stats, RootfsError> {
    let mut stats = Stats::default();
    let mut u = Unpacker::new(
        dest,
        "the ADD source".to_string(),
        &mut stats,
        Some(owners),
        false,
    )?;
    let mut state = LayerState {
        digest: name.to_string(),
        unpacked: HashSet::new(),
    };
    let mut failure: Option<RootfsError> = None;
    let result = {
        let mut visit = |entry: &Entry, content: &mut dyn Read| -> io::Result<()> {
            u.entry(&mut state, entry, content).map_err(|e| {
                failure = Some(e);
                io::Error::other("entry failed")
            })
        };
        read_all(BufReader::with_capacity(256 * 1024, archive), &mut visit)
    };
    if let Some(e) = failure {
        return Err(e);
    }
    let n = result.map_err(|e| u.layer_err(name, format!("not a readable tar archive: {e}")))?;
    u.stats.entries += n;
    u.finish_dirs()?;
    Ok(stats)
}

impl<'a> Unpacker<'a> {
    /// An unpacker into `dest` (created when missing, then opened once); owners are applied
    /// as root only.
    fn new(
        dest: &Path,
        image: String,
        stats: &'a mut Stats,
        owner_map: Option<&'a dyn Fn(u32, u32) -> (u32, u32)>,
        whiteouts: bool,
    ) -> Result<Unpacker<'a>, RootfsError> {
        fs::create_dir_all(dest).map_err(io_err("creating the root directory", dest))?;
        let root = fs::canonicalize(dest).map_err(io_err("resolving the root directory", dest))?;
        let root_fd = at::open_root(&root).map_err(io_err("opening the root directory", &root))?;
        stats.owners_kept = nix::unistd::geteuid().is_root();
        let owners = if stats.owners_kept {
            Owners::Apply
        } else {
            Owners::Ignore
        };
        Ok(Unpacker {
            root,
            root_fd,
            image,
            owners,
            stats,
            dirs: BTreeMap::new(),
            last: None,
            owner_map,
            whiteouts,
        })
    }
}

impl Unpacker<'_> {
    fn layer_err(&self, digest: &str, message: impl Into<String>) -> RootfsError {
        RootfsError::Layer {
            image: self.image.clone(),
            digest: digest.to_string(),
            message: message.into(),
        }
    }

    fn layer(&mut self, source: &dyn ImageSource, layer: &Layer) -> Result<(), RootfsError> {
        let digest = layer.digest.as_str();
        let MediaKind::Layer(compression) = MediaKind::of(&layer.media_type) else {
            return Err(self.layer_err(
                digest,
                format!(
                    "media type {:?} is not a tar layer rcross can unpack (tar, tar+gzip, \
                     tar+zstd); use a build image with ordinary layers",
                    layer.media_type
                ),
            ));
        };
        // Only sha256 digests are accepted, by the rule every blob reader follows: one of
        // another algorithm is refused, never read unverified.
        let source_error = |e| RootfsError::Source {
            image: self.image.clone(),
            digest: digest.to_string(),
            source: e,
        };
        crate::image::require_sha256(&source.describe(), digest).map_err(source_error)?;
        // Verified: a blob longer or shorter than its descriptor says, or whose content does
        // not hash to its digest, fails the read (the source's one verifying reader hashes it;
        // nothing here hashes it again).
        let mut blob = source
            .open_blob_sized(digest, layer.size)
            .map_err(source_error)?;
        let mut state = LayerState {
            digest: digest.to_string(),
            unpacked: HashSet::new(),
        };
        let mut failure: Option<RootfsError> = None;
        let (result, drained) = {
            let mut br = BufReader::with_capacity(256 * 1024, &mut blob);
            let mut visit = |entry: &Entry, content: &mut dyn Read| -> io::Result<()> {
                match self.entry(&mut state, entry, content) {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        failure = Some(e);
                        Err(io::Error::other("entry failed"))
                    }
                }
            };
            let r = match compression {
                LayerCompression::None => read_all(&mut br, &mut visit),
                LayerCompression::Gzip => {
                    read_all(flate2::bufread::MultiGzDecoder::new(&mut br), &mut visit)
                }
                LayerCompression::Zstd => match zstd::stream::read::Decoder::with_buffer(&mut br) {
                    Ok(d) => read_all(d, &mut visit),
                    Err(source) => Err(tar::TarError::Io { offset: 0, source }),
                },
            };
            // The rest of the blob (compression trailers, padding) counts for the digest, and
            // a damaged blob explains whatever the tar reader made of it.
            (r, io::copy(&mut br, &mut io::sink()))
        };
        if let Some(e) = failure {
            return Err(e);
        }
        if let Err(e) = drained {
            return Err(self.layer_err(digest, blob_failure(&e)));
        }
        match result {
            Err(e) => Err(self.layer_err(
                digest,
                format!("not a readable tar layer: {e}; the blob is damaged or not a layer"),
            )),
            Ok(n) => {
                self.stats.entries += n;
                Ok(())
            }
        }
    }

    fn entry(
        &mut self,
        state: &mut LayerState,
        entry: &Entry,
        content: &mut dyn Read,
    ) -> Result<(), RootfsError> {
        let (image, digest) = (self.image.clone(), state.digest.clone());
        let fail = |message: String| RootfsError::Entry {
            image: image.clone(),
            digest: digest.clone(),
            path: entry.path.clone(),
            message,
        };
        let parts = split(&entry.path).map_err(&fail)?;
        let Some((&name, parents)) = parts.split_last() else {
            // The root itself: its metadata stays the destination's.
            return match entry.kind {
                TarEntryKind::Dir => Ok(()),
                _ => Err(fail(
                    "names the root directory, which only a directory entry may".into(),
                )),
            };
        };
        if self.whiteouts && name == ".wh..wh..opq" {
            return self.opaque_marker(state, parents, &fail);
        }
        if let Some(hidden) = name.strip_prefix(".wh.").filter(|_| self.whiteouts) {
            return self.whiteout(state, parents, name, hidden, &fail);
        }
        let place = self.place(state, parents, name, &fail)?;
        match entry.kind {
            TarEntryKind::Dir => self.unpack_dir(&place, entry)?,
            TarEntryKind::File => self.unpack_file(&place, entry, content, &fail)?,
            TarEntryKind::Symlink => self.unpack_symlink(&place, entry, &fail)?,
            TarEntryKind::Hardlink => {
                if !self.unpack_hardlink(state, &place, entry, &fail)? {
                    // A link to itself: nothing changes.
                    return Ok(());
                }
            }
            TarEntryKind::Other => return self.skip_special(&place, entry),
        }
        // Its directories count as this layer's too, so an opaque marker keeps them.
        for a in place.rel.ancestors().filter(|a| !a.as_os_str().is_empty()) {
            if !state.unpacked.insert(a.to_path_buf()) {
                break;
            }
        }
        Ok(())
    }

    /// `.wh..wh..opq`: what lower layers put in its directory is hidden.
    fn opaque_marker(
        &mut self,
        state: &mut LayerState,
        parents: &[&str],
        fail: &dyn Fn(String) -> RootfsError,
    ) -> Result<(), RootfsError> {
        let dir = self.resolve(state, parents, true).map_err(fail)?;
        self.stats.whiteouts += 1;
        match dir {
            Some(dir) => self.clear_lower(state, &dir),
            None => Ok(()),
        }
    }

    /// `.wh.NAME`: NAME from a lower layer is removed.
    fn whiteout(
        &mut self,
        state: &mut LayerState,
        parents: &[&str],
        name: &str,
        hidden: &str,
        fail: &dyn Fn(String) -> RootfsError,
    ) -> Result<(), RootfsError> {
        if hidden.starts_with(".wh.") {
            // Other AUFS metadata (.wh..wh.plnk, …): nothing to apply.
            return Ok(());
        }
        if hidden.is_empty() || hidden == "." || hidden == ".." {
            return Err(fail(format!(
                "whiteout {name:?} names no file; the layer is malformed"
            )));
        }
        self.stats.whiteouts += 1;
        let Some(dir) = self.resolve(state, parents, false).map_err(fail)? else {
            return Ok(());
        };
        if state.unpacked.contains(&dir.rel.join(hidden)) {
            return Ok(());
        }
        self.remove(&dir, OsStr::new(hidden))
    }

    /// Where an entry named `name` below `parents` goes, its directory created when missing.
    fn place<'n>(
        &mut self,
        state: &mut LayerState,
        parents: &[&str],
        name: &'n str,
        fail: &dyn Fn(String) -> RootfsError,
    ) -> Result<Place<'n>, RootfsError> {
        let dir = self
            .resolve(state, parents, true)
            .map_err(fail)?
            .ok_or_else(|| fail("its directory could not be created".into()))?;
        let leaf = OsStr::new(name);
        let rel = dir.rel.join(name);
        let path = self.root.join(&rel);
        let existing =
            at::kind_at(dir.fd.as_fd(), leaf).map_err(|e| io_err("reading", &path)(e.into()))?;
        Ok(Place {
            dir,
            leaf,
            rel,
            path,
            existing,
        })
    }

    /// Removes what a lower layer had at the entry's place, if anything.
    fn clear_place(&mut self, place: &Place) -> Result<(), RootfsError> {
        if place.existing.is_some() {
            self.remove(&place.dir, place.leaf)?;
        }
        Ok(())
    }

    fn unpack_dir(&mut self, place: &Place, entry: &Entry) -> Result<(), RootfsError> {
        let (dir, leaf, path) = (&place.dir, place.leaf, &place.path);
        if place.existing != Some(Kind::Dir) {
            self.clear_place(place)?;
            mkdirat(dir.fd.as_fd(), leaf, Mode::from_bits_truncate(0o755))
                .map_err(|e| io_err("creating the directory", path)(e.into()))?;
        }
        self.chown(dir, leaf, entry);
        self.dirs.insert(
            place.rel.clone(),
            DirMeta {
                mode: entry.mode,
                mtime: entry.mtime,
            },
        );
        self.stats.dirs += 1;
        Ok(())
    }

    fn unpack_file(
        &mut self,
        place: &Place,
        entry: &Entry,
        content: &mut dyn Read,
        fail: &dyn Fn(String) -> RootfsError,
    ) -> Result<(), RootfsError> {
        let (dir, leaf, path) = (&place.dir, place.leaf, &place.path);
        self.clear_place(place)?;
        let mut file = at::create_file(dir.fd.as_fd(), leaf)
            .map_err(|e| io_err("creating", path)(e.into()))?;
        let n = io::copy(content, &mut file).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                fail("the layer ends inside this file; the blob is truncated".into())
            } else {
                io_err("writing", path)(e)
            }
        })?;
        self.chown(dir, leaf, entry);
        // After the owner: chown clears setuid and setgid bits.
        fchmod(&file, Mode::from_bits_truncate(entry.mode))
            .map_err(|e| io_err("setting the mode of", path)(e.into()))?;
        let t = timespec(entry.mtime);
        // Times are a convenience for make-style builds; a filesystem that refuses them is no
        // reason to fail.
        let _ = futimens(&file, &t, &t);
        self.stats.files += 1;
        self.stats.bytes += n;
        Ok(())
    }

    fn unpack_symlink(
        &mut self,
        place: &Place,
        entry: &Entry,
        fail: &dyn Fn(String) -> RootfsError,
    ) -> Result<(), RootfsError> {
        let (dir, leaf) = (&place.dir, place.leaf);
        let target = entry.link.as_deref().unwrap_or_default();
        if target.is_empty() || target.contains('\0') || target.len() > MAX_PATH {
            return Err(fail(format!(
                "symlink target {target:?} is empty, too long or holds a NUL byte"
            )));
        }
        self.clear_place(place)?;
        symlinkat(target, dir.fd.as_fd(), leaf)
            .map_err(|e| io_err("creating the symlink", &place.path)(e.into()))?;
        self.chown(dir, leaf, entry);
        let t = timespec(entry.mtime);
        let _ = utimensat(
            dir.fd.as_fd(),
            leaf,
            &t,
            &t,
            UtimensatFlags::NoFollowSymlink,
        );
        self.stats.symlinks += 1;
        Ok(())
    }

    /// A hard link to a file placed earlier; `false` when the entry links to itself, which
    /// changes nothing.
    fn unpack_hardlink(
        &mut self,
        state: &mut LayerState,
        place: &Place,
        entry: &Entry,
        fail: &dyn Fn(String) -> RootfsError,
    ) -> Result<bool, RootfsError> {
        let link = entry.link.as_deref().unwrap_or_default();
        let target_parts = split(link).map_err(|m| fail(format!("hard link target: {m}")))?;
        let Some((&target_name, target_parents)) = target_parts.split_last() else {
            return Err(fail("hard link to the root directory".into()));
        };
        let missing = || {
            fail(format!(
                "hard link target {link:?} does not exist; it must come earlier in this layer \
                 or in a lower one"
            ))
        };
        // Resolved like any path of the layer: inside the root, symlinks on the way followed
        // there, the last component itself never followed.
        let target_dir = self
            .resolve(state, target_parents, false)
            .map_err(|m| fail(format!("hard link target {link:?}: {m}")))?
            .ok_or_else(missing)?;
        let target_leaf = OsStr::new(target_name);
        match at::kind_at(target_dir.fd.as_fd(), target_leaf) {
            Ok(Some(Kind::Dir)) => {
                return Err(fail(format!(
                    "hard link target {link:?} is a directory; directories cannot be hard \
                     linked"
                )))
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Err(missing()),
        }
        if target_dir.rel.join(target_name) == place.rel {
            return Ok(false);
        }
        self.clear_place(place)?;
        // Without AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
        linkat(
            target_dir.fd.as_fd(),
            target_leaf,
            place.dir.fd.as_fd(),
            place.leaf,
            AtFlags::empty(),
        )
        .map_err(|e| io_err("creating the hard link", &place.path)(e.into()))?;
        self.stats.hardlinks += 1;
        Ok(true)
    }

    /// Device nodes are never created: as the host's root, a node in a build root would hand
    /// the build the host's disks and memory; in a user namespace mknod fails anyway. Rootless
    /// buildah and podman skip them the same way, and the runner gives every job its own /dev.
    /// FIFOs and sockets go with them: a build root does not need them from an image. The entry
    /// still replaces what a lower layer had at its path, as it would in a container runtime.
    fn skip_special(&mut self, place: &Place, entry: &Entry) -> Result<(), RootfsError> {
        self.clear_place(place)?;
        self.stats.special_skipped += 1;
        if self.stats.special_examples.len() < MAX_EXAMPLES {
            self.stats.special_examples.push(format!(
                "/{} ({})",
                entry.path,
                special_kind(entry.typeflag)
            ));
        }
        Ok(())
    }

    /// The real directory that holds the components `parents`, open, with its path relative to
    /// the root: each symlink on the way is followed inside the root, never out of it (an
    /// absolute target starts again at the root, `..` stops there), as container runtimes
    /// resolve them. Every step opens one name below the directory before it with `openat2`
    /// (`RESOLVE_BENEATH`, no symlinks followed by the kernel), and `..` re-opens the real path
    /// from the root with `RESOLVE_IN_ROOT`, so no step can leave the root. Missing directories
    /// are created when `create`, else the answer is `None`.
    fn resolve(
        &mut self,
        state: &mut LayerState,
        parents: &[&str],
        create: bool,
    ) -> Result<Option<Dir>, String> {
        if let Some((key, dir)) = &self.last {
            if key.iter().map(String::as_str).eq(parents.iter().copied()) {
                let fd = dir
                    .fd
                    .try_clone()
                    .map_err(|e| format!("duplicating a directory descriptor: {e}"))?;
                return Ok(Some(Dir {
                    fd,
                    rel: dir.rel.clone(),
                }));
            }
        }
        let found = self.walk(state, parents, create)?;
        if let Some(dir) = &found {
            if let Ok(fd) = dir.fd.try_clone() {
                let key = parents.iter().map(|p| p.to_string()).collect();
                self.last = Some((
                    key,
                    Dir {
                        fd,
                        rel: dir.rel.clone(),
                    },
                ));
            }
        }
        Ok(found)
    }

    /// [`Self::resolve`] without the memo.
    fn walk(
        &self,
        state: &mut LayerState,
        parents: &[&str],
        create: bool,
    ) -> Result<Option<Dir>, String> {
        let parts: Vec<&OsStr> = parents.iter().map(OsStr::new).collect();
        // Directories an archive implies (ADD) belong to the stage's root user, as moby's
        // archive.Untar makes them; a layer's are the unpacker's.
        let implied_owner = self
            .owner_map
            .filter(|_| self.owners == Owners::Apply)
            .map(|map| map(0, 0));
        let mut created = |rel: &Path, parent: std::os::fd::BorrowedFd<'_>| {
            state.unpacked.insert(rel.to_path_buf());
            if let (Some((uid, gid)), Some(name)) = (implied_owner, rel.file_name()) {
                let _ = fchownat(
                    parent,
                    name,
                    Some(nix::unistd::Uid::from_raw(uid)),
                    Some(nix::unistd::Gid::from_raw(gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                );
            }
            Ok(())
        };
        let found = at::resolve_dir(
            self.root_fd.as_fd(),
            &parts,
            create.then_some(&mut created as &mut at::OnCreate),
        )?;
        Ok(found.map(|(fd, rel)| Dir { fd, rel }))
    }

    /// Removes `name` in `dir` (a directory with everything below it), never following a
    /// symlink, and forgets the deferred metadata of the directories that went with it.
    fn remove(&mut self, dir: &Dir, name: &OsStr) -> Result<(), RootfsError> {
        let rel = dir.rel.join(name);
        let removed = at::remove_at(dir.fd.as_fd(), name)
            .map_err(io_err("removing", &self.root.join(&rel)))?;
        if matches!(removed, Some(Kind::Dir | Kind::Symlink)) {
            // It may have been on the way of the memoised resolution.
            self.last = None;
        }
        if removed == Some(Kind::Dir) {
            let gone: Vec<PathBuf> = self
                .dirs
                .range(rel.clone()..)
                .take_while(|(p, _)| p.starts_with(&rel))
                .map(|(p, _)| p.clone())
                .collect();
            for p in gone {
                self.dirs.remove(&p);
            }
        }
        Ok(())
    }

    /// An opaque directory: remove everything below `dir` that this layer did not put there.
    fn clear_lower(&mut self, state: &LayerState, dir: &Dir) -> Result<(), RootfsError> {
        let path = self.root.join(&dir.rel);
        for name in at::names(dir.fd.as_fd()).map_err(io_err("reading the directory", &path))? {
            let rel = dir.rel.join(&name);
            if !state.unpacked.contains(&rel) {
                self.remove(dir, &name)?;
                continue;
            }
            if at::kind_at(dir.fd.as_fd(), &name) == Ok(Some(Kind::Dir)) {
                let fd = at::open_name(dir.fd.as_fd(), &name, OFlag::O_PATH | OFlag::O_DIRECTORY)
                    .map_err(|e| {
                    io_err("opening the directory", &self.root.join(&rel))(e.into())
                })?;
                self.clear_lower(state, &Dir { fd, rel })?;
            }
        }
        Ok(())
    }

    fn chown(&mut self, dir: &Dir, name: &OsStr, entry: &Entry) {
        if self.owners != Owners::Apply {
            return;
        }
        let (Ok(uid), Ok(gid)) = (u32::try_from(entry.uid), u32::try_from(entry.gid)) else {
            return;
        };
        let (uid, gid) = self.owner_map.map_or((uid, gid), |map| map(uid, gid));
        let owner = Some(nix::unistd::Uid::from_raw(uid));
        let group = Some(nix::unistd::Gid::from_raw(gid));
        if let Err(e) = fchownat(
            dir.fd.as_fd(),
            name,
            owner,
            group,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            if matches!(e, Errno::EINVAL | Errno::EPERM) {
                // An id this user namespace does not map: keep what we have from here on.
                self.owners = Owners::Ignore;
                self.stats.owners_kept = false;
            }
        }
    }

    /// Directory modes and times, applied once every layer is in place. Each directory is
    /// re-opened by its real path from the root with `RESOLVE_IN_ROOT` and no symlinks: one
    /// that a later entry removed, or whose parent it replaced with a symlink, is skipped (the
    /// kernel answers ELOOP or ENOENT) instead of being looked for wherever the symlink points.
    fn finish_dirs(&mut self) -> Result<(), RootfsError> {
        // Deepest first, so that a read-only parent does not stop its children's changes.
        let mut dirs: Vec<(&PathBuf, &DirMeta)> = self.dirs.iter().collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (rel, meta) in dirs {
            let path = self.root.join(rel);
            let fd = match at::open_real(
                self.root_fd.as_fd(),
                rel,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            ) {
                Ok(fd) => fd,
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP | Errno::EXDEV) => continue,
                Err(e) => return Err(io_err("opening the directory", &path)(e.into())),
            };
            fchmod(&fd, Mode::from_bits_truncate(meta.mode))
                .map_err(|e| io_err("setting the mode of", &path)(e.into()))?;
            let t = timespec(meta.mtime);
            let _ = futimens(&fd, &t, &t);
        }
        Ok(())
    }
}

/// Where an entry goes: its directory (open), its name there, its path relative to the root,
/// the full path (for messages only: every operation is relative to `dir.fd`), and what kind of
/// file a lower layer left there, if any.
struct Place<'n> {
    dir: Dir,
    leaf: &'n OsStr,
    rel: PathBuf,
    path: PathBuf,
    existing: Option<Kind>,
}

/// A directory of the root being unpacked: open, and its real path relative to the root (no
/// symlinks in it), for messages, whiteouts and the deferred metadata.
struct Dir {
    fd: OwnedFd,
    rel: PathBuf,
}

fn timespec(mtime: u64) -> nix::sys::time::TimeSpec {
    nix::sys::time::TimeSpec::new(i64::try_from(mtime).unwrap_or(i64::MAX), 0)
}

fn read_all(
    reader: impl Read,
    visit: &mut dyn FnMut(&Entry, &mut dyn Read) -> io::Result<()>,
) -> Result<u64, tar::TarError> {
    let mut reader = reader;
    let n = tar::read_tar(&mut reader, visit)?;
    // The end of the compressed stream, so the blob's digest covers every byte.
    io::copy(&mut reader, &mut io::sink())
        .map_err(|source| tar::TarError::Io { offset: 0, source })?;
    Ok(n)
}

/// The components of an archive path, refusing what cannot be placed inside a root.
fn split(path: &str) -> Result<Vec<&str>, String> {
    if path.contains('\0') {
        return Err("the name holds a NUL byte; the layer is malformed".into());
    }
    if path.len() > MAX_PATH {
        return Err(format!(
            "the name is {} bytes; Linux allows {MAX_PATH} per path",
            path.len()
        ));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(
                    "the name climbs out with '..'; the layer is malformed or hostile".into(),
                )
            }
            p if p.len() > MAX_NAME => {
                return Err(format!(
                    "a component is {} bytes; Linux allows {MAX_NAME} per name",
                    p.len()
                ))
            }
            p => parts.push(p),
        }
    }
    Ok(parts)
}

fn special_kind(typeflag: u8) -> &'static str {
    match typeflag {
        b'3' => "character device",
        b'4' => "block device",
        b'6' => "FIFO",
        b'S' => "sparse file",
        _ => "special file",
    }
}

fn make_dir(path: &Path) -> Result<(), RootfsError> {
    fs::create_dir(path).map_err(io_err("creating the directory", path))
}

/// Remove whatever is at `path` (a directory with its contents), never following a symlink.
fn remove_any(path: &Path) -> Result<(), RootfsError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => remove_tree(path),
        Ok(_) => fs::remove_file(path).map_err(io_err("removing", path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("reading", path)(e)),
    }
}

/// Remove a directory tree that may hold read-only directories (an image's, or one a build
/// left), never following symlinks. A missing tree is fine.
/// The name prefix of a working directory this process owns: `KIND-PID-`, so a later run can
/// tell the leftovers of a killed rcross (see [`sweep_stale`]).
pub fn owned_prefix(kind: &str) -> String {
    format!("{kind}-{}-", std::process::id())
}

/// Removes the `KIND-PID-*` entries of `dir` whose process is gone (an rcross killed before it
/// could clean up); returns how many. Entries of live processes and other names are left.
pub fn sweep_stale(dir: &Path, kind: &str) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(kind))
            .and_then(|n| n.strip_prefix('-'))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() && remove_tree(&entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

pub fn remove_tree(path: &Path) -> Result<(), RootfsError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("reading", path)(e)),
        Ok(m) if !m.is_dir() => return fs::remove_file(path).map_err(io_err("removing", path)),
        Ok(m) => {
            if m.permissions().mode() & 0o700 != 0o700 {
                fs::set_permissions(path, fs::Permissions::from_mode(0o700))
                    .map_err(io_err("making writable for removal", path))?;
            }
        }
    }
    for entry in fs::read_dir(path).map_err(io_err("reading the directory", path))? {
        let entry = entry.map_err(io_err("reading the directory", path))?;
        let child = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir {
            remove_tree(&child)?;
        } else {
            match fs::remove_file(&child) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_err("removing", &child)(e))
                }
                _ => {}
            }
        }
    }
    fs::remove_dir(path).map_err(io_err("removing the directory", path))
}

fn set_mtime(path: &Path, mtime: u64) {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let t = TimeSpec::new(i64::try_from(mtime).unwrap_or(i64::MAX), 0);
    // Times are a convenience for make-style builds; a filesystem that refuses them is no
    // reason to fail.
    let _ = utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    );
}

/// Where unpacked roots are kept: `$XDG_CACHE_HOME/rcross/rootfs`, else
/// `$HOME/.cache/rcross/rootfs`; `None` when neither variable is set (or they are relative).
pub fn default_cache_dir(xdg_cache_home: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    let root = crate::userdir::cache_root(
        xdg_cache_home.map(std::ffi::OsStr::new),
        home.map(std::ffi::OsStr::new),
    )?;
    Some(root.join("rootfs"))
}

/// A root filesystem in the cache.
#[derive(Debug, Clone)]
pub struct CachedRoot {
    /// The root directory (`<cache>/<manifest hex>/root`). Never run a job in it: copy it.
    pub root: PathBuf,
    pub stats: Stats,
    /// Whether it was already there.
    pub reused: bool,
}

/// What the marker records.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    manifest: String,
    layers: Vec<String>,
    stats: Stats,
}

/// The root filesystem of the manifest `manifest` (made of `layers` of `source`) under `cache`
/// (see [`default_cache_dir`]): reused when a complete one is there, else unpacked.
pub fn unpack_cached(
    source: &dyn ImageSource,
    manifest: &str,
    layers: &[Layer],
    cache: &Path,
) -> Result<CachedRoot, RootfsError> {
    let hex = manifest
        .split_once(':')
        .map(|(_, h)| h)
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| RootfsError::Layer {
            image: source.describe(),
            digest: manifest.to_string(),
            message: "the manifest digest is not ALGORITHM:HEX".into(),
        })?
        .to_ascii_lowercase();
    let entry = cache.join(&hex);
    let layer_digests: Vec<String> = layers.iter().map(|l| l.digest.clone()).collect();
    if let Some(found) = complete(&entry, manifest, &layer_digests) {
        return Ok(found);
    }
    fs::create_dir_all(cache).map_err(io_err("creating the cache directory", cache))?;
    sweep_stale(cache, ".tmp");
    let temp = tempfile::Builder::new()
        .prefix(&format!("{}{hex}-", owned_prefix(".tmp")))
        .tempdir_in(cache)
        .map_err(io_err("creating a temporary directory in", cache))?;
    let stats = match unpack(source, layers, &temp.path().join(ROOT_DIR)) {
        Ok(s) => s,
        Err(e) => {
            let _ = remove_tree(temp.path());
            return Err(e);
        }
    };
    let marker = Marker {
        manifest: manifest.to_string(),
        layers: layer_digests.clone(),
        stats: stats.clone(),
    };
    let marker_path = temp.path().join(MARKER);
    let text = serde_json::to_vec_pretty(&marker).map_err(|e| RootfsError::Io {
        what: "encoding the marker".into(),
        path: marker_path.clone(),
        source: io::Error::other(e),
    })?;
    fs::write(&marker_path, text).map_err(io_err("writing", &marker_path))?;
    let temp = temp.keep();
    // An entry without a marker is a leftover of an older, interrupted rcross.
    if entry.exists() && complete(&entry, manifest, &layer_digests).is_none() {
        remove_tree(&entry)?;
    }
    match fs::rename(&temp, &entry) {
        Ok(()) => Ok(CachedRoot {
            root: entry.join(ROOT_DIR),
            stats,
            reused: false,
        }),
        Err(e) => {
            let _ = remove_tree(&temp);
            // Another rcross finished the same root first.
            complete(&entry, manifest, &layer_digests)
                .ok_or_else(|| io_err("moving the unpacked root into the cache at", &entry)(e))
        }
    }
}

fn complete(entry: &Path, manifest: &str, layers: &[String]) -> Option<CachedRoot> {
    let text = fs::read(entry.join(MARKER)).ok()?;
    let marker: Marker = serde_json::from_slice(&text).ok()?;
    let root = entry.join(ROOT_DIR);
    let ok = marker.manifest == manifest
        && marker.layers == layers
        && fs::symlink_metadata(&root).is_ok_and(|m| m.is_dir());
    ok.then_some(CachedRoot {
        root,
        stats: marker.stats,
        reused: true,
    })
}

/// What [`copy_tree`] copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub files: u64,
    pub bytes: u64,
    /// Special files (devices, FIFOs, sockets) not copied.
    pub skipped: u64,
}

/// Who owns what [`copy_tree`] makes.
#[derive(Clone, Copy)]
pub enum CopyOwners<'a> {
    /// Whoever copies (the copier's ids; no `chown`).
    Copier,
    /// The source's owners (only meaningful as root).
    Keep,
    /// The owners this gives for the source's `(uid, gid)` (only meaningful as root): the ids
    /// of a sandbox's user namespace shifted into its host range, and back.
    Map(&'a dyn Fn(u32, u32) -> (u32, u32)),
}

impl CopyOwners<'_> {
    /// The owners to give a copy of a file owned by `(uid, gid)`, when any.
    fn of(&self, uid: u32, gid: u32) -> Option<(u32, u32)> {
        match self {
            CopyOwners::Copier => None,
            CopyOwners::Keep => Some((uid, gid)),
            CopyOwners::Map(f) => Some(f(uid, gid)),
        }
    }

    /// `lchown` `path` to the owners of a copy of `meta`'s file. Best effort, as with
    /// [`CopyOwners::Keep`] before: a copy that cannot be given away stays the copier's.
    fn apply(&self, path: &Path, meta: &fs::Metadata) {
        if let Some((uid, gid)) = self.of(meta.uid(), meta.gid()) {
            let _ = std::os::unix::fs::lchown(path, Some(uid), Some(gid));
        }
    }
}

/// Options of [`copy_tree`].
pub struct CopyOptions<'a> {
    /// Who owns the copies.
    pub owners: CopyOwners<'a>,
    /// Paths relative to the source to leave out (with everything below them).
    pub exclude: &'a dyn Fn(&Path) -> bool,
}

/// Copy the tree `from` into the directory `to` (created when missing): files with their
/// modes and times, symlinks as they are (never followed), hard links within the tree as hard
/// links. `from` itself must be a real directory, not a symlink to one.
pub fn copy_tree(from: &Path, to: &Path, options: &CopyOptions) -> Result<CopyStats, RootfsError> {
    let meta = fs::symlink_metadata(from).map_err(io_err("reading", from))?;
    if !meta.is_dir() {
        return Err(RootfsError::Io {
            what: "copying".into(),
            path: from.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a directory (a symlink is not followed)",
            ),
        });
    }
    let mut stats = CopyStats::default();
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut dirs: Vec<(PathBuf, fs::Metadata)> = Vec::new();
    match fs::symlink_metadata(to) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(RootfsError::Io {
                what: "copying into".into(),
                path: to.to_path_buf(),
                source: io::Error::new(io::ErrorKind::AlreadyExists, "not a directory"),
            })
        }
        Err(_) => fs::create_dir_all(to).map_err(io_err("creating the directory", to))?,
    }
    copy_dir(
        from,
        to,
        Path::new(""),
        options,
        &mut stats,
        &mut links,
        &mut dirs,
    )?;
    dirs.push((to.to_path_buf(), meta));
    for (path, meta) in dirs.iter().rev() {
        options.owners.apply(path, meta);
        fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(io_err("setting the mode of", path))?;
        set_mtime(path, u64::try_from(meta.mtime()).unwrap_or(0));
    }
    Ok(stats)
}

fn copy_dir(
    from: &Path,
    to: &Path,
    rel: &Path,
    options: &CopyOptions,
    stats: &mut CopyStats,
    links: &mut HashMap<(u64, u64), PathBuf>,
    dirs: &mut Vec<(PathBuf, fs::Metadata)>,
) -> Result<(), RootfsError> {
    let src_dir = from.join(rel);
    let mut names: Vec<_> = fs::read_dir(&src_dir)
        .map_err(io_err("reading the directory", &src_dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_err("reading the directory", &src_dir))?;
    names.sort();
    for name in names {
        let child_rel = rel.join(&name);
        if (options.exclude)(&child_rel) {
            continue;
        }
        let src = from.join(&child_rel);
        let dst = to.join(&child_rel);
        let meta = fs::symlink_metadata(&src).map_err(io_err("reading", &src))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            match fs::symlink_metadata(&dst) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    remove_any(&dst)?;
                    make_dir(&dst)?;
                }
                Err(_) => make_dir(&dst)?,
            }
            copy_dir(from, to, &child_rel, options, stats, links, dirs)?;
            dirs.push((dst, meta));
            continue;
        }
        if fs::symlink_metadata(&dst).is_ok() {
            remove_any(&dst)?;
        }
        if ft.is_symlink() {
            let target = fs::read_link(&src).map_err(io_err("reading the symlink", &src))?;
            std::os::unix::fs::symlink(&target, &dst)
                .map_err(io_err("creating the symlink", &dst))?;
            options.owners.apply(&dst, &meta);
            set_mtime(&dst, u64::try_from(meta.mtime()).unwrap_or(0));
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                    fs::hard_link(first, &dst).map_err(io_err("creating the hard link", &dst))?;
                    continue;
                }
                links.insert((meta.dev(), meta.ino()), dst.clone());
            }
            copy_file(&src, &dst, &meta)?;
            options.owners.apply(&dst, &meta);
            // After chown, which clears setuid bits.
            fs::set_permissions(&dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(io_err("setting the mode of", &dst))?;
            set_mtime(&dst, u64::try_from(meta.mtime()).unwrap_or(0));
            stats.files += 1;
            stats.bytes += meta.len();
        } else {
            stats.skipped += 1;
        }
    }
    Ok(())
}

/// Copy one regular file's content without following a symlink at either end (copy_file_range
/// under `io::copy`, so filesystems that can share blocks do).
fn copy_file(src: &Path, dst: &Path, meta: &fs::Metadata) -> Result<(), RootfsError> {
    let mut input = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(src)
        .map_err(io_err("opening", src))?;
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(dst)
        .map_err(io_err("creating", dst))?;
    let n = io::copy(&mut input, &mut output).map_err(io_err("copying to", dst))?;
    if n != meta.len() {
        return Err(RootfsError::Io {
            what: "copying".into(),
            path: src.to_path_buf(),
            source: io::Error::other(format!(
                "copied {n} bytes of {}; the file changed while copying",
                meta.len()
            )),
        });
    }
    Ok(())
}

/// `path` under `root` with every component a real directory (no symlinks anywhere), or why
/// not. For reading back what a build left: a build may have replaced a directory with a
/// symlink to somewhere on the host.
pub fn real_dir_inside(root: &Path, path: &str) -> Result<PathBuf, String> {
    let mut cur = root.to_path_buf();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => continue,
            Component::Normal(n) => cur.push(n),
            _ => return Err(format!("{path} is not a plain path")),
        }
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "{} is a symlink; it is not followed out of the root",
                    cur.display()
                ))
            }
            Ok(_) => return Err(format!("{} is not a directory", cur.display())),
            Err(e) => return Err(format!("{}: {e}", cur.display())),
        }
    }
    Ok(cur)
}

#[cfg(test)]
mod sweep_tests {
    use super::*;

    #[test]
    fn stale_working_directories_of_dead_processes_are_swept() {
        let t = tempfile::tempdir().unwrap();
        // No process has a pid this large (the kernel's limit is 2^22).
        let dead = t.path().join("job-999999999-linux-arm64-abc");
        let ours = t
            .path()
            .join(format!("{}linux-arm64-def", owned_prefix("job")));
        let other = t.path().join("job-notapid-x");
        let unrelated = t.path().join("keep-999999999-x");
        for d in [&dead, &ours, &other, &unrelated] {
            fs::create_dir_all(d.join("root/etc")).unwrap();
        }
        assert_eq!(sweep_stale(t.path(), "job"), 1);
        assert!(!dead.exists());
        assert!(ours.exists() && other.exists() && unrelated.exists());
        assert_eq!(sweep_stale(&t.path().join("missing"), "job"), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// Blobs in memory, served by digest.
    #[derive(Default)]
    struct Mem {
        blobs: HashMap<String, Vec<u8>>,
    }

    impl ImageSource for Mem {
        fn describe(&self) -> String {
            "mem".into()
        }
        fn root(&self) -> Result<(String, Vec<u8>), SourceError> {
            Err(SourceError::NotFound {
                what: "root".into(),
            })
        }
        fn blob_bytes(&self, digest: &str, _max: u64) -> Result<Vec<u8>, SourceError> {
            self.blobs
                .get(digest)
                .cloned()
                .ok_or(SourceError::NotFound {
                    what: digest.into(),
                })
        }
        fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + Send>, SourceError> {
            Ok(Box::new(io::Cursor::new(self.blob_bytes(digest, 0)?)))
        }
    }

    const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

    impl Mem {
        /// Store a tar as a layer blob, compressed per media type.
        fn layer(&mut self, tar: Vec<u8>, media_type: &str) -> Layer {
            let blob = match media_type {
                GZIP => {
                    let mut e =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    e.write_all(&tar).unwrap();
                    e.finish().unwrap()
                }
                ZSTD => zstd::encode_all(&tar[..], 1).unwrap(),
                _ => tar,
            };
            let digest = crate::oci::sha256_digest(&blob);
            let layer = Layer {
                media_type: media_type.into(),
                digest: digest.clone(),
                size: blob.len() as u64,
                diff_id: String::new(),
                uncompressed_size: 0,
            };
            self.blobs.insert(digest, blob);
            layer
        }
    }

    /// A tar built entry by entry with raw headers, so hostile names are possible.
    #[derive(Default)]
    struct Tar {
        data: Vec<u8>,
    }

    impl Tar {
        fn raw(mut self, name: &str, typeflag: u8, link: &str, mode: u32, body: &[u8]) -> Self {
            if name.len() > 100 {
                let rec = format!("path={name}\n");
                let mut len = rec.len() + 1;
                len += len.to_string().len();
                let pax = format!("{len} {rec}");
                self = self.raw("PaxHeader", b'x', "", 0o644, pax.as_bytes());
            }
            let mut h = ::tar::Header::new_gnu();
            {
                let old = h.as_old_mut();
                let n = name.len().min(100);
                old.name[..n].copy_from_slice(&name.as_bytes()[..n]);
                old.linkname[..link.len()].copy_from_slice(link.as_bytes());
                old.linkflag[0] = typeflag;
            }
            h.set_mode(mode);
            h.set_size(body.len() as u64);
            h.set_mtime(1_000_000);
            h.set_cksum();
            self.data.extend_from_slice(h.as_bytes());
            self.data.extend_from_slice(body);
            let pad = (512 - body.len() % 512) % 512;
            self.data.extend(std::iter::repeat_n(0u8, pad));
            self
        }
        fn file(self, name: &str, body: &str) -> Self {
            self.raw(name, b'0', "", 0o644, body.as_bytes())
        }
        fn dir(self, name: &str, mode: u32) -> Self {
            self.raw(name, b'5', "", mode, b"")
        }
        fn symlink(self, name: &str, target: &str) -> Self {
            self.raw(name, b'2', target, 0o777, b"")
        }
        fn hardlink(self, name: &str, target: &str) -> Self {
            self.raw(name, b'1', target, 0o644, b"")
        }
        fn done(mut self) -> Vec<u8> {
            self.data.extend_from_slice(&[0u8; 1024]);
            self.data
        }
    }

    fn read(root: &Path, rel: &str) -> String {
        fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    fn exists(root: &Path, rel: &str) -> bool {
        fs::symlink_metadata(root.join(rel)).is_ok()
    }

    fn unpack_one(tar: Vec<u8>) -> (tempfile::TempDir, Result<Stats, RootfsError>) {
        let mut mem = Mem::default();
        let l = mem.layer(tar, TAR);
        let d = tempfile::tempdir().unwrap();
        let r = unpack(&mem, &[l], &d.path().join("root"));
        (d, r)
    }

    #[test]
    fn files_dirs_links_modes_and_every_compression() {
        for media in [TAR, GZIP, ZSTD] {
            let mut mem = Mem::default();
            let tar = Tar::default()
                .dir("./usr/", 0o755)
                .dir("usr/bin", 0o555)
                .raw("usr/bin/tool", b'0', "", 0o4755, b"#!/bin/sh\n")
                .file("/etc/hostname", "box\n")
                .symlink("bin", "usr/bin")
                .symlink("etc/abs", "/etc/hostname")
                .hardlink("usr/bin/tool2", "./usr/bin/tool")
                .raw("dev/null", b'3', "", 0o666, b"")
                .raw("run/fifo", b'6', "", 0o600, b"")
                .done();
            let l = mem.layer(tar, media);
            let d = tempfile::tempdir().unwrap();
            let root = d.path().join("root");
            let stats = unpack(&mem, &[l], &root).unwrap();
            assert_eq!(read(&root, "etc/hostname"), "box\n", "{media}");
            assert_eq!(read(&root, "bin/tool"), "#!/bin/sh\n");
            assert_eq!(
                fs::read_link(root.join("etc/abs")).unwrap(),
                Path::new("/etc/hostname"),
                "stored as written"
            );
            let tool = fs::metadata(root.join("usr/bin/tool")).unwrap();
            assert_eq!(tool.mode() & 0o7777, 0o4755);
            assert_eq!(tool.nlink(), 2, "hard link kept");
            assert_eq!(tool.mtime(), 1_000_000);
            let bin = fs::metadata(root.join("usr/bin")).unwrap();
            assert_eq!(bin.mode() & 0o7777, 0o555, "directory mode applied last");
            assert!(!exists(&root, "dev/null") && !exists(&root, "run/fifo"));
            assert_eq!(stats.special_skipped, 2);
            assert_eq!(
                stats.special_examples,
                ["/dev/null (character device)", "/run/fifo (FIFO)"]
            );
            assert_eq!((stats.files, stats.symlinks, stats.hardlinks), (2, 2, 1));
            remove_tree(&root).unwrap();
            assert!(!root.exists());
        }
    }

    #[test]
    fn whiteouts_and_opaque_directories_hide_lower_layers_only() {
        let mut mem = Mem::default();
        let lower = mem.layer(
            Tar::default()
                .file("a/x", "x")
                .file("a/y", "y")
                .file("b/z", "z")
                .file("b/sub/deep", "deep")
                .dir("c", 0o755)
                .file("c/keep", "k")
                .done(),
            GZIP,
        );
        let upper = mem.layer(
            Tar::default()
                .file("a/.wh.x", "")
                .file("b/new", "n")
                .file("b/sub/fresh", "f")
                .file("b/.wh..wh..opq", "")
                .file("d/made", "m")
                .file("d/.wh.made", "")
                .file("a/.wh.missing", "")
                .file("nodir/.wh.gone", "")
                .file(".wh.c", "")
                .done(),
            TAR,
        );
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let stats = unpack(&mem, &[lower, upper], &root).unwrap();
        assert!(!exists(&root, "a/x"));
        assert_eq!(read(&root, "a/y"), "y");
        assert!(!exists(&root, "b/z"), "opaque hides the lower file");
        assert!(!exists(&root, "b/sub/deep"), "and lower files in kept dirs");
        assert_eq!(read(&root, "b/new"), "n", "entries of the same layer stay");
        assert_eq!(read(&root, "b/sub/fresh"), "f");
        assert_eq!(
            read(&root, "d/made"),
            "m",
            "a whiteout hides lower layers only"
        );
        assert!(!exists(&root, "c"), "a whiteout removes a whole directory");
        assert!(!exists(&root, "a/.wh.x") && !exists(&root, "nodir"));
        assert_eq!(stats.whiteouts, 6);
    }

    #[test]
    fn dot_dot_and_bad_names_are_errors_naming_the_entry() {
        for (tar, want) in [
            (Tar::default().file("../evil", "x").done(), "'..'"),
            (Tar::default().file("a/../../evil", "x").done(), "'..'"),
            (
                Tar::default()
                    .file(&format!("a/{}", "n".repeat(300)), "x")
                    .done(),
                "255 per name",
            ),
            (Tar::default().hardlink("h", "../outside").done(), "'..'"),
            (
                Tar::default().hardlink("h", "/etc/passwd").done(),
                "does not exist",
            ),
            (
                Tar::default().dir("d", 0o755).hardlink("h", "d").done(),
                "is a directory",
            ),
            (Tar::default().file(".", "x").done(), "root directory"),
            (Tar::default().file("a/.wh..", "").done(), "names no file"),
            (
                Tar::default().file("f", "x").file("f/g", "y").done(),
                "not a directory",
            ),
        ] {
            let (_d, r) = unpack_one(tar);
            let e = r
                .err()
                .map(|e| e.to_string())
                .unwrap_or_else(|| panic!("{want}: no error"));
            assert!(e.contains(want), "{e}");
            assert!(e.contains("layer sha256:") && e.contains("entry "), "{e}");
        }
    }

    /// Symlinks planted by a layer never lead a later write out of the root.
    #[test]
    fn symlink_tricks_stay_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, "untouched").unwrap();
        let out = outside.path().display().to_string();
        let mut mem = Mem::default();
        let first = mem.layer(
            Tar::default()
                .symlink("up", "../../../../../../..")
                .symlink("abs", &out)
                .symlink("file", &victim.display().to_string())
                .symlink("loop", "loop")
                .done(),
            TAR,
        );
        let second = mem.layer(
            Tar::default()
                .file("up/escaped", "1")
                .file("abs/victim", "2")
                .file("file", "3")
                .hardlink("abs/link", "file")
                .done(),
            TAR,
        );
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        unpack(&mem, &[first, second], &root).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1);
        assert_eq!(read(&root, "escaped"), "1", "`..` stops at the root");
        let inside = format!("{}/victim", out.trim_start_matches('/'));
        assert_eq!(
            read(&root, &inside),
            "2",
            "absolute targets start at the root"
        );
        assert_eq!(read(&root, "file"), "3", "a file replaces the symlink");
        assert!(fs::symlink_metadata(root.join("file")).unwrap().is_file());
        let (_d, r) = unpack_one(
            Tar::default()
                .symlink("loop", "loop")
                .file("loop/x", "x")
                .done(),
        );
        assert!(r.unwrap_err().to_string().contains("symlinks on the way"));
    }

    #[test]
    fn damaged_blobs_and_unknown_media_types_are_refused() {
        let tar = Tar::default().file("a", "hello").done();
        let mut mem = Mem::default();
        let l = mem.layer(tar.clone(), GZIP);
        let blob = mem.blobs.get_mut(&l.digest).unwrap();
        let last = blob.len() - 9;
        blob[last] ^= 1; // the gzip CRC
        let d = tempfile::tempdir().unwrap();
        let e = unpack(&mem, std::slice::from_ref(&l), &d.path().join("r"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("has digest sha256:"), "{e}");
        let mut mem = Mem::default();
        let good = mem.layer(tar.clone(), TAR);
        let wrong_size = Layer {
            size: good.size + 1,
            ..good.clone()
        };
        let e = unpack(&mem, &[wrong_size], &d.path().join("s"))
            .unwrap_err()
            .to_string();
        // The sized blob reader stops it first, naming both sizes.
        assert!(e.contains("of the 2049 bytes its descriptor says"), "{e}");
        let odd = Layer {
            media_type: "application/vnd.oci.image.layer.v1.tar+encrypted".into(),
            ..good
        };
        let e = unpack(&mem, &[odd], &d.path().join("t"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a tar layer"), "{e}");
        let mut mem = Mem::default();
        let truncated = mem.layer(tar[..600].to_vec(), TAR);
        let e = unpack(&mem, &[truncated], &d.path().join("u"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ends inside the entry"), "{e}");
    }

    #[test]
    fn the_cache_reuses_complete_roots_and_replaces_partial_ones() {
        let mut mem = Mem::default();
        let l = mem.layer(Tar::default().file("etc/os", "test").done(), ZSTD);
        let cache = tempfile::tempdir().unwrap();
        let manifest = format!("sha256:{}", "ab".repeat(32));
        // A leftover without a marker.
        fs::create_dir_all(cache.path().join("ab".repeat(32)).join("root/junk")).unwrap();
        let first = unpack_cached(&mem, &manifest, std::slice::from_ref(&l), cache.path()).unwrap();
        assert!(!first.reused);
        assert_eq!(read(&first.root, "etc/os"), "test");
        assert!(!exists(&first.root, "junk"));
        assert!(first.root.parent().unwrap().join(MARKER).is_file());
        let second =
            unpack_cached(&mem, &manifest, std::slice::from_ref(&l), cache.path()).unwrap();
        assert!(second.reused);
        assert_eq!(second.root, first.root);
        assert_eq!(second.stats, first.stats);
        // No temporary directories left behind.
        assert_eq!(fs::read_dir(cache.path()).unwrap().count(), 1);
        let e = unpack_cached(&mem, "nonsense", &[l], cache.path()).unwrap_err();
        assert!(e.to_string().contains("ALGORITHM:HEX"), "{e}");
    }

    #[test]
    fn cache_dir_follows_xdg_then_home() {
        assert_eq!(
            default_cache_dir(Some("/x"), Some("/h")),
            Some(PathBuf::from("/x/rcross/rootfs"))
        );
        assert_eq!(
            default_cache_dir(Some("rel"), Some("/h")),
            Some(PathBuf::from("/h/.cache/rcross/rootfs"))
        );
        assert_eq!(default_cache_dir(None, None), None);
    }

    #[test]
    fn copy_tree_keeps_links_modes_and_leaves_out_excluded_paths() {
        let src = tempfile::tempdir().unwrap();
        let s = src.path();
        fs::create_dir_all(s.join("keep/sub")).unwrap();
        fs::create_dir_all(s.join(".git")).unwrap();
        fs::write(s.join(".git/config"), "x").unwrap();
        fs::write(s.join("keep/a"), "a").unwrap();
        fs::set_permissions(s.join("keep/a"), fs::Permissions::from_mode(0o751)).unwrap();
        fs::hard_link(s.join("keep/a"), s.join("keep/sub/b")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", s.join("keep/pw")).unwrap();
        fs::set_permissions(s.join("keep/sub"), fs::Permissions::from_mode(0o555)).unwrap();
        let dst = tempfile::tempdir().unwrap();
        let to = dst.path().join("copy");
        let exclude = |p: &Path| p.starts_with(".git");
        let stats = copy_tree(
            s,
            &to,
            &CopyOptions {
                owners: CopyOwners::Copier,
                exclude: &exclude,
            },
        )
        .unwrap();
        assert_eq!(stats.files, 1, "the hard link is linked, not copied");
        assert!(!to.join(".git").exists());
        let a = fs::metadata(to.join("keep/a")).unwrap();
        assert_eq!((a.mode() & 0o7777, a.nlink()), (0o751, 2));
        assert_eq!(
            fs::read_link(to.join("keep/pw")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(
            fs::metadata(to.join("keep/sub")).unwrap().mode() & 0o7777,
            0o555
        );
        let e = copy_tree(
            &to.join("keep/pw"),
            &dst.path().join("x"),
            &CopyOptions {
                owners: CopyOwners::Copier,
                exclude: &|_| false,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("not followed"), "{e}");
        remove_tree(&to).unwrap();
        fs::set_permissions(s.join("keep/sub"), fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// As root (tests run as root): owners mapped on the way, for files, links and
    /// directories alike.
    #[test]
    fn copy_tree_maps_owners() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test changes owners: run it as root"
        );
        let src = tempfile::tempdir().unwrap();
        let s = src.path();
        fs::create_dir_all(s.join("d")).unwrap();
        fs::write(s.join("d/f"), "f").unwrap();
        std::os::unix::fs::symlink("f", s.join("d/l")).unwrap();
        std::os::unix::fs::lchown(s.join("d/f"), Some(42), Some(65534)).unwrap();
        std::os::unix::fs::lchown(s.join("d/l"), Some(7), Some(8)).unwrap();
        let dst = tempfile::tempdir().unwrap();
        let to = dst.path().join("copy");
        let shift = |u: u32, g: u32| (u + 100_000, g + 200_000);
        copy_tree(
            s,
            &to,
            &CopyOptions {
                owners: CopyOwners::Map(&shift),
                exclude: &|_| false,
            },
        )
        .unwrap();
        let owner = |p: &str| {
            let m = fs::symlink_metadata(to.join(p)).unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(owner("d/f"), (100_042, 265_534));
        assert_eq!(owner("d/l"), (100_007, 200_008));
        assert_eq!(owner("d"), (100_000, 200_000));
        assert_eq!(owner(""), (100_000, 200_000));
    }

    #[test]
    fn real_dir_inside_refuses_symlinks() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("rcross/out")).unwrap();
        assert_eq!(
            real_dir_inside(d.path(), "/rcross/out").unwrap(),
            d.path().join("rcross/out")
        );
        fs::remove_dir(d.path().join("rcross/out")).unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("rcross/out")).unwrap();
        let e = real_dir_inside(d.path(), "/rcross/out").unwrap_err();
        assert!(e.contains("is a symlink"), "{e}");
    }
}
