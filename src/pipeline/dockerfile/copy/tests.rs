use super::*;
use std::os::unix::fs::{symlink, PermissionsExt as _};

/// Image ids as stored in a job's range (here: shifted by 100000, as a `JobIds::Range` does).
fn to_host(uid: u32, gid: u32) -> (u32, u32) {
    (uid + 100_000, gid + 100_000)
}

fn from_host(uid: u32, gid: u32) -> (u32, u32) {
    (uid.saturating_sub(100_000), gid.saturating_sub(100_000))
}

fn identity(uid: u32, gid: u32) -> (u32, u32) {
    (uid, gid)
}

fn write(path: &Path, text: &str, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn sources(list: &[&str]) -> Vec<CopySource> {
    list.iter()
        .map(|s| CopySource::Path(s.to_string()))
        .collect()
}

struct Fixture {
    context: tempfile::TempDir,
    root: tempfile::TempDir,
    ignore: DockerIgnore,
}

impl Fixture {
    fn new() -> Fixture {
        let context = tempfile::tempdir().unwrap();
        let c = context.path();
        write(&c.join("a.txt"), "a", 0o640);
        write(&c.join("b.txt"), "b", 0o755);
        write(&c.join("dir/x"), "x", 0o600);
        write(&c.join("dir/sub/y"), "y", 0o644);
        symlink("x", c.join("dir/link")).unwrap();
        symlink("dir", c.join("dirlink")).unwrap();
        Fixture {
            context,
            root: tempfile::tempdir().unwrap(),
            ignore: DockerIgnore::default(),
        }
    }

    fn copy(&self, srcs: &[CopySource], dest: &str) -> Result<CopyStats, CopyError> {
        self.copy_with(srcs, dest, None, None, false)
    }

    fn spec<'a>(
        &'a self,
        srcs: &'a [CopySource],
        dest: &'a str,
        chown: Option<(u32, u32)>,
        chmod: Option<u32>,
        add: bool,
    ) -> CopySpec<'a> {
        CopySpec {
            sources: srcs,
            dest,
            workdir: "/work",
            from: CopyFrom::Context {
                dir: self.context.path(),
                ignore: &self.ignore,
            },
            add,
            chown,
            chmod,
            to_host_ids: &to_host,
            from_host_ids: &identity,
        }
    }

    fn copy_with(
        &self,
        srcs: &[CopySource],
        dest: &str,
        chown: Option<(u32, u32)>,
        chmod: Option<u32>,
        add: bool,
    ) -> Result<CopyStats, CopyError> {
        copy_into(self.root.path(), &self.spec(srcs, dest, chown, chmod, add))
    }

    fn meta(&self, rel: &str) -> Metadata {
        fs::symlink_metadata(self.root.path().join(rel)).unwrap()
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.root.path().join(rel)).unwrap()
    }
}

#[test]
fn files_directories_and_the_destination_rules() {
    let f = Fixture::new();
    // A file onto a name: it takes that name; relative to the working directory.
    f.copy(&sources(&["a.txt"]), "renamed").unwrap();
    assert_eq!(f.read("work/renamed"), "a");
    assert_eq!(f.meta("work/renamed").mode() & 0o7777, 0o640);
    // Context files are root's (in the job's host ids); created parents too, mode 0755.
    assert_eq!(
        (f.meta("work/renamed").uid(), f.meta("work").gid()),
        (100_000, 100_000)
    );
    assert_eq!(f.meta("work").mode() & 0o7777, 0o755);
    // A directory's contents merge into the destination; symlinks inside stay symlinks.
    write(&f.root.path().join("opt/keep"), "k", 0o644);
    f.copy(&sources(&["dir/"]), "/opt").unwrap();
    assert_eq!(f.read("opt/keep"), "k");
    assert_eq!(f.read("opt/x"), "x");
    assert_eq!(f.read("opt/sub/y"), "y");
    assert_eq!(
        fs::read_link(f.root.path().join("opt/link")).unwrap(),
        Path::new("x")
    );
    // A source that is a symlink is followed (fsutil FollowLinks): the directory's contents.
    f.copy(&sources(&["dirlink"]), "/via/").unwrap();
    assert_eq!(f.read("via/x"), "x");
    assert!(!f.root.path().join("via/dirlink").exists());
    // `..` and a leading `/` cannot leave the context.
    f.copy(&sources(&["../../a.txt"]), "/up/").unwrap();
    assert_eq!(f.read("up/a.txt"), "a");
    // A file onto an existing directory goes inside it.
    f.copy(&sources(&["/b.txt"]), "/opt").unwrap();
    assert_eq!(f.read("opt/b.txt"), "b");
    // The copied file keeps its mtime.
    let src = fs::metadata(f.context.path().join("b.txt")).unwrap();
    assert_eq!(f.meta("opt/b.txt").mtime(), src.mtime());
}

