//! Base images for `rcross build`: `base = "REGISTRY/REPO:TAG"` or `"oci:DIR[:REF]"`, resolved
//! per platform from the base's index (or its single manifest). A base contributes its layers
//! exactly as it has them (the same compressed blobs, the same diff_ids), its history and its
//! run configuration as defaults that the project's `[config]` overrides.

use std::collections::BTreeMap;

use crate::walk::image::OciPlatform;
use serde::Deserialize;

use crate::image::{ImageSource, SourceError};
use crate::oci::{History, Layer, RunConfig, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_ZSTD};
use crate::platform::Platform;

/// Largest manifest, index or config read from a base.
const MAX_DOCUMENT: u64 = 4 * 1024 * 1024;
/// Nesting of indexes inside indexes followed.
const MAX_DEPTH: usize = 4;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

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
}

#[derive(Deserialize)]
struct Doc {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Desc>>,
    #[serde(default)]
    config: Option<Desc>,
    #[serde(default)]
    layers: Option<Vec<Desc>>,
}

#[derive(Deserialize, Clone)]
struct Desc {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    platform: Option<OciPlatform>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct ConfigDoc {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    config: Option<RunDoc>,
    #[serde(default)]
    rootfs: Option<RootFsDoc>,
    #[serde(default)]
    history: Option<Vec<History>>,
}

#[derive(Deserialize, Default)]
struct RunDoc {
    #[serde(rename = "Env", default)]
    env: Option<Vec<String>>,
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    working_dir: Option<String>,
    #[serde(rename = "User", default)]
    user: Option<String>,
    #[serde(rename = "ExposedPorts", default)]
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct RootFsDoc {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// A manifest of the base, with the platform its index (or its config) gives.
struct Candidate {
    platform: Option<Platform>,
    /// As written, for messages.
    shown: String,
    digest: String,
    bytes: Option<Vec<u8>>,
}

struct Resolver<'a> {
    src: &'a dyn ImageSource,
    base: String,
}

impl Resolver<'_> {
    fn source(&self, source: SourceError) -> BaseError {
        BaseError::Source {
            base: self.base.clone(),
            source,
        }
    }

    fn invalid(&self, what: impl Into<String>, message: impl Into<String>) -> BaseError {
        BaseError::Invalid {
            base: self.base.clone(),
            what: what.into(),
            message: message.into(),
        }
    }

    fn parse<T: for<'de> Deserialize<'de>>(
        &self,
        what: &str,
        bytes: &[u8],
    ) -> Result<T, BaseError> {
        serde_json::from_slice(bytes).map_err(|e| self.invalid(what, format!("not valid: {e}")))
    }

    fn fetch(&self, digest: &str) -> Result<Vec<u8>, BaseError> {
        self.src
            .blob_bytes(digest, MAX_DOCUMENT)
            .map_err(|e| self.source(e))
    }

    /// Every image manifest reachable from `bytes` (an index or a manifest).
    fn collect(
        &self,
        what: &str,
        bytes: Vec<u8>,
        depth: usize,
        out: &mut Vec<Candidate>,
    ) -> Result<(), BaseError> {
        let doc: Doc = self.parse(what, &bytes)?;
        let Some(manifests) = doc.manifests else {
            if doc.config.is_none() {
                return Err(self.invalid(
                    what,
                    format!(
                        "neither an image index nor an image manifest ({})",
                        doc.media_type.as_deref().unwrap_or("no mediaType")
                    ),
                ));
            }
            out.push(Candidate {
                platform: None,
                shown: String::new(),
                digest: crate::oci::sha256_digest(&bytes),
                bytes: Some(bytes),
            });
            return Ok(());
        };
        for d in manifests {
            match d.media_type.as_str() {
                OCI_INDEX | DOCKER_LIST => {
                    if depth >= MAX_DEPTH {
                        return Err(self.invalid(what, "indexes nested too deeply"));
                    }
                    let inner = self.fetch(&d.digest)?;
                    self.collect(&d.digest, inner, depth + 1, out)?;
                }
                OCI_MANIFEST | DOCKER_MANIFEST => {
                    // Attestations and other artifacts carry "unknown/unknown".
                    let shown = d.platform.as_ref().map(OciPlatform::display);
                    if shown.as_deref() == Some("unknown/unknown")
                        || d.annotations.contains_key("vnd.docker.reference.type")
                    {
                        continue;
                    }
                    out.push(Candidate {
                        platform: d.platform.as_ref().and_then(OciPlatform::parse),
                        shown: shown.unwrap_or_default(),
                        digest: d.digest,
                        bytes: None,
                    });
                }
                // Anything else (artifacts, signatures) is not an image to build on.
                _ => {}
            }
        }
        Ok(())
    }

