//! Dockerfile builds on Docker engines: `--engine ENDPOINT` (or `--engine docker`, the default
//! endpoint) for every platform, `--builder PLATFORM=ENDPOINT` / `[builders]` for one; the
//! platforms no engine takes stay in the daemonless builder, and both are assembled into the
//! same index.
//!
//! Per platform: the context (minus `.dockerignore`, as the `docker` CLI sends it) goes to the
//! engine's classic builder with the platform; the image it made is saved as a docker-archive
//! and removed from the engine; the archive becomes one image of the work layout — each layer
//! tar compressed by rcross's writer (its diff_id checked against the config's), the config kept
//! as the engine wrote it (its platform must be the one asked for), a manifest over them. The
//! caller then verifies, places and publishes the layout as for a daemonless build.

use super::ignore::DockerIgnore;
use super::stage::StepLog;
use crate::engine::context::{self, ContextFilter, ExtraEntry};
use crate::engine::{DockerEngine, DockerfileBuild, Endpoint};
use crate::exit::{self, Failure};
use crate::oci::{self, Descriptor, LayerOptions, OciLayout};
use crate::pipeline::publish::PlatformResult;
use crate::pipeline::{Job, Reporter};
use crate::platform::Platform;
use crate::toolchain::plan::Strategy;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// The name the Dockerfile travels under when it lies outside the context (the `docker` CLI's
/// `.dockerfile.<random>`); the `.dockerignore` sent with it names it, so the engine leaves it
/// out of `COPY .`.
const OUTSIDE_DOCKERFILE: &str = ".dockerfile.rcross";

/// The engine that builds one platform, and the flag that chose it (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnginePlacement {
    pub endpoint: Endpoint,
    /// `--engine unix:///…` or `--builder linux/arm64=tcp://…`.
    pub chosen_by: String,
}

/// `--engine`'s value as an engine: `None` for the daemonless builder (no `--engine`, or
/// `chroot`), the default endpoint for `docker` (DOCKER_HOST, else the local socket).
fn engine_endpoint(engine: Option<&str>) -> exit::Result<Option<Endpoint>> {
    match engine {
        None | Some("chroot") => Ok(None),
        Some("docker") => Endpoint::from_env()
            .map(Some)
            .map_err(|e| Failure::usage(anyhow::anyhow!("--engine docker: DOCKER_HOST: {e}"))),
        Some(e) => e.parse::<Endpoint>().map(Some).map_err(|err| {
            Failure::usage(anyhow::anyhow!(
                "--engine {e}: {err}; give a Docker endpoint (unix:///var/run/docker.sock, \
                 tcp://HOST:PORT, ssh://USER@HOST), `docker` for DOCKER_HOST, or leave it out \
                 for rcross's daemonless builder"
            ))
        }),
    }
}

/// The platforms of `job` an engine builds: each with a builder (`--builder`, `[builders]`)
/// on it, the others on `--engine` when one is given. Platforms not in the map build in the
/// daemonless builder.
pub fn placements(job: &Job) -> exit::Result<BTreeMap<Platform, EnginePlacement>> {
    let engine = engine_endpoint(job.engine.as_deref())?;
    let mut out = BTreeMap::new();
    for p in &job.platforms {
        let placement = match job.builders.get(p) {
            Some(b) => EnginePlacement {
                endpoint: b
                    .parse::<Endpoint>()
                    .map_err(|e| Failure::usage(anyhow::anyhow!("builder {p}={b}: {e}")))?,
                chosen_by: format!("--builder {p}={b}"),
            },
            None => match &engine {
                Some(e) => EnginePlacement {
                    endpoint: e.clone(),
                    chosen_by: format!("--engine {e}"),
                },
                None => continue,
            },
        };
        out.insert(*p, placement);
    }
    Ok(out)
}

/// What the engine builds share.
pub struct EngineInputs<'a> {
    pub dockerfile: &'a Path,
    pub ignore: &'a DockerIgnore,
    pub build_args: &'a BTreeMap<String, String>,
    pub target: Option<&'a str>,
    /// The build's work directory: the context tar and the saved archives go there.
    pub work: &'a Path,
}

