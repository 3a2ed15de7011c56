//! The kernel's binfmt_misc text formats: the register line written to
//! `/proc/sys/fs/binfmt_misc/register`, the status text read back from
//! `/proc/sys/fs/binfmt_misc/<name>`, and systemd's `binfmt.d` files.
//!
//! Pure string work; writing and reading the files is the caller's (host) business.

use super::catalog::{parse_hex, to_hex, Handler, MAX_MAGIC_END};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// Longest write the kernel's register file accepts (`MAX_REGISTER_LENGTH`), counting the
/// trailing newline the kernel allows after the flags.
pub const MAX_REGISTER_LENGTH: usize = 1920;

/// Longest interpreter path rcross registers. The kernel has no separate limit, but tools that
/// read entries back (and older kernels' fixed-size buffers) assume 127 bytes.
pub const MAX_INTERPRETER_LENGTH: usize = 127;

/// The binfmt_misc flags rcross knows. `C` implies `O` in the kernel: registering `C` reads back
/// as `OC`; [`Flags::effective`] applies that rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags {
    /// `F`: the kernel opens the emulator at registration, so it works inside containers and
    /// chroots that do not contain it (needs a statically linked emulator and Linux ≥ 4.8).
    pub fix_binary: bool,
    /// `P`: pass the original argv[0] to the emulator (it must understand this).
    pub preserve_argv0: bool,
    /// `C`: compute credentials from the program, not the emulator (setuid works; implies `O`).
    pub credentials: bool,
    /// `O`: hand the emulator an open file descriptor of the program (unreadable programs work).
    pub open_binary: bool,
}

impl Flags {
    /// The flags as the kernel stores them: `C` switches `O` on.
    pub fn effective(&self) -> Flags {
        Flags {
            open_binary: self.open_binary || self.credentials,
            ..*self
        }
    }
}

/// Letters in the kernel's order (`POCF`), which is also the order it prints them in.
impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (on, letter) in [
            (self.preserve_argv0, 'P'),
            (self.open_binary, 'O'),
            (self.credentials, 'C'),
            (self.fix_binary, 'F'),
        ] {
            if on {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

/// Parses the letters (`"PF"`, `""`) or a whole status line (`"flags: PF"`), in any order.
impl FromStr for Flags {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let letters = s.trim();
        let letters = letters.strip_prefix("flags:").unwrap_or(letters).trim();
        let mut flags = Flags::default();
        for c in letters.chars() {
            let slot = match c {
                'P' => &mut flags.preserve_argv0,
                'O' => &mut flags.open_binary,
                'C' => &mut flags.credentials,
                'F' => &mut flags.fix_binary,
                _ => {
                    return Err(ParseError::Flag {
                        text: s.to_string(),
                        letter: c,
                    })
                }
            };
            *slot = true;
        }
        Ok(flags)
    }
}

/// Why a register line could not be built. Each of these would make the kernel answer EINVAL
/// (or register something other than intended), so they are caught before writing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("binfmt_misc entry name {name:?} {problem}; use a name without ':' or '/', newlines or NUL bytes, other than \".\" and \"..\"")]
    Name { name: String, problem: &'static str },
    #[error("emulator path {path:?} is not absolute; the kernel resolves it at exec time from whatever directory the program runs in, so give the full path (e.g. /usr/bin/qemu-aarch64-static)")]
    InterpreterNotAbsolute { path: String },
    #[error("emulator path {path:?} is {len} bytes long, more than the {max} binfmt_misc allows; install or link the emulator under a shorter path such as /usr/bin", max = MAX_INTERPRETER_LENGTH)]
    InterpreterTooLong { path: String, len: usize },
    #[error("emulator path {path:?} {problem}; install or link the emulator under a plain path such as /usr/bin/qemu-aarch64-static")]
    InterpreterInvalid { path: String, problem: &'static str },
    #[error("handler {name:?} {problem}; fix its handler file")]
    Handler { name: String, problem: String },
    #[error("register line for {name:?} would be {len} bytes, more than the {max} the kernel accepts; shorten the entry name or the emulator path", max = MAX_REGISTER_LENGTH - 1)]
    LineTooLong { name: String, len: usize },
}

/// The line that registers `h` under the kernel entry `name`:
/// `:name:M:offset:magic:mask:interpreter:flags`, every magic and mask byte written as `\xHH`
/// so that no byte can be taken for the ':' delimiter or end the string early (NUL).
/// No trailing newline; the kernel accepts one if the caller adds it.
pub fn register_line(
    name: &str,
    h: &Handler,
    interpreter: &Path,
    flags: &Flags,
) -> Result<String, EncodeError> {
    let name_problem = if name.is_empty() {
        Some("is empty")
    } else if name == "." || name == ".." {
        Some("is a directory name")
    } else if name.contains('/') {
        Some("contains '/'")
    } else if name.contains(':') {
        Some("contains ':', the field delimiter")
    } else if name.contains(['\n', '\0']) {
        Some("contains a newline or NUL byte")
    } else {
        None
    };
    if let Some(problem) = name_problem {
        return Err(EncodeError::Name {
            name: name.to_string(),
            problem,
        });
    }

    let path = interpreter
        .to_str()
        .ok_or_else(|| EncodeError::InterpreterInvalid {
            path: interpreter.to_string_lossy().into_owned(),
            problem: "is not valid UTF-8",
        })?;
    if !path.starts_with('/') {
        return Err(EncodeError::InterpreterNotAbsolute {
            path: path.to_string(),
        });
    }
    if path.len() > MAX_INTERPRETER_LENGTH {
        return Err(EncodeError::InterpreterTooLong {
            path: path.to_string(),
            len: path.len(),
        });
    }
    let path_problem = if path.contains(':') {
        Some("contains ':', the field delimiter")
    } else if path.contains(['\n', '\0']) {
        Some("contains a newline or NUL byte")
    } else {
        None
    };
    if let Some(problem) = path_problem {
        return Err(EncodeError::InterpreterInvalid {
            path: path.to_string(),
            problem,
        });
    }

    // Handler fields are public, so a hand-built handler may be inconsistent; the kernel would
    // refuse it with a bare EINVAL.
    let handler_problem = if h.magic.is_empty() {
        Some("has an empty magic".to_string())
    } else if h.mask.len() != h.magic.len() {
        Some(format!(
            "has a {}-byte mask for a {}-byte magic",
            h.mask.len(),
            h.magic.len()
        ))
    } else if h.offset as usize + h.magic.len() > MAX_MAGIC_END {
        Some(format!(
            "has magic ending at byte {}, beyond the {MAX_MAGIC_END} bytes binfmt_misc sees",
            h.offset as usize + h.magic.len()
        ))
    } else {
        None
    };
    if let Some(problem) = handler_problem {
        return Err(EncodeError::Handler {
            name: h.name.clone(),
            problem,
        });
    }

    let line = format!(
        ":{name}:M:{}:{}:{}:{path}:{flags}",
        h.offset,
        escape(&h.magic),
        escape(&h.mask)
    );
    // One byte is kept for the newline that `echo` and most writers append.
    if line.len() > MAX_REGISTER_LENGTH - 1 {
        return Err(EncodeError::LineTooLong {
            name: name.to_string(),
            len: line.len(),
        });
    }
    Ok(line)
}

fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\x{b:02x}")).collect()
}

/// What a kernel entry matches on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// Bytes at an offset (`M` entries). `mask` is `None` when the entry compares all bits.
    Magic {
        offset: u32,
        magic: Vec<u8>,
        mask: Option<Vec<u8>>,
    },
    /// A file name extension (`E` entries), without the leading dot (`exe`).
    Extension(String),
}

