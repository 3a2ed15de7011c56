//! `rcross setup`: decide (pure, from host facts) which binfmt_misc handlers to register, keep,
//! replace or remove, then carry the decision out through [`Host`] and self-test the result.

use crate::binfmt::{self, Catalog, Flags, Handler, KernelEntry};
use crate::detect::{self, BinfmtState, Emulator, Linkage, RunMode};
use crate::host::{Host, ProbeOutcome};
use crate::platform::Platform;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The F flag needs Linux 4.8.
pub const MIN_KERNEL_FIX_BINARY: (u32, u32) = (4, 8);

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// `None`: every foreign platform with an installed emulator.
    pub platforms: Option<Vec<Platform>>,
    pub force: bool,
    pub credentials: bool,
    pub fix_binary: bool,
    pub persist: bool,
    pub uninstall: bool,
    pub all_owners: bool,
    pub dry_run: bool,
    /// Root under which `etc/binfmt.d` lives.
    pub root: PathBuf,
}

/// Facts about the host that the decision depends on.
#[derive(Debug, Clone)]
pub struct Facts {
    pub host_platform: Platform,
    pub kernel: Option<(u32, u32)>,
    pub is_root: bool,
    pub binfmt: BinfmtState,
    /// Installed emulator per handler name.
    pub emulators: Vec<Emulator>,
    /// Platforms the host runs without emulation (besides its own).
    pub native: Vec<Platform>,
    /// Names of files in `<root>/etc/binfmt.d` (for uninstall and idempotent persistence).
    pub persisted: Vec<String>,
}

/// A reason setup cannot even start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("no QEMU handler serves {0} (rcross knows handlers for: {1}); add a definition to /etc/rcross/binfmt.d")]
    NoHandler(Platform, String),
    #[error(
        "rcross setup must run as root to register binfmt_misc handlers: run `sudo rcross setup`"
    )]
    NotRoot,
    #[error("kernel {0}.{1} is too old for the F (fix-binary) flag, which needs Linux 4.8: upgrade the kernel, or pass --no-fix-binary (emulation then fails inside containers and chroots)")]
    KernelTooOld(u32, u32),
    #[error("no QEMU user-mode emulator is installed: install qemu-user-static (Debian/Ubuntu: `sudo apt-get install qemu-user-static`; Fedora: `sudo dnf install qemu-user-static`)")]
    NoEmulators,
}

/// What to do about one handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Register (after removing `remove`, entries that would otherwise shadow or block ours).
    Register {
        line: String,
        interpreter: String,
        flags: String,
        remove: Vec<String>,
    },
    /// An identical rcross entry is already registered.
    Unchanged { interpreter: String, flags: String },
    /// The host runs these programs itself: no handler is wanted.
    Native,
    /// Another tool's entry catches these programs; left alone (pass --force to replace it).
    Conflict {
        entry: String,
        interpreter: String,
        flags: String,
    },
    /// Not selected and nothing to do (default mode): why.
    Skip { reason: String },
    /// Cannot be done: why, and how to fix it.
    Refuse { reason: String },
    /// Uninstall: remove these kernel entries.
    Remove { entries: Vec<String> },
}

/// The decision for one handler.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub handler: String,
    pub kernel_name: String,
    pub platforms: Vec<Platform>,
    #[serde(flatten)]
    pub action: Action,
    /// A persisted file to write: (path, content).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persist_write: Option<PersistFile>,
    /// A persisted file to delete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persist_remove: Option<PathBuf>,
    /// Whether the user asked for this handler explicitly (or, by default, it is a candidate):
    /// selected items must pass their self-test for a zero exit status.
    pub selected: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersistFile {
    pub path: PathBuf,
    pub content: String,
}

/// The whole decision.
#[derive(Debug, Clone, Serialize)]
pub struct SetupPlan {
    pub binfmt_misc: PathBuf,
    /// binfmt_misc must be mounted first.
    pub mount: bool,
    pub items: Vec<Item>,
}

/// Path of rcross's persisted file for a handler.
pub fn persist_path(root: &Path, h: &Handler) -> PathBuf {
    root.join("etc/binfmt.d")
        .join(format!("{}.conf", h.kernel_name()))
}

