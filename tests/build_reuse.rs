//! `rcross build --push` on a fresh runner (issue 5 §6): layers the registry already has (found
//! through the pushed tags' configs, or `--cache-from`) are neither compressed nor uploaded, and
//! the image digest is the one a full build gives. Against Debian's docker-registry on loopback.

mod common_registry;
mod prereq;
mod push_common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common_registry::{rcross, sha256, RealRegistry};
use push_common::{Fault, Proxy};
use rcross::registry::{BlobSource, Client, PushBlob, PushManifest, PushOptions, Reference};
use serde_json::Value;

fn prerequisites() -> Option<RealRegistry> {
    for cc in ["aarch64-linux-gnu-gcc", "gcc"] {
        if !common_registry::require_tool(cc, "see tests/install-deps.sh") {
            return None;
        }
    }
    RealRegistry::start()
}

/// A two-platform project whose build copies `src/ARCH.txt` plus ~1 MiB of filler into the
/// image, so each platform's layer depends on its own source file only.
fn write_project(dir: &Path) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("rcross.toml"),
        r#"[image]
name = "reuse"
platforms = ["linux/amd64", "linux/arm64"]
[build]
command = 'cat "src/${RCROSS_PLATFORM#linux/}.txt" > "$RCROSS_OUT/data.txt" && seq 1 150000 >> "$RCROSS_OUT/data.txt"'
lang = "c"
[[artifact]]
from = "data.txt"
to = "/srv/data.txt"
mode = "0644"
"#,
    )
    .unwrap();
    for arch in ["amd64", "arm64"] {
        std::fs::write(dir.join(format!("src/{arch}.txt")), format!("{arch} v1\n")).unwrap();
    }
}

/// A copy of the project as a fresh clone has it: no .rcross.
fn fresh_copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("src")).unwrap();
    std::fs::copy(from.join("rcross.toml"), to.join("rcross.toml")).unwrap();
    for arch in ["amd64", "arm64"] {
        let f = format!("src/{arch}.txt");
        std::fs::copy(from.join(&f), to.join(&f)).unwrap();
    }
}

struct Built {
    json: Value,
    stderr: String,
}

fn build(dir: &Path, extra: &[&str]) -> Built {
    build_with(dir, extra, &[])
}

