//! Hostile layers against the real unpacker and the real kernel: nothing a layer holds may change
//! anything outside the root it is unpacked into.
//!
//! Each test runs in a thread of its own that enters a private mount namespace
//! (`unshare(CLONE_NEWNS)` affects only the calling thread, which gets its own `fs_struct`) and
//! mounts a fresh tmpfs on an empty temporary directory. In that tmpfs live a decoy directory with
//! known files and, next to it, the roots the layers are unpacked into; root and decoy share one
//! filesystem, so a hard link out of the root would be possible if the unpacker allowed it. After
//! every hostile layer the whole tmpfs outside the roots — names, types, contents, modes, owners,
//! link counts, symlink targets, mtimes and ctimes — must be exactly what it was. The namespace
//! dies with the thread, so nothing stays mounted on the machine.
//!
//! Runs as root (tests/run.sh does); anything else fails, naming what is missing.

use rcross::image::{ImageSource, SourceError};
use rcross::oci::Layer;
use rcross::pipeline::rootfs::{unpack, unpack_cached, RootfsError, Stats};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MTIME: u64 = 1_000_000;

/// Layer blobs in memory, served by digest.
#[derive(Default)]
struct Mem {
    blobs: HashMap<String, Vec<u8>>,
}

impl ImageSource for Mem {
    fn describe(&self) -> String {
        "hostile".into()
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

impl Mem {
    fn layer(&mut self, tar: Tar, media_type: &str) -> Layer {
        let tar = tar.done();
        let blob = if media_type == GZIP {
            use std::io::Write as _;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&tar).unwrap();
            e.finish().unwrap()
        } else {
            tar
        };
        let digest = rcross::oci::sha256_digest(&blob);
        self.blobs.insert(digest.clone(), blob.clone());
        Layer {
            media_type: media_type.into(),
            digest,
            size: blob.len() as u64,
            diff_id: String::new(),
            uncompressed_size: 0,
        }
    }
}

/// A tar written header by header (plain ustar), so any name, link and type is possible.
#[derive(Default)]
struct Tar {
    data: Vec<u8>,
}

impl Tar {
    #[allow(clippy::too_many_arguments)]
    fn raw(
        mut self,
        name: &str,
        typeflag: u8,
        link: &str,
        mode: u32,
        body: &[u8],
        dev: (u32, u32),
    ) -> Self {
        assert!(name.len() < 100 && link.len() < 100, "{name} -> {link}");
        let mut h = [0u8; 512];
        let octal = |h: &mut [u8; 512], at: usize, len: usize, v: u64| {
            let s = format!("{v:0width$o}\0", width = len - 1);
            h[at..at + len].copy_from_slice(s.as_bytes());
        };
        h[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut h, 100, 8, u64::from(mode));
        octal(&mut h, 108, 8, 0);
        octal(&mut h, 116, 8, 0);
        octal(&mut h, 124, 12, body.len() as u64);
        octal(&mut h, 136, 12, MTIME);
        h[156] = typeflag;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        octal(&mut h, 329, 8, u64::from(dev.0));
        octal(&mut h, 337, 8, u64::from(dev.1));
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        self.data.extend_from_slice(&h);
        self.data.extend_from_slice(body);
        let pad = (512 - body.len() % 512) % 512;
        self.data.extend(std::iter::repeat_n(0u8, pad));
        self
    }
    fn file(self, name: &str, body: &str) -> Self {
        self.raw(name, b'0', "", 0o644, body.as_bytes(), (0, 0))
    }
    fn dir(self, name: &str, mode: u32) -> Self {
        self.raw(name, b'5', "", mode, b"", (0, 0))
    }
    fn symlink(self, name: &str, target: &str) -> Self {
        self.raw(name, b'2', target, 0o777, b"", (0, 0))
    }
    fn hardlink(self, name: &str, target: &str) -> Self {
        self.raw(name, b'1', target, 0o644, b"", (0, 0))
    }
    fn device(self, name: &str, typeflag: u8, major: u32, minor: u32) -> Self {
        self.raw(name, typeflag, "", 0o666, b"", (major, minor))
    }
    fn done(mut self) -> Vec<u8> {
        self.data.extend_from_slice(&[0u8; 1024]);
        self.data
    }
}

/// A fresh tmpfs in a private mount namespace holding the decoy and the roots.
struct Sandbox {
    top: PathBuf,
}

impl Sandbox {
    /// `<top>/decoy`, the directory no layer may change.
    fn decoy(&self) -> PathBuf {
        self.top.join("decoy")
    }
    fn decoy_str(&self) -> String {
        self.decoy().display().to_string()
    }
    /// A root to unpack into: `<top>/roots/NAME`, so `../../decoy` from it is the decoy.
    fn root(&self, name: &str) -> PathBuf {
        self.top.join("roots").join(name)
    }
    fn cache(&self) -> PathBuf {
        self.top.join("roots").join("cache")
    }

