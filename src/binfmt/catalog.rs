//! The handler catalog: which emulator serves which platform, and the magic/mask the kernel uses
//! to recognise that platform's programs.
//!
//! Built-in handlers are the files in the crate's `binfmt/` directory, compiled in by `build.rs`;
//! a user directory can add handlers or replace built-in ones by `name`.

use crate::platform::Platform;
use crate::userdir::{DefinitionError, DefinitionFiles};
use serde::Deserialize;
use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/binfmt_builtin.rs"));

/// The kernel only hands the first 128 bytes of a file to binfmt_misc on older kernels
/// (`BINPRM_BUF_SIZE`, 256 since Linux 5.1); staying within 128 works everywhere.
pub const MAX_MAGIC_END: usize = 128;

/// Prefix of every kernel entry rcross registers, so its own entries are recognisable and other
/// tools' entries (`qemu-aarch64`, ...) are never mistaken for ours.
pub const KERNEL_NAME_PREFIX: &str = "rcross-";

/// One binfmt_misc handler: a magic/mask pair and the emulator that runs matching programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    /// QEMU's name for the emulated CPU (`aarch64`); the kernel entry is `rcross-<name>`.
    pub name: String,
    /// Platforms whose programs this handler runs.
    pub platforms: Vec<Platform>,
    /// Where in the file the magic starts.
    pub offset: u32,
    /// Bytes the file must have at `offset` (only the bits set in `mask` count).
    pub magic: Vec<u8>,
    /// Which bits of `magic` the kernel compares; as long as `magic`.
    pub mask: Vec<u8>,
    /// Emulator binary names (or absolute paths), in the order to look for them.
    pub emulators: Vec<String>,
    /// Whether the emulator understands the `P` flag (receives the original argv[0]).
    pub preserve_argv0: bool,
    /// `"builtin"`, or the path of the user file that defined this handler.
    pub source: String,
}

impl Handler {
    /// Whether the kernel would pick this handler for a file starting with `file_header`.
    ///
    /// A header too short to cover the magic does not match: the kernel zero-fills short files,
    /// but callers pass a prefix of a file, and zero-filling a truncated prefix would invent
    /// bytes the file may not have.
    pub fn matches(&self, file_header: &[u8]) -> bool {
        // Saturating: offsets near u32::MAX must not overflow a 32-bit usize.
        let start = self.offset as usize;
        let end = start.saturating_add(self.magic.len());
        let Some(window) = file_header.get(start..end) else {
            return false;
        };
        window
            .iter()
            .zip(&self.magic)
            .zip(&self.mask)
            .all(|((b, m), k)| (b ^ m) & k == 0)
    }

    /// Name of the kernel entry rcross registers for this handler (`rcross-aarch64`).
    pub fn kernel_name(&self) -> String {
        format!("{KERNEL_NAME_PREFIX}{}", self.name)
    }

    /// `magic & mask`: the bits that decide a match, for comparing spellings of one format.
    pub fn masked_magic(&self) -> Vec<u8> {
        self.magic
            .iter()
            .zip(&self.mask)
            .map(|(m, k)| m & k)
            .collect()
    }
}

/// Why the handler catalog could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    File(#[from] DefinitionError),
    #[error("binfmt handler name {name:?} is defined by both {first} and {second}; rename or remove one of them (a user file replaces a built-in handler of the same name, but two files in one place may not share a name)")]
    Duplicate {
        name: String,
        first: String,
        second: String,
    },
}

/// The file format, before validation. Fields are plain strings so that a bad value is reported
/// with the field's name and the fix, not as a generic deserialisation error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HandlerFile {
    name: String,
    platforms: Vec<String>,
    offset: u32,
    magic: String,
    mask: String,
    emulators: Vec<String>,
    /// Optional because user-written handlers may use emulators that lack the `P` flag; off is
    /// the safe default (argv[0] is replaced by the program path, but the program runs).
    #[serde(default)]
    preserve_argv0: bool,
}

/// All known handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// Built-in handlers sorted by file name, then user additions sorted by file name; a user
    /// file that replaces a built-in handler takes its place.
    pub handlers: Vec<Handler>,
}

/// Handler files: built in, or in the user's directory, one handler per `name`.
const HANDLER_FILES: DefinitionFiles<Handler, String, CatalogError> = DefinitionFiles {
    what: "binfmt handler",
    example: "binfmt/aarch64.toml",
    builtin: BUILTIN_FILES,
    parse: parse_handler,
    key: |h| h.name.clone(),
    duplicate: |h, first, second| CatalogError::Duplicate {
        name: h.name,
        first,
        second,
    },
};

