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

/// Merges an image's layers (whiteouts and opaque directories applied) with Python's tarfile,
/// from an OCI layout (`oci LAYOUT PLATFORM`) or a `docker save` archive (`docker-save FILE`):
/// path → [type, mode, uid, gid, link target, sha256 of content].
const MERGE_LAYERS_PY: &str = r#"
import hashlib, json, os, sys, tarfile
def from_layout(root, want):
    def blob(d): return os.path.join(root, "blobs", *d.split(":"))
    def doc(d): return json.load(open(blob(d)))
    index = doc(json.load(open(os.path.join(root, "index.json")))["manifests"][0]["digest"])
    def name(p): return "/".join(filter(None, [p["os"], p["architecture"], None if p["architecture"] == "arm64" else p.get("variant")]))
    m = [x for x in index["manifests"] if name(x["platform"]) == want][0]
    for layer in doc(m["digest"])["layers"]:
        yield tarfile.open(blob(layer["digest"]), "r:*")
def from_docker_save(path):
    outer = tarfile.open(path)
    for layer in json.load(outer.extractfile("manifest.json"))[0]["Layers"]:
        yield tarfile.open(fileobj=outer.extractfile(layer), mode="r:*")
layers = from_layout(sys.argv[2], sys.argv[3]) if sys.argv[1] == "oci" else from_docker_save(sys.argv[2])
files = {}
for t in layers:
    for e in t.getmembers():
        name = e.name.rstrip("/")
        if name.startswith("./"): name = name[2:]
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
        files[name] = [kind, e.mode & 0o7777, e.uid, e.gid, e.linkname, digest]
json.dump(files, sys.stdout)
"#;

