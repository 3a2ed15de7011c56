//! Stage 3, run: every platform's build command, in parallel (at most `-j` at once), each into
//! an empty output directory of its own, through the [`Runner`] its placement was given (see
//! [`super::runners`]). Host builds are answered from the build cache when their inputs are
//! unchanged. Each build's output goes, line by line, to the reporter; a failing build's error
//! repeats the tail of its output (the last 64 KiB, kept in memory: no log file is
//! written, as the work directory and everything in it is removed when the build ends).

use super::cache::{self, BuildCache, CacheUse};
use super::place::Placement;
use super::{Job, Plan, PlatformPlan, Reporter};
use crate::exit::{self, Failure};
use crate::platform::Platform;
use crate::runner::{run_in_process_group, BuildImage, ContainerJob, ContainerRunner, OUT_DIR};
use crate::toolchain::plan::Strategy;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One platform's build, as the run stage hands it to a [`Runner`].
#[derive(Debug, Clone, Copy)]
pub struct PlatformBuild<'a> {
    pub platform: Platform,
    /// Run as `sh -c COMMAND`.
    pub command: &'a str,
    /// The project directory.
    pub project_dir: &'a Path,
    /// Where the command runs, relative to the project directory.
    pub workdir: &'a Path,
    /// The platform's environment; `RCROSS_OUT`, `RCROSS_PLATFORM` and `SOURCE_DATE_EPOCH`
    /// are the runner's to set.
    pub env: &'a [(String, String)],
    pub epoch: u64,
    /// The empty host directory the build's output must end up in.
    pub out_dir: &'a Path,
}

/// Why a build did not produce its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunFailure {
    /// The command ran and failed: what ran, where and how it ended (the run stage adds the
    /// tail of its output).
    Exited(String),
    /// The runner could not run the command.
    Unable(String),
}

/// Runs one platform's build command and leaves its output in [`PlatformBuild::out_dir`].
/// Implementations: [`HostRunner`] (`sh -c` here), [`InContainer`] (the local Docker engine,
/// the daemonless chroot, or a remote builder's engine).
pub trait Runner: Send + Sync {
    /// Run `build`; the command's output (stdout and stderr interleaved) goes to `log`.
    fn run(&self, build: &PlatformBuild, log: &mut (dyn Write + Send)) -> Result<(), RunFailure>;
}

/// `sh -c COMMAND` on the host, in a process group of its own (see [`run_in_process_group`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct HostRunner;

