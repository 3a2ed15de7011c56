//! The CI recipes in examples/ci run as written: every step of each GitHub Actions and GitLab
//! CI job that calls examples/ci/release.sh is taken from the YAML file, line by line, and run
//! with `sh -c` in a temporary git repository of a small two-platform project, with the
//! variables that CI service sets, against Debian's docker-registry behind htpasswd auth. A
//! recipe that drifts from the CLI fails here. (Installing rcross and the cross toolchains are
//! the steps not run: the test runs the rcross it was built with.)
//!
//! `release.sh setup` runs `sudo rcross setup`; `sudo` here is a script that runs its command
//! as root of a private user+mount namespace with its own binfmt_misc, so the machine's
//! handler table is never touched. `docker` on that PATH is a script that records being called,
//! and a step that calls it fails: the pipelines need no docker CLI.

mod common_registry;
mod prereq;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common_registry::RealRegistry;
use serde_json::Value;

const USER: &str = "ci-bot";
const PASSWORD: &str = "recipe-pw-0815";
/// Variables of the machine running the test that would change what the recipes do, besides
/// the CI variables the tag policy reads ([`rcross::tags::CiEnv::NAMES`]).
const CLEARED: &[&str] = &[
    "GITHUB_ACTOR",
    "CI_REGISTRY",
    "CI_REGISTRY_IMAGE",
    "CI_REGISTRY_USER",
    "CI_REGISTRY_PASSWORD",
    "SOURCE_DATE_EPOCH",
    "IMAGE",
    "REGISTRY",
    "REGISTRY_USER",
    "REGISTRY_PASSWORD",
    "PLATFORMS",
    "TAG_FLAGS",
    "DEFAULT_BRANCH",
    "DOCKER_CONFIG",
];

fn recipes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci")
}

/// The `release.sh` steps of each job of a recipe, in order: (job, command lines).
fn steps(recipe: &str) -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(recipes().join(recipe)).unwrap();
    let not_jobs = [
        "jobs",
        "on",
        "push",
        "variables",
        "default",
        "stages",
        "env",
        "permissions",
    ];
    // GitHub's jobs are keys of `jobs:`, GitLab's are top-level keys.
    let job_indent = if text.lines().any(|l| l == "jobs:") {
        2
    } else {
        0
    };
    let mut jobs: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if indent == job_indent && trimmed.ends_with(':') && !trimmed.starts_with('-') {
            let name = trimmed.trim_end_matches(':');
            if !not_jobs.contains(&name) && !name.contains(' ') {
                jobs.push((name.to_string(), Vec::new()));
            }
            continue;
        }
        if !trimmed.contains("examples/ci/release.sh") || trimmed.starts_with('#') {
            continue;
        }
        let command = trimmed
            .strip_prefix("run:")
            .or_else(|| trimmed.strip_prefix("- run:"))
            .or_else(|| trimmed.strip_prefix('-'))
            .unwrap_or(trimmed)
            .trim()
            .to_string();
        jobs.last_mut()
            .unwrap_or_else(|| panic!("{recipe}: a step before any job: {line}"))
            .1
            .push(command);
    }
    jobs.retain(|(_, s)| !s.is_empty());
    assert!(!jobs.is_empty(), "{recipe} calls release.sh nowhere");
    jobs
}

/// The values of `key: VALUE` lines (matrix entries) of a recipe.
fn matrix(recipe: &str, key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(recipes().join(recipe)).unwrap();
    let values: Vec<String> = text
        .lines()
        .filter_map(|l| {
            l.trim()
                .trim_start_matches("- ")
                .strip_prefix(&format!("{key}: "))
                .map(|v| v.trim().to_string())
        })
        .filter(|v| v.starts_with("linux/"))
        .collect();
    assert!(!values.is_empty(), "{recipe}: no {key} in its matrix");
    values
}

struct World {
    dir: tempfile::TempDir,
    registry: RealRegistry,
    commit: String,
}

