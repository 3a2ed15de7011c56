//! Unpacks the archive of a build container's output directory (what `GET
//! /containers/{id}/archive?path=/rcross/out` returns: every entry under `out/`) into a host
//! directory, refusing anything that would land outside it.
//!
//! The archive comes from a container running a project's build command, so it is treated as
//! hostile: absolute names, `..` components, entries outside `out/`, writes through symlinks,
//! hard links to anything but a file already unpacked, and symlinks whose target leaves the
//! directory (absolutely, through `..`, or through other links in the tree) are refused.
//! Ownership and setuid/setgid/sticky bits are not restored.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::walk::tar::{read_tar, Entry, TarEntryKind};

/// Symlinks followed at most while checking where one points (as the kernel's ELOOP limit).
const MAX_LINK_HOPS: usize = 40;

/// What was unpacked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    pub files: u64,
    pub bytes: u64,
    pub symlinks: u64,
    /// Device nodes and FIFOs, which are not recreated.
    pub skipped: Vec<String>,
}

/// Why the output was refused or could not be written: the entry and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{entry}: {message}")]
pub struct UnpackError {
    pub entry: String,
    pub message: String,
}

fn refuse(entry: &str, message: impl std::fmt::Display) -> UnpackError {
    UnpackError {
        entry: entry.to_string(),
        message: message.to_string(),
    }
}

/// Unpacks `archive`, whose entries are all under `top/`, into `dest` with `top/` stripped.
///
/// The archive is read by [`walk::tar`](crate::walk::tar), the bounded reader that finds entries
/// where Docker's own (Go) reader does: extension records are capped, and data hidden behind a
/// directory or link entry is read as the entries it is.
pub fn unpack_output<R: Read>(
    archive: R,
    top: &str,
    dest: &Path,
) -> Result<UnpackStats, UnpackError> {
    let dest_name = dest.display().to_string();
    fs::create_dir_all(dest).map_err(|e| refuse(&dest_name, e))?;
    let mut out = Output {
        top,
        dest,
        stats: UnpackStats::default(),
        links: Vec::new(),
    };
    let mut failed: Option<UnpackError> = None;
    let read = read_tar(archive, &mut |entry, content| {
        out.entry(entry, content).map_err(|e| {
            let shown = e.to_string();
            failed = Some(e);
            io::Error::other(shown)
        })
    });
    if let Some(e) = failed {
        return Err(e);
    }
    read.map_err(|e| refuse("the output archive", format!("unreadable: {e}")))?;
    let Output { stats, links, .. } = out;
    // A link checked when it was created can be redirected by a later one (`a -> s/..`, then
    // `s -> .`): check every link again against the finished tree, and remove the bad ones.
    let mut bad = None;
    for (rel, target) in &links {
        let parent = rel.parent().unwrap_or(Path::new(""));
        if let Err(m) = check_link(dest, parent, target, true) {
            let _ = fs::remove_file(dest.join(rel));
            bad.get_or_insert_with(|| {
                refuse(
                    &format!("{top}/{}", rel.display()),
                    format!("symlink to {}: {m}", target.display()),
                )
            });
        }
    }
    match bad {
        Some(e) => Err(e),
        None => Ok(stats),
    }
}

/// The unpacking in progress.
struct Output<'a> {
    top: &'a str,
    dest: &'a Path,
    stats: UnpackStats,
    /// Every symlink made (relative path, target), checked again at the end.
    links: Vec<(PathBuf, PathBuf)>,
}

