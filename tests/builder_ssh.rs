//! `ssh://` builders against a live sshd: a private `sshd` on a loopback port logs in to this
//! machine, where `docker system dial-stdio` reaches the machine's engine. The engine client
//! connects (through an alias, and with user and port in the endpoint), describes the engine
//! and runs ContainerRunner jobs over ssh, several at once; `rcross build --builder
//! linux/amd64=ssh://rcross-builder` builds there; a closed port, a host that never answers, a
//! refused key and a login without `docker` fail the platform quickly, quoting ssh and naming
//! the endpoint and the fix; no ssh process outlives a build, even an interrupted one.
//!
//! The client never reads the real `~/.ssh` (see tests/common_ssh). Missing prerequisites
//! (engine, sshd, root, busybox-static) fail in strict mode (tests/prereq) and skip with a notice
//! otherwise.

mod common_docker;
mod common_registry;
mod common_ssh;
mod prereq;

use common_docker::{busybox_layout, docker, system_engine};
use common_registry::rcross;
use common_ssh::{Sshd, ALIAS, BAD_KEY_ALIAS, CLOSED_ALIAS, NO_DOCKER_ALIAS};
use rcross::engine::{DockerEngine, Endpoint};
use rcross::runner::{BuildImage, ContainerJob, ContainerRunner, RunnerError};
use serde_json::Value;
use std::process::Output;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One test at a time: the in-process engine client finds `ssh` through this process's PATH
/// and HOME, which a test sets for its own server.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The machine's engine and a private sshd in front of it.
fn server() -> Option<(Endpoint, Sshd)> {
    let engine = system_engine()?;
    let sshd = Sshd::start(&engine.to_string())?;
    Some((engine, sshd))
}

/// Sets this process's environment to the server's client side until dropped.
struct ClientEnv {
    saved: Vec<(String, Option<std::ffi::OsString>)>,
}

impl ClientEnv {
    fn set(sshd: &Sshd) -> ClientEnv {
        let mut saved = Vec::new();
        for (k, v) in sshd.client_env() {
            saved.push((k.clone(), std::env::var_os(&k)));
            std::env::set_var(&k, v);
        }
        ClientEnv { saved }
    }
}

impl Drop for ClientEnv {
    fn drop(&mut self) {
        for (k, v) in self.saved.drain(..) {
            match v {
                Some(v) => std::env::set_var(&k, v),
                None => std::env::remove_var(&k),
            }
        }
    }
}

