//! The front end end to end: ARG scoping, expansion lists, stages, typed instructions, errors.

use super::*;
use crate::platform::Platform;

fn p(s: &str) -> Platform {
    s.parse().unwrap()
}

fn opts(target: &str) -> BuildOptions {
    BuildOptions::new(p(target), p("linux/amd64"))
}

fn plan_ok(text: &str, o: &BuildOptions) -> BuildGraph {
    plan("Dockerfile", text, o).unwrap_or_else(|e| panic!("{e}"))
}

fn plan_err(text: &str, o: &BuildOptions) -> DockerfileError {
    match plan("Dockerfile", text, o) {
        Ok(g) => panic!("expected an error, got {g:#?}"),
        Err(e) => e,
    }
}

fn target(g: &BuildGraph) -> &Stage {
    g.target_stage().unwrap()
}

fn labels(g: &BuildGraph) -> Vec<(String, String)> {
    target(g).config.labels.clone().into_iter().collect()
}

fn label(g: &BuildGraph, k: &str) -> String {
    target(g)
        .config
        .labels
        .get(k)
        .cloned()
        .unwrap_or_else(|| panic!("no label {k}"))
}

#[test]
fn platform_args_have_buildkit_values() {
    let args = platform_args(p("linux/arm/v7"), p("linux/amd64"));
    let get = |k: &str| args.iter().find(|(n, _)| *n == k).unwrap().1.clone();
    assert_eq!(get("TARGETPLATFORM"), "linux/arm/v7");
    assert_eq!(get("TARGETARCH"), "arm");
    assert_eq!(get("TARGETVARIANT"), "v7");
    assert_eq!(get("BUILDPLATFORM"), "linux/amd64");
    assert_eq!(get("BUILDVARIANT"), "");
    let args = platform_args(p("linux/arm64"), p("linux/amd64"));
    let get = |k: &str| args.iter().find(|(n, _)| *n == k).unwrap().1.clone();
    assert_eq!(
        (
            get("TARGETPLATFORM").as_str(),
            get("TARGETVARIANT").as_str()
        ),
        ("linux/arm64", "")
    );
}

#[test]
fn automatic_args_in_from_undeclared_in_stage_only_when_declared() {
    let text = "FROM base-$TARGETARCH AS b\nLABEL a=\"[$TARGETARCH]\"\nARG TARGETARCH\nLABEL b=$TARGETARCH c=$BUILDPLATFORM\n";
    let g = plan_ok(text, &opts("linux/arm64"));
    assert_eq!(target(&g).base, StageBase::Image("base-arm64".into()));
    assert_eq!(label(&g, "a"), "[]");
    assert_eq!(label(&g, "b"), "arm64");
    assert_eq!(label(&g, "c"), "");
}

#[test]
fn a_default_shadows_the_automatic_value_and_build_args_win() {
    let text = "FROM scratch\nARG TARGETARCH=amd64\nLABEL a=$TARGETARCH\n";
    assert_eq!(label(&plan_ok(text, &opts("linux/arm64")), "a"), "amd64");
    let mut o = opts("linux/arm64");
    o.build_args.insert("TARGETARCH".into(), "riscv64".into());
    assert_eq!(label(&plan_ok(text, &o), "a"), "riscv64");
    // A global default shadows it in FROM too.
    let text = "ARG TARGETARCH=x\nFROM img-$TARGETARCH\n";
    assert_eq!(
        target(&plan_ok(text, &opts("linux/arm64"))).base,
        StageBase::Image("img-x".into())
    );
}