fn handler_selection<'c>(
    catalog: &'c Catalog,
    opts: &Options,
) -> Result<Vec<(&'c Handler, bool)>, SetupError> {
    match &opts.platforms {
        None => Ok(catalog.handlers.iter().map(|h| (h, false)).collect()),
        Some(ps) => {
            let mut out: Vec<(&Handler, bool)> = Vec::new();
            for p in ps {
                let h = catalog.for_platform(p).ok_or_else(|| {
                    SetupError::NoHandler(
                        *p,
                        catalog
                            .handlers
                            .iter()
                            .map(|h| h.name.clone())
                            .collect::<Vec<_>>()
                            .join(", "),
                    )
                })?;
                if !out.iter().any(|(o, _)| o.name == h.name) {
                    out.push((h, true));
                }
            }
            Ok(out)
        }
    }
}

fn flags_for(h: &Handler, opts: &Options) -> Flags {
    Flags {
        fix_binary: opts.fix_binary,
        preserve_argv0: h.preserve_argv0,
        credentials: opts.credentials,
        // The kernel turns C into OC; say so up front so the entry compares identical.
        open_binary: opts.credentials,
    }
}

/// Decide what `rcross setup` (or `--uninstall`) does. Pure: no I/O.
pub fn plan(facts: &Facts, catalog: &Catalog, opts: &Options) -> Result<SetupPlan, SetupError> {
    if !facts.is_root && !opts.dry_run {
        return Err(SetupError::NotRoot);
    }
    let selection = handler_selection(catalog, opts)?;
    let items = if opts.uninstall {
        plan_uninstall(facts, &selection, opts)
    } else {
        if opts.fix_binary {
            if let Some(k) = facts.kernel.filter(|k| *k < MIN_KERNEL_FIX_BINARY) {
                return Err(SetupError::KernelTooOld(k.0, k.1));
            }
        }
        let items = plan_install(facts, &selection, opts);
        if opts.platforms.is_none()
            && !items.iter().any(|i| i.selected)
            && facts.emulators.is_empty()
        {
            return Err(SetupError::NoEmulators);
        }
        items
    };
    Ok(SetupPlan {
        binfmt_misc: facts.binfmt.path.clone(),
        mount: !facts.binfmt.mounted && !opts.uninstall,
        items,
    })
}

fn plan_install(facts: &Facts, selection: &[(&Handler, bool)], opts: &Options) -> Vec<Item> {
    let mut items = Vec::new();
    for &(h, explicit) in selection {
        let mut item = Item {
            handler: h.name.clone(),
            kernel_name: h.kernel_name(),
            platforms: h.platforms.clone(),
            action: Action::Native,
            persist_write: None,
            persist_remove: None,
            selected: explicit,
        };
        // A handler is only wanted for platforms the host cannot run itself.
        let foreign = h
            .platforms
            .iter()
            .any(|p| *p != facts.host_platform && !facts.native.contains(p));
        if !foreign {
            item.action = Action::Native;
            items.push(item);
            continue;
        }
        if let Some(reason) = matches_host_programs(h, facts.host_platform) {
            // A bad definition is an error whether or not its emulator is installed.
            item.selected = true;
            item.action = Action::Refuse { reason };
            items.push(item);
            continue;
        }
        let Some(emu) = facts.emulators.iter().find(|e| e.handler == h.name) else {
            item.action = if explicit {
                Action::Refuse {
                    reason: format!(
                        "no emulator found (looked for {} on PATH, /usr/bin, /usr/local/bin): install qemu-user-static (Debian/Ubuntu: `sudo apt-get install qemu-user-static`)",
                        h.emulators.join(", ")
                    ),
                }
            } else {
                Action::Skip {
                    reason: format!("not installed ({})", h.emulators.join(", ")),
                }
            };
            items.push(item);
            continue;
        };
        item.selected = true;
        let flags = flags_for(h, opts);
        let interp = emu.path.display().to_string();
        if opts.fix_binary && !opts.force {
            let problem = match &emu.linkage {
                Linkage::Static => None,
                Linkage::Dynamic => Some(format!(
                    "{interp} is dynamically linked: with the F flag its loader and libraries are looked up inside each container or chroot, where they are missing (\"No such file or directory\"). Install the static build (qemu-user-static), pass --no-fix-binary, or --force to register it anyway"
                )),
                Linkage::Unknown(why) => Some(format!(
                    "cannot tell whether {interp} is statically linked ({why}); pass --force to register it anyway"
                )),
            };
            if let Some(reason) = problem {
                item.action = Action::Refuse { reason };
                items.push(item);
                continue;
            }
        }
        let line = match binfmt::register_line(&h.kernel_name(), h, &emu.path, &flags) {
            Ok(l) => l,
            Err(e) => {
                item.action = Action::Refuse {
                    reason: format!("cannot encode the handler: {e}"),
                };
                items.push(item);
                continue;
            }
        };
        let ours = facts.binfmt.entry(&h.kernel_name());
        let others: Vec<&KernelEntry> = facts
            .binfmt
            .entries
            .iter()
            .filter(|e| e.name != h.kernel_name() && e.overlaps(h))
            .collect();
        let ours_identical = ours.is_some_and(|e| e.enabled && e.identical(h, &interp, &flags));
        item.action = if let (Some(other), false) = (others.first(), opts.force) {
            Action::Conflict {
                entry: other.name.clone(),
                interpreter: other.interpreter.clone(),
                flags: other.flags.to_string(),
            }
        } else if ours_identical && others.is_empty() {
            Action::Unchanged {
                interpreter: interp.clone(),
                flags: flags.to_string(),
            }
        } else {
            let mut remove: Vec<String> = others.iter().map(|e| e.name.clone()).collect();
            if ours.is_some() {
                remove.insert(0, h.kernel_name());
            }
            Action::Register {
                line: line.clone(),
                interpreter: interp,
                flags: flags.to_string(),
                remove,
            }
        };
        if opts.persist && !matches!(item.action, Action::Conflict { .. }) {
            let path = persist_path(&opts.root, h);
            item.persist_write = Some(PersistFile {
                path,
                content: binfmt::binfmt_d_file(&line),
            });
        }
        items.push(item);
    }
    items
}

