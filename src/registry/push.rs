//! The write side of the distribution API: blob uploads (HEAD-skip, cross-repository mount,
//! monolithic or chunked), manifests by digest, the index last and tags after it, so no tag ever
//! names an image whose parts are not all in the registry.
//!
//! Every request is retried on its own with exponential backoff and full jitter on connection
//! failures, 408, 429 (honouring `Retry-After`, capped) and 5xx, never on other statuses, for as
//! long as [`ClientOptions::retry_timeout`](super::ClientOptions) allows. When a request that
//! changes the registry fails without an answer (a dropped answer may mean it acted), a HEAD
//! decides whether the blob or manifest landed before it is sent again. A chunk that fails asks
//! the registry how much of the upload it holds and goes on from there, or starts a new upload
//! session: bytes are never sent at an offset the registry did not confirm.

use std::io::{Read, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ureq::http;

use super::auth::{percent_encode, pick_challenge};
use super::client::{
    describe_error, is_loopback_host, is_retryable_error, is_retryable_status, read_error_excerpt,
    retry_after, transport_hint, Client, Retries,
};
use super::error::{hint_for_status, sanitise, RegistryError};
use super::reference::{validate_digest, Reference, ReferenceError};

/// Largest request body sent in one upload request (GHCR refuses larger ones).
pub const MAX_CHUNK_SIZE: usize = 4 * 1024 * 1024;

/// Where a blob's bytes are.
#[derive(Debug, Clone)]
pub enum BlobSource {
    Bytes(Arc<Vec<u8>>),
    File(PathBuf),
    /// In this repository (its tag or digest is not used), e.g. a layer `rcross build --push`
    /// reused from a registry instead of compressing it again. Mounted from there when it is in
    /// the target's registry; streamed from there (digest-checked) only when the target has it
    /// neither already nor by mount.
    Registry(Reference),
}

/// A blob (config or layer) to push.
#[derive(Debug, Clone)]
pub struct PushBlob {
    pub digest: String,
    pub size: u64,
    pub source: BlobSource,
}

/// A manifest or index to push, exactly these bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushManifest {
    pub media_type: String,
    pub digest: String,
    pub bytes: Vec<u8>,
}

/// One image to push: its blobs, its per-platform manifests (empty for a single-platform image)
/// and its root (the index, or the one manifest).
#[derive(Debug, Clone)]
pub struct ImagePush {
    pub blobs: Vec<PushBlob>,
    pub manifests: Vec<PushManifest>,
    pub root: PushManifest,
}

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Blobs uploaded at the same time.
    pub parallel: usize,
    /// Size of each PATCH of a chunked upload; at most [`MAX_CHUNK_SIZE`].
    pub chunk_size: usize,
    /// Blobs up to this size go up in one PUT; larger ones in chunks.
    pub monolithic_max: u64,
    /// Repositories of the same registry that may hold the blobs already: the first one is
    /// asked to mount each missing blob before it is uploaded.
    pub mount_from: Vec<String>,
    /// Blobs known to be in a repository of the same registry (digest → repository), e.g.
    /// where rcross pushed them last: a missing one is mounted from there before
    /// [`PushOptions::mount_from`] is tried (a failed mount costs nothing: the registry opens an
    /// upload session instead, and the blob is uploaded into it).
    pub blob_homes: std::collections::BTreeMap<String, String>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            parallel: 4,
            chunk_size: MAX_CHUNK_SIZE,
            monolithic_max: MAX_CHUNK_SIZE as u64,
            mount_from: Vec::new(),
            blob_homes: std::collections::BTreeMap::new(),
        }
    }
}

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The registry had it (HEAD answered 200).
    Present,
    /// Mounted from another repository.
    Mounted,
    Uploaded,
}

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Digest of the root (index or manifest).
    pub digest: String,
    /// Digests of the per-platform manifests, in the order pushed.
    pub manifests: Vec<String>,
    /// Tags that now name the root.
    pub tags: Vec<String>,
    pub blobs_present: usize,
    pub blobs_mounted: usize,
    pub blobs_uploaded: usize,
    pub bytes_uploaded: u64,
}

/// One failed try: worth another (after `wait`, if the registry said) or final.
enum Attempt {
    Retry {
        error: RegistryError,
        wait: Option<Duration>,
    },
    Fatal(RegistryError),
}

impl From<RegistryError> for Attempt {
    fn from(error: RegistryError) -> Self {
        Attempt::Fatal(error)
    }
}

/// The body of one request.
enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
}

/// One request of a push.
struct Call<'a> {
    method: http::Method,
    url: String,
    body: Body<'a>,
    content_type: Option<&'a str>,
    headers: Vec<(&'static str, String)>,
}

impl<'a> Call<'a> {
    fn new(method: http::Method, url: String) -> Call<'a> {
        Call {
            method,
            url,
            body: Body::Empty,
            content_type: None,
            headers: Vec::new(),
        }
    }
}

