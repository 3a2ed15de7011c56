//! Between plan and run: the [`Runner`] each placement needs, connected before any build
//! starts — the host itself; the local Docker engine, or the daemonless chroot when there is
//! none (or when asked); remote builders, all at once — and the build image resolved for every
//! platform that builds in a container.

use super::base;
use super::place::Placement;
use super::run::{Assignment, HostRunner, InContainer, Runner};
use super::{Job, Plan, PlatformPlan, Reporter};
use crate::exit::{self, Failure};
use crate::platform::Platform;
use crate::runner::{BuildImage, ContainerRunner, Endpoint, RunnerError};
use crate::toolchain::plan::Strategy;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

type Shared = Arc<dyn ContainerRunner>;

/// Connects the runners `plan` needs and assigns one to every platform (in the plan's order).
/// Fails when the local engine asked for cannot be used; an unreachable builder fails only its
/// platforms, when they build.
pub fn connect(job: &Job, plan: &Plan, reporter: &dyn Reporter) -> exit::Result<Vec<Assignment>> {
    let images = build_images(job, plan)?;
    let runners = Runners::connect(job, plan, reporter)?;
    Ok(plan
        .platforms
        .iter()
        .map(|pp| runners.assign(pp, images.get(&pp.item.platform)))
        .collect())
}

/// The build image for every platform that builds in a container, resolved for it.
fn build_images(job: &Job, plan: &Plan) -> exit::Result<BTreeMap<Platform, BuildImage>> {
    let wanted: Vec<Platform> = plan
        .platforms
        .iter()
        .filter(|pp| pp.placement != Placement::Host)
        .map(|pp| pp.item.platform)
        .collect();
    let mut images = BTreeMap::new();
    let project = &job.project;
    let Some(spec) = project.build.image.as_deref() else {
        return Ok(images);
    };
    if wanted.is_empty() {
        return Ok(images);
    }
    let field = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!("{}: build.image = {spec:?}: {e}", project.path.display())
    };
    match spec.strip_prefix("oci:") {
        Some(rest) => {
            // Relative layout paths are relative to the project directory.
            let full = format!("oci:{}", job.dir.join(rest).display());
            let layout = crate::image::LayoutSource::from_spec(&full)
                .map_err(|e| Failure::usage(field(&e)))?;
            let parts = base::resolve(&layout, &wanted).map_err(|e| Failure::usage(field(&e)))?;
            for part in parts {
                images.insert(
                    part.platform,
                    BuildImage::Layout {
                        dir: layout.dir().to_path_buf(),
                        reference: layout.reference().map(str::to_string),
                        manifest: part.manifest,
                    },
                );
            }
        }
        None => {
            // The engine (or the chroot runner) resolves a registry reference per platform.
            for p in wanted {
                images.insert(p, BuildImage::Registry(spec.to_string()));
            }
        }
    }
    Ok(images)
}

/// The container runners the placements need.
struct Runners {
    local: Option<Shared>,
    /// By endpoint; an unreachable builder fails only its platforms.
    builders: BTreeMap<String, Result<Builder, String>>,
}

/// A connected remote builder and the machine it is.
struct Builder {
    runner: Shared,
    machine: Option<Platform>,
}

impl Runners {
    fn connect(job: &Job, plan: &Plan, reporter: &dyn Reporter) -> exit::Result<Runners> {
        let local = if plan
            .platforms
            .iter()
            .any(|pp| matches!(pp.placement, Placement::Container { .. }))
        {
            Some(connect_local(
                job.engine.as_deref(),
                &job.binfmt_misc,
                reporter,
            )?)
        } else {
            None
        };
        let mut endpoints: BTreeMap<&str, Vec<Platform>> = BTreeMap::new();
        for pp in &plan.platforms {
            if let Placement::Builder { endpoint } = &pp.placement {
                endpoints
                    .entry(endpoint.as_str())
                    .or_default()
                    .push(pp.item.platform);
            }
        }
        // Connect to every builder at once: an unreachable one costs its timeout only once.
        let builders = std::thread::scope(|s| {
            let handles: Vec<_> = endpoints
                .iter()
                .map(|(e, ps)| {
                    let connecting = s.spawn(move || connect_builder(e, ps, reporter));
                    (e.to_string(), connecting)
                })
                .collect();
            handles
                .into_iter()
                .map(|(e, h)| {
                    let r = h
                        .join()
                        .unwrap_or_else(|_| Err(format!("connecting to {e} failed")));
                    (e, r)
                })
                .collect()
        });
        Ok(Runners { local, builders })
    }

    fn get(&self, placement: &Placement) -> Result<Shared, String> {
        match placement {
            Placement::Host => Err("this platform builds on the host".into()),
            Placement::Container { .. } => self
                .local
                .clone()
                .ok_or_else(|| "no container runner was set up".to_string()),
            Placement::Builder { endpoint } => match self.builders.get(endpoint) {
                Some(Ok(b)) => Ok(b.runner.clone()),
                Some(Err(e)) => Err(e.clone()),
                None => Err(format!("builder {endpoint} was not connected")),
            },
        }
    }

    /// The strategy a placement really uses: a builder whose machine cannot run the platform
    /// natively emulates it.
    fn strategy(&self, placement: &Placement, p: Platform, planned: Strategy) -> Strategy {
        if let Placement::Builder { endpoint } = placement {
            if let Some(Ok(Builder {
                machine: Some(m), ..
            })) = self.builders.get(endpoint)
            {
                if !p.may_run_natively_on(m) {
                    return Strategy::Emulate;
                }
            }
        }
        placement.strategy(planned)
    }

