//! Base images for `rcross build`: `base = "REGISTRY/REPO:TAG"` or `"oci:DIR[:REF]"`, resolved
//! per platform from the base's index (or its single manifest). A base contributes its layers
//! exactly as it has them (the same compressed blobs, the same diff_ids), its history and its
//! run configuration as defaults that the project's `[config]` overrides.

use crate::image::model::oci_layer_media_type;
use crate::image::{self, ImageSource, LoadedImage, ReadError, ResolveLimits, SourceError};
use crate::oci::{History, Layer, RunConfig};
use crate::platform::Platform;

/// The manifest annotations that record which base an image was built on.
pub const BASE_DIGEST_ANNOTATION: &str = "org.opencontainers.image.base.digest";
pub const BASE_NAME_ANNOTATION: &str = "org.opencontainers.image.base.name";

/// Why a base image cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("base image {base}: {source}")]
    Source {
        base: String,
        #[source]
        source: SourceError,
    },
    #[error("base image {base}: {what}: {message}")]
    Invalid {
        base: String,
        what: String,
        message: String,
    },
    #[error(
        "base image {base} has no {platform} image; it has: {available}. Build only the \
         platforms the base has (--platform), or use a base that has {platform}"
    )]
    NoPlatform {
        base: String,
        platform: Platform,
        available: String,
    },
    #[error(
        "base image {base} holds several different {platform} images ({digests}); name one \
         with oci:DIR:REF or REGISTRY/REPO@DIGEST"
    )]
    Ambiguous {
        base: String,
        platform: Platform,
        digests: String,
    },
}

impl BaseError {
    /// Whether the base could not be reached at all (a host problem rather than a wrong
    /// project file).
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            BaseError::Source {
                source: SourceError::Transport { .. } | SourceError::Io { .. },
                ..
            }
        )
    }
}

/// One platform's part of a base image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasePlatform {
    pub platform: Platform,
    /// Digest of the base's manifest for this platform.
    pub manifest: String,
    /// The base's layers, oldest first, exactly as its manifest and config give them.
    pub layers: Vec<Layer>,
    /// The base config's history (one synthesised entry per layer when it has none).
    pub history: Vec<History>,
    /// The base config's Env, Entrypoint, Cmd, WorkingDir, User, ExposedPorts and Labels.
    pub run: RunConfig,
    /// The base config's whole `config` object (a Dockerfile build inherits all of it).
    pub settings: crate::image::model::ContainerSettings,
}

impl BaseError {
    fn read(base: &str, e: ReadError) -> BaseError {
        match e {
            ReadError::Source(source) => BaseError::Source {
                base: base.to_string(),
                source,
            },
            ReadError::Invalid { what, message } => BaseError::Invalid {
                base: base.to_string(),
                what,
                message,
            },
        }
    }
}

/// The part of the base `src` each of `platforms` builds on. A platform the base lacks is an
/// error naming it and the platforms the base has.
pub fn resolve(
    src: &dyn ImageSource,
    platforms: &[Platform],
) -> Result<Vec<BasePlatform>, BaseError> {
    let base = src.describe();
    let mut resolved =
        image::resolve(src, ResolveLimits::default()).map_err(|e| BaseError::read(&base, e))?;
    let mut out = Vec::new();
    for &platform in platforms {
        let mut digests: Vec<&str> = resolved
            .for_platform(platform)
            .map(|i| i.digest())
            .collect();
        digests.sort_unstable();
        digests.dedup();
        let digest = match digests.as_slice() {
            [] => {
                let available = resolved.available();
                return Err(BaseError::NoPlatform {
                    base,
                    platform,
                    available: if available.is_empty() {
                        "no image manifests".into()
                    } else {
                        available.join(", ")
                    },
                });
            }
            [one] => one.to_string(),
            many => {
                return Err(BaseError::Ambiguous {
                    base,
                    platform,
                    digests: many.join(", "),
                })
            }
        };
        let Some(image) = resolved.images.iter_mut().find(|i| i.digest() == digest) else {
            continue;
        };
        let loaded = image.load(src).map_err(|e| BaseError::read(&base, e))?;
        out.push(platform_part(&base, platform, &digest, loaded)?);
    }
    Ok(out)
}