    /// Everything under the tmpfs except the roots, as one line per path.
    fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        snapshot_into(&self.top, &self.top.join("roots"), &mut out);
        out
    }

    /// Fails the test, naming each difference, if anything outside the roots changed.
    fn assert_unchanged(&self, before: &BTreeMap<PathBuf, String>, case: &str) {
        let after = self.snapshot();
        if &after != before {
            let mut diff = Vec::new();
            for (p, b) in before {
                match after.get(p) {
                    None => diff.push(format!("removed {}: was {b}", p.display())),
                    Some(a) if a != b => diff.push(format!("changed {}: {b} -> {a}", p.display())),
                    _ => {}
                }
            }
            for (p, a) in &after {
                if !before.contains_key(p) {
                    diff.push(format!("created {}: {a}", p.display()));
                }
            }
            panic!(
                "{case}: the unpacker changed what lies outside the root:\n  {}",
                diff.join("\n  ")
            );
        }
    }
}

fn snapshot_into(path: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, String>) {
    if path == skip {
        return;
    }
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let t = m.file_type();
    let what = if t.is_dir() {
        "dir".to_string()
    } else if t.is_symlink() {
        format!("symlink -> {}", fs::read_link(path).unwrap().display())
    } else if t.is_file() {
        format!(
            "file {:?}",
            String::from_utf8_lossy(&fs::read(path).unwrap())
        )
    } else {
        format!("special {:?} rdev {}", t, m.rdev())
    };
    out.insert(
        path.to_path_buf(),
        format!(
            "{what} mode {:o} uid {} gid {} nlink {} ino {} mtime {}.{} ctime {}.{}",
            m.mode(),
            m.uid(),
            m.gid(),
            m.nlink(),
            m.ino(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        ),
    );
    if t.is_dir() {
        let mut names: Vec<_> = fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for n in names {
            snapshot_into(&n, skip, out);
        }
    }
}

/// Runs `body` in a thread with a private mount namespace and a fresh tmpfs holding the decoy.
fn in_sandbox(body: impl FnOnce(&Sandbox) + Send + 'static) {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    assert!(
        nix::unistd::geteuid().is_root(),
        "tests/rootfs_hostile.rs must run as root (tests/run.sh does): it mounts a tmpfs in a \
         private mount namespace"
    );
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path().to_path_buf();
    let result = std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNS)
            .unwrap_or_else(|e| panic!("unshare(CLONE_NEWNS) (needs CAP_SYS_ADMIN): {e}"));
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .unwrap_or_else(|e| panic!("making / private in the new mount namespace: {e}"));
        // Every other mount of this namespace becomes read-only, so a layer that escapes through
        // a path this test did not foresee (an absolute /etc) fails instead of changing the
        // machine. Mounts that refuse (locked ones) stay as they are; the decoy is checked anyway.
        for target in mount_points() {
            let _ = mount(
                None::<&str>,
                target.as_path(),
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
                None::<&str>,
            );
        }
        let probe = Path::new("/etc/.rcross-hostile-probe");
        if fs::create_dir(probe).is_ok() {
            let _ = fs::remove_dir(probe);
            panic!("/etc is still writable in the test's mount namespace");
        }
        mount(
            Some("tmpfs"),
            &top,
            Some("tmpfs"),
            MsFlags::MS_NOSUID,
            Some("size=64m,mode=0755"),
        )
        .unwrap_or_else(|e| panic!("mounting a tmpfs on {}: {e}", top.display()));
        // The thread has its own umask now (CLONE_NEWNS implies CLONE_FS): directory modes the
        // tests expect do not depend on the caller's.
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        let s = Sandbox { top };
        let d = s.decoy();
        fs::create_dir_all(d.join("ssl")).unwrap();
        fs::create_dir_all(d.join("keep")).unwrap();
        fs::create_dir_all(s.top.join("roots")).unwrap();
        fs::write(d.join("file"), "decoy secret\n").unwrap();
        fs::write(d.join("ssl/cert"), "decoy cert\n").unwrap();
        fs::write(d.join("keep/a"), "a\n").unwrap();
        fs::write(s.top.join("top"), "top\n").unwrap();
        fs::set_permissions(d.join("ssl/cert"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(d.join("keep"), fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("file", d.join("link")).unwrap();
        body(&s);
    })
    .join();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// The mount points of this thread's mount namespace.
fn mount_points() -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/thread-self/mountinfo")
        .unwrap_or_else(|e| panic!("reading /proc/thread-self/mountinfo: {e}"));
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .collect()
}

