//! Where a job's extra mounts go in its root, and the mount points rcross makes for them.
//!
//! A target is resolved the way a container runtime resolves it (runc's `securejoin`, the
//! kernel's `RESOLVE_IN_ROOT`): component by component, a symlink is followed as if the root
//! were `/` (an absolute link restarts at the root, `..` stops at it), so a target that is a
//! symlink to `/etc` in the image lands on the root's own `/etc`, never the host's. The result
//! is a path of real directories only, which the job then mounts on by that path (nothing runs
//! in the root between the resolution and the mount, so it cannot change in between).
//!
//! Earlier mounts are taken into account: a target inside an earlier mount is resolved in what
//! that mount shows (a host directory, or an empty tmpfs). Missing components are made:
//! - in the root, by rcross before the run, owned by the job's root, and removed after it when
//!   they are still what rcross made (an empty directory, an empty file), so a secret at
//!   `/run/secrets/x` leaves neither `/run/secrets/x` nor a `/run/secrets` it created behind;
//! - inside an earlier tmpfs, by the job after mounting it (it is empty and gone afterwards);
//! - never inside a bound host directory: rcross does not write into a host directory, so the
//!   mount point must exist there (otherwise a clear error).

use super::{ChrootMount, MountSource};
use std::collections::VecDeque;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Symlinks followed while resolving one target (the kernel's MAXSYMLINKS).
const MAX_LINKS: usize = 40;

/// One mount's resolved target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ResolvedMount {
    /// Relative to the root, real directories all the way (the last may be a file).
    pub target: PathBuf,
    /// Mount points the job makes inside an earlier tmpfs before this mount, parents first;
    /// `true` for a file.
    pub make_in_job: Vec<(PathBuf, bool)>,
}

/// A mount point rcross made in the root, to be removed after the run.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MadeMountPoint {
    path: PathBuf,
    dev: u64,
    ino: u64,
    file: bool,
}

/// The mount points rcross made for one run.
#[derive(Debug, Default)]
pub(super) struct MountPoints {
    made: Vec<MadeMountPoint>,
}

/// What a path of the job's tree is when a mount is applied.
enum Entry {
    Dir,
    NonDir,
    Link(PathBuf),
    /// Missing from the root (rcross may make it).
    MissingInRoot,
    /// Inside an earlier tmpfs: the job makes it.
    InTmpfs,
    /// Missing from a bound host directory.
    MissingInHost(PathBuf),
}

/// Normal components of `path` (`.` and empty ones dropped; `..` kept).
fn components(path: &str) -> VecDeque<String> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect()
}

fn join(base: &Path, parts: &[String]) -> PathBuf {
    let mut p = base.to_path_buf();
    for c in parts {
        p.push(c);
    }
    p
}

/// Whether the source is a directory (a tmpfs is one).
fn source_is_dir(source: &MountSource) -> Result<bool, String> {
    match source {
        MountSource::Tmpfs { .. } => Ok(true),
        MountSource::Host(path) => std::fs::metadata(path)
            .map(|m| m.is_dir())
            .map_err(|e| format!("the mount source {}: {e}", path.display())),
    }
}

/// What the job's tree holds when a mount is applied.
struct Tree<'a> {
    root: &'a Path,
    /// The mounts applied before: resolved target components and source.
    earlier: Vec<(Vec<String>, &'a MountSource)>,
    /// Mount points rcross will make in the root for them (relative, `true` for a file).
    made_in_root: &'a [(PathBuf, bool)],
}