/// How many bytes of a file the kernel gives binfmt_misc (`BINPRM_BUF_SIZE`); a shorter file is
/// zero-filled to this length.
const BINPRM_BUF_SIZE: usize = 256;

/// Why `h` must never be registered on a `host` machine: its magic matches the host's own
/// programs (checked on the host's self-test program as the kernel would see it), so every
/// program on the machine, the emulator and rcross included, would go to the emulator. `None`
/// when it does not, or when rcross has no self-test program for the host.
fn matches_host_programs(h: &Handler, host: Platform) -> Option<String> {
    let mut program = binfmt::selftest::program(&host)?;
    if program.len() < BINPRM_BUF_SIZE {
        program.resize(BINPRM_BUF_SIZE, 0);
    }
    if !h.matches(&program) {
        return None;
    }
    let origin = if h.source == crate::userdir::BUILTIN_SOURCE {
        "built into rcross".to_string()
    } else {
        h.source.clone()
    };
    let platforms: Vec<String> = h.platforms.iter().map(|p| p.to_string()).collect();
    Some(format!(
        "handler {} ({origin}) matches {host} programs, this host's own: registering it would \
         hand every program on the machine, the emulator and rcross included, to {}. Fix its \
         offset/magic/mask in {origin} so that it matches only {} programs",
        h.name,
        h.emulators.join(" or "),
        platforms.join(", ")
    ))
}

fn plan_uninstall(facts: &Facts, selection: &[(&Handler, bool)], opts: &Options) -> Vec<Item> {
    let mut items = Vec::new();
    for &(h, explicit) in selection {
        let mut entries: Vec<String> = Vec::new();
        if facts.binfmt.entry(&h.kernel_name()).is_some() {
            entries.push(h.kernel_name());
        }
        if opts.all_owners {
            entries.extend(
                facts
                    .binfmt
                    .entries
                    .iter()
                    .filter(|e| e.name != h.kernel_name() && e.same_format(h))
                    .map(|e| e.name.clone()),
            );
        }
        let file = persist_path(&opts.root, h);
        let persisted = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .is_some_and(|n| facts.persisted.contains(&n));
        if entries.is_empty() && !persisted && !explicit {
            continue;
        }
        items.push(Item {
            handler: h.name.clone(),
            kernel_name: h.kernel_name(),
            platforms: h.platforms.clone(),
            action: if entries.is_empty() {
                Action::Skip {
                    reason: "not registered by rcross".into(),
                }
            } else {
                Action::Remove { entries }
            },
            persist_write: None,
            persist_remove: persisted.then_some(file),
            selected: explicit,
        });
    }
    items
}

