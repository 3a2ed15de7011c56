//! `rcross verify oci:DIR` and `rcross elf oci:DIR` on OCI image layouts built here by hand:
//! tar layers (tar crate), gzip/zstd, sha256 digests, an index with several platforms.

mod common;
mod common_registry;
mod prereq;

use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

enum E<'a> {
    File(&'a [u8]),
    Dir,
    Link(&'a str),
}

fn tar_layer(entries: &[(&str, E)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, e) in entries {
        let mut h = tar::Header::new_ustar();
        match e {
            E::File(data) => {
                h.set_size(data.len() as u64);
                h.set_mode(0o755);
                b.append_data(&mut h, path, *data).unwrap();
            }
            E::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
                b.append_data(&mut h, path, &[][..]).unwrap();
            }
            E::Link(target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn compress(media: &str, tar: Vec<u8>) -> Vec<u8> {
    match media {
        GZIP => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&tar).unwrap();
            e.finish().unwrap()
        }
        ZSTD => zstd::encode_all(&tar[..], 3).unwrap(),
        _ => tar,
    }
}

struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn new(dir: &Path) -> Layout {
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    fn blob(&self, media: &str, data: &[u8]) -> Value {
        let hex: String = Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        fs::write(self.dir.join("blobs/sha256").join(&hex), data).unwrap();
        json!({"mediaType": media, "digest": format!("sha256:{hex}"), "size": data.len()})
    }

    /// A platform manifest from layers (bottom first); returns its descriptor with platform.
    fn manifest(
        &self,
        os: &str,
        arch: &str,
        variant: Option<&str>,
        layers: Vec<(&str, Vec<u8>)>,
    ) -> Value {
        let mut p = json!({"os": os, "architecture": arch});
        if let Some(v) = variant {
            p["variant"] = json!(v);
        }
        let config = self.blob(
            "application/vnd.oci.image.config.v1+json",
            serde_json::to_vec(&json!({"os": os, "architecture": arch, "variant": variant, "rootfs": {"type": "layers", "diff_ids": []}})).unwrap().as_slice(),
        );
        let layers: Vec<Value> = layers
            .into_iter()
            .map(|(media, tar)| self.blob(media, &compress(media, tar)))
            .collect();
        let m = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": layers,
        });
        let mut d = self.blob(
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec(&m).unwrap(),
        );
        d["platform"] = p;
        d
    }

    fn index(&self, manifests: Vec<Value>) -> String {
        let idx = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&idx).unwrap(),
        )
        .unwrap();
        format!("oci:{}", self.dir.display())
    }
}

struct Bins {
    arm64: Vec<u8>,
    armhf: Vec<u8>,
    amd64: Vec<u8>,
}

fn bins(dir: &Path) -> Option<Bins> {
    let a = compile(AARCH64, &[], dir, "a64")?;
    let h = compile(ARMHF, &[], dir, "armhf")?;
    let x = compile(HOST_GCC, &[], dir, "amd64")?;
    Some(Bins {
        arm64: fs::read(a).unwrap(),
        armhf: fs::read(h).unwrap(),
        amd64: fs::read(x).unwrap(),
    })
}

fn attestation(l: &Layout) -> Value {
    let mut d = l.manifest(
        "unknown",
        "unknown",
        None,
        vec![(TAR, tar_layer(&[("sbom.json", E::File(b"{}"))]))],
    );
    d["annotations"] = json!({"vnd.docker.reference.type": "attestation-manifest"});
    d
}

