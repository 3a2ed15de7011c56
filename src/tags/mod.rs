//! The tag policy: which tags, labels and `SOURCE_DATE_EPOCH` a build of a git checkout gets —
//! what people write by hand around `git describe` and in docker/metadata-action rules, as
//! data (`[tags]` in rcross.toml, `--image`/`--release-tags`/… flags).
//!
//! [`compute`] is a pure function of [`GitFacts`] (read by [`read_git`], the one place that runs
//! `git`), the [`Policy`] and the CI's variables ([`CiEnv`]):
//!
//! - a release tag `v1.2.3` at HEAD gives `1.2.3`, `1.2`, `1` (not for `0.x`) and `latest`,
//!   `latest` only when it is the highest release tag of the repository;
//! - a pre-release `v1.2.0-rc.1` gives only itself;
//! - otherwise the branch name (sanitised to the tag grammar) and `sha-<short>`; the default
//!   branch may add `edge`;
//! - `build-<id>` from `GITHUB_RUN_NUMBER`, `CI_PIPELINE_IID` or an explicit value;
//! - a dirty tree marks every tag `-dirty` and never moves `latest`, `edge` or a floating
//!   `1.2`/`1`.
//!
//! Every tag is checked against the OCI tag grammar `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

mod cache;
pub use cache::GitCache;

pub const LABEL_VERSION: &str = "org.opencontainers.image.version";
pub const LABEL_REVISION: &str = "org.opencontainers.image.revision";
pub const LABEL_SOURCE: &str = "org.opencontainers.image.source";
pub const LABEL_CREATED: &str = "org.opencontainers.image.created";

/// Longest OCI tag.
const MAX_TAG: usize = 128;
/// Length of the `sha-` tag's commit abbreviation (as docker/metadata-action).
const SHORT_SHA: usize = 7;

#[derive(Debug, thiserror::Error)]
pub enum TagError {
    #[error("tag {value:?} ({origin}) is not a valid OCI tag: {why} (tags are [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})")]
    InvalidTag {
        value: String,
        origin: String,
        why: String,
    },
    #[error("{0}")]
    Policy(String),
    #[error("{dir} is not in a git work tree; the tag policy reads the release tag, branch and commit from git (run in a clone, or give the tags with -t)")]
    NotGit { dir: String },
    #[error("`git {args}` in {dir} failed: {message}")]
    Git {
        dir: String,
        args: String,
        message: String,
    },
}

/// What git says about the checkout. Read by [`read_git`]; tests build it directly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitFacts {
    /// The full commit id of HEAD.
    pub commit: String,
    /// Committer time of HEAD, seconds since the epoch.
    pub commit_time: u64,
    /// The checked-out branch; `None` on a detached HEAD.
    pub branch: Option<String>,
    /// Tags pointing at HEAD.
    pub tags_at_head: Vec<String>,
    /// Every tag of the repository.
    pub all_tags: Vec<String>,
    /// Tracked files differ from HEAD.
    pub dirty: bool,
    /// `git describe --tags` (nearest tag, distance, commit), when a tag is reachable.
    pub describe: Option<String>,
    /// The `origin` remote's URL (else the first remote's), as configured.
    pub remote_url: Option<String>,
}

/// The CI's variables that matter to the policy (a pure function needs them as input).
#[derive(Debug, Clone, Default)]
pub struct CiEnv {
    pub vars: BTreeMap<String, String>,
}

