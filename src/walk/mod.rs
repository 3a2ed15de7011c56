//! Streaming readers: directory trees, tar archives and layers (plain, gzip, zstd), and OCI image
//! layouts. Each one reports what it finds at every path to a visitor; none prints.

pub mod contents;
pub mod tar;

pub use contents::{
    read_image, verify_image, ImageContents, ImageError, ImageReport, PlatformReport,
};

use crate::elf::{self, ElfError, ElfInfo, FileSource, ReadAt};
use crate::image::model::LayerCompression;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

/// How much of one tar entry is held in memory to classify it. Larger ELF files are classified
/// from this prefix (their headers are at the start; section headers may be missed).
pub const MAX_ENTRY_BUFFER: u64 = 256 * 1024 * 1024;

/// What a walk found at one path.
#[derive(Debug)]
pub enum FileClass {
    Elf(Box<ElfInfo>),
    /// ELF magic, but the headers cannot be read.
    Corrupt(ElfError),
    /// The file (or archive) could not be read.
    Unreadable(String),
    NotElf,
    /// A symbolic link, reported and not followed.
    Symlink(String),
}

impl FileClass {
    fn from_result(r: Result<ElfInfo, ElfError>) -> FileClass {
        match r {
            Ok(i) => FileClass::Elf(Box::new(i)),
            Err(ElfError::NotElf) => FileClass::NotElf,
            Err(ElfError::Io(e)) => FileClass::Unreadable(e.to_string()),
            Err(e) => FileClass::Corrupt(e),
        }
    }
}

/// A visitor of walk results: the display path and what is there.
pub type Visit<'a> = dyn FnMut(&str, FileClass) + 'a;

/// Why a command-line target could not be walked at all.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("{path}: no such file or directory")]
    NotFound { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

fn is_tar_header(block: &[u8]) -> bool {
    block.len() >= 263 && (&block[257..262] == b"ustar")
}

/// Classify one file on disk, reading its first bytes and then only the ranges the classifier
/// asks for.
pub fn classify_file(path: &Path) -> FileClass {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return FileClass::Unreadable(e.to_string()),
    };
    classify_open(&file)
}

fn classify_open(file: &File) -> FileClass {
    let size = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => return FileClass::Unreadable(e.to_string()),
    };
    let want = elf::PREFIX_LEN.min(usize::try_from(size).unwrap_or(usize::MAX));
    // Positional read: the caller may already have read from this handle.
    let prefix = match FileSource::new(file, size, Vec::new()).read_range(0, want) {
        Ok(p) => p,
        Err(e) => return FileClass::Unreadable(e.to_string()),
    };
    if !elf::is_elf(&prefix) {
        return FileClass::NotElf;
    }
    FileClass::from_result(elf::classify_from(&mut FileSource::new(file, size, prefix)))
}

/// Fill as much of `buf` as the reader has; returns the count.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Classify a stream of `size` bytes (a tar entry), keeping at most [`MAX_ENTRY_BUFFER`] bytes in
/// `buf`, which is reused between entries.
pub fn classify_stream(r: &mut dyn Read, size: u64, buf: &mut Vec<u8>) -> io::Result<FileClass> {
    let mut magic = [0u8; 4];
    let n = read_full(r, &mut magic)?;
    if n < 4 || !elf::is_elf(&magic) {
        return Ok(FileClass::NotElf);
    }
    let keep = size.min(MAX_ENTRY_BUFFER) as usize;
    buf.clear();
    buf.extend_from_slice(&magic);
    r.take(keep.saturating_sub(4) as u64).read_to_end(buf)?;
    Ok(FileClass::from_result(elf::classify(buf)))
}

/// Walk a tar stream (compressed or not), reporting each regular file and symlink under
/// `prefix` + its path. Hard links, directories and devices are not reported.
pub fn walk_tar(reader: impl Read, prefix: &str, visit: &mut Visit) -> Result<u64, tar::TarError> {
    walk_tar_entries(reader, &mut |entry, content, buf| {
        let path = format!("{prefix}{}", entry.path);
        match entry.kind {
            tar::TarEntryKind::File => {
                let found = classify_stream(content, entry.size, buf)?;
                visit(&path, found);
            }
            tar::TarEntryKind::Symlink => {
                visit(
                    &path,
                    FileClass::Symlink(entry.link.clone().unwrap_or_default()),
                );
            }
            _ => {}
        }
        Ok(())
    })
}

/// A visitor of tar entries: header, content reader, and a reusable classification buffer.
pub type EntryVisit<'a> =
    dyn FnMut(&tar::Entry, &mut dyn Read, &mut Vec<u8>) -> io::Result<()> + 'a;

