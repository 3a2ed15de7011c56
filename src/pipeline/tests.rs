//! The stages on their own: a project in a temporary directory, hand-made host facts, fake
//! runners that write hand-made ELF files, a fake base image, a reporter that records. No
//! compiler, Docker engine or registry.

use super::cache::BuildCache;
use super::place::Placement;
use super::*;
use crate::image::{ImageSource, SourceError};
use crate::toolchain::plan::{Lang, PlanItem, Strategy};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const EM_RISCV: u16 = 243;
/// RVC and the double-float ABI, as riscv64 Linux programs are.
const RISCV_FLAGS: u32 = 0x5;

fn p(s: &str) -> Platform {
    s.parse().unwrap()
}

/// What the pipeline reported, one string per call.
#[derive(Default)]
struct Recorded(Mutex<Vec<String>>);

impl Recorded {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
}

impl Reporter for Recorded {
    fn line(&self, line: &str) {
        self.push(line.to_string());
    }
    fn builds_begin(&self, platforms: &[Platform]) {
        self.push(format!("begin {}", platforms.len()));
    }
    fn build_started(&self, p: Platform, what: &str) {
        self.push(format!("[{p}] {what}"));
    }
    fn build_output(&self, p: Platform, _what: &str, line: &str) {
        self.push(format!("[{p}] | {line}"));
    }
    fn build_finished(&self, p: Platform, outcome: &str) {
        self.push(format!("[{p}] {outcome}"));
    }
    fn builds_end(&self) {
        self.push("end".into());
    }
}

/// A static little-endian ELF64 executable for `machine`: the header and one PT_LOAD.
pub(crate) fn static_exe(machine: u16) -> Vec<u8> {
    let flags = if machine == EM_RISCV { RISCV_FLAGS } else { 0 };
    let mut f = vec![0u8; 64 + 56];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // 64-bit
    f[5] = 1; // little-endian
    f[6] = 1; // version
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&machine.to_le_bytes());
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&0x40_0000u64.to_le_bytes()); // entry
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
    f[48..52].copy_from_slice(&flags.to_le_bytes());
    f[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
    f[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
    f[56..58].copy_from_slice(&1u16.to_le_bytes()); // phnum
    let ph = &mut f[64..];
    ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    ph[4..8].copy_from_slice(&5u32.to_le_bytes()); // R+X
    ph[16..24].copy_from_slice(&0x40_0000u64.to_le_bytes());
    ph[24..32].copy_from_slice(&0x40_0000u64.to_le_bytes());
    ph[32..40].copy_from_slice(&120u64.to_le_bytes());
    ph[40..48].copy_from_slice(&120u64.to_le_bytes());
    ph[48..56].copy_from_slice(&0x1000u64.to_le_bytes());
    f
}

/// A runner that builds nothing: it writes `hello` for the machine it was told per platform,
/// prints a line, and counts its calls.
struct WritesElf {
    machines: BTreeMap<Platform, u16>,
    calls: AtomicUsize,
}

impl WritesElf {
    fn new(machines: &[(&str, u16)]) -> Arc<WritesElf> {
        Arc::new(WritesElf {
            machines: machines.iter().map(|(s, m)| (p(s), *m)).collect(),
            calls: AtomicUsize::new(0),
        })
    }
}

impl Runner for WritesElf {
    fn run(
        &self,
        build: &PlatformBuild,
        log: &mut (dyn std::io::Write + Send),
    ) -> Result<(), run::RunFailure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let machine = self.machines[&build.platform];
        writeln!(log, "linking hello for {}", build.platform).unwrap();
        std::fs::write(build.out_dir.join("hello"), static_exe(machine)).unwrap();
        Ok(())
    }
}

const PROJECT: &str = r#"
[image]
name = "hello"
platforms = ["linux/amd64", "linux/arm64", "linux/riscv64"]

[build]
command = "make"

