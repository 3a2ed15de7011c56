//! The input-addressed build cache: a host build's output tree keyed by a digest of everything
//! the build command sees (project files, command, environment, compilers' identity), so an
//! unchanged platform is not rebuilt.
//!
//! Layout under the root (`<user cache>/rcross/build`):
//! - `entries/<key>/tree/` the stored output tree, `entries/<key>/meta.json` its tree digest,
//!   `entries/<key>/used` touched on every hit (LRU order for pruning);
//! - `stat/<project>.json` the stat cache of one project directory (as git's index: an
//!   unchanged file is recognised by its stat data and not read);
//! - `tools.json` compiler identities (`--version` output) by path, size and mtime;
//! - `tmp/` entries being written; each is renamed into `entries/` only when complete;
//! - `layers/<key>/` the layer cache's compressed blobs ([`super::layer_cache`]), pruned with
//!   the entries.

use crate::image::digest::{sha256_hex, Sha256};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Default size limit of the cache (all entries together), pruned least recently used first.
pub const DEFAULT_LIMIT: u64 = 2 << 30;

/// Bumped whenever what goes into a key or an entry changes meaning.
const FORMAT: &str = "rcross-build-cache-v1";

/// Environment variables that name a compiler or linker whose identity goes into the key.
const TOOL_VARS: &[&str] = &[
    "CC", "CXX", "AR", "LD", "RANLIB", "STRIP", "OBJCOPY", "RUSTC", "GO", "CARGO",
];

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("build cache: cannot {what} {}: {source}; check the permissions or free space there, or build with --no-cache", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("build cache: no cache directory: neither XDG_CACHE_HOME nor HOME is an absolute path; set one, or build with --no-cache")]
    NoHome,
    #[error("build cache: bad ignore pattern in {}: {message}; fix the pattern", path.display())]
    Ignore { path: PathBuf, message: String },
}

fn io<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> CacheError + 'p {
    move |source| CacheError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The build cache at one root directory.
#[derive(Debug, Clone)]
pub struct BuildCache {
    root: PathBuf,
}

/// What one platform's host build sees, besides the project files.
#[derive(Debug, Clone)]
pub struct CacheInputs<'a> {
    /// [`BuildCache::project_digest`] of the project directory.
    pub project_digest: &'a str,
    pub command: &'a str,
    /// The working directory, relative to the project.
    pub workdir: &'a Path,
    /// Every variable the command gets from rcross (`rcross env` plus build args,
    /// RCROSS_PLATFORM and SOURCE_DATE_EPOCH), without RCROSS_OUT (a temporary path).
    pub env: &'a [(String, String)],
}

