//! Running one platform's build graph: each stage from its base's root filesystem, each step
//! looked up in the step cache ([`super::steps`]) and run only on a miss — RUN in the sandbox
//! ([`crate::pipeline::chroot`]; natively for a stage of the build machine's platform, through
//! QEMU's binfmt_misc handlers otherwise), COPY/ADD through [`super::copy`], WORKDIR's mkdir —
//! and the root's difference before and after it written as the step's layer
//! ([`super::snapshot`]).
//!
//! A stage's root is made only when a step misses (or another stage copies from it): the base
//! image's unpacked root (cached per manifest) copied in, then the layers of the steps that were
//! cache hits applied. A rebuild of an unchanged Dockerfile therefore runs nothing and unpacks
//! nothing. Roots keep their files in the host ids of the sandbox's id range
//! ([`JobIds`]): image root is the range's first id, so `chown` and package managers work
//! inside, and nothing is the host's root. Layers map them back to image ids.

use super::bases::{BaseImages, ResolvedBase};
use super::copy::{self, CopyFrom, CopySpec};
use super::ignore::DockerIgnore;
use super::overlay;
use super::secrets::Secrets;
use super::snapshot::{self, DiffLayerOptions};
use super::steps::{self, StepCache, StepRecord, StoredLayer};
use super::users;
use crate::detect::BinfmtState;
use crate::dockerfile::{
    BuildGraph, CommandForm, Copy as CopyStep, Instruction, Mount, Network, Run, Stage, StageBase,
    StageRef, Step,
};
use crate::oci::{self, History, Layer, LayerOptions};
use crate::pipeline::chroot::{
    self, ChrootCommand, ChrootMount, ChrootNetwork, ChrootSystem, JobIds, MountSource,
};
use crate::pipeline::rootfs::{self, CopyOptions, CopyOwners};
use crate::pipeline::Reporter;
use crate::platform::Platform;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Why a platform's build stopped.
#[derive(Debug, thiserror::Error)]
#[error("{platform}: {at}: {message}")]
pub struct StepError {
    pub platform: Platform,
    /// `Dockerfile:12 RUN make` or `stage build`.
    pub at: String,
    pub message: String,
    /// The end of the step's output, for a failed RUN.
    pub log_tail: Vec<String>,
}

/// What every platform's build shares.
pub struct Shared<'a> {
    pub host: Platform,
    pub dockerfile: &'a str,
    pub context: &'a Path,
    pub ignore: &'a DockerIgnore,
    pub bases: &'a BaseImages,
    /// The step cache (with `--no-cache`, one of this build's own that starts empty).
    pub steps: &'a StepCache,
    /// Materialised stage roots by their final key, shared between platforms (read only once
    /// registered).
    pub roots: &'a Mutex<HashMap<String, PathBuf>>,
    /// This build's working directory (stage roots, layers of a build without the cache).
    pub work: &'a Path,
    /// Unpacked base images, one per manifest.
    pub rootfs_cache: &'a Path,
    /// `RUN --mount=type=cache` directories, by platform and id.
    pub cache_mounts: &'a Path,
    pub ids: JobIds,
    pub system: &'a dyn ChrootSystem,
    pub binfmt: &'a BinfmtState,
    pub secrets: &'a Secrets,
    pub epoch: u64,
    pub compression: oci::Compressor,
    pub reporter: &'a dyn Reporter,
    /// Locks of `sharing=locked` cache mounts.
    pub cache_locks: &'a Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
    /// Image ids → the ids stored in a stage root (see [`id_maps`]).
    pub to_host: &'a IdFn,
    /// Ids stored in a stage root → image ids.
    pub to_inside: &'a IdFn,
    /// Whether the fallback from overlays to copies was reported.
    pub overlay_warned: std::sync::atomic::AtomicBool,
}

/// An id map.
pub type IdFn = dyn Fn(u32, u32) -> (u32, u32) + Sync;

/// The two maps of `ids`: image → stored and back (an id outside the range stays as it is).
pub fn id_maps(ids: JobIds) -> (Box<IdFn>, Box<IdFn>) {
    (
        Box::new(move |u, g| ids.to_host(u, g).unwrap_or((u, g))),
        Box::new(move |u, g| ids.to_inside(u, g).unwrap_or((u, g))),
    )
}

/// A layer this build made, and where it came from.
#[derive(Debug, Clone)]
pub struct BuiltLayer {
    pub layer: Layer,
    /// The compressed blob on disk (the step cache's, or in the work directory).
    pub blob: PathBuf,
    /// The stage (Dockerfile index) and line of the step.
    pub stage: usize,
    pub line: usize,
    /// For `COPY --from=<stage>`: that stage.
    pub copied_from: Option<usize>,
    /// Paths (relative) the layer adds or changes.
    pub paths: Vec<String>,
}

/// How one step went, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub stage: String,
    pub line: usize,
    pub instruction: String,
    /// The platform the step ran for (the stage's).
    pub platform: Platform,
    /// Whether a RUN ran under emulation (the stage's platform is not the machine's).
    pub emulated: bool,
    /// Whether the step came from the step cache (nothing ran).
    pub cached: bool,
    pub seconds: f64,
}

/// One platform's image, before assembly.
pub struct PlatformImage {
    pub platform: Platform,
    /// The image the target stage's chain starts from (none for `FROM scratch`).
    pub base: Option<Arc<ResolvedBase>>,
    /// New layers, oldest first.
    pub layers: Vec<BuiltLayer>,
    /// History of the new steps (base history not included), oldest first.
    pub history: Vec<History>,
    pub steps: Vec<StepReport>,
}

/// A stage's state as its steps advance.
#[derive(Clone)]
struct StageState {
    key: String,
    base: Option<Arc<ResolvedBase>>,
    layers: Vec<BuiltLayer>,
    history: Vec<History>,
    /// The materialised root, up to date with `layers`.
    root: Option<PathBuf>,
    workdir: String,
    user: String,
}

