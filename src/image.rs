//! Where image content comes from: an OCI image layout on disk or a registry. Readers of images
//! (verification now, inspection and copying later) are written against [`ImageSource`] so every
//! source works with every reader.

use std::io::Read;

/// A failure to read image content, naming what was asked for.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{what}: not found")]
    NotFound { what: String },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("{what} is {size} bytes, more than the {max} allowed")]
    TooLarge { what: String, size: u64, max: u64 },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {message}")]
    Transport { what: String, message: String },
}

/// Read access to one image reference (a tag or digest in a layout or repository).
pub trait ImageSource {
    /// Human name of the source, for messages ("oci:out/", "127.0.0.1:5000/app:1.0").
    fn describe(&self) -> String;

    /// Media type and bytes of the manifest or index the reference names.
    fn root(&self) -> Result<(String, Vec<u8>), SourceError>;

    /// The whole content of a small blob or manifest (config, manifest), at most `max` bytes.
    fn blob_bytes(&self, digest: &str, max: u64) -> Result<Vec<u8>, SourceError>;

    /// A streaming reader over a blob (a layer); the caller decompresses.
    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + Send>, SourceError>;

    /// [`ImageSource::open_blob`] for a blob whose descriptor says it is `size` bytes: digests
    /// other than sha256 are refused (they could not be verified), the reader fails as soon as
    /// the content runs past `size` (after at most `size + 1` bytes) and when it ends short.
    fn open_blob_sized(
        &self,
        digest: &str,
        size: u64,
    ) -> Result<Box<dyn Read + Send>, SourceError> {
        require_sha256(&self.describe(), digest)?;
        Ok(Box::new(SizedReader::new(
            self.open_blob(digest)?,
            digest,
            size,
        )))
    }
}

/// Refuses a digest whose algorithm is not sha256, naming it and where it was asked of.
pub fn require_sha256(source: &str, digest: &str) -> Result<(), SourceError> {
    match digest.split_once(':') {
        Some(("sha256", _)) => Ok(()),
        other => Err(SourceError::Invalid {
            what: format!("blob {digest} in {source}"),
            message: format!(
                "{}; rcross verifies content only against sha256 digests and refuses to read \
                 what it cannot verify",
                match other {
                    Some((algorithm, _)) => format!("the digest algorithm {algorithm:?}"),
                    None => "not an ALGORITHM:HEX digest".to_string(),
                }
            ),
        }),
    }
}

/// A reader of exactly `size` bytes: it fails on the first byte past `size` (so at most
/// `size + 1` are ever read from `inner`) and at an end before `size`.
pub struct SizedReader<R> {
    inner: R,
    digest: String,
    size: u64,
    count: u64,
}

impl<R> SizedReader<R> {
    pub fn new(inner: R, digest: &str, size: u64) -> SizedReader<R> {
        SizedReader {
            inner,
            digest: digest.to_string(),
            size,
            count: 0,
        }
    }
}

impl<R: Read> Read for SizedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let room = (self.size.saturating_add(1) - self.count.min(self.size)).min(buf.len() as u64)
            as usize;
        let n = self.inner.read(&mut buf[..room])?;
        self.count += n as u64;
        if self.count > self.size {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "blob {} is longer than the {} bytes its descriptor says; refusing to read \
                     more",
                    self.digest, self.size
                ),
            ));
        }
        if n == 0 && self.count < self.size {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "blob {} ended after {} of the {} bytes its descriptor says",
                    self.digest, self.count, self.size
                ),
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(data: &[u8], size: u64) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        SizedReader::new(data, "sha256:x", size)
            .read_to_end(&mut out)
            .map(|_| out)
    }

    #[test]
    fn sized_readers_read_exactly_their_size() {
        assert_eq!(read_all(b"abc", 3).unwrap(), b"abc");
        let long = read_all(b"abcd", 3).unwrap_err().to_string();
        assert!(
            long.contains("sha256:x") && long.contains("3 bytes"),
            "{long}"
        );
        let short = read_all(b"ab", 3).unwrap_err().to_string();
        assert!(short.contains("2 of the 3"), "{short}");
        // At most size + 1 bytes are taken from the source.
        let mut source: &[u8] = &[0u8; 100];
        let mut out = Vec::new();
        assert!(SizedReader::new(&mut source, "d", 10)
            .read_to_end(&mut out)
            .is_err());
        assert_eq!(source.len(), 89);
    }

    #[test]
    fn only_sha256_digests_are_read() {
        assert!(require_sha256("s", "sha256:ab").is_ok());
        for digest in ["sha512:ab", "md5:ab", "ab"] {
            let e = require_sha256("oci:x", digest).unwrap_err().to_string();
            assert!(e.contains(digest) && e.contains("sha256"), "{e}");
        }
    }
}
