//! The documents of an image, as read: index (or Docker manifest list), image manifest (OCI or
//! Docker v2 schema 2) and image config. These are the only types rcross parses them into;
//! every reader of images goes through [`Document::parse`] and [`ImageConfig::parse`], which
//! refuse documents larger than [`MAX_DOCUMENT`]. Fields rcross does not use are ignored, and
//! missing optional ones take their empty value, so documents of other tools read as well as
//! rcross's own.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::platform::OciPlatform;

/// Largest manifest, index or config read.
pub const MAX_DOCUMENT: u64 = 4 * 1024 * 1024;

pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_TYPE_OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_TYPE_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TYPE_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MEDIA_TYPE_DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const MEDIA_TYPE_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The annotation Docker's buildkit puts on attestation manifests in an index.
pub const REFERENCE_TYPE_ANNOTATION: &str = "vnd.docker.reference.type";
/// The annotation that names an image in a layout's `index.json` (its "tag").
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// An OCI content descriptor. Field order and omitted empties are the ones rcross writes
/// (digests depend on them); reading, a missing media type or size is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<OciPlatform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// The descriptor of `bytes` as a blob of `media_type`.
    pub fn of(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: super::digest::sha256_digest(bytes),
            size: bytes.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }

    /// What kind of document or blob the media type says this is.
    pub fn kind(&self) -> MediaKind {
        MediaKind::of(&self.media_type)
    }

    /// An attestation (buildkit provenance or SBOM) rather than an image: annotated as one, or
    /// with the platform `unknown/unknown`.
    pub fn is_attestation(&self) -> bool {
        self.annotations
            .get(REFERENCE_TYPE_ANNOTATION)
            .is_some_and(|t| t == "attestation-manifest")
            || self.platform.as_ref().is_some_and(OciPlatform::is_unknown)
    }

    /// The name `index.json` gives it (`org.opencontainers.image.ref.name`).
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations
            .get(REF_NAME_ANNOTATION)
            .map(String::as_str)
    }

    /// The most bytes read for the document it points to: its size, within
    /// [`MAX_DOCUMENT`] (a size of 0, i.e. none given, means the limit).
    pub fn document_limit(&self) -> u64 {
        match self.size {
            0 => MAX_DOCUMENT,
            size => size.min(MAX_DOCUMENT),
        }
    }
}

/// What a media type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// An OCI index or a Docker manifest list.
    Index,
    /// An OCI image manifest or a Docker v2 schema 2 manifest.
    Manifest,
    /// A layer rcross can read: tar, tar+gzip or tar+zstd, OCI or Docker.
    Layer(LayerCompression),
    /// Anything else (artifacts, signatures, encrypted or foreign layers, no media type).
    Other,
}

/// How a layer's tar is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    None,
    Gzip,
    Zstd,
}

impl LayerCompression {
    /// A stream's compression from its first bytes (gzip's and zstd's magic numbers).
    pub fn sniff(prefix: &[u8]) -> LayerCompression {
        if prefix.starts_with(&[0x1f, 0x8b]) {
            LayerCompression::Gzip
        } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            LayerCompression::Zstd
        } else {
            LayerCompression::None
        }
    }
}

impl MediaKind {
    pub fn of(media_type: &str) -> MediaKind {
        match media_type {
            MEDIA_TYPE_OCI_INDEX | MEDIA_TYPE_DOCKER_MANIFEST_LIST => MediaKind::Index,
            MEDIA_TYPE_OCI_MANIFEST | MEDIA_TYPE_DOCKER_MANIFEST => MediaKind::Manifest,
            MEDIA_TYPE_OCI_LAYER_TAR | MEDIA_TYPE_DOCKER_LAYER_TAR => {
                MediaKind::Layer(LayerCompression::None)
            }
            MEDIA_TYPE_OCI_LAYER_GZIP | MEDIA_TYPE_DOCKER_LAYER_GZIP => {
                MediaKind::Layer(LayerCompression::Gzip)
            }
            MEDIA_TYPE_OCI_LAYER_ZSTD => MediaKind::Layer(LayerCompression::Zstd),
            _ => MediaKind::Other,
        }
    }
}

