//! The blocking HTTP side of the distribution API: manifests and blobs, authentication,
//! retries, size limits and digest checks. All registry network traffic goes through [`Client`].

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::http;

use crate::image::model::{DocumentHead, HeadError};
use crate::image::{BlobFault, VerifiedBlob};

use super::auth::{percent_encode, pick_challenge, Challenge, DockerConfig, Scopes, Secret};
use super::credentials::{CredentialStore, SecretWithSource};
use super::error::{error_excerpt, hint_for_status, sanitise, RegistryError};
use super::reference::{validate_digest, Reference, ReferenceError};

pub use crate::image::model::{
    MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
};

/// Manifests larger than this are refused (the limit most registries enforce on push).
pub const DEFAULT_MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;
/// Token endpoint answers larger than this are refused.
pub const MAX_TOKEN_RESPONSE_BYTES: u64 = 1024 * 1024;
/// At most this much of an error body is read to quote the registry.
const MAX_ERROR_BODY_BYTES: u64 = 64 * 1024;
/// How long a failing operation is retried unless the caller says otherwise.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(300);
/// Tokens are renewed this long before the registry says they expire.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// Lifetime of a token whose answer gives none (the token spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// The `Accept` header for manifests: every image manifest and index format we can read.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// Knobs of the client. The defaults suit real registries; tests shorten the timeouts.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Registries (as written in references, e.g. `myhost:5000`) to reach over plain HTTP.
    /// Loopback registries (localhost, 127.0.0.0/8, ::1) always are.
    pub insecure_registries: Vec<String>,
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// Limit on waiting for the response status and headers.
    pub response_timeout: Duration,
    /// Limit on each read of the body: a registry that stops sending for this long fails.
    pub idle_read_timeout: Duration,
    /// Limit on reading a whole small body (manifest, token, error text).
    pub small_body_timeout: Duration,
    /// Attempts for each operation at most (1 = no retries). By default only `retry_timeout`
    /// limits them.
    pub attempts: u32,
    /// Backoff base: the n-th retry waits a random time in [0, min(`max_backoff`,
    /// `backoff`·2^(n-1))] ("full jitter", so clients that failed together spread out).
    pub backoff: Duration,
    /// Longest single backoff wait.
    pub max_backoff: Duration,
    /// Longest `Retry-After` honoured; longer requests are shortened to this.
    pub max_retry_after: Duration,
    /// How long one failing operation (a request, a chunk, a blob's upload session, a
    /// download's resumption) keeps being retried, counted from its first failure. The CLI's
    /// `--retry-timeout`.
    pub retry_timeout: Duration,
    /// Largest manifest or index accepted.
    pub max_manifest_bytes: u64,
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure_registries: Vec::new(),
            connect_timeout: Duration::from_secs(30),
            response_timeout: Duration::from_secs(60),
            idle_read_timeout: Duration::from_secs(60),
            small_body_timeout: Duration::from_secs(120),
            attempts: u32::MAX,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(30),
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
            user_agent: concat!("rcross/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// A manifest or index as the registry served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: String,
    /// Digest of `bytes` (verified against the requested digest, if any).
    pub digest: String,
    pub bytes: Vec<u8>,
}

/// Bearer tokens kept per registry host.
const MAX_TOKENS_PER_HOST: usize = 64;

/// The OAuth `client_id` sent with identity-token requests (the token server requires one).
const OAUTH_CLIENT_ID: &str = "rcross";

/// How a request authenticates once we know what the registry wants.
#[derive(Clone)]
struct Token {
    header: String,
    expires: Instant,
    /// What the token server granted (what it said, else what we asked for).
    granted: Scopes,
}

/// A token endpoint's answer.
struct FetchedToken {
    token: String,
    lifetime: Duration,
    /// The scopes the answer says were granted, if it says.
    granted: Option<Scopes>,
}

/// A blocking registry client. Cheap to clone; clones share the token cache.
#[derive(Clone)]
pub struct Client {
    pub(super) agent: ureq::Agent,
    pub(super) options: Arc<ClientOptions>,
    credentials: Arc<CredentialStore>,
    /// Bearer tokens by api host; a request uses one whose granted scopes cover its needs.
    tokens: Arc<Mutex<HashMap<String, Vec<Token>>>>,
    /// Registries that asked for Basic auth: send credentials up front.
    basic: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Whether a body is small and read whole (bounded total time) or streamed (idle limit only).
#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Small,
    Stream,
}

/// One request to make: where, what to accept, how much time its body may take, and from
/// which byte on (a resumed download).
struct Request<'a> {
    url: String,
    accept: Option<&'a str>,
    kind: BodyKind,
    range_from: Option<u64>,
}

impl Client {
    /// A client with credentials from the Docker config file (`$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`) and its credential helpers; `insecure` registries use plain
    /// HTTP (loopback ones always do).
    pub fn from_environment(insecure: &[String]) -> Result<Client, RegistryError> {
        Client::from_environment_with(insecure, DEFAULT_RETRY_TIMEOUT)
    }

    /// [`Client::from_environment`] with failing operations retried for `retry_timeout`.
    pub fn from_environment_with(
        insecure: &[String],
        retry_timeout: Duration,
    ) -> Result<Client, RegistryError> {
        let options = ClientOptions {
            insecure_registries: insecure.to_vec(),
            retry_timeout,
            ..ClientOptions::default()
        };
        Ok(Client::with_store(
            options,
            CredentialStore::from_environment()?,
        ))
    }

    /// A client whose credentials come from `credentials` (its helpers run as processes).
    pub fn new(options: ClientOptions, credentials: DockerConfig) -> Client {
        Client::with_store(options, Arc::new(CredentialStore::new(credentials)))
    }

