//! Command-line structure only: no logic lives here.

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// Make this machine build software and container images for other CPU architectures.
#[derive(Debug, Parser)]
#[command(name = "rcross", version, about, long_about = None)]
pub struct Cli {
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Describe the host: platform, kernel, CPU, binfmt_misc handlers, emulators, Docker.
    Info(InfoArgs),
    /// Register QEMU emulators with binfmt_misc so foreign binaries run (needs root).
    Setup(SetupArgs),
    /// Classify ELF files: architecture, ABI, linkage, loader.
    Elf(ElfArgs),
    /// Check that every ELF file can run on a platform (or on each platform of an image).
    Verify(VerifyArgs),
    /// Cross toolchains: list what is installed, install what is missing, write toolchain files.
    Toolchain(ToolchainArgs),
    /// Decide per platform how to build: native, cross, emulate or unavailable, and why.
    Plan(PlanArgs),
    /// Print the environment variables a build needs for a platform (CC, CARGO_*, GOARCH, …).
    Env(EnvArgs),
    /// Build a multi-platform image from rcross.toml: per-platform builds, verification, an OCI
    /// image index in a layout, optionally pushed.
    Build(Box<BuildArgs>),
    /// Run a program for another platform through its emulator (usable as cargo runner, CMake
    /// emulator and ctest wrapper).
    Run(RunArgs),
    /// Show an image index: platforms, digests, sizes and the verification verdict per platform.
    Inspect(InspectArgs),
    /// Push an image from an OCI layout (as `rcross build` writes it) to one or more tags.
    Push(PushArgs),
    /// Image indexes in a registry: `manifest create` merges images already pushed.
    Manifest(ManifestArgs),
    /// Check credentials against a registry and store them where docker would (credential
    /// helper or $DOCKER_CONFIG/config.json).
    Login(LoginArgs),
    /// Remove a registry's stored credentials (from its credential helper and config.json).
    Logout(LogoutArgs),
    /// Print the tags (and labels, SOURCE_DATE_EPOCH) a build of this git checkout gets from
    /// the tag policy ([tags] in rcross.toml and the flags).
    Tags(TagsArgs),
    /// The build cache (host builds' output trees by their inputs): `cache prune`.
    Cache(CacheArgs),
}

/// Where host state lives; overridable so tests (and odd hosts) can point elsewhere.
#[derive(Debug, Args, Clone)]
pub struct HostPaths {
    /// binfmt_misc mount point.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/proc/sys/fs/binfmt_misc",
        hide_short_help = true
    )]
    pub binfmt_misc: PathBuf,

    /// Extra handler definitions that add to or override the built-in ones.
    #[arg(
        long,
        value_name = "DIR",
        env = "RCROSS_BINFMT_DIR",
        default_value = "/etc/rcross/binfmt.d",
        hide_short_help = true
    )]
    pub binfmt_dir: PathBuf,
}

/// The retry budget of commands that talk to registries.
#[derive(Debug, Args, Clone)]
pub struct RetryArgs {
    /// How long one failing registry request (an upload session, a download) is retried, with
    /// exponential backoff and jitter, before giving up: e.g. 30s, 5m, 1h.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub retry_timeout: Duration,
}