/// Decompress by sniffing and read tar entries, with one reusable classification buffer.
pub fn walk_tar_entries(reader: impl Read, visit: &mut EntryVisit) -> Result<u64, tar::TarError> {
    let mut buf = Vec::new();
    let mut f = |e: &tar::Entry, r: &mut dyn Read| visit(e, r, &mut buf);
    let mut br = BufReader::with_capacity(256 * 1024, reader);
    let head = br
        .fill_buf()
        .map_err(|source| tar::TarError::Io { offset: 0, source })?;
    // After the end-of-archive block the rest of the stream is read too (padding, compression
    // trailers), so that a source verifying digests at the end of the stream gets to check.
    let drain = |r: &mut dyn Read| {
        io::copy(r, &mut io::sink())
            .map(|_| ())
            .map_err(|source| tar::TarError::Io { offset: 0, source })
    };
    match LayerCompression::sniff(head) {
        LayerCompression::None => {
            let n = tar::read_tar(&mut br, &mut f)?;
            drain(&mut br)?;
            Ok(n)
        }
        LayerCompression::Gzip => {
            let mut d =
                BufReader::with_capacity(256 * 1024, flate2::bufread::MultiGzDecoder::new(br));
            let n = tar::read_tar(&mut d, &mut f)?;
            drain(&mut d)?;
            Ok(n)
        }
        LayerCompression::Zstd => {
            let d = zstd::stream::read::Decoder::with_buffer(br)
                .map_err(|source| tar::TarError::Io { offset: 0, source })?;
            let mut d = BufReader::with_capacity(256 * 1024, d);
            let n = tar::read_tar(&mut d, &mut f)?;
            drain(&mut d)?;
            Ok(n)
        }
    }
}

/// Walk one command-line target on disk: a file (ELF or not), a tar archive, or a directory
/// (recursive; symlinks are reported and never followed).
pub fn walk_path(path: &Path, visit: &mut Visit) -> Result<(), WalkError> {
    let display = path.display().to_string();
    let meta = fs::symlink_metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => WalkError::NotFound {
            path: display.clone(),
        },
        _ => WalkError::Io {
            path: display.clone(),
            source: e,
        },
    })?;
    if meta.is_dir() {
        walk_dir(path, &display, visit);
        return Ok(());
    }
    if meta.file_type().is_symlink() {
        // A symlink named on the command line is the user's choice: follow it.
        let target = fs::read_link(path)
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        match fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                walk_dir(path, &display, visit);
                return Ok(());
            }
            Ok(_) => {}
            Err(_) => {
                visit(&display, FileClass::Symlink(target));
                return Ok(());
            }
        }
    }
    walk_file_arg(path, &display, visit)
}

fn walk_file_arg(path: &Path, display: &str, visit: &mut Visit) -> Result<(), WalkError> {
    let file = File::open(path).map_err(|e| WalkError::Io {
        path: display.to_string(),
        source: e,
    })?;
    let mut head = [0u8; 512];
    let n = read_full(&mut &file, &mut head).map_err(|e| WalkError::Io {
        path: display.to_string(),
        source: e,
    })?;
    let head = &head[..n];
    let is_archive = LayerCompression::sniff(head) != LayerCompression::None || is_tar_header(head);
    if !is_archive {
        visit(display, classify_open(&file));
        return Ok(());
    }
    let file = File::open(path).map_err(|e| WalkError::Io {
        path: display.to_string(),
        source: e,
    })?;
    let prefix = format!("{display}:");
    if let Err(e) = walk_tar(file, &prefix, visit) {
        visit(
            display,
            FileClass::Unreadable(format!("not a readable tar archive: {e}")),
        );
    }
    Ok(())
}

fn walk_dir(dir: &Path, display: &str, visit: &mut Visit) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            visit(display, FileClass::Unreadable(e.to_string()));
            return;
        }
    };
    let mut list: Vec<_> = entries.filter_map(|e| e.ok()).collect();
    list.sort_by_key(|e| e.file_name());
    for entry in list {
        let path = entry.path();
        let shown = format!(
            "{}/{}",
            display.trim_end_matches('/'),
            entry.file_name().to_string_lossy()
        );
        let ft = match entry.file_type() {
            Ok(t) => t,
            Err(e) => {
                visit(&shown, FileClass::Unreadable(e.to_string()));
                continue;
            }
        };
        if ft.is_symlink() {
            let target = fs::read_link(&path)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            visit(&shown, FileClass::Symlink(target));
        } else if ft.is_dir() {
            walk_dir(&path, &shown, visit);
        } else if ft.is_file() {
            visit(&shown, classify_file(&path));
        }
    }
}

/// Fuzzing entry point (cargo-fuzz target and the loop harness in tests/): walk the bytes as a
/// tar stream, and merge them as a layer twice (so whiteouts meet lower files).
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    let _ = walk_tar(data, "", &mut |_p: &str, _f: FileClass| {});
    let mut files = std::collections::BTreeMap::new();
    let _ = contents::apply_layer(data, &mut files);
    let _ = contents::apply_layer(data, &mut files);
}
