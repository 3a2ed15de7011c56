//! `rcross build` with builds outside the host toolchain, against real parts: an emulated arm64
//! build compiles a C file with tcc inside an arm64 build image (a Debian arm64 root filesystem
//! assembled from downloaded packages) on the machine's Docker engine, through the registered
//! binfmt handler; the same without an engine, in a chroot; a private dockerd on a loopback TCP
//! port as a remote builder beside a host build; an unreachable builder; refusals.
//!
//! Missing prerequisites (engine, root for the machine's handlers, the Debian packages) fail
//! in strict mode (tests/prereq: tests/run.sh, CI) and skip with a notice otherwise.

mod common_docker;
mod common_registry;
mod common_rootfs;
mod host_binfmt;
mod prereq;

use common_docker::{build_containers, system_engine, Dockerd};
use common_registry::{platforms_of, rcross};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

const HELLO_C: &str = r#"#include <stdio.h>
int main(void) { printf("hello from %s\n", PLATFORM); return 0; }
"#;

/// A project whose build uses the image's own tcc, or the host's $CC when it builds on the host.
fn project(dir: &Path, platforms: &[&str], extra_build: &str) {
    std::fs::create_dir_all(dir.join(".git")).unwrap();
    std::fs::write(dir.join(".git/secret"), "not for containers").unwrap();
    std::fs::write(dir.join("hello.c"), HELLO_C).unwrap();
    let list: Vec<String> = platforms.iter().map(|p| format!("{p:?}")).collect();
    std::fs::write(
        dir.join("rcross.toml"),
        format!(
            r#"[image]
name = "hello-emulated"
platforms = [{}]

[build]
command = '''case "$PWD" in /rcross/src*) test ! -e .git ;; esac && ${{CC:-tcc}} -DPLATFORM="\"$RCROSS_PLATFORM\"" -o "$RCROSS_OUT/hello" hello.c && echo "built for $RCROSS_PLATFORM in $(pwd)"'''
lang = "c"
{extra_build}

[[artifact]]
from = "hello"
to = "/usr/bin/hello"
"#,
            list.join(", ")
        ),
    )
    .unwrap();
}

