//! The Dockerfile front end against Docker's own builder: each Dockerfile below (expansion, ARG
//! scoping, build args, platform ARGs, multi-stage FROM selection, --target) is built with
//! `DOCKER_BUILDKIT=1 docker build`, and the built image's config (Env, Labels, WorkingDir, User,
//! ExposedPorts, Volumes, StopSignal, Cmd, Entrypoint, Shell, OnBuild, Healthcheck) must be what `rcross::dockerfile::plan`
//! computes for the target stage. The base image is made here: `docker import` of a tar holding
//! the host's static busybox (Debian's busybox-static), with some config of its own.
//!
//! The engine here is Docker 20.10, whose built-in BuildKit predates the colon-less forms
//! `${V-w}`, `${V+w}`, `${V?m}` (it says "missing ':' in substitution"); they are pinned by the
//! lexer's BuildKit vectors instead.
//!
//! BuildKit comes from the engine: the docker CLI must be able to use it (a CLI with buildx, or
//! a 20.10 CLI, which drives the engine's built-in BuildKit). When no CLI can, the cases that do
//! not need BuildKit run with the classic builder (DOCKER_BUILDKIT=0) and the others are a
//! missing prerequisite.

mod prereq;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

use std::time::Duration;

use rcross::dockerfile::{plan, BuildOptions, Healthcheck, ImageConfig};
use serde_json::Value;

const BASE: &str = "rcross-test/dockerfile-diff-base:1";

