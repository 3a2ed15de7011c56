//! Helpers for binary-level tests: compile fixtures with real (cross) compilers, run rcross.
//!
//! A missing compiler is a missing prerequisite ([`prereq`]: a failure under tests/run.sh and CI).

#![allow(dead_code)]

use crate::prereq;
pub use prereq::missing;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const HELLO_C: &str = r#"
#include <stdio.h>
#include <math.h>
int main(int argc, char **argv) { printf("%f\n", sqrt((double)argc)); return 0; }
"#;

/// A C compiler for fixtures: program and leading arguments.
#[derive(Clone, Copy)]
pub struct Compiler {
    pub program: &'static str,
    pub args: &'static [&'static str],
    /// What to install when it is missing.
    pub install: &'static str,
}

pub const AARCH64: Compiler = Compiler {
    program: "aarch64-linux-gnu-gcc",
    args: &[],
    install: "apt-get install gcc-aarch64-linux-gnu",
};
pub const ARMHF: Compiler = Compiler {
    program: "arm-linux-gnueabihf-gcc",
    args: &[],
    install: "apt-get install gcc-arm-linux-gnueabihf",
};
pub const ARMEL: Compiler = Compiler {
    program: "arm-linux-gnueabi-gcc",
    args: &[],
    install: "apt-get install gcc-arm-linux-gnueabi",
};
pub const RISCV64: Compiler = Compiler {
    program: "riscv64-linux-gnu-gcc",
    args: &[],
    install: "apt-get install gcc-riscv64-linux-gnu",
};
pub const I686: Compiler = Compiler {
    program: "i686-linux-gnu-gcc",
    args: &[],
    install: "apt-get install gcc-i686-linux-gnu",
};
pub const PPC64LE: Compiler = Compiler {
    program: "powerpc64le-linux-gnu-gcc",
    args: &[],
    install: "apt-get install gcc-powerpc64le-linux-gnu",
};
pub const S390X: Compiler = Compiler {
    program: "s390x-linux-gnu-gcc",
    args: &[],
    install: "apt-get install gcc-s390x-linux-gnu",
};
pub const MIPS64EL: Compiler = Compiler {
    program: "mips64el-linux-gnuabi64-gcc",
    args: &[],
    install: "apt-get install gcc-mips64el-linux-gnuabi64",
};
pub const HOST_GCC: Compiler = Compiler {
    program: "gcc",
    args: &[],
    install: "apt-get install gcc",
};
pub const MUSL: Compiler = Compiler {
    program: "musl-gcc",
    args: &[],
    install: "apt-get install musl-tools",
};
/// zig's clang for true ARMv6 (ARM1176, Raspberry Pi Zero/1) hard-float code.
pub const ZIG_ARMV6: Compiler = Compiler {
    program: "python3",
    args: &[
        "-m",
        "ziglang",
        "cc",
        "-target",
        "arm-linux-musleabihf",
        "-mcpu=arm1176jzf_s",
    ],
    install: "pip install ziglang",
};

fn available(c: &Compiler) -> bool {
    let mut cmd = Command::new(c.program);
    cmd.args(c.args);
    cmd.arg("--version");
    cmd.output().is_ok_and(|o| o.status.success())
}

/// Compile `HELLO_C` (or `source`) with `c` and `extra` flags into `dir/name`. `None` when the
/// compiler is missing outside strict mode ([`prereq`]).
pub fn compile(c: Compiler, extra: &[&str], dir: &Path, name: &str) -> Option<PathBuf> {
    compile_source(c, HELLO_C, extra, dir, name)
}

pub fn compile_source(
    c: Compiler,
    source: &str,
    extra: &[&str],
    dir: &Path,
    name: &str,
) -> Option<PathBuf> {
    if !available(&c) {
        let command = format!("{} {}", c.program, c.args.join(" "));
        return missing(command.trim_end(), c.install);
    }
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let out = dir.join(name);
    let o = Command::new(c.program)
        .args(c.args)
        .arg("-O1")
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .args(extra)
        .arg("-lm")
        .output()
        .unwrap();
    std::fs::remove_file(&src).unwrap();
    assert!(
        o.status.success(),
        "{} failed: {}",
        c.program,
        String::from_utf8_lossy(&o.stderr)
    );
    Some(out)
}

pub fn rcross(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rcross"))
        .args(args)
        .output()
        .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Run and return (exit code, stdout, stderr), failing on a crash (no exit code / 101).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let o = rcross(args);
    let code = o.status.code().unwrap_or(-1);
    assert!(
        code != 101 && code >= 0,
        "rcross {args:?} crashed: {}",
        stderr(&o)
    );
    (code, stdout(&o), stderr(&o))
}
