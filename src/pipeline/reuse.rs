//! Layer reuse for `rcross build --push` on a runner without a local cache (issue 5 §6).
//!
//! Before anything is assembled, the tags being pushed (and `--cache-from` references, buildx's
//! registry cache source) are read: index → per-platform manifests → configs give, for each
//! layer the registry already has, its uncompressed digest (the config's `rootfs.diff_ids`) and
//! its compressed descriptor. That is the [`ReuseMap`]. Then each layer of the new image is
//! first streamed through SHA-256 only ([`crate::oci::diff_id`], no compression); when the map
//! knows that diff_id, the registry's blob is used as it is: nothing is compressed and nothing
//! is uploaded (the push's HEAD finds it). Otherwise the layer is compressed as always.
//!
//! Because layers are reproducible, the same sources give the same diff_id, so a reused layer
//! is the very blob an earlier `rcross build` compressed with the same settings, and the image
//! gets the same manifest and index digests as a build that compressed it locally. Only blobs
//! of the requested compression are reused (gzip for `--compression gzip`, including Docker's
//! gzip media type, written under its OCI name; zstd for `--compression zstd`).
//!
//! Where reused blobs go locally: with the default layout (`--push` without `--output`) they
//! are not stored; the layout notes which registry repository has them
//! ([`OciLayout::note_remote_blob`]), `rcross push` of it takes them from there, and readers
//! that need their bytes (`verify`, `inspect`) name the blob and how to get it. With an
//! explicit `--output` they are downloaded (streamed, size- and digest-checked), so that output
//! is complete.
//!
//! A registry answer is remembered ([`ReuseMemo`], `<user cache>/rcross/reuse/`) under the
//! digest of the root document the tag named: the documents under one digest never change, so
//! the next build that finds the tag naming the same root (one GET, digest-checked) takes the
//! pairs from the memo rather than reading every manifest and config again.
//!
//! Trust: the pairing diff_id → blob comes from the registry's image configs, as with buildx's
//! and containerd's caches; only the repositories being pushed to and those named with
//! `--cache-from` are consulted. Every document is digest-checked and size-capped; a reference
//! whose documents are inconsistent (layer and diff_id counts differ, malformed digests) is
//! ignored as a whole, with a warning. Failing to read a reference never fails the build: it is
//! built without reuse.

use std::collections::BTreeMap;
use std::thread::JoinHandle;

use super::layer_cache::LayerCache;
use crate::image::model::oci_layer_media_type;
use crate::image::{self, ReadError, ResolveLimits, SourceError, MAX_DOCUMENT};
use crate::oci::{self, Compressor, Layer, LayerEntry, LayerOptions, OciError, OciLayout};
use crate::registry::{Client, Reference, RegistryImage};
/// Image manifests read per reference (an index's platforms, nested indexes included).
const MAX_MANIFESTS: usize = 64;
/// Layers taken per reference, all manifests together.
const MAX_LAYERS: usize = 4096;
/// Nesting of indexes followed.
const MAX_DEPTH: usize = 2;
/// Largest layer size believed (1 TiB): anything larger is a broken descriptor.
const MAX_LAYER_SIZE: u64 = 1 << 40;

/// An image whose layers may be reused.
#[derive(Debug, Clone)]
pub struct ReuseSource {
    pub reference: Reference,
    /// Named with `--cache-from` (a missing one is worth a warning), rather than a tag being
    /// pushed (which is missing on a first push).
    pub cache_from: bool,
}

/// A compressed blob a registry has, and what it decompresses to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryLayer {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    /// The repository that has it (no tag).
    pub from: Reference,
}

/// diff_id → a compressed blob of the requested compression that a registry has.
#[derive(Debug, Default, Clone)]
pub struct ReuseMap {
    by_diff_id: BTreeMap<String, RegistryLayer>,
    /// The references that contributed, as written.
    pub sources: Vec<String>,
    /// What each tag being pushed named when it was read (tags that did not exist are absent).
    pub roots: Vec<SeenRoot>,
}

/// A tag being pushed, the root document it named, and when the registry said so.
#[derive(Debug, Clone)]
pub struct SeenRoot {
    pub reference: Reference,
    pub digest: String,
    pub at: std::time::Instant,
}

