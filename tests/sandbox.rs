//! The build sandbox against the real kernel, run as root: a chroot job runs in its own user
//! namespace (the image's root is an unprivileged id range on the host), its own PID namespace
//! (a reaper as PID 1 kills what the command leaves behind) with a fresh /proc, and without a
//! way back to the host's root; a host build's process group is killed when its command exits.
//!
//! The build image is a native (linux/amd64) busybox root from Debian's busybox-static package
//! (see tests/common_rootfs), so no emulator is involved. Everything a job mounts lives in its
//! own mount namespace; the processes a test starts are killed by the test.

mod common_rootfs;
mod prereq;

use common_rootfs::RootfsSpec;
use rcross::pipeline::chroot::{
    ChrootCommand, ChrootMount, ChrootNetwork, ChrootOptions, ChrootRunner, ChrootSystem, JobIds,
    LinuxChroot, MountSource, RunAs,
};
use rcross::pipeline::rootfs;
use rcross::runner::{BuildImage, ContainerJob, ContainerRunner, JobExit};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const RCROSS: &str = env!("CARGO_BIN_EXE_rcross");

/// A native busybox root: enough shell for the sandbox's tests.
const AMD64_BUSYBOX: RootfsSpec<'static> = RootfsSpec {
    arch: "amd64",
    platform: "linux/amd64",
    packages: &["busybox-static"],
    busybox_applets: &[
        "sh", "ls", "cat", "echo", "test", "[", "true", "false", "id", "sleep", "touch", "chown",
        "mkdir", "kill", "grep", "tr", "wc", "stat", "head", "rm",
    ],
};

/// The test's prerequisites: root (the sandbox maps a 65536-id range, which needs it) and the
/// fixture image. A missing one fails the test.
fn layout() -> PathBuf {
    assert!(
        nix::unistd::geteuid().is_root(),
        "tests/sandbox.rs must run as root (sudo cargo test --test sandbox)"
    );
    common_rootfs::debian_layout(&AMD64_BUSYBOX).unwrap_or_else(|e| {
        panic!("the amd64 busybox fixture cannot be built (needs apt-get and a Debian mirror): {e}")
    })
}

/// One job's directories and runner.
struct Sandbox {
    tmp: tempfile::TempDir,
    layout: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let layout = layout();
        let tmp = tempfile::tempdir().unwrap();
        // Like ~/.cache in root's home (/root is 0700): the job's ids may not search it.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::create_dir_all(tmp.path().join("project")).unwrap();
        std::fs::write(tmp.path().join("project/input.txt"), "input\n").unwrap();
        Sandbox { tmp, layout }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    fn options(&self) -> ChrootOptions {
        ChrootOptions::in_cache(&self.path("cache/rcross/rootfs"))
    }

    fn job(&self, command: &str) -> ContainerJob {
        let out = self.path("out");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap();
        ContainerJob {
            platform: "linux/amd64".parse().unwrap(),
            image: BuildImage::Layout {
                dir: self.layout.clone(),
                reference: None,
                manifest: common_rootfs::platform_manifest(&self.layout, "linux/amd64"),
            },
            context: self.path("project"),
            workdir: PathBuf::from("."),
            command: command.to_string(),
            env: vec![("RCROSS_OUT".into(), "/rcross/out".into())],
            out_dir: out,
        }
    }

    /// Run `command` in a thread; its exit, log and duration, or `None` when it has not
    /// returned after `limit` (the thread is left to finish once the test kills what holds it).
    fn run_within(&self, command: &str, limit: Duration) -> Option<(JobExit, String, Duration)> {
        let job = self.job(command);
        let options = self.options();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let runner = ChrootRunner::new(options);
            let mut log = Vec::new();
            let start = Instant::now();
            let r = runner.run(&job, &mut log);
            let took = start.elapsed();
            let _ = tx.send((r.map_err(|e| e.to_string()), log, took));
        });
        let (r, log, took) = rx.recv_timeout(limit).ok()?;
        let log = String::from_utf8_lossy(&log).into_owned();
        eprintln!("--- job `{command}` ({took:?}):\n{log}---");
        let exit = r.unwrap_or_else(|e| panic!("the runner failed: {e}\n{log}"));
        Some((exit, log, took))
    }

    fn run(&self, command: &str) -> (JobExit, String, Duration) {
        self.run_within(command, Duration::from_secs(120))
            .unwrap_or_else(|| panic!("`{command}` did not return within 120 s"))
    }
}

/// Processes whose command line is exactly `argv`.
fn processes(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want) {
            found.push(pid);
        }
    }
    found
}