impl Output<'_> {
    fn entry(&mut self, entry: &Entry, content: &mut dyn Read) -> Result<(), UnpackError> {
        let (top, dest) = (self.top, self.dest);
        let name = entry.name.clone();
        let rel = relative(Path::new(&name), top).map_err(|m| refuse(&name, m))?;
        if rel.as_os_str().is_empty() {
            // `out/` itself.
            if entry.kind == TarEntryKind::Dir {
                return Ok(());
            }
            return Err(refuse(&name, format!("{top} is not a directory")));
        }
        let mode = entry.mode & 0o777;
        match entry.kind {
            TarEntryKind::Dir => {
                let dir = ensure_dirs(dest, &rel).map_err(|m| refuse(&name, m))?;
                fs::set_permissions(&dir, fs::Permissions::from_mode(mode | 0o700))
                    .map_err(|e| refuse(&name, e))?;
            }
            TarEntryKind::File => {
                let path = prepare_leaf(dest, &rel).map_err(|m| refuse(&name, m))?;
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode_0600()
                    .open(&path)
                    .map_err(|e| refuse(&name, format!("cannot create {}: {e}", path.display())))?;
                let n = io::copy(content, &mut file)
                    .map_err(|e| refuse(&name, format!("writing {}: {e}", path.display())))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                    .map_err(|e| refuse(&name, e))?;
                self.stats.files += 1;
                self.stats.bytes += n;
            }
            TarEntryKind::Symlink => {
                let target = PathBuf::from(
                    entry
                        .link
                        .as_deref()
                        .ok_or_else(|| refuse(&name, "a symlink without a target"))?,
                );
                let parent = rel.parent().unwrap_or(Path::new(""));
                check_link(dest, parent, &target, false)
                    .map_err(|m| refuse(&name, format!("symlink to {}: {m}", target.display())))?;
                let path = prepare_leaf(dest, &rel).map_err(|m| refuse(&name, m))?;
                symlink(&target, &path).map_err(|e| refuse(&name, e))?;
                self.links.push((rel, target));
                self.stats.symlinks += 1;
            }
            TarEntryKind::Hardlink => {
                let target = PathBuf::from(
                    entry
                        .link
                        .as_deref()
                        .ok_or_else(|| refuse(&name, "a hard link without a target"))?,
                );
                let target_rel = relative(&target, top).map_err(|m| {
                    refuse(&name, format!("hard link to {}: {m}", target.display()))
                })?;
                let source = existing_file(dest, &target_rel).map_err(|m| {
                    refuse(&name, format!("hard link to {}: {m}", target.display()))
                })?;
                let path = prepare_leaf(dest, &rel).map_err(|m| refuse(&name, m))?;
                fs::hard_link(&source, &path).map_err(|e| refuse(&name, e))?;
                self.stats.files += 1;
            }
            TarEntryKind::Other => {
                // Devices and FIFOs are not recreated; other types (GNU volume labels, vendor
                // extensions) carry nothing an output needs.
                if matches!(entry.typeflag, b'3' | b'4' | b'6') {
                    self.stats.skipped.push(name);
                }
            }
        }
        Ok(())
    }
}

/// The same symlink rule for an output directory that arrived some other way (the chroot runner
/// copies its output out of the job's root): every symlink under `dest` must resolve inside it.
/// The first one that does not is removed and returned as the error.
pub fn check_links_inside(dest: &Path) -> Result<(), UnpackError> {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel_dir) = stack.pop() {
        let dir = dest.join(&rel_dir);
        let entries = fs::read_dir(&dir).map_err(|e| refuse(&dir.display().to_string(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| refuse(&dir.display().to_string(), e))?;
            let rel = rel_dir.join(entry.file_name());
            let kind = entry
                .file_type()
                .map_err(|e| refuse(&rel.display().to_string(), e))?;
            if kind.is_dir() {
                stack.push(rel);
            } else if kind.is_symlink() {
                let target = fs::read_link(entry.path())
                    .map_err(|e| refuse(&rel.display().to_string(), e))?;
                if let Err(m) = check_link(dest, &rel_dir, &target, true) {
                    let _ = fs::remove_file(entry.path());
                    return Err(refuse(
                        &rel.display().to_string(),
                        format!("symlink to {}: {m}", target.display()),
                    ));
                }
            }
        }
    }
    Ok(())
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

/// The entry name relative to `top/`: no root, no `..`, nothing outside `top`.
fn relative(raw: &Path, top: &str) -> Result<PathBuf, String> {
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => {
                return Err("an absolute name in the output archive".into())
            }
            Component::ParentDir => return Err("a '..' component in the output archive".into()),
            Component::CurDir => {}
            Component::Normal(p) => parts.push(p),
        }
    }
    let mut parts = parts.into_iter();
    match parts.next() {
        Some(first) if first == top => Ok(parts.collect()),
        _ => Err(format!("outside {top}/ in the output archive")),
    }
}

