//! rcross's tar reader (`walk::tar`) must see the entries Docker sees.
//!
//! moby and containerd unpack layers with Go's archive/tar; a reader that disagrees with it about
//! where one entry ends and the next begins lets a layer show rcross one file list and Docker
//! another. Every archive of the corpus below is built here byte by byte, and the entries rcross
//! reads are compared, entry for entry (path, type, content size, link target, content digest),
//! with the ones Python's `tarfile` lists. Python agrees with Go on most of them; where it does
//! not, the case is `GoDiffers` (rcross lists what Go lists) or `Refused` (Go refuses the archive,
//! so Docker fails the layer, and rcross must error too), and says why, citing Go's
//! `archive/tar/reader.go`. The Go listings written here were checked against Go 1.19's reader.
//!
//! The second test is the exploit that made this a rule: a directory entry with a non-zero size
//! whose "data" is a whole x86-64 program, which `rcross verify` must now see.

use rcross::walk::tar::{read_tar, TarEntryKind};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fs;
use std::path::Path;
use std::process::Command;

const BLOCK: usize = 512;

#[derive(Clone, Copy, PartialEq)]
enum Fmt {
    Ustar,
    Gnu,
    V7,
}

fn put_octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    assert_eq!(s.len(), digits, "{v} does not fit the field");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

/// A header block with the checksum left to [`seal`].
fn header(name: &str, typeflag: u8, size: u64, link: &str, fmt: Fmt) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    put_octal(&mut h[100..108], 0o644);
    put_octal(&mut h[108..116], 0);
    put_octal(&mut h[116..124], 0);
    put_octal(&mut h[124..136], size);
    put_octal(&mut h[136..148], 1_700_000_000);
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    match fmt {
        Fmt::Ustar => {
            h[257..263].copy_from_slice(b"ustar\0");
            h[263..265].copy_from_slice(b"00");
        }
        Fmt::Gnu => {
            h[257..263].copy_from_slice(b"ustar ");
            h[263..265].copy_from_slice(b" \0");
        }
        Fmt::V7 => {}
    }
    seal(&mut h);
    h
}

/// Recompute the checksum after a header was patched.
fn seal(h: &mut [u8; BLOCK]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

fn pad(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(data.len().div_ceil(BLOCK) * BLOCK, 0);
    v
}

/// A tar stream under construction.
#[derive(Default, Clone)]
struct T(Vec<u8>);

impl T {
    fn block(mut self, h: [u8; BLOCK]) -> T {
        self.0.extend_from_slice(&h);
        self
    }
    fn data(mut self, d: &[u8]) -> T {
        self.0.extend_from_slice(&pad(d));
        self
    }
    /// A header whose size field is the data's length, and the data.
    fn entry(self, name: &str, typeflag: u8, link: &str, data: &[u8]) -> T {
        self.block(header(name, typeflag, data.len() as u64, link, Fmt::Ustar))
            .data(data)
    }
    fn file(self, name: &str, data: &[u8]) -> T {
        self.entry(name, b'0', "", data)
    }
    /// A GNU `L` (long name) or `K` (long link) record.
    fn gnu_long(self, typeflag: u8, value: &str) -> T {
        let mut v = value.as_bytes().to_vec();
        v.push(0);
        self.block(header(
            "././@LongLink",
            typeflag,
            v.len() as u64,
            "",
            Fmt::Gnu,
        ))
        .data(&v)
    }
    /// A PAX extended (`x`) or global (`g`) header with these records.
    fn pax(self, typeflag: u8, records: &[(&str, &str)]) -> T {
        let mut body = Vec::new();
        for (k, v) in records {
            body.extend_from_slice(&pax_record(k, v));
        }
        self.block(header(
            "PaxHeaders/x",
            typeflag,
            body.len() as u64,
            "",
            Fmt::Ustar,
        ))
        .data(&body)
    }
    fn end(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0u8; 2 * BLOCK]);
        self.0
    }
}

