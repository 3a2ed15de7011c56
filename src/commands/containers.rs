//! `rcross build`'s containerised builds: the build image per platform, the runners (the local
//! Docker engine or the daemonless chroot, and remote builders), and one platform's build in a
//! container.

use super::build::{log, tail_of, StepFailure};
use crate::build::base;
use crate::build::config::Project;
use crate::build::place::Placement;
use crate::build::progress::Progress;
use crate::exit::{self, Failure};
use crate::platform::Platform;
use crate::runner::{BuildImage, ContainerJob, ContainerRunner, RunnerError, OUT_DIR};
use crate::toolchain::catalog::TargetSpec;
use crate::toolchain::plan::{PlanItem, Strategy};
use crate::walk;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// `--builder PLATFORM=ENDPOINT`.
pub(super) fn parse_builder(arg: &str) -> exit::Result<(Platform, String)> {
    let (p, endpoint) = arg.split_once('=').ok_or_else(|| {
        Failure::usage(anyhow::anyhow!(
            "--builder {arg:?}: use PLATFORM=ENDPOINT, e.g. linux/arm64=ssh://me@arm-box"
        ))
    })?;
    let p: Platform = p
        .parse()
        .map_err(|e| Failure::usage(anyhow::anyhow!("--builder {arg:?}: {e}")))?;
    crate::build::config::check_endpoint(endpoint)
        .map_err(|e| Failure::usage(anyhow::anyhow!("--builder {arg:?}: {e}")))?;
    Ok((p, endpoint.to_string()))
}

/// The environment of a containerised build: what describes the platform, not the host's
/// toolchain (the build image brings its own native compiler, so CC and friends are its own).
pub(super) fn container_env(spec: &TargetSpec) -> Vec<(String, String)> {
    let mut v = vec![
        ("RCROSS_PLATFORM".to_string(), spec.platform.to_string()),
        ("GOOS".to_string(), "linux".to_string()),
        ("GOARCH".to_string(), spec.goarch.clone()),
    ];
    if let Some(a) = &spec.goarm {
        v.push(("GOARM".to_string(), a.clone()));
    }
    v
}