struct Case {
    name: &'static str,
    dockerfile: &'static str,
    build_args: &'static [(&'static str, &'static str)],
    platform: Option<&'static str>,
    target: Option<&'static str>,
    /// Needs BuildKit (platform ARGs, `--platform`), not only the classic builder.
    buildkit_only: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "expansion forms in every expanded instruction",
        dockerfile: r#"FROM rcross-test/dockerfile-diff-base:1
ARG V=1 EMPTY=
ENV A=$V B="${V}x y" C=${NOPE:-dflt} D=${V:+set} E='$V' F=${EMPTY:-e} H=\$V
ENV legacy form $V
RUN [ "$V" = 1 ] && [ "$A" = 1 ]
LABEL l1=$A "l 2"="${B}" l3=${NOPE:+x}end
WORKDIR /w/$V
WORKDIR sub/../s$V
USER u$V:${GROUP:-staff}
EXPOSE $V 80/udp 8000-8001 ${NOPE:-9}/tcp
VOLUME /data/$V ["/j/${V}"]
STOPSIGNAL SIG${NOPE:-INT}
CMD ["x", "$V"]
ENTRYPOINT echo $V
"#,
        build_args: &[],
        platform: None,
        target: None,
        buildkit_only: false,
    },
    Case {
        name: "global ARGs, build args, FROM ${VAR} selecting a stage",
        dockerfile: r#"ARG FLAVOR=a
ARG GLOBAL=g
ARG COMBINED=${FLAVOR}-${GLOBAL}-${TARGETARCH}
FROM rcross-test/dockerfile-diff-base:1 AS stage-a
LABEL flavor=a
FROM rcross-test/dockerfile-diff-base:1 AS stage-b
LABEL flavor=b
FROM stage-${FLAVOR}
LABEL before=[$FLAVOR][$GLOBAL]
ARG FLAVOR
ARG GLOBAL
ARG LOCAL=local-${FLAVOR}
ARG COMBINED
ENV F=$FLAVOR G=$GLOBAL L=$LOCAL C=$COMBINED
"#,
        build_args: &[("FLAVOR", "b"), ("UNUSED", "u")],
        platform: None,
        target: None,
        buildkit_only: false,
    },
    Case {
        name: "ARG scoping against ENV, in both orders",
        dockerfile: r#"FROM rcross-test/dockerfile-diff-base:1
ARG Y=arg
ENV Y=env
LABEL y=$Y
ENV Z=env
ARG Z=arg
LABEL z=$Z
ARG X=default
ENV X2=$X
ARG W
LABEL w=[$W]
ENV abc=hello
ENV abc=bye def=$abc
"#,
        build_args: &[("X", "cli"), ("W", "w")],
        platform: None,
        target: None,
        buildkit_only: false,
    },
    Case {
        name: "platform ARGs for linux/arm64 (undeclared, declared, shadowed, FROM --platform)",
        dockerfile: r#"FROM --platform=$BUILDPLATFORM scratch AS build
ARG TARGETARCH
LABEL build-target=$TARGETARCH
FROM scratch
LABEL undeclared=[$TARGETARCH]
ARG TARGETPLATFORM
ARG TARGETOS
ARG TARGETARCH
ARG TARGETVARIANT
ARG BUILDPLATFORM
ARG BUILDARCH
LABEL tp=$TARGETPLATFORM to=$TARGETOS ta=$TARGETARCH tv=[$TARGETVARIANT] bp=$BUILDPLATFORM ba=$BUILDARCH
ENV TA=$TARGETARCH
"#,
        build_args: &[],
        platform: Some("linux/arm64"),
        target: None,
        buildkit_only: true,
    },
    Case {
        name: "platform ARGs for linux/arm/v7 and a default that shadows one",
        dockerfile: r#"FROM scratch
ARG TARGETVARIANT
ARG TARGETPLATFORM
ARG TARGETARCH=shadowed
LABEL tv=$TARGETVARIANT tp=$TARGETPLATFORM ta=$TARGETARCH
"#,
        build_args: &[],
        platform: Some("linux/arm/v7"),
        target: None,
        buildkit_only: true,
    },
    Case {
        name: "global platform ARG in FROM and a global default",
        dockerfile: r#"ARG BASE_arm64=scratch
FROM scratch AS stage-arm64
LABEL picked=arm64
FROM scratch AS stage-amd64
LABEL picked=amd64
FROM stage-${TARGETARCH}
LABEL final=yes
"#,
        build_args: &[],
        platform: Some("linux/arm64"),
        target: None,
        buildkit_only: true,
    },
    Case {
        name: "multi-stage inheritance and --target",
        dockerfile: r#"FROM rcross-test/dockerfile-diff-base:1 AS one
ENV ONE=1
ARG A1=a1
WORKDIR /one
FROM one AS two
ENV TWO=$ONE$A1
LABEL two=yes
USER nobody
FROM rcross-test/dockerfile-diff-base:1 AS three
LABEL three=yes
"#,
        build_args: &[],
        platform: None,
        target: Some("two"),
        buildkit_only: false,
    },
    Case {
        name: "ENTRYPOINT clears an inherited CMD; SHELL shapes shell forms",
        dockerfile: r#"FROM rcross-test/dockerfile-diff-base:1 AS parent
CMD ["parent"]
FROM parent
ENTRYPOINT ["/bin/e"]
SHELL ["/bin/sh", "-ec"]
ENV P=$PATH:/opt
WORKDIR rel
LABEL from-base=override
"#,
        build_args: &[],
        platform: None,
        target: None,
        buildkit_only: false,
    },
    Case {
        name: "HEALTHCHECK, ONBUILD, STOPSIGNAL number, VOLUME JSON",
        dockerfile: r#"FROM rcross-test/dockerfile-diff-base:1
ARG PORT=8080
HEALTHCHECK --interval=5s --timeout=2s --start-period=1m30s --retries=3 CMD wget -q localhost:$PORT || exit 1
ONBUILD RUN echo $PORT
ONBUILD   COPY   . /app
STOPSIGNAL 9
VOLUME ["/a", "/b/$PORT"]
"#,
        build_args: &[],
        platform: None,
        target: None,
        buildkit_only: false,
    },
    Case {
        name: "HEALTHCHECK NONE and exec form",
        dockerfile: r#"FROM rcross-test/dockerfile-diff-base:1 AS a
HEALTHCHECK CMD ["/bin/true"]
FROM a
HEALTHCHECK NONE
"#,
        build_args: &[],
        platform: None,
        target: None,
        buildkit_only: false,
    },
    Case {
        name: "CMD in the same stage survives ENTRYPOINT; shell-form CMD after SHELL",
        dockerfile: r#"FROM scratch
SHELL ["/bin/ash", "-c"]
CMD run $X now
ENTRYPOINT ["/e"]
"#,
        build_args: &[],
        platform: None,
        target: None,
        buildkit_only: true, // scratch: WorkingDir "/" and PATH are BuildKit's
    },
];

