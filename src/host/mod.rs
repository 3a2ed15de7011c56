//! Host side effects live behind the [`Host`] trait: every file read and write under /proc and
//! /etc, mounts, program lookups and probe executions. Decision logic takes facts gathered
//! through it and never touches the system itself; tests use [`fake::FakeHost`].

pub mod fake;
pub mod linux;

use serde::Serialize;
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
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// `mount -t binfmt_misc binfmt_misc TARGET`.
    fn mount_binfmt_misc(&self, target: &Path) -> io::Result<()>;
    /// Look a program up on PATH and in the usual system directories.
    fn find_program(&self, name: &str) -> Option<PathBuf>;
    /// Write `image` to a private temporary file, execute it and report how it ended.
    fn run_program(&self, image: &[u8]) -> io::Result<ProbeOutcome>;
    /// The Docker engine's version when one answers on its socket.
    fn docker_version(&self) -> Option<String>;
}
