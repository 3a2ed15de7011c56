//! Stage 1, resolve: the project file, the command line and the checkout's git facts become one
//! [`Job`] (platforms, tags, outputs, the build's settings); the base image becomes a [`Base`]
//! resolved for every platform. Nothing here builds, connects to an engine or writes a file.

use super::base::{self, BasePlatform};
use super::config::{self, ContainerPolicy, Project};
use super::Reporter;
use crate::exit::{self, Failure};
use crate::image::ImageSource;
use crate::oci::{self, Compressor};
use crate::platform::Platform;
use crate::registry::{open_image, Client, Mirrors, Reference};
use crate::tags::Computed;
use crate::toolchain::plan::Lang;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the command line asks of a build, beyond the project file (the flags of `rcross
/// build`, parsed by the command layer no further than into these values).
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The project directory (holding rcross.toml), or a Dockerfile build's context.
    pub dir: PathBuf,
    /// `-f`: build from this Dockerfile (see [`super::dockerfile::find`]).
    pub dockerfile: Option<PathBuf>,
    /// `--target`: the Dockerfile stage to build (default: the last).
    pub target: Option<String>,
    /// `--secret id=ID,src=FILE|env=VAR`, as written.
    pub secrets: Vec<String>,
    /// `--platform`; empty: the project's platforms.
    pub platforms: Vec<Platform>,
    /// `-t REF`, as written.
    pub tags: Vec<String>,
    pub push: bool,
    pub load: bool,
    /// `--output oci:DIR|oci-archive:FILE|docker-archive:FILE`; default: the project's
    /// `.rcross/oci` layout.
    pub output: Option<String>,
    pub metadata_file: Option<PathBuf>,
    pub digest_file: Option<PathBuf>,
    /// `--build-arg KEY=VALUE`, as written.
    pub build_args: Vec<String>,
    /// `--compression`: gzip or zstd.
    pub compression: String,
    /// `--compression-level`: the compressor's default when `None`.
    pub compression_level: Option<i32>,
    /// `--cache-from REF`, as written.
    pub cache_from: Vec<String>,
    /// `-j`: builds at once; default: every platform at once.
    pub jobs: Option<usize>,
    pub no_cache: bool,
    /// Plain HTTP for the registries of the tags (and of the base).
    pub insecure: bool,
    /// `--builder PLATFORM=ENDPOINT`, as written.
    pub builders: Vec<String>,
    /// `--container auto|always|never`.
    pub container: Option<String>,
    /// `--build-image`: overrides `[build] image`.
    pub build_image: Option<String>,
    /// `--engine ENDPOINT|chroot`.
    pub engine: Option<String>,
    pub retry_timeout: Duration,
    /// The tag policy's flags.
    pub tag_policy: crate::tags::Overrides,
    /// `SOURCE_DATE_EPOCH` as the process has it (used outside a git work tree).
    pub source_date_epoch: Option<String>,
    /// Where the user's toolchain and handler files are, and binfmt_misc.
    pub toolchain_dir: PathBuf,
    pub binfmt_dir: PathBuf,
    pub binfmt_misc: PathBuf,
}

/// Where the image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Layout(PathBuf),
    OciArchive(PathBuf),
    DockerArchive(PathBuf),
}

/// The build to do: every decision that needs only the project, the flags and git.
#[derive(Debug, Clone)]
pub struct Job {
    /// The project, with `--build-image` applied and git's labels and annotations added
    /// where the file sets none.
    pub project: Project,
    /// The project directory.
    pub dir: PathBuf,
    pub platforms: Vec<Platform>,
    pub lang: Lang,
    pub tags: Vec<Reference>,
    /// The `--output` as written (or the default), for messages and the report.
    pub output_text: String,
    pub output: Output,
    /// The project's `.rcross/` when the output is the default layout inside it: the assemble
    /// stage gives it a `.gitignore` holding `*`, so it never shows up as untracked.
    pub state_dir: Option<PathBuf>,
    pub epoch: u64,
    pub compression: Compressor,
    /// `--build-arg`s, added to every platform's environment.
    pub build_args: Vec<(String, String)>,
    pub policy: ContainerPolicy,
    /// `[builders]` with the `--builder`s over them.
    pub builders: BTreeMap<Platform, String>,
    pub engine: Option<String>,
    pub binfmt_misc: PathBuf,
    /// Builds at once (at least 1).
    pub jobs: usize,
    /// Whether host builds go through the build cache.
    pub cache: bool,
    pub push: bool,
    pub load: bool,
    /// Reused layers are stored in the output (an explicit `--output`) rather than only noted.
    pub store_reused: bool,
    pub cache_from: Vec<Reference>,
    pub insecure: bool,
    pub retry_timeout: Duration,
    pub metadata_file: Option<PathBuf>,
    pub digest_file: Option<PathBuf>,
    /// What the git checkout gave.
    pub git: Option<Computed>,
}

