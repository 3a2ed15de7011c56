//! The typed, expanded build graph the front end produces: stages reachable from the target,
//! each with its base, platform, instructions (arguments expanded where BuildKit expands them)
//! and the image config it ends with.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::platform::Platform;

pub use super::syntax::SyntaxHeredoc as Heredoc;

/// What the front end needs besides the text.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `--build-arg NAME=value`.
    pub build_args: BTreeMap<String, String>,
    /// The platform being built (TARGETPLATFORM…).
    pub target_platform: Platform,
    /// The machine's platform (BUILDPLATFORM…).
    pub build_platform: Platform,
    /// `--target` (default: the last stage).
    pub target: Option<String>,
    /// The config of each base image, by reference as the expanded FROM line names it. A base
    /// missing here is taken as empty (its Env is then only the default PATH). Callers that know
    /// the bases resolve them from a first plan's [`BuildGraph::base_images`].
    pub base_configs: BTreeMap<String, ImageConfig>,
}

impl BuildOptions {
    pub fn new(target_platform: Platform, build_platform: Platform) -> BuildOptions {
        BuildOptions {
            build_args: BTreeMap::new(),
            target_platform,
            build_platform,
            target: None,
            base_configs: BTreeMap::new(),
        }
    }
}

/// The stages to build, in Dockerfile order, and which one is the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildGraph {
    /// The `# syntax=` directive, when present (always a `docker/dockerfile:1` one).
    pub syntax: Option<String>,
    /// Only the stages reachable from the target (through FROM, `COPY --from`,
    /// `RUN --mount=from=`), in Dockerfile order.
    pub stages: Vec<Stage>,
    /// Position in [`BuildGraph::stages`] of the target stage.
    pub target: usize,
}

impl BuildGraph {
    pub fn target_stage(&self) -> Option<&Stage> {
        self.stages.get(self.target)
    }

    /// The stage with this index in the Dockerfile, when it is in the graph.
    pub fn stage(&self, index: usize) -> Option<&Stage> {
        self.stages.iter().find(|s| s.index == index)
    }

    /// Image references the graph pulls (FROM, `COPY --from`, mounts), each once, sorted.
    pub fn base_images(&self) -> BTreeSet<(String, Platform)> {
        let mut out = BTreeSet::new();
        for stage in &self.stages {
            if let StageBase::Image(r) = &stage.base {
                out.insert((r.clone(), stage.platform));
            }
            for step in &stage.steps {
                let froms: Vec<&StageRef> = match &step.instruction {
                    Instruction::Copy(c) | Instruction::Add(c) => c.from.iter().collect(),
                    Instruction::Run(r) => r.mounts.iter().filter_map(Mount::from).collect(),
                    _ => vec![],
                };
                for f in froms {
                    if let StageRef::Image(r) = f {
                        out.insert((r.clone(), stage.platform));
                    }
                }
            }
        }
        out
    }
}

/// One stage (`FROM … [AS name]` and what follows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position among all the Dockerfile's stages (what `COPY --from=N` counts).
    pub index: usize,
    /// The `AS` name, lower-cased (stage names are case-insensitive).
    pub name: Option<String>,
    /// Line of the FROM instruction.
    pub line: usize,
    pub base: StageBase,
    /// The platform the stage's steps run for: the base stage's when built FROM a stage, the
    /// target's for `FROM scratch`, else `FROM --platform=…` or the target's (as BuildKit).
    pub platform: Platform,
    /// Whether `FROM --platform=` set the platform (it does for image bases only).
    pub platform_from_flag: bool,
    pub steps: Vec<Step>,
    /// The image config after the last step (base config, default PATH, then the steps).
    pub config: ImageConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageBase {
    /// `FROM scratch`.
    Scratch,
    /// `FROM <earlier stage>`: its index.
    Stage(usize),
    /// An image reference, as the expanded FROM line names it.
    Image(String),
}

/// What `COPY --from=` and `RUN --mount=from=` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageRef {
    /// A stage, by index.
    Stage(usize),
    Image(String),
}

/// An instruction after FROM, expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub line: usize,
    pub instruction: Instruction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    Run(Run),
    Copy(Copy),
    Add(Copy),
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    /// Normalised port specs (`80/tcp`).
    Expose(Vec<String>),
    Volume(Vec<String>),
    User(String),
    /// The absolute, cleaned working directory.
    Workdir(String),
    StopSignal(String),
    Cmd(CommandForm),
    Entrypoint(CommandForm),
    /// `None` for `HEALTHCHECK NONE`.
    Healthcheck(Healthcheck),
    Shell(Vec<String>),
    /// The trigger's text, kept as written.
    Onbuild(String),
    /// Each declared name and the value it got (`None`: declared without a value anywhere).
    Arg(Vec<(String, Option<String>)>),
    Maintainer(String),
}

/// Exec (JSON) or shell form, not expanded (the shell does that at run time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandForm {
    Exec(Vec<String>),
    Shell(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: CommandForm,
    /// Heredocs of a shell-form command, bodies as written.
    pub heredocs: Vec<Heredoc>,
    pub mounts: Vec<Mount>,
    pub network: Network,
    /// The environment the command runs with (`NAME=value`): the image's Env, then the
    /// stage's ARG values, an ENV of the same name winning when it comes later.
    pub env: Vec<String>,
    /// The shell a shell-form command runs with (SHELL, default `/bin/sh -c`).
    pub shell: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Default,
    None,
}

/// `RUN --mount=…`, option values expanded; bind, cache and tmpfs targets absolute (a relative
/// or missing target is taken from the working directory, as BuildKit does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    Bind {
        target: String,
        from: Option<StageRef>,
        source: String,
        read_write: bool,
    },
    Cache {
        target: String,
        /// `id`, default the target as written (cleaned).
        id: String,
        sharing: CacheSharing,
        from: Option<StageRef>,
        source: String,
        read_only: bool,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    Secret {
        /// `id`, default the target's file name.
        id: String,
        /// Default `/run/secrets/<id>` (unless only `env` is given).
        target: Option<String>,
        env: Option<String>,
        required: bool,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
    },
}

impl Mount {
    pub fn from(&self) -> Option<&StageRef> {
        match self {
            Mount::Bind { from, .. } | Mount::Cache { from, .. } => from.as_ref(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

/// COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub sources: Vec<CopySource>,
    pub dest: String,
    pub from: Option<StageRef>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource {
    Path(String),
    /// A heredoc: its name and its body (expanded unless the delimiter was quoted).
    Heredoc {
        name: String,
        content: String,
    },
}

/// HEALTHCHECK: `test` is `["NONE"]`, `["CMD", …]` or `["CMD-SHELL", text]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
}

/// The image config fields a Dockerfile writes (Docker's names in comments).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageConfig {
    /// `Env`, `NAME=value`.
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub working_dir: String,
    pub user: String,
    /// `ExposedPorts` keys (`80/tcp`).
    pub exposed_ports: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub shell: Option<Vec<String>>,
    pub stop_signal: Option<String>,
    pub healthcheck: Option<Healthcheck>,
    pub onbuild: Vec<String>,
    /// `author` (MAINTAINER).
    pub author: Option<String>,
}

/// The PATH BuildKit gives a Linux image that has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
