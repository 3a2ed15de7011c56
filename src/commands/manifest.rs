//! `rcross manifest create -t REF… SOURCE…`: merge images already in a registry (single-platform
//! manifests or indexes, by tag or digest) into one index. Each platform comes from the image
//! config; duplicates and config/descriptor disagreements are refused. Sources in another
//! repository of the same registry have their blobs mounted (or, where the registry does not
//! mount, copied) into the target repository first; then each platform manifest goes by
//! digest, then the index, then the tags.
//!
//! Each source is resolved once, to a digest, and everything after that (reading its platforms,
//! `--verify`, publishing) uses that digest: a tag that moves while the command runs cannot make
//! it verify one image and publish another.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;
use serde_json::Value;

use crate::cli::{ManifestArgs, ManifestCommand, ManifestCreateArgs};
use crate::exit::{self, Failure};
use crate::image::ImageSource;
use crate::oci::{image_index, sha256_digest, Descriptor, OciPlatform, MEDIA_TYPE_INDEX};
use crate::registry::{
    BlobSource, Client, PushBlob, PushManifest, PushOptions, Reference, RegistryError,
    RegistryImage,
};
use crate::walk;
use crate::Platform;

/// Manifests and configs are small; refuse anything larger than this.
const MAX_DOCUMENT: u64 = 4 << 20;

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

