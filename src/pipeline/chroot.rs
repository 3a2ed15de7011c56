//! The daemonless fallback for containerised builds: the build command runs chrooted in the build
//! image's unpacked root filesystem, a foreign platform's programs running through binfmt_misc
//! handlers registered with the F flag (the kernel opened the emulator at registration, so the
//! chroot does not need to contain it).
//!
//! One job: resolve the image for the job's platform, unpack it once into the cache
//! ([`rootfs::unpack_cached`]), copy that pristine root into a per-job directory (a plain copy
//! rather than an overlay mount: it needs no overlayfs support in the user namespace or on the
//! cache's filesystem, and `copy_file_range` makes it cheap where the filesystem shares blocks;
//! the cached root is never written to, so parallel platforms and later jobs all start from the
//! same state), copy the project into `/rcross/src`, run `sh -c COMMAND` in the sandbox below,
//! copy `/rcross/out` back, delete the job directory. The mounts live only in the job's mount
//! namespace: nothing reaches the host's mount table, and they vanish with the job.
//!
//! The sandbox: the job is cloned into new user, PID, mount, IPC and UTS namespaces (and a
//! network namespace with only `lo`, brought up, when the command asks for
//! [`ChrootNetwork::None`]; otherwise the network is the host's). Its user namespace maps the image's ids to host ids that belong to no one (see
//! [`JobIds`]): as root a 65536-id range, so the build is root of its image and `chown` works
//! while nothing is the host's root; the job's copy of the image is owned inside that range
//! (ids shifted while copying) and the output is shifted back to in-image ids. Its first
//! process is PID 1 of the PID namespace: a small reaper that runs `sh -c COMMAND`, reaps
//! orphans, and when the command exits kills everything left (so a backgrounded `sleep 999`
//! neither outlives the build nor holds its output pipe) and exits with the command's status.
//! `/proc` is a fresh one of that namespace, and the root is entered with `pivot_root`, the
//! host's root detached: no host process is visible, and no path leads back to the host.
//!
//! A [`ChrootCommand`] is general enough for a Dockerfile's RUN: an argv executed as it is (a
//! name without `/` looked up in the command's PATH, as `execvp` does); a [`RunAs`] user that
//! only the command's process takes (setgroups, setresgid, setresuid to the in-image ids just
//! before exec; a job with a single id has only id 0, so any other user is refused before
//! anything starts); and extra [`ChrootMount`]s (host files or directories bound, read-only
//! ones remounted `ro,nosuid,nodev`, or tmpfs mounts), made in order after `/proc` and `/dev`
//! and before `pivot_root`. Mount targets are resolved inside the root, symlinks followed as if
//! the root were `/` (the rule of container runtimes); the mount points rcross makes are
//! removed after the run while unchanged, so they never show in a layer (`chroot/mounts.rs`).
//!
//! Kernel-facing work is behind [`ChrootSystem`]; [`LinuxChroot`] is the real one.

use super::rootfs::{self, CopyOptions, CopyOwners, RootfsError};
use crate::binfmt::selftest;
use crate::detect::BinfmtState;
use crate::image::{ImageSource, SourceError};
use crate::platform::Platform;
use crate::runner::{
    self, BuildImage, ContainerJob, ContainerRunner, JobExit, RunnerError, OUT_DIR, SRC_DIR,
};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

mod ids;
mod mounts;
pub use ids::JobIds;

/// Where binfmt_misc is normally mounted.
pub const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";
/// PATH for the command when neither the image nor the job sets one (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Largest manifest read from a build image layout.
const MAX_MANIFEST: u64 = 4 * 1024 * 1024;
/// `/dev` entries bound from the host into the job's `/dev`.
const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom"];
/// `/dev` symlinks, as a container runtime makes them.
const DEV_LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// Where a [`ChrootRunner`] looks and keeps things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChrootOptions {
    /// The binfmt_misc mount whose handlers foreign jobs need.
    pub binfmt_misc: PathBuf,
    /// CachedRoot roots, one per manifest digest (see [`rootfs::default_cache_dir`]).
    pub cache: PathBuf,
    /// Per-job roots, deleted after each job; on the cache's filesystem so copies are cheap.
    pub work: PathBuf,
    /// Registries reached over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
}

impl ChrootOptions {
    /// The defaults: binfmt_misc at [`BINFMT_MISC`], roots under `$XDG_CACHE_HOME/rcross/rootfs`
    /// (or `~/.cache/rcross/rootfs`), job roots beside them in `rcross/jobs`.
    pub fn from_env() -> Result<ChrootOptions, RunnerError> {
        let env = |k: &str| std::env::var(k).ok();
        let cache =
            rootfs::default_cache_dir(env("XDG_CACHE_HOME").as_deref(), env("HOME").as_deref())
                .ok_or_else(|| RunnerError::Other {
                    what: "chroot build cache".into(),
                    message: "neither XDG_CACHE_HOME nor HOME is set to an absolute path; set one \
                          (unpacked build images are kept under $XDG_CACHE_HOME/rcross/rootfs)"
                        .into(),
                })?;
        Ok(ChrootOptions::in_cache(&cache))
    }

    /// Roots in `cache`, job roots in its sibling `jobs`, binfmt_misc at [`BINFMT_MISC`].
    pub fn in_cache(cache: &Path) -> ChrootOptions {
        let work = cache
            .parent()
            .map(|p| p.join("jobs"))
            .unwrap_or_else(|| cache.join("jobs"));
        ChrootOptions {
            binfmt_misc: PathBuf::from(BINFMT_MISC),
            cache: cache.to_path_buf(),
            work,
            insecure: Vec::new(),
        }
    }
}

/// One command to run chrooted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChrootCommand {
    /// The job's root (a copy of the image's), owned in the job's ids. `proc` and `dev` are
    /// made (and removed after the run) when it lacks them.
    pub root: PathBuf,
    /// Absolute, inside the root.
    pub workdir: String,
    /// The program and its arguments, executed as they are (no shell): `argv[0]` is a path in
    /// the root, or a name looked up in the command's `PATH` when it has no `/`. A shell
    /// command is `["/bin/sh", "-c", COMMAND]`.
    pub argv: Vec<String>,
    /// The whole environment of the command.
    pub env: Vec<(String, String)>,
    /// How the job's user namespace maps its ids to the host's.
    pub ids: JobIds,
    /// Who the command runs as; `None` is the image's root (0:0). The job's first process
    /// stays root (it mounts and reaps); only the command's process takes these ids.
    pub user: Option<RunAs>,
    /// Mounted in this order in the job's mount namespace, after its `/proc` and `/dev` and
    /// before it enters the root; a later one may sit inside an earlier one. A target is resolved
    /// inside the root (its symlinks followed as if the root were `/`, never out of it); missing
    /// mount points are made owned by the job's root and removed after the run while still
    /// empty (see `chroot/mounts.rs`).
    pub mounts: Vec<ChrootMount>,
    /// The command's network.
    pub network: ChrootNetwork,
}

/// In-image ids a command runs as (a Dockerfile's `USER`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (setgroups), in-image ids.
    pub groups: Vec<u32>,
}

/// One extra mount of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChrootMount {
    /// Absolute, inside the root; symlinks in it are resolved inside the root.
    pub target: String,
    pub source: MountSource,
    /// Read-only (and, for a bind, nosuid and nodev too).
    pub read_only: bool,
}

/// What a [`ChrootMount`] mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A host file or directory, bind-mounted (recursively: a read-only bind makes its top
    /// mount read-only; mounts under the source keep their own flags). The source is opened by
    /// the job while it still has rcross's ids, so a source in a directory closed to the job's
    /// ids (a secret in a 0700 directory) can be bound.
    Host(PathBuf),
    /// A fresh tmpfs, mode 1777 as Docker's `--tmpfs`, with at most `size` bytes when given
    /// (else the kernel's default, half of the memory).
    Tmpfs { size: Option<u64> },
}

/// A job's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChrootNetwork {
    /// The host's network (builds fetch dependencies, as in Docker's default bridge).
    #[default]
    Host,
    /// A network namespace of its own with only the loopback interface, brought up.
    None,
}

/// What a chroot job needs from the kernel.
pub trait ChrootSystem: Send + Sync {
    /// The ids a job's user namespace gets (see [`JobIds::choose`]).
    fn job_ids(&self) -> JobIds;
    /// The host's platform (`uname -m`).
    fn host_platform(&self) -> Result<Platform, String>;
    /// The binfmt_misc handlers at `dir`.
    fn binfmt(&self, dir: &Path) -> BinfmtState;
    /// Run the command in its root, in its own user, PID and mount namespaces with a fresh
    /// `/proc` and a small `/dev` mounted; stdout and stderr go to `log`. Returns when the
    /// command has exited and everything it left in its PID namespace is gone.
    fn run(
        &self,
        command: &ChrootCommand,
        log: &mut (dyn Write + Send),
    ) -> Result<JobExit, RunnerError>;
}

/// Runs [`ContainerJob`]s in chroots of their build image's root filesystem.
pub struct ChrootRunner {
    options: ChrootOptions,
    system: Box<dyn ChrootSystem>,
}

impl ChrootRunner {
    /// A runner on the real kernel.
    pub fn new(options: ChrootOptions) -> ChrootRunner {
        ChrootRunner::with_system(options, Box::new(LinuxChroot))
    }

    pub fn with_system(options: ChrootOptions, system: Box<dyn ChrootSystem>) -> ChrootRunner {
        ChrootRunner { options, system }
    }

    pub fn options(&self) -> &ChrootOptions {
        &self.options
    }
}

impl ContainerRunner for ChrootRunner {
    fn describe(&self) -> String {
        "chroot".into()
    }