impl CiEnv {
    /// Every CI variable the policy reads.
    pub const NAMES: &'static [&'static str] = &[
        "GITHUB_RUN_NUMBER",
        "GITHUB_REF_TYPE",
        "GITHUB_REF_NAME",
        "GITHUB_HEAD_REF",
        "GITHUB_SERVER_URL",
        "GITHUB_REPOSITORY",
        "CI_PIPELINE_IID",
        "CI_COMMIT_BRANCH",
        "CI_COMMIT_REF_NAME",
        "CI_COMMIT_TAG",
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME",
        "CI_DEFAULT_BRANCH",
        "CI_PROJECT_URL",
    ];

    /// The variables of this process.
    pub fn from_process() -> CiEnv {
        CiEnv {
            vars: Self::NAMES
                .iter()
                .filter_map(|k| {
                    std::env::var(k)
                        .ok()
                        .filter(|v| !v.is_empty())
                        .map(|v| (k.to_string(), v))
                })
                .collect(),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The branch a detached CI checkout builds: GitHub and GitLab check out a commit, not a
    /// branch, and say which branch in their variables.
    fn branch(&self) -> Option<&str> {
        self.get("GITHUB_HEAD_REF")
            .or_else(|| {
                (self.get("GITHUB_REF_TYPE") == Some("branch"))
                    .then(|| self.get("GITHUB_REF_NAME"))
                    .flatten()
            })
            .or_else(|| self.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME"))
            .or_else(|| self.get("CI_COMMIT_BRANCH"))
            .or_else(|| {
                self.get("CI_COMMIT_TAG")
                    .is_none()
                    .then(|| self.get("CI_COMMIT_REF_NAME"))
                    .flatten()
            })
    }

    fn build_number(&self) -> Option<&str> {
        self.get("GITHUB_RUN_NUMBER")
            .or_else(|| self.get("CI_PIPELINE_IID"))
    }

    fn source(&self) -> Option<String> {
        match (self.get("GITHUB_SERVER_URL"), self.get("GITHUB_REPOSITORY")) {
            (Some(server), Some(repo)) => Some(format!("{}/{repo}", server.trim_end_matches('/'))),
            _ => self.get("CI_PROJECT_URL").map(str::to_string),
        }
    }
}

/// Which of a release's tags to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseTag {
    /// `1.2.3`
    Version,
    /// `1.2`
    Minor,
    /// `1` (never for 0.x)
    Major,
    /// `latest`, only for the highest release of the repository
    Latest,
}

impl std::str::FromStr for ReleaseTag {
    type Err = TagError;
    fn from_str(s: &str) -> Result<Self, TagError> {
        match s.trim() {
            "version" => Ok(ReleaseTag::Version),
            "minor" => Ok(ReleaseTag::Minor),
            "major" => Ok(ReleaseTag::Major),
            "latest" => Ok(ReleaseTag::Latest),
            other => Err(TagError::Policy(format!(
                "release tag kind {other:?}: use version, minor, major or latest"
            ))),
        }
    }
}

/// `[tags]` in rcross.toml, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TagConfig {
    /// Repositories (REGISTRY/REPO) every computed tag is pushed to.
    #[serde(default)]
    pub images: Vec<String>,
    pub release: Option<Vec<ReleaseTag>>,
    pub default_branch: Option<String>,
    pub edge: Option<bool>,
    pub sha: Option<bool>,
    /// `"auto"` (GITHUB_RUN_NUMBER / CI_PIPELINE_IID) or a fixed id.
    pub build_number: Option<String>,
    pub prefix: Option<String>,
    #[serde(default)]
    pub extra: Vec<String>,
    /// Stamp version/revision/source/created labels and annotations (default true).
    pub labels: Option<bool>,
}

/// The policy in effect (rcross.toml's `[tags]` with the command line's flags over it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub images: Vec<String>,
    pub release: Vec<ReleaseTag>,
    pub default_branch: String,
    pub edge: bool,
    pub sha: bool,
    /// `None`: no build tag; `Some(None)`: from the CI's variables; `Some(Some(id))`: this id.
    pub build_number: Option<Option<String>>,
    pub prefix: String,
    pub extra: Vec<String>,
    pub labels: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            images: Vec::new(),
            release: vec![
                ReleaseTag::Version,
                ReleaseTag::Minor,
                ReleaseTag::Major,
                ReleaseTag::Latest,
            ],
            default_branch: "main".to_string(),
            edge: false,
            sha: true,
            build_number: None,
            prefix: "v".to_string(),
            extra: Vec::new(),
            labels: true,
        }
    }
}

/// Command-line overrides of [`TagConfig`] (each `None`/empty leaves the file's value).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub images: Vec<String>,
    pub release: Option<String>,
    pub default_branch: Option<String>,
    pub edge: bool,
    pub no_sha: bool,
    pub build_number: Option<String>,
    pub prefix: Option<String>,
    pub extra: Vec<String>,
    pub no_labels: bool,
    /// No computed tags at all (the images are dropped).
    pub no_tags: bool,
}

