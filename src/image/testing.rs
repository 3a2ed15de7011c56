//! An in-memory [`ImageSource`] for unit tests of image readers.

use std::collections::BTreeMap;
use std::io::Read;

use super::model::{Descriptor, MEDIA_TYPE_OCI_INDEX};
use super::{ImageSource, SourceError};

/// Blobs by digest; the root given as bytes.
#[derive(Default)]
pub(crate) struct MemorySource {
    pub root: Vec<u8>,
    pub blobs: BTreeMap<String, Vec<u8>>,
}

impl MemorySource {
    /// Stores `bytes`; its descriptor (no media type).
    pub fn add(&mut self, bytes: &[u8]) -> Descriptor {
        let d = Descriptor::of("", bytes);
        self.blobs.insert(d.digest.clone(), bytes.to_vec());
        d
    }
}

impl ImageSource for MemorySource {
    fn describe(&self) -> String {
        "mem".into()
    }
    fn root(&self) -> Result<(String, Vec<u8>), SourceError> {
        Ok((MEDIA_TYPE_OCI_INDEX.into(), self.root.clone()))
    }
    fn blob_bytes(&self, digest: &str, max: u64) -> Result<Vec<u8>, SourceError> {
        let bytes = self
            .blobs
            .get(digest)
            .cloned()
            .ok_or(SourceError::NotFound {
                what: digest.into(),
            })?;
        if bytes.len() as u64 > max {
            return Err(SourceError::TooLarge {
                what: digest.into(),
                size: bytes.len() as u64,
                max,
            });
        }
        Ok(bytes)
    }
    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + Send>, SourceError> {
        Ok(Box::new(std::io::Cursor::new(
            self.blob_bytes(digest, u64::MAX)?,
        )))
    }
}
