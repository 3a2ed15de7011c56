//! Reading and verifying a container image through [`ImageSource`]: index → platform manifests →
//! layers streamed in order, with whiteouts applied, so only files present in the final
//! filesystem of each platform are judged, each against its own platform.

use super::{classify_stream, tar::EntryKind, walk_tar_entries, Found};
use crate::elf::{self, ElfInfo, Finding};
use crate::image::{ImageSource, SourceError};
use crate::platform::Platform;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest manifest, index or config accepted.
const MAX_MANIFEST: u64 = 4 * 1024 * 1024;
/// Nesting of indexes inside indexes accepted.
const MAX_DEPTH: usize = 4;

/// Why an image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{what}: {message}")]
    Manifest { what: String, message: String },
    #[error("{platform} layer {digest} of {source_name}: {error}")]
    Layer {
        source_name: String,
        platform: String,
        digest: String,
        error: super::tar::TarError,
    },
    #[error("{source_name} has no {platform} manifest; it has: {available}")]
    NoPlatform {
        source_name: String,
        platform: String,
        available: String,
    },
}

/// What stays of an ELF file in the final filesystem.
#[derive(Debug, Clone)]
pub enum Record {
    Elf(Box<ElfInfo>),
    Corrupt(String),
}

/// The ELF files of one platform's final filesystem.
#[derive(Debug)]
pub struct PlatformContents {
    pub platform: Platform,
    pub manifest: String,
    pub layers: usize,
    /// Tar entries read across all layers.
    pub entries: u64,
    /// Absolute path in the image → ELF record.
    pub files: BTreeMap<String, Record>,
}

/// A manifest not checked, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub platform: String,
    pub digest: String,
    pub reason: String,
}

#[derive(Debug)]
pub struct ImageContents {
    pub source: String,
    pub platforms: Vec<PlatformContents>,
    pub skipped: Vec<Skipped>,
}

/// Verification of one platform of an image.
#[derive(Debug, Serialize)]
pub struct PlatformReport {
    pub platform: Platform,
    pub manifest: String,
    pub layers: usize,
    pub elf_files: usize,
    pub findings: Vec<Finding>,
}

/// Verification of a whole image.
#[derive(Debug, Serialize)]
pub struct ImageReport {
    pub source: String,
    pub platforms: Vec<PlatformReport>,
    pub skipped: Vec<Skipped>,
}

impl ImageReport {
    /// Whether no platform has a finding.
    pub fn ok(&self) -> bool {
        self.platforms.iter().all(|p| p.findings.is_empty())
    }
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    /// Required of layers: nothing is read past it.
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    platform: Option<OciPlatform>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// A platform as an index descriptor or an image config spells it, before normalisation.
#[derive(Deserialize, Clone, Debug)]
pub(crate) struct OciPlatform {
    #[serde(default)]
    pub(crate) os: String,
    #[serde(default)]
    pub(crate) architecture: String,
    #[serde(default)]
    pub(crate) variant: Option<String>,
}

impl OciPlatform {
    /// As written (`linux/arm64/v8`), for messages.
    pub(crate) fn display(&self) -> String {
        match self.variant.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }

    /// The platform rcross knows it as, if any.
    pub(crate) fn parse(&self) -> Option<Platform> {
        Platform::from_oci(&self.os, &self.architecture, self.variant.as_deref()).ok()
    }
}

#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
}

fn parse_doc(what: &str, bytes: &[u8]) -> Result<Doc, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::Manifest {
        what: what.to_string(),
        message: format!("not a valid manifest or index: {e}"),
    })
}

/// Verify every platform of the image (or only `only`) against its own platform.
pub fn verify_image(
    src: &dyn ImageSource,
    only: Option<Platform>,
) -> Result<ImageReport, ImageError> {
    let contents = read_image(src, only)?;
    let platforms = contents
        .platforms
        .into_iter()
        .map(|pc| {
            let mut findings = Vec::new();
            for (path, rec) in &pc.files {
                match rec {
                    Record::Elf(info) => findings.extend(
                        elf::check(info, &pc.platform)
                            .into_iter()
                            .map(|f| f.at(path)),
                    ),
                    Record::Corrupt(e) => findings.push(Finding::corrupt(path, e)),
                }
            }
            PlatformReport {
                platform: pc.platform,
                manifest: pc.manifest,
                layers: pc.layers,
                elf_files: pc.files.len(),
                findings,
            }
        })
        .collect();
    Ok(ImageReport {
        source: contents.source,
        platforms,
        skipped: contents.skipped,
    })
}

