//! Dockerfile builds: `rcross build [CONTEXT] -f Dockerfile --platform … --push`, daemonless.
//!
//! The same stages as an `rcross.toml` build, with the Dockerfile in the middle:
//! 1. resolve: the context, the Dockerfile ([`find`]), the flags and git → the [`Job`];
//! 2. plan: per target platform, the front end ([`crate::dockerfile::plan`]) with the base
//!    images' configs ([`bases`]) → a build graph;
//! 3. run: every platform in parallel ([`stage`]): each stage from its base's root, each step
//!    from the step cache ([`steps`]) or run — RUN in the sandbox, natively for a
//!    build-platform stage and under QEMU otherwise; COPY/ADD ([`copy`], [`ignore`], [`users`]);
//!    a layer per filesystem-changing step ([`snapshot`]);
//! 4. assemble: base layers and the new ones, configs exactly as BuildKit writes them, one
//!    index, in a layout in the work directory;
//! 5. verify: every ELF file of every platform's final image against its platform; a mismatch
//!    stops the build before anything is written or pushed, with where the file came from
//!    ([`provenance`]);
//! 6. publish: the layout to `--output`, then archives, `--load`, `--push` as for any build.
//!
//! Platforms with an engine (`--engine ENDPOINT`, `--builder PLATFORM=ENDPOINT`) are built by
//! that engine instead of steps 2–3 ([`engine`]) and assembled into the same layout.

pub mod bases;
pub mod copy;
pub mod engine;
pub mod ignore;
pub mod judge;
pub mod overlay;
pub mod provenance;
pub mod secrets;
pub mod snapshot;
pub mod stage;
pub mod steps;
pub mod users;

pub use stage::StepReport;

use super::assemble::Assembled;
use super::publish::{self, Metadata, PlatformResult};
use super::{load, resolve, Job, Output, Reporter, Request, Stopped};
use crate::dockerfile::{BuildGraph, BuildOptions, ImageConfig as StageConfig};
use crate::elf::Finding;
use crate::exit::{self, Failure};
use crate::oci::{ConfigExtras, Descriptor, HealthConfig, ImageSpec, OciLayout, RunConfig};
use crate::pipeline::chroot::{ChrootOptions, ChrootSystem, LinuxChroot};
use crate::pipeline::config::{self, BuildStep, Project};
use crate::platform::Platform;
use crate::toolchain::plan::Strategy;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// The file `rcross build CONTEXT` builds when the directory has no rcross.toml.
pub const DEFAULT_DOCKERFILE: &str = "Dockerfile";

/// What `rcross build` builds: an rcross.toml project with its `[build]` command, or a
/// Dockerfile with the project that carries its settings.
#[derive(Debug)]
pub enum BuildSource {
    Project(Project),
    Dockerfile { project: Project, file: PathBuf },
}

/// The request's [`BuildSource`]: rcross.toml (read once here) decides when the directory has
/// one (`[image] dockerfile`, overridden by `-f`); otherwise the Dockerfile (`-f`, or
/// `DIR/Dockerfile`) with a made-up project: the directory's name, the host's platform.
pub fn find(request: &Request) -> exit::Result<BuildSource> {
    let toml = request.dir.join(config::FILE_NAME);
    if toml.is_file() {
        let project = resolve::load_project(request)?;
        let file = match (&project.dockerfile, &request.dockerfile) {
            (Some(_), Some(f)) => f.clone(),
            (Some(d), None) => request.dir.join(d),
            (None, Some(f)) => {
                return Err(Failure::usage(anyhow::anyhow!(
                    "-f {}: {} builds with its [build] command, not a Dockerfile; remove -f, or \
                     set [image] dockerfile = \"{}\" in it",
                    f.display(),
                    toml.display(),
                    f.display()
                )))
            }
            (None, None) => return Ok(BuildSource::Project(project)),
        };
        return Ok(BuildSource::Dockerfile { project, file });
    }
    let dockerfile = match &request.dockerfile {
        Some(f) => f.clone(),
        None => request.dir.join(DEFAULT_DOCKERFILE),
    };
    if request.dockerfile.is_none() && !dockerfile.is_file() {
        return Err(Failure::usage(anyhow::anyhow!(
            "{} has neither an {} nor a {DEFAULT_DOCKERFILE}: give the project directory, or a \
             build context with -f DOCKERFILE",
            request.dir.display(),
            config::FILE_NAME
        )));
    }
    Ok(BuildSource::Dockerfile {
        project: made_up_project(request, &dockerfile)?,
        file: dockerfile,
    })
}