    fn run(
        &self,
        job: &ContainerJob,
        log: &mut (dyn Write + Send),
    ) -> Result<JobExit, RunnerError> {
        let host = self
            .system
            .host_platform()
            .map_err(|message| RunnerError::Other {
                what: "the host platform".into(),
                message,
            })?;
        let state = self.system.binfmt(&self.options.binfmt_misc);
        check_handler(job.platform, host, &state)?;
        let cached = self.unpack_build_image(job, log)?;
        let (guard, ids) = self.job_dir(job)?;
        let root = guard.0.join("root");
        copy_into_job(&cached.root, &root, ids)?;
        prepare_root(&root, job, ids.root_on_host())
            .map_err(rootfs_failure("preparing the job's root"))?;

        let command = ChrootCommand {
            root: root.clone(),
            workdir: job.container_workdir(),
            argv: vec!["/bin/sh".into(), "-c".into(), job.command.clone()],
            env: environment(&cached.image_env, &job.env),
            ids,
            user: None,
            mounts: Vec::new(),
            network: ChrootNetwork::Host,
        };
        let _ = writeln!(
            log,
            "rcross: sandbox: {}; own PID namespace (a reaper as PID 1 kills what the command \
             leaves running), fresh /proc, pivot_root; the network is the host's",
            ids.describe()
        );
        let exit = self.system.run(&command, log)?;

        if exit.success() {
            copy_output(&root, job, ids)?;
        }
        if let Err(e) = rootfs::remove_tree(&guard.0) {
            let _ = writeln!(log, "rcross: could not remove the job directory: {e}");
        }
        Ok(exit)
    }
}

/// A problem with the job's build image, as a runner error naming the image and the platform.
fn image_error(job: &ContainerJob) -> impl Fn(String) -> RunnerError + '_ {
    |message| RunnerError::Image {
        image: job.image.to_string(),
        platform: job.platform,
        message,
    }
}

/// A root filesystem failure as a runner error about `what`.
fn rootfs_failure(what: &str) -> impl FnOnce(RootfsError) -> RunnerError {
    let what = what.to_string();
    move |e: RootfsError| RunnerError::Other {
        what,
        message: e.to_string(),
    }
}

/// Copy the cached root into the job's. The job's copy is owned inside its id range, so the
/// image's root is the job's root and `_apt` is `_apt`; the cached root keeps the image's own
/// ids.
fn copy_into_job(cached: &Path, root: &Path, ids: JobIds) -> Result<(), RunnerError> {
    let into_range = |uid, gid| ids.to_host(uid, gid).unwrap_or((uid, gid));
    rootfs::copy_tree(
        cached,
        root,
        &CopyOptions {
            owners: match ids {
                JobIds::Range { .. } => CopyOwners::Map(&into_range),
                JobIds::Single { uid: 0, .. } => CopyOwners::Keep,
                JobIds::Single { .. } | JobIds::Delegated { .. } => CopyOwners::Copier,
            },
            exclude: &|_| false,
        },
    )
    .map_err(rootfs_failure(
        "copying the unpacked build image for the job",
    ))?;
    Ok(())
}

/// Copy the build's `/rcross/out` to the job's output directory, owners back to the ids the
/// job saw, and check that no link in it points out of it.
fn copy_output(root: &Path, job: &ContainerJob, ids: JobIds) -> Result<(), RunnerError> {
    let out = rootfs::real_dir_inside(root, OUT_DIR).map_err(|message| RunnerError::Other {
        what: format!("reading {OUT_DIR} after the build"),
        message: format!("{message}; the build must leave {OUT_DIR} a directory"),
    })?;
    // Back to the ids the job saw: an output never records a host id of the range.
    let from_range = |uid, gid| ids.to_inside(uid, gid).unwrap_or((uid, gid));
    rootfs::copy_tree(
        &out,
        &job.out_dir,
        &CopyOptions {
            owners: match ids {
                JobIds::Range { .. } => CopyOwners::Map(&from_range),
                // The user's own files again (see `enter::give_back`).
                JobIds::Single { .. } | JobIds::Delegated { .. } => CopyOwners::Copier,
            },
            exclude: &|_| false,
        },
    )
    .map_err(rootfs_failure(
        "copying the build's output out of the chroot",
    ))?;
    // The same rule as for an engine's output: a link must not point out of it (an artifact
    // that is a link to /etc/shadow would be read on the host).
    crate::runner::unpack::check_links_inside(&job.out_dir).map_err(|e| RunnerError::Other {
        what: format!("the {} build's output", job.platform),
        message: e.to_string(),
    })
}

impl ChrootRunner {
    /// The job's build image for its platform, unpacked into the cache (once per manifest).
    fn unpack_build_image(
        &self,
        job: &ContainerJob,
        log: &mut (dyn Write + Send),
    ) -> Result<CachedRoot, RunnerError> {
        let image_err = image_error(job);
        match &job.image {
            BuildImage::Layout {
                dir,
                reference,
                manifest,
            } => {
                let layout = crate::image::LayoutSource::open(dir, reference.as_deref())
                    .map_err(|e| image_err(e.to_string()))?;
                let pinned = OneManifest {
                    inner: &layout,
                    manifest,
                };
                self.unpack(&pinned, job, log)
            }
            BuildImage::Registry(name) => {
                let reference: crate::registry::Reference = name
                    .parse()
                    .map_err(|e: crate::registry::ReferenceError| image_err(e.to_string()))?;
                let client = crate::registry::Client::from_environment(&self.options.insecure)
                    .map_err(|e| image_err(e.to_string()))?;
                let mirrors =
                    crate::registry::Mirrors::load().map_err(|e| image_err(e.to_string()))?;
                let opened = crate::registry::open_image(&client, &reference, &mirrors)
                    .map_err(|e| image_err(e.to_string()))?;
                for skipped in &opened.skipped {
                    let _ = writeln!(
                        log,
                        "rcross: skipped {}: {}",
                        skipped.candidate, skipped.error
                    );
                }
                if opened.served_by.mirror.is_some() {
                    let _ = writeln!(log, "rcross: reading {name} from {}", opened.served_by);
                }
                self.unpack(&opened.image, job, log)
            }
        }
    }

    /// A new job directory in the work directory (removed when the guard drops), entered by
    /// the job with the ids it gets, which are returned with it.
    fn job_dir(&self, job: &ContainerJob) -> Result<(JobDir, JobIds), RunnerError> {
        std::fs::create_dir_all(&self.options.work).map_err(|e| RunnerError::Other {
            what: format!("creating {}", self.options.work.display()),
            message: e.to_string(),
        })?;
        // Jobs of an rcross that was killed (Ctrl-C) before it could remove them.
        rootfs::sweep_stale(&self.options.work, "job");
        let job_dir = tempfile::Builder::new()
            .prefix(&format!(
                "{}{}-",
                rootfs::owned_prefix("job"),
                job.platform.slug()
            ))
            .tempdir_in(&self.options.work)
            .map_err(|e| RunnerError::Other {
                what: format!(
                    "creating a job directory in {}",
                    self.options.work.display()
                ),
                message: e.to_string(),
            })?;
        // Removed on every path out of here (the tree may hold read-only directories, which
        // TempDir's own cleanup cannot remove as non-root).
        let guard = JobDir(job_dir.keep());
        let ids = self.system.job_ids();
        if let Some((uid, gid)) = ids.root_on_host() {
            // The job enters its root from here with its own ids (the directory stays 0700).
            std::os::unix::fs::lchown(&guard.0, Some(uid), Some(gid)).map_err(|e| {
                RunnerError::Other {
                    what: format!("changing the owner of {}", guard.0.display()),
                    message: e.to_string(),
                }
            })?;
        }
        Ok((guard, ids))
    }
}

/// A cached root and the image config's environment.
struct CachedRoot {
    root: PathBuf,
    image_env: Vec<String>,
}

impl ChrootRunner {
    fn unpack(
        &self,
        source: &dyn ImageSource,
        job: &ContainerJob,
        log: &mut (dyn Write + Send),
    ) -> Result<CachedRoot, RunnerError> {
        let image_err = image_error(job);
        let parts = super::base::resolve(source, &[job.platform])
            .map_err(|e| image_err(base_message(e)))?;
        let Some(part) = parts.into_iter().next() else {
            return Err(image_err(
                "the image has no manifest for the platform".into(),
            ));
        };
        let cached =
            rootfs::unpack_cached(source, &part.manifest, &part.layers, &self.options.cache)
                .map_err(|e| image_err(e.to_string()))?;
        let _ = writeln!(
            log,
            "rcross: {} root filesystem of {} ({}) in {}",
            if cached.reused {
                "reusing the"
            } else {
                "unpacked the"
            },
            job.image,
            part.manifest,
            cached.root.display()
        );
        if cached.stats.special_skipped > 0 {
            let _ = writeln!(
                log,
                "rcross: {} device node(s)/FIFO(s) of the image were not created (e.g. {}); \
                 the chroot gets its own /dev",
                cached.stats.special_skipped,
                cached.stats.special_examples.join(", ")
            );
        }
        Ok(CachedRoot {
            root: cached.root,
            image_env: part.run.env,
        })
    }
}

/// A base-resolution failure in the words of a build image ([`RunnerError::Image`] already
/// names the image and platform).
fn base_message(e: super::base::BaseError) -> String {
    use super::base::BaseError;
    match e {
        BaseError::Source { source, .. } => source.to_string(),
        BaseError::Invalid { what, message, .. } => format!("{what}: {message}"),
        BaseError::NoPlatform {
            platform,
            available,
            ..
        } => format!(
            "the image has no {platform} image; it has: {available}. Use a build image that \
             has {platform}"
        ),
        BaseError::Ambiguous {
            platform, digests, ..
        } => format!(
            "the image holds several different {platform} images ({digests}); name one by \
             digest"
        ),
    }
}

/// Removes the job directory when dropped.
struct JobDir(PathBuf);

impl Drop for JobDir {
    fn drop(&mut self) {
        let _ = rootfs::remove_tree(&self.0);
    }
}

/// A layout narrowed to one manifest: its root is that manifest, so resolution takes exactly
/// the image the plan chose.
struct OneManifest<'a> {
    inner: &'a dyn ImageSource,
    manifest: &'a str,
}

impl ImageSource for OneManifest<'_> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn root(&self) -> Result<(String, Vec<u8>), SourceError> {
        let bytes = self.inner.blob_bytes(self.manifest, MAX_MANIFEST)?;
        Ok((crate::oci::MEDIA_TYPE_MANIFEST.to_string(), bytes))
    }
    fn blob_bytes(&self, digest: &str, max: u64) -> Result<Vec<u8>, SourceError> {
        self.inner.blob_bytes(digest, max)
    }
    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + Send>, SourceError> {
        self.inner.open_blob(digest)
    }
    // Forwarded so a registry source keeps its own sized reader (which resumes a cut download).
    fn open_blob_sized(
        &self,
        digest: &str,
        size: u64,
    ) -> Result<Box<dyn Read + Send>, SourceError> {
        self.inner.open_blob_sized(digest, size)
    }
}