impl World {
    /// A git repository holding a copy-only project for linux/amd64 and linux/arm64 and
    /// examples/ci/release.sh, its remote on GitHub; the registry; a bin directory with rcross
    /// and the namespace `sudo`. `None` when a prerequisite is missing outside strict mode.
    fn new(branch: &str, tag: Option<&str>) -> Option<World> {
        World::with_project(branch, tag, false)
    }

    /// The same with a copy of examples/hello (C, three platforms) as the project.
    fn with_project(branch: &str, tag: Option<&str>, hello: bool) -> Option<World> {
        if !prereq::tool("git", "git")
            || !prereq::tool("skopeo", "skopeo")
            || !prereq::tool("unshare", "util-linux")
        {
            return None;
        }
        let namespaces = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "--", "sh", "-c"])
            .arg("d=$(mktemp -d) && mount -t binfmt_misc binfmt_misc $d && umount $d && rmdir $d")
            .status()
            .is_ok_and(|s| s.success());
        if !prereq::require(
            namespaces,
            "user+mount namespaces with a private binfmt_misc (Linux >= 6.7)",
        ) {
            return None;
        }
        let registry = RealRegistry::start_with_auth(USER, PASSWORD)?;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rcross"), bin.join("rcross")).unwrap();
        let sudo = bin.join("sudo");
        std::fs::write(
            &sudo,
            "#!/bin/sh\nexec unshare --user --map-root-user --mount -- sh -c \
             'mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && exec \"$@\"' sh \"$@\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&sudo, std::fs::Permissions::from_mode(0o755)).unwrap();
        // No docker CLI: one that only records that something called it.
        let docker = bin.join("docker");
        std::fs::write(
            &docker,
            format!(
                "#!/bin/sh\necho \"$@\" >> '{}'\nexit 127\n",
                dir.path().join("docker-called").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).unwrap();

        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("examples/ci")).unwrap();
        std::fs::copy(
            recipes().join("release.sh"),
            repo.join("examples/ci/release.sh"),
        )
        .unwrap();
        if hello {
            for f in ["rcross.toml", "Makefile", "hello.c"] {
                std::fs::copy(common_registry::example_hello().join(f), repo.join(f)).unwrap();
            }
        } else {
            std::fs::write(
                repo.join("rcross.toml"),
                r#"[image]
name = "app"
platforms = ["linux/amd64", "linux/arm64"]

[build]
command = 'printf "app for %s\n" "$RCROSS_PLATFORM" > "$RCROSS_OUT/app.txt"'

[[artifact]]
from = "app.txt"
to = "/srv/app.txt"
mode = "0644"
"#,
            )
            .unwrap();
        }
        std::fs::write(repo.join(".gitignore"), ".rcross/\nimage.json\ndigests/\n").unwrap();
        let world = World {
            dir,
            registry,
            commit: String::new(),
        };
        world.git(&["init", "-q", "-b", branch]);
        world.git(&["remote", "add", "origin", "https://github.com/team/app.git"]);
        world.git(&["add", "-A"]);
        world.git(&["commit", "-q", "-m", "app"]);
        if let Some(tag) = tag {
            world.git(&["tag", "-a", "-m", tag, tag]);
        }
        let commit = world.git(&["rev-parse", "HEAD"]);
        Some(World { commit, ..world })
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(self.repo())
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .env("GIT_AUTHOR_DATE", "@1700000000 +0000")
            .env("GIT_COMMITTER_DATE", "@1700000000 +0000")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn image(&self) -> String {
        format!("{}/team/app", self.registry.addr)
    }

    /// Runs one step as the CI would: `sh -c LINE` in the checkout with `env`.
    fn run(&self, line: &str, env: &[(&str, String)]) {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new("sh");
        command.arg("-c").arg(line).current_dir(self.repo());
        for v in rcross::tags::CiEnv::NAMES.iter().chain(CLEARED) {
            command.env_remove(v);
        }
        let out = command
            .env("PATH", path)
            .env("CI", "true")
            .env("DOCKER_CONFIG", self.dir.path().join("docker"))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("$ {line}\n{all}");
        assert!(out.status.success(), "step `{line}` failed:\n{all}");
        assert!(
            !self.dir.path().join("docker-called").exists(),
            "step `{line}` ran the docker CLI"
        );
        assert!(!all.contains(PASSWORD), "the password was printed: {all}");
    }

    /// `skopeo inspect` (raw, or --config) of IMAGE:tag with the registry's credentials.
    fn inspect(&self, tag: &str, what: &str) -> Value {
        let mut args = vec!["inspect", "--tls-verify=false"];
        if !what.is_empty() {
            args.push(what);
        }
        let creds = format!("{USER}:{PASSWORD}");
        let image = format!("docker://{}:{tag}", self.image());
        args.extend(["--creds", &creds, &image]);
        let out = Command::new("skopeo").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Every tag names the same two-platform index, whose amd64 image has the labels.
    fn check_pushed(&self, tags: &[String], version: &str) {
        self.check_pushed_platforms(tags, version, &["linux/amd64", "linux/arm64/v8"]);
    }

    fn check_pushed_platforms(&self, tags: &[String], version: &str, platforms: &[&str]) {
        let first = self.inspect(&tags[0], "--raw");
        assert_eq!(common_registry::platforms_of(&first), platforms, "{first}");
        for tag in tags {
            assert_eq!(self.inspect(tag, "--raw"), first, "{tag}");
        }
        let config = self.inspect(&tags[0], "--config");
        let labels = &config["config"]["Labels"];
        assert_eq!(labels["org.opencontainers.image.version"], version);
        assert_eq!(
            labels["org.opencontainers.image.revision"],
            self.commit.as_str()
        );
        assert_eq!(
            labels["org.opencontainers.image.source"],
            "https://github.com/team/app"
        );
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    }
}

fn github_env(world: &World, ref_type: &str, ref_name: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GITHUB_REF_TYPE", ref_type.to_string()),
        ("GITHUB_REF_NAME", ref_name.to_string()),
        ("GITHUB_RUN_NUMBER", "31".to_string()),
        ("GITHUB_REPOSITORY", "team/app".to_string()),
        ("GITHUB_SERVER_URL", "https://github.com".to_string()),
        ("GITHUB_ACTOR", USER.to_string()),
        // The job's `env:` (secrets.GITHUB_TOKEN, the default branch) and the image: the
        // recipe's default is ghcr.io/<repository>, here the local registry.
        ("REGISTRY_PASSWORD", PASSWORD.to_string()),
        ("DEFAULT_BRANCH", "main".to_string()),
        ("IMAGE", world.image()),
    ]
}