impl Runner for HostRunner {
    fn run(&self, build: &PlatformBuild, log: &mut (dyn Write + Send)) -> Result<(), RunFailure> {
        let workdir = build.project_dir.join(build.workdir);
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(build.command)
            .current_dir(&workdir)
            .envs(build.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RCROSS_OUT", build.out_dir)
            .env("RCROSS_PLATFORM", build.platform.to_string())
            .env("SOURCE_DATE_EPOCH", build.epoch.to_string());
        let status = run_in_process_group(&mut command, log)
            .map_err(|e| RunFailure::Unable(format!("running sh -c for the build command: {e}")))?;
        if status.success() {
            return Ok(());
        }
        Err(RunFailure::Exited(format!(
            "`{}` exited with {status} in {}",
            build.command,
            workdir.display()
        )))
    }
}

/// A build in a container (or chroot) of `image`, through a [`ContainerRunner`]: the project
/// is its context, `RCROSS_OUT` is [`OUT_DIR`], copied back into the output directory.
pub struct InContainer {
    pub runner: Arc<dyn ContainerRunner>,
    pub image: BuildImage,
}

impl Runner for InContainer {
    fn run(&self, build: &PlatformBuild, log: &mut (dyn Write + Send)) -> Result<(), RunFailure> {
        let mut env = build.env.to_vec();
        env.push(("RCROSS_OUT".into(), OUT_DIR.into()));
        env.push(("SOURCE_DATE_EPOCH".into(), build.epoch.to_string()));
        let job = ContainerJob {
            platform: build.platform,
            image: self.image.clone(),
            context: build.project_dir.to_path_buf(),
            workdir: build.workdir.to_path_buf(),
            command: build.command.to_string(),
            env,
            out_dir: build.out_dir.to_path_buf(),
        };
        let exit = self.runner.run(&job, log).map_err(|e| {
            RunFailure::Unable(format!(
                "{} could not run the build: {e}",
                self.runner.describe()
            ))
        })?;
        if exit.success() {
            return Ok(());
        }
        Err(RunFailure::Exited(format!(
            "`{}` exited with code {} in {} on {}",
            build.command,
            exit.code,
            job.image,
            self.runner.describe()
        )))
    }
}

/// Who builds one platform (made by [`super::runners::connect`]).
#[derive(Clone)]
pub struct Assignment {
    /// Its runner, or why it has none (an unreachable builder fails only its platforms).
    pub runner: Result<Arc<dyn Runner>, String>,
    /// The strategy it really uses (a builder that cannot run the platform natively emulates).
    pub strategy: Strategy,
    /// Where it runs, for the report: "host", "docker ENDPOINT", "chroot", "builder ENDPOINT".
    pub runner_name: String,
    /// What its progress line says while it builds.
    pub what: String,
    /// The image it builds in, for container builds.
    pub build_image: Option<String>,
}

/// The build cache and the project's digest, for host builds.
pub struct ProjectCache {
    pub cache: BuildCache,
    pub project_digest: String,
}

/// The build cache, unless the job turns it off (`--no-cache`, `[build] cache = false`); a
/// cache that cannot be used is reported and the build goes on without it.
pub fn open_cache(job: &Job, reporter: &dyn Reporter) -> Option<ProjectCache> {
    if !job.cache {
        return None;
    }
    let opened = BuildCache::open_default().and_then(|c| {
        c.project_digest(&job.dir).map(|d| ProjectCache {
            cache: c,
            project_digest: d,
        })
    });
    match opened {
        Ok(c) => Some(c),
        Err(e) => {
            reporter.line(&format!("{e}; building without it"));
            None
        }
    }
}

/// One platform's output.
#[derive(Debug, Clone)]
pub struct BuiltPlatform {
    pub platform: Platform,
    /// What the build left in its output directory.
    pub out_dir: PathBuf,
    pub seconds: f64,
    /// The output came from the build cache (the command did not run).
    pub cached: bool,
    pub strategy: Strategy,
    /// The host toolchain, for host builds.
    pub toolchain: Option<String>,
    pub runner: String,
    pub build_image: Option<String>,
    /// The artifacts found in `out_dir` when the platform finished building (the `built` hook
    /// of [`run`] resolved them); `None`: resolve them when verifying.
    pub placed: Option<Vec<super::artifacts::Placed>>,
}

/// Every platform's output, in the plan's order, in a work directory removed when this is
/// dropped.
pub struct Built {
    pub work: tempfile::TempDir,
    pub platforms: Vec<BuiltPlatform>,
}

/// How one platform's build went.
struct BuildOutcome {
    result: Result<f64, String>,
    cache: Option<CacheUse>,
    placed: Option<Vec<super::artifacts::Placed>>,
}

/// Stage 3: build every platform of `plan` with the runner `assignments` give it (same order).
/// Fails, naming every failed platform with its log's tail, when any build fails.
/// `built(platform, output directory)` is called on the building thread as each platform's
/// command succeeds (not for build cache hits), while the others may still build; the
/// artifacts it resolved there, if any, go with the platform to verification.
pub fn run(
    job: &Job,
    plan: &Plan,
    assignments: &[Assignment],
    cache: Option<&ProjectCache>,
    built: &(dyn Fn(Platform, &Path) -> Option<Vec<super::artifacts::Placed>> + Sync),
    reporter: &dyn Reporter,
) -> exit::Result<Built> {
    let work = tempfile::Builder::new()
        .prefix("rcross-build")
        .tempdir()
        .map_err(|e| Failure::env(anyhow::anyhow!("cannot create a build directory: {e}")))?;
    let jobs: Vec<(&PlatformPlan, &Assignment)> = plan.platforms.iter().zip(assignments).collect();
    let queue = Mutex::new((0..jobs.len()).rev().collect::<Vec<_>>());
    let outcomes: Mutex<Vec<(usize, BuildOutcome)>> = Mutex::new(Vec::new());
    let started = Instant::now();
    reporter.builds_begin(&job.platforms);
    std::thread::scope(|s| {
        for _ in 0..job.jobs.min(jobs.len()) {
            s.spawn(|| loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some(i) = next else {
                    break;
                };
                let (pp, assigned) = jobs[i];
                let mut outcome = build_platform(job, pp, assigned, work.path(), cache, reporter);
                if outcome.result.is_ok() && outcome.cache != Some(CacheUse::Hit) {
                    let p = pp.item.platform;
                    outcome.placed = built(p, &out_dir(work.path(), p));
                }
                if let Ok(mut all) = outcomes.lock() {
                    all.push((i, outcome));
                }
            });
        }
    });
    reporter.builds_end();
    let mut outcomes = outcomes.into_inner().unwrap_or_default();
    outcomes.sort_by_key(|(i, _)| *i);
    report_cache_uses(&outcomes, &jobs, reporter);
    let mut failed: Vec<String> = outcomes
        .iter()
        .filter_map(|(i, o)| {
            let message = o.result.as_ref().err()?;
            Some(format!("{}: {message}", jobs[*i].0.item.platform))
        })
        .collect();
    if !failed.is_empty() {
        failed.sort();
        return Err(Failure::check(anyhow::anyhow!(
            "the build failed for {} platform(s):\n{}",
            failed.len(),
            failed.join("\n")
        )));
    }
    reporter.line(&format!(
        "built {} platform(s) in {:.1}s",
        plan.platforms.len(),
        started.elapsed().as_secs_f64()
    ));
    let platforms = outcomes
        .into_iter()
        .map(|(i, o)| {
            let (pp, assigned) = jobs[i];
            let p = pp.item.platform;
            BuiltPlatform {
                platform: p,
                out_dir: out_dir(work.path(), p),
                seconds: o.result.unwrap_or(0.0),
                cached: o.cache == Some(CacheUse::Hit),
                strategy: assigned.strategy,
                toolchain: (pp.placement == Placement::Host)
                    .then(|| pp.item.toolchain.clone())
                    .flatten(),
                runner: assigned.runner_name.clone(),
                build_image: assigned.build_image.clone(),
                placed: o.placed,
            }
        })
        .collect();
    Ok(Built { work, platforms })
}