/// Build every stage of `graph` for its target platform.
pub fn build_platform(
    sh: &Shared,
    platform: Platform,
    graph: &BuildGraph,
) -> Result<PlatformImage, StepError> {
    let dir = sh.work.join(platform.slug());
    let fail = |at: String, message: String| StepError {
        platform,
        at,
        message,
        log_tail: Vec::new(),
    };
    std::fs::create_dir_all(&dir).map_err(|e| fail(dir.display().to_string(), e.to_string()))?;
    let mut done: BTreeMap<usize, StageState> = BTreeMap::new();
    let mut reports = Vec::new();
    for stage in &graph.stages {
        let mut runner = StageRun {
            sh,
            platform,
            graph,
            stage,
            dir: dir.join(format!("stage-{}", stage.index)),
            done: &done,
            reports: &mut reports,
        };
        let state = runner.run()?;
        done.insert(stage.index, state);
    }
    let target = graph
        .target_stage()
        .ok_or_else(|| fail("the Dockerfile".into(), "it has no stage to build".into()))?;
    let state = done.remove(&target.index).ok_or_else(|| {
        fail(
            "the Dockerfile".into(),
            "the target stage was not built".into(),
        )
    })?;
    Ok(PlatformImage {
        platform,
        base: state.base,
        layers: state.layers,
        history: state.history,
        steps: reports,
    })
}

/// The stage's display name: `build` or `#1`.
pub fn stage_name(stage: &Stage) -> String {
    stage
        .name
        .clone()
        .unwrap_or_else(|| format!("#{}", stage.index))
}

struct StageRun<'a, 'b> {
    sh: &'a Shared<'a>,
    platform: Platform,
    graph: &'a BuildGraph,
    stage: &'a Stage,
    dir: PathBuf,
    done: &'b BTreeMap<usize, StageState>,
    reports: &'b mut Vec<StepReport>,
}

impl StageRun<'_, '_> {
    fn at(&self, step: Option<&Step>) -> String {
        match step {
            Some(s) => format!(
                "{}:{} {} (stage {})",
                self.sh.dockerfile,
                s.line,
                instruction_text(&s.instruction),
                stage_name(self.stage)
            ),
            None => format!(
                "{}:{} FROM (stage {})",
                self.sh.dockerfile,
                self.stage.line,
                stage_name(self.stage)
            ),
        }
    }

    fn fail(&self, step: Option<&Step>, message: impl Into<String>) -> StepError {
        StepError {
            platform: self.platform,
            at: self.at(step),
            message: message.into(),
            log_tail: Vec::new(),
        }
    }

    fn run(&mut self) -> Result<StageState, StepError> {
        let mut state = self.start()?;
        for step in &self.stage.steps {
            self.step(&mut state, step)?;
        }
        if let Some(root) = &state.root {
            lock(self.sh.roots).insert(state.key.clone(), root.clone());
        }
        Ok(state)
    }

    /// The state the stage's first step starts from.
    fn start(&self) -> Result<StageState, StepError> {
        let p = self.stage.platform.to_string();
        Ok(match &self.stage.base {
            StageBase::Scratch => StageState {
                key: steps::key(&[b"scratch", p.as_bytes()]),
                base: None,
                layers: Vec::new(),
                history: Vec::new(),
                root: None,
                workdir: "/".into(),
                user: String::new(),
            },
            StageBase::Image(written) => {
                let base = self
                    .sh
                    .bases
                    .get(written, self.stage.platform, self.sh.reporter)
                    .map_err(|f| self.fail(None, f.error.to_string()))?;
                let config = base.stage_config();
                StageState {
                    key: steps::key(&[b"image", base.part.manifest.as_bytes()]),
                    base: Some(base),
                    layers: Vec::new(),
                    history: Vec::new(),
                    root: None,
                    workdir: non_empty_or(&config.working_dir, "/"),
                    user: config.user,
                }
            }
            StageBase::Stage(i) => {
                let parent = self.done.get(i).ok_or_else(|| {
                    self.fail(None, format!("stage #{i} is not built before this one"))
                })?;
                let config = self.graph.stage(*i).map(|s| s.config.clone());
                StageState {
                    root: None,
                    workdir: config
                        .as_ref()
                        .map_or("/".into(), |c| non_empty_or(&c.working_dir, "/")),
                    user: config.map(|c| c.user).unwrap_or_default(),
                    ..parent.clone()
                }
            }
        })
    }

    fn step(&mut self, state: &mut StageState, step: &Step) -> Result<(), StepError> {
        let started = Instant::now();
        match &step.instruction {
            Instruction::User(u) => state.user = u.clone(),
            Instruction::Workdir(w) => state.workdir = w.clone(),
            _ => {}
        }
        let changes_files = matches!(
            step.instruction,
            Instruction::Run(_)
                | Instruction::Copy(_)
                | Instruction::Add(_)
                | Instruction::Workdir(_)
        );
        let inputs = self.inputs(state, step)?;
        let key = steps::key(&[
            state.key.as_bytes(),
            self.stage.platform.to_string().as_bytes(),
            format!("{:?}", step.instruction).as_bytes(),
            state.workdir.as_bytes(),
            state.user.as_bytes(),
            self.sh.compression_key().as_bytes(),
            inputs.as_bytes(),
        ]);
        if !changes_files {
            state.history.push(self.history(step, true));
            state.key = key;
            return Ok(());
        }
        let emulated =
            matches!(step.instruction, Instruction::Run(_)) && self.stage.platform != self.sh.host;
        // Hold the key while looking up, running and storing: another platform reaching the
        // same step waits and then finds it.
        let key_lock = self.sh.steps.lock(&key);
        let _held = lock(&key_lock);
        let (record, blob, cached) = match self.sh.steps.get(&key) {
            Some(hit) => (hit.record, hit.blob, true),
            None => {
                let (record, blob) = self.execute(state, step)?;
                match self.sh.steps.put(&key, &record, blob.as_deref()) {
                    Ok(stored) => (stored.record, stored.blob, false),
                    Err(e) => {
                        self.sh.reporter.line(&format!(
                            "warning: the step cache could not store {}: {e}",
                            self.at(Some(step))
                        ));
                        (record, blob, false)
                    }
                }
            }
        };
        if cached {
            // The root (if made) no longer matches: it is rebuilt from the layers when needed.
            if record.layer.is_some() {
                state.root = None;
            }
        }
        let empty = record.layer.is_none();
        if let (Some(layer), Some(blob)) = (&record.layer, blob) {
            state.layers.push(BuiltLayer {
                layer: Layer::from(layer),
                blob,
                stage: self.stage.index,
                line: step.line,
                copied_from: copied_from(step),
                paths: record.paths.clone(),
            });
        }
        state.history.push(self.history(step, empty));
        state.key = key;
        self.reports.push(StepReport {
            stage: stage_name(self.stage),
            line: step.line,
            instruction: instruction_text(&step.instruction),
            platform: self.stage.platform,
            emulated,
            cached,
            seconds: started.elapsed().as_secs_f64(),
        });
        Ok(())
    }