/// The project file, with `--build-image` over `[build] image` (a layout named on the command
/// line is relative to the working directory).
pub fn load_project(request: &Request) -> exit::Result<Project> {
    let mut project = config::load(&request.dir).map_err(Failure::usage)?;
    if let Some(image) = &request.build_image {
        project.build.image = Some(match image.strip_prefix("oci:") {
            Some(rest) if Path::new(rest).is_relative() => {
                let cwd = std::env::current_dir().map_err(|e| {
                    Failure::env(anyhow::anyhow!("cannot read the working directory: {e}"))
                })?;
                format!("oci:{}", cwd.join(rest).display())
            }
            _ => image.clone(),
        });
    }
    Ok(project)
}

/// The platforms to build: `--platform`, else the project's.
pub fn platforms(project: &Project, request: &Request) -> Vec<Platform> {
    if request.platforms.is_empty() {
        project.platforms.clone()
    } else {
        request.platforms.clone()
    }
}

/// The language the planner looks for (`auto`: what the build's working directory holds).
pub fn lang(project: &Project, dir: &Path) -> exit::Result<Lang> {
    crate::toolchain::resolve_lang(&project.build.lang, &dir.join(&project.build.workdir))
        .map_err(|e| Failure::usage(anyhow::anyhow!(e)))
}

