//! Host side effects live behind the [`Host`] trait: every file read and write under /proc and
//! /etc, mounts, program lookups and probe executions. Decision logic takes facts gathered
//! through it and never touches the system itself; tests use [`fake::FakeHost`].

pub mod fake;
pub mod linux;

use serde::Serialize;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

/// What `uname(2)` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Uname {
    /// `uname -m`, e.g. "x86_64".
    pub machine: String,
    /// `uname -r`, e.g. "6.8.0-45-generic".
    pub release: String,
}

/// The CPU as the kernel reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuInfo {
    pub model: String,
    pub cores: usize,
    pub flags: Vec<String>,
}

/// How a probe program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum ProbeOutcome {
    /// It ran and exited with this code.
    Exited(i32),
    /// It ran and was killed by this signal.
    Signaled(i32),
    /// The kernel refused to execute it (ENOEXEC: "exec format error").
    ExecFormatError,
}

/// A program to run, with its arguments and extra environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Set in the child's environment on top of this process's.
    pub env: Vec<(String, String)>,
}

impl CommandSpec {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        CommandSpec {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// The command as a shell would show it (arguments quoted when needed), for messages and
    /// `--dry-run`.
    pub fn display(&self) -> String {
        let mut parts: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", sh_quote(v)))
            .collect();
        parts.push(sh_quote(&self.program.to_string_lossy()));
        parts.extend(self.args.iter().map(|a| sh_quote(&a.to_string_lossy())));
        parts.join(" ")
    }
}

/// Quote a string for POSIX sh: single quotes, with each `'` written as `'\''`. Plain words
/// (letters, digits and `-_./=:,+@%`) stay unquoted for readability.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b'=' | b':' | b',' | b'+' | b'@' | b'%'
                )
        })
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// How a command run to completion with captured output ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    pub status: ProbeOutcome,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.status == ProbeOutcome::Exited(0)
    }
}

/// Side effects on the host. One real implementation ([`linux::LinuxHost`]) and one recording
/// fake ([`fake::FakeHost`]).
pub trait Host {
    fn uname(&self) -> io::Result<Uname>;
    fn effective_uid(&self) -> u32;
    fn cpu(&self) -> CpuInfo;
    /// A short reason when this process runs inside a container ("docker", "podman", …).
    fn container(&self) -> Option<String>;

    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        let b = self.read(path)?;
        String::from_utf8(b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
    /// At most the first `max` bytes of a file.
    fn read_prefix(&self, path: &Path, max: usize) -> io::Result<Vec<u8>>;
    fn exists(&self, path: &Path) -> bool;
    /// File names in a directory (not paths), sorted.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Create or replace a regular file.
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    /// Write the whole buffer to an existing control file (binfmt_misc `register`, an entry,
    /// `status`) in a single write(2), without creating or truncating, as the kernel requires.
    fn write_control(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Create or replace an executable file (mode 0755), creating its directory.
    fn write_executable(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// `mount -t binfmt_misc binfmt_misc TARGET`.
    fn mount_binfmt_misc(&self, target: &Path) -> io::Result<()>;
    /// Look a program up on PATH and in the usual system directories.
    fn find_program(&self, name: &str) -> Option<PathBuf>;
    /// Write `image` to a private temporary file, execute it and report how it ended.
    fn run_program(&self, image: &[u8]) -> io::Result<ProbeOutcome>;
    /// [`Host::run_program`] for several independent programs, results in the same order.
    /// The real host runs them all at once (setup runs a dozen probes and self-tests, each
    /// mostly an emulator's start-up wait); this default runs them one after another.
    fn run_programs(&self, images: &[&[u8]]) -> Vec<io::Result<ProbeOutcome>> {
        images.iter().map(|i| self.run_program(i)).collect()
    }

    /// Run a command to completion with stdin closed, capturing stdout and stderr.
    /// `Err` only when it could not be started (e.g. the program does not exist).
    fn run_capture(&self, cmd: &CommandSpec) -> io::Result<CommandOutput>;
    /// Run a command attached to this process's stdin, stdout and stderr, forwarding the
    /// signals a terminal or supervisor sends (INT, TERM, HUP, QUIT, USR1, USR2) to it, and
    /// report how it ended.
    fn run_inherit(&self, cmd: &CommandSpec) -> io::Result<ProbeOutcome>;
}