    fn history(&self, step: &Step, empty_layer: bool) -> History {
        History {
            created: Some(oci::rfc3339_utc(self.sh.epoch)),
            created_by: Some(instruction_text(&step.instruction)),
            comment: Some("rcross.dockerfile.v0".into()),
            empty_layer,
        }
    }

    /// What the step reads besides its instruction, as a digest (part of its key).
    fn inputs(&self, state: &StageState, step: &Step) -> Result<String, StepError> {
        match &step.instruction {
            Instruction::Copy(c) | Instruction::Add(c) => match &c.from {
                None => {
                    let spec = self
                        .copy_spec(
                            c,
                            &state.workdir,
                            CopyFrom::Context {
                                dir: self.sh.context,
                                ignore: self.sh.ignore,
                            },
                            None,
                            matches!(step.instruction, Instruction::Add(_)),
                        )
                        .map_err(|e| self.fail(Some(step), e.to_string()))?;
                    copy::source_digest(&spec).map_err(|e| self.fail(Some(step), e.to_string()))
                }
                Some(from) => self.ref_key(from, step),
            },
            Instruction::Run(r) => {
                let mut parts = Vec::new();
                for m in &r.mounts {
                    match m {
                        Mount::Bind { from: Some(f), .. } | Mount::Cache { from: Some(f), .. } => {
                            parts.push(self.ref_key(f, step)?)
                        }
                        Mount::Bind {
                            from: None, source, ..
                        } => {
                            let sources = [crate::dockerfile::CopySource::Path(source.clone())];
                            let spec = CopySpec {
                                sources: &sources,
                                dest: "/",
                                workdir: "/",
                                from: CopyFrom::Context {
                                    dir: self.sh.context,
                                    ignore: self.sh.ignore,
                                },
                                add: false,
                                chown: None,
                                chmod: None,
                                to_host_ids: &identity,
                                from_host_ids: &identity,
                            };
                            parts.push(
                                copy::source_digest(&spec)
                                    .map_err(|e| self.fail(Some(step), e.to_string()))?,
                            )
                        }
                        _ => {}
                    }
                }
                Ok(parts.join(","))
            }
            _ => Ok(String::new()),
        }
    }

    /// The key of what `COPY --from` / `--mount=from=` names: a stage's final key, or an
    /// image's manifest digest.
    fn ref_key(&self, from: &StageRef, step: &Step) -> Result<String, StepError> {
        match from {
            StageRef::Stage(i) => self
                .done
                .get(i)
                .map(|s| s.key.clone())
                .ok_or_else(|| self.fail(Some(step), format!("stage #{i} is not built yet"))),
            StageRef::Image(written) => self
                .sh
                .bases
                .get(written, self.stage.platform, self.sh.reporter)
                .map(|b| b.part.manifest.clone())
                .map_err(|f| self.fail(Some(step), f.error.to_string())),
        }
    }

