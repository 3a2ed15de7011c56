//! Reproducible layers: a sorted tar with fixed ownership and times, compressed and hashed in one
//! streaming pass.
//!
//! The tar stream is hashed as it is produced (the `diff_id`), handed to the compressor, and the
//! compressed bytes are hashed and counted as they are written (the blob `digest` and `size`).
//! Input files are read exactly once.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::error::OciError;
use super::{gzip, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_ZSTD};

/// How a layer is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    /// gzip (the default: every client and registry reads it). Level 1–9.
    Gzip { level: u32 },
    /// zstd. Level 1–19. Smaller and faster, but older clients cannot read it.
    Zstd { level: i32 },
}

impl Default for Compressor {
    fn default() -> Self {
        Compressor::Gzip { level: 6 }
    }
}

impl Compressor {
    /// The layer media type this compression gives.
    pub fn media_type(&self) -> &'static str {
        match self {
            Compressor::Gzip { .. } => MEDIA_TYPE_LAYER_GZIP,
            Compressor::Zstd { .. } => MEDIA_TYPE_LAYER_ZSTD,
        }
    }
}

/// What a layer is written with. The output depends on `compression` and `mtime` only, never on
/// `threads`. The default: gzip level 6, one thread per core, mtime 0.
#[derive(Debug, Clone, Default)]
pub struct LayerOptions {
    pub compression: Compressor,
    /// Compressing threads; 0 means one per core.
    pub threads: usize,
    /// Modification time of every entry, in seconds since the epoch (`SOURCE_DATE_EPOCH`, or 0).
    pub mtime: u64,
}

/// `SOURCE_DATE_EPOCH` as the reproducible-builds spec defines it: unset or empty means 0,
/// otherwise a non-negative decimal number of seconds.
pub fn source_date_epoch(value: Option<&str>) -> Result<u64, OciError> {
    match value.map(str::trim) {
        None | Some("") => Ok(0),
        Some(v) => v.parse::<u64>().map_err(|_| OciError::InvalidOption {
            what: format!("SOURCE_DATE_EPOCH={v:?}"),
            reason: "must be a whole number of seconds since 1970-01-01 (e.g. the output of \
                     `git log -1 --format=%ct`), or unset"
                .to_string(),
        }),
    }
}

/// Where a file's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    /// A file on disk, read while the layer is written.
    Path(PathBuf),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerEntryKind {
    Directory,
    File(FileContent),
    Symlink { target: String },
}

/// One entry of a layer: a path inside the image (`usr/bin/app`, leading `/` allowed), what it
/// is, and its permission bits (default 0755 for directories and symlinks, 0644 for files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEntry {
    pub path: String,
    pub kind: LayerEntryKind,
    pub mode: Option<u32>,
}

impl LayerEntry {
    pub fn file(path: impl Into<String>, source: FileContent, mode: u32) -> LayerEntry {
        LayerEntry {
            path: path.into(),
            kind: LayerEntryKind::File(source),
            mode: Some(mode),
        }
    }

    pub fn directory(path: impl Into<String>) -> LayerEntry {
        LayerEntry {
            path: path.into(),
            kind: LayerEntryKind::Directory,
            mode: None,
        }
    }

    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> LayerEntry {
        LayerEntry {
            path: path.into(),
            kind: LayerEntryKind::Symlink {
                target: target.into(),
            },
            mode: None,
        }
    }
}

/// A written layer: what a manifest and an image config need to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub media_type: String,
    /// `sha256:` of the compressed blob.
    pub digest: String,
    /// Size of the compressed blob.
    pub size: u64,
    /// `sha256:` of the uncompressed tar (the image config's `rootfs.diff_ids`).
    pub diff_id: String,
    pub uncompressed_size: u64,
}

