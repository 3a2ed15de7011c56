//! A streaming tar reader (ustar, PAX, GNU long names, GNU sparse files old and PAX) with bounded
//! memory, which finds entries exactly where Go's archive/tar does.
//!
//! Docker, moby and containerd unpack layers with Go's archive/tar, so that reader decides what a
//! layer really contains. Wherever another reader draws a different entry boundary, a layer can
//! show it one list of files and Docker another (a directory entry whose size field covers a
//! whole hidden program, say). The rules here follow Go's `Reader.next`: typeflags 1–6 carry no
//! data whatever their size says; a GNU long name or link beats a PAX `path`/`linkpath`, which
//! beats the header; each PAX extended header replaces the pending one; global headers are
//! skipped and never merged; a `'\0'` typeflag whose final name ends in `/` is a directory; a
//! non-zero block after a zero block is an error; a GNU header's time fields are a prefix when
//! they do not parse; sparse files (old GNU with `isextended` blocks, PAX 0.0, 0.1 and 1.0) yield
//! their expanded content at their real size. `tests/tar_differential.rs` checks this against
//! Python's tarfile and documents where Go and Python differ.
//!
//! Where it does not follow Go, it refuses: a stream cut inside an entry's padding (Go takes it
//! as the end), long names over 64 KiB, sparse maps over 2^18 fragments or that do not account
//! for every stored byte (Go fails only once the content is read), sparse holes over 1 GiB in
//! one archive.
//!
//! The `tar` crate reads GNU long-name and PAX records whole into memory whatever size their
//! header claims, so a hostile layer could make it allocate gigabytes; this reader caps them, and
//! hands each entry's content to the caller as a bounded reader that is skipped when unread.

use std::collections::VecDeque;
use std::io::{self, Read};

/// Largest GNU long name / long link record accepted (Linux paths are 4 KiB at most).
const MAX_LONG_NAME: u64 = 64 * 1024;
/// Largest PAX extended header accepted: Go's own limit (`maxSpecialFileSize`).
const MAX_PAX: u64 = 1024 * 1024;
/// Most data fragments a GNU sparse map may list (the map is held in memory).
const MAX_SPARSE_FRAGMENTS: usize = 1 << 18;
/// Most bytes of holes the sparse files of one archive may expand to. Go sets no limit, but a
/// reader that writes the expanded content out (unpacking a rootfs) would write them as zeros:
/// without a bound, a few blocks could claim exabytes.
const MAX_SPARSE_HOLES: u64 = 1 << 30;
const BLOCK: usize = 512;

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
pub enum TarEntryKind {
    /// Regular and contiguous files, and GNU sparse files (their content is expanded).
    File,
    Dir,
    Symlink,
    Hardlink,
    /// Devices, FIFOs and anything else.
    Other,
}

/// One entry's header, with its path normalised (no leading `./` or `/`, no trailing `/`).
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: String,
    /// The name as the archive gives it (after GNU long-name and PAX overrides), before
    /// normalisation: for checks that refuse absolute or `..` names instead of cleaning them.
    pub name: String,
    pub kind: TarEntryKind,
    /// Bytes of content the entry's reader yields: 0 for the header-only types (hard and
    /// symbolic links, devices, directories, FIFOs) whatever their size field says, the real
    /// size of a sparse file.
    pub size: u64,
    /// Target of a symlink or hard link.
    pub link: Option<String>,
    /// Permission bits (including setuid, setgid and sticky), `0o7777` at most.
    pub mode: u32,
    /// Owner ids (negative ones as 0).
    pub uid: u64,
    pub gid: u64,
    /// Modification time in seconds since the epoch (PAX fractions dropped, negatives as 0).
    pub mtime: u64,
    /// The header's type flag as written (`b'0'`, `b'3'` for a character device, …), for
    /// messages about entries of kind [`TarEntryKind::Other`].
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

/// One stretch of an entry's content: bytes stored in the stream, or a hole of zeros (sparse).
#[derive(Clone, Copy)]
enum Run {
    Data(u64),
    Hole(u64),
}

/// An entry's content: its runs, read from the stream or filled with zeros.
pub struct Content<'a, R: Read> {
    src: &'a mut Counting<R>,
    runs: VecDeque<Run>,
    /// Stream bytes of this entry not yet consumed.
    physical: u64,
}

