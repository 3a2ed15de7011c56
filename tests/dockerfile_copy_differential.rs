//! COPY and ADD against Docker's classic builder: each case below builds `FROM scratch` plus
//! COPY/ADD lines with Debian's docker 20.10 (`DOCKER_BUILDKIT=0 /usr/bin/docker build`), reads
//! the merged file tree of the saved image (paths, types, modes, owners, link targets, contents;
//! timestamps aside), and compares it with what `copy_into` makes of the same lines on an empty
//! root with identity id maps.
//!
//! Where BuildKit and the classic builder differ, rcross follows BuildKit and the cases avoid
//! the difference (pinned by unit tests in src/pipeline/dockerfile/copy/tests.rs instead): the
//! classic builder gives a destination directory it creates for a directory source that
//! directory's mode (BuildKit: 0755), so the context's directories here are 0755 at the top;
//! it has no `--chmod`; and it refuses a wildcard that matches nothing.

mod prereq;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Command;

use rcross::dockerfile::CopySource;
use rcross::pipeline::dockerfile::copy::{copy_into, CopyFrom, CopySpec};
use rcross::pipeline::dockerfile::ignore::DockerIgnore;

const DOCKER: &str = "/usr/bin/docker";

/// One COPY or ADD line.
struct Line {
    add: bool,
    chown: Option<(&'static str, (u32, u32))>,
    sources: &'static [&'static str],
    dest: &'static str,
}

const fn copy(sources: &'static [&'static str], dest: &'static str) -> Line {
    Line {
        add: false,
        chown: None,
        sources,
        dest,
    }
}

struct Case {
    name: &'static str,
    dockerignore: Option<&'static str>,
    lines: &'static [Line],
}

const CASES: &[Case] = &[
    Case {
        name: "nested directories, a directory merged into an existing one, renames",
        dockerignore: None,
        lines: &[
            copy(&["dir"], "/opt/"),
            copy(&["a.txt"], "/opt/renamed"),
            copy(&["dir/sub"], "/opt/sub"),
            copy(&["b.sh"], "/bin/"),
            copy(&["a.txt"], "relative.txt"),
            copy(&["a.txt", "b.sh"], "/two/"),
            copy(&["dirlink"], "/via-link/"),
            copy(&["dir/"], "/trailing"),
        ],
    },
    Case {
        name: "wildcards",
        dockerignore: None,
        lines: &[
            copy(&["*.txt"], "/w/"),
            copy(&["d?r/s*"], "/s/"),
            copy(&["[ab].*"], "/cls/"),
            copy(&["dir/[lx]*"], "/star/"),
        ],
    },
    Case {
        name: ".dockerignore with exceptions and **",
        dockerignore: Some("# logs\n**/*.log\n!keep/**/*.log\nsecret\n/dir/sub/\n"),
        lines: &[copy(&["."], "/ctx/")],
    },
    Case {
        name: "--chown with numeric ids",
        dockerignore: None,
        lines: &[
            Line {
                add: false,
                chown: Some(("1000:1001", (1000, 1001))),
                sources: &["dir"],
                dest: "/own/",
            },
            Line {
                add: false,
                chown: Some(("42", (42, 42))),
                sources: &["a.txt"],
                dest: "/own2/deep/",
            },
        ],
    },
    Case {
        name: "ADD of a tar.gz and of a plain file",
        dockerignore: None,
        lines: &[
            Line {
                add: true,
                chown: None,
                sources: &["app.tar.gz"],
                dest: "/opt/app/",
            },
            Line {
                add: true,
                chown: None,
                sources: &["a.txt"],
                dest: "/plain/",
            },
        ],
    },
];

