//! The layer of a Dockerfile step (`pipeline::dockerfile::snapshot`) against independent readers:
//! a tree is built, snapshotted, changed in every way a step can change it (added, rewritten in
//! place with size and mtime restored, chmod, chown, deleted, a directory deleted with its
//! children, a directory replaced by a file and a file by a directory, a directory made anew,
//! a hard-link pair, symlinks, a setuid file, a long name, a FIFO), snapshotted again, and the
//! diff layer written. Then:
//! - Python's `tarfile` lists the layer, and the list must be exactly the expected one;
//! - the "before" layer plus the diff layer, applied by rcross's own unpacker, and the diff layer
//!   applied by GNU tar on a copy of the before tree (whiteouts and opaque directories honoured
//!   by hand, in Python), must both give the after tree: paths, types, modes, owners, link
//!   counts, contents and symlink targets;
//! - the whole scenario run again in another directory gives the same layer digest;
//! - an unchanged tree gives no changes.
//!
//! Runs as root (tests/run.sh does): the scenario changes owners.

mod prereq;

use rcross::image::{ImageSource, SourceError};
use rcross::oci::{Compressor, Layer, LayerOptions};
use rcross::pipeline::dockerfile::snapshot::{
    changes, snapshot, write_diff_layer, Changes, DiffLayerOptions, Snapshot,
};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Write as _};
use std::os::unix::fs::{symlink, FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Command;

/// The build's epoch: every time in the scenario is later, except `keep/old`'s.
const EPOCH: u64 = 1_700_000_000;
/// `keep/old`'s mtime, earlier than the epoch, so kept as it is.
const OLD_MTIME: i64 = 1_000_000;
const LONG: &str =
    "a-directory-name-long-enough-that-with-its-file-the-path-needs-more-than-a-ustar-name-field";

fn root_required() -> bool {
    prereq::require(
        nix::unistd::geteuid().is_root(),
        "root (the diff-layer scenario changes owners; tests/run.sh runs as root)",
    ) && prereq::tool("python3", "python3")
        && prereq::tool("tar", "tar")
}

fn write(path: &Path, content: &[u8]) {
    fs::write(path, content).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn set_mtime(path: &Path, seconds: i64, nanoseconds: i64) {
    let t = nix::sys::time::TimeSpec::new(seconds, nanoseconds);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

/// The tree before the step.
fn build_before(root: &Path) {
    let p = |rel: &str| root.join(rel);
    for d in [
        "keep",
        "gone",
        "gone/sub",
        "d2f",
        "recreate",
        "recreate/sub",
        "shared",
    ] {
        fs::create_dir(p(d)).unwrap();
    }
    write(&p("keep/same"), b"unchanged");
    write(&p("keep/inplace"), b"12345678");
    write(&p("keep/chmod"), b"chmod me");
    write(&p("keep/chown"), b"chown me");
    write(&p("keep/delete"), b"deleted");
    write(&p("keep/old"), b"old mtime");
    set_mtime(&p("keep/old"), OLD_MTIME, 0);
    write(&p("gone/a"), b"a");
    write(&p("gone/sub/b"), b"b");
    write(&p("d2f/x"), b"x");
    write(&p("f2d"), b"file, then a directory");
    write(&p("recreate/old"), b"old");
    write(&p("recreate/both"), b"before");
    write(&p("recreate/sub/deep"), b"deep");
    // Owned by someone, in a directory with setgid and another with sticky.
    write(&p("shared/owned"), b"owned");
    chown(&p("shared/owned"), 1000, 1000);
    chmod(&p("shared"), 0o2775);
    fs::create_dir(p("tmp")).unwrap();
    chmod(&p("tmp"), 0o1777);
}

/// The step: every kind of change.
fn mutate(root: &Path) {
    let p = |rel: &str| root.join(rel);
    // Added, with new parents.
    fs::create_dir_all(p("new/deep")).unwrap();
    write(&p("new/deep/file"), b"added");
    // Rewritten in place, same size, mtime put back: only ctime tells.
    let meta = fs::metadata(p("keep/inplace")).unwrap();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(p("keep/inplace"))
        .unwrap();
    f.write_all(b"ABCDEFGH").unwrap();
    drop(f);
    set_mtime(&p("keep/inplace"), meta.mtime(), meta.mtime_nsec());
    // chmod (setuid), chown.
    chmod(&p("keep/chmod"), 0o4755);
    chown(&p("keep/chown"), 1234, 4321);
    // Deleted: a file, a directory with children.
    fs::remove_file(p("keep/delete")).unwrap();
    fs::remove_dir_all(p("gone")).unwrap();
    // A directory replaced by a file, a file by a directory.
    fs::remove_dir_all(p("d2f")).unwrap();
    write(&p("d2f"), b"now a file");
    fs::remove_file(p("f2d")).unwrap();
    fs::create_dir(p("f2d")).unwrap();
    write(&p("f2d/y"), b"y");
    // A directory made anew (the old one kept alive elsewhere, so its inode is not reused).
    fs::rename(p("recreate"), p("tmp/recreate.old")).unwrap();
    fs::create_dir(p("recreate")).unwrap();
    write(&p("recreate/both"), b"after");
    write(&p("recreate/new"), b"new");
    fs::remove_dir_all(p("tmp/recreate.old")).unwrap();
    // A hard-link pair, symlinks (relative, absolute, dangling), a long name, a FIFO.
    fs::create_dir(p("links")).unwrap();
    write(&p("links/one"), b"linked");
    chmod(&p("links/one"), 0o700);
    fs::hard_link(p("links/one"), p("links/two")).unwrap();
    symlink("../keep/same", p("links/rel")).unwrap();
    symlink("/etc/passwd", p("links/abs")).unwrap();
    symlink("nowhere", p("links/dangling")).unwrap();
    chown(&p("links/rel"), 7, 8);
    fs::create_dir(p(LONG)).unwrap();
    write(&p(&format!("{LONG}/file")), b"long");
    nix::unistd::mkfifo(
        &p("links/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
}

fn options(threads: usize) -> DiffLayerOptions<'static> {
    DiffLayerOptions {
        layer: LayerOptions {
            compression: Compressor::Gzip { level: 6 },
            threads,
            mtime: EPOCH,
        },
        to_image_ids: &|uid, gid| (uid, gid),
    }
}

fn layer(root: &Path, after: &Snapshot, changes: &Changes) -> (Layer, Vec<u8>) {
    write_diff_layer(root, after, changes, &options(2), Vec::new()).unwrap()
}

/// One scenario: the tree in `dir/work` (after the step), a pristine copy of the tree before it
/// in `dir/before`, and the two layers.
struct Scenario {
    before: Snapshot,
    after: Snapshot,
    changes: Changes,
    base: (Layer, Vec<u8>),
    diff: (Layer, Vec<u8>),
}

fn scenario(dir: &Path) -> Scenario {
    let work = dir.join("work");
    fs::create_dir(&work).unwrap();
    build_before(&work);
    let copied = Command::new("cp")
        .args(["-a", "--"])
        .arg(&work)
        .arg(dir.join("before"))
        .status()
        .unwrap();
    assert!(copied.success());
    let before = snapshot(&work, &|_| false).unwrap();
    let base = layer(&work, &before, &changes(&Snapshot::default(), &before));
    // Change times come from a coarse clock: let it tick, so an in-place rewrite is seen.
    std::thread::sleep(std::time::Duration::from_millis(30));
    mutate(&work);
    let after = snapshot(&work, &|_| false).unwrap();
    let changes = changes(&before, &after);
    let diff = layer(&work, &after, &changes);
    Scenario {
        before,
        after,
        changes,
        base,
        diff,
    }
}

fn python(script: &str, args: &[&Path]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The layer's entries as Python's tarfile reads them, one line each:
/// `name type mode uid:gid mtime size -> link`.
fn python_listing(blob: &Path) -> Vec<String> {
    const SCRIPT: &str = r#"
import sys, tarfile
kinds = {tarfile.REGTYPE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink"}
with tarfile.open(sys.argv[1], "r:gz") as t:
    for m in t.getmembers():
        assert m.uname == "" and m.gname == "", (m.name, m.uname, m.gname)
        link = " -> " + m.linkname if m.linkname else ""
        print(f"{m.name} {kinds.get(m.type, m.type)} {m.mode:o} {m.uid}:{m.gid} {m.mtime} {m.size}{link}")
"#;
    python(SCRIPT, &[blob])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn python_reads_exactly_the_expected_entries() {
    if !root_required() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(dir.path());
    let blob = dir.path().join("diff.tar.gz");
    write(&blob, &s.diff.1);
    let e = EPOCH;
    let long_file = format!("{LONG}/file file 644 0:0 {e} 4");
    let expected = vec![
        format!("{LONG} dir 755 0:0 {e} 0"),
        long_file,
        format!("d2f file 644 0:0 {e} 10"),
        format!("f2d dir 755 0:0 {e} 0"),
        format!("f2d/y file 644 0:0 {e} 1"),
        format!("keep dir 755 0:0 {e} 0"),
        format!("keep/.wh.delete file 0 0:0 {e} 0"),
        format!("keep/chmod file 4755 0:0 {e} 8"),
        format!("keep/chown file 644 1234:4321 {e} 8"),
        format!("keep/inplace file 644 0:0 {e} 8"),
        format!("links dir 755 0:0 {e} 0"),
        format!("links/abs symlink 777 0:0 {e} 0 -> /etc/passwd"),
        format!("links/dangling symlink 777 0:0 {e} 0 -> nowhere"),
        format!("links/one file 700 0:0 {e} 6"),
        format!("links/rel symlink 777 7:8 {e} 0 -> ../keep/same"),
        format!("links/two hardlink 700 0:0 {e} 0 -> links/one"),
        format!("new dir 755 0:0 {e} 0"),
        format!("new/deep dir 755 0:0 {e} 0"),
        format!("new/deep/file file 644 0:0 {e} 5"),
        format!("recreate dir 755 0:0 {e} 0"),
        format!("recreate/.wh..wh..opq file 0 0:0 {e} 0"),
        format!("recreate/both file 644 0:0 {e} 5"),
        format!("recreate/new file 644 0:0 {e} 3"),
        format!("tmp dir 1777 0:0 {e} 0"),
        format!(".wh.gone file 0 0:0 {e} 0"),
    ];
    let mut expected = expected;
    // Sorted as the layer is (byte order of the entry names): '.' sorts before letters.
    expected.sort_by(|a, b| {
        let name = |s: &str| s.split(' ').next().unwrap().to_string();
        name(a).cmp(&name(b))
    });
    assert_eq!(python_listing(&blob), expected);
    assert_eq!(s.changes.special_skipped(), ["links/fifo"]);
    // keep/old (not changed) is absent; in the base layer its old mtime is kept, not clamped.
    let base_blob = dir.path().join("base.tar.gz");
    write(&base_blob, &s.base.1);
    let base = python_listing(&base_blob);
    assert!(
        base.contains(&format!("keep/old file 644 0:0 {OLD_MTIME} 9")),
        "{base:#?}"
    );
    assert!(
        base.contains(&format!("shared/owned file 644 1000:1000 {e} 5")),
        "{base:#?}"
    );
    assert!(
        base.contains(&format!("shared dir 2775 0:0 {e} 0")),
        "{base:#?}"
    );
    assert_eq!(s.before.len(), base.len());
    // 9 paths deleted (gone and its 3, keep/delete, d2f/x, recreate's old 3), 14 added.
    assert_eq!((s.before.len(), s.after.len()), (22, 22 - 9 + 14));
}

/// What a tree holds, path by path: type, mode, owner, link count, content or target.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for child in fs::read_dir(&dir).unwrap() {
            let path = child.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            let t = meta.file_type();
            let what = if t.is_dir() {
                pending.push(path.clone());
                "dir".to_string()
            } else if t.is_symlink() {
                format!("symlink -> {}", fs::read_link(&path).unwrap().display())
            } else if t.is_file() {
                format!(
                    "file {:?}",
                    String::from_utf8_lossy(&fs::read(&path).unwrap())
                )
            } else if t.is_fifo() {
                "fifo".to_string()
            } else {
                "other".to_string()
            };
            let mode = if t.is_symlink() {
                String::new()
            } else {
                format!("{:o} ", meta.mode() & 0o7777)
            };
            out.insert(
                rel,
                format!(
                    "{mode}{}:{} n{} {what}",
                    meta.uid(),
                    meta.gid(),
                    meta.nlink()
                ),
            );
        }
    }
    out
}

/// Layer blobs in memory, served by digest.
#[derive(Default)]
struct Mem {
    blobs: HashMap<String, Vec<u8>>,
}

impl ImageSource for Mem {
    fn describe(&self) -> String {
        "diff-layer test".into()
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

/// Applies a layer on a directory the way the OCI spec says, with GNU tar doing the extraction:
/// Python removes what the whiteouts name, empties opaque directories, and removes what an entry
/// of another type replaces (a file over a directory); then `tar` extracts everything but the
/// markers, owners and modes included.
fn apply_with_gnu_tar(blob: &Path, dir: &Path) {
    const SCRIPT: &str = r#"
import os, shutil, sys, tarfile
blob, root = sys.argv[1], sys.argv[2]
def remove(p):
    if os.path.isdir(p) and not os.path.islink(p):
        shutil.rmtree(p)
    elif os.path.lexists(p):
        os.remove(p)
with tarfile.open(blob, "r:gz") as t:
    for m in t.getmembers():
        parent, name = os.path.split(m.name)
        target = os.path.join(root, parent)
        if name == ".wh..wh..opq":
            for child in os.listdir(target):
                remove(os.path.join(target, child))
        elif name.startswith(".wh."):
            remove(os.path.join(target, name[len(".wh."):]))
        else:
            p = os.path.join(root, m.name)
            existing_dir = os.path.isdir(p) and not os.path.islink(p)
            if os.path.lexists(p) and not (m.isdir() and existing_dir):
                remove(p)
"#;
    python(SCRIPT, &[blob, dir]);
    let out = Command::new("tar")
        .args([
            "--extract",
            "--gzip",
            "--same-permissions",
            "--same-owner",
            "--numeric-owner",
            "--exclude=.wh.*",
            "--file",
        ])
        .arg(blob)
        .arg("--directory")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn both_unpackers_turn_the_before_tree_into_the_after_tree() {
    if !root_required() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(dir.path());
    let mut expected = tree(&dir.path().join("work"));
    // The FIFO is not carried; everything else is.
    assert_eq!(
        expected.remove("links/fifo").as_deref(),
        Some("644 0:0 n1 fifo")
    );
    assert!(expected.contains_key("keep/inplace") && expected.contains_key("recreate/new"));
    assert_ne!(tree(&dir.path().join("before")), expected);

    // rcross's unpacker: the before tree's layer, then the diff layer.
    let mut mem = Mem::default();
    for (layer, bytes) in [&s.base, &s.diff] {
        mem.blobs.insert(layer.digest.clone(), bytes.clone());
    }
    let unpacked = dir.path().join("unpacked");
    let stats =
        rcross::pipeline::rootfs::unpack(&mem, &[s.base.0.clone(), s.diff.0.clone()], &unpacked)
            .unwrap();
    assert!(stats.owners_kept && stats.hardlinks == 1, "{stats:?}");
    assert_eq!(tree(&unpacked), expected, "rcross's unpacker");

    // GNU tar on the copy of the before tree.
    let blob = dir.path().join("diff.tar.gz");
    write(&blob, &s.diff.1);
    let copy = dir.path().join("before");
    apply_with_gnu_tar(&blob, &copy);
    assert_eq!(tree(&copy), expected, "GNU tar");
}

#[test]
fn the_same_step_twice_gives_the_same_layer() {
    if !root_required() {
        return;
    }
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (scenario(one.path()), scenario(two.path()));
    assert_eq!(a.changes, b.changes);
    assert_eq!(a.diff.0, b.diff.0);
    assert_eq!(a.base.0, b.base.0);
    // Threads do not matter either.
    let (again, _) = write_diff_layer(
        &one.path().join("work"),
        &a.after,
        &a.changes,
        &options(1),
        Vec::new(),
    )
    .unwrap();
    assert_eq!(again, a.diff.0);
}

#[test]
fn an_unchanged_tree_gives_no_changes() {
    if !root_required() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    build_before(root);
    let before = snapshot(root, &|_| false).unwrap();
    // Reading changes nothing a layer carries.
    for (path, _) in before.iter() {
        let p = root.join(path);
        if p.is_file() {
            fs::read(&p).unwrap();
        }
    }
    let after = snapshot(root, &|_| false).unwrap();
    assert!(changes(&before, &after).is_empty());
    // One touch is a change.
    std::thread::sleep(std::time::Duration::from_millis(30));
    chown(&root.join("keep/same"), 0, 0);
    let touched = snapshot(root, &|_| false).unwrap();
    let c = changes(&before, &touched);
    let entries: Vec<String> = c.iter().map(|c| c.entry_name()).collect();
    assert_eq!(entries, ["keep", "keep/same"]);
}