impl<R: Read> Read for Content<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(run) = self.runs.front_mut() else {
                return Ok(0);
            };
            let left = match run {
                Run::Data(n) | Run::Hole(n) => *n,
            };
            if left == 0 {
                self.runs.pop_front();
                continue;
            }
            if buf.is_empty() {
                return Ok(0);
            }
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
            let n = match run {
                Run::Hole(_) => {
                    buf[..want].fill(0);
                    want
                }
                Run::Data(_) => {
                    let n = self.src.inner.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    self.src.pos += n as u64;
                    self.physical -= n as u64;
                    n
                }
            };
            match run {
                Run::Data(l) | Run::Hole(l) => *l -= n as u64,
            }
            return Ok(n);
        }
    }
}

/// The header layouts Go's archive/tar tells apart (by magic, after the checksum).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    V7,
    Ustar,
    Star,
    Gnu,
}

fn format_of(h: &[u8; BLOCK]) -> Format {
    let (magic, version, trailer) = (&h[257..263], &h[263..265], &h[508..512]);
    if magic == b"ustar\0" && trailer == b"tar\0" {
        Format::Star
    } else if magic == b"ustar\0" {
        Format::Ustar
    } else if magic == b"ustar " && version == b" \0" {
        Format::Gnu
    } else {
        Format::V7
    }
}

/// An octal field: spaces and NULs around it ignored, cut at the first NUL inside, empty as 0.
fn parse_octal(field: &[u8]) -> Option<i64> {
    let trim = |b: &u8| *b == b' ' || *b == 0;
    let start = field.iter().position(|b| !trim(b)).unwrap_or(field.len());
    let end = field
        .iter()
        .rposition(|b| !trim(b))
        .map_or(start, |e| e + 1);
    let digits = cstr(&field[start..end]);
    let mut v: u64 = 0;
    for &b in digits {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
    }
    i64::try_from(v).ok()
}

/// A numeric field: octal, or GNU base-256 (the first byte's top bit set, two's complement
/// with the sign in its next bit), as Go's `parseNumeric` reads it.
fn numeric(field: &[u8]) -> Option<i64> {
    let first = *field.first()?;
    if first & 0x80 == 0 {
        return parse_octal(field);
    }
    let inv: u8 = if first & 0x40 != 0 { 0xff } else { 0 };
    let mut x: u64 = 0;
    for (i, &b) in field.iter().enumerate() {
        let mut c = b ^ inv;
        if i == 0 {
            c &= 0x7f;
        }
        if x >> 56 != 0 {
            return None;
        }
        x = (x << 8) | u64::from(c);
    }
    if x >> 63 != 0 {
        return None;
    }
    let x = x as i64;
    Some(if inv == 0xff { !x } else { x })
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn checksum_ok(h: &[u8; BLOCK]) -> bool {
    let Some(stored) = parse_octal(&h[148..156]) else {
        return false;
    };
    let in_field = |i: usize| (148..156).contains(&i);
    let sum: i64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| if in_field(i) { 32 } else { i64::from(b) })
        .sum();
    // Some old writers summed signed bytes.
    let signed: i64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| if in_field(i) { 32 } else { i64::from(b as i8) })
        .sum();
    stored == sum || stored == signed
}

/// The records of the pending PAX extended header that rcross uses. An empty value leaves the
/// header's own field in place, as in Go's `mergePAX`.
#[derive(Default)]
struct Pax {
    path: Option<String>,
    link: Option<String>,
    size: Option<String>,
    uid: Option<String>,
    gid: Option<String>,
    mtime: Option<String>,
    /// The `GNU.sparse.*` records of a PAX-format sparse file.
    sparse: PaxSparse,
}

/// GNU's PAX sparse formats: 0.0 (`offset`/`numbytes` record pairs), 0.1 (`map`) and 1.0 (the
/// map heads the entry's data), told apart as Go's `readGNUSparsePAXHeaders` does.
#[derive(Default)]
struct PaxSparse {
    major: Option<String>,
    minor: Option<String>,
    name: Option<String>,
    size: Option<String>,
    realsize: Option<String>,
    numblocks: Option<String>,
    map: Option<String>,
    /// Format 0.0 `offset`, `numbytes` values, in order.
    pairs: Vec<String>,
}