/// The OCI name of a layer media type rcross can read (Docker's names map to the OCI ones for
/// the same bytes), or `None`.
pub fn oci_layer_media_type(media_type: &str) -> Option<&'static str> {
    match MediaKind::of(media_type) {
        MediaKind::Layer(LayerCompression::None) => Some(MEDIA_TYPE_OCI_LAYER_TAR),
        MediaKind::Layer(LayerCompression::Gzip) => Some(MEDIA_TYPE_OCI_LAYER_GZIP),
        MediaKind::Layer(LayerCompression::Zstd) => Some(MEDIA_TYPE_OCI_LAYER_ZSTD),
        _ => None,
    }
}

/// An image index (or Docker manifest list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageIndex {
    #[serde(rename = "schemaVersion", default = "schema_version_2")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

fn schema_version_2() -> u32 {
    2
}

/// An image manifest (OCI or Docker v2 schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImageManifest {
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// A parsed manifest or index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    Index(ImageIndex),
    Manifest(ImageManifest),
}

/// What a manifest or index says of itself, read before the rest: its `mediaType` field and
/// which of the fields that tell an index from a manifest it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentHead {
    /// The `mediaType` field, when there is one (a non-empty string).
    pub media_type: Option<String>,
    /// It has `manifests` (an index).
    pub has_manifests: bool,
    /// It has `config` and `layers` (a manifest).
    pub has_config_and_layers: bool,
    /// It has `config`.
    pub has_config: bool,
}

/// Why [`DocumentHead::read`] refused a document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("not JSON ({0})")]
    NotJson(String),
    #[error("JSON but not an object")]
    NotObject,
    #[error("mediaType is not a non-empty string")]
    BadMediaType,
}

impl DocumentHead {
    pub fn read(bytes: &[u8]) -> Result<DocumentHead, HeadError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| HeadError::NotJson(e.to_string()))?;
        let object = value.as_object().ok_or(HeadError::NotObject)?;
        let media_type = match object.get("mediaType") {
            None => None,
            Some(field) => Some(
                field
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .ok_or(HeadError::BadMediaType)?,
            ),
        };
        let has_config = object.get("config").is_some_and(|v| !v.is_null());
        Ok(DocumentHead {
            media_type,
            has_manifests: object.get("manifests").is_some_and(|v| !v.is_null()),
            has_config_and_layers: has_config && object.contains_key("layers"),
            has_config,
        })
    }
}

/// Why a document cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("{size} bytes, more than the {max} a manifest, index or config may have")]
    TooLarge { size: u64, max: u64 },
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("neither an image index nor an image manifest ({0})")]
    NotImage(String),
    #[error("{what} is not valid: {message}")]
    Invalid { what: &'static str, message: String },
}

fn bounded(bytes: &[u8]) -> Result<(), DocumentError> {
    let size = bytes.len() as u64;
    if size > MAX_DOCUMENT {
        return Err(DocumentError::TooLarge {
            size,
            max: MAX_DOCUMENT,
        });
    }
    Ok(())
}

impl Document {
    /// An index when it has `manifests`, a manifest when it has a `config`; both OCI and Docker
    /// media types, and none.
    pub fn parse(bytes: &[u8]) -> Result<Document, DocumentError> {
        bounded(bytes)?;
        let head = DocumentHead::read(bytes).map_err(|e| match e {
            HeadError::NotJson(e) => DocumentError::Json(e),
            e => DocumentError::Invalid {
                what: "manifest or index",
                message: e.to_string(),
            },
        })?;
        let invalid = |what| {
            move |e: serde_json::Error| DocumentError::Invalid {
                what,
                message: e.to_string(),
            }
        };
        if head.has_manifests {
            return serde_json::from_slice(bytes)
                .map(Document::Index)
                .map_err(invalid("image index"));
        }
        if head.has_config {
            return serde_json::from_slice(bytes)
                .map(Document::Manifest)
                .map_err(invalid("image manifest"));
        }
        Err(DocumentError::NotImage(
            head.media_type.unwrap_or_else(|| "no mediaType".into()),
        ))
    }

