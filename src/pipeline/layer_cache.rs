//! The layer cache: compressed layer blobs keyed by what decides their bytes, so an unchanged
//! layer (a build cache hit, the same files) is not compressed again. Compressing is the
//! largest cost of a build whose platforms come from the build cache.
//!
//! A layer's compressed bytes are a function of its uncompressed tar (its diff_id, which is
//! cheap to compute: no compression) and the compression settings. The key is a digest of
//! those; the entry holds the blob and its descriptor. A hit is copied into the layout through
//! the layout's own size + sha256 check, so a corrupt entry is never used: it is removed and
//! the layer compressed again. Entries live in the build cache's root (`layers/<key>/`) and are
//! pruned with it, least recently used first.

use crate::image::digest::Sha256;
use crate::oci::{self, Layer, LayerEntry, LayerOptions, OciError, OciLayout};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Bumped whenever what goes into a key or an entry changes meaning.
const FORMAT: &str = "rcross-layer-cache-v1";

/// The layer cache under one build cache root.
#[derive(Debug, Clone)]
pub struct LayerCache {
    root: PathBuf,
}

/// What an entry records besides the blob: the layer's descriptor.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct StoredLayer {
    media_type: String,
    digest: String,
    size: u64,
    diff_id: String,
    uncompressed_size: u64,
}

impl LayerCache {
    /// The layer cache kept in the build cache rooted at `build_cache_root`.
    pub fn in_build_cache(build_cache_root: &Path) -> LayerCache {
        LayerCache {
            root: build_cache_root.join("layers"),
        }
    }

    /// The key of a layer whose tar has `diff_id`, compressed with `options` (the number of
    /// compressing threads does not change the bytes: `oci::write_layer` makes sure of it).
    pub fn key(diff_id: &str, options: &LayerOptions) -> String {
        let mut h = Sha256::new();
        for part in [
            FORMAT.as_bytes(),
            diff_id.as_bytes(),
            format!("{:?}", options.compression).as_bytes(),
            options.mtime.to_string().as_bytes(),
        ] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.hex()
    }

    /// The layer of `entries` in `layout`: copied from the cache when `look_up` and it holds
    /// it, else compressed into the layout (and then stored, best effort). Looking up costs a
    /// pass over the files (the diff_id) before a miss compresses them, so it is for layers
    /// likely to be there: files that came from the build cache. A layer compressed here is
    /// stored under the diff_id its compression gave, at no extra cost.
    pub fn write_layer(
        &self,
        layout: &OciLayout,
        entries: &[LayerEntry],
        options: &LayerOptions,
        look_up: bool,
    ) -> Result<Layer, OciError> {
        if look_up {
            let (diff_id, _) = oci::diff_id(entries, options.mtime)?;
            let key = Self::key(&diff_id, options);
            if let Some(layer) = self.restore(&key, &diff_id, options, layout) {
                return Ok(layer);
            }
        }
        let layer = layout.write_layer(entries, options)?;
        // A cache that cannot be written only costs the next build a compression.
        let _ = self.store(&Self::key(&layer.diff_id, options), layout, &layer);
        Ok(layer)
    }

    /// The entry `key` copied into `layout` (checked), or `None`: absent, or not what it says
    /// (then it is removed).
    fn restore(
        &self,
        key: &str,
        diff_id: &str,
        options: &LayerOptions,
        layout: &OciLayout,
    ) -> Option<Layer> {
        let dir = self.root.join(key);
        let stored: Option<StoredLayer> =
            serde_json::from_slice(&std::fs::read(dir.join("layer.json")).ok()?)
                .ok()
                .filter(|s: &StoredLayer| {
                    s.diff_id == diff_id && s.media_type == options.compression.media_type()
                });
        let copied = stored.and_then(|s| {
            let mut blob = std::fs::File::open(dir.join("blob")).ok()?;
            let from = dir.display().to_string();
            layout
                .copy_blob(&s.digest, s.size, &from, &mut blob)
                .ok()
                .map(|()| s)
        });
        let Some(s) = copied else {
            let _ = std::fs::remove_dir_all(&dir);
            return None;
        };
        // Recently used entries are pruned last.
        super::cache::stamp_used(&dir.join("used"));
        Some(Layer {
            media_type: s.media_type,
            digest: s.digest,
            size: s.size,
            diff_id: s.diff_id,
            uncompressed_size: s.uncompressed_size,
        })
    }