    /// A client whose credentials come from `credentials`, shared with its other users.
    pub fn with_store(options: ClientOptions, credentials: Arc<CredentialStore>) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(options.connect_timeout))
            .timeout_recv_response(Some(options.response_timeout))
            .timeout_per_read(Some(options.idle_read_timeout))
            .max_redirects(5)
            // Blob downloads redirect to storage that rejects (or must not see) our token.
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
            .max_response_header_size(64 * 1024)
            .user_agent(options.user_agent.as_str())
            .build();
        Client {
            agent: ureq::Agent::new_with_config(config),
            options: Arc::new(options),
            credentials,
            tokens: Arc::new(Mutex::new(HashMap::new())),
            basic: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// This client with other options (timeouts, plain-HTTP registries), sharing its
    /// credentials and the tokens it holds.
    pub fn with_options(&self, options: ClientOptions) -> Client {
        Client {
            tokens: Arc::clone(&self.tokens),
            basic: Arc::clone(&self.basic),
            ..Client::with_store(options, Arc::clone(&self.credentials))
        }
    }

    /// A client with default options and no credentials.
    pub fn anonymous() -> Client {
        Client::new(ClientOptions::default(), DockerConfig::default())
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The manifest or index `reference` names (its digest, else its tag, else `latest`).
    pub fn get_manifest(&self, reference: &Reference) -> Result<Manifest, RegistryError> {
        if let Some(digest) = reference.digest.as_deref() {
            require_sha256(digest)?;
        }
        let wanted = reference.manifest_ref();
        let url = self.url(reference, &format!("manifests/{wanted}"));
        let request = Request {
            url: url.clone(),
            accept: Some(MANIFEST_ACCEPT),
            kind: BodyKind::Small,
            range_from: None,
        };
        let max = self.options.max_manifest_bytes;
        // A body cut part way is asked for again (a manifest is small: no Range).
        let mut retries = Retries::new(&self.options);
        let (content_type, announced_digest, bytes) = loop {
            let response = self.get(reference, &request)?;
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let content_type = header("content-type");
            let announced_digest = header("docker-content-digest");
            match read_bounded(response, max, &url, "manifest") {
                Ok(bytes) => break (content_type, announced_digest, bytes),
                Err(error @ RegistryError::Transport { .. }) => {
                    if !retries.wait(None) {
                        return Err(error);
                    }
                }
                Err(error) => return Err(error),
            }
        };

        let expected = reference.digest.as_deref();
        let algorithm = expected.map_or("sha256", |d| d.split(':').next().unwrap_or("sha256"));
        let digest = digest_of(algorithm, &bytes);
        if let Some(expected) = expected {
            if digest != expected {
                return Err(RegistryError::DigestMismatch {
                    url,
                    expected: expected.to_string(),
                    actual: digest,
                });
            }
        }
        if let Some(announced) = announced_digest.filter(|d| validate_digest(d).is_ok()) {
            let (announced_algorithm, _) = announced.split_once(':').unwrap_or(("", ""));
            let actual = digest_of(announced_algorithm, &bytes);
            if actual != announced {
                return Err(RegistryError::DigestMismatch {
                    url,
                    expected: announced,
                    actual,
                });
            }
        }

        let media_type =
            manifest_media_type(&bytes, content_type.as_deref()).map_err(|message| {
                RegistryError::InvalidResponse {
                    url: url.clone(),
                    message,
                }
            })?;
        Ok(Manifest {
            media_type,
            digest,
            bytes,
        })
    }

    /// A streaming reader over a blob of `reference`'s repository (its tag or digest is not
    /// used); it fails at the end of the content if the content does not hash to `digest`.
    /// Prefer [`Client::open_blob_sized`] when the descriptor's size is known.
    pub fn open_blob(
        &self,
        reference: &Reference,
        digest: &str,
    ) -> Result<BlobReader, RegistryError> {
        self.open_blob_as(reference, digest, None, BodyKind::Stream)
    }

    /// [`Client::open_blob`] for a blob whose descriptor says it is `size` bytes: a registry
    /// that announces or sends more fails the read (after at most `size + 1` bytes), and a
    /// download cut short resumes where it stopped.
    pub fn open_blob_sized(
        &self,
        reference: &Reference,
        digest: &str,
        size: u64,
    ) -> Result<BlobReader, RegistryError> {
        self.open_blob_as(reference, digest, Some(size), BodyKind::Stream)
    }

    /// A whole blob of `reference`'s repository, at most `max` bytes, verified against `digest`.
    pub fn blob_bytes(
        &self,
        reference: &Reference,
        digest: &str,
        max: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let kind = if max <= self.options.max_manifest_bytes {
            BodyKind::Small
        } else {
            BodyKind::Stream
        };
        let mut reader = self.open_blob_as(reference, digest, None, kind)?;
        if let Some(size) = reader.content_length.filter(|&size| size > max) {
            return Err(RegistryError::TooLarge {
                url: reader.url,
                what: "blob",
                size: Some(size),
                max,
            });
        }
        let mut bytes = Vec::new();
        match (&mut reader)
            .take(max.saturating_add(1))
            .read_to_end(&mut bytes)
        {
            Ok(_) if bytes.len() as u64 > max => Err(RegistryError::TooLarge {
                url: reader.url,
                what: "blob",
                size: None,
                max,
            }),
            Ok(_) => Ok(bytes),
            Err(e) => Err(reader.error_from_io(e)),
        }
    }

    fn open_blob_as(
        &self,
        reference: &Reference,
        digest: &str,
        size: Option<u64>,
        kind: BodyKind,
    ) -> Result<BlobReader, RegistryError> {
        validate_digest(digest).map_err(|reason| ReferenceError {
            input: digest.to_string(),
            reason,
        })?;
        require_sha256(digest)?;
        let url = self.url(reference, &format!("blobs/{digest}"));
        let request = Request {
            url: url.clone(),
            accept: None,
            kind,
            range_from: None,
        };
        let response = self.get(reference, &request)?;
        let content_length = content_length(&response);
        if let (Some(announced), Some(size)) = (content_length, size) {
            if announced > size {
                return Err(too_large(&url, digest, size, Some(announced)));
            }
        }
        let body = RegistryBody {
            inner: response.into_body().into_reader(),
            url: url.clone(),
            total: size.or(content_length),
            offset: 0,
            resume: Some(Resume {
                client: self.clone(),
                reference: reference.clone(),
                kind,
                retries: Retries::new(&self.options),
            }),
        };
        Ok(BlobReader {
            verified: VerifiedBlob::new(body, digest, size),
            expected: digest.to_string(),
            url,
            content_length,
        })
    }

    pub(super) fn url(&self, reference: &Reference, path: &str) -> String {
        let host = reference.api_host();
        format!(
            "{}://{host}/v2/{}/{path}",
            self.scheme(&reference.registry, host),
            reference.repository
        )
    }

    fn scheme(&self, registry: &str, host: &str) -> &'static str {
        let insecure = is_loopback_host(host)
            || self
                .options
                .insecure_registries
                .iter()
                .any(|r| r == registry || r == host);
        if insecure {
            "http"
        } else {
            "https"
        }
    }

    /// GET with authentication: reuse a cached token, answer one 401 challenge, and turn error
    /// statuses into [`RegistryError::Status`].
    fn get(
        &self,
        reference: &Reference,
        request: &Request<'_>,
    ) -> Result<http::Response<ureq::Body>, RegistryError> {
        let host = reference.api_host().to_string();
        let scope = format!("repository:{}:pull", reference.repository);
        let mut authorization = self.cached_authorization(&host, &scope);
        let mut answered_challenge = false;
        loop {
            let response = self.send(request, authorization.as_deref())?;
            let status = response.status().as_u16();
            if status == 401 && !answered_challenge {
                answered_challenge = true;
                let challenge = pick_challenge(
                    response
                        .headers()
                        .get_all("www-authenticate")
                        .iter()
                        .filter_map(|v| v.to_str().ok()),
                );
                if let Some(header) = self.authenticate(reference, challenge, &scope)? {
                    authorization = Some(header);
                    continue;
                }
            }
            if response.status().is_success() {
                return Ok(response);
            }
            let excerpt = read_error_excerpt(response);
            return Err(RegistryError::Status {
                method: "GET",
                url: request.url.clone(),
                status,
                excerpt,
                hint: self.status_hint(status, reference),
            });
        }
    }

    /// A cached token that covers `scope` (space-separated scopes the request needs), else
    /// Basic credentials for a registry that asked for them.
    pub(super) fn cached_authorization(&self, host: &str, scope: &str) -> Option<String> {
        let needed = Scopes::parse(scope);
        if let Ok(tokens) = self.tokens.lock() {
            let now = Instant::now();
            let covering = tokens.get(host).and_then(|held| {
                held.iter()
                    .find(|t| t.expires > now && t.granted.covers(&needed))
            });
            if let Some(token) = covering {
                return Some(token.header.clone());
            }
        }
        let wants_basic = self.basic.lock().is_ok_and(|set| set.contains(host));
        if wants_basic {
            // Looked up when the registry first asked; an error then already ended that call.
            if let Some(Some(SecretWithSource {
                secret: Secret::Basic(credentials),
                ..
            })) = self.credentials.answered(registry_for_host(host))
            {
                return Some(credentials.basic_header());
            }
        }
        None
    }

    /// What to tell the user about an error status from `reference`'s registry: for a 401, what
    /// we offered it (a helper's credentials, the file's, none).
    pub(super) fn status_hint(&self, status: u16, reference: &Reference) -> String {
        if status == 401 {
            self.credentials.unauthorized_hint(&reference.registry)
        } else {
            hint_for_status(status, &reference.registry, &reference.repository)
        }
    }

    /// The `Authorization` value that answers `challenge` for a request that needs `scope`
    /// (space-separated), or `None` when we have nothing to offer (the caller then reports the
    /// 401 with a login hint). A bearer token is asked for the union of `scope` and the
    /// challenge's scopes, so a first challenge that names only `pull` still gets a token the
    /// rest of a push can use.
    pub(super) fn authenticate(
        &self,
        reference: &Reference,
        challenge: Option<Challenge>,
        scope: &str,
    ) -> Result<Option<String>, RegistryError> {
        let host = reference.api_host();
        let secret = self
            .credentials
            .lookup(&reference.registry)?
            .map(|found| found.secret);
        match challenge {
            Some(Challenge::Bearer {
                realm,
                service,
                scope: challenge_scope,
            }) => {
                let asked = Scopes::parse(scope)
                    .union(&Scopes::parse(challenge_scope.as_deref().unwrap_or("")));
                let token = self.fetch_token(
                    reference,
                    &realm,
                    service.as_deref(),
                    &asked,
                    secret.as_ref(),
                )?;
                let header = format!("Bearer {}", token.token);
                if let Ok(mut tokens) = self.tokens.lock() {
                    let now = Instant::now();
                    let held = tokens.entry(host.to_string()).or_default();
                    held.retain(|t| t.expires > now);
                    // Each push or mount may add a token for its own repositories; keep the
                    // newest few per registry.
                    if held.len() >= MAX_TOKENS_PER_HOST {
                        held.remove(0);
                    }
                    held.push(Token {
                        header: header.clone(),
                        expires: now + token.lifetime,
                        granted: token.granted.unwrap_or(asked),
                    });
                }
                Ok(Some(header))
            }
            // A 401 without a challenge we understand: Basic is the only thing left to try. An
            // identity token is only good for a token server.
            Some(Challenge::Basic) | None => match secret {
                Some(Secret::Basic(credentials)) => {
                    if let Ok(mut basic) = self.basic.lock() {
                        basic.insert(host.to_string());
                    }
                    Ok(Some(credentials.basic_header()))
                }
                Some(Secret::IdentityToken(_)) | None => Ok(None),
            },
        }
    }

    /// Asks the token endpoint for a token with `scopes`: a GET with each scope as its own
    /// `scope=` parameter (Basic credentials if we have them), or, for an identity token, the
    /// OAuth refresh-token POST docker uses.
    fn fetch_token(
        &self,
        reference: &Reference,
        realm: &str,
        service: Option<&str>,
        scopes: &Scopes,
        secret: Option<&Secret>,
    ) -> Result<FetchedToken, RegistryError> {
        let registry = reference.registry.as_str();
        let realm_is_http = realm.starts_with("http://");
        if !realm_is_http && !realm.starts_with("https://") {
            return Err(Self::auth_error(
                registry,
                format!("token realm {:?} is not an http(s) URL", sanitise(realm)),
                String::new(),
            ));
        }
        // Never send a secret in clear text to a realm the registry could not vouch for.
        let registry_is_http = self.scheme(&reference.registry, reference.api_host()) == "http";
        if secret.is_some() && realm_is_http && !registry_is_http {
            return Err(Self::auth_error(
                registry,
                format!("token realm {realm} is plain HTTP; refusing to send credentials to it"),
                String::new(),
            ));
        }
        let (url, response) = match secret {
            Some(Secret::IdentityToken(refresh)) => {
                self.refresh_token_post(realm, service, scopes, refresh)?
            }
            Some(Secret::Basic(credentials)) => {
                self.token_get(realm, service, scopes, Some(&credentials.basic_header()))?
            }
            None => self.token_get(realm, service, scopes, None)?,
        };
        if !response.status().is_success() {
            return Err(self.token_refused(reference, &url, response, scopes, secret.is_some()));
        }
        let body = read_bounded(response, MAX_TOKEN_RESPONSE_BYTES, &url, "token response")?;
        Self::token_from_answer(registry, &url, &body)
    }

    /// The OAuth refresh-token POST for an identity token; the URL asked and the answer.
    fn refresh_token_post(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &Scopes,
        refresh: &str,
    ) -> Result<(String, http::Response<ureq::Body>), RegistryError> {
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh.to_string()),
            ("client_id", OAUTH_CLIENT_ID.to_string()),
        ];
        if let Some(service) = service {
            form.push(("service", service.to_string()));
        }
        if !scopes.is_empty() {
            // The OAuth form carries them space-separated in one field, as docker does.
            form.push(("scope", scopes.to_params().join(" ")));
        }
        let url = realm.to_string();
        let response = self
            .agent
            .post(&url)
            .header("Accept", "application/json")
            .config()
            .timeout_recv_body(Some(self.options.small_body_timeout))
            .build()
            .send_form(form.iter().map(|(k, v)| (*k, v.as_str())))
            .map_err(|error| RegistryError::Transport {
                method: "POST",
                hint: transport_hint(&error, &url),
                message: describe_error(&error),
                url: url.clone(),
                attempts: 1,
            })?;
        Ok((url, response))
    }

    /// The token GET: service and each scope as URL parameters, with Basic credentials when
    /// given; the URL asked and the answer.
    fn token_get(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &Scopes,
        authorization: Option<&str>,
    ) -> Result<(String, http::Response<ureq::Body>), RegistryError> {
        let mut url = realm.to_string();
        let mut separator = if url.contains('?') { '&' } else { '?' };
        if let Some(service) = service {
            url.push_str(&format!("{separator}service={}", percent_encode(service)));
            separator = '&';
        }
        for scope in scopes.to_params() {
            url.push_str(&format!("{separator}scope={}", percent_encode(&scope)));
            separator = '&';
        }
        let request = Request {
            url: url.clone(),
            accept: Some("application/json"),
            kind: BodyKind::Small,
            range_from: None,
        };
        let response = self.send(&request, authorization)?;
        Ok((url, response))
    }

    /// The error for a token endpoint that answered with a failure status: its excerpt, and for
    /// 401 and 403 what to check about the credentials and the account's rights.
    fn token_refused(
        &self,
        reference: &Reference,
        url: &str,
        response: http::Response<ureq::Body>,
        scopes: &Scopes,
        had_secret: bool,
    ) -> RegistryError {
        let status = response.status().as_u16();
        let excerpt = read_error_excerpt(response);
        let hint = if matches!(status, 401 | 403) {
            let offered = if had_secret {
                self.credentials.unauthorized_hint(&reference.registry)
            } else {
                hint_for_status(401, &reference.registry, &reference.repository)
            };
            format!(
                "{offered}; or check that your account may {} {}",
                if scopes.to_params().iter().any(|s| s.ends_with("push")) {
                    "push to"
                } else {
                    "pull"
                },
                reference.repository
            )
        } else {
            hint_for_status(status, &reference.registry, &reference.repository)
        };
        Self::auth_error(
            &reference.registry,
            format!(
                "token endpoint {url} answered HTTP {status}{}",
                if excerpt.is_empty() {
                    String::new()
                } else {
                    format!(": {excerpt}")
                }
            ),
            hint,
        )
    }

    fn auth_error(registry: &str, message: String, hint: String) -> RegistryError {
        RegistryError::Auth {
            registry: registry.to_string(),
            message,
            hint,
        }
    }

    /// The token in a token endpoint's answer (`token`, or OAuth's `access_token`), how long to
    /// keep it, and the scopes granted when the answer says.
    fn token_from_answer(
        registry: &str,
        url: &str,
        body: &[u8],
    ) -> Result<FetchedToken, RegistryError> {
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            expires_in: Option<u64>,
            /// What the server granted, when it says (OAuth answers do).
            #[serde(default)]
            scope: Option<String>,
        }
        let answer: TokenAnswer = serde_json::from_slice(body).map_err(|e| {
            Self::auth_error(
                registry,
                format!(
                    "token endpoint {url} answered something that is not a token ({:?} error at \
                     line {} column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
                String::new(),
            )
        })?;
        let token = answer
            .token
            .filter(|t| !t.is_empty())
            .or(answer.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| {
                Self::auth_error(
                    registry,
                    format!("token endpoint {url} answered without a token"),
                    String::new(),
                )
            })?;
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Self::auth_error(
                registry,
                format!(
                    "token endpoint {url} answered a token with characters a header cannot carry"
                ),
                String::new(),
            ));
        }
        let lifetime = answer
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs)
            .min(Duration::from_secs(24 * 3600))
            .saturating_sub(TOKEN_EXPIRY_MARGIN);
        let granted = answer
            .scope
            .map(|s| Scopes::parse(&s))
            .filter(|s| !s.is_empty());
        Ok(FetchedToken {
            token,
            lifetime,
            granted,
        })
    }

    /// One GET with retries on connection failures, 408, 429 and 5xx, with backoff (or the
    /// registry's `Retry-After`) within the retry budget.
    fn send(
        &self,
        request: &Request<'_>,
        authorization: Option<&str>,
    ) -> Result<http::Response<ureq::Body>, RegistryError> {
        let mut retries = Retries::new(&self.options);
        loop {
            let mut builder = self.agent.get(&request.url);
            if let Some(accept) = request.accept {
                builder = builder.header("Accept", accept);
            }
            if let Some(authorization) = authorization {
                builder = builder.header("Authorization", authorization);
            }
            if let Some(from) = request.range_from {
                builder = builder.header("Range", format!("bytes={from}-"));
            }
            if request.kind == BodyKind::Small {
                builder = builder
                    .config()
                    .timeout_recv_body(Some(self.options.small_body_timeout))
                    .build();
            }
            let wait = match builder.call() {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if !is_retryable_status(status) {
                        return Ok(response);
                    }
                    match retries.next_wait(retry_after(&response)) {
                        Some(wait) => wait,
                        None => return Ok(response),
                    }
                }
                Err(error) => {
                    let wait = if is_retryable_error(&error) {
                        retries.next_wait(None)
                    } else {
                        None
                    };
                    match wait {
                        Some(wait) => wait,
                        None => {
                            return Err(RegistryError::Transport {
                                method: "GET",
                                hint: transport_hint(&error, &request.url),
                                message: describe_error(&error),
                                url: request.url.clone(),
                                attempts: retries.attempts(),
                            })
                        }
                    }
                }
            };
            std::thread::sleep(wait);
        }
    }
}