/// "LEN key=value\n", LEN counting itself.
fn pax_record(k: &str, v: &str) -> Vec<u8> {
    let body = format!(" {k}={v}\n");
    let mut len = body.len() + 1;
    while format!("{len}").len() + body.len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

/// Bytes that read as a complete entry `name` (header and content) when a reader takes them
/// for headers; `blocks` long at least.
fn hidden_entry(name: &str, content: &[u8], blocks: usize) -> Vec<u8> {
    let mut v = T::default().file(name, content).0;
    assert!(v.len() <= blocks * BLOCK);
    v.resize(blocks * BLOCK, 0);
    v
}

/// One entry as both readers report it: (path, type, content size, link target, content digest).
#[derive(Debug, Clone, PartialEq)]
struct E {
    path: String,
    kind: String,
    size: u64,
    link: Option<String>,
    data: Option<String>,
}

/// A reader's view of an archive: its entries, and the error that stopped it, if any.
#[derive(Debug, Clone, PartialEq)]
struct Listing {
    entries: Vec<E>,
    error: Option<String>,
}

fn sha(d: &[u8]) -> String {
    Sha256::digest(d)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn kind_name(kind: TarEntryKind, typeflag: u8) -> String {
    match (kind, typeflag) {
        (TarEntryKind::File, _) => "file".into(),
        (TarEntryKind::Dir, _) => "dir".into(),
        (TarEntryKind::Symlink, _) => "symlink".into(),
        (TarEntryKind::Hardlink, _) => "hardlink".into(),
        (TarEntryKind::Other, b'3') => "char".into(),
        (TarEntryKind::Other, b'4') => "block".into(),
        (TarEntryKind::Other, b'6') => "fifo".into(),
        (TarEntryKind::Other, t) => format!("other:{}", t as char),
    }
}

fn rcross_list(data: &[u8]) -> Listing {
    let mut entries = Vec::new();
    let r = read_tar(data, &mut |e, content| {
        let mut bytes = Vec::new();
        content.read_to_end(&mut bytes)?;
        let mut kind = kind_name(e.kind, e.typeflag);
        if bytes.len() as u64 != e.size {
            // Shown in the comparison rather than panicking inside the reader.
            kind = format!("{kind} with {} content bytes", bytes.len());
        }
        entries.push(E {
            path: e.path.clone(),
            data: kind.starts_with("file").then(|| sha(&bytes)),
            kind,
            size: e.size,
            link: e.link.clone(),
        });
        Ok(())
    });
    Listing {
        entries,
        error: r.err().map(|e| e.to_string()),
    }
}

/// Lists every archive given with Python's tarfile, as JSON. Paths are normalised the way
/// `walk::tar::normalize` does (no `.` or empty components, no leading or trailing `/`), and
/// header-only types (1–6) report 0 content bytes, as rcross's `Entry::size` does: what is
/// compared is where entries are and what they hold, not a size field both readers ignore.
const PY_LISTER: &str = r#"
import hashlib, json, sys, tarfile
HEADER_ONLY = {b"1", b"2", b"3", b"4", b"5", b"6"}
NAMES = {b"5": "dir", b"2": "symlink", b"1": "hardlink", b"3": "char", b"4": "block", b"6": "fifo"}
def norm(p):
    return "/".join(c for c in p.split("/") if c not in ("", "."))
out = []
for path in sys.argv[1:]:
    entries, error = [], None
    try:
        with tarfile.open(path, "r:") as tf:
            while True:
                ti = tf.next()
                if ti is None:
                    break
                kind = "file" if ti.isreg() else NAMES.get(ti.type, "other:" + ti.type.decode("latin-1"))
                data = None
                if kind == "file" and ti.size <= 1 << 26:
                    data = hashlib.sha256(tf.extractfile(ti).read()).hexdigest()
                elif kind == "file":
                    data = "(too large to read)"
                entries.append({
                    "path": norm(ti.name),
                    "kind": kind,
                    "size": 0 if ti.type in HEADER_ONLY else ti.size,
                    "link": ti.linkname if ti.type in (b"1", b"2") else None,
                    "data": data,
                })
    except Exception as e:
        error = "%s: %s" % (type(e).__name__, e)
    out.append({"entries": entries, "error": error})
print(json.dumps(out))
"#;

fn python_list(dir: &Path, archives: &[(&str, &[u8])]) -> Vec<Listing> {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(PY_LISTER);
    for (name, data) in archives {
        let p = dir.join(format!("{name}.tar"));
        fs::write(&p, data).unwrap();
        cmd.arg(p);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "python3 is needed to list the corpus with tarfile ({e}); install the python3 package"
        )
    });
    assert!(
        out.status.success(),
        "python3 lister failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| Listing {
            entries: l["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| E {
                    path: e["path"].as_str().unwrap().into(),
                    kind: e["kind"].as_str().unwrap().into(),
                    size: e["size"].as_u64().unwrap(),
                    link: e["link"].as_str().map(String::from),
                    data: e["data"].as_str().map(String::from),
                })
                .collect(),
            error: l["error"].as_str().map(String::from),
        })
        .collect()
}