impl ReuseMap {
    pub fn get(&self, diff_id: &str) -> Option<&RegistryLayer> {
        self.by_diff_id.get(diff_id)
    }

    pub fn len(&self) -> usize {
        self.by_diff_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_diff_id.is_empty()
    }
}

/// The map, and what went wrong reading some references (one line each, for the log).
#[derive(Debug, Default)]
pub struct Gathered {
    pub map: ReuseMap,
    pub warnings: Vec<String>,
}

/// The map being gathered in the background while the platforms build.
pub struct Pending {
    handle: std::sync::Mutex<Option<JoinHandle<Gathered>>>,
    gathered: std::sync::OnceLock<Gathered>,
    client: Client,
}

/// Starts reading `sources` on another thread (with the user's [`ReuseMemo`]);
/// [`Pending::map`] and [`Pending::finish`] wait for the result.
pub fn start(client: Client, sources: Vec<ReuseSource>, compression: Compressor) -> Pending {
    let reader = client.clone();
    Pending {
        handle: std::sync::Mutex::new(Some(std::thread::spawn(move || {
            let memo = ReuseMemo::in_user_cache();
            gather(&reader, &sources, compression, memo.as_ref())
        }))),
        gathered: std::sync::OnceLock::new(),
        client,
    }
}

impl Pending {
    /// Waits for the reading (once; later calls return the same answer).
    fn wait(&self) -> &Gathered {
        self.gathered.get_or_init(|| {
            let handle = self.handle.lock().ok().and_then(|mut h| h.take());
            handle
                .and_then(|h| h.join().ok())
                .unwrap_or_else(|| Gathered {
                    map: ReuseMap::default(),
                    warnings: vec![
                        "reading the registry for reusable layers failed unexpectedly; \
                         building without reuse"
                            .to_string(),
                    ],
                })
        })
    }

    /// The map, once read (a platform that finished building asks whether its layer needs
    /// compressing while the others still build).
    pub fn map(&self) -> &ReuseMap {
        &self.wait().map
    }

    /// Waits for the map; `store` says whether reused blobs are downloaded into the layout.
    /// Also returns the warnings of reading it.
    pub fn finish(self, store: bool) -> (Reuser, Vec<String>) {
        self.wait();
        let gathered = self.gathered.into_inner().unwrap_or_default();
        (
            Reuser {
                map: gathered.map,
                client: self.client,
                store,
            },
            gathered.warnings,
        )
    }
}

/// Reads every source (in order; the first source that names a diff_id wins) into a map of the
/// blobs of `compression`, taking what `memo` knows of a root it has read before. Never fails: a
/// source that cannot be read adds a warning.
pub fn gather(
    client: &Client,
    sources: &[ReuseSource],
    compression: Compressor,
    memo: Option<&ReuseMemo>,
) -> Gathered {
    let mut out = Gathered::default();
    let mut seen: Vec<&Reference> = Vec::new();
    for source in sources {
        if seen.contains(&&source.reference) {
            continue;
        }
        seen.push(&source.reference);
        match read_source(client, &source.reference, compression, memo) {
            Ok((root, found)) => {
                if !source.cache_from {
                    out.map.roots.push(SeenRoot {
                        reference: source.reference.clone(),
                        digest: root,
                        at: std::time::Instant::now(),
                    });
                }
                if !found.is_empty() {
                    out.map.sources.push(source.reference.to_string());
                }
                for (diff_id, known) in found {
                    out.map.by_diff_id.entry(diff_id).or_insert(known);
                }
            }
            Err(Unusable::Missing) if !source.cache_from => {}
            Err(Unusable::Missing) => out.warnings.push(format!(
                "--cache-from {}: no such image in the registry; nothing to reuse from it",
                source.reference
            )),
            Err(Unusable::Registry(e)) => out.warnings.push(format!(
                "cannot read {} to reuse its layers: {e}; building without reusing them",
                source.reference
            )),
            Err(Unusable::Invalid(what)) => out.warnings.push(format!(
                "{}: {what}; its layers are not reused",
                source.reference
            )),
        }
    }
    out
}

/// Why a source gives nothing.
enum Unusable {
    /// The tag (or repository) does not exist.
    Missing,
    /// The registry could not be read; what it said.
    Registry(String),
    /// Its documents are malformed or inconsistent.
    Invalid(String),
}