/// The entries of a directory tree, placed under `prefix` in the image (`""` for the root).
/// Only what a layer carries portably is kept: the tree shape, file contents, symlink targets and
/// whether a file is executable (0755) or not (0644). Owners, times and other bits of the host
/// are dropped so that the same tree gives the same layer on every machine.
pub fn entries_from_dir(dir: &Path, prefix: &str) -> Result<Vec<LayerEntry>, OciError> {
    let mut out = Vec::new();
    let prefix = prefix.trim_matches('/');
    if !prefix.is_empty() {
        out.push(LayerEntry::directory(prefix));
    }
    walk(dir, prefix, &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<LayerEntry>) -> Result<(), OciError> {
    let read = std::fs::read_dir(dir).map_err(|e| OciError::io("reading directory", dir, e))?;
    let mut children = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| OciError::io("reading directory", dir, e))?;
        children.push(entry.path());
    }
    children.sort();
    for path in children {
        let name =
            path.file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| OciError::UnsupportedFile {
                    path: path.clone(),
                    reason: "the file name is not UTF-8; rename it".to_string(),
                })?;
        let inside = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| OciError::io("reading", &path, e))?;
        let file_type = meta.file_type();
        if file_type.is_symlink() {
            let target =
                std::fs::read_link(&path).map_err(|e| OciError::io("reading", &path, e))?;
            let target = target.to_str().ok_or_else(|| OciError::UnsupportedFile {
                path: path.clone(),
                reason: "the symlink target is not UTF-8".to_string(),
            })?;
            out.push(LayerEntry::symlink(inside, target));
        } else if file_type.is_dir() {
            out.push(LayerEntry::directory(inside.clone()));
            walk(&path, &inside, out)?;
        } else if file_type.is_file() {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            out.push(LayerEntry::file(inside, FileContent::Path(path), mode));
        } else {
            return Err(OciError::UnsupportedFile {
                path,
                reason: "only regular files, directories and symlinks can go into a layer \
                         (this is a device, socket or pipe); remove it from the output"
                    .to_string(),
            });
        }
    }
    Ok(())
}