impl Catalog {
    /// The handlers compiled into rcross.
    pub fn builtin() -> Result<Catalog, CatalogError> {
        Ok(Catalog {
            handlers: HANDLER_FILES.merge(None)?,
        })
    }

    /// The built-in handlers, then every `*.toml` in `user_dir`: a file whose `name` equals a
    /// built-in handler's replaces it, any other file adds a handler. A missing directory means
    /// no user handlers.
    pub fn load(user_dir: &Path) -> Result<Catalog, CatalogError> {
        Ok(Catalog {
            handlers: HANDLER_FILES.merge(Some(user_dir))?,
        })
    }

    /// The handler that runs programs of platform `p`. When several claim it, the one defined
    /// last wins, so a user-added handler takes a platform over from a built-in one.
    pub fn for_platform(&self, p: &Platform) -> Option<&Handler> {
        self.handlers.iter().rev().find(|h| h.platforms.contains(p))
    }

    /// The handler with this `name` (without the `rcross-` prefix).
    pub fn by_name(&self, name: &str) -> Option<&Handler> {
        self.handlers.iter().find(|h| h.name == name)
    }

    /// Handlers whose masked magic matches a file starting with these bytes, in catalog order.
    pub fn matching(&self, file_header: &[u8]) -> Vec<&Handler> {
        self.handlers
            .iter()
            .filter(|h| h.matches(file_header))
            .collect()
    }
}

/// Whether `name` is safe as the tail of a kernel entry name and as a file name: the kernel
/// refuses '/', and ':' would end the name field of the register line. Restricting to a plain
/// alphabet also keeps names usable in binfmt.d file names and shell commands.
pub(crate) fn valid_handler_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && name != "."
        && name != ".."
}

/// Parse one handler file. `origin` names the file in errors; `source` is stored in the handler.
pub(crate) fn parse_handler(
    text: &str,
    origin: &str,
    source: &str,
) -> Result<Handler, CatalogError> {
    let raw: HandlerFile = HANDLER_FILES.read_toml(text, origin)?;
    let field = |field: &'static str, problem: String, fix: &str| {
        CatalogError::from(HANDLER_FILES.field_error(origin, field, problem, fix))
    };

    if !valid_handler_name(&raw.name) {
        return Err(field(
            "name",
            format!("is {:?}", raw.name),
            "use letters, digits, '_', '-' and '.' only, like \"aarch64\"",
        ));
    }

    let mut platforms = Vec::new();
    for s in &raw.platforms {
        let p: Platform = s.parse().map_err(|e| {
            field(
                "platforms",
                format!("has {s:?}, which is not a platform ({e})"),
                "list OCI platforms like \"linux/arm64\"",
            )
        })?;
        if platforms.contains(&p) {
            return Err(field(
                "platforms",
                format!("lists {p} twice (as {s:?})"),
                "list each platform once",
            ));
        }
        platforms.push(p);
    }

    let magic = parse_hex(&raw.magic).map_err(|problem| {
        field(
            "magic",
            problem,
            "write the bytes as hex digits, like \"7f454c46\"",
        )
    })?;
    let mask = parse_hex(&raw.mask).map_err(|problem| {
        field(
            "mask",
            problem,
            "write the bytes as hex digits, like \"ffffffff\"",
        )
    })?;
    if magic.is_empty() {
        return Err(field(
            "magic",
            "is empty".to_string(),
            "give at least one byte; the kernel refuses an empty magic",
        ));
    }
    if mask.len() != magic.len() {
        return Err(field(
            "mask",
            format!("has {} bytes but magic has {}", mask.len(), magic.len()),
            "give the mask exactly one byte per magic byte",
        ));
    }
    let end = (raw.offset as usize).saturating_add(magic.len());
    if end > MAX_MAGIC_END {
        return Err(field(
            "offset",
            format!(
                "{} plus {} magic bytes ends at byte {end}, beyond the {MAX_MAGIC_END} bytes binfmt_misc sees",
                raw.offset,
                magic.len()
            ),
            "shorten the magic or lower the offset",
        ));
    }
    if let Some(i) = (0..magic.len()).find(|&i| magic[i] & !mask[i] != 0) {
        return Err(field(
            "magic",
            format!(
                "byte {i} is {:02x} but the mask there is {:02x}, so bits {:02x} can never be compared",
                magic[i],
                mask[i],
                magic[i] & !mask[i]
            ),
            &format!(
                "write magic & mask (here {:02x}), or widen the mask if those bits were meant to count",
                magic[i] & mask[i]
            ),
        ));
    }

    if raw.emulators.is_empty() {
        return Err(field(
            "emulators",
            "is empty".to_string(),
            "list at least one emulator, like [\"qemu-aarch64-static\", \"qemu-aarch64\"]",
        ));
    }
    for e in &raw.emulators {
        let bare = !e.is_empty() && !e.contains('/');
        let absolute = e.starts_with('/');
        if !(bare || absolute) || e.contains([':', '\n', '\0']) {
            return Err(field(
                "emulators",
                format!("has {e:?}"),
                "give a program name found on PATH (\"qemu-aarch64-static\") or an absolute path without ':'",
            ));
        }
    }

    Ok(Handler {
        name: raw.name,
        platforms,
        offset: raw.offset,
        magic,
        mask,
        emulators: raw.emulators,
        preserve_argv0: raw.preserve_argv0,
        source: source.to_string(),
    })
}