impl From<ReadError> for Unusable {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Source(SourceError::Transport { .. } | SourceError::Io { .. }) => {
                Unusable::Registry(e.to_string())
            }
            e => Unusable::Invalid(e.to_string()),
        }
    }
}

pub(crate) fn is_sha256(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// The root digest `reference` names and the (diff_id, blob) pairs of its image(s) whose layers
/// have `compression`: the image resolved as every reader resolves images, each platform's
/// manifest and config read (or taken from `memo` for a root read before).
fn read_source(
    client: &Client,
    reference: &Reference,
    compression: Compressor,
    memo: Option<&ReuseMemo>,
) -> Result<(String, Vec<(String, RegistryLayer)>), Unusable> {
    let image = RegistryImage::new(client.clone(), reference.clone());
    // The root first, to tell a tag that does not exist (yet) from a registry that fails.
    let root = image.root_manifest().map_err(|e| match e.status() {
        Some(404) => Unusable::Missing,
        _ => Unusable::Registry(e.to_string()),
    })?;
    let mut repository = reference.clone();
    repository.tag = None;
    repository.digest = None;
    if let Some(known) = memo.and_then(|m| m.load(&root.digest, compression, &repository)) {
        return Ok((root.digest, known));
    }
    let out = read_documents(&image, &repository, compression)?;
    if let Some(m) = memo {
        m.store(&root.digest, compression, &out);
    }
    Ok((root.digest, out))
}

/// The pairs of `image` (its root already read), from its manifests and configs.
fn read_documents(
    image: &RegistryImage,
    repository: &Reference,
    compression: Compressor,
) -> Result<Vec<(String, RegistryLayer)>, Unusable> {
    let limits = ResolveLimits {
        max_depth: MAX_DEPTH,
        max_manifests: MAX_MANIFESTS,
    };
    let resolved = image::resolve(image, limits)?;
    let wanted = compression.media_type();
    let mut out = Vec::new();
    // The platforms' manifests and configs are read at the same time (a round trip each, which
    // a no-op or warm build would otherwise wait for one after another), up to the first one
    // not named by a sha256 digest; then checked in index order as before.
    let mut images = resolved.images;
    let readable = images
        .iter()
        .position(|m| !is_sha256(m.digest()))
        .unwrap_or(images.len());
    let loaded: Vec<Result<image::LoadedImage, Unusable>> = std::thread::scope(|scope| {
        let reads: Vec<_> = images[..readable]
            .iter_mut()
            .map(|m| scope.spawn(move || m.take_loaded(image).map_err(Unusable::from)))
            .collect();
        reads
            .into_iter()
            .map(|r| {
                r.join().unwrap_or_else(|_| {
                    Err(Unusable::Registry(
                        "reading a manifest panicked".to_string(),
                    ))
                })
            })
            .collect()
    });
    let mut loaded = loaded.into_iter();
    for manifest in images {
        let digest = manifest.digest().to_string();
        if !is_sha256(&digest) {
            return Err(Unusable::Invalid(format!(
                "manifest {digest:?} is not named by a sha256 digest"
            )));
        }
        let loaded = loaded
            .next()
            .unwrap_or_else(|| Err(Unusable::Registry("a manifest was not read".to_string())))?;
        let (config, layers) = (loaded.manifest.config, loaded.manifest.layers);
        if !is_sha256(&config.digest) || config.size > MAX_DOCUMENT {
            return Err(Unusable::Invalid(format!(
                "manifest {digest}: config descriptor {:?} ({} bytes) is not a sha256 digest of \
                 at most {MAX_DOCUMENT} bytes",
                config.digest, config.size
            )));
        }
        let diff_ids = loaded.config.diff_ids();
        if diff_ids.len() != layers.len() {
            return Err(Unusable::Invalid(format!(
                "manifest {digest} has {} layers but its config {} lists {} diff_ids",
                layers.len(),
                config.digest,
                diff_ids.len()
            )));
        }
        if out.len() + layers.len() > MAX_LAYERS {
            return Err(Unusable::Invalid(format!(
                "more than {MAX_LAYERS} layers in all"
            )));
        }
        for (layer, diff_id) in layers.into_iter().zip(diff_ids) {
            if !is_sha256(&layer.digest) || !is_sha256(diff_id) {
                return Err(Unusable::Invalid(format!(
                    "manifest {digest}: layer {:?} or its diff_id {diff_id:?} is not a sha256 \
                     digest",
                    layer.digest
                )));
            }
            if layer.size == 0 || layer.size > MAX_LAYER_SIZE {
                return Err(Unusable::Invalid(format!(
                    "manifest {digest}: layer {} has an implausible size {}",
                    layer.digest, layer.size
                )));
            }
            // Docker's gzip layers are the same bytes under their OCI name.
            if oci_layer_media_type(&layer.media_type) != Some(wanted) {
                continue;
            }
            out.push((
                diff_id.clone(),
                RegistryLayer {
                    media_type: wanted.to_string(),
                    digest: layer.digest,
                    size: layer.size,
                    from: repository.clone(),
                },
            ));
        }
    }
    Ok(out)
}

/// Registry answers remembered between builds: for a root document (by digest) and a
/// compression, the (diff_id, blob) pairs its images gave. One JSON file each under
/// `<user cache>/rcross/reuse/`; at most [`ReuseMemo::KEEP`] are kept (the oldest go first).
/// A file that is unreadable, malformed or holds anything but sha256 digests is not used.
#[derive(Debug, Clone)]
pub struct ReuseMemo {
    dir: std::path::PathBuf,
}

/// One remembered pair.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct MemoLayer {
    diff_id: String,
    media_type: String,
    digest: String,
    size: u64,
}

