//! Host facts: platform, kernel, binfmt_misc state, emulators and which platforms run natively
//! or through emulation. Everything is gathered through [`Host`], so it works on the fake too.

use crate::binfmt::{self, BinfmtMatch, Catalog, EntryMagic, Handler, KernelEntry};
use crate::host::{Host, ProbeOutcome};
use crate::platform::{Platform, PlatformError};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Why host facts could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("cannot read the kernel's machine name (uname): {0}")]
    Uname(#[source] std::io::Error),
    #[error("host architecture {machine:?} (uname -m) is not one rcross knows: {source}")]
    UnknownHost {
        machine: String,
        #[source]
        source: PlatformError,
    },
}

/// The host's own platform, from `uname -m`.
pub fn host_platform(host: &dyn Host) -> Result<Platform, DetectError> {
    let u = host.uname().map_err(DetectError::Uname)?;
    Platform::from_uname(&u.machine).map_err(|source| DetectError::UnknownHost {
        machine: u.machine,
        source,
    })
}

/// Kernel version as (major, minor) from a release string such as "6.8.0-45-generic".
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// One registered binfmt_misc entry as rcross reports it.
#[derive(Debug, Clone, Serialize)]
pub struct EntryReport {
    pub name: String,
    pub enabled: bool,
    pub interpreter: String,
    pub flags: String,
    /// Whether rcross registered it (its name starts with `rcross-`).
    pub ours: bool,
    /// Platforms whose programs this entry catches.
    pub platforms: Vec<Platform>,
    /// "magic" or "extension".
    pub kind: String,
}

/// The state of binfmt_misc at a mount point.
#[derive(Debug, Clone, Serialize)]
pub struct BinfmtState {
    pub path: PathBuf,
    pub mounted: bool,
    /// `None` when not mounted or unreadable.
    pub enabled: Option<bool>,
    #[serde(skip)]
    pub entries: Vec<KernelEntry>,
    #[serde(rename = "entries")]
    pub reports: Vec<EntryReport>,
    /// Entries that could not be read or parsed: (name, reason).
    pub unreadable: Vec<(String, String)>,
}

impl BinfmtState {
    /// Enabled entries whose magic matches the start of `image`, in `entries` order (sorted by
    /// name, not by registration: [`crate::binfmt::order::entry_in_use`] picks the one the kernel
    /// uses).
    pub fn matching(&self, image: &[u8]) -> Vec<&KernelEntry> {
        if self.enabled != Some(true) {
            return Vec::new();
        }
        self.entries
            .iter()
            .filter(|e| e.enabled && entry_matches(e, image))
            .collect()
    }

    pub fn entry(&self, name: &str) -> Option<&KernelEntry> {
        self.entries.iter().find(|e| e.name == name)
    }
}

/// Whether a kernel entry's magic (under its mask) matches these file bytes.
pub fn entry_matches(e: &KernelEntry, image: &[u8]) -> bool {
    let Some(EntryMagic {
        offset,
        magic,
        mask,
    }) = e.magic()
    else {
        return false;
    };
    let off = offset as usize;
    magic.iter().enumerate().all(|(i, m)| {
        let k = mask.and_then(|v| v.get(i)).copied().unwrap_or(0xff);
        image.get(off + i).is_some_and(|b| b & k == m & k)
    })
}

/// Read binfmt_misc at `dir`: mounted?, enabled?, every entry (ours and others').
pub fn binfmt_state(host: &dyn Host, dir: &Path, catalog: &Catalog) -> BinfmtState {
    let mut st = BinfmtState {
        path: dir.to_path_buf(),
        mounted: host.exists(&dir.join("register")),
        enabled: None,
        entries: Vec::new(),
        reports: Vec::new(),
        unreadable: Vec::new(),
    };
    if !st.mounted {
        return st;
    }
    st.enabled = host
        .read_to_string(&dir.join("status"))
        .ok()
        .map(|s| s.trim() == "enabled");
    let names = match host.list_dir(dir) {
        Ok(n) => n,
        Err(e) => {
            st.unreadable
                .push((dir.display().to_string(), e.to_string()));
            return st;
        }
    };
    for name in names {
        if name == "register" || name == "status" {
            continue;
        }
        let parsed = host
            .read_to_string(&dir.join(&name))
            .map_err(|e| e.to_string())
            .and_then(|t| binfmt::parse_kernel_entry(&name, &t).map_err(|e| e.to_string()));
        match parsed {
            Ok(e) => {
                st.reports.push(report(&e, catalog));
                st.entries.push(e);
            }
            Err(why) => st.unreadable.push((name, why)),
        }
    }
    st
}