/// The machine's arm64 handler (F flag): the engine's containers and the chroot need it. The
/// table is put back when the last guard goes.
fn arm64_handler() -> Option<host_binfmt::Handlers> {
    host_binfmt::register("linux/arm64")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn index_platforms(layout: &Path) -> Vec<String> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    // index.json names the image index; its manifests are the platforms.
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let inner: Value = serde_json::from_slice(
        &std::fs::read(
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    let mut p = platforms_of(&inner);
    p.sort();
    p
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn platform_entry<'a>(meta: &'a Value, p: &str) -> &'a Value {
    meta["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["platform"] == p)
        .unwrap_or_else(|| panic!("{p} not in {meta}"))
}

/// The file at `path` inside the single-layer image of `platform` in layout `dir`.
fn hello_in(dir: &Path, platform: &str) -> PathBuf {
    let out = tempfile::tempdir().unwrap().keep();
    let r = rcross(
        &[
            "verify",
            &format!("oci:{}", dir.display()),
            "--platform",
            platform,
            "--json",
        ],
        &[],
    );
    assert!(r.status.success(), "verify: {}", stderr(&r));
    // rcross verify checks every ELF of the image for the platform; the build's own JSON
    // says which files there are. Extract the layer with tar to run the program.
    let manifest = common_rootfs::platform_manifest(dir, platform);
    let m: Value = serde_json::from_slice(
        &std::fs::read(
            dir.join("blobs/sha256")
                .join(manifest.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    let layer = m["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let st = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(dir.join("blobs/sha256").join(layer))
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    out.join("usr/bin/hello")
}

/// Runs an arm64 program from the build (dynamically linked by tcc) with the build image's
/// root as its sysroot.
fn run_arm64(program: &Path, sysroot: &Path) -> String {
    let out = rcross(
        &[
            "run",
            "--platform",
            "linux/arm64",
            "--sysroot",
            &sysroot.display().to_string(),
            "--",
            &program.display().to_string(),
        ],
        &[],
    );
    assert!(out.status.success(), "run: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The arm64 fixture's root filesystem, unpacked by tar from its single layer.
fn fixture_root(layout: &Path) -> PathBuf {
    let root = tempfile::tempdir().unwrap().keep();
    let manifest = common_rootfs::platform_manifest(layout, "linux/arm64");
    let m: Value = serde_json::from_slice(
        &std::fs::read(
            layout
                .join("blobs/sha256")
                .join(manifest.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    for l in m["layers"].as_array().unwrap() {
        let st = std::process::Command::new("tar")
            .arg("-xf")
            .arg(
                layout
                    .join("blobs/sha256")
                    .join(l["digest"].as_str().unwrap().trim_start_matches("sha256:")),
            )
            .arg("-C")
            .arg(&root)
            .status()
            .unwrap();
        assert!(st.success());
    }
    root
}

#[test]
fn an_emulated_build_compiles_in_an_arm64_container_on_the_engine() {
    let Some(engine) = system_engine() else {
        return;
    };
    let Some(image) = common_rootfs::try_arm64_tcc_layout() else {
        return;
    };
    let Some(_handler) = arm64_handler() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    project(&dir, &["linux/arm64"], "container = \"always\"");
    let out_dir = tmp.path().join("out");
    let out = rcross(
        &[
            "build",
            &dir.display().to_string(),
            "--build-image",
            &format!("oci:{}", image.display()),
            "--output",
            &format!("oci:{}", out_dir.display()),
            "--json",
        ],
        &[("DOCKER_HOST", &engine.to_string())],
    );
    assert!(out.status.success(), "build failed: {}", stderr(&out));
    let meta = json(&out);
    let arm = platform_entry(&meta, "linux/arm64");
    assert_eq!(arm["strategy"], "emulate", "{meta}");
    assert_eq!(arm["runner"], format!("docker {engine}"), "{meta}");
    assert!(arm["findings"].as_array().unwrap().is_empty(), "{meta}");
    assert!(
        stderr(&out).contains("[linux/arm64] | built for linux/arm64 in /rcross/src"),
        "the container's output streams into the progress lines: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("emulate in oci:"),
        "the progress names the strategy and image: {}",
        stderr(&out)
    );
    // The index holds arm64; the program is an arm64 ELF that prints what it was built for.
    assert_eq!(index_platforms(&out_dir), ["linux/arm64/v8"]);
    let program = hello_in(&out_dir, "linux/arm64");
    let root = fixture_root(&image);
    assert_eq!(run_arm64(&program, &root), "hello from linux/arm64\n");
    assert!(
        build_containers(&engine).is_empty(),
        "no build container is left behind"
    );
}

#[test]
fn without_an_engine_the_emulated_build_runs_in_a_chroot() {
    let Some(image) = common_rootfs::try_arm64_tcc_layout() else {
        return;
    };
    let Some(_handler) = arm64_handler() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    project(&dir, &["linux/arm64"], "container = \"always\"");
    let out_dir = tmp.path().join("out");
    let cache = tmp.path().join("cache");
    let out = rcross(
        &[
            "build",
            &dir.display().to_string(),
            "--build-image",
            &format!("oci:{}", image.display()),
            "--output",
            &format!("oci:{}", out_dir.display()),
            "--json",
        ],
        &[
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
            ("XDG_CACHE_HOME", &cache.display().to_string()),
        ],
    );
    assert!(out.status.success(), "build failed: {}", stderr(&out));
    assert!(
        stderr(&out).contains("no Docker engine"),
        "the fallback is announced: {}",
        stderr(&out)
    );
    let meta = json(&out);
    let arm = platform_entry(&meta, "linux/arm64");
    assert_eq!(arm["strategy"], "emulate");
    assert_eq!(arm["runner"], "chroot");
    let program = hello_in(&out_dir, "linux/arm64");
    assert_eq!(
        run_arm64(&program, &fixture_root(&image)),
        "hello from linux/arm64\n"
    );

    // An engine named explicitly that does not answer is an environment error, not a fallback.
    let out = rcross(
        &[
            "build",
            &dir.display().to_string(),
            "--build-image",
            &format!("oci:{}", image.display()),
            "--engine",
            "unix:///nonexistent/docker.sock",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unix:///nonexistent/docker.sock"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_remote_builder_builds_its_platform_beside_a_host_build() {
    let Some(image) = common_rootfs::try_arm64_tcc_layout() else {
        return;
    };
    let Some(_handler) = arm64_handler() else {
        return;
    };
    let Some(remote) = Dockerd::start_tcp() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    project(&dir, &["linux/amd64", "linux/arm64"], "");
    let out_dir = tmp.path().join("out");
    let builder = format!("linux/arm64={}", remote.endpoint);
    let out = rcross(
        &[
            "build",
            &dir.display().to_string(),
            "--build-image",
            &format!("oci:{}", image.display()),
            "--builder",
            &builder,
            "--output",
            &format!("oci:{}", out_dir.display()),
            "--json",
        ],
        &[],
    );
    assert!(out.status.success(), "build failed: {}", stderr(&out));
    let meta = json(&out);
    assert_eq!(
        platform_entry(&meta, "linux/arm64")["runner"],
        format!("builder {}", remote.endpoint)
    );
    assert_eq!(platform_entry(&meta, "linux/amd64")["runner"], "host");
    // Host builds stream their output into the progress lines too.
    assert!(
        stderr(&out).contains("[linux/amd64] | built for linux/amd64 in "),
        "{}",
        stderr(&out)
    );
    // The stand-in builder is this x86 machine, so it runs arm64 through the handler, and says so.
    assert_eq!(platform_entry(&meta, "linux/arm64")["strategy"], "emulate");
    assert!(
        stderr(&out).contains("is linux/amd64, not linux/arm64"),
        "{}",
        stderr(&out)
    );
    assert_eq!(index_platforms(&out_dir), ["linux/amd64", "linux/arm64/v8"]);
    // The builder said what it is.
    assert!(
        stderr(&out).contains(&format!("builder {}: Docker", remote.endpoint)),
        "{}",
        stderr(&out)
    );
    let program = hello_in(&out_dir, "linux/arm64");
    assert_eq!(
        run_arm64(&program, &fixture_root(&image)),
        "hello from linux/arm64\n"
    );
    let host_program = hello_in(&out_dir, "linux/amd64");
    let run = std::process::Command::new(&host_program).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "hello from linux/amd64\n"
    );
}

#[test]
fn an_unreachable_builder_fails_its_platform_naming_the_endpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    project(
        &dir,
        &["linux/amd64", "linux/arm64"],
        "image = \"127.0.0.1:9/none:1\"",
    );
    // A loopback port nothing listens on.
    let port = common_docker::free_port();
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let out_dir = tmp.path().join("out");
    let started = Instant::now();
    let out = rcross(
        &[
            "build",
            &dir.display().to_string(),
            "--builder",
            &format!("linux/arm64={endpoint}"),
            "--output",
            &format!("oci:{}", out_dir.display()),
        ],
        &[],
    );
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(
        e.contains(&format!("linux/arm64: builder {endpoint}")),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "fails fast");
    assert!(!out_dir.exists(), "nothing is assembled");
}

#[test]
fn refusals_name_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    project(&dir, &["linux/arm64"], "");
    // Containers asked for without an image to build in.
    let out = rcross(
        &["build", &dir.display().to_string(), "--container", "always"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("[build] image"), "{}", stderr(&out));
    let out = rcross(
        &["build", &dir.display().to_string(), "--container", "often"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not one of auto, always, never"),
        "{}",
        stderr(&out)
    );
    let out = rcross(
        &[
            "build",
            &dir.display().to_string(),
            "--builder",
            "linux/arm64=http://x",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a Docker endpoint"),
        "{}",
        stderr(&out)
    );
}

/// Ctrl-C during a container build: the engine's container outlives rcross unless rcross
/// removes it, so rcross stops, removes it and fails, naming the signal.
#[test]
fn an_interrupted_container_build_removes_its_container() {
    let Some(engine) = system_engine() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("busybox");
    if common_docker::busybox_layout(&image).is_none() {
        return;
    }
    let dir = tmp.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("rcross.toml"),
        r#"[image]
name = "spin"
platforms = ["linux/amd64"]

[build]
command = 'echo started; while :; do :; done'
container = "always"

[[artifact]]
from = "never"
to = "/never"
"#,
    )
    .unwrap();
    let err_path = tmp.path().join("stderr");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rcross"))
        .args([
            "build",
            &dir.display().to_string(),
            "--build-image",
            &format!("oci:{}", image.display()),
            "--output",
            &format!("oci:{}", tmp.path().join("out").display()),
        ])
        .env("DOCKER_HOST", engine.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&err_path).unwrap_or_default();
    let started = Instant::now();
    while !read().contains("[linux/amd64] | started") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the build never started: {}",
            read()
        );
        if let Some(st) = child.try_wait().unwrap() {
            panic!("rcross ended early ({st}): {}", read());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let label = "label=org.rcross.build-platform=linux/amd64";
    let running = common_docker::docker_ok(&engine, &["ps", "-q", "--filter", label]);
    assert!(!running.trim().is_empty(), "the build container runs");
    let st = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let stopped = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if stopped.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("rcross did not stop after SIGINT: {}", read());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(1), "{}", read());
    assert!(read().contains("interrupted by SIGINT"), "{}", read());
    let left = common_docker::docker_ok(&engine, &["ps", "-aq", "--filter", label]);
    assert_eq!(left.trim(), "", "the build container was removed");
}

/// A failing host build: its output streams as it comes, and the error repeats the tail.
#[test]
fn a_failing_host_build_shows_its_output_and_exit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("rcross.toml"),
        r#"[image]
name = "fails"
platforms = ["linux/amd64"]

[build]
command = 'echo compiling; echo "error: no such file" >&2; exit 7'
lang = "c"

[[artifact]]
from = "app"
to = "/app"
"#,
    )
    .unwrap();
    let out = rcross(&["build", &dir.display().to_string()], &[]);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(e.contains("[linux/amd64] | compiling"), "{e}");
    assert!(e.contains("[linux/amd64] | error: no such file"), "{e}");
    assert!(e.contains("exited with exit status: 7"), "{e}");
    assert!(
        e.contains("    error: no such file"),
        "the tail is repeated: {e}"
    );
}

/// Without a handler for the platform, an emulated build is refused before anything runs,
/// with the command that registers one. Run against the real kernel in a private user+mount
/// namespace whose own binfmt_misc is empty (Linux >= 6.7), so the machine's table is untouched.
#[test]
fn an_emulated_build_without_a_handler_is_refused_with_the_setup_command() {
    let works = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        common_docker::missing::<()>(
            "user+mount namespaces (unshare)",
            "util-linux and unprivileged user namespaces",
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    project(&dir, &["linux/arm64"], "image = \"oci:unused\"");
    let bm = tmp.path().join("binfmt_misc");
    std::fs::create_dir_all(&bm).unwrap();
    let script = r#"mount -t binfmt_misc binfmt_misc "$BM" || exit 90
"$RCROSS" build "$PROJ" --container always --engine chroot --binfmt-misc "$BM""#;
    let out = std::process::Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "--",
            "sh",
            "-c",
            script,
        ])
        .env("RCROSS", env!("CARGO_BIN_EXE_rcross"))
        .env("BM", &bm)
        .env("PROJ", &dir)
        .output()
        .unwrap();
    let e = stderr(&out);
    assert_ne!(
        out.status.code(),
        Some(90),
        "cannot mount a private binfmt_misc: {e}"
    );
    assert_eq!(out.status.code(), Some(3), "{e}");
    assert!(
        e.contains("no binfmt_misc handler for linux/arm64 is registered"),
        "{e}"
    );
    assert!(
        e.contains("`sudo rcross setup --platform linux/arm64`"),
        "{e}"
    );
}