/// Whether programs of `platform` can run in a chroot on this host: natively, or through an
/// enabled binfmt_misc handler with the F flag (without it the kernel looks the emulator up
/// inside the chroot, where it is not).
pub fn check_handler(
    platform: Platform,
    host: Platform,
    state: &BinfmtState,
) -> Result<(), RunnerError> {
    if platform.may_run_natively_on(&host) {
        return Ok(());
    }
    let fail = |message: String| RunnerError::Other {
        what: format!("chroot build for {platform}"),
        message,
    };
    let setup = format!("sudo rcross setup --platform {platform}");
    let dir = state.path.display();
    if !state.mounted {
        return Err(fail(format!(
            "{platform} programs need an emulator, and binfmt_misc is not mounted at {dir}; \
             run `{setup}` to mount it and register one"
        )));
    }
    if state.enabled == Some(false) {
        return Err(fail(format!(
            "binfmt_misc at {dir} is disabled, so {platform} programs cannot run; run `{setup}`"
        )));
    }
    let Some(mut program) = selftest::program(&platform) else {
        // No ELF header to match against: the command will tell.
        return Ok(());
    };
    // The kernel matches on the first BINPRM_BUF_SIZE (256) bytes, zero-filled past the end.
    if program.len() < 256 {
        program.resize(256, 0);
    }
    let matching = state.matching(&program);
    if matching.is_empty() {
        return Err(fail(format!(
            "no binfmt_misc handler for {platform} is registered at {dir}; run `{setup}`"
        )));
    }
    // The kernel uses the newest enabled entry that matches. The state lists entries by name;
    // the order of registration is read from the directory. When it cannot be read, any of
    // them may be the one used, so each must have F.
    let in_use = crate::binfmt::order::registration_order(&state.path)
        .ok()
        .and_then(|order| crate::binfmt::order::entry_in_use(&matching, &order));
    let judged: Vec<&crate::binfmt::KernelEntry> = match in_use {
        Some(entry) => vec![entry],
        None => matching.clone(),
    };
    if let Some(entry) = judged.iter().find(|e| !e.flags.fix_binary) {
        let which = match (in_use.is_some(), matching.len()) {
            (_, 1) => String::new(),
            (true, n) => format!(
                " (of the {n} enabled entries that match {platform} programs it is the newest, \
                 the one the kernel uses)"
            ),
            (false, n) => format!(
                " (one of the {n} enabled entries that match {platform} programs; which one \
                 the kernel uses could not be read from {dir})"
            ),
        };
        return Err(fail(format!(
            "the binfmt_misc handler {} ({}) for {platform} is registered without the F flag{which}, \
             so its emulator cannot be found inside the chroot; run `{setup}` (add --force \
             when another tool registered it)",
            entry.name, entry.interpreter
        )));
    }
    Ok(())
}

/// The command's environment: the image config's `Env`, a default PATH and HOME when it sets
/// none, then the job's variables (which win).
pub fn environment(image_env: &[String], job_env: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match env.iter_mut().find(|(n, _)| n == k) {
        Some(slot) => slot.1 = v.to_string(),
        None => env.push((k.to_string(), v.to_string())),
    };
    for e in image_env {
        let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
        if !k.is_empty() {
            set(k, v);
        }
    }
    for (k, v) in [("PATH", DEFAULT_PATH), ("HOME", "/root")] {
        if !image_env.iter().any(|e| e.split('=').next() == Some(k)) {
            set(k, v);
        }
    }
    for (k, v) in job_env {
        set(k, v);
    }
    env
}

/// Make the job's copy of the root ready: a fresh `/rcross` holding the project (minus
/// [`runner::CONTEXT_EXCLUDES`]) and an empty output directory, real directories for the
/// mounts (`proc`, `dev`) and `tmp`, and the host's DNS configuration.
///
/// What it makes is owned by `owner` (the job's root on the host) when given, so the job can
/// write to it.
fn prepare_root(
    root: &Path,
    job: &ContainerJob,
    owner: Option<(u32, u32)>,
) -> Result<(), RootfsError> {
    use std::os::unix::fs::PermissionsExt as _;
    let io_err = |what: &str, path: &Path| {
        let (what, path) = (what.to_string(), path.to_path_buf());
        move |source| RootfsError::Io { what, path, source }
    };
    let chown = |path: &Path| -> Result<(), RootfsError> {
        match owner {
            Some((uid, gid)) => std::os::unix::fs::lchown(path, Some(uid), Some(gid))
                .map_err(io_err("changing the owner of", path)),
            None => Ok(()),
        }
    };
    for (dir, mode) in [("proc", 0o555), ("dev", 0o755), ("tmp", 0o1777)] {
        let path = root.join(dir);
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            rootfs::remove_tree(&path)?;
            std::fs::create_dir(&path).map_err(io_err("creating", &path))?;
            chown(&path)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(io_err("setting the mode of", &path))?;
        }
    }
    let top = root.join(
        SRC_DIR
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("rcross"),
    );
    rootfs::remove_tree(&top)?;
    let src = root.join(SRC_DIR.trim_start_matches('/'));
    let out = root.join(OUT_DIR.trim_start_matches('/'));
    std::fs::create_dir_all(&src).map_err(io_err("creating", &src))?;
    std::fs::create_dir_all(&out).map_err(io_err("creating", &out))?;
    for dir in [&top, &src, &out] {
        chown(dir)?;
    }
    let to_owner = |_, _| owner.unwrap_or((0, 0));
    rootfs::copy_tree(
        &job.context,
        &src,
        &CopyOptions {
            owners: match owner {
                Some(_) => CopyOwners::Map(&to_owner),
                None => CopyOwners::Copier,
            },
            exclude: &runner::excluded,
        },
    )?;
    // Docker gives every container the host's resolver; so does this.
    if let Ok(resolv) = std::fs::read("/etc/resolv.conf") {
        let etc = root.join("etc");
        if std::fs::symlink_metadata(&etc).is_ok_and(|m| m.is_dir()) {
            let path = etc.join("resolv.conf");
            rootfs::remove_tree(&path)?;
            std::fs::write(&path, resolv).map_err(io_err("writing", &path))?;
            chown(&path)?;
        }
    }
    Ok(())
}

/// The real kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxChroot;

impl ChrootSystem for LinuxChroot {
    fn job_ids(&self) -> JobIds {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let euid = nix::unistd::geteuid();
        let user = nix::unistd::User::from_uid(euid).ok().flatten();
        let (uid_map, gid_map) = (read("/proc/self/uid_map"), read("/proc/self/gid_map"));
        let (subuid, subgid) = (read("/etc/subuid"), read("/etc/subgid"));
        JobIds::choose(
            euid.as_raw(),
            nix::unistd::getegid().as_raw(),
            &ids::IdSources {
                own_uid_map: &uid_map,
                own_gid_map: &gid_map,
                subuid: &subuid,
                subgid: &subgid,
                user: user.as_ref().map(|u| u.name.as_str()),
                helpers: which::which("newuidmap").is_ok() && which::which("newgidmap").is_ok(),
            },
        )
    }

    fn host_platform(&self) -> Result<Platform, String> {
        crate::detect::host_platform(&crate::host::linux::LinuxHost).map_err(|e| e.to_string())
    }

    fn binfmt(&self, dir: &Path) -> BinfmtState {
        let catalog = crate::binfmt::Catalog::builtin().unwrap_or(crate::binfmt::Catalog {
            handlers: Vec::new(),
        });
        crate::detect::binfmt_state(&crate::host::linux::LinuxHost, dir, &catalog)
    }

    fn run(
        &self,
        command: &ChrootCommand,
        log: &mut (dyn Write + Send),
    ) -> Result<JobExit, RunnerError> {
        enter::run(command, log)
    }
}

/// Starting the job in its namespaces and root, and its first process: the reaper.
mod enter {
    use super::mounts::{self, MountPoints, ResolvedMount};
    use super::{
        ChrootCommand, ChrootNetwork, JobExit, JobIds, MountSource, RunAs, RunnerError,
        DEFAULT_PATH, DEV_LINKS, DEV_NODES,
    };
    use nix::errno::Errno;
    use nix::fcntl::OFlag;
    use nix::libc::{self, c_char};
    use nix::mount::{MntFlags, MsFlags};
    use nix::sched::CloneFlags;
    use nix::sys::stat::Mode;
    use nix::sys::wait::{WaitPidFlag, WaitStatus};
    use nix::unistd::Pid;
    use std::cell::Cell;
    use std::ffi::{CStr, CString};
    use std::io::{self, Read as _, Write};
    use std::os::fd::{AsRawFd as _, OwnedFd, RawFd};
    use std::os::unix::ffi::OsStrExt as _;
    use std::path::Path;

    /// Everything the job's processes need, prepared before `clone`: from there to `exec` only
    /// system calls run (no allocation, no locks, no libc wrappers that keep process state),
    /// as is required in the child of a threaded process.
    struct ChildPlan {
        /// The directory holding the root, absolute; entered while the job still has rcross's
        /// ids (its ancestors, e.g. /root, may be closed to the job's).
        job_dir: CString,
        /// The root's name in it; it and the paths below are relative to where they are used.
        root: CString,
        proc_dir: CString,
        dev_dir: CString,
        nodes: Vec<(CString, CString)>,
        links: Vec<(CString, CString)>,
        shm: CString,
        workdir: CString,
        /// The command's arguments and environment, as `execve` takes them.
        _argv: Vec<CString>,
        argv: Vec<*const c_char>,
        _envp: Vec<CString>,
        envp: Vec<*const c_char>,
        /// What `execve` is tried on, in order: `argv[0]` when it has a `/`, else each
        /// directory of the command's PATH joined with it.
        programs: Vec<CString>,
        /// Whether the job may call setgroups (a range map written by root); with a single-id
        /// map the kernel requires it denied.
        set_groups: bool,
        /// The command's uid and gid in the job, when it does not run as the job's root, and
        /// its supplementary groups.
        user: Option<(libc::uid_t, libc::gid_t)>,
        groups: Vec<libc::gid_t>,
        /// Whether the command may call setgroups: any map but a single id (newgidmap leaves
        /// setgroups allowed when it maps a delegated range).
        set_user_groups: bool,
        /// The extra mounts, in order.
        mounts: Vec<MountStep>,
        /// Whether the job has a network namespace of its own, whose `lo` it brings up.
        own_network: bool,
        /// The steps numbered after the nodes and links (see `steps`).
        mounts_at: u16,
        loopback_step: u16,
        user_step: u16,
        /// What each step does, for the error message of the one that fails.
        steps: Vec<String>,
    }