/// A docker CLI whose `docker build` uses BuildKit with `DOCKER_BUILDKIT=1`, if any.
fn buildkit_cli(context: &Path) -> Option<String> {
    let mut candidates = vec!["docker".to_string()];
    if Path::new("/usr/bin/docker").exists() {
        candidates.push("/usr/bin/docker".to_string());
    }
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nARG TARGETARCH\nLABEL a=$TARGETARCH\n",
    )
    .unwrap();
    candidates.into_iter().find(|cli| {
        let out = Command::new(cli)
            .env("DOCKER_BUILDKIT", "1")
            .args(["build", "-q", "-t", "rcross-test/dockerfile-diff-probe:1"])
            .arg(context)
            .output();
        let ok = out.is_ok_and(|o| o.status.success());
        if ok {
            let _ = Command::new(cli)
                .args(["rmi", "rcross-test/dockerfile-diff-probe:1"])
                .output();
        }
        ok
    })
}

fn run(cli: &str, args: &[&str], buildkit: bool) -> Output {
    Command::new(cli)
        .env("DOCKER_BUILDKIT", if buildkit { "1" } else { "0" })
        .args(args)
        .output()
        .expect("run docker")
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The base image: /bin/busybox, its applet links, and a config of its own.
fn make_base(cli: &str, dir: &Path) {
    let busybox = Path::new("/bin/busybox");
    let mut b = tar::Builder::new(Vec::new());
    for dir in ["bin/", "tmp/"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, dir, std::io::empty()).unwrap();
    }
    b.append_path_with_name(busybox, "bin/busybox").unwrap();
    for tool in ["sh", "ash", "echo", "test", "[", "cat", "mkdir"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, format!("bin/{tool}"), "busybox")
            .unwrap();
    }
    let tar_path = dir.join("base.tar");
    std::fs::write(&tar_path, b.into_inner().unwrap()).unwrap();
    ok(
        run(
            cli,
            &[
                "import",
                "-c",
                "ENV PATH=/bin",
                "-c",
                "ENV BASEVAR=base",
                "-c",
                "WORKDIR /base",
                "-c",
                "LABEL from-base=1",
                tar_path.to_str().unwrap(),
                BASE,
            ],
            false,
        ),
        "docker import",
    );
}

/// A duration in nanoseconds as Docker writes them (absent or 0: not set).
fn nanos(v: &Value) -> Option<Duration> {
    v.as_u64().filter(|n| *n > 0).map(Duration::from_nanos)
}

/// `docker image inspect`'s Config, as the front end's config type.
fn inspect_config(cli: &str, image: &str) -> ImageConfig {
    let out = ok(
        run(cli, &["image", "inspect", image], false),
        "docker image inspect",
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let c = &v[0]["Config"];
    let strings = |v: &Value| -> Option<Vec<String>> {
        v.as_array().map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or("").to_string())
                .collect()
        })
    };
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    ImageConfig {
        env: strings(&c["Env"]).unwrap_or_default(),
        labels: c["Labels"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect::<BTreeMap<_, _>>()
            })
            .unwrap_or_default(),
        working_dir: c["WorkingDir"].as_str().unwrap_or("").to_string(),
        user: c["User"].as_str().unwrap_or("").to_string(),
        exposed_ports: keys(&c["ExposedPorts"]),
        volumes: keys(&c["Volumes"]),
        cmd: strings(&c["Cmd"]),
        shell: strings(&c["Shell"]),
        onbuild: strings(&c["OnBuild"]).unwrap_or_default(),
        healthcheck: c["Healthcheck"].as_object().map(|h| Healthcheck {
            test: strings(h.get("Test").unwrap_or(&Value::Null)).unwrap_or_default(),
            interval: nanos(h.get("Interval").unwrap_or(&Value::Null)),
            timeout: nanos(h.get("Timeout").unwrap_or(&Value::Null)),
            start_period: nanos(h.get("StartPeriod").unwrap_or(&Value::Null)),
            start_interval: nanos(h.get("StartInterval").unwrap_or(&Value::Null)),
            retries: h
                .get("Retries")
                .unwrap_or(&Value::Null)
                .as_u64()
                .filter(|r| *r > 0)
                .map(|r| r as u32),
        }),
        entrypoint: strings(&c["Entrypoint"]),
        stop_signal: c["StopSignal"].as_str().map(str::to_string),
        ..ImageConfig::default()
    }
}

