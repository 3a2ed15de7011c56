//! A recording fake host for tests of the decision logic: an in-memory file tree, a small
//! simulation of binfmt_misc's `register` and entry files, scripted probe results, and a log of
//! every side effect in order.
//!
//! The simulated kernel is written from the kernel's rules, not with rcross's own binfmt code:
//! a fake that decided with the code under test would agree with its mistakes.

use super::{CommandOutput, CommandSpec, CpuInfo, Host, ProbeOutcome, Uname};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};

/// One side effect, as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    WriteFile(PathBuf, String),
    WriteExecutable(PathBuf, String),
    WriteControl(PathBuf, String),
    RemoveFile(PathBuf),
    CreateDir(PathBuf),
    Mount(PathBuf),
    /// A probe ran: ELF class byte and e_machine of the program.
    Run(u8, u16),
    /// A command ran with captured output (its shell-quoted command line).
    Capture(String),
    /// A command ran attached to the terminal (its shell-quoted command line).
    Inherit(String),
}

#[derive(Debug)]
pub struct FakeHost {
    pub uname: Uname,
    pub euid: u32,
    pub files: RefCell<BTreeMap<PathBuf, Vec<u8>>>,
    pub programs: HashMap<String, PathBuf>,
    /// Errors to return for writes to (or mounts on) a path, as raw errno.
    pub fail: RefCell<HashMap<PathBuf, i32>>,
    /// Probe outcome per (ELF class, e_machine); unlisted programs fail with ENOEXEC unless an
    /// enabled simulated binfmt entry matches them, in which case they exit with `emulated_exit`.
    pub probes: HashMap<(u8, u16), ProbeOutcome>,
    pub emulated_exit: i32,
    /// What each entry registered through the simulated `register` file matches on, by the
    /// entry's path; an entry counts while its file exists.
    registered: RefCell<BTreeMap<PathBuf, sim::Magic>>,
    pub calls: RefCell<Vec<Call>>,
    /// Scripted command results: the first entry whose key is a prefix of the command line
    /// (as [`CommandSpec::display`] prints it) answers. Unmatched captured commands fail to
    /// start (NotFound, as a missing program); unmatched attached commands exit 0.
    pub commands: Vec<(String, CommandOutput)>,
}

impl FakeHost {
    /// An x86_64 root host with an empty, unmounted binfmt_misc.
    pub fn new() -> Self {
        FakeHost {
            uname: Uname {
                machine: "x86_64".into(),
                release: "6.8.0".into(),
            },
            euid: 0,
            files: RefCell::new(BTreeMap::new()),
            programs: HashMap::new(),
            fail: RefCell::new(HashMap::new()),
            probes: HashMap::new(),
            emulated_exit: 0,
            registered: RefCell::new(BTreeMap::new()),
            calls: RefCell::new(Vec::new()),
            commands: Vec::new(),
        }
    }

    /// Script the result of commands whose command line starts with `prefix`.
    pub fn on_command(&mut self, prefix: &str, status: ProbeOutcome, stdout: &str, stderr: &str) {
        self.commands.push((
            prefix.to_string(),
            CommandOutput {
                status,
                stdout: stdout.to_string(),
                stderr: stderr.to_string(),
            },
        ));
    }

    fn scripted(&self, line: &str) -> Option<CommandOutput> {
        self.commands
            .iter()
            .find(|(p, _)| line.starts_with(p.as_str()))
            .map(|(_, o)| o.clone())
    }

    pub fn add_file(&self, path: impl Into<PathBuf>, data: impl Into<Vec<u8>>) {
        self.files.borrow_mut().insert(path.into(), data.into());
    }

    /// Pretend binfmt_misc is mounted at `dir` (creates `register` and `status`).
    pub fn mount_binfmt(&self, dir: &Path) {
        self.add_file(dir.join("register"), Vec::new());
        self.add_file(dir.join("status"), b"enabled\n".to_vec());
    }

