//! Where rcross last pushed each blob, per registry (`<user cache>/rcross/pushed/`). A later
//! push of the same blob to another repository of that registry asks the registry to mount it
//! from there (one request, nothing uploaded), as docker push does with the repositories its
//! blob-info cache remembers. A memo that is wrong costs nothing: a registry that cannot mount
//! opens an upload session instead and the blob is uploaded as before; one that is unreadable
//! or malformed is ignored.

use super::reuse::is_sha256;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The memo files under one directory, one per registry.
#[derive(Debug, Clone)]
pub struct PushMemo {
    dir: PathBuf,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Record {
    format: String,
    registry: String,
    /// Order of remembering: the oldest entries go first beyond [`PushMemo::KEEP`].
    next: u64,
    /// Blob digest → (repository, when it was remembered).
    blobs: BTreeMap<String, (String, u64)>,
}

impl PushMemo {
    const FORMAT: &'static str = "rcross-push-memo-v1";
    /// Blobs remembered per registry.
    pub const KEEP: usize = 4096;

    pub fn at(dir: impl Into<PathBuf>) -> PushMemo {
        PushMemo { dir: dir.into() }
    }

    pub fn in_user_cache() -> Option<PushMemo> {
        Some(PushMemo::at(
            crate::userdir::user_cache_root()?.join("pushed"),
        ))
    }

    fn file(&self, registry: &str) -> PathBuf {
        let hex = crate::image::digest::sha256_hex(registry.as_bytes());
        self.dir.join(format!("{}.json", &hex[..32]))
    }

    fn load(&self, registry: &str) -> Record {
        std::fs::read(self.file(registry))
            .ok()
            .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
            .filter(|r| r.format == Self::FORMAT && r.registry == registry)
            .unwrap_or_else(|| Record {
                format: Self::FORMAT.to_string(),
                registry: registry.to_string(),
                ..Record::default()
            })
    }

    /// Every remembered blob of `registry` (digest → repository), well-formed ones only.
    pub fn homes(&self, registry: &str) -> BTreeMap<String, String> {
        self.load(registry)
            .blobs
            .into_iter()
            .filter(|(digest, (repo, _))| is_sha256(digest) && repository_name(repo))
            .map(|(digest, (repo, _))| (digest, repo))
            .collect()
    }

    /// Remembers that `repository` of `registry` has `digests` (best effort: a memo that
    /// cannot be written only costs a later push its uploads).
    pub fn remember<'a>(
        &self,
        registry: &str,
        repository: &str,
        digests: impl IntoIterator<Item = &'a str>,
    ) {
        let mut record = self.load(registry);
        let digests: Vec<&str> = digests.into_iter().collect();
        // Nothing new: the file is left as it is (a no-op push writes nothing).
        if digests
            .iter()
            .all(|d| record.blobs.get(*d).is_some_and(|(r, _)| r == repository))
        {
            return;
        }
        for digest in digests {
            record
                .blobs
                .insert(digest.to_string(), (repository.to_string(), record.next));
            record.next += 1;
        }
        if record.blobs.len() > Self::KEEP {
            let mut ages: Vec<u64> = record.blobs.values().map(|(_, at)| *at).collect();
            ages.sort_unstable();
            let cut = ages[record.blobs.len() - Self::KEEP];
            record.blobs.retain(|_, (_, at)| *at >= cut);
        }
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
            serde_json::to_writer(&mut tmp, &record)?;
            tmp.persist(self.file(registry)).map_err(|e| e.error)?;
            Ok(())
        };
        let _ = write();
    }
}

/// The distribution spec's repository name grammar, loosely: lowercase path components of
/// `[a-z0-9._-]`, separated by `/` (what goes into a mount's `from=` must be no more).
fn repository_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u32) -> String {
        format!("sha256:{:064x}", n)
    }

    #[test]
    fn remembers_per_registry_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let memo = PushMemo::at(dir.path());
        assert!(memo.homes("127.0.0.1:5000").is_empty());
        memo.remember(
            "127.0.0.1:5000",
            "a/one",
            [digest(1).as_str(), digest(2).as_str()],
        );
        memo.remember("127.0.0.1:5000", "two", [digest(2).as_str()]);
        memo.remember("other.example", "three", [digest(1).as_str()]);
        let homes = memo.homes("127.0.0.1:5000");
        assert_eq!(homes.get(&digest(1)).map(String::as_str), Some("a/one"));
        assert_eq!(homes.get(&digest(2)).map(String::as_str), Some("two"));
        assert_eq!(homes.len(), 2);
        assert_eq!(
            memo.homes("other.example")
                .get(&digest(1))
                .map(String::as_str),
            Some("three")
        );
        // Beyond KEEP, the oldest go.
        let many: Vec<String> = (10..10 + PushMemo::KEEP as u32).map(digest).collect();
        memo.remember("127.0.0.1:5000", "many", many.iter().map(String::as_str));
        let homes = memo.homes("127.0.0.1:5000");
        assert_eq!(homes.len(), PushMemo::KEEP);
        assert!(!homes.contains_key(&digest(1)) && homes.contains_key(&digest(10)));
    }

    #[test]
    fn malformed_entries_are_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let memo = PushMemo::at(dir.path());
        memo.remember("r", "ok", [digest(1).as_str()]);
        let mut record = memo.load("r");
        record.blobs.insert("sha256:XYZ".into(), ("ok".into(), 9));
        record.blobs.insert(digest(2), ("a&b=c".into(), 10));
        record.blobs.insert(digest(3), ("UPPER".into(), 11));
        std::fs::write(memo.file("r"), serde_json::to_vec(&record).unwrap()).unwrap();
        let homes = memo.homes("r");
        assert_eq!(homes.keys().collect::<Vec<_>>(), vec![&digest(1)]);
        std::fs::write(memo.file("r"), b"not json").unwrap();
        assert!(memo.homes("r").is_empty());
    }
}