/// Gather the facts `plan` needs.
pub fn gather(
    host: &dyn Host,
    catalog: &Catalog,
    binfmt_dir: &Path,
    root: &Path,
) -> Result<Facts, detect::DetectError> {
    let host_platform = detect::host_platform(host)?;
    let kernel = host
        .uname()
        .ok()
        .and_then(|u| detect::kernel_version(&u.release));
    let binfmt = detect::binfmt_state(host, binfmt_dir, catalog);
    let emulators = catalog
        .handlers
        .iter()
        .filter_map(|h| detect::find_emulator(host, h))
        .collect();
    // Only platforms the CPU might run itself can be native; probing the others would start
    // an emulator per registered handler just to learn what the self-tests learn anyway.
    let candidates = Platform::all().filter(|p| p.may_run_natively_on(&host_platform));
    let native = detect::probe_some(host, host_platform, &binfmt, candidates)
        .into_iter()
        .filter(|r| r.mode == RunMode::Native)
        .map(|r| r.platform)
        .collect();
    let persisted = host
        .list_dir(&root.join("etc/binfmt.d"))
        .unwrap_or_default();
    Ok(Facts {
        host_platform,
        kernel,
        is_root: host.effective_uid() == 0,
        binfmt,
        emulators,
        native,
        persisted,
    })
}

/// Result of the self-test of one handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
pub enum SelfTest {
    Ok,
    Failed(String),
    Skipped(String),
}

/// What happened to one item.
#[derive(Debug, Clone, Serialize)]
pub struct SetupOutcome {
    #[serde(flatten)]
    pub item: Item,
    /// Set when carrying out the action failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub self_test: SelfTest,
}

impl SetupOutcome {
    /// Whether this item counts against a zero exit status.
    pub fn failed(&self) -> bool {
        self.item.selected
            && (self.error.is_some()
                || matches!(self.item.action, Action::Refuse { .. })
                || matches!(self.self_test, SelfTest::Failed(_)))
    }
}

/// A failure that stops setup before any handler is touched.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot mount binfmt_misc at {path}: /proc/sys is read-only here (an unprivileged container?): run the container with --privileged, or run rcross setup on the host")]
    ReadOnly { path: PathBuf },
    #[error("cannot mount binfmt_misc at {path}: {source}; is the binfmt_misc kernel module available (`modprobe binfmt_misc`)?")]
    Mount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_hint(e: &std::io::Error, path: &Path) -> String {
    use nix::errno::Errno;
    let hint = match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::EROFS) => " (read-only: in a container, run it with --privileged)".to_string(),
        Some(Errno::EACCES) | Some(Errno::EPERM) => {
            " (permission denied: run `sudo rcross setup`)".into()
        }
        Some(Errno::EEXIST) => " (an entry with this name already exists)".into(),
        Some(Errno::ENOENT) => " (the interpreter or binfmt_misc file is missing)".into(),
        Some(Errno::EINVAL) => {
            " (the kernel rejected the entry: malformed line or unsupported flag)".into()
        }
        _ => String::new(),
    };
    format!("{}: {e}{hint}", path.display())
}

/// Carry out a plan, then self-test every handler that should now work.
pub fn apply(
    host: &dyn Host,
    plan: &SetupPlan,
    test: bool,
) -> Result<Vec<SetupOutcome>, ApplyError> {
    let dir = &plan.binfmt_misc;
    if plan.mount {
        if let Err(e) = host.mount_binfmt_misc(dir) {
            use nix::errno::Errno;
            // Another setup (a second CI job, systemd-binfmt) mounted it at the same moment.
            let raced = e.raw_os_error().map(Errno::from_raw) == Some(Errno::EBUSY)
                && host.exists(&dir.join("status"));
            if raced {
                return apply_items(host, plan, test);
            }
            return Err(match e.raw_os_error().map(Errno::from_raw) {
                Some(Errno::EROFS) | Some(Errno::EPERM) | Some(Errno::EACCES) => {
                    ApplyError::ReadOnly { path: dir.clone() }
                }
                _ => ApplyError::Mount {
                    path: dir.clone(),
                    source: e,
                },
            });
        }
    }
    apply_items(host, plan, test)
}