/// One platform built on an engine, in the work layout.
pub struct EngineImage {
    pub manifest: Descriptor,
    pub result: PlatformResult,
}

/// A connected engine and the machine it is.
struct Connected {
    engine: DockerEngine,
    machine: Option<Platform>,
}

/// Builds every platform of `placements` on its engine (`job.jobs` at a time) into `layout`;
/// the first failure stops the build. Engines are reached before anything is sent.
pub fn build_all(
    job: &Job,
    inputs: &EngineInputs,
    placements: &BTreeMap<Platform, EnginePlacement>,
    layout: &OciLayout,
    reporter: &dyn Reporter,
) -> exit::Result<Vec<EngineImage>> {
    if placements.is_empty() {
        return Ok(Vec::new());
    }
    let engines = connect(placements, reporter)?;
    let (tar, dockerfile) = write_context(job, inputs)?;
    let platforms: Vec<Platform> = placements.keys().copied().collect();
    reporter.builds_begin(&platforms);
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<Option<exit::Result<EngineImage>>>> =
        Mutex::new(platforms.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..job.jobs.min(platforms.len()).max(1) {
            scope.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap_or_else(|p| p.into_inner());
                    let i = *n;
                    *n += 1;
                    i
                };
                let (Some(p), Some(placement)) = (
                    platforms.get(i),
                    platforms.get(i).and_then(|p| placements.get(p)),
                ) else {
                    break;
                };
                let Some(connected) = engines.get(&placement.endpoint.to_string()) else {
                    break;
                };
                let platform = OnePlatform {
                    job,
                    inputs,
                    platform: *p,
                    connected,
                    tar: &tar,
                    dockerfile: &dockerfile,
                };
                reporter.build_started(
                    *p,
                    &format!(
                        "building from the Dockerfile on docker {}",
                        placement.endpoint
                    ),
                );
                let started = Instant::now();
                let r = platform.build(layout, reporter);
                let outcome = match &r {
                    Ok(_) => format!("built in {:.1}s", started.elapsed().as_secs_f64()),
                    Err(_) => "FAILED (details below)".into(),
                };
                reporter.build_finished(*p, &outcome);
                if let Ok(mut all) = results.lock() {
                    all[i] = Some(r);
                }
            });
        }
    });
    reporter.builds_end();
    let _ = std::fs::remove_file(&tar);
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(Failure::from(anyhow::anyhow!(
                    "a platform's engine build thread ended without a result"
                )))
            })
        })
        .collect()
}

/// Every engine of `placements`, connected once (by endpoint).
fn connect(
    placements: &BTreeMap<Platform, EnginePlacement>,
    reporter: &dyn Reporter,
) -> exit::Result<HashMap<String, Connected>> {
    let mut engines = HashMap::new();
    for placement in placements.values() {
        let key = placement.endpoint.to_string();
        if engines.contains_key(&key) {
            continue;
        }
        let engine = DockerEngine::connect(&placement.endpoint).map_err(|e| Failure {
            code: e.exit_code(),
            error: anyhow::anyhow!("{}: {e}", placement.chosen_by),
        })?;
        let info = engine.info().map_err(|e| Failure {
            code: e.exit_code(),
            error: anyhow::anyhow!("{}: {e}", placement.chosen_by),
        })?;
        let machine = Platform::from_oci(&info.os, &info.architecture, info.variant.as_deref());
        reporter.line(&format!(
            "docker {key}: Docker {} (API {}), {}/{}{}",
            info.server_version,
            info.negotiated_api_version,
            info.os,
            info.architecture,
            info.variant
                .as_deref()
                .map(|v| format!("/{v}"))
                .unwrap_or_default()
        ));
        engines.insert(
            key,
            Connected {
                engine,
                machine: machine.ok(),
            },
        );
    }
    Ok(engines)
}