/// Stage 1: the project, the flags and git's facts → the job. Logs what git gave.
pub fn resolve(
    mut project: Project,
    request: &Request,
    git: Option<Computed>,
    reporter: &dyn Reporter,
) -> exit::Result<Job> {
    let platforms = platforms(&project, request);
    let lang = lang(&project, &request.dir)?;
    let mut tag_args = request.tags.clone();
    if let Some(computed) = &git {
        for r in &computed.references {
            if !tag_args.contains(r) {
                tag_args.push(r.clone());
            }
        }
        // What rcross.toml sets explicitly wins.
        for (k, v) in &computed.labels {
            let image = &mut project.image;
            image.labels.entry(k.clone()).or_insert_with(|| v.clone());
            image
                .annotations
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        reporter.line(&git_line(computed));
    }
    let tags = parse_tags(&tag_args)?;
    let state_dir = request
        .output
        .is_none()
        .then(|| request.dir.join(".rcross"));
    let output_text = match &request.output {
        Some(o) => o.clone(),
        None => format!("oci:{}", request.dir.join(".rcross/oci").display()),
    };
    let output = parse_output(&output_text, &platforms)?;
    if request.push && tags.is_empty() {
        return Err(Failure::usage(anyhow::anyhow!(
            "--push needs at least one -t REGISTRY/REPO:TAG (or --image REGISTRY/REPO, [tags] \
             images, to tag from git)"
        )));
    }
    let build_args = parse_build_args(&request.build_args)?;
    // SOURCE_DATE_EPOCH when set, else the commit time in a git work tree, else 0.
    let epoch = match &git {
        Some(computed) => computed.source_date_epoch,
        None => {
            oci::source_date_epoch(request.source_date_epoch.as_deref()).map_err(Failure::usage)?
        }
    };
    let compression = parse_compression(&request.compression, request.compression_level)?;
    let cache_from = request
        .cache_from
        .iter()
        .map(|r| {
            r.parse::<Reference>()
                .map_err(|e| Failure::usage(anyhow::anyhow!("--cache-from {r}: {e}")))
        })
        .collect::<exit::Result<Vec<_>>>()?;
    let mut builders = project.builders.clone();
    for b in &request.builders {
        let (p, endpoint) = parse_builder(b)?;
        builders.insert(p, endpoint);
    }
    let policy = match &request.container {
        Some(c) => c
            .parse::<ContainerPolicy>()
            .map_err(|e| Failure::usage(anyhow::anyhow!("--container: {e}")))?,
        None => project.build.container,
    };
    check_build_image(&project, policy, &builders)?;
    // Every platform at once unless `-j` says otherwise, as buildx builds every platform of a
    // build concurrently: a platform waiting for a free core is wall time nothing buys back
    // (the compilers share the cores either way).
    let jobs = request.jobs.unwrap_or(platforms.len()).max(1);
    Ok(Job {
        cache: !request.no_cache && project.build.cache,
        project,
        dir: request.dir.clone(),
        platforms,
        lang,
        tags,
        output_text,
        output,
        state_dir,
        epoch,
        compression,
        build_args,
        policy,
        builders,
        engine: request.engine.clone(),
        binfmt_misc: request.binfmt_misc.clone(),
        jobs,
        push: request.push,
        load: request.load,
        store_reused: request.output.is_some(),
        cache_from,
        insecure: request.insecure,
        retry_timeout: request.retry_timeout,
        metadata_file: request.metadata_file.clone(),
        digest_file: request.digest_file.clone(),
        git,
    })
}

/// The log line saying what git gave.
fn git_line(computed: &Computed) -> String {
    format!(
        "git: version {}, commit {}{}, SOURCE_DATE_EPOCH {}{}",
        computed.version,
        computed.commit,
        if computed.dirty { " (dirty)" } else { "" },
        computed.source_date_epoch,
        if computed.references.is_empty() {
            String::new()
        } else {
            format!(", tags {}", computed.tags.join(" "))
        }
    )
}

/// Containers for every platform, and remote builders, need an image to build in.
fn check_build_image(
    project: &Project,
    policy: ContainerPolicy,
    builders: &BTreeMap<Platform, String>,
) -> exit::Result<()> {
    // A Dockerfile build needs none: the engines build the Dockerfile itself.
    if project.build.image.is_some() || project.dockerfile.is_some() {
        return Ok(());
    }
    if policy == ContainerPolicy::Always {
        return Err(Failure::usage(anyhow::anyhow!(
            "containers for every platform (--container or [build] container = \"always\") need [build] image in {} (or --build-image): the image the build runs in",
            project.path.display()
        )));
    }
    if !builders.is_empty() {
        return Err(Failure::usage(anyhow::anyhow!(
            "a builder ([builders] or --builder) runs the build in a container of [build] image; set it in {} (or pass --build-image)",
            project.path.display()
        )));
    }
    Ok(())
}

/// The reading of reusable layers the command line alone asks for (`--push`, the `-t` tags,
/// `--cache-from`, the compression), before git is read; `None` when a flag does not parse
/// (the job's resolution reports it).
pub fn early_reuse_reading(request: &Request) -> Option<super::assemble::ReuseReading> {
    if !request.push {
        return None;
    }
    Some(super::assemble::ReuseReading {
        tags: parse_tags(&request.tags).ok()?,
        cache_from: request
            .cache_from
            .iter()
            .map(|r| r.parse::<Reference>().ok())
            .collect::<Option<Vec<_>>>()?,
        compression: parse_compression(&request.compression, request.compression_level).ok()?,
        insecure: request.insecure,
        retry_timeout: request.retry_timeout,
    })
}

fn parse_tags(tags: &[String]) -> exit::Result<Vec<Reference>> {
    tags.iter()
        .map(|t| {
            let r: Reference = t.parse().map_err(Failure::usage)?;
            if r.digest.is_some() {
                return Err(Failure::usage(anyhow::anyhow!(
                    "-t {t}: a tag cannot carry a digest"
                )));
            }
            Ok(r)
        })
        .collect()
}

fn parse_output(output: &str, platforms: &[Platform]) -> exit::Result<Output> {
    if let Some(d) = output.strip_prefix("oci:") {
        return Ok(Output::Layout(PathBuf::from(d)));
    }
    if let Some(f) = output.strip_prefix("oci-archive:") {
        return Ok(Output::OciArchive(PathBuf::from(f)));
    }
    if let Some(f) = output.strip_prefix("docker-archive:") {
        if platforms.len() != 1 {
            let list: Vec<String> = platforms.iter().map(Platform::to_string).collect();
            return Err(Failure::usage(anyhow::anyhow!(
                "--output docker-archive:{f} holds one platform (`docker load` cannot read a \
                 multi-platform index), but {} are requested ({}); pick one with --platform \
                 {}, or use oci-archive:FILE for all of them",
                platforms.len(),
                list.join(", "),
                list.first().map_or("linux/amd64", String::as_str)
            )));
        }
        return Ok(Output::DockerArchive(PathBuf::from(f)));
    }
    Err(Failure::usage(anyhow::anyhow!(
        "--output {output:?}: use oci:DIR, oci-archive:FILE or docker-archive:FILE"
    )))
}

fn parse_build_args(args: &[String]) -> exit::Result<Vec<(String, String)>> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(Failure::usage(anyhow::anyhow!(
                "--build-arg {a:?}: use KEY=VALUE"
            ))),
        })
        .collect()
}

/// `--compression` and `--compression-level`: gzip 1–9 (default 6, as docker and buildx),
/// zstd 1–19 (default 3, zstd's own).
fn parse_compression(compression: &str, level: Option<i32>) -> exit::Result<Compressor> {
    let (range, default) = match compression {
        "gzip" => (1..=9, 6),
        "zstd" => (1..=19, 3),
        other => {
            return Err(Failure::usage(anyhow::anyhow!(
                "--compression {other:?}: use gzip or zstd"
            )))
        }
    };
    let level = level.unwrap_or(default);
    if !range.contains(&level) {
        return Err(Failure::usage(anyhow::anyhow!(
            "--compression-level {level}: {compression} levels are {} (fastest) to {} \
             (smallest); {default} is the default",
            range.start(),
            range.end()
        )));
    }
    Ok(match compression {
        "zstd" => Compressor::Zstd { level },
        _ => Compressor::Gzip {
            level: level.unsigned_abs(),
        },
    })
}

