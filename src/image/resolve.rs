//! From an image's root (an index, nested indexes, or one manifest) to its per-platform image
//! manifests: the one walk every reader of images uses (verify, inspect, base images, layer
//! reuse, `manifest create`, pushing a layout). Attestation manifests are skipped, entries
//! without a platform take the one their config names, and every document is read through
//! [`ImageSource`], digest-checked and size-capped.

use serde::Serialize;

use super::digest::sha256_digest;
use super::model::{Descriptor, Document, ImageConfig, ImageManifest, MediaKind, MAX_DOCUMENT};
use super::platform::OciPlatform;
use super::{ImageSource, SourceError};
use crate::platform::Platform;

/// Why an image's documents could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
}

fn invalid(what: impl Into<String>, message: impl std::fmt::Display) -> ReadError {
    ReadError::Invalid {
        what: what.into(),
        message: message.to_string(),
    }
}

/// How far the walk goes before it refuses an image as hostile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolveLimits {
    /// Indexes nested inside indexes.
    pub max_depth: usize,
    /// Image manifests (all platforms, all nested indexes together).
    pub max_manifests: usize,
}

impl Default for ResolveLimits {
    fn default() -> Self {
        ResolveLimits {
            max_depth: 4,
            max_manifests: 1024,
        }
    }
}

/// A manifest that is not an image to read, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedManifest {
    pub platform: String,
    pub digest: String,
    pub reason: String,
}

/// A manifest and its config, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    pub bytes: Vec<u8>,
    pub manifest: ImageManifest,
    pub config: ImageConfig,
}

/// One image manifest reachable from the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformImage {
    /// The manifest's descriptor as its index gives it (for a lone manifest, made from its
    /// bytes).
    pub descriptor: Descriptor,
    /// The platform its index entry names, else the one its config names.
    pub platform: OciPlatform,
    /// The manifest and config, once read (entries without a platform are read to learn it).
    pub loaded: Option<LoadedImage>,
}

impl PlatformImage {
    pub fn digest(&self) -> &str {
        &self.descriptor.digest
    }

    /// The rcross platform it is for, when rcross knows it (after normalisation).
    pub fn rcross_platform(&self) -> Option<Platform> {
        self.platform.platform()
    }

    /// Its manifest and config, read from `src` unless read already.
    pub fn load(&mut self, src: &dyn ImageSource) -> Result<&LoadedImage, ReadError> {
        if self.loaded.is_none() {
            let bytes = document(src, &self.descriptor, "manifest")?;
            self.loaded = Some(load_manifest(src, &self.descriptor.digest, bytes)?);
        }
        self.loaded
            .as_ref()
            .ok_or_else(|| invalid(self.digest(), "not loaded"))
    }

    /// Moves the loaded manifest and config out, reading them first if needed.
    pub fn take_loaded(&mut self, src: &dyn ImageSource) -> Result<LoadedImage, ReadError> {
        self.load(src)?;
        self.loaded
            .take()
            .ok_or_else(|| invalid(self.digest(), "not loaded"))
    }
}

/// The root of an image as its source gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootDocument {
    pub media_type: String,
    /// sha256 of `bytes`.
    pub digest: String,
    pub bytes: Vec<u8>,
    pub document: Document,
}

/// An image resolved to its per-platform manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The source, as [`ImageSource::describe`] names it.
    pub source: String,
    pub root: RootDocument,
    /// In index order (nested indexes in place).
    pub images: Vec<PlatformImage>,
    pub skipped: Vec<SkippedManifest>,
}

impl ResolvedImage {
    /// The images for `platform`, matched after normalisation.
    pub fn for_platform(&self, platform: Platform) -> impl Iterator<Item = &PlatformImage> {
        self.images
            .iter()
            .filter(move |i| i.rcross_platform() == Some(platform))
    }

