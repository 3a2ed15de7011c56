//! Toolchain decisions on the recording fake host: discovery, plan over every combination of
//! host architecture, installed tools and handlers, install, rendering and run commands.

use super::install::{self, ComponentState, InstallError};
use super::plan::{self, Lang, Strategy};
use super::render::{self, EnvFormat, EnvInput, FileFormat};
use super::run::{self, RunError, RunRequest};
use super::*;
use crate::binfmt::{self, Flags};
use crate::host::fake::{Call, FakeHost};
use crate::host::ProbeOutcome;

const BM: &str = "/proc/sys/fs/binfmt_misc";

fn p(s: &str) -> Platform {
    s.parse().unwrap()
}

fn catalog() -> Catalog {
    Catalog::builtin().unwrap()
}

fn handlers() -> binfmt::Catalog {
    binfmt::Catalog::builtin().unwrap()
}

/// What the fake host has installed.
#[derive(Debug, Clone, Copy, Default)]
struct Tools {
    gcc: bool,
    zig: bool,
    go: bool,
    rust_target: bool,
    emulator: bool,
    handler: bool,
}

impl Tools {
    fn all() -> Vec<Tools> {
        (0..64u32)
            .map(|b| Tools {
                gcc: b & 1 != 0,
                zig: b & 2 != 0,
                go: b & 4 != 0,
                rust_target: b & 8 != 0,
                emulator: b & 16 != 0,
                handler: b & 32 != 0,
            })
            .collect()
    }
}

fn uname_of(host: Platform) -> &'static str {
    host.uname_machine()
}

/// A fake `host` machine with `tools` installed for `target`.
fn fake(host: Platform, target: Platform, t: Tools) -> FakeHost {
    let mut h = FakeHost::new();
    h.uname.machine = uname_of(host).into();
    h.mount_binfmt(std::path::Path::new(BM));
    h.add_file("/etc/os-release", "ID=debian\n");
    h.add_file("/usr/include/stdio.h", "");
    h.programs
        .insert("apt-get".into(), "/usr/bin/apt-get".into());
    let cat = catalog();
    let spec = cat.get(&target).unwrap();
    if t.gcc {
        if let Some(g) = spec.compilers.iter().find(|c| c.kind == CompilerKind::Gcc) {
            for tool in ["gcc", "g++", "ar", "ranlib", "strip", "ld"] {
                let name = format!("{}-{tool}", g.triple);
                h.programs
                    .insert(name.clone(), format!("/usr/bin/{name}").into());
            }
            let sysroot = g.sysroot.clone().unwrap();
            h.add_file(sysroot.join("include/stdio.h"), "");
            h.add_file(sysroot.join("lib/libc.so.6"), "");
        }
    }
    if t.zig {
        h.programs.insert("zig".into(), "/opt/zig/zig".into());
    }
    if t.go {
        h.programs.insert("go".into(), "/usr/bin/go".into());
    }
    let installed = if t.rust_target {
        spec.compilers
            .iter()
            .find(|c| c.kind == CompilerKind::Gcc)
            .and_then(|c| c.rust_target.clone())
            .unwrap_or_else(|| spec.rust_targets[0].clone())
    } else {
        String::new()
    };
    h.on_command(
        "rustup target list --installed",
        ProbeOutcome::Exited(0),
        &format!("{installed}\n"),
        "",
    );
    let hc = handlers();
    let handler = hc.for_platform(&target).unwrap();
    if t.emulator {
        h.programs.insert(
            handler.emulators[0].clone(),
            format!("/usr/bin/{}", handler.emulators[0]).into(),
        );
    }
    if t.handler {
        let line = binfmt::register_line(
            &handler.kernel_name(),
            handler,
            std::path::Path::new("/usr/bin/qemu"),
            &Flags::default(),
        )
        .unwrap();
        h.write_control(&std::path::Path::new(BM).join("register"), line.as_bytes())
            .unwrap();
        h.emulated_exit = binfmt::selftest::EXIT_CODE;
    }
    // The host CPU runs its own programs.
    let prog = binfmt::selftest::program(&host).unwrap();
    let class = prog[4];
    let machine = u16::from_le_bytes([prog[18], prog[19]]);
    h.probes.insert(
        (class, machine),
        ProbeOutcome::Exited(binfmt::selftest::EXIT_CODE),
    );
    h
}