/// The project of a directory without rcross.toml: named after the directory, built for the
/// host's platform (buildx's default) unless `--platform` says otherwise.
fn made_up_project(request: &Request, dockerfile: &Path) -> exit::Result<Project> {
    let host = crate::detect::host_platform(&crate::host::linux::LinuxHost)
        .map_err(|e| Failure::env(anyhow::anyhow!("the host's platform: {e}")))?;
    let dir = std::fs::canonicalize(&request.dir).unwrap_or_else(|_| request.dir.clone());
    let name: String = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(*c))
        .collect();
    Ok(Project {
        path: dockerfile.to_path_buf(),
        name: if name.is_empty() {
            "image".into()
        } else {
            name
        },
        platforms: vec![host],
        base: "scratch".into(),
        build: BuildStep::for_dockerfile(),
        artifacts: Vec::new(),
        image: Default::default(),
        builders: BTreeMap::new(),
        tags: Default::default(),
        dockerfile: Some(dockerfile.to_path_buf()),
        verify_ignore: Vec::new(),
    })
}

/// The whole Dockerfile build.
pub fn build(
    request: &Request,
    project: Project,
    dockerfile: &Path,
    reporter: &dyn Reporter,
) -> Result<Metadata, Stopped> {
    let inputs = Inputs::read(request, project, dockerfile, reporter)?;
    let job = &inputs.job;
    let loader = job
        .load
        .then(|| load::prepare(&job.platforms))
        .transpose()?;
    let mirrors = crate::registry::mirrors::Mirrors::load().map_err(Failure::usage)?;
    let bases = bases::BaseImages::new(mirrors, job.insecure, job.retry_timeout);
    let graphs = inputs.plan(&bases)?;
    let chroot = ChrootOptions::from_env().map_err(|e| Failure::env(anyhow::anyhow!("{e}")))?;
    let work = WorkDir::create(&chroot.work)?;
    let build_cache = match job.cache.then(super::cache::BuildCache::open_default) {
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            reporter.line(&format!("warning: no step cache for this build: {e}"));
            None
        }
        None => None,
    };
    // With --no-cache (or no cache directory) the build still shares a step between its
    // platforms (a build-platform stage the same for every target runs once), as BuildKit
    // does within one solve: through a step cache of its own that starts empty and goes with
    // the work directory.
    let step_cache = match &build_cache {
        Some(c) => steps::StepCache::in_build_cache(c.root()),
        None => steps::StepCache::in_build_cache(&work.0.join("steps")),
    };
    let started = Instant::now();
    let built = inputs.run_daemonless(&graphs, &bases, &chroot, &work.0, &step_cache)?;
    let daemonless = Daemonless {
        graphs: &graphs,
        built: &built,
        seconds: started.elapsed().as_secs_f64(),
    };

    // The engines' platforms, straight into the work layout; then the daemonless ones beside
    // them, verified all together before anything leaves the work directory.
    let layout_dir = work.0.join("layout");
    let layout = OciLayout::create(&layout_dir).map_err(Failure::env)?;
    let engine_inputs = engine::EngineInputs {
        dockerfile,
        ignore: &inputs.ignore,
        build_args: &inputs.build_args,
        target: request.target.as_deref(),
        work: &work.0,
    };
    let from_engines =
        engine::build_all(job, &engine_inputs, &inputs.on_engines, &layout, reporter)?;
    let assembled = assemble(
        job,
        &daemonless,
        from_engines,
        inputs.host,
        &layout_dir,
        reporter,
    )?;
    verify(&inputs, &daemonless, &assembled)?;
    let assembled = place_output(job, assembled)?;
    let metadata = publish::publish(job, assembled, None, loader.as_ref(), reporter)?;
    // The steps share the build cache's size limit, least recently used first; pruned once
    // the image is out (this build's layers were read from there until now).
    if let Some(cache) = &build_cache {
        if let Err(e) = cache.prune(super::cache::DEFAULT_LIMIT) {
            reporter.line(&format!("warning: pruning the build cache: {e}"));
        }
    }
    Ok(metadata)
}