/// The context tar in the work directory, and the Dockerfile's name in it.
fn write_context(job: &Job, inputs: &EngineInputs) -> exit::Result<(PathBuf, String)> {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let context = canonical(&job.dir);
    let inside = canonical(inputs.dockerfile)
        .strip_prefix(&context)
        .ok()
        .and_then(|rel| rel.to_str().map(str::to_string))
        .filter(|rel| !rel.is_empty());
    let mut extra = Vec::new();
    let dockerfile = match inside {
        Some(rel) => rel,
        None => {
            let text = std::fs::read(inputs.dockerfile).map_err(|e| {
                Failure::usage(anyhow::anyhow!(
                    "cannot read the Dockerfile {}: {e}",
                    inputs.dockerfile.display()
                ))
            })?;
            extra.push(ExtraEntry {
                name: OUTSIDE_DOCKERFILE.to_string(),
                content: text,
            });
            let mut ignore = std::fs::read(context.join(".dockerignore")).unwrap_or_default();
            ignore.extend_from_slice(format!("\n{OUTSIDE_DOCKERFILE}\n").as_bytes());
            extra.push(ExtraEntry {
                name: ".dockerignore".to_string(),
                content: ignore,
            });
            OUTSIDE_DOCKERFILE.to_string()
        }
    };
    // As the `docker` CLI: the Dockerfile and `.dockerignore` are always sent; the engine
    // leaves them out of `COPY .` when `.dockerignore` names them.
    let excluded =
        |rel: &str| rel != dockerfile && rel != ".dockerignore" && inputs.ignore.is_excluded(rel);
    let filter = ContextFilter {
        excluded: &excluded,
        walk_excluded_dirs: inputs.ignore.has_exceptions() || dockerfile.contains('/'),
    };
    let path = inputs.work.join("context.tar");
    let fail = |e: String| {
        Failure::env(anyhow::anyhow!(
            "writing the build context {}: {e}",
            path.display()
        ))
    };
    let file = std::fs::File::create(&path).map_err(|e| fail(e.to_string()))?;
    let writer = BufWriter::with_capacity(1 << 20, file);
    let (mut writer, _) = context::write_dockerfile_context(&context, &filter, &extra, writer)
        .map_err(|e| Failure::usage(anyhow::anyhow!("the build context: {e}")))?;
    writer.flush().map_err(|e| fail(e.to_string()))?;
    Ok((path, dockerfile))
}

/// One platform's engine build.
struct OnePlatform<'a> {
    job: &'a Job,
    inputs: &'a EngineInputs<'a>,
    platform: Platform,
    connected: &'a Connected,
    tar: &'a Path,
    dockerfile: &'a str,
}

impl OnePlatform<'_> {
    fn build(&self, layout: &OciLayout, reporter: &dyn Reporter) -> exit::Result<EngineImage> {
        let p = self.platform;
        let engine = &self.connected.engine;
        let started = Instant::now();
        let request = DockerfileBuild {
            dockerfile: self.dockerfile,
            platform: p,
            build_args: self.inputs.build_args,
            target: self.inputs.target,
            no_cache: !self.job.cache,
        };
        let what = "docker build".to_string();
        let mut log = StepLog::new(reporter, p, &what);
        let built = engine.build_dockerfile(self.tar, &request, &mut log);
        let tail = log.tail();
        let id = built.map_err(|e| {
            let mut message = e.to_string();
            if !tail.is_empty() {
                message.push_str("\nlast lines of its output:\n");
                message.push_str(&tail.join("\n"));
            }
            Failure {
                code: e.exit_code(),
                error: anyhow::anyhow!(message),
            }
        })?;
        let archive = self
            .inputs
            .work
            .join(format!("{}.docker.tar", p.to_string().replace('/', "-")));
        let saved = engine.save_image(&id, &archive);
        if let Err(e) = engine.remove_image(&id) {
            reporter.line(&format!(
                "warning: the built image {id} stays in docker {}: {e}",
                engine.endpoint()
            ));
        }
        saved.map_err(|e| Failure {
            code: e.exit_code(),
            error: anyhow::anyhow!("{e}"),
        })?;
        let options = LayerOptions {
            compression: self.job.compression,
            threads: 0,
            mtime: self.job.epoch,
        };
        let imported = import_archive(&archive, p, &options, layout, self.inputs.work);
        let _ = std::fs::remove_file(&archive);
        let manifest = imported.map_err(|e| {
            Failure::env(anyhow::anyhow!(
                "the {p} image docker {} built: {e}",
                engine.endpoint()
            ))
        })?;
        let native = self
            .connected
            .machine
            .is_some_and(|m| p.may_run_natively_on(&m));
        Ok(EngineImage {
            result: PlatformResult {
                platform: p,
                strategy: if native {
                    Strategy::Native
                } else {
                    Strategy::Emulate
                },
                toolchain: None,
                runner: format!("docker {}", engine.endpoint()),
                build_image: None,
                seconds: started.elapsed().as_secs_f64(),
                cached: false,
                files: Vec::new(),
                findings: Vec::new(),
                manifest: Some(manifest.digest.clone()),
                base_manifest: None,
                steps: Vec::new(),
            },
            manifest,
        })
    }
}