impl Policy {
    /// The file's `[tags]` with `flags` over it.
    pub fn resolve(file: &TagConfig, flags: &Overrides) -> Result<Policy, TagError> {
        let mut policy = Policy {
            images: if flags.no_tags {
                Vec::new()
            } else if flags.images.is_empty() {
                file.images.clone()
            } else {
                flags.images.clone()
            },
            ..Policy::default()
        };
        if let Some(release) = &file.release {
            policy.release = release.clone();
        }
        if let Some(list) = &flags.release {
            policy.release = list
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(str::parse)
                .collect::<Result<_, _>>()?;
        }
        if let Some(b) = flags
            .default_branch
            .as_ref()
            .or(file.default_branch.as_ref())
        {
            policy.default_branch = b.clone();
        }
        policy.edge = flags.edge || file.edge.unwrap_or(false);
        policy.sha = !flags.no_sha && file.sha.unwrap_or(true);
        policy.build_number = flags
            .build_number
            .as_ref()
            .or(file.build_number.as_ref())
            .map(|b| (b != "auto").then(|| b.clone()));
        if let Some(p) = flags.prefix.as_ref().or(file.prefix.as_ref()) {
            policy.prefix = p.clone();
        }
        policy.extra = file.extra.clone();
        policy.extra.extend(flags.extra.iter().cloned());
        policy.labels = !flags.no_labels && file.labels.unwrap_or(true);
        Ok(policy)
    }
}

/// What the policy gives for a checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Computed {
    /// The tags, in order, without repositories.
    pub tags: Vec<String>,
    /// `REPO:TAG` for every image of the policy and every tag.
    pub references: Vec<String>,
    /// What the build is: the release version, else `git describe` without the prefix, else
    /// the short commit; `-dirty` for a dirty tree.
    pub version: String,
    /// The release tag at HEAD the tags came from, if any.
    pub release: Option<String>,
    pub branch: Option<String>,
    pub commit: String,
    pub dirty: bool,
    /// `SOURCE_DATE_EPOCH` for the build: the variable when set, else the commit time.
    pub source_date_epoch: u64,
    /// org.opencontainers.image.{version,revision,source,created}, when the policy stamps them.
    pub labels: BTreeMap<String, String>,
}

/// The release tags at HEAD, parsed: (tag as written, version).
fn releases<'a>(tags: &'a [String], prefix: &str) -> Vec<(&'a str, semver::Version)> {
    tags.iter()
        .filter_map(|t| {
            let v = t.strip_prefix(prefix)?;
            semver::Version::parse(v).ok().map(|v| (t.as_str(), v))
        })
        .collect()
}