/// The ceiling of the `attempt`-th backoff wait: `backoff`·2^(attempt-1), at most `max_backoff`.
fn backoff_ceiling(options: &ClientOptions, attempt: u32) -> Duration {
    options
        .backoff
        .saturating_mul(1 << attempt.saturating_sub(1).min(20))
        .min(options.max_backoff)
}

/// The retry budget of one operation: how many attempts it has had, since when it fails, and
/// how long to wait before the next attempt, if any is left.
#[derive(Debug, Clone)]
pub(super) struct Retries {
    options: Arc<ClientOptions>,
    attempts: u32,
    first_failure: Option<Instant>,
}

impl Retries {
    pub(super) fn new(options: &Arc<ClientOptions>) -> Retries {
        Retries {
            options: Arc::clone(options),
            attempts: 1,
            first_failure: None,
        }
    }

    /// Attempts made so far.
    pub(super) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Time since the first failure.
    pub(super) fn elapsed(&self) -> Duration {
        self.first_failure.map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// After a failed attempt: how long to wait before the next one (the registry's
    /// `Retry-After`, capped, else a full-jitter backoff), or `None` when the attempts or the
    /// retry timeout are used up. Counts the next attempt.
    pub(super) fn next_wait(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        let first = *self.first_failure.get_or_insert_with(Instant::now);
        if self.attempts >= self.options.attempts.max(1) {
            return None;
        }
        let left = self.options.retry_timeout.checked_sub(first.elapsed())?;
        if left.is_zero() {
            return None;
        }
        let wait = match retry_after {
            Some(wait) => wait.min(self.options.max_retry_after),
            None => full_jitter(backoff_ceiling(&self.options, self.attempts)),
        };
        self.attempts += 1;
        Some(wait.min(left))
    }

    /// [`Retries::next_wait`], sleeping it: `false` when no attempt is left.
    pub(super) fn wait(&mut self, retry_after: Option<Duration>) -> bool {
        match self.next_wait(retry_after) {
            Some(wait) => {
                std::thread::sleep(wait);
                true
            }
            None => false,
        }
    }
}

/// A uniformly random duration in [0, `ceiling`].
pub(super) fn full_jitter(ceiling: Duration) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(random_u64() % nanos.saturating_add(1).max(1))
}