fn report(e: &KernelEntry, catalog: &Catalog) -> EntryReport {
    let platforms = catalog
        .handlers
        .iter()
        .filter(|h| e.same_format(h))
        .flat_map(|h| h.platforms.iter().copied())
        .collect();
    EntryReport {
        name: e.name.clone(),
        enabled: e.enabled,
        interpreter: e.interpreter.clone(),
        flags: e.flags.to_string(),
        ours: e.name.starts_with("rcross-"),
        platforms,
        kind: match e.kind {
            BinfmtMatch::Magic { .. } => "magic".into(),
            BinfmtMatch::Extension(_) => "extension".into(),
        },
    }
}

/// How an emulator binary is linked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Linkage {
    Static,
    Dynamic,
    /// Not a readable ELF file: the reason.
    Unknown(String),
}

/// An installed QEMU user-mode emulator.
#[derive(Debug, Clone, Serialize)]
pub struct Emulator {
    pub handler: String,
    pub path: PathBuf,
    pub linkage: Linkage,
}

/// How much of an emulator to read to find its program headers.
const ELF_PREFIX: usize = 64 * 1024;

/// The linkage of an ELF file from its first bytes: dynamic when it asks for a loader.
pub fn elf_linkage(prefix: &[u8]) -> Linkage {
    use goblin::elf::{program_header::PT_INTERP, Elf, ProgramHeader};
    let header = match Elf::parse_header(prefix) {
        Ok(h) => h,
        Err(e) => return Linkage::Unknown(format!("not an ELF file: {e}")),
    };
    let ctx = goblin::container::Ctx::new(
        if header.e_ident[4] == 2 {
            goblin::container::Container::Big
        } else {
            goblin::container::Container::Little
        },
        if header.e_ident[5] == 2 {
            goblin::container::Endian::Big
        } else {
            goblin::container::Endian::Little
        },
    );
    let phnum = header.e_phnum as usize;
    let phoff = header.e_phoff as usize;
    let need = phoff.saturating_add(phnum.saturating_mul(header.e_phentsize as usize));
    if need > prefix.len() {
        return Linkage::Unknown("program headers lie beyond the first 64 KiB".into());
    }
    match ProgramHeader::parse(prefix, phoff, phnum, ctx) {
        Ok(phs) if phs.iter().any(|p| p.p_type == PT_INTERP) => Linkage::Dynamic,
        Ok(_) => Linkage::Static,
        Err(e) => Linkage::Unknown(format!("corrupt program headers: {e}")),
    }
}

/// The first installed emulator for a handler, in the handler's search order.
pub fn find_emulator(host: &dyn Host, h: &Handler) -> Option<Emulator> {
    h.emulators.iter().find_map(|name| {
        let path = host.find_program(name)?;
        let linkage = match host.read_prefix(&path, ELF_PREFIX) {
            Ok(b) => elf_linkage(&b),
            Err(e) => Linkage::Unknown(format!("cannot read {}: {e}", path.display())),
        };
        Some(Emulator {
            handler: h.name.clone(),
            path,
            linkage,
        })
    })
}

/// How programs of a platform run on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum RunMode {
    /// The CPU runs them directly.
    Native,
    /// A binfmt_misc entry hands them to an emulator.
    Emulated { entry: String, interpreter: String },
    /// They do not run: why.
    No { reason: String },
}

/// The result of probing one platform.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformRun {
    pub platform: Platform,
    #[serde(flatten)]
    pub mode: RunMode,
}

