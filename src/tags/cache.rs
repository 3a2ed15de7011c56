//! The git facts of a checkout, remembered between builds (`<user cache>/rcross/git/`).
//!
//! Reading [`GitFacts`] takes eight `git` processes (about 8–10 ms on two cores), which every
//! build pays, even one that has nothing to do. The facts are a function of a few files, so they
//! are kept with the state of those files, as git's own index keeps the stat data of the
//! work tree: HEAD, the index, the config files git reads, `packed-refs`, every file and
//! directory under `refs/tags`, the checked-out branch's ref, `shallow`, and every tracked
//! file of the work tree (device, inode, mode, size, mtime and ctime, by `lstat`). When every one
//! of them is as recorded, the facts are too; any difference, or anything the record does not
//! cover, runs `git` again.
//!
//! A record is used only by a process with the same `GIT_*` variables, HOME and
//! XDG_CONFIG_HOME (they can point git elsewhere) and the same `git` program. What is never cached: a repository with submodules
//! (their state is not in the files above), work trees with
//! more than [`MAX_TRACKED`] tracked files (stat-ing them costs what `git status` costs), and
//! "racy" states: a file changed less than [`GitCache::racy`] before the facts were stored could
//! change again within the same timestamp tick without its stat data changing, so such a
//! state is not stored (git's racy-clean rule, with a margin that covers coarse file systems).

use super::GitFacts;
use serde::{Deserialize, Serialize};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Above this many tracked files the facts are not cached.
pub const MAX_TRACKED: usize = 50_000;

/// The stat data that changes when a file is written, replaced, renamed over or chmod-ed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stat {
    dev: u64,
    ino: u64,
    mode: u32,
    size: u64,
    mtime: i64,
    mtime_ns: i64,
    ctime: i64,
    ctime_ns: i64,
}

impl Stat {
    /// `lstat` of `path`; `None` when it does not exist (or cannot be read: then it is absent
    /// for git too, or the next comparison differs).
    fn of(path: &Path) -> Option<Stat> {
        std::fs::symlink_metadata(path).ok().map(|m| Stat {
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_ns: m.mtime_nsec(),
            ctime: m.ctime(),
            ctime_ns: m.ctime_nsec(),
        })
    }

    /// The later of mtime and ctime.
    fn changed(&self) -> SystemTime {
        let at = |s: i64, ns: i64| {
            UNIX_EPOCH
                + Duration::from_secs(s.max(0) as u64)
                + Duration::from_nanos(ns.max(0) as u64)
        };
        at(self.mtime, self.mtime_ns).max(at(self.ctime, self.ctime_ns))
    }
}

/// One stored record.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    format: String,
    /// The directory the facts were read for.
    dir: PathBuf,
    /// The git program that answered (its path and stat data).
    git: (PathBuf, Option<Stat>),
    /// This process's `GIT_*` variables then.
    env: Vec<(String, String)>,
    /// Every watched path with its stat data then (`None`: absent).
    watched: Vec<(PathBuf, Option<Stat>)>,
    facts: GitFacts,
}

/// Where the repository's files are, as `git rev-parse` says, and what it tracks.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub toplevel: PathBuf,
    pub git_dir: PathBuf,
    pub common_dir: PathBuf,
    /// Tracked paths relative to `toplevel`, as `git ls-files -z --full-name` lists them.
    pub tracked: Vec<PathBuf>,
}

impl Layout {
    /// From `git rev-parse --path-format=absolute --show-toplevel --git-dir --git-common-dir`
    /// and `git ls-files -z --full-name -- :/` (raw bytes: a name need not be UTF-8).
    pub fn parse(rev_parse: &[u8], ls_files: &[u8]) -> Option<Layout> {
        let text = std::str::from_utf8(rev_parse).ok()?;
        let mut lines = text.lines();
        let (toplevel, git_dir, common_dir) = (lines.next()?, lines.next()?, lines.next()?);
        let tracked = ls_files
            .split(|b| *b == 0)
            .filter(|name| !name.is_empty())
            .map(|name| PathBuf::from(std::ffi::OsStr::from_bytes(name)))
            .collect();
        Some(Layout {
            toplevel: PathBuf::from(toplevel),
            git_dir: PathBuf::from(git_dir),
            common_dir: PathBuf::from(common_dir),
            tracked,
        })
    }
}

/// The store: one JSON file per directory under [`GitCache::at`]'s directory.
#[derive(Debug, Clone)]
pub struct GitCache {
    dir: PathBuf,
    /// A file changed less than this long before the facts are stored makes the state racy:
    /// it is not stored.
    pub racy: Duration,
}

impl GitCache {
    /// Bumped whenever what a record holds changes meaning.
    const FORMAT: &'static str = "rcross-git-facts-v1";