    pub fn media_type(&self) -> Option<&str> {
        match self {
            Document::Index(i) => i.media_type.as_deref(),
            Document::Manifest(m) => m.media_type.as_deref(),
        }
    }
}

impl ImageIndex {
    pub fn parse(bytes: &[u8]) -> Result<ImageIndex, DocumentError> {
        match Document::parse(bytes)? {
            Document::Index(index) => Ok(index),
            Document::Manifest(m) => Err(DocumentError::NotImage(format!(
                "an image manifest ({}), not an index",
                m.media_type.as_deref().unwrap_or("no mediaType")
            ))),
        }
    }
}

impl ImageManifest {
    pub fn parse(bytes: &[u8]) -> Result<ImageManifest, DocumentError> {
        match Document::parse(bytes)? {
            Document::Manifest(manifest) => Ok(manifest),
            Document::Index(i) => Err(DocumentError::NotImage(format!(
                "an image index ({}), not a manifest",
                i.media_type.as_deref().unwrap_or("no mediaType")
            ))),
        }
    }
}

/// One `history` entry of a config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// An image config: its platform, how a container runs, its layers' diff_ids and history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: Option<ContainerSettings>,
    #[serde(default)]
    pub rootfs: Option<ConfigRootFs>,
    #[serde(default)]
    pub history: Option<Vec<History>>,
}

/// The config's `config` object (Docker's capitalised names; any may be null).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ContainerSettings {
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "User", default)]
    pub user: Option<String>,
    #[serde(rename = "ExposedPorts", default)]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "Volumes", default)]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "StopSignal", default)]
    pub stop_signal: Option<String>,
    #[serde(rename = "Shell", default)]
    pub shell: Option<Vec<String>>,
    #[serde(rename = "OnBuild", default)]
    pub onbuild: Option<Vec<String>>,
    #[serde(rename = "Healthcheck", default)]
    pub healthcheck: Option<HealthcheckSettings>,
}

/// The config's `Healthcheck` (durations in nanoseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct HealthcheckSettings {
    #[serde(rename = "Test", default)]
    pub test: Option<Vec<String>>,
    #[serde(rename = "Interval", default)]
    pub interval: Option<u64>,
    #[serde(rename = "Timeout", default)]
    pub timeout: Option<u64>,
    #[serde(rename = "StartPeriod", default)]
    pub start_period: Option<u64>,
    #[serde(rename = "StartInterval", default)]
    pub start_interval: Option<u64>,
    #[serde(rename = "Retries", default)]
    pub retries: Option<u64>,
}