/// The single GitHub Actions job on a release tag of examples/hello: setup, login, tags, build
/// (C, cross-compiled for three platforms) and push under 2.1.0, 2.1, 2, latest and build-31,
/// with the version, revision, source and created labels.
#[test]
fn github_actions_job_on_a_release_tag() {
    let Some(world) = World::with_project("main", Some("v2.1.0"), true) else {
        return;
    };
    // actions/checkout checks a tag out as a detached HEAD.
    world.git(&["checkout", "-q", "--detach", "v2.1.0"]);
    let jobs = steps("github-actions.yml");
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let env = github_env(&world, "tag", "v2.1.0");
    for line in &jobs[0].1 {
        world.run(line, &env);
    }
    let tags: Vec<String> = ["2.1.0", "2.1", "2", "latest", "build-31"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    world.check_pushed_platforms(
        &tags,
        "2.1.0",
        &["linux/amd64", "linux/arm64/v8", "linux/arm/v7"],
    );
    let config = world.inspect("2.1.0", "--config");
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.title"],
        "hello"
    );
    let meta: Value =
        serde_json::from_slice(&std::fs::read(world.repo().join("image.json")).unwrap()).unwrap();
    assert_eq!(meta["tags"].as_array().unwrap().len(), 5, "{meta}");
}