[[artifact]]
from = "hello"
to = "/usr/bin/hello"
mode = "0755"
"#;

/// A project directory holding `toml` as its rcross.toml.
fn project_dir(toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rcross.toml"), toml).unwrap();
    dir
}

fn request(dir: &Path) -> Request {
    Request {
        dir: dir.to_path_buf(),
        compression: "gzip".into(),
        compression_level: None,
        jobs: Some(2),
        source_date_epoch: Some("1700000000".into()),
        ..Request::default()
    }
}

fn job(req: &Request) -> Job {
    let project = resolve::load_project(req).unwrap();
    resolve(project, req, None, &Recorded::default()).unwrap()
}

/// Every platform of the job built on the host (as a cross or native plan would).
fn host_plan(job: &Job) -> Plan {
    Plan {
        platforms: job
            .platforms
            .iter()
            .map(|&platform| PlatformPlan {
                item: PlanItem {
                    platform,
                    lang: Lang::C,
                    strategy: Strategy::Cross,
                    reason: "a cross compiler is installed".into(),
                    toolchain: Some("gcc (fake)".into()),
                    rust_target: None,
                    run: "-".into(),
                    fixes: Vec::new(),
                },
                placement: Placement::Host,
                env: vec![("CC".into(), "fake-cc".into())],
            })
            .collect(),
    }
}

fn assigned(plan: &Plan, runner: Arc<dyn Runner>) -> Vec<Assignment> {
    plan.platforms
        .iter()
        .map(|pp| Assignment {
            runner: Ok(runner.clone()),
            strategy: pp.item.strategy,
            runner_name: "fake".into(),
            what: "building (fake)".into(),
            build_image: None,
        })
        .collect()
}

/// `[verify] ignore` names an artifact on purpose for another CPU: it is not judged.
#[test]
fn an_artifact_verify_ignore_names_is_not_judged() {
    let dir = project_dir(PROJECT);
    let out = tempfile::tempdir().unwrap();
    let mut req = request(dir.path());
    req.output = Some(format!("oci:{}", out.path().join("layout").display()));
    let mut job = job(&req);
    let plan = host_plan(&job);
    let runner = WritesElf::new(&[
        ("linux/amd64", EM_X86_64),
        ("linux/arm64", EM_X86_64),
        ("linux/riscv64", EM_RISCV),
    ]);
    job.project.verify_ignore = vec!["usr/bin/*".into()];
    let reporter = Recorded::default();
    let done = execute(
        &job,
        &plan,
        &assigned(&plan, runner.clone()),
        Services::default(),
        &reporter,
    );
    assert!(done.is_ok(), "{done:?}");
    job.project.verify_ignore = vec!["usr/lib/**".into()];
    let stopped = execute(
        &job,
        &plan,
        &assigned(&plan, runner),
        Services::default(),
        &reporter,
    );
    assert!(
        matches!(stopped, Err(Stopped::Rejected(_))),
        "another path: still judged"
    );
}