impl ReuseMemo {
    const FORMAT: &'static str = "rcross-reuse-memo-v1";
    pub const KEEP: usize = 512;

    pub fn at(dir: impl Into<std::path::PathBuf>) -> ReuseMemo {
        ReuseMemo { dir: dir.into() }
    }

    pub fn in_user_cache() -> Option<ReuseMemo> {
        Some(ReuseMemo::at(
            crate::userdir::user_cache_root()?.join("reuse"),
        ))
    }

    fn file(&self, root: &str, compression: Compressor) -> std::path::PathBuf {
        let key = format!("{}\n{root}\n{}", Self::FORMAT, compression.media_type());
        let hex = crate::image::digest::sha256_hex(key.as_bytes());
        self.dir.join(format!("{}.json", &hex[..32]))
    }

    /// The pairs remembered for `root`, their blobs in `repository` (which has the root, so
    /// it has every blob the root references).
    pub fn load(
        &self,
        root: &str,
        compression: Compressor,
        repository: &Reference,
    ) -> Option<Vec<(String, RegistryLayer)>> {
        let bytes = std::fs::read(self.file(root, compression)).ok()?;
        let (format, stored_root, layers): (String, String, Vec<MemoLayer>) =
            serde_json::from_slice(&bytes).ok()?;
        if format != Self::FORMAT || stored_root != root || layers.len() > MAX_LAYERS {
            return None;
        }
        layers
            .into_iter()
            .map(|l| {
                let valid = is_sha256(&l.diff_id)
                    && is_sha256(&l.digest)
                    && l.media_type == compression.media_type()
                    && l.size > 0
                    && l.size <= MAX_LAYER_SIZE;
                valid.then(|| {
                    (
                        l.diff_id,
                        RegistryLayer {
                            media_type: l.media_type,
                            digest: l.digest,
                            size: l.size,
                            from: repository.clone(),
                        },
                    )
                })
            })
            .collect()
    }

    /// Remembers `pairs` for `root` (best effort: a memo that cannot be written only costs
    /// the next build a full read).
    pub fn store(&self, root: &str, compression: Compressor, pairs: &[(String, RegistryLayer)]) {
        let layers: Vec<MemoLayer> = pairs
            .iter()
            .map(|(diff_id, l)| MemoLayer {
                diff_id: diff_id.clone(),
                media_type: l.media_type.clone(),
                digest: l.digest.clone(),
                size: l.size,
            })
            .collect();
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
            serde_json::to_writer(&mut tmp, &(Self::FORMAT, root, &layers))?;
            tmp.persist(self.file(root, compression))
                .map_err(|e| e.error)?;
            self.prune()
        };
        let _ = write();
    }

    /// Removes the oldest files beyond [`ReuseMemo::KEEP`].
    fn prune(&self) -> std::io::Result<()> {
        let mut files: Vec<(std::time::SystemTime, std::path::PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let modified = entry.metadata()?.modified()?;
            files.push((modified, entry.path()));
        }
        if files.len() > Self::KEEP {
            files.sort();
            for (_, path) in &files[..files.len() - Self::KEEP] {
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(())
    }
}

/// How reused layers are handled while the image is assembled.
pub struct Reuser {
    pub map: ReuseMap,
    pub client: Client,
    /// Download reused blobs into the layout (an explicit `--output`), rather than only noting
    /// which repository has them (the default layout of `--push`).
    pub store: bool,
}

/// What happened to one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerOutcome {
    /// Compressed here (new content, or no map).
    Compressed,
    /// A blob the registry has, used without compressing: `stored` when it is in the layout
    /// (downloaded, or there already), else only noted as kept in `from`.
    Reused { from: Reference, stored: bool },
}