/// One platform manifest taken from a source.
struct Part {
    /// `os/arch[/variant]` as rcross names it (`linux/arm64` with or without `v8`) when rcross
    /// knows the platform, else as written.
    platform: String,
    oci: OciPlatform,
    manifest: PushManifest,
    /// Config and layers: (digest, size).
    blobs: Vec<(String, u64)>,
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

fn parse_json(what: &str, bytes: &[u8]) -> exit::Result<Value> {
    serde_json::from_slice(bytes)
        .map_err(|e| Failure::usage(anyhow::anyhow!("{what}: not valid JSON: {e}")))
}

/// The normalised platform name and its index-entry form from OCI fields.
fn platform_of(v: &Value) -> (String, OciPlatform) {
    let os = v["os"].as_str().unwrap_or("unknown");
    let arch = v["architecture"].as_str().unwrap_or("unknown");
    let variant = v["variant"].as_str().filter(|s| !s.is_empty());
    match Platform::from_oci(os, arch, variant) {
        Ok(p) => (p.to_string(), OciPlatform::from(p)),
        Err(_) => {
            let mut s = format!("{os}/{arch}");
            if let Some(var) = variant {
                s.push('/');
                s.push_str(var);
            }
            (
                s,
                OciPlatform {
                    architecture: arch.to_string(),
                    os: os.to_string(),
                    variant: variant.map(str::to_string),
                },
            )
        }
    }
}

fn is_index(doc: &Value) -> bool {
    doc["manifests"].is_array()
}

/// A source resolved once: its root manifest or index, and the reference pinned to that
/// manifest's digest, which every later read uses.
struct Resolved {
    text: String,
    pinned: Reference,
    root: crate::registry::Manifest,
}

fn resolve(client: &Client, text: &str, source: &Reference) -> exit::Result<Resolved> {
    let root = client
        .get_manifest(source)
        .map_err(|e| registry_failure(format!("source {text}"), e))?;
    Ok(Resolved {
        text: text.to_string(),
        pinned: source.with_digest(&root.digest),
        root,
    })
}

/// The platform manifests of one resolved source.
fn read_source(client: &Client, resolved: &Resolved) -> exit::Result<Vec<Part>> {
    let text = resolved.text.as_str();
    let source = &resolved.pinned;
    let root = resolved.root.clone();
    let doc = parse_json(&format!("source {text}"), &root.bytes)?;
    let mut entries: Vec<(Option<Value>, crate::registry::Manifest)> = Vec::new();
    if is_index(&doc) {
        for d in doc["manifests"].as_array().into_iter().flatten() {
            let platform = d.get("platform").cloned();
            if let Some(p) = &platform {
                // Attestations (buildkit provenance, SBOMs) are not images.
                if p["os"].as_str() == Some("unknown")
                    && p["architecture"].as_str() == Some("unknown")
                {
                    continue;
                }
            }
            let digest = d["digest"].as_str().ok_or_else(|| {
                Failure::usage(anyhow::anyhow!(
                    "source {text}: an index entry has no digest"
                ))
            })?;
            let m = client
                .get_manifest(&source.with_digest(digest))
                .map_err(|e| registry_failure(format!("source {text}: manifest {digest}"), e))?;
            if is_index(&parse_json(&format!("source {text}: {digest}"), &m.bytes)?) {
                return Err(Failure::usage(anyhow::anyhow!(
                    "source {text}: {digest} is a nested index; name it as a source of its own"
                )));
            }
            entries.push((platform, m));
        }
    } else {
        entries.push((None, root));
    }
    let mut parts = Vec::new();
    for (descriptor_platform, m) in entries {
        let what = format!("source {text}: manifest {}", m.digest);
        let doc = parse_json(&what, &m.bytes)?;
        let config = doc["config"]["digest"].as_str().ok_or_else(|| {
            Failure::usage(anyhow::anyhow!("{what}: no config; not an image manifest"))
        })?;
        let config_size = doc["config"]["size"].as_u64().unwrap_or(0);
        let cfg = client
            .blob_bytes(source, config, MAX_DOCUMENT)
            .map_err(|e| registry_failure(format!("{what}: config {config}"), e))?;
        let (platform, oci) = platform_of(&parse_json(&format!("{what}: config"), &cfg)?);
        if let Some(dp) = descriptor_platform {
            let (named, _) = platform_of(&dp);
            if named != platform {
                return Err(Failure::usage(anyhow::anyhow!(
                    "{what}: the index entry says {named} but the image config says {platform}; \
                     fix the index of {text} (the config is what runs)"
                )));
            }
        }
        let mut blobs = vec![(config.to_string(), config_size)];
        for l in doc["layers"].as_array().into_iter().flatten() {
            let d = l["digest"]
                .as_str()
                .ok_or_else(|| Failure::usage(anyhow::anyhow!("{what}: a layer has no digest")))?;
            blobs.push((d.to_string(), l["size"].as_u64().unwrap_or(0)));
        }
        parts.push(Part {
            platform,
            oci,
            manifest: PushManifest {
                media_type: m.media_type.clone(),
                digest: m.digest.clone(),
                bytes: m.bytes.clone(),
            },
            blobs,
            source: source.clone(),
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

/// Makes sure `repo` has blob `digest` of `part`'s source: present, mounted, or copied.
fn ensure_blob(
    client: &Client,
    repo: &Reference,
    part: &Part,
    digest: &str,
    size: u64,
) -> exit::Result<()> {
    let ctx = || format!("{repo}: blob {digest} of {}", part.source_text);
    if client
        .blob_exists(repo, digest)
        .map_err(|e| registry_failure(ctx(), e))?
    {
        return Ok(());
    }
    if client
        .mount_blob(repo, digest, &part.source.repository)
        .map_err(|e| registry_failure(ctx(), e))?
    {
        return Ok(());
    }
    // The registry did not mount: stream the blob through a temporary file.
    let mut reader = client
        .open_blob(&part.source, digest)
        .map_err(|e| registry_failure(ctx(), e))?;
    let mut temp = tempfile::NamedTempFile::new()
        .map_err(|e| Failure::env(anyhow::anyhow!("{}: temporary file: {e}", ctx())))?;
    let written = std::io::copy(&mut reader, &mut temp)
        .map_err(|e| Failure::env(anyhow::anyhow!("{}: copying: {e}", ctx())))?;
    temp.flush()
        .map_err(|e| Failure::env(anyhow::anyhow!("{}: temporary file: {e}", ctx())))?;
    let blob = PushBlob {
        digest: digest.to_string(),
        size: if size == 0 { written } else { size },
        source: BlobSource::File(temp.path().to_path_buf()),
    };
    client
        .push_blob(repo, &blob, &PushOptions::default())
        .map_err(|e| registry_failure(ctx(), e))?;
    Ok(())
}

fn create(args: ManifestCreateArgs, json: bool) -> exit::Result<u8> {
    let parse = |what: &str, s: &str| {
        s.parse::<Reference>()
            .map_err(|e| Failure::usage(anyhow::anyhow!("{what} {s}: {e}")))
    };
    let targets: Vec<Reference> = args
        .tags
        .iter()
        .map(|t| parse("tag", t))
        .collect::<Result<_, _>>()?;
    let sources: Vec<(String, Reference)> = args
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
    let insecure: Vec<String> = if args.insecure {
        vec![first.registry.clone()]
    } else {
        Vec::new()
    };
    let client = super::registry_client(&insecure, args.retry.retry_timeout)?;

    // Resolve every source once, then read it by that digest, refusing duplicate platforms.
    let resolved: Vec<Resolved> = sources
        .iter()
        .map(|(text, s)| resolve(&client, text, s))
        .collect::<Result<_, _>>()?;
    let mut parts: Vec<Part> = Vec::new();
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
        let mut problems = Vec::new();
        // The pinned digests, never the tags: what is verified is what gets published.
        for Resolved { text, pinned, .. } in &resolved {
            let image = RegistryImage::new(client.clone(), pinned.clone());
            let report = walk::verify_image(&image as &dyn ImageSource, None)
                .map_err(super::image_failure)?;
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
    }

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
    let index = PushManifest {
        media_type: MEDIA_TYPE_INDEX.to_string(),
        digest: sha256_digest(&bytes),
        bytes,
    };

    let mut tags_out = Vec::new();
    for (repo, repo_tags) in crate::pipeline::by_repository(&targets) {
        for part in &parts {
            if part.source.repository != repo.repository {
                for (digest, size) in &part.blobs {
                    ensure_blob(&client, &repo, part, digest, *size)?;
                }
            }
            client
                .put_manifest(&repo, &part.manifest.digest, &part.manifest)
                .map_err(|e| {
                    registry_failure(
                        format!(
                            "{repo}: manifest {} ({})",
                            part.manifest.digest, part.platform
                        ),
                        e,
                    )
                })?;
        }
        client
            .put_manifest(&repo, &index.digest, &index)
            .map_err(|e| registry_failure(format!("{repo}: index {}", index.digest), e))?;
        for tag in &repo_tags {
            client
                .put_manifest(&repo, tag, &index)
                .map_err(|e| registry_failure(format!("{repo}: tag {tag}"), e))?;
            tags_out.push(format!("{}/{}:{tag}", repo.registry, repo.repository));
        }
        if !json {
            eprintln!(
                "created {} in {repo} (tags: {}) from {} platform(s)",
                index.digest,
                repo_tags.join(", "),
                parts.len()
            );
        }
    }

    let out = Created {
        digest: index.digest.clone(),
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
        let (name, oci) = platform_of(&serde_json::json!({"os": "linux", "architecture": "arm64"}));
        assert_eq!(name, "linux/arm64");
        assert_eq!(oci.variant.as_deref(), Some("v8"));
        let (with_variant, _) = platform_of(
            &serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"}),
        );
        assert_eq!(with_variant, name);
        let (odd, oci) = platform_of(
            &serde_json::json!({"os": "plan9", "architecture": "mips", "variant": "x"}),
        );
        assert_eq!(odd, "plan9/mips/x");
        assert_eq!(oci.os, "plan9");
    }
}
