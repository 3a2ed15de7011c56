//! Image configs, manifests and indexes as bytes. Field order and omitted empties are fixed here,
//! so the same inputs always serialise to the same bytes (and digests).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::Platform;

use super::layer::Layer;
use super::{MEDIA_TYPE_CONFIG, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};

pub use crate::image::{Descriptor, History, OciPlatform};

/// The descriptor of a written layer.
fn layer_descriptor(layer: &Layer) -> Descriptor {
    Descriptor {
        media_type: layer.media_type.clone(),
        digest: layer.digest.clone(),
        size: layer.size,
        platform: None,
        annotations: BTreeMap::new(),
    }
}

/// How a container from the image runs (the config's `config` object).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunConfig {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// `NAME=value` entries, in order.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// `80/tcp`, `53/udp`; a bare number means tcp.
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// Config fields only Dockerfile builds set (Docker's image spec): written when present, so a
/// config without them is byte-for-byte what it was before they existed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigExtras {
    pub volumes: Vec<String>,
    pub stop_signal: Option<String>,
    pub shell: Option<Vec<String>>,
    pub onbuild: Vec<String>,
    pub healthcheck: Option<HealthConfig>,
    /// The top-level `author` (MAINTAINER).
    pub author: Option<String>,
}

/// `Healthcheck` as Docker writes it: durations in nanoseconds, zero meaning "inherit".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HealthConfig {
    #[serde(rename = "Test")]
    pub test: Vec<String>,
    #[serde(rename = "Interval", skip_serializing_if = "is_zero")]
    pub interval: u64,
    #[serde(rename = "Timeout", skip_serializing_if = "is_zero")]
    pub timeout: u64,
    #[serde(rename = "StartPeriod", skip_serializing_if = "is_zero")]
    pub start_period: u64,
    #[serde(rename = "StartInterval", skip_serializing_if = "is_zero")]
    pub start_interval: u64,
    #[serde(rename = "Retries", skip_serializing_if = "is_zero")]
    pub retries: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What one platform's image is made of. Layers are in order, base first; base-image layers are
/// given by their descriptors and diff_ids exactly as the base image has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub platform: Platform,
    pub layers: Vec<Layer>,
    /// One entry per layer (and any empty-layer steps), oldest first.
    pub history: Vec<History>,
    pub run: RunConfig,
    /// `created` of the config, seconds since the epoch (`SOURCE_DATE_EPOCH`, or 0).
    pub created: u64,
    /// Annotations of the manifest.
    pub annotations: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct ConfigJson<'a> {
    created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<&'a str>,
    architecture: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    os: &'a str,
    config: ContainerConfig<'a>,
    rootfs: RootFs<'a>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    history: &'a [History],
}

#[derive(Serialize)]
struct ContainerConfig<'a> {
    #[serde(rename = "User", skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(rename = "ExposedPorts", skip_serializing_if = "BTreeMap::is_empty")]
    exposed_ports: BTreeMap<String, Empty>,
    #[serde(rename = "Env", skip_serializing_if = "<[_]>::is_empty")]
    env: &'a [String],
    #[serde(rename = "Entrypoint", skip_serializing_if = "Option::is_none")]
    entrypoint: Option<&'a [String]>,
    #[serde(rename = "Cmd", skip_serializing_if = "Option::is_none")]
    cmd: Option<&'a [String]>,
    #[serde(rename = "WorkingDir", skip_serializing_if = "Option::is_none")]
    working_dir: Option<&'a str>,
    #[serde(rename = "Labels", skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
    #[serde(rename = "Volumes", skip_serializing_if = "BTreeMap::is_empty")]
    volumes: BTreeMap<&'a str, Empty>,
    #[serde(rename = "StopSignal", skip_serializing_if = "Option::is_none")]
    stop_signal: Option<&'a str>,
    #[serde(rename = "Shell", skip_serializing_if = "Option::is_none")]
    shell: Option<&'a [String]>,
    #[serde(rename = "OnBuild", skip_serializing_if = "<[_]>::is_empty")]
    onbuild: &'a [String],
    #[serde(rename = "Healthcheck", skip_serializing_if = "Option::is_none")]
    healthcheck: Option<&'a HealthConfig>,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<&'a str>,
}

#[derive(Serialize)]
struct ManifestJson<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct IndexJson<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    manifests: &'a [Descriptor],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

/// The image config JSON of `spec`.
pub fn image_config(spec: &ImageSpec) -> Vec<u8> {
    image_config_with(spec, &ConfigExtras::default())
}