/// `90`, `90s`, `500ms`, `5m`, `1h`: a number with an optional unit (seconds by default).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s, 5m or 1h"))?;
    let seconds = |factor: u64| {
        number
            .checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{text:?} is too long"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "" | "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        _ => Err(format!(
            "{text:?}: unknown unit {unit:?} (use ms, s, m or h, e.g. 5m)"
        )),
    }
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub paths: HostPaths,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Only these platforms (comma-separated or repeated), e.g. linux/arm64,linux/arm/v7.
    /// Default: every foreign platform whose emulator is installed.
    #[arg(long = "platform", short = 'p', value_name = "PLATFORM")]
    pub platforms: Vec<String>,

    /// Replace conflicting handlers registered by other tools, and register dynamically linked
    /// emulators with the F flag anyway.
    #[arg(long)]
    pub force: bool,

    /// Print the exact register lines and files; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Also write /etc/binfmt.d/rcross-*.conf so the handlers survive a reboot.
    #[arg(long)]
    pub persist: bool,

    /// Remove the handlers (and persisted files) rcross registered, instead of adding them.
    #[arg(long)]
    pub uninstall: bool,

    /// With --uninstall: also remove other tools' handlers for the selected platforms.
    #[arg(long, requires = "uninstall")]
    pub all_owners: bool,

    /// Add the C flag (credentials from the binary, implies O). Lets setuid foreign programs run
    /// with raised privileges, e.g. sudo inside an emulated container; a security trade-off.
    #[arg(long)]
    pub credentials: bool,

    /// Register without the F flag (emulator opened at exec time, not at registration).
    #[arg(long)]
    pub no_fix_binary: bool,

    /// Skip the self-test after registering.
    #[arg(long)]
    pub no_test: bool,

    /// Root directory for persisted files (default /).
    #[arg(long, value_name = "DIR", default_value = "/", hide_short_help = true)]
    pub root: PathBuf,

    #[command(flatten)]
    pub paths: HostPaths,
}

#[derive(Debug, Args)]
pub struct ElfArgs {
    /// Files, directories, tar archives (plain, gzip, zstd) or OCI layouts (oci:DIR).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The platform every ELF file must run on. Not needed for images (each manifest is checked
    /// against its own platform).
    #[arg(long, short = 'p', value_name = "PLATFORM")]
    pub platform: Option<String>,

    /// Files, directories, tar archives, oci:DIR or REGISTRY/REPO:TAG.
    #[arg(required = true, value_name = "PATH|IMAGE")]
    pub targets: Vec<String>,
}

/// Where toolchain data and host state live.
#[derive(Debug, Args, Clone)]
pub struct ToolchainPaths {
    /// Extra toolchain definitions that add to or override the built-in ones.
    #[arg(
        long,
        value_name = "DIR",
        env = "RCROSS_TOOLCHAIN_DIR",
        default_value = "/etc/rcross/toolchains.d",
        hide_short_help = true
    )]
    pub toolchain_dir: PathBuf,

    #[command(flatten)]
    pub host: HostPaths,
}

#[derive(Debug, Args)]
pub struct ToolchainArgs {
    #[command(subcommand)]
    pub command: ToolchainCommand,
}

#[derive(Debug, Subcommand)]
pub enum ToolchainCommand {
    /// Per platform: native?, installed compilers, Rust targets, Go, emulator, handler.
    List(ToolchainListArgs),
    /// Install the missing cross compilers and emulators with the host's package manager
    /// (needs root).
    Install(ToolchainInstallArgs),
    /// Write a CMake toolchain file, Meson cross file or .cargo/config.toml fragment on stdout.
    File(ToolchainFileArgs),
}

#[derive(Debug, Args)]
pub struct ToolchainListArgs {
    #[command(flatten)]
    pub paths: ToolchainPaths,
}

#[derive(Debug, Args)]
pub struct ToolchainInstallArgs {
    /// Platforms, e.g. linux/arm64 linux/arm/v7 (comma-separated or several).
    #[arg(required = true, value_name = "PLATFORM")]
    pub platforms: Vec<String>,

    /// Print the commands; install nothing.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub paths: ToolchainPaths,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileFormatArg {
    Cmake,
    Meson,
    Cargo,
}

#[derive(Debug, Args)]
pub struct ToolchainFileArgs {
    #[arg(value_name = "PLATFORM")]
    pub platform: String,

    #[arg(long, value_enum)]
    pub format: FileFormatArg,

    /// Sysroot for dynamically linked target programs (default: the toolchain's).
    #[arg(long, value_name = "DIR")]
    pub sysroot: Option<PathBuf>,