/// Writes one layer per element of `layers` into `layout`, reusing registry blobs through
/// `reuser` where it can. Without a reuser (or with an empty map) each layer is compressed and
/// hashed in one pass as always, at no extra cost. With one, the diff_ids of all layers are
/// computed first, in parallel, by streaming their tars through SHA-256 only; layers the map
/// knows (and whose blob the registry confirms it still has) are not compressed; the others are,
/// unless the layer `cache` holds their blob (looked up for the layers whose flag in the
/// cache's slice is set: those whose files came from the build cache).
///
/// Layers are compressed side by side: the gzip writer spreads a layer over the cores only in
/// 1 MiB blocks, so small layers (a static binary each) would otherwise leave cores idle. The
/// bytes written do not depend on it.
pub fn write_layers(
    layout: &OciLayout,
    layers: &[Vec<LayerEntry>],
    options: &LayerOptions,
    reuser: Option<&Reuser>,
    cache: Option<(&LayerCache, &[bool])>,
    warnings: &mut Vec<String>,
) -> Result<Vec<(Layer, LayerOutcome)>, OciError> {
    let mut slots: Vec<Option<(Layer, LayerOutcome)>> = layers.iter().map(|_| None).collect();
    if let Some(reuser) = reuser.filter(|r| !r.map.is_empty()) {
        let found = lookup_all(layout, layers, options.mtime, reuser)?;
        for (slot, found) in slots.iter_mut().zip(found) {
            *slot = match found {
                LayerLookup::Miss => None,
                LayerLookup::Gone { known } => {
                    warnings.push(format!(
                        "layer {} is no longer in {}; compressing it again",
                        known.digest, known.from
                    ));
                    None
                }
                LayerLookup::Hit {
                    diff_id,
                    size,
                    known,
                    local,
                } => use_blob(layout, reuser, &known, local, warnings).map(|stored| {
                    (
                        Layer {
                            media_type: known.media_type.clone(),
                            digest: known.digest.clone(),
                            size: known.size,
                            diff_id,
                            uncompressed_size: size,
                        },
                        LayerOutcome::Reused {
                            from: known.from.clone(),
                            stored,
                        },
                    )
                }),
            };
        }
    }
    let todo: Vec<usize> = (0..layers.len())
        .filter(|&i| slots.get(i).is_some_and(Option::is_none))
        .collect();
    let compressed = in_parallel(todo.len(), |k| {
        let entries =
            todo.get(k)
                .and_then(|&i| layers.get(i))
                .ok_or_else(|| OciError::Compression {
                    message: "layer index out of range".to_string(),
                })?;
        match cache {
            Some((cache, look_up)) => {
                let look_up = todo.get(k).and_then(|&i| look_up.get(i)) == Some(&true);
                cache.write_layer(layout, entries, options, look_up)
            }
            None => layout.write_layer(entries, options),
        }
    })?;
    for (&i, layer) in todo.iter().zip(compressed) {
        if let Some(slot) = slots.get_mut(i) {
            *slot = Some((layer, LayerOutcome::Compressed));
        }
    }
    slots
        .into_iter()
        .map(|s| {
            s.ok_or_else(|| OciError::Compression {
                message: "a layer was neither reused nor written".to_string(),
            })
        })
        .collect()
}