/// Computes tags, version and labels. `epoch_var` is `SOURCE_DATE_EPOCH` as set (it wins over
/// the commit time).
pub fn compute(
    facts: &GitFacts,
    policy: &Policy,
    ci: &CiEnv,
    epoch_var: Option<u64>,
) -> Result<Computed, TagError> {
    let dirty = facts.dirty;
    let mark = |t: String| if dirty { format!("{t}-dirty") } else { t };
    let short: String = facts.commit.chars().take(SHORT_SHA).collect();
    let mut tags: Vec<(String, String)> = Vec::new();

    let at_head = releases(&facts.tags_at_head, &policy.prefix);
    // Several release tags on one commit: the highest names it.
    let release = at_head.iter().max_by(|a, b| a.1.cmp(&b.1)).cloned();
    let branch = facts
        .branch
        .clone()
        .or_else(|| ci.branch().map(str::to_string));
    let version;
    match &release {
        Some((tag, v)) => {
            let plain = tag_safe(&v.to_string());
            version = mark(plain.clone());
            let origin = format!("release tag {tag}");
            if !v.pre.is_empty() || dirty {
                // A pre-release (or an unclean tree) never moves a floating tag.
                tags.push((version.clone(), origin));
            } else {
                let highest = releases(&facts.all_tags, &policy.prefix)
                    .into_iter()
                    .filter(|(_, o)| o.pre.is_empty())
                    .map(|(_, o)| o)
                    .max();
                for kind in &policy.release {
                    match kind {
                        ReleaseTag::Version => tags.push((plain.clone(), origin.clone())),
                        ReleaseTag::Minor => {
                            tags.push((format!("{}.{}", v.major, v.minor), origin.clone()))
                        }
                        ReleaseTag::Major if v.major > 0 => {
                            tags.push((v.major.to_string(), origin.clone()))
                        }
                        ReleaseTag::Major => {}
                        ReleaseTag::Latest => {
                            if highest.as_ref() == Some(v) {
                                tags.push(("latest".to_string(), origin.clone()));
                            }
                        }
                    }
                }
            }
        }
        None => {
            version = mark(match &facts.describe {
                Some(d) => tag_safe(d.strip_prefix(&policy.prefix).unwrap_or(d)),
                None => short.clone(),
            });
            if let Some(b) = &branch {
                let name = sanitise_branch(b).ok_or_else(|| {
                    TagError::Policy(format!(
                        "branch {b:?} has no characters a tag can carry; add a tag with --extra-tag"
                    ))
                })?;
                tags.push((mark(name), format!("branch {b}")));
                if b == &policy.default_branch && policy.edge && !dirty {
                    tags.push(("edge".to_string(), format!("default branch {b}")));
                }
            }
            if policy.sha && !short.is_empty() {
                tags.push((
                    mark(format!("sha-{short}")),
                    format!("commit {}", facts.commit),
                ));
            }
        }
    }
    if let Some(build) = &policy.build_number {
        let id = match build {
            Some(id) => id.clone(),
            None => ci.build_number().map(str::to_string).ok_or_else(|| {
                TagError::Policy(
                    "a build-number tag from the CI was asked for, but neither GITHUB_RUN_NUMBER \
                     nor CI_PIPELINE_IID is set; give the id (--build-number ID)"
                        .to_string(),
                )
            })?,
        };
        tags.push((format!("build-{id}"), "build number".to_string()));
    }
    for extra in &policy.extra {
        tags.push((extra.clone(), "--extra-tag / [tags] extra".to_string()));
    }

    let mut out: Vec<String> = Vec::new();
    for (tag, origin) in tags {
        check_tag(&tag, &origin)?;
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    let mut references = Vec::new();
    for image in &policy.images {
        for tag in &out {
            references.push(format!("{image}:{tag}"));
        }
    }
    let source_date_epoch = epoch_var.unwrap_or(facts.commit_time);
    let mut labels = BTreeMap::new();
    if policy.labels {
        labels.insert(LABEL_VERSION.to_string(), version.clone());
        labels.insert(LABEL_REVISION.to_string(), facts.commit.clone());
        if let Some(source) = facts
            .remote_url
            .as_deref()
            .and_then(public_url)
            .or_else(|| ci.source())
        {
            labels.insert(LABEL_SOURCE.to_string(), source);
        }
        labels.insert(
            LABEL_CREATED.to_string(),
            crate::oci::rfc3339_utc(source_date_epoch),
        );
    }
    Ok(Computed {
        tags: out,
        references,
        version,
        release: release.map(|(t, _)| t.to_string()),
        branch,
        commit: facts.commit.clone(),
        dirty,
        source_date_epoch,
        labels,
    })
}

/// Checks `tag` against `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`; `origin` says where it came from.
pub fn check_tag(tag: &str, origin: &str) -> Result<(), TagError> {
    let fail = |why: String| TagError::InvalidTag {
        value: tag.to_string(),
        origin: origin.to_string(),
        why,
    };
    let mut chars = tag.chars();
    match chars.next() {
        None => return Err(fail("it is empty".to_string())),
        Some(c) if !(c.is_ascii_alphanumeric() || c == '_') => {
            return Err(fail(format!("it starts with {c:?}")))
        }
        _ => {}
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(fail(format!("{c:?} is not allowed")));
    }
    if tag.len() > MAX_TAG {
        return Err(fail(format!(
            "it is {} characters long, at most {MAX_TAG} are allowed",
            tag.len()
        )));
    }
    Ok(())
}

/// A version as a tag: semver's `+build` metadata becomes `-build` (`+` is not allowed).
fn tag_safe(version: &str) -> String {
    version.replace('+', "-")
}

/// A branch name in the tag grammar: every other character becomes `-`, leading `.`/`-` go,
/// at most 128 characters (`feature/login` → `feature-login`). `None` when nothing is left.
pub fn sanitise_branch(branch: &str) -> Option<String> {
    let mapped: String = branch
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_start_matches(['.', '-']);
    // Room for a `-dirty` mark.
    let cut: String = trimmed.chars().take(MAX_TAG - "-dirty".len()).collect();
    let cut = cut.trim_end_matches(['.', '-']).to_string();
    (!cut.is_empty()).then_some(cut)
}

/// A remote URL fit for a label: no user name or password, scp-like `git@host:owner/repo` as
/// `https://host/owner/repo`, no `.git` suffix. `None` for local paths.
pub fn public_url(remote: &str) -> Option<String> {
    let remote = remote.trim();
    let (scheme, rest) = match remote.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => {
            // scp-like: [user@]host:path (a path with '/' before ':' is local).
            let (host, path) = remote.split_once(':')?;
            if host.contains('/') || host.is_empty() {
                return None;
            }
            let host = host.rsplit('@').next().unwrap_or(host);
            let path = path.trim_start_matches('/');
            return Some(format!(
                "https://{host}/{}",
                path.strip_suffix(".git").unwrap_or(path)
            ));
        }
    };
    if scheme == "file" {
        return None;
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit('@').next().unwrap_or(authority);
    // ssh://git@host:22/x: the port is ssh's, not the web server's.
    let host = if matches!(scheme, "ssh" | "git") {
        host.split(':').next().unwrap_or(host)
    } else {
        host
    };
    let scheme = if scheme == "http" { "http" } else { "https" };
    let url = format!(
        "{scheme}://{host}/{}",
        path.strip_suffix(".git").unwrap_or(path)
    );
    Some(url.trim_end_matches('/').to_string())
}

/// `SOURCE_DATE_EPOCH` as the process has it: `None` when unset or empty (then a git build
/// uses the commit time), an error naming the value when it is not a number of seconds.
pub fn epoch_from_env(value: Option<&str>) -> Result<Option<u64>, TagError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            TagError::Policy(format!(
                "SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970-01-01"
            ))
        }),
    }
}