fn random_u64() -> u64 {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_ok() {
        return u64::from_le_bytes(bytes);
    }
    // No system randomness: the standard library's per-process hash keys still differ between
    // processes, which is all jitter needs.
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    hasher.finish()
}

/// Refuses a digest whose algorithm is not sha256: rcross verifies content only against
/// sha256, and never reads content it cannot verify.
pub(crate) fn require_sha256(digest: &str) -> Result<(), ReferenceError> {
    match digest.split_once(':') {
        Some(("sha256", _)) => Ok(()),
        Some((algorithm, _)) => Err(ReferenceError {
            input: digest.to_string(),
            reason: format!(
                "uses the digest algorithm {:?}; rcross verifies content only against sha256 \
                 digests and refuses to read what it cannot verify (push the image with sha256 \
                 digests, as docker, buildah and skopeo do by default)",
                sanitise(algorithm)
            ),
        }),
        None => Err(ReferenceError {
            input: digest.to_string(),
            reason: "is not ALGORITHM:HEX".to_string(),
        }),
    }
}

fn too_large(url: &str, digest: &str, size: u64, announced: Option<u64>) -> RegistryError {
    RegistryError::InvalidResponse {
        url: url.to_string(),
        message: format!(
            "blob {digest} is {} than the {size} bytes its descriptor says; refusing to read it",
            match announced {
                Some(announced) => format!("announced as {announced} bytes, more"),
                None => "longer".to_string(),
            }
        ),
    }
}