fn facts_of(h: &FakeHost) -> Facts {
    gather(h, &catalog(), &handlers(), std::path::Path::new(BM)).unwrap()
}

#[test]
fn discovery_on_a_debian_amd64_host() {
    let t = Tools {
        gcc: true,
        emulator: true,
        handler: true,
        ..Default::default()
    };
    let h = fake(p("linux/amd64"), p("linux/arm64"), t);
    let f = facts_of(&h);
    assert_eq!(f.host, p("linux/amd64"));
    assert_eq!(f.native, vec![p("linux/amd64")]);
    assert_eq!(f.package_manager, Some(PackageManager::AptGet));
    let a = f.target(&p("linux/arm64")).unwrap();
    assert_eq!(a.toolchains.len(), 1);
    assert_eq!(a.toolchains[0].cc, vec!["/usr/bin/aarch64-linux-gnu-gcc"]);
    assert_eq!(
        a.toolchains[0].rust_target.as_deref(),
        Some("aarch64-unknown-linux-gnu")
    );
    assert!(a.emulator.is_some());
    assert_eq!(a.handler.as_deref(), Some("rcross-aarch64"));
    // The host's own compiler needs no cross sysroot.
    let own = f.target(&p("linux/amd64")).unwrap();
    assert!(
        own.toolchains.is_empty(),
        "no x86_64-linux-gnu-gcc in the fake"
    );
}

/// A scoped gather (plan/env/build for C) runs no helper program when the first toolchain is
/// a gcc: `python3` and `rustup` probes cost up to a second each on some hosts.
#[test]
fn scoped_gather_for_c_runs_no_helper_programs() {
    let t = Tools {
        gcc: true,
        emulator: true,
        ..Default::default()
    };
    let h = fake(p("linux/amd64"), p("linux/arm64"), t);
    let arm64 = [p("linux/arm64")];
    let scope = Scope {
        platforms: Some(&arm64),
        lang: Some(Lang::C),
        probe_cache: None,
    };
    let f = gather_scoped(&h, &catalog(), &handlers(), std::path::Path::new(BM), scope).unwrap();
    let captures: Vec<Call> = h
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Capture(..)))
        .collect();
    assert!(captures.is_empty(), "{captures:?}");
    // One test program: arm64's (aarch64 is e_machine 183), not one per known architecture.
    let runs: Vec<Call> = h
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Run(..)))
        .collect();
    assert_eq!(runs, [Call::Run(2, 183)]);
    assert_eq!(f.targets.len(), 1);
    assert_eq!(f.target(&arm64[0]).unwrap().toolchains.len(), 1);
    assert!(f.rust_targets.is_none());

    // For Rust, the installed targets are read.
    let scope = Scope {
        platforms: Some(&arm64),
        lang: Some(Lang::Rust),
        probe_cache: None,
    };
    let f = gather_scoped(&h, &catalog(), &handlers(), std::path::Path::new(BM), scope).unwrap();
    assert!(f.rust_targets.is_some());
}

#[test]
fn a_gcc_without_its_c_library_is_reported_not_used() {
    let mut h = fake(p("linux/amd64"), p("linux/riscv64"), Tools::default());
    h.programs.insert(
        "riscv64-linux-gnu-gcc".into(),
        "/usr/bin/riscv64-linux-gnu-gcc".into(),
    );
    let f = facts_of(&h);
    let r = f.target(&p("linux/riscv64")).unwrap();
    assert!(r.toolchains.is_empty());
    assert!(r.incomplete[0].contains("C library"), "{:?}", r.incomplete);
    let items = plan::plan(&f, &catalog(), &[p("linux/riscv64")], Lang::C).unwrap();
    assert!(items[0].reason.contains("C library"), "{}", items[0].reason);
}

#[test]
fn zig_from_pypi_is_found_through_python() {
    let mut h = fake(p("linux/amd64"), p("linux/arm/v6"), Tools::default());
    h.on_command(
        "python3 -c",
        ProbeOutcome::Exited(0),
        "/usr/lib/python3/dist-packages/ziglang\n",
        "",
    );
    h.add_file("/usr/lib/python3/dist-packages/ziglang/zig", "");
    let f = facts_of(&h);
    let v6 = f.target(&p("linux/arm/v6")).unwrap();
    assert_eq!(
        v6.toolchains[0].cc,
        vec![
            "/usr/lib/python3/dist-packages/ziglang/zig",
            "cc",
            "-target",
            "arm-linux-musleabihf",
            "-mcpu=arm1176jzf_s"
        ]
    );
}

