//! `rcross manifest create` end to end against a real registry (Debian's docker-registry on
//! loopback): two single-platform images pushed separately (as two CI jobs would, one recording
//! what it pushed with `--digest-file`) are merged into one index that skopeo reads; a duplicate
//! platform is refused.

mod common_registry;
mod prereq;

use common_registry::{example_hello as example, platforms_of, skopeo_raw};

fn rcross(args: &[&str]) -> Output {
    common_registry::rcross(args, &[])
}

use serde_json::Value;
use std::process::{Command, Output};

#[test]
fn merges_two_separately_pushed_images_and_refuses_duplicates() {
    for tool in ["aarch64-linux-gnu-gcc", "make"] {
        if !common_registry::require_tool(tool, "see tests/install-deps.sh") {
            return;
        }
    }
    if !common_registry::require_tool("skopeo", "skopeo") {
        return;
    }
    let Some(registry) = common_registry::RealRegistry::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ex = example();
    let ex = ex.to_str().unwrap();
    let reg = &registry.addr;
    let amd = format!("{reg}/hello-amd64:1");
    let arm = format!("{reg}/hello-arm64:1");
    let digest_file = tmp.path().join("arm64.digest");
    let out_amd = format!("oci:{}", tmp.path().join("amd").display());
    let out_arm = format!("oci:{}", tmp.path().join("arm").display());

    let b1 = rcross(&[
        "build",
        ex,
        "--platform",
        "linux/amd64",
        "-t",
        &amd,
        "--push",
        "--output",
        &out_amd,
    ]);
    assert!(b1.status.success());
    let b2 = rcross(&[
        "build",
        ex,
        "--platform",
        "linux/arm64",
        "-t",
        &arm,
        "--push",
        "--output",
        &out_arm,
        "--digest-file",
        digest_file.to_str().unwrap(),
    ]);
    assert!(b2.status.success());

    // The digest file: the index digest, then REGISTRY/REPO@DIGEST per repository.
    let text = std::fs::read_to_string(&digest_file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let arm_digest = String::from_utf8_lossy(&b2.stdout).trim().to_string();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0], arm_digest);
    assert!(lines[0].starts_with("sha256:"), "{text}");
    assert_eq!(lines[1], format!("{reg}/hello-arm64@{arm_digest}"));

    // Merge: one source by tag, the other by the digest the file recorded.
    let multi = format!("{reg}/hello:multi");
    let m = rcross(&[
        "--json", "manifest", "create", "-t", &multi, &amd, lines[1], "--verify",
    ]);
    assert!(m.status.success());
    let j: Value = serde_json::from_slice(&m.stdout).unwrap();
    let index = skopeo_raw(&format!("docker://{multi}"));
    let mut platforms = platforms_of(&index);
    platforms.sort();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
    assert_eq!(j["platforms"].as_array().unwrap().len(), 2, "{j}");
    assert_eq!(j["tags"][0].as_str().unwrap(), multi);

    // The index digest rcross printed is the one the registry serves.
    let raw = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{multi}"),
        ])
        .output()
        .unwrap();
    let inspected: Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert!(inspected["Digest"].as_str().is_some());
    let index_bytes = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{multi}"),
        ])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(
        j["digest"].as_str().unwrap(),
        common_registry::sha256(&index_bytes)
    );

    // Each platform's image is readable from the target repository (blobs were brought over).
    for d in index["manifests"].as_array().unwrap() {
        let digest = d["digest"].as_str().unwrap();
        let ok = Command::new("skopeo")
            .args([
                "inspect",
                "--tls-verify=false",
                &format!("docker://{reg}/hello@{digest}"),
            ])
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
    }

    // The same platform twice: refused, naming both sources, nothing tagged.
    let dup_tag = format!("{reg}/hello:dup");
    let dup = rcross(&["manifest", "create", "-t", &dup_tag, &amd, &multi]);
    assert_eq!(dup.status.code(), Some(2));
    let err = String::from_utf8_lossy(&dup.stderr);
    assert!(err.contains("linux/amd64"), "{err}");
    assert!(err.contains(&amd) && err.contains(&multi), "{err}");

    // Another registry as a source: refused with the reason.
    let cross = rcross(&["manifest", "create", "-t", &dup_tag, "127.0.0.9:1/x:1"]);
    assert_eq!(cross.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&cross.stderr).contains("between registries"));
}