/// Checks and normalises an image path: no leading `/` or `./`, no empty, `.` or `..`
/// components, no NUL.
fn normalise_path(path: &str) -> Result<String, OciError> {
    let fail = |reason: &str| OciError::InvalidEntry {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    if path.contains('\0') {
        return Err(fail("contains a NUL byte"));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => continue,
            ".." => return Err(fail("contains '..'; give the path inside the image")),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(fail("names the image root; give a path below it"));
    }
    Ok(parts.join("/"))
}

/// Entries keyed by normalised path, with missing parent directories added; duplicates refused.
fn prepare(entries: &[LayerEntry]) -> Result<BTreeMap<String, &LayerEntry>, OciError> {
    let mut map: BTreeMap<String, &LayerEntry> = BTreeMap::new();
    for entry in entries {
        let path = normalise_path(&entry.path)?;
        if let Some(mode) = entry.mode.filter(|m| *m > 0o7777) {
            return Err(OciError::InvalidEntry {
                path: entry.path.clone(),
                reason: format!("mode {mode:o} has bits beyond 7777 (octal)"),
            });
        }
        if let Some(previous) = map.insert(path.clone(), entry) {
            let both_dirs = matches!(previous.kind, LayerEntryKind::Directory)
                && matches!(entry.kind, LayerEntryKind::Directory);
            if !both_dirs || previous.mode != entry.mode {
                return Err(OciError::InvalidEntry {
                    path: path.clone(),
                    reason: "appears twice in the layer; each path may be given once".to_string(),
                });
            }
        }
    }
    Ok(map)
}

/// Writes the layer for `entries` into `out` and returns its digests and `out`.
pub fn write_layer<W: Write + Send>(
    entries: &[LayerEntry],
    options: &LayerOptions,
    out: W,
) -> Result<(Layer, W), OciError> {
    let entries = prepare(entries)?;
    write_tar_layer(options, out, |sink| {
        write_tar(&entries, options.mtime, sink)
    })
}

/// Writes a layer whose uncompressed tar stream `produce` writes into the writer it is given,
/// and returns its digests and `out`: the tar is hashed as it streams (the `diff_id`),
/// compressed as `options.compression` says on `options.threads` threads, and the compressed
/// bytes are hashed and counted as they are written to `out`. Nothing is buffered beyond the
/// compressor's blocks, so a layer of any size streams. `produce` writes a whole tar (its end
/// blocks included, as `tar::Builder::finish` does); the bytes, and so the digests, depend on
/// what it writes and on `options.compression` only, never on `options.threads`. An error of
/// `produce` is returned as it is.
pub fn write_tar_layer<W, E>(
    options: &LayerOptions,
    out: W,
    produce: impl FnOnce(&mut dyn Write) -> Result<(), E>,
) -> Result<(Layer, W), E>
where
    W: Write + Send,
    E: From<OciError>,
{
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut hashing = HashingWriter::new(out);
    let mut diff = Sha256Count::default();
    let mut failure: Option<E> = None;
    let produce = |sink: &mut dyn Write| -> Result<(), OciError> {
        // The uncompressed tar's hash and size: the diff ID.
        let mut tar = HashingWriter::new(sink);
        let produced = produce(&mut tar);
        diff = tar.hash;
        produced.map_err(|e| {
            failure = Some(e);
            OciError::Compression {
                message: "the layer's tar stream was not finished".to_string(),
            }
        })
    };
    let compressed = match options.compression {
        Compressor::Gzip { level } => gzip::compress(level, threads, &mut hashing, produce),
        Compressor::Zstd { level } => zstd_compress(level, threads, &mut hashing, produce),
    };
    if let Some(e) = failure {
        return Err(e);
    }
    compressed?;
    let (digest, size) = (hashing.hash.digest(), hashing.hash.count);
    let layer = Layer {
        media_type: options.compression.media_type().to_string(),
        digest,
        size,
        diff_id: diff.digest(),
        uncompressed_size: diff.count,
    };
    Ok((layer, hashing.into_inner()))
}

/// The `diff_id` (sha256 of the uncompressed tar) and size of the layer `write_layer` would
/// write for `entries` with this `mtime`, without compressing anything: the tar stream goes
/// through SHA-256 only. The tar is reproducible, so this is exactly the `diff_id` that
/// [`write_layer`] reports for the same inputs, whatever the compression. Used to look a layer up
/// among blobs a registry already has before spending time on compression.
pub fn diff_id(entries: &[LayerEntry], mtime: u64) -> Result<(String, u64), OciError> {
    let entries = prepare(entries)?;
    let mut sink = HashSink::default();
    write_tar(&entries, mtime, &mut sink)?;
    Ok((sink.0.digest(), sink.0.count))
}

/// A writer that only hashes.
#[derive(Default)]
struct HashSink(Sha256Count);

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn zstd_compress<W: Write>(
    level: i32,
    threads: usize,
    sink: W,
    produce: impl FnOnce(&mut dyn Write) -> Result<(), OciError>,
) -> Result<W, OciError> {
    let fail = |e: io::Error| OciError::Compression {
        message: format!("zstd: {e}"),
    };
    let mut encoder = zstd::stream::write::Encoder::new(sink, level.clamp(1, 19)).map_err(fail)?;
    // zstd's multi-threaded format is the same for any number of workers ≥ 1, but differs from
    // the single-threaded one: always use at least one worker so every machine agrees.
    encoder
        .multithread(u32::try_from(threads.max(1)).unwrap_or(1))
        .map_err(fail)?;
    encoder.include_checksum(false).map_err(fail)?;
    produce(&mut encoder)?;
    encoder.finish().map_err(fail)
}

/// Mode bits of an entry, with the defaults.
fn mode_of(entry: &LayerEntry) -> u32 {
    entry.mode.unwrap_or(match entry.kind {
        LayerEntryKind::File(_) => 0o644,
        LayerEntryKind::Directory | LayerEntryKind::Symlink { .. } => 0o755,
    })
}

/// Maps a tar-writing I/O error: an input file's failure names the file, anything else is the
/// compressor's.
fn write_tar(
    entries: &BTreeMap<String, &LayerEntry>,
    mtime: u64,
    sink: &mut dyn Write,
) -> Result<(), OciError> {
    let mut builder = tar::Builder::new(sink);
    // Parent directories first (they sort before their children), missing ones made up.
    let mut written = std::collections::BTreeSet::new();
    for (path, entry) in entries {
        let mut parent = String::new();
        for component in path
            .split('/')
            .collect::<Vec<_>>()
            .iter()
            .rev()
            .skip(1)
            .rev()
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(component);
            if let Some(above) = entries.get(&parent) {
                if !matches!(above.kind, LayerEntryKind::Directory) {
                    return Err(OciError::InvalidEntry {
                        path: path.clone(),
                        reason: format!(
                            "is below {parent:?}, which is not a directory in this layer"
                        ),
                    });
                }
            }
            if !entries.contains_key(&parent) && written.insert(parent.clone()) {
                let mut header = base_header(tar::EntryType::Directory, 0o755, mtime);
                builder
                    .append_data(&mut header, format!("{parent}/"), io::empty())
                    .map_err(sink_error)?;
            }
        }
        written.insert(path.clone());
        let mode = mode_of(entry);
        match &entry.kind {
            LayerEntryKind::Directory => {
                let mut header = base_header(tar::EntryType::Directory, mode, mtime);
                builder
                    .append_data(&mut header, format!("{path}/"), io::empty())
                    .map_err(sink_error)?;
            }
            LayerEntryKind::Symlink { target } => {
                if target.is_empty() || target.contains('\0') {
                    return Err(OciError::InvalidEntry {
                        path: path.clone(),
                        reason: "symlink target is empty or contains NUL".to_string(),
                    });
                }
                let mut header = base_header(tar::EntryType::Symlink, mode, mtime);
                builder
                    .append_link(&mut header, path, target)
                    .map_err(sink_error)?;
            }
            LayerEntryKind::File(FileContent::Bytes(bytes)) => {
                let mut header = base_header(tar::EntryType::Regular, mode, mtime);
                header.set_size(bytes.len() as u64);
                builder
                    .append_data(&mut header, path, bytes.as_slice())
                    .map_err(sink_error)?;
            }
            LayerEntryKind::File(FileContent::Path(source)) => {
                let file =
                    std::fs::File::open(source).map_err(|e| OciError::io("reading", source, e))?;
                let size = file
                    .metadata()
                    .map_err(|e| OciError::io("reading", source, e))?
                    .len();
                let mut header = base_header(tar::EntryType::Regular, mode, mtime);
                append_file(&mut builder, &mut header, path, file, source, size)?;
            }
        }
    }
    builder.finish().map_err(sink_error)?;
    Ok(())
}