/// The plan over every combination of host architecture, target, installed tools, handlers
/// and language, checked against the rules in the issue.
#[test]
fn plan_over_every_combination() {
    let hosts = [p("linux/amd64"), p("linux/arm64")];
    let targets = [
        p("linux/amd64"),
        p("linux/arm64"),
        p("linux/arm/v7"),
        p("linux/arm/v6"),
        p("linux/riscv64"),
    ];
    let cat = catalog();
    let mut seen = std::collections::BTreeSet::new();
    for host in hosts {
        for target in targets {
            for tools in Tools::all() {
                let h = fake(host, target, tools);
                let f = facts_of(&h);
                for lang in [Lang::C, Lang::Go, Lang::Rust] {
                    let ctx = format!("host {host} target {target} {tools:?} {lang}");
                    let items = plan::plan(&f, &cat, &[target], lang).unwrap();
                    let it = &items[0];
                    seen.insert(it.strategy);
                    let spec = cat.get(&target).unwrap();
                    let has_gcc =
                        tools.gcc && spec.compilers.iter().any(|c| c.kind == CompilerKind::Gcc);
                    let has_zig =
                        tools.zig && spec.compilers.iter().any(|c| c.kind == CompilerKind::Zig);
                    let cross_possible = match lang {
                        Lang::C => has_gcc || has_zig,
                        Lang::Go => tools.go,
                        Lang::Rust => tools.rust_target && has_gcc,
                    };
                    let expected = if target == host {
                        Strategy::Native
                    } else if cross_possible {
                        Strategy::Cross
                    } else if tools.handler {
                        Strategy::Emulate
                    } else {
                        Strategy::Unavailable
                    };
                    assert_eq!(it.strategy, expected, "{ctx}: {it:?}");
                    match it.strategy {
                        Strategy::Native | Strategy::Cross => {
                            assert!(it.fixes.is_empty(), "{ctx}: {it:?}")
                        }
                        Strategy::Emulate => {
                            assert!(!it.fixes.is_empty(), "{ctx}: a faster way must be named");
                            assert!(
                                it.fixes.iter().all(|f| f.enables == Strategy::Cross),
                                "{ctx}"
                            );
                        }
                        Strategy::Unavailable => {
                            let cmds: Vec<&str> =
                                it.fixes.iter().map(|f| f.command.as_str()).collect();
                            assert!(
                                cmds.contains(
                                    &format!("sudo rcross setup --platform {target}").as_str()
                                ),
                                "{ctx}: {cmds:?}"
                            );
                            if !tools.emulator {
                                assert!(
                                    cmds.contains(
                                        &format!("sudo rcross toolchain install {target}").as_str()
                                    ),
                                    "{ctx}: {cmds:?}"
                                );
                            }
                        }
                    }
                    if it.strategy != Strategy::Native && !cross_possible {
                        let fix_cmds: Vec<&str> =
                            it.fixes.iter().map(|f| f.command.as_str()).collect();
                        let want = match lang {
                            Lang::C => format!("sudo rcross toolchain install {target}"),
                            Lang::Go => "sudo apt-get install golang-go".into(),
                            Lang::Rust if !tools.rust_target => "rustup target add ".into(),
                            Lang::Rust if target == p("linux/arm/v6") => {
                                "sudo apt-get install gcc-arm-linux-gnueabi".into()
                            }
                            Lang::Rust => format!("sudo rcross toolchain install {target}"),
                        };
                        assert!(
                            fix_cmds.iter().any(|c| c.starts_with(&want)),
                            "{ctx}: {fix_cmds:?}"
                        );
                    }
                    assert!(!it.reason.is_empty());
                }
            }
        }
    }
    assert_eq!(seen.len(), 4, "every strategy occurs: {seen:?}");
}

#[test]
fn rust_plan_names_the_missing_target_and_its_fix() {
    let t = Tools {
        gcc: true,
        emulator: true,
        ..Default::default()
    };
    let f = facts_of(&fake(p("linux/amd64"), p("linux/arm64"), t));
    let it = &plan::plan(&f, &catalog(), &[p("linux/arm64")], Lang::Rust).unwrap()[0];
    assert_eq!(it.strategy, Strategy::Unavailable);
    assert_eq!(it.rust_target.as_deref(), Some("aarch64-unknown-linux-gnu"));
    assert_eq!(
        it.fixes[0].command,
        "rustup target add aarch64-unknown-linux-gnu"
    );
    assert!(
        it.reason
            .contains("aarch64-unknown-linux-gnu is not installed"),
        "{}",
        it.reason
    );
}