fn platform_part(
    base: &str,
    platform: Platform,
    digest: &str,
    loaded: &LoadedImage,
) -> Result<BasePlatform, BaseError> {
    let invalid = |what: String, message: String| BaseError::Invalid {
        base: base.to_string(),
        what,
        message,
    };
    let config = &loaded.config;
    if !config.architecture.is_empty() {
        let said = config.platform();
        if said.platform() != Some(platform) {
            return Err(invalid(
                digest.to_string(),
                format!(
                    "listed as {platform} but its config says {}; the base image is inconsistent",
                    said.display()
                ),
            ));
        }
    }
    let descs = &loaded.manifest.layers;
    let diff_ids = config.diff_ids();
    if descs.len() != diff_ids.len() {
        return Err(invalid(
            digest.to_string(),
            format!(
                "{} layers but its config lists {} diff_ids",
                descs.len(),
                diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for (d, diff_id) in descs.iter().zip(diff_ids) {
        // The same bytes under their OCI name, as an OCI manifest must spell them.
        let Some(media_type) = oci_layer_media_type(&d.media_type) else {
            return Err(invalid(
                format!("layer {}", d.digest),
                format!(
                    "media type {:?} cannot be carried into a new image (only distributable \
                     tar, tar+gzip and tar+zstd layers can)",
                    d.media_type
                ),
            ));
        };
        // Layers are read (unpacked, copied) only when their content can be verified.
        crate::image::require_sha256(base, &d.digest).map_err(|source| BaseError::Source {
            base: base.to_string(),
            source,
        })?;
        layers.push(Layer {
            media_type: media_type.to_string(),
            digest: d.digest.clone(),
            size: d.size,
            diff_id: diff_id.clone(),
            uncompressed_size: 0,
        });
    }
    let settings = config.config.clone().unwrap_or_default();
    let run = settings.clone();
    let mut history = config.history.clone().unwrap_or_default();
    if history.is_empty() {
        history = layers
            .iter()
            .map(|l| History {
                comment: Some(format!("base layer {}", l.digest)),
                ..History::default()
            })
            .collect();
    }
    let non_empty = |s: Option<String>| s.filter(|v| !v.is_empty());
    Ok(BasePlatform {
        platform,
        manifest: digest.to_string(),
        layers,
        history,
        run: RunConfig {
            entrypoint: run.entrypoint.filter(|v| !v.is_empty()),
            cmd: run.cmd.filter(|v| !v.is_empty()),
            env: run.env.unwrap_or_default(),
            workdir: non_empty(run.working_dir),
            user: non_empty(run.user),
            exposed_ports: run.exposed_ports.unwrap_or_default().into_keys().collect(),
            labels: run.labels.unwrap_or_default(),
        },
        settings,
    })
}

/// The run configuration of an image on `base` whose project says `ours`: Env and Labels are
/// merged by name (ours wins), ExposedPorts are the union, WorkingDir and User are ours when set.
/// As with Docker, setting an entrypoint drops the base's Cmd.
pub fn merge(base: &RunConfig, ours: &RunConfig) -> RunConfig {
    let name = |e: &String| e.split_once('=').map_or(e.clone(), |(k, _)| k.to_string());
    let mut env: Vec<String> = base
        .env
        .iter()
        .map(|e| {
            ours.env
                .iter()
                .find(|o| name(o) == name(e))
                .unwrap_or(e)
                .clone()
        })
        .collect();
    for e in &ours.env {
        if !env.iter().any(|b| name(b) == name(e)) {
            env.push(e.clone());
        }
    }
    let mut ports = base.exposed_ports.clone();
    for p in &ours.exposed_ports {
        if !ports.contains(p) {
            ports.push(p.clone());
        }
    }
    let mut labels = base.labels.clone();
    labels.extend(ours.labels.clone());
    let (entrypoint, cmd) = match &ours.entrypoint {
        Some(e) => (Some(e.clone()), ours.cmd.clone()),
        None => (
            base.entrypoint.clone(),
            ours.cmd.clone().or(base.cmd.clone()),
        ),
    };
    RunConfig {
        entrypoint,
        cmd,
        env,
        workdir: ours.workdir.clone().or(base.workdir.clone()),
        user: ours.user.clone().or(base.user.clone()),
        exposed_ports: ports,
        labels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::model::{
        MEDIA_TYPE_DOCKER_LAYER_GZIP as DOCKER_LAYER_GZIP,
        MEDIA_TYPE_DOCKER_MANIFEST as DOCKER_MANIFEST,
        MEDIA_TYPE_DOCKER_MANIFEST_LIST as DOCKER_LIST, MEDIA_TYPE_OCI_LAYER_GZIP,
        MEDIA_TYPE_OCI_MANIFEST as OCI_MANIFEST,
    };
    use crate::image::testing::MemorySource;

    /// A Docker manifest list as registries serve them: arm64 without a variant, an attestation
    /// manifest, docker layer media types, null Env/Labels.
    #[test]
    fn resolves_a_docker_manifest_list() {
        let mut mem = MemorySource::default();
        let mut entries = Vec::new();
        for arch in ["amd64", "arm64"] {
            let config = format!(
                r#"{{"architecture":"{arch}","os":"linux","config":{{"Env":["PATH=/bin"],"Cmd":["sh"],"Labels":null,"WorkingDir":""}},"rootfs":{{"type":"layers","diff_ids":["sha256:{arch}"]}},"history":[{{"created_by":"ADD {arch}","author":"x"}}]}}"#
            );
            let c = mem.add(config.as_bytes()).digest;
            let manifest = format!(
                r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{c}","size":{}}},"layers":[{{"mediaType":"{DOCKER_LAYER_GZIP}","digest":"sha256:l{arch}","size":7}}]}}"#,
                config.len()
            );
            let m = mem.add(manifest.as_bytes()).digest;
            entries.push(format!(
                r#"{{"mediaType":"{DOCKER_MANIFEST}","digest":"{m}","size":{},"platform":{{"os":"linux","architecture":"{arch}"}}}}"#,
                manifest.len()
            ));
        }
        entries.push(format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","digest":"sha256:att","size":1,"platform":{{"os":"unknown","architecture":"unknown"}}}}"#
        ));
        mem.root = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[{}]}}"#,
            entries.join(",")
        )
        .into_bytes();

        let arm64: Platform = "linux/arm64".parse().unwrap();
        let parts = resolve(&mem, &[arm64]).unwrap();
        assert_eq!(parts.len(), 1);
        let p = &parts[0];
        assert_eq!(p.layers[0].digest, "sha256:larm64");
        assert_eq!(p.layers[0].diff_id, "sha256:arm64");
        assert_eq!(p.layers[0].media_type, MEDIA_TYPE_OCI_LAYER_GZIP);
        assert_eq!(p.run.env, ["PATH=/bin"]);
        assert_eq!(p.run.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(p.run.workdir, None);
        assert_eq!(p.history[0].created_by.as_deref(), Some("ADD arm64"));

        let e = resolve(&mem, &["linux/arm/v7".parse().unwrap()]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("has no linux/arm/v7 image"), "{text}");
        assert!(text.contains("it has: linux/amd64, linux/arm64."), "{text}");
    }

    #[test]
    fn merge_prefers_ours_and_keeps_the_rest() {
        let base = RunConfig {
            entrypoint: Some(vec!["/bin/sh".into()]),
            cmd: Some(vec!["-c".into(), "true".into()]),
            env: vec!["PATH=/bin".into(), "A=1".into()],
            workdir: Some("/srv".into()),
            user: None,
            exposed_ports: vec!["80/tcp".into()],
            labels: [("a".to_string(), "1".to_string())].into(),
        };
        let ours = RunConfig {
            entrypoint: None,
            cmd: None,
            env: vec!["A=2".into(), "B=3".into()],
            workdir: None,
            user: Some("1000".into()),
            exposed_ports: vec!["8080".into()],
            labels: [("b".to_string(), "2".to_string())].into(),
        };
        let m = merge(&base, &ours);
        assert_eq!(m.env, ["PATH=/bin", "A=2", "B=3"]);
        assert_eq!(m.entrypoint, base.entrypoint);
        assert_eq!(m.cmd, base.cmd);
        assert_eq!(m.workdir.as_deref(), Some("/srv"));
        assert_eq!(m.user.as_deref(), Some("1000"));
        assert_eq!(m.exposed_ports, ["80/tcp", "8080"]);
        assert_eq!(m.labels.len(), 2);
        let ours = RunConfig {
            entrypoint: Some(vec!["/app".into()]),
            ..RunConfig::default()
        };
        let m = merge(&base, &ours);
        assert_eq!(m.entrypoint, ours.entrypoint);
        assert_eq!(m.cmd, None, "an entrypoint of ours drops the base's cmd");
    }
}
