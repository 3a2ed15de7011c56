//! The build pipeline behind `rcross build`, as stages that each take one typed value to the
//! next:
//!
//! 1. [`resolve()`]: the project file, the flags and git → a [`Job`] (platforms, tags, outputs);
//!    [`resolve_base`]: the base image → a [`Base`] resolved for every platform;
//! 2. [`plan()`]: the job and the host's toolchains → a [`Plan`] (per platform: strategy,
//!    placement, environment); [`runners::connect`] gives every platform an [`Assignment`]
//!    (its [`Runner`]: the host, a local engine, the chroot, a remote builder);
//! 3. [`run()`]: every platform built in parallel → [`Built`] output trees;
//! 4. [`verify()`]: every ELF artifact against its platform → [`Verified`], or the build stops
//!    ([`Stopped::Rejected`]) before anything is written;
//! 5. [`assemble()`]: layers, configs, manifests and the index in an OCI layout → [`Assembled`];
//! 6. [`publish()`]: archives, `--load`, `--push`, the digest file → the [`Metadata`] report.
//!
//! [`build`] runs them all on this host; [`execute`] runs stages 3 to 6 with whatever runners
//! it is given (the stage tests give it fakes). Progress and log lines go to a [`Reporter`]
//! the command layer implements: nothing here prints.

// The stages.
pub mod assemble;
pub mod load;
pub mod plan;
pub mod publish;
pub mod resolve;
pub mod run;
pub mod runners;
pub mod verify;

// What the stages use: the project file, placements, the build cache, artifacts, base images,
// layer reuse, and the daemonless chroot runner with its safe root-filesystem unpacker.
pub mod artifacts;
pub mod base;
pub mod cache;
pub mod chroot;
pub mod config;
pub mod dockerfile;
pub mod layer_cache;
pub mod place;
pub mod push_memo;
pub mod reuse;
pub mod rootfs;

#[cfg(test)]
mod tests;

pub use assemble::{assemble, Assembled};
pub use plan::{plan, Plan, PlatformPlan};
pub use publish::{by_repository, publish, Metadata, PlatformResult, Pushed, ReusedLayer};
pub use resolve::{resolve, resolve_base, Base, BaseImage, Job, Output, Request};
pub use run::{run, Assignment, Built, BuiltPlatform, PlatformBuild, ProjectCache, Runner};
pub use verify::{verify, Rejected, Verified};

use crate::exit::{self, Failure};
use crate::host::linux::LinuxHost;
use crate::platform::Platform;
use crate::tags::Checkout;

/// Where the pipeline's progress and log lines go. The command layer implements it: a live
/// line per platform on a terminal, plain lines otherwise. Every method may be called from any
/// build thread.
pub trait Reporter: Sync {
    /// A log line (what happens, warnings), not part of one platform's build output.
    fn line(&self, line: &str);
    /// The builds of `platforms` are about to start (a live display shows them waiting).
    fn builds_begin(&self, platforms: &[Platform]);
    /// Platform `p` starts building; `what` says how ("building (cross, gcc …)").
    fn build_started(&self, p: Platform, what: &str);
    /// One line of `p`'s build output (`what` is what its build is doing).
    fn build_output(&self, p: Platform, what: &str, line: &str);
    /// `p`'s build ended: "cached", "built in 1.2s", "FAILED (details below)".
    fn build_finished(&self, p: Platform, outcome: &str);
    /// Every build has ended (a live display is done).
    fn builds_end(&self);
}

/// How a build ended short of a published image.
#[derive(Debug)]
pub enum Stopped {
    /// Verification found artifacts that do not match their platform: nothing was assembled
    /// or published; the report (`ok: false`) went to `--metadata-file`.
    Rejected(Box<Rejected>),
    /// Any other failure, with its exit code.
    Failed(Failure),
}

impl From<Failure> for Stopped {
    fn from(f: Failure) -> Self {
        Stopped::Failed(f)
    }
}

/// What stages 3 to 6 need besides the job and the plan, set up before anything builds.
#[derive(Default)]
pub struct Services<'a> {
    pub base: Option<&'a Base>,
    /// The build cache, for host builds.
    pub cache: Option<&'a ProjectCache>,
    /// What the registry already has, being read (with `--push`).
    pub reuse: Option<reuse::Pending>,
    /// The engine to `--load` into.
    pub loader: Option<&'a load::LoadPlan>,
}

