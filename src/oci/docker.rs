//! Blobs copied into a layout from elsewhere (a base image's layers), and the `docker-archive`
//! form of one image (what `docker save` writes and `docker load` reads: `manifest.json`, the
//! config and one uncompressed tar per layer).

use std::io::{self, BufWriter, Read, Write};

use serde::Serialize;

use super::documents::Descriptor;
use super::error::OciError;
use super::layer::HashingWriter;
use super::layout::OciLayout;
use crate::image::model::LayerCompression;
use crate::image::{BlobFault, ImageConfig, ImageManifest, MediaKind, VerifiedBlob};

#[derive(Serialize)]
struct DockerManifest<'a> {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: &'a [String],
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

impl OciLayout {
    /// Whether the blob `digest` is in the layout.
    pub fn has_blob(&self, digest: &str) -> Result<bool, OciError> {
        Ok(self.blob_path(digest)?.exists())
    }

    /// Puts the blob `file` holds into the layout as `digest`: a hard link when `file` is on the
    /// same file system, else a copy checked like [`OciLayout::copy_blob`]. For a file this
    /// process wrote (its digest computed as it was written) and no one else can change: a
    /// scratch layout's blob. A blob already there is left alone.
    pub fn link_blob(
        &self,
        digest: &str,
        size: u64,
        file: &std::path::Path,
    ) -> Result<(), OciError> {
        let path = self.blob_path(digest)?;
        if path.exists() || std::fs::hard_link(file, &path).is_ok() {
            return Ok(());
        }
        let mut from = std::fs::File::open(file).map_err(|e| OciError::io("opening", file, e))?;
        self.copy_blob(digest, size, &file.display().to_string(), &mut from)
    }

    /// Streams a blob from `from` (named `source` in messages) into the layout, checking its
    /// size and sha256 before it is stored. A blob already there is not read again.
    pub fn copy_blob(
        &self,
        digest: &str,
        size: u64,
        source: &str,
        from: &mut dyn Read,
    ) -> Result<(), OciError> {
        let path = self.blob_path(digest)?;
        if path.exists() {
            return Ok(());
        }
        let temp = self.temp_blob()?;
        let temp_path = temp.path().to_path_buf();
        let mut writer = BufWriter::with_capacity(1 << 20, temp);
        let mismatch = |message: String| OciError::BlobMismatch {
            digest: digest.to_string(),
            from: source.to_string(),
            message,
        };
        // One byte past the descriptor's size tells a longer blob; nothing more is read.
        let mut verified = VerifiedBlob::new(from, digest, Some(size));
        io::copy(&mut verified, &mut writer).map_err(|e| {
            mismatch(match BlobFault::of(&e) {
                Some(BlobFault::Long { size, .. }) => {
                    format!("more than {size} bytes arrived, its descriptor says {size}")
                }
                Some(BlobFault::Short { read, size, .. }) => {
                    format!("{read} bytes arrived, its descriptor says {size}")
                }
                Some(BlobFault::Digest { actual, .. }) => {
                    format!("the content hashes to sha256:{actual}")
                }
                None => format!("reading failed: {e}"),
            })
        })?;
        let temp = writer
            .into_inner()
            .map_err(|e| OciError::io("writing", &temp_path, e.into_error()))?;
        self.persist(temp, &path)
    }