/// `rcross --json build DIR EXTRA…` with `env` added (each call gets its own empty user cache
/// unless `env` names one).
fn build_with(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Built {
    let mut args = vec!["--json", "build", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = rcross(&args, env);
    assert!(out.status.success(), "rcross build failed");
    Built {
        json: serde_json::from_slice(&out.stdout).unwrap(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn push(dir: &Path, tag: &str, extra: &[&str]) -> Built {
    let mut args = vec!["-t", tag, "--push"];
    args.extend_from_slice(extra);
    build(dir, &args)
}

fn uploaded(b: &Built) -> u64 {
    b.json["pushed"][0]["blobs_uploaded"].as_u64().unwrap()
}

fn reused(b: &Built) -> Vec<Value> {
    b.json["reused_layers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn layout(dir: &Path) -> PathBuf {
    dir.join(".rcross/oci")
}

#[test]
fn a_fresh_copy_reuses_every_layer_uploads_nothing_and_gets_the_same_digest() {
    let Some(registry) = prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (first_dir, fresh_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    write_project(&first_dir);
    let tag = format!("{}/app:1", registry.addr);

    let first = push(&first_dir, &tag, &[]);
    assert_eq!(uploaded(&first), 4, "two layers, two configs");
    assert!(
        reused(&first).is_empty(),
        "nothing to reuse on a first push"
    );
    let digest = first.json["index_digest"].as_str().unwrap().to_string();

    fresh_copy(&first_dir, &fresh_dir);
    let again = push(&fresh_dir, &tag, &[]);
    assert_eq!(again.json["index_digest"], digest.as_str());
    assert_eq!(uploaded(&again), 0, "{}", again.json);
    assert_eq!(again.json["pushed"][0]["blobs_present"], 4);
    let r = reused(&again);
    assert_eq!(r.len(), 2, "{}", again.json);
    assert!(r
        .iter()
        .all(|l| l["stored"] == false && l["from"].as_str().unwrap().ends_with("/app")));
    assert!(
        again.stderr.contains("2 layer(s) reused from 127.0.0.1:")
            && again.stderr.contains("not stored locally"),
        "{}",
        again.stderr
    );

    // The default layout lacks the reused layers, and says so where it matters.
    let dir = layout(&fresh_dir);
    let missing = r[0]["digest"].as_str().unwrap();
    assert!(!dir
        .join("blobs/sha256")
        .join(missing.trim_start_matches("sha256:"))
        .exists());
    let v = rcross(&["verify", &format!("oci:{}", dir.display())], &[]);
    assert!(!v.status.success());
    let err = String::from_utf8_lossy(&v.stderr);
    assert!(
        err.contains(missing) && err.contains("--output oci:DIR") && !err.contains("panicked"),
        "{err}"
    );
    let i = rcross(
        &[
            "inspect",
            "--no-verify",
            &format!("oci:{}:1", dir.display()),
        ],
        &[],
    );
    assert!(i.status.success(), "manifests and configs are all there");
    // rcross push of that layout to another repository mounts the reused layers.
    let other = format!("{}/copy:1", registry.addr);
    let p = rcross(
        &[
            "--json",
            "push",
            &format!("oci:{}:1", dir.display()),
            &other,
        ],
        &[],
    );
    assert!(p.status.success());
    let pj: Value = serde_json::from_slice(&p.stdout).unwrap();
    assert_eq!(pj[0]["digest"], digest.as_str());
    assert_eq!(pj[0]["blobs_mounted"], 2, "{pj}");

    // An explicit --output gets every blob (downloaded, not compressed) and verifies.
    let third_dir = tmp.path().join("c");
    fresh_copy(&first_dir, &third_dir);
    let out = tmp.path().join("out");
    let stored = push(
        &third_dir,
        &tag,
        &["--output", &format!("oci:{}", out.display())],
    );
    assert_eq!(stored.json["index_digest"], digest.as_str());
    assert_eq!(uploaded(&stored), 0);
    assert!(reused(&stored).iter().all(|l| l["stored"] == true));
    assert!(!out.join("rcross-remote-blobs.json").exists());
    let v = rcross(&["verify", &format!("oci:{}", out.display())], &[]);
    assert!(v.status.success());

    // A build that compresses everything itself gives the same digest.
    let local = build(
        &fresh_dir,
        &[
            "--output",
            &format!("oci:{}", tmp.path().join("local").display()),
        ],
    );
    assert_eq!(local.json["index_digest"], digest.as_str());
}

#[test]
fn a_changed_source_compresses_and_uploads_only_its_layer() {
    let Some(registry) = prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (first_dir, fresh_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    write_project(&first_dir);
    let tag = format!("{}/app:1", registry.addr);
    let first = push(&first_dir, &tag, &[]);

    fresh_copy(&first_dir, &fresh_dir);
    std::fs::write(fresh_dir.join("src/amd64.txt"), "amd64 v2\n").unwrap();
    let changed = push(&fresh_dir, &tag, &[]);
    assert_ne!(changed.json["index_digest"], first.json["index_digest"]);
    assert_eq!(uploaded(&changed), 2, "amd64's layer and config");
    let r = reused(&changed);
    assert_eq!(r.len(), 1, "{}", changed.json);
    assert_eq!(r[0]["platform"], "linux/arm64");
    // The amd64 layer was compressed into the layout; the arm64 one only noted.
    let blobs = layout(&fresh_dir).join("blobs/sha256");
    let arm64 = r[0]["digest"].as_str().unwrap();
    assert!(!blobs.join(arm64.trim_start_matches("sha256:")).exists());
}

#[test]
fn a_zstd_build_does_not_reuse_gzip_layers() {
    let Some(registry) = prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (first_dir, fresh_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    write_project(&first_dir);
    let tag = format!("{}/app:1", registry.addr);
    push(&first_dir, &tag, &[]);
    fresh_copy(&first_dir, &fresh_dir);
    let zstd = push(&fresh_dir, &tag, &["--compression", "zstd"]);
    assert!(reused(&zstd).is_empty(), "{}", zstd.json);
    // The configs are the gzip image's (diff_ids do not depend on compression); the two
    // layers are compressed with zstd and uploaded.
    assert_eq!(uploaded(&zstd), 2, "{}", zstd.json);
    assert_eq!(zstd.json["pushed"][0]["blobs_present"], 2);
    // And the zstd image's layers are reused by the next zstd build.
    let again_dir = tmp.path().join("c");
    fresh_copy(&first_dir, &again_dir);
    let again = push(&again_dir, &tag, &["--compression", "zstd"]);
    assert_eq!(again.json["index_digest"], zstd.json["index_digest"]);
    assert_eq!(reused(&again).len(), 2);
    assert_eq!(uploaded(&again), 0);
}

#[test]
fn cache_from_another_repository_mounts_its_layers() {
    let Some(registry) = prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (first_dir, fresh_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    write_project(&first_dir);
    let cache = format!("{}/cache:main", registry.addr);
    push(&first_dir, &cache, &[]);
    fresh_copy(&first_dir, &fresh_dir);
    let missing = format!("{}/nothing:here", registry.addr);
    let built = push(
        &fresh_dir,
        &format!("{}/feature:1", registry.addr),
        &["--cache-from", &cache, "--cache-from", &missing],
    );
    assert_eq!(reused(&built).len(), 2, "{}", built.json);
    assert_eq!(
        built.json["pushed"][0]["blobs_mounted"], 2,
        "{}",
        built.json
    );
    assert_eq!(uploaded(&built), 2, "only the two configs");
    assert!(
        built.stderr.contains("--cache-from") && built.stderr.contains("nothing:here"),
        "a missing --cache-from image is worth a warning: {}",
        built.stderr
    );
    // --cache-from only makes sense with --push.
    let o = rcross(
        &["build", fresh_dir.to_str().unwrap(), "--cache-from", &cache],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
}

/// Pushes a hand-made image to `reference`: one gzip layer of junk and `config` as its config,
/// with the layer listed `layers` times.
fn push_bad_image(reference: &Reference, config: &[u8], layers: usize) {
    let client = Client::anonymous();
    let layer = b"not a real layer".to_vec();
    let mut blobs = Vec::new();
    for bytes in [layer.clone(), config.to_vec()] {
        let blob = PushBlob {
            digest: sha256(&bytes),
            size: bytes.len() as u64,
            source: BlobSource::Bytes(Arc::new(bytes)),
        };
        client
            .push_blob(reference, &blob, &PushOptions::default())
            .unwrap();
        blobs.push(blob);
    }
    let layer_desc = format!(
        r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}"#,
        blobs[0].digest, blobs[0].size
    );
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]}}"#,
        blobs[1].digest,
        blobs[1].size,
        vec![layer_desc; layers].join(",")
    );
    let bytes = manifest.into_bytes();
    client
        .put_manifest(
            reference,
            reference.tag.as_deref().unwrap(),
            &PushManifest {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                digest: sha256(&bytes),
                bytes,
            },
        )
        .unwrap();
}

#[test]
fn a_previous_tag_with_a_bad_config_is_not_reused_and_the_build_succeeds() {
    let Some(registry) = prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    write_project(&dir);
    // What our amd64 layer's diff_id will be: a build without push tells.
    let local = build(
        &dir,
        &[
            "--output",
            &format!("oci:{}", tmp.path().join("l").display()),
        ],
    );
    assert!(local.json["index_digest"].is_string());
    let diff_id = {
        let l = tmp.path().join("l");
        let index: Value =
            serde_json::from_slice(&std::fs::read(l.join("index.json")).unwrap()).unwrap();
        let blob = |d: &str| -> Value {
            serde_json::from_slice(
                &std::fs::read(l.join("blobs/sha256").join(d.trim_start_matches("sha256:")))
                    .unwrap(),
            )
            .unwrap()
        };
        let idx = blob(index["manifests"][0]["digest"].as_str().unwrap());
        let m = blob(idx["manifests"][0]["digest"].as_str().unwrap());
        let c = blob(m["config"]["digest"].as_str().unwrap());
        c["rootfs"]["diff_ids"][0].as_str().unwrap().to_string()
    };
    let cases = [
        // Two layers, one diff_id (that is ours: reusing would put junk into the image).
        (
            "mismatch",
            format!(
                r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
            ),
            2,
            "diff_ids",
        ),
        ("garbage", "this is not JSON".to_string(), 1, "not valid"),
        (
            "baddigest",
            r#"{"rootfs":{"type":"layers","diff_ids":["sha256:XYZ"]}}"#.to_string(),
            1,
            "not a sha256",
        ),
    ];
    for (repo, config, layers, said) in cases {
        let tag = format!("{}/{repo}:1", registry.addr);
        push_bad_image(&tag.parse().unwrap(), config.as_bytes(), layers);
        let built = push(&dir, &tag, &[]);
        assert!(reused(&built).is_empty(), "{repo}: {}", built.json);
        assert_eq!(uploaded(&built), 4, "{repo}");
        assert!(
            built.stderr.contains("warning:") && built.stderr.contains(said),
            "{repo}: {}",
            built.stderr
        );
        // What landed is our image, readable end to end.
        let v = rcross(&["verify", &tag], &[]);
        assert!(v.status.success(), "{repo}");
    }
}

#[test]
fn a_registry_that_refuses_reads_only_costs_the_reuse() {
    let Some(registry) = prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (first_dir, fresh_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    write_project(&first_dir);
    push(&first_dir, &format!("{}/app:1", registry.addr), &[]);
    // Reading the tag's manifest is refused (as without pull rights); everything else passes.
    let proxy = Proxy::start(&registry.addr, |req, _| {
        if req.method == "GET" && req.target.contains("/manifests/") {
            Fault::Status(403, Vec::new())
        } else {
            Fault::Pass
        }
    });
    fresh_copy(&first_dir, &fresh_dir);
    let built = push(&fresh_dir, &format!("{}/app:1", proxy.addr), &[]);
    assert!(reused(&built).is_empty());
    assert!(
        built.stderr.contains("warning: cannot read")
            && built.stderr.contains("403")
            && built.stderr.contains("building without reusing"),
        "{}",
        built.stderr
    );
    // The layers were compressed again; the registry had them, so nothing went up.
    assert_eq!(uploaded(&built), 0);
    assert_eq!(built.json["pushed"][0]["blobs_present"], 4);
}

/// One build of `dir` pushed to `tag` with the given user cache (shared between builds, as on a
/// developer's machine or a CI runner that keeps its cache).
fn push_with_cache(dir: &Path, tag: &str, cache: &Path) -> Built {
    build_with(
        dir,
        &["-t", tag, "--push"],
        &[("XDG_CACHE_HOME", cache.to_str().unwrap())],
    )
}

/// The push memo (issue 13 §2): the same image pushed to a second repository of the registry
/// mounts every blob from where it was pushed before — nothing is uploaded — and the second
/// repository then holds a complete image (skopeo copies all of it out).
#[test]
fn a_second_repository_mounts_what_the_first_push_uploaded() {
    let Some(registry) = prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (dir, cache) = (tmp.path().join("a"), tmp.path().join("cache"));
    write_project(&dir);
    let first = push_with_cache(&dir, &format!("{}/one:1", registry.addr), &cache);
    assert_eq!(uploaded(&first), 4, "{}", first.json);
    let second = push_with_cache(&dir, &format!("{}/two:1", registry.addr), &cache);
    assert_eq!(second.json["index_digest"], first.json["index_digest"]);
    assert_eq!(uploaded(&second), 0, "{}", second.json);
    assert_eq!(
        second.json["pushed"][0]["blobs_mounted"], 4,
        "{}",
        second.json
    );
    let copied = tmp.path().join("copied");
    let o = std::process::Command::new("skopeo")
        .args(["copy", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{}/two:1", registry.addr))
        .arg(format!("oci:{}:x", copied.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Without the memo (a new cache) the same push uploads as before.
    let third = push_with_cache(
        &dir,
        &format!("{}/three:1", registry.addr),
        &tmp.path().join("new-cache"),
    );
    assert_eq!(uploaded(&third), 4, "{}", third.json);
    assert_eq!(third.json["pushed"][0]["blobs_mounted"], 0);
}

/// The reuse memo (issue 13 §2): what a tag's documents said is remembered under the digest of
/// the root the tag named. A tag that moved to another image is read again: after the tag
/// moves, a fresh copy of the new sources reuses both of the new image's layers (the memo of the
/// old root, which knew only one of them, is not used).
#[test]
fn a_tag_that_moved_is_read_again() {
    let Some(registry) = prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    write_project(&a);
    let tag = format!("{}/moving:1", registry.addr);
    push_with_cache(&a, &tag, &cache);
    fresh_copy(&a, &b);
    // Reads the tag's documents and remembers them.
    let again = push_with_cache(&b, &tag, &cache);
    assert_eq!(
        (uploaded(&again), reused(&again).len()),
        (0, 2),
        "{}",
        again.json
    );
    let memos = cache.join("rcross/reuse");
    assert_eq!(std::fs::read_dir(&memos).unwrap().count(), 1);
    // One platform's source changes: the tag moves to a new root.
    std::fs::write(b.join("src/amd64.txt"), "amd64 v2\n").unwrap();
    let moved = push_with_cache(&b, &tag, &cache);
    assert_ne!(moved.json["index_digest"], again.json["index_digest"]);
    assert_eq!(
        uploaded(&moved),
        2,
        "amd64's layer and config: {}",
        moved.json
    );
    assert_eq!(
        reused(&moved).len(),
        1,
        "arm64's, from the memo: {}",
        moved.json
    );
    fresh_copy(&b, &c);
    let fresh = push_with_cache(&c, &tag, &cache);
    assert_eq!(fresh.json["index_digest"], moved.json["index_digest"]);
    assert_eq!(uploaded(&fresh), 0, "{}", fresh.json);
    assert_eq!(reused(&fresh).len(), 2, "{}", fresh.json);
    assert_eq!(std::fs::read_dir(&memos).unwrap().count(), 2);
}
