//! An OCI image layout directory (`oci-layout`, `index.json`, `blobs/ALG/HEX`) read as an
//! [`ImageSource`], and the `rcross-remote-blobs.json` note in which `rcross build --push` lists
//! the layers it reused from a registry instead of storing them (the writer, [`crate::oci`],
//! keeps the note; readers ask it where a missing blob is). Blobs are checked against their
//! sha256 digests through [`VerifiedBlob`]; other digest algorithms are refused, never read
//! unchecked.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::model::{ImageIndex, MEDIA_TYPE_OCI_INDEX};
use super::{require_sha256, ImageSource, SourceError, VerifiedBlob};

/// Media type of an OCI image index.
pub const INDEX_MEDIA_TYPE: &str = MEDIA_TYPE_OCI_INDEX;
/// Largest index.json accepted.
const MAX_INDEX: u64 = 8 * 1024 * 1024;

/// An OCI image layout on disk, optionally narrowed to one reference name (`oci:DIR:TAG`).
#[derive(Debug, Clone)]
pub struct LayoutSource {
    dir: PathBuf,
    reference: Option<String>,
}

impl LayoutSource {
    /// Open `dir`; with `reference`, the manifest whose `org.opencontainers.image.ref.name`
    /// annotation has that value is the root instead of the whole index.
    pub fn open(dir: &Path, reference: Option<&str>) -> Result<Self, SourceError> {
        let layout = dir.join("oci-layout");
        let text = fs::read_to_string(&layout).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => SourceError::Invalid {
                what: dir.display().to_string(),
                message: "not an OCI image layout (no oci-layout file); create one with `skopeo copy ... oci:DIR` or `docker buildx build --output type=oci,tar=false,dest=DIR`".into(),
            },
            _ => SourceError::Io {
                what: layout.display().to_string(),
                source: e,
            },
        })?;
        if !text.contains("imageLayoutVersion") {
            return Err(SourceError::Invalid {
                what: layout.display().to_string(),
                message: "no imageLayoutVersion".into(),
            });
        }
        Ok(LayoutSource {
            dir: dir.to_path_buf(),
            reference: reference.map(str::to_string),
        })
    }

    /// Parse `oci:DIR` or `oci:DIR:REF` as skopeo spells it.
    pub fn from_spec(spec: &str) -> Result<Self, SourceError> {
        let rest = spec.strip_prefix("oci:").unwrap_or(spec);
        if Path::new(rest).join("oci-layout").exists() {
            return Self::open(Path::new(rest), None);
        }
        if let Some((dir, r)) = rest.rsplit_once(':') {
            if Path::new(dir).join("oci-layout").exists() {
                return Self::open(Path::new(dir), Some(r));
            }
        }
        Self::open(Path::new(rest), None)
    }

    /// The layout's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The reference name it is narrowed to, if any.
    pub fn reference(&self) -> Option<&str> {
        self.reference.as_deref()
    }

    /// Where blob `digest` is stored (whether or not it is there).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, SourceError> {
        let bad = || SourceError::Invalid {
            what: format!("digest {digest:?}"),
            message: "not ALGORITHM:HEX".into(),
        };
        let (alg, hex) = digest.split_once(':').ok_or_else(bad)?;
        let alg_ok = !alg.is_empty()
            && alg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
        let hex_ok = !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if !alg_ok || !hex_ok {
            return Err(bad());
        }
        Ok(self.dir.join("blobs").join(alg).join(hex))
    }

    /// The blob's file, and how to name it in messages.
    fn open_blob_file(&self, digest: &str) -> Result<(File, String), SourceError> {
        let path = self.blob_path(digest)?;
        let what = self.what(digest);
        match File::open(&path) {
            Ok(f) => Ok((f, what)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A layer `rcross build --push` reused from a registry is not stored here on
                // purpose: say where it is and how to get a complete layout.
                if remote_blob_source(&self.dir, digest).is_some() {
                    return Err(SourceError::Invalid {
                        what,
                        message: missing_blob_message(&self.dir, digest),
                    });
                }
                Err(SourceError::NotFound { what })
            }
            Err(e) => Err(SourceError::Io { what, source: e }),
        }
    }

    fn what(&self, digest: &str) -> String {
        format!("blob {digest} in {}", self.describe())
    }
}

impl ImageSource for LayoutSource {
    fn describe(&self) -> String {
        match &self.reference {
            Some(r) => format!("oci:{}:{r}", self.dir.display()),
            None => format!("oci:{}", self.dir.display()),
        }
    }