    /// The platforms it has, as rcross names them (as written when rcross does not know one),
    /// sorted, each once.
    pub fn available(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .images
            .iter()
            .map(|i| match i.rcross_platform() {
                Some(p) => p.to_string(),
                None => i.platform.display(),
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Reads `src`'s root and every index under it, down to the image manifests.
pub fn resolve(src: &dyn ImageSource, limits: ResolveLimits) -> Result<ResolvedImage, ReadError> {
    let source = src.describe();
    let (media_type, bytes) = src.root()?;
    let document =
        Document::parse(&bytes).map_err(|e| invalid(format!("{source}: the root manifest"), e))?;
    let digest = sha256_digest(&bytes);
    let mut walk = Walk {
        src,
        limits,
        images: Vec::new(),
        skipped: Vec::new(),
    };
    match &document {
        Document::Index(index) => walk.index(&source, &index.manifests, 0)?,
        Document::Manifest(manifest) => {
            let descriptor = Descriptor {
                media_type: media_type.clone(),
                digest: digest.clone(),
                size: bytes.len() as u64,
                platform: None,
                annotations: manifest.annotations.clone(),
            };
            walk.manifest_without_platform(descriptor, bytes.clone())?;
        }
    }
    Ok(ResolvedImage {
        source,
        root: RootDocument {
            media_type,
            digest,
            bytes,
            document,
        },
        images: walk.images,
        skipped: walk.skipped,
    })
}

struct Walk<'a> {
    src: &'a dyn ImageSource,
    limits: ResolveLimits,
    images: Vec<PlatformImage>,
    skipped: Vec<SkippedManifest>,
}

impl Walk<'_> {
    fn index(&mut self, what: &str, entries: &[Descriptor], depth: usize) -> Result<(), ReadError> {
        for d in entries {
            match d.kind() {
                MediaKind::Index => self.nested(what, d, depth)?,
                _ if d.is_attestation() => self.skip(d, "attestation manifest (no filesystem)"),
                MediaKind::Manifest => self.image(d.clone())?,
                // No media type: what the document is tells.
                _ if d.media_type.is_empty() => {
                    let bytes = document(self.src, d, "manifest")?;
                    match Document::parse(&bytes).map_err(|e| invalid(&d.digest, e))? {
                        Document::Index(index) => {
                            self.deeper(what, depth)?;
                            let w = format!("index {} in {what}", d.digest);
                            self.index(&w, &index.manifests, depth + 1)?;
                        }
                        Document::Manifest(_) => match &d.platform {
                            Some(p) => self.push(d.clone(), p.clone(), None)?,
                            None => self.manifest_without_platform(d.clone(), bytes)?,
                        },
                    }
                }
                _ => self.skip(
                    d,
                    &format!("not an image manifest (media type {})", d.media_type),
                ),
            }
        }
        Ok(())
    }

    fn deeper(&self, what: &str, depth: usize) -> Result<(), ReadError> {
        if depth >= self.limits.max_depth {
            return Err(invalid(
                what,
                format!("indexes nested more than {} deep", self.limits.max_depth),
            ));
        }
        Ok(())
    }

    fn nested(&mut self, what: &str, d: &Descriptor, depth: usize) -> Result<(), ReadError> {
        self.deeper(what, depth)?;
        let bytes = document(self.src, d, "index")?;
        let w = format!("index {} in {what}", d.digest);
        let inner = match Document::parse(&bytes).map_err(|e| invalid(&w, e))? {
            Document::Index(index) => index,
            Document::Manifest(_) => return Err(invalid(&w, "an image manifest, not an index")),
        };
        self.index(&w, &inner.manifests, depth + 1)
    }

    fn image(&mut self, d: Descriptor) -> Result<(), ReadError> {
        match d.platform.clone() {
            Some(p) => self.push(d, p, None),
            None => {
                let bytes = document(self.src, &d, "manifest")?;
                self.manifest_without_platform(d, bytes)
            }
        }
    }

    /// A manifest whose platform only its config tells.
    fn manifest_without_platform(
        &mut self,
        d: Descriptor,
        bytes: Vec<u8>,
    ) -> Result<(), ReadError> {
        let loaded = load_manifest(self.src, &d.digest, bytes)?;
        let platform = loaded.config.platform();
        self.push(d, platform, Some(loaded))
    }

    fn push(
        &mut self,
        descriptor: Descriptor,
        platform: OciPlatform,
        loaded: Option<LoadedImage>,
    ) -> Result<(), ReadError> {
        if self.images.len() >= self.limits.max_manifests {
            return Err(invalid(
                &descriptor.digest,
                format!("more than {} image manifests", self.limits.max_manifests),
            ));
        }
        self.images.push(PlatformImage {
            descriptor,
            platform,
            loaded,
        });
        Ok(())
    }

    fn skip(&mut self, d: &Descriptor, reason: &str) {
        self.skipped.push(SkippedManifest {
            platform: d
                .platform
                .as_ref()
                .map_or_else(|| "unknown".to_string(), OciPlatform::display),
            digest: d.digest.clone(),
            reason: reason.to_string(),
        });
    }
}

/// The bytes of the document `d` points to: at most its size (and [`MAX_DOCUMENT`]), exactly
/// its size when it gives one.
fn document(src: &dyn ImageSource, d: &Descriptor, kind: &str) -> Result<Vec<u8>, ReadError> {
    let bytes = src.manifest_bytes(&d.digest, d.document_limit())?;
    exact_size(&format!("{kind} {}", d.digest), d.size, &bytes)?;
    Ok(bytes)
}

fn exact_size(what: &str, size: u64, bytes: &[u8]) -> Result<(), ReadError> {
    if size != 0 && bytes.len() as u64 != size {
        return Err(invalid(
            what,
            format!(
                "is {} bytes, its descriptor says {size}; the image is inconsistent",
                bytes.len()
            ),
        ));
    }
    Ok(())
}

/// Parses manifest `digest` and reads its config.
pub fn load_manifest(
    src: &dyn ImageSource,
    digest: &str,
    bytes: Vec<u8>,
) -> Result<LoadedImage, ReadError> {
    let what = format!("manifest {digest}");
    let manifest = match Document::parse(&bytes).map_err(|e| invalid(&what, e))? {
        Document::Manifest(m) => m,
        Document::Index(_) => return Err(invalid(&what, "an image index, not a manifest")),
    };
    let config = read_config(src, &manifest.config)?;
    Ok(LoadedImage {
        bytes,
        manifest,
        config,
    })
}

/// The config `d` points to, parsed.
pub fn read_config(src: &dyn ImageSource, d: &Descriptor) -> Result<ImageConfig, ReadError> {
    let what = format!("config {}", d.digest);
    let limit = match d.size {
        0 => MAX_DOCUMENT,
        size => size.min(MAX_DOCUMENT),
    };
    let bytes = src.blob_bytes(&d.digest, limit)?;
    exact_size(&what, d.size, &bytes)?;
    ImageConfig::parse(&bytes).map_err(|e| invalid(what, e))
}

#[cfg(test)]
mod tests {
    use super::super::model::*;
    use super::super::testing::MemorySource;
    use super::*;

    fn config(arch: &str, variant: Option<&str>) -> String {
        let v = variant.map_or(String::new(), |v| format!(r#","variant":"{v}""#));
        format!(
            r#"{{"architecture":"{arch}","os":"linux"{v},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        )
    }

    fn manifest(mem: &mut MemorySource, media_type: &str, arch: &str) -> Descriptor {
        let c = mem.add(config(arch, None).as_bytes());
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{{"mediaType":"x","digest":"{}","size":{}}},"layers":[]}}"#,
            c.digest, c.size
        );
        let mut d = mem.add(m.as_bytes());
        d.media_type = media_type.to_string();
        d
    }

    fn index(entries: &[Descriptor], media_type: &str) -> Vec<u8> {
        serde_json::to_vec(&ImageIndex {
            schema_version: 2,
            media_type: Some(media_type.to_string()),
            manifests: entries.to_vec(),
            annotations: Default::default(),
        })
        .unwrap()
    }

    #[test]
    fn nested_indexes_attestations_and_platformless_entries() {
        let mut mem = MemorySource::default();
        let mut arm64 = manifest(&mut mem, MEDIA_TYPE_OCI_MANIFEST, "arm64");
        arm64.platform = Some(OciPlatform::new("linux", "arm64", Some("v8")));
        // No platform in the entry: the config says amd64.
        let amd64 = manifest(&mut mem, MEDIA_TYPE_DOCKER_MANIFEST, "amd64");
        let mut att = manifest(&mut mem, MEDIA_TYPE_OCI_MANIFEST, "amd64");
        att.platform = Some(OciPlatform::new("unknown", "unknown", None));
        let mut att2 = manifest(&mut mem, MEDIA_TYPE_OCI_MANIFEST, "amd64");
        att2.platform = Some(OciPlatform::new("linux", "amd64", None));
        att2.annotations.insert(
            REFERENCE_TYPE_ANNOTATION.into(),
            "attestation-manifest".into(),
        );
        let inner = index(&[arm64, amd64, att, att2], MEDIA_TYPE_DOCKER_MANIFEST_LIST);
        let mut nested = mem.add(&inner);
        nested.media_type = MEDIA_TYPE_DOCKER_MANIFEST_LIST.into();
        nested
            .annotations
            .insert(REF_NAME_ANNOTATION.into(), "latest".into());
        mem.root = index(&[nested], MEDIA_TYPE_OCI_INDEX);

        let r = resolve(&mem, ResolveLimits::default()).unwrap();
        let names: Vec<Option<String>> = r
            .images
            .iter()
            .map(|i| i.rcross_platform().map(|p| p.to_string()))
            .collect();
        assert_eq!(
            names,
            [Some("linux/arm64".to_string()), Some("linux/amd64".into())]
        );
        assert!(r.images[0].loaded.is_none(), "read only when needed");
        assert!(r.images[1].loaded.is_some());
        assert_eq!(r.skipped.len(), 2);
        assert!(r.skipped[0].reason.contains("attestation"));
        assert_eq!(r.available(), ["linux/amd64", "linux/arm64"]);
        let arm64: Platform = "linux/arm64".parse().unwrap();
        assert_eq!(r.for_platform(arm64).count(), 1);
        let mut first = r.images[0].clone();
        assert_eq!(first.load(&mem).unwrap().config.architecture, "arm64");

        let shallow = ResolveLimits {
            max_depth: 0,
            ..ResolveLimits::default()
        };
        let e = resolve(&mem, shallow).unwrap_err().to_string();
        assert!(e.contains("nested more than 0"), "{e}");
        let few = ResolveLimits {
            max_manifests: 1,
            ..ResolveLimits::default()
        };
        assert!(resolve(&mem, few).is_err());
    }

    #[test]
    fn a_lone_manifest_is_its_own_image() {
        let mut mem = MemorySource::default();
        let d = manifest(&mut mem, MEDIA_TYPE_OCI_MANIFEST, "riscv64");
        mem.root = mem.blobs[&d.digest].clone();
        let r = resolve(&mem, ResolveLimits::default()).unwrap();
        assert_eq!(r.images.len(), 1);
        assert_eq!(r.images[0].digest(), d.digest);
        assert_eq!(r.root.digest, d.digest);
        assert_eq!(r.images[0].platform.display(), "linux/riscv64");
    }

    #[test]
    fn documents_must_have_their_descriptor_size() {
        let mut mem = MemorySource::default();
        let mut d = manifest(&mut mem, MEDIA_TYPE_OCI_MANIFEST, "amd64");
        d.size += 1;
        mem.root = index(&[d], MEDIA_TYPE_OCI_INDEX);
        let e = resolve(&mem, ResolveLimits::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("its descriptor says"), "{e}");
    }
}