/// The matrix recipe on the default branch: each platform job pushes by digest, the join job
/// makes the index under main, edge, sha-<short> and build-31.
#[test]
fn github_actions_matrix_joins_platforms_pushed_by_digest() {
    let Some(world) = World::new("main", None) else {
        return;
    };
    let jobs = steps("github-actions-matrix.yml");
    let names: Vec<&str> = jobs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["platform", "join"]);
    let env = github_env(&world, "branch", "main");
    for platform in matrix("github-actions-matrix.yml", "platform") {
        let mut env = env.clone();
        env.push(("PLATFORM", platform));
        for line in &jobs[0].1 {
            world.run(line, &env);
        }
    }
    assert_eq!(
        std::fs::read_dir(world.repo().join("digests"))
            .unwrap()
            .count(),
        2
    );
    for line in &jobs[1].1 {
        world.run(line, &env);
    }
    let short = &world.commit[..7];
    let tags: Vec<String> = ["main", "edge", &format!("sha-{short}"), "build-31"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    world.check_pushed(&tags, short);
}

fn gitlab_env(world: &World, branch: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CI_REGISTRY", world.registry.addr.clone()),
        ("CI_REGISTRY_IMAGE", world.image()),
        ("CI_REGISTRY_USER", USER.to_string()),
        ("CI_REGISTRY_PASSWORD", PASSWORD.to_string()),
        ("CI_PIPELINE_IID", "7".to_string()),
        ("CI_COMMIT_BRANCH", branch.to_string()),
        ("CI_COMMIT_REF_NAME", branch.to_string()),
        ("CI_DEFAULT_BRANCH", "main".to_string()),
    ]
}

/// GitLab's `image` job on a feature branch (detached, as GitLab checks out), with only
/// GitLab's own variables: feature-login, sha-<short>, build-7, no edge. Then its matrix
/// variant on the same commit adds the same index again under the same tags.
#[test]
fn gitlab_jobs_on_a_branch() {
    let Some(world) = World::new("main", None) else {
        return;
    };
    world.git(&["checkout", "-q", "-b", "feature/login"]);
    world.git(&["checkout", "-q", "--detach"]);
    let jobs = steps("gitlab-ci.yml");
    let names: Vec<&str> = jobs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["image", "platform", "join"]);
    let env = gitlab_env(&world, "feature/login");
    for line in &jobs[0].1 {
        world.run(line, &env);
    }
    let short = &world.commit[..7];
    let tags: Vec<String> = ["feature-login", &format!("sha-{short}"), "build-7"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    world.check_pushed(&tags, short);
    let single = world.inspect("feature-login", "--raw");

    for platform in matrix("gitlab-ci.yml", "PLATFORM") {
        let mut env = env.clone();
        env.push(("PLATFORM", platform));
        for line in &jobs[1].1 {
            world.run(line, &env);
        }
    }
    for line in &jobs[2].1 {
        world.run(line, &env);
    }
    // The same commit built per platform and joined: the same platform images.
    let joined = world.inspect("feature-login", "--raw");
    let digests = |v: &Value| -> Vec<String> {
        v["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["digest"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(digests(&joined), digests(&single));
}

/// `release.sh` on any other CI (no GitHub or GitLab variables): the documented variables only,
/// a branch checkout of the default branch gives main, edge and sha-<short>; a missing
/// setting is named.
#[test]
fn release_sh_on_a_plain_ci() {
    let Some(world) = World::new("main", None) else {
        return;
    };
    let env = vec![
        ("IMAGE", world.image()),
        ("REGISTRY_USER", USER.to_string()),
        ("REGISTRY_PASSWORD", PASSWORD.to_string()),
    ];
    for line in [
        "examples/ci/release.sh login",
        "examples/ci/release.sh build",
    ] {
        world.run(line, &env);
    }
    let short = &world.commit[..7];
    let tags: Vec<String> = ["main", "edge", &format!("sha-{short}")]
        .iter()
        .map(|s| s.to_string())
        .collect();
    world.check_pushed(&tags, short);

    let out = Command::new("sh")
        .args(["-c", "examples/ci/release.sh login"])
        .current_dir(world.repo())
        .env_remove("REGISTRY_PASSWORD")
        .env_remove("CI_REGISTRY_PASSWORD")
        .env("IMAGE", world.image())
        .env("REGISTRY_USER", USER)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("REGISTRY_PASSWORD is not set"));
}
