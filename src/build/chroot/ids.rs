//! Which host ids a chroot job's user namespace is given.
//!
//! As root, the job's ids 0..65536 are a range of host ids that belong to no user: the range
//! `/etc/subuid` and `/etc/subgid` delegate to `root` when they do (the administrator's word
//! about which ids are free), else [`DEFAULT_BASE`]. rcross writes the 65536-id `uid_map` and
//! `gid_map` itself. The range must be mapped in rcross's own user namespace (it is in the
//! initial one; a root of a namespace that maps only itself does not have it); otherwise, and
//! for an unprivileged user, the job gets a single id: the user, as the job's root.

/// Ids in a job's range: 0..65535 inside, so `nobody` (65534) exists.
pub const RANGE: u32 = 65536;

/// The first host id of the job range when `/etc/subuid` names none for root: 0x70000000, just
/// above the ranges systemd hands to containers (524288..1879048191, see systemd's
/// UIDS-GIDS.md) and far below the ids that tools mistake for -1 as signed 32-bit numbers.
pub const DEFAULT_BASE: u32 = 0x7000_0000;

/// The inside id a host id outside a job's range shows as (the kernel's overflow id).
pub const OVERFLOW: u32 = 65534;

/// How a job's user namespace maps ids onto the host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobIds {
    /// Inside ids `0..count` are host uids `uid_base..` and gids `gid_base..`; written by
    /// rcross (as root).
    Range {
        uid_base: u32,
        gid_base: u32,
        count: u32,
    },
    /// Only inside id 0, which is this host user and group (an unprivileged user, or a root
    /// whose own namespace holds no free range). `chown` to another id fails inside.
    Single { uid: u32, gid: u32 },
}

impl JobIds {
    /// The map for a process with effective ids `euid`/`egid`, whose own namespace has the
    /// maps `own_uid_map`/`own_gid_map` (the text of `/proc/self/uid_map`), given the text of
    /// `/etc/subuid` and `/etc/subgid` (empty when missing).
    pub fn choose(
        euid: u32,
        egid: u32,
        own_uid_map: &str,
        own_gid_map: &str,
        subuid: &str,
        subgid: &str,
    ) -> JobIds {
        let single = JobIds::Single {
            uid: euid,
            gid: egid,
        };
        if euid != 0 {
            return single;
        }
        let uid_base = delegated(subuid).unwrap_or(DEFAULT_BASE);
        let gid_base = delegated(subgid).unwrap_or(DEFAULT_BASE);
        if covers(own_uid_map, uid_base, RANGE) && covers(own_gid_map, gid_base, RANGE) {
            JobIds::Range {
                uid_base,
                gid_base,
                count: RANGE,
            }
        } else {
            single
        }
    }

    /// The `uid_map` and `gid_map` to write for the job.
    pub fn maps(&self) -> (String, String) {
        match *self {
            JobIds::Range {
                uid_base,
                gid_base,
                count,
            } => (
                format!("0 {uid_base} {count}\n"),
                format!("0 {gid_base} {count}\n"),
            ),
            JobIds::Single { uid, gid } => (format!("0 {uid} 1\n"), format!("0 {gid} 1\n")),
        }
    }

    /// Host `(uid, gid)` of a file owned by inside `(uid, gid)`, when rcross gives the job's
    /// files their in-image owners (a range); ids the range lacks become `nobody`.
    pub fn to_host(&self, uid: u32, gid: u32) -> Option<(u32, u32)> {
        match *self {
            JobIds::Range {
                uid_base,
                gid_base,
                count,
            } => {
                let shift = |id: u32, base: u32| base + if id < count { id } else { OVERFLOW };
                Some((shift(uid, uid_base), shift(gid, gid_base)))
            }
            JobIds::Single { .. } => None,
        }
    }

    /// Inside `(uid, gid)` of a host-owned file (the job's own files come back with their
    /// in-image owners); host ids outside the range show as the job saw them: `nobody`.
    pub fn to_inside(&self, uid: u32, gid: u32) -> Option<(u32, u32)> {
        match *self {
            JobIds::Range {
                uid_base,
                gid_base,
                count,
            } => {
                let back = |id: u32, base: u32| match id.checked_sub(base) {
                    Some(i) if i < count => i,
                    _ => OVERFLOW,
                };
                Some((back(uid, uid_base), back(gid, gid_base)))
            }
            JobIds::Single { .. } => None,
        }
    }

