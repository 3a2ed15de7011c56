//! A streaming tar reader (ustar, GNU long names, PAX headers) with bounded memory.
//!
//! The `tar` crate reads GNU long-name and PAX records whole into memory whatever size their
//! header claims, so a hostile layer could make it allocate gigabytes; this reader caps them, and
//! hands each entry's content to the caller as a bounded reader that is skipped when unread.

use std::io::{self, Read};

/// Largest GNU long name / long link record accepted.
const MAX_LONG_NAME: u64 = 64 * 1024;
/// Largest PAX extended header accepted.
const MAX_PAX: u64 = 1024 * 1024;

/// Why a tar stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("tar header at byte {offset}: {message}")]
    Header { offset: u64, message: String },
    #[error("tar stream ends inside the entry {path:?} (at byte {offset})")]
    Truncated { path: String, offset: u64 },
    #[error("reading the tar stream at byte {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
}

/// Type of a tar entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Hardlink,
    /// Devices, FIFOs, sparse files and anything else.
    Other,
}

/// One entry's header, with its path normalised (no leading `./` or `/`, no trailing `/`).
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    /// Target of a symlink or hard link.
    pub link: Option<String>,
    /// Permission bits (including setuid, setgid and sticky), `0o7777` at most.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Modification time in seconds since the epoch (PAX fractions dropped, negatives as 0).
    pub mtime: u64,
    /// The header's type flag as written (`b'0'`, `b'3'` for a character device, …), for
    /// messages about entries of kind [`EntryKind::Other`].
    pub typeflag: u8,
}

/// Normalise an archive path: drop `.`, empty components and leading slashes.
pub fn normalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for part in path.split('/') {
        if part.is_empty() || part == "." {
            continue;
        }
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(part);
    }
    out
}

struct Counting<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Counting<R> {
    /// Fill `buf` completely; `Ok(false)` at a clean end of stream before the first byte.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let mut done = 0;
        while done < buf.len() {
            match self.inner.read(&mut buf[done..]) {
                Ok(0) if done == 0 => return Ok(false),
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    done += n;
                    self.pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn skip(&mut self, mut n: u64, scratch: &mut [u8]) -> io::Result<()> {
        while n > 0 {
            let want = usize::try_from(n).unwrap_or(usize::MAX).min(scratch.len());
            match self.inner.read(&mut scratch[..want]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(k) => {
                    n -= k as u64;
                    self.pos += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// An entry's content: at most `remaining` bytes of the stream.
pub struct Content<'a, R: Read> {
    src: &'a mut Counting<R>,
    remaining: u64,
}

impl<R: Read> Read for Content<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.src.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.remaining -= n as u64;
        self.src.pos += n as u64;
        Ok(n)
    }
}

fn octal(field: &[u8]) -> Option<u64> {
    // GNU base-256 for values that do not fit in octal.
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let s = field
        .iter()
        .skip_while(|b| **b == b' ')
        .take_while(|b| **b != 0 && **b != b' ');
    let mut v: u64 = 0;
    let mut any = false;
    for &b in s {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
        any = true;
    }
    if any || field.iter().all(|b| *b == 0 || *b == b' ') {
        Some(v)
    } else {
        None
    }
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn checksum_ok(h: &[u8; 512]) -> bool {
    let Some(stored) = octal(&h[148..156]) else {
        return false;
    };
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(b)
            }
        })
        .sum();
    // Some old writers summed signed bytes.
    let signed: i64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                i64::from(b' ')
            } else {
                i64::from(b as i8)
            }
        })
        .sum();
    stored == sum || i64::try_from(stored).is_ok_and(|s| s == signed)
}

/// What PAX records override in the next entry's header.
#[derive(Default)]
struct Pax {
    path: Option<String>,
    link: Option<String>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<u64>,
}

/// PAX records "LEN key=value\n": the path, linkpath, size, uid, gid and mtime overrides.
fn parse_pax(data: &[u8], pax: &mut Pax) {
    let number = |v: &[u8]| {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
    };
    let mut rest = data;
    while !rest.is_empty() {
        let Some(sp) = rest.iter().position(|&b| b == b' ') else {
            return;
        };
        let Some(len) = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            return;
        };
        if len <= sp + 1 || len > rest.len() {
            return;
        }
        let rec = &rest[sp + 1..len];
        let rec = rec.strip_suffix(b"\n").unwrap_or(rec);
        if let Some(eq) = rec.iter().position(|&b| b == b'=') {
            let (k, v) = (&rec[..eq], &rec[eq + 1..]);
            match k {
                b"path" => pax.path = Some(text(v)),
                b"linkpath" => pax.link = Some(text(v)),
                b"size" => pax.size = number(v),
                b"uid" => pax.uid = number(v),
                b"gid" => pax.gid = number(v),
                // "1700000000.123456789"; before the epoch ("-1.5") counts as 0.
                b"mtime" => {
                    let whole = v.split(|&b| b == b'.').next().unwrap_or(v);
                    pax.mtime = if whole.starts_with(b"-") {
                        Some(0)
                    } else {
                        number(whole)
                    };
                }
                _ => {}
            }
        }
        rest = &rest[len..];
    }
}