/// Explain a probe outcome that is not the expected exit code.
pub fn describe_outcome(o: &ProbeOutcome) -> String {
    match o {
        ProbeOutcome::Exited(c) => format!(
            "test program exited with {c}, expected {}",
            binfmt::selftest::EXIT_CODE
        ),
        ProbeOutcome::Signaled(s) => format!(
            "test program was killed by signal {s}{}",
            match s {
                4 => " (SIGILL: illegal instruction)",
                11 => " (SIGSEGV: the emulator crashed; another QEMU version may help)",
                _ => "",
            }
        ),
        ProbeOutcome::ExecFormatError => {
            "exec format error: no binfmt_misc handler catches this architecture".into()
        }
    }
}

/// Decide how a probe's outcome should be read, given which entries matched the program.
pub fn classify_probe(
    outcome: Result<ProbeOutcome, String>,
    matched: Option<&KernelEntry>,
) -> RunMode {
    match (outcome, matched) {
        (Ok(ProbeOutcome::Exited(c)), None) if c == binfmt::selftest::EXIT_CODE => RunMode::Native,
        (Ok(ProbeOutcome::Exited(c)), Some(e)) if c == binfmt::selftest::EXIT_CODE => {
            RunMode::Emulated {
                entry: e.name.clone(),
                interpreter: e.interpreter.clone(),
            }
        }
        (Ok(o), Some(e)) => RunMode::No {
            reason: format!(
                "handler {} ({}): {}",
                e.name,
                e.interpreter,
                describe_outcome(&o)
            ),
        },
        (Ok(o), None) => RunMode::No {
            reason: describe_outcome(&o),
        },
        (Err(e), _) => RunMode::No {
            reason: format!("could not run the test program: {e}"),
        },
    }
}

/// A foreign program ran although no visible binfmt_misc entry caught it, and the host CPU
/// cannot run it itself: a handler outside our view did (binfmt_misc not mounted in this
/// container, or registered in a parent user namespace).
fn hidden_handler() -> RunMode {
    RunMode::Emulated {
        entry: "(not visible)".into(),
        interpreter: "unknown: a binfmt_misc handler outside this mount namespace".into(),
    }
}

/// Run every platform's test program once (platforms that share a program share the result).
/// `host_platform` tells a native run from one through a handler rcross cannot see.
pub fn probe_platforms(
    host: &dyn Host,
    host_platform: Platform,
    state: &BinfmtState,
) -> Vec<PlatformRun> {
    probe_some(host, host_platform, state, Platform::all())
}

/// [`probe_platforms`] for `platforms` only: commands that need a few platforms (`plan`, `env`,
/// `build`) run a few test programs, not one per known architecture.
pub fn probe_some(
    host: &dyn Host,
    host_platform: Platform,
    state: &BinfmtState,
    platforms: impl IntoIterator<Item = Platform>,
) -> Vec<PlatformRun> {
    probe_some_cached(host, host_platform, state, platforms, None)
}

/// [`probe_platforms`], taking the outcomes `cache` remembers for this very host and
/// binfmt_misc state instead of running those programs again.
pub fn probe_platforms_cached(
    host: &dyn Host,
    host_platform: Platform,
    state: &BinfmtState,
    cache: Option<&ProbeCache>,
) -> Vec<PlatformRun> {
    probe_some_cached(host, host_platform, state, Platform::all(), cache)
}

/// [`probe_some`] with a [`ProbeCache`].
pub fn probe_some_cached(
    host: &dyn Host,
    host_platform: Platform,
    state: &BinfmtState,
    platforms: impl IntoIterator<Item = Platform>,
    cache: Option<&ProbeCache>,
) -> Vec<PlatformRun> {
    // Each distinct program runs once (ARM variants share one), all of them at once.
    let mut wanted: Vec<(Platform, usize)> = Vec::new();
    let mut progs: Vec<Vec<u8>> = Vec::new();
    for p in platforms {
        let Some(prog) = binfmt::selftest::program(&p) else {
            continue;
        };
        let k = match progs.iter().position(|b| *b == prog) {
            Some(k) => k,
            None => {
                progs.push(prog);
                progs.len() - 1
            }
        };
        wanted.push((p, k));
    }
    let modes: Vec<RunMode> = run_probes(host, state, &progs, cache)
        .into_iter()
        .zip(&progs)
        .map(|(r, prog)| {
            // The kernel tries the newest matching binfmt_misc entry first.
            let matched = state.matching(prog).into_iter().last();
            classify_probe(r.map_err(|e| e.to_string()), matched)
        })
        .collect();
    wanted
        .into_iter()
        .map(|(p, k)| {
            let mode = match modes.get(k).cloned().unwrap_or_else(|| RunMode::No {
                reason: "the probe program was not run".into(),
            }) {
                RunMode::Native if !p.may_run_natively_on(&host_platform) => hidden_handler(),
                m => m,
            };
            PlatformRun { platform: p, mode }
        })
        .collect()
}