#[test]
fn a_host_that_runs_the_platform_natively_builds_natively_without_a_cross_compiler() {
    let mut h = fake(p("linux/amd64"), p("linux/386"), Tools::default());
    let prog = binfmt::selftest::program(&p("linux/386")).unwrap();
    h.probes.insert(
        (prog[4], u16::from_le_bytes([prog[18], prog[19]])),
        ProbeOutcome::Exited(binfmt::selftest::EXIT_CODE),
    );
    let f = facts_of(&h);
    assert!(f.native.contains(&p("linux/386")));
    let it = &plan::plan(&f, &catalog(), &[p("linux/386")], Lang::C).unwrap()[0];
    assert_eq!(it.strategy, Strategy::Native);
    assert_eq!(it.run, "natively");
    let ins = install::plan(&f, &catalog(), &[p("linux/386")]).unwrap();
    assert!(matches!(
        ins.items[0].emulator,
        ComponentState::NotNeeded(_)
    ));
}

// ---- install ----

fn lines(h: &FakeHost) -> Vec<String> {
    h.calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Inherit(l) => Some(l),
            _ => None,
        })
        .collect()
}

#[test]
fn install_missing_compiler_and_emulator_with_apt_get() {
    let h = fake(p("linux/amd64"), p("linux/arm64"), Tools::default());
    let f = facts_of(&h);
    let plan = install::plan(&f, &catalog(), &[p("linux/arm64"), p("linux/riscv64")]).unwrap();
    assert!(
        matches!(&plan.items[0].compiler, ComponentState::Install(w) if w.contains("gcc-aarch64-linux-gnu"))
    );
    assert!(matches!(
        &plan.items[0].emulator,
        ComponentState::Install(_)
    ));
    let shown: Vec<String> = plan.commands.iter().map(|c| c.display()).collect();
    assert_eq!(
        shown,
        vec![
            "apt-get update".to_string(),
            "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static gcc-riscv64-linux-gnu g++-riscv64-linux-gnu libc6-dev-riscv64-cross".to_string(),
        ]
    );
    install::apply(&h, &plan).unwrap();
    assert_eq!(lines(&h), shown);
}

#[test]
fn install_is_a_no_op_when_everything_is_there() {
    let t = Tools {
        gcc: true,
        emulator: true,
        ..Default::default()
    };
    let h = fake(p("linux/amd64"), p("linux/arm64"), t);
    let plan = install::plan(&facts_of(&h), &catalog(), &[p("linux/arm64")]).unwrap();
    assert!(plan.commands.is_empty());
    assert!(matches!(
        plan.items[0].compiler,
        ComponentState::AlreadyInstalled(_)
    ));
    assert!(matches!(
        plan.items[0].emulator,
        ComponentState::AlreadyInstalled(_)
    ));
    install::apply(&h, &plan).unwrap();
    assert!(lines(&h).is_empty());
}

#[test]
fn package_manager_failures_are_passed_on_with_the_command() {
    let mut h = fake(p("linux/amd64"), p("linux/arm64"), Tools::default());
    h.on_command(
        "DEBIAN_FRONTEND=noninteractive apt-get install",
        ProbeOutcome::Exited(100),
        "",
        "",
    );
    let plan = install::plan(&facts_of(&h), &catalog(), &[p("linux/arm64")]).unwrap();
    let e = install::apply(&h, &plan).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, InstallError::Failed { .. }));
    assert!(
        msg.contains("apt-get install") && msg.contains("exit status 100"),
        "{msg}"
    );
}

#[test]
fn arm_v6_installs_zig_from_pypi_with_pip_first() {
    let t = Tools {
        emulator: true,
        ..Default::default()
    };
    let h = fake(p("linux/amd64"), p("linux/arm/v6"), t);
    let plan = install::plan(&facts_of(&h), &catalog(), &[p("linux/arm/v6")]).unwrap();
    let shown: Vec<String> = plan.commands.iter().map(|c| c.display()).collect();
    assert_eq!(
        shown,
        vec![
            "apt-get update",
            "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-pip",
            "PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install ziglang",
        ]
    );
}