/// Read the final filesystem of every platform of the image (or only `only`), keeping the ELF
/// files.
pub fn read_image(
    src: &dyn ImageSource,
    only: Option<Platform>,
) -> Result<ImageContents, ImageError> {
    let source = src.describe();
    let (_media, bytes) = src.root()?;
    let mut manifests = Vec::new();
    let mut skipped = Vec::new();
    collect_manifests(src, &source, &bytes, None, 0, &mut manifests, &mut skipped)?;
    if let Some(want) = only {
        let available: Vec<String> = manifests.iter().map(|(p, _)| p.to_string()).collect();
        manifests.retain(|(p, _)| *p == want);
        if manifests.is_empty() {
            return Err(ImageError::NoPlatform {
                source_name: source,
                platform: want.to_string(),
                available: if available.is_empty() {
                    "no platform manifests".into()
                } else {
                    available.join(", ")
                },
            });
        }
    }
    let mut platforms = Vec::new();
    for (platform, digest) in manifests {
        platforms.push(read_platform(src, &source, platform, &digest)?);
    }
    Ok(ImageContents {
        source,
        platforms,
        skipped,
    })
}

/// Find (platform, manifest digest) pairs under an index or a single manifest.
fn collect_manifests(
    src: &dyn ImageSource,
    what: &str,
    bytes: &[u8],
    own_digest: Option<&str>,
    depth: usize,
    out: &mut Vec<(Platform, String)>,
    skipped: &mut Vec<Skipped>,
) -> Result<(), ImageError> {
    let doc = parse_doc(what, bytes)?;
    if let Some(list) = doc.manifests {
        for d in list {
            let is_index = d.media_type.contains("index") || d.media_type.contains("manifest.list");
            if is_index {
                if depth >= MAX_DEPTH {
                    return Err(ImageError::Manifest {
                        what: what.to_string(),
                        message: format!("indexes nested more than {MAX_DEPTH} deep"),
                    });
                }
                let inner = src.blob_bytes(&d.digest, document_limit(&d))?;
                let w = format!("index {} in {what}", d.digest);
                collect_manifests(src, &w, &inner, Some(&d.digest), depth + 1, out, skipped)?;
                continue;
            }
            let attestation = d
                .annotations
                .get("vnd.docker.reference.type")
                .is_some_and(|t| t == "attestation-manifest");
            match &d.platform {
                Some(p) if attestation || (p.os == "unknown" && p.architecture == "unknown") => {
                    skipped.push(Skipped {
                        platform: p.display(),
                        digest: d.digest.clone(),
                        reason: "attestation manifest (no filesystem)".into(),
                    });
                }
                Some(p) => match Platform::from_oci(&p.os, &p.architecture, p.variant.as_deref()) {
                    Ok(plat) => out.push((plat, d.digest.clone())),
                    Err(e) => skipped.push(Skipped {
                        platform: p.display(),
                        digest: d.digest.clone(),
                        reason: format!("platform not checked: {e}"),
                    }),
                },
                None => {
                    // No platform in the descriptor: the manifest's config says.
                    let m = src.blob_bytes(&d.digest, document_limit(&d))?;
                    let w = format!("manifest {} in {what}", d.digest);
                    collect_manifests(src, &w, &m, Some(&d.digest), depth + 1, out, skipped)?;
                }
            }
        }
        return Ok(());
    }
    if doc.layers.is_some() {
        // A single manifest: its platform comes from its config.
        let digest = match own_digest {
            Some(d) => d.to_string(),
            None => format!("sha256:{}", sha256_hex(bytes)),
        };
        let Some(config) = doc.config else {
            return Err(ImageError::Manifest {
                what: what.to_string(),
                message: "manifest without config".into(),
            });
        };
        let cfg = src.blob_bytes(&config.digest, document_limit(&config))?;
        let p: OciPlatform = serde_json::from_slice(&cfg).map_err(|e| ImageError::Manifest {
            what: format!("config {} in {what}", config.digest),
            message: e.to_string(),
        })?;
        match Platform::from_oci(&p.os, &p.architecture, p.variant.as_deref()) {
            Ok(plat) => out.push((plat, digest)),
            Err(e) => skipped.push(Skipped {
                platform: p.display(),
                digest,
                reason: format!("platform not checked: {e}"),
            }),
        }
        return Ok(());
    }
    Err(ImageError::Manifest {
        what: what.to_string(),
        message: "neither an index (no \"manifests\") nor a manifest (no \"layers\")".into(),
    })
}