/// Runs `progs` (all at once), except those whose outcome `cache` holds for this host and
/// binfmt_misc state; remembers what ran.
fn run_probes(
    host: &dyn Host,
    state: &BinfmtState,
    progs: &[Vec<u8>],
    cache: Option<&ProbeCache>,
) -> Vec<std::io::Result<ProbeOutcome>> {
    let key = cache.map(|_| ProbeCache::state_key(host, state));
    let mut known = match (cache, &key) {
        (Some(c), Some(k)) => c.load(k),
        _ => ProbeRecords::default(),
    };
    let digests: Vec<String> = progs
        .iter()
        .map(|p| crate::image::digest::sha256_hex(p))
        .collect();
    let mut results: Vec<Option<std::io::Result<ProbeOutcome>>> = digests
        .iter()
        .map(|d| known.outcomes.get(d).and_then(|o| o.outcome()).map(Ok))
        .collect();
    let missing: Vec<usize> = (0..progs.len()).filter(|&i| results[i].is_none()).collect();
    if missing.is_empty() {
        return results.into_iter().flatten().collect();
    }
    let refs: Vec<&[u8]> = missing.iter().map(|&i| progs[i].as_slice()).collect();
    let mut learned = false;
    for (&i, r) in missing.iter().zip(host.run_programs(&refs)) {
        if let Ok(o) = &r {
            known
                .outcomes
                .insert(digests[i].clone(), RecordedOutcome::of(*o));
            learned = true;
        }
        results[i] = Some(r);
    }
    if let (Some(c), Some(k), true) = (cache, key, learned) {
        known.key = k;
        // A cache that cannot be written only costs the next run its probes.
        let _ = c.save(&known);
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(std::io::Error::other("probe was not run"))))
        .collect()
}

/// Probe outcomes remembered between runs (`<user cache>/rcross/probes.json`): whether a
/// program of each architecture runs here, natively or through which handler, is a function
/// of the kernel, the CPU, the binfmt_misc entries and their interpreters, so the outcomes are
/// kept under a digest of those (each interpreter by path, size, mtime, inode). Any change
/// there runs the programs again; `rcross setup` always runs its self-tests.
#[derive(Debug, Clone)]
pub struct ProbeCache {
    file: PathBuf,
}

/// The outcomes known for one state (by the digest of each probe program).
#[derive(Debug, Default, serde::Deserialize, Serialize)]
struct ProbeRecords {
    key: String,
    outcomes: std::collections::BTreeMap<String, RecordedOutcome>,
}

/// A [`ProbeOutcome`] as stored.
#[derive(Debug, Clone, serde::Deserialize, Serialize)]
struct RecordedOutcome {
    kind: String,
    value: i32,
}

impl RecordedOutcome {
    fn of(o: ProbeOutcome) -> RecordedOutcome {
        let (kind, value) = match o {
            ProbeOutcome::Exited(c) => ("exited", c),
            ProbeOutcome::Signaled(s) => ("signaled", s),
            ProbeOutcome::ExecFormatError => ("exec_format_error", 0),
        };
        RecordedOutcome {
            kind: kind.to_string(),
            value,
        }
    }

    fn outcome(&self) -> Option<ProbeOutcome> {
        match self.kind.as_str() {
            "exited" => Some(ProbeOutcome::Exited(self.value)),
            "signaled" => Some(ProbeOutcome::Signaled(self.value)),
            "exec_format_error" => Some(ProbeOutcome::ExecFormatError),
            _ => None,
        }
    }
}

