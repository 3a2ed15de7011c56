//! `rcross setup` and `rcross info` against the real kernel. Every test runs the real binary in a
//! fresh user+mount namespace with its own binfmt_misc instance (Linux ≥ 6.7), so the machine's
//! own handler table is never touched.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod prereq;

use prereq::require;

const RCROSS: &str = env!("CARGO_BIN_EXE_rcross");

fn namespaces_work() -> bool {
    Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--", "sh", "-c"])
        .arg("d=$(mktemp -d) && mount -t binfmt_misc binfmt_misc $d && test -e $d/register && umount $d && rmdir $d")
        .status()
        .is_ok_and(|s| s.success())
}

fn have(tool: &str) -> bool {
    which::which(tool).is_ok()
}

struct Ns {
    dir: tempfile::TempDir,
}

impl Ns {
    fn new() -> Option<Ns> {
        if !require(have("unshare"), "unshare (util-linux)")
            || !require(
                namespaces_work(),
                "user+mount namespaces with a private binfmt_misc (Linux >= 6.7, unprivileged userns enabled)",
            )
        {
            return None;
        }
        Some(Ns {
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Run a bash script in a fresh namespace. `$RCROSS` is the binary, `$T` a scratch dir,
    /// `$BM` a directory on which binfmt_misc gets mounted (by rcross itself or by the script),
    /// and `rc ARGS` runs rcross with `--binfmt-misc $BM`.
    fn run(&self, script: &str) -> Output {
        let bm = self.path().join("binfmt_misc");
        std::fs::create_dir_all(&bm).unwrap();
        let prelude = r#"set -u
rcs() { "$RCROSS" "$@" --binfmt-misc "$BM" --binfmt-dir "$T/no-user-defs"; }
entries() { ls "$BM" | grep -v -e '^register$' -e '^status$' | sort | tr '\n' ' '; echo; }
"#;
        let out = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "--", "bash", "-c"])
            .arg(format!("{prelude}{script}"))
            .env("RCROSS", RCROSS)
            .env("T", self.path())
            .env("BM", &bm)
            .env("TEST_EXE", std::env::current_exe().unwrap())
            .output()
            .unwrap();
        eprintln!(
            "--- script stdout:\n{}\n--- script stderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Lines of the form `KEY=VALUE` printed by a script.
fn value(o: &Output, key: &str) -> String {
    stdout(o)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key}= not printed"))
        .trim()
        .to_string()
}

fn json_file(p: &Path) -> Value {
    let s = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{}: {e}\n{s}", p.display()))
}

/// Compile a static C program with a cross compiler into `dir`.
fn cross_program(cc: &str, dir: &Path, exit_code: u8) -> Option<PathBuf> {
    if !require(
        have(cc),
        &format!("{cc} (apt-get install gcc-*-linux-gnu*)"),
    ) {
        return None;
    }
    let src = dir.join(format!("{cc}.c"));
    std::fs::write(
        &src,
        format!(
            "#include <stdio.h>\nint main(void){{puts(\"hello from {cc}\");return {exit_code};}}\n"
        ),
    )
    .unwrap();
    let out = dir.join(format!("{cc}.bin"));
    let st = Command::new(cc)
        .arg("-static")
        .arg("-O2")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "{cc} failed");
    Some(out)
}

fn qemu_installed() -> bool {
    require(
        Path::new("/usr/bin/qemu-aarch64-static").exists()
            && Path::new("/usr/bin/qemu-arm-static").exists()
            && Path::new("/usr/bin/qemu-riscv64-static").exists(),
        "qemu-user-static",
    )
}

fn results_by_handler(v: &Value) -> std::collections::BTreeMap<String, Value> {
    v["results"]
        .as_array()
        .expect("results array")
        .iter()
        .map(|r| (r["handler"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

/// The issue's "Done when", end to end: register aarch64/arm/riscv64 (rcross mounts binfmt_misc
/// itself), self-tests pass, cross-compiled programs run, a second run changes nothing, and
/// uninstall removes exactly what was added.
#[test]
fn setup_registers_runs_programs_is_idempotent_and_uninstalls() {
    let Some(ns) = Ns::new() else { return };
    if !qemu_installed() {
        return;
    }
    let progs: Vec<PathBuf> = [
        "aarch64-linux-gnu-gcc",
        "arm-linux-gnueabihf-gcc",
        "riscv64-linux-gnu-gcc",
    ]
    .iter()
    .enumerate()
    .filter_map(|(i, cc)| cross_program(cc, ns.path(), 10 + i as u8))
    .collect();
    if progs.len() != 3 {
        return;
    }
    let o = ns.run(&format!(
        r#"
# Give this namespace its own (empty) binfmt_misc first: until it mounts one, a user namespace
# uses its parent's handlers. rcross then mounts the same instance at $BM itself.
mkdir -p "$T/pre" && mount -t binfmt_misc binfmt_misc "$T/pre"
for p in {a} {b} {c}; do rc=0; "$p" >/dev/null 2>&1 || rc=$?; echo "before_$(basename $p .bin)=$rc"; done
rcs setup --platform linux/arm64,linux/arm/v7 -p linux/riscv64 --json > "$T/first.json"; echo "rc1=$?"
echo "after_first=$(entries)"
for p in {a} {b} {c}; do rc=0; out=$("$p") || rc=$?; echo "run_$(basename $p .bin)=$rc $out"; done
rcs setup --platform linux/arm64,linux/arm/v7,linux/riscv64 --json > "$T/second.json"; echo "rc2=$?"
echo "after_second=$(entries)"
rcs setup --uninstall --json > "$T/uninstall.json"; echo "rc3=$?"
echo "after_uninstall=$(entries)"
"#,
        a = progs[0].display(),
        b = progs[1].display(),
        c = progs[2].display(),
    ));
    // Without handlers the kernel refuses them (126: cannot execute).
    assert_eq!(value(&o, "before_aarch64-linux-gnu-gcc"), "126");
    assert_eq!(value(&o, "rc1"), "0");
    assert_eq!(
        value(&o, "after_first"),
        "rcross-aarch64 rcross-arm rcross-riscv64"
    );
    assert_eq!(
        value(&o, "run_aarch64-linux-gnu-gcc"),
        "10 hello from aarch64-linux-gnu-gcc"
    );
    assert_eq!(
        value(&o, "run_arm-linux-gnueabihf-gcc"),
        "11 hello from arm-linux-gnueabihf-gcc"
    );
    assert_eq!(
        value(&o, "run_riscv64-linux-gnu-gcc"),
        "12 hello from riscv64-linux-gnu-gcc"
    );
    let first = json_file(&ns.path().join("first.json"));
    assert_eq!(first["ok"], true);
    assert_eq!(first["mounted"], true, "rcross mounted binfmt_misc itself");
    let r = results_by_handler(&first);
    for h in ["aarch64", "arm", "riscv64"] {
        assert_eq!(r[h]["action"], "register", "{h}: {}", r[h]);
        assert_eq!(r[h]["self_test"]["status"], "ok", "{h}: {}", r[h]);
        assert_eq!(r[h]["flags"], "PF", "{h}: F by default, P where supported");
        assert!(r[h]["interpreter"].as_str().unwrap().ends_with("-static"));
    }
    assert_eq!(
        r["aarch64"]["platforms"],
        serde_json::json!(["linux/arm64"])
    );

    // Second run: nothing changes, self-tests still pass.
    assert_eq!(value(&o, "rc2"), "0");
    assert_eq!(value(&o, "after_second"), value(&o, "after_first"));
    let second = json_file(&ns.path().join("second.json"));
    assert_eq!(second["mounted"], false);
    for (h, res) in results_by_handler(&second) {
        assert_eq!(res["action"], "unchanged", "{h}: {res}");
        assert_eq!(res["self_test"]["status"], "ok", "{h}");
    }

    // Uninstall removes exactly those three.
    assert_eq!(value(&o, "rc3"), "0");
    assert_eq!(value(&o, "after_uninstall"), "");
    let un = json_file(&ns.path().join("uninstall.json"));
    let removed: Vec<String> = un["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "remove")
        .map(|r| r["handler"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(removed, ["aarch64", "arm", "riscv64"]);
}

/// Default mode: every foreign platform with an installed emulator, never the host's own or
/// a natively runnable one.
#[test]
fn default_setup_registers_every_installed_foreign_emulator() {
    let Some(ns) = Ns::new() else { return };
    if !qemu_installed() {
        return;
    }
    let o = ns.run(
        r#"
rcs setup --json > "$T/all.json"; echo "rc=$?"
echo "entries=$(entries)"
rcs info --json > "$T/info.json"; echo "rc_info=$?"
"#,
    );
    assert_eq!(value(&o, "rc"), "0");
    let entries = value(&o, "entries");
    for want in [
        "rcross-aarch64",
        "rcross-arm",
        "rcross-riscv64",
        "rcross-s390x",
    ] {
        assert!(entries.contains(want), "{want} missing in {entries}");
    }
    assert!(!entries.contains("rcross-x86_64"), "{entries}");
    let v = json_file(&ns.path().join("all.json"));
    let r = results_by_handler(&v);
    assert_eq!(r["x86_64"]["action"], "native");
    for (h, res) in &r {
        if res["action"] == "register" {
            assert_eq!(res["self_test"]["status"], "ok", "{h}: {res}");
        }
    }
    let info = json_file(&ns.path().join("info.json"));
    assert_eq!(info["host"]["platform"], "linux/amd64");
    let emulated: Vec<&str> = info["emulated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for p in [
        "linux/arm64",
        "linux/arm/v7",
        "linux/arm/v6",
        "linux/riscv64",
        "linux/s390x",
    ] {
        assert!(emulated.contains(&p), "{p} not emulated: {emulated:?}");
    }
    assert!(info["native"]
        .as_array()
        .unwrap()
        .contains(&Value::from("linux/amd64")));
    let names: Vec<&str> = info["binfmt_misc"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"rcross-aarch64"), "{names:?}");
}

const AARCH64_MAGIC: &str =
    r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00";
const AARCH64_MASK: &str =
    r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff";

/// Another tool's entry for the same magic is reported and kept; --force replaces it.
#[test]
fn foreign_entry_is_reported_and_replaced_only_with_force() {
    let Some(ns) = Ns::new() else { return };
    if !qemu_installed() {
        return;
    }
    let o = ns.run(&format!(
        r#"
mount -t binfmt_misc binfmt_misc "$BM"
printf '%s' ':qemu-aarch64:M::{AARCH64_MAGIC}:{AARCH64_MASK}:/usr/bin/qemu-aarch64-static:OC' > "$BM/register"
rcs setup --platform linux/arm64 --json > "$T/conflict.json"; echo "rc1=$?"
echo "e1=$(entries)"
echo "flags1=$(grep flags "$BM/qemu-aarch64")"
rcs setup --platform linux/arm64 > "$T/conflict.txt"; echo "rc_text=$?"
rcs setup --platform linux/arm64 --force --json > "$T/force.json"; echo "rc2=$?"
echo "e2=$(entries)"
"#
    ));
    assert_eq!(
        value(&o, "rc1"),
        "0",
        "the other tool's handler works, so the platform passes"
    );
    assert_eq!(value(&o, "e1"), "qemu-aarch64");
    assert_eq!(value(&o, "flags1"), "flags: OC");
    let v = json_file(&ns.path().join("conflict.json"));
    let r = results_by_handler(&v);
    assert_eq!(r["aarch64"]["action"], "conflict");
    assert_eq!(r["aarch64"]["entry"], "qemu-aarch64");
    assert_eq!(r["aarch64"]["self_test"]["status"], "ok");
    let text = std::fs::read_to_string(ns.path().join("conflict.txt")).unwrap();
    assert!(
        text.contains("qemu-aarch64") && text.contains("--force"),
        "{text}"
    );

    assert_eq!(value(&o, "rc2"), "0");
    assert_eq!(value(&o, "e2"), "rcross-aarch64");
    let v = json_file(&ns.path().join("force.json"));
    let r = results_by_handler(&v);
    assert_eq!(r["aarch64"]["action"], "register");
    assert_eq!(r["aarch64"]["remove"], serde_json::json!(["qemu-aarch64"]));
}

/// --persist writes systemd-binfmt files into the chosen root; uninstall removes ours only,
/// never another tool's entry.
#[test]
fn persist_files_and_uninstall_leave_other_tools_alone() {
    let Some(ns) = Ns::new() else { return };
    if !qemu_installed() {
        return;
    }
    let o = ns.run(&format!(
        r#"
mount -t binfmt_misc binfmt_misc "$BM"
mkdir -p "$T/root/etc/binfmt.d"
echo ':other:M::{AARCH64_MAGIC}:{AARCH64_MASK}:/usr/bin/qemu-aarch64-static:F' > "$T/root/etc/binfmt.d/other.conf"
printf '%s' ':other-riscv:E::rv::/usr/bin/qemu-riscv64-static:' > "$BM/register"
rcs setup --platform linux/arm/v7,linux/riscv64 --persist --root "$T/root"; echo "rc1=$?"
echo "files1=$(ls "$T/root/etc/binfmt.d" | tr '\n' ' ')"
echo "e1=$(entries)"
cp "$T/root/etc/binfmt.d/rcross-arm.conf" "$T/arm.conf.copy"
rcs setup --uninstall --root "$T/root" --json > "$T/un.json"; echo "rc2=$?"
echo "files2=$(ls "$T/root/etc/binfmt.d" | tr '\n' ' ')"
echo "e2=$(entries)"
"#
    ));
    assert_eq!(value(&o, "rc1"), "0");
    assert_eq!(
        value(&o, "files1"),
        "other.conf rcross-arm.conf rcross-riscv64.conf"
    );
    assert_eq!(value(&o, "e1"), "other-riscv rcross-arm rcross-riscv64");
    // The persisted line is the one registered: replaying it in a fresh namespace recreates the
    // entry (what systemd-binfmt does at boot).
    let conf = std::fs::read_to_string(ns.path().join("arm.conf.copy")).unwrap();
    let line = conf
        .lines()
        .find(|l| l.starts_with(':'))
        .expect("a register line")
        .to_string();
    assert!(line.starts_with(":rcross-arm:M:"), "{line}");
    assert!(line.ends_with(":/usr/bin/qemu-arm-static:PF"), "{line}");
    let replay = ns.run(&format!(
        "mount -t binfmt_misc binfmt_misc \"$BM\"\nprintf '%s' '{line}' > \"$BM/register\"; echo \"rc=$?\"\necho \"flags=$(grep flags \"$BM/rcross-arm\")\""
    ));
    assert_eq!(value(&replay, "rc"), "0");
    assert_eq!(value(&replay, "flags"), "flags: PF");

    assert_eq!(value(&o, "rc2"), "0");
    assert_eq!(value(&o, "files2"), "other.conf");
    assert_eq!(value(&o, "e2"), "other-riscv");
}

/// --dry-run prints the exact lines and changes nothing.
#[test]
fn dry_run_changes_nothing() {
    let Some(ns) = Ns::new() else { return };
    if !qemu_installed() {
        return;
    }
    let o = ns.run(
        r#"
mount -t binfmt_misc binfmt_misc "$BM"
rcs setup --platform linux/arm64 --dry-run --persist --root "$T/root"; echo "rc=$?"
echo "e=$(entries)"
echo "files=$(ls "$T/root" 2>/dev/null | wc -l)"
"#,
    );
    assert_eq!(value(&o, "rc"), "0");
    assert_eq!(value(&o, "e"), "");
    assert_eq!(value(&o, "files"), "0");
    let out = stdout(&o);
    assert!(
        out.contains(r":rcross-aarch64:M:0:\x7f\x45\x4c\x46")
            || out.contains(r":rcross-aarch64:M:0:\x7fELF")
            || out.contains(":rcross-aarch64:M:"),
        "{out}"
    );
    assert!(out.contains("/register"), "{out}");
    assert!(out.contains("rcross-aarch64.conf"), "{out}");
}

/// Several setups at the same moment (CI jobs sharing a machine, systemd-binfmt): whichever
/// mounts binfmt_misc or registers an entry first, every one succeeds and one entry results.
#[test]
fn concurrent_setups_all_succeed() {
    let Some(ns) = Ns::new() else { return };
    if !qemu_installed() {
        return;
    }
    let o = ns.run(
        r#"
for i in 1 2 3 4 5 6; do
  ( rcs setup --platform linux/arm64,linux/arm/v7 >"$T/out$i" 2>&1; echo "$?" >"$T/rc$i" ) &
done
wait
echo "rcs=$(cat "$T"/rc* | sort -u | tr '\n' ' ')"
echo "e=$(entries)"
cat "$T"/out* >&2
"#,
    );
    assert_eq!(value(&o, "rcs"), "0");
    assert_eq!(value(&o, "e"), "rcross-aarch64 rcross-arm");
}

/// A dynamically linked emulator is refused for F (exit non-zero, reason named); with --force
/// it is registered, and a self-test that fails makes the exit status non-zero.
#[test]
fn dynamic_emulator_is_refused_and_failing_self_test_exits_nonzero() {
    let Some(ns) = Ns::new() else { return };
    // A "definition" that serves arm64 with a dynamically linked program that is no emulator.
    let defs = ns.path().join("defs");
    std::fs::create_dir_all(&defs).unwrap();
    let bin = ns.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/true", bin.join("fake-qemu-aarch64")).unwrap();
    let builtin =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/binfmt/aarch64.toml"))
            .unwrap();
    let mut custom = String::new();
    for l in builtin.lines() {
        if l.trim_start().starts_with("emulators") {
            custom.push_str("emulators = [\"fake-qemu-aarch64\"]\n");
        } else {
            custom.push_str(l);
            custom.push('\n');
        }
    }
    std::fs::write(defs.join("aarch64.toml"), custom).unwrap();
    let o = ns.run(&format!(
        r#"
export PATH="{bin}:$PATH"
d() {{ "$RCROSS" "$@" --binfmt-misc "$BM" --binfmt-dir "{defs}"; }}
d setup --platform linux/arm64 --json > "$T/refused.json"; echo "rc1=$?"
echo "e1=$(entries)"
d setup --platform linux/arm64 --force --json > "$T/forced.json"; echo "rc2=$?"
echo "e2=$(entries)"
"#,
        bin = bin.display(),
        defs = defs.display()
    ));
    assert_eq!(value(&o, "rc1"), "1");
    assert_eq!(value(&o, "e1"), "");
    let v = json_file(&ns.path().join("refused.json"));
    let r = results_by_handler(&v);
    assert_eq!(r["aarch64"]["action"], "refuse");
    assert!(r["aarch64"]["reason"]
        .as_str()
        .unwrap()
        .contains("dynamically linked"));
    assert_eq!(v["ok"], false);

    assert_eq!(
        value(&o, "rc2"),
        "1",
        "self-test fails: /bin/true is no emulator"
    );
    assert_eq!(value(&o, "e2"), "rcross-aarch64");
    let v = json_file(&ns.path().join("forced.json"));
    let r = results_by_handler(&v);
    assert_eq!(r["aarch64"]["self_test"]["status"], "failed");
    assert!(
        r["aarch64"]["self_test"]["detail"]
            .as_str()
            .unwrap()
            .contains("exited with 0"),
        "{}",
        r["aarch64"]
    );
}

/// Bad environments: not root, unknown platform.
#[test]
fn not_root_and_unknown_platform_are_clear_errors() {
    if !require(have("unshare"), "unshare") {
        return;
    }
    // A user namespace without a root mapping: we are "nobody".
    let o = Command::new("unshare")
        .args(["--user", "--"])
        .arg(RCROSS)
        .args(["setup", "--platform", "linux/arm64"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("sudo rcross setup"), "{err}");

    let o = Command::new(RCROSS)
        .args(["setup", "--dry-run", "--platform", "linux/arm46"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("did you mean linux/arm64"), "{err}");
}

/// A handler registered where rcross cannot see it (a parent user namespace; on a real machine:
/// the host, seen from a container without binfmt_misc mounted) is reported as emulation, never
/// mistaken for a CPU that runs arm64 natively.
#[test]
fn handler_outside_view_is_emulation_not_native() {
    let Some(ns) = Ns::new() else { return };
    if !qemu_installed() {
        return;
    }
    let o = ns.run(
        r#"
rcs setup --platform linux/arm64 >/dev/null; echo "rc=$?"
unshare --user --map-root-user --mount -- "$RCROSS" info --json --binfmt-misc "$T/unmounted" > "$T/nested.json"; echo "rc_nested=$?"
"#,
    );
    assert_eq!(value(&o, "rc"), "0");
    assert_eq!(value(&o, "rc_nested"), "0");
    let v = json_file(&ns.path().join("nested.json"));
    assert_eq!(v["binfmt_misc"]["mounted"], false);
    let arm64 = v["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["platform"] == "linux/arm64")
        .unwrap()
        .clone();
    assert_eq!(arm64["mode"], "emulated", "{arm64}");
    assert_eq!(arm64["entry"], "(not visible)", "{arm64}");
    assert!(!v["native"]
        .as_array()
        .unwrap()
        .contains(&Value::from("linux/arm64")));
}

#[test]
fn info_reports_the_host() {
    let o = Command::new(RCROSS)
        .args(["info", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["host"]["platform"], "linux/amd64");
    assert_eq!(v["host"]["machine"], "x86_64");
    assert!(v["host"]["cpu"]["cores"].as_u64().unwrap() >= 1);
    assert!(v["native"]
        .as_array()
        .unwrap()
        .contains(&Value::from("linux/amd64")));
    let text = Command::new(RCROSS).arg("info").output().unwrap();
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("host        linux/amd64"));
}

/// A handler file whose magic matches the host's own (x86_64) programs is refused before it is
/// registered, naming the file, even with --force; registered, it would send every program in
/// the namespace, the shell's included, to the emulator. Only shell builtins run after setup,
/// so the test reads the result even if the old code registered it.
#[test]
fn a_definition_matching_host_programs_is_refused_naming_the_file() {
    let Some(ns) = Ns::new() else { return };
    if !qemu_installed() {
        return;
    }
    let defs = ns.path().join("defs");
    std::fs::create_dir_all(&defs).unwrap();
    let file = defs.join("evil.toml");
    std::fs::write(
        &file,
        r#"name = "evil"
platforms = ["linux/riscv64"]
offset = 0
magic = "7f454c4602000000000000000000000002003e00"
mask = "fffffffffffefe00fffffffffffffffffeffffff"
emulators = ["qemu-riscv64-static"]
"#,
    )
    .unwrap();
    let o = ns.run(&format!(
        r#"
mount -t binfmt_misc binfmt_misc "$BM"
d() {{ "$RCROSS" "$@" --binfmt-misc "$BM" --binfmt-dir "{defs}"; }}
d setup --platform linux/riscv64 --json > "$T/evil.json" 2> "$T/evil.err"; echo "rc1=$?"
if [ -e "$BM/rcross-evil" ]; then echo "registered1=yes"; else echo "registered1=no"; fi
if [ -e "$BM/rcross-evil" ]; then echo -1 > "$BM/rcross-evil"; fi
d setup --platform linux/riscv64 --force 2> "$T/forced.err"; echo "rc2=$?"
if [ -e "$BM/rcross-evil" ]; then echo "registered2=yes"; else echo "registered2=no"; fi
if [ -e "$BM/rcross-evil" ]; then echo -1 > "$BM/rcross-evil"; fi
"#,
        defs = defs.display()
    ));
    assert_eq!(value(&o, "registered1"), "no", "the handler was registered");
    assert_eq!(value(&o, "rc1"), "1");
    let v = json_file(&ns.path().join("evil.json"));
    let r = results_by_handler(&v);
    assert_eq!(r["evil"]["action"], "refuse", "{}", r["evil"]);
    let reason = r["evil"]["reason"].as_str().unwrap();
    assert!(reason.contains(&file.display().to_string()), "{reason}");
    assert!(reason.contains("linux/amd64"), "{reason}");
    assert_eq!(value(&o, "registered2"), "no", "--force registered it");
    assert_eq!(value(&o, "rc2"), "1");
    let text = std::fs::read_to_string(ns.path().join("forced.err")).unwrap() + &stdout(&o);
    assert!(text.contains(&file.display().to_string()), "{text}");
}

/// Another tool's entry written with another offset and mask that still catches aarch64
/// programs (e_type and e_machine at offset 16) is a conflict, left in place without --force.
#[test]
fn a_differently_masked_entry_for_the_same_programs_is_a_conflict() {
    let Some(ns) = Ns::new() else { return };
    if !qemu_installed() {
        return;
    }
    let o = ns.run(
        r#"
mount -t binfmt_misc binfmt_misc "$BM"
printf '%s' ':other-arm64:M:16:\x02\x00\xb7\x00:\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' > "$BM/register"
rcs setup --platform linux/arm64 --json > "$T/c.json"; echo "rc=$?"
echo "e=$(entries)"
"#,
    );
    assert_eq!(
        value(&o, "rc"),
        "0",
        "the other tool's handler runs arm64 programs"
    );
    assert_eq!(value(&o, "e"), "other-arm64");
    let v = json_file(&ns.path().join("c.json"));
    let r = results_by_handler(&v);
    assert_eq!(r["aarch64"]["action"], "conflict", "{}", r["aarch64"]);
    assert_eq!(r["aarch64"]["entry"], "other-arm64");
}

/// Set (to `BINFMT_MISC_DIR:RESULT_FILE`) when this binary runs as [`check_handler_helper`]
/// inside a namespace.
const CHECK_ENV: &str = "RCROSS_TEST_CHECK_HANDLER";

/// Not a test of its own: re-executed inside a namespace by
/// [`the_f_flag_check_looks_at_the_entry_the_kernel_uses`], it runs the chroot runner's handler
/// check for linux/arm64 on that namespace's binfmt_misc, read the way the runner reads it, and
/// writes `ok` or the error. Without the variable it does nothing.
#[test]
fn check_handler_helper() {
    let Ok(spec) = std::env::var(CHECK_ENV) else {
        return;
    };
    let (dir, result) = spec.split_once(':').unwrap();
    let catalog = rcross::binfmt::Catalog::builtin().unwrap();
    let state =
        rcross::detect::binfmt_state(&rcross::host::linux::LinuxHost, Path::new(dir), &catalog);
    let verdict = match rcross::pipeline::chroot::check_handler(
        "linux/arm64".parse().unwrap(),
        "linux/amd64".parse().unwrap(),
        &state,
    ) {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("refused: {e}"),
    };
    std::fs::write(result, verdict).unwrap();
}

/// The kernel hands a program to the newest enabled entry that matches it (fs/binfmt_misc.c:
/// registration adds at the head of the list, the search walks it from the head). The F-flag
/// check before a chroot build judges that entry, not the alphabetically last one.
#[test]
fn the_f_flag_check_looks_at_the_entry_the_kernel_uses() {
    let Some(ns) = Ns::new() else { return };
    if !qemu_installed() {
        return;
    }
    let o = ns.run(&format!(
        r#"
mount -t binfmt_misc binfmt_misc "$BM"
reg() {{ printf '%s' ":$1:M::{AARCH64_MAGIC}:{AARCH64_MASK}:/usr/bin/qemu-aarch64-static:$2" > "$BM/register"; }}
check() {{ {CHECK_ENV}="$BM:$T/$1" "$TEST_EXE" --exact check_handler_helper --nocapture --test-threads=1 >/dev/null 2>&1; echo "$1=$(cat "$T/$1")"; }}
clear() {{ for e in "$BM"/*; do case "${{e##*/}}" in register|status) ;; *) echo -1 > "$e";; esac; done; }}
# Older with F, newer (alphabetically first) without: the kernel uses the newer one.
reg b-old F; reg a-new ''; check newer_without_f; clear
# Older without F, newer (alphabetically first) with F: the kernel uses the newer one.
reg z-old ''; reg a-new F; check newer_with_f; clear
# The newer one without F is disabled: the kernel skips it.
reg b-old F; reg a-new ''; echo 0 > "$BM/a-new"; check newer_disabled; clear
# One entry each way for reference.
reg only-f F; check only_f; clear
reg only-plain ''; check only_plain; clear
"#
    ));
    let newer_without_f = value(&o, "newer_without_f");
    assert!(
        newer_without_f.starts_with("refused:") && newer_without_f.contains("a-new"),
        "{newer_without_f}"
    );
    assert!(
        newer_without_f.contains("without the F flag"),
        "{newer_without_f}"
    );
    assert_eq!(value(&o, "newer_with_f"), "ok");
    assert_eq!(value(&o, "newer_disabled"), "ok");
    assert_eq!(value(&o, "only_f"), "ok");
    let only_plain = value(&o, "only_plain");
    assert!(only_plain.contains("only-plain"), "{only_plain}");
}

/// Without the kernel's order (a state whose directory cannot be listed), any matching entry may
/// be the one used, so one without F among them is refused, whatever the names' order.
#[test]
fn f_flag_check_without_the_kernel_order_requires_f_on_every_matching_entry() {
    use rcross::binfmt::{BinfmtMatch, Catalog, Flags, KernelEntry};
    let catalog = Catalog::builtin().unwrap();
    let h = catalog
        .for_platform(&"linux/arm64".parse().unwrap())
        .unwrap();
    let entry = |name: &str, fix_binary: bool| KernelEntry {
        name: name.into(),
        enabled: true,
        interpreter: "/usr/bin/qemu-aarch64-static".into(),
        flags: Flags {
            fix_binary,
            ..Flags::default()
        },
        kind: BinfmtMatch::Magic {
            offset: h.offset,
            magic: h.magic.clone(),
            mask: Some(h.mask.clone()),
        },
    };
    let state = |entries| rcross::detect::BinfmtState {
        path: PathBuf::from("/nonexistent/binfmt_misc"),
        mounted: true,
        enabled: Some(true),
        entries,
        reports: Vec::new(),
        unreadable: Vec::new(),
    };
    let check = |s: &rcross::detect::BinfmtState| {
        rcross::pipeline::chroot::check_handler(
            "linux/arm64".parse().unwrap(),
            "linux/amd64".parse().unwrap(),
            s,
        )
    };
    for entries in [
        vec![entry("a-new", false), entry("b-old", true)],
        vec![entry("a-old", true), entry("b-new", false)],
    ] {
        let plain = entries
            .iter()
            .find(|e| !e.flags.fix_binary)
            .unwrap()
            .name
            .clone();
        let e = check(&state(entries)).unwrap_err().to_string();
        assert!(
            e.contains(&plain) && e.contains("without the F flag"),
            "{e}"
        );
    }
    check(&state(vec![entry("a", true), entry("b", true)])).unwrap();
}
