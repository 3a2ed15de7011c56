//! `rcross manifest create -t REF… SOURCE…`: merge images already in a registry (single-platform
//! manifests or indexes, by tag or digest) into one index. Each platform comes from the image
//! config; duplicates and config/descriptor disagreements are refused. Sources are read as every
//! reader of images reads them (nested indexes descended, attestations skipped), and the new
//! index is published by the registry client's image push: blobs of sources in another
//! repository of the same registry are mounted (or, where the registry does not mount,
//! streamed) into the target repository, then each platform manifest goes by digest, then the
//! index, then the tags.
//!
//! Each source is resolved once, to a digest, and everything after that (reading its platforms,
//! `--verify`, publishing) uses that digest: a tag that moves while the command runs cannot make
//! it verify one image and publish another.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cli::{ManifestArgs, ManifestCommand, ManifestCreateArgs};
use crate::exit::{self, Failure};
use crate::image::{self, ImageSource, OciPlatform, ReadError, ResolveLimits};
use crate::oci::{image_index, sha256_digest, Descriptor, MEDIA_TYPE_INDEX};
use crate::registry::{
    BlobSource, Client, ImagePush, PushBlob, PushManifest, PushOptions, Reference, RegistryError,
    RegistryImage,
};
use crate::walk;

#[derive(Debug, Serialize)]
struct PlatformOut {
    platform: String,
    digest: String,
    source: String,
}

#[derive(Debug, Serialize)]
struct Created {
    digest: String,
    platforms: Vec<PlatformOut>,
    tags: Vec<String>,
}

/// One platform's image manifest taken from a source.
struct SourcePlatform {
    /// `os/arch[/variant]` as rcross names it (`linux/arm64` with or without `v8`) when rcross
    /// knows the platform, else as written.
    platform: String,
    oci: OciPlatform,
    manifest: PushManifest,
    /// Config and layers.
    blobs: Vec<Descriptor>,
    /// The source pinned to the digest it resolved to.
    source: Reference,
    /// The source as the user wrote it.
    source_text: String,
}

pub fn run(args: ManifestArgs, json: bool) -> exit::Result<u8> {
    match args.command {
        ManifestCommand::Create(a) => create(a, json),
    }
}

fn registry_failure(context: String, e: RegistryError) -> Failure {
    Failure {
        code: e.exit_code(),
        error: anyhow::anyhow!("{context}: {e}"),
    }
}

/// A source resolved once: the reference pinned to the digest its root manifest or index has,
/// which every later read uses.
struct Resolved {
    text: String,
    pinned: Reference,
}

fn resolve(client: &Client, text: &str, source: &Reference) -> exit::Result<Resolved> {
    let root = client
        .get_manifest(source)
        .map_err(|e| registry_failure(format!("source {text}"), e))?;
    Ok(Resolved {
        text: text.to_string(),
        pinned: source.with_digest(&root.digest),
    })
}

/// The platform manifests of one resolved source, read as every reader of images reads them
/// (nested indexes descended, attestations skipped), each platform from its image config.
fn read_source(client: &Client, resolved: &Resolved) -> exit::Result<Vec<SourcePlatform>> {
    let text = resolved.text.as_str();
    let image = RegistryImage::new(client.clone(), resolved.pinned.clone());
    let failed = |e: ReadError| super::image_failure(e.into());
    let resolved_image = image::resolve(&image, ResolveLimits::default()).map_err(failed)?;
    let mut parts = Vec::new();
    for mut entry in resolved_image.images {
        let loaded = entry.take_loaded(&image).map_err(failed)?;
        let what = format!("source {text}: manifest {}", entry.digest());
        let (platform, oci) = loaded.config.platform().canonical();
        if let Some(named) = &entry.descriptor.platform {
            let (named, _) = named.canonical();
            if named != platform {
                return Err(Failure::usage(anyhow::anyhow!(
                    "{what}: the index entry says {named} but the image config says {platform}; \
                     fix the index of {text} (the config is what runs)"
                )));
            }
        }
        let media_type = match entry.descriptor.media_type.as_str() {
            "" => loaded
                .manifest
                .media_type
                .clone()
                .unwrap_or_else(|| crate::oci::MEDIA_TYPE_MANIFEST.to_string()),
            m => m.to_string(),
        };
        parts.push(SourcePlatform {
            platform,
            oci,
            manifest: PushManifest {
                media_type,
                digest: entry.descriptor.digest.clone(),
                bytes: loaded.bytes,
            },
            blobs: std::iter::once(loaded.manifest.config)
                .chain(loaded.manifest.layers)
                .collect(),
            source: resolved.pinned.clone(),
            source_text: text.to_string(),
        });
    }
    if parts.is_empty() {
        return Err(Failure::usage(anyhow::anyhow!(
            "source {text}: the index has no image for any platform"
        )));
    }
    Ok(parts)
}