#[test]
fn a_platform_whose_runner_returns_another_architecture_stops_at_verify_and_publishes_nothing() {
    let dir = project_dir(PROJECT);
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    let mut req = request(dir.path());
    req.output = Some(format!("oci:{}", layout.display()));
    req.metadata_file = Some(out.path().join("metadata.json"));
    req.digest_file = Some(out.path().join("digest"));
    let job = job(&req);
    let plan = host_plan(&job);
    // linux/arm64 gets an x86-64 binary.
    let runner = WritesElf::new(&[
        ("linux/amd64", EM_X86_64),
        ("linux/arm64", EM_X86_64),
        ("linux/riscv64", EM_RISCV),
    ]);
    let reporter = Recorded::default();
    let stopped = execute(
        &job,
        &plan,
        &assigned(&plan, runner.clone()),
        Services::default(),
        &reporter,
    )
    .unwrap_err();
    let Stopped::Rejected(rejected) = stopped else {
        panic!("not rejected: {stopped:?}");
    };
    assert_eq!(
        runner.calls.load(Ordering::SeqCst),
        3,
        "every platform built"
    );
    assert_eq!(rejected.failure.code, exit::CHECK_FAILED);
    let message = rejected.failure.error.to_string();
    assert!(
        message.contains("nothing was assembled or pushed")
            && message.contains("linux/arm64: /usr/bin/hello:"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 2, "one finding: {message}");
    let report = &rejected.report;
    assert!(!report.ok);
    assert_eq!(report.index_digest, None);
    let bad: Vec<Platform> = report
        .platforms
        .iter()
        .filter(|r| !r.findings.is_empty())
        .map(|r| r.platform)
        .collect();
    assert_eq!(bad, [p("linux/arm64")]);
    // Nothing was written but the report.
    assert!(!layout.exists(), "the layout was created");
    assert!(!out.path().join("digest").exists());
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("metadata.json")).unwrap()).unwrap();
    assert_eq!(written["ok"], false);
    let lines = reporter.lines();
    assert!(
        lines.iter().all(|l| !l.starts_with("image index")),
        "{lines:?}"
    );
}

#[test]
fn matching_binaries_are_assembled_into_an_index_and_reported() {
    let dir = project_dir(&PROJECT.replace(
        r#"["linux/amd64", "linux/arm64", "linux/riscv64"]"#,
        r#"["linux/amd64", "linux/arm64"]"#,
    ));
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    let mut req = request(dir.path());
    req.output = Some(format!("oci:{}", layout.display()));
    req.tags = vec!["127.0.0.1:5000/hello:1".into()];
    let job = job(&req);
    let plan = host_plan(&job);
    let runner = WritesElf::new(&[("linux/amd64", EM_X86_64), ("linux/arm64", EM_AARCH64)]);
    let reporter = Recorded::default();
    let report = execute(
        &job,
        &plan,
        &assigned(&plan, runner),
        Services::default(),
        &reporter,
    )
    .unwrap();
    assert!(report.ok);
    let digest = report.index_digest.clone().unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert!(index.to_string().contains(&digest), "{index}");
    let manifests: Vec<&str> = report
        .platforms
        .iter()
        .map(|r| r.manifest.as_deref().unwrap())
        .collect();
    assert_eq!(manifests.len(), 2);
    for r in &report.platforms {
        assert_eq!(r.files, ["/usr/bin/hello"]);
        assert_eq!(r.runner, "fake");
        assert!(r.findings.is_empty(), "{:?}", r.findings);
    }
    let lines = reporter.lines();
    for want in [
        "[linux/arm64] building (fake)",
        "[linux/arm64] | linking hello for linux/arm64",
        "built 2 platform(s)",
        "image index sha256:",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "{want}: {lines:?}"
        );
    }
    // The same inputs give the same index.
    let again = execute(
        &job,
        &plan,
        &assigned(
            &plan,
            WritesElf::new(&[("linux/amd64", EM_X86_64), ("linux/arm64", EM_AARCH64)]),
        ),
        Services::default(),
        &Recorded::default(),
    )
    .unwrap();
    assert_eq!(again.index_digest, Some(digest));
}

