//! Pushing images built with `rcross::oci` to Debian's docker-registry (distribution 2.8) on
//! 127.0.0.1, through a proxy that counts requests and injects faults; skopeo, an independent
//! client, reads the result. Needs the `docker-registry` and `skopeo` packages: missing, they
//! fail in strict mode (tests/prereq) and skip with a notice otherwise.

mod common_registry;
mod prereq;
mod push_common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common_registry::{require_tool, RealRegistry};
use push_common::{build_image, Fault, Proxy};
use rcross::oci::Compressor;
use rcross::registry::{
    Client, ClientOptions, DockerConfig, PushOptions, Reference, RegistryError,
};

/// Many attempts with short waits: faults are injected on purpose; no test asserts on time.
fn client(attempts: u32) -> Client {
    Client::new(
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(30),
            idle_read_timeout: Duration::from_secs(30),
            small_body_timeout: Duration::from_secs(30),
            attempts,
            backoff: Duration::from_millis(10),
            max_retry_after: Duration::from_millis(50),
            ..ClientOptions::default()
        },
        DockerConfig::default(),
    )
}

fn reference(addr: &str, repo: &str) -> Reference {
    format!("{addr}/{repo}").parse().unwrap()
}

fn tags() -> Vec<String> {
    vec!["1".to_string(), "latest".to_string()]
}

fn skopeo(args: &[&str]) -> Vec<u8> {
    let output = Command::new("skopeo").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "skopeo {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// (architecture, variant) of every entry of an index, as skopeo read it.
fn platforms(index: &[u8]) -> BTreeSet<(String, String)> {
    let index: serde_json::Value = serde_json::from_slice(index).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            assert_eq!(p["os"], "linux");
            (
                p["architecture"].as_str().unwrap().to_string(),
                p["variant"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn prerequisites() -> Option<RealRegistry> {
    let registry = RealRegistry::start()?;
    if !require_tool("skopeo", "skopeo") {
        return None;
    }
    Some(registry)
}

#[test]
fn push_lands_an_index_skopeo_reads_and_a_second_push_uploads_no_blob() {
    let Some(registry) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let built = build_image(dir.path(), "1", Compressor::default());
    let plan = rcross::registry::layout_push_plan(&built.layout, "1").unwrap();
    let proxy = Proxy::start(&registry.addr, |_, _| Fault::Pass);
    let client = client(3);
    let target = reference(&proxy.addr, "rcross/hello");

    let report = client
        .push_image(&target, &plan, &tags(), &PushOptions::default())
        .unwrap();
    assert_eq!(report.digest, built.index.digest);
    assert_eq!(report.tags, tags());
    assert_eq!(
        (report.blobs_uploaded, report.blobs_present),
        (7, 0),
        "one shared layer, three platform layers, three configs"
    );
    assert_eq!(proxy.count("POST", "/blobs/uploads/"), 7);
    assert!(
        proxy.count("PATCH", "/blobs/uploads/") >= 3,
        "the 9 MiB layer goes up in <= 4 MiB chunks: {:?}",
        proxy.log()
    );
    // Manifests by digest (together, in any order) before the index, the index before the
    // tags.
    let puts: Vec<String> = proxy
        .log()
        .into_iter()
        .filter(|(m, t)| m == "PUT" && t.contains("/manifests/"))
        .map(|(_, t)| t.rsplit('/').next().unwrap().to_string())
        .collect();
    let n = built.manifests.len();
    let mut first: Vec<String> = puts[..n].to_vec();
    first.sort();
    let mut manifests: Vec<String> = built.manifests.iter().map(|d| d.digest.clone()).collect();
    manifests.sort();
    assert_eq!(first, manifests);
    let mut rest = vec![built.index.digest.clone()];
    rest.extend(tags());
    assert_eq!(puts[n..], rest);

    // skopeo sees our exact index under both tags, with the three platforms.
    let index_bytes = built.layout.read_blob(&built.index.digest).unwrap();
    for tag in tags() {
        let raw = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/rcross/hello:{tag}", registry.addr),
        ]);
        assert_eq!(raw, index_bytes, "tag {tag}");
    }
    assert_eq!(
        platforms(&index_bytes),
        [("amd64", ""), ("arm", "v7"), ("arm64", "v8")]
            .iter()
            .map(|(a, v)| (a.to_string(), v.to_string()))
            .collect()
    );
    let arm: serde_json::Value = serde_json::from_slice(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--override-arch=arm",
        "--override-variant=v7",
        &format!("docker://{}/rcross/hello:1", registry.addr),
    ]))
    .unwrap();
    assert_eq!(arm["Architecture"], "arm", "{arm}");
    assert_eq!(arm["Os"], "linux", "{arm}");

    // skopeo copies every platform out, checking every digest on the way.
    let copy = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--quiet",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{}/rcross/hello:1", registry.addr),
        &format!("oci:{}:copied", copy.path().display()),
    ]);
    let copied: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copy.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(
        copied["manifests"][0]["digest"],
        built.index.digest.as_str()
    );

    // Again: every blob is there, nothing is uploaded.
    proxy.clear();
    let again = client
        .push_image(&target, &plan, &tags(), &PushOptions::default())
        .unwrap();
    assert_eq!(again.digest, built.index.digest);
    assert_eq!((again.blobs_uploaded, again.blobs_present), (0, 7));
    assert_eq!(proxy.count("HEAD", "/blobs/"), 7);
    assert_eq!(proxy.count("POST", "/blobs/"), 0, "{:?}", proxy.log());
    assert_eq!(proxy.count("PATCH", "/blobs/"), 0);
    assert_eq!(proxy.count("PUT", "/blobs/"), 0);

    // A push to another repository of the same registry mounts instead of uploading.
    proxy.clear();
    let other = reference(&proxy.addr, "rcross/other");
    let mounted = client
        .push_image(
            &other,
            &plan,
            &tags(),
            &PushOptions {
                mount_from: vec!["rcross/hello".to_string()],
                ..PushOptions::default()
            },
        )
        .unwrap();
    assert_eq!((mounted.blobs_mounted, mounted.blobs_uploaded), (7, 0));
    assert_eq!(proxy.count("PATCH", "/blobs/"), 0);
    drop(registry);
}

