//! The real host: Linux syscalls through nix and std.

use super::{CommandOutput, CommandSpec, CpuInfo, Host, ProbeOutcome, Uname};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// How long a probe program may run before it is killed (a wedged emulator must not hang setup).
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// Directories searched after PATH: `sudo` resets PATH, and Debian puts QEMU in /usr/bin.
const SYSTEM_DIRS: &[&str] = &[
    "/usr/local/bin",
    "/usr/bin",
    "/bin",
    "/usr/local/sbin",
    "/usr/sbin",
];

#[derive(Debug, Default)]
pub struct LinuxHost;

impl Host for LinuxHost {
    fn uname(&self) -> io::Result<Uname> {
        let u = nix::sys::utsname::uname().map_err(io::Error::from)?;
        Ok(Uname {
            machine: u.machine().to_string_lossy().into_owned(),
            release: u.release().to_string_lossy().into_owned(),
        })
    }

    fn effective_uid(&self) -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    fn cpu(&self) -> CpuInfo {
        let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let mut info = parse_cpuinfo(&text);
        if info.model.is_empty() {
            let sys = sysinfo::System::new_with_specifics(
                sysinfo::RefreshKind::nothing().with_cpu(sysinfo::CpuRefreshKind::nothing()),
            );
            if let Some(c) = sys.cpus().first() {
                info.model = c.brand().to_string();
            }
        }
        info.cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(info.cores);
        info
    }