/// What a Dockerfile build reads before anything runs.
struct Inputs<'a> {
    request: &'a Request,
    job: Job,
    host: Platform,
    /// The Dockerfile's path as messages name it, and its text.
    name: String,
    text: String,
    build_args: BTreeMap<String, String>,
    ignore: ignore::DockerIgnore,
    secrets: secrets::Secrets,
    /// The platforms a Docker engine builds (`--engine`, `--builder`).
    on_engines: BTreeMap<Platform, engine::EnginePlacement>,
    reporter: &'a dyn Reporter,
}

impl<'a> Inputs<'a> {
    /// The job (as for any build: flags, project file, git), the Dockerfile, `.dockerignore`,
    /// the secrets, and which platforms go to an engine.
    fn read(
        request: &'a Request,
        project: Project,
        dockerfile: &Path,
        reporter: &'a dyn Reporter,
    ) -> Result<Inputs<'a>, Stopped> {
        let host = crate::detect::host_platform(&crate::host::linux::LinuxHost)
            .map_err(|e| Failure::env(anyhow::anyhow!("the host's platform: {e}")))?;
        let git = {
            let (dir, file, policy) = (
                request.dir.clone(),
                project.tags.clone(),
                request.tag_policy.clone(),
            );
            std::thread::spawn(move || crate::tags::compute_for(&dir, &file, &policy, false))
        };
        let git = super::git_facts(git, reporter)?;
        let job = resolve::resolve(project, request, git, reporter)?;
        let on_engines = engine::placements(&job)?;
        if !on_engines.is_empty() && !request.secrets.is_empty() {
            return Err(Failure::usage(anyhow::anyhow!(
                "--secret: the engine's classic builder has no build secrets; build without \
                 --engine and --builder (rcross's daemonless builder mounts them)"
            ))
            .into());
        }
        Ok(Inputs {
            request,
            host,
            name: dockerfile.display().to_string(),
            text: read_dockerfile(dockerfile)?,
            build_args: job.build_args.iter().cloned().collect(),
            ignore: ignore::DockerIgnore::load(&job.dir, dockerfile).map_err(Failure::usage)?,
            secrets: secrets::Secrets::read(&request.secrets, &|k| std::env::var(k).ok())?,
            on_engines,
            job,
            reporter,
        })
    }

    /// The build graph of every platform the daemonless builder builds, planned with its base
    /// images' configs (a first plan names the bases).
    fn plan(&self, bases: &bases::BaseImages) -> exit::Result<Vec<(Platform, BuildGraph)>> {
        let mut graphs = Vec::new();
        for &p in self
            .job
            .platforms
            .iter()
            .filter(|p| !self.on_engines.contains_key(p))
        {
            let mut options = BuildOptions::new(p, self.host);
            options.build_args = self.build_args.clone();
            options.target = self.request.target.clone();
            let first = crate::dockerfile::plan(&self.name, &self.text, &options)
                .map_err(Failure::usage)?;
            for (written, platform) in first.base_images() {
                let base = bases.get(&written, platform, self.reporter)?;
                options.base_configs.insert(written, base.stage_config());
            }
            let graph = crate::dockerfile::plan(&self.name, &self.text, &options)
                .map_err(Failure::usage)?;
            graphs.push((p, graph));
        }
        Ok(graphs)
    }

    /// Every planned platform built by the daemonless builder, in parallel.
    fn run_daemonless(
        &self,
        graphs: &[(Platform, BuildGraph)],
        bases: &bases::BaseImages,
        chroot: &ChrootOptions,
        work: &Path,
        steps: &steps::StepCache,
    ) -> exit::Result<Vec<stage::PlatformImage>> {
        if graphs.is_empty() {
            return Ok(Vec::new());
        }
        let cache_mounts = chroot
            .cache
            .parent()
            .map(|p| p.join("mounts"))
            .unwrap_or_else(|| chroot.cache.join("mounts"));
        let system = LinuxChroot;
        let binfmt = system.binfmt(&self.job.binfmt_misc);
        let ids = system.job_ids();
        let (to_host, to_inside) = stage::id_maps(ids);
        let roots = Mutex::new(HashMap::new());
        let cache_locks = Mutex::new(HashMap::new());
        let shared = stage::Shared {
            host: self.host,
            dockerfile: &self.name,
            context: &self.job.dir,
            ignore: &self.ignore,
            bases,
            steps,
            roots: &roots,
            work,
            rootfs_cache: &chroot.cache,
            cache_mounts: &cache_mounts,
            ids,
            system: &system,
            binfmt: &binfmt,
            secrets: &self.secrets,
            epoch: self.job.epoch,
            compression: self.job.compression,
            reporter: self.reporter,
            cache_locks: &cache_locks,
            to_host: &*to_host,
            to_inside: &*to_inside,
            overlay_warned: Default::default(),
        };
        run_all(&shared, &self.job, graphs, self.reporter)
    }
}

