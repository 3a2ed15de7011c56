//! Stage 5, assemble: the verified files become one reproducible layer per platform (or a
//! layer the registry already has, see [`super::reuse`]), stacked on the base's layers,
//! with a config and a manifest per platform and one index, in an OCI layout: the `--output`
//! layout, or one in the work directory that the publish stage archives.

use super::artifacts::Placed;
use super::base::{self, BASE_DIGEST_ANNOTATION, BASE_NAME_ANNOTATION};
use super::layer_cache::LayerCache;
use super::publish::{PlatformResult, ReusedLayer};
use super::reuse;
use super::verify::Verified;
use super::{Base, Job, Output, Reporter};
use crate::exit::{self, Failure};
use crate::oci::{
    self, Descriptor, FileContent, History, ImageSpec, LayerEntry, LayerOptions, OciLayout,
    RunConfig,
};
use crate::platform::Platform;
use std::collections::BTreeMap;
use std::path::Path;

/// The image, in a layout.
pub struct Assembled {
    pub layout: OciLayout,
    /// One manifest per platform, in the job's order.
    pub manifests: Vec<Descriptor>,
    pub index: Descriptor,
    /// The names the index is tagged with in the layout: each `-t`'s tag (or `latest`).
    pub names: Vec<String>,
    /// Every platform's report, with its manifest.
    pub platforms: Vec<PlatformResult>,
    pub reused_layers: Vec<ReusedLayer>,
    /// What the tags being pushed named while the platforms built (see [`reuse::SeenRoot`]).
    pub seen_roots: Vec<reuse::SeenRoot>,
}

/// Layers compressed as their platforms finish building, while the others still build (the
/// compressor's work overlaps the compilers' instead of following them). A platform's layer
/// is compressed into a scratch blob store (next to the build cache when it is on, and stored in
/// its layer cache too; else in a temporary directory) that lives as long as this value;
/// [`assemble`] takes the blob from there (a hard link, else a checked copy) with the
/// descriptor its compression gave, so the image is byte for byte what it would be without
/// this and the files are not read again. A layer that failed here is simply compressed there.
/// A layer the registry has (the reuse map, waited for) is not compressed early.
pub struct EarlyLayers {
    /// The build cache's root when it is on.
    cache_root: Option<std::path::PathBuf>,
    /// Made when the first layer is written (a build whose platforms all come from the build
    /// cache makes none); `None` inside when no scratch directory could be made.
    scratch: std::sync::OnceLock<Option<Scratch>>,
    options: LayerOptions,
    /// Each platform's layer, compressed into the scratch blob store.
    written: std::sync::Mutex<Vec<(Platform, oci::Layer)>>,
}

/// Where early layers are compressed (`layout`, a blob store: blobs only), and the build
/// cache's layer cache they are also stored in when it is on.
struct Scratch {
    store: Option<LayerCache>,
    layout: OciLayout,
    _dir: tempfile::TempDir,
}