    fn describe(&self, placement: &Placement) -> String {
        match placement {
            Placement::Host => "host".to_string(),
            Placement::Builder { endpoint } => format!("builder {endpoint}"),
            Placement::Container { .. } => self
                .local
                .as_ref()
                .map_or_else(|| "container".to_string(), |r| r.describe()),
        }
    }

    /// The runner for one platform of the plan, with what describes it.
    fn assign(&self, pp: &PlatformPlan, image: Option<&BuildImage>) -> Assignment {
        let item = &pp.item;
        let strategy = self.strategy(&pp.placement, item.platform, item.strategy);
        let runner_name = self.describe(&pp.placement);
        let build_image = image.map(BuildImage::to_string);
        if pp.placement == Placement::Host {
            let toolchain = item.toolchain.as_ref().map(|t| format!(", {t}"));
            return Assignment {
                runner: Ok(Arc::new(HostRunner)),
                strategy,
                what: format!(
                    "building ({}{})",
                    item.strategy,
                    toolchain.unwrap_or_default()
                ),
                runner_name,
                build_image,
            };
        }
        let runner = self.get(&pp.placement).and_then(|runner| {
            let image = image
                .cloned()
                .ok_or_else(|| "no build image was resolved for this platform".to_string())?;
            Ok(Arc::new(InContainer { runner, image }) as Arc<dyn Runner>)
        });
        Assignment {
            runner,
            strategy,
            what: format!(
                "building ({strategy} in {} on {runner_name})",
                build_image.as_deref().unwrap_or_default()
            ),
            runner_name,
            build_image,
        }
    }
}

/// The local runner: the Docker engine, or the chroot when there is none (or when asked).
fn connect_local(
    engine: Option<&str>,
    binfmt_misc: &Path,
    reporter: &dyn Reporter,
) -> exit::Result<Shared> {
    if engine == Some("chroot") {
        return chroot_runner(binfmt_misc);
    }
    let endpoint = match engine {
        Some(e) => e
            .parse::<Endpoint>()
            .map_err(|e| Failure::usage(anyhow::anyhow!("--engine: {e}")))?,
        None => {
            Endpoint::from_env().map_err(|e| Failure::usage(anyhow::anyhow!("DOCKER_HOST: {e}")))?
        }
    };
    match crate::engine::DockerEngine::connect(&endpoint) {
        Ok(d) => Ok(Arc::new(d)),
        Err(e) if engine.is_none() => {
            reporter.line(&fallback_warning(&endpoint, &e));
            chroot_runner(binfmt_misc)
        }
        Err(e) => Err(Failure {
            code: e.exit_code(),
            error: anyhow::anyhow!("--engine {endpoint}: {e}"),
        }),
    }
}

/// The warning for falling back from an unreachable engine to the chroot: never silent, it
/// says where rcross looked and how to choose either way.
fn fallback_warning(endpoint: &Endpoint, e: &RunnerError) -> String {
    let from = match std::env::var("DOCKER_HOST") {
        Ok(v) if !v.is_empty() => format!("DOCKER_HOST={v}"),
        _ => "DOCKER_HOST is not set".to_string(),
    };
    format!(
        "warning: no Docker engine at {endpoint} ({from}): {e}; building in a sandboxed chroot \
         of the build image instead (daemonless). Set DOCKER_HOST or pass --engine ENDPOINT to \
         use an engine, or --engine chroot to choose the chroot and silence this warning"
    )
}

fn chroot_runner(binfmt_misc: &Path) -> exit::Result<Shared> {
    let mut options = super::chroot::ChrootOptions::from_env().map_err(|e| Failure {
        code: e.exit_code(),
        error: e.into(),
    })?;
    // The handlers the chroot needs are those of the binfmt_misc rcross was pointed at.
    options.binfmt_misc = binfmt_misc.to_path_buf();
    Ok(Arc::new(super::chroot::ChrootRunner::new(options)))
}

fn connect_builder(
    endpoint: &str,
    platforms: &[Platform],
    reporter: &dyn Reporter,
) -> Result<Builder, String> {
    let parsed: Endpoint = endpoint
        .parse()
        .map_err(|e| format!("builder {endpoint}: {e}"))?;
    let engine = crate::engine::DockerEngine::connect(&parsed).map_err(|e| match e {
        RunnerError::Unreachable { .. } => format!("builder {endpoint} is unreachable: {e}"),
        // E.g. an unusable certificate file: the builder itself may well be up.
        e => format!("builder {endpoint}: {e}"),
    })?;
    let info = engine
        .info()
        .map_err(|e| format!("builder {endpoint}: {e}"))?;
    let machine = match &info.variant {
        Some(v) => format!("{}/{}/{v}", info.os, info.architecture),
        None => format!("{}/{}", info.os, info.architecture),
    };
    reporter.line(&format!(
        "builder {endpoint}: Docker {} (API {}), {machine}",
        info.server_version, info.negotiated_api_version
    ));
    // A builder is meant to be native; one that is not still works through its own emulator.
    let machine = machine.parse::<Platform>().ok();
    if let Some(m) = &machine {
        for p in platforms {
            if !p.may_run_natively_on(m) {
                reporter.line(&format!(
                    "warning: builder {endpoint} is {m}, not {p}: the {p} build there is emulated (slow) and needs a binfmt_misc handler on that machine"
                ));
            }
        }
    }
    Ok(Builder {
        runner: Arc::new(engine),
        machine,
    })
}