#[test]
fn fedora_uses_dnf_and_unknown_systems_get_a_list() {
    let mut h = fake(p("linux/amd64"), p("linux/arm64"), Tools::default());
    h.add_file("/etc/os-release", "ID=fedora\n");
    h.programs.insert("dnf".into(), "/usr/bin/dnf".into());
    let plan = install::plan(&facts_of(&h), &catalog(), &[p("linux/arm64")]).unwrap();
    assert_eq!(
        plan.commands[0].display(),
        "dnf install -y gcc-aarch64-linux-gnu gcc-c++-aarch64-linux-gnu qemu-user-static"
    );
    h.add_file("/etc/os-release", "ID=alpine\n");
    let e = install::plan(&facts_of(&h), &catalog(), &[p("linux/arm64")]).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("gcc-aarch64-linux-gnu") && msg.contains("qemu-user-static"),
        "{msg}"
    );
}

// ---- rendering ----

const HOSTILE: &[&str] = &[
    "it's",
    "a \"quoted\" word",
    "$HOME $(touch /tmp/rcross-pwned) `touch /tmp/rcross-pwned`",
    "new\nline",
    "back\\slash\\",
    "semi;colon & amp | pipe > redir",
    "# hash",
    "",
    "  leading blanks",
    "tab\there",
    "ünïcødé",
];

fn gcc_input_facts() -> (Catalog, Facts) {
    let t = Tools {
        gcc: true,
        emulator: true,
        ..Default::default()
    };
    (
        catalog(),
        facts_of(&fake(p("linux/amd64"), p("linux/arm64"), t)),
    )
}

#[test]
fn sh_output_survives_eval_of_hostile_values() {
    let vars: Vec<(String, String)> = HOSTILE
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("V{i}"), v.to_string()))
        .collect();
    let text = render::render_env(&vars, EnvFormat::Sh).unwrap();
    let mut script = format!("{text}\n");
    for (k, _) in &vars {
        script.push_str(&format!("printf '%s\\0' \"${k}\"\n"));
    }
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(out.status.success());
    let got: Vec<String> = out
        .stdout
        .split(|b| *b == 0)
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
        .collect();
    for (i, v) in HOSTILE.iter().enumerate() {
        assert_eq!(got[i], *v);
    }
    assert!(!std::path::Path::new("/tmp/rcross-pwned").exists());
}

#[test]
fn make_and_github_formats() {
    let vars = vec![
        ("A".to_string(), "x $y #z".to_string()),
        ("B".to_string(), "two\nlines".to_string()),
    ];
    let e = render::render_env(&vars, EnvFormat::Make).unwrap_err();
    assert!(e.to_string().contains("B="), "{e}");
    let m = render::render_env(&vars[..1], EnvFormat::Make).unwrap();
    assert_eq!(m, "export A := x $$y \\#z\n");
    let g = render::render_env(
        &[("B".to_string(), "RCROSS_EOF\nx".to_string())],
        EnvFormat::Github,
    )
    .unwrap();
    assert_eq!(g, "B<<RCROSS_EOF_\nRCROSS_EOF\nx\nRCROSS_EOF_\n");
    let j = render::render_env(&vars, EnvFormat::Json).unwrap();
    let back: std::collections::BTreeMap<String, String> = serde_json::from_str(&j).unwrap();
    assert_eq!(back["B"], "two\nlines");
}