// convert_copy.go:283 (`AllowEmptyWildcard: true`) and BuildKit's testEmptyWildcard: a
// wildcard that matches nothing is not an error; a plain missing path is.
#[test]
fn wildcards_and_missing_sources() {
    let f = Fixture::new();
    let stats = f.copy(&sources(&["*.txt", "nomatch*"]), "/w/").unwrap();
    assert_eq!(stats.files, 2);
    assert_eq!(
        (f.read("w/a.txt"), f.read("w/b.txt")),
        ("a".into(), "b".into())
    );
    // A matched directory copies its contents; `*` does not cross `/`.
    f.copy(&sources(&["d?r/s*"]), "/s/").unwrap();
    assert_eq!(f.read("s/y"), "y");
    let e = f.copy(&sources(&["missing.txt"]), "/m/").unwrap_err();
    assert!(e.to_string().contains("\"missing.txt\" not found"), "{e}");
    // Several sources, or a wildcard, need a directory destination.
    let e = f
        .copy(&sources(&["a.txt", "b.txt"]), "/single")
        .unwrap_err();
    assert!(e.to_string().contains("COPY a.txt b.txt /single"), "{e}");
    assert!(f.copy(&sources(&["*.txt"]), "/single").is_err());
    assert!(matches!(f.copy(&[], "/x/"), Err(CopyError::NoSources)));
}

#[test]
fn dockerignore_hides_paths_and_names_the_pattern() {
    let mut f = Fixture::new();
    f.ignore = DockerIgnore::parse("*.txt\n!b.txt\ndir/sub\n").unwrap();
    let e = f.copy(&sources(&["a.txt"]), "/i/").unwrap_err().to_string();
    assert!(
        e.contains("excluded by .dockerignore") && e.contains("*.txt"),
        "{e}"
    );
    f.copy(&sources(&["*.txt", "dir"]), "/i/").unwrap();
    assert!(f.root.path().join("i/b.txt").exists());
    assert!(!f.root.path().join("i/a.txt").exists());
    assert!(f.root.path().join("i/x").exists());
    assert!(!f.root.path().join("i/sub").exists());
    // An excluded directory holds only what an exception takes back.
    f.ignore = DockerIgnore::parse("dir\n!dir/sub/y\n").unwrap();
    f.copy(&sources(&["dir"]), "/j/").unwrap();
    assert!(f.root.path().join("j/sub/y").exists());
    assert!(!f.root.path().join("j/x").exists());
}

// fsutil copy/copy.go `Copy`: created parents take `*ci.Mode` when --chmod is given
// (`perm = *ci.Mode`), and mkdir.go `MkdirAll` chowns them to the --chown user; copy_unix.go
// `copyFileInfo` applies the chmod to files and directories alike.
#[test]
fn chown_and_chmod_reach_files_directories_and_created_parents() {
    let f = Fixture::new();
    f.copy_with(
        &sources(&["dir"]),
        "/p/q/",
        Some((5, 6)),
        Some(0o4750),
        false,
    )
    .unwrap();
    for rel in ["p", "p/q", "p/q/x", "p/q/sub"] {
        let m = f.meta(rel);
        assert_eq!((m.uid(), m.gid()), (100_005, 100_006), "{rel}");
        assert_eq!(m.mode() & 0o7777, 0o4750, "{rel}");
    }
    // Symlinks keep their (fixed) mode but take the owner.
    assert_eq!(f.meta("p/q/link").uid(), 100_005);
}

// convert_copy.go: a heredoc is `llb.Mkfile(f, 0644, data)` copied like a file source.
#[test]
fn heredocs_are_files_of_mode_0644() {
    let f = Fixture::new();
    let srcs = vec![CopySource::Heredoc {
        name: "hello.sh".into(),
        content: "echo hi\n".into(),
    }];
    f.copy(&srcs, "/bin/").unwrap();
    assert_eq!(f.read("bin/hello.sh"), "echo hi\n");
    assert_eq!(f.meta("bin/hello.sh").mode() & 0o7777, 0o644);
    f.copy_with(&srcs, "/named", None, Some(0o755), false)
        .unwrap();
    assert_eq!(f.meta("named").mode() & 0o7777, 0o755);
}

#[test]
fn symlinks_in_the_destination_stay_inside_the_root() {
    let f = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    // An absolute symlink to a host directory, and a relative one climbing out.
    symlink(outside.path(), f.root.path().join("abs")).unwrap();
    symlink("../../../../../../", f.root.path().join("rel")).unwrap();
    f.copy(&sources(&["a.txt"]), "/abs/").unwrap();
    f.copy(&sources(&["b.txt"]), "/rel/deep/").unwrap();
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    // The absolute target starts again at the root.
    let inside = f
        .root
        .path()
        .join(outside.path().strip_prefix("/").unwrap())
        .join("a.txt");
    assert_eq!(fs::read_to_string(inside).unwrap(), "a");
    assert_eq!(f.read("deep/b.txt"), "b");
}