impl TagError {
    /// The documented exit code: a bad tag or policy, or no git work tree where the policy
    /// needs one, is an input error (2); git itself failing is the host (3).
    pub fn exit_code(&self) -> u8 {
        match self {
            TagError::Git { .. } => crate::exit::ENVIRONMENT,
            _ => crate::exit::USAGE,
        }
    }
}

/// What the checkout holding a project gives a build.
#[derive(Debug)]
pub enum Checkout {
    /// The policy's tags, labels and `SOURCE_DATE_EPOCH`.
    Computed(Computed),
    /// Not a git work tree (or git is not installed), and nothing asks for git.
    NotGit,
    /// git failed, and nothing asks for git: the build goes on without git facts, warned.
    Unreadable(TagError),
}

/// The policy (`file` overridden by `overrides`) applied to the checkout holding `dir`. When
/// `required`, or when the policy names images, a directory outside a git work tree and a
/// failing git are errors rather than [`Checkout::NotGit`] and [`Checkout::Unreadable`].
pub fn compute_for(
    dir: &Path,
    file: &TagConfig,
    overrides: &Overrides,
    required: bool,
) -> Result<Checkout, TagError> {
    let policy = Policy::resolve(file, overrides)?;
    let required = required || !policy.images.is_empty();
    let epoch = epoch_from_env(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref())?;
    let facts = match read_git(dir) {
        Ok(Some(facts)) => facts,
        Ok(None) if required => {
            return Err(TagError::NotGit {
                dir: dir.display().to_string(),
            })
        }
        Ok(None) => return Ok(Checkout::NotGit),
        Err(e) if required => return Err(e),
        Err(e) => return Ok(Checkout::Unreadable(e)),
    };
    compute(&facts, &policy, &CiEnv::from_process(), epoch).map(Checkout::Computed)
}

/// Reads [`GitFacts`] for the work tree holding `dir`: from the [`GitCache`] in the user's cache
/// when nothing they depend on changed, else by running `git`. `Ok(None)`: `dir` is not in a
/// git work tree (or git is not installed).
pub fn read_git(dir: &Path) -> Result<Option<GitFacts>, TagError> {
    read_git_with(dir, Path::new("git"), GitCache::in_user_cache().as_ref())
}

