//! Reading images: where their content comes from ([`ImageSource`]: an OCI image layout on
//! disk, a registry), what their documents are ([`model`]: index, manifest, config, platform),
//! how an image's root leads to its per-platform manifests ([`resolve`]) and the one verifying
//! blob reader and SHA-256 ([`digest`]). Every reader of images (verify, inspect, base images,
//! layer reuse, `manifest create`, pushing and exporting a layout) goes through these, so an
//! image reads the same whichever command reads it.

use std::io::Read;

pub mod digest;
pub mod layout;
pub use layout::LayoutSource;
pub mod model;
pub mod platform;
pub mod resolve;
#[cfg(test)]
pub(crate) mod testing;

pub use digest::{sha256_digest, BlobFault, Sha256, VerifiedBlob};
pub use model::{
    Descriptor, Document, DocumentError, History, ImageConfig, ImageIndex, ImageManifest,
    MediaKind, MAX_DOCUMENT,
};
pub use platform::OciPlatform;
pub use resolve::{
    resolve, LoadedImage, PlatformImage, ReadError, ResolveLimits, ResolvedImage, RootDocument,
    SkippedManifest,
};

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

    /// The whole content of a manifest or index an index points to, at most `max` bytes and
    /// checked against `digest`. A registry serves these apart from blobs.
    fn manifest_bytes(&self, digest: &str, max: u64) -> Result<Vec<u8>, SourceError> {
        self.blob_bytes(digest, max)
    }

    /// A stream over a blob's content as the source holds it. Sources need not verify it:
    /// readers use [`ImageSource::open_blob_sized`], which does.
    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + Send>, SourceError>;

    /// A blob (a layer) whose descriptor says it is `size` bytes, through [`VerifiedBlob`]:
    /// digests other than sha256 are refused (they could not be verified), the reader fails as
    /// soon as the content runs past `size` (after at most `size + 1` bytes), when it ends short
    /// and, at its end, when the content does not hash to `digest`. The caller decompresses.
    fn open_blob_sized(
        &self,
        digest: &str,
        size: u64,
    ) -> Result<Box<dyn Read + Send>, SourceError> {
        require_sha256(&self.describe(), digest)?;
        Ok(Box::new(VerifiedBlob::new(
            self.open_blob(digest)?,
            digest,
            Some(size),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sha256_digests_are_read() {
        assert!(require_sha256("s", "sha256:ab").is_ok());
        for digest in ["sha512:ab", "md5:ab", "ab"] {
            let e = require_sha256("oci:x", digest).unwrap_err().to_string();
            assert!(e.contains(digest) && e.contains("sha256"), "{e}");
        }
    }
}