/// `f(0)`, …, `f(n - 1)` on up to 8 threads at once, results in order; the first error wins.
fn in_parallel<R: Send>(
    n: usize,
    f: impl Fn(usize) -> Result<R, OciError> + Sync,
) -> Result<Vec<R>, OciError> {
    if n <= 1 {
        return (0..n).map(&f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<Option<Result<R, OciError>>>> =
        std::sync::Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..n.min(8) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n {
                    return;
                }
                let r = f(i);
                if let Some(slot) = results
                    .lock()
                    .ok()
                    .as_deref_mut()
                    .and_then(|v| v.get_mut(i))
                {
                    *slot = Some(r);
                }
            });
        }
    });
    let lost = || OciError::Compression {
        message: "a layer thread stopped without a result".to_string(),
    };
    results
        .into_inner()
        .map_err(|_| lost())?
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(lost())))
        .collect()
}

/// The result of looking one layer up.
enum LayerLookup {
    Miss,
    /// The map knows it but its repository no longer has the blob.
    Gone {
        known: RegistryLayer,
    },
    Hit {
        diff_id: String,
        size: u64,
        known: RegistryLayer,
        /// The layout has the blob already.
        local: bool,
    },
}

/// diff_id of every layer (in parallel: SHA-256 is one core's work per stream), each looked up in the map and, on a hit, confirmed with a HEAD in its repository
/// unless the layout has the blob.
fn lookup_all(
    layout: &OciLayout,
    layers: &[Vec<LayerEntry>],
    mtime: u64,
    reuser: &Reuser,
) -> Result<Vec<LayerLookup>, OciError> {
    let one = |entries: &Vec<LayerEntry>| -> Result<LayerLookup, OciError> {
        let (diff_id, size) = oci::diff_id(entries, mtime)?;
        let Some(known) = reuser.map.get(&diff_id) else {
            return Ok(LayerLookup::Miss);
        };
        let local = layout.has_blob(&known.digest)?;
        if !local
            && !reuser
                .client
                .blob_exists(&known.from, &known.digest)
                .unwrap_or(false)
        {
            return Ok(LayerLookup::Gone {
                known: known.clone(),
            });
        }
        Ok(LayerLookup::Hit {
            diff_id,
            size,
            known: known.clone(),
            local,
        })
    };
    in_parallel(layers.len(), |i| match layers.get(i) {
        Some(entries) => one(entries),
        None => Ok(LayerLookup::Miss),
    })
}

/// Makes a reused blob part of the layout: nothing to do when it is there; downloaded when
/// `reuser.store`; else noted as kept in its repository. `Some(stored)` on success; `None` (with
/// a warning) when the download failed, so the caller compresses the layer instead.
fn use_blob(
    layout: &OciLayout,
    reuser: &Reuser,
    known: &RegistryLayer,
    local: bool,
    warnings: &mut Vec<String>,
) -> Option<bool> {
    if local {
        return Some(true);
    }
    if !reuser.store {
        return match layout.note_remote_blob(&known.digest, &known.from.to_string()) {
            Ok(()) => Some(false),
            Err(e) => {
                warnings.push(format!(
                    "cannot note reused layer {} in the layout ({e}); compressing it instead",
                    known.digest
                ));
                None
            }
        };
    }
    let from = known.from.to_string();
    let copied = reuser
        .client
        .open_blob_sized(&known.from, &known.digest, known.size)
        .map_err(|e| e.to_string())
        .and_then(|mut reader| {
            layout
                .copy_blob(&known.digest, known.size, &from, &mut reader)
                .map_err(|e| e.to_string())
        });
    match copied {
        Ok(()) => Some(true),
        Err(e) => {
            warnings.push(format!(
                "cannot download reused layer {} from {from} ({e}); compressing it instead",
                known.digest
            ));
            None
        }
    }
}