fn write(path: &Path, text: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn app_archive() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, uid: u64, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).unwrap();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        builder.append(&h, data).unwrap();
    };
    add("pkg/", tar::EntryType::Directory, 0o750, 0, b"");
    add(
        "pkg/bin/app",
        tar::EntryType::Regular,
        0o755,
        1000,
        b"#!/bin/sh\n",
    );
    add("pkg/etc/conf", tar::EntryType::Regular, 0o600, 7, b"conf");
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// The context every case builds from.
fn make_context(dir: &Path, dockerignore: Option<&str>) {
    write(&dir.join("a.txt"), b"a", 0o644);
    write(&dir.join("b.sh"), b"#!/bin/sh\n", 0o755);
    write(&dir.join("dir/x"), b"x", 0o600);
    write(&dir.join("dir/sub/y"), b"y", 0o640);
    write(&dir.join("dir/sub/deeper/z"), b"z", 0o444);
    fs::set_permissions(dir.join("dir/sub"), fs::Permissions::from_mode(0o700)).unwrap();
    symlink("x", dir.join("dir/link")).unwrap();
    symlink("/etc/absolute", dir.join("dir/abs")).unwrap();
    symlink("dir", dir.join("dirlink")).unwrap();
    write(&dir.join("a.log"), b"log", 0o644);
    write(&dir.join("logs/b.log"), b"log", 0o644);
    write(&dir.join("keep/c.log"), b"keep", 0o644);
    write(&dir.join("keep/deep/d.log"), b"keep", 0o644);
    write(&dir.join("secret/s"), b"s", 0o644);
    write(&dir.join("app.tar.gz"), &app_archive(), 0o644);
    if let Some(text) = dockerignore {
        write(&dir.join(".dockerignore"), text.as_bytes(), 0o644);
    }
}

/// What the comparison looks at for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u64,
    gid: u64,
    link: String,
    content: Vec<u8>,
}

fn dockerfile(case: &Case) -> String {
    let mut text = String::from("FROM scratch\n");
    for line in case.lines {
        text.push_str(if line.add { "ADD" } else { "COPY" });
        if let Some((spec, _)) = line.chown {
            text.push_str(&format!(" --chown={spec}"));
        }
        for s in line.sources {
            text.push_str(&format!(" {s}"));
        }
        text.push_str(&format!(" {}\n", line.dest));
    }
    text
}

/// The merged tree of a `docker save` archive's layers.
fn saved_tree(archive: &Path) -> BTreeMap<String, Node> {
    let unpacked = tempfile::tempdir().unwrap();
    tar::Archive::new(fs::File::open(archive).unwrap())
        .unpack(unpacked.path())
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(unpacked.path().join("manifest.json")).unwrap()).unwrap();
    let mut tree = BTreeMap::new();
    for layer in manifest[0]["Layers"].as_array().unwrap() {
        let path = unpacked.path().join(layer.as_str().unwrap());
        let mut reader = tar::Archive::new(fs::File::open(path).unwrap());
        for entry in reader.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let name = name
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string();
            if name.is_empty() || name == "." {
                continue;
            }
            let h = entry.header().clone();
            let (kind, link) = match h.entry_type() {
                tar::EntryType::Directory => ("dir", String::new()),
                tar::EntryType::Symlink => (
                    "symlink",
                    h.link_name()
                        .unwrap()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                ),
                tar::EntryType::Link => {
                    let target = h
                        .link_name()
                        .unwrap()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    let node: Node = tree.get(target.trim_end_matches('/')).cloned().unwrap();
                    tree.insert(name, node);
                    continue;
                }
                _ => ("file", String::new()),
            };
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            tree.insert(
                name,
                Node {
                    kind,
                    mode: h.mode().unwrap() & 0o7777,
                    uid: h.uid().unwrap(),
                    gid: h.gid().unwrap(),
                    link,
                    content,
                },
            );
        }
    }
    tree
}