    #[command(flatten)]
    pub paths: ToolchainPaths,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Platforms (comma-separated or repeated), e.g. linux/arm64,linux/arm/v7.
    #[arg(
        long = "platform",
        short = 'p',
        required = true,
        value_name = "PLATFORM"
    )]
    pub platforms: Vec<String>,

    /// Language to plan for; auto looks for Cargo.toml, then go.mod, in the current directory
    /// and otherwise plans for C/C++.
    #[arg(long, default_value = "auto", value_parser = ["c", "go", "rust", "auto"])]
    pub lang: String,

    #[command(flatten)]
    pub paths: ToolchainPaths,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EnvFormatArg {
    Sh,
    Json,
    Github,
    Make,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    #[arg(value_name = "PLATFORM")]
    pub platform: String,

    /// sh: `export` lines for eval; github: $GITHUB_ENV lines; make: include-able lines.
    #[arg(long, value_enum, default_value = "sh")]
    pub format: EnvFormatArg,

    /// Sysroot for dynamically linked target programs (default: the toolchain's).
    #[arg(long, value_name = "DIR")]
    pub sysroot: Option<PathBuf>,

    #[command(flatten)]
    pub paths: ToolchainPaths,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The platform the program is built for.
    #[arg(long, short = 'p', value_name = "PLATFORM")]
    pub platform: String,

    /// Directory holding the target's C library, for dynamically linked programs (default:
    /// $QEMU_LD_PREFIX, else the cross toolchain's).
    #[arg(long, value_name = "DIR")]
    pub sysroot: Option<PathBuf>,

    /// The program and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM"
    )]
    pub command: Vec<OsString>,

    #[command(flatten)]
    pub paths: ToolchainPaths,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The project directory (holding rcross.toml), or a Dockerfile build's context.
    #[arg(default_value = ".", value_name = "DIR|CONTEXT")]
    pub dir: PathBuf,

    /// Build from this Dockerfile, as `docker buildx build -f` (default: CONTEXT/Dockerfile
    /// when the directory has no rcross.toml, or the file's [image] dockerfile).
    #[arg(long = "file", short = 'f', value_name = "PATH")]
    pub file: Option<PathBuf>,

    /// Dockerfile builds: the stage to build (default: the last one).
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,

    /// Dockerfile builds: a secret for `RUN --mount=type=secret` (repeatable), as buildx:
    /// id=ID,src=FILE or id=ID,env=VAR. Never stored in a layer or the history.
    #[arg(long = "secret", value_name = "id=ID,src=FILE|env=VAR")]
    pub secrets: Vec<String>,

    /// Platforms to build (comma-separated or repeated); default: the project's.
    #[arg(long = "platform", short = 'p', value_name = "PLATFORM")]
    pub platforms: Vec<String>,

    /// Image reference to tag (and with --push, to push), e.g. 127.0.0.1:5000/hello:1.
    #[arg(long = "tag", short = 't', value_name = "REF")]
    pub tags: Vec<String>,

    /// Push the index and its tags to the registry.
    #[arg(long)]
    pub push: bool,

    /// Also load the image into the local Docker engine (DOCKER_HOST, else
    /// /var/run/docker.sock), tagged with each -t (or NAME:latest): the only platform built,
    /// else the host's platform if built.
    #[arg(long)]
    pub load: bool,

    /// Where the image goes: oci:DIR (default oci:DIR/.rcross/oci), oci-archive:FILE, or
    /// docker-archive:FILE (one platform only; what `docker load` reads).
    #[arg(long, value_name = "oci:DIR|oci-archive:FILE|docker-archive:FILE")]
    pub output: Option<String>,

    /// Write JSON (index digest, manifests per platform, tags, verification) to this file.
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,

    /// Extra environment for the build command (KEY=VALUE, repeatable); a Dockerfile's ARG
    /// values, as buildx.
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,

    /// Layer compression: gzip (default, every client reads it) or zstd.
    #[arg(long, default_value = "gzip")]
    pub compression: String,

    /// Compression level, as buildx's compression-level: gzip 1 (fastest) to 9 (smallest),
    /// default 6; zstd 1 to 19, default 3. Another level gives other layer digests.
    #[arg(long = "compression-level", value_name = "N")]
    pub compression_level: Option<i32>,

    /// With --push: an image whose layers may be reused (repeatable), as buildx's registry
    /// cache source. The tags being pushed are always consulted: a layer whose content the
    /// registry already has (same diff_id, same compression) is neither compressed nor uploaded.
    #[arg(long = "cache-from", value_name = "REF", requires = "push")]
    pub cache_from: Vec<String>,

    /// Platforms built at once (default: all of them, as buildx).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,

    /// Run every build command, neither reading nor filling the build cache (as
    /// `[build] cache = false`).
    #[arg(long = "no-cache")]
    pub no_cache: bool,

    /// Use plain HTTP for the registries of the tags (loopback registries always use it).
    #[arg(long)]
    pub insecure: bool,

    /// With --push: write what was pushed to this file, one line each: the index digest first,
    /// then REGISTRY/REPO@DIGEST per repository (sources for `rcross manifest create`).
    #[arg(long, value_name = "FILE", requires = "push")]
    pub digest_file: Option<PathBuf>,

    /// Build PLATFORM natively on another Docker engine (unix://PATH, tcp://HOST:PORT,
    /// ssh://[USER@]HOST), in a container of [build] image; repeatable; overrides [builders].
    #[arg(long = "builder", value_name = "PLATFORM=ENDPOINT")]
    pub builders: Vec<String>,

    /// When builds run in a target-platform container of [build] image: auto (only platforms
    /// without a native or cross toolchain), always, or never; overrides [build] container.
    #[arg(long, value_name = "auto|always|never")]
    pub container: Option<String>,

    /// The image container builds run in (a registry reference or oci:DIR[:REF]); overrides
    /// [build] image.
    #[arg(long, value_name = "REF")]
    pub build_image: Option<String>,

    /// The engine for container builds on this machine: a Docker endpoint (default: DOCKER_HOST
    /// or unix:///var/run/docker.sock, falling back to a chroot when it does not answer), or
    /// `chroot` for the daemonless chroot of the build image.
    #[arg(long, value_name = "ENDPOINT|chroot")]
    pub engine: Option<String>,

    #[command(flatten)]
    pub retry: RetryArgs,

    #[command(flatten)]
    pub tag_policy: TagPolicyArgs,

    #[command(flatten)]
    pub paths: ToolchainPaths,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// oci:DIR[:REF] or REGISTRY/REPO:TAG.
    #[arg(value_name = "IMAGE")]
    pub target: String,

    /// Skip reading the layers (no verification verdicts).
    #[arg(long)]
    pub no_verify: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image: oci:DIR[:NAME] (NAME defaults to latest).
    #[arg(value_name = "oci:DIR[:NAME]")]
    pub source: String,

    /// Where to push: REGISTRY/REPO:TAG, one or more.
    #[arg(required = true, value_name = "REF")]
    pub tags: Vec<String>,

    /// Use plain HTTP for these registries (loopback registries always use it).
    #[arg(long)]
    pub insecure: bool,
    #[command(flatten)]
    pub retry: RetryArgs,
}