/// The most bytes read for a manifest or config: its descriptor's size, within the limit for
/// documents.
fn document_limit(descriptor: &Descriptor) -> u64 {
    descriptor.size.unwrap_or(MAX_MANIFEST).min(MAX_MANIFEST)
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn read_platform(
    src: &dyn ImageSource,
    source: &str,
    platform: Platform,
    digest: &str,
) -> Result<PlatformContents, ImageError> {
    let bytes = src.blob_bytes(digest, MAX_MANIFEST)?;
    let what = format!("{platform} manifest {digest} in {source}");
    let doc = parse_doc(&what, &bytes)?;
    let Some(layers) = doc.layers else {
        return Err(ImageError::Manifest {
            what,
            message: "no \"layers\"".into(),
        });
    };
    let mut files = BTreeMap::new();
    let mut entries = 0u64;
    for layer in &layers {
        if layer.media_type.contains("encrypted") {
            return Err(ImageError::Manifest {
                what: format!("layer {} of {what}", layer.digest),
                message: format!("media type {} cannot be read", layer.media_type),
            });
        }
        let Some(size) = layer.size else {
            return Err(ImageError::Manifest {
                what: format!("layer {} of {what}", layer.digest),
                message: "the descriptor has no size; a layer is read only up to its size".into(),
            });
        };
        let reader = src.open_blob_sized(&layer.digest, size)?;
        entries += apply_layer(reader, &mut files).map_err(|error| ImageError::Layer {
            source_name: source.to_string(),
            platform: platform.to_string(),
            digest: layer.digest.clone(),
            error,
        })?;
    }
    Ok(PlatformContents {
        platform,
        manifest: digest.to_string(),
        layers: layers.len(),
        entries,
        files,
    })
}

fn remove_children(map: &mut BTreeMap<String, Record>, dir: &str) {
    let lo = if dir.is_empty() {
        "/".to_string()
    } else {
        format!("{dir}/")
    };
    let hi = if dir.is_empty() {
        "0".to_string()
    } else {
        format!("{dir}0") // '0' sorts right after '/'
    };
    let doomed: Vec<String> = map.range(lo..hi).map(|(k, _)| k.clone()).collect();
    for k in doomed {
        map.remove(&k);
    }
}

/// Apply one layer on top of `lower` (paths are absolute: "/usr/bin/x").
pub fn apply_layer(
    reader: impl std::io::Read,
    lower: &mut BTreeMap<String, Record>,
) -> Result<u64, super::tar::TarError> {
    let mut current: BTreeMap<String, Record> = BTreeMap::new();
    let n = walk_tar_entries(reader, &mut |entry, content, buf| {
        let path = format!("/{}", entry.path);
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (d.to_string(), n.to_string()),
            None => (String::new(), path.clone()),
        };
        if name == ".wh..wh..opq" {
            remove_children(lower, &dir);
            return Ok(());
        }
        if let Some(target) = name.strip_prefix(".wh.") {
            let t = format!("{dir}/{target}");
            lower.remove(&t);
            remove_children(lower, &t);
            current.remove(&t);
            remove_children(&mut current, &t);
            return Ok(());
        }
        lower.remove(&path);
        if entry.kind != EntryKind::Dir {
            remove_children(lower, &path);
        }
        match entry.kind {
            EntryKind::File => match classify_stream(content, entry.size, buf)? {
                Found::Elf(info) => {
                    current.insert(path, Record::Elf(info));
                }
                Found::Corrupt(e) => {
                    current.insert(path, Record::Corrupt(e.to_string()));
                }
                _ => {
                    current.remove(&path);
                }
            },
            EntryKind::Hardlink => {
                let target = format!(
                    "/{}",
                    super::tar::normalize(entry.link.as_deref().unwrap_or(""))
                );
                match current.get(&target).or_else(|| lower.get(&target)).cloned() {
                    Some(rec) => {
                        current.insert(path, rec);
                    }
                    None => {
                        current.remove(&path);
                    }
                }
            }
            _ => {
                current.remove(&path);
            }
        }
        Ok(())
    })?;
    lower.extend(current);
    Ok(n)
}