/// A failure to write the tar stream: the compressor's (or the output's), never an input file's.
pub(crate) fn sink_error(e: io::Error) -> OciError {
    OciError::Compression {
        message: format!("writing the tar stream: {e}"),
    }
}

/// Appends the regular file `file` (opened from `source`) as `name`, with exactly `size` bytes
/// of content streamed from it (`header` gets the size): a file that turns out shorter or
/// longer, because something changes it while the layer is written, is
/// [`OciError::FileChanged`] naming `source`, and a failed read names `source` too.
pub(crate) fn append_file<W: Write>(
    builder: &mut tar::Builder<W>,
    header: &mut tar::Header,
    name: &str,
    file: std::fs::File,
    source: &Path,
    size: u64,
) -> Result<(), OciError> {
    header.set_size(size);
    let mut reader = ExactReader {
        inner: file,
        left: size,
        failure: None,
    };
    let result = builder.append_data(header, name, &mut reader);
    if let Some(failure) = reader.failure.take() {
        return Err(match failure {
            Failure::Changed => OciError::FileChanged {
                path: source.to_path_buf(),
                expected: size,
            },
            Failure::Io(e) => OciError::io("reading", source, e),
        });
    }
    result.map_err(sink_error)?;
    if reader.has_more() {
        return Err(OciError::FileChanged {
            path: source.to_path_buf(),
            expected: size,
        });
    }
    Ok(())
}

/// A header with everything that could differ between hosts fixed: uid/gid 0, no user or group
/// names, the given mtime.
pub(crate) fn base_header(kind: tar::EntryType, mode: u32, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_size(0);
    // ustar's device fields are meaningless for these entry types; zero them explicitly.
    let _ = header.set_device_major(0);
    let _ = header.set_device_minor(0);
    header
}

enum Failure {
    Changed,
    Io(io::Error),
}

/// Reads exactly the announced size of a file, remembering why it could not.
struct ExactReader {
    inner: std::fs::File,
    left: u64,
    failure: Option<Failure>,
}

impl ExactReader {
    fn has_more(&mut self) -> bool {
        let mut one = [0u8; 1];
        matches!(self.inner.read(&mut one), Ok(n) if n > 0)
    }
}

impl Read for ExactReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        match self.inner.read(&mut buf[..want]) {
            Ok(0) => {
                self.failure = Some(Failure::Changed);
                Err(io::Error::other("file shrank"))
            }
            Ok(n) => {
                self.left -= n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.failure = Some(Failure::Io(e));
                Err(copy)
            }
        }
    }
}

/// SHA-256 and a byte count.
#[derive(Default)]
pub(crate) struct Sha256Count {
    hasher: crate::image::Sha256,
    pub(crate) count: u64,
}

impl Sha256Count {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.count += bytes.len() as u64;
    }

    pub(crate) fn digest(&self) -> String {
        self.hasher.digest()
    }
}

/// A writer that hashes and counts what it writes.
pub(crate) struct HashingWriter<W> {
    inner: W,
    pub(crate) hash: Sha256Count,
}