/// `--builder PLATFORM=ENDPOINT`.
pub fn parse_builder(arg: &str) -> exit::Result<(Platform, String)> {
    let (p, endpoint) = arg.split_once('=').ok_or_else(|| {
        Failure::usage(anyhow::anyhow!(
            "--builder {arg:?}: use PLATFORM=ENDPOINT, e.g. linux/arm64=ssh://me@arm-box"
        ))
    })?;
    let p: Platform = p
        .parse()
        .map_err(|e| Failure::usage(anyhow::anyhow!("--builder {arg:?}: {e}")))?;
    config::check_endpoint(endpoint)
        .map_err(|e| Failure::usage(anyhow::anyhow!("--builder {arg:?}: {e}")))?;
    Ok((p, endpoint.to_string()))
}

/// A registry client for `registries` over plain HTTP when `insecure` (loopback registries
/// always are), with credentials from the Docker config file.
pub(super) fn registry_client(
    registries: impl IntoIterator<Item = String>,
    insecure: bool,
    retry_timeout: Duration,
) -> exit::Result<Client> {
    let insecure: Vec<String> = if insecure {
        registries.into_iter().collect()
    } else {
        Vec::new()
    };
    Client::from_environment_with(&insecure, retry_timeout).map_err(Failure::usage)
}

/// The base image (`image.base`), not yet read.
pub struct BaseImage {
    pub source: Box<dyn ImageSource>,
    /// The registry reference, for a registry base.
    pub reference: Option<Reference>,
    /// `org.opencontainers.image.base.name`: the reference as written, for registry bases only
    /// (a layout path is machine-specific and would make the image differ between machines).
    pub name: Option<String>,
}

/// The base image, resolved for every platform.
pub struct Base {
    pub image: BaseImage,
    pub parts: Vec<BasePlatform>,
}

impl Base {
    /// The base's part for platform `p`.
    pub fn part(&self, p: Platform) -> Option<&BasePlatform> {
        self.parts.iter().find(|part| part.platform == p)
    }
}

/// What `image.base` names: `None` for scratch, else a layout (relative to the project
/// directory) or a registry image.
pub fn open_base(job: &Job) -> exit::Result<Option<BaseImage>> {
    let project = &job.project;
    let spec = project.base.trim();
    if spec == "scratch" {
        return Ok(None);
    }
    if let Some(rest) = spec.strip_prefix("oci:") {
        let full = format!("oci:{}", job.dir.join(rest).display());
        let layout = crate::image::LayoutSource::from_spec(&full)
            .map_err(|e| Failure::usage(base_field(project, &e)))?;
        return Ok(Some(BaseImage {
            source: Box::new(layout),
            reference: None,
            name: None,
        }));
    }
    let reference: Reference = spec.parse().map_err(|e| {
        Failure::usage(base_field(
            project,
            &format!("{e}; use \"scratch\", REGISTRY/REPO:TAG or oci:DIR[:REF]"),
        ))
    })?;
    let client = registry_client(
        [reference.registry.clone()],
        job.insecure,
        job.retry_timeout,
    )?;
    // Read from the first mirror of the registries file that has it (none: as written).
    let mirrors = Mirrors::load().map_err(Failure::usage)?;
    let opened = open_image(&client, &reference, &mirrors).map_err(|e| Failure {
        code: e.exit_code(),
        error: base_field(project, &e),
    })?;
    Ok(Some(BaseImage {
        source: Box::new(opened.image),
        // Where it is read from: a push to that registry mounts its layers from there.
        reference: Some(opened.served_by.reference),
        name: Some(spec.to_string()),
    }))
}

fn base_field(project: &Project, e: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: image.base = {:?}: {e}",
        project.path.display(),
        project.base.trim()
    )
}

/// The base image read for every platform of the job (stage 1, continued).
pub fn resolve_base(
    job: &Job,
    image: Option<BaseImage>,
    reporter: &dyn Reporter,
) -> exit::Result<Option<Base>> {
    let Some(image) = image else {
        return Ok(None);
    };
    reporter.line(&format!("resolving base image {}", image.source.describe()));
    let parts = base::resolve(image.source.as_ref(), &job.platforms).map_err(|e| {
        if e.is_transport() {
            Failure::env(base_field(&job.project, &e))
        } else {
            Failure::usage(base_field(&job.project, &e))
        }
    })?;
    for p in &parts {
        reporter.line(&format!(
            "[{}] base {} ({} layer(s))",
            p.platform,
            p.manifest,
            p.layers.len()
        ));
    }
    Ok(Some(Base { image, parts }))
}
