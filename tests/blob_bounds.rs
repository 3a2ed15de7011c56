//! Bounded reads (issue 10 §4): a blob is read up to its descriptor's size + 1 byte and refused
//! when there is more, and a digest with an algorithm other than sha256 is refused instead of
//! being read unverified — from a registry (an in-process fake) and from an OCI layout.

mod common_registry;
mod prereq;

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use common_registry::{sha256, FakeRegistry, Reply};
use rcross::registry::{Client, ClientOptions, DockerConfig, RegistryImage};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

fn client() -> Client {
    Client::new(
        ClientOptions {
            attempts: 3,
            backoff: Duration::from_millis(10),
            ..ClientOptions::default()
        },
        DockerConfig::default(),
    )
}

/// An uncompressed layer with one file of `len` bytes.
fn layer(len: usize) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(len as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "data.bin", vec![7u8; len].as_slice())
        .unwrap();
    builder.into_inner().unwrap()
}

fn config() -> Vec<u8> {
    br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#
        .to_vec()
}

/// A manifest whose one layer descriptor says `digest` and `size`.
fn manifest(config: &[u8], digest: &str, size: u64) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"{LAYER_TAR}","digest":"{digest}","size":{size}}}]}}"#,
        sha256(config),
        config.len()
    )
    .into_bytes()
}

/// A registry serving `manifest` (by any tag or digest) and `blobs` by digest; else 404.
fn registry(
    manifest: Vec<u8>,
    blobs: Vec<(String, Vec<u8>)>,
    content_length: bool,
) -> FakeRegistry {
    FakeRegistry::start(move |request, _| {
        if request.path().contains("/manifests/") {
            return Reply::ok(manifest.clone()).header("Content-Type", MANIFEST);
        }
        for (digest, bytes) in &blobs {
            if request.path().ends_with(&format!("/blobs/{digest}")) {
                let reply = Reply::ok(bytes.clone());
                return if content_length {
                    reply
                } else {
                    reply.without_content_length()
                };
            }
        }
        Reply::status(404)
    })
}

fn verify_error(source: &dyn rcross::image::ImageSource) -> String {
    match rcross::walk::verify_image(source, None) {
        Ok(report) => panic!(
            "expected a refusal, got a report of {} platform(s)",
            report.platforms.len()
        ),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_registry_that_sends_more_than_the_descriptor_says_is_refused() {
    let blob = layer(3000);
    let digest = sha256(&blob);
    let stated = blob.len() as u64 - 1024;
    let config = config();
    for content_length in [true, false] {
        let fake = registry(
            manifest(&config, &digest, stated),
            vec![
                (digest.clone(), blob.clone()),
                (sha256(&config), config.clone()),
            ],
            content_length,
        );
        let image = RegistryImage::new(client(), fake.reference("app:1"));
        let message = verify_error(&image);
        assert!(
            message.contains(&digest) && message.contains(&stated.to_string()),
            "content_length={content_length}: {message}"
        );
    }
}

#[test]
fn a_sized_download_stops_one_byte_past_the_size() {
    let blob = vec![1u8; 4096];
    let digest = sha256(&blob);
    // Announced: refused before the body is read.
    let fake = registry(Vec::new(), vec![(digest.clone(), blob.clone())], true);
    let e = client()
        .open_blob_sized(&fake.reference("app"), &digest, 1000)
        .unwrap_err()
        .to_string();
    assert!(e.contains(&digest) && e.contains("1000"), "{e}");
    // Not announced: the read fails after 1001 bytes, having handed out 1000.
    let fake = registry(Vec::new(), vec![(digest.clone(), blob)], false);
    let mut reader = client()
        .open_blob_sized(&fake.reference("app"), &digest, 1000)
        .unwrap();
    let mut out = Vec::new();
    let e = reader.read_to_end(&mut out).unwrap_err().to_string();
    assert!(e.contains(&digest) && e.contains("1000"), "{e}");
    assert!(out.len() <= 1000, "{}", out.len());
}

#[test]
fn digests_other_than_sha256_are_refused_without_reading() {
    let sha512 = format!("sha512:{}", "ab".repeat(64));
    let md5 = format!("md5:{}", "cd".repeat(16));
    let blob = layer(100);
    let config = config();
    for digest in [&sha512, &md5] {
        let fake = registry(
            manifest(&config, digest, blob.len() as u64),
            vec![
                (digest.clone(), blob.clone()),
                (sha256(&config), config.clone()),
            ],
            true,
        );
        let message = verify_error(&RegistryImage::new(client(), fake.reference("app:1")));
        assert!(
            message.contains(digest.as_str()) && message.contains("sha256"),
            "{message}"
        );
        assert!(
            !fake
                .requests()
                .iter()
                .any(|r| r.path().ends_with(&format!("/blobs/{digest}"))),
            "the blob was not asked for: {:?}",
            fake.requests()
        );
        let direct = client()
            .open_blob(&fake.reference("app"), digest)
            .unwrap_err()
            .to_string();
        assert!(direct.contains(digest.as_str()), "{direct}");
    }
}

/// An OCI layout holding one linux/amd64 image whose layer descriptor says `digest`/`size`;
/// the layer's bytes are stored under that digest's path.
fn write_layout(dir: &Path, blob: &[u8], digest: &str, size: u64) {
    let config = config();
    let manifest = manifest(&config, digest, size);
    let put = |digest: &str, bytes: &[u8]| {
        let (algorithm, hex) = digest.split_once(':').unwrap();
        std::fs::create_dir_all(dir.join("blobs").join(algorithm)).unwrap();
        std::fs::write(dir.join("blobs").join(algorithm).join(hex), bytes).unwrap();
    };
    put(digest, blob);
    put(&sha256(&config), &config);
    put(&sha256(&manifest), &manifest);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{MANIFEST}","digest":"{}","size":{},"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            sha256(&manifest),
            manifest.len()
        ),
    )
    .unwrap();
}

#[test]
fn a_layout_blob_longer_than_its_descriptor_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let blob = layer(3000);
    let digest = sha256(&blob);
    let stated = blob.len() as u64 - 1024;
    write_layout(dir.path(), &blob, &digest, stated);
    let layout = rcross::image::LayoutSource::open(dir.path(), None).unwrap();
    let message = verify_error(&layout);
    assert!(
        message.contains(&digest) && message.contains(&stated.to_string()),
        "{message}"
    );
}

#[test]
fn a_layout_blob_with_a_sha512_digest_is_refused_not_read_unverified() {
    let dir = tempfile::tempdir().unwrap();
    let blob = layer(100);
    // Whatever its name says, nothing checks these bytes against it: it must not be read.
    let digest = format!("sha512:{}", "ef".repeat(64));
    write_layout(dir.path(), &blob, &digest, blob.len() as u64);
    let layout = rcross::image::LayoutSource::open(dir.path(), None).unwrap();
    let message = verify_error(&layout);
    assert!(
        message.contains(&digest) && message.contains("sha256"),
        "{message}"
    );
}
