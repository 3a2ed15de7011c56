//! The registry client against Debian's docker-registry (distribution 2.8) on 127.0.0.1, with
//! content pushed by skopeo from an OCI layout written by hand. Needs the `docker-registry` and
//! `skopeo` packages: missing, they fail in strict mode (tests/prereq) and skip with a notice
//! otherwise.

mod common_registry;
mod prereq;

use std::io::Read;

use common_registry::{require_tool, sha256, skopeo_push, write_layout, RealRegistry};
use rcross::image::{ImageSource, SourceError};
use rcross::registry::{
    Client, Reference, RegistryImage, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST,
};

#[test]
fn reads_back_what_skopeo_pushed() {
    let Some(registry) = RealRegistry::start() else {
        return;
    };
    if !require_tool("skopeo", "skopeo") {
        return;
    }
    let layout_dir = tempfile::tempdir().unwrap();
    let layout = write_layout(layout_dir.path());
    let repo = format!("{}/rcross/test", registry.addr);
    skopeo_push(&layout.dir, "multi", &format!("{repo}:multi"), true);
    skopeo_push(&layout.dir, "single", &format!("{repo}:single"), false);
    let client = Client::anonymous();

    // The index, byte for byte, under its tag and under its digest.
    let multi: Reference = format!("{repo}:multi").parse().unwrap();
    let image = RegistryImage::new(client.clone(), multi.clone());
    let (media_type, bytes) = image.root().unwrap();
    assert_eq!(media_type, MEDIA_TYPE_OCI_INDEX);
    assert_eq!(sha256(&bytes), layout.index);
    assert_eq!(bytes, layout.blobs[&layout.index]);
    let pinned = RegistryImage::new(client.clone(), multi.with_digest(&layout.index));
    assert_eq!(pinned.root().unwrap().1, bytes);

    // Each platform's manifest (served under /manifests/) and config (under /blobs/).
    for (arch, config, manifest) in &layout.images {
        let manifest_bytes = image.blob_bytes(manifest, 1 << 20).unwrap();
        assert_eq!(&manifest_bytes, &layout.blobs[manifest], "{arch} manifest");
        let config_bytes = image.blob_bytes(config, 1 << 20).unwrap();
        assert_eq!(&config_bytes, &layout.blobs[config], "{arch} config");
        assert!(String::from_utf8_lossy(&config_bytes).contains(arch.as_str()));
    }

    // The layer, streamed and verified.
    let mut layer = Vec::new();
    image
        .open_blob(&layout.layer)
        .unwrap()
        .read_to_end(&mut layer)
        .unwrap();
    assert_eq!(sha256(&layer), layout.layer);
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(layer.as_slice())
        .read_to_end(&mut tar)
        .unwrap();
    assert!(tar.windows(9).any(|w| w == b"hello.txt"));

    // A single-platform tag: its root is the manifest itself.
    let single = RegistryImage::new(client.clone(), format!("{repo}:single").parse().unwrap());
    let (media_type, bytes) = single.root().unwrap();
    assert_eq!(media_type, MEDIA_TYPE_OCI_MANIFEST);
    assert_eq!(sha256(&bytes), layout.images[0].2);

    // What is not there is NotFound, with the registry's own words one level down.
    let missing = RegistryImage::new(client.clone(), format!("{repo}:nope").parse().unwrap());
    assert!(matches!(missing.root(), Err(SourceError::NotFound { .. })));
    let e = client
        .get_manifest(&format!("{repo}:nope").parse().unwrap())
        .unwrap_err();
    assert_eq!(e.status(), Some(404));
    assert!(e.to_string().contains("MANIFEST_UNKNOWN"), "{e}");
    let absent = sha256(b"not pushed");
    assert!(matches!(
        image.blob_bytes(&absent, 1024),
        Err(SourceError::NotFound { .. })
    ));
    assert!(matches!(
        image.open_blob(&absent),
        Err(SourceError::NotFound { .. })
    ));
    drop(registry);
}
