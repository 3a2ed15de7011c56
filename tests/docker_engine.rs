//! The Docker Engine edge against real engines: `rcross build --load` puts arm64 and arm/v7
//! images into the machine's engine, which runs them through the binfmt handlers; the
//! ContainerRunner runs a job in a busybox image written by rcross's own OCI writer, on the
//! machine's engine and on a private dockerd over TCP (a stand-in for a remote builder); an
//! unreachable endpoint fails fast.
//!
//! The machine's engine is started by tests/run.sh when it is not running. Prerequisites that
//! are missing (engine, dockerd, busybox-static, cross compilers, root for binfmt handlers)
//! fail the tests in strict mode (tests/prereq: tests/run.sh, CI) and skip them with a notice
//! otherwise.

mod common_docker;
mod common_registry;
mod host_binfmt;
mod prereq;

use common_docker::{build_containers, busybox_layout, docker, docker_ok, system_engine, Dockerd};
use common_registry::{example_hello, rcross};
use rcross::engine::{DockerEngine, Endpoint};
use rcross::runner::{BuildImage, ContainerJob, ContainerRunner, RunnerError};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Registers the arm64 and arm handlers in the machine's binfmt_misc table, so the engine's
/// containers of those platforms run; the table is put back when the last guard goes.
fn arm_handlers() -> Option<host_binfmt::Handlers> {
    host_binfmt::register("linux/arm64,linux/arm/v7")
}

fn have_cross_compilers() -> bool {
    ["aarch64-linux-gnu-gcc", "arm-linux-gnueabihf-gcc", "make"]
        .iter()
        .all(|cc| common_registry::require_tool(cc, "see tests/install-deps.sh"))
}

#[test]
fn load_puts_arm_images_into_the_engine_which_runs_them_through_binfmt() {
    let Some(engine) = system_engine() else {
        return;
    };
    if !have_cross_compilers() {
        return;
    }
    let Some(_handlers) = arm_handlers() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ex = example_hello();
    for (platform, tag, arch, variant, machine) in [
        ("linux/arm64", "arm64", "arm64", None, "aarch64"),
        ("linux/arm/v7", "armv7", "arm", Some("v7"), "armv7l"),
    ] {
        let image = format!("rcross-test/hello:{tag}");
        let _ = docker(&engine, &["rmi", "-f", &image]);
        let out_dir = tmp.path().join(tag);
        let out = rcross(
            &[
                "--json",
                "build",
                ex.to_str().unwrap(),
                "--platform",
                platform,
                "-t",
                &image,
                "--load",
                "--output",
                &format!("oci:{}", out_dir.display()),
            ],
            &[],
        );
        assert!(out.status.success(), "{platform}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("loaded {platform} into docker")),
            "{stderr}"
        );
        let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(meta["loaded"]["platform"], platform);
        assert_eq!(meta["loaded"]["tags"][0], format!("docker.io/{image}"));

        let run = docker_ok(&engine, &["run", "--rm", &image]);
        assert_eq!(run.trim(), format!("hello from {machine}"), "{platform}");
        let inspect: Value =
            serde_json::from_str(&docker_ok(&engine, &["image", "inspect", &image])).unwrap();
        assert_eq!(inspect[0]["Architecture"], arch, "{platform}");
        assert_eq!(inspect[0]["Os"], "linux");
        if let Some(v) = variant {
            assert_eq!(inspect[0]["Variant"], v, "{platform}");
        }
        assert_eq!(inspect[0]["Id"], meta["loaded"]["image"]);
        let _ = docker(&engine, &["rmi", "-f", &image]);
    }
}

#[test]
fn load_of_several_platforms_without_the_host_one_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let ex = example_hello();
    let out = rcross(
        &[
            "build",
            ex.to_str().unwrap(),
            "--platform",
            "linux/arm64,linux/arm/v7",
            "--load",
            "--output",
            &format!("oci:{}", tmp.path().join("o").display()),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("linux/arm64, linux/arm/v7") && stderr.contains("--platform"),
        "{stderr}"
    );
    assert!(
        !tmp.path().join("o").exists(),
        "refused before anything was built"
    );
}