fn merged_layers(args: &[&std::ffi::OsStr]) -> serde_json::Map<String, Value> {
    let out = Command::new("python3")
        .args(["-c", MERGE_LAYERS_PY])
        .args(args)
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

/// The final file tree of one platform of an OCI layout.
fn tree(layout: &Path, platform: &str) -> serde_json::Map<String, Value> {
    merged_layers(&["oci".as_ref(), layout.as_os_str(), platform.as_ref()])
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
    let dockerfile = dir.join("Dockerfile");
    let out = env.build(
        &lasting_cache(),
        &[
            "-f",
            dockerfile.to_str().unwrap(),
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
                // arm64's variant, which rcross writes as Docker Hub does (v8).
                .replace("linux/arm64/v8", "linux/arm64")
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
def name(p): return "/".join(filter(None, [p["os"], p["architecture"], None if p["architecture"] == "arm64" else p.get("variant")]))
m = [x for x in index["manifests"] if name(x["platform"]) == want][0]
data = None
for layer in doc(m["digest"])["layers"]:
    with tarfile.open(blob(layer["digest"]), "r:*") as t:
        for e in t.getmembers():
            if e.name.rstrip("/").removeprefix("./") == path and e.isfile():
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

/// Builds the Go project with `dockerfile` for linux/arm64, which must fail verification
/// (exit 1); returns the error output.
fn go_build_for_arm64_fails(env: &Env, name: &str, dockerfile: &str) -> String {
    assert_ne!(dockerfile, GO_DOCKERFILE, "the mistake was not made");
    let dir = env.project(
        name,
        &[
            ("Dockerfile", dockerfile),
            ("main.go", GO_MAIN),
            ("go.mod", GO_MOD),
        ],
    );
    let out = env.build(
        &lasting_cache(),
        &["--platform", "linux/arm64", dir.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    stderr
}

#[test]
fn a_default_that_shadows_targetarch_is_named() {
    let Some(env) = env() else { return };
    let dockerfile = GO_DOCKERFILE.replace(
        "ARG TARGETOS TARGETARCH TARGETVARIANT",
        "ARG TARGETOS TARGETARCH=amd64 TARGETVARIANT",
    );
    let stderr = go_build_for_arm64_fails(&env, "shadow", &dockerfile);
    assert!(
        stderr.contains("`ARG TARGETARCH=amd64`") && stderr.contains("shadows"),
        "{stderr}"
    );
}

#[test]
fn an_automatic_arg_the_stage_never_declares_is_named() {
    let Some(env) = env() else { return };
    let dockerfile = GO_DOCKERFILE.replace("ARG TARGETOS TARGETARCH TARGETVARIANT\n", "");
    let stderr = go_build_for_arm64_fails(&env, "undeclared", &dockerfile);
    assert!(
        stderr.contains("never declares `ARG TARGET") && stderr.contains("stage `build`"),
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
RUN id -u > /home/app/uid && touch /home/app/by-app
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
    assert_eq!(content("home/app/uid"), sha256(b"1234\n"));
    assert_eq!(files["home/app/by-app"][2], 1234, "created by USER app");
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
        [
            "COPY . .",
            "RUN id -u > /home/app/uid && touch /home/app/by-app"
        ],
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

/// A `$BUILDPLATFORM` stage whose steps are the same for every target runs once: the three
/// images hold the same stamp it wrote.
#[test]
fn a_build_platform_stage_runs_once_for_every_target() {
    let Some(env) = env() else { return };
    let dir = env.project(
        "shared",
        &[(
            "Dockerfile",
            "FROM --platform=$BUILDPLATFORM debian:bookworm AS stamp\nRUN date +%s%N > /stamp && uname -m >> /stamp\nFROM scratch\nCOPY --from=stamp /stamp /stamp\n",
        )],
    );
    let layout = env.tmp.path().join("shared-layout");
    let meta = env.tmp.path().join("shared.json");
    let out = env.build(
        &env.cache("shared"),
        &[
            "--platform",
            "linux/amd64,linux/arm64,linux/arm/v7",
            "--output",
            &format!("oci:{}", layout.display()),
            "--metadata-file",
            meta.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let stamps: Vec<String> = ["linux/amd64", "linux/arm64", "linux/arm/v7"]
        .iter()
        .map(|p| tree(&layout, p)["stamp"][5].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stamps[0], stamps[1]);
    assert_eq!(stamps[0], stamps[2]);
    let meta = metadata(&meta);
    let runs = meta["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["steps"].as_array().unwrap().clone())
        .filter(|s| s["instruction"].as_str().unwrap().starts_with("RUN") && s["cached"] == false)
        .count();
    assert_eq!(runs, 1, "the RUN ran once: {meta}");
}

/// The seed's own example on Debian: nginx installed by apt-get in emulated arm64 and native
/// amd64 stages, pushed, loaded as arm64 into the machine's Docker engine, run there (through
/// the machine's binfmt handlers), and asked for its page.
#[test]
fn the_nginx_example_is_pushed_loaded_as_arm64_and_serves_its_page() {
    let Some(env) = env() else { return };
    let Some(_handlers) = host_binfmt::register("linux/arm64") else {
        return;
    };
    if !prereq::tool("docker", "docker.io") || !prereq::tool("curl", "curl") {
        return;
    }
    let engine_up = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if !prereq::require(
        engine_up,
        "a running Docker engine (tests/run.sh starts dockerd)",
    ) {
        return;
    }
    let dir = env.project(
        "nginx",
        &[
            (
                "Dockerfile",
                r#"FROM debian:bookworm-slim
LABEL org.opencontainers.image.title="rcross nginx example"
RUN apt-get update && apt-get install -y nginx-light && rm -rf /var/lib/apt/lists/*
COPY ./html /var/www/html
EXPOSE 80
CMD ["nginx", "-g", "daemon off;"]
"#,
            ),
            (
                "html/index.html",
                "<h1>served by an rcross-built arm64 nginx</h1>\n",
            ),
        ],
    );
    let tag = format!("{}/nginx:1", env.registry.addr);
    let cache = lasting_cache();
    let out = env.build(
        &cache,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            &tag,
            "--push",
            dir.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let local = "rcross-test/nginx:arm64";
    let _ = Command::new("docker")
        .args(["rm", "-f", "rcross-nginx"])
        .output();
    let _ = Command::new("docker").args(["rmi", "-f", local]).output();
    let out = env.build(
        &cache,
        &[
            "--platform",
            "linux/arm64",
            "-t",
            local,
            "--load",
            dir.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let run = Command::new("docker")
        .args(["run", "-d", "--name", "rcross-nginx", local])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let ip = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.NetworkSettings.IPAddress}}",
            "rcross-nginx",
        ])
        .output()
        .unwrap();
    assert!(
        ip.status.success(),
        "{}",
        String::from_utf8_lossy(&ip.stderr)
    );
    let ip = String::from_utf8_lossy(&ip.stdout).trim().to_string();
    let arch = Command::new("docker")
        .args(["image", "inspect", "-f", "{{.Architecture}}", local])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&arch.stdout).trim(), "arm64");
    let mut page = String::new();
    for _ in 0..60 {
        let got = Command::new("curl")
            .args(["-fsS", "--max-time", "2", &format!("http://{ip}/")])
            .output()
            .unwrap();
        if got.status.success() {
            page = String::from_utf8_lossy(&got.stdout).into_owned();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let logs = Command::new("docker")
        .args(["logs", "rcross-nginx"])
        .output()
        .unwrap();
    let _ = Command::new("docker")
        .args(["rm", "-f", "rcross-nginx"])
        .output();
    let _ = Command::new("docker").args(["rmi", "-f", local]).output();
    assert!(
        page.contains("served by an rcross-built arm64 nginx"),
        "page {page:?}; container log:\n{}{}",
        String::from_utf8_lossy(&logs.stdout),
        String::from_utf8_lossy(&logs.stderr)
    );
}

/// Parity with Docker's own builder: for a Dockerfile Debian's docker 20.10 classic builder can
/// build (no BuildKit platform ARGs, heredocs or mounts), the linux/amd64 image rcross builds has
/// the same file tree (paths, types, modes, owners, link targets, contents; timestamps aside) and
/// the same config fields as `docker build` makes from the same Dockerfile and context.
#[test]
fn the_amd64_image_matches_dockers_classic_builder() {
    let Some(env) = env() else { return };
    if !prereq::tool("/usr/bin/docker", "docker.io") {
        return;
    }
    let engine_up = Command::new("/usr/bin/docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if !prereq::require(
        engine_up,
        "a running Docker engine (tests/run.sh starts dockerd)",
    ) {
        return;
    }
    let dockerfile = r#"FROM debian:bookworm
RUN mkdir -p /opt/app/data && echo hi > /opt/app/data/hi && chmod 0751 /opt/app && ln -s data/hi /opt/app/link && rm -rf /usr/share/doc/debconf /etc/motd && mkdir /tmp/x && chmod 1777 /tmp/x && ln /opt/app/data/hi /opt/app/hard
RUN groupadd -g 2000 grp && useradd -u 1234 -g 2000 -m app
WORKDIR /srv/www
COPY site/ ./
COPY --chown=1234:2000 conf.txt /etc/app/conf.txt
ADD files.tar.gz /opt/
ENV APP_MODE=prod PATH=/opt/app/bin:$PATH
LABEL org.example.name="parity" org.example.two="2"
EXPOSE 8080/tcp 53/udp
VOLUME /data
USER app
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo hi"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s CMD true
"#;
    let dir = env.project(
        "parity",
        &[
            ("Dockerfile", dockerfile),
            ("site/index.html", "<p>index</p>\n"),
            ("site/css/a.css", "p {}\n"),
            ("conf.txt", "mode=prod\n"),
        ],
    );
    std::os::unix::fs::symlink("index.html", dir.join("site/home.html")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        let f = dir.join("site/run.sh");
        std::fs::write(&f, "#!/bin/sh\necho run\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o750)).unwrap();
        let src = env.tmp.path().join("tarsrc");
        std::fs::create_dir_all(src.join("pkg/bin")).unwrap();
        std::fs::write(src.join("pkg/bin/tool"), "tool\n").unwrap();
        std::fs::set_permissions(
            src.join("pkg/bin/tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let tar = Command::new("tar")
            .args(["--owner=7:7", "--group=8", "-czf"])
            .arg(dir.join("files.tar.gz"))
            .arg("-C")
            .arg(&src)
            .arg("pkg")
            .status()
            .unwrap();
        assert!(tar.success());
    }
    // Docker's side: the base from the same registry, then the classic builder.
    let docker = |args: &[&str]| {
        let out = Command::new("/usr/bin/docker")
            .args(args)
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let base = format!("{}/library/debian:bookworm", env.registry.addr);
    docker(&["pull", "--platform", "linux/amd64", &base]);
    docker(&["tag", &base, "debian:bookworm"]);
    let image = "rcross-test/parity:classic";
    docker(&["build", "--no-cache", "-t", image, dir.to_str().unwrap()]);
    let saved = env.tmp.path().join("parity-docker.tar");
    docker(&["save", "-o", saved.to_str().unwrap(), image]);
    let theirs_config: Value = serde_json::from_str(&docker(&["image", "inspect", image])).unwrap();
    let _ = Command::new("/usr/bin/docker")
        .args(["rmi", "-f", image, "debian:bookworm", &base])
        .output();

    // rcross's side.
    let layout = env.tmp.path().join("parity-layout");
    let meta = env.tmp.path().join("parity.json");
    let out = env.build(
        &env.cache("parity"),
        &[
            "--platform",
            "linux/amd64",
            "--no-cache",
            "--output",
            &format!("oci:{}", layout.display()),
            "--metadata-file",
            meta.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let ours = tree(&layout, "linux/amd64");
    let theirs = docker_save_tree(&saved);
    let mut differences = Vec::new();
    for (path, entry) in &theirs {
        match ours.get(path) {
            Some(o) if o == entry => {}
            Some(o) => differences.push(format!("{path}: rcross {o} docker {entry}")),
            None => differences.push(format!("{path}: only in docker's image {entry}")),
        }
    }
    for (path, entry) in &ours {
        if !theirs.contains_key(path) {
            differences.push(format!("{path}: only in rcross's image {entry}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{} difference(s):\n{}",
        differences.len(),
        differences.join("\n")
    );
    assert!(
        ours.len() > 1000,
        "a whole Debian tree was compared: {}",
        ours.len()
    );

    // The config fields.
    let meta = metadata(&meta);
    let manifest = meta["platforms"][0]["manifest"].as_str().unwrap();
    let blobs = layout.join("blobs/sha256");
    let m: Value = serde_json::from_slice(
        &std::fs::read(blobs.join(manifest.trim_start_matches("sha256:"))).unwrap(),
    )
    .unwrap();
    let ours_config: Value = serde_json::from_slice(
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
    let ours_c = &ours_config["config"];
    let theirs_c = &theirs_config[0]["Config"];
    for field in [
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Volumes",
        "Labels",
        "StopSignal",
        "Healthcheck",
        "OnBuild",
        "Shell",
    ] {
        let norm = |v: &Value| match v {
            Value::Null => Value::Null,
            Value::Array(a) if a.is_empty() => Value::Null,
            Value::Object(o) if o.is_empty() => Value::Null,
            Value::String(s) if s.is_empty() => Value::Null,
            v => v.clone(),
        };
        assert_eq!(
            norm(&ours_c[field]),
            norm(&theirs_c[field]),
            "config field {field}"
        );
    }
    assert_eq!(
        ours_config["architecture"],
        theirs_config[0]["Architecture"]
    );
    assert_eq!(ours_config["os"], theirs_config[0]["Os"]);

    // Reproducible: the same Dockerfile and context built again from nothing (no step cache)
    // give the same image.
    let again = env.tmp.path().join("parity-again.json");
    let out = env.build(
        &env.cache("parity-again"),
        &[
            "--platform",
            "linux/amd64",
            "--no-cache",
            "--output",
            &format!("oci:{}", env.tmp.path().join("parity-layout2").display()),
            "--metadata-file",
            again.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    assert_eq!(metadata(&again)["index_digest"], meta["index_digest"]);
}

/// The merged tree of a `docker save` archive's image (the same shape as [`tree`]).
fn docker_save_tree(saved: &Path) -> serde_json::Map<String, Value> {
    merged_layers(&["docker-save".as_ref(), saved.as_os_str()])
}

/// A file for another CPU that the image carries on purpose is named in `[verify] ignore`; the
/// same file elsewhere, executable, stops the build.
#[test]
fn verify_ignore_in_the_project_file_lets_foreign_data_through() {
    let arm_libc = Path::new("/usr/aarch64-linux-gnu/lib/libc.so.6");
    if !prereq::require(
        arm_libc.exists(),
        "libc6-arm64-cross (an aarch64 ELF file to copy)",
    ) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("fw")).unwrap();
    std::fs::copy(arm_libc, t.path().join("fw/blob")).unwrap();
    std::fs::write(
        t.path().join("Dockerfile"),
        "FROM scratch\nCOPY --chmod=755 fw/blob /opt/fw/blob\n",
    )
    .unwrap();
    let toml = |extra: &str| {
        std::fs::write(
            t.path().join("rcross.toml"),
            format!(
                "[image]\nname = \"fw\"\nplatforms = [\"linux/amd64\"]\ndockerfile = \"Dockerfile\"\n{extra}"
            ),
        )
        .unwrap();
    };
    let build = || {
        Command::new(RCROSS)
            .args(["build", "--no-cache"])
            .arg(t.path())
            .env("XDG_CACHE_HOME", t.path().join("xdg"))
            .env("RCROSS_REGISTRIES_CONFIG", "/dev/null")
            .output()
            .unwrap()
    };
    toml("");
    let out = build();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("opt/fw/blob in linux/amd64 is"), "{stderr}");
    toml("[verify]\nignore = [\"opt/fw/**\"]\n");
    let out = build();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("1 ELF file(s) for other platforms"),
        "{stderr}"
    );
}