    /// The manifest and config of `digest`, and the platform its config names.
    fn load(&self, digest: &str, bytes: Option<Vec<u8>>) -> Result<(Doc, ConfigDoc), BaseError> {
        let bytes = match bytes {
            Some(b) => b,
            None => self.fetch(digest)?,
        };
        let manifest: Doc = self.parse(digest, &bytes)?;
        let Some(config) = &manifest.config else {
            return Err(self.invalid(digest, "an image manifest without a config"));
        };
        let config_bytes = self.fetch(&config.digest)?;
        let config: ConfigDoc = self.parse(&format!("config {}", config.digest), &config_bytes)?;
        Ok((manifest, config))
    }
}

/// The part of the base `src` each of `platforms` builds on. A platform the base lacks is an
/// error naming it and the platforms the base has.
pub fn resolve(
    src: &dyn ImageSource,
    platforms: &[Platform],
) -> Result<Vec<BasePlatform>, BaseError> {
    let r = Resolver {
        src,
        base: src.describe(),
    };
    let (_media, root) = src.root().map_err(|e| r.source(e))?;
    let mut candidates = Vec::new();
    r.collect("the root manifest", root, 0, &mut candidates)?;
    // Manifests without a platform in their index (or a lone manifest): their config says.
    let mut loaded: BTreeMap<String, (Doc, ConfigDoc)> = BTreeMap::new();
    for c in candidates.iter_mut().filter(|c| c.platform.is_none()) {
        if !c.shown.is_empty() {
            continue;
        }
        let (manifest, config) = r.load(&c.digest, c.bytes.take())?;
        let p = OciPlatform {
            os: config.os.clone(),
            architecture: config.architecture.clone(),
            variant: config.variant.clone(),
        };
        c.shown = p.display();
        c.platform = p.parse();
        loaded.insert(c.digest.clone(), (manifest, config));
    }
    let mut out = Vec::new();
    for &platform in platforms {
        let mut digests: Vec<&str> = candidates
            .iter()
            .filter(|c| c.platform == Some(platform))
            .map(|c| c.digest.as_str())
            .collect();
        digests.sort_unstable();
        digests.dedup();
        let digest = match digests.as_slice() {
            [] => {
                let mut available: Vec<String> = candidates
                    .iter()
                    .map(|c| match c.platform {
                        Some(p) => p.to_string(),
                        None => c.shown.clone(),
                    })
                    .collect();
                available.sort();
                available.dedup();
                return Err(BaseError::NoPlatform {
                    base: r.base.clone(),
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
                    base: r.base.clone(),
                    platform,
                    digests: many.join(", "),
                })
            }
        };
        let (manifest, config) = match loaded.remove(&digest) {
            Some(pair) => pair,
            None => r.load(&digest, None)?,
        };
        out.push(platform_part(&r, platform, &digest, manifest, config)?);
    }
    Ok(out)
}

fn platform_part(
    r: &Resolver<'_>,
    platform: Platform,
    digest: &str,
    manifest: Doc,
    config: ConfigDoc,
) -> Result<BasePlatform, BaseError> {
    if !config.architecture.is_empty() {
        let said = OciPlatform {
            os: config.os.clone(),
            architecture: config.architecture.clone(),
            variant: config.variant.clone(),
        };
        if said.parse() != Some(platform) {
            return Err(r.invalid(
                digest,
                format!(
                    "listed as {platform} but its config says {}; the base image is inconsistent",
                    said.display()
                ),
            ));
        }
    }
    let descs = manifest.layers.unwrap_or_default();
    let diff_ids = config.rootfs.map(|f| f.diff_ids).unwrap_or_default();
    if descs.len() != diff_ids.len() {
        return Err(r.invalid(
            digest,
            format!(
                "{} layers but its config lists {} diff_ids",
                descs.len(),
                diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for (d, diff_id) in descs.into_iter().zip(diff_ids) {
        let media_type = match d.media_type.as_str() {
            MEDIA_TYPE_LAYER_GZIP | MEDIA_TYPE_LAYER_ZSTD | OCI_LAYER_TAR => d.media_type.clone(),
            // The same bytes under their OCI name, as an OCI manifest must spell them.
            DOCKER_LAYER_GZIP => MEDIA_TYPE_LAYER_GZIP.to_string(),
            DOCKER_LAYER_TAR => OCI_LAYER_TAR.to_string(),
            other => {
                return Err(r.invalid(
                    format!("layer {}", d.digest),
                    format!(
                        "media type {other:?} cannot be carried into a new image (only \
                         distributable tar, tar+gzip and tar+zstd layers can)"
                    ),
                ))
            }
        };
        // Layers are read (unpacked, copied) only when their content can be verified.
        crate::image::require_sha256(&r.base, &d.digest).map_err(|e| r.source(e))?;
        layers.push(Layer {
            media_type,
            digest: d.digest,
            size: d.size,
            diff_id,
            uncompressed_size: 0,
        });
    }
    let run = config.config.unwrap_or_default();
    let mut history = config.history.unwrap_or_default();
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
    use std::io::Read;

    /// Blobs by digest, the root given as bytes.
    struct Mem {
        root: Vec<u8>,
        blobs: BTreeMap<String, Vec<u8>>,
    }

    impl Mem {
        fn add(&mut self, bytes: &[u8]) -> String {
            let d = crate::oci::sha256_digest(bytes);
            self.blobs.insert(d.clone(), bytes.to_vec());
            d
        }
    }

    impl ImageSource for Mem {
        fn describe(&self) -> String {
            "mem".into()
        }
        fn root(&self) -> Result<(String, Vec<u8>), SourceError> {
            Ok((OCI_INDEX.into(), self.root.clone()))
        }
        fn blob_bytes(&self, digest: &str, _max: u64) -> Result<Vec<u8>, SourceError> {
            self.blobs
                .get(digest)
                .cloned()
                .ok_or(SourceError::NotFound {
                    what: digest.into(),
                })
        }
        fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + Send>, SourceError> {
            Ok(Box::new(std::io::Cursor::new(self.blob_bytes(digest, 0)?)))
        }
    }

    /// A Docker manifest list as registries serve them: arm64 without a variant, an attestation
    /// manifest, docker layer media types, null Env/Labels.
    #[test]
    fn resolves_a_docker_manifest_list() {
        let mut mem = Mem {
            root: Vec::new(),
            blobs: BTreeMap::new(),
        };
        let mut entries = Vec::new();
        for arch in ["amd64", "arm64"] {
            let config = format!(
                r#"{{"architecture":"{arch}","os":"linux","config":{{"Env":["PATH=/bin"],"Cmd":["sh"],"Labels":null,"WorkingDir":""}},"rootfs":{{"type":"layers","diff_ids":["sha256:{arch}"]}},"history":[{{"created_by":"ADD {arch}","author":"x"}}]}}"#
            );
            let c = mem.add(config.as_bytes());
            let manifest = format!(
                r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{c}","size":{}}},"layers":[{{"mediaType":"{DOCKER_LAYER_GZIP}","digest":"sha256:l{arch}","size":7}}]}}"#,
                config.len()
            );
            let m = mem.add(manifest.as_bytes());
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
        assert_eq!(p.layers[0].media_type, MEDIA_TYPE_LAYER_GZIP);
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