    /// One extra mount, as the job's first process makes it.
    struct MountStep {
        /// Mount points it makes first, inside a tmpfs mounted before (`true`: a file).
        make: Vec<(CString, bool)>,
        /// Relative to the root, real directories all the way.
        target: CString,
        kind: MountKind,
    }

    enum MountKind {
        Bind {
            /// The host path, opened (`O_PATH`) into `fd` while the job still has rcross's ids,
            /// and bound from the job's `/proc/self/fd/N`.
            source: CString,
            fd: Cell<RawFd>,
            /// The flags of the read-only remount (with those the source's mount has, which a
            /// user namespace may not clear).
            remount: Option<MsFlags>,
        },
        Tmpfs {
            flags: MsFlags,
            data: CString,
        },
    }

    // Step numbers, written to the error pipe by the job's processes.
    const PDEATHSIG: u16 = 0;
    const SYNC: u16 = 1;
    const SETID: u16 = 2;
    const PRIVATE: u16 = 3;
    const BIND_ROOT: u16 = 4;
    const PROC: u16 = 5;
    const DEV: u16 = 6;
    const SHM: u16 = 7;
    const PIVOT: u16 = 8;
    const DETACH: u16 = 9;
    const CHDIR: u16 = 10;
    const DEVNULL: u16 = 11;
    const FORK: u16 = 12;
    const EXEC: u16 = 13;
    const JOB_DIR: u16 = 14;
    const NODES: u16 = 15;

    /// Exit status of a reaper that failed before the command ran (the error pipe says why).
    const FAILED: i32 = 125;

    fn cstring(what: &str, bytes: &[u8]) -> Result<CString, RunnerError> {
        CString::new(bytes).map_err(|_| RunnerError::Other {
            what: what.to_string(),
            message: "contains a NUL byte".into(),
        })
    }

    fn cpath(path: &Path) -> Result<CString, RunnerError> {
        cstring(&path.display().to_string(), path.as_os_str().as_bytes())
    }

    fn pointers(strings: &[CString]) -> Vec<*const c_char> {
        strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    }

    impl ChildPlan {
        fn new(cmd: &ChrootCommand, resolved: &[ResolvedMount]) -> Result<ChildPlan, RunnerError> {
            let job_dir = cmd.root.parent().unwrap_or(Path::new("/"));
            let root_name = cmd.root.file_name().unwrap_or_default();
            let root = Path::new("");
            let mut steps: Vec<String> = [
                "setting the parent-death signal",
                "waiting for rcross to write the job's id maps",
                "taking the job's root ids (setresuid/setresgid 0 in its user namespace)",
                "making the job's mount namespace private",
                "bind-mounting the job's root onto itself",
                "mounting a fresh /proc of the job's PID namespace (a user namespace may not \
                 mount one while parts of the host's /proc are hidden by mounts over them)",
                "mounting a tmpfs on /dev in the chroot",
                "creating /dev/shm in the chroot",
                "entering the job's root (pivot_root)",
                "detaching the host's root from the job's mount namespace",
                "",
                "opening /dev/null in the chroot",
                "starting the build command's process (fork in the job's PID namespace)",
                "running /bin/sh in the chroot",
                "entering the job directory",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if let Some(step) = steps.get_mut(usize::from(CHDIR)) {
                *step = format!(
                    "changing to the working directory {} in the chroot (does it exist in the \
                     project?)",
                    cmd.workdir
                );
            }
            if let Some(step) = steps.get_mut(usize::from(EXEC)) {
                *step = format!("running {} in the chroot", argv0(cmd));
            }
            let mut nodes = Vec::new();
            for n in DEV_NODES {
                let host = Path::new("/dev").join(n);
                let inside = root.join("dev").join(n);
                steps.push(format!("creating /dev/{n} in the chroot"));
                steps.push(format!("binding {} into the chroot", host.display()));
                nodes.push((cpath(&host)?, cpath(&inside)?));
            }
            let mut links = Vec::new();
            for (name, target) in DEV_LINKS {
                steps.push(format!("creating the symlink /dev/{name} in the chroot"));
                links.push((
                    cstring(target, target.as_bytes())?,
                    cpath(&root.join("dev").join(name))?,
                ));
            }
            let argv = cmd
                .argv
                .iter()
                .map(|a| cstring(&format!("the argument {a:?} of the command"), a.as_bytes()))
                .collect::<Result<Vec<_>, _>>()?;
            let programs = programs(cmd)?;
            let envp = cmd
                .env
                .iter()
                .map(|(k, v)| cstring(&format!("the variable {k}"), format!("{k}={v}").as_bytes()))
                .collect::<Result<Vec<_>, _>>()?;
            let mounts_at = step_number(steps.len())?;
            let mut mounts = Vec::new();
            for (m, r) in cmd.mounts.iter().zip(resolved) {
                mounts.push(mount_step(m, r, &mut steps)?);
            }
            let loopback_step = step_number(steps.len())?;
            steps.push(
                "bringing up the loopback interface lo in the job's network namespace".into(),
            );
            let user_step = step_number(steps.len())?;
            let (user, groups) = match &cmd.user {
                Some(RunAs { uid, gid, groups }) => {
                    steps.push(format!(
                        "taking the command's ids {uid}:{gid} (groups {groups:?}) in the job"
                    ));
                    (Some((*uid, *gid)), groups.clone())
                }
                None => {
                    steps.push(String::new());
                    (None, Vec::new())
                }
            };
            Ok(ChildPlan {
                job_dir: cpath(job_dir)?,
                root: cpath(Path::new(root_name))?,
                proc_dir: cpath(&root.join("proc"))?,
                dev_dir: cpath(&root.join("dev"))?,
                nodes,
                links,
                shm: cpath(&root.join("dev/shm"))?,
                workdir: cstring(&cmd.workdir, cmd.workdir.as_bytes())?,
                argv: pointers(&argv),
                _argv: argv,
                envp: pointers(&envp),
                _envp: envp,
                programs,
                set_groups: matches!(cmd.ids, JobIds::Range { .. }),
                user,
                groups,
                set_user_groups: !matches!(cmd.ids, JobIds::Single { .. }),
                mounts,
                own_network: cmd.network == ChrootNetwork::None,
                mounts_at,
                loopback_step,
                user_step,
                steps,
            })
        }

        /// The job's first process: PID 1 of its PID namespace, in its user and mount
        /// namespaces. Waits for its id maps, enters the root, starts the command and reaps
        /// until it exits, then kills whatever is left and exits with the command's status.
        fn reaper(&self, fds: &Fds) -> ! {
            let fail = |step: u16, e: Errno| -> ! { report_and_exit(fds.report, step, e) };
            // SAFETY: closing descriptors this process owns (its copies of rcross's ends).
            unsafe {
                libc::close(fds.out_r);
                libc::close(fds.sync_w);
            }
            if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
                fail(PDEATHSIG, e);
            }
            // rcross writes the maps, then one byte; end of file means it gave up (or died
            // before the death signal was set).
            let mut byte = [0u8; 1];
            loop {
                // SAFETY: read(2) into a live one-byte buffer.
                let n = unsafe { libc::read(fds.sync_r, byte.as_mut_ptr().cast(), 1) };
                match n {
                    1 => break,
                    0 => exit(FAILED),
                    _ if Errno::last() == Errno::EINTR => continue,
                    _ => fail(SYNC, Errno::last()),
                }
            }
            // SAFETY: closing this process's copy.
            unsafe {
                libc::close(fds.sync_r);
            }
            // By path while this process is still rcross's ids; the job's may not search the
            // directory's ancestors.
            if let Err(e) = nix::unistd::chdir(self.job_dir.as_c_str()) {
                fail(JOB_DIR, e);
            }
            if let Err((step, e)) = self.open_sources() {
                fail(step, e);
            }
            // Raw system calls: glibc's setres[ug]id would signal the threads it believes this
            // process has (it has only this one; the others were rcross's).
            // SAFETY: plain system calls on integers and an empty list.
            let ids = unsafe {
                let mut r = libc::syscall(libc::SYS_setresgid, 0, 0, 0);
                if r == 0 && self.set_groups {
                    r = libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>());
                }
                if r == 0 {
                    r = libc::syscall(libc::SYS_setresuid, 0, 0, 0);
                }
                r
            };
            if ids != 0 {
                fail(SETID, Errno::last());
            }
            if self.own_network {
                if let Err(e) = loopback_up() {
                    fail(self.loopback_step, e);
                }
            }
            let null = match self.enter() {
                Ok(fd) => fd,
                Err((step, e)) => fail(step, e),
            };
            // SAFETY: fork semantics through the raw system call (no atfork handlers, which
            // could wait on locks rcross's other threads held when this process was cloned).
            let command = unsafe {
                libc::syscall(
                    libc::SYS_clone,
                    libc::SIGCHLD as libc::c_ulong,
                    0usize,
                    0usize,
                    0usize,
                    0usize,
                )
            };
            if command < 0 {
                fail(FORK, Errno::last());
            }
            if command == 0 {
                self.exec(fds, null);
            }
            let command = command as libc::pid_t;
            // SAFETY: closing this process's copies; the command has its own.
            unsafe {
                libc::close(fds.out_w);
                libc::close(fds.report);
                libc::close(null);
            }
            let mut code = FAILED;
            loop {
                let mut status = 0;
                // SAFETY: waitpid(2) with a live status word.
                let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
                if pid < 0 {
                    if Errno::last() == Errno::EINTR {
                        continue;
                    }
                    // ECHILD: nothing is left.
                    break;
                }
                if pid == command {
                    code = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else if libc::WIFSIGNALED(status) {
                        128 + libc::WTERMSIG(status)
                    } else {
                        FAILED
                    };
                    // Everything else in the namespace: what the command left behind. PID 1
                    // itself is spared by kill(-1).
                    // SAFETY: kill(2) on this PID namespace.
                    unsafe {
                        libc::kill(-1, libc::SIGKILL);
                    }
                }
            }
            exit(code)
        }