#[test]
fn the_default_output_directory_ignores_itself_in_git() {
    let dir = project_dir(&PROJECT.replace(
        r#"["linux/amd64", "linux/arm64", "linux/riscv64"]"#,
        r#"["linux/amd64"]"#,
    ));
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("git runs (install git)");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    git(&["init", "-q"]);
    let job = job(&request(dir.path()));
    assert_eq!(job.state_dir, Some(dir.path().join(".rcross")));
    let plan = host_plan(&job);
    let runner = WritesElf::new(&[("linux/amd64", EM_X86_64)]);
    let report = execute(
        &job,
        &plan,
        &assigned(&plan, runner),
        Services::default(),
        &Recorded::default(),
    )
    .unwrap();
    assert!(report.ok);
    assert!(dir.path().join(".rcross/oci/index.json").is_file());
    let ignore = std::fs::read_to_string(dir.path().join(".rcross/.gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "*"), "{ignore}");
    // git sees the project's own file and nothing of what rcross wrote.
    assert_eq!(
        git(&["status", "--porcelain", "--untracked-files=all"]),
        "?? rcross.toml\n"
    );

    // A user's own .gitignore there is kept; an explicit --output makes no state directory.
    std::fs::write(dir.path().join(".rcross/.gitignore"), "oci/\n").unwrap();
    execute(
        &job,
        &plan,
        &assigned(&plan, WritesElf::new(&[("linux/amd64", EM_X86_64)])),
        Services::default(),
        &Recorded::default(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".rcross/.gitignore")).unwrap(),
        "oci/\n"
    );
    let mut req = request(dir.path());
    req.output = Some(format!("oci:{}", dir.path().join("elsewhere").display()));
    assert_eq!(self::job(&req).state_dir, None);
}

#[test]
fn a_cached_platform_skips_the_runner() {
    let dir = project_dir(PROJECT);
    let out = tempfile::tempdir().unwrap();
    let mut req = request(dir.path());
    req.platforms = vec![p("linux/arm64")];
    req.output = Some(format!("oci:{}", out.path().join("layout").display()));
    let job = job(&req);
    let plan = host_plan(&job);
    let caches = tempfile::tempdir().unwrap();
    let cache = BuildCache::at(caches.path());
    let project_digest = cache.project_digest(dir.path()).unwrap();
    let cache = ProjectCache {
        cache,
        project_digest,
    };
    let runner = WritesElf::new(&[("linux/arm64", EM_AARCH64)]);
    let services = || Services {
        cache: Some(&cache),
        ..Services::default()
    };
    let first = Recorded::default();
    let built = execute(
        &job,
        &plan,
        &assigned(&plan, runner.clone()),
        services(),
        &first,
    )
    .unwrap();
    assert!(!built.platforms[0].cached);
    let second = Recorded::default();
    let cached = execute(
        &job,
        &plan,
        &assigned(&plan, runner.clone()),
        services(),
        &second,
    )
    .unwrap();
    assert_eq!(
        runner.calls.load(Ordering::SeqCst),
        1,
        "the second build ran"
    );
    assert!(cached.platforms[0].cached);
    assert_eq!(cached.platforms[0].seconds, 0.0);
    assert_eq!(cached.index_digest, built.index_digest);
    let lines = second.lines();
    assert!(
        lines.contains(&"[linux/arm64] cached".to_string())
            && lines.contains(&"linux/arm64: cached (the build command did not run)".to_string()),
        "{lines:?}"
    );
}

/// How executing `plan` failed (it must fail).
fn failure_of(job: &Job, plan: &Plan, assignments: &[Assignment]) -> Failure {
    match execute(
        job,
        plan,
        assignments,
        Services::default(),
        &Recorded::default(),
    ) {
        Err(Stopped::Failed(f)) => f,
        _ => panic!("the build did not fail"),
    }
}

#[test]
fn a_failing_build_with_a_long_output_repeats_its_last_twenty_lines() {
    // 200,000 lines (about 2.5 MB) in writes of every size: the error holds exactly the last 20.
    struct Noisy;
    impl Runner for Noisy {
        fn run(
            &self,
            _build: &PlatformBuild,
            log: &mut (dyn std::io::Write + Send),
        ) -> Result<(), run::RunFailure> {
            let text: String = (0..200_000).map(|i| format!("line {i}\n")).collect();
            let mut rest = text.as_bytes();
            let mut size = 1;
            while !rest.is_empty() {
                let (now, later) = rest.split_at(size.min(rest.len()));
                log.write_all(now).unwrap();
                rest = later;
                size = size * 7 % 100_003 + 1;
            }
            Err(run::RunFailure::Exited("`make` exited with 2".into()))
        }
    }
    let dir = project_dir(PROJECT);
    let mut req = request(dir.path());
    req.platforms = vec![p("linux/arm64")];
    let job = job(&req);
    let plan = host_plan(&job);
    let assignments = assigned(&plan, Arc::new(Noisy));
    let f = failure_of(&job, &plan, &assignments);
    let last: Vec<String> = (199_980..200_000).map(|i| format!("line {i}")).collect();
    assert_eq!(
        f.error.to_string(),
        format!(
            "the build failed for 1 platform(s):\nlinux/arm64: `make` exited with 2:\n    {}",
            last.join("\n    ")
        )
    );
}

#[test]
fn a_failing_build_names_its_platform_and_the_tail_of_its_log() {
    struct Fails;
    impl Runner for Fails {
        fn run(
            &self,
            build: &PlatformBuild,
            log: &mut (dyn std::io::Write + Send),
        ) -> Result<(), run::RunFailure> {
            if build.platform == p("linux/arm64") {
                writeln!(log, "cc: error: no such file").unwrap();
                return Err(run::RunFailure::Exited("`make` exited with 2".into()));
            }
            std::fs::write(build.out_dir.join("hello"), static_exe(EM_X86_64)).unwrap();
            Ok(())
        }
    }
    let dir = project_dir(PROJECT);
    let mut req = request(dir.path());
    req.platforms = vec![p("linux/amd64"), p("linux/arm64")];
    let job = job(&req);
    let plan = host_plan(&job);
    let mut assignments = assigned(&plan, Arc::new(Fails));
    let reporter = Recorded::default();
    let Err(Stopped::Failed(f)) =
        execute(&job, &plan, &assignments, Services::default(), &reporter)
    else {
        panic!("the build did not fail");
    };
    assert_eq!(f.code, exit::CHECK_FAILED);
    assert_eq!(
        f.error.to_string(),
        "the build failed for 1 platform(s):\nlinux/arm64: `make` exited with 2:\n    cc: error: no such file"
    );
    assert!(reporter
        .lines()
        .contains(&"[linux/arm64] FAILED (details below)".to_string()));
    // A platform without a runner fails with the reason it has none.
    assignments[0].runner = Err("builder tcp://b:2375 is unreachable".into());
    let f = failure_of(&job, &plan, &assignments);
    assert!(
        f.error
            .to_string()
            .contains("linux/amd64: builder tcp://b:2375 is unreachable"),
        "{}",
        f.error
    );
}

/// A base image held in memory: one manifest per platform, one layer each.
struct MemBase {
    root: Vec<u8>,
    blobs: BTreeMap<String, Vec<u8>>,
}

impl MemBase {
    fn new(archs: &[&str]) -> MemBase {
        let mut blobs = BTreeMap::new();
        let mut add = |bytes: Vec<u8>| {
            let d = crate::oci::sha256_digest(&bytes);
            blobs.insert(d.clone(), bytes);
            d
        };
        let mut entries = Vec::new();
        for arch in archs {
            let config = format!(
                r#"{{"architecture":"{arch}","os":"linux","config":{{"Env":["PATH=/bin"]}},"rootfs":{{"type":"layers","diff_ids":["sha256:{arch}"]}}}}"#
            );
            let (config_len, c) = (config.len(), add(config.into_bytes()));
            let manifest = format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{c}","size":{config_len}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:l{arch}","size":7}}]}}"#
            );
            let (manifest_len, m) = (manifest.len(), add(manifest.into_bytes()));
            entries.push(format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{m}","size":{manifest_len},"platform":{{"os":"linux","architecture":"{arch}"}}}}"#
            ));
        }
        let root = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
            entries.join(",")
        );
        MemBase {
            root: root.into_bytes(),
            blobs,
        }
    }
}