    pub fn at(dir: impl Into<PathBuf>) -> GitCache {
        GitCache {
            dir: dir.into(),
            racy: Duration::from_secs(2),
        }
    }

    /// `$XDG_CACHE_HOME/rcross/git`, else `$HOME/.cache/rcross/git` (only absolute paths
    /// count); `None` without either.
    pub fn in_user_cache() -> Option<GitCache> {
        Some(GitCache::at(crate::userdir::user_cache_root()?.join("git")))
    }

    /// This process's `GIT_*` variables and the two that say where git's own configuration is
    /// (HOME, XDG_CONFIG_HOME), sorted: GIT_DIR, GIT_WORK_TREE, GIT_INDEX_FILE, GIT_CONFIG_*, a
    /// different global config and others change what git answers, so a record holds them and
    /// is used only with the same ones.
    fn git_env() -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = std::env::vars_os()
            .filter(|(k, _)| {
                k.as_bytes().starts_with(b"GIT_") || k == "HOME" || k == "XDG_CONFIG_HOME"
            })
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect();
        vars.sort();
        vars
    }

    fn file_for(&self, dir: &Path) -> PathBuf {
        let key = crate::image::digest::sha256_hex(dir.as_os_str().as_bytes());
        self.dir.join(format!("{}.json", &key[..32]))
    }

    /// The facts stored for `dir` when every watched file is as recorded and `git` is the
    /// program that answered then.
    pub fn load(&self, dir: &Path, git: &Path) -> Option<GitFacts> {
        let bytes = std::fs::read(self.file_for(dir)).ok()?;
        let record: Record = serde_json::from_slice(&bytes).ok()?;
        let unchanged = record.format == Self::FORMAT
            && record.dir == dir
            && record.git == (git.to_path_buf(), Stat::of(git))
            && record.env == Self::git_env()
            && record
                .watched
                .iter()
                .all(|(path, stat)| Stat::of(path) == *stat);
        unchanged.then_some(record.facts)
    }

    /// Stores `facts` for `dir` with the current state of what they depend on (see the
    /// module's comment for what is never stored). Best effort: a cache that cannot be written
    /// only costs the next build its `git` processes.
    pub fn store(&self, dir: &Path, git: &Path, facts: &GitFacts, layout: &Layout) {
        let Some(watched) = watched(facts, layout) else {
            return;
        };
        let since = SystemTime::now()
            .checked_sub(self.racy)
            .unwrap_or(UNIX_EPOCH);
        if watched
            .iter()
            .any(|(_, stat)| stat.is_some_and(|s| s.changed() >= since))
        {
            return;
        }
        let record = Record {
            format: Self::FORMAT.to_string(),
            dir: dir.to_path_buf(),
            git: (git.to_path_buf(), Stat::of(git)),
            env: Self::git_env(),
            watched,
            facts: facts.clone(),
        };
        let _ = self.write(dir, &record);
    }

    fn write(&self, dir: &Path, record: &Record) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        serde_json::to_writer(&mut tmp, record)?;
        tmp.persist(self.file_for(dir)).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Every path the facts depend on, with its stat data now; `None` when the facts cannot be
/// cached (submodules, too many files).
fn watched(facts: &GitFacts, layout: &Layout) -> Option<Vec<(PathBuf, Option<Stat>)>> {
    if layout.tracked.len() > MAX_TRACKED || layout.toplevel.join(".gitmodules").exists() {
        return None;
    }
    let (git, common) = (&layout.git_dir, &layout.common_dir);
    let mut paths: Vec<PathBuf> = vec![
        git.join("HEAD"),
        git.join("index"),
        git.join("config.worktree"),
        common.join("config"),
        common.join("packed-refs"),
        common.join("shallow"),
        common.join("info").join("grafts"),
        common.join("refs").join("replace"),
        PathBuf::from("/etc/gitconfig"),
    ];
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        paths.push(home.join(".gitconfig"));
        paths.push(home.join(".config").join("git").join("config"));
    }
    if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from) {
        paths.push(xdg.join("git").join("config"));
    }
    if let Some(branch) = &facts.branch {
        paths.push(common.join("refs").join("heads").join(branch));
    }
    // Every tag, and the directories holding them (a new or removed tag changes its
    // directory's mtime).
    let tags = common.join("refs").join("tags");
    paths.push(tags.clone());
    under(&tags, &mut paths).ok()?;
    paths.extend(layout.tracked.iter().map(|p| layout.toplevel.join(p)));
    Some(
        paths
            .into_iter()
            .map(|p| {
                let stat = Stat::of(&p);
                (p, stat)
            })
            .collect(),
    )
}

/// Every path below `dir` (none when it does not exist).
fn under(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        out.push(entry.path());
        if entry.file_type()?.is_dir() {
            under(&entry.path(), out)?;
        }
    }
    Ok(())
}