/// [`read_git`] with the `git` program to run and the cache to use (`None`: always run git).
///
/// Every build in a work tree pays for this, so after the one check that must come first (is
/// this a work tree?) the remaining questions go to `git` processes that run at the same time,
/// and one `for-each-ref` answers both "every tag" and "tags at HEAD".
pub fn read_git_with(
    dir: &Path,
    program: &Path,
    cache: Option<&GitCache>,
) -> Result<Option<GitFacts>, TagError> {
    let Ok(git_path) = which::which(program) else {
        return Ok(None);
    };
    if let Some(facts) = cache.and_then(|c| c.load(dir, &git_path)) {
        return Ok(Some(facts));
    }
    let shown = dir.display().to_string();
    let command = |args: &[&str]| {
        let mut c = Command::new(&git_path);
        c.arg("-C")
            .arg(dir)
            .args(args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    let cannot_run = |args: &[&str], e: std::io::Error| TagError::Git {
        dir: shown.clone(),
        args: args.join(" "),
        message: format!("cannot run git: {e}"),
    };
    let finish = |out: &std::process::Output| -> (bool, String, String) {
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )
    };
    let git = |args: &[&str]| -> Result<(bool, String, String), TagError> {
        command(args)
            .output()
            .map(|o| finish(&o))
            .map_err(|e| cannot_run(args, e))
    };
    let (inside, stdout, stderr) = git(&["rev-parse", "--is-inside-work-tree"])?;
    if !inside && !stderr.contains("not a git repository") && !stderr.is_empty() {
        // A work tree git refuses to read (`dubious ownership` in CI containers) is not
        // "no git": say why, and that `git config --global --add safe.directory DIR` fixes it.
        return Err(TagError::Git {
            dir: shown.clone(),
            args: "rev-parse --is-inside-work-tree".to_string(),
            message: stderr,
        });
    }
    if !inside || stdout != "true" {
        return Ok(None);
    }
    // Independent questions, asked at once; answers are collected in order below. The last
    // two (where the repository's files are, what it tracks) are only for the cache.
    const HEAD: &[&str] = &["log", "-1", "--format=%H %ct", "HEAD"];
    const BRANCH: &[&str] = &["symbolic-ref", "--quiet", "--short", "HEAD"];
    const TAGS: &[&str] = &[
        "for-each-ref",
        "--format=%(refname:strip=2) %(objectname) %(*objectname)",
        "refs/tags",
    ];
    const STATUS: &[&str] = &["status", "--porcelain", "--untracked-files=no"];
    const DESCRIBE: &[&str] = &["describe", "--tags", "--abbrev=7"];
    const ORIGIN: &[&str] = &["remote", "get-url", "origin"];
    const LAYOUT: &[&str] = &[
        "rev-parse",
        "--path-format=absolute",
        "--show-toplevel",
        "--git-dir",
        "--git-common-dir",
    ];
    const TRACKED: &[&str] = &["ls-files", "-z", "--full-name", "--", ":/"];
    let questions: &[&[&str]] = if cache.is_some() {
        &[
            HEAD, BRANCH, TAGS, STATUS, DESCRIBE, ORIGIN, LAYOUT, TRACKED,
        ]
    } else {
        &[HEAD, BRANCH, TAGS, STATUS, DESCRIBE, ORIGIN]
    };
    let mut children = Vec::new();
    for args in questions {
        children.push((
            *args,
            command(args).spawn().map_err(|e| cannot_run(args, e))?,
        ));
    }
    let mut outputs = Vec::new();
    for (args, child) in children {
        outputs.push((
            args,
            child.wait_with_output().map_err(|e| cannot_run(args, e))?,
        ));
    }
    type Answer<'a> = (&'a [&'a str], (bool, String, String));
    let answers: Vec<Answer> = outputs.iter().map(|(a, o)| (*a, finish(o))).collect();
    let must = |i: usize| -> Result<String, TagError> {
        let (args, (ok, stdout, stderr)) = &answers[i];
        if *ok {
            Ok(stdout.clone())
        } else {
            Err(TagError::Git {
                dir: shown.clone(),
                args: args.join(" "),
                message: stderr.clone(),
            })
        }
    };
    let head = must(0).map_err(|e| match e {
        TagError::Git { dir, args, message } => TagError::Git {
            dir,
            args,
            message: format!("{message} (a repository without commits has nothing to tag)"),
        },
        other => other,
    })?;
    let (commit, time) = head.split_once(' ').unwrap_or((head.as_str(), ""));
    let commit = commit.to_string();
    let commit_time = time.parse::<u64>().map_err(|_| TagError::Git {
        dir: shown.clone(),
        args: HEAD.join(" "),
        message: format!("answered {head:?}, not a commit and a time"),
    })?;
    let (on_branch, branch, _) = answers[1].1.clone();
    // `for-each-ref` lists tags in refname order, as `git tag --list` does; a tag points at
    // HEAD when it names the commit itself or (annotated) peels to it, as `--points-at` says.
    let mut tags_at_head = Vec::new();
    let mut all_tags = Vec::new();
    for line in must(2)?.lines() {
        let mut fields = line.split(' ');
        let (Some(name), object, peeled) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        if object == Some(commit.as_str()) || peeled == Some(commit.as_str()) {
            tags_at_head.push(name.to_string());
        }
        all_tags.push(name.to_string());
    }
    let dirty = !must(3)?.is_empty();
    let (described, describe, _) = answers[4].1.clone();
    let (has_origin, origin, _) = answers[5].1.clone();
    let remote_url = if has_origin {
        Some(origin)
    } else {
        let (_, remotes, _) = git(&["remote"])?;
        match remotes.lines().next() {
            Some(first) => {
                let (ok, url, _) = git(&["remote", "get-url", first])?;
                ok.then_some(url)
            }
            None => None,
        }
    };
    let facts = GitFacts {
        commit,
        commit_time,
        branch: (on_branch && !branch.is_empty()).then_some(branch),
        tags_at_head,
        all_tags,
        dirty,
        describe: described.then_some(describe).filter(|d| !d.is_empty()),
        remote_url,
    };
    if let (Some(cache), Some((_, layout)), Some((_, tracked))) =
        (cache, outputs.get(6), outputs.get(7))
    {
        if layout.status.success() && tracked.status.success() {
            if let Some(layout) = cache::Layout::parse(&layout.stdout, &tracked.stdout) {
                cache.store(dir, &git_path, &facts, &layout);
            }
        }
    }
    Ok(Some(facts))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn facts(at_head: &[&str], all: &[&str], branch: Option<&str>) -> GitFacts {
        GitFacts {
            commit: SHA.into(),
            commit_time: 1_700_000_000,
            branch: branch.map(str::to_string),
            tags_at_head: at_head.iter().map(|s| s.to_string()).collect(),
            all_tags: all.iter().map(|s| s.to_string()).collect(),
            dirty: false,
            describe: at_head.first().map(|s| s.to_string()),
            remote_url: Some("https://user:tok@github.com/me/app.git".into()),
        }
    }

    fn tags_of(f: &GitFacts, policy: &Policy) -> Vec<String> {
        compute(f, policy, &CiEnv::default(), None).unwrap().tags
    }

    #[test]
    fn releases_prereleases_and_latest() {
        let p = Policy::default();
        let all = ["v1.2.3", "v1.2.0-rc.1", "v0.9.0", "v1.10.0-rc.2"];
        assert_eq!(
            tags_of(&facts(&["v1.2.3"], &all, None), &p),
            ["1.2.3", "1.2", "1", "latest"]
        );
        assert_eq!(
            tags_of(&facts(&["v1.2.0-rc.1"], &all, None), &p),
            ["1.2.0-rc.1"]
        );
        // 0.x does not move `0`; an older release after a newer one gets no latest.
        assert_eq!(
            tags_of(&facts(&["v0.9.0"], &all, None), &p),
            ["0.9.0", "0.9"]
        );
        // A pre-release of a higher version does not take latest from a release.
        let c = compute(&facts(&["v1.2.3"], &all, None), &p, &CiEnv::default(), None).unwrap();
        assert_eq!(c.version, "1.2.3");
        assert_eq!(c.labels[LABEL_SOURCE], "https://github.com/me/app");
        assert_eq!(c.labels[LABEL_REVISION], SHA);
        assert_eq!(c.labels[LABEL_CREATED], "2023-11-14T22:13:20Z");
        // Not a release: a tag without the prefix or not semver.
        let f = facts(&["nightly", "v1.2"], &["nightly", "v1.2"], Some("main"));
        assert_eq!(tags_of(&f, &p), ["main", "sha-0123456"]);
    }

    #[test]
    fn branches_edge_dirty_and_build_numbers() {
        let mut p = Policy {
            edge: true,
            ..Policy::default()
        };
        let mut f = facts(&[], &[], Some("feature/Login#2"));
        f.describe = Some("v1.2.3-4-g0123456".into());
        let c = compute(&f, &p, &CiEnv::default(), Some(5)).unwrap();
        assert_eq!(c.tags, ["feature-Login-2", "sha-0123456"]);
        assert_eq!(c.version, "1.2.3-4-g0123456");
        assert_eq!(c.source_date_epoch, 5);
        f.branch = Some("main".into());
        assert_eq!(tags_of(&f, &p), ["main", "edge", "sha-0123456"]);
        f.dirty = true;
        let c = compute(&f, &p, &CiEnv::default(), None).unwrap();
        assert_eq!(c.tags, ["main-dirty", "sha-0123456-dirty"]);
        assert_eq!(c.version, "1.2.3-4-g0123456-dirty");
        let mut r = facts(&["v2.0.0"], &["v2.0.0"], None);
        r.dirty = true;
        assert_eq!(tags_of(&r, &p), ["2.0.0-dirty"]);

        // Detached in CI: the branch comes from the CI's variables.
        let mut ci = CiEnv::default();
        ci.vars.insert("GITHUB_REF_TYPE".into(), "branch".into());
        ci.vars
            .insert("GITHUB_REF_NAME".into(), "release/2.x".into());
        ci.vars.insert("GITHUB_RUN_NUMBER".into(), "41".into());
        p.build_number = Some(None);
        let d = facts(&[], &[], None);
        let c = compute(&d, &p, &ci, None).unwrap();
        assert_eq!(c.tags, ["release-2.x", "sha-0123456", "build-41"]);
        let e = compute(&d, &p, &CiEnv::default(), None).unwrap_err();
        assert!(e.to_string().contains("GITHUB_RUN_NUMBER"), "{e}");
        p.build_number = Some(Some("7".into()));
        assert_eq!(
            compute(&d, &p, &CiEnv::default(), None).unwrap().tags,
            ["sha-0123456", "build-7"]
        );
    }

    #[test]
    fn tag_grammar_names_the_offender() {
        for ok in ["a", "_x", "1.2.3-rc.1", &"a".repeat(128)] {
            check_tag(ok, "t").unwrap();
        }
        for bad in ["", ".x", "-x", "a/b", "a+b", &"a".repeat(129)] {
            let e = check_tag(bad, "--extra-tag").unwrap_err().to_string();
            assert!(
                e.contains(&format!("{bad:?}")) && e.contains("--extra-tag"),
                "{e}"
            );
        }
        let p = Policy {
            extra: vec!["bad tag".into()],
            ..Policy::default()
        };
        assert!(compute(&facts(&[], &[], None), &p, &CiEnv::default(), None).is_err());
        assert_eq!(sanitise_branch("--.x/y"), Some("x-y".into()));
        assert_eq!(sanitise_branch("///"), None);
        assert!(sanitise_branch(&"b".repeat(300)).unwrap().len() <= 122);
    }

    #[test]
    fn urls_lose_credentials() {
        assert_eq!(
            public_url("git@github.com:me/app.git").as_deref(),
            Some("https://github.com/me/app")
        );
        assert_eq!(
            public_url("https://x-access-token:ghs_abc@github.com/me/app").as_deref(),
            Some("https://github.com/me/app")
        );
        assert_eq!(
            public_url("ssh://git@gitlab.example:2222/g/p.git").as_deref(),
            Some("https://gitlab.example/g/p")
        );
        assert_eq!(public_url("/srv/git/app.git"), None);
        assert_eq!(public_url("file:///srv/git/app.git"), None);
    }

    #[test]
    fn policy_from_file_and_flags() {
        let file: TagConfig = toml::from_str(
            r#"images = ["r.io/a"]
               release = ["version", "latest"]
               default-branch = "trunk"
               edge = true
               build-number = "auto"
               extra = ["x"]"#,
        )
        .unwrap();
        let p = Policy::resolve(&file, &Overrides::default()).unwrap();
        assert_eq!(p.release, [ReleaseTag::Version, ReleaseTag::Latest]);
        assert_eq!(p.build_number, Some(None));
        assert_eq!(p.default_branch, "trunk");
        let flags = Overrides {
            images: vec!["r.io/b".into()],
            release: Some("version,major".into()),
            extra: vec!["y".into()],
            ..Overrides::default()
        };
        let p = Policy::resolve(&file, &flags).unwrap();
        assert_eq!(p.images, ["r.io/b"]);
        assert_eq!(p.release, [ReleaseTag::Version, ReleaseTag::Major]);
        assert_eq!(p.extra, ["x", "y"]);
        assert!(toml::from_str::<TagConfig>("unknown = 1").is_err());
        let bad = Overrides {
            release: Some("version,patch".into()),
            ..Overrides::default()
        };
        assert!(Policy::resolve(&file, &bad).is_err());
    }
}