#[test]
fn global_args_are_seen_in_a_stage_only_after_arg_name() {
    let text =
        "ARG V=1\nARG W\nFROM scratch\nLABEL before=[$V]\nARG V\nARG W\nLABEL after=[$V] w=[$W]\n";
    let g = plan_ok(text, &opts("linux/amd64"));
    assert_eq!(label(&g, "before"), "[]");
    assert_eq!(label(&g, "after"), "[1]");
    assert_eq!(label(&g, "w"), "[]");
    let mut o = opts("linux/amd64");
    o.build_args.insert("V".into(), "cli".into());
    o.build_args.insert("W".into(), "w".into());
    o.build_args.insert("UNDECLARED".into(), "u".into());
    let g = plan_ok(&format!("{text}LABEL u=[$UNDECLARED]\n"), &o);
    assert_eq!(
        (label(&g, "after"), label(&g, "w"), label(&g, "u")),
        ("[cli]".into(), "[w]".into(), "[]".into())
    );
}

#[test]
fn env_wins_over_arg_later_and_one_snapshot_per_instruction() {
    let text = "FROM scratch\nARG A=arg\nENV A=env\nLABEL a=$A\nENV abc=hello\nENV abc=bye def=$abc\nARG U\nENV ghi=$abc\n";
    let g = plan_ok(text, &opts("linux/amd64"));
    assert_eq!(label(&g, "a"), "env");
    let env = &target(&g).config.env;
    assert!(env.contains(&"def=hello".to_string()), "{env:?}");
    assert!(env.contains(&"ghi=bye".to_string()), "{env:?}");
    assert!(
        env.iter().any(|e| e.starts_with("PATH=")),
        "default PATH: {env:?}"
    );
    assert!(!env.iter().any(|e| e.starts_with("A=arg")));
}

#[test]
fn run_env_holds_arg_values_but_the_image_env_does_not() {
    let text = "FROM scratch\nARG V=1\nRUN echo $V\n";
    let g = plan_ok(text, &opts("linux/amd64"));
    let Instruction::Run(r) = &target(&g).steps[1].instruction else {
        panic!()
    };
    assert!(r.env.contains(&"V=1".to_string()));
    assert_eq!(
        r.command,
        CommandForm::Shell("echo $V".into()),
        "RUN text is not expanded"
    );
    assert_eq!(r.shell, vec!["/bin/sh", "-c"]);
    assert!(!target(&g).config.env.iter().any(|e| e.starts_with("V=")));
}

#[test]
fn not_expanded_cmd_entrypoint_healthcheck_shell_onbuild() {
    let text = "FROM scratch\nENV X=1\nCMD echo $X\nENTRYPOINT [\"/bin/$X\"]\nHEALTHCHECK --interval=5s CMD test $X\nSHELL [\"/bin/$X\", \"-c\"]\nONBUILD RUN echo $X\n";
    let g = plan_ok(text, &opts("linux/amd64"));
    let c = &target(&g).config;
    assert_eq!(
        c.cmd,
        Some(vec!["/bin/sh".into(), "-c".into(), "echo $X".into()]),
        "CMD set in this stage stays"
    );
    assert_eq!(c.entrypoint, Some(vec!["/bin/$X".to_string()]));
    let h = c.healthcheck.as_ref().unwrap();
    assert_eq!(h.test, vec!["CMD-SHELL", "test $X"]);
    assert_eq!(h.interval, Some(std::time::Duration::from_secs(5)));
    assert_eq!(c.shell, Some(vec!["/bin/$X".to_string(), "-c".to_string()]));
    assert_eq!(c.onbuild, vec!["RUN echo $X"]);
}

#[test]
fn entrypoint_clears_an_inherited_cmd_only() {
    let text = "FROM scratch AS a\nCMD [\"x\"]\nFROM a\nENTRYPOINT [\"e\"]\n";
    assert_eq!(
        target(&plan_ok(text, &opts("linux/amd64"))).config.cmd,
        None
    );
    let text = "FROM scratch\nCMD [\"x\"]\nENTRYPOINT [\"e\"]\n";
    assert_eq!(
        target(&plan_ok(text, &opts("linux/amd64"))).config.cmd,
        Some(vec!["x".into()])
    );
    let text = "FROM scratch\nSHELL [\"/bin/bash\", \"-c\"]\nCMD run it\n";
    assert_eq!(
        target(&plan_ok(text, &opts("linux/amd64"))).config.cmd,
        Some(vec!["/bin/bash".into(), "-c".into(), "run it".into()])
    );
}

