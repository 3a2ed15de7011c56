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
}