fn unpack_into(s: &Sandbox, root: &str, mem: &Mem, layers: &[Layer]) -> Result<Stats, String> {
    unpack(mem, layers, &s.root(root)).map_err(|e: RootfsError| e.to_string())
}

fn read(root: &Path, rel: &str) -> String {
    fs::read_to_string(root.join(rel))
        .unwrap_or_else(|e| panic!("{}: {e}", root.join(rel).display()))
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}

/// (a) A directory whose parent a later entry of the same layer replaced with a symlink out of
/// the root: the deferred directory-metadata pass must not follow it.
#[test]
fn a1_a_parent_replaced_by_a_symlink_in_the_same_layer() {
    in_sandbox(|s| {
        let decoy = s.decoy_str();
        let before = s.snapshot();
        let mut mem = Mem::default();
        let l = mem.layer(
            Tar::default()
                .dir("x/", 0o755)
                .dir("x/ssl/", 0o777)
                .file("x/ssl/cert", "layer cert")
                .dir("x/keep/", 0o777)
                .symlink("x", &decoy),
            TAR,
        );
        let r = unpack_into(s, "one", &mem, &[l]);
        s.assert_unchanged(&before, "x/, x/ssl/ 0777, then x -> decoy in one layer");
        r.unwrap();
        assert_eq!(fs::read_link(s.root("one").join("x")).unwrap(), s.decoy());
    });
}

/// (a) The same with the symlink in a later layer, through the cache.
#[test]
fn a2_a_parent_replaced_by_a_symlink_in_a_later_layer() {
    in_sandbox(|s| {
        let decoy = s.decoy_str();
        let before = s.snapshot();
        let mut mem = Mem::default();
        let lower = mem.layer(
            Tar::default()
                .dir("x/", 0o755)
                .dir("x/ssl/", 0o777)
                .dir("x/keep/", 0o777),
            GZIP,
        );
        let upper = mem.layer(Tar::default().symlink("x", &decoy), TAR);
        let manifest = format!("sha256:{}", "cd".repeat(32));
        let cached = unpack_cached(&mem, &manifest, &[lower, upper], &s.cache());
        s.assert_unchanged(&before, "x/, x/ssl/ 0777, then x -> decoy in a later layer");
        let cached = cached.unwrap();
        assert_eq!(fs::read_link(cached.root.join("x")).unwrap(), s.decoy());
    });
}

/// (a) Redirected inside the root: etc/ssl keeps its own mode, not the one x/ssl/ had.
#[test]
fn a3_a_parent_redirected_inside_the_root_keeps_the_other_directory_mode() {
    in_sandbox(|s| {
        let before = s.snapshot();
        let mut mem = Mem::default();
        let lower = mem.layer(
            Tar::default()
                .dir("etc/", 0o755)
                .dir("etc/ssl/", 0o750)
                .dir("x/", 0o755)
                .dir("x/ssl/", 0o777),
            TAR,
        );
        let upper = mem.layer(Tar::default().symlink("x", "etc"), TAR);
        unpack_into(s, "inside", &mem, &[lower, upper]).unwrap();
        s.assert_unchanged(&before, "x -> etc inside the root");
        assert_eq!(mode(&s.root("inside").join("etc/ssl")), 0o750);
    });
}