/// Removes the build's work directory (stage roots may hold directories only their owner in
/// the sandbox's id range could write; `remove_tree` handles them).
struct WorkDir(PathBuf);

impl WorkDir {
    /// A new work directory in `parent` (the chroot builder's, on the cache's filesystem, so
    /// copies of unpacked base images are cheap); leftovers of killed builds are swept first.
    fn create(parent: &Path) -> exit::Result<WorkDir> {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::env(anyhow::anyhow!("creating {}: {e}", parent.display())))?;
        // Work directories of killed builds, with their overlay mounts.
        let prefix = "dockerfile-";
        if let Ok(entries) = std::fs::read_dir(parent) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                let pid = name
                    .strip_prefix(prefix)
                    .and_then(|r| r.split('-').next())
                    .and_then(|p| p.parse::<u32>().ok());
                if pid.is_some_and(|p| !Path::new("/proc").join(p.to_string()).exists()) {
                    overlay::unmount_below(&entry.path());
                }
            }
        }
        crate::pipeline::rootfs::sweep_stale(parent, "dockerfile");
        let dir = tempfile::Builder::new()
            .prefix(&crate::pipeline::rootfs::owned_prefix("dockerfile"))
            .tempdir_in(parent)
            .map_err(|e| {
                Failure::env(anyhow::anyhow!(
                    "a work directory in {}: {e}",
                    parent.display()
                ))
            })?;
        Ok(WorkDir(dir.keep()))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        overlay::unmount_below(&self.0);
        let _ = crate::pipeline::rootfs::remove_tree(&self.0);
    }
}

fn read_dockerfile(path: &Path) -> exit::Result<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| {
        Failure::usage(anyhow::anyhow!(
            "cannot read the Dockerfile {}: {e}; give its path with -f",
            path.display()
        ))
    })?;
    let mut text = String::new();
    file.take(crate::dockerfile::MAX_DOCKERFILE_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| {
            Failure::usage(anyhow::anyhow!(
                "cannot read the Dockerfile {}: {e} (it must be UTF-8 text)",
                path.display()
            ))
        })?;
    Ok(text)
}

