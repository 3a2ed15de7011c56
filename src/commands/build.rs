//! `rcross build`: plan each platform, run the project's build per platform in parallel with
//! that platform's environment, verify every ELF artifact, assemble a reproducible OCI image
//! index, write it to a layout and optionally push it.

use super::containers::{
    build_images, build_in_container, container_env, parse_builder, Runners, Tee,
};
use super::push::Pushed;
use crate::build::artifacts::{self, Placed};
use crate::build::base::{self, BasePlatform, BASE_DIGEST_ANNOTATION, BASE_NAME_ANNOTATION};
use crate::build::config::{self, ContainerPolicy, Project};
use crate::build::place::{self, Placement};
use crate::build::progress::Progress;
use crate::build::reuse;
use crate::cli::BuildArgs;
use crate::elf::Finding;
use crate::exit::{self, Failure};
use crate::host::linux::LinuxHost;
use crate::image::ImageSource;
use crate::oci::{
    self, Compression, FileSource, History, ImageSpec, LayerEntry, LayerOptions, OciLayout,
    RunConfig,
};
use crate::platform::Platform;
use crate::registry::PushOptions;
use crate::registry::Reference;
use crate::toolchain::plan::Strategy;
use crate::toolchain::render;
use crate::walk::{self, Found};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

/// One platform's build, as reported.
#[derive(Debug, Serialize)]
struct PlatformResult {
    platform: Platform,
    strategy: Strategy,
    toolchain: Option<String>,
    /// Where it was built: "host", "docker ENDPOINT", "chroot", "builder ENDPOINT".
    runner: String,
    /// The image it was built in, for container builds.
    #[serde(skip_serializing_if = "Option::is_none")]
    build_image: Option<String>,
    seconds: f64,
    /// Whether the output came from the build cache (the command did not run).
    cached: bool,
    files: Vec<String>,
    findings: Vec<Finding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    manifest: Option<String>,
    /// The base image's manifest this platform is built on.
    #[serde(skip_serializing_if = "Option::is_none")]
    base_manifest: Option<String>,
}

/// The `--json` output and `--metadata-file` content.
#[derive(Debug, Serialize)]
struct Metadata {
    name: String,
    index_digest: Option<String>,
    output: Option<String>,
    tags: Vec<String>,
    platforms: Vec<PlatformResult>,
    pushed: Vec<Pushed>,
    /// What `--load` put into the local engine.
    loaded: Option<super::load::Loaded>,
    /// Layers taken from a registry instead of compressed (see `crate::build::reuse`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reused_layers: Vec<ReusedLayer>,
    /// What the git checkout gave: version, tags, labels, SOURCE_DATE_EPOCH.
    #[serde(skip_serializing_if = "Option::is_none")]
    git: Option<crate::tags::Computed>,
    ok: bool,
}

/// A layer of this build that a registry already had: not compressed, not uploaded.
#[derive(Debug, Serialize)]
struct ReusedLayer {
    platform: Platform,
    digest: String,
    from: String,
    /// Whether the blob is in the output (else only the registry has it).
    stored: bool,
}

/// A build step that failed for one platform.
#[derive(Debug)]
pub(super) struct StepFailure {
    pub(super) platform: Platform,
    pub(super) message: String,
}

/// Progress goes to stderr, one line per event; stdout is reserved for the result.
pub(super) fn log(msg: impl AsRef<str>) {
    eprintln!("{}", msg.as_ref());
}

