//! `rcross elf --json` on real binaries built here with cross compilers.

mod common;
mod prereq;

use common::*;
use serde_json::Value;
use std::path::Path;

fn classify(path: &Path) -> Value {
    let (code, out, err) = run(&["elf", "--json", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{out}");
    v[0].clone()
}

/// Compile with `c` and check the classification fields.
fn case(c: Compiler, flags: &[&str], expect: &[(&str, Value)]) {
    let dir = tempfile::tempdir().unwrap();
    let Some(bin) = compile(c, flags, dir.path(), "prog") else {
        return;
    };
    let v = classify(&bin);
    assert_eq!(v["path"], bin.to_str().unwrap());
    for (k, want) in expect {
        assert_eq!(&v[*k], want, "{} {flags:?}: field {k} in {v:#}", c.program);
    }
}

fn s(x: &str) -> Value {
    Value::String(x.into())
}

#[test]
fn aarch64_dynamic_and_static() {
    case(
        AARCH64,
        &[],
        &[
            ("platform", s("linux/arm64")),
            ("machine", s("aarch64")),
            ("class", 64.into()),
            ("endian", s("little")),
            ("linkage", s("dynamic")),
            ("interpreter", s("/lib/ld-linux-aarch64.so.1")),
            ("libc", s("glibc")),
            ("interpreter_matches", true.into()),
        ],
    );
    case(
        AARCH64,
        &["-static"],
        &[
            ("platform", s("linux/arm64")),
            ("linkage", s("static")),
            ("interpreter", Value::Null),
        ],
    );
}

#[test]
fn armhf_is_v7_hard_float() {
    case(
        ARMHF,
        &[],
        &[
            ("platform", s("linux/arm/v7")),
            ("class", 32.into()),
            ("float_abi", s("hard")),
            ("arm_arch", s("v7")),
            ("arm_eabi", 5.into()),
            ("interpreter", s("/lib/ld-linux-armhf.so.3")),
            ("linkage", s("dynamic")),
        ],
    );
    case(
        ARMHF,
        &["-static"],
        &[("platform", s("linux/arm/v7")), ("linkage", s("static"))],
    );
}

#[test]
fn armel_is_v5_soft_float() {
    case(
        ARMEL,
        &[],
        &[
            ("platform", s("linux/arm/v5")),
            ("float_abi", s("soft")),
            ("arm_arch", s("v5TE")),
            ("interpreter", s("/lib/ld-linux.so.3")),
            ("interpreter_matches", true.into()),
        ],
    );
}

#[test]
fn armv6_from_zig_is_v6_hard_float() {
    case(
        ZIG_ARMV6,
        &[],
        &[
            ("platform", s("linux/arm/v6")),
            ("float_abi", s("hard")),
            ("arm_level", 6.into()),
        ],
    );
}

#[test]
fn riscv64_double_float_with_rvc() {
    case(
        RISCV64,
        &[],
        &[
            ("platform", s("linux/riscv64")),
            ("float_abi", s("double")),
            ("rvc", true.into()),
            ("interpreter", s("/lib/ld-linux-riscv64-lp64d.so.1")),
        ],
    );
}

#[test]
fn i386_static_and_dynamic() {
    case(
        I686,
        &["-static"],
        &[
            ("platform", s("linux/386")),
            ("class", 32.into()),
            ("linkage", s("static")),
        ],
    );
    case(
        I686,
        &[],
        &[
            ("platform", s("linux/386")),
            ("interpreter", s("/lib/ld-linux.so.2")),
        ],
    );
}

#[test]
fn amd64_musl_and_static_pie() {
    case(
        MUSL,
        &["-static"],
        &[("platform", s("linux/amd64")), ("linkage", s("static"))],
    );
    case(
        MUSL,
        &[],
        &[
            ("platform", s("linux/amd64")),
            ("linkage", s("dynamic")),
            ("libc", s("musl")),
            ("interpreter", s("/lib/ld-musl-x86_64.so.1")),
        ],
    );
    case(
        HOST_GCC,
        &["-static-pie"],
        &[("platform", s("linux/amd64")), ("linkage", s("static-pie"))],
    );
}

#[test]
fn ppc64le_s390x_mips64el() {
    case(
        PPC64LE,
        &[],
        &[
            ("platform", s("linux/ppc64le")),
            ("ppc64_abi", 2.into()),
            ("interpreter", s("/lib64/ld64.so.2")),
        ],
    );
    case(
        S390X,
        &[],
        &[
            ("platform", s("linux/s390x")),
            ("endian", s("big")),
            ("interpreter", s("/lib/ld64.so.1")),
            ("interpreter_matches", true.into()),
        ],
    );
    case(
        MIPS64EL,
        &[],
        &[
            ("platform", s("linux/mips64le")),
            ("mips_abi", s("n64")),
            ("mips_isa", s("mips64r2")),
        ],
    );
}

#[test]
fn shared_libraries_are_dynamic() {
    let dir = tempfile::tempdir().unwrap();
    let Some(lib) = compile_source(
        AARCH64,
        "int f(int x) { return x + 1; }\n",
        &["-shared", "-fPIC"],
        dir.path(),
        "libf.so",
    ) else {
        return;
    };
    let v = classify(&lib);
    assert_eq!(v["kind"], "shared-library");
    assert_eq!(v["linkage"], "dynamic");
    assert_eq!(v["platform"], "linux/arm64");
}

#[test]
fn non_elf_files_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "hello").unwrap();
    std::fs::write(dir.path().join("empty"), "").unwrap();
    let (code, out, _) = run(&["elf", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("0 ELF files, 2 non-ELF files skipped"),
        "{out}"
    );
    let (code, out, _) = run(&["elf", "--json", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "[]");
}
