//! The tag policy on real git repositories: `rcross tags --json` in temporary repositories
//! made with `git init`, commits with fixed dates and tags (release, pre-release, an older
//! release after a newer one, a branch with slashes, a detached HEAD, a dirty tree, no tags),
//! and `rcross build --image … --push` pushing under the computed tags with the labels, to
//! Debian's docker-registry on a loopback port.

mod common_registry;
mod prereq;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const RCROSS: &str = env!("CARGO_BIN_EXE_rcross");
/// 2023-11-14T22:13:20Z, and each further commit a day later.
const T0: u64 = 1_700_000_000;

struct Repo {
    dir: tempfile::TempDir,
    commits: u64,
}

impl Repo {
    /// `None` when git is missing outside strict mode.
    fn new() -> Option<Repo> {
        if !prereq::tool("git", "git") {
            return None;
        }
        let repo = Repo {
            dir: tempfile::tempdir().unwrap(),
            commits: 0,
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&[
            "remote",
            "add",
            "origin",
            "https://ci-bot:s3cret@git.example.com/team/app.git",
        ]);
        Some(repo)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn git(&self, args: &[&str]) -> String {
        let date = format!("@{} +0000", self.time());
        let out = Command::new("git")
            .arg("-C")
            .arg(self.path())
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", self.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The time the next commit gets.
    fn time(&self) -> u64 {
        T0 + self.commits * 86_400
    }

    /// A commit changing `file`; returns its id.
    fn commit(&mut self, file: &str, text: &str) -> String {
        if let Some(parent) = Path::new(file).parent() {
            std::fs::create_dir_all(self.path().join(parent)).unwrap();
        }
        std::fs::write(self.path().join(file), text).unwrap();
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", text]);
        self.commits += 1;
        self.git(&["rev-parse", "HEAD"])
    }

    fn tag(&self, name: &str) {
        self.git(&["tag", "-a", "-m", name, name]);
    }

    fn rcross(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(RCROSS);
        command.args(args).current_dir(self.path());
        // The CI variables the policy reads, and SOURCE_DATE_EPOCH, are removed so the machine
        // running the test plays no part.
        for v in rcross::tags::CiEnv::NAMES
            .iter()
            .chain(&["SOURCE_DATE_EPOCH"])
        {
            command.env_remove(v);
        }
        let out = command.envs(env.iter().copied()).output().unwrap();
        eprintln!(
            "rcross {}\n--- stdout\n{}--- stderr\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn tags_json(&self, extra: &[&str], env: &[(&str, &str)]) -> Value {
        let mut args = vec!["--json", "tags"];
        args.extend_from_slice(extra);
        let out = self.rcross(&args, env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn tags(v: &Value) -> Vec<String> {
    v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn releases_prereleases_and_an_older_release_after_a_newer_one() {
    let Some(mut repo) = Repo::new() else { return };
    let first = repo.commit("a.txt", "one");
    repo.tag("v1.2.3");
    let v = repo.tags_json(&["--image", "127.0.0.1:5000/team/app"], &[]);
    assert_eq!(tags(&v), ["1.2.3", "1.2", "1", "latest"]);
    assert_eq!(v["references"][3], "127.0.0.1:5000/team/app:latest");
    assert_eq!(v["version"], "1.2.3");
    assert_eq!(v["release"], "v1.2.3");
    assert_eq!(v["commit"], first.as_str());
    assert_eq!(v["source_date_epoch"], T0);
    let labels = &v["labels"];
    assert_eq!(labels["org.opencontainers.image.version"], "1.2.3");
    assert_eq!(labels["org.opencontainers.image.revision"], first.as_str());
    assert_eq!(
        labels["org.opencontainers.image.source"],
        "https://git.example.com/team/app"
    );
    assert_eq!(
        labels["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    assert!(!v.to_string().contains("s3cret"), "credentials leaked: {v}");
    // SOURCE_DATE_EPOCH, when set, wins over the commit time.
    let pinned = repo.tags_json(&[], &[("SOURCE_DATE_EPOCH", "12345")]);
    assert_eq!(pinned["source_date_epoch"], 12345);

    repo.commit("a.txt", "two");
    repo.tag("v1.3.0-rc.1");
    let v = repo.tags_json(&[], &[]);
    assert_eq!(tags(&v), ["1.3.0-rc.1"]);

    repo.commit("a.txt", "three");
    repo.tag("v2.0.0");
    assert_eq!(
        tags(&repo.tags_json(&[], &[])),
        ["2.0.0", "2.0", "2", "latest"]
    );

    // A fix release of the 1.x line, tagged after 2.0.0: no latest.
    repo.git(&["checkout", "-q", "-b", "release/1.x", &first]);
    repo.commit("a.txt", "backport");
    repo.tag("v1.2.4");
    assert_eq!(tags(&repo.tags_json(&[], &[])), ["1.2.4", "1.2", "1"]);

    // 0.x never moves `0`.
    repo.commit("a.txt", "zero");
    repo.tag("v0.9.0");
    assert_eq!(tags(&repo.tags_json(&[], &[])), ["0.9.0", "0.9"]);
}

#[test]
fn branches_detached_heads_dirty_trees_and_no_tags() {
    let Some(mut repo) = Repo::new() else { return };
    let first = repo.commit("a.txt", "one");
    let short = &first[..7];

    // No tags at all: the version is the short commit.
    let v = repo.tags_json(&["--edge"], &[]);
    assert_eq!(tags(&v), ["main", "edge", &format!("sha-{short}")]);
    assert_eq!(v["version"], short);
    assert_eq!(v["branch"], "main");

    repo.git(&["checkout", "-q", "-b", "feature/login/OAuth#2"]);
    let second = repo.commit("b.txt", "two");
    let short2 = &second[..7];
    let v = repo.tags_json(&["--edge"], &[]);
    assert_eq!(
        tags(&v),
        ["feature-login-OAuth-2", &format!("sha-{short2}")]
    );

    // Detached: only the commit, unless the CI says which branch it builds.
    repo.git(&["checkout", "-q", "--detach", &second]);
    let v = repo.tags_json(&[], &[]);
    assert_eq!(tags(&v), [format!("sha-{short2}")]);
    assert_eq!(v["branch"], Value::Null);
    let v = repo.tags_json(
        &["--build-number", "auto"],
        &[
            ("GITHUB_REF_TYPE", "branch"),
            ("GITHUB_REF_NAME", "main"),
            ("GITHUB_RUN_NUMBER", "17"),
        ],
    );
    assert_eq!(tags(&v), ["main", &format!("sha-{short2}"), "build-17"]);
    let v = repo.tags_json(
        &["--build-number", "auto"],
        &[("CI_COMMIT_BRANCH", "dev"), ("CI_PIPELINE_IID", "9")],
    );
    assert_eq!(tags(&v), ["dev", &format!("sha-{short2}"), "build-9"]);

    // A tagged release with a dirty tree: only the marked version, never latest.
    repo.git(&["checkout", "-q", "main"]);
    repo.tag("v3.1.0");
    std::fs::write(repo.path().join("a.txt"), "changed").unwrap();
    let v = repo.tags_json(&[], &[]);
    assert_eq!(tags(&v), ["3.1.0-dirty"]);
    assert_eq!(v["dirty"], true);
    assert_eq!(
        v["labels"]["org.opencontainers.image.version"],
        "3.1.0-dirty"
    );
    // Untracked files do not make a tree dirty (build outputs, .rcross/).
    repo.git(&["checkout", "-q", "--", "a.txt"]);
    std::fs::write(repo.path().join("untracked.txt"), "x").unwrap();
    assert_eq!(
        tags(&repo.tags_json(&[], &[])),
        ["3.1.0", "3.1", "3", "latest"]
    );

    // A branch build after the release: version from git describe.
    repo.commit("a.txt", "after");
    let v = repo.tags_json(&[], &[]);
    assert!(
        v["version"].as_str().unwrap().starts_with("3.1.0-1-g"),
        "{v}"
    );
}

#[test]
fn bad_tags_and_no_git_are_errors_naming_the_value() {
    let Some(mut repo) = Repo::new() else { return };
    repo.commit("a.txt", "one");
    let out = repo.rcross(&["tags", "--extra-tag=-bad/tag"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"-bad/tag\""), "{err}");

    let plain = tempfile::tempdir().unwrap();
    let out = Command::new(RCROSS)
        .args(["tags", "--image", "r.example/x"])
        .current_dir(plain.path())
        .env("GIT_CEILING_DIRECTORIES", plain.path().parent().unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in a git work tree"));

    // A work tree git will not read (another owner, as in CI containers): git's words and fix.
    let other = Command::new("chown")
        .args(["-R", "nobody"])
        .arg(repo.path())
        .status()
        .unwrap();
    if !prereq::require(
        other.success(),
        "root, to chown a repository to another user",
    ) {
        return;
    }
    let out = repo.rcross(
        &["tags"],
        &[
            ("GIT_CONFIG_GLOBAL", "/dev/null"),
            ("GIT_CONFIG_NOSYSTEM", "1"),
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("safe.directory"));
}

/// `[tags]` in rcross.toml drives `rcross build --push`: a release tag is pushed under every
/// computed tag, and the config carries the version, revision, source and created labels
/// (the index the same annotations); SOURCE_DATE_EPOCH defaulted to the commit time.
#[test]
fn build_pushes_under_the_computed_tags_with_labels() {
    let Some(mut repo) = Repo::new() else { return };
    let Some(registry) = common_registry::RealRegistry::start() else {
        return;
    };
    if !prereq::tool("skopeo", "skopeo") {
        return;
    }
    std::fs::write(
        repo.path().join("rcross.toml"),
        format!(
            r#"[image]
name = "app"
platforms = ["linux/amd64"]

[build]
command = 'printf "hello\n" > "$RCROSS_OUT/hello.txt"'

[[artifact]]
from = "hello.txt"
to = "/srv/hello.txt"
mode = "0644"

[tags]
images = ["{}/team/app"]
build-number = "42"
"#,
            registry.addr
        ),
    )
    .unwrap();
    std::fs::write(repo.path().join(".gitignore"), ".rcross/\n").unwrap();
    let commit = repo.commit("README", "app");
    repo.tag("v1.4.2");
    let commit_time = repo.time() - 86_400;

    let out = repo.rcross(&["--json", "build", ".", "--push"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pushed_tags: Vec<&str> = meta["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let base = format!("{}/team/app", registry.addr);
    assert_eq!(
        pushed_tags,
        ["1.4.2", "1.4", "1", "latest", "build-42"]
            .iter()
            .map(|t| format!("{base}:{t}"))
            .collect::<Vec<_>>()
    );
    let index = meta["index_digest"].as_str().unwrap();
    for t in ["1.4.2", "1.4", "1", "latest", "build-42"] {
        let raw = common_registry::skopeo_raw(&format!("docker://{base}:{t}"));
        assert_eq!(
            raw["annotations"]["org.opencontainers.image.version"], "1.4.2",
            "{raw}"
        );
        let digest = Command::new("skopeo")
            .args([
                "inspect",
                "--tls-verify=false",
                "--format",
                "{{.Digest}}",
                &format!("docker://{base}:{t}"),
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&digest.stdout).trim(), index, "{t}");
    }
    let config = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--config",
            &format!("docker://{base}:1.4.2"),
        ])
        .output()
        .unwrap();
    assert!(config.status.success());
    let config: Value = serde_json::from_slice(&config.stdout).unwrap();
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], "1.4.2");
    assert_eq!(labels["org.opencontainers.image.revision"], commit.as_str());
    assert_eq!(
        labels["org.opencontainers.image.source"],
        "https://git.example.com/team/app"
    );
    let created = "2023-11-14T22:13:20Z";
    assert_eq!(commit_time, T0);
    assert_eq!(labels["org.opencontainers.image.created"], created);
    assert_eq!(config["created"], created);
}

/// A `git` that logs each run to `dir/log`, then runs the real one.
fn logging_git(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let (git, log) = (dir.join("git"), dir.join("log"));
    let real = which::which("git").unwrap();
    std::fs::write(
        &git,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexec {} \"$@\"\n",
            log.display(),
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&git, std::fs::Permissions::from_mode(0o755)).unwrap();
    (git, log)
}

fn git_runs(log: &Path) -> usize {
    std::fs::read_to_string(log).map_or(0, |s| s.lines().count())
}

/// The git facts cache (issue 13 §2): after every change a build could see — a tracked file
/// edited in place (same size), staged, committed, tagged (lightweight and annotated), a new
/// branch, a new remote URL, a mode change, a deleted file — the cached read runs git again and
/// answers what a read without the cache answers; in a settled state it runs no git at all.
#[test]
fn git_facts_are_cached_until_anything_they_depend_on_changes() {
    use rcross::tags::{read_git_with, GitCache};
    let Some(mut repo) = Repo::new() else { return };
    repo.commit("src/a.txt", "one");
    repo.commit("src/b.txt", "two");
    repo.tag("v1.0.0");
    let tools = tempfile::tempdir().unwrap();
    let (git, log) = logging_git(tools.path());
    let mut cache = GitCache::at(tools.path().join("cache"));
    cache.racy = std::time::Duration::ZERO;
    // The cached read first (did it run git?), then the truth from a read without a cache.
    let dir = repo.path().to_path_buf();
    let check = |what: &str, expect_git: Option<bool>| {
        let before = git_runs(&log);
        let cached = read_git_with(&dir, &git, Some(&cache)).unwrap().unwrap();
        if let Some(expected) = expect_git {
            assert_eq!(git_runs(&log) > before, expected, "{what}: did git run?");
        }
        let fresh = read_git_with(&dir, Path::new("git"), None)
            .unwrap()
            .unwrap();
        assert_eq!(cached, fresh, "{what}");
        cached
    };
    let first = check("cold", Some(true));
    assert!(!first.dirty && first.tags_at_head == ["v1.0.0"]);
    // `git status` may rewrite the index while entries are racily clean; once settled, a read
    // runs no git.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    check("settle", None);
    check("settle again", None);
    let settled = check("settled", Some(false));
    assert_eq!(settled, first);

    let a = repo.path().join("src/a.txt");
    std::fs::write(&a, "ONE").unwrap();
    assert!(check("edited in place, same size", Some(true)).dirty);
    repo.git(&["add", "src/a.txt"]);
    assert!(check("staged", Some(true)).dirty);
    let commit = {
        repo.git(&["commit", "-q", "-m", "three"]);
        repo.commits += 1;
        repo.git(&["rev-parse", "HEAD"])
    };
    let facts = check("committed", Some(true));
    assert!(facts.commit == commit && !facts.dirty && facts.tags_at_head.is_empty());
    repo.git(&["tag", "light"]);
    assert_eq!(check("lightweight tag", Some(true)).tags_at_head, ["light"]);
    repo.tag("v1.1.0");
    assert_eq!(
        check("annotated tag", Some(true)).tags_at_head,
        ["light", "v1.1.0"]
    );
    repo.git(&["checkout", "-q", "-b", "feature/x"]);
    assert_eq!(
        check("branch", Some(true)).branch.as_deref(),
        Some("feature/x")
    );
    repo.git(&[
        "remote",
        "set-url",
        "origin",
        "https://git.example.com/other/app.git",
    ]);
    assert_eq!(
        check("remote", Some(true)).remote_url.as_deref(),
        Some("https://git.example.com/other/app.git")
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(check("mode", Some(true)).dirty);
    std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(!check("mode back", Some(true)).dirty);
    std::fs::remove_file(repo.path().join("src/b.txt")).unwrap();
    assert!(check("deleted", Some(true)).dirty);
}

/// What is never stored: a state that changed within the racy margin, and a repository with
/// submodules.
#[test]
fn racy_states_and_submodules_are_not_cached() {
    use rcross::tags::{read_git_with, GitCache};
    let Some(mut repo) = Repo::new() else { return };
    repo.commit("a.txt", "one");
    let tools = tempfile::tempdir().unwrap();
    let (git, log) = logging_git(tools.path());
    let cache = GitCache::at(tools.path().join("cache"));
    assert_eq!(cache.racy, std::time::Duration::from_secs(2));
    let dir = repo.path().to_path_buf();
    let runs = || {
        let before = git_runs(&log);
        read_git_with(&dir, &git, Some(&cache)).unwrap().unwrap();
        git_runs(&log) - before
    };
    assert!(runs() > 0);
    assert!(runs() > 0, "a commit a moment ago is racy: not stored");

    let mut relaxed = GitCache::at(tools.path().join("cache2"));
    relaxed.racy = std::time::Duration::ZERO;
    repo.commit(
        ".gitmodules",
        "[submodule \"x\"]\n\tpath = x\n\turl = ../x\n",
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for _ in 0..3 {
        let before = git_runs(&log);
        read_git_with(repo.path(), &git, Some(&relaxed))
            .unwrap()
            .unwrap();
        assert!(git_runs(&log) > before, "submodules: always git");
    }
}