pub fn run(args: BuildArgs, json: bool) -> exit::Result<u8> {
    let host = LinuxHost;
    let project_dir = args.dir.clone();
    let mut project = config::load(&project_dir).map_err(Failure::usage)?;
    if let Some(image) = &args.build_image {
        // A layout named on the command line is relative to the working directory.
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
    let platforms = if args.platforms.is_empty() {
        project.platforms.clone()
    } else {
        super::parse_platforms(&args.platforms)?
    };
    // The tag policy and the labels come from the git checkout the project is in. Its `git`
    // processes run while the host is probed and the build is planned (neither needs them).
    let git_facts = {
        let (dir, file, policy) = (
            project_dir.clone(),
            project.tags.clone(),
            args.tag_policy.overrides(),
        );
        std::thread::spawn(move || crate::tags::compute_for(&dir, &file, &policy, false))
    };
    // Plan: every platform must build natively or with a cross toolchain.
    let lang = crate::toolchain::resolve_lang(
        &project.build.lang,
        &project_dir.join(&project.build.workdir),
    )
    .map_err(|e| Failure::usage(anyhow::anyhow!(e)))?;
    // Only the facts this build needs: probing every tool costs up to seconds on some hosts.
    let scope = crate::toolchain::Scope {
        platforms: Some(&platforms),
        lang: Some(lang),
    };
    let (catalog, _handlers, facts) = super::load_toolchains(&host, &args.paths, scope)?;
    let plan =
        crate::toolchain::plan::plan(&facts, &catalog, &platforms, lang).map_err(Failure::usage)?;
    let git = match git_facts
        .join()
        .map_err(|_| Failure::from(anyhow::anyhow!("reading the git facts panicked")))?
    {
        Ok(crate::tags::Checkout::Computed(c)) => Some(c),
        Ok(crate::tags::Checkout::NotGit) => None,
        Ok(crate::tags::Checkout::Unreadable(e)) => {
            log(format!(
                "warning: no git facts for the build (labels, SOURCE_DATE_EPOCH): {e}"
            ));
            None
        }
        Err(e) => {
            return Err(Failure {
                code: e.exit_code(),
                error: e.into(),
            })
        }
    };
    let mut tag_args = args.tags.clone();
    if let Some(computed) = &git {
        for r in &computed.references {
            if !tag_args.contains(r) {
                tag_args.push(r.clone());
            }
        }
        // What rcross.toml sets explicitly wins.
        for (k, v) in &computed.labels {
            project
                .image
                .labels
                .entry(k.clone())
                .or_insert_with(|| v.clone());
            project
                .image
                .annotations
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        log(format!(
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
        ));
    }
    let tags = parse_tags(&tag_args)?;
    let output = match &args.output {
        Some(o) => o.clone(),
        None => format!("oci:{}", project_dir.join(".rcross/oci").display()),
    };
    let target = parse_output(&output, &platforms)?;
    let base = resolve_base(
        &project,
        &project_dir,
        &platforms,
        args.insecure,
        args.retry.retry_timeout,
    )?;
    if args.push && tags.is_empty() {
        return Err(Failure::usage(anyhow::anyhow!(
            "--push needs at least one -t REGISTRY/REPO:TAG (or --image REGISTRY/REPO, [tags] \
             images, to tag from git)"
        )));
    }
    // --load: the platform to load is decided, and the engine reached, before anything builds.
    let loader = args
        .load
        .then(|| super::load::prepare(&platforms))
        .transpose()?;
    let build_args = parse_build_args(&args.build_args)?;
    // SOURCE_DATE_EPOCH when set, else the commit time in a git work tree, else 0.
    let epoch = match &git {
        Some(computed) => computed.source_date_epoch,
        None => oci::source_date_epoch(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref())
            .map_err(Failure::usage)?,
    };
    let compression = match args.compression.as_str() {
        "gzip" => Compression::Gzip { level: 6 },
        "zstd" => Compression::Zstd { level: 3 },
        other => {
            return Err(Failure::usage(anyhow::anyhow!(
                "--compression {other:?}: use gzip or zstd"
            )))
        }
    };
    // Read what the registry already has while the platforms build.
    let reuse = start_reuse(&args, &tags, compression)?;

    // Place every platform: host toolchain, build container (here, emulated when foreign) or
    // a remote builder.
    let mut builders = project.builders.clone();
    for b in &args.builders {
        let (p, endpoint) = parse_builder(b)?;
        builders.insert(p, endpoint);
    }
    let policy = match &args.container {
        Some(c) => c
            .parse::<ContainerPolicy>()
            .map_err(|e| Failure::usage(anyhow::anyhow!("--container: {e}")))?,
        None => project.build.container,
    };
    let settings = place::Settings {
        policy,
        image: project.build.image.as_deref(),
        builders: &builders,
    };
    if policy == ContainerPolicy::Always && settings.image.is_none() {
        return Err(Failure::usage(anyhow::anyhow!(
            "containers for every platform (--container or [build] container = \"always\") need [build] image in {} (or --build-image): the image the build runs in",
            project.path.display()
        )));
    }
    if !builders.is_empty() && settings.image.is_none() {
        return Err(Failure::usage(anyhow::anyhow!(
            "a builder ([builders] or --builder) runs the build in a container of [build] image; set it in {} (or pass --build-image)",
            project.path.display()
        )));
    }
    let mut placements = Vec::new();
    let mut blocked = Vec::new();
    for item in &plan {
        let handler = facts
            .target(&item.platform)
            .is_some_and(|t| t.handler.is_some());
        match place::place(item, facts.host, handler, &settings) {
            Ok(pl) => placements.push(pl),
            Err(b) => blocked.push(b.to_string()),
        }
    }
    if !blocked.is_empty() {
        return Err(Failure::env(anyhow::anyhow!(
            "cannot build every platform:\n  {}",
            blocked.join("\n  ")
        )));
    }
    let images = build_images(&project, &project_dir, &plan, &placements)?;
    let runners = Runners::connect(
        &plan,
        &placements,
        args.engine.as_deref(),
        &args.paths.host.binfmt_misc,
    )?;

    // Build every platform, in parallel, each into its own empty output directory.
    let work = tempfile::Builder::new()
        .prefix("rcross-build")
        .tempdir()
        .map_err(|e| Failure::env(anyhow::anyhow!("cannot create a build directory: {e}")))?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let mut envs = Vec::new();
    for (item, placement) in plan.iter().zip(&placements) {
        let p = item.platform;
        let spec = catalog.get(&p).ok_or_else(|| {
            Failure::usage(anyhow::anyhow!("rcross has no toolchain data for {p}"))
        })?;
        let vars = if *placement == Placement::Host {
            render::env_vars(&super::env_input(&host, &catalog, &facts, p, None)?)
        } else {
            container_env(spec)
        };
        let mut vars = vars;
        vars.extend(build_args.iter().cloned());
        envs.push((item, placement, vars));
    }
    // The build cache answers host builds (container, chroot and remote builds are not
    // cached: what they see is not only what this host can digest).
    let cache = cache_for(&args, &project, &project_dir);
    let cache_uses: Mutex<Vec<(Platform, crate::build::cache::CacheUse)>> = Mutex::new(Vec::new());
    let queue = Mutex::new(envs.iter().rev().collect::<Vec<_>>());
    let results: Mutex<Vec<(Platform, Result<f64, StepFailure>)>> = Mutex::new(Vec::new());
    let workdir = project_dir.join(&project.build.workdir);
    let started = Instant::now();
    let progress = crate::build::progress::Progress::new(&platforms);
    std::thread::scope(|s| {
        for _ in 0..jobs.min(envs.len()) {
            s.spawn(|| loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some((item, placement, vars)) = next else {
                    break;
                };
                let p = item.platform;
                let mut hit = false;
                let r = match placement {
                    Placement::Host => {
                        let what = format!(
                            "building ({}{})",
                            item.strategy,
                            item.toolchain
                                .as_ref()
                                .map(|t| format!(", {t}"))
                                .unwrap_or_default()
                        );
                        progress.start(p, &what);
                        let run = || {
                            build_one(
                                &project,
                                &workdir,
                                work.path(),
                                p,
                                vars,
                                epoch,
                                &progress,
                                &what,
                            )
                        };
                        match &cache {
                            Some((c, digest)) => {
                                let mut env = vars.clone();
                                env.push(("RCROSS_PLATFORM".into(), p.to_string()));
                                env.push(("SOURCE_DATE_EPOCH".into(), epoch.to_string()));
                                let req = crate::build::cache::Request {
                                    project_digest: digest,
                                    command: &project.build.command,
                                    workdir: &project.build.workdir,
                                    env: &env,
                                };
                                let (r, used) = crate::build::cache::run_cached(
                                    c,
                                    &req,
                                    &out_dir(work.path(), p),
                                    run,
                                );
                                hit = used == crate::build::cache::CacheUse::Hit;
                                if let Ok(mut u) = cache_uses.lock() {
                                    u.push((p, used));
                                }
                                r
                            }
                            None => run(),
                        }
                    }
                    _ => {
                        let runner = runners.get(placement);
                        let what = format!(
                            "building ({} in {} on {})",
                            runners.strategy(placement, p, item.strategy),
                            images.get(&p).map_or_else(String::new, |i| i.to_string()),
                            runners.describe(placement)
                        );
                        progress.start(p, &what);
                        build_in_container(
                            &project,
                            &project_dir,
                            out_dir(work.path(), p),
                            work.path().join(p.slug()).join("build.log"),
                            p,
                            vars,
                            epoch,
                            images.get(&p),
                            runner,
                            &progress,
                            &what,
                        )
                    }
                };
                match &r {
                    Ok(_) if hit => progress.finish(p, "cached"),
                    Ok(secs) => progress.finish(p, &format!("built in {secs:.1}s")),
                    Err(_) => progress.finish(p, "FAILED (details below)"),
                }
                if let Ok(mut res) = results.lock() {
                    res.push((p, r));
                }
            });
        }
    });
    drop(progress);
    let results = results.into_inner().unwrap_or_default();
    let mut cache_uses = cache_uses.into_inner().unwrap_or_default();
    cache_uses.sort_by_key(|(p, _)| p.to_string());
    for (p, used) in &cache_uses {
        use crate::build::cache::CacheUse;
        match used {
            CacheUse::Hit => log(format!("{p}: cached (the build command did not run)")),
            CacheUse::Miss => {}
            CacheUse::Corrupt(why) => log(format!(
                "{p}: the build cache entry was corrupt ({why}): removed and rebuilt"
            )),
            CacheUse::Error(e) => log(format!("{p}: {e}")),
        }
    }
    let mut failed: Vec<String> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().err())
        .map(|f| format!("{}: {}", f.platform, f.message))
        .collect();
    if !failed.is_empty() {
        failed.sort();
        return Err(Failure::check(anyhow::anyhow!(
            "the build failed for {} platform(s):\n{}",
            failed.len(),
            failed.join("\n")
        )));
    }
    log(format!(
        "built {} platform(s) in {:.1}s",
        plan.len(),
        started.elapsed().as_secs_f64()
    ));

    // Verify every artifact against its platform before anything is assembled.
    let mut per_platform: Vec<(PlatformResult, Vec<Placed>)> = Vec::new();
    for (item, placement) in plan.iter().zip(&placements) {
        let p = item.platform;
        let out = out_dir(work.path(), p);
        let placed =
            artifacts::resolve(&project.artifacts, &out, &p.to_string()).map_err(Failure::check)?;
        let mut findings = Vec::new();
        for a in &placed {
            match walk::classify_file(&a.source) {
                Found::Elf(info) => findings.extend(
                    crate::elf::check(&info, &p)
                        .into_iter()
                        .map(|f| f.at(&a.target)),
                ),
                Found::Corrupt(e) => findings.push(Finding::corrupt(&a.target, &e)),
                Found::Unreadable(e) => {
                    return Err(Failure::from(anyhow::anyhow!(
                        "cannot read {}: {e}",
                        a.source.display()
                    )))
                }
                Found::NotElf | Found::Symlink(_) => {}
            }
        }
        let seconds = results
            .iter()
            .find(|(q, _)| *q == p)
            .and_then(|(_, r)| r.as_ref().ok().copied())
            .unwrap_or(0.0);
        per_platform.push((
            PlatformResult {
                platform: p,
                strategy: runners.strategy(placement, p, item.strategy),
                toolchain: (*placement == Placement::Host)
                    .then(|| item.toolchain.clone())
                    .flatten(),
                runner: runners.describe(placement),
                build_image: images.get(&p).map(|i| i.to_string()),
                seconds,
                cached: cache_uses
                    .iter()
                    .any(|(q, u)| *q == p && *u == crate::build::cache::CacheUse::Hit),
                files: placed.iter().map(|a| a.target.clone()).collect(),
                findings,
                manifest: None,
                base_manifest: base.as_ref().and_then(|b| {
                    b.parts
                        .iter()
                        .find(|part| part.platform == p)
                        .map(|part| part.manifest.clone())
                }),
            },
            placed,
        ));
    }
    let bad: Vec<String> = per_platform
        .iter()
        .flat_map(|(r, _)| {
            r.findings
                .iter()
                .map(move |f| format!("{}: {}: {}", r.platform, f.path, f.message))
        })
        .collect();
    if !bad.is_empty() {
        let meta = Metadata {
            name: project.name.clone(),
            index_digest: None,
            output: None,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            platforms: per_platform.into_iter().map(|(r, _)| r).collect(),
            pushed: Vec::new(),
            loaded: None,
            reused_layers: Vec::new(),
            git: git.clone(),
            ok: false,
        };
        finish(&meta, json, args.metadata_file.as_deref())?;
        return Err(Failure::check(anyhow::anyhow!(
            "verification failed; nothing was assembled or pushed:\n{}",
            bad.join("\n")
        )));
    }

    // Assemble: the base's layers plus one layer, config and manifest per platform, one index.
    let layout_dir = match &target {
        Output::Layout(d) => d.clone(),
        Output::OciArchive(_) | Output::DockerArchive(_) => work.path().join("layout"),
    };
    let layout = OciLayout::create(&layout_dir).map_err(Failure::env)?;
    if let Some(b) = &base {
        copy_base_blobs(b, &layout)?;
    }
    let options = LayerOptions {
        compression,
        threads: 0,
        mtime: epoch,
    };
    let our_config = RunConfig {
        entrypoint: (!project.image.entrypoint.is_empty())
            .then(|| project.image.entrypoint.clone()),
        cmd: (!project.image.cmd.is_empty()).then(|| project.image.cmd.clone()),
        env: project.image.env.clone(),
        workdir: project.image.workdir.clone(),
        user: project.image.user.clone(),
        exposed_ports: project.image.ports.clone(),
        labels: project.image.labels.clone(),
    };
    let entries: Vec<Vec<LayerEntry>> = per_platform
        .iter()
        .map(|(_, placed)| layer_entries(placed))
        .collect();
    let platforms_built: Vec<Platform> = per_platform.iter().map(|(r, _)| r.platform).collect();
    let (layers, reused_layers) =
        write_layers(&layout, &entries, &options, &platforms_built, reuse, &args)?;
    let mut descriptors = Vec::new();
    for ((result, _), layer) in per_platform.iter_mut().zip(layers) {
        let ours = History {
            created: Some(oci::rfc3339_utc(epoch)),
            created_by: Some(format!("rcross build: {}", project.build.command)),
            // How this machine built it (native, cross, emulate) is not part of the image: the
            // same inputs must give the same digest on any machine. The log and
            // --metadata-file report it.
            comment: None,
            empty_layer: false,
        };
        let part = base
            .as_ref()
            .and_then(|b| b.parts.iter().find(|p| p.platform == result.platform));
        let mut annotations = BTreeMap::new();
        let spec = match part {
            None => ImageSpec {
                platform: result.platform,
                layers: vec![layer],
                history: vec![ours],
                run: our_config.clone(),
                created: epoch,
                annotations,
            },
            Some(part) => {
                annotations.insert(BASE_DIGEST_ANNOTATION.to_string(), part.manifest.clone());
                if let Some(name) = base.as_ref().and_then(|b| b.name.clone()) {
                    annotations.insert(BASE_NAME_ANNOTATION.to_string(), name);
                }
                let mut layers = part.layers.clone();
                layers.push(layer);
                let mut history = part.history.clone();
                history.push(ours);
                ImageSpec {
                    platform: result.platform,
                    layers,
                    history,
                    run: base::merge(&part.run, &our_config),
                    created: epoch,
                    annotations,
                }
            }
        };
        let d = layout.write_image(&spec).map_err(Failure::env)?;
        result.manifest = Some(d.digest.clone());
        descriptors.push(d);
    }
    let index = layout
        .write_index(&descriptors, &project.image.annotations)
        .map_err(Failure::env)?;
    let names: Vec<String> = if tags.is_empty() {
        vec!["latest".to_string()]
    } else {
        tags.iter()
            .map(|t| t.tag.clone().unwrap_or_else(|| "latest".into()))
            .collect()
    };
    for n in &names {
        layout.tag(&index, n).map_err(Failure::env)?;
    }
    match &target {
        Output::Layout(_) => {}
        Output::OciArchive(file) => {
            let f = create_file(file)?;
            let mut w = layout.write_archive(f).map_err(Failure::env)?;
            w.flush()
                .map_err(|e| Failure::env(anyhow::anyhow!("{}: {e}", file.display())))?;
        }
        Output::DockerArchive(file) => {
            let repo_tags = super::load::repo_tags(&tags, &project.name);
            let f = create_file(file)?;
            let mut w = layout
                .write_docker_archive(&descriptors[0], &repo_tags, std::io::BufWriter::new(f))
                .map_err(|e| Failure {
                    code: e.exit_code(),
                    error: anyhow::anyhow!("writing {}: {e}", file.display()),
                })?;
            w.flush()
                .map_err(|e| Failure::env(anyhow::anyhow!("{}: {e}", file.display())))?;
        }
    }
    log(format!("image index {} written to {output}", index.digest));
    let built: Vec<Platform> = per_platform.iter().map(|(r, _)| r.platform).collect();
    let loaded = super::load::after_build(
        loader.as_ref(),
        &layout,
        &built,
        &descriptors,
        &tags,
        &project.name,
    )?;

    // Push: per repository, blobs, manifests by digest, the index, then the tags.
    let mut pushed = Vec::new();
    if args.push {
        let insecure: Vec<String> = if args.insecure {
            tags.iter().map(|t| t.registry.clone()).collect()
        } else {
            Vec::new()
        };
        let client = super::registry_client(&insecure, args.retry.retry_timeout)?;
        let plan = layout.push_plan(&names[0]).map_err(Failure::env)?;
        for (repo, repo_tags) in super::push::by_repository(&tags) {
            log(format!(
                "pushing to {repo} (tags: {})",
                repo_tags.join(", ")
            ));
            // Base layers already in the same registry are mounted instead of uploaded.
            let mut push_options = PushOptions::default();
            if let Some(from) = base.as_ref().and_then(|b| b.reference.as_ref()) {
                if from.registry == repo.registry && from.repository != repo.repository {
                    push_options.mount_from = vec![from.repository.clone()];
                }
            }
            let report = client
                .push_image(&repo, &plan, &repo_tags, &push_options)
                .map_err(|e| Failure {
                    code: e.exit_code(),
                    error: e.into(),
                })?;
            log(format!(
                "pushed {}: {} blob(s) uploaded ({} bytes), {} already there, {} mounted",
                report.digest,
                report.blobs_uploaded,
                report.bytes_uploaded,
                report.blobs_present,
                report.blobs_mounted
            ));
            pushed.push(Pushed::new(&repo, &report));
        }
    }

    if let Some(file) = &args.digest_file {
        write_digest_file(file, &index.digest, &pushed)?;
    }

    let meta = Metadata {
        name: project.name.clone(),
        index_digest: Some(index.digest.clone()),
        output: Some(output),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        platforms: per_platform.into_iter().map(|(r, _)| r).collect(),
        pushed,
        loaded,
        reused_layers,
        git,
        ok: true,
    };
    finish(&meta, json, args.metadata_file.as_deref())?;
    Ok(exit::OK)
}