/// A source as the user wrote it, and parsed.
type SourceArg = (String, Reference);

/// The tags and sources of the command line, checked: tags (not digests) in one registry, and
/// sources in that registry.
fn parse_references(args: &ManifestCreateArgs) -> exit::Result<(Vec<Reference>, Vec<SourceArg>)> {
    let parse = |what: &str, s: &str| {
        s.parse::<Reference>()
            .map_err(|e| Failure::usage(anyhow::anyhow!("{what} {s}: {e}")))
    };
    let targets: Vec<Reference> = args
        .tags
        .iter()
        .map(|t| parse("tag", t))
        .collect::<Result<_, _>>()?;
    let sources: Vec<SourceArg> = args
        .sources
        .iter()
        .map(|s| parse("source", s).map(|r| (s.clone(), r)))
        .collect::<Result<_, _>>()?;
    let Some(first) = targets.first() else {
        return Err(Failure::usage(anyhow::anyhow!(
            "manifest create needs at least one -t REGISTRY/REPO:TAG"
        )));
    };
    for t in &targets {
        if t.digest.is_some() {
            return Err(Failure::usage(anyhow::anyhow!(
                "tag {t}: a target must be a tag, not a digest"
            )));
        }
        if t.registry != first.registry {
            return Err(Failure::usage(anyhow::anyhow!(
                "tags {first} and {t} are in different registries; create the index in one \
                 registry, then copy it (e.g. skopeo copy --all)"
            )));
        }
    }
    for (text, s) in &sources {
        if s.registry != first.registry {
            return Err(Failure::usage(anyhow::anyhow!(
                "source {text} is in registry {}, the tags in {}: copying blobs between \
                 registries is not supported; copy the source into {} first (e.g. skopeo copy)",
                s.registry,
                first.registry,
                first.registry
            )));
        }
    }
    Ok((targets, sources))
}

/// `--verify`: every source, by the digest it resolved to (never the tag: what is verified is
/// what gets published), has no finding.
fn verify_sources(client: &Client, resolved: &[Resolved], json: bool) -> exit::Result<()> {
    let mut problems = Vec::new();
    for Resolved { text, pinned } in resolved {
        let image = RegistryImage::new(client.clone(), pinned.clone());
        let report =
            walk::verify_image(&image as &dyn ImageSource, None).map_err(super::image_failure)?;
        for p in &report.platforms {
            for f in &p.findings {
                problems.push(format!("{text} [{}] {}: {}", p.platform, f.path, f.message));
            }
            if !json {
                eprintln!(
                    "verified {text} ({}) [{}]: {} ELF file(s), {} finding(s)",
                    pinned.digest.as_deref().unwrap_or_default(),
                    p.platform,
                    p.elf_files,
                    p.findings.len()
                );
            }
        }
    }
    if !problems.is_empty() {
        return Err(Failure::check(anyhow::anyhow!(
            "verification failed; no index was created:\n  {}",
            problems.join("\n  ")
        )));
    }
    Ok(())
}