/// PAX records "LEN key=value\n". A malformed record fails the whole archive, as in Go.
fn parse_pax(data: &[u8]) -> Result<Pax, String> {
    let mut pax = Pax::default();
    let mut rest = data;
    while !rest.is_empty() {
        let bad = |why: &str| {
            let shown = text(&rest[..rest.len().min(40)]);
            format!("malformed PAX record {shown:?}: {why}")
        };
        let sp = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| bad("no length"))?;
        let len = std::str::from_utf8(&rest[..sp])
            .ok()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&n| n >= 5 && n <= rest.len() && n > sp + 1)
            .ok_or_else(|| bad("bad length"))?;
        if rest[len - 1] != b'\n' {
            return Err(bad("no newline at its end"));
        }
        let rec = &rest[sp + 1..len - 1];
        let eq = rec
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| bad("no '='"))?;
        let (k, v) = (&rec[..eq], &rec[eq + 1..]);
        // Go's validPAXRecord: NUL bytes are refused in names only.
        let names: [&[u8]; 4] = [b"path", b"linkpath", b"uname", b"gname"];
        if k.is_empty() || k.contains(&0) || (names.contains(&k) && v.contains(&0)) {
            return Err(bad("an empty key or a NUL byte"));
        }
        let v = text(v);
        match k {
            b"path" => pax.path = Some(v),
            b"linkpath" => pax.link = Some(v),
            b"size" => pax.size = Some(v),
            b"uid" => pax.uid = Some(v),
            b"gid" => pax.gid = Some(v),
            b"mtime" => pax.mtime = Some(v),
            b"GNU.sparse.major" => pax.sparse.major = Some(v),
            b"GNU.sparse.minor" => pax.sparse.minor = Some(v),
            b"GNU.sparse.name" => pax.sparse.name = Some(v),
            b"GNU.sparse.size" => pax.sparse.size = Some(v),
            b"GNU.sparse.realsize" => pax.sparse.realsize = Some(v),
            b"GNU.sparse.numblocks" => pax.sparse.numblocks = Some(v),
            b"GNU.sparse.map" => pax.sparse.map = Some(v),
            b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => {
                let want: &[u8] = if pax.sparse.pairs.len() % 2 == 0 {
                    b"GNU.sparse.offset"
                } else {
                    b"GNU.sparse.numbytes"
                };
                if k != want || v.contains(',') {
                    return Err(bad("GNU.sparse.offset and numbytes out of order"));
                }
                pax.sparse.pairs.push(v);
            }
            _ => {}
        }
        rest = &rest[len..];
    }
    if !pax.sparse.pairs.is_empty() {
        pax.sparse.map = Some(pax.sparse.pairs.join(","));
    }
    Ok(pax)
}

/// A PAX decimal: the value, `Ok(None)` when absent or empty.
fn pax_number(v: &Option<String>, key: &str) -> Result<Option<i64>, String> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("PAX record {key}={s:?} is not a number")),
    }
}

/// PAX mtime "1700000000.123456789": whole seconds; a fraction must be digits.
fn pax_time(v: &Option<String>) -> Result<Option<i64>, String> {
    let Some(s) = v.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    match secs.parse::<i64>() {
        Ok(n) if frac.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(n)),
        _ => Err(format!("PAX record mtime={s:?} is not a time")),
    }
}

/// GNU headers have no prefix field: 345..369 hold the access and change times. But Go before
/// 1.8 wrote a ustar prefix there, and Go's reader still takes it as a prefix when either time
/// does not parse and the text is ASCII (golang.org/issues/12594); so does Docker.
fn buggy_gnu_prefix(h: &[u8; BLOCK]) -> String {
    let unparsable = |f: &[u8]| f[0] != 0 && numeric(f).is_none();
    if !unparsable(&h[345..357]) && !unparsable(&h[357..369]) {
        return String::new();
    }
    let prefix = cstr(&h[345..500]);
    if prefix.is_ascii() {
        text(prefix)
    } else {
        String::new()
    }
}

/// Data fragments of a sparse file: (offset, length) in the expanded file.
type SparseMap = Vec<(i64, i64)>;

#[derive(Clone, Copy)]
enum SparseVersion {
    /// 0.0 and 0.1: the map is in the PAX records.
    V0,
    /// 1.0: the map heads the data.
    V1,
}

/// Which PAX sparse format the records describe, if any (an unknown version is a plain file).
fn pax_sparse_version(sp: &PaxSparse) -> Option<SparseVersion> {
    let major = sp.major.as_deref().unwrap_or("");
    let minor = sp.minor.as_deref().unwrap_or("");
    match (major, minor) {
        ("0", "0" | "1") => Some(SparseVersion::V0),
        ("1", "0") => Some(SparseVersion::V1),
        ("", "") if sp.map.as_deref().is_some_and(|m| !m.is_empty()) => Some(SparseVersion::V0),
        _ => None,
    }
}

fn sparse_number(tok: &str) -> Result<i64, String> {
    tok.parse::<i64>()
        .map_err(|_| format!("GNU sparse map value {tok:?} is not a number"))
}

