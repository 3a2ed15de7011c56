//! Random access to the bytes of one ELF file: a slice in memory or a file on disk read with
//! `pread`, so that a file is never read whole just to classify it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Bytes of one file, read by range. Reads past the end return fewer bytes, never an error.
pub trait ReadAt {
    /// Length of the whole file.
    fn size(&self) -> u64;
    /// Up to `len` bytes from `offset` (fewer at the end of the data).
    fn read_range(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
}

/// A file (or a truncated prefix of one) already in memory.
pub struct SliceSource<'a>(pub &'a [u8]);

impl ReadAt for SliceSource<'_> {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_range(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let Ok(start) = usize::try_from(offset) else {
            return Ok(Vec::new());
        };
        let start = start.min(self.0.len());
        let end = start.saturating_add(len).min(self.0.len());
        Ok(self.0[start..end].to_vec())
    }
}

/// A file on disk whose first bytes were already read (the usual ELF header and program headers
/// fit there); everything else is read with `pread` on demand.
pub struct FileSource<'a> {
    file: &'a File,
    size: u64,
    prefix: Vec<u8>,
}

impl<'a> FileSource<'a> {
    /// `prefix` must be the first bytes of `file`; `size` its length.
    pub fn new(file: &'a File, size: u64, prefix: Vec<u8>) -> Self {
        FileSource { file, size, prefix }
    }
}

impl ReadAt for FileSource<'_> {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_range(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        if offset >= self.size {
            return Ok(Vec::new());
        }
        let len = len.min(usize::try_from(self.size - offset).unwrap_or(usize::MAX));
        if let Ok(start) = usize::try_from(offset) {
            if start.saturating_add(len) <= self.prefix.len() {
                return Ok(self.prefix[start..start + len].to_vec());
            }
        }
        let mut buf = vec![0u8; len];
        let mut done = 0;
        while done < len {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        buf.truncate(done);
        Ok(buf)
    }
}