/// The repository being pushed to, with the scope push tokens are asked for.
struct Target<'a> {
    reference: &'a Reference,
    scope: String,
}

impl Client {
    /// Pushes `image` into `repository`'s repository (its tag, if any, is added to `tags`):
    /// blobs first, then each platform manifest by digest, then the root by digest, then the
    /// tags. Nothing is tagged unless everything before succeeded.
    pub fn push_image(
        &self,
        repository: &Reference,
        image: &ImagePush,
        tags: &[String],
        options: &PushOptions,
    ) -> Result<PushReport, RegistryError> {
        let all_tags = all_tags(repository, tags)?;
        for manifest in image.manifests.iter().chain(std::iter::once(&image.root)) {
            check_manifest(manifest)?;
        }

        let mut blobs: Vec<&PushBlob> = Vec::new();
        for blob in &image.blobs {
            if !blobs.iter().any(|b| b.digest == blob.digest) {
                blobs.push(blob);
            }
        }
        let outcomes = self.push_blobs(repository, &blobs, options)?;
        let mut report = PushReport {
            digest: image.root.digest.clone(),
            ..PushReport::default()
        };
        for (blob, outcome) in blobs.iter().zip(&outcomes) {
            match outcome {
                BlobOutcome::Present => report.blobs_present += 1,
                BlobOutcome::Mounted => report.blobs_mounted += 1,
                BlobOutcome::Uploaded => {
                    report.blobs_uploaded += 1;
                    report.bytes_uploaded += blob.size;
                }
            }
        }
        // The platforms' manifests are independent of each other (each needs only its blobs,
        // all there now): sent at the same time, up to `options.parallel`.
        let parallel = options.parallel.clamp(1, 64);
        for group in image.manifests.chunks(parallel) {
            let sent: Vec<Result<(), RegistryError>> = std::thread::scope(|scope| {
                let puts: Vec<_> = group
                    .iter()
                    .map(|m| scope.spawn(move || self.put_manifest(repository, &m.digest, m)))
                    .collect();
                puts.into_iter()
                    .map(|put| {
                        put.join().unwrap_or_else(|_| {
                            Err(RegistryError::InvalidResponse {
                                url: repository.to_string(),
                                message: "pushing a manifest panicked".to_string(),
                            })
                        })
                    })
                    .collect()
            });
            for (manifest, result) in group.iter().zip(sent) {
                result?;
                report.manifests.push(manifest.digest.clone());
            }
        }
        self.put_manifest(repository, &image.root.digest, &image.root)?;
        for tag in &all_tags {
            self.put_manifest(repository, tag, &image.root)?;
            report.tags.push(tag.clone());
        }
        Ok(report)
    }

    /// The report of [`Client::push_image`] when `image` is pushed already: every tag (and
    /// `repository`'s own) names its root, which takes one HEAD per tag, on as many threads.
    /// A registry accepts a manifest only when what it references is there, so every blob and
    /// manifest below the root is there too: nothing to send. `None` on any other answer, a
    /// failed HEAD included: then push as usual.
    pub fn already_pushed(
        &self,
        repository: &Reference,
        image: &ImagePush,
        tags: &[String],
    ) -> Option<PushReport> {
        let tags = all_tags(repository, tags).ok()?;
        if tags.is_empty() || check_manifest(&image.root).is_err() {
            return None;
        }
        let target = self.push_target(repository, None);
        let all_there = std::thread::scope(|scope| {
            let heads: Vec<_> = tags
                .iter()
                .map(|tag| {
                    let target = &target;
                    scope.spawn(move || self.manifest_landed(target, tag, &image.root))
                })
                .collect();
            heads
                .into_iter()
                .all(|h| matches!(h.join(), Ok(Some(true))))
        });
        all_there.then(|| report_present(image, tags))
    }