#[test]
fn faults_on_a_share_of_requests_still_end_with_the_same_digest() {
    let Some(registry) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let built = build_image(dir.path(), "1", Compressor::default());
    let plan = rcross::registry::layout_push_plan(&built.layout, "1").unwrap();
    // The first and third chunk sent are reset and refused, so the chunked upload must recover;
    // besides, resets, 500s and 429s hit a tenth of all requests, whatever they are. (Each try
    // of a chunked upload needs six requests in a row to pass, so the share stays modest.)
    let patches = AtomicUsize::new(0);
    let proxy = Proxy::start(&registry.addr, move |request, n| {
        if request.method == "PATCH" {
            match patches.fetch_add(1, Ordering::SeqCst) {
                0 => return Fault::Reset,
                2 => return Fault::Status(500, Vec::new()),
                _ => {}
            }
        }
        match n % 30 {
            4 => Fault::Reset,
            14 => Fault::Status(502, Vec::new()),
            24 => Fault::Status(429, vec![("Retry-After".into(), "1".into())]),
            _ => Fault::Pass,
        }
    });
    let target = reference(&proxy.addr, "rcross/faulty");
    let report = client(15)
        .push_image(&target, &plan, &tags(), &PushOptions::default())
        .unwrap();
    assert_eq!(report.digest, built.index.digest);
    // The first chunk's session held nothing, so it starts again; the refused third chunk
    // goes on in its session at the offset the registry confirms. Each asks the registry first.
    assert!(
        proxy.count("POST", "/blobs/uploads/") >= 8 && proxy.count("GET", "/blobs/uploads/") >= 2,
        "failed chunks asked the registry how far the upload got: {:?}",
        proxy.log()
    );

    // What landed is the same image, read without the proxy.
    let direct = client(1);
    for tag in tags() {
        let manifest = direct
            .get_manifest(&reference(&registry.addr, &format!("rcross/faulty:{tag}")))
            .unwrap();
        assert_eq!(manifest.digest, built.index.digest);
    }
    let copy = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--quiet",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{}/rcross/faulty:1", registry.addr),
        &format!("oci:{}:copied", copy.path().display()),
    ]);
    drop(registry);
}

