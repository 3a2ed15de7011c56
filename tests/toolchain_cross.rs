//! Cross builds with real compilers from Debian (installed by tests/install-deps.sh): the
//! examples built through `rcross env` and the generated toolchain files, run through
//! `rcross run`, and the plan, install and env commands against this machine.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const RCROSS: &str = env!("CARGO_BIN_EXE_rcross");
const PLATFORMS: &[&str] = &[
    "linux/arm64",
    "linux/arm/v7",
    "linux/arm/v6",
    "linux/riscv64",
];

mod prereq;

use prereq::require;

fn have(tool: &str) -> bool {
    which::which(tool).is_ok()
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// rcross with no user catalog directories (so /etc/rcross does not change the outcome).
fn rcross(args: &[&str]) -> Command {
    let mut c = Command::new(RCROSS);
    c.args(args)
        .env("RCROSS_TOOLCHAIN_DIR", "/nonexistent/rcross-toolchains")
        .env("RCROSS_BINFMT_DIR", "/nonexistent/rcross-binfmt");
    c
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", show(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn bash(script: &str, dir: &Path) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .current_dir(dir)
        .env("RCROSS", RCROSS)
        .env("RCROSS_TOOLCHAIN_DIR", "/nonexistent/rcross-toolchains")
        .env("RCROSS_BINFMT_DIR", "/nonexistent/rcross-binfmt")
        .output()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// What `rcross plan` says for C on these platforms.
fn c_plan_is_cross(platforms: &[&str]) -> bool {
    let o = rcross(&[
        "plan",
        "--platform",
        &platforms.join(","),
        "--lang",
        "c",
        "--json",
    ])
    .output()
    .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    let all = v
        .as_array()
        .is_some_and(|a| a.iter().all(|i| i["strategy"] == "cross"));
    require(
        all,
        &format!(
            "cross C toolchains and QEMU for {platforms:?} (tests/install-deps.sh); plan says: {}",
            show(&o)
        ),
    )
}

/// What each example prints for a platform, as `uname -m` under the emulated CPU.
fn machine(p: &str) -> &'static str {
    match p {
        "linux/arm64" => "aarch64",
        "linux/arm/v7" => "armv7l",
        "linux/arm/v6" => "armv6l",
        "linux/riscv64" => "riscv64",
        _ => unreachable!(),
    }
}

fn built_for(p: &str) -> &'static str {
    match p {
        "linux/arm64" => "aarch64",
        "linux/arm/v7" => "armv7",
        "linux/arm/v6" => "armv6",
        "linux/riscv64" => "riscv64",
        _ => unreachable!(),
    }
}

fn slug(p: &str) -> String {
    p.replace('/', "-")
}

#[test]
fn c_example_builds_with_env_and_runs_with_rcross_run() {
    if !c_plan_is_cross(PLATFORMS) || !require(have("make"), "make") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    copy_dir(&examples().join("c"), &t.path().join("c"));
    for p in PLATFORMS {
        let out = format!("hello-{}", slug(p));
        let o = bash(
            &format!(
                "eval \"$(\"$RCROSS\" env {p})\"\nmake -s -C c OUT={out}\n\"$RCROSS\" run --platform {p} -- c/{out}"
            ),
            t.path(),
        );
        let text = ok(o);
        assert_eq!(
            text.trim(),
            format!(
                "hello from C, built for {}, running on {}",
                built_for(p),
                machine(p)
            )
        );
    }
}

fn readelf_arch(path: &Path) -> Option<String> {
    let o = Command::new("readelf").arg("-A").arg(path).output().ok()?;
    String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
        l.trim()
            .strip_prefix("Tag_CPU_arch:")
            .map(|s| s.trim().to_string())
    })
}