impl EarlyLayers {
    /// Beside the build cache's layer cache (`build_cache_root`) when the cache is on, else
    /// in a temporary directory; made on the first layer written. When no scratch directory
    /// can be made, layers are compressed at assembly, as before.
    pub fn new(job: &Job, build_cache_root: Option<&Path>) -> EarlyLayers {
        EarlyLayers {
            cache_root: build_cache_root.map(Path::to_path_buf),
            scratch: std::sync::OnceLock::new(),
            options: layer_options(job),
            written: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn scratch(&self) -> Option<&Scratch> {
        self.scratch
            .get_or_init(|| {
                let dir = match &self.cache_root {
                    Some(root) => {
                        std::fs::create_dir_all(root).ok()?;
                        tempfile::Builder::new()
                            .prefix(".early-")
                            .tempdir_in(root)
                            .ok()?
                    }
                    None => tempfile::Builder::new()
                        .prefix("rcross-layers")
                        .tempdir()
                        .ok()?,
                };
                let store = self.cache_root.as_deref().map(LayerCache::in_build_cache);
                let layout = OciLayout::blob_store(dir.path()).ok()?;
                Some(Scratch {
                    store,
                    layout,
                    _dir: dir,
                })
            })
            .as_ref()
    }

    /// Compresses platform `p`'s layer from its build output `out_dir` (best effort: a
    /// failure here leaves the layer to [`assemble`], where verification reports any error).
    /// Returns the artifacts it found, for verification.
    pub fn write(
        &self,
        job: &Job,
        p: Platform,
        out_dir: &Path,
        reuse: Option<&reuse::Pending>,
    ) -> Option<Vec<Placed>> {
        let placed =
            super::artifacts::resolve(&job.project.artifacts, out_dir, &p.to_string()).ok()?;
        self.compress(p, &placed, reuse);
        Some(placed)
    }

    fn compress(&self, p: Platform, placed: &[Placed], reuse: Option<&reuse::Pending>) {
        let entries = layer_entries(placed);
        // The diff_id (a pass over the files) only when the registry has layers to match.
        if let Some(map) = reuse.map(reuse::Pending::map).filter(|m| !m.is_empty()) {
            match oci::diff_id(&entries, self.options.mtime) {
                Ok((diff_id, _)) if map.get(&diff_id).is_none() => {}
                _ => return,
            }
        }
        let Some(scratch) = self.scratch() else {
            return;
        };
        let layer = match &scratch.store {
            Some(store) => store.write_layer(&scratch.layout, &entries, &self.options, false),
            None => scratch.layout.write_layer(&entries, &self.options),
        };
        if let (Ok(layer), Ok(mut written)) = (layer, self.written.lock()) {
            written.push((p, layer));
        }
    }

    /// Platform `p`'s layer, put into `layout` (a hard link to the scratch blob where the file
    /// system allows, else a checked copy); `None` when it was not written early.
    fn adopt(&self, p: Platform, layout: &OciLayout) -> Option<oci::Layer> {
        let layer = self
            .written
            .lock()
            .ok()?
            .iter()
            .find(|(q, _)| *q == p)
            .map(|(_, l)| l.clone())?;
        let scratch = self.scratch.get()?.as_ref()?;
        let blob = scratch.layout.blob_path(&layer.digest).ok()?;
        layout
            .link_blob(&layer.digest, layer.size, &blob)
            .ok()
            .map(|()| layer)
    }
}

/// Where [`assemble`] looks for layers before compressing them: the build cache's layer cache
/// (for files that came from the build cache) and the layers compressed early (whose store
/// is that same cache when it is on).
#[derive(Clone, Copy, Default)]
pub struct LayerStores<'a> {
    pub cache: Option<&'a LayerCache>,
    pub early: Option<&'a EarlyLayers>,
}

/// How the job's layers are compressed.
fn layer_options(job: &Job) -> LayerOptions {
    LayerOptions {
        compression: job.compression,
        threads: 0,
        mtime: job.epoch,
    }
}

/// With `--push`: starts reading the tags being pushed and the `--cache-from` images for
/// layers the registry already has (see [`super::reuse`]), in the background, so it is
/// known by the time the layers are written.
pub fn start_reuse(job: &Job) -> exit::Result<Option<reuse::Pending>> {
    ReuseReading::of(job).map(|r| r.start()).transpose()
}

/// What the reading of reusable layers depends on: [`start_reuse`] takes it from the job;
/// [`super::build`] takes it from the command line before the job is known (git and the host
/// probes take a while), and uses that reading when the job asks for the same one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReuseReading {
    pub tags: Vec<crate::registry::Reference>,
    pub cache_from: Vec<crate::registry::Reference>,
    pub compression: oci::Compressor,
    pub insecure: bool,
    pub retry_timeout: std::time::Duration,
}

