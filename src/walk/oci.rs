//! An OCI image layout directory (`oci-layout`, `index.json`, `blobs/ALG/HEX`) as an
//! [`ImageSource`]. Blobs are checked against their sha256 digests: small ones when read, layers
//! when their stream reaches its end. Other digest algorithms are refused, never read unchecked.

use crate::image::{ImageSource, SourceError};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Media type of an OCI image index.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Largest index.json accepted.
const MAX_INDEX: u64 = 8 * 1024 * 1024;

/// An OCI image layout on disk, optionally narrowed to one reference name (`oci:DIR:TAG`).
#[derive(Debug, Clone)]
pub struct OciLayout {
    dir: PathBuf,
    reference: Option<String>,
}

impl OciLayout {
    /// Open `dir`; with `reference`, the manifest whose `org.opencontainers.image.ref.name`
    /// annotation has that value is the root instead of the whole index.
    pub fn open(dir: &Path, reference: Option<&str>) -> Result<Self, SourceError> {
        let what = dir.display().to_string();
        let layout = dir.join("oci-layout");
        let text = fs::read_to_string(&layout).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => SourceError::Invalid {
                what: what.clone(),
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
        Ok(OciLayout {
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

    fn blob_path(&self, digest: &str) -> Result<PathBuf, SourceError> {
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
                if crate::oci::remote_blob_source(&self.dir, digest).is_some() {
                    return Err(SourceError::Invalid {
                        what,
                        message: crate::oci::missing_blob_message(&self.dir, digest),
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

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ImageSource for OciLayout {
    fn describe(&self) -> String {
        match &self.reference {
            Some(r) => format!("oci:{}:{r}", self.dir.display()),
            None => format!("oci:{}", self.dir.display()),
        }
    }

    fn root(&self) -> Result<(String, Vec<u8>), SourceError> {
        let path = self.dir.join("index.json");
        let what = path.display().to_string();
        let size = fs::metadata(&path)
            .map_err(|e| SourceError::Io {
                what: what.clone(),
                source: e,
            })?
            .len();
        if size > MAX_INDEX {
            return Err(SourceError::TooLarge {
                what,
                size,
                max: MAX_INDEX,
            });
        }
        let bytes = fs::read(&path).map_err(|e| SourceError::Io {
            what: what.clone(),
            source: e,
        })?;
        let Some(reference) = &self.reference else {
            return Ok((INDEX_MEDIA_TYPE.to_string(), bytes));
        };
        let index: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| SourceError::Invalid {
                what: what.clone(),
                message: e.to_string(),
            })?;
        let found = index["manifests"].as_array().and_then(|m| {
            m.iter().find(|d| {
                d["annotations"]["org.opencontainers.image.ref.name"].as_str()
                    == Some(reference.as_str())
            })
        });
        let Some(desc) = found else {
            return Err(SourceError::NotFound {
                what: format!("reference {reference:?} in {what}"),
            });
        };
        let digest = desc["digest"].as_str().unwrap_or_default();
        let media = desc["mediaType"].as_str().unwrap_or_default().to_string();
        Ok((media, self.blob_bytes(digest, MAX_INDEX)?))
    }

    fn blob_bytes(&self, digest: &str, max: u64) -> Result<Vec<u8>, SourceError> {
        crate::image::require_sha256(&self.describe(), digest)?;
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
        file.take(max)
            .read_to_end(&mut data)
            .map_err(|e| SourceError::Io {
                what: what.clone(),
                source: e,
            })?;
        let want = digest.strip_prefix("sha256:").unwrap_or_default();
        let got = sha256_hex(&data);
        if got != want.to_ascii_lowercase() {
            return Err(SourceError::Invalid {
                what,
                message: format!("content has digest sha256:{got}: the layout is damaged"),
            });
        }
        Ok(data)
    }

    /// Verified against its sha256 digest at the end of the stream; other algorithms are
    /// refused rather than read unverified.
    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + Send>, SourceError> {
        crate::image::require_sha256(&self.describe(), digest)?;
        let (file, what) = self.open_blob_file(digest)?;
        Ok(Box::new(Verified {
            inner: file,
            hasher: Sha256::new(),
            want: digest
                .strip_prefix("sha256:")
                .unwrap_or_default()
                .to_ascii_lowercase(),
            what,
            done: false,
        }))
    }
}

/// A reader that fails at its end when the bytes read do not have the expected sha256.
struct Verified<R> {
    inner: R,
    hasher: Sha256,
    want: String,
    what: String,
    done: bool,
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
        } else if !buf.is_empty() && !self.done {
            self.done = true;
            let got = hex(&self.hasher.clone().finalize());
            if got != self.want {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} has digest sha256:{got}: the layout is damaged",
                        self.what
                    ),
                ));
            }
        }
        Ok(n)
    }
}