    /// Stores the layout's blob of `layer` as entry `key`: written in a temporary directory,
    /// renamed into place whole.
    fn store(&self, key: &str, layout: &OciLayout, layer: &Layer) -> std::io::Result<()> {
        let dir = self.root.join(key);
        if dir.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.root)?;
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&self.root)?;
        let blob = layout
            .blob_path(&layer.digest)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        // A hard link when the layout is on the same file system (blobs are never changed in
        // place; a damaged one fails the digest check on restore), else a copy.
        if std::fs::hard_link(&blob, tmp.path().join("blob")).is_err() {
            std::fs::copy(&blob, tmp.path().join("blob"))?;
        }
        let stored = StoredLayer {
            media_type: layer.media_type.clone(),
            digest: layer.digest.clone(),
            size: layer.size,
            diff_id: layer.diff_id.clone(),
            uncompressed_size: layer.uncompressed_size,
        };
        std::fs::write(
            tmp.path().join("layer.json"),
            serde_json::to_vec(&stored).map_err(std::io::Error::other)?,
        )?;
        std::fs::write(tmp.path().join("used"), now_ns().to_string())?;
        let tmp = tmp.keep();
        if std::fs::rename(&tmp, &dir).is_err() {
            // Another build stored it first.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Ok(())
    }
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Compressor, FileContent};

    fn entries(content: &[u8]) -> Vec<LayerEntry> {
        vec![
            LayerEntry::directory("usr"),
            LayerEntry::file("usr/hello", FileContent::Bytes(content.to_vec()), 0o755),
        ]
    }

    fn options() -> LayerOptions {
        LayerOptions {
            compression: Compressor::Gzip { level: 6 },
            threads: 1,
            mtime: 0,
        }
    }

    #[test]
    fn a_hit_gives_the_same_layer_and_a_change_misses() {
        let d = tempfile::tempdir().unwrap();
        let cache = LayerCache::in_build_cache(d.path());
        let fresh = OciLayout::create(&d.path().join("a")).unwrap();
        let compressed = fresh.write_layer(&entries(b"hi"), &options()).unwrap();
        // Compressed without a look-up (files that did not come from the build cache), and
        // stored under the key a look-up computes.
        let l1 = OciLayout::create(&d.path().join("l1")).unwrap();
        let first = cache
            .write_layer(&l1, &entries(b"hi"), &options(), false)
            .unwrap();
        assert_eq!(first, compressed);
        assert_eq!(
            std::fs::read_dir(d.path().join("layers")).unwrap().count(),
            1
        );
        let (diff_id, _) = oci::diff_id(&entries(b"hi"), 0).unwrap();
        let entry = d
            .path()
            .join("layers")
            .join(LayerCache::key(&diff_id, &options()));
        assert!(entry.join("blob").is_file());
        // From the cache: same descriptor, same bytes in the new layout.
        let l2 = OciLayout::create(&d.path().join("l2")).unwrap();
        let second = cache
            .write_layer(&l2, &entries(b"hi"), &options(), true)
            .unwrap();
        assert_eq!(second, compressed);
        assert_eq!(
            std::fs::read(l2.blob_path(&second.digest).unwrap()).unwrap(),
            std::fs::read(fresh.blob_path(&compressed.digest).unwrap()).unwrap()
        );
        // Other content, other compression, other mtime: other keys.
        let (diff_id, _) = oci::diff_id(&entries(b"hi"), 0).unwrap();
        let (other, _) = oci::diff_id(&entries(b"ho"), 0).unwrap();
        let zstd = LayerOptions {
            compression: Compressor::Zstd { level: 3 },
            ..options()
        };
        let later = LayerOptions {
            mtime: 1,
            ..options()
        };
        let key = LayerCache::key(&diff_id, &options());
        assert_ne!(key, LayerCache::key(&other, &options()));
        assert_ne!(key, LayerCache::key(&diff_id, &zstd));
        assert_ne!(key, LayerCache::key(&diff_id, &later));
        let l3 = OciLayout::create(&d.path().join("l3")).unwrap();
        let changed = cache
            .write_layer(&l3, &entries(b"ho"), &options(), true)
            .unwrap();
        assert_ne!(changed.digest, compressed.digest);
        assert_eq!(
            std::fs::read_dir(d.path().join("layers")).unwrap().count(),
            2
        );
    }

    #[test]
    fn a_corrupt_entry_is_detected_removed_and_not_used() {
        let d = tempfile::tempdir().unwrap();
        let cache = LayerCache::in_build_cache(d.path());
        let l1 = OciLayout::create(&d.path().join("l1")).unwrap();
        let good = cache
            .write_layer(&l1, &entries(b"hi"), &options(), true)
            .unwrap();
        let (diff_id, _) = oci::diff_id(&entries(b"hi"), 0).unwrap();
        let entry = d
            .path()
            .join("layers")
            .join(LayerCache::key(&diff_id, &options()));
        // The stored blob is damaged (a new file: the layout's hard link keeps its bytes).
        std::fs::remove_file(entry.join("blob")).unwrap();
        std::fs::write(entry.join("blob"), b"not the layer").unwrap();
        let l2 = OciLayout::create(&d.path().join("l2")).unwrap();
        let again = cache
            .write_layer(&l2, &entries(b"hi"), &options(), true)
            .unwrap();
        assert_eq!(again, good);
        assert_eq!(
            std::fs::read(l2.blob_path(&again.digest).unwrap()).unwrap(),
            std::fs::read(l1.blob_path(&good.digest).unwrap()).unwrap()
        );
        // Compressed again and stored afresh, with the right bytes.
        assert_ne!(std::fs::read(entry.join("blob")).unwrap(), b"not the layer");
        // A record that lies about the layer is not used either.
        std::fs::write(entry.join("layer.json"), b"{\"media_type\":\"x\"}").unwrap();
        let l3 = OciLayout::create(&d.path().join("l3")).unwrap();
        assert_eq!(
            cache
                .write_layer(&l3, &entries(b"hi"), &options(), true)
                .unwrap(),
            good
        );
    }
}