/// Format 0.x: `numblocks` pairs in the comma-separated `map` record.
fn sparse_map_0x(sp: &PaxSparse) -> Result<SparseMap, String> {
    let count = sparse_number(sp.numblocks.as_deref().unwrap_or(""))?;
    let values: Vec<&str> = match sp.map.as_deref().unwrap_or("") {
        "" => Vec::new(),
        m => m.split(',').collect(),
    };
    if count < 0 || count.checked_mul(2) != i64::try_from(values.len()).ok() {
        return Err(format!(
            "GNU.sparse.numblocks={count} does not match a map of {} values",
            values.len()
        ));
    }
    values
        .chunks_exact(2)
        .map(|p| Ok((sparse_number(p[0])?, sparse_number(p[1])?)))
        .collect()
}

/// Format 1.0: decimal lines at the start of the data (a count, then offset and length per
/// fragment), filling whole blocks. Returns the map and the bytes of data it took; `Err(None)`
/// when the stream ends inside it.
fn sparse_map_1x0<R: Read>(
    src: &mut Counting<R>,
    stored: u64,
) -> Result<(SparseMap, u64), Option<String>> {
    let mut consumed = 0u64;
    let mut count: Option<usize> = None;
    let mut values: Vec<i64> = Vec::new();
    let mut token: Vec<u8> = Vec::new();
    let mut block = [0u8; BLOCK];
    while count.is_none_or(|n| values.len() < 2 * n) {
        if consumed + BLOCK as u64 > stored {
            return Err(Some(
                "the GNU sparse map runs past the end of the entry's data".into(),
            ));
        }
        match src.fill(&mut block) {
            Ok(true) => consumed += BLOCK as u64,
            _ => return Err(None),
        }
        for &b in &block {
            if count.is_some_and(|n| values.len() >= 2 * n) {
                break;
            }
            if b != b'\n' {
                token.push(b);
                if token.len() > 32 {
                    return Err(Some("a GNU sparse map value is too long".into()));
                }
                continue;
            }
            let v = sparse_number(&text(&token))?;
            token.clear();
            match count {
                Some(_) => values.push(v),
                None => {
                    let n = usize::try_from(v)
                        .ok()
                        .filter(|&n| n <= MAX_SPARSE_FRAGMENTS)
                        .ok_or_else(|| {
                            format!(
                                "a GNU sparse map of {v} fragments (more than \
                                 {MAX_SPARSE_FRAGMENTS}, or negative) is refused"
                            )
                        })?;
                    values.reserve(2 * n);
                    count = Some(n);
                }
            }
        }
    }
    Ok((
        values.chunks_exact(2).map(|p| (p[0], p[1])).collect(),
        consumed,
    ))
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn nonneg(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Old GNU sparse map entries (offset, length) in `area`, up to the first whose offset field
/// starts with NUL (the rule of GNU, BSD and Go tar).
fn sparse_entries(area: &[u8], out: &mut SparseMap) -> Result<(), String> {
    for e in area.chunks_exact(24) {
        if e[0] == 0 {
            break;
        }
        if out.len() >= MAX_SPARSE_FRAGMENTS {
            return Err(format!(
                "a sparse map of more than {MAX_SPARSE_FRAGMENTS} fragments is refused"
            ));
        }
        match (numeric(&e[..12]), numeric(&e[12..])) {
            (Some(o), Some(l)) => out.push((o, l)),
            _ => return Err("a sparse map entry is not a number".into()),
        }
    }
    Ok(())
}

/// The content runs of an old GNU sparse file of real size `size` stored as `stored` bytes,
/// after the checks of Go's `validateSparseEntries` and that the map covers exactly the stored
/// bytes (Go fails while reading otherwise).
fn sparse_runs(map: &[(i64, i64)], size: i64, stored: u64) -> Result<VecDeque<Run>, String> {
    if size < 0 {
        return Err(format!("negative real size {size} of a sparse file"));
    }
    let mut runs = VecDeque::with_capacity(map.len() * 2 + 1);
    let (mut pos, mut data) = (0i64, 0u64);
    for &(off, len) in map {
        let end = off.checked_add(len).filter(|_| off >= 0 && len >= 0);
        let Some(end) = end.filter(|&e| e <= size && off >= pos) else {
            return Err(format!(
                "sparse fragment at {off} of {len} bytes overlaps another or leaves the \
                 file's {size} bytes"
            ));
        };
        if off > pos {
            runs.push_back(Run::Hole(nonneg(off - pos)));
        }
        runs.push_back(Run::Data(nonneg(len)));
        data += nonneg(len);
        pos = end;
    }
    if size > pos {
        runs.push_back(Run::Hole(nonneg(size - pos)));
    }
    if data != stored {
        return Err(format!(
            "the sparse map lists {data} bytes of data but the entry stores {stored}"
        ));
    }
    Ok(runs)
}

/// Count a sparse file's holes against what the archive may still expand to.
fn take_holes(runs: &VecDeque<Run>, left: &mut u64) -> Result<(), String> {
    let holes: u64 = runs
        .iter()
        .map(|r| match r {
            Run::Hole(n) => *n,
            Run::Data(_) => 0,
        })
        .fold(0u64, u64::saturating_add);
    *left = left.checked_sub(holes).ok_or_else(|| {
        format!(
            "sparse files whose holes add up to more than {MAX_SPARSE_HOLES} bytes in one \
             archive are refused (expanded, they would be written as that many zeros)"
        )
    })?;
    Ok(())
}

/// Read a tar stream, calling `visit` with each entry and a reader over its content. Content the
/// visitor leaves unread is skipped. Stops at the end-of-archive blocks or the end of the stream.
/// Returns the number of entries.
pub fn read_tar<R: Read>(
    reader: R,
    visit: &mut dyn FnMut(&Entry, &mut dyn Read) -> io::Result<()>,
) -> Result<u64, TarError> {
    let mut tar = TarReader {
        src: Counting {
            inner: reader,
            pos: 0,
        },
        scratch: vec![0u8; 64 * 1024],
        long_name: None,
        long_link: None,
        pax: Pax::default(),
        holes_left: MAX_SPARSE_HOLES,
    };
    let mut count = 0u64;
    let mut block = [0u8; BLOCK];
    loop {
        let offset = tar.src.pos;
        if !tar.next_header(&mut block, offset)? {
            return Ok(count);
        }
        let header = Header::parse(&block, offset)?;
        // Records that describe the next entry (GNU long name or link, PAX headers).
        if matches!(header.typeflag, b'L' | b'K' | b'x' | b'g') {
            tar.read_extension(&header)?;
            continue;
        }
        let (entry, body) = tar.entry(&header)?;
        count += 1;
        tar.visit(&entry, body, visit)?;
    }
}

fn truncated(path: &str, offset: u64) -> TarError {
    TarError::Truncated {
        path: path.to_string(),
        offset,
    }
}

/// The reader's state between headers.
struct TarReader<R> {
    src: Counting<R>,
    scratch: Vec<u8>,
    /// Records that describe the next entry: a GNU long name and long link, a PAX header.
    long_name: Option<String>,
    long_link: Option<String>,
    pax: Pax,
    /// Bytes of sparse holes the rest of the archive may still expand to.
    holes_left: u64,
}

/// A header block whose checksum and numeric fields were checked, with its numbers.
struct Header<'a> {
    block: &'a [u8; BLOCK],
    /// Where the block starts in the stream, for messages.
    offset: u64,
    format: Format,
    typeflag: u8,
    size: i64,
    mode: i64,
    uid: i64,
    gid: i64,
    mtime: i64,
}

impl<'a> Header<'a> {
    fn parse(block: &'a [u8; BLOCK], offset: u64) -> Result<Self, TarError> {
        let err = |message: String| TarError::Header { offset, message };
        if !checksum_ok(block) {
            return Err(err("bad checksum: not a tar archive, or damaged".into()));
        }
        let format = format_of(block);
        let number = |range, what| number_field(block, range, what).map_err(err);
        let size = number(124..136, "size")?;
        let mode = number(100..108, "mode")?;
        let uid = number(108..116, "uid")?;
        let gid = number(116..124, "gid")?;
        let mtime = number(136..148, "mtime")?;
        if format != Format::V7 {
            number(329..337, "device major")?;
            number(337..345, "device minor")?;
        }
        Ok(Header {
            block,
            offset,
            format,
            typeflag: block[156],
            size,
            mode,
            uid,
            gid,
            mtime,
        })
    }

    fn err(&self, message: String) -> TarError {
        TarError::Header {
            offset: self.offset,
            message,
        }
    }

    /// The name the header itself gives, with the prefix field where the format has one.
    fn name(&self) -> String {
        let h = self.block;
        let base = text(cstr(&h[0..100]));
        let prefix = match self.format {
            Format::Ustar => text(cstr(&h[345..500])),
            Format::Star => text(cstr(&h[345..476])),
            Format::Gnu => buggy_gnu_prefix(h),
            Format::V7 => String::new(),
        };
        if prefix.is_empty() {
            base
        } else {
            format!("{prefix}/{base}")
        }
    }

    /// The link target the header itself gives, if any.
    fn link(&self) -> Option<String> {
        Some(text(cstr(&self.block[157..257]))).filter(|l| !l.is_empty())
    }
}

/// A numeric header field by its byte range, or the message saying which one is bad.
fn number_field(
    block: &[u8; BLOCK],
    range: std::ops::Range<usize>,
    what: &str,
) -> Result<i64, String> {
    numeric(&block[range.clone()])
        .ok_or_else(|| format!("bad {what} field {:?}", text(cstr(&block[range]))))
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// An entry's content as the stream holds it.
struct Body {
    runs: VecDeque<Run>,
    /// The size the entry's reader yields (a sparse file's real size).
    size: u64,
    /// Stream bytes of the entry left after any sparse map that heads them.
    physical: u64,
    /// Stream bytes of the entry, sparse map included: what is skipped, with padding, after it.
    stored: u64,
}

impl Body {
    fn plain(stored: u64) -> Body {
        let mut runs = VecDeque::new();
        if stored > 0 {
            runs.push_back(Run::Data(stored));
        }
        Body {
            runs,
            size: stored,
            physical: stored,
            stored,
        }
    }
}

impl<R: Read> TarReader<R> {
    /// Read the next header into `block`; `false` at the end of the archive: the end of the
    /// stream, or two zero blocks.
    fn next_header(&mut self, block: &mut [u8; BLOCK], offset: u64) -> Result<bool, TarError> {
        let herr = |message: String| TarError::Header { offset, message };
        match self.src.fill(block) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(truncated("(a header)", self.src.pos))
            }
            Err(source) => return Err(TarError::Io { offset, source }),
        }
        if block.iter().any(|&b| b != 0) {
            return Ok(true);
        }
        // The end: a second zero block, or the end of the stream. Anything else after a zero
        // block is an error in Go's reader, so Docker would refuse this layer.
        match self.src.fill(block) {
            Ok(false) => Ok(false),
            Ok(true) if block.iter().all(|&b| b == 0) => Ok(false),
            Ok(true) => Err(herr(
                "a header after a zero block: an archive ends at two zero blocks, and Go's \
                 archive/tar (which Docker uses) refuses one that goes on"
                    .into(),
            )),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(truncated("(the end-of-archive blocks)", self.src.pos))
            }
            Err(source) => Err(TarError::Io { offset, source }),
        }
    }

    /// A record that describes the next entry (GNU long name or link, PAX extended header), or a
    /// PAX global header.
    fn read_extension(&mut self, h: &Header) -> Result<(), TarError> {
        let max = if matches!(h.typeflag, b'x' | b'g') {
            MAX_PAX
        } else {
            MAX_LONG_NAME
        };
        let size = u64::try_from(h.size)
            .map_err(|_| h.err(format!("negative size {} of an extension record", h.size)))?;
        if size > max {
            return Err(h.err(format!(
                "extension record of {size} bytes is larger than the {max} accepted"
            )));
        }
        let mut data = vec![0u8; size as usize];
        self.src
            .fill(&mut data)
            .map_err(|_| truncated("(extension record)", self.src.pos))?;
        self.src
            .skip(padding(size), &mut self.scratch)
            .map_err(|_| truncated("(extension record)", self.src.pos))?;
        match h.typeflag {
            b'L' => self.long_name = Some(text(cstr(&data))),
            b'K' => self.long_link = Some(text(cstr(&data))),
            b'x' => self.pax = parse_pax(&data).map_err(|m| h.err(m))?,
            _ => {
                // A global header is an entry of its own in Go, which moby and containerd skip;
                // nothing pending carries over it.
                parse_pax(&data).map_err(|m| h.err(m))?;
                (self.long_name, self.long_link, self.pax) = (None, None, Pax::default());
            }
        }
        Ok(())
    }

    /// The entry a header describes, with the pending records applied, and how its content lies
    /// in the stream.
    fn entry(&mut self, h: &Header) -> Result<(Entry, Body), TarError> {
        let pending = std::mem::take(&mut self.pax);
        let (long_name, long_link) = (self.long_name.take(), self.long_link.take());
        let mut name = nonempty(long_name)
            .or_else(|| nonempty(pending.path.clone()))
            .unwrap_or_else(|| h.name());
        let link = nonempty(long_link)
            .or_else(|| nonempty(pending.link.clone()))
            .or_else(|| h.link());
        let herr = |m| h.err(m);
        let size = pax_number(&pending.size, "size")
            .map_err(herr)?
            .unwrap_or(h.size);
        let uid = pax_number(&pending.uid, "uid")
            .map_err(herr)?
            .unwrap_or(h.uid);
        let gid = pax_number(&pending.gid, "gid")
            .map_err(herr)?
            .unwrap_or(h.gid);
        let mtime = pax_time(&pending.mtime).map_err(herr)?.unwrap_or(h.mtime);
        // The old '\0' typeflag means a directory when the final name ends in '/'.
        let effective = match h.typeflag {
            0 if name.ends_with('/') => b'5',
            0 => b'0',
            t => t,
        };
        let header_only = matches!(effective, b'1'..=b'6');
        let stored = if header_only {
            0
        } else {
            u64::try_from(size).map_err(|_| h.err(format!("negative size {size}")))?
        };
        let kind = match effective {
            b'0' | b'7' | b'S' => TarEntryKind::File,
            b'1' => TarEntryKind::Hardlink,
            b'2' => TarEntryKind::Symlink,
            b'5' => TarEntryKind::Dir,
            _ => TarEntryKind::Other,
        };
        let body = if effective == b'S' {
            self.old_gnu_sparse(h, &name, stored)?
        } else if let Some(version) = pax_sparse_version(&pending.sparse) {
            let sp = &pending.sparse;
            if let Some(n) = nonempty(sp.name.clone()) {
                name = n;
            }
            let real = pax_sparse_size(sp, size).map_err(herr)?;
            if header_only {
                return Err(h.err(format!(
                    "GNU sparse records on an entry of type {:?}, which has no data",
                    effective as char
                )));
            }
            self.pax_sparse(h, sp, version, &name, real, stored)?
        } else {
            Body::plain(stored)
        };
        let entry = Entry {
            path: normalize(&name),
            name,
            kind,
            size: body.size,
            link: link.filter(|_| matches!(kind, TarEntryKind::Symlink | TarEntryKind::Hardlink)),
            mode: (h.mode as u64 & 0o7777) as u32,
            uid: nonneg(uid),
            gid: nonneg(gid),
            mtime: nonneg(mtime),
            typeflag: h.typeflag,
        };
        Ok((entry, body))
    }

    /// An old GNU sparse file ('S'): the map in the header and the extension blocks after it.
    fn old_gnu_sparse(&mut self, h: &Header, name: &str, stored: u64) -> Result<Body, TarError> {
        if h.format != Format::Gnu {
            return Err(h.err("a sparse file ('S') in a header that is not GNU".into()));
        }
        let real = number_field(h.block, 483..495, "sparse real size").map_err(|m| h.err(m))?;
        let mut map = Vec::new();
        sparse_entries(&h.block[386..482], &mut map).map_err(|m| h.err(m))?;
        let mut extended = h.block[482] != 0;
        let mut block = [0u8; BLOCK];
        while extended {
            self.src
                .fill(&mut block)
                .ok()
                .filter(|full| *full)
                .ok_or_else(|| truncated(name, self.src.pos))?;
            sparse_entries(&block[..504], &mut map).map_err(|m| h.err(m))?;
            extended = block[504] != 0;
        }
        let runs = sparse_runs(&map, real, stored).map_err(|m| h.err(m))?;
        take_holes(&runs, &mut self.holes_left).map_err(|m| h.err(m))?;
        Ok(Body {
            runs,
            size: nonneg(real),
            physical: stored,
            stored,
        })
    }

    /// A PAX-format GNU sparse file of real size `real`: the map in the records (0.x) or at the
    /// head of the data (1.0).
    fn pax_sparse(
        &mut self,
        h: &Header,
        sp: &PaxSparse,
        version: SparseVersion,
        name: &str,
        real: i64,
        stored: u64,
    ) -> Result<Body, TarError> {
        let (map, physical) = match version {
            SparseVersion::V0 => (sparse_map_0x(sp).map_err(|m| h.err(m))?, stored),
            SparseVersion::V1 => {
                let (map, consumed) =
                    sparse_map_1x0(&mut self.src, stored).map_err(|e| match e {
                        Some(message) => h.err(message),
                        None => truncated(name, self.src.pos),
                    })?;
                (map, stored - consumed)
            }
        };
        let runs = sparse_runs(&map, real, physical).map_err(|m| h.err(m))?;
        take_holes(&runs, &mut self.holes_left).map_err(|m| h.err(m))?;
        Ok(Body {
            runs,
            size: nonneg(real),
            physical,
            stored,
        })
    }

    /// Hand the entry and a reader over its content to the visitor, then skip what it left
    /// unread and the padding.
    fn visit(
        &mut self,
        entry: &Entry,
        body: Body,
        visit: &mut dyn FnMut(&Entry, &mut dyn Read) -> io::Result<()>,
    ) -> Result<(), TarError> {
        let mut content = Content {
            src: &mut self.src,
            runs: body.runs,
            physical: body.physical,
        };
        let r = visit(entry, &mut content);
        let left = content.physical;
        if let Err(e) = r {
            return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                truncated(&entry.path, self.src.pos)
            } else {
                TarError::Io {
                    offset: self.src.pos,
                    source: e,
                }
            });
        }
        self.src
            .skip(left + padding(body.stored), &mut self.scratch)
            .map_err(|_| truncated(&entry.path, self.src.pos))
    }
}