#[test]
fn expanded_instructions() {
    let text = "FROM scratch\nARG P=8080 D=/srv U=app\nEXPOSE $P 53/udp ${P:-1}/tcp\nWORKDIR $D\nWORKDIR sub/../web\nUSER ${U}:${G:-staff}\nVOLUME [\"$D/data\"]\nSTOPSIGNAL SIG${S:-TERM}\nLABEL \"k $U\"='v $U' x=\"${U}s\"\n";
    let g = plan_ok(text, &opts("linux/amd64"));
    let c = &target(&g).config;
    assert_eq!(
        c.exposed_ports.iter().collect::<Vec<_>>(),
        vec!["53/udp", "8080/tcp"]
    );
    assert_eq!(c.working_dir, "/srv/web");
    assert_eq!(c.user, "app:staff");
    assert!(c.volumes.contains("/srv/data"));
    assert_eq!(c.stop_signal.as_deref(), Some("SIGTERM"));
    assert_eq!(
        labels(&g),
        vec![("k app".into(), "v $U".into()), ("x".into(), "apps".into())]
    );
}

#[test]
fn stages_names_indexes_target_and_reachability() {
    let text = "FROM scratch AS Base\nFROM base AS build\nRUN --mount=type=cache,target=/c,from=0 true\nFROM scratch AS unused\nFROM scratch AS tools\nFROM scratch AS final\nCOPY --from=BUILD /a /a\nCOPY --from=tools /t /t\nCOPY --from=busybox:1 /bin/sh /sh\n";
    let g = plan_ok(text, &opts("linux/amd64"));
    let names: Vec<_> = g.stages.iter().map(|s| s.name.clone().unwrap()).collect();
    assert_eq!(names, vec!["base", "build", "tools", "final"]);
    assert_eq!(target(&g).name.as_deref(), Some("final"));
    assert_eq!(g.stages[1].base, StageBase::Stage(0));
    let Instruction::Copy(c) = &target(&g).steps[2].instruction else {
        panic!()
    };
    assert_eq!(c.from, Some(StageRef::Image("busybox:1".into())));
    assert!(g
        .base_images()
        .contains(&("busybox:1".to_string(), p("linux/amd64"))));

    let mut o = opts("linux/amd64");
    o.target = Some("BUILD".into());
    let g = plan_ok(text, &o);
    assert_eq!(g.stages.len(), 2);
    o.target = Some("nope".into());
    let e = plan_err(text, &o);
    assert_eq!(e.kind, DockerfileErrorKind::Target);
    assert!(
        e.message.contains("base, build, unused, tools, final"),
        "{e}"
    );
}

#[test]
fn from_platform_and_variable_selection() {
    let text = "ARG VARIANT=b\nFROM --platform=$BUILDPLATFORM img AS build\nFROM --platform=linux/aarch64 img AS arm\nFROM build AS child\nFROM scratch AS sel-a\nFROM scratch AS sel-b\nFROM sel-${VARIANT}\nCOPY --from=child / /\nCOPY --from=arm / /\n";
    let g = plan_ok(text, &opts("linux/arm/v7"));
    let by = |n: &str| {
        g.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(n))
            .unwrap()
    };
    assert_eq!(by("build").platform, p("linux/amd64"));
    assert!(by("build").platform_from_flag);
    assert_eq!(by("arm").platform, p("linux/arm64"));
    assert_eq!(
        by("child").platform,
        p("linux/amd64"),
        "inherited from the base stage"
    );
    assert_eq!(target(&g).platform, p("linux/arm/v7"));
    assert_eq!(target(&g).base, StageBase::Stage(4));
    assert!(g.stages.iter().all(|s| s.name.as_deref() != Some("sel-a")));
    let e = plan_err(
        "FROM --platform=windows/amd64 scratch\n",
        &opts("linux/amd64"),
    );
    assert!(e.message.contains("windows"), "{e}");
}

