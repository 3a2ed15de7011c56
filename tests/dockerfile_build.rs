//! `rcross build` of Dockerfiles, end to end, against real parts: Debian bookworm base images
//! made by mmdebstrap (tests/common_debian) in a real registry that the registries file puts in
//! front of `docker.io` (so the Dockerfiles say `FROM debian:bookworm`, unmodified), the real
//! kernel's sandbox, real QEMU through a private binfmt_misc (a user+mount namespace of its own
//! where `rcross setup` registers the handlers; the machine's table is never touched), and
//! independent readers of what rcross wrote (skopeo, Python's tarfile).

mod common_debian;
mod common_registry;
mod host_binfmt;
mod prereq;

use common_registry::RealRegistry;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const RCROSS: &str = env!("CARGO_BIN_EXE_rcross");

struct Env {
    registry: RealRegistry,
    /// `RCROSS_REGISTRIES_CONFIG`: the test registry as Docker Hub's mirror.
    registries: PathBuf,
    tmp: tempfile::TempDir,
}

/// The registry with the Debian images, or `None` (a failure under strict runs) when a
/// prerequisite is missing.
fn env() -> Option<Env> {
    let ns = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--", "sh", "-c"])
        .arg("d=$(mktemp -d) && mount -t binfmt_misc binfmt_misc $d && test -e $d/register && umount $d && rmdir $d")
        .status()
        .is_ok_and(|s| s.success());
    if !prereq::require(
        ns,
        "user+mount namespaces with a private binfmt_misc (Linux >= 6.7)",
    ) || !prereq::tool("qemu-aarch64-static", "qemu-user-static")
        || !prereq::tool("skopeo", "skopeo")
        || !prereq::tool("python3", "python3")
    {
        return None;
    }
    let registry = RealRegistry::start()?;
    let debian = common_debian::debian_images(&registry.addr)?;
    let tmp = tempfile::tempdir().unwrap();
    let registries = debian.registries_config(tmp.path());
    Some(Env {
        registry,
        registries,
        tmp,
    })
}