impl ImageSource for MemBase {
    fn describe(&self) -> String {
        "mem-base".into()
    }
    fn root(&self) -> Result<(String, Vec<u8>), SourceError> {
        Ok((
            "application/vnd.oci.image.index.v1+json".into(),
            self.root.clone(),
        ))
    }
    fn blob_bytes(&self, digest: &str, _max: u64) -> Result<Vec<u8>, SourceError> {
        self.blobs
            .get(digest)
            .cloned()
            .ok_or(SourceError::NotFound {
                what: digest.into(),
            })
    }
    fn open_blob(&self, digest: &str) -> Result<Box<dyn std::io::Read + Send>, SourceError> {
        Ok(Box::new(std::io::Cursor::new(self.blob_bytes(digest, 0)?)))
    }
}

fn mem_base(archs: &[&str]) -> Option<BaseImage> {
    Some(BaseImage {
        source: Box::new(MemBase::new(archs)),
        reference: Some("127.0.0.1:5000/base:1".parse().unwrap()),
        name: Some("127.0.0.1:5000/base:1".into()),
    })
}

#[test]
fn a_job_takes_platforms_tags_outputs_and_bases_from_the_project_and_the_flags() {
    let dir = project_dir(PROJECT);
    let mut req = request(dir.path());
    req.platforms = vec![p("linux/arm64"), p("linux/amd64")];
    req.tags = vec![
        "127.0.0.1:5000/hello:1".into(),
        "127.0.0.1:5000/hello".into(),
    ];
    req.build_args = vec!["A=1".into(), "B=x=y".into()];
    req.output = Some("oci-archive:hello.tar".into());
    req.builders = vec!["linux/arm64=tcp://10.0.0.2:2375".into()];
    req.build_image = Some("debian:12".into());
    let project = resolve::load_project(&req).unwrap();
    let job = resolve(project, &req, None, &Recorded::default()).unwrap();
    assert_eq!(job.platforms, [p("linux/arm64"), p("linux/amd64")]);
    let tags: Vec<String> = job.tags.iter().map(|t| t.to_string()).collect();
    assert_eq!(tags, ["127.0.0.1:5000/hello:1", "127.0.0.1:5000/hello"]);
    assert_eq!(job.output, Output::OciArchive("hello.tar".into()));
    assert_eq!(job.epoch, 1_700_000_000);
    assert_eq!(
        job.build_args,
        [("A".into(), "1".into()), ("B".into(), "x=y".into())]
    );
    assert_eq!(job.builders[&p("linux/arm64")], "tcp://10.0.0.2:2375");
    assert_eq!(job.project.build.image.as_deref(), Some("debian:12"));
    assert_eq!(job.lang, Lang::C);
    assert!(job.cache && job.store_reused);

    let reporter = Recorded::default();
    let base = resolve_base(&job, mem_base(&["amd64", "arm64"]), &reporter)
        .unwrap()
        .unwrap();
    let manifests: Vec<(Platform, String)> = base
        .parts
        .iter()
        .map(|part| (part.platform, part.layers[0].digest.clone()))
        .collect();
    assert_eq!(
        manifests,
        [
            (p("linux/arm64"), "sha256:larm64".to_string()),
            (p("linux/amd64"), "sha256:lamd64".to_string())
        ]
    );
    let lines = reporter.lines();
    assert_eq!(lines[0], "resolving base image mem-base");
    assert!(
        lines[1].starts_with("[linux/arm64] base sha256:"),
        "{lines:?}"
    );

    // A base without one of the platforms is the project's problem, named.
    let Err(e) = resolve_base(&job, mem_base(&["amd64"]), &Recorded::default()) else {
        panic!("a base without linux/arm64 was taken");
    };
    assert_eq!(e.code, exit::USAGE);
    assert!(e.error.to_string().contains("image.base"), "{}", e.error);
}

