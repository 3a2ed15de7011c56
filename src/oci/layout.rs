//! The OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) and its `oci-archive`
//! form, a tar of the layout.

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::image::layout::{remote_blob_source, RemoteBlobs, REMOTE_BLOBS_FILE};
use crate::image::model::REF_NAME_ANNOTATION;
use crate::image::{BlobFault, ImageIndex, VerifiedBlob};

use super::documents::{build_image, image_index, ConfigExtras, Descriptor, ImageSpec};
use super::error::OciError;
use super::layer::{write_layer, Layer, LayerEntry, LayerOptions};
use super::{MEDIA_TYPE_CONFIG, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};

const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_CONTENT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
const INDEX_FILE: &str = "index.json";
/// Largest manifest, index or config read back from a layout.
const MAX_DOCUMENT_BYTES: u64 = crate::image::MAX_DOCUMENT;

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct OciLayout {
    root: PathBuf,
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
            layout.write_top_index(&ImageIndex {
                schema_version: 2,
                media_type: Some(MEDIA_TYPE_INDEX.to_string()),
                manifests: Vec::new(),
                annotations: BTreeMap::new(),
            })?;
        }
        OciLayout::open(dir)
    }

    /// A place to stage blobs before they are linked into a layout: `dir/blobs/sha256` only,
    /// without the `oci-layout` and `index.json` files of a layout (two fewer files to create and
    /// remove on every build). Only its blobs are ever used: [`OciLayout::open`] refuses it.
    pub fn blob_store(dir: &Path) -> Result<OciLayout, OciError> {
        let blobs = dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs)
            .map_err(|e| OciError::io("creating directory", &blobs, e))?;
        Ok(OciLayout {
            root: dir.to_path_buf(),
        })
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
    /// `repository` (`REGISTRY/REPO`) has it: [`OciLayout::write_image`] accepts it, a push of
    /// the layout fetches it from there when the target lacks it, and readers that need its
    /// bytes say where it is (see [`crate::image::layout::missing_blob_message`]).
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
        RemoteBlobs::read(&self.root)
    }

    /// Writes one platform's config and manifest; returns the manifest's descriptor (with its
    /// platform) for an index. The layers must already be in the layout.
    pub fn write_image(&self, spec: &ImageSpec) -> Result<Descriptor, OciError> {
        self.write_image_with(spec, &ConfigExtras::default())
    }

    /// [`OciLayout::write_image`] with the Dockerfile-only config fields of `extras`.
    pub fn write_image_with(
        &self,
        spec: &ImageSpec,
        extras: &ConfigExtras,
    ) -> Result<Descriptor, OciError> {
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
        let (config, _, manifest, descriptor) = build_image(spec, extras);
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
        top.manifests.retain(|d| d.ref_name() != Some(name));
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
            .find(|d| d.ref_name() == Some(name))
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
        let size = file
            .metadata()
            .map_err(|e| OciError::io("reading", &path, e))?
            .len();
        if size > MAX_DOCUMENT_BYTES {
            return Err(OciError::layout(
                &self.root,
                format!("{digest} is larger than {MAX_DOCUMENT_BYTES} bytes"),
            ));
        }
        let mut bytes = Vec::new();
        VerifiedBlob::new(file, digest, Some(size))
            .read_to_end(&mut bytes)
            .map_err(|e| match BlobFault::of(&e) {
                Some(_) => OciError::layout(
                    &self.root,
                    format!("blob {digest} does not hash to its name; the layout is corrupt"),
                ),
                None => OciError::io("reading", &path, e),
            })?;
        Ok(bytes)
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

    fn read_top_index(&self) -> Result<ImageIndex, OciError> {
        let path = self.root.join(INDEX_FILE);
        let bytes = std::fs::read(&path).map_err(|e| OciError::io("reading", &path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| OciError::layout(&self.root, format!("index.json is not an index: {e}")))
    }

    fn write_top_index(&self, top: &ImageIndex) -> Result<(), OciError> {
        let bytes = serde_json::to_vec(top).map_err(|e| {
            OciError::layout(&self.root, format!("cannot serialise index.json: {e}"))
        })?;
        self.write_atomic(INDEX_FILE, &bytes)
    }

    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), OciError> {
        let target = self.root.join(name);
        // A file that already says this is left alone: replacing it would cost a flush and,
        // on file systems mounted with discard, a discard of the old blocks.
        if std::fs::read(&target).is_ok_and(|old| old == bytes) {
            return Ok(());
        }
        let mut temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.root)
            .map_err(|e| OciError::io("creating a file in", &self.root, e))?;
        temp.write_all(bytes)
            .map_err(|e| OciError::io("writing", temp.path(), e))?;
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

/// A layer of one small file written into `layout`, for tests.
#[cfg(test)]
pub(crate) fn test_layer(layout: &OciLayout, name: &str) -> Layer {
    let file = LayerEntry::file(
        name,
        super::layer::FileContent::Bytes(b"hi".to_vec()),
        0o755,
    );
    layout
        .write_layer(&[file], &LayerOptions::default())
        .unwrap()
}

/// A layout at `dir` holding an index over linux/amd64 and linux/arm/v7 images that share one
/// layer, named `v1`; and the index's descriptor. For tests.
#[cfg(test)]
pub(crate) fn test_two_platform_layout(dir: &Path) -> (OciLayout, Descriptor) {
    let layout = OciLayout::create(dir).unwrap();
    let layer = test_layer(&layout, "hello");
    let mut manifests = Vec::new();
    for platform in ["linux/amd64", "linux/arm/v7"] {
        let spec = super::documents::test_spec(platform, vec![layer.clone()]);
        manifests.push(layout.write_image(&spec).unwrap());
    }
    let index = layout.write_index(&manifests, &BTreeMap::new()).unwrap();
    layout.tag(&index, "v1").unwrap();
    (layout, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_store_holds_blobs_only_and_is_not_a_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = OciLayout::blob_store(dir.path()).unwrap();
        let d = store.write_blob(MEDIA_TYPE_INDEX, b"{}").unwrap();
        assert!(store.blob_path(&d.digest).unwrap().is_file());
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["blobs"]);
        assert!(OciLayout::open(dir.path()).is_err());
    }

    #[test]
    fn a_scratch_blob_is_linked_into_a_layout() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let scratch = OciLayout::create(&dir.path().join("scratch")).unwrap();
        let out = OciLayout::create(&dir.path().join("out")).unwrap();
        let d = scratch.write_blob(MEDIA_TYPE_INDEX, b"{\"x\":1}").unwrap();
        let from = scratch.blob_path(&d.digest).unwrap();
        out.link_blob(&d.digest, d.size, &from).unwrap();
        let to = out.blob_path(&d.digest).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"{\"x\":1}");
        assert_eq!(
            std::fs::metadata(&to).unwrap().ino(),
            std::fs::metadata(&from).unwrap().ino(),
            "same file system: a hard link"
        );
        // A file that cannot be linked or read puts nothing into the layout.
        let other = OciLayout::create(&dir.path().join("other")).unwrap();
        let missing = dir.path().join("missing");
        assert!(other.link_blob(&d.digest, d.size, &missing).is_err());
        assert!(!other.has_blob(&d.digest).unwrap());
    }

    #[test]
    fn an_unchanged_index_is_not_rewritten() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path()).unwrap();
        let a = layout.write_blob(MEDIA_TYPE_INDEX, b"{}").unwrap();
        let b = layout.write_blob(MEDIA_TYPE_INDEX, b"{ }").unwrap();
        let inode = || {
            std::fs::metadata(dir.path().join(INDEX_FILE))
                .unwrap()
                .ino()
        };
        layout.tag(&a, "1").unwrap();
        let first = inode();
        layout.tag(&a, "1").unwrap();
        assert_eq!(
            inode(),
            first,
            "the same index.json again: the file is left alone"
        );
        layout.tag(&b, "1").unwrap();
        assert_ne!(inode(), first, "a changed one is replaced whole");
        assert_eq!(layout.resolve("1").unwrap().digest, b.digest);
    }

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
    fn archive_of_a_two_platform_image() {
        let dir = tempfile::tempdir().unwrap();
        let (layout, _) = test_two_platform_layout(dir.path());
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