#[test]
fn a_push_that_fails_part_way_tags_nothing() {
    let Some(registry) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let built = build_image(dir.path(), "1", Compressor::default());
    let plan = rcross::registry::layout_push_plan(&built.layout, "1").unwrap();
    let broken = built.manifests[1].digest.clone();
    let proxy = Proxy::start(&registry.addr, move |request, _| {
        if request.method == "PUT" && request.target.ends_with(&broken) {
            Fault::Status(503, Vec::new())
        } else {
            Fault::Pass
        }
    });
    let target = reference(&proxy.addr, "rcross/partial");
    let e = client(3)
        .push_image(&target, &plan, &tags(), &PushOptions::default())
        .unwrap_err();
    assert_eq!(e.status(), Some(503), "{e}");
    let message = e.to_string();
    assert!(
        message.contains(&built.manifests[1].digest) && message.contains("after 3 attempts"),
        "{message}"
    );
    assert_eq!(
        proxy.count("PUT", &built.manifests[1].digest),
        3,
        "retried, within bounds"
    );
    assert_eq!(proxy.count("PUT", &built.index.digest), 0);

    let direct = client(1);
    for name in ["rcross/partial:1", "rcross/partial:latest"] {
        let missing = direct.get_manifest(&reference(&registry.addr, name));
        assert!(
            matches!(missing, Err(RegistryError::Status { status: 404, .. })),
            "{name}: {missing:?}"
        );
    }
    drop(registry);
}

#[test]
fn zstd_images_push_and_copy() {
    let Some(registry) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let built = build_image(dir.path(), "z", Compressor::Zstd { level: 3 });
    let plan = rcross::registry::layout_push_plan(&built.layout, "z").unwrap();
    let target = reference(&registry.addr, "rcross/zstd");
    let report = client(3)
        .push_image(&target, &plan, &["z".to_string()], &PushOptions::default())
        .unwrap();
    assert_eq!(report.digest, built.index.digest);
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/rcross/zstd:z", registry.addr),
    ]);
    assert_eq!(raw, built.layout.read_blob(&built.index.digest).unwrap());
    drop(registry);
}

/// The push benchmark's driver (`examples/oci_push_dir.rs`), built with the profile of this
/// test, next to it: `target/PROFILE/examples/` beside `target/PROFILE/deps/`. Examples are not
/// among the binaries cargo builds for an integration test, so the test builds it (a no-op when
/// it is up to date).
fn oci_push_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(std::path::Path::parent).unwrap();
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "--quiet", "--example", "oci_push_dir"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cargo.arg("--release");
    }
    let status = cargo.status().unwrap();
    assert!(
        status.success(),
        "cargo build --example oci_push_dir: {status}"
    );
    let path = profile_dir.join("examples/oci_push_dir");
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

#[test]
fn the_bench_driver_writes_and_pushes_the_same_image_twice() {
    let Some(registry) = prerequisites() else {
        return;
    };
    let input = tempfile::tempdir().unwrap();
    std::fs::create_dir(input.path().join("bin")).unwrap();
    std::fs::write(
        input.path().join("bin/tool"),
        push_common::noise(5 << 20, 3),
    )
    .unwrap();
    let driver = oci_push_dir();
    let run = |layout: &std::path::Path, repo: &str| -> serde_json::Value {
        let output = Command::new(&driver)
            .arg("--layout")
            .arg(layout)
            .arg("--platform")
            .arg("linux/arm/v7")
            .arg("--push")
            .arg(format!("{}/{repo}:v1", registry.addr))
            .arg(input.path())
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = run(a.path(), "rcross/cli");
    let second = run(b.path(), "rcross/cli");
    assert_eq!(first["index"], second["index"], "same input, same digest");
    assert_eq!(first["push"]["digest"], first["index"]);
    assert_eq!(second["push"]["uploaded"], 0, "{second}");
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/rcross/cli:v1", registry.addr),
    ]);
    assert_eq!(
        platforms(&raw),
        [("arm".to_string(), "v7".to_string())]
            .into_iter()
            .collect()
    );
    drop(registry);
}