impl Env {
    /// A new project directory holding `files`.
    fn project(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.tmp.path().join(name);
        for (path, text) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    /// `rcross build ARGS` as root of a user namespace that maps every id (so the sandbox gets
    /// its id range), with arm64 and arm handlers in the namespace's own binfmt_misc, the test
    /// registry as Docker Hub's mirror and `xdg` as the cache directory.
    fn build(&self, xdg: &Path, args: &[&str]) -> Output {
        let t = tempfile::tempdir().unwrap();
        let bm = t.path().join("binfmt_misc");
        std::fs::create_dir_all(&bm).unwrap();
        std::fs::create_dir_all(t.path().join("no-defs")).unwrap();
        let go = t.path().join("go");
        nix::unistd::mkfifo(&go, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let script = r#"set -eu
read go < "$T/go"
mount -t binfmt_misc binfmt_misc "$BM"
"$RCROSS" setup --platform linux/arm64,linux/arm/v7 --binfmt-misc "$BM" --binfmt-dir "$T/no-defs" >"$T/setup.log" 2>&1 || { cat "$T/setup.log" >&2; exit 1; }
exec "$RCROSS" build --binfmt-misc "$BM" --binfmt-dir "$T/no-defs" "$@"
"#;
        let child = Command::new("unshare")
            .args(["--user", "--mount", "--", "sh", "-c", script, "sh"])
            .args(args)
            .env("RCROSS", RCROSS)
            .env("BM", &bm)
            .env("T", t.path())
            .env("XDG_CACHE_HOME", xdg)
            .env("RCROSS_REGISTRIES_CONFIG", &self.registries)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
        let pid = child.id().to_string();
        let start = std::time::Instant::now();
        while ns(&pid) == ns("self") {
            assert!(
                start.elapsed().as_secs() < 10,
                "unshare made no user namespace"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for map in ["uid_map", "gid_map"] {
            std::fs::write(format!("/proc/{pid}/{map}"), "0 0 4294967295\n").unwrap();
        }
        std::fs::write(&go, "go\n").unwrap();
        let out = child.wait_with_output().unwrap();
        eprintln!(
            "--- rcross build {}: {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn cache(&self, name: &str) -> PathBuf {
        let p = self.tmp.path().join(format!("xdg-{name}"));
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}

/// A cache directory that outlives the test run (steps that download packages are kept, as a
/// CI machine keeps its build cache); `RCROSS_TEST_CACHE` or /var/cache/rcross-tests.
fn lasting_cache() -> PathBuf {
    let p = common_debian::cache_dir().join("xdg");
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn metadata(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The final file tree of one platform of an OCI layout, read with Python's tarfile (whiteouts
/// applied): path → [type, mode, uid, gid, link target, sha256 of content].
fn tree(layout: &Path, platform: &str) -> serde_json::Map<String, Value> {
    let script = r#"
import gzip, hashlib, json, os, sys, tarfile
root, want = sys.argv[1], sys.argv[2]
def blob(d): return os.path.join(root, "blobs", *d.split(":"))
def doc(d): return json.load(open(blob(d)))
top = json.load(open(os.path.join(root, "index.json")))
index = doc(top["manifests"][0]["digest"])
m = [x for x in index["manifests"] if "/".join(filter(None, [x["platform"]["os"], x["platform"]["architecture"], x["platform"].get("variant")])) == want][0]
files = {}
for layer in doc(m["digest"])["layers"]:
    with tarfile.open(blob(layer["digest"]), "r:*") as t:
        for e in t.getmembers():
            name = e.name.rstrip("/")
            d, b = os.path.split(name)
            if b == ".wh..wh..opq":
                for k in [k for k in files if k.startswith(d + "/")]: del files[k]
                continue
            if b.startswith(".wh."):
                gone = os.path.join(d, b[4:])
                for k in [k for k in files if k == gone or k.startswith(gone + "/")]: del files[k]
                continue
            kind = "dir" if e.isdir() else "link" if e.issym() else "hard" if e.islnk() else "file"
            digest = hashlib.sha256(t.extractfile(e).read()).hexdigest() if e.isfile() else ""
            files[name] = [kind, e.mode, e.uid, e.gid, e.linkname, digest]
json.dump(files, sys.stdout)
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(layout)
        .arg(platform)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_object()
        .unwrap()
        .clone()
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

const GO_MAIN: &str = r#"package main

import (
	"fmt"
	"runtime"
)

func main() { fmt.Printf("hello from %s/%s\n", runtime.GOOS, runtime.GOARCH) }
"#;

const GO_MOD: &str = "module hello\n\ngo 1.19\n";

/// The buildx pattern: the compiler in a `$BUILDPLATFORM` stage, the target passed through the
/// automatic ARGs, a `FROM scratch` final stage.
const GO_DOCKERFILE: &str = r#"# syntax=docker/dockerfile:1
FROM --platform=$BUILDPLATFORM debian:bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends golang-go ca-certificates
WORKDIR /src
COPY go.mod main.go ./
ARG TARGETOS TARGETARCH TARGETVARIANT
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOARM=${TARGETVARIANT#v} GOCACHE=/tmp/gocache go build -o /out/hello .

FROM scratch
COPY --from=build /out/hello /hello
ENTRYPOINT ["/hello"]
"#;

#[test]
fn a_cross_compiling_go_dockerfile_lands_a_verified_index_with_no_emulated_step() {
    let Some(env) = env() else { return };
    let dir = env.project(
        "go",
        &[
            ("Dockerfile", GO_DOCKERFILE),
            ("main.go", GO_MAIN),
            ("go.mod", GO_MOD),
        ],
    );
    let tag = format!("{}/app:1", env.registry.addr);
    let meta = env.tmp.path().join("go.json");
    let layout = env.tmp.path().join("go-layout");
    let out = env.build(
        &lasting_cache(),
        &[
            "--platform",
            "linux/amd64,linux/arm64,linux/arm/v7",
            "-t",
            &tag,
            "--push",
            "--metadata-file",
            meta.to_str().unwrap(),
            "--output",
            &format!("oci:{}", layout.display()),
            dir.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    // skopeo reads the pushed index: three platforms.
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{tag}"))
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    let index: Value = serde_json::from_slice(&raw.stdout).unwrap();
    let mut platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            [&p["os"], &p["architecture"], &p["variant"]]
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    platforms.sort();
    assert_eq!(platforms, ["linux/amd64", "linux/arm/v7", "linux/arm64"]);
    // No step of any platform ran under emulation.
    let meta = metadata(&meta);
    for p in meta["platforms"].as_array().unwrap() {
        let steps = p["steps"].as_array().unwrap();
        assert!(!steps.is_empty());
        assert!(
            steps.iter().all(|s| s["emulated"] == false),
            "{}: {steps:?}",
            p["platform"]
        );
    }
    // Each binary is its platform's, and runs (under QEMU for the foreign ones).
    for (platform, machine, qemu, says) in [
        ("linux/amd64", "x86-64", None, "linux/amd64"),
        (
            "linux/arm64",
            "aarch64",
            Some("qemu-aarch64-static"),
            "linux/arm64",
        ),
        ("linux/arm/v7", "ARM", Some("qemu-arm-static"), "linux/arm"),
    ] {
        let files = tree(&layout, platform);
        let hello = &files["hello"];
        assert_eq!(hello[0], "file", "{platform}: {hello:?}");
        let bin = env
            .tmp
            .path()
            .join(format!("hello-{}", platform.replace('/', "-")));
        extract(&layout, platform, "hello", &bin);
        let file = Command::new("file").arg(&bin).output().unwrap();
        let file = String::from_utf8_lossy(&file.stdout);
        assert!(file.contains(machine), "{platform}: {file}");
        let run = match qemu {
            None => Command::new(&bin).output().unwrap(),
            Some(q) => Command::new(q).arg(&bin).output().unwrap(),
        };
        assert_eq!(
            String::from_utf8_lossy(&run.stdout).trim(),
            format!("hello from {says}")
        );
    }
}

/// Copies one file of a platform's final tree out of the layout.
fn extract(layout: &Path, platform: &str, path: &str, to: &Path) {
    let script = r#"
import json, os, sys, tarfile
root, want, path, to = sys.argv[1:5]
def blob(d): return os.path.join(root, "blobs", *d.split(":"))
def doc(d): return json.load(open(blob(d)))
index = doc(json.load(open(os.path.join(root, "index.json")))["manifests"][0]["digest"])
m = [x for x in index["manifests"] if "/".join(filter(None, [x["platform"]["os"], x["platform"]["architecture"], x["platform"].get("variant")])) == want][0]
data = None
for layer in doc(m["digest"])["layers"]:
    with tarfile.open(blob(layer["digest"]), "r:*") as t:
        for e in t.getmembers():
            if e.name.rstrip("/") == path and e.isfile():
                data = t.extractfile(e).read()
open(to, "wb").write(data)
os.chmod(to, 0o755)
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(layout)
        .arg(platform)
        .arg(path)
        .arg(to)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_private_arg_nothing_sets_fails_naming_the_stage_and_pushes_nothing() {
    let Some(env) = env() else { return };
    let dockerfile = GO_DOCKERFILE.replace(
        "ARG TARGETOS TARGETARCH TARGETVARIANT\nRUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOARM=${TARGETVARIANT#v}",
        "ARG ARCH\nRUN CGO_ENABLED=0 GOARCH=$ARCH",
    );
    assert_ne!(dockerfile, GO_DOCKERFILE);
    let dir = env.project(
        "private-arg",
        &[
            ("Dockerfile", dockerfile.as_str()),
            ("main.go", GO_MAIN),
            ("go.mod", GO_MOD),
        ],
    );
    let tag = format!("{}/wrong:1", env.registry.addr);
    let out = env.build(
        &lasting_cache(),
        &[
            "--platform",
            "linux/arm64",
            "-t",
            &tag,
            "--push",
            dir.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for part in [
        "hello in linux/arm64 is",
        "stage `build`, which runs on linux/amd64",
        "`ARG ARCH`",
        "nothing sets it",
        "nothing was written or pushed",
    ] {
        assert!(stderr.contains(part), "missing {part:?} in:\n{stderr}");
    }
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{tag}"))
        .output()
        .unwrap();
    assert!(!raw.status.success(), "the wrong image was pushed");
}

#[test]
fn a_default_that_shadows_targetarch_is_named() {
    let Some(env) = env() else { return };
    let dockerfile = GO_DOCKERFILE.replace(
        "ARG TARGETOS TARGETARCH TARGETVARIANT",
        "ARG TARGETOS TARGETARCH=amd64 TARGETVARIANT",
    );
    let dir = env.project(
        "shadow",
        &[
            ("Dockerfile", dockerfile.as_str()),
            ("main.go", GO_MAIN),
            ("go.mod", GO_MOD),
        ],
    );
    let out = env.build(
        &lasting_cache(),
        &["--platform", "linux/arm64", dir.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`ARG TARGETARCH=amd64`") && stderr.contains("shadows"),
        "{stderr}"
    );
}

#[test]
fn apt_get_in_a_target_platform_stage_runs_emulated() {
    let Some(env) = env() else { return };
    let dir = env.project(
        "apt",
        &[(
            "Dockerfile",
            "FROM debian:bookworm\nRUN apt-get update && apt-get install -y --no-install-recommends hello && rm -rf /var/lib/apt/lists/*\nCMD [\"hello\"]\n",
        )],
    );
    let meta = env.tmp.path().join("apt.json");
    let layout = env.tmp.path().join("apt-layout");
    let out = env.build(
        &env.cache("apt"),
        &[
            "--platform",
            "linux/arm64",
            "--metadata-file",
            meta.to_str().unwrap(),
            "--output",
            &format!("oci:{}", layout.display()),
            dir.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let meta = metadata(&meta);
    let steps = meta["platforms"][0]["steps"].as_array().unwrap().clone();
    assert!(
        steps
            .iter()
            .any(|s| s["emulated"] == true && s["cached"] == false),
        "{steps:?}"
    );
    let bin = env.tmp.path().join("hello-arm64");
    extract(&layout, "linux/arm64", "usr/bin/hello", &bin);
    let file = Command::new("file").arg(&bin).output().unwrap();
    assert!(String::from_utf8_lossy(&file.stdout).contains("aarch64"));
    let run = Command::new("qemu-aarch64-static")
        .args(["-L", "/usr/aarch64-linux-gnu"])
        .arg(&bin)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("Hello, world!"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// Native steps on Debian amd64: heredocs, a cache mount, a secret, .dockerignore, USER,
/// WORKDIR, --target, ONBUILD, deletions; then a rebuild that runs nothing, and a change that
/// reruns from its step on.
#[test]
fn native_steps_heredocs_mounts_secrets_ignore_target_and_the_step_cache() {
    let Some(env) = env() else { return };
    let dockerfile = r#"# syntax=docker/dockerfile:1
FROM debian:bookworm AS base
RUN rm -rf /usr/share/doc/debconf && useradd -u 1234 -m app
COPY <<EOF /etc/motd.d/hello
hello from a heredoc
EOF
RUN <<EOT
set -e
mkdir -p /data
echo "one $((1+1))" > /data/sum
EOT
RUN --mount=type=cache,target=/cache echo run >> /cache/runs && cp /cache/runs /data/runs
RUN --mount=type=secret,id=token sha256sum /run/secrets/token | cut -c1-64 > /data/token.sha
WORKDIR /app
COPY --chown=app:app . .
USER app
RUN id -u > /app/uid && touch /app/by-app
ONBUILD RUN echo triggered

FROM base AS unused
RUN exit 3
"#;
    let dir = env.project(
        "native",
        &[
            ("Dockerfile", dockerfile),
            (".dockerignore", "secret.txt\nlogs/\n!logs/keep.log\n"),
            ("app.txt", "the app\n"),
            ("secret.txt", "not for the image\n"),
            ("logs/a.log", "no\n"),
            ("logs/keep.log", "yes\n"),
        ],
    );
    let secret = env.tmp.path().join("token");
    std::fs::write(&secret, "TOPSECRET-4711").unwrap();
    let cache = env.cache("native");
    let layout = env.tmp.path().join("native-layout");
    let meta = env.tmp.path().join("native.json");
    let args = |meta: &Path, layout: &Path| {
        vec![
            "--platform".to_string(),
            "linux/amd64".into(),
            "--target".into(),
            "base".into(),
            "--secret".into(),
            format!("id=token,src={}", secret.display()),
            "--metadata-file".into(),
            meta.display().to_string(),
            "--output".into(),
            format!("oci:{}", layout.display()),
            dir.display().to_string(),
        ]
    };
    let run = |meta: &Path, layout: &Path| {
        let a = args(meta, layout);
        let a: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
        env.build(&cache, &a)
    };
    assert!(run(&meta, &layout).status.success());
    let files = tree(&layout, "linux/amd64");
    let content = |p: &str| files[p][5].as_str().unwrap().to_string();
    assert_eq!(
        content("etc/motd.d/hello"),
        sha256(b"hello from a heredoc\n")
    );
    assert_eq!(content("data/sum"), sha256(b"one 2\n"));
    assert_eq!(content("data/runs"), sha256(b"run\n"));
    assert_eq!(
        content("data/token.sha"),
        sha256(format!("{}\n", sha256(b"TOPSECRET-4711")).as_bytes())
    );
    assert_eq!(content("app/uid"), sha256(b"1234\n"));
    assert_eq!(files["app/by-app"][2], 1234, "created by USER app");
    assert_eq!(files["app/app.txt"][2], 1234, "COPY --chown=app:app");
    assert_eq!(files["app/app.txt"][3], 1234);
    assert!(!files.contains_key("app/secret.txt"), ".dockerignore");
    assert!(!files.contains_key("app/logs/a.log"));
    assert!(files.contains_key("app/logs/keep.log"), "! re-includes");
    assert!(!files.contains_key("usr/share/doc/debconf"), "a whiteout");
    assert!(files.contains_key("usr/share/doc/dpkg"));
    assert!(
        !files.contains_key("run/secrets/token"),
        "the mount point is gone"
    );
    // The secret is in no blob of the layout (layers decompressed), nor in the config.
    let blobs = layout.join("blobs/sha256");
    for entry in std::fs::read_dir(&blobs).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let plain = {
            use std::io::Read as _;
            let mut out = Vec::new();
            match flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut out) {
                Ok(_) => out,
                Err(_) => bytes.clone(),
            }
        };
        assert!(
            !String::from_utf8_lossy(&plain).contains("TOPSECRET"),
            "{} holds the secret",
            path.display()
        );
    }
    // The config: USER, WORKDIR, ONBUILD, and the target stage's history.
    let meta1 = metadata(&meta);
    let manifest = meta1["platforms"][0]["manifest"].as_str().unwrap();
    let m: Value = serde_json::from_slice(
        &std::fs::read(blobs.join(manifest.trim_start_matches("sha256:"))).unwrap(),
    )
    .unwrap();
    let config: Value = serde_json::from_slice(
        &std::fs::read(
            blobs.join(
                m["config"]["digest"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("sha256:"),
            ),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(config["config"]["User"], "app");
    assert_eq!(config["config"]["WorkingDir"], "/app");
    assert_eq!(config["config"]["OnBuild"][0], "RUN echo triggered");
    assert!(!config.to_string().contains("TOPSECRET"));
    assert!(
        !config.to_string().contains("exit 3"),
        "--target base: the unused stage is not built"
    );

    // Again: every step from the step cache; the cache mount kept its file.
    let meta2 = env.tmp.path().join("native2.json");
    let layout2 = env.tmp.path().join("native-layout2");
    assert!(run(&meta2, &layout2).status.success());
    let m2 = metadata(&meta2);
    let steps = m2["platforms"][0]["steps"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["cached"] == true), "{steps:?}");
    assert_eq!(
        m2["index_digest"], meta1["index_digest"],
        "same inputs, same index"
    );

    // One context file changes: the COPY of it and the steps after it run again.
    std::fs::write(dir.join("app.txt"), "the app, changed\n").unwrap();
    let meta3 = env.tmp.path().join("native3.json");
    let layout3 = env.tmp.path().join("native-layout3");
    assert!(run(&meta3, &layout3).status.success());
    let m3 = metadata(&meta3);
    let steps = m3["platforms"][0]["steps"].as_array().unwrap();
    let ran: Vec<&str> = steps
        .iter()
        .filter(|s| s["cached"] == false)
        .map(|s| s["instruction"].as_str().unwrap())
        .collect();
    assert_eq!(
        ran,
        ["COPY . .", "RUN id -u > /app/uid && touch /app/by-app"],
        "{steps:?}"
    );
    let files = tree(&layout3, "linux/amd64");
    assert_eq!(files["app/app.txt"][5], sha256(b"the app, changed\n"));
    assert_eq!(
        files["data/runs"][5],
        sha256(b"run\n"),
        "the cached step's output"
    );
}

#[test]
fn a_malformed_dockerfile_names_its_line() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(
        t.path().join("Dockerfile"),
        "FROM scratch\nCOPY a\nRUN --mount=type=ssh true\n",
    )
    .unwrap();
    let out = Command::new(RCROSS)
        .args(["build", "--platform", "linux/amd64"])
        .arg(t.path())
        .env("XDG_CACHE_HOME", t.path().join("xdg"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Dockerfile:2"), "{stderr}");
}