/// The real size of a PAX-format sparse file: `GNU.sparse.size` or `realsize`, else the
/// entry's size.
fn pax_sparse_size(sp: &PaxSparse, size: i64) -> Result<i64, String> {
    match nonempty(sp.size.clone()).or_else(|| nonempty(sp.realsize.clone())) {
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| format!("GNU sparse size {v:?} is not a number")),
        None => Ok(size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(data: &[u8]) -> Result<Vec<(String, TarEntryKind, Vec<u8>)>, TarError> {
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
        assert_eq!(got[2].1, TarEntryKind::Symlink);
        assert_eq!(got[3], ("etc".to_string(), TarEntryKind::Dir, vec![]));
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
        assert_eq!((e.kind, e.typeflag), (TarEntryKind::File, 0));
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
    fn pax_records_are_checked_as_go_checks_them() {
        let rec = |k: &str, v: &str| {
            let body = format!(" {k}={v}\n");
            let mut n = body.len() + 1;
            while n.to_string().len() + body.len() != n {
                n += 1;
            }
            format!("{n}{body}").into_bytes()
        };
        assert!(parse_pax(&rec("comment", "a\0b")).is_ok());
        let e = parse_pax(&rec("path", "a\0b")).err().unwrap();
        assert!(e.contains("NUL"), "{e}");
        let mut pairs = rec("GNU.sparse.numbytes", "1");
        pairs.extend(rec("GNU.sparse.offset", "0"));
        assert!(parse_pax(&pairs).err().unwrap().contains("out of order"));
        assert!(parse_pax(b"5 a=b").err().unwrap().contains("newline"));
        assert!(parse_pax(b"x a=b\n").err().unwrap().contains("bad length"));
        let later = [rec("path", "one"), rec("path", "")].concat();
        assert_eq!(parse_pax(&later).unwrap().path.as_deref(), Some(""));
    }

    #[test]
    fn a_sparse_map_is_bounded() {
        let mut map = b"999999999\n".to_vec();
        map.resize(512, 0);
        let mut src = Counting {
            inner: &map[..],
            pos: 0,
        };
        let e = sparse_map_1x0(&mut src, 512).err().unwrap().unwrap();
        assert!(e.contains("fragments"), "{e}");
        let mut src = Counting {
            inner: &[b'1'; 512][..],
            pos: 0,
        };
        let e = sparse_map_1x0(&mut src, 512).err().unwrap().unwrap();
        assert!(e.contains("too long"), "{e}");
        let map = [b"1\n0\n5\n".to_vec(), vec![0; 509]].concat();
        let mut src = Counting {
            inner: &map[..],
            pos: 0,
        };
        assert_eq!(sparse_map_1x0(&mut src, 1024).unwrap(), (vec![(0, 5)], 512));
        // Fragments must be in order, inside the file and hold exactly the stored bytes.
        assert!(sparse_runs(&[(0, 5), (3, 1)], 10, 6).is_err());
        assert!(sparse_runs(&[(8, 5)], 10, 5).is_err());
        assert!(sparse_runs(&[(0, 5)], 10, 6).is_err());
        let runs = sparse_runs(&[(2, 5)], 10, 5).unwrap();
        assert_eq!(runs.len(), 3);
        // Holes are bounded per archive.
        let mut left = 6;
        take_holes(&runs, &mut left).unwrap();
        assert_eq!(left, 1);
        let e = take_holes(&runs, &mut left).unwrap_err();
        assert!(e.contains("holes add up"), "{e}");
    }

    #[test]
    fn numeric_fields() {
        assert_eq!(numeric(b"0000644\0"), Some(0o644));
        assert_eq!(numeric(b"  755 \0"), Some(0o755));
        assert_eq!(numeric(b"\0\0\0"), Some(0));
        assert_eq!(numeric(b"89"), None);
        assert_eq!(numeric(b"7 5"), None);
        assert_eq!(numeric(&[0x80, 0, 0, 0, 0, 0, 1, 0]), Some(256));
        // Base-256 is two's complement with the sign in bit 6 of the first byte.
        assert_eq!(numeric(&[0xff; 12]), Some(-1));
        assert_eq!(numeric(&[0xc0, 0, 0, 0, 0, 0, 0, 0]), Some(-(1 << 62)));
        assert_eq!(numeric(&[0x81, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(normalize("./a//b/./c/"), "a/b/c");
        assert_eq!(normalize("/"), "");
    }
}
