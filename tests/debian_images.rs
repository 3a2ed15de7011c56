//! The Debian base images the Dockerfile tests build from (tests/common_debian): built with
//! mmdebstrap (cached outside the clone), pushed by skopeo to a real registry, and checked with
//! tools other than rcross — skopeo for the index, python's tarfile for each root filesystem —
//! then read by rcross as `debian:bookworm` through the registries file's mirror.

mod common_debian;
mod common_registry;
mod host_binfmt;
mod prereq;

use std::process::Command;

use common_debian::{debian_images, DEBIAN_ARCHES};
use common_registry::{platforms_of, rcross, skopeo_raw, RealRegistry};
use rcross::image::{resolve, ResolveLimits};
use rcross::platform::Platform;
use rcross::registry::{open_image, Client, Mirrors, REGISTRIES_CONFIG_ENV};

/// Follows `path` inside a tarball's entries (symlinks resolved within the root) and prints
/// what it ends at: the entry type and, for a regular file, its ELF machine number (0 if none).
const TAR_CHECK: &str = r#"
import gzip, json, posixpath, sys, tarfile
entries = {}
with tarfile.open(fileobj=gzip.open(sys.argv[1]), mode="r|") as t:
    for m in t:
        name = posixpath.normpath("/" + m.name)
        head = t.extractfile(m).read(20) if m.isfile() else b""
        entries[name] = (m, head)
def resolve(path, depth=0):
    parts, done = [p for p in path.split("/") if p], "/"
    for i, part in enumerate(parts):
        here = posixpath.join(done, part)
        m = entries.get(here)
        if m is None:
            return None
        if m[0].issym() and depth < 40:
            target = m[0].linkname
            base = "/" if target.startswith("/") else done
            return resolve(posixpath.normpath(posixpath.join(base, target, *parts[i + 1:])), depth + 1)
        if m[0].islnk():
            return resolve(posixpath.normpath("/" + m[0].linkname) + "/" + "/".join(parts[i + 1:]), depth + 1)
        done = here
    return entries.get(posixpath.normpath(done))
out = {}
for path in sys.argv[2:]:
    m = resolve(path)
    if m is None:
        out[path] = None
    else:
        head = m[1]
        machine = int.from_bytes(head[18:20], "little") if head[:4] == b"\x7fELF" else 0
        out[path] = {"file": m[0].isfile(), "dir": m[0].isdir(), "machine": machine}
out["/dev entries"] = sorted(n for n in entries if n.startswith("/dev/"))
print(json.dumps(out))
"#;

fn elf_machine(debian_arch: &str) -> u64 {
    match debian_arch {
        "amd64" => 62,
        "arm64" => 183,
        "armhf" => 40,
        other => panic!("no ELF machine for {other}"),
    }
}

