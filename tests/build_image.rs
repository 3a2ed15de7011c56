//! `rcross build` end to end: the bundled example cross-compiled for three platforms, verified,
//! assembled into an OCI layout that skopeo (an independent client) reads, pushed to a real
//! registry (Debian's docker-registry on loopback) under two tags, reproducible, and stopped
//! before anything is written when a wrong-architecture binary is planted.

mod common_registry;
mod prereq;

use common_registry::{example_hello as example, platforms_of, rcross, skopeo_raw};

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn have_compilers() -> bool {
    for cc in ["aarch64-linux-gnu-gcc", "arm-linux-gnueabihf-gcc", "make"] {
        if !common_registry::require_tool(cc, "see tests/install-deps.sh") {
            return false;
        }
    }
    true
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
            // Both builds compile: the digests are compared, not a cache hit with itself.
            "--no-cache",
        ],
        &[],
    );
    assert!(a.status.success());
    let b = rcross(
        &[
            "build",
            ex,
            "--platform",
            PLATFORMS,
            "--output",
            &out2,
            "--no-cache",
        ],
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

// ---------------------------------------------------------------------------------------------
// Base images and docker-archive output
// ---------------------------------------------------------------------------------------------

/// A tiny base project: one text file per platform, Env, Cmd and WorkingDir in its config.
fn write_base_project(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("rcross.toml"),
        r#"[image]
name = "base"
platforms = ["linux/amd64", "linux/arm64"]
[build]
command = 'echo "base for $RCROSS_PLATFORM" > "$RCROSS_OUT/base.txt"'
lang = "c"
[[artifact]]
from = "base.txt"
to = "/etc/base.txt"
mode = "0644"
[config]
env = { BASE_VAR = "from-base", PATH = "/usr/bin:/bin" }
cmd = ["/bin/sh"]
workdir = "/srv"
"#,
    )
    .unwrap();
}

/// The hello example on `base`, for `platforms`, with one Env entry of its own.
fn write_app_project(dir: &Path, base: &str, platforms: &str) {
    std::fs::create_dir_all(dir).unwrap();
    for f in ["hello.c", "Makefile"] {
        std::fs::copy(example().join(f), dir.join(f)).unwrap();
    }
    std::fs::write(
        dir.join("rcross.toml"),
        format!(
            r#"[image]
name = "app"
platforms = {platforms}
base = "{base}"
[build]
command = 'make -s CC="$CC" OUT="$RCROSS_OUT/hello"'
lang = "c"
[[artifact]]
from = "hello"
to = "/usr/bin/hello"
mode = "0755"
[config]
entrypoint = ["/usr/bin/hello"]
env = {{ APP_VAR = "app" }}
"#
        ),
    )
    .unwrap();
}