/// What `path` (components from the root) is, given the mounts applied before.
fn lookup(tree: &Tree, path: &[String]) -> Entry {
    let under = tree
        .earlier
        .iter()
        .rev()
        .find(|(target, _)| path.starts_with(target));
    let host = match under {
        None => {
            let relative = join(Path::new(""), path);
            if let Some((_, file)) = tree.made_in_root.iter().find(|(p, _)| *p == relative) {
                return if *file { Entry::NonDir } else { Entry::Dir };
            }
            join(tree.root, path)
        }
        Some((target, MountSource::Tmpfs { .. })) => {
            return if target.len() == path.len() {
                Entry::Dir
            } else {
                Entry::InTmpfs
            };
        }
        Some((target, MountSource::Host(source))) => {
            if target.len() == path.len() {
                // The mount's own root: what the source is (a bind follows a source link).
                return match std::fs::metadata(source) {
                    Ok(m) if m.is_dir() => Entry::Dir,
                    _ => Entry::NonDir,
                };
            }
            join(source, &path[target.len()..])
        }
    };
    match std::fs::symlink_metadata(&host) {
        Ok(m) if m.file_type().is_symlink() => match std::fs::read_link(&host) {
            Ok(link) => Entry::Link(link),
            Err(_) => Entry::NonDir,
        },
        Ok(m) if m.is_dir() => Entry::Dir,
        Ok(_) => Entry::NonDir,
        Err(_) if under.is_some() => Entry::MissingInHost(host),
        Err(_) => Entry::MissingInRoot,
    }
}

/// Where each mount goes, in order; `made_in_root` receives the mount points rcross must make
/// in the root (parents first, `true` for a file).
pub(super) fn resolve(
    root: &Path,
    mounts: &[ChrootMount],
    made_in_root: &mut Vec<(PathBuf, bool)>,
) -> Result<Vec<ResolvedMount>, String> {
    let mut earlier: Vec<(Vec<String>, &MountSource)> = Vec::new();
    let mut resolved = Vec::new();
    let mut in_root: Vec<(PathBuf, bool)> = Vec::new();
    // Made for an earlier mount already (two secrets in /run/secrets share it).
    let mut in_job: Vec<(PathBuf, bool)> = Vec::new();
    for m in mounts {
        if !m.target.starts_with('/') {
            return Err(format!(
                "the mount target {:?} is not an absolute path",
                m.target
            ));
        }
        let is_dir = source_is_dir(&m.source)?;
        let tree = Tree {
            root,
            earlier: earlier.clone(),
            made_in_root: &in_root,
        };
        let Resolution { done, missing } = resolve_one(&tree, &m.target, is_dir)?;
        let mut make_in_job = Vec::new();
        for (i, entry) in missing {
            let path = join(Path::new(""), &done[..=i]);
            let point = (path, i + 1 == done.len() && !is_dir);
            if in_job.contains(&point) {
                continue;
            }
            match &entry {
                Entry::InTmpfs => {
                    in_job.push(point.clone());
                    make_in_job.push(point);
                }
                Entry::MissingInHost(host) => {
                    return Err(format!(
                        "the mount point {} does not exist in the directory mounted above it \
                         ({}); rcross makes mount points in the root and in tmpfs mounts, \
                         never in a host directory",
                        m.target,
                        host.display()
                    ))
                }
                _ => in_root.push(point),
            }
        }
        resolved.push(ResolvedMount {
            target: join(Path::new(""), &done),
            make_in_job,
        });
        earlier.push((done, &m.source));
    }
    made_in_root.extend(in_root);
    Ok(resolved)
}

/// A target resolved in the job's tree.
struct Resolution {
    /// Its real components.
    done: Vec<String>,
    /// Those missing from the tree: index in `done`, and what is there instead.
    missing: Vec<(usize, Entry)>,
}