/// `manifest.json` of a docker-archive: one image.
#[derive(serde::Deserialize)]
struct ArchiveManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// The config fields this module reads.
#[derive(serde::Deserialize)]
struct ArchiveConfig {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
    rootfs: ArchiveRootFs,
}

#[derive(serde::Deserialize)]
struct ArchiveRootFs {
    diff_ids: Vec<String>,
}

/// `a/../b/./c` → `b/c` (a docker-archive's entry names and layer links).
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// The one image of the docker-archive `archive` as an image of `layout` for `platform`: each
/// layer compressed with `options` (its diff_id must be the config's), the config as it is
/// (its platform must be `platform`), a manifest over them. Returns the manifest's
/// descriptor, with its platform.
pub fn import_archive(
    archive: &Path,
    platform: Platform,
    options: &LayerOptions,
    layout: &OciLayout,
    work: &Path,
) -> Result<Descriptor, String> {
    let (documents, links) = read_documents(archive)?;
    let manifests: Vec<ArchiveManifest> = documents
        .get("manifest.json")
        .ok_or("the saved archive has no manifest.json")
        .and_then(|b| {
            serde_json::from_slice(b).map_err(|_| "its manifest.json is not a docker-archive's")
        })
        .map_err(str::to_string)?;
    let [image] = manifests.as_slice() else {
        return Err(format!(
            "the saved archive holds {} images, not one",
            manifests.len()
        ));
    };
    let config_bytes = documents
        .get(&clean(&image.config))
        .ok_or_else(|| format!("the saved archive lacks its config {}", image.config))?;
    let config: ArchiveConfig = serde_json::from_slice(config_bytes)
        .map_err(|e| format!("its config {} is not an image config: {e}", image.config))?;
    let written = match config.variant.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => format!("{}/{}/{v}", config.os, config.architecture),
        None => format!("{}/{}", config.os, config.architecture),
    };
    if Platform::from_oci(&config.os, &config.architecture, config.variant.as_deref()).ok()
        != Some(platform)
    {
        return Err(format!(
            "its config says {written}, not {platform}: the engine ignored the platform it was \
             asked for; build {platform} on an engine that honours it (Docker 20.10 or newer), \
             or on a builder of that platform (--builder {platform}=ENDPOINT)"
        ));
    }
    if config.rootfs.diff_ids.len() != image.layers.len() {
        return Err(format!(
            "its config lists {} layers (rootfs.diff_ids), its manifest.json {}",
            config.rootfs.diff_ids.len(),
            image.layers.len()
        ));
    }
    let wanted: Vec<String> = image.layers.iter().map(|l| resolve(&links, l)).collect();
    let layers = compress_layers(archive, &wanted, options, layout, work)?;
    let mut descriptors = Vec::new();
    for (i, (name, expected)) in wanted.iter().zip(&config.rootfs.diff_ids).enumerate() {
        let layer = layers
            .get(name)
            .ok_or_else(|| format!("the saved archive lacks layer {name}"))?;
        if &layer.diff_id != expected {
            return Err(format!(
                "layer {} ({name}) hashes to {}, its config's rootfs.diff_ids says {expected}",
                i + 1,
                layer.diff_id
            ));
        }
        descriptors.push(Descriptor {
            media_type: layer.media_type.clone(),
            digest: layer.digest.clone(),
            size: layer.size,
            platform: None,
            annotations: BTreeMap::new(),
        });
    }
    let err = |e: oci::OciError| e.to_string();
    let config_descriptor = layout
        .write_blob(oci::MEDIA_TYPE_CONFIG, config_bytes)
        .map_err(err)?;
    let manifest = oci::image_manifest(&config_descriptor, &descriptors, &BTreeMap::new());
    let mut descriptor = layout
        .write_blob(oci::MEDIA_TYPE_MANIFEST, &manifest)
        .map_err(err)?;
    descriptor.platform = Some(platform.into());
    Ok(descriptor)
}