    /// Pushes blobs on `options.parallel` threads; the first failure stops the others.
    fn push_blobs(
        &self,
        repository: &Reference,
        blobs: &[&PushBlob],
        options: &PushOptions,
    ) -> Result<Vec<BlobOutcome>, RegistryError> {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Mutex<Vec<Option<Result<BlobOutcome, RegistryError>>>> =
            Mutex::new(blobs.iter().map(|_| None).collect());
        let threads = options.parallel.clamp(1, 64).min(blobs.len().max(1));
        // Largest first: small configs then fill the gaps instead of a big layer starting last
        // and finishing alone.
        let mut order: Vec<usize> = (0..blobs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(blobs.get(i).map_or(0, |b| b.size)));
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| loop {
                    if failed.load(Ordering::SeqCst) {
                        return;
                    }
                    let Some(&i) = order.get(next.fetch_add(1, Ordering::SeqCst)) else {
                        return;
                    };
                    let Some(blob) = blobs.get(i) else { return };
                    let result = self.push_blob(repository, blob, options);
                    if result.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    if let Some(slot) = results
                        .lock()
                        .ok()
                        .as_deref_mut()
                        .and_then(|r| r.get_mut(i))
                    {
                        *slot = Some(result);
                    }
                });
            }
        });
        let results = results.into_inner().map_err(|_| RegistryError::Local {
            what: "blob upload".to_string(),
            message: "an upload thread panicked".to_string(),
        })?;
        let mut outcomes = Vec::with_capacity(blobs.len());
        let mut first_error = None;
        for result in results {
            match result {
                Some(Ok(outcome)) => outcomes.push(outcome),
                Some(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                None => {}
            }
        }
        match first_error {
            Some(e) => Err(e),
            None if outcomes.len() == blobs.len() => Ok(outcomes),
            None => Err(RegistryError::Local {
                what: "blob upload".to_string(),
                message: "an upload thread stopped without a result".to_string(),
            }),
        }
    }

    /// Whether `repository` has the blob `digest` (HEAD; one try, no retries).
    pub fn blob_exists(&self, repository: &Reference, digest: &str) -> Result<bool, RegistryError> {
        validate_digest(digest).map_err(|reason| ReferenceError {
            input: digest.to_string(),
            reason,
        })?;
        match self.head_blob(&self.push_target(repository, None), digest, None) {
            Ok(exists) => Ok(exists),
            Err(Attempt::Retry { error, .. } | Attempt::Fatal(error)) => Err(error),
        }
    }

    /// Makes sure `repository` has `blob`: skipped when present, mounted when a repository in
    /// `options.mount_from` has it, else uploaded (monolithic or chunked). Retried as a whole,
    /// each try in a fresh upload session.
    pub fn push_blob(
        &self,
        repository: &Reference,
        blob: &PushBlob,
        options: &PushOptions,
    ) -> Result<BlobOutcome, RegistryError> {
        validate_digest(&blob.digest).map_err(|reason| ReferenceError {
            input: blob.digest.clone(),
            reason,
        })?;
        // A blob that lives in another repository of the same registry is mounted from there.
        let own_repository = match &blob.source {
            BlobSource::Registry(from)
                if from.registry == repository.registry
                    && from.repository != repository.repository =>
            {
                Some(&from.repository)
            }
            _ => None,
        };
        let remembered = options
            .blob_homes
            .get(&blob.digest)
            .filter(|from| **from != repository.repository);
        let mount_from = own_repository.or(remembered).or_else(|| {
            options
                .mount_from
                .iter()
                .find(|from| **from != repository.repository)
        });
        let target = self.push_target(repository, mount_from.map(String::as_str));
        let present = || self.retrying(|| self.head_blob(&target, &blob.digest, Some(blob.size)));
        // A blob remembered in another repository is asked for by mount straight away (the
        // registry answers 201 whether or not the target had it); otherwise HEAD first.
        if (own_repository.is_some() || remembered.is_none()) && present()? {
            return Ok(BlobOutcome::Present);
        }
        let chunk_size = options.chunk_size.clamp(1, MAX_CHUNK_SIZE);
        let mut sessions = Retries::new(&self.options);
        loop {
            let started = self.retrying(|| self.start_upload(&target, &blob.digest, mount_from))?;
            let location = match started {
                Started::Mounted => return Ok(BlobOutcome::Mounted),
                Started::Session(location) => location,
            };
            let result = if blob.size <= options.monolithic_max.min(MAX_CHUNK_SIZE as u64) {
                self.upload_monolithic(&target, blob, &location)
            } else {
                self.upload_chunked(&target, blob, location, chunk_size)
            };
            match result {
                Ok(()) => return Ok(BlobOutcome::Uploaded),
                Err(Attempt::Fatal(error)) => return Err(error),
                // The session cannot go on. The blob may have landed all the same (an answer
                // dropped after the registry acted): look before uploading it again.
                Err(Attempt::Retry { error, wait }) => {
                    if present()? {
                        return Ok(BlobOutcome::Uploaded);
                    }
                    if !sessions.wait(wait) {
                        return Err(with_attempts(error, &sessions));
                    }
                }
            }
        }
    }

    /// Asks the registry to mount blob `digest` from repository `from` (same registry) into
    /// `repository`: `true` when it did. `false` when it opened an upload session instead (the
    /// blob is not in `from`, or the registry does not mount); that session is left for the
    /// registry to expire, and the caller uploads the blob with [`Client::push_blob`].
    pub fn mount_blob(
        &self,
        repository: &Reference,
        digest: &str,
        from: &str,
    ) -> Result<bool, RegistryError> {
        validate_digest(digest).map_err(|reason| ReferenceError {
            input: digest.to_string(),
            reason,
        })?;
        let from = from.to_string();
        let target = self.push_target(repository, Some(&from));
        self.retrying(|| match self.start_upload(&target, digest, Some(&from))? {
            Started::Mounted => Ok(true),
            Started::Session(_) => Ok(false),
        })
    }

    /// PUTs `manifest` under `reference` (a tag or its digest) in `repository`.
    pub fn put_manifest(
        &self,
        repository: &Reference,
        reference: &str,
        manifest: &PushManifest,
    ) -> Result<(), RegistryError> {
        check_manifest(manifest)?;
        let target = self.push_target(repository, None);
        let url = self.url(repository, &format!("manifests/{reference}"));
        let mut retries = Retries::new(&self.options);
        let put = || {
            let mut call = Call::new(http::Method::PUT, url.clone());
            call.body = Body::Bytes(&manifest.bytes);
            call.content_type = Some(&manifest.media_type);
            let response = self.call(&target, &call)?;
            let response = expect_status(&target, &call, response, &[200, 201, 202, 204])?;
            if let Some(announced) = header(&response, "docker-content-digest") {
                if validate_digest(&announced).is_ok() && announced != manifest.digest {
                    return Err(Attempt::Fatal(RegistryError::DigestMismatch {
                        url: url.clone(),
                        expected: manifest.digest.clone(),
                        actual: announced,
                    }));
                }
            }
            Ok(())
        };
        loop {
            match put() {
                Ok(()) => return Ok(()),
                Err(Attempt::Fatal(error)) => return Err(error),
                Err(Attempt::Retry { error, wait }) => {
                    if !retries.wait(wait) {
                        return Err(with_attempts(error, &retries));
                    }
                    // The PUT may have landed with its answer lost; then it is done. A HEAD
                    // that fails says nothing: the PUT is sent again (it is idempotent).
                    if self.manifest_landed(&target, reference, manifest) == Some(true) {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Whether `reference` (a tag or digest) in the target names exactly `manifest` (HEAD, one
    /// try); `None` when the HEAD itself failed.
    fn manifest_landed(
        &self,
        target: &Target<'_>,
        reference: &str,
        manifest: &PushManifest,
    ) -> Option<bool> {
        let url = self.url(target.reference, &format!("manifests/{reference}"));
        let mut call = Call::new(http::Method::HEAD, url);
        call.headers.push(("Accept", manifest.media_type.clone()));
        let response = self.call(target, &call).ok()?;
        match response.status().as_u16() {
            200 => Some(
                header(&response, "docker-content-digest")
                    .map_or(reference == manifest.digest, |d| d == manifest.digest),
            ),
            404 => Some(false),
            _ => None,
        }
    }

    fn push_target<'a>(&self, reference: &'a Reference, mount_from: Option<&str>) -> Target<'a> {
        let mut scope = format!("repository:{}:pull,push", reference.repository);
        if let Some(from) = mount_from {
            scope.push_str(&format!(" repository:{from}:pull"));
        }
        Target { reference, scope }
    }

    /// HEAD the blob: `true` when present. A size that disagrees with ours is an error.
    fn head_blob(
        &self,
        target: &Target<'_>,
        digest: &str,
        size: Option<u64>,
    ) -> Result<bool, Attempt> {
        let url = self.url(target.reference, &format!("blobs/{digest}"));
        let call = Call::new(http::Method::HEAD, url.clone());
        let response = self.call(target, &call)?;
        if response.status().as_u16() == 404 {
            return Ok(false);
        }
        let response = expect_status(target, &call, response, &[200])?;
        let announced = header(&response, "content-length").and_then(|v| v.parse::<u64>().ok());
        if let (Some(announced), Some(size)) = (announced, size) {
            if announced != size {
                return Err(Attempt::Fatal(RegistryError::InvalidResponse {
                    url,
                    message: format!(
                        "the registry has {digest} as {announced} bytes, but it is {size} bytes"
                    ),
                }));
            }
        }
        Ok(true)
    }

    /// POST an upload (or a mount): the session's location, or `Mounted`.
    fn start_upload(
        &self,
        target: &Target<'_>,
        digest: &str,
        mount_from: Option<&String>,
    ) -> Result<Started, Attempt> {
        let mut url = self.url(target.reference, "blobs/uploads/");
        if let Some(from) = mount_from {
            url.push_str(&format!(
                "?mount={}&from={}",
                percent_encode(digest),
                percent_encode(from)
            ));
        }
        let call = Call::new(http::Method::POST, url);
        let response = self.call(target, &call)?;
        let status = response.status().as_u16();
        if status == 201 && mount_from.is_some() {
            drain(response);
            return Ok(Started::Mounted);
        }
        let response = expect_status(target, &call, response, &[202])?;
        let location = self.location(target, &call, &response)?;
        drain(response);
        Ok(Started::Session(location))
    }

    fn upload_monolithic(
        &self,
        target: &Target<'_>,
        blob: &PushBlob,
        location: &str,
    ) -> Result<(), Attempt> {
        let bytes = self.read_source(blob, blob.size)?;
        self.finish_upload(target, blob, location, &bytes)
    }

    /// Uploads `blob` in chunks of `chunk_size`. A chunk that fails is followed by a look at
    /// what the registry holds: the upload goes on from the registry's offset when it is one we
    /// can send from, else [`Attempt::Retry`] asks the caller for a new session.
    fn upload_chunked(
        &self,
        target: &Target<'_>,
        blob: &PushBlob,
        mut location: String,
        chunk_size: usize,
    ) -> Result<(), Attempt> {
        let mut reader = self
            .open_source_at(blob, 0)?
            .ok_or_else(|| Attempt::Fatal(local_error(blob, "cannot be read from its start")))?;
        let mut buffer = vec![0u8; chunk_size];
        let mut offset = 0u64;
        let mut retries = Retries::new(&self.options);
        while offset < blob.size {
            let want = usize::try_from(blob.size - offset)
                .unwrap_or(usize::MAX)
                .min(chunk_size);
            reader
                .read_exact(&mut buffer[..want])
                .map_err(|e| local_error(blob, &format!("reading at byte {offset}: {e}")))?;
            let end = offset + want as u64 - 1;
            let mut call = Call::new(http::Method::PATCH, location.clone());
            call.body = Body::Bytes(&buffer[..want]);
            call.content_type = Some("application/octet-stream");
            call.headers
                .push(("Content-Range", format!("{offset}-{end}")));
            let sent = self
                .call(target, &call)
                .and_then(|response| expect_status(target, &call, response, &[202]));
            let response = match sent {
                Ok(response) => response,
                Err(Attempt::Fatal(error)) => return Err(Attempt::Fatal(error)),
                Err(Attempt::Retry { error, wait }) => {
                    if !retries.wait(wait) {
                        return Err(Attempt::Fatal(with_attempts(error, &retries)));
                    }
                    let resumed = self
                        .upload_offset(target, &location)
                        .filter(|(at, _)| *at <= end + 1);
                    let Some((at, new_location)) = resumed else {
                        return Err(Attempt::Retry { error, wait: None });
                    };
                    let Some(new_reader) = self.open_source_at(blob, at)? else {
                        return Err(Attempt::Retry { error, wait: None });
                    };
                    reader = new_reader;
                    location = new_location;
                    offset = at;
                    continue;
                }
            };
            if let Some(range) = header(&response, "range") {
                let expected = format!("0-{end}");
                if range.trim_start_matches("bytes=") != expected {
                    return Err(Attempt::Fatal(RegistryError::InvalidResponse {
                        url: strip_query(&call.url),
                        message: format!(
                            "after a chunk ending at byte {end} the registry says it holds \
                             {:?}, not {expected:?}",
                            sanitise(&range)
                        ),
                    }));
                }
            }
            if header(&response, "location").is_some() {
                location = self.location(target, &call, &response)?;
            }
            drain(response);
            offset = end + 1;
            retries = Retries::new(&self.options);
        }
        let mut extra = [0u8; 1];
        if matches!(reader.read(&mut extra), Ok(n) if n > 0) {
            return Err(Attempt::Fatal(local_error(
                blob,
                &format!("is larger than the {} bytes announced", blob.size),
            )));
        }
        loop {
            match self.finish_upload(target, blob, &location, &[]) {
                Ok(()) => return Ok(()),
                Err(Attempt::Fatal(error)) => return Err(Attempt::Fatal(error)),
                Err(Attempt::Retry { error, wait }) => {
                    if !retries.wait(wait) {
                        return Err(Attempt::Fatal(with_attempts(error, &retries)));
                    }
                    // Landed with its answer lost? Else, the session must still hold every
                    // byte for the closing PUT to be sent again.
                    if self.head_blob(target, &blob.digest, Some(blob.size))? {
                        return Ok(());
                    }
                    match self.upload_offset(target, &location) {
                        Some((at, new_location)) if at == blob.size => location = new_location,
                        _ => return Err(Attempt::Retry { error, wait: None }),
                    }
                }
            }
        }
    }

    /// How many bytes the upload session at `location` holds, and its location now (GET, one
    /// try). `None` when the registry does not say clearly: the session is then given up. A
    /// `Range` of `0-0` is ambiguous (distribution says so for 0 bytes and for 1), so it counts
    /// as unclear.
    fn upload_offset(&self, target: &Target<'_>, location: &str) -> Option<(u64, String)> {
        let call = Call::new(http::Method::GET, location.to_string());
        let response = self.call(target, &call).ok()?;
        if response.status().as_u16() != 204 {
            drain(response);
            return None;
        }
        let range = header(&response, "range")?;
        let (start, last) = range.trim_start_matches("bytes=").split_once('-')?;
        let last: u64 = last.parse().ok()?;
        if start != "0" || last == 0 {
            return None;
        }
        let new_location = if header(&response, "location").is_some() {
            self.location(target, &call, &response).ok()?
        } else {
            location.to_string()
        };
        drain(response);
        Some((last + 1, new_location))
    }

    /// The closing PUT with the digest (and the last bytes, for a monolithic upload).
    fn finish_upload(
        &self,
        target: &Target<'_>,
        blob: &PushBlob,
        location: &str,
        bytes: &[u8],
    ) -> Result<(), Attempt> {
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!(
            "{location}{separator}digest={}",
            percent_encode(&blob.digest)
        );
        let mut call = Call::new(http::Method::PUT, url.clone());
        call.body = Body::Bytes(bytes);
        call.content_type = Some("application/octet-stream");
        let response = self.call(target, &call)?;
        let response = expect_status(target, &call, response, &[201, 204])?;
        if let Some(announced) = header(&response, "docker-content-digest") {
            if validate_digest(&announced).is_ok() && announced != blob.digest {
                return Err(Attempt::Fatal(RegistryError::DigestMismatch {
                    url: strip_query(&url),
                    expected: blob.digest.clone(),
                    actual: announced,
                }));
            }
        }
        drain(response);
        Ok(())
    }

    /// The upload location a response names, made absolute.
    fn location(
        &self,
        target: &Target<'_>,
        call: &Call<'_>,
        response: &http::Response<ureq::Body>,
    ) -> Result<String, Attempt> {
        let invalid = |message: String| {
            Attempt::Fatal(RegistryError::InvalidResponse {
                url: strip_query(&call.url),
                message,
            })
        };
        let location = header(response, "location")
            .ok_or_else(|| invalid("an upload answer without a Location header".to_string()))?;
        let base = self.url(target.reference, "");
        let (scheme, rest) = base.split_once("://").unwrap_or(("https", &base));
        let host = rest.split('/').next().unwrap_or(rest);
        if location.starts_with('/') && !location.starts_with("//") {
            return Ok(format!("{scheme}://{host}{location}"));
        }
        let Some((loc_scheme, loc_rest)) = location.split_once("://") else {
            return Err(invalid(format!(
                "upload Location {:?} is neither an absolute path nor an http(s) URL",
                sanitise(&location)
            )));
        };
        let loc_host = loc_rest.split('/').next().unwrap_or("");
        let allowed = match loc_scheme {
            "https" => true,
            "http" => scheme == "http" || is_loopback_host(loc_host),
            _ => false,
        };
        if !allowed || loc_host.is_empty() {
            return Err(invalid(format!(
                "upload Location {:?} is not an http(s) URL this registry may send us to",
                sanitise(&strip_query(&location))
            )));
        }
        Ok(location)
    }

    /// Retries `op` on retryable failures, with full-jitter backoff (or the registry's
    /// `Retry-After`) within the retry budget.
    fn retrying<T>(&self, mut op: impl FnMut() -> Result<T, Attempt>) -> Result<T, RegistryError> {
        let mut retries = Retries::new(&self.options);
        loop {
            match op() {
                Ok(value) => return Ok(value),
                Err(Attempt::Fatal(error)) => return Err(error),
                Err(Attempt::Retry { error, wait }) => {
                    if !retries.wait(wait) {
                        return Err(with_attempts(error, &retries));
                    }
                }
            }
        }
    }

    /// One request, answering a 401 challenge once. Credentials go only to the registry's own
    /// host, never to an upload location elsewhere.
    fn call(
        &self,
        target: &Target<'_>,
        call: &Call<'_>,
    ) -> Result<http::Response<ureq::Body>, Attempt> {
        let host = target.reference.api_host();
        let same_host = call
            .url
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(""))
            == Some(host);
        let mut authorization = if same_host {
            self.cached_authorization(host, &target.scope)
        } else {
            None
        };
        let mut answered = false;
        loop {
            let response = self.send_once(call, authorization.as_deref())?;
            if response.status().as_u16() == 401 && same_host && !answered {
                answered = true;
                let challenge = pick_challenge(
                    response
                        .headers()
                        .get_all("www-authenticate")
                        .iter()
                        .filter_map(|v| v.to_str().ok()),
                );
                drain(response);
                if let Some(header) =
                    self.authenticate(target.reference, challenge, &target.scope)?
                {
                    authorization = Some(header);
                    continue;
                }
                return Err(Attempt::Fatal(RegistryError::Status {
                    method: method_name(&call.method),
                    url: strip_query(&call.url),
                    status: 401,
                    excerpt: String::new(),
                    hint: self.status_hint(401, target.reference),
                }));
            }
            if response.status().as_u16() == 401 && same_host {
                // Refused what we answered the challenge with: say what that was.
                return Err(Attempt::Fatal(RegistryError::Status {
                    method: method_name(&call.method),
                    url: strip_query(&call.url),
                    status: 401,
                    excerpt: read_error_excerpt(response),
                    hint: self.status_hint(401, target.reference),
                }));
            }
            return Ok(response);
        }
    }

    fn send_once(
        &self,
        call: &Call<'_>,
        authorization: Option<&str>,
    ) -> Result<http::Response<ureq::Body>, Attempt> {
        let mut request = http::Request::builder()
            .method(call.method.clone())
            .uri(&call.url);
        if let Some(authorization) = authorization {
            request = request.header("Authorization", authorization);
        }
        if let Some(content_type) = call.content_type {
            request = request.header("Content-Type", content_type);
        }
        for (name, value) in &call.headers {
            request = request.header(*name, value.as_str());
        }
        let invalid = |e: http::Error| {
            Attempt::Fatal(RegistryError::InvalidResponse {
                url: strip_query(&call.url),
                message: format!("cannot build the request: {}", sanitise(&e.to_string())),
            })
        };
        // An empty body is still sent with `Content-Length: 0` (ureq would otherwise chunk a
        // POST); only HEAD goes without one.
        let result = match call.body {
            Body::Empty if call.method == http::Method::HEAD => {
                self.agent.run(request.body(()).map_err(invalid)?)
            }
            Body::Empty => self.agent.run(request.body(&[][..]).map_err(invalid)?),
            Body::Bytes(bytes) => self.agent.run(request.body(bytes).map_err(invalid)?),
        };
        match result {
            Ok(response) => Ok(response),
            Err(error) => {
                let retry = is_retryable_error(&error)
                    || matches!(error, ureq::Error::Protocol(_) | ureq::Error::BodyStalled);
                let error = RegistryError::Transport {
                    method: method_name(&call.method),
                    hint: transport_hint(&error, &call.url),
                    message: describe_error(&error),
                    url: strip_query(&call.url),
                    attempts: 1,
                };
                Err(if retry {
                    Attempt::Retry { error, wait: None }
                } else {
                    Attempt::Fatal(error)
                })
            }
        }
    }
}

enum Started {
    Mounted,
    Session(String),
}

/// The response when its status is one of `ok`; else the error, retryable or not.
fn expect_status(
    target: &Target<'_>,
    call: &Call<'_>,
    response: http::Response<ureq::Body>,
    ok: &[u16],
) -> Result<http::Response<ureq::Body>, Attempt> {
    let status = response.status().as_u16();
    if ok.contains(&status) {
        return Ok(response);
    }
    let wait = retry_after(&response);
    let excerpt = if call.method == http::Method::HEAD {
        String::new()
    } else {
        read_error_excerpt(response)
    };
    let error = RegistryError::Status {
        method: method_name(&call.method),
        url: strip_query(&call.url),
        status,
        excerpt,
        hint: hint_for_status(
            status,
            &target.reference.registry,
            &target.reference.repository,
        ),
    };
    if is_retryable_status(status) {
        Err(Attempt::Retry { error, wait })
    } else if (200..300).contains(&status) {
        // A success other than the protocol's: the registry does not speak it.
        Err(Attempt::Fatal(RegistryError::InvalidResponse {
            url: strip_query(&call.url),
            message: format!(
                "{} answered HTTP {status}, expected {}",
                method_name(&call.method),
                ok.iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        }))
    } else {
        Err(Attempt::Fatal(error))
    }
}

fn header(response: &http::Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
}

/// Reads what is left of a small answer so the connection can be reused.
fn drain(response: http::Response<ureq::Body>) {
    let mut sink = Vec::new();
    let _ = response
        .into_body()
        .into_reader()
        .take(64 * 1024)
        .read_to_end(&mut sink);
}

fn method_name(method: &http::Method) -> &'static str {
    match *method {
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PATCH => "PATCH",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        _ => "GET",
    }
}

/// Upload URLs carry the registry's session state in their query; messages do not need it.
fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

fn with_attempts(error: RegistryError, retries: &Retries) -> RegistryError {
    let attempts = retries.attempts();
    let spent = format!(
        "gave up after {attempts} attempts in {:.1}s (--retry-timeout allows more)",
        retries.elapsed().as_secs_f64()
    );
    match error {
        RegistryError::Transport {
            method,
            url,
            message,
            hint,
            ..
        } => RegistryError::Transport {
            method,
            url,
            message,
            attempts,
            hint,
        },
        RegistryError::Status {
            method,
            url,
            status,
            excerpt,
            hint,
        } => RegistryError::Status {
            method,
            url,
            status,
            excerpt,
            hint: format!("{hint}{}{spent}", if hint.is_empty() { "" } else { "; " }),
        },
        other => other,
    }
}

/// `tags` and `repository`'s own tag, each once, each checked to be a tag.
/// The report of pushing `image` to tags that name its root already: nothing sent, every blob
/// there. With [`all_tags`], for a caller that knows the tags' state without asking.
pub fn report_present(image: &ImagePush, tags: Vec<String>) -> PushReport {
    let mut blobs: Vec<&str> = Vec::new();
    for blob in &image.blobs {
        if !blobs.contains(&blob.digest.as_str()) {
            blobs.push(&blob.digest);
        }
    }
    PushReport {
        digest: image.root.digest.clone(),
        manifests: image.manifests.iter().map(|m| m.digest.clone()).collect(),
        blobs_present: blobs.len(),
        tags,
        ..PushReport::default()
    }
}

/// Every tag a push of `repository` (its own tag, if any) with `tags` sets, each checked
/// against the tag grammar.
pub fn all_tags(repository: &Reference, tags: &[String]) -> Result<Vec<String>, RegistryError> {
    let mut all: Vec<String> = Vec::new();
    for tag in tags.iter().chain(repository.tag.as_ref()) {
        let parsed: Reference =
            format!("{}/{}:{tag}", repository.registry, repository.repository).parse()?;
        if parsed.tag.as_deref() != Some(tag.as_str()) {
            return Err(RegistryError::Reference(ReferenceError {
                input: tag.clone(),
                reason: "is not a tag".to_string(),
            }));
        }
        if !all.contains(tag) {
            all.push(tag.clone());
        }
    }
    Ok(all)
}

fn check_manifest(manifest: &PushManifest) -> Result<(), RegistryError> {
    let actual = super::client::digest_of("sha256", &manifest.bytes);
    if actual != manifest.digest {
        return Err(RegistryError::Local {
            what: format!("manifest {}", manifest.digest),
            message: format!("its bytes hash to {actual}; refusing to push it under that digest"),
        });
    }
    Ok(())
}

fn local_error(blob: &PushBlob, message: &str) -> RegistryError {
    let what = match &blob.source {
        BlobSource::File(path) => format!("blob {} ({})", blob.digest, path.display()),
        BlobSource::Bytes(_) => format!("blob {}", blob.digest),
        BlobSource::Registry(from) => format!("blob {} (from {from})", blob.digest),
    };
    RegistryError::Local {
        what,
        message: message.to_string(),
    }
}

impl Client {
    /// The blob's bytes from `offset` on; `None` when its source cannot start there (a blob
    /// streamed from another registry can only start at 0).
    fn open_source_at<'b>(
        &self,
        blob: &'b PushBlob,
        offset: u64,
    ) -> Result<Option<Box<dyn Read + 'b>>, Attempt> {
        match &blob.source {
            BlobSource::Bytes(bytes) => {
                if bytes.len() as u64 != blob.size {
                    return Err(Attempt::Fatal(local_error(
                        blob,
                        &format!("holds {} bytes, not {}", bytes.len(), blob.size),
                    )));
                }
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                Ok(bytes
                    .get(start..)
                    .map(|rest| Box::new(rest) as Box<dyn Read>))
            }
            BlobSource::File(path) => {
                let mut file = std::fs::File::open(path)
                    .map_err(|e| Attempt::Fatal(local_error(blob, &format!("cannot open: {e}"))))?;
                file.seek(SeekFrom::Start(offset)).map_err(|e| {
                    Attempt::Fatal(local_error(blob, &format!("cannot seek to {offset}: {e}")))
                })?;
                Ok(Some(Box::new(std::io::BufReader::with_capacity(
                    1 << 20,
                    file,
                ))))
            }
            BlobSource::Registry(_) if offset > 0 => Ok(None),
            BlobSource::Registry(from) => {
                let reader = self
                    .open_blob_sized(from, &blob.digest, blob.size)
                    .map_err(|e| {
                        Attempt::Fatal(local_error(
                            blob,
                            &format!(
                                "the target registry lacks it and fetching it failed: {e}; \
                                 build again with --output oci:DIR so the layout holds every \
                                 blob"
                            ),
                        ))
                    })?;
                Ok(Some(Box::new(std::io::BufReader::with_capacity(
                    1 << 20,
                    reader,
                ))))
            }
        }
    }

    fn read_source(&self, blob: &PushBlob, len: u64) -> Result<Vec<u8>, Attempt> {
        let reader = self
            .open_source_at(blob, 0)?
            .ok_or_else(|| Attempt::Fatal(local_error(blob, "cannot be read from its start")))?;
        let mut bytes = Vec::new();
        reader
            .take(len + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Attempt::Fatal(local_error(blob, &format!("cannot read: {e}"))))?;
        if bytes.len() as u64 != len {
            return Err(Attempt::Fatal(local_error(
                blob,
                &format!("is {} bytes, not the {len} announced", bytes.len()),
            )));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_not_quoted() {
        assert_eq!(
            strip_query("http://h/v2/a/blobs/uploads/u?_state=secret"),
            "http://h/v2/a/blobs/uploads/u"
        );
    }

    #[test]
    fn manifests_must_match_their_digest() {
        let bytes = b"{}".to_vec();
        let good = PushManifest {
            media_type: "x".into(),
            digest: super::super::client::digest_of("sha256", &bytes),
            bytes: bytes.clone(),
        };
        assert!(check_manifest(&good).is_ok());
        let bad = PushManifest {
            digest: super::super::client::digest_of("sha256", b"other"),
            ..good
        };
        assert!(matches!(
            check_manifest(&bad),
            Err(RegistryError::Local { .. })
        ));
    }
}
