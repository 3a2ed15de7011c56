//! Stage roots as overlay mounts. Copying a base image's unpacked root for every stage of every
//! platform that runs a step costs a full copy each time (819 MiB, 17 s on this machine kind,
//! for a Debian golang image); an overlay over one shared lower directory costs a mount.
//!
//! The lower directory is the cached unpacked root with its owners shifted into the sandbox's
//! id range, made once per base manifest and id range beside the cached root (`shifted-UID-GID/`,
//! written under a temporary name and renamed when complete). Each stage root is
//! `overlay(lowerdir=that, upperdir=DIR/upper, workdir=DIR/work)` mounted on `DIR/root`, in
//! rcross's own mount namespace (the sandbox's namespaces inherit it), so only root (with an id
//! range) uses it; everyone else, and any failure to mount, falls back to the copy. What a step
//! changes lands in the upper directory; the merged view is what snapshots, COPY and the
//! sandbox see, with overlayfs's semantics — those of Docker's overlay2 driver (renaming a
//! lower directory gives EXDEV, which `mv` and dpkg handle by copying).
//!
//! Mounts are removed before their directory is (`unmount_below`), when the build's work
//! directory goes, and for the work directories of builds that were killed.

use crate::pipeline::chroot::JobIds;
use crate::pipeline::rootfs::{self, CopyOptions, CopyOwners};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Serialises making shifted roots within this process (platforms of one build share them).
static SHIFTING: Mutex<()> = Mutex::new(());

/// Marker written last into a complete shifted root's directory.
const COMPLETE: &str = "complete";

/// Whether stage roots may be overlays: as root, with a range of ids.
pub fn usable(ids: JobIds) -> bool {
    matches!(ids, JobIds::Range { .. }) && nix::unistd::geteuid().is_root()
}

/// The cached root `cached_root` (image ids) with owners shifted by `to_host`, beside it; made
/// on first use.
pub fn shifted_root(
    cached_root: &Path,
    ids: JobIds,
    to_host: &(dyn Fn(u32, u32) -> (u32, u32) + Sync),
) -> Result<PathBuf, String> {
    let (uid, gid) = ids.root_on_host().unwrap_or((0, 0));
    let entry = cached_root
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", cached_root.display()))?;
    let dir = entry.join(format!("shifted-{uid}-{gid}"));
    let root = dir.join("root");
    if dir.join(COMPLETE).exists() {
        return Ok(root);
    }
    let _one_at_a_time = SHIFTING.lock().unwrap_or_else(|p| p.into_inner());
    if dir.join(COMPLETE).exists() {
        return Ok(root);
    }
    let temp = entry.join(format!("{}shifted", rootfs::owned_prefix(".tmp")));
    let _ = rootfs::remove_tree(&temp);
    std::fs::create_dir_all(&temp).map_err(|e| format!("{}: {e}", temp.display()))?;
    let map = |u, g| to_host(u, g);
    rootfs::copy_tree(
        cached_root,
        &temp.join("root"),
        &CopyOptions {
            owners: CopyOwners::Map(&map),
            exclude: &|_| false,
        },
    )
    .map_err(|e| format!("shifting the owners of {}: {e}", cached_root.display()))?;
    std::fs::write(temp.join(COMPLETE), b"").map_err(|e| format!("{}: {e}", temp.display()))?;
    let _ = rootfs::remove_tree(&dir);
    std::fs::rename(&temp, &dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(root)
}

/// Mounts `overlay(lower, DIR/upper, DIR/work)` on `DIR/root`, the upper directory's root owned
/// by `owner` (the stage root's `/`); returns `DIR/root`.
pub fn mount(lower: &Path, dir: &Path, owner: Option<(u32, u32)>) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let (upper, work, root) = (dir.join("upper"), dir.join("work"), dir.join("root"));
    for d in [&upper, &work, &root] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let lower_meta = std::fs::metadata(lower).map_err(|e| format!("{}: {e}", lower.display()))?;
    // The merged root takes its mode and owner from the upper directory.
    std::fs::set_permissions(
        &upper,
        std::fs::Permissions::from_mode(lower_meta.permissions().mode() & 0o7777),
    )
    .map_err(|e| format!("{}: {e}", upper.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::lchown(&upper, Some(uid), Some(gid))
            .map_err(|e| format!("changing the owner of {}: {e}", upper.display()))?;
    }
    // `userxattr`: overlay's own attributes (whiteouts, opaque and redirect markers) in the
    // user.* namespace; some filesystems here refuse trusted.* ones ("failed to set xattr on
    // upper"), and then removing a lower directory fails with EIO and dpkg's renames with
    // EXDEV.
    let options = format!(
        "userxattr,lowerdir={},upperdir={},workdir={}",
        escape(lower)?,
        escape(&upper)?,
        escape(&work)?
    );
    nix::mount::mount(
        Some("overlay"),
        &root,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| format!("mounting an overlay on {}: {e}", root.display()))?;
    Ok(root)
}

/// A path as an overlay option value (`,` and `:` separate options and layers there).
fn escape(path: &Path) -> Result<String, String> {
    let s = path
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))?;
    if s.contains([',', ':', '\\']) {
        return Err(format!("{s} holds a ',', ':' or '\\'"));
    }
    Ok(s.to_string())
}

/// Unmounts every mount at or below `dir` (deepest first; detached, so a busy one goes too).
pub fn unmount_below(dir: &Path) {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().trim_end_matches('/').to_string();
    let mut points: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Ok(n) = u8::from_str_radix(&field[i + 1..i + 4], 8) {
                out.push(n);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_read() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape(r"/end\"), r"/end\");
    }

    /// As root: an overlay stage root shows the lower files, takes writes in the upper
    /// directory only, and goes with `unmount_below`.
    #[test]
    fn an_overlay_root_writes_to_its_upper_directory_only() {
        if !crate::prereq::require(
            nix::unistd::geteuid().is_root(),
            "root (mounting overlayfs)",
        ) {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("lower");
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::write(lower.join("etc/keep"), b"lower").unwrap();
        let dir = t.path().join("stage");
        let root = mount(&lower, &dir, None).unwrap();
        assert_eq!(std::fs::read(root.join("etc/keep")).unwrap(), b"lower");
        std::fs::write(root.join("etc/keep"), b"changed").unwrap();
        std::fs::write(root.join("new"), b"n").unwrap();
        assert_eq!(std::fs::read(lower.join("etc/keep")).unwrap(), b"lower");
        assert_eq!(
            std::fs::read(dir.join("upper/etc/keep")).unwrap(),
            b"changed"
        );
        // What failed without `userxattr` here: removing a lower directory (EIO). Renaming
        // one gives EXDEV, as under Docker's overlay2 (`mv` copies instead).
        std::fs::create_dir_all(lower.join("usr/share/doc/x")).unwrap();
        let renamed = std::fs::rename(root.join("usr/share/doc/x"), root.join("usr/y"));
        assert_eq!(renamed.unwrap_err().raw_os_error(), Some(nix::libc::EXDEV));
        std::fs::remove_dir_all(root.join("usr")).unwrap();
        assert!(!root.join("usr").exists());
        assert!(
            lower.join("usr/share/doc/x").exists(),
            "the lower directory is untouched"
        );
        unmount_below(&dir);
        assert!(!root.join("new").exists(), "unmounted");
        rootfs::remove_tree(&dir).unwrap();
    }
}