/// Opens a docker-archive for one pass over its entries.
fn open_archive(archive: &Path) -> Result<tar::Archive<std::io::BufReader<std::fs::File>>, String> {
    std::fs::File::open(archive)
        .map(|f| tar::Archive::new(std::io::BufReader::new(f)))
        .map_err(|e| format!("cannot open {}: {e}", archive.display()))
}

/// A docker-archive's JSON documents (manifest.json, the config) by entry name.
type Documents = HashMap<String, Vec<u8>>;
/// A docker-archive's symlinks (a layer saved under two IDs): name → cleaned target.
type Links = HashMap<String, String>;

/// The JSON documents and the symlinks of a docker-archive.
fn read_documents(archive: &Path) -> Result<(Documents, Links), String> {
    let read_err = |e: std::io::Error| format!("reading {}: {e}", archive.display());
    let mut documents = Documents::new();
    let mut links = Links::new();
    let mut a = open_archive(archive)?;
    for entry in a.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let name = clean(&entry.path().map_err(read_err)?.to_string_lossy());
        let kind = entry.header().entry_type();
        if kind.is_symlink() {
            if let Some(target) = entry.link_name().map_err(read_err)? {
                let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                let target = clean(&format!("{dir}/{}", target.to_string_lossy()));
                links.insert(name, target);
            }
        } else if kind.is_file() && name.ends_with(".json") && entry.size() <= 16 << 20 {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(read_err)?;
            documents.insert(name, bytes);
        }
    }
    Ok((documents, links))
}

/// `name` with its links followed (a few hops at most).
fn resolve(links: &Links, name: &str) -> String {
    let mut name = clean(name);
    for _ in 0..8 {
        match links.get(&name) {
            Some(t) => name = t.clone(),
            None => break,
        }
    }
    name
}

/// Every `wanted` layer tar of the archive, compressed into the layout, by entry name.
fn compress_layers(
    archive: &Path,
    wanted: &[String],
    options: &LayerOptions,
    layout: &OciLayout,
    work: &Path,
) -> Result<HashMap<String, oci::Layer>, String> {
    let read_err = |e: std::io::Error| format!("reading {}: {e}", archive.display());
    let mut layers: HashMap<String, oci::Layer> = HashMap::new();
    let mut a = open_archive(archive)?;
    for entry in a.entries().map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let name = clean(&entry.path().map_err(read_err)?.to_string_lossy());
        if !entry.header().entry_type().is_file()
            || !wanted.contains(&name)
            || layers.contains_key(&name)
        {
            continue;
        }
        let layer = compress_layer(entry, options, layout, work)
            .map_err(|e| format!("layer {name}: {e}"))?;
        layers.insert(name, layer);
    }
    Ok(layers)
}