#[test]
fn copy_from_variable_is_refused_as_buildkit_does() {
    let e = plan_err(
        "FROM scratch AS a\nFROM scratch\nARG S=a\nCOPY --from=$S / /\n",
        &opts("linux/amd64"),
    );
    assert!(
        e.message
            .contains("variable expansion is not supported for --from"),
        "{e}"
    );
    assert_eq!((e.line, e.instruction.as_str()), (4, "COPY"));
}

#[test]
fn run_mounts_and_network_are_typed() {
    let text = "FROM scratch\nARG ID=gocache\nRUN --mount=type=cache,id=$ID,target=/root/.cache,sharing=locked,mode=0755 \\\n    --mount=type=secret,id=tok \\\n    --mount=type=tmpfs,target=/tmp,size=64m \\\n    --mount=target=/src,rw \\\n    --network=none make\n";
    let g = plan_ok(text, &opts("linux/amd64"));
    let Instruction::Run(r) = &target(&g).steps[1].instruction else {
        panic!()
    };
    assert_eq!(r.network, Network::None);
    assert_eq!(
        r.mounts[0],
        Mount::Cache {
            target: "/root/.cache".into(),
            id: "gocache".into(),
            sharing: CacheSharing::Locked,
            from: None,
            source: String::new(),
            read_only: false,
            mode: Some(0o755),
            uid: None,
            gid: None
        }
    );
    assert!(
        matches!(&r.mounts[1], Mount::Secret { id, target: Some(t), .. } if id == "tok" && t == "/run/secrets/tok")
    );
    assert_eq!(
        r.mounts[2],
        Mount::Tmpfs {
            target: "/tmp".into(),
            size: Some(64 << 20)
        }
    );
    assert!(matches!(
        &r.mounts[3],
        Mount::Bind {
            read_write: true,
            ..
        }
    ));
    for (flag, needle) in [
        ("--mount=type=ssh", "ssh"),
        ("--mount=type=foo,target=/x", "foo"),
        ("--network=host", "host"),
        ("--security=insecure", "--security"),
        ("--device=x", "--device"),
        ("--mount=type=cache,target=/x,bogus=1", "bogus"),
    ] {
        let e = plan_err(
            &format!("FROM scratch\nRUN {flag} true\n"),
            &opts("linux/amd64"),
        );
        assert!(e.message.contains(needle), "{flag}: {e}");
        assert_eq!((e.line, e.instruction.as_str()), (2, "RUN"));
    }
}

#[test]
fn copy_and_add() {
    let text = "FROM scratch\nARG U=1000 M=0644\nCOPY --chown=$U:$U --chmod=$M --link a* b /dst/\nCOPY <<EOF <<'RAW' /x/\n$U\nEOF\n$U\nRAW\nADD local.tar /\n";
    let g = plan_ok(text, &opts("linux/amd64"));
    let Instruction::Copy(c) = &target(&g).steps[1].instruction else {
        panic!()
    };
    assert_eq!(c.chown.as_deref(), Some("1000:1000"));
    assert_eq!(c.chmod.as_deref(), Some("0644"));
    assert!(c.link);
    assert_eq!(
        c.sources,
        vec![CopySource::Path("a*".into()), CopySource::Path("b".into())]
    );
    let Instruction::Copy(h) = &target(&g).steps[2].instruction else {
        panic!()
    };
    assert_eq!(
        h.sources,
        vec![
            CopySource::Heredoc {
                name: "EOF".into(),
                content: "1000\n".into()
            },
            CopySource::Heredoc {
                name: "RAW".into(),
                content: "$U\n".into()
            }
        ]
    );
    assert!(matches!(
        &target(&g).steps[3].instruction,
        Instruction::Add(_)
    ));
    for src in ["https://example.com/x.tgz", "git@github.com:a/b.git"] {
        let e = plan_err(
            &format!("FROM scratch\nADD {src} /\n"),
            &opts("linux/amd64"),
        );
        assert_eq!(e.kind, DockerfileErrorKind::Refused, "{e}");
        assert!(e.message.contains("URL or a git repository"), "{e}");
    }
    let e = plan_err("FROM scratch\nCOPY --parents a /b/\n", &opts("linux/amd64"));
    assert!(e.message.contains("--parents"), "{e}");
}

