//! Which host ids a chroot job's user namespace is given.
//!
//! As root, the job's ids 0..65536 are a range of host ids that belong to no user: the range
//! `/etc/subuid` and `/etc/subgid` delegate to `root` when they do (the administrator's word
//! about which ids are free), else [`DEFAULT_BASE`]. rcross writes the 65536-id `uid_map` and
//! `gid_map` itself. The range must be mapped in rcross's own user namespace (it is in the
//! initial one; a root of a namespace that maps only itself does not have it).
//!
//! An unprivileged user whose name (or uid) has ranges in `/etc/subuid` and `/etc/subgid`, with
//! `newuidmap` and `newgidmap` installed (Debian's `uidmap`), gets them as rootless Podman does:
//! inside 0 is the user, inside 1.. the delegated ids (at most 65535 of them). Otherwise the job
//! gets a single id: the user (or a root without the range), as the job's root.

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
    /// Inside 0 is the user `uid`/`gid`, inside `1..=count` are host ids from `sub_uid` and
    /// `sub_gid` (its `/etc/subuid` and `/etc/subgid` ranges); written by `newuidmap` and
    /// `newgidmap`. The job's copy stays the user's (inside: root's).
    Delegated {
        uid: u32,
        gid: u32,
        sub_uid: u32,
        sub_gid: u32,
        count: u32,
    },
    /// Only inside id 0, which is this host user and group (an unprivileged user, or a root
    /// whose own namespace holds no free range). `chown` to another id fails inside.
    Single { uid: u32, gid: u32 },
}

/// What [`JobIds::choose`] looks at besides the process's own ids.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdSources<'a> {
    /// `/proc/self/uid_map` and `/proc/self/gid_map`.
    pub own_uid_map: &'a str,
    pub own_gid_map: &'a str,
    /// `/etc/subuid` and `/etc/subgid` (empty when missing).
    pub subuid: &'a str,
    pub subgid: &'a str,
    /// The user's name (for its `/etc/subuid` entry).
    pub user: Option<&'a str>,
    /// Whether `newuidmap` and `newgidmap` are installed.
    pub helpers: bool,
}

impl JobIds {
    /// The map for a process with effective ids `euid`/`egid`, given what `from` says.
    pub fn choose(euid: u32, egid: u32, from: &IdSources) -> JobIds {
        let single = JobIds::Single {
            uid: euid,
            gid: egid,
        };
        if euid != 0 {
            if !from.helpers {
                return single;
            }
            let owners = [from.user.unwrap_or(""), &euid.to_string()];
            let sub_u = delegated_to(from.subuid, &owners, 1);
            let sub_g = delegated_to(from.subgid, &owners, 1);
            return match (sub_u, sub_g) {
                (Some((sub_uid, nu)), Some((sub_gid, ng))) => JobIds::Delegated {
                    uid: euid,
                    gid: egid,
                    sub_uid,
                    sub_gid,
                    count: nu.min(ng).min(RANGE - 1),
                },
                _ => single,
            };
        }
        let root = delegated_to(from.subuid, &["root", "0"], RANGE).map(|(s, _)| s);
        let uid_base = root.unwrap_or(DEFAULT_BASE);
        let root = delegated_to(from.subgid, &["root", "0"], RANGE).map(|(s, _)| s);
        let gid_base = root.unwrap_or(DEFAULT_BASE);
        if covers(from.own_uid_map, uid_base, RANGE) && covers(from.own_gid_map, gid_base, RANGE) {
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
            JobIds::Delegated {
                uid,
                gid,
                sub_uid,
                sub_gid,
                count,
            } => (
                format!("0 {uid} 1\n1 {sub_uid} {count}\n"),
                format!("0 {gid} 1\n1 {sub_gid} {count}\n"),
            ),
            JobIds::Single { uid, gid } => (format!("0 {uid} 1\n"), format!("0 {gid} 1\n")),
        }
    }