#[test]
fn flags_that_cannot_work_together_are_refused_before_anything_runs() {
    let dir = project_dir(PROJECT);
    for (change, want) in [
        (
            (|r: &mut Request| r.push = true) as fn(&mut Request),
            "--push needs at least one -t",
        ),
        (
            |r| r.tags = vec![format!("h/a@sha256:{}", "0".repeat(64))],
            "cannot carry a digest",
        ),
        (|r| r.compression = "xz".into(), "use gzip or zstd"),
        (|r| r.build_args = vec!["=1".into()], "use KEY=VALUE"),
        (|r| r.output = Some("tar:x".into()), "use oci:DIR"),
        (
            |r| r.output = Some("docker-archive:x.tar".into()),
            "holds one platform",
        ),
        (
            |r| r.container = Some("always".into()),
            "need [build] image",
        ),
        (
            |r| r.builders = vec!["linux/arm64=tcp://h:2375".into()],
            "a builder ([builders] or --builder)",
        ),
        (
            |r| r.builders = vec!["linux/arm64".into()],
            "use PLATFORM=ENDPOINT",
        ),
        (
            |r| r.source_date_epoch = Some("yesterday".into()),
            "SOURCE_DATE_EPOCH",
        ),
    ] {
        let mut req = request(dir.path());
        change(&mut req);
        let project = resolve::load_project(&req).unwrap();
        let e = resolve(project, &req, None, &Recorded::default()).unwrap_err();
        assert_eq!(e.code, exit::USAGE, "{want}");
        assert!(e.error.to_string().contains(want), "{want}: {}", e.error);
    }
}