/// `rcross ARGS` with the server's client environment.
fn rcross_via(sshd: &Sshd, args: &[&str]) -> Output {
    let env = sshd.client_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    rcross(args, &env)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Waits briefly for the connection's ssh processes to go, then says which are left.
fn assert_no_leftovers(sshd: &Sshd) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = sshd.leftover_processes();
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("ssh processes outlived the connection: {left:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_engine_client_connects_and_runs_a_job_over_ssh() {
    let _serial = serial();
    let Some((local, sshd)) = server() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let Some(manifest) = busybox_layout(&work.path().join("busybox")) else {
        return;
    };
    let ctx = work.path().join("project");
    std::fs::create_dir_all(ctx.join("sub")).unwrap();
    std::fs::write(ctx.join("sub/input.txt"), "over ssh\n").unwrap();
    let want = DockerEngine::connect(&local).unwrap().info().unwrap();

    let env = ClientEnv::set(&sshd);
    let endpoint: Endpoint = format!("ssh://{ALIAS}").parse().unwrap();
    let engine = DockerEngine::connect(&endpoint)
        .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log()));
    let info = engine.info().unwrap();
    assert_eq!(info.server_version, want.server_version, "{info:?}");
    assert_eq!(info.os, "linux");
    assert_eq!(info.architecture, want.architecture);
    assert_eq!(info.negotiated_api_version, want.negotiated_api_version);
    assert!(engine.describe().contains(&endpoint.to_string()));

    let out = work.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let job = ContainerJob {
        platform: "linux/amd64".parse().unwrap(),
        image: BuildImage::Layout {
            dir: work.path().join("busybox"),
            reference: Some("busybox".into()),
            manifest: manifest.digest.clone(),
        },
        context: ctx.clone(),
        workdir: "sub".into(),
        command: "cat input.txt; echo \"to stderr: $GREETING\" >&2; \
                  cp input.txt \"$RCROSS_OUT/copy\"; mkdir \"$RCROSS_OUT/d\"; \
                  echo nested > \"$RCROSS_OUT/d/n\""
            .into(),
        env: vec![
            ("GREETING".into(), "hi".into()),
            ("RCROSS_OUT".into(), "/rcross/out".into()),
        ],
        out_dir: out.clone(),
    };
    let mut log = Vec::new();
    let exit = engine.run(&job, &mut log).unwrap();
    let log = String::from_utf8_lossy(&log).into_owned();
    assert_eq!(exit.code, 0, "{log}");
    assert!(log.contains("rcross: loading"), "{log}");
    assert!(
        log.contains("over ssh") && log.contains("to stderr: hi"),
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("copy")).unwrap(),
        "over ssh\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("d/n")).unwrap(),
        "nested\n"
    );
    // Parallel jobs, as parallel platforms run: each connection is its own ssh process.
    std::thread::scope(|scope| {
        for n in 0..3 {
            let (engine, job, work) = (&engine, &job, work.path());
            scope.spawn(move || {
                let job = ContainerJob {
                    command: format!("echo job {n} > \"$RCROSS_OUT/n\""),
                    out_dir: work.join(format!("parallel{n}")),
                    ..job.clone()
                };
                std::fs::create_dir_all(&job.out_dir).unwrap();
                assert_eq!(engine.run(&job, &mut Vec::new()).unwrap().code, 0);
                assert_eq!(
                    std::fs::read_to_string(job.out_dir.join("n")).unwrap(),
                    format!("job {n}\n")
                );
            });
        }
    });
    // A failing command is its exit code, over ssh as locally.
    let failing = ContainerJob {
        command: "exit 3".into(),
        out_dir: work.path().join("out2"),
        ..job
    };
    std::fs::create_dir_all(&failing.out_dir).unwrap();
    assert_eq!(engine.run(&failing, &mut Vec::new()).unwrap().code, 3);

    drop(engine);

    // User and port from the endpoint (the config names only the key for 127.0.0.1).
    let direct: Endpoint = format!("ssh://root@127.0.0.1:{}", sshd.port)
        .parse()
        .unwrap();
    let engine = DockerEngine::connect(&direct).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(engine.info().unwrap().server_version, want.server_version);
    drop(engine);

    drop(env);
    assert_no_leftovers(&sshd);
    let tag = rcross::engine::layout_tag(&work.path().join("busybox"), &manifest.digest);
    let _ = docker(&local, &["rmi", &tag]);
}

