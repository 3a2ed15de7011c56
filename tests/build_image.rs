//! `rcross build` end to end: the bundled example cross-compiled for three platforms, verified,
//! assembled into an OCI layout that skopeo (an independent client) reads, pushed to a real
//! registry (Debian's docker-registry on loopback) under two tags, reproducible, and stopped
//! before anything is written when a wrong-architecture binary is planted.

mod common_registry;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const RCROSS: &str = env!("CARGO_BIN_EXE_rcross");

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello")
}

fn rcross(args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = Command::new(RCROSS)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    eprintln!(
        "rcross {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn have_compilers() -> bool {
    for cc in ["aarch64-linux-gnu-gcc", "arm-linux-gnueabihf-gcc", "make"] {
        if !common_registry::require_tool(cc, "see tests/install-deps.sh") {
            return false;
        }
    }
    true
}

fn skopeo_raw(image: &str) -> Value {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", image])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {image}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn platforms_of(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                s.push('/');
                s.push_str(v);
            }
            s
        })
        .collect()
}

const PLATFORMS: &str = "linux/amd64,linux/arm64,linux/arm/v7";

#[test]
fn builds_a_reproducible_three_platform_layout_that_skopeo_reads() {
    if !have_compilers() || !common_registry::require_tool("skopeo", "skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ex = example();
    let ex = ex.to_str().unwrap();
    let out1 = format!("oci:{}", tmp.path().join("one").display());
    let out2 = format!("oci:{}", tmp.path().join("two").display());
    let meta = tmp.path().join("meta.json");
    let a = rcross(
        &[
            "build",
            ex,
            "--platform",
            PLATFORMS,
            "--output",
            &out1,
            "--metadata-file",
            meta.to_str().unwrap(),
        ],
        &[],
    );
    assert!(a.status.success());
    let b = rcross(
        &["build", ex, "--platform", PLATFORMS, "--output", &out2],
        &[],
    );
    assert!(b.status.success());
    let digest = String::from_utf8_lossy(&a.stdout).trim().to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(
        digest,
        String::from_utf8_lossy(&b.stdout).trim(),
        "two builds of the same source give the same index digest"
    );

    let index = skopeo_raw(&format!("{out1}:latest"));
    assert_eq!(
        platforms_of(&index),
        ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]
    );
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
    assert_eq!(m["index_digest"], digest.as_str());
    assert_eq!(m["ok"], true);
    assert_eq!(m["platforms"].as_array().unwrap().len(), 3);
    for p in m["platforms"].as_array().unwrap() {
        assert_eq!(p["files"], serde_json::json!(["/usr/bin/hello"]));
        assert!(p["findings"].as_array().unwrap().is_empty());
    }

    // rcross's own verifier agrees, and the arm64 program in the image runs under emulation.
    let v = rcross(&["verify", &out1], &[]);
    assert!(v.status.success());
    let copy = tmp.path().join("arm64");
    let c = Command::new("skopeo")
        .args([
            "copy",
            "--override-arch",
            "arm64",
            &format!("{out1}:latest"),
        ])
        .arg(format!("dir:{}", copy.display()))
        .output()
        .unwrap();
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(copy.join("manifest.json")).unwrap())
            .unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let root = tmp.path().join("arm64-root");
    std::fs::create_dir_all(&root).unwrap();
    let x = Command::new("tar")
        .arg("-xzf")
        .arg(copy.join(layer.trim_start_matches("sha256:")))
        .arg("-C")
        .arg(&root)
        .status()
        .unwrap();
    assert!(x.success());
    let hello = root.join("usr/bin/hello");
    let r = rcross(
        &[
            "run",
            "--platform",
            "linux/arm64",
            "--",
            hello.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).trim(),
        "hello from aarch64"
    );

    // A different SOURCE_DATE_EPOCH is a different image (times are part of it), and stable.
    let c1 = rcross(
        &[
            "build",
            ex,
            "--platform",
            "linux/arm64",
            "--output",
            &format!("oci:{}", tmp.path().join("e1").display()),
        ],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    let c2 = rcross(
        &[
            "build",
            ex,
            "--platform",
            "linux/arm64",
            "--output",
            &format!("oci:{}", tmp.path().join("e2").display()),
        ],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    assert_eq!(c1.stdout, c2.stdout);
    assert_ne!(String::from_utf8_lossy(&c1.stdout).trim(), digest);
}

#[test]
fn pushes_under_two_tags_and_a_second_push_uploads_nothing() {
    if !have_compilers() || !common_registry::require_tool("skopeo", "skopeo") {
        return;
    }
    let Some(registry) = common_registry::RealRegistry::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ex = example();
    let ex = ex.to_str().unwrap();
    let t1 = format!("{}/hello:1", registry.addr);
    let t2 = format!("{}/hello:latest", registry.addr);
    let out = format!("oci:{}", tmp.path().join("img").display());
    let args = [
        "--json",
        "build",
        ex,
        "--platform",
        PLATFORMS,
        "-t",
        &t1,
        "-t",
        &t2,
        "--push",
        "--output",
        &out,
    ];
    let first = rcross(&args, &[]);
    assert!(first.status.success());
    let j: Value = serde_json::from_slice(&first.stdout).unwrap();
    let digest = j["index_digest"].as_str().unwrap().to_string();
    assert!(
        j["pushed"][0]["blobs_uploaded"].as_u64().unwrap() >= 6,
        "{j}"
    );

    for tag in [&t1, &t2] {
        let index = skopeo_raw(&format!("docker://{tag}"));
        assert_eq!(
            platforms_of(&index),
            ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"],
            "{tag}"
        );
        let d = Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
            .arg(format!("docker://{tag}"))
            .output()
            .unwrap();
        // The tag names the index itself, never one platform's manifest.
        assert_eq!(String::from_utf8_lossy(&d.stdout).trim(), digest, "{tag}");
    }
    // rcross inspect reads it back: the index, three platforms, each verified.
    let i = rcross(&["--json", "inspect", &t2], &[]);
    assert!(i.status.success());
    let iv: Value = serde_json::from_slice(&i.stdout).unwrap();
    assert_eq!(iv["digest"], digest.as_str());
    let ms = iv["manifests"].as_array().unwrap();
    assert_eq!(ms.len(), 3);
    for m in ms {
        assert_eq!(m["verification"]["ok"], true, "{m}");
        assert_eq!(m["verification"]["elf_files"], 1, "{m}");
        assert!(m["layers_size"].as_u64().unwrap() > 0);
    }
    assert_eq!(ms[2]["platform"], "linux/arm/v7");

    // Re-push: same digest, no blob uploaded.
    let second = rcross(&args, &[]);
    assert!(second.status.success());
    let j2: Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(j2["index_digest"], digest.as_str());
    assert_eq!(j2["pushed"][0]["blobs_uploaded"], 0, "{j2}");
    // rcross push re-pushes the layout without building: nothing uploaded, a third tag added.
    let t3 = format!("{}/hello:2", registry.addr);
    let p = rcross(&["--json", "push", &format!("{out}:1"), &t3], &[]);
    assert!(p.status.success());
    let pj: Value = serde_json::from_slice(&p.stdout).unwrap();
    assert_eq!(pj[0]["blobs_uploaded"], 0, "{pj}");
    assert_eq!(pj[0]["digest"], digest.as_str());
    assert_eq!(
        skopeo_raw(&format!("docker://{t3}")),
        skopeo_raw(&format!("docker://{t1}"))
    );
    let bad = rcross(&["push", "/not/a/layout", &t3], &[]);
    assert_eq!(bad.status.code(), Some(2));

    // skopeo copies the whole index out again.
    let c = Command::new("skopeo")
        .args(["copy", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{t1}"))
        .arg(format!("oci:{}:copy", tmp.path().join("back").display()))
        .output()
        .unwrap();
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let v = rcross(
        &[
            "verify",
            &format!("oci:{}:copy", tmp.path().join("back").display()),
        ],
        &[],
    );
    assert!(v.status.success());
}

/// A build that puts an amd64 program into the arm64 image stops before anything is written.
#[test]
fn wrong_architecture_binary_stops_the_build() {
    if !have_compilers() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let proj = tmp.path().join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::copy(example().join("hello.c"), proj.join("hello.c")).unwrap();
    // The classic mistake: a hard-coded host compiler instead of $CC.
    std::fs::write(
        proj.join("rcross.toml"),
        r#"[image]
name = "bad"
platforms = ["linux/arm64", "linux/arm/v7"]
[build]
command = 'gcc -static -o "$RCROSS_OUT/hello" hello.c'
lang = "c"
[[artifact]]
from = "hello"
to = "/usr/bin/hello"
"#,
    )
    .unwrap();
    let layout = tmp.path().join("out");
    let o = rcross(
        &[
            "build",
            proj.to_str().unwrap(),
            "--output",
            &format!("oci:{}", layout.display()),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "linux/arm64: /usr/bin/hello: built for linux/amd64: exec format error on linux/arm64"
        ),
        "{err}"
    );
    assert!(err.contains("linux/arm/v7: /usr/bin/hello"), "{err}");
    assert!(err.contains("nothing was assembled or pushed"), "{err}");
    assert!(!layout.exists(), "no layout may be written");
}

#[test]
fn bad_project_files_and_failing_builds_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let o = rcross(&["build", tmp.path().to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("rcross.toml"));

    std::fs::write(
        tmp.path().join("rcross.toml"),
        "[image]\nname = \"x\"\nplatforms = [\"linux/arm46\"]\n[build]\ncommand = \"true\"\n[[artifact]]\nfrom = \"a\"\nto = \"/a\"\n",
    )
    .unwrap();
    let o = rcross(&["build", tmp.path().to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("rcross.toml:3: image.platforms"), "{err}");
    assert!(err.contains("did you mean linux/arm64"), "{err}");

    if !have_compilers() {
        return;
    }
    std::fs::write(
        tmp.path().join("rcross.toml"),
        "[image]\nname = \"x\"\nplatforms = [\"linux/arm64\"]\n[build]\ncommand = \"echo compiling; echo 'error: boom' >&2; exit 3\"\nlang = \"c\"\n[[artifact]]\nfrom = \"a\"\nto = \"/a\"\n",
    )
    .unwrap();
    let o = rcross(&["build", tmp.path().to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("linux/arm64") && err.contains("error: boom"),
        "{err}"
    );
}

/// A registry behind HTTP Basic auth (htpasswd): credentials come from the Docker config file
/// (`DOCKER_CONFIG`), the push works, and without them the error says how to log in and never
/// shows a secret.
#[test]
fn pushes_to_a_registry_with_basic_auth_from_docker_config() {
    if !have_compilers() {
        return;
    }
    let Some(registry) = common_registry::RealRegistry::start_with_auth("builder", "s3cret-pw")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ex = example();
    let ex = ex.to_str().unwrap();
    let tag = format!("{}/private/hello:1", registry.addr);
    let out = format!("oci:{}", tmp.path().join("img").display());
    let args = [
        "build",
        ex,
        "--platform",
        "linux/arm64",
        "-t",
        &tag,
        "--push",
        "--output",
        &out,
    ];

    let empty = tmp.path().join("no-creds");
    std::fs::create_dir_all(&empty).unwrap();
    let denied = rcross(&args, &[("DOCKER_CONFIG", empty.to_str().unwrap())]);
    assert_ne!(denied.status.code(), Some(0));
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(err.contains("docker login"), "{err}");

    let conf = tmp.path().join("docker");
    std::fs::create_dir_all(&conf).unwrap();
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("builder:s3cret-pw");
    std::fs::write(
        conf.join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, registry.addr),
    )
    .unwrap();
    let ok = rcross(&args, &[("DOCKER_CONFIG", conf.to_str().unwrap())]);
    assert!(ok.status.success());
    for o in [&denied, &ok] {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            !all.contains("s3cret-pw") && !all.contains(&auth),
            "secret leaked: {all}"
        );
    }
    let i = rcross(
        &["--json", "inspect", &tag],
        &[("DOCKER_CONFIG", conf.to_str().unwrap())],
    );
    assert!(i.status.success());
}