    fn container(&self) -> Option<String> {
        if Path::new("/.dockerenv").exists() {
            return Some("docker".into());
        }
        if Path::new("/run/.containerenv").exists() {
            return Some("podman".into());
        }
        let cgroup = std::fs::read_to_string("/proc/1/cgroup").unwrap_or_default();
        for (needle, name) in [
            ("kubepods", "kubernetes"),
            ("docker", "docker"),
            ("containerd", "containerd"),
            ("lxc", "lxc"),
        ] {
            if cgroup.contains(needle) {
                return Some(name.into());
            }
        }
        let environ = std::fs::read("/proc/1/environ").unwrap_or_default();
        environ
            .split(|b| *b == 0)
            .find_map(|kv| kv.strip_prefix(b"container="))
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn read_prefix(&self, path: &Path, max: usize) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        std::fs::File::open(path)?
            .take(max as u64)
            .read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(path)? {
            names.push(e?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        std::fs::write(path, data)
    }

    fn write_control(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        let n = f.write(data)?;
        if n != data.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {n} of {} bytes", data.len()),
            ));
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn write_executable(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Write aside and rename, so a build running the old file never sees a half-written one.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(data)?;
            f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        }
        std::fs::rename(&tmp, path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn mount_binfmt_misc(&self, target: &Path) -> io::Result<()> {
        nix::mount::mount(
            Some("binfmt_misc"),
            target,
            Some("binfmt_misc"),
            nix::mount::MsFlags::MS_NOSUID
                | nix::mount::MsFlags::MS_NODEV
                | nix::mount::MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(io::Error::from)
    }

    fn find_program(&self, name: &str) -> Option<PathBuf> {
        if let Ok(p) = which::which(name) {
            return Some(p);
        }
        SYSTEM_DIRS
            .iter()
            .map(|d| Path::new(d).join(name))
            .find(|p| p.is_file())
    }

    fn run_program(&self, image: &[u8]) -> io::Result<ProbeOutcome> {
        let dir = tempfile::Builder::new().prefix("rcross-probe").tempdir()?;
        let path = dir.path().join("probe");
        {
            let mut f = std::fs::File::create(&path)?;
            f.write_all(image)?;
            // No fsync: exec reads the page cache, and a probe file need not survive a crash.
            f.set_permissions(std::fs::Permissions::from_mode(0o700))?;
        }
        let mut child = match spawn_retrying_busy(&path) {
            Ok(c) => c,
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOEXEC as i32) => {
                return Ok(ProbeOutcome::ExecFormatError)
            }
            Err(e) => return Err(e),
        };
        let start = Instant::now();
        // Most probes end within a millisecond or two (an emulator start takes longer): poll
        // often at first, then back off to 5 ms.
        let mut pause = Duration::from_micros(100);
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            if start.elapsed() > PROBE_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("probe did not exit within {}s", PROBE_TIMEOUT.as_secs()),
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        };
        Ok(match (status.code(), status.signal()) {
            (Some(c), _) => ProbeOutcome::Exited(c),
            (None, Some(s)) => ProbeOutcome::Signaled(s),
            (None, None) => ProbeOutcome::Signaled(0),
        })
    }

    fn run_programs(&self, images: &[&[u8]]) -> Vec<io::Result<ProbeOutcome>> {
        match images.len() {
            0 => return Vec::new(),
            1 => return vec![self.run_program(images[0])],
            _ => {}
        }
        let dir = match tempfile::Builder::new().prefix("rcross-probe").tempdir() {
            Ok(d) => d,
            Err(e) => return images.iter().map(|_| Err(clone_err(&e))).collect(),
        };
        // Every file is written and closed before the first spawn, so no child can inherit a
        // writable descriptor to another probe (ETXTBSY); then all run at once from this one
        // thread, and are reaped as they end.
        let mut results: Vec<Option<io::Result<ProbeOutcome>>> = Vec::new();
        let mut paths = Vec::new();
        for (i, image) in images.iter().enumerate() {
            let path = dir.path().join(format!("probe-{i}"));
            match write_probe(&path, image) {
                Ok(()) => {
                    results.push(None);
                    paths.push(Some(path));
                }
                Err(e) => {
                    results.push(Some(Err(e)));
                    paths.push(None);
                }
            }
        }
        let mut running: Vec<(usize, std::process::Child)> = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            let Some(path) = path else { continue };
            match spawn_retrying_busy(path) {
                Ok(c) => running.push((i, c)),
                Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOEXEC as i32) => {
                    results[i] = Some(Ok(ProbeOutcome::ExecFormatError))
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let start = Instant::now();
        let mut pause = Duration::from_micros(100);
        while !running.is_empty() {
            let mut still = Vec::with_capacity(running.len());
            for (i, mut child) in running {
                match child.try_wait() {
                    Ok(Some(st)) => results[i] = Some(Ok(outcome(st))),
                    Ok(None) if start.elapsed() > PROBE_TIMEOUT => {
                        let _ = child.kill();
                        let _ = child.wait();
                        results[i] = Some(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("probe did not exit within {}s", PROBE_TIMEOUT.as_secs()),
                        )));
                    }
                    Ok(None) => still.push((i, child)),
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
            running = still;
            if !running.is_empty() {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(2));
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(io::Error::other("probe was not run"))))
            .collect()
    }

    fn run_capture(&self, cmd: &CommandSpec) -> io::Result<CommandOutput> {
        let out = command(cmd).stdin(Stdio::null()).output()?;
        Ok(CommandOutput {
            status: outcome(out.status),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    fn run_inherit(&self, cmd: &CommandSpec) -> io::Result<ProbeOutcome> {
        let guard = Forwarding::install();
        let mut child = match command(cmd).spawn() {
            Ok(c) => c,
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOEXEC as i32) => {
                return Ok(ProbeOutcome::ExecFormatError)
            }
            Err(e) => return Err(e),
        };
        CHILD_PID.store(i32::try_from(child.id()).unwrap_or(0), Ordering::SeqCst);
        let status = child.wait();
        CHILD_PID.store(0, Ordering::SeqCst);
        drop(guard);
        Ok(outcome(status?))
    }
}

fn write_probe(path: &Path, image: &[u8]) -> io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(image)?;
    // No fsync: exec reads the page cache, and a probe file need not survive a crash.
    f.set_permissions(std::fs::Permissions::from_mode(0o700))
}

fn clone_err(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

fn command(cmd: &CommandSpec) -> Command {
    let mut c = Command::new(&cmd.program);
    c.args(&cmd.args);
    for (k, v) in &cmd.env {
        c.env(k, v);
    }
    c
}

fn outcome(status: std::process::ExitStatus) -> ProbeOutcome {
    match (status.code(), status.signal()) {
        (Some(c), _) => ProbeOutcome::Exited(c),
        (None, Some(s)) => ProbeOutcome::Signaled(s),
        (None, None) => ProbeOutcome::Signaled(0),
    }
}

/// The child that [`forward_signal`] passes signals on to (0: none).
static CHILD_PID: AtomicI32 = AtomicI32::new(0);

/// Signals a terminal, `timeout`, a CI runner or a supervisor sends to stop or poke a program.
const FORWARDED: &[nix::sys::signal::Signal] = &[
    nix::sys::signal::Signal::SIGINT,
    nix::sys::signal::Signal::SIGTERM,
    nix::sys::signal::Signal::SIGHUP,
    nix::sys::signal::Signal::SIGQUIT,
    nix::sys::signal::Signal::SIGUSR1,
    nix::sys::signal::Signal::SIGUSR2,
];

extern "C" fn forward_signal(
    sig: nix::libc::c_int,
    info: *mut nix::libc::siginfo_t,
    _ctx: *mut nix::libc::c_void,
) {
    // SAFETY: for an SA_SIGINFO handler the kernel passes a valid siginfo_t (checked for null
    // anyway); reading a plain integer field is async-signal-safe.
    let code = if info.is_null() {
        0
    } else {
        unsafe { (*info).si_code }
    };
    // The terminal driver (Ctrl-C, hang-up) signals the whole foreground process group, child
    // included: forwarding would deliver it twice.
    if code == nix::libc::SI_KERNEL {
        return;
    }
    let pid = CHILD_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe and takes plain integers.
        unsafe {
            nix::libc::kill(pid, sig);
        }
    }
}

/// Signal handlers that forward to the running child while alive; the previous handlers come
/// back on drop.
struct Forwarding {
    old: Vec<(nix::sys::signal::Signal, nix::sys::signal::SigAction)>,
}

impl Forwarding {
    fn install() -> Forwarding {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
        let act = SigAction::new(
            SigHandler::SigAction(forward_signal),
            SaFlags::SA_RESTART | SaFlags::SA_SIGINFO,
            SigSet::empty(),
        );
        let mut old = Vec::new();
        for &sig in FORWARDED {
            // SAFETY: the handler only reads its siginfo and an atomic and calls kill(2), all
            // async-signal-safe; it is restored before this process does anything else.
            if let Ok(prev) = unsafe { sigaction(sig, &act) } {
                old.push((sig, prev));
            }
        }
        Forwarding { old }
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        for (sig, prev) in &self.old {
            // SAFETY: restores the handler that was installed before (usually the default).
            let _ = unsafe { nix::sys::signal::sigaction(*sig, prev) };
        }
    }
}

/// Spawning a file just written can fail with ETXTBSY while another thread's fork still holds a
/// writable descriptor to it; that clears within milliseconds.
fn spawn_retrying_busy(path: &Path) -> io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        let r = Command::new(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match r {
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ETXTBSY as i32) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Parse /proc/cpuinfo (x86: "model name"/"flags"; arm: "Features"/"CPU part"/"Model").
pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut info = CpuInfo::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        match k {
            "processor" => info.cores += 1,
            "model name" | "Model" | "cpu model" | "uarch" if info.model.is_empty() => {
                info.model = v.to_string()
            }
            "flags" | "Features" | "isa" if info.flags.is_empty() => {
                info.flags = v.split_whitespace().map(str::to_string).collect()
            }
            _ => {}
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_x86_and_arm() {
        let x86 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2\n";
        let c = parse_cpuinfo(x86);
        assert_eq!(c.model, "AMD EPYC");
        assert_eq!(c.cores, 2);
        assert_eq!(c.flags, vec!["fpu", "sse2", "avx2"]);
        let arm =
            "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm\nCPU part\t: 0xd0c\n";
        let c = parse_cpuinfo(arm);
        assert_eq!(c.flags, vec!["fp", "asimd", "evtstrm"]);
        assert_eq!(parse_cpuinfo("garbage\n:::\n"), CpuInfo::default());
    }
}