#[test]
fn load_works_together_with_push_and_output() {
    let Some(engine) = system_engine() else {
        return;
    };
    if !common_registry::require_tool("make", "make") {
        return;
    }
    let Some(registry) = common_registry::RealRegistry::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let image = format!("{}/rcross-test/hello:both", registry.addr);
    let archive = tmp.path().join("hello.tar");
    let out = rcross(
        &[
            "build",
            example_hello().to_str().unwrap(),
            "--platform",
            "linux/amd64",
            "-t",
            &image,
            "--push",
            "--load",
            "--output",
            &format!("docker-archive:{}", archive.display()),
        ],
        &[],
    );
    assert!(out.status.success());
    assert!(archive.exists());
    let run = docker_ok(&engine, &["run", "--rm", &image]);
    assert_eq!(run.trim(), "hello from x86_64");
    let pushed = common_registry::skopeo_raw(&format!("docker://{image}"));
    assert_eq!(
        pushed["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{pushed}"
    );
    let _ = docker(&engine, &["rmi", "-f", &image]);
}

/// A project with a file to read, a .git directory that must stay out, and a sub-directory
/// to work in.
fn project(dir: &Path) {
    std::fs::create_dir_all(dir.join(".git")).unwrap();
    std::fs::write(dir.join(".git/config"), "[core]\n").unwrap();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/input.txt"), "hello from the project\n").unwrap();
    std::fs::write(dir.join("sub/tool.sh"), "#!/bin/sh\necho tool ran\n").unwrap();
    std::fs::set_permissions(
        dir.join("sub/tool.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("sub/input.txt", dir.join("link")).unwrap();
}

const COMMAND: &str = r#"
cat input.txt
echo "to stderr: $GREETING" >&2
./tool.sh
test -e ../.git && echo "git was copied" || echo "no .git here"
cat ../link
mkdir -p "$RCROSS_OUT/bin"
cat input.txt > "$RCROSS_OUT/bin/copy"
ln -s copy "$RCROSS_OUT/bin/link"
echo "$RCROSS_PLATFORM" > "$RCROSS_OUT/platform"
"#;

fn job(
    context: &Path,
    out: &Path,
    image: BuildImage,
    platform: &str,
    command: &str,
) -> ContainerJob {
    std::fs::create_dir_all(out).unwrap();
    ContainerJob {
        platform: platform.parse().unwrap(),
        image,
        context: context.to_path_buf(),
        workdir: "sub".into(),
        command: command.into(),
        env: vec![
            ("GREETING".into(), "hi there".into()),
            ("RCROSS_OUT".into(), "/rcross/out".into()),
            ("RCROSS_PLATFORM".into(), platform.into()),
        ],
        out_dir: out.to_path_buf(),
    }
}

/// Runs the project job in the busybox layout on `engine` and checks everything it should do.
fn runs_the_project_job(endpoint: &Endpoint, work: &Path) {
    let Some(manifest) = busybox_layout(&work.join("busybox")) else {
        return;
    };
    let ctx = work.join("project");
    project(&ctx);
    let engine = DockerEngine::connect(endpoint).unwrap();
    assert!(engine.describe().contains(&endpoint.to_string()));
    let layout_image = BuildImage::Layout {
        dir: work.join("busybox"),
        reference: Some("busybox".into()),
        manifest: manifest.digest.clone(),
    };

    // A job from the layout: loaded, run, output copied back.
    let out = work.join("out1");
    let mut log = Vec::new();
    let exit = engine
        .run(
            &job(&ctx, &out, layout_image.clone(), "linux/amd64", COMMAND),
            &mut log,
        )
        .unwrap();
    let log = String::from_utf8_lossy(&log).into_owned();
    assert_eq!(exit.code, 0, "{log}");
    for line in [
        "hello from the project",
        "to stderr: hi there",
        "tool ran",
        "no .git here",
    ] {
        assert!(log.contains(line), "{line:?} in:\n{log}");
    }
    assert!(log.contains("rcross: loading"), "{log}");
    assert_eq!(
        std::fs::read_to_string(out.join("bin/copy")).unwrap(),
        "hello from the project\n"
    );
    assert_eq!(
        std::fs::read_link(out.join("bin/link")).unwrap(),
        Path::new("copy")
    );
    assert_eq!(
        std::fs::read_to_string(out.join("platform")).unwrap(),
        "linux/amd64\n"
    );
    assert!(!out.join("out").exists(), "the out/ component is stripped");

    // The same layout again: the image is already loaded.
    let tag = rcross::engine::layout_tag(&work.join("busybox"), &manifest.digest);
    let out = work.join("out2");
    let mut log = Vec::new();
    let exit = engine
        .run(
            &job(&ctx, &out, layout_image, "linux/amd64", "exit 7"),
            &mut log,
        )
        .unwrap();
    let log = String::from_utf8_lossy(&log).into_owned();
    assert_eq!(exit.code, 7, "a failing command is a JobExit, not an error");
    assert!(!exit.success());
    assert!(!log.contains("rcross: loading"), "{log}");
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "no output is copied from a failed command"
    );

    // A registry-style reference to a local image of the right platform is used as it is.
    let out = work.join("out3");
    let mut log = Vec::new();
    let exit = engine
        .run(
            &job(
                &ctx,
                &out,
                BuildImage::Registry(tag.clone()),
                "linux/amd64",
                "echo from the tag",
            ),
            &mut log,
        )
        .unwrap();
    assert_eq!(exit.code, 0);
    assert!(String::from_utf8_lossy(&log).contains("from the tag"));

    // The amd64 image is not used for an arm64 job: the engine is asked to pull arm64 (from a
    // registry that refuses the connection) and the failure names both platforms.
    let wrong = "127.0.0.1:1/rcross-test/busybox:amd64";
    docker_ok(endpoint, &["tag", &tag, wrong]);
    let mut log = Vec::new();
    let e = engine
        .run(
            &job(
                &ctx,
                &work.join("out4"),
                BuildImage::Registry(wrong.into()),
                "linux/arm64",
                "echo must not run",
            ),
            &mut log,
        )
        .unwrap_err();
    assert!(matches!(e, RunnerError::Image { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("linux/amd64, not linux/arm64") && text.contains(wrong),
        "{text}"
    );
    assert!(!String::from_utf8_lossy(&log).contains("must not run"));
    let _ = docker(endpoint, &["rmi", wrong]);

    // A layout that is not there is an image error; a project that is not there fails the
    // copy, and the container created for it is removed all the same (checked below).
    let e = engine
        .run(
            &job(
                &ctx,
                &work.join("out5"),
                BuildImage::Layout {
                    dir: work.join("no-layout"),
                    reference: None,
                    manifest: manifest.digest.clone(),
                },
                "linux/amd64",
                "true",
            ),
            &mut Vec::new(),
        )
        .unwrap_err();
    assert!(matches!(e, RunnerError::Image { .. }), "{e:?}");
    assert!(e.to_string().contains("no-layout"), "{e}");
    let e = engine
        .run(
            &job(
                &work.join("no-project"),
                &work.join("out6"),
                BuildImage::Registry(tag.clone()),
                "linux/amd64",
                "true",
            ),
            &mut Vec::new(),
        )
        .unwrap_err();
    assert!(matches!(e, RunnerError::Other { .. }), "{e:?}");
    assert!(e.to_string().contains("no-project"), "{e}");

    // Several threads share one engine, as parallel platform builds do.
    std::thread::scope(|scope| {
        for n in 0..3 {
            let (engine, ctx, tag) = (&engine, &ctx, &tag);
            scope.spawn(move || {
                let mut log = Vec::new();
                let out = work.join(format!("parallel{n}"));
                let command = format!("echo job {n} > \"$RCROSS_OUT/n\"");
                let j = job(
                    ctx,
                    &out,
                    BuildImage::Registry(tag.clone()),
                    "linux/amd64",
                    &command,
                );
                assert_eq!(engine.run(&j, &mut log).unwrap().code, 0);
                assert_eq!(
                    std::fs::read_to_string(out.join("n")).unwrap(),
                    format!("job {n}\n")
                );
            });
        }
    });

    assert_eq!(
        build_containers(endpoint),
        Vec::<String>::new(),
        "no build container is left behind"
    );
    let _ = docker(endpoint, &["rmi", &tag]);
}

#[test]
fn runner_runs_a_job_on_the_machines_engine() {
    let Some(endpoint) = system_engine() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    runs_the_project_job(&endpoint, work.path());
}

#[test]
fn runner_runs_a_job_on_a_remote_engine_over_tcp() {
    let Some(dockerd) = Dockerd::start_tcp() else {
        return;
    };
    let info = DockerEngine::connect(&dockerd.endpoint)
        .unwrap()
        .info()
        .unwrap();
    assert_eq!(info.os, "linux");
    assert_eq!(info.architecture, "amd64");
    assert!(info.negotiated_api_version.starts_with("1."), "{info:?}");
    let work = tempfile::tempdir().unwrap();
    runs_the_project_job(&dockerd.endpoint, work.path());
}

#[test]
fn an_unreachable_engine_fails_fast_and_names_the_endpoint() {
    let port = common_docker::free_port();
    let endpoint: Endpoint = format!("tcp://127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    let e = match DockerEngine::connect(&endpoint) {
        Ok(_) => panic!("something answers on {endpoint}"),
        Err(e) => e,
    };
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(e, RunnerError::Unreachable { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(&endpoint.to_string()), "{text}");
    assert!(text.contains("DOCKER_HOST"), "{text}");
    assert_eq!(e.exit_code(), rcross::exit::ENVIRONMENT);

    let socket: Endpoint = "unix:///nonexistent/docker.sock".parse().unwrap();
    let e = DockerEngine::connect(&socket).err().unwrap().to_string();
    assert!(
        e.contains("unix:///nonexistent/docker.sock") && e.contains("dockerd"),
        "{e}"
    );
}