    /// Host owner of what rcross itself puts in the job's root (the project, `/rcross/out`):
    /// the job's root.
    pub fn root_on_host(&self) -> Option<(u32, u32)> {
        self.to_host(0, 0)
    }

    /// For the log.
    pub fn describe(&self) -> String {
        match *self {
            JobIds::Range {
                uid_base,
                gid_base,
                count,
            } => format!(
                "user namespace: ids 0-{} are host uids {uid_base}-{} and gids {gid_base}-{}",
                count - 1,
                uid_base + (count - 1),
                gid_base + (count - 1)
            ),
            JobIds::Single { uid, gid } => format!(
                "user namespace: only id 0 (host uid {uid}, gid {gid}); chown to other ids \
                 fails inside{}",
                if uid == 0 {
                    " (the host ids of the sandbox range are not mapped in rcross's own user \
                     namespace)"
                } else {
                    ""
                }
            ),
        }
    }
}

/// The start of the first range `/etc/subuid` (or `subgid`) gives `root` (by name or as 0) that
/// is at least [`RANGE`] long.
fn delegated(text: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        if who != "root" && who != "0" {
            return None;
        }
        let start: u32 = start.trim().parse().ok()?;
        let count: u32 = count.trim().parse().ok()?;
        (count >= RANGE && start.checked_add(RANGE).is_some() && start > 0).then_some(start)
    })
}

/// Whether the ids `start..start+count` (as this process names them) are all mapped in its
/// user namespace, whose map (`/proc/self/uid_map`) is `map`.
fn covers(map: &str, start: u32, count: u32) -> bool {
    let (start, end) = (u64::from(start), u64::from(start) + u64::from(count));
    map.lines().any(|line| {
        let f: Vec<u64> = line
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        match f.as_slice() {
            [inside, _, n] => *inside <= start && end <= inside + n,
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INIT: &str = "         0          0 4294967295\n";

    #[test]
    fn root_of_the_initial_namespace_gets_the_default_range() {
        let ids = JobIds::choose(0, 0, INIT, INIT, "", "");
        assert_eq!(
            ids,
            JobIds::Range {
                uid_base: DEFAULT_BASE,
                gid_base: DEFAULT_BASE,
                count: RANGE
            }
        );
        assert_eq!(
            ids.maps().0,
            format!("0 {DEFAULT_BASE} 65536\n"),
            "a 65536-id map"
        );
        assert_eq!(
            ids.to_host(0, 65534),
            Some((DEFAULT_BASE, DEFAULT_BASE + 65534))
        );
        assert_eq!(
            ids.to_host(70000, 0),
            Some((DEFAULT_BASE + OVERFLOW, DEFAULT_BASE))
        );
        assert_eq!(
            ids.to_inside(DEFAULT_BASE + 42, DEFAULT_BASE),
            Some((42, 0))
        );
        assert_eq!(ids.to_inside(0, 1000), Some((OVERFLOW, OVERFLOW)));
    }

    #[test]
    fn root_subuid_ranges_are_used_when_long_enough() {
        let subuid = "alice:100000:65536\nroot:200000:65536\n";
        let subgid = "root:300000:131072\n";
        let ids = JobIds::choose(0, 0, INIT, INIT, subuid, subgid);
        assert_eq!(
            ids,
            JobIds::Range {
                uid_base: 200000,
                gid_base: 300000,
                count: RANGE
            }
        );
        let short = JobIds::choose(0, 0, INIT, INIT, "root:200000:1000\n", "");
        assert!(
            matches!(short, JobIds::Range { uid_base, .. } if uid_base == DEFAULT_BASE),
            "{short:?}"
        );
    }

    #[test]
    fn users_and_roots_without_the_range_get_a_single_id() {
        assert_eq!(
            JobIds::choose(1000, 100, INIT, INIT, "", ""),
            JobIds::Single {
                uid: 1000,
                gid: 100
            }
        );
        // Root of `unshare --map-root-user`: only itself is mapped.
        let own = "0 1000 1\n";
        let ids = JobIds::choose(0, 0, own, own, "", "");
        assert_eq!(ids, JobIds::Single { uid: 0, gid: 0 });
        assert_eq!(ids.maps().0, "0 0 1\n");
        assert_eq!(ids.to_host(5, 5), None);
        assert!(ids.describe().contains("not mapped"), "{}", ids.describe());
    }
}