#[test]
fn debian_bookworm_for_three_platforms() {
    let Some(registry) = RealRegistry::start() else {
        return;
    };
    let Some(images) = debian_images(&registry.addr) else {
        return;
    };

    // The index, as skopeo reads it: three platforms, under both tags.
    let index = skopeo_raw(&format!("docker://{}", images.bookworm));
    assert_eq!(
        platforms_of(&index),
        ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]
    );
    let slim = skopeo_raw(&format!("docker://{}", images.bookworm_slim));
    assert_eq!(slim, index);

    for platform in &images.platforms {
        let arch = platform.arch;
        let manifest = skopeo_raw(&format!(
            "docker://{}/library/debian@{}",
            registry.addr, platform.manifest
        ));
        assert_eq!(
            manifest["layers"][0]["digest"], platform.layer,
            "{}",
            arch.debian
        );
        let config = Command::new("skopeo")
            .args(["inspect", "--config", "--tls-verify=false"])
            .arg(format!(
                "docker://{}/library/debian@{}",
                registry.addr, platform.manifest
            ))
            .output()
            .unwrap();
        assert!(config.status.success(), "{config:?}");
        let config: serde_json::Value = serde_json::from_slice(&config.stdout).unwrap();
        assert_eq!(config["os"], "linux");
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["bash"]));
        assert!(config["config"]["Env"][0]
            .as_str()
            .is_some_and(|e| e.starts_with("PATH=/usr/local/sbin:")));

        // The root filesystem the registry serves: a shell, users, apt-get for its own
        // architecture, and an empty /dev.
        let out = Command::new("python3")
            .args(["-c", TAR_CHECK])
            .arg(images.layer_blob(platform))
            .args([
                "/bin/sh",
                "/etc/passwd",
                "/usr/bin/apt-get",
                "/bin/bash",
                "/tmp",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for path in ["/bin/sh", "/etc/passwd", "/usr/bin/apt-get", "/bin/bash"] {
            assert_eq!(found[path]["file"], true, "{} {path}: {found}", arch.debian);
        }
        assert_eq!(found["/tmp"]["dir"], true, "{found}");
        assert_eq!(
            found["/usr/bin/apt-get"]["machine"],
            elf_machine(arch.debian),
            "{}: apt-get is for another machine: {found}",
            arch.debian
        );
        assert_eq!(found["/dev entries"], serde_json::json!([]), "{found}");
        assert!(platform.tarball.is_file(), "{}", platform.tarball.display());
    }

    // rcross reads `debian:bookworm` from this registry as Docker Hub's mirror, every platform.
    let dir = tempfile::tempdir().unwrap();
    let mirrors = Mirrors::from_file(&images.registries_config(dir.path())).unwrap();
    let opened = open_image(
        &Client::anonymous(),
        &"debian:bookworm".parse().unwrap(),
        &mirrors,
    )
    .unwrap();
    assert_eq!(opened.served_by.reference.registry, registry.addr);
    let resolved = resolve(&opened.image, ResolveLimits::default()).unwrap();
    assert_eq!(resolved.root.digest, images.index);
    for arch in &DEBIAN_ARCHES {
        let platform: Platform = arch.platform.parse().unwrap();
        let found: Vec<&str> = resolved
            .for_platform(platform)
            .map(|image| image.digest())
            .collect();
        let expected = images
            .platforms
            .iter()
            .find(|p| p.arch.debian == arch.debian)
            .map(|p| p.manifest.as_str());
        assert_eq!(
            found,
            expected.into_iter().collect::<Vec<_>>(),
            "{}",
            arch.platform
        );
    }
}

/// `rcross build` of an rcross.toml whose base is `debian:bookworm-slim`: with the registries
/// file naming the test registry as Docker Hub's mirror, the base is read from there (Docker
/// Hub is never asked), each platform's image starts with that platform's Debian layer, and a
/// push to the same registry mounts the base layers from where they were read.
#[test]
fn rcross_build_reads_a_short_named_base_through_the_mirror() {
    let Some(registry) = RealRegistry::start() else {
        return;
    };
    let Some(images) = debian_images(&registry.addr) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("app");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("rcross.toml"),
        r#"[image]
name = "app"
platforms = ["linux/amd64", "linux/arm64", "linux/arm/v7"]
base = "debian:bookworm-slim"
[build]
command = 'echo "app for $RCROSS_PLATFORM" > "$RCROSS_OUT/app.txt"'
lang = "c"
[[artifact]]
from = "app.txt"
to = "/etc/app.txt"
mode = "0644"
"#,
    )
    .unwrap();
    let config = images.registries_config(tmp.path());
    let tag = format!("{}/app:1", registry.addr);
    let out = rcross(
        &[
            "--json",
            "build",
            project.to_str().unwrap(),
            "-t",
            &tag,
            "--push",
        ],
        &[(REGISTRIES_CONFIG_ENV, config.to_str().unwrap())],
    );
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["pushed"][0]["blobs_mounted"], 3,
        "the three Debian layers are mounted from library/debian: {report}"
    );
    let index = skopeo_raw(&format!("docker://{tag}"));
    assert_eq!(
        platforms_of(&index),
        ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]
    );
    for (entry, platform) in index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&images.platforms)
    {
        let manifest = skopeo_raw(&format!(
            "docker://{}/app@{}",
            registry.addr,
            entry["digest"].as_str().unwrap()
        ));
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
        assert_eq!(
            manifest["layers"][0]["digest"], platform.layer,
            "{}: the base layer first",
            platform.arch.platform
        );
        assert_eq!(
            manifest["annotations"]["org.opencontainers.image.base.name"],
            "debian:bookworm-slim"
        );
    }
}