/// What rcross must do with one archive of the corpus.
enum Want {
    /// List what Python lists, and fail where Python fails (after the same entries).
    Same,
    /// Go's archive/tar (what Docker uses) and Python disagree: rcross lists what Go lists.
    /// `python` is what Python lists, kept to prove the difference is real.
    GoDiffers {
        why: &'static str,
        go: Vec<(&'static str, &'static str)>,
        python: Vec<(&'static str, &'static str)>,
    },
    /// rcross refuses the archive (Python lists it): because Go does too, or deliberately (a
    /// bound). It must error after listing no more than Python did, never list something else.
    /// The error must contain `error`.
    Refused {
        why: &'static str,
        error: &'static str,
    },
}

fn e(path: &str, kind: &str, size: u64, link: Option<&str>, data: Option<&[u8]>) -> E {
    E {
        path: path.into(),
        kind: kind.into(),
        size,
        link: link.map(String::from),
        data: data.map(sha),
    }
}

/// One archive of the corpus.
struct Case {
    name: String,
    tar: Vec<u8>,
    want: Want,
    /// The entries Python must list, when written out: a hand-made check that the harness is
    /// not comparing two empty lists.
    python: Option<Vec<E>>,
}

fn case(name: &str, tar: Vec<u8>, want: Want, python: Option<Vec<E>>) -> Case {
    Case {
        name: name.into(),
        tar,
        want,
        python,
    }
}