/// Creates `dest/rel` and its parents as real directories; a symlink on the way is refused,
/// so nothing is ever written through a link.
fn ensure_dirs(dest: &Path, rel: &Path) -> Result<PathBuf, String> {
    let mut cur = dest.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "{} is a symlink; refusing to write through it",
                    cur.display()
                ))
            }
            Ok(_) => return Err(format!("{} exists and is not a directory", cur.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&cur).map_err(|e| format!("cannot create {}: {e}", cur.display()))?
            }
            Err(e) => return Err(format!("{}: {e}", cur.display())),
        }
    }
    Ok(cur)
}

/// The host path for a file or link entry: parents created (no links among them), a previous
/// non-directory entry of the same name removed (a link itself, never its target).
fn prepare_leaf(dest: &Path, rel: &Path) -> Result<PathBuf, String> {
    let parent = ensure_dirs(dest, rel.parent().unwrap_or(Path::new("")))?;
    let name = rel
        .file_name()
        .ok_or_else(|| "an entry without a name".to_string())?;
    let path = parent.join(name);
    match fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_dir() => Err(format!(
            "{} is a directory; a file cannot replace it",
            path.display()
        )),
        Ok(_) => fs::remove_file(&path)
            .map(|()| path.clone())
            .map_err(|e| format!("cannot replace {}: {e}", path.display())),
        Err(_) => Ok(path),
    }
}

/// `dest/rel` when it is a regular file reached without symlinks.
fn existing_file(dest: &Path, rel: &Path) -> Result<PathBuf, String> {
    let mut cur = dest.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        let m = fs::symlink_metadata(&cur).map_err(|_| {
            "the target is not unpacked (a hard link must follow its file)".to_string()
        })?;
        if m.file_type().is_symlink() {
            return Err(format!("{} is a symlink", cur.display()));
        }
    }
    if fs::symlink_metadata(&cur).is_ok_and(|m| m.file_type().is_file()) {
        Ok(cur)
    } else {
        Err("the target is not a regular file".into())
    }
}

/// One step of a path being resolved.
enum Step {
    Up,
    Name(OsString),
}

fn steps(path: &Path) -> Result<Vec<Step>, String> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => {
                return Err(format!(
                    "the absolute path {} is outside the output directory",
                    path.display()
                ))
            }
            Component::CurDir => {}
            Component::ParentDir => out.push(Step::Up),
            Component::Normal(p) => out.push(Step::Name(p.to_os_string())),
        }
    }
    Ok(out)
}