/// The whole build on this host: stages 1 and 2, the runners connected, then [`execute`].
pub fn build(request: &Request, reporter: &dyn Reporter) -> Result<Metadata, Stopped> {
    let project = match dockerfile::find(request)? {
        dockerfile::BuildSource::Dockerfile { project, file } => {
            return dockerfile::build(request, project, &file, reporter)
        }
        dockerfile::BuildSource::Project(project) => project,
    };
    let host = LinuxHost;
    let platforms = resolve::platforms(&project, request);
    // The tag policy and the labels come from the git checkout the project is in. Its `git`
    // processes run while the host is probed (which does not need them).
    let git = {
        let (dir, file, policy) = (
            request.dir.clone(),
            project.tags.clone(),
            request.tag_policy.clone(),
        );
        std::thread::spawn(move || crate::tags::compute_for(&dir, &file, &policy, false))
    };
    // What the registry already has is read from now on when the command line names every tag
    // (git adds none): by the time the layers are written, the answer is there.
    let early_reuse = resolve::early_reuse_reading(request)
        .and_then(|reading| reading.start().ok().map(|pending| (reading, pending)));
    let lang = resolve::lang(&project, &request.dir)?;
    // Only the facts this build needs: probing every tool costs up to seconds on some hosts.
    // Probe outcomes of an unchanged host and binfmt_misc are remembered between builds.
    let probe_cache = crate::detect::ProbeCache::in_user_cache();
    let scope = crate::toolchain::Scope {
        platforms: Some(&platforms),
        lang: Some(lang),
        probe_cache: probe_cache.as_ref(),
    };
    let (catalog, _handlers, facts) = crate::toolchain::load(
        &host,
        &request.toolchain_dir,
        &request.binfmt_dir,
        &request.binfmt_misc,
        scope,
    )
    .map_err(|e| Failure {
        code: e.exit_code(),
        error: e.into(),
    })?;
    let git = git_facts(git, reporter)?;
    let job = resolve(project, request, git, reporter)?;
    let base = resolve_base(&job, resolve::open_base(&job)?, reporter)?;
    // --load: the platform to load is decided, and the engine reached, before anything builds.
    let loader = job
        .load
        .then(|| load::prepare(&job.platforms))
        .transpose()?;
    // Read what the registry already has while the platforms build (unless it is being read).
    let reuse = match early_reuse {
        Some((reading, pending)) if Some(&reading) == assemble::ReuseReading::of(&job).as_ref() => {
            Some(pending)
        }
        _ => assemble::start_reuse(&job)?,
    };
    let plan = plan(&job, &facts, &catalog, &host, reporter)?;
    let assignments = runners::connect(&job, &plan, reporter)?;
    let cache = run::open_cache(&job, reporter);
    let services = Services {
        base: base.as_ref(),
        cache: cache.as_ref(),
        reuse,
        loader: loader.as_ref(),
    };
    execute(&job, &plan, &assignments, services, reporter)
}

/// What the git thread found; a checkout git cannot read is a warning unless tags need it.
pub(crate) fn git_facts(
    thread: std::thread::JoinHandle<Result<Checkout, crate::tags::TagError>>,
    reporter: &dyn Reporter,
) -> exit::Result<Option<crate::tags::Computed>> {
    let checkout = thread
        .join()
        .map_err(|_| Failure::from(anyhow::anyhow!("reading the git facts panicked")))?
        .map_err(|e| Failure {
            code: e.exit_code(),
            error: e.into(),
        })?;
    Ok(match checkout {
        Checkout::Computed(c) => Some(c),
        Checkout::NotGit => None,
        Checkout::Unreadable(e) => {
            reporter.line(&format!(
                "warning: no git facts for the build (labels, SOURCE_DATE_EPOCH): {e}"
            ));
            None
        }
    })
}

/// Stages 3 to 6: run every platform's build with its assigned runner (same order as
/// `plan`), verify, assemble, publish. A rejection writes its report to `--metadata-file`.
pub fn execute(
    job: &Job,
    plan: &Plan,
    assignments: &[Assignment],
    services: Services,
    reporter: &dyn Reporter,
) -> Result<Metadata, Stopped> {
    // Layer blobs are cached next to the build cache, and only when it is on.
    let layer_cache = services
        .cache
        .map(|c| layer_cache::LayerCache::in_build_cache(c.cache.root()));
    let early = assemble::EarlyLayers::new(job, services.cache.map(|c| c.cache.root()));
    let reuse = services.reuse.as_ref();
    let on_built = |p: Platform, out: &std::path::Path| early.write(job, p, out, reuse);
    let mut built = run(job, plan, assignments, services.cache, &on_built, reporter)?;
    let verified = match verify(job, &mut built, services.base) {
        Ok(v) => v,
        Err(Stopped::Rejected(rejected)) => {
            publish::write_metadata(job, &rejected.report)?;
            return Err(Stopped::Rejected(rejected));
        }
        Err(e) => return Err(e),
    };
    let assembled = assemble(
        job,
        verified,
        services.base,
        services.reuse,
        assemble::LayerStores {
            cache: layer_cache.as_ref(),
            early: Some(&early),
        },
        built.work.path(),
        reporter,
    )?;
    Ok(publish(
        job,
        assembled,
        services.base,
        services.loader,
        reporter,
    )?)
}