#[derive(Debug, Args)]
pub struct ManifestArgs {
    #[command(subcommand)]
    pub command: ManifestCommand,
}

#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Merge images already in a registry (tags or digests; single-platform images or indexes)
    /// into one index, each platform taken from its image config, and tag it.
    Create(ManifestCreateArgs),
}

#[derive(Debug, Args)]
pub struct ManifestCreateArgs {
    /// Tag to create, REGISTRY/REPO:TAG (repeatable; all in the sources' registry).
    #[arg(long = "tag", short = 't', required = true, value_name = "REF")]
    pub tags: Vec<String>,

    /// Images to merge: REGISTRY/REPO:TAG or REGISTRY/REPO@DIGEST.
    #[arg(required = true, value_name = "SOURCE")]
    pub sources: Vec<String>,

    /// Check every ELF file of each source against its platform first; create nothing if any
    /// finding.
    #[arg(long)]
    pub verify: bool,

    /// Use plain HTTP for the registry (loopback registries always use it).
    #[arg(long)]
    pub insecure: bool,
    #[command(flatten)]
    pub retry: RetryArgs,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry, e.g. ghcr.io or 127.0.0.1:5000 (default: Docker Hub).
    #[arg(value_name = "REGISTRY")]
    pub registry: Option<String>,

