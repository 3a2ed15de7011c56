//! The chroot runner against the real kernel and real QEMU: a C program compiled with tcc inside
//! an arm64 Debian root filesystem, run through a binfmt_misc handler with the F flag.
//!
//! Every job runs in a fresh user+mount namespace (`unshare --user --map-root-user --mount`) with
//! its own binfmt_misc instance (Linux >= 6.7), where `rcross setup` registers the arm64 handler,
//! so the machine's handler table is never touched. The job itself runs in this test binary,
//! re-executed inside the namespace ([`job_in_namespace`], the `job_helper` test), because a
//! threaded test process cannot enter namespaces itself.

mod common_rootfs;
mod prereq;

use rcross::pipeline::chroot::{ChrootOptions, ChrootRunner};
use rcross::runner::{BuildImage, ContainerJob, ContainerRunner};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const RCROSS: &str = env!("CARGO_BIN_EXE_rcross");
/// Set (to a job file) when this binary runs as the job inside a namespace.
const HELPER_ENV: &str = "RCROSS_CHROOT_TEST_JOB";

const HELLO_C: &str = r#"#include <stdio.h>
int main(int argc, char **argv) { printf("hello from tcc on %s\n", sizeof(void *) == 8 ? "64-bit" : "32-bit"); return 0; }
"#;

use prereq::require;

fn prerequisites() -> Option<PathBuf> {
    let ns = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--", "sh", "-c"])
        .arg("d=$(mktemp -d) && mount -t binfmt_misc binfmt_misc $d && test -e $d/register && umount $d && rmdir $d")
        .status()
        .is_ok_and(|s| s.success());
    if !require(
        ns,
        "user+mount namespaces with a private binfmt_misc (Linux >= 6.7, unprivileged userns enabled)",
    ) || !require(
        Path::new("/usr/bin/qemu-aarch64-static").exists(),
        "qemu-user-static (apt-get install qemu-user-static)",
    ) {
        return None;
    }
    common_rootfs::try_arm64_tcc_layout()
}

/// Who runs the job, in a user+mount namespace of its own (for a private binfmt_misc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runner {
    /// Root of a namespace that maps only itself: the job gets a single id.
    Root,
    /// Root of a namespace that maps every host id, as the initial one does: the job gets a
    /// 65536-id range.
    AllIds,
    /// uid 1000 of a nested namespace (no capabilities): it must make its own user namespace.
    Unprivileged,
}

/// A job for the arm64 fixture, with its own project, output and cache directories.
struct Job {
    tmp: tempfile::TempDir,
    layout: PathBuf,
    command: String,
}