/// (a) The issue's own example, `x -> /etc`: the host's /etc is read-only in the test's mount
/// namespace, so an unpacker that followed the symlink would fail here instead of changing it.
#[test]
fn a4_a_parent_replaced_by_a_symlink_to_the_host_etc() {
    in_sandbox(|s| {
        let before = s.snapshot();
        let host = |p: &str| {
            let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{p}: {e}"));
            (
                m.mode(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            )
        };
        let etc = host("/etc");
        let mut mem = Mem::default();
        let l = mem.layer(
            Tar::default()
                .dir("x/", 0o755)
                .dir("x/ssl/", 0o777)
                .dir("x/init.d/", 0o777)
                .symlink("x", "/etc"),
            TAR,
        );
        let r = unpack_into(s, "etc", &mem, &[l]);
        s.assert_unchanged(&before, "x -> /etc");
        assert_eq!(host("/etc"), etc);
        r.unwrap();
        assert_eq!(
            fs::read_link(s.root("etc").join("x")).unwrap(),
            Path::new("/etc")
        );
    });
}

/// (b) Hard links to paths outside the root: refused, or resolved inside it.
#[test]
fn b_hard_links_never_reach_outside_the_root() {
    in_sandbox(|s| {
        let decoy = s.decoy_str();
        let before = s.snapshot();
        let cases: Vec<(&str, Tar, Option<&str>)> = vec![
            (
                "relative",
                Tar::default().hardlink("h", "../../decoy/file"),
                Some("'..'"),
            ),
            (
                "absolute",
                Tar::default().hardlink("h", &format!("{decoy}/file")),
                Some("does not exist"),
            ),
            (
                "through a symlinked parent",
                Tar::default().symlink("s", &decoy).hardlink("h", "s/file"),
                Some("does not exist"),
            ),
            (
                "through a climbing symlink",
                Tar::default()
                    .symlink("up", "../..")
                    .hardlink("h", "up/decoy/file"),
                Some("does not exist"),
            ),
            // A link to a symlink links the symlink itself, never what it points to.
            (
                "to a symlink",
                Tar::default()
                    .symlink("sf", &format!("{decoy}/file"))
                    .hardlink("h", "sf"),
                None,
            ),
        ];
        for (i, (case, tar, want)) in cases.into_iter().enumerate() {
            let mut mem = Mem::default();
            let l = mem.layer(tar, TAR);
            let r = unpack_into(s, &format!("b{i}"), &mem, &[l]);
            s.assert_unchanged(&before, case);
            match want {
                Some(want) => {
                    let e = r.err().unwrap_or_else(|| panic!("{case}: no error"));
                    assert!(e.contains(want) && e.contains("entry \"h\""), "{case}: {e}");
                }
                None => {
                    r.unwrap_or_else(|e| panic!("{case}: {e}"));
                    let h = s.root(&format!("b{i}")).join("h");
                    assert!(fs::symlink_metadata(&h).unwrap().file_type().is_symlink());
                }
            }
        }
        // A target reached through a symlinked parent inside the root is linked there.
        let mut mem = Mem::default();
        let l = mem.layer(
            Tar::default()
                .file("inner/f", "inside")
                .symlink("s", "/inner")
                .symlink("t", "../../../inner")
                .hardlink("h", "s/f")
                .hardlink("s/h2", "t/f"),
            TAR,
        );
        unpack_into(s, "inner", &mem, &[l]).unwrap();
        s.assert_unchanged(&before, "hard links through symlinks inside the root");
        let root = s.root("inner");
        assert_eq!(read(&root, "h"), "inside");
        assert_eq!(fs::metadata(root.join("inner/f")).unwrap().nlink(), 3);
        assert_eq!(read(&root, "inner/h2"), "inside");
    });
}

/// (c) A chain of symlinks that climbs: every write lands inside the root.
#[test]
fn c_a_climbing_symlink_chain_stays_inside_the_root() {
    in_sandbox(|s| {
        let before = s.snapshot();
        let mut mem = Mem::default();
        let lower = mem.layer(
            Tar::default()
                .symlink("a", "b")
                .symlink("b", "../..")
                .symlink("c", "/d")
                .symlink("d", "../../../decoy"),
            TAR,
        );
        let upper = mem.layer(
            Tar::default()
                .file("a/file", "x")
                .file("a/decoy/file", "overwritten")
                .dir("a/decoy/ssl/", 0o777)
                .file("c/ssl/cert", "overwritten")
                .dir("c/keep/", 0o777)
                .symlink("a/decoy/link", "/etc/passwd"),
            TAR,
        );
        unpack_into(s, "chain", &mem, &[lower, upper]).unwrap();
        s.assert_unchanged(&before, "a -> b -> ../..");
        let root = s.root("chain");
        assert_eq!(read(&root, "file"), "x", "`..` stops at the root");
        assert_eq!(read(&root, "decoy/file"), "overwritten");
        assert_eq!(read(&root, "decoy/ssl/cert"), "overwritten");
        assert_eq!(mode(&root.join("decoy/ssl")), 0o777);
        assert_eq!(mode(&root.join("decoy/keep")), 0o777);
    });
}

/// (d) A whiteout of `..` (and `.`) is refused; whiteouts and opaque markers under a symlinked
/// parent act inside the root.
#[test]
fn d_whiteouts_of_dot_dot_and_through_symlinks_stay_inside_the_root() {
    in_sandbox(|s| {
        let decoy = s.decoy_str();
        let inner = decoy.trim_start_matches('/').to_string();
        let before = s.snapshot();
        for (i, name) in [".wh...", "x/.wh...", ".wh..", "x/y/.wh..", "x/.wh...wh.."]
            .into_iter()
            .enumerate()
        {
            let mut mem = Mem::default();
            let lower = mem.layer(Tar::default().file("x/y/z", "z"), TAR);
            let upper = mem.layer(Tar::default().file(name, ""), TAR);
            let root = s.root(&format!("d{i}"));
            let r = unpack_into(s, &format!("d{i}"), &mem, &[lower, upper]);
            s.assert_unchanged(&before, name);
            if name.ends_with(".wh...wh..") {
                // `...wh..` is an ordinary name to whiteout: nothing to remove.
                r.unwrap();
            } else {
                let e = r.err().unwrap_or_else(|| panic!("{name}: no error"));
                assert!(e.contains("names no file"), "{name}: {e}");
            }
            assert_eq!(read(&root, "x/y/z"), "z", "{name}");
        }

        let mut mem = Mem::default();
        let lower = mem.layer(
            Tar::default()
                .symlink("w", &decoy)
                .symlink("v", "../../decoy")
                .file(&format!("{inner}/file"), "in root")
                .file(&format!("{inner}/keep/a"), "in root")
                .file(&format!("{inner}/ssl/cert"), "in root")
                .file("decoy/file", "in root")
                .file("decoy/ssl/cert", "in root"),
            TAR,
        );
        let upper = mem.layer(
            Tar::default()
                .file("w/.wh.file", "")
                .file("w/.wh.keep", "")
                .file("w/ssl/.wh..wh..opq", "")
                .file("v/.wh.file", "")
                .file("v/.wh.link", "")
                .file("v/ssl/.wh..wh..opq", "")
                .file("w/.wh.missing", "")
                .file(".wh.v", ""),
            TAR,
        );
        let stats = unpack_into(s, "wh", &mem, &[lower, upper]).unwrap();
        s.assert_unchanged(&before, "whiteouts through symlinked parents");
        let root = s.root("wh");
        for gone in [
            format!("{inner}/file"),
            format!("{inner}/keep"),
            format!("{inner}/ssl/cert"),
            "decoy/file".into(),
            "decoy/ssl/cert".into(),
            "v".into(),
        ] {
            assert!(
                fs::symlink_metadata(root.join(&gone)).is_err(),
                "{gone} was whited out"
            );
        }
        assert!(root.join(&inner).join("ssl").is_dir());
        assert!(fs::symlink_metadata(root.join("w")).unwrap().is_symlink());
        assert_eq!(stats.whiteouts, 8);
    });
}

/// (e) Device nodes are never created — not in the root, not through a symlink out of it.
#[test]
fn e_device_nodes_are_not_created() {
    in_sandbox(|s| {
        let decoy = s.decoy_str();
        let before = s.snapshot();
        let mut mem = Mem::default();
        let lower = mem.layer(
            Tar::default()
                .file("dev/sda", "a file the layer below had")
                .symlink("d", &decoy)
                .symlink("u", "../../decoy"),
            TAR,
        );
        let upper = mem.layer(
            Tar::default()
                .device("dev/sda", b'4', 8, 0)
                .device("dev/mem", b'3', 1, 1)
                .device("dev/fifo", b'6', 0, 0)
                .device("d/null", b'3', 1, 3)
                .device("d/file", b'3', 1, 1)
                .device("u/file", b'4', 8, 0)
                .device("u/ssl/cert", b'6', 0, 0),
            TAR,
        );
        let stats = unpack_into(s, "dev", &mem, &[lower, upper]).unwrap();
        s.assert_unchanged(&before, "device nodes");
        assert_eq!(stats.special_skipped, 7);
        let root = s.root("dev");
        assert!(
            fs::symlink_metadata(root.join("dev/sda")).is_err(),
            "the device entry replaces the lower file and is not created"
        );
        let mut specials = Vec::new();
        let mut todo = vec![root.clone()];
        while let Some(p) = todo.pop() {
            for e in fs::read_dir(&p).unwrap() {
                let e = e.unwrap();
                let t = e.file_type().unwrap();
                if t.is_dir() {
                    todo.push(e.path());
                } else if t.is_block_device() || t.is_char_device() || t.is_fifo() {
                    specials.push(e.path());
                }
            }
        }
        assert!(specials.is_empty(), "special files created: {specials:?}");
    });
}

/// (f) Files and directories under a symlinked directory land inside the root.
#[test]
fn f_files_under_a_symlinked_directory_land_inside_the_root() {
    in_sandbox(|s| {
        let decoy = s.decoy_str();
        let inner = decoy.trim_start_matches('/').to_string();
        let before = s.snapshot();
        let mut mem = Mem::default();
        let lower = mem.layer(
            Tar::default()
                .symlink("d", &decoy)
                .symlink("r", "../../decoy"),
            TAR,
        );
        let upper = mem.layer(
            Tar::default()
                .file("d/file", "pwned")
                .dir("d/ssl/", 0o777)
                .file("d/ssl/cert", "pwned")
                .dir("d/newdir/", 0o700)
                .file("d/link", "pwned")
                .hardlink("d/keep/a", "d/file")
                .file("r/file", "pwned too")
                .symlink("r/ssl", "/"),
            GZIP,
        );
        unpack_into(s, "sym", &mem, &[lower, upper]).unwrap();
        s.assert_unchanged(&before, "files under d -> decoy");
        let root = s.root("sym");
        assert_eq!(read(&root, &format!("{inner}/file")), "pwned");
        assert_eq!(read(&root, &format!("{inner}/keep/a")), "pwned");
        assert_eq!(read(&root, &format!("{inner}/ssl/cert")), "pwned");
        assert_eq!(mode(&root.join(&inner).join("ssl")), 0o777);
        assert_eq!(mode(&root.join(&inner).join("newdir")), 0o700);
        assert_eq!(read(&root, "decoy/file"), "pwned too");
        assert!(fs::symlink_metadata(root.join("decoy/ssl"))
            .unwrap()
            .is_symlink());
    });
}

/// A directory replaced by a later entry is gone for good: entries after it follow the new
/// symlink (inside the root), and the old directory's mode does not pass to a directory made
/// later at the same path.
#[test]
fn g_a_replaced_directory_is_not_used_again() {
    in_sandbox(|s| {
        let decoy = s.decoy_str();
        let inner = decoy.trim_start_matches('/').to_string();
        let before = s.snapshot();
        let mut mem = Mem::default();
        let lower = mem.layer(Tar::default().dir("old/", 0o700).file("old/f", "f"), TAR);
        let upper = mem.layer(
            Tar::default()
                .dir("d/", 0o755)
                .file("d/f1", "before")
                .symlink("d", &decoy)
                .file("d/file", "after")
                .dir("d/ssl/", 0o751)
                .file(".wh.old", "")
                .file("old/g", "g")
                .symlink("l", "one")
                .file("l/f1", "1")
                .symlink("l", &format!("{decoy}/keep"))
                .file("l/f2", "2")
                // s leads to n through the symlink n/c and back with `..`; replacing n/c
                // through s itself changes where s leads.
                .dir("n/q/", 0o755)
                .symlink("n/c", "q")
                .symlink("s", "n/c/..")
                .file("s/f1", "1")
                .symlink("s/c", "z/w")
                .file("s/f2", "2"),
            TAR,
        );
        unpack_into(s, "again", &mem, &[lower, upper]).unwrap();
        s.assert_unchanged(&before, "d/ then d -> decoy in one layer");
        let root = s.root("again");
        assert!(fs::symlink_metadata(root.join("d")).unwrap().is_symlink());
        assert_eq!(read(&root, &format!("{inner}/file")), "after");
        assert_eq!(mode(&root.join(&inner).join("ssl")), 0o751);
        assert!(fs::symlink_metadata(root.join(&inner).join("f1")).is_err());
        assert_eq!(read(&root, "old/g"), "g");
        assert!(fs::symlink_metadata(root.join("old/f")).is_err());
        assert_eq!(read(&root, "one/f1"), "1");
        assert_eq!(
            read(&root, &format!("{inner}/keep/f2")),
            "2",
            "the new l is followed"
        );
        assert!(fs::symlink_metadata(root.join("one/f2")).is_err());
        assert_eq!(read(&root, "n/f1"), "1");
        assert_eq!(read(&root, "n/z/f2"), "2", "s now leads to n/z");
        assert!(fs::symlink_metadata(root.join("n/f2")).is_err());
        assert_eq!(
            mode(&root.join("old")),
            0o755,
            "a directory made for old/g, not the whited-out old/ with mode 0700"
        );
    });
}