    fn copy_spec<'s>(
        &'s self,
        c: &'s CopyStep,
        workdir: &'s str,
        from: CopyFrom<'s>,
        chown: Option<(u32, u32)>,
        add: bool,
    ) -> Result<CopySpec<'s>, copy::CopyError> {
        Ok(CopySpec {
            sources: &c.sources,
            dest: &c.dest,
            workdir,
            from,
            add,
            chown,
            chmod: c.chmod.as_deref().map(copy::parse_chmod).transpose()?,
            to_host_ids: self.sh.to_host,
            from_host_ids: self.sh.to_inside,
        })
    }

    /// Run a step that missed the cache: its layer (written to the work directory) and record.
    fn execute(
        &mut self,
        state: &mut StageState,
        step: &Step,
    ) -> Result<(StepRecord, Option<PathBuf>), StepError> {
        let root = self.materialise(state, step)?;
        let skip = |p: &str| matches!(p, "proc" | "dev" | "sys");
        let before =
            snapshot::snapshot(&root, &skip).map_err(|e| self.fail(Some(step), e.to_string()))?;
        match &step.instruction {
            Instruction::Run(r) => self.run_command(state, step, r, &root)?,
            Instruction::Copy(c) => self.copy(state, step, c, &root, false)?,
            Instruction::Add(c) => self.copy(state, step, c, &root, true)?,
            Instruction::Workdir(w) => self.make_workdir(state, step, w, &root)?,
            _ => {}
        }
        let after =
            snapshot::snapshot(&root, &skip).map_err(|e| self.fail(Some(step), e.to_string()))?;
        let changes = snapshot::changes(&before, &after);
        if let Some(first) = changes.special_skipped().first() {
            self.sh.reporter.line(&format!(
                "warning: {}: {} device node(s), FIFO(s) or socket(s) the step made are not \
                 part of its layer (e.g. /{first}); images carry none",
                self.at(Some(step)),
                changes.special_skipped().len()
            ));
        }
        if changes.is_empty() {
            return Ok((
                StepRecord {
                    layer: None,
                    paths: Vec::new(),
                },
                None,
            ));
        }
        let blob_dir = self.dir.join("layers");
        std::fs::create_dir_all(&blob_dir)
            .map_err(|e| self.fail(Some(step), format!("{}: {e}", blob_dir.display())))?;
        let file = tempfile::Builder::new()
            .prefix("layer")
            .tempfile_in(&blob_dir)
            .map_err(|e| self.fail(Some(step), format!("{}: {e}", blob_dir.display())))?;
        let (file, path) = file
            .keep()
            .map_err(|e| self.fail(Some(step), e.to_string()))?;
        let options = DiffLayerOptions {
            layer: LayerOptions {
                compression: self.sh.compression,
                threads: 0,
                mtime: self.sh.epoch,
            },
            to_image_ids: self.sh.to_inside,
        };
        let (layer, _) = snapshot::write_diff_layer(
            &root,
            &after,
            &changes,
            &options,
            std::io::BufWriter::new(file),
        )
        .map_err(|e| self.fail(Some(step), e.to_string()))?;
        Ok((
            StepRecord {
                layer: Some(StoredLayer::from(&layer)),
                paths: changes
                    .iter()
                    .filter(|c| c.kind == snapshot::ChangeKind::Write)
                    .map(|c| c.path.clone())
                    .collect(),
            },
            Some(path),
        ))
    }

    /// The stage's root, made when missing: the base's root, then every layer so far.
    fn materialise(&mut self, state: &mut StageState, step: &Step) -> Result<PathBuf, StepError> {
        if let Some(root) = &state.root {
            return Ok(root.clone());
        }
        let root = self
            .sh
            .make_root(&self.dir, state.base.as_deref(), &state.layers)
            .map_err(|m| self.fail(Some(step), m))?;
        state.root = Some(root.clone());
        Ok(root)
    }

    fn copy(
        &mut self,
        state: &StageState,
        step: &Step,
        c: &CopyStep,
        root: &Path,
        add: bool,
    ) -> Result<(), StepError> {
        let chown = match &c.chown {
            Some(spec) => Some(
                users::resolve_chown(root, spec)
                    .map_err(|e| self.fail(Some(step), e.to_string()))?,
            ),
            None => None,
        };
        let source_root;
        let image_root;
        let from = match &c.from {
            None => CopyFrom::Context {
                dir: self.sh.context,
                ignore: self.sh.ignore,
            },
            Some(StageRef::Stage(i)) => {
                source_root = self.source_root(*i, step)?;
                CopyFrom::Root(&source_root)
            }
            Some(StageRef::Image(written)) => {
                image_root = self.image_root(written, step)?;
                CopyFrom::Root(&image_root)
            }
        };
        let mut spec = self
            .copy_spec(c, &state.workdir, from, chown, add)
            .map_err(|e| self.fail(Some(step), e.to_string()))?;
        // An image's cached root keeps the image's own ids.
        if matches!(c.from, Some(StageRef::Image(_))) {
            spec.from_host_ids = &identity;
        }
        copy::copy_into(root, &spec).map_err(|e| self.fail(Some(step), e.to_string()))?;
        Ok(())
    }

    /// The root of stage `i` (for `COPY --from`, a bind mount): shared between platforms by
    /// the stage's final key, made when no build has it yet.
    fn source_root(&self, i: usize, step: &Step) -> Result<PathBuf, StepError> {
        let state = self
            .done
            .get(&i)
            .ok_or_else(|| self.fail(Some(step), format!("stage #{i} is not built yet")))?;
        if let Some(root) = lock(self.sh.roots).get(&state.key) {
            return Ok(root.clone());
        }
        let dir = self.dir.join(format!("from-{i}"));
        let root = self
            .sh
            .make_root(&dir, state.base.as_deref(), &state.layers)
            .map_err(|m| self.fail(Some(step), m))?;
        lock(self.sh.roots).insert(state.key.clone(), root.clone());
        Ok(root)
    }

    /// An image's unpacked root (image ids), for `COPY --from=<image>`.
    fn image_root(&self, written: &str, step: &Step) -> Result<PathBuf, StepError> {
        let base = self
            .sh
            .bases
            .get(written, self.stage.platform, self.sh.reporter)
            .map_err(|f| self.fail(Some(step), f.error.to_string()))?;
        rootfs::unpack_cached(
            base.source.as_ref(),
            &base.part.manifest,
            &base.part.layers,
            self.sh.rootfs_cache,
        )
        .map(|c| c.root)
        .map_err(|e| self.fail(Some(step), e.to_string()))
    }

    /// WORKDIR: the directory and its missing parents, owned by the current USER (BuildKit).
    fn make_workdir(
        &self,
        state: &StageState,
        step: &Step,
        workdir: &str,
        root: &Path,
    ) -> Result<(), StepError> {
        let (uid, gid) = if state.user.is_empty() {
            (0, 0)
        } else {
            let user = users::resolve_user(root, &state.user)
                .map_err(|e| self.fail(Some(step), e.to_string()))?;
            (user.uid, user.gid)
        };
        make_dirs(root, workdir, (self.sh.to_host)(uid, gid)).map_err(|m| self.fail(Some(step), m))
    }

    fn run_command(
        &mut self,
        state: &StageState,
        step: &Step,
        run: &Run,
        root: &Path,
    ) -> Result<(), StepError> {
        chroot::check_handler(self.stage.platform, self.sh.host, self.sh.binfmt)
            .map_err(|e| self.fail(Some(step), e.to_string()))?;
        let user = if state.user.is_empty() || state.user == "root" || state.user == "0" {
            None
        } else {
            Some(
                users::resolve_user(root, &state.user)
                    .map_err(|e| self.fail(Some(step), e.to_string()))?,
            )
        };
        // The working directory exists when the command starts (as runc makes it).
        make_dirs(root, &state.workdir, (self.sh.to_host)(0, 0))
            .map_err(|m| self.fail(Some(step), m))?;
        let scratch = tempfile::Builder::new()
            .prefix("run")
            .tempdir_in(&self.dir)
            .map_err(|e| self.fail(Some(step), e.to_string()))?;
        let mut out = RunMounts {
            scratch: scratch.path(),
            mounts: Vec::new(),
            env: env_pairs(&run.env),
            held: Vec::new(),
        };
        if run.network != Network::None && Path::new("/etc/resolv.conf").exists() {
            // Docker gives every build step the host's resolver, outside the layer.
            out.mounts.push(ChrootMount {
                target: "/etc/resolv.conf".into(),
                source: MountSource::Host(PathBuf::from("/etc/resolv.conf")),
                read_only: true,
            });
        }
        for (i, m) in run.mounts.iter().enumerate() {
            self.mount(step, m, i, &mut out)?;
        }
        let argv = self.argv(step, run, scratch.path(), &mut out.mounts)?;
        if !out.env.iter().any(|(k, _)| k == "HOME") {
            let home = if user.is_some() { "/" } else { "/root" };
            out.env.push(("HOME".into(), home.into()));
        }
        let RunMounts {
            mounts, env, held, ..
        } = out;
        let command = ChrootCommand {
            root: root.to_path_buf(),
            workdir: state.workdir.clone(),
            argv,
            env,
            ids: self.sh.ids,
            user,
            mounts,
            network: match run.network {
                Network::None => ChrootNetwork::None,
                Network::Default => ChrootNetwork::Host,
            },
        };
        let what = self.at(Some(step));
        let mut log = StepLog::new(self.sh.reporter, self.platform, &what);
        let exit = self
            .sh
            .system
            .run(&command, &mut log)
            .map_err(|e| self.fail(Some(step), e.to_string()))?;
        drop(held);
        if !exit.success() {
            let log_tail = log.tail();
            return Err(StepError {
                platform: self.platform,
                at: what.clone(),
                message: format!(
                    "the command exited with {}{}",
                    exit.code,
                    if self.stage.platform != self.sh.host {
                        format!(" (run under emulation for {})", self.stage.platform)
                    } else {
                        String::new()
                    }
                ),
                log_tail,
            });
        }
        Ok(())
    }

    /// The command's argv: exec form as written; shell form through the stage's shell; a RUN
    /// that is one heredoc runs its body (a `#!` body as a file), others get the heredocs
    /// appended for the shell to read (BuildKit's dispatchRun).
    fn argv(
        &self,
        step: &Step,
        run: &Run,
        scratch: &Path,
        mounts: &mut Vec<ChrootMount>,
    ) -> Result<Vec<String>, StepError> {
        let text = match &run.command {
            CommandForm::Exec(argv) => return Ok(argv.clone()),
            CommandForm::Shell(text) => text,
        };
        let mut argv = run.shell.clone();
        match run.heredocs.as_slice() {
            [] => argv.push(text.clone()),
            [one] if text.trim() == one.marker.trim() => {
                if one.content.starts_with("#!") {
                    let file = scratch.join("heredoc");
                    std::fs::write(&file, &one.content)
                        .map_err(|e| self.fail(Some(step), format!("{}: {e}", file.display())))?;
                    set_mode(&file, 0o755).map_err(|m| self.fail(Some(step), m))?;
                    let target = format!("/dev/pipes/{}", one.name);
                    mounts.push(ChrootMount {
                        target: target.clone(),
                        source: MountSource::Host(file),
                        read_only: true,
                    });
                    return Ok(vec![target]);
                }
                argv.push(one.content.clone());
            }
            many => {
                let mut full = text.clone();
                for h in many {
                    full.push('\n');
                    full.push_str(&h.content);
                    full.push_str(&h.name);
                }
                argv.push(full);
            }
        }
        Ok(argv)
    }

    /// One `--mount` as a sandbox mount (and, for `secret,env=`, a variable).
    fn mount(
        &self,
        step: &Step,
        m: &Mount,
        i: usize,
        out: &mut RunMounts,
    ) -> Result<(), StepError> {
        match m {
            Mount::Tmpfs { target, size } => out.mounts.push(ChrootMount {
                target: target.clone(),
                source: MountSource::Tmpfs { size: *size },
                read_only: false,
            }),
            Mount::Bind {
                target,
                from,
                source,
                read_write,
            } => {
                let path = self.bind_source(step, from.as_ref(), source, *read_write, i, out)?;
                out.mounts.push(ChrootMount {
                    target: target.clone(),
                    source: MountSource::Host(path),
                    read_only: !*read_write,
                });
            }
            Mount::Cache { from: Some(_), .. } => {
                return Err(self.fail(
                    Some(step),
                    "RUN --mount=type=cache,from=… (a cache seeded from a stage) is not \
                     supported by rcross yet; drop from= (the cache starts empty)",
                ));
            }
            Mount::Cache {
                target,
                id,
                sharing,
                read_only,
                mode,
                uid,
                gid,
                ..
            } => {
                let owner = (uid.unwrap_or(0), gid.unwrap_or(0));
                let path = self.cache_source(step, id, *sharing, *mode, owner, i, out)?;
                out.mounts.push(ChrootMount {
                    target: target.clone(),
                    source: MountSource::Host(path),
                    read_only: *read_only,
                });
            }
            Mount::Secret {
                id,
                target,
                env,
                required,
                mode,
                uid,
                gid,
            } => {
                let Some(value) = self.sh.secrets.get(id) else {
                    if *required {
                        return Err(self.fail(
                            Some(step),
                            format!(
                                "the secret {id:?} is required but was not given; pass \
                                 --secret id={id},src=FILE (or env=VAR)"
                            ),
                        ));
                    }
                    return Ok(());
                };
                if let Some(var) = env {
                    out.env
                        .push((var.clone(), String::from_utf8_lossy(value).into_owned()));
                }
                if let Some(target) = target {
                    let owner = (uid.unwrap_or(0), gid.unwrap_or(0));
                    let file = out.scratch.join(format!("secret-{i}"));
                    self.private_file(&file, value, owner, mode.unwrap_or(0o400))
                        .map_err(|m| self.fail(Some(step), m))?;
                    out.mounts.push(ChrootMount {
                        target: target.clone(),
                        source: MountSource::Host(file),
                        read_only: true,
                    });
                }
            }
        }
        Ok(())
    }

    /// A bind mount's source: a path in the context, a stage's root or an image's; with `rw`
    /// a copy the build may write to (its writes are discarded, as BuildKit does).
    fn bind_source(
        &self,
        step: &Step,
        from: Option<&StageRef>,
        source: &str,
        read_write: bool,
        i: usize,
        out: &RunMounts,
    ) -> Result<PathBuf, StepError> {
        let base = match from {
            None => self.sh.context.to_path_buf(),
            Some(StageRef::Stage(s)) => self.source_root(*s, step)?,
            Some(StageRef::Image(w)) => self.image_root(w, step)?,
        };
        let path = inside(&base, source).map_err(|m| self.fail(Some(step), m))?;
        if !read_write {
            return Ok(path);
        }
        let copy = out.scratch.join(format!("bind-{i}"));
        copy_any(&path, &copy, self.sh.to_host).map_err(|m| self.fail(Some(step), m))?;
        Ok(copy)
    }

    /// A cache mount's directory: kept per platform and id (made with its mode and owner the
    /// first time); `locked` waits for other users, `private` takes a fresh one when it is in
    /// use.
    #[allow(clippy::too_many_arguments)]
    fn cache_source(
        &self,
        step: &Step,
        id: &str,
        sharing: crate::dockerfile::CacheSharing,
        mode: Option<u32>,
        owner: (u32, u32),
        i: usize,
        out: &mut RunMounts,
    ) -> Result<PathBuf, StepError> {
        use crate::dockerfile::CacheSharing;
        let fail = |m: String| self.fail(Some(step), m);
        let (uid, gid) = (self.sh.to_host)(owner.0, owner.1);
        let dir = self.sh.cache_dir(self.stage.platform, id);
        if !dir.exists() {
            std::fs::create_dir_all(&dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
            let _ = std::os::unix::fs::lchown(&dir, Some(uid), Some(gid));
            set_mode(&dir, mode.unwrap_or(0o755)).map_err(fail)?;
        }
        match sharing {
            CacheSharing::Shared => Ok(dir),
            CacheSharing::Locked => {
                out.held.push(MountGuard::locked(self.sh, &dir));
                Ok(dir)
            }
            CacheSharing::Private => match MountGuard::try_private(&dir) {
                Some(g) => {
                    out.held.push(g);
                    Ok(dir)
                }
                // In use by another build step: this one gets its own, empty.
                None => {
                    let own = out.scratch.join(format!("cache-{i}"));
                    std::fs::create_dir_all(&own)
                        .map_err(|e| fail(format!("{}: {e}", own.display())))?;
                    let _ = std::os::unix::fs::lchown(&own, Some(uid), Some(gid));
                    Ok(own)
                }
            },
        }
    }

    /// A file outside the root for a secret: `value`, owned by the image ids `owner`, `mode`.
    fn private_file(
        &self,
        file: &Path,
        value: &[u8],
        owner: (u32, u32),
        mode: u32,
    ) -> Result<(), String> {
        std::fs::write(file, value).map_err(|e| format!("{}: {e}", file.display()))?;
        let (uid, gid) = (self.sh.to_host)(owner.0, owner.1);
        let _ = std::os::unix::fs::lchown(file, Some(uid), Some(gid));
        set_mode(file, mode)
    }
}