/// The host's registry name as used for credentials (`registry-1.docker.io` → `docker.io`).
fn registry_for_host(host: &str) -> &str {
    if host == super::reference::DOCKER_HUB_API_HOST {
        super::reference::DOCKER_HUB
    } else {
        host
    }
}

pub(super) fn is_loopback_host(host_and_port: &str) -> bool {
    let host = if let Some(rest) = host_and_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host_and_port.split(':').next().unwrap_or(host_and_port)
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(super) fn is_retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

/// Whether a failed request may succeed when sent again. A refused connection is not retried:
/// nothing listens there (a wrong port, a registry that is down), and retrying it for the whole
/// `--retry-timeout` would only delay the error; go-containerregistry and containerd do not
/// retry it either. Resets, cut answers and timeouts are what a flaky network does: retried.
pub(super) fn is_retryable_error(error: &ureq::Error) -> bool {
    match error {
        ureq::Error::Io(e) => e.kind() != io::ErrorKind::ConnectionRefused,
        ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed => true,
        _ => false,
    }
}

/// `Retry-After` in seconds. HTTP dates are not parsed; the caller falls back to its backoff.
pub(super) fn retry_after(response: &http::Response<ureq::Body>) -> Option<Duration> {
    let value = response.headers().get("retry-after")?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

pub(super) fn describe_error(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Timeout(which) => format!("timed out ({which})"),
        ureq::Error::ConnectionFailed => "connection failed".to_string(),
        ureq::Error::HostNotFound => "host not found".to_string(),
        other => sanitise(&other.to_string()),
    }
}

pub(super) fn transport_hint(error: &ureq::Error, url: &str) -> String {
    match error {
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) if url.starts_with("https://") => {
            "if this registry speaks plain HTTP, mark it insecure (--insecure)".to_string()
        }
        ureq::Error::HostNotFound => "check the registry host name".to_string(),
        ureq::Error::ConnectionFailed => "is the registry running and reachable?".to_string(),
        ureq::Error::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            "is the registry running and reachable?".to_string()
        }
        ureq::Error::Timeout(_) => "the registry did not answer in time; retry later".to_string(),
        _ => String::new(),
    }
}