#[test]
fn wrong_binary_in_one_platform_fails_naming_platform_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(b) = bins(tmp.path()) else { return };
    let l = Layout::new(&tmp.path().join("img"));
    let arm64 = l.manifest(
        "linux",
        "arm64",
        Some("v8"),
        vec![
            (
                GZIP,
                tar_layer(&[
                    ("bin", E::Dir),
                    ("bin/app", E::File(&b.arm64)),
                    ("etc/conf", E::File(b"x")),
                ]),
            ),
            (ZSTD, tar_layer(&[("usr/bin/helper", E::File(&b.amd64))])),
        ],
    );
    // arm/v7: the amd64 file of the lower layer is deleted by a whiteout in the upper one.
    let armv7 = l.manifest(
        "linux",
        "arm",
        Some("v7"),
        vec![
            (
                GZIP,
                tar_layer(&[
                    ("bin/app", E::File(&b.armhf)),
                    ("usr/bin/helper", E::File(&b.amd64)),
                ]),
            ),
            (TAR, tar_layer(&[("usr/bin/.wh.helper", E::File(b""))])),
        ],
    );
    let spec = l.index(vec![arm64, armv7, attestation(&l)]);

    let (code, out, err) = run(&["verify", &spec]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("linux/arm64: 1 finding(s)"), "{out}");
    assert!(
        out.contains("/usr/bin/helper: built for linux/amd64: exec format error on linux/arm64"),
        "{out}"
    );
    assert!(out.contains("linux/arm/v7: ok, 1 ELF files"), "{out}");
    assert!(out.contains("skipped unknown/unknown"), "{out}");

    let (code, out, _) = run(&["--json", "verify", &spec]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["platform"], "linux/arm64");
    assert_eq!(groups[0]["findings"][0]["path"], "/usr/bin/helper");
    assert_eq!(groups[1]["platform"], "linux/arm/v7");
    assert_eq!(groups[1]["findings"].as_array().unwrap().len(), 0);

    // rcross inspect shows the same verdicts per platform, and exits 1.
    let (code, out, _) = run(&["inspect", &spec]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("verified: 1 finding(s)"), "{out}");
    assert!(
        out.contains("/usr/bin/helper: built for linux/amd64"),
        "{out}"
    );
    assert!(out.contains("verified: ok (1 ELF files)"), "{out}");

    // Only the clean platform.
    let (code, out, _) = run(&["verify", "--platform", "linux/arm/v7", &spec]);
    assert_eq!(code, 0, "{out}");
    let (code, _, err) = run(&["verify", "--platform", "linux/riscv64", &spec]);
    assert_eq!(code, 2);
    assert!(
        err.contains("has no linux/riscv64 manifest; it has: linux/arm64, linux/arm/v7"),
        "{err}"
    );

    // rcross elf lists the final files of each platform.
    let (code, out, _) = run(&["--json", "elf", &spec]);
    assert_eq!(code, 0);
    let rows: Value = serde_json::from_str(&out).unwrap();
    let rows = rows.as_array().unwrap();
    let names: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["image_platform"].as_str().unwrap(),
                r["path"].as_str().unwrap(),
                r["platform"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "linux/arm64 /bin/app linux/arm64",
            "linux/arm64 /usr/bin/helper linux/amd64",
            "linux/arm/v7 /bin/app linux/arm/v7",
        ]
    );
}

/// The same check on an image in a real registry (Debian's docker-registry on loopback), pushed
/// there by an independent client (skopeo), read back by rcross layer by layer.
#[test]
fn registry_image_with_wrong_binary_fails_naming_platform_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(b) = bins(tmp.path()) else { return };
    if !common_registry::require_tool("skopeo", "skopeo") {
        return;
    }
    let Some(registry) = common_registry::RealRegistry::start() else {
        return;
    };
    let l = Layout::new(&tmp.path().join("img"));
    let arm64 = l.manifest(
        "linux",
        "arm64",
        Some("v8"),
        vec![(
            GZIP,
            tar_layer(&[
                ("bin/app", E::File(&b.arm64)),
                ("bin/tool", E::File(&b.amd64)),
            ]),
        )],
    );
    let armv7 = l.manifest(
        "linux",
        "arm",
        Some("v7"),
        vec![(GZIP, tar_layer(&[("bin/app", E::File(&b.armhf))]))],
    );
    // A layout whose index.json names one image index (ref "v1"), the shape skopeo copies.
    let inner = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [arm64, armv7],
    });
    let mut d = l.blob(
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&inner).unwrap(),
    );
    d["annotations"] = json!({"org.opencontainers.image.ref.name": "v1"});
    l.index(vec![d]);
    let image = format!("{}/verify/app:v1", registry.addr);
    common_registry::skopeo_push(&l.dir, "v1", &image, true);

    let (code, out, err) = run(&["verify", &image]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("/bin/tool: built for linux/amd64: exec format error on linux/arm64"),
        "{out}"
    );
    assert!(out.contains("linux/arm/v7: ok, 1 ELF files"), "{out}");
    let (code, out, _) = run(&["--json", "verify", &image]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["groups"][0]["platform"], "linux/arm64");
    assert_eq!(v["groups"][0]["findings"][0]["path"], "/bin/tool");
    let (code, out, err) = run(&["verify", "--platform", "linux/arm/v7", &image]);
    assert_eq!(code, 0, "{out}{err}");
    // A tag that is not there: a clear error, not a crash.
    let (code, _, err) = run(&["verify", &format!("{}/verify/app:nope", registry.addr)]);
    assert_ne!(code, 0);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn whiteouts_opaque_dirs_replacements_and_hardlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(b) = bins(tmp.path()) else { return };
    let l = Layout::new(&tmp.path().join("img"));
    let m = l.manifest(
        "linux",
        "arm64",
        None,
        vec![
            (
                GZIP,
                tar_layer(&[
                    ("opt/x/bad1", E::File(&b.amd64)),
                    ("opt/x/sub/bad2", E::File(&b.amd64)),
                    ("srv/bad3", E::File(&b.amd64)),
                    ("bin/good", E::File(&b.arm64)),
                ]),
            ),
            (
                GZIP,
                tar_layer(&[
                    // Opaque: everything below opt/x from lower layers is gone...
                    ("opt/x/.wh..wh..opq", E::File(b"")),
                    // ...but this layer's own files stay.
                    ("opt/x/new", E::File(&b.arm64)),
                    // A text file replaces a lower ELF file.
                    ("srv/bad3", E::File(b"#!/bin/sh\n")),
                    ("bin/good2", E::Link("bin/good")),
                ]),
            ),
        ],
    );
    let spec = l.index(vec![m]);
    let (code, out, err) = run(&["verify", &spec]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("linux/arm64: ok, 3 ELF files"), "{out}");

    // A hard link to a wrong binary is reported under its own name too.
    let l2 = Layout::new(&tmp.path().join("img2"));
    let m = l2.manifest(
        "linux",
        "arm64",
        None,
        vec![(
            TAR,
            tar_layer(&[("a/bad", E::File(&b.amd64)), ("b/alias", E::Link("a/bad"))]),
        )],
    );
    let spec = l2.index(vec![m]);
    let (code, out, _) = run(&["verify", &spec]);
    assert_eq!(code, 1);
    assert!(out.contains("/a/bad: built for linux/amd64"), "{out}");
    assert!(out.contains("/b/alias: built for linux/amd64"), "{out}");
}