/// A binfmt_misc entry as the kernel reports it in `/proc/sys/fs/binfmt_misc/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelEntry {
    pub name: String,
    pub enabled: bool,
    pub interpreter: String,
    pub flags: Flags,
    pub kind: EntryKind,
}

/// Why an entry's text could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("binfmt_misc entry {name:?}: {problem} in line {line:?}; this does not look like a binfmt_misc entry (is the path really under /proc/sys/fs/binfmt_misc?)")]
    Line {
        name: String,
        line: String,
        problem: String,
    },
    #[error("binfmt_misc entry {name:?} has no {what} line; this does not look like a binfmt_misc entry (is the path really under /proc/sys/fs/binfmt_misc?)")]
    Missing { name: String, what: &'static str },
    #[error("unknown binfmt_misc flag {letter:?} in {text:?}; known flags are P, O, C and F")]
    Flag { text: String, letter: char },
}

/// Parse the text of `/proc/sys/fs/binfmt_misc/<name>`.
///
/// Lines the kernel does not write today are ignored, so a future kernel adding a line does
/// not make every entry unreadable; a line it does write but garbled is an error.
pub fn parse_kernel_entry(name: &str, text: &str) -> Result<KernelEntry, ParseError> {
    let line_err = |line: &str, problem: String| ParseError::Line {
        name: name.to_string(),
        line: line.to_string(),
        problem,
    };
    let mut enabled = None;
    let mut interpreter = None;
    let mut flags = None;
    let mut offset = None;
    let mut magic = None;
    let mut mask = None;
    let mut extension = None;

    for line in text.lines() {
        let line = line.trim_end();
        let (key, value) = match line.split_once(' ') {
            Some((k, v)) => (k, v),
            None => (line, ""),
        };
        // Each known line once: two would mean this is not one entry's text.
        let set = |slot_full: bool| {
            if slot_full {
                Err(line_err(line, "repeated line".to_string()))
            } else {
                Ok(())
            }
        };
        match key {
            "enabled" | "disabled" if value.is_empty() => {
                set(enabled.is_some())?;
                enabled = Some(key == "enabled");
            }
            "interpreter" => {
                set(interpreter.is_some())?;
                if value.is_empty() {
                    return Err(line_err(line, "empty interpreter".to_string()));
                }
                interpreter = Some(value.to_string());
            }
            "flags:" => {
                set(flags.is_some())?;
                flags = Some(value.parse::<Flags>()?);
            }
            "offset" => {
                set(offset.is_some())?;
                let n = value
                    .parse::<u32>()
                    .map_err(|e| line_err(line, format!("offset is not a number ({e})")))?;
                offset = Some(n);
            }
            "magic" => {
                set(magic.is_some())?;
                let bytes = parse_hex(value).map_err(|p| line_err(line, p))?;
                if bytes.is_empty() {
                    return Err(line_err(line, "empty magic".to_string()));
                }
                magic = Some(bytes);
            }
            "mask" => {
                set(mask.is_some())?;
                mask = Some(parse_hex(value).map_err(|p| line_err(line, p))?);
            }
            "extension" => {
                set(extension.is_some())?;
                let ext = value.strip_prefix('.').unwrap_or(value);
                if ext.is_empty() {
                    return Err(line_err(line, "empty extension".to_string()));
                }
                extension = Some(ext.to_string());
            }
            _ => {}
        }
    }

    let missing = |what| ParseError::Missing {
        name: name.to_string(),
        what,
    };
    let enabled = enabled.ok_or_else(|| missing("enabled/disabled"))?;
    let interpreter = interpreter.ok_or_else(|| missing("interpreter"))?;
    let flags = flags.ok_or_else(|| missing("flags:"))?;
    let kind = match (extension, magic) {
        (Some(ext), None) if offset.is_none() && mask.is_none() => EntryKind::Extension(ext),
        (Some(_), _) => {
            return Err(line_err(
                text.trim(),
                "both an extension and a magic".to_string(),
            ))
        }
        (None, Some(magic)) => {
            if let Some(m) = &mask {
                if m.len() != magic.len() {
                    return Err(line_err(
                        text.trim(),
                        format!("a {}-byte mask for a {}-byte magic", m.len(), magic.len()),
                    ));
                }
            }
            EntryKind::Magic {
                offset: offset.ok_or_else(|| missing("offset"))?,
                magic,
                mask,
            }
        }
        (None, None) => return Err(missing("magic or extension")),
    };
    Ok(KernelEntry {
        name: name.to_string(),
        enabled,
        interpreter,
        flags,
        kind,
    })
}