/// One uncompressed layer tar, compressed by rcross's writer into the layout.
fn compress_layer(
    mut tar: impl Read,
    options: &LayerOptions,
    layout: &OciLayout,
    work: &Path,
) -> Result<oci::Layer, String> {
    let temp = tempfile::NamedTempFile::new_in(work)
        .map_err(|e| format!("a temporary file in {}: {e}", work.display()))?;
    let writer = BufWriter::with_capacity(1 << 20, temp.as_file());
    let (layer, mut writer) = oci::write_tar_layer(options, writer, |sink| {
        std::io::copy(&mut tar, sink)
            .map(|_| ())
            .map_err(|e| oci::OciError::Compression {
                message: format!("reading the layer: {e}"),
            })
    })
    .map_err(|e| e.to_string())?;
    writer.flush().map_err(|e| e.to_string())?;
    drop(writer);
    let mut file = std::fs::File::open(temp.path()).map_err(|e| e.to_string())?;
    layout
        .copy_blob(&layer.digest, layer.size, "the engine's image", &mut file)
        .map_err(|e| e.to_string())?;
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_a_docker_archive_are_cleaned() {
        assert_eq!(clean("./abc/layer.tar"), "abc/layer.tar");
        assert_eq!(clean("abc/../def/layer.tar"), "def/layer.tar");
        assert_eq!(clean("/x//y/"), "x/y");
    }

    #[test]
    fn engine_names_parse_and_chroot_or_nothing_is_daemonless() {
        assert_eq!(engine_endpoint(None).unwrap(), None);
        assert_eq!(engine_endpoint(Some("chroot")).unwrap(), None);
        assert_eq!(
            engine_endpoint(Some("tcp://h:2375")).unwrap(),
            Some("tcp://h:2375".parse().unwrap())
        );
        let e = engine_endpoint(Some("/var/run/docker.sock")).unwrap_err();
        assert_eq!(e.code, crate::exit::USAGE);
        assert!(e.error.to_string().contains("unix://"), "{}", e.error);
    }

    /// A docker-archive as Docker 20.10 writes it: `<id>/layer.tar`, a second layer linking
    /// to the first, the config, manifest.json.
    fn archive(dir: &Path, config: &serde_json::Value, layer: &[u8]) -> PathBuf {
        let path = dir.join("saved.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
        let mut add = |name: &str, bytes: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, bytes).unwrap();
        };
        add("aaa/layer.tar", layer);
        let config = serde_json::to_vec(config).unwrap();
        add("cfg.json", &config);
        add(
            "manifest.json",
            br#"[{"Config":"cfg.json","RepoTags":null,"Layers":["aaa/layer.tar","bbb/layer.tar"]}]"#,
        );
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "bbb/layer.tar", "../aaa/layer.tar")
            .unwrap();
        b.into_inner().unwrap();
        path
    }

    fn layer_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        b.append_data(&mut h, "hi", &b"hi"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn a_saved_image_becomes_a_layout_image_with_its_config_and_checked_diff_ids() {
        let t = tempfile::tempdir().unwrap();
        let layer = layer_tar();
        let diff_id = crate::image::sha256_digest(&layer);
        let config = serde_json::json!({
            "os": "linux", "architecture": "arm64",
            "rootfs": {"type": "layers", "diff_ids": [diff_id, diff_id]},
            "config": {"Cmd": ["/hi"]}
        });
        let saved = archive(t.path(), &config, &layer);
        let layout = OciLayout::create(&t.path().join("layout")).unwrap();
        let arm64: Platform = "linux/arm64".parse().unwrap();
        let options = LayerOptions::default();
        let d = import_archive(&saved, arm64, &options, &layout, t.path()).unwrap();
        assert_eq!(d.platform, Some(arm64.into()));
        let manifest: serde_json::Value =
            serde_json::from_slice(&layout.read_blob(&d.digest).unwrap()).unwrap();
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[0]["digest"], layers[1]["digest"]);
        let config_digest = manifest["config"]["digest"].as_str().unwrap();
        assert_eq!(
            layout.read_blob(config_digest).unwrap(),
            serde_json::to_vec(&config).unwrap(),
            "the config is kept as the engine wrote it"
        );

        // Another platform than asked is the engine ignoring it.
        let amd64: Platform = "linux/amd64".parse().unwrap();
        let e = import_archive(&saved, amd64, &options, &layout, t.path()).unwrap_err();
        assert!(
            e.contains("linux/arm64, not linux/amd64") && e.contains("ignored"),
            "{e}"
        );

        // A layer that is not what the config says.
        let other = serde_json::json!({
            "os": "linux", "architecture": "arm64",
            "rootfs": {"type": "layers", "diff_ids": [diff_id, format!("sha256:{}", "0".repeat(64))]},
        });
        let saved = archive(t.path(), &other, &layer);
        let e = import_archive(&saved, arm64, &options, &layout, t.path()).unwrap_err();
        assert!(
            e.contains("layer 2") && e.contains("rootfs.diff_ids"),
            "{e}"
        );
    }
}