fn content_length(response: &http::Response<ureq::Body>) -> Option<u64> {
    response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Reads a whole body of at most `max` bytes; refuses larger ones without reading them.
fn read_bounded(
    response: http::Response<ureq::Body>,
    max: u64,
    url: &str,
    what: &'static str,
) -> Result<Vec<u8>, RegistryError> {
    if let Some(size) = content_length(&response).filter(|&size| size > max) {
        return Err(RegistryError::TooLarge {
            url: url.to_string(),
            what,
            size: Some(size),
            max,
        });
    }
    let mut bytes = Vec::new();
    response
        .into_body()
        .into_reader()
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| RegistryError::Transport {
            method: "GET",
            url: url.to_string(),
            message: format!("reading the {what}: {}", sanitise(&e.to_string())),
            attempts: 1,
            hint: String::new(),
        })?;
    if bytes.len() as u64 > max {
        return Err(RegistryError::TooLarge {
            url: url.to_string(),
            what,
            size: None,
            max,
        });
    }
    Ok(bytes)
}

/// The registry's explanation of an error status, best effort.
pub(super) fn read_error_excerpt(response: http::Response<ureq::Body>) -> String {
    let mut bytes = Vec::new();
    let _ = response
        .into_body()
        .into_reader()
        .take(MAX_ERROR_BODY_BYTES)
        .read_to_end(&mut bytes);
    error_excerpt(&bytes)
}