#[test]
fn damaged_layouts_are_errors_not_crashes() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(b) = bins(tmp.path()) else { return };
    let l = Layout::new(&tmp.path().join("img"));
    let m = l.manifest(
        "linux",
        "arm64",
        None,
        vec![(GZIP, tar_layer(&[("bin/app", E::File(&b.arm64))]))],
    );
    let layer_digest = {
        let bytes = fs::read(
            l.dir
                .join("blobs/sha256")
                .join(m["digest"].as_str().unwrap().trim_start_matches("sha256:")),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        v["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string()
    };
    let spec = l.index(vec![m]);
    let (code, _, _) = run(&["verify", &spec]);
    assert_eq!(code, 0);
    // Corrupt the layer: its digest no longer matches.
    let path = l.dir.join("blobs/sha256").join(&layer_digest);
    let mut data = fs::read(&path).unwrap();
    let n = data.len();
    data[n - 12] ^= 0xff;
    fs::write(&path, &data).unwrap();
    let (code, _, err) = run(&["verify", &spec]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("linux/arm64 layer sha256:"), "{err}");
    // Missing layout.
    let (code, _, err) = run(&["verify", "oci:/nonexistent/layout"]);
    assert_eq!(code, 2);
    assert!(err.contains("oci-layout"), "{err}");
    // Garbage index.
    fs::write(l.dir.join("index.json"), b"{\"manifests\": 5}").unwrap();
    let (code, _, err) = run(&["verify", &spec]);
    assert_eq!(code, 1, "{err}");
}

/// `rcross build` writes `index.json` with one entry, the image's index, named `latest`:
/// `rcross inspect oci:DIR` descends into it as `verify` does and as `inspect oci:DIR:latest`
/// does, one line per platform, instead of one `unknown/unknown … not verified` line.
#[test]
fn inspect_descends_the_nested_index_of_a_built_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let l = Layout::new(&tmp.path().join("img"));
    let amd64 = l.manifest(
        "linux",
        "amd64",
        None,
        vec![(GZIP, tar_layer(&[("etc/motd", E::File(b"hello"))]))],
    );
    let armv7 = l.manifest(
        "linux",
        "arm",
        Some("v7"),
        vec![(GZIP, tar_layer(&[("etc/motd", E::File(b"hello"))]))],
    );
    let (amd64_digest, armv7_digest) = (
        amd64["digest"].as_str().unwrap().to_string(),
        armv7["digest"].as_str().unwrap().to_string(),
    );
    let inner = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [amd64, armv7],
    });
    let mut nested = l.blob(
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&inner).unwrap(),
    );
    nested["annotations"] = json!({"org.opencontainers.image.ref.name": "latest"});
    let spec = l.index(vec![nested]);

    let (code, out, err) = run(&["inspect", &spec]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("unknown/unknown"), "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(" layer(s), ")).collect();
    assert_eq!(lines.len(), 2, "{out}");
    for (line, (platform, digest)) in lines.iter().zip([
        ("linux/amd64", &amd64_digest),
        ("linux/arm/v7", &armv7_digest),
    ]) {
        assert!(
            line.trim_start().starts_with(platform) && line.contains(digest.as_str()),
            "{line}"
        );
        assert!(
            line.contains("1 layer(s)") && line.contains("verified: ok"),
            "{line}"
        );
    }
    // The same platforms as the named image and as verify.
    let (code, named, _) = run(&["inspect", &format!("{spec}:latest")]);
    assert_eq!(code, 0, "{named}");
    let named_lines: Vec<&str> = named
        .lines()
        .filter(|l| l.contains(" layer(s), "))
        .collect();
    assert_eq!(named_lines, lines);
    let (code, verified, _) = run(&["verify", &spec]);
    assert_eq!(code, 0, "{verified}");
    assert!(
        verified.contains(&format!(
            "linux/amd64: ok, 0 ELF files in {spec} ({amd64_digest})"
        )),
        "{verified}"
    );
    let (code, json_out, _) = run(&["--json", "inspect", &spec]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&json_out).unwrap();
    let platforms: Vec<&str> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm/v7"]);
}