/// With --push: starts reading the tags being pushed and the --cache-from images for layers
/// the registry already has (see `crate::build::reuse`), in the background.
fn start_reuse(
    args: &BuildArgs,
    tags: &[Reference],
    compression: Compression,
) -> exit::Result<Option<reuse::Pending>> {
    if !args.push {
        return Ok(None);
    }
    let mut sources: Vec<reuse::ReuseSource> = tags
        .iter()
        .map(|t| reuse::ReuseSource {
            reference: t.clone(),
            cache_from: false,
        })
        .collect();
    for r in &args.cache_from {
        let reference: Reference = r
            .parse()
            .map_err(|e| Failure::usage(anyhow::anyhow!("--cache-from {r}: {e}")))?;
        sources.push(reuse::ReuseSource {
            reference,
            cache_from: true,
        });
    }
    let insecure: Vec<String> = if args.insecure {
        sources
            .iter()
            .map(|s| s.reference.registry.clone())
            .collect()
    } else {
        Vec::new()
    };
    let client = super::registry_client(&insecure, args.retry.retry_timeout)?;
    Ok(Some(reuse::start(client, sources, compression)))
}

/// One layer per platform (in `per_platform` order), reusing what the registry has when a reuse
/// map is being read; logs what was reused and where it is.
fn write_layers(
    layout: &OciLayout,
    entries: &[Vec<LayerEntry>],
    options: &LayerOptions,
    platforms: &[Platform],
    reuse: Option<reuse::Pending>,
    args: &BuildArgs,
) -> exit::Result<(Vec<oci::Layer>, Vec<ReusedLayer>)> {
    let reuser = match reuse {
        None => None,
        Some(pending) => {
            let (reuser, warnings) = pending.finish(args.output.is_some());
            for w in &warnings {
                log(format!("warning: {w}"));
            }
            if !reuser.map.is_empty() {
                log(format!(
                    "{} reusable layer(s) known from {}",
                    reuser.map.len(),
                    reuser.map.sources.join(", ")
                ));
            }
            Some(reuser)
        }
    };
    let mut warnings = Vec::new();
    let written = reuse::write_layers(layout, entries, options, reuser.as_ref(), &mut warnings)
        .map_err(Failure::env)?;
    for w in &warnings {
        log(format!("warning: {w}"));
    }
    let outcomes: Vec<&reuse::Outcome> = written.iter().map(|(_, o)| o).collect();
    for line in reuse::summary(&outcomes) {
        log(line);
    }
    let mut reused = Vec::new();
    let mut layers = Vec::new();
    for ((layer, outcome), platform) in written.into_iter().zip(platforms) {
        if let reuse::Outcome::Reused { from, stored } = outcome {
            reused.push(ReusedLayer {
                platform: *platform,
                digest: layer.digest.clone(),
                from: from.to_string(),
                stored,
            });
        }
        layers.push(layer);
    }
    Ok((layers, reused))
}

