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

/// Longest interpreter path rcross registers. Current kernels only bound it by the line length,
/// but 127 bytes is the limit binfmt_misc tooling documents and relies on, and short paths
/// cost nothing: the emulators live in /usr/bin.
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
    } else {
        field_problem(name)
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
    if let Some(problem) = field_problem(path) {
        return Err(EncodeError::InterpreterInvalid {
            path: path.to_string(),
            problem,
        });
    }

    // Handler fields are public, so a hand-built handler may be inconsistent; the kernel would
    // refuse it with a bare EINVAL.
    let magic_end = (h.offset as usize).saturating_add(h.magic.len());
    let handler_problem = if h.magic.is_empty() {
        Some("has an empty magic".to_string())
    } else if h.mask.len() != h.magic.len() {
        Some(format!(
            "has a {}-byte mask for a {}-byte magic",
            h.mask.len(),
            h.magic.len()
        ))
    } else if magic_end > MAX_MAGIC_END {
        Some(format!(
            "has magic ending at byte {magic_end}, beyond the {MAX_MAGIC_END} bytes binfmt_misc sees"
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

/// What in a register-line field would end the field (':') or the line (newline, NUL) early.
fn field_problem(field: &str) -> Option<&'static str> {
    if field.contains(':') {
        Some("contains ':', the field delimiter")
    } else if field.contains(['\n', '\0']) {
        Some("contains a newline or NUL byte")
    } else {
        None
    }
}

fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\x{b:02x}")).collect()
}

/// What a kernel entry matches on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinfmtMatch {
    /// Bytes at an offset (`M` entries). `mask` is `None` when the entry compares all bits.
    Magic {
        offset: u32,
        magic: Vec<u8>,
        mask: Option<Vec<u8>>,
    },
    /// A file name extension (`E` entries), without the leading dot (`exe`).
    Extension(String),
}

/// The bytes a magic entry compares, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMagic<'a> {
    pub offset: u32,
    pub magic: &'a [u8],
    /// `None` when every bit is compared.
    pub mask: Option<&'a [u8]>,
}