/// The build image for every platform that builds in a container, resolved for it.
pub(super) fn build_images(
    project: &Project,
    project_dir: &Path,
    plan: &[PlanItem],
    placements: &[Placement],
) -> exit::Result<BTreeMap<Platform, BuildImage>> {
    let wanted: Vec<Platform> = plan
        .iter()
        .zip(placements)
        .filter(|(_, pl)| **pl != Placement::Host)
        .map(|(i, _)| i.platform)
        .collect();
    let mut images = BTreeMap::new();
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
            let full = format!("oci:{}", project_dir.join(rest).display());
            let layout =
                walk::OciLayout::from_spec(&full).map_err(|e| Failure::usage(field(&e)))?;
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

type Shared = Arc<dyn ContainerRunner>;

/// The runners the placements need, connected before any build starts.
pub(super) struct Runners {
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
    pub(super) fn connect(
        plan: &[PlanItem],
        placements: &[Placement],
        engine: Option<&str>,
        binfmt_misc: &Path,
    ) -> exit::Result<Runners> {
        let local = if placements
            .iter()
            .any(|p| matches!(p, Placement::Container { .. }))
        {
            Some(connect_local(engine, binfmt_misc)?)
        } else {
            None
        };
        let mut endpoints: BTreeMap<&str, Vec<Platform>> = BTreeMap::new();
        for (item, placement) in plan.iter().zip(placements) {
            if let Placement::Builder { endpoint } = placement {
                endpoints
                    .entry(endpoint.as_str())
                    .or_default()
                    .push(item.platform);
            }
        }
        // Connect to every builder at once: an unreachable one costs its timeout only once.
        let builders = std::thread::scope(|s| {
            let handles: Vec<_> = endpoints
                .iter()
                .map(|(e, ps)| (e.to_string(), s.spawn(move || connect_builder(e, ps))))
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

    pub(super) fn get(&self, placement: &Placement) -> Result<&dyn ContainerRunner, String> {
        match placement {
            Placement::Host => Err("this platform builds on the host".into()),
            Placement::Container { .. } => self
                .local
                .as_deref()
                .ok_or_else(|| "no container runner was set up".to_string()),
            Placement::Builder { endpoint } => match self.builders.get(endpoint) {
                Some(Ok(b)) => Ok(b.runner.as_ref()),
                Some(Err(e)) => Err(e.clone()),
                None => Err(format!("builder {endpoint} was not connected")),
            },
        }
    }

    /// The strategy a placement really uses: a builder whose machine cannot run the platform
    /// natively emulates it.
    pub(super) fn strategy(
        &self,
        placement: &Placement,
        p: Platform,
        planned: Strategy,
    ) -> Strategy {
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

    pub(super) fn describe(&self, placement: &Placement) -> String {
        match placement {
            Placement::Host => "host".to_string(),
            Placement::Builder { endpoint } => format!("builder {endpoint}"),
            Placement::Container { .. } => self
                .local
                .as_ref()
                .map_or_else(|| "container".to_string(), |r| r.describe()),
        }
    }
}

/// The local runner: the Docker engine, or the chroot when there is none (or when asked).
fn connect_local(engine: Option<&str>, binfmt_misc: &Path) -> exit::Result<Shared> {
    if engine == Some("chroot") {
        return chroot_runner(binfmt_misc);
    }
    let endpoint = match engine {
        Some(e) => e
            .parse::<crate::engine::Endpoint>()
            .map_err(|e| Failure::usage(anyhow::anyhow!("--engine: {e}")))?,
        None => crate::engine::Endpoint::from_env()
            .map_err(|e| Failure::usage(anyhow::anyhow!("DOCKER_HOST: {e}")))?,
    };
    match crate::engine::DockerEngine::connect(&endpoint) {
        Ok(d) => Ok(Arc::new(d)),
        Err(e) if engine.is_none() => {
            log(fallback_warning(&endpoint, &e));
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
fn fallback_warning(endpoint: &crate::engine::Endpoint, e: &RunnerError) -> String {
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
    let mut options = crate::build::chroot::ChrootOptions::from_env().map_err(|e| Failure {
        code: e.exit_code(),
        error: e.into(),
    })?;
    // The handlers the chroot needs are those of the binfmt_misc rcross was pointed at.
    options.binfmt_misc = binfmt_misc.to_path_buf();
    Ok(Arc::new(crate::build::chroot::ChrootRunner::new(options)))
}

fn connect_builder(endpoint: &str, platforms: &[Platform]) -> Result<Builder, String> {
    let parsed: crate::engine::Endpoint = endpoint
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
    log(format!(
        "builder {endpoint}: Docker {} (API {}), {machine}",
        info.server_version, info.negotiated_api_version
    ));
    // A builder is meant to be native; one that is not still works through its own emulator.
    let machine = machine.parse::<Platform>().ok();
    if let Some(m) = &machine {
        for p in platforms {
            if !p.may_run_natively_on(m) {
                log(format!(
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

/// Run one platform's build in a container; returns the seconds it took.
#[allow(clippy::too_many_arguments)]
pub(super) fn build_in_container(
    project: &Project,
    project_dir: &Path,
    out: PathBuf,
    log_path: PathBuf,
    p: Platform,
    vars: &[(String, String)],
    epoch: u64,
    image: Option<&BuildImage>,
    runner: Result<&dyn ContainerRunner, String>,
    progress: &Progress,
    what: &str,
) -> Result<f64, StepFailure> {
    let fail = |message: String| StepFailure {
        platform: p,
        message,
    };
    let runner = runner.map_err(fail)?;
    let image = image
        .cloned()
        .ok_or_else(|| fail("no build image was resolved for this platform".into()))?;
    std::fs::create_dir_all(&out)
        .map_err(|e| fail(format!("cannot create {}: {e}", out.display())))?;
    let log_file = std::fs::File::create(&log_path)
        .map_err(|e| fail(format!("cannot create {}: {e}", log_path.display())))?;
    let mut log_file = Tee::new(log_file, progress, p, what);
    let mut env = vars.to_vec();
    env.push(("RCROSS_OUT".into(), OUT_DIR.into()));
    env.push(("SOURCE_DATE_EPOCH".into(), epoch.to_string()));
    let job = ContainerJob {
        platform: p,
        image,
        context: project_dir.to_path_buf(),
        workdir: project.build.workdir.clone(),
        command: project.build.command.clone(),
        env,
        out_dir: out,
    };
    let start = Instant::now();
    let exit = runner.run(&job, &mut log_file).map_err(|e: RunnerError| {
        fail(format!(
            "{} could not run the build: {e}",
            runner.describe()
        ))
    })?;
    drop(log_file);
    let secs = start.elapsed().as_secs_f64();
    if exit.success() {
        return Ok(secs);
    }
    Err(fail(format!(
        "`{}` exited with code {} in {} on {}:\n    {}",
        project.build.command,
        exit.code,
        job.image,
        runner.describe(),
        tail_of(&log_path)
    )))
}

/// The build log file, and each complete output line to the progress display as it comes.
pub(super) struct Tee<'a> {
    file: std::fs::File,
    progress: &'a Progress,
    platform: Platform,
    what: &'a str,
    pending: Vec<u8>,
}

impl<'a> Tee<'a> {
    pub(super) fn new(
        file: std::fs::File,
        progress: &'a Progress,
        platform: Platform,
        what: &'a str,
    ) -> Tee<'a> {
        Tee {
            file,
            progress,
            platform,
            what,
            pending: Vec::new(),
        }
    }

    pub(super) fn flush_line(&mut self) {
        if !self.pending.is_empty() {
            let line = String::from_utf8_lossy(&self.pending).into_owned();
            self.progress.output(self.platform, self.what, &line);
            self.pending.clear();
        }
    }
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        for &b in &buf[..n] {
            if b == b'\n' {
                self.flush_line();
            } else if self.pending.len() < 4096 {
                self.pending.push(b);
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_flags_name_the_problem() {
        let (p, e) = parse_builder("linux/arm64=tcp://127.0.0.1:2375").unwrap();
        assert_eq!(p.to_string(), "linux/arm64");
        assert_eq!(e, "tcp://127.0.0.1:2375");
        for (bad, want) in [
            ("linux/arm64", "use PLATFORM=ENDPOINT"),
            ("linux/arm46=tcp://h:1", "unknown platform"),
            ("linux/arm64=h:2375", "not a Docker endpoint"),
        ] {
            let e = parse_builder(bad).unwrap_err();
            assert_eq!(e.code, exit::USAGE);
            assert!(e.error.to_string().contains(want), "{bad}: {}", e.error);
        }
    }
}
