//! What pushing an OCI image layout sends: the push plan of one named image of a layout, read
//! through the image read model. Pushing is the registry's business; the layout writer
//! ([`crate::oci`]) knows nothing of registries.

use crate::image::layout::missing_blob_message;
use crate::image::{Descriptor, Document, ImageManifest};
use crate::oci::{OciError, OciLayout};

use super::push::{BlobSource, ImagePush, PushBlob, PushManifest};
use super::reference::Reference;

/// Everything to push for the image named `name` in `layout`: its blobs (configs and layers,
/// each once), its per-platform manifests and the root (index or manifest) last. A layer that
/// `rcross build --push` reused from a registry and did not store is taken from that registry.
pub fn layout_push_plan(layout: &OciLayout, name: &str) -> Result<ImagePush, OciError> {
    let root = layout.resolve(name)?;
    let root_bytes = layout.read_blob(&root.digest)?;
    let mut plan = ImagePush {
        blobs: Vec::new(),
        manifests: Vec::new(),
        root: PushManifest {
            media_type: root.media_type.clone(),
            digest: root.digest.clone(),
            bytes: root_bytes.clone(),
        },
    };
    match parse(layout, &root, &root_bytes)? {
        Document::Index(index) => {
            for descriptor in index.manifests {
                let bytes = layout.read_blob(&descriptor.digest)?;
                let manifest = match parse(layout, &descriptor, &bytes)? {
                    Document::Manifest(m) => m,
                    Document::Index(_) => return Err(not_image(layout, &descriptor)),
                };
                add_manifest_blobs(layout, &mut plan, &descriptor.digest, manifest)?;
                plan.manifests.push(PushManifest {
                    media_type: descriptor.media_type,
                    digest: descriptor.digest,
                    bytes,
                });
            }
        }
        Document::Manifest(manifest) => {
            add_manifest_blobs(layout, &mut plan, &root.digest, manifest)?;
        }
    }
    Ok(plan)
}

fn parse(layout: &OciLayout, d: &Descriptor, bytes: &[u8]) -> Result<Document, OciError> {
    Document::parse(bytes).map_err(|e| {
        OciError::layout(
            layout.root(),
            format!("{} is not a manifest or index: {e}", d.digest),
        )
    })
}

fn not_image(layout: &OciLayout, d: &Descriptor) -> OciError {
    OciError::layout(
        layout.root(),
        format!(
            "{} ({}) is neither an image index nor an image manifest",
            d.digest, d.media_type
        ),
    )
}

fn add_manifest_blobs(
    layout: &OciLayout,
    plan: &mut ImagePush,
    digest: &str,
    manifest: ImageManifest,
) -> Result<(), OciError> {
    for descriptor in std::iter::once(manifest.config).chain(manifest.layers) {
        if plan.blobs.iter().any(|b| b.digest == descriptor.digest) {
            continue;
        }
        let path = layout.blob_path(&descriptor.digest)?;
        let size = match std::fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Reused from a registry by `rcross build --push` and not stored here: the
                // push takes it from there (HEAD-skipped when the target has it already).
                let Some(from) = layout
                    .remote_blob(&descriptor.digest)
                    .and_then(|r| r.parse::<Reference>().ok())
                else {
                    return Err(OciError::layout(
                        layout.root(),
                        format!(
                            "blob {} (named by {digest}): {}",
                            descriptor.digest,
                            missing_blob_message(layout.root(), &descriptor.digest)
                        ),
                    ));
                };
                plan.blobs.push(PushBlob {
                    digest: descriptor.digest,
                    size: descriptor.size,
                    source: BlobSource::Registry(from),
                });
                continue;
            }
            Err(e) => return Err(OciError::io("reading", &path, e)),
        };
        if size != descriptor.size {
            return Err(OciError::layout(
                layout.root(),
                format!(
                    "blob {} is {size} bytes but {digest} says {}",
                    descriptor.digest, descriptor.size
                ),
            ));
        }
        plan.blobs.push(PushBlob {
            digest: descriptor.digest,
            size,
            source: BlobSource::File(path),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Layer;

    #[test]
    fn blobs_kept_in_a_registry_are_pushed_from_there_and_named_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path()).unwrap();
        let layer = Layer {
            media_type: crate::oci::MEDIA_TYPE_LAYER_GZIP.to_string(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            size: 1234,
            diff_id: format!("sha256:{}", "cd".repeat(32)),
            uncompressed_size: 0,
        };
        let spec = crate::oci::documents::test_spec("linux/arm64", vec![layer.clone()]);
        let e = layout.write_image(&spec).unwrap_err();
        assert!(e.to_string().contains("write it first"), "{e}");
        layout
            .note_remote_blob(&layer.digest, "127.0.0.1:5000/app")
            .unwrap();
        let manifest = layout.write_image(&spec).unwrap();
        layout.tag(&manifest, "1").unwrap();
        let plan = layout_push_plan(&layout, "1").unwrap();
        let remote = plan
            .blobs
            .iter()
            .find(|b| b.digest == layer.digest)
            .unwrap();
        assert_eq!(remote.size, 1234);
        assert!(
            matches!(&remote.source, BlobSource::Registry(r) if r.to_string() == "127.0.0.1:5000/app")
        );
        let said = missing_blob_message(dir.path(), &layer.digest);
        assert!(said.contains("127.0.0.1:5000/app") && said.contains("--output oci:DIR"));

        // Without the note, the missing blob is an error that names it.
        std::fs::remove_file(dir.path().join(crate::oci::REMOTE_BLOBS_FILE)).unwrap();
        let e = layout_push_plan(&layout, "1").unwrap_err().to_string();
        assert!(e.contains(&layer.digest) && e.contains("incomplete"), "{e}");
    }

    #[test]
    fn a_two_platform_image_pushes_each_blob_once() {
        let dir = tempfile::tempdir().unwrap();
        let (layout, index) = crate::oci::test_two_platform_layout(dir.path());
        let plan = layout_push_plan(&layout, "v1").unwrap();
        assert_eq!(plan.root.digest, index.digest);
        assert_eq!(plan.manifests.len(), 2);
        assert_eq!(plan.blobs.len(), 3, "one shared layer and two configs");
    }
}
