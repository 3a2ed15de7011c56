//! User and group names of a stage, read from its own `/etc/passwd` and `/etc/group`.
//!
//! The files are opened inside the stage root with `openat2(RESOLVE_IN_ROOT)`: a file that is
//! itself a symlink (or sits below one) is resolved inside the root, an absolute target
//! starting again at the root, never on the host; it must be a regular file of at most 10 MiB
//! (BuildKit's `maxUserFileBytes`). Lines are parsed as moby/sys/user does (trimmed, empty ones
//! skipped, `name:x:uid:gid:…`, `name:x:gid:member,member`, unreadable numbers are 0).
//!
//! Two rules, as BuildKit has them:
//! - `COPY --chown` ([`resolve_chown`]): client/llb/fileop.go `WithUser` splits `user[:group]`;
//!   `root` and numbers are ids, other words names; solver/llbsolver/ops/user_linux.go
//!   `readUser` gives a numeric user gid = uid, a named user its primary group from
//!   `/etc/passwd`, an empty user (`:group`) uid 0, and the group part, when present, replaces
//!   the gid. One difference, on purpose: BuildKit takes a name it cannot find as 0 without a
//!   word; here it is an error naming the name and the file (as Docker's classic builder does).
//! - `USER` for RUN ([`resolve_user`]): moby/sys/user `GetExecUser`: a name must be in
//!   `/etc/passwd`; a number need not be (its gid is then 0); a user found by name or number
//!   takes its primary gid, and (when no group is given) the gids of the `/etc/group` entries
//!   listing its name as supplementary groups; an explicit group (name or number) replaces
//!   the gid and gives no supplementary groups.

use std::io::Read as _;
use std::os::fd::AsFd as _;
use std::path::Path;

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use super::copy::CopyError;

/// BuildKit's `maxUserFileBytes`.
const MAX_USER_FILE: u64 = 10 << 20;

/// A user for RUN, in image ids.
pub use crate::pipeline::chroot::RunAs;

/// One `/etc/passwd` line.
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

/// One `/etc/group` line.
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// `--chown=` (`user`, `user:group`, ids or names, `:group`) → image `(uid, gid)`.
pub fn resolve_chown(root: &Path, spec: &str) -> Result<(u32, u32), CopyError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (mut uid, mut gid) = match chown_id(user, spec)? {
        Some(id) => (id, id),
        None if user.is_empty() => (0, 0),
        None => {
            let users = read_passwd(root)?;
            let found = users
                .iter()
                .find(|u| u.name == user)
                .ok_or_else(|| unknown("user", user, spec, "/etc/passwd"))?;
            (found.uid, found.gid)
        }
    };
    if let Some(group) = group {
        gid = match chown_id(group, spec)? {
            Some(id) => id,
            None => {
                let groups = read_group(root)?;
                groups
                    .iter()
                    .find(|g| g.name == group)
                    .ok_or_else(|| unknown("group", group, spec, "/etc/group"))?
                    .gid
            }
        };
    }
    if user.is_empty() {
        uid = 0;
    }
    Ok((uid, gid))
}

/// `USER` (`user[:group]`, names or ids) → the ids RUN runs with.
pub fn resolve_user(root: &Path, user: &str) -> Result<RunAs, CopyError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, g),
        None => (user, ""),
    };
    let uid_arg = exec_id(user_part, user)?;
    let gid_arg = exec_id(group_part, user)?;
    // A numeric user needs no /etc/passwd; a name does.
    let users = match (read_passwd(root), uid_arg) {
        (Ok(users), _) => users,
        (Err(CopyError::UserFileMissing { .. }), Some(_)) => Vec::new(),
        (Err(e), _) => return Err(e),
    };
    let found = users.iter().find(|u| match uid_arg {
        Some(id) => u.uid == id,
        None if user_part.is_empty() => u.uid == 0,
        None => u.name == user_part,
    });
    let mut run_as = RunAs {
        uid: 0,
        gid: 0,
        groups: Vec::new(),
    };
    let matched_name = match found {
        Some(u) => {
            run_as.uid = u.uid;
            run_as.gid = u.gid;
            Some(u.name.clone())
        }
        None => {
            match uid_arg {
                Some(id) => run_as.uid = id,
                None if user_part.is_empty() => {}
                None => return Err(unknown("user", user_part, user, "/etc/passwd")),
            }
            None
        }
    };
    if group_part.is_empty() && matched_name.is_none() {
        return Ok(run_as);
    }
    let groups = match (read_group(root), gid_arg, group_part.is_empty()) {
        (Ok(groups), _, _) => groups,
        // A number, or only supplementary groups, need no /etc/group.
        (Err(CopyError::UserFileMissing { .. }), Some(_), _)
        | (Err(CopyError::UserFileMissing { .. }), None, true) => Vec::new(),
        (Err(e), _, _) => return Err(e),
    };
    if group_part.is_empty() {
        let name = matched_name.unwrap_or_default();
        run_as.groups = groups
            .iter()
            .filter(|g| g.members.contains(&name))
            .map(|g| g.gid)
            .collect();
        return Ok(run_as);
    }
    run_as.gid = match groups.iter().find(|g| match gid_arg {
        Some(id) => g.gid == id,
        None => g.name == group_part,
    }) {
        Some(g) => g.gid,
        None => gid_arg.ok_or_else(|| unknown("group", group_part, user, "/etc/group"))?,
    };
    Ok(run_as)
}

