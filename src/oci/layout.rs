//! The OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) and its `oci-archive`
//! form, a tar of the layout.

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::registry::{BlobSource, ImagePush, PushBlob, PushManifest, Reference};

use super::error::OciError;
use super::image::{build_image, image_index, Descriptor, ImageSpec};
use super::layer::{write_layer, Layer, LayerEntry, LayerOptions};
use super::{MEDIA_TYPE_CONFIG, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};

/// The annotation that names an image in a layout's `index.json` (its "tag").
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_CONTENT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
const INDEX_FILE: &str = "index.json";
/// Largest manifest, index or config read back from a layout.
const MAX_DOCUMENT_BYTES: u64 = 4 * 1024 * 1024;
/// Lists the layer blobs `rcross build --push` reused from a registry without storing them in
/// the layout (see [`OciLayout::note_remote_blob`]). Not part of the OCI layout spec; other
/// tools ignore it, and `oci-archive` output never includes it.
pub const REMOTE_BLOBS_FILE: &str = "rcross-remote-blobs.json";
/// Largest remote-blob list read back.
const MAX_REMOTE_NOTE_BYTES: u64 = 4 * 1024 * 1024;

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct OciLayout {
    root: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct TopIndex {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// The content of [`REMOTE_BLOBS_FILE`]: digest → the repository (`REGISTRY/REPO`) that has it.
#[derive(Serialize, Deserialize, Default)]
struct RemoteBlobs {
    #[serde(default)]
    blobs: BTreeMap<String, String>,
}

/// The repository (`REGISTRY/REPO`) that the layout at `dir` says holds blob `digest`, when the
/// blob was deliberately not stored there (reused from a registry by `rcross build --push`).
pub fn remote_blob_source(dir: &Path, digest: &str) -> Option<String> {
    let file = std::fs::File::open(dir.join(REMOTE_BLOBS_FILE)).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_REMOTE_NOTE_BYTES)
        .read_to_end(&mut bytes)
        .ok()?;
    let note: RemoteBlobs = serde_json::from_slice(&bytes).ok()?;
    note.blobs.get(digest).cloned()
}

/// What to say (after "blob DIGEST: ") about blob `digest`, which is not in the layout at
/// `dir`: where it is and how to get a complete layout, when `rcross build --push` left it out
/// on purpose; else that the layout is incomplete.
pub fn missing_blob_message(dir: &Path, digest: &str) -> String {
    match remote_blob_source(dir, digest) {
        Some(repository) => format!(
            "not stored in this layout: `rcross build --push` reused it from \
             {repository}, which has it, instead of compressing it again (listed in \
             {REMOTE_BLOBS_FILE}). `rcross push` of this layout fetches it from there; to get a \
             complete layout, build with --output oci:DIR (reused blobs are then downloaded), or \
             copy the pushed image: skopeo copy --all docker://{repository}:TAG oci:DIR"
        ),
        None => format!(
            "missing from the layout (no blobs/sha256/{}); the layout is incomplete: write it \
             again (rcross build --output oci:DIR) or copy the image into it again",
            digest.strip_prefix("sha256:").unwrap_or(digest)
        ),
    }
}

#[derive(Deserialize)]
struct AnyManifest {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

impl OciLayout {
    /// Opens the layout at `dir`, creating the directory and an empty layout when there is none.
    pub fn create(dir: &Path) -> Result<OciLayout, OciError> {
        let blobs = dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs)
            .map_err(|e| OciError::io("creating directory", &blobs, e))?;
        let layout = OciLayout {
            root: dir.to_path_buf(),
        };
        if !dir.join(LAYOUT_FILE).exists() {
            layout.write_atomic(LAYOUT_FILE, LAYOUT_CONTENT.as_bytes())?;
        }
        if !dir.join(INDEX_FILE).exists() {
            layout.write_top_index(&TopIndex {
                schema_version: 2,
                media_type: Some(MEDIA_TYPE_INDEX.to_string()),
                manifests: Vec::new(),
            })?;
        }
        OciLayout::open(dir)
    }

    /// Opens an existing layout, checking its `oci-layout` file.
    pub fn open(dir: &Path) -> Result<OciLayout, OciError> {
        let path = dir.join(LAYOUT_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| OciError::io("reading", &path, e))?;
        #[derive(Deserialize)]
        struct Version {
            #[serde(rename = "imageLayoutVersion")]
            version: String,
        }
        let version: Version = serde_json::from_str(&text)
            .map_err(|e| OciError::layout(dir, format!("oci-layout is not valid JSON ({e})")))?;
        if !version.version.starts_with("1.") {
            return Err(OciError::layout(
                dir,
                format!(
                    "imageLayoutVersion {:?} is not supported (1.x is)",
                    version.version
                ),
            ));
        }
        Ok(OciLayout {
            root: dir.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, OciError> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| {
                OciError::layout(
                    &self.root,
                    format!("{digest:?} is not a sha256 digest (sha256:<64 hex digits>)"),
                )
            })?;
        Ok(self.root.join("blobs").join("sha256").join(hex))
    }

    /// Stores `bytes` as a blob of `media_type`.
    pub fn write_blob(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor, OciError> {
        let descriptor = Descriptor::of(media_type, bytes);
        let path = self.blob_path(&descriptor.digest)?;
        if !path.exists() {
            let mut temp = self.temp_blob()?;
            temp.write_all(bytes)
                .map_err(|e| OciError::io("writing", temp.path(), e))?;
            self.persist(temp, &path)?;
        }
        Ok(descriptor)
    }

    /// Writes a layer straight into the layout's blobs.
    pub fn write_layer(
        &self,
        entries: &[LayerEntry],
        options: &LayerOptions,
    ) -> Result<Layer, OciError> {
        let temp = self.temp_blob()?;
        let temp_path = temp.path().to_path_buf();
        let (layer, writer) =
            write_layer(entries, options, BufWriter::with_capacity(1 << 20, temp))?;
        let temp = writer
            .into_inner()
            .map_err(|e| OciError::io("writing", &temp_path, e.into_error()))?;
        let path = self.blob_path(&layer.digest)?;
        self.persist(temp, &path)?;
        Ok(layer)
    }

    /// Records that layer blob `digest` is deliberately not stored in this layout because
    /// `repository` (`REGISTRY/REPO`) has it: [`OciLayout::write_image`] accepts it,
    /// [`OciLayout::push_plan`] fetches it from there when the target lacks it, and readers
    /// that need its bytes say where it is (see [`missing_blob_message`]).
    pub fn note_remote_blob(&self, digest: &str, repository: &str) -> Result<(), OciError> {
        self.blob_path(digest)?;
        let mut note = self.read_remote_note();
        if note.blobs.get(digest).map(String::as_str) == Some(repository) {
            return Ok(());
        }
        note.blobs
            .insert(digest.to_string(), repository.to_string());
        let bytes = serde_json::to_vec_pretty(&note).map_err(|e| {
            OciError::layout(
                &self.root,
                format!("cannot serialise {REMOTE_BLOBS_FILE}: {e}"),
            )
        })?;
        self.write_atomic(REMOTE_BLOBS_FILE, &bytes)
    }

    /// The repository that holds blob `digest`, when it was deliberately not stored here.
    pub fn remote_blob(&self, digest: &str) -> Option<String> {
        remote_blob_source(&self.root, digest)
    }

    fn read_remote_note(&self) -> RemoteBlobs {
        let path = self.root.join(REMOTE_BLOBS_FILE);
        std::fs::File::open(&path)
            .ok()
            .and_then(|f| {
                let mut bytes = Vec::new();
                f.take(MAX_REMOTE_NOTE_BYTES).read_to_end(&mut bytes).ok()?;
                serde_json::from_slice(&bytes).ok()
            })
            .unwrap_or_default()
    }

    /// Writes one platform's config and manifest; returns the manifest's descriptor (with its
    /// platform) for an index. The layers must already be in the layout.
    pub fn write_image(&self, spec: &ImageSpec) -> Result<Descriptor, OciError> {
        for layer in &spec.layers {
            if !self.blob_path(&layer.digest)?.exists() && self.remote_blob(&layer.digest).is_none()
            {
                return Err(OciError::layout(
                    &self.root,
                    format!(
                        "layer {} of the {} image is not in the layout (nor noted as kept in a \
                         registry); write it first",
                        layer.digest, spec.platform
                    ),
                ));
            }
        }
        let (config, _, manifest, descriptor) = build_image(spec);
        self.write_blob(MEDIA_TYPE_CONFIG, &config)?;
        self.write_blob(MEDIA_TYPE_MANIFEST, &manifest)?;
        Ok(descriptor)
    }

    /// Writes an image index over per-platform manifests; returns its descriptor.
    pub fn write_index(
        &self,
        manifests: &[Descriptor],
        annotations: &BTreeMap<String, String>,
    ) -> Result<Descriptor, OciError> {
        let index = image_index(manifests, annotations);
        self.write_blob(MEDIA_TYPE_INDEX, &index)
    }

    /// Names `descriptor` `name` in `index.json` (replacing what had that name before).
    pub fn tag(&self, descriptor: &Descriptor, name: &str) -> Result<(), OciError> {
        validate_ref_name(name).map_err(|reason| OciError::InvalidOption {
            what: format!("image name {name:?}"),
            reason,
        })?;
        let mut top = self.read_top_index()?;
        top.manifests
            .retain(|d| d.annotations.get(REF_NAME_ANNOTATION).map(String::as_str) != Some(name));
        let mut entry = descriptor.clone();
        entry
            .annotations
            .insert(REF_NAME_ANNOTATION.to_string(), name.to_string());
        top.manifests.push(entry);
        top.manifests.sort_by(|a, b| {
            (a.annotations.get(REF_NAME_ANNOTATION), &a.digest)
                .cmp(&(b.annotations.get(REF_NAME_ANNOTATION), &b.digest))
        });
        self.write_top_index(&top)
    }

    /// The descriptor named `name` in `index.json`.
    pub fn resolve(&self, name: &str) -> Result<Descriptor, OciError> {
        let top = self.read_top_index()?;
        let mut found = top
            .manifests
            .into_iter()
            .find(|d| d.annotations.get(REF_NAME_ANNOTATION).map(String::as_str) == Some(name))
            .ok_or_else(|| {
                OciError::layout(&self.root, format!("no image named {name:?} in index.json"))
            })?;
        found.annotations.remove(REF_NAME_ANNOTATION);
        Ok(found)
    }

    /// The bytes of a small blob (manifest, index, config), checked against its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, OciError> {
        let path = self.blob_path(digest)?;
        let file = std::fs::File::open(&path).map_err(|e| OciError::io("reading", &path, e))?;
        let mut bytes = Vec::new();
        file.take(MAX_DOCUMENT_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| OciError::io("reading", &path, e))?;
        if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
            return Err(OciError::layout(
                &self.root,
                format!("{digest} is larger than {MAX_DOCUMENT_BYTES} bytes"),
            ));
        }
        if super::sha256_digest(&bytes) != digest {
            return Err(OciError::layout(
                &self.root,
                format!("blob {digest} does not hash to its name; the layout is corrupt"),
            ));
        }
        Ok(bytes)
    }

    /// Everything to push for the image named `name`: its blobs (configs and layers, each once),
    /// its per-platform manifests and the root (index or manifest) last.
    pub fn push_plan(&self, name: &str) -> Result<ImagePush, OciError> {
        let root = self.resolve(name)?;
        let root_bytes = self.read_blob(&root.digest)?;
        let mut plan = ImagePush {
            blobs: Vec::new(),
            manifests: Vec::new(),
            root: PushManifest {
                media_type: root.media_type.clone(),
                digest: root.digest.clone(),
                bytes: root_bytes.clone(),
            },
        };
        let parsed = parse_document(&self.root, &root.digest, &root_bytes)?;
        if let Some(manifests) = parsed.manifests {
            for descriptor in manifests {
                let bytes = self.read_blob(&descriptor.digest)?;
                let manifest = parse_document(&self.root, &descriptor.digest, &bytes)?;
                self.add_manifest_blobs(&mut plan, &descriptor.digest, manifest)?;
                plan.manifests.push(PushManifest {
                    media_type: descriptor.media_type,
                    digest: descriptor.digest,
                    bytes,
                });
            }
        } else {
            self.add_manifest_blobs(&mut plan, &root.digest, parsed)?;
        }
        Ok(plan)
    }

    fn add_manifest_blobs(
        &self,
        plan: &mut ImagePush,
        digest: &str,
        manifest: AnyManifest,
    ) -> Result<(), OciError> {
        let (Some(config), Some(layers)) = (manifest.config, manifest.layers) else {
            return Err(OciError::layout(
                &self.root,
                format!(
                    "{digest} ({}) is neither an image index nor an image manifest",
                    manifest.media_type.as_deref().unwrap_or("no mediaType")
                ),
            ));
        };
        for descriptor in std::iter::once(config).chain(layers) {
            if plan.blobs.iter().any(|b| b.digest == descriptor.digest) {
                continue;
            }
            let path = self.blob_path(&descriptor.digest)?;
            let size = match std::fs::metadata(&path) {
                Ok(meta) => meta.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Reused from a registry by `rcross build --push` and not stored here: the
                    // push takes it from there (HEAD-skipped when the target has it already).
                    let Some(from) = self
                        .remote_blob(&descriptor.digest)
                        .and_then(|r| r.parse::<Reference>().ok())
                    else {
                        return Err(OciError::layout(
                            &self.root,
                            format!(
                                "blob {} (named by {digest}): {}",
                                descriptor.digest,
                                missing_blob_message(&self.root, &descriptor.digest)
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
                    &self.root,
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

    /// Writes the layout as an `oci-archive` (an uncompressed tar of the layout directory, its
    /// entries sorted, with fixed ownership and times) into `out`.
    pub fn write_archive<W: Write>(&self, out: W) -> Result<W, OciError> {
        let mut builder = tar::Builder::new(out);
        let fail = |e: std::io::Error| OciError::Compression {
            message: format!("writing the archive: {e}"),
        };
        let mut files = vec![
            (LAYOUT_FILE.to_string(), self.root.join(LAYOUT_FILE)),
            (INDEX_FILE.to_string(), self.root.join(INDEX_FILE)),
        ];
        let blob_dir = self.root.join("blobs").join("sha256");
        let mut blobs = Vec::new();
        for entry in std::fs::read_dir(&blob_dir)
            .map_err(|e| OciError::io("reading directory", &blob_dir, e))?
        {
            let entry = entry.map_err(|e| OciError::io("reading directory", &blob_dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Unfinished writes are dot files.
            if !name.starts_with('.') {
                blobs.push(name);
            }
        }
        blobs.sort();
        for dir in ["blobs/", "blobs/sha256/"] {
            let mut header = super::layer::base_header(tar::EntryType::Directory, 0o755, 0);
            builder
                .append_data(&mut header, dir, std::io::empty())
                .map_err(fail)?;
        }
        files.extend(
            blobs
                .into_iter()
                .map(|name| (format!("blobs/sha256/{name}"), blob_dir.join(name))),
        );
        for (name, path) in files {
            let file = std::fs::File::open(&path).map_err(|e| OciError::io("reading", &path, e))?;
            let size = file
                .metadata()
                .map_err(|e| OciError::io("reading", &path, e))?
                .len();
            let mut header = super::layer::base_header(tar::EntryType::Regular, 0o644, 0);
            header.set_size(size);
            builder
                .append_data(&mut header, &name, file.take(size))
                .map_err(fail)?;
        }
        builder.into_inner().map_err(fail)
    }

    fn read_top_index(&self) -> Result<TopIndex, OciError> {
        let path = self.root.join(INDEX_FILE);
        let bytes = std::fs::read(&path).map_err(|e| OciError::io("reading", &path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| OciError::layout(&self.root, format!("index.json is not an index: {e}")))
    }

    fn write_top_index(&self, top: &TopIndex) -> Result<(), OciError> {
        let bytes = serde_json::to_vec(top).map_err(|e| {
            OciError::layout(&self.root, format!("cannot serialise index.json: {e}"))
        })?;
        self.write_atomic(INDEX_FILE, &bytes)
    }

    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), OciError> {
        let mut temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.root)
            .map_err(|e| OciError::io("creating a file in", &self.root, e))?;
        temp.write_all(bytes)
            .map_err(|e| OciError::io("writing", temp.path(), e))?;
        let target = self.root.join(name);
        temp.persist(&target)
            .map_err(|e| OciError::io("writing", &target, e.error))?;
        Ok(())
    }

    pub(super) fn temp_blob(&self) -> Result<tempfile::NamedTempFile, OciError> {
        let dir = self.root.join("blobs").join("sha256");
        tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(|e| OciError::io("creating a file in", &dir, e))
    }

    pub(super) fn persist(
        &self,
        temp: tempfile::NamedTempFile,
        path: &Path,
    ) -> Result<(), OciError> {
        temp.persist(path)
            .map_err(|e| OciError::io("writing", path, e.error))?;
        Ok(())
    }
}

fn parse_document(root: &Path, digest: &str, bytes: &[u8]) -> Result<AnyManifest, OciError> {
    serde_json::from_slice(bytes)
        .map_err(|e| OciError::layout(root, format!("{digest} is not a manifest or index: {e}")))
}

/// A layout image name: 1 to 255 of letters, digits and `._-:/@+`, not starting with a
/// separator.
fn validate_ref_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._-:/@+".contains(c);
    if name.is_empty()
        || name.len() > 255
        || !name.chars().all(ok_char)
        || !name.starts_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Err(
            "must be 1 to 255 letters, digits or ._-:/@+ starting with a letter or digit"
                .to_string(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{FileSource, RunConfig};

    #[test]
    fn tags_replace_and_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path()).unwrap();
        let a = layout.write_blob(MEDIA_TYPE_INDEX, b"{}").unwrap();
        let b = layout.write_blob(MEDIA_TYPE_INDEX, b"{ }").unwrap();
        layout.tag(&a, "1").unwrap();
        layout.tag(&a, "latest").unwrap();
        layout.tag(&b, "1").unwrap();
        assert_eq!(layout.resolve("1").unwrap().digest, b.digest);
        assert_eq!(layout.resolve("latest").unwrap().digest, a.digest);
        assert!(layout.resolve("nope").is_err());
        assert!(layout.tag(&a, "-bad").is_err());
        assert!(layout.tag(&a, "").is_err());
        // Reopening keeps the content.
        let again = OciLayout::create(dir.path()).unwrap();
        assert_eq!(again.resolve("1").unwrap().digest, b.digest);
    }

    #[test]
    fn refuses_foreign_directories_and_digests() {
        let dir = tempfile::tempdir().unwrap();
        assert!(OciLayout::open(dir.path()).is_err());
        std::fs::write(
            dir.path().join(LAYOUT_FILE),
            r#"{"imageLayoutVersion":"2.0"}"#,
        )
        .unwrap();
        let e = OciLayout::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("2.0"), "{e}");
        let layout = OciLayout {
            root: dir.path().into(),
        };
        assert!(layout.blob_path("sha256:../../etc/passwd").is_err());
    }

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
        let spec = ImageSpec {
            platform: "linux/arm64".parse().unwrap(),
            layers: vec![layer.clone()],
            history: Vec::new(),
            run: RunConfig::default(),
            created: 0,
            annotations: BTreeMap::new(),
        };
        let e = layout.write_image(&spec).unwrap_err();
        assert!(e.to_string().contains("write it first"), "{e}");
        layout
            .note_remote_blob(&layer.digest, "127.0.0.1:5000/app")
            .unwrap();
        let manifest = layout.write_image(&spec).unwrap();
        layout.tag(&manifest, "1").unwrap();
        let plan = layout.push_plan("1").unwrap();
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
        std::fs::remove_file(dir.path().join(REMOTE_BLOBS_FILE)).unwrap();
        let e = layout.push_plan("1").unwrap_err().to_string();
        assert!(e.contains(&layer.digest) && e.contains("incomplete"), "{e}");
    }

    #[test]
    fn image_plan_and_archive() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path()).unwrap();
        let layer = layout
            .write_layer(
                &[LayerEntry::file(
                    "hello",
                    FileSource::Bytes(b"hi".to_vec()),
                    0o755,
                )],
                &LayerOptions::default(),
            )
            .unwrap();
        let mut manifests = Vec::new();
        for platform in ["linux/amd64", "linux/arm/v7"] {
            let spec = ImageSpec {
                platform: platform.parse().unwrap(),
                layers: vec![layer.clone()],
                history: Vec::new(),
                run: RunConfig::default(),
                created: 0,
                annotations: BTreeMap::new(),
            };
            manifests.push(layout.write_image(&spec).unwrap());
        }
        let index = layout.write_index(&manifests, &BTreeMap::new()).unwrap();
        layout.tag(&index, "v1").unwrap();
        let plan = layout.push_plan("v1").unwrap();
        assert_eq!(plan.root.digest, index.digest);
        assert_eq!(plan.manifests.len(), 2);
        assert_eq!(plan.blobs.len(), 3, "one shared layer and two configs");
        let archive = layout.write_archive(Vec::new()).unwrap();
        let names: Vec<String> = tar::Archive::new(archive.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names[..4],
            ["blobs/", "blobs/sha256/", "oci-layout", "index.json"]
        );
        assert_eq!(names.len(), 4 + 6);
    }
}