/// The real components of `target`, and the missing ones.
fn resolve_one(tree: &Tree, target: &str, is_dir: bool) -> Result<Resolution, String> {
    let mut pending = components(target);
    let mut done: Vec<String> = Vec::new();
    let mut missing: Vec<(usize, Entry)> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            done.pop();
            missing.retain(|(i, _)| *i < done.len());
            continue;
        }
        done.push(c);
        match lookup(tree, &done) {
            Entry::Dir => {}
            Entry::NonDir if pending.is_empty() && !is_dir => {}
            Entry::NonDir => {
                return Err(format!(
                    "the mount target {target}: /{} is not a directory",
                    done.join("/")
                ))
            }
            Entry::Link(link) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(format!(
                        "the mount target {target}: more than {MAX_LINKS} symlinks"
                    ));
                }
                done.pop();
                let text = link.to_string_lossy().into_owned();
                if text.starts_with('/') {
                    done.clear();
                }
                for c in components(&text).into_iter().rev() {
                    pending.push_front(c);
                }
            }
            entry => missing.push((done.len() - 1, entry)),
        }
    }
    if done.is_empty() {
        return Err(format!("the mount target {target} is the root itself"));
    }
    let last_missing = missing.last().is_some_and(|(i, _)| *i + 1 == done.len());
    if !last_missing {
        let exists_as_dir = matches!(lookup(tree, &done), Entry::Dir);
        if exists_as_dir != is_dir {
            return Err(format!(
                "the mount target {target} (/{}) is {} and the source {}",
                done.join("/"),
                if exists_as_dir {
                    "a directory"
                } else {
                    "not a directory"
                },
                if is_dir {
                    "is a directory"
                } else {
                    "is a file"
                }
            ));
        }
    }
    Ok(Resolution { done, missing })
}