/// One log line per source repository for the reused layers, saying where they are.
pub fn summary(outcomes: &[&LayerOutcome]) -> Vec<String> {
    let mut by_repo: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for outcome in outcomes {
        if let LayerOutcome::Reused { from, stored } = outcome {
            let counts = by_repo.entry(from.to_string()).or_default();
            if *stored {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
        }
    }
    let mut lines = Vec::new();
    for (repo, (stored, remote)) in by_repo {
        if stored > 0 {
            lines.push(format!(
                "{stored} layer(s) reused from {repo} (not compressed again; stored in the output)"
            ));
        }
        if remote > 0 {
            lines.push(format!(
                "{remote} layer(s) reused from {repo}, not stored locally (not compressed again; \
                 the registry has them; use --output oci:DIR for a complete layout)"
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(n: u32, from: &Reference) -> (String, RegistryLayer) {
        (
            format!("sha256:{n:064x}"),
            RegistryLayer {
                media_type: Compressor::default().media_type().to_string(),
                digest: format!("sha256:{:064x}", n + 1000),
                size: 100 + u64::from(n),
                from: from.clone(),
            },
        )
    }

    #[test]
    fn the_memo_answers_for_its_root_and_compression_only() {
        let dir = tempfile::tempdir().unwrap();
        let memo = ReuseMemo::at(dir.path());
        let repo: Reference = "127.0.0.1:5000/app".parse().unwrap();
        let root = format!("sha256:{}", "a".repeat(64));
        let gzip = Compressor::default();
        assert!(memo.load(&root, gzip, &repo).is_none());
        let pairs = vec![pair(1, &repo), pair(2, &repo)];
        memo.store(&root, gzip, &pairs);
        // The blobs are in the repository that named the root now.
        let other: Reference = "127.0.0.1:5000/other".parse().unwrap();
        let loaded = memo.load(&root, gzip, &other).unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0].0, pairs[0].0);
        assert_eq!(loaded[1].1.digest, pairs[1].1.digest);
        assert!(loaded.iter().all(|(_, l)| l.from == other));
        let another_root = format!("sha256:{}", "b".repeat(64));
        assert!(memo.load(&another_root, gzip, &repo).is_none());
        assert!(memo
            .load(&root, Compressor::Zstd { level: 3 }, &repo)
            .is_none());
        // An entry that is not what it says (here: a malformed digest) voids the memo.
        let mut bad = pairs.clone();
        bad[1].1.digest = "sha256:XYZ".to_string();
        memo.store(&root, gzip, &bad);
        assert!(memo.load(&root, gzip, &repo).is_none());
        std::fs::write(memo.file(&root, gzip), b"{not json").unwrap();
        assert!(memo.load(&root, gzip, &repo).is_none());
    }

    #[test]
    fn the_memo_keeps_at_most_its_limit_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let memo = ReuseMemo::at(dir.path());
        let repo: Reference = "127.0.0.1:5000/app".parse().unwrap();
        for n in 0..(ReuseMemo::KEEP as u32 + 3) {
            memo.store(
                &format!("sha256:{n:064x}"),
                Compressor::default(),
                &[pair(n, &repo)],
            );
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            ReuseMemo::KEEP
        );
    }

    #[test]
    fn digests_must_be_lowercase_sha256() {
        let hex = "a".repeat(64);
        assert!(is_sha256(&format!("sha256:{hex}")));
        assert!(!is_sha256(&format!("sha256:{}", "A".repeat(64))));
        assert!(!is_sha256(&format!("sha512:{hex}")));
        assert!(!is_sha256("sha256:abc"));
        assert!(!is_sha256(""));
    }

    #[test]
    fn summary_groups_by_repository() {
        let from: Reference = "127.0.0.1:5000/app".parse().unwrap();
        let reused = LayerOutcome::Reused {
            from: from.clone(),
            stored: false,
        };
        let lines = summary(&[&reused, &LayerOutcome::Compressed, &reused]);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("2 layer(s) reused from 127.0.0.1:5000/app, not stored locally"),
            "{lines:?}"
        );
        assert!(summary(&[&LayerOutcome::Compressed]).is_empty());
    }

    #[test]
    fn without_a_map_layers_are_compressed_as_always() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path()).unwrap();
        let entries = vec![vec![LayerEntry::file(
            "a",
            crate::oci::FileContent::Bytes(b"a".to_vec()),
            0o644,
        )]];
        let reuser = Reuser {
            map: ReuseMap::default(),
            client: Client::anonymous(),
            store: false,
        };
        let mut warnings = Vec::new();
        let written = write_layers(
            &layout,
            &entries,
            &LayerOptions::default(),
            Some(&reuser),
            None,
            &mut warnings,
        )
        .unwrap();
        assert_eq!(written[0].1, LayerOutcome::Compressed);
        assert!(layout.has_blob(&written[0].0.digest).unwrap());
        assert!(warnings.is_empty());
    }
}