/// Where the image goes.
enum Output {
    Layout(PathBuf),
    OciArchive(PathBuf),
    DockerArchive(PathBuf),
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

fn create_file(file: &Path) -> exit::Result<std::fs::File> {
    std::fs::File::create(file)
        .map_err(|e| Failure::env(anyhow::anyhow!("cannot create {}: {e}", file.display())))
}

/// The base image, resolved for every platform.
struct Base {
    source: Box<dyn ImageSource>,
    /// The registry reference, for a registry base.
    reference: Option<Reference>,
    /// `org.opencontainers.image.base.name`: the reference as written, for registry bases only
    /// (a layout path is machine-specific and would make the image differ between machines).
    name: Option<String>,
    parts: Vec<BasePlatform>,
}

fn resolve_base(
    project: &Project,
    project_dir: &Path,
    platforms: &[Platform],
    insecure: bool,
    retry_timeout: std::time::Duration,
) -> exit::Result<Option<Base>> {
    let spec = project.base.trim();
    if spec == "scratch" {
        return Ok(None);
    }
    let field = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!("{}: image.base = {spec:?}: {e}", project.path.display())
    };
    let (source, reference): (Box<dyn ImageSource>, Option<Reference>) = if let Some(rest) =
        spec.strip_prefix("oci:")
    {
        // Relative layout paths are relative to the project directory.
        let full = format!("oci:{}", project_dir.join(rest).display());
        let layout = walk::OciLayout::from_spec(&full).map_err(|e| Failure::usage(field(&e)))?;
        (Box::new(layout), None)
    } else {
        let reference: Reference = spec.parse().map_err(|e| {
            Failure::usage(field(&format!(
                "{e}; use \"scratch\", REGISTRY/REPO:TAG or oci:DIR[:REF]"
            )))
        })?;
        let insecure = if insecure {
            vec![reference.registry.clone()]
        } else {
            Vec::new()
        };
        let client = super::registry_client(&insecure, retry_timeout)?;
        (
            Box::new(crate::registry::RegistryImage::new(
                client,
                reference.clone(),
            )),
            Some(reference),
        )
    };
    log(format!("resolving base image {}", source.describe()));
    let parts = base::resolve(source.as_ref(), platforms).map_err(|e| {
        if e.is_transport() {
            Failure::env(field(&e))
        } else {
            Failure::usage(field(&e))
        }
    })?;
    for p in &parts {
        log(format!(
            "[{}] base {} ({} layer(s))",
            p.platform,
            p.manifest,
            p.layers.len()
        ));
    }
    Ok(Some(Base {
        source,
        name: reference.as_ref().map(|_| spec.to_string()),
        reference,
        parts,
    }))
}

