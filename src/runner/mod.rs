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
//!
//! This is the contract between the build pipeline and the places a build runs: it sits below
//! both `pipeline` (which holds the chroot runner) and `engine` (the Docker runner); `engine` never
//! imports the pipeline. [`endpoint`] parses where an engine is; [`unpack`] brings a job's output back to the
//! host without letting it point outside its directory.

pub mod endpoint;
pub mod unpack;

pub use endpoint::Endpoint;

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
/// daemonless chroot fallback (`crate::pipeline::chroot`).
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

/// How often the output loop looks whether the command has ended while its output pipe stays
/// silent.
const EXIT_CHECK: std::time::Duration = std::time::Duration::from_millis(50);

/// Copy `output` (the read end of the pipe that is a command's stdout and stderr) to `log` until
/// the command has ended, then what is left in the pipe, and return its end.
///
/// `ended(block)` says whether the command has ended (blocking until it has when `block`): it
/// is asked when the pipe is silent and when its last writer closed it. Once it has ended, the
/// pipe is drained without waiting: a process that outlives the command and still holds the
/// pipe (`sleep 999 &`, a daemon) cannot keep the build waiting for the end of the output. The
/// caller kills such processes in `ended` (see [`run_in_process_group`] and the chroot runner's
/// PID namespace).
pub fn read_until_exit<T>(
    output: std::os::fd::OwnedFd,
    log: &mut (dyn Write + Send),
    mut ended: impl FnMut(bool) -> std::io::Result<Option<T>>,
) -> std::io::Result<T> {
    use std::io::{ErrorKind, Read as _};
    use std::os::fd::AsRawFd as _;
    let fd = output.as_raw_fd();
    let mut file = std::fs::File::from(output);
    let mut buf = vec![0u8; 64 * 1024];
    let mut log_ok = true;
    let mut copy = |buf: &[u8]| {
        // Keep draining even when the log fails, or the command would block.
        if log_ok {
            log_ok = log.write_all(buf).is_ok();
        }
    };
    let end = loop {
        let mut pfd = nix::libc::pollfd {
            fd,
            events: nix::libc::POLLIN,
            revents: 0,
        };
        let timeout = i32::try_from(EXIT_CHECK.as_millis()).unwrap_or(50);
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { nix::libc::poll(&mut pfd, 1, timeout) };
        if ready < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if ready == 0 {
            match ended(false)? {
                Some(end) => break end,
                None => continue,
            }
        }
        match file.read(&mut buf) {
            Ok(0) => {
                break loop {
                    // Every writer is gone; only the command's end is left to wait for.
                    if let Some(end) = ended(true)? {
                        break end;
                    }
                };
            }
            Ok(n) => copy(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    // What the command and its leftovers wrote before they were killed.
    nix::fcntl::fcntl(
        &file,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map_err(std::io::Error::from)?;
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => copy(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    let _ = log.flush();
    Ok(end)
}

/// Run `command` (a host build: no sandbox) in a process group of its own, its stdout and
/// stderr interleaved into `log`. When the command exits, its process group is killed
/// (SIGKILL), so what it left in the background (`sleep 999 &`, `make` helpers, a gradle
/// daemon) neither outlives the build nor keeps it waiting for the end of the output. A process
/// that left the group (`setsid`) survives, but cannot hold the build either.
pub fn run_in_process_group(
    command: &mut std::process::Command,
    log: &mut (dyn Write + Send),
) -> std::io::Result<std::process::ExitStatus> {
    use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
    use std::os::unix::process::CommandExt as _;
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let writer_err = writer.try_clone()?;
    command
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(writer))
        .stderr(std::process::Stdio::from(writer_err));
    let spawned = command.spawn();
    // The Command holds the pipe's write ends until they are replaced: without that the read
    // below would never see the end of the output.
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = spawned?;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let result = read_until_exit(reader, log, |block| {
        let mut flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
        if !block {
            flags |= WaitPidFlag::WNOHANG;
        }
        // WNOWAIT: the command stays a zombie, so its process group id cannot be reused
        // before the group is killed.
        match waitid(Id::Pid(pid), flags) {
            Ok(WaitStatus::StillAlive) => Ok(None),
            Ok(_) => {
                let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
                Ok(Some(()))
            }
            Err(nix::errno::Errno::EINTR) => Ok(None),
            Err(e) => Err(e.into()),
        }
    });
    if result.is_err() {
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
    }
    let status = child.wait()?;
    result.map(|()| status)
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

    /// Processes whose command line is exactly `argv`.
    fn processes(argv: &[&str]) -> Vec<i32> {
        let want: Vec<u8> = argv
            .iter()
            .flat_map(|a| [a.as_bytes(), b"\0"].concat())
            .collect();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
                let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
                (cmdline == want).then_some(pid)
            })
            .collect()
    }

    /// [`processes`] once they have had up to 2 s to die (SIGKILL is delivered asynchronously).
    fn still_running(argv: &[&str]) -> Vec<i32> {
        let start = std::time::Instant::now();
        loop {
            let found = processes(argv);
            if found.is_empty() || start.elapsed() > std::time::Duration::from_secs(2) {
                return found;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn a_host_command_s_background_processes_die_with_it() {
        let mut command = std::process::Command::new("sh");
        command
            .arg("-c")
            .arg("sleep 999.61 & sh -c 'sleep 999.61' & echo out; echo err >&2; exit 3");
        let mut log = Vec::new();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let status = run_in_process_group(&mut command, &mut log).map(|s| s.code());
            let _ = tx.send((status, log));
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(10));
        let left = still_running(&["sleep", "999.61"]);
        for p in &left {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let (status, log) = got.expect("the command's background sleep held the output pipe");
        assert_eq!(status.unwrap(), Some(3));
        let log = String::from_utf8(log).unwrap();
        assert!(log.contains("out\n") && log.contains("err\n"), "{log:?}");
        assert!(left.is_empty(), "left running: {left:?}");
    }

    #[test]
    fn output_written_before_the_command_exits_is_all_read() {
        let mut command = std::process::Command::new("sh");
        command
            .arg("-c")
            .arg("seq 1 20000; (sleep 999.62; echo late) &");
        let mut log = Vec::new();
        let status = run_in_process_group(&mut command, &mut log).unwrap();
        assert!(status.success());
        let text = String::from_utf8(log).unwrap();
        assert_eq!(text.lines().count(), 20000, "{}", &text[text.len() - 20..]);
        assert!(!text.contains("late"));
        assert!(still_running(&["sleep", "999.62"]).is_empty());
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
