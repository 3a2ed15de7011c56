//! `rcross verify --platform P PATH…` on trees and archives of real binaries.

mod common;
mod prereq;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tree of arm64 programs, text files and a symlink out of the tree. `None` outside strict
/// mode when a compiler is missing.
fn arm64_tree(root: &Path) -> Option<()> {
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    compile(AARCH64, &[], &root.join("usr/bin"), "app")?;
    compile(AARCH64, &["-static"], &root.join("usr/bin"), "tool")?;
    fs::write(root.join("etc/app.conf"), "x=1\n").unwrap();
    // Pointing out of the tree at host (amd64) programs: must not be followed.
    std::os::unix::fs::symlink("/usr/bin", root.join("hostbin")).unwrap();
    Some(())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn clean_tree_passes_and_planted_amd64_binary_fails() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    if arm64_tree(&root).is_none() {
        return;
    }
    let (code, out, err) = run(&["verify", "--platform", "linux/arm64", s(&root)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("linux/arm64: ok, 2 ELF files"), "{out}");
    assert!(out.contains("1 symlinks not followed"), "{out}");

    let Some(_) = compile(HOST_GCC, &[], &root.join("usr/bin"), "planted") else {
        return;
    };
    let (code, out, _) = run(&["verify", "--platform", "linux/arm64", s(&root)]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("usr/bin/planted: built for linux/amd64: exec format error on linux/arm64"),
        "{out}"
    );
    assert_eq!(out.matches("exec format error").count(), 1, "{out}");

    let (code, out, _) = run(&["--json", "verify", "-p", "aarch64", s(&root)]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    let f = &v["groups"][0]["findings"][0];
    assert_eq!(f["kind"], "wrong-machine");
    assert_eq!(f["expected"], "linux/arm64");
    assert_eq!(f["found"], "linux/amd64");
    assert!(f["path"].as_str().unwrap().ends_with("usr/bin/planted"));
}

#[test]
fn arm_variants_and_float_abi() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (Some(v7), Some(v5)) = (compile(ARMHF, &[], d, "v7"), compile(ARMEL, &[], d, "v5")) else {
        return;
    };
    let Some(v6) = compile(ZIG_ARMV6, &[], d, "v6") else {
        return;
    };
    let (code, out, _) = run(&["verify", "-p", "linux/arm/v6", s(&v7)]);
    assert_eq!(code, 1);
    assert!(
        out.contains(
            "ARMv7 instructions: Illegal instruction on ARMv6 such as Raspberry Pi Zero/1"
        ),
        "{out}"
    );
    // Older code in a newer variant is fine.
    let (code, out, _) = run(&["verify", "-p", "linux/arm/v7", s(&v6)]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = run(&["verify", "-p", "linux/arm/v6", s(&v6)]);
    assert_eq!(code, 0, "{out}");
    // armel's soft-float loader is absent on a hard-float system.
    let (code, out, _) = run(&["verify", "-p", "linux/arm/v7", s(&v5)]);
    assert_eq!(code, 1);
    assert!(
        out.contains("soft-float loader /lib/ld-linux.so.3 absent on a hard-float system"),
        "{out}"
    );
    let (code, out, _) = run(&["verify", "-p", "linux/arm/v5", s(&v5)]);
    assert_eq!(code, 0, "{out}");
    // A static soft-float program needs no loader.
    let Some(v5s) = compile(ARMEL, &["-static"], d, "v5s") else {
        return;
    };
    let (code, out, _) = run(&["verify", "-p", "linux/arm/v7", s(&v5s)]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn corrupt_and_truncated_files_are_findings_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let Some(bin) = compile(AARCH64, &[], dir.path(), "good") else {
        return;
    };
    let data = fs::read(&bin).unwrap();
    let bad = dir.path().join("bad");
    fs::create_dir(&bad).unwrap();
    for n in [5, 20, 63, 64, 100, 200] {
        fs::write(bad.join(format!("trunc{n}")), &data[..n]).unwrap();
    }
    let mut garbage = b"\x7fELF".to_vec();
    garbage.extend((0..4000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    fs::write(bad.join("garbage"), &garbage).unwrap();
    let mut hostile = data.clone();
    hostile[0x38..0x3a].copy_from_slice(&0xffffu16.to_le_bytes()); // e_phnum
    hostile[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes()); // e_phoff
    fs::write(bad.join("hostile"), &hostile).unwrap();
    let (code, out, _) = run(&["verify", "-p", "linux/arm64", s(&bad)]);
    assert_eq!(code, 1, "{out}");
    for name in ["trunc5", "trunc20", "trunc63", "hostile"] {
        let want = format!("corrupt ELF header in {}", s(&bad.join(name)));
        assert!(out.contains(&want), "{want} in {out}");
    }
    let (code, _, err) = run(&["elf", s(&bad)]);
    assert_eq!(code, 1);
    assert!(err.contains("corrupt ELF header in"), "{err}");
}

fn tar_of(root: &Path, out: &Path, compress: Option<&str>) -> PathBuf {
    if compress == Some("zstd") {
        // Through the zstd crate, so the test needs no zstd program.
        let plain = tar_of(root, &out.with_extension("plain"), None);
        let data = fs::read(&plain).unwrap();
        fs::write(out, zstd::encode_all(&data[..], 3).unwrap()).unwrap();
        return out.to_path_buf();
    }
    let mut cmd = Command::new("tar");
    cmd.arg("-C").arg(root).arg("-cf").arg(out);
    if let Some(c) = compress {
        cmd.arg(format!("--{c}"));
    }
    cmd.arg(".");
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out.to_path_buf()
}

#[test]
fn tar_layers_plain_gzip_zstd() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    if arm64_tree(&root).is_none() {
        return;
    }
    let plain = tar_of(&root, &dir.path().join("clean.tar"), None);
    let (code, out, _) = run(&["verify", "-p", "linux/arm64", s(&plain)]);
    assert_eq!(code, 0, "{out}");
    if compile(HOST_GCC, &[], &root.join("usr/bin"), "planted").is_none() {
        return;
    }
    for (name, c) in [
        ("l.tar", None),
        ("l.tar.gz", Some("gzip")),
        ("l.tar.zst", Some("zstd")),
    ] {
        let t = tar_of(&root, &dir.path().join(name), c);
        let (code, out, err) = run(&["verify", "-p", "linux/arm64", s(&t)]);
        assert_eq!(code, 1, "{name}: {out}{err}");
        let want = format!("{}:usr/bin/planted: built for linux/amd64", s(&t));
        assert!(out.contains(&want), "{want} in {out}");
    }
    // A truncated archive is a finding too.
    let gz = fs::read(dir.path().join("l.tar.gz")).unwrap();
    let cut = dir.path().join("cut.tar.gz");
    fs::write(&cut, &gz[..gz.len() / 2]).unwrap();
    let (code, out, _) = run(&["verify", "-p", "linux/arm64", s(&cut)]);
    assert_eq!(code, 1, "{out}");
}

#[test]
fn usage_errors() {
    let (code, _, err) = run(&["verify", "/nonexistent/x"]);
    assert_eq!(code, 2);
    assert!(err.contains("--platform"), "{err}");
    let (code, _, err) = run(&["verify", "-p", "linux/arm46", "/"]);
    assert_eq!(code, 2);
    assert!(err.contains("did you mean linux/arm64"), "{err}");
    let (code, _, err) = run(&["verify", "-p", "arm64", "/nonexistent/x"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/x: no such file"), "{err}");
    // A registry that does not answer (loopback, nothing listening): environment error, named.
    for cmd in ["verify", "elf"] {
        let (code, _, err) = run(&[cmd, "127.0.0.1:1/app:1.0"]);
        assert_eq!(code, 3, "{err}");
        assert!(err.contains("127.0.0.1:1/app:1.0"), "{err}");
        assert!(err.contains("is the registry running"), "{err}");
    }
}