// ---------------------------------------------------------------------------------------------
// Publishing what was verified (issue 10 §5)
// ---------------------------------------------------------------------------------------------

mod push_common;

use push_common::{Fault, Proxy};
use rcross::oci::{Compressor, FileContent, ImageSpec, LayerEntry, LayerOptions, OciLayout};
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The real registry, or a failure naming the packages to install.
fn registry_or_fail() -> common_registry::RealRegistry {
    for (tool, package) in [("docker-registry", "docker-registry"), ("skopeo", "skopeo")] {
        assert!(
            which::which(tool).is_ok(),
            "{tool} is required: apt-get install -y {package}"
        );
    }
    common_registry::RealRegistry::start().expect("docker-registry did not start")
}

/// A single-platform linux/arm64 image in a fresh layout at `dir`, tagged `name`, holding one
/// program: rcross's self-test program for `program_arch` (so an amd64 one is wrong-arch).
fn arm64_image(dir: &Path, name: &str, program_arch: &str) -> String {
    let layout = OciLayout::create(dir).unwrap();
    let arm64: rcross::Platform = "linux/arm64".parse().unwrap();
    let program = rcross::binfmt::selftest::program(&program_arch.parse().unwrap())
        .expect("self-test program");
    let layer = layout
        .write_layer(
            &[
                LayerEntry::directory("bin"),
                LayerEntry::file("bin/app", FileContent::Bytes(program), 0o755),
            ],
            &LayerOptions {
                compression: Compressor::default(),
                threads: 1,
                mtime: 0,
            },
        )
        .unwrap();
    let manifest = layout
        .write_image(&ImageSpec {
            platform: arm64,
            layers: vec![layer],
            history: Vec::new(),
            run: Default::default(),
            created: 0,
            annotations: Default::default(),
        })
        .unwrap();
    layout.tag(&manifest, name).unwrap();
    manifest.digest
}

/// `PUT /v2/REPO/manifests/REFERENCE` straight to the registry (no proxy): what another CI job
/// moving a tag does.
fn put_manifest(addr: &str, repo: &str, reference: &str, media_type: &str, body: &[u8]) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "PUT /v2/{repo}/manifests/{reference} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {media_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "moving the tag: {answer}"
    );
}

/// The manifest bytes a layout holds under `digest`.
fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap()
}

/// Two images pushed to REG/src (`good`: an arm64 program; `bad`: an amd64 program labelled
/// arm64), the tag `moving` on `first`, and a proxy that moves `moving` to `second` just before
/// it forwards the second request for that tag. Returns the registry, the proxy, both digests
/// and how many times the tag was resolved.
struct Race {
    _registry: common_registry::RealRegistry,
    proxy: Proxy,
    good: String,
    bad: String,
    tag_reads: Arc<AtomicUsize>,
    _tmp: tempfile::TempDir,
}

fn race(first_is_good: bool) -> Race {
    let registry = registry_or_fail();
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry.addr.clone();
    let mut digests = Vec::new();
    for (name, arch) in [("good", "linux/arm64"), ("bad", "linux/amd64")] {
        let dir = tmp.path().join(name);
        let digest = arm64_image(&dir, name, arch);
        let source = format!("oci:{}:{name}", dir.display());
        let pushed = rcross(&["push", &source, &format!("{reg}/src:{name}")]);
        assert!(pushed.status.success(), "pushing {name}");
        digests.push((digest.clone(), blob(&dir, &digest)));
    }
    let (good, bad) = (digests[0].clone(), digests[1].clone());
    let (first, second) = if first_is_good {
        (good.clone(), bad.clone())
    } else {
        (bad.clone(), good.clone())
    };
    const MEDIA: &str = "application/vnd.oci.image.manifest.v1+json";
    put_manifest(&reg, "src", "moving", MEDIA, &first.1);

    let tag_reads = Arc::new(AtomicUsize::new(0));
    let reads = Arc::clone(&tag_reads);
    let upstream = reg.clone();
    let proxy = Proxy::start(&reg, move |req, _| {
        if req.method == "GET" && req.path() == "/v2/src/manifests/moving" {
            // Deterministic race: the tag moves after the first resolution and before the
            // second one is answered.
            if reads.fetch_add(1, Ordering::SeqCst) == 1 {
                put_manifest(&upstream, "src", "moving", MEDIA, &second.1);
            }
        }
        Fault::Pass
    });
    Race {
        _registry: registry,
        proxy,
        good: good.0,
        bad: bad.0,
        tag_reads,
        _tmp: tmp,
    }
}