/// The answer of [`BuildCache::restore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLookup {
    /// The stored tree was checked against its digest and copied into the output directory.
    Hit,
    Miss,
    /// The entry did not match its digest (why); it was removed and must be rebuilt.
    Corrupt(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    format: String,
    tree_digest: String,
    bytes: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StatCache {
    /// When this cache was written (ns since the epoch): a file whose mtime falls in the same
    /// second or later may have changed without its stat data changing ("racy git").
    written_ns: i128,
    files: BTreeMap<String, StatEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StatEntry {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    mode: u32,
    sha256: String,
}

/// Serialises the read-merge-write of `tools.json` between the platforms of one build.
static TOOLS_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[derive(Debug, Default, Serialize, Deserialize)]
struct Tools {
    /// By path: (size, mtime ns, identity).
    tools: BTreeMap<String, (u64, i128, String)>,
}

/// Summary of a prune.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pruned {
    /// Build entries (output trees) removed and kept.
    pub removed: usize,
    pub kept: usize,
    /// Bytes of build entries and cached layers together.
    pub bytes_removed: u64,
    pub bytes_kept: u64,
    /// Cached layer blobs removed and kept.
    pub layers_removed: usize,
    pub layers_kept: usize,
}

/// Records in `path` that its entry was used now (the LRU order `prune` follows). Written in
/// place: truncating or replacing the file would free a block, which costs a discard on file
/// systems mounted with it, on every cache hit. Best effort.
pub(crate) fn stamp_used(path: &Path) {
    use std::io::Write;
    let text = now_ns().to_string();
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        f.write_all(text.as_bytes())?;
        if f.metadata()?.len() != text.len() as u64 {
            f.set_len(text.len() as u64)?;
        }
        Ok(())
    };
    let _ = write();
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn ns(secs: i64, nsec: i64) -> i128 {
    secs as i128 * 1_000_000_000 + nsec as i128
}

fn hash_file(path: &Path) -> Result<String, CacheError> {
    let mut f = std::fs::File::open(path).map_err(io("read", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(io("read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.hex())
}

/// A length-prefixed field, so no two different sequences of fields hash alike.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// Entries of a directory, sorted by name so digests do not depend on listing order.
fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, CacheError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io("list", dir))? {
        let e = e.map_err(io("list", dir))?;
        out.push((e.file_name().to_string_lossy().into_owned(), e.path()));
    }
    out.sort();
    Ok(out)
}

/// Write `data` to `path` through a temporary file and a rename, so readers see the old or
/// the new content, never a part.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), CacheError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io("write in", dir))?;
    std::io::Write::write_all(&mut tmp, data).map_err(io("write", path))?;
    tmp.persist(path).map_err(|e| CacheError::Io {
        what: "write",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de> + Default>(path: &Path) -> T {
    // A missing or unreadable side file only costs a re-hash: start afresh.
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The ignore rules of a project: `.rcrossignore` in gitignore syntax, else `.dockerignore`,
/// whose patterns Docker always reads from the context's root (`foo` is only the top-level
/// `foo`), so each is anchored before it goes to the gitignore matcher. Ignoring too much would
/// let a change go unnoticed, so the Docker file is never read with gitignore's looser rules.
/// (The `ignore` crate's matcher: what ripgrep uses.)
fn ignore_rules(project: &Path) -> Result<ignore::gitignore::Gitignore, CacheError> {
    let mut b = ignore::gitignore::GitignoreBuilder::new(project);
    let bad = |path: &Path, e: ignore::Error| CacheError::Ignore {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let rcross = project.join(".rcrossignore");
    let docker = project.join(".dockerignore");
    if rcross.is_file() {
        if let Some(e) = b.add(&rcross) {
            return Err(bad(&rcross, e));
        }
    } else if docker.is_file() {
        let text = std::fs::read_to_string(&docker).map_err(io("read", &docker))?;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (neg, pat) = match line.strip_prefix('!') {
                Some(rest) => ("!", rest.trim()),
                None => ("", line),
            };
            let pat = pat.trim_start_matches("./").trim_start_matches('/');
            b.add_line(Some(docker.clone()), &format!("{neg}/{pat}"))
                .map_err(|e| bad(&docker, e))?;
        }
    }
    b.build().map_err(|e| bad(&rcross, e))
}

/// Digest of a tree: every entry's relative path, kind, permission bits and content (files),
/// or target (symlinks). `known` answers a file's content digest from its stat data when it
/// can (the stat cache); `seen` is told every file's stat data and digest.
fn tree_digest(
    root: &Path,
    skip: &dyn Fn(&str, bool) -> bool,
    known: &dyn Fn(&str, &std::fs::Metadata) -> Option<String>,
    seen: &mut dyn FnMut(&str, &std::fs::Metadata, &str),
) -> Result<(String, u64), CacheError> {
    let mut h = Sha256::new();
    let mut bytes = 0u64;
    let mut stack = vec![String::new()];
    while let Some(rel_dir) = stack.pop() {
        let dir = if rel_dir.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel_dir)
        };
        let mut subdirs = Vec::new();
        for (name, path) in sorted_entries(&dir)? {
            let rel = if rel_dir.is_empty() {
                name
            } else {
                format!("{rel_dir}/{name}")
            };
            let md = std::fs::symlink_metadata(&path).map_err(io("stat", &path))?;
            let ft = md.file_type();
            if skip(&rel, ft.is_dir()) {
                continue;
            }
            let mode = md.permissions().mode() & 0o7777;
            if ft.is_dir() {
                field(&mut h, b"d");
                field(&mut h, rel.as_bytes());
                field(&mut h, &mode.to_le_bytes());
                subdirs.push(rel);
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&path).map_err(io("read", &path))?;
                field(&mut h, b"l");
                field(&mut h, rel.as_bytes());
                field(&mut h, target.as_os_str().as_encoded_bytes());
            } else if ft.is_file() {
                let digest = match known(&rel, &md) {
                    Some(d) => d,
                    None => hash_file(&path)?,
                };
                seen(&rel, &md, &digest);
                bytes += md.len();
                field(&mut h, b"f");
                field(&mut h, rel.as_bytes());
                field(&mut h, &mode.to_le_bytes());
                field(&mut h, digest.as_bytes());
            }
            // Sockets, FIFOs and devices carry no content a build could read reproducibly.
        }
        // Depth first in name order: push in reverse so the smallest name comes off first.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok((format!("sha256:{}", h.hex()), bytes))
}

fn stat_entry(md: &std::fs::Metadata, sha256: &str) -> StatEntry {
    StatEntry {
        size: md.len(),
        mtime_ns: ns(md.mtime(), md.mtime_nsec()),
        ctime_ns: ns(md.ctime(), md.ctime_nsec()),
        ino: md.ino(),
        mode: md.mode(),
        sha256: sha256.to_string(),
    }
}

/// Copy a tree: files are hard-linked when `link`, else copied (permissions kept).
fn copy_tree(from: &Path, to: &Path, link: bool) -> Result<(), CacheError> {
    std::fs::create_dir_all(to).map_err(io("create", to))?;
    for (name, path) in sorted_entries(from)? {
        let dest = to.join(&name);
        let md = std::fs::symlink_metadata(&path).map_err(io("stat", &path))?;
        let ft = md.file_type();
        if ft.is_dir() {
            copy_tree(&path, &dest, link)?;
            std::fs::set_permissions(&dest, md.permissions()).map_err(io("chmod", &dest))?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(io("read", &path))?;
            std::os::unix::fs::symlink(&target, &dest).map_err(io("create", &dest))?;
        } else if ft.is_file() {
            let linked = link && std::fs::hard_link(&path, &dest).is_ok();
            if !linked {
                std::fs::copy(&path, &dest).map_err(io("copy to", &dest))?;
            }
        }
    }
    Ok(())
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

impl BuildCache {
    pub fn at(root: impl Into<PathBuf>) -> BuildCache {
        BuildCache { root: root.into() }
    }

    /// The user's cache: `$XDG_CACHE_HOME/rcross/build`, else `$HOME/.cache/rcross/build`.
    pub fn default_root(xdg_cache_home: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
        // Next to the rootfs cache, which knows the XDG rules.
        let rootfs = super::rootfs::default_cache_dir(xdg_cache_home, home)?;
        Some(rootfs.parent()?.join("build"))
    }

    /// The cache of this user (from the environment).
    pub fn open_default() -> Result<BuildCache, CacheError> {
        let xdg = std::env::var("XDG_CACHE_HOME").ok();
        let home = std::env::var("HOME").ok();
        Self::default_root(xdg.as_deref(), home.as_deref())
            .map(BuildCache::at)
            .ok_or(CacheError::NoHome)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Digest of the project's files, minus `.git`, `.rcross` and what `.rcrossignore` (else
    /// `.dockerignore`) lists. Files whose size, mtime, ctime and inode match the stat cache
    /// are not read, unless they changed in the second the cache was written or later.
    pub fn project_digest(&self, project: &Path) -> Result<String, CacheError> {
        let project = std::fs::canonicalize(project).map_err(io("resolve", project))?;
        let rules = ignore_rules(&project)?;
        let stat_file = self.root.join("stat").join(format!(
            "{}.json",
            &sha256_hex(project.as_os_str().as_encoded_bytes())[..32]
        ));
        let old: StatCache = read_json(&stat_file);
        let racy_from = old.written_ns.div_euclid(1_000_000_000);
        let started = now_ns();
        let mut fresh = StatCache::default();
        let skip = |rel: &str, is_dir: bool| {
            rel == ".git"
                || rel == ".rcross"
                || rules
                    .matched_path_or_any_parents(Path::new(rel), is_dir)
                    .is_ignore()
        };
        let known = |rel: &str, md: &std::fs::Metadata| {
            let e = old.files.get(rel)?;
            let racy = md.mtime() as i128 >= racy_from;
            (!racy && *e == stat_entry(md, &e.sha256)).then(|| e.sha256.clone())
        };
        let mut seen = |rel: &str, md: &std::fs::Metadata, d: &str| {
            fresh.files.insert(rel.to_string(), stat_entry(md, d));
        };
        let (digest, _) = tree_digest(&project, &skip, &known, &mut seen)?;
        // Stamp the time the walk started: anything changed since is racy on the next run.
        fresh.written_ns = started;
        // Rewrite when something changed, or when a file was too new to trust (so that, once
        // it is older than the new stamp, the next run need not read it).
        let untrusted = fresh
            .files
            .values()
            .any(|e| e.mtime_ns.div_euclid(1_000_000_000) >= racy_from);
        if fresh.files != old.files || untrusted {
            let json = serde_json::to_vec(&fresh).unwrap_or_default();
            write_atomic(&stat_file, &json)?;
        }
        Ok(digest)
    }

    /// Identity of the compilers the environment names: resolved path and `--version` output,
    /// remembered by path, size and mtime so an unchanged compiler is not run again.
    fn tool_identities(&self, env: &[(String, String)]) -> Result<Vec<String>, CacheError> {
        let path_var = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var("PATH").ok())
            .unwrap_or_default();
        let file = self.root.join("tools.json");
        let tools: Tools = read_json(&file);
        // What this call learnt; merged into the file as it is at write time.
        let mut learnt = BTreeMap::new();
        let mut out = Vec::new();
        for (k, v) in env {
            if !(TOOL_VARS.contains(&k.as_str()) || k.ends_with("_LINKER")) {
                continue;
            }
            let Some(prog) = v.split_whitespace().next() else {
                continue;
            };
            let Ok(path) = which::which_in(prog, Some(&path_var), "/") else {
                out.push(format!("{k}={v}: not found"));
                continue;
            };
            let Ok(md) = std::fs::metadata(&path) else {
                continue;
            };
            let key = path.display().to_string();
            let stamp = (md.len(), ns(md.mtime(), md.mtime_nsec()));
            let id = match tools.tools.get(&key) {
                Some((s, m, id)) if (*s, *m) == stamp => id.clone(),
                _ => {
                    let id = match std::process::Command::new(&path)
                        .arg("--version")
                        .stdin(std::process::Stdio::null())
                        .output()
                    {
                        Ok(o) => format!(
                            "{}{}",
                            String::from_utf8_lossy(&o.stdout),
                            String::from_utf8_lossy(&o.stderr)
                        ),
                        Err(e) => format!("cannot run --version: {e}"),
                    };
                    learnt.insert(key.clone(), (stamp.0, stamp.1, id.clone()));
                    id
                }
            };
            out.push(format!("{k}={key}\n{id}"));
        }
        if !learnt.is_empty() {
            // Platforms build in parallel threads: writing back the copy read above would drop
            // what another platform wrote meanwhile, and its compilers would run `--version`
            // again on every build. Re-read and merge under a lock instead.
            let _guard = TOOLS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            let mut current: Tools = read_json(&file);
            current.tools.extend(learnt);
            let json = serde_json::to_vec(&current).unwrap_or_default();
            write_atomic(&file, &json)?;
        }
        Ok(out)
    }

    /// The key of one platform's build.
    pub fn key(&self, req: &CacheInputs) -> Result<String, CacheError> {
        let mut h = Sha256::new();
        field(&mut h, FORMAT.as_bytes());
        field(&mut h, req.project_digest.as_bytes());
        field(&mut h, req.command.as_bytes());
        field(&mut h, req.workdir.as_os_str().as_encoded_bytes());
        let mut env: Vec<&(String, String)> = req.env.iter().collect();
        // The last value of a repeated variable is the one the command gets.
        env.reverse();
        let mut uniq: BTreeMap<&str, &str> = BTreeMap::new();
        for (k, v) in env {
            uniq.entry(k.as_str()).or_insert(v.as_str());
        }
        for (k, v) in &uniq {
            field(&mut h, k.as_bytes());
            field(&mut h, v.as_bytes());
        }
        let last: Vec<(String, String)> = uniq
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for id in self.tool_identities(&last)? {
            field(&mut h, id.as_bytes());
        }
        Ok(h.hex())
    }

    fn entry(&self, key: &str) -> PathBuf {
        self.root.join("entries").join(key)
    }

    /// Fill the (empty or missing) output directory `out` from the entry `key`, after checking
    /// the stored tree against its digest. A corrupt entry is removed.
    pub fn restore(&self, key: &str, out: &Path) -> Result<CacheLookup, CacheError> {
        let entry = self.entry(key);
        if !entry.is_dir() {
            return Ok(CacheLookup::Miss);
        }
        let meta: Option<Meta> = std::fs::read(entry.join("meta.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let tree = entry.join("tree");
        let verdict = match meta {
            None => Some("meta.json is missing or unreadable".to_string()),
            Some(m) if m.format != FORMAT => Some(format!("format {} is not {FORMAT}", m.format)),
            Some(m) => match tree_digest(&tree, &|_, _| false, &|_, _| None, &mut |_, _, _| {}) {
                Ok((d, _)) if d == m.tree_digest => None,
                Ok((d, _)) => Some(format!(
                    "its tree has digest {d}, recorded {}",
                    m.tree_digest
                )),
                Err(e) => Some(e.to_string()),
            },
        };
        if let Some(why) = verdict {
            let _ = std::fs::remove_dir_all(&entry);
            return Ok(CacheLookup::Corrupt(why));
        }
        if out.exists() {
            std::fs::remove_dir_all(out).map_err(io("empty", out))?;
        }
        copy_tree(&tree, out, true)?;
        // LRU order for pruning: the time of the last use.
        stamp_used(&entry.join("used"));
        Ok(CacheLookup::Hit)
    }

    /// Store `out` as the entry `key`: written under tmp/, then renamed into place, so a
    /// reader sees a whole entry or none. Then prune to `limit` bytes.
    pub fn store(&self, key: &str, out: &Path, limit: u64) -> Result<(), CacheError> {
        let tmp_root = self.root.join("tmp");
        std::fs::create_dir_all(&tmp_root).map_err(io("create", &tmp_root))?;
        let tmp = tempfile::Builder::new()
            .prefix("entry")
            .tempdir_in(&tmp_root)
            .map_err(io("create in", &tmp_root))?;
        let tree = tmp.path().join("tree");
        copy_tree(out, &tree, false)?;
        // The digest of what is stored, not of `out`: that is what a later hit checks.
        let (tree_digest, bytes) =
            tree_digest(&tree, &|_, _| false, &|_, _| None, &mut |_, _, _| {})?;
        let meta = Meta {
            format: FORMAT.to_string(),
            tree_digest,
            bytes,
        };
        let json = serde_json::to_vec_pretty(&meta).unwrap_or_default();
        std::fs::write(tmp.path().join("meta.json"), json)
            .map_err(io("write", &tmp.path().join("meta.json")))?;
        let _ = std::fs::write(tmp.path().join("used"), now_ns().to_string());
        let entries = self.root.join("entries");
        std::fs::create_dir_all(&entries).map_err(io("create", &entries))?;
        let dest = self.entry(key);
        let staged = tmp.keep();
        if std::fs::rename(&staged, &dest).is_err() {
            // Another build stored the same key first: its entry is as good as ours.
            let _ = std::fs::remove_dir_all(&staged);
        }
        self.prune(limit).map(|_| ())
    }

    /// Remove least recently used entries until all together take at most `limit` bytes
    /// (0: remove every entry, the stat caches and the compiler identities).
    pub fn prune(&self, limit: u64) -> Result<Pruned, CacheError> {
        let mut list = Vec::new();
        // Output trees, compressed layers (the layer cache's entries) and Dockerfile steps
        // (counted with the layers) share the limit.
        for (layer, entries) in [
            (false, self.root.join("entries")),
            (true, self.root.join("layers")),
            (true, self.root.join("steps")),
        ] {
            if !entries.is_dir() {
                continue;
            }
            for (_, path) in sorted_entries(&entries)? {
                let used: i128 = std::fs::read_to_string(path.join("used"))
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                list.push((used, dir_bytes(&path), path, layer));
            }
        }
        // Newest first: keep while under the limit.
        list.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.cmp(&b.2)));
        let mut r = Pruned::default();
        for (_, bytes, path, layer) in list {
            if limit > 0 && r.bytes_kept + bytes <= limit {
                *(if layer {
                    &mut r.layers_kept
                } else {
                    &mut r.kept
                }) += 1;
                r.bytes_kept += bytes;
            } else {
                std::fs::remove_dir_all(&path).map_err(io("remove", &path))?;
                *(if layer {
                    &mut r.layers_removed
                } else {
                    &mut r.removed
                }) += 1;
                r.bytes_removed += bytes;
            }
        }
        if limit == 0 {
            for side in ["stat", "tmp"] {
                let p = self.root.join(side);
                if p.exists() {
                    std::fs::remove_dir_all(&p).map_err(io("remove", &p))?;
                }
            }
            let t = self.root.join("tools.json");
            if t.exists() {
                std::fs::remove_file(&t).map_err(io("remove", &t))?;
            }
        }
        Ok(r)
    }
}

/// How the cache took part in one platform's build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "cache", content = "detail")]
pub enum CacheUse {
    /// The stored output was used; the command did not run.
    Hit,
    /// The command ran and its output was stored.
    Miss,
    /// A stored entry failed its digest check (why): removed, and the command ran.
    Corrupt(String),
    /// The cache could not be used (why); the command ran.
    Error(String),
}

/// Run a host build through the cache: on a hit fill `out` from it and skip `build`; else run
/// `build` (which fills `out`) and, when it succeeds, store `out`.
pub fn run_cached<E>(
    cache: &BuildCache,
    req: &CacheInputs,
    out: &Path,
    build: impl FnOnce() -> Result<f64, E>,
) -> (Result<f64, E>, CacheUse) {
    let key = match cache.key(req) {
        Ok(k) => k,
        Err(e) => return (build(), CacheUse::Error(e.to_string())),
    };
    let mut used = match cache.restore(&key, out) {
        Ok(CacheLookup::Hit) => return (Ok(0.0), CacheUse::Hit),
        Ok(CacheLookup::Miss) => CacheUse::Miss,
        Ok(CacheLookup::Corrupt(why)) => CacheUse::Corrupt(why),
        Err(e) => CacheUse::Error(e.to_string()),
    };
    let r = build();
    if r.is_ok() {
        if let Err(e) = cache.store(&key, out, DEFAULT_LIMIT) {
            used = CacheUse::Error(e.to_string());
        }
    }
    (r, used)
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_use_is_stamped_in_place() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let used = dir.path().join("used");
        stamp_used(&used);
        let first: i128 = std::fs::read_to_string(&used).unwrap().parse().unwrap();
        let inode = std::fs::metadata(&used).unwrap().ino();
        std::fs::write(&used, "12345678901234567890123456789").unwrap();
        stamp_used(&used);
        let second: i128 = std::fs::read_to_string(&used).unwrap().parse().unwrap();
        assert!(second >= first, "a longer old stamp is cut to the new one");
        assert_eq!(std::fs::metadata(&used).unwrap().ino(), inode);
    }

    use super::*;

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    /// Platforms build in parallel threads, each asking for its compilers' identities: every
    /// identity must be remembered, so a second build runs no `--version` at all.
    #[test]
    fn concurrent_platforms_keep_every_tool_identity() {
        use std::os::unix::fs::PermissionsExt;
        let c = tempfile::tempdir().unwrap();
        let bin = tempfile::tempdir().unwrap();
        let log = bin.path().join("ran.log");
        let names = ["cc-a", "cc-b", "cc-c", "cc-d"];
        for n in names {
            let p = bin.path().join(n);
            // Slow enough that every thread reads tools.json before any writes it.
            write(
                &p,
                &format!(
                    "#!/bin/sh\necho {n} >> {}\nsleep 0.2\necho {n} 1.0\n",
                    log.display()
                ),
            );
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let cache = BuildCache::at(c.path());
        let env = |n: &str| vec![("CC".to_string(), bin.path().join(n).display().to_string())];
        std::thread::scope(|s| {
            for n in names {
                let (cache, env) = (&cache, env(n));
                s.spawn(move || cache.tool_identities(&env).unwrap());
            }
        });
        for n in names {
            let ids = cache.tool_identities(&env(n)).unwrap();
            assert!(ids[0].contains(&format!("{n} 1.0")), "{ids:?}");
        }
        let ran = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            ran.lines().count(),
            names.len(),
            "a compiler's --version ran again after a parallel build remembered it:\n{ran}"
        );
    }

    #[test]
    fn project_digest_follows_content_and_ignores_rules() {
        let c = tempfile::tempdir().unwrap();
        let p = tempfile::tempdir().unwrap();
        let cache = BuildCache::at(c.path());
        write(&p.path().join("src/a.c"), "int a;");
        write(&p.path().join(".rcrossignore"), "*.log\n");
        let d1 = cache.project_digest(p.path()).unwrap();
        write(&p.path().join("build.log"), "noise");
        write(&p.path().join(".git/HEAD"), "x");
        write(&p.path().join(".rcross/oci/x"), "x");
        assert_eq!(cache.project_digest(p.path()).unwrap(), d1);
        // Same size, same second: the racy rule makes it re-read.
        write(&p.path().join("src/a.c"), "int b;");
        assert_ne!(cache.project_digest(p.path()).unwrap(), d1);
    }

    #[test]
    fn dockerignore_patterns_are_anchored_at_the_root() {
        let c = tempfile::tempdir().unwrap();
        let p = tempfile::tempdir().unwrap();
        let cache = BuildCache::at(c.path());
        write(
            &p.path().join(".dockerignore"),
            "# c\nbuild\n*.log\n!keep.log\n",
        );
        write(&p.path().join("src/build/x.c"), "1");
        let d1 = cache.project_digest(p.path()).unwrap();
        // Ignored: the top-level build/ and *.log, not keep.log.
        write(&p.path().join("build/out.o"), "x");
        write(&p.path().join("a.log"), "x");
        assert_eq!(cache.project_digest(p.path()).unwrap(), d1);
        write(&p.path().join("keep.log"), "x");
        let d2 = cache.project_digest(p.path()).unwrap();
        assert_ne!(d2, d1, "a negated pattern keeps the file");
        // Not ignored: src/build/ (Docker's `build` is only the top-level one).
        write(&p.path().join("src/build/x.c"), "2");
        assert_ne!(cache.project_digest(p.path()).unwrap(), d2);
    }

    #[test]
    fn stat_cache_is_trusted_only_for_files_older_than_the_cache() {
        let c = tempfile::tempdir().unwrap();
        let p = tempfile::tempdir().unwrap();
        let cache = BuildCache::at(c.path());
        write(&p.path().join("f"), "one");
        let d1 = cache.project_digest(p.path()).unwrap();
        // Pretend the file is old and the cache new: now the stat data alone answers.
        let stat_dir = c.path().join("stat");
        let file = sorted_entries(&stat_dir).unwrap().remove(0).1;
        let mut sc: StatCache = read_json(&file);
        sc.written_ns += 10 * 1_000_000_000;
        let e = sc.files.get_mut("f").unwrap();
        e.sha256 = "planted".into();
        std::fs::write(&file, serde_json::to_vec(&sc).unwrap()).unwrap();
        let d2 = cache.project_digest(p.path()).unwrap();
        assert_ne!(d1, d2, "the planted digest was used: the file was not read");
    }

    #[test]
    fn store_restore_and_corruption() {
        let c = tempfile::tempdir().unwrap();
        let o = tempfile::tempdir().unwrap();
        let cache = BuildCache::at(c.path());
        write(&o.path().join("out/bin/hello"), "ELF?");
        std::os::unix::fs::symlink("bin/hello", o.path().join("out/link")).unwrap();
        cache
            .store("k1", &o.path().join("out"), DEFAULT_LIMIT)
            .unwrap();
        assert_eq!(
            cache.restore("k1", &o.path().join("again")).unwrap(),
            CacheLookup::Hit
        );
        assert_eq!(
            std::fs::read_to_string(o.path().join("again/bin/hello")).unwrap(),
            "ELF?"
        );
        assert_eq!(
            cache.restore("k2", &o.path().join("x")).unwrap(),
            CacheLookup::Miss
        );
        std::fs::write(c.path().join("entries/k1/tree/bin/hello"), "ELF!").unwrap();
        assert!(matches!(
            cache.restore("k1", &o.path().join("y")).unwrap(),
            CacheLookup::Corrupt(_)
        ));
        assert_eq!(
            cache.restore("k1", &o.path().join("z")).unwrap(),
            CacheLookup::Miss
        );
    }

    #[test]
    fn prune_keeps_the_most_recently_used_within_the_limit() {
        let c = tempfile::tempdir().unwrap();
        let o = tempfile::tempdir().unwrap();
        let cache = BuildCache::at(c.path());
        write(&o.path().join("out/f"), &"x".repeat(1000));
        cache
            .store("old", &o.path().join("out"), DEFAULT_LIMIT)
            .unwrap();
        std::fs::write(c.path().join("entries/old/used"), "1").unwrap();
        cache
            .store("new", &o.path().join("out"), DEFAULT_LIMIT)
            .unwrap();
        let r = cache.prune(1500).unwrap();
        assert_eq!((r.removed, r.kept), (1, 1));
        assert!(c.path().join("entries/new").is_dir());
        assert_eq!(cache.prune(0).unwrap().removed, 1);
    }
}