impl KernelEntry {
    /// Whether this entry recognises the same files as `h`: same offset and the same bits
    /// compared, each side's magic taken `& mask`. Spellings that differ only in masked-out
    /// bits (QEMU writes 01 where its mask is fe; rcross stores 00) are the same format.
    /// Whether the entry is enabled does not matter here.
    pub fn same_format(&self, h: &Handler) -> bool {
        let EntryKind::Magic {
            offset,
            magic,
            mask,
        } = &self.kind
        else {
            return false;
        };
        if *offset != h.offset || magic.len() != h.magic.len() {
            return false;
        }
        let ours = h.masked_magic();
        let theirs = masked(magic, mask.as_deref());
        ours == theirs
    }

    /// Whether this entry is exactly what registering `h` with `interpreter` and `flags` would
    /// produce: same format, same mask, same interpreter, same effective flags (`C` implies
    /// `O`). The enabled state is not compared; a disabled but otherwise identical entry only
    /// needs enabling.
    pub fn identical(&self, h: &Handler, interpreter: &str, flags: &Flags) -> bool {
        let EntryKind::Magic { mask, .. } = &self.kind else {
            return false;
        };
        let mask_same = match mask {
            Some(m) => *m == h.mask,
            None => h.mask.iter().all(|&b| b == 0xff),
        };
        self.same_format(h)
            && mask_same
            && self.interpreter == interpreter
            && self.flags.effective() == flags.effective()
    }
}

/// `magic & mask`, with no mask meaning all bits count.
fn masked(magic: &[u8], mask: Option<&[u8]>) -> Vec<u8> {
    match mask {
        Some(mask) => magic.iter().zip(mask).map(|(m, k)| m & k).collect(),
        None => magic.to_vec(),
    }
}

/// Contents of a systemd `binfmt.d` file (`/etc/binfmt.d/*.conf`) holding one register line.
/// systemd-binfmt writes each non-comment line verbatim to the register file at boot; lines
/// starting with `#` or `;` are comments. `line` comes from [`register_line`], which already
/// guarantees a single line.
pub fn binfmt_d_file(line: &str) -> String {
    format!(
        "# Written by rcross to register a QEMU emulator with binfmt_misc at boot\n\
         # (systemd-binfmt). rcross rewrites or removes this file; change the handler\n\
         # with rcross rather than editing it here.\n\
         {line}\n"
    )
}

/// Hex of the bytes the entry compares, for messages.
pub fn describe_kind(kind: &EntryKind) -> String {
    match kind {
        EntryKind::Magic {
            offset,
            magic,
            mask,
        } => match mask {
            Some(mask) => format!(
                "magic {} mask {} at offset {offset}",
                to_hex(magic),
                to_hex(mask)
            ),
            None => format!("magic {} at offset {offset}", to_hex(magic)),
        },
        EntryKind::Extension(ext) => format!("extension .{ext}"),
    }
}