/// A blob of an OCI layout, as JSON.
fn layout_json(dir: &Path, digest: &str) -> Value {
    let path = dir
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// (platform, manifest digest, manifest, config) of the index named `latest` in a layout.
fn layout_images(dir: &Path) -> Vec<(String, String, Value, Value)> {
    let index_json: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let index_digest = index_json["manifests"][0]["digest"].as_str().unwrap();
    let index = layout_json(dir, index_digest);
    let platforms = platforms_of(&index);
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .zip(platforms)
        .map(|(d, p)| {
            let digest = d["digest"].as_str().unwrap().to_string();
            let m = layout_json(dir, &digest);
            let c = layout_json(dir, m["config"]["digest"].as_str().unwrap());
            (p, digest, m, c)
        })
        .collect()
}

fn layer_digests(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// Each platform of `app` is the same platform of `base` plus one layer: the same compressed
/// blobs, the same diff_ids, base Env inherited and extended, the base recorded in annotations.
fn assert_built_on(app: &Path, base: &Path) {
    let base_images = layout_images(base);
    let app_images = layout_images(app);
    assert_eq!(app_images.len(), 2);
    for (p, _, m, c) in &app_images {
        let (_, base_digest, bm, bc) = base_images.iter().find(|(bp, ..)| bp == p).unwrap();
        let layers = layer_digests(m);
        let base_layers = layer_digests(bm);
        assert_eq!(layers.len(), base_layers.len() + 1, "{p}");
        assert_eq!(layers[..base_layers.len()], base_layers[..], "{p}");
        let diff_ids = c["rootfs"]["diff_ids"].as_array().unwrap();
        let base_diff_ids = bc["rootfs"]["diff_ids"].as_array().unwrap();
        assert_eq!(diff_ids[..base_diff_ids.len()], base_diff_ids[..], "{p}");
        let env: Vec<&str> = c["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert!(env.contains(&"BASE_VAR=from-base"), "{p}: {env:?}");
        assert!(env.contains(&"APP_VAR=app"), "{p}: {env:?}");
        assert_eq!(c["config"]["WorkingDir"], "/srv", "{p}");
        assert_eq!(c["config"]["Entrypoint"][0], "/usr/bin/hello", "{p}");
        assert!(
            c["config"]["Cmd"].is_null(),
            "our entrypoint drops the base's Cmd"
        );
        assert_eq!(c["history"].as_array().unwrap().len(), layers.len(), "{p}");
        assert_eq!(
            m["annotations"]["org.opencontainers.image.base.digest"],
            base_digest.as_str(),
            "{p}: {m}"
        );
    }
}

#[test]
fn builds_on_a_base_image_from_a_layout_and_from_a_registry() {
    if !have_compilers() || !common_registry::require_tool("skopeo", "skopeo") {
        return;
    }
    let Some(registry) = common_registry::RealRegistry::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let t = |p: &str| tmp.path().join(p);

    // The base: two platforms, into a layout and into the registry.
    write_base_project(&t("base"));
    let base_tag = format!("{}/base:1", registry.addr);
    let b = rcross(
        &[
            "build",
            t("base").to_str().unwrap(),
            "-t",
            &base_tag,
            "--push",
            "--output",
            &format!("oci:{}", t("base-oci").display()),
        ],
        &[],
    );
    assert!(b.status.success());

    // FROM the layout: twice, the same digest.
    let platforms = r#"["linux/amd64", "linux/arm64"]"#;
    write_app_project(
        &t("app"),
        &format!("oci:{}", t("base-oci").display()),
        platforms,
    );
    let mut digests = Vec::new();
    for out in ["app1", "app2"] {
        let o = rcross(
            &[
                "build",
                t("app").to_str().unwrap(),
                "--output",
                &format!("oci:{}", t(out).display()),
            ],
            &[],
        );
        assert!(o.status.success());
        digests.push(String::from_utf8_lossy(&o.stdout).trim().to_string());
    }
    assert_eq!(digests[0], digests[1], "a rebuild gives the same digest");
    assert_built_on(&t("app1"), &t("base-oci"));
    let index = skopeo_raw(&format!("oci:{}:latest", t("app1").display()));
    assert_eq!(platforms_of(&index), ["linux/amd64", "linux/arm64/v8"]);
    // The layout is self-contained: skopeo copies every platform out of it.
    let c = Command::new("skopeo")
        .args(["copy", "--all"])
        .arg(format!("oci:{}:latest", t("app1").display()))
        .arg(format!("oci:{}:copy", t("app1-copy").display()))
        .output()
        .unwrap();
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let v = rcross(&["verify", &format!("oci:{}", t("app1").display())], &[]);
    assert!(v.status.success());

    // FROM the registry, pushed into the same registry: base layers are mounted, not uploaded.
    write_app_project(&t("app-reg"), &base_tag, platforms);
    let app_tag = format!("{}/app:1", registry.addr);
    let app_dir = t("app-reg");
    let app_out = format!("oci:{}", t("app-reg-oci").display());
    let args = [
        "--json",
        "build",
        app_dir.to_str().unwrap(),
        "-t",
        &app_tag,
        "--push",
        "--output",
        &app_out,
    ];
    let first = rcross(&args, &[]);
    assert!(first.status.success());
    let j: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(
        j["pushed"][0]["blobs_mounted"], 2,
        "one base layer per platform mounted from base: {j}"
    );
    assert_built_on(&t("app-reg-oci"), &t("base-oci"));
    for (_, _, m, _) in layout_images(&t("app-reg-oci")) {
        assert_eq!(
            m["annotations"]["org.opencontainers.image.base.name"],
            base_tag.as_str()
        );
    }
    let index = skopeo_raw(&format!("docker://{app_tag}"));
    assert_eq!(platforms_of(&index), ["linux/amd64", "linux/arm64/v8"]);
    let d = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--override-arch", "arm64"])
        .arg(format!("docker://{app_tag}"))
        .output()
        .unwrap();
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    let inspected: Value = serde_json::from_slice(&d.stdout).unwrap();
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 2);
    assert!(inspected["Env"]
        .as_array()
        .unwrap()
        .contains(&Value::from("BASE_VAR=from-base")));
    let v = rcross(&["verify", &app_tag], &[]);
    assert!(v.status.success());

    // Rebuild and re-push: the same digest, nothing uploaded.
    let second = rcross(&args, &[]);
    assert!(second.status.success());
    let j2: Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(j2["index_digest"], j["index_digest"]);
    assert_eq!(j2["pushed"][0]["blobs_uploaded"], 0, "{j2}");
}

/// A single-manifest amd64 base written with rcross's OCI writer.
fn write_amd64_only_base(dir: &Path) {
    use rcross::oci::{FileContent, ImageSpec, LayerEntry, LayerOptions, OciLayout, RunConfig};
    let layout = OciLayout::create(dir).unwrap();
    let layer = layout
        .write_layer(
            &[LayerEntry::file(
                "etc/base.txt",
                FileContent::Bytes(b"base\n".to_vec()),
                0o644,
            )],
            &LayerOptions::default(),
        )
        .unwrap();
    let spec = ImageSpec {
        platform: "linux/amd64".parse().unwrap(),
        layers: vec![layer],
        history: Vec::new(),
        run: RunConfig {
            env: vec!["BASE_VAR=amd64-only".into()],
            ..RunConfig::default()
        },
        created: 0,
        annotations: Default::default(),
    };
    let manifest = layout.write_image(&spec).unwrap();
    layout.tag(&manifest, "1").unwrap();
}

#[test]
fn a_base_without_the_platform_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    write_amd64_only_base(&base);
    let app = tmp.path().join("app");
    write_app_project(
        &app,
        &format!("oci:{}:1", base.display()),
        r#"["linux/amd64", "linux/arm64"]"#,
    );
    let out = tmp.path().join("out");
    let o = rcross(
        &[
            "build",
            app.to_str().unwrap(),
            "--output",
            &format!("oci:{}", out.display()),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("image.base"), "{err}");
    assert!(err.contains("has no linux/arm64 image"), "{err}");
    assert!(err.contains("it has: linux/amd64"), "{err}");
    assert!(!out.exists(), "nothing is built or written");

    // A base that does not exist names the layout.
    write_app_project(
        &app,
        &format!("oci:{}", tmp.path().join("nope").display()),
        r#"["linux/amd64"]"#,
    );
    let o = rcross(&["build", app.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("image.base") && err.contains("nope"), "{err}");
}

#[test]
fn docker_archive_output_holds_one_platform() {
    if !have_compilers() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    write_amd64_only_base(&base);
    let app = tmp.path().join("app");
    write_app_project(
        &app,
        &format!("oci:{}:1", base.display()),
        r#"["linux/amd64"]"#,
    );
    let file = tmp.path().join("app.tar");
    let o = rcross(
        &[
            "build",
            app.to_str().unwrap(),
            "-t",
            "example.org/app:1",
            "--output",
            &format!("docker-archive:{}", file.display()),
        ],
        &[],
    );
    assert!(o.status.success());

    // manifest.json → config and uncompressed layer tars whose sha256 are the diff_ids.
    let mut files = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(std::fs::File::open(&file).unwrap());
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut content).unwrap();
        files.insert(name, content);
    }
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let manifest = manifest.as_array().unwrap();
    assert_eq!(manifest.len(), 1);
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["example.org/app:1"])
    );
    let config_name = manifest[0]["Config"].as_str().unwrap();
    let config_bytes = &files[config_name];
    assert_eq!(
        format!(
            "{}.json",
            common_registry::sha256(config_bytes).trim_start_matches("sha256:")
        ),
        config_name
    );
    let config: Value = serde_json::from_slice(config_bytes).unwrap();
    assert_eq!(config["architecture"], "amd64");
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    let layers = manifest[0]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "the base layer and ours");
    assert_eq!(diff_ids.len(), 2);
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        let content = &files[layer.as_str().unwrap()];
        assert_eq!(&common_registry::sha256(content), diff_id);
        assert!(
            content.len() > 512 && &content[257..262] == b"ustar",
            "an uncompressed tar"
        );
    }
    assert!(config["config"]["Env"]
        .as_array()
        .unwrap()
        .contains(&Value::from("BASE_VAR=amd64-only")));

    if common_registry::require_tool("skopeo", "skopeo") {
        let i = Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}", file.display()))
            .output()
            .unwrap();
        assert!(i.status.success(), "{}", String::from_utf8_lossy(&i.stderr));
        let v: Value = serde_json::from_slice(&i.stdout).unwrap();
        assert_eq!(v["Architecture"], "amd64");
        assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
    }

    // Two platforms cannot go into one docker archive.
    let o = rcross(
        &[
            "build",
            app.to_str().unwrap(),
            "--platform",
            "linux/amd64,linux/arm64",
            "--output",
            &format!("docker-archive:{}", tmp.path().join("two.tar").display()),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("docker load") && err.contains("--platform"),
        "{err}"
    );
    assert!(!tmp.path().join("two.tar").exists());
}