#[test]
fn git_tags_and_labels_join_the_flags_and_the_file_wins() {
    let dir = project_dir(&format!(
        "{PROJECT}\n[config]\nlabels = {{ \"org.opencontainers.image.version\" = \"mine\" }}\n"
    ));
    let mut req = request(dir.path());
    req.tags = vec!["r.example/hello:edge".into()];
    let git = crate::tags::Computed {
        tags: vec!["1.2.3".into()],
        references: vec![
            "r.example/hello:1.2.3".into(),
            "r.example/hello:edge".into(),
        ],
        version: "1.2.3".into(),
        release: Some("v1.2.3".into()),
        branch: None,
        commit: "0123456789abcdef".into(),
        dirty: false,
        source_date_epoch: 1_600_000_000,
        labels: [
            (
                "org.opencontainers.image.version".to_string(),
                "1.2.3".to_string(),
            ),
            (
                "org.opencontainers.image.revision".to_string(),
                "0123".to_string(),
            ),
        ]
        .into(),
    };
    let project = resolve::load_project(&req).unwrap();
    let reporter = Recorded::default();
    let job = resolve(project, &req, Some(git), &reporter).unwrap();
    let tags: Vec<String> = job.tags.iter().map(|t| t.to_string()).collect();
    assert_eq!(tags, ["r.example/hello:edge", "r.example/hello:1.2.3"]);
    assert_eq!(job.epoch, 1_600_000_000, "git's epoch, not the variable");
    let labels = &job.project.image.labels;
    assert_eq!(labels["org.opencontainers.image.version"], "mine");
    assert_eq!(labels["org.opencontainers.image.revision"], "0123");
    assert_eq!(
        job.project.image.annotations["org.opencontainers.image.version"],
        "1.2.3"
    );
    assert_eq!(
        reporter.lines(),
        ["git: version 1.2.3, commit 0123456789abcdef, SOURCE_DATE_EPOCH 1600000000, tags 1.2.3"]
    );
}