/// What a RUN's `--mount`s add to its command, and the cache locks held while it runs.
struct RunMounts<'s> {
    /// The step's own directory outside the root (secrets, copies, private caches).
    scratch: &'s Path,
    mounts: Vec<ChrootMount>,
    env: Vec<(String, String)>,
    held: Vec<MountGuard>,
}

impl Shared<'_> {
    fn compression_key(&self) -> String {
        format!("{:?}/{}", self.compression, self.epoch)
    }

    fn cache_dir(&self, platform: Platform, id: &str) -> PathBuf {
        let hex = steps::key(&[platform.to_string().as_bytes(), id.as_bytes()]);
        self.cache_mounts
            .join(format!("{}-{}", platform.slug(), &hex[..16]))
    }

    /// Whether `dir/root` is now an overlay over the cached root `cached` (shifted into the
    /// id range); `false` (and the reason logged once) when overlays cannot be used.
    fn overlay_root(&self, cached: &Path, dir: &Path) -> bool {
        if !overlay::usable(self.ids) {
            return false;
        }
        let mounted = overlay::shifted_root(cached, self.ids, self.to_host)
            .and_then(|lower| overlay::mount(&lower, dir, self.ids.root_on_host()));
        match mounted {
            Ok(_) => true,
            Err(e) => {
                if !self
                    .overlay_warned
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    self.reporter.line(&format!(
                        "warning: stage roots are copied, not overlaid: {e}"
                    ));
                }
                false
            }
        }
    }

    /// A new root under `dir`: the base image's root (or an empty one), then `layers`.
    fn make_root(
        &self,
        dir: &Path,
        base: Option<&ResolvedBase>,
        layers: &[BuiltLayer],
    ) -> Result<PathBuf, String> {
        if dir.exists() {
            overlay::unmount_below(dir);
            rootfs::remove_tree(dir).map_err(|e| e.to_string())?;
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let owner = self.ids.root_on_host();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(dir, Some(uid), Some(gid))
                .map_err(|e| format!("changing the owner of {}: {e}", dir.display()))?;
        }
        let root = dir.join("root");
        match base {
            Some(b) => {
                let cached = rootfs::unpack_cached(
                    b.source.as_ref(),
                    &b.part.manifest,
                    &b.part.layers,
                    self.rootfs_cache,
                )
                .map_err(|e| format!("unpacking {}: {e}", b.written))?;
                if !self.overlay_root(&cached.root, dir) {
                    let map = |u, g| (self.to_host)(u, g);
                    rootfs::copy_tree(
                        &cached.root,
                        &root,
                        &CopyOptions {
                            owners: CopyOwners::Map(&map),
                            exclude: &|_| false,
                        },
                    )
                    .map_err(|e| format!("copying the root of {}: {e}", b.written))?;
                }
            }
            None => {
                std::fs::create_dir(&root).map_err(|e| format!("{}: {e}", root.display()))?;
                if let Some((uid, gid)) = owner {
                    let _ = std::os::unix::fs::lchown(&root, Some(uid), Some(gid));
                }
                set_mode(&root, 0o755)?;
            }
        }
        if !layers.is_empty() {
            let source = BlobFiles(layers);
            let ls: Vec<Layer> = layers.iter().map(|l| l.layer.clone()).collect();
            rootfs::unpack_mapped(&source, &ls, &root, Some(self.to_host))
                .map_err(|e| format!("applying the cached layers: {e}"))?;
        }
        Ok(root)
    }
}