fn padded(size: u64) -> u64 {
    size.div_ceil(512).saturating_mul(512)
}

/// Read a tar stream, calling `visit` with each entry and a reader over its content. Content the
/// visitor leaves unread is skipped. Stops at the end-of-archive block or the end of the stream.
/// Returns the number of entries.
pub fn read_tar<R: Read>(
    reader: R,
    visit: &mut dyn FnMut(&Entry, &mut dyn Read) -> io::Result<()>,
) -> Result<u64, TarError> {
    let mut src = Counting {
        inner: reader,
        pos: 0,
    };
    let mut scratch = vec![0u8; 64 * 1024];
    let mut header = [0u8; 512];
    let mut long_name: Option<String> = None;
    let mut long_link: Option<String> = None;
    let mut pax = Pax::default();
    let mut count = 0u64;
    loop {
        let offset = src.pos;
        match src.fill(&mut header) {
            Ok(true) => {}
            Ok(false) => return Ok(count),
            Err(source) => return Err(TarError::Io { offset, source }),
        }
        if header.iter().all(|&b| b == 0) {
            return Ok(count);
        }
        let herr = |message: String| TarError::Header { offset, message };
        if !checksum_ok(&header) {
            return Err(herr("bad checksum: not a tar archive, or damaged".into()));
        }
        let size = octal(&header[124..136]).ok_or_else(|| {
            herr(format!(
                "bad size field {:?}",
                text(cstr(&header[124..136]))
            ))
        })?;
        let typeflag = header[156];
        let eof = |path: &str, offset| TarError::Truncated {
            path: path.to_string(),
            offset,
        };
        // Records that describe the next entry.
        if matches!(typeflag, b'L' | b'K' | b'x' | b'g') {
            let max = if matches!(typeflag, b'x' | b'g') {
                MAX_PAX
            } else {
                MAX_LONG_NAME
            };
            if size > max {
                return Err(herr(format!(
                    "extension record of {size} bytes is larger than the {max} accepted"
                )));
            }
            let mut data = vec![0u8; size as usize];
            src.fill(&mut data)
                .map_err(|_| eof("(extension record)", src.pos))?;
            src.skip(padded(size) - size, &mut scratch)
                .map_err(|_| eof("(extension record)", src.pos))?;
            match typeflag {
                b'L' => long_name = Some(text(cstr(&data))),
                b'K' => long_link = Some(text(cstr(&data))),
                b'x' => parse_pax(&data, &mut pax),
                _ => {}
            }
            continue;
        }
        let ustar = &header[257..263] == b"ustar\0";
        let name = match (pax.path.take(), long_name.take()) {
            (Some(p), _) | (None, Some(p)) => p,
            _ => {
                let base = text(cstr(&header[0..100]));
                let prefix = if ustar {
                    text(cstr(&header[345..500]))
                } else {
                    String::new()
                };
                if prefix.is_empty() {
                    base
                } else {
                    format!("{prefix}/{base}")
                }
            }
        };
        let link = match (pax.link.take(), long_link.take()) {
            (Some(l), _) | (None, Some(l)) => Some(l),
            _ => {
                let l = cstr(&header[157..257]);
                (!l.is_empty()).then(|| text(l))
            }
        };
        let size = pax.size.take().unwrap_or(size);
        let mode = octal(&header[100..108]).unwrap_or(0o644) as u32 & 0o7777;
        let uid = pax
            .uid
            .take()
            .or_else(|| octal(&header[108..116]))
            .unwrap_or(0);
        let gid = pax
            .gid
            .take()
            .or_else(|| octal(&header[116..124]))
            .unwrap_or(0);
        let mtime = pax
            .mtime
            .take()
            .or_else(|| octal(&header[136..148]))
            .unwrap_or(0);
        let kind = match typeflag {
            b'0' | 0 | b'7' => {
                if name.ends_with('/') {
                    EntryKind::Dir
                } else {
                    EntryKind::File
                }
            }
            b'1' => EntryKind::Hardlink,
            b'2' => EntryKind::Symlink,
            b'5' => EntryKind::Dir,
            _ => EntryKind::Other,
        };
        // Links, directories and devices carry no content whatever their size field says,
        // except in odd archives; skip by the size field either way.
        let entry = Entry {
            path: normalize(&name),
            kind,
            size,
            link: link.filter(|_| matches!(kind, EntryKind::Symlink | EntryKind::Hardlink)),
            mode,
            uid,
            gid,
            mtime,
            typeflag,
        };
        count += 1;
        let mut content = Content {
            src: &mut src,
            remaining: if kind == EntryKind::File { size } else { 0 },
        };
        let r = visit(&entry, &mut content);
        let left = content.remaining;
        if let Err(e) = r {
            return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                eof(&entry.path, src.pos)
            } else {
                TarError::Io {
                    offset: src.pos,
                    source: e,
                }
            });
        }
        let skip = if kind == EntryKind::File {
            left + (padded(size) - size)
        } else {
            padded(size)
        };
        src.skip(skip, &mut scratch)
            .map_err(|_| eof(&entry.path, src.pos))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(data: &[u8]) -> Result<Vec<(String, EntryKind, Vec<u8>)>, TarError> {
        let mut out = Vec::new();
        read_tar(data, &mut |e, r| {
            let mut b = Vec::new();
            if e.path.ends_with("read") {
                r.read_to_end(&mut b)?;
            }
            out.push((e.path.clone(), e.kind, b));
            Ok(())
        })?;
        Ok(out)
    }

    fn archive() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o755);
        h.set_cksum();
        b.append_data(&mut h, "./bin/read", &b"hello"[..]).unwrap();
        let long = format!("usr/{}/skip", "x".repeat(150));
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "bin/sh", "busybox").unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        b.append_data(&mut h, "etc/", &[][..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn reads_entries_and_long_names() {
        let got = collect(&archive()).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].0, "bin/read");
        assert_eq!(got[0].2, b"hello");
        assert!(got[1].0.starts_with("usr/xxxx") && got[1].0.ends_with("/skip"));
        assert_eq!(got[2].1, EntryKind::Symlink);
        assert_eq!(got[3], ("etc".to_string(), EntryKind::Dir, vec![]));
    }

    #[test]
    fn pax_overrides_path() {
        let mut pax = Vec::new();
        for rec in [
            "path=very/long/pax/name\n",
            "mtime=1700000000.25\n",
            "uid=70000\n",
        ] {
            let len = rec.len() + 3; // "NN " prefix
            pax.extend_from_slice(format!("{len} {rec}").as_bytes());
        }
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(pax.len() as u64);
        b.append_data(&mut h, "PaxHeader", &pax[..]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(1);
        h.set_mode(0o4755);
        h.set_gid(7);
        b.append_data(&mut h, "short", &b"z"[..]).unwrap();
        let data = b.into_inner().unwrap();
        let got = collect(&data).unwrap();
        assert_eq!(got[0].0, "very/long/pax/name");
        let mut entries = Vec::new();
        read_tar(&data[..], &mut |e, _| {
            entries.push(e.clone());
            Ok(())
        })
        .unwrap();
        let e = &entries[0];
        assert_eq!(
            (e.mode, e.uid, e.gid, e.mtime),
            (0o4755, 70000, 7, 1700000000)
        );
        assert_eq!((e.kind, e.typeflag), (EntryKind::File, 0));
    }

    #[test]
    fn truncation_and_garbage_are_errors() {
        let a = archive();
        for n in [1, 100, 511, 513, 600, 1100] {
            assert!(collect(&a[..n]).is_err(), "{n}");
        }
        let mut bad = a.clone();
        bad[0] ^= 0x55;
        assert!(collect(&bad).unwrap_err().to_string().contains("checksum"));
        assert!(collect(&[]).unwrap().is_empty());
    }

    #[test]
    fn huge_long_name_is_refused_not_allocated() {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(1 << 40);
        h.set_cksum();
        let mut data = h.as_bytes().to_vec();
        data.extend_from_slice(&[0u8; 512]);
        let e = collect(&data).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn octal_fields() {
        assert_eq!(octal(b"0000644\0"), Some(0o644));
        assert_eq!(octal(b"  755 \0"), Some(0o755));
        assert_eq!(octal(b"\0\0\0"), Some(0));
        assert_eq!(octal(b"89"), None);
        assert_eq!(octal(&[0x80, 0, 0, 0, 0, 0, 1, 0]), Some(256));
        assert_eq!(octal(&[0xff; 12]), None);
        assert_eq!(normalize("./a//b/./c/"), "a/b/c");
        assert_eq!(normalize("/"), "");
    }
}