fn facts(handler_for: &[&str]) -> crate::toolchain::Facts {
    let gcc = |triple: &str| crate::toolchain::Toolchain {
        kind: crate::toolchain::CompilerKind::Gcc,
        triple: triple.into(),
        cc: vec![format!("/usr/bin/{triple}-gcc")],
        cxx: None,
        ar: None,
        ranlib: None,
        strip: None,
        ld: None,
        cflags: Vec::new(),
        ldflags: Vec::new(),
        sysroot: None,
        rust_target: None,
    };
    let target =
        |s: &str, toolchains: Vec<crate::toolchain::Toolchain>| crate::toolchain::TargetFacts {
            platform: p(s),
            toolchains,
            incomplete: Vec::new(),
            emulator: None,
            handler: handler_for.contains(&s).then(|| "qemu".to_string()),
        };
    crate::toolchain::Facts {
        host: p("linux/amd64"),
        native: vec![p("linux/amd64")],
        package_manager: None,
        go: None,
        rust_targets: None,
        zig: None,
        pip: false,
        targets: vec![
            target("linux/amd64", Vec::new()),
            target("linux/arm64", vec![gcc("aarch64-linux-gnu")]),
            target("linux/riscv64", Vec::new()),
        ],
    }
}

#[test]
fn the_plan_places_each_platform_and_gives_it_its_environment() {
    let catalog = crate::toolchain::Catalog::load(Path::new("/nonexistent")).unwrap();
    let dir = project_dir(&PROJECT.replace(
        "command = \"make\"",
        "command = \"make\"\nimage = \"debian:12\"",
    ));
    let mut req = request(dir.path());
    req.platforms = vec![p("linux/amd64"), p("linux/arm64"), p("linux/riscv64")];
    req.build_args = vec!["EXTRA=1".into()];
    let job = job(&req);
    let host = crate::host::linux::LinuxHost;
    let planned = plan(
        &job,
        &facts(&["linux/riscv64"]),
        &catalog,
        &host,
        &Recorded::default(),
    )
    .unwrap();
    let placed: Vec<(Platform, Strategy, Placement)> = planned
        .platforms
        .iter()
        .map(|pp| (pp.item.platform, pp.item.strategy, pp.placement.clone()))
        .collect();
    assert_eq!(
        placed,
        [
            (p("linux/amd64"), Strategy::Native, Placement::Host),
            (p("linux/arm64"), Strategy::Cross, Placement::Host),
            (
                p("linux/riscv64"),
                Strategy::Emulate,
                Placement::Container { emulated: true }
            ),
        ]
    );
    let env = |i: usize, k: &str| {
        planned.platforms[i]
            .env
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        env(1, "CC").as_deref(),
        Some("/usr/bin/aarch64-linux-gnu-gcc")
    );
    assert_eq!(env(2, "CC"), None, "a container brings its own compiler");
    assert_eq!(env(2, "GOARCH").as_deref(), Some("riscv64"));
    for i in 0..3 {
        assert_eq!(env(i, "EXTRA").as_deref(), Some("1"));
    }

    // Without a handler, riscv64 cannot build here: the error says how to fix it.
    let e = plan(&job, &facts(&[]), &catalog, &host, &Recorded::default()).unwrap_err();
    assert_eq!(e.code, exit::ENVIRONMENT);
    let text = e.error.to_string();
    assert!(
        text.contains("linux/riscv64:")
            && text.contains("sudo rcross setup --platform linux/riscv64"),
        "{text}"
    );
}

#[test]
fn builder_flags_name_the_problem() {
    use resolve::parse_builder;
    let (p, e) = parse_builder("linux/arm64=tcp://127.0.0.1:2375").unwrap();
    assert_eq!(p.to_string(), "linux/arm64");
    assert_eq!(e, "tcp://127.0.0.1:2375");
    for (bad, want) in [
        ("linux/arm64", "use PLATFORM=ENDPOINT"),
        ("linux/arm46=tcp://h:1", "unknown platform"),
        ("linux/arm64=h:2375", "not a Docker endpoint"),
    ] {
        let e = parse_builder(bad).unwrap_err();
        assert_eq!(e.code, exit::USAGE);
        assert!(e.error.to_string().contains(want), "{bad}: {}", e.error);
    }
}