/// Copies the base's layers into the layout (streamed and digest-checked), so the layout is
/// self-contained; layers already there are not fetched again.
fn copy_base_blobs(base: &Base, layout: &OciLayout) -> exit::Result<()> {
    let from = base.source.describe();
    let mut copied = 0usize;
    for part in &base.parts {
        for layer in &part.layers {
            if layout.has_blob(&layer.digest).map_err(Failure::env)? {
                continue;
            }
            let mut reader = base
                .source
                .open_blob_sized(&layer.digest, layer.size)
                .map_err(|e| {
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
        log(format!("copied {copied} base layer(s) from {from}"));
    }
    Ok(())
}

/// `--digest-file`: the index digest, then `REGISTRY/REPO@DIGEST` per pushed repository.
fn write_digest_file(file: &Path, digest: &str, pushed: &[Pushed]) -> exit::Result<()> {
    let mut text = format!("{digest}\n");
    for p in pushed {
        text.push_str(&format!("{}@{}\n", p.repository, p.digest));
    }
    std::fs::write(file, text).map_err(|e| {
        Failure::env(anyhow::anyhow!(
            "cannot write digest file {}: {e}; the push itself succeeded",
            file.display()
        ))
    })
}

fn finish(meta: &Metadata, json: bool, metadata_file: Option<&Path>) -> exit::Result<()> {
    if let Some(f) = metadata_file {
        let text = serde_json::to_string_pretty(meta)?;
        std::fs::write(f, text + "\n")
            .map_err(|e| Failure::env(anyhow::anyhow!("cannot write {}: {e}", f.display())))?;
    }
    if json {
        super::print_json(meta)?;
    } else if let Some(d) = &meta.index_digest {
        println!("{d}");
    }
    Ok(())
}

/// The build cache and the project's digest, unless turned off (`--no-cache`, `[build] cache =
/// false`); a cache that cannot be used is reported and the build goes on without it.
fn cache_for(
    args: &BuildArgs,
    project: &Project,
    project_dir: &Path,
) -> Option<(crate::build::cache::BuildCache, String)> {
    if args.no_cache || !project.build.cache {
        return None;
    }
    let cache = crate::build::cache::BuildCache::open_default()
        .and_then(|c| c.project_digest(project_dir).map(|d| (c, d)));
    match cache {
        Ok(c) => Some(c),
        Err(e) => {
            log(format!("{e}; building without it"));
            None
        }
    }
}

fn out_dir(work: &Path, p: Platform) -> PathBuf {
    work.join(p.slug()).join("out")
}

/// Run the build command for one platform; returns the seconds it took. Its output goes to
/// the build log and, line by line, to the progress display.
#[allow(clippy::too_many_arguments)]
fn build_one(
    project: &Project,
    workdir: &Path,
    work: &Path,
    p: Platform,
    vars: &[(String, String)],
    epoch: u64,
    progress: &Progress,
    what: &str,
) -> Result<f64, StepFailure> {
    let fail = |message: String| StepFailure {
        platform: p,
        message,
    };
    let out = out_dir(work, p);
    std::fs::create_dir_all(&out)
        .map_err(|e| fail(format!("cannot create {}: {e}", out.display())))?;
    let log_path = work.join(p.slug()).join("build.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| fail(format!("cannot create {}: {e}", log_path.display())))?;
    let start = Instant::now();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(&project.build.command)
        .current_dir(workdir)
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RCROSS_OUT", &out)
        .env("RCROSS_PLATFORM", p.to_string())
        .env("SOURCE_DATE_EPOCH", epoch.to_string());
    let mut tee = Tee::new(log, progress, p, what);
    // Its own process group, killed when the command exits (see run_in_process_group).
    let status = crate::runner::run_in_process_group(&mut command, &mut tee)
        .map_err(|e| fail(format!("running sh -c for the build command: {e}")))?;
    tee.flush_line();
    drop(tee);
    let secs = start.elapsed().as_secs_f64();
    if status.success() {
        return Ok(secs);
    }
    Err(fail(format!(
        "`{}` exited with {status} in {}:\n    {}",
        project.build.command,
        workdir.display(),
        tail_of(&log_path)
    )))
}

/// The last lines of a build log, indented for an error message.
pub(super) fn tail_of(log_path: &Path) -> String {
    let text = std::fs::read_to_string(log_path).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(20).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    tail.join("\n    ")
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
            FileSource::Path(a.source.clone()),
            a.mode,
        )
    }));
    entries
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
