//! Reading and verifying a container image through [`ImageSource`]: index → platform manifests →
//! layers streamed in order, with whiteouts applied, so only files present in the final
//! filesystem of each platform are judged, each against its own platform.

use super::{classify_stream, tar::TarEntryKind, walk_tar_entries, FileClass};
use crate::elf::{self, ElfInfo, Finding};
use crate::image::{
    resolve, ImageManifest, ImageSource, ReadError, ResolveLimits, SourceError, MAX_DOCUMENT,
};
use crate::platform::Platform;
use serde::Serialize;
use std::collections::BTreeMap;

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
    /// An ELF file and its permission bits.
    Elf { info: Box<ElfInfo>, mode: u32 },
    /// ELF magic, headers unreadable; its permission bits.
    Corrupt { error: String, mode: u32 },
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
pub type Skipped = crate::image::SkippedManifest;

impl From<ReadError> for ImageError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Source(e) => ImageError::Source(e),
            ReadError::Invalid { what, message } => ImageError::Manifest { what, message },
        }
    }
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
                    Record::Elf { info, .. } => findings.extend(
                        elf::check(info, &pc.platform)
                            .into_iter()
                            .map(|f| f.at(path)),
                    ),
                    Record::Corrupt { error, .. } => findings.push(Finding::corrupt(path, error)),
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
    let resolved = resolve(src, ResolveLimits::default())?;
    let source = resolved.source;
    let mut skipped = resolved.skipped;
    let mut manifests = Vec::new();
    for image in resolved.images {
        match image.platform.to_platform() {
            Ok(platform) => manifests.push((platform, image)),
            Err(e) => skipped.push(Skipped {
                platform: image.platform.display(),
                digest: image.descriptor.digest,
                reason: format!("platform not checked: {e}"),
            }),
        }
    }
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
    for (platform, mut image) in manifests {
        let manifest = match image.loaded.take() {
            Some(loaded) => loaded.manifest,
            None => {
                let what = format!("{platform} manifest {} in {source}", image.digest());
                let bytes = src.manifest_bytes(image.digest(), MAX_DOCUMENT)?;
                ImageManifest::parse(&bytes).map_err(|e| ImageError::Manifest {
                    what,
                    message: e.to_string(),
                })?
            }
        };
        platforms.push(read_platform(
            src,
            &source,
            platform,
            image.digest(),
            &manifest,
        )?);
    }
    Ok(ImageContents {
        source,
        platforms,
        skipped,
    })
}

fn read_platform(
    src: &dyn ImageSource,
    source: &str,
    platform: Platform,
    digest: &str,
    manifest: &ImageManifest,
) -> Result<PlatformContents, ImageError> {
    let what = format!("{platform} manifest {digest} in {source}");
    let mut files = BTreeMap::new();
    let mut entries = 0u64;
    for layer in &manifest.layers {
        if layer.media_type.contains("encrypted") {
            return Err(ImageError::Manifest {
                what: format!("layer {} of {what}", layer.digest),
                message: format!("media type {} cannot be read", layer.media_type),
            });
        }
        if layer.size == 0 {
            return Err(ImageError::Manifest {
                what: format!("layer {} of {what}", layer.digest),
                message: "the descriptor has no size; a layer is read only up to its size".into(),
            });
        }
        let reader = src.open_blob_sized(&layer.digest, layer.size)?;
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
        layers: manifest.layers.len(),
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
        if entry.kind != TarEntryKind::Dir {
            remove_children(lower, &path);
        }
        match entry.kind {
            TarEntryKind::File => match classify_stream(content, entry.size, buf)? {
                FileClass::Elf(info) => {
                    let mode = entry.mode;
                    current.insert(path, Record::Elf { info, mode });
                }
                FileClass::Corrupt(e) => {
                    let (error, mode) = (e.to_string(), entry.mode);
                    current.insert(path, Record::Corrupt { error, mode });
                }
                _ => {
                    current.remove(&path);
                }
            },
            TarEntryKind::Hardlink => {
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