#[test]
fn conflicts_between_files_and_directories_are_errors() {
    let f = Fixture::new();
    write(&f.root.path().join("file"), "f", 0o644);
    let e = f.copy(&sources(&["dir"]), "/file").unwrap_err().to_string();
    assert!(e.contains("non-directory"), "{e}");
    fs::create_dir_all(f.root.path().join("t/x")).unwrap();
    let e = f.copy(&sources(&["dir"]), "/t").unwrap_err().to_string();
    assert!(e.contains("cannot replace the directory"), "{e}");
}

#[test]
fn from_a_root_owners_are_mapped_through_image_ids() {
    let f = Fixture::new();
    let other = tempfile::tempdir().unwrap();
    write(&other.path().join("bin/tool"), "t", 0o755);
    std::os::unix::fs::lchown(other.path().join("bin/tool"), Some(100_042), Some(100_043)).unwrap();
    let srcs = sources(&["/bin/tool"]);
    let spec = CopySpec {
        sources: &srcs,
        dest: "/usr/bin/",
        workdir: "/",
        from: CopyFrom::Root(other.path()),
        add: false,
        chown: None,
        chmod: None,
        to_host_ids: &to_host,
        from_host_ids: &from_host,
    };
    copy_into(f.root.path(), &spec).unwrap();
    let m = f.meta("usr/bin/tool");
    assert_eq!((m.uid(), m.gid()), (100_042, 100_043));
    let chowned = CopySpec {
        chown: Some((1, 2)),
        ..spec
    };
    copy_into(f.root.path(), &chowned).unwrap();
    assert_eq!(f.meta("usr/bin/tool").uid(), 100_001);
}

fn tar_gz(entries: &[(&str, &[u8], u32, u64)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data, mode, uid) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(*mode);
        header.set_uid(*uid);
        header.set_gid(*uid);
        header.set_entry_type(tar::EntryType::Regular);
        // Written raw, so hostile names reach the unpacker as they are.
        let name = header.as_old_mut();
        name.name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

// solver/llbsolver/file/unpack.go: ADD extracts a local archive (detected by content) into
// the destination as a directory, owners from the archive unless --chown.
#[test]
fn add_extracts_archives_by_content_and_refuses_hostile_ones() {
    let f = Fixture::new();
    let archive = tar_gz(&[("pkg/bin/app", b"app", 0o755, 7)]);
    fs::write(f.context.path().join("app.data"), &archive).unwrap();
    let stats = f
        .copy_with(&sources(&["app.data"]), "/opt/app", None, None, true)
        .unwrap();
    assert_eq!(stats.archives, 1);
    assert_eq!(f.read("opt/app/pkg/bin/app"), "app");
    assert_eq!(f.meta("opt/app/pkg/bin/app").uid(), 100_007);
    // COPY does not extract.
    f.copy(&sources(&["app.data"]), "/c/").unwrap();
    assert_eq!(fs::read(f.root.path().join("c/app.data")).unwrap(), archive);
    // A gzip file that is not a tar is copied as it is.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"not a tar").unwrap();
    fs::write(f.context.path().join("plain.gz"), gz.finish().unwrap()).unwrap();
    f.copy_with(&sources(&["plain.gz"]), "/g/", None, None, true)
        .unwrap();
    assert!(f.root.path().join("g/plain.gz").is_file());
    // `..` in an archive is refused, and nothing lands outside.
    fs::write(
        f.context.path().join("evil.tgz"),
        tar_gz(&[("../../escape", b"x", 0o644, 0)]),
    )
    .unwrap();
    let e = f
        .copy_with(&sources(&["evil.tgz"]), "/e/", None, None, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("evil.tgz") && e.contains(".."), "{e}");
    assert!(!f.root.path().join("escape").exists());
    // bzip2 and xz are named.
    fs::write(f.context.path().join("x.tbz"), b"BZh91AY&SY").unwrap();
    let e = f
        .copy_with(&sources(&["x.tbz"]), "/b/", None, None, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bzip2"), "{e}");
}

#[test]
fn source_digest_follows_content_mode_and_options() {
    let f = Fixture::new();
    let srcs = sources(&["dir", "a.txt"]);
    let digest = |chmod| source_digest(&f.spec(&srcs, "/d/", None, chmod, false)).unwrap();
    let first = digest(None);
    assert_eq!(first, digest(None));
    assert_ne!(first, digest(Some(0o700)));
    write(&f.context.path().join("dir/sub/y"), "Y", 0o644);
    assert_ne!(first, digest(None));
    let before = digest(None);
    fs::remove_file(f.context.path().join("dir/link")).unwrap();
    symlink("elsewhere", f.context.path().join("dir/link")).unwrap();
    assert_ne!(before, digest(None));
    // Nothing was written.
    assert_eq!(fs::read_dir(f.root.path()).unwrap().count(), 0);
}

#[test]
fn chmod_values_are_octal() {
    assert_eq!(parse_chmod("755").unwrap(), 0o755);
    assert_eq!(parse_chmod("04755").unwrap(), 0o4755);
    assert!(parse_chmod("10000").is_err());
    assert!(parse_chmod("u+x").unwrap_err().to_string().contains("u+x"));
}