        /// The mounts, in the job's mount namespace, then into the root. Returns /dev/null
        /// there, for the command's stdin.
        fn enter(&self) -> Result<RawFd, (u16, Errno)> {
            let none: Option<&CStr> = None;
            nix::mount::mount(
                none,
                c"/",
                none,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                none,
            )
            .map_err(|e| (PRIVATE, e))?;
            // pivot_root needs the new root to be a mount point; entering it by name (not `.`)
            // puts this process on the new mount.
            nix::mount::mount(
                Some(self.root.as_c_str()),
                self.root.as_c_str(),
                none,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                none,
            )
            .map_err(|e| (BIND_ROOT, e))?;
            nix::unistd::chdir(self.root.as_c_str()).map_err(|e| (BIND_ROOT, e))?;
            // This process is PID 1 of the new PID namespace, so this /proc shows the job only.
            nix::mount::mount(
                Some(c"proc"),
                self.proc_dir.as_c_str(),
                Some(c"proc"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                none,
            )
            .map_err(|e| (PROC, e))?;
            nix::mount::mount(
                Some(c"tmpfs"),
                self.dev_dir.as_c_str(),
                Some(c"tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                Some(c"mode=755,size=65536k"),
            )
            .map_err(|e| (DEV, e))?;
            for (i, (host, inside)) in self.nodes.iter().enumerate() {
                let step = NODES + 2 * i as u16;
                let fd = nix::fcntl::open(
                    inside.as_c_str(),
                    OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o666),
                )
                .map_err(|e| (step, e))?;
                drop(fd);
                nix::mount::mount(
                    Some(host.as_c_str()),
                    inside.as_c_str(),
                    none,
                    MsFlags::MS_BIND,
                    none,
                )
                .map_err(|e| (step + 1, e))?;
            }
            let links_at = NODES + 2 * self.nodes.len() as u16;
            for (i, (target, link)) in self.links.iter().enumerate() {
                nix::unistd::symlinkat(target.as_c_str(), nix::fcntl::AT_FDCWD, link.as_c_str())
                    .map_err(|e| (links_at + i as u16, e))?;
            }
            nix::unistd::mkdir(self.shm.as_c_str(), Mode::from_bits_truncate(0o777))
                .and_then(|()| {
                    nix::sys::stat::fchmodat(
                        nix::fcntl::AT_FDCWD,
                        self.shm.as_c_str(),
                        Mode::from_bits_truncate(0o1777),
                        nix::sys::stat::FchmodatFlags::FollowSymlink,
                    )
                })
                .map_err(|e| (SHM, e))?;
            self.mount_extra()?;
            // The root becomes `/` and the host's root, stacked under it, is detached: no path,
            // `..` or /proc/1/root leads back to it (unlike chroot, which a process with
            // CAP_SYS_CHROOT in its namespace can leave).
            nix::unistd::pivot_root(c".", c".").map_err(|e| (PIVOT, e))?;
            nix::mount::umount2(c".", MntFlags::MNT_DETACH).map_err(|e| (DETACH, e))?;
            nix::unistd::chdir(c"/").map_err(|e| (PIVOT, e))?;
            nix::unistd::chdir(self.workdir.as_c_str()).map_err(|e| (CHDIR, e))?;
            // SAFETY: open(2) of a constant path; the descriptor is this process's.
            let null =
                unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if null < 0 {
                return Err((DEVNULL, Errno::last()));
            }
            Ok(null)
        }

        /// The command's process: its stdio, default signal handling, no descriptor of rcross
        /// past exec, then `/bin/sh -c COMMAND`.
        fn exec(&self, fds: &Fds, null: RawFd) -> ! {
            // SAFETY: system calls on descriptors this process owns and on prepared,
            // NUL-terminated argument and environment arrays that outlive the call.
            unsafe {
                if libc::dup2(null, 0) < 0
                    || libc::dup2(fds.out_w, 1) < 0
                    || libc::dup2(fds.out_w, 2) < 0
                {
                    report_and_exit(fds.report, EXEC, Errno::last());
                }
                // Rust ignores SIGPIPE; a build's processes expect the default.
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(libc::SIGPIPE, &action, std::ptr::null_mut());
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                // Whatever rcross inherited without close-on-exec stays out of the job.
                libc::syscall(
                    libc::SYS_close_range,
                    3u32,
                    u32::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                );
                if let Some((uid, gid)) = self.user {
                    let mut r = 0;
                    if self.set_user_groups {
                        r = libc::syscall(
                            libc::SYS_setgroups,
                            self.groups.len(),
                            self.groups.as_ptr(),
                        );
                    }
                    if r == 0 {
                        r = libc::syscall(libc::SYS_setresgid, gid, gid, gid);
                    }
                    if r == 0 {
                        r = libc::syscall(libc::SYS_setresuid, uid, uid, uid);
                    }
                    if r != 0 {
                        report_and_exit(fds.report, self.user_step, Errno::last());
                    }
                }
                // As execvp does: a missing candidate is skipped, the first other failure is
                // what is reported when none runs.
                let mut failure = Errno::ENOENT;
                for program in &self.programs {
                    libc::execve(program.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr());
                    let e = Errno::last();
                    if failure == Errno::ENOENT && e != Errno::ENOENT && e != Errno::ENOTDIR {
                        failure = e;
                    }
                }
                report_and_exit(fds.report, EXEC, failure)
            }
        }

        /// Open the bind mounts' sources, while the job still has rcross's ids: a source may sit
        /// in a directory closed to the job's (a secret in a 0700 directory).
        fn open_sources(&self) -> Result<(), (u16, Errno)> {
            for (i, m) in self.mounts.iter().enumerate() {
                if let MountKind::Bind { source, fd, .. } = &m.kind {
                    // SAFETY: open(2) of a prepared NUL-terminated path.
                    let n = unsafe { libc::open(source.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
                    if n < 0 {
                        return Err((self.mounts_at + 4 * i as u16, Errno::last()));
                    }
                    fd.set(n);
                }
            }
            Ok(())
        }

        /// The extra mounts, in order, in the job's mount namespace before it enters the root
        /// (targets are relative to it, the current directory).
        fn mount_extra(&self) -> Result<(), (u16, Errno)> {
            let none: Option<&CStr> = None;
            for (i, m) in self.mounts.iter().enumerate() {
                let step = self.mounts_at + 4 * i as u16;
                for (path, file) in &m.make {
                    if *file {
                        nix::fcntl::open(
                            path.as_c_str(),
                            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                            Mode::from_bits_truncate(0o644),
                        )
                        .map(drop)
                    } else {
                        nix::unistd::mkdir(path.as_c_str(), Mode::from_bits_truncate(0o755))
                    }
                    .map_err(|e| (step + 1, e))?;
                }
                match &m.kind {
                    MountKind::Bind { fd, remount, .. } => {
                        let mut buf = [0u8; 32];
                        let source = fd_path(fd.get(), &mut buf);
                        nix::mount::mount(
                            Some(source),
                            m.target.as_c_str(),
                            none,
                            MsFlags::MS_BIND | MsFlags::MS_REC,
                            none,
                        )
                        .map_err(|e| (step + 2, e))?;
                        // SAFETY: closing this process's descriptor of the source.
                        unsafe {
                            libc::close(fd.get());
                        }
                        if let Some(flags) = remount {
                            nix::mount::mount(none, m.target.as_c_str(), none, *flags, none)
                                .map_err(|e| (step + 3, e))?;
                        }
                    }
                    MountKind::Tmpfs { flags, data } => {
                        nix::mount::mount(
                            Some(c"tmpfs"),
                            m.target.as_c_str(),
                            Some(c"tmpfs"),
                            *flags,
                            Some(data.as_c_str()),
                        )
                        .map_err(|e| (step + 2, e))?;
                    }
                }
            }
            Ok(())
        }
    }

    /// `proc/self/fd/N` (the job's own `/proc`, relative to its root) written into `buf`: a
    /// path that reaches the descriptor's file, made without allocating.
    fn fd_path(fd: RawFd, buf: &mut [u8; 32]) -> &CStr {
        const PREFIX: &[u8] = b"proc/self/fd/";
        let mut digits = [0u8; 10];
        let mut n = fd.unsigned_abs();
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 || len == digits.len() {
                break;
            }
        }
        buf[..PREFIX.len()].copy_from_slice(PREFIX);
        for i in 0..len {
            buf[PREFIX.len() + i] = digits[len - 1 - i];
        }
        buf[PREFIX.len() + len] = 0;
        CStr::from_bytes_until_nul(&buf[..]).unwrap_or(c"")
    }

    /// `ifreq` as SIOCGIFFLAGS and SIOCSIFFLAGS use it.
    #[repr(C)]
    struct InterfaceFlags {
        name: [c_char; libc::IFNAMSIZ],
        flags: libc::c_short,
        _rest: [u8; 22],
    }

    /// Bring up `lo` in this process's network namespace.
    fn loopback_up() -> Result<(), Errno> {
        // SAFETY: socket(2), ioctl(2) on a live `ifreq`-shaped struct, close(2).
        unsafe {
            let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if socket < 0 {
                return Err(Errno::last());
            }
            let mut request: InterfaceFlags = std::mem::zeroed();
            request.name[0] = b'l' as c_char;
            request.name[1] = b'o' as c_char;
            let mut r = libc::ioctl(socket, libc::SIOCGIFFLAGS, &mut request);
            if r == 0 {
                request.flags |= libc::IFF_UP as libc::c_short;
                r = libc::ioctl(socket, libc::SIOCSIFFLAGS, &request);
            }
            let e = Errno::last();
            libc::close(socket);
            if r == 0 {
                Ok(())
            } else {
                Err(e)
            }
        }
    }

    /// A step's number, which the job writes to the error pipe.
    fn step_number(n: usize) -> Result<u16, RunnerError> {
        u16::try_from(n).map_err(|_| RunnerError::Other {
            what: "preparing the job".into(),
            message: format!("{n} start-up steps are too many (too many mounts)"),
        })
    }

    /// The program (empty for an empty argv, which `check_command` refuses).
    fn argv0(cmd: &ChrootCommand) -> &str {
        cmd.argv.first().map_or("", String::as_str)
    }

    /// The PATH a program name is looked up in: the command's, else [`DEFAULT_PATH`].
    fn command_path(cmd: &ChrootCommand) -> &str {
        cmd.env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map_or(DEFAULT_PATH, |(_, v)| v.as_str())
    }

    /// What `execve` is tried on (see `ChildPlan::programs`).
    fn programs(cmd: &ChrootCommand) -> Result<Vec<CString>, RunnerError> {
        let argv0 = argv0(cmd);
        if argv0.contains('/') {
            return Ok(vec![cstring(argv0, argv0.as_bytes())?]);
        }
        command_path(cmd)
            .split(':')
            .map(|dir| {
                let dir = if dir.is_empty() { "." } else { dir };
                let full = format!("{}/{argv0}", dir.trim_end_matches('/'));
                cstring(&full, full.as_bytes())
            })
            .collect()
    }

    /// One mount as the job makes it; its four steps are added to `steps`.
    fn mount_step(
        m: &super::ChrootMount,
        resolved: &ResolvedMount,
        steps: &mut Vec<String>,
    ) -> Result<MountStep, RunnerError> {
        let target = &m.target;
        let shown = resolved.target.display();
        let make = resolved
            .make_in_job
            .iter()
            .map(|(p, file)| Ok((cpath(p)?, *file)))
            .collect::<Result<Vec<_>, RunnerError>>()?;
        let kind = match &m.source {
            MountSource::Host(source) => {
                let remount = if m.read_only {
                    Some(
                        MsFlags::MS_REMOUNT
                            | MsFlags::MS_BIND
                            | MsFlags::MS_RDONLY
                            | MsFlags::MS_NOSUID
                            | MsFlags::MS_NODEV
                            | locked_flags(source)?,
                    )
                } else {
                    None
                };
                steps.push(format!(
                    "opening the mount source {} (for {target})",
                    source.display()
                ));
                steps.push(format!(
                    "making the mount point {target} (/{shown}) inside the tmpfs above it"
                ));
                steps.push(format!(
                    "bind-mounting {} on {target} (/{shown}) in the chroot",
                    source.display()
                ));
                steps.push(format!(
                    "making the bind mount on {target} (/{shown}) read-only"
                ));
                MountKind::Bind {
                    source: cpath(source)?,
                    fd: Cell::new(-1),
                    remount,
                }
            }
            MountSource::Tmpfs { size } => {
                steps.push(String::new());
                steps.push(format!(
                    "making the mount point {target} (/{shown}) inside the tmpfs above it"
                ));
                steps.push(format!(
                    "mounting a tmpfs on {target} (/{shown}) in the chroot"
                ));
                steps.push(String::new());
                let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
                if m.read_only {
                    flags |= MsFlags::MS_RDONLY;
                }
                let data = match size {
                    Some(n) => format!("mode=1777,size={n}"),
                    None => "mode=1777".to_string(),
                };
                MountKind::Tmpfs {
                    flags,
                    data: cstring(&data, data.as_bytes())?,
                }
            }
        };
        Ok(MountStep {
            make,
            target: cpath(&resolved.target)?,
            kind,
        })
    }

    /// The flags of the mount holding `source` that a remount in a user namespace must keep
    /// (the kernel refuses to clear them there: they are locked).
    fn locked_flags(source: &Path) -> Result<MsFlags, RunnerError> {
        use nix::sys::statvfs::FsFlags;
        let st = nix::sys::statvfs::statvfs(source).map_err(|e| RunnerError::Other {
            what: format!("reading the mount flags of {}", source.display()),
            message: e.to_string(),
        })?;
        let have = st.flags();
        let mut flags = MsFlags::empty();
        for (fs, ms) in [
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if have.contains(fs) {
                flags |= ms;
            }
        }
        Ok(flags)
    }

    /// A command the job cannot run, refused before anything is started: no program, or a
    /// user the job's ids lack.
    fn check_command(cmd: &ChrootCommand) -> Result<(), RunnerError> {
        if cmd.argv.is_empty() {
            return Err(RunnerError::Other {
                what: "running a command in the chroot".into(),
                message: "the command is empty (no program to run)".into(),
            });
        }
        let Some(RunAs { uid, gid, groups }) = &cmd.user else {
            return Ok(());
        };
        let who = if groups.is_empty() {
            format!("USER {uid}:{gid}")
        } else {
            format!("USER {uid}:{gid} (groups {groups:?})")
        };
        let ids = std::iter::once(uid)
            .chain(std::iter::once(gid))
            .chain(groups);
        match cmd.ids {
            JobIds::Single { .. } => {
                if ids.clone().any(|id| *id != 0) {
                    return Err(RunnerError::Other {
                        what: format!("{who} needs a range of ids"),
                        message: "the job has only id 0 (rcross is not root, and your user has \
                                  no range in /etc/subuid and /etc/subgid usable with \
                                  newuidmap); run rcross as root or give your user a range in \
                                  /etc/subuid and /etc/subgid"
                            .into(),
                    });
                }
            }
            JobIds::Range { count, .. } | JobIds::Delegated { count, .. } => {
                let last = match cmd.ids {
                    JobIds::Delegated { .. } => count,
                    _ => count.saturating_sub(1),
                };
                if let Some(id) = ids.clone().find(|id| **id > last) {
                    return Err(RunnerError::Other {
                        what: who,
                        message: format!(
                            "the id {id} is outside the job's ids 0-{last} ({}); use ids \
                             below {}",
                            cmd.ids.describe(),
                            u64::from(last) + 1
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The descriptors of the job's processes (numbers in rcross, copies in the job).
    struct Fds {
        out_r: RawFd,
        out_w: RawFd,
        sync_r: RawFd,
        sync_w: RawFd,
        report: RawFd,
    }

    fn exit(code: i32) -> ! {
        // SAFETY: _exit(2) ends the process without running rcross's exit handlers.
        unsafe { libc::_exit(code) }
    }

    /// Tell rcross which step failed and how, then exit.
    fn report_and_exit(report: RawFd, step: u16, e: Errno) -> ! {
        let errno = (e as i32).to_le_bytes();
        let step = step.to_le_bytes();
        let msg = [step[0], step[1], errno[0], errno[1], errno[2], errno[3]];
        // SAFETY: write(2) of a live stack buffer.
        unsafe {
            libc::write(report, msg.as_ptr().cast(), msg.len());
        }
        exit(FAILED)
    }

    fn other(what: &str) -> impl FnOnce(io::Error) -> RunnerError + '_ {
        move |e| RunnerError::Other {
            what: what.to_string(),
            message: e.to_string(),
        }
    }

    /// Kills and reaps the job's first process (and so its PID namespace) unless disarmed.
    struct Reaper(Option<Pid>);

    impl Drop for Reaper {
        fn drop(&mut self) {
            if let Some(pid) = self.0.take() {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
            }
        }
    }

    /// Write the job's id maps from outside its user namespace (as root a range needs
    /// CAP_SETUID over the host's ids, which only rcross has; a user's delegated range needs
    /// the set-user-ID helpers).
    fn write_maps(pid: Pid, ids: &JobIds) -> Result<(), RunnerError> {
        if let Some((uid_args, gid_args)) = ids.helper_args() {
            for (helper, args) in [("newuidmap", uid_args), ("newgidmap", gid_args)] {
                let out = std::process::Command::new(helper)
                    .arg(pid.as_raw().to_string())
                    .args(&args)
                    .stdin(std::process::Stdio::null())
                    .output();
                let failure = match out {
                    Ok(o) if o.status.success() => continue,
                    Ok(o) => format!(
                        "{}: {}",
                        o.status,
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                    Err(e) => e.to_string(),
                };
                return Err(RunnerError::Other {
                    what: format!("{helper} {} {}", pid.as_raw(), args.join(" ")),
                    message: format!(
                        "{failure}; the job's ids could not be mapped ({}); check \
                         /etc/subuid and /etc/subgid, or remove them to build with a single id",
                        ids.describe()
                    ),
                });
            }
            return Ok(());
        }
        let (uid_map, gid_map) = ids.maps();
        let proc = Path::new("/proc").join(pid.as_raw().to_string());
        let write = |name: &str, data: &str| {
            let path = proc.join(name);
            std::fs::write(&path, data).map_err(|e| RunnerError::Other {
                what: format!("writing {data:?} to {}", path.display()),
                message: format!(
                    "{e}; the job's ids could not be mapped ({})",
                    ids.describe()
                ),
            })
        };
        if let JobIds::Single { .. } = ids {
            // The kernel requires it before an unprivileged gid_map.
            write("setgroups", "deny")?;
        }
        write("uid_map", &uid_map)?;
        write("gid_map", &gid_map)
    }

    /// Run the command: refuse what cannot run, make its mount points, run it, remove them.
    pub(super) fn run(
        cmd: &ChrootCommand,
        log: &mut (dyn Write + Send),
    ) -> Result<JobExit, RunnerError> {
        check_command(cmd)?;
        let failed = |message| RunnerError::Other {
            what: format!("preparing the job's mounts in {}", cmd.root.display()),
            message,
        };
        let mut points = Vec::new();
        let resolved = mounts::resolve(&cmd.root, &cmd.mounts, &mut points).map_err(failed)?;
        let mut made =
            MountPoints::make(&cmd.root, &points, cmd.ids.root_on_host()).map_err(failed)?;
        let result = run_job(cmd, &resolved, log);
        let left = made.remove();
        if !left.is_empty() {
            let left: Vec<String> = left.iter().map(|p| p.display().to_string()).collect();
            let _ = writeln!(
                log,
                "rcross: mount points rcross made were changed by the command and are left in \
                 the root: {}",
                left.join(", ")
            );
        }
        result
    }

    fn run_job(
        cmd: &ChrootCommand,
        resolved: &[ResolvedMount],
        log: &mut (dyn Write + Send),
    ) -> Result<JobExit, RunnerError> {
        let plan = ChildPlan::new(cmd, resolved)?;
        let pipe = |what| nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| other(what)(e.into()));
        let (out_r, out_w): (OwnedFd, OwnedFd) = pipe("creating the output pipe")?;
        let (step_r, step_w): (OwnedFd, OwnedFd) = pipe("creating the error pipe")?;
        let (sync_r, sync_w): (OwnedFd, OwnedFd) = pipe("creating the start pipe")?;
        let fds = Fds {
            out_r: out_r.as_raw_fd(),
            out_w: out_w.as_raw_fd(),
            sync_r: sync_r.as_raw_fd(),
            sync_w: sync_w.as_raw_fd(),
            report: step_w.as_raw_fd(),
        };
        let mut stack = vec![0u8; 1024 * 1024];
        // IPC and UTS too: they cost nothing, and a build's semaphores or hostname stay its
        // own. Not the network: builds fetch dependencies, as in Docker's default bridge.
        let mut flags = CloneFlags::CLONE_NEWUSER
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS;
        if plan.own_network {
            flags |= CloneFlags::CLONE_NEWNET;
        }
        // SAFETY: the child runs `reaper`, which makes only system calls on data prepared
        // before the clone and never returns; its stack is `stack`, large enough for it.
        let cloned = unsafe {
            nix::sched::clone(
                Box::new(|| plan.reaper(&fds)),
                &mut stack,
                flags,
                Some(libc::SIGCHLD),
            )
        };
        // The child's ends: its copies are its only ones now.
        drop(out_w);
        drop(sync_r);
        drop(step_w);
        let pid = cloned.map_err(|e| RunnerError::Other {
            what: if plan.own_network {
                "creating the job's user, PID, mount, IPC, UTS and network namespaces (clone \
                 CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNS|CLONE_NEWIPC|CLONE_NEWUTS|CLONE_NEWNET)"
                    .into()
            } else {
                "creating the job's user, PID, mount, IPC and UTS namespaces (clone \
                 CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNS|CLONE_NEWIPC|CLONE_NEWUTS)"
                    .into()
            },
            message: format!(
                "{e}; user namespaces may be disabled or exhausted (sysctl \
                 user.max_user_namespaces, kernel.unprivileged_userns_clone=1, \
                 kernel.apparmor_restrict_unprivileged_userns=0)"
            ),
        })?;
        let mut reaper = Reaper(Some(pid));
        // Held so the namespace outlives the job, for giving its files back to the user.
        let userns = match cmd.ids {
            JobIds::Delegated { .. } => Some(
                std::fs::File::open(format!("/proc/{}/ns/user", pid.as_raw()))
                    .map_err(other("opening the job's user namespace"))?,
            ),
            _ => None,
        };
        write_maps(pid, &cmd.ids)?;
        let mut sync = std::fs::File::from(sync_w);
        sync.write_all(&[1])
            .map_err(other("starting the job (its first process is gone)"))?;
        drop(sync);
        // End of file once the command is exec'd (close-on-exec), or a step and errno.
        let mut report = Vec::new();
        std::fs::File::from(step_r)
            .take(16)
            .read_to_end(&mut report)
            .map_err(other("reading the job's start-up report"))?;
        if let [s0, s1, e0, e1, e2, e3, ..] = report[..] {
            let step = u16::from_le_bytes([s0, s1]);
            let errno = Errno::from_raw(i32::from_le_bytes([e0, e1, e2, e3]));
            let mut what = plan
                .steps
                .get(usize::from(step))
                .cloned()
                .unwrap_or_else(|| "preparing the chroot".into());
            if step == EXEC {
                if let Some(why) = exec_failure(cmd, errno) {
                    what = why;
                }
            }
            return Err(RunnerError::Other {
                what,
                message: io::Error::from_raw_os_error(errno as i32).to_string(),
            });
        }
        let code = crate::runner::read_until_exit(out_r, log, |block| {
            let flags = (!block).then_some(WaitPidFlag::WNOHANG);
            match nix::sys::wait::waitpid(pid, flags) {
                Ok(WaitStatus::Exited(_, c)) => Ok(Some(i64::from(c))),
                Ok(WaitStatus::Signaled(_, s, _)) => Ok(Some(128 + s as i64)),
                Ok(_) => Ok(None),
                Err(Errno::EINTR) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
        .map_err(other("reading the chrooted command's output"))?;
        // Reaped: nothing to kill.
        reaper.0 = None;
        if let Some(userns) = &userns {
            give_back(&cmd.root, userns)?;
        }
        Ok(JobExit { code })
    }

    /// What a failed `execve` of the command means, in words.
    fn exec_failure(cmd: &ChrootCommand, errno: Errno) -> Option<String> {
        let argv0 = argv0(cmd);
        match errno {
            Errno::ENOENT if argv0 == "/bin/sh" => Some(
                "running /bin/sh in the chroot: the build image has no /bin/sh; use an image \
                 with a shell"
                    .into(),
            ),
            Errno::ENOENT if argv0.contains('/') => Some(format!(
                "running {argv0} in the chroot: no such file in the image (or the interpreter \
                 it names is missing)"
            )),
            Errno::ENOENT => Some(format!(
                "running {argv0} in the chroot: no such file in any directory of PATH={} (or \
                 the interpreter it names is missing)",
                command_path(cmd)
            )),
            Errno::ENOEXEC => Some(format!(
                "running {argv0} in the chroot: exec format error (no binfmt_misc handler \
                 catches the image's programs; run `sudo rcross setup`)"
            )),
            _ => None,
        }
    }

    /// Make every file of the job's root the user's again: with a delegated range the job may
    /// have left files and directories owned by ids of the range, which the user can neither
    /// read back nor remove. `chown -R 0:0` run as root of the job's (still held) user
    /// namespace maps them to the user.
    fn give_back(root: &Path, userns: &std::fs::File) -> Result<(), RunnerError> {
        use std::os::unix::process::CommandExt as _;
        let fd = userns.as_raw_fd();
        let mut chown = std::process::Command::new("chown");
        chown
            .args(["-R", "-h", "0:0", "--"])
            .arg(root)
            .stdin(std::process::Stdio::null());
        // SAFETY: only system calls between fork and exec; `fd` stays open in the child until
        // exec (it is close-on-exec).
        unsafe {
            chown.pre_exec(move || {
                let failed = libc::setns(fd, libc::CLONE_NEWUSER) != 0
                    || libc::syscall(libc::SYS_setresgid, 0, 0, 0) != 0
                    || libc::syscall(libc::SYS_setresuid, 0, 0, 0) != 0;
                if failed {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let what = || {
            format!(
                "giving the job's files back to the user (chown -R 0:0 {} in the job's user \
                 namespace)",
                root.display()
            )
        };
        let out = chown.output().map_err(|e| RunnerError::Other {
            what: what(),
            message: e.to_string(),
        })?;
        if !out.status.success() {
            return Err(RunnerError::Other {
                what: what(),
                message: format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(())
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::binfmt::{BinfmtMatch, Catalog, Flags, KernelEntry};
    use crate::oci::{FileContent, ImageSpec, LayerEntry, LayerOptions, RunConfig};
    use std::sync::{Arc, Mutex};

    fn arm64() -> Platform {
        "linux/arm64".parse().unwrap()
    }

    fn amd64() -> Platform {
        "linux/amd64".parse().unwrap()
    }

    fn binfmt(fix_binary: bool) -> BinfmtState {
        let c = Catalog::builtin().unwrap();
        let h = c.for_platform(&arm64()).unwrap();
        BinfmtState {
            path: PathBuf::from("/bm"),
            mounted: true,
            enabled: Some(true),
            entries: vec![KernelEntry {
                name: "qemu-aarch64".into(),
                enabled: true,
                interpreter: "/usr/bin/qemu-aarch64-static".into(),
                flags: Flags {
                    fix_binary,
                    ..Flags::default()
                },
                kind: BinfmtMatch::Magic {
                    offset: h.offset,
                    magic: h.magic.clone(),
                    mask: Some(h.mask.clone()),
                },
            }],
            reports: Vec::new(),
            unreadable: Vec::new(),
        }
    }

    /// Records what it was asked to run and plays a build: lists /rcross/src, writes to /etc
    /// and /rcross/out, optionally swaps /rcross/out for a symlink, exits with `exit`.
    struct Fake {
        state: BinfmtState,
        exit: i64,
        swap_out_for: Option<PathBuf>,
        link_out_to: Option<PathBuf>,
        ids: JobIds,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    /// A command the fake ran, with the files it found in /rcross/src.
    type Seen = (ChrootCommand, Vec<String>);

    impl ChrootSystem for Fake {
        fn job_ids(&self) -> JobIds {
            self.ids
        }
        fn host_platform(&self) -> Result<Platform, String> {
            Ok(amd64())
        }
        fn binfmt(&self, _dir: &Path) -> BinfmtState {
            self.state.clone()
        }
        fn run(
            &self,
            command: &ChrootCommand,
            log: &mut (dyn Write + Send),
        ) -> Result<JobExit, RunnerError> {
            let root = &command.root;
            let mut files = Vec::new();
            let src = root.join("rcross/src");
            let mut stack = vec![src.clone()];
            while let Some(dir) = stack.pop() {
                for e in std::fs::read_dir(&dir).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        stack.push(p.clone());
                    }
                    files.push(p.strip_prefix(&src).unwrap().display().to_string());
                }
            }
            files.sort();
            assert!(root.join("proc").is_dir() && root.join("dev").is_dir());
            std::fs::write(root.join("etc/touched"), "by the job").unwrap();
            std::fs::write(root.join("rcross/out/prog"), "built").unwrap();
            if let Some((uid, gid)) = self.ids.to_host(42, 65534) {
                // What `chown _apt:nogroup` inside leaves on the host.
                std::os::unix::fs::lchown(root.join("rcross/out/prog"), Some(uid), Some(gid))
                    .unwrap();
            }
            if let Some(target) = &self.link_out_to {
                std::os::unix::fs::symlink(target, root.join("rcross/out/app")).unwrap();
            }
            if let Some(target) = &self.swap_out_for {
                std::fs::remove_dir_all(root.join("rcross/out")).unwrap();
                std::os::unix::fs::symlink(target, root.join("rcross/out")).unwrap();
            }
            writeln!(log, "compiling").unwrap();
            self.seen.lock().unwrap().push((command.clone(), files));
            Ok(JobExit { code: self.exit })
        }
    }

    /// An arm64 image layout with a (pretend) shell and an Env.
    fn layout(dir: &Path) -> BuildImage {
        let layout = crate::oci::OciLayout::create(dir).unwrap();
        let layer = layout
            .write_layer(
                &[
                    LayerEntry::file("bin/sh", FileContent::Bytes(b"\x7fELF".to_vec()), 0o755),
                    LayerEntry::file(
                        "etc/os-release",
                        FileContent::Bytes(b"ID=test\n".to_vec()),
                        0o644,
                    ),
                ],
                &LayerOptions::default(),
            )
            .unwrap();
        let spec = ImageSpec {
            platform: arm64(),
            layers: vec![layer],
            history: Vec::new(),
            run: RunConfig {
                env: vec!["PATH=/usr/bin:/bin".into(), "LANG=C.UTF-8".into()],
                ..RunConfig::default()
            },
            created: 0,
            annotations: Default::default(),
        };
        let manifest = layout.write_image(&spec).unwrap();
        BuildImage::Layout {
            dir: dir.to_path_buf(),
            reference: None,
            manifest: manifest.digest,
        }
    }

    struct Setup {
        _tmp: tempfile::TempDir,
        job: ContainerJob,
        options: ChrootOptions,
    }

    fn setup() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let context = t.join("project");
        std::fs::create_dir_all(context.join(".git")).unwrap();
        std::fs::create_dir_all(context.join("sub")).unwrap();
        std::fs::write(context.join(".git/config"), "secret").unwrap();
        std::fs::write(context.join("sub/hello.c"), "int main(){}").unwrap();
        std::fs::create_dir_all(t.join("out")).unwrap();
        let job = ContainerJob {
            platform: arm64(),
            image: layout(&t.join("image")),
            context,
            workdir: PathBuf::from("sub"),
            command: "make".into(),
            env: vec![
                ("PATH".into(), "/opt/bin:/usr/bin".into()),
                ("RCROSS_OUT".into(), OUT_DIR.into()),
            ],
            out_dir: t.join("out"),
        };
        let options = ChrootOptions::in_cache(&t.join("cache/rcross/rootfs"));
        Setup {
            _tmp: tmp,
            job,
            options,
        }
    }

    fn fake(state: BinfmtState, exit: i64) -> Box<Fake> {
        Box::new(Fake {
            state,
            exit,
            swap_out_for: None,
            link_out_to: None,
            ids: JobIds::Single {
                uid: 1000,
                gid: 1000,
            },
            seen: Arc::new(Mutex::new(Vec::new())),
        })
    }

    fn job_dirs(options: &ChrootOptions) -> usize {
        std::fs::read_dir(&options.work).map_or(0, |d| d.count())
    }

    #[test]
    fn a_job_gets_the_project_and_gives_back_its_output() {
        let s = setup();
        let system = fake(binfmt(true), 0);
        let seen = Arc::clone(&system.seen);
        let runner = ChrootRunner::with_system(s.options.clone(), system);
        let mut log = Vec::new();
        let exit = runner.run(&s.job, &mut log).unwrap();
        assert!(exit.success());
        assert_eq!(
            std::fs::read_to_string(s.job.out_dir.join("prog")).unwrap(),
            "built"
        );
        let seen = seen.lock().unwrap().clone();
        let (cmd, files) = &seen[0];
        assert_eq!(files, &["sub", "sub/hello.c"], ".git stays out");
        assert_eq!(cmd.workdir, "/rcross/src/sub");
        assert_eq!(cmd.argv, ["/bin/sh", "-c", "make"]);
        assert_eq!(
            (&cmd.user, &cmd.mounts, cmd.network),
            (&None, &Vec::new(), ChrootNetwork::Host)
        );
        assert_eq!(
            cmd.ids,
            JobIds::Single {
                uid: 1000,
                gid: 1000
            },
            "not root: a user namespace maps the user"
        );
        let get = |k: &str| cmd.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("PATH").as_deref(),
            Some("/opt/bin:/usr/bin"),
            "the job wins"
        );
        assert_eq!(get("LANG").as_deref(), Some("C.UTF-8"), "the image's Env");
        assert_eq!(get("HOME").as_deref(), Some("/root"));
        assert_eq!(get("RCROSS_OUT").as_deref(), Some(OUT_DIR));
        let text = String::from_utf8(log).unwrap();
        assert!(text.contains("unpacked the root filesystem"), "{text}");
        assert!(text.contains("compiling"), "{text}");
        // The job root is gone, the cached root is pristine.
        assert_eq!(job_dirs(&s.options), 0);
        let hex = std::fs::read_dir(&s.options.cache)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert!(!hex.join("root/etc/touched").exists());
        assert!(!hex.join("root/rcross").exists());
        // The second job reuses it.
        std::fs::remove_file(s.job.out_dir.join("prog")).unwrap();
        let mut log = Vec::new();
        runner.run(&s.job, &mut log).unwrap();
        assert!(String::from_utf8(log).unwrap().contains("reusing the root"));
    }

    /// As root (tests run as root): the job's copy is owned inside its range, what rcross adds
    /// too, and the output comes back with the ids the job gave it.
    #[test]
    fn a_range_job_s_root_is_shifted_and_its_output_shifted_back() {
        use std::os::unix::fs::MetadataExt as _;
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test changes owners: run it as root"
        );
        let s = setup();
        let mut system = fake(binfmt(true), 0);
        let base = 300_000;
        system.ids = JobIds::Range {
            uid_base: base,
            gid_base: base + 1,
            count: 65536,
        };
        let owners = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&system.seen);
        let runner = ChrootRunner::with_system(s.options.clone(), system);
        // Look at the job's root while the fake runs: through the log, which is written then.
        type Owners = Arc<Mutex<Vec<(String, u32, u32)>>>;
        struct Peek<'a>(&'a ChrootOptions, Owners);
        impl Write for Peek<'_> {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                if buf.starts_with(b"compiling") {
                    for job in std::fs::read_dir(&self.0.work).unwrap() {
                        let root = job.unwrap().path().join("root");
                        for p in [
                            "etc/os-release",
                            "rcross/src/sub/hello.c",
                            "rcross/out",
                            "tmp",
                        ] {
                            let m = std::fs::symlink_metadata(root.join(p)).unwrap();
                            self.1.lock().unwrap().push((p.into(), m.uid(), m.gid()));
                        }
                    }
                }
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut peek = Peek(&s.options, Arc::clone(&owners));
        let exit = runner.run(&s.job, &mut peek).unwrap();
        assert!(exit.success());
        assert!(matches!(
            seen.lock().unwrap()[0].0.ids,
            JobIds::Range { .. }
        ));
        let owners = owners.lock().unwrap().clone();
        assert_eq!(owners.len(), 4, "{owners:?}");
        for (p, uid, gid) in owners {
            assert_eq!((uid, gid), (base, base + 1), "{p}");
        }
        let prog = std::fs::metadata(s.job.out_dir.join("prog")).unwrap();
        assert_eq!((prog.uid(), prog.gid()), (42, 65534));
        // The cache keeps the image's ids.
        let hex = std::fs::read_dir(&s.options.cache)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert_eq!(
            std::fs::metadata(hex.join("root/etc/os-release"))
                .unwrap()
                .uid(),
            0
        );
    }

    #[test]
    fn a_failing_command_is_an_exit_code_and_leaves_no_output() {
        let s = setup();
        let runner = ChrootRunner::with_system(s.options.clone(), fake(binfmt(true), 2));
        let exit = runner.run(&s.job, &mut Vec::new()).unwrap();
        assert_eq!(exit, JobExit { code: 2 });
        assert_eq!(std::fs::read_dir(&s.job.out_dir).unwrap().count(), 0);
        assert_eq!(job_dirs(&s.options), 0);
    }

    #[test]
    fn an_output_link_pointing_out_of_it_is_refused() {
        let s = setup();
        let mut system = fake(binfmt(true), 0);
        system.link_out_to = Some(PathBuf::from("/etc/passwd"));
        let runner = ChrootRunner::with_system(s.options.clone(), system);
        let e = runner.run(&s.job, &mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("app: symlink to /etc/passwd"), "{e}");
        assert!(!s.job.out_dir.join("app").exists());
        assert_eq!(job_dirs(&s.options), 0);
    }

    #[test]
    fn an_output_directory_swapped_for_a_symlink_is_not_followed() {
        let s = setup();
        let host_dir = tempfile::tempdir().unwrap();
        std::fs::write(host_dir.path().join("host-file"), "host").unwrap();
        let mut system = fake(binfmt(true), 0);
        system.swap_out_for = Some(host_dir.path().to_path_buf());
        let runner = ChrootRunner::with_system(s.options.clone(), system);
        let e = runner.run(&s.job, &mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("is a symlink"), "{e}");
        assert_eq!(std::fs::read_dir(&s.job.out_dir).unwrap().count(), 0);
        assert_eq!(job_dirs(&s.options), 0);
    }

    #[test]
    fn a_foreign_job_without_a_usable_handler_names_rcross_setup() {
        let s = setup();
        let mut unmounted = binfmt(true);
        unmounted.mounted = false;
        let mut empty = binfmt(true);
        empty.entries.clear();
        for (state, want) in [
            (unmounted, "not mounted at /bm"),
            (empty, "no binfmt_misc handler for linux/arm64"),
            (binfmt(false), "without the F flag"),
        ] {
            let runner = ChrootRunner::with_system(s.options.clone(), fake(state, 0));
            let e = runner.run(&s.job, &mut Vec::new()).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(want), "{text}");
            assert!(
                text.contains("`sudo rcross setup --platform linux/arm64`"),
                "{text}"
            );
            assert!(text.starts_with("chroot build for linux/arm64"), "{text}");
            assert_eq!(e.exit_code(), crate::exit::ENVIRONMENT);
        }
        assert!(
            !s.options.cache.exists(),
            "nothing unpacked before the check"
        );
        // Native platforms need no handler.
        let mut empty = binfmt(true);
        empty.entries.clear();
        for p in ["linux/amd64", "linux/386"] {
            check_handler(p.parse().unwrap(), amd64(), &empty).unwrap();
        }
    }

    #[test]
    fn a_platform_the_image_lacks_is_an_image_error() {
        let mut s = setup();
        // Native, so no handler is needed; the arm64 image lacks it.
        s.job.platform = amd64();
        let runner = ChrootRunner::with_system(s.options.clone(), fake(binfmt(true), 0));
        let e = runner.run(&s.job, &mut Vec::new()).unwrap_err();
        assert!(matches!(e, RunnerError::Image { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("has no linux/amd64 image; it has: linux/arm64. Use a build image"),
            "{text}"
        );
    }

    #[test]
    fn environment_layers_image_defaults_and_job() {
        let env = environment(
            &["A=1".into(), "EMPTY=".into(), "B".into()],
            &[("A".into(), "2".into())],
        );
        assert_eq!(
            env,
            [
                ("A".to_string(), "2".to_string()),
                ("EMPTY".into(), "".into()),
                ("B".into(), "".into()),
                ("PATH".into(), DEFAULT_PATH.into()),
                ("HOME".into(), "/root".into()),
            ]
        );
    }
}
