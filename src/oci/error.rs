//! Failures of the image writer. Each names the file or value at fault and what to do about it.

use std::path::PathBuf;

use crate::exit;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// Reading an input file or writing the output failed.
    #[error("{action} {}: {source}", .path.display())]
    Io {
        /// What was being done ("reading", "writing", "creating directory").
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An input file changed size while it was being archived.
    #[error("{}: changed while it was being added to a layer (expected {expected} bytes); \
             build outputs must not change during image assembly", .path.display())]
    FileChanged { path: PathBuf, expected: u64 },

    /// A path in the image is not acceptable.
    #[error("layer entry {path:?}: {reason}")]
    InvalidEntry { path: String, reason: String },

    /// A source directory holds something a layer cannot carry portably.
    #[error("{}: {reason}", .path.display())]
    UnsupportedFile { path: PathBuf, reason: String },

    /// An option or environment value is out of range.
    #[error("{what}: {reason}")]
    InvalidOption { what: String, reason: String },

    /// The compressor failed (a bug or resource exhaustion, not bad input).
    #[error("compressing a layer: {message}")]
    Compression { message: String },

    /// A blob copied in (from a base image) is not what its descriptor says.
    #[error(
        "blob {digest} from {from}: {message}; the source is damaged or changed while it \
             was read, so nothing was stored"
    )]
    BlobMismatch {
        digest: String,
        from: String,
        message: String,
    },

    /// An OCI layout on disk is not what the spec says.
    #[error("OCI layout {}: {message}", .path.display())]
    Layout { path: PathBuf, message: String },
}

impl OciError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        OciError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn layout(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        OciError::Layout {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The documented exit code (see `crate::exit`) a command should end with for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            OciError::InvalidEntry { .. }
            | OciError::UnsupportedFile { .. }
            | OciError::InvalidOption { .. }
            | OciError::Layout { .. } => exit::USAGE,
            OciError::BlobMismatch { .. } => exit::CHECK_FAILED,
            OciError::FileChanged { .. } => exit::CHECK_FAILED,
            OciError::Io { .. } | OciError::Compression { .. } => exit::INTERNAL,
        }
    }
}