/// Decode a hex string ("7f454c46", either case). The error says what is wrong.
pub(crate) fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    // Every byte before the first non-hex byte is ASCII, so `pos` is a char boundary.
    if let Some(pos) = s.bytes().position(|b| !b.is_ascii_hexdigit()) {
        let c = s[pos..].chars().next().unwrap_or_default();
        return Err(format!("{s:?} is not hex: {c:?} at position {pos}"));
    }
    if s.len() % 2 != 0 {
        return Err(format!(
            "{s:?} has an odd number of hex digits ({})",
            s.len()
        ));
    }
    Ok(s.as_bytes()
        .chunks(2)
        .map(|pair| (nibble(pair[0]) << 4) | nibble(pair[1]))
        .collect())
}

/// Value of one ASCII hex digit (already checked to be one).
fn nibble(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// Lowercase hex, as the kernel prints magic and mask.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AARCH64: &str = r#"
name = "aarch64"
platforms = ["linux/arm64"]
offset = 0
magic = "7f454c460201010000000000000000000200b700"
mask = "ffffffffffffff00fffffffffffffffffeffffff"
emulators = ["/opt/qemu/bin/qemu-aarch64"]
"#;

    fn write(dir: &Path, file: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }

    fn load_err(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "bad.toml", text);
        let err = Catalog::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&path.display().to_string()),
            "error must name the file: {err}"
        );
        err
    }

    #[test]
    fn missing_user_dir_is_just_the_builtin_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::load(&dir.path().join("nope")).unwrap();
        assert_eq!(c, Catalog::builtin().unwrap());
    }

    #[test]
    fn user_dir_that_is_a_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "plain", "");
        let err = Catalog::load(&file).unwrap_err().to_string();
        assert!(err.contains("plain") && err.contains("directory"), "{err}");
    }

    #[test]
    fn user_file_replaces_builtin_of_same_name_in_place() {
        let builtin = Catalog::builtin().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "my-arm64.toml", AARCH64);
        // Not handler files: wrong extension, a directory.
        write(dir.path(), "aarch64.toml~", "garbage");
        std::fs::create_dir(dir.path().join("sub.toml")).unwrap();

        let c = Catalog::load(dir.path()).unwrap();
        assert_eq!(c.handlers.len(), builtin.handlers.len());
        let i = builtin
            .handlers
            .iter()
            .position(|h| h.name == "aarch64")
            .unwrap();
        let h = &c.handlers[i];
        assert_eq!(h.name, "aarch64");
        assert_eq!(h.source, path.display().to_string());
        assert_eq!(h.emulators, ["/opt/qemu/bin/qemu-aarch64"]);
        assert!(!h.preserve_argv0, "P is opt-in for user handlers");
        let arm64: Platform = "linux/arm64".parse().unwrap();
        assert_eq!(c.for_platform(&arm64).map(|h| &h.source), Some(&h.source));
    }

    #[test]
    fn user_file_with_new_name_adds_a_handler_that_wins_its_platforms() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "i486.toml",
            r#"
