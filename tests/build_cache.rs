//! The build cache end to end (issue 13 §1): the real binary on a temporary C project built for
//! linux/amd64 and linux/arm64 with the real compilers. The build command appends its platform
//! to a file outside the project, so every test counts which platforms ran their command.

mod prereq;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const RCROSS: &str = env!("CARGO_BIN_EXE_rcross");
const PLATFORMS: &str = "linux/amd64,linux/arm64";

struct Fixture {
    tmp: tempfile::TempDir,
    n: std::cell::Cell<u32>,
}

impl Fixture {
    /// A project, a cache and a bin directory put first on PATH, all in one temporary dir.
    fn new() -> Option<Fixture> {
        for (tool, pkg) in [
            ("gcc", "gcc"),
            ("make", "make"),
            ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
        ] {
            if !prereq::tool(tool, pkg) {
                return None;
            }
        }
        let f = Fixture {
            tmp: tempfile::tempdir().unwrap(),
            n: std::cell::Cell::new(0),
        };
        let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
        std::fs::create_dir_all(f.project()).unwrap();
        std::fs::create_dir_all(f.bin()).unwrap();
        for name in ["hello.c", "Makefile"] {
            std::fs::copy(ex.join(name), f.project().join(name)).unwrap();
        }
        f.set_command("make -s CC=\"$CC\" OUT=\"$RCROSS_OUT/hello\"");
        // A compiler wrapper named as the cross compiler, first on PATH: its --version says
        // which version of the wrapper it is.
        f.set_wrapper("1");
        Some(f)
    }
    fn project(&self) -> PathBuf {
        self.tmp.path().join("project")
    }
    fn bin(&self) -> PathBuf {
        self.tmp.path().join("bin")
    }
    fn cache(&self) -> PathBuf {
        self.tmp.path().join("xdg-cache")
    }
    fn runs_file(&self) -> PathBuf {
        self.tmp.path().join("runs")
    }
    fn set_command(&self, make: &str) {
        let toml = format!(
            r#"[image]
name = "cached"
platforms = ["linux/amd64", "linux/arm64"]
[build]
command = 'echo "$RCROSS_PLATFORM" >> {runs}; {make}'
lang = "c"
[[artifact]]
from = "hello"
to = "/usr/bin/hello"
mode = "0755"
"#,
            runs = self.runs_file().display()
        );
        std::fs::write(self.project().join("rcross.toml"), toml).unwrap();
    }
    fn set_wrapper(&self, version: &str) {
        let real = which::which("aarch64-linux-gnu-gcc").unwrap();
        let w = self.bin().join("aarch64-linux-gnu-gcc");
        let script = format!(
            "#!/bin/sh\ncase \"$1\" in --version) echo \"test wrapper {version}\" ;; esac\nexec {} \"$@\"\n",
            real.display()
        );
        // A new file (not rewritten in place), as an upgrade installs one.
        let tmp = self.bin().join(".w");
        std::fs::write(&tmp, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, &w).unwrap();
    }
    fn rcross(&self, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.bin().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let o = Command::new(RCROSS)
            .args(args)
            .env("XDG_CACHE_HOME", self.cache())
            .env("PATH", path)
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap();
        eprintln!("rcross {args:?}:\n{}", String::from_utf8_lossy(&o.stderr));
        o
    }
    /// One build to a new layout; returns (platforms whose command ran, sorted; index digest;
    /// platforms reported cached; stderr).
    fn build(&self, extra: &[&str]) -> (Vec<String>, String, Vec<String>, String) {
        let _ = std::fs::remove_file(self.runs_file());
        let k = self.n.get();
        self.n.set(k + 1);
        let out = format!("oci:{}", self.tmp.path().join(format!("oci-{k}")).display());
        let project = self.project();
        let mut args = vec![
            "build",
            project.to_str().unwrap(),
            "--platform",
            PLATFORMS,
            "--output",
            &out,
            "--json",
        ];
        args.extend_from_slice(extra);
        let o = self.rcross(&args);
        assert!(o.status.success(), "rcross build failed");
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let mut ran: Vec<String> = std::fs::read_to_string(self.runs_file())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        ran.sort();
        let cached = v["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["cached"] == true)
            .map(|p| p["platform"].as_str().unwrap().to_string())
            .collect();
        (
            ran,
            v["index_digest"].as_str().unwrap().to_string(),
            cached,
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
}

fn both() -> Vec<String> {
    vec!["linux/amd64".to_string(), "linux/arm64".to_string()]
}

#[test]
fn unchanged_inputs_run_nothing_and_each_change_rebuilds_what_it_affects() {
    let Some(f) = Fixture::new() else { return };
    let (ran, digest, cached, _) = f.build(&[]);
    assert_eq!(ran, both(), "a cold cache runs every platform");
    assert!(cached.is_empty());

    let (ran, again, cached, log) = f.build(&[]);
    assert!(ran.is_empty(), "nothing changed, yet {ran:?} ran");
    assert_eq!(
        again, digest,
        "the cached outputs give the same image index"
    );
    assert_eq!(cached, both());
    assert!(log.contains("linux/arm64: cached"), "{log}");

    // A file the ignore rules list changes nothing.
    std::fs::write(f.project().join(".rcrossignore"), "notes/\n*.log\n").unwrap();
    let (ran, ..) = f.build(&[]);
    assert_eq!(ran, both(), ".rcrossignore itself is a project file");
    std::fs::create_dir_all(f.project().join("notes")).unwrap();
    std::fs::write(f.project().join("notes/todo.txt"), "x").unwrap();
    std::fs::write(f.project().join("build.log"), "x").unwrap();
    let (ran, ..) = f.build(&[]);
    assert!(ran.is_empty(), "ignored files rebuilt {ran:?}");

    // One source file.
    let src = f.project().join("hello.c");
    let text = std::fs::read_to_string(&src).unwrap();
    std::fs::write(&src, format!("{text}\n/* changed */\n")).unwrap();
    let (ran, changed, ..) = f.build(&[]);
    assert_eq!(ran, both());
    assert_eq!(changed, digest, "a comment does not change the binaries");
    assert!(f.build(&[]).0.is_empty());

    // An environment value (a build arg), then back: the first value's entry is still there.
    assert_eq!(f.build(&["--build-arg", "EXTRA=1"]).0, both());
    assert!(f.build(&["--build-arg", "EXTRA=1"]).0.is_empty());
    assert_eq!(f.build(&["--build-arg", "EXTRA=2"]).0, both());
    assert!(f.build(&[]).0.is_empty());

    // The compiler of one platform: only that platform rebuilds.
    f.set_wrapper("2");
    let (ran, ..) = f.build(&[]);
    assert_eq!(ran, vec!["linux/arm64".to_string()]);
    assert!(f.build(&[]).0.is_empty());

    // The command.
    f.set_command("make -s CC=\"$CC\" OUT=\"$RCROSS_OUT/hello\" CFLAGS=-O1");
    assert_eq!(f.build(&[]).0, both());
    assert!(f.build(&[]).0.is_empty());

    // --no-cache runs the command whatever the cache holds.
    assert_eq!(f.build(&["--no-cache"]).0, both());
}

#[test]
fn a_corrupted_entry_is_detected_and_rebuilt_never_used() {
    let Some(f) = Fixture::new() else { return };
    let (_, digest, ..) = f.build(&[]);
    let entries = f.cache().join("rcross/build/entries");
    let mut stored: Vec<PathBuf> = std::fs::read_dir(&entries)
        .unwrap()
        .map(|e| e.unwrap().path().join("tree/hello"))
        .collect();
    stored.sort();
    assert_eq!(stored.len(), 2, "one entry per platform");
    // Flip one byte in the middle of one stored binary.
    let mut bytes = std::fs::read(&stored[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&stored[0], bytes).unwrap();
    let (ran, again, cached, log) = f.build(&[]);
    assert_eq!(
        ran.len(),
        1,
        "exactly the corrupted platform rebuilds: {ran:?}"
    );
    assert_eq!(cached.len(), 1);
    assert!(log.contains("corrupt"), "{log}");
    assert_eq!(again, digest, "the corrupted bytes never reached the image");
    assert!(
        f.build(&[]).0.is_empty(),
        "the rebuilt entry is stored again"
    );
}

#[test]
fn build_cache_false_and_prune() {
    let Some(f) = Fixture::new() else { return };
    assert_eq!(f.build(&[]).0, both());
    let toml = f.project().join("rcross.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace("lang = \"c\"", "lang = \"c\"\ncache = false"),
    )
    .unwrap();
    assert_eq!(
        f.build(&[]).0,
        both(),
        "[build] cache = false runs the command"
    );
    assert_eq!(f.build(&[]).0, both());
    std::fs::write(&toml, text).unwrap();
    assert!(f.build(&[]).0.is_empty());

    let o = f.rcross(&["cache", "prune", "--json"]);
    assert!(o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["removed"], 0, "under the limit nothing goes: {v}");
    let o = f.rcross(&["cache", "prune", "--all", "--json"]);
    assert!(o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["removed"], 2, "{v}");
    let entries = f.cache().join("rcross/build/entries");
    assert_eq!(std::fs::read_dir(&entries).unwrap().count(), 0);
    assert_eq!(f.build(&[]).0, both(), "an emptied cache rebuilds");
}

#[test]
fn every_platform_builds_at_once_unless_jobs_bound_it() {
    let Some(f) = Fixture::new() else { return };
    // Each platform's command marks itself started, then waits (up to 3 s) until both have:
    // it finishes only when the two commands run at the same time.
    let started = f.tmp.path().join("started");
    std::fs::create_dir_all(&started).unwrap();
    f.set_command(&format!(
        "touch {s}/$(echo $RCROSS_PLATFORM | tr / -); i=0; \
         while [ $(ls {s} | wc -l) -lt 2 ]; do i=$((i+1)); [ $i -gt 60 ] && exit 7; sleep 0.05; done; \
         make -s CC=\"$CC\" OUT=\"$RCROSS_OUT/hello\"",
        s = started.display()
    ));
    let (ran, _, _, _) = f.build(&["--no-cache"]);
    assert_eq!(ran, both(), "by default both platforms build at once");

    std::fs::remove_dir_all(&started).unwrap();
    std::fs::create_dir_all(&started).unwrap();
    let project = f.project();
    let o = f.rcross(&[
        "build",
        project.to_str().unwrap(),
        "--platform",
        PLATFORMS,
        "--no-cache",
        "-j",
        "1",
        "--output",
        &format!("oci:{}", f.tmp.path().join("oci-j1").display()),
    ]);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("exit"),
        "with -j 1 the first platform waits alone and gives up"
    );
}
