//! Where one platform's build command runs when it does not run directly on the host: in a
//! container of the target platform (a local Docker engine, emulated through binfmt_misc, or a
//! remote engine on a native machine), or, without any engine, in a chroot of the build image's
//! unpacked root filesystem.
//!
//! Every runner takes the same [`ContainerJob`]: the project directory is copied into the
//! container at [`SRC_DIR`] (like a `docker build` context, so a build never writes root-owned
//! files into the user's tree and parallel platforms never share object files), the command runs
//! with `sh -c` in `SRC_DIR/<workdir>` with the platform's environment and `RCROSS_OUT` =
//! [`OUT_DIR`], and whatever it leaves in [`OUT_DIR`] is copied back to the host's per-platform
//! output directory, where it is verified like any other build's output.

use crate::platform::Platform;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the project is copied inside the build container.
pub const SRC_DIR: &str = "/rcross/src";
/// `RCROSS_OUT` inside the build container; copied back after the command exits.
pub const OUT_DIR: &str = "/rcross/out";
/// Directories of the project that are never copied into a build container.
pub const CONTEXT_EXCLUDES: &[&str] = &[".git", ".rcross"];

/// The image a containerised build runs in (`[build] image` in rcross.toml), for one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildImage {
    /// A registry reference as written (`debian:12`, `127.0.0.1:5000/tools:1`); the engine
    /// resolves it for the job's platform.
    Registry(String),
    /// An OCI image layout on the host (`oci:DIR[:REF]`), with the digest of the manifest for
    /// the job's platform already resolved.
    Layout {
        dir: PathBuf,
        reference: Option<String>,
        manifest: String,
    },
}

impl std::fmt::Display for BuildImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildImage::Registry(r) => f.write_str(r),
            BuildImage::Layout { dir, reference, .. } => match reference {
                Some(r) => write!(f, "oci:{}:{r}", dir.display()),
                None => write!(f, "oci:{}", dir.display()),
            },
        }
    }
}

/// One platform's build, to run in a container or chroot.
#[derive(Debug, Clone)]
pub struct ContainerJob {
    pub platform: Platform,
    pub image: BuildImage,
    /// The project directory on the host; copied to [`SRC_DIR`] minus [`CONTEXT_EXCLUDES`].
    pub context: PathBuf,
    /// The directory the command runs in, relative to the project directory.
    pub workdir: PathBuf,
    /// Run as `sh -c COMMAND`.
    pub command: String,
    /// The platform's environment (RCROSS_OUT, RCROSS_PLATFORM and SOURCE_DATE_EPOCH included).
    pub env: Vec<(String, String)>,
    /// Empty host directory that receives the contents of [`OUT_DIR`].
    pub out_dir: PathBuf,
}

impl ContainerJob {
    /// The working directory inside the container.
    pub fn container_workdir(&self) -> String {
        let rel = self.workdir.to_string_lossy();
        let rel = rel.trim_start_matches("./").trim_matches('/');
        if rel.is_empty() || rel == "." {
            SRC_DIR.to_string()
        } else {
            format!("{SRC_DIR}/{rel}")
        }
    }
}

/// How a containerised command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobExit {
    /// The command's exit code (128+N for a signal, as a shell reports it).
    pub code: i64,
}

impl JobExit {
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// Why a runner could not run a job (not: the command failed; that is a [`JobExit`]).
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The engine or endpoint cannot be reached: names the endpoint and how to fix it.
    #[error("{endpoint}: {message}")]
    Unreachable { endpoint: String, message: String },
    /// The build image cannot be found, pulled, loaded or unpacked for the platform.
    #[error("build image {image} for {platform}: {message}")]
    Image {
        image: String,
        platform: Platform,
        message: String,
    },
    /// Anything else that went wrong around the command (copying files in or out, creating
    /// the container, reading the output archive).
    #[error("{what}: {message}")]
    Other { what: String, message: String },
}

impl RunnerError {
    /// The process exit code this failure maps to (see `exit`).
    pub fn exit_code(&self) -> u8 {
        match self {
            RunnerError::Unreachable { .. } => crate::exit::ENVIRONMENT,
            RunnerError::Image { .. } => crate::exit::ENVIRONMENT,
            RunnerError::Other { .. } => crate::exit::ENVIRONMENT,
        }
    }
}

/// Runs [`ContainerJob`]s. Implementations: the Docker engine (`crate::engine`) and the
/// daemonless chroot fallback (`crate::build::chroot`).
pub trait ContainerRunner: Send + Sync {
    /// For messages and reports: "docker unix:///var/run/docker.sock", "chroot".
    fn describe(&self) -> String;

    /// Run the job: the command's output (stdout and stderr, interleaved) goes to `log`; the
    /// output directory is filled from [`OUT_DIR`] only when the command exited 0.
    fn run(&self, job: &ContainerJob, log: &mut (dyn Write + Send))
        -> Result<JobExit, RunnerError>;
}

/// Whether `path` (relative to the project directory) is left out of the build context.
pub fn excluded(relative: &Path) -> bool {
    relative
        .components()
        .next()
        .map(|c| CONTEXT_EXCLUDES.iter().any(|e| c.as_os_str() == *e))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(workdir: &str) -> ContainerJob {
        ContainerJob {
            platform: "linux/arm64".parse().expect("platform"),
            image: BuildImage::Registry("x".into()),
            context: PathBuf::from("/p"),
            workdir: PathBuf::from(workdir),
            command: "true".into(),
            env: Vec::new(),
            out_dir: PathBuf::from("/o"),
        }
    }

    #[test]
    fn container_workdir_is_under_src() {
        assert_eq!(job("").container_workdir(), "/rcross/src");
        assert_eq!(job(".").container_workdir(), "/rcross/src");
        assert_eq!(job("./sub/dir/").container_workdir(), "/rcross/src/sub/dir");
    }

    #[test]
    fn git_and_rcross_state_stay_out_of_the_context() {
        assert!(excluded(Path::new(".git/config")));
        assert!(excluded(Path::new(".rcross")));
        assert!(!excluded(Path::new("src/.git")));
        assert!(!excluded(Path::new("hello.c")));
    }

    #[test]
    fn layout_images_show_as_written() {
        let i = BuildImage::Layout {
            dir: PathBuf::from("img"),
            reference: Some("1".into()),
            manifest: "sha256:00".into(),
        };
        assert_eq!(i.to_string(), "oci:img:1");
    }
}