name = "i486"
platforms = []
offset = 0
magic = "7f454c4601000000000000000000000002000600"
mask = "fffffffffffefe00fffffffffffffffffeffffff"
emulators = ["qemu-i386-static"]
preserve_argv0 = true
"#,
        );
        write(
            dir.path(),
            "box64.toml",
            &AARCH64
                .replace("\"aarch64\"", "\"fex\"")
                .replace("linux/arm64", "aarch64"),
        );
        let c = Catalog::load(dir.path()).unwrap();
        let n = Catalog::builtin().unwrap().handlers.len();
        assert_eq!(c.handlers.len(), n + 2);
        // Sorted by file name: box64.toml before i486.toml.
        assert_eq!(c.handlers[n].name, "fex");
        assert_eq!(c.handlers[n + 1].name, "i486");
        let arm64: Platform = "linux/arm64".parse().unwrap();
        assert_eq!(c.for_platform(&arm64).map(|h| h.name.as_str()), Some("fex"));
        let i386: Platform = "linux/386".parse().unwrap();
        assert_eq!(c.for_platform(&i386).map(|h| h.name.as_str()), Some("i386"));
        let mut em486 = vec![0u8; 64];
        em486[..20]
            .copy_from_slice(&parse_hex("7f454c4601010100000000000000000002000600").unwrap());
        let names: Vec<&str> = c.matching(&em486).iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["i486"]);
    }

    #[test]
    fn two_user_files_with_one_name_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.toml", AARCH64);
        write(dir.path(), "b.toml", AARCH64);
        let err = Catalog::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("a.toml") && err.contains("b.toml"), "{err}");
        assert!(err.contains("\"aarch64\""), "{err}");
    }

    #[test]
    fn malformed_files_name_the_field_and_the_fix() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("name = ", "", &["bad.toml", "not valid"]),
            ("\"aarch64\"", "\"arm/64\"", &["`name`", "letters, digits"]),
            ("\"aarch64\"", "\"..\"", &["`name`"]),
            (
                "\"linux/arm64\"",
                "\"linux/arm46\"",
                &["`platforms`", "linux/arm46", "did you mean linux/arm64"],
            ),
            (
                "\"linux/arm64\"",
                "\"linux/arm64\", \"aarch64\"",
                &["`platforms`", "twice"],
            ),
            ("7f454c46", "7g454c46", &["`magic`", "not hex", "'g'"]),
            ("7f454c46", "7f454c4", &["`magic`", "odd number"]),
            (
                "mask = \"ffffffffffffff00fffffffffffffffffeffffff\"",
                "mask = \"ffff\"",
                &["`mask`", "2 bytes", "20"],
            ),
            (
                "magic = \"7f454c460201010000000000000000000200b700\"",
                "magic = \"\"",
                &["`magic`", "empty"],
            ),
            (
                "\"7f454c4602010100",
                "\"7f454c4602010101",
                &["`magic`", "byte 7", "can never be compared"],
            ),
            ("offset = 0", "offset = 120", &["`offset`", "140", "128"]),
            ("offset = 0", "offset = -1", &["offset"]),
            (
                "[\"/opt/qemu/bin/qemu-aarch64\"]",
                "[]",
                &["`emulators`", "empty"],
            ),
            (
                "[\"/opt/qemu/bin/qemu-aarch64\"]",
                "[\"bin/qemu\"]",
                &["`emulators`", "absolute"],
            ),
            (
                "[\"/opt/qemu/bin/qemu-aarch64\"]",
                "[\"/a:b\"]",
                &["`emulators`"],
            ),
            (
                "offset = 0",
                "offset = 0\npreserve_argv = true",
                &["unknown field", "preserve_argv"],
            ),
            ("offset = 0\n", "", &["missing field", "offset"]),
            ("offset = 0", "offset = \"0\"", &["offset"]),
        ];
        for (from, to, want) in cases {
            assert!(AARCH64.contains(from), "test case {from:?} does not apply");
            let err = load_err(&AARCH64.replacen(from, to, 1));
            for w in *want {
                assert!(err.contains(w), "{from:?} -> {to:?}: {err:?} lacks {w:?}");
            }
        }
    }

    #[test]
    fn not_utf8_file_is_a_read_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin.toml");
        std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        let err = Catalog::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("bin.toml"), "{err}");
    }

    #[test]
    fn matches_needs_the_whole_magic() {
        let c = Catalog::builtin().unwrap();
        let h = c.by_name("aarch64").unwrap();
        let header = parse_hex("7f454c460201010000000000000000000200b700").unwrap();
        assert!(h.matches(&header));
        assert!(!h.matches(&header[..19]));
        assert!(!h.matches(&[]));
        let mut shifted = Handler {
            offset: 4,
            ..h.clone()
        };
        assert!(!shifted.matches(&header));
        shifted.offset = u32::MAX;
        assert!(!shifted.matches(&header), "no overflow panic");
    }

    #[test]
    fn hex() {
        assert_eq!(parse_hex("").unwrap(), Vec::<u8>::new());
        assert_eq!(parse_hex("00fFa0").unwrap(), vec![0, 0xff, 0xa0]);
        assert!(parse_hex("+f").is_err());
        assert!(parse_hex("é0").is_err());
        assert!(parse_hex("0x00").is_err());
        assert_eq!(to_hex(&[0, 0xab, 0x7f]), "00ab7f");
    }

    #[test]
    fn handler_names() {
        for ok in ["aarch64", "x86_64", "my-arm.v2"] {
            assert!(valid_handler_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "a\n"] {
            assert!(!valid_handler_name(bad), "{bad:?}");
        }
    }
}