/// The media type of a manifest: its `mediaType` field (covered by the digest), else the
/// Content-Type header when it is specific. The body must be a JSON object.
fn manifest_media_type(bytes: &[u8], content_type: Option<&str>) -> Result<String, String> {
    let head = DocumentHead::read(bytes).map_err(|e| match e {
        HeadError::NotJson(e) => format!(
            "manifest is not JSON ({e}); it starts with {:?}",
            sanitise(&String::from_utf8_lossy(&bytes[..bytes.len().min(60)]))
        ),
        HeadError::NotObject => "manifest is JSON but not an object".to_string(),
        HeadError::BadMediaType => "manifest mediaType is not a non-empty string".to_string(),
    })?;
    if let Some(media_type) = head.media_type {
        return Ok(media_type);
    }
    let header = content_type
        .and_then(|ct| ct.split(';').next())
        .map(str::trim)
        .filter(|ct| {
            !ct.is_empty()
                && !matches!(
                    *ct,
                    "application/json" | "text/plain" | "application/octet-stream"
                )
        });
    match header {
        Some(media_type) => Ok(media_type.to_string()),
        // An OCI manifest may omit mediaType; its shape tells which one it is.
        None if head.has_manifests => Ok(MEDIA_TYPE_OCI_INDEX.to_string()),
        None if head.has_config_and_layers => Ok(MEDIA_TYPE_OCI_MANIFEST.to_string()),
        None => {
            Err("manifest has no mediaType and the registry sent no usable Content-Type".into())
        }
    }
}

/// `algorithm:hex` of `bytes` (sha256 unless `algorithm` is sha512).
pub fn digest_of(algorithm: &str, bytes: &[u8]) -> String {
    match algorithm {
        "sha512" => crate::image::digest::sha512_digest(bytes),
        _ => crate::image::sha256_digest(bytes),
    }
}

/// A blob's content as it arrives, through [`VerifiedBlob`]: reaching the end checks the
/// digest, and a mismatch is an `InvalidData` error carrying [`RegistryError::DigestMismatch`],
/// so a caller that reads to the end never accepts altered content; with the descriptor's size,
/// a registry that sends more fails the read after at most `size + 1` bytes. A connection that
/// breaks (or ends early) part way is resumed with `Range: bytes=N-` within the retry budget;
/// the digest covers every byte handed out, whichever answer it came from.
pub struct BlobReader {
    verified: VerifiedBlob<RegistryBody>,
    expected: String,
    url: String,
    /// What the first answer announced.
    content_length: Option<u64>,
}

/// The bytes of a blob as the registry sends them, resumed when an answer breaks off.
struct RegistryBody {
    inner: ureq::BodyReader<'static>,
    url: String,
    /// The whole blob's size, when the descriptor or the registry said.
    total: Option<u64>,
    /// Bytes handed out so far.
    offset: u64,
    resume: Option<Resume>,
}

/// What a [`RegistryBody`] needs to ask for the rest of its blob.
struct Resume {
    client: Client,
    reference: Reference,
    kind: BodyKind,
    retries: Retries,
}

impl BlobReader {
    /// The size the registry announced, if it did.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    fn error_from_io(&self, error: io::Error) -> RegistryError {
        match error
            .get_ref()
            .and_then(|e| e.downcast_ref::<RegistryError>())
        {
            Some(RegistryError::DigestMismatch {
                url,
                expected,
                actual,
            }) => RegistryError::DigestMismatch {
                url: url.clone(),
                expected: expected.clone(),
                actual: actual.clone(),
            },
            Some(RegistryError::InvalidResponse { url, message }) => {
                RegistryError::InvalidResponse {
                    url: url.clone(),
                    message: message.clone(),
                }
            }
            _ => RegistryError::Transport {
                method: "GET",
                url: self.url.clone(),
                message: format!("reading the blob: {}", sanitise(&error.to_string())),
                attempts: self
                    .verified
                    .inner()
                    .resume
                    .as_ref()
                    .map_or(1, |r| r.retries.attempts()),
                hint: String::new(),
            },
        }
    }

    /// The verifier's fault as the registry error it is, naming the URL.
    fn registry_fault(&self, fault: &BlobFault) -> io::Error {
        let error = match fault {
            BlobFault::Digest { actual, .. } => RegistryError::DigestMismatch {
                url: self.url.clone(),
                expected: self.expected.clone(),
                actual: format!("sha256:{actual}"),
            },
            BlobFault::Long { size, .. } => too_large(&self.url, &self.expected, *size, None),
            BlobFault::Short { .. } => RegistryError::InvalidResponse {
                url: self.url.clone(),
                message: fault.to_string(),
            },
        };
        io::Error::new(io::ErrorKind::InvalidData, error)
    }
}

impl RegistryBody {
    /// After `error` (or an early end): a new answer from `offset` on, or the error to give up
    /// with.
    fn resume(&mut self, error: io::Error) -> io::Result<()> {
        let Some(resume) = self.resume.as_mut() else {
            return Err(error);
        };
        if !resume.retries.wait(None) {
            return Err(io::Error::new(
                error.kind(),
                format!(
                    "{error} (after {} attempts in {:.0?}; gave up)",
                    resume.retries.attempts(),
                    resume.retries.elapsed()
                ),
            ));
        }
        let request = Request {
            url: self.url.clone(),
            accept: None,
            kind: resume.kind,
            range_from: Some(self.offset),
        };
        let response = resume
            .client
            .get(&resume.reference, &request)
            .map_err(|e| io::Error::other(format!("resuming at byte {}: {e}", self.offset)))?;
        let status = response.status().as_u16();
        let response_range = response
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut inner = response.into_body().into_reader();
        if status == 206 {
            let range = response_range.unwrap_or_default();
            if !range.starts_with(&format!("bytes {}-", self.offset)) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    RegistryError::InvalidResponse {
                        url: self.url.clone(),
                        message: format!(
                            "asked for the blob from byte {}, the registry sent the range {:?}",
                            self.offset,
                            sanitise(&range)
                        ),
                    },
                ));
            }
        } else {
            // The registry ignored the range: skip what was already handed out.
            let skipped = io::copy(&mut (&mut inner).take(self.offset), &mut io::sink())?;
            if skipped != self.offset {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the registry's new answer ended after {skipped} of the {} bytes \
                         already read",
                        self.offset
                    ),
                ));
            }
        }
        self.inner = inner;
        Ok(())
    }
}