/// The tag resolves to a wrong-arch image first and moves to a good one before the second
/// resolution: `--verify` must judge what it publishes, so it refuses; on the old code the good
/// image was verified and the bad one published.
#[test]
fn verify_refuses_the_digest_it_would_publish_even_if_the_tag_moves_to_a_good_one() {
    let r = race(false);
    let p = &r.proxy.addr;
    let target = format!("{p}/dst:multi");
    let out = rcross(&[
        "--json",
        "manifest",
        "create",
        "-t",
        &target,
        &format!("{p}/src:moving"),
        "--verify",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        let index: Value = serde_json::from_slice(&out.stdout).unwrap();
        panic!(
            "published although the verified image was not the published one: {index}\n\
             bad (unverified) {}, good (verified) {}",
            r.bad, r.good
        );
    }
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("verification failed"), "{err}");
    assert!(err.contains("bin/app"), "{err}");
    assert_eq!(
        r.tag_reads.load(Ordering::SeqCst),
        1,
        "the source tag is resolved once: {:?}",
        r.proxy.log()
    );
    assert_eq!(
        r.proxy.count("PUT", "/v2/dst/manifests/"),
        0,
        "nothing published: {:?}",
        r.proxy.log()
    );
}

/// The tag resolves to a good image first and moves to a wrong-arch one before the second
/// resolution: the good digest is verified and that digest, and only it, is published.
#[test]
fn verify_publishes_exactly_the_digest_it_verified_when_the_tag_moves_away() {
    let r = race(true);
    let p = &r.proxy.addr;
    let target = format!("{p}/dst:multi");
    let out = rcross(&[
        "--json",
        "manifest",
        "create",
        "-t",
        &target,
        &format!("{p}/src:moving"),
        "--verify",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(r.tag_reads.load(Ordering::SeqCst), 1, "{:?}", r.proxy.log());
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["platforms"][0]["digest"], r.good.as_str(), "{j}");
    let index = skopeo_raw(&format!("docker://{target}"));
    let published: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(published, [r.good.as_str()], "{index}");
}

/// `rcross push oci:DIR REG/REPO@sha256:…` is refused before anything is sent (the old code
/// pushed to `latest`).
#[test]
fn push_to_a_digest_reference_is_refused() {
    let registry = registry_or_fail();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    let digest = arm64_image(&dir, "latest", "linux/arm64");
    let reg = &registry.addr;
    let target = format!("{reg}/pinned@{digest}");
    let out = rcross(&["push", &format!("oci:{}", dir.display()), &target]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&target), "{err}");
    assert!(
        err.contains("--digest-file") && err.contains("tag"),
        "{err}"
    );
    // Nothing reached the registry: no repository, no `latest`.
    let latest = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reg}/pinned:latest"))
        .output()
        .unwrap();
    assert!(!latest.status.success(), "something was pushed to latest");
    // A tag next to it is refused too, before the first push starts.
    let out = rcross(&[
        "push",
        &format!("oci:{}", dir.display()),
        &format!("{reg}/other:1"),
        &target,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let other = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reg}/other:1"))
        .output()
        .unwrap();
    assert!(
        !other.status.success(),
        "other:1 was pushed before the refusal"
    );
}