/// What the cache did for each platform, in platform order, where it says something.
fn report_cache_uses(
    outcomes: &[(usize, BuildOutcome)],
    jobs: &[(&PlatformPlan, &Assignment)],
    reporter: &dyn Reporter,
) {
    let mut uses: Vec<(Platform, &CacheUse)> = outcomes
        .iter()
        .filter_map(|(i, o)| Some((jobs[*i].0.item.platform, o.cache.as_ref()?)))
        .collect();
    uses.sort_by_key(|(p, _)| p.to_string());
    for (p, used) in uses {
        match used {
            CacheUse::Hit => reporter.line(&format!("{p}: cached (the build command did not run)")),
            CacheUse::Miss => {}
            CacheUse::Corrupt(why) => reporter.line(&format!(
                "{p}: the build cache entry was corrupt ({why}): removed and rebuilt"
            )),
            CacheUse::Error(e) => reporter.line(&format!("{p}: {e}")),
        }
    }
}

/// A platform's output directory: the work directory's only entry for it (no log file beside
/// it: every file made here is one more inode to allocate and free).
fn out_dir(work: &Path, p: Platform) -> PathBuf {
    work.join(p.slug())
}

/// One platform's build, through the cache for host builds, with its progress reported.
fn build_platform(
    job: &Job,
    pp: &PlatformPlan,
    assigned: &Assignment,
    work: &Path,
    cache: Option<&ProjectCache>,
    reporter: &dyn Reporter,
) -> BuildOutcome {
    let p = pp.item.platform;
    reporter.build_started(p, &assigned.what);
    let out = out_dir(work, p);
    let build = PlatformBuild {
        platform: p,
        command: &job.project.build.command,
        project_dir: &job.dir,
        workdir: &job.project.build.workdir,
        env: &pp.env,
        epoch: job.epoch,
        out_dir: &out,
    };
    let run = || run_one(&build, assigned, &assigned.what, reporter);
    // The build cache answers host builds (container, chroot and remote builds are not
    // cached: what they see is not only what this host can digest).
    let outcome = match cache.filter(|_| pp.placement == Placement::Host) {
        Some(c) => {
            let mut env = pp.env.clone();
            env.push(("RCROSS_PLATFORM".into(), p.to_string()));
            env.push(("SOURCE_DATE_EPOCH".into(), job.epoch.to_string()));
            let req = cache::CacheInputs {
                project_digest: &c.project_digest,
                command: &job.project.build.command,
                workdir: &job.project.build.workdir,
                env: &env,
            };
            let (result, used) = cache::run_cached(&c.cache, &req, &out, run);
            BuildOutcome {
                result,
                cache: Some(used),
                placed: None,
            }
        }
        None => BuildOutcome {
            result: run(),
            cache: None,
            placed: None,
        },
    };
    match &outcome.result {
        Ok(_) if outcome.cache == Some(CacheUse::Hit) => reporter.build_finished(p, "cached"),
        Ok(secs) => reporter.build_finished(p, &format!("built in {secs:.1}s")),
        Err(_) => reporter.build_finished(p, "FAILED (details below)"),
    }
    outcome
}