impl Read for RegistryBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let result = match self.inner.read(buf) {
                Ok(0) => match self.total {
                    Some(total) if self.offset < total => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the answer ended after {} of {total} bytes", self.offset),
                    )),
                    _ => return Ok(0),
                },
                other => other,
            };
            match result {
                Ok(n) => {
                    self.offset += n as u64;
                    // Progress: a later cut gets a fresh budget.
                    if let Some(resume) = self.resume.as_mut() {
                        if resume.retries.attempts() > 1 {
                            resume.retries = Retries::new(&resume.client.options);
                        }
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.resume(e)?,
            }
        }
    }
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("url", &self.url)
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.verified
            .read(buf)
            .map_err(|e| match BlobFault::of(&e) {
                Some(fault) => self.registry_fault(fault),
                None => e,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_use_http() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "ghcr.io",
            "10.0.0.1:5000",
            "[fe80::1]:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
        let client = Client::new(
            ClientOptions {
                insecure_registries: vec!["myhost:5000".into()],
                ..ClientOptions::default()
            },
            DockerConfig::default(),
        );
        let r: Reference = "myhost:5000/app:1".parse().unwrap();
        assert_eq!(
            client.url(&r, "manifests/1"),
            "http://myhost:5000/v2/app/manifests/1"
        );
        let r: Reference = "alpine".parse().unwrap();
        assert_eq!(
            client.url(&r, "manifests/latest"),
            "https://registry-1.docker.io/v2/library/alpine/manifests/latest"
        );
    }

    #[test]
    fn media_type_detection() {
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(
            manifest_media_type(index, Some("application/json")).unwrap(),
            MEDIA_TYPE_OCI_INDEX
        );
        let typed = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#;
        assert_eq!(
            manifest_media_type(typed, Some(MEDIA_TYPE_OCI_INDEX)).unwrap(),
            MEDIA_TYPE_DOCKER_MANIFEST
        );
        assert_eq!(
            manifest_media_type(
                b"{}",
                Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8")
            )
            .unwrap(),
            MEDIA_TYPE_OCI_MANIFEST
        );
        assert!(manifest_media_type(b"{}", None).is_err());
        assert!(manifest_media_type(b"[1]", Some(MEDIA_TYPE_OCI_INDEX)).is_err());
        assert!(manifest_media_type(b"<html>", Some(MEDIA_TYPE_OCI_INDEX)).is_err());
        assert!(manifest_media_type(br#"{"mediaType":7}"#, None).is_err());
    }

    #[test]
    fn digests_and_backoff() {
        assert_eq!(
            digest_of("sha256", b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(digest_of("sha512", b"").starts_with("sha512:cf83e1357eefb8bd"));
        let options = ClientOptions::default();
        assert_eq!(backoff_ceiling(&options, 1), Duration::from_millis(500));
        assert_eq!(backoff_ceiling(&options, 3), Duration::from_secs(2));
        assert_eq!(backoff_ceiling(&options, 9), options.max_backoff);
        assert_eq!(backoff_ceiling(&options, u32::MAX), options.max_backoff);
    }

    #[test]
    fn full_jitter_spreads_over_the_whole_range() {
        let ceiling = Duration::from_millis(100);
        let waits: Vec<Duration> = (0..200).map(|_| full_jitter(ceiling)).collect();
        assert!(waits.iter().all(|w| *w <= ceiling));
        assert!(waits.iter().any(|w| *w < ceiling / 4), "{waits:?}");
        assert!(waits.iter().any(|w| *w > ceiling * 3 / 4), "{waits:?}");
        assert_eq!(full_jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_refused_connection_is_not_retried_but_a_reset_one_is() {
        let io = |kind| ureq::Error::Io(io::Error::new(kind, "x"));
        assert!(!is_retryable_error(&io(io::ErrorKind::ConnectionRefused)));
        assert!(is_retryable_error(&io(io::ErrorKind::ConnectionReset)));
        assert!(is_retryable_error(&io(io::ErrorKind::UnexpectedEof)));
        assert!(!is_retryable_error(&ureq::Error::HostNotFound));
    }

    #[test]
    fn the_retry_budget_ends_at_its_attempts_or_its_deadline() {
        let options = Arc::new(ClientOptions {
            attempts: 3,
            backoff: Duration::from_millis(1),
            ..ClientOptions::default()
        });
        let mut retries = Retries::new(&options);
        assert!(retries.next_wait(None).is_some());
        assert_eq!(
            retries.next_wait(Some(Duration::from_secs(3600))),
            Some(options.max_retry_after),
            "Retry-After is honoured up to its cap"
        );
        assert_eq!(retries.next_wait(None), None);
        assert_eq!(retries.attempts(), 3);

        let options = Arc::new(ClientOptions {
            retry_timeout: Duration::from_millis(50),
            ..ClientOptions::default()
        });
        let mut retries = Retries::new(&options);
        let wait = retries.next_wait(Some(Duration::from_secs(10))).unwrap();
        assert!(
            wait <= Duration::from_millis(50),
            "no wait ends past the deadline"
        );
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(retries.next_wait(None), None);
    }

    #[test]
    fn only_sha256_content_is_read() {
        assert!(require_sha256(&format!("sha256:{}", "a".repeat(64))).is_ok());
        for digest in [format!("sha512:{}", "a".repeat(128)), "md5:abc".to_string()] {
            let message = require_sha256(&digest).unwrap_err().to_string();
            assert!(
                message.contains(&digest) && message.contains("sha256"),
                "{message}"
            );
        }
    }
}