    /// User name.
    #[arg(long, short = 'u', value_name = "USER")]
    pub username: Option<String>,

    /// Read the password (or token) from standard input.
    #[arg(long)]
    pub password_stdin: bool,

    /// The password as an argument: visible to other users in ps and kept in shell history;
    /// accepted with a warning. Use --password-stdin.
    #[arg(
        long,
        short = 'p',
        value_name = "PASSWORD",
        conflicts_with = "password_stdin",
        hide_short_help = true
    )]
    pub password: Option<String>,

    /// Use plain HTTP for this registry (loopback registries always use it).
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry, e.g. ghcr.io or 127.0.0.1:5000 (default: Docker Hub).
    #[arg(value_name = "REGISTRY")]
    pub registry: Option<String>,
}

/// The tag policy: which tags a build of a git checkout gets. Also settable in rcross.toml's
/// [tags] table; flags win.
#[derive(Debug, Args, Clone, Default)]
pub struct TagPolicyArgs {
    /// Image repository (REGISTRY/REPO, repeatable) to tag with every tag the policy computes
    /// from git; overrides [tags] images.
    #[arg(long = "image", value_name = "REGISTRY/REPO")]
    pub images: Vec<String>,

    /// Tags for a release tag vX.Y.Z: version, major-minor, major, latest (comma-separated
    /// subset); default: all of them.
    #[arg(long, value_name = "LIST")]
    pub release_tags: Option<String>,

    /// The repository's default branch (its builds may add `edge`); default: main.
    #[arg(long, value_name = "BRANCH")]
    pub default_branch: Option<String>,

    /// Tag builds of the default branch `edge`.
    #[arg(long)]
    pub edge: bool,

    /// Do not add sha-<short> to branch builds.
    #[arg(long)]
    pub no_sha_tag: bool,

    /// Add the tag build-ID; `auto` takes ID from GITHUB_RUN_NUMBER or CI_PIPELINE_IID.
    #[arg(long, value_name = "ID|auto")]
    pub build_number: Option<String>,

    /// Prefix of release tags (default: v).
    #[arg(long, value_name = "PREFIX")]
    pub tag_prefix: Option<String>,

    /// Extra tag (repeatable), checked against the tag grammar.
    #[arg(long = "extra-tag", value_name = "TAG")]
    pub extra_tags: Vec<String>,

    /// Do not stamp org.opencontainers.image.{version,revision,source,created} from git.
    #[arg(long)]
    pub no_git_labels: bool,

    /// Push only the -t tags: no computed tags, even when [tags] images is set (a matrix job
    /// that pushes one platform by digest for a later `rcross manifest create`).
    #[arg(long, conflicts_with = "images")]
    pub no_git_tags: bool,
}

impl TagPolicyArgs {
    /// The flags as overrides of `[tags]`.
    pub fn overrides(&self) -> crate::tags::Overrides {
        crate::tags::Overrides {
            images: self.images.clone(),
            release: self.release_tags.clone(),
            default_branch: self.default_branch.clone(),
            edge: self.edge,
            no_sha: self.no_sha_tag,
            build_number: self.build_number.clone(),
            prefix: self.tag_prefix.clone(),
            extra: self.extra_tags.clone(),
            no_labels: self.no_git_labels,
            no_tags: self.no_git_tags,
        }
    }
}

#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Remove least recently used build cache entries down to a size limit.
    Prune {
        /// Remove everything: every entry, the stat caches and the compiler identities.
        #[arg(long)]
        all: bool,
        /// Keep at most this many bytes of entries.
        #[arg(long = "max-bytes", value_name = "BYTES", default_value_t = crate::pipeline::cache::DEFAULT_LIMIT)]
        max_bytes: u64,
    },
}

#[derive(Debug, Args)]
pub struct TagsArgs {
    /// The project directory (holding rcross.toml; its git work tree is read).
    #[arg(default_value = ".")]
    pub dir: PathBuf,

    #[command(flatten)]
    pub policy: TagPolicyArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_common_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "m", "5 minutes", "-1s", "1.5m", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