/// The fields compared, by name: (Docker's, rcross's).
fn differences(docker: &ImageConfig, ours: &ImageConfig) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |name: &str, a: String, b: String| {
        if a != b {
            out.push(format!(
                "  {name}: docker {a}\n  {:width$}  rcross {b}",
                "",
                width = name.len()
            ));
        }
    };
    // Each field as Debug text, so one rule compares them all.
    macro_rules! compare {
        ($($name:literal => $field:ident),* $(,)?) => {
            $(check($name, format!("{:?}", docker.$field), format!("{:?}", ours.$field));)*
        };
    }
    compare! {
        "Env" => env,
        "Labels" => labels,
        "WorkingDir" => working_dir,
        "User" => user,
        "ExposedPorts" => exposed_ports,
        "Volumes" => volumes,
        "StopSignal" => stop_signal,
        "Cmd" => cmd,
        "Entrypoint" => entrypoint,
        "Shell" => shell,
        "OnBuild" => onbuild,
        "Healthcheck" => healthcheck,
    }
    out
}

#[test]
fn front_end_config_matches_docker_build() {
    if !prereq::tool("docker", "docker.io") {
        return;
    }
    if !Path::new("/bin/busybox").exists() {
        return prereq::missing("/bin/busybox", "apt-get install -y busybox-static").unwrap_or(());
    }
    let cli = "docker";
    if !run(cli, &["info"], false).status.success() {
        return prereq::missing(
            "a Docker engine (docker info fails)",
            "bash tests/run.sh starts dockerd; or `dockerd &`",
        )
        .unwrap_or(());
    }
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe");
    std::fs::create_dir(&probe).unwrap();
    let buildkit = buildkit_cli(&probe);
    let (cli, with_buildkit) = match &buildkit {
        Some(c) => (c.as_str(), true),
        None => (cli, false),
    };
    eprintln!(
        "builder: {}",
        if with_buildkit {
            format!("BuildKit ({cli} build, DOCKER_BUILDKIT=1)")
        } else {
            "the classic builder (no docker CLI here can drive BuildKit)".to_string()
        }
    );
    make_base(cli, dir.path());
    let base_config = inspect_config(cli, BASE);
    let context = dir.path().join("context");
    std::fs::create_dir(&context).unwrap();

    let mut failures = Vec::new();
    let (mut built, mut skipped) = (0, 0);
    for (n, case) in CASES.iter().enumerate() {
        if case.buildkit_only && !with_buildkit {
            skipped += 1;
            continue;
        }
        std::fs::write(context.join("Dockerfile"), case.dockerfile).unwrap();
        let tag = format!("rcross-test/dockerfile-diff:{n}");
        let mut args: Vec<String> = vec!["build".into(), "-q".into(), "-t".into(), tag.clone()];
        for (k, v) in case.build_args {
            args.push("--build-arg".into());
            args.push(format!("{k}={v}"));
        }
        if let Some(p) = case.platform {
            args.push("--platform".into());
            args.push(p.into());
        }
        if let Some(t) = case.target {
            args.push("--target".into());
            args.push(t.into());
        }
        args.push(context.to_str().unwrap().into());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(
            run(cli, &argv, with_buildkit),
            &format!("docker build of case {n} ({})", case.name),
        );
        built += 1;
        let docker = inspect_config(cli, &tag);
        let _ = run(cli, &["rmi", &tag], false);

        let mut options = BuildOptions::new(
            case.platform.unwrap_or("linux/amd64").parse().unwrap(),
            "linux/amd64".parse().unwrap(),
        );
        options.target = case.target.map(str::to_string);
        for (k, v) in case.build_args {
            options.build_args.insert(k.to_string(), v.to_string());
        }
        options
            .base_configs
            .insert(BASE.to_string(), base_config.clone());
        let graph = plan("Dockerfile", case.dockerfile, &options)
            .unwrap_or_else(|e| panic!("case {n} ({}): {e}", case.name));
        let ours = &graph.target_stage().unwrap().config;
        let diff = differences(&docker, ours);
        if !diff.is_empty() {
            failures.push(format!("case {n} ({}):\n{}", case.name, diff.join("\n")));
        }
    }
    let _ = run(cli, &["rmi", BASE], false);
    eprintln!(
        "{built} Dockerfiles built and compared on 12 config fields, {} differ, {skipped} skipped (need BuildKit)",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "rcross's front end differs from docker build:\n{}",
        failures.join("\n")
    );
    if skipped > 0 {
        prereq::missing::<()>(
            "a docker CLI that can use BuildKit (buildx, or the 20.10 CLI)",
            "apt-get install -y docker-buildx (or docker.io's CLI)",
        );
    }
}