fn corpus() -> Vec<Case> {
    let mut c = Vec::new();
    let evil = b"\x7fELF pretend program";
    // Types 1–6 are header-only: a size on them is ignored and what follows is the next header.
    for (t, name, kind, link) in [
        (b'1', "hard", "hardlink", Some("target")),
        (b'2', "sym", "symlink", Some("target")),
        (b'3', "chr", "char", None),
        (b'4', "blk", "block", None),
        (b'5', "dir", "dir", None),
        (b'6', "fifo", "fifo", None),
    ] {
        let mut h = header(name, t, 2 * BLOCK as u64, link.unwrap_or(""), Fmt::Ustar);
        if t == b'5' {
            h[..4].copy_from_slice(b"dir/");
            seal(&mut h);
        }
        let tar = T::default()
            .file("target", b"t")
            .block(h)
            .data(&hidden_entry("bin/evil", evil, 2))
            .file("after", b"a")
            .end();
        let want = vec![
            e("target", "file", 1, None, Some(b"t")),
            e(name, kind, 0, link, None),
            e("bin/evil", "file", evil.len() as u64, None, Some(evil)),
            e("after", "file", 1, None, Some(b"a")),
        ];
        c.push(case(
            &format!("header_only_{kind}"),
            tar,
            Want::Same,
            Some(want),
        ));
    }
    // A regular file whose name ends in '/' is still a regular file with content (typeflag '0');
    // only the old '\0' typeflag with a trailing slash means a directory (then header-only).
    let hidden = hidden_entry("bin/evil", evil, 2);
    c.push(case(
        "trailing_slash_regular_file",
        T::default()
            .entry("x/", b'0', "", &hidden)
            .file("after", b"a")
            .end(),
        Want::Same,
        Some(vec![
            e("x", "file", 1024, None, Some(&hidden)),
            e("after", "file", 1, None, Some(b"a")),
        ]),
    ));
    c.push(case(
        "trailing_slash_v7_directory",
        T::default()
            .block(header("v7dir/", 0, 2 * BLOCK as u64, "", Fmt::V7))
            .data(&hidden)
            .end(),
        Want::Same,
        Some(vec![
            e("v7dir", "dir", 0, None, None),
            e("bin/evil", "file", evil.len() as u64, None, Some(evil)),
        ]),
    ));
    c.push(case(
        "dot_slash_and_trailing_slash_names",
        T::default()
            .entry("./", b'5', "", b"")
            .entry("./etc/", b'5', "", b"")
            .file("./etc/passwd", b"root")
            .entry("./etc//ssl/./", b'5', "", b"")
            .entry("./lnk", b'2', "./etc/passwd", b"")
            .end(),
        Want::Same,
        Some(vec![
            e("", "dir", 0, None, None),
            e("etc", "dir", 0, None, None),
            e("etc/passwd", "file", 4, None, Some(b"root")),
            e("etc/ssl", "dir", 0, None, None),
            e("lnk", "symlink", 0, Some("./etc/passwd"), None),
        ]),
    ));
    c.push(case(
        "duplicate_entries",
        T::default()
            .file("a", b"first")
            .file("a", b"second one")
            .entry("a", b'2', "b", b"")
            .end(),
        Want::Same,
        Some(vec![
            e("a", "file", 5, None, Some(b"first")),
            e("a", "file", 10, None, Some(b"second one")),
            e("a", "symlink", 0, Some("b"), None),
        ]),
    ));
    // PAX overrides: path, linkpath, and a size larger than the header's (the data follows the
    // PAX size, not the header's 0); a size on a directory is still ignored.
    let long = format!("pax/{}/name", "p".repeat(200));
    let body = vec![b'z'; 700];
    c.push(case(
        "pax_overrides",
        T::default()
            .pax(b'x', &[("path", &long), ("size", "700")])
            .block(header("short", b'0', 0, "", Fmt::Ustar))
            .data(&body)
            .pax(b'x', &[("linkpath", &format!("/{long}"))])
            .entry("sym", b'2', "shortlink", b"")
            .pax(b'x', &[("size", "1024")])
            .block(header("d/", b'5', 0, "", Fmt::Ustar))
            .file("after", b"a")
            .end(),
        Want::Same,
        Some(vec![
            e(&long, "file", 700, None, Some(&body)),
            e("sym", "symlink", 0, Some(&format!("/{long}")), None),
            e("d", "dir", 0, None, None),
            e("after", "file", 1, None, Some(b"a")),
        ]),
    ));
    let long_name = format!("usr/{}/file", "n".repeat(300));
    let long_link = format!("/opt/{}/target", "k".repeat(300));
    c.push(case(
        "gnu_long_name_and_link",
        T::default()
            .gnu_long(b'L', &long_name)
            .block(header("usr/nnnn", b'0', 3, "", Fmt::Gnu))
            .data(b"abc")
            .gnu_long(b'K', &long_link)
            .block(header("s", b'2', 0, "truncated", Fmt::Gnu))
            .gnu_long(b'L', "hard/long")
            .gnu_long(b'K', &long_name)
            .block(header("h", b'1', 0, "x", Fmt::Gnu))
            .end(),
        Want::Same,
        Some(vec![
            e(&long_name, "file", 3, None, Some(b"abc")),
            e("s", "symlink", 0, Some(&long_link), None),
            e("hard/long", "hardlink", 0, Some(&long_name), None),
        ]),
    ));
    // GNU old sparse: 4 map entries in the header, `isextended`, then extension blocks (before
    // the data and not counted in the size field) with more; the entry's size is the real size.
    {
        let frags: Vec<(u64, u64)> = (0..7).map(|i| (i * 3000, 100 + i)).collect();
        let real = 25_000u64;
        let stored: u64 = frags.iter().map(|f| f.1).sum();
        let mut h = header("sparse", b'S', stored, "", Fmt::Gnu);
        for (i, (off, len)) in frags.iter().take(4).enumerate() {
            let p = 386 + i * 24;
            put_octal(&mut h[p..p + 12], *off);
            put_octal(&mut h[p + 12..p + 24], *len);
        }
        h[482] = 1;
        put_octal(&mut h[483..495], real);
        seal(&mut h);
        let mut ext1 = [0u8; BLOCK];
        for (i, (off, len)) in frags[4..6].iter().enumerate() {
            put_octal(&mut ext1[i * 24..i * 24 + 12], *off);
            put_octal(&mut ext1[i * 24 + 12..i * 24 + 24], *len);
        }
        ext1[504] = 1;
        let mut ext2 = [0u8; BLOCK];
        put_octal(&mut ext2[0..12], frags[6].0);
        put_octal(&mut ext2[12..24], frags[6].1);
        let mut stream = Vec::new();
        let mut logical = vec![0u8; real as usize];
        for (i, (off, len)) in frags.iter().enumerate() {
            let piece: Vec<u8> = (0..*len).map(|j| (i as u8 + 1) ^ (j as u8)).collect();
            logical[*off as usize..(*off + *len) as usize].copy_from_slice(&piece);
            stream.extend_from_slice(&piece);
        }
        c.push(case(
            "gnu_old_sparse_isextended",
            T::default()
                .block(h)
                .block(ext1)
                .block(ext2)
                .data(&stream)
                .file("after", b"a")
                .end(),
            Want::Same,
            Some(vec![
                e("sparse", "file", real, None, Some(&logical)),
                e("after", "file", 1, None, Some(b"a")),
            ]),
        ));
    }
    // Base-256 sizes (GNU): 0x80 then the big-endian value.
    {
        let body = vec![b'b'; 1300];
        let mut h = header("big", b'0', 0, "", Fmt::Gnu);
        h[124..136].fill(0);
        h[124] = 0x80;
        h[134..136].copy_from_slice(&1300u16.to_be_bytes());
        seal(&mut h);
        c.push(case(
            "base256_size",
            T::default().block(h).data(&body).file("after", b"a").end(),
            Want::Same,
            Some(vec![
                e("big", "file", 1300, None, Some(&body)),
                e("after", "file", 1, None, Some(b"a")),
            ]),
        ));
    }
    // Extension records cut off at the end of the archive: every reader errors.
    for (name, t) in [("cut_long_name", b'L'), ("cut_pax", b'x')] {
        let mut tar = T::default()
            .file("first", b"1")
            .block(header("././@LongLink", t, 4000, "", Fmt::Gnu))
            .0;
        tar.extend_from_slice(&[b'9'; 700]);
        c.push(case(
            name,
            tar,
            Want::Same,
            Some(vec![e("first", "file", 1, None, Some(b"1"))]),
        ));
    }
    // GNU headers keep access and change times where ustar has its prefix; Go (for archives
    // of its own writer before 1.8) still takes that field as a prefix when a time does not
    // parse, which is also what Python does with any non-empty prefix.
    let gnu_with_prefix = |field: &[u8]| {
        let mut h = header("big", b'0', 1, "", Fmt::Gnu);
        h[345..345 + field.len()].copy_from_slice(field);
        seal(&mut h);
        T::default().block(h).data(b"b").end()
    };
    c.push(case(
        "gnu_header_prefix_where_times_do_not_parse",
        gnu_with_prefix(b"usr/lib"),
        Want::Same,
        Some(vec![e("usr/lib/big", "file", 1, None, Some(b"b"))]),
    ));
    c.push(case(
        "gnu_header_times_that_parse_are_not_a_prefix",
        gnu_with_prefix(b"0007"),
        Want::GoDiffers {
            why: "in a GNU header Go reads 345..369 as access and change times, and only when \
                  one fails to parse as a ustar prefix (golang.org/issues/12594); Python \
                  prepends any non-empty prefix field",
            go: vec![("big", "file")],
            python: vec![("0007/big", "file")],
        },
        None,
    ));
    // Where Go and Python disagree, Docker follows Go.
    c.push(case(
        "gnu_long_name_beats_pax_path",
        T::default()
            .pax(b'x', &[("path", "from/pax")])
            .gnu_long(b'L', "from/gnu")
            .block(header("short", b'0', 1, "", Fmt::Gnu))
            .data(b"x")
            .end(),
        Want::GoDiffers {
            why: "Go's Reader.next merges the PAX records first and then lets a GNU long name \
                  replace the name; Python applies the outer (first) record last",
            go: vec![("from/gnu", "file")],
            python: vec![("from/pax", "file")],
        },
        None,
    ));
    c.push(case(
        "two_gnu_long_names_last_wins",
        T::default()
            .gnu_long(b'L', "first/name")
            .gnu_long(b'L', "second/name")
            .block(header("short", b'0', 1, "", Fmt::Gnu))
            .data(b"x")
            .end(),
        Want::GoDiffers {
            why: "Go keeps the last long name read before the entry; Python's recursion lets the \
                  first one win",
            go: vec![("second/name", "file")],
            python: vec![("first/name", "file")],
        },
        None,
    ));
    c.push(case(
        "two_pax_headers_second_replaces_first",
        T::default()
            .pax(b'x', &[("path", "first/pax"), ("linkpath", "first/link")])
            .pax(b'x', &[("path", "second/pax")])
            .entry("short", b'2', "hdrlink", b"")
            .end(),
        Want::GoDiffers {
            why: "Go replaces the pending PAX records with each extended header it reads; Python \
                  merges them with the first header's records winning",
            go: vec![("second/pax", "symlink")],
            python: vec![("first/pax", "symlink")],
        },
        None,
    ));
    c.push(case(
        "global_pax_header_is_not_applied",
        T::default()
            .pax(b'g', &[("path", "global/name")])
            .file("one", b"1")
            .file("two", b"2")
            .end(),
        Want::GoDiffers {
            why: "Go returns a global header as an entry of its own (typeflag 'g', which moby and \
                  containerd skip) and never merges it into later entries; Python renames every \
                  later entry",
            go: vec![("one", "file"), ("two", "file")],
            python: vec![("global/name", "file"), ("global/name", "file")],
        },
        None,
    ));
    c.push(case(
        "v7_regular_with_long_directory_name",
        T::default()
            .gnu_long(b'L', "longdir/")
            .block(header("longdir", 0, 2 * BLOCK as u64, "", Fmt::Gnu))
            .data(&hidden)
            .end(),
        Want::GoDiffers {
            why:
                "Go turns a '\\0' typeflag into a directory when the final name (after a GNU long \
                  name) ends in '/', and directories carry no data, so what follows is the next \
                  header; Python looks only at the header's own name and skips it as file data",
            go: vec![("longdir", "dir"), ("bin/evil", "file")],
            python: vec![("longdir", "file")],
        },
        None,
    ));
    {
        let mut tar = T::default().file("one", b"1").0;
        tar.extend_from_slice(&[0u8; BLOCK]);
        tar.extend_from_slice(&T::default().file("hidden", b"h").end());
        c.push(case(
            "entries_after_one_zero_block",
            tar,
            Want::Refused {
                why: "Go reads the block after a zero block and fails with ErrHeader unless it \
                      is zero too or the stream ends, so Docker refuses the layer; Python stops \
                      at the first zero block. rcross errors as Go does",
                error: "after a zero block",
            },
            Some(vec![e("one", "file", 1, None, Some(b"1"))]),
        ));
    }
    // A NUL byte in a PAX value is refused only in names (Go's validPAXRecord).
    c.push(case(
        "pax_nul_in_a_value_that_is_not_a_name",
        T::default()
            .pax(b'x', &[("comment", "a\0b"), ("path", "named")])
            .file("short", b"x")
            .end(),
        Want::Same,
        Some(vec![e("named", "file", 1, None, Some(b"x"))]),
    ));
    // PAX records Go refuses (ErrHeader, so Docker fails the layer) and Python takes.
    {
        let mut h = header("PaxHeaders/x", b'x', 12, "", Fmt::Ustar);
        seal(&mut h);
        c.push(case(
            "pax_record_without_newline",
            T::default()
                .block(h)
                .data(b"12 path=abc!")
                .file("short", b"x")
                .end(),
            Want::Refused {
                why: "Go's parsePAXRecord fails when a record does not end in a newline; Python \
                      takes the value anyway",
                error: "no newline at its end",
            },
            Some(vec![e("abc", "file", 1, None, Some(b"x"))]),
        ));
    }
    c.push(case(
        "pax_size_not_a_number",
        T::default()
            .pax(b'x', &[("size", "12x")])
            .file("short", b"")
            .end(),
        Want::Refused {
            why: "Go's mergePAX fails on a size that is not a number; Python takes it as 0",
            error: "is not a number",
        },
        Some(vec![e("short", "file", 0, None, Some(b""))]),
    ));
    // GNU sparse files in PAX format: 1.0 (the map heads the data; what GNU tar --sparse
    // --format=posix writes), 0.1 (the map in one record) and 0.0 (offset/numbytes records).
    // The entry takes GNU.sparse.name and the real size, and its content is expanded.
    {
        let data: Vec<u8> = (0..150u8).collect();
        let mut logical = vec![0u8; 3000];
        logical[..100].copy_from_slice(&data[..100]);
        logical[2000..2050].copy_from_slice(&data[100..]);
        let mut stored = pad(b"2\n0\n100\n2000\n50\n");
        stored.extend_from_slice(&data);
        let want = Some(vec![
            e("sparse/real", "file", 3000, None, Some(&logical)),
            e("after", "file", 1, None, Some(b"a")),
        ]);
        c.push(case(
            "pax_sparse_1_0",
            T::default()
                .pax(
                    b'x',
                    &[
                        ("GNU.sparse.major", "1"),
                        ("GNU.sparse.minor", "0"),
                        ("GNU.sparse.name", "sparse/real"),
                        ("GNU.sparse.realsize", "3000"),
                    ],
                )
                .file("GNUSparseFile.0/real", &stored)
                .file("after", b"a")
                .end(),
            Want::Same,
            want.clone(),
        ));
        c.push(case(
            "pax_sparse_0_1",
            T::default()
                .pax(
                    b'x',
                    &[
                        ("GNU.sparse.major", "0"),
                        ("GNU.sparse.minor", "1"),
                        ("GNU.sparse.name", "sparse/real"),
                        ("GNU.sparse.size", "3000"),
                        ("GNU.sparse.numblocks", "2"),
                        ("GNU.sparse.map", "0,100,2000,50"),
                    ],
                )
                .file("GNUSparseFile.0/real", &data)
                .file("after", b"a")
                .end(),
            Want::Same,
            want.clone(),
        ));
        c.push(case(
            "pax_sparse_0_0",
            T::default()
                .pax(
                    b'x',
                    &[
                        ("GNU.sparse.size", "3000"),
                        ("GNU.sparse.numblocks", "2"),
                        ("GNU.sparse.offset", "0"),
                        ("GNU.sparse.numbytes", "100"),
                        ("GNU.sparse.offset", "2000"),
                        ("GNU.sparse.numbytes", "50"),
                    ],
                )
                .file("sparse/real", &data)
                .file("after", b"a")
                .end(),
            Want::Same,
            want,
        ));
    }
    // Deliberate refusals: bounded extension records and sparse expansion.
    c.push(case(
        "sparse_file_of_a_terabyte_of_holes",
        T::default()
            .pax(
                b'x',
                &[
                    ("GNU.sparse.major", "0"),
                    ("GNU.sparse.minor", "1"),
                    ("GNU.sparse.size", "1099511627776"),
                    ("GNU.sparse.numblocks", "1"),
                    ("GNU.sparse.map", "0,1"),
                ],
            )
            .file("bomb", b"x")
            .end(),
        Want::Refused {
            why: "walk::tar caps the holes of one archive's sparse files at 1 GiB: expanded by \
                  an unpacker they are written as zeros, and these 2 KiB claim 1 TiB; Go and \
                  Python expand them",
            error: "holes add up to more than",
        },
        None,
    ));
    c.push(case(
        "long_name_over_64k",
        T::default()
            .gnu_long(b'L', &"n/".repeat(40_000))
            .file("short", b"x")
            .end(),
        Want::Refused {
            why: "walk::tar caps GNU long names at 64 KiB (Linux refuses paths over 4 KiB, so no \
                  engine could create the entry); Python reads any size",
            error: "larger than the 65536 accepted",
        },
        None,
    ));
    c.push(case(
        "pax_over_1m",
        T::default()
            .pax(b'x', &[("comment", &"c".repeat(1 << 20))])
            .file("short", b"x")
            .end(),
        Want::Refused {
            why: "PAX headers are capped at 1 MiB, Go's own limit (maxSpecialFileSize, \
                  ErrFieldTooLong); Python reads any size",
            error: "larger than the 1048576 accepted",
        },
        None,
    ));
    c
}