impl ReuseReading {
    /// The reading `job` needs (`None` without `--push`).
    pub fn of(job: &Job) -> Option<ReuseReading> {
        job.push.then(|| ReuseReading {
            tags: job.tags.clone(),
            cache_from: job.cache_from.clone(),
            compression: job.compression,
            insecure: job.insecure,
            retry_timeout: job.retry_timeout,
        })
    }

    /// Starts it in the background.
    pub fn start(&self) -> exit::Result<reuse::Pending> {
        let mut sources: Vec<reuse::ReuseSource> = self
            .tags
            .iter()
            .map(|t| reuse::ReuseSource {
                reference: t.clone(),
                cache_from: false,
            })
            .collect();
        sources.extend(self.cache_from.iter().map(|r| reuse::ReuseSource {
            reference: r.clone(),
            cache_from: true,
        }));
        let client = super::resolve::registry_client(
            sources.iter().map(|s| s.reference.registry.clone()),
            self.insecure,
            self.retry_timeout,
        )?;
        Ok(reuse::start(client, sources, self.compression))
    }
}

/// Stage 5: the verified files → the image in a layout (`work` holds it unless the output is
/// a layout).
pub fn assemble(
    job: &Job,
    verified: Verified,
    base: Option<&Base>,
    reuse: Option<reuse::Pending>,
    stores: LayerStores<'_>,
    work: &Path,
    reporter: &dyn Reporter,
) -> exit::Result<Assembled> {
    let layout_dir = match &job.output {
        Output::Layout(d) => d.clone(),
        Output::OciArchive(_) | Output::DockerArchive(_) => work.join("layout"),
    };
    if let Some(state) = &job.state_dir {
        ignore_itself(state)?;
    }
    let layout = OciLayout::create(&layout_dir).map_err(Failure::env)?;
    if let Some(b) = base {
        copy_base_blobs(b, &layout, reporter)?;
    }
    let (mut platforms, placed): (Vec<PlatformResult>, Vec<Vec<Placed>>) =
        verified.platforms.into_iter().unzip();
    // Layers compressed while the other platforms built are taken as they are; the others
    // are written from their entries, the layer cache looked up for files that came from the
    // build cache.
    let built: Vec<(Platform, Option<oci::Layer>)> = platforms
        .iter()
        .map(|r| {
            (
                r.platform,
                stores.early.and_then(|e| e.adopt(r.platform, &layout)),
            )
        })
        .collect();
    let not_early = || built.iter().map(|(_, early)| early.is_none());
    let entries: Vec<Vec<LayerEntry>> = placed
        .iter()
        .zip(not_early())
        .filter(|(_, rest)| *rest)
        .map(|(p, _)| layer_entries(p))
        .collect();
    let look_up: Vec<bool> = platforms
        .iter()
        .zip(not_early())
        .filter_map(|(r, rest)| rest.then_some(r.cached))
        .collect();
    let (layers, reused_layers, seen_roots) = write_layers(
        job,
        &layout,
        &entries,
        &built,
        reuse,
        stores.cache.map(|c| (c, look_up.as_slice())),
        reporter,
    )?;
    let ours = run_config(job);
    let mut manifests = Vec::new();
    for (result, layer) in platforms.iter_mut().zip(layers) {
        let spec = image_spec(job, base, result.platform, layer, &ours);
        let d = layout.write_image(&spec).map_err(Failure::env)?;
        result.manifest = Some(d.digest.clone());
        manifests.push(d);
    }
    let (index, names) = write_index(job, &layout, &manifests)?;
    Ok(Assembled {
        layout,
        manifests,
        index,
        names,
        platforms,
        reused_layers,
        seen_roots,
    })
}