fn apply_items(
    host: &dyn Host,
    plan: &SetupPlan,
    test: bool,
) -> Result<Vec<SetupOutcome>, ApplyError> {
    let dir = &plan.binfmt_misc;
    // Registrations go one after another (they may remove each other's shadowing entries);
    // the self-tests are independent programs and run all at once afterwards, each result
    // put back in its item's place so the output order does not depend on timing.
    let mut out = Vec::new();
    let mut pending: Vec<(usize, Vec<u8>)> = Vec::new();
    for item in &plan.items {
        let error = apply_item(host, dir, item).err();
        let self_test = if !test {
            SelfTest::Skipped("--no-test".into())
        } else if error.is_some() {
            SelfTest::Skipped("not registered".into())
        } else {
            match &item.action {
                Action::Register { .. }
                | Action::Unchanged { .. }
                | Action::Native
                | Action::Conflict { .. } => match self_test_program(item) {
                    Ok(prog) => {
                        pending.push((out.len(), prog));
                        SelfTest::Failed("the test program was not run".into())
                    }
                    Err(skip) => skip,
                },
                Action::Refuse { .. } => SelfTest::Skipped("not registered".into()),
                Action::Skip { .. } | Action::Remove { .. } => SelfTest::Skipped(String::new()),
            }
        };
        out.push(SetupOutcome {
            item: item.clone(),
            error,
            self_test,
        });
    }
    let programs: Vec<&[u8]> = pending.iter().map(|(_, p)| p.as_slice()).collect();
    for ((i, _), result) in pending.iter().zip(host.run_programs(&programs)) {
        if let Some(o) = out.get_mut(*i) {
            o.self_test = judge_self_test(result);
        }
    }
    Ok(out)
}

fn apply_item(host: &dyn Host, dir: &Path, item: &Item) -> Result<(), String> {
    let remove = |name: &str| -> Result<(), String> {
        let p = dir.join(name);
        match host.write_control(&p, b"-1") {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove entry {}", io_hint(&e, &p))),
        }
    };
    match &item.action {
        Action::Register {
            line, remove: r, ..
        } => {
            for name in r {
                remove(name)?;
            }
            let reg = dir.join("register");
            if let Err(e) = host.write_control(&reg, line.as_bytes()) {
                // A setup running at the same moment registered the same name first: its
                // entry is ours (the self-test that follows checks that it works).
                let name = line.split(':').nth(1).unwrap_or_default();
                let raced = e.raw_os_error() == Some(nix::errno::Errno::EEXIST as i32)
                    && !name.is_empty()
                    && host.exists(&dir.join(name));
                if !raced {
                    return Err(format!("cannot register {}", io_hint(&e, &reg)));
                }
            }
        }
        Action::Remove { entries } => {
            for name in entries {
                remove(name)?;
            }
        }
        _ => {}
    }
    if let Some(f) = &item.persist_write {
        let unchanged = host
            .read(&f.path)
            .is_ok_and(|old| old == f.content.as_bytes());
        if !unchanged {
            if let Some(parent) = f.path.parent() {
                host.create_dir_all(parent)
                    .map_err(|e| format!("cannot create {}", io_hint(&e, parent)))?;
            }
            host.write_file(&f.path, f.content.as_bytes())
                .map_err(|e| format!("cannot write {}", io_hint(&e, &f.path)))?;
        }
    }
    if let Some(p) = &item.persist_remove {
        host.remove_file(p)
            .map_err(|e| format!("cannot remove {}", io_hint(&e, p)))?;
    }
    Ok(())
}

fn self_test_program(item: &Item) -> Result<Vec<u8>, SelfTest> {
    item.platforms
        .first()
        .and_then(binfmt::selftest::program)
        .ok_or_else(|| SelfTest::Skipped(format!("no test program for {}", item.handler)))
}

fn judge_self_test(result: std::io::Result<ProbeOutcome>) -> SelfTest {
    match result {
        Ok(ProbeOutcome::Exited(c)) if c == binfmt::selftest::EXIT_CODE => SelfTest::Ok,
        Ok(o) => SelfTest::Failed(detect::describe_outcome(&o)),
        Err(e) => SelfTest::Failed(format!("could not run the test program: {e}")),
    }
}

#[cfg(test)]
mod tests;