#[test]
fn arm_v6_builds_hold_no_armv7_code_and_armv7_code_faults_on_the_v6_cpu() {
    if !c_plan_is_cross(&["linux/arm/v6", "linux/arm/v7"])
        || !require(
            have("readelf") && have("make"),
            "readelf (binutils) and make",
        )
    {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    copy_dir(&examples().join("c"), &t.path().join("c"));
    for (p, out) in [("linux/arm/v6", "v6"), ("linux/arm/v7", "v7")] {
        ok(bash(
            &format!("eval \"$(\"$RCROSS\" env {p})\"\nmake -s -C c OUT={out}"),
            t.path(),
        ));
    }
    let v6 = t.path().join("c/v6");
    assert_eq!(readelf_arch(&v6).as_deref(), Some("v6"), "{}", v6.display());
    // ARMv7 code (Debian's armhf gcc) on the Pi Zero/1 CPU dies of SIGILL, reported like a
    // shell does (128 + 4); qemu's default CPU would have run it.
    let v7 = t.path().join("c/v7");
    assert_eq!(readelf_arch(&v7).as_deref(), Some("v7"));
    let o = rcross(&["run", "--platform", "linux/arm/v6", "--"])
        .arg(&v7)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(132), "{}", show(&o));
    let o = rcross(&["run", "--platform", "linux/arm/v7", "--"])
        .arg(&v6)
        .output()
        .unwrap();
    assert!(ok(o).contains("built for armv6, running on armv7l"));
}

#[test]
fn cmake_example_builds_with_the_toolchain_file_and_ctest_runs_under_the_emulator() {
    if !c_plan_is_cross(PLATFORMS) || !require(have("cmake") && have("ctest"), "cmake") {
        return;
    }
    let generator = if have("ninja") {
        "Ninja"
    } else {
        "Unix Makefiles"
    };
    let t = tempfile::tempdir().unwrap();
    for p in PLATFORMS {
        let s = slug(p);
        let file = t.path().join(format!("{s}.cmake"));
        std::fs::write(
            &file,
            ok(rcross(&["toolchain", "file", p, "--format", "cmake"])
                .output()
                .unwrap()),
        )
        .unwrap();
        let build = t.path().join(format!("build-{s}"));
        let o = bash(
            &format!(
                "cmake -S {src} -B {b} -G '{generator}' -DCMAKE_TOOLCHAIN_FILE={file} >/dev/null\ncmake --build {b} >/dev/null\nctest --test-dir {b} --output-on-failure",
                src = examples().join("cmake").display(),
                b = build.display(),
                file = file.display()
            ),
            t.path(),
        );
        let text = ok(o);
        assert!(text.contains("100% tests passed"), "{text}");
        let o = rcross(&["run", "--platform", p, "--"])
            .arg(build.join("calc"))
            .args(["40", "2"])
            .output()
            .unwrap();
        assert_eq!(ok(o), "40 + 2 = 42\n");
        if *p == "linux/arm/v6" {
            assert_eq!(readelf_arch(&build.join("calc")).as_deref(), Some("v6"));
        }
    }
}

#[test]
fn go_example_cross_builds_with_goarch_and_goarm() {
    if !require(have("go"), "go (golang-go)") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    copy_dir(&examples().join("go"), &t.path().join("go"));
    for p in PLATFORMS {
        let out = format!("hello-{}", slug(p));
        let o = bash(
            &format!(
                "eval \"$(\"$RCROSS\" env {p} 2>/dev/null)\"\ncd go && go build -o {out} .\n\"$RCROSS\" run --platform {p} -- ./{out}"
            ),
            t.path(),
        );
        let goarch = if p.starts_with("linux/arm/") {
            "arm"
        } else {
            &p[6..]
        };
        assert_eq!(ok(o), format!("hello from Go, built for linux/{goarch}\n"));
        if *p == "linux/arm/v6" && require(have("readelf"), "readelf (binutils)") {
            let a = readelf_arch(&t.path().join("go").join(&out));
            assert_ne!(
                a.as_deref(),
                Some("v7"),
                "GOARM=6 must not produce ARMv7 code"
            );
        }
    }
}