#[test]
fn rcross_lists_what_python_tarfile_and_go_list() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus();
    let archives: Vec<(&str, &[u8])> = corpus.iter().map(|c| (&*c.name, &*c.tar)).collect();
    let python = python_list(dir.path(), &archives);
    assert_eq!(python.len(), corpus.len());
    let mut failures = Vec::new();
    for (
        Case {
            name,
            tar,
            want,
            python: known,
        },
        py,
    ) in corpus.iter().zip(python)
    {
        let ours = rcross_list(tar);
        if let Some(known) = known {
            let got: Vec<E> = py.entries.clone();
            assert_eq!(
                &got, known,
                "{name}: Python's listing is not the one the test expects"
            );
        }
        match want {
            Want::Same => {
                let same_entries = ours.entries == py.entries;
                let same_outcome = ours.error.is_some() == py.error.is_some();
                if !same_entries || !same_outcome {
                    failures.push(format!(
                        "{name}: rcross {:?} (error {:?})\n   python {:?} (error {:?})",
                        ours.entries, ours.error, py.entries, py.error
                    ));
                }
            }
            Want::GoDiffers { why, go, python } => {
                let pick = |l: &Listing| -> Vec<(String, String)> {
                    l.entries
                        .iter()
                        .map(|e| (e.path.clone(), e.kind.clone()))
                        .collect()
                };
                let own = |v: &Vec<(&str, &str)>| -> Vec<(String, String)> {
                    v.iter()
                        .map(|(p, k)| (p.to_string(), k.to_string()))
                        .collect()
                };
                assert_eq!(
                    pick(&py),
                    own(python),
                    "{name}: Python no longer differs ({why})"
                );
                assert!(py.error.is_none(), "{name}: {:?}", py.error);
                if pick(&ours) != own(go) || ours.error.is_some() {
                    failures.push(format!(
                        "{name}: rcross {:?} (error {:?}), Go lists {go:?}: {why}",
                        pick(&ours),
                        ours.error
                    ));
                }
            }
            Want::Refused { why, error } => {
                assert!(
                    py.error.is_none(),
                    "{name}: Python refuses too: {:?}",
                    py.error
                );
                let prefix_ok = py.entries.starts_with(&ours.entries);
                match &ours.error {
                    Some(msg) if msg.contains(error) && prefix_ok => {}
                    _ => failures.push(format!(
                        "{name}: rcross must refuse ({why}) with an error containing {error:?}; \
                         it listed {:?} with error {:?}",
                        ours.entries, ours.error
                    )),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} archives read differently:\n{}",
        failures.len(),
        corpus.len(),
        failures.join("\n")
    );
}

/// A real x86-64 program to hide.
fn x86_64_program() -> Vec<u8> {
    let program = fs::read("/bin/true").unwrap_or_else(|e| {
        panic!(
            "/bin/true (an x86-64 ELF program from coreutils) is needed as the hidden program: {e}"
        )
    });
    assert_eq!(&program[..4], b"\x7fELF");
    assert_eq!(
        u16::from_le_bytes([program[18], program[19]]),
        0x3e,
        "/bin/true is not x86-64"
    );
    program
}

/// A layer whose directory entry `usr/` claims as "data" what is really a complete entry
/// `bin/evil` holding `program`.
fn evil_layer(program: &[u8]) -> Vec<u8> {
    let inner = T::default().file("bin/evil", program).0;
    T::default()
        .entry("etc/", b'5', "", b"")
        .block(header("usr/", b'5', inner.len() as u64, "", Fmt::Ustar))
        .data(&inner)
        .file("etc/hostname", b"box\n")
        .end()
}

/// The exploit: Docker (Go) unpacks the hidden `bin/evil`; verify must see it.
#[test]
fn a_program_hidden_in_a_directory_entry_is_verified() {
    let layer = evil_layer(&x86_64_program());
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("layer.tar");
    fs::write(&tar, &layer).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_rcross"))
        .args(["verify", "--platform", "linux/arm64"])
        .arg(&tar)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("bin/evil"), "{text}");
    assert!(text.contains("built for linux/amd64"), "{text}");

    // The same layer inside an OCI image layout.
    let oci = dir.path().join("oci");
    write_layout(&oci, &layer);
    let out = Command::new(env!("CARGO_BIN_EXE_rcross"))
        .args(["verify", "--platform", "linux/arm64"])
        .arg(format!("oci:{}", oci.display()))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("bin/evil"), "{text}");
}

