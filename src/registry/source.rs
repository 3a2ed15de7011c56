//! [`RegistryImage`]: one reference in a registry, read through [`ImageSource`].

use std::io::Read;
use std::sync::Mutex;

use crate::image::{ImageSource, SourceError};

use super::client::{Client, Manifest};
use super::error::RegistryError;
use super::reference::Reference;

/// The image a reference names in its registry. The root manifest is fetched once, so a tag
/// that moves while the image is being read still yields one consistent image.
#[derive(Debug)]
pub struct RegistryImage {
    client: Client,
    reference: Reference,
    root: Mutex<Option<Manifest>>,
}

impl RegistryImage {
    pub fn new(client: Client, reference: Reference) -> RegistryImage {
        RegistryImage {
            client,
            reference,
            root: Mutex::new(None),
        }
    }

    /// The image `reference` names, whose root manifest (or index) was fetched already: it is
    /// the one read, so the image is the one that was probed.
    pub fn with_root(client: Client, reference: Reference, root: Manifest) -> RegistryImage {
        RegistryImage {
            client,
            reference,
            root: Mutex::new(Some(root)),
        }
    }

    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// The root manifest or index with its digest, fetched on first use.
    pub fn root_manifest(&self) -> Result<Manifest, RegistryError> {
        if let Ok(cached) = self.root.lock() {
            if let Some(manifest) = cached.as_ref() {
                return Ok(manifest.clone());
            }
        }
        let manifest = self.client.get_manifest(&self.reference)?;
        if let Ok(mut cached) = self.root.lock() {
            *cached = Some(manifest.clone());
        }
        Ok(manifest)
    }

    fn what(&self, digest: &str) -> String {
        format!("{} blob {digest}", self.describe())
    }
}

impl ImageSource for RegistryImage {
    fn describe(&self) -> String {
        self.reference.to_string()
    }

    fn root(&self) -> Result<(String, Vec<u8>), SourceError> {
        self.root_manifest()
            .map(|m| (m.media_type, m.bytes))
            .map_err(|e| e.into_source_error(&self.describe()))
    }

    /// Configs live under `/blobs/`, but the manifests an index points to live under
    /// `/manifests/`: a blob the registry does not know is looked up there next.
    fn blob_bytes(&self, digest: &str, max: u64) -> Result<Vec<u8>, SourceError> {
        let what = self.what(digest);
        match self.client.blob_bytes(&self.reference, digest, max) {
            Err(e) if e.status() == Some(404) => self.manifest_bytes(digest, max),
            result => result.map_err(|e| e.into_source_error(&what)),
        }
    }

    /// From `/manifests/DIGEST`, digest-checked by the client.
    fn manifest_bytes(&self, digest: &str, max: u64) -> Result<Vec<u8>, SourceError> {
        let what = self.what(digest);
        let manifest = self
            .client
            .get_manifest(&self.reference.with_digest(digest))
            .map_err(|e| e.into_source_error(&what))?;
        if manifest.bytes.len() as u64 > max {
            return Err(SourceError::TooLarge {
                what,
                size: manifest.bytes.len() as u64,
                max,
            });
        }
        Ok(manifest.bytes)
    }

    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + Send>, SourceError> {
        self.client
            .open_blob(&self.reference, digest)
            .map(|reader| Box::new(reader) as Box<dyn Read + Send>)
            .map_err(|e| e.into_source_error(&self.what(digest)))
    }

    /// Bounded by the descriptor's size, and resumed with `Range` when a download is cut.
    fn open_blob_sized(
        &self,
        digest: &str,
        size: u64,
    ) -> Result<Box<dyn Read + Send>, SourceError> {
        self.client
            .open_blob_sized(&self.reference, digest, size)
            .map(|reader| Box::new(reader) as Box<dyn Read + Send>)
            .map_err(|e| e.into_source_error(&self.what(digest)))
    }
}
