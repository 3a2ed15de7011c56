//! `rcross build -f Dockerfile --engine ENDPOINT`: the Dockerfile built per platform by the
//! machine's Docker engine (its classic builder), the images assembled into rcross's layout
//! and verified like a daemonless build. Against real parts: the machine's dockerd, a real
//! registry with the Debian bookworm images of tests/common_debian (the engine pulls the arm64
//! base from it over loopback HTTP), the machine's binfmt_misc table for the emulated RUN
//! (tests/host_binfmt), and Python's tarfile reading what rcross wrote.

mod common_debian;
mod common_docker;
mod common_registry;
mod host_binfmt;
mod prereq;

use common_registry::RealRegistry;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const RCROSS: &str = env!("CARGO_BIN_EXE_rcross");

/// The machine's engine as `--engine` names it, when it answers.
fn engine() -> Option<String> {
    let endpoint = common_docker::system_engine()?;
    Some(endpoint.to_string())
}

/// A new project directory holding `files`.
fn project(tmp: &Path, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let dir = tmp.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (path, bytes) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    dir
}

/// `rcross build ARGS` with a private cache directory.
fn build(tmp: &Path, args: &[&str]) -> Output {
    let xdg = tmp.join("xdg");
    std::fs::create_dir_all(&xdg).unwrap();
    let out = Command::new(RCROSS)
        .arg("build")
        .args(args)
        .env("XDG_CACHE_HOME", &xdg)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    eprintln!(
        "--- rcross build {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The final file tree of one platform of an OCI layout, read with Python's tarfile:
/// path → [type, mode, sha256 of content]; and the config's os/architecture.
fn tree(layout: &Path, platform: &str) -> (serde_json::Map<String, Value>, String) {
    let script = r#"
import hashlib, json, os, sys, tarfile
root, want = sys.argv[1], sys.argv[2]
def blob(d): return os.path.join(root, "blobs", *d.split(":"))
def doc(d): return json.load(open(blob(d)))
top = json.load(open(os.path.join(root, "index.json")))
index = doc(top["manifests"][0]["digest"])
def name(p): return "/".join(filter(None, [p["os"], p["architecture"], None if p["architecture"] == "arm64" else p.get("variant")]))
m = doc([x for x in index["manifests"] if name(x["platform"]) == want][0]["digest"])
config = doc(m["config"]["digest"])
files = {}
for layer in m["layers"]:
    with tarfile.open(blob(layer["digest"]), "r:*") as t:
        for e in t.getmembers():
            name = e.name.rstrip("/")
            if name.startswith("./"): name = name[2:]
            d, b = os.path.split(name)
            if b.startswith(".wh."):
                gone = os.path.join(d, b[4:])
                for k in [k for k in files if k == gone or k.startswith(gone + "/")]: del files[k]
                continue
            kind = "dir" if e.isdir() else "link" if e.issym() else "file"
            digest = hashlib.sha256(t.extractfile(e).read()).hexdigest() if e.isfile() else ""
            files[name] = [kind, e.mode & 0o7777, digest]
json.dump({"files": files, "platform": config["os"] + "/" + config["architecture"]}, sys.stdout)
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
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["files"].as_object().unwrap().clone(),
        v["platform"].as_str().unwrap().to_string(),
    )
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

fn metadata(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_scratch_dockerfile_built_by_the_engine_holds_the_copied_files_and_is_verified() {
    let Some(engine) = engine() else { return };
    if !prereq::tool("python3", "python3") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dir = project(
        t.path(),
        "scratch",
        &[
            (
                "Dockerfile",
                b"FROM scratch\nCOPY hello.txt /app/\nCOPY conf /etc/app/\nCMD [\"/app/run\"]\n",
            ),
            ("hello.txt", b"hello from the engine\n"),
            ("conf/app.conf", b"answer = 42\n"),
        ],
    );
    let out_dir = t.path().join("out");
    let meta = t.path().join("meta.json");
    let out = build(
        t.path(),
        &[
            "--engine",
            &engine,
            "--platform",
            "linux/amd64",
            "--output",
            &format!("oci:{}", out_dir.display()),
            "--metadata-file",
            meta.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (files, platform) = tree(&out_dir, "linux/amd64");
    assert_eq!(platform, "linux/amd64");
    assert_eq!(
        files["app/hello.txt"][2],
        sha256(b"hello from the engine\n"),
        "{files:?}"
    );
    assert_eq!(files["etc/app/app.conf"][2], sha256(b"answer = 42\n"));
    let meta = metadata(&meta);
    assert_eq!(meta["ok"], true, "{meta}");
    assert_eq!(
        meta["platforms"][0]["runner"],
        format!("docker {engine}"),
        "{meta}"
    );
}

#[test]
fn the_dockerignore_is_applied_before_the_context_reaches_the_engine() {
    let Some(engine) = engine() else { return };
    if !prereq::tool("python3", "python3") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dir = project(
        t.path(),
        "ignore",
        &[
            ("Dockerfile", b"FROM scratch\nCOPY . /ctx/\n"),
            (".dockerignore", b"secrets\n*.log\n!keep.log\n"),
            ("secrets/token", b"do not ship\n"),
            ("build.log", b"noise\n"),
            ("keep.log", b"kept\n"),
            ("src/main.c", b"int main(void) { return 0; }\n"),
        ],
    );
    let out_dir = t.path().join("out");
    let out = build(
        t.path(),
        &[
            "--engine",
            &engine,
            "--platform",
            "linux/amd64",
            "--output",
            &format!("oci:{}", out_dir.display()),
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (files, _) = tree(&out_dir, "linux/amd64");
    let names: Vec<&String> = files.keys().collect();
    assert!(files.contains_key("ctx/src/main.c"), "{names:?}");
    assert!(
        files.contains_key("ctx/keep.log"),
        "an exception: {names:?}"
    );
    for gone in ["ctx/secrets/token", "ctx/secrets", "ctx/build.log"] {
        assert!(!files.contains_key(gone), "{gone} in {names:?}");
    }
}

#[test]
fn a_wrong_architecture_binary_from_the_engine_is_rejected_and_nothing_is_pushed() {
    let Some(engine) = engine() else { return };
    let Some(registry) = RealRegistry::start() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let host_binary = std::fs::read("/bin/true").unwrap();
    let dir = project(
        t.path(),
        "wrong",
        &[
            ("Dockerfile", b"FROM scratch\nCOPY app /usr/bin/app\n"),
            ("app", &host_binary),
        ],
    );
    let tag = format!("{}/engine-wrong:1", registry.addr);
    let out = build(
        t.path(),
        &[
            "--engine",
            &engine,
            "--platform",
            "linux/arm64",
            "-t",
            &tag,
            "--push",
            "--insecure",
            dir.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for part in [
        "usr/bin/app in linux/arm64: built for linux/amd64",
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
fn an_emulated_run_on_an_arm64_debian_base_is_built_by_the_engine_and_verified() {
    let Some(engine) = engine() else { return };
    if !prereq::tool("python3", "python3") {
        return;
    }
    let Some(_handlers) = host_binfmt::register("linux/arm64") else {
        return;
    };
    let Some(registry) = RealRegistry::start() else {
        return;
    };
    let Some(debian) = common_debian::debian_images(&registry.addr) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let dir = project(
        t.path(),
        "emulated",
        &[(
            "Dockerfile",
            b"ARG BASE\nFROM ${BASE}\nRUN uname -m > /arch && cp /bin/true /usr/local/bin/mytrue\n",
        )],
    );
    let out_dir = t.path().join("out");
    let meta = t.path().join("meta.json");
    let out = build(
        t.path(),
        &[
            "--engine",
            &engine,
            "--platform",
            "linux/arm64",
            "--build-arg",
            &format!("BASE={}", debian.bookworm),
            "--output",
            &format!("oci:{}", out_dir.display()),
            "--metadata-file",
            meta.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
    );
    // The base the engine pulled from this run's registry is of no further use.
    let endpoint: rcross::engine::Endpoint = engine.parse().unwrap();
    let _ = common_docker::docker(&endpoint, &["rmi", &debian.bookworm]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (files, platform) = tree(&out_dir, "linux/arm64");
    assert_eq!(platform, "linux/arm64");
    assert_eq!(files["arch"][2], sha256(b"aarch64\n"), "ran under QEMU");
    assert_eq!(files["usr/local/bin/mytrue"][0], "file");
    let meta = metadata(&meta);
    assert_eq!(meta["ok"], true, "verified: {meta}");
    assert_eq!(meta["platforms"][0]["strategy"], "emulate", "{meta}");
}

#[test]
fn a_failing_step_on_the_engine_is_a_failed_build_naming_the_step() {
    let Some(engine) = engine() else { return };
    let t = tempfile::tempdir().unwrap();
    let dir = project(
        t.path(),
        "failing",
        &[("Dockerfile", b"FROM scratch\nRUN /no/such/program\n")],
    );
    let out_dir = t.path().join("out");
    let out = build(
        t.path(),
        &[
            "--engine",
            &engine,
            "--platform",
            "linux/amd64",
            "--output",
            &format!("oci:{}", out_dir.display()),
            dir.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the linux/amd64 build on docker")
            && stderr.contains("at Step 2/2 : RUN /no/such/program"),
        "{stderr}"
    );
    assert!(!out_dir.exists(), "nothing is written");
}
