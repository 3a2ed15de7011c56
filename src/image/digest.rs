//! The one SHA-256 of rcross (every digest of a blob, a layer's diff_id, a cache key) and the
//! one reader that verifies a blob while it streams: exactly its size, and its sha256 at the
//! end.

use std::io::{self, Read};

/// A running SHA-256: ring's, the one rcross uses everywhere.
///
/// Measured on the build machine (x86-64 with the SHA extensions, 256 MiB in 64 KiB chunks,
/// release build) ring and the sha2 crate both hash about 1.7 GB/s; on CPUs without the SHA
/// extensions ring's AVX2 assembly is about twice as fast as sha2's portable code. ring is
/// needed by rustls anyway, so it is the one implementation; sha2 is left to the tests.
#[derive(Clone)]
pub struct Sha256(ring::digest::Context);

impl Default for Sha256 {
    fn default() -> Self {
        Sha256(ring::digest::Context::new(&ring::digest::SHA256))
    }
}

impl Sha256 {
    pub fn new() -> Sha256 {
        Sha256::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The lowercase hex of the digest so far (the hasher can go on).
    pub fn hex(&self) -> String {
        hex(self.0.clone().finish().as_ref())
    }

    /// `sha256:<hex>` of what was hashed so far.
    pub fn digest(&self) -> String {
        format!("sha256:{}", self.hex())
    }
}

impl std::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sha256")
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    h.digest()
}

/// The lowercase hex of the sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    h.hex()
}

/// `sha512:<hex>` of `bytes`: only to check a digest a registry announces in SHA-512; content
/// is never verified against it.
pub fn sha512_digest(bytes: &[u8]) -> String {
    format!(
        "sha512:{}",
        hex(ring::digest::digest(&ring::digest::SHA512, bytes).as_ref())
    )
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Why a verified blob read failed. Carried inside the `io::Error` the reader returns
/// (`InvalidData` or `UnexpectedEof`), so callers that know a better context (a registry URL)
/// can find it with [`BlobFault::of`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobFault {
    #[error(
        "blob {digest} is longer than the {size} bytes its descriptor says; refusing to read more"
    )]
    Long { digest: String, size: u64 },
    #[error("blob {digest} ended after {read} of the {size} bytes its descriptor says")]
    Short {
        digest: String,
        read: u64,
        size: u64,
    },
    #[error("blob {digest} has digest sha256:{actual}: it is damaged or was replaced")]
    Digest { digest: String, actual: String },
}

impl BlobFault {
    /// The fault inside an error a [`VerifiedBlob`] returned, if it is one.
    pub fn of(error: &io::Error) -> Option<&BlobFault> {
        error.get_ref().and_then(|e| e.downcast_ref::<BlobFault>())
    }

    fn into_io(self) -> io::Error {
        let kind = match self {
            BlobFault::Short { .. } => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, self)
    }
}

/// A reader over a blob that hands out exactly the bytes its descriptor promises: it fails on
/// the first byte past `size` (taking at most `size + 1` bytes from `inner`), at an end before
/// `size`, and at the end when the content's sha256 is not `digest`. A failure is final: later
/// reads fail the same way, so an altered blob never looks like a clean end.
///
/// `size` may be unknown (`None`): then only the digest is checked. `digest` must be
/// `sha256:<hex>` (see [`super::require_sha256`]); anything else never verifies.
pub struct VerifiedBlob<R> {
    inner: R,
    digest: String,
    want: String,
    size: Option<u64>,
    read: u64,
    hasher: Sha256,
    outcome: Option<BlobFault>,
    done: bool,
}

impl<R> VerifiedBlob<R> {
    pub fn new(inner: R, digest: &str, size: Option<u64>) -> VerifiedBlob<R> {
        VerifiedBlob {
            inner,
            digest: digest.to_string(),
            want: digest
                .strip_prefix("sha256:")
                .unwrap_or_default()
                .to_ascii_lowercase(),
            size,
            read: 0,
            hasher: Sha256::new(),
            outcome: None,
            done: false,
        }
    }