#[test]
fn run_heredoc_is_kept_for_the_shell() {
    let text = "FROM scratch\nRUN a \\\n && cat <<EOF >/x\n$HOME\nEOF\n";
    let g = plan_ok(text, &opts("linux/amd64"));
    let Instruction::Run(r) = &target(&g).steps[0].instruction else {
        panic!()
    };
    assert_eq!(r.command, CommandForm::Shell("a  && cat <<EOF >/x".into()));
    assert_eq!(r.heredocs[0].content, "$HOME\n");
}

#[test]
fn errors_name_path_line_and_instruction() {
    let cases = [
        (
            "FROM scratch\nENV A=\"${B:?B must be set}\"\n",
            2,
            "ENV",
            "B must be set",
        ),
        (
            "FROM scratch\n\nLABEL a=${x#y}\n",
            3,
            "LABEL",
            "not supported by rcross",
        ),
        ("FROM scratch AS 1abc\n", 1, "FROM", "invalid name"),
        (
            "FROM scratch\nSTOPSIGNAL NOPE\n",
            2,
            "STOPSIGNAL",
            "invalid signal",
        ),
        ("FROM scratch\nEXPOSE http\n", 2, "EXPOSE", "invalid port"),
        (
            "FROM scratch\nHEALTHCHECK --interval=5 CMD x\n",
            2,
            "HEALTHCHECK",
            "invalid duration",
        ),
        ("FROM $NOTHING\n", 1, "FROM", "should not be blank"),
    ];
    for (text, line, instruction, needle) in cases {
        let e = plan_err(text, &opts("linux/amd64"));
        assert_eq!((e.line, e.instruction.as_str()), (line, instruction), "{e}");
        assert!(e.message.contains(needle), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("Dockerfile:{line}: {instruction}: ")),
            "{e}"
        );
    }
    let e = plan_err("ENV A=1\nFROM scratch\n", &opts("linux/amd64"));
    assert_eq!((e.kind, e.line), (DockerfileErrorKind::Syntax, 1), "{e}");
    let e = plan_err("RUN x\n", &opts("linux/amd64"));
    assert!(e.message.contains("FROM"), "{e}");
    let e = plan_err("FROM scratch\nFROOB x\n", &opts("linux/amd64"));
    assert_eq!((e.kind, e.line), (DockerfileErrorKind::Syntax, 2));
}

#[test]
fn base_config_env_is_used_for_expansion() {
    let mut o = opts("linux/amd64");
    let base = ImageConfig {
        env: vec!["PATH=/bin".into(), "HOME=/root".into()],
        working_dir: "/w".into(),
        ..ImageConfig::default()
    };
    o.base_configs.insert("img:1".into(), base);
    let g = plan_ok(
        "FROM img:1\nENV PATH=$PATH:/opt HOMEDIR=$HOME\nWORKDIR sub\n",
        &o,
    );
    let c = &target(&g).config;
    assert_eq!(c.env, vec!["PATH=/bin:/opt", "HOME=/root", "HOMEDIR=/root"]);
    assert_eq!(c.working_dir, "/w/sub");
}

