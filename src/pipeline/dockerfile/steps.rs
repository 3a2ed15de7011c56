//! The step cache: what each Dockerfile step left (its layer, or nothing) by a key of everything
//! that decides it — the state it started from (the base image's manifest digest, or the key of
//! the step before), the expanded instruction, the working directory and user it ran with, the
//! platform, and the digests of what it read (copied files, bound sources, source stages).
//! Cache mounts and secrets are not part of the key, as in BuildKit.
//!
//! An entry is `<build cache>/steps/<key>/`: `step.json` and, for a step that changed files,
//! `layer` (the compressed blob). It is written under `<build cache>/tmp/` and renamed into
//! place, so a reader sees a whole entry or none. A layer is checked against its digest when
//! it is read back; a corrupt entry is removed and the step runs again. Entries share the build
//! cache's size limit and `rcross cache prune`, least recently used first.

use crate::image::digest::Sha256;
use crate::oci::Layer;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Bumped whenever what goes into a key or an entry changes meaning.
const FORMAT: &str = "rcross-dockerfile-step-v1";

/// A key over length-prefixed parts (no two different part lists give the same bytes).
pub fn key(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    for part in parts {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.hex()
}

/// What a step left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step's layer; `None` when it changed nothing (an empty-layer history entry).
    pub layer: Option<StoredLayer>,
    /// The paths the layer adds or changes (for telling where a file came from).
    pub paths: Vec<String>,
}

/// A layer's descriptor as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLayer {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub diff_id: String,
    pub uncompressed_size: u64,
}

impl From<&Layer> for StoredLayer {
    fn from(l: &Layer) -> Self {
        StoredLayer {
            media_type: l.media_type.clone(),
            digest: l.digest.clone(),
            size: l.size,
            diff_id: l.diff_id.clone(),
            uncompressed_size: l.uncompressed_size,
        }
    }
}

impl From<&StoredLayer> for Layer {
    fn from(l: &StoredLayer) -> Self {
        Layer {
            media_type: l.media_type.clone(),
            digest: l.digest.clone(),
            size: l.size,
            diff_id: l.diff_id.clone(),
            uncompressed_size: l.uncompressed_size,
        }
    }
}

/// A hit: the record and, when it has a layer, its checked blob.
#[derive(Debug, Clone)]
pub struct CachedStep {
    pub record: StepRecord,
    pub blob: Option<PathBuf>,
}

/// The step cache under a build cache root.
#[derive(Debug)]
pub struct StepCache {
    root: PathBuf,
    tmp: PathBuf,
    /// One lock per key being worked on in this process: a second platform that reaches the
    /// same step (a build-platform stage shared by every target) waits, then finds it cached.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl StepCache {
    pub fn in_build_cache(build_cache_root: &Path) -> StepCache {
        StepCache {
            root: build_cache_root.join("steps"),
            tmp: build_cache_root.join("tmp"),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The lock of `key` (hold it while looking up, running and storing the step).
    pub fn lock(&self, key: &str) -> Arc<Mutex<()>> {
        let mut locks = match self.locks.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        locks.entry(key.to_string()).or_default().clone()
    }

    fn entry(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// The entry `key`, its layer checked against its size and digest; a corrupt entry is
    /// removed (and reported as a miss).
    pub fn get(&self, key: &str) -> Option<CachedStep> {
        let entry = self.entry(key);
        let text = std::fs::read(entry.join("step.json")).ok()?;
        let record: StepRecord = serde_json::from_slice(&text).ok()?;
        let blob = match &record.layer {
            None => None,
            Some(layer) => {
                let path = entry.join("layer");
                if !blob_matches(&path, layer) {
                    let _ = std::fs::remove_dir_all(&entry);
                    return None;
                }
                Some(path)
            }
        };
        crate::pipeline::cache::stamp_used(&entry.join("used"));
        Some(CachedStep { record, blob })
    }

    /// Store `record` (with the blob at `blob`, moved in) as `key`; returns the entry as
    /// [`StepCache::get`] would.
    pub fn put(
        &self,
        key: &str,
        record: &StepRecord,
        blob: Option<&Path>,
    ) -> std::io::Result<CachedStep> {
        std::fs::create_dir_all(&self.tmp)?;
        std::fs::create_dir_all(&self.root)?;
        let tmp = tempfile::Builder::new()
            .prefix("step")
            .tempdir_in(&self.tmp)?;
        std::fs::write(
            tmp.path().join("step.json"),
            serde_json::to_vec_pretty(record).unwrap_or_default(),
        )?;
        if let Some(blob) = blob {
            let dest = tmp.path().join("layer");
            if std::fs::rename(blob, &dest).is_err() {
                std::fs::copy(blob, &dest)?;
            }
        }
        std::fs::write(tmp.path().join("used"), now_ns().to_string())?;
        let entry = self.entry(key);
        let staged = tmp.keep();
        if std::fs::rename(&staged, &entry).is_err() {
            // Another build stored the same key first: its entry is as good as ours.
            let _ = std::fs::remove_dir_all(&staged);
        }
        self.get(key).ok_or_else(|| {
            std::io::Error::other(format!(
                "the step cache entry {} cannot be read back",
                entry.display()
            ))
        })
    }
}

/// Whether the file at `path` has the layer's size and sha256.
fn blob_matches(path: &Path, layer: &StoredLayer) -> bool {
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    if file.metadata().map(|m| m.len()).ok() != Some(layer.size) {
        return false;
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(_) => return false,
        }
    }
    h.digest() == layer.digest
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer_of(bytes: &[u8]) -> StoredLayer {
        StoredLayer {
            media_type: crate::oci::MEDIA_TYPE_LAYER_GZIP.into(),
            digest: crate::image::sha256_digest(bytes),
            size: bytes.len() as u64,
            diff_id: "sha256:00".into(),
            uncompressed_size: 0,
        }
    }

    #[test]
    fn keys_separate_their_parts() {
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
        assert_eq!(key(&[b"a"]), key(&[b"a"]));
    }

    #[test]
    fn a_stored_step_is_found_and_a_corrupt_one_is_removed() {
        let t = tempfile::tempdir().unwrap();
        let cache = StepCache::in_build_cache(t.path());
        assert!(cache.get("k").is_none());
        let blob = t.path().join("blob");
        std::fs::write(&blob, b"layer bytes").unwrap();
        let record = StepRecord {
            layer: Some(layer_of(b"layer bytes")),
            paths: vec!["etc/x".into()],
        };
        let put = cache.put("k", &record, Some(&blob)).unwrap();
        assert_eq!(put.record, record);
        let got = cache.get("k").unwrap();
        assert_eq!(std::fs::read(got.blob.unwrap()).unwrap(), b"layer bytes");
        // Same size, other bytes: the digest check catches it.
        std::fs::write(t.path().join("steps/k/layer"), b"LAYER BYTES").unwrap();
        assert!(cache.get("k").is_none());
        assert!(
            !t.path().join("steps/k").exists(),
            "the corrupt entry is removed"
        );
        let empty = StepRecord {
            layer: None,
            paths: vec![],
        };
        cache.put("e", &empty, None).unwrap();
        assert!(cache.get("e").unwrap().blob.is_none());
        // Steps share the build cache's limit and `rcross cache prune`.
        let build_cache = crate::pipeline::cache::BuildCache::at(t.path());
        let pruned = build_cache.prune(0).unwrap();
        assert_eq!(pruned.layers_removed, 1, "{pruned:?}");
        assert!(cache.get("e").is_none());
    }
}