    /// Bytes handed out so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// The reader it verifies.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    fn fail(&mut self, fault: BlobFault) -> io::Error {
        self.outcome = Some(fault.clone());
        fault.into_io()
    }

    fn finish(&mut self) -> io::Result<usize> {
        if let Some(size) = self.size.filter(|&size| self.read < size) {
            let fault = BlobFault::Short {
                digest: self.digest.clone(),
                read: self.read,
                size,
            };
            return Err(self.fail(fault));
        }
        let actual = self.hasher.hex();
        if actual != self.want {
            let fault = BlobFault::Digest {
                digest: self.digest.clone(),
                actual,
            };
            return Err(self.fail(fault));
        }
        self.done = true;
        Ok(0)
    }
}

impl<R: Read> Read for VerifiedBlob<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(fault) = &self.outcome {
            return Err(fault.clone().into_io());
        }
        if buf.is_empty() || self.done {
            return Ok(0);
        }
        // One byte past the size is enough to know the blob is longer.
        let room = match self.size {
            Some(size) => usize::try_from(size.saturating_add(1) - self.read.min(size))
                .unwrap_or(usize::MAX)
                .min(buf.len()),
            None => buf.len(),
        };
        let n = loop {
            match self.inner.read(&mut buf[..room]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other?,
            }
        };
        if n == 0 {
            return self.finish();
        }
        self.read += n as u64;
        if let Some(size) = self.size.filter(|&size| self.read > size) {
            let fault = BlobFault::Long {
                digest: self.digest.clone(),
                size,
            };
            return Err(self.fail(fault));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(data: &[u8], digest: &str, size: Option<u64>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        VerifiedBlob::new(data, digest, size)
            .read_to_end(&mut out)
            .map(|_| out)
    }

    #[test]
    fn known_digests() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(sha512_digest(b"").starts_with("sha512:cf83e1357eefb8bd"));
        let mut h = Sha256::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.hex(), sha256_hex(b"abc"));
    }

    #[test]
    fn exact_content_reads_through() {
        let d = sha256_digest(b"abc");
        assert_eq!(read_all(b"abc", &d, Some(3)).unwrap(), b"abc");
        assert_eq!(read_all(b"abc", &d, None).unwrap(), b"abc");
        let upper = d.to_ascii_uppercase().replace("SHA256", "sha256");
        assert_eq!(read_all(b"abc", &upper, Some(3)).unwrap(), b"abc");
    }

    #[test]
    fn short_long_and_altered_content_fail() {
        let d = sha256_digest(b"abc");
        let short = read_all(b"ab", &d, Some(3)).unwrap_err();
        assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof);
        assert!(short.to_string().contains("2 of the 3"), "{short}");
        let long = read_all(b"abcd", &d, Some(3)).unwrap_err();
        assert_eq!(long.kind(), io::ErrorKind::InvalidData);
        assert!(
            long.to_string().contains(&d) && long.to_string().contains("3 bytes"),
            "{long}"
        );
        let altered = read_all(b"abd", &d, Some(3)).unwrap_err();
        assert!(
            matches!(BlobFault::of(&altered), Some(BlobFault::Digest { actual, .. }) if *actual == sha256_hex(b"abd")),
            "{altered}"
        );
        assert!(read_all(b"abd", &d, None).is_err());
        assert!(read_all(b"abc", "sha512:00", Some(3)).is_err());
    }

    #[test]
    fn at_most_one_byte_past_the_size_is_taken_and_failures_stick() {
        let mut source: &[u8] = &[0u8; 100];
        let mut reader = VerifiedBlob::new(&mut source, "sha256:00", Some(10));
        let mut out = Vec::new();
        assert!(reader.read_to_end(&mut out).is_err());
        assert!(reader.read(&mut [0u8; 4]).is_err(), "a failure is final");
        assert_eq!(source.len(), 89);
    }
}