#[test]
fn env_has_what_build_systems_need() {
    let (cat, f) = gcc_input_facts();
    let a = p("linux/arm64");
    let input = EnvInput {
        spec: cat.get(&a).unwrap(),
        toolchain: f.target(&a).unwrap().toolchains.first(),
        runner: run::runner(std::path::Path::new("/bin/rcross"), &a),
        sysroot: None,
        linker_wrapper: None,
    };
    let vars: std::collections::BTreeMap<String, String> =
        render::env_vars(&input).into_iter().collect();
    for (k, v) in [
        ("CC", "/usr/bin/aarch64-linux-gnu-gcc"),
        ("CXX", "/usr/bin/aarch64-linux-gnu-g++"),
        ("AR", "/usr/bin/aarch64-linux-gnu-ar"),
        (
            "CC_aarch64_unknown_linux_gnu",
            "/usr/bin/aarch64-linux-gnu-gcc",
        ),
        ("CARGO_BUILD_TARGET", "aarch64-unknown-linux-gnu"),
        (
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
            "/usr/bin/aarch64-linux-gnu-gcc",
        ),
        (
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER",
            "/bin/rcross run --platform linux/arm64 --",
        ),
        ("GOARCH", "arm64"),
        ("CGO_ENABLED", "0"),
        ("QEMU_LD_PREFIX", "/usr/aarch64-linux-gnu"),
        (
            "PKG_CONFIG_LIBDIR",
            "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig",
        ),
        ("RCROSS_PLATFORM", "linux/arm64"),
    ] {
        assert_eq!(vars.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert!(!vars.contains_key("GOARM"));
    assert!(
        !vars.contains_key("CFLAGS"),
        "no empty CFLAGS to wipe the user's"
    );
}

#[test]
fn toolchain_files_quote_hostile_paths() {
    let (cat, f) = gcc_input_facts();
    let a = p("linux/arm64");
    let hostile = "/x/\"q\" $ {HOME} ;semi\\ 'sq'";
    let input = EnvInput {
        spec: cat.get(&a).unwrap(),
        toolchain: f.target(&a).unwrap().toolchains.first(),
        runner: run::runner(std::path::Path::new(hostile), &a),
        sysroot: Some(hostile.into()),
        linker_wrapper: None,
    };
    let cmake = render::render_file(&input, FileFormat::Cmake).unwrap();
    assert!(cmake.contains(
        "set(CMAKE_CROSSCOMPILING_EMULATOR \"/x/\\\"q\\\" \\$ {HOME} \\;semi\\\\ 'sq'\" \"run\" \"--platform\" \"linux/arm64\" \"--\")"
    ), "{cmake}");
    assert!(cmake.contains("set(CMAKE_SYSTEM_PROCESSOR \"aarch64\")"));
    let meson = render::render_file(&input, FileFormat::Meson).unwrap();
    assert!(
        meson.contains("exe_wrapper = ['/x/\"q\" $ {HOME} ;semi\\\\ \\'sq\\'', 'run'"),
        "{meson}"
    );
    assert!(meson.contains("cpu_family = 'aarch64'"));
    let cargo = render::render_file(&input, FileFormat::Cargo).unwrap();
    let parsed: toml::Table = toml::from_str(&cargo).unwrap();
    let t = &parsed["target"]["aarch64-unknown-linux-gnu"];
    assert_eq!(t["runner"][0].as_str(), Some(hostile));
    assert_eq!(t["linker"].as_str(), Some("/usr/bin/aarch64-linux-gnu-gcc"));
    assert_eq!(
        parsed["build"]["target"].as_str(),
        Some("aarch64-unknown-linux-gnu")
    );
}

#[test]
fn no_compiler_no_cmake_file() {
    let f = facts_of(&fake(
        p("linux/amd64"),
        p("linux/riscv64"),
        Tools::default(),
    ));
    let r = p("linux/riscv64");
    let cat = catalog();
    let input = EnvInput {
        spec: cat.get(&r).unwrap(),
        toolchain: f.target(&r).unwrap().toolchains.first(),
        runner: vec![],
        sysroot: None,
        linker_wrapper: None,
    };
    let e = render::render_file(&input, FileFormat::Cmake)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sudo rcross toolchain install linux/riscv64"),
        "{e}"
    );
}

// ---- run ----

#[test]
fn run_uses_the_variant_cpu_and_no_sysroot_for_static_programs() {
    let t = Tools {
        emulator: true,
        ..Default::default()
    };
    let h = fake(p("linux/amd64"), p("linux/arm/v6"), t);
    h.add_file(
        "/w/prog",
        binfmt::selftest::program(&p("linux/arm/v6")).unwrap(),
    );
    let req = RunRequest {
        platform: p("linux/arm/v6"),
        program: "/w/prog".into(),
        args: vec!["a b".into(), "--json".into()],
        sysroot: None,
    };
    let c = run::command(&h, &catalog(), &handlers(), &req).unwrap();
    assert_eq!(
        c.display(),
        "/usr/bin/qemu-arm-static -cpu arm1176 /w/prog 'a b' --json"
    );
    let req = RunRequest {
        platform: p("linux/arm64"),
        ..req
    };
    let e = run::command(&h, &catalog(), &handlers(), &req).unwrap_err();
    assert!(matches!(e, RunError::NoEmulator { .. }));
    assert!(
        e.to_string()
            .contains("sudo rcross toolchain install linux/arm64"),
        "{e}"
    );
}

#[test]
fn run_on_the_host_platform_runs_the_program_itself() {
    let h = fake(p("linux/amd64"), p("linux/arm64"), Tools::default());
    h.add_file("/w/prog", "");
    let req = RunRequest {
        platform: p("linux/amd64"),
        program: "/w/prog".into(),
        args: vec![],
        sysroot: None,
    };
    assert_eq!(
        run::command(&h, &catalog(), &handlers(), &req)
            .unwrap()
            .display(),
        "/w/prog"
    );
}

#[test]
fn exit_statuses_like_a_shell() {
    assert_eq!(run::shell_status(&ProbeOutcome::Exited(0)), 0);
    assert_eq!(run::shell_status(&ProbeOutcome::Exited(7)), 7);
    assert_eq!(run::shell_status(&ProbeOutcome::Exited(300)), 44);
    assert_eq!(run::shell_status(&ProbeOutcome::Signaled(15)), 143);
    assert_eq!(run::shell_status(&ProbeOutcome::Signaled(4)), 132);
    assert_eq!(run::shell_status(&ProbeOutcome::ExecFormatError), 126);
}

#[test]
fn interpreter_of_real_and_broken_programs() {
    let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let i = run::interpreter(&me[..me.len().min(64 * 1024)]).unwrap();
    assert!(i.starts_with('/') && i.contains("ld-linux"), "{i}");
    assert_eq!(run::interpreter(b""), None);
    assert_eq!(
        run::interpreter(&binfmt::selftest::program(&p("linux/arm64")).unwrap()),
        None
    );
    let mut bad = me[..64].to_vec();
    bad[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(run::interpreter(&bad), None);
}

#[test]
fn zig_gets_a_linker_wrapper_for_cargo_written_once() {
    let mut h = fake(p("linux/amd64"), p("linux/arm/v6"), Tools::default());
    h.programs.insert("zig".into(), "/opt/my zig/zig".into());
    let f = facts_of(&h);
    let t = f.target(&p("linux/arm/v6")).unwrap().toolchains[0].clone();
    assert_eq!(t.kind, CompilerKind::Zig);
    let (name, script) = linker::wrapper_script(&t).unwrap();
    assert_eq!(name, "arm-unknown-linux-musleabihf-zig-linker");
    assert!(
        script.ends_with(
            "exec '/opt/my zig/zig' cc -target arm-linux-musleabihf -mcpu=arm1176jzf_s \"$@\"\n"
        ),
        "{script}"
    );
    let dir = std::path::Path::new("/home/u/.cache/rcross/linkers");
    let path = linker::ensure(&h, &t, dir).unwrap().unwrap();
    assert_eq!(path, dir.join(&name));
    linker::ensure(&h, &t, dir).unwrap();
    let writes = h
        .changes()
        .into_iter()
        .filter(|c| matches!(c, Call::WriteExecutable(..)))
        .count();
    assert_eq!(writes, 1, "an identical wrapper is not rewritten");
    // gcc needs no wrapper.
    let g = fake(
        p("linux/amd64"),
        p("linux/arm64"),
        Tools {
            gcc: true,
            ..Default::default()
        },
    );
    let gt = facts_of(&g).target(&p("linux/arm64")).unwrap().toolchains[0].clone();
    assert!(linker::wrapper_script(&gt).is_none());
    assert_eq!(
        linker::cache_dir(None, Some(std::path::Path::new("/home/u"))),
        Some(dir.to_path_buf())
    );
    assert_eq!(
        linker::cache_dir(Some(std::path::Path::new("relative")), None),
        None
    );
    // The wrapper is what cargo gets.
    let cat = catalog();
    let input = EnvInput {
        spec: cat.get(&p("linux/arm/v6")).unwrap(),
        toolchain: Some(&t),
        runner: vec!["r".into()],
        sysroot: None,
        linker_wrapper: Some(path.display().to_string()),
    };
    let vars: std::collections::BTreeMap<String, String> =
        render::env_vars(&input).into_iter().collect();
    assert_eq!(
        vars["CARGO_TARGET_ARM_UNKNOWN_LINUX_MUSLEABIHF_LINKER"],
        path.display().to_string()
    );
}