/// BuildKit's dispatchOnBuildTriggers: a base's triggers run right after its FROM, at the FROM
/// line, and are not inherited further; the stage's own ONBUILD is kept for the next one.
#[test]
fn onbuild_triggers_of_a_base_run_after_its_from() {
    let g = plan_ok(
        "FROM scratch AS p\nONBUILD ENV T=1\nONBUILD COPY . /app\nFROM p\nENV U=$T\nONBUILD RUN y\n",
        &opts("linux/amd64"),
    );
    let s = target(&g);
    assert_eq!(s.steps[0].line, 4);
    assert!(
        matches!(&s.steps[0].instruction, Instruction::Env(v) if v == &[("T".to_string(), "1".to_string())])
    );
    assert!(matches!(&s.steps[1].instruction, Instruction::Copy(c) if c.dest == "/app"));
    assert!(
        s.config.env.contains(&"U=1".to_string()),
        "{:?}",
        s.config.env
    );
    assert_eq!(s.config.onbuild, vec!["RUN y"]);
    let mut o = opts("linux/amd64");
    o.base_configs.insert(
        "img".into(),
        ImageConfig {
            onbuild: vec!["WORKDIR /from-trigger".into()],
            ..ImageConfig::default()
        },
    );
    let g = plan_ok("FROM img\n", &o);
    let s = target(&g);
    assert_eq!(s.config.working_dir, "/from-trigger");
    assert!(s.config.onbuild.is_empty(), "not inherited");
    o.base_configs.insert(
        "bad".into(),
        ImageConfig {
            onbuild: vec!["FROM x".into()],
            ..ImageConfig::default()
        },
    );
    let e = plan_err("FROM bad\n", &o);
    assert_eq!(e.line, 1, "{e}");
    assert!(e.message.contains("ONBUILD trigger"), "{e}");
}

#[test]
fn more_shapes() {
    let text = "# syntax=docker/dockerfile:1.7\nARG P=linux/arm64\nFROM --platform=$P img AS x\nARG \"Q\"=1\nRUN [\"/bin/echo\", \"$Q\"]\nONBUILD RUN <<EOF\necho hi\nEOF\nMAINTAINER Me <me@example.com>\n";
    let g = plan_ok(text, &opts("linux/amd64"));
    assert_eq!(g.syntax.as_deref(), Some("docker/dockerfile:1.7"));
    let s = target(&g);
    assert_eq!(s.platform, p("linux/arm64"));
    assert!(
        matches!(&s.steps[1].instruction, Instruction::Run(r) if r.command == CommandForm::Exec(vec!["/bin/echo".into(), "$Q".into()]))
    );
    assert_eq!(
        s.steps[2].instruction,
        Instruction::Onbuild("RUN <<EOF\necho hi\nEOF".into())
    );
    assert_eq!(s.config.author.as_deref(), Some("Me <me@example.com>"));
    let Instruction::Arg(a) = &s.steps[0].instruction else {
        panic!()
    };
    assert_eq!(
        a[0].0, "\"Q\"",
        "ARG names are not expanded (BuildKit keeps them as written)"
    );
}

#[test]
fn the_size_bound_is_an_error() {
    let big = format!(
        "FROM scratch\n{}",
        "# x\n".repeat(MAX_DOCKERFILE_BYTES / 4 + 1)
    );
    let e = plan_err(&big, &opts("linux/amd64"));
    assert_eq!((e.kind, e.line), (DockerfileErrorKind::Syntax, 0));
}

#[test]
fn mount_targets_are_taken_from_the_working_directory() {
    let text = "FROM scratch\nWORKDIR /src\nRUN --mount=type=bind --mount=type=cache,target=.cache go build .\n";
    let g = plan_ok(text, &opts("linux/amd64"));
    let Instruction::Run(r) = &target(&g).steps[1].instruction else {
        panic!()
    };
    assert!(
        matches!(&r.mounts[0], Mount::Bind { target, read_write: false, .. } if target == "/src")
    );
    assert!(
        matches!(&r.mounts[1], Mount::Cache { target, id, .. } if target == "/src/.cache" && id == ".cache")
    );
    let e = plan_err(
        "FROM scratch\nRUN --mount=type=bind,target=/ x\n",
        &opts("linux/amd64"),
    );
    assert!(e.message.contains("invalid mount target"), "{e}");
}