/// Layers of this build as an image source (for unpacking them onto a root).
struct BlobFiles<'a>(&'a [BuiltLayer]);

impl crate::image::ImageSource for BlobFiles<'_> {
    fn describe(&self) -> String {
        "the step cache".into()
    }
    fn root(&self) -> Result<(String, Vec<u8>), crate::image::SourceError> {
        Err(self.missing("the root"))
    }
    fn blob_bytes(&self, digest: &str, _max: u64) -> Result<Vec<u8>, crate::image::SourceError> {
        Err(self.missing(digest))
    }
    fn open_blob(
        &self,
        digest: &str,
    ) -> Result<Box<dyn std::io::Read + Send>, crate::image::SourceError> {
        let l = self
            .0
            .iter()
            .find(|l| l.layer.digest == digest)
            .ok_or_else(|| self.missing(digest))?;
        let f = std::fs::File::open(&l.blob).map_err(|e| crate::image::SourceError::Io {
            what: l.blob.display().to_string(),
            source: e,
        })?;
        Ok(Box::new(std::io::BufReader::new(f)))
    }
}

impl BlobFiles<'_> {
    fn missing(&self, what: &str) -> crate::image::SourceError {
        crate::image::SourceError::NotFound {
            what: format!("{what} (not a layer of this build)"),
        }
    }
}