impl ProbeCache {
    /// Bumped whenever what goes into a key changes meaning.
    const FORMAT: &'static str = "rcross-probe-cache-v1";

    pub fn at(file: impl Into<PathBuf>) -> ProbeCache {
        ProbeCache { file: file.into() }
    }

    /// `$XDG_CACHE_HOME/rcross/probes.json`, else `$HOME/.cache/rcross/probes.json` (only
    /// absolute paths count); `None` without either.
    pub fn in_user_cache() -> Option<ProbeCache> {
        Some(ProbeCache::at(
            crate::userdir::user_cache_root()?.join("probes.json"),
        ))
    }

    /// The digest of everything a probe's outcome depends on besides the program.
    fn state_key(host: &dyn Host, state: &BinfmtState) -> String {
        use std::os::unix::fs::MetadataExt;
        let mut h = crate::image::digest::Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(Self::FORMAT.as_bytes());
        field(format!("{:?}", host.uname().ok()).as_bytes());
        field(format!("{:?}", host.cpu()).as_bytes());
        field(format!("{:?}", host.container()).as_bytes());
        field(state.path.to_string_lossy().as_bytes());
        field(format!("{} {:?}", state.mounted, state.enabled).as_bytes());
        field(format!("{:?} {:?}", state.entries, state.unreadable).as_bytes());
        for e in state.entries.iter().filter(|e| e.enabled) {
            let stat = std::fs::metadata(&e.interpreter).map(|m| {
                (
                    m.len(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec(),
                    m.ino(),
                    m.dev(),
                )
            });
            field(format!("{} {:?}", e.interpreter, stat.ok()).as_bytes());
        }
        h.hex()
    }

    /// What the file holds for `key` (nothing when it is missing, unreadable or for another
    /// state).
    fn load(&self, key: &str) -> ProbeRecords {
        std::fs::read(&self.file)
            .ok()
            .and_then(|b| serde_json::from_slice::<ProbeRecords>(&b).ok())
            .filter(|r| r.key == key)
            .unwrap_or_else(|| ProbeRecords {
                key: key.to_string(),
                outcomes: Default::default(),
            })
    }

    /// Replaces the file (through a temporary file and a rename).
    fn save(&self, records: &ProbeRecords) -> std::io::Result<()> {
        let dir = self.file.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer(&mut tmp, records).map_err(std::io::Error::other)?;
        tmp.persist(&self.file).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.8.0-45-generic"), Some((6, 8)));
        assert_eq!(kernel_version("4.19.0"), Some((4, 19)));
        assert_eq!(kernel_version("6.18.44-fc-v857"), Some((6, 18)));
        assert_eq!(kernel_version("garbage"), None);
        assert_eq!(kernel_version(""), None);
    }

    #[test]
    fn linkage_of_bad_input_is_unknown_not_a_panic() {
        assert!(matches!(elf_linkage(b""), Linkage::Unknown(_)));
        assert!(matches!(elf_linkage(b"\x7fELF"), Linkage::Unknown(_)));
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[6] = 1;
        // phoff far away, many headers
        h[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        h[54..56].copy_from_slice(&56u16.to_le_bytes());
        h[56..58].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(matches!(elf_linkage(&h), Linkage::Unknown(_)));
    }

    #[test]
    fn linkage_of_real_programs() {
        // This test binary itself is dynamically linked on Debian (it asks for ld-linux).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(
            elf_linkage(&me[..me.len().min(ELF_PREFIX)]),
            Linkage::Dynamic
        );
    }

    #[test]
    fn entry_matching_uses_the_mask() {
        let e = KernelEntry {
            name: "x".into(),
            enabled: true,
            interpreter: "/q".into(),
            flags: Default::default(),
            kind: BinfmtMatch::Magic {
                offset: 1,
                magic: vec![0x10, 0x20],
                mask: Some(vec![0xf0, 0xff]),
            },
        };
        assert!(entry_matches(&e, &[0, 0x1f, 0x20]));
        assert!(!entry_matches(&e, &[0, 0x2f, 0x20]));
        assert!(!entry_matches(&e, &[0, 0x10]));
    }

    #[test]
    fn remembered_probe_outcomes_stand_in_until_the_state_changes() {
        use crate::host::fake::{Call, FakeHost};
        let mut host = FakeHost::new();
        host.probes
            .insert((2, 62), ProbeOutcome::Exited(binfmt::selftest::EXIT_CODE));
        let c = Catalog::builtin().unwrap();
        let state = binfmt_state(&host, Path::new("/bm"), &c);
        let d = tempfile::tempdir().unwrap();
        let cache = ProbeCache::at(d.path().join("probes.json"));
        let amd64: Platform = "linux/amd64".parse().unwrap();
        let runs = |host: &FakeHost| {
            host.calls
                .borrow()
                .iter()
                .filter(|c| matches!(c, Call::Run(..)))
                .count()
        };
        let modes = |r: Vec<PlatformRun>| -> Vec<(Platform, RunMode)> {
            r.into_iter().map(|r| (r.platform, r.mode)).collect()
        };
        let fresh = modes(probe_platforms(&host, amd64, &state));
        let ran = runs(&host);
        assert!(ran > 1);
        assert_eq!(
            modes(probe_platforms_cached(&host, amd64, &state, Some(&cache))),
            fresh
        );
        assert_eq!(runs(&host), 2 * ran, "an empty cache runs them all");
        assert_eq!(
            modes(probe_platforms_cached(&host, amd64, &state, Some(&cache))),
            fresh,
            "the same outcomes from the cache"
        );
        assert_eq!(runs(&host), 2 * ran, "and nothing ran");
        // Another binfmt_misc (here: another mount point) is another state.
        let other = binfmt_state(&host, Path::new("/elsewhere"), &c);
        probe_platforms_cached(&host, amd64, &other, Some(&cache));
        assert_eq!(runs(&host), 3 * ran);
        // A damaged file is not used.
        std::fs::write(d.path().join("probes.json"), b"{not json").unwrap();
        assert_eq!(
            modes(probe_platforms_cached(&host, amd64, &other, Some(&cache))),
            fresh
        );
        assert_eq!(runs(&host), 4 * ran);
    }

    #[test]
    fn foreign_program_running_without_visible_handler_is_emulation() {
        use crate::host::fake::FakeHost;
        let mut host = FakeHost::new();
        let exit = binfmt::selftest::EXIT_CODE;
        // Everything "runs": amd64 and 386 natively, arm64 through a handler we cannot see.
        host.probes.insert((2, 62), ProbeOutcome::Exited(exit));
        host.probes.insert((1, 3), ProbeOutcome::Exited(exit));
        host.probes.insert((2, 183), ProbeOutcome::Exited(exit));
        let c = Catalog::builtin().unwrap();
        let state = binfmt_state(&host, Path::new("/bm"), &c);
        assert!(!state.mounted);
        let amd64: Platform = "linux/amd64".parse().unwrap();
        let runs = probe_platforms(&host, amd64, &state);
        let mode = |s: &str| {
            let p: Platform = s.parse().unwrap();
            runs.iter().find(|r| r.platform == p).unwrap().mode.clone()
        };
        assert_eq!(mode("linux/amd64"), RunMode::Native);
        assert_eq!(mode("linux/386"), RunMode::Native);
        assert!(
            matches!(mode("linux/arm64"), RunMode::Emulated { ref entry, .. } if entry == "(not visible)"),
            "{:?}",
            mode("linux/arm64")
        );
        assert!(matches!(mode("linux/riscv64"), RunMode::No { .. }));
    }

    #[test]
    fn probe_reading() {
        let exit = binfmt::selftest::EXIT_CODE;
        assert_eq!(
            classify_probe(Ok(ProbeOutcome::Exited(exit)), None),
            RunMode::Native
        );
        assert!(matches!(
            classify_probe(Ok(ProbeOutcome::ExecFormatError), None),
            RunMode::No { .. }
        ));
        let RunMode::No { reason } = classify_probe(Ok(ProbeOutcome::Signaled(11)), None) else {
            panic!()
        };
        assert!(reason.contains("SIGSEGV"), "{reason}");
    }
}