/// The index over `manifests` (with the project's annotations) in `layout`, named with each
/// `-t`'s tag (or `latest`); returns it and the names.
pub(crate) fn write_index(
    job: &Job,
    layout: &OciLayout,
    manifests: &[Descriptor],
) -> exit::Result<(Descriptor, Vec<String>)> {
    let index = layout
        .write_index(manifests, &job.project.image.annotations)
        .map_err(Failure::env)?;
    let names: Vec<String> = if job.tags.is_empty() {
        vec!["latest".to_string()]
    } else {
        job.tags
            .iter()
            .map(|t| t.tag.clone().unwrap_or_else(|| "latest".into()))
            .collect()
    };
    for n in &names {
        layout.tag(&index, n).map_err(Failure::env)?;
    }
    Ok((index, names))
}

/// The project's `[config]` as the image config's run settings.
fn run_config(job: &Job) -> RunConfig {
    let image = &job.project.image;
    RunConfig {
        entrypoint: (!image.entrypoint.is_empty()).then(|| image.entrypoint.clone()),
        cmd: (!image.cmd.is_empty()).then(|| image.cmd.clone()),
        env: image.env.clone(),
        workdir: image.workdir.clone(),
        user: image.user.clone(),
        exposed_ports: image.ports.clone(),
        labels: image.labels.clone(),
    }
}

/// Platform `p`'s image: the base's layers, history and config (when there is a base) with
/// ours on top.
fn image_spec(
    job: &Job,
    base: Option<&Base>,
    p: Platform,
    layer: oci::Layer,
    ours: &RunConfig,
) -> ImageSpec {
    let history = History {
        created: Some(oci::rfc3339_utc(job.epoch)),
        created_by: Some(format!("rcross build: {}", job.project.build.command)),
        // How this machine built it (native, cross, emulate) is not part of the image: the
        // same inputs must give the same digest on any machine. The log and
        // --metadata-file report it.
        comment: None,
        empty_layer: false,
    };
    let mut annotations = BTreeMap::new();
    let Some(part) = base.and_then(|b| b.part(p)) else {
        return ImageSpec {
            platform: p,
            layers: vec![layer],
            history: vec![history],
            run: ours.clone(),
            created: job.epoch,
            annotations,
        };
    };
    annotations.insert(BASE_DIGEST_ANNOTATION.to_string(), part.manifest.clone());
    if let Some(name) = base.and_then(|b| b.image.name.clone()) {
        annotations.insert(BASE_NAME_ANNOTATION.to_string(), name);
    }
    let mut layers = part.layers.clone();
    layers.push(layer);
    let mut histories = part.history.clone();
    histories.push(history);
    ImageSpec {
        platform: p,
        layers,
        history: histories,
        run: base::merge(&part.run, ours),
        created: job.epoch,
        annotations,
    }
}

/// Copies the base's layers into the layout (streamed and digest-checked), so the layout is
/// self-contained; layers already there are not fetched again.
fn copy_base_blobs(base: &Base, layout: &OciLayout, reporter: &dyn Reporter) -> exit::Result<()> {
    let source = &base.image.source;
    let from = source.describe();
    let mut copied = 0usize;
    for part in &base.parts {
        for layer in &part.layers {
            if layout.has_blob(&layer.digest).map_err(Failure::env)? {
                continue;
            }
            // Raw: copy_blob checks size and digest as it stores (once, not twice).
            let mut reader = source.open_blob(&layer.digest).map_err(|e| {
                Failure::env(anyhow::anyhow!(
                    "base image {from}: layer {}: {e}",
                    layer.digest
                ))
            })?;
            layout
                .copy_blob(&layer.digest, layer.size, &from, &mut reader)
                .map_err(|e| Failure {
                    code: e.exit_code(),
                    error: e.into(),
                })?;
            copied += 1;
        }
    }
    if copied > 0 {
        reporter.line(&format!("copied {copied} base layer(s) from {from}"));
    }
    Ok(())
}