/// Holds a cache mount's lock for the step.
pub struct MountGuard {
    _lock: Arc<Mutex<()>>,
    _file: Option<std::fs::File>,
}

impl MountGuard {
    /// `sharing=locked`: wait for the directory (in this process and across processes).
    fn locked(sh: &Shared, dir: &Path) -> MountGuard {
        let lock = lock(sh.cache_locks)
            .entry(dir.to_path_buf())
            .or_default()
            .clone();
        // Held through the guard: the mutex is only a queue here.
        let file = lock_file(dir, true);
        MountGuard {
            _lock: lock,
            _file: file,
        }
    }

    /// `sharing=private`: the directory when no one else has it, else `None`.
    fn try_private(dir: &Path) -> Option<MountGuard> {
        lock_file(dir, false).map(|f| MountGuard {
            _lock: Arc::new(Mutex::new(())),
            _file: Some(f),
        })
    }
}

/// An exclusive `flock` on `<dir>.lock` (blocking or not).
fn lock_file(dir: &Path, wait: bool) -> Option<std::fs::File> {
    use std::os::fd::AsRawFd as _;
    let path = dir.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ok()?;
    let op = if wait {
        nix::libc::LOCK_EX
    } else {
        nix::libc::LOCK_EX | nix::libc::LOCK_NB
    };
    // SAFETY: flock(2) on a descriptor this function owns.
    let r = unsafe { nix::libc::flock(file.as_raw_fd(), op) };
    (r == 0).then_some(file)
}

/// A RUN's output: each line to the reporter, the last ones kept for an error.
pub(super) struct StepLog<'a> {
    reporter: &'a dyn Reporter,
    platform: Platform,
    what: &'a str,
    partial: Vec<u8>,
    tail: std::collections::VecDeque<String>,
}

impl<'a> StepLog<'a> {
    pub(super) fn new(
        reporter: &'a dyn Reporter,
        platform: Platform,
        what: &'a str,
    ) -> StepLog<'a> {
        StepLog {
            reporter,
            platform,
            what,
            partial: Vec::new(),
            tail: Default::default(),
        }
    }

    fn line(&mut self, bytes: &[u8]) {
        let line = String::from_utf8_lossy(bytes).into_owned();
        self.reporter.build_output(self.platform, self.what, &line);
        if self.tail.len() == 20 {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    pub(super) fn tail(mut self) -> Vec<String> {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.line(&rest);
        }
        self.tail.into_iter().collect()
    }
}

impl Write for StepLog<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(n) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=n).collect();
            self.line(&line[..line.len() - 1]);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The step as a history line: `RUN apt-get update`, `COPY . /src`.