fn blob(dir: &Path, data: &[u8]) -> String {
    let hex = sha(data);
    fs::write(dir.join("blobs/sha256").join(&hex), data).unwrap();
    format!("sha256:{hex}")
}

/// A one-platform (linux/arm64) OCI image layout with `layer` as its only, uncompressed layer.
fn write_layout(dir: &Path, layer: &[u8]) {
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let layer_digest = blob(dir, layer);
    let config = serde_json::json!({
        "architecture": "arm64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "config": {}
    })
    .to_string();
    let config_digest = blob(dir, config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len()
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len()
        }]
    })
    .to_string();
    let manifest_digest = blob(dir, manifest.as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": {"architecture": "arm64", "os": "linux"}
        }]
    })
    .to_string();
    fs::write(dir.join("index.json"), index).unwrap();
}

/// `docker ARGS`, failing the test when the CLI or the engine is missing.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "the docker CLI is needed to run the layer through Docker ({e}); install docker.io"
            )
        });
    assert!(
        out.status.success(),
        "docker {args:?} failed (tests/run.sh starts dockerd): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes what the test made in the engine, whatever happens.
struct Cleanup(Vec<Vec<String>>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for args in self.0.iter().rev() {
            let _ = Command::new("docker").args(args).output();
        }
    }
}

/// What the test above makes verify report is what the real Docker engine unpacks: the layer
/// imported as an image gives a container whose filesystem holds `bin/evil`, byte for byte.
#[test]
fn docker_unpacks_the_program_hidden_in_a_directory_entry() {
    let program = x86_64_program();
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("layer.tar");
    fs::write(&tar, evil_layer(&program)).unwrap();
    let image = format!("rcross-tar-differential:{}", std::process::id());
    let mut cleanup = Cleanup(Vec::new());
    docker(&["import", tar.to_str().unwrap(), &image]);
    cleanup.0.push(vec!["rmi".into(), image.clone()]);
    let container = docker(&["create", &image, "/bin/evil"]);
    cleanup.0.push(vec!["rm".into(), container.clone()]);
    let exported = dir.path().join("rootfs.tar");
    docker(&["export", "-o", exported.to_str().unwrap(), &container]);

    let mut archive = ::tar::Archive::new(fs::File::open(&exported).unwrap());
    let mut found = None;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("bin/evil") {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            found = Some(bytes);
        }
    }
    let found = found.expect("Docker's unpacked filesystem has no bin/evil");
    assert!(found == program, "bin/evil differs from the hidden program");
}