/// One layer per platform of `built`: the one written early, else one from the next of
/// `entries` (one per platform without an early layer), reusing what the registry has when a
/// reuse map is being read; logs what was reused and where it is. Also returns what the tags
/// named when they were read.
fn write_layers(
    job: &Job,
    layout: &OciLayout,
    entries: &[Vec<LayerEntry>],
    built: &[(Platform, Option<oci::Layer>)],
    reuse: Option<reuse::Pending>,
    layer_cache: Option<(&LayerCache, &[bool])>,
    reporter: &dyn Reporter,
) -> exit::Result<(Vec<oci::Layer>, Vec<ReusedLayer>, Vec<reuse::SeenRoot>)> {
    let options = layer_options(job);
    let reuser = reuse.map(|pending| {
        let (reuser, warnings) = pending.finish(job.store_reused);
        for w in &warnings {
            reporter.line(&format!("warning: {w}"));
        }
        if !reuser.map.is_empty() {
            reporter.line(&format!(
                "{} reusable layer(s) known from {}",
                reuser.map.len(),
                reuser.map.sources.join(", ")
            ));
        }
        reuser
    });
    // The layers not written early go through the reuse map and the layer cache.
    let mut warnings = Vec::new();
    let mut from_rest = reuse::write_layers(
        layout,
        entries,
        &options,
        reuser.as_ref(),
        layer_cache,
        &mut warnings,
    )
    .map_err(Failure::env)?
    .into_iter();
    let written = built
        .iter()
        .map(|(_, early)| match early {
            Some(layer) => Ok((layer.clone(), reuse::LayerOutcome::Compressed)),
            None => from_rest.next().ok_or_else(|| {
                Failure::from(anyhow::anyhow!("a layer was neither reused nor written"))
            }),
        })
        .collect::<exit::Result<Vec<_>>>()?;
    for w in &warnings {
        reporter.line(&format!("warning: {w}"));
    }
    let outcomes: Vec<&reuse::LayerOutcome> = written.iter().map(|(_, o)| o).collect();
    for line in reuse::summary(&outcomes) {
        reporter.line(&line);
    }
    let mut reused = Vec::new();
    let mut layers = Vec::new();
    for ((layer, outcome), (platform, _)) in written.into_iter().zip(built) {
        if let reuse::LayerOutcome::Reused { from, stored } = outcome {
            reused.push(ReusedLayer {
                platform: *platform,
                digest: layer.digest.clone(),
                from: from.to_string(),
                stored,
            });
        }
        layers.push(layer);
    }
    let seen = reuser.map(|r| r.map.roots).unwrap_or_default();
    Ok((layers, reused, seen))
}

/// Layer entries for the placed files, with their parent directories.
fn layer_entries(placed: &[Placed]) -> Vec<LayerEntry> {
    let mut dirs: Vec<String> = Vec::new();
    for a in placed {
        let mut acc = String::new();
        let parts: Vec<&str> = a.target.trim_matches('/').split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            acc = if acc.is_empty() {
                (*part).to_string()
            } else {
                format!("{acc}/{part}")
            };
            if !dirs.contains(&acc) {
                dirs.push(acc.clone());
            }
        }
    }
    let mut entries: Vec<LayerEntry> = dirs.into_iter().map(LayerEntry::directory).collect();
    entries.extend(placed.iter().map(|a| {
        LayerEntry::file(
            a.target.trim_start_matches('/'),
            FileContent::Path(a.source.clone()),
            a.mode,
        )
    }));
    entries
}

/// Makes rcross's directory in a project ignore itself, as cargo's `target/` and pytest's caches
/// do: a `.gitignore` holding `*` (written once; a user's own file there is left alone).
pub(crate) fn ignore_itself(dir: &Path) -> exit::Result<()> {
    let file = dir.join(".gitignore");
    if file.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| {
            std::fs::write(
                &file,
                "# Made by rcross: this directory is build output.\n*\n",
            )
        })
        .map_err(|e| {
            Failure::env(anyhow::anyhow!(
                "cannot write {}: {e}; make the project directory writable or pass --output",
                file.display()
            ))
        })
}