    /// The arguments of `newuidmap PID …` and `newgidmap PID …` (a delegated range only).
    pub fn helper_args(&self) -> Option<([String; 6], [String; 6])> {
        match *self {
            JobIds::Delegated {
                uid,
                gid,
                sub_uid,
                sub_gid,
                count,
            } => {
                let args = |own: u32, sub: u32| [0, own, 1, 1, sub, count].map(|n| n.to_string());
                Some((args(uid, sub_uid), args(gid, sub_gid)))
            }
            _ => None,
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
            JobIds::Delegated { .. } | JobIds::Single { .. } => None,
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
            JobIds::Delegated { .. } | JobIds::Single { .. } => None,
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
            JobIds::Delegated {
                uid,
                gid,
                sub_uid,
                sub_gid,
                count,
            } => format!(
                "user namespace: id 0 is host uid {uid} (gid {gid}), ids 1-{count} are host \
                 uids {sub_uid}-{} and gids {sub_gid}-{} (/etc/subuid, /etc/subgid, through \
                 newuidmap/newgidmap)",
                sub_uid + (count - 1),
                sub_gid + (count - 1)
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

/// The first range `/etc/subuid` (or `subgid`) gives one of `owners` (a name or a uid) that
/// is at least `min` long: its start and length.
fn delegated_to(text: &str, owners: &[&str], min: u32) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        if who.is_empty() || !owners.contains(&who) {
            return None;
        }
        let start: u32 = start.trim().parse().ok()?;
        let count: u32 = count.trim().parse().ok()?;
        (count >= min && start.checked_add(count).is_some() && start > 0).then_some((start, count))
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

    fn choose(euid: u32, egid: u32, map: &str, subuid: &str, subgid: &str) -> JobIds {
        JobIds::choose(
            euid,
            egid,
            &IdSources {
                own_uid_map: map,
                own_gid_map: map,
                subuid,
                subgid,
                user: Some("alice"),
                helpers: true,
            },
        )
    }

    #[test]
    fn root_of_the_initial_namespace_gets_the_default_range() {
        let ids = choose(0, 0, INIT, "", "");
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
        let ids = choose(0, 0, INIT, subuid, subgid);
        assert_eq!(
            ids,
            JobIds::Range {
                uid_base: 200000,
                gid_base: 300000,
                count: RANGE
            }
        );
        let short = choose(0, 0, INIT, "root:200000:1000\n", "");
        assert!(
            matches!(short, JobIds::Range { uid_base, .. } if uid_base == DEFAULT_BASE),
            "{short:?}"
        );
    }

    #[test]
    fn users_and_roots_without_the_range_get_a_single_id() {
        assert_eq!(
            choose(1000, 100, INIT, "", ""),
            JobIds::Single {
                uid: 1000,
                gid: 100
            }
        );
        // Root of `unshare --map-root-user`: only itself is mapped.
        assert!(matches!(
            choose(1000, 100, INIT, "bob:1:65536\n", "bob:1:65536\n"),
            JobIds::Single { .. }
        ));
        let own = "0 1000 1\n";
        let ids = choose(0, 0, own, "", "");
        assert_eq!(ids, JobIds::Single { uid: 0, gid: 0 });
        assert_eq!(ids.maps().0, "0 0 1\n");
        assert_eq!(ids.to_host(5, 5), None);
        assert!(ids.describe().contains("not mapped"), "{}", ids.describe());
    }

    #[test]
    fn a_user_with_subuid_ranges_gets_them_through_newuidmap() {
        let ids = choose(
            1000,
            100,
            INIT,
            "root:1:65536\nalice:100000:65536\n",
            "1000:200000:4000\n",
        );
        assert_eq!(
            ids,
            JobIds::Delegated {
                uid: 1000,
                gid: 100,
                sub_uid: 100000,
                sub_gid: 200000,
                count: 4000
            }
        );
        assert_eq!(ids.maps().0, "0 1000 1\n1 100000 4000\n");
        let (u, g) = ids.helper_args().unwrap();
        assert_eq!(u, ["0", "1000", "1", "1", "100000", "4000"]);
        assert_eq!(g, ["0", "100", "1", "1", "200000", "4000"]);
        assert_eq!(ids.to_host(0, 0), None, "the user's copy is not chowned");
        let no_helpers = JobIds::choose(
            1000,
            100,
            &IdSources {
                subuid: "alice:100000:65536\n",
                subgid: "alice:100000:65536\n",
                user: Some("alice"),
                ..IdSources::default()
            },
        );
        assert!(
            matches!(no_helpers, JobIds::Single { .. }),
            "{no_helpers:?}"
        );
        let big = choose(
            1000,
            100,
            INIT,
            "alice:100000:1000000\n",
            "alice:1:1000000\n",
        );
        assert!(
            matches!(big, JobIds::Delegated { count: 65535, .. }),
            "{big:?}"
        );
    }
}