/// The image to push: every source's blobs (mounted from, or streamed out of, the source's
/// repository), its platform manifests, and the new index over them.
fn image_push(parts: &[SourcePlatform]) -> ImagePush {
    let descriptors: Vec<Descriptor> = parts
        .iter()
        .map(|p| Descriptor {
            media_type: p.manifest.media_type.clone(),
            digest: p.manifest.digest.clone(),
            size: p.manifest.bytes.len() as u64,
            platform: Some(p.oci.clone()),
            annotations: BTreeMap::new(),
        })
        .collect();
    let bytes = image_index(&descriptors, &BTreeMap::new());
    ImagePush {
        blobs: parts
            .iter()
            .flat_map(|p| {
                p.blobs.iter().map(|b| PushBlob {
                    digest: b.digest.clone(),
                    size: b.size,
                    source: BlobSource::Registry(p.source.clone()),
                })
            })
            .collect(),
        manifests: parts.iter().map(|p| p.manifest.clone()).collect(),
        root: PushManifest {
            media_type: MEDIA_TYPE_INDEX.to_string(),
            digest: sha256_digest(&bytes),
            bytes,
        },
    }
}

fn create(args: ManifestCreateArgs, json: bool) -> exit::Result<u8> {
    let (targets, sources) = parse_references(&args)?;
    let insecure: Vec<String> = match (args.insecure, targets.first()) {
        (true, Some(first)) => vec![first.registry.clone()],
        _ => Vec::new(),
    };
    let client = super::registry_client(&insecure, args.retry.retry_timeout)?;

    // Resolve every source once, then read it by that digest, refusing duplicate platforms.
    let resolved: Vec<Resolved> = sources
        .iter()
        .map(|(text, s)| resolve(&client, text, s))
        .collect::<Result<_, _>>()?;
    let mut parts: Vec<SourcePlatform> = Vec::new();
    for r in &resolved {
        for part in read_source(&client, r)? {
            if let Some(other) = parts.iter().find(|p| p.platform == part.platform) {
                return Err(Failure::usage(anyhow::anyhow!(
                    "platform {} is in both {} and {}; name only one image per platform",
                    part.platform,
                    other.source_text,
                    part.source_text
                )));
            }
            parts.push(part);
        }
    }
    if args.verify {
        verify_sources(&client, &resolved, json)?;
    }

    // The registry client's image push: blobs (present, mounted or streamed), then each
    // platform manifest by digest, then the index, then the tags.
    let image = image_push(&parts);
    let mut tags_out = Vec::new();
    for (repo, repo_tags) in crate::pipeline::by_repository(&targets) {
        let report = client
            .push_image(&repo, &image, &repo_tags, &PushOptions::default())
            .map_err(|e| registry_failure(format!("{repo}: index {}", image.root.digest), e))?;
        tags_out.extend(
            report
                .tags
                .iter()
                .map(|tag| format!("{}/{}:{tag}", repo.registry, repo.repository)),
        );
        if !json {
            eprintln!(
                "created {} in {repo} (tags: {}) from {} platform(s)",
                image.root.digest,
                repo_tags.join(", "),
                parts.len()
            );
        }
    }

    let out = Created {
        digest: image.root.digest.clone(),
        platforms: parts
            .iter()
            .map(|p| PlatformOut {
                platform: p.platform.clone(),
                digest: p.manifest.digest.clone(),
                source: p.source_text.clone(),
            })
            .collect(),
        tags: tags_out,
    };
    if json {
        super::print_json(&out)?;
    } else {
        println!("{}", out.digest);
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_are_normalised_and_unknown_ones_kept_as_written() {
        let (name, oci) = OciPlatform::new("linux", "arm64", None).canonical();
        assert_eq!(name, "linux/arm64");
        assert_eq!(oci.variant.as_deref(), Some("v8"));
        let (with_variant, _) = OciPlatform::new("linux", "arm64", Some("v8")).canonical();
        assert_eq!(with_variant, name);
        let (odd, oci) = OciPlatform::new("plan9", "mips", Some("x")).canonical();
        assert_eq!(odd, "plan9/mips/x");
        assert_eq!(oci.os, "plan9");
    }
}