impl MountPoints {
    /// Make `points` (relative to `root`, parents first) in the root, owned by `owner` when
    /// given; `proc` and `dev` (where the job mounts its own) too when the root lacks them.
    pub(super) fn make(
        root: &Path,
        points: &[(PathBuf, bool)],
        owner: Option<(u32, u32)>,
    ) -> Result<MountPoints, String> {
        let mut made = MountPoints::default();
        let implicit = [
            (PathBuf::from("proc"), 0o555),
            (PathBuf::from("dev"), 0o755),
        ];
        for (path, mode) in &implicit {
            match std::fs::symlink_metadata(root.join(path)) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    made.remove();
                    return Err(format!(
                        "/{} in the root {} is not a directory; the job mounts its own there",
                        path.display(),
                        root.display()
                    ));
                }
                Err(_) => {
                    if let Err(e) = made.make_one(root, path, false, *mode, owner) {
                        made.remove();
                        return Err(e);
                    }
                }
            }
        }
        for (path, file) in points {
            let mode = if *file { 0o644 } else { 0o755 };
            if let Err(e) = made.make_one(root, path, *file, mode, owner) {
                made.remove();
                return Err(e);
            }
        }
        Ok(made)
    }

    fn make_one(
        &mut self,
        root: &Path,
        path: &Path,
        file: bool,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), String> {
        let full = root.join(path);
        let failed = |what: &str, e: std::io::Error| {
            format!("{what} the mount point {}: {e}", full.display())
        };
        if file {
            // create_new: O_EXCL, never through a link put there since the resolution.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&full)
                .map_err(|e| failed("creating", e))?;
        } else {
            std::fs::create_dir(&full).map_err(|e| failed("creating", e))?;
        }
        let meta = std::fs::symlink_metadata(&full).map_err(|e| failed("reading", e))?;
        self.made.push(MadeMountPoint {
            path: full.clone(),
            dev: meta.dev(),
            ino: meta.ino(),
            file,
        });
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode))
            .map_err(|e| failed("setting the mode of", e))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(&full, Some(uid), Some(gid))
                .map_err(|e| failed("changing the owner of", e))?;
        }
        Ok(())
    }

    /// Remove what [`MountPoints::make`] made, children first, where it is still what was made
    /// (the same empty directory or empty file); the paths left in place are returned.
    pub(super) fn remove(&mut self) -> Vec<PathBuf> {
        let mut left = Vec::new();
        while let Some(m) = self.made.pop() {
            let same = std::fs::symlink_metadata(&m.path).ok().filter(|meta| {
                meta.dev() == m.dev
                    && meta.ino() == m.ino
                    && if m.file {
                        meta.is_file() && meta.len() == 0
                    } else {
                        meta.is_dir()
                    }
            });
            let removed = match same {
                Some(_) if m.file => std::fs::remove_file(&m.path).is_ok(),
                Some(_) => std::fs::remove_dir(&m.path).is_ok(),
                None => false,
            };
            if !removed {
                left.push(m.path);
            }
        }
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(target: &str, source: MountSource) -> ChrootMount {
        ChrootMount {
            target: target.into(),
            source,
            read_only: false,
        }
    }

    fn tmpfs() -> MountSource {
        MountSource::Tmpfs { size: None }
    }

    #[test]
    fn symlinks_resolve_inside_the_root_and_missing_parts_are_listed() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("conf")).unwrap();
        std::os::unix::fs::symlink("../../../../usr/lib", root.join("etc/up")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        let secret = t.path().join("secret");
        std::fs::write(&secret, "s").unwrap();
        let mut made = Vec::new();
        let r = resolve(
            &root,
            &[
                mount("/conf/app", tmpfs()),
                mount("/etc/up/../../x/./y", tmpfs()),
                mount("/conf/app/deep/er", MountSource::Host(secret.clone())),
                mount("/run/secrets/s", MountSource::Host(secret.clone())),
                mount("/run/secrets/t", MountSource::Host(secret)),
            ],
            &mut made,
        )
        .unwrap();
        let targets: Vec<_> = r.iter().map(|m| m.target.clone()).collect();
        assert_eq!(
            targets,
            [
                "etc/app",
                "x/y",
                "etc/app/deep/er",
                "run/secrets/s",
                "run/secrets/t"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(
            r[2].make_in_job,
            [
                ("etc/app/deep".into(), false),
                ("etc/app/deep/er".into(), true)
            ]
        );
        assert_eq!(
            made,
            [
                (PathBuf::from("etc/app"), false),
                ("x".into(), false),
                ("x/y".into(), false),
                ("run".into(), false),
                ("run/secrets".into(), false),
                ("run/secrets/s".into(), true),
                ("run/secrets/t".into(), true),
            ]
        );
        let e = resolve(&root, &[mount("/loop/x", tmpfs())], &mut Vec::new()).unwrap_err();
        assert!(e.contains("more than 40 symlinks"), "{e}");
        let e = resolve(&root, &[mount("etc", tmpfs())], &mut Vec::new()).unwrap_err();
        assert!(e.contains("not an absolute path"), "{e}");
    }

    #[test]
    fn a_mount_point_inside_a_host_directory_is_never_made() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let host = t.path().join("host");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(host.join("there")).unwrap();
        let bind = |target: &str| mount(target, MountSource::Host(host.clone()));
        let mut made = Vec::new();
        resolve(
            &root,
            &[bind("/src"), mount("/src/there", tmpfs())],
            &mut made,
        )
        .unwrap();
        assert_eq!(made, [(PathBuf::from("src"), false)]);
        let e = resolve(
            &root,
            &[bind("/src"), mount("/src/missing", tmpfs())],
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(e.contains("never in a host directory"), "{e}");
        assert!(!host.join("missing").exists());
    }

    #[test]
    fn made_mount_points_are_removed_only_while_unchanged() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let points = [
            (PathBuf::from("a"), false),
            ("a/b".into(), false),
            ("a/b/f".into(), true),
            ("c".into(), false),
        ];
        let mut made = MountPoints::make(root, &points, None).unwrap();
        assert!(root.join("a/b/f").is_file() && root.join("proc").is_dir());
        std::fs::write(root.join("c/kept"), "x").unwrap();
        let left = made.remove();
        assert_eq!(left, [root.join("c")]);
        assert!(!root.join("a").exists() && !root.join("proc").exists());
        assert!(root.join("c/kept").exists());
    }
}