/// The real rustup, seen through a wrapper that leaves aarch64-unknown-linux-gnu out of the
/// installed targets: the test then runs on a machine that has that target too, instead of
/// passing without testing anything. `PATH` for rcross, with the wrapper first.
fn rustup_without_aarch64(dir: &Path) -> Option<std::ffi::OsString> {
    use std::os::unix::fs::PermissionsExt;
    let real = which::which("rustup").ok();
    if !require(real.is_some(), "rustup (https://rustup.rs)") {
        return None;
    }
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let wrapper = bin.join("rustup");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nset -e\nout=$('{}' \"$@\")\nprintf '%s\\n' \"$out\" | grep -vx aarch64-unknown-linux-gnu || true\n",
            real.unwrap().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut path = std::ffi::OsString::from(&bin);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    Some(path)
}

#[test]
fn rust_plan_reports_the_missing_target_with_its_fix() {
    let t = tempfile::tempdir().unwrap();
    let Some(path) = rustup_without_aarch64(t.path()) else {
        return;
    };
    let o = rcross(&[
        "plan",
        "--platform",
        "linux/arm64",
        "--lang",
        "rust",
        "--json",
    ])
    .env("PATH", &path)
    .output()
    .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let it = &v[0];
    assert_ne!(it["strategy"], "cross", "{it}");
    assert_eq!(it["rust_target"], "aarch64-unknown-linux-gnu");
    let fixes: Vec<&str> = it["fixes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["command"].as_str())
        .collect();
    assert_eq!(
        fixes[0], "rustup target add aarch64-unknown-linux-gnu",
        "{it}"
    );
    // --lang auto finds the Rust example's Cargo.toml.
    let o = rcross(&["plan", "--platform", "linux/arm64"])
        .current_dir(examples().join("rust"))
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("rustup target add aarch64-unknown-linux-gnu"),
        "{}",
        show(&o)
    );
    // What cargo would be given once the target is there.
    let cargo = ok(
        rcross(&["toolchain", "file", "linux/arm64", "--format", "cargo"])
            .output()
            .unwrap(),
    );
    let t: toml::Table = toml::from_str(&cargo).unwrap();
    assert_eq!(
        t["build"]["target"].as_str(),
        Some("aarch64-unknown-linux-gnu")
    );
    let target = &t["target"]["aarch64-unknown-linux-gnu"];
    assert_eq!(target["runner"][0].as_str(), Some(RCROSS));
    assert_eq!(target["runner"][1].as_str(), Some("run"));
}

/// A static aarch64 helper: `exit N`, `kill SIG`, `wait` (prints "ready", sleeps until a
/// signal), otherwise upper-cases stdin to stdout and reports argc on stderr.
const HELPER: &str = r#"
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc > 2 && !strcmp(argv[1], "exit")) return atoi(argv[2]);
    if (argc > 2 && !strcmp(argv[1], "kill")) { raise(atoi(argv[2])); return 0; }
    if (argc > 1 && !strcmp(argv[1], "wait")) { puts("ready"); fflush(stdout); for (;;) pause(); }
    int c;
    while ((c = getchar()) != EOF) putchar(toupper(c));
    fprintf(stderr, "argc=%d last=%s\n", argc, argv[argc - 1]);
    return 0;
}
"#;