impl Job {
    fn new(layout: &Path, command: &str) -> Job {
        let tmp = tempfile::tempdir().unwrap();
        let project = tmp.path().join("project");
        std::fs::create_dir_all(project.join(".git")).unwrap();
        std::fs::write(project.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(project.join("hello.c"), HELLO_C).unwrap();
        std::fs::create_dir_all(tmp.path().join("out")).unwrap();
        Job {
            tmp,
            layout: layout.to_path_buf(),
            command: command.into(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    fn cache(&self) -> PathBuf {
        self.path("cache/rcross/rootfs")
    }

    /// The only cached root.
    fn cached_root(&self) -> PathBuf {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(self.cache())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        entries.pop().unwrap().join("root")
    }

    /// Run the job in a fresh namespace; `register` registers the arm64 handler (with F) in its
    /// private binfmt_misc first. Returns the helper's result and the job's log.
    fn run(&self, register: bool) -> (Value, String) {
        self.run_in(register, Runner::Root)
    }

    /// [`Job::run`] as `runner`.
    fn run_in(&self, register: bool, runner: Runner) -> (Value, String) {
        self.run_helper(register, runner, "job_helper", json!({}))
    }

    /// Run the test `helper` of this binary in a fresh namespace as `runner`, with the job's
    /// spec and the fields of `extra`.
    fn run_helper(
        &self,
        register: bool,
        runner: Runner,
        helper: &str,
        extra: Value,
    ) -> (Value, String) {
        let unprivileged = runner == Runner::Unprivileged;
        let bm = self.path("binfmt_misc");
        std::fs::create_dir_all(&bm).unwrap();
        let mut spec = json!({
            "platform": "linux/arm64",
            "layout": self.layout,
            "manifest": common_rootfs::platform_manifest(&self.layout, "linux/arm64"),
            "context": self.path("project"),
            "command": self.command,
            "out_dir": self.path("out"),
            "binfmt_misc": bm,
            "cache": self.cache(),
            "log": self.path("job.log"),
            "result": self.path("result.json"),
            "job_dir": self.path("job"),
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        let spec_path = self.path("job.json");
        std::fs::write(&spec_path, spec.to_string()).unwrap();
        let _ = std::fs::remove_file(self.path("result.json"));
        let script = format!(
            r#"set -eu
{wait}
mount -t binfmt_misc binfmt_misc "$BM"
if [ {register} = true ]; then
  "$RCROSS" setup --platform linux/arm64 --binfmt-misc "$BM" --binfmt-dir "$T/no-defs" >"$T/setup.log" 2>&1 || {{ cat "$T/setup.log"; exit 1; }}
fi
exec {user} "$TEST_EXE" --ignored --exact {helper} --nocapture --test-threads=1
"#,
            user = if unprivileged {
                "unshare --user --map-user=1000 --map-group=1000 --"
            } else {
                ""
            },
            wait = if runner == Runner::AllIds {
                r#"read go < "$T/go""#
            } else {
                ""
            }
        );
        let mut unshare = Command::new("unshare");
        if runner == Runner::AllIds {
            // Maps written below, once the namespace exists.
            unshare.args(["--user", "--mount", "--", "sh", "-c"]);
            let _ = std::fs::remove_file(self.path("go"));
            nix::unistd::mkfifo(
                &self.path("go"),
                nix::sys::stat::Mode::from_bits_truncate(0o600),
            )
            .unwrap();
        } else {
            unshare.args(["--user", "--map-root-user", "--mount", "--", "sh", "-c"]);
        }
        let child = unshare
            .arg(script)
            .env("RCROSS", RCROSS)
            .env("BM", &bm)
            .env("T", self.tmp.path())
            .env("TEST_EXE", std::env::current_exe().unwrap())
            .env(HELPER_ENV, &spec_path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if runner == Runner::AllIds {
            // unshare(1) execs sh in place: the same pid, once in its own user namespace.
            let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
            let pid = child.id().to_string();
            let start = std::time::Instant::now();
            while ns(&pid) == ns("self") {
                assert!(
                    start.elapsed().as_secs() < 10,
                    "unshare made no user namespace"
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            for map in ["uid_map", "gid_map"] {
                std::fs::write(format!("/proc/{pid}/{map}"), "0 0 4294967295\n").unwrap();
            }
            std::fs::write(self.path("go"), "go\n").unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "namespace script failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        let result = std::fs::read_to_string(self.path("result.json"))
            .unwrap_or_else(|e| panic!("no result ({e}):\n{stdout}\n{stderr}"));
        let log = std::fs::read_to_string(self.path("job.log")).unwrap_or_default();
        eprintln!("--- job log:\n{log}--- result: {result}");
        (serde_json::from_str(&result).unwrap(), log)
    }
}

/// Not a test of its own: the job, when this binary is re-executed inside a namespace by
/// [`Job::run`] (`--ignored --exact job_helper`). Ignored, so a plain run does not count it as a
/// passed test; run any other way (`--include-ignored`) it fails.
#[test]
#[ignore = "re-executed inside a namespace by Job::run; not a test of its own"]
fn job_helper() {
    let Some(spec_path) = std::env::var_os(HELPER_ENV) else {
        panic!("job_helper runs only re-executed by Job::run, with {HELPER_ENV} set");
    };
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(spec_path).unwrap()).unwrap();
    let s = |k: &str| spec[k].as_str().unwrap().to_string();
    let job = ContainerJob {
        platform: s("platform").parse().unwrap(),
        image: BuildImage::Layout {
            dir: PathBuf::from(s("layout")),
            reference: None,
            manifest: s("manifest"),
        },
        context: PathBuf::from(s("context")),
        workdir: PathBuf::from("."),
        command: s("command"),
        env: vec![
            ("RCROSS_OUT".into(), "/rcross/out".into()),
            ("RCROSS_PLATFORM".into(), s("platform")),
        ],
        out_dir: PathBuf::from(s("out_dir")),
    };
    let mut options = ChrootOptions::in_cache(Path::new(&s("cache")));
    options.binfmt_misc = PathBuf::from(s("binfmt_misc"));
    let runner = ChrootRunner::new(options);
    let mut log = std::fs::File::create(s("log")).unwrap();
    let result = match runner.run(&job, &mut log) {
        Ok(exit) => json!({ "exit": exit.code }),
        Err(e) => json!({ "error": e.to_string(), "exit_code": e.exit_code() }),
    };
    std::fs::write(s("result"), result.to_string()).unwrap();
}

/// (a) tcc compiles a C file inside the arm64 chroot; the program is arm64 code and runs under
/// QEMU.
#[test]
fn tcc_compiles_an_arm64_program_in_the_chroot() {
    let Some(layout) = prerequisites() else {
        return;
    };
    let job = Job::new(
        &layout,
        r#"set -e
test "$(cat /proc/self/comm)" != "" && echo proc-ok
echo discard > /dev/null && head -c 4 /dev/urandom | wc -c
tcc -o "$RCROSS_OUT/hello" hello.c
echo "built in $(pwd) for $RCROSS_PLATFORM"
"#,
    );
    let (result, log) = job.run(true);
    assert_eq!(result["exit"], 0, "{result} {log}");
    assert!(log.contains("proc-ok"), "{log}");
    assert!(
        log.contains("built in /rcross/src for linux/arm64"),
        "{log}"
    );
    let hello = job.path("out/hello");
    match rcross::walk::classify_file(&hello) {
        rcross::walk::FileClass::Elf(info) => {
            assert_eq!(info.platform, Some("linux/arm64".parse().unwrap()))
        }
        other => panic!("{}: {other:?}", hello.display()),
    }
    // tcc links dynamically: run it with the image's loader and libc.
    let out = Command::new(RCROSS)
        .args(["run", "--platform", "linux/arm64", "--sysroot"])
        .arg(job.cached_root())
        .arg("--")
        .arg(&hello)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from tcc on 64-bit\n"
    );
}

/// (a) again without privileges: the runner maps the user to root in a user namespace of its
/// own, and the build sees itself as root.
#[test]
fn an_unprivileged_user_builds_in_its_own_user_namespace() {
    let Some(layout) = prerequisites() else {
        return;
    };
    let job = Job::new(
        &layout,
        r#"set -e
echo "uid=$(id -u)"
touch /etc/owned-by-root
tcc -o "$RCROSS_OUT/hello" hello.c
"#,
    );
    let (result, log) = job.run_in(true, Runner::Unprivileged);
    assert_eq!(result["exit"], 0, "{result} {log}");
    assert!(log.contains("uid=0"), "{log}");
    assert!(job.path("out/hello").is_file());
}

/// (a) again as a root whose namespace has every host id: the job's ids are a 65536-id range,
/// and the emulated arm64 programs (QEMU through the F-flag handler) run as those ids; `chown`
/// works inside and the output keeps the image's ids.
#[test]
fn an_arm64_job_runs_as_a_range_of_ids_under_qemu() {
    let Some(layout) = prerequisites() else {
        return;
    };
    let job = Job::new(
        &layout,
        r#"set -e
echo "uid=$(id -u)"
cat /proc/self/uid_map
tcc -o "$RCROSS_OUT/hello" hello.c
chown 65534:65534 "$RCROSS_OUT/hello"
"#,
    );
    let (result, log) = job.run_in(true, Runner::AllIds);
    assert_eq!(result["exit"], 0, "{result} {log}");
    assert!(log.contains("uid=0"), "{log}");
    let words: Vec<&str> = log.split_whitespace().collect();
    assert!(
        words.windows(3).any(|w| w == ["0", "1879048192", "65536"]),
        "{log}"
    );
    use std::os::unix::fs::MetadataExt as _;
    let hello = std::fs::metadata(job.path("out/hello")).unwrap();
    assert_eq!((hello.uid(), hello.gid()), (65534, 65534));
    match rcross::walk::classify_file(&job.path("out/hello")) {
        rcross::walk::FileClass::Elf(info) => {
            assert_eq!(info.platform, Some("linux/arm64".parse().unwrap()))
        }
        other => panic!("{other:?}"),
    }
}

/// A listing of a tree that any change to a path, type, size, mode or time alters.
fn snapshot(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt as _;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            out.push(format!(
                "{} {:o} {} {}",
                p.strip_prefix(root).unwrap().display(),
                m.mode(),
                m.len(),
                m.mtime()
            ));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// (b) A failing command is a JobExit with its code, its stdout and stderr are in the log,
/// `.git` is not copied, nothing comes out, and the cached root is unchanged by a job that
/// writes to /etc.
#[test]
fn a_failing_job_reports_its_exit_and_leaves_the_cache_pristine() {
    let Some(layout) = prerequisites() else {
        return;
    };
    let mut job = Job::new(&layout, "true");
    let (result, _) = job.run(true);
    assert_eq!(result["exit"], 0, "{result}");
    let before = snapshot(&job.cached_root());
    job.command = r#"echo to-stdout
echo to-stderr >&2
echo changed > /etc/written-by-job
echo more >> /usr/include/stdio.h
rm -f /usr/bin/tcc
test -e /rcross/src/.git || echo no-git-here
test -e /rcross/src/hello.c && echo project-here
echo partial > "$RCROSS_OUT/partial"
exit 7"#
        .into();
    let (result, log) = job.run(true);
    assert_eq!(result["exit"], 7, "{result}");
    for line in ["to-stdout", "to-stderr", "no-git-here", "project-here"] {
        assert!(log.contains(line), "{line} not in the log:\n{log}");
    }
    assert!(log.contains("reusing the root filesystem"), "{log}");
    assert_eq!(std::fs::read_dir(job.path("out")).unwrap().count(), 0);
    assert_eq!(snapshot(&job.cached_root()), before);
    // No job directories left.
    let jobs = job.path("cache/rcross/jobs");
    assert_eq!(std::fs::read_dir(jobs).unwrap().count(), 0);
}

/// (c) Without a handler in the namespace's binfmt_misc the job is refused before anything is
/// unpacked, naming `rcross setup`.
#[test]
fn no_handler_is_a_runner_error_naming_rcross_setup() {
    let Some(layout) = prerequisites() else {
        return;
    };
    let job = Job::new(&layout, "true");
    let (result, _) = job.run(false);
    let error = result["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{result}"));
    assert!(
        error.contains("no binfmt_misc handler for linux/arm64")
            && error.contains("sudo rcross setup --platform linux/arm64"),
        "{error}"
    );
    assert_eq!(result["exit_code"], 3);
    assert!(!job.cache().exists());
}

/// Not a test of its own: runs one [`ChrootCommand`] (argv, user, a tmpfs, the network) in a
/// root made from the job's image, re-executed inside a namespace by [`Job::run_helper`].
#[test]
#[ignore = "re-executed inside a namespace by Job::run_helper; not a test of its own"]
fn command_helper() {
    use rcross::pipeline::chroot::{
        ChrootCommand, ChrootMount, ChrootNetwork, ChrootSystem, JobIds, LinuxChroot, MountSource,
        RunAs,
    };
    use rcross::pipeline::rootfs;
    let Some(spec_path) = std::env::var_os(HELPER_ENV) else {
        panic!("command_helper runs only re-executed by Job::run_helper, with {HELPER_ENV} set");
    };
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(spec_path).unwrap()).unwrap();
    let s = |k: &str| spec[k].as_str().unwrap().to_string();
    let layout = rcross::image::LayoutSource::open(Path::new(&s("layout")), None).unwrap();
    let platform: rcross::Platform = s("platform").parse().unwrap();
    let parts = rcross::pipeline::base::resolve(&layout, &[platform]).unwrap();
    let cached = rootfs::unpack_cached(
        &layout,
        &parts[0].manifest,
        &parts[0].layers,
        Path::new(&s("cache")),
    )
    .unwrap();
    let ids = LinuxChroot.job_ids();
    let job = PathBuf::from(s("job_dir"));
    std::fs::create_dir_all(&job).unwrap();
    if let Some((uid, gid)) = ids.root_on_host() {
        std::os::unix::fs::lchown(&job, Some(uid), Some(gid)).unwrap();
    }
    let root = job.join("root");
    let to_host = |u, g| ids.to_host(u, g).unwrap_or((u, g));
    rootfs::copy_tree(
        &cached.root,
        &root,
        &rootfs::CopyOptions {
            owners: match ids {
                JobIds::Range { .. } => rootfs::CopyOwners::Map(&to_host),
                _ => rootfs::CopyOwners::Copier,
            },
            exclude: &|_| false,
        },
    )
    .unwrap();
    let user = spec["user"].as_array().map(|ids| {
        let ids: Vec<u32> = ids.iter().map(|v| v.as_u64().unwrap() as u32).collect();
        RunAs {
            uid: ids[0],
            gid: ids[1],
            groups: ids[2..].to_vec(),
        }
    });
    let command = ChrootCommand {
        root: root.clone(),
        workdir: "/".into(),
        argv: spec["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        ids,
        user,
        mounts: vec![ChrootMount {
            target: "/work/scratch".into(),
            source: MountSource::Tmpfs { size: None },
            read_only: false,
        }],
        network: ChrootNetwork::None,
    };
    let mut log = std::fs::File::create(s("log")).unwrap();
    let result = match LinuxChroot.run(&command, &mut log) {
        Ok(exit) => json!({
            "exit": exit.code,
            "work_left": root.join("work").exists(),
        }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    std::fs::write(s("result"), result.to_string()).unwrap();
}

/// A Dockerfile-style RUN under QEMU: exec form found in PATH, a non-root user with a
/// supplementary group, a tmpfs, no network; with a single id the user is refused up front.
#[test]
fn an_emulated_run_step_takes_its_user_tmpfs_and_no_network() {
    let Some(layout) = prerequisites() else {
        return;
    };
    let job = Job::new(&layout, "");
    let script = "echo arch=$(uname -m) u=$(id -u) G=$(id -G)
echo ifaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')
echo entries=$(ls -A /work/scratch | wc -l)
touch /work/scratch/f && echo scratch-writable
echo \"[$1]\"";
    let extra = json!({
        "argv": ["sh", "-c", script, "sh", "an 'argument' with \"quotes\""],
        "user": [1000, 1000, 27],
    });
    let (result, log) = job.run_helper(true, Runner::AllIds, "command_helper", extra.clone());
    assert_eq!(result["exit"], 0, "{result} {log}");
    assert!(
        log.contains("arch=aarch64 u=1000 G=1000 27"),
        "not the user, or not emulated: {log}"
    );
    let ifaces = log
        .lines()
        .find_map(|l| l.strip_prefix("ifaces: "))
        .unwrap();
    assert_eq!(
        ifaces.split_whitespace().collect::<Vec<_>>(),
        ["lo"],
        "{log}"
    );
    assert!(log.contains("entries=0\nscratch-writable"), "{log}");
    assert!(log.contains("[an 'argument' with \"quotes\"]"), "{log}");
    assert_eq!(result["work_left"], false, "{result}");
    // Root of a namespace that maps only itself: a single id, so USER 1000 cannot be.
    let _ = std::fs::remove_dir_all(job.path("job"));
    let (result, _) = job.run_helper(true, Runner::Root, "command_helper", extra);
    let e = result["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{result}"));
    assert!(
        e.contains("USER 1000:1000 (groups [27]) needs a range of ids"),
        "{e}"
    );
}