impl<W> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hash: Sha256Count::default(),
        }
    }

    pub(crate) fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {

    /// A sink that takes `left` bytes, then fails as a full disk does.
    struct FullDisk {
        left: usize,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::from_raw_os_error(28));
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_sink_that_fails_is_named_as_the_cause() {
        // Many gzip blocks, so the compressing threads run, the writer thread is the one that
        // meets the full disk, and the tar stream is still being written when the threads stop.
        let entries = [LayerEntry::file(
            "zeros.bin",
            FileContent::Bytes(vec![0; 48 * super::super::GZIP_BLOCK_SIZE]),
            0o644,
        )];
        for compression in [Compressor::Gzip { level: 6 }, Compressor::Zstd { level: 3 }] {
            let options = LayerOptions {
                compression,
                threads: 2,
                mtime: 0,
            };
            let e = write_layer(&entries, &options, FullDisk { left: 0 })
                .err()
                .unwrap_or_else(|| panic!("{compression:?}: a full disk was not an error"));
            let message = e.to_string();
            assert!(
                message.contains("No space left on device"),
                "{compression:?}: {message}"
            );
        }
    }
    use super::*;

    fn layer(entries: &[LayerEntry], options: &LayerOptions) -> (Layer, Vec<u8>) {
        write_layer(entries, options, Vec::new()).unwrap()
    }

    fn untar(gz: &[u8]) -> Vec<(String, u32, u64, u64, Vec<u8>)> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz));
        let mut out = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            out.push((
                entry.path().unwrap().to_string_lossy().into_owned(),
                header.mode().unwrap(),
                header.mtime().unwrap(),
                header.uid().unwrap() + header.gid().unwrap(),
                data,
            ));
        }
        out
    }

    #[test]
    fn entries_are_sorted_with_parents_and_fixed_metadata() {
        let entries = vec![
            LayerEntry::file("/usr/bin/b", FileContent::Bytes(b"bb".to_vec()), 0o755),
            LayerEntry::file("etc/a.conf", FileContent::Bytes(b"a".to_vec()), 0o644),
            LayerEntry::symlink("usr/bin/c", "b"),
        ];
        let options = LayerOptions {
            mtime: 1_700_000_000,
            ..LayerOptions::default()
        };
        let (layer, bytes) = layer(&entries, &options);
        let listed = untar(&bytes);
        let names: Vec<&str> = listed.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc/",
                "etc/a.conf",
                "usr/",
                "usr/bin/",
                "usr/bin/b",
                "usr/bin/c"
            ]
        );
        assert!(listed.iter().all(|e| e.2 == 1_700_000_000 && e.3 == 0));
        assert_eq!(listed[4].1, 0o755);
        assert_eq!(listed[4].4, b"bb");
        assert_eq!(layer.size, bytes.len() as u64);
        assert_eq!(layer.digest, crate::oci::sha256_digest(&bytes));
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(layer.diff_id, crate::oci::sha256_digest(&tar));
        assert_eq!(layer.uncompressed_size, tar.len() as u64);

        // Order of the input does not matter; threads do not matter.
        let mut reversed = entries.clone();
        reversed.reverse();
        let again = write_layer(
            &reversed,
            &LayerOptions {
                threads: 3,
                ..options.clone()
            },
            Vec::new(),
        )
        .unwrap();
        assert_eq!(again.0, layer);
    }

    #[test]
    fn diff_id_alone_matches_the_written_layer() {
        let big: Vec<u8> = (0..1_500_000u32).map(|i| (i % 253) as u8).collect();
        let entries = vec![
            LayerEntry::file("usr/bin/app", FileContent::Bytes(big), 0o755),
            LayerEntry::symlink("usr/bin/b", "app"),
        ];
        for compression in [Compressor::Gzip { level: 6 }, Compressor::Zstd { level: 3 }] {
            let options = LayerOptions {
                compression,
                threads: 2,
                mtime: 42,
            };
            let (written, _) = layer(&entries, &options);
            let (id, size) = diff_id(&entries, 42).unwrap();
            assert_eq!((id, size), (written.diff_id, written.uncompressed_size));
        }
        assert_ne!(
            diff_id(&entries, 43).unwrap().0,
            diff_id(&entries, 42).unwrap().0
        );
        assert!(diff_id(&[LayerEntry::directory("../x")], 0).is_err());
    }

    #[test]
    fn a_tar_producers_error_comes_back_as_it_is() {
        #[derive(Debug)]
        enum ProducerError {
            Stopped(u64),
            Oci(OciError),
        }
        impl From<OciError> for ProducerError {
            fn from(e: OciError) -> Self {
                ProducerError::Oci(e)
            }
        }
        for compression in [Compressor::Gzip { level: 6 }, Compressor::Zstd { level: 3 }] {
            let options = LayerOptions {
                compression,
                ..LayerOptions::default()
            };
            let result = write_tar_layer(&options, Vec::new(), |sink| {
                sink.write_all(&[0; 512])
                    .map_err(|e| OciError::io("x", "x", e))?;
                Err(ProducerError::Stopped(7))
            });
            assert!(
                matches!(result, Err(ProducerError::Stopped(7))),
                "{result:?}"
            );
        }
        // An OciError of the producer (from `?`) comes back too, not the compressor's.
        let result = write_tar_layer(&LayerOptions::default(), Vec::new(), |_| {
            Err::<(), _>(OciError::InvalidOption {
                what: "w".to_string(),
                reason: "r".to_string(),
            })?;
            Ok::<(), ProducerError>(())
        });
        assert!(
            matches!(&result, Err(ProducerError::Oci(OciError::InvalidOption { what, .. })) if what == "w"),
            "{result:?}"
        );
    }

    #[test]
    fn zstd_is_reproducible_across_thread_counts() {
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let entries = vec![LayerEntry::file(
            "big",
            FileContent::Bytes(big.clone()),
            0o644,
        )];
        let options = |threads| LayerOptions {
            compression: Compressor::Zstd { level: 3 },
            threads,
            mtime: 0,
        };
        let (one, bytes) = layer(&entries, &options(1));
        let (two, _) = layer(&entries, &options(2));
        assert_eq!(one, two);
        assert_eq!(one.media_type, MEDIA_TYPE_LAYER_ZSTD);
        let tar = zstd::stream::decode_all(bytes.as_slice()).unwrap();
        assert_eq!(one.diff_id, crate::oci::sha256_digest(&tar));
    }

    #[test]
    fn bad_entries_are_named() {
        let bytes = || FileContent::Bytes(Vec::new());
        for (entries, needle) in [
            (vec![LayerEntry::file("../x", bytes(), 0o644)], ".."),
            (vec![LayerEntry::file("/", bytes(), 0o644)], "root"),
            (
                vec![
                    LayerEntry::file("a", bytes(), 0o644),
                    LayerEntry::file("/a", bytes(), 0o644),
                ],
                "twice",
            ),
            (vec![LayerEntry::file("a", bytes(), 0o17777)], "7777"),
            (
                vec![
                    LayerEntry::file("a", bytes(), 0o644),
                    LayerEntry::file("a/b", bytes(), 0o644),
                ],
                "not a directory",
            ),
        ] {
            let e = write_layer(&entries, &LayerOptions::default(), Vec::new()).unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
        }
        let missing = vec![LayerEntry::file(
            "x",
            FileContent::Path("/nonexistent/rcross".into()),
            0o644,
        )];
        let e = write_layer(&missing, &LayerOptions::default(), Vec::new()).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/rcross"), "{e}");
    }

    #[test]
    fn source_date_epoch_parsing() {
        assert_eq!(source_date_epoch(None).unwrap(), 0);
        assert_eq!(source_date_epoch(Some("")).unwrap(), 0);
        assert_eq!(
            source_date_epoch(Some("1700000000")).unwrap(),
            1_700_000_000
        );
        let e = source_date_epoch(Some("yesterday")).unwrap_err();
        assert!(e.to_string().contains("SOURCE_DATE_EPOCH"), "{e}");
    }

    #[test]
    fn directories_become_portable_entries() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/app"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            dir.path().join("bin/app"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::fs::write(dir.path().join("data"), b"d").unwrap();
        std::os::unix::fs::symlink("bin/app", dir.path().join("link")).unwrap();
        let entries = entries_from_dir(dir.path(), "/opt/x").unwrap();
        let summary: Vec<(String, Option<u32>)> =
            entries.iter().map(|e| (e.path.clone(), e.mode)).collect();
        assert_eq!(
            summary,
            [
                ("opt/x".to_string(), None),
                ("opt/x/bin".to_string(), None),
                ("opt/x/bin/app".to_string(), Some(0o755)),
                ("opt/x/data".to_string(), Some(0o644)),
                ("opt/x/link".to_string(), None),
            ]
        );
        assert!(write_layer(&entries, &LayerOptions::default(), Vec::new()).is_ok());
    }
}