/// The image config JSON of `spec` with the Dockerfile-only fields of `extras`.
pub fn image_config_with(spec: &ImageSpec, extras: &ConfigExtras) -> Vec<u8> {
    let run = &spec.run;
    let exposed_ports = run
        .exposed_ports
        .iter()
        .map(|p| {
            let p = p.trim();
            let p = if p.contains('/') {
                p.to_ascii_lowercase()
            } else {
                format!("{p}/tcp")
            };
            (p, Empty {})
        })
        .collect();
    let config = ConfigJson {
        created: rfc3339_utc(spec.created),
        author: extras.author.as_deref(),
        architecture: spec.platform.arch(),
        variant: spec.platform.variant(),
        os: spec.platform.os(),
        config: ContainerConfig {
            user: run.user.as_deref(),
            exposed_ports,
            env: &run.env,
            entrypoint: run.entrypoint.as_deref(),
            cmd: run.cmd.as_deref(),
            working_dir: run.workdir.as_deref(),
            labels: &run.labels,
            volumes: extras
                .volumes
                .iter()
                .map(|v| (v.as_str(), Empty {}))
                .collect(),
            stop_signal: extras.stop_signal.as_deref(),
            shell: extras.shell.as_deref(),
            onbuild: &extras.onbuild,
            healthcheck: extras.healthcheck.as_ref(),
        },
        rootfs: RootFs {
            kind: "layers",
            diff_ids: spec.layers.iter().map(|l| l.diff_id.as_str()).collect(),
        },
        history: &spec.history,
    };
    to_json(&config)
}

/// The image manifest JSON over a config and layers.
pub fn image_manifest(
    config: &Descriptor,
    layers: &[Descriptor],
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    to_json(&ManifestJson {
        schema_version: 2,
        media_type: MEDIA_TYPE_MANIFEST,
        config,
        layers,
        annotations,
    })
}

/// The image index JSON over per-platform manifest descriptors (each with its `platform`).
pub fn image_index(manifests: &[Descriptor], annotations: &BTreeMap<String, String>) -> Vec<u8> {
    to_json(&IndexJson {
        schema_version: 2,
        media_type: MEDIA_TYPE_INDEX,
        manifests,
        annotations,
    })
}

/// The config, its descriptor, the manifest and the manifest's descriptor (with platform) of
/// `spec`.
pub(crate) fn build_image(
    spec: &ImageSpec,
    extras: &ConfigExtras,
) -> (Vec<u8>, Descriptor, Vec<u8>, Descriptor) {
    let config = image_config_with(spec, extras);
    let config_descriptor = Descriptor::of(MEDIA_TYPE_CONFIG, &config);
    let layers: Vec<Descriptor> = spec.layers.iter().map(layer_descriptor).collect();
    let manifest = image_manifest(&config_descriptor, &layers, &spec.annotations);
    let mut manifest_descriptor = Descriptor::of(MEDIA_TYPE_MANIFEST, &manifest);
    manifest_descriptor.platform = Some(spec.platform.into());
    (config, config_descriptor, manifest, manifest_descriptor)
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs (strings, numbers, maps with string keys) cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch.
pub fn rfc3339_utc(seconds: u64) -> String {
    let days = seconds / 86_400;
    let rest = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm, for days since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A one-platform image of `layers` with nothing else set, for tests.
#[cfg(test)]
pub(crate) fn test_spec(platform: &str, layers: Vec<Layer>) -> ImageSpec {
    ImageSpec {
        platform: platform.parse().unwrap(),
        layers,
        history: Vec::new(),
        run: RunConfig::default(),
        created: 0,
        annotations: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::sha256_digest;

    #[test]
    fn dates() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn platforms_carry_variants() {
        let p = |s: &str| OciPlatform::from(s.parse::<Platform>().unwrap());
        assert_eq!(p("linux/arm64").variant.as_deref(), Some("v8"));
        assert_eq!(p("linux/arm/v7").variant.as_deref(), Some("v7"));
        assert_eq!(p("linux/arm/v6").variant.as_deref(), Some("v6"));
        assert_eq!(p("linux/arm/v5").variant.as_deref(), Some("v5"));
        assert_eq!(p("linux/amd64").variant, None);
    }

    #[test]
    fn config_fields() {
        let spec = ImageSpec {
            platform: "linux/arm/v7".parse().unwrap(),
            layers: vec![Layer {
                media_type: crate::oci::MEDIA_TYPE_LAYER_GZIP.into(),
                digest: "sha256:aa".into(),
                size: 1,
                diff_id: "sha256:bb".into(),
                uncompressed_size: 2,
            }],
            history: vec![History {
                created: Some(rfc3339_utc(0)),
                created_by: Some("rcross".into()),
                ..History::default()
            }],
            run: RunConfig {
                entrypoint: Some(vec!["/app".into()]),
                cmd: None,
                env: vec!["A=1".into()],
                workdir: Some("/".into()),
                user: Some("65534".into()),
                exposed_ports: vec!["8080".into(), "53/UDP".into()],
                labels: [("k".to_string(), "v".to_string())].into(),
            },
            created: 0,
            annotations: BTreeMap::new(),
        };
        let json = String::from_utf8(image_config(&spec)).unwrap();
        assert_eq!(
            json,
            r#"{"created":"1970-01-01T00:00:00Z","architecture":"arm","variant":"v7","os":"linux","config":{"User":"65534","ExposedPorts":{"53/udp":{},"8080/tcp":{}},"Env":["A=1"],"Entrypoint":["/app"],"WorkingDir":"/","Labels":{"k":"v"}},"rootfs":{"type":"layers","diff_ids":["sha256:bb"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"rcross"}]}"#
        );
        let (_, config, manifest, descriptor) = build_image(&spec, &ConfigExtras::default());
        assert_eq!(config.media_type, MEDIA_TYPE_CONFIG);
        assert_eq!(descriptor.digest, sha256_digest(&manifest));
        assert_eq!(descriptor.platform.unwrap().variant.as_deref(), Some("v7"));
    }
}