    pub fn fail_on(&self, path: impl Into<PathBuf>, errno: i32) {
        self.fail.borrow_mut().insert(path.into(), errno);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    /// Only the calls that change something (not probe runs).
    pub fn changes(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| !matches!(c, Call::Run(..) | Call::Capture(..)))
            .collect()
    }

    fn check_fail(&self, path: &Path) -> io::Result<()> {
        match self.fail.borrow().get(path) {
            Some(&errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }

    fn log(&self, c: Call) {
        self.calls.borrow_mut().push(c);
    }

    /// Create or replace a file, logged as `call`.
    fn write(&self, path: &Path, data: &[u8], call: fn(PathBuf, String) -> Call) -> io::Result<()> {
        self.check_fail(path)?;
        self.log(call(
            path.to_path_buf(),
            String::from_utf8_lossy(data).into_owned(),
        ));
        self.add_file(path, data.to_vec());
        Ok(())
    }

    /// Whether a simulated binfmt_misc entry catches this program.
    fn entries_matching(&self, image: &[u8]) -> bool {
        let files = self.files.borrow();
        self.registered
            .borrow()
            .iter()
            .any(|(path, magic)| files.contains_key(path) && magic.catches(image))
    }
}

impl Default for FakeHost {
    fn default() -> Self {
        Self::new()
    }
}

impl Host for FakeHost {
    fn uname(&self) -> io::Result<Uname> {
        Ok(self.uname.clone())
    }
    fn effective_uid(&self) -> u32 {
        self.euid
    }
    fn cpu(&self) -> CpuInfo {
        CpuInfo {
            model: "Fake CPU".into(),
            cores: 2,
            flags: vec!["fpu".into()],
        }
    }
    fn container(&self) -> Option<String> {
        None
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files
            .borrow()
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn read_prefix(&self, path: &Path, max: usize) -> io::Result<Vec<u8>> {
        let mut b = self.read(path)?;
        b.truncate(max);
        Ok(b)
    }
    fn exists(&self, path: &Path) -> bool {
        let files = self.files.borrow();
        files.contains_key(path) || files.keys().any(|k| k.starts_with(path))
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let files = self.files.borrow();
        let names: Vec<String> = files
            .keys()
            .filter(|k| k.parent() == Some(path))
            .filter_map(|k| k.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        if names.is_empty() && !files.keys().any(|k| k.starts_with(path)) {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok(names)
    }
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.write(path, data, Call::WriteFile)
    }
    fn write_control(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.check_fail(path)?;
        let text = String::from_utf8_lossy(data).into_owned();
        self.log(Call::WriteControl(path.to_path_buf(), text.clone()));
        if !self.files.borrow().contains_key(path) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let dir = path.parent().unwrap_or(Path::new("/"));
        if path.file_name().is_some_and(|n| n == "register") {
            let (name, entry, magic) = sim::register(&text)?;
            let target = dir.join(name);
            if self.files.borrow().contains_key(&target) {
                return Err(io::Error::from_raw_os_error(17)); // EEXIST
            }
            self.registered.borrow_mut().insert(target.clone(), magic);
            self.add_file(target, entry);
        } else if text.trim() == "-1" {
            if path.file_name().is_some_and(|n| n == "status") {
                let mut files = self.files.borrow_mut();
                let keep = |k: &PathBuf| {
                    k.parent() != Some(dir)
                        || k.file_name()
                            .is_some_and(|n| n == "register" || n == "status")
                };
                files.retain(|k, _| keep(k));
            } else {
                self.files.borrow_mut().remove(path);
            }
        }
        Ok(())
    }
    fn write_executable(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.write(path, data, Call::WriteExecutable)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check_fail(path)?;
        self.log(Call::RemoveFile(path.to_path_buf()));
        self.files
            .borrow_mut()
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check_fail(path)?;
        self.log(Call::CreateDir(path.to_path_buf()));
        Ok(())
    }
    fn mount_binfmt_misc(&self, target: &Path) -> io::Result<()> {
        self.check_fail(target)?;
        self.log(Call::Mount(target.to_path_buf()));
        self.mount_binfmt(target);
        Ok(())
    }
    fn find_program(&self, name: &str) -> Option<PathBuf> {
        self.programs.get(name).cloned()
    }
    fn run_program(&self, image: &[u8]) -> io::Result<ProbeOutcome> {
        let class = image.get(4).copied().unwrap_or(0);
        let machine = match (image.get(5), image.get(18), image.get(19)) {
            (Some(2), Some(&hi), Some(&lo)) => u16::from_be_bytes([hi, lo]),
            (_, Some(&lo), Some(&hi)) => u16::from_le_bytes([lo, hi]),
            _ => 0,
        };
        self.log(Call::Run(class, machine));
        if let Some(o) = self.probes.get(&(class, machine)) {
            return Ok(*o);
        }
        if self.entries_matching(image) {
            return Ok(ProbeOutcome::Exited(self.emulated_exit));
        }
        Ok(ProbeOutcome::ExecFormatError)
    }
    fn run_capture(&self, cmd: &CommandSpec) -> io::Result<CommandOutput> {
        let line = cmd.display();
        self.log(Call::Capture(line.clone()));
        self.scripted(&line)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn run_inherit(&self, cmd: &CommandSpec) -> io::Result<ProbeOutcome> {
        let line = cmd.display();
        self.log(Call::Inherit(line.clone()));
        Ok(self
            .scripted(&line)
            .map(|o| o.status)
            .unwrap_or(ProbeOutcome::Exited(0)))
    }
}

/// Just enough of binfmt_misc's register parser to keep the fake honest.
mod sim {
    use std::io;

    fn unescape(s: &str) -> Option<Vec<u8>> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
                let hex = s.get(i + 2..i + 4)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 4;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        Some(out)
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// What a registered entry matches on.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Magic {
        offset: usize,
        magic: Vec<u8>,
        /// Empty when every bit is compared.
        mask: Vec<u8>,
    }

    impl Magic {
        /// The kernel's test: the program's bytes from `offset` on, under the mask, equal the
        /// magic under the mask (a program too short to hold them does not match).
        pub fn catches(&self, image: &[u8]) -> bool {
            self.magic.iter().enumerate().all(|(i, m)| {
                let k = self.mask.get(i).copied().unwrap_or(0xff);
                image.get(self.offset + i).is_some_and(|b| b & k == m & k)
            })
        }
    }

    /// Parse `:name:M:offset:magic:mask:interp:flags` into (name, entry file text, what the
    /// entry matches on).
    pub fn register(line: &str) -> io::Result<(String, Vec<u8>, Magic)> {
        let einval = || io::Error::from_raw_os_error(22);
        let line = line.trim_end_matches('\n');
        let parts: Vec<&str> = line.split(':').collect();
        if parts.len() != 8 || !parts[0].is_empty() || parts[2] != "M" {
            return Err(einval());
        }
        let magic = unescape(parts[4]).ok_or_else(einval)?;
        let mask = unescape(parts[5]).ok_or_else(einval)?;
        let offset: u32 = if parts[3].is_empty() {
            0
        } else {
            parts[3].parse().map_err(|_| einval())?
        };
        let mut flags: String = parts[7].chars().collect();
        if flags.contains('C') && !flags.contains('O') {
            flags.push('O');
        }
        // The kernel prints flags in the order P, O, C, F.
        let flags: String = "POCF".chars().filter(|c| flags.contains(*c)).collect();
        let mut text = format!(
            "enabled\ninterpreter {}\nflags: {flags}\noffset {offset}\nmagic {}\n",
            parts[6],
            hex(&magic)
        );
        if !mask.is_empty() {
            text.push_str(&format!("mask {}\n", hex(&mask)));
        }
        let magic = Magic {
            offset: offset as usize,
            magic,
            mask,
        };
        Ok((parts[1].to_string(), text.into_bytes(), magic))
    }
}