/// Every platform built, `job.jobs` at a time; the first failure stops the build.
fn run_all(
    shared: &stage::Shared,
    job: &Job,
    graphs: &[(Platform, BuildGraph)],
    reporter: &dyn Reporter,
) -> exit::Result<Vec<stage::PlatformImage>> {
    let platforms: Vec<Platform> = graphs.iter().map(|(p, _)| *p).collect();
    reporter.builds_begin(&platforms);
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<Option<Result<stage::PlatformImage, stage::StepError>>>> =
        Mutex::new((0..graphs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..job.jobs.min(graphs.len()).max(1) {
            scope.spawn(|| loop {
                let i = {
                    let mut n = match next.lock() {
                        Ok(n) => n,
                        Err(p) => p.into_inner(),
                    };
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some((p, graph)) = graphs.get(i) else {
                    break;
                };
                reporter.build_started(*p, "building from the Dockerfile");
                let started = Instant::now();
                let r = stage::build_platform(shared, *p, graph);
                let outcome = match &r {
                    Ok(img) if img.steps.iter().all(|s| s.cached) => "cached".to_string(),
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
    let results = match results.into_inner() {
        Ok(r) => r,
        Err(p) => p.into_inner(),
    };
    let mut out = Vec::new();
    for r in results {
        match r {
            Some(Ok(img)) => out.push(img),
            Some(Err(e)) => {
                let mut message = e.to_string();
                if !e.log_tail.is_empty() {
                    message.push_str("\nlast lines of its output:\n");
                    message.push_str(&e.log_tail.join("\n"));
                }
                return Err(Failure::check(anyhow::anyhow!(message)));
            }
            None => {
                return Err(Failure::from(anyhow::anyhow!(
                    "a platform's build thread ended without a result"
                )))
            }
        }
    }
    Ok(out)
}

/// The image config's run settings of the target stage.
fn run_config(c: &StageConfig) -> (RunConfig, ConfigExtras) {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let run = RunConfig {
        entrypoint: c.entrypoint.clone(),
        cmd: c.cmd.clone(),
        env: c.env.clone(),
        workdir: some(&c.working_dir),
        user: some(&c.user),
        exposed_ports: c.exposed_ports.iter().cloned().collect(),
        labels: c.labels.clone(),
    };
    let nanos = |d: Option<std::time::Duration>| d.map_or(0, |d| d.as_nanos() as u64);
    let extras = ConfigExtras {
        volumes: c.volumes.iter().cloned().collect(),
        stop_signal: c.stop_signal.clone(),
        shell: c.shell.clone(),
        onbuild: c.onbuild.clone(),
        healthcheck: c.healthcheck.as_ref().map(|h| HealthConfig {
            test: h.test.clone(),
            interval: nanos(h.interval),
            timeout: nanos(h.timeout),
            start_period: nanos(h.start_period),
            start_interval: nanos(h.start_interval),
            retries: h.retries.map_or(0, u64::from),
        }),
        author: c.author.clone(),
    };
    (run, extras)
}

/// What the daemonless builder built: the graph and image of each of its platforms (in the
/// same order), and how long it took.
struct Daemonless<'a> {
    graphs: &'a [(Platform, BuildGraph)],
    built: &'a [stage::PlatformImage],
    seconds: f64,
}

/// Platform `p`'s image in `layout`: the base's layers (copied in, verified, when the layout
/// lacks them; how many were copied is returned) and the build's, the base's history and the
/// steps', the target stage's config. The platform is the target's, whatever the last stage
/// ran on (as BuildKit forces it).
fn image_spec(
    job: &Job,
    layout: &OciLayout,
    p: Platform,
    target: &crate::dockerfile::Stage,
    image: &stage::PlatformImage,
) -> exit::Result<(ImageSpec, ConfigExtras, usize)> {
    let mut layers = Vec::new();
    let mut history = Vec::new();
    let mut annotations = BTreeMap::new();
    let mut copied = 0;
    if let Some(base) = &image.base {
        for l in &base.part.layers {
            if !layout.has_blob(&l.digest).map_err(Failure::env)? {
                let mut r = base.source.open_blob(&l.digest).map_err(|e| {
                    Failure::env(anyhow::anyhow!("{}: layer {}: {e}", base.written, l.digest))
                })?;
                layout
                    .copy_blob(&l.digest, l.size, &base.written, &mut r)
                    .map_err(Failure::env)?;
                copied += 1;
            }
        }
        layers.extend(base.part.layers.iter().cloned());
        history.extend(base.part.history.iter().cloned());
        annotations.insert(
            super::base::BASE_DIGEST_ANNOTATION.to_string(),
            base.part.manifest.clone(),
        );
        annotations.insert(
            super::base::BASE_NAME_ANNOTATION.to_string(),
            base.written.clone(),
        );
    }
    for l in &image.layers {
        let mut f = std::fs::File::open(&l.blob).map_err(|e| {
            Failure::env(anyhow::anyhow!(
                "reading the layer {}: {e}",
                l.blob.display()
            ))
        })?;
        layout
            .copy_blob(&l.layer.digest, l.layer.size, "the step cache", &mut f)
            .map_err(Failure::env)?;
        layers.push(l.layer.clone());
    }
    history.extend(image.history.iter().cloned());
    let (run, extras) = run_config(&target.config);
    let spec = ImageSpec {
        platform: p,
        layers,
        history,
        run,
        created: job.epoch,
        annotations,
    };
    Ok((spec, extras, copied))
}

/// The report of a platform the daemonless builder built: native on the machine's platform,
/// emulated when a RUN ran under QEMU, else cross (only the build machine's stages ran).
fn platform_result(
    p: Platform,
    host: Platform,
    seconds: f64,
    image: &stage::PlatformImage,
    manifest: &Descriptor,
) -> PlatformResult {
    PlatformResult {
        platform: p,
        strategy: if p == host {
            Strategy::Native
        } else if image.steps.iter().any(|s| s.emulated) {
            Strategy::Emulate
        } else {
            Strategy::Cross
        },
        toolchain: None,
        runner: "dockerfile (chroot)".into(),
        build_image: None,
        seconds,
        cached: !image.steps.is_empty() && image.steps.iter().all(|s| s.cached),
        files: Vec::new(),
        findings: Vec::new(),
        manifest: Some(manifest.digest.clone()),
        base_manifest: image.base.as_ref().map(|b| b.part.manifest.clone()),
        steps: image.steps.clone(),
    }
}

/// The layout in `dir`: per daemonless platform the base's layers and the new ones, its
/// config (os, architecture and variant of the target, as BuildKit forces them), its
/// manifest; with the images the engines wrote there (`from_engines`), the index (in the
/// job's platform order) and its names.
fn assemble(
    job: &Job,
    daemonless: &Daemonless,
    from_engines: Vec<engine::EngineImage>,
    host: Platform,
    dir: &Path,
    reporter: &dyn Reporter,
) -> exit::Result<Assembled> {
    let (graphs, built, seconds) = (daemonless.graphs, daemonless.built, daemonless.seconds);
    let layout = OciLayout::create(dir).map_err(Failure::env)?;
    let mut manifests = Vec::new();
    let mut results = Vec::new();
    let mut copied = 0usize;
    for ((p, graph), image) in graphs.iter().zip(built) {
        let target = graph.target_stage().ok_or_else(|| {
            Failure::usage(anyhow::anyhow!("the Dockerfile has no stage to build"))
        })?;
        let (spec, extras, base_copied) = image_spec(job, &layout, *p, target, image)?;
        copied += base_copied;
        let d = layout
            .write_image_with(&spec, &extras)
            .map_err(Failure::env)?;
        results.push(platform_result(*p, host, seconds, image, &d));
        manifests.push(d);
    }
    if copied > 0 {
        reporter.line(&format!("copied {copied} base layer(s)"));
    }
    for image in from_engines {
        manifests.push(image.manifest);
        results.push(image.result);
    }
    let order = |p: &Platform| job.platforms.iter().position(|q| q == p);
    let mut both: Vec<(Descriptor, PlatformResult)> = manifests.into_iter().zip(results).collect();
    both.sort_by_key(|(_, r)| order(&r.platform));
    let (manifests, results): (Vec<Descriptor>, Vec<PlatformResult>) = both.into_iter().unzip();
    let (index, names) = super::assemble::write_index(job, &layout, &manifests)?;
    Ok(Assembled {
        layout,
        manifests,
        index,
        names,
        platforms: results,
        reused_layers: Vec::new(),
        seen_roots: Vec::new(),
    })
}

/// One platform's findings.
struct PlatformFindings {
    platform: Platform,
    findings: Vec<Finding>,
}

/// The findings of every platform of the image in `source`, for the ELF files the platform
/// runs ([`judge::runs`]); the others are counted in a log line.
fn judged_findings(
    source: &dyn crate::image::ImageSource,
    policy: &[String],
    reporter: &dyn Reporter,
) -> exit::Result<Vec<PlatformFindings>> {
    use crate::walk::contents::Record;
    // `[verify] ignore`, one pattern a line, as a .dockerignore reads them.
    let ignored = ignore::DockerIgnore::parse(&policy.join("\n")).map_err(Failure::usage)?;
    let contents = crate::walk::read_image(source, None)
        .map_err(|e| Failure::env(anyhow::anyhow!("verifying the image: {e}")))?;
    let mut out = Vec::new();
    for pc in contents.platforms {
        let mut findings = Vec::new();
        let mut not_judged: Vec<&str> = Vec::new();
        for (path, record) in &pc.files {
            let (info, mode) = match record {
                Record::Elf { info, mode } => (Some(info.as_ref()), *mode),
                Record::Corrupt { mode, .. } => (None, *mode),
            };
            let found: Vec<Finding> = match (record, info) {
                (Record::Elf { .. }, Some(info)) => crate::elf::check(info, &pc.platform)
                    .into_iter()
                    .map(|f| f.at(path))
                    .collect(),
                (Record::Corrupt { error, .. }, _) => vec![Finding::corrupt(path, error)],
                _ => Vec::new(),
            };
            let (stopping, waved): (Vec<Finding>, Vec<Finding>) =
                found.into_iter().partition(|f| judge::stops(f.kind, info));
            if stopping.is_empty() {
                if !waved.is_empty() {
                    not_judged.push(path);
                }
                continue;
            }
            if judge::runs(path, info, mode) && !ignored.is_excluded(path.trim_start_matches('/')) {
                findings.extend(stopping);
            } else {
                not_judged.push(path);
            }
        }
        if let Some(first) = not_judged.first() {
            reporter.line(&format!(
                "{}: {} ELF file(s) for other platforms that nothing runs or loads (objects, \
                 files without an execute bit, data under /usr/share, [verify] ignore), or \
                 libraries with code for newer ARM CPUs they choose at run time, were not \
                 judged (e.g. {first})",
                pc.platform,
                not_judged.len()
            ));
        }
        out.push(PlatformFindings {
            platform: pc.platform,
            findings,
        });
    }
    Ok(out)
}

/// Every ELF file of every platform's final image that the platform runs ([`judge`]) against
/// the platform; a finding stops the build (exit 1) with where the file came from.
fn verify(inputs: &Inputs, daemonless: &Daemonless, assembled: &Assembled) -> Result<(), Stopped> {
    let (job, host, reporter) = (&inputs.job, inputs.host, inputs.reporter);
    let (graphs, built) = (daemonless.graphs, daemonless.built);
    let (dockerfile, build_args) = (inputs.name.as_str(), &inputs.build_args);
    let source =
        crate::image::LayoutSource::open(assembled.layout.root(), Some(&assembled.names[0]))
            .map_err(|e| Failure::env(anyhow::anyhow!("reading back the image: {e}")))?;
    let report = judged_findings(&source, &job.project.verify_ignore, reporter)?;
    if report.iter().all(|p| p.findings.is_empty()) {
        return Ok(());
    }
    let mut lines = Vec::new();
    let mut by_platform: BTreeMap<Platform, Vec<Finding>> = BTreeMap::new();
    for pr in report {
        let Some(i) = graphs.iter().position(|(p, _)| *p == pr.platform) else {
            // Built by an engine: no graph to say where a file came from.
            for mut f in pr.findings {
                f.message = format!(
                    "{} in {}: {}",
                    f.path.trim_start_matches('/'),
                    pr.platform,
                    f.message
                );
                lines.push(f.message.clone());
                by_platform.entry(pr.platform).or_default().push(f);
            }
            continue;
        };
        let (p, graph) = &graphs[i];
        let image = &built[i];
        let provenance = provenance::Provenance {
            target: *p,
            build: host,
            graph,
            layers: &image.layers,
            build_args,
            base: image.base.as_ref().map(|b| b.written.as_str()),
            dockerfile,
        };
        for mut f in pr.findings {
            f.message = provenance.explain(&f);
            lines.push(f.message.clone());
            by_platform.entry(*p).or_default().push(f);
        }
    }
    let platforms = assembled
        .platforms
        .iter()
        .map(|r| PlatformResult {
            platform: r.platform,
            strategy: r.strategy,
            toolchain: r.toolchain.clone(),
            runner: r.runner.clone(),
            build_image: None,
            seconds: r.seconds,
            cached: r.cached,
            files: Vec::new(),
            findings: by_platform.remove(&r.platform).unwrap_or_default(),
            manifest: None,
            base_manifest: r.base_manifest.clone(),
            steps: r.steps.clone(),
        })
        .collect();
    let report = Metadata {
        name: job.project.name.clone(),
        index_digest: None,
        output: None,
        tags: job.tags.iter().map(|t| t.to_string()).collect(),
        platforms,
        pushed: Vec::new(),
        loaded: None,
        reused_layers: Vec::new(),
        git: job.git.clone(),
        ok: false,
    };
    publish::write_metadata(job, &report)?;
    Err(Stopped::Rejected(Box::new(super::Rejected {
        report,
        failure: Failure::check(anyhow::anyhow!(
            "verification failed; nothing was written or pushed:\n  {}",
            lines.join("\n  ")
        )),
    })))
}

/// The verified layout where `--output` sends it: a layout output gets a copy (blobs, index
/// and names); archives are written from the work layout by the publish stage.
fn place_output(job: &Job, assembled: Assembled) -> exit::Result<Assembled> {
    let Output::Layout(dir) = &job.output else {
        return Ok(assembled);
    };
    if let Some(state) = &job.state_dir {
        super::assemble::ignore_itself(state)?;
    }
    let out = OciLayout::create(dir).map_err(Failure::env)?;
    let from = assembled.layout.root().join("blobs").join("sha256");
    let entries = std::fs::read_dir(&from)
        .map_err(|e| Failure::env(anyhow::anyhow!("{}: {e}", from.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| Failure::env(anyhow::anyhow!("{}: {e}", from.display())))?;
        let name = entry.file_name().to_string_lossy().to_string();
        let digest = format!("sha256:{name}");
        if out.has_blob(&digest).map_err(Failure::env)? {
            continue;
        }
        let size = entry
            .metadata()
            .map_err(|e| Failure::env(anyhow::anyhow!("{}: {e}", entry.path().display())))?
            .len();
        let mut f = std::fs::File::open(entry.path())
            .map_err(|e| Failure::env(anyhow::anyhow!("{}: {e}", entry.path().display())))?;
        out.copy_blob(&digest, size, "the build", &mut f)
            .map_err(Failure::env)?;
    }
    for n in &assembled.names {
        out.tag(&assembled.index, n).map_err(Failure::env)?;
    }
    Ok(Assembled {
        layout: out,
        ..assembled
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_with_a_dockerfile_and_no_project_file_is_a_dockerfile_build() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("My_App");
        std::fs::create_dir(&dir).unwrap();
        let request = Request {
            dir: dir.clone(),
            ..Request::default()
        };
        let err = find(&request).unwrap_err();
        assert!(err.error.to_string().contains("neither"), "{}", err.error);
        std::fs::write(dir.join("Dockerfile"), "FROM scratch\n").unwrap();
        let BuildSource::Dockerfile { project, file } = find(&request).unwrap() else {
            panic!("not a Dockerfile build");
        };
        assert_eq!(file, dir.join("Dockerfile"));
        assert_eq!(project.name, "my_app");
        assert_eq!(project.platforms.len(), 1, "the host's platform");
    }

    #[test]
    fn a_project_file_names_its_dockerfile_and_refuses_dash_f_otherwise() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join("rcross.toml"),
            "[image]\nname = \"app\"\nplatforms = [\"linux/arm64\"]\ndockerfile = \"build/Dockerfile\"\n",
        )
        .unwrap();
        let request = Request {
            dir: t.path().to_path_buf(),
            ..Request::default()
        };
        let BuildSource::Dockerfile { project, file } = find(&request).unwrap() else {
            panic!("not a Dockerfile build");
        };
        assert_eq!(file, t.path().join("build/Dockerfile"));
        assert_eq!(project.platforms, ["linux/arm64".parse().unwrap()]);
        std::fs::write(
            t.path().join("rcross.toml"),
            "[image]\nname = \"app\"\nplatforms = [\"linux/arm64\"]\n[build]\ncommand = \"make\"\n\
             [[artifact]]\nfrom = \"app\"\nto = \"/app\"\n",
        )
        .unwrap();
        assert!(matches!(find(&request).unwrap(), BuildSource::Project(_)));
        let request = Request {
            dockerfile: Some(t.path().join("Dockerfile")),
            ..request
        };
        let err = find(&request).unwrap_err();
        assert!(err.error.to_string().contains("remove -f"), "{}", err.error);
    }
}