pub fn instruction_text(i: &Instruction) -> String {
    let join = |v: &[(String, String)]| {
        v.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let form = |c: &CommandForm| match c {
        CommandForm::Exec(v) => serde_json::to_string(v).unwrap_or_default(),
        CommandForm::Shell(s) => s.clone(),
    };
    match i {
        Instruction::Run(r) => format!("RUN {}", form(&r.command)),
        Instruction::Copy(c) | Instruction::Add(c) => {
            let word = if matches!(i, Instruction::Add(_)) {
                "ADD"
            } else {
                "COPY"
            };
            let from = match &c.from {
                Some(StageRef::Stage(s)) => format!("--from={s} "),
                Some(StageRef::Image(r)) => format!("--from={r} "),
                None => String::new(),
            };
            let sources: Vec<String> = c
                .sources
                .iter()
                .map(|s| match s {
                    crate::dockerfile::CopySource::Path(p) => p.clone(),
                    crate::dockerfile::CopySource::Heredoc { name, .. } => format!("<<{name}"),
                })
                .collect();
            format!("{word} {from}{} {}", sources.join(" "), c.dest)
        }
        Instruction::Env(v) => format!("ENV {}", join(v)),
        Instruction::Label(v) => format!("LABEL {}", join(v)),
        Instruction::Expose(v) => format!("EXPOSE {}", v.join(" ")),
        Instruction::Volume(v) => {
            format!("VOLUME {}", serde_json::to_string(v).unwrap_or_default())
        }
        Instruction::User(u) => format!("USER {u}"),
        Instruction::Workdir(w) => format!("WORKDIR {w}"),
        Instruction::StopSignal(s) => format!("STOPSIGNAL {s}"),
        Instruction::Cmd(c) => format!("CMD {}", form(c)),
        Instruction::Entrypoint(c) => format!("ENTRYPOINT {}", form(c)),
        Instruction::Healthcheck(h) => format!("HEALTHCHECK {}", h.test.join(" ")),
        Instruction::Shell(s) => format!("SHELL {}", serde_json::to_string(s).unwrap_or_default()),
        Instruction::Onbuild(t) => format!("ONBUILD {t}"),
        Instruction::Arg(v) => format!(
            "ARG {}",
            v.iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => k.clone(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Instruction::Maintainer(m) => format!("MAINTAINER {m}"),
    }
}

fn copied_from(step: &Step) -> Option<usize> {
    match &step.instruction {
        Instruction::Copy(c) | Instruction::Add(c) => match c.from {
            Some(StageRef::Stage(i)) => Some(i),
            _ => None,
        },
        _ => None,
    }
}

fn identity(uid: u32, gid: u32) -> (u32, u32) {
    (uid, gid)
}

fn non_empty_or(s: &str, default: &str) -> String {
    if s.is_empty() {
        default.to_string()
    } else {
        s.to_string()
    }
}

fn env_pairs(env: &[String]) -> Vec<(String, String)> {
    env.iter()
        .map(|e| {
            let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("setting the mode of {}: {e}", path.display()))
}

/// `path` (absolute or relative) under `base`, every directory on the way real (no symlink
/// followed out of it).
fn inside(base: &Path, path: &str) -> Result<PathBuf, String> {
    let clean: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if clean.contains(&"..") {
        return Err(format!("{path}: '..' is not allowed in a mount source"));
    }
    let Some((leaf, parents)) = clean.split_last() else {
        return Ok(base.to_path_buf());
    };
    let dir = rootfs::real_dir_inside(base, &parents.join("/"))?;
    let full = dir.join(leaf);
    match std::fs::symlink_metadata(&full) {
        Ok(m) if m.file_type().is_symlink() => Err(format!(
            "{path} is a symlink; a mount source must be a file or directory"
        )),
        Ok(_) => Ok(full),
        Err(e) => Err(format!("{path}: {e}")),
    }
}

/// Copy a file or directory tree (for a read-write bind), owners to the job's root.
fn copy_any(
    from: &Path,
    to: &Path,
    to_host: &dyn Fn(u32, u32) -> (u32, u32),
) -> Result<(), String> {
    let root = to_host(0, 0);
    let owner = |_, _| root;
    if from.is_dir() {
        rootfs::copy_tree(
            from,
            to,
            &CopyOptions {
                owners: CopyOwners::Map(&owner),
                exclude: &|_| false,
            },
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    } else {
        std::fs::copy(from, to)
            .map(|_| ())
            .map_err(|e| format!("{}: {e}", from.display()))?;
        let _ = std::os::unix::fs::lchown(to, Some(root.0), Some(root.1));
        Ok(())
    }
}

/// `mkdir -p` of an absolute path inside the root, new directories 0755 owned by `owner`
/// (host ids); a component that exists must be a real directory.
fn make_dirs(root: &Path, path: &str, owner: (u32, u32)) -> Result<(), String> {
    let mut cur = root.to_path_buf();
    for c in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if c == ".." {
            return Err(format!("{path}: '..' is not allowed"));
        }
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                // Resolved inside the root, as a container runtime would.
                let target = std::fs::read_link(&cur).map_err(|e| e.to_string())?;
                let t = target.to_string_lossy().to_string();
                let resolved = if t.starts_with('/') {
                    t
                } else {
                    let parent = cur
                        .parent()
                        .and_then(|p| p.strip_prefix(root).ok())
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    format!("/{parent}/{t}")
                };
                let rest: String = path
                    .split('/')
                    .filter(|c| !c.is_empty())
                    .skip_while(|x| *x != c)
                    .skip(1)
                    .collect::<Vec<_>>()
                    .join("/");
                let normal = normalise(&format!("{resolved}/{rest}"));
                if normal.starts_with(path) && normal != path {
                    return Err(format!("{path}: a symlink loop"));
                }
                return make_dirs(root, &normal, owner);
            }
            Ok(_) => return Err(format!("{path}: {} is not a directory", cur.display())),
            Err(_) => {
                std::fs::create_dir(&cur).map_err(|e| format!("{}: {e}", cur.display()))?;
                let _ = std::os::unix::fs::lchown(&cur, Some(owner.0), Some(owner.1));
                set_mode(&cur, 0o755)?;
            }
        }
    }
    Ok(())
}

/// An absolute path with `.` and `..` resolved lexically (never above `/`).
fn normalise(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_dirs_follows_symlinks_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::os::unix::fs::symlink("/real", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../", root.join("up")).unwrap();
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        make_dirs(&root, "/abs/app/x", me).unwrap();
        assert!(root.join("real/app/x").is_dir());
        make_dirs(&root, "/up/escaped", me).unwrap();
        assert!(root.join("escaped").is_dir(), "'..' stops at the root");
        assert!(!t.path().join("escaped").exists());
        std::fs::write(root.join("file"), b"").unwrap();
        assert!(make_dirs(&root, "/file/x", me).is_err());
    }

    #[test]
    fn mount_sources_stay_inside_their_root() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        std::os::unix::fs::symlink("/etc", t.path().join("a/l")).unwrap();
        assert_eq!(inside(t.path(), "a/b").unwrap(), t.path().join("a/b"));
        assert!(inside(t.path(), "a/l").is_err());
        assert!(inside(t.path(), "a/l/passwd").is_err());
        assert!(inside(t.path(), "../x").is_err());
        assert_eq!(inside(t.path(), "/").unwrap(), t.path());
    }

    #[test]
    fn history_lines_read_like_the_dockerfile() {
        let i = Instruction::Env(vec![("A".into(), "1".into())]);
        assert_eq!(instruction_text(&i), "ENV A=1");
        let i = Instruction::Cmd(CommandForm::Exec(vec!["nginx".into(), "-g".into()]));
        assert_eq!(instruction_text(&i), r#"CMD ["nginx","-g"]"#);
    }
}