/// A binfmt_misc entry as the kernel reports it in `/proc/sys/fs/binfmt_misc/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelEntry {
    pub name: String,
    pub enabled: bool,
    pub interpreter: String,
    pub flags: Flags,
    pub kind: BinfmtMatch,
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
        (Some(ext), None) if offset.is_none() && mask.is_none() => BinfmtMatch::Extension(ext),
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
            BinfmtMatch::Magic {
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
    /// What a magic entry compares; `None` for an extension entry.
    pub fn magic(&self) -> Option<EntryMagic<'_>> {
        match &self.kind {
            BinfmtMatch::Magic {
                offset,
                magic,
                mask,
            } => Some(EntryMagic {
                offset: *offset,
                magic,
                mask: mask.as_deref(),
            }),
            BinfmtMatch::Extension(_) => None,
        }
    }

    /// Whether this entry recognises the same files as `h`: same offset and the same bits
    /// compared, each side's magic taken `& mask`. Spellings that differ only in masked-out
    /// bits (QEMU writes 01 where its mask is fe; rcross stores 00) are the same format.
    /// Whether the entry is enabled does not matter here.
    pub fn same_format(&self, h: &Handler) -> bool {
        let Some(EntryMagic {
            offset,
            magic,
            mask,
        }) = self.magic()
        else {
            return false;
        };
        if offset != h.offset || magic.len() != h.magic.len() {
            return false;
        }
        let ours = h.masked_magic();
        let theirs = masked(magic, mask);
        ours == theirs
    }

    /// Whether some file would match both this entry and `h`, so that registering one takes
    /// programs from the other (the kernel hands a file to the newest matching entry). Entries
    /// with other offsets, lengths or masks overlap when they agree on every bit both compare;
    /// bytes only one of them looks at can be chosen to satisfy it. Extension entries match by
    /// file name and never overlap a magic. Whether the entry is enabled does not matter here.
    pub fn overlaps(&self, h: &Handler) -> bool {
        let Some(EntryMagic {
            offset,
            magic,
            mask,
        }) = self.magic()
        else {
            return false;
        };
        let all_bits;
        let mask = match mask {
            Some(m) => m,
            None => {
                all_bits = vec![0xff; magic.len()];
                &all_bits
            }
        };
        magics_overlap((offset, magic, mask), (h.offset, &h.magic, &h.mask))
    }

    /// Whether this entry is exactly what registering `h` with `interpreter` and `flags` would
    /// produce: same format, same mask, same interpreter, same effective flags (`C` implies
    /// `O`). The enabled state is not compared; a disabled but otherwise identical entry only
    /// needs enabling.
    pub fn identical(&self, h: &Handler, interpreter: &str, flags: &Flags) -> bool {
        let BinfmtMatch::Magic { mask, .. } = &self.kind else {
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

/// Whether one file can match two (offset, magic, mask) formats: on every byte position both
/// cover, the bits both masks compare are equal. A mask byte missing (an inconsistent
/// hand-built handler) counts as comparing all bits.
pub fn magics_overlap(a: (u32, &[u8], &[u8]), b: (u32, &[u8], &[u8])) -> bool {
    let (a_offset, a_magic, a_mask) = a;
    let (b_offset, b_magic, b_mask) = b;
    let (a_offset, b_offset) = (a_offset as usize, b_offset as usize);
    let start = a_offset.max(b_offset);
    let end = a_offset
        .saturating_add(a_magic.len())
        .min(b_offset.saturating_add(b_magic.len()));
    (start..end).all(|position| {
        let (i, j) = (position - a_offset, position - b_offset);
        let both = a_mask.get(i).copied().unwrap_or(0xff) & b_mask.get(j).copied().unwrap_or(0xff);
        a_magic[i] & both == b_magic[j] & both
    })
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
pub fn describe_kind(kind: &BinfmtMatch) -> String {
    match kind {
        BinfmtMatch::Magic {
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
        BinfmtMatch::Extension(ext) => format!("extension .{ext}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binfmt::Catalog;

    fn handler(name: &str) -> Handler {
        Catalog::builtin()
            .unwrap()
            .by_name(name)
            .unwrap_or_else(|| panic!("no handler {name}"))
            .clone()
    }

    fn pf() -> Flags {
        Flags {
            preserve_argv0: true,
            fix_binary: true,
            ..Flags::default()
        }
    }

    const AARCH64_LINE: &str = r":rcross-aarch64:M:0:\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:PF";

    #[test]
    fn register_line_is_exact() {
        let h = handler("aarch64");
        let line = register_line(
            &h.kernel_name(),
            &h,
            Path::new("/usr/bin/qemu-aarch64-static"),
            &pf(),
        )
        .unwrap();
        assert_eq!(line, AARCH64_LINE);

        let all = Flags {
            fix_binary: true,
            preserve_argv0: true,
            credentials: true,
            open_binary: true,
        };
        let line = register_line("x", &h, Path::new("/q"), &all).unwrap();
        assert!(line.ends_with(":/q:POCF"), "{line}");
        let line = register_line("x", &h, Path::new("/q"), &Flags::default()).unwrap();
        assert!(line.ends_with(":/q:"), "{line}");

        let mut at8 = h.clone();
        at8.offset = 8;
        at8.magic = vec![0x3a, 0x00];
        at8.mask = vec![0xff, 0x0f];
        let line = register_line("x", &at8, Path::new("/q"), &Flags::default()).unwrap();
        assert_eq!(
            line, r":x:M:8:\x3a\x00:\xff\x0f:/q:",
            "':' and NUL bytes escaped"
        );
    }

    #[test]
    fn register_line_refuses_what_the_kernel_would() {
        let h = handler("aarch64");
        let ok = Path::new("/usr/bin/qemu-aarch64-static");
        let f = Flags::default();
        for name in ["", ".", "..", "a/b", "a:b", "a\nb", "a\0b"] {
            let e = register_line(name, &h, ok, &f).unwrap_err();
            assert!(matches!(e, EncodeError::Name { .. }), "{name:?}: {e}");
            assert!(e.to_string().contains(&format!("{name:?}")), "{e}");
        }
        assert!(register_line("...", &h, ok, &f).is_ok());

        let e = register_line("x", &h, Path::new("qemu-aarch64"), &f).unwrap_err();
        assert!(
            matches!(e, EncodeError::InterpreterNotAbsolute { .. }),
            "{e}"
        );
        let e = register_line("x", &h, Path::new(""), &f).unwrap_err();
        assert!(
            matches!(e, EncodeError::InterpreterNotAbsolute { .. }),
            "{e}"
        );

        let max = format!("/{}", "q".repeat(MAX_INTERPRETER_LENGTH - 1));
        assert!(register_line("x", &h, Path::new(&max), &f).is_ok());
        let long = format!("{max}q");
        let e = register_line("x", &h, Path::new(&long), &f).unwrap_err();
        assert_eq!(
            e,
            EncodeError::InterpreterTooLong {
                path: long.clone(),
                len: 128
            }
        );

        for bad in ["/opt/a:b/qemu", "/usr/bin/qemu\n", "/usr/bin/q\0"] {
            let e = register_line("x", &h, Path::new(bad), &f).unwrap_err();
            assert!(
                matches!(e, EncodeError::InterpreterInvalid { .. }),
                "{bad:?}: {e}"
            );
        }
        {
            use std::os::unix::ffi::OsStrExt;
            let p = Path::new(std::ffi::OsStr::from_bytes(b"/usr/bin/\xff"));
            let e = register_line("x", &h, p, &f).unwrap_err();
            assert!(e.to_string().contains("UTF-8"), "{e}");
        }

        let mut bad = h.clone();
        bad.mask.pop();
        let e = register_line("x", &bad, ok, &f).unwrap_err();
        assert!(matches!(e, EncodeError::Handler { .. }), "{e}");
        let mut bad = h.clone();
        bad.magic.clear();
        bad.mask.clear();
        assert!(matches!(
            register_line("x", &bad, ok, &f),
            Err(EncodeError::Handler { .. })
        ));
        let mut bad = h.clone();
        bad.offset = 109;
        assert!(matches!(
            register_line("x", &bad, ok, &f),
            Err(EncodeError::Handler { .. })
        ));
        bad.offset = 108;
        assert!(register_line("x", &bad, ok, &f).is_ok());
    }

    #[test]
    fn register_line_length_limit_leaves_room_for_a_newline() {
        let h = handler("aarch64");
        let interp = Path::new("/q");
        // Line length without the name: one name byte less than a one-byte name's line.
        let fixed = register_line("n", &h, interp, &Flags::default())
            .unwrap()
            .len()
            - 1;
        let fits = "n".repeat(MAX_REGISTER_LENGTH - 1 - fixed);
        let line = register_line(&fits, &h, interp, &Flags::default()).unwrap();
        assert_eq!(line.len(), MAX_REGISTER_LENGTH - 1);
        let too_long = format!("{fits}n");
        let e = register_line(&too_long, &h, interp, &Flags::default()).unwrap_err();
        assert_eq!(
            e,
            EncodeError::LineTooLong {
                name: too_long.clone(),
                len: MAX_REGISTER_LENGTH
            }
        );
        assert!(e.to_string().contains("1919"), "{e}");
    }

    #[test]
    fn flags_print_in_kernel_order_and_parse_any_order() {
        assert_eq!(pf().to_string(), "PF");
        assert_eq!(Flags::default().to_string(), "");
        for s in ["PF", "FP", "flags: PF", "flags: FP\n", " PF "] {
            assert_eq!(s.parse::<Flags>().unwrap(), pf(), "{s:?}");
        }
        assert_eq!("flags: ".parse::<Flags>().unwrap(), Flags::default());
        let all: Flags = "FCOP".parse().unwrap();
        assert_eq!(all.to_string(), "POCF");
        for bad in ["X", "flags: Pf", "P F", "flags: PFx"] {
            let e = bad.parse::<Flags>().unwrap_err();
            assert!(matches!(e, ParseError::Flag { .. }), "{bad:?}: {e}");
        }
        let c: Flags = "C".parse().unwrap();
        assert!(!c.open_binary);
        assert_eq!(c.effective().to_string(), "OC");
        assert_eq!(c.effective(), "OC".parse::<Flags>().unwrap());
    }

    /// What Debian's qemu-user-static (qemu-binfmt-conf.sh spelling) shows for aarch64.
    const QEMU_AARCH64: &str = "enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: POCF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
";

    /// QEMU's i386 spelling: 01 in bytes 5 and 6, where the mask is fe.
    const QEMU_I386: &str = "disabled
interpreter /usr/bin/qemu-i386-static
flags: F
offset 0
magic 7f454c4601010100000000000000000002000300
mask fffffffffffefe00fffffffffffffffffeffffff
";

    const WINE: &str = "enabled
interpreter /usr/bin/wine
flags: 
extension .exe
";

    #[test]
    fn parses_qemu_entries() {
        let e = parse_kernel_entry("qemu-aarch64", QEMU_AARCH64).unwrap();
        assert_eq!(e.name, "qemu-aarch64");
        assert!(e.enabled);
        assert_eq!(e.interpreter, "/usr/libexec/qemu-binfmt/aarch64-binfmt-P");
        assert_eq!(e.flags.to_string(), "POCF");
        let h = handler("aarch64");
        assert_eq!(
            e.kind,
            BinfmtMatch::Magic {
                offset: 0,
                magic: h.magic.clone(),
                mask: Some(h.mask.clone()),
            }
        );
        assert!(e.same_format(&h));
        assert!(!e.same_format(&handler("riscv64")));

        let e = parse_kernel_entry("qemu-i386", QEMU_I386).unwrap();
        assert!(!e.enabled);
        let i386 = handler("i386");
        assert!(e.same_format(&i386), "differs only in masked-out bits");
        assert!(e.identical(&i386, "/usr/bin/qemu-i386-static", &"F".parse().unwrap()));
        assert!(!e.same_format(&handler("x86_64")));
    }

    #[test]
    fn identical_compares_interpreter_flags_and_mask() {
        let h = handler("aarch64");
        let ours = register_line(
            "rcross-aarch64",
            &h,
            Path::new("/usr/bin/qemu-aarch64-static"),
            &"PCF".parse().unwrap(),
        )
        .unwrap();
        assert!(ours.ends_with(":PCF"), "{ours}");
        // What the kernel shows after that registration: C reads back as OC.
        let shown = "enabled
interpreter /usr/bin/qemu-aarch64-static
flags: POCF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
";
        let e = parse_kernel_entry("rcross-aarch64", shown).unwrap();
        let interp = "/usr/bin/qemu-aarch64-static";
        assert!(e.identical(&h, interp, &"PCF".parse().unwrap()));
        assert!(e.identical(&h, interp, &"POCF".parse().unwrap()));
        assert!(!e.identical(&h, interp, &"PF".parse().unwrap()));
        assert!(!e.identical(&h, "/usr/bin/qemu-aarch64", &"PCF".parse().unwrap()));

        // Same masked magic through a different mask: same format, not identical.
        let wider = shown.replace(
            "mask ffffffffffffff00fffffffffffffffffeffffff",
            "mask ffffffffffffff00ffffffffffffffffffffffff",
        );
        let e = parse_kernel_entry("other", &wider).unwrap();
        assert!(e.same_format(&h));
        assert!(!e.identical(&h, interp, &"PCF".parse().unwrap()));

        // No mask: all bits compared.
        let no_mask = "enabled\ninterpreter /q\nflags: \noffset 0\nmagic 7f454c46\n";
        let e = parse_kernel_entry("exact", no_mask).unwrap();
        let exact = Handler {
            magic: b"\x7fELF".to_vec(),
            mask: vec![0xff; 4],
            ..h.clone()
        };
        assert!(e.identical(&exact, "/q", &Flags::default()));
        assert!(!e.same_format(&h));
    }

    #[test]
    fn magics_overlap_on_the_bits_both_compare() {
        let ff = |n| vec![0xffu8; n];
        // Same bytes, one mask ignores a bit the other compares: overlap.
        assert!(magics_overlap((0, &[0x02], &[0xfe]), (0, &[0x03], &[0xff])));
        // The compared bits differ: no overlap.
        assert!(!magics_overlap(
            (0, &[0x02], &[0xff]),
            (0, &[0x03], &[0xff])
        ));
        assert!(!magics_overlap(
            (0, &[0x04], &[0xfe]),
            (0, &[0x03], &[0xff])
        ));
        // Nothing compared in common: every byte can be chosen for each.
        assert!(magics_overlap((0, &[0xaa], &[0xf0]), (0, &[0x55], &[0x0f])));
        // Disjoint ranges always overlap; offsets line the bytes up.
        assert!(magics_overlap(
            (0, b"\x7fELF", &ff(4)),
            (16, &[0x02, 0x00], &ff(2))
        ));
        assert!(magics_overlap(
            (0, b"\x7fELF", &ff(4)),
            (2, b"LF\x02", &ff(3))
        ));
        assert!(!magics_overlap((0, b"\x7fELF", &ff(4)), (2, b"EL", &ff(2))));
        // A prefix of a longer magic.
        assert!(magics_overlap(
            (0, b"\x7fEL", &ff(3)),
            (0, b"\x7fELF\x02", &ff(5))
        ));
        assert!(!magics_overlap(
            (0, b"\x7fEX", &ff(3)),
            (0, b"\x7fELF\x02", &ff(5))
        ));
        // Symmetric, and a missing mask byte compares all bits.
        assert!(
            magics_overlap((16, &[0x03], &[0xff]), (0, &ff(17), &[]))
                == magics_overlap((0, &ff(17), &[]), (16, &[0x03], &[0xff]))
        );
        assert!(!magics_overlap(
            (0, &[0x01, 0x02], &[0xff]),
            (0, &[0x01, 0x03], &ff(2))
        ));
        // Offsets near u32::MAX do not overflow.
        assert!(magics_overlap(
            (u32::MAX, &[1], &[0xff]),
            (0, &[2], &[0xff])
        ));
    }

    #[test]
    fn overlaps_takes_an_entry_without_mask_as_all_bits() {
        let h = handler("aarch64");
        let text =
            |magic: &str| format!("enabled\ninterpreter /q\nflags: \noffset 0\nmagic {magic}\n");
        let e = parse_kernel_entry("x", &text("7f454c4602010100")).unwrap();
        assert!(e.overlaps(&h), "every ELF64 LE file, aarch64 ones included");
        assert!(!e.same_format(&h));
        let e = parse_kernel_entry("x", &text("7f454c4601")).unwrap();
        assert!(!e.overlaps(&h), "ELF32 files are never aarch64 programs");
        let e = parse_kernel_entry("wine", WINE).unwrap();
        assert!(!e.overlaps(&h));
        let e = parse_kernel_entry("qemu-aarch64", QEMU_AARCH64).unwrap();
        assert!(e.overlaps(&h));
        assert!(!e.overlaps(&handler("riscv64")));
    }

    #[test]
    fn parses_extension_entries() {
        let e = parse_kernel_entry("wine", WINE).unwrap();
        assert_eq!(e.kind, BinfmtMatch::Extension("exe".to_string()));
        assert_eq!(e.flags, Flags::default());
        assert_eq!(e.interpreter, "/usr/bin/wine");
        assert!(!e.same_format(&handler("x86_64")));
        assert!(!e.identical(&handler("x86_64"), "/usr/bin/wine", &Flags::default()));
        assert_eq!(describe_kind(&e.kind), "extension .exe");
    }

    #[test]
    fn interpreter_paths_with_spaces_survive() {
        let text = QEMU_AARCH64.replace(
            "/usr/libexec/qemu-binfmt/aarch64-binfmt-P",
            "/opt/my tools/qemu",
        );
        let e = parse_kernel_entry("x", &text).unwrap();
        assert_eq!(e.interpreter, "/opt/my tools/qemu");
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let cases = [
            "",
            "\n\n",
            "enabled\n",
            "hello world",
            "enabled\ninterpreter /q\nflags: \n",
            "enabled\ninterpreter \nflags: \noffset 0\nmagic 00\n",
            "enabled\ninterpreter /q\nflags: Z\noffset 0\nmagic 00\n",
            "enabled\ninterpreter /q\nflags: \noffset x\nmagic 00\n",
            "enabled\ninterpreter /q\nflags: \noffset -1\nmagic 00\n",
            "enabled\ninterpreter /q\nflags: \noffset 0\nmagic 0g\n",
            "enabled\ninterpreter /q\nflags: \noffset 0\nmagic \n",
            "enabled\ninterpreter /q\nflags: \noffset 0\nmagic 00\nmask ffff\n",
            "enabled\ninterpreter /q\nflags: \nmagic 00\n",
            "enabled\nenabled\ninterpreter /q\nflags: \noffset 0\nmagic 00\n",
            "enabled\ninterpreter /q\nflags: \nextension .\n",
            "enabled\ninterpreter /q\nflags: \nextension .exe\noffset 0\nmagic 00\n",
            "\u{0}\u{ff}é",
        ];
        for text in cases {
            assert!(
                parse_kernel_entry("x", text).is_err(),
                "{text:?} must not parse"
            );
        }
        // Every prefix of real entries, cut at any character: a result, never a panic.
        for text in [QEMU_AARCH64, QEMU_I386, WINE] {
            for (i, _) in text.char_indices() {
                let _ = parse_kernel_entry("x", &text[..i]);
            }
        }
        let e = parse_kernel_entry("x", "hello world")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"x\"") && e.contains("enabled"), "{e}");
    }

    #[test]
    fn unknown_lines_from_newer_kernels_are_ignored() {
        let text = format!("{QEMU_AARCH64}future-field 1\n");
        assert!(parse_kernel_entry("x", &text).is_ok());
    }

    #[test]
    fn binfmt_d_file_is_comments_plus_one_register_line() {
        let text = binfmt_d_file(AARCH64_LINE);
        assert!(text.starts_with("# Written by rcross"), "{text}");
        assert!(text.ends_with('\n'));
        let rules: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
            .collect();
        assert_eq!(rules, [AARCH64_LINE]);
    }
}
