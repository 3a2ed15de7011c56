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