/// A `--chown` part as an id: `root` is 0, a 32-bit signed number (ParseInt(…, 10, 32)) is
/// itself; `None` for a name.
fn chown_id(part: &str, spec: &str) -> Result<Option<u32>, CopyError> {
    if part == "root" {
        return Ok(Some(0));
    }
    match part.parse::<i32>() {
        Ok(n) => u32::try_from(n).map(Some).map_err(|_| CopyError::BadChown {
            spec: spec.to_string(),
            reason: format!("{n} is negative; ids are 0 or more"),
        }),
        Err(_) if part.bytes().all(|b| b.is_ascii_digit()) && !part.is_empty() => {
            Err(CopyError::BadChown {
                spec: spec.to_string(),
                reason: format!("{part} is out of range for an id"),
            })
        }
        Err(_) => Ok(None),
    }
}

/// A `USER` part as an id (moby/sys/user `parseNumeric`): a number in 0..=2^31-1 is an id, other
/// words are names.
fn exec_id(part: &str, spec: &str) -> Result<Option<u32>, CopyError> {
    if part.is_empty()
        || !part
            .trim_start_matches(['-', '+'])
            .bytes()
            .all(|b| b.is_ascii_digit())
    {
        return Ok(None);
    }
    match part.parse::<i64>() {
        Ok(n) if (0..=i64::from(i32::MAX)).contains(&n) => Ok(u32::try_from(n).ok()),
        _ => Err(CopyError::BadChown {
            spec: spec.to_string(),
            reason: format!("{part} is out of the id range 0..=2147483647"),
        }),
    }
}

fn unknown(kind: &str, name: &str, spec: &str, file: &str) -> CopyError {
    CopyError::UnknownName {
        kind: kind.to_string(),
        name: name.to_string(),
        spec: spec.to_string(),
        file: file.to_string(),
    }
}

fn read_passwd(root: &Path) -> Result<Vec<PasswdEntry>, CopyError> {
    let text = read_in_root(root, "etc/passwd")?;
    Ok(lines(&text)
        .map(|f| PasswdEntry {
            name: field(&f, 0).to_string(),
            uid: number(field(&f, 2)),
            gid: number(field(&f, 3)),
        })
        .collect())
}

fn read_group(root: &Path) -> Result<Vec<GroupEntry>, CopyError> {
    let text = read_in_root(root, "etc/group")?;
    Ok(lines(&text)
        .map(|f| GroupEntry {
            name: field(&f, 0).to_string(),
            gid: number(field(&f, 2)),
            members: field(&f, 3)
                .split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect(),
        })
        .collect())
}

/// The non-empty lines of a passwd-style file, trimmed, split at `:`.
fn lines(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(':').collect())
}

fn field<'t>(fields: &[&'t str], i: usize) -> &'t str {
    fields.get(i).copied().unwrap_or("")
}

/// Go's `strconv.Atoi` with the error ignored, as moby/sys/user reads ids.
fn number(text: &str) -> u32 {
    text.parse::<u32>().unwrap_or(0)
}