    /// Writes the image whose manifest is `manifest` as a `docker-archive` into `out`:
    /// `<config hex>.json`, `<diff_id hex>/layer.tar` (uncompressed, checked against the
    /// config's diff_ids) and `manifest.json` naming `repo_tags`. Entries are in a fixed order
    /// with fixed ownership and times.
    pub fn write_docker_archive<W: Write>(
        &self,
        manifest: &Descriptor,
        repo_tags: &[String],
        out: W,
    ) -> Result<W, OciError> {
        let fail = |e: io::Error| OciError::Compression {
            message: format!("writing the docker archive: {e}"),
        };
        let bad = |message: String| OciError::layout(self.root(), message);
        let manifest_bytes = self.read_blob(&manifest.digest)?;
        let doc = ImageManifest::parse(&manifest_bytes)
            .map_err(|e| bad(format!("{} is not an image manifest: {e}", manifest.digest)))?;
        let config_bytes = self.read_blob(&doc.config.digest)?;
        let config = ImageConfig::parse(&config_bytes)
            .map_err(|e| bad(format!("config {} is not valid: {e}", doc.config.digest)))?;
        if config.diff_ids().len() != doc.layers.len() {
            return Err(bad(format!(
                "{} has {} layers but its config {} diff_ids",
                manifest.digest,
                doc.layers.len(),
                config.diff_ids().len()
            )));
        }
        let hex = |d: &str| d.strip_prefix("sha256:").unwrap_or(d).to_string();
        let mut builder = tar::Builder::new(out);
        let config_name = format!("{}.json", hex(&doc.config.digest));
        let mut header = super::layer::base_header(tar::EntryType::Regular, 0o644, 0);
        header.set_size(config_bytes.len() as u64);
        builder
            .append_data(&mut header, &config_name, config_bytes.as_slice())
            .map_err(fail)?;

        let mut names = Vec::new();
        for (layer, diff_id) in doc.layers.iter().zip(config.diff_ids()) {
            let dir = hex(diff_id);
            let name = format!("{dir}/layer.tar");
            if names.contains(&name) {
                names.push(name);
                continue;
            }
            // The uncompressed tar goes to a temporary file first: a tar entry needs its size
            // up front, and the content must match the diff_id before it is archived.
            let path = self.blob_path(&layer.digest)?;
            let file = std::fs::File::open(&path).map_err(|e| OciError::io("reading", &path, e))?;
            let mut file = VerifiedBlob::new(file, &layer.digest, Some(layer.size));
            let mut reader: Box<dyn Read> = match layer.kind() {
                MediaKind::Layer(LayerCompression::Gzip) => Box::new(
                    flate2::read::MultiGzDecoder::new(io::BufReader::new(&mut file)),
                ),
                MediaKind::Layer(LayerCompression::Zstd) => Box::new(
                    zstd::stream::read::Decoder::new(&mut file)
                        .map_err(|e| OciError::io("reading", &path, e))?,
                ),
                _ => Box::new(&mut file),
            };
            let temp = self.temp_blob()?;
            let temp_path = temp.path().to_path_buf();
            let mut writer = HashingWriter::new(BufWriter::with_capacity(1 << 20, temp));
            let undecompressable = |e: io::Error| {
                bad(format!(
                    "layer {} cannot be decompressed ({}): {e}",
                    layer.digest, layer.media_type
                ))
            };
            io::copy(&mut reader, &mut writer).map_err(undecompressable)?;
            drop(reader);
            // The rest of the blob (compression trailers) still counts for its digest.
            io::copy(&mut file, &mut io::sink()).map_err(undecompressable)?;
            let got = writer.hash.digest();
            if &got != diff_id {
                return Err(bad(format!(
                    "layer {} decompresses to {got}, but the config's diff_id is {diff_id}",
                    layer.digest
                )));
            }
            let size = writer.hash.count;
            let mut temp = writer
                .into_inner()
                .into_inner()
                .map_err(|e| OciError::io("writing", &temp_path, e.into_error()))?;
            temp.flush()
                .map_err(|e| OciError::io("writing", &temp_path, e))?;
            let mut file = temp
                .reopen()
                .map_err(|e| OciError::io("reading", &temp_path, e))?;
            let mut dir_header = super::layer::base_header(tar::EntryType::Directory, 0o755, 0);
            builder
                .append_data(&mut dir_header, format!("{dir}/"), io::empty())
                .map_err(fail)?;
            let mut header = super::layer::base_header(tar::EntryType::Regular, 0o644, 0);
            header.set_size(size);
            builder
                .append_data(&mut header, &name, (&mut file).take(size))
                .map_err(fail)?;
            names.push(name);
        }
        let manifest_json = serde_json::to_vec(&[DockerManifest {
            config: config_name,
            repo_tags,
            layers: names,
        }])
        .map_err(|e| bad(format!("cannot serialise manifest.json: {e}")))?;
        let mut header = super::layer::base_header(tar::EntryType::Regular, 0o644, 0);
        header.set_size(manifest_json.len() as u64);
        builder
            .append_data(&mut header, "manifest.json", manifest_json.as_slice())
            .map_err(fail)?;
        builder.into_inner().map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::documents::test_spec;

    #[test]
    fn copy_checks_digest_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path()).unwrap();
        let data = b"layer bytes".to_vec();
        let digest = crate::oci::sha256_digest(&data);
        let e = layout
            .copy_blob(&digest, 3, "test", &mut data.as_slice())
            .unwrap_err();
        assert!(e.to_string().contains("descriptor says 3"), "{e}");
        let other = crate::oci::sha256_digest(b"x");
        let e = layout
            .copy_blob(&other, data.len() as u64, "test", &mut data.as_slice())
            .unwrap_err();
        assert!(e.to_string().contains("hashes to"), "{e}");
        assert!(!layout.has_blob(&other).unwrap());
        layout
            .copy_blob(&digest, data.len() as u64, "test", &mut data.as_slice())
            .unwrap();
        assert_eq!(layout.read_blob(&digest).unwrap(), data);
    }

    #[test]
    fn docker_archive_has_uncompressed_layers() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path()).unwrap();
        let layer = crate::oci::layout::test_layer(&layout, "a");
        let spec = test_spec("linux/arm64", vec![layer.clone(), layer.clone()]);
        let m = layout.write_image(&spec).unwrap();
        let tags = vec!["x/y:1".to_string()];
        let bytes = layout.write_docker_archive(&m, &tags, Vec::new()).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut manifest = None;
        let mut names = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            if name.ends_with("layer.tar") {
                let mut content = Vec::new();
                e.read_to_end(&mut content).unwrap();
                assert_eq!(crate::oci::sha256_digest(&content), layer.diff_id);
            }
            if name == "manifest.json" {
                let mut content = String::new();
                e.read_to_string(&mut content).unwrap();
                manifest = Some(content);
            }
            names.push(name);
        }
        let manifest: serde_json::Value = serde_json::from_str(&manifest.unwrap()).unwrap();
        let hex = layer.diff_id.trim_start_matches("sha256:");
        assert_eq!(manifest[0]["RepoTags"][0], "x/y:1");
        assert_eq!(manifest[0]["Layers"][0], format!("{hex}/layer.tar"));
        assert_eq!(manifest[0]["Layers"][1], format!("{hex}/layer.tar"));
        assert_eq!(names.len(), 4, "{names:?}");
    }
}