/// How much of a build's output is kept for the error message of a failed build (its last
/// [`LOG_TAIL_LINES`] lines are shown).
const LOG_TAIL_BYTES: usize = 64 * 1024;
/// How many lines of a failed build's output its error message repeats.
const LOG_TAIL_LINES: usize = 20;

/// Run one build into its output directory; returns the seconds it took, or the error message
/// (with the tail of its output when the command failed).
fn run_one(
    build: &PlatformBuild,
    assigned: &Assignment,
    what: &str,
    reporter: &dyn Reporter,
) -> Result<f64, String> {
    let runner = assigned.runner.as_ref().map_err(Clone::clone)?;
    std::fs::create_dir_all(build.out_dir)
        .map_err(|e| format!("cannot create {}: {e}", build.out_dir.display()))?;
    let mut log = BuildLogTee {
        tail: std::collections::VecDeque::new(),
        reporter,
        platform: build.platform,
        what,
        pending: Vec::new(),
    };
    let start = Instant::now();
    let result = runner.run(build, &mut log);
    log.flush_line();
    let secs = start.elapsed().as_secs_f64();
    match result {
        Ok(()) => Ok(secs),
        Err(RunFailure::Unable(message)) => Err(message),
        Err(RunFailure::Exited(message)) => Err(format!("{message}:\n    {}", log.tail_lines())),
    }
}

/// A build's output: the last [`LOG_TAIL_BYTES`] of it for the error message, and each
/// complete line to the reporter as it comes.
struct BuildLogTee<'a> {
    tail: std::collections::VecDeque<u8>,
    reporter: &'a dyn Reporter,
    platform: Platform,
    what: &'a str,
    pending: Vec<u8>,
}

impl BuildLogTee<'_> {
    /// The last [`LOG_TAIL_LINES`] lines kept, indented for an error message.
    fn tail_lines(&self) -> String {
        let (a, b) = self.tail.as_slices();
        let text = String::from_utf8_lossy(&[a, b].concat()).into_owned();
        let tail: Vec<&str> = text.lines().rev().take(LOG_TAIL_LINES).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        tail.join("\n    ")
    }

    fn flush_line(&mut self) {
        if !self.pending.is_empty() {
            let line = String::from_utf8_lossy(&self.pending).into_owned();
            self.reporter.build_output(self.platform, self.what, &line);
            self.pending.clear();
        }
    }
}

impl Write for BuildLogTee<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let keep = buf
            .get(buf.len().saturating_sub(LOG_TAIL_BYTES)..)
            .unwrap_or(buf);
        let over = (self.tail.len() + keep.len()).saturating_sub(LOG_TAIL_BYTES);
        self.tail.drain(..over.min(self.tail.len()));
        self.tail.extend(keep);
        for &b in buf {
            if b == b'\n' {
                self.flush_line();
            } else if self.pending.len() < 4096 {
                self.pending.push(b);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