/// The file at `rel` inside `root`, resolved by the kernel inside the root.
fn read_in_root(root: &Path, rel: &str) -> Result<String, CopyError> {
    let shown = format!("/{rel}");
    let io = |source: std::io::Error| CopyError::UserFile {
        file: shown.clone(),
        root: root.to_path_buf(),
        reason: source.to_string(),
    };
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io(e.into()))?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
        .resolve(
            ResolveFlag::RESOLVE_IN_ROOT
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
    let fd = match openat2(root_fd.as_fd(), rel, how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => {
            return Err(CopyError::UserFileMissing {
                file: shown,
                root: root.to_path_buf(),
            })
        }
        Err(e) => return Err(io(e.into())),
    };
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(CopyError::UserFile {
            file: shown,
            root: root.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_USER_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_USER_FILE {
        return Err(CopyError::UserFile {
            file: shown,
            root: root.to_path_buf(),
            reason: format!("larger than {MAX_USER_FILE} bytes"),
        });
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\n\n  app:x:1000:1001:App:/home/app:/bin/sh  \n\
                          bad:x:notanumber:7::/:/bin/false\ndaemon:x:1:1::/:/bin/false\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app,other\napp:x:1001:\nwheel:x:10:app\n";

    fn root_with(passwd: Option<&str>, group: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        if let Some(p) = passwd {
            std::fs::write(dir.path().join("etc/passwd"), p).unwrap();
        }
        if let Some(g) = group {
            std::fs::write(dir.path().join("etc/group"), g).unwrap();
        }
        dir
    }

    // client/llb/fileop.go WithUser + solver/llbsolver/ops/user_linux.go readUser.
    #[test]
    fn chown_follows_buildkit() {
        let root = root_with(Some(PASSWD), Some(GROUP));
        let r = root.path();
        assert_eq!(
            resolve_chown(r, "1234").unwrap(),
            (1234, 1234),
            "uid only: gid = uid"
        );
        assert_eq!(resolve_chown(r, "1234:55").unwrap(), (1234, 55));
        assert_eq!(
            resolve_chown(r, "app").unwrap(),
            (1000, 1001),
            "primary group"
        );
        assert_eq!(resolve_chown(r, "app:staff").unwrap(), (1000, 50));
        assert_eq!(resolve_chown(r, "root:staff").unwrap(), (0, 50));
        assert_eq!(resolve_chown(r, "app:root").unwrap(), (1000, 0));
        assert_eq!(resolve_chown(r, ":55").unwrap(), (0, 55));
        assert_eq!(
            resolve_chown(r, "bad").unwrap(),
            (0, 7),
            "unreadable numbers are 0"
        );
        let e = resolve_chown(r, "nobody:staff").unwrap_err().to_string();
        assert!(e.contains("nobody") && e.contains("/etc/passwd"), "{e}");
        let e = resolve_chown(r, "app:nogroup").unwrap_err().to_string();
        assert!(e.contains("nogroup") && e.contains("/etc/group"), "{e}");
        assert!(resolve_chown(r, "-1").is_err());
        // Numbers need no files.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(resolve_chown(empty.path(), "5:6").unwrap(), (5, 6));
        let e = resolve_chown(empty.path(), "app").unwrap_err().to_string();
        assert!(e.contains("/etc/passwd"), "{e}");
    }

    // moby/sys/user GetExecUser.
    #[test]
    fn user_follows_get_exec_user() {
        let root = root_with(Some(PASSWD), Some(GROUP));
        let r = root.path();
        let app = resolve_user(r, "app").unwrap();
        assert_eq!((app.uid, app.gid, app.groups), (1000, 1001, vec![50, 10]));
        let by_id = resolve_user(r, "1000").unwrap();
        assert_eq!(
            (by_id.uid, by_id.gid, by_id.groups),
            (1000, 1001, vec![50, 10])
        );
        let explicit = resolve_user(r, "app:staff").unwrap();
        assert_eq!((explicit.uid, explicit.gid), (1000, 50));
        assert!(
            explicit.groups.is_empty(),
            "explicit group: no supplementary groups"
        );
        let unknown_id = resolve_user(r, "4242").unwrap();
        assert_eq!((unknown_id.uid, unknown_id.gid), (4242, 0));
        assert_eq!(resolve_user(r, "4242:77").unwrap().gid, 77);
        let e = resolve_user(r, "ghost").unwrap_err().to_string();
        assert!(e.contains("ghost") && e.contains("/etc/passwd"), "{e}");
        let e = resolve_user(r, "app:ghosts").unwrap_err().to_string();
        assert!(e.contains("ghosts") && e.contains("/etc/group"), "{e}");
        // Numeric users work without any file.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            resolve_user(empty.path(), "7:8").unwrap(),
            RunAs {
                uid: 7,
                gid: 8,
                groups: vec![]
            }
        );
        assert!(resolve_user(empty.path(), "app").is_err());
    }

    #[test]
    fn user_files_are_resolved_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "evil:x:1:1::/:/bin/sh\n").unwrap();
        let root = root_with(None, None);
        // An absolute symlink to a host path resolves inside the root: not found there.
        std::os::unix::fs::symlink(
            outside.path().join("passwd"),
            root.path().join("etc/passwd"),
        )
        .unwrap();
        let e = resolve_chown(root.path(), "evil").unwrap_err().to_string();
        assert!(e.contains("/etc/passwd"), "{e}");
        // A symlink inside the root is followed there.
        std::fs::remove_file(root.path().join("etc/passwd")).unwrap();
        std::fs::write(root.path().join("etc/passwd.real"), PASSWD).unwrap();
        std::os::unix::fs::symlink("/etc/passwd.real", root.path().join("etc/passwd")).unwrap();
        assert_eq!(resolve_chown(root.path(), "app").unwrap(), (1000, 1001));
        // A directory is refused clearly.
        std::fs::create_dir(root.path().join("etc/group")).unwrap();
        let e = resolve_chown(root.path(), "app:staff")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