/// Whether a symlink in `dest/parent` pointing at `target` stays inside `dest`: resolved one
/// component at a time; with `follow`, links already on disk are followed on the way (a name
/// that does not exist is taken as it is).
fn check_link(dest: &Path, parent: &Path, target: &Path, follow: bool) -> Result<(), String> {
    if target.as_os_str().is_empty() {
        return Err("an empty target".into());
    }
    let mut cur: Vec<OsString> = parent
        .components()
        .map(|c| c.as_os_str().to_os_string())
        .collect();
    let mut pending: VecDeque<Step> = steps(target)?.into();
    let mut hops = 0usize;
    while let Some(step) = pending.pop_front() {
        match step {
            Step::Up => {
                if cur.pop().is_none() {
                    return Err("'..' leads outside the output directory".into());
                }
            }
            Step::Name(name) => {
                if follow {
                    let here = dest.join(cur.iter().collect::<PathBuf>()).join(&name);
                    let is_link =
                        fs::symlink_metadata(&here).is_ok_and(|m| m.file_type().is_symlink());
                    if is_link {
                        hops += 1;
                        if hops > MAX_LINK_HOPS {
                            return Err("too many levels of symlinks".into());
                        }
                        let next =
                            fs::read_link(&here).map_err(|e| format!("{}: {e}", here.display()))?;
                        for s in steps(&next)?.into_iter().rev() {
                            pending.push_front(s);
                        }
                        continue;
                    }
                }
                cur.push(name);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn links_of_a_copied_output_must_stay_inside_it() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::create_dir_all(d.join("bin")).unwrap();
        fs::write(d.join("bin/app"), "x").unwrap();
        symlink("bin/app", d.join("app")).unwrap();
        symlink("../bin/app", d.join("bin/again")).unwrap();
        check_links_inside(d).unwrap();
        symlink("/etc/passwd", d.join("bin/passwd")).unwrap();
        let e = check_links_inside(d).unwrap_err().to_string();
        assert!(e.contains("bin/passwd: symlink to /etc/passwd"), "{e}");
        assert!(!d.join("bin/passwd").exists(), "the bad link is removed");
        symlink("../..", d.join("bin/up")).unwrap();
        assert!(check_links_inside(d).is_err());
        check_links_inside(d).unwrap();
    }

    /// One raw tar entry: the name and link name go into the header as they are, unchecked
    /// (the tar crate's own setters refuse the hostile names these tests need).
    struct Raw<'a> {
        name: &'a str,
        kind: tar::EntryType,
        mode: u32,
        link: &'a str,
        data: &'a [u8],
    }

    fn raw(name: &str, kind: tar::EntryType) -> Raw<'_> {
        Raw {
            name,
            kind,
            mode: 0o644,
            link: "",
            data: b"",
        }
    }

    fn archive(entries: &[Raw]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_ustar();
            let bytes = h.as_mut_bytes();
            bytes[..e.name.len()].copy_from_slice(e.name.as_bytes());
            bytes[157..157 + e.link.len()].copy_from_slice(e.link.as_bytes());
            h.set_entry_type(e.kind);
            h.set_mode(e.mode);
            h.set_size(e.data.len() as u64);
            h.set_cksum();
            b.append(&h, e.data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn file<'a>(name: &'a str, data: &'a [u8], mode: u32) -> Raw<'a> {
        Raw {
            mode,
            data,
            ..raw(name, tar::EntryType::Regular)
        }
    }

    fn link<'a>(name: &'a str, target: &'a str) -> Raw<'a> {
        Raw {
            link: target,
            ..raw(name, tar::EntryType::Symlink)
        }
    }

    fn hard<'a>(name: &'a str, target: &'a str) -> Raw<'a> {
        Raw {
            link: target,
            ..raw(name, tar::EntryType::Link)
        }
    }

    fn unpack(entries: &[Raw]) -> (tempfile::TempDir, Result<UnpackStats, UnpackError>) {
        let dir = tempfile::tempdir().unwrap();
        let r = unpack_output(archive(entries).as_slice(), "out", &dir.path().join("dest"));
        (dir, r)
    }

    /// Every path under `dir`, relative, sorted.
    fn tree(dir: &Path) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                out.push(p.strip_prefix(root).unwrap().display().to_string());
                if fs::symlink_metadata(&p).unwrap().is_dir() {
                    walk(root, &p, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out.sort();
        out
    }

    #[test]
    fn unpacks_files_dirs_and_links_without_the_top_directory() {
        let (dir, r) = unpack(&[
            raw("out/", tar::EntryType::Directory),
            raw("out/bin/", tar::EntryType::Directory),
            file("out/bin/hello", b"ELF", 0o4755),
            link("out/hello", "bin/hello"),
            link("out/bin/self", "../bin/./hello"),
            hard("out/copy", "out/bin/hello"),
            raw("out/fifo", tar::EntryType::Fifo),
        ]);
        let stats = r.unwrap();
        let dest = dir.path().join("dest");
        assert_eq!(
            tree(&dest),
            ["bin", "bin/hello", "bin/self", "copy", "hello"]
        );
        assert_eq!(fs::read(dest.join("hello")).unwrap(), b"ELF");
        assert_eq!(fs::read(dest.join("copy")).unwrap(), b"ELF");
        let mode = fs::metadata(dest.join("bin/hello")).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o755, "setuid is not restored");
        assert_eq!(stats.files, 2);
        assert_eq!(stats.symlinks, 2);
        assert_eq!(stats.skipped, ["out/fifo"]);
    }

    #[test]
    fn hostile_names_are_refused_and_nothing_lands_outside() {
        for (entries, want) in [
            (vec![file("/etc/evil", b"x", 0o644)], "absolute name"),
            (vec![file("out/../evil", b"x", 0o644)], "'..'"),
            (vec![file("other/evil", b"x", 0o644)], "outside out/"),
            (vec![file("evil", b"x", 0o644)], "outside out/"),
            (vec![file("out", b"x", 0o644)], "not a directory"),
            (vec![link("out/passwd", "/etc/passwd")], "absolute path"),
            (
                vec![link("out/up", "../evil")],
                "outside the output directory",
            ),
            (
                vec![link("out/d/up", "../../evil")],
                "outside the output directory",
            ),
            (vec![link("out/empty", "")], "target"),
            (vec![hard("out/h", "/etc/passwd")], "absolute name"),
            (vec![hard("out/h", "out/../evil")], "'..'"),
            (vec![hard("out/h", "out/missing")], "not unpacked"),
            (
                // Writing through a link, even one that points inside.
                vec![
                    raw("out/sub/", tar::EntryType::Directory),
                    link("out/d", "sub"),
                    file("out/d/x", b"x", 0o644),
                ],
                "refusing to write through it",
            ),
            (
                // A link checked alone stays inside; a later link makes it escape.
                vec![link("out/a", "s/.."), link("out/s", ".")],
                "outside the output directory",
            ),
            (
                vec![link("out/x", "y"), link("out/y", "x"), link("out/z", "x/q")],
                "too many levels",
            ),
        ] {
            let (dir, r) = unpack(&entries);
            let e = r.unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
            assert_eq!(
                tree(dir.path())
                    .iter()
                    .filter(|p| !p.starts_with("dest"))
                    .count(),
                0
            );
            assert!(!dir.path().join("evil").exists());
        }
    }

    /// One entry (header and data, no end-of-archive blocks) as raw bytes.
    fn entry_bytes(e: Raw) -> Vec<u8> {
        let mut v = archive(&[e]);
        v.truncate(v.len() - 1024);
        v
    }

    #[test]
    fn entries_hidden_behind_a_directory_size_are_seen_as_docker_sees_them() {
        // Go's reader (Docker's) takes a directory's size as nothing: the "data" is entries.
        let hidden = entry_bytes(file("out/bin/evil", b"\x7fELF", 0o755));
        let (dir, r) = unpack(&[
            raw("out/", tar::EntryType::Directory),
            Raw {
                data: &hidden,
                ..raw("out/d/", tar::EntryType::Directory)
            },
        ]);
        r.unwrap();
        assert_eq!(
            fs::read(dir.path().join("dest/bin/evil")).unwrap(),
            b"\x7fELF"
        );
        // And a hostile entry hidden that way is refused, not skipped.
        let hidden = entry_bytes(file("/etc/evil", b"x", 0o644));
        let (dir, r) = unpack(&[Raw {
            data: &hidden,
            ..raw("out/d/", tar::EntryType::Directory)
        }]);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("absolute name"), "{e}");
        assert!(!dir.path().join("etc/evil").exists());
    }

    #[test]
    fn a_huge_long_name_record_is_refused_unread() {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(1 << 40);
        h.set_cksum();
        let mut data = h.as_bytes().to_vec();
        data.extend_from_slice(&[b'a'; 4096]);
        let dir = tempfile::tempdir().unwrap();
        let e = unpack_output(data.as_slice(), "out", &dir.path().join("dest"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("larger than the 65536 accepted"), "{e}");
    }

    #[test]
    fn the_escaping_link_is_removed() {
        let (dir, r) = unpack(&[link("out/a", "s/.."), link("out/s", ".")]);
        assert!(r.is_err());
        assert!(fs::symlink_metadata(dir.path().join("dest/a")).is_err());
    }

    #[test]
    fn a_file_replaces_a_link_not_its_target() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("victim"), "keep").unwrap();
        let dest = dir.path().join("dest");
        let r = unpack_output(
            archive(&[link("out/f", "g"), file("out/f", b"new", 0o644)]).as_slice(),
            "out",
            &dest,
        );
        r.unwrap();
        assert_eq!(fs::read(dest.join("f")).unwrap(), b"new");
        assert!(!fs::symlink_metadata(dest.join("f"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(dir.path().join("victim")).unwrap(), b"keep");
    }
}