/// [`processes`] once they have had up to 2 s to die (SIGKILL is delivered asynchronously).
fn still_running(argv: &[&str]) -> Vec<i32> {
    let start = Instant::now();
    loop {
        let found = processes(argv);
        if found.is_empty() || start.elapsed() > Duration::from_secs(2) {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kill what a test started (on the old code, the leftovers it is asserting against).
fn kill_all(pids: &[i32]) {
    for p in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Wait up to `limit` for processes with this command line to appear.
fn wait_for(argv: &[&str], limit: Duration) -> Vec<i32> {
    let start = Instant::now();
    loop {
        let found = processes(argv);
        if !found.is_empty() || start.elapsed() > limit {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `Uid:` or `Gid:` of /proc/PID/status: real, effective, saved, fs.
fn status_ids(pid: i32, key: &str) -> Vec<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"));
    line.split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect()
}

/// A build that leaves `sleep 999` running in the background returns within 2 s of its command
/// (measured against a job that does nothing), and no such process is left.
#[test]
fn a_backgrounded_sleep_neither_hangs_the_job_nor_outlives_it() {
    let s = Sandbox::new();
    let (exit, _, baseline) = s.run("true");
    assert!(exit.success());
    let argv = ["sleep", "999.101"];
    let result = s.run_within("sleep 999.101 & echo started", Duration::from_secs(30));
    let left = processes(&argv);
    kill_all(&left);
    let (exit, log, took) = result.unwrap_or_else(|| {
        panic!("the job did not return within 30 s: the backgrounded sleep holds its output pipe")
    });
    assert!(exit.success(), "{exit:?}");
    assert!(log.contains("started"), "{log}");
    assert!(
        left.is_empty(),
        "`sleep 999.101` outlived the job: {left:?}"
    );
    assert!(
        took < baseline + Duration::from_secs(2),
        "the job took {took:?}, a job doing nothing {baseline:?}"
    );
}

/// Inside, the build is root (uid and gid 0); the host sees an unprivileged id of a 65536-id
/// range, for the processes and for the files of the job's root.
#[test]
fn the_job_is_root_inside_and_an_unprivileged_id_outside() {
    let s = Sandbox::new();
    let argv = ["sleep", "999.202"];
    let job = s.job("echo uid=$(id -u) gid=$(id -g); touch /tmp/made-inside; exec sleep 999.202");
    let options = s.options();
    let work = options.work.clone();
    let handle = std::thread::spawn(move || {
        let mut log = Vec::new();
        let r = ChrootRunner::new(options).run(&job, &mut log);
        (
            r.map_err(|e| e.to_string()),
            String::from_utf8_lossy(&log).into_owned(),
        )
    });
    let found = wait_for(&argv, Duration::from_secs(60));
    assert_eq!(found.len(), 1, "the job's sleep is not running: {found:?}");
    let pid = found[0];
    let uids = status_ids(pid, "Uid:");
    let gids = status_ids(pid, "Gid:");
    let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    let gid_map = std::fs::read_to_string(format!("/proc/{pid}/gid_map")).unwrap();
    // The job's root, seen from the host while the job runs.
    let job_root = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().path().join("root"))
        .find(|p| p.join("tmp/made-inside").exists());
    let owners = job_root.as_ref().map(|r| {
        let made = std::fs::metadata(r.join("tmp/made-inside")).unwrap();
        let passwd = std::fs::metadata(r.join("bin/busybox")).unwrap();
        (made.uid(), made.gid(), passwd.uid())
    });
    kill_all(&found);
    let (r, log) = handle.join().unwrap();
    eprintln!("--- log:\n{log}--- uid_map: {uid_map:?} Uid: {uids:?}");
    r.unwrap();
    assert!(log.contains("uid=0 gid=0"), "{log}");
    let base = uids[0];
    assert!(
        base >= 65536,
        "the job runs as host uid {base}, not in an unprivileged range"
    );
    assert_eq!(uids, [base; 4]);
    assert_eq!(gids, [base; 4], "gids are mapped like uids");
    let fields: Vec<&str> = uid_map.split_whitespace().collect();
    assert_eq!(fields, ["0", &base.to_string(), "65536"], "{uid_map}");
    assert_eq!(uid_map, gid_map);
    // The job's copy of the image is owned inside the range: image root is `base` on the host,
    // and what the job makes is too.
    let (made_uid, made_gid, image_uid) = owners.expect("the job's root was not found");
    assert_eq!((made_uid, made_gid, image_uid), (base, base, base));
}

/// The job cannot see or signal a host process, its /proc lists only its own processes, and the
/// host's root is not reachable through /proc.
#[test]
fn a_job_cannot_see_or_signal_host_processes_or_reach_the_host_root() {
    let s = Sandbox::new();
    let mut host = Command::new("sleep").arg("999.303").spawn().unwrap();
    let secret = s.path("host-secret");
    std::fs::write(&secret, "host only\n").unwrap();
    let command = format!(
        "kill -0 {pid} && echo signalled-host || echo kill-refused
echo procs: $(ls /proc | grep '^[0-9]*$' | tr '\\n' ' ')
echo self=$$
cat /proc/1/root{secret} && echo reached-host-root || echo host-root-unreachable
test -e /proc/1/root/proc/1/root{secret} && echo reached-host-root-2
cd / && cd .. && cat ../..{secret} && echo reached-host-dir
true",
        pid = host.id(),
        secret = secret.display(),
    );
    let result = s.run(&command);
    let _ = host.kill();
    let _ = host.wait();
    let (exit, log, _) = result;
    eprintln!("{log}");
    assert!(exit.success(), "{exit:?}");
    assert!(log.contains("kill-refused"), "{log}");
    assert!(!log.contains("signalled-host"), "{log}");
    assert!(!log.contains("reached-host"), "{log}");
    assert!(
        log.contains("self=2"),
        "the command is PID 2, after the reaper: {log}"
    );
    assert!(log.contains("host-root-unreachable"), "{log}");
    let procs: Vec<u32> = log
        .lines()
        .find_map(|l| l.strip_prefix("procs: "))
        .unwrap_or_else(|| panic!("{log}"))
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        procs.contains(&1) && procs.len() < 10 && procs.iter().all(|p| *p < 100),
        "the job's /proc shows other processes: {procs:?}"
    );
    assert!(!procs.contains(&host.id()), "{procs:?}");
}

/// A descriptor rcross holds without close-on-exec (inherited from whoever started it) does
/// not reach the job: it sees only its stdin, stdout and stderr.
#[test]
fn a_descriptor_without_close_on_exec_does_not_reach_the_job() {
    let s = Sandbox::new();
    let secret = s.path("host-secret");
    std::fs::write(&secret, "host only\n").unwrap();
    let leaky = nix::fcntl::open(
        &secret,
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    // A high number no shell uses, without close-on-exec (F_DUPFD does not set it).
    let fd = nix::fcntl::fcntl(&leaky, nix::fcntl::FcntlArg::F_DUPFD(100)).unwrap();
    drop(leaky);
    let (exit, log, _) = s.run(&format!(
        "echo fds: $(cd /proc/self/fd && echo *)
cat /proc/self/fd/{fd} 2>/dev/null && echo read-host-fd || true"
    ));
    nix::unistd::close(fd).unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(
        !log.contains("read-host-fd") && !log.contains("host only"),
        "{log}"
    );
    let fds = log
        .lines()
        .find_map(|l| l.strip_prefix("fds: "))
        .unwrap_or_else(|| panic!("{log}"));
    // The shell's own: 0, 1, 2, and the directory it lists.
    assert!(
        fds.split_whitespace()
            .all(|f| f.parse::<u32>().unwrap() <= 3),
        "the job has descriptors it did not open: {fds}"
    );
}

/// `chown` to other ids works inside, and the output keeps the in-image owners (never a host
/// id of the mapped range).
#[test]
fn chown_works_inside_and_the_output_records_image_ids() {
    let s = Sandbox::new();
    let (exit, log, _) = s.run(
        "set -e
touch $RCROSS_OUT/nobody $RCROSS_OUT/root
chown 65534:65534 $RCROSS_OUT/nobody
mkdir $RCROSS_OUT/apt
chown 42:42 $RCROSS_OUT/apt
touch $RCROSS_OUT/apt/inside
chown 42:65534 $RCROSS_OUT/apt/inside
stat -c '%u:%g %n' $RCROSS_OUT/nobody $RCROSS_OUT/apt",
    );
    assert!(exit.success(), "{exit:?} {log}");
    assert!(log.contains("65534:65534 /rcross/out/nobody"), "{log}");
    let owner = |p: &str| {
        let m = std::fs::symlink_metadata(s.path("out").join(p)).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(owner("nobody"), (65534, 65534));
    assert_eq!(owner("apt"), (42, 42));
    assert_eq!(owner("apt/inside"), (42, 65534));
    assert_eq!(owner("root"), (0, 0));
    // The cached root stays as the image has it.
    let cached = std::fs::read_dir(s.path("cache/rcross/rootfs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .unwrap();
    let m = std::fs::metadata(cached.join("root/bin/busybox")).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0));
}

/// A host build (no chroot) whose command leaves `sleep 999` in the background: rcross returns
/// promptly and kills it with the command's process group.
#[test]
fn a_host_build_that_backgrounds_a_sleep_returns_promptly() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("rcross.toml"),
        r#"[image]
name = "bg"
platforms = ["linux/amd64"]
[build]
command = 'echo data > "$RCROSS_OUT/a.txt"; sleep 999.404 & echo done'
[[artifact]]
from = "a.txt"
to = "/a.txt"
mode = "0644"
"#,
    )
    .unwrap();
    let output = format!("oci:{}", tmp.path().join("layout").display());
    let mut child = Command::new(RCROSS)
        .args(["build", project.to_str().unwrap(), "--output", &output])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let argv = ["sleep", "999.404"];
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > Duration::from_secs(30) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = start.elapsed();
    let left = still_running(&argv);
    kill_all(&left);
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("rcross build did not return within 30 s: the backgrounded sleep holds its pipe");
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        left.is_empty(),
        "`sleep 999.404` outlived the build: {left:?}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}: {stderr}");
    assert!(Path::new(&tmp.path().join("layout/index.json")).exists());
}

/// Without a reachable Docker engine, `rcross build` falls back to the chroot and says so as a
/// warning naming DOCKER_HOST and --engine; the chroot build itself works end to end.
#[test]
fn the_fallback_to_the_chroot_is_a_warning_naming_docker_host() {
    let layout = layout();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let project = tmp.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("rcross.toml"),
        format!(
            r#"[image]
name = "fallback"
platforms = ["linux/amd64"]
[build]
image = "oci:{}"
container = "always"
command = 'echo "uid $(id -u)" > "$RCROSS_OUT/a.txt"'
[[artifact]]
from = "a.txt"
to = "/a.txt"
mode = "0644"
"#,
            layout.display()
        ),
    )
    .unwrap();
    let socket = format!("unix://{}", tmp.path().join("no-docker.sock").display());
    let output = format!("oci:{}", tmp.path().join("layout").display());
    let out = Command::new(RCROSS)
        .args(["build", project.to_str().unwrap(), "--output", &output])
        .env("DOCKER_HOST", &socket)
        .env("XDG_CACHE_HOME", tmp.path().join("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "{}: {stderr}", out.status);
    let warning = stderr
        .lines()
        .find(|l| l.contains("no Docker engine"))
        .unwrap_or_else(|| panic!("the fallback is silent: {stderr}"));
    assert!(warning.starts_with("warning: "), "{warning}");
    assert!(
        warning.contains(&format!("DOCKER_HOST={socket}")) && warning.contains("--engine"),
        "{warning}"
    );
    // The artifact, read back from the image's layer with GNU tar: the build saw itself as root.
    let dir = tmp.path().join("layout");
    let blob = |digest: &str| {
        dir.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let json = |digest: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(blob(digest)).unwrap()).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let mut digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut manifest = json(&digest);
    if manifest["manifests"].is_array() {
        digest = manifest["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        manifest = json(&digest);
    }
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let a = Command::new("tar")
        .arg("-xzOf")
        .arg(blob(layer))
        .arg("a.txt")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&a.stdout), "uid 0\n", "{a:?}");
}

/// Set (to a job file) when this binary runs as [`sandbox_job_helper`] for another test.
const HELPER_ENV: &str = "RCROSS_SANDBOX_TEST_JOB";

/// Not a test of its own: a job run by [`an_unprivileged_user_gets_its_subuid_range`] as that
/// user, in this binary re-executed. Without the variable it does nothing.
/// Re-executed inside a namespace by the test above (`--ignored --exact sandbox_job_helper`).
/// Ignored, so a plain run does not count it as a passed test; run any other way it fails.
#[test]
#[ignore = "re-executed inside a namespace by an_unprivileged_user_gets_its_subuid_range; not a test of its own"]
fn sandbox_job_helper() {
    let Some(spec_path) = std::env::var_os(HELPER_ENV) else {
        panic!("sandbox_job_helper runs only re-executed, with {HELPER_ENV} set");
    };
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(spec_path).unwrap()).unwrap();
    let s = |k: &str| spec[k].as_str().unwrap().to_string();
    let job = ContainerJob {
        platform: "linux/amd64".parse().unwrap(),
        image: BuildImage::Layout {
            dir: PathBuf::from(s("layout")),
            reference: None,
            manifest: s("manifest"),
        },
        context: PathBuf::from(s("context")),
        workdir: PathBuf::from("."),
        command: s("command"),
        env: vec![("RCROSS_OUT".into(), "/rcross/out".into())],
        out_dir: PathBuf::from(s("out_dir")),
    };
    let runner = ChrootRunner::new(ChrootOptions::in_cache(Path::new(&s("cache"))));
    let mut log = std::fs::File::create(s("log")).unwrap();
    let result = match runner.run(&job, &mut log) {
        Ok(exit) => serde_json::json!({ "exit": exit.code }),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    };
    std::fs::write(s("result"), result.to_string()).unwrap();
}

/// An unprivileged user with /etc/subuid and /etc/subgid ranges (a private passwd, subuid and
/// subgid bound over the machine's in a private mount namespace) gets them through newuidmap:
/// `chown` works inside, and what the job leaves owned by ids of the range comes back as the
/// user's, readable and removable.
#[test]
fn an_unprivileged_user_gets_its_subuid_range() {
    const UID: u32 = 64123;
    let layout = layout();
    for tool in ["newuidmap", "newgidmap", "setpriv"] {
        assert!(
            which::which(tool).is_ok(),
            "{tool} is missing: apt-get install uidmap util-linux"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let path = |p: &str| t.join(p);
    for d in ["project", "out", "cache"] {
        std::fs::create_dir_all(path(d)).unwrap();
    }
    std::fs::write(path("project/input.txt"), "input\n").unwrap();
    let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd.push_str(&format!(
        "rcross-sandbox:x:{UID}:{UID}::/nonexistent:/bin/sh\n"
    ));
    std::fs::write(path("passwd"), passwd).unwrap();
    std::fs::write(path("subuid"), "rcross-sandbox:500000:65536\n").unwrap();
    std::fs::write(path("subgid"), "rcross-sandbox:600000:65536\n").unwrap();
    // A copy the user can read (the fixture is root's).
    let copied = Command::new("cp")
        .arg("-r")
        .arg(&layout)
        .arg(path("layout"))
        .status()
        .unwrap();
    assert!(copied.success());
    let spec = serde_json::json!({
        "layout": path("layout"),
        "manifest": common_rootfs::platform_manifest(&layout, "linux/amd64"),
        "context": path("project"),
        "out_dir": path("out"),
        "cache": path("cache/rcross/rootfs"),
        "log": path("job.log"),
        "result": path("result.json"),
        "command": "set -e
echo uid=$(id -u)
cat /proc/self/uid_map /proc/self/gid_map
touch $RCROSS_OUT/f
chown 42:42 $RCROSS_OUT/f
echo chowned=$(stat -c %u:%g $RCROSS_OUT/f)
chmod 600 $RCROSS_OUT/f
mkdir -p /var/private
touch /var/private/x
chmod 600 /var/private/x
chown -R 7:7 /var/private
chmod 700 /var/private",
    });
    std::fs::write(path("job.json"), spec.to_string()).unwrap();
    let status = Command::new("chown")
        .args(["-R", &format!("{UID}:{UID}")])
        .arg(t)
        .status()
        .unwrap();
    assert!(status.success());
    let script = r#"set -eu
mount --bind "$T/passwd" /etc/passwd
mount --bind "$T/subuid" /etc/subuid
mount --bind "$T/subgid" /etc/subgid
exec setpriv --reuid="$ID" --regid="$ID" --clear-groups -- "$TEST_EXE" --ignored --exact sandbox_job_helper --nocapture --test-threads=1
"#;
    // /etc/subuid and /etc/subgid must exist to be bound over: made (empty) when missing and
    // removed again afterwards.
    let made: Vec<&str> = ["/etc/subuid", "/etc/subgid"]
        .into_iter()
        .filter(|f| !Path::new(f).exists())
        .collect();
    for f in &made {
        std::fs::write(f, "").unwrap();
    }
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
        ])
        .env("T", t)
        .env("ID", UID.to_string())
        .env("TEST_EXE", std::env::current_exe().unwrap())
        .env(HELPER_ENV, path("job.json"))
        .output()
        .unwrap();
    for f in &made {
        let _ = std::fs::remove_file(f);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    let log = std::fs::read_to_string(path("job.log")).unwrap_or_default();
    let result = std::fs::read_to_string(path("result.json"))
        .unwrap_or_else(|e| panic!("no result ({e}): {stderr}"));
    eprintln!("--- log:\n{log}--- result: {result}");
    let result: serde_json::Value = serde_json::from_str(&result).unwrap();
    assert_eq!(result["exit"], 0, "{result}");
    assert!(log.contains("uid=0"), "{log}");
    let words: Vec<&str> = log.split_whitespace().collect();
    for map in [
        ["0", &UID.to_string(), "1", "1", "500000", "65535"],
        ["0", &UID.to_string(), "1", "1", "600000", "65535"],
    ] {
        assert!(
            words.windows(6).any(|w| w == map),
            "no map {map:?} in {log}"
        );
    }
    assert!(log.contains("chowned=42:42"), "{log}");
    // Back on the host the output is the user's and readable by it.
    let f = std::fs::metadata(path("out/f")).unwrap();
    assert_eq!((f.uid(), f.gid()), (UID, UID));
    let jobs: Vec<_> = std::fs::read_dir(path("cache/rcross/jobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(jobs.is_empty(), "job directories left: {jobs:?}");
}

/// A job's root made from the fixture the way the runner makes one (the image's files owned
/// in the job's id range, in a directory the job's root owns), for running a
/// [`ChrootCommand`] directly.
struct JobRoot {
    tmp: tempfile::TempDir,
    root: PathBuf,
    ids: JobIds,
}

impl JobRoot {
    fn new() -> JobRoot {
        let layout = layout();
        let tmp = tempfile::tempdir().unwrap();
        // Like ~/.cache in root's home: the job's ids may not search it.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let source = rcross::image::LayoutSource::open(&layout, None).unwrap();
        let platform: rcross::Platform = "linux/amd64".parse().unwrap();
        let parts = rcross::pipeline::base::resolve(&source, &[platform]).unwrap();
        let cached = rootfs::unpack_cached(
            &source,
            &parts[0].manifest,
            &parts[0].layers,
            &tmp.path().join("cache"),
        )
        .unwrap();
        let ids = LinuxChroot.job_ids();
        assert!(
            matches!(ids, JobIds::Range { .. }),
            "as root the job gets a range of ids: {ids:?}"
        );
        let job = tmp.path().join("job");
        std::fs::create_dir(&job).unwrap();
        let (uid, gid) = ids.root_on_host().unwrap();
        std::os::unix::fs::lchown(&job, Some(uid), Some(gid)).unwrap();
        let root = job.join("root");
        let to_host = |u, g| ids.to_host(u, g).unwrap();
        rootfs::copy_tree(
            &cached.root,
            &root,
            &rootfs::CopyOptions {
                owners: rootfs::CopyOwners::Map(&to_host),
                exclude: &|_| false,
            },
        )
        .unwrap();
        JobRoot { tmp, root, ids }
    }

    /// A host path beside the job directory (in the 0700 directory the job cannot search).
    fn host(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    /// Give a host path to the job's `(uid, gid)`.
    fn give(&self, path: &Path, uid: u32, gid: u32) {
        let (u, g) = self.ids.to_host(uid, gid).unwrap();
        std::os::unix::fs::lchown(path, Some(u), Some(g)).unwrap();
    }

    fn command(&self, argv: &[&str]) -> ChrootCommand {
        ChrootCommand {
            root: self.root.clone(),
            workdir: "/".into(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            ids: self.ids,
            user: None,
            mounts: Vec::new(),
            network: ChrootNetwork::Host,
        }
    }

    /// Run `command`; its exit code (or the runner's error) and its output.
    fn run(&self, command: &ChrootCommand) -> (Result<i64, String>, String) {
        let mut log = Vec::new();
        let r = LinuxChroot.run(command, &mut log);
        let log = String::from_utf8_lossy(&log).into_owned();
        eprintln!("--- {:?}:\n{log}--- {r:?}", command.argv);
        (r.map(|e| e.code).map_err(|e| e.to_string()), log)
    }

    /// Run a shell script that must succeed; its output.
    fn script(&self, mut command: ChrootCommand, script: &str) -> String {
        command.argv = ["/bin/sh", "-c", script].map(String::from).to_vec();
        let (r, log) = self.run(&command);
        assert_eq!(r, Ok(0), "{log}");
        log
    }
}

fn bind(target: &str, source: &Path, read_only: bool) -> ChrootMount {
    ChrootMount {
        target: target.into(),
        source: MountSource::Host(source.to_path_buf()),
        read_only,
    }
}

/// A read-only bind refuses writes (the directory is the job's root's, so only the mount can
/// refuse), a read-write one takes them, and the host sees the write.
#[test]
fn a_read_only_bind_refuses_writes_and_a_read_write_one_takes_them() {
    let j = JobRoot::new();
    for d in ["ro", "rw"] {
        std::fs::create_dir(j.host(d)).unwrap();
        std::fs::write(j.host(d).join("f"), format!("in {d}\n")).unwrap();
        j.give(&j.host(d), 0, 0);
    }
    let mut cmd = j.command(&[]);
    cmd.mounts = vec![
        bind("/mnt/ro", &j.host("ro"), true),
        bind("/mnt/rw", &j.host("rw"), false),
    ];
    let log = j.script(
        cmd,
        "cat /mnt/ro/f /mnt/rw/f
touch /mnt/ro/new && echo ro-written || echo ro-refused
touch /mnt/rw/new && echo rw-written || echo rw-refused
grep ' /mnt/ro ' /proc/mounts",
    );
    assert!(log.contains("in ro\nin rw\n"), "{log}");
    assert!(
        log.contains("ro-refused") && !log.contains("ro-written"),
        "{log}"
    );
    assert!(log.contains("Read-only file system"), "{log}");
    assert!(log.contains("rw-written"), "{log}");
    let ro_line = log.lines().find(|l| l.contains(" /mnt/ro ")).unwrap();
    assert!(
        ro_line.contains(" ro,") && ro_line.contains("nosuid") && ro_line.contains("nodev"),
        "{ro_line}"
    );
    assert!(!j.host("ro/new").exists());
    assert!(j.host("rw/new").exists());
    // /mnt existed in the image? Either way nothing rcross made stays.
    assert!(!j.root.join("mnt/ro").exists() && !j.root.join("mnt/rw").exists());
}

/// A tmpfs is there, empty, writable by the job, and gone (with the mount point rcross made
/// for it) after the run.
#[test]
fn a_tmpfs_is_empty_and_gone_after_the_run() {
    let j = JobRoot::new();
    assert!(!j.root.join("scratch").exists());
    let mut cmd = j.command(&[]);
    cmd.mounts = vec![
        ChrootMount {
            target: "/scratch/t".into(),
            source: MountSource::Tmpfs {
                size: Some(1 << 20),
            },
            read_only: false,
        },
        // Inside the tmpfs: its mount point is made by the job, in the tmpfs.
        ChrootMount {
            target: "/scratch/t/inner/deeper".into(),
            source: MountSource::Tmpfs { size: None },
            read_only: false,
        },
    ];
    let log = j.script(
        cmd,
        "echo entries=$(ls -A /scratch/t/inner/deeper | wc -l)
grep ' /scratch/t tmpfs ' /proc/mounts
grep -c ' /scratch/t/inner/deeper tmpfs ' /proc/mounts
echo data > /scratch/t/inner/deeper/f && echo wrote",
    );
    assert!(log.contains("entries=0"), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains(" /scratch/t tmpfs "))
        .unwrap();
    assert!(line.contains("size=1024k"), "{line}");
    assert!(log.contains("\n1\n"), "the nested tmpfs is mounted: {log}");
    assert!(log.contains("wrote"), "{log}");
    assert!(
        !j.root.join("scratch").exists(),
        "the mount point rcross made is left in the root"
    );
}

/// A secret-style bind of a single file, read as a non-root user from a host file in a
/// directory the job cannot search; afterwards neither the file's mount point nor the
/// /run/secrets rcross made for it is in the root, while the /run the image had stays.
#[test]
fn a_secret_file_is_readable_as_the_user_and_leaves_nothing_in_the_root() {
    let j = JobRoot::new();
    let run = j.root.join("run");
    std::fs::create_dir(&run).unwrap();
    j.give(&run, 0, 0);
    let secrets = j.host("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o700)).unwrap();
    let secret = secrets.join("token");
    std::fs::write(&secret, "s3cr3t-value\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o400)).unwrap();
    j.give(&secret, 1000, 1000);
    let mut cmd = j.command(&[]);
    cmd.user = Some(RunAs {
        uid: 1000,
        gid: 1000,
        groups: Vec::new(),
    });
    cmd.mounts = vec![bind("/run/secrets/x", &secret, true)];
    let log = j.script(
        cmd,
        "echo uid=$(id -u)
cat /run/secrets/x
echo nope > /run/secrets/x || echo write-refused",
    );
    assert!(log.contains("uid=1000"), "{log}");
    assert!(log.contains("s3cr3t-value"), "{log}");
    assert!(log.contains("write-refused"), "{log}");
    assert!(
        !run.join("secrets/x").exists(),
        "the secret's mount point is in the root"
    );
    assert!(
        !run.join("secrets").exists(),
        "/run/secrets, made by rcross, is in the root"
    );
    assert!(run.is_dir(), "the image's /run was removed");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "s3cr3t-value\n");
}

/// A target through a symlink to /etc (absolute, or relative with too many `..`) is resolved
/// inside the root: the mount lands on the root's /etc/NAME, not the host's, and does not
/// cover the root's /etc.
#[test]
fn a_target_through_a_symlink_to_etc_lands_in_the_root_s_etc() {
    let j = JobRoot::new();
    let etc = j.root.join("etc");
    std::fs::write(etc.join("kept"), "the image's etc\n").unwrap();
    std::os::unix::fs::symlink("/etc", j.root.join("conf")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../etc", j.root.join("tmp/escape")).unwrap();
    let names = ["rcross-sandbox-abs", "rcross-sandbox-rel"];
    for n in names {
        assert!(!Path::new("/etc").join(n).exists());
    }
    let source = j.host("src");
    std::fs::create_dir(&source).unwrap();
    std::fs::write(source.join("marker"), "bound\n").unwrap();
    let mut cmd = j.command(&[]);
    cmd.mounts = vec![
        bind(&format!("/conf/{}", names[0]), &source, true),
        bind(&format!("/tmp/escape/{}", names[1]), &source, true),
    ];
    let log = j.script(
        cmd,
        "cat /etc/rcross-sandbox-abs/marker /etc/rcross-sandbox-rel/marker /etc/kept
grep -c ' /etc/rcross-sandbox-' /proc/mounts",
    );
    assert!(
        log.contains("bound\nbound\nthe image's etc\n2\n"),
        "not mounted at the root's /etc/NAME: {log}"
    );
    for n in names {
        assert!(!Path::new("/etc").join(n).exists(), "host /etc/{n}");
        assert!(
            !etc.join(n).exists(),
            "the mount point {n} is left in the root"
        );
    }
    assert!(etc.join("kept").exists());
}

/// A user with supplementary groups: the command runs with exactly those ids.
#[test]
fn the_command_runs_as_the_user_with_its_groups() {
    let j = JobRoot::new();
    let mut cmd = j.command(&[]);
    cmd.user = Some(RunAs {
        uid: 1000,
        gid: 1000,
        groups: vec![4, 27],
    });
    let log = j.script(
        cmd,
        "echo u=$(id -u) g=$(id -g) G=$(id -G)
grep -E '^(Uid|Gid|Groups):' /proc/self/status",
    );
    assert!(log.contains("u=1000 g=1000 G=1000 4 27"), "{log}");
    assert!(log.contains("Groups:\t4 27"), "{log}");
    // Root is the default.
    let log = j.script(j.command(&[]), "echo u=$(id -u) g=$(id -g)");
    assert!(log.contains("u=0 g=0"), "{log}");
}

/// A user other than root needs the job's range: with a single id it is refused before
/// anything runs, naming the user and the fix; an id beyond the range is refused too.
#[test]
fn a_user_the_job_s_ids_lack_is_refused_before_it_runs() {
    let j = JobRoot::new();
    let mut cmd = j.command(&["/bin/sh", "-c", "touch /ran"]);
    cmd.user = Some(RunAs {
        uid: 1000,
        gid: 1000,
        groups: Vec::new(),
    });
    cmd.ids = JobIds::Single { uid: 0, gid: 0 };
    let (r, _) = j.run(&cmd);
    let e = r.unwrap_err();
    assert!(e.contains("USER 1000:1000"), "{e}");
    assert!(e.contains("needs a range of ids"), "{e}");
    assert!(e.contains("/etc/subuid"), "{e}");
    cmd.ids = j.ids;
    cmd.user = Some(RunAs {
        uid: 70000,
        gid: 0,
        groups: Vec::new(),
    });
    let e = j.run(&cmd).0.unwrap_err();
    assert!(e.contains("USER 70000:0") && e.contains("outside"), "{e}");
    assert!(!j.root.join("ran").exists());
}

/// Without the network: only `lo` (brought up), and a listener on the host's loopback is out
/// of reach; with the host's network (the control) it is reached.
#[test]
fn without_the_network_only_lo_is_there_and_the_host_is_unreachable() {
    let j = JobRoot::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        // The control connects once; answer it.
        use std::io::Write as _;
        if let Ok((mut s, _)) = listener.accept() {
            let _ = s.write_all(b"hello-from-host\n");
        }
    });
    let script = format!(
        "echo ifaces: $(busybox tail -n +3 /proc/net/dev | busybox cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')
grep -c '127.0.0.1' /proc/net/fib_trie || true
busybox nc -w 5 127.0.0.1 {port} </dev/null && echo connected || echo connect-failed"
    );
    let mut cmd = j.command(&[]);
    cmd.network = ChrootNetwork::None;
    let log = j.script(cmd, &script);
    let ifaces = log
        .lines()
        .find_map(|l| l.strip_prefix("ifaces: "))
        .unwrap();
    assert_eq!(
        ifaces.split_whitespace().collect::<Vec<_>>(),
        ["lo"],
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.parse::<u32>().is_ok_and(|n| n > 0)),
        "lo is not up (no 127.0.0.1 in the local routing table): {log}"
    );
    assert!(log.contains("connect-failed"), "{log}");
    assert!(!log.contains("hello-from-host"), "{log}");
    let log = j.script(j.command(&[]), &script);
    assert!(log.contains("hello-from-host"), "the control: {log}");
    server.join().unwrap();
}

/// Exec form: the arguments reach the program as they are, spaces and quotes included, and
/// the program is found in PATH; a missing program is named.
#[test]
fn exec_form_arguments_arrive_verbatim_and_a_missing_program_is_named() {
    let j = JobRoot::new();
    let args = ["a b", "it's \"quoted\" $HOME", "", "\\n;*"];
    let mut argv = vec!["sh", "-c", "for a in \"$@\"; do echo \"[$a]\"; done", "sh"];
    argv.extend(args);
    let (r, log) = j.run(&j.command(&argv));
    assert_eq!(r, Ok(0), "{log}");
    let want: String = args.iter().map(|a| format!("[{a}]\n")).collect();
    assert!(log.contains(&want), "{log}");
    let e = j.run(&j.command(&["/no/such", "x"])).0.unwrap_err();
    assert!(
        e.starts_with("running /no/such in the chroot: no such file"),
        "{e}"
    );
    let e = j.run(&j.command(&["no-such-program"])).0.unwrap_err();
    assert!(
        e.starts_with("running no-such-program in the chroot: no such file")
            && e.contains("PATH=/usr/bin:/bin"),
        "{e}"
    );
}
