//! Handlers in the machine's own binfmt_misc table, for tests whose emulated programs run where
//! no private table can reach them (the Docker engine's containers live in the machine's
//! namespaces; the chroot runner checks the machine's table).
//!
//! [`register`] runs `rcross setup` and returns a guard. Tests of one binary run in parallel and
//! share the table, so the guards count their users process-wide: the first records the table
//! (which entries, their definitions, the status switch, whether binfmt_misc was mounted), and
//! the last to be dropped — also when its test panics — puts it back: entries the tests added
//! are removed, entries they changed or removed are registered again as they were, and
//! binfmt_misc is unmounted if it was not mounted before.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::prereq;

const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// The machine's table as the first guard found it.
#[derive(Debug, Clone, PartialEq)]
struct Table {
    mounted: bool,
    /// Text of `status` ("enabled"/"disabled") when mounted.
    status: Option<String>,
    /// Entry name → text of its file.
    entries: BTreeMap<String, String>,
}

struct Users {
    count: usize,
    before: Option<Table>,
}

static USERS: Mutex<Users> = Mutex::new(Users {
    count: 0,
    before: None,
});

fn users() -> std::sync::MutexGuard<'static, Users> {
    // A test that panicked while holding the lock leaves the count intact; go on with it.
    USERS.lock().unwrap_or_else(|e| e.into_inner())
}

fn dir() -> PathBuf {
    PathBuf::from(BINFMT_MISC)
}

fn read_table() -> Table {
    let dir = dir();
    let mounted = dir.join("register").exists();
    let mut entries = BTreeMap::new();
    let mut status = None;
    if mounted {
        status = std::fs::read_to_string(dir.join("status"))
            .ok()
            .map(|s| s.trim().to_string());
        let list = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for e in list {
            let e = e.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "register" || name == "status" {
                continue;
            }
            // An entry another process removes meanwhile is simply not there.
            if let Ok(text) = std::fs::read_to_string(e.path()) {
                entries.insert(name, text);
            }
        }
    }
    Table {
        mounted,
        status,
        entries,
    }
}

/// While alive, the handlers registered by [`register`] stay; see the module documentation.
pub struct Handlers {
    _private: (),
}

/// Registers the handlers for `platforms` (`linux/arm64,linux/arm/v7`) in the machine's table
/// with `rcross setup`. `None` outside strict mode when that is not possible (not root, no
/// qemu-user-static); in strict mode that is a failure ([`prereq`]).
pub fn register(platforms: &str) -> Option<Handlers> {
    let mut users = users();
    if users.count == 0 {
        users.before = Some(read_table());
    }
    users.count += 1;
    // The guard exists from here on, so the count goes down again whatever happens below.
    let guard = Handlers { _private: () };
    // Under the lock: a concurrent last guard must not restore the table while this one is
    // registering.
    let out = Command::new(env!("CARGO_BIN_EXE_rcross"))
        .args(["setup", "--platform", platforms])
        .output()
        .unwrap_or_else(|e| panic!("cannot run rcross setup: {e}"));
    drop(users);
    if out.status.success() {
        return Some(guard);
    }
    drop(guard);
    prereq::missing(
        &format!(
            "binfmt handlers for {platforms} in the machine's table (rcross setup: {}{})",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        "run the tests as root; apt-get install qemu-user-static",
    )
}

impl Drop for Handlers {
    fn drop(&mut self) {
        let mut users = users();
        users.count -= 1;
        if users.count > 0 {
            return;
        }
        let Some(before) = users.before.take() else {
            return;
        };
        let problems = restore(&before);
        if problems.is_empty() {
            return;
        }
        let msg = format!(
            "the machine's binfmt_misc table could not be put back as it was: {}",
            problems.join("; ")
        );
        if std::thread::panicking() {
            eprintln!("{msg}");
        } else {
            panic!("{msg}");
        }
    }
}

/// Puts the table back to `before`; what could not be done.
fn restore(before: &Table) -> Vec<String> {
    let mut problems = Vec::new();
    let now = read_table();
    if now == *before {
        return problems;
    }
    let dir = dir();
    if now.mounted {
        for (name, text) in &now.entries {
            if before.entries.get(name) != Some(text) {
                if let Err(e) = std::fs::write(dir.join(name), "-1") {
                    problems.push(format!("remove entry {name}: {e}"));
                }
            }
        }
        for (name, text) in &before.entries {
            if now.entries.get(name) == Some(text) {
                continue;
            }
            if let Err(e) = reregister(&dir, name, text) {
                problems.push(e);
            }
        }
        if let Some(status) = &before.status {
            if now.status.as_ref() != Some(status) {
                let value = if status == "enabled" { "1" } else { "0" };
                if let Err(e) = std::fs::write(dir.join("status"), value) {
                    problems.push(format!("set status to {status}: {e}"));
                }
            }
        }
        if !before.mounted {
            if let Err(e) = nix::mount::umount(&dir) {
                problems.push(format!("unmount {}: {e}", dir.display()));
            }
        }
    }
    let after = read_table();
    if problems.is_empty() && after != *before {
        problems.push(format!("it is now {after:?}, it was {before:?}"));
    }
    problems
}

/// Registers an entry again from the text the kernel showed for it.
fn reregister(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    use rcross::binfmt::BinfmtMatch;
    let entry = rcross::binfmt::parse_kernel_entry(name, text)
        .map_err(|e| format!("re-register {name}: {e}"))?;
    let hex = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("\\x{b:02x}")).collect() };
    let line = match &entry.kind {
        BinfmtMatch::Magic {
            offset,
            magic,
            mask,
        } => format!(
            ":{name}:M:{offset}:{}:{}:{}:{}",
            hex(magic),
            mask.as_deref().map(hex).unwrap_or_default(),
            entry.interpreter,
            entry.flags
        ),
        BinfmtMatch::Extension(ext) => {
            format!(":{name}:E::{ext}::{}:{}", entry.interpreter, entry.flags)
        }
    };
    std::fs::write(dir.join("register"), &line)
        .map_err(|e| format!("re-register {name} with {line:?}: {e}"))?;
    if !entry.enabled {
        std::fs::write(dir.join(name), "0").map_err(|e| format!("disable {name} again: {e}"))?;
    }
    Ok(())
}