    fn root(&self) -> Result<(String, Vec<u8>), SourceError> {
        let path = self.dir.join("index.json");
        let what = path.display().to_string();
        let io_error = |e| SourceError::Io {
            what: what.clone(),
            source: e,
        };
        let size = fs::metadata(&path).map_err(io_error)?.len();
        if size > MAX_INDEX {
            return Err(SourceError::TooLarge {
                what,
                size,
                max: MAX_INDEX,
            });
        }
        let bytes = fs::read(&path).map_err(io_error)?;
        let Some(reference) = &self.reference else {
            return Ok((INDEX_MEDIA_TYPE.to_string(), bytes));
        };
        let index: ImageIndex =
            serde_json::from_slice(&bytes).map_err(|e| SourceError::Invalid {
                what: what.clone(),
                message: e.to_string(),
            })?;
        let Some(desc) = index
            .manifests
            .into_iter()
            .find(|d| d.ref_name() == Some(reference.as_str()))
        else {
            return Err(SourceError::NotFound {
                what: format!("reference {reference:?} in {what}"),
            });
        };
        Ok((desc.media_type, self.blob_bytes(&desc.digest, MAX_INDEX)?))
    }

    fn blob_bytes(&self, digest: &str, max: u64) -> Result<Vec<u8>, SourceError> {
        require_sha256(&self.describe(), digest)?;
        let (file, what) = self.open_blob_file(digest)?;
        let size = file
            .metadata()
            .map_err(|e| SourceError::Io {
                what: what.clone(),
                source: e,
            })?
            .len();
        if size > max {
            return Err(SourceError::TooLarge { what, size, max });
        }
        let mut data = Vec::with_capacity(size as usize);
        VerifiedBlob::new(file, digest, Some(size))
            .read_to_end(&mut data)
            .map_err(|e| match super::BlobFault::of(&e) {
                Some(super::BlobFault::Digest { actual, .. }) => SourceError::Invalid {
                    what: what.clone(),
                    message: format!("content has digest sha256:{actual}: the layout is damaged"),
                },
                Some(fault) => SourceError::Invalid {
                    what: what.clone(),
                    message: format!("{fault}: the layout is damaged"),
                },
                None => SourceError::Io {
                    what: what.clone(),
                    source: e,
                },
            })?;
        Ok(data)
    }

    /// The stored bytes, unverified; [`ImageSource::open_blob_sized`] verifies them.
    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + Send>, SourceError> {
        require_sha256(&self.describe(), digest)?;
        let (file, _) = self.open_blob_file(digest)?;
        Ok(Box::new(file))
    }
}

/// Lists the layer blobs `rcross build --push` reused from a registry without storing them in
/// the layout. Not part of the OCI layout spec; other tools ignore it, and `oci-archive` output
/// never includes it.
pub const REMOTE_BLOBS_FILE: &str = "rcross-remote-blobs.json";
/// Largest remote-blob list read back.
const MAX_REMOTE_NOTE_BYTES: u64 = 4 * 1024 * 1024;

/// The content of [`REMOTE_BLOBS_FILE`]: digest → the repository (`REGISTRY/REPO`) that has it.
#[derive(Debug, Serialize, Deserialize, Default)]
pub struct RemoteBlobs {
    #[serde(default)]
    pub blobs: BTreeMap<String, String>,
}

impl RemoteBlobs {
    /// The note of the layout at `dir`; empty when there is none or it cannot be read.
    pub fn read(dir: &Path) -> RemoteBlobs {
        let Ok(file) = std::fs::File::open(dir.join(REMOTE_BLOBS_FILE)) else {
            return RemoteBlobs::default();
        };
        let mut bytes = Vec::new();
        if file
            .take(MAX_REMOTE_NOTE_BYTES)
            .read_to_end(&mut bytes)
            .is_err()
        {
            return RemoteBlobs::default();
        }
        serde_json::from_slice(&bytes).unwrap_or_default()
    }
}

/// The repository (`REGISTRY/REPO`) that the layout at `dir` says holds blob `digest`, when the
/// blob was deliberately not stored there (reused from a registry by `rcross build --push`).
pub fn remote_blob_source(dir: &Path, digest: &str) -> Option<String> {
    RemoteBlobs::read(dir).blobs.remove(digest)
}

/// What to say (after "blob DIGEST: ") about blob `digest`, which is not in the layout at
/// `dir`: where it is and how to get a complete layout, when `rcross build --push` left it out
/// on purpose; else that the layout is incomplete.
pub fn missing_blob_message(dir: &Path, digest: &str) -> String {
    match remote_blob_source(dir, digest) {
        Some(repository) => format!(
            "not stored in this layout: `rcross build --push` reused it from \
             {repository}, which has it, instead of compressing it again (listed in \
             {REMOTE_BLOBS_FILE}). `rcross push` of this layout fetches it from there; to get a \
             complete layout, build with --output oci:DIR (reused blobs are then downloaded), or \
             copy the pushed image: skopeo copy --all docker://{repository}:TAG oci:DIR"
        ),
        None => format!(
            "missing from the layout (no blobs/sha256/{}); the layout is incomplete: write it \
             again (rcross build --output oci:DIR) or copy the image into it again",
            digest.strip_prefix("sha256:").unwrap_or(digest)
        ),
    }
}