/// The tree under `root`.
fn disk_tree(root: &Path) -> BTreeMap<String, Node> {
    fn walk(root: &Path, rel: &str, out: &mut BTreeMap<String, Node>) {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let path = root.join(&child);
            let m = fs::symlink_metadata(&path).unwrap();
            let (kind, link, content) = if m.is_dir() {
                ("dir", String::new(), Vec::new())
            } else if m.file_type().is_symlink() {
                let target = fs::read_link(&path).unwrap();
                ("symlink", target.to_string_lossy().into_owned(), Vec::new())
            } else {
                ("file", String::new(), fs::read(&path).unwrap())
            };
            out.insert(
                child.clone(),
                Node {
                    kind,
                    // The mode of a symlink is not the comparison's business (always 0777).
                    mode: if kind == "symlink" {
                        0o777
                    } else {
                        m.mode() & 0o7777
                    },
                    uid: u64::from(m.uid()),
                    gid: u64::from(m.gid()),
                    link,
                    content,
                },
            );
            if kind == "dir" {
                walk(root, &child, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, "", &mut out);
    out
}

fn rcross_tree(case: &Case, context: &Path) -> BTreeMap<String, Node> {
    let root = tempfile::tempdir().unwrap();
    let ignore = DockerIgnore::load(context, &context.join("Dockerfile")).unwrap();
    let identity = |u: u32, g: u32| (u, g);
    for line in case.lines {
        let sources: Vec<CopySource> = line
            .sources
            .iter()
            .map(|s| CopySource::Path(s.to_string()))
            .collect();
        let spec = CopySpec {
            sources: &sources,
            dest: line.dest,
            workdir: "/",
            from: CopyFrom::Context {
                dir: context,
                ignore: &ignore,
            },
            add: line.add,
            chown: line.chown.map(|(_, ids)| ids),
            chmod: None,
            to_host_ids: &identity,
            from_host_ids: &identity,
        };
        copy_into(root.path(), &spec)
            .unwrap_or_else(|e| panic!("{}: copy_into failed: {e}", case.name));
    }
    disk_tree(root.path())
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new(DOCKER)
        .args(args)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap()
}

#[test]
fn copy_into_matches_the_classic_builder() {
    if !Path::new(DOCKER).exists() {
        return prereq::missing(
            "Debian's docker 20.10 CLI at /usr/bin/docker",
            "apt-get install -y docker.io",
        )
        .unwrap_or(());
    }
    if !docker(&["info"]).status.success() {
        return prereq::missing(
            "a Docker engine (docker info fails)",
            "bash tests/run.sh starts dockerd; or `dockerd &`",
        )
        .unwrap_or(());
    }
    if !nix::unistd::geteuid().is_root() {
        return prereq::missing("root (owners are compared)", "run the test as root").unwrap_or(());
    }
    let mut cases = prereq::Cases::new("COPY/ADD differential cases");
    let mut failures = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().join("ctx");
        fs::create_dir(&context).unwrap();
        make_context(&context, case.dockerignore);
        write(
            &context.join("Dockerfile"),
            dockerfile(case).as_bytes(),
            0o644,
        );
        let tag = format!("rcross-test/copy-diff:{i}");
        let built = docker(&["build", "-q", "-t", &tag, context.to_str().unwrap()]);
        assert!(
            built.status.success(),
            "{}: docker build failed: {}",
            case.name,
            String::from_utf8_lossy(&built.stderr)
        );
        let saved = dir.path().join("image.tar");
        let out = docker(&["save", "-o", saved.to_str().unwrap(), &tag]);
        assert!(out.status.success(), "docker save: {:?}", out);
        let _ = docker(&["rmi", "-f", &tag]);
        let mut want = saved_tree(&saved);
        for node in want.values_mut() {
            if node.kind == "symlink" {
                node.mode = 0o777;
            }
        }
        let got = rcross_tree(case, &context);
        if want != got {
            let mut diff = String::new();
            for key in want
                .keys()
                .chain(got.keys())
                .collect::<std::collections::BTreeSet<_>>()
            {
                if want.get(key) != got.get(key) {
                    diff.push_str(&format!(
                        "  {key}:\n    docker: {:?}\n    rcross: {:?}\n",
                        want.get(key),
                        got.get(key)
                    ));
                }
            }
            failures.push(format!("{}:\n{diff}", case.name));
        }
        cases.ran();
    }
    cases.finish();
    assert!(
        failures.is_empty(),
        "trees differ:\n{}",
        failures.join("\n")
    );
}