/// The config's `rootfs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ConfigRootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ImageConfig {
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, DocumentError> {
        bounded(bytes)?;
        serde_json::from_slice(bytes).map_err(|e| DocumentError::Invalid {
            what: "image config",
            message: e.to_string(),
        })
    }

    /// The platform it says, as written.
    pub fn platform(&self) -> OciPlatform {
        OciPlatform::new(&self.os, &self.architecture, self.variant.as_deref())
    }

    /// The layers' uncompressed digests, oldest first.
    pub fn diff_ids(&self) -> &[String] {
        self.rootfs.as_ref().map_or(&[], |r| r.diff_ids.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_and_oci_documents_parse_alike() {
        let list = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MEDIA_TYPE_DOCKER_MANIFEST_LIST}","manifests":[{{"mediaType":"{MEDIA_TYPE_DOCKER_MANIFEST}","digest":"sha256:aa","size":7,"platform":{{"architecture":"arm","os":"linux","variant":"v7","os.features":["x"]}}}}]}}"#
        );
        let Document::Index(index) = Document::parse(list.as_bytes()).unwrap() else {
            panic!("not an index")
        };
        assert_eq!(index.manifests[0].kind(), MediaKind::Manifest);
        assert_eq!(
            index.manifests[0].platform.as_ref().unwrap().display(),
            "linux/arm/v7"
        );
        // An OCI index without a mediaType is told by its shape.
        let bare = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(Document::parse(bare), Ok(Document::Index(_))));

        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MEDIA_TYPE_DOCKER_MANIFEST}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:cc","size":3}},"layers":[{{"mediaType":"{MEDIA_TYPE_DOCKER_LAYER_GZIP}","digest":"sha256:ll","size":9}}]}}"#
        );
        let m = ImageManifest::parse(manifest.as_bytes()).unwrap();
        assert_eq!(m.layers[0].kind(), MediaKind::Layer(LayerCompression::Gzip));
        assert_eq!(
            oci_layer_media_type(&m.layers[0].media_type),
            Some(MEDIA_TYPE_OCI_LAYER_GZIP)
        );
        assert_eq!(oci_layer_media_type("application/x-foreign"), None);
        assert!(ImageIndex::parse(manifest.as_bytes()).is_err());
        assert!(ImageManifest::parse(list.as_bytes()).is_err());
    }

    #[test]
    fn bad_documents_say_why() {
        let e = Document::parse(br#"{"schemaVersion":2}"#).unwrap_err();
        assert!(e.to_string().contains("neither"), "{e}");
        assert!(matches!(
            Document::parse(b"nope"),
            Err(DocumentError::Json(_))
        ));
        let e = Document::parse(br#"{"manifests":5}"#).unwrap_err();
        assert!(e.to_string().contains("image index is not valid"), "{e}");
        let big = vec![b' '; MAX_DOCUMENT as usize + 1];
        assert!(matches!(
            Document::parse(&big),
            Err(DocumentError::TooLarge { .. })
        ));
        assert!(matches!(
            ImageConfig::parse(&big),
            Err(DocumentError::TooLarge { .. })
        ));
    }

    #[test]
    fn configs_tolerate_nulls_and_give_their_platform() {
        let c = ImageConfig::parse(
            br#"{"architecture":"arm64","os":"linux","variant":"v8","config":{"Env":null,"Labels":null},"rootfs":{"type":"layers","diff_ids":["sha256:a"]}}"#,
        )
        .unwrap();
        assert_eq!(c.platform().display(), "linux/arm64/v8");
        assert_eq!(c.diff_ids(), ["sha256:a"]);
        assert_eq!(c.config.unwrap().env, None);
        assert_eq!(ImageConfig::parse(b"{}").unwrap().diff_ids().len(), 0);
    }

    #[test]
    fn attestations_are_recognised() {
        let mut d = Descriptor::of(MEDIA_TYPE_OCI_MANIFEST, b"{}");
        assert!(!d.is_attestation());
        d.platform = Some(OciPlatform::new("unknown", "unknown", None));
        assert!(d.is_attestation());
        let mut d = Descriptor::of(MEDIA_TYPE_OCI_MANIFEST, b"{}");
        d.annotations.insert(
            REFERENCE_TYPE_ANNOTATION.into(),
            "attestation-manifest".into(),
        );
        assert!(d.is_attestation());
    }

    #[test]
    fn descriptors_serialise_as_rcross_writes_them() {
        let mut d = Descriptor::of(MEDIA_TYPE_OCI_MANIFEST, b"x");
        d.platform = Some(OciPlatform::new("linux", "arm", Some("v7")));
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            format!(
                r#"{{"mediaType":"{MEDIA_TYPE_OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"arm","os":"linux","variant":"v7"}}}}"#,
                d.digest
            )
        );
    }
}