#[test]
fn rcross_build_runs_a_platform_on_an_ssh_builder() {
    let _serial = serial();
    let Some((local, sshd)) = server() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("busybox");
    let Some(manifest) = busybox_layout(&layout) else {
        return;
    };
    let dir = tmp.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("data.txt"), "built on the builder\n").unwrap();
    std::fs::write(
        dir.join("rcross.toml"),
        r#"[image]
name = "ssh-data"
platforms = ["linux/amd64"]

[build]
command = 'cp data.txt "$RCROSS_OUT/" && echo "copied in $(pwd) for $RCROSS_PLATFORM"'

[[artifact]]
from = "data.txt"
to = "/data.txt"
"#,
    )
    .unwrap();
    let out_dir = tmp.path().join("out");
    let endpoint = format!("ssh://{ALIAS}");
    let out = rcross_via(
        &sshd,
        &[
            "--json",
            "build",
            &dir.display().to_string(),
            "--build-image",
            &format!("oci:{}", layout.display()),
            "--builder",
            &format!("linux/amd64={endpoint}"),
            "--output",
            &format!("oci:{}", out_dir.display()),
        ],
    );
    assert!(
        out.status.success(),
        "build failed: {}\nsshd log:\n{}",
        stderr(&out),
        sshd.log()
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = meta["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["platform"] == "linux/amd64")
        .unwrap_or_else(|| panic!("linux/amd64 not in {meta}"));
    assert_eq!(entry["runner"], format!("builder {endpoint}"), "{meta}");
    let e = stderr(&out);
    assert!(e.contains(&format!("builder {endpoint}: Docker")), "{e}");
    assert!(e.contains("copied in /rcross/src for linux/amd64"), "{e}");
    assert!(out_dir.join("index.json").is_file());
    assert_no_leftovers(&sshd);
    let tag = rcross::engine::layout_tag(&layout, &manifest.digest);
    let _ = docker(&local, &["rmi", &tag]);
}

#[test]
fn an_ssh_builder_that_cannot_serve_fails_its_platform_naming_it_and_the_fix() {
    let _serial = serial();
    let Some((_local, sshd)) = server() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("rcross.toml"),
        "[image]\nname = \"x\"\nplatforms = [\"linux/amd64\"]\n\n[build]\n\
         command = 'true'\nimage = \"127.0.0.1:9/none:1\"\n\n\
         [[artifact]]\nfrom = \"x\"\nto = \"/x\"\n",
    )
    .unwrap();
    // Accepts TCP connections and never speaks: ssh's ConnectTimeout ends the wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    sshd.add_alias("rcross-builder-silent", silent.local_addr().unwrap().port());
    let _silent = std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming() {
            held.push(c);
        }
    });
    for (alias, said, fix) in [
        (CLOSED_ALIAS, "Connection refused", "~/.ssh/config"),
        ("rcross-builder-silent", "timed out", "~/.ssh/config"),
        (
            BAD_KEY_ALIAS,
            "Permission denied (publickey)",
            "~/.ssh/config",
        ),
        (
            NO_DOCKER_ALIAS,
            "docker: command not found",
            "not on the PATH",
        ),
    ] {
        let endpoint = format!("ssh://{alias}");
        let started = Instant::now();
        let out = rcross_via(
            &sshd,
            &[
                "build",
                &dir.display().to_string(),
                "--builder",
                &format!("linux/amd64={endpoint}"),
                "--output",
                &format!("oci:{}", tmp.path().join("out").display()),
            ],
        );
        let e = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{e}");
        assert!(
            e.contains(&format!("linux/amd64: builder {endpoint}")),
            "{e}"
        );
        assert!(e.contains(said), "{alias}: what ssh said: {e}");
        assert!(e.contains(fix), "{alias}: the fix: {e}");
        assert!(started.elapsed() < Duration::from_secs(20), "fails fast");
        assert!(!tmp.path().join("out").exists(), "nothing is assembled");
    }
    assert_no_leftovers(&sshd);

    // The engine client's error, in process.
    let _env = ClientEnv::set(&sshd);
    let endpoint: Endpoint = format!("ssh://{BAD_KEY_ALIAS}").parse().unwrap();
    let e = match DockerEngine::connect(&endpoint) {
        Ok(_) => panic!("{endpoint} logged in with a refused key"),
        Err(e) => e,
    };
    assert!(matches!(e, RunnerError::Unreachable { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(&endpoint.to_string()), "{text}");
    assert!(text.contains("Permission denied"), "{text}");
}

#[test]
fn an_interrupted_build_leaves_no_ssh_process_behind() {
    let _serial = serial();
    let Some((local, sshd)) = server() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("busybox");
    let Some(manifest) = busybox_layout(&layout) else {
        return;
    };
    let dir = tmp.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    // A marker that finds this build's container on the engine.
    let marker = format!("rcross-ssh-interrupt-{}", std::process::id());
    std::fs::write(
        dir.join("rcross.toml"),
        format!(
            "[image]\nname = \"x\"\nplatforms = [\"linux/amd64\"]\n\n[build]\n\
             command = 'echo {marker}; sleep 60'\n\n[[artifact]]\nfrom = \"x\"\nto = \"/x\"\n"
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rcross"));
    cmd.args([
        "build",
        &dir.display().to_string(),
        "--build-image",
        &format!("oci:{}", layout.display()),
        "--builder",
        &format!("linux/amd64=ssh://{ALIAS}"),
        "--output",
        &format!("oci:{}", tmp.path().join("out").display()),
    ])
    .envs(sshd.client_env())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let containers = || -> Vec<String> {
        docker(
            &local,
            &["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Command}}"],
        )
        .stdout
        .split(|b| *b == b'\n')
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .filter(|l| l.contains(&marker))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while containers().is_empty() {
        assert!(Instant::now() < deadline, "the build never started");
        assert!(child.try_wait().unwrap().is_none(), "rcross ended early");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !sshd.leftover_processes().is_empty(),
        "the build runs through ssh"
    );
    // Ctrl-C as a terminal sends it: to rcross's whole process group would include this test,
    // so to rcross alone (its ssh children get no signal and must end with it).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert_no_leftovers(&sshd);
    for id in containers() {
        let _ = docker(&local, &["rm", "-f", &id]);
    }
    let tag = rcross::engine::layout_tag(&layout, &manifest.digest);
    let _ = docker(&local, &["rmi", &tag]);
}