#[test]
fn run_passes_stdio_exit_codes_and_signals_through() {
    if !c_plan_is_cross(&["linux/arm64"]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("helper.c");
    std::fs::write(&src, HELPER).unwrap();
    let bin = t.path().join("helper");
    ok(Command::new("aarch64-linux-gnu-gcc")
        .arg("-static")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .output()
        .unwrap());
    let run = |args: &[&str]| {
        let mut c = rcross(&["run", "--platform", "linux/arm64", "--"]);
        c.arg(&bin).args(args);
        c
    };
    // stdin → stdout, stderr, arguments that look like options.
    let mut child = run(&["--json", "a b"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "HELLO\n",
        "{}",
        show(&o)
    );
    assert_eq!(String::from_utf8_lossy(&o.stderr), "argc=3 last=a b\n");
    assert_eq!(o.status.code(), Some(0));
    // Exit codes.
    assert_eq!(run(&["exit", "7"]).output().unwrap().status.code(), Some(7));
    // Death by a signal: 128 + N, like a shell.
    assert_eq!(
        run(&["kill", "15"]).output().unwrap().status.code(),
        Some(143)
    );
    assert_eq!(
        run(&["kill", "10"]).output().unwrap().status.code(),
        Some(138)
    );
    // A signal sent to rcross reaches the program.
    let mut child = run(&["wait"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(143), "{st:?}");
}

#[test]
fn env_sh_output_is_eval_safe_with_hostile_values() {
    let t = tempfile::tempdir().unwrap();
    let canary = t.path().join("pwned");
    let hostile = format!(
        "/sys root/'q' \"d\" $HOME `touch {c}` $(touch {c}) ;& |\nline2\\",
        c = canary.display()
    );
    // Through --sysroot (QEMU_LD_PREFIX) and through a user toolchain file's flags.
    let dir = t.path().join("tc");
    std::fs::create_dir_all(&dir).unwrap();
    let flag = "-DMSG=\"it's $(touch PWNED) `x`\"";
    std::fs::write(
        dir.join("arm64.toml"),
        format!(
            "platform = \"linux/arm64\"\nmeson_cpu_family = \"aarch64\"\ngoarch = \"arm64\"\nrust_targets = [\"aarch64-unknown-linux-gnu\"]\n[[compilers]]\nkind = \"gcc\"\ntriple = \"aarch64-linux-gnu\"\nsysroot = \"/usr/aarch64-linux-gnu\"\ncflags = [{}]\n",
            toml::Value::String(flag.to_string())
        ),
    )
    .unwrap();
    let env = Command::new(RCROSS)
        .args([
            "env",
            "linux/arm64",
            "--format",
            "sh",
            "--sysroot",
            &hostile,
        ])
        .env("RCROSS_TOOLCHAIN_DIR", &dir)
        .output()
        .unwrap();
    let text = ok(env);
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{text}\nprintf '%s\\0%s\\0' \"$QEMU_LD_PREFIX\" \"${{CFLAGS-unset}}\""
        ))
        .current_dir(t.path())
        .output()
        .unwrap();
    let out = ok(o);
    let parts: Vec<&str> = out.split('\0').collect();
    assert_eq!(parts[0], hostile);
    if require(
        have("aarch64-linux-gnu-gcc"),
        "aarch64-linux-gnu-gcc (gcc-aarch64-linux-gnu)",
    ) {
        assert_eq!(parts[1], flag);
    }
    assert!(!canary.exists(), "eval ran a command substitution");
    assert!(!t.path().join("PWNED").exists());
    // JSON and GitHub carry the same value; make refuses what it cannot express.
    let j: Value = serde_json::from_str(&ok(rcross(&[
        "env",
        "linux/arm64",
        "--format",
        "json",
        "--sysroot",
        &hostile,
    ])
    .output()
    .unwrap()))
    .unwrap();
    assert_eq!(j["QEMU_LD_PREFIX"], hostile.as_str());
    let g = ok(rcross(&[
        "env",
        "linux/arm64",
        "--format",
        "github",
        "--sysroot",
        &hostile,
    ])
    .output()
    .unwrap());
    assert!(
        g.contains(&format!(
            "QEMU_LD_PREFIX<<RCROSS_EOF\n{hostile}\nRCROSS_EOF\n"
        )),
        "{g}"
    );
    let m = rcross(&[
        "env",
        "linux/arm64",
        "--format",
        "make",
        "--sysroot",
        &hostile,
    ])
    .output()
    .unwrap();
    assert_eq!(m.status.code(), Some(2), "{}", show(&m));
    assert!(String::from_utf8_lossy(&m.stderr).contains("QEMU_LD_PREFIX"));
}

#[test]
fn make_format_is_includable() {
    if !require(have("make"), "make") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let env = ok(rcross(&[
        "env",
        "linux/arm/v7",
        "--format",
        "make",
        "--sysroot",
        "/a $b #c",
    ])
    .output()
    .unwrap());
    std::fs::write(t.path().join("env.mk"), env).unwrap();
    std::fs::write(
        t.path().join("Makefile"),
        "include env.mk\nall:\n\t@printf '%s|%s|%s\\n' \"$$QEMU_LD_PREFIX\" '$(GOARCH)' \"$$GOARM\"\n",
    )
    .unwrap();
    let o = Command::new("make")
        .arg("-s")
        .current_dir(t.path())
        .output()
        .unwrap();
    assert_eq!(ok(o), "/a $b #c|arm|7\n");
}

#[test]
fn install_reports_already_installed_and_dry_run_prints_commands() {
    if !c_plan_is_cross(&["linux/arm64", "linux/arm/v7", "linux/riscv64"]) {
        return;
    }
    let o = rcross(&[
        "toolchain",
        "install",
        "linux/arm64",
        "linux/arm/v7",
        "linux/riscv64",
        "--dry-run",
    ])
    .output()
    .unwrap();
    let text = ok(o);
    assert!(text.contains("already installed"), "{text}");
    assert!(text.contains("nothing to install"), "{text}");
    // The real thing is a no-op too (no package manager runs; works without root).
    let o = rcross(&["toolchain", "install", "linux/arm64,linux/riscv64"])
        .output()
        .unwrap();
    assert!(ok(o).contains("nothing to install"));

    // A platform whose compiler is missing: the commands name the packages.
    let t = tempfile::tempdir().unwrap();
    std::fs::write(
        t.path().join("loong.toml"),
        "platform = \"linux/loong64\"\nmeson_cpu_family = \"loongarch64\"\ngoarch = \"loong64\"\nrust_targets = [\"loongarch64-unknown-linux-gnu\"]\n[[compilers]]\nkind = \"gcc\"\ntriple = \"loongarch64-nonexistent-linux-gnu\"\nsysroot = \"/usr/loongarch64-nonexistent-linux-gnu\"\ndebian = [\"gcc-loongarch64-nonexistent-linux-gnu\"]\n",
    )
    .unwrap();
    let o = Command::new(RCROSS)
        .args(["toolchain", "install", "linux/loong64", "--dry-run"])
        .env("RCROSS_TOOLCHAIN_DIR", t.path())
        .output()
        .unwrap();
    let text = ok(o);
    if Path::new("/usr/bin/apt-get").exists() {
        assert!(
            text.contains(
                "apt-get install -y --no-install-recommends gcc-loongarch64-nonexistent-linux-gnu"
            ),
            "{text}"
        );
    }
    // …and `plan --json` names what to install.
    let o = Command::new(RCROSS)
        .args([
            "plan",
            "--platform",
            "linux/loong64",
            "--lang",
            "c",
            "--json",
        ])
        .env("RCROSS_TOOLCHAIN_DIR", t.path())
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_ne!(v[0]["strategy"], "cross");
    assert_eq!(
        v[0]["fixes"][0]["command"],
        "sudo rcross toolchain install linux/loong64"
    );
}

#[test]
fn toolchain_list_json_describes_every_platform() {
    let o = rcross(&["toolchain", "list", "--json"]).output().unwrap();
    let v: Value = serde_json::from_str(&ok(o)).unwrap();
    let ps = v["platforms"].as_array().unwrap();
    assert!(ps.len() >= 12);
    let host = v["host"].as_str().unwrap();
    let me = ps.iter().find(|p| p["platform"] == host).unwrap();
    assert_eq!(me["native"], true);
    for p in ps {
        for k in [
            "toolchains",
            "rust_targets_installed",
            "go",
            "emulator",
            "handler",
        ] {
            assert!(p.get(k).is_some(), "{k} missing in {p}");
        }
    }
}

#[test]
fn run_without_an_emulator_or_program_says_what_to_do() {
    let o = rcross(&[
        "run",
        "--platform",
        "linux/arm64",
        "--",
        "/nonexistent/prog",
    ])
    .output()
    .unwrap();
    assert_ne!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("/nonexistent/prog") || err.contains("emulator"),
        "{err}"
    );
    let o = rcross(&["run", "--platform", "linux/nope", "--", "x"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

/// The cargo linker wrapper rcross writes for zig links a program the way rustc calls a linker
/// (objects and flags as arguments, `-lgcc_s` among them), and the result runs as ARMv6.
#[test]
fn zig_linker_wrapper_links_for_arm_v6() {
    let t = tempfile::tempdir().unwrap();
    let env = Command::new(RCROSS)
        .args(["env", "linux/arm/v6", "--format", "json"])
        .env("RCROSS_TOOLCHAIN_DIR", "/nonexistent/rcross-toolchains")
        .env("XDG_CACHE_HOME", t.path())
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(&ok(env)).unwrap_or(Value::Null);
    let Some(linker) = v["CARGO_TARGET_ARM_UNKNOWN_LINUX_MUSLEABIHF_LINKER"].as_str() else {
        require(false, "zig (pip install ziglang) for linux/arm/v6");
        return;
    };
    assert!(
        linker.starts_with(&t.path().display().to_string()),
        "{linker}"
    );
    let cc = v["CC"].as_str().unwrap();
    let o = bash(
        &format!(
            "{cc} -c -o hello.o {src}\n'{linker}' -o 'hello out' hello.o -lgcc_s\n\"$RCROSS\" run --platform linux/arm/v6 -- './hello out'",
            src = examples().join("c/hello.c").display()
        ),
        t.path(),
    );
    assert_eq!(ok(o), "hello from C, built for armv6, running on armv6l\n");
    assert_eq!(
        readelf_arch(&t.path().join("hello out")).as_deref(),
        Some("v6")
    );
}
